//! The protocol layers stay sans-IO: no tokio, no clock, no threads and no
//! sleeps under sip/, proxy/, routing/, admission/ or failover/, so the core
//! stays testable on a virtual clock. Any of them there fails the build's tests.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn sans_io_modules_do_not_use_tokio() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    for m in ["sip", "proxy", "routing", "admission", "failover"] {
        let mut files = Vec::new();
        rust_files(&root.join(m), &mut files);
        assert!(!files.is_empty(), "module {m} has no files");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("tokio::") || code.contains("use tokio") {
                    offenders.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "tokio in a sans-IO module:\n{}", offenders.join("\n"));
}

/// The non-test lines of a sans-IO module's files: an inline `mod tests { ... }`
/// sits at the end of its file, so scanning stops there; files under `tests/`
/// and `tests.rs` / `*_tests.rs` are test code.
fn production_lines() -> Vec<(String, usize, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for m in ["sip", "proxy", "routing", "admission", "failover"] {
        let mut files = Vec::new();
        rust_files(&root.join(m), &mut files);
        for f in files {
            let name = f.display().to_string();
            if name.contains("/tests/") || name.ends_with("/tests.rs") || name.ends_with("_tests.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            let mut prev = "";
            for (i, line) in text.lines().enumerate() {
                if prev.trim() == "#[cfg(test)]" && line.trim_start().starts_with("mod ") && line.contains('{') {
                    break;
                }
                prev = line;
                let code = line.split("//").next().unwrap_or("").to_string();
                out.push((name.clone(), i + 1, code));
            }
        }
    }
    out
}

#[test]
fn sans_io_modules_read_no_clock_and_start_no_thread() {
    let banned = ["Instant::now", "SystemTime", "thread::spawn", "thread::Builder", "sleep("];
    let offenders: Vec<String> = production_lines()
        .into_iter()
        .filter(|(_, _, code)| banned.iter().any(|b| code.contains(b)))
        .map(|(f, n, code)| format!("{f}:{n}: {}", code.trim()))
        .collect();
    assert!(offenders.is_empty(), "clock, thread or sleep in a sans-IO module:\n{}", offenders.join("\n"));
}

#[test]
fn the_scan_sees_production_code() {
    // Guards the test above against passing because it reads nothing.
    let lines = production_lines();
    assert!(lines.len() > 5_000, "only {} lines scanned", lines.len());
    assert!(lines.iter().any(|(_, _, c)| c.contains("pub fn handle_message")));
}
