//! HEP3 capture: a copy of every SIP message received and sent goes to a
//! HEP collector (Homer, heplify-server, `sngrep -L`). The transport hands
//! each message (a cheap `Bytes` clone) with its addresses and the time it
//! was read or written to a bounded queue; one task encodes and sends. A
//! full queue drops the copy and counts it: capture never holds up a call.

pub mod hep;

use bytes::Bytes;
use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::sync::mpsc;

use crate::metrics as m;
use crate::sip::Transport;

/// Copies waiting to be sent before new ones are dropped.
pub const CAPTURE_QUEUE: usize = 8192;

/// One message to capture.
struct Item {
    src: SocketAddr,
    dst: SocketAddr,
    transport: Transport,
    at: SystemTime,
    payload: Bytes,
}

/// The capture handle the transport holds; off when no collector is set.
#[derive(Clone, Default)]
pub struct Capture {
    tx: Option<mpsc::Sender<Item>>,
}

impl Capture {
    /// Capture switched off.
    pub fn off() -> Capture {
        Capture { tx: None }
    }

    /// Starts the sender task (on the current runtime) towards `collector`,
    /// marking every packet with agent id `capture_id`.
    pub async fn start(collector: SocketAddr, capture_id: u32) -> std::io::Result<Capture> {
        let bind: SocketAddr = if collector.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let sock = tokio::net::UdpSocket::bind(bind).await?;
        let (tx, rx) = mpsc::channel(CAPTURE_QUEUE);
        tokio::spawn(send_loop(sock, collector, capture_id, rx));
        Ok(Capture { tx: Some(tx) })
    }

    /// Whether capture is on (lets callers skip looking up addresses).
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues a copy of one message; `at` is when the transport read or wrote it.
    pub fn message(&self, src: SocketAddr, dst: SocketAddr, transport: Transport, at: SystemTime, payload: &Bytes) {
        let Some(tx) = &self.tx else { return };
        let item = Item { src, dst, transport, at, payload: payload.clone() };
        if tx.try_send(item).is_err() {
            metrics::counter!(m::HEP_DROPS_TOTAL).increment(1);
        }
    }
}

async fn send_loop(sock: tokio::net::UdpSocket, to: SocketAddr, capture_id: u32, mut rx: mpsc::Receiver<Item>) {
    let mut buf = Vec::with_capacity(2048);
    while let Some(item) = rx.recv().await {
        let since = item.at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let msg = hep::Message {
            src: item.src,
            dst: item.dst,
            ip_proto: match item.transport {
                Transport::Udp => hep::PROTO_UDP,
                Transport::Tcp => hep::PROTO_TCP,
            },
            ts_sec: since.as_secs() as u32,
            ts_usec: since.subsec_micros(),
            capture_id,
            correlation_id: crate::transport::call_id_hint(&item.payload),
            payload: &item.payload,
        };
        if hep::encode(&msg, &mut buf).is_none() {
            metrics::counter!(m::HEP_DROPS_TOTAL).increment(1);
            continue;
        }
        // A collector that is down costs a failed send, nothing more.
        if sock.send_to(&buf, to).await.is_err() {
            metrics::counter!(m::HEP_DROPS_TOTAL).increment(1);
        }
    }
}
