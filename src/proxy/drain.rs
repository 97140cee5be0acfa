//! Draining: the shared flag the core reads, how many calls are still live,
//! and what happens to INVITEs still being set up when the edge stops.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::call::{CancelState, Phase};
use super::{Core, Reject};

impl Core {
    /// Whether the edge is draining (new INVITEs and OPTIONS get 503).
    pub(super) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Calls still in progress: INVITEs without a final answer, and
    /// established dialogs. A drain ends when every shard reports 0. Calls
    /// kept after their final answer (RFC 6026 retransmission windows) do not
    /// count: nothing of them needs the edge to stay up.
    pub fn live_calls(&self) -> usize {
        let pending = self.calls.values().filter(|c| !c.ended()).count();
        pending + self.dialogs.len()
    }

    /// Every INVITE without a final answer gets one (503 + Retry-After, like
    /// a drain's refusal) and its branch in progress is cancelled downstream
    /// (a CANCEL needs a provisional first, RFC 3261 §9.1; without one the
    /// branch is just abandoned).
    pub(super) fn abort_pending(&mut self, now: Instant) {
        let ids: Vec<u64> = self.calls.iter().filter(|(_, c)| !c.ended()).map(|(id, _)| *id).collect();
        for id in ids {
            let Some(call) = self.calls.get_mut(&id) else { continue };
            call.phase = Phase::Cancelling;
            if let Some(idx) = call.branches.len().checked_sub(1) {
                let provisional = call.branches.get(idx).is_some_and(|b| b.heard.provisional() && !b.abandoned);
                if provisional {
                    self.send_cancel(now, id, idx);
                } else if let Some(b) = self.calls.get_mut(&id).and_then(|c| c.branches.get_mut(idx)) {
                    b.cancel = CancelState::Pending;
                    b.txn.abandon();
                }
            }
            self.final_response(now, id, Reject::Draining);
        }
    }
}
