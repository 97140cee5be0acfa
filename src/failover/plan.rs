//! The ordered, serial list of next hops for one call (SPEC §5): own AZ first, drained
//! and down links skipped, scoped to the carriers the number may use.

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
}

/// The most hops a plan holds without allocating.
pub type Plan = SmallVec<[HopKey; 8]>;

/// Builds an ordered, serial plan.
///
/// `groups` are in preference order (a toll-free number's carriers in the number's order,
/// or the single carrier of a DID, or the flow engine as one group). Within each group,
/// links whose `az == own_az` come first, then the others in config order. Drained links
/// and links `is_up` says are down are skipped, and a hop listed twice is tried once.
/// When every candidate is down or drained the plan is empty, and the proxy answers 503
/// (SPEC §5: "every next hop failed or is down"), which lets an upstream carrier
/// route-advance rather than wait on hops health checks already gave up on.
pub fn plan(groups: &[&[HopCandidate]], own_az: &str, is_up: impl Fn(&HopKey) -> bool) -> Plan {
    let mut out = Plan::new();
    for group in groups {
        // Two passes keep config order within each half without sorting or allocating.
        for local in [true, false] {
            for c in group.iter().filter(|c| (&*c.key.az == own_az) == local) {
                if !c.drain && !out.contains(&c.key) && is_up(&c.key) {
                    out.push(c.key.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(group: &str, az: &str, port: u16) -> HopCandidate {
        HopCandidate {
            key: HopKey {
                group: group.into(),
                az: az.into(),
                addr: SocketAddr::from(([127, 0, 0, 2], port)),
                transport: Transport::Udp,
            },
            drain: false,
        }
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
}
