//! The frozen base layer of the number map, laid out for size (issue 17).
//!
//! # Why this layout
//!
//! The base holds every number, millions of them, and is rebuilt only at
//! start and by compaction. A `HashMap<u64, Arc<NumberRecord>>` cost ~35 B of
//! buckets, a 128 B record allocation, a carrier `Vec` allocation and an
//! `Arc<str>` per flow: ~250 B a number before anything else. Here:
//!
//! * one open-addressing array of 16-byte [`Slot`]s (number, flow index,
//!   profile index), linear probing, sized to a load of at most ¾ with no
//!   power-of-two rounding (the home slot is a multiply-high of a mixed key),
//!   so ~21 B a number, and a lookup usually touches one cache line that
//!   holds both the key and what it maps to;
//! * the flow ids in one table of `Arc<str>` shared by every number with that
//!   flow (a flow engine flow usually serves many numbers);
//! * everything else of a record (kind, carrier list, cap, cnam, state) as a
//!   shared [`Profile`]: numbers of one customer differ only in their digits
//!   and flow, so there are few profiles even at 10 M numbers.
//!
//! A lookup hands out a borrowed [`NumberRef`], so nothing is allocated or
//! reference-counted on the call path.

use std::collections::HashMap;
use std::sync::Arc;

use super::snapshot::{NumberRecord, NumberRef, NumberState};
use crate::sip::{NumberKind, E164};

/// An unused slot (0 is never a valid E.164 number, see `E164::from_u64`).
const EMPTY: u64 = 0;
/// A slot's flow index when the number has no flow.
const NO_FLOW: u32 = u32::MAX;

/// One entry of the open-addressing array.
#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    key: u64,
    flow: u32,
    profile: u32,
}

const VACANT: Slot = Slot { key: EMPTY, flow: NO_FLOW, profile: 0 };

/// The part of a record many numbers share.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Profile {
    kind: NumberKind,
    carriers: Box<[Arc<str>]>,
    max_concurrent: Option<u32>,
    cnam: Option<Arc<str>>,
    state: NumberState,
}

impl Profile {
    fn of(r: &NumberRecord) -> Profile {
        Profile {
            kind: r.kind,
            carriers: r.carriers.as_slice().into(),
            max_concurrent: r.max_concurrent,
            cnam: r.cnam.clone(),
            state: r.state,
        }
    }

    fn matches(&self, r: &NumberRecord) -> bool {
        self.kind == r.kind
            && *self.carriers == *r.carriers
            && self.max_concurrent == r.max_concurrent
            && self.cnam == r.cnam
            && self.state == r.state
    }
}

/// splitmix64's finalizer: consecutive numbers (a seeded range) land far apart.
#[inline]
fn mix(k: u64) -> u64 {
    let mut z = k;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The first slot to probe for `k` in an array of `cap` slots.
#[inline]
fn home(k: u64, cap: usize) -> usize {
    ((u128::from(mix(k)) * cap as u128) >> 64) as usize
}

/// Slots for `n` numbers: a load of at most ¾ keeps probe runs short
/// (~2.5 slots for a hit with linear probing) and always leaves a vacant slot.
fn capacity_for(n: usize) -> usize {
    (n + n / 3 + 1).max(8)
}

/// The frozen number → record layer. Never changed once built.
pub(crate) struct Base {
    slots: Box<[Slot]>,
    len: usize,
    flows: Box<[Arc<str>]>,
    profiles: Box<[Profile]>,
}

impl Default for Base {
    fn default() -> Self {
        BaseBuilder::with_capacity(0).finish()
    }
}

impl Base {
    /// How many numbers it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn slot(&self, k: u64) -> Option<&Slot> {
        let cap = self.slots.len();
        if cap == 0 {
            return None;
        }
        let mut i = home(k, cap);
        // Terminates: the load is at most ¾, so a vacant slot is always reached.
        loop {
            let s = self.slots.get(i)?;
            if s.key == k {
                return Some(s);
            }
            if s.key == EMPTY {
                return None;
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
    }

    #[inline]
    fn view(&self, e164: E164, s: &Slot) -> Option<NumberRef<'_>> {
        let p = self.profiles.get(s.profile as usize)?;
        Some(NumberRef {
            e164,
            kind: p.kind,
            flow: self.flows.get(s.flow as usize),
            carriers: &p.carriers,
            max_concurrent: p.max_concurrent,
            cnam: p.cnam.as_ref(),
            state: p.state,
        })
    }

    /// The record of `n`, if the base holds one.
    #[inline]
    pub(crate) fn get(&self, n: E164) -> Option<NumberRef<'_>> {
        self.slot(n.as_u64()).and_then(|s| self.view(n, s))
    }

    /// Every record, in slot order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = NumberRef<'_>> {
        self.slots.iter().filter(|s| s.key != EMPTY).filter_map(|s| self.view(E164::from_u64(s.key)?, s))
    }

    /// Heap bytes held (slots, tables, profiles; not the shared strings).
    pub(crate) fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots)
            + std::mem::size_of_val(&*self.flows)
            + self
                .profiles
                .iter()
                .map(|p| std::mem::size_of::<Profile>() + std::mem::size_of_val(&*p.carriers))
                .sum::<usize>()
    }

    /// A new base: this one without the numbers for which `replaced` is
    /// true, plus `adds`. O(n) with no string hashing (the flows and
    /// profiles still in use are carried over by index), so it suits a
    /// background thread; flows and profiles no longer used are dropped.
    pub(crate) fn fold<'a>(
        &self,
        live_len: usize,
        replaced: impl Fn(u64) -> bool,
        adds: impl Iterator<Item = &'a NumberRecord>,
    ) -> Base {
        let mut b = BaseBuilder::with_capacity(live_len);
        let mut flow_ix = vec![NO_FLOW; self.flows.len()];
        let mut profile_ix = vec![NO_FLOW; self.profiles.len()];
        for s in self.slots.iter().filter(|s| s.key != EMPTY && !replaced(s.key)) {
            let flow = match (flow_ix.get_mut(s.flow as usize), self.flows.get(s.flow as usize)) {
                (Some(ix), Some(f)) => {
                    if *ix == NO_FLOW {
                        *ix = b.push_flow(Arc::clone(f));
                    }
                    *ix
                }
                _ => NO_FLOW,
            };
            let (Some(ix), Some(p)) = (profile_ix.get_mut(s.profile as usize), self.profiles.get(s.profile as usize))
            else {
                continue;
            };
            if *ix == NO_FLOW {
                *ix = b.intern_profile(p.clone());
            }
            b.put(s.key, flow, *ix);
        }
        for r in adds {
            b.insert(r);
        }
        b.finish()
    }
}

/// Builds a [`Base`] one record at a time, straight into its final layout.
pub(crate) struct BaseBuilder {
    slots: Vec<Slot>,
    len: usize,
    flows: Vec<Arc<str>>,
    profiles: Vec<Profile>,
    /// Build-time only (dropped by `finish`): flow id → index.
    flow_ix: HashMap<Arc<str>, u32, ahash::RandomState>,
    profile_ix: HashMap<Profile, u32, ahash::RandomState>,
    /// The profile of the last insert: records come in runs that share one,
    /// and comparing is cheaper than hashing.
    last_profile: Option<u32>,
}

impl BaseBuilder {
    pub(crate) fn with_capacity(n: usize) -> BaseBuilder {
        BaseBuilder {
            slots: vec![VACANT; capacity_for(n)],
            len: 0,
            flows: Vec::new(),
            profiles: Vec::new(),
            flow_ix: HashMap::default(),
            profile_ix: HashMap::default(),
            last_profile: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Makes room for `total` numbers in all without probing past a ¾ load.
    pub(crate) fn reserve_total(&mut self, total: usize) {
        if capacity_for(total) > self.slots.len() {
            self.rehash(capacity_for(total));
        }
    }

    fn rehash(&mut self, cap: usize) {
        let old = std::mem::replace(&mut self.slots, vec![VACANT; cap]);
        self.len = 0;
        for s in old.into_iter().filter(|s| s.key != EMPTY) {
            self.put(s.key, s.flow, s.profile);
        }
    }

    fn push_flow(&mut self, f: Arc<str>) -> u32 {
        let ix = u32::try_from(self.flows.len()).unwrap_or(NO_FLOW - 1);
        self.flows.push(f);
        ix
    }

    /// The index of flow `f`; the `Arc` is made only for a flow not seen
    /// before (the load hands flows over as plain strings, so each is
    /// hashed once here and nowhere else).
    fn intern_flow(&mut self, f: &str) -> u32 {
        if let Some(ix) = self.flow_ix.get(f) {
            return *ix;
        }
        let a: Arc<str> = Arc::from(f);
        let ix = self.push_flow(Arc::clone(&a));
        self.flow_ix.insert(a, ix);
        ix
    }

    fn intern_profile(&mut self, p: Profile) -> u32 {
        if let Some(ix) = self.profile_ix.get(&p) {
            return *ix;
        }
        let ix = u32::try_from(self.profiles.len()).unwrap_or(u32::MAX);
        self.profiles.push(p.clone());
        self.profile_ix.insert(p, ix);
        ix
    }

    /// Adds `r` (a later record for the same number wins).
    pub(crate) fn insert(&mut self, r: &NumberRecord) {
        self.insert_with_flow(r, r.flow.as_deref());
    }

    /// Adds `r` with flow `flow` in place of `r.flow` (the start-up load:
    /// the stored flow string is interned here only, not first into an
    /// `Arc` of the record).
    pub(crate) fn insert_with_flow(&mut self, r: &NumberRecord, flow: Option<&str>) {
        let flow = flow.map_or(NO_FLOW, |f| self.intern_flow(f));
        let last = self.last_profile.filter(|&ix| self.profiles.get(ix as usize).is_some_and(|p| p.matches(r)));
        let profile = match last {
            Some(ix) => ix,
            None => self.intern_profile(Profile::of(r)),
        };
        self.last_profile = Some(profile);
        self.put(r.e164.as_u64(), flow, profile);
    }

    fn put(&mut self, key: u64, flow: u32, profile: u32) {
        if capacity_for(self.len + 1) > self.slots.len() {
            self.rehash(capacity_for((self.len + 1) * 2));
        }
        let cap = self.slots.len();
        let mut i = home(key, cap);
        loop {
            let Some(s) = self.slots.get_mut(i) else { return };
            if s.key == EMPTY {
                *s = Slot { key, flow, profile };
                self.len += 1;
                return;
            }
            if s.key == key {
                *s = Slot { key, flow, profile };
                return;
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
    }

    /// The base; the build-time indexes are dropped. A builder that grew
    /// by doubling is rehashed to the ¾ load first (slots are most of the
    /// base's size).
    pub(crate) fn finish(mut self) -> Base {
        if self.slots.len() > capacity_for(self.len) + capacity_for(self.len) / 4 {
            self.rehash(capacity_for(self.len));
        }
        Base {
            slots: self.slots.into_boxed_slice(),
            len: self.len,
            flows: self.flows.into_boxed_slice(),
            profiles: self.profiles.into_boxed_slice(),
        }
    }
}

impl NumberRef<'_> {
    /// An owned copy of the record.
    pub fn to_record(&self) -> NumberRecord {
        NumberRecord {
            e164: self.e164,
            kind: self.kind,
            flow: self.flow.cloned(),
            carriers: self.carriers.to_vec(),
            max_concurrent: self.max_concurrent,
            cnam: self.cnam.cloned(),
            state: self.state,
        }
    }

    /// Whether the number may place outbound calls as caller ID (SPEC §5:
    /// "an active number of ours"); a number being ported out is still ours.
    pub fn is_active(&self) -> bool {
        matches!(self.state, NumberState::Active | NumberState::PortOutPending { .. })
    }
}

impl<'a> From<&'a NumberRecord> for NumberRef<'a> {
    fn from(r: &'a NumberRecord) -> Self {
        NumberRef {
            e164: r.e164,
            kind: r.kind,
            flow: r.flow.as_ref(),
            carriers: &r.carriers,
            max_concurrent: r.max_concurrent,
            cnam: r.cnam.as_ref(),
            state: r.state,
        }
    }
}

impl serde::Serialize for NumberRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // The same JSON as the owned record (admin views, replica checks).
        self.to_record().serialize(s)
    }
}
