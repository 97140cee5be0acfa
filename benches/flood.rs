//! Flood control: the cost of `FloodGuard::check`, paid by every datagram and
//! every TCP message before it is parsed, against a naive `Mutex<HashMap>`
//! doing the same fixed-window count.
//!
//! The `two_threads` cases run the same work on two threads at once (two
//! shards) and report wall time per operation of each thread.
//!
//! With the Prometheus recorder installed, as in the edge, so the banned path
//! pays for its counter like it does in production.
//!
//! `cargo bench --bench flood -- --warm-up-time 1 --measurement-time 3`

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sipedge::transport::flood::{FloodGuard, FloodSettings, Verdict};

/// Distinct sources in the "many sources" cases (a scan, or a spoofed flood).
const MANY: u32 = 10_000;

fn settings(max_requests: u32) -> FloodSettings {
    FloodSettings {
        enabled: true,
        window: Duration::from_secs(1),
        max_requests,
        ban: Duration::from_secs(60),
        reject: false,
    }
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0A00_0000 + i))
}

/// The naive design: one lock around a map of (window start, count).
struct Baseline {
    base: Instant,
    max: u32,
    table: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

impl Baseline {
    fn check(&self, ip: IpAddr) -> bool {
        let now = self.base.elapsed().as_millis() as u64;
        let mut t = self.table.lock().unwrap();
        let e = t.entry(ip).or_insert((now, 0));
        if now - e.0 >= 1000 {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= self.max
    }
}

/// Wall time for two threads to each run `iters` checks over their own 10k sources.
fn two_threads(iters: u64, check: &(dyn Fn(IpAddr) + Sync)) -> Duration {
    let barrier = Barrier::new(2);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..2u32 {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..iters {
                    check(ip(t * 100_000 + (i % u64::from(MANY)) as u32));
                }
            });
        }
    });
    start.elapsed()
}

fn bench(c: &mut Criterion) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let _ = metrics::set_global_recorder(recorder);
    sipedge::metrics::describe();

    let mut g = c.benchmark_group("flood");
    let peer = ip(1);
    let exempt: HashSet<IpAddr> = [peer].into_iter().collect();

    let guard = FloodGuard::new(settings(u32::MAX), exempt.clone());
    g.bench_function("check/exempt_peer", |b| b.iter(|| black_box(guard.check(black_box(peer)))));

    let source = ip(2);
    g.bench_function("check/one_source_under_limit", |b| b.iter(|| black_box(guard.check(black_box(source)))));

    let mut i = 0;
    g.bench_function("check/10k_sources_under_limit", |b| {
        b.iter(|| {
            i = (i + 1) % MANY;
            black_box(guard.check(ip(1000 + i)))
        })
    });

    let banned = FloodGuard::new(settings(10), exempt.clone());
    let flooder = ip(3);
    while banned.check(flooder) == Verdict::Pass {}
    g.bench_function("check/banned_source", |b| b.iter(|| black_box(banned.check(black_box(flooder)))));

    let mut off = settings(10);
    off.enabled = false;
    let disabled = FloodGuard::new(off, exempt);
    g.bench_function("check/disabled", |b| b.iter(|| black_box(disabled.check(black_box(source)))));

    let naive = Baseline { base: Instant::now(), max: u32::MAX, table: Mutex::new(HashMap::new()) };
    g.bench_function("naive_mutex_hashmap/one_source", |b| b.iter(|| black_box(naive.check(black_box(source)))));
    let mut j = 0;
    g.bench_function("naive_mutex_hashmap/10k_sources", |b| {
        b.iter(|| {
            j = (j + 1) % MANY;
            black_box(naive.check(ip(1000 + j)))
        })
    });
    let shared = FloodGuard::new(settings(u32::MAX), HashSet::new());
    g.bench_function("two_threads/flood_guard", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|ip| {
                black_box(shared.check(ip));
            })
        })
    });
    let naive2 = Baseline { base: Instant::now(), max: u32::MAX, table: Mutex::new(HashMap::new()) };
    g.bench_function("two_threads/naive_mutex_hashmap", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|ip| {
                black_box(naive2.check(ip));
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
