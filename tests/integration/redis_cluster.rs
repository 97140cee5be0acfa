//! Cluster mode on a real Redis Cluster (three masters on loopback, made by
//! `redis-cli --cluster create`): one number's cap holds across two edges,
//! and a claim through one edge routes on the other. Every key of a number
//! carries its hash tag, so admission scripts run on the number's node, and
//! the number events (one tag for the inventory) on theirs.

use serde_json::json;
use std::time::Duration;

use crate::cluster::{cluster_edge, hang_up, held_call, wait_for};
use crate::control_plane::{ok, state, Sip};
use crate::support::redis::{self, RedisCluster};
use crate::support::{Block, Peer};

const LEASES: &str = "sipedge:{+12065550100}:calls";
const RECORDS: &str = "sipedge:{inventory}:numbers";
const INSTANCES: &str = "sipedge:{instances}";

#[test]
fn two_edges_on_a_redis_cluster_share_the_cap_and_the_number_events() {
    if !redis::available() {
        return;
    }
    let (b, b2) = (Block::new(), Block::new());
    let rc = RedisCluster::start(b.ip(60).into());
    // The keys this test touches live on more than one node, so it shows
    // that no script or batch spans slots.
    let homes: std::collections::HashSet<_> = [LEASES, RECORDS, INSTANCES].iter().map(|k| rc.node_of(k)).collect();
    assert!(homes.len() >= 2, "the keys under test all hash to one node: {homes:?}");

    let a = cluster_edge(b, b, &rc.url(), "edge-a", "");
    let e2 = cluster_edge(b2, b, &rc.url(), "edge-b", "");
    wait_for("the seed in the cluster", || rc.cli(&["HLEN", RECORDS]) == "3");

    // The DID capped at 2, offered through both edges (the peers are
    // closed at the end of the block: `Sip` binds the same addresses).
    {
        let mut flow = Peer::udp(b.addr(10, 5060), a.sip);
        let mut ca = Peer::udp(b.addr(2, 5060), a.sip);
        let mut cb = Peer::udp(b.addr(3, 5060), e2.sip);
        let one = held_call(&a, &mut ca, &mut flow, "rc1").expect("first call up");
        let two = held_call(&e2, &mut cb, &mut flow, "rc2").expect("second call up, through the other edge");
        assert_eq!(rc.cli(&["ZCARD", LEASES]), "2");
        assert_eq!(held_call(&a, &mut ca, &mut flow, "rc3").err(), Some(486), "the cap holds across both edges");
        assert_eq!(held_call(&e2, &mut cb, &mut flow, "rc4").err(), Some(486));
        hang_up(&mut ca, &mut flow, &one, 1);
        hang_up(&mut cb, &mut flow, &two, 2);
        wait_for("every lease released", || rc.cli(&["ZCARD", LEASES]) == "0");
    }
    wait_for("both instances alive", || rc.cli(&["ZCARD", INSTANCES]) == "2");
    assert_eq!(a.metric("sipedge_cluster_up"), Some(1.0));
    assert_eq!(e2.metric("sipedge_cluster_up"), Some(1.0));

    // A claim through A routes at B; a release through B is seen at A.
    let n = "+12065550177";
    ok(&a, "POST", &format!("/v1/numbers/{n}/claim"), Some(json!({"flow": "fa", "carriers": ["carrier-a"]})));
    let took = wait_for("the claim at B", || state(&e2, n) == "active");
    assert!(took < Duration::from_secs(1), "claim routable at B after {took:?}");
    assert_eq!(Sip::new(b, &e2).call(n), "fa", "B routes the number claimed through A");
    ok(&e2, "POST", &format!("/v1/numbers/{n}/release"), None);
    let took = wait_for("the release at A", || state(&a, n) == "released");
    assert!(took < Duration::from_secs(1), "release seen at A after {took:?}");
    assert!(rc.keys_per_node().iter().filter(|(_, keys)| *keys > 0).count() >= 2, "{:?}", rc.keys_per_node());
}
