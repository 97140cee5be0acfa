//! Carrier trunk limits (SPEC §10) through the core: inbound refusals, outbound
//! skips, and the carrier slot through every way a call ends.

use super::harness::*;
use crate::admission::TrunkLimits;
use crate::sip::Method;
use std::sync::Arc;
use std::time::Duration;

fn limit(net: &Net, a: (u32, u32), b: (u32, u32)) {
    let l = |name: &str, (max_concurrent, max_cps): (u32, u32)| TrunkLimits {
        name: Arc::from(name),
        max_concurrent,
        max_cps,
    };
    net.admission.trunks().configure(&[l("carrier-a", a), l("carrier-b", b)]);
}

fn active(net: &Net) -> (u32, u32, u32) {
    let t = net.admission.trunks();
    (t.active("carrier-a"), t.active("carrier-b"), net.admission.active_total())
}

/// An inbound call from `from` to the toll-free number, answered 200; the caller's copy of the 200.
fn inbound_up(net: &mut Net, from: &str) -> crate::sip::Msg {
    let (inv, _) = net.invite(from, TOLL_FREE);
    net.deliver(from, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let ok = only_to(&net.sent(), from).clone();
    net.deliver(from, &caller_request("ACK", &ok, from, 1, "z9hG4bKack"));
    net.sent();
    ok
}

fn refused_503_with_retry_after(net: &mut Net, from: &str) {
    let (inv, _) = net.invite(from, TOLL_FREE);
    net.deliver(from, &inv);
    let sent = net.sent();
    assert_eq!(statuses(&sent, from), vec![100, 503], "{:?}", summary(&sent));
    let refusal = sent.iter().find(|(_, m)| m.status() == Some(503)).map(|(_, m)| m).unwrap();
    assert_eq!(refusal.header_by_name("Retry-After"), Some("5"));
    assert!(sent.iter().all(|(a, _)| *a == addr(from)), "nothing forwarded: {:?}", summary(&sent));
}

#[test]
fn inbound_over_max_concurrent_gets_503_with_retry_after_while_another_carrier_passes() {
    let mut net = Net::new();
    limit(&net, (2, 0), (0, 0));
    inbound_up(&mut net, CARRIER_A1);
    inbound_up(&mut net, CARRIER_A2);
    refused_503_with_retry_after(&mut net, CARRIER_A1);
    inbound_up(&mut net, CARRIER_B1);
    assert_eq!(active(&net), (2, 1, 3), "the refused call took no slot anywhere");
}

#[test]
fn inbound_over_max_cps_gets_503_until_the_rate_allows_again() {
    let mut net = Net::new();
    limit(&net, (0, 2), (0, 0));
    inbound_up(&mut net, CARRIER_A1);
    inbound_up(&mut net, CARRIER_A1);
    refused_503_with_retry_after(&mut net, CARRIER_A1);
    net.advance(Duration::from_millis(500));
    net.sent();
    inbound_up(&mut net, CARRIER_A1);
    assert_eq!(active(&net).0, 3);
}

#[test]
fn fair_share_with_unlimited_carriers_keeps_room_for_the_other_carrier() {
    // Instance cap 10, two carriers, no trunk limits: the default config.
    let mut net = Net::with(config(), 10);
    limit(&net, (0, 0), (0, 0));
    for _ in 0..9 {
        inbound_up(&mut net, CARRIER_A1);
    }
    // 9 of 10 held (> 80 %), carrier-a holds 9 > 10 / 2.
    refused_503_with_retry_after(&mut net, CARRIER_A1);
    inbound_up(&mut net, CARRIER_B1);
    assert_eq!(active(&net), (9, 1, 10));
}

/// One scripted way for a call to end.
type End = (&'static str, fn(&mut Net));

/// Every way an inbound call from carrier-a can end leaves no slot behind.
#[test]
fn the_carrier_slot_is_released_exactly_once_however_the_call_ends() {
    let ends: [End; 8] = [
        ("bye from the caller", |net| {
            let ok = inbound_up(net, CARRIER_A1);
            net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKbye"));
            // A retransmitted BYE releases nothing twice.
            net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKbye"));
        }),
        ("refused downstream", |net| {
            let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
            net.deliver(CARRIER_A1, &inv);
            let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
            net.deliver_bytes(FLOW_AZ1, answer(&fwd, 486, FLOW_AZ1));
        }),
        ("every hop failing", |net| {
            let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
            net.deliver(CARRIER_A1, &inv);
            net.advance(Duration::from_secs(5));
        }),
        ("cancel", |net| {
            let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
            net.deliver(CARRIER_A1, &inv);
            let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
            net.deliver_bytes(FLOW_AZ1, answer(&fwd, 180, FLOW_AZ1));
            let cancel = cancel_of(&inv);
            net.deliver(CARRIER_A1, &cancel);
            net.deliver_bytes(FLOW_AZ1, answer(&fwd, 487, FLOW_AZ1));
        }),
        ("no ack for the 2xx", |net| {
            let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
            net.deliver(CARRIER_A1, &inv);
            let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
            net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
            net.advance(Duration::from_secs(40));
        }),
        ("max call duration", |net| {
            inbound_up(net, CARRIER_A1);
            net.advance(Duration::from_secs(14_401));
        }),
        ("shutdown", |net| {
            inbound_up(net, CARRIER_A1);
            let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
            net.deliver(CARRIER_A1, &inv);
            net.core.shutdown(net.now);
        }),
        ("refused by the number cap", |net| {
            for _ in 0..3 {
                let (inv, _) = net.invite(CARRIER_A1, DID);
                net.deliver(CARRIER_A1, &inv);
            }
            net.advance(Duration::from_secs(5));
        }),
    ];
    for (name, end) in ends {
        let mut net = Net::new();
        limit(&net, (5, 0), (0, 0));
        end(&mut net);
        net.sent();
        assert_eq!(active(&net), (0, 0, 0), "{name}");
    }
}

#[test]
fn outbound_toll_free_skips_a_full_carrier_for_the_next_one() {
    let mut net = Net::new();
    limit(&net, (1, 0), (0, 0));
    inbound_up(&mut net, CARRIER_A1);
    let inv = net.outbound(FLOW_AZ1, TOLL_FREE, "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    let sent = net.sent();
    assert_eq!(only_to(&sent, CARRIER_B1).method(), Some(Method::Invite), "{:?}", summary(&sent));
    assert!(sent.iter().all(|(a, _)| *a != addr(CARRIER_A1) && *a != addr(CARRIER_A2)));
    assert_eq!(active(&net), (1, 1, 2));
}

#[test]
fn outbound_did_with_its_carrier_full_gets_503_with_retry_after() {
    let mut net = Net::new();
    limit(&net, (1, 0), (0, 0));
    inbound_up(&mut net, CARRIER_A1);
    let inv = net.outbound(FLOW_AZ1, DID, "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    let sent = net.sent();
    assert_eq!(statuses(&sent, FLOW_AZ1), vec![100, 503], "{:?}", summary(&sent));
    let refusal = sent.iter().find(|(_, m)| m.status() == Some(503)).map(|(_, m)| m).unwrap();
    assert!(refusal.header_by_name("Retry-After").is_some());
    assert_eq!(active(&net), (1, 0, 1));
}

#[test]
fn outbound_failover_moves_the_slot_to_the_next_carrier() {
    let mut net = Net::new();
    limit(&net, (5, 0), (5, 0));
    let inv = net.outbound(FLOW_AZ1, TOLL_FREE, "+13125550100");
    net.deliver(FLOW_AZ1, &inv);
    let a1 = only_to(&net.sent(), CARRIER_A1).clone();
    assert_eq!(active(&net), (1, 0, 1));
    net.deliver_bytes(CARRIER_A1, answer(&a1, 503, CARRIER_A1));
    only_to(&net.sent(), CARRIER_A2);
    assert_eq!(active(&net), (1, 0, 1), "the same carrier's other link keeps its slot");
    net.advance(Duration::from_millis(2001));
    let b1 = only_to(&net.sent(), CARRIER_B1).clone();
    assert_eq!(active(&net), (0, 1, 1), "the slot moved with the call");
    net.deliver_bytes(CARRIER_B1, answer(&b1, 200, CARRIER_B1));
    let ok = net.sent().into_iter().find(|(a, _)| *a == addr(FLOW_AZ1)).map(|(_, m)| m).unwrap();
    net.deliver(FLOW_AZ1, &caller_request("BYE", &ok, FLOW_AZ1, 2, "z9hG4bKobye"));
    net.sent();
    assert_eq!(active(&net), (0, 0, 0));
}

#[test]
fn outbound_with_every_carrier_over_its_rate_gets_503() {
    let mut net = Net::new();
    limit(&net, (0, 1), (0, 1));
    let first = net.outbound(FLOW_AZ1, TOLL_FREE, "+13125550100");
    net.deliver(FLOW_AZ1, &first);
    only_to(&net.sent(), CARRIER_A1);
    // carrier-a's rate is spent: the next call goes to carrier-b, the one after finds neither.
    let second = net.outbound(FLOW_AZ1, TOLL_FREE, "+13125550100");
    net.deliver(FLOW_AZ1, &second);
    only_to(&net.sent(), CARRIER_B1);
    let third = net.outbound(FLOW_AZ1, TOLL_FREE, "+13125550100");
    net.deliver(FLOW_AZ1, &third);
    assert_eq!(statuses(&net.sent(), FLOW_AZ1), vec![100, 503]);
    assert_eq!(active(&net), (1, 1, 2));
}
#[test]
fn an_outbound_request_uri_that_is_no_number_gets_484() {
    let mut net = Net::new();
    for dialed in ["abc", "+1312555abcd", "911%3Bx"] {
        let inv = net.outbound(FLOW_AZ1, TOLL_FREE, dialed);
        net.deliver(FLOW_AZ1, &inv);
        let sent = net.sent();
        assert_eq!(statuses(&sent, FLOW_AZ1), vec![100, 484], "{dialed:?}: {:?}", summary(&sent));
        assert!(sent.iter().all(|(a, _)| *a == addr(FLOW_AZ1)), "{dialed:?}: nothing sent to a carrier");
    }
    assert_eq!(net.admission.active_total(), 0);
}
