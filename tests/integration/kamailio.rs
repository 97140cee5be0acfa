//! A TLS peer nobody here wrote: Kamailio (Debian `kamailio` and
//! `kamailio-tls-modules`, OpenSSL underneath) as a carrier in front of the
//! edge. The test runs its own kamailio in the foreground on the test's
//! loopback block, with its own config and certificates made here (rcgen),
//! and kills it at the end. Kamailio is a stateful proxy (tm + rr): a test
//! UAC calls it over UDP and it relays over TLS to the edge; the edge calls
//! out to it over TLS and it relays over UDP to a test UAS. Both calls are
//! answered and hung up.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::failover::{invite_as, wait_metric, T};
use crate::support::peer::{callee_bye, in_dialog, uas_answer};
use crate::support::tls::{carrier_edge_toml, Ca};
use crate::support::{Block, Edge, EdgeSpec, Peer};
use sipedge::sip::{build, Method};

const TOLL_FREE: &str = "+18005550100";
const MODULES: &str = "/usr/lib/x86_64-linux-gnu/kamailio/modules";

/// Whether kamailio and its TLS module are installed (`.ci/run` installs them).
fn installed() -> bool {
    let ok = Command::new("kamailio").arg("-v").output().is_ok_and(|o| o.status.success())
        && Path::new(MODULES).join("tls.so").exists();
    if !ok {
        println!("NOTICE: kamailio or kamailio-tls-modules not installed: Kamailio TLS test skipped");
    }
    ok
}

/// One kamailio process (and the children it forks, in their own process group).
struct Kamailio {
    child: Child,
    log: std::path::PathBuf,
}

/// The route script: answer OPTIONS; record-route (double, when the transport
/// changes) and relay initial requests, over TLS to the edge by their
/// Request-URI when they came over UDP, and to the UAS when they came over
/// TLS; in-dialog requests follow their Route set.
const ROUTE: &str = r#"
request_route {
    xlog("L_INFO", "sipedge-test: $rm $ru from $proto:$si:$sp\n");
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) { t_relay(); exit; }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here"); exit;
    }
    if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
    if (is_method("OPTIONS")) { sl_send_reply("200", "OK"); exit; }
    record_route();
    if ($proto == "tls") { $du = "sip:UAS;transport=udp"; }
    t_relay();
}
"#;

impl Kamailio {
    /// Kamailio on `ip` (UDP 5060, TLS 5061) with `cert` as its server
    /// certificate, trusting `ca_file` for the servers it connects to, relaying
    /// calls that came over TLS to `uas`.
    fn start(
        dir: &Path,
        ip: std::net::Ipv4Addr,
        cert: &crate::support::tls::Issued,
        ca_file: &Path,
        uas: SocketAddr,
    ) -> Kamailio {
        let tls_cfg = dir.join("kamailio-tls.cfg");
        std::fs::write(
            &tls_cfg,
            format!(
                "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
                 certificate = {}\nprivate_key = {}\n\n\
                 [client:default]\nmethod = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\nca_list = {}\n",
                cert.cert_file.display(),
                cert.key_file.display(),
                ca_file.display()
            ),
        )
        .unwrap();
        let modules = ["tls", "tm", "sl", "rr", "maxfwd", "textops", "xlog", "pv", "siputils"];
        let load: String = modules.iter().map(|m| format!("loadmodule \"{m}.so\"\n")).collect();
        let cfg = format!(
            "#!KAMAILIO\ndebug=2\nlog_stderror=yes\nchildren=1\ntcp_children=1\nauto_aliases=no\nenable_tls=yes\n\
             listen=udp:{ip}:5060\nlisten=tls:{ip}:5061\ntcp_source_ipv4={ip}\nmpath=\"{MODULES}/\"\n{load}\
             modparam(\"tls\", \"config\", \"{}\")\n{}",
            tls_cfg.display(),
            ROUTE.replace("UAS", &uas.to_string())
        );
        let cfg_file = dir.join("kamailio.cfg");
        std::fs::write(&cfg_file, cfg).unwrap();
        let log = dir.join("kamailio.log");
        let out = std::fs::File::create(&log).unwrap();
        use std::os::unix::process::CommandExt;
        // -DD: stay in the foreground; -E: log to stderr; -Y: no /run/kamailio.
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg_file)
            .args(["-DD", "-E", "-m", "32", "-M", "8", "-Y"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(out)
            .process_group(0)
            .spawn()
            .expect("spawn kamailio");
        let k = Kamailio { child, log };
        k.wait_ready(SocketAddr::from((ip, 5060)));
        k
    }

    /// Until kamailio answers an OPTIONS over UDP.
    fn wait_ready(&self, udp: SocketAddr) {
        let sock = std::net::UdpSocket::bind(SocketAddr::new(udp.ip(), 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let local = sock.local_addr().unwrap();
        let probe = crate::support::peer::wire(&format!(
            "OPTIONS sip:{udp} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bKready\nFrom: <sip:t@x>;tag=1\n\
             To: <sip:k@x>\nCall-ID: ready\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n"
        ));
        while Instant::now() < end {
            let _ = sock.send_to(&probe, udp);
            let mut buf = [0u8; 2048];
            if sock.recv_from(&mut buf).is_ok_and(|(n, _)| buf.get(..n).is_some_and(|b| b.starts_with(b"SIP/2.0 200")))
            {
                return;
            }
        }
        panic!("kamailio did not answer OPTIONS on {udp}\n{}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // The whole group: kamailio forks its workers.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

#[test]
fn kamailio_over_tls_calls_in_and_takes_a_call_out_and_both_hang_up() {
    if !installed() {
        return;
    }
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("sipedge kamailio test CA");
    let ca_file = ca.write(dir.path(), "ca.crt");
    let (ip1, ip2) = (b.ip(1).to_string(), b.ip(2).to_string());
    let edge_cert = ca.issue(dir.path(), "edge", &[ip1.as_str()]);
    let kam_cert = ca.issue(dir.path(), "kamailio", &[ip2.as_str()]);
    let kam = Kamailio::start(dir.path(), b.ip(2), &kam_cert, &ca_file, b.addr(4, 5060));

    let mut fe = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let tls = b.addr(1, 5061);
    let toml = carrier_edge_toml(b, &edge_cert, &ca_file, "", "");
    let numbers = vec![format!("{TOLL_FREE},toll-free,flow-tf,carrier-a,,")];
    let edge = Edge::start(b, EdgeSpec { toml, numbers, tcp: false, ..EdgeSpec::default() });
    let logs = || format!("--- edge\n{}\n--- kamailio\n{}", edge.log(), kam.log());

    // In: UAC --UDP--> kamailio --TLS--> edge --UDP--> flow engine.
    let mut uac = Peer::udp(b.addr(3, 5060), b.addr(2, 5060));
    let from = uac.local();
    uac.send(&format!(
        "INVITE sip:{TOLL_FREE}@{tls};transport=tls SIP/2.0\nVia: SIP/2.0/UDP {from};branch=z9hG4bKkamin\n\
         From: <sip:+13125550199@{from}>;tag=fkamin\nTo: <sip:{TOLL_FREE}@{tls}>\nCall-ID: kam-in\nCSeq: 1 INVITE\n\
         Contact: <sip:caller@{from}>\nMax-Forwards: 70\nContent-Type: application/sdp\n\nv=0\n"
    ));
    let (inv, at) = fe.expect_request("INVITE", T);
    let vias: Vec<String> = inv.headers(sipedge::sip::HeaderName::Via).map(str::to_owned).collect();
    assert!(
        vias.iter().any(|v| v.starts_with("SIP/2.0/TLS")),
        "kamailio's hop to the edge is TLS: {vias:?}\n{}",
        logs()
    );
    assert_eq!(inv.header_by_name("X-Carrier"), Some("carrier-a"), "{}", logs());
    fe.answer(&inv, 200, at);
    let ok = uac.expect_status(200, T);
    uac.send(&in_dialog("ACK", &ok, from, "UDP", 1, "kaminack"));
    let (ack, _) = fe.expect_request("ACK", T);
    assert_eq!(ack.call_id(), "kam-in", "{}", logs());
    uac.send(&in_dialog("BYE", &ok, from, "UDP", 2, "kaminbye"));
    let (bye, at) = fe.expect_request("BYE", T);
    fe.answer(&bye, 200, at);
    let done = uac.expect_status(200, T);
    assert_eq!(done.cseq().method, Method::Bye);

    // Out: platform --UDP--> edge --TLS--> kamailio --UDP--> UAS; the UAS hangs up.
    let mut uas = Peer::udp(b.addr(4, 5060), b.addr(2, 5060));
    let mut platform = Peer::udp(b.addr(10, 5070), edge.sip);
    let plocal = platform.local();
    platform.send(&invite_as(plocal, edge.sip, "+13125550100", TOLL_FREE, "kam-out"));
    let (inv, at) = uas.expect_request("INVITE", T);
    let vias: Vec<String> = inv.headers(sipedge::sip::HeaderName::Via).map(str::to_owned).collect();
    assert!(
        vias.iter().any(|v| v.starts_with("SIP/2.0/TLS")),
        "the edge's hop to kamailio is TLS: {vias:?}\n{}",
        logs()
    );
    assert!(inv.request_uri().unwrap_or("").contains("transport=tls"), "{:?}\n{}", inv.request_uri(), logs());
    uas.reply(&uas_answer(&inv, 200, uas.local()), at);
    let ok = platform.expect_status(200, T);
    platform.send(&in_dialog("ACK", &ok, plocal, "UDP", 1, "kamoutack"));
    let (ack, _) = uas.expect_request("ACK", T);
    assert_eq!(ack.call_id(), "kam-out");
    let ulocal = uas.local();
    uas.send_bytes(&callee_bye(&inv, ulocal, "z9hG4bKkamoutbye"));
    let (bye, at) = platform.expect_request("BYE", T);
    platform.reply(&build::response(&bye, 200, "OK", None, &[]), at);
    let done = uas.expect_status(200, T);
    assert_eq!(done.cseq().method, Method::Bye, "{}", logs());
    assert!(wait_metric(&edge, "sipedge_active_calls", &[], 0.0, T), "{}", logs());
}
