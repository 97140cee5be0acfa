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
use std::time::{Duration, Instant};

use sipedge::proxy::{Core, Peer};
use sipedge::sip::{Msg, Transport};

#[path = "support/call.rs"]
mod call;
use call::*;

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
