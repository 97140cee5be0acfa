//! Next-hop health from OPTIONS probes and real-call failures, with hysteresis
//! (as pingora's `health_threshold`): one lost OPTIONS must not flip a link and
//! move every new call elsewhere.
//!
//! Sans-IO: this module never reads the clock nor sends anything. The core asks
//! [`Health::due_probes`] which hops to send an OPTIONS to, sends them, and reports each
//! probe's result with [`Health::record`]; [`Health::next_due`] feeds its `poll_timeout`.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::plan::HopKey;

/// Name of the gauge of links up per carrier and AZ (SPEC §7).
pub use crate::metrics::LINK_UP;

/// A flip of a hop's damped state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The hop answered `up_after` probes in a row and takes calls again.
    Up(HopKey),
    /// The hop failed `down_after` times in a row and is skipped by plans.
    Down(HopKey),
}

/// One hop's probe and hysteresis state.
#[derive(Debug, Clone)]
struct HopState {
    /// The damped state plans see.
    up: bool,
    /// Successes in a row (reset by a failure).
    ok_run: u32,
    /// Failures in a row (reset by a success).
    fail_run: u32,
    /// A probe was handed out and its result is not recorded yet; no second one is sent.
    in_flight: bool,
    /// When the next probe is due (meaningless while `in_flight`).
    next_due: Instant,
}

/// Health of every configured next hop.
#[derive(Debug)]
pub struct Health {
    /// Time between two probes of one hop (`[health].options_interval_ms`).
    interval: Duration,
    /// Consecutive failures before an up hop goes down (at least 1).
    down_after: u32,
    /// Consecutive successes before a down hop comes up (at least 1).
    up_after: u32,
    hops: HashMap<HopKey, HopState>,
}

impl Health {
    /// Empty health state; thresholds of 0 are taken as 1.
    pub fn new(interval: Duration, down_after: u32, up_after: u32) -> Health {
        Health { interval, down_after: down_after.max(1), up_after: up_after.max(1), hops: HashMap::new() }
    }

    /// Applies new `[health]` settings (config reload). Run lengths are kept; probes not
    /// in flight are rescheduled as if their last one had been sent with the new interval.
    pub fn set_params(&mut self, interval: Duration, down_after: u32, up_after: u32) {
        if interval != self.interval {
            for st in self.hops.values_mut().filter(|st| !st.in_flight) {
                if let Some(sent) = st.next_due.checked_sub(self.interval) {
                    st.next_due = sent + interval;
                }
            }
        }
        self.interval = interval;
        self.down_after = down_after.max(1);
        self.up_after = up_after.max(1);
    }

    /// Makes the tracked hops exactly `hops`: new ones start up with a probe due `now`,
    /// removed ones are forgotten, and kept ones keep their state, so a reload neither
    /// revives a dead link nor waits out the thresholds again for a healthy one.
    pub fn sync_hops(&mut self, hops: impl IntoIterator<Item = HopKey>, now: Instant) {
        let wanted: HashSet<HopKey> = hops.into_iter().collect();
        let mut touched: Vec<(Arc<str>, Arc<str>)> = Vec::new();
        self.hops.retain(|key, _| {
            let keep = wanted.contains(key);
            if !keep {
                tracing::info!(carrier = %key.group, az = %key.az, addr = %key.addr, "next hop removed from health checks");
                touched.push((key.group.clone(), key.az.clone()));
            }
            keep
        });
        for key in wanted {
            if let Entry::Vacant(slot) = self.hops.entry(key) {
                touched.push((slot.key().group.clone(), slot.key().az.clone()));
                slot.insert(HopState { up: true, ok_run: 0, fail_run: 0, in_flight: false, next_due: now });
            }
        }
        touched.sort_unstable();
        touched.dedup();
        for (group, az) in touched {
            self.publish(&group, &az);
        }
    }

    /// Whether plans may use the hop. A hop not tracked (yet) is taken as up.
    pub fn is_up(&self, key: &HopKey) -> bool {
        self.hops.get(key).map_or(true, |st| st.up)
    }

    /// The hops whose probe is due at `now`. Each is marked in flight (no second probe
    /// until its result is recorded) and its next probe scheduled one interval from now;
    /// a late driver therefore never sends a burst of catch-up probes.
    ///
    /// Every hop returned must later get exactly one [`Health::record`]: `true` for any
    /// response, `false` when the probe times out or cannot be sent.
    pub fn due_probes(&mut self, now: Instant) -> Vec<HopKey> {
        let mut due = Vec::new();
        for (key, st) in &mut self.hops {
            if !st.in_flight && st.next_due <= now {
                st.in_flight = true;
                st.next_due = now + self.interval;
                due.push(key.clone());
            }
        }
        due
    }

    /// The earliest time a probe is due, if any hop is waiting for one.
    pub fn next_due(&self) -> Option<Instant> {
        self.hops.values().filter(|st| !st.in_flight).map(|st| st.next_due).min()
    }

    /// Records one result for `key`: a probe's (any response is `ok`; a timeout or
    /// transport error is not), or a real call's transport error or timeout (`ok = false`).
    /// Returns the flip of the damped state, if this result caused one. Results for hops
    /// no longer tracked are ignored. Any result also ends the hop's probe in flight (a
    /// call's result cannot be told from a probe's); at worst a second probe is sent
    /// early, and both results are real observations.
    pub fn record(&mut self, key: &HopKey, ok: bool) -> Option<Change> {
        let st = self.hops.get_mut(key)?;
        st.in_flight = false;
        let change = if ok {
            st.fail_run = 0;
            st.ok_run = st.ok_run.saturating_add(1);
            (!st.up && st.ok_run >= self.up_after).then(|| {
                st.up = true;
                Change::Up(key.clone())
            })
        } else {
            st.ok_run = 0;
            st.fail_run = st.fail_run.saturating_add(1);
            (st.up && st.fail_run >= self.down_after).then(|| {
                st.up = false;
                Change::Down(key.clone())
            })
        };
        match &change {
            Some(Change::Down(k)) => tracing::warn!(
                carrier = %k.group, az = %k.az, addr = %k.addr, transport = %k.transport,
                failures = self.down_after, "next hop down"
            ),
            Some(Change::Up(k)) => tracing::info!(
                carrier = %k.group, az = %k.az, addr = %k.addr, transport = %k.transport,
                successes = self.up_after, "next hop up"
            ),
            None => return None,
        }
        self.publish(&key.group, &key.az);
        change
    }

    /// Every tracked hop and whether it is up, sorted by carrier, AZ, address, transport.
    pub fn snapshot(&self) -> Vec<(HopKey, bool)> {
        let mut out: Vec<(HopKey, bool)> = self.hops.iter().map(|(k, st)| (k.clone(), st.up)).collect();
        out.sort_by(|(a, _), (b, _)| {
            (&a.group, &a.az, a.addr, a.transport.as_str()).cmp(&(&b.group, &b.az, b.addr, b.transport.as_str()))
        });
        out
    }

    /// Links of `group` in `az` that are up.
    fn up_count(&self, group: &str, az: &str) -> usize {
        self.hops.iter().filter(|(k, st)| st.up && &*k.group == group && &*k.az == az).count()
    }

    /// Sets `sipedge_link_up{carrier,az}` to the number of that carrier's links in that AZ
    /// that are up: 1/0 with the usual one link per AZ, and 0 exactly when the AZ is lost
    /// for that carrier even if it has several links there. A pair whose links were all
    /// removed reads 0.
    fn publish(&self, group: &Arc<str>, az: &Arc<str>) {
        let n = self.up_count(group, az);
        metrics::gauge!(LINK_UP, "carrier" => Arc::clone(group), "az" => Arc::clone(az)).set(n as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::sip::Transport;

    const SEC: Duration = Duration::from_secs(1);

    fn key(group: &str, az: &str, port: u16) -> HopKey {
        HopKey {
            group: group.into(),
            az: az.into(),
            addr: SocketAddr::from(([127, 0, 0, 2], port)),
            transport: Transport::Udp,
        }
    }

    fn one(down_after: u32, up_after: u32) -> (Health, HopKey) {
        let mut h = Health::new(5 * SEC, down_after, up_after);
        let k = key("A", "az1", 1);
        h.sync_hops([k.clone()], Instant::now());
        (h, k)
    }

    fn sorted(mut v: Vec<HopKey>) -> Vec<u16> {
        v.sort_by_key(|k| k.addr.port());
        v.iter().map(|k| k.addr.port()).collect()
    }

    #[test]
    fn isolated_failures_do_not_flip() {
        let (mut h, k) = one(2, 2);
        for ok in [false, true, false, true, false] {
            assert_eq!(h.record(&k, ok), None);
            assert!(h.is_up(&k));
        }
    }

    #[test]
    fn down_after_consecutive_failures_then_up_after_consecutive_successes() {
        let (mut h, k) = one(2, 2);
        assert_eq!(h.record(&k, false), None);
        assert_eq!(h.record(&k, false), Some(Change::Down(k.clone())));
        assert!(!h.is_up(&k));
        // More failures while down change nothing.
        assert_eq!(h.record(&k, false), None);
        // ok, fail, ok: the success run is broken, still down.
        assert_eq!(h.record(&k, true), None);
        assert_eq!(h.record(&k, false), None);
        assert_eq!(h.record(&k, true), None);
        assert!(!h.is_up(&k));
        assert_eq!(h.record(&k, true), Some(Change::Up(k.clone())));
        assert!(h.is_up(&k));
        assert_eq!(h.record(&k, true), None);
    }

    #[test]
    fn asymmetric_and_zero_thresholds() {
        let (mut h, k) = one(1, 3);
        assert_eq!(h.record(&k, false), Some(Change::Down(k.clone())));
        assert_eq!(h.record(&k, true), None);
        assert_eq!(h.record(&k, true), None);
        assert_eq!(h.record(&k, true), Some(Change::Up(k.clone())));
        // 0 is taken as 1: a single result flips.
        let (mut h, k) = one(0, 0);
        assert_eq!(h.record(&k, false), Some(Change::Down(k.clone())));
        assert_eq!(h.record(&k, true), Some(Change::Up(k.clone())));
    }

    #[test]
    fn unknown_hops_are_up_and_their_results_ignored() {
        let (mut h, _) = one(1, 1);
        let stranger = key("Z", "az9", 9);
        assert!(h.is_up(&stranger));
        assert_eq!(h.record(&stranger, false), None);
        assert!(h.is_up(&stranger));
        assert_eq!(h.snapshot().len(), 1);
    }

    #[test]
    fn probes_are_scheduled_on_a_virtual_clock() {
        let t0 = Instant::now();
        let mut h = Health::new(5 * SEC, 2, 2);
        let (a, b) = (key("A", "az1", 1), key("A", "az2", 2));
        h.sync_hops([a.clone(), b.clone()], t0);
        // New hops are probed at once.
        assert_eq!(h.next_due(), Some(t0));
        assert_eq!(sorted(h.due_probes(t0)), [1, 2]);
        // In flight: not handed out again, and nothing is waiting.
        assert!(h.due_probes(t0 + 60 * SEC).is_empty());
        assert_eq!(h.next_due(), None);
        h.record(&a, true);
        assert_eq!(h.next_due(), Some(t0 + 5 * SEC));
        assert!(h.due_probes(t0 + 4 * SEC).is_empty());
        assert_eq!(sorted(h.due_probes(t0 + 5 * SEC)), [1]);
        // A late driver (at 12 s) gets one probe, and the next one an interval later.
        h.record(&a, true);
        h.record(&b, false);
        assert_eq!(h.next_due(), Some(t0 + 5 * SEC));
        assert_eq!(sorted(h.due_probes(t0 + 12 * SEC)), [1, 2]);
        assert!(h.due_probes(t0 + 12 * SEC).is_empty());
        h.record(&a, true);
        h.record(&b, false);
        assert_eq!(h.next_due(), Some(t0 + 17 * SEC));
        assert!(!h.is_up(&b));
    }

    #[test]
    fn new_interval_reschedules_waiting_probes() {
        let t0 = Instant::now();
        let (mut h, k) = (Health::new(5 * SEC, 2, 2), key("A", "az1", 1));
        h.sync_hops([k.clone()], t0);
        h.due_probes(t0);
        h.record(&k, true);
        assert_eq!(h.next_due(), Some(t0 + 5 * SEC));
        h.set_params(2 * SEC, 3, 3);
        assert_eq!(h.next_due(), Some(t0 + 2 * SEC));
        // New thresholds apply to the running counts.
        assert_eq!(h.record(&k, false), None);
        assert_eq!(h.record(&k, false), None);
        assert_eq!(h.record(&k, false), Some(Change::Down(k)));
    }

    #[test]
    fn sync_hops_keeps_state_of_kept_hops() {
        let t0 = Instant::now();
        let mut h = Health::new(5 * SEC, 1, 2);
        let (a, b, c) = (key("A", "az1", 1), key("A", "az2", 2), key("B", "az1", 3));
        h.sync_hops([a.clone(), b.clone()], t0);
        h.due_probes(t0);
        assert_eq!(h.record(&a, false), Some(Change::Down(a.clone())));
        h.record(&b, true);
        assert_eq!(h.record(&a, true), None); // 1 of the 2 successes needed
                                              // Reload: b removed, c added, a kept (still down, its success run kept too).
        h.sync_hops([a.clone(), c.clone()], t0 + SEC);
        assert!(!h.is_up(&a));
        assert!(h.is_up(&c));
        let snap: Vec<(u16, bool)> = h.snapshot().iter().map(|(k, up)| (k.addr.port(), *up)).collect();
        assert_eq!(snap, [(1, false), (3, true)]);
        assert_eq!(h.record(&b, false), None);
        assert_eq!(h.record(&a, true), Some(Change::Up(a.clone())));
        // The new hop is probed at once; the kept one keeps its schedule.
        assert_eq!(sorted(h.due_probes(t0 + SEC)), [3]);
        // A re-added hop starts afresh, up.
        h.sync_hops([b.clone()], t0 + 2 * SEC);
        assert!(h.is_up(&b));
        assert_eq!(h.snapshot().len(), 1);
    }

    #[test]
    fn link_up_counts_up_links_per_carrier_and_az() {
        let t0 = Instant::now();
        let mut h = Health::new(5 * SEC, 1, 1);
        let (a1, a1b, a2, b1) = (key("A", "az1", 1), key("A", "az1", 2), key("A", "az2", 3), key("B", "az1", 4));
        h.sync_hops([a1.clone(), a1b.clone(), a2.clone(), b1.clone()], t0);
        assert_eq!((h.up_count("A", "az1"), h.up_count("A", "az2"), h.up_count("B", "az1")), (2, 1, 1));
        h.record(&a1, false);
        assert_eq!(h.up_count("A", "az1"), 1);
        h.record(&a1b, false);
        assert_eq!(h.up_count("A", "az1"), 0);
        assert_eq!(h.up_count("B", "az1"), 1);
    }
}
