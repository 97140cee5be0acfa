//! One immutable view of everything a call needs to be routed: the numbers
//! and the peers. A snapshot is never changed once published; a change builds
//! the next one, so a reader never sees half of a change.

use std::sync::Arc;

use super::numbers::NumberMap;
use super::peers::Peers;
use crate::sip::{NumberKind, E164};

/// Everything the edge knows about one of its numbers.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NumberRecord {
    /// The number itself.
    pub e164: E164,
    /// Toll-free or DID (from the record, else from the prefix).
    pub kind: NumberKind,
    /// The flow inbound calls are handed to (`X-Flow-Id`); `None` answers 480.
    #[serde(serialize_with = "ser_opt_str")]
    pub flow: Option<Arc<str>>,
    /// Carrier names, in preference order; a DID has exactly one.
    #[serde(serialize_with = "ser_strs")]
    pub carriers: Vec<Arc<str>>,
    /// Per-number concurrency cap; `None` takes the `[limits]` default.
    pub max_concurrent: Option<u32>,
    /// Caller name for outbound calls (at most 15 characters).
    #[serde(serialize_with = "ser_opt_str")]
    pub cnam: Option<Arc<str>>,
    /// Where the number is in its lifecycle.
    #[serde(flatten)]
    pub state: NumberState,
}

/// A record as a lookup hands it out: borrowed from the snapshot (its base
/// keeps flows and the rest of a record in shared tables, see `base.rs`),
/// so a lookup allocates nothing. `to_record` makes an owned copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumberRef<'a> {
    /// The number itself.
    pub e164: E164,
    /// Toll-free or DID (from the record, else from the prefix).
    pub kind: NumberKind,
    /// The flow inbound calls are handed to (`X-Flow-Id`); `None` answers 480.
    pub flow: Option<&'a Arc<str>>,
    /// Carrier names, in preference order; a DID has exactly one.
    pub carriers: &'a [Arc<str>],
    /// Per-number concurrency cap; `None` takes the `[limits]` default.
    pub max_concurrent: Option<u32>,
    /// Caller name for outbound calls (at most 15 characters).
    pub cnam: Option<&'a Arc<str>>,
    /// Where the number is in its lifecycle.
    pub state: NumberState,
}

/// The lifecycle state of a number (SPEC §1; seeds: claiming, releasing, porting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NumberState {
    /// Claimed and routable.
    Active,
    /// In the deletion queue since `released_at_unix_s`: answers 410, restorable for 7 days.
    Released {
        /// When the release was accepted (unix seconds).
        released_at_unix_s: u64,
    },
    /// Scheduled by port-in order `order`: answers 404 until the port completes.
    PortInPending {
        /// The port order id.
        order: u64,
    },
    /// Leaving with port-out order `order`: still routable until the port completes.
    PortOutPending {
        /// The port order id.
        order: u64,
    },
}

/// What a call to a number gets; the proxy maps it to a SIP answer (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Route<'a> {
    /// Active (or port-out pending) with a flow: hand the call to the flow engine.
    Routable(NumberRef<'a>),
    /// Routable but without a flow: 480.
    NoFlow(NumberRef<'a>),
    /// In the deletion queue: 410.
    Released,
    /// Unknown, ported out, or port-in not yet active: 404.
    NotFound,
}

impl<'a> Route<'a> {
    /// What a call to the number `rec` gets, by its state and flow: the one
    /// rule both a call's lookup and the control plane's view of a number use.
    #[inline]
    pub fn of(rec: NumberRef<'a>) -> Route<'a> {
        match rec.state {
            NumberState::Active | NumberState::PortOutPending { .. } => {
                if rec.flow.is_some() {
                    Route::Routable(rec)
                } else {
                    Route::NoFlow(rec)
                }
            }
            NumberState::Released { .. } => Route::Released,
            NumberState::PortInPending { .. } => Route::NotFound,
        }
    }
}

/// The `[limits]` caps of a number without its own `max_concurrent`; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultCaps {
    /// A DID's (`did_max_concurrent`).
    pub did: u32,
    /// A toll-free number's (`toll_free_max_concurrent`).
    pub toll_free: u32,
}

impl NumberRef<'_> {
    /// The cap in force: the number's own `max_concurrent`, else its kind's
    /// default; 0 = unlimited. Admission and the control plane's view both use it.
    #[inline]
    pub fn cap(&self, defaults: DefaultCaps) -> u32 {
        self.max_concurrent.unwrap_or(match self.kind {
            NumberKind::Did => defaults.did,
            NumberKind::TollFree => defaults.toll_free,
        })
    }
}

/// The published routing state. Readers get it from `RoutingTable::load`
/// without a lock and may keep it for as long as a call needs it.
#[derive(Clone)]
pub struct RoutingSnapshot {
    /// Number → record (a frozen base plus a small persistent overlay).
    pub numbers: NumberMap,
    /// Carriers, their links and source addresses; the flow engine endpoints.
    pub peers: Arc<Peers>,
    /// Increases by one with every published change (numbers or peers).
    pub generation: u64,
}

impl RoutingSnapshot {
    /// A snapshot with the given numbers and peers, at generation 0.
    pub fn new(numbers: NumberMap, peers: Arc<Peers>) -> RoutingSnapshot {
        RoutingSnapshot { numbers, peers, generation: 0 }
    }

    /// What a call dialing `n` gets.
    #[inline]
    pub fn route(&self, n: E164) -> Route<'_> {
        self.numbers.get(n).map_or(Route::NotFound, Route::of)
    }

    /// The record of `n` in whatever state it is.
    #[inline]
    pub fn record(&self, n: E164) -> Option<NumberRef<'_>> {
        self.numbers.get(n)
    }

    /// How many numbers have a record (any state).
    pub fn len(&self) -> usize {
        self.numbers.len()
    }

    /// Whether no number has a record.
    pub fn is_empty(&self) -> bool {
        self.numbers.len() == 0
    }
}

impl std::fmt::Debug for RoutingSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The number map can hold millions of entries: print its size only.
        f.debug_struct("RoutingSnapshot")
            .field("numbers", &self.numbers.len())
            .field("peers", &self.peers)
            .field("generation", &self.generation)
            .finish()
    }
}

impl NumberRecord {
    /// Whether the number may place outbound calls as caller ID (SPEC §5:
    /// "an active number of ours"); a number being ported out is still ours.
    pub fn is_active(&self) -> bool {
        matches!(self.state, NumberState::Active | NumberState::PortOutPending { .. })
    }
}

// serde has no impl for `Arc<str>` without its `rc` feature; these keep the
// JSON shape of a plain string without turning that feature on crate-wide.
fn ser_opt_str<S: serde::Serializer>(v: &Option<Arc<str>>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(x) => s.serialize_some(&**x),
        None => s.serialize_none(),
    }
}

fn ser_strs<S: serde::Serializer>(v: &[Arc<str>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|x| &**x))
}
