//! RFC 3261 timers as an enum, and the queue the core keeps them in.
//!
//! Timers are rarely cancelled in place: each armed timer names the part of
//! its owner that armed it, and a firing that no longer fits that part's
//! state is ignored. Only timers that would otherwise outlive their owner by
//! long (a dialog's max duration, timer C) are cancelled.
//!
//! The queue keeps one FIFO list per distinct duration. The core arms only a
//! handful of durations (T1 and its doublings, T4, 64·T1, timer C, failover,
//! max duration), and `now` never goes back, so appending keeps each list in
//! deadline order: arming and cancelling are O(1), finding the next deadline
//! looks at one head per list. A BTreeMap cost a tree insert and remove per
//! timer, about a dozen per call.

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
    /// Cluster mode: the shared admission did not answer within `admit_timeout_ms`.
    Admit,
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

/// Which part of its owner armed a timer; a firing that no longer fits the
/// owner's state is ignored.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Slot {
    /// The owner as a whole: a dialog's timers, the shared-admission wait, probing.
    Whole,
    /// The server transaction toward the caller.
    Server,
    /// A non-INVITE transaction's client side.
    Client,
    /// An INVITE's client transaction toward branch `n` (its index in the call).
    Branch(u32),
}

impl Slot {
    /// The slot of branch `idx` of a call.
    pub fn branch(idx: usize) -> Slot {
        Slot::Branch(u32::try_from(idx).unwrap_or(u32::MAX))
    }
}

/// A timer that fired, and which part of its owner armed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fired {
    /// Who armed it.
    pub owner: Owner,
    /// Which timer.
    pub timer: Timer,
    /// Which part of the owner armed it.
    pub slot: Slot,
}

/// Identifies one armed timer, for [`TimerQueue::cancel`]: its slot in the
/// queue and its arming sequence number (a stale key matches nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerKey(u32, u64);

/// No entry (end of a list, empty free list).
const NIL: u32 = u32::MAX;

/// Beyond this many distinct durations, new ones share the list of the
/// closest duration (still kept in order, by walking back from its tail).
const MAX_LISTS: usize = 32;

/// One armed timer (or a free slot, `seq == 0`).
#[derive(Debug)]
struct Entry {
    at: Instant,
    seq: u64,
    fired: Fired,
    list: u32,
    prev: u32,
    next: u32,
}

/// The timers armed with one duration, oldest first.
#[derive(Debug)]
struct List {
    after: Duration,
    head: u32,
    tail: u32,
}

/// Deadlines ordered by time; ties broken by arming order.
#[derive(Debug)]
pub struct TimerQueue {
    /// Every entry, armed or free; indices are stable while armed.
    entries: Vec<Entry>,
    /// Free entries, linked through `next`.
    free: u32,
    lists: Vec<List>,
    /// The entry due first, kept up to date: the driver asks for the next
    /// deadline after every message.
    first: Option<(u32, Instant, u64)>,
    len: usize,
    seq: u64,
}

impl Default for TimerQueue {
    fn default() -> Self {
        TimerQueue { entries: Vec::new(), free: NIL, lists: Vec::new(), first: None, len: 0, seq: 0 }
    }
}

impl TimerQueue {
    /// Arms `timer` for `owner` to fire at `now + after`; the key cancels it.
    pub fn arm(&mut self, now: Instant, after: Duration, owner: Owner, timer: Timer, slot: Slot) -> TimerKey {
        self.seq += 1;
        let (at, seq) = (now + after, self.seq);
        let list = self.list_for(after);
        let entry = Entry { at, seq, fired: Fired { owner, timer, slot }, list, prev: NIL, next: NIL };
        let idx = match self.entries.get_mut(self.free as usize) {
            Some(e) => {
                let idx = self.free;
                self.free = e.next;
                *e = entry;
                idx
            }
            None => {
                self.entries.push(entry);
                u32::try_from(self.entries.len() - 1).unwrap_or(NIL)
            }
        };
        self.link(list, idx, at);
        self.len += 1;
        if self.first.map_or(true, |(_, f_at, f_seq)| (at, seq) < (f_at, f_seq)) {
            self.first = Some((idx, at, seq));
        }
        TimerKey(idx, seq)
    }

    /// Disarms a timer that has not fired yet (a key that already fired or was
    /// cancelled does nothing). Long timers (a dialog's max duration, hours)
    /// must be cancelled when their owner goes, or the queue grows with every
    /// call made during that time.
    pub fn cancel(&mut self, key: TimerKey) {
        if self.entries.get(key.0 as usize).is_some_and(|e| e.seq == key.1) {
            self.remove(key.0);
        }
    }

    /// The earliest deadline, if any timer is armed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.first.map(|(_, at, _)| at)
    }

    /// Removes and returns one timer due at or before `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Fired> {
        let (idx, at, _) = self.first?;
        if at > now {
            return None;
        }
        let fired = self.entries.get(idx as usize)?.fired;
        self.remove(idx);
        Some(fired)
    }

    /// Number of armed timers (stale ones included until they fire); the leak tests read it.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is armed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The list for `after`: its own, an empty one reused, a new one, or
    /// (past `MAX_LISTS`) the one with the closest duration.
    fn list_for(&mut self, after: Duration) -> u32 {
        let i = match self.lists.iter().position(|l| l.after == after) {
            Some(i) => i,
            None => match self.lists.iter().position(|l| l.head == NIL) {
                Some(i) => {
                    if let Some(l) = self.lists.get_mut(i) {
                        l.after = after;
                    }
                    i
                }
                None if self.lists.len() < MAX_LISTS => {
                    self.lists.push(List { after, head: NIL, tail: NIL });
                    self.lists.len() - 1
                }
                None => {
                    let gap = |l: &List| if l.after > after { l.after - after } else { after - l.after };
                    (0..self.lists.len()).min_by_key(|&i| self.lists.get(i).map(gap)).unwrap_or(0)
                }
            },
        };
        i as u32
    }

    /// Links entry `idx` (deadline `at`) into `list` after every entry due at
    /// or before `at`: at the tail, unless the clock went back or the list is shared.
    fn link(&mut self, list: u32, idx: u32, at: Instant) {
        let Some(l) = self.lists.get(list as usize) else { return };
        let mut after = l.tail;
        while let Some(e) = self.entries.get(after as usize).filter(|e| e.at > at) {
            after = e.prev;
        }
        let before = match self.entries.get_mut(after as usize) {
            Some(prev) => std::mem::replace(&mut prev.next, idx),
            None => match self.lists.get_mut(list as usize) {
                Some(l) => std::mem::replace(&mut l.head, idx),
                None => NIL,
            },
        };
        match self.entries.get_mut(before as usize) {
            Some(next) => next.prev = idx,
            None => {
                if let Some(l) = self.lists.get_mut(list as usize) {
                    l.tail = idx;
                }
            }
        }
        if let Some(e) = self.entries.get_mut(idx as usize) {
            e.prev = after;
            e.next = before;
        }
    }

    /// Unlinks entry `idx` from its list and frees it.
    fn remove(&mut self, idx: u32) {
        let Some(e) = self.entries.get_mut(idx as usize) else { return };
        let (list, prev, next) = (e.list, e.prev, e.next);
        e.seq = 0;
        e.next = self.free;
        self.free = idx;
        self.len -= 1;
        let was_first = self.first.is_some_and(|(f, _, _)| f == idx);
        match self.entries.get_mut(prev as usize) {
            Some(p) => p.next = next,
            None => {
                if let Some(l) = self.lists.get_mut(list as usize) {
                    l.head = next;
                }
            }
        }
        match self.entries.get_mut(next as usize) {
            Some(n) => n.prev = prev,
            None => {
                if let Some(l) = self.lists.get_mut(list as usize) {
                    l.tail = prev;
                }
            }
        }
        if was_first {
            self.first = self.earliest();
        }
    }

    /// The entry due first (deadline, then arming order), found by looking
    /// at the head of every list.
    fn earliest(&self) -> Option<(u32, Instant, u64)> {
        let mut best: Option<(u32, Instant, u64)> = None;
        for l in &self.lists {
            let Some(e) = self.entries.get(l.head as usize) else { continue };
            if best.map_or(true, |(_, at, seq)| (e.at, e.seq) < (at, seq)) {
                best = Some((l.head, e.at, e.seq));
            }
        }
        best
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
        TimerValues::from_config(&crate::config::TimersConfig::default())
    }
}

impl TimerValues {
    /// The values `[timers]` sets (milliseconds there).
    pub fn from_config(t: &crate::config::TimersConfig) -> Self {
        TimerValues {
            t1: Duration::from_millis(t.t1_ms),
            t2: Duration::from_millis(t.t2_ms),
            t4: Duration::from_millis(t.t4_ms),
            failover: Duration::from_millis(t.failover_ms),
            timer_c: Duration::from_millis(t.timer_c_ms),
        }
    }

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
        q.arm(now, Duration::from_millis(30), Owner::Call(1), Timer::B, Slot::Whole);
        q.arm(now, Duration::from_millis(10), Owner::Call(2), Timer::A, Slot::Whole);
        q.arm(now, Duration::from_millis(10), Owner::Call(3), Timer::A, Slot::Whole);
        assert_eq!(q.next_deadline(), Some(now + Duration::from_millis(10)));
        assert_eq!(q.pop_due(now), None);
        let t = now + Duration::from_millis(10);
        assert_eq!(q.pop_due(t).map(|f| f.owner), Some(Owner::Call(2)));
        assert_eq!(q.pop_due(t).map(|f| f.owner), Some(Owner::Call(3)));
        assert_eq!(q.pop_due(t), None);
        assert_eq!(q.len(), 1);
    }

    fn owners(q: &mut TimerQueue, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| q.pop_due(now))
            .map(|f| match f.owner {
                Owner::Call(n) | Owner::Txn(n) => n,
                Owner::Core => 0,
            })
            .collect()
    }

    #[test]
    fn mixed_durations_pop_in_deadline_order() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut q = TimerQueue::default();
        // Arming times go forward, durations differ: lists interleave.
        q.arm(now, ms(500), Owner::Call(1), Timer::A, Slot::Whole); // 500
        q.arm(now, ms(32_000), Owner::Call(2), Timer::B, Slot::Whole); // 32000
        q.arm(now + ms(100), ms(500), Owner::Call(3), Timer::A, Slot::Whole); // 600
        q.arm(now + ms(100), ms(2_000), Owner::Call(4), Timer::Failover, Slot::Whole); // 2100
        q.arm(now + ms(200), ms(300), Owner::Call(5), Timer::K, Slot::Whole); // 500, after 1
        q.arm(now + ms(300), Duration::ZERO, Owner::Call(6), Timer::I, Slot::Whole); // 300
        assert_eq!(q.len(), 6);
        assert_eq!(q.next_deadline(), Some(now + ms(300)));
        assert_eq!(owners(&mut q, now + ms(599)), vec![6, 1, 5]);
        assert_eq!(q.next_deadline(), Some(now + ms(600)));
        assert_eq!(owners(&mut q, now + ms(60_000)), vec![3, 4, 2]);
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
    }

    #[test]
    fn same_deadline_ties_go_in_arming_order() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut q = TimerQueue::default();
        // Same deadline from different lists and from the same list.
        q.arm(now + ms(10), ms(90), Owner::Call(1), Timer::E, Slot::Whole);
        q.arm(now, ms(100), Owner::Call(2), Timer::F, Slot::Whole);
        q.arm(now + ms(10), ms(90), Owner::Call(3), Timer::E, Slot::Whole);
        q.arm(now + ms(100), Duration::ZERO, Owner::Call(4), Timer::D, Slot::Whole);
        assert_eq!(owners(&mut q, now + ms(100)), vec![1, 2, 3, 4]);
    }

    #[test]
    fn cancellation_removes_exactly_that_timer_and_stale_keys_do_nothing() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut q = TimerQueue::default();
        let a = q.arm(now, s(1), Owner::Call(1), Timer::C, Slot::Branch(0));
        let b = q.arm(now, s(1), Owner::Call(2), Timer::C, Slot::Branch(0));
        let c = q.arm(now, s(1), Owner::Call(3), Timer::C, Slot::Branch(0));
        q.cancel(b); // middle of a list
        q.cancel(b);
        assert_eq!(q.len(), 2);
        q.cancel(c); // tail
        q.cancel(a); // head: the list is now empty
        assert!(q.is_empty());
        assert_eq!(q.next_deadline(), None);
        // Freed slots are reused; the old keys must not cancel the new timers.
        let d = q.arm(now, s(2), Owner::Call(4), Timer::C, Slot::Branch(0));
        q.arm(now, s(2), Owner::Call(5), Timer::C, Slot::Branch(0));
        q.cancel(a);
        q.cancel(b);
        q.cancel(c);
        assert_eq!(q.len(), 2);
        assert_eq!(owners(&mut q, now + s(2)), vec![4, 5]);
        // A fired timer's key is stale too.
        q.cancel(d);
        let e = q.arm(now, s(3), Owner::Call(6), Timer::C, Slot::Branch(0));
        q.cancel(d);
        assert_eq!(q.len(), 1);
        q.cancel(e);
        assert!(q.is_empty());
    }

    #[test]
    fn far_future_timers_wait_and_cancel() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let mut q = TimerQueue::default();
        let max = q.arm(now, s(14_400), Owner::Call(1), Timer::MaxDuration, Slot::Whole);
        q.arm(now, s(86_400 * 365), Owner::Call(2), Timer::MaxDuration, Slot::Whole);
        q.arm(now, s(32), Owner::Call(3), Timer::L, Slot::Whole);
        assert_eq!(owners(&mut q, now + s(14_399)), vec![3]);
        assert_eq!(q.next_deadline(), Some(now + s(14_400)));
        q.cancel(max);
        assert_eq!(q.next_deadline(), Some(now + s(86_400 * 365)));
        assert_eq!(owners(&mut q, now + s(86_400 * 365)), vec![2]);
    }

    #[test]
    fn a_clock_going_back_or_many_durations_still_keep_order() {
        let now = Instant::now() + Duration::from_secs(1000);
        let ms = Duration::from_millis;
        let mut q = TimerQueue::default();
        q.arm(now, ms(50), Owner::Call(1), Timer::A, Slot::Whole); // 50
        q.arm(now - ms(40), ms(50), Owner::Call(2), Timer::A, Slot::Whole); // 10: before 1
        q.arm(now - ms(20), ms(50), Owner::Call(3), Timer::A, Slot::Whole); // 30: between
                                                                            // More distinct durations than lists: they share lists, still in order.
        for i in 0..(MAX_LISTS as u64 * 3) {
            q.arm(now, ms(1000 + (i * 7919) % 500), Owner::Txn(i), Timer::E, Slot::Whole);
        }
        assert!(q.lists.len() <= MAX_LISTS);
        assert_eq!(owners(&mut q, now + ms(50)), vec![2, 3, 1]);
        let mut last = None;
        let mut n = 0;
        while let Some(at) = q.next_deadline() {
            let f = q.pop_due(at).unwrap();
            let Owner::Txn(i) = f.owner else { panic!("{f:?}") };
            assert_eq!(at, now + ms(1000 + (i * 7919) % 500));
            assert!(last.is_none_or(|l| l <= at), "out of order");
            last = Some(at);
            n += 1;
        }
        assert_eq!(n, MAX_LISTS * 3);
    }
}
