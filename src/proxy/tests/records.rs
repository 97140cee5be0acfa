//! Call records from the core: one per call, closed at the right moment
//! with the right outcome, status, hops and who ended it.

use super::harness::*;
use crate::proxy::{CallRecord, Direction, EndedBy, HopAnswer};
use std::time::Duration;

fn net() -> Net {
    Net::with(crate::proxy::CoreConfig { records: true, ..config() }, 1000)
}

fn records(net: &mut Net) -> Vec<CallRecord> {
    std::iter::from_fn(|| net.core.poll_record().map(|r| *r)).collect()
}

#[test]
fn an_answered_call_gets_its_record_when_it_ends_not_before() {
    let mut net = net();
    let (inv, call_id) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.advance(Duration::from_millis(40));
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let ok = only_to(&net.sent(), CARRIER_A1).clone();
    assert!(records(&mut net).is_empty(), "no record while the call is up");
    net.deliver(CARRIER_A1, &caller_request("ACK", &ok, CARRIER_A1, 1, "z9hG4bKa"));
    net.advance(Duration::from_secs(3));
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKb"));
    let recs = records(&mut net);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(&*r.call_id, call_id);
    assert_eq!(r.direction, Direction::Inbound);
    assert_eq!(r.number.as_deref(), Some(TOLL_FREE));
    assert_eq!(r.kind, Some("toll-free"));
    assert_eq!(r.carrier.as_deref(), Some("carrier-a"));
    assert_eq!(r.flow.as_deref(), Some("flow-tf"));
    assert_eq!((r.outcome, r.status, r.ended_by), ("answered", 200, EndedBy::Caller));
    assert_eq!(r.setup_ms, 40);
    assert!((r.duration_s - 3.0).abs() < 0.01, "{}", r.duration_s);
    assert_eq!(r.hops.len(), 1);
    assert_eq!((r.hops[0].addr, &*r.hops[0].group), (addr(FLOW_AZ1), "flow-engine"));
    assert_eq!(r.hops[0].answer, Some(HopAnswer::Status(200)));
    assert_eq!(r.az.as_deref(), Some("az1"));
    net.advance(Duration::from_secs(40));
    assert!(records(&mut net).is_empty(), "exactly one record per call");
}

#[test]
fn a_refused_call_gets_a_record_at_once() {
    let mut net = net();
    let (inv, _) = net.invite(CARRIER_A1, "+12065559999");
    net.deliver(CARRIER_A1, &inv);
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![100, 404]);
    let recs = records(&mut net);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!((r.outcome, r.status, r.ended_by), ("unknown_number", 404, EndedBy::Edge));
    assert_eq!(r.number.as_deref(), Some("+12065559999"), "what was dialed");
    assert!(r.hops.is_empty() && r.kind.is_none() && r.flow.is_none());
    assert_eq!(r.carrier.as_deref(), Some("carrier-a"));
}

#[test]
fn a_failed_over_call_lists_every_hop_with_its_answer() {
    let mut net = net();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let first = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&first, 503, FLOW_AZ1));
    let second = only_to(&net.sent(), FLOW_AZ2).clone();
    net.deliver_bytes(FLOW_AZ2, answer(&second, 486, FLOW_AZ2));
    assert!(statuses(&net.sent(), CARRIER_A1).contains(&486));
    let recs = records(&mut net);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!((r.outcome, r.status, r.ended_by), ("refused_downstream", 486, EndedBy::Callee));
    let hops: Vec<_> = r.hops.iter().map(|h| (h.addr, h.answer)).collect();
    assert_eq!(
        hops,
        vec![(addr(FLOW_AZ1), Some(HopAnswer::Status(503))), (addr(FLOW_AZ2), Some(HopAnswer::Status(486)))]
    );
    assert_eq!(r.az.as_deref(), Some("az2"));
}

#[test]
fn a_timed_out_hop_is_recorded_as_such() {
    let mut net = net();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    net.sent();
    // Neither flow-engine hop answers: both time out, no hop is left: 503.
    net.advance(Duration::from_secs(40));
    let recs = records(&mut net);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!((r.outcome, r.status, r.ended_by), ("no_route", 503, EndedBy::Edge));
    assert!(r.hops.iter().all(|h| h.answer == Some(HopAnswer::Timeout)), "{:?}", r.hops);
    assert_eq!(r.hops.len(), 2);
}

#[test]
fn a_cancelled_call_is_ended_by_the_caller() {
    let mut net = net();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 180, FLOW_AZ1));
    net.sent();
    let cancel = cancel_of(&inv);
    net.deliver(CARRIER_A1, &cancel);
    net.sent();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 487, FLOW_AZ1));
    assert!(statuses(&net.sent(), CARRIER_A1).contains(&487));
    let recs = records(&mut net);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].outcome, recs[0].status, recs[0].ended_by), ("cancelled", 487, EndedBy::Caller));
}

#[test]
fn an_outbound_call_names_the_carrier_it_went_to() {
    let mut net = net();
    let inv = net.outbound(FLOW_AZ1, TOLL_FREE, "+14155550123");
    net.deliver(FLOW_AZ1, &inv);
    let fwd = only_to(&net.sent(), CARRIER_A1).clone();
    net.deliver_bytes(CARRIER_A1, answer(&fwd, 404, CARRIER_A1));
    net.sent();
    let recs = records(&mut net);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r.direction, Direction::Outbound);
    assert_eq!(r.carrier.as_deref(), Some("carrier-a"));
    assert_eq!(r.number.as_deref(), Some(TOLL_FREE));
    assert_eq!(r.status, 404);
}

#[test]
fn records_off_builds_nothing() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, "+12065559999");
    net.deliver(CARRIER_A1, &inv);
    net.sent();
    assert!(records(&mut net).is_empty());
}
