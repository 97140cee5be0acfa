//! `POST /v1/drain`: the same drain as SIGTERM (SPEC §9).

use axum::extract::State;
use axum::Json;

use super::body::NoBody;
use super::Ctx;

/// The drain's state after the call.
#[derive(Debug, serde::Serialize)]
pub struct Draining {
    /// Always true.
    pub draining: bool,
    /// False if a drain was already under way.
    pub started: bool,
    /// Calls still in progress, once every shard has reported (reports come
    /// every 50 ms, so the first answer may not have it yet).
    pub live_calls: Option<usize>,
}

/// Starts draining: new INVITEs and OPTIONS get 503, `/healthz` 503, and the
/// edge exits once its last call ends (or after `[edge].drain_timeout_s`).
pub async fn drain(State(ctx): State<Ctx>, _: NoBody) -> Json<Draining> {
    let started = ctx.shared.drain.start();
    if started {
        tracing::info!(target: "sipedge::audit", "drain started through the control plane");
    }
    Json(Draining { draining: true, started, live_calls: ctx.shared.drain.live() })
}
