//! Priority and weight over a fleet of flow-engine endpoints (SPEC §13), with
//! real SIPp: three UAS in az1 weighted 1:2:3 get first tries in that ratio;
//! one stopped, every call still succeeds and its share moves to the others;
//! a priority-2 endpoint gets nothing while a priority-1 endpoint is up.

use crate::sipp::{load_numbers, uac, uas};
use crate::support::{Block, Edge, EdgeSpec};

/// An edge with carrier-a on .2 and flow-engine endpoints `(host, priority, weight)`, all az1.
fn fleet(b: Block, endpoints: &[(u8, u32, u32)], nums: &[String]) -> Edge {
    let mut toml = format!(
        "[flood]\nenabled = false\n[health]\noptions_interval_ms = 200\ndown_after = 1\n\
         [[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(2, 5060)
    );
    for (host, priority, weight) in endpoints {
        toml.push_str(&format!(
            "[[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\npriority = {priority}\nweight = {weight}\n",
            b.addr(*host, 5060)
        ));
    }
    let numbers = nums.iter().map(|n| format!("{n},,flow-{n},carrier-a,,")).collect();
    Edge::start(b, EdgeSpec { toml, numbers, ..EdgeSpec::default() })
}

/// First tries to `host` so far (`sipedge_hop_calls_total{addr=…}`).
fn first_tries(edge: &Edge, b: Block, host: u8) -> u64 {
    let (_, text) = edge.http("GET", "/metrics", None);
    let addr = format!("addr=\"{}\"", b.addr(host, 5060));
    text.lines()
        .filter(|l| l.starts_with("sipedge_hop_calls_total{") && l.contains(&addr))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[test]
fn sipp_6000_calls_spread_1_2_3_and_a_stopped_endpoint_s_share_moves() {
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let nums = load_numbers(100);
    let edge = fleet(b, &[(10, 1, 1), (11, 1, 2), (12, 1, 3)], &nums);
    let dir = tempfile::tempdir().unwrap();
    let _u10 = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let _u11 = uas(b.ip(11), "uas_200.xml", "u1", dir.path());
    let mut u12 = Some(uas(b.ip(12), "uas_200.xml", "u1", dir.path()));
    let dialed: Vec<&str> = nums.iter().map(|n| n.trim_start_matches('+')).collect();

    let r = uac(b.ip(2), edge.sip, "uac_rr.xml", "u1", 400, 6000, &dialed, &[], dir.path());
    assert_eq!((r.ok, r.failed), (6000, 0), "{}\n{}", r.stat, edge.log());
    let got = [10, 11, 12].map(|h| first_tries(&edge, b, h));
    assert_eq!(got.iter().sum::<u64>(), 6000, "one first try per call: {got:?}");
    for (n, want) in got.iter().zip([1000u64, 2000, 3000]) {
        assert!(n.abs_diff(want) * 20 <= want, "first tries {got:?}, want 1000:2000:3000 within 5 %");
    }

    // The weight-3 endpoint stops: its calls fail over at once (ICMP), health
    // takes it out of the draw, and the others share what it had, 1:2.
    drop(u12.take());
    let before = got;
    let r = uac(b.ip(2), edge.sip, "uac_rr.xml", "u1", 200, 1500, &dialed, &[], dir.path());
    assert_eq!((r.ok, r.failed), (1500, 0), "every call succeeds with one endpoint gone\n{}", r.stat);
    let after = [10, 11, 12].map(|h| first_tries(&edge, b, h));
    let moved = [after[0] - before[0], after[1] - before[1], after[2] - before[2]];
    assert!(moved[2] < 150, "the stopped endpoint soon leaves the draw: {moved:?}");
    assert!(moved[0] + moved[1] > 1350 && moved[1] > moved[0] * 3 / 2, "its share went to the others, 1:2: {moved:?}");
}

#[test]
fn sipp_calls_never_reach_priority_2_while_a_priority_1_endpoint_is_up() {
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let nums = load_numbers(20);
    let edge = fleet(b, &[(10, 2, 5), (11, 1, 1)], &nums);
    let dir = tempfile::tempdir().unwrap();
    let _u10 = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let _u11 = uas(b.ip(11), "uas_200.xml", "u1", dir.path());
    let dialed: Vec<&str> = nums.iter().map(|n| n.trim_start_matches('+')).collect();
    let r = uac(b.ip(2), edge.sip, "uac_rr.xml", "u1", 200, 600, &dialed, &[], dir.path());
    assert_eq!((r.ok, r.failed), (600, 0), "{}", r.stat);
    assert_eq!((first_tries(&edge, b, 10), first_tries(&edge, b, 11)), (0, 600));
    let (_, body) = edge.http("GET", "/v1/carriers", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let fe = v["flow_engine"].as_array().expect("flow_engine listed");
    let ranks: Vec<(u64, u64)> =
        fe.iter().map(|l| (l["priority"].as_u64().unwrap(), l["weight"].as_u64().unwrap())).collect();
    assert_eq!(ranks, [(2, 5), (1, 1)], "{v}");
}
