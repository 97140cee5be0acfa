//! SIPp end to end through an early dialog (RFC 3262): INVITE with
//! Require: 100rel, 183 with RSeq, PRACK and its 200 through the edge, then
//! 200, ACK, BYE. Before early dialogs the PRACK got 481 and every call failed.

use std::time::Duration;

use crate::sipp::{load_numbers, one_carrier, uac, uas};
use crate::support::{Block, Edge};

#[test]
fn sipp_prack_calls_through_an_early_dialog() {
    let b = Block::new();
    let nums = load_numbers(20);
    let spec = one_carrier(b, "udp", &nums);
    let edge = Edge::start(b, spec);
    let dir = tempfile::tempdir().unwrap();
    let _uas = uas(b.ip(10), "uas_prack.xml", "u1", dir.path());
    let dialed: Vec<&str> = nums.iter().map(|n| n.trim_start_matches('+')).collect();
    let r = uac(b.ip(2), edge.sip, "uac_prack.xml", "u1", 10, 20, &dialed, &[], dir.path());
    assert_eq!((r.ok, r.failed), (20, 0), "sipp with PRACK:\n{}\nedge log:\n{}", r.stat, edge.log());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0), "every slot released");
    assert_eq!(edge.metric("sipedge_active_dialogs"), Some(0.0), "every dialog ended");
    let answered = edge.metric("sipedge_calls_total{direction=\"inbound\",outcome=\"answered\"}");
    assert_eq!(answered, Some(20.0), "every call answered");
}
