//! Which Redis the cluster tasks talk to, and how a batch goes out.
//!
//! A single Redis (or Valkey) takes each batch as one pipeline on one
//! multiplexed connection. A Redis Cluster refuses a pipeline whose keys span
//! hash slots, and every number has a slot of its own, so there each command
//! of a batch is sent on its own, all at once: the cluster connection writes
//! them back to back to each node, so a batch still costs about one round
//! trip per node, not one per call.
//!
//! `redis_url = "redis+cluster://host:port[,host:port…]"` selects Redis
//! Cluster and lists the seed nodes; any other URL is a single server.

use std::time::Duration;

use futures_util::future::join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, Pipeline, RedisResult, ServerErrorKind};

/// The URL scheme that selects Redis Cluster.
pub const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Where `[cluster] redis_url` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server: the URL as given.
    Single(String),
    /// Redis Cluster: the seed nodes, each as `redis://host:port`.
    Cluster(Vec<String>),
}

/// Parses `redis_url`. A cluster URL must list at least one `host:port`, and
/// may only name database 0 (the only one Redis Cluster has).
pub fn target(url: &str) -> Result<Target, String> {
    let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) else {
        redis::Client::open(url).map_err(|e| e.to_string())?;
        return Ok(Target::Single(url.to_owned()));
    };
    let (nodes, db) = rest.split_once('/').unwrap_or((rest, ""));
    if !db.is_empty() && db != "0" {
        return Err(format!("Redis Cluster has only database 0, not {db:?}"));
    }
    let mut seeds = Vec::new();
    for node in nodes.split(',').map(str::trim) {
        let seed = format!("redis://{node}");
        let valid = node.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !valid || redis::Client::open(seed.as_str()).is_err() {
            return Err(format!("{node:?} is not a host:port seed node"));
        }
        seeds.push(seed);
    }
    Ok(Target::Cluster(seeds))
}

/// A connection for one task. Cloning gives a handle on the same single-server
/// connection, or a cluster handle that connects on first use.
#[derive(Clone)]
pub enum Backend {
    /// One server, reconnected by the manager.
    Single(ConnectionManager),
    /// Redis Cluster: connected lazily, and again after the cluster was unreachable.
    Cluster { client: Box<ClusterClient>, con: Option<ClusterConnection> },
}

impl Backend {
    /// A backend for `url`; nothing is connected yet (a Redis down at start is not fatal).
    pub fn open(url: &str, connect_timeout: Duration, response_timeout: Duration) -> RedisResult<Backend> {
        let bad = |why: String| redis::RedisError::from((ErrorKind::InvalidClientConfig, "redis_url", why));
        match target(url).map_err(bad)? {
            Target::Single(url) => {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                let con = ConnectionManager::new_lazy_with_config(redis::Client::open(url)?, cfg)?;
                Ok(Backend::Single(con))
            }
            Target::Cluster(seeds) => {
                let client = ClusterClientBuilder::new(seeds)
                    .connection_timeout(connect_timeout)
                    .response_timeout(response_timeout)
                    .retries(1)
                    .build()?;
                Ok(Backend::Cluster { client: Box::new(client), con: None })
            }
        }
    }

    /// Runs every command of `p` (EVALSHAs returning integers): one reply per
    /// command, in order. If Redis forgot the scripts (restarted empty, a new
    /// cluster node), `load` is run and the batch retried once: every script
    /// is idempotent for the same member.
    pub async fn run(&mut self, p: &Pipeline, load: &[&str]) -> RedisResult<Vec<i64>> {
        match self.run_once(p).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                self.load(load).await?;
                self.run_once(p).await
            }
            r => r,
        }
    }

    async fn run_once(&mut self, p: &Pipeline) -> RedisResult<Vec<i64>> {
        match self {
            Backend::Single(con) => p.query_async::<Vec<i64>>(con).await,
            Backend::Cluster { client, con } => {
                let c = connect(client, con).await?;
                let replies = join_all(p.cmd_iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<i64>(&mut c).await }
                }))
                .await;
                let out: RedisResult<Vec<i64>> = replies.into_iter().collect();
                if out.as_ref().is_err_and(|e| e.is_unrecoverable_error()) {
                    // Made again on the next batch.
                    *con = None;
                }
                out
            }
        }
    }

    /// `SCRIPT LOAD` of each source (on every node of a cluster).
    async fn load(&mut self, sources: &[&str]) -> RedisResult<()> {
        match self {
            Backend::Single(con) => load_on(con, sources).await,
            Backend::Cluster { client, con } => load_on(&mut connect(client, con).await?, sources).await,
        }
    }
}

/// The cluster connection, made now if there is none.
async fn connect(client: &ClusterClient, con: &mut Option<ClusterConnection>) -> RedisResult<ClusterConnection> {
    if let Some(c) = con {
        return Ok(c.clone());
    }
    let c = client.get_async_connection().await?;
    *con = Some(c.clone());
    Ok(c)
}

async fn load_on(con: &mut impl ConnectionLike, sources: &[&str]) -> RedisResult<()> {
    for src in sources {
        redis::cmd("SCRIPT").arg("LOAD").arg(*src).query_async::<redis::Value>(con).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_a_server_or_cluster_seeds() {
        assert_eq!(target("redis://127.0.0.1:6379/0"), Ok(Target::Single("redis://127.0.0.1:6379/0".into())));
        assert_eq!(
            target("redis+cluster://10.0.0.1:7000, 10.0.0.2:7001/0"),
            Ok(Target::Cluster(vec!["redis://10.0.0.1:7000".into(), "redis://10.0.0.2:7001".into()]))
        );
        assert_eq!(target("redis+cluster://[::1]:7000"), Ok(Target::Cluster(vec!["redis://[::1]:7000".into()])));
        assert!(target("redis+cluster://10.0.0.1:7000/3").is_err_and(|e| e.contains("only database 0")));
        assert!(target("redis+cluster://10.0.0.1").is_err_and(|e| e.contains("host:port")));
        assert!(target("redis+cluster://").is_err());
        assert!(target("redis+cluster://a:1,,b:2").is_err());
        assert!(target("http://x").is_err());
    }
}
