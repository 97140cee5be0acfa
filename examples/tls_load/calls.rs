//! The load of `examples/tls_load`: certificates (rcgen), the edge config
//! for them, a carrier UAC over TLS or TCP, a UDP flow-engine UAS, and a
//! connect-handshake-OPTIONS-close loop. Kept apart from main.rs so that
//! tests/integration/tls_load.rs drives a few calls through the same code.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sipedge::sip::framing::{next_frame, Frame};
use sipedge::sip::{build, HeaderName, Method, Msg};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// The first number of the seed; calls dial BASE .. BASE + numbers - 1.
pub const BASE: u64 = 18005550000;

/// Where everything listens. The edge's UDP and TCP listeners share `edge_ip:5060`.
#[derive(Clone, Debug)]
pub struct Net {
    /// The edge.
    pub edge_ip: Ipv4Addr,
    /// The edge's TLS listener port (its TCP one is 5060).
    pub tls_port: u16,
    /// The flow engine (UAS), UDP.
    pub uas: SocketAddr,
    /// Carrier sources: connections are spread over these IPs.
    pub uac_ips: Vec<Ipv4Addr>,
    /// The CIDR covering `uac_ips` (the carrier's `sources`).
    pub uac_cidr: String,
}

/// TLS or plain TCP from the carrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// TLS (rustls, full handshakes: client resumption off).
    Tls,
    /// Plain TCP.
    Tcp,
}

impl Wire {
    /// "TLS" / "TCP" as in Via.
    pub fn via(self) -> &'static str {
        match self {
            Wire::Tls => "TLS",
            Wire::Tcp => "TCP",
        }
    }
}

/// The PEM files of one run.
pub struct Certs {
    /// The test CA (the client trusts it).
    pub ca_file: PathBuf,
    /// The edge's leaf (IP SAN = edge_ip).
    pub cert_file: PathBuf,
    /// Its key (ECDSA P-256, rcgen's default).
    pub key_file: PathBuf,
}

/// A CA and an edge certificate for `edge_ip`, written under `dir`.
pub fn make_certs(dir: &Path, edge_ip: Ipv4Addr) -> Result<Certs, String> {
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, "tls_load CA");
    let ca = p.self_signed(&ca_key).map_err(e)?;
    let key = rcgen::KeyPair::generate().map_err(e)?;
    let leaf = rcgen::CertificateParams::new(vec![edge_ip.to_string()]).map_err(e)?;
    let cert = leaf.signed_by(&key, &ca, &ca_key).map_err(e)?;
    let certs = Certs { ca_file: dir.join("ca.crt"), cert_file: dir.join("edge.crt"), key_file: dir.join("edge.key") };
    let w = |p: &Path, s: String| std::fs::write(p, s).map_err(|e| format!("{}: {e}", p.display()));
    w(&certs.ca_file, ca.pem())?;
    w(&certs.cert_file, cert.pem())?;
    w(&certs.key_file, key.serialize_pem())?;
    Ok(certs)
}

/// The seed rows (no header): one toll-free number per flow, carrier-a.
pub fn seed_rows(numbers: u64) -> Vec<String> {
    (0..numbers).map(|i| format!("+{},toll-free,flow-{i:06},carrier-a,,", BASE + i)).collect()
}

/// The config after `[edge]`, the UDP/TCP listeners on `edge_ip:5060`,
/// `[admin]` and `[numbers]`: the TLS listener, limits off, one carrier whose
/// calls come from `uac_cidr`, and the UDP flow engine.
pub fn edge_toml(net: &Net, certs: &Certs) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    format!(
        "[[listen]]\ntransport = \"tls\"\naddr = \"{edge}:{tls}\"\ncert_file = {cert}\nkey_file = {key}\n\
         [limits]\nmax_concurrent_calls = 2000000\ntoll_free_max_concurrent = 0\n\
         [flood]\nenabled = false\n\
         [health]\noptions_interval_ms = 60000\n\
         [[carrier]]\nname = \"carrier-a\"\nsources = [\"{cidr}\"]\n\
         [[carrier.link]]\naz = \"az1\"\naddr = \"{uac0}:5061\"\ntransport = \"tls\"\nca_file = {ca}\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{uas}\"\n",
        edge = net.edge_ip,
        tls = net.tls_port,
        cert = q(&certs.cert_file),
        key = q(&certs.key_file),
        cidr = net.uac_cidr,
        uac0 = net.uac_ips.first().copied().unwrap_or(Ipv4Addr::LOCALHOST),
        ca = q(&certs.ca_file),
        uas = net.uas,
    )
}

/// Client settings trusting `ca_file`, with session resumption off so that
/// every handshake is a full one. rustls 0.23.48's ring provider lists
/// secp384r1 first, so a rustls client sends a P-384 key share and the edge
/// (which follows the client's order) computes P-384; `x25519` offers X25519
/// first, as OpenSSL clients (Kamailio) do.
pub fn client_config(ca_file: &Path, x25519: bool) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))? {
        roots.add(c.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    // The edge's provider (src/transport/tls.rs), so both ends pick the same key exchange.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    if x25519 {
        use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
        provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    }
    let provider = Arc::new(provider);
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// Counters shared by the UACs (and the handshake loop).
#[derive(Default)]
pub struct Tally {
    /// Calls (or handshakes) started.
    pub offered: AtomicU64,
    /// INVITE → 200 → ACK → BYE → 200 done (or handshake + OPTIONS 200).
    pub completed: AtomicU64,
    /// A final ≥ 300, a lost connection, or no answer in time.
    pub failed: AtomicU64,
    /// Sum of set-up (or handshake) times, µs, over the completed.
    pub setup_us: AtomicU64,
    /// How long offering took, µs (handshakes: behind the clock when the driver is the limit).
    pub offering_us: AtomicU64,
}

impl Tally {
    fn add_done(&self, since: Instant) {
        self.completed.fetch_add(1, Ordering::Relaxed);
        self.setup_us.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// What a test or a run offers.
#[derive(Clone, Copy, Debug)]
pub struct Offer {
    /// Calls (handshakes) per second in all.
    pub rate: f64,
    /// How many in all.
    pub total: u64,
    /// Persistent connections the calls are spread over (calls mode).
    pub conns: usize,
    /// Numbers in the seed.
    pub numbers: u64,
    /// Time each call (handshake) is given after the last is offered.
    pub grace: Duration,
}

/// A stream to the edge: TLS or plain TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connects from `ip` to the edge over `wire` (TLS: handshake done).
pub async fn connect(
    ip: Ipv4Addr,
    net: &Net,
    wire: Wire,
    tls: &Arc<rustls::ClientConfig>,
) -> std::io::Result<(Box<dyn Stream>, SocketAddr)> {
    let port = if wire == Wire::Tls { net.tls_port } else { 5060 };
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(ip.into(), 0))?;
    let tcp: TcpStream = sock.connect(SocketAddr::new(net.edge_ip.into(), port)).await?;
    tcp.set_nodelay(true)?;
    let local = tcp.local_addr()?;
    match wire {
        Wire::Tcp => Ok((Box::new(tcp), local)),
        Wire::Tls => {
            let name = ServerName::IpAddress(std::net::IpAddr::V4(net.edge_ip).into());
            let s = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await?;
            Ok((Box::new(s), local))
        }
    }
}

/// Reads the next whole SIP message from `s` into `buf`; None when the stream ends or breaks.
async fn read_msg(s: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> Option<Msg> {
    loop {
        match next_frame(buf, 1 << 16) {
            Frame::Complete(n) => {
                let b: Vec<u8> = buf.drain(..n).collect();
                return Msg::parse(Bytes::from(b)).ok();
            }
            Frame::KeepAlive(n) => {
                buf.drain(..n);
                continue;
            }
            Frame::Invalid(_) => return None,
            Frame::Incomplete => {}
        }
        let mut tmp = [0u8; 16384];
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(tmp.get(..n)?),
        }
    }
}

fn invite(wire: Wire, local: SocketAddr, net: &Net, number: u64, call_id: &str) -> String {
    let port = if wire == Wire::Tls { net.tls_port } else { 5060 };
    let edge = SocketAddr::new(net.edge_ip.into(), port);
    let body = "v=0\r\n";
    format!(
        "INVITE sip:+{number}@{edge} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{call_id}\r\n\
         From: <sip:+13125550199@{local}>;tag=f{call_id}\r\nTo: <sip:+{number}@{edge}>\r\nCall-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\nContact: <sip:caller@{local}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        t = wire.via(),
    )
}

/// ACK or BYE after the 2xx `ok`: to its Contact, through its Record-Route reversed (RFC 3261 §12.1.2).
fn in_dialog(method: &str, ok: &Msg, local: SocketAddr, wire: Wire, cseq: u32, branch: &str) -> Option<String> {
    let mut routes: Vec<String> = ok.record_routes().map(|r| format!("Route: <{r}>\r\n")).collect();
    routes.reverse();
    Some(format!(
        "{method} {} SIP/2.0\r\nVia: SIP/2.0/{t} {local};branch=z9hG4bK{branch}\r\n{}From: {}\r\nTo: {}\r\n\
         Call-ID: {}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        ok.contact_uri()?,
        routes.concat(),
        ok.header(HeaderName::From)?,
        ok.header(HeaderName::To)?,
        ok.call_id(),
        t = wire.via(),
    ))
}

/// One carrier connection placing `total` calls at `rate` per second: INVITE,
/// then ACK and BYE on the 200, done on the BYE's 200. Requests from the edge
/// (OPTIONS, a BYE) get a 200. Calls still open `grace` after the last INVITE fail.
#[allow(clippy::too_many_arguments)]
pub async fn uac(
    stream: Box<dyn Stream>,
    local: SocketAddr,
    net: Arc<Net>,
    wire: Wire,
    conn: usize,
    rate: f64,
    total: u64,
    offer: Offer,
    tally: Arc<Tally>,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    // Writer: INVITEs on the clock, in-dialog requests as the reader asks for them.
    let started: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let open = started.clone();
    let t = tally.clone();
    let n = net.clone();
    let writer = async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = 0u64;
        let mut out = String::new();
        loop {
            tokio::select! {
                _ = tick.tick(), if sent < total => {
                    let call_id = format!("c{conn}-{sent}");
                    let number = BASE + (sent * offer.conns as u64 + conn as u64) % offer.numbers.max(1);
                    out.push_str(&invite(wire, local, &n, number, &call_id));
                    if let Ok(mut m) = open.lock() { m.insert(call_id, Instant::now()); }
                    t.offered.fetch_add(1, Ordering::Relaxed);
                    sent += 1;
                }
                more = rx.recv() => match more {
                    Some(s) => out.push_str(&s),
                    None => break,
                },
            }
            while let Ok(s) = rx.try_recv() {
                out.push_str(&s);
            }
            if !out.is_empty() {
                if wr.write_all(out.as_bytes()).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                out.clear();
            }
        }
    };
    let open = started.clone();
    let t = tally.clone();
    let reader = async move {
        let mut buf = Vec::new();
        // Returning drops `tx`, which ends the writer: this connection is done.
        let mut finished = 0u64;
        while finished < total {
            let Some(m) = read_msg(&mut rd, &mut buf).await else { break };
            let Some(code) = m.status() else {
                let _ = tx.send(String::from_utf8_lossy(&build::response(&m, 200, "OK", None, &[])).into_owned());
                continue;
            };
            let method = m.cseq().method;
            let call_id = m.call_id().to_owned();
            match (code, method) {
                (100..=199, _) => {}
                (200..=299, Method::Invite) => {
                    let (Some(ack), Some(bye)) = (
                        in_dialog("ACK", &m, local, wire, 1, &format!("a{call_id}")),
                        in_dialog("BYE", &m, local, wire, 2, &format!("b{call_id}")),
                    ) else {
                        finished += u64::from(fail(&open, &call_id, &t));
                        continue;
                    };
                    let _ = tx.send(ack + &bye);
                }
                (200..=299, Method::Bye) => {
                    let since = open.lock().ok().and_then(|mut o| o.remove(&call_id));
                    if let Some(s) = since {
                        t.add_done(s);
                        finished += 1;
                    }
                }
                (_, Method::Invite | Method::Bye) => finished += u64::from(fail(&open, &call_id, &t)),
                _ => {}
            }
        }
    };
    let last = Duration::from_secs_f64(total as f64 / rate.max(0.001)) + offer.grace;
    let _ = tokio::time::timeout(last, async {
        tokio::join!(writer, reader);
    })
    .await;
    // Whatever is still open failed (no answer in time, or the connection broke).
    let left = started.lock().map(|m| m.len() as u64).unwrap_or(0);
    tally.failed.fetch_add(left, Ordering::Relaxed);
}

/// Counts `call_id` failed if it was still open; whether it was.
fn fail(open: &std::sync::Mutex<HashMap<String, Instant>>, call_id: &str, t: &Tally) -> bool {
    let was = open.lock().ok().and_then(|mut o| o.remove(call_id)).is_some();
    if was {
        t.failed.fetch_add(1, Ordering::Relaxed);
    }
    was
}

/// Places `offer.total` calls over `offer.conns` persistent connections from
/// the carrier IPs (round robin), each at its share of the rate.
pub async fn run_calls(net: Arc<Net>, wire: Wire, tls: Arc<rustls::ClientConfig>, offer: Offer) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let conns = offer.conns.max(1);
    let mut tasks = Vec::new();
    for c in 0..conns {
        let ip = net.uac_ips.get(c % net.uac_ips.len().max(1)).copied().unwrap_or(Ipv4Addr::LOCALHOST);
        let share = offer.total / conns as u64 + u64::from((c as u64) < offer.total % conns as u64);
        let rate = offer.rate / conns as f64;
        let (net, tls, tally) = (net.clone(), tls.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let (s, local) = match connect(ip, &net, wire, &tls).await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("connection {c} from {ip}: {e}");
                    tally.offered.fetch_add(share, Ordering::Relaxed);
                    tally.failed.fetch_add(share, Ordering::Relaxed);
                    return;
                }
            };
            uac(s, local, net, wire, c, rate, share, offer, tally).await;
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    tally
}

/// The flow engine: answers every INVITE with a 200 (Record-Route copied, a
/// Contact), every other request but ACK with a 200. Runs until dropped.
pub async fn uas(sock: UdpSocket) {
    let Ok(local) = sock.local_addr() else { return };
    let contact = format!("<sip:uas@{local}>");
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = sock.recv_from(&mut buf).await else { return };
        let Some(b) = buf.get(..n) else { continue };
        let Ok(m) = Msg::parse(Bytes::copy_from_slice(b)) else { continue };
        let out = match m.method() {
            None | Some(Method::Ack) => continue,
            Some(Method::Invite) => {
                let rr: Vec<&str> = m.headers(HeaderName::RecordRoute).collect();
                let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", *v)).collect();
                extra.push(("Contact", &contact));
                build::response(&m, 200, "OK", Some("uas1"), &extra)
            }
            Some(_) => build::response(&m, 200, "OK", None, &[]),
        };
        let _ = sock.send_to(&out, from).await;
    }
}

/// One handshake: connect from `ip`, handshake (TLS), OPTIONS, its 200, close.
async fn one_handshake(ip: Ipv4Addr, net: &Net, wire: Wire, tls: &Arc<rustls::ClientConfig>, id: u64) -> bool {
    let Ok((mut s, local)) = connect(ip, net, wire, tls).await else { return false };
    let port = if wire == Wire::Tls { net.tls_port } else { 5060 };
    let opt = format!(
        "OPTIONS sip:{}:{port} SIP/2.0\r\nVia: SIP/2.0/{} {local};branch=z9hG4bKh{id}\r\nFrom: <sip:load@{local}>;tag=h{id}\r\n\
         To: <sip:edge@{}>\r\nCall-ID: h{id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        net.edge_ip,
        wire.via(),
        net.edge_ip
    );
    if s.write_all(opt.as_bytes()).await.is_err() || s.flush().await.is_err() {
        return false;
    }
    let mut buf = Vec::new();
    let ok = matches!(read_msg(&mut s, &mut buf).await, Some(m) if m.status() == Some(200));
    let _ = s.shutdown().await;
    ok
}

/// `offer.total` new connections at `offer.rate` per second, each one
/// handshake (TLS) + OPTIONS → 200 + close, spread over the carrier IPs.
pub async fn run_handshakes(net: Arc<Net>, wire: Wire, tls: Arc<rustls::ClientConfig>, offer: Offer) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / offer.rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = tokio::task::JoinSet::new();
    let start = Instant::now();
    for i in 0..offer.total {
        tick.tick().await;
        let ip = net.uac_ips.get(i as usize % net.uac_ips.len().max(1)).copied().unwrap_or(Ipv4Addr::LOCALHOST);
        let (net, tls, t) = (net.clone(), tls.clone(), tally.clone());
        t.offered.fetch_add(1, Ordering::Relaxed);
        tasks.spawn(async move {
            let start = Instant::now();
            match tokio::time::timeout(offer.grace, one_handshake(ip, &net, wire, &tls, i)).await {
                Ok(true) => t.add_done(start),
                _ => {
                    t.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    // The last attempt was offered one interval after the clock started it.
    let per = Duration::from_secs_f64(1.0 / offer.rate.max(0.001));
    tally.offering_us.store((start.elapsed() + per).as_micros() as u64, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    tally
}
