//! The call both `benches/core.rs` and `examples/core_calls.rs` drive through
//! `proxy::Core`: its routing snapshot, its messages and the callee's answers.
//! Included by path (`#[path]`) so the bench and the example measure the same call.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipedge::admission::Admission;
use sipedge::proxy::{CallRate, Core, CoreConfig, CoreShared, DownSet, Local};
use sipedge::routing::{
    CarrierPeers, NumberMap, NumberRecord, NumberState, PeerLink, Peers, RoutingSnapshot, RoutingTable,
};
use sipedge::sip::{build, HeaderName, Msg, NumberKind, Transport, E164};

pub const EDGE: &str = "127.0.0.1:5060";
pub const CARRIER: &str = "127.0.0.2:5060";
pub const FLOW: &str = "127.0.0.10:5060";
pub const NUMBERS: u64 = 1000;
pub const BASE: u64 = 18005550000;

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub fn link(a: &str) -> PeerLink {
    PeerLink::new("az1", addr(a), Transport::Udp)
}

pub fn new_core(now: Instant) -> Core {
    new_core_with_flows(now, 1)
}

/// The flow engine's `i`-th endpoint: 127.0.0.10, .11, ... (`FLOW` is the first).
pub fn flow_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 10 + i as u8], 5060))
}

/// As `new_core`, with `flows` flow-engine endpoints of equal priority and
/// weight in az1 (the callgrind cost of the weighted pick, 2 against 16).
pub fn new_core_with_flows(now: Instant, flows: usize) -> Core {
    assert!(flows <= 64, "flow_addr numbers endpoints 127.0.0.10 to 127.0.0.73");
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
        (0..flows.max(1)).map(|i| PeerLink::new("az1", flow_addr(i), Transport::Udp)).collect(),
    );
    let snap = RoutingSnapshot::new(NumberMap::from_records(records), Arc::new(peers));
    let shared = CoreShared {
        routing: Arc::new(RoutingTable::new(snap)),
        admission: Arc::new(Admission::new(1_000_000)),
        down: Arc::new(DownSet::default()),
        rate: Arc::new(CallRate::new(now)),
        cluster: None,
        draining: Default::default(),
    };
    let cfg = CoreConfig {
        local: Local::of(&[(sipedge::sip::Transport::Udp, EDGE)]),
        probe_interval: Duration::ZERO,
        ..CoreConfig::default()
    };
    Core::new(0, Arc::new(cfg), shared, now)
}

/// The caller's INVITE, as SIPp's uac_rr.xml sends it.
pub fn invite(n: u64) -> Bytes {
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
pub fn in_dialog(n: u64, method: &str, cseq: u32, route: &str) -> Bytes {
    in_dialog_to(n, method, cseq, route, addr(FLOW))
}

/// As `in_dialog`, to the flow-engine endpoint `flow` that answered.
pub fn in_dialog_to(n: u64, method: &str, cseq: u32, route: &str, flow: SocketAddr) -> Bytes {
    let num = BASE + n % NUMBERS;
    Bytes::from(format!(
        "{method} sip:{flow} SIP/2.0\r\n\
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
pub fn answer(req: &Bytes, code: u16, n: u64) -> Bytes {
    answer_from(req, code, n, addr(FLOW))
}

/// As `answer`, from the flow-engine endpoint `flow`.
pub fn answer_from(req: &Bytes, code: u16, n: u64, flow: SocketAddr) -> Bytes {
    let m = Msg::parse(req.clone()).unwrap();
    let rr: Vec<String> = m.headers(HeaderName::RecordRoute).map(str::to_owned).collect();
    let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", v.as_str())).collect();
    let contact = format!("<sip:{flow};transport=UDP>");
    extra.push(("Contact", &contact));
    let tag = format!("uas{n}");
    build::response(&m, code, if code == 200 { "OK" } else { "Ringing" }, Some(&tag), &extra)
}
