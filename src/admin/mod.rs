//! The HTTP control plane (SPEC §6): health, metrics, numbers, ports, reload.
//!
//! Handlers parse and check their input, then call the inventory (durable in
//! redb before it returns, so an answer means the event survives a crash) on
//! the blocking pool, because a commit fsyncs. They never touch sockets.
//! Every failure is an [`ApiError`], mapped to a JSON 4xx in `error.rs` only.
//!
//! | call | handler |
//! |---|---|
//! | `GET /healthz` (no token needed) | `healthz` |
//! | `GET /metrics` | `metrics_text` |
//! | `GET /v1/numbers?limit=&after=&state=` | [`numbers::list`] |
//! | `GET /v1/numbers/{e164}` | [`numbers::show`] |
//! | `POST /v1/numbers/{e164}/claim` | [`numbers::claim`] |
//! | `POST /v1/numbers/{e164}/release` | [`numbers::release`] |
//! | `POST /v1/numbers/{e164}/restore` | [`numbers::restore`] |
//! | `PUT /v1/numbers/{e164}/flow` | [`numbers::set_flow`] |
//! | `GET /v1/ports`, `POST /v1/ports` | [`ports::list`], [`ports::create`] |
//! | `GET /v1/ports/{id}` | [`ports::show`] |
//! | `POST /v1/ports/{id}/cancel`, `.../complete` | [`ports::cancel`], [`ports::complete`] |
//! | `POST /v1/reload` | [`reload::reload`] |
//! | `POST /v1/drain` | [`drain::drain`] |
//!
//! # Layout
//!
//! * `error.rs`: [`ApiError`] and its one mapping to status + JSON.
//! * `body.rs`: JSON body extractors that fail with an `ApiError`.
//! * `auth.rs`: the bearer token (`[admin].token_file`) and the exposure warning.
//! * `numbers.rs`, `ports.rs`, `reload.rs`, `drain.rs`: the handlers.

mod auth;
mod body;
mod carriers;
mod cluster;
pub mod drain;
pub mod error;
pub mod numbers;
pub mod ports;
pub mod reload;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, Uri};
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use std::sync::Arc;

use crate::inventory::{Inventory, InventoryError};
use crate::state::Shared;

pub use error::ApiError;

/// What every handler gets: the edge's shared state and the body limit the
/// router was built with (`[admin].max_body_bytes`, fixed until restart).
#[derive(Clone)]
pub struct Ctx {
    /// The edge's shared state.
    pub shared: Arc<Shared>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
}

impl Ctx {
    /// Runs an inventory event on the blocking pool (a commit fsyncs).
    pub async fn inventory<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Inventory) -> Result<T, InventoryError> + Send + 'static,
    {
        let inv = Arc::clone(&self.shared.inventory);
        // If the client goes away the task still runs to its end, so an event
        // is either fully applied or not at all; only the answer is lost.
        tokio::task::spawn_blocking(move || f(&inv))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(ApiError::from)
    }
}

/// Builds the router. Every route but `/healthz` sits behind the token check.
pub fn router(shared: Arc<Shared>) -> Router {
    let body_limit = shared.config.load().admin.max_body_bytes;
    let ctx = Ctx { shared: Arc::clone(&shared), body_limit };
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/v1/numbers", get(numbers::list))
        .route("/v1/numbers/{e164}", get(numbers::show))
        .route("/v1/numbers/{e164}/claim", post(numbers::claim))
        .route("/v1/numbers/{e164}/release", post(numbers::release))
        .route("/v1/numbers/{e164}/restore", post(numbers::restore))
        .route("/v1/numbers/{e164}/flow", put(numbers::set_flow))
        .route("/v1/ports", get(ports::list).post(ports::create))
        .route("/v1/ports/{id}", get(ports::show))
        .route("/v1/ports/{id}/cancel", post(ports::cancel))
        .route("/v1/ports/{id}/complete", post(ports::complete))
        .route("/v1/reload", post(reload::reload))
        .route("/v1/cluster", get(cluster::show))
        .route("/v1/carriers", get(carriers::list))
        .route("/v1/drain", post(drain::drain))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        // Layers wrap only what was added before them: /healthz stays open.
        .layer(from_fn_with_state(shared, auth::require_token))
        .route("/healthz", get(healthz))
        .with_state(ctx)
}

/// Serves the control plane on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    if let Ok(addr) = listener.local_addr() {
        crate::token::warn_if_exposed(addr, shared.admin_token.load().is_some());
    }
    if let Err(e) = axum::serve(listener, router(shared)).await {
        tracing::error!(error = %e, "control plane stopped");
    }
}

/// 200 while serving; 503 `{"status":"draining"}` once draining, so load
/// balancers move traffic away.
async fn healthz(State(ctx): State<Ctx>) -> axum::response::Response {
    use axum::response::IntoResponse;
    if ctx.shared.drain.is_draining() {
        let body = axum::Json(serde_json::json!({"status": "draining"}));
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    (StatusCode::OK, "ok\n").into_response()
}

async fn metrics_text(State(ctx): State<Ctx>) -> String {
    ctx.shared.prometheus.render()
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
