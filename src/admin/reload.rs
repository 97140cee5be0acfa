//! `POST /v1/reload`: the same path as SIGHUP (`Shared::reload`).

use axum::extract::State;
use axum::Json;

use super::body::NoBody;
use super::error::ApiError;
use super::Ctx;
use crate::reload::ReloadReport;

/// A successful reload.
#[derive(Debug, serde::Serialize)]
pub struct Reloaded {
    /// Always true (a refused reload is a 400 `invalid_config`).
    pub reloaded: bool,
    /// What changed, and what needs a restart.
    #[serde(flatten)]
    pub report: ReloadReport,
}

/// Re-reads the config file. A bad file → 400 `invalid_config` with every
/// problem in `errors`; the running config and routing table are kept.
pub async fn reload(State(ctx): State<Ctx>, _: NoBody) -> Result<Json<Reloaded>, ApiError> {
    let shared = ctx.shared.clone();
    // Reading and validating the file is blocking I/O (the seed CSV is not
    // read: it only matters to an empty store at start).
    let res =
        tokio::task::spawn_blocking(move || shared.reload()).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    match res {
        Ok(report) => {
            tracing::info!(target: "sipedge::audit", "config reloaded through the control plane");
            Ok(Json(Reloaded { reloaded: true, report }))
        }
        Err(errors) => {
            tracing::error!("reload refused, running config kept:\n{errors}");
            Err(ApiError::InvalidConfig(errors))
        }
    }
}
