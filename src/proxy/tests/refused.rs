//! INVITEs refused on arrival keep only their server transaction: the answer
//! is resent until the ACK, a retransmission gets it again, a CANCEL gets 200,
//! and nothing is left once the transaction ends.

use std::time::Duration;

use super::harness::*;
use crate::sip::HeaderName;

/// The caller's hop-by-hop ACK for a non-2xx answer to `inv` with To tag `tag`.
fn ack_of(inv: &str, tag: &str) -> String {
    let a = inv.replacen("INVITE sip:", "ACK sip:", 1).replace("CSeq: 1 INVITE", "CSeq: 1 ACK");
    let a = a.replacen(&format!("@{EDGE}>\n"), &format!("@{EDGE}>;tag={tag}\n"), 1);
    a.split("Content-Type").next().unwrap().to_string() + "Content-Length: 0\n\n"
}

fn sizes(net: &Net) -> (usize, usize) {
    let t = net.core.table_sizes();
    let get = |name| t.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).unwrap();
    (get("calls"), get("refusals"))
}

fn tag_of(resp: &crate::sip::Msg) -> String {
    let to = resp.header(HeaderName::To).unwrap();
    to.split("tag=").nth(1).unwrap().to_string()
}

#[test]
fn a_refused_invite_keeps_only_its_transaction_and_is_gone_after_the_ack() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, "+19995550100");
    net.deliver(CARRIER_A1, &inv);
    let sent = net.sent();
    assert_eq!(statuses(&sent, CARRIER_A1), vec![100, 404]);
    let tag = tag_of(&sent.last().unwrap().1);
    assert_eq!(sizes(&net), (0, 1), "the call context is gone, its transaction stays");

    // A retransmitted INVITE gets the same 404 again, with the same tag.
    net.deliver(CARRIER_A1, &inv);
    let again = net.sent();
    assert_eq!(statuses(&again, CARRIER_A1), vec![404]);
    assert_eq!(tag_of(&again[0].1), tag);

    // A late CANCEL is answered 200 and changes nothing.
    net.deliver(CARRIER_A1, &cancel_of(&inv));
    let c = net.sent();
    assert_eq!(statuses(&c, CARRIER_A1), vec![200]);
    assert_eq!(tag_of(&c[0].1), tag);

    // The ACK is absorbed: nothing sent, nothing forwarded.
    net.deliver(CARRIER_A1, &ack_of(&inv, &tag));
    assert!(net.sent().is_empty());
    // Timer I (T4 over UDP) ends the transaction; H, still queued, finds nothing.
    net.advance(Duration::from_secs(6));
    assert_eq!(sizes(&net), (0, 0));
    net.advance(Duration::from_secs(40));
    assert!(net.sent().is_empty(), "no resend after the ACK");
    let left: Vec<_> = net.core.table_sizes().into_iter().filter(|(_, n)| *n != 0).collect();
    assert!(left.is_empty(), "tables not empty: {left:?}");
}

#[test]
fn a_refusal_never_acked_is_resent_then_forgotten_after_timer_h() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, NO_FLOW);
    net.deliver(CARRIER_A1, &inv);
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![100, 480]);
    assert_eq!(sizes(&net), (0, 1));
    // Timer G doubles from T1 up to T2 until timer H (64·T1 = 32 s).
    net.advance(Duration::from_millis(1600));
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![480, 480], "resent at 0.5 and 1.5 s");
    net.advance(Duration::from_secs(40));
    let resent = statuses(&net.sent(), CARRIER_A1).len();
    assert!((5..=12).contains(&resent), "resent {resent} times before H");
    let left: Vec<_> = net.core.table_sizes().into_iter().filter(|(_, n)| *n != 0).collect();
    assert!(left.is_empty(), "tables not empty: {left:?}");
    // After H, a retransmission is a new INVITE, refused again.
    net.deliver(CARRIER_A1, &inv);
    assert_eq!(statuses(&net.sent(), CARRIER_A1), vec![100, 480]);
}

#[test]
fn a_cancel_for_a_refused_call_from_another_peer_gets_481() {
    let mut net = Net::new();
    let (inv, _) = net.invite(CARRIER_A1, "+19995550100");
    net.deliver(CARRIER_A1, &inv);
    net.sent();
    net.deliver(CARRIER_B1, &cancel_of(&inv));
    assert_eq!(statuses(&net.sent(), CARRIER_B1), vec![481]);
    assert_eq!(sizes(&net), (0, 1));
}
