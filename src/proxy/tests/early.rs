//! Early dialogs: PRACK, UPDATE and INFO between a tagged 1xx and the 2xx.

use super::harness::*;
use crate::sip::{build, HeaderName, Method, Msg};
use bytes::Bytes;
use std::time::Duration;

/// A reliable provisional (RFC 3262) with `tag`, copying Record-Route like a UAS.
fn reliable(req: &Msg, code: u16, uas: &str, tag: &str, rseq: u32) -> Bytes {
    let rr: Vec<String> = req.headers(HeaderName::RecordRoute).map(str::to_owned).collect();
    let contact = format!("<sip:uas@{uas}>");
    let rseq = rseq.to_string();
    let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", v.as_str())).collect();
    extra.extend([("Contact", contact.as_str()), ("Require", "100rel"), ("RSeq", rseq.as_str())]);
    build::response(req, code, "Session Progress", Some(tag), &extra)
}

/// A PRACK (or other request) from the caller inside the early dialog of `prov`.
fn from_caller(method: &str, prov: &Msg, from: &str, cseq: u32, branch: &str) -> String {
    let rack = match method {
        "PRACK" => format!("RAck: 1 {} INVITE\n", prov.cseq().seq),
        _ => String::new(),
    };
    caller_request(method, prov, from, cseq, branch).replacen("Max-Forwards", &format!("{rack}Max-Forwards"), 1)
}

/// A request from the callee inside the early dialog of `prov`, Route set from its Record-Route.
fn from_callee(method: &str, prov: &Msg, uas: &str, cseq: u32, branch: &str) -> String {
    let routes: Vec<String> = prov.record_routes().map(|r| format!("Route: <{r}>")).collect();
    format!(
        "{method} sip:caller@{CARRIER_A1} SIP/2.0\n\
         Via: SIP/2.0/UDP {uas};branch={branch}\n\
         {}\n\
         From: {}\n\
         To: {}\n\
         Call-ID: {}\n\
         CSeq: {cseq} {method}\n\
         Contact: <sip:uas@{uas}>\n\
         Max-Forwards: 70\n\
         Content-Length: 0\n\n",
        routes.join("\n"),
        prov.header(HeaderName::To).unwrap(),
        prov.header(HeaderName::From).unwrap(),
        prov.call_id()
    )
}

fn ok(req: &Msg) -> Bytes {
    build::response(req, 200, "OK", None, &[])
}

/// INVITE to the toll-free number, 183 with 100rel from the first flow engine:
/// (the INVITE text, the forwarded INVITE, the 183 as the caller got it).
fn early_call(net: &mut Net) -> (String, Msg, Msg) {
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, reliable(&fwd, 183, FLOW_AZ1, "uas-tag", 1));
    let prov = only_to(&net.sent(), CARRIER_A1).clone();
    (inv, fwd, prov)
}

fn assert_empty(net: &mut Net) {
    // Longer than timer C (180 s) and every transaction's wait.
    net.advance(Duration::from_secs(400));
    net.sent();
    let left: Vec<_> = net.core.table_sizes().into_iter().filter(|(_, n)| *n != 0).collect();
    assert!(left.is_empty(), "tables not empty: {left:?}");
    assert_eq!(net.admission.active_total(), 0);
}

#[test]
fn prack_and_update_in_an_early_dialog_then_answer_ack_bye() {
    let mut net = Net::new();
    let (_, fwd, prov) = early_call(&mut net);
    assert_eq!(prov.status(), Some(183));
    assert_eq!(prov.to_tag(), Some("uas-tag"));
    assert_eq!(prov.header_by_name("Require"), Some("100rel"));
    assert_eq!(prov.header_by_name("RSeq"), Some("1"));
    assert!(prov.record_routes().next().unwrap().starts_with("sip:127.0.0.1:5060;lr;st="));

    // PRACK from the caller: routed by the call's state to the hop, our Route popped.
    net.deliver(CARRIER_A1, &from_caller("PRACK", &prov, CARRIER_A1, 2, "z9hG4bKpr1"));
    let sent = net.sent();
    let prack = only_to(&sent, FLOW_AZ1).clone();
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
    assert_eq!(prack.method(), Some(Method::Prack));
    assert_eq!(prack.request_uri(), Some("sip:uas@127.0.0.10:5060"), "R-URI kept");
    assert_eq!(prack.routes().count(), 0, "our Route entry is popped");
    assert_eq!(prack.record_routes().count(), 0, "no Record-Route on an in-dialog request");
    assert_eq!(prack.via_count(), 2);
    assert_eq!(prack.max_forwards(), Some(69));
    assert_eq!(prack.header_by_name("RAck"), Some("1 1 INVITE"));
    assert_eq!(prack.to_tag(), Some("uas-tag"));

    net.deliver_bytes(FLOW_AZ1, ok(&prack));
    let sent = net.sent();
    let prack_ok = only_to(&sent, CARRIER_A1).clone();
    assert_eq!((prack_ok.status(), prack_ok.cseq().method), (Some(200), Method::Prack));
    assert_eq!(prack_ok.via_count(), 1, "our Via is stripped");

    // A retransmitted PRACK is absorbed by its transaction: the same 200, nothing forwarded.
    net.deliver(CARRIER_A1, &from_caller("PRACK", &prov, CARRIER_A1, 2, "z9hG4bKpr1"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![200]);
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));

    // UPDATE from the callee (new early SDP) goes to the caller.
    net.deliver(FLOW_AZ1, &from_callee("UPDATE", &prov, FLOW_AZ1, 9, "z9hG4bKup1"));
    let sent = net.sent();
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
    let update = only_to(&sent, CARRIER_A1).clone();
    assert_eq!(update.method(), Some(Method::Update));
    assert_eq!(update.request_uri(), Some(&*format!("sip:caller@{CARRIER_A1}")));
    assert_eq!(update.routes().count(), 0);
    net.deliver_bytes(CARRIER_A1, ok(&update));
    let sent = net.sent();
    assert_eq!(only_to(&sent, FLOW_AZ1).cseq().method, Method::Update);
    assert_eq!(statuses(&sent, FLOW_AZ1), vec![200]);

    // INFO from the caller goes the same way.
    net.deliver(CARRIER_A1, &from_caller("INFO", &prov, CARRIER_A1, 3, "z9hG4bKin1"));
    let info = only_to(&net.sent(), FLOW_AZ1).clone();
    assert_eq!(info.method_str(), "INFO");
    net.deliver_bytes(FLOW_AZ1, ok(&info));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![200]);
    assert_eq!(net.admission.active(e164(TOLL_FREE)), 1, "the call keeps its slot");
    assert_eq!(net.core.counts(), (1, 0), "no dialog before the 2xx");

    // The 2xx: the early dialog becomes the dialog.
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let sent = net.sent();
    let ok2 = only_to(&sent, CARRIER_A1).clone();
    assert_eq!(ok2.status(), Some(200));
    assert_eq!(net.core.counts().1, 1, "a dialog exists");
    assert!(net.core.table_sizes().contains(&("early", 0)), "the early index entry is gone");

    net.deliver(CARRIER_A1, &caller_request("ACK", &ok2, CARRIER_A1, 1, "z9hG4bKack1"));
    assert_eq!(only_to(&net.sent(), FLOW_AZ1).method(), Some(Method::Ack));
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok2, CARRIER_A1, 4, "z9hG4bKbye1"));
    let bye = only_to(&net.sent(), FLOW_AZ1).clone();
    assert_eq!(bye.method(), Some(Method::Bye));
    net.deliver_bytes(FLOW_AZ1, ok(&bye));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![200]);
    assert_empty(&mut net);
}

#[test]
fn prack_after_the_call_failed_gets_481() {
    let mut net = Net::new();
    let (_, fwd, prov) = early_call(&mut net);
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 486, FLOW_AZ1));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![486], "after a 18x the refusal is relayed");
    net.deliver(CARRIER_A1, &from_caller("PRACK", &prov, CARRIER_A1, 2, "z9hG4bKpr1"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![481]);
    assert_eq!(sent.len(), 1, "nothing forwarded: {:?}", summary(&sent));
    net.deliver(FLOW_AZ1, &from_callee("UPDATE", &prov, FLOW_AZ1, 5, "z9hG4bKup1"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, FLOW_AZ1), vec![481]);
    assert_eq!(sent.len(), 1, "nothing forwarded: {:?}", summary(&sent));
}

#[test]
fn early_requests_from_anyone_but_the_dialog_peers_are_refused() {
    let mut net = Net::new();
    let (_, _, prov) = early_call(&mut net);
    // Carrier B is a configured peer, not this call's: 403, like a confirmed dialog.
    net.deliver(CARRIER_B1, &from_caller("PRACK", &prov, CARRIER_B1, 2, "z9hG4bKx1"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_B1), vec![403]);
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
    // An unknown source naming the dialog: 403 too, nothing forwarded.
    net.deliver(STRANGER, &from_caller("PRACK", &prov, STRANGER, 2, "z9hG4bKx2"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, STRANGER), vec![403]);
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
    // The other flow engine posing as the callee.
    net.deliver(FLOW_AZ2, &from_callee("UPDATE", &prov, FLOW_AZ2, 5, "z9hG4bKx3"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, FLOW_AZ2), vec![403]);
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
    // The caller posing as the callee (tags swapped) is not the callee's peer either.
    net.deliver(CARRIER_A1, &from_callee("UPDATE", &prov, CARRIER_A1, 5, "z9hG4bKx4"));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![403]);
    // A tag no 1xx carried, BYE and re-INVITE in an early dialog: 481 as before.
    let other = from_caller("PRACK", &prov, CARRIER_A1, 2, "z9hG4bKx5").replace("tag=uas-tag", "tag=guess");
    net.deliver(CARRIER_A1, &other);
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![481]);
    net.deliver(CARRIER_A1, &from_caller("BYE", &prov, CARRIER_A1, 2, "z9hG4bKx6"));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![481]);
    net.deliver(CARRIER_A1, &from_caller("INVITE", &prov, CARRIER_A1, 2, "z9hG4bKx7"));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![481]);
    // The real caller still gets through.
    net.deliver(CARRIER_A1, &from_caller("PRACK", &prov, CARRIER_A1, 2, "z9hG4bKpr1"));
    assert_eq!(only_to(&net.sent(), FLOW_AZ1).method(), Some(Method::Prack));
}

#[test]
fn prack_never_reaches_a_hop_given_up_by_failover() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd1 = only_to(&net.sent(), FLOW_AZ1).clone();
    // A tagged 1xx outside 180–189 leaves failover open (SPEC §5).
    net.deliver_bytes(FLOW_AZ1, reliable(&fwd1, 150, FLOW_AZ1, "uas-tag", 1));
    let prov1 = only_to(&net.sent(), CARRIER_A1).clone();
    assert_eq!(prov1.status(), Some(150));
    net.deliver_bytes(FLOW_AZ1, answer(&fwd1, 503, FLOW_AZ1));
    let sent = net.sent();
    let fwd2 = only_to(&sent, FLOW_AZ2).clone();
    assert!(statuses(&sent, CARRIER_A1).is_empty(), "503 before a 18x fails over: {:?}", summary(&sent));

    // The caller PRACKs the abandoned hop's 1xx: 481, nothing to either hop.
    net.deliver(CARRIER_A1, &from_caller("PRACK", &prov1, CARRIER_A1, 2, "z9hG4bKp1"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![481]);
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
    // The abandoned hop cannot reach the caller either.
    net.deliver(FLOW_AZ1, &from_callee("UPDATE", &prov1, FLOW_AZ1, 5, "z9hG4bKu1"));
    let sent = net.sent();
    assert_eq!(statuses(&sent, FLOW_AZ1), vec![481]);
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));

    // The new hop's early dialog works, and only it.
    net.deliver_bytes(FLOW_AZ2, reliable(&fwd2, 183, FLOW_AZ2, "uas2", 1));
    let prov2 = only_to(&net.sent(), CARRIER_A1).clone();
    net.deliver(CARRIER_A1, &from_caller("PRACK", &prov2, CARRIER_A1, 3, "z9hG4bKp2"));
    let sent = net.sent();
    assert_eq!(only_to(&sent, FLOW_AZ2).method(), Some(Method::Prack));
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
    net.deliver(CARRIER_A1, &from_caller("PRACK", &prov1, CARRIER_A1, 4, "z9hG4bKp3"));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![481]);
}

#[test]
fn the_dialog_goes_on_from_the_early_cseqs() {
    let mut net = Net::new();
    let (_, fwd, prov) = early_call(&mut net);
    net.deliver(CARRIER_A1, &from_caller("PRACK", &prov, CARRIER_A1, 5, "z9hG4bKp1"));
    net.sent();
    net.deliver(FLOW_AZ1, &from_callee("UPDATE", &prov, FLOW_AZ1, 9, "z9hG4bKu1"));
    net.sent();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    net.sent();
    // Never ACKed: the edge ends the call with BYEs whose CSeqs follow the early requests'.
    net.advance(Duration::from_secs(33));
    let sent = net.sent();
    let bye_seq = |to: &str| {
        sent.iter().find(|(a, m)| *a == addr(to) && m.method() == Some(Method::Bye)).map(|(_, m)| m.cseq().seq)
    };
    assert_eq!(bye_seq(FLOW_AZ1), Some(6), "{:?}", summary(&sent));
    assert_eq!(bye_seq(CARRIER_A1), Some(10), "{:?}", summary(&sent));
}

/// Every way a call with an early dialog can end leaves no entry in any table,
/// no timer, no slot; and a PRACK afterwards gets 481.
#[test]
fn every_ending_leaves_the_tables_empty() {
    let mut net = Net::new();
    let prack_481 = |net: &mut Net, prov: &Msg| {
        let branch = format!("z9hG4bKlate-{}", prov.call_id());
        net.deliver(CARRIER_A1, &from_caller("PRACK", prov, CARRIER_A1, 7, &branch));
        let sent = net.sent();
        assert_eq!(statuses(&sent, CARRIER_A1), vec![481], "{:?}", summary(&sent));
    };
    let prack = |net: &mut Net, prov: &Msg| {
        // A branch per call: the last call's PRACK transaction is still absorbing retransmissions.
        let branch = format!("z9hG4bKpr-{}", prov.call_id());
        net.deliver(CARRIER_A1, &from_caller("PRACK", prov, CARRIER_A1, 2, &branch));
        let p = only_to(&net.sent(), FLOW_AZ1).clone();
        net.deliver_bytes(FLOW_AZ1, ok(&p));
        net.sent();
    };

    // Answered, ACKed, BYE.
    let (_, fwd, prov) = early_call(&mut net);
    prack(&mut net, &prov);
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let ok2 = only_to(&net.sent(), CARRIER_A1).clone();
    net.deliver(CARRIER_A1, &caller_request("ACK", &ok2, CARRIER_A1, 1, "z9hG4bKa"));
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok2, CARRIER_A1, 3, "z9hG4bKb"));
    let bye = net.sent().into_iter().find(|(_, m)| m.method() == Some(Method::Bye)).unwrap().1;
    net.deliver_bytes(FLOW_AZ1, ok(&bye));
    net.sent();

    // Refused after the 183.
    let (_, fwd, prov) = early_call(&mut net);
    prack(&mut net, &prov);
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 486, FLOW_AZ1));
    net.sent();
    prack_481(&mut net, &prov);

    // Cancelled after the 183: CANCEL relayed, 487 back.
    let (inv, fwd, prov) = early_call(&mut net);
    prack(&mut net, &prov);
    net.deliver(CARRIER_A1, &cancel_of(&inv));
    net.sent();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 487, FLOW_AZ1));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![487]);
    prack_481(&mut net, &prov);

    // Cancelled, and the callee never answers the CANCEL (timer B: 487 anyway).
    let (inv, _, prov) = early_call(&mut net);
    net.deliver(CARRIER_A1, &cancel_of(&inv));
    net.sent();
    net.advance(Duration::from_secs(33));
    assert!(statuses(&net.sent(), CARRIER_A1).contains(&487));
    prack_481(&mut net, &prov);

    // No final answer after the 183: timer C ends the call.
    let (_, _, prov) = early_call(&mut net);
    prack(&mut net, &prov);
    net.advance(Duration::from_secs(181));
    let sent = net.sent();
    assert!(statuses(&sent, CARRIER_A1).iter().any(|s| *s >= 400), "{:?}", summary(&sent));
    prack_481(&mut net, &prov);

    // Every hop failed after tagged 1xx outside 18x.
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver(CARRIER_A1, &inv);
    let fwd1 = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, reliable(&fwd1, 150, FLOW_AZ1, "t1", 1));
    net.sent();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd1, 503, FLOW_AZ1));
    let fwd2 = only_to(&net.sent(), FLOW_AZ2).clone();
    net.deliver_bytes(FLOW_AZ2, reliable(&fwd2, 150, FLOW_AZ2, "t2", 1));
    let prov = only_to(&net.sent(), CARRIER_A1).clone();
    net.deliver_bytes(FLOW_AZ2, answer(&fwd2, 503, FLOW_AZ2));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![503]);
    prack_481(&mut net, &prov);

    // Answered but never ACKed.
    let (_, fwd, prov) = early_call(&mut net);
    prack(&mut net, &prov);
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    net.advance(Duration::from_secs(33));
    net.sent();

    assert_empty(&mut net);

    // Shutdown with an early dialog open.
    let (_, _, prov) = early_call(&mut net);
    prack(&mut net, &prov);
    net.core.shutdown(net.now);
    net.sent();
    assert!(net.core.table_sizes().contains(&("early", 0)));
    assert!(net.core.table_sizes().contains(&("calls", 0)));
    assert_eq!(net.admission.active_total(), 0);
}
