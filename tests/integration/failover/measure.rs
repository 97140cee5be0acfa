//! Measurements (not assertions): the setup delay one failover adds, and the
//! edge's CPU per call with and without it.
//!
//! ```text
//! cargo test --release --test integration measure_failover -- --ignored --nocapture
//! SIPEDGE_MEASURE_CALLS=2000 SIPEDGE_MEASURE_RATE=100 cargo test ...   # bigger run
//! ```

use std::process::{Command, Stdio};
use std::time::Duration;

use super::far::{Act, Far};
use super::{invite_as, wait_metric, T};
use crate::sipp::{load_numbers, scenario, sipp_bin, uas};
use crate::support::peer::{in_dialog, wire};
use crate::support::Peer;
use crate::support::{Block, Edge, EdgeSpec};

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// utime + stime of `pid` in clock ticks (/proc/<pid>/stat fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces; fields after ')' are plain.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().ok();
    out.and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok()).unwrap_or(100.0)
}

/// Response times in ms (INVITE sent → 200 received) from SIPp's `-trace_rtt` file(s) in `dir`.
fn rtts(dir: &std::path::Path) -> Vec<f64> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with("_rtt.csv") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            // Date;Date_ms;response_time;rtd_no
            for line in text.lines().skip(1) {
                if let Some(x) = line.split(';').nth(2).and_then(|x| x.trim().parse::<f64>().ok()) {
                    v.push(x);
                }
            }
            let _ = std::fs::remove_file(e.path());
        }
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// One bounded UAC run; returns (ok, failed, sorted response times in ms, CPU seconds of the edge).
fn run(
    edge: &Edge,
    b: Block,
    dir: &std::path::Path,
    calls: u32,
    rate: u32,
    dialed: &[String],
) -> (u64, u64, Vec<f64>, f64) {
    let inf = dir.join("numbers.csv");
    std::fs::write(&inf, format!("SEQUENTIAL\n{}\n", dialed.join("\n"))).unwrap();
    let before = cpu_ticks(edge.pid());
    let out = Command::new("timeout")
        .args([format!("{}", calls / rate + 60), sipp_bin().to_string()])
        .arg(edge.sip.to_string())
        .args(["-sf", scenario("uac_rr.xml").to_str().unwrap(), "-inf", inf.to_str().unwrap()])
        .args(["-i", &b.ip(2).to_string(), "-p", "5060", "-t", "u1"])
        .args(["-r", &rate.to_string(), "-m", &calls.to_string(), "-l", "2000"])
        .args(["-nostdin", "-timeout", &format!("{}s", calls / rate + 40), "-buff_size", "4194304"])
        .args(["-trace_rtt", "-rtt_freq", "1"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    // Let the edge finish the last transactions before reading its CPU time.
    std::thread::sleep(Duration::from_millis(500));
    let cpu = (cpu_ticks(edge.pid()) - before) as f64 / ticks_per_second();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (ok, failed) = super::sipp_counts(&text);
    (ok, failed, rtts(dir), cpu)
}

/// `n` calls one after the other from a scripted caller; returns each call's setup time
/// (INVITE sent → 200 received) in ms, sorted. Each call is then ACKed and hung up.
fn timed_calls(peer: &mut Peer, edge: &Edge, n: usize, tag: &str) -> Vec<f64> {
    let mut v = Vec::new();
    for i in 0..n {
        let id = format!("{tag}-{i}");
        let inv = invite_as(peer.local(), edge.sip, "+18005550000", "+13125550199", &id);
        let bytes = wire(&inv);
        let t0 = std::time::Instant::now();
        peer.send_bytes(&bytes);
        let (ok, _) = peer.expect(T, "200", |m| m.status() == Some(200) && m.call_id() == id);
        v.push(t0.elapsed().as_secs_f64() * 1e3);
        let local = peer.local();
        peer.send(&in_dialog("ACK", &ok, local, "UDP", 1, &format!("a{id}")));
        peer.send(&in_dialog("BYE", &ok, local, "UDP", 2, &format!("b{id}")));
        peer.expect(T, "200 to BYE", |m| m.status() == Some(200) && m.call_id() == id && m.cseq().seq == 2);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

/// Inbound calls through the edge to the flow engine: first with az1 answering
/// (no failover), then with az1 answering 503 (one failover to az2 per call).
#[test]
#[ignore = "measurement: run with --ignored --nocapture (ideally --release)"]
fn measure_failover_delay_and_cpu_per_call() {
    let calls = env_u32("SIPEDGE_MEASURE_CALLS", 1000);
    let rate = env_u32("SIPEDGE_MEASURE_RATE", 100);
    let b = Block::new();
    let nums = load_numbers(200);
    let spec = EdgeSpec {
        toml: super::topology(b, "[flood]\nenabled = false\n[health]\noptions_interval_ms = 5000\n", &[]),
        numbers: nums.iter().map(|n| format!("{n},toll-free,flow-{n},carrier-a,,")).collect(),
        tcp: false,
        ..EdgeSpec::default()
    };
    let edge = Edge::start(b, spec);
    let dialed: Vec<String> = nums.iter().map(|n| n.trim_start_matches('+').to_string()).collect();
    let dir = tempfile::tempdir().unwrap();
    let _az2 = uas(b.ip(11), "uas_200.xml", "u1", dir.path());
    // The edge's CPU while idle for as long as one run lasts (probes, timers), to tell apart.
    let t0 = cpu_ticks(edge.pid());
    std::thread::sleep(Duration::from_secs_f64(f64::from(calls) / f64::from(rate)));
    let idle = (cpu_ticks(edge.pid()) - t0) as f64 / ticks_per_second();
    println!("edge idle for {:.1} s: CPU {idle:.2} s", f64::from(calls) / f64::from(rate));
    let mut results = Vec::new();
    for (label, az1_scenario) in
        [("no failover (az1 answers 200)", "uas_200.xml"), ("one failover (az1 answers 503)", "uas_503.xml")]
    {
        let az1 = uas(b.ip(10), az1_scenario, "u1", dir.path());
        let labels = [("carrier", "flow-engine"), ("az", "az1")];
        assert!(wait_metric(&edge, "sipedge_link_up", &labels, 1.0, Duration::from_secs(10)));
        let (ok, failed, rtt, cpu) = run(&edge, b, dir.path(), calls, rate, &dialed);
        drop(az1);
        let per_call_us = cpu * 1e6 / ok.max(1) as f64;
        println!(
            "{label}: {ok} ok / {failed} failed; setup (INVITE->200) median {:.2} ms, p90 {:.2} ms, p99 {:.2} ms over {} SIPp calls (whole ms); edge CPU {cpu:.2} s = {per_call_us:.0} us/call",
            pct(&rtt, 0.5),
            pct(&rtt, 0.9),
            pct(&rtt, 0.99),
            rtt.len()
        );
        results.push((pct(&rtt, 0.5), per_call_us));
        std::thread::sleep(Duration::from_millis(300));
    }
    let fo =
        super::metric(&edge, "sipedge_failovers_total", &[("carrier", "flow-engine"), ("az", "az1")]).unwrap_or(0.0);
    println!(
        "CPU added by one failover: +{:.0} us/call ({fo} failovers counted); calls={calls} rate={rate}/s",
        results[1].1 - results[0].1
    );
    drop(_az2);

    // Setup delay to the microsecond (SIPp's are whole ms): scripted far ends, and
    // the two cases interleaved call by call so drift in machine load hits both alike.
    let _f1 =
        Far::with(b.addr(10, 5060), |m| if m.call_id().starts_with("fo") { Act::Refuse(503) } else { Act::Answer });
    let _f2 = Far::start(b.addr(11, 5060), Act::Answer);
    let mut peer = Peer::udp(b.addr(2, 5070), edge.sip);
    let (mut direct, mut failover) = (Vec::new(), Vec::new());
    for i in 0..100 {
        direct.extend(timed_calls(&mut peer, &edge, 1, &format!("d{i}")));
        failover.extend(timed_calls(&mut peer, &edge, 1, &format!("fo{i}")));
    }
    for v in [&mut direct, &mut failover] {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    }
    println!(
        "setup INVITE->200, 100 calls each, interleaved: direct median {:.3} ms (p90 {:.3}), with one 503 failover median {:.3} ms (p90 {:.3}): one failover adds {:.3} ms",
        pct(&direct, 0.5),
        pct(&direct, 0.9),
        pct(&failover, 0.5),
        pct(&failover, 0.9),
        pct(&failover, 0.5) - pct(&direct, 0.5)
    );
}
