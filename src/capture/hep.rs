//! HEP3 (Homer Encapsulation Protocol v3) encoding: a "HEP3" magic, the total
//! length, then chunks of vendor id (0 = generic), type, length (header
//! included) and value. Only the generic chunks a SIP capture needs.

use std::net::{IpAddr, SocketAddr};

/// Chunk types (generic vendor 0).
pub mod chunk {
    /// IP family: 2 = IPv4, 10 = IPv6 (u8).
    pub const IP_FAMILY: u16 = 1;
    /// IP protocol id: 17 = UDP, 6 = TCP (u8).
    pub const IP_PROTO: u16 = 2;
    /// IPv4 source address.
    pub const IPV4_SRC: u16 = 3;
    /// IPv4 destination address.
    pub const IPV4_DST: u16 = 4;
    /// IPv6 source address.
    pub const IPV6_SRC: u16 = 5;
    /// IPv6 destination address.
    pub const IPV6_DST: u16 = 6;
    /// Source port (u16).
    pub const SRC_PORT: u16 = 7;
    /// Destination port (u16).
    pub const DST_PORT: u16 = 8;
    /// Timestamp, seconds since the epoch (u32).
    pub const TS_SEC: u16 = 9;
    /// Timestamp, microseconds part (u32).
    pub const TS_USEC: u16 = 10;
    /// Protocol type: 1 = SIP (u8).
    pub const PROTO_TYPE: u16 = 11;
    /// Capture agent id (u32).
    pub const CAPTURE_ID: u16 = 12;
    /// The captured message as on the wire.
    pub const PAYLOAD: u16 = 15;
    /// Correlation id (the Call-ID).
    pub const CORRELATION_ID: u16 = 17;
}

/// IP protocol id of UDP.
pub const PROTO_UDP: u8 = 17;
/// IP protocol id of TCP.
pub const PROTO_TCP: u8 = 6;
/// HEP protocol type of SIP.
pub const PROTO_TYPE_SIP: u8 = 1;

/// One captured message.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// Who sent it.
    pub src: SocketAddr,
    /// Who it went to.
    pub dst: SocketAddr,
    /// `PROTO_UDP` or `PROTO_TCP`.
    pub ip_proto: u8,
    /// Seconds since the epoch.
    pub ts_sec: u32,
    /// Microseconds within that second.
    pub ts_usec: u32,
    /// Capture agent id.
    pub capture_id: u32,
    /// The Call-ID, if the message has one.
    pub correlation_id: Option<&'a [u8]>,
    /// The message as on the wire.
    pub payload: &'a [u8],
}

fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = (6 + value.len()) as u16;
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// Largest correlation id kept; a longer Call-ID is cut (it is only a key).
const MAX_CORRELATION: usize = 256;

/// Encodes `m` into `out` (cleared first). `None` when the packet would not
/// fit HEP3's 16-bit length (a message over ~65 KB: not captured).
pub fn encode(m: &Message<'_>, out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    out.extend_from_slice(b"HEP3\0\0");
    // A v4-mapped peer on a v6 socket and a v4 local address mix families: use v6 for both then.
    let (src, dst) = (m.src.ip(), m.dst.ip());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put(out, chunk::IP_FAMILY, &[2]);
            put(out, chunk::IP_PROTO, &[m.ip_proto]);
            put(out, chunk::IPV4_SRC, &s.octets());
            put(out, chunk::IPV4_DST, &d.octets());
        }
        _ => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(a) => a.to_ipv6_mapped(),
                IpAddr::V6(a) => a,
            };
            put(out, chunk::IP_FAMILY, &[10]);
            put(out, chunk::IP_PROTO, &[m.ip_proto]);
            put(out, chunk::IPV6_SRC, &v6(src).octets());
            put(out, chunk::IPV6_DST, &v6(dst).octets());
        }
    }
    put(out, chunk::SRC_PORT, &m.src.port().to_be_bytes());
    put(out, chunk::DST_PORT, &m.dst.port().to_be_bytes());
    put(out, chunk::TS_SEC, &m.ts_sec.to_be_bytes());
    put(out, chunk::TS_USEC, &m.ts_usec.to_be_bytes());
    put(out, chunk::PROTO_TYPE, &[PROTO_TYPE_SIP]);
    put(out, chunk::CAPTURE_ID, &m.capture_id.to_be_bytes());
    if let Some(c) = m.correlation_id {
        put(out, chunk::CORRELATION_ID, c.get(..MAX_CORRELATION.min(c.len())).unwrap_or_default());
    }
    if out.len() + 6 + m.payload.len() > usize::from(u16::MAX) {
        return None;
    }
    put(out, chunk::PAYLOAD, m.payload);
    let total = (out.len() as u16).to_be_bytes();
    out.get_mut(4..6)?.copy_from_slice(&total);
    Some(())
}

/// One decoded chunk: `(vendor, type, value)`.
pub type Chunk<'a> = (u16, u16, &'a [u8]);

/// Splits a HEP3 packet into its chunks, checking the magic, the total length
/// and every chunk length. For tests and tools.
pub fn decode(pkt: &[u8]) -> Result<Vec<Chunk<'_>>, &'static str> {
    if pkt.get(..4) != Some(b"HEP3") {
        return Err("no HEP3 magic");
    }
    let be16 =
        |b: &[u8], at: usize| b.get(at..at + 2).and_then(|s| <[u8; 2]>::try_from(s).ok()).map(u16::from_be_bytes);
    let total = be16(pkt, 4).ok_or("short header")? as usize;
    if total != pkt.len() {
        return Err("total length differs from the packet length");
    }
    let mut at = 6;
    let mut out = Vec::new();
    while at < pkt.len() {
        let vendor = be16(pkt, at).ok_or("short chunk header")?;
        let kind = be16(pkt, at + 2).ok_or("short chunk header")?;
        let len = be16(pkt, at + 4).ok_or("short chunk header")? as usize;
        if len < 6 {
            return Err("chunk length below its header");
        }
        let value = pkt.get(at + 6..at + len).ok_or("chunk runs past the packet")?;
        out.push((vendor, kind, value));
        at += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(src: &str, dst: &str, payload: &'a [u8]) -> Message<'a> {
        Message {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ip_proto: PROTO_UDP,
            ts_sec: 1_700_000_000,
            ts_usec: 123_456,
            capture_id: 2001,
            correlation_id: Some(b"abc@host"),
            payload,
        }
    }

    #[test]
    fn ipv4_packet_has_the_published_layout_byte_for_byte() {
        let mut out = Vec::new();
        encode(&sample("10.0.0.1:5060", "10.0.0.2:5080", b"OPTIONS"), &mut out).unwrap();
        let mut want: Vec<u8> = b"HEP3".to_vec();
        want.extend_from_slice(&(out.len() as u16).to_be_bytes());
        let chunks: [(u16, &[u8]); 12] = [
            (1, &[2]),
            (2, &[17]),
            (3, &[10, 0, 0, 1]),
            (4, &[10, 0, 0, 2]),
            (7, &[0x13, 0xc4]),
            (8, &[0x13, 0xd8]),
            (9, &1_700_000_000u32.to_be_bytes()),
            (10, &123_456u32.to_be_bytes()),
            (11, &[1]),
            (12, &2001u32.to_be_bytes()),
            (17, b"abc@host"),
            (15, b"OPTIONS"),
        ];
        for (t, v) in chunks {
            want.extend_from_slice(&[0, 0]);
            want.extend_from_slice(&t.to_be_bytes());
            want.extend_from_slice(&((v.len() + 6) as u16).to_be_bytes());
            want.extend_from_slice(v);
        }
        assert_eq!(out, want);
        let d = decode(&out).unwrap();
        assert_eq!(d.len(), 12);
        assert!(d.iter().all(|(vendor, _, _)| *vendor == 0));
    }

    #[test]
    fn ipv6_and_mixed_families_use_the_v6_chunks() {
        let mut out = Vec::new();
        encode(&sample("[2001:db8::1]:5060", "127.0.0.1:5080", b"x"), &mut out).unwrap();
        let d = decode(&out).unwrap();
        assert_eq!(d[0], (0, chunk::IP_FAMILY, &[10u8][..]));
        assert_eq!(d[2].1, chunk::IPV6_SRC);
        assert_eq!(d[2].2.len(), 16);
        assert_eq!(d[3].1, chunk::IPV6_DST);
        assert_eq!(d[3].2, &"::ffff:127.0.0.1".parse::<std::net::Ipv6Addr>().unwrap().octets());
    }

    #[test]
    fn too_large_is_refused_and_bad_packets_do_not_decode() {
        let big = vec![b'a'; 65_500];
        let mut out = Vec::new();
        assert!(encode(&sample("10.0.0.1:1", "10.0.0.2:2", &big), &mut out).is_none());
        let mut m = sample("10.0.0.1:1", "10.0.0.2:2", b"x");
        m.correlation_id = None;
        encode(&m, &mut out).unwrap();
        assert!(decode(&out).unwrap().iter().all(|c| c.1 != chunk::CORRELATION_ID));
        assert!(decode(b"HEP2\0\x06").is_err());
        let mut cut = out.clone();
        cut.pop();
        assert!(decode(&cut).is_err());
        let mut bad = out.clone();
        bad[10] = 0;
        bad[11] = 2; // first chunk length 2 < 6
        assert!(decode(&bad).is_err());
    }
}
