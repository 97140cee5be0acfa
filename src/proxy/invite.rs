//! A proxied INVITE: the server transaction toward the caller, one client
//! transaction per next hop tried (serial failover), CANCEL, and the hand-over
//! to a dialog on 2xx.

use bytes::Bytes;
use smallvec::SmallVec;
use std::time::Instant;

use super::admit::HopTrunk;
use super::call::{Branch, Call, CancelState, End, Failure, Heard, Hops, Phase, Plan, Shape};
use super::decide::{self, Decision, Direction};
use super::record::{EndedBy, HopAnswer};
use super::respond;
use super::timer::{Fired, Owner, Slot, Timer};
use super::txn::{Actions, ClientInvite, ClientState, Delivery, ServerInvite, ServerState, TimerOutcome};
use super::{Core, Peer, Reject};
use crate::admission::Permit;
use crate::failover::{classify, Outcome, Step};
use crate::metrics as m;
use crate::routing::Source;
use crate::sip::build::ForwardEdits;
use crate::sip::{build, via, Method, Msg, Transport, E164};

impl Core {
    /// A retransmitted INVITE is absorbed by its server transaction.
    pub(super) fn invite_retransmission(&mut self, from: Peer, msg: &Msg) -> bool {
        let Some(id) = Self::server_key_lookup(msg, Method::Invite, |k| self.invite_keys.get(k).copied()).flatten()
        else {
            return false;
        };
        let Some(call) = self.calls.get_mut(&id) else { return self.refusal_retransmission(id, from) };
        let mut out = Actions::new();
        call.server.on_retransmission(&mut out);
        self.send_only(from, out);
        true
    }

    /// Sends what a retransmission produced (it never arms a timer).
    pub(super) fn send_only(&mut self, to: Peer, out: Actions) {
        for a in out {
            if let super::txn::Action::Send(b) = a {
                self.send(to, b);
            }
        }
    }

    /// A new INVITE outside any dialog: 100 at once, then decide and forward.
    pub(super) fn initial_invite(&mut self, now: Instant, from: Peer, msg: Msg, source: Source) {
        let snap = self.routing.load_full();
        self.hops.refresh(&snap.peers);
        let decided = if !self.rate.admit(now, self.cfg.new_calls_per_second) {
            Err(Reject::RateLimited)
        } else {
            self.decide(&msg, source, &snap).and_then(|d| self.inbound_trunk(now, source, &snap, d))
        };
        let direction = match source {
            Source::Carrier(_) => Direction::Inbound,
            _ => Direction::Outbound,
        };
        let record =
            self.cfg.records.then(|| self.open_record(now, &msg, source, direction, &snap, decided.as_ref().ok()));
        let mut shared_cap = None;
        let (phase, permit, number, refusal) = match decided {
            Ok(Decision { plan, permit, number, headers, user, cnam, shared_cap: cap, .. }) => {
                shared_cap = cap;
                let plan = plan.into_iter().map(|k| (Peer::to(k.addr, k.transport), Some(k))).collect();
                (Self::routing(plan, Shape::Initial { user, headers, cnam }), Some(permit), Some(number), None)
            }
            Err(why) => {
                m::call_outcome(direction.as_str(), why.outcome_label());
                tracing::info!(call_id = msg.call_id(), peer = %from.addr, status = why.status().0, "call refused: {why}");
                (Phase::Refused, None, None, Some(why))
            }
        };
        let id = self.start_call(now, from, msg, phase, permit, number, Some(direction));
        if let (Some(rec), Some(call)) = (record, self.calls.get_mut(&id)) {
            call.record = Some(rec);
        }
        match refusal {
            Some(why) => {
                self.final_response(now, id, why);
                self.retire_refused(id);
            }
            None => {
                m::call_started(direction.as_str());
                match number {
                    Some(n) if self.cfg.cluster.is_some() => self.ask_admit(now, id, n, shared_cap),
                    _ => self.try_next_hop(now, id),
                }
            }
        }
    }

    /// The To tag of our answers to call `id`: unique per instance run and call.
    pub(super) fn to_tag_for(&self, id: u64) -> String {
        let mut to_tag = String::with_capacity(2 + 8 + 16);
        to_tag.push_str("se");
        super::text::push_hex(&mut to_tag, u64::from(self.cfg.instance_nonce));
        super::text::push_hex(&mut to_tag, id);
        to_tag
    }

    fn decide(&self, msg: &Msg, source: Source, snap: &crate::routing::RoutingSnapshot) -> Result<Decision, Reject> {
        match source {
            Source::Carrier(i) => decide::inbound(msg, i, snap, &self.admission, &self.hops, &self.down, &self.cfg),
            Source::Platform => decide::outbound(msg, snap, &self.admission, &self.hops, &self.down, &self.cfg),
            Source::Unknown => Err(Reject::UnknownSource),
        }
    }

    /// The phase of a call about to try `plan`, forwarding the INVITE as `shape` says.
    pub(super) fn routing(plan: Plan, shape: Shape) -> Phase {
        Phase::Routing(Hops { shape, plan, next: 0, trunk_refused: None })
    }

    /// Creates the call context and its server transaction, and sends 100 Trying.
    #[allow(clippy::too_many_arguments)] // permit, number and direction are None together for a re-INVITE
    pub(super) fn start_call(
        &mut self,
        now: Instant,
        from: Peer,
        msg: Msg,
        phase: Phase,
        permit: Option<Permit>,
        number: Option<E164>,
        direction: Option<Direction>,
    ) -> u64 {
        let id = self.new_id();
        let mut msg = msg;
        // Kept for the call's life: must not pin the receive chunk it came in.
        msg.detach();
        let key = Self::server_key(&msg, Method::Invite).unwrap_or_else(|| Box::from(""));
        let mut server = ServerInvite::new(from.transport.is_stream());
        let mut out = Actions::new();
        let (code, reason) = respond::TRYING;
        let trying = self.response(&msg, code, reason, None, &[]);
        server.respond(code, trying, &self.cfg.timers, &mut out);
        self.run(now, from, Owner::Call(id), Slot::Server, out);
        let to_tag = self.to_tag_for(id);
        self.invite_keys.insert(key.clone(), id);
        self.calls.insert(
            id,
            Box::new(Call {
                key,
                upstream: from,
                invite: msg,
                server,
                to_tag,
                phase,
                branches: SmallVec::new(),
                permit,
                direction,
                number,
                early_key: None,
                early_cseq: [0, 0],
                received: now,
                record: None,
            }),
        );
        id
    }

    /// A re-INVITE inside a dialog, proxied to the dialog's other side `to`.
    pub(super) fn forward_reinvite(&mut self, now: Instant, from: Peer, msg: Msg, to: Peer, pop_routes: usize) {
        let phase = Self::routing(std::iter::once((to, None)).collect(), Shape::InDialog { pop_routes });
        let id = self.start_call(now, from, msg, phase, None, None, None);
        self.try_next_hop(now, id);
    }

    /// Sends the INVITE to the next hop in the plan, or answers 503 when none is left.
    pub(super) fn try_next_hop(&mut self, now: Instant, id: u64) {
        loop {
            let Some(call) = self.calls.get_mut(&id) else { return };
            let Phase::Routing(hops) = &mut call.phase else { return };
            let Some((to, hop)) = hops.plan.get(hops.next).cloned() else {
                let why = if hops.trunk_refused.is_some() { Reject::TrunkFull } else { Reject::NoRoute };
                return self.final_response(now, id, why);
            };
            hops.next += 1;
            if let Some(k) = &hop {
                if !self.down.is_up(k) || !self.outbound_trunk(now, id, k) {
                    continue;
                }
                match self.ask_trunk(now, id) {
                    HopTrunk::Go => {}
                    HopTrunk::Skip => continue,
                    // `handle_admit` comes back to this hop.
                    HopTrunk::Wait => return,
                }
            }
            let branch = self.new_branch();
            let bytes = match self.calls.get(&id).and_then(|c| self.forwarded_invite(c, to, &branch)) {
                Some(bytes) => bytes,
                None => return,
            };
            let mut out = Actions::new();
            let txn = ClientInvite::start(bytes, to.transport.is_stream(), &self.cfg.timers, &mut out);
            let Some(call) = self.calls.get_mut(&id) else { return };
            let idx = call.branches.len();
            call.branches.push(Branch {
                branch: branch.clone().into_boxed_str(),
                to,
                hop,
                txn,
                heard: Heard::Nothing,
                cancel: CancelState::No,
                abandoned: false,
                early_tags: SmallVec::new(),
                timer_c: None,
                answer: None,
            });
            self.branches.insert(branch.into_boxed_str(), (id, idx as u32));
            let slot = Slot::branch(idx);
            self.run(now, to, Owner::Call(id), slot, out);
            let failover = self.cfg.timers.failover;
            self.timers.arm(now, failover, Owner::Call(id), Timer::Failover, slot);
            return;
        }
    }

    /// The INVITE for the next hop; only a call being routed has one.
    fn forwarded_invite(&self, call: &Call, to: Peer, branch: &str) -> Option<Bytes> {
        let Phase::Routing(hops) = &call.phase else { return None };
        let via = self.via(to, branch);
        let mf = call.invite.max_forwards().unwrap_or(crate::sip::build::MAX_FORWARDS).saturating_sub(1);
        let upstream_via = call.invite.top_via().and_then(|v| via::stamped(&v, call.upstream.addr));
        Some(match &hops.shape {
            Shape::Initial { user, headers, cnam } => {
                let mut ruri = String::with_capacity(64 + user.len());
                ruri.push_str("sip:");
                ruri.push_str(user);
                ruri.push('@');
                super::text::push_addr(&mut ruri, to.addr);
                match to.transport {
                    Transport::Udp => {}
                    Transport::Tcp => ruri.push_str(";transport=tcp"),
                    // A sip: URI with transport=tls, not sips: (see Local::record_route).
                    Transport::Tls => ruri.push_str(";transport=tls"),
                }
                // Double Record-Route when the two sides reach different
                // listeners (another transport, IP family or address), each
                // entry naming its side's own listener (RFC 5658).
                let token = self.dialog_token(call.upstream, to);
                let local = &self.cfg.local;
                let rr = if local.one_record_route(to, call.upstream) {
                    local.record_route_for(to, &token)
                } else {
                    format!("{}, {}", local.record_route_for(to, &token), local.record_route_for(call.upstream, &token))
                };
                let add: SmallVec<[(&str, &str); 3]> = headers.iter().map(|(k, v)| (*k, &**v)).collect();
                let pop = self.our_routes(&call.invite);
                build::forward_request(
                    &call.invite,
                    &ForwardEdits {
                        request_uri: Some(&ruri),
                        via: &via,
                        record_route: Some(&rr),
                        pop_routes: pop,
                        max_forwards: mf,
                        add: &add,
                        remove: &["X-Flow-Id", "X-Number-Kind", "X-Carrier"],
                        from_display: cnam.as_deref(),
                        upstream_via: upstream_via.as_deref(),
                    },
                )
            }
            Shape::InDialog { pop_routes } => build::forward_request(
                &call.invite,
                &ForwardEdits {
                    request_uri: None,
                    via: &via,
                    record_route: None,
                    pop_routes: *pop_routes,
                    max_forwards: mf,
                    add: &[],
                    remove: &[],
                    from_display: None,
                    upstream_via: upstream_via.as_deref(),
                },
            ),
        })
    }

    /// How many leading Route entries name this edge.
    pub(super) fn our_routes(&self, msg: &Msg) -> usize {
        msg.routes().take_while(|r| self.cfg.local.is_our_route(r)).count()
    }

    /// Answers the caller with our own final response and releases the slot.
    pub(super) fn final_response(&mut self, now: Instant, id: u64, why: Reject) {
        let Some(call) = self.calls.get(&id) else { return };
        if call.ended() {
            return;
        }
        let bytes = self.reject_bytes(&call.invite, why, Some(&call.to_tag));
        let code = why.status().0;
        self.record_outcome(id, why.outcome_label(), EndedBy::Edge);
        self.respond_upstream(now, id, code, bytes);
        if let Some(call) = self.calls.get_mut(&id) {
            if let (Some(d), Some(_)) = (call.direction, call.permit.as_ref()) {
                m::call_outcome(d.as_str(), why.outcome_label());
            }
            call.permit = None;
        }
    }

    /// Sends a response through the call's server transaction.
    pub(super) fn respond_upstream(&mut self, now: Instant, id: u64, code: u16, bytes: Bytes) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut out = Actions::new();
        call.server.respond(code, bytes, &self.cfg.timers, &mut out);
        let mut early = None;
        let first_final = code >= 200 && !call.ended();
        if code >= 200 {
            if let (true, Some(d)) = (first_final, call.direction) {
                m::setup_seconds(d.as_str(), now.saturating_duration_since(call.received).as_secs_f64());
            }
            call.end_with(code);
            // The call's early dialogs end with its final answer (a 2xx makes the dialog).
            early = call.early_key.take();
        }
        let up = call.upstream;
        self.run(now, up, Owner::Call(id), Slot::Server, out);
        self.unindex_early(id, early);
        if first_final {
            self.record_final(now, id, code);
        }
    }

    /// Where branch `idx` of call `id` was sent.
    pub(super) fn branch_peer(&self, id: u64, idx: u32) -> Option<Peer> {
        self.calls.get(&id)?.branches.get(idx as usize).map(|b| b.to)
    }

    /// A response to one of our INVITE branches.
    pub(super) fn invite_response(&mut self, now: Instant, id: u64, idx: u32, msg: Msg) {
        let Some(code) = msg.status() else { return };
        let tv = self.cfg.timers;
        let Some(call) = self.calls.get_mut(&id) else { return };
        let current = call.branches.len().checked_sub(1) == Some(idx as usize);
        let Some(b) = call.branches.get_mut(idx as usize) else { return };
        let mut out = Actions::new();
        let request = b.txn.request().clone();
        let delivery = b.txn.on_response(
            code,
            || match Msg::parse(request) {
                Ok(req) => build::ack_for_non2xx(&req, &msg),
                Err(_) => Bytes::new(),
            },
            &tv,
            &mut out,
        );
        let to = b.to;
        if code >= 200 {
            if let Some(k) = b.timer_c.take() {
                self.timers.cancel(k);
            }
            b.answer.get_or_insert(HopAnswer::Status(code));
        }
        let want_cancel = code < 200 && b.cancel == CancelState::Pending;
        if code < 200 {
            b.heard = b.heard.after(code);
        }
        let heard = b.heard;
        let abandoned = b.abandoned || !current;
        let (routing, cancelling, ended) = (matches!(call.phase, Phase::Routing(_)), call.cancelling(), call.ended());
        let hung_up = matches!(call.phase, Phase::Ended(End::Cancelled));
        self.run(now, to, Owner::Call(id), Slot::branch(idx as usize), out);
        if want_cancel {
            self.send_cancel(now, id, idx as usize);
        }
        if delivery == Delivery::Absorb {
            return;
        }
        if (200..300).contains(&code) {
            if abandoned || hung_up {
                // A late 2xx from a branch we gave up on, or after the caller
                // was told the call is cancelled: take it and hang it up.
                return self.ack_and_bye(now, to, &msg);
            }
            return self.relay_2xx(now, id, idx as usize, msg);
        }
        if abandoned || ended {
            return;
        }
        if code < 200 {
            if code == 100 {
                return self.arm_timer_c(now, id, idx as usize);
            }
            self.arm_timer_c(now, id, idx as usize);
            self.note_early(id, idx as usize, &msg);
            let bytes = build::forward_response(&msg);
            return self.respond_upstream(now, id, code, bytes);
        }
        // A final non-2xx: fail over or relay (SPEC §5).
        if routing && classify(Outcome::Final(code), heard == Heard::Ringing) == Step::NextHop {
            self.note_failover(id, idx as usize, code);
            return self.try_next_hop(now, id);
        }
        if cancelling {
            self.record_outcome(id, "cancelled", EndedBy::Caller);
        }
        let bytes = build::forward_response(&msg);
        self.respond_upstream(now, id, code, bytes);
        if let Some(call) = self.calls.get_mut(&id) {
            if let (Some(d), Some(_)) = (call.direction, call.permit.take()) {
                m::call_outcome(d.as_str(), if cancelling { "cancelled" } else { "refused_downstream" });
            }
        }
    }

    /// (Re)starts timer C of a branch (§16.7 step 2: reset at each provisional).
    fn arm_timer_c(&mut self, now: Instant, id: u64, idx: usize) {
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.branches.get_mut(idx)) else { return };
        let key = self.timers.arm(now, self.cfg.timers.timer_c, Owner::Call(id), Timer::C, Slot::branch(idx));
        if let Some(old) = b.timer_c.replace(key) {
            self.timers.cancel(old);
        }
    }

    fn note_failover(&mut self, id: u64, idx: usize, code: u16) {
        let Some(b) = self.calls.get_mut(&id).and_then(|c| c.branches.get_mut(idx)) else { return };
        b.abandoned = true;
        b.txn.abandon();
        if let Some(h) = &b.hop {
            m::failover(&h.group, &h.az);
            tracing::info!(hop = %h.addr, carrier = &*h.group, az = &*h.az, code, "failing over to the next hop");
        }
    }

    /// The current branch answered 2xx: relay it and hand the slot to a dialog.
    fn relay_2xx(&mut self, now: Instant, id: u64, idx: usize, msg: Msg) {
        // A 2xx retransmitted after a BYE ended the dialog must not make it
        // again (slotless, it would send BYEs both ways when its ACK wait ran out).
        let first = self.calls.get(&id).is_some_and(|c| !matches!(c.phase, Phase::Ended(End::Answered)));
        let bytes = build::forward_response(&msg);
        self.respond_upstream(now, id, 200, bytes);
        let Some(call) = self.calls.get_mut(&id) else { return };
        let permit = call.permit.take();
        if let (Some(d), true) = (call.direction, permit.is_some()) {
            m::call_outcome(d.as_str(), "answered");
        }
        let Some(b) = call.branches.get(idx) else { return };
        let callee = b.to;
        if first && call.is_new() {
            let upstream = call.upstream;
            let number = call.number;
            let invite = call.invite.clone();
            let early_cseq = call.early_cseq;
            let record = call.record.take();
            self.dialog_established(now, id, &invite, &msg, upstream, callee, permit, number);
            if let Some(rec) = record {
                self.dialog_attach_record(id, rec);
            }
            if early_cseq != [0, 0] {
                self.dialog_raise_cseq(id, early_cseq);
            }
        } else if let Some(p) = permit {
            drop(p);
        }
    }

    /// The current branch failed without a usable answer.
    pub(super) fn branch_failed(&mut self, now: Instant, id: u64, why: Failure) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        if call.ended() {
            return;
        }
        let Some(idx) = call.branches.len().checked_sub(1) else { return };
        let Some(b) = call.branches.get(idx) else { return };
        if b.abandoned {
            return;
        }
        let heard = b.heard;
        if let Some(b) = self.calls.get_mut(&id).and_then(|c| c.branches.get_mut(idx)) {
            b.answer.get_or_insert(match why {
                Failure::Transport => HopAnswer::Unreachable,
                Failure::Timeout | Failure::NoFinal => HopAnswer::Timeout,
            });
        }
        let outcome = match why {
            Failure::Transport => Outcome::TransportError,
            Failure::Timeout | Failure::NoFinal => Outcome::Timeout,
        };
        let decision = classify(outcome, heard == Heard::Ringing);
        self.note_failover(id, idx, 0);
        if heard.provisional() {
            self.send_cancel(now, id, idx);
        } else if let Some(b) = self.calls.get_mut(&id).and_then(|c| c.branches.get_mut(idx)) {
            // Given up before any provisional: a CANCEL may not be sent yet (§9.1), but a
            // late 18x must get one, or the hop rings on with nobody behind the call.
            b.cancel = CancelState::Pending;
        }
        if self.calls.get(&id).is_some_and(|c| c.cancelling()) {
            return self.final_487(now, id);
        }
        match decision {
            Step::NextHop => self.try_next_hop(now, id),
            _ => self.final_response(now, id, Reject::Timeout),
        }
    }

    /// A timer of a call: its server transaction, a branch, or its dialog.
    pub(super) fn call_timer(&mut self, now: Instant, id: u64, f: Fired) {
        if matches!(f.timer, Timer::AckWait | Timer::MaxDuration) {
            return self.dialog_timer(now, id, f.timer);
        }
        if f.timer == Timer::Admit {
            return self.admit_timer(now, id);
        }
        let tv = self.cfg.timers;
        let Some(call) = self.calls.get_mut(&id) else {
            self.refusal_timer(now, id, f);
            return;
        };
        let mut out = Actions::new();
        let idx = match f.slot {
            Slot::Branch(i) => i as usize,
            Slot::Server | Slot::Whole | Slot::Client => {
                let outcome = call.server.on_timer(f.timer, &tv, &mut out);
                let up = call.upstream;
                if outcome == TimerOutcome::NoAck {
                    tracing::debug!(call_id = call.invite.call_id(), "no ACK for our final response");
                }
                self.run(now, up, Owner::Call(id), Slot::Server, out);
                return self.maybe_reap(now, id);
            }
        };
        let current = call.branches.len() == idx + 1;
        let Some(b) = call.branches.get_mut(idx) else { return };
        match f.timer {
            Timer::Failover => {
                if current && !b.heard.provisional() && !b.abandoned {
                    self.branch_failed(now, id, Failure::Timeout);
                }
                return self.maybe_reap(now, id);
            }
            Timer::C => {
                if current && !b.abandoned && b.txn.state() == ClientState::Proceeding {
                    self.branch_failed(now, id, Failure::NoFinal);
                }
                return self.maybe_reap(now, id);
            }
            _ => {}
        }
        let to = b.to;
        let outcome = b.txn.on_timer(f.timer, &mut out);
        // An abandoned or cancelled branch that never answered: timer B ends it.
        let mut gave_up = false;
        if f.timer == Timer::B
            && (b.abandoned || b.cancel != CancelState::No)
            && b.txn.state() != ClientState::Terminated
        {
            b.abandon();
            gave_up = true;
        }
        self.run(now, to, Owner::Call(id), f.slot, out);
        if gave_up && self.calls.get(&id).is_some_and(|c| c.cancelling()) {
            // The callee never answered our CANCEL: the caller still gets its 487.
            self.final_487(now, id);
        }
        if outcome == TimerOutcome::Timeout && current {
            self.branch_failed(now, id, Failure::Timeout);
        }

        self.maybe_reap(now, id);
    }

    fn maybe_reap(&mut self, _now: Instant, id: u64) {
        let Some(call) = self.calls.get(&id) else { return };
        let done = call.reapable() || (call.server.state() == ServerState::Terminated && call.branches.is_empty());
        if done {
            self.remove_call(id);
        }
    }

    pub(super) fn remove_call(&mut self, id: u64) {
        if let Some(call) = self.calls.remove(&id) {
            self.unindex_early(id, call.early_key);
            self.invite_keys.remove(&call.key);
            for b in &call.branches {
                self.branches.remove(&b.branch);
                if let Some(k) = b.timer_c {
                    self.timers.cancel(k);
                }
            }
        }
    }
}
