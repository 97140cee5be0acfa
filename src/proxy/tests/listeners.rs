//! Calls that cross listeners: two UDP listeners on two addresses. Answers
//! leave from the listener the request came in on, in-dialog requests toward
//! a side from the listener that side uses, a new request with no history
//! from the first listener of its family, and the double Record-Route
//! (RFC 5658) names each side's own listener.

use super::harness::*;
use crate::proxy::token::{DialogKey, Sealer};
use crate::proxy::{CoreConfig, Local, Peer};
use crate::sip::{Method, Msg, Transport};
use std::sync::Arc;

/// The second listener (index 1); `EDGE` is the first (index 0).
const EDGE2: &str = "127.0.0.20:5060";

fn listeners() -> Local {
    Local::of(&[(Transport::Udp, EDGE), (Transport::Udp, EDGE2)])
}

/// A core with both listeners; `boot` tells runs of one key apart.
fn two_listeners(boot: u32) -> Net {
    let sealer = Arc::new(Sealer { key: DialogKey::new([7; 32]), boot });
    Net::with(CoreConfig { local: listeners(), sealer, ..config() }, 1000)
}

/// The one message sent to `to`, and the listener it leaves from (what
/// the transport picks for its peer, and what our Via names).
fn one_to(sent: &[(Peer, Msg)], to: &str) -> (usize, Msg) {
    let v: Vec<&(Peer, Msg)> = sent.iter().filter(|(p, _)| p.addr == addr(to)).collect();
    let all: Vec<String> = sent.iter().map(|(p, m)| format!("{} <- {}", p.addr, describe(m))).collect();
    assert_eq!(v.len(), 1, "expected one message to {to}: {all:?}");
    let (p, m) = v[0];
    let listener = listeners().listener_for(*p).expect("two listeners");
    (listener, m.clone())
}

fn describe(m: &Msg) -> String {
    match m.status() {
        Some(s) => format!("{s} {}", m.cseq().method.as_str()),
        None => m.method_str().to_owned(),
    }
}

fn via_host(m: &Msg) -> String {
    let v = m.top_via().unwrap();
    format!("{}:{}", v.host, v.port.unwrap())
}

/// An in-dialog request from the caller: its route set is the 2xx's
/// Record-Route reversed (RFC 3261 §12.1.2), its own side's entry first.
fn caller_request(method: &str, ok: &Msg, cseq: u32, branch: &str) -> String {
    let mut routes: Vec<String> = ok.record_routes().map(|r| format!("Route: <{r}>")).collect();
    routes.reverse();
    in_dialog_request(method, ok.contact_uri().unwrap(), CARRIER_A1, &routes, ok, false, cseq, branch)
}

/// An in-dialog request from the callee: the INVITE's Record-Route in order.
fn callee_request(method: &str, fwd: &Msg, ok: &Msg, cseq: u32, branch: &str) -> String {
    let routes: Vec<String> = fwd.record_routes().map(|r| format!("Route: <{r}>")).collect();
    in_dialog_request(method, fwd.contact_uri().unwrap(), FLOW_AZ1, &routes, ok, true, cseq, branch)
}

/// carrier-a calls the toll-free number on the second listener and the flow
/// engine answers: (the INVITE the flow engine got, the 200 the carrier got).
fn answered(net: &mut Net) -> (Msg, Msg) {
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver_on(CARRIER_A1, 1, &inv.replace(EDGE, EDGE2));
    let sent = net.sent_to_peers();
    let (l, trying) = one_to(&sent, CARRIER_A1);
    assert_eq!((trying.status(), l), (Some(100), 1), "the 100 leaves from the listener the INVITE came in on");
    let (l, fwd) = one_to(&sent, FLOW_AZ1);
    assert_eq!(l, 0, "a new request to a next hop: the first listener of its family");
    assert_eq!(via_host(&fwd), EDGE, "our Via names the listener the INVITE leaves from");
    net.deliver_bytes_on(FLOW_AZ1, 0, answer(&fwd, 180, FLOW_AZ1));
    let (l, ringing) = one_to(&net.sent_to_peers(), CARRIER_A1);
    assert_eq!((ringing.status(), l), (Some(180), 1));
    net.deliver_bytes_on(FLOW_AZ1, 0, answer(&fwd, 200, FLOW_AZ1));
    let (l, ok) = one_to(&net.sent_to_peers(), CARRIER_A1);
    assert_eq!((ok.status(), l), (Some(200), 1));
    (fwd, ok)
}

#[test]
fn a_call_that_crosses_listeners_record_routes_once_per_side_and_answers_from_its_arrival_listener() {
    let mut net = two_listeners(1);
    let (fwd, ok) = answered(&mut net);
    let rr: Vec<&str> = fwd.record_routes().collect();
    assert_eq!(rr.len(), 2, "{rr:?}");
    assert!(rr[0].starts_with(&format!("sip:{EDGE};lr;st=")), "the flow engine's side first: {rr:?}");
    assert!(rr[1].starts_with(&format!("sip:{EDGE2};lr;st=")), "then the carrier's: {rr:?}");
    assert_eq!(ok.record_routes().count(), 2, "the 2xx keeps both");

    // The carrier's ACK and BYE come in on its listener and leave toward
    // the flow engine from the first one, both our entries popped.
    net.deliver_on(CARRIER_A1, 1, &caller_request("ACK", &ok, 1, "z9hG4bKack"));
    let (l, ack) = one_to(&net.sent_to_peers(), FLOW_AZ1);
    assert_eq!((ack.method(), l, ack.routes().count()), (Some(Method::Ack), 0, 0));
    assert_eq!(via_host(&ack), EDGE);
    net.deliver_on(CARRIER_A1, 1, &caller_request("BYE", &ok, 2, "z9hG4bKbye"));
    let (l, bye) = one_to(&net.sent_to_peers(), FLOW_AZ1);
    assert_eq!((bye.method(), l, bye.routes().count()), (Some(Method::Bye), 0, 0));
    net.deliver_bytes_on(FLOW_AZ1, 0, answer(&bye, 200, FLOW_AZ1));
    let (l, done) = one_to(&net.sent_to_peers(), CARRIER_A1);
    assert_eq!((done.status(), l), (Some(200), 1), "the BYE's answer leaves from the carrier's listener");
}

#[test]
fn the_flow_engines_bye_reaches_the_carrier_from_the_listener_the_carrier_called() {
    let mut net = two_listeners(1);
    let (fwd, ok) = answered(&mut net);
    net.deliver_on(CARRIER_A1, 1, &caller_request("ACK", &ok, 1, "z9hG4bKack"));
    net.sent_to_peers();
    net.deliver_on(FLOW_AZ1, 0, &callee_request("BYE", &fwd, &ok, 1, "z9hG4bKcb"));
    let (l, bye) = one_to(&net.sent_to_peers(), CARRIER_A1);
    assert_eq!((bye.method(), l, bye.routes().count()), (Some(Method::Bye), 1, 0));
    assert_eq!(via_host(&bye), EDGE2, "our Via names the carrier's listener");
    net.deliver_bytes_on(CARRIER_A1, 1, answer(&bye, 200, CARRIER_A1));
    let (l, done) = one_to(&net.sent_to_peers(), FLOW_AZ1);
    assert_eq!((done.status(), l), (Some(200), 0));
}

#[test]
fn a_call_that_stays_on_one_listener_record_routes_once() {
    let mut net = two_listeners(1);
    let (inv, _) = net.invite(CARRIER_A1, TOLL_FREE);
    net.deliver_on(CARRIER_A1, 0, &inv);
    let sent = net.sent_to_peers();
    let (l, _) = one_to(&sent, CARRIER_A1);
    assert_eq!(l, 0);
    let (_, fwd) = one_to(&sent, FLOW_AZ1);
    let rr: Vec<&str> = fwd.record_routes().collect();
    assert_eq!(rr.len(), 1, "{rr:?}");
    assert!(rr[0].starts_with(&format!("sip:{EDGE};lr;st=")), "{rr:?}");
}

#[test]
fn requests_routed_on_the_token_leave_from_the_listener_their_route_names() {
    // Set up on one run, ended on the next: nothing in memory but the token.
    let mut before = two_listeners(1);
    let (fwd, ok) = answered(&mut before);
    let mut after = two_listeners(2);
    after.deliver_on(FLOW_AZ1, 0, &callee_request("BYE", &fwd, &ok, 1, "z9hG4bKcb"));
    let (l, bye) = one_to(&after.sent_to_peers(), CARRIER_A1);
    assert_eq!((bye.method(), l), (Some(Method::Bye), 1), "toward the carrier: its listener");
    assert_eq!(via_host(&bye), EDGE2);
    after.deliver_on(CARRIER_A1, 1, &caller_request("BYE", &ok, 2, "z9hG4bKbye"));
    let (l, bye) = one_to(&after.sent_to_peers(), FLOW_AZ1);
    assert_eq!((bye.method(), l), (Some(Method::Bye), 0), "toward the flow engine: its listener");
    assert_eq!(via_host(&bye), EDGE);
}
