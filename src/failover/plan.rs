//! The ordered, serial list of next hops for one call (SPEC §5, §13): own AZ first, then
//! by priority, the first try drawn by weight; drained and down links skipped, scoped to
//! the carriers the number may use.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::sip::Transport;

/// Group name of the flow engine's endpoints, which form a single group.
pub const FLOW_ENGINE: &str = "flow-engine";

/// Identifies a next hop (a carrier link or a flow-engine endpoint) across config reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HopKey {
    /// Carrier name, or [`FLOW_ENGINE`].
    pub group: Arc<str>,
    /// Availability zone of the link.
    pub az: Arc<str>,
    /// Where requests to the hop are sent.
    pub addr: SocketAddr,
    /// Transport used toward the hop.
    pub transport: Transport,
}

/// A configured next hop as a plan sees it.
#[derive(Debug, Clone)]
pub struct HopCandidate {
    /// The hop.
    pub key: HopKey,
    /// Drained: no new calls (calls already on it go on).
    pub drain: bool,
    /// Lower is tried first (SPEC §13).
    pub priority: u32,
    /// Share of first tries among targets of equal priority; 0 = only when no other is left.
    pub weight: u32,
    /// Smooth weighted round robin standing. Each shard's core holds its own
    /// candidates, so a `Cell` (no atomics, no lock). Only targets in a draw
    /// gain standing: one back from down or drain has not saved any up, so
    /// it gets its share again with no burst to catch up.
    pub standing: Cell<i64>,
    /// `sipedge_hop_calls_total` of this target (a no-op counter until registered).
    pub first_tries: metrics::Counter,
}

impl HopCandidate {
    /// A candidate that is not draining, with priority and weight 1.
    pub fn new(key: HopKey) -> HopCandidate {
        HopCandidate {
            key,
            drain: false,
            priority: 1,
            weight: 1,
            standing: Cell::new(0),
            first_tries: metrics::Counter::noop(),
        }
    }
}

/// The most hops a plan holds without allocating.
pub type Plan = SmallVec<[HopKey; 8]>;

/// Builds an ordered, serial plan, and counts its first try.
///
/// `groups` are in preference order (a toll-free number's carriers in the number's order,
/// or the single carrier of a DID, or the flow engine as one group). Within each group,
/// links whose `az == own_az` come first, then the others; within each half, by priority.
/// Among one priority, the first is drawn by weight (smooth weighted round robin), the
/// other weighted ones follow in config order, then those of weight 0. Drained links and
/// links `is_up` says are down are left out (and out of the draw), and a hop listed twice
/// is tried once. When every candidate is down or drained the plan is empty, and the proxy
/// answers 503 (SPEC §5: "every next hop failed or is down"), which lets an upstream
/// carrier route-advance rather than wait on hops health checks already gave up on.
pub fn plan(groups: &[&[HopCandidate]], own_az: &str, is_up: impl Fn(&HopKey) -> bool) -> Plan {
    let mut out = Plan::new();
    let mut first: Option<&HopCandidate> = None;
    let push = |out: &mut Plan, c: &HopCandidate| {
        if !out.contains(&c.key) {
            out.push(c.key.clone());
        }
    };
    let mut half: SmallVec<[&HopCandidate; 8]> = SmallVec::new();
    for group in groups {
        for local in [true, false] {
            half.clear();
            half.extend(
                group
                    .iter()
                    .filter(|c| (&*c.key.az == own_az) == local && !c.drain && !out.contains(&c.key) && is_up(&c.key)),
            );
            // Stable: config order within one priority.
            half.sort_by_key(|c| c.priority);
            for tier in half.chunk_by(|a, b| a.priority == b.priority) {
                let drawn = draw(tier);
                if let Some(d) = drawn {
                    first = first.or(Some(d));
                    push(&mut out, d);
                }
                for c in tier.iter().filter(|c| c.weight > 0 && !drawn.is_some_and(|d| std::ptr::eq(**c, d))) {
                    push(&mut out, c);
                }
                for c in tier.iter().filter(|c| c.weight == 0) {
                    first = first.or(Some(c));
                    push(&mut out, c);
                }
            }
        }
    }
    if let Some(c) = first.filter(|c| out.first() == Some(&c.key)) {
        c.first_tries.increment(1);
    }
    out
}

/// Smooth weighted round robin over the weighted targets of one tier: each
/// gains its weight, the highest standing is picked and pays back the tier's
/// total, so over any `total` draws each is picked `weight` times, evenly
/// spread (nginx's upstream algorithm). `None` when no target has weight.
fn draw<'a>(tier: &[&'a HopCandidate]) -> Option<&'a HopCandidate> {
    if let [only] = tier {
        return (only.weight > 0).then_some(*only);
    }
    let mut total = 0i64;
    let mut best: Option<&HopCandidate> = None;
    for c in tier.iter().copied().filter(|c| c.weight > 0) {
        let w = i64::from(c.weight);
        total += w;
        c.standing.set(c.standing.get() + w);
        if best.map_or(true, |b| c.standing.get() > b.standing.get()) {
            best = Some(c);
        }
    }
    if let Some(b) = best {
        b.standing.set(b.standing.get() - total);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn hop(group: &str, az: &str, port: u16) -> HopCandidate {
        HopCandidate::new(HopKey {
            group: group.into(),
            az: az.into(),
            addr: SocketAddr::from(([127, 0, 0, 2], port)),
            transport: Transport::Udp,
        })
    }

    fn names(p: &Plan) -> Vec<String> {
        p.iter().map(|k| format!("{}-{}", k.group, k.az)).collect()
    }

    #[test]
    fn toll_free_own_az_first_then_carrier_order() {
        let a = [hop("A", "az1", 1), hop("A", "az2", 2)];
        let b = [hop("B", "az1", 3)];
        let p = plan(&[&a, &b], "az2", |_| true);
        assert_eq!(names(&p), ["A-az2", "A-az1", "B-az1"]);
        // Carrier order is the number's, not alphabetical.
        let p = plan(&[&b, &a], "az2", |_| true);
        assert_eq!(names(&p), ["B-az1", "A-az2", "A-az1"]);
    }

    #[test]
    fn config_order_kept_within_each_half() {
        let a = [hop("A", "az3", 1), hop("A", "az1", 2), hop("A", "az2", 3), hop("A", "az1", 4)];
        let p = plan(&[&a], "az1", |_| true);
        let ports: Vec<u16> = p.iter().map(|k| k.addr.port()).collect();
        assert_eq!(ports, [2, 4, 1, 3]);
    }

    #[test]
    fn did_group_only_yields_its_carrier() {
        let a = [hop("A", "az1", 1), hop("A", "az2", 2)];
        let b = [hop("B", "az1", 3), hop("B", "az2", 4)];
        let p = plan(&[&a], "az1", |_| true);
        assert_eq!(names(&p), ["A-az1", "A-az2"]);
        // With its carrier down, a DID has nowhere to go even though B is up.
        let p = plan(&[&a], "az1", |k| &*k.group == "B");
        assert!(p.is_empty());
        // A toll-free number with both carriers moves on to B.
        let p = plan(&[&a, &b], "az1", |k| &*k.group == "B");
        assert_eq!(names(&p), ["B-az1", "B-az2"]);
    }

    #[test]
    fn drained_and_down_links_are_skipped() {
        let mut a = [hop("A", "az1", 1), hop("A", "az2", 2), hop("A", "az3", 3)];
        a[0].drain = true;
        let down = a[1].key.clone();
        let p = plan(&[&a], "az1", |k| *k != down);
        assert_eq!(names(&p), ["A-az3"]);
    }

    #[test]
    fn all_down_gives_an_empty_plan() {
        let a = [hop("A", "az1", 1), hop("A", "az2", 2)];
        let b = [hop("B", "az1", 3)];
        assert!(plan(&[&a, &b], "az1", |_| false).is_empty());
        let mut drained = a.clone();
        drained.iter_mut().for_each(|c| c.drain = true);
        assert!(plan(&[&drained], "az1", |_| true).is_empty());
        assert!(plan(&[], "az1", |_| true).is_empty());
    }

    #[test]
    fn a_hop_listed_twice_is_tried_once() {
        let a = [hop("A", "az1", 1), hop("A", "az2", 2)];
        let p = plan(&[&a, &a], "az2", |_| true);
        assert_eq!(names(&p), ["A-az2", "A-az1"]);
    }

    #[test]
    fn flow_engine_is_one_group() {
        let fe = [hop(FLOW_ENGINE, "az1", 10), hop(FLOW_ENGINE, "az2", 11)];
        let p = plan(&[&fe], "az2", |_| true);
        assert_eq!(names(&p), ["flow-engine-az2", "flow-engine-az1"]);
    }

    fn ranked(group: &str, az: &str, port: u16, priority: u32, weight: u32) -> HopCandidate {
        HopCandidate { priority, weight, ..hop(group, az, port) }
    }

    fn ports(p: &Plan) -> Vec<u16> {
        p.iter().map(|k| k.addr.port()).collect()
    }

    /// First tries per port over `n` plans.
    fn first_tries(groups: &[&[HopCandidate]], n: usize, up: impl Fn(&HopKey) -> bool) -> HashMap<u16, usize> {
        let mut seen = HashMap::new();
        for _ in 0..n {
            if let Some(k) = plan(groups, "az1", &up).first() {
                *seen.entry(k.addr.port()).or_default() += 1;
            }
        }
        seen
    }

    #[test]
    fn own_az_first_then_priority_then_weight_zero_last() {
        let fe = [
            ranked(FLOW_ENGINE, "az1", 1, 2, 1),
            ranked(FLOW_ENGINE, "az1", 2, 1, 0),
            ranked(FLOW_ENGINE, "az1", 3, 1, 1),
            ranked(FLOW_ENGINE, "az2", 4, 1, 1),
            ranked(FLOW_ENGINE, "az2", 5, 0, 1),
        ];
        // Own AZ by priority (weight 0 after the weighted of its priority), then
        // the other AZ by priority, however low the other AZ's numbers are.
        assert_eq!(ports(&plan(&[&fe], "az1", |_| true)), [3, 2, 1, 5, 4]);
        // Only the weight-0 target left at priority 1: it goes first.
        assert_eq!(ports(&plan(&[&fe], "az1", |k| k.addr.port() != 3)), [2, 1, 5, 4]);
    }

    #[test]
    fn the_number_s_carrier_order_stays_the_outer_loop() {
        let a = [ranked("A", "az1", 1, 1, 1), ranked("A", "az1", 2, 1, 1)];
        let b = [ranked("B", "az1", 3, 5, 1), ranked("B", "az2", 4, 1, 9)];
        let p = plan(&[&b, &a], "az1", |_| true);
        assert_eq!(ports(&p)[..2], [3, 4], "B's links first, own AZ first even at priority 5");
        assert!(ports(&p)[2..] == [1, 2] || ports(&p)[2..] == [2, 1]);
    }

    #[test]
    fn first_tries_follow_the_weights_within_2_percent() {
        let fe = [
            ranked(FLOW_ENGINE, "az1", 1, 1, 1),
            ranked(FLOW_ENGINE, "az1", 2, 1, 2),
            ranked(FLOW_ENGINE, "az1", 3, 1, 3),
        ];
        let seen = first_tries(&[&fe], 60_000, |_| true);
        for (port, weight) in [(1u16, 1usize), (2, 2), (3, 3)] {
            let want = 60_000 * weight / 6;
            let got = seen.get(&port).copied().unwrap_or(0);
            assert!(got.abs_diff(want) * 50 <= want, "port {port}: {got} first tries, want {want} ± 2 %");
        }
        // Every plan still lists all three: the rest of the tier follows the drawn one.
        assert_eq!(plan(&[&fe], "az1", |_| true).len(), 3);
    }

    #[test]
    fn the_draw_is_smooth_not_bursty() {
        // nginx's example: weights 5, 1, 1 give a a b a c a a.
        let fe = [
            ranked(FLOW_ENGINE, "az1", 1, 1, 5),
            ranked(FLOW_ENGINE, "az1", 2, 1, 1),
            ranked(FLOW_ENGINE, "az1", 3, 1, 1),
        ];
        let order: Vec<u16> = (0..7).map(|_| plan(&[&fe], "az1", |_| true)[0].addr.port()).collect();
        assert_eq!(order, [1, 1, 2, 1, 3, 1, 1]);
    }

    #[test]
    fn a_down_target_is_never_drawn_and_its_share_goes_to_the_rest() {
        let fe = [
            ranked(FLOW_ENGINE, "az1", 1, 1, 1),
            ranked(FLOW_ENGINE, "az1", 2, 1, 2),
            ranked(FLOW_ENGINE, "az1", 3, 1, 3),
        ];
        let seen = first_tries(&[&fe], 30_000, |k| k.addr.port() != 3);
        assert_eq!(seen.get(&3), None, "never drawn, never in the plan");
        assert_eq!((seen.get(&1), seen.get(&2)), (Some(&10_000), Some(&20_000)));
        let mut drained = fe.clone();
        drained[1].drain = true;
        let seen = first_tries(&[&drained], 4_000, |_| true);
        assert_eq!((seen.get(&1), seen.get(&2), seen.get(&3)), (Some(&1_000), None, Some(&3_000)));
    }

    #[test]
    fn a_target_back_up_gets_its_share_without_a_burst() {
        let fe = [
            ranked(FLOW_ENGINE, "az1", 1, 1, 1),
            ranked(FLOW_ENGINE, "az1", 2, 1, 1),
            ranked(FLOW_ENGINE, "az1", 3, 1, 1),
        ];
        first_tries(&[&fe], 3_001, |k| k.addr.port() != 3);
        // Back after 3,001 calls without it: a third of the next 30, not 3,001 in a row.
        let order: Vec<u16> = (0..30).map(|_| plan(&[&fe], "az1", |_| true)[0].addr.port()).collect();
        let back = order.iter().filter(|p| **p == 3).count();
        assert!((9..=11).contains(&back), "{order:?}");
        assert!(order.windows(2).all(|w| w[0] != w[1]), "no target twice in a row at equal weights: {order:?}");
    }

    #[test]
    fn weight_zero_only_when_nothing_else_is_left() {
        let fe = [ranked(FLOW_ENGINE, "az1", 1, 1, 0), ranked(FLOW_ENGINE, "az1", 2, 1, 1)];
        let seen = first_tries(&[&fe], 100, |_| true);
        assert_eq!(seen.get(&2), Some(&100));
        assert_eq!(ports(&plan(&[&fe], "az1", |_| true)), [2, 1], "still a fallback in the plan");
        assert_eq!(ports(&plan(&[&fe], "az1", |k| k.addr.port() == 1)), [1]);
    }
}
