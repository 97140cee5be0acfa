//! sipedge: the carrier-facing SIP edge of a contact-center platform.
//!
//! # Layout
//! - `sip/`: the wire format (parse, build, framing, numbers). Sans-IO.
//! - `proxy/`: the sans-IO transaction and dialog core (`Core`).
//! - `routing/`: the lock-free, hot-swapped routing table.
//! - `admission/`: per-number and instance concurrency caps (RAII permits).
//! - `failover/`: hop plans, failure classification, health hysteresis.
//! - `inventory/`: the durable number lifecycle (redb).
//! - `config/`: the TOML config, its validation, the numbers seed file.
//! - `metrics`: metric names and hot-path counters.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing))]

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod ctl;
pub mod metrics;
pub mod proxy;
pub mod sip;
pub mod transport;
