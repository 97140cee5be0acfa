//! The TOML configuration (SPEC §4): strict serde structs, a `validate` step
//! that lists every problem it finds, and the `numbers.csv` seed inventory.
//!
//! Every table has `deny_unknown_fields`, so a misspelt key is an error and
//! not a silently ignored setting. Loading is three steps:
//! parse (one error at most, since serde stops at the first), validate the
//! whole config (every problem listed), then read and check the seed file.
//!
//! # Layout
//! - `mod.rs`      the structs, their defaults, the error types, [`check`]
//! - `cidr.rs`     [`Cidr`]: a carrier's `sources` networks and IP matching
//! - `load.rs`     TOML text / file → [`Config`], serde errors mapped to key paths
//! - `validate.rs` cross-field checks: duplicates, one IP per peer, limits
//! - `seed.rs`     `numbers.csv` → [`SeedNumber`]s and their checks

mod cidr;
mod cluster;
mod load;
mod observe;
mod seed;
mod validate;
pub use validate::MAX_RANK;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::sip::Transport;

pub(crate) use cidr::canonical;
pub use cidr::{Cidr, CidrError};
pub use cluster::{BackendDown, ClusterConfig};
pub use observe::{CaptureConfig, HepTransport, LogConfig, LogFormat, RecordsConfig};
pub use seed::{check_numbers, load_seed, parse_seed_csv, SeedNumber};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[edge]`: who this instance is and where it keeps its state.
    #[serde(default)]
    pub edge: EdgeConfig,
    /// `[[listen]]`: the SIP sockets; required, at least one.
    pub listen: Vec<ListenConfig>,
    /// `[admin]`: the HTTP control plane and `/metrics`.
    #[serde(default)]
    pub admin: AdminConfig,
    /// `[limits]`: concurrency caps and call duration.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// `[timers]`: RFC 3261 timers and the failover timeout.
    #[serde(default)]
    pub timers: TimersConfig,
    /// `[health]`: OPTIONS probing and its hysteresis.
    #[serde(default)]
    pub health: HealthConfig,
    /// `[[carrier]]`: the carrier trunks and their AZ links.
    #[serde(default)]
    pub carrier: Vec<CarrierConfig>,
    /// `[[flow_engine]]`: where inbound calls are handed off, one entry per AZ endpoint.
    #[serde(default)]
    pub flow_engine: Vec<FlowEngineConfig>,
    /// `[numbers]`: the seed inventory.
    #[serde(default)]
    pub numbers: NumbersConfig,
    /// `[flood]`: per-source-IP request flood protection.
    #[serde(default)]
    pub flood: FloodConfig,
    /// `[tcp]`: limits on SIP over TCP connections.
    #[serde(default)]
    pub tcp: TcpConfig,
    /// `[capture]`: HEP3 capture of every SIP message.
    #[serde(default)]
    pub capture: CaptureConfig,
    /// `[cluster]`: shared caps through Redis (off by default).
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// `[records]`: call records.
    #[serde(default)]
    pub records: RecordsConfig,
    /// `[log]`: log line format.
    #[serde(default)]
    pub log: LogConfig,
    /// The file this config was loaded from, so a reload re-reads the same file.
    #[serde(skip)]
    pub source_path: Option<PathBuf>,
}

impl Config {
    /// Every section at its default and no listener: not a config that
    /// starts, but the defaults the core's settings are built from
    /// (`CoreConfig::default`), so they are written only here.
    pub fn defaults() -> Config {
        Config {
            edge: EdgeConfig::default(),
            listen: Vec::new(),
            admin: AdminConfig::default(),
            limits: LimitsConfig::default(),
            timers: TimersConfig::default(),
            health: HealthConfig::default(),
            carrier: Vec::new(),
            flow_engine: Vec::new(),
            numbers: NumbersConfig::default(),
            flood: FloodConfig::default(),
            tcp: TcpConfig::default(),
            capture: CaptureConfig::default(),
            cluster: ClusterConfig::default(),
            records: RecordsConfig::default(),
            log: LogConfig::default(),
            source_path: None,
        }
    }
}

/// `[edge]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Instance name, used in logs (default `sipedge`).
    pub name: String,
    /// The AZ this instance runs in; links in it are tried first (default `az1`).
    pub az: String,
    /// Directory for durable state: inventory, ports, releases (default `var/sipedge`).
    pub data_dir: PathBuf,
    /// Worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// What to do with requests from an IP that is no carrier and no flow engine.
    pub unknown_source: UnknownSource,
    /// Value of our Server / User-Agent header; `None` sends none.
    pub server_header: Option<String>,
    /// `host[:port]` to put in our Via and Record-Route; default the listen address.
    pub advertise: Option<String>,
    /// Longest a drain (SIGTERM, `POST /v1/drain`) waits for calls to end
    /// before ending what is left with BYE both ways (default 120).
    pub drain_timeout_s: u64,
    /// The secret our Record-Route tokens are sealed under (SPEC §9); unset,
    /// `<data_dir>/dialog.key`, made on first start. Instances that route
    /// each other's dialogs share one file.
    pub dialog_key_file: Option<PathBuf>,
}

impl EdgeConfig {
    /// Shards (threads running a proxy core) to start. `workers = 0` means
    /// half the CPU cores, at least one: about 60 % of a call's CPU is the
    /// kernel's UDP work (send, receive, softirq), which needs cores of its
    /// own; on 2 cores shared with the load generator one shard measured
    /// 68–83 µs/call and 5000 CPS clean against 87 µs and 3500 CPS for two
    /// (docs/PERFORMANCE.md).
    pub fn shards(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map(|n| n.get() / 2).unwrap_or(1).max(1),
            n => n,
        }
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            name: "sipedge".to_owned(),
            az: "az1".to_owned(),
            data_dir: PathBuf::from("var/sipedge"),
            workers: 0,
            unknown_source: UnknownSource::Reject,
            server_header: None,
            drain_timeout_s: 120,
            advertise: None,
            dialog_key_file: None,
        }
    }
}

/// What the edge does with a request from an unknown source IP (SPEC §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSource {
    /// Answer 403 (the default).
    #[default]
    Reject,
    /// Send nothing back: cheaper under a scan, and tells the scanner nothing.
    Drop,
}

/// One `[[listen]]` socket.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// `udp` (default), `tcp` or `tls`.
    #[serde(default)]
    pub transport: Transport,
    /// Address to bind; port 0 picks a free port (tests use it).
    pub addr: SocketAddr,
    /// TLS: our certificate chain (PEM), leaf first. Required for `tls`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// TLS: the private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1). Required for `tls`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// TLS: CA certificates (PEM); set, every client must present a
    /// certificate signed by one of them (mutual TLS).
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            transport: Transport::Udp,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 5060)),
            cert_file: None,
            key_file: None,
            client_ca_file: None,
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// HTTP control plane and `/metrics` (default `127.0.0.1:9060`).
    pub addr: SocketAddr,
    /// File holding a bearer token the control plane requires; `None` = no token.
    pub token_file: Option<PathBuf>,
    /// Largest request body the control plane accepts (default 65536).
    pub max_body_bytes: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 9060)), token_file: None, max_body_bytes: 65536 }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Calls the whole instance carries at once; beyond it, 503 (default 10000).
    pub max_concurrent_calls: u32,
    /// Default per-number cap for a DID (default 100).
    pub did_max_concurrent: u32,
    /// Default per-number cap for a toll-free number; 0 = unlimited (the default).
    pub toll_free_max_concurrent: u32,
    /// A call still up after this many seconds is ended and its slot freed (default 14400).
    pub max_call_duration_s: u64,
    /// Retry-After seconds on a 503 for overload (default 5).
    pub retry_after_s: u32,
    /// New calls per second for the instance, beyond which 503; 0 = unlimited (the default).
    pub new_calls_per_second: u32,
}

impl LimitsConfig {
    /// The caps of a number without its own `max_concurrent`.
    pub fn default_caps(&self) -> crate::routing::DefaultCaps {
        crate::routing::DefaultCaps { did: self.did_max_concurrent, toll_free: self.toll_free_max_concurrent }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_concurrent_calls: 10_000,
            did_max_concurrent: 100,
            toll_free_max_concurrent: 0,
            max_call_duration_s: 14_400,
            retry_after_s: 5,
            new_calls_per_second: 0,
        }
    }
}

/// `[timers]`, in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimersConfig {
    /// RFC 3261 T1, the RTT estimate (default 500).
    pub t1_ms: u64,
    /// RFC 3261 T2, the retransmit cap for non-INVITE requests (default 4000).
    pub t2_ms: u64,
    /// RFC 3261 T4, how long the network may hold a message (default 5000).
    pub t4_ms: u64,
    /// No response from a next hop in this time → try the next one (default 2000).
    pub failover_ms: u64,
    /// RFC 3261 Timer C, a proxy's limit on a proceeding INVITE (default 180000).
    pub timer_c_ms: u64,
}

impl Default for TimersConfig {
    fn default() -> Self {
        TimersConfig { t1_ms: 500, t2_ms: 4000, t4_ms: 5000, failover_ms: 2000, timer_c_ms: 180_000 }
    }
}

/// `[health]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// OPTIONS to every next hop this often (default 5000).
    pub options_interval_ms: u64,
    /// Consecutive failures before a hop is marked down (default 2).
    pub down_after: u32,
    /// Consecutive successes before it is up again (default 2).
    pub up_after: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { options_interval_ms: 5000, down_after: 2, up_after: 2 }
    }
}

/// One `[[carrier]]` trunk.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// Unique name, referenced by `numbers.csv` and sent in `X-Carrier`.
    pub name: String,
    /// Extra source CIDRs whose requests are this carrier (besides its link IPs).
    #[serde(default)]
    pub sources: Vec<String>,
    /// The carrier's links, one or more per AZ.
    #[serde(default)]
    pub link: Vec<LinkConfig>,
    /// Calls up at once with this carrier, both directions; 0 = unlimited (the default).
    #[serde(default)]
    pub max_concurrent: u32,
    /// New calls per second with this carrier, both directions; 0 = unlimited (the default).
    #[serde(default)]
    pub max_cps: u32,
}

/// One `[[carrier.link]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The AZ the link lands in.
    pub az: String,
    /// We send to it; requests from its IP are this carrier.
    pub addr: SocketAddr,
    /// `udp` (default), `tcp` or `tls`.
    #[serde(default)]
    pub transport: Transport,
    /// `tls`: the name its certificate must carry; default the address's IP.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `tls`: CA certificates (PEM) its certificate must chain to; default
    /// the Mozilla roots (webpki-roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `tls`: the certificate chain (PEM) we present when it asks for one
    /// (mutual TLS). Set with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// `tls`: the private key of `client_cert_file` (PEM).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// `true`: no new calls to this link; calls already on it go on.
    #[serde(default)]
    pub drain: bool,
    /// Lower is preferred (SPEC §13); read signed so a negative one is
    /// reported by `sipedge check` rather than as a TOML type error.
    #[serde(default = "default_rank")]
    pub priority: i64,
    /// Share of new calls among targets of equal priority; 0 = only when no other is left.
    #[serde(default = "default_rank")]
    pub weight: i64,
}

fn default_rank() -> i64 {
    1
}

/// The TLS keys of one next hop (`[[carrier.link]]` or `[[flow_engine]]`).
#[derive(Debug, Clone, Copy)]
pub struct HopTls<'a> {
    /// `server_name`.
    pub server_name: Option<&'a str>,
    /// `ca_file`.
    pub ca_file: Option<&'a Path>,
    /// `client_cert_file`.
    pub client_cert_file: Option<&'a Path>,
    /// `client_key_file`.
    pub client_key_file: Option<&'a Path>,
}

impl LinkConfig {
    /// Its TLS keys.
    pub fn tls(&self) -> HopTls<'_> {
        HopTls {
            server_name: self.server_name.as_deref(),
            ca_file: self.ca_file.as_deref(),
            client_cert_file: self.client_cert_file.as_deref(),
            client_key_file: self.client_key_file.as_deref(),
        }
    }
}

impl FlowEngineConfig {
    /// Its TLS keys.
    pub fn tls(&self) -> HopTls<'_> {
        HopTls {
            server_name: self.server_name.as_deref(),
            ca_file: self.ca_file.as_deref(),
            client_cert_file: self.client_cert_file.as_deref(),
            client_key_file: self.client_key_file.as_deref(),
        }
    }
}

/// One `[[flow_engine]]` endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowEngineConfig {
    /// The AZ the endpoint is in.
    pub az: String,
    /// Where inbound calls are sent; requests from its IP are the platform.
    pub addr: SocketAddr,
    /// `udp` (default), `tcp` or `tls`.
    #[serde(default)]
    pub transport: Transport,
    /// `tls`: the name its certificate must carry; default the address's IP.
    #[serde(default)]
    pub server_name: Option<String>,
    /// `tls`: CA certificates (PEM) its certificate must chain to; default
    /// the Mozilla roots (webpki-roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `tls`: the certificate chain (PEM) we present when it asks for one
    /// (mutual TLS). Set with `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// `tls`: the private key of `client_cert_file` (PEM).
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// `true`: no new calls to this endpoint; calls already on it go on.
    #[serde(default)]
    pub drain: bool,
    /// Lower is preferred (SPEC §13); read signed so a negative one is
    /// reported by `sipedge check` rather than as a TOML type error.
    #[serde(default = "default_rank")]
    pub priority: i64,
    /// Share of new calls among targets of equal priority; 0 = only when no other is left.
    #[serde(default = "default_rank")]
    pub weight: i64,
}

/// `[numbers]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumbersConfig {
    /// CSV imported on first start when the store is empty; `None` = start empty.
    pub seed_file: Option<PathBuf>,
}

/// `[flood]`: a source IP sending more than `max_requests` per `window_ms` is banned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloodConfig {
    /// Whether flood protection runs at all (default true).
    pub enabled: bool,
    /// Counting window (default 1000).
    pub window_ms: u64,
    /// Requests allowed per window per source IP (default 400).
    pub max_requests: u32,
    /// How long a flooding IP stays banned (default 60).
    pub ban_s: u64,
    /// What a banned IP gets.
    pub action: FloodAction,
    /// `true` (default): configured carrier and flow-engine IPs are never banned.
    pub exempt_peers: bool,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            enabled: true,
            window_ms: 1000,
            max_requests: 400,
            ban_s: 60,
            action: FloodAction::Drop,
            exempt_peers: true,
        }
    }
}

/// What a banned source gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodAction {
    /// Nothing (the default): answering a flood would amplify it.
    #[default]
    Drop,
    /// 503 with Retry-After.
    Reject,
}

/// `[tcp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpConfig {
    /// Open connections in total (default 4096).
    pub max_connections: usize,
    /// Open connections from one IP (default 256).
    pub max_per_ip: usize,
    /// Largest SIP message, headers plus body (default 65535).
    pub max_message_bytes: usize,
    /// Largest header section (default 16384).
    pub max_header_bytes: usize,
    /// A connection with no traffic for this long is closed (default 300).
    pub idle_timeout_s: u64,
    /// A started message must complete within this, against slowloris (default 5000).
    pub message_deadline_ms: u64,
    /// A TLS connection must finish its handshake within this (default 5000).
    pub tls_handshake_timeout_ms: u64,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_connections: 4096,
            max_per_ip: 256,
            max_message_bytes: 65535,
            max_header_bytes: 16384,
            idle_timeout_s: 300,
            message_deadline_ms: 5000,
            tls_handshake_timeout_ms: 5000,
        }
    }
}

/// One problem in a config file, with the field it is in (e.g. `carrier[1].link[0].addr`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// Where: a key path, or a seed-file line.
    pub field: String,
    /// What is wrong, in words an operator can act on.
    pub problem: String,
}

impl ConfigError {
    /// Builds an error from anything printable.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { field: field.into(), problem: problem.into() }
    }
}

/// Every problem found in a config (never just the first); `Display` gives one per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn lines(errors: &[ConfigError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl ConfigErrors {
    /// The individual problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// Validates the config file at `path` the way `sipedge check` does: what
/// [`Config::load`] checks, plus what the edge reads and binds at start (the
/// admin token, the dialog key, certificates, `data_dir` and its store, the
/// listening addresses), so `check` refuses whatever start would. Nothing is
/// written. When an edge already runs on this `data_dir` (it holds the
/// store), the store and the addresses are its own and are not probed. The
/// CLI prints each error as `error: <field>: <problem>`.
pub fn check(path: &Path) -> Result<Config, ConfigErrors> {
    use crate::inventory::Probe;
    let cfg = Config::load(path)?;
    crate::token::load_token(&cfg)?;
    crate::dialog_key::check(&cfg)?;
    crate::transport::tls::TlsSettings::load(&cfg)?.warn_expiring();
    let mut errors = Vec::new();
    match crate::inventory::probe(&cfg.resolve(&cfg.edge.data_dir)) {
        Ok(Probe::InUse(store)) => {
            tracing::warn!(store = %store.display(), "a running edge holds the store: it and the listening addresses were not probed");
        }
        found => {
            match found {
                Ok(Probe::NeedsRepair) => {
                    tracing::warn!("the store was not closed cleanly; start repairs it before serving")
                }
                Err(e) => errors.push(ConfigError::new("edge.data_dir", e.to_string())),
                Ok(_) => {}
            }
            errors.extend(crate::transport::bind_probe::unbindable(&cfg));
        }
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}
