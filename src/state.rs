//! The running edge's shared state: what the shards, the control plane and
//! reload all reach. Built once by `app::run`; changed only by
//! [`Shared::reload`](crate::reload) and the inventory.

use arc_swap::{ArcSwap, ArcSwapOption};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

use crate::admission::Admission;
use crate::config::Config;
use crate::inventory::Inventory;
use crate::proxy::token::Sealer;
use crate::proxy::{DownSet, Local};
use crate::records::Records;
use crate::routing::RoutingTable;
use crate::sip::Transport;
use crate::transport::flood::FloodGuard;
use crate::transport::ShardInput;

/// State shared by the shards and the control plane.
pub struct Shared {
    /// The config in force (replaced on reload).
    pub config: ArcSwap<Config>,
    /// Where the config was loaded from (reload re-reads it).
    pub config_path: Option<PathBuf>,
    /// Durable numbers; publishes into `routing`.
    pub inventory: Arc<Inventory>,
    /// The routing table.
    pub routing: Arc<RoutingTable>,
    /// Concurrency caps.
    pub admission: Arc<Admission>,
    /// Next hops marked down by the health checks.
    pub down: Arc<DownSet>,
    /// Flood control.
    pub flood: Arc<FloodGuard>,
    /// Each shard's input queue.
    pub shards: Vec<mpsc::Sender<ShardInput>>,
    /// Prometheus text renderer.
    pub prometheus: metrics_exporter_prometheus::PrometheusHandle,
    /// Our SIP addresses.
    pub local: Local,
    /// The addresses actually bound.
    pub bound: Bound,
    /// TCP and TLS connections (reload swaps the TLS certificates in it).
    pub tcp: Arc<crate::transport::tcp::TcpHub>,
    /// The control plane's bearer token (`[admin].token_file`), re-read on reload.
    pub admin_token: ArcSwapOption<crate::token::Token>,
    /// The call-records writer (off without `[records] path`; SIGHUP reopens its file).
    pub records: Records,
    /// Cluster mode: the link to the Redis task (none when standalone).
    pub cluster: Option<Arc<crate::cluster::ClusterLink>>,
    /// Drain state (SIGTERM, `POST /v1/drain`).
    pub drain: Arc<crate::drain::Drain>,
    /// The Record-Route token key and boot id, set at start and kept across reloads.
    pub sealer: Arc<Sealer>,
    /// Serializes reloads.
    pub(crate) reload_lock: Mutex<()>,
}

/// The addresses the edge listens on (ports resolved when the config said 0).
#[derive(Clone, Debug, Default)]
pub struct Bound {
    /// SIP over UDP: the first UDP listener.
    pub udp: Option<SocketAddr>,
    /// SIP over TCP: the first TCP listener.
    pub tcp: Option<SocketAddr>,
    /// Every SIP listener, in config order.
    pub sip: Vec<(Transport, SocketAddr)>,
    /// The control plane.
    pub admin: Option<SocketAddr>,
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
/// This run's instance nonce: it goes into our to-tags and probe Call-IDs
/// so they differ from a previous run's. Time ^ pid, not secret.
pub fn instance_nonce() -> u32 {
    (unix_now() as u32) ^ std::process::id().rotate_left(16)
}
