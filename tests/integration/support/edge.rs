//! Spawns the real binary with a generated config; kills it on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::net::Block;

/// What to run: the TOML body after `[edge]`/`[[listen]]`/`[admin]`, and the seed rows.
pub struct EdgeSpec {
    /// Extra TOML (carriers, flow engines, limits, timers, ...).
    pub toml: String,
    /// numbers.csv rows (without header).
    pub numbers: Vec<String>,
    /// Listen on UDP.
    pub udp: bool,
    /// Listen on TCP.
    pub tcp: bool,
    /// `[edge]` keys beyond data_dir.
    pub edge_extra: String,
    /// A numbers.csv already written (header included) to seed from instead
    /// of `numbers`: millions of rows are streamed to disk, not held in memory.
    pub seed_file: Option<PathBuf>,
    /// How long a start may take to log "sipedge ready" (20 s if `None`).
    pub ready_timeout: Option<Duration>,
}

impl Default for EdgeSpec {
    fn default() -> Self {
        EdgeSpec {
            toml: String::new(),
            numbers: Vec::new(),
            udp: true,
            tcp: true,
            edge_extra: String::new(),
            seed_file: None,
            ready_timeout: None,
        }
    }
}

/// A running edge.
pub struct Edge {
    child: Option<Child>,
    /// SIP address (UDP and TCP share it).
    pub sip: SocketAddr,
    /// Control-plane address.
    pub admin: SocketAddr,
    /// Its config file (rewrite it and reload).
    pub config_path: PathBuf,
    /// Its data dir.
    pub data_dir: PathBuf,
    /// The temp dir holding both.
    pub dir: Arc<tempfile::TempDir>,
    log: Arc<Mutex<Vec<String>>>,
    block: Block,
    ready_timeout: Duration,
}

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_sipedge")
}

impl Edge {
    /// Writes the config into a temp dir and starts the edge on `block.1:5060`.
    pub fn start(block: Block, spec: EdgeSpec) -> Edge {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        Edge::start_in(block, spec, dir)
    }

    /// Same, in an existing directory (restart after a crash keeps the data).
    pub fn start_in(block: Block, spec: EdgeSpec, dir: Arc<tempfile::TempDir>) -> Edge {
        let sip = block.addr(1, 5060);
        let admin = block.addr(1, 9060);
        let data_dir = dir.path().join("data");
        let seed = match &spec.seed_file {
            Some(f) => f.clone(),
            None => {
                let seed = dir.path().join("numbers.csv");
                let mut csv = String::from("e164,kind,flow,carriers,max_concurrent,cnam\n");
                for r in &spec.numbers {
                    csv.push_str(r);
                    csv.push('\n');
                }
                std::fs::write(&seed, csv).unwrap();
                seed
            }
        };
        let mut toml = format!("[edge]\ndata_dir = {:?}\n{}\n", data_dir.display().to_string(), spec.edge_extra);
        if spec.udp {
            toml.push_str(&format!("[[listen]]\ntransport = \"udp\"\naddr = \"{sip}\"\n"));
        }
        if spec.tcp {
            toml.push_str(&format!("[[listen]]\ntransport = \"tcp\"\naddr = \"{sip}\"\n"));
        }
        toml.push_str(&format!("[admin]\naddr = \"{admin}\"\n"));
        toml.push_str(&format!("[numbers]\nseed_file = {:?}\n", seed.display().to_string()));
        toml.push_str(&spec.toml);
        let config_path = dir.path().join("sipedge.toml");
        std::fs::write(&config_path, &toml).unwrap();
        let ready_timeout = spec.ready_timeout.unwrap_or(Duration::from_secs(20));
        let mut e =
            Edge { child: None, sip, admin, config_path, data_dir, dir, log: Default::default(), block, ready_timeout };
        e.spawn();
        e
    }

    fn spawn(&mut self) {
        let mut child = Command::new(binary())
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_LOG", std::env::var("EDGE_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sipedge");
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("sipedge ready") {
                    if let Some(t) = tx.take() {
                        let _ = t.send(());
                    }
                }
                log.lock().unwrap().push(line);
            }
        });
        if rx.recv_timeout(self.ready_timeout).is_err() {
            let _ = child.kill();
            panic!("edge did not start:\n{}", self.log.lock().unwrap().join("\n"));
        }
        self.child = Some(child);
    }

    /// The edge's log so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILL (a crash); `restart` brings it back on the same data.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the binary again with the same config and data.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Sends a signal (e.g. "HUP", "TERM") with kill(1).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg(format!("-{sig}")).arg(c.id().to_string()).status();
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit code, if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.child = None;
                    return Some(st.code().unwrap_or(-1));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The address block of this test.
    pub fn block(&self) -> Block {
        self.block
    }

    /// GET on the control plane; returns (status, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        http(self.admin, method, path, body, None)
    }

    /// Scrapes /metrics and returns the value of the sample whose line starts with `prefix`
    /// (a whole metric name: `sipedge_active_calls` does not match `sipedge_active_calls_high_water`).
    pub fn metric(&self, prefix: &str) -> Option<f64> {
        let (_, text) = self.http("GET", "/metrics", None);
        let name_goes_on =
            |l: &str| l[prefix.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        text.lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(prefix) && !name_goes_on(l))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .next()
    }

    /// Config file directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A minimal HTTP/1.1 client (the tests avoid extra dependencies).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = match out.split_once("\r\n\r\n") {
        Some((head, b)) if head.to_ascii_lowercase().contains("transfer-encoding: chunked") => dechunk(b),
        Some((_, b)) => b.to_string(),
        None => String::new(),
    };
    (status, body)
}

fn dechunk(mut b: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = b.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        b = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The usual topology of a test block: carrier-a (az1 .2, az2 .3), carrier-b
/// (az1 .4), flow engine az1 .10 and az2 .11, all on port 5060 with
/// `transport`; a toll-free, a DID (cap 2), a number without flow.
pub fn standard(block: Block, transport: &str) -> EdgeSpec {
    let toml = format!(
        r#"
[timers]
failover_ms = 500
[health]
options_interval_ms = 60000
[[carrier]]
name = "carrier-a"
[[carrier.link]]
az = "az1"
addr = "{a1}"
transport = "{transport}"
[[carrier.link]]
az = "az2"
addr = "{a2}"
transport = "{transport}"
[[carrier]]
name = "carrier-b"
[[carrier.link]]
az = "az1"
addr = "{b1}"
transport = "{transport}"
[[flow_engine]]
az = "az1"
addr = "{f1}"
transport = "{transport}"
[[flow_engine]]
az = "az2"
addr = "{f2}"
transport = "{transport}"
"#,
        a1 = block.addr(2, 5060),
        a2 = block.addr(3, 5060),
        b1 = block.addr(4, 5060),
        f1 = block.addr(10, 5060),
        f2 = block.addr(11, 5060),
    );
    EdgeSpec {
        toml,
        numbers: vec![
            "+18005550100,toll-free,flow-tf,carrier-a;carrier-b,,ACME".into(),
            "+12065550100,did,flow-did,carrier-a,2,".into(),
            "+12065550101,did,,carrier-a,,".into(),
        ],
        ..EdgeSpec::default()
    }
}
