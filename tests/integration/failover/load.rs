//! A flow-engine endpoint killed in the middle of a SIPp load run.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{metric, wait_metric};
use crate::sipp::{load_numbers, scenario, sipp_bin, uas, Sipp};
use crate::support::{Block, Edge, EdgeSpec};

const RATE: u32 = 100;
const CALLS: u32 = 800;
const FAILOVER_MS: u64 = 500;
/// When az1 is killed, counted from the UAC's start.
const KILL_AFTER: Duration = Duration::from_secs(3);

/// Call numbers (SIPp's `[call_number]`, the part of its Call-ID `N-pid@ip`
/// before the dash) named in SIPp's error log.
pub fn failed_call_numbers(errors: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for line in errors.lines() {
        for (i, _) in line.match_indices("Call-I") {
            // SIPp's own Call-IDs are `<call number>-<pid>@<ip>`, right after
            // "Call-Id: " or "Call-Id '". Anything else (the edge's OPTIONS
            // probes, `hc-<n>-<m>`, which a UAS discards and logs) is not a call.
            let rest = line[i + "Call-I".len()..].trim_start_matches(['d', 'D']);
            let rest = rest.trim_start_matches([':', ' ', '\'']);
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() && rest[digits.len()..].starts_with('-') {
                if let Ok(n) = digits.parse() {
                    out.insert(n);
                }
            }
        }
    }
    out
}

/// 100 calls/s inbound, flow-engine SIPp UASs in az1 and az2; az1 is killed after
/// 3 s. Calls then go to az2: at first after `failover_ms` without an answer from
/// az1, and once its OPTIONS fail `down_after` times (~0.4-0.6 s) straight away.
///
/// The only calls allowed to fail are those in flight at az1 when it died: a
/// dialog set up on az1 whose ACK/BYE then went to a dead host (the BYE times
/// out: 408), or an INVITE az1 received but never answered after its 180 (timer
/// C: 408). Each of those started before the kill; at 100 calls/s and calls of a
/// few milliseconds that is a handful. Any failure of a call that SIPp started
/// more than `failover_ms` (+ 500 ms scheduling slack) after the kill fails the test.
#[test]
fn next_hop_killed_during_a_sipp_load_run() {
    let _heavy = crate::support::heavy();
    killed_during_load("udp", 0);
}

/// The same with calls held 1 s (uac_rr_hold.xml -d 1000): the ~100 dialogs up on az1
/// at the kill cannot end cleanly (their BYE goes to a dead host and gets 408 after
/// 64·T1), so those calls fail, and only those: each started within the hold time
/// before the kill. Their slots were freed at the BYE all the same.
#[test]
fn next_hop_killed_with_calls_up_on_it() {
    let _heavy = crate::support::heavy();
    killed_during_load("udp", 1000);
}

/// The same over TCP: once az1's process is gone, connecting to it is refused, a
/// transport error, so new calls fail over without waiting `failover_ms`.
#[test]
fn next_hop_killed_during_a_sipp_load_run_over_tcp() {
    let _heavy = crate::support::heavy();
    killed_during_load("tcp", 0);
}

fn killed_during_load(transport: &str, hold_ms: u64) {
    let sipp_t = if transport == "tcp" { "t1" } else { "u1" };
    let b = Block::new();
    let nums = load_numbers(200);
    let head = format!(
        "[flood]\nenabled = false\n[timers]\nt1_ms = 100\nfailover_ms = {FAILOVER_MS}\ntimer_c_ms = 2000\n\
         [health]\noptions_interval_ms = 200\ndown_after = 2\nup_after = 2\n"
    );
    let spec = EdgeSpec {
        toml: super::topology_over(b, &head, &[], transport),
        numbers: nums.iter().map(|n| format!("{n},toll-free,flow-{n},carrier-a,,")).collect(),
        tcp: transport == "tcp",
        ..EdgeSpec::default()
    };
    let edge = Edge::start(b, spec);
    let dir = tempfile::tempdir().unwrap();
    let az1 = uas(b.ip(10), "uas_200.xml", sipp_t, dir.path());
    let _az2 = uas(b.ip(11), "uas_200.xml", sipp_t, dir.path());
    let labels = [("carrier", "flow-engine"), ("az", "az1")];
    assert!(wait_metric(&edge, "sipedge_link_up", &labels, 1.0, super::T));

    let inf = dir.path().join("numbers.csv");
    let dialed: Vec<String> = nums.iter().map(|n| n.trim_start_matches('+').to_string()).collect();
    std::fs::write(&inf, format!("SEQUENTIAL\n{}\n", dialed.join("\n"))).unwrap();
    let errors = dir.path().join("uac-errors.log");
    let stdout = std::fs::File::create(dir.path().join("uac-out.txt")).unwrap();
    let started = Instant::now();
    let uac = Command::new("timeout")
        .args(["90", sipp_bin()])
        .arg(edge.sip.to_string())
        .args(["-sf", scenario(if hold_ms > 0 { "uac_rr_hold.xml" } else { "uac_rr.xml" }).to_str().unwrap()])
        .args(["-inf", inf.to_str().unwrap(), "-d", &hold_ms.to_string()])
        .args(["-i", &b.ip(2).to_string(), "-p", "5060", "-t", sipp_t])
        .args(["-r", &RATE.to_string(), "-m", &CALLS.to_string(), "-l", "2000"])
        .args(["-nostdin", "-timeout", "60s", "-buff_size", "4194304", "-max_recv_loops", "10000"])
        .args(["-trace_err", "-error_file", errors.to_str().unwrap(), "-trace_stat", "-fd", "1"])
        .args(["-stf", dir.path().join("uac-stat.csv").to_str().unwrap()])
        .current_dir(dir.path())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("run sipp uac");
    let mut uac = Sipp(uac);
    std::thread::sleep(KILL_AFTER);
    drop(az1);
    let killed = started.elapsed();
    assert!(wait_metric(&edge, "sipedge_link_up", &labels, 0.0, super::T), "az1 marked down after the kill");
    let down_after = started.elapsed();

    uac.0.wait().unwrap();
    let text = std::fs::read_to_string(dir.path().join("uac-out.txt")).unwrap();
    let (ok, failed) = super::sipp_counts(&text);
    let errs = std::fs::read_to_string(&errors).unwrap_or_default();
    let failed_ids = failed_call_numbers(&errs);
    let late: Vec<u64> = failed_ids
        .iter()
        .copied()
        .filter(|n| {
            Duration::from_secs_f64((*n as f64 - 1.0) / f64::from(RATE))
                > killed + Duration::from_millis(FAILOVER_MS + 500)
        })
        .collect();
    let fo = metric(&edge, "sipedge_failovers_total", &labels).unwrap_or(0.0);
    println!(
        "{transport}: kill at {killed:?}, az1 down at {down_after:?}; {ok} ok, {failed} failed (SIPp call numbers {:?}..={:?}, started {:.2}..{:.2} s); {fo} failovers away from az1",
        failed_ids.first(),
        failed_ids.last(),
        failed_ids.first().map_or(0.0, |n| (*n as f64 - 1.0) / f64::from(RATE)),
        failed_ids.last().map_or(0.0, |n| (*n as f64 - 1.0) / f64::from(RATE))
    );
    assert_eq!(ok + failed, u64::from(CALLS), "{text}");
    // In flight at the kill: calls up on az1 (rate × hold) and the few being set up.
    let bound = u64::from(RATE) * (hold_ms + 100) / 1000 + 10;
    assert!(failed <= bound, "only calls in flight at the kill may fail: {failed} > {bound}\n{errs}");
    let early: Vec<u64> = failed_ids
        .iter()
        .copied()
        .filter(|n| {
            Duration::from_secs_f64((*n as f64 - 1.0) / f64::from(RATE)) + Duration::from_millis(hold_ms + 1000)
                < killed
        })
        .collect();
    assert!(early.is_empty(), "calls over before the kill failed: {early:?}\n{errs}");
    assert!(late.is_empty(), "calls started after kill + failover_ms failed: {late:?}\n{errs}");
    assert!(fo >= 1.0 || failed == 0, "calls sent to the dead az1 failed over");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(metric(&edge, "sipedge_active_calls", &[]), Some(0.0), "every slot released:\n{}", edge.log());
}

#[test]
fn failed_call_numbers_are_read_from_sipp_error_lines() {
    // Two real SIPp 3.6 error lines (the log has no newline between events).
    let log = "The following events occurred:\n\
        2026-11-24\t01:06:45.700904\t1795482405.700904: Call-Id: 1-25831@127.0.0.1, receive timeout on message \
        Basic Sipstone UAC:1 without label to jump to (ontimeout attribute): aborting call2026-11-24\t01:06:45.800385\t\
        1795482405.800385: Call-Id: 27-25831@127.0.0.1, receive timeout\n\
        Aborting call on unexpected message for Call-Id '305-25831@127.0.0.2': while expecting '200' (index 6)\n\
        2026-11-24\t05:43:30.293576\t1795499010.293576: Discarding message which can't be mapped to a known SIPp call:\n\
        Call-ID: hc-41262401-15\n";
    assert_eq!(failed_call_numbers(log).into_iter().collect::<Vec<_>>(), vec![1, 27, 305]);
}
