//! A scripted far end (carrier link or flow-engine endpoint) on its own thread:
//! answers each new INVITE as its picker says, answers OPTIONS probes only while
//! told to, answers BYE and CANCEL, and counts what reached it.

use bytes::Bytes;
use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sipedge::sip::{build, HeaderName, Msg};

/// What the far end does with a new INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Never answers (the edge's retransmissions too).
    Silent,
    /// This final code at once (non-2xx; the edge's ACK is absorbed).
    Refuse(u16),
    /// 180, then this final code (non-2xx).
    RingThenRefuse(u16),
    /// 180 then 200; a BYE gets 200.
    Answer,
    /// 180 then 200; on the ACK it hangs up itself, sending its BYE twice (a retransmission).
    AnswerThenBye,
    /// 180 and waits: a CANCEL gets 200 and the INVITE 487.
    Ring,
    /// 180 and waits: a CANCEL gets 200, and the INVITE 200 too (the answer crosses the CANCEL).
    RingRace,
    /// Nothing for this many ms, then like `Ring` (a hop too slow for `failover_ms`).
    LateRing(u32),
    /// Nothing for this many ms, then 200 (a BYE gets 200).
    LateAnswer(u32),
}

/// A far end's per-call state.
struct Call {
    invite: Msg,
    edge: SocketAddr,
    tag: String,
    act: Act,
    done: bool,
    bye_sent: bool,
}

type Picker = dyn Fn(&Msg) -> Act + Send + Sync;

/// What the thread shares with the test.
struct Ctl {
    stop: AtomicBool,
    options: AtomicBool,
    invites: AtomicU64,
    options_answered: AtomicU64,
    options_ignored: AtomicU64,
    byes_in: AtomicU64,
    byes_out: AtomicU64,
    cancels: AtomicU64,
    seen: Mutex<Vec<Msg>>,
    pick: Box<Picker>,
}

/// A running far end; stops (and frees its address) on drop.
pub struct Far {
    ctl: Arc<Ctl>,
    thread: Option<JoinHandle<()>>,
}

/// Keep at most this many forwarded INVITEs for inspection.
const KEEP: usize = 64;

impl Far {
    /// A far end doing `act` with every INVITE.
    pub fn start(addr: SocketAddr, act: Act) -> Far {
        Far::with(addr, move |_| act)
    }

    /// A far end asking `pick` what to do with each new INVITE.
    pub fn with(addr: SocketAddr, pick: impl Fn(&Msg) -> Act + Send + Sync + 'static) -> Far {
        let sock = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let ctl = Arc::new(Ctl {
            stop: AtomicBool::new(false),
            options: AtomicBool::new(true),
            invites: AtomicU64::new(0),
            options_answered: AtomicU64::new(0),
            options_ignored: AtomicU64::new(0),
            byes_in: AtomicU64::new(0),
            byes_out: AtomicU64::new(0),
            cancels: AtomicU64::new(0),
            seen: Mutex::new(Vec::new()),
            pick: Box::new(pick),
        });
        let c = ctl.clone();
        let thread = std::thread::spawn(move || run(sock, &c));
        Far { ctl, thread: Some(thread) }
    }

    /// Whether OPTIONS probes get a 200 (default) or nothing.
    pub fn answer_options(&self, yes: bool) {
        self.ctl.options.store(yes, Relaxed);
    }

    /// New INVITE transactions received (retransmissions not counted).
    pub fn invites(&self) -> u64 {
        self.ctl.invites.load(Relaxed)
    }

    /// OPTIONS probes answered / left unanswered.
    pub fn probes(&self) -> (u64, u64) {
        (self.ctl.options_answered.load(Relaxed), self.ctl.options_ignored.load(Relaxed))
    }

    /// BYEs received, BYEs sent (each counted once), CANCELs received.
    pub fn byes_and_cancels(&self) -> (u64, u64, u64) {
        (self.ctl.byes_in.load(Relaxed), self.ctl.byes_out.load(Relaxed), self.ctl.cancels.load(Relaxed))
    }

    /// The first INVITEs received (up to 64).
    pub fn seen(&self) -> Vec<Msg> {
        self.ctl.seen.lock().unwrap().clone()
    }
}

impl Drop for Far {
    fn drop(&mut self) {
        self.ctl.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        180 => "Ringing",
        200 => "OK",
        486 => "Busy Here",
        487 => "Request Terminated",
        503 => "Service Unavailable",
        _ => "Answer",
    }
}

/// A UAS answer: Record-Route copied, our Contact and to-tag.
fn answer(req: &Msg, code: u16, tag: &str, local: SocketAddr) -> Bytes {
    let rr: Vec<String> = req.headers(HeaderName::RecordRoute).map(str::to_owned).collect();
    let contact = format!("<sip:far@{local}>");
    let mut extra: Vec<(&str, &str)> = rr.iter().map(|v| ("Record-Route", v.as_str())).collect();
    extra.push(("Contact", &contact));
    build::response(req, code, reason(code), Some(tag), &extra)
}

/// The callee's own BYE, routed back through the edge along the Record-Route.
fn callee_bye(c: &Call, local: SocketAddr) -> Bytes {
    let inv = &c.invite;
    let routes: Vec<String> = inv.record_routes().map(|r| format!("<{r}>")).collect();
    let route = routes.join(", ");
    let from = format!("{};tag={}", inv.header(HeaderName::To).unwrap_or(""), c.tag);
    let mut extra = Vec::new();
    if !route.is_empty() {
        extra.push(("Route", route.as_str()));
    }
    build::request(
        sipedge::sip::Method::Bye,
        inv.contact_uri().unwrap_or("sip:caller@127.0.0.1"),
        &format!("SIP/2.0/UDP {local};branch=z9hG4bKfarbye{}", c.tag),
        &from,
        inv.header(HeaderName::From).unwrap_or(""),
        inv.call_id(),
        1,
        &extra,
    )
}

fn run(sock: UdpSocket, ctl: &Ctl) {
    let local = sock.local_addr().unwrap();
    let mut calls: HashMap<String, Call> = HashMap::new();
    let mut branches: HashSet<String> = HashSet::new();
    let mut n: u64 = 0;
    let mut buf = vec![0u8; 65536];
    // Answers due later: (when, Call-ID, code).
    let mut later: Vec<(Instant, String, u16)> = Vec::new();
    while !ctl.stop.load(Relaxed) {
        let now = Instant::now();
        for (_, id, code) in later.iter().filter(|(at, _, _)| *at <= now) {
            if let Some(c) = calls.get_mut(id) {
                if !c.done {
                    c.done = *code >= 200;
                    let _ = sock.send_to(&answer(&c.invite, *code, &c.tag, local), c.edge);
                }
            }
        }
        later.retain(|(at, _, _)| *at > now);
        let Ok((len, from)) = sock.recv_from(&mut buf) else { continue };
        let Ok(msg) = Msg::parse(Bytes::copy_from_slice(&buf[..len])) else { continue };
        if !msg.is_request() {
            continue; // answers to our own BYEs
        }
        let send = |b: &[u8]| {
            let _ = sock.send_to(b, from);
        };
        match msg.method_str() {
            "OPTIONS" => {
                if ctl.options.load(Relaxed) {
                    ctl.options_answered.fetch_add(1, Relaxed);
                    send(&build::response(&msg, 200, "OK", None, &[]));
                } else {
                    ctl.options_ignored.fetch_add(1, Relaxed);
                }
            }
            "INVITE" => {
                let branch = msg.top_via().and_then(|v| v.branch).unwrap_or("").to_string();
                if !branches.insert(branch) {
                    continue; // a retransmission: our answers went out at once already
                }
                ctl.invites.fetch_add(1, Relaxed);
                {
                    let mut seen = ctl.seen.lock().unwrap();
                    if seen.len() < KEEP {
                        seen.push(msg.clone());
                    }
                }
                n += 1;
                let act = (ctl.pick)(&msg);
                let tag = format!("far{n:x}{}", local.port());
                let mut done = true;
                match act {
                    Act::Silent => done = false,
                    Act::Refuse(code) => send(&answer(&msg, code, &tag, local)),
                    Act::RingThenRefuse(code) => {
                        send(&answer(&msg, 180, &tag, local));
                        send(&answer(&msg, code, &tag, local));
                    }
                    Act::Answer | Act::AnswerThenBye => {
                        send(&answer(&msg, 180, &tag, local));
                        send(&answer(&msg, 200, &tag, local));
                    }
                    Act::Ring | Act::RingRace => {
                        send(&answer(&msg, 180, &tag, local));
                        done = false;
                    }
                    Act::LateRing(ms) | Act::LateAnswer(ms) => {
                        let code = if matches!(act, Act::LateRing(_)) { 180 } else { 200 };
                        later.push((
                            Instant::now() + Duration::from_millis(ms.into()),
                            msg.call_id().to_string(),
                            code,
                        ));
                        done = false;
                    }
                }
                let call = Call { invite: msg.clone(), edge: from, tag, act, done, bye_sent: false };
                calls.insert(msg.call_id().to_string(), call);
            }
            "CANCEL" => {
                ctl.cancels.fetch_add(1, Relaxed);
                send(&build::response(&msg, 200, "OK", None, &[]));
                if let Some(c) = calls.get_mut(msg.call_id()) {
                    if !c.done {
                        c.done = true;
                        let code = if c.act == Act::RingRace { 200 } else { 487 };
                        // A CANCEL before our late 180 is answered, and the INVITE ended (487).
                        let _ = sock.send_to(&answer(&c.invite, code, &c.tag, local), c.edge);
                    }
                }
            }
            "ACK" => {
                if let Some(c) = calls.get_mut(msg.call_id()) {
                    if c.act == Act::AnswerThenBye && !c.bye_sent && msg.cseq().seq == c.invite.cseq().seq {
                        c.bye_sent = true;
                        ctl.byes_out.fetch_add(1, Relaxed);
                        let bye = callee_bye(c, local);
                        let _ = sock.send_to(&bye, c.edge);
                        let _ = sock.send_to(&bye, c.edge);
                    }
                }
            }
            "BYE" => {
                ctl.byes_in.fetch_add(1, Relaxed);
                send(&build::response(&msg, 200, "OK", None, &[]));
                if let Some(c) = calls.get_mut(msg.call_id()) {
                    // Hung up by the other side: ours would cross it, so none is sent.
                    c.bye_sent = true;
                }
            }
            _ => send(&build::response(&msg, 200, "OK", None, &[])),
        }
    }
}
