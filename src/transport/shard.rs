//! One shard's driver: owns a `proxy::Core`, its own SO_REUSEPORT UDP
//! socket, and an input queue fed by the other shards and TCP connections.
//! It sleeps until the core's next timer, and sends whatever the core queues.

use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::flood::{FloodGuard, Verdict};
use super::tcp::TcpHub;
use super::{shard_of, ShardInput};
use crate::proxy::{Core, Peer};
use crate::records::Records;
use crate::sip::Transport;

/// Capacity of a shard's input queue; beyond it messages are dropped and counted.
pub const SHARD_QUEUE: usize = 16_384;

/// How often a draining shard reports its live calls.
const DRAIN_REPORT: std::time::Duration = std::time::Duration::from_millis(50);

/// Datagrams read per wake-up before yielding to timers and the queue.
const RECV_BATCH: usize = 64;

/// The receive buffer, reused for every datagram. Each datagram is copied out
/// into its own exact-size `Bytes`: the core keeps some messages for the whole
/// call (the INVITE, for RFC 6026 timers), and a message split off a shared
/// chunk would pin the whole chunk for that long (~10 KiB of RSS per call).
const MAX_DATAGRAM: usize = 65_536;

/// One shard's socket of one UDP `[[listen]]`.
pub struct UdpListener {
    /// The listener's index in `[[listen]]` order (`Peer::listener`).
    pub index: u16,
    /// Its bound address (read once: not a getsockname per datagram).
    pub local: SocketAddr,
    /// The socket.
    pub sock: Arc<UdpSocket>,
}

impl UdpListener {
    /// Wraps a bound socket; `index` is its `[[listen]]` position.
    pub fn new(index: u16, sock: Arc<UdpSocket>) -> std::io::Result<UdpListener> {
        Ok(UdpListener { index, local: sock.local_addr()?, sock })
    }
}

/// Everything one shard runs with.
pub struct Shard {
    /// This shard's index.
    pub index: usize,
    /// The proxy core.
    pub core: Core,
    /// This shard's UDP sockets, one per UDP `[[listen]]` (none without UDP).
    pub udp: Vec<UdpListener>,
    /// Inputs from other shards and TCP.
    pub rx: mpsc::Receiver<ShardInput>,
    /// Every shard's input (to pass on messages of calls that are not ours).
    pub shards: Vec<mpsc::Sender<ShardInput>>,
    /// TCP connections.
    pub tcp: Arc<TcpHub>,
    /// Flood control.
    pub flood: Arc<FloodGuard>,
    /// Same hasher in every shard and in TCP.
    pub hasher: ahash::RandomState,
    /// Becomes true on shutdown.
    pub shutdown: watch::Receiver<bool>,
    /// Where finished calls' records go.
    pub records: Records,
    /// Cluster mode: where shared-admission requests go.
    pub cluster: Option<Arc<crate::cluster::ClusterLink>>,
    /// Drain state: while draining, the shard reports its live calls.
    pub drain: Arc<crate::drain::Drain>,
}

impl Shard {
    /// Runs until shutdown; then ends every call (BYE both ways) and flushes.
    pub async fn run(mut self) {
        let mut buf = BytesMut::with_capacity(MAX_DATAGRAM);
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        // One Sleep for the shard's life, moved only when the core's next
        // deadline changes: a fresh sleep_until per wake-up registers and
        // deregisters a tokio timer entry for every datagram.
        let sleep = tokio::time::sleep_until(far);
        tokio::pin!(sleep);
        // While draining, how many calls are left is published on this tick
        // (counting walks the call table: not once per message).
        let mut next_sock = 0;
        let mut report = tokio::time::interval(DRAIN_REPORT);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std).unwrap_or(far);
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            tokio::select! {
                biased;
                _ = self.shutdown.changed() => {
                    self.core.shutdown(Instant::now());
                    self.flush().await;
                    return;
                }
                input = self.rx.recv() => match input {
                    Some(i) => self.on_input(i),
                    None => return,
                },
                k = readable(&self.udp, next_sock) => {
                    // The next wake-up looks at the other sockets first: a
                    // flood on one listener does not starve the others.
                    next_sock = k + 1;
                    // Read what is queued on that socket before going back to select.
                    if let Some((sock, local, index)) = self.udp.get(k).map(|l| (l.sock.clone(), l.local, l.index)) {
                        for _ in 0..RECV_BATCH {
                            reserve(&mut buf);
                            match sock.try_recv_buf_from(&mut buf) {
                                Ok((_, from)) => self.on_datagram(from, local, index, &mut buf),
                                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                                Err(_) => {
                                    // ICMP errors (IP_RECVERR) surface as a failed receive.
                                    self.on_icmp_errors(&sock);
                                    break;
                                }
                            }
                        }
                    }
                }
                _ = &mut sleep => {
                    self.core.handle_timeout(Instant::now());
                }
                _ = report.tick(), if self.drain.is_draining() => {
                    self.drain.publish(self.index, self.core.live_calls());
                }
            }
            self.flush().await;
        }
    }

    /// Every queued "port unreachable": calls waiting on that hop fail over now.
    fn on_icmp_errors(&mut self, sock: &UdpSocket) {
        for addr in super::udp::drain_icmp_errors(sock) {
            tracing::debug!(hop = %addr, "ICMP unreachable");
            let peer = Peer::to(addr, Transport::Udp);
            self.core.handle_unreachable(Instant::now(), peer);
            // The kernel hands an ICMP error to any socket of the SO_REUSEPORT
            // group, not necessarily the one that sent: tell every shard.
            for i in (0..self.shards.len()).filter(|i| *i != self.index) {
                super::offer(&self.shards, i, ShardInput::Unreachable(peer));
            }
        }
    }

    fn on_input(&mut self, input: ShardInput) {
        let now = Instant::now();
        match input {
            ShardInput::Message(peer, bytes) => self.core.handle_message(now, peer, bytes),
            ShardInput::SendError(peer, bytes) => self.core.handle_send_error(now, peer, &bytes),
            ShardInput::Unreachable(peer) => self.core.handle_unreachable(now, peer),
            ShardInput::Config(cfg) => self.core.set_config(cfg),
            ShardInput::Admit(call, verdict) => self.core.handle_admit(now, call, verdict),
        }
    }

    fn on_datagram(&mut self, from: SocketAddr, local: SocketAddr, listener: u16, buf: &mut BytesMut) {
        let verdict = self.flood.check(from.ip());
        if verdict == Verdict::Drop {
            // Dropped before the copy: a flood costs no allocation.
            buf.clear();
            return;
        }
        let bytes = Bytes::copy_from_slice(buf);
        buf.clear();
        let capture = self.tcp.capture();
        if capture.is_on() {
            capture.message(from, local, Transport::Udp, SystemTime::now(), &bytes);
        }
        // Answers leave from the socket the datagram came in on.
        let peer = Peer::to(from, Transport::Udp).via_listener(Some(listener));
        match verdict {
            Verdict::Pass | Verdict::Drop => {}
            Verdict::Reject => {
                self.core.handle_flooded(peer, bytes);
                return;
            }
        }
        let s = shard_of(&bytes, self.shards.len(), &self.hasher);
        if s == self.index {
            self.core.handle_message(Instant::now(), peer, bytes);
        } else {
            super::offer(&self.shards, s, ShardInput::Message(peer, bytes));
        }
    }

    async fn flush(&mut self) {
        // Shared admissions first: a request that cannot be queued is decided
        // now, and whatever that sends goes out below.
        while let Some(req) = self.core.poll_admit() {
            let call = req.call;
            if !self.cluster.as_ref().is_some_and(|l| l.ask(req)) {
                self.core.handle_admit(Instant::now(), call, crate::cluster::Verdict::Unknown);
            }
        }
        while let Some(r) = self.core.poll_record() {
            self.records.push(r);
        }
        while let Some(t) = self.core.poll_transmit() {
            match t.to.transport {
                Transport::Udp => {
                    let Some((sock, local)) = udp_socket(&self.udp, t.to) else {
                        tracing::debug!(to = %t.to.addr, "no UDP listener of this address family: not sent");
                        continue;
                    };
                    let capture = self.tcp.capture();
                    if capture.is_on() {
                        // Stamped as it is handed to the socket.
                        capture.message(local, t.to.addr, Transport::Udp, SystemTime::now(), &t.payload);
                    }
                    match sock.try_send_to(&t.payload, t.to.addr) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            let _ = sock.send_to(&t.payload, t.to.addr).await;
                        }
                        Err(e) => {
                            tracing::debug!(to = %t.to.addr, error = %e, "udp send failed");
                            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                                // An earlier datagram's ICMP error, reported on this send.
                                self.on_icmp_errors(&sock);
                                let _ = sock.try_send_to(&t.payload, t.to.addr);
                            }
                        }
                    }
                }
                Transport::Tcp | Transport::Tls => self.tcp.send(t.to, t.payload),
            }
        }
    }
}

/// The socket a datagram to `to` leaves from: the listener it names (the one
/// its messages came in on), else the first of its family: an IPv4 socket
/// cannot reach an IPv6 peer (IPv6 listeners are IPv6-only).
fn udp_socket(udp: &[UdpListener], to: Peer) -> Option<(Arc<UdpSocket>, SocketAddr)> {
    let v6 = to.addr.is_ipv6();
    let named = to.listener.and_then(|i| udp.iter().find(|l| l.index == i && l.local.is_ipv6() == v6));
    named.or_else(|| udp.iter().find(|l| l.local.is_ipv6() == v6)).map(|l| (l.sock.clone(), l.local))
}

fn reserve(buf: &mut BytesMut) {
    buf.clear();
    if buf.capacity() < MAX_DATAGRAM {
        buf.reserve(MAX_DATAGRAM);
    }
}

/// The index of the first of `socks` that has a datagram (or an error)
/// waiting; pending forever when there is none.
async fn readable(socks: &[UdpListener], start: usize) -> usize {
    if socks.is_empty() {
        return std::future::pending().await;
    }
    let n = socks.len();
    std::future::poll_fn(|cx| {
        for k in (0..n).map(|i| (start + i) % n) {
            let Some(s) = socks.get(k).map(|l| &l.sock) else { continue };
            // Ready, or an error (the ICMP queue): the read loop deals with both.
            if s.poll_recv_ready(cx).is_ready() {
                return std::task::Poll::Ready(k);
            }
        }
        std::task::Poll::Pending
    })
    .await
}
