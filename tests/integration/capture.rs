//! HEP3 capture of one whole call, decoded by a UDP collector in the test;
//! JSON log lines; the set-up and duration histograms on /metrics.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, SystemTime};

use crate::support::peer::{in_dialog, invite, wire};
use crate::support::{standard, Block, Edge, Peer};
use sipedge::capture::hep::{self, chunk};

const T: Duration = Duration::from_secs(5);

/// One decoded packet: (src, dst, ip proto, correlation id, payload).
struct Captured {
    src: SocketAddr,
    dst: SocketAddr,
    proto: u8,
    corr: String,
    payload: Vec<u8>,
}

fn decode(pkt: &[u8], before: u64, after: u64) -> Captured {
    let chunks = hep::decode(pkt).expect("well-formed HEP3");
    let get = |t: u16| -> &[u8] {
        let all: Vec<_> = chunks.iter().filter(|c| c.1 == t).collect();
        assert_eq!(all.len(), 1, "chunk {t} exactly once");
        all[0].2
    };
    assert!(chunks.iter().all(|c| c.0 == 0), "generic vendor on every chunk");
    assert_eq!(get(chunk::IP_FAMILY), &[2]);
    let ip = |b: &[u8]| IpAddr::from(<[u8; 4]>::try_from(b).unwrap());
    let port = |b: &[u8]| u16::from_be_bytes(b.try_into().unwrap());
    let u32_of = |b: &[u8]| u32::from_be_bytes(b.try_into().unwrap());
    let sec = u64::from(u32_of(get(chunk::TS_SEC)));
    assert!(sec >= before && sec <= after, "timestamp {sec} within the test");
    assert!(u32_of(get(chunk::TS_USEC)) < 1_000_000);
    assert_eq!(get(chunk::PROTO_TYPE), &[1], "SIP");
    assert_eq!(u32_of(get(chunk::CAPTURE_ID)), 2001);
    Captured {
        src: SocketAddr::new(ip(get(chunk::IPV4_SRC)), port(get(chunk::SRC_PORT))),
        dst: SocketAddr::new(ip(get(chunk::IPV4_DST)), port(get(chunk::DST_PORT))),
        proto: get(chunk::IP_PROTO)[0],
        corr: String::from_utf8(get(chunk::CORRELATION_ID).to_vec()).unwrap(),
        payload: get(chunk::PAYLOAD).to_vec(),
    }
}

fn start_line(p: &[u8]) -> String {
    let s = String::from_utf8_lossy(p);
    let l = s.lines().next().unwrap_or("");
    // "INVITE sip:..." → "INVITE"; "SIP/2.0 200 OK" → "200".
    match l.strip_prefix("SIP/2.0 ") {
        Some(r) => r.split(' ').next().unwrap_or("").to_string(),
        None => l.split(' ').next().unwrap_or("").to_string(),
    }
}

fn now_s() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

/// One whole call over UDP, carrier (.2) → edge → flow engine (.10), BYE from
/// the carrier; returns the INVITE text the carrier sent.
pub fn one_udp_call(edge: &Edge, flow: &mut Peer, call_id: &str) -> String {
    let mut carrier = Peer::udp(SocketAddr::new(IpAddr::V4(edge.block().ip(2)), 5060), edge.sip);
    let inv = invite(carrier.local(), "UDP", edge.sip, "+18005550100", call_id, "h1");
    carrier.send(&inv);
    carrier.expect_status(100, T);
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 180, from);
    carrier.expect_status(180, T);
    flow.answer(&fwd, 200, from);
    let ok = carrier.expect_status(200, T);
    carrier.send(&in_dialog("ACK", &ok, carrier.local(), "UDP", 1, "ha1"));
    flow.expect_request("ACK", T);
    carrier.send(&in_dialog("BYE", &ok, carrier.local(), "UDP", 2, "hb1"));
    let (bye, from) = flow.expect_request("BYE", T);
    flow.answer(&bye, 200, from);
    carrier.expect_status(200, T);
    inv
}

#[test]
fn hep3_captures_every_message_of_a_call_on_both_legs() {
    let b = Block::new();
    let collector = UdpSocket::bind(b.addr(50, 9061)).unwrap();
    collector.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut spec = standard(b, "udp");
    spec.toml.push_str(&format!("[capture]\nhep_addr = \"{}\"\nhep_id = 2001\n", b.addr(50, 9061)));
    let before = now_s();
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let edge = Edge::start(b, spec);
    let inv = one_udp_call(&edge, &mut flow, "hep-call-1");

    let after = now_s() + 1;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = collector.recv(&mut buf) {
        let c = decode(&buf[..n], before, after);
        if c.corr == "hep-call-1" {
            got.push(c);
        }
        if got.len() > 100 {
            break;
        }
    }
    let (c, e, f) = (b.addr(2, 5060), b.addr(1, 5060), b.addr(10, 5060));
    let mut want: Vec<(SocketAddr, SocketAddr, &str)> = vec![
        (c, e, "INVITE"),
        (e, c, "100"),
        (e, f, "INVITE"),
        (f, e, "180"),
        (e, c, "180"),
        (f, e, "200"),
        (e, c, "200"),
        (c, e, "ACK"),
        (e, f, "ACK"),
        (c, e, "BYE"),
        (e, f, "BYE"),
        (f, e, "200"),
        (e, c, "200"),
    ];
    let mut seen: Vec<(SocketAddr, SocketAddr, String)> =
        got.iter().map(|g| (g.src, g.dst, start_line(&g.payload))).collect();
    want.sort();
    seen.sort();
    let seen_ref: Vec<(SocketAddr, SocketAddr, &str)> = seen.iter().map(|(a, b, s)| (*a, *b, s.as_str())).collect();
    assert_eq!(seen_ref, want, "every message of the call, both legs, real addresses");
    assert!(got.iter().all(|g| g.proto == 17), "UDP");
    let first = got.iter().find(|g| g.src == c && start_line(&g.payload) == "INVITE").unwrap();
    assert_eq!(first.payload, wire(&inv), "payload exactly as on the wire");
    assert_eq!(edge.metric("sipedge_hep_dropped_total"), Some(0.0));
    // The histograms saw this call.
    assert_eq!(edge.metric("sipedge_setup_seconds_count{direction=\"inbound\"}"), Some(1.0));
    assert_eq!(edge.metric("sipedge_call_duration_seconds_count{direction=\"inbound\"}"), Some(1.0));
    let (_, text) = edge.http("GET", "/metrics", None);
    assert!(
        text.contains("sipedge_setup_seconds_bucket{direction=\"inbound\",le=\"0.001\"}"),
        "set-up buckets from 1 ms"
    );
    assert!(text.contains("sipedge_setup_seconds_bucket{direction=\"inbound\",le=\"30\"}"), "to 30 s");
    assert!(
        text.contains("sipedge_call_duration_seconds_bucket{direction=\"inbound\",le=\"14400\"}"),
        "duration to 4 h"
    );
}

#[test]
fn hep3_captures_tcp_with_protocol_6() {
    let b = Block::new();
    let collector = UdpSocket::bind(b.addr(50, 9061)).unwrap();
    collector.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut spec = standard(b, "tcp");
    spec.toml.push_str(&format!("[capture]\nhep_addr = \"{}\"\n", b.addr(50, 9061)));
    let before = now_s();
    let edge = Edge::start(b, spec);
    let mut carrier = Peer::tcp(b.ip(2).into(), edge.sip);
    let inv = invite(carrier.local(), "TCP", edge.sip, "+12065550199", "hep-tcp-1", "t1");
    carrier.send(&inv);
    let refused = carrier.expect_status(404, T);
    assert_eq!(refused.cseq().seq, 1);
    let after = now_s() + 1;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 70_000];
    while let Ok(n) = collector.recv(&mut buf) {
        let c = decode(&buf[..n], before, after);
        if c.corr == "hep-tcp-1" {
            let done = start_line(&c.payload) == "404";
            got.push(c);
            if done {
                break;
            }
        }
    }
    let lines: Vec<String> = got.iter().map(|g| start_line(&g.payload)).collect();
    assert_eq!(lines.first().map(String::as_str), Some("INVITE"), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("404"), "{lines:?}");
    assert!(got.iter().all(|g| g.proto == 6), "TCP");
    assert_eq!((got[0].src, got[0].dst), (carrier.local(), edge.sip));
    assert!(
        got[1..].iter().all(|g| (g.src, g.dst) == (edge.sip, carrier.local())),
        "answers go back on the connection"
    );
}

#[test]
fn json_log_lines_parse_and_carry_the_call_id() {
    let b = Block::new();
    let mut spec = standard(b, "udp");
    spec.toml.push_str("[log]\nformat = \"json\"\n");
    let edge = Edge::start(b, spec);
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let inv = invite(carrier.local(), "UDP", edge.sip, "+12065550199", "json-call-1", "j1");
    carrier.send(&inv);
    carrier.expect_status(404, T);
    assert!(edge.wait_log("json-call-1", T), "a line about the refused call:\n{}", edge.log());
    let log = edge.log();
    let mut about_call = 0;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some() && v.get("timestamp").is_some(), "{line}");
        if line.contains("json-call-1") {
            let id = v.pointer("/fields/call_id").or_else(|| v.pointer("/span/call_id"));
            assert_eq!(id.and_then(|x| x.as_str()), Some("json-call-1"), "{line}");
            about_call += 1;
        }
    }
    assert!(about_call >= 1);
}

#[test]
fn hep_over_tcp_streams_every_packet_of_a_call_to_the_collector() {
    use std::io::Read;
    let b = Block::new();
    let listener = std::net::TcpListener::bind(b.addr(50, 9062)).unwrap();
    let mut spec = standard(b, "udp");
    spec.toml.push_str(&format!("[capture]\nhep_addr = \"{}\"\nhep_transport = \"tcp\"\n", b.addr(50, 9062)));
    let before = now_s();
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let edge = Edge::start(b, spec);
    one_udp_call(&edge, &mut flow, "hep-stream-1");
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    // The stream is HEP3 packets back to back, each with its length at bytes 4..6.
    let mut data = Vec::new();
    let mut got = Vec::new();
    let mut chunk = vec![0u8; 65_536];
    let end = std::time::Instant::now() + T;
    while got.len() < 13 && std::time::Instant::now() < end {
        if let Ok(n) = conn.read(&mut chunk) {
            data.extend_from_slice(&chunk[..n]);
        }
        while data.len() >= 6 {
            assert_eq!(&data[..4], b"HEP3", "a packet starts where the last ended");
            let len = usize::from(u16::from_be_bytes([data[4], data[5]]));
            if data.len() < len {
                break;
            }
            let c = decode(&data[..len], before, now_s() + 1);
            data.drain(..len);
            if c.corr == "hep-stream-1" {
                got.push(start_line(&c.payload));
            }
        }
    }
    got.sort();
    let mut want: Vec<String> =
        ["INVITE", "100", "INVITE", "180", "180", "200", "200", "ACK", "ACK", "BYE", "BYE", "200", "200"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    want.sort();
    assert_eq!(got, want, "every message of the call, over one stream");
    assert_eq!(edge.metric("sipedge_hep_dropped_total"), Some(0.0));
}
