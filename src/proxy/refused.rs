//! INVITEs refused on arrival, kept only as long as their server transaction.
//!
//! A refused INVITE over UDP still owes the caller RFC 3261 §17.2.1: the final
//! answer is retransmitted until the ACK comes, for up to 64·T1 (32 s), and a
//! retransmitted INVITE gets it again. Holding the whole [`Call`] for that
//! (the call context, the INVITE's bytes and its parsed headers: ~3 KB) made
//! a carrier's flood of never-ACKed INVITEs cost 70 MiB at 1,000 a second.
//! Once the answer is sent, all the transaction needs is its key, where the
//! caller is and the answer itself, so the call is swapped for a [`Refusal`]
//! of about a fifth the size. It keeps the call's id: the timers already armed
//! for it and its `invite_keys` entry keep working unchanged.

use std::time::Instant;

use super::call::Call;
use super::timer::{Fired, Owner, Slot};
use super::txn::{Actions, ServerInvite, ServerState};
use super::{Core, FastMap, Peer};

/// What is left of a call refused on arrival.
pub(super) struct Refusal {
    /// The INVITE's server-transaction key (as in `invite_keys`).
    key: Box<str>,
    /// Where the INVITE came from: the answer is resent there.
    upstream: Peer,
    /// Holds the final answer and the G/H/I timers' state.
    server: ServerInvite,
}

/// Refused INVITEs still waiting for their ACK, by call id.
#[derive(Default)]
pub(super) struct Refusals {
    by_id: FastMap<u64, Refusal>,
}

impl Refusals {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

impl Core {
    /// Swaps call `id`, just answered with a final refusal and with no branch
    /// sent anywhere, for its [`Refusal`]. A call that still needs its context
    /// (a branch, an early dialog, a pending record) is left as it is.
    pub(super) fn retire_refused(&mut self, id: u64) {
        let retirable = |c: &Call| {
            c.ended()
                && c.branches.is_empty()
                && c.early_key.is_none()
                && c.record.is_none()
                && c.permit.is_none()
                && c.server.state() != ServerState::Accepted
        };
        if !self.calls.get(&id).is_some_and(|c| retirable(c)) {
            return;
        }
        let Some(call) = self.calls.remove(&id) else { return };
        if call.server.state() == ServerState::Terminated {
            self.invite_keys.remove(&call.key);
            return;
        }
        let Call { key, upstream, server, .. } = *call;
        self.refusals.by_id.insert(id, Refusal { key, upstream, server });
    }

    /// A retransmitted INVITE of a refused call: the answer again (Completed) or
    /// nothing (Confirmed). Returns whether `id` was one.
    pub(super) fn refusal_retransmission(&mut self, id: u64, from: Peer) -> bool {
        let Some(r) = self.refusals.by_id.get_mut(&id) else { return false };
        let mut out = Actions::new();
        r.server.on_retransmission(&mut out);
        self.send_only(from, out);
        true
    }

    /// A CANCEL of a refused call, from `from`: the call is over, so the
    /// CANCEL is answered 200 and changes nothing (§16.10). Returns whether
    /// `id` was one that came from the same peer.
    pub(super) fn refusal_cancel(&mut self, id: u64, same_peer: impl Fn(Peer) -> bool) -> bool {
        self.refusals.by_id.get(&id).is_some_and(|r| same_peer(r.upstream))
    }

    /// The ACK for a refused call's answer. Returns whether it matched.
    pub(super) fn refusal_ack(&mut self, now: Instant, id: u64) -> bool {
        let Some(r) = self.refusals.by_id.get_mut(&id) else { return false };
        let mut out = Actions::new();
        let matched = r.server.on_ack(&self.cfg.timers, &mut out);
        let up = r.upstream;
        self.run_refusal(now, up, id, out);
        matched
    }

    /// A server timer of a refused call fired (G resends, H gives up, I ends).
    /// Returns whether `id` was one.
    pub(super) fn refusal_timer(&mut self, now: Instant, id: u64, f: Fired) -> bool {
        let Some(r) = self.refusals.by_id.get_mut(&id) else { return false };
        let mut out = Actions::new();
        r.server.on_timer(f.timer, &self.cfg.timers, &mut out);
        let up = r.upstream;
        self.run_refusal(now, up, id, out);
        true
    }

    /// Runs the transaction's actions, and forgets it once it has terminated.
    fn run_refusal(&mut self, now: Instant, to: Peer, id: u64, out: Actions) {
        self.run(now, to, Owner::Call(id), Slot::Server, out);
        if self.refusals.by_id.get(&id).is_some_and(|r| r.server.state() == ServerState::Terminated) {
            if let Some(r) = self.refusals.by_id.remove(&id) {
                self.invite_keys.remove(&r.key);
            }
        }
    }
}
