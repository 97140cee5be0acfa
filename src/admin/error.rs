//! The one place where control-plane failures become HTTP answers: every
//! handler returns `Result<_, ApiError>`, and
//! [`ApiError::into_response`] turns it into a status and a JSON body
//! `{"error": "<code>", "message": "<what is wrong>"}`.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::config::ConfigErrors;
use crate::inventory::InventoryError;
use crate::routing::RoutingError;

/// Why a control-plane call failed. Nothing changed in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON, or not the shape this call takes
    /// (a missing or unknown field, a wrong type).
    #[error("bad JSON body: {0}")]
    BadJson(String),
    /// The query string has an unknown key or a bad value.
    #[error("bad query string: {0}")]
    BadQuery(String),
    /// A port order id that is not a number.
    #[error("{0:?} is not a port order id (a positive integer)")]
    BadPortId(String),
    /// The body is larger than `[admin].max_body_bytes`.
    #[error("request body is larger than {limit} bytes ([admin].max_body_bytes)")]
    BodyTooLarge {
        /// The limit in force.
        limit: usize,
    },
    /// The body could not be read (the client went away, bad chunking).
    #[error("cannot read the request body: {0}")]
    BadBody(String),
    /// `Authorization: Bearer <token>` missing or wrong while a token is configured.
    #[error("missing or wrong bearer token (Authorization: Bearer <token>)")]
    Unauthorized,
    /// No such path.
    #[error("no such path: {0}")]
    NoRoute(String),
    /// The path exists, the method does not.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    /// The inventory refused the event (bad input, or not allowed in the
    /// number's or order's current state).
    #[error(transparent)]
    Refused(#[from] RoutingError),
    /// The durable store failed; the event was not applied.
    #[error("{0}")]
    Store(InventoryError),
    /// `POST /v1/reload` with a config file that does not validate; the
    /// running config and table are kept.
    #[error("the config file has {} error(s); the running config is kept", .0.0.len())]
    InvalidConfig(ConfigErrors),
    /// A blocking task failed to complete (panicked or was cancelled).
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<InventoryError> for ApiError {
    fn from(e: InventoryError) -> Self {
        match e {
            InventoryError::Routing(r) => ApiError::Refused(r),
            other => ApiError::Store(other),
        }
    }
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            ApiError::BadJson(_) | ApiError::BadQuery(_) | ApiError::BadPortId(_) | ApiError::BadBody(_) => 400,
            ApiError::InvalidConfig(_) => 400,
            ApiError::BodyTooLarge { .. } => 413,
            ApiError::Unauthorized => 401,
            ApiError::NoRoute(_) => 404,
            ApiError::MethodNotAllowed => 405,
            ApiError::Refused(e) => routing_status(e),
            ApiError::Store(e) => store_status(e),
            ApiError::Internal(_) => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The stable, machine-readable `error` code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "bad_json",
            ApiError::BadQuery(_) => "bad_query",
            ApiError::BadPortId(_) => "bad_port_id",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BadBody(_) => "bad_body",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NoRoute(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Refused(e) => routing_code(e),
            ApiError::Store(InventoryError::Stale(_)) => "stale_write",
            ApiError::Store(InventoryError::ClusterDown(_)) => "cluster_down",
            ApiError::Store(_) => "store_error",
            ApiError::InvalidConfig(_) => "invalid_config",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// 400 bad input, 404 unknown number or port, 409 conflict with the current state.
pub fn routing_status(e: &RoutingError) -> u16 {
    use RoutingError::*;
    match e {
        UnknownCarrier(_)
        | DuplicateCarrier(_)
        | DidCarrierCount { .. }
        | NoCarriers(_)
        | CnamTooLong(_)
        | BadCnam(_)
        | EmptyPort
        | DuplicateNumber(_)
        | EmptyFlow
        | BadFlow(_)
        | BadNumber(_) => 400,
        UnknownNumber(_) | UnknownPort(_) => 404,
        AlreadyClaimed(_)
        | InDeletionQueue(_)
        | NotClaimed(_)
        | NotReleased(_)
        | RestoreWindowOver(_)
        | PortFinished(_)
        | PortWindowNotOpen { .. }
        | NumberBusyInPort(_) => 409,
    }
}

/// The store's status: the routing error's 4xx, 409 for a stale write,
/// 503 when the cluster cannot take the event, else 500.
pub fn store_status(e: &InventoryError) -> u16 {
    match e {
        InventoryError::Routing(r) => routing_status(r),
        InventoryError::Stale(_) => 409,
        InventoryError::ClusterDown(_) => 503,
        _ => 500,
    }
}

/// One code per refusal, so clients can branch without parsing messages.
pub fn routing_code(e: &RoutingError) -> &'static str {
    use RoutingError::*;
    match e {
        UnknownCarrier(_) => "unknown_carrier",
        DuplicateCarrier(_) => "duplicate_carrier",
        DidCarrierCount { .. } => "did_carrier_count",
        NoCarriers(_) => "no_carriers",
        CnamTooLong(_) => "cnam_too_long",
        BadCnam(_) => "bad_cnam",
        AlreadyClaimed(_) => "already_claimed",
        InDeletionQueue(_) => "in_deletion_queue",
        UnknownNumber(_) => "unknown_number",
        NotClaimed(_) => "not_claimed",
        NotReleased(_) => "not_released",
        RestoreWindowOver(_) => "restore_window_over",
        UnknownPort(_) => "unknown_port",
        PortFinished(_) => "port_finished",
        PortWindowNotOpen { .. } => "port_window_not_open",
        NumberBusyInPort(_) => "number_in_port",
        EmptyPort => "empty_port",
        DuplicateNumber(_) => "duplicate_number",
        EmptyFlow => "empty_flow",
        BadFlow(_) => "bad_flow",
        BadNumber(_) => "bad_number",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "control plane");
        }
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let (ApiError::InvalidConfig(errors), Some(obj)) = (&self, body.as_object_mut()) {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            obj.insert("errors".into(), list.into());
        }
        let mut resp = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::E164;

    #[test]
    fn routing_errors_map_to_http_classes() {
        let n = E164::parse_dialed("+18005550100").unwrap();
        assert_eq!(routing_status(&RoutingError::UnknownCarrier("x".into())), 400);
        assert_eq!(routing_status(&RoutingError::UnknownNumber(n)), 404);
        assert_eq!(routing_status(&RoutingError::UnknownPort(3)), 404);
        assert_eq!(routing_status(&RoutingError::AlreadyClaimed(n)), 409);
        assert_eq!(routing_status(&RoutingError::RestoreWindowOver(n)), 409);
    }
}
