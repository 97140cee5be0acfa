//! Loopback address blocks: one /24 per test, so tests never share a port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// 127.(base).(k).0/24 for one test. `.1` is the edge; others are peers.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    a: u8,
    b: u8,
}

impl Block {
    /// A fresh block. The process id spreads concurrent test binaries apart.
    pub fn new() -> Block {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let a = 100 + (pid % 100) as u8;
        Block { a, b: (n % 250 + 1) as u8 }
    }

    /// The address 127.a.b.host.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, self.a, self.b, host)
    }

    /// `ip(host):port`.
    pub fn addr(&self, host: u8, port: u16) -> SocketAddr {
        SocketAddr::from((self.ip(host), port))
    }
}
