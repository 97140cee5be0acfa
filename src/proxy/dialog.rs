//! Record-routed dialogs: where in-dialog requests go, and the one place a
//! call's concurrency slot is released once the call is up.
//!
//! In-dialog requests are routed by dialog state, not by their Route or
//! Request-URI: the far side of a dialog is always the peer recorded when the
//! call was set up, so a request can never be steered to an address that is
//! not a configured peer (no open relay).

use super::FastMap;
use std::time::Instant;

use super::record::{CallRecord, EndedBy};
use super::timer::{Owner, Slot, Timer, TimerKey};
use super::{Core, Peer, Reject};
use crate::admission::Permit;
use crate::metrics as m;
use crate::sip::build::ForwardEdits;
use crate::sip::{build, HeaderName, Method, Msg, E164};

/// One established call.
pub(super) struct Dialog {
    id: u64,
    caller: Peer,
    callee: Peer,
    callee_tag: Box<str>,
    permit: Option<Permit>,
    acked: bool,
    call_id: Box<str>,
    from_hdr: Box<str>,
    to_hdr: Box<str>,
    caller_contact: Box<str>,
    callee_contact: Box<str>,
    caller_cseq: u32,
    callee_cseq: u32,
    number: Option<E164>,
    since: Instant,
    /// The call's direction, for the duration histogram.
    direction: Option<super::decide::Direction>,
    /// Waits for the ACK of the 2xx (64·T1); cancelled when the dialog ends.
    ack_wait: TimerKey,
    /// Ends the call after `max_call_duration`; cancelled when the dialog ends.
    max_duration: TimerKey,
    /// The call record, finished when the dialog ends.
    record: Option<Box<CallRecord>>,
}

/// The dialogs of a shard, keyed by Call-ID and the caller's tag.
#[derive(Default)]
pub(super) struct Dialogs {
    by_key: FastMap<Box<str>, Dialog>,
    by_id: FastMap<u64, Box<str>>,
}

impl Dialogs {
    /// Established dialogs.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Entries of the id index (for tests: must match `len`).
    #[cfg(test)]
    pub fn ids(&self) -> usize {
        self.by_id.len()
    }
}

fn key(call_id: &str, tag: &str) -> Box<str> {
    super::join_key(call_id, '\u{0}', tag)
}

/// Which side sent an in-dialog request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Caller,
    Callee,
}

/// The Request-URI for a request the edge builds toward a peer: its Contact
/// when that is a usable SIP/tel URI, else `sip:<the peer's address>` (a
/// missing or `siu:`-style Contact must not make the edge send a request
/// line nobody can parse).
fn request_target(contact: Option<&str>, addr: std::net::SocketAddr) -> String {
    contact
        .filter(|c| crate::sip::parse_uri(c).is_some_and(|u| (u.is_sip() || u.is_tel()) && u.headers.is_empty()))
        .map_or_else(|| format!("sip:{addr}"), str::to_owned)
}

/// 64-bit FNV-1a: a cheap, stable hash (not keyed: the input is not secret).
const FNV1A_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV1A_PRIME: u64 = 0x0100_0000_01b3;

/// A deterministic branch for a stateless ACK, so its retransmissions match downstream.
fn ack_branch(incoming: &str) -> String {
    let mut h = FNV1A_OFFSET;
    for b in incoming.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(FNV1A_PRIME);
    }
    let mut b = String::with_capacity(32);
    b.push_str("z9hG4bK-sea");
    super::text::push_hex(&mut b, h);
    b
}

impl Core {
    /// A 2xx was relayed for a new call: the dialog takes over its slot.
    #[allow(clippy::too_many_arguments)] // both legs' addresses and tokens, each needed once
    pub(super) fn dialog_established(
        &mut self,
        now: Instant,
        id: u64,
        invite: &Msg,
        ok: &Msg,
        caller: Peer,
        callee: Peer,
        permit: Option<Permit>,
        number: Option<E164>,
    ) {
        let (Some(caller_tag), Some(callee_tag)) = (invite.from_tag(), ok.to_tag()) else { return };
        let k = key(invite.call_id(), caller_tag);
        if self.dialogs.by_key.contains_key(&k) {
            return;
        }
        let direction = self.calls.get(&id).and_then(|c| c.direction);
        let ack_wait = self.timers.arm(now, self.cfg.timers.t1x64(), Owner::Call(id), Timer::AckWait, Slot::Whole);
        let max_duration =
            self.timers.arm(now, self.cfg.max_call_duration, Owner::Call(id), Timer::MaxDuration, Slot::Whole);
        let d = Dialog {
            direction,
            id,
            caller,
            callee,
            callee_tag: callee_tag.into(),
            permit,
            acked: false,
            call_id: invite.call_id().into(),
            from_hdr: invite.header(HeaderName::From).unwrap_or("").into(),
            to_hdr: ok.header(HeaderName::To).unwrap_or("").into(),
            caller_contact: request_target(invite.contact_uri(), caller.addr).into(),
            callee_contact: request_target(ok.contact_uri(), callee.addr).into(),
            caller_cseq: invite.cseq().seq,
            callee_cseq: 0,
            number,
            since: now,
            ack_wait,
            max_duration,
            record: None,
        };
        self.dialogs.by_id.insert(id, k.clone());
        self.dialogs.by_key.insert(k, d);
        m::active_dialogs_inc();
    }

    /// Hands an answered call's record to its dialog; with no dialog made
    /// (a 2xx without tags) the record is finished now.
    pub(super) fn dialog_attach_record(&mut self, id: u64, rec: Box<CallRecord>) {
        match self.dialogs.by_id.get(&id).and_then(|k| self.dialogs.by_key.get_mut(k)) {
            Some(d) => d.record = Some(rec),
            None => self.push_record(rec),
        }
    }

    /// Whether `msg` belongs to an established or early dialog.
    pub(super) fn is_in_dialog(&self, msg: &Msg) -> bool {
        self.find_dialog(msg).is_some() || self.find_early(msg).is_some()
    }

    /// A dialog made from an early one goes on from the CSeqs its early requests used.
    pub(super) fn dialog_raise_cseq(&mut self, id: u64, [caller, callee]: [u32; 2]) {
        let Some(d) = self.dialogs.by_id.get(&id).and_then(|k| self.dialogs.by_key.get_mut(k)) else { return };
        d.caller_cseq = d.caller_cseq.max(caller);
        d.callee_cseq = d.callee_cseq.max(callee);
    }

    fn find_dialog(&self, msg: &Msg) -> Option<(Box<str>, Side)> {
        let call_id = msg.call_id();
        if let Some(ft) = msg.from_tag() {
            let k = key(call_id, ft);
            if self.dialogs.by_key.contains_key(&k) {
                return Some((k, Side::Caller));
            }
        }
        let tt = msg.to_tag()?;
        let k = key(call_id, tt);
        let d = self.dialogs.by_key.get(&k)?;
        (msg.from_tag() == Some(&*d.callee_tag)).then_some((k, Side::Callee))
    }

    /// A request with a To tag: route it along its dialog.
    pub(super) fn in_dialog(&mut self, now: Instant, from: Peer, msg: Msg) {
        let method = msg.method().unwrap_or(crate::sip::Method::Other);
        let Some((k, side)) = self.find_dialog(&msg) else {
            if let Some((id, side)) = self.find_early(&msg) {
                return self.early_in_dialog(now, from, msg, id, side);
            }
            return self.route_by_token(now, from, msg, method);
        };
        let pop = self.our_routes(&msg);
        let Some(d) = self.dialogs.by_key.get_mut(&k) else { return };
        let (expected, to) = match side {
            Side::Caller => (d.caller, d.callee),
            Side::Callee => (d.callee, d.caller),
        };
        if expected.addr.ip() != from.addr.ip() {
            if method != Method::Ack {
                self.reject(from, &msg, Reject::NotDialogPeer, None);
            }
            return;
        }
        let seq = msg.cseq().seq;
        match side {
            Side::Caller => d.caller_cseq = d.caller_cseq.max(seq),
            Side::Callee => d.callee_cseq = d.callee_cseq.max(seq),
        }
        // Answers to the caller go back on the connection the call came in on.
        let to = if side == Side::Callee { to } else { Peer { conn: None, ..to } };
        match method {
            Method::Ack => {
                d.acked = true;
                self.forward_dialog_ack(&msg, to, pop);
            }
            Method::Bye => {
                let by = if side == Side::Caller { EndedBy::Caller } else { EndedBy::Callee };
                self.end_dialog(now, &k, "bye", by);
                self.forward_nit(now, from, msg, to, pop);
            }
            Method::Invite => {
                self.forward_reinvite(now, from, msg, to, pop);
            }
            _ => self.forward_nit(now, from, msg, to, pop),
        }
    }

    /// Relays an ACK inside a dialog statelessly (it has no answer).
    pub(super) fn forward_dialog_ack(&mut self, msg: &Msg, to: Peer, pop: usize) {
        // An ACK without a branch (RFC 2543 peer) still gets a valid,
        // deterministic one: an empty `branch=` is a malformed Via.
        let branch = match msg.top_via().and_then(|v| v.branch).filter(|b| !b.is_empty()) {
            Some(b) => ack_branch(b),
            None => ack_branch(&format!("{}|{}|{}", msg.call_id(), msg.cseq().seq, msg.from_tag().unwrap_or(""))),
        };
        let via = self.via(to, &branch);
        let bytes = build::forward_request(
            msg,
            &ForwardEdits {
                request_uri: None,
                via: &via,
                record_route: None,
                pop_routes: pop,
                max_forwards: msg.max_forwards().unwrap_or(crate::sip::build::MAX_FORWARDS).saturating_sub(1),
                add: &[],
                remove: &[],
                from_display: None,
                upstream_via: None,
            },
        );
        self.send(to, bytes);
    }

    /// Removes a dialog and releases its slot (exactly once: the permit moves out).
    fn end_dialog(&mut self, now: Instant, k: &str, how: &'static str, by: EndedBy) -> Option<Dialog> {
        let mut d = self.dialogs.by_key.remove(k)?;
        self.dialogs.by_id.remove(&d.id);
        self.timers.cancel(d.ack_wait);
        self.timers.cancel(d.max_duration);
        m::active_dialogs_dec();
        if d.permit.take().is_some() {
            if let Some(dir) = d.direction {
                m::call_duration_seconds(dir.as_str(), now.saturating_duration_since(d.since).as_secs_f64());
            }
            tracing::debug!(call_id = &*d.call_id, number = ?d.number, how, "call ended");
        }
        if let Some(mut rec) = d.record.take() {
            rec.duration_s = now.saturating_duration_since(d.since).as_secs_f64();
            rec.ended_by = by;
            self.push_record(rec);
        }
        Some(d)
    }

    /// AckWait or MaxDuration fired for a dialog.
    pub(super) fn dialog_timer(&mut self, now: Instant, id: u64, timer: Timer) {
        let Some(k) = self.dialogs.by_id.get(&id).cloned() else { return };
        let Some(d) = self.dialogs.by_key.get(&k) else { return };
        match timer {
            Timer::AckWait if !d.acked => {
                tracing::warn!(call_id = &*d.call_id, "2xx never ACKed: ending the call");
                self.hang_up(now, &k, "no_ack");
            }
            Timer::MaxDuration => {
                let secs = now.saturating_duration_since(d.since).as_secs();
                tracing::warn!(call_id = &*d.call_id, secs, "max_call_duration reached: sending BYE both ways");
                self.hang_up(now, &k, "max_duration");
            }
            _ => {}
        }
    }

    /// Ends a dialog from the edge: BYE to both sides, slot released.
    fn hang_up(&mut self, now: Instant, k: &str, how: &'static str) {
        let Some(d) = self.end_dialog(now, k, how, EndedBy::Edge) else { return };
        let b1 = self.new_branch();
        let to_callee = build::request(
            Method::Bye,
            &d.callee_contact,
            &self.via(d.callee, &b1),
            &d.from_hdr,
            &d.to_hdr,
            &d.call_id,
            d.caller_cseq.saturating_add(1),
            &[("Reason", "SIP;cause=200;text=\"ended by edge\"")],
        );
        let b2 = self.new_branch();
        let to_caller = build::request(
            Method::Bye,
            &d.caller_contact,
            &self.via(d.caller, &b2),
            &d.to_hdr,
            &d.from_hdr,
            &d.call_id,
            d.callee_cseq.saturating_add(1).max(1),
            &[("Reason", "SIP;cause=200;text=\"ended by edge\"")],
        );
        self.originate(now, d.callee, to_callee);
        self.originate(now, d.caller, to_caller);
    }

    /// Edge shutdown: every dialog is hung up and its slot released.
    pub(super) fn dialogs_shutdown(&mut self, now: Instant) {
        let keys: Vec<Box<str>> = self.dialogs.by_key.keys().cloned().collect();
        for k in keys {
            self.hang_up(now, &k, "shutdown");
        }
    }

    /// A 2xx that matches no live branch: a retransmission for an established
    /// dialog is relayed to the caller; anything else is ACKed and hung up.
    pub(super) fn stray_2xx(&mut self, now: Instant, from: Peer, msg: Msg) {
        if let Some(ft) = msg.from_tag() {
            if let Some(d) = self.dialogs.by_key.get(&key(msg.call_id(), ft)) {
                if d.callee.addr.ip() == from.addr.ip() && msg.via_count() > 1 {
                    let caller = d.caller;
                    let bytes = build::forward_response(&msg);
                    self.send(caller, bytes);
                    return;
                }
            }
        }
        self.ack_and_bye(now, from, &msg);
    }

    /// Takes an unwanted 2xx (late branch, call already cancelled) and ends it.
    pub(super) fn ack_and_bye(&mut self, now: Instant, to: Peer, ok: &Msg) {
        let target = request_target(ok.contact_uri(), to.addr);
        let from = ok.header(HeaderName::From).unwrap_or("");
        let to_hdr = ok.header(HeaderName::To).unwrap_or("");
        let seq = ok.cseq().seq;
        let ab = self.new_branch();
        let ack_via = self.via(to, &ab);
        let ack = build::request(Method::Ack, &target, &ack_via, from, to_hdr, ok.call_id(), seq, &[]);
        self.send(to, ack);
        let bb = self.new_branch();
        let bye_via = self.via(to, &bb);
        let bye =
            build::request(Method::Bye, &target, &bye_via, from, to_hdr, ok.call_id(), seq.saturating_add(1), &[]);
        tracing::info!(call_id = ok.call_id(), peer = %to.addr, "late 2xx on an abandoned branch: ACK + BYE");
        self.originate(now, to, bye);
    }
}
