//! Serial failover across AZ links and carriers (SPEC §5), and outbound scope.

use super::harness::*;
use crate::failover::HopKey;
use crate::sip::{Method, Msg, Transport};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

#[test]
fn inbound_fails_over_to_the_other_az_on_503_with_the_flow_header_intact() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let first = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&first, 503, FLOW_AZ1));
    let sent = net.sent();
    assert_eq!(only_to(&sent, FLOW_AZ1).method(), Some(Method::Ack));
    let second = only_to(&sent, FLOW_AZ2).clone();
    assert_eq!(second.header_by_name("X-Flow-Id"), Some("flow-tf"));
    assert_ne!(second.top_via().unwrap().branch, first.top_via().unwrap().branch);
    assert!(statuses(&sent, CARRIER_A1).is_empty(), "the 503 is not relayed");
    net.deliver_bytes(FLOW_AZ2, answer(&second, 200, FLOW_AZ2));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![200]);
}

#[test]
fn no_answer_within_failover_ms_tries_the_next_hop() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    net.sent();
    net.advance(Duration::from_millis(1999));
    let sent = net.sent();
    assert!(sent.iter().all(|(a, _)| *a == addr(FLOW_AZ1)), "only retransmissions so far: {:?}", summary(&sent));
    net.advance(Duration::from_millis(2));
    let sent = net.sent();
    assert_eq!(only_to(&sent, FLOW_AZ2).method(), Some(Method::Invite));
}

#[test]
fn every_hop_failing_gives_503() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let a = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&a, 503, FLOW_AZ1));
    let b = only_to(&net.sent(), FLOW_AZ2).clone();
    net.deliver_bytes(FLOW_AZ2, answer(&b, 500, FLOW_AZ2));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![503]);
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn busy_is_relayed_not_failed_over_and_503_after_ringing_is_relayed() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let a = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&a, 486, FLOW_AZ1));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![486]);
    assert!(sent.iter().all(|(x, _)| *x != addr(FLOW_AZ2)));

    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let a = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&a, 180, FLOW_AZ1));
    net.sent();
    net.deliver_bytes(FLOW_AZ1, answer(&a, 503, FLOW_AZ1));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![503]);
    assert!(sent.iter().all(|(x, _)| *x != addr(FLOW_AZ2)));
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn transport_error_fails_over_at_once() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let lost = only_to(&net.sent(), FLOW_AZ1).buf().clone();
    net.core.handle_send_error(net.now, crate::proxy::Peer::to(addr(FLOW_AZ1), Transport::Udp), &lost);
    assert_eq!(only_to(&net.sent(), FLOW_AZ2).method(), Some(Method::Invite));
}

#[test]
fn a_send_error_fails_only_the_branch_whose_message_was_lost() {
    let mut net = Net::new();
    let (first, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &first);
    let lost = only_to(&net.sent(), FLOW_AZ1).buf().clone();
    // A second call to the same hop went out (on a fresh connection) before the error came back.
    let (second, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &second);
    net.sent();
    net.core.handle_send_error(net.now, crate::proxy::Peer::to(addr(FLOW_AZ1), Transport::Tcp), &lost);
    let sent = net.sent();
    assert_eq!(sent.len(), 1, "only the first call fails over: {:?}", summary(&sent));
    assert_eq!(only_to(&sent, FLOW_AZ2).call_id(), Msg::parse(lost).unwrap().call_id());
}

#[test]
fn toll_free_outbound_tries_carrier_a_links_then_carrier_b() {
    let mut net = Net::new();
    let inv = net.outbound(FLOW_AZ1, TOLL_FREE, "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    let a1 = only_to(&net.sent(), CARRIER_A1).clone();
    assert!(a1.header(crate::sip::HeaderName::From).unwrap().contains("ACME"), "cnam as display name");
    net.deliver_bytes(CARRIER_A1, answer(&a1, 503, CARRIER_A1));
    let a2 = only_to(&net.sent(), CARRIER_A2).clone();
    net.advance(Duration::from_millis(2001));
    let b1 = only_to(&net.sent(), CARRIER_B1).clone();
    let _ = a2;
    net.deliver_bytes(CARRIER_B1, answer(&b1, 200, CARRIER_B1));
    assert_eq!(statuses(&net.sent(), FLOW_AZ1), vec![200]);
}

#[test]
fn did_outbound_never_leaves_its_carrier() {
    let mut net = Net::new();
    let inv = net.outbound(FLOW_AZ1, DID, "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    let a1 = only_to(&net.sent(), CARRIER_A1).clone();
    net.deliver_bytes(CARRIER_A1, answer(&a1, 503, CARRIER_A1));
    let a2 = only_to(&net.sent(), CARRIER_A2).clone();
    net.deliver_bytes(CARRIER_A2, answer(&a2, 503, CARRIER_A2));
    let sent = net.sent();
    assert_eq!(statuses(&sent, FLOW_AZ1), vec![503]);
    assert!(sent.iter().all(|(x, m)| *x != addr(CARRIER_B1) || m.method() == Some(Method::Ack)));
    assert!(!summary(&sent).iter().any(|s| s.starts_with(CARRIER_B1)));
}

#[test]
fn caller_id_not_ours_is_403() {
    let mut net = Net::new();
    let inv = net.outbound(FLOW_AZ1, "+13125550111", "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    assert_eq!(statuses(&net.sent(), FLOW_AZ1), vec![100, 403]);
    let inv = net.outbound(FLOW_AZ1, RELEASED, "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    assert_eq!(statuses(&net.sent(), FLOW_AZ1), vec![100, 403]);
}

#[test]
fn hops_marked_down_are_skipped_without_waiting() {
    let mut net = Net::new();
    let down: HashSet<HopKey> = [
        HopKey {
            group: Arc::from("carrier-a"),
            az: Arc::from("az1"),
            addr: addr(CARRIER_A1),
            transport: Transport::Udp,
        },
        HopKey {
            group: Arc::from("carrier-a"),
            az: Arc::from("az2"),
            addr: addr(CARRIER_A2),
            transport: Transport::Udp,
        },
    ]
    .into_iter()
    .collect();
    net.down.publish(down);
    let inv = net.outbound(FLOW_AZ1, TOLL_FREE, "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    assert_eq!(only_to(&net.sent(), CARRIER_B1).method(), Some(Method::Invite));
    // A DID whose only carrier is down: 503 at once.
    let inv = net.outbound(FLOW_AZ1, DID, "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    assert_eq!(statuses(&net.sent(), FLOW_AZ1), vec![100, 503]);
}
