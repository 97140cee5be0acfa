//! SIP over TCP: accepting, framing by Content-Length, connection limits,
//! and a registry so answers go back on the connection a request came in on
//! and requests to a TCP next hop reuse one connection.

use bytes::{Buf, Bytes, BytesMut};
use dashmap::DashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::flood::{FloodGuard, Verdict};
use super::{shard_of, ShardInput};
use crate::capture::Capture;
use crate::metrics as m;
use crate::proxy::Peer;
use crate::sip::framing::{next_frame, Frame};
use crate::sip::Transport;

/// TCP limits (`[tcp]`).
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
}

struct Conn {
    tx: mpsc::Sender<Bytes>,
    peer: SocketAddr,
}

/// Every TCP connection of the edge.
pub struct TcpHub {
    conns: DashMap<u64, Conn>,
    by_peer: DashMap<SocketAddr, u64>,
    per_ip: DashMap<IpAddr, usize>,
    total: AtomicUsize,
    next_id: AtomicU64,
    limits: TcpLimits,
    shards: OnceLock<Vec<mpsc::Sender<ShardInput>>>,
    hasher: ahash::RandomState,
    flood: Arc<FloodGuard>,
    capture: OnceLock<Capture>,
}

/// Messages queued for one connection before new ones are dropped.
const CONN_QUEUE: usize = 1024;

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
        let id = to.conn.filter(|id| self.conns.contains_key(id)).or_else(|| self.by_peer.get(&to.addr).map(|e| *e));
        if let Some(id) = id {
            if let Some(c) = self.conns.get(&id) {
                if c.tx.try_send(payload).is_err() {
                    tracing::debug!(peer = %c.peer, "tcp send queue full or closed: message dropped");
                }
                return;
            }
        }
        self.connect(to.addr, payload);
    }

    fn connect(self: &Arc<Self>, addr: SocketAddr, first: Bytes) {
        let (tx, mut rx) = mpsc::channel(CONN_QUEUE);
        let _ = tx.try_send(first);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.conns.insert(id, Conn { tx, peer: addr });
        self.by_peer.insert(addr, id);
        let hub = self.clone();
        tokio::spawn(async move {
            let res = tokio::time::timeout(hub.limits.connect_timeout, TcpStream::connect(addr)).await;
            match res {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    hub.total.fetch_add(1, Ordering::Relaxed);
                    *hub.per_ip.entry(addr.ip()).or_insert(0) += 1;
                    hub.clone().run_conn(stream, addr, id, rx).await;
                }
                _ => {
                    tracing::info!(peer = %addr, "tcp connect to next hop failed");
                    hub.forget(id, addr);
                    let Some(shards) = hub.shards.get() else { return };
                    while let Ok(lost) = rx.try_recv() {
                        let shard = shard_of(&lost, shards.len(), &hub.hasher);
                        if let Some(s) = shards.get(shard) {
                            let _ = s.try_send(ShardInput::SendError(Peer::to(addr, Transport::Tcp), lost));
                        }
                    }
                }
            }
        });
    }

    fn forget(&self, id: u64, addr: SocketAddr) {
        self.conns.remove(&id);
        self.by_peer.remove_if(&addr, |_, v| *v == id);
    }

    /// Accepts connections until `shutdown` resolves.
    pub async fn accept_loop(self: Arc<Self>, listener: TcpListener) {
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
            self.conns.insert(id, Conn { tx, peer });
            self.by_peer.insert(peer, id);
            tokio::spawn(self.clone().run_conn(stream, peer, id, rx));
        }
    }

    async fn run_conn(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, id: u64, mut rx: mpsc::Receiver<Bytes>) {
        metrics::gauge!(m::TCP_CONNECTIONS).increment(1.0);
        let local = stream.local_addr().unwrap_or(peer);
        let (mut rd, mut wr) = stream.into_split();
        let capture = self.capture().clone();
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    break;
                }
                if capture.is_on() {
                    capture.message(local, peer, Transport::Tcp, std::time::SystemTime::now(), &b);
                }
            }
            let _ = wr.shutdown().await;
        });
        let why = self.read_loop(&mut rd, peer, local, id).await;
        tracing::debug!(peer = %peer, why, "tcp connection closed");
        writer.abort();
        self.forget(id, peer);
        self.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(mut n) = self.per_ip.get_mut(&peer.ip()) {
            *n = n.saturating_sub(1);
        }
        self.per_ip.remove_if(&peer.ip(), |_, n| *n == 0);
        metrics::gauge!(m::TCP_CONNECTIONS).decrement(1.0);
    }

    async fn read_loop(
        &self,
        rd: &mut tokio::net::tcp::OwnedReadHalf,
        peer: SocketAddr,
        local: SocketAddr,
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
                            capture.message(peer, local, Transport::Tcp, std::time::SystemTime::now(), &msg);
                        }
                        let shard = shard_of(&msg, shards.len(), &self.hasher);
                        let p = Peer { addr: peer, transport: Transport::Tcp, conn: Some(id) };
                        if let Some(s) = shards.get(shard) {
                            if s.try_send(ShardInput::Message(p, msg)).is_err() {
                                metrics::counter!(m::QUEUE_DROPS_TOTAL).increment(1);
                            }
                        }
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
