//! Cluster mode: a call to a capped number waits for the shared admission.
//!
//! The call is set up as usual (server transaction, 100 Trying, local
//! slots), gets a lease attached to its permit, and its first hop is not
//! tried until the verdict comes in: the core queues an [`AdmitRequest`] for
//! the driver (`poll_admit`) and arms `Timer::Admit`. Whichever comes first
//! decides: the verdict (`handle_admit`), or the timer, which applies
//! `on_backend_down` as if Redis had not answered. A verdict that comes
//! after that is ignored (the lease stays with the call and is renewed, so a
//! call admitted locally is written back to Redis).

use std::sync::Arc;
use std::time::Instant;

use super::timer::{Owner, Slot, Timer, TimerKey};
use super::{Core, FastMap, Reject};
use crate::cluster::{local_share, AdmitRequest, Lease, Verdict};
use crate::config::BackendDown;
use crate::metrics as m;
use crate::sip::E164;

/// One call waiting for its verdict.
struct Waiting {
    number: E164,
    cap: u32,
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

impl Core {
    /// Asks for the shared admission of call `id` (its local slots are held).
    pub(super) fn ask_admit(&mut self, now: Instant, id: u64, number: E164, cap: u32) {
        let Some(settings) = self.cfg.cluster else { return self.try_next_hop(now, id) };
        let Some(call) = self.calls.get_mut(&id) else { return };
        let mut call_key = String::with_capacity(call.invite.call_id().len() + 17);
        call_key.push_str(call.invite.call_id());
        call_key.push('/');
        call_key.push_str(call.invite.from_tag().unwrap_or(""));
        let lease = Arc::new(match &self.cluster {
            Some(link) => link.lease(number, &call_key),
            None => Lease::new(crate::cluster::scripts::lease_key(number).into(), call_key.into(), None),
        });
        let weak = Arc::downgrade(&lease);
        match call.permit.as_mut() {
            Some(p) => p.attach_lease(lease),
            None => return,
        }
        let timer = self.timers.arm(now, settings.admit_timeout, Owner::Call(id), Timer::Admit, Slot::Whole);
        self.admitting.waiting.insert(id, Waiting { number, cap, timer });
        self.admitting.out.push_back(AdmitRequest { shard: self.shard as usize, call: id, lease: weak, cap });
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
            Verdict::Unknown => self.backend_down(w.number, w.cap),
        };
        match admitted {
            Ok(()) => self.try_next_hop(now, id),
            Err(why) => self.final_response(now, id, why),
        }
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
