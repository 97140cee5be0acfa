//! SIPp end to end: 2,000 calls at 200 calls/s through the edge, UDP and TCP.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Block, Edge, EdgeSpec};

/// Fails with how to install SIPp when it is missing.
pub fn sipp_bin() -> &'static str {
    let ok = Command::new("sipp").arg("-v").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(ok, "sipp is not installed: `apt-get install -y sip-tester` (Debian's SIPp package; binary `sipp`)");
    "sipp"
}

/// The repo's SIPp scenarios.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/sipp").join(name)
}

/// A SIPp process killed on drop.
pub struct Sipp(pub std::process::Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a SIPp UAS (answers OPTIONS with -aa) on `ip:5060`.
pub fn uas(ip: std::net::Ipv4Addr, scen: &str, transport: &str, dir: &std::path::Path) -> Sipp {
    let child = Command::new(sipp_bin())
        .args(["-sf", scenario(scen).to_str().unwrap(), "-i", &ip.to_string(), "-p", "5060", "-t", transport])
        .args(["-nostdin", "-aa", "-timeout", "300s", "-buff_size", "4194304"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sipp uas");
    std::thread::sleep(Duration::from_millis(300));
    Sipp(child)
}

/// Result of a UAC run.
#[derive(Debug)]
pub struct UacResult {
    pub ok: u64,
    pub failed: u64,
    pub stat: String,
}

/// Runs a SIPp UAC from `ip` to the edge, bounded by `-m` and `-timeout`.
#[allow(clippy::too_many_arguments)] // one per SIPp option the tests vary
pub fn uac(
    ip: std::net::Ipv4Addr,
    edge: std::net::SocketAddr,
    scen: &str,
    transport: &str,
    rate: u32,
    calls: u32,
    numbers: &[&str],
    extra: &[&str],
    dir: &std::path::Path,
) -> UacResult {
    let inf = dir.join(format!("inf-{ip}.csv"));
    let mut csv = String::from("SEQUENTIAL\n");
    for n in numbers {
        csv.push_str(n);
        csv.push('\n');
    }
    std::fs::write(&inf, csv).unwrap();
    let stat = dir.join(format!("uac-{ip}.csv"));
    let limit = calls / rate.max(1) + 60;
    let out = Command::new("timeout")
        .args([format!("{}", limit + 20), sipp_bin().to_string()])
        .arg(edge.to_string())
        .args(["-sf", scenario(scen).to_str().unwrap(), "-inf", inf.to_str().unwrap()])
        .args(["-i", &ip.to_string(), "-p", "5060", "-t", transport])
        .args(["-r", &rate.to_string(), "-m", &calls.to_string(), "-l", "5000"])
        .args(["-nostdin", "-timeout", &format!("{limit}s"), "-buff_size", "4194304"])
        .args(["-trace_stat", "-stf", stat.to_str().unwrap(), "-fd", "1"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run sipp uac");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let get = |name: &str| -> u64 {
        text.lines()
            .rfind(|l| l.trim_start().starts_with(name))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    UacResult { ok: get("Successful call"), failed: get("Failed call"), stat: text }
}

/// SIPp held calls on a thread: a UAS on `.10` (started here) and a UAC on
/// `.2` placing `calls` calls at `rate`/s through `edge`, each held `hold_ms`
/// (`uac_rr_hold.xml`), to `nums` in turn. Keep the guard until the thread is joined.
pub fn held_calls(
    b: Block,
    edge: std::net::SocketAddr,
    nums: &[String],
    rate: u32,
    calls: u32,
    hold_ms: u32,
) -> ((Sipp, tempfile::TempDir), std::thread::JoinHandle<UacResult>) {
    let dir = tempfile::tempdir().unwrap();
    let server = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let dialed: Vec<String> = nums.iter().map(|n| n.trim_start_matches('+').to_owned()).collect();
    let path = dir.path().to_owned();
    let hold = hold_ms.to_string();
    let run = std::thread::spawn(move || {
        let d: Vec<&str> = dialed.iter().map(String::as_str).collect();
        uac(b.ip(2), edge, "uac_rr_hold.xml", "u1", rate, calls, &d, &["-d", &hold], &path)
    });
    ((server, dir), run)
}

/// Waits (≤ 15 s) until the edge holds at least `n` dialogs; how many it holds then.
pub fn wait_dialogs(edge: &Edge, n: u64) -> u64 {
    let end = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let up = edge.metric("sipedge_active_dialogs").unwrap_or(0.0) as u64;
        if up >= n {
            return up;
        }
        assert!(std::time::Instant::now() < end, "{n} calls never up (at most {up}):\n{}", edge.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Numbers +1800555NNNN for the load tests.
pub fn load_numbers(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("+1800555{i:04}")).collect()
}

/// An edge with flood control off, carrier-a on .2 and one flow engine on .10
/// (both over `transport`), and `nums` routed to `flow-<number>` via carrier-a.
pub fn one_carrier(b: Block, transport: &str, nums: &[String]) -> EdgeSpec {
    let toml = format!(
        "[flood]\nenabled = false\n[[carrier]]\nname = \"carrier-a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"{}\"\ntransport = \"{transport}\"\n[[flow_engine]]\naz = \"az1\"\naddr = \"{}\"\ntransport = \"{transport}\"\n",
        b.addr(2, 5060),
        b.addr(10, 5060)
    );
    EdgeSpec {
        toml,
        numbers: nums.iter().map(|n| format!("{n},,flow-{n},carrier-a,,")).collect(),
        ..EdgeSpec::default()
    }
}

fn run(transport: &str) {
    let sipp_t = if transport == "tcp" { "t1" } else { "u1" };
    let transport = if transport == "tcp" { "tcp" } else { "udp" };
    let b = Block::new();
    let nums = load_numbers(200);
    let spec = one_carrier(b, transport, &nums);
    let edge = Edge::start(b, spec);
    let dir = tempfile::tempdir().unwrap();
    let _uas = uas(b.ip(10), "uas_200.xml", sipp_t, dir.path());
    let dialed: Vec<&str> = nums.iter().map(|n| n.trim_start_matches('+')).collect();
    let r = uac(b.ip(2), edge.sip, "uac_rr.xml", sipp_t, 200, 2000, &dialed, &[], dir.path());
    assert_eq!((r.ok, r.failed), (2000, 0), "sipp over {transport}:\n{}\nedge log:\n{}", r.stat, edge.log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0), "every slot released");
}

#[test]
fn sipp_2000_calls_at_200_cps_over_udp() {
    let _heavy = crate::support::heavy();
    run("u1");
}

#[test]
fn sipp_2000_calls_at_200_cps_over_tcp() {
    let _heavy = crate::support::heavy();
    run("tcp");
}
