//! The durable number lifecycle: claims, releases (a 7-day deletion queue),
//! restores, flows and port orders, kept in an embedded redb store and
//! mirrored into the [`RoutingTable`].
//!
//! Every event follows the same three steps, under one writer mutex:
//!
//! 1. **validate** against the current snapshot and peers (pure; `routing::events`);
//!    bad input returns an error and changes nothing;
//! 2. **commit** the change to the store in one transaction (fsync);
//! 3. **apply** it to the routing table with one swap, then answer.
//!
//! So an acknowledged event survives a crash, and the table never shows a
//! change the store does not have. No async runtime here: the control plane calls
//! these blocking methods through `spawn_blocking`.
//!
//! # Layout
//!
//! * `store.rs`: the redb tables.
//! * `codec.rs`: the binary number record (JSON records still read).
//! * `lifecycle.rs`: claim, release, restore, set flow, expire.
//! * `ports.rs`: port orders (create, cancel, complete).
//! * `replica.rs`: cluster mode, where number events go through Redis first.
//! * `probe.rs`: what `sipedge check` can see of `data_dir` and the store without writing.

mod codec;
mod compaction;
mod lifecycle;
mod ports;
mod probe;
mod replica;
mod store;

pub use probe::{probe, Probe};

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::routing::{
    build_record, ClaimSpec, NumberMap, NumberRecord, NumberRef, NumberState, Peers, RoutingError, RoutingSnapshot,
    RoutingTable, TableOptions,
};
use crate::sip::E164;

/// The runner the inventory's routing table compacts with (benches use it too).
pub use compaction::on_a_thread as compaction_on_a_thread;
pub use ports::{PortDirection, PortOrder, PortRequest, PortStatus};
use store::{Batch, Interner, Store};

/// How long a released number stays restorable before it is gone for good.
pub const RELEASE_WINDOW_S: u64 = 7 * 24 * 3600;
/// File name of the store inside `[edge].data_dir`.
pub const STORE_FILE: &str = "inventory.redb";

/// Why an inventory operation failed.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The event was refused; nothing changed.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    /// The store failed (open, transaction, I/O, commit); nothing was applied.
    /// Boxed: redb's error is large and errors are rare.
    #[error("store: {0}")]
    Store(#[source] Box<redb::Error>),
    /// A stored value could not be decoded (written by something else?).
    #[error("store: undecodable value in {table} at key {key}: {source}")]
    Corrupt {
        /// Which table.
        table: &'static str,
        /// Which key.
        key: u64,
        /// The decoding error (JSON, or what is wrong with a binary record).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored value does not belong to the key it is stored under.
    #[error("store: value in {table} at key {key} names another key")]
    KeyMismatch {
        /// Which table.
        table: &'static str,
        /// Which key.
        key: u64,
    },
    /// A number record has a string too long for the binary format (over 4 GiB).
    #[error("store: the record of number key {key} is too long to store")]
    TooLong {
        /// Which key.
        key: u64,
    },
    /// Encoding a value failed (not expected for our types; kept to avoid a panic).
    #[error("store: cannot encode value: {0}")]
    Encode(#[source] serde_json::Error),
    /// The store was written by an incompatible version of sipedge.
    #[error("store: format version {found}, this build reads {supported}")]
    Version {
        /// Version in the file.
        found: u64,
        /// Version this build writes.
        supported: u64,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `sipedge check`: the store file exists but start could not use it.
    #[error("store {path}: {why}")]
    Unusable {
        /// The store file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Cluster mode: another instance changed this number since our state
    /// was read (409; read it again and retry).
    #[error("{0} was changed by another instance meanwhile; read it again")]
    Stale(E164),
    /// Cluster mode: Redis could not take the event, so it was not accepted (503).
    #[error("{0}")]
    ClusterDown(String),
    /// A seed entry is invalid; the seed was not imported.
    #[error("seed entry {number}: {source}")]
    Seed {
        /// The offending number.
        number: E164,
        /// What is wrong with it.
        source: RoutingError,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for InventoryError {
            fn from(e: $t) -> Self {
                InventoryError::Store(Box::new(redb::Error::from(e)))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// The durable inventory; owns the store and is the only writer of the
/// table's numbers.
pub struct Inventory {
    store: Store,
    table: Arc<RoutingTable>,
    /// Serializes events: validation sees the state the commit will change.
    state: Mutex<State>,
    /// Cluster mode: the event stream this inventory replicates.
    log: OnceLock<Arc<crate::cluster::events::EventLog>>,
    /// The stream-clock ms of the last event applied, read without the lock.
    event_ms: std::sync::atomic::AtomicU64,
}

/// In-memory indexes, changed only after a successful commit.
#[derive(Default)]
struct State {
    ports: BTreeMap<u64, PortOrder>,
    next_port_id: u64,
    /// `(released_at, number)` of every released number: expiry walks the
    /// front of it instead of scanning millions of records.
    released: BTreeSet<(u64, E164)>,
    /// Cluster mode: the last stream entry applied.
    event: (u64, u64),
}

impl Inventory {
    /// Opens/creates `<data_dir>/inventory.redb`, loads every record into a
    /// snapshot with `peers`, and returns the inventory with its table. If
    /// the store has never been seeded, holds no number and no port order,
    /// and `seed` is `Some`, the seed is imported (once, atomically).
    pub fn open(
        data_dir: &Path,
        peers: Arc<Peers>,
        seed: Option<Vec<(E164, ClaimSpec)>>,
    ) -> Result<(Inventory, Arc<RoutingTable>), InventoryError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| InventoryError::DataDir { path: data_dir.to_owned(), source })?;
        let store = Store::open(&data_dir.join(STORE_FILE))?;
        let mut names = Interner::default();
        let mut map = NumberMap::builder(0);
        let mut released = BTreeSet::new();
        let mut unknown = 0usize;
        let mut add = |total: usize, r: &NumberRecord, flow: Option<&str>| {
            map.reserve_total(total);
            if r.carriers.iter().any(|c| peers.carrier(c).is_none()) {
                unknown += 1;
            }
            if let NumberState::Released { released_at_unix_s } = r.state {
                released.insert((released_at_unix_s, r.e164));
            }
            map.insert_with_flow(r, flow);
        };
        // Flows go to the map as the stored strings: it interns them once.
        let loaded = store.load(|total, s| {
            let (r, flow) = s.into_parts(&peers, &mut names);
            add(total, &r, flow.as_deref());
        })?;
        drop(names);

        if let Some(seed) = seed {
            if !loaded.seeded && loaded.numbers == 0 && loaded.ports.is_empty() {
                let batch = seed_batch(seed, &peers)?;
                store.write(&batch)?;
                tracing::info!(numbers = batch.numbers.len(), "imported the number seed");
                let total = batch.numbers.len();
                for r in batch.numbers.into_iter().filter_map(|(_, r)| r) {
                    add(total, &r, r.flow.as_deref());
                }
            }
        }
        release_free_heap();

        if unknown > 0 {
            tracing::warn!(numbers = unknown, "stored numbers refer to carriers missing from the config");
        }
        let state = State {
            ports: loaded.ports.into_iter().map(|p| (p.id, p)).collect(),
            next_port_id: loaded.next_port_id,
            released,
            event: loaded.event,
        };
        let snapshot = RoutingSnapshot::new(map.finish(), peers);
        let opts = TableOptions { background: Some(compaction::on_a_thread), ..TableOptions::default() };
        let table = Arc::new(RoutingTable::with_options(snapshot, opts));
        let inv = Inventory {
            store,
            table: Arc::clone(&table),
            state: Mutex::new(state),
            log: OnceLock::new(),
            event_ms: Default::default(),
        };
        Ok((inv, table))
    }

    /// Whether the store in `data_dir` will ignore a seed (already seeded, or
    /// holding numbers or port orders), so the caller need not read the seed
    /// file: at 1 M numbers parsing it costs a second and ~200 bytes a number
    /// of peak heap for nothing. A missing store is not seeded.
    pub fn ignores_seed(data_dir: &Path) -> Result<bool, InventoryError> {
        let path = data_dir.join(STORE_FILE);
        if !path.exists() {
            return Ok(false);
        }
        Store::open(&path)?.ignores_seed()
    }

    /// The routing table this inventory writes to.
    pub fn table(&self) -> &Arc<RoutingTable> {
        &self.table
    }

    /// The current record of `n` (any state).
    pub fn get(&self, n: E164) -> Option<NumberRecord> {
        self.table.load().record(n).map(|r| r.to_record())
    }

    /// The port order `id`.
    pub fn port(&self, id: u64) -> Option<PortOrder> {
        self.lock().ports.get(&id).cloned()
    }

    /// Every port order, by id.
    pub fn ports(&self) -> Vec<PortOrder> {
        self.lock().ports.values().cloned().collect()
    }

    /// Republishes the table with new peers (config reload); numbers untouched.
    pub fn set_peers(&self, peers: Arc<Peers>) {
        let _st = self.lock();
        self.table.set_peers(peers);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State is only changed after a commit, in steps that cannot panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Step 2 and 3: commit `batch` (in cluster mode, its numbers to Redis
    /// first, applied back through the stream), then update the indexes and the table.
    fn commit(&self, st: &mut State, batch: Batch) -> Result<(), InventoryError> {
        let rest = self.publish(st, batch)?;
        if rest.numbers.is_empty() && rest.ports.is_empty() && rest.next_port_id.is_none() && !rest.seeded {
            return Ok(());
        }
        self.commit_local(st, rest)
    }

    /// Commits `batch` to the store, then updates the indexes and the table.
    fn commit_local(&self, st: &mut State, batch: Batch) -> Result<(), InventoryError> {
        self.store.write(&batch)?;
        let snap = self.table.load();
        for (n, new) in &batch.numbers {
            if let Some(NumberState::Released { released_at_unix_s }) = snap.record(*n).map(|r| r.state) {
                st.released.remove(&(released_at_unix_s, *n));
            }
            if let Some(NumberState::Released { released_at_unix_s }) = new.as_ref().map(|r| &r.state) {
                st.released.insert((*released_at_unix_s, *n));
            }
        }
        drop(snap);
        self.table.apply(&batch.numbers);
        for p in batch.ports {
            st.ports.insert(p.id, p);
        }
        if let Some(id) = batch.next_port_id {
            st.next_port_id = id;
        }
        Ok(())
    }
}

/// Hands the heap freed by the start-up load (decoded JSON, the interner,
/// the seed) back to the OS. glibc keeps freed small chunks in its arenas,
/// and interleaved with millions of live records they are never trimmed
/// by themselves: at 1 M numbers that was over 250 bytes a number of RSS.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own free lists; no pointer of
    // ours is involved, and it is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The seed as one batch of active records; any bad entry refuses the whole seed.
fn seed_batch(seed: Vec<(E164, ClaimSpec)>, peers: &Peers) -> Result<Batch, InventoryError> {
    let mut seen = HashSet::with_capacity(seed.len());
    let mut numbers = Vec::with_capacity(seed.len());
    for (n, spec) in seed {
        if !seen.insert(n) {
            return Err(InventoryError::Seed { number: n, source: RoutingError::AlreadyClaimed(n) });
        }
        let rec = build_record(n, &spec, peers, NumberState::Active)
            .map_err(|source| InventoryError::Seed { number: n, source })?;
        numbers.push((n, Some(rec)));
    }
    Ok(Batch { numbers, seeded: true, ..Batch::default() })
}

/// The record of `n` unless it is a release whose window is over (those are
/// gone for every purpose but the purge itself).
fn live(snap: &RoutingSnapshot, n: E164, now_unix_s: u64) -> Option<NumberRef<'_>> {
    snap.record(n).filter(|r| !is_expired(r, now_unix_s))
}

fn is_expired(r: &NumberRef<'_>, now_unix_s: u64) -> bool {
    matches!(r.state, NumberState::Released { released_at_unix_s }
        if now_unix_s >= released_at_unix_s.saturating_add(RELEASE_WINDOW_S))
}
