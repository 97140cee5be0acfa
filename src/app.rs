//! Wiring: config → shared state → shards, TCP, control plane; shutdown.
//! `run` is bind → spawn shards → serve → shut down; the state they share is
//! in `state`, what a config becomes (at start and on reload) in `reload`.

use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

use crate::admission::Admission;
use crate::config::{Config, ConfigErrors};
use crate::inventory::{Inventory, InventoryError};
use crate::proxy::token::Sealer;
use crate::proxy::{CallRate, Core, CoreShared, DownSet, Local, LocalAddr};
use crate::records::Records;
use crate::reload::{flood_settings, peers_from_config};
use crate::routing::ClaimSpec;
use crate::sip::{Transport, E164};
use crate::state::{instance_nonce, unix_now, Bound, Shared};
use crate::transport::flood::FloodGuard;
use crate::transport::shard::{Shard, UdpListener, SHARD_QUEUE};
use crate::transport::tcp::{TcpHub, TcpLimits};
use crate::transport::{udp, ShardInput};

/// How long shutdown waits for the last call records to reach the file.
const RECORDS_SETTLE: Duration = Duration::from_secs(2);
/// How long a shard's runtime, and at the end the process, stays up after
/// the final BYEs are queued, so the TCP writers get them onto the wire.
const BYE_FLUSH: Duration = Duration::from_millis(50);
/// How long shutdown waits for the shard threads to end their calls.
const SHARD_JOIN_TIMEOUT: Duration = Duration::from_secs(3);
/// The kernel's queue of TCP connections not yet accepted, per listener.
const TCP_ACCEPT_BACKLOG: i32 = 1024;
/// The shortest TCP connect timeout, whatever `timers.failover_ms` says.
const TCP_CONNECT_TIMEOUT_MIN: Duration = Duration::from_millis(100);
/// How often housekeeping sweeps the flood table.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(10);
/// Every this many housekeeping rounds (a minute), released numbers past
/// their 7-day window are removed.
const EXPIRE_EVERY_ROUNDS: u64 = 6;
/// How often a drain checks whether the last call has ended.
const DRAIN_POLL: Duration = Duration::from_millis(50);

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
    /// `[cluster] redis_url` could not be used.
    #[error("cluster.redis_url: {0}")]
    Cluster(redis::RedisError),
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

/// Every listener, bound before anything starts: a port in use fails the
/// start, and port 0 resolves to the address Via and Record-Route name.
struct Listeners {
    /// Per shard, its socket of each UDP listener (one SO_REUSEPORT group per
    /// listener); every shard reads all of its sockets and sends from the one
    /// of the peer's family.
    /// Each socket with its `[[listen]]` index.
    udp: Vec<Vec<(u16, std::net::UdpSocket)>>,
    /// Stream listeners, each with its `[[listen]]` index, and its configured
    /// address when it speaks TLS.
    tcp: Vec<(tokio::net::TcpListener, u16, Option<SocketAddr>)>,
    admin: tokio::net::TcpListener,
    bound: Bound,
    local: Local,
}

/// What every shard thread holds a handle to.
#[derive(Clone)]
struct ShardLinks {
    inputs: Vec<mpsc::Sender<ShardInput>>,
    hub: Arc<TcpHub>,
    flood: Arc<FloodGuard>,
    hasher: ahash::RandomState,
    shutdown: watch::Receiver<bool>,
    records: Records,
    cluster: Option<Arc<crate::cluster::ClusterLink>>,
    drain: Arc<crate::drain::Drain>,
}

/// Runs the edge until told to stop: bind every listener, spawn one shard
/// per worker, serve (TCP accept, control plane, housekeeping), shut down.
/// A closed `stops` channel stops the edge at once.
pub async fn run(cfg: Config, mut stops: mpsc::UnboundedReceiver<Stop>) -> Result<(), AppError> {
    let prometheus = prometheus();
    let peers = Arc::new(peers_from_config(&cfg));
    let ignores_seed = Inventory::ignores_seed(&cfg.resolve(&cfg.edge.data_dir))?;
    let seed = if ignores_seed { None } else { seed_of(&cfg)? };
    let admin_token = crate::token::load_token(&cfg).map_err(ConfigErrors::from)?;
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
    let listeners = bind(&cfg, workers).await?;

    let nonce = instance_nonce();
    let sealer = Arc::new(Sealer { key, boot: boot_id(nonce) });
    let core_cfg = Arc::new(crate::proxy::CoreConfig::from_config(&cfg, &listeners.local, nonce, sealer.clone()));
    let hasher = ahash::RandomState::with_seeds(0x5eed, 0xed6e, 0x51b, 0xca11);
    let hub = TcpHub::new(tcp_limits(&cfg), hasher.clone(), flood.clone());
    hub.set_listeners(listeners.bound.sip.clone());
    let tls = crate::transport::tls::TlsSettings::load(&cfg)?;
    tls.report_expiry();
    hub.tls().store(tls);

    let (stop_tx, shutdown) = watch::channel(false);
    let (inputs, receivers): (Vec<_>, Vec<_>) = (0..workers).map(|_| mpsc::channel(SHARD_QUEUE)).unzip();
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
    let links = ShardLinks { inputs, hub, flood, hasher, shutdown, records, cluster, drain };
    let Listeners { udp, tcp, admin, bound, local } = listeners;
    let shard_threads =
        spawn_shards(&links, udp, receivers, |i| Core::new(i as u32, core_cfg.clone(), core_shared.clone(), now))?;
    for (l, index, tls_addr) in tcp {
        tokio::spawn(links.hub.clone().accept_loop(l, index, tls_addr));
    }

    let shared = Arc::new(Shared {
        config: ArcSwap::from_pointee(cfg.clone()),
        config_path: cfg.source_path.clone(),
        inventory,
        routing,
        admission,
        down,
        flood: links.flood.clone(),
        shards: links.inputs.clone(),
        prometheus,
        local,
        bound,
        tcp: links.hub.clone(),
        admin_token: arc_swap::ArcSwapOption::from_pointee(admin_token),
        records: links.records.clone(),
        cluster: links.cluster.clone(),
        drain: links.drain.clone(),
        sealer,
        reload_lock: std::sync::Mutex::new(()),
    });
    serve(admin, &shared, workers);

    wait_for_stop(&links.drain, &mut stops, Duration::from_secs(cfg.edge.drain_timeout_s)).await;
    shut_down(stop_tx, shard_threads, links.records).await;
    Ok(())
}

/// Binds every `[[listen]]` (one UDP socket per shard each) and the control plane.
async fn bind(cfg: &Config, workers: usize) -> Result<Listeners, AppError> {
    let mut bound = Bound::default();
    let mut udp_socks: Vec<Vec<(u16, std::net::UdpSocket)>> = (0..workers).map(|_| Vec::new()).collect();
    let mut tcp = Vec::new();
    let mut local = Local::default();
    for (index, l) in cfg.listen.iter().enumerate() {
        // `Peer::listener` is a u16: past 65,535 listeners (no host binds
        // that many sockets) the index saturates and names the wrong one.
        let index = u16::try_from(index).unwrap_or(u16::MAX);
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
                    shard.push((index, s));
                }
                actual
            }
            Transport::Tcp | Transport::Tls => {
                let listener = bind_tcp(l.addr).map_err(|source| AppError::Bind {
                    transport: l.transport.as_str(),
                    addr: l.addr,
                    source,
                })?;
                let actual = listener.local_addr().unwrap_or(l.addr);
                // A TLS listener's accept loop finds its certificate by the
                // configured address, which a reload that reorders the
                // listeners does not change.
                tcp.push((listener, index, (l.transport == Transport::Tls).then_some(l.addr)));
                actual
            }
        };
        match l.transport {
            Transport::Udp => bound.udp = bound.udp.or(Some(actual)),
            Transport::Tcp => bound.tcp = bound.tcp.or(Some(actual)),
            Transport::Tls => {}
        }
        bound.sip.push((l.transport, actual));
        local.listeners.push(LocalAddr {
            transport: l.transport,
            v6: actual.is_ipv6(),
            host_port: advertise(cfg, actual),
        });
    }
    let admin = tokio::net::TcpListener::bind(cfg.admin.addr).await.map_err(|source| AppError::Bind {
        transport: "admin http",
        addr: cfg.admin.addr,
        source,
    })?;
    bound.admin = admin.local_addr().ok();
    Ok(Listeners { udp: udp_socks, tcp, admin, bound, local })
}

/// The boot id sealed into our Record-Route tokens: one of ours whose dialog
/// is gone is a call that ended, not one a restart forgot. Random, not
/// time ^ pid (a container restarts as pid 1 within a second); the nonce
/// only if the OS has no randomness.
fn boot_id(nonce: u32) -> u32 {
    let mut boot = nonce.to_be_bytes();
    let _ = getrandom::getrandom(&mut boot);
    u32::from_be_bytes(boot)
}

fn tcp_limits(cfg: &Config) -> TcpLimits {
    let t = &cfg.tcp;
    TcpLimits {
        max_connections: t.max_connections,
        max_per_ip: t.max_per_ip,
        max_message_bytes: t.max_message_bytes,
        max_header_bytes: t.max_header_bytes,
        idle_timeout: Duration::from_secs(t.idle_timeout_s),
        message_deadline: Duration::from_millis(t.message_deadline_ms),
        connect_timeout: Duration::from_millis(cfg.timers.failover_ms).max(TCP_CONNECT_TIMEOUT_MIN),
        tls_handshake_timeout: Duration::from_millis(t.tls_handshake_timeout_ms),
    }
}

/// Starts one thread per shard, each with its UDP sockets and its queue.
/// Each shard runs on its own OS thread with a current-thread runtime: a
/// call's messages never hop between threads and no work-stealing wake-ups
/// are paid per message (measured: tools/load, docs/PERFORMANCE.md).
fn spawn_shards(
    links: &ShardLinks,
    udp_socks: Vec<Vec<(u16, std::net::UdpSocket)>>,
    receivers: Vec<mpsc::Receiver<ShardInput>>,
    core: impl Fn(usize) -> Core,
) -> Result<Vec<std::thread::JoinHandle<()>>, AppError> {
    let mut threads = Vec::new();
    let mut udp_socks = udp_socks.into_iter();
    for (i, rx) in receivers.into_iter().enumerate() {
        let core = core(i);
        let socks = udp_socks.next().unwrap_or_default();
        let ShardLinks { inputs, hub, flood, hasher, shutdown, records, cluster, drain } = links.clone();
        let thread = std::thread::Builder::new().name(format!("sipedge-shard-{i}")).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(shard = i, error = %e, "shard runtime failed to start"),
            };
            rt.block_on(async move {
                let udp = socks.into_iter().map(|(index, s)| {
                    tokio::net::UdpSocket::from_std(s).and_then(|s| UdpListener::new(index, Arc::new(s)))
                });
                let udp = match udp.collect() {
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
                    shutdown,
                    records,
                    cluster,
                    drain,
                };
                shard.run().await;
                // TCP writers spawned on this runtime get the final BYEs out.
                tokio::time::sleep(BYE_FLUSH).await;
            });
        });
        match thread {
            Ok(t) => threads.push(t),
            Err(source) => return Err(AppError::Thread(source)),
        }
    }
    Ok(threads)
}

/// Starts the control plane, housekeeping and the SIGHUP handler, and says
/// where the edge listens.
fn serve(admin: tokio::net::TcpListener, shared: &Arc<Shared>, workers: usize) {
    tokio::spawn(crate::admin::serve(admin, shared.clone()));
    tokio::spawn(housekeeping(shared.clone()));
    #[cfg(unix)]
    tokio::spawn(sighup(shared.clone()));

    for (t, a) in &shared.bound.sip {
        tracing::info!("listening for {} on {a}", t.via_name());
    }
    if let Some(a) = shared.bound.admin {
        tracing::info!("control plane on http://{a}");
    }
    let cfg = shared.config.load();
    tracing::info!(edge = %cfg.edge.name, az = %cfg.edge.az, workers, numbers = shared.routing.load().len(), "sipedge ready");
}

/// Tells every shard to end its calls (BYE both ways), waits for them a
/// bounded time, then for the call records and the last TCP writes.
async fn shut_down(stop: watch::Sender<bool>, shard_threads: Vec<std::thread::JoinHandle<()>>, records: Records) {
    tracing::info!("shutting down: ending calls");
    let _ = stop.send(true);
    let joined = tokio::task::spawn_blocking(move || {
        for t in shard_threads {
            let _ = t.join();
        }
    });
    let _ = tokio::time::timeout(SHARD_JOIN_TIMEOUT, joined).await;
    // The records of the calls just ended reach the file before we exit.
    let _ = tokio::task::spawn_blocking(move || records.settle(RECORDS_SETTLE)).await;
    // TCP writers get the final BYEs out.
    tokio::time::sleep(BYE_FLUSH).await;
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
        let (mut was_down, mut first) = (false, true);
        while let Some(inv) = weak.upgrade() {
            match inv.sync() {
                Ok(_) if was_down || first => {
                    first = false;
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
    let mut tick = tokio::time::interval(DRAIN_POLL);
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
    socket.listen(TCP_ACCEPT_BACKLOG)?;
    tokio::net::TcpListener::from_std(socket.into())
}

async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        shared.flood.sweep();
        n += 1;
        if n % EXPIRE_EVERY_ROUNDS == 0 {
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
