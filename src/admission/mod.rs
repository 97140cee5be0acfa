//! Concurrency admission: the per-number cap and the instance cap (SPEC §2).
//!
//! A call is admitted with [`Admission::try_admit`], which hands back a RAII [`Permit`].
//! The dialog owns the permit; dropping it frees the number slot and the instance slot,
//! so each call's slots are released exactly once however the call ends (after
//! pingora-limits' `Guard`): no code path has to remember to give a slot back.
//!
//! Sans-IO, and no mutex on the hot path: one `DashMap` read of an existing counter (a
//! shard read lock held only for the lookup), then compare-and-add loops on atomics. A
//! permit is a single `Arc` to the number's counter, which itself points at the instance
//! counts, so releasing needs no lookup and works even after the `Admission` is gone.
//! A number's counter is created on its first admission and then kept for the life of the
//! `Admission`, so its high-water mark survives idle periods. Only routable numbers reach
//! admission, so the map is bounded by the number inventory (about 70 bytes a number).

pub mod carrier;
#[cfg(test)]
mod tests;

pub use carrier::{TrunkLimits, TrunkPermit, TrunkReject, TrunkStatus, Trunks};

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::sip::E164;

/// Name of the gauge of calls holding a permit (SPEC §7).
pub use crate::metrics::{ACTIVE_CALLS, ACTIVE_CALLS_HIGH_WATER, NUMBER_CALLS_HIGH_WATER};

/// Why a call was not admitted. `proxy::respond` maps these to SIP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AtCap {
    /// The number already carries its `max_concurrent` calls (answered 486).
    #[error("number at its concurrency cap")]
    NumberFull,
    /// The instance already carries `max_concurrent_calls` calls (answered 503 with Retry-After).
    #[error("instance at max_concurrent_calls")]
    InstanceFull,
}

/// The instance-wide counts, shared by the `Admission` and every number's counter.
#[derive(Debug)]
struct Instance {
    /// Calls currently admitted on the whole instance.
    active: AtomicU32,
    /// `max_concurrent_calls`; 0 = unlimited. Atomic so a config reload can change it live.
    cap: AtomicU32,
    /// Highest `active` ever reached.
    high_water: AtomicU32,
    /// Handle to [`ACTIVE_CALLS`], resolved once so the hot path skips the registry lookup.
    gauge: metrics::Gauge,
    /// Handle to [`ACTIVE_CALLS_HIGH_WATER`]: `high_water` made visible from outside.
    high_water_gauge: metrics::Gauge,
}

/// Live and peak call counts of one number.
///
/// It points at the instance counts itself so that a permit is a single `Arc`: one
/// reference-count increment per call instead of two, on a cache line the number's own
/// counts share.
#[derive(Debug)]
struct Counter {
    /// Calls currently holding a permit for the number.
    active: AtomicU32,
    /// Highest `active` ever reached.
    high_water: AtomicU32,
    /// The number counted.
    number: E164,
    /// The instance the number's calls also count against.
    instance: Arc<Instance>,
}

/// The admission state shared by every dialog of the instance.
pub struct Admission {
    /// One counter per number ever admitted; see the module doc for why entries stay.
    per_number: DashMap<u64, Arc<Counter>, ahash::RandomState>,
    /// Instance-wide counts and cap.
    instance: Arc<Instance>,
    /// Per-carrier limits and counts (SPEC §10).
    trunks: Trunks,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("numbers", &self.per_number.len())
            .field("active_total", &self.active_total())
            .field("instance_cap", &self.instance_cap())
            .finish()
    }
}

/// A cap of 0 means unlimited; as a limit that is `u32::MAX`, which also keeps the
/// counters from ever wrapping.
fn limit(cap: u32) -> u32 {
    if cap == 0 {
        u32::MAX
    } else {
        cap
    }
}

/// Adds one to `counter` if it is below `limit(cap)`; returns the new value.
///
/// Acquire on success pairs with the Release in [`Permit`]'s `Drop`: whatever the previous
/// holder of a slot did before giving it back happens-before the new holder's admission,
/// the usual semaphore guarantee.
pub(crate) fn try_take(counter: &AtomicU32, cap: u32) -> Option<u32> {
    let limit = limit(cap);
    let mut cur = counter.load(Ordering::Relaxed);
    loop {
        if cur >= limit {
            return None;
        }
        match counter.compare_exchange_weak(cur, cur + 1, Ordering::Acquire, Ordering::Relaxed) {
            Ok(_) => return Some(cur + 1),
            Err(now) => cur = now,
        }
    }
}

/// Raises a high-water mark and returns by how much it rose. The plain load first keeps
/// the common case (no new peak) free of a read-modify-write on a shared cache line.
///
/// Each rise is the disjoint step `prev..value` won by one `fetch_max`, so adding the
/// returned steps to a gauge makes it equal the mark exactly, whatever the thread order
/// (setting the gauge to `value` could let an older, lower peak overwrite a newer one).
fn raise(high_water: &AtomicU32, value: u32) -> u32 {
    if value > high_water.load(Ordering::Relaxed) {
        let prev = high_water.fetch_max(value, Ordering::Relaxed);
        return value.saturating_sub(prev);
    }
    0
}

/// Takes the number slot, then the instance slot; all or nothing. The caller wraps a
/// success in a `Permit` at once.
fn take_slots(counter: &Counter, cap: u32, instance_cap: u32) -> Result<(), AtCap> {
    let instance = &*counter.instance;
    let Some(active) = try_take(&counter.active, cap) else {
        return Err(AtCap::NumberFull);
    };
    let Some(total) = try_take(&instance.active, instance_cap) else {
        // Give the number slot back: the call was never admitted.
        counter.active.fetch_sub(1, Ordering::Release);
        return Err(AtCap::InstanceFull);
    };
    if raise(&counter.high_water, active) > 0 && cap != 0 && active >= cap {
        // A new peak at the cap: rare (once per number that ever gets busy), so the
        // labelled gauge is looked up here rather than kept per counter.
        metrics::gauge!(NUMBER_CALLS_HIGH_WATER, "number" => counter.number.to_string())
            .set(f64::from(counter.high_water.load(Ordering::Relaxed)));
    }
    let rose = raise(&instance.high_water, total);
    if rose > 0 {
        instance.high_water_gauge.increment(f64::from(rose));
    }
    instance.gauge.increment(1.0);
    Ok(())
}

impl Admission {
    /// A fresh admission state with `max_concurrent_calls = instance_cap` (0 = unlimited).
    ///
    /// Resolves the [`ACTIVE_CALLS`] and [`ACTIVE_CALLS_HIGH_WATER`] gauges now, so build
    /// it after the metrics recorder is installed.
    pub fn new(instance_cap: u32) -> Admission {
        Admission {
            per_number: DashMap::with_hasher(ahash::RandomState::new()),
            instance: Arc::new(Instance {
                active: AtomicU32::new(0),
                cap: AtomicU32::new(instance_cap),
                high_water: AtomicU32::new(0),
                gauge: metrics::gauge!(ACTIVE_CALLS),
                high_water_gauge: metrics::gauge!(ACTIVE_CALLS_HIGH_WATER),
            }),
            trunks: Trunks::default(),
        }
    }

    /// Changes `max_concurrent_calls` (config reload; 0 = unlimited). Calls already
    /// admitted are kept; a lower cap only refuses new calls until enough have ended.
    pub fn set_instance_cap(&self, cap: u32) {
        self.instance.cap.store(cap, Ordering::Relaxed);
    }

    /// The current `max_concurrent_calls` (0 = unlimited).
    pub fn instance_cap(&self) -> u32 {
        self.instance.cap.load(Ordering::Relaxed)
    }

    /// Admits one call for `number` under the number's `cap` (0 = unlimited) and the
    /// instance cap, or says which cap refused it.
    ///
    /// The number slot is taken before the instance slot: the frequent refusal (a busy
    /// number, 486) then takes nothing from the instance, so it cannot make a concurrent
    /// call on another number see a full instance. If the instance is
    /// full the number slot is given back before returning, so no half-taken reservation
    /// survives the call. A cheap pre-check of the instance counter keeps an overloaded
    /// instance from churning number counters.
    ///
    /// Takes `&self` (callers hold an `Arc<Admission>`; the permit does not need it).
    pub fn try_admit(&self, number: E164, cap: u32) -> Result<Permit, AtCap> {
        let instance_cap = self.instance_cap();
        if self.instance.active.load(Ordering::Relaxed) >= limit(instance_cap) {
            return Err(AtCap::InstanceFull);
        }
        let counter = self.counter(number);
        take_slots(&counter, cap, instance_cap)?;
        Ok(Permit { counter, lease: None, trunk: None })
    }

    /// The number's counter, created on first use.
    fn counter(&self, number: E164) -> Arc<Counter> {
        let key = number.as_u64();
        // Common case: the counter exists; a shard read lock for the lookup only.
        if let Some(c) = self.per_number.get(&key) {
            return Arc::clone(c.value());
        }
        // `entry` re-checks under the shard write lock, so two racing first admissions
        // share one counter.
        let entry = self.per_number.entry(key).or_insert_with(|| {
            Arc::new(Counter {
                active: AtomicU32::new(0),
                high_water: AtomicU32::new(0),
                number,
                instance: Arc::clone(&self.instance),
            })
        });
        Arc::clone(entry.value())
    }

    /// Calls currently admitted for `number`.
    pub fn active(&self, number: E164) -> u32 {
        self.per_number.get(&number.as_u64()).map_or(0, |c| c.active.load(Ordering::Relaxed))
    }

    /// Calls currently admitted on the instance.
    pub fn active_total(&self) -> u32 {
        self.instance.active.load(Ordering::Relaxed)
    }

    /// The most calls `number` ever had at once.
    pub fn high_water(&self, number: E164) -> u32 {
        self.per_number.get(&number.as_u64()).map_or(0, |c| c.high_water.load(Ordering::Relaxed))
    }

    /// The most calls the instance ever had at once.
    pub fn high_water_total(&self) -> u32 {
        self.instance.high_water.load(Ordering::Relaxed)
    }

    /// The carriers' limits and counts.
    pub fn trunks(&self) -> &Trunks {
        &self.trunks
    }

    /// Gives `permit`'s call a slot with carrier `carrier` at `now`, under the
    /// carrier's limits and the fair share of this instance (the call's own
    /// instance slot, already in `permit`, left out of the count). A slot the
    /// permit had with another carrier is given back first (failover).
    pub fn admit_trunk(&self, permit: &mut Permit, carrier: &str, now: std::time::Instant) -> Result<(), TrunkReject> {
        if permit.trunk.as_ref().is_some_and(|t| t.carrier() == carrier) {
            return Ok(());
        }
        permit.trunk = None;
        let held = self.active_total().saturating_sub(1);
        permit.trunk = self.trunks.try_admit(carrier, now, held, self.instance_cap())?;
        Ok(())
    }
}

/// One admitted call's slots (its number's and the instance's).
///
/// Not `Clone`: `Drop` gives both slots back, and it runs exactly once.
pub struct Permit {
    /// The number's counter (which reaches the instance's), held directly so release
    /// needs no map lookup, and alive as long as the call even if the `Admission` is not.
    counter: Arc<Counter>,
    /// Cluster mode: the call's lease in Redis, released with the permit.
    lease: Option<Arc<crate::cluster::Lease>>,
    /// The call's slot with the carrier it came from or goes to (SPEC §10),
    /// released with the permit; replaced when an outbound call fails over.
    trunk: Option<TrunkPermit>,
}

impl Permit {
    /// The number this permit counts against.
    pub fn number(&self) -> E164 {
        self.counter.number
    }

    /// The carrier whose slot the call holds, if any.
    pub fn trunk(&self) -> Option<&str> {
        self.trunk.as_ref().map(TrunkPermit::carrier)
    }

    /// The call's carrier slot, if any.
    pub fn trunk_ref(&self) -> Option<&TrunkPermit> {
        self.trunk.as_ref()
    }

    /// The call's carrier slot, if any (cluster mode attaches its lease).
    pub fn trunk_mut(&mut self) -> Option<&mut TrunkPermit> {
        self.trunk.as_mut()
    }

    /// Gives the carrier slot back (the shared admission refused it).
    pub fn drop_trunk(&mut self) {
        self.trunk = None;
    }

    /// Makes the call's shared (Redis) slot part of this permit: it is
    /// released when the permit is dropped, like the local slots.
    pub fn attach_lease(&mut self, lease: Arc<crate::cluster::Lease>) {
        self.lease = Some(lease);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").field("number", &self.counter.number).finish()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Release: see `try_take`. Neither counter can underflow: this permit's own
        // increment is still counted in each.
        let instance = &*self.counter.instance;
        self.counter.active.fetch_sub(1, Ordering::Release);
        instance.active.fetch_sub(1, Ordering::Release);
        instance.gauge.decrement(1.0);
    }
}
