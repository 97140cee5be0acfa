//! Wiring: config → shared state → shards, TCP, control plane; reload and shutdown.

use arc_swap::ArcSwap;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

use crate::admission::Admission;
use crate::config::{Cidr, Config, ConfigErrors, FloodAction, UnknownSource};
use crate::inventory::{Inventory, InventoryError};
use crate::proxy::token::Sealer;
use crate::proxy::{CallRate, Core, CoreConfig, CoreShared, DownSet, Local, LocalAddr, UnknownSourcePolicy};
use crate::records::Records;
use crate::routing::{CarrierPeers, ClaimSpec, PeerLink, Peers, RoutingTable};
use crate::sip::{Transport, E164};
use crate::transport::flood::{Exempt, FloodGuard, FloodSettings};
use crate::transport::shard::{Shard, SHARD_QUEUE};
use crate::transport::tcp::{TcpHub, TcpLimits};
use crate::transport::{udp, ShardInput};

/// How long shutdown waits for the last call records to reach the file.
const RECORDS_SETTLE: Duration = Duration::from_secs(2);

/// Why the edge could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The config file is invalid.
    #[error("invalid config:\n{0}")]
    Config(#[from] ConfigErrors),
    /// The durable store could not be opened or seeded.
    #[error("number store: {0}")]
    Inventory(#[from] InventoryError),
    /// A listener could not be bound.
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        /// Which transport.
        transport: &'static str,
        /// Which address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard thread could not be started.
    #[error("cannot start a shard thread: {0}")]
    Thread(std::io::Error),
    /// The config asks for something this build does not do.
    #[error("{0}")]
    Unsupported(&'static str),
    /// `[cluster] redis_url` could not be used.
    #[error("cluster.redis_url: {0}")]
    Cluster(redis::RedisError),
}

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
    /// The control plane's bearer token (`[admin].token_file`), re-read on reload.
    pub admin_token: arc_swap::ArcSwapOption<crate::admin::Token>,
    /// The call-records writer (off without `[records] path`; SIGHUP reopens its file).
    pub records: Records,
    /// Cluster mode: the link to the Redis task (none when standalone).
    pub cluster: Option<Arc<crate::cluster::ClusterLink>>,
    /// Drain state (SIGTERM, `POST /v1/drain`).
    pub drain: Arc<crate::drain::Drain>,
    /// The Record-Route token key and boot id, set at start and kept across reloads.
    pub sealer: Arc<Sealer>,
    /// Serializes reloads.
    reload_lock: std::sync::Mutex<()>,
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

fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use crate::metrics as m;
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            let builder = PrometheusBuilder::new();
            // Full names always match; an error here would mean empty buckets.
            let builder = builder
                .set_buckets_for_metric(Matcher::Full(m::SETUP_SECONDS.into()), m::SETUP_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(m::CALL_DURATION_SECONDS.into()), m::DURATION_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(m::CLUSTER_ADMIT_SECONDS.into()), m::ADMIT_BUCKETS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            crate::metrics::describe();
            handle
        })
        .clone()
}

/// The peers (carriers, flow engine) a config describes.
pub fn peers_from_config(cfg: &Config) -> Peers {
    // Check refused negative or oversized ranks; clamp anyway rather than wrap.
    let rank = |r: i64| u32::try_from(r.clamp(0, crate::config::MAX_RANK)).unwrap_or(1);
    let link = |az: &str, addr: SocketAddr, transport: Transport, drain: bool, priority: i64, weight: i64| PeerLink {
        drain,
        priority: rank(priority),
        weight: rank(weight),
        ..PeerLink::new(az, addr, transport)
    };
    let carriers = cfg
        .carrier
        .iter()
        .map(|c| CarrierPeers {
            name: Arc::from(c.name.as_str()),
            links: c.link.iter().map(|l| link(&l.az, l.addr, l.transport, l.drain, l.priority, l.weight)).collect(),
            sources: c.sources.iter().filter_map(|s| Cidr::parse(s).ok()).map(|c| (c.addr, c.prefix)).collect(),
        })
        .collect();
    let flow =
        cfg.flow_engine.iter().map(|f| link(&f.az, f.addr, f.transport, f.drain, f.priority, f.weight)).collect();
    Peers::new(carriers, flow)
}

/// The core's settings from a config and our bound addresses.
pub fn core_config(cfg: &Config, local: &Local, nonce: u32, sealer: Arc<Sealer>) -> CoreConfig {
    let t = &cfg.timers;
    CoreConfig {
        timers: crate::proxy::TimerValues {
            t1: Duration::from_millis(t.t1_ms),
            t2: Duration::from_millis(t.t2_ms),
            t4: Duration::from_millis(t.t4_ms),
            failover: Duration::from_millis(t.failover_ms),
            timer_c: Duration::from_millis(t.timer_c_ms),
        },
        own_az: Arc::from(cfg.edge.az.as_str()),
        max_call_duration: Duration::from_secs(cfg.limits.max_call_duration_s),
        unknown_source: match cfg.edge.unknown_source {
            UnknownSource::Reject => UnknownSourcePolicy::Reject,
            UnknownSource::Drop => UnknownSourcePolicy::Drop,
        },
        server_header: cfg.edge.server_header.as_deref().map(Arc::from),
        retry_after_s: cfg.limits.retry_after_s,
        did_max_concurrent: cfg.limits.did_max_concurrent,
        toll_free_max_concurrent: cfg.limits.toll_free_max_concurrent,
        local: local.clone(),
        instance_nonce: nonce,
        probe_interval: Duration::from_millis(cfg.health.options_interval_ms),
        down_after: cfg.health.down_after,
        up_after: cfg.health.up_after,
        new_calls_per_second: cfg.limits.new_calls_per_second,
        records: cfg.records.path.is_some(),
        cluster: cfg.cluster.redis_url.as_ref().map(|_| crate::proxy::ClusterAdmit {
            admit_timeout: Duration::from_millis(cfg.cluster.admit_timeout_ms),
            policy: cfg.cluster.on_backend_down,
        }),
        sealer,
    }
}

fn flood_settings(cfg: &Config) -> (FloodSettings, Exempt) {
    let f = &cfg.flood;
    let s = FloodSettings {
        enabled: f.enabled,
        window: Duration::from_millis(f.window_ms),
        max_requests: f.max_requests,
        ban: Duration::from_secs(f.ban_s),
        reject: f.action == FloodAction::Reject,
    };
    let mut ips = HashSet::new();
    let mut nets = Vec::new();
    if f.exempt_peers {
        for c in &cfg.carrier {
            ips.extend(c.link.iter().map(|l| l.addr.ip()));
            // A carrier's extra source networks are the carrier too.
            nets.extend(c.sources.iter().filter_map(|s| Cidr::parse(s).ok()));
        }
        ips.extend(cfg.flow_engine.iter().map(|f| f.addr.ip()));
    }
    (s, Exempt::from(ips).with_nets(nets))
}

fn seed_of(cfg: &Config) -> Result<Option<Vec<(E164, ClaimSpec)>>, ConfigErrors> {
    let Some(path) = cfg.numbers.seed_file.as_ref() else { return Ok(None) };
    let rows = crate::config::load_seed(&cfg.resolve(path))?;
    // The checks `sipedge check` makes, with their field names; only done
    // when the seed will be imported (see `Config::load_without_seed`).
    let errors = crate::config::check_numbers(&rows, &cfg.carrier);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Some(
        rows.into_iter()
            .map(|r| {
                let spec = ClaimSpec {
                    flow: r.flow,
                    carriers: r.carriers,
                    kind: Some(r.kind),
                    max_concurrent: r.max_concurrent,
                    cnam: r.cnam,
                };
                (r.e164, spec)
            })
            .collect(),
    ))
}

/// What a listener bound on `bound` writes into Via and Record-Route.
/// `[edge].advertise` replaces it; an address literal there stands for its
/// own family only (an IPv6 listener keeps its address when the advertised
/// one is IPv4, and the other way round), a name for every listener.
fn advertise(cfg: &Config, bound: SocketAddr) -> String {
    let Some(a) = cfg.edge.advertise.as_deref() else { return bound.to_string() };
    let (literal_v6, text) = if let Ok(sa) = a.parse::<SocketAddr>() {
        (Some(sa.is_ipv6()), a.to_string())
    } else if let Ok(ip) = a.parse::<std::net::IpAddr>() {
        (Some(ip.is_ipv6()), SocketAddr::new(ip, bound.port()).to_string())
    } else if a.starts_with('[') {
        (Some(true), format!("{a}:{}", bound.port()))
    } else if a.matches(':').count() == 1 {
        (None, a.to_string())
    } else {
        (None, format!("{a}:{}", bound.port()))
    };
    match literal_v6 {
        Some(v6) if v6 != bound.is_ipv6() => bound.to_string(),
        _ => text,
    }
}

/// What the edge is told by its signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Drain (first SIGTERM): refuse new calls, exit when the last call ends
    /// or `[edge].drain_timeout_s` runs out. Ignored once draining.
    Drain,
    /// Stop at once (second SIGTERM, SIGINT): BYE both ways on every call.
    Now,
}

/// Runs the edge until told to stop: binds every listener, starts one shard
/// per worker, the TCP acceptor, the control plane and the housekeeping.
/// A closed `stops` channel stops the edge at once.
pub async fn run(cfg: Config, mut stops: mpsc::UnboundedReceiver<Stop>) -> Result<(), AppError> {
    let prometheus = prometheus();
    let peers = Arc::new(peers_from_config(&cfg));
    let ignores_seed = Inventory::ignores_seed(&cfg.resolve(&cfg.edge.data_dir))?;
    let seed = if ignores_seed { None } else { seed_of(&cfg)? };
    let admin_token = crate::admin::load_token(&cfg).map_err(ConfigErrors::from)?;
    let key = crate::dialog_key::load_or_create(&cfg).map_err(ConfigErrors::from)?;
    let data_dir = cfg.resolve(&cfg.edge.data_dir);
    let (inventory, routing) = Inventory::open(&data_dir, peers, seed)?;
    let inventory = Arc::new(inventory);
    let admission = Arc::new(Admission::new(cfg.limits.max_concurrent_calls));
    admission.trunks().configure(&crate::admission::TrunkLimits::from_config(&cfg));
    crate::metrics::instance_cap(cfg.limits.max_concurrent_calls);
    let down = Arc::new(DownSet::default());
    let (fs, exempt) = flood_settings(&cfg);
    let flood = Arc::new(FloodGuard::new(fs, exempt));

    let workers = cfg.edge.shards();
    let mut bound = Bound::default();
    // Per UDP listener, one socket per shard (an SO_REUSEPORT group); every
    // shard reads all of its sockets and sends from the one of the peer's family.
    let mut udp_socks: Vec<Vec<std::net::UdpSocket>> = (0..workers).map(|_| Vec::new()).collect();
    let mut tcp_listeners = Vec::new();
    let mut local = Local::default();
    for l in &cfg.listen {
        let actual = match l.transport {
            Transport::Udp => {
                let socks = udp::bind_group(l.addr, workers).map_err(|source| AppError::Bind {
                    transport: "udp",
                    addr: l.addr,
                    source,
                })?;
                let actual = socks.first().and_then(|s| s.local_addr().ok()).unwrap_or(l.addr);
                for (shard, s) in udp_socks.iter_mut().zip(socks) {
                    if let Err(e) = udp::enable_icmp_errors(&s) {
                        tracing::warn!(error = %e, "no ICMP error reporting: UDP failover waits for failover_ms");
                    }
                    // Registered with its shard's own runtime, on the shard's thread.
                    shard.push(s);
                }
                actual
            }
            Transport::Tcp => {
                let listener =
                    bind_tcp(l.addr).map_err(|source| AppError::Bind { transport: "tcp", addr: l.addr, source })?;
                let actual = listener.local_addr().unwrap_or(l.addr);
                tcp_listeners.push(listener);
                actual
            }
        };
        match l.transport {
            Transport::Udp => bound.udp = bound.udp.or(Some(actual)),
            Transport::Tcp => bound.tcp = bound.tcp.or(Some(actual)),
        }
        bound.sip.push((l.transport, actual));
        local.listeners.push(LocalAddr {
            transport: l.transport,
            v6: actual.is_ipv6(),
            host_port: advertise(&cfg, actual),
        });
    }
    let admin_listener = tokio::net::TcpListener::bind(cfg.admin.addr).await.map_err(|source| AppError::Bind {
        transport: "admin http",
        addr: cfg.admin.addr,
        source,
    })?;
    bound.admin = admin_listener.local_addr().ok();

    let nonce = (unix_now() as u32) ^ std::process::id().rotate_left(16);
    // Tokens name the run that sealed them: one of ours whose dialog is gone
    // is a call that ended, not one a restart forgot.
    let mut boot = nonce.to_be_bytes();
    // Random, not time ^ pid: a container restarts as pid 1 within a second.
    let _ = getrandom::getrandom(&mut boot);
    let sealer = Arc::new(Sealer { key, boot: u32::from_be_bytes(boot) });
    let core_cfg = Arc::new(core_config(&cfg, &local, nonce, sealer.clone()));
    let hasher = ahash::RandomState::with_seeds(0x5eed, 0xed6e, 0x51b, 0xca11);
    let tcp_cfg = &cfg.tcp;
    let hub = TcpHub::new(
        TcpLimits {
            max_connections: tcp_cfg.max_connections,
            max_per_ip: tcp_cfg.max_per_ip,
            max_message_bytes: tcp_cfg.max_message_bytes,
            max_header_bytes: tcp_cfg.max_header_bytes,
            idle_timeout: Duration::from_secs(tcp_cfg.idle_timeout_s),
            message_deadline: Duration::from_millis(tcp_cfg.message_deadline_ms),
            connect_timeout: Duration::from_millis(cfg.timers.failover_ms.max(100)),
        },
        hasher.clone(),
        flood.clone(),
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut inputs = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..workers {
        let (tx, rx) = mpsc::channel(SHARD_QUEUE);
        inputs.push(tx);
        receivers.push(rx);
    }
    hub.set_shards(inputs.clone());
    if let Some(addr) = cfg.capture.hep_addr {
        match crate::capture::Capture::start(addr, cfg.capture.hep_id, cfg.capture.hep_transport) {
            Ok(c) => hub.set_capture(c),
            Err(e) => tracing::warn!(collector = %addr, error = %e, "HEP capture not started"),
        }
    }
    let records = match &cfg.records.path {
        Some(p) => Records::start(p.clone()).map_err(AppError::Thread)?,
        None => Records::off(),
    };
    let cluster = start_cluster(&cfg, nonce, &inputs)?;
    if let Some(url) = cfg.cluster.redis_url.as_deref() {
        start_event_tail(url, &inventory).map_err(AppError::Cluster)?;
    }
    let now = std::time::Instant::now();
    let drain = Arc::new(crate::drain::Drain::new(workers));
    let core_shared = CoreShared {
        routing: routing.clone(),
        admission: admission.clone(),
        down: down.clone(),
        rate: Arc::new(CallRate::new(now)),
        cluster: cluster.clone(),
        draining: drain.flag(),
    };
    // Each shard runs on its own OS thread with a current-thread runtime: a
    // call's messages never hop between threads and no work-stealing wake-ups
    // are paid per message (measured: tools/load, docs/PERFORMANCE.md).
    let mut shard_threads = Vec::new();
    let mut udp_socks = udp_socks.into_iter();
    for (i, rx) in receivers.into_iter().enumerate() {
        let core = Core::new(i as u32, core_cfg.clone(), core_shared.clone(), now);
        let socks = udp_socks.next().unwrap_or_default();
        let (inputs, hub, flood, hasher, stop_rx, records, cluster, drain) = (
            inputs.clone(),
            hub.clone(),
            flood.clone(),
            hasher.clone(),
            stop_rx.clone(),
            records.clone(),
            cluster.clone(),
            drain.clone(),
        );
        let thread = std::thread::Builder::new().name(format!("sipedge-shard-{i}")).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(shard = i, error = %e, "shard runtime failed to start"),
            };
            rt.block_on(async move {
                let udp = match socks.into_iter().map(|s| tokio::net::UdpSocket::from_std(s).map(Arc::new)).collect() {
                    Ok(u) => u,
                    Err(e) => return tracing::error!(shard = i, error = %e, "shard socket failed"),
                };
                let shard = Shard {
                    index: i,
                    core,
                    udp,
                    rx,
                    shards: inputs,
                    tcp: hub,
                    flood,
                    hasher,
                    shutdown: stop_rx,
                    records,
                    cluster,
                    drain,
                };
                shard.run().await;
                // Let TCP writers spawned on this runtime drain the final BYEs.
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        });
        match thread {
            Ok(t) => shard_threads.push(t),
            Err(source) => return Err(AppError::Thread(source)),
        }
    }
    for l in tcp_listeners {
        tokio::spawn(hub.clone().accept_loop(l));
    }

    let shared = Arc::new(Shared {
        config: ArcSwap::from_pointee(cfg.clone()),
        config_path: cfg.source_path.clone(),
        inventory,
        routing,
        admission,
        down,
        flood: flood.clone(),
        shards: inputs,
        prometheus,
        local,
        bound: bound.clone(),
        admin_token: arc_swap::ArcSwapOption::from_pointee(admin_token),
        records: records.clone(),
        cluster: cluster.clone(),
        drain: drain.clone(),
        sealer,
        reload_lock: std::sync::Mutex::new(()),
    });
    tokio::spawn(crate::admin::serve(admin_listener, shared.clone()));
    tokio::spawn(housekeeping(shared.clone()));
    #[cfg(unix)]
    tokio::spawn(sighup(shared.clone()));

    for (t, a) in &bound.sip {
        tracing::info!("listening for {} on {a}", t.via_name());
    }
    if let Some(a) = bound.admin {
        tracing::info!("control plane on http://{a}");
    }
    tracing::info!(edge = %cfg.edge.name, az = %cfg.edge.az, workers, numbers = shared.routing.load().len(), "sipedge ready");

    wait_for_stop(&drain, &mut stops, Duration::from_secs(cfg.edge.drain_timeout_s)).await;
    tracing::info!("shutting down: ending calls");
    let _ = stop_tx.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        for t in shard_threads {
            let _ = t.join();
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(3), joined).await;
    // The records of the calls just ended reach the file before we exit.
    let _ = tokio::task::spawn_blocking(move || records.settle(RECORDS_SETTLE)).await;
    // Let TCP writers drain the final BYEs.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// Cluster mode: the link the shards use and the Redis task behind it
/// (none when standalone). Redis being down is not an error: the task
/// connects when it can, and admission follows `on_backend_down` meanwhile.
fn start_cluster(
    cfg: &Config,
    boot: u32,
    shards: &[mpsc::Sender<ShardInput>],
) -> Result<Option<Arc<crate::cluster::ClusterLink>>, AppError> {
    let Some(url) = cfg.cluster.redis_url.clone() else { return Ok(None) };
    let instance = cfg.cluster.instance.clone().unwrap_or_else(|| cfg.edge.name.clone());
    let (link, queues) = crate::cluster::ClusterLink::new(&instance, u64::from(boot));
    let settings = crate::cluster::client::Settings {
        url,
        instance: instance.clone(),
        lease_ttl: Duration::from_millis(cfg.cluster.lease_ttl_ms),
        admit_timeout: Duration::from_millis(cfg.cluster.admit_timeout_ms),
    };
    crate::cluster::client::start(settings, link.view.clone(), queues, shards.to_vec()).map_err(AppError::Cluster)?;
    tracing::info!(instance = %instance, policy = ?cfg.cluster.on_backend_down, "cluster mode: caps shared through Redis");
    Ok(Some(Arc::new(link)))
}

/// Cluster mode: number events go through Redis, and a thread applies the
/// stream's new entries as `XREAD BLOCK` reports them (off the runtime: the
/// inventory blocks).
fn start_event_tail(url: &str, inventory: &Arc<Inventory>) -> Result<(), redis::RedisError> {
    // Control-plane writes and the tail, never the SIP path: a second is fine.
    let log = Arc::new(crate::cluster::events::EventLog::new(url, Duration::from_secs(1))?);
    inventory.attach_log(log);
    // The tail's own connection, held while it waits for the next entry.
    let waiter = crate::cluster::events::EventLog::new(url, Duration::from_secs(2))?;
    let weak = Arc::downgrade(inventory);
    let spawned = std::thread::Builder::new().name("cluster-events".into()).spawn(move || {
        let mut was_down = false;
        while let Some(inv) = weak.upgrade() {
            match inv.sync() {
                Ok(_) if was_down => {
                    tracing::info!("cluster number events: caught up");
                    was_down = false;
                }
                Ok(_) => {}
                Err(e) if !was_down => {
                    tracing::warn!(error = %e, "cluster number events: cannot read the stream; routing from the local store");
                    was_down = true;
                }
                Err(_) => {}
            }
            let after = inv.applied();
            drop(inv);
            // Woken by the next entry; a Redis down costs a pause, not a spin.
            if waiter.wait_after(after, 500).is_err() {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the cluster events thread");
    }
    Ok(())
}

/// Returns when the edge should stop: at once on `Stop::Now`; after a drain
/// (signal or control plane) once no call is left or `timeout` has passed.
async fn wait_for_stop(drain: &crate::drain::Drain, stops: &mut mpsc::UnboundedReceiver<Stop>, timeout: Duration) {
    tokio::select! {
        s = stops.recv() => match s {
            Some(Stop::Drain) => {
                drain.start();
            }
            Some(Stop::Now) | None => return,
        },
        _ = drain.started() => {}
    }
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut closed = false;
    loop {
        tokio::select! {
            s = stops.recv(), if !closed => match s {
                Some(Stop::Drain) => {}
                Some(Stop::Now) => {
                    tracing::warn!("stopping at once: calls still up get BYE both ways");
                    return;
                }
                // No more signals can come: the drain goes on to its end.
                None => closed = true,
            },
            _ = tokio::time::sleep_until(deadline) => {
                let left = drain.live().unwrap_or(0);
                tracing::warn!(calls = left, "drain_timeout_s reached: ending what is left with BYE both ways");
                return;
            }
            _ = tick.tick() => {
                if drain.live() == Some(0) {
                    let secs = started.elapsed().as_secs_f64();
                    tracing::info!(secs, "drained: the last call has ended");
                    return;
                }
            }
        }
    }
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    if addr.is_ipv6() {
        // `[::]` is IPv6 only, so `0.0.0.0` on the same port can be another listener.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// What a successful reload changed.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReloadReport {
    /// Settings that changed but need a restart to take effect.
    pub needs_restart: Vec<String>,
    /// Carriers in the new config.
    pub carriers: usize,
    /// Flow-engine endpoints in the new config.
    pub flow_engines: usize,
}

impl Shared {
    /// Re-reads the config file. A bad file is refused with every problem
    /// listed and nothing changes; a good one takes effect for new calls.
    pub fn reload(&self) -> Result<ReloadReport, ConfigErrors> {
        let _guard = self.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = self.config_path.as_ref() else {
            return Err(ConfigErrors(vec![crate::config::ConfigError::new(
                "config",
                "the edge was not started from a file",
            )]));
        };
        // The seed only matters to an empty store at start.
        let new = Config::load_without_seed(path)?;
        // An unreadable token file refuses the whole reload, like any config error.
        let token = crate::admin::load_token(&new).map_err(ConfigErrors::from)?;
        let old = self.config.load_full();
        let mut report = ReloadReport::default();
        if format!("{:?}", new.listen) != format!("{:?}", old.listen) {
            report.needs_restart.push("listen".into());
        }
        if new.admin.addr != old.admin.addr {
            report.needs_restart.push("admin.addr".into());
        }
        if new.admin.max_body_bytes != old.admin.max_body_bytes {
            report.needs_restart.push("admin.max_body_bytes".into());
        }
        if new.edge.data_dir != old.edge.data_dir {
            report.needs_restart.push("edge.data_dir".into());
        }
        if new.edge.workers != old.edge.workers {
            report.needs_restart.push("edge.workers".into());
        }
        if new.records.path != old.records.path {
            report.needs_restart.push("records.path".into());
        }
        if new.capture.hep_addr != old.capture.hep_addr
            || new.capture.hep_id != old.capture.hep_id
            || new.capture.hep_transport != old.capture.hep_transport
        {
            report.needs_restart.push("capture".into());
        }
        let peers = Arc::new(peers_from_config(&new));
        report.carriers = peers.carriers.len();
        report.flow_engines = peers.flow_engine.len();
        self.inventory.set_peers(peers);
        self.admission.set_instance_cap(new.limits.max_concurrent_calls);
        // Carrier limits change in place: calls up keep their slots.
        self.admission.trunks().configure(&crate::admission::TrunkLimits::from_config(&new));
        crate::metrics::instance_cap(new.limits.max_concurrent_calls);
        let (fs, exempt) = flood_settings(&new);
        self.flood.update(fs, exempt);
        let nonce = (unix_now() as u32) ^ std::process::id().rotate_left(16);
        // The dialog key is read once: the tokens of calls up now were sealed under it.
        if new.edge.dialog_key_file != old.edge.dialog_key_file {
            report.needs_restart.push("edge.dialog_key_file".into());
        }
        let mut core_cfg = core_config(&new, &self.local, nonce, self.sealer.clone());
        // Records stay as the writer started: on with a path, off without.
        core_cfg.records = self.records.is_on();
        // Cluster mode stays as it started; its timeout and policy follow the file.
        if new.cluster.redis_url != old.cluster.redis_url {
            report.needs_restart.push("cluster.redis_url".into());
            core_cfg.cluster = core_config(&old, &self.local, nonce, self.sealer.clone()).cluster;
        }
        let core_cfg = Arc::new(core_cfg);
        for s in &self.shards {
            // A full queue must not lose a reload: the send waits for room on a task.
            let _ = s.send_now_or_later(ShardInput::Config(core_cfg.clone()));
        }
        if let Some(addr) = self.bound.admin {
            crate::admin::warn_if_exposed(addr, token.is_some());
        }
        self.admin_token.store(token.map(Arc::new));
        self.config.store(Arc::new(new));
        tracing::info!(carriers = report.carriers, flow_engines = report.flow_engines, "config reloaded");
        Ok(report)
    }
}

/// Queues at once if there is room, else on a task that waits for it: the
/// caller never blocks (it may be on a runtime thread) and nothing is lost.
trait SendNowOrLater {
    fn send_now_or_later(&self, v: ShardInput) -> Result<(), ()>;
}

impl SendNowOrLater for mpsc::Sender<ShardInput> {
    fn send_now_or_later(&self, v: ShardInput) -> Result<(), ()> {
        match self.try_send(v) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(v)) => {
                let tx = self.clone();
                tokio::spawn(async move {
                    let _ = tx.send(v).await;
                });
                Ok(())
            }
            Err(_) => Err(()),
        }
    }
}

async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        shared.flood.sweep();
        n += 1;
        if n % 6 == 0 {
            let inv = shared.inventory.clone();
            let res = tokio::task::spawn_blocking(move || inv.expire(unix_now())).await;
            if let Ok(Ok(k)) = res {
                if k > 0 {
                    tracing::info!(numbers = k, "released numbers past the 7-day window removed");
                }
            }
        }
    }
}

#[cfg(unix)]
async fn sighup(shared: Arc<Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
    while hup.recv().await.is_some() {
        // logrotate's contract: the file was renamed, write a new one.
        shared.records.reopen();
        let s = shared.clone();
        let res = tokio::task::spawn_blocking(move || s.reload()).await;
        match res {
            Ok(Ok(_)) => tracing::info!("SIGHUP: config reloaded"),
            Ok(Err(e)) => tracing::error!("SIGHUP: config refused, running config kept:\n{e}"),
            Err(_) => {}
        }
    }
}
