//! Threads hammering `Admission::try_admit` and dropping permits, checking that no cap
//! is ever exceeded and that every slot comes back. Public API only.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use sipedge::admission::{Admission, AtCap, Permit};
use sipedge::sip::E164;

const ITERATIONS: usize = 200_000;

/// One stress run's shape.
struct Run {
    threads: usize,
    /// Distinct numbers, taken round-robin.
    numbers: usize,
    /// Per-number cap (0 = unlimited).
    cap: u32,
    /// Instance cap (0 = unlimited).
    instance_cap: u32,
    /// Permits each thread keeps alive at once, so that together the threads want more
    /// than the caps allow.
    hold: usize,
}

/// What the threads saw.
#[derive(Debug)]
struct Seen {
    admitted: u64,
    number_full: u64,
    instance_full: u64,
    /// Times the observed concurrency of a number or of the instance exceeded its cap.
    violations: u64,
    /// Highest observed concurrency of any number.
    peak_number: u32,
    peak_total: u32,
}

fn number(i: usize) -> E164 {
    E164::from_u64(18_005_550_000 + i as u64).unwrap()
}

fn limit(cap: u32) -> u32 {
    if cap == 0 {
        u32::MAX
    } else {
        cap
    }
}

fn run(r: &Run) -> (Arc<Admission>, Seen) {
    let adm = Arc::new(Admission::new(r.instance_cap));
    // Observed concurrency: raised after a permit is granted, lowered before it is
    // dropped, so it never counts more than the permits really alive.
    let observed: Arc<Vec<AtomicU32>> = Arc::new((0..r.numbers).map(|_| AtomicU32::new(0)).collect());
    let observed_total = Arc::new(AtomicU32::new(0));
    let (admitted, number_full, instance_full, violations) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let (peak_number, peak_total) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let barrier = Arc::new(Barrier::new(r.threads));
    let (cap, instance_cap, numbers, hold) = (r.cap, r.instance_cap, r.numbers, r.hold);

    let handles: Vec<_> = (0..r.threads)
        .map(|t| {
            let adm = Arc::clone(&adm);
            let observed = Arc::clone(&observed);
            let observed_total = Arc::clone(&observed_total);
            let (admitted, number_full, instance_full, violations) =
                (admitted.clone(), number_full.clone(), instance_full.clone(), violations.clone());
            let (peak_number, peak_total) = (peak_number.clone(), peak_total.clone());
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut held: VecDeque<(usize, Permit)> = VecDeque::with_capacity(hold);
                let release = |(idx, permit): (usize, Permit)| {
                    observed[idx].fetch_sub(1, Ordering::SeqCst);
                    observed_total.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                };
                barrier.wait();
                for i in 0..ITERATIONS {
                    if held.len() == hold {
                        release(held.pop_front().unwrap());
                    }
                    let idx = (i + t * 7) % numbers;
                    match adm.try_admit(number(idx), cap) {
                        Ok(permit) => {
                            assert_eq!(permit.number(), number(idx));
                            let now = observed[idx].fetch_add(1, Ordering::SeqCst) + 1;
                            let total = observed_total.fetch_add(1, Ordering::SeqCst) + 1;
                            if now > limit(cap) || total > limit(instance_cap) {
                                violations.fetch_add(1, Ordering::Relaxed);
                            }
                            peak_number.fetch_max(now, Ordering::Relaxed);
                            peak_total.fetch_max(total, Ordering::Relaxed);
                            admitted.fetch_add(1, Ordering::Relaxed);
                            held.push_back((idx, permit));
                        }
                        Err(AtCap::NumberFull) => {
                            number_full.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(AtCap::InstanceFull) => {
                            instance_full.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    // Now and then let the other threads run while we hold permits.
                    if i % 1024 == 0 {
                        thread::yield_now();
                    }
                }
                while let Some(h) = held.pop_front() {
                    release(h);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let seen = Seen {
        admitted: admitted.load(Ordering::Relaxed),
        number_full: number_full.load(Ordering::Relaxed),
        instance_full: instance_full.load(Ordering::Relaxed),
        violations: violations.load(Ordering::Relaxed),
        peak_number: peak_number.load(Ordering::Relaxed),
        peak_total: peak_total.load(Ordering::Relaxed),
    };
    (adm, seen)
}

/// The checks every run shares: caps held, high-water within caps, everything released.
fn check(r: &Run) -> Seen {
    let (adm, seen) = run(r);
    assert_eq!(seen.violations, 0, "{seen:?}");
    assert_eq!(seen.admitted + seen.number_full + seen.instance_full, (r.threads * ITERATIONS) as u64);
    for i in 0..r.numbers {
        assert!(adm.high_water(number(i)) <= limit(r.cap), "number {i}: {}", adm.high_water(number(i)));
        assert_eq!(adm.active(number(i)), 0, "number {i} leaked a slot");
    }
    assert!(adm.high_water_total() <= limit(r.instance_cap));
    assert!(seen.peak_number <= limit(r.cap) && seen.peak_total <= limit(r.instance_cap));
    assert_eq!(adm.active_total(), 0);
    // A run that never met its cap proves nothing: the threads together want more. With
    // both caps set, the instance pre-check may answer first, so only single-cap runs
    // are held to reaching their cap.
    if r.cap != 0 && r.instance_cap == 0 {
        assert!(seen.number_full > 0, "number cap never reached: {seen:?}");
        assert!((0..r.numbers).any(|i| adm.high_water(number(i)) == r.cap));
    }
    if r.instance_cap != 0 && r.cap == 0 {
        assert!(seen.instance_full > 0, "instance cap never reached: {seen:?}");
        assert_eq!(adm.high_water_total(), r.instance_cap);
    }
    seen
}

#[test]
fn one_number_cap_5_two_threads() {
    check(&Run { threads: 2, numbers: 1, cap: 5, instance_cap: 0, hold: 3 });
}

#[test]
fn one_number_cap_5_four_threads() {
    check(&Run { threads: 4, numbers: 1, cap: 5, instance_cap: 0, hold: 3 });
}

#[test]
fn many_numbers_cap_5_two_threads() {
    check(&Run { threads: 2, numbers: 16, cap: 5, instance_cap: 0, hold: 48 });
}

#[test]
fn many_numbers_cap_5_four_threads() {
    check(&Run { threads: 4, numbers: 16, cap: 5, instance_cap: 0, hold: 48 });
}

#[test]
fn instance_cap_two_threads() {
    check(&Run { threads: 2, numbers: 16, cap: 0, instance_cap: 20, hold: 16 });
}

#[test]
fn instance_cap_four_threads() {
    check(&Run { threads: 4, numbers: 16, cap: 0, instance_cap: 20, hold: 16 });
}

#[test]
fn both_caps_four_threads() {
    // Demand (4 threads x 20 permits over 16 numbers) exceeds the instance cap and, for
    // some numbers, the number cap: refusals of either kind must not leak the other slot.
    let seen = check(&Run { threads: 4, numbers: 16, cap: 5, instance_cap: 70, hold: 20 });
    assert!(seen.number_full + seen.instance_full > 0, "{seen:?}");
}
