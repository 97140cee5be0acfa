//! Bearer-token protection of the control plane (`[admin].token_file`;
//! the token itself and its loading are in `crate::token`).
//!
//! The token is read when the edge starts and again on every reload (the
//! reload is refused if the file cannot be read), and kept in
//! `Shared::admin_token`. When set, every call except `/healthz` needs
//! `Authorization: Bearer <token>`; without it the answer is a JSON 401 and
//! nothing runs.
//!
//! Exposure: a control plane on a non-loopback address without a token lets
//! anyone who can reach it release every number. We do not refuse to start
//! (an operator may firewall the port, and a refusal at 3 a.m. on a config
//! push is worse), but we log a loud warning at start and on every reload.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::state::Shared;

/// Middleware: refuses a call without the configured token.
pub async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let token = shared.admin_token.load();
    if let Some(t) = token.as_deref() {
        let ok = req.headers().get(AUTHORIZATION).is_some_and(|v| t.accepts(v.as_bytes()));
        if !ok {
            return ApiError::Unauthorized.into_response();
        }
    }
    drop(token);
    next.run(req).await
}
