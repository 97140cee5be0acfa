//! Several listeners of one transport (SPEC §12): answers leave from the
//! listener the request came in on, each side's in-dialog requests from the
//! listener that side uses, new requests from the first listener of their
//! family, and outbound TCP connections from the listener's own IP. Over
//! UDP and over TLS (two listeners, each with its own certificate).

use std::net::{SocketAddr, TcpListener};

use crate::failover::{invite_as, invite_over, wait_metric, T};
use crate::support::peer::{callee_bye, in_dialog, uas_answer};
use crate::support::tls::{client_config, connect, Ca};
use crate::support::{Block, Edge, EdgeSpec, Peer};
use sipedge::sip::{build, Method, Msg};

const TOLL_FREE: &str = "+18005550100";

/// The edge with its usual UDP listener on `b.1:5060` (the first) and a
/// second one on `second`, before `rest`.
fn edge_with(b: Block, second: (&str, SocketAddr), rest: String) -> Edge {
    let (transport, addr) = second;
    let toml = format!("[[listen]]\ntransport = \"{transport}\"\naddr = \"{addr}\"\n{rest}");
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() })
}

/// carrier-a on `carrier` (over `transport`), the flow engine on `b.10:5060`.
fn peers(b: Block, carrier: SocketAddr, transport: &str) -> String {
    format!(
        "[health]\noptions_interval_ms = 60000\n\
         [[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{carrier}\"\ntransport = \"{transport}\"\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(10, 5060)
    )
}

/// Waits for the message `pred` matches; every other message but OPTIONS
/// probes must also come from `src` (probes are answered).
fn expect_from(p: &mut Peer, edge: &Edge, src: SocketAddr, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
    let end = std::time::Instant::now() + T;
    while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
        let Some((m, from)) = p.recv(left) else { break };
        if m.method_str() == "OPTIONS" {
            p.reply(&build::response(&m, 200, "OK", None, &[]), from);
            continue;
        }
        let kind = m.status().map_or_else(|| m.method_str().to_owned(), |s| s.to_string());
        assert_eq!(from, src, "{kind} reached {} from {from}, not {src}\n{}", p.local(), edge.log());
        if pred(&m) {
            return m;
        }
    }
    panic!("no {what} at {}\n{}", p.local(), edge.log());
}

/// The listeners each side must hear from: the flow engine's (the first of
/// its family) and the carrier's (the one it calls).
#[derive(Clone, Copy)]
struct Sides {
    fe: SocketAddr,
    carrier: SocketAddr,
}

/// The carrier calls its listener over `t` ("UDP" or "TLS"); the flow
/// engine answers. Returns (the INVITE the flow engine got, the 200 the
/// carrier got).
fn answered(carrier: &mut Peer, fe: &mut Peer, edge: &Edge, s: Sides, t: &str, call_id: &str) -> (Msg, Msg) {
    let (l1, l2) = (s.fe, s.carrier);
    carrier.send(&invite_over(t, carrier.local(), l2, TOLL_FREE, "+13125550199", call_id));
    let inv = expect_from(fe, edge, l1, "INVITE", |m| m.method() == Some(Method::Invite));
    let via = inv.top_via().unwrap();
    assert_eq!(format!("{}:{}", via.host, via.port.unwrap()), l1.to_string(), "a new request: the first listener");
    let rr: Vec<String> = inv.record_routes().map(str::to_owned).collect();
    assert_eq!(rr.len(), 2, "one Record-Route per listener (RFC 5658): {rr:?}\n{}", edge.log());
    assert!(rr[0].starts_with(&format!("sip:{l1};lr;")), "the flow engine's side first: {rr:?}");
    let param = if t == "TLS" { "transport=tls;" } else { "" };
    assert!(rr[1].starts_with(&format!("sip:{l2};{param}lr;")), "then the carrier's: {rr:?}");
    fe.answer(&inv, 180, l1);
    fe.answer(&inv, 200, l1);
    // 100, 180 and 200 all leave from the listener the INVITE came in on.
    let ok = expect_from(carrier, edge, l2, "a 200", |m| m.status() == Some(200));
    assert_eq!(ok.record_routes().count(), 2, "the 2xx keeps both entries");
    let local = carrier.local();
    // Its route set is the Record-Route reversed: its own listener first.
    carrier.send(&in_dialog("ACK", &ok, local, t, 1, &format!("a{call_id}")));
    let ack = expect_from(fe, edge, l1, "ACK", |m| m.method() == Some(Method::Ack));
    assert_eq!((ack.call_id(), ack.routes().count()), (call_id, 0), "both our entries popped");
    (inv, ok)
}

/// Two calls from the carrier (over `t`) to the flow engine: the carrier
/// hangs up the first, the flow engine the second; every message each side
/// gets comes from its own listener.
fn both_hang_up(carrier: &mut Peer, fe: &mut Peer, edge: &Edge, s: Sides, t: &str, tag: &str) {
    let (l1, l2) = (s.fe, s.carrier);
    // The carrier hangs up: in on its listener, out toward the flow engine
    // from the first; the answer back from the carrier's listener.
    let (_, ok) = answered(carrier, fe, edge, s, t, &format!("{tag}-caller-bye"));
    let local = carrier.local();
    carrier.send(&in_dialog("BYE", &ok, local, t, 2, &format!("{tag}bye1")));
    let bye = expect_from(fe, edge, l1, "BYE", |m| m.method() == Some(Method::Bye));
    fe.answer(&bye, 200, l1);
    let done = expect_from(carrier, edge, l2, "the BYE's 200", |m| m.status() == Some(200));
    assert_eq!(done.cseq().method, Method::Bye);

    // The flow engine hangs up: its BYE goes to the first Route (the first
    // listener) and reaches the carrier from the carrier's listener.
    let (inv, _) = answered(carrier, fe, edge, s, t, &format!("{tag}-callee-bye"));
    let fe_local = fe.local();
    fe.send_bytes(&callee_bye(&inv, fe_local, &format!("z9hG4bK{tag}bye2")));
    let bye = expect_from(carrier, edge, l2, "BYE", |m| m.method() == Some(Method::Bye));
    let via = bye.top_via().unwrap();
    let named = (via.transport, format!("{}:{}", via.host, via.port.unwrap()));
    assert_eq!(named, (t, l2.to_string()), "our Via names the carrier's listener");
    carrier.reply(&build::response(&bye, 200, "OK", None, &[]), l2);
    let done = expect_from(fe, edge, l1, "the BYE's 200", |m| m.status() == Some(200));
    assert_eq!(done.cseq().method, Method::Bye);
    assert!(wait_metric(edge, "sipedge_active_calls", &[], 0.0, T), "{}", edge.log());
}

#[test]
fn a_carrier_on_the_second_udp_listener_hears_every_answer_and_bye_from_it() {
    let b = Block::new();
    let l2 = b.addr(20, 5060);
    // Bound before the edge starts: its first probes must not meet closed ports.
    let mut carrier = Peer::udp(b.addr(2, 5060), l2);
    let mut fe = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let edge = edge_with(b, ("udp", l2), peers(b, carrier.local(), "udp"));
    both_hang_up(&mut carrier, &mut fe, &edge, Sides { fe: edge.sip, carrier: l2 }, "UDP", "two-udp");
}

#[test]
fn a_carrier_on_the_second_of_two_tls_listeners_gets_every_answer_on_its_connection() {
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("sipedge test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let (tls1, tls2) = (b.addr(20, 5061), b.addr(21, 5061));
    let listen = |addr: SocketAddr, stem: &str| {
        let ip = addr.ip().to_string();
        let cert = ca.issue(dir.path(), stem, &[ip.as_str()]);
        format!(
            "[[listen]]\ntransport = \"tls\"\naddr = \"{addr}\"\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.cert_file.display().to_string(),
            cert.key_file.display().to_string()
        )
    };
    let toml = format!(
        "{}{}[[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\ntransport = \"tls\"\nca_file = {:?}\n\
         [health]\noptions_interval_ms = 60000\n[[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        listen(tls1, "l1"),
        listen(tls2, "l2"),
        b.addr(2, 5061),
        ca_file.display().to_string(),
        b.addr(10, 5060)
    );
    let mut fe = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    let edge = Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() });
    // The handshake verifies listener 2's own certificate (its IP).
    let mut carrier = connect(b.ip(2).into(), tls2, client_config(&ca_file, None)).expect("handshake with listener 2");
    both_hang_up(&mut carrier, &mut fe, &edge, Sides { fe: edge.sip, carrier: tls2 }, "TLS", "two-tls");
    assert!(edge.log().lines().all(|l| !l.contains("tls handshake refused")), "{}", edge.log());
}

#[test]
fn an_outbound_tcp_connection_leaves_from_the_tcp_listeners_ip_and_carries_the_whole_dialog() {
    let b = Block::new();
    let carrier_addr = b.addr(2, 5060);
    let link = TcpListener::bind(carrier_addr).unwrap();
    // Another IP and port than the UDP listener: the kernel alone would
    // connect from 127.0.0.1, the address of the loopback route.
    let tcp = b.addr(30, 5070);
    let mut fe = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let edge = edge_with(b, ("tcp", tcp), peers(b, carrier_addr, "tcp"));
    let l1 = edge.sip;

    fe.send(&invite_as(fe.local(), l1, "+13125550100", TOLL_FREE, "tcp-out"));
    let (stream, from) = link.accept().unwrap();
    assert_eq!(from.ip(), tcp.ip(), "the edge connects from its TCP listener's IP\n{}", edge.log());
    let local = stream.local_addr().unwrap();
    let mut carrier = Peer::Tcp { stream, buf: Vec::new(), local };
    let (inv, _) = carrier.expect_request("INVITE", T);
    let via = inv.top_via().unwrap();
    assert_eq!((via.transport, format!("{}:{}", via.host, via.port.unwrap())), ("TCP", tcp.to_string()));
    let rr: Vec<String> = inv.record_routes().map(str::to_owned).collect();
    assert_eq!(rr.len(), 2, "TCP toward the carrier, UDP toward the flow engine: {rr:?}");
    assert!(rr[0].starts_with(&format!("sip:{tcp};transport=tcp;lr;")), "{rr:?}");
    assert!(rr[1].starts_with(&format!("sip:{l1};lr;")), "{rr:?}");
    carrier.reply(&uas_answer(&inv, 200, carrier_addr), from);
    let ok = expect_from(&mut fe, &edge, l1, "a 200", |m| m.status() == Some(200));
    let fe_local = fe.local();
    fe.send(&in_dialog("ACK", &ok, fe_local, "UDP", 1, "atcp"));
    let (ack, _) = carrier.expect_request("ACK", T);
    assert_eq!(ack.call_id(), "tcp-out");

    // The carrier hangs up over the same connection: its route set is the
    // INVITE's Record-Route in order, our TCP listener first.
    let bye = String::from_utf8(callee_bye(&inv, carrier_addr, "z9hG4bKtcpbye")).unwrap();
    carrier.send_bytes(bye.replacen("SIP/2.0/UDP", "SIP/2.0/TCP", 1).as_bytes());
    let bye = expect_from(&mut fe, &edge, l1, "BYE", |m| m.method() == Some(Method::Bye));
    fe.answer(&bye, 200, l1);
    let done = carrier.expect_status(200, T);
    assert_eq!(done.cseq().method, Method::Bye);
    assert!(wait_metric(&edge, "sipedge_active_calls", &[], 0.0, T), "{}", edge.log());
}

/// The test's own IPv6 addresses, on `lo` of a network namespace of its own.
const V6_LISTENER: &str = "fd00:16::1";
const V6_CARRIER: &str = "fd00:16::2";

#[test]
fn a_carrier_on_the_second_ipv6_listener_beside_ipv4_hears_every_answer_from_it() {
    let name = "listeners::a_carrier_on_the_second_ipv6_listener_beside_ipv4_hears_every_answer_from_it";
    if !crate::hostile::in_loopback_netns(name, &[V6_LISTENER, V6_CARRIER]) {
        return;
    }
    let b = Block::new();
    // IPv4 first (b.1:5060, the edge's usual), then ::1, then the second IPv6.
    let (v6_first, v6_second): (SocketAddr, SocketAddr) =
        ("[::1]:5060".parse().unwrap(), format!("[{V6_LISTENER}]:5060").parse().unwrap());
    let mut carrier = Peer::udp(format!("[{V6_CARRIER}]:5060").parse().unwrap(), v6_second);
    let fe_addr: SocketAddr = "[::1]:5070".parse().unwrap();
    let mut fe = Peer::udp(fe_addr, v6_first);
    let toml = format!(
        "[[listen]]\ntransport = \"udp\"\naddr = \"{v6_first}\"\n\
         [[listen]]\ntransport = \"udp\"\naddr = \"{v6_second}\"\n\
         [health]\noptions_interval_ms = 60000\n\
         [[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{fe_addr}\"\n",
        carrier.local()
    );
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    let edge = Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() });
    // A new request to an IPv6 hop: the first IPv6 listener, not the IPv4 one
    // listed before it. Answers to the carrier: the second, where it called.
    let sides = Sides { fe: v6_first, carrier: v6_second };
    let (inv, ok) = answered(&mut carrier, &mut fe, &edge, sides, "UDP", "v6-brackets");
    assert!(inv.request_uri().unwrap().starts_with("sip:+18005550100@"), "{}", inv.request_uri().unwrap());
    let contact = ok.contact_uri().unwrap();
    assert_eq!(contact, "sip:uas@[::1]:5070", "the flow engine's Contact, bracketed, as sent");
    let rr: Vec<String> = ok.record_routes().map(str::to_owned).collect();
    assert!(rr[0].starts_with("sip:[::1]:5060;lr;"), "bracketed: {rr:?}");
    assert!(rr[1].starts_with(&format!("sip:[{V6_LISTENER}]:5060;lr;")), "bracketed: {rr:?}");
    let local = carrier.local();
    carrier.send(&in_dialog("BYE", &ok, local, "UDP", 2, "v6bye"));
    let bye = expect_from(&mut fe, &edge, v6_first, "BYE", |m| m.method() == Some(Method::Bye));
    assert_eq!(bye.request_uri(), Some("sip:uas@[::1]:5070"), "the Request-URI, bracketed");
    fe.answer(&bye, 200, v6_first);
    expect_from(&mut carrier, &edge, v6_second, "the BYE's 200", |m| m.status() == Some(200));
    // Then both hang-ups, each message checked for its source.
    both_hang_up(&mut carrier, &mut fe, &edge, sides, "UDP", "two-v6");
}
