//! In-dialog requests routed on the Record-Route token alone: the call is set
//! up on one core, then its requests reach another one (a restart, or another
//! instance with the same key) that has no memory of it.

use super::harness::*;
use crate::proxy::token::{DialogKey, Sealer};
use crate::routing::Peers;
use crate::sip::{HeaderName, Method, Msg};
use std::sync::Arc;

fn core_with(key: [u8; 32], boot: u32) -> Net {
    let mut cfg = config();
    cfg.sealer = Arc::new(Sealer { key: DialogKey::new(key), boot });
    Net::with(cfg, 100)
}

/// A call answered on `net`: (the INVITE the flow engine got, the 200 the caller got).
fn answered(net: &mut Net) -> (Msg, Msg) {
    let (inv, _) = net.invite(CARRIER_A1, DID);
    net.deliver(CARRIER_A1, &inv);
    let fwd = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&fwd, 200, FLOW_AZ1));
    let ok = only_to(&net.sent(), CARRIER_A1).clone();
    (fwd, ok)
}

/// An in-dialog request from the callee (the flow engine) back to the caller.
fn callee_request(method: &str, fwd: &Msg, ok: &Msg, cseq: u32, branch: &str) -> String {
    let routes: Vec<String> = fwd.record_routes().map(|r| format!("Route: <{r}>")).collect();
    format!(
        "{method} {} SIP/2.0\n\
         Via: SIP/2.0/UDP {FLOW_AZ1};branch={branch}\n\
         {}\n\
         From: {}\n\
         To: {}\n\
         Call-ID: {}\n\
         CSeq: {cseq} {method}\n\
         Max-Forwards: 70\n\
         Content-Length: 0\n\n",
        fwd.contact_uri().unwrap(),
        routes.join("\n"),
        ok.header(HeaderName::To).unwrap(),
        ok.header(HeaderName::From).unwrap(),
        ok.call_id()
    )
}

#[test]
fn a_restarted_core_routes_bye_ack_and_reinvite_on_the_token() {
    let mut before = core_with([5; 32], 1);
    let (fwd, ok) = answered(&mut before);
    let mut after = core_with([5; 32], 2);

    after.deliver(CARRIER_A1, &caller_request("ACK", &ok, CARRIER_A1, 1, "z9hG4bKack"));
    let ack = only_to(&after.sent(), FLOW_AZ1).clone();
    assert_eq!(ack.method(), Some(Method::Ack));
    assert_eq!(ack.routes().count(), 0, "our own Route is popped");
    assert_eq!(ack.request_uri(), ok.contact_uri(), "the Request-URI is left alone");

    after.deliver(CARRIER_A1, &caller_request("INVITE", &ok, CARRIER_A1, 2, "z9hG4bKre"));
    let sent = after.sent();
    let reinvite = only_to(&sent, FLOW_AZ1).clone();
    assert_eq!(reinvite.method(), Some(Method::Invite));
    assert_eq!(statuses(&sent, CARRIER_A1), vec![100]);
    after.deliver_bytes(FLOW_AZ1, answer(&reinvite, 200, FLOW_AZ1));
    assert_eq!(statuses(&after.sent(), CARRIER_A1), vec![200], "the re-INVITE's answer is relayed");

    after.deliver(FLOW_AZ1, &callee_request("BYE", &fwd, &ok, 1, "z9hG4bKbye"));
    let bye = only_to(&after.sent(), CARRIER_A1).clone();
    assert_eq!(bye.method(), Some(Method::Bye));
    assert_eq!(bye.request_uri(), Some("sip:caller@127.0.0.2:5060"));
    after.deliver_bytes(CARRIER_A1, answer(&bye, 200, CARRIER_A1));
    assert_eq!(statuses(&after.sent(), FLOW_AZ1), vec![200]);
    assert_eq!(after.admission.active_total(), 0, "such a call holds no slot");
}

#[test]
fn the_caller_bye_reaches_the_callee_whatever_its_request_uri_names() {
    let mut before = core_with([5; 32], 1);
    let (_, ok) = answered(&mut before);
    let mut after = core_with([5; 32], 2);
    let bye =
        caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKb").replace("sip:uas@127.0.0.10:5060", "sip:x@10.9.9.9");
    after.deliver(CARRIER_A1, &bye);
    let sent = after.sent();
    assert_eq!(only_to(&sent, FLOW_AZ1).method(), Some(Method::Bye), "{:?}", summary(&sent));
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
}

/// Each request is refused with 481 and nothing goes anywhere else.
fn assert_refused(net: &mut Net, from: &str, text: &str) {
    net.deliver(from, text);
    let sent = net.sent();
    assert_eq!(statuses(&sent, from), vec![481], "{:?}", summary(&sent));
    assert_eq!(sent.len(), 1, "{:?}", summary(&sent));
}

#[test]
fn a_forged_tampered_or_foreign_token_gets_481_and_nothing_is_sent() {
    let mut before = core_with([5; 32], 1);
    let (_, ok) = answered(&mut before);
    let bye = caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKb");
    let rr = ok.record_routes().next().unwrap().to_owned();
    let token = rr.split(";st=").nth(1).unwrap().to_owned();

    // Another key: another platform's edge, or a guess.
    assert_refused(&mut core_with([6; 32], 2), CARRIER_A1, &bye);
    // One hex digit changed.
    let mut flipped = token.clone().into_bytes();
    flipped[12] = if flipped[12] == b'0' { b'1' } else { b'0' };
    let tampered = bye.replace(&token, std::str::from_utf8(&flipped).unwrap());
    assert_refused(&mut core_with([5; 32], 2), CARRIER_A1, &tampered);
    // No token at all (a Route from before tokens, or stripped).
    assert_refused(&mut core_with([5; 32], 2), CARRIER_A1, &bye.replace(&format!(";st={token}"), ""));
    // An ACK with a bad token is dropped silently.
    let mut other = core_with([6; 32], 2);
    other.deliver(CARRIER_A1, &caller_request("ACK", &ok, CARRIER_A1, 1, "z9hG4bKa"));
    assert!(other.sent().is_empty());
}

#[test]
fn a_token_from_another_peer_or_to_a_removed_peer_is_refused() {
    let mut before = core_with([5; 32], 1);
    let (_, ok) = answered(&mut before);
    let bye = caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKb");
    // A configured peer that is neither side of the call.
    let mut after = core_with([5; 32], 2);
    assert_refused(&mut after, CARRIER_B1, &bye);
    // The callee's flow engine removed by a reload since.
    let mut after = core_with([5; 32], 2);
    let p = peers();
    let kept =
        Peers::new(p.carriers.clone(), p.flow_engine.iter().filter(|l| l.addr != addr(FLOW_AZ1)).cloned().collect());
    after.routing.set_peers(Arc::new(kept));
    assert_refused(&mut after, CARRIER_A1, &bye);
}

#[test]
fn the_core_that_sealed_the_token_trusts_its_memory_once_the_call_ended() {
    let mut net = core_with([5; 32], 1);
    let (_, ok) = answered(&mut net);
    net.deliver(CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 2, "z9hG4bKb1"));
    let bye = only_to(&net.sent(), FLOW_AZ1).clone();
    net.deliver_bytes(FLOW_AZ1, answer(&bye, 200, FLOW_AZ1));
    net.sent();
    // A late BYE (new transaction) for the call this run ended: 481, not forwarded.
    assert_refused(&mut net, CARRIER_A1, &caller_request("BYE", &ok, CARRIER_A1, 3, "z9hG4bKb2"));
}
