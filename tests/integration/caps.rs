//! Admission end to end (SPEC §2, §5): SIPp holds calls up to a cap; the next
//! call is refused (486 at a number's cap, 503 + Retry-After at the instance
//! cap); once the held calls hang up, a call goes through again.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::failover::{invite_as, metric, place_call, sipp_counts, topology, wait_metric, T};
use crate::sipp::{scenario, sipp_bin, uas, Sipp};
use crate::support::{Block, Edge, EdgeSpec, Peer};
use bytes::Bytes;
use sipedge::sip::{build, Msg};

/// Starts SIPp holding `dialed.len()` calls for 3 s each (uac_rr_hold.xml, -d 3000).
fn hold(b: Block, edge: &Edge, dialed: &[&str], dir: &std::path::Path) -> Sipp {
    let inf = dir.join("hold.csv");
    std::fs::write(&inf, format!("SEQUENTIAL\n{}\n", dialed.join("\n"))).unwrap();
    let child = Command::new("timeout")
        .args(["60", sipp_bin()])
        .arg(edge.sip.to_string())
        .args(["-sf", scenario("uac_rr_hold.xml").to_str().unwrap(), "-inf", inf.to_str().unwrap()])
        .args(["-i", &b.ip(2).to_string(), "-p", "5060", "-t", "u1", "-d", "3000"])
        .args(["-r", "50", "-m", &dialed.len().to_string(), "-l", "100"])
        .args(["-nostdin", "-timeout", "30s"])
        .current_dir(dir)
        .stdout(std::fs::File::create(dir.join("hold-out.txt")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp uac");
    Sipp(child)
}

/// Waits for the held calls to end and returns SIPp's (successful, failed) counts.
fn finish(mut s: Sipp, dir: &std::path::Path) -> (u64, u64) {
    s.0.wait().unwrap();
    let text = std::fs::read_to_string(dir.join("hold-out.txt")).unwrap_or_default();
    sipp_counts(&text)
}

/// An INVITE that must be refused with `code`; returns the refusal.
fn refused(peer: &mut Peer, edge: &Edge, dialed: &str, call_id: &str, code: u16) -> Msg {
    let text = invite_as(peer.local(), edge.sip, dialed, "+13125550199", call_id);
    peer.send(&text);
    let inv = Msg::parse(Bytes::from(crate::support::peer::wire(&text))).unwrap();
    let (m, _) = peer.expect(T, "a final answer", |m| m.status().is_some_and(|s| s >= 200) && m.call_id() == call_id);
    assert_eq!(m.status(), Some(code), "{}", crate::support::peer::describe(&m));
    peer.send_bytes(&build::ack_for_non2xx(&inv, &m));
    m
}

const HEAD: &str = "[health]\noptions_interval_ms = 60000\n";

#[test]
fn number_cap_of_5_refuses_the_6th_call_with_486_until_a_slot_frees() {
    let b = Block::new();
    let spec = EdgeSpec {
        toml: topology(b, HEAD, &[]),
        numbers: vec!["+12065550100,did,flow-did,carrier-a,5,".into(), "+12065550111,did,flow-x,carrier-a,5,".into()],
        tcp: false,
        ..EdgeSpec::default()
    };
    let edge = Edge::start(b, spec);
    let dir = tempfile::tempdir().unwrap();
    let _fe = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let held = hold(b, &edge, &["12065550100"; 5], dir.path());
    assert!(wait_metric(&edge, "sipedge_active_calls", &[], 5.0, T), "5 calls held:\n{}", edge.log());
    let mut carrier = Peer::udp(b.addr(2, 5070), edge.sip);
    refused(&mut carrier, &edge, "+12065550100", "sixth", 486);
    refused(&mut carrier, &edge, "2065550100", "seventh", 486);
    // Another number is not affected by this one's cap.
    let inv = invite_as(carrier.local(), edge.sip, "+12065550111", "+13125550199", "other");
    assert_eq!(place_call(&mut carrier, &inv, None), 200);
    assert_eq!(metric(&edge, "sipedge_number_calls_high_water", &[("number", "+12065550100")]), Some(5.0));
    assert_eq!(finish(held, dir.path()), (5, 0), "the held calls themselves all succeeded");
    assert!(wait_metric(&edge, "sipedge_active_calls", &[], 0.0, T));
    let inv = invite_as(carrier.local(), edge.sip, "+12065550100", "+13125550199", "after");
    assert_eq!(place_call(&mut carrier, &inv, None), 200, "a slot is free again");
    assert_eq!(metric(&edge, "sipedge_number_calls_high_water", &[("number", "+12065550100")]), Some(5.0));
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
}

#[test]
fn instance_cap_of_5_refuses_the_6th_call_with_503_and_retry_after() {
    let b = Block::new();
    let numbers: Vec<String> = (0..8).map(|i| format!("+1800555010{i},toll-free,flow-{i},carrier-a,,")).collect();
    let spec = EdgeSpec {
        toml: topology(b, &format!("{HEAD}[limits]\nmax_concurrent_calls = 5\nretry_after_s = 7\n"), &[]),
        numbers,
        tcp: false,
        ..EdgeSpec::default()
    };
    let edge = Edge::start(b, spec);
    let dir = tempfile::tempdir().unwrap();
    let _fe = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let held = hold(b, &edge, &["18005550100", "18005550101", "18005550102", "18005550103", "18005550104"], dir.path());
    assert!(wait_metric(&edge, "sipedge_active_calls", &[], 5.0, T), "5 calls held:\n{}", edge.log());
    let mut carrier = Peer::udp(b.addr(2, 5070), edge.sip);
    let m = refused(&mut carrier, &edge, "+18005550105", "sixth", 503);
    assert_eq!(m.header_by_name("Retry-After"), Some("7"));
    // A number already holding a call is refused the same way (the instance is full).
    let m = refused(&mut carrier, &edge, "+18005550100", "seventh", 503);
    assert_eq!(m.header_by_name("Retry-After"), Some("7"));
    assert_eq!(metric(&edge, "sipedge_active_calls_high_water", &[]), Some(5.0));
    assert_eq!(finish(held, dir.path()), (5, 0));
    assert!(wait_metric(&edge, "sipedge_active_calls", &[], 0.0, T));
    let inv = invite_as(carrier.local(), edge.sip, "+18005550106", "+13125550199", "after");
    assert_eq!(place_call(&mut carrier, &inv, None), 200, "room again after the BYEs");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
    assert_eq!(metric(&edge, "sipedge_active_calls_high_water", &[]), Some(5.0));
}
