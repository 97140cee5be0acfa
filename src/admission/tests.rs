use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::*;

fn num(s: &str) -> E164 {
    E164::parse_dialed(s).unwrap()
}

fn adm(instance_cap: u32) -> Arc<Admission> {
    Arc::new(Admission::new(instance_cap))
}

#[test]
fn number_cap_is_respected() {
    let a = adm(100);
    let n = num("+18005550100");
    let held: Vec<Permit> = (0..3).map(|_| a.try_admit(n, 3).unwrap()).collect();
    assert_eq!(a.try_admit(n, 3).unwrap_err(), AtCap::NumberFull);
    assert_eq!(a.active(n), 3);
    assert_eq!(a.active_total(), 3);
    // A refused call takes nothing.
    assert_eq!(a.try_admit(n, 3).unwrap_err(), AtCap::NumberFull);
    assert_eq!(a.active(n), 3);
    assert_eq!(a.active_total(), 3);
    drop(held);
    assert_eq!(a.active(n), 0);
    assert_eq!(a.active_total(), 0);
}

#[test]
fn numbers_are_counted_separately() {
    let a = adm(100);
    let (n1, n2) = (num("+18005550100"), num("+14155550123"));
    let _p1 = a.try_admit(n1, 1).unwrap();
    assert_eq!(a.try_admit(n1, 1).unwrap_err(), AtCap::NumberFull);
    let p2 = a.try_admit(n2, 1).unwrap();
    assert_eq!(p2.number(), n2);
    assert_eq!((a.active(n1), a.active(n2), a.active_total()), (1, 1, 2));
}

#[test]
fn cap_zero_is_unlimited_for_the_number_and_the_instance() {
    let a = adm(0);
    let n = num("+18005550100");
    let held: Vec<Permit> = (0..5000).map(|_| a.try_admit(n, 0).unwrap()).collect();
    assert_eq!(a.active(n), 5000);
    assert_eq!(a.active_total(), 5000);
    drop(held);
    assert_eq!(a.active_total(), 0);
}

#[test]
fn drop_releases_the_slot_exactly_once() {
    let a = adm(10);
    let n = num("+18005550100");
    let p1 = a.try_admit(n, 2).unwrap();
    let p2 = a.try_admit(n, 2).unwrap();
    assert!(a.try_admit(n, 2).is_err());
    drop(p1);
    assert_eq!(a.active(n), 1);
    assert_eq!(a.active_total(), 1);
    let p3 = a.try_admit(n, 2).unwrap();
    assert_eq!(p3.number(), n);
    drop(p2);
    drop(p3);
    assert_eq!(a.active(n), 0);
    assert_eq!(a.active_total(), 0);
}

#[test]
fn permit_outlives_the_admission() {
    // A dialog may end after a reload or shutdown dropped the Admission it came from.
    let a = adm(10);
    let n = num("+18005550100");
    let p = a.try_admit(n, 1).unwrap();
    drop(a);
    assert_eq!(p.number(), n);
    drop(p);
}

#[test]
fn instance_full_rejects_and_leaks_no_number_slot() {
    let a = adm(2);
    let (n1, n2, n3) = (num("+18005550100"), num("+18005550101"), num("+18005550102"));
    let _p1 = a.try_admit(n1, 5).unwrap();
    let _p2 = a.try_admit(n2, 5).unwrap();
    assert_eq!(a.try_admit(n3, 5).unwrap_err(), AtCap::InstanceFull);
    assert_eq!(a.try_admit(n1, 5).unwrap_err(), AtCap::InstanceFull);
    assert_eq!(a.active(n3), 0);
    assert_eq!(a.active(n1), 1);
    assert_eq!(a.active_total(), 2);
}

#[test]
fn instance_full_after_the_number_slot_gives_it_back() {
    // Drives the path a concurrent admission takes when the pre-check passed but the
    // instance filled up before its slot was taken.
    let a = adm(1);
    let n = num("+18005550100");
    let _p = a.try_admit(n, 0).unwrap();
    let counter = a.counter(n);
    assert_eq!(take_slots(&counter, 5, 1), Err(AtCap::InstanceFull));
    assert_eq!(a.active(n), 1);
    assert_eq!(a.high_water(n), 1);
    assert_eq!(a.active_total(), 1);
}

#[test]
fn lowering_the_instance_cap_keeps_calls_and_refuses_new_ones() {
    let a = adm(10);
    let n = num("+18005550100");
    let held: Vec<Permit> = (0..4).map(|_| a.try_admit(n, 0).unwrap()).collect();
    a.set_instance_cap(2);
    assert_eq!(a.instance_cap(), 2);
    assert_eq!(a.try_admit(n, 0).unwrap_err(), AtCap::InstanceFull);
    assert_eq!(a.active_total(), 4);
    let mut held = held;
    held.truncate(2);
    assert_eq!(a.try_admit(n, 0).unwrap_err(), AtCap::InstanceFull);
    held.truncate(1);
    held.push(a.try_admit(n, 0).unwrap());
    a.set_instance_cap(0);
    held.push(a.try_admit(n, 0).unwrap());
    assert_eq!(a.active_total(), 3);
}

#[test]
fn lowering_a_number_cap_refuses_until_calls_end() {
    let a = adm(0);
    let n = num("+18005550100");
    let mut held: Vec<Permit> = (0..3).map(|_| a.try_admit(n, 5).unwrap()).collect();
    assert_eq!(a.try_admit(n, 2).unwrap_err(), AtCap::NumberFull);
    held.truncate(1);
    held.push(a.try_admit(n, 2).unwrap());
    assert_eq!(a.try_admit(n, 2).unwrap_err(), AtCap::NumberFull);
}

#[test]
fn high_water_marks_keep_the_peak() {
    let a = adm(0);
    let (n1, n2) = (num("+18005550100"), num("+14155550123"));
    assert_eq!(a.high_water(n1), 0);
    let mut held: Vec<Permit> = (0..4).map(|_| a.try_admit(n1, 0).unwrap()).collect();
    held.push(a.try_admit(n2, 0).unwrap());
    held.truncate(1);
    held.push(a.try_admit(n1, 0).unwrap());
    assert_eq!(a.active(n1), 2);
    assert_eq!(a.high_water(n1), 4);
    assert_eq!(a.high_water(n2), 1);
    assert_eq!(a.high_water_total(), 5);
    drop(held);
    assert_eq!(a.high_water(n1), 4);
    assert_eq!(a.high_water_total(), 5);
}

#[test]
fn refused_calls_do_not_raise_high_water() {
    let a = adm(1);
    let n = num("+18005550100");
    let _p = a.try_admit(n, 1).unwrap();
    for _ in 0..3 {
        assert!(a.try_admit(n, 1).is_err());
        assert!(a.try_admit(num("+18005550199"), 0).is_err());
    }
    assert_eq!(a.high_water(n), 1);
    assert_eq!(a.high_water(num("+18005550199")), 0);
    assert_eq!(a.high_water_total(), 1);
}

/// A recorder holding each gauge's value, to check the gauge follows the permits.
#[derive(Default)]
struct GaugeRecorder {
    gauges: Mutex<Vec<(String, Arc<TestGauge>)>>,
}

#[derive(Default)]
struct TestGauge(Mutex<f64>);

impl metrics::GaugeFn for TestGauge {
    fn increment(&self, v: f64) {
        *self.0.lock().unwrap() += v;
    }
    fn decrement(&self, v: f64) {
        *self.0.lock().unwrap() -= v;
    }
    fn set(&self, v: f64) {
        *self.0.lock().unwrap() = v;
    }
}

impl GaugeRecorder {
    fn value(&self, name: &str) -> Option<f64> {
        let gauges = self.gauges.lock().unwrap();
        gauges.iter().find(|(n, _)| n == name).map(|(_, g)| *g.0.lock().unwrap())
    }
}

impl metrics::Recorder for GaugeRecorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        let mut gauges = self.gauges.lock().unwrap();
        let g = Arc::new(TestGauge::default());
        gauges.push((key.name().to_string(), Arc::clone(&g)));
        metrics::Gauge::from_arc(g)
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn active_calls_gauge_follows_the_permits() {
    let rec = GaugeRecorder::default();
    let a = metrics::with_local_recorder(&rec, || adm(2));
    let n = num("+18005550100");
    let p1 = a.try_admit(n, 1).unwrap();
    assert_eq!(rec.value(ACTIVE_CALLS), Some(1.0));
    let p2 = a.try_admit(num("+18005550101"), 1).unwrap();
    // Refusals of either kind leave the gauge alone.
    assert!(a.try_admit(n, 1).is_err());
    assert!(a.try_admit(num("+18005550102"), 1).is_err());
    assert_eq!(rec.value(ACTIVE_CALLS), Some(2.0));
    drop(p1);
    drop(p2);
    assert_eq!(rec.value(ACTIVE_CALLS), Some(0.0));
}

#[test]
fn high_water_gauges_show_the_marks() {
    let rec = GaugeRecorder::default();
    let a = metrics::with_local_recorder(&rec, || adm(10));
    let busy = num("+12065550100");
    let quiet = num("+12065550101");
    let held = metrics::with_local_recorder(&rec, || {
        let mut v: Vec<Permit> = (0..3).map(|_| a.try_admit(busy, 3).unwrap()).collect();
        v.push(a.try_admit(quiet, 5).unwrap());
        assert!(a.try_admit(busy, 3).is_err());
        v
    });
    assert_eq!(rec.value(ACTIVE_CALLS_HIGH_WATER), Some(4.0));
    // Only the number that reached its cap has a labelled gauge, at its cap.
    assert_eq!(rec.value(NUMBER_CALLS_HIGH_WATER), Some(3.0));
    assert_eq!(rec.gauges.lock().unwrap().iter().filter(|(n, _)| n == NUMBER_CALLS_HIGH_WATER).count(), 1);
    drop(held);
    assert_eq!(rec.value(ACTIVE_CALLS_HIGH_WATER), Some(4.0), "a mark stays after the calls end");
    assert_eq!(rec.value(ACTIVE_CALLS), Some(0.0));
}

#[test]
fn try_take_stops_at_the_limit_without_wrapping() {
    let c = AtomicU32::new(u32::MAX - 1);
    assert_eq!(try_take(&c, 0), Some(u32::MAX));
    assert_eq!(try_take(&c, 0), None);
    assert_eq!(c.load(Ordering::Relaxed), u32::MAX);
}
