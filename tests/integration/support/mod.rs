//! Test support: spawn the edge, scripted SIP peers, loopback address blocks.
// Shared by every test module; not each uses every helper.
#![allow(dead_code)]

pub mod edge;
pub mod net;
pub mod peer;
pub mod redis;

pub use edge::{standard, Edge, EdgeSpec};
pub use net::Block;
pub use peer::Peer;

/// Load-heavy tests (SIPp runs, floods, chaos) take this lock so they never
/// overlap: on 2 cores two load generators at once would make each other's
/// timing assertions meaningless. Light tests still run in parallel.
pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}
pub mod tls;
