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
use crate::admission::TrunkReject;
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

/// The leases this instance holds, by (set, member): what renewal renews, and
/// what it releases once their call is gone (even if the release itself was
/// lost). A call's number and carrier leases share the member, not the set.
type Registry = Arc<Mutex<HashMap<(Box<str>, Box<str>), Weak<Lease>>>>;

/// The loaded scripts' hashes.
struct Scripts {
    admit: redis::Script,
    carrier: redis::Script,
    refund: redis::Script,
    renew: redis::Script,
    release: redis::Script,
    heartbeat: redis::Script,
}

impl Scripts {
    fn new() -> Scripts {
        Scripts {
            admit: redis::Script::new(scripts::ADMIT),
            carrier: redis::Script::new(scripts::CARRIER_ADMIT),
            refund: redis::Script::new(scripts::CARRIER_REFUND),
            renew: redis::Script::new(scripts::RENEW),
            release: redis::Script::new(scripts::RELEASE),
            heartbeat: redis::Script::new(scripts::HEARTBEAT),
        }
    }
}

/// Every script's source: loaded again when Redis answers NOSCRIPT.
const SOURCES: [&str; 6] = [
    scripts::ADMIT,
    scripts::CARRIER_ADMIT,
    scripts::CARRIER_REFUND,
    scripts::RENEW,
    scripts::RELEASE,
    scripts::HEARTBEAT,
];

fn evalsha<'a>(p: &'a mut redis::Pipeline, s: &redis::Script, key: &str) -> &'a mut redis::Pipeline {
    p.cmd("EVALSHA").arg(s.get_hash()).arg(1).arg(key)
}

/// What one admit reply answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    /// A release (its reply is not read).
    Release,
    /// The number of the `n`th admit request.
    Number(usize),
    /// The carrier of the `n`th admit request.
    Carrier(usize),
}

/// Registers `ask`'s lease for renewal (a carrier with a rate only has none)
/// and returns it, or none if its call has ended.
fn register(reg: &mut HashMap<(Box<str>, Box<str>), Weak<Lease>>, ask: &super::Ask) -> Option<Arc<Lease>> {
    let lease = ask.lease.upgrade()?;
    if ask.cap > 0 {
        reg.insert((lease.key.clone(), lease.member.clone()), ask.lease.clone());
    }
    Some(lease)
}

/// The verdict of one request from its replies: the number's (if asked)
/// and the carrier's (if asked); a part whose call ended counts as admitted.
fn verdict(number: Option<i64>, carrier: Option<i64>) -> Verdict {
    match (number, carrier) {
        (Some(0), _) => Verdict::Refused,
        (_, Some(0)) => Verdict::TrunkRefused(TrunkReject::MaxConcurrent),
        (_, Some(r)) if r < 0 => Verdict::TrunkRefused(TrunkReject::MaxCps),
        _ => Verdict::Admitted,
    }
}

/// Whether a request's carrier rate token goes back: the carrier admitted
/// the call (spending a token) but its number refused it.
fn refunds(number: Option<i64>, carrier: Option<i64>) -> bool {
    number == Some(0) && carrier == Some(1)
}

/// Sends the refunds of `rates` (per request: the carrier's arrival-time key
/// and interval, if it has a rate) whose replies say so; fire and forget, so
/// no call waits on it. A lost refund costs one token, as before.
fn send_refunds(
    con: &Backend,
    scripts: &Scripts,
    timeout: Duration,
    rates: &[Option<(String, u64)>],
    replies: &[(Option<i64>, Option<i64>)],
) {
    let mut p = redis::pipe();
    let mut any = false;
    for (rate, (n, c)) in rates.iter().zip(replies) {
        if let Some((tat, interval)) = rate.as_ref().filter(|_| refunds(*n, *c)) {
            evalsha(&mut p, &scripts.refund, tat).arg(*interval);
            any = true;
        }
    }
    if !any {
        return;
    }
    let mut con = con.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(timeout, con.run(&p, &SOURCES)).await;
    });
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

#[allow(clippy::too_many_arguments)] // the task's whole state, handed over once at spawn
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
        // (shard, call) of the admits, in request order.
        let mut asks: Vec<(usize, u64)> = Vec::new();
        // Per admit: its carrier's arrival-time key and interval, when it has a rate.
        let mut rates: Vec<Option<(String, u64)>> = Vec::new();
        // Per pipeline command: what its reply answers (releases are mixed in).
        let mut parts: Vec<Part> = Vec::new();
        let mut p = redis::pipe();
        {
            let mut reg = registry.lock().unwrap_or_else(|e| e.into_inner());
            for op in batch.drain(..) {
                match op {
                    Op::Admit(req) => {
                        let n = asks.len();
                        let before = parts.len();
                        let mut rate = None;
                        // A call that ended before we got here needs no slot.
                        if let Some(lease) = req.number.as_ref().and_then(|a| register(&mut reg, a)) {
                            let cap = req.number.as_ref().map_or(0, |a| a.cap);
                            evalsha(&mut p, &scripts.admit, &lease.key).arg(&*lease.member).arg(cap).arg(ttl);
                            parts.push(Part::Number(n));
                        }
                        if let Some((ask, lease)) = req.carrier.as_ref().and_then(|a| Some((a, register(&mut reg, a)?)))
                        {
                            let interval = if ask.cps == 0 { 0 } else { 1_000_000 / u64::from(ask.cps) };
                            p.cmd("EVALSHA")
                                .arg(scripts.carrier.get_hash())
                                .arg(2)
                                .arg(&*lease.key)
                                .arg(scripts::tat_key(&lease.key))
                                .arg(&*lease.member)
                                .arg(ask.cap)
                                .arg(ttl)
                                .arg(interval);
                            parts.push(Part::Carrier(n));
                            if interval > 0 && req.number.is_some() {
                                rate = Some((scripts::tat_key(&lease.key), interval));
                            }
                        }
                        if parts.len() > before {
                            asks.push((req.shard, req.call));
                            rates.push(rate);
                        }
                    }
                    Op::Release { key, member } => {
                        // Stays registered: the sweep releases it again if this fails.
                        evalsha(&mut p, &scripts.release, &key).arg(&*member);
                        parts.push(Part::Release);
                    }
                }
            }
        }
        let answer = |verdicts: &mut dyn Iterator<Item = Verdict>| {
            for ((shard, call), v) in asks.iter().zip(verdicts) {
                // A full shard queue: the core's admit timer applies the policy.
                crate::transport::offer(&shards, *shard, ShardInput::Admit(*call, v));
            }
        };
        if parts.is_empty() {
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
                // Each request's replies, picked out of the pipeline's.
                let mut replies = vec![(None, None); asks.len()];
                for (r, part) in results.into_iter().zip(&parts) {
                    match *part {
                        Part::Number(n) => replies.get_mut(n).into_iter().for_each(|x| x.0 = Some(r)),
                        Part::Carrier(n) => replies.get_mut(n).into_iter().for_each(|x| x.1 = Some(r)),
                        Part::Release => {}
                    }
                }
                send_refunds(&con, &scripts, settings.admit_timeout, &rates, &replies);
                answer(&mut replies.into_iter().map(|(n, c)| verdict(n, c)));
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
                .map(|((key, member), weak)| (member.clone(), key.clone(), weak.strong_count() > 0))
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
                Ok(_) => released.extend(chunk.iter().map(|(m, k, _)| (k.clone(), m.clone()))),
                Err(e) => {
                    fail_renew(&view, &e.to_string());
                    break;
                }
            }
        }
        let mut reg = registry.lock().unwrap_or_else(|e| e.into_inner());
        for k in released {
            // Only if still dead: a member is never reused, but be exact.
            if reg.get(&k).is_some_and(|w| w.strong_count() == 0) {
                reg.remove(&k);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_carrier_token_spent_on_a_refused_number_goes_back() {
        assert!(refunds(Some(0), Some(1)));
        assert!(!refunds(Some(1), Some(1)), "admitted: the token is spent");
        assert!(!refunds(Some(0), Some(0)), "max_concurrent spent nothing");
        assert!(!refunds(Some(0), Some(-1)), "max_cps spent nothing");
        assert!(!refunds(None, Some(1)), "no number asked");
        assert!(!refunds(Some(0), None), "no carrier asked");
    }
}
