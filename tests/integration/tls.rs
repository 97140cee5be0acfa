//! SIP over TLS (SPEC §12): certificates made here with rcgen; a carrier
//! calls in over TLS and the call is handed to a UDP flow engine, so the
//! edge record-routes twice (RFC 5658) and in-dialog requests from either
//! side find their way back, the carrier's side on its TLS connection.

use std::io::Read;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::failover::{invite_over, wait_metric, T};
use crate::support::peer::{callee_bye, in_dialog};
use crate::support::tls::{carrier_edge_toml, client_config, connect, Ca};
use crate::support::{Block, Edge, EdgeSpec, Peer};
use sipedge::sip::{build, Method, Msg};

const TOLL_FREE: &str = "+18005550100";

struct Setup {
    edge: Edge,
    tls: SocketAddr,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
    ca: Ca,
}

/// An edge with a TLS listener on `b.1:5061` (extra listener keys in
/// `listen_extra`), carrier-a at `b.2` over TLS, the flow engine at `b.10` (UDP).
fn tls_edge(b: Block, listen_extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("sipedge test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let ip = b.ip(1).to_string();
    let server = ca.issue(dir.path(), "edge", &[ip.as_str()]);
    let tls = b.addr(1, 5061);
    let toml = carrier_edge_toml(b, &server, &ca_file, listen_extra, "tls_handshake_timeout_ms = 1000");
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    let edge = Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() });
    Setup { edge, tls, ca_file, _dir: dir, ca }
}

fn answered_call(carrier: &mut Peer, fe: &mut Peer, s: &Setup, call_id: &str) -> (Msg, Msg) {
    carrier.send(&invite_over("TLS", carrier.local(), s.tls, TOLL_FREE, "+13125550199", call_id));
    let (inv, from) = fe.expect_request("INVITE", T);
    let rr: Vec<String> = inv.record_routes().map(str::to_owned).collect();
    assert_eq!(rr.len(), 2, "one Record-Route per transport (RFC 5658): {rr:?}\n{}", s.edge.log());
    assert!(!rr[0].contains("transport=tls"), "the flow engine's side is UDP: {rr:?}");
    assert!(rr[1].contains(&format!("sip:{};transport=tls;lr", s.tls)), "the carrier's side is TLS: {rr:?}");
    fe.answer(&inv, 200, from);
    let ok = carrier.expect_status(200, T);
    assert_eq!(ok.record_routes().count(), 2);
    let local = carrier.local();
    carrier.send(&in_dialog("ACK", &ok, local, "TLS", 1, &format!("a{call_id}")));
    let (ack, _) = fe.expect_request("ACK", T);
    assert_eq!(ack.call_id(), call_id);
    (inv, ok)
}

#[test]
fn a_carrier_over_tls_reaches_a_udp_flow_engine_and_either_side_hangs_up() {
    let b = Block::new();
    let mut fe = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let s = tls_edge(b, "");
    let mut carrier = connect(b.ip(2).into(), s.tls, client_config(&s.ca_file, None)).expect("handshake");

    // The carrier hangs up: its BYE goes in over TLS and out over UDP.
    let (_, ok) = answered_call(&mut carrier, &mut fe, &s, "tls-caller-bye");
    let local = carrier.local();
    carrier.send(&in_dialog("BYE", &ok, local, "TLS", 2, "bye1"));
    let (bye, from) = fe.expect_request("BYE", T);
    fe.answer(&bye, 200, from);
    let done = carrier.expect_status(200, T);
    assert_eq!(done.cseq().method, Method::Bye);

    // The flow engine hangs up: its BYE comes back on the carrier's TLS connection.
    let (inv, _) = answered_call(&mut carrier, &mut fe, &s, "tls-callee-bye");
    let fe_local = fe.local();
    fe.send_bytes(&callee_bye(&inv, fe_local, "z9hG4bKtlsbye"));
    let (bye, from) = carrier.expect_request("BYE", T);
    let via = bye.top_via().unwrap();
    assert_eq!(via.transport, "TLS", "our Via says TLS");
    carrier.reply(&build::response(&bye, 200, "OK", None, &[]), from);
    let done = fe.expect_status(200, T);
    assert_eq!(done.cseq().method, Method::Bye);
    assert!(wait_metric(&s.edge, "sipedge_active_calls", &[], 0.0, T), "{}", s.edge.log());
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate_and_takes_one_from_the_ca() {
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let clients = Ca::new("carrier CA");
    let client_ca = clients.write(dir.path(), "clients.crt");
    let listen_extra = format!("client_ca_file = {:?}", client_ca.display().to_string());
    let s = tls_edge(b, &listen_extra);
    let _ = &s.ca;

    // No certificate: the handshake (or, in TLS 1.3, the first exchange) fails.
    let refused = connect(b.ip(2).into(), s.tls, client_config(&s.ca_file, None));
    if let Ok(Peer::Tls { mut stream, .. }) = refused {
        use std::io::Write;
        let wrote = stream.write_all(b"OPTIONS sip:x SIP/2.0\r\n\r\n").and_then(|_| stream.flush());
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf);
        let err = wrote.err().or(read.err()).map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("CertificateRequired"), "refused for want of a certificate, got {err:?}");
    }

    let cert = clients.issue(dir.path(), "carrier", &["carrier.example"]);
    let mut p = connect(b.ip(2).into(), s.tls, client_config(&s.ca_file, Some(&cert))).expect("handshake with a cert");
    p.send(&format!(
        "OPTIONS sip:{} SIP/2.0\nVia: SIP/2.0/TLS {};branch=z9hG4bKmtls1\nFrom: <sip:c@x>;tag=1\nTo: <sip:e@x>\n\
         Call-ID: mtls-ok\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
        s.tls,
        p.local()
    ));
    let ok = p.expect(T, "an answer", |m| m.status().is_some());
    assert_eq!(ok.0.status(), Some(200), "{}", s.edge.log());
}

#[test]
fn a_handshake_that_never_starts_is_cut_at_its_deadline() {
    let b = Block::new();
    let s = tls_edge(b, "");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::new(b.ip(3).into(), 0).into()).unwrap();
    sock.connect(&s.tls.into()).unwrap();
    let mut sock: std::net::TcpStream = sock.into();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    // Sending nothing: the edge closes at tls_handshake_timeout_ms (1 s here).
    let n = sock.read(&mut buf);
    assert!(matches!(n, Ok(0) | Err(_)), "closed, not {n:?}");
    assert!(start.elapsed() < Duration::from_secs(9), "closed by the deadline, not by our read timeout");
    assert!(
        wait_metric(&s.edge, "sipedge_tcp_limit_closes_total", &[("limit", "tls_handshake")], 1.0, T),
        "{}",
        s.edge.log()
    );
}

/// A TLS next hop on `addr` with certificate `cert` (requiring a client
/// certificate from `client_ca` if given): sends the header section of each
/// message it reads (a failed handshake sends "handshake failed").
fn tls_hop(
    addr: SocketAddr,
    cert: &crate::support::tls::Issued,
    client_ca: Option<&std::path::Path>,
) -> std::sync::mpsc::Receiver<String> {
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let cfg = crate::support::tls::server_config(cert, client_ca);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Ok((mut sock, _)) = listener.accept() {
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut text = Vec::new();
            // Each header section on the connection (bodies are not split off:
            // only the start of each message is looked at).
            loop {
                if let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = text.drain(..end + 4).collect();
                    if tx.send(String::from_utf8_lossy(&head).into_owned()).is_err() {
                        return;
                    }
                    continue;
                }
                if conn.complete_io(&mut sock).is_err() {
                    let _ = tx.send("handshake failed".to_owned());
                    break;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = conn.reader().read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    text.extend_from_slice(&buf[..n]);
                }
            }
        }
    });
    rx
}

#[test]
fn an_outbound_call_skips_a_tls_link_with_the_wrong_name_for_one_that_verifies() {
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("carrier CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let (ip2, ip3) = (b.ip(2).to_string(), b.ip(3).to_string());
    let wrong = tls_hop(b.addr(2, 5061), &ca.issue(dir.path(), "c2", &[ip2.as_str()]), None);
    let right = tls_hop(b.addr(3, 5061), &ca.issue(dir.path(), "c3", &[ip3.as_str()]), None);
    let ca = ca_file.display().to_string();
    let toml = format!(
        "[health]\noptions_interval_ms = 60000\n\
         [[carrier]]\nname = \"carrier-a\"\n\
         [[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\ntransport = \"tls\"\nserver_name = \"sip.wrong.example\"\nca_file = {ca:?}\npriority = 1\n\
         [[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\ntransport = \"tls\"\nca_file = {ca:?}\npriority = 2\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(2, 5061),
        b.addr(3, 5061),
        b.addr(10, 5060),
    );
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    let edge = Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() });
    let mut platform = Peer::udp(b.addr(10, 5070), edge.sip);
    platform.send(&crate::failover::invite_as(platform.local(), edge.sip, "+13125550100", TOLL_FREE, "tls-out"));
    // The first link's certificate is for its IP, not sip.wrong.example: refused.
    assert_eq!(wrong.recv_timeout(T).unwrap(), "handshake failed", "{}", edge.log());
    let inv = first_invite(&right, &edge);
    assert!(inv.starts_with("INVITE sip:+13125550100@"), "{inv}");
    assert!(inv.contains("SIP/2.0/TLS"), "our Via says TLS: {inv}");
    assert!(inv.contains(";transport=tls"), "{inv}");
    // The log line comes through the edge's log writer: wait for it, do not race it.
    assert!(edge.wait_log("tls connect to next hop failed", T), "{}", edge.log());
}

/// The first INVITE a hop reads (OPTIONS probes skipped).
fn first_invite(hop: &std::sync::mpsc::Receiver<String>, edge: &Edge) -> String {
    loop {
        let m = hop.recv_timeout(T).unwrap_or_else(|_| panic!("no INVITE on the link\n{}", edge.log()));
        if !m.starts_with("OPTIONS ") {
            return m;
        }
    }
}

#[test]
fn a_link_that_requires_client_certificates_takes_the_edge_that_presents_one() {
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("carrier CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let edges = Ca::new("edge client CA");
    let edges_file = edges.write(dir.path(), "edges.crt");
    let mine = edges.issue(dir.path(), "edge-client", &["edge.example"]);
    let (ip2, ip3) = (b.ip(2).to_string(), b.ip(3).to_string());
    // Both links require a certificate from the edges' CA; only the second is given one.
    let without = tls_hop(b.addr(2, 5061), &ca.issue(dir.path(), "c2", &[ip2.as_str()]), Some(&edges_file));
    let with = tls_hop(b.addr(3, 5061), &ca.issue(dir.path(), "c3", &[ip3.as_str()]), Some(&edges_file));
    let (ca, cert, key) =
        (ca_file.display().to_string(), mine.cert_file.display().to_string(), mine.key_file.display().to_string());
    let toml = format!(
        "[health]\noptions_interval_ms = 60000\n\
         [[carrier]]\nname = \"carrier-a\"\n\
         [[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\ntransport = \"tls\"\nca_file = {ca:?}\npriority = 1\n\
         [[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\ntransport = \"tls\"\nca_file = {ca:?}\npriority = 2\n\
         client_cert_file = {cert:?}\nclient_key_file = {key:?}\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(2, 5061),
        b.addr(3, 5061),
        b.addr(10, 5060),
    );
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    let edge = Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() });
    let mut platform = Peer::udp(b.addr(10, 5070), edge.sip);
    platform.send(&crate::failover::invite_as(platform.local(), edge.sip, "+13125550100", TOLL_FREE, "mtls-out"));
    assert_eq!(without.recv_timeout(T).unwrap(), "handshake failed", "no certificate, refused\n{}", edge.log());
    let inv = first_invite(&with, &edge);
    assert!(inv.starts_with("INVITE sip:+13125550100@"), "{inv}");
}

fn options(p: &mut Peer, to: SocketAddr, id: &str) -> Option<u16> {
    let local = p.local();
    p.send(&format!(
        "OPTIONS sip:{to} SIP/2.0\nVia: SIP/2.0/TLS {local};branch=z9hG4bK{id}\nFrom: <sip:c@x>;tag=1\nTo: <sip:e@x>\n\
         Call-ID: {id}\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
    ));
    p.recv(T).and_then(|(m, _)| m.status())
}

#[test]
fn a_reload_serves_the_new_certificate_to_new_connections_and_keeps_open_ones() {
    let b = Block::new();
    let s = tls_edge(b, "");
    let mut old = connect(b.ip(2).into(), s.tls, client_config(&s.ca_file, None)).expect("handshake");
    assert_eq!(options(&mut old, s.tls, "before"), Some(200), "{}", s.edge.log());

    // A broken key: the reload is refused naming the file, the old certificate stays.
    let key_file = s._dir.path().join("edge.key");
    let good_key = std::fs::read(&key_file).unwrap();
    std::fs::write(&key_file, "garbage\n").unwrap();
    let (code, body) = s.edge.http("POST", "/v1/reload", None);
    assert_ne!(code, 200, "{body}");
    assert!(body.contains("listen[1].key_file"), "{body}");
    std::fs::write(&key_file, &good_key).unwrap();

    // A certificate from another CA: new connections trust only that one.
    let ca2 = Ca::new("second CA");
    let ca2_file = ca2.write(s._dir.path(), "ca2.crt");
    let ip = b.ip(1).to_string();
    ca2.issue(s._dir.path(), "edge", &[ip.as_str()]);
    let (code, body) = s.edge.http("POST", "/v1/reload", None);
    assert_eq!(code, 200, "{body}");
    assert!(connect(b.ip(2).into(), s.tls, client_config(&s.ca_file, None)).is_err(), "old CA no longer matches");
    let mut new = connect(b.ip(2).into(), s.tls, client_config(&ca2_file, None)).expect("new certificate");
    assert_eq!(options(&mut new, s.tls, "new-conn"), Some(200));
    assert_eq!(options(&mut old, s.tls, "old-conn"), Some(200), "the open connection survived the reload");
}
