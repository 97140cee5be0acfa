//! Config tests: shipped files parse, every bad fixture fails with its named
//! error, and an unknown key in any table is rejected.

use std::path::{Path, PathBuf};

use super::*;
use crate::sip::NumberKind;

fn toml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

fn errors_of(r: Result<Config, ConfigErrors>) -> ConfigErrors {
    match r {
        Ok(c) => panic!("expected errors, got a config: {c:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_shipped_config_loads() {
    let mut files = toml_files("config");
    files.extend(toml_files("config/examples"));
    assert!(files.len() >= 4, "expected config/sipedge.toml and examples, found {files:?}");
    for f in &files {
        if let Err(e) = Config::load(f) {
            panic!("{} does not load:\n{e}", f.display());
        }
    }
}

#[test]
fn the_example_config_is_the_spec_layout() {
    let c = Config::load(Path::new("config/sipedge.toml")).unwrap();
    assert_eq!(c.source_path.as_deref(), Some(Path::new("config/sipedge.toml")));
    assert_eq!((c.edge.name.as_str(), c.edge.az.as_str()), ("edge-1", "az1"));
    assert_eq!(c.edge.data_dir, PathBuf::from("var/sipedge"));
    let listen: Vec<_> = c.listen.iter().map(|l| (l.transport, l.addr.to_string())).collect();
    assert_eq!(listen, [(Transport::Udp, "127.0.0.1:5060".into()), (Transport::Tcp, "127.0.0.1:5060".into())]);
    assert_eq!(c.admin.addr.to_string(), "127.0.0.1:9060");
    let carriers: Vec<_> = c
        .carrier
        .iter()
        .map(|k| (k.name.as_str(), k.link.iter().map(|l| (l.az.as_str(), l.addr.to_string())).collect::<Vec<_>>()))
        .collect();
    assert_eq!(
        carriers,
        [
            ("carrier-a", vec![("az1", "127.0.0.2:5060".to_owned()), ("az2", "127.0.0.3:5060".to_owned())]),
            ("carrier-b", vec![("az1", "127.0.0.4:5060".to_owned())]),
        ]
    );
    let fe: Vec<_> = c.flow_engine.iter().map(|f| (f.az.as_str(), f.addr.to_string())).collect();
    assert_eq!(fe, [("az1", "127.0.0.10:5060".to_owned()), ("az2", "127.0.0.11:5060".to_owned())]);
    assert_eq!(c.numbers.seed_file, Some(PathBuf::from("config/numbers.csv")));
}

#[test]
fn the_example_seed_mixes_kinds_and_options() {
    let numbers = load_seed(Path::new("config/numbers.csv")).unwrap();
    assert!(numbers.len() >= 8, "{}", numbers.len());
    let tf = numbers.iter().filter(|x| x.kind == NumberKind::TollFree).count();
    assert!(tf >= 2 && tf < numbers.len(), "toll-free {tf} of {}", numbers.len());
    assert!(numbers.iter().any(|x| x.kind == NumberKind::TollFree && x.carriers == ["carrier-a", "carrier-b"]));
    assert!(numbers.iter().any(|x| x.cnam.is_some()));
    assert!(numbers.iter().any(|x| x.max_concurrent == Some(5)));
    assert!(numbers.iter().any(|x| x.flow.is_none()));
}

/// The SPEC §4 block, verbatim: these keys must work as written.
const SPEC_EXAMPLE: &str = r#"
[edge]
name = "edge-1"
az = "az1"                    # links in this AZ are tried first
data_dir = "var/sipedge"      # durable state (number inventory, ports, releases)

[[listen]]
transport = "udp"             # "udp" | "tcp"
addr = "127.0.0.1:5060"

[admin]
addr = "127.0.0.1:9060"       # HTTP control plane + /metrics

[limits]
max_concurrent_calls = 10000
did_max_concurrent = 100
toll_free_max_concurrent = 0
max_call_duration_s = 14400   # a call still up after this is ended and its slot freed

[timers]
t1_ms = 500                   # RFC 3261 T1
failover_ms = 2000            # no response from a next hop in this time -> try the next

[health]
options_interval_ms = 5000    # OPTIONS to every next hop
down_after = 2                # consecutive failures before a hop is down
up_after = 2                  # consecutive successes before it is up again

[[carrier]]
name = "carrier-a"
[[carrier.link]]
az = "az1"
addr = "127.0.0.2:5060"       # we send to it; requests from its IP are this carrier
transport = "udp"
drain = false                 # true: no new calls to this link, calls on it go on

[[flow_engine]]               # where inbound calls are handed off
az = "az1"
addr = "127.0.0.10:5060"
transport = "udp"

[numbers]
seed_file = "config/numbers.csv"   # imported on first start when the store is empty
"#;

#[test]
fn the_spec_example_parses_as_written() {
    let c = Config::from_toml_str(SPEC_EXAMPLE).unwrap();
    assert_eq!(c.edge.name, "edge-1");
    assert_eq!(c.limits.max_concurrent_calls, 10000);
    assert_eq!(c.timers.failover_ms, 2000);
    assert_eq!(c.carrier[0].link[0].addr.to_string(), "127.0.0.2:5060");
    assert!(!c.carrier[0].link[0].drain);
    assert_eq!(c.flow_engine[0].addr.to_string(), "127.0.0.10:5060");
}

#[test]
fn everything_but_listen_has_a_default() {
    let c = Config::from_toml_str("[[listen]]\naddr = \"127.0.0.1:0\"\n").unwrap();
    assert_eq!(c.listen[0].transport, Transport::Udp);
    assert_eq!((c.edge.name.as_str(), c.edge.az.as_str(), c.edge.workers), ("sipedge", "az1", 0));
    assert_eq!(c.edge.unknown_source, UnknownSource::Reject);
    assert_eq!((c.edge.server_header.clone(), c.edge.advertise.clone()), (None, None));
    assert_eq!(c.edge.drain_timeout_s, 120);
    assert_eq!(c.admin.addr.to_string(), "127.0.0.1:9060");
    assert_eq!(c.admin.max_body_bytes, 65536);
    let l = &c.limits;
    assert_eq!(
        (l.max_concurrent_calls, l.did_max_concurrent, l.toll_free_max_concurrent, l.max_call_duration_s),
        (10000, 100, 0, 14400)
    );
    assert_eq!((l.retry_after_s, l.new_calls_per_second), (5, 0));
    let t = &c.timers;
    assert_eq!((t.t1_ms, t.t2_ms, t.t4_ms, t.failover_ms, t.timer_c_ms), (500, 4000, 5000, 2000, 180_000));
    assert_eq!((c.health.options_interval_ms, c.health.down_after, c.health.up_after), (5000, 2, 2));
    let f = &c.flood;
    assert_eq!((f.enabled, f.window_ms, f.max_requests, f.ban_s, f.exempt_peers), (true, 1000, 400, 60, true));
    assert_eq!(f.action, FloodAction::Drop);
    let tcp = &c.tcp;
    assert_eq!(
        (tcp.max_connections, tcp.max_per_ip, tcp.max_message_bytes, tcp.max_header_bytes),
        (4096, 256, 65535, 16384)
    );
    assert_eq!((tcp.idle_timeout_s, tcp.message_deadline_ms), (300, 5000));
    assert!(c.carrier.is_empty() && c.flow_engine.is_empty() && c.numbers.seed_file.is_none());
    assert!(c.source_path.is_none());
}

/// Reads `# expect: <text>` from a fixture's first line.
fn expectation(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().next().unwrap_or_default();
    first
        .strip_prefix("# expect:")
        .unwrap_or_else(|| panic!("{}: first line must be `# expect: ...`", path.display()))
        .trim()
        .to_owned()
}

#[test]
fn every_bad_fixture_fails_with_its_named_error() {
    let files = toml_files("tests/fixtures/config/bad");
    assert!(files.len() >= 20, "only {} bad fixtures", files.len());
    for f in &files {
        let want = expectation(f);
        let errors = errors_of(check(f));
        let text = errors.to_string();
        assert!(text.contains(&want), "{}: want {want:?} in:\n{text}", f.display());
    }
}

/// A config with every table present, each header on its own line.
const ALL_TABLES: &str = r#"
[edge]
name = "e"

[[listen]]
addr = "127.0.0.1:0"

[admin]
addr = "127.0.0.1:0"

[limits]
retry_after_s = 1

[timers]
t1_ms = 500

[health]
up_after = 1

[[carrier]]
name = "c"

[[carrier.link]]
az = "az1"
addr = "127.0.0.2:5060"

[[flow_engine]]
az = "az1"
addr = "127.0.0.10:5060"

[numbers]

[flood]
enabled = true

[tcp]
max_per_ip = 1
"#;

#[test]
fn an_unknown_key_in_any_table_is_rejected_by_name() {
    Config::from_toml_str(ALL_TABLES).unwrap();
    let tables = [
        ("[edge]", "edge.bogus"),
        ("[[listen]]", "listen[0].bogus"),
        ("[admin]", "admin.bogus"),
        ("[limits]", "limits.bogus"),
        ("[timers]", "timers.bogus"),
        ("[health]", "health.bogus"),
        ("[[carrier]]", "carrier[0].bogus"),
        ("[[carrier.link]]", "carrier[0].link[0].bogus"),
        ("[[flow_engine]]", "flow_engine[0].bogus"),
        ("[numbers]", "numbers.bogus"),
        ("[flood]", "flood.bogus"),
        ("[tcp]", "tcp.bogus"),
    ];
    for (header, field) in tables {
        let doc = ALL_TABLES.replacen(&format!("\n{header}\n"), &format!("\n{header}\nbogus = 1\n"), 1);
        assert_ne!(doc, ALL_TABLES, "{header} not found");
        let errors = errors_of(Config::from_toml_str(&doc));
        assert_eq!(errors.0.len(), 1, "{header}: {errors}");
        assert_eq!(errors.0[0].field, field, "{header}: {errors}");
        assert!(errors.0[0].problem.contains("unknown field `bogus`"), "{header}: {errors}");
    }
    // At the top level, before any table.
    let errors = errors_of(Config::from_toml_str(&format!("bogus = 1\n{ALL_TABLES}")));
    assert_eq!(errors.0[0].field, "bogus", "{errors}");
    // source_path is internal, not a key.
    let errors = errors_of(Config::from_toml_str(&format!("source_path = \"x\"\n{ALL_TABLES}")));
    assert_eq!(errors.0[0].field, "source_path", "{errors}");
}

#[test]
fn a_bad_value_names_its_key_and_line() {
    let doc = ALL_TABLES.replace("addr = \"127.0.0.10:5060\"", "addr = \"127.0.0.10\"");
    let errors = errors_of(Config::from_toml_str(&doc));
    assert_eq!(errors.0[0].field, "flow_engine[0].addr", "{errors}");
    let line = doc.lines().position(|l| l == "addr = \"127.0.0.10\"").unwrap() + 1;
    assert!(errors.0[0].problem.ends_with(&format!("(line {line})")), "{errors}");
}

#[test]
fn validation_lists_every_problem_not_just_the_first() {
    let doc = ALL_TABLES
        .replace("t1_ms = 500", "t1_ms = 0\nfailover_ms = 0")
        .replace("up_after = 1", "up_after = 0")
        .replace("name = \"c\"", "name = \"\"")
        .replace("max_per_ip = 1", "max_per_ip = 0");
    let errors = errors_of(Config::from_toml_str(&doc));
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for want in ["timers.t1_ms", "timers.failover_ms", "health.up_after", "carrier[0].name", "tcp.max_per_ip"] {
        assert!(fields.contains(&want), "{want} missing from {fields:?}");
    }
    // One line per problem, each `field: problem`.
    let text = errors.to_string();
    assert_eq!(text.lines().count(), errors.0.len());
    assert!(text.lines().all(|l| l.contains(": ")));
}

#[test]
fn any_number_of_listeners_per_transport_but_each_address_once() {
    // Distinct addresses of one transport, IPv4 and IPv6 side by side: accepted
    // (and the edge binds every one of them).
    let many = r#"
[[listen]]
addr = "127.0.0.1:5060"
[[listen]]
addr = "127.0.0.1:5070"
[[listen]]
addr = "[::1]:5060"
[[listen]]
addr = "0.0.0.0:5080"
[[listen]]
addr = "[::]:5080"
[[listen]]
transport = "tcp"
addr = "127.0.0.1:5060"
[[listen]]
transport = "tcp"
addr = "[::1]:5060"
"#;
    let cfg = Config::from_toml_str(many).unwrap();
    assert_eq!(cfg.listen.len(), 7);
    // Port 0 asks the OS for a free port, so two of them never clash.
    let zero = "[[listen]]\naddr = \"127.0.0.1:0\"\n[[listen]]\naddr = \"127.0.0.1:0\"\n";
    Config::from_toml_str(zero).unwrap();
    let tcp_and_udp =
        "[[listen]]\naddr = \"127.0.0.1:5060\"\n[[listen]]\ntransport = \"tcp\"\naddr = \"127.0.0.1:5060\"\n";
    Config::from_toml_str(tcp_and_udp).unwrap();
    // The same transport and address twice: refused, naming both.
    let errors = errors_of(Config::from_toml_str(&zero.replace(":0", ":5060")));
    assert_eq!(errors.0[0].field, "listen[1]");
    assert!(errors.0[0].problem.contains("is already listen[0]"), "{}", errors.0[0].problem);
    let twice6 = "[[listen]]\naddr = \"[::1]:5060\"\n[[listen]]\naddr = \"[0:0::1]:5060\"\n";
    let errors = errors_of(Config::from_toml_str(twice6));
    assert_eq!(errors.0[0].field, "listen[1]");
    assert!(errors.0[0].problem.contains("is already listen[0]"), "{}", errors.0[0].problem);
    // A wildcard and a specific address of one family on one port overlap.
    let overlap = "[[listen]]\naddr = \"0.0.0.0:5060\"\n[[listen]]\naddr = \"127.0.0.1:5060\"\n";
    let errors = errors_of(Config::from_toml_str(overlap));
    assert_eq!(errors.0[0].field, "listen[1].addr");
    assert!(errors.0[0].problem.contains("overlaps listen[0]"), "{}", errors.0[0].problem);
    let overlap6 = "[[listen]]\naddr = \"[::1]:5060\"\n[[listen]]\naddr = \"[::]:5060\"\n";
    let errors = errors_of(Config::from_toml_str(overlap6));
    assert_eq!(errors.0[0].field, "listen[1].addr");
}

#[test]
fn one_ip_on_two_peers_is_reported_once_naming_both() {
    // carrier-a has two links on one IP (different ports); carrier-b reuses it.
    let doc = r#"
[[listen]]
addr = "127.0.0.1:0"
[[carrier]]
name = "carrier-a"
[[carrier.link]]
az = "az1"
addr = "127.0.0.2:5060"
[[carrier.link]]
az = "az2"
addr = "127.0.0.2:5070"
[[carrier]]
name = "carrier-b"
[[carrier.link]]
az = "az1"
addr = "127.0.0.2:5080"
"#;
    let errors = errors_of(Config::from_toml_str(doc));
    assert_eq!(errors.0.len(), 1, "{errors}");
    let e = &errors.0[0];
    assert_eq!(e.field, "carrier[1].link[0].addr");
    assert!(e.problem.contains("carrier 'carrier-a'") && e.problem.contains("carrier 'carrier-b'"), "{e}");
    assert!(e.problem.contains("carrier[0].link[0].addr"), "{e}");
}

#[test]
fn a_carriers_own_sources_may_contain_its_links_and_flow_engines_may_share_an_ip() {
    let doc = r#"
[[listen]]
addr = "127.0.0.1:0"
[[carrier]]
name = "a"
sources = ["127.0.0.0/29", "::ffff:127.0.0.2"]
[[carrier.link]]
az = "az1"
addr = "127.0.0.2:5060"
[[flow_engine]]
az = "az1"
addr = "127.0.1.10:5060"
[[flow_engine]]
az = "az2"
addr = "127.0.1.10:5070"
"#;
    Config::from_toml_str(doc).unwrap();
    // A source network that swallows a flow-engine IP is ambiguous.
    let errors = errors_of(Config::from_toml_str(&doc.replace("127.0.0.0/29", "127.0.0.0/16")));
    assert_eq!(errors.0.len(), 2, "{errors}");
    assert!(errors.iter().all(|e| e.problem.contains("the flow engine")), "{errors}");
}

#[test]
fn edge_strings_that_reach_the_wire_are_checked() {
    let base = "[[listen]]\naddr = \"127.0.0.1:0\"\n[edge]\n";
    for good in ["sip.example.net", "sip.example.net:5060", "192.0.2.1", "[2001:db8::1]:5060", "2001:db8::1"] {
        Config::from_toml_str(&format!("{base}advertise = \"{good}\"\n")).unwrap();
    }
    for bad in ["", "sip example", "host:0", "host:99999", "a..b"] {
        let errors = errors_of(Config::from_toml_str(&format!("{base}advertise = \"{bad}\"\n")));
        assert_eq!(errors.0[0].field, "edge.advertise", "{bad}");
    }
    let errors = errors_of(Config::from_toml_str(&format!("{base}server_header = \"x\\r\\nVia: evil\"\n")));
    assert_eq!(errors.0[0].field, "edge.server_header");
}

#[test]
fn drain_timeout_is_bounded_and_named() {
    let base = "[[listen]]\naddr = \"127.0.0.1:0\"\n[edge]\n";
    Config::from_toml_str(&format!("{base}drain_timeout_s = 2\n")).unwrap();
    for bad in [0, 86_401] {
        let errors = errors_of(Config::from_toml_str(&format!("{base}drain_timeout_s = {bad}\n")));
        assert_eq!(errors.0[0].field, "edge.drain_timeout_s", "{bad}");
    }
}

#[test]
fn flood_limits_only_matter_when_flood_protection_is_on() {
    let doc = "[[listen]]\naddr = \"127.0.0.1:0\"\n[flood]\nenabled = false\nmax_requests = 0\nwindow_ms = 0\n";
    Config::from_toml_str(doc).unwrap();
    let errors = errors_of(Config::from_toml_str(&doc.replace("false", "true")));
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(fields, ["flood.window_ms", "flood.max_requests"]);
}

#[test]
fn load_names_a_missing_file_and_reads_relative_paths_from_the_current_dir() {
    let errors = errors_of(Config::load(Path::new("config/no-such-file.toml")));
    assert_eq!(errors.0[0].field, "config/no-such-file.toml");
    let c = Config::from_toml_str("[[listen]]\naddr = \"127.0.0.1:0\"\n").unwrap();
    assert_eq!(c.resolve(Path::new("/abs/x.csv")), PathBuf::from("/abs/x.csv"));
    assert_eq!(c.resolve(Path::new("config/numbers.csv")), std::env::current_dir().unwrap().join("config/numbers.csv"));
}

#[test]
fn a_seed_file_can_be_given_as_an_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("n.csv");
    std::fs::write(&csv, "e164,kind,flow,carriers,max_concurrent,cnam\n+12065550100,,f,c,,\n").unwrap();
    let toml = dir.path().join("edge.toml");
    let body = format!(
        "[[listen]]\naddr = \"127.0.0.1:0\"\n[[carrier]]\nname = \"c\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"127.0.0.2:5060\"\n[numbers]\nseed_file = \"{}\"\n",
        csv.display()
    );
    std::fs::write(&toml, &body).unwrap();
    Config::load(&toml).unwrap();
    // The same file with a carrier the seed does not know fails on the seed.
    std::fs::write(&toml, body.replace("name = \"c\"", "name = \"d\"")).unwrap();
    let errors = errors_of(Config::load(&toml));
    assert!(errors.to_string().contains("unknown carrier 'c'"), "{errors}");
}

#[test]
fn carrier_limits_default_to_unlimited_and_bad_ones_name_their_carrier() {
    let base = "[[listen]]\naddr = \"127.0.0.1:0\"\n[[carrier]]\nname = \"a\"\n[[carrier.link]]\naz = \"az1\"\naddr = \"127.0.0.2:5060\"\n[[carrier]]\nname = \"b\"\n";
    let link = "[[carrier.link]]\naz = \"az1\"\naddr = \"127.0.0.3:5060\"\n";
    let c = Config::from_toml_str(&format!("{base}{link}")).unwrap();
    assert_eq!((c.carrier[0].max_concurrent, c.carrier[0].max_cps), (0, 0));
    let c = Config::from_toml_str(&format!("{base}max_concurrent = 3\nmax_cps = 5\n{link}")).unwrap();
    assert_eq!((c.carrier[1].max_concurrent, c.carrier[1].max_cps), (3, 5));
    for (bad, field) in [
        ("max_cps = 1000001", "carrier[1].max_cps"),
        ("max_cps = -1", "carrier[1].max_cps"),
        ("max_concurrent = -3", "carrier[1].max_concurrent"),
        ("max_concurrent = \"ten\"", "carrier[1].max_concurrent"),
        ("max_cps = 4294967296", "carrier[1].max_cps"),
    ] {
        let errors = errors_of(Config::from_toml_str(&format!("{base}{bad}\n{link}")));
        assert_eq!(errors.0[0].field, field, "{bad}: {errors}");
    }
}

#[test]
fn a_duration_too_long_for_a_deadline_is_refused_by_name() {
    // 2^63 - 1 ms passed `check` and then panicked the edge at its first TCP
    // connection (`Instant + Duration` overflows).
    let base = "[[listen]]\naddr = \"127.0.0.1:0\"\n";
    for (table, key, ok, bad) in [
        ("timers", "t1_ms", 500, 86_400_001_u64),
        ("timers", "timer_c_ms", 86_400_000, 9_223_372_036_854_775_807),
        ("tcp", "message_deadline_ms", 5000, 86_400_001),
        ("tcp", "idle_timeout_s", 604_800, 604_801),
        ("limits", "max_call_duration_s", 7200, 9_223_372_036_854_775_807),
        ("flood", "ban_s", 60, 604_801),
    ] {
        Config::from_toml_str(&format!("{base}[{table}]\n{key} = {ok}\n")).unwrap();
        let errors = errors_of(Config::from_toml_str(&format!("{base}[{table}]\n{key} = {bad}\n")));
        assert_eq!(errors.0[0].field, format!("{table}.{key}"), "{key} = {bad}");
        assert!(errors.0[0].to_string().contains("is more than"), "{}", errors.0[0]);
    }
    // A disabled flood guard may keep any numbers, as with zero.
    Config::from_toml_str(&format!("{base}[flood]\nenabled = false\nban_s = 604801\n")).unwrap();
}
