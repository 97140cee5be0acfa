//! SIPVicious (`svmap`, `svwar`) against the edge on loopback while calls
//! flow: no fingerprint in any answer, no extension found, and nothing at all
//! found when unknown sources are dropped.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::{assert_no_fingerprint, T};
use crate::support::peer::{in_dialog, invite};
use crate::support::{standard, Block, Edge, Peer};

/// One scripted call from the carrier to the flow engine: INVITE, 200, ACK, BYE.
fn call(carrier: &mut Peer, flow: &mut Peer, edge: SocketAddr, id: &str) {
    let c = carrier.local();
    carrier.send(&invite(c, "UDP", edge, "+18005550100", id, id));
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 200, from);
    let ok = carrier.expect_status(200, T);
    carrier.send(&in_dialog("ACK", &ok, c, "UDP", 1, &format!("{id}a")));
    flow.expect_request("ACK", T);
    carrier.send(&in_dialog("BYE", &ok, c, "UDP", 2, &format!("{id}b")));
    let (bye, from) = flow.expect_request("BYE", T);
    flow.answer(&bye, 200, from);
    carrier.expect_status(200, T);
}

/// Whether SIPVicious (Debian package `sipvicious`: svmap, svwar) is installed.
fn sipvicious() -> bool {
    let ok = Command::new("svmap").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: sipvicious is not installed (`apt-get install -y sipvicious`); its probes are emulated by \
             unknown_source_rejected_with_403_and_no_fingerprint and unknown_source_drop_sends_nothing"
        );
    }
    ok
}

/// Runs a SIPVicious tool (bounded by `timeout`), returning stdout + stderr.
fn scan(tool: &'static str, args: Vec<String>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let out = Command::new("timeout").arg("60").arg(tool).args(&args).output().expect("run sipvicious");
        format!(
            "$ {tool} {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// svmap (OPTIONS and INVITE) and svwar (REGISTER and INVITE, 300 extensions)
/// from four scanner addresses, with `--debug` so every answer is printed.
fn scanners(b: Block, edge: SocketAddr) -> Vec<std::thread::JoinHandle<String>> {
    let target = edge.ip().to_string();
    let port = edge.port().to_string();
    let a = |h: u8| b.ip(h).to_string();
    vec![
        scan("svmap", vec!["-p".into(), port.clone(), "-b".into(), a(50), "--debug".into(), target.clone()]),
        scan(
            "svmap",
            vec![
                "-p".into(),
                port.clone(),
                "-b".into(),
                a(51),
                "-m".into(),
                "INVITE".into(),
                "--debug".into(),
                target.clone(),
            ],
        ),
        scan(
            "svwar",
            vec![
                "-p".into(),
                port.clone(),
                "-b".into(),
                a(52),
                "-e100-399".into(),
                "-m".into(),
                "REGISTER".into(),
                "--force".into(),
                "--debug".into(),
                target.clone(),
            ],
        ),
        scan(
            "svwar",
            vec![
                "-p".into(),
                port,
                "-b".into(),
                a(53),
                "-e100-399".into(),
                "-m".into(),
                "INVITE".into(),
                "--force".into(),
                "--debug".into(),
                target,
            ],
        ),
    ]
}

/// The SIP answers a SIPVicious tool printed with `--debug` (Python bytes reprs).
fn answers_seen(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.find("b'SIP/2.0 ").map(|i| &l[i + 2..]))
        .map(|l| l.trim_end_matches('\'').replace("\\r\\n", "\n"))
        .collect()
}

/// Extensions svwar reports as found (rows of its result table).
fn extensions_found(out: &str) -> Vec<String> {
    out.lines()
        .filter(|l| {
            l.starts_with("| ")
                && !l.contains("Extension")
                && (l.contains("reqauth") || l.contains("noauth") || l.contains("weird"))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn sipvicious_scans_get_no_fingerprint_while_calls_flow() {
    let _heavy = crate::support::heavy();
    if !sipvicious() {
        return;
    }
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let mut flow = Peer::udp(b.addr(10, 5060), edge.sip);
    let scans = scanners(b, edge.sip);
    std::thread::sleep(Duration::from_millis(200));
    for i in 0..10 {
        call(&mut carrier, &mut flow, edge.sip, &format!("scan-call-{i}"));
    }
    let outputs: Vec<String> = scans.into_iter().map(|h| h.join().unwrap()).collect();
    let all = outputs.join("\n");
    println!("{all}");
    let answers = answers_seen(&all);
    assert!(answers.len() >= 4, "the scanners got the edge's 403s:\n{all}");
    for a in &answers {
        assert!(a.starts_with("SIP/2.0 403 "), "{a}");
        assert_no_fingerprint(a);
    }
    // svmap sees a SIP device (403 is an answer) but learns nothing about it.
    for o in &outputs[..2] {
        assert!(o.contains("| unknown"), "svmap should find an anonymous device:\n{o}");
    }
    for o in &outputs[2..] {
        assert!(extensions_found(o).is_empty(), "svwar found extensions:\n{o}");
    }
    call(&mut carrier, &mut flow, edge.sip, "scan-call-after");
}

#[test]
fn sipvicious_finds_nothing_when_unknown_sources_are_dropped() {
    let _heavy = crate::support::heavy();
    if !sipvicious() {
        return;
    }
    let b = Block::new();
    let mut spec = standard(b, "udp");
    spec.edge_extra = "unknown_source = \"drop\"".into();
    let edge = Edge::start(b, spec);
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let mut flow = Peer::udp(b.addr(10, 5060), edge.sip);
    let scans = scanners(b, edge.sip);
    for i in 0..5 {
        call(&mut carrier, &mut flow, edge.sip, &format!("drop-call-{i}"));
    }
    for o in scans.into_iter().map(|h| h.join().unwrap()) {
        println!("{o}");
        assert!(o.contains("found nothing") && extensions_found(&o).is_empty(), "a scanner found something:\n{o}");
        assert!(answers_seen(&o).is_empty(), "the edge answered a scanner:\n{o}");
    }
}
