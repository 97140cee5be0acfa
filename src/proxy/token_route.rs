//! Routing on the Record-Route token (SPEC §9): every INVITE we forward
//! carries, in our Record-Route URI, a token naming the call's two peers
//! sealed under the dialog key. A request inside a dialog this process does
//! not remember (it restarted, or another instance holding the same key set
//! the call up) is routed on that token alone: from one of the two peers to
//! the other, which must still be a configured peer. Anything else gets 481
//! and nothing is sent (no open relay: the token only names peers we chose).

use std::net::SocketAddr;
use std::time::Instant;

use super::context::TOKEN_PARAM;
use super::token::{self, Token, TokenPeer};
use super::{Core, Peer, Reject};
use crate::metrics as m;
use crate::routing::Source;
use crate::sip::{Method, Msg, Transport};

/// The `st=` value of a Route URI, if it has one.
fn token_of(uri: &str) -> Option<&str> {
    // URI parameters end where its headers (`?`) start.
    let params = uri.split('?').next()?;
    params.split(';').skip(1).find_map(|p| p.strip_prefix(TOKEN_PARAM)?.strip_prefix('='))
}

impl Core {
    /// The token for a call from `caller` forwarded to `callee`.
    pub(super) fn dialog_token(&self, caller: Peer, callee: Peer) -> String {
        let sealer = &self.cfg.sealer;
        let peers = [self.token_peer(caller), TokenPeer { addr: callee.addr, transport: callee.transport }];
        token::seal(&sealer.key, &Token { boot: sealer.boot, peers })
    }

    /// How the token names the caller: where it sent from, except over TCP,
    /// or TLS, where that is an ephemeral port nobody listens on once the
    /// connection is gone: then the configured address of the peer at that IP.
    fn token_peer(&self, p: Peer) -> TokenPeer {
        let addr = match p.transport {
            Transport::Udp => p.addr,
            Transport::Tcp | Transport::Tls => self.listening_addr(p.addr, p.transport).unwrap_or(p.addr),
        };
        TokenPeer { addr, transport: p.transport }
    }

    fn listening_addr(&self, from: SocketAddr, transport: Transport) -> Option<SocketAddr> {
        let routing = self.routing.load();
        let peers = &routing.peers;
        let ip = from.ip().to_canonical();
        peers
            .carriers
            .iter()
            .flat_map(|c| &c.links)
            .chain(&peers.flow_engine)
            .find(|l| l.transport == transport && l.addr.ip().to_canonical() == ip)
            .map(|l| l.addr)
    }

    /// A request with a To tag that matches no dialog in memory: routed on
    /// its token, or answered 481 (an ACK is dropped: it gets no answer).
    pub(super) fn route_by_token(&mut self, now: Instant, from: Peer, msg: Msg, method: Method) {
        let Some(to) = self.token_target(from, &msg) else {
            m::dialog_token(false);
            if method != Method::Ack {
                self.reject(from, &msg, Reject::NoDialog, None);
            }
            return;
        };
        m::dialog_token(true);
        tracing::debug!(call_id = msg.call_id(), peer = %to.addr, method = method.as_str(), "routed on the dialog token");
        let pop = self.our_routes(&msg);
        match method {
            Method::Ack => self.forward_dialog_ack(&msg, to, pop),
            Method::Invite => {
                self.forward_reinvite(now, from, msg, to, pop);
            }
            _ => self.forward_nit(now, from, msg, to, pop),
        }
    }

    /// Where the token in our leading Route entries sends a request from
    /// `from`: the other peer it names, if `from` is one of them and the
    /// other is still configured.
    fn token_target(&self, from: Peer, msg: &Msg) -> Option<Peer> {
        let ours = self.our_routes(msg);
        let text = msg.routes().take(ours).find_map(token_of)?;
        let sealer = &self.cfg.sealer;
        let Token { boot, peers: [a, b] } = token::open(&sealer.key, text)?;
        // Sealed by this run: we set the call up, and it is over (memory is
        // right, and a late request to a given-up hop must not get through).
        if boot == sealer.boot {
            return None;
        }
        let same_ip = |p: &TokenPeer| p.addr.ip().to_canonical() == from.addr.ip().to_canonical();
        let other = if a.addr == from.addr {
            b
        } else if b.addr == from.addr {
            a
        } else {
            match (same_ip(&a), same_ip(&b)) {
                (true, false) => b,
                (false, true) => a,
                // Neither, or both (one IP for the two sides): not ours to guess.
                _ => return None,
            }
        };
        let routing = self.routing.load();
        let peers = &routing.peers;
        let configured = peers.is_peer_addr(other.addr) || peers.classify(other.addr.ip()) != Source::Unknown;
        // The last of our entries faces the other side (RFC 5658: with one
        // entry per side, the sender's comes first): leave from that listener.
        let listener = msg
            .routes()
            .take(ours)
            .last()
            .and_then(crate::sip::uri::parse_uri)
            .and_then(|u| self.cfg.local.listener_named(u.host, u.port))
            .and_then(|i| u16::try_from(i).ok());
        configured.then_some(Peer::to(other.addr, other.transport).via_listener(listener))
    }
}

#[cfg(test)]
mod tests {
    use super::token_of;

    #[test]
    fn token_param_is_found_among_others() {
        assert_eq!(token_of("sip:10.0.0.1:5060;lr;st=00ab"), Some("00ab"));
        assert_eq!(token_of("sip:10.0.0.1:5060;st=ff;lr"), Some("ff"));
        assert_eq!(token_of("sip:10.0.0.1:5060;transport=tcp;lr;st=01?x=st=02"), Some("01"));
        assert_eq!(token_of("sip:10.0.0.1:5060;lr"), None);
        assert_eq!(token_of("sip:10.0.0.1:5060;lr;stx=01"), None);
        assert_eq!(token_of("sip:st=01@10.0.0.1:5060;lr"), None);
    }
}
