//! Reload through `POST /v1/reload` and SIGHUP: a bad file is refused with
//! every error listed and routing stays as it was; a good one changes where
//! NEW calls go, while a call set up before still ends at its old hop.

use std::time::Duration;

use crate::control_plane::{api, Sip};
use crate::support::{standard, Block, Edge, Peer};

/// Rewrites the edge's config from `text`.
fn write(edge: &Edge, text: &str) {
    std::fs::write(&edge.config_path, text).unwrap();
}

#[test]
fn bad_reload_is_refused_good_reload_changes_new_calls_only() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let orig = std::fs::read_to_string(&edge.config_path).unwrap();
    let mut sip = Sip::new(b, &edge);

    // A call up through the az1 flow engine (.10) before anything changes.
    let (before, flow) = sip.setup("+18005550100");
    assert_eq!(flow, "flow-tf");
    let (before2, _) = sip.setup("+12065550100");

    // Two validation errors: both listed, nothing changes.
    let bad = orig
        .replace("failover_ms = 500", "failover_ms = 0")
        .replace("options_interval_ms = 60000", "options_interval_ms = 60000\ndown_after = 0");
    assert_ne!(bad, orig);
    write(&edge, &bad);
    let (status, v) = api(&edge, "POST", "/v1/reload", None);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_config")), "{v}");
    let errors: Vec<&str> = v["errors"].as_array().unwrap().iter().filter_map(|e| e.as_str()).collect();
    assert!(errors.iter().any(|e| e.contains("timers.failover_ms")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("health.down_after")), "{errors:?}");
    assert!(v["message"].as_str().unwrap().contains("2 error(s)"), "{v}");
    assert_eq!(sip.call("+12065550100"), "flow-did", "still routed as before");

    // A valid file whose token file cannot be read is refused too.
    let no_token = orig.replacen("[admin]\n", "[admin]\ntoken_file = \"/nonexistent/sipedge.token\"\n", 1);
    write(&edge, &no_token);
    let (status, v) = api(&edge, "POST", "/v1/reload", None);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_config")), "{v}");
    assert!(v["errors"][0].as_str().unwrap().contains("admin.token_file"), "{v}");
    assert_eq!(api(&edge, "GET", "/v1/numbers/+18005550100", None).0, 200, "no token was switched on");

    // Good: the az1 flow engine moves from .10 to .12.
    let f1 = b.addr(10, 5060).to_string();
    let f3 = b.addr(12, 5060).to_string();
    let moved = orig.replace(&format!("addr = \"{f1}\""), &format!("addr = \"{f3}\""));
    assert_ne!(moved, orig);
    write(&edge, &moved);
    let mut new_flow = Peer::udp(b.addr(12, 5060), edge.sip);
    let (status, v) = api(&edge, "POST", "/v1/reload", None);
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["reloaded"].as_bool(), v["flow_engines"].as_u64()), (Some(true), Some(2)), "{v}");
    std::mem::swap(&mut sip.flow, &mut new_flow);
    assert_eq!(sip.call("+18005550100"), "flow-tf", "a new call goes to the moved flow engine");
    // The calls set up before end where they began: the carrier's BYE
    // reaches .10 and its 200 comes back; .10's own BYE is still accepted.
    std::mem::swap(&mut sip.flow, &mut new_flow);
    sip.hangup(&before);
    sip.hangup_from_flow(&before2);
    std::mem::swap(&mut sip.flow, &mut new_flow);
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0));

    // SIGHUP takes the same path: drain the az1 endpoint, new calls go to az2 (.11).
    let drained = moved.replace(
        &format!("addr = \"{f3}\"\ntransport = \"udp\"\n"),
        &format!("addr = \"{f3}\"\ntransport = \"udp\"\ndrain = true\n"),
    );
    assert_ne!(drained, moved);
    let (up, _) = sip.setup("+12065550100");
    write(&edge, &drained);
    edge.signal("HUP");
    assert!(edge.wait_log("SIGHUP: config reloaded", Duration::from_secs(5)), "{}", edge.log());
    let mut az2 = Peer::udp(b.addr(11, 5060), edge.sip);
    std::mem::swap(&mut sip.flow, &mut az2);
    assert_eq!(sip.call("+18005550100"), "flow-tf", "a new call avoids the drained endpoint");
    // The call on the drained endpoint goes on and ends there.
    std::mem::swap(&mut sip.flow, &mut az2);
    sip.hangup(&up);
    std::mem::swap(&mut sip.flow, &mut az2);

    // A bad file on SIGHUP is refused and logged; routing stays.
    write(&edge, &bad);
    edge.signal("HUP");
    assert!(edge.wait_log("SIGHUP: config refused", Duration::from_secs(5)), "{}", edge.log());
    assert!(edge.log().contains("timers.failover_ms"));
    assert_eq!(sip.call("+18005550100"), "flow-tf", "still the az2 endpoint");
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0));
}
