//! `/v1/numbers`: show, list, claim, release, restore, set flow.

use std::collections::BinaryHeap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::Json;

use super::body::{JsonBody, NoBody};
use super::error::ApiError;
use super::Ctx;
use crate::inventory::RELEASE_WINDOW_S;
use crate::routing::{parse_number, ClaimSpec, NumberRecord, NumberRef, NumberState, Route, RoutingError};
use crate::sip::E164;
use crate::state::unix_now;

/// Most numbers one `GET /v1/numbers` page returns.
pub const MAX_PAGE: usize = 1000;
/// Page size when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;

/// The `{e164}` path segment, in any dialed form (`+1800...`, `%2B1800...`,
/// `1800...`, 10-digit NANP); a malformed one is a 400 `bad_number`.
pub struct NumberParam(pub E164);

impl FromRequestParts<Ctx> for NumberParam {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, ctx)
            .await
            .map_err(|e| ApiError::Refused(RoutingError::BadNumber(e.body_text())))?;
        Ok(NumberParam(parse_number(&raw)?))
    }
}

/// What the control plane shows of a number.
#[derive(Debug, serde::Serialize)]
pub struct NumberView {
    /// The stored record (e164, kind, flow, carriers, max_concurrent, cnam, state, ...).
    #[serde(flatten)]
    pub record: NumberRecord,
    /// What a call to it gets now: `routable`, `no_flow` (480), `released`
    /// (410) or `not_found` (404, a port-in not yet active).
    pub routing: &'static str,
    /// The cap in force (the record's, else the `[limits]` default); 0 = unlimited.
    pub effective_max_concurrent: u32,
    /// Calls up right now (inbound to it and outbound with it as caller ID).
    pub active_calls: u32,
    /// For a released number: the end of its restore window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restorable_until_unix_s: Option<u64>,
}

impl Ctx {
    /// The view of `rec` with its live call count and effective cap.
    pub fn view(&self, record: NumberRecord) -> NumberView {
        let caps = self.shared.config.load().limits.default_caps();
        let live = NumberRef::from(&record);
        let (routing, restorable_until_unix_s) = match (Route::of(live), record.state) {
            (Route::Routable(_), _) => ("routable", None),
            (Route::NoFlow(_), _) => ("no_flow", None),
            (Route::Released, NumberState::Released { released_at_unix_s }) => {
                ("released", Some(released_at_unix_s.saturating_add(RELEASE_WINDOW_S)))
            }
            (Route::Released, _) => ("released", None),
            (Route::NotFound, _) => ("not_found", None),
        };
        NumberView {
            effective_max_concurrent: live.cap(caps),
            active_calls: self.shared.admission.active(record.e164),
            routing,
            restorable_until_unix_s,
            record,
        }
    }
}

/// `GET /v1/numbers/{e164}`.
pub async fn show(State(ctx): State<Ctx>, NumberParam(n): NumberParam) -> Result<Json<NumberView>, ApiError> {
    let rec = ctx.shared.inventory.get(n).ok_or(RoutingError::UnknownNumber(n))?;
    Ok(Json(ctx.view(rec)))
}

/// `GET /v1/numbers` query.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (default 100, at most 1000).
    pub limit: Option<usize>,
    /// Only numbers greater than this one (the previous page's `next_after`).
    pub after: Option<String>,
    /// Only numbers in this state: `active`, `released`, `port_in_pending`, `port_out_pending`.
    pub state: Option<String>,
}

/// One page of `GET /v1/numbers`.
#[derive(Debug, serde::Serialize)]
pub struct NumberPage {
    /// The numbers, in ascending order.
    pub numbers: Vec<NumberView>,
    /// Numbers in the table (every state).
    pub total: usize,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<E164>,
}

fn state_name(s: &NumberState) -> &'static str {
    match s {
        NumberState::Active => "active",
        NumberState::Released { .. } => "released",
        NumberState::PortInPending { .. } => "port_in_pending",
        NumberState::PortOutPending { .. } => "port_out_pending",
    }
}

/// `GET /v1/numbers?limit=&after=&state=`: numbers in ascending order, paged.
/// The table is a hash map, so a page walks it once keeping the `limit`
/// smallest numbers above `after` in a heap: O(n log limit), no full sort.
pub async fn list(
    State(ctx): State<Ctx>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<NumberPage>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::BadQuery(format!("limit must be 1..={MAX_PAGE}")));
    }
    let after = q.after.as_deref().map(parse_number).transpose()?.map_or(0, E164::as_u64);
    let wanted: Option<String> = q.state.as_deref().map(|s| s.trim().to_owned());
    if let Some(w) = wanted.as_deref() {
        if !["active", "released", "port_in_pending", "port_out_pending"].contains(&w) {
            return Err(ApiError::BadQuery(format!(
                "state {w:?} is not one of active, released, port_in_pending, port_out_pending"
            )));
        }
    }
    let snap = ctx.shared.routing.load_full();
    let page = tokio::task::spawn_blocking(move || {
        let mut heap: BinaryHeap<u64> = BinaryHeap::with_capacity(limit + 1);
        for r in snap.numbers.iter() {
            let k = r.e164.as_u64();
            if k <= after || wanted.as_deref().is_some_and(|w| w != state_name(&r.state)) {
                continue;
            }
            if heap.len() < limit {
                heap.push(k);
            } else if heap.peek().is_some_and(|top| k < *top) {
                heap.pop();
                heap.push(k);
            }
        }
        let keys = heap.into_sorted_vec();
        let recs: Vec<NumberRecord> = keys
            .iter()
            .filter_map(|k| E164::from_u64(*k))
            .filter_map(|n| snap.record(n).map(|r| r.to_record()))
            .collect();
        (recs, snap.len())
    });
    let (recs, total) = page.await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let next_after = (recs.len() == limit).then(|| recs.last().map(|r| r.e164)).flatten();
    let numbers = recs.into_iter().map(|r| ctx.view(r)).collect();
    Ok(Json(NumberPage { numbers, total, next_after }))
}

/// `POST /v1/numbers/{e164}/claim` `{flow, carriers, kind?, max_concurrent?, cnam?}`.
pub async fn claim(
    State(ctx): State<Ctx>,
    NumberParam(n): NumberParam,
    JsonBody(spec): JsonBody<ClaimSpec>,
) -> Result<Json<NumberView>, ApiError> {
    let rec = ctx.inventory(move |inv| inv.claim(n, spec, unix_now())).await?;
    tracing::info!(target: "sipedge::audit", number = %n, flow = ?rec.flow.as_deref(), "claimed");
    Ok(Json(ctx.view(rec)))
}

/// `POST /v1/numbers/{e164}/release`: to the deletion queue (410, restorable for 7 days).
pub async fn release(
    State(ctx): State<Ctx>,
    NumberParam(n): NumberParam,
    _: NoBody,
) -> Result<Json<NumberView>, ApiError> {
    let rec = ctx.inventory(move |inv| inv.release(n, unix_now())).await?;
    tracing::info!(target: "sipedge::audit", number = %n, "released");
    Ok(Json(ctx.view(rec)))
}

/// `POST /v1/numbers/{e164}/restore`: back from the deletion queue with its old record.
pub async fn restore(
    State(ctx): State<Ctx>,
    NumberParam(n): NumberParam,
    _: NoBody,
) -> Result<Json<NumberView>, ApiError> {
    let rec = ctx.inventory(move |inv| inv.restore(n, unix_now())).await?;
    tracing::info!(target: "sipedge::audit", number = %n, "restored");
    Ok(Json(ctx.view(rec)))
}

/// `PUT /v1/numbers/{e164}/flow` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowBody {
    /// The flow id new inbound calls are handed to.
    pub flow: String,
}

/// `PUT /v1/numbers/{e164}/flow` `{flow}`: new calls get the new `X-Flow-Id`.
pub async fn set_flow(
    State(ctx): State<Ctx>,
    NumberParam(n): NumberParam,
    JsonBody(body): JsonBody<FlowBody>,
) -> Result<Json<NumberView>, ApiError> {
    let rec = ctx.inventory(move |inv| inv.set_flow(n, body.flow, unix_now())).await?;
    tracing::info!(target: "sipedge::audit", number = %n, flow = ?rec.flow.as_deref(), "flow set");
    Ok(Json(ctx.view(rec)))
}
