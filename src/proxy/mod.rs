//! The sans-IO proxy core: transactions, dialogs and routing decisions.
//!
//! [`Core`] never reads a clock or touches a socket. The driver feeds it
//! `handle_message(now, from, bytes)`, `handle_timeout(now)` and
//! `handle_send_error(now, to)`, and drains `poll_transmit()` and
//! `poll_timeout()`. Every message of one call must reach the same `Core`
//! (the driver shards by Call-ID), so a call is handled strictly in order.
//!
//! # Layout
//! - `txn/`: RFC 3261 §17 transaction machines
//! - `invite.rs`: an initial INVITE: classify, admit, plan, forward, fail over, cancel
//! - `admit.rs`: cluster mode: a capped number's call waits for the shared admission
//! - `dialog.rs`: record-routed dialogs: in-dialog routing, BYE, the call's end
//! - `early.rs`: early dialogs (PRACK, UPDATE, INFO before the 2xx), routed from the call
//! - `noninvite.rs`: proxied non-INVITE transactions (BYE, UPDATE, INFO, ...)
//! - `probe.rs`: OPTIONS health probes of every next hop
//! - `drain.rs`: draining: the flag, calls still live, pending INVITEs ended at the deadline
//! - `respond.rs`: refusals → SIP status, in one place
//! - `trunk.rs`: carrier limits: an inbound call's carrier slot, an outbound call's per carrier tried
//! - `record.rs`: call records, filled as the call goes and queued at its end
//! - `token.rs`: the HMAC Record-Route token (format and check)
//! - `token_route.rs`: sealing it per hop, and routing requests of dialogs not in memory on it

mod admit;
mod call;
mod cancel;
mod context;
mod decide;
mod dialog;
mod drain;
mod early;
mod invite;
mod noninvite;
mod probe;
mod record;
mod refused;
pub mod respond;
#[cfg(test)]
mod tests;
mod text;
pub(crate) mod timer;
pub mod token;
mod token_route;
mod trunk;
pub(crate) mod txn;

pub use context::{pick_listener, CallRate, ClusterAdmit, CoreConfig, DownSet, Local, LocalAddr, UnknownSourcePolicy};
pub use decide::Direction;
pub use probe::PROBE_CALL_ID_PREFIX;
pub use record::{CallRecord, EndedBy, HopAnswer, HopTry};
pub use respond::Reject;
pub use timer::TimerValues;

use bytes::Bytes;
use std::collections::VecDeque;

/// The core's maps: ahash rather than SipHash. Keys come from the network, but
/// ahash is keyed per process (random seeds) so collisions cannot be planned.
///
/// griddle rather than std's hashbrown: a hashbrown map that outgrows its
/// table moves every entry in one insert. With finished calls kept 32 s
/// (RFC 6026), a shard's maps all doubled together at 1.4, 2.9 and 5.7 s into
/// a 2,500 calls/s run and each doubling stalled the shard 3 to 13 ms (seen as
/// set-up latency spikes in `tools/load --latency`). griddle moves a few
/// entries per insert instead.
pub(crate) type FastMap<K, V> = griddle::HashMap<K, V, ahash::RandomState>;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use crate::admission::Admission;
use crate::metrics as m;
use crate::routing::{RoutingTable, Source};
use crate::sip::{build, Method, Msg, Transport};
use context::HopCache;
use timer::{Fired, Owner, Slot, TimerQueue};
use txn::{Action, Actions};

/// `a` + `sep` + `b` in one allocation: the keys of the transaction and dialog maps.
fn join_key(a: &str, sep: char, b: &str) -> Box<str> {
    let mut k = String::with_capacity(a.len() + b.len() + sep.len_utf8());
    k.push_str(a);
    k.push(sep);
    k.push_str(b);
    k.into_boxed_str()
}

/// Where a message came from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The remote socket address (for responses: the packet's source, never a Via host).
    pub addr: SocketAddr,
    /// The transport.
    pub transport: Transport,
    /// For TCP: the connection it arrived on, so answers go back on it.
    pub conn: Option<u64>,
    /// Our `[[listen]]` (its index in [`Local::listeners`]) the message came in
    /// on, or goes out of: answers and in-dialog requests toward this peer
    /// leave from it and name it in Via and Record-Route. `None`: no history
    /// (a new request to a next hop): the first listener of its transport and
    /// family ([`Local::listener_for`]).
    pub listener: Option<u16>,
}

impl Peer {
    /// A peer reached over a fresh or pooled connection (no specific one).
    pub fn to(addr: SocketAddr, transport: Transport) -> Peer {
        Peer { addr, transport, conn: None, listener: None }
    }

    /// The same peer, as reached through our listener `index`.
    pub fn via_listener(self, index: Option<u16>) -> Peer {
        Peer { listener: index, ..self }
    }
}

/// Bytes for the driver to send.
#[derive(Clone, Debug)]
pub struct Transmit {
    /// Where to.
    pub to: Peer,
    /// What.
    pub payload: Bytes,
}

/// The state every shard shares: all of it lock-free to read.
#[derive(Clone)]
pub struct CoreShared {
    /// The routing table (numbers, peers).
    pub routing: Arc<RoutingTable>,
    /// Concurrency caps.
    pub admission: Arc<Admission>,
    /// Next hops marked down by the health checks.
    pub down: Arc<DownSet>,
    /// The instance-wide new-call rate.
    pub rate: Arc<CallRate>,
    /// Cluster mode: the queue to the Redis task and what it last saw.
    pub cluster: Option<Arc<crate::cluster::ClusterLink>>,
    /// Set once the edge drains: new calls and OPTIONS get 503, calls in progress go on.
    pub draining: Arc<AtomicBool>,
}

/// The proxy core of one shard.
pub struct Core {
    shard: u32,
    cfg: Arc<CoreConfig>,
    routing: Arc<RoutingTable>,
    admission: Arc<Admission>,
    down: Arc<DownSet>,
    rate: Arc<CallRate>,
    draining: Arc<AtomicBool>,
    hops: HopCache,
    timers: TimerQueue,
    out: VecDeque<Transmit>,
    next_id: u64,
    /// Boxed: a Call is ~1.5 KB and the map keeps up to twice its length in
    /// slots, so inline entries cost ~3 KB per call in the 32 s after its 2xx.
    calls: FastMap<u64, Box<call::Call>>,
    invite_keys: FastMap<Box<str>, u64>,
    /// Calls refused on arrival, reduced to their server transaction.
    refusals: refused::Refusals,
    branches: FastMap<Box<str>, (u64, u32)>,
    nits: noninvite::NonInvites,
    dialogs: dialog::Dialogs,
    early: early::EarlyDialogs,
    probes: Option<probe::Prober>,
    /// Finished calls' records for the driver (only with `[records] path`).
    records: VecDeque<Box<CallRecord>>,
    cluster: Option<Arc<crate::cluster::ClusterLink>>,
    /// Calls waiting for the shared admission, and the requests for the driver.
    admitting: admit::PendingAdmits,
}

impl Core {
    /// A core for shard `shard`. Shard 0 also runs the OPTIONS health probes and
    /// publishes their verdicts into `down`, which every shard reads.
    pub fn new(shard: u32, cfg: Arc<CoreConfig>, shared: CoreShared, now: Instant) -> Core {
        let mut core = Core {
            shard,
            cfg,
            routing: shared.routing,
            admission: shared.admission,
            down: shared.down,
            rate: shared.rate,
            draining: shared.draining,
            hops: HopCache::default(),
            timers: TimerQueue::default(),
            out: VecDeque::new(),
            next_id: 1,
            calls: FastMap::default(),
            invite_keys: FastMap::default(),
            refusals: refused::Refusals::default(),
            branches: FastMap::default(),
            nits: noninvite::NonInvites::default(),
            dialogs: dialog::Dialogs::default(),
            early: early::EarlyDialogs::default(),
            probes: None,
            records: VecDeque::new(),
            cluster: shared.cluster,
            admitting: admit::PendingAdmits::default(),
        };
        if shard == 0 && core.cfg.probe_interval.as_millis() > 0 {
            core.probes = Some(probe::Prober::new(&core.cfg));
            core.timers.arm(now, std::time::Duration::ZERO, Owner::Core, timer::Timer::Probe, Slot::Whole);
        }
        core
    }

    /// Replaces the configuration (reload). Calls in progress keep their timers.
    pub fn set_config(&mut self, cfg: Arc<CoreConfig>) {
        if let Some(p) = self.probes.as_mut() {
            p.set_params(&cfg);
        }
        self.cfg = cfg;
    }

    /// One message from the network.
    pub fn handle_message(&mut self, now: Instant, from: Peer, bytes: Bytes) {
        m::message_in(from.transport);
        let msg = match Msg::parse(bytes) {
            Ok(msg) => msg,
            Err(e) => return self.on_parse_error(from, e),
        };
        // One span per call, keyed by Call-ID (debug level: free when disabled).
        let span = tracing::debug_span!("call", call_id = msg.call_id());
        let _entered = span.enter();
        if msg.is_request() {
            self.on_request(now, from, msg);
        } else {
            self.on_response(now, from, msg);
        }
    }

    /// A message from a source that flood control has banned with `action =
    /// "reject"`: a request gets 503 with Retry-After, anything else is dropped.
    /// An unknown source with `unknown_source = "drop"` still hears nothing.
    pub fn handle_flooded(&mut self, from: Peer, bytes: Bytes) {
        if self.cfg.unknown_source == UnknownSourcePolicy::Drop
            && self.routing.load().peers.classify(from.addr.ip()) == Source::Unknown
        {
            return;
        }
        let Ok(msg) = Msg::parse(bytes) else { return };
        if msg.is_request() && msg.method() != Some(Method::Ack) {
            self.reject(from, &msg, Reject::RateLimited, None);
        }
    }

    /// The driver could not deliver `undelivered` to `to` (TCP connect refused, UDP
    /// ICMP port unreachable): the transaction that sent it fails now. An INVITE
    /// branch still being tried fails over, a forwarded non-INVITE request is
    /// answered 503, a health probe counts as failed.
    ///
    /// Matched by the message's branch, not by `to`: a connect attempt may fail after
    /// a newer branch to the same hop went out on a fresh connection, and that branch
    /// must not be failed by the stale error.
    pub fn handle_send_error(&mut self, now: Instant, to: Peer, undelivered: &Bytes) {
        let Ok(msg) = Msg::parse(undelivered.clone()) else { return };
        if !msg.is_request() {
            return;
        }
        let Some(branch) = msg.branch() else { return };
        match msg.method() {
            Some(Method::Invite) => {
                let Some(&(id, idx)) = self.branches.get(branch) else { return };
                let current = self.calls.get(&id).is_some_and(|c| {
                    c.branches.len().checked_sub(1) == Some(idx as usize) && c.current_hop_is(to.addr)
                });
                if current {
                    self.branch_failed(now, id, call::Failure::Transport);
                }
            }
            Some(Method::Ack) => {}
            _ => {
                self.non_invite_send_error(now, branch, msg.method_str());
                if let Some(p) = self.probes.as_mut() {
                    p.on_send_error(branch, &self.down);
                }
            }
        }
    }

    /// `to` is unreachable (UDP: ICMP port unreachable). Only the address is
    /// known, so every call whose current branch waits on it fails over now,
    /// and its probes in flight fail.
    pub fn handle_unreachable(&mut self, now: Instant, to: Peer) {
        let ids: Vec<u64> = self.calls.iter().filter(|(_, c)| c.current_hop_is(to.addr)).map(|(id, _)| *id).collect();
        for id in ids {
            self.branch_failed(now, id, call::Failure::Transport);
        }
        if let Some(p) = self.probes.as_mut() {
            p.on_unreachable(to.addr, &self.down);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(f) = self.timers.pop_due(now) {
            self.on_timer(now, f);
        }
    }

    /// The next message to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    /// Calls with a pending INVITE transaction, and established dialogs (for tests and metrics).
    pub fn counts(&self) -> (usize, usize) {
        (self.calls.len(), self.dialogs.len())
    }

    /// Ends every call (shutdown, or a drain's deadline): each dialog's slot is
    /// released and BYE sent both ways; an INVITE still being set up gets a
    /// final answer upstream and a CANCEL downstream, so none is dropped silently.
    pub fn shutdown(&mut self, now: Instant) {
        self.dialogs_shutdown(now);
        self.abort_pending(now);
        for (_, mut c) in self.calls.drain() {
            c.permit.take();
        }
        self.early = early::EarlyDialogs::default();
    }

    /// Every table and index of the core with its size: all 0 once calls have
    /// ended and their timers have run out (leak checks in tests).
    #[cfg(test)]
    pub(crate) fn table_sizes(&self) -> Vec<(&'static str, usize)> {
        let [nits, non_invite_server, non_invite_client] = self.nits.sizes();
        vec![
            ("calls", self.calls.len()),
            ("invite_keys", self.invite_keys.len()),
            ("refusals", self.refusals.len()),
            ("branches", self.branches.len()),
            ("nits", nits),
            ("non_invite_server_keys", non_invite_server),
            ("non_invite_client_keys", non_invite_client),
            ("dialogs", self.dialogs.len()),
            ("dialog_ids", self.dialogs.ids()),
            ("early", self.early.len()),
            ("timers", self.timers.len()),
        ]
    }

    fn on_parse_error(&mut self, from: Peer, e: crate::sip::ParseError) {
        m::parse_error();
        tracing::debug!(peer = %from.addr, error = %e.kind, "unparseable message");
        let Some(ctx) = e.reply.as_ref() else { return };
        // Never answer a response or an ACK; only requests get a 400.
        if !ctx.is_request || ctx.is_ack {
            return;
        }
        if self.routing.load().peers.classify(from.addr.ip()) == Source::Unknown
            && self.cfg.unknown_source == UnknownSourcePolicy::Drop
        {
            return;
        }
        let reason = e.reason_phrase();
        let bytes = build::response_from_ctx(ctx, e.status(), &reason, None);
        self.send(from, bytes);
    }

    fn on_request(&mut self, now: Instant, from: Peer, msg: Msg) {
        let method = msg.method().unwrap_or(Method::Other);
        let source = self.routing.load().peers.classify(from.addr.ip());
        // A hop a reload removed may still end the dialogs it is in
        // (`in_dialog` checks that the request comes from the dialog's peer).
        let dialog = source == Source::Unknown && msg.to_tag().is_some() && self.is_in_dialog(&msg);
        if source == Source::Unknown && !dialog {
            if method != Method::Ack && self.cfg.unknown_source == UnknownSourcePolicy::Reject {
                self.reject(from, &msg, Reject::UnknownSource, None);
            }
            m::call_outcome("unknown", Reject::UnknownSource.outcome_label());
            return;
        }
        match method {
            Method::Invite if self.invite_retransmission(from, &msg) => {}
            Method::Cancel => self.on_cancel(now, from, &msg),
            Method::Ack => self.on_ack(now, from, msg),
            _ if self.non_invite_retransmission(from, &msg) => {}
            _ if msg.max_forwards() == Some(0) && method != Method::Options => {
                self.reject(from, &msg, Reject::TooManyHops, None)
            }
            _ if msg.to_tag().is_some() => self.in_dialog(now, from, msg),
            Method::Invite | Method::Options if self.is_draining() => {
                if method == Method::Invite {
                    let dir = if source == Source::Platform { "outbound" } else { "inbound" };
                    m::call_outcome(dir, Reject::Draining.outcome_label());
                }
                self.reject(from, &msg, Reject::Draining, None)
            }
            Method::Invite => self.initial_invite(now, from, msg, source),
            Method::Options => {
                let allow = [("Allow", respond::ALLOW), ("Accept", "application/sdp")];
                let bytes = self.response(&msg, respond::OK.0, respond::OK.1, None, &allow);
                self.send(from, bytes);
            }
            _ => self.reject(from, &msg, Reject::MethodNotAllowed, None),
        }
    }

    fn on_response(&mut self, now: Instant, from: Peer, msg: Msg) {
        let Some(branch) = msg.branch() else { return };
        let method = msg.cseq().method;
        // An answer to one of our own client transactions (matched by our
        // branch) is taken even from a hop a reload removed: calls set up
        // before the reload must still end normally.
        // Only the hop a request went to may answer it: a guessed branch from
        // anywhere else is dropped.
        if method == Method::Invite {
            if let Some(&(call, idx)) = self.branches.get(branch) {
                if self.branch_peer(call, idx).is_some_and(|to| to.addr.ip() == from.addr.ip()) {
                    return self.invite_response(now, call, idx, msg);
                }
                return;
            }
        } else if let Some(to) = self.non_invite_peer(branch, &msg) {
            if to.addr.ip() == from.addr.ip() {
                return self.non_invite_response(now, msg);
            }
            return;
        }
        if self.routing.load().peers.classify(from.addr.ip()) == Source::Unknown {
            return;
        }
        if let Some(p) = self.probes.as_mut() {
            if p.on_response(branch, &self.down) {
                return;
            }
        }
        // A 2xx retransmission for a finished INVITE branch still has to reach
        // the caller (RFC 6026): the dialog knows where the caller is.
        if msg.status().is_some_and(|s| (200..300).contains(&s)) && msg.cseq().method == Method::Invite {
            self.stray_2xx(now, from, msg);
        }
    }

    fn on_timer(&mut self, now: Instant, f: Fired) {
        match f.owner {
            Owner::Call(id) => self.call_timer(now, id, f),
            Owner::Txn(id) => self.non_invite_timer(now, id, f),
            Owner::Core => self.probe_timer(now, f),
        }
    }

    /// Runs a transaction's actions: sends go to `to`, timers are armed for `owner`.
    fn run(&mut self, now: Instant, to: Peer, owner: Owner, slot: Slot, actions: Actions) {
        for a in actions {
            match a {
                Action::Send(b) => self.send(to, b),
                Action::Arm(t, d) => {
                    self.timers.arm(now, d, owner, t, slot);
                }
            }
        }
    }

    fn send(&mut self, to: Peer, payload: Bytes) {
        m::message_out(to.transport);
        self.out.push_back(Transmit { to, payload });
    }

    /// A response built by the edge itself (adds Server when configured).
    fn response(&self, req: &Msg, code: u16, reason: &str, to_tag: Option<&str>, extra: &[(&str, &str)]) -> Bytes {
        match self.cfg.server_header.as_deref() {
            Some(server) => {
                let mut all: smallvec::SmallVec<[(&str, &str); 4]> = extra.iter().copied().collect();
                all.push(("Server", server));
                build::response(req, code, reason, to_tag, &all)
            }
            None => build::response(req, code, reason, to_tag, extra),
        }
    }

    /// Answers `req` statelessly with the status of `why`.
    fn reject(&mut self, to: Peer, req: &Msg, why: Reject, to_tag: Option<&str>) {
        let bytes = self.reject_bytes(req, why, to_tag);
        self.send(to, bytes);
    }

    fn reject_bytes(&self, req: &Msg, why: Reject, to_tag: Option<&str>) -> Bytes {
        let (code, reason) = why.status();
        let retry = self.cfg.retry_after_s.to_string();
        let mut extra: smallvec::SmallVec<[(&str, &str); 2]> = smallvec::SmallVec::new();
        if why.retry_after() {
            extra.push(("Retry-After", retry.as_str()));
        }
        if why.allow() {
            extra.push(("Allow", respond::ALLOW));
        }
        self.response(req, code, reason, to_tag, &extra)
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A branch parameter unique to this edge, shard and transaction.
    fn new_branch(&mut self) -> String {
        let id = self.new_id();
        // z9hG4bK-se{shard}-{nonce:x}-{id:x}, allocated at its exact size.
        let build = |b: &mut String| {
            b.push_str("z9hG4bK-se");
            text::push_dec(b, u64::from(self.shard));
            b.push('-');
            text::push_hex(b, u64::from(self.cfg.instance_nonce));
            b.push('-');
            text::push_hex(b, id);
            true
        };
        with_key(build, |b: &str| String::from(b)).unwrap_or_default()
    }

    /// Our Via for a request sent to `to`: the address of the listener it
    /// goes out of (see [`Local::listener_for`]).
    fn via(&self, to: Peer, branch: &str) -> String {
        let transport = to.transport;
        let (name, host_port) = (transport.via_name(), self.cfg.local.host_port_for(to));
        let mut v = String::with_capacity(17 + name.len() + host_port.len() + branch.len());
        v.push_str("SIP/2.0/");
        v.push_str(name);
        v.push(' ');
        v.push_str(host_port);
        v.push_str(";branch=");
        v.push_str(branch);
        v
    }

    /// The server-transaction key of a request (§17.2.3): branch + sent-by + method.
    fn server_key(msg: &Msg, method: Method) -> Option<Box<str>> {
        with_key(|k| Self::write_server_key(msg, method, k), |k: &str| Box::from(k))
    }

    /// Looks the server-transaction key of a request up with `f`, without allocating it.
    fn server_key_lookup<R>(msg: &Msg, method: Method, f: impl FnOnce(&str) -> R) -> Option<R> {
        with_key(|k| Self::write_server_key(msg, method, k), f)
    }

    /// Writes the key of [`Core::server_key`] into `k`; false without a Via.
    fn write_server_key(msg: &Msg, method: Method, k: &mut String) -> bool {
        let Some(via) = msg.top_via() else { return false };
        let branch = via.branch.unwrap_or("");
        let m = match method {
            Method::Ack => Method::Invite,
            other => other,
        };
        k.push_str(branch);
        k.push('|');
        k.push_str(via.host);
        if let Some(p) = via.port {
            k.push(':');
            text::push_dec(k, u64::from(p));
        }
        k.push('|');
        k.push_str(if m == Method::Other { msg.method_str() } else { m.as_str() });
        if !branch.starts_with("z9hG4bK") {
            // RFC 2543 peers: fall back on the dialog identifiers too.
            k.push('|');
            k.push_str(msg.call_id());
            k.push('|');
            text::push_dec(k, u64::from(msg.cseq().seq));
            k.push('|');
            k.push_str(msg.from_tag().unwrap_or(""));
        }
        true
    }
}

thread_local! {
    /// Where map keys are built for lookups, reused: a lookup allocates nothing.
    static KEY_SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Builds a key with `build` (false: no key) in a reused buffer and runs `f` on it.
fn with_key<R>(build: impl FnOnce(&mut String) -> bool, f: impl FnOnce(&str) -> R) -> Option<R> {
    KEY_SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut k) => {
            k.clear();
            build(&mut k).then(|| f(&k))
        }
        // Only if `f` itself built a key: fall back on a fresh buffer.
        Err(_) => {
            let mut k = String::new();
            build(&mut k).then(|| f(&k))
        }
    })
}

/// Looks `a` + `sep` + `b` (a key of [`join_key`]'s shape) up with `f`, without allocating it.
fn with_joined<R>(a: &str, sep: char, b: &str, f: impl FnOnce(&str) -> Option<R>) -> Option<R> {
    let build = |k: &mut String| {
        k.push_str(a);
        k.push(sep);
        k.push_str(b);
        true
    };
    with_key(build, f).flatten()
}
