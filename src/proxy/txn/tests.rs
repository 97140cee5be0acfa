//! The §17 machines driven by hand: no sockets, no clock.

use super::*;
use crate::proxy::timer::{Timer, TimerValues};
use bytes::Bytes;
use std::time::Duration;

fn tv() -> TimerValues {
    TimerValues::default()
}

fn sends(out: &Actions) -> Vec<Bytes> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(b.clone()),
            Action::Arm(..) => None,
        })
        .collect()
}

fn arms(out: &Actions) -> Vec<(Timer, Duration)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Arm(t, d) => Some((*t, *d)),
            Action::Send(_) => None,
        })
        .collect()
}

#[test]
fn client_invite_udp_retransmits_with_doubling_then_times_out() {
    let mut out = Actions::new();
    let mut c = ClientInvite::start(Bytes::from_static(b"INVITE"), false, &tv(), &mut out);
    assert_eq!(sends(&out).len(), 1);
    assert_eq!(arms(&out), vec![(Timer::A, tv().t1), (Timer::B, tv().t1 * 64)]);
    let mut expect = tv().t1;
    for _ in 0..4 {
        out.clear();
        assert_eq!(c.on_timer(Timer::A, &mut out), TimerOutcome::Nothing);
        expect *= 2;
        assert_eq!(sends(&out), vec![Bytes::from_static(b"INVITE")]);
        assert_eq!(arms(&out), vec![(Timer::A, expect)]);
    }
    out.clear();
    assert_eq!(c.on_timer(Timer::B, &mut out), TimerOutcome::Timeout);
    assert_eq!(c.state(), ClientState::Terminated);
}

#[test]
fn client_invite_tcp_arms_no_retransmission() {
    let mut out = Actions::new();
    let _c = ClientInvite::start(Bytes::from_static(b"INVITE"), true, &tv(), &mut out);
    assert_eq!(arms(&out), vec![(Timer::B, tv().t1 * 64)]);
}

#[test]
fn client_invite_provisional_stops_retransmission() {
    let mut out = Actions::new();
    let mut c = ClientInvite::start(Bytes::from_static(b"INVITE"), false, &tv(), &mut out);
    out.clear();
    assert_eq!(c.on_response(180, || unreachable!(), &tv(), &mut out), Delivery::Deliver);
    assert_eq!(c.state(), ClientState::Proceeding);
    assert_eq!(c.on_timer(Timer::A, &mut out), TimerOutcome::Nothing);
    assert_eq!(c.on_timer(Timer::B, &mut out), TimerOutcome::Nothing);
    assert!(out.is_empty());
}

#[test]
fn client_invite_acks_every_copy_of_a_non_2xx_final() {
    let mut out = Actions::new();
    let mut c = ClientInvite::start(Bytes::from_static(b"INVITE"), false, &tv(), &mut out);
    out.clear();
    let d = c.on_response(486, || Bytes::from_static(b"ACK"), &tv(), &mut out);
    assert_eq!(d, Delivery::Deliver);
    assert_eq!(sends(&out), vec![Bytes::from_static(b"ACK")]);
    assert_eq!(arms(&out), vec![(Timer::D, Duration::from_secs(32))]);
    out.clear();
    let d = c.on_response(486, || unreachable!(), &tv(), &mut out);
    assert_eq!(d, Delivery::Absorb);
    assert_eq!(sends(&out), vec![Bytes::from_static(b"ACK")]);
    assert_eq!(c.on_timer(Timer::D, &mut out), TimerOutcome::Terminated);
}

#[test]
fn client_invite_relays_2xx_retransmissions_in_accepted() {
    let mut out = Actions::new();
    let mut c = ClientInvite::start(Bytes::from_static(b"INVITE"), false, &tv(), &mut out);
    assert_eq!(c.on_response(200, || unreachable!(), &tv(), &mut out), Delivery::Deliver);
    assert_eq!(c.state(), ClientState::Accepted);
    assert_eq!(c.on_response(200, || unreachable!(), &tv(), &mut out), Delivery::Deliver);
    assert_eq!(c.on_response(180, || unreachable!(), &tv(), &mut out), Delivery::Absorb);
    assert_eq!(c.on_timer(Timer::M, &mut out), TimerOutcome::Terminated);
}

#[test]
fn client_invite_abandoned_still_acks_a_late_final() {
    let mut out = Actions::new();
    let mut c = ClientInvite::start(Bytes::from_static(b"INVITE"), false, &tv(), &mut out);
    c.abandon();
    out.clear();
    assert_eq!(c.on_timer(Timer::A, &mut out), TimerOutcome::Nothing);
    assert!(out.is_empty(), "no retransmission after abandon");
    c.on_response(503, || Bytes::from_static(b"ACK"), &tv(), &mut out);
    assert_eq!(sends(&out), vec![Bytes::from_static(b"ACK")]);
}

#[test]
fn server_invite_non_2xx_retransmits_until_ack() {
    let t = tv();
    let mut out = Actions::new();
    let mut s = ServerInvite::new(false);
    s.respond(100, Bytes::from_static(b"100"), &t, &mut out);
    out.clear();
    s.on_retransmission(&mut out);
    assert_eq!(sends(&out), vec![Bytes::from_static(b"100")], "retransmitted INVITE gets the 100 again");
    out.clear();
    s.respond(404, Bytes::from_static(b"404"), &t, &mut out);
    assert_eq!(s.state(), ServerState::Completed);
    assert_eq!(arms(&out), vec![(Timer::G, t.t1), (Timer::H, t.t1 * 64)]);
    let mut expect = t.t1;
    for _ in 0..5 {
        out.clear();
        s.on_timer(Timer::G, &t, &mut out);
        expect = (expect * 2).min(t.t2);
        assert_eq!(sends(&out), vec![Bytes::from_static(b"404")]);
        assert_eq!(arms(&out), vec![(Timer::G, expect)]);
    }
    out.clear();
    assert!(s.on_ack(&t, &mut out));
    assert_eq!(arms(&out), vec![(Timer::I, t.t4)]);
    out.clear();
    assert_eq!(s.on_timer(Timer::G, &t, &mut out), TimerOutcome::Nothing);
    assert!(out.is_empty(), "no retransmission once confirmed");
    assert_eq!(s.on_timer(Timer::I, &t, &mut out), TimerOutcome::Terminated);
}

#[test]
fn server_invite_gives_up_without_ack() {
    let t = tv();
    let mut out = Actions::new();
    let mut s = ServerInvite::new(false);
    s.respond(503, Bytes::from_static(b"503"), &t, &mut out);
    assert_eq!(s.on_timer(Timer::H, &t, &mut out), TimerOutcome::NoAck);
    assert_eq!(s.state(), ServerState::Terminated);
}

#[test]
fn server_invite_accepted_absorbs_invite_and_relays_2xx() {
    let t = tv();
    let mut out = Actions::new();
    let mut s = ServerInvite::new(false);
    s.respond(100, Bytes::from_static(b"100"), &t, &mut out);
    s.respond(200, Bytes::from_static(b"200"), &t, &mut out);
    assert_eq!(s.state(), ServerState::Accepted);
    out.clear();
    s.on_retransmission(&mut out);
    assert!(out.is_empty(), "INVITE retransmission absorbed after 2xx");
    s.respond(180, Bytes::from_static(b"180"), &t, &mut out);
    assert!(out.is_empty(), "a 180 after the 200 is never relayed");
    s.respond(200, Bytes::from_static(b"200"), &t, &mut out);
    assert_eq!(sends(&out), vec![Bytes::from_static(b"200")]);
    assert_eq!(s.on_timer(Timer::L, &t, &mut out), TimerOutcome::Terminated);
}

#[test]
fn server_non_invite_absorbs_retransmissions_with_the_last_answer() {
    let t = tv();
    let mut out = Actions::new();
    let mut s = ServerNonInvite::new(false);
    s.on_retransmission(&mut out);
    assert!(out.is_empty());
    s.respond(200, Bytes::from_static(b"200"), &t, &mut out);
    assert_eq!(arms(&out), vec![(Timer::J, t.t1 * 64)]);
    out.clear();
    s.on_retransmission(&mut out);
    assert_eq!(sends(&out), vec![Bytes::from_static(b"200")]);
    assert_eq!(s.on_timer(Timer::J), TimerOutcome::Terminated);
}

#[test]
fn server_non_invite_on_tcp_ends_at_the_final() {
    let t = tv();
    let mut out = Actions::new();
    let mut s = ServerNonInvite::new(true);
    assert_eq!(s.respond(200, Bytes::from_static(b"200"), &t, &mut out), TimerOutcome::Terminated);
}

#[test]
fn client_non_invite_caps_retransmission_at_t2_and_times_out() {
    let t = tv();
    let mut out = Actions::new();
    let mut c = ClientNonInvite::start(Bytes::from_static(b"BYE"), false, &t, &mut out);
    let mut expect = t.t1;
    for _ in 0..6 {
        out.clear();
        c.on_timer(Timer::E, &t, &mut out);
        expect = (expect * 2).min(t.t2);
        assert_eq!(arms(&out), vec![(Timer::E, expect)]);
    }
    assert_eq!(expect, t.t2);
    assert_eq!(c.on_timer(Timer::F, &t, &mut out), TimerOutcome::Timeout);
}

#[test]
fn client_non_invite_final_then_k() {
    let t = tv();
    let mut out = Actions::new();
    let mut c = ClientNonInvite::start(Bytes::from_static(b"BYE"), false, &t, &mut out);
    out.clear();
    assert_eq!(c.on_response(200, &t, &mut out), (Delivery::Deliver, TimerOutcome::Nothing));
    assert_eq!(arms(&out), vec![(Timer::K, t.t4)]);
    assert_eq!(c.on_response(200, &t, &mut out).0, Delivery::Absorb);
    assert_eq!(c.on_timer(Timer::K, &t, &mut out), TimerOutcome::Terminated);
}
