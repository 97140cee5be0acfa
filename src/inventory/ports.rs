//! Port orders (seed: porting). A port-in schedules numbers that answer 404
//! until the port event activates them; a port-out keeps numbers routable
//! until the port event removes them. All numbers of an order change with one
//! commit and one table swap.

use std::collections::HashSet;

use super::store::Batch;
use super::{live, Inventory, InventoryError};
use crate::routing::{build_record, parse_number, ClaimSpec, NumberRecord, NumberState, RoutingError};
use crate::sip::{NumberKind, E164};

/// Into or out of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortDirection {
    /// Numbers come to us from another carrier.
    In,
    /// Numbers leave us for another carrier.
    Out,
}

/// Where a port order is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortStatus {
    /// Created; waiting for the port event.
    Pending,
    /// The port event happened.
    Completed,
    /// Called off before the port event.
    Cancelled,
}

/// A port order as stored and returned by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortOrder {
    /// Order id (from 1, never reused).
    pub id: u64,
    /// In or out.
    pub direction: PortDirection,
    /// The numbers, in request order.
    pub numbers: Vec<E164>,
    /// Carriers of the ported-in numbers (informational for a port-out).
    pub carriers: Vec<String>,
    /// Flow of the ported-in numbers.
    pub flow: Option<String>,
    /// Kind override for the ported-in numbers; `None` = each number's default.
    pub kind: Option<NumberKind>,
    /// The port event is refused before this time (unix seconds), if set.
    pub window_start_unix_s: Option<u64>,
    /// Pending, completed or cancelled.
    pub status: PortStatus,
}

/// `POST /v1/ports` body.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRequest {
    /// `"in"` or `"out"`.
    pub direction: PortDirection,
    /// Numbers in any accepted dialed form.
    pub numbers: Vec<String>,
    /// Carriers for a port-in (a DID takes exactly one).
    #[serde(default)]
    pub carriers: Vec<String>,
    /// Flow for a port-in.
    pub flow: Option<String>,
    /// Earliest completion time (unix seconds).
    pub window_start: Option<u64>,
}

impl Inventory {
    /// Creates a port order. In: no number may be ours (active, released
    /// within 7 days, or in another port); each gets a `PortInPending` record
    /// built from the order's carriers and flow (checked like a claim).
    /// Out: every number must be ours and active; each becomes `PortOutPending`.
    pub fn create_port(&self, req: PortRequest, now_unix_s: u64) -> Result<PortOrder, InventoryError> {
        let mut st = self.lock_fresh()?;
        let numbers = parse_numbers(&req.numbers)?;
        // Validated with the local next id; cluster mode then takes a
        // cluster-wide one (so a refused order costs Redis nothing).
        let id = st.next_port_id;
        let snap = self.table.load();
        let mut changes = Vec::with_capacity(numbers.len());
        let carriers: Vec<String> = req.carriers.iter().map(|c| c.trim().to_owned()).collect();
        match req.direction {
            PortDirection::In => {
                let spec = ClaimSpec { flow: req.flow.clone(), carriers: carriers.clone(), ..ClaimSpec::default() };
                for &n in &numbers {
                    if let Some(cur) = live(&snap, n, now_unix_s) {
                        return Err(match cur.state {
                            NumberState::Active => RoutingError::AlreadyClaimed(n),
                            NumberState::Released { .. } => RoutingError::InDeletionQueue(n),
                            _ => RoutingError::NumberBusyInPort(n),
                        }
                        .into());
                    }
                    let rec = build_record(n, &spec, &snap.peers, NumberState::PortInPending { order: id })?;
                    changes.push((n, Some(rec)));
                }
            }
            PortDirection::Out => {
                for &n in &numbers {
                    let cur = live(&snap, n, now_unix_s).ok_or(RoutingError::UnknownNumber(n))?;
                    match cur.state {
                        NumberState::Active => {}
                        NumberState::Released { .. } => return Err(RoutingError::NotClaimed(n).into()),
                        _ => return Err(RoutingError::NumberBusyInPort(n).into()),
                    }
                    let rec = NumberRecord { state: NumberState::PortOutPending { order: id }, ..cur.to_record() };
                    changes.push((n, Some(rec)));
                }
            }
        }
        drop(snap);
        let id = self.new_port_id(&st)?;
        for (_, rec) in &mut changes {
            if let Some(NumberRecord {
                state: NumberState::PortInPending { order } | NumberState::PortOutPending { order },
                ..
            }) = rec
            {
                *order = id;
            }
        }
        let order = PortOrder {
            id,
            direction: req.direction,
            numbers,
            carriers,
            flow: req.flow,
            kind: None,
            window_start_unix_s: req.window_start,
            status: PortStatus::Pending,
        };
        let next_port_id = Some(st.next_port_id.max(id + 1));
        let batch = Batch { numbers: changes, ports: vec![order.clone()], next_port_id, ..Batch::default() };
        self.commit(&mut st, batch)?;
        Ok(order)
    }

    /// Calls off a pending order. In: its pending records are removed.
    /// Out: its numbers are active again (those released meanwhile stay released).
    pub fn cancel_port(&self, id: u64) -> Result<PortOrder, InventoryError> {
        let mut st = self.lock_fresh()?;
        let order = pending_order(&st.ports, id)?;
        let snap = self.table.load();
        let mut changes = Vec::new();
        for &n in &order.numbers {
            let Some(cur) = snap.record(n) else { continue };
            match (order.direction, &cur.state) {
                (PortDirection::In, NumberState::PortInPending { order: o }) if *o == id => changes.push((n, None)),
                (PortDirection::Out, NumberState::PortOutPending { order: o }) if *o == id => {
                    changes.push((n, Some(NumberRecord { state: NumberState::Active, ..cur.to_record() })))
                }
                _ => {}
            }
        }
        drop(snap);
        let order = PortOrder { status: PortStatus::Cancelled, ..order };
        self.commit(&mut st, Batch { numbers: changes, ports: vec![order.clone()], ..Batch::default() })?;
        Ok(order)
    }

    /// The port event. Refused before the order's window opens.
    /// In: its numbers become active (routable). Out: its numbers are removed
    /// (404) — also those released meanwhile, which can no longer be restored.
    pub fn complete_port(&self, id: u64, now_unix_s: u64) -> Result<PortOrder, InventoryError> {
        let mut st = self.lock_fresh()?;
        let order = pending_order(&st.ports, id)?;
        if let Some(start) = order.window_start_unix_s {
            if now_unix_s < start {
                return Err(RoutingError::PortWindowNotOpen { id, window_start_unix_s: start, now_unix_s }.into());
            }
        }
        let snap = self.table.load();
        let mut changes = Vec::new();
        for &n in &order.numbers {
            let Some(cur) = snap.record(n) else { continue };
            match (order.direction, &cur.state) {
                (PortDirection::In, NumberState::PortInPending { order: o }) if *o == id => {
                    changes.push((n, Some(NumberRecord { state: NumberState::Active, ..cur.to_record() })))
                }
                (PortDirection::Out, NumberState::PortOutPending { order: o }) if *o == id => changes.push((n, None)),
                (PortDirection::Out, NumberState::Released { .. }) => changes.push((n, None)),
                _ => {}
            }
        }
        drop(snap);
        let order = PortOrder { status: PortStatus::Completed, ..order };
        self.commit(&mut st, Batch { numbers: changes, ports: vec![order.clone()], ..Batch::default() })?;
        Ok(order)
    }
}

fn pending_order(ports: &std::collections::BTreeMap<u64, PortOrder>, id: u64) -> Result<PortOrder, RoutingError> {
    let order = ports.get(&id).ok_or(RoutingError::UnknownPort(id))?;
    if order.status != PortStatus::Pending {
        return Err(RoutingError::PortFinished(id));
    }
    Ok(order.clone())
}

fn parse_numbers(raw: &[String]) -> Result<Vec<E164>, RoutingError> {
    if raw.is_empty() {
        return Err(RoutingError::EmptyPort);
    }
    let mut seen = HashSet::with_capacity(raw.len());
    raw.iter()
        .map(|s| {
            let n = parse_number(s)?;
            if seen.insert(n) {
                Ok(n)
            } else {
                Err(RoutingError::DuplicateNumber(n))
            }
        })
        .collect()
}
