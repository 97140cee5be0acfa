//! Early dialogs (RFC 3261 §12.1): requests with a To tag that arrive after a
//! tagged 1xx and before the 2xx — PRACK (RFC 3262), UPDATE (RFC 3311), INFO.
//!
//! Nothing is built per early dialog. A relayed 1xx with a To tag puts the call
//! into a `u64 → call id` index, keyed by a hash of the Call-ID and the caller's
//! tag (the confirmed dialogs' key), and the tag's hash on the branch that sent
//! it. Both live inline (no heap allocation per call), so a call that never
//! sends an early request pays a hash and a map insert. Everything a request
//! needs is already in the call: the caller is its upstream, the callee the
//! branch now being tried. The confirmed dialog's other records (contacts, To
//! header) serve only the BYEs the edge sends itself, and an early dialog is
//! never ended that way: the call's final answer or CANCEL ends it.
//!
//! One early dialog per (call, To tag): the edge does not fork, but a hop may
//! (a forking proxy behind it) and send 1xx with several tags. All of them lead
//! to the same two peers; the tags are kept so that a request whose tag no
//! relayed 1xx of the current branch carried is refused (481). A branch given
//! up by failover takes its tags with it: nothing is routed to a hop no longer
//! tried.
//!
//! Routing is the confirmed dialogs': by state only, from the dialog's peers
//! only. BYE and re-INVITE keep their pre-2xx answer (481): a caller ends an
//! early call with CANCEL, and RFC 3311 says UPDATE, not re-INVITE.

use std::time::Instant;

use super::dialog::Side;
use super::{Core, FastMap, Peer, Reject};
use crate::sip::{Method, Msg};

/// A hop that sends 1xx with more distinct tags than this is a forking proxy
/// gone wild or an attacker: further tags get no early dialog (bounded memory).
const MAX_EARLY_TAGS: usize = 4;

/// The calls with early dialogs, by a keyed hash of Call-ID and caller tag.
#[derive(Default)]
pub(super) struct EarlyDialogs {
    /// Random per process (like the maps' own): hashes cannot be planned.
    hasher: ahash::RandomState,
    by_key: FastMap<u64, u64>,
}

impl EarlyDialogs {
    fn key(&self, call_id: &str, caller_tag: &str) -> u64 {
        self.hasher.hash_one((call_id, caller_tag))
    }

    fn tag(&self, tag: &str) -> u64 {
        self.hasher.hash_one(tag)
    }

    /// Calls indexed (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_key.len()
    }
}

impl Core {
    /// A 1xx from branch `idx` of call `id` is being relayed upstream: a To tag
    /// opens (or confirms) an early dialog with that branch's hop.
    pub(super) fn note_early(&mut self, id: u64, idx: usize, msg: &Msg) {
        let Some(tag) = msg.to_tag().filter(|t| !t.is_empty()) else { return };
        let Some(call) = self.calls.get_mut(&id) else { return };
        // A re-INVITE's 1xx belongs to the confirmed dialog already.
        if !call.is_new() {
            return;
        }
        let th = self.early.tag(tag);
        let Some(b) = call.branches.get_mut(idx) else { return };
        if !b.early_tags.contains(&th) {
            if b.early_tags.len() >= MAX_EARLY_TAGS {
                return;
            }
            b.early_tags.push(th);
        }
        if call.early_key.is_none() {
            let Some(ft) = call.invite.from_tag() else { return };
            let k = self.early.key(call.invite.call_id(), ft);
            // A newer INVITE with the same identifiers (an auth retry) takes the entry over.
            self.early.by_key.insert(k, id);
            call.early_key = Some(k);
        }
    }

    /// Drops call `id`'s index entry, unless a newer call took it over.
    pub(super) fn unindex_early(&mut self, id: u64, key: Option<u64>) {
        if let Some(k) = key {
            if self.early.by_key.get(&k) == Some(&id) {
                self.early.by_key.remove(&k);
            }
        }
    }

    /// The call whose early dialog `msg` belongs to, and which side sent it.
    pub(super) fn find_early(&self, msg: &Msg) -> Option<(u64, Side)> {
        if self.early.by_key.is_empty() {
            return None;
        }
        let (ft, tt) = (msg.from_tag()?, msg.to_tag()?);
        let call_id = msg.call_id();
        // The caller's request carries its own tag in From; the callee's, in To.
        [(ft, tt, Side::Caller), (tt, ft, Side::Callee)].into_iter().find_map(|(caller_tag, callee_tag, side)| {
            let id = *self.early.by_key.get(&self.early.key(call_id, caller_tag))?;
            let call = self.calls.get(&id)?;
            let same = call.invite.call_id() == call_id && call.invite.from_tag() == Some(caller_tag);
            // Only the branch being tried has live early dialogs.
            let b = call.live_branch()?;
            (same && b.early_tags.contains(&self.early.tag(callee_tag))).then_some((id, side))
        })
    }

    /// A request in the early dialog of call `id`: forwarded to the other side
    /// like a confirmed dialog's, if it comes from the side it claims.
    pub(super) fn early_in_dialog(&mut self, now: Instant, from: Peer, msg: Msg, id: u64, side: Side) {
        let method = msg.method().unwrap_or(Method::Other);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(callee) = call.branches.last().map(|b| b.to) else { return };
        let (expected, to) = match side {
            Side::Caller => (call.upstream, callee),
            Side::Callee => (callee, call.upstream),
        };
        if expected.addr.ip() != from.addr.ip() {
            if method != Method::Ack {
                self.reject(from, &msg, Reject::NotDialogPeer, None);
            }
            return;
        }
        match method {
            // Nothing to acknowledge before a 2xx.
            Method::Ack => return,
            Method::Bye | Method::Invite => return self.reject(from, &msg, Reject::NoDialog, None),
            _ => {}
        }
        let seq = msg.cseq().seq;
        let [caller_cseq, callee_cseq] = &mut call.early_cseq;
        let last = if side == Side::Caller { caller_cseq } else { callee_cseq };
        *last = (*last).max(seq);
        // As in a confirmed dialog: requests to the caller reuse the connection
        // the call came in on; requests to the callee pick any.
        let to = if side == Side::Callee { to } else { Peer { conn: None, ..to } };
        let pop = self.our_routes(&msg);
        self.forward_nit(now, from, msg, to, pop);
    }
}
