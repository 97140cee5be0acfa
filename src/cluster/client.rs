//! The task that talks to Redis for the shards: admits and releases batched
//! into one pipelined round trip, leases renewed every third of the TTL, and
//! a circuit breaker so a dead Redis costs one timeout a second, not one per
//! call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::backend::Backend;

use super::scripts::{self, INSTANCES_KEY};
use super::{ClusterView, Lease, Op, Queues, Verdict};
use crate::metrics as m;
use crate::transport::ShardInput;

/// Requests taken off the queue for one round trip.
const MAX_BATCH: usize = 512;

/// Leases renewed (or released) per pipeline.
const RENEW_CHUNK: usize = 1024;

/// Releases wait at most this long for an admit batch to ride with.
const RELEASE_TICK: Duration = Duration::from_millis(20);

/// After a failed round trip, admits skip Redis this long (then one is tried again).
const BREAKER_OPEN: Duration = Duration::from_secs(1);

/// How the task runs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `[cluster] redis_url`.
    pub url: String,
    /// This instance's name (member of the instances set).
    pub instance: String,
    /// `[cluster] lease_ttl_ms`.
    pub lease_ttl: Duration,
    /// `[cluster] admit_timeout_ms`.
    pub admit_timeout: Duration,
}

/// The leases this instance holds, by member: what renewal renews, and what
/// it releases once their call is gone (even if the release itself was lost).
type Registry = Arc<Mutex<HashMap<Box<str>, (Weak<Lease>, Box<str>)>>>;

/// The loaded scripts' hashes.
struct Scripts {
    admit: redis::Script,
    renew: redis::Script,
    release: redis::Script,
    heartbeat: redis::Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            admit: redis::Script::new(scripts::ADMIT),
            renew: redis::Script::new(scripts::RENEW),
            release: redis::Script::new(scripts::RELEASE),
            heartbeat: redis::Script::new(scripts::HEARTBEAT),
        }
    }
}

/// Every script's source: loaded again when Redis answers NOSCRIPT.
const SOURCES: [&str; 4] = [scripts::ADMIT, scripts::RENEW, scripts::RELEASE, scripts::HEARTBEAT];

fn evalsha<'a>(p: &'a mut redis::Pipeline, s: &redis::Script, key: &str) -> &'a mut redis::Pipeline {
    p.cmd("EVALSHA").arg(s.get_hash()).arg(1).arg(key)
}

/// Starts the admit and renewal tasks on the current runtime. The URL is
/// only parsed here; the connection is made lazily and re-made on failure.
pub fn start(
    settings: Settings,
    view: Arc<ClusterView>,
    queues: Queues,
    shards: Vec<mpsc::Sender<ShardInput>>,
) -> redis::RedisResult<()> {
    let connect = settings.admit_timeout.max(Duration::from_millis(200));
    let con = Backend::open(&settings.url, connect, settings.lease_ttl / 3)?;
    let registry: Registry = Arc::default();
    let scripts = Arc::new(Scripts::new());
    tokio::spawn(admit_loop(
        settings.clone(),
        con.clone(),
        scripts.clone(),
        registry.clone(),
        view.clone(),
        queues,
        shards,
    ));
    tokio::spawn(renew_loop(settings, con, scripts, registry, view));
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn admit_loop(
    settings: Settings,
    mut con: Backend,
    scripts: Arc<Scripts>,
    registry: Registry,
    view: Arc<ClusterView>,
    queues: Queues,
    shards: Vec<mpsc::Sender<ShardInput>>,
) {
    let Queues { admits: mut rx, releases } = queues;
    let mut tick = tokio::time::interval(RELEASE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = u64::try_from(settings.lease_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut open_until: Option<Instant> = None;
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        batch.clear();
        tokio::select! {
            op = rx.recv() => match op {
                Some(op) => batch.push(op),
                None => return,
            },
            _ = tick.tick() => {}
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        while batch.len() < MAX_BATCH * 2 {
            match releases.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        // (shard, call) of the admits, in pipeline order.
        let mut asks: Vec<(usize, u64)> = Vec::new();
        // Per pipeline command: whether it is an admit (releases are mixed in).
        let mut is_admit: Vec<bool> = Vec::new();
        let mut p = redis::pipe();
        {
            let mut reg = registry.lock().unwrap_or_else(|e| e.into_inner());
            for op in batch.drain(..) {
                match op {
                    Op::Admit(req) => {
                        // A call that ended before we got here needs no slot.
                        let Some(lease) = req.lease.upgrade() else { continue };
                        reg.insert(lease.member.clone(), (req.lease.clone(), lease.key.clone()));
                        evalsha(&mut p, &scripts.admit, &lease.key).arg(&*lease.member).arg(req.cap).arg(ttl);
                        asks.push((req.shard, req.call));
                        is_admit.push(true);
                    }
                    Op::Release { key, member } => {
                        // Stays registered: the sweep releases it again if this fails.
                        evalsha(&mut p, &scripts.release, &key).arg(&*member);
                        is_admit.push(false);
                    }
                }
            }
        }
        let answer = |verdicts: &mut dyn Iterator<Item = Verdict>| {
            for ((shard, call), v) in asks.iter().zip(verdicts) {
                if let Some(tx) = shards.get(*shard) {
                    // A full shard queue: the core's admit timer applies the policy.
                    let _ = tx.try_send(ShardInput::Admit(*call, v));
                }
            }
        };
        if is_admit.is_empty() {
            continue;
        }
        if open_until.is_some_and(|t| Instant::now() < t) {
            answer(&mut std::iter::repeat(Verdict::Unknown));
            continue;
        }
        let started = Instant::now();
        let res = tokio::time::timeout(settings.admit_timeout, con.run(&p, &SOURCES)).await;
        match res {
            Ok(Ok(results)) => {
                open_until = None;
                if !view.is_up() {
                    tracing::info!("cluster: Redis reachable");
                }
                view.set_up(true);
                metrics::histogram!(m::CLUSTER_ADMIT_SECONDS).record(started.elapsed().as_secs_f64());
                // Pick the admits' replies out of the pipeline's, in order.
                let mut adm = results.into_iter().zip(&is_admit).filter(|(_, a)| **a).map(|(r, _)| r);
                answer(&mut std::iter::from_fn(|| {
                    adm.next().map(|r| if r == 1 { Verdict::Admitted } else { Verdict::Refused })
                }));
            }
            Ok(Err(e)) => {
                trip(&view, &mut open_until, &e.to_string());
                answer(&mut std::iter::repeat(Verdict::Unknown));
            }
            Err(_) => {
                trip(&view, &mut open_until, "admit timed out");
                answer(&mut std::iter::repeat(Verdict::Unknown));
            }
        }
    }
}

fn trip(view: &ClusterView, open_until: &mut Option<Instant>, why: &str) {
    if view.is_up() || open_until.is_none() {
        tracing::warn!(error = why, "cluster: Redis unreachable: admitting by on_backend_down until it answers");
    }
    view.set_up(false);
    *open_until = Some(Instant::now() + BREAKER_OPEN);
}

async fn renew_loop(
    settings: Settings,
    mut con: Backend,
    scripts: Arc<Scripts>,
    registry: Registry,
    view: Arc<ClusterView>,
) {
    let ttl = u64::try_from(settings.lease_ttl.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(settings.lease_ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut p = redis::pipe();
        evalsha(&mut p, &scripts.heartbeat, INSTANCES_KEY).arg(&settings.instance).arg(ttl);
        let alive = match tokio::time::timeout(settings.lease_ttl / 3, con.run(&p, &SOURCES)).await {
            Ok(Ok(r)) => r.first().copied().unwrap_or(1),
            Ok(Err(e)) => {
                fail_renew(&view, &e.to_string());
                continue;
            }
            Err(_) => {
                fail_renew(&view, "heartbeat timed out");
                continue;
            }
        };
        view.set_alive(u32::try_from(alive).unwrap_or(u32::MAX));
        view.set_up(true);
        // Live leases are renewed (and written back if Redis lost them); the
        // leases of calls that are gone are released.
        let (live, dead): (Vec<_>, Vec<_>) = {
            let reg = registry.lock().unwrap_or_else(|e| e.into_inner());
            metrics::gauge!(m::CLUSTER_LEASES).set(reg.len() as f64);
            reg.iter()
                .map(|(member, (weak, key))| (member.clone(), key.clone(), weak.strong_count() > 0))
                .partition(|(_, _, alive)| *alive)
        };
        let mut released = Vec::new();
        for chunk in live.chunks(RENEW_CHUNK) {
            let mut p = redis::pipe();
            for (member, key, _) in chunk {
                evalsha(&mut p, &scripts.renew, key).arg(&**member).arg(ttl);
            }
            if let Err(e) = con.run(&p, &SOURCES).await {
                fail_renew(&view, &e.to_string());
                break;
            }
        }
        for chunk in dead.chunks(RENEW_CHUNK) {
            let mut p = redis::pipe();
            for (member, key, _) in chunk {
                evalsha(&mut p, &scripts.release, key).arg(&**member);
            }
            match con.run(&p, &SOURCES).await {
                Ok(_) => released.extend(chunk.iter().map(|(m, _, _)| m.clone())),
                Err(e) => {
                    fail_renew(&view, &e.to_string());
                    break;
                }
            }
        }
        let mut reg = registry.lock().unwrap_or_else(|e| e.into_inner());
        for m in released {
            // Only if still dead: a member is never reused, but be exact.
            if reg.get(&m).is_some_and(|(w, _)| w.strong_count() == 0) {
                reg.remove(&m);
            }
        }
    }
}

fn fail_renew(view: &ClusterView, why: &str) {
    if view.is_up() {
        tracing::warn!(error = why, "cluster: lease renewal failed; retrying next period");
    }
    view.set_up(false);
}
