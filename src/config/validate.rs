//! Checks that span fields: duplicates, one IP per peer, sane limits. Every
//! problem is collected; nothing stops at the first.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use super::{canonical, Cidr, Config, ConfigError, HopTls, ListenConfig};
use crate::sip::Transport;

/// Longest accepted `*_ms` setting: one day.
const MAX_MILLIS: u64 = 86_400_000;
/// Longest accepted `*_s` setting: one week.
const MAX_SECONDS: u64 = 604_800;
/// A count with no ceiling of its own.
const NO_MAX: u64 = u64::MAX;

/// Each `(key, value, max)`: zero, or more than `max`, is an error naming the key.
fn check_ranges(v: &mut Vec<ConfigError>, knobs: &[(&str, u64, u64)], zero_hint: &str) {
    for &(field, value, max) in knobs {
        if value == 0 {
            v.push(ConfigError::new(field, format!("must be greater than 0{zero_hint}")));
        } else if value > max {
            v.push(too_long(field, value, max));
        }
    }
}

fn too_long(field: &str, value: u64, max: u64) -> ConfigError {
    let span = if max == MAX_MILLIS { "one day" } else { "one week" };
    ConfigError::new(field, format!("{value} is more than {max} ({span})"))
}

impl Config {
    /// Every problem in the parsed config, each naming its field; empty when
    /// the config is good. Does no I/O (the seed file is checked by `load`).
    pub fn validate(&self) -> Vec<ConfigError> {
        let mut v = Vec::new();
        self.check_edge(&mut v);
        self.check_listen(&mut v);
        self.check_knobs(&mut v);
        self.check_peers(&mut v);
        check_peer_ips(self, &mut v);
        super::observe::check_capture(&self.capture, &mut v);
        super::observe::check_records(&self.records, &mut v);
        super::cluster::check_cluster(&self.cluster, &mut v);
        v
    }

    fn check_edge(&self, v: &mut Vec<ConfigError>) {
        let e = &self.edge;
        if e.name.trim().is_empty() {
            v.push(ConfigError::new("edge.name", "must not be empty"));
        }
        if e.az.trim().is_empty() {
            v.push(ConfigError::new("edge.az", "must not be empty"));
        }
        if e.data_dir.as_os_str().is_empty() {
            v.push(ConfigError::new("edge.data_dir", "must not be empty"));
        }
        if !(1..=86_400).contains(&self.edge.drain_timeout_s) {
            v.push(ConfigError::new("edge.drain_timeout_s", "must be 1 to 86400 seconds"));
        }
        if let Some(h) = &e.server_header {
            // It is copied into a header line: a CR/LF would inject headers.
            if h.trim().is_empty() || h.chars().any(char::is_control) {
                v.push(ConfigError::new("edge.server_header", "must be non-empty text without control characters"));
            }
        }
        if let Some(a) = &e.advertise {
            if let Err(problem) = check_host_port(a) {
                v.push(ConfigError::new("edge.advertise", problem));
            }
        }
    }

    fn check_listen(&self, v: &mut Vec<ConfigError>) {
        if self.listen.is_empty() {
            v.push(ConfigError::new("listen", "at least one [[listen]] is required"));
        }
        for (i, l) in self.listen.iter().enumerate() {
            let earlier = self.listen.iter().take(i);
            // Port 0 asks the OS for a free port, so two of them never clash.
            let same = earlier.clone().position(|o| {
                socket_kind(o.transport) == socket_kind(l.transport) && o.addr == l.addr && l.addr.port() != 0
            });
            if let Some(j) = same {
                v.push(ConfigError::new(
                    format!("listen[{i}]"),
                    format!("{} {} is already listen[{j}]", l.transport, l.addr),
                ));
            } else if let Some((j, o)) = earlier.clone().enumerate().find(|(_, o)| overlaps(o, l)) {
                // A wildcard and a specific address of one family on one port:
                // one of the two would never see a packet (or not bind at all).
                v.push(ConfigError::new(
                    format!("listen[{i}].addr"),
                    format!(
                        "{} {} overlaps listen[{j}] ({} {}): a wildcard address and a specific one of the same family cannot share a port",
                        l.transport, l.addr, o.transport, o.addr
                    ),
                ));
            }
            check_listen_tls(v, i, l);
        }
    }

    /// Numeric settings whose zero, inversion or absurd size would stop the
    /// edge working. Durations have a ceiling too: a deadline is `Instant +
    /// duration`, which panics on overflow, so an absurd value used to pass
    /// `check` and then take the edge down at its first call or connection.
    fn check_knobs(&self, v: &mut Vec<ConfigError>) {
        // (key, value, largest accepted); zero is refused for every one.
        let knobs: [(&str, u64, u64); 18] = [
            ("admin.max_body_bytes", self.admin.max_body_bytes as u64, NO_MAX),
            ("limits.max_concurrent_calls", u64::from(self.limits.max_concurrent_calls), NO_MAX),
            ("limits.max_call_duration_s", self.limits.max_call_duration_s, MAX_SECONDS),
            ("timers.t1_ms", self.timers.t1_ms, MAX_MILLIS),
            ("timers.t2_ms", self.timers.t2_ms, MAX_MILLIS),
            ("timers.t4_ms", self.timers.t4_ms, MAX_MILLIS),
            ("timers.failover_ms", self.timers.failover_ms, MAX_MILLIS),
            ("timers.timer_c_ms", self.timers.timer_c_ms, MAX_MILLIS),
            ("health.options_interval_ms", self.health.options_interval_ms, MAX_MILLIS),
            ("health.down_after", u64::from(self.health.down_after), NO_MAX),
            ("health.up_after", u64::from(self.health.up_after), NO_MAX),
            ("tcp.max_connections", self.tcp.max_connections as u64, NO_MAX),
            ("tcp.max_per_ip", self.tcp.max_per_ip as u64, NO_MAX),
            ("tcp.max_message_bytes", self.tcp.max_message_bytes as u64, NO_MAX),
            ("tcp.max_header_bytes", self.tcp.max_header_bytes as u64, NO_MAX),
            ("tcp.idle_timeout_s", self.tcp.idle_timeout_s, MAX_SECONDS),
            ("tcp.message_deadline_ms", self.tcp.message_deadline_ms, MAX_MILLIS),
            ("tcp.tls_handshake_timeout_ms", self.tcp.tls_handshake_timeout_ms, MAX_MILLIS),
        ];
        check_ranges(v, &knobs, "");
        // A disabled flood guard may keep any numbers.
        if self.flood.enabled {
            let flood = [
                ("flood.window_ms", self.flood.window_ms, MAX_MILLIS),
                ("flood.max_requests", u64::from(self.flood.max_requests), NO_MAX),
                ("flood.ban_s", self.flood.ban_s, MAX_SECONDS),
            ];
            check_ranges(v, &flood, " (or set flood.enabled = false)");
        }
        // Zero is allowed for this one; its floor is checked with the cluster's keys.
        if self.cluster.lease_ttl_ms > MAX_MILLIS {
            v.push(too_long("cluster.lease_ttl_ms", self.cluster.lease_ttl_ms, MAX_MILLIS));
        }
        if u64::from(self.limits.retry_after_s) > MAX_SECONDS {
            v.push(too_long("limits.retry_after_s", u64::from(self.limits.retry_after_s), MAX_SECONDS));
        }
        let t = &self.timers;
        if t.t1_ms > 0 && t.t2_ms > 0 && t.t2_ms < t.t1_ms {
            v.push(ConfigError::new("timers.t2_ms", format!("{} is less than t1_ms ({})", t.t2_ms, t.t1_ms)));
        }
        let tcp = &self.tcp;
        if tcp.max_per_ip > tcp.max_connections {
            v.push(ConfigError::new(
                "tcp.max_per_ip",
                format!("{} is more than max_connections ({})", tcp.max_per_ip, tcp.max_connections),
            ));
        }
        if tcp.max_header_bytes > tcp.max_message_bytes {
            v.push(ConfigError::new(
                "tcp.max_header_bytes",
                format!("{} is more than max_message_bytes ({})", tcp.max_header_bytes, tcp.max_message_bytes),
            ));
        }
    }

    /// Carrier and flow-engine entries on their own: names, links, AZs, addresses.
    fn check_peers(&self, v: &mut Vec<ConfigError>) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, c) in self.carrier.iter().enumerate() {
            let at = format!("carrier[{i}]");
            if c.name.is_empty() {
                v.push(ConfigError::new(format!("{at}.name"), "must not be empty"));
            } else if !c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')) {
                // The name goes into X-Carrier, metric labels and numbers.csv's `;` list.
                v.push(ConfigError::new(
                    format!("{at}.name"),
                    format!("'{}' may only contain letters, digits, '-', '_' and '.'", c.name),
                ));
            } else if let Some(j) = names.insert(&c.name, i) {
                v.push(ConfigError::new(format!("{at}.name"), format!("'{}' is already carrier[{j}]", c.name)));
            }
            if c.link.is_empty() {
                v.push(ConfigError::new(format!("{at}.link"), format!("carrier '{}' has no [[carrier.link]]", c.name)));
            }
            check_trunk_limits(v, &at, c.max_cps);
            for (k, s) in c.sources.iter().enumerate() {
                if let Err(e) = Cidr::parse(s) {
                    v.push(ConfigError::new(format!("{at}.sources[{k}]"), format!("'{s}': {e}")));
                }
            }
            check_weights(v, &format!("{at}.link"), c.link.iter().map(|l| (l.priority, l.weight)));
            for (j, l) in c.link.iter().enumerate() {
                let at = format!("{at}.link[{j}]");
                check_hop(v, &at, &l.az, l.addr);
                check_client_tls(v, &at, l.transport, l.tls());
                let dup = c.link.iter().take(j).position(|o| o.addr == l.addr && o.transport == l.transport);
                if let Some(d) = dup {
                    v.push(ConfigError::new(
                        format!("{at}.addr"),
                        format!("{} {} is already link[{d}]", l.transport, l.addr),
                    ));
                }
            }
        }
        for (i, f) in self.flow_engine.iter().enumerate() {
            let at = format!("flow_engine[{i}]");
            check_hop(v, &at, &f.az, f.addr);
            check_client_tls(v, &at, f.transport, f.tls());
        }
        check_weights(v, "flow_engine", self.flow_engine.iter().map(|f| (f.priority, f.weight)));
    }
}

/// Two listeners of one transport on one port and family where one address is
/// the wildcard (`0.0.0.0`, `[::]`) and the other a specific one. IPv6
/// listeners are IPv6-only, so `0.0.0.0:5060` and `[::]:5060` do not overlap.
fn overlaps(a: &ListenConfig, b: &ListenConfig) -> bool {
    socket_kind(a.transport) == socket_kind(b.transport)
        && a.addr.port() == b.addr.port()
        && a.addr.port() != 0
        && a.addr.is_ipv4() == b.addr.is_ipv4()
        && (a.addr.ip().is_unspecified() || b.addr.ip().is_unspecified())
}

/// TCP and TLS listeners are both TCP sockets: they cannot share a port.
fn socket_kind(t: Transport) -> u8 {
    u8::from(t.is_stream())
}

/// A `tls` listener names its certificate and key; another transport names
/// none (a key there would be a listener the operator thinks is encrypted).
/// Whether the files load is `sipedge check`'s I/O step (`transport::tls`).
fn check_listen_tls(v: &mut Vec<ConfigError>, i: usize, l: &ListenConfig) {
    let at = format!("listen[{i}]");
    if l.transport == Transport::Tls {
        for (key, set) in [("cert_file", l.cert_file.is_some()), ("key_file", l.key_file.is_some())] {
            if !set {
                v.push(ConfigError::new(format!("{at}.{key}"), "required for transport = \"tls\""));
            }
        }
    } else {
        let keys = [("cert_file", l.cert_file.is_some()), ("key_file", l.key_file.is_some())];
        for (key, set) in keys.into_iter().chain([("client_ca_file", l.client_ca_file.is_some())]) {
            if set {
                v.push(ConfigError::new(
                    format!("{at}.{key}"),
                    format!("only for transport = \"tls\" (this is {})", l.transport),
                ));
            }
        }
    }
}

/// The TLS keys only on a `tls` hop, a server name that is a DNS name or IP,
/// and a client certificate with its key (both or neither).
fn check_client_tls(v: &mut Vec<ConfigError>, at: &str, t: Transport, h: HopTls<'_>) {
    let keys = [
        ("server_name", h.server_name.is_some()),
        ("ca_file", h.ca_file.is_some()),
        ("client_cert_file", h.client_cert_file.is_some()),
        ("client_key_file", h.client_key_file.is_some()),
    ];
    if t != Transport::Tls {
        for (key, set) in keys {
            if set {
                v.push(ConfigError::new(format!("{at}.{key}"), format!("only for transport = \"tls\" (this is {t})")));
            }
        }
        return;
    }
    match (h.client_cert_file.is_some(), h.client_key_file.is_some()) {
        (true, false) => v.push(ConfigError::new(format!("{at}.client_key_file"), "required with client_cert_file")),
        (false, true) => v.push(ConfigError::new(format!("{at}.client_cert_file"), "required with client_key_file")),
        _ => {}
    }
    if let Some(n) = h.server_name {
        if rustls_pki_types::ServerName::try_from(n).is_err() {
            v.push(ConfigError::new(format!("{at}.server_name"), format!("'{n}' is not a DNS name or IP address")));
        }
    }
}

/// Highest `max_cps` accepted: the rate limiter keeps time in nanoseconds, and
/// no trunk is sold anywhere near a million calls a second, so a larger value
/// is a typo (an extra digit, a channel count in the wrong key).
pub const MAX_CPS: u32 = 1_000_000;

/// `[[carrier]] max_concurrent` / `max_cps`: 0 means unlimited; a rate past
/// [`MAX_CPS`] is refused rather than silently meaning "no limit".
fn check_trunk_limits(v: &mut Vec<ConfigError>, at: &str, max_cps: u32) {
    if max_cps > MAX_CPS {
        v.push(ConfigError::new(
            format!("{at}.max_cps"),
            format!("{max_cps} is more than {MAX_CPS} calls a second (0 = unlimited)"),
        ));
    }
}

/// A next hop needs an AZ and an address we can send to.
/// Highest `priority` or `weight` accepted (keeps the round robin's sums far from overflow).
pub const MAX_RANK: i64 = 1_000_000;

/// `priority` and `weight` of one group's targets (`at` = `flow_engine` or
/// `carrier[i].link`): each within 0..=MAX_RANK, and not every weight 0 (such
/// a group would never be picked by weight at all).
fn check_weights(v: &mut Vec<ConfigError>, at: &str, ranks: impl Iterator<Item = (i64, i64)>) {
    let mut weighted = false;
    let mut any = false;
    for (i, (priority, weight)) in ranks.enumerate() {
        any = true;
        for (key, value) in [("priority", priority), ("weight", weight)] {
            if !(0..=MAX_RANK).contains(&value) {
                v.push(ConfigError::new(
                    format!("{at}[{i}].{key}"),
                    format!("{value} must be between 0 and {MAX_RANK}"),
                ));
            }
        }
        weighted |= weight > 0;
    }
    if any && !weighted {
        v.push(ConfigError::new(
            format!("{at}.weight"),
            "every weight is 0: give at least one target a weight above 0",
        ));
    }
}

fn check_hop(v: &mut Vec<ConfigError>, at: &str, az: &str, addr: SocketAddr) {
    if az.trim().is_empty() {
        v.push(ConfigError::new(format!("{at}.az"), "must not be empty"));
    }
    if addr.ip().is_unspecified() || addr.port() == 0 {
        v.push(ConfigError::new(format!("{at}.addr"), format!("{addr} is not an address we can send to")));
    }
}

/// Who an IP or network belongs to, for the one-IP-one-peer rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// `carrier[i]`.
    Carrier(usize),
    /// Any flow-engine endpoint (all of them are "the platform").
    Platform,
}

/// One claim on source addresses: a link / flow-engine IP, or a `sources` CIDR.
struct Claim {
    owner: Owner,
    net: Cidr,
    field: String,
}

/// SPEC §4: one IP belongs to at most one carrier, and never to a carrier and
/// the flow engine, because requests are classified by source IP alone.
fn check_peer_ips(config: &Config, v: &mut Vec<ConfigError>) {
    let mut claims = Vec::new();
    for (i, c) in config.carrier.iter().enumerate() {
        for (j, l) in c.link.iter().enumerate() {
            let net = host(l.addr.ip());
            claims.push(Claim { owner: Owner::Carrier(i), net, field: format!("carrier[{i}].link[{j}].addr") });
        }
        for (k, s) in c.sources.iter().enumerate() {
            // Unparseable entries are already reported by check_peers.
            if let Ok(net) = Cidr::parse(s) {
                claims.push(Claim { owner: Owner::Carrier(i), net, field: format!("carrier[{i}].sources[{k}]") });
            }
        }
    }
    for (i, f) in config.flow_engine.iter().enumerate() {
        claims.push(Claim { owner: Owner::Platform, net: host(f.addr.ip()), field: format!("flow_engine[{i}].addr") });
    }
    let name = |o: Owner| match o {
        Owner::Carrier(i) => {
            config.carrier.get(i).map_or_else(|| format!("carrier[{i}]"), |c| format!("carrier '{}'", c.name))
        }
        Owner::Platform => "the flow engine".to_owned(),
    };
    // Reported at the later claim, naming the earlier one; once per earlier
    // network, so a carrier with two links on one IP does not double the error.
    let mut reported = std::collections::HashSet::new();
    for (b, later) in claims.iter().enumerate() {
        for earlier in claims.iter().take(b) {
            if earlier.owner == later.owner || !earlier.net.overlaps(&later.net) {
                continue;
            }
            if !reported.insert((b, earlier.owner_key(), earlier.net)) {
                continue;
            }
            let problem = if is_host(&earlier.net) && is_host(&later.net) {
                format!(
                    "IP {} belongs to both {} and {} ({})",
                    later.net.addr,
                    name(later.owner),
                    name(earlier.owner),
                    earlier.field
                )
            } else {
                format!(
                    "{} of {} overlaps {} of {} ({})",
                    describe(&later.net),
                    name(later.owner),
                    describe(&earlier.net),
                    name(earlier.owner),
                    earlier.field
                )
            };
            v.push(ConfigError::new(later.field.clone(), problem + "; one IP must belong to one peer"));
        }
    }
}

impl Claim {
    fn owner_key(&self) -> (u8, usize) {
        match self.owner {
            Owner::Carrier(i) => (0, i),
            Owner::Platform => (1, 0),
        }
    }
}

/// A single address as a /32 or /128.
fn host(ip: IpAddr) -> Cidr {
    let addr = canonical(ip);
    Cidr { addr, prefix: host_bits(addr) }
}

fn host_bits(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn is_host(c: &Cidr) -> bool {
    c.prefix == host_bits(c.addr)
}

/// `IP 10.0.0.1` or `network 10.0.0.0/8`.
fn describe(c: &Cidr) -> String {
    if is_host(c) {
        format!("IP {}", c.addr)
    } else {
        format!("network {c}")
    }
}

/// `host`, `host:port` or `[v6]:port`, with a non-zero port when one is given.
fn check_host_port(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok() || s.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(format!("'{s}': port '{p}' is not 1-65535"));
        }
    }
    let ok_host = !host.is_empty()
        && host
            .split('.')
            .all(|label| !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if ok_host {
        Ok(())
    } else {
        Err(format!("'{s}' is not host[:port]"))
    }
}
