//! The RFC 4475 and RFC 5118 torture messages over real UDP to the real
//! edge, from a configured carrier, inside a loopback-only network
//! namespace (the messages name outside hosts: the edge must only ever
//! answer the packet's source).
//!
//! The expectation per file is the one `src/sip/tests/torture.rs` records for
//! the parser, carried up to what the proxy answers: a valid request never
//! gets 400; an invalid one gets its parser status (400, 416, 505) or
//! nothing, never 1xx/2xx, and never reaches the flow engine.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::hostile::{in_loopback_netns, out_no_routes};
use crate::support::peer::uas_answer;
use crate::support::{standard, Block, Edge, Peer};
use sipedge::sip::Msg;

/// What the edge should do with one torture file sent by a carrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// A well-formed request: answered, never with 400.
    Valid,
    /// A well-formed request the proxy refuses with this status.
    Refused(u16),
    /// A malformed request: this status or silence; never 1xx/2xx, never forwarded.
    Invalid(u16),
    /// A response matching nothing of ours: never answered, never forwarded.
    Response,
}
use Expect::*;

/// The torture table of `src/sip/tests/torture.rs`, at the proxy's level.
const TABLE: &[(&str, Expect)] = &[
    ("rfc4475/wsinv", Valid),
    ("rfc4475/intmeth", Valid),
    ("rfc4475/esc01", Valid),
    ("rfc4475/escnull", Refused(405)),
    ("rfc4475/esc02", Valid),
    ("rfc4475/lwsdisp", Valid),
    ("rfc4475/longreq", Valid),
    ("rfc4475/dblreq", Refused(405)),
    ("rfc4475/semiuri", Valid),
    ("rfc4475/transports", Valid),
    ("rfc4475/mpart01", Valid),
    ("rfc4475/unreason", Response),
    ("rfc4475/noreason", Response),
    ("rfc4475/badinv01", Invalid(400)),
    ("rfc4475/clerr", Invalid(400)),
    ("rfc4475/ncl", Invalid(400)),
    ("rfc4475/scalar02", Invalid(400)),
    ("rfc4475/scalarlg", Response),
    ("rfc4475/quotbal", Invalid(400)),
    ("rfc4475/ltgtruri", Invalid(400)),
    ("rfc4475/lwsruri", Invalid(400)),
    ("rfc4475/lwsstart", Invalid(400)),
    ("rfc4475/trws", Invalid(400)),
    ("rfc4475/escruri", Invalid(400)),
    ("rfc4475/baddate", Valid),
    ("rfc4475/regbadct", Invalid(400)),
    ("rfc4475/badaspec", Invalid(400)),
    ("rfc4475/baddn", Invalid(400)),
    ("rfc4475/badvers", Invalid(505)),
    ("rfc4475/mismatch01", Invalid(400)),
    ("rfc4475/mismatch02", Invalid(400)),
    ("rfc4475/bigcode", Response),
    ("rfc4475/badbranch", Valid),
    ("rfc4475/insuf", Invalid(400)),
    ("rfc4475/unkscm", Invalid(416)),
    ("rfc4475/novelsc", Invalid(416)),
    ("rfc4475/unksm2", Refused(405)),
    ("rfc4475/bext01", Valid),
    ("rfc4475/invut", Valid),
    ("rfc4475/regaut01", Refused(405)),
    ("rfc4475/multi01", Invalid(400)),
    ("rfc4475/mcl01", Invalid(400)),
    ("rfc4475/bcast", Response),
    ("rfc4475/zeromf", Valid),
    ("rfc4475/cparam01", Refused(405)),
    ("rfc4475/cparam02", Refused(405)),
    ("rfc4475/regescrt", Refused(405)),
    ("rfc4475/sdp01", Valid),
    ("rfc4475/inv2543", Valid),
    ("rfc5118/ipv6-good", Refused(405)),
    ("rfc5118/ipv6-bad", Invalid(400)),
    ("rfc5118/port-ambiguous", Refused(405)),
    ("rfc5118/port-unambiguous", Refused(405)),
    ("rfc5118/via-received-param-with-delim", Valid),
    ("rfc5118/via-received-param-no-delim", Valid),
    ("rfc5118/ipv6-in-sdp", Valid),
    ("rfc5118/mult-ip-in-header", Valid),
    ("rfc5118/mult-ip-in-sdp", Valid),
    ("rfc5118/ipv4-mapped-ipv6", Valid),
    ("rfc5118/ipv6-correct-abnf-2-colons", Valid),
    ("rfc5118/ipv6-bug-abnf-3-colons", Valid),
];

fn status_of(raw: &[u8]) -> Option<u16> {
    let rest = raw.strip_prefix(b"SIP/2.0 ")?;
    std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()
}

/// The Call-ID (long or compact form) of a raw message, for attribution.
fn call_id_of(raw: &[u8]) -> Option<String> {
    sipedge::transport::call_id_hint(raw).map(|c| String::from_utf8_lossy(c).into_owned())
}

/// What reaches the carrier, and what of this call reaches the flow engine,
/// within `wait`. The flow engine refuses a forwarded INVITE at once (486),
/// so the carrier's final answer arrives in the same window.
fn exchange(
    carrier: &mut Peer,
    flow: &mut Peer,
    call_id: Option<&str>,
    wait: Duration,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let end = Instant::now() + wait;
    let (mut got, mut forwarded) = (Vec::new(), Vec::new());
    while Instant::now() < end {
        // Final answers to earlier INVITEs are retransmitted (nobody ACKs
        // them here): only what belongs to this message counts.
        if let Some(b) = carrier.recv_raw(Duration::from_millis(10)) {
            let id = call_id_of(&b);
            if id.is_none() || id.as_deref() == call_id {
                got.push(b);
            }
        }
        while let Some(m) = flow.recv_raw(Duration::from_millis(1)) {
            if call_id.is_none() || call_id_of(&m).as_deref() != call_id {
                continue;
            }
            if let Ok(req) = Msg::parse(bytes::Bytes::copy_from_slice(&m)) {
                if req.method_str() == "INVITE" {
                    let edge = req.top_via().map(|v| format!("{}:{}", v.host, v.port.unwrap_or(5060)));
                    if let Some(Ok(to)) = edge.map(|e| e.parse()) {
                        flow.send_to(&uas_answer(&req, 486, flow.local()), to);
                    }
                }
            }
            forwarded.push(m);
        }
    }
    (got, forwarded)
}

#[test]
fn torture_messages_over_udp() {
    if !in_loopback_netns("torture::torture_messages_over_udp", &[]) {
        return;
    }
    torture_from(false);
}

/// The same messages from a carrier on ::1 to an IPv6 listener (SPEC §12):
/// RFC 5118's bracketed hosts arrive the way they would in production.
#[test]
fn torture_messages_over_an_ipv6_listener() {
    if !in_loopback_netns("torture::torture_messages_over_an_ipv6_listener", &[]) {
        return;
    }
    torture_from(true);
}

/// Sends every torture message from carrier-a (on ::1 when `ipv6`) and checks each answer.
fn torture_from(ipv6: bool) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sip/torture");
    let on_disk =
        ["rfc4475", "rfc5118"].iter().map(|d| std::fs::read_dir(root.join(d)).unwrap().count()).sum::<usize>();
    assert_eq!(on_disk, TABLE.len(), "every torture file has a row");
    let before = out_no_routes();
    let b = Block::new();
    let (edge, mut carrier, to) = if ipv6 {
        // A namespace of our own: these ports on ::1 are free.
        let (carrier_at, edge_v6): (SocketAddr, SocketAddr) =
            ("[::1]:5062".parse().unwrap(), "[::1]:5061".parse().unwrap());
        let mut spec = standard(b, "udp");
        spec.toml =
            spec.toml.replacen(&format!("addr = \"{}\"", b.addr(2, 5060)), &format!("addr = \"{carrier_at}\""), 1)
                + &format!("[[listen]]\ntransport = \"udp\"\naddr = \"{edge_v6}\"\n");
        let edge = Edge::start(b, spec);
        (edge, Peer::udp(carrier_at, edge_v6), edge_v6)
    } else {
        let edge = Edge::start(b, standard(b, "udp"));
        let sip = edge.sip;
        (edge, Peer::udp(b.addr(2, 5060), sip), sip)
    };
    let mut flow = Peer::udp(b.addr(10, 5060), edge.sip);
    let mut failures = Vec::new();
    let mut summary: BTreeMap<String, usize> = BTreeMap::new();
    for &(name, expect) in TABLE {
        let bytes = std::fs::read(root.join(format!("{name}.dat"))).unwrap();
        let call_id = call_id_of(&bytes);
        carrier.send_bytes(&bytes);
        let wait = Duration::from_millis(if matches!(expect, Response | Invalid(_)) { 400 } else { 300 });
        let (got, forwarded) = exchange(&mut carrier, &mut flow, call_id.as_deref(), wait);
        let answers: Vec<u16> = got.iter().filter_map(|m| status_of(m)).collect();
        let requests: Vec<String> = got
            .iter()
            .filter(|m| status_of(m).is_none())
            .map(|m| String::from_utf8_lossy(m).split(' ').next().unwrap_or("").to_string())
            .collect();
        let finals: Vec<u16> = answers.iter().copied().filter(|s| *s >= 200).collect();
        let ok = match expect {
            Valid => !finals.is_empty() && !finals.contains(&400),
            Refused(code) => finals == [code] && forwarded.is_empty(),
            Invalid(code) => answers.iter().all(|s| *s == code) && forwarded.is_empty(),
            // A stray 2xx is ACKed and hung up toward its source (requests), never answered.
            Response => answers.is_empty() && forwarded.is_empty(),
        };
        let line = format!(
            "{name}: expected {expect:?}, answers {answers:?}, edge requests {requests:?}, forwarded {}",
            forwarded.len()
        );
        *summary.entry(format!("{expect:?} -> {answers:?}")).or_default() += 1;
        if !ok {
            failures.push(line);
        }
    }
    for (k, n) in &summary {
        println!("torture: {n:2} x {k}");
    }
    assert!(failures.is_empty(), "torture outcomes:\n{}\nedge log:\n{}", failures.join("\n"), edge.log());
    // Still alive and serving.
    assert!(std::path::Path::new(&format!("/proc/{}", edge.pid())).exists(), "the edge died");
    carrier.send(&format!(
        "OPTIONS sip:{} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bKalive\nFrom: <sip:c@{}>;tag=a\nTo: <sip:{}>\nCall-ID: alive\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n",
        to,
        carrier.local(),
        carrier.local(),
        to
    ));
    carrier.expect_status(200, Duration::from_secs(5));
    assert_eq!(out_no_routes() - before, 0, "the edge tried to send off this machine (a Via or URI host?)");
    assert!(edge.metric("sipedge_parse_errors_total").unwrap_or(0.0) >= 20.0, "parse errors are counted");
}
