//! Chaos over loopback: 3,000 calls in ~30 s, inbound and outbound, mixing every
//! way a call can end, against capped numbers and a capped instance. At the end
//! every concurrency counter is exactly 0 and no high-water mark passed its cap.
//!
//! Callers are threads with their own UDP sockets on carrier-a's IP (inbound) or
//! the flow engine's IP (outbound); the far ends are `Far`s on every carrier link
//! and flow-engine endpoint, told by the Call-ID what to do.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::failover::far::{Act, Far};
use crate::failover::{invite_over, metric, topology, wait_metric};
use crate::support::peer::{cancel, in_dialog, wire};
use crate::support::{Block, Edge, EdgeSpec, Peer};
use sipedge::sip::{build, Method, Msg};

/// How a call goes; the far end reads it from the Call-ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scen {
    /// Answered; the caller hangs up.
    CallerBye,
    /// Answered; the callee hangs up (its BYE sent twice).
    CalleeBye,
    /// Ringing; the caller cancels: 487.
    Cancel,
    /// Ringing; the caller cancels and the callee's 200 crosses the CANCEL.
    CancelRace,
    /// CANCEL right behind the INVITE (before any answer), the callee answers 200 anyway.
    EarlyCancel,
    /// Every hop answers 503: the edge fails over across all, then answers 503.
    AllBusy503,
    /// The callee answers 486: relayed.
    Busy486,
    /// Nobody answers: the edge gives up after `failover_ms` per hop (503).
    Silent,
    /// Answered, never ACKed: the edge ends the call after 64·T1 with BYE both ways.
    LostAck,
    /// Answered; the caller's BYE is retransmitted, then a second BYE gets 481.
    DuplicateBye,
    /// The own-AZ hop answers 503, the next one answers.
    Failover,
}

const ALL: [Scen; 11] = [
    Scen::CallerBye,
    Scen::CalleeBye,
    Scen::Cancel,
    Scen::CancelRace,
    Scen::EarlyCancel,
    Scen::AllBusy503,
    Scen::Busy486,
    Scen::Silent,
    Scen::LostAck,
    Scen::DuplicateBye,
    Scen::Failover,
];

impl Scen {
    fn of_call_id(id: &str) -> Scen {
        let i: usize = id.split('-').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        ALL[i % ALL.len()]
    }

    /// What a far end does; `first` is true for the own-AZ hop tried first.
    fn act(self, first: bool) -> Act {
        match self {
            Scen::CallerBye | Scen::LostAck | Scen::DuplicateBye => Act::Answer,
            Scen::CalleeBye => Act::AnswerThenBye,
            Scen::Cancel => Act::Ring,
            Scen::CancelRace | Scen::EarlyCancel => Act::RingRace,
            Scen::AllBusy503 => Act::Refuse(503),
            Scen::Busy486 => Act::Refuse(486),
            Scen::Silent => Act::Silent,
            Scen::Failover if first => Act::Refuse(503),
            Scen::Failover => Act::Answer,
        }
    }

    /// Final answers the caller may get (486 and 503 may also come from the caps).
    fn allowed(self, code: u16) -> bool {
        let caps = code == 486 || code == 503;
        match self {
            Scen::CallerBye | Scen::CalleeBye | Scen::LostAck | Scen::DuplicateBye | Scen::Failover => {
                code == 200 || caps
            }
            Scen::Cancel => code == 487 || caps,
            Scen::CancelRace | Scen::EarlyCancel => code == 200 || code == 487 || caps,
            Scen::AllBusy503 | Scen::Busy486 | Scen::Silent => caps,
        }
    }
}

const DIDS: [&str; 4] = ["+12065550200", "+12065550201", "+12065550202", "+12065550203"];
const TFS: [&str; 4] = ["+18005550200", "+18005550201", "+18005550202", "+18005550203"];
const DID_CAP: u32 = 3;
const INSTANCE_CAP: u32 = 30;
const THREADS: usize = 10;
const CALLS_PER_THREAD: usize = 300;
/// One call started every this often per thread: 10 threads → 100 calls/s.
const PACE: Duration = Duration::from_millis(100);

/// What the callers saw.
#[derive(Default)]
struct Tally {
    outcomes: BTreeMap<(Scen, u16), u64>,
    wrong: Vec<String>,
    stuck: Vec<String>,
    /// Calls (by Call-ID) the edge sent a BYE for after the caller was done with them.
    byes_from_edge: BTreeSet<String>,
    lost_ack_answered: u64,
}

struct Caller {
    peer: Peer,
    /// "UDP" or "TCP", for Via.
    t: &'static str,
    local: SocketAddr,
    byes_from_edge: BTreeSet<String>,
}

impl Caller {
    fn send(&mut self, b: &[u8]) {
        self.peer.send_bytes(b);
    }

    /// The next message of `call_id` before `end`; requests of other calls
    /// (the edge's BYEs of LostAck calls, a callee's BYE) are answered on the way.
    fn next(&mut self, call_id: &str, end: Instant) -> Option<Msg> {
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            let (m, _) = self.peer.recv(left)?;
            if m.is_request() && m.method() == Some(Method::Bye) && m.call_id() != call_id {
                // Retransmissions included: the BYE may wait in the socket while we pace.
                self.byes_from_edge.insert(m.call_id().to_string());
                self.send(&build::response(&m, 200, "OK", None, &[]));
                continue;
            }
            if m.call_id() == call_id {
                return Some(m);
            }
        }
    }

    /// Runs one call; Err(description) when it got stuck.
    fn call(&mut self, scen: Scen, text: &str, call_id: &str) -> Result<u16, String> {
        let end = Instant::now() + Duration::from_secs(10);
        let inv = Msg::parse(Bytes::from(wire(text))).unwrap();
        self.send(&wire(text));
        let mut cancelled = false;
        if scen == Scen::EarlyCancel {
            self.send(&wire(&cancel(text)));
            cancelled = true;
        }
        let fin = loop {
            let m = self.next(call_id, end).ok_or("no final answer to the INVITE")?;
            if m.is_request() {
                return Err(format!("unexpected {} before the final answer", m.method_str()));
            }
            if m.cseq().method != Method::Invite {
                continue; // 200 to our CANCEL
            }
            let code = m.status().unwrap();
            if code == 180 && !cancelled && matches!(scen, Scen::Cancel | Scen::CancelRace) {
                self.send(&wire(&cancel(text)));
                cancelled = true;
            }
            if code >= 200 {
                break m;
            }
        };
        let code = fin.status().unwrap();
        if code != 200 {
            self.send(&build::ack_for_non2xx(&inv, &fin));
            return Ok(code);
        }
        if scen == Scen::LostAck {
            return Ok(200); // no ACK: the edge hangs up after 64·T1, `next` answers its BYE
        }
        let (local, cid, t) = (self.local, call_id, self.t);
        self.send(&wire(&in_dialog("ACK", &fin, local, t, 1, &format!("a{cid}"))));
        if scen == Scen::CalleeBye {
            let bye = self.next(call_id, end).ok_or("the callee's BYE never came")?;
            if bye.method() != Some(Method::Bye) {
                return Err(format!("expected the callee's BYE, got {}", crate::support::peer::describe(&bye)));
            }
            self.send(&build::response(&bye, 200, "OK", None, &[]));
            return Ok(200);
        }
        let bye = wire(&in_dialog("BYE", &fin, local, t, 2, &format!("b{cid}")));
        self.send(&bye);
        self.final_of(call_id, 2, end, 200)?;
        if scen == Scen::DuplicateBye {
            self.send(&bye); // a retransmission: absorbed, answered again or not at all
            self.send(&wire(&in_dialog("BYE", &fin, local, t, 3, &format!("c{cid}"))));
            self.final_of(call_id, 3, end, 481)?;
        }
        Ok(200)
    }

    /// Waits for the final answer to our request with CSeq `seq`, which must be `want`.
    fn final_of(&mut self, call_id: &str, seq: u32, end: Instant, want: u16) -> Result<(), String> {
        loop {
            let m = self.next(call_id, end).ok_or(format!("no answer to CSeq {seq}"))?;
            if m.is_request() {
                // A callee never hangs up in these scenarios; answer anyway.
                self.send(&build::response(&m, 200, "OK", None, &[]));
                continue;
            }
            if m.cseq().seq == seq && m.status().is_some_and(|s| s >= 200) {
                return match m.status() {
                    Some(s) if s == want => Ok(()),
                    s => Err(format!("CSeq {seq} answered {s:?}, want {want}")),
                };
            }
        }
    }
}

fn caller_thread(t: usize, peer: Peer, edge: SocketAddr, inbound: bool, tally: Arc<Mutex<Tally>>) {
    let local = peer.local();
    let via = peer.via_transport();
    let mut c = Caller { peer, t: via, local, byes_from_edge: BTreeSet::new() };
    let start = Instant::now();
    let mut mine = Tally::default();
    for i in 0..CALLS_PER_THREAD {
        if let Some(wait) = (start + PACE * i as u32).checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let k = t * CALLS_PER_THREAD + i;
        let scen = ALL[k % ALL.len()];
        // Every other round of scenarios uses a DID (cap 3), the others a toll-free number.
        let round = k / ALL.len();
        let number = if round % 2 == 0 { DIDS[round / 2 % 4] } else { TFS[round / 2 % 4] };
        let call_id = format!("chaos-{}-{t}-{i}", k % ALL.len());
        let text = if inbound {
            invite_over(via, local, edge, number, "+13125550199", &call_id)
        } else {
            invite_over(via, local, edge, "+13125550000", number, &call_id)
        };
        match c.call(scen, &text, &call_id) {
            Ok(code) => {
                *mine.outcomes.entry((scen, code)).or_default() += 1;
                if !scen.allowed(code) {
                    mine.wrong.push(format!("{call_id} ({scen:?}, {number}): {code}"));
                }
                if scen == Scen::LostAck && code == 200 {
                    mine.lost_ack_answered += 1;
                }
            }
            Err(e) => mine.stuck.push(format!("{call_id} ({scen:?}, {number}): {e}")),
        }
    }
    // The last LostAck calls are hung up by the edge 64·T1 (3.2 s) later: answer those BYEs.
    let _ = c.next("-", Instant::now() + Duration::from_secs(5));
    mine.byes_from_edge = c.byes_from_edge;
    let mut all = tally.lock().unwrap();
    for (k, v) in mine.outcomes {
        *all.outcomes.entry(k).or_default() += v;
    }
    all.wrong.extend(mine.wrong);
    all.stuck.extend(mine.stuck);
    all.byes_from_edge.extend(mine.byes_from_edge);
    all.lost_ack_answered += mine.lost_ack_answered;
}

#[test]
fn chaos_3000_calls_every_slot_released_no_cap_passed() {
    let _heavy = crate::support::heavy();
    chaos("udp");
}

/// The same with the callers over TCP (far ends stay on UDP: every call crosses
/// transports, so the edge double-record-routes, RFC 5658).
#[test]
fn chaos_3000_calls_with_callers_over_tcp() {
    let _heavy = crate::support::heavy();
    chaos("tcp");
}

fn chaos(callers: &str) {
    let b = Block::new();
    let head = format!(
        "[flood]\nenabled = false\n[timers]\nt1_ms = 50\nfailover_ms = 300\ntimer_c_ms = 5000\n\
         [health]\noptions_interval_ms = 1000\n[limits]\nmax_concurrent_calls = {INSTANCE_CAP}\n"
    );
    let mut numbers: Vec<String> = DIDS.iter().map(|n| format!("{n},did,flow-{n},carrier-a,{DID_CAP},")).collect();
    numbers.extend(TFS.iter().map(|n| format!("{n},toll-free,flow-{n},carrier-a;carrier-b,,")));
    let spec = EdgeSpec { toml: topology(b, &head, &[]), numbers, tcp: callers == "tcp", ..EdgeSpec::default() };
    let edge = Edge::start(b, spec);
    // Own-AZ hops (tried first): carrier-a az1 (.2) and the flow engine's az1 (.10).
    let fars: Vec<Far> = [2u8, 3, 4, 10, 11]
        .into_iter()
        .map(|h| {
            let first = h == 2 || h == 10;
            Far::with(b.addr(h, 5060), move |m| Scen::of_call_id(m.call_id()).act(first))
        })
        .collect();

    let tally = Arc::new(Mutex::new(Tally::default()));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let inbound = t % 5 < 3; // 6 inbound threads, 4 outbound
            let host = if inbound { 2 } else { 10 };
            let peer = match callers {
                "tcp" => Peer::tcp(b.ip(host).into(), edge.sip),
                _ => Peer::udp(b.addr(host, 6000 + t as u16), edge.sip),
            };
            let tally = tally.clone();
            let edge_addr = edge.sip;
            std::thread::spawn(move || caller_thread(t, peer, edge_addr, inbound, tally))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let tally = tally.lock().unwrap();
    let zero = wait_metric(&edge, "sipedge_active_calls", &[], 0.0, Duration::from_secs(10));
    let hw_total = metric(&edge, "sipedge_active_calls_high_water", &[]);
    let hw: Vec<(&str, Option<f64>)> =
        DIDS.iter().map(|n| (*n, metric(&edge, "sipedge_number_calls_high_water", &[("number", n)]))).collect();
    println!("{callers} callers: outcomes (scenario, final answer) -> calls: {:?}", tally.outcomes);
    println!(
        "high water: instance {hw_total:?} (cap {INSTANCE_CAP}), DIDs {hw:?} (cap {DID_CAP}); \
         edge BYEs for unACKed calls {} of {} answered; far ends (INVITEs, (BYE in, BYE out, CANCEL)): {:?}",
        tally.byes_from_edge.len(),
        tally.lost_ack_answered,
        fars.iter().map(|f| (f.invites(), f.byes_and_cancels())).collect::<Vec<_>>()
    );
    let total: u64 = tally.outcomes.values().sum::<u64>() + tally.stuck.len() as u64;
    assert_eq!(total, (THREADS * CALLS_PER_THREAD) as u64);
    assert!(
        tally.stuck.is_empty(),
        "{} calls stuck: {:#?}",
        tally.stuck.len(),
        &tally.stuck[..tally.stuck.len().min(20)]
    );
    assert!(tally.wrong.is_empty(), "wrong answers: {:#?}", &tally.wrong[..tally.wrong.len().min(20)]);
    assert!(zero, "every slot released: active_calls = {:?}", metric(&edge, "sipedge_active_calls", &[]));
    assert_eq!(metric(&edge, "sipedge_active_dialogs", &[]), Some(0.0), "every dialog ended");
    let hw_total = hw_total.expect("instance high-water gauge");
    assert!(hw_total <= f64::from(INSTANCE_CAP), "instance high water {hw_total} > cap {INSTANCE_CAP}");
    for (n, h) in &hw {
        assert!(h.is_some_and(|h| h <= f64::from(DID_CAP)), "{n}: high water {h:?}, cap {DID_CAP}");
    }
    let late: Vec<&String> = tally.byes_from_edge.iter().filter(|id| Scen::of_call_id(id) != Scen::LostAck).collect();
    assert!(late.is_empty(), "BYEs from the edge for calls that were ACKed or never answered: {late:?}");
    assert_eq!(
        tally.byes_from_edge.len() as u64,
        tally.lost_ack_answered,
        "the edge hung up every unACKed call towards the caller"
    );
    // Every scenario produced its own answer at least once (the mix really happened).
    for s in ALL {
        let own = |code: u16| match s {
            Scen::Cancel => code == 487,
            Scen::CancelRace | Scen::EarlyCancel => code == 200 || code == 487,
            Scen::AllBusy503 | Scen::Silent => code == 503,
            Scen::Busy486 => code == 486,
            _ => code == 200,
        };
        assert!(tally.outcomes.keys().any(|(sc, code)| *sc == s && own(*code)), "{s:?} never got its own answer");
    }
}
