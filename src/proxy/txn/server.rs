//! Server transactions (RFC 3261 §17.2): the side that received a request.

use bytes::Bytes;
use std::time::Duration;

use super::{Action, Actions, TimerOutcome};
use crate::proxy::timer::{Timer, TimerValues};

/// States of both server machines (INVITE uses all; non-INVITE uses Trying,
/// Proceeding, Completed, Terminated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// Non-INVITE: request received, nothing sent yet.
    Trying,
    /// A provisional response was sent (INVITE starts here: 100 Trying).
    Proceeding,
    /// A final non-2xx (INVITE) or any final (non-INVITE) was sent.
    Completed,
    /// INVITE: the ACK for the non-2xx final arrived.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026).
    Accepted,
    /// Over; the driver forgets it.
    Terminated,
}

/// INVITE server transaction (§17.2.1 with RFC 6026).
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerState,
    reliable: bool,
    last: Option<Bytes>,
    g_interval: Duration,
}

impl ServerInvite {
    /// A new transaction for a received INVITE; the user sends 100 Trying
    /// through [`ServerInvite::respond`] right away.
    pub fn new(reliable: bool) -> Self {
        ServerInvite { state: ServerState::Proceeding, reliable, last: None, g_interval: Duration::ZERO }
    }

    /// Current state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// The INVITE was received again: resend the last response while one is
    /// pending; absorb it once a final is settled.
    pub fn on_retransmission(&mut self, out: &mut Actions) {
        if matches!(self.state, ServerState::Proceeding | ServerState::Completed) {
            if let Some(b) = &self.last {
                out.push(Action::Send(b.clone()));
            }
        }
    }

    /// Sends a response of status `code`. Responses that come too late for
    /// the state (a 180 after the final) are dropped, except 2xx in Accepted,
    /// which a proxy relays (they are retransmissions from downstream).
    pub fn respond(&mut self, code: u16, bytes: Bytes, tv: &TimerValues, out: &mut Actions) {
        match (self.state, code) {
            (ServerState::Proceeding, 100..=199) => {
                self.last = Some(bytes.clone());
                out.push(Action::Send(bytes));
            }
            (ServerState::Proceeding, 200..=299) => {
                self.state = ServerState::Accepted;
                self.last = None;
                out.push(Action::Send(bytes));
                out.push(Action::Arm(Timer::L, tv.t1x64()));
            }
            (ServerState::Accepted, 200..=299) => out.push(Action::Send(bytes)),
            (ServerState::Proceeding, 300..=699) => {
                self.state = ServerState::Completed;
                self.last = Some(bytes.clone());
                out.push(Action::Send(bytes));
                if !self.reliable {
                    self.g_interval = tv.t1;
                    out.push(Action::Arm(Timer::G, tv.t1));
                }
                out.push(Action::Arm(Timer::H, tv.t1x64()));
            }
            _ => {}
        }
    }

    /// The ACK for a non-2xx final arrived. Returns whether it matched.
    pub fn on_ack(&mut self, tv: &TimerValues, out: &mut Actions) -> bool {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                let wait = if self.reliable { Duration::ZERO } else { tv.t4 };
                out.push(Action::Arm(Timer::I, wait));
                true
            }
            ServerState::Confirmed => true,
            _ => false,
        }
    }

    /// A timer armed by this transaction fired.
    pub fn on_timer(&mut self, timer: Timer, tv: &TimerValues, out: &mut Actions) -> TimerOutcome {
        match (timer, self.state) {
            (Timer::G, ServerState::Completed) => {
                if let Some(b) = &self.last {
                    out.push(Action::Send(b.clone()));
                }
                self.g_interval = (self.g_interval * 2).min(tv.t2);
                out.push(Action::Arm(Timer::G, self.g_interval));
                TimerOutcome::Nothing
            }
            (Timer::H, ServerState::Completed) => {
                self.state = ServerState::Terminated;
                TimerOutcome::NoAck
            }
            (Timer::I, ServerState::Confirmed) | (Timer::L, ServerState::Accepted) => {
                self.state = ServerState::Terminated;
                TimerOutcome::Terminated
            }
            _ => TimerOutcome::Nothing,
        }
    }
}

/// Non-INVITE server transaction (§17.2.2).
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerState,
    reliable: bool,
    last: Option<Bytes>,
}

impl ServerNonInvite {
    /// A new transaction for a received non-INVITE request.
    pub fn new(reliable: bool) -> Self {
        ServerNonInvite { state: ServerState::Trying, reliable, last: None }
    }

    /// The request was received again: resend the last response, if any.
    pub fn on_retransmission(&mut self, out: &mut Actions) {
        if let Some(b) = &self.last {
            out.push(Action::Send(b.clone()));
        }
    }

    /// Sends a response. Returns `Terminated` when the transaction ended at once
    /// (a final on a reliable transport).
    pub fn respond(&mut self, code: u16, bytes: Bytes, tv: &TimerValues, out: &mut Actions) -> TimerOutcome {
        match self.state {
            ServerState::Trying | ServerState::Proceeding => {
                self.last = Some(bytes.clone());
                out.push(Action::Send(bytes));
                if code >= 200 {
                    if self.reliable {
                        self.state = ServerState::Terminated;
                        return TimerOutcome::Terminated;
                    }
                    self.state = ServerState::Completed;
                    out.push(Action::Arm(Timer::J, tv.t1x64()));
                } else {
                    self.state = ServerState::Proceeding;
                }
                TimerOutcome::Nothing
            }
            _ => TimerOutcome::Nothing,
        }
    }

    /// A timer armed by this transaction fired.
    pub fn on_timer(&mut self, timer: Timer) -> TimerOutcome {
        if timer == Timer::J && self.state == ServerState::Completed {
            self.state = ServerState::Terminated;
            return TimerOutcome::Terminated;
        }
        TimerOutcome::Nothing
    }
}
