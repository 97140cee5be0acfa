//! Every builder's output parses back with the fields it promises.

use bytes::Bytes;

use super::{parse_text, INVITE};
use crate::sip::build::{self, ForwardEdits};
use crate::sip::{HeaderName, Method, Msg};

fn reparse(b: Bytes) -> Msg {
    Msg::parse(b.clone()).unwrap_or_else(|e| panic!("{e:?}\n{}", String::from_utf8_lossy(&b)))
}

#[test]
fn response_echoes_every_via_and_adds_the_to_tag() {
    let req = parse_text(INVITE).unwrap();
    let out = build::response(&req, 486, "Busy Here", Some("edge1"), &[("Retry-After", "30")]);
    let text = std::str::from_utf8(&out).unwrap();
    assert!(text.starts_with("SIP/2.0 486 Busy Here\r\n"));
    let r = reparse(out.clone());
    assert_eq!((r.status(), r.reason()), (Some(486), Some("Busy Here")));
    assert_eq!(r.via_count(), 3);
    assert_eq!(r.headers(HeaderName::Via).collect::<Vec<_>>(), req.headers(HeaderName::Via).collect::<Vec<_>>());
    assert_eq!(r.to_tag(), Some("edge1"));
    assert_eq!(r.from_tag(), Some("ft1"));
    assert_eq!(r.call_id(), req.call_id());
    assert_eq!(r.cseq(), req.cseq());
    assert_eq!(r.header(HeaderName::RetryAfter), Some("30"));
    assert_eq!(r.header(HeaderName::ContentLength), Some("0"));
    assert!(r.body().is_empty());
    // An existing To tag is kept, not doubled.
    let r2 = reparse(build::response(&r_as_request_with_to_tag(), 200, "OK", Some("other"), &[]));
    assert_eq!(r2.to_tag(), Some("keep"));
}

fn r_as_request_with_to_tag() -> Msg {
    parse_text("BYE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=keep\nCall-ID: x\nCSeq: 2 BYE\n\n").unwrap()
}

#[test]
fn response_reason_cannot_inject_headers() {
    let req = parse_text(INVITE).unwrap();
    let out = build::response(&req, 400, "Bad\r\nX-Evil: 1", None, &[]);
    let r = reparse(out);
    assert_eq!(r.reason(), Some("Bad  X-Evil: 1"));
    assert_eq!(r.header_by_name("X-Evil"), None);
}

#[test]
fn response_from_ctx_answers_a_bad_request() {
    let e = parse_text("INVITE sip:a@b SIP/2.0\nv: SIP/2.0/UDP h;branch=z9hG4bK1\nVia: SIP/2.0/UDP g;branch=z9hG4bK0\nFrom: <sip:a@b>;tag=1\nTo: <sip:c@d>\nCall-ID: x\nCSeq: 1 BYE\n\n")
        .unwrap_err();
    let ctx = e.reply.as_ref().unwrap();
    let out = build::response_from_ctx(ctx, e.status(), &e.reason_phrase(), Some("t9"));
    let r = reparse(out);
    assert_eq!(r.status(), Some(400));
    assert_eq!(r.reason(), Some("Bad Request - CSeq method does not match the request method"));
    assert_eq!(r.via_count(), 2);
    assert_eq!(r.to_tag(), Some("t9"));
    assert_eq!((r.call_id(), r.cseq().seq, r.cseq().method), ("x", 1, Method::Bye));
}

#[test]
fn forward_request_applies_every_edit_and_keeps_the_rest() {
    let req = parse_text(INVITE).unwrap();
    let edits = ForwardEdits {
        request_uri: Some("sip:+18005550100@10.9.9.9:5060"),
        via: "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKedge",
        record_route: Some("<sip:10.0.0.1:5060;lr>"),
        pop_routes: 2,
        max_forwards: 69,
        add: &[("X-Flow-Id", "flow-7"), ("X-Number-Kind", "toll-free")],
        remove: &["x-flow-id"],
        from_display: Some("ACME \"Inc\""),
        upstream_via: None,
    };
    let out = build::forward_request(&req, &edits);
    let f = reparse(out.clone());
    assert_eq!(f.request_uri(), Some("sip:+18005550100@10.9.9.9:5060"));
    assert_eq!(f.via_count(), 4);
    assert_eq!(f.top_via().unwrap().branch, Some("z9hG4bKedge"));
    assert_eq!(f.max_forwards(), Some(69));
    assert_eq!(f.routes().collect::<Vec<_>>(), ["sip:10.0.0.3;lr"]);
    assert_eq!(f.record_routes().collect::<Vec<_>>(), ["sip:10.0.0.1:5060;lr", "sip:192.0.2.1;lr"]);
    assert_eq!(f.header_by_name("X-Flow-Id"), Some("flow-7"));
    assert_eq!(f.headers(HeaderName::Other).filter(|v| *v == "spoofed").count(), 0);
    assert_eq!(f.header_by_name("X-Number-Kind"), Some("toll-free"));
    assert_eq!(
        f.header(HeaderName::From),
        Some(r#""ACME \"Inc\"" <sip:+13125550199@carrier.example;user=phone>;tag=ft1"#)
    );
    assert_eq!(f.from_tag(), Some("ft1"));
    assert_eq!(
        f.header(HeaderName::PAssertedIdentity),
        Some(r#""ACME \"Inc\"" <sip:+13125550199@carrier.example>, "ACME \"Inc\"" <tel:+13125550199>"#)
    );
    assert_eq!(f.body(), req.body());
    assert_eq!(f.header(HeaderName::ContentLength), Some("4"));
    assert_eq!((f.call_id(), f.cseq()), (req.call_id(), req.cseq()));
    // Untouched lines are byte-for-byte the same (compact names included).
    let text = std::str::from_utf8(&out).unwrap();
    for line in [
        "t: <sip:+18005550100@carrier.example>",
        "i: call-1@192.0.2.1",
        "m: <sip:+13125550199@192.0.2.1:5060>",
        "c: application/sdp",
    ] {
        assert!(text.contains(&format!("{line}\r\n")), "{line}");
    }
    assert!(text.starts_with(
        "INVITE sip:+18005550100@10.9.9.9:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKedge\r\n"
    ));
}

#[test]
fn forward_request_minimal_edits() {
    let req = parse_text("OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nRoute: <sip:me;lr>\nFrom: a <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 OPTIONS\n\nbody").unwrap();
    let edits = ForwardEdits {
        via: "SIP/2.0/TCP me;branch=z9hG4bK2",
        max_forwards: 70,
        pop_routes: 5,
        record_route: Some("<sip:me;lr>"),
        ..ForwardEdits::default()
    };
    let f = reparse(build::forward_request(&req, &edits));
    assert_eq!(f.request_uri(), Some("sip:a@b"));
    assert_eq!(f.max_forwards(), Some(70), "added when absent");
    assert_eq!(f.routes().count(), 0, "the whole Route line went");
    assert_eq!(f.record_routes().collect::<Vec<_>>(), ["sip:me;lr"]);
    assert_eq!(f.header(HeaderName::From), Some("a <sip:a@b>;tag=1"));
    assert_eq!(f.body(), b"body");
    assert_eq!(f.header(HeaderName::ContentLength), Some("4"), "added for the datagram body");
}

#[test]
fn forward_response_pops_exactly_one_via_parm() {
    let list = "SIP/2.0 200 OK\nv: SIP/2.0/UDP me;branch=z9hG4bK1 , SIP/2.0/UDP up;branch=z9hG4bK0\nVia: SIP/2.0/UDP far;branch=z9hG4bKf\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\nl: 3\n\nabcEXTRA";
    let resp = parse_text(list).unwrap();
    let out = build::forward_response(&resp);
    let f = reparse(out.clone());
    assert_eq!(f.via_count(), 2);
    assert_eq!(f.top_via().unwrap().host, "up");
    assert_eq!(
        f.headers(HeaderName::Via).collect::<Vec<_>>(),
        ["SIP/2.0/UDP up;branch=z9hG4bK0", "SIP/2.0/UDP far;branch=z9hG4bKf"]
    );
    assert_eq!(f.body(), b"abc");
    assert!(!out.ends_with(b"EXTRA"));

    let single = reparse(build::forward_response(&f));
    assert_eq!(single.via_count(), 1);
    assert_eq!(single.top_via().unwrap().host, "far");
    assert_eq!(single.headers(HeaderName::Via).count(), 1, "the whole line went");
    assert_eq!((single.status(), single.to_tag(), single.body()), (Some(200), Some("2"), &b"abc"[..]));

    // Without Content-Length (UDP) one is added so the response can go on TCP.
    let no_cl = parse_text("SIP/2.0 180 Ringing\nVia: SIP/2.0/UDP me\nVia: SIP/2.0/UDP up\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>\nCall-ID: x\nCSeq: 1 INVITE\n\nsdp").unwrap();
    let f = reparse(build::forward_response(&no_cl));
    assert_eq!((f.header(HeaderName::ContentLength), f.body()), (Some("3"), &b"sdp"[..]));
}

#[test]
fn ack_for_non2xx_follows_17_1_1_3() {
    let invite = parse_text(INVITE).unwrap();
    let resp = parse_text("SIP/2.0 486 Busy\nv: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport\nFrom: x <sip:a@b>;tag=ft1\nTo: <sip:+18005550100@carrier.example>;tag=uas9\nCall-ID: call-1@192.0.2.1\nCSeq: 7 INVITE\n\n").unwrap();
    let a = reparse(build::ack_for_non2xx(&invite, &resp));
    assert_eq!(a.method(), Some(Method::Ack));
    assert_eq!(a.request_uri(), invite.request_uri());
    assert_eq!(a.via_count(), 1);
    assert_eq!(a.top_via().unwrap().raw, invite.top_via().unwrap().raw);
    assert_eq!(a.routes().collect::<Vec<_>>(), invite.routes().collect::<Vec<_>>());
    assert_eq!(a.header(HeaderName::From), invite.header(HeaderName::From));
    assert_eq!(a.to_tag(), Some("uas9"));
    assert_eq!(a.call_id(), invite.call_id());
    assert_eq!((a.cseq().seq, a.cseq().method), (7, Method::Ack));
    assert_eq!(a.max_forwards(), Some(70));
    assert!(a.body().is_empty());
}

#[test]
fn cancel_follows_9_1() {
    let invite = parse_text(INVITE).unwrap();
    let c = reparse(build::cancel_for(&invite));
    assert_eq!(c.method(), Some(Method::Cancel));
    assert_eq!(c.request_uri(), invite.request_uri());
    assert_eq!(c.via_count(), 1);
    assert_eq!(c.top_via().unwrap().branch, Some("z9hG4bKa1"));
    assert_eq!(c.header(HeaderName::To), invite.header(HeaderName::To));
    assert_eq!(c.to_tag(), None);
    assert_eq!(c.routes().count(), 3);
    assert_eq!((c.cseq().seq, c.cseq().method), (7, Method::Cancel));
    assert_eq!(c.header(HeaderName::ContentLength), Some("0"));
}

#[test]
fn new_request_for_probes() {
    let out = build::request(
        Method::Options,
        "sip:10.0.0.2:5060",
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKp1",
        "<sip:edge@10.0.0.1>;tag=p1",
        "<sip:10.0.0.2:5060>",
        "probe-1@10.0.0.1",
        42,
        &[("User-Agent", "sipedge")],
    );
    let r = reparse(out);
    assert_eq!((r.method(), r.request_uri()), (Some(Method::Options), Some("sip:10.0.0.2:5060")));
    assert_eq!(r.top_via().unwrap().branch, Some("z9hG4bKp1"));
    assert_eq!((r.from_tag(), r.to_tag(), r.call_id()), (Some("p1"), None, "probe-1@10.0.0.1"));
    assert_eq!((r.cseq().seq, r.cseq().method), (42, Method::Options));
    assert_eq!((r.max_forwards(), r.header(HeaderName::UserAgent)), (Some(70), Some("sipedge")));
}

#[test]
fn forward_request_keeps_our_headers_whatever_remove_says() {
    let req = parse_text(INVITE).unwrap();
    let edits = ForwardEdits {
        via: "SIP/2.0/UDP me;branch=z9hG4bK3",
        record_route: Some("<sip:me;lr>"),
        max_forwards: 12,
        remove: &["Record-Route", "Max-Forwards", "Content-Length", "m"],
        ..ForwardEdits::default()
    };
    let f = reparse(build::forward_request(&req, &edits));
    assert_eq!(f.record_routes().collect::<Vec<_>>(), ["sip:me;lr"], "theirs removed, ours kept");
    assert_eq!(f.max_forwards(), Some(12));
    assert_eq!(f.header(HeaderName::ContentLength), Some("4"));
    assert_eq!(f.contact_uri(), None, "compact m: removed by its letter");
}

#[test]
fn forward_request_replaces_only_the_senders_via_parm() {
    let req = parse_text(
        "BYE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKx, SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKy\n\
         Via: SIP/2.0/UDP 10.8.8.8;branch=z9hG4bKz\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@b>;tag=2\nCall-ID: x\nCSeq: 2 BYE\n\n",
    )
    .unwrap();
    let stamped = crate::sip::via::stamped(&req.top_via().unwrap(), "10.0.0.1:5060".parse().unwrap()).unwrap();
    let edits = ForwardEdits {
        via: "SIP/2.0/UDP me;branch=z9hG4bK2",
        max_forwards: 70,
        upstream_via: Some(&stamped),
        ..ForwardEdits::default()
    };
    let f = reparse(build::forward_request(&req, &edits));
    let vias: Vec<&str> = f.headers(HeaderName::Via).collect();
    assert_eq!(
        vias,
        [
            "SIP/2.0/UDP me;branch=z9hG4bK2",
            "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bKx;received=10.0.0.1, SIP/2.0/UDP 10.9.9.9;branch=z9hG4bKy",
            "SIP/2.0/UDP 10.8.8.8;branch=z9hG4bKz"
        ]
    );
    assert_eq!(f.via_count(), 4);
}
