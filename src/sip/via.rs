//! One Via value (`via-parm`, RFC 3261 §20.42), read in place.
//!
//! The grammar allows LWS around every `/`, `:`, `;` and `=` (RFC 4475
//! wsinv), so the reader skips SP/HT at each of those points. Folded lines
//! have already been unfolded by the scanner, so no CR/LF occurs here.

use std::net::IpAddr;

use super::header::{is_ws, run_end, trim, walk_params, HOST, TOKEN};

/// The interesting parts of one via-parm, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token as written, e.g. `"UDP"`, `"TCP"`, `"TLS"`.
    pub transport: &'a str,
    /// Host of `sent-by` as written; an IPv6 reference keeps its brackets.
    pub host: &'a str,
    /// Port of `sent-by`, if given.
    pub port: Option<u16>,
    /// The `branch` parameter value, if present.
    pub branch: Option<&'a str>,
    /// Whether an `rport` parameter is present (RFC 3581), with or without value.
    pub rport: bool,
    /// The `received` parameter value, if present.
    pub received: Option<&'a str>,
    /// The whole via-parm text, trimmed (e.g. to copy it into an ACK or CANCEL).
    pub raw: &'a str,
}

impl<'a> Via<'a> {
    /// Any parameter of this via-parm by name (case-insensitive); a valueless
    /// parameter yields `Some("")`.
    pub fn param(&self, name: &str) -> Option<&'a str> {
        let params = memchr::memchr(b';', self.raw.as_bytes()).and_then(|i| self.raw.get(i..)).unwrap_or("");
        super::header::param(params, name)
    }

    /// The `sent-by` host as an IP address (brackets removed), if it is one.
    pub fn host_ip(&self) -> Option<IpAddr> {
        let h = self.host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(self.host);
        h.parse().ok()
    }

    /// Whether the branch carries the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch.is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

/// The via-parm as the next hop must see it, when the packet came from
/// `source` (RFC 3261 §18.2.1, RFC 3581 §4): a `received` with the source IP
/// when the sent-by is a name or another address, and a valueless `rport`
/// given the source port (which then always takes a `received` too). `None`
/// when nothing is to be added, the usual case of a peer that says where it is.
pub fn stamped(via: &Via<'_>, source: std::net::SocketAddr) -> Option<String> {
    let ip = source.ip().to_canonical();
    let bare_rport = via.rport && via.param("rport").is_some_and(str::is_empty);
    let same_host = via.host_ip().map(|h| h.to_canonical()) == Some(ip);
    if same_host && !bare_rport {
        return None;
    }
    let (head, params) = match memchr::memchr(b';', via.raw.as_bytes()) {
        Some(i) => (via.raw.get(..i).unwrap_or(via.raw), via.raw.get(i..).unwrap_or("")),
        None => (via.raw, ""),
    };
    let mut out = String::with_capacity(via.raw.len() + 48);
    out.push_str(head.trim_end());
    // Every parameter kept as written, except an old `received` (ours
    // replaces it) and a valueless `rport` (it gets the port).
    walk_params(params, |n, v| {
        if n.eq_ignore_ascii_case("received") {
            return true;
        }
        out.push(';');
        out.push_str(n);
        if n.eq_ignore_ascii_case("rport") && v.map_or(true, str::is_empty) {
            out.push('=');
            out.push_str(&source.port().to_string());
        } else if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
        true
    });
    // RFC 3261's grammar writes an IPv6 `received` without brackets.
    out.push_str(";received=");
    out.push_str(&ip.to_string());
    Some(out)
}

/// A tiny cursor over one via-parm.
struct Cur<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cur<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }
    fn ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.i += 1;
        }
    }
    /// Consumes `c` (after optional LWS) or fails.
    fn sep(&mut self, c: u8) -> Option<()> {
        self.ws();
        (self.peek() == Some(c)).then(|| self.i += 1)
    }
    /// Consumes a run of bytes of class `t`; `None` if empty.
    fn run(&mut self, t: &[bool; 256]) -> Option<&'a str> {
        let start = self.i;
        self.i = run_end(self.s.as_bytes(), start, t);
        (self.i > start).then(|| self.s.get(start..self.i)).flatten()
    }
    fn token(&mut self) -> Option<&'a str> {
        self.ws();
        self.run(&TOKEN)
    }
}

/// Parses one via-parm. `None` if it is malformed: wrong protocol, missing
/// host, bad port, empty or malformed parameters (RFC 4475 badinv01).
pub(crate) fn parse_via_parm(s: &str) -> Option<Via<'_>> {
    let raw = trim(s);
    let mut c = Cur { s: raw, i: 0 };
    let name = c.token()?;
    c.sep(b'/')?;
    let version = c.token()?;
    c.sep(b'/')?;
    let transport = c.token()?;
    if !name.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return None;
    }
    c.ws();
    let host = if c.peek() == Some(b'[') {
        let start = c.i;
        let close = memchr::memchr(b']', raw.as_bytes().get(start..)?)? + start;
        let inner = raw.get(start + 1..close)?;
        if !super::uri::ipv6_reference_valid(inner) {
            return None;
        }
        c.i = close + 1;
        raw.get(start..=close)?
    } else {
        c.run(&HOST)?
    };
    let save = c.i;
    let port = if c.sep(b':').is_some() {
        c.ws();
        let start = c.i;
        while c.peek().is_some_and(|d| d.is_ascii_digit()) {
            c.i += 1;
        }
        let digits = raw.get(start..c.i).filter(|d| !d.is_empty())?;
        Some(digits.parse::<u16>().ok()?)
    } else {
        c.i = save;
        None
    };
    let params = raw.get(c.i..)?;
    let mut via = Via { transport, host, port, branch: None, rport: false, received: None, raw };
    // One pass validates the parameters and picks out the ones we use.
    let ok = walk_params(params, |n, v| {
        if n.eq_ignore_ascii_case("branch") {
            via.branch = v;
        } else if n.eq_ignore_ascii_case("rport") {
            via.rport = true;
        } else if n.eq_ignore_ascii_case("received") {
            via.received = v;
        }
        true
    });
    if !ok {
        return None;
    }
    Some(via)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_via() {
        let v = parse_via_parm("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK77;rport;received=1.2.3.4").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "10.0.0.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch, Some("z9hG4bK77"));
        assert!(v.rport);
        assert_eq!(v.received, Some("1.2.3.4"));
        assert!(v.has_rfc3261_branch());
        assert_eq!(v.host_ip(), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(v.param("RPORT"), Some(""));
    }

    #[test]
    fn lws_everywhere_as_in_wsinv() {
        let v = parse_via_parm("SIP  / 2.0  / TCP     spindle.example.com   ;   branch  =   z9hG4bK9ikj8  ").unwrap();
        assert_eq!((v.transport, v.host, v.port, v.branch), ("TCP", "spindle.example.com", None, Some("z9hG4bK9ikj8")));
        let v = parse_via_parm("SIP/2.0/UDP host : 5070").unwrap();
        assert_eq!(v.port, Some(5070));
    }

    #[test]
    fn ipv6_sent_by_and_received() {
        let v = parse_via_parm("SIP/2.0/UDP [2001:db8::9:1]:6050;received=2001:db8::9:255;branch=z9hG4bKas3").unwrap();
        assert_eq!(v.host, "[2001:db8::9:1]");
        assert_eq!(v.port, Some(6050));
        assert_eq!(v.received, Some("2001:db8::9:255"));
        assert_eq!(v.host_ip(), Some("2001:db8::9:1".parse().unwrap()));
        let v = parse_via_parm("SIP/2.0/UDP [2001:db8::9:1];received=[2001:db8::9:255]").unwrap();
        assert_eq!(v.received, Some("[2001:db8::9:255]"));
    }

    #[test]
    fn malformed_vias_are_rejected() {
        for bad in [
            "SIP/2.0/UDP 192.0.2.15;;",
            ";",
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host:99999",
            "SIP/7.0/UDP host",
            "SIP/2.0/UDP host junk",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP [2001:db8::1",
            "SIP/2.0/UDP [zz]",
        ] {
            assert!(parse_via_parm(bad).is_none(), "{bad:?}");
        }
    }

    fn stamp(via: &str, source: &str) -> Option<String> {
        stamped(&parse_via_parm(via).unwrap(), source.parse().unwrap())
    }

    #[test]
    fn a_peer_that_says_where_it_is_gets_nothing_added() {
        assert_eq!(stamp("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", "10.0.0.1:5060"), None);
        // The port is not compared: only rport asks for it.
        assert_eq!(stamp("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1", "10.0.0.1:4000"), None);
        assert_eq!(stamp("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1", "[2001:db8::1]:5060"), None);
        // A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
        assert_eq!(stamp("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1", "[::ffff:10.0.0.1]:5060"), None);
        // rport with a value already set is left alone.
        assert_eq!(stamp("SIP/2.0/UDP 10.0.0.1;rport=5060;branch=z9hG4bK1", "10.0.0.1:5060"), None);
    }

    #[test]
    fn another_address_or_a_name_gets_received() {
        assert_eq!(
            stamp("SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1", "10.0.0.1:5060").as_deref(),
            Some("SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bK1;received=10.0.0.1")
        );
        assert_eq!(
            stamp("SIP/2.0/TCP pbx.example.com;branch=z9hG4bK1", "10.0.0.1:5060").as_deref(),
            Some("SIP/2.0/TCP pbx.example.com;branch=z9hG4bK1;received=10.0.0.1")
        );
        // IPv6: the value is written without brackets (RFC 3261 grammar,
        // RFC 5118 §4.5), and an old received is replaced, not repeated.
        assert_eq!(
            stamp("SIP/2.0/UDP [2001:db8::9:1]:6050;received=2001:db8::9:255;branch=z9hG4bKas3", "[::1]:6050")
                .as_deref(),
            Some("SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3;received=::1")
        );
    }

    #[test]
    fn a_bare_rport_gets_the_source_port_and_always_a_received() {
        assert_eq!(
            stamp("SIP/2.0/UDP 10.0.0.1:5060;rport;branch=z9hG4bK1", "10.0.0.1:40123").as_deref(),
            Some("SIP/2.0/UDP 10.0.0.1:5060;rport=40123;branch=z9hG4bK1;received=10.0.0.1")
        );
        let out = stamp("SIP/2.0/UDP 192.168.1.2:5060 ; branch=z9hG4bK1 ; rport", "203.0.113.9:61000").unwrap();
        let v = parse_via_parm(&out).expect("the stamped via-parm parses");
        assert_eq!((v.param("rport"), v.received, v.branch), (Some("61000"), Some("203.0.113.9"), Some("z9hG4bK1")));
    }
}
