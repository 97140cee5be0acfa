//! Trunk limits (SPEC §10): each carrier's `max_concurrent` and `max_cps`,
//! counted in both directions, and the fair share of the instance.
//!
//! A call that may use a carrier takes a [`TrunkPermit`] from [`Trunks::try_admit`].
//! The permit rides on the call's number [`super::Permit`] (`set_trunk`), so the
//! carrier slot is released exactly when the number slot is, by every path that
//! already ends a call; an outbound call that fails over to another carrier
//! replaces it, which frees the old carrier's slot first.
//!
//! Hot path: one `ArcSwap` load and one hash lookup by carrier name, then
//! compare-and-swap loops on atomics, as in [`super::Admission`]. The rate is a
//! GCRA (a token bucket kept as one "theoretical arrival time") in a single
//! `AtomicU64`. Not the `governor` crate: its quota is fixed when a limiter is
//! built and it reads its own clock, while here a reload must change the rate
//! without losing the bucket, and the core passes time in (sans-IO). The bench
//! `admission/trunk_*` compares the two: governor's bare check is faster
//! (its TSC clock against our `Instant::now()`; the CAS alone is ~4 ns), see
//! docs/PERFORMANCE.md.
//!
//! Counters are keyed by carrier *name* and kept across reloads, so a reload
//! that changes the limits keeps the calls already counted; a carrier a reload
//! removes keeps living in the permits of its calls until they end.
//!
//! Cluster mode (SPEC §8) sits behind [`TrunkPermit`]: `try_admit` stays the
//! local pre-check at the full limits, then a capped carrier's call asks Redis
//! (`proxy::admit`); the carrier lease (`sipedge:{carrier:NAME}:calls`) is
//! attached to the permit and released with it, so a failover to another
//! carrier releases it too. While Redis is down, `local_share` also holds the
//! call to ceil(limit / instances alive) here: [`Trunks::take_share`].

use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use crate::metrics as m;

/// One carrier's configured limits (0 = unlimited).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkLimits {
    /// The carrier's name.
    pub name: Arc<str>,
    /// `max_concurrent`: calls up at once, both directions.
    pub max_concurrent: u32,
    /// `max_cps`: new calls per second, both directions.
    pub max_cps: u32,
}

impl TrunkLimits {
    /// Every `[[carrier]]`'s limits, in config order.
    pub fn from_config(cfg: &crate::config::Config) -> Vec<TrunkLimits> {
        cfg.carrier
            .iter()
            .map(|c| TrunkLimits {
                name: Arc::from(c.name.as_str()),
                max_concurrent: c.max_concurrent,
                max_cps: c.max_cps,
            })
            .collect()
    }
}

/// Why a carrier refused a call; the label of `sipedge_carrier_refused_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrunkReject {
    /// The carrier already has `max_concurrent` calls up.
    #[error("carrier at max_concurrent")]
    MaxConcurrent,
    /// The carrier's `max_cps` is used up for now.
    #[error("carrier at max_cps")]
    MaxCps,
    /// The instance is more than 80 % full and the carrier holds more than its equal share.
    #[error("carrier over its fair share of a busy instance")]
    FairShare,
}

impl TrunkReject {
    /// Every reason, in label order.
    pub const ALL: [TrunkReject; 3] = [TrunkReject::MaxConcurrent, TrunkReject::MaxCps, TrunkReject::FairShare];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TrunkReject::MaxConcurrent => "max_concurrent",
            TrunkReject::MaxCps => "max_cps",
            TrunkReject::FairShare => "fair_share",
        }
    }
}

/// One second in the limiter's time unit (nanoseconds).
const SECOND_NS: u64 = 1_000_000_000;

/// One carrier's counts and limits.
struct Trunk {
    name: Arc<str>,
    /// Calls holding a permit.
    active: AtomicU32,
    /// `max_concurrent` (0 = unlimited); atomic so a reload changes it in place.
    max_concurrent: AtomicU32,
    /// `max_cps` (0 = unlimited), for listing.
    max_cps: AtomicU32,
    /// GCRA emission interval, ns per call (`1 s / max_cps`); 0 = no rate limit.
    interval_ns: AtomicU64,
    /// GCRA theoretical arrival time, ns since [`Trunks::base`].
    tat: AtomicU64,
    /// The same for this instance's share of the rate while Redis is down.
    share_tat: AtomicU64,
    /// `sipedge_carrier_active_calls{carrier}`, resolved once.
    gauge: metrics::Gauge,
    /// `sipedge_carrier_refused_total{carrier,reason}`, in [`TrunkReject::ALL`] order.
    refused: [metrics::Counter; 3],
}

impl Trunk {
    fn new(name: Arc<str>) -> Trunk {
        let label = name.to_string();
        let refused = TrunkReject::ALL.map(|r| {
            let c = metrics::counter!(m::CARRIER_REFUSED_TOTAL, "carrier" => label.clone(), "reason" => r.as_str());
            // Registered at zero: a dashboard sees every carrier before its first refusal.
            c.increment(0);
            c
        });
        let gauge = metrics::gauge!(m::CARRIER_ACTIVE_CALLS, "carrier" => label);
        gauge.increment(0.0);
        Trunk {
            name,
            active: AtomicU32::new(0),
            max_concurrent: AtomicU32::new(0),
            max_cps: AtomicU32::new(0),
            interval_ns: AtomicU64::new(0),
            tat: AtomicU64::new(0),
            share_tat: AtomicU64::new(0),
            gauge,
            refused,
        }
    }

    fn set_limits(&self, l: &TrunkLimits) {
        self.max_concurrent.store(l.max_concurrent, Ordering::Relaxed);
        self.max_cps.store(l.max_cps, Ordering::Relaxed);
        let interval = if l.max_cps == 0 { 0 } else { SECOND_NS / u64::from(l.max_cps) };
        self.interval_ns.store(interval, Ordering::Relaxed);
    }

    fn refuse(&self, why: TrunkReject) -> TrunkReject {
        if let Some(c) = self.refused.get(why as usize) {
            c.increment(1);
        }
        why
    }
}

/// The GCRA test for one call at `now_ns`: admitted while the bucket has room,
/// with a burst of one second's worth (`max_cps` calls back to back, then
/// `max_cps` a second). Lock-free: one CAS on the arrival time. Public for
/// the bench against `governor` only.
#[doc(hidden)]
pub fn take_rate(tat: &AtomicU64, interval: u64, now_ns: u64) -> bool {
    if interval == 0 {
        return true;
    }
    let mut cur = tat.load(Ordering::Relaxed);
    loop {
        let next = cur.max(now_ns).saturating_add(interval);
        // The bucket holds one second: the arrival time may run at most 1 s ahead of now.
        if next > now_ns.saturating_add(SECOND_NS) {
            return false;
        }
        match tat.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(seen) => cur = seen,
        }
    }
}

/// The fair-share rule: once the instance holds more than 80 % of its cap, a
/// carrier already holding more than `cap / carriers` gets no new call. Both
/// counts leave out the call being admitted; integers only (`5 held > 4 cap`,
/// `held × carriers > cap`), so no rounding decides a boundary. A cap of 0
/// (unlimited) has no share to protect.
pub fn over_fair_share(instance_held: u32, instance_cap: u32, carrier_held: u32, carriers: usize) -> bool {
    if instance_cap == 0 || carriers == 0 {
        return false;
    }
    let busy = u64::from(instance_held) * 5 > u64::from(instance_cap) * 4;
    busy && u64::from(carrier_held) * carriers as u64 > u64::from(instance_cap)
}

/// The carriers of the current config, by name.
#[derive(Default)]
struct TrunkSet {
    by_name: HashMap<Arc<str>, Arc<Trunk>, ahash::RandomState>,
    /// Config order, for listing.
    order: Vec<Arc<Trunk>>,
}

/// Every carrier's counts and limits, shared by all shards.
pub struct Trunks {
    set: ArcSwap<TrunkSet>,
    /// Time zero of the rate limiter: the first instant it saw (time is passed in).
    base: OnceLock<Instant>,
}

impl fmt::Debug for Trunks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trunks").field("carriers", &self.set.load().order.len()).finish()
    }
}

impl Default for Trunks {
    fn default() -> Self {
        Trunks { set: ArcSwap::from_pointee(TrunkSet::default()), base: OnceLock::new() }
    }
}

/// One carrier's state, for `GET /v1/carriers`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrunkStatus {
    /// Carrier name.
    pub name: Arc<str>,
    /// Calls up with it now.
    pub active: u32,
    /// Its `max_concurrent` (0 = unlimited).
    pub max_concurrent: u32,
    /// Its `max_cps` (0 = unlimited).
    pub max_cps: u32,
}

impl Trunks {
    /// Installs the carriers and limits of a (re)loaded config. A carrier
    /// already known keeps its counters (calls up, rate bucket) and only gets
    /// the new limits; one no longer configured lives on in its calls' permits.
    pub fn configure(&self, limits: &[TrunkLimits]) {
        let old = self.set.load_full();
        let mut set = TrunkSet::default();
        for l in limits {
            let trunk = old.by_name.get(&l.name).cloned().unwrap_or_else(|| Arc::new(Trunk::new(l.name.clone())));
            trunk.set_limits(l);
            set.by_name.insert(l.name.clone(), trunk.clone());
            set.order.push(trunk);
        }
        self.set.store(Arc::new(set));
    }

    /// Admits one call with carrier `name` at `now`, or says which limit refused
    /// it (and counts the refusal). `instance_held` / `instance_cap` are the
    /// instance's calls besides this one and its `max_concurrent_calls`, for
    /// the fair share. A carrier no config names is not limited.
    ///
    /// Order: the concurrency slot is taken first and given back if the rate
    /// refuses, so a refused call never uses up rate; the rate is spent only
    /// by calls that go ahead.
    pub fn try_admit(
        &self,
        name: &str,
        now: Instant,
        instance_held: u32,
        instance_cap: u32,
    ) -> Result<Option<TrunkPermit>, TrunkReject> {
        let set = self.set.load();
        let Some(trunk) = set.by_name.get(name) else { return Ok(None) };
        let held = trunk.active.load(Ordering::Relaxed);
        if over_fair_share(instance_held, instance_cap, held, set.order.len()) {
            return Err(trunk.refuse(TrunkReject::FairShare));
        }
        let cap = trunk.max_concurrent.load(Ordering::Relaxed);
        if super::try_take(&trunk.active, cap).is_none() {
            return Err(trunk.refuse(TrunkReject::MaxConcurrent));
        }
        if !take_rate(&trunk.tat, trunk.interval_ns.load(Ordering::Relaxed), self.now_ns(now)) {
            trunk.active.fetch_sub(1, Ordering::Release);
            return Err(trunk.refuse(TrunkReject::MaxCps));
        }
        trunk.gauge.increment(1.0);
        Ok(Some(TrunkPermit { trunk: Arc::clone(trunk), lease: None, cleared: false }))
    }

    fn now_ns(&self, now: Instant) -> u64 {
        let base = *self.base.get_or_init(|| now);
        u64::try_from(now.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Cluster mode with Redis down, `local_share`: whether `permit`'s call
    /// fits this instance's share of its carrier's limits, ceil(limit /
    /// `alive`) of each (its own slot is counted). Counts the refusal.
    pub fn take_share(&self, permit: &TrunkPermit, now: Instant, alive: u32) -> Result<(), TrunkReject> {
        let t = &permit.trunk;
        let cap = t.max_concurrent.load(Ordering::Relaxed);
        if cap > 0 && t.active.load(Ordering::Relaxed) > crate::cluster::local_share(cap, alive) {
            return Err(t.refuse(TrunkReject::MaxConcurrent));
        }
        let cps = crate::cluster::local_share(t.max_cps.load(Ordering::Relaxed), alive);
        let interval = if cps == 0 { 0 } else { SECOND_NS / u64::from(cps) };
        if !take_rate(&t.share_tat, interval, self.now_ns(now)) {
            return Err(t.refuse(TrunkReject::MaxCps));
        }
        Ok(())
    }

    /// Calls up with carrier `name` now (0 for a carrier not configured).
    pub fn active(&self, name: &str) -> u32 {
        self.set.load().by_name.get(name).map_or(0, |t| t.active.load(Ordering::Relaxed))
    }

    /// Every configured carrier's counts and limits, in config order.
    pub fn status(&self) -> Vec<TrunkStatus> {
        self.set
            .load()
            .order
            .iter()
            .map(|t| TrunkStatus {
                name: t.name.clone(),
                active: t.active.load(Ordering::Relaxed),
                max_concurrent: t.max_concurrent.load(Ordering::Relaxed),
                max_cps: t.max_cps.load(Ordering::Relaxed),
            })
            .collect()
    }
}

/// One call's slot with one carrier. Not `Clone`: `Drop` gives the slot back once.
pub struct TrunkPermit {
    trunk: Arc<Trunk>,
    /// Cluster mode: the call's lease in the carrier's Redis set, released with the permit.
    lease: Option<Arc<crate::cluster::Lease>>,
    /// Cluster mode: the shared admission (or the backend-down policy) said yes.
    cleared: bool,
}

impl TrunkPermit {
    /// The carrier this slot belongs to.
    pub fn carrier(&self) -> &str {
        &self.trunk.name
    }

    /// The carrier's `max_concurrent` and `max_cps` now (0 = unlimited).
    pub fn limits(&self) -> (u32, u32) {
        (self.trunk.max_concurrent.load(Ordering::Relaxed), self.trunk.max_cps.load(Ordering::Relaxed))
    }

    /// Whether the carrier has a limit, so cluster mode must ask Redis.
    pub fn capped(&self) -> bool {
        self.limits() != (0, 0)
    }

    /// Makes the call's carrier lease part of this permit.
    pub fn attach_lease(&mut self, lease: Arc<crate::cluster::Lease>) {
        self.lease = Some(lease);
    }

    /// Whether the shared admission cleared this slot.
    pub fn cleared(&self) -> bool {
        self.cleared
    }

    /// Marks the slot cleared by the shared admission.
    pub fn clear(&mut self) {
        self.cleared = true;
    }

    /// Counts a refusal the shared admission gave this carrier.
    pub fn count_refused(&self, why: TrunkReject) {
        self.trunk.refuse(why);
    }
}

impl fmt::Debug for TrunkPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrunkPermit").field("carrier", &self.trunk.name).finish()
    }
}

impl Drop for TrunkPermit {
    fn drop(&mut self) {
        // Release pairs with the Acquire of `try_take`; this permit's own
        // increment is still counted, so no underflow.
        self.trunk.active.fetch_sub(1, Ordering::Release);
        self.trunk.gauge.decrement(1.0);
    }
}

#[cfg(test)]
#[path = "carrier_tests.rs"]
mod tests;
