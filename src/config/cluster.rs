//! `[cluster]`: several edges sharing caps through Redis (SPEC §8). Absent
//! (no `redis_url`), the edge is standalone and touches no Redis.

use serde::Deserialize;

use super::ConfigError;

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// `redis://host:port/db`, or `redis+cluster://host:port,…` (Redis Cluster seed nodes); unset = standalone.
    pub redis_url: Option<String>,
    /// This instance's name in the cluster; default `[edge].name`.
    pub instance: Option<String>,
    /// A call's slot is a lease this long, renewed while the call lives.
    pub lease_ttl_ms: u64,
    /// The longest a new INVITE waits for the shared admission.
    pub admit_timeout_ms: u64,
    /// What admission does while Redis cannot be reached.
    pub on_backend_down: BackendDown,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            instance: None,
            lease_ttl_ms: 30_000,
            admit_timeout_ms: 50,
            on_backend_down: BackendDown::LocalShare,
        }
    }
}

/// `on_backend_down`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendDown {
    /// Admit up to ceil(cap / instances alive at the last contact) per number.
    #[default]
    LocalShare,
    /// Admit under the local count only (up to the whole cap on this instance).
    FailOpen,
    /// Refuse calls to capped numbers (503 with Retry-After).
    FailClosed,
}

/// Problems in `[cluster]` (the URL is parsed, never connected to: Redis
/// being down at check time is not a config error).
pub(super) fn check_cluster(c: &ClusterConfig, v: &mut Vec<ConfigError>) {
    if let Some(url) = &c.redis_url {
        let scheme_ok = ["redis://", "rediss://", "unix://", crate::cluster::backend::CLUSTER_SCHEME]
            .iter()
            .any(|s| url.starts_with(s));
        match crate::cluster::backend::target(url) {
            Ok(_) if scheme_ok => {}
            Ok(_) => v.push(ConfigError::new(
                "cluster.redis_url",
                format!("{url:?} is not a Redis URL: use redis://host:port/db or redis+cluster://host:port,host:port"),
            )),
            Err(why) => v.push(ConfigError::new("cluster.redis_url", format!("{url:?}: {why}"))),
        }
    }
    if c.instance.as_deref().is_some_and(|i| i.trim().is_empty() || i.len() > 64 || i.contains('/')) {
        v.push(ConfigError::new("cluster.instance", "must be 1 to 64 characters, without '/'"));
    }
    if c.lease_ttl_ms < 1000 {
        v.push(ConfigError::new("cluster.lease_ttl_ms", "must be at least 1000"));
    }
    if c.admit_timeout_ms == 0 || c.admit_timeout_ms > 5000 {
        v.push(ConfigError::new("cluster.admit_timeout_ms", "must be between 1 and 5000"));
    } else if c.admit_timeout_ms >= c.lease_ttl_ms {
        v.push(ConfigError::new("cluster.admit_timeout_ms", "must be shorter than cluster.lease_ttl_ms"));
    }
}
