//! Overload from one source while carriers keep calling: a UDP request flood
//! (per-source flood control bans it) and a TCP slowloris (connection limits,
//! message deadline and idle timeout close it; carriers still get in).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sipp::{load_numbers, uac, uas};
use crate::support::peer::{in_dialog, invite};
use crate::support::{standard, Block, Edge, EdgeSpec, Peer};

const T: Duration = Duration::from_secs(5);

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// A flooder that sends INVITE, REGISTER and OPTIONS datagrams from the
/// `from` addresses in turn to `to` at about `rate` per second in all, until
/// `stop` or `max` datagrams.
fn flooder(
    from: Vec<SocketAddr>,
    to: SocketAddr,
    rate: u64,
    max: u64,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let socks: Vec<UdpSocket> = from.iter().map(|a| UdpSocket::bind(a).unwrap()).collect();
        let methods = ["INVITE", "REGISTER", "OPTIONS"];
        let start = Instant::now();
        let mut n: u64 = 0;
        while !stop.load(Ordering::Relaxed) && n < max {
            // Bursts every 5 ms keep the average rate without a sleep per datagram.
            let due = rate * start.elapsed().as_micros() as u64 / 1_000_000;
            while n < due.min(max) {
                let m = methods[(n % 3) as usize];
                let sock = &socks[(n % socks.len() as u64) as usize];
                let from = sock.local_addr().unwrap();
                let msg = format!(
                    "{m} sip:+18005550100@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKfl{n}\r\n\
                     From: <sip:100@{from}>;tag=fl{n}\r\nTo: <sip:+18005550100@{to}>\r\nCall-ID: flood-{n}\r\n\
                     CSeq: 1 {m}\r\nUser-Agent: friendly-scanner\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                );
                let _ = sock.send_to(msg.as_bytes(), to);
                n += 1;
            }
            sent.store(n, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        }
        start.elapsed()
    })
}

/// SIPp carrier calls at 100 cps for 15 s while `sources` flood at `rate` in all.
/// Returns what it measured, with the edge still running.
fn flood_while_calling(b: Block, sources: Vec<SocketAddr>, flood_rate: u64) -> FloodRun {
    let nums = load_numbers(100);
    let toml = format!(
        "[health]\noptions_interval_ms = 60000\n[[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(2, 5060),
        b.addr(10, 5060)
    );
    let spec = EdgeSpec {
        toml,
        numbers: nums.iter().map(|n| format!("{n},,flow-{n},carrier-a,,")).collect(),
        tcp: false,
        ..EdgeSpec::default()
    };
    let edge = Edge::start(b, spec);
    let dir = tempfile::tempdir().unwrap();
    let _uas = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let rss_before = rss_kib(edge.pid());

    let (cps, calls) = (100u32, 1500u32);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let flood = flooder(sources, edge.sip, flood_rate, flood_rate * 30, stop.clone(), sent.clone());
    // RSS sampled while both run.
    let pid = edge.pid();
    let stop_rss = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop_rss = stop_rss.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop_rss.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        })
    };
    let dialed: Vec<&str> = nums.iter().map(|n| n.trim_start_matches('+')).collect();
    let r = uac(b.ip(2), edge.sip, "uac_rr.xml", "u1", cps, calls, &dialed, &[], dir.path());
    stop.store(true, Ordering::Relaxed);
    let flood_time = flood.join().unwrap();
    stop_rss.store(true, Ordering::Relaxed);
    let rss_peak = sampler.join().unwrap();
    let flooded = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));

    FloodRun { edge, flooded, flood_time, ok: r.ok, failed: r.failed, stat: r.stat, calls, cps, rss_before, rss_peak }
}

/// What one flood run measured.
struct FloodRun {
    edge: Edge,
    flooded: u64,
    flood_time: Duration,
    ok: u64,
    failed: u64,
    stat: String,
    calls: u32,
    cps: u32,
    rss_before: u64,
    rss_peak: u64,
}

#[test]
fn udp_flood_is_banned_while_carrier_calls_flow() {
    let _heavy = crate::support::heavy();
    // SIPEDGE_FLOOD_RATE raises the flood to find what the edge absorbs (default 5000/s: 50x the calls).
    let flood_rate = std::env::var("SIPEDGE_FLOOD_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(5000u64);
    let b = Block::new();
    let FloodRun { edge, flooded, flood_time, ok, failed, stat, calls, cps, rss_before, rss_peak } =
        flood_while_calling(b, vec![b.addr(66, 5060)], flood_rate);
    let bans = edge.metric("sipedge_flood_bans_total").unwrap_or(0.0);
    let dropped = edge.metric("sipedge_flood_dropped_total").unwrap_or(0.0);
    let absorbed = flooded as f64 / flood_time.as_secs_f64();
    let success = ok as f64 / f64::from(calls);
    println!(
        "flood: absorbed {flooded} datagrams in {:.1} s ({absorbed:.0}/s) from one source, {dropped:.0} dropped unparsed, \
         {bans} ban(s); carrier {}/{} calls ok ({:.2} %) at {cps} cps; edge RSS {} -> peak {} KiB",
        flood_time.as_secs_f64(),
        ok,
        calls,
        success * 100.0,
        rss_before,
        rss_peak
    );
    assert!(absorbed >= 10.0 * f64::from(cps), "the flood must be at least 10x the call rate: {absorbed:.0}/s");
    assert!(ok + failed == u64::from(calls) && success >= 0.999, "carrier calls under flood:\n{}", stat);
    assert!(bans >= 1.0, "the flooder was never banned");
    assert!(
        dropped >= 0.9 * flooded as f64,
        "a banned source's datagrams are dropped before parsing: {dropped} of {flooded}"
    );
    assert!(rss_peak < rss_before + 64 * 1024, "edge RSS grew from {rss_before} to {rss_peak} KiB under the flood");
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0), "every slot released");
}

/// A flood spread over 150 source addresses, each under the ban threshold:
/// nobody is banned, every request is answered 403, carriers keep calling
/// and memory stays bounded.
#[test]
fn distributed_udp_flood_under_the_ban_threshold() {
    let _heavy = crate::support::heavy();
    let rate = std::env::var("SIPEDGE_FLOOD_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000u64);
    let b = Block::new();
    let sources: Vec<SocketAddr> = (100..250).map(|h| b.addr(h, 5060)).collect();
    let n = sources.len() as u64;
    assert!(rate / n < 400, "each source stays under [flood] max_requests");
    let FloodRun { edge, flooded, flood_time, ok, failed, stat, calls, cps, rss_before, rss_peak } =
        flood_while_calling(b, sources, rate);
    let absorbed = flooded as f64 / flood_time.as_secs_f64();
    let refused = edge.metric("sipedge_calls_total{direction=\"unknown\",outcome=\"unknown_source\"}").unwrap_or(0.0);
    println!(
        "distributed flood: {flooded} datagrams from {n} sources in {:.1} s ({absorbed:.0}/s), {refused:.0} refused 403; \
         carrier {ok}/{calls} calls ok at {cps} cps; edge RSS {rss_before} -> peak {rss_peak} KiB",
        flood_time.as_secs_f64()
    );
    assert!(
        ok + failed == u64::from(calls) && ok as f64 >= 0.999 * f64::from(calls),
        "carrier calls under flood:\n{stat}"
    );
    assert_eq!(edge.metric("sipedge_flood_bans_total").unwrap_or(0.0), 0.0, "no source went over the threshold");
    assert!(rss_peak < rss_before + 64 * 1024, "edge RSS grew from {rss_before} to {rss_peak} KiB under the flood");
}

/// One slowloris connection (or a refused one): the edge closing it shows as EOF or an error.
struct Slow {
    stream: TcpStream,
    trickle: bool,
}

fn connect_from(ip: IpAddr, to: SocketAddr) -> Option<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::new(ip, 0).into()).ok()?;
    s.connect_timeout(&to.into(), Duration::from_millis(500)).ok()?;
    let t: TcpStream = s.into();
    t.set_nonblocking(true).ok()?;
    Some(t)
}

/// Whether the edge has closed `s` (EOF, reset, or a failed write).
fn closed(s: &mut Slow) -> bool {
    let mut buf = [0u8; 256];
    match s.stream.read(&mut buf) {
        Ok(0) => return true,
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        Err(_) => return true,
    }
    s.trickle && s.stream.write_all(b"a").is_err()
}

/// Keeps `plan` connections per source IP open against `edge` (reconnecting
/// what the edge closes) until `stop`: trickling ones send a partial header
/// then one byte every 100 ms; the others are silent (half-open).
fn slowloris(
    plan: Vec<(IpAddr, usize, bool)>,
    edge: SocketAddr,
    stop: Arc<AtomicBool>,
    churn: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut slots: Vec<(IpAddr, bool, Option<Slow>)> =
            plan.iter().flat_map(|&(ip, n, trickle)| (0..n).map(move |_| (ip, trickle, None))).collect();
        let end = Instant::now() + Duration::from_secs(30);
        while !stop.load(Ordering::Relaxed) && Instant::now() < end {
            for (ip, trickle, slot) in slots.iter_mut() {
                if let Some(s) = slot.as_mut() {
                    if closed(s) {
                        *slot = None;
                        churn.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                if let Some(mut stream) = connect_from(*ip, edge) {
                    if *trickle {
                        let _ = stream.write_all(b"INVITE sip:+18005550100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP ");
                    }
                    *slot = Some(Slow { stream, trickle: *trickle });
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

#[test]
fn tcp_slowloris_does_not_lock_out_a_carrier() {
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let mut spec = standard(b, "tcp");
    spec.udp = false;
    spec.toml
        .push_str("[tcp]\nmax_connections = 300\nmax_per_ip = 100\nmessage_deadline_ms = 500\nidle_timeout_s = 1\n");
    // Reconnecting 100 connections twice a second is not what this test is
    // about: keep per-source flood control out of the way.
    spec.toml.push_str("[flood]\nmax_requests = 100000\n");
    let edge = Edge::start(b, spec);
    let flow_listener = TcpListener::bind(b.addr(10, 5060)).unwrap();

    // 120 from one IP (20 over max_per_ip), 100 from three more: 420 wanted, 300 allowed.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = Arc::new(AtomicU64::new(0));
    // The silent group reconnects first in each round: otherwise the trickling
    // groups, closed every 500 ms, take every freed slot back before it and
    // the idle timeout is hardly ever reached (seen in CI: 2 idle closes).
    let plan = vec![
        (b.ip(73).into(), 100, false),
        (b.ip(70).into(), 120, true),
        (b.ip(71).into(), 100, true),
        (b.ip(72).into(), 100, true),
    ];
    let attack = slowloris(plan, edge.sip, stop.clone(), churn.clone());
    let end = Instant::now() + Duration::from_secs(10);
    let mut open = 0.0;
    while Instant::now() < end && open < 280.0 {
        std::thread::sleep(Duration::from_millis(100));
        open = edge.metric("sipedge_tcp_connections").unwrap_or(0.0);
    }
    assert!(open >= 280.0, "the slowloris should fill the edge's table: {open} open");

    // A full call from the carrier over TCP while the table is full.
    let mut carrier = Peer::tcp(b.ip(2).into(), edge.sip);
    let c = carrier.local();
    carrier.send(&invite(c, "TCP", edge.sip, "+18005550100", "slow-call", "sl1"));
    carrier.expect_status(100, T);
    flow_listener.set_nonblocking(false).unwrap();
    let (s, _) = flow_listener.accept().unwrap();
    let local = s.local_addr().unwrap();
    let mut flow = Peer::Tcp { stream: s, buf: Vec::new(), local };
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 200, from);
    let ok = carrier.expect_status(200, T);
    carrier.send(&in_dialog("ACK", &ok, c, "TCP", 1, "sla"));
    flow.expect_request("ACK", T);
    carrier.send(&in_dialog("BYE", &ok, c, "TCP", 2, "slb"));
    let (bye, from) = flow.expect_request("BYE", T);
    flow.answer(&bye, 200, from);
    carrier.expect_status(200, T);
    let open_during_call = edge.metric("sipedge_tcp_connections").unwrap_or(0.0);

    // The attack goes on (reconnecting) until the deadline has closed its connections a few times over.
    let m = |limit: &str| edge.metric(&format!("sipedge_tcp_limit_closes_total{{limit=\"{limit}\"}}")).unwrap_or(0.0);
    let end = Instant::now() + Duration::from_secs(15);
    while Instant::now() < end && (m("message_deadline") < 600.0 || m("idle") < 50.0) {
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    attack.join().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let (deadline, idle, per_ip, max_conn) = (m("message_deadline"), m("idle"), m("max_per_ip"), m("max_connections"));
    println!(
        "slowloris: 420 connections wanted from 4 IPs, {open_during_call} open during the carrier's call, {} reconnects; \
         closed by message_deadline {deadline}, idle {idle}, max_per_ip {per_ip}, max_connections {max_conn}",
        churn.load(Ordering::Relaxed)
    );
    assert!(deadline >= 600.0, "trickled messages are closed at the deadline: {deadline}");
    assert!(idle >= 50.0, "silent connections are closed when idle: {idle}");
    assert!(per_ip >= 20.0, "max_per_ip is enforced: {per_ip}");
    assert!(max_conn >= 1.0, "max_connections is enforced: {max_conn}");

    // The listener still accepts: a stranger's OPTIONS gets its 403.
    let mut stranger = Peer::tcp(b.ip(99).into(), edge.sip);
    let s = stranger.local();
    stranger.send(&format!(
        "OPTIONS sip:{e} SIP/2.0\nVia: SIP/2.0/TCP {s};branch=z9hG4bKst\nFrom: <sip:x@{s}>;tag=x\nTo: <sip:{e}>\nCall-ID: st\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n",
        e = edge.sip
    ));
    stranger.expect_status(403, T);
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0));
}

/// A carrier flooding never-ACKed INVITEs to an uncapped toll-free number at
/// 10x the call rate of another carrier (SPEC §10, issue 13), with the default
/// carrier limits (none): the flood fills the instance up to its fair share of
/// `max_concurrent_calls` and is refused 503 past it, while every call of the
/// other carrier still gets in.
#[test]
fn carrier_invite_flood_does_not_crowd_out_another_carrier() {
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let nums = load_numbers(100);
    let flooded_number = "+18005559999";
    let toml = format!(
        "[health]\noptions_interval_ms = 60000\n[limits]\nmax_concurrent_calls = 100\n\
         [[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\n\
         [[carrier]]\nname = \"carrier-f\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\n\
         [[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\n",
        b.addr(2, 5060),
        b.addr(66, 5060),
        b.addr(10, 5060)
    );
    let mut numbers: Vec<String> = nums.iter().map(|n| format!("{n},,flow-{n},carrier-a,,")).collect();
    numbers.push(format!("{flooded_number},,flow-flood,carrier-f,,"));
    let edge = Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() });
    let dir = tempfile::tempdir().unwrap();
    // The flow engine answers every call 200, the flood's too: the flooder
    // never ACKs, so each of its calls keeps its slot until the edge gives up on it.
    let _uas = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let rss_before = rss_kib(edge.pid());

    let (cps, calls) = (100u32, 2000u32);
    let flood_rate = 10 * u64::from(cps);
    let stop = Arc::new(AtomicBool::new(false));
    let to = edge.sip;
    let flood = {
        let stop = stop.clone();
        let from = b.addr(66, 5060);
        std::thread::spawn(move || {
            let sock = UdpSocket::bind(from).unwrap();
            sock.set_nonblocking(true).unwrap();
            let start = Instant::now();
            let (mut sent, mut refused, mut answered) = (0u64, 0u64, 0u64);
            let mut buf = [0u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                let due = flood_rate * start.elapsed().as_micros() as u64 / 1_000_000;
                while sent < due {
                    let msg = format!(
                        "INVITE sip:{flooded_number}@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKcf{sent}\r\n\
                         From: <sip:+13125550199@{from}>;tag=cf{sent}\r\nTo: <sip:{flooded_number}@{to}>\r\n\
                         Call-ID: carrier-flood-{sent}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                    );
                    let _ = sock.send_to(msg.as_bytes(), to);
                    sent += 1;
                }
                // Answers are read (and counted) but never ACKed.
                while let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let line = buf.get(..n.min(16)).unwrap_or_default();
                    if line.starts_with(b"SIP/2.0 503") {
                        refused += 1;
                    } else if line.starts_with(b"SIP/2.0 200") {
                        answered += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (sent, start.elapsed(), refused, answered)
        })
    };
    let pid = edge.pid();
    let stop_rss = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop_rss = stop_rss.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop_rss.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(200));
            }
            peak
        })
    };
    // The flood gets a head start to fill its share before the carrier calls.
    std::thread::sleep(Duration::from_millis(500));
    let dialed: Vec<&str> = nums.iter().map(|n| n.trim_start_matches('+')).collect();
    let r = uac(b.ip(2), edge.sip, "uac_rr.xml", "u1", cps, calls, &dialed, &[], dir.path());
    stop.store(true, Ordering::Relaxed);
    let (sent, flood_time, refused_503, answered_200) = flood.join().unwrap();
    stop_rss.store(true, Ordering::Relaxed);
    let rss_peak = sampler.join().unwrap();

    let m = |carrier: &str, reason: &str| {
        edge.metric(&format!("sipedge_carrier_refused_total{{carrier=\"{carrier}\",reason=\"{reason}\"}}"))
            .unwrap_or(0.0)
    };
    let (f_share, f_conc, f_cps) =
        (m("carrier-f", "fair_share"), m("carrier-f", "max_concurrent"), m("carrier-f", "max_cps"));
    let a_refused = m("carrier-a", "fair_share") + m("carrier-a", "max_concurrent") + m("carrier-a", "max_cps");
    let instance_full =
        edge.metric("sipedge_calls_total{direction=\"inbound\",outcome=\"instance_full\"}").unwrap_or(0.0);
    let offered = sent as f64 / flood_time.as_secs_f64();
    println!(
        "carrier flood: carrier-f offered {sent} never-ACKed INVITEs in {:.1} s ({offered:.0}/s), {answered_200} answered 200, \
         {refused_503} answers 503 seen (retransmissions included), refused fair_share {f_share} / max_concurrent {f_conc} / \
         max_cps {f_cps}; carrier-a {}/{calls} calls ok at {cps} cps, {a_refused} refused by carrier limits, \
         instance_full refusals {instance_full}; edge RSS {rss_before} -> peak {rss_peak} KiB",
        flood_time.as_secs_f64(),
        r.ok
    );
    assert!(offered >= 9.0 * f64::from(cps), "the flood must be about 10x the call rate: {offered:.0}/s");
    assert!(
        r.ok + r.failed == u64::from(calls) && r.ok as f64 >= 0.999 * f64::from(calls),
        "carrier-a's calls under carrier-f's flood:\n{}\n{}",
        r.stat,
        edge.log()
    );
    assert!(f_share >= 1.0, "the flood never reached its fair share, so it did not test it");
    assert!(refused_503 >= 1, "the flooder saw no 503");
    assert_eq!(a_refused, 0.0, "carrier-a was never over its share");
    // Each refused INVITE the flooder never ACKs keeps its server transaction
    // (retransmitting the 503) until Timer H, 32 s: over this 20 s flood that
    // is ~20,000 of them. Kept as the whole call they cost ~70 MiB; reduced to
    // the transaction (proxy/refused.rs) ~27 MiB. Bounded by rate x 32 s.
    assert!(rss_peak < rss_before + 48 * 1024, "edge RSS grew from {rss_before} to {rss_peak} KiB under the flood");
}
