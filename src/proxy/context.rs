//! What the core needs to know about itself: its configuration, its own
//! addresses, which next hops are down, and the hop candidates per peer group.

use arc_swap::ArcSwap;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::timer::TimerValues;
use super::token::Sealer;
use super::Peer;
use crate::config::{Config, UnknownSource};
use crate::failover::{HopCandidate, HopKey};
use crate::metrics as m;
use crate::routing::DefaultCaps;
use crate::routing::{PeerLink, Peers};
use crate::sip::Transport;

/// What to do with a request from an address that is no configured peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum UnknownSourcePolicy {
    /// Answer 403.
    #[default]
    Reject,
    /// Send nothing at all.
    Drop,
}

/// The edge's own addresses, as written into Via and Record-Route: one per
/// `[[listen]]`, in config order.
#[derive(Clone, Debug, Default)]
pub struct Local {
    /// Every listener's advertised address.
    pub listeners: Vec<LocalAddr>,
}

/// One listener's advertised address.
#[derive(Clone, Debug)]
pub struct LocalAddr {
    /// Its transport.
    pub transport: Transport,
    /// Whether it is an IPv6 socket (it then sends to IPv6 peers only).
    pub v6: bool,
    /// `host:port` (`[v6]:port`) written into Via and Record-Route.
    pub host_port: String,
}

/// The rule of [`Local::listener_for`], over any list of listeners given as
/// (transport, is IPv6): the core uses it for what our Via and Record-Route
/// name, the transport for the socket and source IP a message leaves from,
/// so the two never disagree. `named`: the listener the peer's messages use.
pub fn pick_listener<T>(
    listeners: &[T],
    kind: impl Fn(&T) -> (Transport, bool),
    transport: Transport,
    v6: bool,
    named: Option<u16>,
) -> Option<usize> {
    let fits = |a: &T| kind(a) == (transport, v6);
    if let Some(i) = named.map(usize::from).filter(|&i| listeners.get(i).is_some_and(fits)) {
        return Some(i);
    }
    listeners
        .iter()
        .position(fits)
        .or_else(|| listeners.iter().position(|a| kind(a).1 == v6))
        .or_else(|| listeners.iter().position(|a| kind(a).0 == transport))
        .or(if listeners.is_empty() { None } else { Some(0) })
}

impl Local {
    /// From `(transport, host:port)` pairs; a bracketed host is an IPv6 listener.
    pub fn of(pairs: &[(Transport, &str)]) -> Local {
        let listeners = pairs
            .iter()
            .map(|(t, hp)| LocalAddr { transport: *t, v6: hp.starts_with('['), host_port: (*hp).to_owned() })
            .collect();
        Local { listeners }
    }

    /// The listener a message to (or from) `p` goes through: the one `p`
    /// names (the one its messages came in on), when that is a listener of
    /// its transport and family; else the default for a peer with no history:
    /// the first listener of its transport and family (the socket it goes out
    /// of), else one of its family, else one of its transport, else the first.
    pub fn listener_for(&self, p: Peer) -> Option<usize> {
        pick_listener(&self.listeners, |a| (a.transport, a.v6), p.transport, p.addr.is_ipv6(), p.listener)
    }

    fn default_listener(&self, transport: Transport, v6: bool) -> Option<usize> {
        pick_listener(&self.listeners, |a| (a.transport, a.v6), transport, v6, None)
    }

    fn name(&self, listener: Option<usize>) -> &str {
        listener.and_then(|i| self.listeners.get(i)).map_or("127.0.0.1:5060", |a| a.host_port.as_str())
    }

    /// `host:port` to advertise for a message sent over `transport` to an IPv6
    /// (`v6`) or IPv4 peer with no history (see [`Local::listener_for`]).
    pub fn host_port(&self, transport: Transport, v6: bool) -> &str {
        self.name(self.default_listener(transport, v6))
    }

    /// `host:port` of the listener a message to `p` goes out of.
    pub fn host_port_for(&self, p: Peer) -> &str {
        self.name(self.listener_for(p))
    }

    /// Whether `host[:port]` (from a Route URI) is this edge.
    pub fn is_ours(&self, host: &str, port: Option<u16>) -> bool {
        self.listener_named(host, port).is_some()
    }

    /// The listener `host[:port]` (from a Route URI) names, if it is ours.
    pub fn listener_named(&self, host: &str, port: Option<u16>) -> Option<usize> {
        let port = port.unwrap_or(5060);
        let unbracket = |h: &str| h.trim_matches(|c| c == '[' || c == ']').to_ascii_lowercase();
        let ip_of = |h: &str| unbracket(h).parse::<std::net::IpAddr>().ok();
        let want = ip_of(host);
        self.listeners.iter().position(|a| match a.host_port.rsplit_once(':') {
            Some((h, p)) => {
                let same_host = match (ip_of(h), want) {
                    // `[::1]` and `[0:0::1]` are one address.
                    (Some(x), Some(y)) => x == y,
                    _ => unbracket(h) == unbracket(host),
                };
                same_host && p.parse::<u16>().ok() == Some(port)
            }
            None => false,
        })
    }

    /// Whether a Route URI names this edge. Our own Record-Route URIs come
    /// back verbatim in nearly every in-dialog request: those are matched as
    /// text before the URI is parsed.
    pub fn is_our_route(&self, uri: &str) -> bool {
        // Only for a plain `host:port` (what parsing the URI would accept and
        // `is_ours` would match); anything else takes the long way.
        let plain = |hp: &str| {
            hp.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty()
                    && h.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_'))
                    && !p.is_empty()
                    && p.bytes().all(|c| c.is_ascii_digit())
                    && p.parse::<u16>().is_ok()
            })
        };
        let verbatim = |a: &LocalAddr| {
            let params = match a.transport {
                Transport::Udp => ";lr",
                Transport::Tcp => ";transport=tcp;lr",
                Transport::Tls => ";transport=tls;lr",
            };
            let hp = a.host_port.as_str();
            uri.strip_prefix("sip:").and_then(|r| r.strip_prefix(hp)).is_some_and(|r| is_our_params(r, params))
                && plain(hp)
        };
        if self.listeners.iter().any(verbatim) {
            return true;
        }
        crate::sip::uri::parse_uri(uri).is_some_and(|u| self.is_ours(u.host, u.port))
    }

    /// Our Record-Route value for `transport`, carrying the call's token
    /// (`st=`, SPEC §9) so an edge that does not remember the dialog can
    /// still route its requests.
    /// `v6`: whether the side this Record-Route faces is an IPv6 peer.
    ///
    /// TLS gets `sip:...;transport=tls`, not `sips:`. RFC 3261 §26.2 and
    /// RFC 5630 §3 make `sips:` a promise that every hop to the far end is TLS;
    /// the edge hands TLS calls to UDP flow engines (and takes UDP calls to TLS
    /// carriers), so it cannot make that promise, and a `sips:` Record-Route
    /// would oblige the peer to reach us over TLS even on a UDP side. The
    /// double Record-Route (RFC 5658) gives the TLS side its own `transport=tls`
    /// entry, so its in-dialog requests still come back to our TLS listener.
    pub fn record_route(&self, transport: Transport, v6: bool, token: &str) -> String {
        self.record_route_at(self.default_listener(transport, v6), transport, token)
    }

    /// Our Record-Route value facing `p`: it names the listener `p` reaches
    /// us on ([`Local::listener_for`]), so a call that crosses listeners
    /// gets one entry per side (RFC 5658).
    pub fn record_route_for(&self, p: Peer, token: &str) -> String {
        self.record_route_at(self.listener_for(p), p.transport, token)
    }

    /// Whether a call between `a` and `b` needs one Record-Route only: both
    /// reach us through one listener, or through two that advertise the same
    /// name over the same transport (an `advertise` host name), which two
    /// entries would only repeat.
    pub fn one_record_route(&self, a: Peer, b: Peer) -> bool {
        let (x, y) = (self.listener_for(a), self.listener_for(b));
        x == y || (a.transport == b.transport && self.name(x) == self.name(y))
    }

    fn record_route_at(&self, listener: Option<usize>, transport: Transport, token: &str) -> String {
        let host_port = self.name(listener);
        let mut rr = String::with_capacity(40 + host_port.len() + token.len());
        rr.push_str("<sip:");
        rr.push_str(host_port);
        match transport {
            Transport::Udp => {}
            Transport::Tcp => rr.push_str(";transport=tcp"),
            Transport::Tls => rr.push_str(";transport=tls"),
        }
        rr.push_str(";lr;");
        rr.push_str(TOKEN_PARAM);
        rr.push('=');
        rr.push_str(token);
        rr.push('>');
        rr
    }
}

/// The Record-Route URI parameter holding our dialog token.
pub const TOKEN_PARAM: &str = "st";

/// Whether `rest` is what follows `host:port` in our own Record-Route URI:
/// `params` alone (a URI from before tokens) or `params;st=<lowercase hex>`.
fn is_our_params(rest: &str, params: &str) -> bool {
    let Some(tail) = rest.strip_prefix(params) else { return false };
    if tail.is_empty() {
        return true;
    }
    tail.strip_prefix(";st=").is_some_and(|t| {
        !t.is_empty()
            && t.len() <= super::token::MAX_TOKEN_LEN
            && t.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Everything configurable the core reads; replaced whole on reload.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// RFC 3261 timers and failover.
    pub timers: TimerValues,
    /// `[edge].az`: links in this AZ are tried first.
    pub own_az: Arc<str>,
    /// A call still up after this is ended.
    pub max_call_duration: Duration,
    /// Unknown sources: 403 or silence.
    pub unknown_source: UnknownSourcePolicy,
    /// `Server` header on our own answers; none by default (reveal nothing).
    pub server_header: Option<Arc<str>>,
    /// `Retry-After` seconds on overload answers.
    pub retry_after_s: u32,
    /// The caps of a number without its own `max_concurrent` (`[limits]`).
    pub default_caps: DefaultCaps,
    /// Our addresses.
    pub local: Local,
    /// Random per process start: our branches never collide with an earlier run's.
    pub instance_nonce: u32,
    /// OPTIONS probe interval (0 = no probing).
    pub probe_interval: Duration,
    /// Consecutive probe failures before a hop is down.
    pub down_after: u32,
    /// Consecutive probe successes before it is up again.
    pub up_after: u32,
    /// Instance-wide new calls per second (0 = unlimited); beyond it 503.
    pub new_calls_per_second: u32,
    /// Whether to build call records (`[records] path` is set).
    pub records: bool,
    /// Cluster mode: capped numbers are admitted through Redis.
    pub cluster: Option<ClusterAdmit>,
    /// The key our Record-Route tokens are sealed under (`[edge].dialog_key_file`)
    /// and this run's boot id.
    pub sealer: Arc<Sealer>,
}

/// How the core admits calls to capped numbers in cluster mode.
#[derive(Clone, Copy, Debug)]
pub struct ClusterAdmit {
    /// `[cluster] admit_timeout_ms`: past it, the call is decided by `policy`.
    pub admit_timeout: Duration,
    /// `[cluster] on_backend_down`.
    pub policy: crate::config::BackendDown,
}

impl CoreConfig {
    /// The core's settings from a config, our bound addresses, this run's
    /// nonce and token sealer: the one mapping, at start and on reload.
    pub fn from_config(cfg: &Config, local: &Local, nonce: u32, sealer: Arc<Sealer>) -> CoreConfig {
        let (edge, limits, health) = (&cfg.edge, &cfg.limits, &cfg.health);
        CoreConfig {
            timers: TimerValues::from_config(&cfg.timers),
            own_az: Arc::from(edge.az.as_str()),
            max_call_duration: Duration::from_secs(limits.max_call_duration_s),
            unknown_source: match edge.unknown_source {
                UnknownSource::Reject => UnknownSourcePolicy::Reject,
                UnknownSource::Drop => UnknownSourcePolicy::Drop,
            },
            server_header: edge.server_header.as_deref().map(Arc::from),
            retry_after_s: limits.retry_after_s,
            default_caps: limits.default_caps(),
            local: local.clone(),
            instance_nonce: nonce,
            probe_interval: Duration::from_millis(health.options_interval_ms),
            down_after: health.down_after,
            up_after: health.up_after,
            new_calls_per_second: limits.new_calls_per_second,
            records: cfg.records.path.is_some(),
            cluster: cfg.cluster.redis_url.as_ref().map(|_| ClusterAdmit {
                admit_timeout: Duration::from_millis(cfg.cluster.admit_timeout_ms),
                policy: cfg.cluster.on_backend_down,
            }),
            sealer,
        }
    }
}

impl Default for CoreConfig {
    /// Every `[section]` at its documented default, no listener, nonce 0.
    fn default() -> Self {
        CoreConfig::from_config(&Config::defaults(), &Local::default(), 0, Arc::default())
    }
}

/// The next hops the health checks have marked down; written by shard 0,
/// read lock-free by every shard.
#[derive(Default, Debug)]
pub struct DownSet {
    down: ArcSwap<HashSet<HopKey>>,
}

impl DownSet {
    /// Whether the hop may be tried.
    pub fn is_up(&self, key: &HopKey) -> bool {
        let d = self.down.load();
        d.is_empty() || !d.contains(key)
    }

    /// Publishes a new down set.
    pub fn publish(&self, down: HashSet<HopKey>) {
        self.down.store(Arc::new(down));
    }

    /// The hops currently down.
    pub fn snapshot(&self) -> Arc<HashSet<HopKey>> {
        self.down.load_full()
    }
}

/// The label of the flow engine's hops in `HopKey::group` (one definition, in `failover`).
pub use crate::failover::plan::FLOW_ENGINE;

/// Hop candidates per carrier and for the flow engine, rebuilt only when the
/// peers change (a reload), so a call's plan costs no allocation per link.
#[derive(Default)]
pub struct HopCache {
    peers: Option<Arc<Peers>>,
    /// Per carrier, in `Peers::carriers` order.
    pub carriers: Vec<Vec<HopCandidate>>,
    /// The flow-engine endpoints.
    pub flow: Vec<HopCandidate>,
}

fn candidates(group: &Arc<str>, links: &[PeerLink]) -> Vec<HopCandidate> {
    links
        .iter()
        .map(|l| HopCandidate {
            drain: l.drain,
            priority: l.priority,
            weight: l.weight,
            first_tries: metrics::counter!(
                m::HOP_CALLS_TOTAL,
                "group" => group.to_string(),
                "az" => l.az.to_string(),
                "addr" => l.addr.to_string()
            ),
            ..HopCandidate::new(HopKey { group: group.clone(), az: l.az.clone(), addr: l.addr, transport: l.transport })
        })
        .collect()
}

impl HopCache {
    /// Brings the cache up to date with `peers` (cheap when unchanged).
    pub fn refresh(&mut self, peers: &Arc<Peers>) {
        if self.peers.as_ref().is_some_and(|p| Arc::ptr_eq(p, peers)) {
            return;
        }
        self.carriers = peers.carriers.iter().map(|c| candidates(&c.name, &c.links)).collect();
        let fe: Arc<str> = Arc::from(FLOW_ENGINE);
        self.flow = candidates(&fe, &peers.flow_engine);
        self.peers = Some(peers.clone());
    }
}

/// The instance-wide new-call rate limit: a one-second window counted with
/// atomics, shared by every shard (time is passed in: the core stays sans-IO).
#[derive(Debug)]
pub struct CallRate {
    base: std::time::Instant,
    window: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU32,
}

impl CallRate {
    /// A limiter whose clock starts at `base`.
    pub fn new(base: std::time::Instant) -> CallRate {
        CallRate { base, window: Default::default(), count: Default::default() }
    }

    /// Counts one new call at `now`; false when `per_second` is already reached.
    pub fn admit(&self, now: std::time::Instant, per_second: u32) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if per_second == 0 {
            return true;
        }
        let sec = now.saturating_duration_since(self.base).as_secs();
        let w = self.window.load(Relaxed);
        if sec != w && self.window.compare_exchange(w, sec, Relaxed, Relaxed).is_ok() {
            self.count.store(0, Relaxed);
        }
        self.count.fetch_add(1, Relaxed) < per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_route_fast_path_agrees_with_parsing_the_uri() {
        let slow = |l: &Local, uri: &str| crate::sip::uri::parse_uri(uri).is_some_and(|u| l.is_ours(u.host, u.port));
        let locals = [
            Local::of(&[(Transport::Udp, "127.0.0.1:5060"), (Transport::Tcp, "127.0.0.1:5061")]),
            Local::of(&[(Transport::Udp, "edge.example.com:5060")]),
            Local::of(&[(Transport::Udp, "[::1]:5060")]),
            Local::of(&[(Transport::Udp, "host:abc")]),
            Local::of(&[(Transport::Udp, "a b:5060")]),
            Local::of(&[(Transport::Tcp, "10.0.0.1:5060")]),
            Local::of(&[
                (Transport::Udp, "127.0.0.1:5060"),
                (Transport::Udp, "[::1]:5062"),
                (Transport::Udp, "127.0.0.1:5070"),
            ]),
        ];
        let uris = [
            "sip:127.0.0.1:5060;lr",
            "sip:127.0.0.1:5061;transport=tcp;lr",
            "sip:127.0.0.1:5061;lr",
            "sip:127.0.0.1;lr",
            "sip:127.0.0.1:5060;lr;foo",
            "sip:edge.example.com:5060;lr",
            "sip:[::1]:5060;lr",
            "sip:host:abc;lr",
            "sip:a b:5060;lr",
            "sip:10.0.0.1:5060;transport=tcp;lr",
            "sip:10.0.0.2:5060;lr",
            "sip:127.0.0.1:5060;lr;st=0123abcdef",
            "sip:127.0.0.1:5061;transport=tcp;lr;st=00ff",
            "sip:127.0.0.1:5060;lr;st=",
            "sip:127.0.0.1:5060;lr;st=0G",
            "sip:127.0.0.1:5060;lr;st=01;x",
            "sip:10.0.0.2:5060;lr;st=00",
            "sip:[::1]:5062;lr;st=00ff",
            "sip:[0:0::1]:5062;lr",
            "sip:[::1]:5060;transport=tcp;lr",
            "sip:127.0.0.1:5070;lr;st=00ff",
            "sip:[::2]:5062;lr",
        ];
        for l in &locals {
            for u in uris {
                assert_eq!(l.is_our_route(u), slow(l, u), "{l:?} {u}");
            }
        }
        assert!(locals[0].is_our_route("sip:127.0.0.1:5060;lr"));
        let rr = locals[0].record_route(Transport::Tcp, false, "00ab");
        assert_eq!(rr, "<sip:127.0.0.1:5061;transport=tcp;lr;st=00ab>");
        assert!(locals[0].is_our_route(rr.trim_matches(|c| c == '<' || c == '>')));
        // Every listener is ours; the family of the peer picks the address we advertise.
        let dual = &locals[6];
        assert!(dual.is_our_route("sip:127.0.0.1:5070;lr"));
        assert!(dual.is_our_route("sip:[::1]:5062;lr;st=00ff"));
        assert!(!dual.is_our_route("sip:[::2]:5062;lr"));
        assert_eq!(dual.host_port(Transport::Udp, true), "[::1]:5062");
        assert_eq!(dual.host_port(Transport::Udp, false), "127.0.0.1:5060");
        assert_eq!(dual.record_route(Transport::Udp, true, "01"), "<sip:[::1]:5062;lr;st=01>");
        // No listener of the family: the other family's (nothing can be sent anyway).
        assert_eq!(locals[0].host_port(Transport::Udp, true), "127.0.0.1:5060");
    }

    #[test]
    fn a_peer_keeps_the_listener_it_came_in_on_when_that_fits_its_transport_and_family() {
        let l = Local::of(&[
            (Transport::Udp, "127.0.0.1:5060"),
            (Transport::Tcp, "127.0.0.1:5060"),
            (Transport::Udp, "127.0.0.2:5060"),
            (Transport::Udp, "[::1]:5060"),
            (Transport::Udp, "[::2]:5060"),
        ]);
        let v4 = |listener| Peer::to("10.0.0.1:5060".parse().unwrap(), Transport::Udp).via_listener(listener);
        let v6 = |listener| Peer::to("[2001:db8::1]:5060".parse().unwrap(), Transport::Udp).via_listener(listener);
        // No history: the first listener of the transport and family.
        assert_eq!(l.listener_for(v4(None)), Some(0));
        assert_eq!(l.listener_for(v6(None)), Some(3));
        // The one it came in on.
        assert_eq!(l.listener_for(v4(Some(2))), Some(2));
        assert_eq!(l.listener_for(v6(Some(4))), Some(4));
        assert_eq!(l.host_port_for(v4(Some(2))), "127.0.0.2:5060");
        // One of another transport or family, or none at all: the default.
        assert_eq!(l.listener_for(v4(Some(1))), Some(0), "a TCP listener for a UDP peer");
        assert_eq!(l.listener_for(v4(Some(3))), Some(0), "an IPv6 listener for an IPv4 peer");
        assert_eq!(l.listener_for(v6(Some(2))), Some(3), "an IPv4 listener for an IPv6 peer");
        assert_eq!(l.listener_for(v4(Some(9))), Some(0), "past the end");
        assert_eq!(l.listener_for(v4(Some(u16::MAX))), Some(0));
        assert_eq!(Local::default().listener_for(v4(Some(0))), None);
        assert_eq!(Local::default().host_port_for(v4(None)), "127.0.0.1:5060");
        // Each side's own entry when a call crosses listeners; one when it does not.
        assert!(l.one_record_route(v4(None), v4(Some(0))));
        assert!(!l.one_record_route(v4(None), v4(Some(2))));
        assert!(!l.one_record_route(v4(None), v6(None)));
        assert_eq!(l.record_route_for(v4(Some(2)), "01"), "<sip:127.0.0.2:5060;lr;st=01>");
        // Two listeners advertised under one name: one entry says it all.
        let named = Local::of(&[(Transport::Udp, "edge.example:5060"), (Transport::Udp, "edge.example:5060")]);
        assert!(named.one_record_route(v4(None), v4(Some(1))));
    }
}
