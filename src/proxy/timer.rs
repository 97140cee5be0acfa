//! RFC 3261 timers as an enum, and the queue the core keeps them in.
//!
//! Timers are never cancelled in place: each armed timer names the part of
//! its owner that armed it, and a firing that no longer fits that part's
//! state is ignored. That keeps arming and
//! "stopping" O(log n) and O(1) with no search.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every timer the proxy core arms. A–K are RFC 3261 §17's; the rest are ours.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Timer {
    /// INVITE client: retransmit the request (UDP), doubling from T1.
    A,
    /// INVITE client: give up waiting for any response (64·T1).
    B,
    /// §16.6 timer C: give up waiting for a final response after a provisional.
    C,
    /// INVITE client: wait in Completed to absorb final-response retransmissions.
    D,
    /// Non-INVITE client: retransmit the request (UDP).
    E,
    /// Non-INVITE client: give up (64·T1).
    F,
    /// INVITE server: retransmit the final non-2xx response (UDP).
    G,
    /// INVITE server: give up waiting for the ACK (64·T1).
    H,
    /// INVITE server: wait in Confirmed to absorb ACK retransmissions (T4).
    I,
    /// Non-INVITE server: wait in Completed to absorb request retransmissions.
    J,
    /// Non-INVITE client: wait in Completed to absorb response retransmissions (T4).
    K,
    /// RFC 6026 timer L: INVITE server in Accepted, absorbing INVITE retransmissions.
    L,
    /// RFC 6026 timer M: INVITE client in Accepted, relaying 2xx retransmissions.
    M,
    /// No response from a next hop within `failover_ms`: try the next hop.
    Failover,
    /// A 2xx was relayed but no ACK came back within 64·T1: end the call.
    AckWait,
    /// `max_call_duration_s` reached: end the call.
    MaxDuration,
    /// Health check: time to probe the next hops that are due.
    Probe,
    /// Health check: an OPTIONS probe got no answer in time.
    ProbeTimeout,
}

/// What a timer belongs to: a call context, a standalone transaction, or the core.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Owner {
    /// A proxied INVITE (its server and client transactions) or a dialog.
    Call(u64),
    /// A proxied non-INVITE transaction (BYE, OPTIONS forwarded, ...).
    Txn(u64),
    /// The core itself (health probing).
    Core,
}

/// A timer that fired, and which part of its owner armed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    /// Who armed it.
    pub owner: Owner,
    /// Which timer.
    pub timer: Timer,
    /// Which part of the owner armed it (0: the server transaction; n: client branch n); firings that no longer fit the state are ignored.
    pub slot: u32,
}

/// Identifies one armed timer, for [`TimerQueue::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey(Instant, u64);

/// Deadlines ordered by time; ties broken by insertion order.
#[derive(Default, Debug)]
pub struct TimerQueue {
    queue: BTreeMap<(Instant, u64), Fired>,
    seq: u64,
}

impl TimerQueue {
    /// Arms `timer` for `owner` to fire at `now + after`; the key cancels it.
    pub fn arm(&mut self, now: Instant, after: Duration, owner: Owner, timer: Timer, slot: u32) -> TimerKey {
        self.seq = self.seq.wrapping_add(1);
        let key = TimerKey(now + after, self.seq);
        self.queue.insert((key.0, key.1), Fired { owner, timer, slot });
        key
    }

    /// Disarms a timer that has not fired yet. Long timers (a dialog's
    /// max duration, hours) must be cancelled when their owner goes, or the
    /// queue grows with every call made during that time.
    pub fn cancel(&mut self, key: TimerKey) {
        self.queue.remove(&(key.0, key.1));
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// Removes and returns one timer due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Fired> {
        let (&(at, _), _) = self.queue.iter().next()?;
        if at > now {
            return None;
        }
        self.queue.pop_first().map(|(_, f)| f)
    }

    /// Number of armed timers (stale ones included until they fire).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

/// The RFC 3261 timer values the core uses, from `[timers]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerValues {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// Maximum time a message stays in the network.
    pub t4: Duration,
    /// No response from a next hop within this: fail over.
    pub failover: Duration,
    /// §16.6 timer C: a provisional was received but no final within this.
    pub timer_c: Duration,
}

impl Default for TimerValues {
    fn default() -> Self {
        TimerValues {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            failover: Duration::from_secs(2),
            timer_c: Duration::from_secs(180),
        }
    }
}

impl TimerValues {
    /// 64·T1: timers B, F, H, J and the ACK wait.
    pub fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_order_and_only_when_due() {
        let now = Instant::now();
        let mut q = TimerQueue::default();
        q.arm(now, Duration::from_millis(30), Owner::Call(1), Timer::B, 0);
        q.arm(now, Duration::from_millis(10), Owner::Call(2), Timer::A, 0);
        q.arm(now, Duration::from_millis(10), Owner::Call(3), Timer::A, 0);
        assert_eq!(q.next_deadline(), Some(now + Duration::from_millis(10)));
        assert_eq!(q.pop_due(now), None);
        let t = now + Duration::from_millis(10);
        assert_eq!(q.pop_due(t).map(|f| f.owner), Some(Owner::Call(2)));
        assert_eq!(q.pop_due(t).map(|f| f.owner), Some(Owner::Call(3)));
        assert_eq!(q.pop_due(t), None);
        assert_eq!(q.len(), 1);
    }
}
