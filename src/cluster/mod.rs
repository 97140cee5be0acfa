//! Cluster mode (SPEC §8): several edges share per-number caps and carrier
//! trunk limits (SPEC §10) through Redis.
//!
//! Every call to a capped number holds a *lease* in Redis: a member of the
//! number's sorted set (`instance/boot/call`) scored with its expiry in
//! server time. Admitting is one Lua script (drop expired members, count,
//! add under the cap); releasing is another. The instance renews the leases
//! of its live calls in pipelined batches every third of `lease_ttl_ms`, so a
//! killed instance's slots come back within the TTL plus one renewal period,
//! and a Redis that lost its data gets the live leases back at the next one.
//!
//! A capped carrier works the same way: its sorted set
//! (`sipedge:{carrier:NAME}:calls`) holds one lease per call with the same
//! member as the number's, and its rate is a GCRA kept as one "theoretical
//! arrival time" (`sipedge:{carrier:NAME}:tat`); one script checks both on
//! server time. A call needing both asks in one [`AdmitRequest`], so the two
//! scripts go out in the same pipeline: one round trip.
//! They are in different hash slots, so not one transaction: when the number
//! refuses a call its carrier admitted, the client sends `CARRIER_REFUND`
//! (the arrival time back one interval) after the verdict, without waiting,
//! rather than a second round trip before every carrier admit.
//!
//! The SIP core stays sans-IO: it creates a [`Lease`] (held by the call's
//! permit, so the release happens exactly once, whichever way the call ends),
//! queues an [`AdmitRequest`] and later hears a [`Verdict`], like a timer. The
//! driver passes requests to the client task ([`client`]) over a bounded queue,
//! and the verdict comes back on the shard's input queue. Nothing on the SIP
//! path waits on Redis except a new INVITE to a capped number, and never longer
//! than `admit_timeout_ms` (the core's own timer).
//!
//! # Layout
//! - `mod.rs`: the types the core and the driver share
//! - `scripts.rs`: the Lua scripts and the key names
//! - `client.rs`: the task that talks to Redis (batching, renewal, breaker)

pub mod backend;
pub mod client;
pub mod events;
pub mod scripts;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use tokio::sync::mpsc;

use crate::metrics as m;

/// Requests and releases waiting for the Redis task before new ones are
/// answered "unknown" (admits) or left to the renewal sweep (releases).
pub const CLUSTER_QUEUE: usize = 16_384;

/// What the shared admission said about one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Redis counted it under the cap.
    Admitted,
    /// The number is at its cap across the cluster.
    Refused,
    /// The carrier is at a limit across the cluster (the number, if asked, was admitted).
    TrunkRefused(crate::admission::TrunkReject),
    /// Redis could not answer (down, slow, queue full): the backend-down policy decides.
    Unknown,
}

/// One call's slot in Redis. Dropping it (with the permit that holds it)
/// releases the slot.
#[derive(Debug)]
pub struct Lease {
    /// The number's sorted set.
    pub key: Box<str>,
    /// This call's member in it.
    pub member: Box<str>,
    /// Where the release goes; none in tests of the core.
    releases: Option<std::sync::mpsc::SyncSender<Op>>,
}

impl Lease {
    /// A lease for `member` in `key`, released through `link` when dropped.
    pub fn new(key: Box<str>, member: Box<str>, link: Option<&ClusterLink>) -> Lease {
        Lease { key, member, releases: link.map(|l| l.releases.clone()) }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(ops) = &self.releases else { return };
        let op = Op::Release { key: std::mem::take(&mut self.key), member: std::mem::take(&mut self.member) };
        if ops.try_send(op).is_err() {
            // The renewal sweep finds the lease gone and releases it then.
            metrics::counter!(m::CLUSTER_QUEUE_DROPS_TOTAL).increment(1);
        }
    }
}

/// One limit to check in Redis for a call.
#[derive(Debug)]
pub struct Ask {
    /// The call's lease (weak: a call that ends first releases it).
    pub lease: Weak<Lease>,
    /// The concurrency cap as this instance knows it (0 = none: a carrier with a rate only).
    pub cap: u32,
    /// Carriers: `max_cps` (0 = none). Always 0 for a number.
    pub cps: u32,
}

/// The core asks: may call `call` of shard `shard` take a slot of its
/// number, of its carrier, or both (one round trip)?
#[derive(Debug)]
pub struct AdmitRequest {
    /// The shard whose core asked (the verdict goes back there).
    pub shard: usize,
    /// The call's id in that core.
    pub call: u64,
    /// The capped number's slot.
    pub number: Option<Ask>,
    /// The capped carrier's slot and rate.
    pub carrier: Option<Ask>,
}

/// What the Redis task is asked to do.
#[derive(Debug)]
pub enum Op {
    /// Admit a call.
    Admit(AdmitRequest),
    /// A call ended: remove its lease.
    Release {
        /// The number's sorted set.
        key: Box<str>,
        /// The call's member.
        member: Box<str>,
    },
}

/// What every shard reads about the cluster, lock-free.
#[derive(Debug)]
pub struct ClusterView {
    /// Redis answered the last round trip.
    up: AtomicBool,
    /// Instances alive at the last heartbeat (this one included).
    alive: AtomicU32,
}

impl Default for ClusterView {
    fn default() -> Self {
        ClusterView { up: AtomicBool::new(false), alive: AtomicU32::new(1) }
    }
}

impl ClusterView {
    /// Whether Redis answered the last round trip.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Instances alive at the last contact (at least 1).
    pub fn alive(&self) -> u32 {
        self.alive.load(Ordering::Relaxed).max(1)
    }

    pub(crate) fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
        metrics::gauge!(m::CLUSTER_UP).set(if up { 1.0 } else { 0.0 });
    }

    pub(crate) fn set_alive(&self, n: u32) {
        self.alive.store(n.max(1), Ordering::Relaxed);
    }
}

/// The task's ends of the link's queues.
#[derive(Debug)]
pub struct Queues {
    /// Admit requests.
    pub admits: mpsc::Receiver<Op>,
    /// Releases of ended calls.
    pub releases: std::sync::mpsc::Receiver<Op>,
}

/// The link between the shards and the Redis task.
#[derive(Debug)]
pub struct ClusterLink {
    /// This instance's name and boot id, the prefix of every member it writes.
    pub prefix: Box<str>,
    /// Admit requests to the task (it wakes for each: a call waits on it).
    ops: mpsc::Sender<Op>,
    /// Releases: taken with the next admit batch or within `RELEASE_TICK`,
    /// so ending a call wakes nothing.
    releases: std::sync::mpsc::SyncSender<Op>,
    /// What the task last saw.
    pub view: Arc<ClusterView>,
}

impl ClusterLink {
    /// A link and the receiving ends for the task.
    pub fn new(instance: &str, boot: u64) -> (ClusterLink, Queues) {
        let (tx, rx) = mpsc::channel(CLUSTER_QUEUE);
        let (rel_tx, rel_rx) = std::sync::mpsc::sync_channel(CLUSTER_QUEUE);
        let prefix = format!("{instance}/{boot:x}").into_boxed_str();
        let link = ClusterLink { prefix, ops: tx, releases: rel_tx, view: Arc::new(ClusterView::default()) };
        (link, Queues { admits: rx, releases: rel_rx })
    }

    /// Passes an admit request on; false when the queue is full (the caller
    /// treats the call as [`Verdict::Unknown`]).
    pub fn ask(&self, req: AdmitRequest) -> bool {
        match self.ops.try_send(Op::Admit(req)) {
            Ok(()) => true,
            Err(_) => {
                metrics::counter!(m::CLUSTER_QUEUE_DROPS_TOTAL).increment(1);
                false
            }
        }
    }

    /// A lease for call `call_key` on `number`'s set.
    pub fn lease(&self, number: crate::sip::E164, call_key: &str) -> Lease {
        let mut member = String::with_capacity(self.prefix.len() + 1 + call_key.len());
        member.push_str(&self.prefix);
        member.push('/');
        member.push_str(call_key);
        Lease::new(scripts::lease_key(number).into_boxed_str(), member.into_boxed_str(), Some(self))
    }

    /// A lease for call `call_key` on carrier `name`'s set. `counted` is
    /// false for a carrier with a rate only: nothing to release then.
    pub fn carrier_lease(&self, name: &str, call_key: &str, counted: bool) -> Lease {
        let mut member = String::with_capacity(self.prefix.len() + 1 + call_key.len());
        member.push_str(&self.prefix);
        member.push('/');
        member.push_str(call_key);
        let key = scripts::carrier_key(name).into_boxed_str();
        Lease::new(key, member.into_boxed_str(), counted.then_some(self))
    }
}

/// The share of `cap` one instance may admit alone while Redis is down:
/// ceil(cap / alive).
pub fn local_share(cap: u32, alive: u32) -> u32 {
    cap.div_ceil(alive.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_share_rounds_up_and_never_divides_by_zero() {
        assert_eq!(local_share(100, 3), 34);
        assert_eq!(local_share(100, 1), 100);
        assert_eq!(local_share(100, 0), 100);
        assert_eq!(local_share(1, 4), 1);
        assert_eq!(local_share(0, 4), 0);
    }

    #[test]
    fn a_dropped_lease_queues_its_release() {
        let (link, q) = ClusterLink::new("edge-1", 0xab);
        let lease = link.lease(crate::sip::E164::parse_dialed("+12065550100").unwrap(), "call-1/tag");
        assert_eq!(&*lease.member, "edge-1/ab/call-1/tag");
        assert_eq!(&*lease.key, "sipedge:{+12065550100}:calls");
        drop(lease);
        match q.releases.try_recv() {
            Ok(Op::Release { key, member }) => {
                assert_eq!(&*key, "sipedge:{+12065550100}:calls");
                assert_eq!(&*member, "edge-1/ab/call-1/tag");
            }
            other => panic!("{other:?}"),
        }
    }
}
