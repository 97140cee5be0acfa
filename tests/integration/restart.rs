//! In-dialog routing that survives a restart or another instance (SPEC §9):
//! the BYE of a call set up before a crash, or by another edge holding the
//! same dialog key, is routed on the Record-Route token; an edge with another
//! key answers 481 and sends nothing.

use std::time::Duration;

use crate::support::peer::{in_dialog, invite, wire};
use crate::support::{standard, Block, Edge, EdgeSpec, Peer};
use sipedge::sip::{HeaderName, Method, Msg};

const T: Duration = Duration::from_secs(5);

/// Carrier → edge → flow engine, answered and ACKed: (the INVITE the flow
/// engine got, the 200 the carrier got).
fn call_up(carrier: &mut Peer, flow: &mut Peer, edge: &Edge, call_id: &str, tag: &str) -> (Msg, Msg) {
    carrier.send(&invite(carrier.local(), "UDP", edge.sip, "+12065550100", call_id, tag));
    let (fwd, from) = flow.expect_request("INVITE", T);
    flow.answer(&fwd, 200, from);
    let ok = carrier.expect(T, "200 INVITE", |m| m.status() == Some(200) && m.call_id() == call_id).0;
    carrier.send(&in_dialog("ACK", &ok, carrier.local(), "UDP", 1, &format!("{tag}a")));
    flow.expect_request("ACK", T);
    (fwd, ok)
}

/// A BYE from the flow engine (the callee) along the INVITE's Record-Route.
fn callee_bye(flow: &Peer, fwd: &Msg, ok: &Msg, branch: &str) -> String {
    let routes: String = fwd.record_routes().map(|r| format!("Route: <{r}>\n")).collect();
    format!(
        "BYE sip:caller@{} SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bK{branch}\n{routes}From: {}\nTo: {}\nCall-ID: {}\nCSeq: 1 BYE\nMax-Forwards: 70\n\n",
        fwd.header(HeaderName::From).and_then(|f| f.split('@').nth(1)).and_then(|h| h.split('>').next()).unwrap(),
        flow.local(),
        ok.header(HeaderName::To).unwrap(),
        ok.header(HeaderName::From).unwrap(),
        ok.call_id()
    )
}

#[test]
fn calls_set_up_before_a_kill9_are_hung_up_both_ways_after_the_restart() {
    let b = Block::new();
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let mut edge = Edge::start(b, standard(b, "udp"));
    let mut carrier = Peer::udp(b.addr(2, 5060), edge.sip);
    let (_, ok1) = call_up(&mut carrier, &mut flow, &edge, "restart-1", "r1");
    let (fwd2, ok2) = call_up(&mut carrier, &mut flow, &edge, "restart-2", "r2");
    let key = edge.data_dir.join("dialog.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the made key is private");
    }
    let key_before = std::fs::read(&key).unwrap();

    edge.restart();
    assert_eq!(std::fs::read(&key).unwrap(), key_before, "a restart keeps the key");

    // The caller hangs up call 1.
    carrier.send(&in_dialog("BYE", &ok1, carrier.local(), "UDP", 2, "r1b"));
    let (bye, from) = flow.expect_request("BYE", T);
    assert_eq!(bye.call_id(), "restart-1");
    assert_eq!(bye.routes().count(), 0, "our Route is popped");
    flow.answer(&bye, 200, from);
    let done = carrier.expect(T, "200 BYE", |m| m.status() == Some(200) && m.cseq().method == Method::Bye).0;
    assert_eq!(done.call_id(), "restart-1");

    // The flow engine hangs up call 2.
    let text = callee_bye(&flow, &fwd2, &ok2, "r2b");
    flow.send(&text);
    let (bye, from) = carrier.expect_request("BYE", T);
    assert_eq!(bye.call_id(), "restart-2");
    carrier.answer(&bye, 200, from);
    let done = flow.expect(T, "200 BYE", |m| m.status() == Some(200) && m.cseq().method == Method::Bye).0;
    assert_eq!(done.call_id(), "restart-2");
    assert_eq!(edge.metric("sipedge_dialog_token_requests_total{result=\"routed\"}"), Some(2.0));
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0), "token-routed calls hold no slot");
}

/// Two edges behind one advertised address (a shared VIP in production):
/// the second listens on its own block but routes the first one's dialogs.
fn sibling(b: Block, first: &Edge, key_file: Option<&std::path::Path>) -> Edge {
    let b2 = Block::new();
    let mut spec: EdgeSpec = standard(b, "udp");
    spec.edge_extra = format!("advertise = \"{}\"\n", first.sip);
    if let Some(k) = key_file {
        spec.edge_extra.push_str(&format!("dialog_key_file = {:?}\n", k.display().to_string()));
    }
    Edge::start(b2, spec)
}

#[test]
fn an_instance_sharing_the_key_file_routes_another_ones_dialog_and_one_without_it_refuses() {
    let b = Block::new();
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("shared.key");
    std::fs::write(&key, b"0123456789abcdef0123456789abcdef-shared").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let mut spec = standard(b, "udp");
    spec.edge_extra = format!("dialog_key_file = {:?}\n", key.display().to_string());
    let first = Edge::start(b, spec);
    let mut carrier = Peer::udp(b.addr(2, 5060), first.sip);
    let (_, ok) = call_up(&mut carrier, &mut flow, &first, "sibling-1", "s1");

    // Another key: 481, and the flow engine sees nothing.
    let stranger = sibling(b, &first, None);
    carrier.send_to(&wire(&in_dialog("BYE", &ok, carrier.local(), "UDP", 2, "s1x")), stranger.sip);
    let refused = carrier.expect(T, "481", |m| m.cseq().method == Method::Bye).0;
    assert_eq!(refused.status(), Some(481));
    flow.expect_silence(Duration::from_millis(300));
    assert_eq!(stranger.metric("sipedge_dialog_token_requests_total{result=\"refused\"}"), Some(1.0));

    // The shared key: routed to the flow engine, answered back through it.
    let second = sibling(b, &first, Some(&key));
    carrier.send_to(&wire(&in_dialog("BYE", &ok, carrier.local(), "UDP", 2, "s1b")), second.sip);
    let (bye, from) = flow.expect_request("BYE", T);
    assert_eq!(from, second.sip, "the second instance sent it");
    flow.answer(&bye, 200, from);
    let done = carrier.expect(T, "200 BYE", |m| m.cseq().method == Method::Bye).0;
    assert_eq!(done.status(), Some(200));
}

#[test]
fn check_refuses_a_world_readable_or_short_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let cfg = dir.path().join("sipedge.toml");
    std::fs::write(
        &cfg,
        format!(
            "[edge]\ndata_dir = {:?}\ndialog_key_file = {:?}\n[[listen]]\ntransport = \"udp\"\naddr = \"127.0.0.1:0\"\n",
            dir.path().join("data").display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let check = || {
        let out = std::process::Command::new(crate::support::edge::binary())
            .args(["check", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(&key, [7u8; 32]).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, text) = check();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("edge.dialog_key_file") && text.contains("other users"), "{text}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(check().0, Some(0), "{}", check().1);
    std::fs::write(&key, [7u8; 16]).unwrap();
    let (code, text) = check();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("edge.dialog_key_file"), "{text}");
}

#[test]
fn sipp_calls_held_across_a_kill9_restart_all_end_with_bye_200() {
    use crate::sipp::{load_numbers, one_carrier, uac, uas};
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let nums = load_numbers(40);
    let mut edge = Edge::start(b, one_carrier(b, "udp", &nums));
    let dir = tempfile::tempdir().unwrap();
    let _uas = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let dialed: Vec<String> = nums.iter().map(|n| n.trim_start_matches('+').to_owned()).collect();
    let (sip, path) = (edge.sip, dir.path().to_owned());
    // 40 calls at 20/s, each held 6 s: all are up 2 s in, and hang up after the restart.
    let run = std::thread::spawn(move || {
        let d: Vec<&str> = dialed.iter().map(String::as_str).collect();
        uac(b.ip(2), sip, "uac_rr_hold.xml", "u1", 20, 40, &d, &["-d", "6000"], &path)
    });
    let end = std::time::Instant::now() + Duration::from_secs(15);
    while edge.metric("sipedge_active_dialogs") != Some(40.0) {
        assert!(std::time::Instant::now() < end, "40 calls never up at once:\n{}", edge.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    edge.restart();
    let r = run.join().unwrap();
    assert_eq!((r.ok, r.failed), (40, 0), "{}\nedge log:\n{}", r.stat, edge.log());
    assert_eq!(edge.metric("sipedge_dialog_token_requests_total{result=\"routed\"}"), Some(40.0));
}
