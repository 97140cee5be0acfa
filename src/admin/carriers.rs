//! `GET /v1/carriers`: each carrier trunk with its limits, the calls it holds
//! now, and every link with its health (SPEC §10).

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::Ctx;
use crate::failover::HopKey;

/// Every configured carrier, in config order.
pub async fn list(State(ctx): State<Ctx>) -> Json<Value> {
    let routing = ctx.shared.routing.load();
    let status = ctx.shared.admission.trunks().status();
    let carriers: Vec<Value> = routing
        .peers
        .carriers
        .iter()
        .map(|c| {
            let s = status.iter().find(|s| s.name == c.name);
            let links: Vec<Value> = c
                .links
                .iter()
                .map(|l| {
                    let key = HopKey { group: c.name.clone(), az: l.az.clone(), addr: l.addr, transport: l.transport };
                    json!({
                        "az": &*l.az,
                        "addr": l.addr.to_string(),
                        "transport": l.transport.as_str(),
                        "drain": l.drain,
                        "up": ctx.shared.down.is_up(&key),
                    })
                })
                .collect();
            json!({
                "name": &*c.name,
                "active_calls": s.map_or(0, |s| s.active),
                "max_concurrent": s.map_or(0, |s| s.max_concurrent),
                "max_cps": s.map_or(0, |s| s.max_cps),
                "links": links,
            })
        })
        .collect();
    Json(json!({ "carriers": carriers }))
}
