//! Timers of finished calls are not left in the queue.

use super::harness::*;
use std::time::Duration;

#[test]
fn an_ended_call_leaves_no_timer_behind() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 180, FLOW_AZ1));
    net.sent();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let sent = net.sent();
    let ok = only_to(&sent, CARRIER_A1).clone();
    net.deliver(CARRIER_A1, &caller_request("ACK", &ok, CARRIER_A1, 1, "z9hG4bKack"));
    net.sent();
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKbye"));
    let sent = net.sent();
    let bye = only_to(&sent, FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&bye, 200, FLOW_AZ1));
    net.sent();
    // Past every transaction timer (64*T1) and timer C (180 s), far short of
    // max_call_duration (4 h): the dialog's MaxDuration must be gone with it.
    net.advance(Duration::from_secs(200));
    assert_eq!(net.core.counts(), (0, 0));
    assert!(net.core.timers.is_empty(), "{} timers left after the call ended", net.core.timers.len());
}

#[test]
fn cancel_removes_only_that_timer() {
    use crate::proxy::timer::{Owner, Slot, Timer, TimerQueue};
    let now = std::time::Instant::now();
    let mut q = TimerQueue::default();
    let a = q.arm(now, Duration::from_secs(10), Owner::Call(1), Timer::MaxDuration, Slot::Whole);
    q.arm(now, Duration::from_secs(10), Owner::Call(2), Timer::MaxDuration, Slot::Whole);
    q.cancel(a);
    q.cancel(a);
    assert_eq!(q.len(), 1);
    let f = q.pop_due(now + Duration::from_secs(10)).unwrap();
    assert_eq!(f.owner, Owner::Call(2));
}
