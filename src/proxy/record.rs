//! Call records: what one call looked like once it is over (SPEC §11).
//!
//! The core fills a record while the call is set up (which hops were tried
//! and what each answered), closes it at the final answer (refused and
//! cancelled calls end there) or when the dialog ends, and queues it for the
//! driver (`Core::poll_record`). The driver hands it to the records writer;
//! the core never touches the file. With `[records] path` unset nothing is
//! built at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::call::Call;
use super::decide::{self, Decision, Direction};
use super::Core;
use crate::metrics as m;
use crate::routing::{RoutingSnapshot, Source};
use crate::sip::Msg;

/// A number as dialed, in a refused call's record, is cut to this many characters.
const RAW_NUMBER_MAX: usize = 64;

/// Records the core holds for the driver before new ones are dropped (the
/// driver drains them after every batch of input, so this only fills if the
/// driver stalls).
pub const RECORD_BACKLOG: usize = 4096;

/// What a tried hop answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HopAnswer {
    /// A final status.
    Status(u16),
    /// No answer in time (failover timer, timer B or C).
    Timeout,
    /// Refused at the transport (ICMP unreachable, TCP refused or reset).
    Unreachable,
}

/// One next hop tried for a call.
#[derive(Clone, Debug)]
pub struct HopTry {
    /// Where the INVITE went.
    pub addr: SocketAddr,
    /// Carrier name or `flow-engine`.
    pub group: Arc<str>,
    /// The link's availability zone.
    pub az: Arc<str>,
    /// Its answer; none when the call ended before it answered.
    pub answer: Option<HopAnswer>,
}

/// Who ended a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndedBy {
    /// The caller: BYE, or CANCEL before the answer.
    Caller,
    /// The callee: BYE, or a final refusal.
    Callee,
    /// The edge itself: a refusal, a timeout, no ACK, max duration, shutdown.
    Edge,
}

impl EndedBy {
    /// The record's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Callee => "callee",
            EndedBy::Edge => "edge",
        }
    }
}

/// One finished call.
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// The caller's Call-ID.
    pub call_id: Box<str>,
    /// Which way the call went.
    pub direction: Direction,
    /// The number the call counted against (E.164), when it was known.
    pub number: Option<Box<str>>,
    /// `did` or `toll-free`, when the number was known.
    pub kind: Option<&'static str>,
    /// The carrier: where an inbound call came from, where an outbound one went.
    pub carrier: Option<Arc<str>>,
    /// The number's flow.
    pub flow: Option<Arc<str>>,
    /// Every hop tried, in order.
    pub hops: Vec<HopTry>,
    /// The AZ of the last hop tried.
    pub az: Option<Arc<str>>,
    /// The call's outcome: `answered`, `cancelled`, `refused_downstream`, or the edge's refusal label.
    pub outcome: &'static str,
    /// The final status sent to the caller.
    pub status: u16,
    /// When the INVITE arrived (the driver turns it into wall-clock time).
    pub started: Instant,
    /// From the INVITE to its final answer.
    pub setup_ms: u64,
    /// From the answer to the end (0 for a call never answered).
    pub duration_s: f64,
    /// Who ended it.
    pub ended_by: EndedBy,
}

impl CallRecord {
    /// A record for a new call, before anything is known of how it ends.
    pub(super) fn open(call_id: &str, direction: Direction, started: Instant) -> Box<CallRecord> {
        Box::new(CallRecord {
            call_id: call_id.into(),
            direction,
            number: None,
            kind: None,
            carrier: None,
            flow: None,
            hops: Vec::new(),
            az: None,
            outcome: "refused_downstream",
            status: 0,
            started,
            setup_ms: 0,
            duration_s: 0.0,
            ended_by: EndedBy::Callee,
        })
    }

    /// Closes the set-up part at the final answer `status`, from the call's branches.
    fn close_setup(&mut self, call: &Call, now: Instant, status: u16) {
        self.status = status;
        self.setup_ms = u64::try_from(now.saturating_duration_since(self.started).as_millis()).unwrap_or(u64::MAX);
        self.hops = call
            .branches
            .iter()
            .filter_map(|b| {
                let hop = b.hop.as_ref()?;
                Some(HopTry { addr: b.to.addr, group: hop.group.clone(), az: hop.az.clone(), answer: b.answer })
            })
            .collect();
        if let Some(last) = self.hops.last() {
            self.az = Some(last.az.clone());
            if self.direction == Direction::Outbound {
                self.carrier = Some(last.group.clone());
            }
        }
        if (200..300).contains(&status) {
            self.outcome = "answered";
        }
    }
}

impl Core {
    /// The record of a new call, from what the routing decision found.
    pub(super) fn open_record(
        &self,
        now: Instant,
        msg: &Msg,
        source: Source,
        direction: Direction,
        snap: &RoutingSnapshot,
        decided: Option<&Decision>,
    ) -> Box<CallRecord> {
        let mut r = CallRecord::open(msg.call_id(), direction, now);
        if let Source::Carrier(i) = source {
            r.carrier = snap.peers.carriers.get(i).map(|c| c.name.clone());
        }
        match decided {
            Some(d) => {
                r.number = Some(d.number.to_string().into_boxed_str());
                r.kind = Some(d.kind.as_str());
                r.flow = d.flow.clone();
            }
            None => {
                // Refused before a number was found: what the peer sent, cut short.
                let raw = match direction {
                    Direction::Inbound => msg.request_uri().and_then(decide::uri_user),
                    Direction::Outbound => {
                        msg.p_asserted_identity_uri().or_else(|| msg.from_uri()).and_then(decide::uri_user)
                    }
                };
                r.number = raw.map(|s| s.chars().take(RAW_NUMBER_MAX).collect::<String>().into_boxed_str());
            }
        }
        r
    }

    /// How the call will have ended if its final answer is not a 2xx (set
    /// just before the edge sends its own final answer).
    pub(super) fn record_outcome(&mut self, id: u64, outcome: &'static str, ended_by: EndedBy) {
        if let Some(r) = self.calls.get_mut(&id).and_then(|c| c.record.as_mut()) {
            r.outcome = outcome;
            r.ended_by = ended_by;
        }
    }

    /// The call's first final answer went out: a refused or cancelled call's
    /// record is done; an answered call's waits in the call for its dialog.
    pub(super) fn record_final(&mut self, now: Instant, id: u64, status: u16) {
        let Some(call) = self.calls.get_mut(&id) else { return };
        let Some(mut rec) = call.record.take() else { return };
        rec.close_setup(call, now, status);
        if (200..300).contains(&status) {
            call.record = Some(rec);
        } else {
            self.push_record(rec);
        }
    }

    /// Queues a finished record for the driver.
    pub(super) fn push_record(&mut self, rec: Box<CallRecord>) {
        if self.records.len() >= RECORD_BACKLOG {
            metrics::counter!(m::RECORDS_DROPS_TOTAL).increment(1);
            return;
        }
        self.records.push_back(rec);
    }

    /// The next finished call's record, if any.
    pub fn poll_record(&mut self) -> Option<Box<CallRecord>> {
        self.records.pop_front()
    }
}
