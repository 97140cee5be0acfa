//! The sans-IO core under a fuzzer: several peers, scripted or raw
//! datagrams, peers that answer what the edge sent them, a virtual clock.

use bytes::Bytes;
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::input::{mutate, Input, Rng};
use crate::admission::Admission;
use crate::proxy::{CallRate, Core, CoreConfig, CoreShared, DownSet, Local, Peer, UnknownSourcePolicy};
use crate::routing::{
    CarrierPeers, NumberMap, NumberRecord, NumberState, PeerLink, Peers, RoutingSnapshot, RoutingTable,
};
use crate::sip::{build, HeaderName, Msg, NumberKind, Transport, E164};

const EDGE: &str = "127.0.0.1:5060";

/// Who can send to the edge: the configured peers, one of them from another
/// port, and a stranger.
const SOURCES: &[&str] = &[
    "127.0.0.2:5060",  // carrier-a az1
    "127.0.0.3:5060",  // carrier-a az2
    "127.0.0.4:5060",  // carrier-b az1
    "127.0.0.10:5060", // flow engine az1
    "127.0.0.11:5060", // flow engine az2
    "127.0.0.99:5060", // not a peer
    "127.0.0.2:40000", // carrier-a, another port
];
/// The configured links (`SOURCES[..5]`).
const LINKS: usize = 5;

const NUMBERS: &[&str] = &[
    "+18005550100", // toll-free, carriers a and b
    "+12065550100", // DID, carrier-a, cap 2
    "+12065550101", // no flow
    "+12065550102", // released
    "+12065559999", // unknown
    "2065550100",   // 10-digit form of the DID
    "abc",          // not a number
    "+13125550199", // a PSTN number (outbound target)
];

/// What one run did (the replay test prints totals).
#[derive(Debug, Default, Clone, Copy)]
pub struct CoreFuzzReport {
    /// Inputs handed to the core.
    pub steps: usize,
    /// Messages the core sent.
    pub transmits: usize,
    /// Virtual time the run covered, drain included.
    pub virtual_time: Duration,
}

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("harness address")
}

fn link(az: &str, a: &str) -> PeerLink {
    PeerLink::new(az, addr(a), Transport::Udp)
}

fn record(
    n: &str,
    kind: NumberKind,
    flow: Option<&str>,
    carriers: &[&str],
    cap: Option<u32>,
    state: NumberState,
) -> NumberRecord {
    NumberRecord {
        e164: E164::parse_dialed(n).expect("harness number"),
        kind,
        flow: flow.map(Arc::from),
        carriers: carriers.iter().map(|c| Arc::from(*c)).collect(),
        max_concurrent: cap,
        cnam: Some(Arc::from("ACME")),
        state,
    }
}

fn snapshot() -> RoutingSnapshot {
    let peers = Peers::new(
        vec![
            CarrierPeers {
                name: Arc::from("carrier-a"),
                links: vec![link("az1", SOURCES[0]), link("az2", SOURCES[1])],
                sources: vec![],
            },
            CarrierPeers { name: Arc::from("carrier-b"), links: vec![link("az1", SOURCES[2])], sources: vec![] },
        ],
        vec![link("az1", SOURCES[3]), link("az2", SOURCES[4])],
    );
    let numbers = vec![
        record(
            NUMBERS[0],
            NumberKind::TollFree,
            Some("flow-tf"),
            &["carrier-a", "carrier-b"],
            None,
            NumberState::Active,
        ),
        record(NUMBERS[1], NumberKind::Did, Some("flow-did"), &["carrier-a"], Some(2), NumberState::Active),
        record(NUMBERS[2], NumberKind::Did, None, &["carrier-a"], None, NumberState::Active),
        record(
            NUMBERS[3],
            NumberKind::Did,
            Some("f"),
            &["carrier-a"],
            None,
            NumberState::Released { released_at_unix_s: 1 },
        ),
    ];
    RoutingSnapshot { numbers: NumberMap::from_records(numbers), peers: Arc::new(peers), generation: 0 }
}

/// The core and what the harness knows about the world around it.
struct World {
    core: Core,
    admission: Arc<Admission>,
    now: Instant,
    start: Instant,
    drop_unknown: bool,
    links: HashSet<SocketAddr>,
    /// Every address that has sent the edge a packet.
    sources: HashSet<SocketAddr>,
    /// Recent messages the edge sent, parsed, with where they went.
    sent: VecDeque<(Peer, Msg)>,
    /// Recent datagrams delivered to the edge (for retransmissions).
    delivered: VecDeque<(Peer, Bytes)>,
    report: CoreFuzzReport,
    /// With `SIPEDGE_FUZZ_TRACE` set: every message in and out, printed on stderr.
    trace: bool,
}

/// A `core_sequence` program that delivers `datagram` from source `source`
/// (an index into the harness's peers: 0-2 carriers, 3-4 flow engines,
/// 5 a stranger, 6 carrier-a from another port), then lets the peers answer
/// whatever the edge sent them and the clock run. `flags` bit 0 is
/// `unknown_source = "drop"`.
pub fn raw_program(flags: u8, source: u8, datagram: &[u8]) -> Vec<u8> {
    let len = u16::try_from(datagram.len()).unwrap_or(u16::MAX);
    let mut p = vec![flags, OP_RAW, source];
    p.extend_from_slice(&len.to_le_bytes());
    p.extend_from_slice(&datagram[..usize::from(len)]);
    // Answer with a 200, then with a 486, then run the clock 32 s.
    p.extend_from_slice(&[OP_ANSWER, 0, 3, 0, OP_ANSWER, 0, 8, 1, OP_CALLER, 0, 1, 0, 0, OP_ADVANCE, 5]);
    p
}

const OP_ANSWER: u8 = 3;
const OP_CALLER: u8 = 5;
const OP_RAW: u8 = 7;
const OP_ADVANCE: u8 = 10;

/// Runs `core_sequence_with` and discards the report.
pub fn core_sequence(data: &[u8]) {
    let _ = core_sequence_with(data);
}

/// Drives a fresh core with the program in `data` (see the module docs),
/// checking the no-relay rule after every step and the no-leak rule at the end.
pub fn core_sequence_with(data: &[u8]) -> CoreFuzzReport {
    let mut inp = Input::new(data);
    let flags = inp.u8();
    let cfg = CoreConfig {
        local: Local::of(&[(Transport::Udp, EDGE), (Transport::Tcp, EDGE)]),
        probe_interval: Duration::ZERO,
        max_call_duration: Duration::from_secs(600),
        unknown_source: if flags & 1 == 1 { UnknownSourcePolicy::Drop } else { UnknownSourcePolicy::Reject },
        new_calls_per_second: [0, 0, 1, 5][usize::from(flags >> 1) % 4],
        server_header: None,
        ..CoreConfig::default()
    };
    let instance_cap = if flags & 8 == 8 { 2 } else { 100 };
    let now = Instant::now();
    let routing = Arc::new(RoutingTable::new(snapshot()));
    let admission = Arc::new(Admission::new(instance_cap));
    let shared = CoreShared {
        routing,
        admission: admission.clone(),
        down: Arc::new(DownSet::default()),
        rate: Arc::new(CallRate::new(now)),
        cluster: None,
        draining: Default::default(),
    };
    let mut w = World {
        core: Core::new(0, Arc::new(cfg.clone()), shared, now),
        admission,
        now,
        start: now,
        drop_unknown: cfg.unknown_source == UnknownSourcePolicy::Drop,
        links: SOURCES[..LINKS].iter().map(|s| addr(s)).collect(),
        sources: HashSet::new(),
        sent: VecDeque::new(),
        delivered: VecDeque::new(),
        report: CoreFuzzReport::default(),
        trace: std::env::var_os("SIPEDGE_FUZZ_TRACE").is_some(),
    };
    let mut steps = 0;
    while !inp.is_empty() && steps < 200 {
        steps += 1;
        w.step(&mut inp);
        w.check_output();
        assert!(w.admission.active_total() <= instance_cap, "instance cap exceeded");
    }
    w.drain();
    w.report.steps = steps;
    w.report.virtual_time = w.now.saturating_duration_since(w.start);
    w.report
}

impl World {
    fn step(&mut self, inp: &mut Input<'_>) {
        match inp.pick(12) {
            0..=2 => {
                let (from, text) = self.template(inp);
                self.deliver(from, Bytes::from(text));
            }
            3 | 4 => self.answer(inp),
            5 => self.caller_in_dialog(inp),
            6 => self.callee_in_dialog(inp),
            7 => {
                let from = self.source(inp);
                let n = usize::from(inp.u16());
                let raw = Bytes::copy_from_slice(inp.take(n));
                self.deliver(from, raw);
            }
            8 => {
                let (from, text) = self.template(inp);
                let mut b = text.into_bytes();
                let mut rng = Rng::new(u64::from(inp.u16()) + 1);
                mutate(&mut b, &mut rng, 1 + inp.pick(6));
                self.deliver(from, Bytes::from(b));
            }
            9 => {
                // A retransmission (same bytes, same source).
                if !self.delivered.is_empty() {
                    let i = inp.pick(self.delivered.len());
                    let (from, b) = self.delivered[i].clone();
                    self.deliver(from, b);
                }
            }
            10 => {
                let d = [1, 100, 500, 2_000, 4_000, 32_000, 64_000, 181_000, 601_000][inp.pick(9)];
                if self.trace {
                    eprintln!("t+{:?} ADVANCE {d} ms", self.now - self.start);
                }
                self.advance(Duration::from_millis(d));
            }
            _ => match inp.pick(2) {
                0 => {
                    let to = self.source(inp);
                    self.core.handle_unreachable(self.now, to);
                }
                _ => {
                    let (from, text) = self.template(inp);
                    self.sources.insert(from.addr);
                    self.core.handle_flooded(from, Bytes::from(text));
                }
            },
        }
    }

    fn source(&self, inp: &mut Input<'_>) -> Peer {
        let b = inp.u8();
        let a = addr(SOURCES[usize::from(b & 7) % SOURCES.len()]);
        if b & 0x80 != 0 {
            Peer { conn: Some(u64::from((b >> 3) & 3)), ..Peer::to(a, Transport::Tcp) }
        } else {
            Peer::to(a, Transport::Udp)
        }
    }

    fn deliver(&mut self, from: Peer, bytes: Bytes) {
        if self.trace {
            eprintln!("t+{:?} IN from {from:?}:\n{}", self.now - self.start, String::from_utf8_lossy(&bytes));
        }
        self.sources.insert(from.addr);
        if self.delivered.len() >= 16 {
            self.delivered.pop_front();
        }
        self.delivered.push_back((from, bytes.clone()));
        self.core.handle_message(self.now, from, bytes);
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.core.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.core.handle_timeout(self.now);
            self.check_output();
        }
        self.now = end;
    }

    /// Peers go silent; the clock runs until the core has nothing left to do.
    fn drain(&mut self) {
        let limit = self.now + Duration::from_secs(48 * 3600);
        let mut fired = 0u32;
        while let Some(t) = self.core.poll_timeout() {
            fired += 1;
            assert!(t <= limit && fired < 200_000, "the core never goes quiet: timers keep firing");
            self.now = t.max(self.now);
            self.core.handle_timeout(self.now);
            self.check_output();
        }
        assert_eq!(self.core.counts(), (0, 0), "calls or dialogs left after every timer ran out");
        assert_eq!(self.admission.active_total(), 0, "a concurrency slot was never released");
    }

    /// The no-relay rule, checked on every message the core sends.
    fn check_output(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            self.report.transmits += 1;
            if self.trace {
                eprintln!("t+{:?} OUT to {:?}:\n{}", self.now - self.start, t.to, String::from_utf8_lossy(&t.payload));
            }
            let to = t.to.addr;
            let is_link = self.links.contains(&to);
            assert!(
                is_link || self.sources.contains(&to),
                "sent to {to}, which is neither a configured peer nor a packet source:\n{}",
                String::from_utf8_lossy(&t.payload)
            );
            let is_response = t.payload.starts_with(b"SIP/2.0 ");
            if !is_link && !self.links.iter().any(|l| l.ip() == to.ip()) {
                assert!(is_response, "a request sent to a stranger {to}:\n{}", String::from_utf8_lossy(&t.payload));
                assert!(!self.drop_unknown, "unknown_source = drop, yet {to} got an answer");
            }
            match Msg::parse(t.payload.clone()) {
                Ok(m) => {
                    if self.sent.len() >= 32 {
                        self.sent.pop_front();
                    }
                    self.sent.push_back((t.to, m));
                }
                // Our own 400 to a message without a Call-ID cannot parse, on purpose.
                Err(_) if is_response => {}
                Err(e) => panic!(
                    "the core sent a request that does not parse ({e:?}):\n{}",
                    String::from_utf8_lossy(&t.payload)
                ),
            }
        }
    }

    /// A request from one of the sources, built from parts the input picks.
    fn template(&self, inp: &mut Input<'_>) -> (Peer, String) {
        let from = self.source(inp);
        let methods = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "INFO", "PRACK", "MESSAGE"];
        let method = methods[inp.pick(methods.len())];
        let number = NUMBERS[inp.pick(NUMBERS.len())];
        let ruri = match inp.pick(6) {
            0 | 1 => format!("sip:{number}@{EDGE}"),
            2 => format!("sip:{number}@192.0.2.1:5060"),
            3 => format!("tel:{number}"),
            4 => format!("sip:{number}@example.com;transport=tcp"),
            _ => format!("sip:{number}@[2001:db8::1]:5060"),
        };
        let route = match inp.pick(7) {
            0..=2 => String::new(),
            3 => format!("Route: <sip:{EDGE};lr>\r\n"),
            4 => "Route: <sip:192.0.2.1;lr>\r\n".to_string(),
            5 => format!("Route: <sip:{EDGE};lr>, <sip:192.0.2.1:5070;lr>\r\n"),
            _ => "Route: <sip:192.0.2.1>\r\n".to_string(),
        };
        let t = if from.transport == Transport::Tcp { "TCP" } else { "UDP" };
        let k = inp.pick(6);
        let branch = if inp.pick(5) == 0 { format!("old{k}") } else { format!("z9hG4bK{k}") };
        let via = match inp.pick(4) {
            0 => format!("SIP/2.0/{t} 192.0.2.1:5060;branch={branch};rport"),
            1 => format!("SIP/2.0/{t} {};branch={branch};received=192.0.2.9", from.addr),
            _ => format!("SIP/2.0/{t} {};branch={branch}", from.addr),
        };
        let caller =
            if from.addr.port() == 5060 && matches!(from.addr.ip().to_string().as_str(), "127.0.0.10" | "127.0.0.11") {
                NUMBERS[inp.pick(4)]
            } else {
                "+13125550199"
            };
        let to_tag = match inp.pick(4) {
            0 => format!(";tag=tt{}", inp.pick(3)),
            1 => ";tag=uas0".to_string(),
            _ => String::new(),
        };
        let mf = ["70", "70", "1", "0"][inp.pick(4)];
        let contact = match inp.pick(3) {
            0 => "Contact: <sip:c@192.0.2.1:5060>\r\n".to_string(),
            1 => String::new(),
            _ => format!("Contact: <sip:c@{}>\r\n", from.addr),
        };
        let extra = match inp.pick(5) {
            0 => "Proxy-Require: foo\r\n".to_string(),
            1 => format!("P-Asserted-Identity: <sip:{}@{}>\r\n", NUMBERS[inp.pick(4)], from.addr),
            2 => "X-Flow-Id: spoofed\r\nRecord-Route: <sip:192.0.2.1;lr>\r\n".to_string(),
            _ => String::new(),
        };
        let body = if inp.pick(2) == 0 { "" } else { "v=0\r\n" };
        let text = format!(
            "{method} {ruri} SIP/2.0\r\nVia: {via}\r\n{route}Max-Forwards: {mf}\r\n\
             From: <sip:{caller}@{}>;tag=ft{}\r\nTo: <sip:{number}@{EDGE}>{to_tag}\r\n\
             Call-ID: c{}\r\nCSeq: {} {method}\r\n{contact}{extra}Content-Length: {}\r\n\r\n{body}",
            from.addr,
            inp.pick(3),
            inp.pick(5),
            1 + inp.pick(4),
            body.len()
        );
        (from, text)
    }

    /// A peer answers a request the edge sent it.
    fn answer(&mut self, inp: &mut Input<'_>) {
        let reqs: Vec<usize> = (0..self.sent.len())
            .filter(|&i| self.sent[i].1.is_request() && self.links.contains(&self.sent[i].0.addr))
            .collect();
        if reqs.is_empty() {
            return;
        }
        let (to, req) = self.sent[reqs[inp.pick(reqs.len())]].clone();
        let codes = [100, 180, 183, 200, 200, 202, 408, 481, 486, 487, 500, 503, 603];
        let code = codes[inp.pick(codes.len())];
        let rr: Vec<String> = req.headers(HeaderName::RecordRoute).map(str::to_owned).collect();
        let contact = format!("<sip:uas@{}>", to.addr);
        let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", v.as_str())).collect();
        extra.push(("Contact", &contact));
        let tag = format!("uas{}", inp.pick(2));
        let bytes = build::response(&req, code, "Answer", (code > 100).then_some(tag.as_str()), &extra);
        self.deliver(to, bytes);
    }

    /// The caller (who got a 2xx) sends ACK, BYE, re-INVITE, ... along the route set.
    fn caller_in_dialog(&mut self, inp: &mut Input<'_>) {
        let oks: Vec<usize> = (0..self.sent.len())
            .filter(|&i| {
                self.sent[i].1.status().is_some_and(|s| (200..300).contains(&s)) && self.sent[i].1.to_tag().is_some()
            })
            .collect();
        if oks.is_empty() {
            return;
        }
        let (peer, ok) = self.sent[oks[inp.pick(oks.len())]].clone();
        let methods = ["ACK", "BYE", "INVITE", "UPDATE", "INFO", "ACK"];
        let method = methods[inp.pick(methods.len())];
        let routes: String = ok.record_routes().map(|r| format!("Route: <{r}>\r\n")).collect();
        let target = ok.contact_uri().unwrap_or("sip:192.0.2.1");
        let cseq = if method == "ACK" { ok.cseq().seq } else { ok.cseq().seq + 1 + inp.pick(3) as u32 };
        let text = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKd{}\r\n{routes}From: {}\r\nTo: {}\r\n\
             Call-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            peer.addr,
            inp.pick(8),
            ok.header(HeaderName::From).unwrap_or(""),
            ok.header(HeaderName::To).unwrap_or(""),
            ok.call_id(),
        );
        self.deliver(peer, Bytes::from(text));
    }

    /// The callee (who got an INVITE) sends BYE, re-INVITE, ... back toward the caller.
    fn callee_in_dialog(&mut self, inp: &mut Input<'_>) {
        let invs: Vec<usize> = (0..self.sent.len())
            .filter(|&i| self.sent[i].1.method_str() == "INVITE" && self.links.contains(&self.sent[i].0.addr))
            .collect();
        if invs.is_empty() {
            return;
        }
        let (peer, inv) = self.sent[invs[inp.pick(invs.len())]].clone();
        let methods = ["BYE", "INVITE", "UPDATE", "INFO"];
        let method = methods[inp.pick(methods.len())];
        let routes: String = inv.record_routes().map(|r| format!("Route: <{r}>\r\n")).collect();
        let target = inv.contact_uri().unwrap_or("sip:192.0.2.1");
        let text = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bKe{}\r\n{routes}From: {};tag=uas{}\r\nTo: {}\r\n\
             Call-ID: {}\r\nCSeq: {} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            peer.addr,
            inp.pick(8),
            inv.header(HeaderName::To).unwrap_or(""),
            inp.pick(2),
            inv.header(HeaderName::From).unwrap_or(""),
            inv.call_id(),
            1 + inp.pick(5),
        );
        self.deliver(peer, Bytes::from(text));
    }
}
