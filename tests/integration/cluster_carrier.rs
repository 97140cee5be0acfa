//! Carrier trunk limits shared through Redis (SPEC §8, §10): two edges on one
//! Redis hold a carrier's `max_concurrent` and `max_cps` together.

use std::time::{Duration, Instant};

use crate::cluster::{hang_up, wait_for};
use crate::support::peer::{in_dialog, invite};
use crate::support::redis::{self, Redis};
use crate::support::{Block, Edge, Peer};
use sipedge::sip::Msg;

const T: Duration = Duration::from_secs(5);
/// The toll-free number of `standard()`: uncapped, so only the carrier limits apply.
const TOLL_FREE: &str = "+18005550100";
const CARRIER_LEASES: &str = "sipedge:{carrier:carrier-a}:calls";

/// An edge whose carrier-a has `limits` (TOML lines), in cluster mode.
fn edge(block: Block, peers: Block, url: &str, instance: &str, limits: &str) -> Edge {
    crate::cluster::cluster_edge_with(block, peers, url, instance, "", |toml| {
        toml.replacen("name = \"carrier-a\"\n", &format!("name = \"carrier-a\"\n{limits}"), 1)
    })
}

/// Offers a call to the toll-free number: forwarded → answered 200 and ACKed
/// (the call stays up); refused → the refusal.
fn held(edge: &Edge, carrier: &mut Peer, flow: &mut Peer, call_id: &str) -> Result<Msg, Box<Msg>> {
    carrier.send(&invite(carrier.local(), "UDP", edge.sip, TOLL_FREE, call_id, &format!("b-{call_id}")));
    let end = Instant::now() + T;
    let step = Duration::from_millis(20);
    while Instant::now() < end {
        if let Some((m, _)) = carrier.recv(step).filter(|(m, _)| m.call_id() == call_id) {
            if m.status().is_some_and(|c| c >= 300) {
                return Err(Box::new(m));
            }
        }
        match flow.recv(step) {
            Some((m, from)) if m.method_str() == "OPTIONS" => flow.answer(&m, 200, from),
            Some((fwd, from)) if fwd.method_str() == "INVITE" => {
                flow.answer(&fwd, 200, from);
                let ok = carrier.expect(T, "its 200", |m| m.status() == Some(200) && m.call_id() == call_id).0;
                carrier.send(&in_dialog("ACK", &ok, carrier.local(), "UDP", 1, &format!("a-{call_id}")));
                flow.expect_request("ACK", T);
                return Ok(ok);
            }
            Some(_) | None => {}
        }
    }
    panic!("call {call_id}: neither forwarded nor refused");
}

#[test]
fn two_edges_together_hold_a_carriers_max_concurrent() {
    if !redis::available() {
        return;
    }
    let (b, b2) = (Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let a = edge(b, b, &redis.url(), "edge-a", "max_concurrent = 3\n");
    let e2 = edge(b2, b, &redis.url(), "edge-b", "max_concurrent = 3\n");
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    // Both carrier-a links: .2 calls edge A, .3 calls edge B.
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    let mut cb = Peer::udp(b.addr(3, 5060), e2.sip);

    let one = held(&a, &mut ca, &mut flow, "t1").expect("first call up");
    let two = held(&a, &mut ca, &mut flow, "t2").expect("second call up");
    let three = held(&e2, &mut cb, &mut flow, "t3").expect("third call up, through the other edge");
    assert_eq!(redis.cmd(&["ZCARD", CARRIER_LEASES]), "3");
    let four = held(&e2, &mut cb, &mut flow, "t4").expect_err("the carrier's cap holds across both edges");
    assert_eq!(four.status(), Some(503));
    assert!(four.header_by_name("Retry-After").is_some(), "503 carries Retry-After");
    let labels = [("carrier", "carrier-a"), ("reason", "max_concurrent")];
    assert_eq!(crate::failover::metric(&e2, "sipedge_carrier_refused_total", &labels), Some(1.0));
    assert_eq!(redis.cmd(&["ZCARD", CARRIER_LEASES]), "3", "a refused call holds no lease");

    hang_up(&mut ca, &mut flow, &one, 1);
    wait_for("the carrier lease released", || redis.cmd(&["ZCARD", CARRIER_LEASES]) == "2");
    let five = held(&e2, &mut cb, &mut flow, "t5").expect("the freed slot is usable on the other edge");
    hang_up(&mut ca, &mut flow, &two, 2);
    hang_up(&mut cb, &mut flow, &three, 3);
    hang_up(&mut cb, &mut flow, &five, 5);
    wait_for("every carrier lease released", || redis.cmd(&["ZCARD", CARRIER_LEASES]) == "0");
    assert_eq!(a.metric("sipedge_active_calls"), Some(0.0));
    assert_eq!(e2.metric("sipedge_active_calls"), Some(0.0));
    held(&a, &mut ca, &mut flow, "t6").expect("new calls pass again");
}

#[test]
fn two_edges_together_hold_a_carriers_max_cps() {
    if !redis::available() {
        return;
    }
    let (b, b2) = (Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let a = edge(b, b, &redis.url(), "edge-a", "max_cps = 5\n");
    let e2 = edge(b2, b, &redis.url(), "edge-b", "max_cps = 5\n");
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    let mut cb = Peer::udp(b.addr(3, 5060), e2.sip);
    // 10 INVITEs through each edge in one burst: each edge alone would let 5 through.
    for i in 0..10 {
        ca.send(&invite(ca.local(), "UDP", a.sip, TOLL_FREE, &format!("ra{i}"), &format!("b-ra{i}")));
        cb.send(&invite(cb.local(), "UDP", e2.sip, TOLL_FREE, &format!("rb{i}"), &format!("b-rb{i}")));
    }
    let (mut forwarded, mut refused) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    let end = Instant::now() + T;
    let step = Duration::from_millis(10);
    while forwarded.len() + refused.len() < 20 && Instant::now() < end {
        while let Some((m, from)) = flow.recv(step) {
            if m.method_str() == "INVITE" {
                flow.answer(&m, 486, from);
                forwarded.insert(m.call_id().to_string());
            }
        }
        for c in [&mut ca, &mut cb] {
            while let Some((m, _)) = c.recv(step) {
                if m.status() == Some(503) {
                    refused.insert(m.call_id().to_string());
                }
            }
        }
    }
    assert_eq!(forwarded.len() + refused.len(), 20, "every INVITE answered");
    // One second's burst (5) for both edges together, plus what the rate refills while the burst is sent.
    assert!((5..=7).contains(&forwarded.len()), "{} admitted, {} refused", forwarded.len(), refused.len());
    let labels = [("carrier", "carrier-a"), ("reason", "max_cps")];
    let refusals: f64 = [&a, &e2]
        .iter()
        .map(|e| crate::failover::metric(e, "sipedge_carrier_refused_total", &labels).unwrap_or(0.0))
        .sum();
    assert_eq!(refusals as usize, refused.len());
    assert_eq!(redis.cmd(&["EXISTS", "sipedge:{carrier:carrier-a}:tat"]), "1", "the shared arrival time");
    assert_eq!(redis.cmd(&["ZCARD", CARRIER_LEASES]), "0", "a rate-only carrier holds no lease");
}
