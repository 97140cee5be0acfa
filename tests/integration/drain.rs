//! Drain (SPEC §9): SIGTERM, `POST /v1/drain`; new calls refused, calls in
//! progress end normally, the edge exits 0 after the last one or at its deadline.

use std::time::Duration;

use crate::support::peer::{in_dialog, invite};
use crate::support::{standard, Block, Edge, Peer};
use sipedge::sip::{Method, Msg};

const T: Duration = Duration::from_secs(5);

/// Sets a call up carrier → flow engine and ACKs it; the caller's 200.
fn call_up(carrier: &mut Peer, flow: &mut Peer, edge: &Edge, call_id: &str, tag: &str) -> Msg {
    let inv = invite(carrier.local(), "UDP", edge.sip, "+18005550100", call_id, tag);
    carrier.send(&inv);
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 200, from);
    let ok = carrier.expect(T, "200 INVITE", |m| m.status() == Some(200) && m.call_id() == call_id).0;
    carrier.send(&in_dialog("ACK", &ok, carrier.local(), "UDP", 1, &format!("{tag}a")));
    flow.expect_request("ACK", T);
    ok
}

/// The caller hangs up; the BYE crosses the edge and is answered 200 end to end.
fn hang_up(carrier: &mut Peer, flow: &mut Peer, ok: &Msg, tag: &str) {
    carrier.send(&in_dialog("BYE", ok, carrier.local(), "UDP", 2, &format!("{tag}b")));
    let (bye, from) = flow.expect_request("BYE", T);
    flow.answer(&bye, 200, from);
    let done = carrier.expect(T, "200 BYE", |m| m.status() == Some(200) && m.cseq().method == Method::Bye).0;
    assert_eq!(done.call_id(), ok.call_id());
}

fn options(from: std::net::SocketAddr, edge: std::net::SocketAddr) -> String {
    format!(
        "OPTIONS sip:{edge} SIP/2.0\nVia: SIP/2.0/UDP {from};branch=z9hG4bKopt1\nFrom: <sip:probe@{from}>;tag=o1\nTo: <sip:{edge}>\nCall-ID: drain-opt\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n"
    )
}

#[test]
fn sigterm_refuses_new_calls_and_exits_after_the_last_bye() {
    let b = Block::new();
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let mut edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let ok1 = call_up(&mut carrier, &mut flow, &edge, "drain-1", "d1");
    let ok2 = call_up(&mut carrier, &mut flow, &edge, "drain-2", "d2");

    edge.signal("TERM");
    assert!(edge.wait_log("draining", T), "{}", edge.log());
    let inv = invite(carrier.local(), "UDP", edge.sip, "+18005550100", "drain-new", "dn");
    carrier.send(&inv);
    let refused = carrier.expect(T, "503", |m| m.status() == Some(503) && m.call_id() == "drain-new").0;
    assert!(refused.header_by_name("Retry-After").is_some(), "503 without Retry-After");
    carrier.send(&options(carrier.local(), edge.sip));
    let o = carrier.expect(T, "503 OPTIONS", |m| m.call_id() == "drain-opt").0;
    assert_eq!(o.status(), Some(503));
    assert!(o.header_by_name("Retry-After").is_some());
    let (status, body) = edge.http("GET", "/healthz", None);
    assert_eq!(status, 503);
    assert!(body.contains("\"status\":\"draining\""), "{body}");
    assert_eq!(edge.metric("sipedge_draining"), Some(1.0));

    hang_up(&mut carrier, &mut flow, &ok1, "d1");
    assert_eq!(edge.wait_exit(Duration::from_millis(500)), None, "exited with a call still up");
    let t0 = std::time::Instant::now();
    hang_up(&mut carrier, &mut flow, &ok2, "d2");
    assert_eq!(edge.wait_exit(T), Some(0), "{}", edge.log());
    assert!(t0.elapsed() < Duration::from_secs(2), "exit took {:?} after the last BYE", t0.elapsed());
}

#[test]
fn post_drain_with_a_short_deadline_ends_leftover_calls_both_ways() {
    let b = Block::new();
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let mut spec = standard(b, "udp");
    spec.edge_extra = "drain_timeout_s = 2\n".into();
    let mut edge = Edge::start(b, spec);
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    call_up(&mut carrier, &mut flow, &edge, "drain-t1", "t1");
    let (status, body) = edge.http("POST", "/v1/drain", None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"draining\":true"), "{body}");
    // Nothing ends the call until the deadline.
    assert_eq!(edge.wait_exit(Duration::from_millis(1000)), None);
    let (bye, _) = flow.expect_request("BYE", T);
    assert_eq!(bye.call_id(), "drain-t1");
    let (bye, _) = carrier.expect_request("BYE", T);
    assert_eq!(bye.call_id(), "drain-t1");
    assert_eq!(edge.wait_exit(T), Some(0), "{}", edge.log());
}

#[test]
fn a_second_sigterm_stops_at_once() {
    let b = Block::new();
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let mut edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    call_up(&mut carrier, &mut flow, &edge, "drain-s1", "s1");
    edge.signal("TERM");
    assert!(edge.wait_log("draining", T));
    edge.signal("TERM");
    let (bye, _) = flow.expect_request("BYE", Duration::from_secs(2));
    assert_eq!(bye.call_id(), "drain-s1");
    carrier.expect_request("BYE", Duration::from_secs(2));
    assert_eq!(edge.wait_exit(Duration::from_secs(4)), Some(0), "{}", edge.log());
}

/// Measurement for the issue note (not run by default): `DRAIN_CALLS` held
/// calls, SIGTERM, then every BYE; prints how long from the first BYE sent to
/// the process exiting 0.
#[test]
#[ignore]
fn measure_drain_of_held_calls() {
    let n: usize = std::env::var("DRAIN_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(500).min(2000);
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let mut edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let oks: Vec<Msg> =
        (0..n).map(|i| call_up(&mut carrier, &mut flow, &edge, &format!("held-{i}"), &format!("h{i}"))).collect();
    edge.signal("TERM");
    assert!(edge.wait_log("draining", T));
    let t0 = std::time::Instant::now();
    // In batches of 100: a burst of 1,000 datagrams overflows a loopback socket buffer.
    for (c, batch) in oks.chunks(100).enumerate() {
        for (i, ok) in batch.iter().enumerate() {
            carrier.send(&in_dialog("BYE", ok, carrier.local(), "UDP", 2, &format!("h{c}-{i}b")));
        }
        for _ in batch {
            let (bye, from) = flow.expect_request("BYE", T);
            flow.answer(&bye, 200, from);
        }
        while carrier.recv(Duration::from_millis(1)).is_some() {}
    }
    let answered = t0.elapsed();
    assert_eq!(edge.wait_exit(Duration::from_secs(10)), Some(0), "{}", edge.log());
    println!(
        "MEASURE drain of {n} held calls: all BYEs relayed and answered by {answered:?}, exit 0 at {:?}",
        t0.elapsed()
    );
}

#[test]
fn sipp_held_calls_end_normally_across_a_sigterm_and_later_ones_get_503() {
    use crate::sipp::{held_calls, load_numbers, one_carrier, wait_dialogs};
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let nums = load_numbers(30);
    let mut edge = Edge::start(b, one_carrier(b, "udp", &nums));
    // 30 calls at 10/s, each held 20 s; SIGTERM once 15 are up.
    let (_sipp, run) = held_calls(b, edge.sip, &nums, 10, 30, 20_000);
    let up = wait_dialogs(&edge, 15);
    edge.signal("TERM");
    let r = run.join().unwrap();
    assert_eq!(r.ok + r.failed, 30, "{}", r.stat);
    assert!(r.ok >= up, "{} calls were up at SIGTERM, {} ended normally:\n{}", up, r.ok, r.stat);
    assert!(r.failed >= 1, "calls offered after SIGTERM were taken:\n{}", r.stat);
    assert_eq!(edge.wait_exit(T), Some(0), "{}", edge.log());
}
