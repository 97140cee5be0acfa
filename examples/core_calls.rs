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
//!   valgrind ... --mode core --flows 16   # 16 flow-engine endpoints: the weighted pick
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
use std::time::{Duration, Instant};

use sipedge::proxy::{Core, Peer};
use sipedge::sip::Transport;

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

#[path = "../benches/support/call.rs"]
mod call;
use call::*;

/// 0.5 ms per call: 2000 calls/s.
const STEP: Duration = Duration::from_micros(500);

/// Feeds `b` from `from` and returns the last datagram the core sent to an
/// address `wanted` accepts, with that address.
fn feed(
    core: &mut Core,
    now: Instant,
    from: SocketAddr,
    b: Bytes,
    wanted: impl Fn(SocketAddr) -> bool,
) -> Option<(SocketAddr, Bytes)> {
    core.handle_message(now, Peer::to(from, Transport::Udp), b);
    // The shard asks for the next deadline on every turn of its loop.
    std::hint::black_box(core.poll_timeout());
    let mut last = None;
    while let Some(t) = core.poll_transmit() {
        if wanted(t.to.addr) {
            last = Some((t.to.addr, t.payload));
        }
    }
    last
}

/// Feeds `b` from `from` and returns the last datagram sent to `to`.
fn step(core: &mut Core, now: Instant, from: SocketAddr, b: Bytes, to: SocketAddr) -> Option<Bytes> {
    feed(core, now, from, b, |a| a == to).map(|(_, p)| p)
}

/// One whole call through the core; panics if a message is lost.
fn call(core: &mut Core, now: Instant, n: u64) {
    let carrier = addr(CARRIER);
    if core.poll_timeout().is_some_and(|t| t <= now) {
        core.handle_timeout(now);
        while core.poll_transmit().is_some() {}
    }
    // With several flow-engine endpoints the weighted pick chooses where it goes.
    let (flow, fwd) = feed(core, now, carrier, invite(n), |a| a != carrier).expect("INVITE forwarded");
    step(core, now, flow, answer_from(&fwd, 180, n, flow), carrier).expect("180 relayed");
    step(core, now, flow, answer_from(&fwd, 200, n, flow), carrier).expect("200 relayed");
    let route = format!("<sip:{EDGE};lr>");
    step(core, now, carrier, in_dialog_to(n, "ACK", 1, &route, flow), flow).expect("ACK relayed");
    let bye = step(core, now, carrier, in_dialog_to(n, "BYE", 2, &route, flow), flow).expect("BYE relayed");
    step(core, now, flow, answer_from(&bye, 200, n, flow), carrier).expect("BYE 200 relayed");
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
    // Flow-engine endpoints of equal weight in az1: the pick's cost, 1, 2 or 16.
    let flows = arg(&args, "--flows", 1);
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
        let mut core = (!harness).then(|| new_core_with_flows(start, flows as usize));
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
            "mode={} flows={flows} warmup={warmup} calls={calls} allocs/call={:.2} live_after_warmup={live} B \
             ({:.0} B per call kept) calls_kept={pending} dialogs={dialogs} mimalloc={}",
            if harness { "harness" } else { "core" },
            allocs as f64 / calls as f64,
            live as f64 / pending.max(1) as f64,
            use_mimalloc(),
        );
    });
    t.join().unwrap();
}
