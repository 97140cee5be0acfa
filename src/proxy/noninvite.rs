//! Proxied non-INVITE transactions (BYE, UPDATE, INFO, PRACK, ...) and
//! requests the edge originates itself (CANCEL, BYE at a call's forced end).

use bytes::Bytes;
use std::collections::HashMap;
use std::time::Instant;

use super::timer::{Fired, Owner};
use super::txn::{Action, Actions, ClientNonInvite, Delivery, ServerNonInvite, TimerOutcome};
use super::{Core, Peer, Reject};
use crate::sip::build::ForwardEdits;
use crate::sip::{build, Msg, Transport};

/// One non-INVITE transaction through the edge.
pub(super) struct Nit {
    /// The sender and our server transaction toward it; None when we originated it.
    upstream: Option<(Peer, ServerNonInvite, Box<str>, Msg)>,
    client: ClientNonInvite,
    client_key: Box<str>,
    to: Peer,
}

/// Every non-INVITE transaction of a shard.
#[derive(Default)]
pub(super) struct Table {
    by_id: HashMap<u64, Nit>,
    by_server_key: HashMap<Box<str>, u64>,
    by_client_key: HashMap<Box<str>, u64>,
}

/// The client-side key: our branch and the CSeq method.
fn client_key(branch: &str, method: &str) -> Box<str> {
    let mut k = String::with_capacity(branch.len() + method.len() + 1);
    k.push_str(branch);
    k.push('|');
    k.push_str(method);
    k.into_boxed_str()
}

impl Table {
    /// Transactions in flight.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

impl Core {
    /// A retransmitted non-INVITE request gets the last answer again.
    pub(super) fn nit_retransmission(&mut self, from: Peer, msg: &Msg) -> bool {
        let Some(method) = msg.method() else { return false };
        let Some(key) = Self::server_key(msg, method) else { return false };
        let Some(id) = self.nits.by_server_key.get(&key).copied() else { return false };
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return false };
        let Some((_, server, _, _)) = nit.upstream.as_mut() else { return false };
        let mut out = Actions::new();
        server.on_retransmission(&mut out);
        for a in out {
            if let Action::Send(b) = a {
                self.send(from, b);
            }
        }
        true
    }

    /// Whether a response belongs to one of our non-INVITE client transactions.
    pub(super) fn nit_owns(&self, branch: &str, msg: &Msg) -> bool {
        let m = msg.cseq().method;
        self.nits.by_client_key.contains_key(&client_key(branch, m.as_str()))
    }

    /// Forwards a non-INVITE request statefully to `to`.
    pub(super) fn forward_nit(&mut self, now: Instant, from: Peer, msg: Msg, to: Peer, pop_routes: usize) {
        let Some(method) = msg.method() else { return };
        let Some(skey) = Self::server_key(&msg, method) else { return };
        let branch = self.new_branch();
        let via = self.via(to.transport, &branch);
        let mf = msg.max_forwards().unwrap_or(70).saturating_sub(1);
        let bytes = build::forward_request(
            &msg,
            &ForwardEdits {
                request_uri: None,
                via: &via,
                record_route: None,
                pop_routes,
                max_forwards: mf,
                add: &[],
                remove: &[],
                from_display: None,
            },
        );
        let server = ServerNonInvite::new(from.transport == Transport::Tcp);
        let ckey = client_key(&branch, msg.method_str());
        // Kept until the server transaction ends: must not pin its receive chunk.
        let mut msg = msg;
        msg.detach();
        self.start_nit(now, Some((from, server, skey, msg)), to, bytes, ckey);
    }

    /// Sends a request the edge originates (CANCEL, BYE); its answers are absorbed.
    pub(super) fn originate(&mut self, now: Instant, to: Peer, bytes: Bytes) {
        let Ok(msg) = Msg::parse(bytes.clone()) else { return };
        let Some(branch) = msg.top_via().and_then(|v| v.branch) else { return };
        let ckey = client_key(branch, msg.method_str());
        self.start_nit(now, None, to, bytes, ckey);
    }

    fn start_nit(
        &mut self,
        now: Instant,
        upstream: Option<(Peer, ServerNonInvite, Box<str>, Msg)>,
        to: Peer,
        bytes: Bytes,
        ckey: Box<str>,
    ) {
        let id = self.new_id();
        let mut out = Actions::new();
        let client = ClientNonInvite::start(bytes, to.transport == Transport::Tcp, &self.cfg.timers, &mut out);
        if let Some((_, _, skey, _)) = &upstream {
            self.nits.by_server_key.insert(skey.clone(), id);
        }
        self.nits.by_client_key.insert(ckey.clone(), id);
        self.nits.by_id.insert(id, Nit { upstream, client, client_key: ckey, to });
        self.run(now, to, Owner::Txn(id), 1, out);
    }

    /// A response to one of our non-INVITE client transactions.
    pub(super) fn nit_response(&mut self, now: Instant, msg: Msg) {
        let Some(code) = msg.status() else { return };
        let Some(branch) = msg.top_via().and_then(|v| v.branch) else { return };
        let key = client_key(branch, msg.cseq().method.as_str());
        let Some(id) = self.nits.by_client_key.get(&key).copied() else { return };
        let tv = self.cfg.timers;
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        let mut out = Actions::new();
        let (delivery, outcome) = nit.client.on_response(code, &tv, &mut out);
        let to = nit.to;
        self.run(now, to, Owner::Txn(id), 1, out);
        if delivery == Delivery::Deliver {
            let bytes = build::forward_response(&msg);
            self.nit_respond_upstream(now, id, code, bytes);
        }
        if outcome == TimerOutcome::Terminated {
            self.nit_client_done(id);
        }
    }

    fn nit_respond_upstream(&mut self, now: Instant, id: u64, code: u16, bytes: Bytes) {
        let tv = self.cfg.timers;
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        let Some((peer, server, _, _)) = nit.upstream.as_mut() else { return };
        let peer = *peer;
        let mut out = Actions::new();
        let outcome = server.respond(code, bytes, &tv, &mut out);
        self.run(now, peer, Owner::Txn(id), 0, out);
        if outcome == TimerOutcome::Terminated {
            self.nit_server_done(id);
        }
    }

    /// A timer of a non-INVITE transaction (slot 0: server side, 1: client side).
    pub(super) fn nit_timer(&mut self, now: Instant, id: u64, f: Fired) {
        let tv = self.cfg.timers;
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        let mut out = Actions::new();
        if f.slot == 0 {
            if let Some((_, server, _, _)) = nit.upstream.as_mut() {
                if server.on_timer(f.timer) == TimerOutcome::Terminated {
                    self.nit_server_done(id);
                }
            }
            return;
        }
        let to = nit.to;
        let outcome = nit.client.on_timer(f.timer, &tv, &mut out);
        self.run(now, to, Owner::Txn(id), 1, out);
        match outcome {
            TimerOutcome::Timeout => {
                // The next hop never answered: 408 upstream (§16.7 step 6).
                let resp = self.nits.by_id.get(&id).and_then(|n| n.upstream.as_ref()).map(|(_, _, _, req)| {
                    let (code, reason) = Reject::Timeout.status();
                    (code, self.response(req, code, reason, None, &[]))
                });
                if let Some((code, bytes)) = resp {
                    self.nit_respond_upstream(now, id, code, bytes);
                }
                self.nit_client_done(id);
            }
            TimerOutcome::Terminated => self.nit_client_done(id),
            _ => {}
        }
    }

    fn nit_client_done(&mut self, id: u64) {
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        let key = std::mem::take(&mut nit.client_key);
        self.nits.by_client_key.remove(&key);
        self.nit_maybe_remove(id);
    }

    fn nit_server_done(&mut self, id: u64) {
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        if let Some((_, _, skey, _)) = nit.upstream.take() {
            self.nits.by_server_key.remove(&skey);
        }
        self.nit_maybe_remove(id);
    }

    fn nit_maybe_remove(&mut self, id: u64) {
        let done = self
            .nits
            .by_id
            .get(&id)
            .is_some_and(|n| n.client_key.is_empty() && n.upstream.is_none());
        if done {
            self.nits.by_id.remove(&id);
        }
    }
}
