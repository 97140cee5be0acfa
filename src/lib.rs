//! sipedge: the carrier-facing SIP edge of a contact-center platform.
//!
//! # Layout
//! - `sip/`: the wire format (parse, build, framing, numbers). Sans-IO.
//! - `proxy/`: the sans-IO transaction and dialog core (`Core`).
//! - `routing/`: the lock-free, hot-swapped routing table.
//! - `admission/`: per-number and instance concurrency caps (RAII permits).
//! - `cluster/`: cluster mode: caps shared through Redis leases (the I/O side; the core only asks).
//! - `failover/`: hop plans, failure classification, health hysteresis.
//! - `inventory/`: the durable number lifecycle (redb).
//! - `config/`: the TOML config, its validation, the numbers seed file.
//! - `transport/`: the only socket code: UDP/TCP drivers, sharding, flood control.
//! - `admin/`, `ctl`: the HTTP control plane and its command-line client.
//! - `app`: wiring (bind, spawn shards, serve, shut down). `state`: what the shards and the control plane share.
//!   `reload`: config → running settings, at start and on reload. `drain`: drain state (SPEC §9). `cli`: the command line.
//! - `metrics`: metric names and hot-path counters.
//! - `capture`: HEP3 capture of every SIP message to a collector. `records`: the call-records file. `logging`: log set-up.
//! - `fuzzing`: fuzz harnesses shared by `tools/fuzz` and `tests/fuzz_replay.rs` (feature `fuzzing`, doc-hidden).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod admin;
pub mod admission;
pub mod app;
pub mod capture;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod ctl;
pub mod dialog_key;
pub mod drain;
pub mod failover;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod records;
pub mod reload;
pub mod routing;
pub mod sip;
pub mod state;
pub mod token;
pub mod transport;
