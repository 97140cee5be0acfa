//! `[capture]`, `[records]` and `[log]`: what operators plug in (HEP capture,
//! call records, log format).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

use super::ConfigError;

/// `[capture]`: HEP3 capture to a collector; off when `hep_addr` is unset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// HEP3 collector (Homer, heplify-server, `sngrep -L udp:ADDR`).
    pub hep_addr: Option<SocketAddr>,
    /// Capture agent id stamped on every packet (default 2001).
    pub hep_id: u32,
    /// `udp` (default: Homer, heplify-server, sngrep) or `tcp` (heplify-server's
    /// HEP over TCP: packets coalesced into one stream, far cheaper per message).
    pub hep_transport: HepTransport,
}

/// How HEP packets travel to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HepTransport {
    /// One datagram per captured message.
    #[default]
    Udp,
    /// One stream; every batch of packets is one write.
    Tcp,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig { hep_addr: None, hep_id: 2001, hep_transport: HepTransport::Udp }
    }
}

/// `[records]`: one JSON line per finished call; off when `path` is unset.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsConfig {
    /// The file records are appended to (reopened on SIGHUP).
    pub path: Option<PathBuf>,
}

/// `[log]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (default) or `json` (one JSON object per line).
    pub format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Problems in `[capture]`.
pub(super) fn check_capture(c: &CaptureConfig, v: &mut Vec<ConfigError>) {
    if let Some(a) = c.hep_addr {
        if a.port() == 0 || a.ip().is_unspecified() {
            v.push(ConfigError::new(
                "capture.hep_addr",
                format!("{a} is not a collector address: give its IP and port"),
            ));
        }
    }
}

/// Problems in `[records]` (no I/O: a directory that is missing at run time
/// drops records and counts them, it does not stop the edge).
pub(super) fn check_records(r: &RecordsConfig, v: &mut Vec<ConfigError>) {
    if let Some(p) = &r.path {
        if p.as_os_str().is_empty() || p.file_name().is_none() || p.to_string_lossy().ends_with('/') {
            v.push(ConfigError::new("records.path", format!("{:?} names no file: give a file path", p.display())));
        }
    }
}
