//! A real `redis-server` for one test, on its own loopback address, with no
//! persistence; killed on drop. Commands go over a plain TCP socket in RESP.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
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
        let child = Command::new("redis-server")
            .args(["--bind", &addr.ip().to_string(), "--port", &addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no"])
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
