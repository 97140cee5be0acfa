//! The protocol layers stay sans-IO: no tokio under sip/, proxy/, routing/,
//! admission/ or failover/, so the core stays testable on a virtual clock. A `use tokio` there fails the build's tests.

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
