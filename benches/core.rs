//! The sans-IO proxy core, one whole call from bytes in to bytes out:
//! INVITE -> 100 + INVITE, 180, 200, ACK, BYE, 200 (7 messages in, 7 out),
//! no sockets. A virtual clock advances 1 ms per call, so the core holds the
//! ~32 s of finished calls RFC 6026 makes it keep, as under 1000 calls/s.
//!
//! `core/call` is the real `proxy::Core`. `naive/call` is the floor a regression
//! is judged against: the same messages, each only parsed and copied once (what
//! the cheapest stateless relay must do), with the same harness work (building
//! the callee's answers). core minus naive = transactions, dialogs, routing,
//! admission, rewriting.
//!
//!   cargo bench --bench core -- --warm-up-time 1 --measurement-time 3
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipedge::admission::Admission;
use sipedge::proxy::{CallRate, Core, CoreConfig, CoreShared, DownSet, Local, Peer};
use sipedge::routing::{CarrierPeers, NumberMap, NumberRecord, NumberState, PeerLink, Peers, RoutingSnapshot, RoutingTable};
use sipedge::sip::{build, HeaderName, Msg, NumberKind, Transport, E164};

const EDGE: &str = "127.0.0.1:5060";
const CARRIER: &str = "127.0.0.2:5060";
const FLOW: &str = "127.0.0.10:5060";
const NUMBERS: u64 = 1000;
const BASE: u64 = 18005550000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn link(a: &str) -> PeerLink {
    PeerLink { az: Arc::from("az1"), addr: addr(a), transport: Transport::Udp, drain: false }
}

fn new_core(now: Instant) -> Core {
    let records = (0..NUMBERS).map(|i| NumberRecord {
        e164: E164::parse_dialed(&format!("+{}", BASE + i)).unwrap(),
        kind: NumberKind::TollFree,
        flow: Some(Arc::from(format!("flow-{i:06}").as_str())),
        carriers: vec![Arc::from("carrier-a")],
        max_concurrent: None,
        cnam: None,
        state: NumberState::Active,
    });
    let peers = Peers::new(
        vec![CarrierPeers { name: Arc::from("carrier-a"), links: vec![link(CARRIER)], sources: vec![] }],
        vec![link(FLOW)],
    );
    let snap = RoutingSnapshot::new(NumberMap::from_records(records), Arc::new(peers));
    let shared = CoreShared {
        routing: Arc::new(RoutingTable::new(snap)),
        admission: Arc::new(Admission::new(1_000_000)),
        down: Arc::new(DownSet::default()),
        rate: Arc::new(CallRate::new(now)),
    };
    let cfg = CoreConfig {
        local: Local { udp: Some(EDGE.into()), tcp: None },
        probe_interval: Duration::ZERO,
        ..CoreConfig::default()
    };
    Core::new(0, Arc::new(cfg), shared, now)
}

/// The caller's INVITE, as SIPp's uac_rr.xml sends it.
fn invite(n: u64) -> Bytes {
    let num = BASE + n % NUMBERS;
    Bytes::from(format!(
        "INVITE sip:{num}@{EDGE} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CARRIER};branch=z9hG4bK-{n}-1-0\r\n\
         From: sipp <sip:sipp@{CARRIER}>;tag=77SIPpTag00{n}\r\n\
         To: <sip:{num}@{EDGE}>\r\n\
         Call-ID: {n}-77@127.0.0.2\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: sip:sipp@{CARRIER}\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Type: application/sdp\r\n\
         Content-Length: 129\r\n\r\n\
         v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ))
}

/// The caller's ACK or BYE, loose-routed through the edge (uac_rr.xml).
fn in_dialog(n: u64, method: &str, cseq: u32, route: &str) -> Bytes {
    let num = BASE + n % NUMBERS;
    Bytes::from(format!(
        "{method} sip:{FLOW} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {CARRIER};branch=z9hG4bK-{n}-{cseq}-{method}\r\n\
         Route: {route}\r\n\
         From: sipp <sip:sipp@{CARRIER}>;tag=77SIPpTag00{n}\r\n\
         To: <sip:{num}@{EDGE}>;tag=uas{n}\r\n\
         Call-ID: {n}-77@127.0.0.2\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: sip:sipp@{CARRIER}\r\n\
         Max-Forwards: 70\r\n\
         Subject: Performance Test\r\n\
         Content-Length: 0\r\n\r\n"
    ))
}

/// The callee's answer to a forwarded request (uas_200.xml): harness work,
/// the same in both variants.
fn answer(req: &Bytes, code: u16, n: u64) -> Bytes {
    let m = Msg::parse(req.clone()).unwrap();
    let rr: Vec<String> = m.headers(HeaderName::RecordRoute).map(str::to_owned).collect();
    let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", v.as_str())).collect();
    let contact = format!("<sip:{FLOW};transport=UDP>");
    extra.push(("Contact", &contact));
    let tag = format!("uas{n}");
    build::response(&m, code, if code == 200 { "OK" } else { "Ringing" }, Some(&tag), &extra)
}

/// Something that takes datagrams and gives datagrams.
trait Relay {
    fn input(&mut self, now: Instant, from: &str, b: Bytes);
    /// The last datagram sent to `to` in this step (all others are drained).
    fn output(&mut self, to: SocketAddr) -> Option<Bytes>;
    fn tick(&mut self, now: Instant);
}

impl Relay for Core {
    fn input(&mut self, now: Instant, from: &str, b: Bytes) {
        self.handle_message(now, Peer::to(addr(from), Transport::Udp), b);
    }
    fn output(&mut self, to: SocketAddr) -> Option<Bytes> {
        let mut last = None;
        while let Some(t) = self.poll_transmit() {
            if t.to.addr == to {
                last = Some(t.payload);
            }
        }
        last
    }
    fn tick(&mut self, now: Instant) {
        if self.poll_timeout().is_some_and(|t| t <= now) {
            self.handle_timeout(now);
        }
    }
}

/// The floor: parse every message, copy it out once, no state.
#[derive(Default)]
struct Naive {
    out: VecDeque<Bytes>,
}

impl Relay for Naive {
    fn input(&mut self, _now: Instant, _from: &str, b: Bytes) {
        let m = Msg::parse(b).unwrap();
        std::hint::black_box(m.call_id());
        self.out.push_back(Bytes::copy_from_slice(m.buf()));
    }
    fn output(&mut self, _to: SocketAddr) -> Option<Bytes> {
        let last = self.out.pop_back();
        self.out.clear();
        last
    }
    fn tick(&mut self, _now: Instant) {}
}

/// One whole call; panics if the relay loses a message.
fn call<R: Relay>(r: &mut R, now: Instant, n: u64) {
    let (flow, carrier) = (addr(FLOW), addr(CARRIER));
    r.tick(now);
    r.input(now, CARRIER, invite(n));
    let fwd = r.output(flow).expect("INVITE forwarded");
    r.input(now, FLOW, answer(&fwd, 180, n));
    r.output(carrier).expect("180 relayed");
    r.input(now, FLOW, answer(&fwd, 200, n));
    r.output(carrier).expect("200 relayed");
    let route = format!("<sip:{EDGE};lr>");
    r.input(now, CARRIER, in_dialog(n, "ACK", 1, &route));
    r.output(flow).expect("ACK relayed");
    r.input(now, CARRIER, in_dialog(n, "BYE", 2, &route));
    let bye = r.output(flow).expect("BYE relayed");
    r.input(now, FLOW, answer(&bye, 200, n));
    r.output(carrier).expect("BYE 200 relayed");
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("call");
    g.throughput(Throughput::Elements(1));
    g.bench_function("core", |b| {
        let start = Instant::now();
        let mut core = new_core(start);
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            call(&mut core, start + Duration::from_millis(n), n);
        });
    });
    g.bench_function("naive", |b| {
        let start = Instant::now();
        let mut naive = Naive::default();
        let mut n = 0u64;
        b.iter(|| {
            n += 1;
            call(&mut naive, start + Duration::from_millis(n), n);
        });
    });
    g.bench_function("harness_only", |b| {
        // What building the test messages and answers costs by itself.
        let mut n = 0u64;
        let inv = invite(0);
        b.iter(|| {
            n += 1;
            let route = format!("<sip:{EDGE};lr>");
            std::hint::black_box(invite(n));
            std::hint::black_box(answer(&inv, 180, n));
            std::hint::black_box(answer(&inv, 200, n));
            std::hint::black_box(in_dialog(n, "ACK", 1, &route));
            let bye = in_dialog(n, "BYE", 2, &route);
            std::hint::black_box(answer(&bye, 200, n));
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
