//! `/v1/ports`: create, show, list, cancel, complete port orders.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;

use super::body::{JsonBody, NoBody};
use super::error::ApiError;
use super::Ctx;
use crate::inventory::{PortOrder, PortRequest};
use crate::routing::RoutingError;
use crate::state::unix_now;

/// The `{id}` path segment: a port order id (400 `bad_port_id` otherwise).
pub struct PortId(pub u64);

impl FromRequestParts<Ctx> for PortId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
        let Path(raw) =
            Path::<String>::from_request_parts(parts, ctx).await.map_err(|e| ApiError::BadPortId(e.body_text()))?;
        raw.trim().parse().map(PortId).map_err(|_| ApiError::BadPortId(raw))
    }
}

/// `GET /v1/ports` answer.
#[derive(Debug, serde::Serialize)]
pub struct PortList {
    /// Every order, by id.
    pub ports: Vec<PortOrder>,
}

/// `POST /v1/ports` `{direction, numbers, carriers?, flow?, window_start?}`:
/// 201 with the order (its `id` is what complete/cancel take).
pub async fn create(
    State(ctx): State<Ctx>,
    JsonBody(req): JsonBody<PortRequest>,
) -> Result<(StatusCode, Json<PortOrder>), ApiError> {
    let order = ctx.inventory(move |inv| inv.create_port(req, unix_now())).await?;
    tracing::info!(target: "sipedge::audit", id = order.id, direction = ?order.direction, numbers = order.numbers.len(), "port order created");
    Ok((StatusCode::CREATED, Json(order)))
}

/// `GET /v1/ports/{id}`.
pub async fn show(State(ctx): State<Ctx>, PortId(id): PortId) -> Result<Json<PortOrder>, ApiError> {
    let order = ctx.shared.inventory.port(id).ok_or(RoutingError::UnknownPort(id))?;
    Ok(Json(order))
}

/// `GET /v1/ports`.
pub async fn list(State(ctx): State<Ctx>) -> Json<PortList> {
    Json(PortList { ports: ctx.shared.inventory.ports() })
}

/// `POST /v1/ports/{id}/cancel`: calls off a pending order.
pub async fn cancel(State(ctx): State<Ctx>, PortId(id): PortId, _: NoBody) -> Result<Json<PortOrder>, ApiError> {
    let order = ctx.inventory(move |inv| inv.cancel_port(id)).await?;
    tracing::info!(target: "sipedge::audit", id, "port order cancelled");
    Ok(Json(order))
}

/// `POST /v1/ports/{id}/complete`: the port event (in: active; out: removed).
pub async fn complete(State(ctx): State<Ctx>, PortId(id): PortId, _: NoBody) -> Result<Json<PortOrder>, ApiError> {
    let order = ctx.inventory(move |inv| inv.complete_port(id, unix_now())).await?;
    tracing::info!(target: "sipedge::audit", id, "port order completed");
    Ok(Json(order))
}
