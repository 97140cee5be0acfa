//! Who is on the other side: carriers (with their AZ links and extra source
//! ranges) and the flow engine. Built from config by the lead; immutable; a
//! reload builds a new `Peers` and publishes it with the numbers unchanged.
//!
//! Requests are classified by source IP (SPEC §4): an exact hash lookup over
//! every link and flow-engine IP first (the common case, O(1)), then the
//! carriers' `sources` CIDRs, most specific first.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::sip::Transport;

/// One next hop: a carrier link or a flow-engine endpoint in one AZ.
#[derive(Debug, Clone)]
pub struct PeerLink {
    /// Availability zone of the link (own-AZ links are tried first).
    pub az: Arc<str>,
    /// Where we send; requests from this IP belong to the link's owner.
    pub addr: SocketAddr,
    /// UDP or TCP.
    pub transport: Transport,
    /// Draining: no new calls to it, calls already on it go on.
    pub drain: bool,
    /// Lower is tried first (SPEC §13).
    pub priority: u32,
    /// Share of first tries among links of equal priority (0: only when no other is left).
    pub weight: u32,
}

impl PeerLink {
    /// A link with the default priority and weight (1, 1), not draining.
    pub fn new(az: &str, addr: SocketAddr, transport: Transport) -> PeerLink {
        PeerLink { az: Arc::from(az), addr, transport, drain: false, priority: 1, weight: 1 }
    }
}

/// A carrier trunk: its links into the AZs and any extra source ranges.
#[derive(Debug, Clone)]
pub struct CarrierPeers {
    /// Carrier name, as numbers' records refer to it.
    pub name: Arc<str>,
    /// Links, in config order.
    pub links: Vec<PeerLink>,
    /// Extra source ranges `(network, prefix length)` this carrier sends from.
    pub sources: Vec<(IpAddr, u8)>,
}

/// What a source IP is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A carrier: index into `Peers::carriers`.
    Carrier(usize),
    /// A flow-engine endpoint (the platform).
    Platform,
    /// Anyone else: refused or dropped.
    Unknown,
}

/// An IP claimed by two peers; config validation reports these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The contested address.
    pub ip: IpAddr,
    /// Who has it (the earlier claim, which wins in `classify`).
    pub kept: Source,
    /// Who also claimed it.
    pub dropped: Source,
}

/// All peers, with the indexes `classify` uses.
#[derive(Debug, Default)]
pub struct Peers {
    /// Carriers, in config order.
    pub carriers: Vec<CarrierPeers>,
    /// Flow-engine endpoints, in config order.
    pub flow_engine: Vec<PeerLink>,
    /// Exact IP → owner (links and flow-engine endpoints).
    by_ip: HashMap<IpAddr, Source>,
    /// `(network, prefix, carrier index)`, longest prefix first.
    cidrs: Vec<(IpAddr, u8, usize)>,
    /// Every link and flow-engine address (the no-open-relay rule).
    addrs: HashSet<SocketAddr>,
    /// IPs claimed twice.
    conflicts: Vec<Conflict>,
}

impl Peers {
    /// Indexes the peers. Carriers claim their link IPs in config order, then
    /// the flow engine; a second claim on an IP is recorded in `conflicts()`
    /// and loses (config validation rejects such a config anyway).
    pub fn new(carriers: Vec<CarrierPeers>, flow_engine: Vec<PeerLink>) -> Peers {
        let mut by_ip = HashMap::new();
        let mut conflicts = Vec::new();
        let mut addrs = HashSet::new();
        let mut claim = |ip: IpAddr, who: Source| match by_ip.get(&ip) {
            Some(&kept) if kept != who => conflicts.push(Conflict { ip, kept, dropped: who }),
            Some(_) => {}
            None => {
                by_ip.insert(ip, who);
            }
        };
        for (i, c) in carriers.iter().enumerate() {
            for l in &c.links {
                claim(l.addr.ip().to_canonical(), Source::Carrier(i));
            }
        }
        for l in &flow_engine {
            claim(l.addr.ip().to_canonical(), Source::Platform);
        }
        for l in carriers.iter().flat_map(|c| &c.links).chain(&flow_engine) {
            addrs.insert(canonical_addr(l.addr));
        }
        let mut cidrs: Vec<(IpAddr, u8, usize)> = carriers
            .iter()
            .enumerate()
            .flat_map(|(i, c)| c.sources.iter().map(move |&(net, len)| (net.to_canonical(), len, i)))
            .map(|(net, len, i)| {
                let len = len.min(max_prefix(net));
                (mask(net, len), len, i)
            })
            .collect();
        // Most specific first; the sort is stable, so config order breaks ties.
        cidrs.sort_by_key(|c| std::cmp::Reverse(c.1));
        Peers { carriers, flow_engine, by_ip, cidrs, addrs, conflicts }
    }

    /// Who sent from `ip`: exact link/endpoint IPs first, then carrier CIDRs.
    pub fn classify(&self, ip: IpAddr) -> Source {
        let ip = ip.to_canonical();
        if let Some(&s) = self.by_ip.get(&ip) {
            return s;
        }
        self.cidrs
            .iter()
            .find(|(net, len, _)| same_family(*net, ip) && mask(ip, *len) == *net)
            .map_or(Source::Unknown, |&(_, _, i)| Source::Carrier(i))
    }

    /// The carrier named `name` and its index.
    pub fn carrier(&self, name: &str) -> Option<(usize, &CarrierPeers)> {
        self.carriers.iter().enumerate().find(|(_, c)| &*c.name == name)
    }

    /// Whether `addr` is one of our next hops (a link or a flow-engine
    /// endpoint); anything else is not a place we forward to (no open relay).
    pub fn is_peer_addr(&self, addr: SocketAddr) -> bool {
        self.addrs.contains(&canonical_addr(addr))
    }

    /// IPs claimed by two peers (empty for a valid config).
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }
}

/// IPv4-mapped IPv6 (a dual-stack socket's view of an IPv4 peer) → IPv4.
fn canonical_addr(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// `ip` with all but its first `len` bits cleared.
fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = u32::MAX.checked_shl(32 - u32::from(len.min(32))).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = u128::MAX.checked_shl(128 - u32::from(len.min(128))).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}
