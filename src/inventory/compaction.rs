//! The thread that folds the routing table's delta into a new base. The
//! routing table is sans-IO and starts no thread itself; the inventory, which
//! owns the table and already does blocking I/O, gives it this runner.

use std::time::{Duration, Instant};

use crate::routing::{CompactionJob, OldBase};

/// How long the thread waits to be the one that frees an old base.
const OLD_BASE_WAIT: Duration = Duration::from_secs(10);
/// How often it looks whether the last call holding the old base has let go.
const OLD_BASE_POLL: Duration = Duration::from_millis(5);

/// Runs `job` on a thread of its own, then frees the old base there.
pub fn on_a_thread(job: CompactionJob) {
    let spawned = std::thread::Builder::new().name("routing-compact".into()).spawn(move || free_when_last(job.run()));
    if let Err(e) = spawned {
        // The job is dropped with the closure, which ends the compaction;
        // correctness does not depend on it, the delta just grows for now.
        tracing::warn!(error = %e, "could not start routing compaction thread");
    }
}

/// Frees a 10 M-entry base here rather than in whichever request handler
/// drops the last snapshot using it, waiting a bounded time for that.
fn free_when_last(mut old: OldBase) {
    let deadline = Instant::now() + OLD_BASE_WAIT;
    loop {
        match old.try_free() {
            Ok(()) => return,
            Err(back) if Instant::now() < deadline => {
                old = back;
                std::thread::sleep(OLD_BASE_POLL);
            }
            // Someone keeps an old snapshot for long: they will drop it.
            Err(_) => return,
        }
    }
}
