use std::time::{Duration, Instant};

use super::*;
use crate::admission::Admission;
use crate::sip::E164;

fn limits(name: &str, max_concurrent: u32, max_cps: u32) -> TrunkLimits {
    TrunkLimits { name: Arc::from(name), max_concurrent, max_cps }
}

fn trunks(l: &[TrunkLimits]) -> Trunks {
    let t = Trunks::default();
    t.configure(l);
    t
}

#[test]
fn max_concurrent_refuses_past_the_cap_and_a_dropped_permit_frees_its_slot() {
    let t = trunks(&[limits("a", 2, 0)]);
    let now = Instant::now();
    let p1 = t.try_admit("a", now, 0, 0).unwrap().unwrap();
    let p2 = t.try_admit("a", now, 0, 0).unwrap().unwrap();
    assert_eq!(t.try_admit("a", now, 0, 0).unwrap_err(), TrunkReject::MaxConcurrent);
    assert_eq!(t.active("a"), 2);
    drop(p1);
    assert_eq!(t.active("a"), 1);
    let p3 = t.try_admit("a", now, 0, 0).unwrap().unwrap();
    drop((p2, p3));
    assert_eq!(t.active("a"), 0);
}

#[test]
fn unlimited_and_unknown_carriers_always_pass() {
    let t = trunks(&[limits("a", 0, 0)]);
    let now = Instant::now();
    let held: Vec<_> = (0..1000).map(|_| t.try_admit("a", now, 0, 0).unwrap()).collect();
    assert_eq!(t.active("a"), 1000);
    assert!(t.try_admit("nobody", now, 0, 0).unwrap().is_none());
    drop(held);
    assert_eq!(t.active("a"), 0);
}

#[test]
fn fair_share_boundaries() {
    // Cap 10, 2 carriers: busy above 8 held, share 5.
    assert!(!over_fair_share(8, 10, 9, 2), "80 % exactly is not yet busy");
    assert!(over_fair_share(9, 10, 6, 2));
    assert!(!over_fair_share(9, 10, 5, 2), "holding exactly the share is not more than it");
    assert!(!over_fair_share(9, 10, 3, 2));
    // Shares that do not divide: cap 10, 3 carriers, share 3.33: 4 is over, 3 is not.
    assert!(over_fair_share(9, 10, 4, 3));
    assert!(!over_fair_share(9, 10, 3, 3));
    // Cap 10000 (default), 2 carriers: busy above 8000.
    assert!(!over_fair_share(8000, 10_000, 8000, 2));
    assert!(over_fair_share(8001, 10_000, 5001, 2));
    assert!(!over_fair_share(8001, 10_000, 5000, 2));
    // One carrier: its share is the whole instance, never over it below the cap.
    assert!(!over_fair_share(9999, 10_000, 9999, 1));
    // Unlimited instance, or no carriers: no share.
    assert!(!over_fair_share(u32::MAX, 0, u32::MAX, 2));
    assert!(!over_fair_share(9, 10, 9, 0));
    // No overflow at the extremes.
    assert!(over_fair_share(u32::MAX, u32::MAX, u32::MAX, usize::MAX));
}

#[test]
fn fair_share_refuses_the_big_carrier_and_admits_the_others() {
    let t = trunks(&[limits("flood", 0, 0), limits("small", 0, 0)]);
    let now = Instant::now();
    let mut held = Vec::new();
    // The flood carrier fills the instance (cap 10) up to 80 %.
    for i in 0..8 {
        held.push(t.try_admit("flood", now, i, 10).unwrap());
    }
    assert_eq!(t.try_admit("flood", now, 9, 10).unwrap_err(), TrunkReject::FairShare);
    held.push(t.try_admit("small", now, 9, 10).unwrap());
    assert_eq!(t.active("small"), 1);
}

#[test]
fn gcra_admits_a_seconds_burst_then_the_rate() {
    let t = trunks(&[limits("a", 0, 5)]);
    let t0 = Instant::now();
    // Five back to back, then the bucket is empty.
    for _ in 0..5 {
        t.try_admit("a", t0, 0, 0).unwrap();
    }
    assert_eq!(t.try_admit("a", t0, 0, 0).unwrap_err(), TrunkReject::MaxCps);
    // One more every 200 ms.
    assert_eq!(t.try_admit("a", t0 + Duration::from_millis(199), 0, 0).unwrap_err(), TrunkReject::MaxCps);
    t.try_admit("a", t0 + Duration::from_millis(200), 0, 0).unwrap();
    assert_eq!(t.try_admit("a", t0 + Duration::from_millis(201), 0, 0).unwrap_err(), TrunkReject::MaxCps);
    // Over a long steady offer the rate holds: 30 offered a second for 10 s, 5 a second admitted (+ the burst).
    let start = t0 + Duration::from_secs(5);
    let admitted =
        (0..300).filter(|i| t.try_admit("a", start + Duration::from_millis(i * 1000 / 30), 0, 0).is_ok()).count();
    assert!((50..=56).contains(&admitted), "{admitted}");
}

#[test]
fn a_refused_call_spends_no_rate_and_a_rate_refusal_gives_its_slot_back() {
    let t = trunks(&[limits("a", 1, 1)]);
    let now = Instant::now();
    let p = t.try_admit("a", now, 0, 0).unwrap();
    // At max_concurrent: refused before the rate is asked.
    assert_eq!(t.try_admit("a", now, 0, 0).unwrap_err(), TrunkReject::MaxConcurrent);
    drop(p);
    // The rate is spent (1 a second): refused, and the slot is not kept.
    assert_eq!(t.try_admit("a", now, 0, 0).unwrap_err(), TrunkReject::MaxCps);
    assert_eq!(t.active("a"), 0);
    t.try_admit("a", now + Duration::from_secs(1), 0, 0).unwrap();
}

#[test]
fn reload_changes_limits_and_keeps_counts() {
    let t = trunks(&[limits("a", 2, 0), limits("b", 0, 0)]);
    let now = Instant::now();
    let held: Vec<_> = (0..2).map(|_| t.try_admit("a", now, 0, 0).unwrap()).collect();
    // Raised to 3: one more fits, the two up still count.
    t.configure(&[limits("a", 3, 0)]);
    assert_eq!(t.active("a"), 2);
    let third = t.try_admit("a", now, 0, 0).unwrap();
    assert_eq!(t.try_admit("a", now, 0, 0).unwrap_err(), TrunkReject::MaxConcurrent);
    // Lowered below what is up: nothing is cut, new calls wait until enough end.
    t.configure(&[limits("a", 1, 0)]);
    drop(third);
    assert_eq!(t.try_admit("a", now, 0, 0).unwrap_err(), TrunkReject::MaxConcurrent);
    // "b" was removed: no longer limited or listed.
    assert!(t.try_admit("b", now, 0, 0).unwrap().is_none());
    assert_eq!(t.status().len(), 1);
    // A removed carrier's permits still release (into the counter they hold).
    t.configure(&[]);
    drop(held);
    t.configure(&[limits("a", 1, 0)]);
    assert_eq!(t.active("a"), 0, "re-added: a fresh counter");
}

#[test]
fn the_trunk_slot_rides_on_the_number_permit_and_moves_on_failover() {
    let adm = Admission::new(100);
    adm.trunks().configure(&[limits("a", 1, 0), limits("b", 1, 0)]);
    let now = Instant::now();
    let n = E164::parse_dialed("+18005550100").unwrap();
    let mut p = adm.try_admit(n, 0).unwrap();
    adm.admit_trunk(&mut p, "a", now).unwrap();
    // The same carrier again (failover between its links): the slot is kept, not taken twice.
    adm.admit_trunk(&mut p, "a", now).unwrap();
    assert_eq!((adm.trunks().active("a"), p.trunk()), (1, Some("a")));
    // Failover to "b": "a" is given back.
    adm.admit_trunk(&mut p, "b", now).unwrap();
    assert_eq!((adm.trunks().active("a"), adm.trunks().active("b")), (0, 1));
    // A second call cannot have "b" and its refusal leaves it without a slot.
    let mut q = adm.try_admit(n, 0).unwrap();
    assert_eq!(adm.admit_trunk(&mut q, "b", now).unwrap_err(), TrunkReject::MaxConcurrent);
    assert_eq!(q.trunk(), None);
    adm.admit_trunk(&mut q, "a", now).unwrap();
    drop(p);
    drop(q);
    assert_eq!((adm.trunks().active("a"), adm.trunks().active("b"), adm.active_total()), (0, 0, 0));
}

#[test]
fn racing_admissions_never_exceed_max_concurrent() {
    let t = Arc::new(trunks(&[limits("a", 50, 0)]));
    let now = Instant::now();
    let peak = Arc::new(AtomicU32::new(0));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (t, peak) = (t.clone(), peak.clone());
            std::thread::spawn(move || {
                for _ in 0..5000 {
                    if let Ok(p) = t.try_admit("a", now, 0, 0) {
                        peak.fetch_max(t.active("a"), Ordering::Relaxed);
                        drop(p);
                    }
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert!(peak.load(Ordering::Relaxed) <= 50);
    assert_eq!(t.active("a"), 0);
}
