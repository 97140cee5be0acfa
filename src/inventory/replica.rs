//! Cluster mode: the inventory as a replica of the cluster's event stream
//! (`cluster::events`). A lifecycle event is validated against the local
//! state once it has caught up with the stream, written to Redis with a
//! compare-and-set on each record it changes (stale → 409, Redis down → 503:
//! nothing is acknowledged that Redis does not hold), and applied locally by
//! the same catch-up that applies every other instance's events, in stream
//! order, each in one redb transaction with the id of the entry it came from.

use std::sync::Arc;

use super::store::{Batch, Interner, StoredRecord};
use super::PortOrder;
use super::{Inventory, InventoryError, State};
use crate::cluster::events::{Entry, EventId, EventLog, LogError, PortChange, MAX_EVENT_NUMBERS};
use crate::metrics as m;
use crate::routing::NumberRecord;
use crate::sip::E164;

/// Entries read per round trip while catching up.
const CATCH_UP_CHUNK: usize = 500;
/// Canonical records read (and compared, and written if they differ) per
/// round trip while resyncing: bounded memory at any inventory size.
const RESYNC_PAGE: usize = 2000;

impl From<LogError> for InventoryError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Stale(n) => InventoryError::Stale(n),
            LogError::Down(why) => InventoryError::ClusterDown(why),
            // Another edge completed or cancelled it first: what one edge answers then.
            LogError::StalePort(id) => InventoryError::Routing(crate::routing::RoutingError::PortFinished(id)),
        }
    }
}

fn to_json(r: &NumberRecord) -> Result<String, InventoryError> {
    serde_json::to_string(&StoredRecord::from(r)).map_err(InventoryError::Encode)
}

impl Inventory {
    /// Makes this inventory a replica of `log` (cluster mode); once only.
    pub fn attach_log(&self, log: Arc<EventLog>) {
        let _ = self.log.set(log);
    }

    /// When (Redis clock, Unix ms) the last event applied was accepted; `None`
    /// standalone, `Some(0)` before the first. Lock-free (the async control plane reads it).
    pub fn last_event_ms(&self) -> Option<u64> {
        self.log.get().map(|_| self.event_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Applies whatever the stream holds past our last entry (the tail
    /// thread calls this every 100 ms). Returns the entries applied.
    pub fn sync(&self) -> Result<usize, InventoryError> {
        let mut st = self.lock();
        self.catch_up(&mut st)
    }

    /// The last stream entry applied (the tail waits for what follows it).
    pub fn applied(&self) -> EventId {
        self.lock().event
    }

    /// The state lock, caught up with the stream in cluster mode (so an
    /// event is validated against what the cluster holds).
    pub(super) fn lock_fresh(&self) -> Result<std::sync::MutexGuard<'_, State>, InventoryError> {
        let mut st = self.lock();
        self.catch_up(&mut st)?;
        Ok(st)
    }

    pub(super) fn catch_up(&self, st: &mut State) -> Result<usize, InventoryError> {
        let Some(log) = self.log.get() else { return Ok(0) };
        self.join(log, st)?;
        let mut applied = 0;
        loop {
            let entries = log.since(st.event, CATCH_UP_CHUNK)?;
            if entries.is_empty() {
                return Ok(applied);
            }
            for Entry { id, numbers, ports } in entries {
                let numbers = self.decode(id, numbers);
                let ports = decode_ports(id, &ports);
                let next_port_id = next_port_id(st, &ports);
                self.commit_local(st, Batch { numbers, ports, next_port_id, event: Some(id), ..Batch::default() })?;
                st.event = id;
                self.event_ms.store(id.0, std::sync::atomic::Ordering::Relaxed);
                applied += 1;
                m::cluster_event_applied(id.0);
            }
        }
    }

    /// Records from the stream or the canonical hash, as routing records.
    fn decode(&self, id: EventId, changes: Vec<(E164, Option<String>)>) -> Vec<(E164, Option<NumberRecord>)> {
        let peers = self.table.load().peers.clone();
        let mut names = Interner::default();
        let mut numbers = Vec::with_capacity(changes.len());
        for (n, json) in changes {
            let rec = match json.map(|j| serde_json::from_str::<StoredRecord>(&j)) {
                None => None,
                Some(Ok(r)) if r.e164() == n => Some(r.into_record(&peers, &mut names)),
                Some(_) => {
                    // Not a record this build can read: skip that number, keep the rest.
                    tracing::warn!(number = %n, event = ?id, "unreadable record in the cluster store: skipped");
                    continue;
                }
            };
            numbers.push((n, rec));
        }
        numbers
    }

    /// First contact, a Redis that lost its data, or a stream trimmed past
    /// our last entry. An empty stream (a new cluster, or Redis restarted
    /// empty) is filled from our store: the seed imports once for the cluster,
    /// whoever comes first, and a Redis that lost its data gets the numbers
    /// back. Then our records are replaced by the canonical ones, and the tail
    /// goes on from the stream's newest entry.
    fn join(&self, log: &EventLog, st: &mut State) -> Result<(), InventoryError> {
        let first = log.first_id()?;
        let behind = st.event != (0, 0) && first.is_some_and(|f| f > st.event);
        if st.event != (0, 0) && first.is_some() && !behind {
            return Ok(());
        }
        if first.is_none() {
            let ours: Vec<(E164, Option<NumberRecord>)> =
                self.table.load().numbers.iter().map(|r| (r.e164, Some(r.to_record()))).collect();
            if ours.is_empty() && st.ports.is_empty() {
                return Ok(());
            }
            // Our orders go with the first event (or alone, with no numbers).
            let mut ports: Vec<PortChange> =
                st.ports.values().map(|p| Ok((p.id, None, port_json(p)?))).collect::<Result<_, InventoryError>>()?;
            let mut changes = Vec::with_capacity(ours.len().min(MAX_EVENT_NUMBERS));
            let mut chunks: Vec<&[(E164, Option<NumberRecord>)]> = ours.chunks(MAX_EVENT_NUMBERS).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            for chunk in chunks {
                changes.clear();
                for (n, r) in chunk {
                    changes.push((*n, None, r.as_ref().map(to_json).transpose()?));
                }
                match log.publish(&changes, &std::mem::take(&mut ports)) {
                    Ok(_) => {}
                    // Another instance bootstrapped first: take the cluster's records.
                    Err(LogError::Stale(_) | LogError::StalePort(_)) => break,
                    Err(e) => return Err(e.into()),
                }
            }
            tracing::info!(numbers = ours.len(), "cluster number store bootstrapped from this instance's");
        }
        self.resync(log, st, behind)
    }

    /// Makes our records the canonical ones, cheaply when they already are
    /// (the common case: an edge started on the same seed, or the edge that
    /// just filled the cluster): the records are read in pages and compared
    /// with ours as JSON, and only those that differ are decoded, written and
    /// swapped in, page by page. Numbers only we hold are found by count
    /// (ours against `HLEN`); only if those differ is the set of canonical
    /// numbers built. The newest stream id is read first, so nothing after it
    /// is missed (entries already in the records are applied again:
    /// harmless, state-based). Interrupted, it starts over at the next start.
    fn resync(&self, log: &EventLog, st: &mut State, behind: bool) -> Result<(), InventoryError> {
        let Some(last) = log.last_id()? else { return Ok(()) };
        let (mut cursor, mut changed) = (0, 0usize);
        loop {
            let (next, page) = log.records_page(cursor, RESYNC_PAGE)?;
            let snap = self.table.load();
            let mut diff = Vec::new();
            for (n, json) in page {
                if snap.record(n).map(|r| to_json(&r.to_record())).transpose()?.as_deref() != Some(json.as_str()) {
                    diff.push((n, Some(json)));
                }
            }
            drop(snap);
            if !diff.is_empty() {
                let numbers = self.decode(last, diff);
                changed += numbers.len();
                self.commit_local(st, Batch { numbers, ..Batch::default() })?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let mut gone = Vec::new();
        if self.table.load().len() as u64 != log.record_count()? {
            let mut keep = std::collections::HashSet::new();
            let mut cursor = 0;
            loop {
                let (next, page) = log.records_page(cursor, RESYNC_PAGE)?;
                keep.extend(page.into_iter().map(|(n, _)| n));
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            gone =
                self.table.load().numbers.iter().filter(|r| !keep.contains(&r.e164)).map(|r| (r.e164, None)).collect();
        }
        // Redis lost its data while we read it (restart without persistence,
        // FLUSHALL): the empty store says nothing about which numbers are
        // gone. Keep ours and leave the event where it was; the next pass
        // finds the stream empty and gives Redis our numbers back.
        if !gone.is_empty() && !matches!(log.last_id()?, Some(now) if now >= last) {
            tracing::warn!(?last, "the cluster store was emptied during a resync: nothing removed, trying again");
            return Ok(());
        }
        let removed = gone.len();
        let ports = decode_ports(last, &log.port_records()?);
        let next_port_id = next_port_id(st, &ports);
        self.commit_local(st, Batch { numbers: gone, ports, next_port_id, event: Some(last), ..Batch::default() })?;
        st.event = last;
        self.event_ms.store(last.0, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(changed, removed, ?last, behind, "numbers resynced from the cluster store");
        Ok(())
    }

    /// Cluster mode: a port order id the whole cluster agrees is new.
    pub(super) fn new_port_id(&self, st: &State) -> Result<u64, InventoryError> {
        match self.log.get() {
            Some(log) => Ok(log.next_port_id(st.next_port_id)?),
            None => Ok(st.next_port_id),
        }
    }

    /// Cluster mode: writes the numbers and port orders of `batch` to Redis
    /// (checked against the records and orders our state holds), then
    /// catches up, which applies them. Returns the batch without them, for
    /// the local-only rest. The orders go with the first event, so a big
    /// port-in's order is never missing once its first numbers are pending.
    pub(super) fn publish(&self, st: &mut State, mut batch: Batch) -> Result<Batch, InventoryError> {
        let Some(log) = self.log.get() else { return Ok(batch) };
        let numbers = std::mem::take(&mut batch.numbers);
        let mut ports = Vec::with_capacity(batch.ports.len());
        for p in std::mem::take(&mut batch.ports) {
            let expected = st.ports.get(&p.id).map(port_json).transpose()?;
            ports.push((p.id, expected, port_json(&p)?));
        }
        let snap = self.table.load();
        let mut chunks: Vec<&[(E164, Option<NumberRecord>)]> = numbers.chunks(MAX_EVENT_NUMBERS).collect();
        if chunks.is_empty() && !ports.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let mut changes: Vec<(E164, Option<String>, Option<String>)> = Vec::with_capacity(chunk.len());
            for (n, new) in chunk {
                let expected = snap.record(*n).map(|r| to_json(&r.to_record())).transpose()?;
                let new = new.as_ref().map(to_json).transpose()?;
                changes.push((*n, expected, new));
            }
            let ports: Vec<PortChange> = std::mem::take(&mut ports);
            log.publish(&changes, &ports)?;
        }
        drop(snap);
        self.catch_up(st)?;
        Ok(batch)
    }
}

fn port_json(p: &PortOrder) -> Result<String, InventoryError> {
    serde_json::to_string(p).map_err(InventoryError::Encode)
}

/// Port orders from the stream or the canonical hash; unreadable ones are skipped.
fn decode_ports(id: EventId, raw: &[String]) -> Vec<PortOrder> {
    raw.iter()
        .filter_map(|j| match serde_json::from_str::<PortOrder>(j) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(event = ?id, error = %e, "unreadable port order in the cluster store: skipped");
                None
            }
        })
        .collect()
}

/// The local id counter once `ports` are in: past every id seen.
fn next_port_id(st: &State, ports: &[PortOrder]) -> Option<u64> {
    let top = ports.iter().map(|p| p.id.saturating_add(1)).max()?;
    (top > st.next_port_id).then_some(top)
}
