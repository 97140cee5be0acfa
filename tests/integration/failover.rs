//! Carrier and AZ failover end to end, with OPTIONS health checks (SPEC §4, §5):
//! scripted far ends (`far::Far`) or SIPp UASs on their own 127.x.y.z, the real
//! binary in between. Assertions compare counts (INVITEs reaching each hop,
//! failover counters, probes), never wall-clock times.

pub mod far;
mod load;
mod measure;

use bytes::Bytes;
use std::time::{Duration, Instant};

use crate::support::peer::{in_dialog, wire};
use crate::support::{Block, Edge, EdgeSpec, Peer};
use far::{Act, Far};
use sipedge::sip::{build, Msg};

pub const T: Duration = Duration::from_secs(5);

/// The usual test topology (like `support::standard`) with our own `[timers]`,
/// `[health]`, ... in `head`: carrier-a az1 .2 / az2 .3, carrier-b az1 .4, flow
/// engine az1 .10 / az2 .11, all UDP on 5060. Hosts in `drain` get `drain = true`.
pub fn topology(b: Block, head: &str, drain: &[u8]) -> String {
    topology_over(b, head, drain, "udp")
}

/// `topology` with every link over `transport` ("udp" or "tcp").
pub fn topology_over(b: Block, head: &str, drain: &[u8], transport: &str) -> String {
    let link = |host: u8, az: &str, table: &str| {
        format!(
            "[[{table}]]\naz = \"{az}\"\naddr = \"{}\"\ntransport = \"{transport}\"\ndrain = {}\n",
            b.addr(host, 5060),
            drain.contains(&host)
        )
    };
    format!(
        "{head}\n[[carrier]]\nname = \"carrier-a\"\n{}{}[[carrier]]\nname = \"carrier-b\"\n{}{}{}",
        link(2, "az1", "carrier.link"),
        link(3, "az2", "carrier.link"),
        link(4, "az1", "carrier.link"),
        link(10, "az1", "flow_engine"),
        link(11, "az2", "flow_engine"),
    )
}

/// The standard numbers: toll-free on carrier-a then carrier-b, a DID (cap 2) on carrier-a.
pub fn numbers() -> Vec<String> {
    vec![
        "+18005550100,toll-free,flow-tf,carrier-a;carrier-b,,ACME".into(),
        "+12065550100,did,flow-did,carrier-a,2,".into(),
    ]
}

/// Starts the edge on `b` with `topology(b, head, drain)` and the standard numbers.
pub fn start(b: Block, head: &str, drain: &[u8]) -> Edge {
    Edge::start(b, EdgeSpec { toml: topology(b, head, drain), numbers: numbers(), tcp: false, ..EdgeSpec::default() })
}

/// The value of sample `name{labels...}` (labels in any order), if present.
pub fn metric(edge: &Edge, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (_, text) = edge.http("GET", "/metrics", None);
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b'{') | Some(b' ')))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .next()
}

/// Polls `metric` until it equals `want`; false after `timeout`.
pub fn wait_metric(edge: &Edge, name: &str, labels: &[(&str, &str)], want: f64, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if metric(edge, name, labels) == Some(want) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// An INVITE from `from` to the edge for `dialed`, with `caller` as caller ID.
pub fn invite_as(
    from: std::net::SocketAddr,
    edge: std::net::SocketAddr,
    dialed: &str,
    caller: &str,
    call_id: &str,
) -> String {
    invite_over("UDP", from, edge, dialed, caller, call_id)
}

/// `invite_as` with Via transport `t` ("UDP" or "TCP").
pub fn invite_over(
    t: &str,
    from: std::net::SocketAddr,
    edge: std::net::SocketAddr,
    dialed: &str,
    caller: &str,
    call_id: &str,
) -> String {
    format!(
        "INVITE sip:{dialed}@{edge} SIP/2.0\n\
         Via: SIP/2.0/{t} {from};branch=z9hG4bK{call_id}\n\
         From: <sip:{caller}@{from}>;tag=f{call_id}\n\
         To: <sip:{dialed}@{edge}>\n\
         Call-ID: {call_id}\n\
         CSeq: 1 INVITE\n\
         Contact: <sip:caller@{from}>\n\
         Max-Forwards: 70\n\
         Content-Type: application/sdp\n\n\
         v=0\n"
    )
}

/// Places one call from `peer` and returns the final status: a 200 is ACKed
/// and hung up (BYE must get 200), any other final is ACKed. Provisionals are
/// collected into `seen` when given.
pub fn place_call(peer: &mut Peer, invite: &str, seen: Option<&mut Vec<u16>>) -> u16 {
    peer.send(invite);
    let inv = Msg::parse(Bytes::from(wire(invite))).unwrap();
    let mut codes = Vec::new();
    let fin = loop {
        let (m, _) =
            peer.expect(T + T, "an answer to the INVITE", |m| m.status().is_some() && m.call_id() == inv.call_id());
        let code = m.status().unwrap();
        codes.push(code);
        if code >= 200 {
            break m;
        }
    };
    let code = fin.status().unwrap();
    if code == 200 {
        let local = peer.local();
        peer.send(&in_dialog("ACK", &fin, local, "UDP", 1, &format!("a{}", inv.call_id())));
        peer.send(&in_dialog("BYE", &fin, local, "UDP", 2, &format!("b{}", inv.call_id())));
        let call_id = inv.call_id().to_string();
        peer.expect(T, "200 to our BYE", |m| {
            m.status() == Some(200) && m.cseq().method == sipedge::sip::Method::Bye && m.call_id() == call_id
        });
    } else {
        peer.send_bytes(&build::ack_for_non2xx(&inv, &fin));
    }
    if let Some(s) = seen {
        *s = codes;
    }
    code
}

/// SIPp's final (successful, failed) call counts from its stdout.
pub fn sipp_counts(text: &str) -> (u64, u64) {
    let get = |name: &str| -> u64 {
        text.lines()
            .rfind(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("Successful call"), get("Failed call"))
}

const HEALTHY: &str =
    "[timers]\nfailover_ms = 300\n[health]\noptions_interval_ms = 200\ndown_after = 2\nup_after = 3\n";

fn outbound(peer: &mut Peer, edge: &Edge, caller: &str, n: usize, tag: &str) -> Vec<u16> {
    (0..n)
        .map(|i| {
            let inv = invite_as(peer.local(), edge.sip, "+13125550000", caller, &format!("{tag}-{i}"));
            place_call(peer, &inv, None)
        })
        .collect()
}

/// Toll-free outbound: A-az1 503, A-az2 silent, B-az1 answers. Every call completes
/// on B; once A's links fail their OPTIONS they are down, and calls go straight to B.
#[test]
fn toll_free_fails_over_to_the_next_carrier_and_health_checks_skip_the_dead_one() {
    let b = Block::new();
    let edge = start(b, HEALTHY, &[]);
    let a1 = Far::start(b.addr(2, 5060), Act::Refuse(503));
    let a2 = Far::start(b.addr(3, 5060), Act::Silent);
    let b1 = Far::start(b.addr(4, 5060), Act::Answer);
    let mut fe = Peer::udp(b.addr(10, 5070), edge.sip);
    let fo = |az| metric(&edge, "sipedge_failovers_total", &[("carrier", "carrier-a"), ("az", az)]).unwrap_or(0.0);

    // Phase 1: A's links answer their probes, so every call tries them first.
    assert_eq!(outbound(&mut fe, &edge, "+18005550100", 4, "up"), vec![200; 4]);
    assert_eq!((a1.invites(), a2.invites(), b1.invites()), (4, 4, 4), "A-az1, A-az2, then B-az1 for each call");
    assert_eq!((fo("az1"), fo("az2")), (4.0, 4.0));
    let seen = b1.seen();
    let first = seen.first().unwrap();
    assert!(first.header(sipedge::sip::HeaderName::From).unwrap().contains("+18005550100"), "caller ID kept");

    // Phase 2: A stops answering OPTIONS: down after `down_after` failed probes each.
    a1.answer_options(false);
    a2.answer_options(false);
    for az in ["az1", "az2"] {
        let labels = [("carrier", "carrier-a"), ("az", az)];
        assert!(wait_metric(&edge, "sipedge_link_up", &labels, 0.0, T), "carrier-a {az} marked down:\n{}", edge.log());
    }
    assert!(
        a1.probes().1 >= 2 && a2.probes().1 >= 2,
        "down only after down_after (2) failed probes: {:?} {:?}",
        a1.probes(),
        a2.probes()
    );
    assert_eq!(metric(&edge, "sipedge_link_up", &[("carrier", "carrier-b"), ("az", "az1")]), Some(1.0));
    // Each change is logged, once.
    let changes = |what: &str, host: u8| {
        let hop = b.addr(host, 5060).to_string();
        edge.log().lines().filter(|l| l.contains(what) && l.contains(&hop)).count()
    };
    assert_eq!((changes("next hop down", 2), changes("next hop down", 3)), (1, 1), "{}", edge.log());

    let before = (a1.invites(), a2.invites(), fo("az1"), fo("az2"));
    assert_eq!(outbound(&mut fe, &edge, "+18005550100", 6, "down"), vec![200; 6]);
    assert_eq!(
        (a1.invites(), a2.invites(), fo("az1"), fo("az2")),
        before,
        "no INVITE reaches a down link, no failover wait"
    );
    assert_eq!(b1.invites(), 10);

    // Phase 3: A-az1 answers probes again: up after `up_after` (3) answered probes, logged.
    let answered = a1.probes().0;
    a1.answer_options(true);
    let labels = [("carrier", "carrier-a"), ("az", "az1")];
    assert!(wait_metric(&edge, "sipedge_link_up", &labels, 1.0, T), "carrier-a az1 back up");
    assert!(a1.probes().0 - answered >= 3, "up only after up_after (3) answered probes: {}", a1.probes().0 - answered);
    assert!(edge.wait_log("next hop up", T));
    assert_eq!((changes("next hop up", 2), changes("next hop up", 3)), (1, 0), "{}", edge.log());
    // It is tried again (and fails over again on its 503).
    assert_eq!(outbound(&mut fe, &edge, "+18005550100", 1, "again"), vec![200]);
    assert_eq!(a1.invites(), 5);
    assert_eq!(a2.invites(), 4, "A-az2 is still down");
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
}

/// A DID fails over across its one carrier's AZ links, never to another carrier;
/// with both links gone it gets 503.
#[test]
fn did_fails_over_within_its_carrier_only() {
    let b = Block::new();
    // Probes every minute: the first probe of A-az1 fails, but one failure is not `down_after`.
    let edge = start(b, "[timers]\nfailover_ms = 300\n[health]\noptions_interval_ms = 60000\n", &[]);
    let a2 = Far::start(b.addr(3, 5060), Act::Answer);
    let b1 = Far::start(b.addr(4, 5060), Act::Answer);
    let mut fe = Peer::udp(b.addr(10, 5070), edge.sip);
    // A-az1 (.2) has no listener at all.
    assert_eq!(outbound(&mut fe, &edge, "+12065550100", 2, "did"), vec![200; 2]);
    assert_eq!(a2.invites(), 2);
    assert_eq!(metric(&edge, "sipedge_failovers_total", &[("carrier", "carrier-a"), ("az", "az1")]), Some(2.0));
    drop(a2);
    // Both of carrier-a's links gone: 503, and carrier-b never sees the call.
    assert_eq!(outbound(&mut fe, &edge, "+12065550100", 1, "none"), vec![503]);
    assert_eq!(b1.invites(), 0, "a DID is bound to its carrier");
    // The toll-free number may use carrier-b.
    assert_eq!(outbound(&mut fe, &edge, "+18005550100", 1, "tf"), vec![200]);
    assert_eq!(b1.invites(), 1);
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
}

/// Both of a DID's links marked down by the health checks: 503 at once, no INVITE anywhere.
#[test]
fn did_with_both_links_down_gets_503_without_trying() {
    let b = Block::new();
    let edge = start(b, HEALTHY, &[]);
    let a1 = Far::start(b.addr(2, 5060), Act::Answer);
    let a2 = Far::start(b.addr(3, 5060), Act::Answer);
    let b1 = Far::start(b.addr(4, 5060), Act::Answer);
    a1.answer_options(false);
    a2.answer_options(false);
    for az in ["az1", "az2"] {
        assert!(wait_metric(&edge, "sipedge_link_up", &[("carrier", "carrier-a"), ("az", az)], 0.0, T));
    }
    let mut fe = Peer::udp(b.addr(10, 5070), edge.sip);
    assert_eq!(outbound(&mut fe, &edge, "+12065550100", 3, "dn"), vec![503; 3]);
    assert_eq!((a1.invites(), a2.invites(), b1.invites()), (0, 0, 0));
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
}

/// Inbound: the flow engine's az1 endpoint is down; the call lands in az2 with its headers.
#[test]
fn inbound_handoff_skips_a_down_flow_engine_endpoint() {
    let b = Block::new();
    let edge = start(b, HEALTHY, &[]);
    let f1 = Far::start(b.addr(10, 5060), Act::Answer);
    let f2 = Far::start(b.addr(11, 5060), Act::Answer);
    f1.answer_options(false);
    assert!(wait_metric(&edge, "sipedge_link_up", &[("carrier", "flow-engine"), ("az", "az1")], 0.0, T));
    // The edge probes from its start, before f2 binds: the first probe's ICMP
    // error may have marked az2 down, so wait for f2's answers to bring it up.
    assert!(wait_metric(&edge, "sipedge_link_up", &[("carrier", "flow-engine"), ("az", "az2")], 1.0, T));
    let mut carrier = Peer::udp(b.addr(2, 5070), edge.sip);
    let inv = invite_as(carrier.local(), edge.sip, "+18005550100", "+13125550199", "in-1");
    assert_eq!(place_call(&mut carrier, &inv, None), 200);
    assert_eq!((f1.invites(), f2.invites()), (0, 1));
    let fwd = f2.seen().pop().unwrap();
    assert_eq!(fwd.header_by_name("X-Flow-Id"), Some("flow-tf"));
    assert_eq!(fwd.header_by_name("X-Number-Kind"), Some("toll-free"));
    assert_eq!(fwd.header_by_name("X-Carrier"), Some("carrier-a"));
    assert_eq!(metric(&edge, "sipedge_failovers_total", &[("carrier", "flow-engine"), ("az", "az1")]), None);
}

/// A 486 from a hop is the callee's answer: relayed, no failover. So is a 503 after a 180.
#[test]
fn busy_and_failure_after_ringing_are_relayed_not_failed_over() {
    let b = Block::new();
    let edge = start(b, "[timers]\nfailover_ms = 300\n", &[]);
    let f1 = Far::with(b.addr(10, 5060), |m| {
        if m.call_id().starts_with("busy") {
            Act::Refuse(486)
        } else {
            Act::RingThenRefuse(503)
        }
    });
    let f2 = Far::start(b.addr(11, 5060), Act::Answer);
    let mut carrier = Peer::udp(b.addr(2, 5070), edge.sip);
    let inv = invite_as(carrier.local(), edge.sip, "+18005550100", "+13125550199", "busy-1");
    assert_eq!(place_call(&mut carrier, &inv, None), 486);
    let inv = invite_as(carrier.local(), edge.sip, "+18005550100", "+13125550199", "ring-1");
    let mut codes = Vec::new();
    assert_eq!(place_call(&mut carrier, &inv, Some(&mut codes)), 503);
    assert!(codes.contains(&180), "{codes:?}");
    assert_eq!((f1.invites(), f2.invites()), (2, 0), "az2 never tried");
    assert_eq!(metric(&edge, "sipedge_failovers_total", &[("carrier", "flow-engine")]), None);
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
}

/// The same with SIPp UASs (tools/sipp/uas_486.xml, uas_180_503.xml) as the az1 endpoint.
#[test]
fn sipp_uas_486_and_180_503_are_relayed() {
    let b = Block::new();
    let edge = start(b, "[timers]\nfailover_ms = 300\n", &[]);
    let dir = tempfile::tempdir().unwrap();
    let f2 = Far::start(b.addr(11, 5060), Act::Answer);
    let mut carrier = Peer::udp(b.addr(2, 5070), edge.sip);
    for (scen, code) in [("uas_486.xml", 486), ("uas_180_503.xml", 503)] {
        let _uas = crate::sipp::uas(b.ip(10), scen, "u1", dir.path());
        let inv = invite_as(carrier.local(), edge.sip, "+18005550100", "+13125550199", &format!("sipp-{code}"));
        let mut codes = Vec::new();
        assert_eq!(place_call(&mut carrier, &inv, Some(&mut codes)), code, "{scen}: {codes:?}\n{}", edge.log());
        if code == 503 {
            assert!(codes.contains(&180), "{codes:?}");
        }
    }
    assert_eq!(f2.invites(), 0);
}

/// `drain = true` by reload takes a link out of rotation for new calls; undrained, it is back.
#[test]
fn drain_by_reload_takes_a_link_out_of_rotation() {
    let b = Block::new();
    let head = "[timers]\nfailover_ms = 300\n[health]\noptions_interval_ms = 200\n";
    let edge = start(b, head, &[]);
    let f1 = Far::start(b.addr(10, 5060), Act::Answer);
    let f2 = Far::start(b.addr(11, 5060), Act::Answer);
    let mut carrier = Peer::udp(b.addr(2, 5070), edge.sip);
    let call = |carrier: &mut Peer, id: &str| {
        let inv = invite_as(carrier.local(), edge.sip, "+18005550100", "+13125550199", id);
        place_call(carrier, &inv, None)
    };
    assert_eq!(call(&mut carrier, "d-0"), 200);
    assert_eq!((f1.invites(), f2.invites()), (1, 0), "own AZ first");

    let reload = |drain: &[u8], n: usize| {
        let text = std::fs::read_to_string(&edge.config_path).unwrap();
        let keep = text.split("\n[[carrier]]").next().unwrap().to_string();
        let keep = keep.split("[timers]").next().unwrap().to_string();
        std::fs::write(&edge.config_path, format!("{keep}{}", topology(b, head, drain))).unwrap();
        edge.signal("HUP");
        let end = Instant::now() + T;
        while edge.log().matches("SIGHUP: config reloaded").count() < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(edge.log().matches("SIGHUP: config reloaded").count() >= n, "{}", edge.log());
    };
    reload(&[10], 1);
    for i in 0..3 {
        assert_eq!(call(&mut carrier, &format!("d-{}", i + 1)), 200);
    }
    assert_eq!((f1.invites(), f2.invites()), (1, 3), "drained az1 gets no new calls");
    reload(&[], 2);
    assert_eq!(call(&mut carrier, "d-9"), 200);
    assert_eq!((f1.invites(), f2.invites()), (2, 3));
}

fn wait_for(what: impl Fn() -> bool, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if what() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    what()
}

/// A hop that answers only after the edge gave up on it (`failover_ms`) and moved on:
/// its late 180 gets a CANCEL (RFC 3261 §9.1: a branch given up before any
/// provisional is cancelled when one arrives), its late 200 an ACK and a BYE. The
/// call completes on the next hop either way, and no ringing is left behind.
#[test]
fn a_hop_answering_after_failover_is_cancelled_or_hung_up() {
    let b = Block::new();
    let edge = start(b, "[timers]\nfailover_ms = 300\n[health]\noptions_interval_ms = 60000\n", &[]);
    let f1 = Far::with(b.addr(10, 5060), |m| {
        if m.call_id().starts_with("ring") {
            Act::LateRing(700)
        } else {
            Act::LateAnswer(700)
        }
    });
    let f2 = Far::start(b.addr(11, 5060), Act::Answer);
    let mut carrier = Peer::udp(b.addr(2, 5070), edge.sip);
    let inv = invite_as(carrier.local(), edge.sip, "+18005550100", "+13125550199", "ring-1");
    assert_eq!(place_call(&mut carrier, &inv, None), 200);
    assert_eq!((f1.invites(), f2.invites()), (1, 1));
    assert!(wait_for(|| f1.byes_and_cancels().2 == 1, T), "the late 180 was never cancelled: the far end rings on");
    let inv = invite_as(carrier.local(), edge.sip, "+18005550100", "+13125550199", "answer-1");
    assert_eq!(place_call(&mut carrier, &inv, None), 200);
    assert!(wait_for(|| f1.byes_and_cancels().0 == 1, T), "the late 200 was never hung up");
    assert_eq!(f2.byes_and_cancels().0, 2, "the calls themselves were hung up on az2");
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
    assert_eq!(metric(&edge, "sipedge_active_dialogs", &[]), Some(0.0));
}

/// A DID over TCP: carrier-a's az1 link refuses connections. That is a transport
/// error, so the call fails over at once, not after `failover_ms` (20 s here: the
/// call must complete well within `place_call`'s 10 s).
#[test]
fn tcp_connection_refused_fails_over_at_once() {
    let b = Block::new();
    let head = "[timers]\nfailover_ms = 20000\n[health]\noptions_interval_ms = 60000\n";
    let spec = EdgeSpec { toml: topology_over(b, head, &[], "tcp"), numbers: numbers(), ..EdgeSpec::default() };
    let listener = std::net::TcpListener::bind(b.addr(3, 5060)).unwrap();
    let edge = Edge::start(b, spec);
    let callee = tcp_callee(listener, true);
    let mut fe = Peer::udp(b.addr(10, 5070), edge.sip);
    let sip = edge.sip;
    let inv = invite_as(fe.local(), sip, "+13125550000", "+12065550100", "tcp-1");
    assert_eq!(place_call(&mut fe, &inv, None), 200, "{}", edge.log());
    callee.join().unwrap();
    assert_eq!(metric(&edge, "sipedge_failovers_total", &[("carrier", "carrier-a"), ("az", "az1")]), Some(1.0));
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
}

/// A TCP UAS on `addr` on its own thread: answers INVITE 180 + 200 and, when
/// `until_bye`, serves until it has answered a BYE; otherwise it closes everything
/// (a crash) right after the ACK.
///
/// Bind `listener` before starting the edge: a health probe connecting before it
/// exists is refused, and an INVITE queued behind that attempt is (rightly) lost.
fn tcp_callee(listener: std::net::TcpListener, until_bye: bool) -> std::thread::JoinHandle<()> {
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // The health probe may connect first: serve every connection.
        let mut conns = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let end = Instant::now() + T + T;
        loop {
            assert!(Instant::now() < end, "TCP callee on {addr}: call not completed");
            if let Ok((s, _)) = listener.accept() {
                s.set_nonblocking(false).unwrap();
                let local = s.local_addr().unwrap();
                conns.push(Peer::Tcp { stream: s, buf: Vec::new(), local });
            }
            for p in conns.iter_mut() {
                if let Some((m, from)) = p.recv(Duration::from_millis(20)) {
                    match m.method_str() {
                        "INVITE" => {
                            p.answer(&m, 180, from);
                            p.answer(&m, 200, from);
                        }
                        "BYE" => {
                            p.answer(&m, 200, from);
                            return;
                        }
                        "ACK" if !until_bye => return,
                        "ACK" => {}
                        _ => p.reply(&build::response(&m, 200, "OK", None, &[]), from),
                    }
                }
            }
        }
    })
}

/// A call up over TCP whose callee then dies: the caller's BYE cannot be delivered
/// (connection refused). RFC 3261 §16.9: a transport error counts as a 503, so the
/// caller gets its answer at once rather than a 408 after 64·T1 (32 s here). The
/// slot was freed at the BYE either way.
#[test]
fn bye_to_a_dead_tcp_hop_gets_503_at_once() {
    let b = Block::new();
    let head = "[health]\noptions_interval_ms = 60000\n";
    let spec = EdgeSpec { toml: topology_over(b, head, &[], "tcp"), numbers: numbers(), ..EdgeSpec::default() };
    let listener = std::net::TcpListener::bind(b.addr(2, 5060)).unwrap();
    let edge = Edge::start(b, spec);
    let callee = tcp_callee(listener, false);
    let mut fe = Peer::udp(b.addr(10, 5070), edge.sip);
    let inv = invite_as(fe.local(), edge.sip, "+13125550000", "+12065550100", "dead-1");
    fe.send(&inv);
    let ok = fe.expect_status(200, T);
    let local = fe.local();
    fe.send(&in_dialog("ACK", &ok, local, "UDP", 1, "adead"));
    callee.join().unwrap();
    assert!(wait_metric(&edge, "sipedge_tcp_connections", &[], 0.0, T), "the edge saw the connection close");
    fe.send(&in_dialog("BYE", &ok, local, "UDP", 2, "bdead"));
    let (m, _) = fe.expect(T, "an answer to the BYE", |m| {
        m.cseq().method == sipedge::sip::Method::Bye && m.status().is_some_and(|s| s >= 200)
    });
    assert_eq!(m.status(), Some(503), "{}", edge.log());
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0));
}
