//! OPTIONS health probes of every next hop (shard 0 only). Any answer counts
//! as alive; no answer within the probe timeout, or a send error, as a failure.
//! The damped up/down state lives in `failover::Health`; the hops it reports
//! down are published to every shard through the shared `DownSet`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::context::{CoreConfig, DownSet};
use super::timer::{Fired, Owner, Slot, Timer};
use super::{Core, Peer};
use crate::failover::{Health, HopKey};
use crate::sip::{build, Method};

/// Call-ID prefix of probes: the driver sends their answers to shard 0.
pub const PROBE_CALL_ID_PREFIX: &str = "hc-";

/// The prober's state.
pub(super) struct Prober {
    health: Health,
    inflight: HashMap<Box<str>, (HopKey, Instant)>,
    interval: Duration,
    timeout: Duration,
    seq: u64,
}

impl Prober {
    /// A prober with `[health]` and `failover_ms` from `cfg`.
    pub fn new(cfg: &CoreConfig) -> Prober {
        Prober {
            health: Health::new(cfg.probe_interval, cfg.down_after, cfg.up_after),
            inflight: HashMap::new(),
            interval: cfg.probe_interval,
            timeout: Self::timeout_of(cfg),
            seq: 0,
        }
    }

    fn timeout_of(cfg: &CoreConfig) -> Duration {
        cfg.timers.failover.min(cfg.probe_interval).max(Duration::from_millis(50))
    }

    /// New `[health]` parameters (reload); hop states are kept.
    pub fn set_params(&mut self, cfg: &CoreConfig) {
        self.health.set_params(cfg.probe_interval, cfg.down_after, cfg.up_after);
        self.interval = cfg.probe_interval;
        self.timeout = Self::timeout_of(cfg);
    }

    fn publish(&self, down: &DownSet) {
        let set: HashSet<HopKey> = self.health.snapshot().into_iter().filter(|(_, up)| !up).map(|(k, _)| k).collect();
        down.publish(set);
    }

    fn record(&mut self, key: &HopKey, ok: bool, down: &DownSet) {
        // `Health` logs every up/down change itself; here it is only published.
        if self.health.record(key, ok).is_some() {
            self.publish(down);
        }
    }

    /// An answer to a probe. Returns whether the branch was one of ours.
    pub fn on_response(&mut self, branch: &str, down: &DownSet) -> bool {
        match self.inflight.remove(branch) {
            Some((key, _)) => {
                self.record(&key, true, down);
                true
            }
            None => false,
        }
    }

    /// The probe with `branch` could not be sent: it failed.
    pub fn on_send_error(&mut self, branch: &str, down: &DownSet) {
        if let Some((key, _)) = self.inflight.remove(branch) {
            self.record(&key, false, down);
        }
    }

    /// `addr` is unreachable (ICMP): its probes in flight failed.
    pub fn on_unreachable(&mut self, addr: std::net::SocketAddr, down: &DownSet) {
        let failed: Vec<Box<str>> =
            self.inflight.iter().filter(|(_, (k, _))| k.addr == addr).map(|(b, _)| b.clone()).collect();
        for b in failed {
            self.on_send_error(&b, down);
        }
    }
}

impl Core {
    /// The probe timer: send the probes that are due, expire those unanswered.
    pub(super) fn probe_timer(&mut self, now: Instant, f: Fired) {
        let Some(mut p) = self.probes.take() else { return };
        match f.timer {
            Timer::Probe => {
                let snap = self.routing.load_full();
                self.hops.refresh(&snap.peers);
                let keys = self.hops.carriers.iter().flatten().chain(self.hops.flow.iter()).map(|c| c.key.clone());
                p.health.sync_hops(keys, now);
                for key in p.health.due_probes(now) {
                    p.seq += 1;
                    let branch = format!("z9hG4bK-sep{:x}-{:x}", self.cfg.instance_nonce, p.seq);
                    let via = self.via(Peer::to(key.addr, key.transport), &branch);
                    let local = self.cfg.local.host_port(key.transport, key.addr.is_ipv6()).to_string();
                    let bytes = build::request(
                        Method::Options,
                        &format!("sip:{}", key.addr),
                        &via,
                        &format!("<sip:sipedge@{local}>;tag=p{:x}", p.seq),
                        &format!("<sip:{}>", key.addr),
                        &format!("{PROBE_CALL_ID_PREFIX}{:x}-{:x}", self.cfg.instance_nonce, p.seq),
                        1,
                        &[],
                    );
                    self.send(Peer::to(key.addr, key.transport), bytes);
                    p.inflight.insert(branch.into_boxed_str(), (key, now + p.timeout));
                }
                self.timers.arm(now, p.timeout, Owner::Core, Timer::ProbeTimeout, Slot::Whole);
                let next = p.health.next_due().map(|t| t.saturating_duration_since(now)).unwrap_or(p.interval);
                self.timers.arm(now, next.max(Duration::from_millis(10)), Owner::Core, Timer::Probe, Slot::Whole);
            }
            Timer::ProbeTimeout => {
                let expired: Vec<Box<str>> =
                    p.inflight.iter().filter(|(_, (_, at))| *at <= now).map(|(b, _)| b.clone()).collect();
                for b in expired {
                    if let Some((key, _)) = p.inflight.remove(&b) {
                        p.record(&key, false, &self.down);
                    }
                }
            }
            _ => {}
        }
        self.probes = Some(p);
    }
}
