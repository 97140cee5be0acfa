//! The command line's exit codes, run as an operator's script would: `sipedge
//! check` refuses whatever `sipedge` would refuse to start with, and `sipedge
//! ctl` tells a refused call (1), a local problem (2) and an unreachable edge
//! (3) apart. No edge is started: nothing here listens.

use std::path::Path;
use std::process::{Command, Output};

fn sipedge(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sipedge")).args(args).current_dir(dir).output().expect("run sipedge")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited, not killed")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const BASE: &str = r#"
[edge]
data_dir = "data"
[[listen]]
transport = "udp"
addr = "127.0.0.1:0"
[admin]
addr = "127.0.0.1:0"
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p.display().to_string()
}

#[test]
fn check_accepts_the_shipped_example() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = sipedge(&["check", "--config", "config/sipedge.toml"], repo);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(": ok"));
}

#[test]
fn check_refuses_an_unreadable_token_file_like_start_does() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "edge.toml", &format!("{BASE}token_file = \"no-such.token\"\n"));
    let check = sipedge(&["check", "--config", &cfg], dir.path());
    assert_eq!(code(&check), 1, "{}", stderr(&check));
    assert!(stderr(&check).contains("admin.token_file"), "{}", stderr(&check));
    let run = sipedge(&["--config", &cfg], dir.path());
    assert_eq!(code(&run), 1, "start must refuse it too: {}", stderr(&run));
    assert!(stderr(&run).contains("admin.token_file"), "{}", stderr(&run));
}

#[test]
fn check_accepts_a_second_listener_of_one_transport_but_not_the_same_address_twice() {
    let dir = tempfile::tempdir().unwrap();
    let two = format!("{BASE}[[listen]]\ntransport = \"udp\"\naddr = \"[::1]:5999\"\n");
    let check = sipedge(&["check", "--config", &write(dir.path(), "two.toml", &two)], dir.path());
    assert_eq!(code(&check), 0, "IPv4 and IPv6 UDP listeners side by side: {}", stderr(&check));
    let twice = format!("{two}[[listen]]\ntransport = \"udp\"\naddr = \"[0:0::1]:5999\"\n");
    let check = sipedge(&["check", "--config", &write(dir.path(), "twice.toml", &twice)], dir.path());
    assert_eq!(code(&check), 1, "{}", stderr(&check));
    assert!(stderr(&check).contains("listen[2]"), "{}", stderr(&check));
}

#[test]
fn check_and_start_refuse_a_missing_or_unknown_keyed_config() {
    let dir = tempfile::tempdir().unwrap();
    let missing = sipedge(&["check", "--config", "nope.toml"], dir.path());
    assert_eq!(code(&missing), 1);
    assert!(stderr(&missing).contains("cannot read the config file"), "{}", stderr(&missing));
    let cfg = write(dir.path(), "edge.toml", &format!("{BASE}colour = \"blue\"\n"));
    let check = sipedge(&["check", "--config", &cfg], dir.path());
    assert_eq!(code(&check), 1);
    assert!(stderr(&check).contains("colour"), "{}", stderr(&check));
    let run = sipedge(&["--config", &cfg], dir.path());
    assert_eq!(code(&run), 1);
}

#[test]
fn ctl_exit_codes_tell_unreachable_from_local_problems() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let unreachable = sipedge(&["ctl", "--admin", "127.0.0.1:1", "show", "+18005550100"], dir.path());
    assert_eq!(code(&unreachable), 3, "{}", stderr(&unreachable));
    let bad_token = sipedge(
        &["ctl", "--admin", "127.0.0.1:1", "--token-file", "no-such.token", "show", "+18005550100"],
        dir.path(),
    );
    assert_eq!(code(&bad_token), 2, "{}", stderr(&bad_token));
}

#[test]
fn check_loads_tls_certificates_and_names_the_key_and_file_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.path().join("edge.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("edge.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("garbage.key"), "not a key\n").unwrap();
    let tls = |cert: &str, key: &str| {
        format!("{BASE}[[listen]]\ntransport = \"tls\"\naddr = \"127.0.0.1:0\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n")
    };
    let good =
        sipedge(&["check", "--config", &write(dir.path(), "good.toml", &tls("edge.crt", "edge.key"))], dir.path());
    assert_eq!(code(&good), 0, "{}", stderr(&good));
    let missing =
        sipedge(&["check", "--config", &write(dir.path(), "m.toml", &tls("nope.crt", "edge.key"))], dir.path());
    assert_eq!(code(&missing), 1);
    assert!(stderr(&missing).contains("listen[1].cert_file: 'nope.crt'"), "{}", stderr(&missing));
    let bad =
        sipedge(&["check", "--config", &write(dir.path(), "b.toml", &tls("edge.crt", "garbage.key"))], dir.path());
    assert_eq!(code(&bad), 1);
    assert!(stderr(&bad).contains("listen[1].key_file: 'garbage.key'"), "{}", stderr(&bad));
    let no_key = format!("{BASE}[[listen]]\ntransport = \"tls\"\naddr = \"127.0.0.1:0\"\ncert_file = \"edge.crt\"\n");
    let no_key = sipedge(&["check", "--config", &write(dir.path(), "n.toml", &no_key)], dir.path());
    assert_eq!(code(&no_key), 1);
    assert!(stderr(&no_key).contains("listen[1].key_file: required"), "{}", stderr(&no_key));
    let run = sipedge(&["--config", &dir.path().join("b.toml").display().to_string()], dir.path());
    assert_eq!(code(&run), 1, "start refuses it too: {}", stderr(&run));
}

/// The civil date (UTC) `days` days after today (Hinnant's days-to-civil).
fn date_in(days: i64) -> (i32, u8, u8) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let z = now / 86_400 + days + 719_468;
    let (era, doe) = (z.div_euclid(146_097), z.rem_euclid(146_097));
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let (d, m) = (doy - (153 * mp + 2) / 5 + 1, if mp < 10 { mp + 3 } else { mp - 9 });
    ((yoe + era * 400 + i64::from(m <= 2)) as i32, m as u8, d as u8)
}

#[test]
fn check_passes_but_warns_about_a_certificate_that_ends_within_14_days() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let ((y0, m0, d0), (y1, m1, d1)) = (date_in(-30), date_in(5));
    p.not_before = rcgen::date_time_ymd(y0, m0, d0);
    p.not_after = rcgen::date_time_ymd(y1, m1, d1);
    std::fs::write(dir.path().join("soon.crt"), p.self_signed(&key).unwrap().pem()).unwrap();
    std::fs::write(dir.path().join("soon.key"), key.serialize_pem()).unwrap();
    let toml = format!(
        "{BASE}[[listen]]\ntransport = \"tls\"\naddr = \"127.0.0.1:0\"\ncert_file = \"soon.crt\"\nkey_file = \"soon.key\"\n"
    );
    let o = sipedge(&["check", "--config", &write(dir.path(), "soon.toml", &toml)], dir.path());
    assert_eq!(code(&o), 0, "a warning, not an error: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("TLS certificate expires soon") && err.contains("soon.crt"), "{err}");
    assert!(err.contains("days_left=4") || err.contains("days_left=5"), "{err}");
}

#[test]
fn check_names_a_bad_client_certificate_of_a_tls_link() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["edge.example".to_string()]).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.path().join("client.crt"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("client.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("garbage.key"), "not a key\n").unwrap();
    let link = |keys: &str| {
        format!(
            "{BASE}[[carrier]]\nname = \"c\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"127.0.0.1:5061\"\ntransport = \"tls\"\n\
             {keys}\n[[flow_engine]]\naz = \"az1\"\naddr = \"127.0.0.2:5070\"\n"
        )
    };
    let check =
        |name: &str, keys: &str| sipedge(&["check", "--config", &write(dir.path(), name, &link(keys))], dir.path());
    let good = check("good.toml", "client_cert_file = \"client.crt\"\nclient_key_file = \"client.key\"");
    assert_eq!(code(&good), 0, "{}", stderr(&good));
    let bad = check("bad.toml", "client_cert_file = \"client.crt\"\nclient_key_file = \"garbage.key\"");
    assert_eq!(code(&bad), 1);
    assert!(stderr(&bad).contains("carrier[0].link[0].client_key_file: 'garbage.key'"), "{}", stderr(&bad));
    let missing = check("missing.toml", "client_cert_file = \"nope.crt\"\nclient_key_file = \"client.key\"");
    assert_eq!(code(&missing), 1);
    assert!(stderr(&missing).contains("carrier[0].link[0].client_cert_file: 'nope.crt'"), "{}", stderr(&missing));
    let alone = check("alone.toml", "client_cert_file = \"client.crt\"");
    assert_eq!(code(&alone), 1);
    assert!(stderr(&alone).contains("carrier[0].link[0].client_key_file: required"), "{}", stderr(&alone));
}

#[test]
fn check_accepts_the_tls_example_once_its_certificates_are_made() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(repo.join("config/examples/tls.toml"), dir.path().join("tls.toml")).unwrap();
    let before = sipedge(&["check", "--config", "tls.toml"], dir.path());
    assert_eq!(code(&before), 1, "no certificates yet: {}", stderr(&before));
    assert!(stderr(&before).contains("listen[1].cert_file: 'config/tls/edge.crt'"), "{}", stderr(&before));
    let made = Command::new(repo.join("tools/tls-certs/make-test-certs.sh"))
        .arg("config/tls")
        .current_dir(dir.path())
        .output()
        .expect("run make-test-certs.sh");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let after = sipedge(&["check", "--config", "tls.toml"], dir.path());
    assert_eq!(code(&after), 0, "{}", stderr(&after));
}

/// Runs the edge on `cfg` and expects it to refuse to start; an edge that
/// starts after all is killed after 20 s and fails the test.
fn start_refuses(cfg: &str, dir: &Path) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipedge"))
        .args(["--config", cfg])
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sipedge");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the edge started on {cfg}; check refused it");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect");
    assert_eq!(out.status.code(), Some(1), "start: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn check_and_start_refuse_a_data_dir_that_cannot_be_created_and_check_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plain-file"), b"x").unwrap();
    let cfg = write(dir.path(), "edge.toml", &BASE.replace("data_dir = \"data\"", "data_dir = \"plain-file/data\""));
    let check = sipedge(&["check", "--config", &cfg], dir.path());
    assert_eq!(code(&check), 1, "{}", stderr(&check));
    assert!(stderr(&check).contains("edge.data_dir") && stderr(&check).contains("plain-file"), "{}", stderr(&check));
    start_refuses(&cfg, dir.path());

    let fresh = write(dir.path(), "fresh.toml", BASE);
    let check = sipedge(&["check", "--config", &fresh], dir.path());
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    assert!(!dir.path().join("data").exists(), "check must not create data_dir");
}

#[test]
fn check_and_start_refuse_a_store_that_is_not_a_sipedge_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let store = dir.path().join("data/inventory.redb");
    std::fs::write(&store, [0xA5u8; 8192]).unwrap();
    let cfg = write(dir.path(), "edge.toml", BASE);
    let check = sipedge(&["check", "--config", &cfg], dir.path());
    assert_eq!(code(&check), 1, "{}", stderr(&check));
    assert!(
        stderr(&check).contains("edge.data_dir") && stderr(&check).contains("inventory.redb"),
        "{}",
        stderr(&check)
    );
    assert_eq!(std::fs::read(&store).unwrap(), vec![0xA5u8; 8192], "check must leave the file as it was");
    start_refuses(&cfg, dir.path());
}

#[test]
fn check_and_start_refuse_a_listening_address_already_taken() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let text = format!(
        "[edge]\ndata_dir = \"data\"\n[[listen]]\ntransport = \"udp\"\naddr = \"127.0.0.1:0\"\n\
         [[listen]]\ntransport = \"tcp\"\naddr = \"{addr}\"\n[admin]\naddr = \"127.0.0.1:0\"\n"
    );
    let cfg = write(dir.path(), "edge.toml", &text);
    let check = sipedge(&["check", "--config", &cfg], dir.path());
    assert_eq!(code(&check), 1, "{}", stderr(&check));
    assert!(
        stderr(&check).contains("listen[1].addr") && stderr(&check).contains(&addr.to_string()),
        "{}",
        stderr(&check)
    );
    start_refuses(&cfg, dir.path());
    drop(taken);
    let check = sipedge(&["check", "--config", &cfg], dir.path());
    assert_eq!(code(&check), 0, "free once released: {}", stderr(&check));
}
