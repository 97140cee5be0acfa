//! The Record-Route token (SPEC §9): our Record-Route URI names the call's two
//! peers under an HMAC-SHA-256 of the dialog key, so an edge that does not
//! remember the dialog (restarted, or another instance holding the same key)
//! can still route an in-dialog request to the other peer, and nobody can make
//! it send anywhere else (no open relay).
//!
//! Layout, hex-encoded: version `1`, the sealing run's boot id (4 bytes), then each peer as transport (0 UDP,
//! 1 TCP), family (4/6), address (4 or 16 bytes), port (2 bytes, big-endian),
//! then the first 16 bytes of the MAC over everything before it.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::sip::Transport;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
/// Largest token in bytes before hex: version, boot, two IPv6 peers, MAC.
const MAX_RAW: usize = 1 + 4 + 2 * (2 + 16 + 2) + MAC_LEN;
/// Longest token text accepted; anything longer is refused before decoding,
/// so a huge Route costs no allocation and no MAC computation.
pub const MAX_TOKEN_LEN: usize = 2 * MAX_RAW;

/// The dialog key: 32 secret bytes (`[edge].dialog_key_file`), kept as the
/// HMAC state already keyed with them, so sealing a token costs two SHA-256
/// blocks instead of four.
#[derive(Clone)]
pub struct DialogKey(Hmac<Sha256>);

impl DialogKey {
    /// A key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> DialogKey {
        // HMAC takes a key of any length: this cannot fail.
        DialogKey(match <Hmac<Sha256> as Mac>::new_from_slice(&bytes) {
            Ok(m) => m,
            Err(_) => unreachable_mac(),
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.0.clone()
    }
}

#[cold]
fn unreachable_mac() -> Hmac<Sha256> {
    // Hmac::new_from_slice only fails for fixed-size-key MACs; keep a
    // non-panicking path anyway (a zero key would only make tokens fail to check).
    <Hmac<Sha256> as hmac::digest::KeyInit>::new(&Default::default())
}

impl Default for DialogKey {
    /// A fixed all-zero key, for tests and benches; the edge loads its own.
    fn default() -> DialogKey {
        DialogKey::new([0; 32])
    }
}

impl std::fmt::Debug for DialogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DialogKey(..)")
    }
}

/// What this process seals tokens with: the shared key and its own run's id.
#[derive(Clone, Debug, Default)]
pub struct Sealer {
    /// The dialog key.
    pub key: DialogKey,
    /// This process run (random per start, kept across reloads).
    pub boot: u32,
}

/// One side of a call, as the token names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenPeer {
    /// The peer's address.
    pub addr: SocketAddr,
    /// How it is reached.
    pub transport: Transport,
}

/// The two peers of a call: the caller's side and the callee's side.
pub type TokenPeers = [TokenPeer; 2];

/// What a token says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// The process run that sealed it (random per start): a token of our own
    /// run whose dialog we do not remember is a call that ended, not one we forgot.
    pub boot: u32,
    /// The call's peers.
    pub peers: TokenPeers,
}

fn push_peer(raw: &mut [u8; MAX_RAW], n: &mut usize, p: &TokenPeer) {
    let mut put = |b: &[u8]| {
        if let Some(dst) = raw.get_mut(*n..*n + b.len()) {
            dst.copy_from_slice(b);
            *n += b.len();
        }
    };
    put(&[match p.transport {
        Transport::Udp => 0,
        Transport::Tcp => 1,
        Transport::Tls => 2,
    }]);
    match p.addr.ip() {
        IpAddr::V4(ip) => {
            put(&[4]);
            put(&ip.octets());
        }
        IpAddr::V6(ip) => {
            put(&[6]);
            put(&ip.octets());
        }
    }
    put(&p.addr.port().to_be_bytes());
}

/// The token for a call between `peers`, as lowercase hex.
pub fn seal(key: &DialogKey, token: &Token) -> String {
    let mut raw = [0u8; MAX_RAW];
    let mut n = 0;
    let b = token.boot.to_be_bytes();
    if let Some(v) = raw.get_mut(..5) {
        v.copy_from_slice(&[VERSION, b[0], b[1], b[2], b[3]]);
        n = 5;
    }
    for p in &token.peers {
        push_peer(&mut raw, &mut n, p);
    }
    let mut mac = key.mac();
    mac.update(raw.get(..n).unwrap_or(&[]));
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(2 * (n + MAC_LEN));
    for b in raw.get(..n).unwrap_or(&[]).iter().chain(tag.iter().take(MAC_LEN)) {
        out.push(hex_digit(b >> 4));
        out.push(hex_digit(b & 0xf));
    }
    out
}

/// The lowercase hex digit of a nibble (`n` < 16).
fn hex_digit(n: u8) -> char {
    char::from(if n < 10 { b'0' + n } else { b'a' + (n & 0xf) - 10 })
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Reads a peer at `raw[*at..]`.
fn read_peer(raw: &[u8], at: &mut usize) -> Option<TokenPeer> {
    let mut take = |k: usize| {
        let s = raw.get(*at..*at + k)?;
        *at += k;
        Some(s)
    };
    let transport = match take(1)?.first()? {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        2 => Transport::Tls,
        _ => return None,
    };
    let ip = match take(1)?.first()? {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(take(4)?).ok()?)),
        6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(take(16)?).ok()?)),
        _ => return None,
    };
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(take(2)?).ok()?);
    Some(TokenPeer { addr: SocketAddr::new(ip, port), transport })
}

/// The peers a token names, if it is well-formed and its MAC checks under
/// `key` (compared in constant time). Anything else is `None`: the caller
/// answers 481 and sends nothing.
pub fn open(key: &DialogKey, text: &str) -> Option<Token> {
    let t = text.as_bytes();
    if t.len() > MAX_TOKEN_LEN || t.len() % 2 != 0 || t.len() < 2 * (1 + MAC_LEN) {
        return None;
    }
    let mut raw = [0u8; MAX_RAW];
    let n = t.len() / 2;
    for (i, pair) in t.chunks_exact(2).enumerate() {
        let (hi, lo) = (nibble(*pair.first()?)?, nibble(*pair.get(1)?)?);
        *raw.get_mut(i)? = (hi << 4) | lo;
    }
    let body_len = n.checked_sub(MAC_LEN)?;
    let (body, tag) = (raw.get(..body_len)?, raw.get(body_len..n)?);
    let mut mac = key.mac();
    mac.update(body);
    mac.verify_truncated_left(tag).ok()?;
    if body.first() != Some(&VERSION) {
        return None;
    }
    let boot = u32::from_be_bytes(<[u8; 4]>::try_from(body.get(1..5)?).ok()?);
    let mut at = 5;
    let a = read_peer(body, &mut at)?;
    let b = read_peer(body, &mut at)?;
    (at == body.len()).then_some(Token { boot, peers: [a, b] })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers() -> Token {
        Token { boot: 0xdead_beef, peers: peers_only() }
    }

    fn peers_only() -> TokenPeers {
        [
            TokenPeer { addr: "127.0.0.2:5060".parse().unwrap(), transport: Transport::Udp },
            TokenPeer { addr: "[2001:db8::10]:5070".parse().unwrap(), transport: Transport::Tcp },
        ]
    }

    #[test]
    fn round_trip() {
        let key = DialogKey::new([7; 32]);
        let t = seal(&key, &peers());
        assert!(t.len() <= MAX_TOKEN_LEN);
        assert_eq!(open(&key, &t), Some(peers()));
        let v4 = Token {
            boot: 1,
            peers: [peers_only()[0], TokenPeer { addr: "10.0.0.1:5060".parse().unwrap(), transport: Transport::Udp }],
        };
        assert_eq!(open(&key, &seal(&key, &v4)), Some(v4));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let key = DialogKey::new([9; 32]);
        let t = seal(&key, &peers());
        let mut raw: Vec<u8> =
            (0..t.len() / 2).map(|i| u8::from_str_radix(&t[2 * i..2 * i + 2], 16).unwrap()).collect();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                raw[byte] ^= 1 << bit;
                let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(open(&key, &hex), None, "flip of bit {bit} in byte {byte} accepted");
                raw[byte] ^= 1 << bit;
            }
        }
    }

    #[test]
    fn another_key_is_rejected() {
        let t = seal(&DialogKey::new([1; 32]), &peers());
        assert_eq!(open(&DialogKey::new([2; 32]), &t), None);
    }

    #[test]
    fn size_is_bounded_and_junk_refused() {
        let key = DialogKey::new([3; 32]);
        let huge = "a".repeat(1 << 20);
        assert_eq!(open(&key, &huge), None);
        assert_eq!(open(&key, &"0".repeat(MAX_TOKEN_LEN + 2)), None);
        for junk in ["", "zz", "01", "0g", &"ff".repeat(40)] {
            assert_eq!(open(&key, junk), None, "{junk}");
        }
        let t = seal(&key, &peers());
        assert_eq!(open(&key, &t.to_uppercase()), None);
        assert_eq!(open(&key, &t[..t.len() - 2]), None);
    }
}
