//! Validation of lifecycle input and construction of records: pure, no I/O.
//! The inventory calls these before it writes anything, so bad input changes
//! nothing.

use std::sync::Arc;

use super::peers::Peers;
use super::snapshot::{NumberRecord, NumberState};
use crate::sip::{NumberKind, E164};

/// Longest caller name carriers accept (SPEC §2).
pub const CNAM_MAX_CHARS: usize = 15;
/// Longest flow id we accept (it travels in a SIP header).
pub const FLOW_MAX_BYTES: usize = 256;

/// What a claim (or a seed line) asks for.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimSpec {
    /// Flow id for inbound calls; none answers 480.
    #[serde(default)]
    pub flow: Option<String>,
    /// Carrier names; a DID takes exactly one.
    #[serde(default)]
    pub carriers: Vec<String>,
    /// Overrides the kind the prefix implies.
    #[serde(default)]
    pub kind: Option<NumberKind>,
    /// Per-number concurrency cap.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Caller name (at most 15 characters).
    #[serde(default)]
    pub cnam: Option<String>,
}

/// Why a lifecycle event is refused. `admin::error` maps it to the control-plane answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// A carrier name that the config does not define.
    #[error("unknown carrier {0:?}")]
    UnknownCarrier(String),
    /// The same carrier listed twice for one number.
    #[error("carrier {0:?} listed twice")]
    DuplicateCarrier(String),
    /// A DID must have exactly one carrier (SPEC §2).
    #[error("{number} is a DID and must have exactly one carrier, not {count}")]
    DidCarrierCount {
        /// The number.
        number: E164,
        /// How many carriers were given.
        count: usize,
    },
    /// A number needs at least one carrier.
    #[error("{0} has no carrier")]
    NoCarriers(E164),
    /// The caller name is longer than 15 characters.
    #[error("cnam of {0} is longer than 15 characters")]
    CnamTooLong(E164),
    /// The caller name contains a control character or a quote/backslash
    /// (it becomes a SIP display name).
    #[error("cnam of {0} contains a character that cannot go in a display name")]
    BadCnam(E164),
    /// Claim or port-in of a number that is already ours and active.
    #[error("{0} is already claimed")]
    AlreadyClaimed(E164),
    /// Claim or port-in of a number sitting in the deletion queue.
    #[error("{0} is in the deletion queue; restore it instead")]
    InDeletionQueue(E164),
    /// The number has no record (or its release expired).
    #[error("{0} is not one of our numbers")]
    UnknownNumber(E164),
    /// The number exists but is not active (released, or port-in pending).
    #[error("{0} is not an active number")]
    NotClaimed(E164),
    /// Restore of a number that is not in the deletion queue.
    #[error("{0} is not in the deletion queue")]
    NotReleased(E164),
    /// Restore after the 7-day window.
    #[error("{0} was released more than 7 days ago and cannot be restored")]
    RestoreWindowOver(E164),
    /// No port order with this id.
    #[error("no port order {0}")]
    UnknownPort(u64),
    /// The port order was already completed or cancelled.
    #[error("port order {0} is already finished")]
    PortFinished(u64),
    /// Completion before the order's window opens.
    #[error("port order {id} opens at {window_start_unix_s}, it is {now_unix_s}")]
    PortWindowNotOpen {
        /// The order.
        id: u64,
        /// When its window opens (unix seconds).
        window_start_unix_s: u64,
        /// The time of the attempt (unix seconds).
        now_unix_s: u64,
    },
    /// The number belongs to a port order that is still pending.
    #[error("{0} is in a pending port order")]
    NumberBusyInPort(E164),
    /// A port order without numbers.
    #[error("port order has no numbers")]
    EmptyPort,
    /// A number listed twice in one port order.
    #[error("{0} is listed twice")]
    DuplicateNumber(E164),
    /// An empty flow id.
    #[error("flow must not be empty")]
    EmptyFlow,
    /// A flow id with characters that cannot go in a SIP header, or too long.
    #[error("flow {0:?} must be at most 256 visible ASCII characters")]
    BadFlow(String),
    /// A string that is not a phone number.
    #[error("{0:?} is not a valid number")]
    BadNumber(String),
}

/// Builds the record `spec` asks for, in `state`, after checking it: the kind
/// defaults to the prefix's; at least one carrier, all known, no repeats;
/// a DID has exactly one; a flow is a visible-ASCII token; a cnam has at most
/// 15 characters and none that would break a display name.
pub fn build_record(
    n: E164,
    spec: &ClaimSpec,
    peers: &Peers,
    state: NumberState,
) -> Result<NumberRecord, RoutingError> {
    let kind = spec.kind.unwrap_or_else(|| n.default_kind());
    let flow = spec.flow.as_deref().map(|f| check_flow(f.trim())).transpose()?;
    if spec.carriers.is_empty() {
        return Err(RoutingError::NoCarriers(n));
    }
    if kind == NumberKind::Did && spec.carriers.len() != 1 {
        return Err(RoutingError::DidCarrierCount { number: n, count: spec.carriers.len() });
    }
    let mut carriers: Vec<Arc<str>> = Vec::with_capacity(spec.carriers.len());
    for name in &spec.carriers {
        let name = name.trim();
        // Share the config's `Arc<str>`: millions of records, a handful of carriers.
        let Some((_, c)) = peers.carrier(name) else {
            return Err(RoutingError::UnknownCarrier(name.to_owned()));
        };
        if carriers.iter().any(|x| **x == *name) {
            return Err(RoutingError::DuplicateCarrier(name.to_owned()));
        }
        carriers.push(Arc::clone(&c.name));
    }
    let cnam = match spec.cnam.as_deref() {
        None | Some("") => None,
        Some(c) if c.chars().count() > CNAM_MAX_CHARS => return Err(RoutingError::CnamTooLong(n)),
        Some(c) if c.chars().any(|ch| ch.is_control() || ch == '"' || ch == '\\') => {
            return Err(RoutingError::BadCnam(n))
        }
        Some(c) => Some(Arc::from(c)),
    };
    Ok(NumberRecord { e164: n, kind, flow, carriers, max_concurrent: spec.max_concurrent, cnam, state })
}

/// A flow id goes into `X-Flow-Id`: visible ASCII only, so it cannot inject
/// header lines or break the message.
pub fn check_flow(flow: &str) -> Result<Arc<str>, RoutingError> {
    if flow.is_empty() {
        return Err(RoutingError::EmptyFlow);
    }
    if flow.len() > FLOW_MAX_BYTES || !flow.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(RoutingError::BadFlow(flow.to_owned()));
    }
    Ok(Arc::from(flow))
}

/// Parses a number from control-plane input.
pub fn parse_number(s: &str) -> Result<E164, RoutingError> {
    E164::parse_dialed(s.trim()).map_err(|_| RoutingError::BadNumber(s.to_owned()))
}
