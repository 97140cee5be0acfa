//! Carrier trunk limits in the call path (SPEC §10).
//!
//! Inbound, the carrier is known when the INVITE arrives: its slot is taken
//! right after the number slot, and a refusal is a 503 with Retry-After.
//! Outbound, the carrier is known only per hop: before a branch goes to a
//! carrier's link the call takes a slot with that carrier, which frees the
//! slot of the carrier it leaves (failover), and a carrier over its limits is
//! skipped like a down link. The slot is kept in the call's number permit, so
//! every way a call ends releases both together.

use std::sync::Arc;
use std::time::Instant;

use super::call::Phase;
use super::context::FLOW_ENGINE;
use super::decide::{Decision, Direction};
use super::{Core, Reject};
use crate::failover::HopKey;
use crate::routing::{RoutingSnapshot, Source};

impl Core {
    /// An admitted inbound call also takes a slot with the carrier it came from.
    pub(super) fn inbound_trunk(
        &self,
        now: Instant,
        source: Source,
        snap: &RoutingSnapshot,
        mut d: Decision,
    ) -> Result<Decision, Reject> {
        let Source::Carrier(i) = source else { return Ok(d) };
        let Some(carrier) = snap.peers.carriers.get(i) else { return Ok(d) };
        match self.admission.admit_trunk(&mut d.permit, &carrier.name, now) {
            Ok(()) => Ok(d),
            Err(why) => {
                // `d` (with its number slot) is dropped here: the call takes nothing.
                tracing::info!(
                    carrier = &*carrier.name,
                    reason = why.as_str(),
                    "inbound call over the carrier's limits"
                );
                Err(Reject::TrunkFull)
            }
        }
    }

    /// Whether outbound call `id` may try `hop` now as far as the hop's
    /// carrier's limits go; on true the call holds a slot with that carrier.
    pub(super) fn outbound_trunk(&mut self, now: Instant, id: u64, hop: &HopKey) -> bool {
        let Some(call) = self.calls.get_mut(&id) else { return false };
        if call.direction != Some(Direction::Outbound) || &*hop.group == FLOW_ENGINE {
            return true;
        }
        let Phase::Routing(hops) = &mut call.phase else { return false };
        // One refusal per carrier per call: its other links would only be refused again.
        if hops.trunk_refused.as_deref() == Some(&*hop.group) {
            return false;
        }
        let Some(permit) = call.permit.as_mut() else { return true };
        match self.admission.admit_trunk(permit, &hop.group, now) {
            Ok(()) => true,
            Err(why) => {
                tracing::info!(carrier = &*hop.group, reason = why.as_str(), "skipping a carrier over its limits");
                hops.trunk_refused = Some(Arc::clone(&hop.group));
                false
            }
        }
    }
}
