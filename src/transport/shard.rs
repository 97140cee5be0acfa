//! One shard's driver: owns a `proxy::Core`, its own SO_REUSEPORT UDP
//! socket, and an input queue fed by the other shards and TCP connections.
//! It sleeps until the core's next timer, and sends whatever the core queues.

use bytes::BytesMut;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::flood::{FloodGuard, Verdict};
use super::tcp::TcpHub;
use super::{shard_of, ShardInput};
use crate::metrics as m;
use crate::proxy::{Core, Peer};
use crate::sip::Transport;

/// Capacity of a shard's input queue; beyond it messages are dropped and counted.
pub const SHARD_QUEUE: usize = 16_384;

/// Datagrams read per wake-up before yielding to timers and the queue.
const RECV_BATCH: usize = 64;

/// Receive buffer chunk; each datagram is split off it without a copy.
const CHUNK: usize = 256 * 1024;
const MAX_DATAGRAM: usize = 65_536;

/// Everything one shard runs with.
pub struct Shard {
    /// This shard's index.
    pub index: usize,
    /// The proxy core.
    pub core: Core,
    /// This shard's UDP socket, if the edge listens on UDP.
    pub udp: Option<Arc<UdpSocket>>,
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
}

impl Shard {
    /// Runs until shutdown; then ends every call (BYE both ways) and flushes.
    pub async fn run(mut self) {
        let mut buf = BytesMut::with_capacity(CHUNK);
        let far = tokio::time::Instant::now() + std::time::Duration::from_secs(3600);
        loop {
            let deadline = self.core.poll_timeout().map(tokio::time::Instant::from_std).unwrap_or(far);
            let udp = self.udp.clone();
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
                r = recv(udp.as_deref(), &mut buf) => {
                    if let Ok(from) = r {
                        self.on_datagram(from, &mut buf);
                        // Drain what is already queued before going back to select.
                        if let Some(sock) = udp.as_deref() {
                            for _ in 1..RECV_BATCH {
                                reserve(&mut buf);
                                match sock.try_recv_buf_from(&mut buf) {
                                    Ok((_, from)) => self.on_datagram(from, &mut buf),
                                    Err(_) => break,
                                }
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    self.core.handle_timeout(Instant::now());
                }
            }
            self.flush().await;
        }
    }

    fn on_input(&mut self, input: ShardInput) {
        let now = Instant::now();
        match input {
            ShardInput::Message(peer, bytes) => self.core.handle_message(now, peer, bytes),
            ShardInput::SendError(peer) => self.core.handle_send_error(now, peer),
            ShardInput::Config(cfg) => self.core.set_config(cfg),
        }
    }

    fn on_datagram(&mut self, from: std::net::SocketAddr, buf: &mut BytesMut) {
        let verdict = self.flood.check(from.ip());
        if verdict == Verdict::Drop {
            // The next datagram is read over this one: a flood that is being
            // dropped must not churn through receive chunks (each retained
            // message pins the whole chunk it was read into).
            buf.clear();
            return;
        }
        let bytes = buf.split().freeze();
        match verdict {
            Verdict::Pass | Verdict::Drop => {}
            Verdict::Reject => {
                self.core.handle_flooded(Peer::to(from, Transport::Udp), bytes);
                return;
            }
        }
        let peer = Peer::to(from, Transport::Udp);
        let s = shard_of(&bytes, self.shards.len(), &self.hasher);
        if s == self.index {
            self.core.handle_message(Instant::now(), peer, bytes);
        } else if let Some(tx) = self.shards.get(s) {
            if tx.try_send(ShardInput::Message(peer, bytes)).is_err() {
                metrics::counter!(m::QUEUE_DROPS_TOTAL).increment(1);
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            match t.to.transport {
                Transport::Udp => {
                    let Some(sock) = self.udp.as_deref() else { continue };
                    match sock.try_send_to(&t.payload, t.to.addr) {
                        Ok(_) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            let _ = sock.send_to(&t.payload, t.to.addr).await;
                        }
                        Err(e) => {
                            tracing::debug!(to = %t.to.addr, error = %e, "udp send failed");
                            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                                self.core.handle_send_error(Instant::now(), t.to);
                            }
                        }
                    }
                }
                Transport::Tcp => self.tcp.send(t.to, t.payload, self.index),
            }
        }
    }
}

fn reserve(buf: &mut BytesMut) {
    if buf.capacity() < MAX_DATAGRAM {
        *buf = BytesMut::with_capacity(CHUNK);
    }
}

async fn recv(sock: Option<&UdpSocket>, buf: &mut BytesMut) -> std::io::Result<std::net::SocketAddr> {
    match sock {
        Some(s) => {
            reserve(buf);
            s.recv_buf_from(buf).await.map(|(_, from)| from)
        }
        None => std::future::pending().await,
    }
}
