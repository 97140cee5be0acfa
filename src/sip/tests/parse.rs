//! Parser behaviour on hand-written messages.

use bytes::Bytes;

use super::{fixture, parse_text, INVITE};
use crate::sip::{HeaderName, Method, Msg, ParseErrorKind as K};

#[test]
fn carrier_invite_with_compact_forms() {
    let m = parse_text(INVITE).unwrap();
    assert!(m.is_request());
    assert_eq!(m.method(), Some(Method::Invite));
    assert_eq!(m.method_str(), "INVITE");
    assert_eq!(m.request_uri(), Some("sip:+18005550100@10.0.0.1:5060;user=phone"));
    assert_eq!(m.request_uri_parts().unwrap().user, Some("+18005550100"));
    assert_eq!((m.status(), m.reason()), (None, None));
    assert_eq!(m.call_id(), "call-1@192.0.2.1");
    assert_eq!(m.cseq().seq, 7);
    assert_eq!(m.cseq().method, Method::Invite);
    assert_eq!(m.from_tag(), Some("ft1"));
    assert_eq!(m.to_tag(), None);
    assert_eq!(m.from_uri(), Some("sip:+13125550199@carrier.example;user=phone"));
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.via_count(), 3);
    let v = m.top_via().unwrap();
    assert_eq!(
        (v.transport, v.host, v.port, v.branch, v.rport),
        ("UDP", "192.0.2.1", Some(5060), Some("z9hG4bKa1"), true)
    );
    assert_eq!(v.raw, "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport");
    assert_eq!(m.routes().collect::<Vec<_>>(), ["sip:10.0.0.1;lr", "sip:10.0.0.2;lr", "sip:10.0.0.3;lr"]);
    assert_eq!(m.record_routes().collect::<Vec<_>>(), ["sip:192.0.2.1;lr"]);
    assert_eq!(m.contact_uri(), Some("sip:+13125550199@192.0.2.1:5060"));
    assert_eq!(m.p_asserted_identity_uri(), Some("sip:+13125550199@carrier.example"));
    assert_eq!(m.header(HeaderName::ContentType), Some("application/sdp"));
    assert_eq!(m.headers(HeaderName::Via).count(), 2);
    assert_eq!(m.header_by_name("x-flow-id"), Some("spoofed"));
    assert_eq!(m.header_by_name("Call-ID"), Some("call-1@192.0.2.1"));
    assert_eq!(m.header_by_name("content-length"), Some("4"));
    assert_eq!(m.header_by_name("X-Missing"), None);
    assert_eq!(m.body(), b"v=0\r");
}

#[test]
fn carrier_capture_fixture() {
    let raw = fixture("carrier_invite.sip");
    let m = Msg::parse(Bytes::from(raw.clone())).unwrap();
    assert_eq!(m.call_id(), "3c26700857e1-5a6b7c8d9e0f@203.0.113.5");
    assert_eq!(m.via_count(), 2);
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert_eq!(m.body().len(), m.header(HeaderName::ContentLength).unwrap().parse::<usize>().unwrap());
}

#[test]
fn response_accessors() {
    let m = parse_text(
        "SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKx
From: <sip:a@b>;tag=1
To: <sip:c@d>;tag=2
Call-ID: x
CSeq: 1 INVITE

",
    )
    .unwrap();
    assert!(!m.is_request());
    assert_eq!((m.status(), m.reason()), (Some(180), Some("Ringing")));
    assert_eq!((m.method(), m.method_str(), m.request_uri()), (None, "", None));
    assert_eq!(m.cseq().method, Method::Invite);
    assert_eq!(m.to_tag(), Some("2"));
    assert_eq!(m.max_forwards(), None);
    assert!(m.body().is_empty());
}

#[test]
fn content_length_rules_for_datagrams() {
    let base = "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 OPTIONS\n";
    // Shorter Content-Length: body truncated (extra bytes ignored).
    let m = parse_text(&format!("{base}Content-Length: 2\n\nabcdef")).unwrap();
    assert_eq!(m.body(), b"ab");
    // Missing: the rest of the datagram.
    assert_eq!(parse_text(&format!("{base}\nabcdef")).unwrap().body(), b"abcdef");
    let err = |cl: &str| parse_text(&format!("{base}Content-Length: {cl}\n\nabc")).unwrap_err().kind;
    assert_eq!(err("4"), K::BodyTooShort);
    assert_eq!(err("-1"), K::BadContentLength);
    assert_eq!(err("x"), K::BadContentLength);
    assert_eq!(err("99999999999999999999"), K::BadContentLength);
    assert_eq!(err(""), K::BadContentLength);
}

#[test]
fn errors_name_the_problem_and_keep_a_reply_context() {
    let e = parse_text("INVITE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:b@c>\nCSeq: 1 INVITE\n\n")
        .unwrap_err();
    assert_eq!(e.kind, K::MissingHeader(HeaderName::CallId));
    assert_eq!(e.status(), 400);
    assert_eq!(e.reason_phrase(), "Bad Request - missing Call-ID header");
    let ctx = e.reply.expect("Via, From, To, CSeq were readable");
    assert!(ctx.is_request && !ctx.is_ack);
    assert_eq!(ctx.vias.len(), 1);
    assert!(ctx.call_id.is_none() && ctx.cseq.is_some());

    // No Via at all: nothing to answer with.
    let e = parse_text("INVITE sip:a@b SIP/2.0\nCall-ID: x\n\n").unwrap_err();
    assert_eq!(e.kind, K::MissingHeader(HeaderName::Via));
    assert!(e.reply.is_none());
}

#[test]
fn request_line_errors() {
    let tail = "\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 OPTIONS\n\n";
    let kind = |sl: &str| parse_text(&format!("{sl}{tail}")).map(|_| ()).map_err(|e| (e.kind, e.status()));
    assert_eq!(kind("OPTIONS sip:a@b SIP/2.0"), Ok(()));
    assert_eq!(kind("OPTIONS sip:a@b SIP/3.0"), Err((K::UnsupportedVersion, 505)));
    assert_eq!(kind("OPTIONS sip:a@b HTTP/1.1"), Err((K::BadStartLine, 400)));
    assert_eq!(kind("OPTIONS  sip:a@b SIP/2.0"), Err((K::BadStartLine, 400)));
    assert_eq!(kind("OPTIONS sip:a@b"), Err((K::BadStartLine, 400)));
    assert_eq!(kind("OPTIONS mailto:a@b SIP/2.0"), Err((K::UnsupportedUriScheme, 416)));
    assert_eq!(kind("OPTIONS sip:a@b?x=y SIP/2.0"), Err((K::BadRequestUri, 400)));
    assert_eq!(kind("OPT<IONS sip:a@b SIP/2.0"), Err((K::BadStartLine, 400)));
    assert_eq!(kind("INVITE sip:a@b SIP/2.0"), Err((K::CSeqMethodMismatch, 400)));
    assert_eq!(kind("SIP/2.0 99 Low"), Err((K::BadStatusCode, 400)));
    assert_eq!(kind("SIP/2.0 200 OK"), Ok(()));
    assert_eq!(kind("SIP/3.0 200 OK"), Err((K::UnsupportedVersion, 505)));
}

#[test]
fn scalar_limits() {
    let msg = |cseq: &str, mf: &str| {
        parse_text(&format!(
            "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: {cseq}\nMax-Forwards: {mf}\n\n"
        ))
        .map(|m| (m.cseq().seq, m.max_forwards()))
        .map_err(|e| e.kind)
    };
    assert_eq!(msg("4294967295 OPTIONS", "255"), Ok((u32::MAX, Some(255))));
    assert_eq!(msg("4294967296 OPTIONS", "1"), Err(K::BadCSeq));
    assert_eq!(msg("1OPTIONS", "1"), Err(K::BadCSeq));
    assert_eq!(msg("OPTIONS", "1"), Err(K::BadCSeq));
    assert_eq!(msg("1 OPTIONS x", "1"), Err(K::BadCSeq));
    assert_eq!(msg("1 OPTIONS", "256"), Err(K::BadMaxForwards));
    assert_eq!(msg("1 OPTIONS", "-1"), Err(K::BadMaxForwards));
    assert_eq!(msg("1 OPTIONS", "0"), Ok((1, Some(0))));
}

#[test]
fn folding_and_leading_crlf() {
    let m = parse_text("\n\nOPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h\n ;branch=z9hG4bK9\nFrom: <sip:a@b>\n\t;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1\n OPTIONS\nSubject: a\n  b\n\n").unwrap();
    assert_eq!(m.top_via().unwrap().branch, Some("z9hG4bK9"));
    assert_eq!(m.from_tag(), Some("1"));
    assert_eq!(m.header(HeaderName::Subject), Some("a    b"));
    assert!(m.buf().starts_with(b"OPTIONS "));
    // A continuation line right after the start line continues nothing.
    let e = parse_text("OPTIONS sip:a@b SIP/2.0\n Via: SIP/2.0/UDP h\n\n").unwrap_err();
    assert_eq!(e.kind, K::BadHeaderLine);
}

#[test]
fn malformed_framing() {
    assert_eq!(Msg::parse(Bytes::new()).unwrap_err().kind, K::Empty);
    assert_eq!(Msg::parse(Bytes::from_static(b"\r\n\r\n")).unwrap_err().kind, K::Empty);
    let e = Msg::parse(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\n")).unwrap_err();
    assert_eq!(e.kind, K::Unterminated);
    assert!(e.reply.is_some());
    let e = Msg::parse(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\n\r\n")).unwrap_err();
    assert_eq!(e.kind, K::BadHeaderLine);
    let e = Msg::parse(Bytes::from_static(b"OPTIONS sip:a@b SIP/2.0\r\nNoColon\r\n\r\n")).unwrap_err();
    assert_eq!(e.kind, K::BadHeaderLine);
    let mut big = b"OPTIONS sip:a@b SIP/2.0\r\n".to_vec();
    for _ in 0..300 {
        big.extend_from_slice(b"X: y\r\n");
    }
    big.extend_from_slice(b"\r\n");
    let e = Msg::parse(Bytes::from(big)).unwrap_err();
    assert_eq!((e.kind, e.status(), e.reason_phrase().as_str()), (K::TooLarge, 513, "Message Too Large"));
    let non_utf8 = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nSubject: \xff\r\n\r\n".to_vec();
    assert_eq!(Msg::parse(Bytes::from(non_utf8)).unwrap_err().kind, K::NotUtf8);
    // Bodies may be binary.
    let mut bin = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nl: 2\r\n\r\n".to_vec();
    bin.extend_from_slice(&[0xff, 0x00]);
    assert_eq!(Msg::parse(Bytes::from(bin)).unwrap().body(), &[0xff, 0x00]);
}

#[test]
fn reason_phrases_never_break_lines() {
    for kind in [K::BadVia, K::DuplicateHeader(HeaderName::CSeq), K::MissingHeader(HeaderName::To), K::BodyTooShort] {
        let e = crate::sip::ParseError { kind, reply: None };
        let r = e.reason_phrase();
        assert!(r.starts_with("Bad Request - ") && !r.contains(['\r', '\n']), "{r}");
    }
}

#[test]
fn bare_cr_in_a_value_is_rejected() {
    let raw = b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 OPTIONS\r\nX-Evil: a\rVia: SIP/2.0/UDP evil\r\n\r\n";
    assert_eq!(Msg::parse(Bytes::from_static(raw)).unwrap_err().kind, K::BadHeaderLine);
}

#[test]
fn cr_count_matches_a_plain_count() {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for len in [0, 1, 63, 64, 65, 127, 128, 129, 300, 1000] {
        let data: Vec<u8> = (0..len)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                if rng % 5 == 0 {
                    b'\r'
                } else {
                    rng as u8
                }
            })
            .collect();
        let plain = data.iter().filter(|&&c| c == b'\r').count();
        assert_eq!(crate::sip::parse::count_cr(&data), plain, "len {len}");
    }
}
