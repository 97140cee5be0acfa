//! The one place that knows which SIP status answers which refusal (SPEC §5).

/// Why the edge answers a request itself instead of forwarding it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// The dialed number is not a valid number.
    #[error("dialed number is not a valid number")]
    BadNumber,
    /// Unknown number, ported out, or port-in not yet active.
    #[error("number not found")]
    UnknownNumber,
    /// The number is in the deletion queue.
    #[error("number released")]
    Released,
    /// The number has no flow associated.
    #[error("number has no flow")]
    NoFlow,
    /// The number is at its concurrency cap.
    #[error("number at its concurrency cap")]
    NumberBusy,
    /// The instance is at `max_concurrent_calls`.
    #[error("instance at max_concurrent_calls")]
    InstanceFull,
    /// The global new-call rate limit is reached.
    #[error("new-call rate limit reached")]
    RateLimited,
    /// Every next hop failed or is down.
    #[error("no next hop available")]
    NoRoute,
    /// An outbound call's caller ID is not an active number of ours.
    #[error("caller ID is not an active number of ours")]
    CallerIdNotOurs,
    /// The source IP is not a configured peer.
    #[error("unknown source")]
    UnknownSource,
    /// Max-Forwards reached 0.
    #[error("too many hops")]
    TooManyHops,
    /// A method the edge does not handle outside a dialog.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// An in-dialog request for a dialog the edge does not know.
    #[error("no such dialog or transaction")]
    NoDialog,
    /// An in-dialog request from an address that is not that dialog's peer.
    #[error("request from an address that is not the dialog's peer")]
    NotDialogPeer,
    /// The next hop never answered (non-INVITE) or timer C fired after a 18x.
    #[error("request timeout")]
    Timeout,
    /// The request asked for an extension we do not support (Proxy-Require).
    #[error("bad extension")]
    BadExtension,
    /// Cluster mode, Redis unreachable, `on_backend_down = "fail_closed"`: a capped number's call is refused.
    #[error("shared admission unavailable (Redis down, fail_closed)")]
    ClusterDown,
    /// A carrier's `max_concurrent`, `max_cps` or fair share refused the call
    /// (inbound; outbound when every carrier left was refused so).
    #[error("carrier trunk limit reached")]
    TrunkFull,
    /// The edge is draining (SIGTERM, `POST /v1/drain`): no new calls, probes steer away.
    #[error("edge draining")]
    Draining,
}

/// `100 Trying`: our answer to every INVITE we take on.
pub const TRYING: (u16, &str) = (100, "Trying");
/// `200 OK`: to an OPTIONS probe of the edge and to a CANCEL.
pub const OK: (u16, &str) = (200, "OK");
/// `487 Request Terminated`: a cancelled INVITE's answer.
pub const REQUEST_TERMINATED: (u16, &str) = (487, "Request Terminated");
/// `503 Service Unavailable`: a request we could not deliver (§16.9: a transport error counts as 503).
pub const UNDELIVERABLE: (u16, &str) = (503, "Service Unavailable");

/// The methods the edge handles; sent in `Allow`.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, PRACK";

impl Reject {
    /// Status code and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Reject::BadNumber => (484, "Address Incomplete"),
            Reject::UnknownNumber => (404, "Not Found"),
            Reject::Released => (410, "Gone"),
            Reject::NoFlow => (480, "Temporarily Unavailable"),
            Reject::NumberBusy => (486, "Busy Here"),
            Reject::InstanceFull | Reject::RateLimited | Reject::ClusterDown => (503, "Service Unavailable"),
            Reject::NoRoute | Reject::Draining | Reject::TrunkFull => (503, "Service Unavailable"),
            Reject::CallerIdNotOurs | Reject::UnknownSource | Reject::NotDialogPeer => (403, "Forbidden"),
            Reject::TooManyHops => (483, "Too Many Hops"),
            Reject::MethodNotAllowed => (405, "Method Not Allowed"),
            Reject::NoDialog => (481, "Call/Transaction Does Not Exist"),
            Reject::Timeout => (408, "Request Timeout"),
            Reject::BadExtension => (420, "Bad Extension"),
        }
    }

    /// Whether the answer carries `Retry-After` (overload answers do).
    pub fn retry_after(self) -> bool {
        matches!(
            self,
            Reject::InstanceFull | Reject::RateLimited | Reject::ClusterDown | Reject::Draining | Reject::TrunkFull
        )
    }

    /// Whether the answer carries `Allow`.
    pub fn allow(self) -> bool {
        self == Reject::MethodNotAllowed
    }

    /// Label for `sipedge_calls_total{outcome}`.
    pub fn outcome_label(self) -> &'static str {
        match self {
            Reject::BadNumber => "bad_number",
            Reject::UnknownNumber => "unknown_number",
            Reject::Released => "released",
            Reject::NoFlow => "no_flow",
            Reject::NumberBusy => "number_busy",
            Reject::InstanceFull => "instance_full",
            Reject::RateLimited => "rate_limited",
            Reject::NoRoute => "no_route",
            Reject::CallerIdNotOurs => "caller_id_refused",
            Reject::UnknownSource => "unknown_source",
            Reject::TooManyHops => "too_many_hops",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::NoDialog => "no_dialog",
            Reject::NotDialogPeer => "not_dialog_peer",
            Reject::Timeout => "timeout",
            Reject::BadExtension => "bad_extension",
            Reject::ClusterDown => "cluster_down",
            Reject::Draining => "draining",
            Reject::TrunkFull => "carrier_limit",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_section_5_answers() {
        assert_eq!(Reject::BadNumber.status().0, 484);
        assert_eq!(Reject::UnknownNumber.status().0, 404);
        assert_eq!(Reject::Released.status().0, 410);
        assert_eq!(Reject::NoFlow.status().0, 480);
        assert_eq!(Reject::NumberBusy.status().0, 486);
        assert_eq!(Reject::InstanceFull.status().0, 503);
        assert!(Reject::InstanceFull.retry_after());
        assert_eq!(Reject::NoRoute.status().0, 503);
        assert!(!Reject::NoRoute.retry_after());
        assert_eq!(Reject::CallerIdNotOurs.status().0, 403);
        assert_eq!(Reject::UnknownSource.status().0, 403);
        assert_eq!(Reject::TooManyHops.status().0, 483);
        assert_eq!(Reject::MethodNotAllowed.status().0, 405);
        assert!(Reject::MethodNotAllowed.allow());
        assert_eq!(Reject::Draining.status().0, 503);
        assert!(Reject::Draining.retry_after());
        assert_eq!(Reject::TrunkFull.status().0, 503);
        assert!(Reject::TrunkFull.retry_after());
    }
}
