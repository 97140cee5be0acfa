//! `GET /v1/carriers`: each carrier trunk with its limits, the calls it holds
//! now, and every link with its health (SPEC §10), priority and weight
//! (SPEC §13); the flow-engine endpoints likewise, so the effective plan of
//! both directions is in one answer.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use super::Ctx;
use std::sync::Arc;

use crate::failover::{HopKey, FLOW_ENGINE};
use crate::routing::PeerLink;

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
            let links: Vec<Value> = c.links.iter().map(|l| link(&ctx, &c.name, l)).collect();
            json!({
                "name": &*c.name,
                "active_calls": s.map_or(0, |s| s.active),
                "max_concurrent": s.map_or(0, |s| s.max_concurrent),
                "max_cps": s.map_or(0, |s| s.max_cps),
                "links": links,
            })
        })
        .collect();
    let fe: Arc<str> = Arc::from(FLOW_ENGINE);
    let flow: Vec<Value> = routing.peers.flow_engine.iter().map(|l| link(&ctx, &fe, l)).collect();
    Json(json!({ "carriers": carriers, "flow_engine": flow }))
}

/// One link or endpoint: where it is, its rank, and whether it takes new calls.
fn link(ctx: &Ctx, group: &Arc<str>, l: &PeerLink) -> Value {
    let key = HopKey { group: group.clone(), az: l.az.clone(), addr: l.addr, transport: l.transport };
    json!({
        "az": &*l.az,
        "addr": l.addr.to_string(),
        "transport": l.transport.as_str(),
        "priority": l.priority,
        "weight": l.weight,
        "drain": l.drain,
        "up": ctx.shared.down.is_up(&key),
    })
}
