//! Applying a config to the running edge: the settings each part takes from
//! the config (the same functions at start and on reload, so the two cannot
//! drift) and [`Shared::reload`], which swaps them in for new calls.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::config::{Cidr, Config, ConfigErrors, FloodAction};
use crate::proxy::CoreConfig;
use crate::routing::{CarrierPeers, PeerLink, Peers};
use crate::sip::Transport;
use crate::state::{instance_nonce, Shared};
use crate::transport::flood::{Exempt, FloodSettings};
use crate::transport::ShardInput;

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

/// Flood control's settings and the peers it never bans.
pub fn flood_settings(cfg: &Config) -> (FloodSettings, Exempt) {
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
        let token = crate::token::load_token(&new).map_err(ConfigErrors::from)?;
        // Certificates are re-read; a bad one refuses the reload and keeps the old.
        let tls = crate::transport::tls::TlsSettings::load(&new)?;
        let old = self.config.load_full();
        let mut report = ReloadReport::default();
        // Certificate paths may change on reload; sockets need a restart.
        let sockets = |c: &Config| c.listen.iter().map(|l| (l.transport, l.addr)).collect::<Vec<_>>();
        if sockets(&new) != sockets(&old) {
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
        let nonce = instance_nonce();
        // The dialog key is read once: the tokens of calls up now were sealed under it.
        if new.edge.dialog_key_file != old.edge.dialog_key_file {
            report.needs_restart.push("edge.dialog_key_file".into());
        }
        let mut core_cfg = CoreConfig::from_config(&new, &self.local, nonce, self.sealer.clone());
        // Records stay as the writer started: on with a path, off without.
        core_cfg.records = self.records.is_on();
        // Cluster mode stays as it started; its timeout and policy follow the file.
        if new.cluster.redis_url != old.cluster.redis_url {
            report.needs_restart.push("cluster.redis_url".into());
            core_cfg.cluster = CoreConfig::from_config(&old, &self.local, nonce, self.sealer.clone()).cluster;
        }
        let core_cfg = Arc::new(core_cfg);
        for s in &self.shards {
            // A full queue must not lose a reload: the send waits for room on a task.
            let _ = s.send_now_or_later(ShardInput::Config(core_cfg.clone()));
        }
        if let Some(addr) = self.bound.admin {
            crate::token::warn_if_exposed(addr, token.is_some());
        }
        self.admin_token.store(token.map(Arc::new));
        tls.report_expiry();
        self.tcp.tls().store(tls);
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
