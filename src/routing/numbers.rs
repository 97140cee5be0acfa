//! The number map: a frozen hash map plus a small persistent overlay.
//!
//! # Why this shape
//!
//! Every lifecycle event publishes a whole new snapshot, yet at 10 M numbers
//! copying a hash map per event would cost hundreds of milliseconds. So the
//! map has two layers:
//!
//! * `base`: a compact open-addressing table (`base.rs`) behind an `Arc`,
//!   never mutated once built. Lookups in it are as fast as in a hash map;
//!   snapshots share it.
//! * `delta`: an `im::HashMap` (a hash array mapped trie) of the entries that
//!   changed since `base` was built, `None` being a tombstone. Cloning it is
//!   O(1) and an insert copies only the O(log₃₂ n) nodes on one path, so an
//!   event costs microseconds whatever the table size.
//!
//! A lookup checks the delta first, then the base. Walking the trie costs
//! ~15 ns even when the key is absent (measured: it made a lookup 1.6× a
//! plain `HashMap` at 10 k numbers), so a 64 Ki-bit filter of the delta's keys
//! lets most lookups skip it: with a 4096-entry delta only ~6 % of absent
//! keys walk the trie. The filter is copied on write (8 KiB, once per event).
//! Bits are never cleared until a compaction rebuilds the filter; a stale bit
//! only costs a trie walk.
//!
//! The table folds the delta into a new base off the event path when it grows
//! past a threshold (see `table.rs`), which keeps the delta small and lookups
//! close to a frozen hash map.

use std::sync::Arc;

use super::base::{Base, BaseBuilder};
use super::snapshot::{NumberRecord, NumberRef};
use crate::sip::E164;

/// The overlay: digits → new record, or `None` for "removed from the base".
pub(crate) type Delta = im::HashMap<u64, Option<Arc<NumberRecord>>, ahash::RandomState>;

/// 1024 words × 64 bits: a one-hash filter over the delta's keys.
const FILTER_WORDS: usize = 1024;
type Filter = [u64; FILTER_WORDS];

/// Word index and bit of `k` in the filter (the top 16 bits of a
/// multiplicative hash: cheap, and E.164 digits differ mostly in low bits).
#[inline]
fn filter_slot(k: u64) -> (usize, u64) {
    let h = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 48;
    ((h >> 6) as usize, 1u64 << (h & 63))
}

/// Number → record, cheap to clone and to derive a changed copy from.
#[derive(Clone)]
pub struct NumberMap {
    pub(crate) base: Arc<Base>,
    pub(crate) delta: Delta,
    /// Bit set for every key ever inserted into `delta` (see module docs).
    filter: Arc<Filter>,
    /// Live records (base minus tombstones plus delta additions), kept so
    /// `len` is O(1).
    len: usize,
}

impl Default for NumberMap {
    fn default() -> Self {
        NumberMap::from_base(Arc::new(Base::default()))
    }
}

impl NumberMap {
    /// Builds a map whose base holds `recs` (a later record for the same number wins).
    pub fn from_records(recs: impl IntoIterator<Item = NumberRecord>) -> NumberMap {
        let iter = recs.into_iter();
        let mut b = NumberMap::builder(iter.size_hint().0);
        for r in iter {
            b.insert(r);
        }
        b.finish()
    }

    /// An empty builder expecting about `capacity` records (start-up load).
    pub fn builder(capacity: usize) -> NumberMapBuilder {
        NumberMapBuilder(BaseBuilder::with_capacity(capacity))
    }

    pub(crate) fn from_base(base: Arc<Base>) -> NumberMap {
        let len = base.len();
        NumberMap { base, delta: Delta::default(), filter: Arc::new([0; FILTER_WORDS]), len }
    }

    pub(crate) fn from_parts(base: Arc<Base>, delta: Delta, len: usize) -> NumberMap {
        let mut filter = [0u64; FILTER_WORDS];
        for k in delta.keys() {
            let (w, bit) = filter_slot(*k);
            if let Some(word) = filter.get_mut(w) {
                *word |= bit;
            }
        }
        NumberMap { base, delta, filter: Arc::new(filter), len }
    }

    #[inline]
    fn maybe_in_delta(&self, k: u64) -> bool {
        let (w, bit) = filter_slot(k);
        !self.delta.is_empty() && self.filter.get(w).is_some_and(|word| word & bit != 0)
    }

    #[inline]
    fn in_delta(&self, k: u64) -> bool {
        self.maybe_in_delta(k) && self.delta.contains_key(&k)
    }

    /// The record of `n`, if any.
    #[inline]
    pub fn get(&self, n: E164) -> Option<NumberRef<'_>> {
        let k = n.as_u64();
        if self.maybe_in_delta(k) {
            if let Some(v) = self.delta.get(&k) {
                return v.as_deref().map(NumberRef::from);
            }
        }
        self.base.get(n)
    }

    /// The record of `n` as an overlay entry: the delta's own `Arc` when
    /// it has one, else a copy of the base's.
    pub(crate) fn get_shared(&self, n: E164) -> Option<Arc<NumberRecord>> {
        let k = n.as_u64();
        if self.maybe_in_delta(k) {
            if let Some(v) = self.delta.get(&k) {
                return v.clone();
            }
        }
        self.base.get(n).map(|r| Arc::new(r.to_record()))
    }

    /// How many numbers have a record.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no number has a record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many entries the overlay holds (what compaction would fold).
    pub fn delta_len(&self) -> usize {
        self.delta.len()
    }

    /// Heap bytes of the base's own arrays (benches and the memory note).
    pub fn base_heap_bytes(&self) -> usize {
        self.base.heap_bytes()
    }

    /// Every record, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = NumberRef<'_>> {
        let from_base = self.base.iter().filter(move |r| !self.in_delta(r.e164.as_u64()));
        let from_delta = self.delta.values().filter_map(|v| v.as_deref()).map(NumberRef::from);
        from_base.chain(from_delta)
    }

    /// A copy with `n` set to `rec` (`None` removes it). O(log of the delta).
    #[must_use]
    pub fn with(&self, n: E164, rec: Option<Arc<NumberRecord>>) -> NumberMap {
        let mut m = self.clone();
        m.set(n, rec);
        m
    }

    /// Sets `n` in place (the copy-on-write trie only copies shared nodes).
    pub(crate) fn set(&mut self, n: E164, rec: Option<Arc<NumberRecord>>) {
        let k = n.as_u64();
        let had = self.get(n).is_some();
        let has = rec.is_some();
        // Equal content counts as the same: the base holds no `Arc` to compare.
        let same_as_base = rec.as_deref().map(NumberRef::from) == self.base.get(n);
        if same_as_base {
            // Back to what the base says: no overlay entry needed.
            self.delta.remove(&k);
        } else {
            self.delta.insert(k, rec);
            let (w, bit) = filter_slot(k);
            // Copies the 8 KiB filter the first time a snapshot's map is changed.
            if let Some(word) = Arc::make_mut(&mut self.filter).get_mut(w) {
                *word |= bit;
            }
        }
        match (had, has) {
            (false, true) => self.len += 1,
            (true, false) => self.len = self.len.saturating_sub(1),
            _ => {}
        }
    }

    /// A new base with the delta folded in: O(n), meant for a background thread.
    pub(crate) fn fold(&self) -> Base {
        let adds = self.delta.values().filter_map(|v| v.as_deref());
        self.base.fold(self.len, |k| self.in_delta(k), adds)
    }
}

/// Builds a map's base one record at a time, straight into its final
/// layout (the start-up load streams millions of records into it).
pub struct NumberMapBuilder(BaseBuilder);

impl NumberMapBuilder {
    /// Makes room for `total` records in all (a no-op once there is room).
    pub fn reserve_total(&mut self, total: usize) {
        self.0.reserve_total(total);
    }

    /// Adds `r` (a later record for the same number wins).
    pub fn insert(&mut self, r: NumberRecord) {
        self.0.insert(&r);
    }

    /// Adds `r` with flow `flow` in place of `r.flow`: the flow id is
    /// interned by the map only (start-up load, issue 17).
    pub fn insert_with_flow(&mut self, r: &NumberRecord, flow: Option<&str>) {
        self.0.insert_with_flow(r, flow);
    }

    /// How many records were added.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// The map, every record in its base.
    pub fn finish(self) -> NumberMap {
        NumberMap::from_base(Arc::new(self.0.finish()))
    }
}

impl std::fmt::Debug for NumberMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumberMap")
            .field("len", &self.len)
            .field("base", &self.base.len())
            .field("delta", &self.delta.len())
            .finish()
    }
}
