//! How calls end when nobody ends them: no ACK, max duration, shutdown.

use super::harness::*;
use crate::sip::Method;
use std::time::Duration;

fn answered(net: &mut Net) -> crate::sip::Msg {
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    only_to(&net.sent(), CARRIER_A1).clone()
}

#[test]
fn a_2xx_never_acked_ends_the_call_both_ways() {
    let mut net = Net::new();
    answered(&mut net);
    assert_eq!(net.admission.active_total(), 1);
    net.advance(Duration::from_secs(33));
    let sent = net.sent();
    let byes: Vec<_> = sent.iter().filter(|(_, m)| m.method() == Some(Method::Bye)).map(|(a, _)| *a).collect();
    assert!(byes.contains(&addr(FLOW_AZ1)) && byes.contains(&addr(CARRIER_A1)), "{:?}", summary(&sent));
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn max_call_duration_ends_the_call() {
    let mut cfg = config();
    cfg.max_call_duration = Duration::from_secs(60);
    let mut net = Net::with(cfg, 100);
    let ok = answered(&mut net);
    net.deliver(CARRIER_A1, &caller_request("ACK", &ok, CARRIER_A1, 1, "z9hG4bKa1"));
    net.sent();
    net.advance(Duration::from_secs(59));
    assert_eq!(net.admission.active_total(), 1);
    net.advance(Duration::from_secs(2));
    let sent = net.sent();
    let mut to: Vec<_> = sent.iter().filter(|(_, m)| m.method() == Some(Method::Bye)).map(|(a, _)| *a).collect();
    to.dedup();
    to.sort();
    to.dedup();
    assert_eq!(
        to,
        vec![addr(CARRIER_A1), addr(FLOW_AZ1)],
        "one BYE each way (plus retransmissions): {:?}",
        summary(&sent)
    );
    assert_eq!(net.admission.active_total(), 0);
    // The BYE answers are absorbed; a late BYE from the caller finds no dialog.
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKb1"));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![481]);
}

#[test]
fn shutdown_releases_every_slot() {
    let mut net = Net::new();
    answered(&mut net);
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    net.sent();
    assert_eq!(net.admission.active_total(), 2);
    net.core.shutdown(net.now);
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn unanswered_invite_everywhere_ends_in_503_and_frees_the_slot() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    net.advance(Duration::from_secs(5));
    let sent = net.sent();
    // The 503 is retransmitted (timer G) until the carrier ACKs it.
    assert_eq!(statuses(&sent, CARRIER_A1)[..2], [100, 503], "{:?}", summary(&sent));
    assert_eq!(net.admission.active_total(), 0);
    net.advance(Duration::from_secs(60));
    net.sent();
    assert_eq!(net.core.counts(), (0, 0));
}

#[test]
fn a_2xx_retransmitted_after_the_bye_does_not_bring_the_dialog_back() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    let ok_down = answer(&fwd, 200, FLOW_AZ1);
    net.deliver_bytes(FLOW_AZ1, ok_down.clone());
    let ok = only_to(&net.sent(), CARRIER_A1).clone();
    net.deliver(CARRIER_A1, &caller_request("ACK", &ok, CARRIER_A1, 1, "z9hG4bKa1"));
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKb1"));
    let sent = net.sent();
    let bye =
        sent.iter().find(|(a, m)| *a == addr(FLOW_AZ1) && m.method() == Some(Method::Bye)).map(|(_, m)| m.clone());
    net.deliver_bytes(FLOW_AZ1, answer(&bye.expect("BYE forwarded"), 200, FLOW_AZ1));
    net.sent();
    assert_eq!(net.core.counts().1, 0, "the BYE ended the dialog");
    // The callee's 200 to the INVITE comes again (its ACK was lost): it is
    // relayed, but the ended dialog stays ended.
    net.deliver_bytes(FLOW_AZ1, ok_down);
    net.sent();
    assert_eq!(net.core.counts().1, 0, "no dialog made again from a retransmitted 2xx");
    net.advance(Duration::from_secs(40));
    let sent = net.sent();
    assert!(
        sent.iter().all(|(_, m)| m.method() != Some(Method::Bye)),
        "no BYE for an ended call: {:?}",
        summary(&sent)
    );
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn shutdown_answers_a_pending_invite_upstream_and_cancels_it_downstream() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 180, FLOW_AZ1));
    net.sent();
    net.core.shutdown(net.now);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![503], "{:?}", summary(&sent));
    let cancels = sent.iter().filter(|(a, m)| *a == addr(FLOW_AZ1) && m.method() == Some(Method::Cancel)).count();
    assert_eq!(cancels, 1, "{:?}", summary(&sent));
    assert_eq!(net.admission.active_total(), 0);
}
