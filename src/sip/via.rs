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
}
