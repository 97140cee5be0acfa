//! Cluster mode: a call to a capped number or carrier waits for the shared
//! admission.
//!
//! The call is set up as usual (server transaction, 100 Trying, local
//! slots), gets its leases attached to its permit, and its first hop is not
//! tried until the verdict comes in: the core queues an [`AdmitRequest`] for
//! the driver (`poll_admit`) and arms `Timer::Admit`. Whichever comes first
//! decides: the verdict (`handle_admit`), or the timer, which applies
//! `on_backend_down` as if Redis had not answered. A verdict that comes
//! after that is ignored (the lease stays with the call and is renewed, so a
//! call admitted locally is written back to Redis).
//!
//! Inbound, the carrier is known with the INVITE: the number and the carrier
//! are asked together (one request, one round trip). Outbound, the carrier
//! is known per hop: the number is asked first, then each capped carrier
//! before its first branch (`ask_trunk`); a refusal skips that carrier like a
//! down link.

use std::sync::Arc;
use std::time::Instant;

use super::call::Phase;
use super::timer::{Owner, Slot, Timer, TimerKey};
use super::{Core, FastMap, Reject};
use crate::cluster::{local_share, AdmitRequest, Ask, Lease, Verdict};
use crate::config::BackendDown;
use crate::metrics as m;
use crate::sip::E164;

/// One call waiting for its verdict.
struct Waiting {
    /// The capped number asked about, with its cap.
    number: Option<(E164, u32)>,
    /// The call's carrier slot was asked about too.
    carrier: bool,
    /// An outbound hop's carrier: a refusal skips it instead of ending the call.
    hop: bool,
    timer: TimerKey,
}

/// The calls waiting and the requests not yet taken by the driver.
#[derive(Default)]
pub(super) struct PendingAdmits {
    waiting: FastMap<u64, Waiting>,
    out: std::collections::VecDeque<AdmitRequest>,
}

impl PendingAdmits {
    /// Calls waiting for a verdict.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.waiting.len()
    }
}

/// What one outbound hop's carrier check says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HopTrunk {
    /// Send the branch.
    Go,
    /// Skip the hop.
    Skip,
    /// The shared admission was asked: wait for its verdict.
    Wait,
}

impl Core {
    /// The call's lease key part: Call-ID and From tag (a retransmission or
    /// a failover is the same member).
    fn call_key(&self, id: u64) -> Option<String> {
        let call = self.calls.get(&id)?;
        let mut call_key = String::with_capacity(call.invite.call_id().len() + 17);
        call_key.push_str(call.invite.call_id());
        call_key.push('/');
        call_key.push_str(call.invite.from_tag().unwrap_or(""));
        Some(call_key)
    }

    /// Attaches a carrier lease to call `id`'s trunk slot, if the carrier is
    /// capped and not yet cleared; returns what to ask.
    fn trunk_ask(&mut self, id: u64, call_key: &str) -> Option<Ask> {
        let call = self.calls.get_mut(&id)?;
        let trunk = call.permit.as_mut()?.trunk_mut()?;
        if !trunk.capped() || trunk.cleared() {
            return None;
        }
        let (cap, cps) = trunk.limits();
        let lease = Arc::new(match &self.cluster {
            Some(link) => link.carrier_lease(trunk.carrier(), call_key, cap > 0),
            None => Lease::new(crate::cluster::scripts::carrier_key(trunk.carrier()).into(), call_key.into(), None),
        });
        let weak = Arc::downgrade(&lease);
        trunk.attach_lease(lease);
        Some(Ask { lease: weak, cap, cps })
    }

    /// Asks for the shared admission of call `id` (its local slots are
    /// held): its number when `cap` is set, and its carrier slot (inbound)
    /// when the carrier is capped. Nothing to ask: the call goes on.
    pub(super) fn ask_admit(&mut self, now: Instant, id: u64, number: E164, cap: Option<u32>) {
        let Some(settings) = self.cfg.cluster else { return self.try_next_hop(now, id) };
        let trunk_capped = |c: &super::call::Call| {
            c.permit.as_ref().and_then(|p| p.trunk_ref()).is_some_and(|t| t.capped() && !t.cleared())
        };
        if cap.is_none() && !self.calls.get(&id).is_some_and(|c| trunk_capped(c)) {
            // Uncapped number and carrier: Redis is never asked.
            return self.try_next_hop(now, id);
        }
        let Some(call_key) = self.call_key(id) else { return };
        let number_ask = match cap {
            Some(cap) => {
                let lease = Arc::new(match &self.cluster {
                    Some(link) => link.lease(number, &call_key),
                    None => {
                        Lease::new(crate::cluster::scripts::lease_key(number).into(), call_key.clone().into(), None)
                    }
                });
                let weak = Arc::downgrade(&lease);
                match self.calls.get_mut(&id).and_then(|c| c.permit.as_mut()) {
                    Some(p) => p.attach_lease(lease),
                    None => return,
                }
                Some(Ask { lease: weak, cap, cps: 0 })
            }
            None => None,
        };
        let carrier = self.trunk_ask(id, &call_key);
        if number_ask.is_none() && carrier.is_none() {
            return self.try_next_hop(now, id);
        }
        let timer = self.timers.arm(now, settings.admit_timeout, Owner::Call(id), Timer::Admit, Slot::Whole);
        let waiting = Waiting { number: cap.map(|c| (number, c)), carrier: carrier.is_some(), hop: false, timer };
        self.admitting.waiting.insert(id, waiting);
        let req = AdmitRequest { shard: self.shard as usize, call: id, number: number_ask, carrier };
        self.admitting.out.push_back(req);
    }

    /// Outbound call `id` holds a local slot with its hop's carrier: in
    /// cluster mode a capped carrier not yet cleared is asked first.
    pub(super) fn ask_trunk(&mut self, now: Instant, id: u64) -> HopTrunk {
        let Some(settings) = self.cfg.cluster else { return HopTrunk::Go };
        if !self.calls.get(&id).is_some_and(|c| c.direction == Some(super::decide::Direction::Outbound)) {
            return HopTrunk::Go;
        }
        let Some(call_key) = self.call_key(id) else { return HopTrunk::Skip };
        let Some(carrier) = self.trunk_ask(id, &call_key) else { return HopTrunk::Go };
        let timer = self.timers.arm(now, settings.admit_timeout, Owner::Call(id), Timer::Admit, Slot::Whole);
        self.admitting.waiting.insert(id, Waiting { number: None, carrier: true, hop: true, timer });
        let req = AdmitRequest { shard: self.shard as usize, call: id, number: None, carrier: Some(carrier) };
        self.admitting.out.push_back(req);
        HopTrunk::Wait
    }

    /// The next shared-admission request for the driver.
    pub fn poll_admit(&mut self) -> Option<AdmitRequest> {
        self.admitting.out.pop_front()
    }

    /// The shared admission's answer for call `call`.
    pub fn handle_admit(&mut self, now: Instant, call: u64, verdict: Verdict) {
        let Some(w) = self.admitting.waiting.remove(&call) else { return };
        self.timers.cancel(w.timer);
        self.admit_decided(now, call, w, verdict);
    }

    /// `Timer::Admit`: no verdict in time; decide as if Redis were down.
    pub(super) fn admit_timer(&mut self, now: Instant, call: u64) {
        let Some(w) = self.admitting.waiting.remove(&call) else { return };
        self.admit_decided(now, call, w, Verdict::Unknown);
    }

    fn admit_decided(&mut self, now: Instant, id: u64, w: Waiting, verdict: Verdict) {
        let admitted = match verdict {
            Verdict::Admitted => Ok(()),
            Verdict::Refused => Err(Reject::NumberBusy),
            Verdict::TrunkRefused(why) => {
                if let Some(t) = self.calls.get(&id).and_then(|c| c.permit.as_ref()).and_then(|p| p.trunk_ref()) {
                    t.count_refused(why);
                    tracing::info!(
                        carrier = t.carrier(),
                        reason = why.as_str(),
                        "carrier at its limits across the cluster"
                    );
                }
                Err(Reject::TrunkFull)
            }
            Verdict::Unknown => {
                let number = w.number.map_or(Ok(()), |(n, cap)| self.backend_down(n, cap));
                number.and_then(|()| if w.carrier { self.trunk_backend_down(now, id) } else { Ok(()) })
            }
        };
        match admitted {
            Ok(()) => {
                if w.carrier {
                    if let Some(t) = self.calls.get_mut(&id).and_then(|c| c.permit.as_mut()).and_then(|p| p.trunk_mut())
                    {
                        t.clear();
                    }
                }
                if w.hop {
                    // Back to the hop that asked: its carrier is cleared now.
                    if let Some(Phase::Routing(hops)) = self.calls.get_mut(&id).map(|c| &mut c.phase) {
                        hops.next = hops.next.saturating_sub(1);
                    }
                }
                self.try_next_hop(now, id)
            }
            Err(why) if w.hop && why != Reject::ClusterDown => self.skip_trunk(now, id),
            Err(why) => self.final_response(now, id, why),
        }
    }

    /// An outbound hop's carrier was refused: give its slot back, skip its
    /// links, try the next hop.
    fn skip_trunk(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let carrier = call.permit.as_ref().and_then(|p| p.trunk()).map(Arc::<str>::from);
        if let Some(p) = call.permit.as_mut() {
            p.drop_trunk();
        }
        if let Phase::Routing(hops) = &mut call.phase {
            hops.trunk_refused = carrier;
        }
        self.try_next_hop(now, id)
    }

    /// `on_backend_down` for the call's carrier slot.
    fn trunk_backend_down(&self, now: Instant, id: u64) -> Result<(), Reject> {
        let policy = self.cfg.cluster.map_or(BackendDown::FailOpen, |c| c.policy);
        let Some(trunk) = self.calls.get(&id).and_then(|c| c.permit.as_ref()).and_then(|p| p.trunk_ref()) else {
            return Ok(());
        };
        let (label, result) = match policy {
            BackendDown::LocalShare => {
                let alive = self.cluster.as_ref().map_or(1, |l| l.view.alive());
                ("local_share", self.admission.trunks().take_share(trunk, now, alive).map_err(|_| Reject::TrunkFull))
            }
            // The local pre-check (`try_admit`, at the full limits) already passed.
            BackendDown::FailOpen => ("fail_open", Ok(())),
            BackendDown::FailClosed => ("fail_closed", Err(Reject::ClusterDown)),
        };
        let verdict = if result.is_ok() { "admitted" } else { "refused" };
        metrics::counter!(m::CLUSTER_FALLBACK_TOTAL, "policy" => label, "result" => verdict).increment(1);
        result
    }

    /// `on_backend_down`: whether this instance may take the call alone.
    fn backend_down(&self, number: E164, cap: u32) -> Result<(), Reject> {
        let policy = self.cfg.cluster.map_or(BackendDown::FailOpen, |c| c.policy);
        // This call's own local slot is already counted in `active`.
        let active = self.admission.active(number);
        let (label, result) = match policy {
            BackendDown::LocalShare => {
                let alive = self.cluster.as_ref().map_or(1, |l| l.view.alive());
                ("local_share", if active <= local_share(cap, alive) { Ok(()) } else { Err(Reject::NumberBusy) })
            }
            BackendDown::FailOpen => ("fail_open", if active <= cap { Ok(()) } else { Err(Reject::NumberBusy) }),
            BackendDown::FailClosed => ("fail_closed", Err(Reject::ClusterDown)),
        };
        let verdict = if result.is_ok() { "admitted" } else { "refused" };
        metrics::counter!(m::CLUSTER_FALLBACK_TOTAL, "policy" => label, "result" => verdict).increment(1);
        result
    }
}
