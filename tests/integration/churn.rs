//! Lifecycle churn while calls flow: SIPp places 6,000 calls at 200 calls/s
//! to numbers that stay claimed, while client threads claim, re-flow,
//! release and restore 3,000 OTHER numbers over keep-alive HTTP. No call may
//! fail and every event must be acknowledged; the achieved event rate and
//! the median event latency are printed (not asserted: the machine is shared).
//!
//! Reproduce: `cargo test --test integration churn -- --nocapture` (debug build).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::control_plane::ok;
use crate::sipp::{load_numbers, one_carrier, uac, uas};
use crate::support::{Block, Edge, EdgeSpec};

/// Where a churned number is, as the client believes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Unclaimed,
    Active,
    Released,
}

/// What one churn thread did.
#[derive(Default)]
struct Stats {
    events: u64,
    latencies: Vec<Duration>,
    refused: Vec<String>,
    states: HashMap<String, St>,
    elapsed: Duration,
}

/// Applies events to `numbers` at about `per_sec` (0 = as fast as it can)
/// until `stop`, on one keep-alive connection. Each number cycles through
/// claim → flow → release → restore → flow → release → ...
fn churn(
    admin: SocketAddr,
    numbers: Vec<String>,
    per_sec: f64,
    stop: Arc<AtomicBool>,
    carry: HashMap<String, St>,
) -> Stats {
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).max_idle_connections_per_host(1).build();
    // Only this thread's numbers: the merge of all threads' maps must not
    // let one thread's stale copy of another's number win.
    let states = numbers.iter().map(|n| (n.clone(), carry.get(n).copied().unwrap_or(St::Unclaimed))).collect();
    let mut s = Stats { states, ..Stats::default() };
    let mut flowed: HashMap<String, bool> = HashMap::new();
    let start = Instant::now();
    let mut k: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if per_sec > 0.0 {
            let due = start + Duration::from_secs_f64(k as f64 / per_sec);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let n = &numbers[(k % numbers.len() as u64) as usize];
        let st = s.states[n];
        let did_flow = flowed.get(n).copied().unwrap_or(false);
        let base = format!("http://{admin}/v1/numbers/{n}");
        let t0 = Instant::now();
        let (res, next) = match (st, did_flow) {
            (St::Unclaimed, _) => (
                agent
                    .post(&format!("{base}/claim"))
                    .send_json(json!({"flow": format!("c{k}"), "carriers": ["carrier-a"]})),
                St::Active,
            ),
            (St::Active, false) => {
                (agent.put(&format!("{base}/flow")).send_json(json!({"flow": format!("f{k}")})), St::Active)
            }
            (St::Active, true) => (agent.post(&format!("{base}/release")).call(), St::Released),
            (St::Released, _) => (agent.post(&format!("{base}/restore")).call(), St::Active),
        };
        let dt = t0.elapsed();
        match res {
            Ok(r) => {
                let _ = r.into_string();
                s.latencies.push(dt);
                s.states.insert(n.clone(), next);
                flowed.insert(n.clone(), st == St::Active && !did_flow);
            }
            Err(e) => s.refused.push(format!("{n} in {st:?}: {e}")),
        }
        s.events += 1;
        k += 1;
    }
    s.elapsed = start.elapsed();
    s
}

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort_unstable();
    let at = |q: f64| v.get(((v.len() as f64 - 1.0) * q) as usize).copied().unwrap_or_default();
    (at(0.5), at(0.99))
}

/// Runs `threads` churn threads over `numbers` until `stop`; returns their stats merged.
fn run_churn(
    admin: SocketAddr,
    numbers: &[String],
    threads: usize,
    per_sec: f64,
    stop: &Arc<AtomicBool>,
    carry: &HashMap<String, St>,
) -> std::thread::JoinHandle<Stats> {
    let chunks: Vec<Vec<String>> =
        (0..threads).map(|t| numbers.iter().skip(t).step_by(threads).cloned().collect()).collect();
    let stop = stop.clone();
    let carry = carry.clone();
    std::thread::spawn(move || {
        let hs: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                let (stop, carry) = (stop.clone(), carry.clone());
                std::thread::spawn(move || churn(admin, c, per_sec / threads as f64, stop, carry))
            })
            .collect();
        let mut all = Stats::default();
        for h in hs {
            let s = h.join().unwrap();
            all.events += s.events;
            all.latencies.extend(s.latencies);
            all.refused.extend(s.refused);
            all.states.extend(s.states);
            all.elapsed = all.elapsed.max(s.elapsed);
        }
        all
    })
}

fn report(label: &str, s: &Stats) {
    let (p50, p99) = median(s.latencies.clone());
    println!(
        "{label}: {} events in {:.1} s = {:.0} events/s; latency median {:.2} ms, p99 {:.2} ms; refused {}",
        s.events,
        s.elapsed.as_secs_f64(),
        s.events as f64 / s.elapsed.as_secs_f64(),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        s.refused.len()
    );
}

#[test]
fn lifecycle_churn_during_6000_calls_at_200_cps() {
    let _heavy = crate::support::heavy();
    let b = Block::new();
    let called = load_numbers(200);
    let spec = EdgeSpec { tcp: false, ..one_carrier(b, "udp", &called) };
    let edge = Edge::start(b, spec);
    let churned: Vec<String> = (0..3000).map(|i| format!("+1206{:07}", 7_000_000 + i)).collect();

    let dir = tempfile::tempdir().unwrap();
    let _uas = uas(b.ip(10), "uas_200.xml", "u1", dir.path());
    let stop = Arc::new(AtomicBool::new(false));
    let swaps0 = edge.metric("sipedge_routing_swaps_total").unwrap_or(0.0);
    // 300 events/s asked of two keep-alive connections, while SIPp runs.
    let events = run_churn(edge.admin, &churned, 2, 300.0, &stop, &HashMap::new());
    let dialed: Vec<&str> = called.iter().map(|n| n.trim_start_matches('+')).collect();
    let r = uac(b.ip(2), edge.sip, "uac_rr.xml", "u1", 200, 6000, &dialed, &[], dir.path());
    stop.store(true, Ordering::Relaxed);
    let during = events.join().unwrap();
    report("churn during SIPp", &during);
    assert_eq!((r.ok, r.failed), (6000, 0), "no call fails during churn:\n{}", r.stat);
    assert!(
        during.refused.is_empty(),
        "every event acknowledged: {:?}",
        &during.refused[..during.refused.len().min(5)]
    );
    assert!(during.events > 1000, "the churn ran alongside the calls ({} events)", during.events);

    // Unpaced, calls done: what the control plane can do on this machine.
    let stop = Arc::new(AtomicBool::new(false));
    let flat = run_churn(edge.admin, &churned, 2, 0.0, &stop, &during.states);
    std::thread::sleep(Duration::from_secs(5));
    stop.store(true, Ordering::Relaxed);
    let max = flat.join().unwrap();
    report("churn alone, unpaced", &max);
    assert!(max.refused.is_empty(), "{:?}", &max.refused[..max.refused.len().min(5)]);

    // The edge agrees with the client on every churned number, and every event swapped the table.
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut after = String::new();
    loop {
        let page = ok(&edge, "GET", &format!("/v1/numbers?limit=1000{after}"), None);
        for n in page["numbers"].as_array().unwrap() {
            seen.insert(n["e164"].as_str().unwrap().to_owned(), n["state"].as_str().unwrap().to_owned());
        }
        match page["next_after"].as_str() {
            Some(a) => after = format!("&after={}", a.replace('+', "%2B")),
            None => break,
        }
    }
    for (n, st) in &max.states {
        let want = match st {
            St::Unclaimed => None,
            St::Active => Some("active"),
            St::Released => Some("released"),
        };
        assert_eq!(seen.get(n).map(String::as_str), want, "{n}");
    }
    for n in &called {
        assert_eq!(seen.get(n).map(String::as_str), Some("active"), "{n}");
    }
    let swaps = edge.metric("sipedge_routing_swaps_total").unwrap_or(0.0) - swaps0;
    assert!(swaps >= (during.events + max.events) as f64, "{swaps} swaps for {} events", during.events + max.events);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(edge.metric("sipedge_active_calls"), Some(0.0), "every slot released");
}
