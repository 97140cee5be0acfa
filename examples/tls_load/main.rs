//! TLS load driver (issue 16, "Measure"): edge CPU per call over TLS against
//! plain TCP, and handshakes per edge CPU-second. Debian's SIPp has no TLS,
//! so this plays the carrier (UAC over TLS or TCP) and the flow engine (UAS
//! on UDP) itself, against target/release/sipedge on 127.0.52.0/24.
//!
//! ```text
//! cargo build --release && cargo build --release --example tls_load
//! target/release/examples/tls_load calls --wire both --runs 3 --rate 1000 --seconds 10
//! target/release/examples/tls_load handshakes --wire both --runs 3 --rate 300 --seconds 10
//! target/release/examples/tls_load handshakes --wire both --runs 3 --rate 300 --seconds 10 --x25519
//! target/release/examples/tls_load handshakes --wire tls --find-max --rate 200 --step 200 --max 3000
//! ```
//! An example rather than a `[[bin]]`: rcgen is a dev-dependency, and the
//! release binary should not carry a load generator.

mod calls;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calls::{Net, Offer, Tally, Wire};
use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// INVITE → 100/200 → ACK → BYE → 200 over a few persistent connections.
    Calls,
    /// A new connection per attempt: handshake (TLS), OPTIONS → 200, close.
    Handshakes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Wires {
    Tls,
    Tcp,
    /// TLS, TCP, TLS, TCP, ... (`--runs` of each), then medians and TLS ÷ TCP.
    Both,
}

#[derive(Parser, Debug)]
#[command(about = "TLS vs TCP load on sipedge: CPU per call, handshakes per CPU-second")]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    #[arg(long, value_enum, default_value = "both")]
    wire: Wires,
    /// Runs of each wire (alternating with `--wire both`).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Calls (handshakes) per second offered.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Persistent carrier connections (calls mode), spread over the carrier IPs.
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Numbers in the edge's seed (one flow each); calls go round robin over them.
    #[arg(long, default_value_t = 1000)]
    numbers: u64,
    /// Handshakes: step the rate up from `--rate` by `--step` until a step fails or passes `--max`.
    #[arg(long)]
    find_max: bool,
    #[arg(long, default_value_t = 200.0)]
    step: f64,
    #[arg(long, default_value_t = 5000.0)]
    max: f64,
    /// The client offers X25519 first (as OpenSSL does), not rustls's P-384.
    #[arg(long)]
    x25519: bool,
    #[arg(long, default_value = "target/release/sipedge")]
    binary: PathBuf,
    /// Keep configs and edge logs here (default: a temp dir, removed).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value = "warn,sipedge::app=info")]
    rust_log: String,
}

/// One run's figures.
struct Run {
    wire: Wire,
    rate: f64,
    offered: u64,
    completed: u64,
    failed: u64,
    edge_cpu_s: f64,
    driver_cpu_s: f64,
    achieved: f64,
    mean_ms: f64,
}

impl Run {
    fn us_per(&self) -> f64 {
        self.edge_cpu_s * 1e6 / self.completed.max(1) as f64
    }
    fn clean(&self) -> bool {
        self.failed == 0 && self.completed == self.offered && self.achieved >= 0.95 * self.rate
    }
}

fn net() -> Net {
    Net {
        edge_ip: Ipv4Addr::new(127, 0, 52, 1),
        tls_port: 5061,
        uas: SocketAddr::from(([127, 0, 52, 10], 5060)),
        uac_ips: (33..41).map(|h| Ipv4Addr::new(127, 0, 52, h)).collect(),
        uac_cidr: "127.0.52.32/28".into(),
    }
}

/// utime + stime of `pid` in seconds (/proc/PID/stat fields 14 and 15).
fn cpu_s(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / hz
}

/// Kills the edge on drop, whatever happens to the run.
struct EdgeProc(Child);

impl Drop for EdgeProc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes certificates, seed and config under `dir` and starts the edge; returns once it logs "sipedge ready".
fn start_edge(a: &Args, net: &Net, dir: &Path, tag: &str) -> Result<(EdgeProc, calls::Certs), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let certs = calls::make_certs(dir, net.edge_ip)?;
    let seed = dir.join("numbers.csv");
    let csv = format!("e164,kind,flow,carriers,max_concurrent,cnam\n{}\n", calls::seed_rows(a.numbers).join("\n"));
    std::fs::write(&seed, csv).map_err(|e| e.to_string())?;
    let data = dir.join(format!("{tag}.data"));
    let _ = std::fs::remove_dir_all(&data);
    let sip = SocketAddr::new(net.edge_ip.into(), 5060);
    let cfg = format!(
        "# generated by examples/tls_load\n[edge]\nname = \"tls-load\"\ndata_dir = {:?}\nworkers = 1\nunknown_source = \"drop\"\n\
         [[listen]]\ntransport = \"udp\"\naddr = \"{sip}\"\n[[listen]]\ntransport = \"tcp\"\naddr = \"{sip}\"\n\
         [admin]\naddr = \"{}:9060\"\n[numbers]\nseed_file = {:?}\n{}",
        data.display().to_string(),
        net.edge_ip,
        seed.display().to_string(),
        calls::edge_toml(net, &certs)
    );
    let cfg_path = dir.join("sipedge.toml");
    std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
    let log_path = dir.join(format!("{tag}.edge.log"));
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let child = Command::new(&a.binary)
        .arg("--config")
        .arg(&cfg_path)
        .env("RUST_LOG", &a.rust_log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{}: {e}", a.binary.display()))?;
    let mut edge = EdgeProc(child);
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
        if std::fs::read_to_string(&log_path).unwrap_or_default().contains("sipedge ready") {
            return Ok((edge, certs));
        }
        if let Ok(Some(st)) = edge.0.try_wait() {
            return Err(format!("sipedge exited ({st}); see {}", log_path.display()));
        }
    }
    Err(format!("sipedge not ready in 20 s; see {}", log_path.display()))
}

fn one_run(a: &Args, rt: &tokio::runtime::Runtime, dir: &Path, wire: Wire, rate: f64, k: usize) -> Result<Run, String> {
    let net = Arc::new(net());
    let tag = format!("{k:02}-{}", wire.via().to_lowercase());
    // The flow engine first, so that the edge's first OPTIONS finds it.
    let uas = rt
        .block_on(tokio::net::UdpSocket::bind(net.uas))
        .map_err(|e| format!("bind the flow engine on {}: {e}", net.uas))?;
    let uas = rt.spawn(calls::uas(uas));
    let r = measure(a, rt, dir, net, wire, rate, &tag);
    // abort() only asks: the socket closes when the runtime drops the task,
    // which awaiting the handle waits for; the next run binds the same address.
    uas.abort();
    let _ = rt.block_on(uas);
    r
}

/// One run against a fresh edge, the flow engine already up.
fn measure(
    a: &Args,
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    net: Arc<Net>,
    wire: Wire,
    rate: f64,
    tag: &str,
) -> Result<Run, String> {
    let (edge, certs) = start_edge(a, &net, dir, tag)?;
    let pid = edge.0.id().to_string();
    let tls = calls::client_config(&certs.ca_file, a.x25519)?;
    let total = (rate * a.seconds).round() as u64;
    let offer = Offer { rate, total, conns: a.conns, numbers: a.numbers, grace: Duration::from_secs(5) };
    let (e0, d0, t0) = (cpu_s(&pid), cpu_s("self"), Instant::now());
    let tally: Arc<Tally> = match a.mode {
        Mode::Calls => rt.block_on(calls::run_calls(net.clone(), wire, tls, offer)),
        Mode::Handshakes => rt.block_on(calls::run_handshakes(net.clone(), wire, tls, offer)),
    };
    let offering_s = t0.elapsed().as_secs_f64();
    // What the edge still does for finished calls (timers, closes) belongs to them.
    std::thread::sleep(Duration::from_secs(2));
    let (e1, d1) = (cpu_s(&pid), cpu_s("self"));
    drop(edge);
    let completed = tally.completed.load(Ordering::Relaxed);
    let offered = tally.offered.load(Ordering::Relaxed);
    let offered_s = match a.mode {
        Mode::Handshakes => tally.offering_us.load(Ordering::Relaxed) as f64 / 1e6,
        Mode::Calls => offering_s,
    };
    Ok(Run {
        wire,
        rate,
        offered,
        completed,
        failed: tally.failed.load(Ordering::Relaxed),
        edge_cpu_s: e1 - e0,
        driver_cpu_s: d1 - d0,
        achieved: offered as f64 / offered_s.max(1e-3),
        mean_ms: tally.setup_us.load(Ordering::Relaxed) as f64 / 1e3 / completed.max(1) as f64,
    })
}

fn print_run(mode: Mode, r: &Run) {
    let unit = if mode == Mode::Calls { "call" } else { "handshake" };
    let per_cpu_s = r.completed as f64 / r.edge_cpu_s.max(1e-9);
    println!(
        "{} {:?} rate {:.0}: offered {} completed {} failed {} | edge CPU {:.2} s = {:.1} µs per {unit} ({:.0} per edge CPU-second) | driver CPU {:.2} s | offered at {:.0}/s | mean {:.2} ms",
        r.wire.via(),
        mode,
        r.rate,
        r.offered,
        r.completed,
        r.failed,
        r.edge_cpu_s,
        r.us_per(),
        per_cpu_s,
        r.driver_cpu_s,
        r.achieved,
        r.mean_ms,
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v.get(n / 2).copied().unwrap_or(f64::NAN),
        n => (v.get(n / 2 - 1).copied().unwrap_or(0.0) + v.get(n / 2).copied().unwrap_or(0.0)) / 2.0,
    }
}

fn main() {
    let a = Args::parse();
    if let Err(e) = run(&a) {
        eprintln!("tls_load: {e}");
        std::process::exit(1);
    }
}

fn run(a: &Args) -> Result<(), String> {
    if !a.binary.exists() {
        return Err(format!("{} not found: cargo build --release first", a.binary.display()));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = a.out.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    if a.find_max {
        let wire = if a.wire == Wires::Tcp { Wire::Tcp } else { Wire::Tls };
        let (mut rate, mut last_clean) = (a.rate, None);
        let mut k = 0;
        while rate <= a.max {
            let r = one_run(a, &rt, &dir, wire, rate, k)?;
            print_run(a.mode, &r);
            k += 1;
            if !r.clean() {
                println!("first failing step: {rate:.0}/s");
                break;
            }
            last_clean = Some(r);
            rate += a.step;
        }
        match last_clean {
            Some(r) => println!(
                "highest clean rate: {:.0}/s, {:.1} µs edge CPU per {}",
                r.rate,
                r.us_per(),
                if a.mode == Mode::Calls { "call" } else { "handshake" }
            ),
            None => println!("no clean step"),
        }
        return Ok(());
    }
    let order: Vec<Wire> = match a.wire {
        Wires::Tls => vec![Wire::Tls; a.runs],
        Wires::Tcp => vec![Wire::Tcp; a.runs],
        Wires::Both => (0..a.runs).flat_map(|_| [Wire::Tls, Wire::Tcp]).collect(),
    };
    let mut runs = Vec::new();
    for (k, wire) in order.into_iter().enumerate() {
        let r = one_run(a, &rt, &dir, wire, a.rate, k)?;
        print_run(a.mode, &r);
        runs.push(r);
    }
    let med = |w: Wire| median(runs.iter().filter(|r| r.wire == w).map(Run::us_per).collect());
    let fails: u64 = runs.iter().map(|r| r.failed).sum();
    let (tls, tcp) = (med(Wire::Tls), med(Wire::Tcp));
    println!(
        "median edge CPU µs per {:?}: TLS {tls:.1}, TCP {tcp:.1}; TLS ÷ TCP {:.2}; failed in all runs {fails}",
        a.mode,
        tls / tcp
    );
    Ok(())
}
