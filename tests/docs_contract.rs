//! The operator contract in `docs/` stays true to the code: every config key
//! the shipped configs use is in docs/CONFIG.md, every control-plane route the
//! server has is in docs/API.md, and every metric name is in docs/METRICS.md.
//! A key, route or metric added without its documentation fails here.

use std::fs;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `(table, key)` for every key in a TOML document; arrays of tables and
/// nested tables give `carrier.link`-style table names.
fn keys(table: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    let toml::Value::Table(t) = v else { return };
    for (k, v) in t {
        let sub = if table.is_empty() { k.clone() } else { format!("{table}.{k}") };
        match v {
            toml::Value::Table(_) => keys(&sub, v, out),
            toml::Value::Array(items) if items.iter().all(|i| i.is_table()) && !items.is_empty() => {
                for i in items {
                    keys(&sub, i, out);
                }
            }
            _ => out.push((table.to_string(), k.clone())),
        }
    }
}

fn shipped_configs() -> Vec<PathBuf> {
    let mut files = vec![repo().join("config/sipedge.toml")];
    for dir in ["config/examples"] {
        let Ok(rd) = fs::read_dir(repo().join(dir)) else { continue };
        for e in rd.flatten() {
            if e.path().extension().is_some_and(|x| x == "toml") {
                files.push(e.path());
            }
        }
    }
    files.sort();
    files
}

/// A row documents `[table] key` when it names the table (`[t]` or `[[t]]`)
/// and the key as a whole word.
fn documented(doc: &str, table: &str, key: &str) -> bool {
    let single = format!("[{table}]");
    let array = format!("[[{table}]]");
    doc.lines().filter(|l| l.starts_with('|')).any(|l| {
        (l.contains(&single) || l.contains(&array))
            && l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).any(|w| w == key)
    })
}

#[test]
fn every_config_key_in_the_shipped_configs_is_documented() {
    let doc = read("docs/CONFIG.md");
    let mut missing = Vec::new();
    for path in shipped_configs() {
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let value: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut found = Vec::new();
        keys("", &value, &mut found);
        for (table, key) in found {
            if !documented(&doc, &table, &key) {
                missing.push(format!("[{table}] {key} ({})", rel(&path)));
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(missing.is_empty(), "config keys missing from docs/CONFIG.md:\n{}", missing.join("\n"));
}

fn rel(p: &Path) -> String {
    p.strip_prefix(repo()).unwrap_or(p).display().to_string()
}

/// The string literal after each `.route(` in the admin sources.
fn routes() -> Vec<String> {
    let mut out = Vec::new();
    let dir = repo().join("src/admin");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
    files.push(repo().join("src/admin.rs"));
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else { continue };
        for part in text.split(".route(\"").skip(1) {
            if let Some(end) = part.find('"') {
                out.push(part[..end].to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_control_plane_route_is_documented() {
    let doc = read("docs/API.md");
    let routes = routes();
    assert!(routes.len() >= 10, "found too few routes to be checking anything: {routes:?}");
    let missing: Vec<_> =
        routes.iter().filter(|r| !doc.contains(&format!(" {r}`")) && !doc.contains(&format!(" {r} "))).collect();
    assert!(missing.is_empty(), "routes missing from docs/API.md: {missing:?}");
}

#[test]
fn every_metric_name_is_documented() {
    let doc = read("docs/METRICS.md");
    let src = read("src/metrics.rs");
    let names: Vec<&str> = src
        .split('"')
        .filter(|s| s.starts_with("sipedge_") && s.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    assert!(names.len() >= 10, "found too few metric names to be checking anything: {names:?}");
    let missing: Vec<_> = names.iter().filter(|n| !doc.contains(&format!("`{n}`"))).collect();
    assert!(missing.is_empty(), "metrics missing from docs/METRICS.md: {missing:?}");
}

#[test]
fn the_checker_sees_a_missing_key() {
    // The checks above would pass vacuously if `documented` matched anything.
    let doc = "| `[edge] name, az` | x |\n| `[[carrier.link]] az, addr` | y |";
    assert!(documented(doc, "edge", "az"));
    assert!(documented(doc, "carrier.link", "addr"));
    assert!(!documented(doc, "edge", "addr"));
    assert!(!documented(doc, "limits", "name"));
}
