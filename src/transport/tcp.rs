//! SIP over TCP and TLS: accepting, framing by Content-Length, connection
//! limits, and a registry so answers go back on the connection a request came
//! in on and requests to a TCP or TLS next hop reuse one connection. The
//! connection code is generic over the stream; `tls.rs` supplies the configs
//! and this file runs the handshakes (with their deadline) in front of it.

use bytes::{Buf, Bytes, BytesMut};
use dashmap::DashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::flood::{FloodGuard, Verdict};
use super::tls::Tls;
use super::{shard_of, ShardInput};
use crate::capture::Capture;
use crate::metrics as m;
use crate::proxy::{pick_listener, Peer};
use crate::sip::framing::{next_frame, Frame};
use crate::sip::Transport;

/// TCP limits (`[tcp]`), TLS connections included.
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// Open connections in total.
    pub max_connections: usize,
    /// Open connections from one IP.
    pub max_per_ip: usize,
    /// Largest message (headers + body).
    pub max_message_bytes: usize,
    /// Largest header section: a stream with no end of headers within this is closed.
    pub max_header_bytes: usize,
    /// A connection with nothing to say for this long is closed.
    pub idle_timeout: Duration,
    /// A message that has started must be complete within this (slowloris).
    pub message_deadline: Duration,
    /// Connecting to a next hop may take this long.
    pub connect_timeout: Duration,
    /// A TLS handshake, either way, may take this long.
    pub tls_handshake_timeout: Duration,
}

struct Conn {
    tx: mpsc::Sender<Bytes>,
    peer: SocketAddr,
    transport: Transport,
}

/// The address an outbound connection to `to` is bound to before it
/// connects, so the peer sees the edge's own address, not the kernel's pick:
/// the listener `to` names when it has `to`'s transport and family, else the
/// first listener of that transport and family, else the first of that
/// family (the rule of `Local::listener_for`, on the bound addresses). With
/// its index, which the connection's messages carry as `Peer::listener`.
/// `None` for a wildcard listener (binding `0.0.0.0:0` changes nothing).
fn bind_for(listeners: &[(Transport, SocketAddr)], to: Peer) -> Option<(u16, SocketAddr)> {
    let v6 = to.addr.is_ipv6();
    let index = pick_listener(listeners, |(t, a)| (*t, a.is_ipv6()), to.transport, v6, to.listener)?;
    let (_, a) = listeners.get(index)?;
    // A listener of the other family cannot be a source; a wildcard names no IP.
    let usable = a.is_ipv6() == v6 && !a.ip().is_unspecified();
    usable.then_some((u16::try_from(index).ok()?, SocketAddr::new(a.ip(), 0)))
}

/// Connects to `addr` from `from` (an IP of ours, port 0) when given.
async fn connect_from(addr: SocketAddr, from: Option<SocketAddr>) -> std::io::Result<TcpStream> {
    let Some(from) = from else { return TcpStream::connect(addr).await };
    let sock = if addr.is_ipv6() { tokio::net::TcpSocket::new_v6()? } else { tokio::net::TcpSocket::new_v4()? };
    sock.bind(from)?;
    sock.connect(addr).await
}

/// Every TCP and TLS connection of the edge. TLS is TCP with a handshake in
/// front: one registry, one set of limits (a TLS connection counts against
/// `max_connections` and `max_per_ip` from accept, before its handshake).
pub struct TcpHub {
    conns: DashMap<u64, Conn>,
    by_peer: DashMap<(SocketAddr, Transport), u64>,
    per_ip: DashMap<IpAddr, usize>,
    total: AtomicUsize,
    next_id: AtomicU64,
    limits: TcpLimits,
    shards: OnceLock<Vec<mpsc::Sender<ShardInput>>>,
    hasher: ahash::RandomState,
    flood: Arc<FloodGuard>,
    capture: OnceLock<Capture>,
    tls: Tls,
    /// Every `[[listen]]`'s transport and bound address, in config order.
    listeners: OnceLock<Vec<(Transport, SocketAddr)>>,
    /// TLS next hops whose last connect failed: no new attempt before the instant.
    backoff: DashMap<SocketAddr, (tokio::time::Instant, Duration)>,
}

/// Messages queued for one connection before new ones are dropped.
const CONN_QUEUE: usize = 1024;

/// First wait after a failed TLS connect; doubled per failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// Longest wait between TLS connect attempts to one hop.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A stream a SIP connection runs over (plain TCP or TLS on TCP).
pub trait SipStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> SipStream for T {}

impl TcpHub {
    /// A hub with these limits, sharing the shards' hasher and the flood guard.
    pub fn new(limits: TcpLimits, hasher: ahash::RandomState, flood: Arc<FloodGuard>) -> Arc<TcpHub> {
        Arc::new(TcpHub {
            conns: DashMap::new(),
            by_peer: DashMap::new(),
            per_ip: DashMap::new(),
            total: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            limits,
            shards: OnceLock::new(),
            hasher,
            flood,
            capture: OnceLock::new(),
            tls: Tls::default(),
            listeners: OnceLock::new(),
            backoff: DashMap::new(),
        })
    }

    /// Turns HEP capture on for every transport (once, at start).
    pub fn set_capture(&self, c: Capture) {
        let _ = self.capture.set(c);
    }

    /// The capture handle (off unless set).
    pub fn capture(&self) -> &Capture {
        static OFF: OnceLock<Capture> = OnceLock::new();
        self.capture.get().unwrap_or_else(|| OFF.get_or_init(Capture::off))
    }

    /// The TLS certificates and trust in force (replaced on reload).
    pub fn tls(&self) -> &Tls {
        &self.tls
    }

    /// Where the edge listens, `[[listen]]` by `[[listen]]` (once, at start):
    /// outbound connections are bound to these addresses.
    pub fn set_listeners(&self, listeners: Vec<(Transport, SocketAddr)>) {
        let _ = self.listeners.set(listeners);
    }

    /// Connects the hub to the shards' inputs (once, at start).
    pub fn set_shards(&self, shards: Vec<mpsc::Sender<ShardInput>>) {
        let _ = self.shards.set(shards);
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Sends on the request's connection, else on the peer's connection, else over a
    /// new one. When connecting fails, each message queued on the attempt goes back as
    /// SendError to the shard owning its call (any shard may have queued one).
    pub fn send(self: &Arc<Self>, to: Peer, payload: Bytes) {
        let id = to
            .conn
            .filter(|id| self.conns.contains_key(id))
            .or_else(|| self.by_peer.get(&(to.addr, to.transport)).map(|e| *e));
        if let Some(id) = id {
            if let Some(c) = self.conns.get(&id) {
                if c.tx.try_send(payload).is_err() {
                    tracing::debug!(peer = %c.peer, "tcp send queue full or closed: message dropped");
                }
                return;
            }
        }
        if to.transport == Transport::Tls {
            if let Some(until) = self.backoff.get(&to.addr).map(|b| b.0) {
                if tokio::time::Instant::now() < until {
                    // Failing at once lets the call fail over now, not after a handshake.
                    self.bounce(to.addr, to.transport, payload);
                    return;
                }
            }
        }
        self.connect(to, payload);
    }

    /// Hands an undeliverable message back to the shard owning its call.
    fn bounce(&self, addr: SocketAddr, transport: Transport, lost: Bytes) {
        let Some(shards) = self.shards.get() else { return };
        let shard = shard_of(&lost, shards.len(), &self.hasher);
        super::offer(shards, shard, ShardInput::SendError(Peer::to(addr, transport), lost));
    }

    fn connect(self: &Arc<Self>, to: Peer, first: Bytes) {
        let (addr, transport) = (to.addr, to.transport);
        let from = self.listeners.get().and_then(|l| bind_for(l, to));
        let listener = from.map(|(i, _)| i);
        let (tx, mut rx) = mpsc::channel(CONN_QUEUE);
        let _ = tx.try_send(first);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.insert(id, Conn { tx, peer: addr, transport });
        self.by_peer.insert((addr, transport), id);
        let hub = self.clone();
        tokio::spawn(async move {
            let res = tokio::time::timeout(hub.limits.connect_timeout, connect_from(addr, from.map(|(_, a)| a))).await;
            if let Ok(Ok(stream)) = res {
                let _ = stream.set_nodelay(true);
                let local = stream.local_addr().unwrap_or(addr);
                hub.total.fetch_add(1, Ordering::Relaxed);
                *hub.per_ip.entry(addr.ip()).or_insert(0) += 1;
                let at = Here { local, listener };
                if transport != Transport::Tls {
                    return hub.clone().run_conn(stream, addr, at, transport, id, rx).await;
                }
                match hub.tls_connect(stream, addr).await {
                    Ok(tls) => {
                        hub.backoff.remove(&addr);
                        return hub.clone().run_conn(tls, addr, at, transport, id, rx).await;
                    }
                    Err(why) => {
                        // A wrong certificate is a failed hop, like a refused connect.
                        tracing::warn!(peer = %addr, why, "tls connect to next hop failed");
                        hub.release(id, addr);
                    }
                }
            } else {
                let from = from.map(|(_, a)| a.ip());
                tracing::info!(peer = %addr, %transport, ?from, "connect to next hop failed");
            }
            if transport == Transport::Tls {
                hub.back_off(addr);
            }
            hub.forget(id, addr, transport);
            while let Ok(lost) = rx.try_recv() {
                hub.bounce(addr, transport, lost);
            }
        });
    }

    /// The client handshake with the hop at `addr`, its certificate checked
    /// against its `server_name` (or IP) and CAs.
    async fn tls_connect(&self, stream: TcpStream, addr: SocketAddr) -> Result<impl SipStream, String> {
        let settings = self.tls.current();
        let Some(client) = settings.client(addr) else { return Err("no [tls] settings for this hop".into()) };
        let connector = tokio_rustls::TlsConnector::from(client.config.clone());
        let name = client.name.clone();
        match tokio::time::timeout(self.limits.tls_handshake_timeout, connector.connect(name, stream)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => {
                metrics::counter!(m::TLS_HANDSHAKE_FAILURES_TOTAL, "side" => "client").increment(1);
                Err(e.to_string())
            }
            Err(_) => {
                metrics::counter!(m::TLS_HANDSHAKE_FAILURES_TOTAL, "side" => "client").increment(1);
                Err("handshake timed out".into())
            }
        }
    }

    fn back_off(&self, addr: SocketAddr) {
        let now = tokio::time::Instant::now();
        let mut e = self.backoff.entry(addr).or_insert((now, Duration::ZERO));
        let wait = (e.1 * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
        *e = (now + wait, wait);
    }

    fn forget(&self, id: u64, addr: SocketAddr, transport: Transport) {
        self.conns.remove(&id);
        self.by_peer.remove_if(&(addr, transport), |_, v| *v == id);
    }

    /// Gives back a connection's slots (total and per IP).
    fn release(&self, id: u64, peer: SocketAddr) {
        if let Some((_, c)) = self.conns.remove(&id) {
            self.by_peer.remove_if(&(peer, c.transport), |_, v| *v == id);
        }
        self.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(mut n) = self.per_ip.get_mut(&peer.ip()) {
            *n = n.saturating_sub(1);
        }
        self.per_ip.remove_if(&peer.ip(), |_, n| *n == 0);
    }

    /// Accepts connections forever on `[[listen]]` number `index`; `tls`:
    /// that listener's configured address (its certificate is found by it),
    /// and each connection must finish a TLS handshake first.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener, index: u16, tls: Option<SocketAddr>) {
        let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "tcp accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // A banned source gets no connection at all (drop or reject alike:
            // there is no message yet to answer 503 to).
            if self.flood.check(peer.ip()) != Verdict::Pass {
                continue;
            }
            // Configured peers are counted but never refused: strangers filling
            // the table must not lock a carrier out.
            let known = self.flood.is_exempt(peer.ip());
            if !known && self.total.load(Ordering::Relaxed) >= self.limits.max_connections {
                metrics::counter!(m::TCP_LIMIT_CLOSES_TOTAL, "limit" => "max_connections").increment(1);
                continue;
            }
            {
                let mut n = self.per_ip.entry(peer.ip()).or_insert(0);
                if !known && *n >= self.limits.max_per_ip {
                    metrics::counter!(m::TCP_LIMIT_CLOSES_TOTAL, "limit" => "max_per_ip").increment(1);
                    continue;
                }
                *n += 1;
            }
            self.total.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_nodelay(true);
            let (tx, rx) = mpsc::channel(CONN_QUEUE);
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            self.conns.insert(id, Conn { tx, peer, transport });
            self.by_peer.insert((peer, transport), id);
            match tls {
                None => {
                    let at = Here { local: stream.local_addr().unwrap_or(peer), listener: Some(index) };
                    tokio::spawn(self.clone().run_conn(stream, peer, at, transport, id, rx));
                }
                Some(listen) => {
                    tokio::spawn(self.clone().tls_accept(stream, peer, (index, listen), id, rx));
                }
            }
        }
    }

    /// The server handshake, cut at `tls_handshake_timeout`; then the
    /// connection runs like TCP.
    async fn tls_accept(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        (index, listen): (u16, SocketAddr),
        id: u64,
        rx: mpsc::Receiver<Bytes>,
    ) {
        let Some(config) = self.tls.current().server(listen) else {
            return self.release(id, peer);
        };
        let local = Here { local: stream.local_addr().unwrap_or(peer), listener: Some(index) };
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let why = match tokio::time::timeout(self.limits.tls_handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => return self.run_conn(tls, peer, local, Transport::Tls, id, rx).await,
            Ok(Err(e)) => e.to_string(),
            Err(_) => {
                metrics::counter!(m::TCP_LIMIT_CLOSES_TOTAL, "limit" => "tls_handshake").increment(1);
                "handshake timed out".to_owned()
            }
        };
        metrics::counter!(m::TLS_HANDSHAKE_FAILURES_TOTAL, "side" => "server").increment(1);
        tracing::info!(peer = %peer, why, "tls handshake refused");
        self.release(id, peer);
    }

    async fn run_conn<S: SipStream>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        at: Here,
        transport: Transport,
        id: u64,
        mut rx: mpsc::Receiver<Bytes>,
    ) {
        let local = at.local;
        let gauge = if transport == Transport::Tls { m::TLS_CONNECTIONS } else { m::TCP_CONNECTIONS };
        metrics::gauge!(gauge).increment(1.0);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let capture = self.capture().clone();
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                // TLS buffers records: flush so each message leaves now.
                if wr.write_all(&b).await.is_err() || wr.flush().await.is_err() {
                    break;
                }
                if capture.is_on() {
                    capture.message(local, peer, transport, std::time::SystemTime::now(), &b);
                }
            }
            let _ = wr.shutdown().await;
        });
        let why = self.read_loop(&mut rd, peer, at, transport, id).await;
        tracing::debug!(peer = %peer, why, %transport, "connection closed");
        writer.abort();
        self.release(id, peer);
        metrics::gauge!(gauge).decrement(1.0);
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        rd: &mut R,
        peer: SocketAddr,
        Here { local, listener }: Here,
        transport: Transport,
        id: u64,
    ) -> &'static str {
        let mut buf = BytesMut::with_capacity(8192);
        let shards = match self.shards.get() {
            Some(s) => s,
            None => return "no shards",
        };
        let mut started: Option<tokio::time::Instant> = None;
        let mut head = HeadScan::default();
        loop {
            // Hand over every complete message in the buffer.
            loop {
                match head.scan(&buf, self.limits.max_header_bytes) {
                    Head::Partial => break,
                    Head::TooLarge => {
                        metrics::counter!(m::TCP_LIMIT_CLOSES_TOTAL, "limit" => "max_header_bytes").increment(1);
                        m::parse_error();
                        return "header section too large";
                    }
                    Head::Ended => {}
                }
                match next_frame(&buf, self.limits.max_message_bytes) {
                    Frame::Complete(n) => {
                        // Copied out so a message the core keeps for the whole call
                        // does not pin this connection's read buffer.
                        let msg = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                        buf.advance(n);
                        started = None;
                        head = HeadScan::default();
                        if self.flood.check(peer.ip()) != Verdict::Pass {
                            metrics::counter!(m::TCP_LIMIT_CLOSES_TOTAL, "limit" => "flood").increment(1);
                            return "source banned by flood control";
                        }
                        let capture = self.capture();
                        if capture.is_on() {
                            capture.message(peer, local, transport, std::time::SystemTime::now(), &msg);
                        }
                        let shard = shard_of(&msg, shards.len(), &self.hasher);
                        let p = Peer { addr: peer, transport, conn: Some(id), listener };
                        super::offer(shards, shard, ShardInput::Message(p, msg));
                    }
                    Frame::KeepAlive(n) => {
                        let _ = buf.split_to(n);
                        head = HeadScan::default();
                    }
                    Frame::Incomplete => break,
                    Frame::Invalid(_) => {
                        metrics::counter!(m::TCP_LIMIT_CLOSES_TOTAL, "limit" => "bad_framing").increment(1);
                        m::parse_error();
                        return "bad framing";
                    }
                }
            }
            let now = tokio::time::Instant::now();
            let deadline = if buf.is_empty() {
                now + self.limits.idle_timeout
            } else {
                *started.get_or_insert(now) + self.limits.message_deadline
            };
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(8192);
            }
            match tokio::time::timeout_at(deadline, rd.read_buf(&mut buf)).await {
                Ok(Ok(0)) => return "closed by peer",
                Ok(Ok(_)) => {}
                Ok(Err(_)) => return "read error",
                Err(_) if buf.is_empty() => {
                    metrics::counter!(m::TCP_LIMIT_CLOSES_TOTAL, "limit" => "idle").increment(1);
                    return "idle timeout";
                }
                Err(_) => {
                    metrics::counter!(m::TCP_LIMIT_CLOSES_TOTAL, "limit" => "message_deadline").increment(1);
                    return "message too slow";
                }
            }
        }
    }
}

/// Our end of a connection: its local address, and the `[[listen]]` it was
/// accepted on or bound to (`Peer::listener` of its messages).
#[derive(Clone, Copy)]
struct Here {
    local: SocketAddr,
    listener: Option<u16>,
}

/// Where the end of the header section (CRLFCRLF) was looked for already,
/// so a message trickled in byte by byte costs O(n) to scan, not O(n²)
/// (`next_frame` would search the whole buffer again after every read).
#[derive(Default)]
struct HeadScan {
    /// Bytes at the front of the buffer known to hold no CRLFCRLF.
    clean: usize,
    /// The header section has ended; framing can decide.
    ended: bool,
}

/// What [`HeadScan::scan`] found.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// No end of headers yet: wait for more bytes.
    Partial,
    /// The header section ended (or the buffer starts with keep-alive CRLFs).
    Ended,
    /// No end of headers within `max_header_bytes`.
    TooLarge,
}

impl HeadScan {
    fn scan(&mut self, buf: &[u8], max_header: usize) -> Head {
        if self.ended || buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            return Head::Ended;
        }
        let from = self.clean.saturating_sub(3).min(buf.len());
        let window = buf.get(from..).unwrap_or_default();
        match memchr::memmem::find(window, b"\r\n\r\n") {
            Some(i) if from + i + 4 > max_header => Head::TooLarge,
            Some(_) => {
                self.ended = true;
                Head::Ended
            }
            None if buf.len() > max_header => Head::TooLarge,
            None => {
                self.clean = buf.len();
                Head::Partial
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_scan_finds_the_end_across_reads_and_enforces_the_limit() {
        let msg = b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\nl: 0\r\n\r\n";
        let mut h = HeadScan::default();
        let mut buf = Vec::new();
        for (i, b) in msg.iter().enumerate() {
            buf.push(*b);
            let want = if i + 1 == msg.len() { Head::Ended } else { Head::Partial };
            assert_eq!(h.scan(&buf, 1024), want, "after {} bytes", i + 1);
        }
        assert_eq!(HeadScan::default().scan(msg, msg.len() - 1), Head::TooLarge);
        assert_eq!(HeadScan::default().scan(msg, msg.len()), Head::Ended);
        assert_eq!(HeadScan::default().scan(&[b'a'; 100], 50), Head::TooLarge);
        assert_eq!(HeadScan::default().scan(b"\r\n", 50), Head::Ended, "keep-alives go to framing");
    }
}
