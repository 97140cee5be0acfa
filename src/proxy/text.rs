//! Appending numbers and addresses to strings without `format!`: the core
//! builds a few small strings per message (branches, tags, Vias, URIs), and
//! `core::fmt` costs several times the bytes it writes.

use std::net::SocketAddr;

/// Appends `n` in lower-case hex, as `{:x}` does.
pub(super) fn push_hex(s: &mut String, n: u64) {
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b"0123456789abcdef".get((n & 0xf) as usize).copied().unwrap_or(b'0');
        }
        n >>= 4;
        if n == 0 || i == 0 {
            break;
        }
    }
    push_ascii(s, buf.get(i..).unwrap_or_default());
}

/// Appends `n` in decimal, as `{}` does.
pub(super) fn push_dec(s: &mut String, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    push_ascii(s, buf.get(i..).unwrap_or_default());
}

/// Appends `addr` as `{}` does (`1.2.3.4:5060`, `[::1]:5060`).
pub(super) fn push_addr(s: &mut String, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(a) => {
            for (i, o) in a.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                push_dec(s, u64::from(o));
            }
            s.push(':');
            push_dec(s, u64::from(a.port()));
        }
        SocketAddr::V6(_) => {
            use std::fmt::Write;
            let _ = write!(s, "{addr}");
        }
    }
}

fn push_ascii(s: &mut String, b: &[u8]) {
    s.extend(b.iter().map(|&c| char::from(c)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_addresses_read_as_format_writes_them() {
        for n in [0u64, 1, 9, 10, 15, 16, 255, 4096, 99_999, u64::from(u32::MAX), u64::MAX] {
            let (mut h, mut d) = (String::new(), String::new());
            push_hex(&mut h, n);
            push_dec(&mut d, n);
            assert_eq!(h, format!("{n:x}"));
            assert_eq!(d, format!("{n}"));
        }
        for a in ["127.0.0.1:5060", "0.0.0.0:0", "255.255.255.255:65535", "[::1]:5060", "[fe80::1%2]:5"] {
            let Ok(addr) = a.parse::<SocketAddr>() else { continue };
            let mut s = String::from("sip:");
            push_addr(&mut s, addr);
            assert_eq!(s, format!("sip:{addr}"));
        }
    }
}
