//! Cluster mode against a real `redis-server` on loopback: two edges share
//! one DID cap; a killed edge's slots come back within the lease TTL; Redis
//! that lost its data gets the live leases back; Redis stopped or absent is
//! handled by `on_backend_down`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::support::peer::{in_dialog, invite};
use crate::support::redis::{self, Redis};
use crate::support::{standard, Block, Edge, Peer};
use sipedge::sip::Msg;

const T: Duration = Duration::from_secs(5);
/// The DID of `standard()`, capped at 2.
const DID: &str = "+12065550100";
const LEASES: &str = "sipedge:{+12065550100}:calls";

/// An edge on `block` with `peers`' standard topology, in cluster mode on `url`.
pub fn cluster_edge(block: Block, peers: Block, url: &str, instance: &str, extra: &str) -> Edge {
    cluster_edge_with(block, peers, url, instance, extra, |t| t)
}

/// [`cluster_edge`] with the standard TOML edited by `edit` first.
pub fn cluster_edge_with(
    block: Block,
    peers: Block,
    url: &str,
    instance: &str,
    extra: &str,
    edit: impl FnOnce(String) -> String,
) -> Edge {
    let mut spec = standard(peers, "udp");
    spec.toml = edit(spec.toml);
    spec.toml.push_str(&format!("[cluster]\nredis_url = \"{url}\"\ninstance = \"{instance}\"\n{extra}\n"));
    Edge::start(block, spec)
}

/// Offers a call: if the flow engine sees it, answers 200 and ACKs (the call
/// stays up); if the edge refuses it, returns the status.
pub fn held_call(edge: &Edge, carrier: &mut Peer, flow: &mut Peer, call_id: &str) -> Result<Msg, u16> {
    carrier.send(&invite(carrier.local(), "UDP", edge.sip, DID, call_id, &format!("b-{call_id}")));
    let end = Instant::now() + T;
    let step = Duration::from_millis(20);
    while Instant::now() < end {
        // Only this call's answer: an earlier refusal may still be retransmitted.
        if let Some((m, _)) = carrier.recv(step).filter(|(m, _)| m.call_id() == call_id) {
            if let Some(code) = m.status().filter(|c| *c >= 300) {
                return Err(code);
            }
        }
        match flow.recv(step) {
            Some((m, from)) if m.method_str() == "OPTIONS" => flow.answer(&m, 200, from),
            Some((fwd, from)) if m_is_invite(&fwd) => {
                flow.answer(&fwd, 200, from);
                let ok = carrier.expect(T, "its 200", |m| m.status() == Some(200) && m.call_id() == call_id).0;
                carrier.send(&in_dialog("ACK", &ok, carrier.local(), "UDP", 1, &format!("a-{call_id}")));
                flow.expect_request("ACK", T);
                return Ok(ok);
            }
            Some((m, _)) => panic!("unexpected at the flow engine: {}", m.method_str()),
            None => {}
        }
    }
    panic!("call {call_id}: neither forwarded nor refused");
}

fn m_is_invite(m: &Msg) -> bool {
    m.method_str() == "INVITE"
}

pub fn hang_up(carrier: &mut Peer, flow: &mut Peer, ok: &Msg, n: u32) {
    carrier.send(&in_dialog("BYE", ok, carrier.local(), "UDP", 2, &format!("bye-{n}")));
    let (bye, from) = flow.expect_request("BYE", T);
    flow.answer(&bye, 200, from);
    carrier.expect_status(200, T);
}

/// Waits (≤ 10 s) until `f` holds; how long it took (to within 5 ms).
pub fn wait_for(what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

#[test]
fn two_edges_together_admit_the_cap_and_release_it() {
    if !redis::available() {
        return;
    }
    let (b, b2) = (Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let a = cluster_edge(b, b, &redis.url(), "edge-a", "");
    let e2 = cluster_edge(b2, b, &redis.url(), "edge-b", "");
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    let mut cb = Peer::udp(b.addr(3, 5060), e2.sip);

    let one = held_call(&a, &mut ca, &mut flow, "c1").expect("first call up");
    let two = held_call(&e2, &mut cb, &mut flow, "c2").expect("second call up, through the other edge");
    assert_eq!(redis.cmd(&["ZCARD", LEASES]), "2");
    assert_eq!(held_call(&a, &mut ca, &mut flow, "c3").err(), Some(486), "the cap holds across both edges");
    assert_eq!(held_call(&e2, &mut cb, &mut flow, "c4").err(), Some(486));
    assert_eq!(redis.cmd(&["ZCARD", LEASES]), "2", "refused calls hold no lease");

    hang_up(&mut ca, &mut flow, &one, 1);
    wait_for("the lease released", || redis.cmd(&["ZCARD", LEASES]) == "1");
    let five = held_call(&e2, &mut cb, &mut flow, "c5").expect("the freed slot is usable on the other edge");
    hang_up(&mut cb, &mut flow, &two, 2);
    hang_up(&mut cb, &mut flow, &five, 5);
    wait_for("every lease released", || redis.cmd(&["ZCARD", LEASES]) == "0");
    assert_eq!(a.metric("sipedge_active_calls"), Some(0.0));
    assert_eq!(e2.metric("sipedge_active_calls"), Some(0.0));
    assert_eq!(a.metric("sipedge_cluster_up"), Some(1.0));
    let (code, body) = a.http("GET", "/v1/cluster", None);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((&v["mode"], &v["instance"], &v["redis_up"]), (&"cluster".into(), &"edge-a".into(), &true.into()));
    wait_for("both instances seen alive", || {
        let (_, body) = e2.http("GET", "/v1/cluster", None);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["instances_alive"] == 2
    });
    assert!(a.metric("sipedge_cluster_admit_seconds_count").unwrap_or(0.0) >= 2.0);
}

#[test]
fn a_killed_edge_frees_its_slots_within_the_lease_ttl() {
    if !redis::available() {
        return;
    }
    let (b, b2) = (Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let ttl = "lease_ttl_ms = 1000";
    let mut a = cluster_edge(b, b, &redis.url(), "edge-a", ttl);
    let e2 = cluster_edge(b2, b, &redis.url(), "edge-b", ttl);
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    let mut cb = Peer::udp(b.addr(3, 5060), e2.sip);
    held_call(&a, &mut ca, &mut flow, "k1").unwrap();
    held_call(&a, &mut ca, &mut flow, "k2").unwrap();
    // Renewals keep them past the TTL while the edge lives.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(redis.cmd(&["ZCARD", LEASES]), "2", "live leases are renewed");
    assert_eq!(held_call(&e2, &mut cb, &mut flow, "k3").err(), Some(486));

    a.kill9();
    let killed = Instant::now();
    let mut n = 0;
    let took = wait_for("a slot of the killed edge", || {
        n += 1;
        held_call(&e2, &mut cb, &mut flow, &format!("k-retry-{n}")).is_ok()
    });
    let bound = Duration::from_millis(1000 + 1000 / 3 + 1500);
    println!("slots back {:?} after kill -9 (TTL 1000 ms)", killed.elapsed());
    assert!(took <= bound + Duration::from_secs(2), "slots back after {took:?}");
}

#[test]
fn redis_that_lost_its_data_gets_the_live_leases_back() {
    if !redis::available() {
        return;
    }
    let b = Block::new();
    let redis = Redis::start(b.addr(60, 6379));
    let a = cluster_edge(b, b, &redis.url(), "edge-a", "lease_ttl_ms = 1000");
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    let ok = held_call(&a, &mut ca, &mut flow, "f1").unwrap();
    // As after a restart without persistence: no keys, no scripts.
    redis.cmd(&["FLUSHALL"]);
    redis.cmd(&["SCRIPT", "FLUSH"]);
    let took = wait_for("the lease written back", || redis.cmd(&["ZCARD", LEASES]) == "1");
    println!("lease back {took:?} after FLUSHALL (renewal period 333 ms)");
    held_call(&a, &mut ca, &mut flow, "f2").expect("the second slot");
    assert_eq!(held_call(&a, &mut ca, &mut flow, "f3").err(), Some(486), "admits work again (scripts reloaded)");
    hang_up(&mut ca, &mut flow, &ok, 1);
}

#[test]
fn redis_stopped_or_absent_follows_on_backend_down() {
    if !redis::available() {
        return;
    }
    let (b, b2, b3) = (Block::new(), Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let closed = cluster_edge(b, b, &redis.url(), "edge-closed", "on_backend_down = \"fail_closed\"");
    let share = cluster_edge(b2, b, &redis.url(), "edge-share", "on_backend_down = \"local_share\"");
    let mut flow = Peer::udp(b.addr(10, 5060), closed.sip);
    let mut c1 = Peer::udp(b.addr(2, 5060), closed.sip);
    let mut c2 = Peer::udp(b.addr(3, 5060), share.sip);
    // Both edges have heartbeated: two instances alive, each may take ceil(2/2) = 1 alone.
    wait_for("two instances alive", || redis.cmd(&["ZCARD", "sipedge:{instances}"]) == "2");

    redis.signal("STOP");
    let start = Instant::now();
    assert_eq!(held_call(&closed, &mut c1, &mut flow, "s1").err(), Some(503), "fail_closed refuses");
    let first = start.elapsed();
    let up = held_call(&share, &mut c2, &mut flow, "s2").expect("local_share admits its share");
    assert_eq!(held_call(&share, &mut c2, &mut flow, "s3").err(), Some(486), "and no more than its share");
    assert_eq!(closed.metric("sipedge_cluster_up"), Some(0.0));
    assert!(
        share.metric("sipedge_cluster_fallback_total{policy=\"local_share\",result=\"admitted\"}").unwrap_or(0.0)
            >= 1.0
    );
    println!("fail_closed answered after {first:?} with Redis stopped (admit_timeout_ms 50)");
    redis.signal("CONT");
    hang_up(&mut c2, &mut flow, &up, 1);

    // A Redis that is not there at all: the edge starts and serves by policy.
    let nowhere: SocketAddr = b3.addr(61, 6379);
    let absent = cluster_edge(b3, b, &format!("redis://{nowhere}/0"), "edge-absent", "");
    let mut c3 = Peer::udp(b.addr(4, 5060), absent.sip);
    let ok = held_call(&absent, &mut c3, &mut flow, "n1").expect("local_share with no contact yet: the whole cap");
    assert_eq!(absent.metric("sipedge_cluster_up"), Some(0.0));
    hang_up(&mut c3, &mut flow, &ok, 1);
}

#[test]
fn a_burst_over_two_edges_never_admits_more_than_the_cap() {
    if !redis::available() {
        return;
    }
    let (b, b2) = (Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let start = |block: Block, name: &str| {
        let mut spec = standard(b, "udp");
        spec.numbers.push("+12065550110,did,flow-burst,carrier-a,10,".into());
        spec.toml.push_str(&format!("[cluster]\nredis_url = \"{}\"\ninstance = \"{name}\"\n", redis.url()));
        Edge::start(block, spec)
    };
    let (a, e2) = (start(b, "edge-a"), start(b2, "edge-b"));
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    let mut cb = Peer::udp(b.addr(3, 5060), e2.sip);
    for round in 0..3 {
        // 15 INVITEs at each edge at once, for a number capped at 10.
        for i in 0..15 {
            let (ida, idb) = (format!("burst-{round}-a{i}"), format!("burst-{round}-b{i}"));
            ca.send(&invite(ca.local(), "UDP", a.sip, "+12065550110", &ida, &format!("ba{round}{i}")));
            cb.send(&invite(cb.local(), "UDP", e2.sip, "+12065550110", &idb, &format!("bb{round}{i}")));
        }
        let mut answered = Vec::new();
        let mut finals: std::collections::HashMap<String, u16> = Default::default();
        let end = Instant::now() + T;
        while finals.len() < 30 && Instant::now() < end {
            while let Some((m, from)) = flow.recv(Duration::from_millis(5)) {
                match m.method_str() {
                    "INVITE" => flow.answer(&m, 200, from),
                    "OPTIONS" => flow.answer(&m, 200, from),
                    _ => {}
                }
            }
            for c in [&mut ca, &mut cb] {
                while let Some((m, _)) = c.recv(Duration::from_millis(5)) {
                    // Only this round's calls: earlier refusals are still retransmitted.
                    let this_round = m.call_id().starts_with(&format!("burst-{round}-"));
                    if let Some(s) = m.status().filter(|s| *s >= 200 && this_round) {
                        if finals.insert(m.call_id().to_string(), s).is_none() && s == 200 {
                            answered.push((c.local(), m));
                        }
                    }
                }
            }
        }
        let ok = finals.values().filter(|s| **s == 200).count();
        let busy = finals.values().filter(|s| **s == 486).count();
        assert_eq!((ok, busy), (10, 20), "round {round}: exactly the cap, across both edges: {finals:?}");
        assert_eq!(redis.cmd(&["ZCARD", "sipedge:{+12065550110}:calls"]), "10");
        // End them all: BYE from the carrier side, through the edge it came in on.
        for (n, (local, ok)) in answered.iter().enumerate() {
            let c = if *local == ca.local() { &mut ca } else { &mut cb };
            c.send(&in_dialog("ACK", ok, *local, "UDP", 1, &format!("ack-{round}-{n}")));
            c.send(&in_dialog("BYE", ok, *local, "UDP", 2, &format!("bye-{round}-{n}")));
        }
        let mut byes = 0;
        let end = Instant::now() + T;
        while byes < answered.len() && Instant::now() < end {
            if let Some((m, from)) = flow.recv(Duration::from_millis(20)) {
                if m.method_str() == "BYE" {
                    flow.answer(&m, 200, from);
                    byes += 1;
                }
            }
        }
        assert_eq!(byes, 10);
        wait_for("every lease released", || redis.cmd(&["ZCARD", "sipedge:{+12065550110}:calls"]) == "0");
        // Drain the carriers' queues (200s to the BYEs, 486 retransmissions) before the next round.
        for c in [&mut ca, &mut cb] {
            while c.recv(Duration::from_millis(50)).is_some() {}
        }
    }
}

/// SIPp against two edges sharing one Redis: 150 held calls offered to a DID
/// capped at 100, half through each edge, three rounds. Every round brings
/// up exactly 100 calls and refuses 50 with 486, Redis never holds more than
/// 100 leases, and leases and counters are back to 0 after the BYEs.
#[test]
fn sipp_150_held_calls_over_two_edges_get_exactly_the_cap_of_100() {
    if !redis::available() {
        return;
    }
    let _heavy = crate::support::heavy();
    let (pa, pb) = (Block::new(), Block::new());
    let redis = Redis::start(pa.addr(60, 6379));
    const CAPPED: &str = "+12065550120";
    const KEY: &str = "sipedge:{+12065550120}:calls";
    let start = |b: Block, name: &str| {
        let mut spec = crate::sipp::one_carrier(b, "udp", &[]);
        spec.numbers = vec![format!("{CAPPED},did,flow-capped,carrier-a,100,")];
        spec.toml.push_str(&format!("[cluster]\nredis_url = \"{}\"\ninstance = \"{name}\"\n", redis.url()));
        Edge::start(b, spec)
    };
    let (a, b) = (start(pa, "edge-a"), start(pb, "edge-b"));
    let nums = vec![CAPPED.to_string()];
    for round in 0..3 {
        // 75 calls through each edge at 75 calls/s, each held 6 s: all 150
        // are offered while the first ones are still up.
        let (guard_a, run_a) = crate::sipp::held_calls(pa, a.sip, &nums, 75, 75, 6_000);
        let (guard_b, run_b) = crate::sipp::held_calls(pb, b.sip, &nums, 75, 75, 6_000);
        let mut peak = 0u64;
        while !(run_a.is_finished() && run_b.is_finished()) {
            let leases: u64 = redis.cmd(&["ZCARD", KEY]).parse().unwrap_or(0);
            peak = peak.max(leases);
            std::thread::sleep(Duration::from_millis(50));
        }
        let (ra, rb) = (run_a.join().unwrap(), run_b.join().unwrap());
        drop((guard_a, guard_b));
        let stats = || format!("edge A:\n{}\nedge B:\n{}", ra.stat, rb.stat);
        assert_eq!(ra.ok + rb.ok, 100, "round {round}: exactly the cap is up over both edges\n{}", stats());
        assert_eq!(ra.failed + rb.failed, 50, "round {round}: the rest refused\n{}", stats());
        assert_eq!(peak, 100, "round {round}: Redis held at most the cap of 100 leases, and all of it");
        let busy = a.metric("sipedge_calls_total{direction=\"inbound\",outcome=\"number_busy\"}").unwrap_or(0.0)
            + b.metric("sipedge_calls_total{direction=\"inbound\",outcome=\"number_busy\"}").unwrap_or(0.0);
        assert_eq!(busy as u64, 50 * (round + 1), "every refusal a 486 (busy)");
        wait_for("every lease released", || redis.cmd(&["ZCARD", KEY]) == "0");
        wait_for("both edges idle", || {
            a.metric("sipedge_active_calls") == Some(0.0) && b.metric("sipedge_active_calls") == Some(0.0)
        });
    }
}
