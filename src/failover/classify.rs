//! What to do with one next hop's outcome: fail over, relay, or keep waiting (SPEC §5).
//!
//! One pure function holds every retry rule, in the manner of pingora's error
//! classification by origin and retryability, so the rules can be tested row by row.

/// What happened on the current attempt to a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The request could not be sent (no route, connection refused or reset, ICMP error).
    TransportError,
    /// No response within `failover_ms` (or the transaction timed out).
    Timeout,
    /// A provisional response: 1xx other than 100 (a `Provisional(100)` is read as
    /// 100 Trying anyway).
    Provisional(u16),
    /// A final response, 2xx–6xx.
    Final(u16),
}

impl Outcome {
    /// Builds the outcome of a received response from its status code.
    pub fn from_status(code: u16) -> Outcome {
        if code < 200 {
            Outcome::Provisional(code)
        } else {
            Outcome::Final(code)
        }
    }

    /// Whether this is a 18x (180–189): once one has arrived on an attempt, that attempt
    /// is never abandoned for another hop, so the caller sets `seen_18x` from here on.
    pub fn is_18x(self) -> bool {
        matches!(self, Outcome::Provisional(180..=189))
    }
}

/// The proxy's next step for an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Abandon this hop and try the next one in the plan (503 upstream if none is left).
    NextHop,
    /// Send the answer upstream as is. For a transport error or timeout after a 18x there
    /// is no answer to relay: the proxy does not fail over but ends the call upstream with
    /// an answer of its own (a 408, say).
    Relay,
    /// Keep waiting on this hop: a 100 Trying is hop-by-hop and not forwarded
    /// (RFC 3261 §16.7).
    Wait,
}

/// Final statuses that mean "this hop could not take the call, another one might"
/// (SPEC §5): 408 Request Timeout, 500 Server Internal Error, 502 Bad Gateway,
/// 503 Service Unavailable, 504 Server Time-out.
fn retryable(code: u16) -> bool {
    matches!(code, 408 | 500 | 502 | 503 | 504)
}

/// Decides what to do with `outcome` of the current attempt.
///
/// `seen_18x`: a 18x (180–189) was already received from THIS attempt (after which there
/// is no more failover: the caller may be hearing ringback or early media from this hop).
pub fn classify(outcome: Outcome, seen_18x: bool) -> Step {
    match outcome {
        Outcome::TransportError | Outcome::Timeout if seen_18x => Step::Relay,
        Outcome::TransportError | Outcome::Timeout => Step::NextHop,
        Outcome::Provisional(100) => Step::Wait,
        // 18x, 199 and other provisionals are forwarded like any answer.
        Outcome::Provisional(_) => Step::Relay,
        Outcome::Final(code) if retryable(code) && !seen_18x => Step::NextHop,
        // 2xx, 3xx, 4xx/5xx other than the retryable ones, 6xx (global failure: no other
        // hop may be tried), or anything after a 18x.
        Outcome::Final(_) => Step::Relay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;
    use Step::*;

    /// SPEC §5, row by row: (outcome, seen_18x, decision, the rule it checks).
    const TABLE: &[(Outcome, bool, Step, &str)] = &[
        (TransportError, false, NextHop, "transport error -> next hop"),
        (Timeout, false, NextHop, "no response within failover_ms -> next hop"),
        (Final(408), false, NextHop, "408 before a 18x -> next hop"),
        (Final(500), false, NextHop, "500 before a 18x -> next hop"),
        (Final(502), false, NextHop, "502 before a 18x -> next hop"),
        (Final(503), false, NextHop, "503 before a 18x -> next hop"),
        (Final(504), false, NextHop, "504 before a 18x -> next hop"),
        (Final(408), true, Relay, "any answer after a 18x is relayed"),
        (Final(500), true, Relay, "any answer after a 18x is relayed"),
        (Final(502), true, Relay, "any answer after a 18x is relayed"),
        (Final(503), true, Relay, "any answer after a 18x is relayed"),
        (Final(504), true, Relay, "any answer after a 18x is relayed"),
        (Final(200), false, Relay, "2xx is relayed"),
        (Final(200), true, Relay, "2xx after a 18x is relayed"),
        (Final(202), false, Relay, "2xx is relayed"),
        (Final(302), false, Relay, "other final answer (3xx) is relayed"),
        (Final(404), false, Relay, "other final answer is relayed"),
        (Final(480), false, Relay, "other final answer is relayed"),
        (Final(486), false, Relay, "busy is relayed, not retried elsewhere"),
        (Final(487), true, Relay, "487 after CANCEL is relayed"),
        (Final(501), false, Relay, "501 is not in the retry list"),
        (Final(505), false, Relay, "505 is not in the retry list"),
        (Final(580), false, Relay, "other 5xx is relayed"),
        (Final(600), false, Relay, "6xx is relayed"),
        (Final(603), false, Relay, "6xx is relayed"),
        (Provisional(180), false, Relay, "180 is relayed"),
        (Provisional(183), false, Relay, "183 is relayed"),
        (Provisional(181), true, Relay, "18x after a 18x is relayed"),
        (Provisional(199), false, Relay, "other provisional is relayed"),
        (Provisional(100), false, Wait, "100 Trying: keep waiting"),
        (Provisional(100), true, Wait, "100 Trying: keep waiting"),
        (TransportError, true, Relay, "no failover after a 18x; proxy answers 503"),
        (Timeout, true, Relay, "no failover after a 18x; proxy answers 408"),
    ];

    #[test]
    fn spec_table_row_by_row() {
        for &(outcome, seen_18x, want, rule) in TABLE {
            assert_eq!(classify(outcome, seen_18x), want, "{outcome:?} seen_18x={seen_18x}: {rule}");
        }
    }

    #[test]
    fn only_the_five_listed_finals_fail_over() {
        let next: Vec<u16> = (200..700).filter(|&c| classify(Final(c), false) == NextHop).collect();
        assert_eq!(next, [408, 500, 502, 503, 504]);
        assert!((200..700).all(|c| classify(Final(c), true) == Relay));
    }

    #[test]
    fn from_status_and_18x() {
        assert_eq!(Outcome::from_status(100), Provisional(100));
        assert_eq!(Outcome::from_status(183), Provisional(183));
        assert_eq!(Outcome::from_status(200), Final(200));
        assert_eq!(Outcome::from_status(503), Final(503));
        let is_18x: Vec<u16> = (100..700).filter(|&c| Outcome::from_status(c).is_18x()).collect();
        assert_eq!(is_18x, (180..=189).collect::<Vec<_>>());
        assert!(!TransportError.is_18x() && !Timeout.is_18x());
    }
}
