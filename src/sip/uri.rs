//! A borrowed view of a SIP, SIPS or tel URI (RFC 3261 §19.1, RFC 3966).
//!
//! We scan URIs ourselves instead of using `rsip::Uri`: rsip 0.4 rejects
//! bracketed IPv6 hosts and `tel:` numbers, reads escaped or `;`-bearing user
//! parts as the host, and accepts `<sip:...>` and embedded spaces
//! (`sip::tests::rsip_findings` pins each of these). This scanner allocates
//! nothing and is strict where the RFC 4475/5118 torture tests need it.

use std::borrow::Cow;
use std::net::Ipv6Addr;

use super::header::{run_end, HOST};

/// The parts of a URI, borrowed from the text it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriParts<'a> {
    /// The scheme as written: `sip`, `sips`, `tel`, or anything else.
    pub scheme: &'a str,
    /// The user part (`sip:`) or the number (`tel:`), still %-escaped.
    pub user: Option<&'a str>,
    /// Host as written (IPv6 references keep their brackets); `""` for
    /// `tel:` and for schemes we do not interpret.
    pub host: &'a str,
    /// Port, if given.
    pub port: Option<u16>,
    /// URI parameters from the first `;` (raw, may be empty).
    pub params: &'a str,
    /// Whether the `lr` parameter is present (loose routing, RFC 3261 §16.4).
    pub has_lr: bool,
    /// The `transport` parameter value, if present.
    pub transport_param: Option<&'a str>,
    /// URI headers from the `?` (raw, may be empty). Not allowed in a
    /// Request-URI (RFC 4475 escruri).
    pub headers: &'a str,
}

impl<'a> UriParts<'a> {
    /// Whether the scheme is `sip` or `sips` (any case).
    pub fn is_sip(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("sip") || self.scheme.eq_ignore_ascii_case("sips")
    }
    /// Whether the scheme is `tel` (any case).
    pub fn is_tel(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("tel")
    }
    /// A URI parameter by name (case-insensitive); valueless yields `Some("")`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        let mut found = None;
        walk_uri_params(self.params, |n, v| {
            if n.eq_ignore_ascii_case(name) {
                found = Some(v.unwrap_or(""));
            }
            found.is_none()
        });
        found
    }
}

/// Whether `b` is free of the bytes that never occur unescaped in a URI we
/// accept: controls, space, DEL, non-ASCII, and the delimiters of name-addr
/// (`<`, `>`, `"`). Eight bytes at a time (URIs are too short for the
/// vectorised byte loop to pay off; it cost ~13 instructions per byte).
pub(crate) fn uri_chars_ok(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        if word_has_bad_uri_char(u64::from_le_bytes(x)) {
            return false;
        }
    }
    // The tail padded with `A`, which is allowed.
    let mut x = [b'A'; 8];
    for (d, &c) in x.iter_mut().zip(words.remainder()) {
        *d = c;
    }
    !word_has_bad_uri_char(u64::from_le_bytes(x))
}

/// Whether any byte of `x` is <= 0x20, >= 0x7f, `<`, `>` or `"` (the
/// classic exact SWAR tests for "a byte less than", "more than", "zero").
#[inline]
fn word_has_bad_uri_char(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let below_0x21 = x.wrapping_sub(ONES * 0x21) & !x & HIGH;
    // Adding 1 to each byte carries 0x7f into the high bit (0x7e does not).
    let above_0x7e = (x.wrapping_add(ONES) | x) & HIGH;
    (below_0x21
        | above_0x7e
        | zero(x ^ (ONES * u64::from(b'<')))
        | zero(x ^ (ONES * u64::from(b'>')))
        | zero(x ^ (ONES * u64::from(b'"'))))
        != 0
}

/// `paramchar` of RFC 3261 (`%` escapes are not decoded here).
static PARAMCHAR: [bool; 256] = super::header::class(b"-_.!~*'()%[]/:&+$");

/// Walks URI parameters `*( ";" pname [ "=" pvalue ] )` (no LWS), calling
/// `f(name, value)` until it returns `false`; returns whether the text is
/// well-formed up to where the walk stopped.
fn walk_uri_params<'a>(params: &'a str, mut f: impl FnMut(&'a str, Option<&'a str>) -> bool) -> bool {
    let b = params.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b.get(i) != Some(&b';') {
            return false;
        }
        let name_start = i + 1;
        i = run_end(b, name_start, &PARAMCHAR);
        let Some(name) = params.get(name_start..i).filter(|n| !n.is_empty()) else {
            return false;
        };
        let mut value = None;
        if b.get(i) == Some(&b'=') {
            let value_start = i + 1;
            i = run_end(b, value_start, &PARAMCHAR);
            value = params.get(value_start..i).filter(|v| !v.is_empty());
            if value.is_none() {
                return false;
            }
        }
        if !f(name, value) {
            return true;
        }
    }
    true
}

/// Whether `inner` (without brackets) is an IPv6 address. Besides the RFC
/// 4291 forms we accept the RFC 2373-derived `hexseq ":::" IPv4address`
/// that RFC 3261's ABNF allowed, as RFC 5118 §4.10 asks parsers to.
pub(crate) fn ipv6_reference_valid(inner: &str) -> bool {
    if inner.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    let b = inner.as_bytes();
    let Some(pos) = memchr::memmem::find(b, b":::") else {
        return false;
    };
    let tail = b.get(pos + 3..).unwrap_or_default();
    if !tail.contains(&b'.') || tail.contains(&b':') || b.len() >= 64 {
        return false;
    }
    // Drop one colon and let std decide on the rest.
    let mut tmp = [0u8; 64];
    let mut n = 0;
    for (i, &c) in b.iter().enumerate() {
        if i == pos {
            continue;
        }
        if let Some(slot) = tmp.get_mut(n) {
            *slot = c;
            n += 1;
        }
    }
    std::str::from_utf8(tmp.get(..n).unwrap_or_default()).is_ok_and(|s| s.parse::<Ipv6Addr>().is_ok())
}

/// Splits `host[:port]` (no params, no headers).
fn host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, rest) = if s.starts_with('[') {
        let close = memchr::memchr(b']', s.as_bytes())?;
        if !ipv6_reference_valid(s.get(1..close)?) {
            return None;
        }
        (s.get(..=close)?, s.get(close + 1..)?)
    } else {
        let end = memchr::memchr(b':', s.as_bytes()).unwrap_or(s.len());
        let host = s.get(..end)?;
        let ok = run_end(host.as_bytes(), 0, &HOST) == host.len();
        if host.is_empty() || !ok {
            return None;
        }
        (host, s.get(end..)?)
    };
    let port = match rest.strip_prefix(':') {
        None if rest.is_empty() => None,
        None => return None,
        Some(p) if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) => Some(p.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// Characters of a tel: number (RFC 3966 global or local, visual separators,
/// escapes).
fn is_tel_char(c: u8) -> bool {
    c.is_ascii_hexdigit()
        || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#' | b'%' | b'p' | b'w' | b'P' | b'W')
}

/// Parses a URI. `None` if it is malformed: no scheme, spaces or angle
/// brackets (ltgtruri), a `sip:` URI without a valid host or port
/// (ipv6-bad), empty parameters. Schemes other than sip/sips/tel are
/// returned with only `scheme` set; whether to accept them is the caller's
/// decision (RFC 4475 unkscm/novelsc → 416).
///
/// `tel:+1800...` gives `user = Some("+1800...")` and `host = ""`.
pub fn parse_uri(s: &str) -> Option<UriParts<'_>> {
    let b = s.as_bytes();
    if !uri_chars_ok(b) {
        return None;
    }
    let colon = memchr::memchr(b':', b)?;
    let scheme = s.get(..colon)?;
    let sb = scheme.as_bytes();
    if !sb.first().is_some_and(u8::is_ascii_alphabetic)
        || !sb.iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let rest = s.get(colon + 1..)?;
    if rest.is_empty() {
        return None;
    }
    let mut parts = UriParts {
        scheme,
        user: None,
        host: "",
        port: None,
        params: "",
        has_lr: false,
        transport_param: None,
        headers: "",
    };
    if scheme.eq_ignore_ascii_case("tel") {
        let end = memchr::memchr(b';', rest.as_bytes()).unwrap_or(rest.len());
        let number = rest.get(..end)?;
        if number.is_empty() || !number.bytes().all(is_tel_char) {
            return None;
        }
        parts.user = Some(number);
        parts.params = rest.get(end..)?;
    } else if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        // A literal `@` only ends userinfo: user, password, params and
        // headers must escape it. The user part itself may hold `;`, `?`, `/`
        // (RFC 4475 semiuri, intmeth), so split at `@` before anything else.
        let (user, hostpart) = match memchr::memchr(b'@', rest.as_bytes()) {
            Some(at) => {
                let userinfo = rest.get(..at)?;
                let user = userinfo.split(':').next().unwrap_or("");
                if user.is_empty() {
                    return None;
                }
                (Some(user), rest.get(at + 1..)?)
            }
            None => (None, rest),
        };
        let q = memchr::memchr(b'?', hostpart.as_bytes()).unwrap_or(hostpart.len());
        let before_q = hostpart.get(..q)?;
        parts.headers = hostpart.get(q..)?;
        let semi = memchr::memchr(b';', before_q.as_bytes()).unwrap_or(before_q.len());
        let (host, port) = host_port(before_q.get(..semi)?)?;
        parts.user = user;
        parts.host = host;
        parts.port = port;
        parts.params = before_q.get(semi..)?;
    } else {
        return Some(parts);
    }
    // One pass validates the parameters and picks out the two we use.
    let (mut has_lr, mut transport) = (false, None);
    let ok = walk_uri_params(parts.params, |n, v| {
        if n.eq_ignore_ascii_case("lr") {
            has_lr = true;
        } else if n.eq_ignore_ascii_case("transport") {
            transport = v;
        }
        true
    });
    if !ok {
        return None;
    }
    parts.has_lr = has_lr;
    parts.transport_param = transport;
    Some(parts)
}

/// Decodes `%xx` escapes (for number extraction from a user part such as
/// `%2B18005550100`). Malformed escapes are kept literally; borrowed when
/// there is nothing to decode.
pub fn user_unescaped(user: &str) -> Cow<'_, str> {
    if !user.contains('%') {
        return Cow::Borrowed(user);
    }
    let b = user.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|&h| (h as char).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_chars_ok_is_the_byte_rule_in_every_position() {
        let rule = |c: u8| !((c <= b' ') | (c >= 0x7f) | (c == b'<') | (c == b'>') | (c == b'"'));
        for len in 1..=17 {
            for pos in 0..len {
                for c in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[pos] = c;
                    assert_eq!(uri_chars_ok(&s), rule(c), "byte {c:#x} at {pos} of {len}");
                    // A neighbour that is itself bad must not hide or fake anything.
                    s[(pos + 1) % len] = b' ';
                    assert!(!uri_chars_ok(&s), "byte {c:#x} at {pos} of {len}, with a space");
                }
            }
        }
        assert!(uri_chars_ok(b""));
        assert!(uri_chars_ok(b"sip:+18005550100@10.0.0.1:5060;user=phone;transport=udp?x=y"));
    }

    #[test]
    fn carrier_request_uri() {
        let u = parse_uri("sip:+18005550100@10.0.0.1:5060;user=phone;transport=udp").unwrap();
        assert_eq!(u.scheme, "sip");
        assert_eq!(u.user, Some("+18005550100"));
        assert_eq!((u.host, u.port), ("10.0.0.1", Some(5060)));
        assert_eq!(u.params, ";user=phone;transport=udp");
        assert_eq!(u.transport_param, Some("udp"));
        assert!(!u.has_lr);
        assert_eq!(u.param("user"), Some("phone"));
    }

    #[test]
    fn tel_uri() {
        let u = parse_uri("tel:+1-800-555-0100;phone-context=+1").unwrap();
        assert!(u.is_tel());
        assert_eq!((u.user, u.host, u.params), (Some("+1-800-555-0100"), "", ";phone-context=+1"));
        assert!(parse_uri("tel:").is_none());
        assert!(parse_uri("tel:+1 800").is_none());
    }

    #[test]
    fn route_uri_with_lr_and_ipv6() {
        let u = parse_uri("sip:[2001:db8::10]:5070;lr").unwrap();
        assert_eq!((u.host, u.port, u.has_lr, u.user), ("[2001:db8::10]", Some(5070), true, None));
        assert_eq!(parse_uri("sip:[2001:db8::10:5070]").unwrap().port, None);
        assert!(parse_uri("sip:user@[2001:db8:::192.0.2.1]").is_some(), "RFC 5118 4.10 tolerance");
        assert!(parse_uri("sip:user@[2001:db8:::1]").is_none());
        assert!(parse_uri("sip:2001:db8::10").is_none(), "RFC 5118 ipv6-bad");
    }

    #[test]
    fn torture_user_parts() {
        let u = parse_uri("sip:user;par=u%40example.net@example.com").unwrap();
        assert_eq!((u.user, u.host), (Some("user;par=u%40example.net"), "example.com"));
        let crazy = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = parse_uri(crazy).unwrap();
        assert_eq!((u.user, u.host), (Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"), "example.com"));
        let u = parse_uri("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(user_unescaped(u.user.unwrap()), "sips:user@example.com");
    }

    #[test]
    fn malformed_and_foreign() {
        for bad in [
            "<sip:user@example.com>",
            "sip:user@example.com;",
            "sip:user@ho st",
            "sip:",
            "sip:@host",
            "sip:user@host:99999",
            "sip:user@host:",
            "1sip:x",
            "nocolon",
        ] {
            assert!(parse_uri(bad).is_none(), "{bad}");
        }
        let u = parse_uri("sip:user@example.com?Route=%3Csip:example.com%3E").unwrap();
        assert_eq!(u.headers, "?Route=%3Csip:example.com%3E");
        let u = parse_uri("soap.beep://192.0.2.103:3002").unwrap();
        assert!(!u.is_sip() && !u.is_tel());
        assert_eq!(u.scheme, "soap.beep");
    }

    #[test]
    fn unescape() {
        assert!(matches!(user_unescaped("+1800"), Cow::Borrowed("+1800")));
        assert_eq!(user_unescaped("%2B1800%zz%4"), "+1800%zz%4");
    }
}
