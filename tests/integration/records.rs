//! Call records (`[records] path`): one JSON line per finished call with the
//! SPEC §11 fields, for answered, refused and failed-over calls; the file
//! reopened on SIGHUP after a rename (logrotate); a directory that vanishes
//! drops records and counts them while calls go on.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::capture::one_udp_call;
use crate::support::peer::invite;
use crate::support::{standard, Block, Edge, Peer};

const T: Duration = Duration::from_secs(5);

const FIELDS: [&str; 14] = [
    "call_id",
    "direction",
    "number",
    "kind",
    "carrier",
    "flow",
    "hops",
    "az",
    "outcome",
    "status",
    "started_at",
    "setup_ms",
    "duration_s",
    "ended_by",
];

/// The file's records, once it holds at least `n` lines (or after `T`).
fn wait_records(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let end = Instant::now() + T;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}"))).collect();
        if lines.len() >= n || Instant::now() > end {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn by_call<'a>(recs: &'a [serde_json::Value], call_id: &str) -> &'a serde_json::Value {
    recs.iter().find(|r| r["call_id"] == call_id).unwrap_or_else(|| panic!("no record for {call_id} in {recs:?}"))
}

/// A call to a number nobody has: 404 from the edge.
fn refused_call(edge: &Edge, call_id: &str, host: u8) {
    let mut carrier = Peer::udp(SocketAddr::new(IpAddr::V4(edge.block().ip(host)), 5060), edge.sip);
    carrier.send(&invite(carrier.local(), "UDP", edge.sip, "+12065559999", call_id, "hr1"));
    carrier.expect_status(404, T);
}

fn spec_with_records(b: Block, path: &Path) -> crate::support::EdgeSpec {
    let mut spec = standard(b, "udp");
    spec.toml.push_str(&format!("[records]\npath = \"{}\"\n", path.display()));
    spec
}

#[test]
fn answered_refused_and_failed_over_calls_each_get_one_line_and_sighup_reopens_the_file() {
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("calls.jsonl");
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let mut flow2 = Peer::udp(b.addr(11, 5060), b.addr(1, 5060));
    let edge = Edge::start(b, spec_with_records(b, &path));

    one_udp_call(&edge, &mut flow, "rec-answered");
    refused_call(&edge, "rec-refused", 2);
    // Failed over: az1 answers 503, az2 refuses with 486, which is relayed.
    let mut carrier = Peer::udp(b.addr(3, 5060), edge.sip);
    carrier.send(&invite(carrier.local(), "UDP", edge.sip, "+18005550100", "rec-failover", "hf1"));
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 503, from);
    let (fwd2, from2) = flow2.expect_request("INVITE", T);
    flow2.answer(&fwd2, 486, from2);
    carrier.expect_status(486, T);

    let recs = wait_records(&path, 3);
    assert_eq!(recs.len(), 3, "{recs:?}");
    for r in &recs {
        for f in FIELDS {
            assert!(r.get(f).is_some(), "field {f} missing in {r}");
        }
        let at = r["started_at"].as_str().unwrap();
        assert!(at.len() >= 20 && at.ends_with('Z') && at.as_bytes()[10] == b'T', "RFC 3339: {at}");
    }
    let ok = by_call(&recs, "rec-answered");
    assert_eq!(ok["direction"], "inbound");
    assert_eq!(ok["number"], "+18005550100");
    assert_eq!(ok["kind"], "toll-free");
    assert_eq!(ok["carrier"], "carrier-a");
    assert_eq!(ok["flow"], "flow-tf");
    assert_eq!(ok["outcome"], "answered");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["ended_by"], "caller");
    assert_eq!(ok["az"], "az1");
    assert_eq!(ok["hops"].as_array().unwrap().len(), 1);
    assert_eq!(ok["hops"][0]["addr"], b.addr(10, 5060).to_string());
    assert_eq!(ok["hops"][0]["group"], "flow-engine");
    assert_eq!(ok["hops"][0]["status"], 200);

    let no = by_call(&recs, "rec-refused");
    assert_eq!(
        (&no["outcome"], &no["status"], &no["ended_by"]),
        (&"unknown_number".into(), &404.into(), &"edge".into())
    );
    assert_eq!(no["number"], "+12065559999");
    assert_eq!(no["hops"].as_array().unwrap().len(), 0);
    assert_eq!(no["duration_s"], 0.0);

    let fo = by_call(&recs, "rec-failover");
    assert_eq!(fo["outcome"], "refused_downstream");
    assert_eq!(fo["status"], 486);
    assert_eq!(fo["ended_by"], "callee");
    assert_eq!(fo["az"], "az2");
    let hops: Vec<(String, u64)> = fo["hops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["addr"].as_str().unwrap().to_string(), h["status"].as_u64().unwrap()))
        .collect();
    assert_eq!(hops, vec![(b.addr(10, 5060).to_string(), 503), (b.addr(11, 5060).to_string(), 486)]);

    // logrotate: rename, then SIGHUP; the next record goes to a new file.
    let rotated = dir.path().join("calls.jsonl.1");
    std::fs::rename(&path, &rotated).unwrap();
    edge.signal("HUP");
    assert!(edge.wait_log("SIGHUP", T), "SIGHUP handled");
    refused_call(&edge, "rec-after-rotate", 4);
    let fresh = wait_records(&path, 1);
    assert_eq!(fresh.len(), 1, "the reopened file holds the new record");
    assert_eq!(fresh[0]["call_id"], "rec-after-rotate");
    assert_eq!(wait_records(&rotated, 3).len(), 3, "the rotated file keeps the old ones");
    assert_eq!(edge.metric("sipedge_records_written_total"), Some(4.0));
    assert_eq!(edge.metric("sipedge_records_dropped_total"), Some(0.0));
}

#[test]
fn a_vanished_directory_drops_records_and_counts_them_while_calls_go_on() {
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("cdr");
    std::fs::create_dir(&logs).unwrap();
    let path = logs.join("calls.jsonl");
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let edge = Edge::start(b, spec_with_records(b, &path));
    refused_call(&edge, "vanish-1", 2);
    assert_eq!(wait_records(&path, 1).len(), 1);

    // The directory goes away and the file is reopened: nowhere to write.
    std::fs::remove_dir_all(&logs).unwrap();
    edge.signal("HUP");
    assert!(edge.wait_log("SIGHUP", T));
    one_udp_call(&edge, &mut flow, "vanish-2");
    refused_call(&edge, "vanish-3", 3);
    let end = Instant::now() + T;
    while edge.metric("sipedge_records_dropped_total") < Some(2.0) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(edge.metric("sipedge_records_dropped_total"), Some(2.0), "both records counted as dropped");
    assert!(edge.log().contains("call records cannot be written"), "the outage is logged");

    // The directory is back: records are written again, calls never stopped.
    std::fs::create_dir(&logs).unwrap();
    refused_call(&edge, "vanish-4", 4);
    let back = wait_records(&path, 1);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0]["call_id"], "vanish-4");
}
