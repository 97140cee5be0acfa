//! Every metric name, once (SPEC §7), with its description and the helpers
//! the hot path calls. Label-free and fixed-label handles are registered once
//! and cached, so counting a message is one atomic add.

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Gauge, Unit};
use std::sync::OnceLock;

use crate::sip::Transport;

/// Calls by direction (inbound/outbound) and outcome (answered, refused reason, ...).
pub const CALLS_TOTAL: &str = "sipedge_calls_total";
/// Calls holding a concurrency slot right now.
pub const ACTIVE_CALLS: &str = "sipedge_active_calls";
/// The most calls the instance ever held at once (admission's high-water mark).
pub const ACTIVE_CALLS_HIGH_WATER: &str = "sipedge_active_calls_high_water";
/// Per number that reached its cap (label `number`): the most calls it held at once.
pub const NUMBER_CALLS_HIGH_WATER: &str = "sipedge_number_calls_high_water";
/// Established dialogs right now.
pub const ACTIVE_DIALOGS: &str = "sipedge_active_dialogs";
/// Failovers away from a next hop, by carrier and AZ.
pub const FAILOVERS_TOTAL: &str = "sipedge_failovers_total";
/// Next hops of a carrier (or the flow engine) in an AZ that are up (damped by the health checks); 0 = that AZ is lost.
pub const LINK_UP: &str = "sipedge_link_up";
/// Routing snapshots published.
pub const ROUTING_SWAPS_TOTAL: &str = "sipedge_routing_swaps_total";
/// Routing-table compactions (delta folded into a new base; content unchanged).
pub const ROUTING_COMPACTIONS_TOTAL: &str = "sipedge_routing_compactions_total";
/// SIP messages by transport and kind (received, sent).
pub const SIP_MESSAGES_TOTAL: &str = "sipedge_sip_messages_total";
/// Messages that could not be parsed (answered 400 or dropped).
pub const PARSE_ERRORS_TOTAL: &str = "sipedge_parse_errors_total";
/// In-dialog requests for dialogs this process does not remember, by
/// `result`: `routed` on their Record-Route token, `refused` (481).
pub const DIALOG_TOKEN_TOTAL: &str = "sipedge_dialog_token_requests_total";
/// Cluster number events applied from the Redis stream.
pub const CLUSTER_EVENTS_APPLIED_TOTAL: &str = "sipedge_cluster_events_applied_total";
/// Age of the last applied cluster event when it was applied (its stream id's clock).
pub const CLUSTER_EVENT_LAG_SECONDS: &str = "sipedge_cluster_event_lag_seconds";
/// Messages dropped by flood control, by reason.
pub const FLOOD_DROPS_TOTAL: &str = "sipedge_flood_dropped_total";
/// Sources banned by flood control.
pub const FLOOD_BANS_TOTAL: &str = "sipedge_flood_bans_total";
/// TCP connections closed for hitting a limit, by limit.
pub const TCP_LIMIT_CLOSES_TOTAL: &str = "sipedge_tcp_limit_closes_total";
/// Open TCP connections.
pub const TCP_CONNECTIONS: &str = "sipedge_tcp_connections";
/// Gauge: open TLS connections (counted in the `[tcp]` limits with TCP's).
pub const TLS_CONNECTIONS: &str = "sipedge_tls_connections";
/// Counter: TLS handshakes that failed or timed out, by `side` (`server`: a
/// client of ours, `client`: a next hop we connected to).
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "sipedge_tls_handshake_failures_total";
/// Messages dropped because a shard's queue was full.
pub const QUEUE_DROPS_TOTAL: &str = "sipedge_queue_dropped_total";
/// HEP capture copies dropped (queue full, too large, send failed).
pub const HEP_DROPS_TOTAL: &str = "sipedge_hep_dropped_total";
/// Call records written to `[records] path`.
pub const RECORDS_TOTAL: &str = "sipedge_records_written_total";
/// Call records dropped (queue full, disk full, file not writable).
pub const RECORDS_DROPS_TOTAL: &str = "sipedge_records_dropped_total";
/// 1 while Redis answers (cluster mode), 0 while admission runs by `on_backend_down`.
pub const CLUSTER_UP: &str = "sipedge_cluster_up";
/// Seconds one shared-admission round trip to Redis took.
pub const CLUSTER_ADMIT_SECONDS: &str = "sipedge_cluster_admit_seconds";
/// Cluster admits and releases not queued for the Redis task (queue full).
pub const CLUSTER_QUEUE_DROPS_TOTAL: &str = "sipedge_cluster_queue_dropped_total";
/// Leases this instance holds in Redis (its live calls to capped numbers).
pub const CLUSTER_LEASES: &str = "sipedge_cluster_leases";
/// Calls admitted while Redis could not answer, by policy (`local_share`, `fail_open`, `fail_closed`) and result.
pub const CLUSTER_FALLBACK_TOTAL: &str = "sipedge_cluster_fallback_total";
/// Calls up with a carrier right now, both directions (label `carrier`).
pub const CARRIER_ACTIVE_CALLS: &str = "sipedge_carrier_active_calls";
/// Calls a carrier's limits refused, by `carrier` and `reason` (`max_concurrent`, `max_cps`, `fair_share`).
pub const CARRIER_REFUSED_TOTAL: &str = "sipedge_carrier_refused_total";
/// First tries per next hop (labels `group`, `az`, `addr`): how the weighted draw spread new calls.
pub const HOP_CALLS_TOTAL: &str = "sipedge_hop_calls_total";
/// Histogram buckets for a Redis round trip: 100 µs to 1 s.
pub const ADMIT_BUCKETS: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
/// Seconds from an INVITE received to its final answer sent, by direction.
pub const SETUP_SECONDS: &str = "sipedge_setup_seconds";
/// Seconds an established call lasted, by direction.
pub const CALL_DURATION_SECONDS: &str = "sipedge_call_duration_seconds";
/// The instance's concurrency cap (`limits.max_concurrent_calls`; 0 = none), to plot active calls against.
pub const MAX_CONCURRENT_CALLS: &str = "sipedge_max_concurrent_calls";
/// 1 while the edge drains (SIGTERM, `POST /v1/drain`): new calls refused, calls in progress go on.
pub const DRAINING: &str = "sipedge_draining";
/// Histogram buckets for call set-up: 1 ms to 30 s.
pub const SETUP_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Histogram buckets for call duration: 1 s to 4 h.
pub const DURATION_BUCKETS: &[f64] =
    &[1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0];

struct Handles {
    udp_in: Counter,
    udp_out: Counter,
    tcp_in: Counter,
    tcp_out: Counter,
    tls_in: Counter,
    tls_out: Counter,
    parse_errors: Counter,
    dialogs: Gauge,
}

static HANDLES: OnceLock<Handles> = OnceLock::new();

fn handles() -> &'static Handles {
    HANDLES.get_or_init(|| Handles {
        udp_in: counter!(SIP_MESSAGES_TOTAL, "transport" => "udp", "kind" => "received"),
        udp_out: counter!(SIP_MESSAGES_TOTAL, "transport" => "udp", "kind" => "sent"),
        tcp_in: counter!(SIP_MESSAGES_TOTAL, "transport" => "tcp", "kind" => "received"),
        tcp_out: counter!(SIP_MESSAGES_TOTAL, "transport" => "tcp", "kind" => "sent"),
        tls_in: counter!(SIP_MESSAGES_TOTAL, "transport" => "tls", "kind" => "received"),
        tls_out: counter!(SIP_MESSAGES_TOTAL, "transport" => "tls", "kind" => "sent"),
        parse_errors: counter!(PARSE_ERRORS_TOTAL),
        dialogs: gauge!(ACTIVE_DIALOGS),
    })
}

/// Describes every metric (call once at start, after installing the recorder).
pub fn describe() {
    describe_counter!(CALLS_TOTAL, "Calls by direction and outcome");
    describe_gauge!(ACTIVE_CALLS, "Calls holding a concurrency slot");
    describe_gauge!(ACTIVE_CALLS_HIGH_WATER, "Most calls ever holding a slot at once");
    describe_gauge!(NUMBER_CALLS_HIGH_WATER, "Most calls at once, for numbers that reached their cap");
    describe_gauge!(ACTIVE_DIALOGS, "Established dialogs");
    describe_counter!(FAILOVERS_TOTAL, "Failovers away from a next hop");
    describe_gauge!(LINK_UP, "Next hops up for a carrier and AZ (0 = none)");
    describe_counter!(ROUTING_SWAPS_TOTAL, "Routing snapshots published");
    describe_counter!(ROUTING_COMPACTIONS_TOTAL, "Routing delta folded into a new base");
    describe_counter!(SIP_MESSAGES_TOTAL, "SIP messages by transport and kind");
    describe_counter!(PARSE_ERRORS_TOTAL, "Unparseable SIP messages");
    describe_counter!(FLOOD_DROPS_TOTAL, "Messages refused by flood control");
    describe_counter!(FLOOD_BANS_TOTAL, "Sources banned by flood control");
    describe_counter!(TCP_LIMIT_CLOSES_TOTAL, "TCP connections closed at a limit");
    describe_gauge!(TCP_CONNECTIONS, "Open TCP connections");
    describe_gauge!(TLS_CONNECTIONS, "Open TLS connections");
    describe_counter!(TLS_HANDSHAKE_FAILURES_TOTAL, "TLS handshakes failed or timed out");
    describe_counter!(QUEUE_DROPS_TOTAL, "Messages dropped at a full shard queue");
    describe_counter!(HEP_DROPS_TOTAL, "HEP capture copies dropped");
    describe_histogram!(SETUP_SECONDS, Unit::Seconds, "INVITE received to its final answer sent");
    describe_histogram!(CALL_DURATION_SECONDS, Unit::Seconds, "Established call duration");
    describe_gauge!(MAX_CONCURRENT_CALLS, "The instance's concurrency cap (0 = none)");
    describe_gauge!(CLUSTER_UP, "1 while Redis answers (cluster mode)");
    describe_histogram!(CLUSTER_ADMIT_SECONDS, Unit::Seconds, "Shared-admission round trip to Redis");
    describe_counter!(CLUSTER_QUEUE_DROPS_TOTAL, "Cluster admits and releases not queued");
    describe_gauge!(CLUSTER_LEASES, "Leases this instance holds in Redis");
    describe_counter!(CLUSTER_FALLBACK_TOTAL, "Calls decided by on_backend_down while Redis could not answer");
    describe_gauge!(CARRIER_ACTIVE_CALLS, "Calls up with a carrier, both directions");
    describe_counter!(CARRIER_REFUSED_TOTAL, "Calls refused by a carrier's limits or its fair share");
    describe_counter!(HOP_CALLS_TOTAL, "New calls whose first try went to this next hop");
    describe_counter!(RECORDS_TOTAL, "Call records written");
    describe_counter!(RECORDS_DROPS_TOTAL, "Call records dropped");
    describe_gauge!(DRAINING, "1 while the edge drains");
    describe_counter!(CLUSTER_EVENTS_APPLIED_TOTAL, "Cluster number events applied from the Redis stream");
    describe_gauge!(CLUSTER_EVENT_LAG_SECONDS, "Age of the last cluster number event when applied");
    describe_counter!(DIALOG_TOKEN_TOTAL, "In-dialog requests routed on (or refused for) their Record-Route token");
    counter!(DIALOG_TOKEN_TOTAL, "result" => "routed").increment(0);
    counter!(DIALOG_TOKEN_TOTAL, "result" => "refused").increment(0);
    gauge!(DRAINING).set(0.0);
    counter!(HEP_DROPS_TOTAL).increment(0);
    counter!(RECORDS_TOTAL).increment(0);
    counter!(RECORDS_DROPS_TOTAL).increment(0);
    // Register the zero values so a scrape shows them before the first event.
    let _ = handles();
    counter!(ROUTING_SWAPS_TOTAL).increment(0);
    gauge!(ACTIVE_CALLS).set(0.0);
}

/// An in-dialog request for a dialog not in memory was routed on its token
/// (`true`) or refused with 481 (`false`).
pub fn dialog_token(routed: bool) {
    counter!(DIALOG_TOKEN_TOTAL, "result" => if routed { "routed" } else { "refused" }).increment(1);
}

/// A cluster event stamped `ms` (Redis clock, Unix ms) was applied.
pub fn cluster_event_applied(ms: u64) {
    counter!(CLUSTER_EVENTS_APPLIED_TOTAL).increment(1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    gauge!(CLUSTER_EVENT_LAG_SECONDS).set(now.saturating_sub(ms) as f64 / 1000.0);
}

/// A message arrived.
pub fn message_in(t: Transport) {
    match t {
        Transport::Udp => handles().udp_in.increment(1),
        Transport::Tcp => handles().tcp_in.increment(1),
        Transport::Tls => handles().tls_in.increment(1),
    }
}

/// A message was queued for sending.
pub fn message_out(t: Transport) {
    match t {
        Transport::Udp => handles().udp_out.increment(1),
        Transport::Tcp => handles().tcp_out.increment(1),
        Transport::Tls => handles().tls_out.increment(1),
    }
}

/// A message could not be parsed.
pub fn parse_error() {
    handles().parse_errors.increment(1);
}

/// The `sipedge_calls_total` series every call touches (started, answered),
/// each registered on first use: the registry lookup by labels costs far
/// more than the increment.
static CALL_SERIES: [[OnceLock<Counter>; 2]; 2] =
    [[OnceLock::new(), OnceLock::new()], [OnceLock::new(), OnceLock::new()]];

/// The cached handle of a common `sipedge_calls_total` series, if it is one.
fn call_series(direction: &'static str, outcome: &'static str) -> Option<&'static Counter> {
    let d = match direction {
        "inbound" => 0,
        "outbound" => 1,
        _ => return None,
    };
    let o = match outcome {
        "started" => 0,
        "answered" => 1,
        _ => return None,
    };
    let cell = CALL_SERIES.get(d)?.get(o)?;
    Some(cell.get_or_init(|| counter!(CALLS_TOTAL, "direction" => direction, "outcome" => outcome)))
}

/// A call was admitted and forwarded.
pub fn call_started(direction: &'static str) {
    call_outcome(direction, "started");
}

/// A call's outcome.
pub fn call_outcome(direction: &'static str, outcome: &'static str) {
    match call_series(direction, outcome) {
        Some(c) => c.increment(1),
        None => counter!(CALLS_TOTAL, "direction" => direction, "outcome" => outcome).increment(1),
    }
}

/// A failover away from a next hop.
pub fn failover(carrier: &str, az: &str) {
    counter!(FAILOVERS_TOTAL, "carrier" => carrier.to_string(), "az" => az.to_string()).increment(1);
}

/// A dialog was established.
pub fn active_dialogs_inc() {
    handles().dialogs.increment(1.0);
}

/// A dialog ended.
pub fn active_dialogs_dec() {
    handles().dialogs.decrement(1.0);
}

/// An INVITE got its final answer `secs` after it arrived.
pub fn setup_seconds(direction: &'static str, secs: f64) {
    histogram!(SETUP_SECONDS, "direction" => direction).record(secs);
}

/// An established call ended after `secs`.
pub fn call_duration_seconds(direction: &'static str, secs: f64) {
    histogram!(CALL_DURATION_SECONDS, "direction" => direction).record(secs);
}

/// The instance cap now in force (at start and on reload).
pub fn instance_cap(n: u32) {
    gauge!(MAX_CONCURRENT_CALLS).set(f64::from(n));
}

/// The edge started (or, in tests, stopped) draining.
pub fn draining(on: bool) {
    gauge!(DRAINING).set(if on { 1.0 } else { 0.0 });
}
