//! Cluster mode in the core: a capped number's call waits for the shared
//! admission's verdict (or its timer), and each policy of `on_backend_down`.

use super::harness::*;
use crate::cluster::Verdict;
use crate::config::BackendDown;
use crate::proxy::{ClusterAdmit, CoreConfig};
use std::time::Duration;

fn net(policy: BackendDown) -> Net {
    let cluster = Some(ClusterAdmit { admit_timeout: Duration::from_millis(50), policy });
    Net::with(CoreConfig { cluster, ..config() }, 1000)
}

/// Offers a call to the DID (cap 2) and returns the admit request's call id.
fn offer(net: &mut Net) -> u64 {
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![100], "100 at once, nothing forwarded yet");
    let req = net.core.poll_admit().expect("an admit request");
    let ask = req.number.as_ref().expect("the number is asked");
    assert_eq!(ask.cap, 2);
    assert!(ask.lease.upgrade().is_some_and(|l| l.key.contains("{+12065550100}")));
    assert!(req.carrier.is_none(), "carrier-a has no limits here");
    req.call
}

#[test]
fn the_first_hop_waits_for_the_verdict() {
    let mut net = net(BackendDown::LocalShare);
    let id = offer(&mut net);
    net.core.handle_admit(net.now, id, Verdict::Admitted);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    assert_eq!(fwd.method(), Some(crate::sip::Method::Invite));
    // A late timer does nothing more.
    net.advance(Duration::from_millis(100));
    assert!(net.sent().iter().all(|(to, m)| *to == addr(FLOW_AZ1) && m.method().is_some()));
}

#[test]
fn refused_by_the_cluster_is_486_and_frees_the_local_slot() {
    let mut net = net(BackendDown::LocalShare);
    let id = offer(&mut net);
    assert_eq!(net.admission.active(e164(DID)), 1);
    net.core.handle_admit(net.now, id, Verdict::Refused);
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![486]);
    assert_eq!(net.admission.active(e164(DID)), 0);
}

#[test]
fn no_verdict_in_time_applies_the_policy() {
    // local_share with one instance alive: the whole cap locally.
    let mut net = net(BackendDown::LocalShare);
    offer(&mut net);
    net.advance(Duration::from_millis(60));
    assert!(net.sent().iter().any(|(to, _)| *to == addr(FLOW_AZ1)), "admitted locally");
    offer(&mut net);
    net.advance(Duration::from_millis(60));
    assert!(net.sent().iter().any(|(to, _)| *to == addr(FLOW_AZ1)), "second call: still under the cap");
    offer(&mut net);
    net.advance(Duration::from_millis(60));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![486], "third: over the cap");

    let mut net = self::net(BackendDown::FailClosed);
    let id = offer(&mut net);
    net.core.handle_admit(net.now, id, Verdict::Unknown);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![503]);
    assert!(only_to(&sent, CARRIER_A1).header_by_name("Retry-After").is_some());
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn a_verdict_after_the_call_was_cancelled_sends_nothing() {
    let mut net = net(BackendDown::FailOpen);
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    net.sent();
    let req = net.core.poll_admit().unwrap();
    let cancel = cancel_of(&inv);
    net.deliver(CARRIER_A1, &cancel);
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![200, 487]);
    net.core.handle_admit(net.now, req.call, Verdict::Admitted);
    assert!(net.sent().iter().all(|(to, _)| *to != addr(FLOW_AZ1)), "no INVITE after the CANCEL");
    assert!(req.number.as_ref().unwrap().lease.upgrade().is_none(), "the lease went with the call");
    net.advance(Duration::from_secs(40));
    assert_eq!(net.core.counts(), (0, 0));
    assert_eq!(net.core.admitting.len(), 0);
}

#[test]
fn uncapped_numbers_never_ask() {
    let mut net = net(BackendDown::LocalShare);
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    assert!(net.core.poll_admit().is_none());
    only_to(&net.sent(), FLOW_AZ1);
}

fn capped_carrier_a(net: &Net) {
    let l = crate::admission::TrunkLimits { name: "carrier-a".into(), max_concurrent: 3, max_cps: 0 };
    net.admission.trunks().configure(&[l]);
}

#[test]
fn a_capped_carrier_is_asked_with_the_number_in_one_request() {
    let mut net = net(BackendDown::LocalShare);
    capped_carrier_a(&net);
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    net.sent();
    let req = net.core.poll_admit().expect("an admit request");
    assert!(req.number.is_some());
    let carrier = req.carrier.as_ref().expect("the carrier in the same request");
    assert_eq!((carrier.cap, carrier.cps), (3, 0));
    let lease = carrier.lease.upgrade().unwrap();
    assert_eq!(&*lease.key, "sipedge:{carrier:carrier-a}:calls");
    drop(lease);
    assert!(net.core.poll_admit().is_none(), "one request only");
    net.core.handle_admit(net.now, req.call, Verdict::TrunkRefused(crate::admission::TrunkReject::MaxConcurrent));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![503]);
    assert!(only_to(&sent, CARRIER_A1).header_by_name("Retry-After").is_some());
    assert_eq!(net.admission.trunks().active("carrier-a"), 0, "the local carrier slot is freed");
    assert!(carrier.lease.upgrade().is_none(), "and the carrier lease released");
}

#[test]
fn an_uncapped_number_with_a_capped_carrier_asks_the_carrier_only() {
    let mut net = net(BackendDown::LocalShare);
    capped_carrier_a(&net);
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let req = net.core.poll_admit().expect("an admit request");
    assert!(req.number.is_none() && req.carrier.is_some());
    net.core.handle_admit(net.now, req.call, Verdict::Admitted);
    only_to(&net.sent(), FLOW_AZ1);
}
