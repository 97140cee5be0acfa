//! Admission: `try_admit` + drop of the permit (one call's whole life as admission sees
//! it), against a naive `Mutex<HashMap>` baseline doing the same reserve + release.
//!
//! `cargo bench --bench admission -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use criterion::{criterion_group, criterion_main, Criterion};
use sipedge::admission::Admission;
use sipedge::sip::E164;

/// Per-number cap used throughout: high enough that the two threads never hit it, so
/// every iteration measures a successful admission and release.
const CAP: u32 = 100;
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
        Baseline {
            counts: Mutex::new(HashMap::new()),
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

/// Runs `work` in a loop on another thread until the returned guard is dropped.
struct Hammer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Hammer {
    fn start(work: impl Fn() + Send + 'static) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                work();
            }
        });
        Hammer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Hammer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("admission");
    let one = number(0);

    let adm = Arc::new(Admission::new(0));
    g.bench_function("uncontended_one_number", |b| {
        b.iter(|| drop(black_box(adm.try_admit(black_box(one), CAP))))
    });

    {
        let other = Arc::clone(&adm);
        let _hammer = Hammer::start(move || drop(other.try_admit(one, CAP)));
        g.bench_function("contended_two_threads", |b| {
            b.iter(|| drop(black_box(adm.try_admit(black_box(one), CAP))))
        });
    }

    let numbers: Vec<E164> = (0..MANY).map(number).collect();
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

    let base = Arc::new(Baseline::new());
    let key = one.as_u64();
    g.bench_function("baseline_mutex_hashmap", |b| {
        b.iter(|| {
            if base.reserve(black_box(key), CAP) {
                base.release(key);
            }
        })
    });
    {
        let other = Arc::clone(&base);
        let _hammer = Hammer::start(move || {
            if other.reserve(key, CAP) {
                other.release(key);
            }
        });
        g.bench_function("baseline_mutex_hashmap_contended", |b| {
            b.iter(|| {
                if base.reserve(black_box(key), CAP) {
                    base.release(key);
                }
            })
        });
    }
    g.finish();
    assert_eq!(adm.active_total(), 0);
}

criterion_group!(benches, bench);
criterion_main!(benches);
