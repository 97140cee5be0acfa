//! Ten million numbers on one edge (issue 17): seeded, restarted on the
//! populated store, and still routing and taking changes call by call.
//! Ignored by default (minutes and gigabytes); run it with
//! `tools/numbers-scale-test` (`SIPEDGE_SCALE_NUMBERS` sets the count).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::control_plane::{ok, Sip};
use crate::support::{standard, Block, Edge, EdgeSpec};

/// The first seeded number (tools/load's range); one flow each, carrier-a.
const BASE: u64 = 18_005_550_000;

fn flow_of(i: u64) -> String {
    format!("flow-{i:07}")
}

#[test]
#[ignore = "minutes and gigabytes: run by tools/numbers-scale-test"]
fn ten_million_numbers_route_after_a_restart_and_a_claim_or_release_applies_on_the_next_call() {
    let n: u64 = std::env::var("SIPEDGE_SCALE_NUMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    assert!(n >= 10, "SIPEDGE_SCALE_NUMBERS={n}: too few to sample");
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let seed = dir.path().join("numbers.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&seed).unwrap());
        writeln!(f, "e164,kind,flow,carriers,max_concurrent,cnam").unwrap();
        for i in 0..n {
            writeln!(f, "+{},toll-free,{},carrier-a,,", BASE + i, flow_of(i)).unwrap();
        }
        f.flush().unwrap();
    }
    let spec = EdgeSpec {
        seed_file: Some(seed),
        // Generous on a loaded 2-core machine; the targets are 100 s (import) and 30 s (start).
        ready_timeout: Some(Duration::from_secs(600)),
        ..standard(b, "udp")
    };
    let t = Instant::now();
    let mut edge = Edge::start_in(b, spec, dir);
    eprintln!("{n} numbers: import start {:.1} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    edge.restart();
    eprintln!("{n} numbers: populated start {:.1} s", t.elapsed().as_secs_f64());
    let v = ok(&edge, "GET", "/v1/numbers?limit=1", None);
    assert!(!v.is_null(), "the control plane answers after the restart");

    let mut sip = Sip::new(b, &edge);
    // The ends of the range and a spread of numbers between them.
    let mut sample: Vec<u64> = vec![0, n - 1, n / 2];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sample.push(x % n);
    }
    for &i in &sample {
        assert_eq!(sip.call(&format!("+{}", BASE + i)), flow_of(i), "seeded number #{i} routes with its flow");
    }

    // A claim routes on the very next call.
    let claimed = "+12065550177";
    sip.refused(claimed, 404);
    ok(
        &edge,
        "POST",
        &format!("/v1/numbers/{claimed}/claim"),
        Some(json!({"flow": "claimed-now", "carriers": ["carrier-a"]})),
    );
    assert_eq!(sip.call(claimed), "claimed-now", "a claim routes on the next call");

    // A release answers 410 on the very next call; its neighbours still route.
    let released = n / 3;
    let v = ok(&edge, "POST", &format!("/v1/numbers/+{}/release", BASE + released), None);
    assert_eq!(v["state"], "released");
    sip.refused(&format!("+{}", BASE + released), 410);
    assert_eq!(sip.call(&format!("+{}", BASE + released + 1)), flow_of(released + 1));
}
