//! A deterministic driver of whole calls through the sans-IO `proxy::Core`,
//! for instruction counts (callgrind) and allocation counts, not wall time.
//!
//! The same call as `benches/core.rs` (INVITE -> 100 + INVITE, 180, 200, ACK,
//! BYE, 200), on a shard-like thread, with the metrics recorder and the
//! tracing filter the binary installs. A virtual clock advances 0.5 ms per
//! call (2000 calls/s), so timers fire as in such a run, RFC 6026's 32 s of
//! retention included. `--warmup` calls run first (not collected), then
//! `--calls` calls run inside `measured`, the only function callgrind collects:
//!
//!   cargo build --release --example core_calls
//!   valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*core_calls::measured*' \
//!       target/release/examples/core_calls --mode core
//!   valgrind ... --mode harness      # the harness's own cost, to subtract
//!
//! Ir per call = (Ir core - Ir harness) / calls. The program also prints
//! allocations per call in the measured phase, and the heap bytes still live
//! after warm-up per call still kept (what a finished call keeps).
//! `SIPEDGE_MIMALLOC=1` makes mimalloc the underlying allocator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipedge::admission::Admission;
use sipedge::proxy::{CallRate, Core, CoreConfig, CoreShared, DownSet, Local, Peer};
use sipedge::routing::{CarrierPeers, NumberMap, NumberRecord, NumberState, PeerLink, Peers, RoutingSnapshot, RoutingTable};
use sipedge::sip::{build, HeaderName, Msg, NumberKind, Transport, E164};

/// Counts allocations and live bytes; the underlying allocator is the
/// system's or mimalloc (`SIPEDGE_MIMALLOC=1`, read once with getenv, which
/// does not allocate).
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);
/// 0: not decided yet, 1: system, 2: mimalloc.
static WHICH: AtomicU8 = AtomicU8::new(0);

fn use_mimalloc() -> bool {
    let mut w = WHICH.load(Relaxed);
    if w == 0 {
        // SAFETY: getenv with a NUL-terminated name; it does not allocate.
        let v = unsafe { libc::getenv(c"SIPEDGE_MIMALLOC".as_ptr()) };
        w = if v.is_null() { 1 } else { 2 };
        WHICH.store(w, Relaxed);
    }
    w == 2
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE.fetch_add(l.size() as u64, Relaxed);
        if use_mimalloc() {
            mimalloc::MiMalloc.alloc(l)
        } else {
            System.alloc(l)
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as u64, Relaxed);
        if use_mimalloc() {
            mimalloc::MiMalloc.dealloc(p, l)
        } else {
            System.dealloc(p, l)
        }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        LIVE.fetch_add(new as u64, Relaxed);
        LIVE.fetch_sub(l.size() as u64, Relaxed);
        if use_mimalloc() {
            mimalloc::MiMalloc.realloc(p, l, new)
        } else {
            System.realloc(p, l, new)
        }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const EDGE: &str = "127.0.0.1:5060";
const CARRIER: &str = "127.0.0.2:5060";
const FLOW: &str = "127.0.0.10:5060";
const NUMBERS: u64 = 1000;
const BASE: u64 = 18005550000;
/// 0.5 ms per call: 2000 calls/s.
const STEP: Duration = Duration::from_micros(500);

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

/// The callee's answer to a forwarded request (uas_200.xml).
fn answer(req: &Bytes, code: u16, n: u64) -> Bytes {
    let m = Msg::parse(req.clone()).unwrap();
    let rr: Vec<String> = m.headers(HeaderName::RecordRoute).map(str::to_owned).collect();
    let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", v.as_str())).collect();
    let contact = format!("<sip:{FLOW};transport=UDP>");
    extra.push(("Contact", &contact));
    let tag = format!("uas{n}");
    build::response(&m, code, if code == 200 { "OK" } else { "Ringing" }, Some(&tag), &extra)
}

/// Feeds `b` from `from` and returns the last datagram sent to `to`.
fn step(core: &mut Core, now: Instant, from: SocketAddr, b: Bytes, to: SocketAddr) -> Option<Bytes> {
    core.handle_message(now, Peer::to(from, Transport::Udp), b);
    // The shard asks for the next deadline on every turn of its loop.
    std::hint::black_box(core.poll_timeout());
    let mut last = None;
    while let Some(t) = core.poll_transmit() {
        if t.to.addr == to {
            last = Some(t.payload);
        }
    }
    last
}

/// One whole call through the core; panics if a message is lost.
fn call(core: &mut Core, now: Instant, n: u64) {
    let (flow, carrier) = (addr(FLOW), addr(CARRIER));
    if core.poll_timeout().is_some_and(|t| t <= now) {
        core.handle_timeout(now);
        while core.poll_transmit().is_some() {}
    }
    let fwd = step(core, now, carrier, invite(n), flow).expect("INVITE forwarded");
    step(core, now, flow, answer(&fwd, 180, n), carrier).expect("180 relayed");
    step(core, now, flow, answer(&fwd, 200, n), carrier).expect("200 relayed");
    let route = format!("<sip:{EDGE};lr>");
    step(core, now, carrier, in_dialog(n, "ACK", 1, &route), flow).expect("ACK relayed");
    let bye = step(core, now, carrier, in_dialog(n, "BYE", 2, &route), flow).expect("BYE relayed");
    step(core, now, flow, answer(&bye, 200, n), carrier).expect("BYE 200 relayed");
}

/// The harness's own work for one call: every message built, every answer's
/// request parsed, no core.
fn harness_call(n: u64, inv: &Bytes) {
    let route = format!("<sip:{EDGE};lr>");
    std::hint::black_box(invite(n));
    std::hint::black_box(answer(inv, 180, n));
    std::hint::black_box(answer(inv, 200, n));
    std::hint::black_box(in_dialog(n, "ACK", 1, &route));
    let bye = in_dialog(n, "BYE", 2, &route);
    std::hint::black_box(answer(&bye, 200, n));
}

/// The collected phase (callgrind `--toggle-collect` names this function).
#[inline(never)]
fn measured(core: Option<&mut Core>, start: Instant, from: u64, calls: u64, inv: &Bytes) {
    match core {
        Some(core) => {
            for n in from..from + calls {
                call(core, start + STEP * n as u32, n);
            }
        }
        None => {
            for n in from..from + calls {
                harness_call(n, inv);
            }
        }
    }
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map_or(default, |v| v.parse().unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let harness = args.iter().position(|a| a == "--mode").and_then(|i| args.get(i + 1)).is_some_and(|m| m == "harness");
    let calls = arg(&args, "--calls", 20_000);
    // 80 000 calls: 40 s of virtual time, past the 32 s timers (L, M, AckWait, B, F, J).
    let warmup = arg(&args, "--warmup", 80_000);
    // As the binary: a Prometheus recorder and an `info` tracing filter.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _ = metrics::set_global_recorder(recorder);
    sipedge::metrics::describe();
    tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    // On its own thread, as a shard is (glibc malloc uses a non-main arena there).
    let t = std::thread::spawn(move || {
        let start = Instant::now();
        let inv = invite(0);
        let mut core = (!harness).then(|| new_core(start));
        let live0 = LIVE.load(Relaxed);
        for n in 1..=warmup {
            match core.as_mut() {
                Some(core) => call(core, start + STEP * n as u32, n),
                None => harness_call(n, &inv),
            }
        }
        let live = LIVE.load(Relaxed).saturating_sub(live0);
        let (pending, dialogs) = core.as_ref().map_or((0, 0), Core::counts);
        let a0 = ALLOCS.load(Relaxed);
        measured(core.as_mut(), start, warmup + 1, calls, &inv);
        let allocs = ALLOCS.load(Relaxed) - a0;
        println!(
            "mode={} warmup={warmup} calls={calls} allocs/call={:.2} live_after_warmup={live} B \
             ({:.0} B per call kept) calls_kept={pending} dialogs={dialogs} mimalloc={}",
            if harness { "harness" } else { "core" },
            allocs as f64 / calls as f64,
            live as f64 / pending.max(1) as f64,
            use_mimalloc(),
        );
    });
    t.join().unwrap();
}
