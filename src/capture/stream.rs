//! HEP over TCP (heplify-server's `HEPTCPAddr`): the packets of one batch go
//! out in one write on one stream. A collector that is down or too slow
//! loses the batch (counted) and is reconnected with a back-off, never
//! holding up the sender for longer than a write timeout.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::metrics as m;

/// The longest a connect or a write may take before the batch is dropped.
const IO_TIMEOUT: Duration = Duration::from_millis(500);

/// Waits between reconnects grow to this.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A stream to the collector, made on first use and after failures.
pub(super) struct HepStream {
    to: SocketAddr,
    conn: Option<TcpStream>,
    /// No connect before this (back-off after a failure).
    retry_at: Option<Instant>,
    backoff: Duration,
    /// One batch, concatenated: one write.
    joined: Vec<u8>,
}

impl HepStream {
    pub(super) fn new(to: SocketAddr) -> HepStream {
        HepStream { to, conn: None, retry_at: None, backoff: Duration::from_millis(100), joined: Vec::new() }
    }

    /// Writes `bufs` (whole HEP packets) in one write; drops and counts them if it cannot.
    pub(super) fn send(&mut self, bufs: &[Vec<u8>]) {
        if bufs.is_empty() {
            return;
        }
        let drop_all = |n: usize| metrics::counter!(m::HEP_DROPS_TOTAL).increment(n as u64);
        if self.conn.is_none() && !self.connect() {
            return drop_all(bufs.len());
        }
        self.joined.clear();
        for b in bufs {
            self.joined.extend_from_slice(b);
        }
        let Some(c) = self.conn.as_mut() else { return drop_all(bufs.len()) };
        if let Err(e) = c.write_all(&self.joined) {
            // Part of a packet may be on the wire: the stream is unusable now.
            tracing::warn!(collector = %self.to, error = %e, "HEP over TCP: write failed, reconnecting");
            self.conn = None;
            self.fail();
            drop_all(bufs.len());
        }
    }

    fn connect(&mut self) -> bool {
        if self.retry_at.is_some_and(|t| Instant::now() < t) {
            return false;
        }
        match TcpStream::connect_timeout(&self.to, IO_TIMEOUT) {
            Ok(c) => {
                let _ = c.set_write_timeout(Some(IO_TIMEOUT));
                let _ = c.set_nodelay(true);
                self.conn = Some(c);
                self.retry_at = None;
                self.backoff = Duration::from_millis(100);
                true
            }
            Err(e) => {
                if self.retry_at.is_none() {
                    tracing::warn!(collector = %self.to, error = %e, "HEP over TCP: cannot connect; dropping capture until it can");
                }
                self.fail();
                false
            }
        }
    }

    fn fail(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}
