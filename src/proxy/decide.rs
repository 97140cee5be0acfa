//! The routing decision for an initial INVITE: which number, which slot,
//! which next hops, which headers. Pure: reads the snapshot, takes a permit.

use smallvec::SmallVec;
use std::sync::Arc;

use super::context::{CoreConfig, DownSet, HopCache};
use super::respond::Reject;
use crate::admission::{self, Admission, Permit};
use crate::failover::{self, HopCandidate, HopKey};
use crate::routing::{NumberRef, Route, RoutingSnapshot};
use crate::sip::{uri, Msg, NumberKind, E164};

/// Which way a call goes through the edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Carrier → flow engine.
    Inbound,
    /// Flow engine → carrier.
    Outbound,
}

impl Direction {
    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Everything needed to forward an admitted INVITE.
pub struct Decision {
    /// The number the call counts against.
    pub number: E164,
    /// Its concurrency slot; released when the call ends.
    pub permit: Permit,
    /// Next hops in the order to try them (serial failover).
    pub plan: SmallVec<[HopKey; 8]>,
    /// Headers to add (`X-Flow-Id`, ...).
    pub headers: SmallVec<[(&'static str, Arc<str>); 3]>,
    /// User part for the forwarded Request-URI.
    pub user: String,
    /// Display name for From / P-Asserted-Identity (outbound cnam).
    pub cnam: Option<Arc<str>>,
    /// The number's kind (for call records).
    pub kind: NumberKind,
    /// The number's flow, if it has one (for call records).
    pub flow: Option<Arc<str>>,
    /// Cluster mode: the number's cap, still to be admitted through Redis.
    pub shared_cap: Option<u32>,
}

/// The user part of a SIP or tel URI, unescaped, without its parameters.
pub fn uri_user(u: &str) -> Option<String> {
    let parts = uri::parse_uri(u)?;
    let user = parts.user?;
    let user = uri::user_unescaped(user);
    let user = user.split(';').next().unwrap_or("");
    Some(user.to_string())
}

/// Takes the call's local slots. In cluster mode a capped number's cap is
/// the cluster's (Redis decides it next), so locally only the instance cap
/// applies here; the cap is handed back for the shared admission.
fn admit(adm: &Arc<Admission>, rec: &NumberRef<'_>, cfg: &CoreConfig) -> Result<(Permit, Option<u32>), Reject> {
    let cap = rec.cap(cfg.default_caps);
    let (local_cap, shared) = match cfg.cluster {
        Some(_) if cap > 0 => (0, Some(cap)),
        _ => (cap, None),
    };
    let permit = adm.try_admit(rec.e164, local_cap).map_err(|e| match e {
        admission::AtCap::NumberFull => Reject::NumberBusy,
        admission::AtCap::InstanceFull => Reject::InstanceFull,
    })?;
    Ok((permit, shared))
}

fn plan_of(groups: &[&[HopCandidate]], cfg: &CoreConfig, down: &DownSet) -> Result<SmallVec<[HopKey; 8]>, Reject> {
    let plan = failover::plan(groups, &cfg.own_az, |k| down.is_up(k));
    if plan.is_empty() {
        return Err(Reject::NoRoute);
    }
    Ok(plan)
}

/// A call from carrier `carrier` to one of our numbers.
pub fn inbound(
    msg: &Msg,
    carrier: usize,
    snap: &RoutingSnapshot,
    adm: &Arc<Admission>,
    hops: &HopCache,
    down: &DownSet,
    cfg: &CoreConfig,
) -> Result<Decision, Reject> {
    let user = msg.request_uri().and_then(uri_user).ok_or(Reject::BadNumber)?;
    let number = E164::parse_dialed(&user).map_err(|_| Reject::BadNumber)?;
    let rec = match snap.route(number) {
        Route::Routable(rec) => rec,
        Route::NoFlow(_) => return Err(Reject::NoFlow),
        Route::Released => return Err(Reject::Released),
        Route::NotFound => return Err(Reject::UnknownNumber),
    };
    let flow = rec.flow.cloned().ok_or(Reject::NoFlow)?;
    let plan = plan_of(&[hops.flow.as_slice()], cfg, down)?;
    let (permit, shared_cap) = admit(adm, &rec, cfg)?;
    let carrier_name = snap.peers.carriers.get(carrier).map(|c| c.name.clone()).unwrap_or_else(|| Arc::from("unknown"));
    let mut headers = SmallVec::new();
    headers.push(("X-Flow-Id", flow.clone()));
    headers.push(("X-Number-Kind", Arc::from(rec.kind.as_str())));
    headers.push(("X-Carrier", carrier_name));
    Ok(Decision { number, permit, plan, headers, user, cnam: None, kind: rec.kind, flow: Some(flow), shared_cap })
}

/// A call from the flow engine to the PSTN, with one of our numbers as caller ID.
pub fn outbound(
    msg: &Msg,
    snap: &RoutingSnapshot,
    adm: &Arc<Admission>,
    hops: &HopCache,
    down: &DownSet,
    cfg: &CoreConfig,
) -> Result<Decision, Reject> {
    let caller =
        msg.p_asserted_identity_uri().or_else(|| msg.from_uri()).and_then(uri_user).ok_or(Reject::CallerIdNotOurs)?;
    let number = E164::parse_dialed(&caller).map_err(|_| Reject::CallerIdNotOurs)?;
    let rec = match snap.route(number) {
        Route::Routable(rec) | Route::NoFlow(rec) => rec,
        Route::Released | Route::NotFound => return Err(Reject::CallerIdNotOurs),
    };
    let user = msg.request_uri().and_then(uri_user).ok_or(Reject::BadNumber)?;
    // The dialed number is checked like an inbound one: a carrier must never get `sip:abc@...`.
    E164::parse_dialed(&user).map_err(|_| Reject::BadNumber)?;
    // A DID is bound to its one carrier; a toll-free number may use them all, in its order.
    let take = match rec.kind {
        NumberKind::Did => 1,
        NumberKind::TollFree => usize::MAX,
    };
    let groups: SmallVec<[&[HopCandidate]; 4]> = rec
        .carriers
        .iter()
        .take(take)
        .filter_map(|name| snap.peers.carrier(name).and_then(|(i, _)| hops.carriers.get(i)))
        .map(|v| v.as_slice())
        .collect();
    let plan = plan_of(&groups, cfg, down)?;
    let (permit, shared_cap) = admit(adm, &rec, cfg)?;
    Ok(Decision {
        number,
        permit,
        plan,
        headers: SmallVec::new(),
        user,
        cnam: rec.cnam.cloned(),
        kind: rec.kind,
        flow: rec.flow.cloned(),
        shared_cap,
    })
}
