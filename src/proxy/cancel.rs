//! CANCEL and ACK for INVITE transactions: a CANCEL from the caller's peer
//! ends the call upstream with 487 and is passed on once the callee has
//! answered provisionally (RFC 3261 §9, §16.10); an ACK is matched to its
//! server transaction (non-2xx) or goes down the dialog (2xx).

use std::time::Instant;

use super::call::{Call, CancelState, Phase};
use super::timer::{Owner, Slot, Timer};
use super::txn::Actions;
use super::{respond, Core, Peer, Reject};
use crate::metrics as m;
use crate::sip::{build, Method, Msg};

impl Core {
    /// CANCEL from the caller (§9.2, §16.10), taken only from the peer the INVITE came from.
    pub(super) fn on_cancel(&mut self, now: Instant, from: Peer, msg: &Msg) {
        let id = Self::server_key_lookup(msg, Method::Invite, |k| self.invite_keys.get(k).copied()).flatten();
        // The Via branch and sent-by are the sender's to choose: a CANCEL is
        // only taken from the peer (carrier or platform) the INVITE came from.
        let peers = &self.routing.load().peers;
        let same_peer = |c: &Call| peers.classify(c.upstream.addr.ip()) == peers.classify(from.addr.ip());
        if let Some(id) = id
            .filter(|&id| self.refusal_cancel(id, |up| peers.classify(up.addr.ip()) == peers.classify(from.addr.ip())))
        {
            let ok = self.response(msg, respond::OK.0, respond::OK.1, Some(&self.to_tag_for(id)), &[]);
            return self.send(from, ok);
        }
        let Some(id) = id.filter(|id| self.calls.get(id).is_some_and(|c| same_peer(c))) else {
            return self.reject(from, msg, Reject::NoDialog, None);
        };
        let to_tag = self.calls.get(&id).map(|c| c.to_tag.clone());
        let ok = self.response(msg, respond::OK.0, respond::OK.1, to_tag.as_deref(), &[]);
        self.send(from, ok);
        let Some(call) = self.calls.get_mut(&id) else { return };
        if !matches!(call.phase, Phase::Routing(_)) {
            return;
        }
        call.phase = Phase::Cancelling;
        let Some(idx) = call.branches.len().checked_sub(1) else {
            return self.final_487(now, id);
        };
        let provisional = call.branches.get(idx).is_some_and(|b| b.heard.provisional());
        if provisional {
            // The callee answers the CANCEL with 487 to the INVITE, which we relay.
            self.send_cancel(now, id, idx);
        } else {
            if let Some(b) = self.calls.get_mut(&id).and_then(|c| c.branches.get_mut(idx)) {
                b.cancel = CancelState::Pending;
                b.txn.abandon();
            }
            self.final_487(now, id);
        }
    }

    pub(super) fn final_487(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get(&id) else { return };
        let (code, reason) = respond::REQUEST_TERMINATED;
        let bytes = self.response(&call.invite, code, reason, Some(&call.to_tag), &[]);
        self.record_outcome(id, "cancelled", super::record::EndedBy::Caller);
        self.respond_upstream(now, id, code, bytes);
        if let Some(call) = self.calls.get_mut(&id) {
            if let (Some(d), Some(_)) = (call.direction, call.permit.take()) {
                m::call_outcome(d.as_str(), "cancelled");
            }
        }
    }

    pub(super) fn send_cancel(&mut self, now: Instant, id: u64, idx: usize) {
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.branches.get_mut(idx)) else { return };
        if b.cancel == CancelState::Sent {
            return;
        }
        b.cancel = CancelState::Sent;
        let to = b.to;
        let Ok(req) = Msg::parse(b.txn.request().clone()) else { return };
        let cancel = build::cancel_for(&req);
        self.originate(now, to, cancel);
        // §9.1: no final within 64·T1 of the CANCEL ends the branch anyway;
        // without this a callee that never answers would keep the call forever.
        let wait = self.cfg.timers.t1x64();
        self.timers.arm(now, wait, Owner::Call(id), Timer::B, Slot::branch(idx));
    }

    /// A non-2xx ACK, matched to its INVITE server transaction, or an ACK for a 2xx.
    pub(super) fn on_ack(&mut self, now: Instant, from: Peer, msg: Msg) {
        let id = Self::server_key_lookup(&msg, Method::Ack, |k| self.invite_keys.get(k).copied()).flatten();
        if id.is_some_and(|id| self.refusal_ack(now, id)) {
            return;
        }
        if let Some(call) = id.and_then(|id| self.calls.get_mut(&id)) {
            let mut out = Actions::new();
            if call.server.on_ack(&self.cfg.timers, &mut out) {
                let up = call.upstream;
                if let Some(id) = id {
                    self.run(now, up, Owner::Call(id), Slot::Server, out);
                }
                return;
            }
        }
        if msg.to_tag().is_some() {
            self.in_dialog(now, from, msg);
        }
    }
}
