//! Whole calls through the core: answers, headers, retransmissions, CANCEL.

use super::harness::*;
use crate::sip::{HeaderName, Method};
use std::time::Duration;

#[test]
fn inbound_call_reaches_the_flow_engine_and_ends_with_bye() {
    let mut net = Net::new();
    let (inv, call_id) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![100], "100 Trying upstream at once");
    let fwd = only_to(&sent, FLOW_AZ1).clone();
    assert_eq!(fwd.method(), Some(Method::Invite));
    assert_eq!(fwd.header_by_name("X-Flow-Id"), Some("flow-tf"));
    assert_eq!(fwd.header_by_name("X-Number-Kind"), Some("toll-free"));
    assert_eq!(fwd.header_by_name("X-Carrier"), Some("carrier-a"));
    assert_eq!(fwd.max_forwards(), Some(69));
    assert_eq!(fwd.via_count(), 2);
    assert_eq!(fwd.top_via().unwrap().host, "127.0.0.1");
    assert!(fwd.record_routes().next().unwrap().starts_with("sip:127.0.0.1:5060;lr;st="));
    assert_eq!(fwd.call_id(), call_id);
    assert_eq!(fwd.body(), b"v=0\r\n");
    assert!(fwd.request_uri().unwrap().contains("127.0.0.10:5060"));
    assert_eq!(net.admission.active(e164(TOLL_FREE)), 1);

    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 180, FLOW_AZ1));
    let sent = net.sent();
    let ringing = only_to(&sent, CARRIER_A1);
    assert_eq!(ringing.status(), Some(180));
    assert_eq!(ringing.via_count(), 1, "our Via is stripped");

    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let sent = net.sent();
    let ok = only_to(&sent, CARRIER_A1).clone();
    assert_eq!(ok.status(), Some(200));
    assert_eq!(net.core.counts().1, 1, "a dialog exists");

    net.deliver(CARRIER_A1, &caller_request("ACK", &ok, CARRIER_A1, 1, "z9hG4bKack1"));
    let sent = net.sent();
    let ack = only_to(&sent, FLOW_AZ1);
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.routes().count(), 0, "our Route entry is popped");

    net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKbye1"));
    let sent = net.sent();
    let bye = only_to(&sent, FLOW_AZ1).clone();
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_eq!(net.admission.active(e164(TOLL_FREE)), 0, "slot released at BYE");
    net.deliver_bytes(FLOW_AZ1, answer(&bye, 200, FLOW_AZ1));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![200]);

    // A retransmitted BYE is absorbed with the same answer and releases nothing twice.
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKbye1"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![200]);
    assert_eq!(net.admission.active_total(), 0);
    // A second BYE (new transaction) finds no dialog.
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 3, "z9hG4bKbye2"));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![481]);
    net.advance(Duration::from_secs(40));
    assert_eq!(net.core.counts(), (0, 0), "everything reaped");
}

#[test]
fn bye_from_the_callee_goes_to_the_caller() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let sent = net.sent();
    let ok = only_to(&sent, CARRIER_A1).clone();
    net.deliver(CARRIER_A1, &caller_request("ACK", &ok, CARRIER_A1, 1, "z9hG4bKa"));
    net.sent();
    let bye = format!(
        "BYE sip:caller@{CARRIER_A1} SIP/2.0\nVia: SIP/2.0/UDP {FLOW_AZ1};branch=z9hG4bKcb\nRoute: <sip:{EDGE};lr>\nFrom: {}\nTo: {}\nCall-ID: {}\nCSeq: 7 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
        ok.header(HeaderName::To).unwrap(),
        ok.header(HeaderName::From).unwrap(),
        ok.call_id()
    );
    net.deliver(FLOW_AZ1, &bye);
    let sent = net.sent();
    assert_eq!(only_to(&sent, CARRIER_A1).method(), Some(Method::Bye));
    assert_eq!(net.admission.active(e164(DID)), 0);
}

#[test]
fn refusals_follow_spec_section_5() {
    let mut net = Net::new();
    for (number, from, want) in [
        ("+19995550100", CARRIER_A1, 404),
        (NO_FLOW, CARRIER_A1, 480),
        (RELEASED, CARRIER_A1, 410),
        ("alice", CARRIER_A1, 484),
        (TOLL_FREE, STRANGER, 403),
    ] {
        let (inv, _) = net.invite(from, number);
        net.deliver(from, &inv);
        let sent = net.sent();
        let got = statuses(&sent, from);
        assert_eq!(got.last(), Some(&want), "{number} from {from}: {:?}", summary(&sent));
        assert!(sent.iter().all(|(a, _)| *a == addr(from)), "nothing forwarded: {:?}", summary(&sent));
    }
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn unknown_source_with_drop_gets_nothing() {
    let mut cfg = config();
    cfg.unknown_source = crate::proxy::UnknownSourcePolicy::Drop;
    let mut net = Net::with(cfg, 1000);
    let (inv, _) = net.invite(STRANGER, TOLL_FREE);
    net.deliver(STRANGER, &inv);
    assert!(net.sent().is_empty());
}

#[test]
fn retransmitted_invite_is_absorbed() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    assert_eq!(net.sent().len(), 2);
    net.deliver(CARRIER_A1, &inv);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![100], "retransmission gets the last provisional");
    assert!(statuses(&sent, FLOW_AZ1).is_empty() && sent.len() == 1, "{:?}", summary(&sent));
}

#[test]
fn cancel_after_ringing_is_relayed_and_487_comes_back() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 180, FLOW_AZ1));
    net.sent();
    let cancel = cancel_of(&inv);
    net.deliver(CARRIER_A1, &cancel);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![200], "200 to the CANCEL");
    let c = only_to(&sent, FLOW_AZ1);
    assert_eq!(c.method(), Some(Method::Cancel));
    assert_eq!(c.top_via().unwrap().branch, fwd.top_via().unwrap().branch, "CANCEL matches the INVITE branch");
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 487, FLOW_AZ1));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![487]);
    assert_eq!(only_to(&sent, FLOW_AZ1).method(), Some(Method::Ack), "hop-by-hop ACK for the 487");
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn cancel_before_any_answer_then_late_200_is_hung_up() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    let cancel = cancel_of(&inv);
    net.deliver(CARRIER_A1, &cancel);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![200, 487]);
    assert_eq!(net.admission.active_total(), 0);
    // The callee answers anyway: the edge ACKs and BYEs it, the caller hears nothing.
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let sent = net.sent();
    let methods: Vec<_> =
        sent.iter().filter(|(a, _)| *a == addr(FLOW_AZ1)).map(|(_, m)| m.method_str().to_string()).collect();
    assert_eq!(methods, vec!["ACK", "BYE"]);
    assert!(statuses(&sent, CARRIER_A1).is_empty());
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn a_200_that_wins_the_race_with_a_cancel_makes_the_call_and_its_retransmission_is_relayed() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 180, FLOW_AZ1));
    net.sent();
    let cancel = cancel_of(&inv);
    net.deliver(CARRIER_A1, &cancel);
    net.sent();
    // The callee answered before it saw our CANCEL: the caller gets the 200 (RFC 3261 §16.7).
    let ok = answer(&fwd, 200, FLOW_AZ1);
    net.deliver_bytes(FLOW_AZ1, ok.clone());
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![200]);
    assert_eq!(net.admission.active_total(), 1, "the answered call holds its slot");
    // Its retransmission is relayed too, and does not hang the call up.
    net.deliver_bytes(FLOW_AZ1, ok);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![200]);
    assert!(sent.iter().all(|(_, m)| m.method() != Some(Method::Bye)), "{:?}", summary(&sent));
    assert_eq!(net.admission.active_total(), 1);
}

#[test]
fn max_forwards_zero_options_and_unknown_methods() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv.replace("Max-Forwards: 70", "Max-Forwards: 0"));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![483]);
    let opt = format!("OPTIONS sip:{EDGE} SIP/2.0\nVia: SIP/2.0/UDP {CARRIER_A1};branch=z9hG4bKo1\nFrom: <sip:p@{CARRIER_A1}>;tag=1\nTo: <sip:{EDGE}>\nCall-ID: o1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n");
    net.deliver(CARRIER_A1, &opt);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![200]);
    assert!(sent[0].1.header(HeaderName::Allow).is_some());
    assert!(sent[0].1.header(HeaderName::Server).is_none(), "no Server header unless configured");
    let reg = opt.replace("OPTIONS", "REGISTER");
    net.deliver(CARRIER_A1, &reg);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![405]);
    assert!(sent[0].1.header(HeaderName::Allow).is_some());
}

#[test]
fn per_number_cap_gives_486_and_instance_cap_503() {
    let mut net = Net::with(config(), 3);
    for _ in 0..2 {
        let (inv, _) = net.invite(CARRIER_A1, DID);
        net.deliver(CARRIER_A1, &inv);
        assert_eq!(net.sent().len(), 2);
    }
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![100, 486]);
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    assert_eq!(net.sent().len(), 2);
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![100, 503]);
    assert_eq!(sent[1].1.header(HeaderName::RetryAfter), Some("5"));
    assert_eq!(net.admission.active_total(), 3);
}

#[test]
fn in_dialog_request_from_a_stranger_is_refused() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let ok = only_to(&net.sent(), CARRIER_A1).clone();
    // Carrier B is a configured peer but not this dialog's: 403, nothing forwarded.
    net.deliver(CARRIER_B1, &caller_request("BYE", &ok, CARRIER_B1, 2, "z9hG4bKx"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_B1), vec![403]);
    assert_eq!(sent.len(), 1);
    assert_eq!(net.admission.active_total(), 1);
}

#[test]
fn an_answer_from_anyone_but_the_hop_is_ignored() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    // Another configured peer forges a 200 with the right branch: dropped.
    net.deliver_bytes(FLOW_AZ2, answer(&fwd, 200, FLOW_AZ2));
    assert!(net.sent().is_empty());
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![200]);
}
