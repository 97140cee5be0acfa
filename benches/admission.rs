//! Admission: `try_admit` + drop of the permit (one call's whole life as admission sees
//! it), against a naive `Mutex<HashMap>` baseline doing the same reserve + release.
//!
//! The `*two_threads*` cases run the same work on two threads at once and report the wall
//! time for both to finish, per operation of each thread: a design that lets one thread
//! starve the other (a parked mutex waiter) cannot look fast that way.
//!
//! The `trunk_*` cases compare the carrier rate limit (our GCRA) with `governor`.
//!
//! `cargo bench --bench admission -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sipedge::admission::carrier::take_rate;
use sipedge::admission::{Admission, TrunkLimits, Trunks};
use sipedge::sip::E164;

/// Per-number cap used throughout: high enough that the two threads never hit it, so
/// every iteration measures a successful admission and release.
const CAP: u32 = 100;
/// Numbers in the round-robin cases.
const MANY: u64 = 10_000;

fn number(i: u64) -> E164 {
    E164::from_u64(18_005_550_000 + i).unwrap()
}

/// The naive design: one lock around a map of counts.
struct Baseline {
    counts: Mutex<HashMap<u64, u32>>,
}

impl Baseline {
    fn new() -> Baseline {
        Baseline { counts: Mutex::new(HashMap::new()) }
    }
    /// One call's admission and release.
    fn call(&self, n: u64, cap: u32) {
        if self.reserve(n, cap) {
            self.release(n);
        }
    }
    fn reserve(&self, n: u64, cap: u32) -> bool {
        let mut counts = self.counts.lock().unwrap();
        let c = counts.entry(n).or_insert(0);
        if *c >= cap {
            return false;
        }
        *c += 1;
        true
    }
    fn release(&self, n: u64) {
        let mut counts = self.counts.lock().unwrap();
        if let Some(c) = counts.get_mut(&n) {
            *c -= 1;
        }
    }
}

/// Runs `op(thread, k)` for `k in 0..iters` on two threads started together; returns the
/// time until both are done.
fn two_threads(iters: u64, op: impl Fn(u64, u64) + Sync) -> Duration {
    let barrier = Barrier::new(2);
    thread::scope(|s| {
        let other = s.spawn(|| {
            barrier.wait();
            let t = Instant::now();
            (0..iters).for_each(|k| op(1, k));
            t.elapsed()
        });
        barrier.wait();
        let t = Instant::now();
        (0..iters).for_each(|k| op(0, k));
        let mine = t.elapsed();
        mine.max(other.join().unwrap())
    })
}

/// Thread `t`'s `k`-th number in the many-numbers cases: the threads walk the numbers
/// from opposite halves.
fn nth(t: u64, k: u64) -> u64 {
    (k + t * MANY / 2) % MANY
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission");
    let one = number(0);
    let numbers: Vec<E164> = (0..MANY).map(number).collect();

    let adm = Arc::new(Admission::new(0));
    g.bench_function("uncontended_one_number", |b| b.iter(|| drop(black_box(adm.try_admit(black_box(one), CAP)))));
    g.bench_function("contended_two_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, |_, _| drop(black_box(adm.try_admit(black_box(one), CAP)))))
    });

    for &n in &numbers {
        drop(adm.try_admit(n, CAP));
    }
    let mut i = 0;
    g.bench_function("many_numbers", |b| {
        b.iter(|| {
            i = (i + 1) % numbers.len();
            drop(black_box(adm.try_admit(black_box(numbers[i]), CAP)))
        })
    });
    g.bench_function("many_numbers_two_threads", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, k| {
                let n = numbers[nth(t, k) as usize];
                drop(black_box(adm.try_admit(black_box(n), CAP)))
            })
        })
    });
    assert_eq!(adm.active_total(), 0);

    // The same with the active-calls gauge going to a real Prometheus recorder (the other
    // cases use the no-op recorder), to show what the gauge adds per call.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let with_gauge = metrics::with_local_recorder(&recorder, || Arc::new(Admission::new(0)));
    g.bench_function("uncontended_one_number_prometheus", |b| {
        b.iter(|| drop(black_box(with_gauge.try_admit(black_box(one), CAP))))
    });
    g.bench_function("contended_two_threads_prometheus", |b| {
        b.iter_custom(|iters| two_threads(iters, |_, _| drop(black_box(with_gauge.try_admit(black_box(one), CAP)))))
    });
    assert!(recorder.handle().render().contains("sipedge_active_calls 0"));

    let base = Baseline::new();
    let key = one.as_u64();
    g.bench_function("baseline_mutex_hashmap", |b| b.iter(|| base.call(black_box(key), CAP)));
    g.bench_function("baseline_mutex_hashmap_contended", |b| {
        b.iter_custom(|iters| two_threads(iters, |_, _| base.call(black_box(key), CAP)))
    });
    let keys: Vec<u64> = numbers.iter().map(|n| n.as_u64()).collect();
    g.bench_function("baseline_mutex_hashmap_many_numbers_two_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, |t, k| base.call(black_box(keys[nth(t, k) as usize]), CAP)))
    });

    // Trunk rate limit (SPEC §10): our GCRA against the `governor` crate, one
    // check-and-take per call, with a rate so high that neither ever refuses.
    // Each op reads the clock once (governor reads its own).
    let rate = NonZeroU32::new(1_000_000_000).unwrap();
    let tat = AtomicU64::new(0);
    let base_t = Instant::now();
    let gcra = || {
        let now = u64::try_from(base_t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        assert!(take_rate(black_box(&tat), 1, now));
    };
    g.bench_function("trunk_gcra_ours", |b| b.iter(gcra));
    g.bench_function("trunk_gcra_ours_two_threads", |b| b.iter_custom(|iters| two_threads(iters, |_, _| gcra())));
    // The same CAS with the clock read left out (time advanced by a counter):
    // what our GCRA costs apart from `Instant::now()`.
    let fake = AtomicU64::new(0);
    let tat2 = AtomicU64::new(0);
    let gcra_no_clock = || {
        let now = fake.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(take_rate(black_box(&tat2), 1, now));
    };
    g.bench_function("trunk_gcra_ours_no_clock", |b| b.iter(gcra_no_clock));
    let direct = RateLimiter::direct(Quota::per_second(rate));
    let gov = || assert!(black_box(&direct).check().is_ok());
    g.bench_function("trunk_governor_direct", |b| b.iter(gov));
    g.bench_function("trunk_governor_direct_two_threads", |b| b.iter_custom(|iters| two_threads(iters, |_, _| gov())));
    // What a per-carrier lookup costs each: our whole `Trunks::try_admit` (name
    // lookup, fair share, max_concurrent, GCRA; permit dropped) against
    // governor's keyed limiter (a DashMap by carrier name, rate only).
    let trunks = Trunks::default();
    trunks.configure(&[TrunkLimits { name: Arc::from("carrier-a"), max_concurrent: 0, max_cps: 1_000_000_000 }]);
    let ours = || drop(black_box(trunks.try_admit(black_box("carrier-a"), Instant::now(), 0, 10_000).unwrap()));
    g.bench_function("trunk_try_admit_ours", |b| b.iter(ours));
    g.bench_function("trunk_try_admit_ours_two_threads", |b| b.iter_custom(|iters| two_threads(iters, |_, _| ours())));
    let keyed: DefaultKeyedRateLimiter<&'static str> = RateLimiter::keyed(Quota::per_second(rate));
    let gov_keyed = || assert!(black_box(&keyed).check_key(black_box(&"carrier-a")).is_ok());
    g.bench_function("trunk_governor_keyed", |b| b.iter(gov_keyed));
    g.bench_function("trunk_governor_keyed_two_threads", |b| {
        b.iter_custom(|iters| two_threads(iters, |_, _| gov_keyed()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
