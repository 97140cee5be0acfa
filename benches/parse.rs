//! `sip::Msg::parse` against `rsip::SipMessage::try_from` on a typical
//! carrier INVITE (tests/fixtures/sip/carrier_invite.sip, 1125 bytes).
//!
//! - `parse/sipedge`: our scanner (ranges only, mandatory headers validated)
//! - `parse/rsip`: rsip 0.4 (allocates a String per header)
//! - `parse/sipedge_typed_access`: parse, then what the proxy reads of an
//!   INVITE: top Via, Call-ID, CSeq, tags, Max-Forwards, Request-URI user,
//!   routes, P-Asserted-Identity.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sipedge::sip::{parse_uri, Msg};

fn invite() -> Bytes {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sip/carrier_invite.sip");
    Bytes::from(std::fs::read(path).expect("fixture"))
}

fn bench(c: &mut Criterion) {
    let buf = invite();
    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(buf.len() as u64));
    g.bench_function("sipedge", |b| {
        b.iter(|| Msg::parse(black_box(buf.clone())).expect("parses"));
    });
    g.bench_function("rsip", |b| {
        b.iter(|| rsip::SipMessage::try_from(black_box(&buf[..])).expect("parses"));
    });
    g.bench_function("sipedge_typed_access", |b| {
        b.iter(|| {
            let m = Msg::parse(black_box(buf.clone())).expect("parses");
            let via = m.top_via().expect("via");
            let user = m.request_uri().and_then(parse_uri).and_then(|u| u.user);
            black_box((
                via.branch,
                via.host,
                m.call_id(),
                m.cseq(),
                m.from_tag(),
                m.to_tag(),
                m.max_forwards(),
                user,
                m.routes().count(),
                m.p_asserted_identity_uri(),
            ));
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
