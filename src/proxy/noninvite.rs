//! Proxied non-INVITE transactions (BYE, UPDATE, INFO, PRACK, ...) and
//! requests the edge originates itself (CANCEL, BYE at a call's forced end).

use super::FastMap;
use bytes::Bytes;
use std::time::Instant;

use super::timer::{Fired, Owner, Slot};
use super::txn::{Action, Actions, ClientNonInvite, Delivery, ServerNonInvite, TimerOutcome};
use super::{respond, Core, Peer, Reject};
use crate::sip::build::ForwardEdits;
use crate::sip::{build, Msg};

/// The upstream side of a relayed transaction: the sender, our server
/// transaction toward it, its key, and the request until the final answer.
type Upstream = (Peer, ServerNonInvite, Box<str>, Option<Box<Msg>>);

/// One non-INVITE transaction through the edge.
pub(super) struct NonInvite {
    /// The sender, our server transaction toward it, its key and the request
    /// (kept only until the final answer: a 408/503 may have to be built from
    /// it); None when we originated it.
    upstream: Option<Upstream>,
    client: ClientNonInvite,
    client_key: Box<str>,
    to: Peer,
}

/// Every non-INVITE transaction of a shard.
#[derive(Default)]
pub(super) struct NonInvites {
    /// Boxed: the map keeps up to twice its length in slots, for the 64·T1
    /// each transaction stays after its final answer.
    by_id: FastMap<u64, Box<NonInvite>>,
    by_server_key: FastMap<Box<str>, u64>,
    by_client_key: FastMap<Box<str>, u64>,
}

impl NonInvites {
    /// Entries of each map: transactions, server keys, client keys (for tests).
    #[cfg(test)]
    pub fn sizes(&self) -> [usize; 3] {
        [self.by_id.len(), self.by_server_key.len(), self.by_client_key.len()]
    }
}

/// The client-side key: our branch and the CSeq method.
fn client_key(branch: &str, method: &str) -> Box<str> {
    super::join_key(branch, '|', method)
}

impl Core {
    /// A retransmitted non-INVITE request gets the last answer again.
    pub(super) fn non_invite_retransmission(&mut self, from: Peer, msg: &Msg) -> bool {
        let Some(method) = msg.method() else { return false };
        let by_key = &self.nits.by_server_key;
        let Some(id) = Self::server_key_lookup(msg, method, |k| by_key.get(k).copied()).flatten() else { return false };
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

    /// Where the non-INVITE client transaction a response belongs to was sent, if it is ours.
    pub(super) fn non_invite_peer(&self, branch: &str, msg: &Msg) -> Option<Peer> {
        let m = msg.cseq().method;
        let id = super::with_joined(branch, '|', m.as_str(), |k| self.nits.by_client_key.get(k).copied())?;
        self.nits.by_id.get(&id).map(|n| n.to)
    }

    /// Forwards a non-INVITE request statefully to `to`.
    pub(super) fn forward_nit(&mut self, now: Instant, from: Peer, msg: Msg, to: Peer, pop_routes: usize) {
        let Some(method) = msg.method() else { return };
        let Some(skey) = Self::server_key(&msg, method) else { return };
        let branch = self.new_branch();
        let via = self.via(to, &branch);
        let mf = msg.max_forwards().unwrap_or(crate::sip::build::MAX_FORWARDS).saturating_sub(1);
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
                upstream_via: msg.top_via().and_then(|v| crate::sip::via::stamped(&v, from.addr)).as_deref(),
            },
        );
        let server = ServerNonInvite::new(from.transport.is_stream());
        let ckey = client_key(&branch, msg.method_str());
        // Kept until the server transaction ends: must not pin its receive chunk.
        let mut msg = msg;
        msg.detach();
        self.start_nit(now, Some((from, server, skey, Some(Box::new(msg)))), to, bytes, ckey);
    }

    /// Sends a request the edge originates (CANCEL, BYE); its answers are absorbed.
    pub(super) fn originate(&mut self, now: Instant, to: Peer, bytes: Bytes) {
        let Ok(msg) = Msg::parse(bytes.clone()) else { return };
        let Some(branch) = msg.branch() else { return };
        let ckey = client_key(branch, msg.method_str());
        self.start_nit(now, None, to, bytes, ckey);
    }

    fn start_nit(&mut self, now: Instant, upstream: Option<Upstream>, to: Peer, bytes: Bytes, ckey: Box<str>) {
        let id = self.new_id();
        let mut out = Actions::new();
        let client = ClientNonInvite::start(bytes, to.transport.is_stream(), &self.cfg.timers, &mut out);
        if let Some((_, _, skey, _)) = &upstream {
            self.nits.by_server_key.insert(skey.clone(), id);
        }
        self.nits.by_client_key.insert(ckey.clone(), id);
        self.nits.by_id.insert(id, Box::new(NonInvite { upstream, client, client_key: ckey, to }));
        self.run(now, to, Owner::Txn(id), Slot::Client, out);
    }

    /// A response to one of our non-INVITE client transactions.
    pub(super) fn non_invite_response(&mut self, now: Instant, msg: Msg) {
        let Some(code) = msg.status() else { return };
        let Some(branch) = msg.branch() else { return };
        let by_key = &self.nits.by_client_key;
        let Some(id) = super::with_joined(branch, '|', msg.cseq().method.as_str(), |k| by_key.get(k).copied()) else {
            return;
        };
        let tv = self.cfg.timers;
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        let mut out = Actions::new();
        let (delivery, outcome) = nit.client.on_response(code, &tv, &mut out);
        let to = nit.to;
        self.run(now, to, Owner::Txn(id), Slot::Client, out);
        if delivery == Delivery::Deliver {
            let bytes = build::forward_response(&msg);
            self.non_invite_respond_upstream(now, id, code, bytes);
        }
        if outcome == TimerOutcome::Terminated {
            self.non_invite_client_done(id);
        }
    }

    fn non_invite_respond_upstream(&mut self, now: Instant, id: u64, code: u16, bytes: Bytes) {
        let tv = self.cfg.timers;
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        let Some((peer, server, _, req)) = nit.upstream.as_mut() else { return };
        let peer = *peer;
        let mut out = Actions::new();
        let outcome = server.respond(code, bytes, &tv, &mut out);
        if code >= 200 {
            // Answered: nothing will be built from the request any more.
            *req = None;
        }
        self.run(now, peer, Owner::Txn(id), Slot::Server, out);
        if outcome == TimerOutcome::Terminated {
            self.non_invite_server_done(id);
        }
    }

    /// A timer of a non-INVITE transaction (its server or its client side).
    pub(super) fn non_invite_timer(&mut self, now: Instant, id: u64, f: Fired) {
        let tv = self.cfg.timers;
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        let mut out = Actions::new();
        if f.slot != Slot::Client {
            if let Some((_, server, _, _)) = nit.upstream.as_mut() {
                if server.on_timer(f.timer) == TimerOutcome::Terminated {
                    self.non_invite_server_done(id);
                }
            }
            return;
        }
        let to = nit.to;
        let outcome = nit.client.on_timer(f.timer, &tv, &mut out);
        self.run(now, to, Owner::Txn(id), Slot::Client, out);
        match outcome {
            TimerOutcome::Timeout => {
                // The next hop never answered: 408 upstream (§16.7 step 6).
                let resp = self
                    .nits
                    .by_id
                    .get(&id)
                    .and_then(|n| n.upstream.as_ref())
                    .and_then(|(_, _, _, req)| req.as_deref())
                    .map(|req| {
                        let (code, reason) = Reject::Timeout.status();
                        (code, self.response(req, code, reason, None, &[]))
                    });
                if let Some((code, bytes)) = resp {
                    self.non_invite_respond_upstream(now, id, code, bytes);
                }
                self.non_invite_client_done(id);
            }
            TimerOutcome::Terminated => self.non_invite_client_done(id),
            _ => {}
        }
    }

    /// Our request with `branch` and `method` could not be delivered: if it still waits
    /// for its final answer it ends now, and its sender gets a 503 (§16.9: a transport
    /// error counts as a 503), not a 408 after 64·T1.
    pub(super) fn non_invite_send_error(&mut self, now: Instant, branch: &str, method: &str) {
        let by_key = &self.nits.by_client_key;
        let Some(id) = super::with_joined(branch, '|', method, |k| by_key.get(k).copied()) else { return };
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        if nit.client.on_transport_error() != TimerOutcome::Timeout {
            return;
        }
        let resp = nit.upstream.as_ref().and_then(|(_, _, _, req)| req.as_deref().cloned());
        if let Some(req) = resp {
            let (code, reason) = respond::UNDELIVERABLE;
            let bytes = self.response(&req, code, reason, None, &[]);
            self.non_invite_respond_upstream(now, id, code, bytes);
        }
        self.non_invite_client_done(id);
    }

    fn non_invite_client_done(&mut self, id: u64) {
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        let key = std::mem::take(&mut nit.client_key);
        self.nits.by_client_key.remove(&key);
        self.non_invite_maybe_remove(id);
    }

    fn non_invite_server_done(&mut self, id: u64) {
        let Some(nit) = self.nits.by_id.get_mut(&id) else { return };
        if let Some((_, _, skey, _)) = nit.upstream.take() {
            self.nits.by_server_key.remove(&skey);
        }
        self.non_invite_maybe_remove(id);
    }

    fn non_invite_maybe_remove(&mut self, id: u64) {
        let done = self.nits.by_id.get(&id).is_some_and(|n| n.client_key.is_empty() && n.upstream.is_none());
        if done {
            self.nits.by_id.remove(&id);
        }
    }
}
