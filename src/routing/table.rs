//! The live routing table: one `ArcSwap<RoutingSnapshot>`, lock-free for
//! readers, serialized for writers, with the number overlay folded into a
//! new base on a background thread.
//!
//! # Why
//!
//! * Readers (every SIP request) call `load()`: an `ArcSwap` load takes no
//!   lock and never waits for a writer. A call that keeps its snapshot keeps
//!   seeing the table as it was when the call started.
//! * Writers (control-plane events, reloads, compaction) take one `Mutex`,
//!   so two events can never publish from the same predecessor and lose one
//!   another's change. The mutex is held for microseconds: an event only
//!   touches the persistent delta (`numbers.rs`).
//! * Compaction is O(n) (it copies the base), so it never runs on the event
//!   path. When the delta reaches the threshold, the writer freezes the
//!   current map (an O(1) clone) and hands a [`CompactionJob`] to the
//!   runner the owner of the table gave it (the inventory runs it on a
//!   thread of its own; this module starts no thread and reads no clock), which
//!   folds it into a new base. Events go on meanwhile; the writer logs which keys they touch.
//!   The thread then re-reads those keys from the live map to build the new
//!   (small) delta, in two rounds so that the mutex is only held for the
//!   events that arrived during the first round, and publishes base + delta.
//!   The published content is unchanged, so compaction keeps the generation
//!   and is not counted in `sipedge_routing_swaps_total`.
//! * Dropping a 10 M-entry base takes a while; the job hands the old base
//!   back as an [`OldBase`], which the runner keeps trying to drop until it
//!   holds the last reference, so no request handler pays for it.

use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::base::Base;
use super::numbers::{Delta, NumberMap};
use super::peers::Peers;
use super::snapshot::{NumberRecord, RoutingSnapshot};
use crate::sip::E164;

/// Counter incremented when a compaction publishes a new base.
pub use crate::metrics::ROUTING_COMPACTIONS_TOTAL as COMPACTIONS_TOTAL;
/// Counter incremented on every published change (SPEC §7).
pub use crate::metrics::ROUTING_SWAPS_TOTAL as SWAPS_TOTAL;
/// Largest delta before the overlay is folded into a new base.
pub const DEFAULT_COMPACT_THRESHOLD: usize = 8192;
/// Smallest threshold the size rule below picks (tests may set less).
const MIN_COMPACT_THRESHOLD: usize = 256;
/// Runs a compaction away from the event path (a thread of the caller's).
pub type CompactionRunner = fn(CompactionJob);

/// How the table compacts (tests use a small threshold and no thread).
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// Largest delta size before a compaction (at least 1). Small tables
    /// compact sooner: at `len / 16` entries (but not under 256), since
    /// folding them is cheap and a delta holding a large share of the keys
    /// slows lookups down.
    pub compact_threshold: usize,
    /// `Some`: hand each compaction to this runner; `None`: compact inline,
    /// after the event that crossed the threshold (deterministic, for tests).
    pub background: Option<CompactionRunner>,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions { compact_threshold: DEFAULT_COMPACT_THRESHOLD, background: None }
    }
}

/// One compaction to run: fold a frozen view into a new base and publish it.
/// Dropped without being run, it ends the compaction (the delta just grows
/// until a later event starts another), so a runner that cannot start a
/// thread loses nothing but time.
pub struct CompactionJob {
    inner: Arc<Inner>,
    frozen: Option<NumberMap>,
}

impl CompactionJob {
    /// Folds and publishes; returns the old base for the runner to drop.
    pub fn run(mut self) -> OldBase {
        let frozen = self.frozen.take();
        OldBase(frozen.map(|f| self.inner.compact(f)))
    }
}

impl Drop for CompactionJob {
    fn drop(&mut self) {
        if self.frozen.is_some() {
            let mut w = self.inner.lock();
            w.since = None;
            self.inner.idle.notify_all();
        }
    }
}

/// The base a compaction replaced. Snapshots held by calls may still use it.
pub struct OldBase(Option<Arc<Base>>);

impl OldBase {
    /// Frees the old base if nothing else holds it; otherwise hands it back,
    /// to be tried again later (or dropped anywhere: it is only memory).
    pub fn try_free(self) -> Result<(), OldBase> {
        match self.0.map(Arc::try_unwrap) {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(shared)) => Err(OldBase(Some(shared))),
        }
    }
}

/// The routing table shared by the proxy (readers) and the inventory (writer).
pub struct RoutingTable {
    inner: Arc<Inner>,
}

struct Inner {
    current: ArcSwap<RoutingSnapshot>,
    writer: Mutex<Writer>,
    /// Signalled when a compaction finishes.
    idle: Condvar,
    swaps: AtomicU64,
    compactions: AtomicU64,
    opts: TableOptions,
}

#[derive(Default)]
struct Writer {
    /// `Some` while a compaction runs: the keys written since it froze its view.
    since: Option<Vec<E164>>,
}

impl RoutingTable {
    /// A table publishing `initial`, compacting inline (see [`TableOptions`]).
    pub fn new(initial: RoutingSnapshot) -> RoutingTable {
        RoutingTable::with_options(initial, TableOptions::default())
    }

    /// A table with explicit compaction settings.
    pub fn with_options(initial: RoutingSnapshot, opts: TableOptions) -> RoutingTable {
        let opts = TableOptions { compact_threshold: opts.compact_threshold.max(1), ..opts };
        RoutingTable {
            inner: Arc::new(Inner {
                current: ArcSwap::from_pointee(initial),
                writer: Mutex::new(Writer::default()),
                idle: Condvar::new(),
                swaps: AtomicU64::new(0),
                compactions: AtomicU64::new(0),
                opts,
            }),
        }
    }

    /// The current snapshot, without taking a lock (for a short look).
    #[inline]
    pub fn load(&self) -> arc_swap::Guard<Arc<RoutingSnapshot>> {
        self.inner.current.load()
    }

    /// The current snapshot as an owned `Arc` (to keep it for a whole call).
    #[inline]
    pub fn load_full(&self) -> Arc<RoutingSnapshot> {
        self.inner.current.load_full()
    }

    /// Publishes the same numbers with new peers (config reload).
    pub fn set_peers(&self, peers: Arc<Peers>) {
        let _w = self.inner.lock();
        let cur = self.inner.current.load();
        let next = RoutingSnapshot { numbers: cur.numbers.clone(), peers, generation: cur.generation + 1 };
        self.inner.publish(next);
    }

    /// Applies a batch of changes (`None` removes the number) and publishes
    /// them with one swap, so readers see all of them or none. An empty batch
    /// publishes nothing. The key is the `E164` of each pair.
    pub fn apply(&self, changes: &[(E164, Option<NumberRecord>)]) {
        if changes.is_empty() {
            return;
        }
        let mut w = self.inner.lock();
        let cur = self.inner.current.load();
        let mut numbers = cur.numbers.clone();
        for (n, rec) in changes {
            numbers.set(*n, rec.clone().map(Arc::new));
            if let Some(since) = w.since.as_mut() {
                since.push(*n);
            }
        }
        let due = w.since.is_none() && numbers.delta_len() >= self.inner.threshold(numbers.len());
        let frozen = due.then(|| numbers.clone());
        let next = RoutingSnapshot { numbers, peers: Arc::clone(&cur.peers), generation: cur.generation + 1 };
        drop(cur);
        self.inner.publish(next);
        if let Some(frozen) = frozen {
            w.since = Some(Vec::new());
            drop(w);
            self.start_compaction(frozen);
        }
    }

    /// How many snapshots were published by events and reloads.
    pub fn swaps(&self) -> u64 {
        self.inner.swaps.load(Ordering::Relaxed)
    }

    /// How many compactions have published a new base.
    pub fn compactions(&self) -> u64 {
        self.inner.compactions.load(Ordering::Relaxed)
    }

    /// The delta size at which the current table will be compacted.
    pub fn compaction_threshold(&self) -> usize {
        self.inner.threshold(self.load().numbers.len())
    }

    /// Blocks until no compaction is running (tests, benches, shutdown).
    pub fn wait_for_compaction(&self) {
        let mut w = self.inner.lock();
        while w.since.is_some() {
            w = self.inner.idle.wait(w).unwrap_or_else(PoisonError::into_inner);
        }
    }

    fn start_compaction(&self, frozen: NumberMap) {
        let job = CompactionJob { inner: Arc::clone(&self.inner), frozen: Some(frozen) };
        match self.inner.opts.background {
            Some(runner) => runner(job),
            None => drop(job.run()),
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Writer> {
        // The writer state is a log of keys; a panic elsewhere cannot leave
        // it half-updated in a way that matters, so poisoning is ignored.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The compaction threshold for a table of `len` numbers: the amortized
    /// fold cost per event stays near 16 entry copies for small tables, and
    /// the delta (and its filter) never outgrows the configured maximum.
    fn threshold(&self, len: usize) -> usize {
        (len / 16).max(MIN_COMPACT_THRESHOLD).min(self.opts.compact_threshold)
    }

    /// Stores `next`; the caller holds the writer lock.
    fn publish(&self, next: RoutingSnapshot) {
        self.current.store(Arc::new(next));
        self.swaps.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(SWAPS_TOTAL).increment(1);
    }

    /// Folds `frozen` into a new base and publishes it with a delta of the
    /// keys written since `frozen` was taken. Returns the old base.
    fn compact(&self, frozen: NumberMap) -> Arc<Base> {
        let new_base = Arc::new(frozen.fold());
        let mut delta = Delta::default();

        // Round 1, mostly outside the lock: the events seen so far.
        let (cur, keys) = {
            let mut w = self.lock();
            let keys = w.since.as_mut().map(std::mem::take).unwrap_or_default();
            (self.current.load_full(), keys)
        };
        overlay(&mut delta, &new_base, &cur.numbers, &keys);
        drop(cur);

        // Round 2, under the lock: only the events of round 1's duration.
        {
            let mut w = self.lock();
            let cur = self.current.load_full();
            let keys = w.since.take().unwrap_or_default();
            overlay(&mut delta, &new_base, &cur.numbers, &keys);
            let numbers = NumberMap::from_parts(new_base, delta, cur.numbers.len());
            let next = RoutingSnapshot { numbers, peers: Arc::clone(&cur.peers), generation: cur.generation };
            self.current.store(Arc::new(next));
            self.compactions.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(COMPACTIONS_TOTAL).increment(1);
            self.idle.notify_all();
        }

        frozen.base
    }
}

/// Sets in `delta` the live value of each key, relative to `base`.
fn overlay(delta: &mut Delta, base: &Base, live: &NumberMap, keys: &[E164]) {
    for &n in keys {
        // Compared by content: the base keeps no `Arc` per record.
        if live.get(n) == base.get(n) {
            delta.remove(&n.as_u64());
        } else {
            delta.insert(n.as_u64(), live.get_shared(n));
        }
    }
}

impl std::fmt::Debug for RoutingTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutingTable")
            .field("current", &*self.load())
            .field("swaps", &self.swaps())
            .field("compactions", &self.compactions())
            .finish()
    }
}
