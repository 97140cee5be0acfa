//! Routing table: lookups and events against naive baselines: a gain is only a gain against the simple thing.
//!
//! * `routing/lookup/{10k,1m,10m}`: `RoutingSnapshot::record` on random
//!   existing numbers, with a delta of half the compaction threshold (the
//!   typical state between compactions): 312 entries at 10k, 4096 above.
//! * `routing/lookup_empty_delta/...`: the same right after a compaction.
//! * `routing/lookup_baseline_hashmap/...`: a frozen `std::collections::HashMap`
//!   (default SipHash) with the same keys and records.
//! * `routing/apply_one/...`: one event (update of a random number) through
//!   `RoutingTable::apply`, with a delta of ½–1 threshold and no
//!   compaction running: the production case, where events are far apart.
//! * `routing/apply_one_flood/...`: events back to back on a table with
//!   background compaction, so a compaction thread competes for the CPU.
//! * `routing/apply_one_baseline_rebuild/{10k,1m}`: the naive event: clone the
//!   whole `HashMap`, change one entry, swap an `Arc`. At 10 M it is timed by
//!   hand over a few iterations and printed.
//!
//! `ROUTING_BENCH_SIZES=10k,1m` restricts the sizes (default: all three).
//! Bytes per number (RSS growth while building the 10 M map) are printed.
//! Suggested: `cargo bench --bench routing -- --warm-up-time 1 --measurement-time 3`.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, SamplingMode};
use sipedge::routing::{
    NumberMap, NumberRecord, NumberState, Peers, Route, RoutingSnapshot, RoutingTable, TableOptions,
};
use sipedge::sip::E164;

/// Distinct, scattered NANP-like numbers: an odd multiplier is a bijection
/// on `[0, 2^33)`, so `key(i)` never repeats for `i < 2^33`.
fn key(i: u64) -> u64 {
    10_000_000_000 + (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) & ((1 << 33) - 1))
}

struct XorShift(u64);
impl XorShift {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Names {
    flows: Vec<Arc<str>>,
    carrier: Arc<str>,
}

impl Names {
    fn new() -> Names {
        Names {
            flows: (0..1000).map(|i| Arc::from(format!("flow-{i}").as_str())).collect(),
            carrier: Arc::from("carrier-a"),
        }
    }
    fn record(&self, i: u64, salt: u64) -> NumberRecord {
        let e164 = E164::from_u64(key(i)).unwrap();
        NumberRecord {
            e164,
            kind: e164.default_kind(),
            flow: Some(self.flows[((i + salt) % 1000) as usize].clone()),
            carriers: vec![self.carrier.clone()],
            max_concurrent: None,
            cnam: None,
            state: NumberState::Active,
        }
    }
}

/// What a call needs from a lookup: the answer and the flow (pointer) it
/// is handed to. Both sides read the record, so neither is timed as a bare
/// pointer chase that a real call would follow anyway.
#[inline]
fn answer(r: Route<'_>) -> (u8, *const str) {
    match r {
        Route::Routable(rec) => (0, rec.flow.map_or("" as *const str, |f| &**f as *const str)),
        Route::NoFlow(_) => (1, "" as *const str),
        Route::Released => (2, "" as *const str),
        Route::NotFound => (3, "" as *const str),
    }
}

/// The same answer from a plain record, as a frozen `HashMap` would give it.
#[inline]
fn baseline_answer(r: Option<&NumberRecord>) -> (u8, *const str) {
    match r {
        None => (3, "" as *const str),
        Some(rec) => match rec.state {
            NumberState::Active | NumberState::PortOutPending { .. } => match &rec.flow {
                Some(f) => (0, &**f as *const str),
                None => (1, "" as *const str),
            },
            NumberState::Released { .. } => (2, "" as *const str),
            NumberState::PortInPending { .. } => (3, "" as *const str),
        },
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn sizes() -> Vec<(&'static str, u64)> {
    let all = [("10k", 10_000u64), ("1m", 1_000_000), ("10m", 10_000_000)];
    let want = std::env::var("ROUTING_BENCH_SIZES").unwrap_or_else(|_| "10k,1m,10m".into());
    // Largest first: its RSS growth is then measured in a fresh process,
    // before freed memory of smaller runs could be reused.
    all.into_iter().rev().filter(|(name, _)| want.split(',').any(|w| w.trim() == *name)).collect()
}

fn bench(c: &mut Criterion) {
    let names = Names::new();
    for (label, n) in sizes() {
        let heavy = n >= 10_000_000;
        let rss0 = rss_bytes();
        let t0 = Instant::now();
        let map = NumberMap::from_records((0..n).map(|i| names.record(i, 0)));
        let built = t0.elapsed();
        let rss1 = rss_bytes();
        println!(
            "routing/{label}: built {} numbers in {:.2?}; RSS +{} MB = {} bytes per number (records + base map)",
            map.len(),
            built,
            (rss1.saturating_sub(rss0)) >> 20,
            rss1.saturating_sub(rss0) / n
        );

        // Lookups see a delta of half the compaction threshold for this size
        // (the typical state between compactions); compaction is off here.
        let half =
            RoutingTable::new(RoutingSnapshot::new(map.clone(), Arc::new(Peers::default()))).compaction_threshold() / 2;
        let table = RoutingTable::with_options(
            RoutingSnapshot::new(map.clone(), Arc::new(Peers::default())),
            TableOptions { compact_threshold: usize::MAX, background: None },
        );
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        while table.load().numbers.delta_len() < half {
            let i = rng.next() % n;
            table.apply(&[(E164::from_u64(key(i)).unwrap(), Some(names.record(i, 1)))]);
        }
        let snap = table.load_full();
        assert_eq!(snap.numbers.delta_len(), half);
        let frozen = RoutingSnapshot::new(map.clone(), Arc::new(Peers::default()));
        let baseline: HashMap<u64, Arc<NumberRecord>> = {
            let mut m = HashMap::with_capacity(n as usize);
            for r in map.iter() {
                m.insert(r.e164.as_u64(), Arc::new(r.to_record()));
            }
            m
        };
        drop(map);

        let mut g = c.benchmark_group("routing");
        if heavy {
            g.sample_size(20);
        }
        g.bench_function(BenchmarkId::new("lookup", label), |b| {
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
            b.iter(|| {
                let k = E164::from_u64(key(rng.next() % n)).unwrap();
                black_box(answer(snap.route(black_box(k))))
            })
        });
        g.bench_function(BenchmarkId::new("lookup_empty_delta", label), |b| {
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
            b.iter(|| {
                let k = E164::from_u64(key(rng.next() % n)).unwrap();
                black_box(answer(frozen.route(black_box(k))))
            })
        });
        g.bench_function(BenchmarkId::new("lookup_baseline_hashmap", label), |b| {
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
            b.iter(|| {
                let k = E164::from_u64(key(rng.next() % n)).unwrap();
                black_box(baseline_answer(baseline.get(&black_box(k).as_u64()).map(|r| &**r)))
            })
        });
        drop((frozen, table));

        // apply_one: the event path as in production, where events are far
        // apart: a delta between half and all of the threshold (between two
        // compactions) and no compaction thread competing for the CPU. Every
        // `half` events the table restarts from `snap` (untimed).
        let fresh = || {
            RoutingTable::with_options(
                RoutingSnapshot::clone(&snap),
                TableOptions { compact_threshold: usize::MAX, background: None },
            )
        };
        let mut salt = 0;
        g.bench_function(BenchmarkId::new("apply_one", label), |b| {
            let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut table = fresh();
                for done in 0..iters {
                    if done % half as u64 == half as u64 - 1 {
                        table = fresh();
                    }
                    salt += 1;
                    let i = rng.next() % n;
                    let change = [(E164::from_u64(key(i)).unwrap(), Some(names.record(i, salt)))];
                    let t = Instant::now();
                    table.apply(&change);
                    total += t.elapsed();
                }
                total
            })
        });

        // apply_one_flood: events back to back on the real table (background
        // compaction at the default threshold), so a compaction thread is
        // almost always folding a base on the other core.
        let background =
            TableOptions { background: Some(sipedge::inventory::compaction_on_a_thread), ..TableOptions::default() };
        let table = RoutingTable::with_options(RoutingSnapshot::clone(&snap), background);
        drop(snap);
        g.bench_function(BenchmarkId::new("apply_one_flood", label), |b| {
            let mut rng = XorShift(0x1234_5678_9ABC_DEF1);
            b.iter_batched(
                || {
                    salt += 1;
                    let i = rng.next() % n;
                    [(E164::from_u64(key(i)).unwrap(), Some(names.record(i, salt)))]
                },
                |change| table.apply(&change),
                BatchSize::SmallInput,
            )
        });
        table.wait_for_compaction();
        println!(
            "routing/apply_one_flood/{label}: {} swaps, {} compactions, delta now {}",
            table.swaps(),
            table.compactions(),
            table.load().numbers.delta_len()
        );
        drop(table);

        // The naive event: copy the whole table.
        let naive = ArcSwap::from_pointee(baseline);
        if heavy {
            let iters = 3;
            let t = Instant::now();
            for s in 0..iters {
                let cur = naive.load_full();
                let mut next = HashMap::clone(&cur);
                let i = s % n;
                next.insert(key(i), Arc::new(names.record(i, s + 7)));
                drop(cur);
                naive.store(Arc::new(next));
            }
            println!(
                "routing/apply_one_baseline_rebuild/{label}: {:.2?} per event (mean of {iters}, timed by hand)",
                t.elapsed() / iters as u32
            );
        } else {
            g.sample_size(10).sampling_mode(SamplingMode::Flat).measurement_time(Duration::from_secs(3));
            g.bench_function(BenchmarkId::new("apply_one_baseline_rebuild", label), |b| {
                let mut rng = XorShift(0x0F0F_0F0F_1234_5678);
                b.iter(|| {
                    let cur = naive.load_full();
                    let mut next = HashMap::clone(&cur);
                    let i = rng.next() % n;
                    next.insert(key(i), Arc::new(names.record(i, 3)));
                    drop(cur);
                    naive.store(Arc::new(next));
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
