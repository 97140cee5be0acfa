//! The HTTP control plane (SPEC §6): health, metrics, numbers, ports, reload.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

use crate::app::Shared;

/// Builds the router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(shared)
}

/// Serves the control plane on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    if let Err(e) = axum::serve(listener, router(shared)).await {
        tracing::error!(error = %e, "control plane stopped");
    }
}

async fn healthz() -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok\n")
}

async fn metrics_text(State(s): State<Arc<Shared>>) -> String {
    s.prometheus.render()
}
