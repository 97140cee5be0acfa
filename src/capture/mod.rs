//! HEP3 capture: a copy of every SIP message received and sent goes to a
//! HEP collector (Homer, heplify-server, `sngrep -L`). The transport hands
//! each message (a cheap `Bytes` clone) with its addresses and the time it
//! was read or written to a bounded queue; one thread encodes and sends them
//! in batches (`sendmmsg`). A full queue drops the copy and counts it:
//! capture never holds up a call.

pub mod hep;
mod stream;

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::time::SystemTime;

use crate::config::HepTransport;
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

/// How long the sender sleeps between batches. Polling (rather than waking
/// the sender for each copy) keeps capture off the shards' critical path: a
/// wake-up per SIP message cost a futex and a context switch each, and with
/// one datagram per copy it doubled the edge's CPU per call (tools/load,
/// docs/PERFORMANCE.md). Timestamps are taken by the transport, not here.
const CAPTURE_TICK: std::time::Duration = std::time::Duration::from_millis(20);

/// Copies handed to the kernel per `sendmmsg`.
const SEND_BATCH: usize = 64;

/// The capture handle the transport holds; off when no collector is set.
#[derive(Clone, Default)]
pub struct Capture {
    tx: Option<SyncSender<Item>>,
}

impl Capture {
    /// Capture switched off.
    pub fn off() -> Capture {
        Capture { tx: None }
    }

    /// Starts the sender thread towards `collector` over `transport`,
    /// marking every packet with agent id `capture_id`.
    pub fn start(collector: SocketAddr, capture_id: u32, transport: HepTransport) -> std::io::Result<Capture> {
        let mut out = match transport {
            HepTransport::Udp => {
                let bind: SocketAddr =
                    if collector.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                let sock = std::net::UdpSocket::bind(bind)?;
                // Connected: no route lookup per packet, and sendmmsg needs no addresses.
                sock.connect(collector)?;
                Out::Udp(sock)
            }
            HepTransport::Tcp => Out::Tcp(stream::HepStream::new(collector)),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(CAPTURE_QUEUE);
        std::thread::Builder::new()
            .name("sipedge-capture".into())
            .spawn(move || send_loop(&mut out, capture_id, &rx))?;
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

/// Where the sender writes.
enum Out {
    Udp(std::net::UdpSocket),
    Tcp(stream::HepStream),
}

impl Out {
    fn send(&mut self, bufs: &[Vec<u8>]) {
        match self {
            Out::Udp(sock) => send_batch(sock, bufs),
            Out::Tcp(s) => s.send(bufs),
        }
    }
}

fn send_loop(out: &mut Out, capture_id: u32, rx: &Receiver<Item>) {
    let mut bufs: Vec<Vec<u8>> = (0..SEND_BATCH).map(|_| Vec::with_capacity(2048)).collect();
    loop {
        let mut n = 0;
        loop {
            match rx.try_recv() {
                Ok(item) => {
                    let Some(buf) = bufs.get_mut(n) else { break };
                    if encode(&item, capture_id, buf) {
                        n += 1;
                    } else {
                        metrics::counter!(m::HEP_DROPS_TOTAL).increment(1);
                    }
                    if n == SEND_BATCH {
                        out.send(bufs.get(..n).unwrap_or_default());
                        n = 0;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    out.send(bufs.get(..n).unwrap_or_default());
                    return;
                }
            }
        }
        out.send(bufs.get(..n).unwrap_or_default());
        std::thread::sleep(CAPTURE_TICK);
    }
}

/// One HEP3 packet for `item` in `buf`; false if it cannot be encoded.
fn encode(item: &Item, capture_id: u32, buf: &mut Vec<u8>) -> bool {
    let since = item.at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let msg = hep::Message {
        src: item.src,
        dst: item.dst,
        ip_proto: match item.transport {
            Transport::Udp => hep::PROTO_UDP,
            // HEP names the IP protocol; TLS is captured decrypted, as TCP.
            Transport::Tcp | Transport::Tls => hep::PROTO_TCP,
        },
        ts_sec: since.as_secs() as u32,
        ts_usec: since.subsec_micros(),
        capture_id,
        correlation_id: crate::transport::call_id_hint(&item.payload),
        payload: &item.payload,
    };
    hep::encode(&msg, buf).is_some()
}

/// Sends `bufs` with as few system calls as the kernel takes; what it
/// refuses (collector down: ECONNREFUSED) is dropped and counted.
fn send_batch(sock: &std::net::UdpSocket, bufs: &[Vec<u8>]) {
    let mut sent = 0;
    while sent < bufs.len() {
        match sendmmsg(sock, bufs.get(sent..).unwrap_or_default()) {
            Ok(0) | Err(_) => {
                // Skip the packet the kernel refused and go on with the rest.
                metrics::counter!(m::HEP_DROPS_TOTAL).increment(1);
                sent += 1;
            }
            Ok(k) => sent += k,
        }
    }
}

#[cfg(target_os = "linux")]
fn sendmmsg(sock: &std::net::UdpSocket, bufs: &[Vec<u8>]) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let mut iovs: Vec<libc::iovec> =
        bufs.iter().map(|b| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() }).collect();
    let mut msgs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .map(|iov| {
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            libc::mmsghdr { msg_hdr: h, msg_len: 0 }
        })
        .collect();
    let len = u32::try_from(msgs.len()).unwrap_or(u32::MAX);
    // SAFETY: `msgs` points at `len` headers whose iovecs point into `bufs`,
    // all alive for the call; the socket is connected, so no addresses.
    let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), len, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(not(target_os = "linux"))]
fn sendmmsg(sock: &std::net::UdpSocket, bufs: &[Vec<u8>]) -> std::io::Result<usize> {
    let first = bufs.first().map(Vec::as_slice).unwrap_or_default();
    sock.send(first).map(|_| 1)
}
