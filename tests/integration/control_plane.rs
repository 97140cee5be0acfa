//! The control plane against the real binary, every lifecycle path checked
//! with real SIP calls: a scripted carrier (.2) calls the edge, a scripted
//! flow engine (.10) answers, and the `X-Flow-Id` it sees (or the refusal
//! the carrier gets) is what the API's change must have caused.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::edge::{binary, http};
use crate::support::peer::{in_dialog, invite};
use crate::support::{standard, Block, Edge, Peer};
use sipedge::sip::{HeaderName, Method, Msg};

const T: Duration = Duration::from_secs(5);

/// A control-plane call; the body parsed as JSON (`Null` if it is not JSON).
pub fn api(edge: &Edge, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    api_token(edge.admin, method, path, body, None)
}

/// Same, with a bearer token.
pub fn api_token(
    admin: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    let (status, out) = http(admin, method, path, text.as_deref(), token);
    (status, serde_json::from_str(&out).unwrap_or(Value::Null))
}

/// A control-plane call that must succeed (2xx); returns the body.
pub fn ok(edge: &Edge, method: &str, path: &str, body: Option<Value>) -> Value {
    let (status, v) = api(edge, method, path, body);
    assert!((200..300).contains(&status), "{method} {path} → {status} {v}");
    v
}

/// The `state` of a number as the control plane shows it, or the error code.
pub fn state(edge: &Edge, number: &str) -> String {
    let (_, v) = api(edge, "GET", &format!("/v1/numbers/{number}"), None);
    v.get("state").or_else(|| v.get("error")).and_then(Value::as_str).unwrap_or("?").to_owned()
}

/// A call that is up: the 200 the carrier got, and its Call-ID.
pub struct Call {
    /// The 200 the carrier got.
    pub ok: Msg,
    /// The INVITE the flow engine got.
    pub fwd: Msg,
    /// Its Call-ID.
    pub id: String,
}

/// A scripted carrier (.2) and flow engine (.10) placing real calls.
pub struct Sip {
    /// The carrier side.
    pub carrier: Peer,
    /// The flow-engine side.
    pub flow: Peer,
    edge: SocketAddr,
    n: u32,
}

impl Sip {
    /// Peers of the `standard` topology on `b`.
    pub fn new(b: Block, edge: &Edge) -> Sip {
        Sip {
            carrier: Peer::udp(b.addr(2, 5060), edge.sip),
            flow: Peer::udp(b.addr(10, 5060), edge.sip),
            edge: edge.sip,
            n: 0,
        }
    }

    fn next_id(&mut self) -> String {
        self.n += 1;
        format!("cp{}-{}", self.edge.ip(), self.n)
    }

    /// A whole call (INVITE, 200, ACK, BYE) to `number`; returns the
    /// `X-Flow-Id` the flow engine saw. Panics if the call is not routed.
    pub fn call(&mut self, number: &str) -> String {
        let (call, flow_id) = self.setup(number);
        self.hangup(&call);
        flow_id
    }

    /// INVITE, 200, ACK: a call left up; returns it and its `X-Flow-Id`.
    pub fn setup(&mut self, number: &str) -> (Call, String) {
        let id = self.next_id();
        let local = self.carrier.local();
        self.carrier.send(&invite(local, "UDP", self.edge, number, &id, &id));
        let (fwd, from) = self.flow.expect_request("INVITE", T);
        assert_eq!(fwd.call_id(), id, "the INVITE for {number}");
        let flow_id = fwd.header_by_name("X-Flow-Id").unwrap_or("").to_owned();
        self.flow.answer(&fwd, 200, from);
        let (ok, _) = self.carrier.expect(T, "200 INVITE", |m| m.status() == Some(200) && m.call_id() == id);
        self.carrier.send(&in_dialog("ACK", &ok, local, "UDP", 1, &format!("{id}a")));
        self.flow.expect_request("ACK", T);
        (Call { ok, fwd, id }, flow_id)
    }

    /// The flow engine hangs up `call`: its BYE must reach the carrier.
    pub fn hangup_from_flow(&mut self, call: &Call) {
        let inv = &call.fwd;
        let routes: String = inv.record_routes().map(|r| format!("Route: <{r}>\n")).collect();
        let bye = format!(
            "BYE {uri} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{id}fb\n{routes}From: {from};tag=uas1\nTo: {to}\nCall-ID: {id}\nCSeq: 1 BYE\nMax-Forwards: 70\n\n",
            uri = inv.contact_uri().unwrap(),
            local = self.flow.local(),
            id = call.id,
            from = inv.header(HeaderName::To).unwrap(),
            to = inv.header(HeaderName::From).unwrap(),
        );
        self.flow.send(&bye);
        let (got, from) = self.carrier.expect_request("BYE", T);
        assert_eq!(got.call_id(), call.id);
        assert_eq!(got.routes().count(), 0, "the edge pops its own Route");
        self.carrier.answer(&got, 200, from);
        let id = call.id.clone();
        self.flow.expect(T, "200 BYE", move |m| {
            m.status() == Some(200) && m.cseq().method == Method::Bye && m.call_id() == id
        });
    }

    /// The carrier hangs up `call`; `self.flow` must receive the BYE.
    pub fn hangup(&mut self, call: &Call) {
        let local = self.carrier.local();
        self.carrier.send(&in_dialog("BYE", &call.ok, local, "UDP", 2, &format!("{}b", call.id)));
        let (bye, from) = self.flow.expect_request("BYE", T);
        assert_eq!(bye.call_id(), call.id);
        assert_eq!(bye.routes().count(), 0, "the edge pops its own Route");
        self.flow.answer(&bye, 200, from);
        let id = call.id.clone();
        self.carrier.expect(T, "200 BYE", move |m| {
            m.status() == Some(200) && m.cseq().method == Method::Bye && m.call_id() == id
        });
    }

    /// A call to `number` that the edge must refuse with `code`.
    pub fn refused(&mut self, number: &str, code: u16) {
        let id = self.next_id();
        let local = self.carrier.local();
        let inv = invite(local, "UDP", self.edge, number, &id, &id);
        self.carrier.send(&inv);
        let what = format!("{code} for {number}");
        let (resp, _) = self.carrier.expect(T, &what, |m| m.status().is_some_and(|s| s >= 200) && m.call_id() == id);
        assert_eq!(resp.status(), Some(code), "a call to {number}");
        // The ACK of a non-2xx answer, so the edge stops retransmitting it.
        let ack = format!(
            "ACK sip:{number}@{e} SIP/2.0\nVia: SIP/2.0/UDP {local};branch=z9hG4bK{id}\nFrom: <sip:+13125550199@{local}>;tag=f{id}\nTo: {to}\nCall-ID: {id}\nCSeq: 1 ACK\nMax-Forwards: 70\n\n",
            e = self.edge,
            to = resp.header(HeaderName::To).unwrap_or_default(),
        );
        self.carrier.send(&ack);
    }
}

#[test]
fn claim_flow_release_restore_with_real_calls() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut sip = Sip::new(b, &edge);
    let n = "+12065550150";
    sip.refused(n, 404);

    let v =
        ok(&edge, "POST", &format!("/v1/numbers/{n}/claim"), Some(json!({"flow": "f1", "carriers": ["carrier-a"]})));
    assert_eq!(
        (v["state"].as_str(), v["kind"].as_str(), v["routing"].as_str()),
        (Some("active"), Some("did"), Some("routable"))
    );
    assert_eq!(sip.call(n), "f1", "a claimed number reaches the flow engine with its flow");

    ok(&edge, "PUT", &format!("/v1/numbers/{n}/flow"), Some(json!({"flow": "f2"})));
    assert_eq!(sip.call(n), "f2", "the next call carries the new flow");

    let v = ok(&edge, "POST", &format!("/v1/numbers/{n}/release"), None);
    assert_eq!(v["state"], "released");
    assert!(v["restorable_until_unix_s"].as_u64().is_some());
    sip.refused(n, 410);

    let v = ok(&edge, "POST", &format!("/v1/numbers/{n}/restore"), None);
    assert_eq!((v["state"].as_str(), v["flow"].as_str()), (Some("active"), Some("f2")));
    assert_eq!(sip.call(n), "f2", "a restored number is routable with its old flow");

    // The path segment in its other spellings; active calls are shown.
    for p in ["%2B12065550150", "12065550150", "2065550150"] {
        let v = ok(&edge, "GET", &format!("/v1/numbers/{p}"), None);
        assert_eq!((v["e164"].as_str(), v["active_calls"].as_u64()), (Some(n), Some(0)), "{p}");
    }
    // A number claimed without a flow answers 480.
    ok(&edge, "POST", "/v1/numbers/+18005550177/claim", Some(json!({"carriers": ["carrier-a", "carrier-b"]})));
    sip.refused("+18005550177", 480);
    ok(&edge, "PUT", "/v1/numbers/+18005550177/flow", Some(json!({"flow": "late"})));
    assert_eq!(sip.call("+18005550177"), "late");
}

#[test]
fn port_in_and_port_out_with_real_calls() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut sip = Sip::new(b, &edge);

    // Port-in: 404 until the port event, then routable with the order's flow.
    let order = ok(
        &edge,
        "POST",
        "/v1/ports",
        Some(
            json!({"direction": "in", "numbers": ["+18885550001", "8885550002"], "carriers": ["carrier-a", "carrier-b"], "flow": "ported"}),
        ),
    );
    let id = order["id"].as_u64().expect("an order id");
    assert_eq!(order["status"], "pending");
    assert_eq!(state(&edge, "+18885550001"), "port_in_pending");
    sip.refused("+18885550001", 404);
    let done = ok(&edge, "POST", &format!("/v1/ports/{id}/complete"), None);
    assert_eq!(done["status"], "completed");
    assert_eq!(sip.call("+18885550001"), "ported");
    assert_eq!(sip.call("+18885550002"), "ported");

    // Port-out: routable until the port event, then 404.
    let order = ok(&edge, "POST", "/v1/ports", Some(json!({"direction": "out", "numbers": ["+18005550100"]})));
    let out = order["id"].as_u64().unwrap();
    assert_eq!(state(&edge, "+18005550100"), "port_out_pending");
    assert_eq!(sip.call("+18005550100"), "flow-tf");
    ok(&edge, "POST", &format!("/v1/ports/{out}/complete"), None);
    sip.refused("+18005550100", 404);
    assert_eq!(state(&edge, "+18005550100"), "unknown_number");

    // Cancelled port-in: the number never existed. Cancelled port-out: still ours.
    let pin = ok(
        &edge,
        "POST",
        "/v1/ports",
        Some(json!({"direction": "in", "numbers": ["+18885550003"], "carriers": ["carrier-b"], "flow": "x"})),
    );
    let pin = pin["id"].as_u64().unwrap();
    let pout = ok(&edge, "POST", "/v1/ports", Some(json!({"direction": "out", "numbers": ["+12065550100"]})));
    let pout = pout["id"].as_u64().unwrap();
    assert_eq!(sip.call("+12065550100"), "flow-did");
    assert_eq!(ok(&edge, "POST", &format!("/v1/ports/{pin}/cancel"), None)["status"], "cancelled");
    assert_eq!(ok(&edge, "POST", &format!("/v1/ports/{pout}/cancel"), None)["status"], "cancelled");
    assert_eq!(state(&edge, "+18885550003"), "unknown_number");
    sip.refused("+18885550003", 404);
    assert_eq!(state(&edge, "+12065550100"), "active");
    assert_eq!(sip.call("+12065550100"), "flow-did");

    let list = ok(&edge, "GET", "/v1/ports", None);
    let statuses: Vec<&str> = list["ports"].as_array().unwrap().iter().map(|p| p["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["completed", "completed", "cancelled", "cancelled"]);
    assert_eq!(ok(&edge, "GET", &format!("/v1/ports/{id}"), None)["direction"], "in");

    // A port window in the future refuses the port event.
    let later = ok(
        &edge,
        "POST",
        "/v1/ports",
        Some(json!({"direction": "out", "numbers": ["+12065550100"], "window_start": 4_000_000_000u64})),
    );
    let (status, v) = api(&edge, "POST", &format!("/v1/ports/{}/complete", later["id"]), None);
    assert_eq!((status, v["error"].as_str()), (409, Some("port_window_not_open")), "{v}");
    assert_eq!(sip.call("+12065550100"), "flow-did");
}

/// Everything an operator can see: every number and every port order.
fn everything(edge: &Edge) -> (Value, Value) {
    (ok(edge, "GET", "/v1/numbers?limit=1000", None), ok(edge, "GET", "/v1/ports", None))
}

#[test]
fn bad_input_gets_a_json_4xx_naming_the_problem_and_changes_nothing() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut sip = Sip::new(b, &edge);
    // Some history to refuse against: a released number and a completed port.
    ok(&edge, "POST", "/v1/numbers/+12065550101/release", None);
    let p = ok(
        &edge,
        "POST",
        "/v1/ports",
        Some(json!({"direction": "in", "numbers": ["+18885550009"], "carriers": ["carrier-a"], "flow": "p"})),
    );
    ok(&edge, "POST", &format!("/v1/ports/{}/complete", p["id"]), None);
    let done = p["id"].as_u64().unwrap();
    let before = everything(&edge);

    let claim = |n: &str| format!("/v1/numbers/{n}/claim");
    // (method, path, body, status, error code, what the message must name)
    type Case<'a> = (&'a str, String, Option<&'a str>, u16, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "POST",
            claim("+12065550177"),
            Some(r#"{"flow":"f","carriers":["carrier-a","carrier-b"]}"#),
            400,
            "did_carrier_count",
            "+12065550177 is a DID",
        ),
        (
            "POST",
            claim("+18005550177"),
            Some(r#"{"flow":"f","carriers":["carrier-z"]}"#),
            400,
            "unknown_carrier",
            "carrier-z",
        ),
        ("POST", claim("+12x"), Some(r#"{"flow":"f","carriers":["carrier-a"]}"#), 400, "bad_number", "+12x"),
        ("POST", claim("%2B12x"), Some(r#"{"flow":"f","carriers":["carrier-a"]}"#), 400, "bad_number", "+12x"),
        (
            "POST",
            claim("+18005550100"),
            Some(r#"{"flow":"f","carriers":["carrier-a"]}"#),
            409,
            "already_claimed",
            "+18005550100",
        ),
        (
            "POST",
            claim("+12065550101"),
            Some(r#"{"flow":"f","carriers":["carrier-a"]}"#),
            409,
            "in_deletion_queue",
            "restore",
        ),
        (
            "POST",
            claim("+12065550177"),
            Some(r#"{"flow":"f","carriers":["carrier-a"],"colour":"red"}"#),
            400,
            "bad_json",
            "colour",
        ),
        (
            "POST",
            claim("+12065550177"),
            Some(r#"{"flow":"f","carriers":["carrier-a"],"max_concurrent":"ten"}"#),
            400,
            "bad_json",
            "max_concurrent",
        ),
        ("POST", claim("+12065550177"), Some(r#"{"flow":"#), 400, "bad_json", "EOF"),
        ("POST", claim("+12065550177"), None, 400, "bad_json", ""),
        (
            "POST",
            claim("+12065550177"),
            Some(r#"{"flow":"f","carriers":["carrier-a"],"cnam":"Sixteen chars!!!"}"#),
            400,
            "cnam_too_long",
            "15",
        ),
        ("POST", claim("+12065550177"), Some(r#"{"flow":"a b","carriers":["carrier-a"]}"#), 400, "bad_flow", "a b"),
        ("POST", "/v1/numbers/+12065550177/release".into(), None, 404, "unknown_number", "+12065550177"),
        ("POST", "/v1/numbers/+12065550101/release".into(), None, 409, "not_claimed", "+12065550101"),
        ("POST", "/v1/numbers/+18005550100/release".into(), Some(r#"{"now":1}"#), 400, "bad_json", "now"),
        ("POST", "/v1/numbers/+18005550100/restore".into(), None, 409, "not_released", "+18005550100"),
        ("PUT", "/v1/numbers/+18005550100/flow".into(), Some(r#"{"flow":""}"#), 400, "empty_flow", "flow"),
        ("PUT", "/v1/numbers/+18005550100/flow".into(), Some(r#"{"flows":"x"}"#), 400, "bad_json", "flows"),
        ("PUT", "/v1/numbers/+12065550101/flow".into(), Some(r#"{"flow":"x"}"#), 409, "not_claimed", "+12065550101"),
        (
            "POST",
            "/v1/ports".into(),
            Some(r#"{"direction":"sideways","numbers":["+18885550010"]}"#),
            400,
            "bad_json",
            "direction",
        ),
        (
            "POST",
            "/v1/ports".into(),
            Some(r#"{"direction":"in","numbers":["+18885550010","+12x"],"carriers":["carrier-a"]}"#),
            400,
            "bad_number",
            "+12x",
        ),
        (
            "POST",
            "/v1/ports".into(),
            Some(r#"{"direction":"in","numbers":["+18885550010","+18005550100"],"carriers":["carrier-a"]}"#),
            409,
            "already_claimed",
            "+18005550100",
        ),
        (
            "POST",
            "/v1/ports".into(),
            Some(r#"{"direction":"out","numbers":["+12065550177"]}"#),
            404,
            "unknown_number",
            "+12065550177",
        ),
        ("POST", "/v1/ports".into(), Some(r#"{"direction":"in","numbers":[]}"#), 400, "empty_port", "no numbers"),
        ("POST", "/v1/ports/999/complete".into(), None, 404, "unknown_port", "999"),
        ("POST", "/v1/ports/999/cancel".into(), None, 404, "unknown_port", "999"),
        ("POST", format!("/v1/ports/{done}/cancel"), None, 409, "port_finished", "finished"),
        ("POST", "/v1/ports/abc/complete".into(), None, 400, "bad_port_id", "abc"),
        ("GET", "/v1/numbers?limit=0".into(), None, 400, "bad_query", "limit"),
        ("GET", "/v1/numbers?colour=red".into(), None, 400, "bad_query", "colour"),
        ("DELETE", "/v1/numbers/+18005550100".into(), None, 405, "method_not_allowed", "method"),
        ("GET", "/v1/nothing".into(), None, 404, "not_found", "/v1/nothing"),
    ];
    for (method, path, body, status, code, needle) in cases {
        let (got, text) = http(edge.admin, method, &path, body, None);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text:?}"));
        assert_eq!((got, v["error"].as_str()), (status, Some(code)), "{method} {path} {body:?} → {text}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{method} {path}: message {msg:?} should name {needle:?}");
    }
    assert_eq!(everything(&edge), before, "refused calls changed nothing");
    sip.refused("+12065550177", 404);
    sip.refused("+18885550010", 404);
    assert_eq!(sip.call("+18005550100"), "flow-tf");
}

#[test]
fn oversized_body_is_413_and_changes_nothing() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let before = everything(&edge);
    let cnam = "x".repeat(70_000);
    let body = json!({"flow": "f", "carriers": ["carrier-a"], "cnam": cnam}).to_string();
    let (status, text) = http(edge.admin, "POST", "/v1/numbers/+12065550177/claim", Some(&body), None);
    assert_eq!(status, 413, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"], "body_too_large");
    assert!(v["message"].as_str().unwrap().contains("65536"), "{v}");
    assert_eq!(everything(&edge), before);
}

/// Adds `line` to the `[admin]` table of the edge's config file.
pub fn set_admin_key(edge: &Edge, line: &str) {
    let text = std::fs::read_to_string(&edge.config_path).unwrap();
    let text = text.replacen("[admin]\n", &format!("[admin]\n{line}\n"), 1);
    std::fs::write(&edge.config_path, text).unwrap();
}

#[test]
fn token_is_required_when_configured() {
    let b = Block::new();
    let mut edge = Edge::start(b, standard(b, "udp"));
    let token_file = edge.dir().join("admin.token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    set_admin_key(&edge, &format!("token_file = {:?}", token_file.display().to_string()));
    edge.restart();
    let a = edge.admin;
    let before = api_token(a, "GET", "/v1/numbers?limit=1000", None, Some("first-token"));
    assert_eq!(before.0, 200);

    let claim = json!({"flow": "f", "carriers": ["carrier-a"]});
    for (method, path, body) in [
        ("GET", "/v1/numbers/+18005550100", None),
        ("POST", "/v1/numbers/+12065550177/claim", Some(claim.clone())),
        ("POST", "/v1/numbers/+18005550100/release", None),
        ("POST", "/v1/reload", None),
        ("GET", "/metrics", None),
        ("GET", "/v1/nothing", None),
    ] {
        for token in [None, Some("wrong-token")] {
            let (status, v) = api_token(a, method, path, body.clone(), token);
            assert_eq!((status, v["error"].as_str()), (401, Some("unauthorized")), "{method} {path} with {token:?}");
        }
    }
    assert_eq!(http(a, "GET", "/healthz", None, None).0, 200, "/healthz needs no token");
    assert_eq!(
        api_token(a, "GET", "/v1/numbers?limit=1000", None, Some("first-token")),
        before,
        "refused calls changed nothing"
    );

    // A reload re-reads the token file.
    std::fs::write(&token_file, "second-token").unwrap();
    assert_eq!(api_token(a, "POST", "/v1/reload", None, Some("first-token")).0, 200);
    assert_eq!(api_token(a, "GET", "/v1/numbers/+18005550100", None, Some("first-token")).0, 401);
    assert_eq!(api_token(a, "GET", "/v1/numbers/+18005550100", None, Some("second-token")).0, 200);

    // ctl takes the token from --token-file; without it, the 401 is its error.
    let out = ctl(&edge, &["--token-file", token_file.to_str().unwrap(), "show", "+18005550100"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = ctl(&edge, &["show", "+18005550100"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401 unauthorized"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `sipedge ctl --admin <edge> args...` in the edge's directory.
pub fn ctl(edge: &Edge, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("ctl")
        .arg("--admin")
        .arg(edge.admin.to_string())
        .args(args)
        .current_dir(edge.dir())
        .output()
        .expect("run sipedge ctl")
}

#[test]
fn ctl_claim_show_release_and_exit_codes() {
    let b = Block::new();
    let edge = Edge::start(b, standard(b, "udp"));
    let mut sip = Sip::new(b, &edge);
    let text =
        |o: &Output| (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());

    let out = ctl(
        &edge,
        &[
            "claim",
            "+18005550188",
            "--flow",
            "via-ctl",
            "--carriers",
            "carrier-a,carrier-b",
            "--max-concurrent",
            "5",
            "--cnam",
            "CTL",
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.lines().any(|l| l.split_whitespace().eq(["state:", "active"])), "{stdout}");
    assert!(stdout.lines().any(|l| l.split_whitespace().eq(["carriers:", "carrier-a,", "carrier-b"])), "{stdout}");
    assert_eq!(sip.call("+18005550188"), "via-ctl");

    let out = ctl(&edge, &["--json", "show", "18005550188"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("--json prints JSON");
    assert_eq!((v["max_concurrent"].as_u64(), v["cnam"].as_str()), (Some(5), Some("CTL")));

    let out = ctl(&edge, &["release", "+18005550188"]);
    assert!(out.status.success());
    assert!(text(&out).0.contains("released"));
    sip.refused("+18005550188", 410);

    // Refusals: exit 1 with the server's message.
    let out = ctl(&edge, &["release", "+18005550188"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("+18005550188 is not an active number"), "{}", text(&out).1);
    let out = ctl(&edge, &["claim", "+12065550177", "--flow", "f", "--carriers", "carrier-a,carrier-b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("must have exactly one carrier"), "{}", text(&out).1);
    let out = ctl(&edge, &["show", "+12x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("\"+12x\" is not a valid number"), "{}", text(&out).1);
    assert_eq!(state(&edge, "+12065550177"), "unknown_number");

    // Nobody listening: exit 3, naming the address.
    let out = Command::new(binary())
        .args(["ctl", "--admin", &b.addr(1, 9061).to_string(), "show", "+18005550100"])
        .current_dir(edge.dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).1.contains(&b.addr(1, 9061).to_string()), "{}", text(&out).1);

    // The address from the config file (the global --config).
    let out =
        Command::new(binary()).args(["ctl", "--config", edge.config_path.to_str().unwrap(), "list"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("+18005550100"), "{}", text(&out).0);
}
