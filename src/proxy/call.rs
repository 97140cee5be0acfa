//! What a proxied INVITE is made of, and the phases it goes through. Each
//! phase holds only what it needs: the hops left to try exist only while the
//! call is being routed, and "cancelled" and "answered upstream" are one
//! state rather than two flags that could disagree.

use smallvec::SmallVec;
use std::sync::Arc;
use std::time::Instant;

use super::decide::Direction;
use super::record::{CallRecord, HopAnswer};
use super::timer::TimerKey;
use super::txn::{ClientInvite, ClientState, ServerInvite, ServerState};
use super::Peer;
use crate::admission::Permit;
use crate::failover::HopKey;
use crate::sip::{Msg, E164};

/// The next hops of a call, in the order they are tried.
pub(super) type Plan = SmallVec<[(Peer, Option<HopKey>); 2]>;

/// Where a proxied INVITE stands toward its caller.
#[allow(clippy::large_enum_variant)] // the call is boxed already: boxing `Hops` too would add an allocation per call
pub(super) enum Phase {
    /// Refused before any hop was tried (no route, over a cap, unknown
    /// source...): only our own final answer is left to send.
    Refused,
    /// Hops are tried in turn, and no final answer has gone upstream yet.
    Routing(Hops),
    /// The caller cancelled (or a drain stopped the call) before its final
    /// answer: no further hop is tried, and the answer is still due.
    Cancelling,
    /// The caller has its final answer.
    Ended(End),
}

/// What the caller was finally told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// A refusal of ours, sent before any hop was tried.
    Refused,
    /// A 2xx: the dialog is made (once) from the first one.
    Answered,
    /// A non-2xx, relayed or ours, after hops were tried.
    Failed,
    /// The call was cancelled: a 2xx arriving now is taken and hung up.
    Cancelled,
}

/// The routing phase's state: what to send and where to try next.
pub(super) struct Hops {
    pub shape: Shape,
    pub plan: Plan,
    /// Index in `plan` of the next hop to try.
    pub next: usize,
    /// Outbound: a carrier whose limits refused this call (its other links are skipped too).
    pub trunk_refused: Option<Arc<str>>,
}

/// How the forwarded INVITE is shaped.
pub(super) enum Shape {
    /// A new call: R-URI rewritten to the hop, Record-Route, X- headers.
    Initial { user: String, headers: SmallVec<[(&'static str, Arc<str>); 3]>, cnam: Option<Arc<str>> },
    /// A re-INVITE inside a dialog: R-URI kept, our Route entries popped.
    InDialog { pop_routes: usize },
}

/// Where CANCEL stands on a branch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CancelState {
    /// Not cancelled.
    No,
    /// Cancelled before any provisional: send CANCEL when one arrives (§9.1).
    Pending,
    /// CANCEL sent.
    Sent,
}

/// What a branch has heard back short of a final answer. Failover depends
/// on it: after a 18x the hop is committed to (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Heard {
    /// Nothing yet.
    Nothing,
    /// A provisional response, but no 180–189.
    Provisional,
    /// A 180–189.
    Ringing,
}

impl Heard {
    /// Whether any provisional came (a CANCEL may be sent, RFC 3261 §9.1).
    pub fn provisional(self) -> bool {
        self != Heard::Nothing
    }

    /// The state after a provisional `code`; a later 183 does not undo a 180.
    pub fn after(self, code: u16) -> Heard {
        let now = if (180..190).contains(&code) { Heard::Ringing } else { Heard::Provisional };
        self.max(now)
    }
}

/// One next hop tried.
pub(super) struct Branch {
    pub branch: Box<str>,
    pub to: Peer,
    pub hop: Option<HopKey>,
    pub txn: ClientInvite,
    pub heard: Heard,
    pub cancel: CancelState,
    /// Given up for the next hop (or at a drain): its answers no longer count.
    pub abandoned: bool,
    /// Hashes of the To tags of the 1xx relayed from this hop: its early dialogs.
    pub early_tags: SmallVec<[u64; 2]>,
    /// Timer C, replaced at each provisional and cancelled at the final
    /// response: 180 s of stale entries per call otherwise.
    pub timer_c: Option<TimerKey>,
    /// Its final answer, or why it had none (for the call record).
    pub answer: Option<HopAnswer>,
}

impl Branch {
    /// Ends an abandoned branch that never answered at all.
    pub fn abandon(&mut self) {
        self.txn.force_terminate();
    }
}

/// Why a branch is given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Failure {
    /// TCP refused/reset, ICMP unreachable.
    Transport,
    /// No response within `failover_ms`, or timer B.
    Timeout,
    /// Timer C: a provisional but no final.
    NoFinal,
}

/// One proxied INVITE.
pub(super) struct Call {
    pub key: Box<str>,
    pub upstream: Peer,
    pub invite: Msg,
    pub server: ServerInvite,
    pub to_tag: String,
    pub phase: Phase,
    pub branches: SmallVec<[Branch; 2]>,
    pub permit: Option<Permit>,
    /// A new call's direction; `None` for a re-INVITE inside a dialog.
    pub direction: Option<Direction>,
    pub number: Option<E164>,
    /// Its entry in the early-dialog index, once a tagged 1xx was relayed.
    pub early_key: Option<u64>,
    /// Highest CSeq of early in-dialog requests (caller, callee): the dialog starts from them.
    pub early_cseq: [u32; 2],
    /// When the INVITE arrived: set-up time runs to its final answer.
    pub received: Instant,
    /// The call record being filled (`[records] path` set, new calls only).
    pub record: Option<Box<CallRecord>>,
}

impl Call {
    /// Whether the caller has its final answer.
    pub fn ended(&self) -> bool {
        matches!(self.phase, Phase::Ended(_))
    }

    /// Whether the caller cancelled and still awaits its final answer.
    pub fn cancelling(&self) -> bool {
        matches!(self.phase, Phase::Cancelling)
    }

    /// A new call rather than a re-INVITE inside a dialog.
    pub fn is_new(&self) -> bool {
        self.direction.is_some()
    }

    /// Whether the branch now being tried goes to `addr`.
    pub fn current_hop_is(&self, addr: std::net::SocketAddr) -> bool {
        self.branches.last().is_some_and(|b| !b.abandoned && b.to.addr == addr && !self.ended())
    }

    /// The branch now being tried, unless it was given up or the call ended.
    pub fn live_branch(&self) -> Option<&Branch> {
        self.branches.last().filter(|b| !b.abandoned && !self.ended())
    }

    /// Moves the call to its end after a final `code` went upstream. The
    /// first 2xx answers it even after a CANCEL (the callee won the race);
    /// otherwise the first final answer decides how it ended.
    pub fn end_with(&mut self, code: u16) {
        self.phase = Phase::Ended(match (&self.phase, code) {
            (Phase::Ended(End::Cancelled), _) => End::Cancelled,
            (_, 200..=299) => End::Answered,
            (Phase::Ended(end), _) => *end,
            (Phase::Cancelling, _) => End::Cancelled,
            (Phase::Refused, _) => End::Refused,
            (Phase::Routing(_), _) if self.branches.is_empty() => End::Refused,
            (Phase::Routing(_), _) => End::Failed,
        });
    }

    pub fn reapable(&self) -> bool {
        self.server.state() == ServerState::Terminated
            && self.branches.iter().all(|b| matches!(b.txn.state(), ClientState::Terminated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_180_is_not_undone_by_a_later_183() {
        let h = Heard::Nothing.after(100);
        assert_eq!(h, Heard::Provisional);
        let h = h.after(180).after(183);
        assert_eq!(h, Heard::Ringing);
        assert!(h.provisional() && !Heard::Nothing.provisional());
    }
}
