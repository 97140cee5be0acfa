//! Calls through the real binary over loopback UDP and TCP.

use std::time::Duration;

use crate::support::peer::{cancel, in_dialog, invite, wire};
use crate::support::{standard, Block, Edge, Peer};
use sipedge::sip::Method;

const T: Duration = Duration::from_secs(5);

fn full_call(transport: &str) {
    let b = Block::new();
    // The flow engine listens (UDP socket or TCP listener) before the edge
    // starts, so the edge's first health probe already finds it.
    let listener = (transport == "tcp").then(|| std::net::TcpListener::bind(b.addr(10, 5060)).unwrap());
    let mut flow = (transport == "udp").then(|| Peer::udp(b.addr(10, 5060), b.addr(1, 5060)));
    let edge = Edge::start(b, standard(b, transport));
    let mut carrier = match transport {
        "tcp" => Peer::tcp(b.ip(2).into(), edge.sip),
        _ => Peer::udp(b.addr(2, 5060), edge.sip),
    };
    let vt = carrier.via_transport();
    let inv = invite(carrier.local(), vt, edge.sip, "+18005550100", "call-1", "c1");
    carrier.send(&inv);
    carrier.expect_status(100, T);
    let mut flow = match listener {
        Some(l) => {
            l.set_nonblocking(false).unwrap();
            let (s, _) = l.accept().unwrap();
            let local = s.local_addr().unwrap();
            Peer::Tcp { stream: s, buf: Vec::new(), local }
        }
        None => flow.take().unwrap(),
    };
    let (fwd, from) = flow.expect_request("INVITE", T);
    assert_eq!(fwd.header_by_name("X-Flow-Id"), Some("flow-tf"));
    assert_eq!(fwd.header_by_name("X-Number-Kind"), Some("toll-free"));
    assert_eq!(fwd.header_by_name("X-Carrier"), Some("carrier-a"));
    assert_eq!(fwd.max_forwards(), Some(69));
    flow.answer(&fwd, 180, from);
    carrier.expect_status(180, T);
    flow.answer(&fwd, 200, from);
    let ok = carrier.expect_status(200, T);
    assert_eq!(ok.via_count(), 1);
    carrier.send(&in_dialog("ACK", &ok, carrier.local(), vt, 1, "a1"));
    let (ack, _) = flow.expect_request("ACK", T);
    assert_eq!(ack.method(), Some(Method::Ack));
    carrier.send(&in_dialog("BYE", &ok, carrier.local(), vt, 2, "b1"));
    let (bye, from) = flow.expect_request("BYE", T);
    flow.answer(&bye, 200, from);
    let done = carrier.expect_status(200, T);
    assert_eq!(done.cseq().method, Method::Bye);
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0));
}

#[test]
fn full_call_over_udp() {
    full_call("udp");
}

#[test]
fn full_call_over_tcp() {
    full_call("tcp");
}

#[test]
fn cancel_before_the_answer() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let mut flow = Peer::udp(b.addr(10, 5060), edge.sip);
    let inv = invite(carrier.local(), "UDP", edge.sip, "+18005550100", "call-c", "cc1");
    carrier.send(&inv);
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 180, from);
    carrier.expect_status(180, T);
    carrier.send(&cancel(&inv));
    let (c, from) = flow.expect_request("CANCEL", T);
    flow.answer(&c, 200, from);
    flow.answer(&fwd, 487, from);
    carrier.expect_status(487, T);
    flow.expect_request("ACK", T);
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0));
}

#[test]
fn retransmitted_invite_is_absorbed() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let mut flow = Peer::udp(b.addr(10, 5060), edge.sip);
    let inv = invite(carrier.local(), "UDP", edge.sip, "+18005550100", "call-r", "rr1");
    carrier.send(&inv);
    flow.expect_request("INVITE", T);
    carrier.send(&inv);
    carrier.send(&inv);
    // Only the edge's own retransmission timer (T1 = 500 ms) may repeat it; not our copies.
    let mut extra = 0;
    while let Some((m, _)) = flow.recv(Duration::from_millis(400)) {
        if m.method() == Some(Method::Invite) {
            extra += 1;
        }
    }
    assert_eq!(extra, 0, "retransmitted INVITEs are absorbed, not forwarded");
}

#[test]
fn refusals_404_480_484_403() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    for (i, (number, code)) in [("+19995550100", 404), ("+12065550101", 480), ("abc", 484)].iter().enumerate() {
        let inv = invite(carrier.local(), "UDP", edge.sip, number, &format!("r{i}"), &format!("r{i}"));
        carrier.send(&inv);
        let m = carrier.expect_status(*code, T);
        assert!(m.to_tag().is_some());
    }
    let mut stranger = Peer::udp(b.addr(99, 5060), edge.sip);
    let inv = invite(stranger.local(), "UDP", edge.sip, "+18005550100", "s1", "s1");
    stranger.send(&inv);
    let m = stranger.expect_status(403, T);
    assert!(m.header(sipedge::sip::HeaderName::Server).is_none(), "no software banner");
}

#[test]
fn malformed_request_gets_400_naming_the_problem() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let bad = format!(
        "INVITE sip:+18005550100@{e} SIP/2.0\nVia: SIP/2.0/UDP {c};branch=z9hG4bKbad\nFrom: <sip:a@{c}>;tag=1\nTo: <sip:b@{e}>\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
        e = edge.sip,
        c = carrier.local()
    );
    carrier.send_bytes(&wire(&bad));
    let raw = String::from_utf8(carrier.recv_raw(T).expect("an answer")).unwrap();
    let status_line = raw.lines().next().unwrap();
    assert!(status_line.starts_with("SIP/2.0 400 "), "{status_line}");
    assert!(status_line.to_ascii_lowercase().contains("call-id"), "the reason names the problem: {status_line}");
    // No readable Via: dropped and counted.
    carrier.send_bytes(b"INVITE sip:x SIP/2.0\r\nFrom: a\r\n\r\n");
    let got = carrier.recv_raw(Duration::from_millis(300));
    assert!(got.is_none(), "{:?}", got.map(|g| String::from_utf8_lossy(&g).to_string()));
    assert!(edge.metric("sipedge_parse_errors_total").unwrap_or(0.0) >= 2.0);
    // The edge still answers OPTIONS.
    let opt = format!(
        "OPTIONS sip:{e} SIP/2.0\nVia: SIP/2.0/UDP {c};branch=z9hG4bKo\nFrom: <sip:a@{c}>;tag=1\nTo: <sip:{e}>\nCall-ID: o\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n",
        e = edge.sip,
        c = carrier.local()
    );
    carrier.send(&opt);
    carrier.expect_status(200, T);
}

#[test]
fn a_hop_with_no_listener_fails_over_on_icmp_without_waiting() {
    let b = Block::new();
    let mut spec = standard(b, "udp");
    // A failover timer far longer than the test's patience: only ICMP can explain a quick failover.
    spec.toml = spec.toml.replace("failover_ms = 500", "failover_ms = 30000");
    let edge = Edge::start(b, spec);
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    // Nothing listens on the az1 flow engine (.10); az2 (.11) answers.
    let mut flow2 = Peer::udp(b.addr(11, 5060), edge.sip);
    let inv = invite(carrier.local(), "UDP", edge.sip, "+18005550100", "call-icmp", "i1");
    carrier.send(&inv);
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        flow2.expect_request("INVITE", Duration::from_secs(5))
    }));
    let (fwd, from) = got.unwrap_or_else(|_| panic!("no failover; edge log:\n{}", edge.log()));
    flow2.answer(&fwd, 200, from);
    carrier.expect_status(200, T);
    assert!(edge.metric("sipedge_failovers_total").unwrap_or(0.0) >= 1.0);
}
