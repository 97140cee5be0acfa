//! Carrier trunk limits shared through Redis (SPEC §8, §10): two edges on one
//! Redis hold a carrier's `max_concurrent` and `max_cps` together; an
//! outbound failover moves the call's lease to the next carrier; a killed
//! edge's carrier leases expire; Redis stopped follows `on_backend_down`.

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
    edge_with(block, peers, url, instance, "", &[("carrier-a", limits)])
}

/// An edge in cluster mode with `extra` in `[cluster]` and each (carrier, TOML lines) of `limits`.
fn edge_with(block: Block, peers: Block, url: &str, instance: &str, extra: &str, limits: &[(&str, &str)]) -> Edge {
    crate::cluster::cluster_edge_with(block, peers, url, instance, extra, |mut toml| {
        for (carrier, lines) in limits {
            let name = format!("name = \"{carrier}\"\n");
            toml = toml.replacen(&name, &format!("{name}{lines}"), 1);
        }
        toml
    })
}

/// The number of members in `key`'s sorted set.
fn leases(redis: &Redis, key: &str) -> u32 {
    redis.cmd(&["ZCARD", key]).parse().unwrap_or(u32::MAX)
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

const CARRIER_B_LEASES: &str = "sipedge:{carrier:carrier-b}:calls";

/// An outbound call from the platform whose caller ID is the toll-free
/// number: carrier-a's links answer 503, carrier-b's 200. The call's lease
/// leaves carrier-a's set for carrier-b's, and carrier-b's one channel is
/// taken for the other edge too; after the BYE both sets are empty.
#[test]
fn an_outbound_failover_moves_the_carrier_lease_to_the_next_carrier() {
    if !redis::available() {
        return;
    }
    let (b, b2) = (Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let limits = [("carrier-a", "max_concurrent = 2\n"), ("carrier-b", "max_concurrent = 1\n")];
    let a = edge_with(b, b, &redis.url(), "edge-a", "", &limits);
    let e2 = edge_with(b2, b, &redis.url(), "edge-b", "", &limits);
    let mut platform = Peer::udp(b.addr(10, 5070), a.sip);
    let mut links = [Peer::udp(b.addr(2, 5060), a.sip), Peer::udp(b.addr(3, 5060), a.sip)];
    let mut carrier_b = Peer::udp(b.addr(4, 5060), a.sip);

    let inv = crate::failover::invite_as(platform.local(), a.sip, "+13125550100", TOLL_FREE, "fo1");
    platform.send(&inv);
    let step = Duration::from_millis(10);
    let end = Instant::now() + T + T;
    let (mut refused_by_a, mut at_b) = (0, None);
    let ok = loop {
        assert!(Instant::now() < end, "no final answer to the outbound call:\n{}", a.log());
        for l in links.iter_mut() {
            if let Some((m, from)) = l.recv(step).filter(|(m, _)| m.method_str() == "INVITE") {
                l.answer(&m, 503, from);
                refused_by_a += 1;
            }
        }
        if let Some((m, from)) = carrier_b.recv(step).filter(|(m, _)| m.method_str() == "INVITE") {
            carrier_b.answer(&m, 200, from);
            at_b = Some(from);
        }
        if let Some((m, _)) = platform.recv(step).filter(|(m, _)| m.status().is_some_and(|s| s >= 200)) {
            break m;
        }
    };
    assert_eq!(ok.status(), Some(200), "carrier-b answered the call");
    assert!(refused_by_a >= 1 && at_b.is_some(), "carrier-a tried first, then carrier-b");
    platform.send(&in_dialog("ACK", &ok, platform.local(), "UDP", 1, "ack-fo1"));
    carrier_b.expect_request("ACK", T);

    // During the call: its one lease is carrier-b's.
    wait_for("carrier-a's lease released by the failover", || leases(&redis, CARRIER_LEASES) == 0);
    assert_eq!(leases(&redis, CARRIER_B_LEASES), 1, "the lease moved to carrier-b");
    let mut flow = Peer::udp(b.addr(10, 5060), e2.sip);
    let mut b_in = Peer::udp(b.addr(4, 5070), e2.sip);
    let busy = held(&e2, &mut b_in, &mut flow, "fo2").expect_err("carrier-b's one channel is held across the cluster");
    assert_eq!(busy.status(), Some(503));

    platform.send(&in_dialog("BYE", &ok, platform.local(), "UDP", 2, "bye-fo1"));
    let (bye, from) = carrier_b.expect_request("BYE", T);
    carrier_b.answer(&bye, 200, from);
    platform.expect(T, "200 to the BYE", |m| m.status() == Some(200) && m.cseq().method == sipedge::sip::Method::Bye);
    wait_for("both carriers' leases released", || {
        leases(&redis, CARRIER_LEASES) == 0 && leases(&redis, CARRIER_B_LEASES) == 0
    });
    assert_eq!(a.metric("sipedge_active_calls"), Some(0.0));
    held(&e2, &mut b_in, &mut flow, "fo3").expect("carrier-b's channel is free again");
}

/// An edge holding carrier-a's two channels is killed: its leases expire
/// within `lease_ttl_ms` plus one renewal period and the other edge takes
/// both channels.
#[test]
fn a_killed_edges_carrier_leases_expire_and_the_other_edge_uses_the_slots() {
    if !redis::available() {
        return;
    }
    let (b, b2) = (Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let ttl = "lease_ttl_ms = 1000";
    let limits = [("carrier-a", "max_concurrent = 2\n")];
    let mut a = edge_with(b, b, &redis.url(), "edge-a", ttl, &limits);
    let e2 = edge_with(b2, b, &redis.url(), "edge-b", ttl, &limits);
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    let mut cb = Peer::udp(b.addr(3, 5060), e2.sip);
    held(&a, &mut ca, &mut flow, "k1").expect("first call up");
    held(&a, &mut ca, &mut flow, "k2").expect("second call up");
    // Renewals keep them past the TTL while the edge lives.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(leases(&redis, CARRIER_LEASES), 2, "live carrier leases are renewed");
    let full = held(&e2, &mut cb, &mut flow, "k3").expect_err("the killed edge's calls hold the carrier");
    assert_eq!(full.status(), Some(503));

    a.kill9();
    let mut n = 0;
    let took = wait_for("a carrier slot of the killed edge", || {
        n += 1;
        held(&e2, &mut cb, &mut flow, &format!("k-retry-{n}")).is_ok()
    });
    println!("carrier slot back {took:?} after kill -9 (TTL 1000 ms, renewal 333 ms)");
    // Both expired members were dropped by that admit: only the new call is counted.
    assert_eq!(leases(&redis, CARRIER_LEASES), 1, "only the live edge's lease");
    held(&e2, &mut cb, &mut flow, "k-second").expect("the killed edge's second slot too");
    assert_eq!(leases(&redis, CARRIER_LEASES), 2);
    let over = held(&e2, &mut cb, &mut flow, "k-over").expect_err("and no more than the cap");
    assert_eq!(over.status(), Some(503));
    // A bound, not a speed: TTL + a renewal period, with slack for a loaded machine.
    assert!(took <= Duration::from_millis(1000 + 333) + Duration::from_secs(3), "slots back after {took:?}");
}

/// Redis stopped: two `local_share` edges (two instances alive) each take
/// ceil(3 / 2) = 2 of carrier-a's 3 channels alone; a `fail_closed` edge
/// (on a Redis of its own, also stopped) refuses a capped carrier's call
/// with 503 and still takes an uncapped carrier's.
#[test]
fn redis_stopped_holds_a_carrier_to_its_local_share_or_fails_closed() {
    if !redis::available() {
        return;
    }
    let (b, b2, b3) = (Block::new(), Block::new(), Block::new());
    let redis = Redis::start(b.addr(60, 6379));
    let limits = [("carrier-a", "max_concurrent = 3\n")];
    // A short TTL: the edges heartbeat (and learn who is alive) every second.
    let share = "on_backend_down = \"local_share\"\nlease_ttl_ms = 3000";
    let a = edge_with(b, b, &redis.url(), "edge-a", share, &limits);
    let e2 = edge_with(b2, b, &redis.url(), "edge-b", share, &limits);
    let other = Redis::start(b3.addr(60, 6379));
    let closed = edge_with(b3, b, &other.url(), "edge-closed", "on_backend_down = \"fail_closed\"", &limits);
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    let mut cb = Peer::udp(b.addr(3, 5060), e2.sip);
    // Each edge learns the instances alive at its own heartbeat (every third of the TTL).
    for e in [&a, &e2] {
        wait_for("both edges see two instances alive", || {
            let (_, body) = e.http("GET", "/v1/cluster", None);
            serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["instances_alive"] == 2)
        });
    }
    wait_for("the fail_closed edge seen", || other.cmd(&["ZCARD", "sipedge:{instances}"]) == "1");

    redis.signal("STOP");
    other.signal("STOP");
    for (e, c, name) in [(&a, &mut ca, "a"), (&e2, &mut cb, "b")] {
        held(e, c, &mut flow, &format!("ls-{name}1")).expect("within the local share");
        held(e, c, &mut flow, &format!("ls-{name}2")).expect("the whole local share");
        let over = held(e, c, &mut flow, &format!("ls-{name}3")).expect_err("past ceil(3 / 2)");
        assert_eq!(over.status(), Some(503));
        assert!(over.header_by_name("Retry-After").is_some(), "503 carries Retry-After");
        let labels = [("carrier", "carrier-a"), ("reason", "max_concurrent")];
        assert_eq!(crate::failover::metric(e, "sipedge_carrier_refused_total", &labels), Some(1.0));
        let admitted = "sipedge_cluster_fallback_total{policy=\"local_share\",result=\"admitted\"}";
        assert!(e.metric(admitted).unwrap_or(0.0) >= 2.0, "admitted by the policy");
    }

    let mut cc = Peer::udp(b.addr(2, 5070), closed.sip);
    let refused = held(&closed, &mut cc, &mut flow, "fc1").expect_err("fail_closed refuses a capped carrier");
    assert_eq!(refused.status(), Some(503));
    assert!(closed.metric("sipedge_cluster_fallback_total{policy=\"fail_closed\",result=\"refused\"}") >= Some(1.0));
    let mut uncapped = Peer::udp(b.addr(4, 5070), closed.sip);
    held(&closed, &mut uncapped, &mut flow, "fc2").expect("an uncapped carrier never asks Redis");
    redis.signal("CONT");
    other.signal("CONT");
}

/// `EVAL`s the carrier script on `redis`: carrier `name`, `member`, cap,
/// interval (µs). 1 admitted, 0 max_concurrent, -1 max_cps.
fn carrier_admit(redis: &Redis, name: &str, member: &str, cap: u32, interval_us: u64) -> i64 {
    let key = sipedge::cluster::scripts::carrier_key(name);
    let tat = sipedge::cluster::scripts::tat_key(&key);
    let (cap, interval) = (cap.to_string(), interval_us.to_string());
    let args = ["EVAL", sipedge::cluster::scripts::CARRIER_ADMIT, "2", &key, &tat, member, &cap, "30000", &interval];
    redis.cmd(&args).parse().expect("an integer reply")
}

/// The carrier's GCRA arrival time (µs of server time), 0 if none.
fn tat(redis: &Redis, name: &str) -> i64 {
    let key = sipedge::cluster::scripts::tat_key(&sipedge::cluster::scripts::carrier_key(name));
    let get = "return tonumber(redis.call('GET', KEYS[1]) or '0')";
    redis.cmd(&["EVAL", get, "1", &key]).parse().expect("an integer reply")
}

/// The carrier script on a real Redis, on server time: `max_cps = 5` admits
/// a burst of one second's worth, refuses the next with max_cps, admits
/// again once an emission interval (200 ms) has passed. A concurrency
/// refusal and a renewed member spend no rate.
#[test]
fn the_carrier_gcra_script_admits_a_seconds_burst_then_one_per_interval() {
    if !redis::available() {
        return;
    }
    let b = Block::new();
    let redis = Redis::start(b.addr(60, 6379));
    let interval = 200_000; // 1 s / 5
    let results: Vec<i64> = (0..8).map(|i| carrier_admit(&redis, "gcra", &format!("m{i}"), 0, interval)).collect();
    let admitted = results.iter().filter(|r| **r == 1).count();
    // 5, or 6 if an interval passed while the 8 were sent (a loaded machine).
    assert!((5..=6).contains(&admitted), "{results:?}");
    assert_eq!(results.first(), Some(&1));
    assert_eq!(results.last(), Some(&-1), "past the burst: refused for max_cps: {results:?}");
    // Refused calls did not move the arrival time: an interval later one more passes.
    let mut n = 0;
    wait_for("a token back after one emission interval", || {
        n += 1;
        std::thread::sleep(Duration::from_millis(50));
        carrier_admit(&redis, "gcra", &format!("later{n}"), 0, interval) == 1
    });
    assert_eq!(carrier_admit(&redis, "gcra", "right-after", 0, interval), -1, "and the bucket is full again");

    // Concurrency first: a call refused for max_concurrent spends no rate.
    assert_eq!(carrier_admit(&redis, "capped", "c1", 1, interval), 1);
    let before = tat(&redis, "capped");
    assert!(before > 0);
    assert_eq!(carrier_admit(&redis, "capped", "c2", 1, interval), 0, "max_concurrent");
    assert_eq!(tat(&redis, "capped"), before, "the refusal spent no token");
    // A retransmission (the member already holds a lease) is renewed, not charged.
    assert_eq!(carrier_admit(&redis, "capped", "c1", 1, interval), 1);
    assert_eq!(tat(&redis, "capped"), before, "a renewal spent no token");
    assert_eq!(redis.cmd(&["ZCARD", &sipedge::cluster::scripts::carrier_key("capped")]), "1");
}

/// A call the carrier admits but its number refuses gets its carrier rate
/// token back (the two scripts live in different hash slots, so they are
/// pipelined, not one transaction): the arrival time ends where it was.
#[test]
fn a_call_refused_for_its_number_gives_the_carrier_rate_token_back() {
    if !redis::available() {
        return;
    }
    let b = Block::new();
    let redis = Redis::start(b.addr(60, 6379));
    let a = edge(b, b, &redis.url(), "edge-a", "max_cps = 5\n");
    let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
    let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
    // The DID (cap 2, carrier-a) full: two tokens spent.
    crate::cluster::held_call(&a, &mut ca, &mut flow, "n1").expect("first call up");
    crate::cluster::held_call(&a, &mut ca, &mut flow, "n2").expect("second call up");
    let before = tat(&redis, "carrier-a");
    assert!(before > 0, "the admitted calls spent tokens");
    for i in 0..3 {
        let busy = crate::cluster::held_call(&a, &mut ca, &mut flow, &format!("busy-{i}"));
        assert_eq!(busy.err(), Some(486), "the number is full");
    }
    // The refunds are sent after the verdicts: wait for them, not for time.
    wait_for("the refused calls' tokens back", || tat(&redis, "carrier-a") <= before);
    let labels = [("carrier", "carrier-a"), ("reason", "max_cps")];
    assert_eq!(crate::failover::metric(&a, "sipedge_carrier_refused_total", &labels), Some(0.0));
}
