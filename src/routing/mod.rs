//! The routing table: number → record and the peers, published as one
//! immutable [`RoutingSnapshot`] behind a single `ArcSwap`: one atomic
//! load per lookup, and no change is ever seen half applied.
//! Sans-IO: no async runtime, no clock, no sockets.
//!
//! # Design, and why
//!
//! Requirements: every lifecycle event (claim, release, restore, set flow,
//! port create/cancel/complete, expiry) publishes a new snapshot atomically
//! while calls flow; lookups never lock; one event costs microseconds even at
//! 10 M numbers; a lookup stays within 1.5× of a frozen `HashMap`.
//!
//! * Copying the table per event (the naive "build a new snapshot") costs
//!   O(n): hundreds of milliseconds at 10 M numbers (see `benches/routing.rs`,
//!   `apply_one_baseline_rebuild`).
//! * A concurrent map (`DashMap`) would make single changes cheap but gives
//!   no snapshot: a batch (a port order of several numbers) would be seen
//!   half-applied, and a call could not keep the table it started with.
//! * So [`NumberMap`] is a frozen, compact base (`base.rs`: open addressing
//!   over 16-byte slots, flows and the rest of a record in shared tables)
//!   plus a persistent
//!   `im::HashMap` delta (tombstone = `None`). An event clones the snapshot
//!   (O(1)) and inserts into the delta (O(log n) node copies), then the
//!   [`RoutingTable`] swaps one `Arc`. A lookup checks the delta, then the
//!   base; a 64 Ki-bit filter of the delta's keys lets most lookups skip the
//!   trie walk (without it a lookup was 1.6× a plain `HashMap` at 10 k numbers).
//! * When the delta reaches a threshold (1/16 of the table, between 256 and
//!   8192 entries by default), a background
//!   thread folds it into a new base and publishes it with only the entries
//!   changed since (see `table.rs`). Writers are serialized by one mutex that
//!   readers never touch.
//!
//! Measured (`cargo bench --bench routing`, 2 cores shared with other
//! jobs, so noisy; medians): one event 1.61 µs at 1 M and 1.78 µs at 10 M
//! numbers between compactions; back-to-back events racing a 10 M-number
//! compaction on the other core 5–18 µs depending on machine load (before
//! the compact base); rebuilding the whole map instead costs 0.70 s per
//! event at 10 M. Lookups take 0.30× the time of a frozen std `HashMap`
//! (SipHash) of the same size at 1 M and at 10 M (167 vs 560 ns). The base
//! map is 21 bytes per number (slots only, the bench's flows are few); the
//! whole edge holds 111 B of RSS a number at 1 M and 141 B at 10 M with one
//! distinct flow per number (`tools/numbers-start`, docs/PERFORMANCE.md).
//!
//! # Layout
//!
//! * `snapshot.rs`: [`NumberRecord`], [`NumberState`], [`Route`], [`RoutingSnapshot`].
//! * `base.rs`: the frozen base layer and its builder.
//! * `numbers.rs`: [`NumberMap`] (base + delta).
//! * `table.rs`: [`RoutingTable`] (the `ArcSwap`, the writer mutex, compaction).
//! * `peers.rs`: [`Peers`], source-IP classification.
//! * `events.rs`: [`ClaimSpec`], [`RoutingError`], [`build_record`].

pub mod base;
pub mod events;
pub mod numbers;
pub mod peers;
pub mod snapshot;
pub mod table;

#[cfg(test)]
mod tests;

pub use events::{build_record, check_flow, parse_number, ClaimSpec, RoutingError};
pub use numbers::{NumberMap, NumberMapBuilder};
pub use peers::{CarrierPeers, Conflict, PeerLink, Peers, Source};
pub use snapshot::{DefaultCaps, NumberRecord, NumberRef, NumberState, Route, RoutingSnapshot};
pub use table::{CompactionJob, CompactionRunner, OldBase, RoutingTable, TableOptions, SWAPS_TOTAL};
