//! The call-records writer: one JSON line per finished call (SPEC §11), to
//! `[records] path`.
//!
//! Shards hand records over a bounded queue to one thread that owns the
//! file; a full queue, a full disk or a file that cannot be opened drops the
//! record and counts it, so a slow or failing disk never holds up a call.
//! The file is opened for append and reopened on SIGHUP (logrotate renames
//! it, then signals). The writer wakes every 50 ms, writes what is queued
//! and flushes, so a record reaches the file within 50 ms of its call's end.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::metrics as m;
use crate::proxy::{CallRecord, HopAnswer};

/// Records waiting for the writer before new ones are dropped.
pub const RECORDS_QUEUE: usize = 8192;

/// How often the writer takes what is queued: a record reaches the file
/// within this of its call's end.
const WRITE_TICK: Duration = Duration::from_millis(50);

/// How often a shut-down waits to see the queue written out.
const SETTLE_POLL: Duration = Duration::from_millis(10);

/// The handle shards hold; off when no path is configured.
#[derive(Clone, Default)]
pub struct Records {
    tx: Option<SyncSender<Box<CallRecord>>>,
    shared: Arc<WriterState>,
}

/// What the handle and the writer thread share.
#[derive(Default)]
struct WriterState {
    /// Set by SIGHUP: the writer reopens the file before its next line.
    reopen: AtomicBool,
    /// Records queued and not yet written or dropped.
    in_flight: AtomicUsize,
}

impl Records {
    /// Records switched off.
    pub fn off() -> Records {
        Records::default()
    }

    /// Starts the writer thread for `path`. A file that cannot be opened yet
    /// is not fatal: every record until it can be is dropped and counted.
    pub fn start(path: PathBuf) -> io::Result<Records> {
        let (tx, rx) = mpsc::sync_channel(RECORDS_QUEUE);
        let shared = Arc::new(WriterState::default());
        let state = shared.clone();
        std::thread::Builder::new().name("sipedge-records".into()).spawn(move || write_loop(&path, &rx, &state))?;
        Ok(Records { tx: Some(tx), shared })
    }

    /// Whether records are on (the core builds none otherwise).
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues one finished call's record; never waits.
    pub fn push(&self, rec: Box<CallRecord>) {
        let Some(tx) = &self.tx else { return };
        self.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(rec) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
                metrics::counter!(m::RECORDS_DROPS_TOTAL).increment(1);
            }
        }
    }

    /// Reopens the file before the next record (SIGHUP, after logrotate).
    pub fn reopen(&self) {
        self.shared.reopen.store(true, Ordering::Relaxed);
    }

    /// Waits up to `limit` for the queued records to be written (shutdown).
    pub fn settle(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.is_on() && self.shared.in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < until {
            std::thread::sleep(SETTLE_POLL);
        }
    }
}

/// The open file, or none until it can be (re)opened.
struct Sink<'a> {
    path: &'a Path,
    file: Option<BufWriter<File>>,
    /// Lines in the buffer since the last flush: lost together if it fails.
    buffered: u64,
    /// Whether the last failure was already logged (one line per outage).
    warned: bool,
}

impl Sink<'_> {
    fn open(&mut self) -> Option<&mut BufWriter<File>> {
        if self.file.is_none() {
            match OpenOptions::new().create(true).append(true).open(self.path) {
                Ok(f) => {
                    if self.warned {
                        tracing::info!(path = %self.path.display(), "call records file writable again");
                    }
                    self.warned = false;
                    self.file = Some(BufWriter::new(f));
                }
                Err(e) => self.failed(&e),
            }
        }
        self.file.as_mut()
    }

    fn failed(&mut self, e: &io::Error) {
        if !self.warned {
            tracing::warn!(path = %self.path.display(), error = %e, "call records cannot be written: dropping them");
            self.warned = true;
        }
        self.file = None;
    }

    fn write(&mut self, line: &[u8]) {
        let Some(f) = self.open() else {
            metrics::counter!(m::RECORDS_DROPS_TOTAL).increment(1);
            return;
        };
        match f.write_all(line) {
            Ok(()) => self.buffered += 1,
            Err(e) => {
                // The line and whatever the buffer held are lost together.
                metrics::counter!(m::RECORDS_DROPS_TOTAL).increment(self.buffered + 1);
                self.buffered = 0;
                self.failed(&e);
            }
        }
    }

    fn flush(&mut self) {
        let Some(f) = self.file.as_mut() else { return };
        match f.flush() {
            Ok(()) => metrics::counter!(m::RECORDS_TOTAL).increment(self.buffered),
            Err(e) => {
                metrics::counter!(m::RECORDS_DROPS_TOTAL).increment(self.buffered);
                self.failed(&e);
            }
        }
        self.buffered = 0;
    }
}

fn write_loop(path: &Path, rx: &Receiver<Box<CallRecord>>, state: &WriterState) {
    let clock = Clock::now();
    let mut sink = Sink { path, file: None, buffered: 0, warned: false };
    let mut line = Vec::with_capacity(512);
    loop {
        // Polls: a parked writer would be woken (a futex and a context
        // switch on the shard) for every record.
        let mut taken = 0usize;
        let mut open = true;
        loop {
            match rx.try_recv() {
                Ok(rec) => {
                    if state.reopen.swap(false, Ordering::Relaxed) {
                        sink.flush();
                        sink.file = None;
                    }
                    line.clear();
                    if serde_json::to_writer(&mut line, &Line::of(&rec, &clock)).is_ok() {
                        line.push(b'\n');
                        sink.write(&line);
                    }
                    taken += 1;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        sink.flush();
        state.in_flight.fetch_sub(taken, Ordering::Relaxed);
        if !open {
            return;
        }
        std::thread::sleep(WRITE_TICK);
    }
}

/// Turns the core's `Instant`s into wall-clock time, from one reading of both clocks.
struct Clock {
    instant: Instant,
    wall: SystemTime,
}

impl Clock {
    fn now() -> Clock {
        Clock { instant: Instant::now(), wall: SystemTime::now() }
    }

    fn wall(&self, at: Instant) -> SystemTime {
        match at.checked_duration_since(self.instant) {
            Some(after) => self.wall + after,
            None => self.wall - self.instant.saturating_duration_since(at),
        }
    }
}

/// One line of the file, with SPEC §11's field names.
#[derive(Serialize)]
struct Line<'a> {
    call_id: &'a str,
    direction: &'static str,
    number: Option<&'a str>,
    kind: Option<&'static str>,
    carrier: Option<&'a str>,
    flow: Option<&'a str>,
    hops: Vec<Hop<'a>>,
    az: Option<&'a str>,
    outcome: &'static str,
    status: u16,
    started_at: String,
    setup_ms: u64,
    duration_s: f64,
    ended_by: &'static str,
}

/// One tried hop: its final status, or `error` when it gave none.
#[derive(Serialize)]
struct Hop<'a> {
    addr: String,
    group: &'a str,
    az: &'a str,
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

impl<'a> Line<'a> {
    fn of(r: &'a CallRecord, clock: &Clock) -> Line<'a> {
        let hops = r
            .hops
            .iter()
            .map(|h| {
                let (status, error) = match h.answer {
                    Some(HopAnswer::Status(s)) => (Some(s), None),
                    Some(HopAnswer::Timeout) => (None, Some("timeout")),
                    Some(HopAnswer::Unreachable) => (None, Some("unreachable")),
                    None => (None, Some("no_answer")),
                };
                Hop { addr: h.addr.to_string(), group: &h.group, az: &h.az, status, error }
            })
            .collect();
        Line {
            call_id: &r.call_id,
            direction: r.direction.as_str(),
            number: r.number.as_deref(),
            kind: r.kind,
            carrier: r.carrier.as_deref(),
            flow: r.flow.as_deref(),
            hops,
            az: r.az.as_deref(),
            outcome: r.outcome,
            status: r.status,
            started_at: humantime::format_rfc3339_millis(clock.wall(r.started)).to_string(),
            // Milliseconds are what a record needs; f64 noise beyond them is not.
            setup_ms: r.setup_ms,
            duration_s: (r.duration_s * 1000.0).round() / 1000.0,
            ended_by: r.ended_by.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::{Direction, EndedBy, HopTry};

    fn record(started: Instant) -> CallRecord {
        CallRecord {
            call_id: "abc@host".into(),
            direction: Direction::Inbound,
            number: Some("+18005550100".into()),
            kind: Some("toll-free"),
            carrier: Some("carrier-a".into()),
            flow: Some("flow-1".into()),
            hops: vec![
                HopTry {
                    addr: "127.0.0.2:5060".parse().unwrap(),
                    group: "flow-engine".into(),
                    az: "az1".into(),
                    answer: Some(HopAnswer::Timeout),
                },
                HopTry {
                    addr: "127.0.0.3:5060".parse().unwrap(),
                    group: "flow-engine".into(),
                    az: "az2".into(),
                    answer: Some(HopAnswer::Status(200)),
                },
            ],
            az: Some("az2".into()),
            outcome: "answered",
            status: 200,
            started,
            setup_ms: 812,
            duration_s: 12.3456,
            ended_by: EndedBy::Caller,
        }
    }

    #[test]
    fn a_line_has_every_spec_field() {
        let clock = Clock::now();
        let rec = record(clock.instant);
        let v: serde_json::Value = serde_json::to_value(Line::of(&rec, &clock)).unwrap();
        for f in [
            "call_id",
            "direction",
            "number",
            "kind",
            "carrier",
            "flow",
            "hops",
            "az",
            "outcome",
            "status",
            "started_at",
            "setup_ms",
            "duration_s",
            "ended_by",
        ] {
            assert!(v.get(f).is_some(), "{f} missing in {v}");
        }
        assert_eq!(v["hops"][0]["error"], "timeout");
        assert_eq!(v["hops"][0]["status"], serde_json::Value::Null);
        assert_eq!(v["hops"][1]["status"], 200);
        assert_eq!(v["duration_s"], 12.346);
        assert_eq!(v["ended_by"], "caller");
        let at = v["started_at"].as_str().unwrap();
        let parsed = humantime::parse_rfc3339(at).unwrap();
        let back = parsed.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i128;
        let want = clock.wall.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as i128;
        assert!((back - want).abs() <= 1, "{at}");
    }

    #[test]
    fn instants_before_the_clock_reading_map_back() {
        let clock = Clock::now();
        std::thread::sleep(Duration::from_millis(5));
        let later = Clock::now();
        let at = later.wall(clock.instant);
        let diff = clock.wall.duration_since(at).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_millis(2), "{diff:?}");
    }

    #[test]
    fn records_reach_the_file_and_a_reopen_follows_a_rename() {
        let dir = std::env::temp_dir().join(format!("sipedge-records-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("calls.jsonl");
        let rotated = dir.join("calls.jsonl.1");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&rotated);
        let records = Records::start(path.clone()).unwrap();
        records.push(Box::new(record(Instant::now())));
        records.settle(Duration::from_secs(5));
        std::fs::rename(&path, &rotated).unwrap();
        records.reopen();
        records.push(Box::new(record(Instant::now())));
        records.push(Box::new(record(Instant::now())));
        records.settle(Duration::from_secs(5));
        let lines = |p: &Path| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(lines(&rotated), 1);
        assert_eq!(lines(&path), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
