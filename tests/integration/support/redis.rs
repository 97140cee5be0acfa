//! A real `redis-server` for one test, on its own loopback address, with no
//! persistence; killed on drop. Commands go over a plain TCP socket in RESP.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Redis.
pub struct Redis {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Whether `redis-server` is installed (`.ci/run` installs it).
pub fn available() -> bool {
    let ok = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("NOTICE: redis-server not installed: cluster tests skipped (apt-get install redis-server)");
    }
    ok
}

impl Redis {
    /// Starts Redis on `addr` and waits until it answers PING.
    pub fn start(addr: SocketAddr) -> Redis {
        Redis::start_with(addr, &[], None)
    }

    /// As `start`, with more server arguments, run in `dir` (where a cluster node keeps its nodes file).
    fn start_with(addr: SocketAddr, extra: &[&str], dir: Option<&Path>) -> Redis {
        let mut cmd = Command::new("redis-server");
        if let Some(dir) = dir {
            cmd.current_dir(dir);
        }
        let child = cmd
            .args(["--bind", &addr.ip().to_string(), "--port", &addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let r = Redis { child, addr };
        let end = Instant::now() + Duration::from_secs(10);
        while r.try_cmd(&["PING"]).as_deref() != Some("PONG") {
            assert!(Instant::now() < end, "redis-server did not start on {addr}");
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// `redis://addr/0`.
    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Runs one command; the reply as text (integers and simple strings), `None` if unreachable.
    pub fn try_cmd(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        let line = line.trim_end();
        Some(line.get(1..).unwrap_or("").to_string())
    }

    /// Runs one command that must answer.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args).unwrap_or_else(|| panic!("redis {args:?} did not answer"))
    }

    /// Sends a signal (`STOP`, `CONT`) to the server.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").arg(format!("-{sig}")).arg(self.child.id().to_string()).status();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.signal("CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Redis Cluster of three masters (no replicas) on one loopback address,
/// ports 7001 to 7003; every node killed on drop.
pub struct RedisCluster {
    nodes: Vec<Redis>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts the nodes, joins them with `redis-cli --cluster create` and
    /// waits until every node reports `cluster_state:ok`.
    pub fn start(ip: IpAddr) -> RedisCluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports = [7001u16, 7002, 7003];
        let nodes: Vec<Redis> = ports
            .iter()
            .map(|p| {
                let conf = format!("nodes-{p}.conf");
                // Bus connections leave from 127.0.0.1, not the bound
                // address: without announcing it, nodes never meet.
                let ip_text = ip.to_string();
                let extra = [
                    ["--cluster-enabled", "yes"],
                    ["--cluster-config-file", &conf],
                    ["--cluster-node-timeout", "2000"],
                    ["--cluster-announce-ip", &ip_text],
                ]
                .concat();
                Redis::start_with(SocketAddr::new(ip, *p), &extra, Some(dir.path()))
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        let out = Command::new("timeout")
            .args(["30", "redis-cli", "--cluster"])
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(out.status.success(), "cluster create: {}", String::from_utf8_lossy(&out.stdout));
        let c = RedisCluster { nodes, _dir: dir };
        let end = Instant::now() + Duration::from_secs(20);
        for n in &c.nodes {
            while !c.node_cli(n.addr, &["CLUSTER", "INFO"]).contains("cluster_state:ok") {
                assert!(Instant::now() < end, "cluster on {ip} never reached state ok");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        c
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.nodes.iter().map(|n| n.addr.to_string()).collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Runs one command through `redis-cli -c` (following MOVED to the key's node); its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let first = self.nodes.first().map(|n| n.addr).expect("a node");
        let out = Command::new("redis-cli")
            .args(["-c", "-h", &first.ip().to_string(), "-p", &first.port().to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn node_cli(&self, node: SocketAddr, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", &node.ip().to_string(), "-p", &node.port().to_string()])
            .args(args)
            .output()
            .expect("run redis-cli");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The node holding `key`'s slot (`CLUSTER KEYSLOT`, then the slot ranges).
    pub fn node_of(&self, key: &str) -> SocketAddr {
        let slot: u16 = self.cli(&["CLUSTER", "KEYSLOT", key]).parse().expect("a slot");
        let shards = self.node_cli(self.nodes[0].addr, &["CLUSTER", "SLOTS"]);
        // redis-cli prints each range as: start, end, then the master's ip, port, id.
        let lines: Vec<&str> = shards.lines().map(str::trim).collect();
        for w in lines.windows(4) {
            if let (Ok(lo), Ok(hi), Ok(ip), Ok(port)) =
                (w[0].parse::<u16>(), w[1].parse::<u16>(), w[2].parse::<IpAddr>(), w[3].parse::<u16>())
            {
                if (lo..=hi).contains(&slot) {
                    return SocketAddr::new(ip, port);
                }
            }
        }
        panic!("no node serves slot {slot}: {shards}");
    }

    /// Every node's number of keys (`DBSIZE`), by address.
    pub fn keys_per_node(&self) -> Vec<(SocketAddr, u64)> {
        self.nodes.iter().map(|n| (n.addr, n.cmd(&["DBSIZE"]).parse().unwrap_or(0))).collect()
    }
}
