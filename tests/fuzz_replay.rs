//! Replays the fuzz corpora and every crash the fuzzers found through the
//! same harnesses the cargo-fuzz targets use (`sipedge::fuzzing`), then runs
//! a deterministic random-mutation pass of a few thousand inputs, so a
//! regression shows up in `cargo test` without a fuzzer or a nightly compiler.
//!
//! Layout of `tests/fixtures/fuzz/`:
//! - `corpus/{parse,frame,core}/`: inputs that reach new code (minimized by cargo-fuzz)
//! - `crashes/{parse,frame,core}/`: every input that once broke an invariant

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use sipedge::fuzzing::{core_sequence, core_sequence_with, frame_stream, mutate, parse_one, raw_program, Rng};

type Harness = fn(&[u8]);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    v.retain(|p| p.file_name().is_some_and(|n| n != "README.md" && !n.to_string_lossy().starts_with('.')));
    v.sort();
    v
}

/// Runs `h` on every input, collecting the ones that panic instead of stopping at the first.
fn run_all(name: &str, h: Harness, inputs: impl IntoIterator<Item = (String, Vec<u8>)>) -> usize {
    let mut failures = Vec::new();
    let mut n = 0;
    for (label, data) in inputs {
        n += 1;
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| h(&data))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{label}: {msg}"));
            save_failure(name, failures.len(), &data);
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} of {n} inputs broke an invariant:\n{}",
        failures.len(),
        failures.join("\n---\n")
    );
    n
}

/// With `FUZZ_REPLAY_SAVE=<dir>`, failing inputs are written there (to turn
/// them into fixtures under `crashes/`).
fn save_failure(name: &str, k: usize, data: &[u8]) {
    if let Some(dir) = std::env::var_os("FUZZ_REPLAY_SAVE") {
        let dir = PathBuf::from(dir);
        let _ = std::fs::create_dir_all(&dir);
        let file = format!("{}-{k}", name.replace(' ', "-"));
        let _ = std::fs::write(dir.join(file), data);
    }
}

fn read_dir_inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files(dir).into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap())).collect()
}

/// The SIP messages the mutation pass starts from.
fn seeds() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for dir in ["sip/torture/rfc4475", "sip/torture/rfc5118"] {
        for p in files(&root().join(dir)) {
            v.push(std::fs::read(p).unwrap());
        }
    }
    v.push(std::fs::read(root().join("sip/carrier_invite.sip")).unwrap());
    assert!(v.len() > 50, "torture fixtures missing");
    v
}

fn replay(target: &str, h: Harness) {
    let corpus = read_dir_inputs(&root().join("fuzz/corpus").join(target));
    let crashes = read_dir_inputs(&root().join("fuzz/crashes").join(target));
    let (c, k) = (corpus.len(), crashes.len());
    run_all(&format!("{target} corpus"), h, corpus);
    run_all(&format!("{target} crashes"), h, crashes);
    println!("{target}: replayed {c} corpus inputs and {k} crash fixtures");
}

#[test]
fn parse_corpus_and_crashes() {
    replay("parse", parse_one);
}

#[test]
fn frame_corpus_and_crashes() {
    replay("frame", frame_stream);
}

#[test]
fn core_corpus_and_crashes() {
    replay("core", core_sequence);
}

#[test]
fn parse_mutations() {
    let seeds = seeds();
    let mut rng = Rng::new(0x5EED_0001);
    let inputs = (0..4000).map(|i| {
        let mut m = seeds[i % seeds.len()].clone();
        mutate(&mut m, &mut rng, 6);
        (format!("parse mutation {i}: {:?}", String::from_utf8_lossy(&m)), m)
    });
    let n = run_all("parse mutations", parse_one, inputs.collect::<Vec<_>>());
    assert_eq!(n, 4000);
}

#[test]
fn frame_mutations() {
    let seeds = seeds();
    let mut rng = Rng::new(0x5EED_0002);
    let inputs = (0..1500).map(|i| {
        // Selector, chunking seed, then two or three messages back to back.
        let mut m = vec![rng.next_u64() as u8, rng.next_u64() as u8, rng.next_u64() as u8];
        for _ in 0..2 + rng.below(2) {
            let mut s = seeds[rng.below(seeds.len())].clone();
            if rng.below(2) == 0 {
                mutate(&mut s, &mut rng, 4);
            }
            m.extend_from_slice(&s);
            if rng.below(3) == 0 {
                m.extend_from_slice(b"\r\n\r\n");
            }
        }
        (format!("frame mutation {i}"), m)
    });
    run_all("frame mutations", frame_stream, inputs.collect::<Vec<_>>());
}

#[test]
fn core_random_programs() {
    let mut rng = Rng::new(0x5EED_0003);
    let mut total = sipedge::fuzzing::CoreFuzzReport::default();
    let programs: Vec<(String, Vec<u8>)> = (0..2000)
        .map(|i| {
            let len = 16 + rng.below(400);
            let p: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            (format!("core program {i}: {p:?}"), p)
        })
        .collect();
    run_all("core programs", core_sequence, programs.clone());
    for (_, p) in programs.iter().take(200) {
        let r = core_sequence_with(p);
        total.steps += r.steps;
        total.transmits += r.transmits;
    }
    // The programs must actually drive the core, or the pass proves nothing.
    assert!(total.transmits > total.steps / 4, "random programs barely reach the core: {total:?}");
    println!("core: 200 programs, {total:?}");
}

/// The no-relay rule at the sans-IO level over the torture corpus: every
/// RFC 4475/5118 message (they name outside hosts: 192.0.2.x, example.com)
/// from a carrier, the flow engine and a stranger, with the peers answering
/// what the edge forwards. Every Transmit must go to a configured peer or to
/// the packet's source, and nothing may be left once the clock runs out.
#[test]
fn torture_corpus_through_the_core() {
    let mut inputs = Vec::new();
    for (i, seed) in seeds().iter().enumerate() {
        for source in [0u8, 3, 5, 6] {
            for flags in [0u8, 1] {
                inputs.push((
                    format!("torture seed {i} from source {source} flags {flags}"),
                    raw_program(flags, source, seed),
                ));
            }
        }
    }
    let n = run_all("torture through the core", core_sequence, inputs.clone());
    let transmits: usize = inputs.iter().map(|(_, p)| core_sequence_with(p).transmits).sum();
    assert!(transmits > n, "the torture messages must get answers: {transmits} transmits for {n} runs");
}

/// Writes seed corpora for the cargo-fuzz targets: `FUZZ_SEED_DIR=tools/fuzz/seeds
/// cargo test --test fuzz_replay write_seed_corpus -- --ignored`.
#[test]
#[ignore]
fn write_seed_corpus() {
    let Some(dir) = std::env::var_os("FUZZ_SEED_DIR").map(PathBuf::from) else { return };
    for t in ["parse", "frame", "core"] {
        std::fs::create_dir_all(dir.join(t)).unwrap();
    }
    for (i, s) in seeds().iter().enumerate() {
        std::fs::write(dir.join("parse").join(format!("seed-{i}")), s).unwrap();
        let mut f = vec![i as u8, 7, 1];
        f.extend_from_slice(s);
        f.extend_from_slice(b"\r\n\r\n");
        f.extend_from_slice(s);
        std::fs::write(dir.join("frame").join(format!("seed-{i}")), f).unwrap();
        for source in [0u8, 3] {
            std::fs::write(dir.join("core").join(format!("seed-{i}-{source}")), raw_program(0, source, s)).unwrap();
        }
    }
}

/// Triage: `FUZZ_ONE=core:path/to/input SIPEDGE_FUZZ_TRACE=1 cargo test --test
/// fuzz_replay replay_one -- --ignored --nocapture` runs one input, with a
/// transcript for the core.
#[test]
#[ignore]
fn replay_one() {
    let Ok(spec) = std::env::var("FUZZ_ONE") else { return };
    let (target, path) = spec.split_once(':').expect("FUZZ_ONE=target:path");
    let data = std::fs::read(path).unwrap();
    match target {
        "parse" => parse_one(&data),
        "frame" => frame_stream(&data),
        "core" => core_sequence(&data),
        other => panic!("unknown target {other}"),
    }
}
