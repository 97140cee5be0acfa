//! Claim, release, restore, set flow and expiry (seeds: claiming, releasing).
//! Each method validates, commits, applies, then answers (see `mod.rs`).

use super::store::Batch;
use super::{is_expired, live, Inventory, InventoryError, PortDirection, PortStatus, State, RELEASE_WINDOW_S};
use crate::routing::{build_record, check_flow, ClaimSpec, NumberRecord, NumberState, RoutingError};
use crate::sip::E164;

impl Inventory {
    /// Claims `n`: it must be unknown (or a release whose window is over).
    /// Active → `AlreadyClaimed`; in the deletion queue → `InDeletionQueue`;
    /// in a pending port → `NumberBusyInPort`.
    pub fn claim(&self, n: E164, spec: ClaimSpec, now_unix_s: u64) -> Result<NumberRecord, InventoryError> {
        let mut st = self.lock_fresh()?;
        let snap = self.table.load();
        if let Some(cur) = live(&snap, n, now_unix_s) {
            return Err(match cur.state {
                NumberState::Active => RoutingError::AlreadyClaimed(n),
                NumberState::Released { .. } => RoutingError::InDeletionQueue(n),
                NumberState::PortInPending { .. } | NumberState::PortOutPending { .. } => {
                    RoutingError::NumberBusyInPort(n)
                }
            }
            .into());
        }
        let rec = build_record(n, &spec, &snap.peers, NumberState::Active)?;
        drop(snap);
        self.commit_one(&mut st, n, rec)
    }

    /// Releases `n` to the deletion queue: 410 for 7 days, restorable, then gone.
    /// Only an active number (or one being ported out) can be released.
    pub fn release(&self, n: E164, now_unix_s: u64) -> Result<NumberRecord, InventoryError> {
        let mut st = self.lock_fresh()?;
        let snap = self.table.load();
        let cur = live(&snap, n, now_unix_s).ok_or(RoutingError::UnknownNumber(n))?;
        match cur.state {
            NumberState::Active | NumberState::PortOutPending { .. } => {}
            NumberState::Released { .. } => return Err(RoutingError::NotClaimed(n).into()),
            NumberState::PortInPending { .. } => return Err(RoutingError::NumberBusyInPort(n).into()),
        }
        let rec = NumberRecord { state: NumberState::Released { released_at_unix_s: now_unix_s }, ..cur.to_record() };
        drop(snap);
        self.commit_one(&mut st, n, rec)
    }

    /// Restores a released number within 7 days of its release, with its old
    /// record. If a pending port-out order lists it, it goes back to that order.
    pub fn restore(&self, n: E164, now_unix_s: u64) -> Result<NumberRecord, InventoryError> {
        let mut st = self.lock_fresh()?;
        let snap = self.table.load();
        let cur = snap.record(n).ok_or(RoutingError::UnknownNumber(n))?;
        let NumberState::Released { released_at_unix_s } = cur.state else {
            return Err(RoutingError::NotReleased(n).into());
        };
        if now_unix_s >= released_at_unix_s.saturating_add(RELEASE_WINDOW_S) {
            return Err(RoutingError::RestoreWindowOver(n).into());
        }
        let state = match pending_port_out(&st, n) {
            Some(order) => NumberState::PortOutPending { order },
            None => NumberState::Active,
        };
        let rec = NumberRecord { state, ..cur.to_record() };
        drop(snap);
        self.commit_one(&mut st, n, rec)
    }

    /// Sets the flow inbound calls to `n` are handed to. Allowed while the
    /// number is active or in a port (to prepare a port-in); not once released.
    pub fn set_flow(&self, n: E164, flow: String, now_unix_s: u64) -> Result<NumberRecord, InventoryError> {
        let mut st = self.lock_fresh()?;
        let flow = check_flow(flow.trim())?;
        let snap = self.table.load();
        let cur = live(&snap, n, now_unix_s).ok_or(RoutingError::UnknownNumber(n))?;
        if let NumberState::Released { .. } = cur.state {
            return Err(RoutingError::NotClaimed(n).into());
        }
        let rec = NumberRecord { flow: Some(flow), ..cur.to_record() };
        drop(snap);
        self.commit_one(&mut st, n, rec)
    }

    /// Deletes every number released at least 7 days before `now_unix_s`
    /// (gone for good: 404, claimable afresh), in one commit and one swap.
    /// Returns how many were deleted. Call it periodically.
    pub fn expire(&self, now_unix_s: u64) -> Result<usize, InventoryError> {
        let mut st = self.lock_fresh()?;
        let cutoff = now_unix_s.saturating_sub(RELEASE_WINDOW_S);
        let snap = self.table.load();
        let numbers: Vec<(E164, Option<NumberRecord>)> = st
            .released
            .iter()
            .take_while(|(at, _)| *at <= cutoff)
            .filter(|(_, n)| snap.record(*n).is_some_and(|r| is_expired(&r, now_unix_s)))
            .map(|&(_, n)| (n, None))
            .collect();
        drop(snap);
        let count = numbers.len();
        if count == 0 {
            return Ok(0);
        }
        match self.commit(&mut st, Batch { numbers, ..Batch::default() }) {
            // Cluster mode: another edge expired them first; its event brings them here.
            Err(InventoryError::Stale(_)) => return Ok(0),
            r => r?,
        }
        tracing::info!(count, "expired released numbers");
        Ok(count)
    }

    fn commit_one(&self, st: &mut State, n: E164, rec: NumberRecord) -> Result<NumberRecord, InventoryError> {
        self.commit(st, Batch { numbers: vec![(n, Some(rec.clone()))], ..Batch::default() })?;
        Ok(rec)
    }
}

/// The pending port-out order that lists `n`, if any.
fn pending_port_out(st: &State, n: E164) -> Option<u64> {
    st.ports
        .values()
        .find(|p| p.status == PortStatus::Pending && p.direction == PortDirection::Out && p.numbers.contains(&n))
        .map(|p| p.id)
}
