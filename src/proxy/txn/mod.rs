//! RFC 3261 §17 transactions as sans-IO state machines.
//!
//! In: a message (already parsed by the core) or a timer firing. Out: a list
//! of [`Action`]s — bytes to send to the transaction's peer and timers to arm.
//! A transaction never reads a clock or touches a socket, so its tests drive
//! it with nothing but method calls.
//!
//! RFC 6026's "Accepted" states are used for INVITE transactions: a proxy
//! must relay 2xx retransmissions and absorb INVITE retransmissions after a
//! 2xx, which RFC 3261's original machines got wrong.

mod client;
mod server;
#[cfg(test)]
mod tests;

pub use client::{ClientInvite, ClientNonInvite, ClientState};
pub use server::{ServerInvite, ServerNonInvite, ServerState};

use bytes::Bytes;
use smallvec::SmallVec;
use std::time::Duration;

use super::timer::Timer;

/// Something a transaction asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes to the transaction's peer.
    Send(Bytes),
    /// Arm this timer to fire after this long.
    Arm(Timer, Duration),
}

/// The actions of one step; most steps produce at most three.
pub type Actions = SmallVec<[Action; 4]>;

/// What a transaction tells its user about an incoming response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Pass the response to the proxy logic.
    Deliver,
    /// A retransmission the transaction handled itself.
    Absorb,
}

/// What a timer firing meant for the transaction's user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerOutcome {
    /// Nothing for the user (a retransmission, or a stale timer).
    Nothing,
    /// The peer never answered (timer B or F): the user decides (failover, 408).
    Timeout,
    /// The transaction is over and can be forgotten.
    Terminated,
    /// INVITE server: no ACK for the final response (timer H).
    NoAck,
}
