//! `GET /v1/cluster`: whether the edge is in cluster mode, and what it last
//! saw of Redis (SPEC §8).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::Ctx;

/// This instance's view of the cluster.
pub async fn show(State(ctx): State<Ctx>) -> Json<Value> {
    let cfg = ctx.shared.config.load();
    let Some(link) = ctx.shared.cluster.as_ref() else {
        return Json(json!({ "mode": "standalone" }));
    };
    Json(json!({
        "mode": "cluster",
        "instance": cfg.cluster.instance.clone().unwrap_or_else(|| cfg.edge.name.clone()),
        "member_prefix": &*link.prefix,
        "redis_up": link.view.is_up(),
        "instances_alive": link.view.alive(),
        "on_backend_down": cfg.cluster.on_backend_down,
        "lease_ttl_ms": cfg.cluster.lease_ttl_ms,
        "admit_timeout_ms": cfg.cluster.admit_timeout_ms,
        // Number events: when the last one applied here was accepted (Unix ms), and how long ago.
        "last_event_ms": ctx.shared.inventory.last_event_ms(),
        "event_age_ms": ctx.shared.inventory.last_event_ms().filter(|ms| *ms > 0).map(|ms| now_ms().saturating_sub(ms)),
    }))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
