//! `sipedge ctl`: the command-line client of the control plane (SPEC §6).
//!
//! The address comes from `--admin`, else `[admin].addr` of `--config`; the
//! token from `--token-file`, else `[admin].token_file` of `--config`. Only
//! those two keys are read from the config (as plain TOML, not validated), so
//! `ctl reload` still works to learn what is wrong with a broken file.
//!
//! Output is `key: value` lines (tables for lists); `--json` prints the
//! server's answer as is. Exit status: 0 done; 1 the edge refused (its
//! message is printed); 2 bad usage or local set-up (config, token file);
//! 3 the edge could not be reached.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Map, Value};

mod render;
use render::{
    render_carriers, render_cluster, render_drain, render_number, render_number_page, render_port, render_port_list,
    render_reload,
};

/// `sipedge ctl` arguments.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// Control-plane address, `host:port` or `http://host:port` (default: `[admin].addr` of --config).
    #[arg(long)]
    pub admin: Option<String>,
    /// File holding the bearer token (default: `[admin].token_file` of --config).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Print the server's JSON answer as is.
    #[arg(long)]
    pub json: bool,
    /// Give up on a call after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `sipedge ctl` commands.
#[derive(clap::Subcommand, Debug)]
pub enum CtlCommand {
    /// Show a number: its record, state and active calls.
    Show {
        /// The number (`+18005550100`, `18005550100`, `8005550100`).
        e164: String,
    },
    /// List numbers in ascending order, a page at a time.
    List {
        /// Numbers per page (1..=1000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this number (the previous page's `next`).
        #[arg(long)]
        after: Option<String>,
        /// Only this state: active, released, port_in_pending, port_out_pending.
        #[arg(long)]
        state: Option<String>,
    },
    /// Claim a number: it becomes routable.
    Claim {
        /// The number.
        e164: String,
        /// Flow id inbound calls are handed to (without one, calls get 480).
        #[arg(long)]
        flow: Option<String>,
        /// Carrier names, comma-separated (a DID takes exactly one).
        #[arg(long, value_delimiter = ',', required = true)]
        carriers: Vec<String>,
        /// Override the kind the prefix implies.
        #[arg(long, value_parser = ["did", "toll-free"])]
        kind: Option<String>,
        /// Per-number concurrency cap.
        #[arg(long)]
        max_concurrent: Option<u32>,
        /// Caller name for outbound calls (at most 15 characters).
        #[arg(long)]
        cnam: Option<String>,
    },
    /// Release a number to the deletion queue (410, restorable for 7 days).
    Release {
        /// The number.
        e164: String,
    },
    /// Restore a released number with its old record.
    Restore {
        /// The number.
        e164: String,
    },
    /// Set the flow of a number (new calls only).
    Flow {
        /// The number.
        e164: String,
        /// The flow id.
        flow: String,
    },
    /// Port orders.
    Port {
        /// What to do.
        #[command(subcommand)]
        command: PortCommand,
    },
    /// Make the edge re-read its config file (like SIGHUP).
    Reload,
    /// Cluster mode: Redis reachable, instances alive (`GET /v1/cluster`).
    Cluster,
    /// Carrier trunks: limits, calls up, links and their health (`GET /v1/carriers`).
    Carriers,
    /// Drain the edge (like SIGTERM): no new calls; it exits once its last call ends.
    Drain,
}

/// `sipedge ctl port ...`.
#[derive(clap::Subcommand, Debug)]
pub enum PortCommand {
    /// Create a port-in order: the numbers answer 404 until `complete`.
    In(PortCreate),
    /// Create a port-out order: the numbers stay routable until `complete`.
    Out(PortCreate),
    /// The port event: activate (in) or remove (out) the order's numbers.
    Complete {
        /// Order id.
        id: u64,
    },
    /// Call off a pending order.
    Cancel {
        /// Order id.
        id: u64,
    },
    /// Show one order.
    Show {
        /// Order id.
        id: u64,
    },
    /// List every order.
    List,
}

/// Options of `ctl port in|out`.
#[derive(clap::Args, Debug)]
pub struct PortCreate {
    /// The numbers, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub numbers: Vec<String>,
    /// Carriers of ported-in numbers, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub carriers: Vec<String>,
    /// Flow of ported-in numbers.
    #[arg(long)]
    pub flow: Option<String>,
    /// Refuse `complete` before this time (unix seconds).
    #[arg(long)]
    pub window_start: Option<u64>,
}

/// Why a ctl command failed, and its exit status.
#[derive(Debug, thiserror::Error)]
enum CtlError {
    /// Local set-up: config or token file, bad address.
    #[error("{0}")]
    Setup(String),
    /// The edge could not be reached.
    #[error("cannot reach the control plane at {url}: {reason} (is sipedge running? set --admin or [admin].addr)")]
    Unreachable { url: String, reason: String },
    /// The edge answered with an error.
    #[error("{message}")]
    Refused { message: String, details: Vec<String>, body: Option<Value> },
}

impl CtlError {
    fn exit(&self) -> ExitCode {
        ExitCode::from(match self {
            CtlError::Refused { .. } => 1,
            CtlError::Setup(_) => 2,
            CtlError::Unreachable { .. } => 3,
        })
    }
}

/// Runs a ctl command; `config` is the global `--config` path.
pub fn run(config: &Path, args: CtlArgs) -> ExitCode {
    let json_out = args.json;
    match Client::new(config, &args).and_then(|c| execute(&c, args.command)) {
        Ok(out) => {
            if json_out {
                println!("{}", serde_json::to_string_pretty(&out.body).unwrap_or_default());
            } else {
                print!("{}", out.text);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if let (true, CtlError::Refused { body: Some(b), .. }) = (json_out, &e) {
                println!("{}", serde_json::to_string_pretty(b).unwrap_or_default());
            }
            eprintln!("error: {e}");
            if let CtlError::Refused { details, .. } = &e {
                for d in details {
                    eprintln!("  {d}");
                }
            }
            e.exit()
        }
    }
}

/// A command's answer: the raw JSON and its readable form.
struct Output {
    body: Value,
    text: String,
}

fn execute(c: &Client, cmd: CtlCommand) -> Result<Output, CtlError> {
    let num = |e: &str| format!("/v1/numbers/{}", encode(e));
    let (body, render): (Value, fn(&Value) -> String) = match cmd {
        CtlCommand::Show { e164 } => (c.call("GET", &num(&e164), None)?, render_number),
        CtlCommand::List { limit, after, state } => {
            let mut q = format!("/v1/numbers?limit={limit}");
            if let Some(a) = after {
                q.push_str(&format!("&after={}", encode(&a)));
            }
            if let Some(s) = state {
                q.push_str(&format!("&state={}", encode(&s)));
            }
            (c.call("GET", &q, None)?, render_number_page)
        }
        CtlCommand::Claim { e164, flow, carriers, kind, max_concurrent, cnam } => {
            let mut b = Map::new();
            b.insert("carriers".into(), json!(carriers));
            for (k, v) in [("flow", flow), ("kind", kind), ("cnam", cnam)] {
                if let Some(v) = v {
                    b.insert(k.into(), json!(v));
                }
            }
            if let Some(m) = max_concurrent {
                b.insert("max_concurrent".into(), json!(m));
            }
            (c.call("POST", &format!("{}/claim", num(&e164)), Some(Value::Object(b)))?, render_number)
        }
        CtlCommand::Release { e164 } => (c.call("POST", &format!("{}/release", num(&e164)), None)?, render_number),
        CtlCommand::Restore { e164 } => (c.call("POST", &format!("{}/restore", num(&e164)), None)?, render_number),
        CtlCommand::Flow { e164, flow } => {
            (c.call("PUT", &format!("{}/flow", num(&e164)), Some(json!({ "flow": flow })))?, render_number)
        }
        CtlCommand::Port { command } => match command {
            PortCommand::In(p) => (c.call("POST", "/v1/ports", Some(port_body("in", p)))?, render_port),
            PortCommand::Out(p) => (c.call("POST", "/v1/ports", Some(port_body("out", p)))?, render_port),
            PortCommand::Complete { id } => (c.call("POST", &format!("/v1/ports/{id}/complete"), None)?, render_port),
            PortCommand::Cancel { id } => (c.call("POST", &format!("/v1/ports/{id}/cancel"), None)?, render_port),
            PortCommand::Show { id } => (c.call("GET", &format!("/v1/ports/{id}"), None)?, render_port),
            PortCommand::List => (c.call("GET", "/v1/ports", None)?, render_port_list),
        },
        CtlCommand::Reload => (c.call("POST", "/v1/reload", None)?, render_reload),
        CtlCommand::Cluster => (c.call("GET", "/v1/cluster", None)?, render_cluster),
        CtlCommand::Carriers => (c.call("GET", "/v1/carriers", None)?, render_carriers),
        CtlCommand::Drain => (c.call("POST", "/v1/drain", None)?, render_drain),
    };
    let text = render(&body);
    Ok(Output { body, text })
}

fn port_body(direction: &str, p: PortCreate) -> Value {
    let mut b = Map::new();
    b.insert("direction".into(), json!(direction));
    b.insert("numbers".into(), json!(p.numbers));
    if !p.carriers.is_empty() {
        b.insert("carriers".into(), json!(p.carriers));
    }
    if let Some(f) = p.flow {
        b.insert("flow".into(), json!(f));
    }
    if let Some(w) = p.window_start {
        b.insert("window_start".into(), json!(w));
    }
    Value::Object(b)
}

/// An HTTP client bound to one control plane.
struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    fn new(config: &Path, args: &CtlArgs) -> Result<Client, CtlError> {
        // The config is needed for the address unless --admin is given; with
        // --admin it is only a hint for the token file, so a missing or broken
        // one is not an error then.
        let cfg = match (&args.admin, &args.token_file) {
            (None, _) => Some(read_admin_keys(config)?),
            (Some(_), None) => read_admin_keys(config).ok(),
            (Some(_), Some(_)) => None,
        };
        let addr = match (&args.admin, &cfg) {
            (Some(a), _) => a.clone(),
            (None, Some(k)) => k.addr.clone(),
            (None, None) => "127.0.0.1:9060".into(),
        };
        let base = if addr.starts_with("http://") { addr } else { format!("http://{addr}") };
        let base = base.trim_end_matches('/').to_owned();
        let token_file = args.token_file.clone().or_else(|| cfg.and_then(|k| k.token_file));
        let token = match token_file {
            None => None,
            Some(p) => {
                let t = std::fs::read_to_string(&p)
                    .map_err(|e| CtlError::Setup(format!("cannot read token file {}: {e}", p.display())))?;
                Some(t.trim().to_owned()).filter(|t| !t.is_empty())
            }
        };
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(5))
            .timeout(Duration::from_secs(args.timeout.max(1)))
            .build();
        Ok(Client { base, token, agent })
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, CtlError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.request(method, &url).set("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        let res = match body {
            Some(b) => req.send_json(b),
            None => req.call(),
        };
        match res {
            Ok(resp) => {
                let text = resp.into_string().map_err(|e| self.unreachable(e.to_string()))?;
                Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
            Err(ureq::Error::Status(status, resp)) => {
                let text = resp.into_string().unwrap_or_default();
                Err(refused(status, &text))
            }
            Err(ureq::Error::Transport(t)) => {
                let reason = match t.kind() {
                    ureq::ErrorKind::ConnectionFailed => "connection refused or failed".to_owned(),
                    _ => t.to_string(),
                };
                Err(self.unreachable(reason))
            }
        }
    }

    fn unreachable(&self, reason: String) -> CtlError {
        CtlError::Unreachable { url: self.base.clone(), reason }
    }
}

/// The server's error answer as a `Refused`.
fn refused(status: u16, text: &str) -> CtlError {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => {
            let code = v.get("error").and_then(Value::as_str).unwrap_or("error");
            let msg = v.get("message").and_then(Value::as_str).unwrap_or("");
            let details = v
                .get("errors")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned)).collect())
                .unwrap_or_default();
            CtlError::Refused { message: format!("{status} {code}: {msg}"), details, body: Some(v) }
        }
        Err(_) => CtlError::Refused { message: format!("{status}: {}", text.trim()), details: Vec::new(), body: None },
    }
}

/// `[admin].addr` and `[admin].token_file` of a config file.
struct AdminKeys {
    addr: String,
    token_file: Option<PathBuf>,
}

fn read_admin_keys(path: &Path) -> Result<AdminKeys, CtlError> {
    let setup = |why: String| {
        CtlError::Setup(format!("cannot find the control plane in {}: {why} (or pass --admin)", path.display()))
    };
    let text = std::fs::read_to_string(path).map_err(|e| setup(e.to_string()))?;
    let v: toml::Value = toml::from_str(&text).map_err(|e| setup(e.to_string()))?;
    let admin = v.get("admin");
    let addr = admin.and_then(|a| a.get("addr")).and_then(|a| a.as_str()).unwrap_or("127.0.0.1:9060").to_owned();
    let token_file = admin.and_then(|a| a.get("token_file")).and_then(|t| t.as_str()).map(PathBuf::from);
    Ok(AdminKeys { addr, token_file })
}

/// Percent-encodes a path or query component (`+` → `%2B`).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
