//! `Net`: one `Core`, its shared state, and helpers to script SIP peers.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::admission::Admission;
use crate::proxy::{Core, CoreConfig, CoreShared, DownSet, Local, Peer};
use crate::routing::{
    CarrierPeers, NumberMap, NumberRecord, NumberState, PeerLink, Peers, RoutingSnapshot, RoutingTable,
};
use crate::sip::{build, HeaderName, Msg, NumberKind, Transport, E164};

pub const EDGE: &str = "127.0.0.1:5060";
pub const CARRIER_A1: &str = "127.0.0.2:5060";
pub const CARRIER_A2: &str = "127.0.0.3:5060";
pub const CARRIER_B1: &str = "127.0.0.4:5060";
pub const FLOW_AZ1: &str = "127.0.0.10:5060";
pub const FLOW_AZ2: &str = "127.0.0.11:5060";
pub const STRANGER: &str = "127.0.0.99:5060";

pub const TOLL_FREE: &str = "+18005550100";
pub const DID: &str = "+12065550100";
pub const NO_FLOW: &str = "+12065550101";
pub const RELEASED: &str = "+12065550102";

pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn link(az: &str, a: &str) -> PeerLink {
    PeerLink::new(az, addr(a), Transport::Udp)
}

fn record(
    n: &str,
    kind: NumberKind,
    flow: Option<&str>,
    carriers: &[&str],
    cap: Option<u32>,
    state: NumberState,
) -> NumberRecord {
    NumberRecord {
        e164: E164::parse_dialed(n).unwrap(),
        kind,
        flow: flow.map(Arc::from),
        carriers: carriers.iter().map(|c| Arc::from(*c)).collect(),
        max_concurrent: cap,
        cnam: if kind == NumberKind::TollFree { Some(Arc::from("ACME")) } else { None },
        state,
    }
}

pub fn peers() -> Peers {
    Peers::new(
        vec![
            CarrierPeers {
                name: Arc::from("carrier-a"),
                links: vec![link("az1", CARRIER_A1), link("az2", CARRIER_A2)],
                sources: vec![],
            },
            CarrierPeers { name: Arc::from("carrier-b"), links: vec![link("az1", CARRIER_B1)], sources: vec![] },
        ],
        vec![link("az1", FLOW_AZ1), link("az2", FLOW_AZ2)],
    )
}

pub fn numbers() -> Vec<NumberRecord> {
    vec![
        record(
            TOLL_FREE,
            NumberKind::TollFree,
            Some("flow-tf"),
            &["carrier-a", "carrier-b"],
            None,
            NumberState::Active,
        ),
        record(DID, NumberKind::Did, Some("flow-did"), &["carrier-a"], Some(2), NumberState::Active),
        record(NO_FLOW, NumberKind::Did, None, &["carrier-a"], None, NumberState::Active),
        record(
            RELEASED,
            NumberKind::Did,
            Some("f"),
            &["carrier-a"],
            None,
            NumberState::Released { released_at_unix_s: 1 },
        ),
    ]
}

#[allow(dead_code)] // not every test reads every field
pub struct Net {
    pub core: Core,
    pub now: Instant,
    pub admission: Arc<Admission>,
    pub routing: Arc<RoutingTable>,
    pub down: Arc<DownSet>,
    seq: u32,
}

pub fn config() -> CoreConfig {
    CoreConfig {
        local: Local::of(&[(Transport::Udp, EDGE), (Transport::Tcp, EDGE)]),
        probe_interval: Duration::ZERO,
        ..CoreConfig::default()
    }
}

impl Net {
    pub fn new() -> Net {
        Net::with(config(), 1000)
    }

    pub fn with(cfg: CoreConfig, instance_cap: u32) -> Net {
        let now = Instant::now();
        let snap =
            RoutingSnapshot { numbers: NumberMap::from_records(numbers()), peers: Arc::new(peers()), generation: 0 };
        let routing = Arc::new(RoutingTable::new(snap));
        let admission = Arc::new(Admission::new(instance_cap));
        let down = Arc::new(DownSet::default());
        let shared = CoreShared {
            routing: routing.clone(),
            admission: admission.clone(),
            down: down.clone(),
            rate: Arc::new(crate::proxy::CallRate::new(now)),
            cluster: None,
            draining: Default::default(),
        };
        let core = Core::new(0, Arc::new(cfg), shared, now);
        Net { core, now, admission, routing, down, seq: 0 }
    }

    /// Delivers raw text (LF line ends are turned into CRLF) from `from`.
    pub fn deliver(&mut self, from: &str, text: &str) {
        let wire = text.replace("\r\n", "\n").replace('\n', "\r\n");
        self.core.handle_message(self.now, Peer::to(addr(from), Transport::Udp), Bytes::from(wire));
    }

    /// Delivers a message built by the sip module.
    pub fn deliver_bytes(&mut self, from: &str, b: Bytes) {
        self.core.handle_message(self.now, Peer::to(addr(from), Transport::Udp), b);
    }

    /// Delivers raw text from `from` as it came in on our listener `listener`.
    pub fn deliver_on(&mut self, from: &str, listener: u16, text: &str) {
        let wire = text.replace("\r\n", "\n").replace('\n', "\r\n");
        let peer = Peer::to(addr(from), Transport::Udp).via_listener(Some(listener));
        self.core.handle_message(self.now, peer, Bytes::from(wire));
    }

    /// Delivers a built message from `from` as it came in on `listener`.
    pub fn deliver_bytes_on(&mut self, from: &str, listener: u16, b: Bytes) {
        let peer = Peer::to(addr(from), Transport::Udp).via_listener(Some(listener));
        self.core.handle_message(self.now, peer, b);
    }

    /// Everything the core sent since the last call, with the whole peer
    /// (the listener it leaves from included).
    pub fn sent_to_peers(&mut self) -> Vec<(Peer, Msg)> {
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            let m = Msg::parse(t.payload.clone())
                .unwrap_or_else(|e| panic!("core sent unparseable bytes: {e:?}\n{:?}", t.payload));
            v.push((t.to, m));
        }
        v
    }

    /// Everything the core sent since the last call, parsed.
    pub fn sent(&mut self) -> Vec<(SocketAddr, Msg)> {
        let mut v = Vec::new();
        while let Some(t) = self.core.poll_transmit() {
            let m = Msg::parse(t.payload.clone())
                .unwrap_or_else(|e| panic!("core sent unparseable bytes: {e:?}\n{:?}", t.payload));
            v.push((t.to.addr, m));
        }
        v
    }

    /// Advances the virtual clock, firing timers in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.core.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.core.handle_timeout(self.now);
        }
        self.now = end;
    }

    pub fn invite(&mut self, from: &str, to_number: &str) -> (String, String) {
        self.seq += 1;
        let call_id = format!("call-{}-{}", self.seq, from);
        let branch = format!("z9hG4bKc{}", self.seq);
        let text = format!(
            "INVITE sip:{to_number}@{EDGE} SIP/2.0\n\
             Via: SIP/2.0/UDP {from};branch={branch}\n\
             From: \"Caller\" <sip:+13125550199@{from}>;tag=ft{s}\n\
             To: <sip:{to_number}@{EDGE}>\n\
             Call-ID: {call_id}\n\
             CSeq: 1 INVITE\n\
             Contact: <sip:caller@{from}>\n\
             Max-Forwards: 70\n\
             Content-Type: application/sdp\n\
             Content-Length: 4\n\n\
             v=0\n",
            s = self.seq
        );
        // The body is "v=0\r\n" after CRLF conversion: 5 bytes; fix the length.
        let text = text.replace("Content-Length: 4", "Content-Length: 5");
        (text, call_id)
    }

    /// An outbound INVITE from the flow engine with `caller` as caller ID.
    pub fn outbound(&mut self, from: &str, caller: &str, dialed: &str) -> String {
        self.seq += 1;
        format!(
            "INVITE sip:{dialed}@{EDGE} SIP/2.0\n\
             Via: SIP/2.0/UDP {from};branch=z9hG4bKo{s}\n\
             From: <sip:{caller}@{from}>;tag=fo{s}\n\
             To: <sip:{dialed}@{EDGE}>\n\
             Call-ID: out-{s}\n\
             CSeq: 1 INVITE\n\
             Contact: <sip:flow@{from}>\n\
             Max-Forwards: 70\n\
             Content-Length: 0\n\n",
            s = self.seq
        )
    }
}

/// The answer a UAS gives to `req`: Vias, From, To (+tag), Call-ID, CSeq,
/// Record-Route copied; Contact of the UAS.
pub fn answer(req: &Msg, code: u16, uas: &str) -> Bytes {
    let rr: Vec<String> = req.headers(HeaderName::RecordRoute).map(str::to_owned).collect();
    let contact = format!("<sip:uas@{uas}>");
    let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", v.as_str())).collect();
    extra.push(("Contact", &contact));
    let reason = match code {
        100 => "Trying",
        180 => "Ringing",
        200 => "OK",
        486 => "Busy Here",
        487 => "Request Terminated",
        503 => "Service Unavailable",
        _ => "Whatever",
    };
    build::response(req, code, reason, if code > 100 { Some("uas-tag") } else { None }, &extra)
}

/// An in-dialog request from the caller, following the Record-Route of `ok`.
pub fn caller_request(method: &str, ok: &Msg, from: &str, cseq: u32, branch: &str) -> String {
    let routes: Vec<String> = ok.record_routes().map(|r| format!("Route: <{r}>")).collect();
    in_dialog_request(method, ok.contact_uri().unwrap(), from, &routes, ok, false, cseq, branch)
}

/// An in-dialog request to `target` over `routes` (`Route:` lines), in the
/// dialog of the 2xx `ok`; `callee` swaps From and To for the callee's side.
#[allow(clippy::too_many_arguments)] // one builder for both sides' requests in every test
pub fn in_dialog_request(
    method: &str,
    target: &str,
    from: &str,
    routes: &[String],
    ok: &Msg,
    callee: bool,
    cseq: u32,
    branch: &str,
) -> String {
    let (f, t) = (ok.header(HeaderName::From).unwrap(), ok.header(HeaderName::To).unwrap());
    let (f, t) = if callee { (t, f) } else { (f, t) };
    format!(
        "{method} {target} SIP/2.0\n\
         Via: SIP/2.0/UDP {from};branch={branch}\n\
         {}\n\
         From: {f}\n\
         To: {t}\n\
         Call-ID: {}\n\
         CSeq: {cseq} {method}\n\
         Max-Forwards: 70\n\
         Content-Length: 0\n\n",
        routes.join("\n"),
        ok.call_id()
    )
}

/// The one message sent to `to`, or a panic listing what was sent.
pub fn only_to<'a>(sent: &'a [(SocketAddr, Msg)], to: &str) -> &'a Msg {
    let v: Vec<&Msg> = sent.iter().filter(|(a, _)| *a == addr(to)).map(|(_, m)| m).collect();
    assert_eq!(v.len(), 1, "expected one message to {to}, got {}: {:?}", v.len(), summary(sent));
    v[0]
}

pub fn summary(sent: &[(SocketAddr, Msg)]) -> Vec<String> {
    sent.iter()
        .map(|(a, m)| match m.status() {
            Some(s) => format!("{a} <- {s} {}", m.cseq().method.as_str()),
            None => format!("{a} <- {}", m.method_str()),
        })
        .collect()
}

pub fn statuses(sent: &[(SocketAddr, Msg)], to: &str) -> Vec<u16> {
    sent.iter().filter(|(a, _)| *a == addr(to)).filter_map(|(_, m)| m.status()).collect()
}

pub fn e164(s: &str) -> E164 {
    E164::parse_dialed(s).unwrap()
}

/// The caller's CANCEL for an INVITE built by `Net::invite`/`Net::outbound`.
pub fn cancel_of(inv: &str) -> String {
    let c = inv.replacen("INVITE sip:", "CANCEL sip:", 1).replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    c.split("Content-Type").next().unwrap().to_string() + "Content-Length: 0\n\n"
}
