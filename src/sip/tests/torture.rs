//! RFC 4475 and RFC 5118 torture messages, each with the outcome its RFC
//! section gives, plus a no-panic property over prefixes and mutations.

use bytes::Bytes;

use super::fixture;
use crate::sip::build::{self, ForwardEdits};
use crate::sip::framing::next_frame;
use crate::sip::{HeaderName, Method, Msg, ParseErrorKind as K};

/// What the RFC says a parser (in a proxy) should do with a message.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Well-formed: must parse.
    Valid,
    /// Well-formed, but a proxy rejects it later with this status
    /// (not the parser's job).
    ValidProxyRejects(u16),
    /// Malformed: the parser rejects it with this kind and status.
    Invalid(K, u16),
}
use Expect::*;

const RFC4475: &[(&str, Expect, &str)] = &[
    // 3.1.1 Valid messages.
    ("wsinv", Valid, "3.1.1.1 short tortuous INVITE: LWS, folding, compact forms"),
    ("intmeth", Valid, "3.1.1.2 wide range of valid characters"),
    ("esc01", Valid, "3.1.1.3 valid use of % escaping"),
    ("escnull", Valid, "3.1.1.4 escaped nulls in URIs"),
    ("esc02", Valid, "3.1.1.5 % that is not an escape: method RE%47IST%45R is not REGISTER"),
    ("lwsdisp", Valid, "3.1.1.6 no LWS between display name and <"),
    ("longreq", Valid, "3.1.1.7 long values in header fields"),
    ("dblreq", Valid, "3.1.1.8 extra trailing octets in a UDP datagram: ignored"),
    ("semiuri", Valid, "3.1.1.9 semicolon-separated parameters in URI user part"),
    ("transports", Valid, "3.1.1.10 varied and unknown transport types"),
    ("mpart01", Valid, "3.1.1.11 multipart MIME body (binary)"),
    ("unreason", Valid, "3.1.1.12 unusual (UTF-8) reason phrase"),
    ("noreason", Valid, "3.1.1.13 empty reason phrase"),
    // 3.1.2 Invalid messages.
    ("badinv01", Invalid(K::BadVia, 400), "3.1.2.1 extraneous header field separators"),
    ("clerr", Invalid(K::BodyTooShort, 400), "3.1.2.2 Content-Length larger than message"),
    ("ncl", Invalid(K::BadContentLength, 400), "3.1.2.3 negative Content-Length"),
    ("scalar02", Invalid(K::BadCSeq, 400), "3.1.2.4 request scalar fields with overlarge values"),
    ("scalarlg", Invalid(K::BadCSeq, 400), "3.1.2.5 response scalar fields overlarge: dropped"),
    ("quotbal", Invalid(K::BadTo, 400), "3.1.2.6 unterminated quoted string in display name"),
    ("ltgtruri", Invalid(K::BadRequestUri, 400), "3.1.2.7 <> enclosing Request-URI"),
    ("lwsruri", Invalid(K::BadStartLine, 400), "3.1.2.8 malformed SIP Request-URI (embedded LWS)"),
    ("lwsstart", Invalid(K::BadStartLine, 400), "3.1.2.9 multiple SP separating Request-Line elements"),
    ("trws", Invalid(K::BadStartLine, 400), "3.1.2.10 SP characters at end of Request-Line"),
    ("escruri", Invalid(K::BadRequestUri, 400), "3.1.2.11 escaped headers in SIP Request-URI"),
    ("baddate", Valid, "3.1.2.12 invalid time zone in Date: a proxy forwards it, Date is not ours"),
    ("regbadct", Invalid(K::BadContact, 400), "3.1.2.13 name-addr URI with ? not enclosed in <>"),
    ("badaspec", Invalid(K::BadTo, 400), "3.1.2.14 spaces within addr-spec"),
    ("baddn", Invalid(K::BadFrom, 400), "3.1.2.15 non-token characters in display name"),
    ("badvers", Invalid(K::UnsupportedVersion, 505), "3.1.2.16 unknown protocol version"),
    ("mismatch01", Invalid(K::CSeqMethodMismatch, 400), "3.1.2.17 start line and CSeq method mismatch"),
    ("mismatch02", Invalid(K::CSeqMethodMismatch, 400), "3.1.2.18 unknown method with CSeq mismatch"),
    ("bigcode", Invalid(K::BadStatusCode, 400), "3.1.2.19 overlarge response code: dropped"),
    // 3.2 Transaction layer semantics.
    ("badbranch", Valid, "3.2.1 missing transaction identifier (branch without cookie)"),
    // 3.3 Application layer semantics.
    ("insuf", Invalid(K::MissingHeader(HeaderName::From), 400), "3.3.1 missing required header fields"),
    ("unkscm", Invalid(K::UnsupportedUriScheme, 416), "3.3.2 Request-URI with unknown scheme"),
    ("novelsc", Invalid(K::UnsupportedUriScheme, 416), "3.3.3 known but atypical scheme: not ours"),
    ("unksm2", ValidProxyRejects(405), "3.3.4 unknown URI schemes in header fields; REGISTER not handled"),
    ("bext01", ValidProxyRejects(420), "3.3.5 Proxy-Require and Require: 420 Bad Extension"),
    ("invut", Valid, "3.3.6 unknown Content-Type: the UAS answers 415, a proxy forwards"),
    ("regaut01", ValidProxyRejects(405), "3.3.7 unknown authorization scheme; REGISTER not handled"),
    ("multi01", Invalid(K::DuplicateHeader(HeaderName::CSeq), 400), "3.3.8 multiple values in single-value fields"),
    ("mcl01", Invalid(K::DuplicateHeader(HeaderName::ContentLength), 400), "3.3.9 multiple Content-Length values"),
    ("bcast", Valid, "3.3.10 200 OK with broadcast Via: the proxy must not send to it"),
    ("zeromf", ValidProxyRejects(483), "3.3.11 Max-Forwards of zero: 483 Too Many Hops"),
    ("cparam01", ValidProxyRejects(405), "3.3.12 REGISTER with a contact header parameter"),
    ("cparam02", ValidProxyRejects(405), "3.3.13 REGISTER with a url-parameter"),
    ("regescrt", ValidProxyRejects(405), "3.3.14 REGISTER with a URL escaped header"),
    ("sdp01", Valid, "3.3.15 unacceptable Accept offering: the UAS answers 406"),
    // 3.4 Backward compatibility.
    ("inv2543", Valid, "3.4.1 INVITE with RFC 2543 syntax (no branch cookie, no tags)"),
];

const RFC5118: &[(&str, Expect, &str)] = &[
    ("ipv6-good", Valid, "4.1 valid SIP message with an IPv6 reference"),
    ("ipv6-bad", Invalid(K::BadRequestUri, 400), "4.2 IPv6 address without brackets in the Request-URI"),
    ("port-ambiguous", Valid, "4.3 well-formed: [2001:db8::10:5070] is an address without a port"),
    ("port-unambiguous", Valid, "4.4 [2001:db8::10]:5070"),
    ("via-received-param-with-delim", Valid, "4.5 received=[...]: must be accepted with or without brackets"),
    ("via-received-param-no-delim", Valid, "4.5 received=2001:db8::9:255"),
    ("ipv6-in-sdp", Valid, "4.6 IPv6 addresses in SDP"),
    ("mult-ip-in-header", Valid, "4.7 multiple IP addresses in SIP headers"),
    ("mult-ip-in-sdp", Valid, "4.8 multiple IP addresses in SDP"),
    ("ipv4-mapped-ipv6", Valid, "4.9 IPv4-mapped IPv6 addresses"),
    ("ipv6-correct-abnf-2-colons", Valid, "4.10 correct IPv6 reference"),
    (
        "ipv6-bug-abnf-3-colons",
        Valid,
        "4.10 RFC 3261 ABNF bug: \"an implementation must tolerate both\" (ersip rejects it)",
    ),
];

fn load(dir: &str, name: &str) -> Bytes {
    Bytes::from(fixture(&format!("torture/{dir}/{name}.dat")))
}

/// Builders must turn every valid request into something that parses.
fn exercise_builders(m: &Msg) {
    if m.is_request() {
        let r = Msg::parse(build::response(m, 200, "OK", Some("t"), &[])).expect("response parses");
        assert_eq!(r.call_id(), m.call_id());
        let edits = ForwardEdits {
            via: "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKt",
            record_route: Some("<sip:127.0.0.1;lr>"),
            max_forwards: 10,
            pop_routes: 1,
            from_display: Some("ACME"),
            ..ForwardEdits::default()
        };
        let f = Msg::parse(build::forward_request(m, &edits)).expect("forwarded request parses");
        assert_eq!((f.via_count(), f.body()), (m.via_count() + 1, m.body()));
        if m.method() == Some(Method::Invite) {
            Msg::parse(build::cancel_for(m)).expect("CANCEL parses");
        }
    } else if m.via_count() > 1 {
        let f = Msg::parse(build::forward_response(m)).expect("forwarded response parses");
        assert_eq!(f.via_count(), m.via_count() - 1);
    }
}

fn check(dir: &str, table: &[(&str, Expect, &str)]) {
    for &(name, expect, why) in table {
        let result = Msg::parse(load(dir, name));
        match (expect, result) {
            (Valid | ValidProxyRejects(_), Ok(m)) => {
                assert!(!m.call_id().is_empty() && m.top_via().is_some(), "{name}");
                // The proxy has what it needs to give its answer.
                match expect {
                    ValidProxyRejects(483) => assert_eq!(m.max_forwards(), Some(0), "{name}"),
                    ValidProxyRejects(420) => assert!(m.header(HeaderName::ProxyRequire).is_some(), "{name}"),
                    ValidProxyRejects(405) => assert_eq!(m.method(), Some(Method::Register), "{name}"),
                    _ => {}
                }
                exercise_builders(&m);
            }
            (Invalid(kind, status), Err(e)) => {
                assert_eq!((e.kind, e.status()), (kind, status), "{name}: {why}");
                if e.reply.as_ref().is_some_and(|c| c.is_request) {
                    let ctx = e.reply.as_ref().unwrap();
                    let out = build::response_from_ctx(ctx, e.status(), &e.reason_phrase(), None);
                    assert!(out.starts_with(format!("SIP/2.0 {status} ").as_bytes()), "{name}");
                }
            }
            (expect, Ok(_)) => panic!("{name} ({why}): expected {expect:?}, parsed OK"),
            (expect, Err(e)) => panic!("{name} ({why}): expected {expect:?}, got {e:?}"),
        }
    }
}

#[test]
fn rfc4475_table() {
    let files =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sip/torture/rfc4475")).unwrap().count();
    assert_eq!(files, RFC4475.len(), "every fixture has a row");
    check("rfc4475", RFC4475);
}

#[test]
fn rfc5118_table() {
    let files =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sip/torture/rfc5118")).unwrap().count();
    assert_eq!(files, RFC5118.len(), "every fixture has a row");
    check("rfc5118", RFC5118);
}

#[test]
fn wsinv_fields() {
    let m = Msg::parse(load("rfc4475", "wsinv")).unwrap();
    assert_eq!(m.call_id(), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!((m.cseq().seq, m.cseq().method), (9, Method::Invite));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.to_tag(), Some("1918181833n"));
    assert_eq!(m.from_tag(), Some("98asjd8"));
    assert_eq!(m.to_uri(), Some("sip:vivekg@chair-dnrc.example.com"));
    assert_eq!(m.via_count(), 3);
    let v = m.top_via().unwrap();
    assert_eq!((v.transport, v.host, v.branch), ("UDP", "192.0.2.2", Some("390skdjuw")));
    assert_eq!(m.routes().collect::<Vec<_>>(), ["sip:services.example.com;lr;unknownwith=value;unknown-no-value"]);
    assert_eq!(m.contact_uri(), Some("sip:jdrosen@example.com"));
    assert_eq!(m.header(HeaderName::Subject), Some(""));
    assert_eq!(m.header_by_name("newfangledheader").map(|v| v.ends_with("continued newfangled value")), Some(true));
    assert_eq!(m.body().len(), 150);
}

#[test]
fn other_torture_fields() {
    let m = Msg::parse(load("rfc4475", "esc02")).unwrap();
    assert_eq!((m.method(), m.method_str()), (Some(Method::Other), "RE%47IST%45R"));
    assert_eq!(m.headers(HeaderName::Contact).count(), 2, "C%6Fntact is an extension header");
    let m = Msg::parse(load("rfc4475", "longreq")).unwrap();
    assert_eq!(m.via_count(), 34);
    assert_eq!(m.body().len(), 150);
    let m = Msg::parse(load("rfc4475", "dblreq")).unwrap();
    assert_eq!((m.method(), m.body().len()), (Some(Method::Register), 0));
    let m = Msg::parse(load("rfc4475", "mpart01")).unwrap();
    assert_eq!(m.body().len(), 553);
    let m = Msg::parse(load("rfc4475", "noreason")).unwrap();
    assert_eq!((m.status(), m.reason()), (Some(100), Some("")));
    let m = Msg::parse(load("rfc4475", "zeromf")).unwrap();
    assert_eq!(m.max_forwards(), Some(0));
    let m = Msg::parse(load("rfc5118", "port-ambiguous")).unwrap();
    let u = m.request_uri_parts().unwrap();
    assert_eq!((u.host, u.port), ("[2001:db8::10:5070]", None));
    let m = Msg::parse(load("rfc5118", "mult-ip-in-header")).unwrap();
    assert_eq!(m.top_via().unwrap().port, Some(6050));
    // Bad responses are dropped: no request context to answer.
    let e = Msg::parse(load("rfc4475", "bigcode")).unwrap_err();
    assert!(!e.reply.unwrap().is_request);
}

/// Deterministic xorshift64*.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Everything a caller might do with an input must not panic.
fn poke(bytes: &[u8]) {
    let _ = next_frame(bytes, 4096);
    match Msg::parse(Bytes::copy_from_slice(bytes)) {
        Ok(m) => {
            let _ = (m.top_via(), m.from_tag(), m.to_tag(), m.contact_uri(), m.p_asserted_identity_uri());
            let _ = (m.routes().count(), m.record_routes().count(), m.request_uri_parts());
            let _ = build::forward_response(&m);
            let _ = (build::cancel_for(&m), build::ack_for_non2xx(&m, &m));
            // Whatever we accept, we can answer and forward without breaking it.
            if m.is_request() {
                let r = Msg::parse(build::response(&m, 400, "x", Some("t"), &[])).expect("response parses");
                assert_eq!((r.call_id(), r.via_count()), (m.call_id(), m.via_count()));
                let edits = ForwardEdits {
                    via: "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKf",
                    pop_routes: 2,
                    from_display: Some("d"),
                    ..Default::default()
                };
                let f = Msg::parse(build::forward_request(&m, &edits)).expect("forwarded request parses");
                assert_eq!((f.via_count(), f.body()), (m.via_count() + 1, m.body()));
            }
        }
        Err(e) => {
            let _ = e.reason_phrase();
            if let Some(ctx) = &e.reply {
                let _ = build::response_from_ctx(ctx, e.status(), "x", Some("t"));
            }
        }
    }
}

#[test]
fn no_panic_on_prefixes_and_mutations() {
    const SPICE: &[u8] = b"\r\n \t:;,<>\"\\[]%@=/0";
    let seeds = [
        load("rfc4475", "wsinv"),
        load("rfc4475", "intmeth"),
        load("rfc4475", "esc01"),
        load("rfc5118", "mult-ip-in-header"),
        Bytes::from(fixture("carrier_invite.sip")),
    ];
    for seed in &seeds {
        for cut in 0..=seed.len() {
            poke(&seed[..cut]);
        }
    }
    // SIP_MUTATIONS=1000000 runs a longer campaign locally.
    let rounds = std::env::var("SIP_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..rounds {
        let mut m = seeds[i % seeds.len()].to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len());
            match rng.below(4) {
                0 => m[at] = rng.next() as u8,
                1 => m[at] = SPICE[rng.below(SPICE.len())],
                2 => {
                    m.remove(at);
                }
                _ => m.insert(at, SPICE[rng.below(SPICE.len())]),
            }
        }
        poke(&m);
    }
}
