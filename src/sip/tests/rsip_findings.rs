//! What rsip 0.4 (the parser named in the design) does with the inputs our
//! edge must handle. Recorded first, as the style guide asks, to decide
//! where rsip can serve. Findings:
//!
//! 1. Header names are matched in long form only: compact `v:`, `f:`,
//!    `t:`, `i:`, `l:` come out as `Header::Other`, so the typed accessors
//!    (`via_header`, `call_id_header`, ...) report the header as missing.
//! 2. A header line is `token ":" value`: whitespace before the colon (RFC
//!    4475 wsinv, longreq) makes the whole message fail to parse.
//! 3. `rsip::Uri` rejects bracketed IPv6 hosts and `tel:` numbers, reads an
//!    escaped or `;`-bearing user part as the host, and accepts
//!    `<sip:...>` and embedded spaces.
//!
//! Hence `sip::parse` is our own scanner and `sip::uri` our own URI reader;
//! rsip stays as the baseline in `benches/parse.rs`.

use rsip::prelude::*;

const COMPACT: &str = "INVITE sip:+18005550100@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
f: <sip:a@example.com>;tag=1\r\n\
t: <sip:b@example.com>\r\n\
i: abc@10.0.0.1\r\n\
CSeq: 1 INVITE\r\n\
l: 0\r\n\r\n";

#[test]
fn rsip_reads_compact_forms_as_unknown_headers() {
    let req = rsip::Request::try_from(COMPACT.as_bytes()).expect("rsip parses the message");
    let others: Vec<String> = req
        .headers
        .iter()
        .filter_map(|h| match h {
            rsip::Header::Other(name, _) => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(others, ["v", "f", "t", "i", "l"]);
    assert!(req.call_id_header().is_err(), "compact i: is invisible to the typed accessor");
    assert!(req.via_header().is_err(), "compact v: is invisible to the typed accessor");
    assert!(req.from_header().is_err());
    assert!(req.cseq_header().is_ok(), "CSeq has no compact form");

    // Our scanner reads the same message fully.
    let msg = crate::sip::Msg::parse(bytes::Bytes::from_static(COMPACT.as_bytes())).unwrap();
    assert_eq!(msg.call_id(), "abc@10.0.0.1");
    assert_eq!(msg.top_via().unwrap().branch, Some("z9hG4bK1"));
    assert_eq!(msg.from_tag(), Some("1"));
}

#[test]
fn rsip_rejects_whitespace_before_the_colon() {
    let msg = COMPACT.replace("CSeq: 1", "CSeq : 1");
    assert!(rsip::Request::try_from(msg.as_bytes()).is_err());
    assert!(crate::sip::Msg::parse(bytes::Bytes::from(msg)).is_ok());
}

#[test]
fn rsip_uri_misreads_torture_uris() {
    // Rejected although valid (RFC 5118 ipv6-good, port-unambiguous; tel).
    for valid in ["sip:[2001:db8::10]", "sip:[2001:db8::10]:5070", "tel:+18005550100"] {
        assert!(rsip::Uri::try_from(valid).is_err(), "{valid}");
        assert!(crate::sip::parse_uri(valid).is_some(), "{valid}");
    }
    // Accepted although invalid (RFC 4475 ltgtruri; embedded space).
    for invalid in ["<sip:user@example.com>", "sip:user@ho st"] {
        assert!(rsip::Uri::try_from(invalid).is_ok(), "{invalid}");
        assert!(crate::sip::parse_uri(invalid).is_none(), "{invalid}");
    }
    // The escaped user of RFC 4475 esc01 becomes rsip's host.
    let u = rsip::Uri::try_from("sip:sips%3Auser%40example.com@example.net").unwrap();
    assert!(u.auth.is_none());
    assert_eq!(u.host().to_string(), "sips%3Auser%40example.com@example.net");
    let ours = crate::sip::parse_uri("sip:sips%3Auser%40example.com@example.net").unwrap();
    assert_eq!((ours.user, ours.host), (Some("sips%3Auser%40example.com"), "example.net"));
}
