//! Trunk limits end to end (SPEC §10): a carrier's `max_concurrent` refuses
//! the call past it with 503 + Retry-After while another carrier's calls pass;
//! an outbound toll-free call skips a full carrier; `max_cps` lets a burst of
//! one second's worth through.

use bytes::Bytes;
use std::time::Duration;

use crate::failover::{invite_as, metric, numbers, place_call, topology, wait_metric, T};
use crate::sipp::uas;
use crate::support::peer::{in_dialog, wire};
use crate::support::{Block, Edge, EdgeSpec, Peer};
use sipedge::sip::{build, Msg};

const HEAD: &str = "[health]\noptions_interval_ms = 60000\n";
const TOLL_FREE: &str = "+18005550100";

/// The standard topology with `[[carrier]]` keys added to carrier-a.
fn start(b: Block, carrier_a: &str) -> Edge {
    let toml =
        topology(b, HEAD, &[]).replacen("name = \"carrier-a\"\n", &format!("name = \"carrier-a\"\n{carrier_a}"), 1);
    Edge::start(b, EdgeSpec { toml, numbers: numbers(), tcp: false, ..EdgeSpec::default() })
}

/// Sends an INVITE and returns its final answer; a 200 is ACKed and the call left up.
fn call(peer: &mut Peer, edge: &Edge, caller: &str, dialed: &str, call_id: &str) -> Msg {
    let text = invite_as(peer.local(), edge.sip, dialed, caller, call_id);
    peer.send(&text);
    let inv = Msg::parse(Bytes::from(wire(&text))).unwrap();
    let (fin, _) =
        peer.expect(T + T, "a final answer", |m| m.status().is_some_and(|s| s >= 200) && m.call_id() == call_id);
    if fin.status() == Some(200) {
        let local = peer.local();
        peer.send(&in_dialog("ACK", &fin, local, "UDP", 1, &format!("a{call_id}")));
    } else {
        peer.send_bytes(&build::ack_for_non2xx(&inv, &fin));
    }
    fin
}

#[test]
fn carrier_max_concurrent_3_refuses_the_4th_call_with_503_while_another_carrier_passes() {
    let b = Block::new();
    let edge = start(b, "max_concurrent = 3\n");
    let dir = tempfile::tempdir().unwrap();
    let _fe = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let mut a = Peer::udp(b.addr(2, 5070), edge.sip);
    for i in 0..3 {
        let ok = call(&mut a, &edge, "+13125550199", TOLL_FREE, &format!("held-{i}"));
        assert_eq!(ok.status(), Some(200), "held call {i}:\n{}", edge.log());
    }
    assert_eq!(metric(&edge, "sipedge_carrier_active_calls", &[("carrier", "carrier-a")]), Some(3.0));
    let refused = call(&mut a, &edge, "+13125550199", TOLL_FREE, "fourth");
    assert_eq!(refused.status(), Some(503));
    assert!(refused.header_by_name("Retry-After").is_some(), "503 carries Retry-After");
    let labels = [("carrier", "carrier-a"), ("reason", "max_concurrent")];
    assert_eq!(metric(&edge, "sipedge_carrier_refused_total", &labels), Some(1.0));
    // carrier-b is not affected by carrier-a's limit.
    let mut bee = Peer::udp(b.addr(4, 5070), edge.sip);
    for i in 0..3 {
        let inv = invite_as(bee.local(), edge.sip, TOLL_FREE, "+13125550199", &format!("b-{i}"));
        assert_eq!(place_call(&mut bee, &inv, None), 200);
    }
    let labels = [("carrier", "carrier-b"), ("reason", "fair_share")];
    assert_eq!(metric(&edge, "sipedge_carrier_refused_total", &labels), Some(0.0), "registered at 0");
    assert!(wait_metric(&edge, "sipedge_carrier_active_calls", &[("carrier", "carrier-b")], 0.0, T));
}

#[test]
fn outbound_toll_free_skips_a_full_carrier_for_the_next_one() {
    let b = Block::new();
    let edge = start(b, "max_concurrent = 1\n");
    let dir = tempfile::tempdir().unwrap();
    let _fe = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let _carrier_b = uas(b.ip(4), "uas_200.xml", "u1", dir.path());
    // carrier-a's one channel is taken by an inbound call.
    let mut a = Peer::udp(b.addr(2, 5070), edge.sip);
    assert_eq!(call(&mut a, &edge, "+13125550199", TOLL_FREE, "inbound").status(), Some(200));
    // Nothing listens on carrier-a's links: a call sent there would time out, not answer 200.
    let mut platform = Peer::udp(b.addr(10, 5070), edge.sip);
    let inv = invite_as(platform.local(), edge.sip, "+13125550100", TOLL_FREE, "outbound");
    assert_eq!(place_call(&mut platform, &inv, None), 200, "{}", edge.log());
    let labels = [("carrier", "carrier-a"), ("reason", "max_concurrent")];
    assert_eq!(metric(&edge, "sipedge_carrier_refused_total", &labels), Some(1.0));
    assert_eq!(metric(&edge, "sipedge_failovers_total", &[("carrier", "carrier-a")]), None, "skipped, not failed over");
}

#[test]
fn carrier_max_cps_5_admits_about_5_of_30_invites_offered_at_once() {
    let b = Block::new();
    let edge = start(b, "max_cps = 5\n");
    let dir = tempfile::tempdir().unwrap();
    let _fe = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let mut a = Peer::udp(b.addr(2, 5070), edge.sip);
    let ids: Vec<String> = (0..30).map(|i| format!("cps-{i}")).collect();
    for id in &ids {
        a.send(&invite_as(a.local(), edge.sip, TOLL_FREE, "+13125550199", id));
    }
    let (mut ok, mut busy) = (0, 0);
    for _ in 0..30 {
        let (m, _) = a.expect(T + T, "a final answer", |m| {
            m.status().is_some_and(|s| s >= 200) && ids.iter().any(|id| id == m.call_id())
        });
        match m.status() {
            Some(200) => ok += 1,
            Some(503) => busy += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // A burst of one second's worth (5) plus what refills while the burst is sent.
    assert!((4..=7).contains(&ok), "{ok} admitted, {busy} refused");
    assert_eq!(ok + busy, 30);
    let labels = [("carrier", "carrier-a"), ("reason", "max_cps")];
    assert_eq!(metric(&edge, "sipedge_carrier_refused_total", &labels), Some(f64::from(busy)));
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn get_v1_carriers_and_ctl_carriers_show_limits_calls_and_link_health() {
    let b = Block::new();
    let edge = start(b, "max_concurrent = 3\nmax_cps = 5\n");
    let (status, body) = edge.http("GET", "/v1/carriers", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let a = v["carriers"].as_array().unwrap().iter().find(|c| c["name"] == "carrier-a").cloned().unwrap();
    assert_eq!(
        (a["max_concurrent"].as_u64(), a["max_cps"].as_u64(), a["active_calls"].as_u64()),
        (Some(3), Some(5), Some(0))
    );
    let links = a["links"].as_array().unwrap();
    assert!(!links.is_empty() && links.iter().all(|l| l["up"] == true && l["addr"].is_string()), "{a}");
    let out = std::process::Command::new(crate::support::edge::binary())
        .args(["ctl", "--config", edge.config_path.to_str().unwrap(), "carriers"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("CARRIER") && text.lines().any(|l| l.starts_with("carrier-a") && l.contains(" 3 ")),
        "{text}"
    );
}
