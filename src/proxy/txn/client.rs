//! Client transactions (RFC 3261 §17.1): the side that sent a request.

use bytes::Bytes;
use std::time::Duration;

use super::{Action, Actions, Delivery, TimerOutcome};
use crate::proxy::timer::{Timer, TimerValues};

/// States of both client machines (non-INVITE uses Trying for Calling).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// Request sent, no response yet (non-INVITE: "Trying").
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A final non-2xx (INVITE) or any final (non-INVITE) arrived.
    Completed,
    /// INVITE: a 2xx arrived (RFC 6026); its retransmissions are relayed.
    Accepted,
    /// Over; the driver forgets it.
    Terminated,
}

/// INVITE client transaction (§17.1.1 with RFC 6026).
#[derive(Debug)]
pub struct ClientInvite {
    state: ClientState,
    reliable: bool,
    request: Bytes,
    a_interval: Duration,
    ack: Option<Bytes>,
}

impl ClientInvite {
    /// Sends `request` and arms A (UDP) and B.
    pub fn start(request: Bytes, reliable: bool, tv: &TimerValues, out: &mut Actions) -> Self {
        out.push(Action::Send(request.clone()));
        if !reliable {
            out.push(Action::Arm(Timer::A, tv.t1));
        }
        out.push(Action::Arm(Timer::B, tv.t1x64()));
        ClientInvite { state: ClientState::Calling, reliable, request, a_interval: tv.t1, ack: None }
    }

    /// Current state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The request as sent (CANCEL and ACK are built from it).
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// A response arrived. For a non-2xx final, `make_ack` builds the
    /// hop-by-hop ACK (§17.1.1.3), which is sent now and again for every
    /// retransmission of that final.
    pub fn on_response(
        &mut self,
        code: u16,
        make_ack: impl FnOnce() -> Bytes,
        tv: &TimerValues,
        out: &mut Actions,
    ) -> Delivery {
        match (self.state, code) {
            (ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                Delivery::Deliver
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) => {
                self.state = ClientState::Accepted;
                // Nothing is built from the request any more (no CANCEL after a
                // final, the 2xx ACK is end to end): free it for the 32 s of timer M.
                self.request = Bytes::new();
                out.push(Action::Arm(Timer::M, tv.t1x64()));
                Delivery::Deliver
            }
            (ClientState::Accepted, 200..=299) => Delivery::Deliver,
            (ClientState::Calling | ClientState::Proceeding, 300..=699) => {
                self.state = ClientState::Completed;
                let ack = make_ack();
                out.push(Action::Send(ack.clone()));
                self.ack = Some(ack);
                let wait = if self.reliable { Duration::ZERO } else { Duration::from_secs(32) };
                out.push(Action::Arm(Timer::D, wait));
                Delivery::Deliver
            }
            (ClientState::Completed, 300..=699) => {
                if let Some(a) = &self.ack {
                    out.push(Action::Send(a.clone()));
                }
                Delivery::Absorb
            }
            _ => Delivery::Absorb,
        }
    }

    /// A timer armed by this transaction fired.
    pub fn on_timer(&mut self, timer: Timer, out: &mut Actions) -> TimerOutcome {
        match (timer, self.state) {
            (Timer::A, ClientState::Calling) => {
                out.push(Action::Send(self.request.clone()));
                self.a_interval *= 2;
                out.push(Action::Arm(Timer::A, self.a_interval));
                TimerOutcome::Nothing
            }
            (Timer::B, ClientState::Calling) => {
                self.state = ClientState::Terminated;
                TimerOutcome::Timeout
            }
            (Timer::D, ClientState::Completed) | (Timer::M, ClientState::Accepted) => {
                self.state = ClientState::Terminated;
                TimerOutcome::Terminated
            }
            _ => TimerOutcome::Nothing,
        }
    }

    /// Ends a branch that was given up and never answered (its timer B fired).
    pub fn force_terminate(&mut self) {
        self.state = ClientState::Terminated;
    }

    /// The user gave up on this branch (failover or cancel): stop retransmitting.
    /// Late responses are still matched and answered (ACKed) until D/M/B end it.
    pub fn abandon(&mut self) {
        if self.state == ClientState::Calling {
            // Keep matching responses: a late final must still be ACKed.
            self.state = ClientState::Proceeding;
        }
    }
}

/// Non-INVITE client transaction (§17.1.2).
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientState,
    reliable: bool,
    request: Bytes,
    e_interval: Duration,
}

impl ClientNonInvite {
    /// Sends `request` and arms E (UDP) and F.
    pub fn start(request: Bytes, reliable: bool, tv: &TimerValues, out: &mut Actions) -> Self {
        out.push(Action::Send(request.clone()));
        if !reliable {
            out.push(Action::Arm(Timer::E, tv.t1));
        }
        out.push(Action::Arm(Timer::F, tv.t1x64()));
        ClientNonInvite { state: ClientState::Calling, reliable, request, e_interval: tv.t1 }
    }

    /// A response arrived.
    pub fn on_response(&mut self, code: u16, tv: &TimerValues, out: &mut Actions) -> (Delivery, TimerOutcome) {
        match self.state {
            ClientState::Calling | ClientState::Proceeding if code < 200 => {
                self.state = ClientState::Proceeding;
                (Delivery::Deliver, TimerOutcome::Nothing)
            }
            ClientState::Calling | ClientState::Proceeding => {
                if self.reliable {
                    self.state = ClientState::Terminated;
                    return (Delivery::Deliver, TimerOutcome::Terminated);
                }
                self.state = ClientState::Completed;
                // Never retransmitted again: do not keep it for timer K.
                self.request = Bytes::new();
                out.push(Action::Arm(Timer::K, tv.t4));
                (Delivery::Deliver, TimerOutcome::Nothing)
            }
            _ => (Delivery::Absorb, TimerOutcome::Nothing),
        }
    }

    /// The transport could not deliver the request (§17.1.4): a transaction still waiting
    /// for its final answer ends at once, and `Timeout` tells the TU to answer for it.
    pub fn on_transport_error(&mut self) -> TimerOutcome {
        match self.state {
            ClientState::Calling | ClientState::Proceeding => {
                self.state = ClientState::Terminated;
                TimerOutcome::Timeout
            }
            _ => TimerOutcome::Nothing,
        }
    }

    /// A timer armed by this transaction fired.
    pub fn on_timer(&mut self, timer: Timer, tv: &TimerValues, out: &mut Actions) -> TimerOutcome {
        match (timer, self.state) {
            (Timer::E, ClientState::Calling | ClientState::Proceeding) => {
                out.push(Action::Send(self.request.clone()));
                // §17.1.2.2: doubling up to T2 while Trying, T2 once Proceeding.
                self.e_interval =
                    if self.state == ClientState::Proceeding { tv.t2 } else { (self.e_interval * 2).min(tv.t2) };
                out.push(Action::Arm(Timer::E, self.e_interval));
                TimerOutcome::Nothing
            }
            (Timer::F, ClientState::Calling | ClientState::Proceeding) => {
                self.state = ClientState::Terminated;
                TimerOutcome::Timeout
            }
            (Timer::K, ClientState::Completed) => {
                self.state = ClientState::Terminated;
                TimerOutcome::Terminated
            }
            _ => TimerOutcome::Nothing,
        }
    }
}
