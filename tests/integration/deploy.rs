//! The dashboard and alert rules in deploy/ name only metrics the edge
//! exports; promtool accepts the rules, their tests and a real /metrics scrape.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::tls::Ca;
use crate::support::{standard, Block, Edge, Peer};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `sipedge_*` token in a text.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("sipedge_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        out.insert(text[start..end].to_string());
        i = end;
    }
    out
}

/// A series name to its family: `x_bucket`/`x_count`/`x_sum` of a histogram → `x`.
fn family(name: &str, families: &BTreeSet<String>) -> String {
    for suffix in ["_bucket", "_count", "_sum"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if families.contains(base) {
                return base.to_string();
            }
        }
    }
    name.to_string()
}

fn promtool() -> bool {
    let ok = Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        println!("NOTICE: promtool not installed: promtool checks skipped (apt-get install prometheus)");
    }
    ok
}

/// An edge with a TLS listener too (so the certificate expiry gauge the
/// alerts use is there), scraped after one UDP call.
fn scrape_after_one_call() -> (Edge, String) {
    let b = Block::new();
    let mut flow = Peer::udp(b.addr(10, 5060), b.addr(1, 5060));
    let mut spec = standard(b, "udp");
    let dir = tempfile::tempdir().unwrap();
    let cert = Ca::new("deploy CA").issue(dir.path(), "edge", &[b.ip(1).to_string().as_str()]);
    spec.toml.push_str(&format!(
        "[[listen]]\ntransport = \"tls\"\naddr = \"{}\"\ncert_file = {:?}\nkey_file = {:?}\n",
        b.addr(1, 5061),
        cert.cert_file.display().to_string(),
        cert.key_file.display().to_string()
    ));
    let edge = Edge::start(b, spec);
    crate::capture::one_udp_call(&edge, &mut flow, "deploy-call-1");
    let (status, text) = edge.http("GET", "/metrics", None);
    assert_eq!(status, 200);
    (edge, text)
}

#[test]
fn dashboard_and_rules_name_only_exported_metrics() {
    // The metric names the edge defines (one const each in src/metrics.rs).
    let defined = names_in(&std::fs::read_to_string(repo().join("src/metrics.rs")).unwrap());
    let (_edge, scrape) = scrape_after_one_call();
    let exported: BTreeSet<String> = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    // Some series exist only once their event happened (a failover, a flood):
    // those must at least be defined; the rest must be on this scrape.
    for must in [
        "sipedge_calls_total",
        "sipedge_active_calls",
        "sipedge_setup_seconds",
        "sipedge_call_duration_seconds",
        "sipedge_tls_cert_expiry_timestamp_seconds",
    ] {
        assert!(exported.contains(must), "{must} missing from /metrics");
    }
    let known: BTreeSet<String> = defined.union(&exported).cloned().collect();
    for file in ["deploy/grafana/sipedge.json", "deploy/prometheus/rules.yml", "deploy/prometheus/rules_test.yml"] {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let used = names_in(&text);
        assert!(!used.is_empty(), "{file} names no metric");
        for n in used {
            let f = family(&n, &known);
            assert!(known.contains(&f), "{file} uses {n}, which the edge does not export");
        }
    }
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/sipedge.json")).unwrap()).unwrap();
    assert!(dash["panels"].as_array().is_some_and(|p| p.len() >= 6));
}

#[test]
fn promtool_accepts_the_rules_their_tests_and_a_real_scrape() {
    if !promtool() {
        return;
    }
    let dir = repo().join("deploy/prometheus");
    for args in [["check", "rules", "rules.yml"], ["test", "rules", "rules_test.yml"]] {
        let out = Command::new("promtool").args(args).current_dir(&dir).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_edge, scrape) = scrape_after_one_call();
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(scrape.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
