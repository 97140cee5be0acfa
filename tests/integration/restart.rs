//! In-dialog routing that survives a restart or another instance (SPEC §9):
//! the BYE of a call set up before a crash, or by another edge holding the
//! same dialog key, is routed on the Record-Route token; an edge with another
//! key answers 481 and sends nothing.

use std::time::Duration;

use crate::control_plane::Sip;
use crate::support::peer::{in_dialog, wire};
use crate::support::{standard, Block, Edge, EdgeSpec};
use sipedge::sip::Method;

const T: Duration = Duration::from_secs(5);
/// The DID of `standard()` (cap 2).
const DID: &str = "+12065550100";

#[test]
fn calls_set_up_before_a_kill9_are_hung_up_both_ways_after_the_restart() {
    let b = Block::new();
    let mut edge = Edge::start(b, standard(b, "udp"));
    let mut sip = Sip::new(b, &edge);
    let (call1, _) = sip.setup(DID);
    let (call2, _) = sip.setup(DID);
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
    // The caller hangs up call 1, the flow engine call 2: each BYE crosses
    // the restarted edge (our Route popped) and its 200 comes back.
    sip.hangup(&call1);
    sip.hangup_from_flow(&call2);
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
    let mut spec = standard(b, "udp");
    spec.edge_extra = format!("dialog_key_file = {:?}\n", key.display().to_string());
    let first = Edge::start(b, spec);
    let mut sip = Sip::new(b, &first);
    let (call, _) = sip.setup(DID);
    let (ok, carrier_addr) = (&call.ok, sip.carrier.local());

    // Another key: 481, and the flow engine sees nothing.
    let stranger = sibling(b, &first, None);
    sip.carrier.send_to(&wire(&in_dialog("BYE", ok, carrier_addr, "UDP", 2, "s1x")), stranger.sip);
    let refused = sip.carrier.expect(T, "481", |m| m.cseq().method == Method::Bye).0;
    assert_eq!(refused.status(), Some(481));
    sip.flow.expect_silence(Duration::from_millis(300));
    assert_eq!(stranger.metric("sipedge_dialog_token_requests_total{result=\"refused\"}"), Some(1.0));

    // The shared key: routed to the flow engine, answered back through it.
    let second = sibling(b, &first, Some(&key));
    sip.carrier.send_to(&wire(&in_dialog("BYE", ok, carrier_addr, "UDP", 2, "s1b")), second.sip);
    let (bye, from) = sip.flow.expect_request("BYE", T);
    assert_eq!(from, second.sip, "the second instance sent it");
    assert_eq!(bye.routes().count(), 0, "its Route, naming the shared address, is popped");
    sip.flow.answer(&bye, 200, from);
    let done = sip.carrier.expect(T, "200 BYE", |m| m.cseq().method == Method::Bye).0;
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
    use crate::sipp::{held_calls, load_numbers, one_carrier, wait_dialogs};
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let nums = load_numbers(40);
    let mut edge = Edge::start(b, one_carrier(b, "udp", &nums));
    // 40 calls at 20/s, each held 6 s: all are up 2 s in, and hang up after the restart.
    let (_sipp, run) = held_calls(b, edge.sip, &nums, 20, 40, 6000);
    assert_eq!(wait_dialogs(&edge, 40), 40);
    edge.restart();
    let r = run.join().unwrap();
    assert_eq!((r.ok, r.failed), (40, 0), "{}\nedge log:\n{}", r.stat, edge.log());
    assert_eq!(edge.metric("sipedge_dialog_token_requests_total{result=\"routed\"}"), Some(40.0));
}

/// The seed only matters to an empty store (issue 17): a start on a
/// populated one neither reads nor checks it, so a broken seed file does not
/// stop it, while an empty store still refuses that file with its field.
#[test]
fn a_populated_store_starts_without_reading_its_seed_file_and_an_empty_one_refuses_a_bad_seed() {
    let b = Block::new();
    let mut edge = Edge::start(b, standard(b, "udp"));
    let seed = edge.dir.path().join("numbers.csv");
    std::fs::write(&seed, "e164,kind,flow,carriers,max_concurrent,cnam\nnot-a-number,did,,,,\n").unwrap();
    edge.restart();
    let mut sip = Sip::new(b, &edge);
    let (call, _) = sip.setup(DID);
    sip.hangup(&call);

    edge.kill9();
    std::fs::remove_dir_all(&edge.data_dir).unwrap();
    let mut child = std::process::Command::new(crate::support::edge::binary())
        .arg("--config")
        .arg(&edge.config_path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let end = std::time::Instant::now() + T;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(status.is_some_and(|s| !s.success()), "an empty store with a bad seed must not start:\n{log}");
    assert!(log.contains("numbers.csv"), "the error names the seed file:\n{log}");
}
