//! Port orders through Redis (SPEC §8): an order created, cancelled or
//! completed through one edge is the same order, with the same numbers, on
//! the other; of two edges finishing one order the first in stream order
//! wins and the other answers 409 `port_finished`, as one edge does.

use serde_json::{json, Value};
use std::time::Duration;

use crate::cluster::wait_for;
use crate::cluster_events::{cluster, table};
use crate::control_plane::{api, ok, state, Sip};
use crate::support::Edge;

/// The order `id` as `edge` shows it (`None`: 404 or another error).
fn order(edge: &Edge, id: u64) -> Option<Value> {
    let (status, v) = api(edge, "GET", &format!("/v1/ports/{id}"), None);
    (status == 200).then_some(v)
}

fn status_at(edge: &Edge, id: u64) -> String {
    order(edge, id).and_then(|o| o["status"].as_str().map(str::to_owned)).unwrap_or_default()
}

fn port_in(edge: &Edge, numbers: &[&str], flow: &str) -> u64 {
    let o = ok(
        edge,
        "POST",
        "/v1/ports",
        Some(json!({"direction": "in", "numbers": numbers, "carriers": ["carrier-a"], "flow": flow})),
    );
    o["id"].as_u64().expect("an order id")
}

#[test]
fn an_order_made_on_one_edge_is_completed_on_the_other_and_routes_on_both() {
    let Some((b, _redis, edges)) = cluster(2) else { return };
    let (a, e2) = (&edges[0], &edges[1]);

    let id = port_in(a, &["+18885550101"], "ported");
    let took = wait_for("the order at B", || order(e2, id).is_some());
    assert!(took < Duration::from_secs(1), "{took:?}");
    assert_eq!(order(e2, id), order(a, id), "the same order on both edges");
    assert_eq!(state(e2, "+18885550101"), "port_in_pending");

    assert_eq!(ok(e2, "POST", &format!("/v1/ports/{id}/complete"), None)["status"], "completed");
    wait_for("the completion at A", || status_at(a, id) == "completed");
    // Calls to the number ported in through B go to its flow at A.
    assert_eq!(Sip::new(b, a).call("+18885550101"), "ported");

    // Port-out through B, completed through A: gone (404) at B, as on one edge.
    let out = ok(e2, "POST", "/v1/ports", Some(json!({"direction": "out", "numbers": ["+12065550100"]})));
    let out = out["id"].as_u64().unwrap();
    assert_ne!(out, id, "order ids are cluster-wide");
    wait_for("the port-out at A", || status_at(a, out) == "pending");
    ok(a, "POST", &format!("/v1/ports/{out}/complete"), None);
    wait_for("the port-out done at B", || state(e2, "+12065550100") == "unknown_number");
    Sip::new(b, e2).refused("+12065550100", 404);

    // Cancelled at A: the pending numbers vanish at B too.
    let pin = port_in(a, &["+18885550102"], "x");
    wait_for("the second order at B", || state(e2, "+18885550102") == "port_in_pending");
    ok(a, "POST", &format!("/v1/ports/{pin}/cancel"), None);
    wait_for("the cancel at B", || status_at(e2, pin) == "cancelled");
    assert_eq!(state(e2, "+18885550102"), "unknown_number");
    assert_eq!(ok(a, "GET", "/v1/ports", None), ok(e2, "GET", "/v1/ports", None));
    assert_eq!(table(a), table(e2));
}

#[test]
fn two_edges_finishing_one_order_the_first_wins_and_the_other_gets_409() {
    let Some((_b, _redis, edges)) = cluster(2) else { return };
    let (a, e2) = (&edges[0], &edges[1]);
    for (round, (first, second)) in
        [("complete", "complete"), ("cancel", "complete"), ("complete", "cancel")].into_iter().enumerate()
    {
        let n = format!("+1888555020{round}");
        let id = port_in(a, &[&n], "race");
        wait_for("the order at B", || order(e2, id).is_some());
        let (sa, sb) = std::thread::scope(|s| {
            let ta = s.spawn(|| api(a, "POST", &format!("/v1/ports/{id}/{first}"), None));
            let tb = s.spawn(|| api(e2, "POST", &format!("/v1/ports/{id}/{second}"), None));
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let mut codes = [sa.0, sb.0];
        codes.sort_unstable();
        assert_eq!(codes, [200, 409], "{first} at A → {sa:?}, {second} at B → {sb:?}");
        let loser = if sa.0 == 409 { &sa.1 } else { &sb.1 };
        assert_eq!(loser["error"], "port_finished", "{loser}");
        let winner = if sa.0 == 200 { &sa.1 } else { &sb.1 };
        wait_for("both edges agree", || status_at(a, id) == status_at(e2, id));
        assert_eq!(status_at(a, id), winner["status"].as_str().unwrap_or("?"), "the winner's answer holds");
        wait_for("same number state", || state(a, &n) == state(e2, &n));
    }
    // Created at the same time on both edges: two orders, two ids.
    let (x, y) = std::thread::scope(|s| {
        let tx = s.spawn(|| port_in(a, &["+18885550301"], "x"));
        let ty = s.spawn(|| port_in(e2, &["+18885550302"], "y"));
        (tx.join().unwrap(), ty.join().unwrap())
    });
    assert_ne!(x, y);
    wait_for("both orders on both edges", || order(a, y).is_some() && order(e2, x).is_some());
}

#[test]
fn an_edge_that_was_down_while_orders_changed_catches_up_on_restart() {
    let Some((b, _redis, mut edges)) = cluster(2) else { return };
    let mut e2 = edges.pop().unwrap();
    let a = &edges[0];
    let early = port_in(a, &["+18885550401"], "early");
    wait_for("B has the first order", || order(&e2, early).is_some());
    e2.kill9();
    ok(a, "POST", &format!("/v1/ports/{early}/complete"), None);
    let late = port_in(a, &["+18885550402"], "late");
    e2.restart();
    wait_for("B caught up", || status_at(&e2, early) == "completed" && status_at(&e2, late) == "pending");
    assert_eq!(Sip::new(b, &e2).call("+18885550401"), "early", "ported in through A while B was down");
    // B's next order takes an id after both.
    let next = port_in(&e2, &["+18885550403"], "next");
    assert!(next > late, "{next} after {late}");
    assert_eq!(ok(a, "GET", "/v1/ports", None), ok(&e2, "GET", "/v1/ports", None));
}
