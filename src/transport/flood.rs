//! Per-source flood control (like Kamailio's pike): a source IP that sends
//! more than `max_requests` messages in a `window_ms` window is banned for
//! `ban_s`; while banned, its messages are dropped (or answered 503) before
//! they are parsed. Configured peers can be exempt. The table is swept
//! periodically and capped, so a spoofed flood from many addresses cannot
//! grow memory without bound: when the table is full, entries whose window
//! and ban are over are swept at once (at most once per window), and a
//! source that still finds no room is not tracked (it passes) until then.
//!
//! Cost: one `DashMap` shard lock and two `ArcSwap` loads per message; see
//! `benches/flood.rs`.

use arc_swap::ArcSwap;
use dashmap::DashMap;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{canonical, Cidr};
use crate::metrics as m;

/// Sources that are never banned: configured peers' IPs and carriers'
/// `sources` networks (with `[flood].exempt_peers`).
#[derive(Clone, Debug, Default)]
pub struct Exempt {
    /// Single addresses (carrier links, flow-engine endpoints).
    pub ips: HashSet<IpAddr, ahash::RandomState>,
    /// Networks (carriers' `sources`).
    pub nets: Vec<Cidr>,
}

impl Exempt {
    /// Whether `ip` is exempt.
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.ips.is_empty() && self.nets.is_empty() {
            return false;
        }
        let ip = canonical(ip);
        self.ips.contains(&ip) || self.nets.iter().any(|n| n.contains(ip))
    }
}

impl Exempt {
    /// Adds networks to the exempt set.
    pub fn with_nets(mut self, nets: Vec<Cidr>) -> Exempt {
        self.nets.extend(nets);
        self
    }
}

impl From<HashSet<IpAddr>> for Exempt {
    fn from(ips: HashSet<IpAddr>) -> Exempt {
        Exempt { ips: ips.into_iter().map(canonical).collect(), nets: Vec::new() }
    }
}

/// What to do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Handle it.
    Pass,
    /// Banned source: drop it silently.
    Drop,
    /// Banned source: answer 503 (only if the message can be answered).
    Reject,
}

/// Flood-control settings (`[flood]`).
#[derive(Clone, Copy, Debug)]
pub struct FloodSettings {
    /// Off: everything passes.
    pub enabled: bool,
    /// Counting window.
    pub window: Duration,
    /// Messages allowed per window per source IP.
    pub max_requests: u32,
    /// Ban length.
    pub ban: Duration,
    /// Reject (503) rather than drop while banned.
    pub reject: bool,
}

#[derive(Clone, Copy)]
struct Entry {
    window_start_ms: u64,
    count: u32,
    banned_until_ms: u64,
}

/// Most sources tracked at once (about 64 bytes each); beyond it new sources
/// are not tracked until a sweep frees room.
#[cfg(not(test))]
pub const MAX_TRACKED: usize = 200_000;
/// Small in unit tests, so filling the table is cheap.
#[cfg(test)]
pub const MAX_TRACKED: usize = 1000;

/// The per-source counters and bans.
pub struct FloodGuard {
    settings: ArcSwap<FloodSettings>,
    exempt: ArcSwap<Exempt>,
    table: DashMap<IpAddr, Entry, ahash::RandomState>,
    base: Instant,
    bans: AtomicU64,
    /// When the table was last swept because it was full (ms since `base`).
    full_sweep_ms: AtomicU64,
    /// Metric handles, looked up once: a registry lookup per dropped datagram
    /// would double the cost of the banned path.
    drops_counter: metrics::Counter,
    bans_counter: metrics::Counter,
}

impl FloodGuard {
    /// A guard with these settings and exempt addresses. Create it after the
    /// metrics recorder is installed: its counters are looked up once, here.
    pub fn new(settings: FloodSettings, exempt: impl Into<Exempt>) -> FloodGuard {
        FloodGuard {
            settings: ArcSwap::from_pointee(settings),
            exempt: ArcSwap::from_pointee(exempt.into()),
            table: DashMap::with_hasher(ahash::RandomState::new()),
            base: Instant::now(),
            bans: AtomicU64::new(0),
            full_sweep_ms: AtomicU64::new(0),
            drops_counter: metrics::counter!(m::FLOOD_DROPS_TOTAL),
            bans_counter: metrics::counter!(m::FLOOD_BANS_TOTAL),
        }
    }

    /// New settings and exempt set (reload).
    pub fn update(&self, settings: FloodSettings, exempt: impl Into<Exempt>) {
        self.settings.store(Arc::new(settings));
        self.exempt.store(Arc::new(exempt.into()));
    }

    /// Whether `ip` is exempt (a configured peer): TCP connection limits spare it too.
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        self.exempt.load().contains(ip)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Counts one message from `ip` and says what to do with it.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        let s = self.settings.load();
        if !s.enabled {
            return Verdict::Pass;
        }
        if self.exempt.load().contains(ip) {
            return Verdict::Pass;
        }
        let now = self.now_ms();
        let window = u64::try_from(s.window.as_millis()).unwrap_or(u64::MAX).max(1);
        let banned = if let Some(mut e) = self.table.get_mut(&ip) {
            if e.banned_until_ms > now {
                true
            } else {
                if now.saturating_sub(e.window_start_ms) >= window {
                    e.window_start_ms = now;
                    e.count = 0;
                }
                e.count = e.count.saturating_add(1);
                if e.count > s.max_requests {
                    e.banned_until_ms = now + u64::try_from(s.ban.as_millis()).unwrap_or(u64::MAX);
                    drop(e);
                    self.bans.fetch_add(1, Ordering::Relaxed);
                    self.bans_counter.increment(1);
                    tracing::warn!(source = %ip, ban_s = s.ban.as_secs(), "flood: source banned");
                    true
                } else {
                    false
                }
            }
        } else {
            if self.table.len() >= MAX_TRACKED {
                self.sweep_when_full(now, window);
            }
            if self.table.len() < MAX_TRACKED {
                self.table.insert(ip, Entry { window_start_ms: now, count: 1, banned_until_ms: 0 });
            }
            false
        };
        if !banned {
            return Verdict::Pass;
        }
        self.drops_counter.increment(1);
        if s.reject {
            Verdict::Reject
        } else {
            Verdict::Drop
        }
    }

    /// Forgets sources whose window and ban are over.
    pub fn sweep(&self) {
        let now = self.now_ms();
        let window = u64::try_from(self.settings.load().window.as_millis()).unwrap_or(u64::MAX);
        self.sweep_at(now, window);
    }

    fn sweep_at(&self, now: u64, window: u64) {
        self.table
            .retain(|_, e| e.banned_until_ms > now || now.saturating_sub(e.window_start_ms) < window.saturating_mul(2));
    }

    /// A full table is swept at once, but at most once per window: a flood of
    /// new (spoofed) sources must not turn every message into an O(n) sweep.
    fn sweep_when_full(&self, now: u64, window: u64) {
        let last = self.full_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < window {
            return;
        }
        if self.full_sweep_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.sweep_at(now, window);
        }
    }

    /// Sources tracked now.
    pub fn tracked(&self) -> usize {
        self.table.len()
    }

    /// Bans so far.
    pub fn bans(&self) -> u64 {
        self.bans.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: u32) -> FloodSettings {
        FloodSettings {
            enabled: true,
            window: Duration::from_secs(60),
            max_requests: max,
            ban: Duration::from_secs(60),
            reject: false,
        }
    }

    #[test]
    fn bans_a_source_over_its_rate_and_spares_others() {
        let g = FloodGuard::new(settings(10), HashSet::new());
        let bad: IpAddr = "127.0.0.50".parse().unwrap();
        let good: IpAddr = "127.0.0.51".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(g.check(bad), Verdict::Pass);
        }
        assert_eq!(g.check(bad), Verdict::Drop);
        assert_eq!(g.check(bad), Verdict::Drop);
        assert_eq!(g.check(good), Verdict::Pass);
        assert_eq!(g.bans(), 1, "banned once, logged once");
    }

    #[test]
    fn exempt_peers_are_never_banned() {
        let peer: IpAddr = "127.0.0.2".parse().unwrap();
        let g = FloodGuard::new(settings(1), [peer].into_iter().collect::<HashSet<_>>());
        for _ in 0..100 {
            assert_eq!(g.check(peer), Verdict::Pass);
        }
    }

    #[test]
    fn carrier_source_networks_are_exempt() {
        let exempt = Exempt { ips: Default::default(), nets: vec![Cidr::parse("203.0.113.0/24").unwrap()] };
        let g = FloodGuard::new(settings(1), exempt);
        let inside: IpAddr = "203.0.113.77".parse().unwrap();
        let mapped: IpAddr = "::ffff:203.0.113.78".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(g.check(inside), Verdict::Pass);
            assert_eq!(g.check(mapped), Verdict::Pass);
        }
        assert!(g.is_exempt(inside));
        let outside: IpAddr = "203.0.114.1".parse().unwrap();
        assert_eq!(g.check(outside), Verdict::Pass);
        assert_eq!(g.check(outside), Verdict::Drop);
    }

    #[test]
    fn a_full_table_is_bounded_and_makes_room_once_entries_expire() {
        let mut s = settings(5);
        s.window = Duration::from_millis(50);
        let g = FloodGuard::new(s, HashSet::new());
        for i in 0..(MAX_TRACKED as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0A00_0000 + i));
            assert_eq!(g.check(ip), Verdict::Pass);
        }
        assert!(g.tracked() <= MAX_TRACKED, "the table is capped");
        // Once the old entries are over, a newcomer is tracked (and can be banned) again.
        std::thread::sleep(Duration::from_millis(120));
        let flooder: IpAddr = "192.0.2.200".parse().unwrap();
        let verdicts: Vec<Verdict> = (0..7).map(|_| g.check(flooder)).collect();
        assert_eq!(verdicts.last(), Some(&Verdict::Drop), "{verdicts:?}");
    }

    #[test]
    fn disabled_passes_everything() {
        let mut s = settings(1);
        s.enabled = false;
        let g = FloodGuard::new(s, HashSet::new());
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(g.check(ip), Verdict::Pass);
        }
        assert_eq!(g.tracked(), 0);
    }
}
