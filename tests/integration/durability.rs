//! Every acknowledged event survives `kill -9`; no refused one appears; the
//! seed file is not imported again into a store that has numbers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::control_plane::{api, ok, state, Sip};
use crate::support::{standard, Block, Edge};

/// A small deterministic generator (no rand dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// What the test believes each number is: `(state, flow)`.
type Model = BTreeMap<String, (String, Option<String>)>;

#[test]
fn acknowledged_events_survive_kill9_and_refused_ones_never_appear() {
    let b = Block::new();
    let mut edge = Edge::start(b, standard(b, "udp"));
    let pool: Vec<String> = (0..40).map(|i| format!("+120655520{i:02}")).collect();
    let mut model = Model::new();
    let mut rng = Lcg(7);
    let (mut acked, mut refused) = (0, 0);
    for i in 0..300 {
        let n = &pool[rng.next(pool.len() as u64) as usize];
        let (method, path, body) = match rng.next(4) {
            0 => ("POST", "claim", Some(json!({"flow": format!("f{i}"), "carriers": ["carrier-a"]}))),
            1 => ("POST", "release", None),
            2 => ("POST", "restore", None),
            _ => ("PUT", "flow", Some(json!({"flow": format!("g{i}")}))),
        };
        let (status, v) = api(&edge, method, &format!("/v1/numbers/{n}/{path}"), body);
        match status {
            200 => {
                acked += 1;
                let flow = v["flow"].as_str().map(str::to_owned);
                model.insert(n.clone(), (v["state"].as_str().unwrap().to_owned(), flow));
            }
            404 | 409 => refused += 1,
            other => panic!("{method} {n}/{path} → {other} {v}"),
        }
    }
    assert!(acked > 50 && refused > 50, "the sequence exercises both: {acked} acknowledged, {refused} refused");
    // Refused outright: these numbers must never exist.
    let never: Vec<String> = (0..20).map(|i| format!("+120655530{i:02}")).collect();
    for n in &never {
        let (status, _) = api(
            &edge,
            "POST",
            &format!("/v1/numbers/{n}/claim"),
            Some(json!({"flow": "f", "carriers": ["carrier-a", "carrier-b"]})),
        );
        assert_eq!(status, 400);
    }
    // Port orders in every state.
    let pin = ok(
        &edge,
        "POST",
        "/v1/ports",
        Some(
            json!({"direction": "in", "numbers": ["+18885552001", "+18885552002"], "carriers": ["carrier-a", "carrier-b"], "flow": "pin"}),
        ),
    );
    ok(&edge, "POST", &format!("/v1/ports/{}/complete", pin["id"]), None);
    ok(
        &edge,
        "POST",
        "/v1/ports",
        Some(json!({"direction": "in", "numbers": ["+18885552003"], "carriers": ["carrier-b"], "flow": "later"})),
    );
    ok(&edge, "POST", "/v1/ports", Some(json!({"direction": "out", "numbers": ["+12065550100"]})));
    let pout = ok(&edge, "POST", "/v1/ports", Some(json!({"direction": "out", "numbers": ["+18005550100"]})));
    ok(&edge, "POST", &format!("/v1/ports/{}/complete", pout["id"]), None);

    let numbers_before = ok(&edge, "GET", "/v1/numbers?limit=1000", None);
    let ports_before = ok(&edge, "GET", "/v1/ports", None);

    // Crash, change the seed (a new number, one removed), start again.
    edge.kill9();
    let seed = edge.dir().join("numbers.csv");
    std::fs::write(&seed, "e164,kind,flow,carriers,max_concurrent,cnam\n+19995550000,did,new,carrier-a,,\n+12065550100,did,flow-did,carrier-a,2,\n").unwrap();
    let log_len = edge.log().len();
    edge.restart();

    assert_eq!(
        ok(&edge, "GET", "/v1/numbers?limit=1000", None),
        numbers_before,
        "the inventory is exactly what was acknowledged"
    );
    assert_eq!(ok(&edge, "GET", "/v1/ports", None), ports_before);
    for (n, (st, flow)) in &model {
        let v = ok(&edge, "GET", &format!("/v1/numbers/{n}"), None);
        assert_eq!((v["state"].as_str(), v["flow"].as_str()), (Some(st.as_str()), flow.as_deref()), "{n}");
    }
    for n in pool.iter().filter(|n| !model.contains_key(*n)).chain(&never) {
        assert_eq!(state(&edge, n), "unknown_number", "{n} was never acknowledged");
    }
    assert_eq!(state(&edge, "+19995550000"), "unknown_number", "the seed is not imported into a non-empty store");
    assert_eq!(state(&edge, "+12065550101"), "active", "a number gone from the seed stays");
    assert_eq!(state(&edge, "+18885552003"), "port_in_pending");
    let after = edge.log().get(log_len..).unwrap_or_default().to_owned();
    assert!(after.contains("sipedge ready") && !after.contains("imported the number seed"), "{after}");

    // And the restarted edge routes by it.
    let mut sip = Sip::new(b, &edge);
    assert_eq!(sip.call("+18885552001"), "pin");
    sip.refused("+18005550100", 404);
    if let Some((n, (st, Some(flow)))) = model.iter().find(|(_, (s, f))| s == "active" && f.is_some()) {
        assert_eq!(st, "active");
        assert_eq!(&sip.call(n), flow);
    }
}

#[test]
fn kill9_in_the_middle_of_a_stream_of_claims_loses_nothing_acknowledged() {
    let b = Block::new();
    let mut edge = Edge::start(b, standard(b, "udp"));
    let admin = edge.admin;
    let writer = {
        std::thread::spawn(move || {
            let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
            let mut acked = Vec::new();
            for i in 0..100_000u32 {
                let n = format!("+1206{:07}", 5_000_000 + i);
                let url = format!("http://{admin}/v1/numbers/{n}/claim");
                match agent.post(&url).send_json(json!({"flow": format!("f{i}"), "carriers": ["carrier-a"]})) {
                    Ok(_) => acked.push(n),
                    // The edge died under this request: it may or may not have committed.
                    Err(_) => return (acked, Some(n)),
                }
            }
            (acked, None)
        })
    };
    // Let a few hundred claims through, then crash mid-stream.
    let t0 = std::time::Instant::now();
    while ok(&edge, "GET", "/v1/numbers?limit=1", None)["total"].as_u64().unwrap_or(0) < 200 {
        assert!(t0.elapsed() < Duration::from_secs(60), "claims too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    edge.kill9();
    let (acked, in_flight) = writer.join().unwrap();
    assert!(in_flight.is_some(), "the crash happened in the middle of the stream");
    edge.restart();
    let total = ok(&edge, "GET", "/v1/numbers?limit=1", None)["total"].as_u64().unwrap() as usize;
    let seeded = 3;
    assert!(
        total == seeded + acked.len() || total == seeded + acked.len() + 1,
        "{total} numbers for {} acknowledged",
        acked.len()
    );
    for n in &acked {
        assert_eq!(state(&edge, n), "active", "{n} was acknowledged");
    }
    println!("kill -9 after {} acknowledged claims; all present after restart", acked.len());
}
