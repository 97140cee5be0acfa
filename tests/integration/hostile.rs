//! Hostile input at the real edge: no open relay (proved inside a
//! loopback-only network namespace), unknown sources refused or ignored,
//! the global new-call rate limit, and SIPVicious scans while calls flow.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::peer::{cancel, in_dialog, invite, uas_answer};

mod scan;
use crate::support::{standard, Block, Edge, Peer};

pub(crate) const T: Duration = Duration::from_secs(5);

/// Set in the copy of the test binary that runs inside the namespace.
const NETNS_ENV: &str = "SIPEDGE_TEST_NETNS";

/// Runs test `name` (its path in the test binary, e.g. `hostile::no_open_relay`)
/// again inside a fresh network namespace with only `lo` up, plus the
/// `outside` addresses on `lo` so a test can listen where a hostile message
/// points (a [`Trap`]). Nothing can leave the machine from there, and any
/// attempt to reach another address counts in [`out_no_routes`].
///
/// Returns true in the namespaced copy (run the test body), false in the
/// parent once the copy passed. Panics if the copy failed; logs a skip and
/// returns false if `unshare` is not permitted here.
pub fn in_loopback_netns(name: &str, outside: &[&str]) -> bool {
    if std::env::var_os(NETNS_ENV).is_some() {
        return true;
    }
    let mut script = String::from("ip link set lo up && ");
    for ip in outside {
        script.push_str(&format!("ip addr add {ip}/32 dev lo && "));
    }
    script.push_str("exec \"$0\" \"$@\"");
    let exe = std::env::current_exe().unwrap();
    let probe = Command::new("unshare").args(["-n", "true"]).output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            eprintln!("SKIPPED {name}: cannot create a network namespace (unshare -n: {other:?}); not run, to send nothing off-box");
            return false;
        }
    }
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .arg(&exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(NETNS_ENV, "1")
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success() && stdout.contains("1 passed"), "{name} failed inside the network namespace");
    false
}

/// Packets the kernel could not route in this namespace (IPv4 + IPv6). In a
/// loopback-only namespace, any attempt to reach another machine (a relay to
/// an outside host, a DNS lookup of example.com) counts here.
pub fn out_no_routes() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let ip: Vec<&str> = snmp.lines().filter(|l| l.starts_with("Ip:")).collect();
    let v4 = match ip.as_slice() {
        [names, values, ..] => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "OutNoRoutes")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0),
        _ => 0,
    };
    let snmp6 = std::fs::read_to_string("/proc/net/snmp6").unwrap_or_default();
    let v6: u64 = snmp6
        .lines()
        .find(|l| l.starts_with("Ip6OutNoRoutes"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    v4 + v6
}

/// UDP sockets and TCP listeners on outside addresses the hostile messages
/// name; they must never hear from the edge.
pub struct Trap {
    udp: Vec<UdpSocket>,
    tcp: Vec<TcpListener>,
}

impl Trap {
    /// Listens on each address over UDP and TCP.
    pub fn new(addrs: &[&str]) -> Trap {
        let mut t = Trap { udp: Vec::new(), tcp: Vec::new() };
        for a in addrs {
            let a: SocketAddr = a.parse().unwrap();
            let u = UdpSocket::bind(a).unwrap_or_else(|e| panic!("trap {a}: {e}"));
            u.set_nonblocking(true).unwrap();
            t.udp.push(u);
            let l = TcpListener::bind(a).unwrap();
            l.set_nonblocking(true).unwrap();
            t.tcp.push(l);
        }
        t
    }

    /// What arrived, if anything.
    pub fn heard(&self) -> Option<String> {
        let mut buf = [0u8; 65536];
        for u in &self.udp {
            if let Ok((n, from)) = u.recv_from(&mut buf) {
                return Some(format!(
                    "{} from {from}:\n{}",
                    u.local_addr().unwrap(),
                    String::from_utf8_lossy(&buf[..n])
                ));
            }
        }
        for l in &self.tcp {
            if let Ok((_, from)) = l.accept() {
                return Some(format!("a TCP connection to {} from {from}", l.local_addr().unwrap()));
            }
        }
        None
    }

    /// Panics if anything arrived.
    pub fn assert_silent(&self) {
        if let Some(what) = self.heard() {
            panic!("relayed to an outside address: {what}");
        }
    }
}

/// No header of `raw` names the software or its version.
pub fn assert_no_fingerprint(raw: &str) {
    let lower = raw.to_ascii_lowercase();
    for h in ["\nserver:", "\nuser-agent:", "\nwarning:"] {
        assert!(!lower.contains(h), "answer reveals the software ({h}):\n{raw}");
    }
    assert!(!lower.contains("sipedge") && !lower.contains(env!("CARGO_PKG_VERSION")), "answer names the edge:\n{raw}");
}

fn request(method: &str, ruri: &str, from: SocketAddr, extra: &str, call_id: &str, to_tag: &str) -> String {
    format!(
        "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{call_id}\n{extra}From: <sip:+13125550199@{from}>;tag=f{call_id}\n\
         To: <{ruri}>{to_tag}\nCall-ID: {call_id}\nCSeq: 1 {method}\nContact: <sip:c@{from}>\nMax-Forwards: 70\n\n"
    )
}

#[test]
fn no_open_relay() {
    if !in_loopback_netns("hostile::no_open_relay", &["192.0.2.1", "198.51.100.7"]) {
        return;
    }
    let b = Block::new();
    let trap = Trap::new(&["192.0.2.1:5060", "192.0.2.1:5070", "198.51.100.7:5060"]);
    // The detectors work: a send off the machine is counted, a send to a trap is caught.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    let before = out_no_routes();
    assert!(probe.send_to(b"x", "203.0.113.9:5060").is_err());
    assert_eq!(out_no_routes(), before + 1, "OutNoRoutes counts an off-box send");
    probe.send_to(b"x", "192.0.2.1:5070").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(trap.heard().is_some(), "the trap sees a datagram");
    let before = out_no_routes();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let mut flow = Peer::udp(b.addr(10, 5060), edge.sip);
    let mut stranger = Peer::udp(b.addr(99, 5060), edge.sip);
    let c = carrier.local();

    // An initial INVITE whose Request-URI and Route point outside goes to the flow engine only.
    let outside = "sip:+18005550100@192.0.2.1:5060";
    carrier.send(&request("INVITE", outside, c, "Route: <sip:192.0.2.1;lr>\nRoute: <sip:198.51.100.7;lr>\n", "r1", ""));
    carrier.expect_status(100, T);
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 200, from);
    let ok = carrier.expect_status(200, T);
    carrier.send(&in_dialog("ACK", &ok, c, "UDP", 1, "r1a"));
    flow.expect_request("ACK", T);

    // In-dialog requests follow the dialog, whatever their Request-URI and Route say.
    let bye = in_dialog("BYE", &ok, c, "UDP", 2, "r1b")
        .replacen(ok.contact_uri().unwrap(), "sip:uas@192.0.2.1:5070", 1)
        .replace("Route: <", "Route: <sip:192.0.2.1:5070;lr>\nRoute: <");
    carrier.send(&bye);
    let (bye_fwd, from) = flow.expect_request("BYE", T);
    flow.answer(&bye_fwd, 200, from);
    carrier.expect_status(200, T);

    // Outside the dialog table: no such dialog, unknown number, not ours to route.
    carrier.send(&request("BYE", "sip:x@192.0.2.1:5060", c, "Route: <sip:192.0.2.1;lr>\n", "r2", ";tag=nope"));
    carrier.expect_status(481, T);
    carrier.send(&request("INVITE", "sip:+12065559999@192.0.2.1:5060", c, "", "r3", ""));
    carrier.expect_status(404, T);
    carrier.send(&request("OPTIONS", "sip:192.0.2.1:5060", c, "Route: <sip:192.0.2.1;lr>\n", "r4", ""));
    carrier.expect_status(200, T);
    carrier.send(&request("MESSAGE", "sip:x@192.0.2.1:5060", c, "", "r5", ""));
    carrier.expect_status(405, T);
    carrier.send(
        &request("INVITE", "sip:+18005550100@192.0.2.1:5060", c, "Max-Forwards: 0\n", "r6", "")
            .replace("Max-Forwards: 70\n", ""),
    );
    carrier.expect_status(483, T);
    stranger.send(&request("INVITE", outside, stranger.local(), "Route: <sip:192.0.2.1;lr>\n", "r7", ""));
    stranger.expect_status(403, T);

    // An outbound call from the platform to a PSTN number "at" an outside host goes to the carriers.
    let out = request("INVITE", "sip:+13125550199@192.0.2.1:5060", flow.local(), "", "r8", "")
        .replace("From: <sip:+13125550199@", "From: <sip:+18005550100@");
    flow.send(&out);
    let (to_carrier, from) = carrier.expect_request("INVITE", T);
    assert_eq!(from, edge.sip);
    carrier.reply(&uas_answer(&to_carrier, 486, carrier.local()), from);
    flow.expect_status(486, T);

    // A stray 2xx whose Via and Contact point outside: the edge ACKs and hangs up toward its source.
    let stray = "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKstray\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKs2\n\
                 From: <sip:a@192.0.2.1>;tag=a\nTo: <sip:b@192.0.2.1>;tag=b\nCall-ID: stray\nCSeq: 1 INVITE\nContact: <sip:x@192.0.2.1:5070>\n\n";
    carrier.send(stray);
    let (_, from) =
        carrier.expect(T, "the ACK of the stray 2xx", |m| m.method_str() == "ACK" && m.call_id() == "stray");
    assert_eq!(from, edge.sip);

    std::thread::sleep(Duration::from_millis(1500));
    trap.assert_silent();
    let after = out_no_routes();
    assert_eq!(after - before, 0, "the edge tried to reach an address off this machine");
    println!("no open relay: 0 packets to outside addresses, 0 unroutable sends");
}

#[test]
fn unknown_source_rejected_with_403_and_no_fingerprint() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut stranger = Peer::udp(b.addr(99, 5060), edge.sip);
    let s = stranger.local();
    for (i, m) in ["INVITE", "OPTIONS", "REGISTER"].iter().enumerate() {
        stranger.send(&request(
            m,
            "sip:+18005550100@127.0.0.1",
            s,
            "User-Agent: friendly-scanner\n",
            &format!("u{i}"),
            "",
        ));
        let raw = String::from_utf8(stranger.recv_raw(T).expect("an answer")).unwrap();
        assert!(raw.starts_with("SIP/2.0 403 "), "{m}: {raw}");
        assert_no_fingerprint(&raw);
    }
}

#[test]
fn unknown_source_drop_sends_nothing() {
    let b = Block::new();
    let mut spec = standard(b, "udp");
    spec.edge_extra = "unknown_source = \"drop\"".into();
    let edge = Edge::start(b, spec);
    let mut stranger = Peer::udp(b.addr(99, 5060), edge.sip);
    let s = stranger.local();
    for (i, m) in ["INVITE", "OPTIONS", "REGISTER", "BYE"].iter().enumerate() {
        stranger.send(&request(m, "sip:100@127.0.0.1", s, "User-Agent: friendly-scanner\n", &format!("d{i}"), ""));
    }
    stranger.send_bytes(b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\n\r\n");
    stranger.send_bytes(b"garbage\r\n\r\n");
    assert_eq!(stranger.recv_raw(Duration::from_secs(1)).map(|b| String::from_utf8_lossy(&b).to_string()), None);
    // The edge is alive and still answers its carriers.
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    carrier.send(&request("OPTIONS", "sip:127.0.0.1", carrier.local(), "", "d9", ""));
    carrier.expect_status(200, T);
}

#[test]
fn new_call_rate_limit_answers_503_with_retry_after() {
    let b = Block::new();
    let mut spec = standard(b, "udp");
    spec.toml.push_str("[limits]\nnew_calls_per_second = 5\nretry_after_s = 7\n");
    let edge = Edge::start(b, spec);
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let mut flow = Peer::udp(b.addr(10, 5060), edge.sip);
    let c = carrier.local();
    let n = 20;
    let start = Instant::now();
    for i in 0..n {
        carrier.send(&invite(c, "UDP", edge.sip, "+18005550100", &format!("rl{i}"), &format!("rl{i}")));
    }
    let sending = start.elapsed();
    // Final answer per Call-ID (a 503 is retransmitted until ACKed: count calls, not datagrams).
    let mut finals: std::collections::HashMap<String, (u16, Option<String>)> = std::collections::HashMap::new();
    let end = Instant::now() + T;
    while finals.len() < n && Instant::now() < end {
        if let Some((m, _)) = carrier.recv(Duration::from_millis(100)) {
            if let Some(s) = m.status().filter(|s| *s >= 200) {
                finals.insert(m.call_id().to_string(), (s, m.header_by_name("Retry-After").map(str::to_owned)));
            }
        }
        // Forwarded calls are refused by the flow engine so nothing lingers.
        while let Some((f, from)) = flow.recv(Duration::from_millis(1)) {
            if f.method_str() == "INVITE" {
                flow.answer(&f, 486, from);
            }
        }
    }
    let limited = finals.values().filter(|(s, _)| *s == 503).count();
    let other: Vec<u16> = finals.values().map(|(s, _)| *s).filter(|s| *s != 503).collect();
    assert!(
        finals.values().filter(|(s, _)| *s == 503).all(|(_, ra)| ra.as_deref() == Some("7")),
        "503 carries Retry-After: 7"
    );
    // Sent within one second, the INVITEs touch at most two one-second
    // windows: at most 10 get through, every other one is refused with 503.
    assert!(sending < Duration::from_millis(900), "sending took {sending:?}");
    assert_eq!(limited + other.len(), n, "every INVITE got a final answer");
    assert!(limited >= n - 10, "{limited} of {n} refused (others: {other:?})");
    assert!(other.iter().all(|s| *s == 486), "{other:?}");
    println!(
        "rate limit: {limited} of {n} INVITEs sent at once refused with 503 + Retry-After, {} admitted",
        other.len()
    );
    std::thread::sleep(Duration::from_millis(1100));
    carrier.send(&invite(c, "UDP", edge.sip, "+18005550100", "rl-after", "rlafter"));
    let (f, from) = flow.expect_request("INVITE", T);
    flow.answer(&f, 486, from);
    let m =
        carrier.expect(T, "a final answer", |m| m.call_id() == "rl-after" && m.status().is_some_and(|s| s >= 200)).0;
    assert_eq!(m.status(), Some(486), "the next second admits calls again");
}

#[test]
fn cancel_from_another_peer_is_refused() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut carrier_a = Peer::udp(b.addr(2, 5060), edge.sip);
    let mut carrier_b = Peer::udp(b.addr(4, 5060), edge.sip);
    let mut flow = Peer::udp(b.addr(10, 5060), edge.sip);
    let inv = invite(carrier_a.local(), "UDP", edge.sip, "+18005550100", "victim", "victim1");
    carrier_a.send(&inv);
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 180, from);
    carrier_a.expect_status(180, T);
    // Same Via (branch and sent-by) as carrier-a's INVITE, sent by carrier-b.
    carrier_b.send(&cancel(&inv));
    carrier_b.expect_status(481, T);
    flow.expect_silence(Duration::from_millis(500));
    // The caller's own CANCEL still works.
    carrier_a.send(&cancel(&inv));
    carrier_a.expect_status(200, T);
    let (c, from) = flow.expect_request("CANCEL", T);
    flow.answer(&c, 200, from);
    flow.answer(&fwd, 487, from);
    carrier_a.expect_status(487, T);
}
