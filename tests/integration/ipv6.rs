//! IPv6 beside IPv4 (SPEC §12): one edge with an IPv4 and an IPv6 UDP
//! listener; a carrier on ::1 calls a flow engine on 127.x. The call crosses
//! IP families, so the edge record-routes twice (RFC 5658), once per side,
//! and in-dialog requests from either side find their way back.

use std::net::{SocketAddr, UdpSocket};

use crate::failover::{invite_as, wait_metric, T};
use crate::support::peer::{callee_bye, in_dialog};
use crate::support::{Block, Edge, EdgeSpec, Peer};
use sipedge::sip::{build, HeaderName, Method, Msg};

const TOLL_FREE: &str = "+18005550100";

/// A free UDP port on ::1 (bound and let go: the edge takes it next).
fn free_v6_port() -> u16 {
    let s = UdpSocket::bind("[::1]:0").expect("::1 is up on loopback");
    s.local_addr().unwrap().port()
}

/// The edge on `b` (IPv4 listener `b.addr(1, 5060)`) plus an IPv6 listener,
/// with carrier-a at `carrier` and the flow engine at `b.addr(10, 5060)`.
fn dual_stack_edge(b: Block, v6: SocketAddr, carrier: SocketAddr) -> Edge {
    let toml = format!(
        "[[listen]]\ntransport = \"udp\"\naddr = \"{v6}\"\n\
         [health]\noptions_interval_ms = 60000\n\
         [[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{carrier}\"\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(10, 5060)
    );
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() })
}

/// Places a call from the IPv6 carrier; returns the INVITE the flow engine
/// got and the 200 the carrier got, the ACK having reached the flow engine.
fn answered_call(carrier: &mut Peer, fe: &mut Peer, edge: &Edge, v6: SocketAddr, call_id: &str) -> (Msg, Msg) {
    carrier.send(&invite_as(carrier.local(), v6, TOLL_FREE, "+13125550199", call_id));
    let (inv, from) = fe.expect_request("INVITE", T);
    let rr: Vec<String> = inv.record_routes().map(str::to_owned).collect();
    assert_eq!(rr.len(), 2, "one Record-Route per family (RFC 5658): {rr:?}\n{}", edge.log());
    assert!(rr[0].contains(&edge.sip.to_string()), "the flow engine's side first: {rr:?}");
    assert!(rr[1].contains(&v6.to_string()), "then the carrier's, bracketed: {rr:?}");
    let via = inv.top_via().unwrap();
    assert_eq!((via.host, via.port), (edge.sip.ip().to_string().as_str(), Some(edge.sip.port())), "IPv4 Via");
    fe.answer(&inv, 200, from);
    let ok = carrier.expect_status(200, T);
    assert_eq!(ok.record_routes().count(), 2, "the 2xx keeps both entries");
    let local = carrier.local();
    carrier.send(&in_dialog("ACK", &ok, local, "UDP", 1, &format!("a{call_id}")));
    let (ack, _) = fe.expect_request("ACK", T);
    assert_eq!(ack.call_id(), call_id);
    (inv, ok)
}

#[test]
fn a_carrier_on_ipv6_reaches_an_ipv4_flow_engine_and_either_side_hangs_up() {
    let b = Block::new();
    let v6: SocketAddr = format!("[::1]:{}", free_v6_port()).parse().unwrap();
    let mut carrier = Peer::udp("[::1]:0".parse().unwrap(), v6);
    // Bound before the edge starts: its first OPTIONS probe must not meet a closed port.
    let mut fe = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let edge = dual_stack_edge(b, v6, carrier.local());

    // The carrier hangs up: its BYE goes in over IPv6 and out over IPv4.
    let (_, ok) = answered_call(&mut carrier, &mut fe, &edge, v6, "v6-caller-bye");
    let local = carrier.local();
    carrier.send(&in_dialog("BYE", &ok, local, "UDP", 2, "bye1"));
    let (bye, from) = fe.expect_request("BYE", T);
    fe.answer(&bye, 200, from);
    let done = carrier.expect_status(200, T);
    assert_eq!(done.cseq().method, Method::Bye);

    // The flow engine hangs up: its BYE goes in over IPv4 and out over IPv6.
    let (inv, _) = answered_call(&mut carrier, &mut fe, &edge, v6, "v6-callee-bye");
    let fe_local = fe.local();
    fe.send_bytes(&callee_bye(&inv, fe_local, "z9hG4bKv6bye"));
    let (bye, from) = carrier.expect_request("BYE", T);
    assert!(from.is_ipv6(), "the BYE reaches the carrier from the IPv6 listener, not {from}");
    assert_eq!(from, v6);
    carrier.reply(&build::response(&bye, 200, "OK", None, &[]), from);
    let done = fe.expect_status(200, T);
    assert_eq!(done.cseq().method, Method::Bye);
    assert!(wait_metric(&edge, "sipedge_active_calls", &[], 0.0, T), "{}", edge.log());
}

#[test]
fn an_ipv6_carrier_outside_the_configured_sources_is_refused() {
    let b = Block::new();
    let v6: SocketAddr = format!("[::1]:{}", free_v6_port()).parse().unwrap();
    // carrier-a is on IPv4: ::1 is nobody's.
    let edge = dual_stack_edge(b, v6, b.addr(2, 5060));
    let mut stranger = Peer::udp("[::1]:0".parse().unwrap(), v6);
    stranger.send(&invite_as(stranger.local(), v6, TOLL_FREE, "+13125550199", "v6-stranger"));
    let refused = stranger.expect(T, "a final answer", |m| m.status().is_some_and(|s| s >= 200));
    assert_eq!(refused.0.status(), Some(403), "{}", edge.log());
}

/// An edge whose carrier-a has no IPv6 link but names `::1` by a `sources` CIDR.
fn edge_with_v6_sources(b: Block, v6: SocketAddr) -> Edge {
    let toml = format!(
        "[[listen]]\ntransport = \"udp\"\naddr = \"{v6}\"\n\
         [health]\noptions_interval_ms = 60000\n\
         [[carrier]]\nname = \"carrier-a\"\nsources = [\"::/120\"]\n\
         [[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(2, 5060),
        b.addr(10, 5060)
    );
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() })
}

#[test]
fn an_ipv6_source_cidr_admits_the_carrier_and_its_via_gets_received_and_rport() {
    let b = Block::new();
    let v6: SocketAddr = format!("[::1]:{}", free_v6_port()).parse().unwrap();
    let mut fe = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let edge = edge_with_v6_sources(b, v6);
    let mut carrier = Peer::udp("[::1]:0".parse().unwrap(), v6);
    // The carrier's Via names an address it does not send from (as behind a
    // NAT) and asks for rport (RFC 3581).
    let claimed = b.addr(3, 5070);
    let inv = invite_as(carrier.local(), v6, TOLL_FREE, "+13125550199", "v6-sources").replacen(
        &format!("SIP/2.0/UDP {};", carrier.local()),
        &format!("SIP/2.0/UDP {claimed};rport;"),
        1,
    );
    carrier.send(&inv);
    let (got, from) = fe.expect_request("INVITE", T);
    assert_eq!(got.header_by_name("X-Carrier"), Some("carrier-a"), "{}", edge.log());
    let vias: Vec<&str> = got.headers(HeaderName::Via).collect();
    let theirs =
        format!("SIP/2.0/UDP {claimed};rport={};branch=z9hG4bKv6-sources;received=::1", carrier.local().port());
    assert_eq!(vias.get(1).copied(), Some(theirs.as_str()), "the carrier's Via as forwarded: {vias:?}");
    // The answer still goes back to where the INVITE came from, not to the Via.
    fe.answer(&got, 486, from);
    let busy = carrier.expect_status(486, T);
    assert_eq!(busy.top_via().unwrap().received, Some("::1"), "the caller sees its Via as the edge stamped it");
}
