//! Drain state shared by the shards, the control plane and the signal
//! handling (SPEC §9): the flag the cores read, and each shard's count of
//! calls still live, which the drain waits on.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Whether the edge drains, and how many calls each shard still has.
pub struct Drain {
    flag: Arc<AtomicBool>,
    /// Per shard, published by the shard while draining (usize::MAX = not yet).
    live: Box<[AtomicUsize]>,
    started: tokio::sync::Notify,
}

impl Drain {
    /// Not draining, for `shards` shards.
    pub fn new(shards: usize) -> Drain {
        Drain {
            flag: Arc::new(AtomicBool::new(false)),
            live: (0..shards).map(|_| AtomicUsize::new(usize::MAX)).collect(),
            started: tokio::sync::Notify::new(),
        }
    }

    /// The flag the cores read.
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag.clone()
    }

    /// Starts draining; false if it already was (idempotent).
    pub fn start(&self) -> bool {
        let first = !self.flag.swap(true, Ordering::SeqCst);
        if first {
            crate::metrics::draining(true);
            tracing::warn!("draining: new calls get 503, calls in progress go on");
            self.started.notify_one();
        }
        first
    }

    /// Whether the edge drains.
    pub fn is_draining(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Resolves once a drain has started.
    pub async fn started(&self) {
        if !self.is_draining() {
            self.started.notified().await;
        }
    }

    /// Shard `i` has `n` calls still live.
    pub fn publish(&self, i: usize, n: usize) {
        if let Some(slot) = self.live.get(i) {
            slot.store(n, Ordering::Relaxed);
        }
    }

    /// Calls still live over all shards; `None` until every shard has reported.
    pub fn live(&self) -> Option<usize> {
        self.live
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .try_fold(0usize, |acc, n| (n != usize::MAX).then(|| acc.saturating_add(n)))
    }
}
