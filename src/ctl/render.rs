//! Readable forms of the control plane's answers: aligned `key: value` lines
//! for one object, one row per item for lists.

use serde_json::Value;

/// A scalar or array as text: strings bare, `null` as `-`, arrays comma-joined.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// `key: value` lines, `first` keys in that order, then the rest (sorted).
fn object(v: &Value, first: &[&str]) -> String {
    let Some(obj) = v.as_object() else { return format!("{}\n", text(v)) };
    let mut keys: Vec<&str> = first.iter().copied().filter(|k| obj.contains_key(*k)).collect();
    let mut rest: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !first.contains(k)).collect();
    rest.sort_unstable();
    keys.extend(rest);
    let width = keys.iter().map(|k| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for k in keys {
        let val = obj.get(k).map(text).unwrap_or_default();
        out.push_str(&format!("{:<width$} {val}\n", format!("{k}:")));
    }
    out
}

/// Rows with aligned columns; the first row is the header.
fn table(rows: Vec<Vec<String>>) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> =
        (0..cols).map(|i| rows.iter().filter_map(|r| r.get(i)).map(String::len).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

const NUMBER_KEYS: &[&str] = &[
    "e164",
    "state",
    "routing",
    "kind",
    "flow",
    "carriers",
    "max_concurrent",
    "effective_max_concurrent",
    "active_calls",
    "cnam",
    "released_at_unix_s",
    "restorable_until_unix_s",
    "order",
];

/// One number.
pub fn render_number(v: &Value) -> String {
    object(v, NUMBER_KEYS)
}

/// A page of numbers, with how to get the next one.
pub fn render_number_page(v: &Value) -> String {
    let mut rows =
        vec![["NUMBER", "STATE", "ROUTING", "KIND", "FLOW", "CARRIERS", "ACTIVE"].map(String::from).to_vec()];
    let items = v.get("numbers").and_then(Value::as_array).cloned().unwrap_or_default();
    for n in &items {
        let f = |k: &str| n.get(k).map(text).unwrap_or_default();
        rows.push(vec![f("e164"), f("state"), f("routing"), f("kind"), f("flow"), f("carriers"), f("active_calls")]);
    }
    let mut out = table(rows);
    let total = v.get("total").map(text).unwrap_or_default();
    out.push_str(&format!("{} shown, {total} in the table", items.len()));
    if let Some(next) = v.get("next_after").and_then(Value::as_str) {
        out.push_str(&format!("; next page: --after {next}"));
    }
    out.push('\n');
    out
}

/// One port order.
pub fn render_port(v: &Value) -> String {
    object(v, &["id", "direction", "status", "numbers", "carriers", "flow", "window_start_unix_s"])
}

/// Every port order.
pub fn render_port_list(v: &Value) -> String {
    let mut rows = vec![["ID", "DIRECTION", "STATUS", "NUMBERS"].map(String::from).to_vec()];
    for p in v.get("ports").and_then(Value::as_array).into_iter().flatten() {
        let f = |k: &str| p.get(k).map(text).unwrap_or_default();
        rows.push(vec![f("id"), f("direction"), f("status"), f("numbers")]);
    }
    table(rows)
}

/// `ctl carriers`: one row per link, its carrier's counts and limits
/// repeated; then the flow-engine endpoints (group `flow-engine`).
pub fn render_carriers(v: &Value) -> String {
    let head = ["CARRIER", "ACTIVE", "MAX_CONCURRENT", "MAX_CPS", "AZ", "LINK", "PRIO", "WEIGHT", "UP", "DRAIN"];
    let mut rows = vec![head.map(String::from).to_vec()];
    let mut row = |group: &[String; 4], l: &Value| {
        let g = |k: &str| l.get(k).map(text).unwrap_or_default();
        let mut r = group.to_vec();
        r.extend([
            g("az"),
            format!("{}/{}", g("addr"), g("transport")),
            g("priority"),
            g("weight"),
            g("up"),
            g("drain"),
        ]);
        rows.push(r);
    };
    for c in v.get("carriers").and_then(Value::as_array).into_iter().flatten() {
        let f = |k: &str| c.get(k).map(text).unwrap_or_default();
        let group = [f("name"), f("active_calls"), f("max_concurrent"), f("max_cps")];
        for l in c.get("links").and_then(Value::as_array).into_iter().flatten() {
            row(&group, l);
        }
    }
    let fe = ["flow-engine", "-", "-", "-"].map(String::from);
    for l in v.get("flow_engine").and_then(Value::as_array).into_iter().flatten() {
        row(&fe, l);
    }
    table(rows)
}

/// A reload report.
pub fn render_reload(v: &Value) -> String {
    object(v, &["reloaded", "carriers", "flow_engines", "needs_restart"])
}

/// `ctl cluster`.
pub fn render_cluster(v: &Value) -> String {
    object(
        v,
        &["mode", "instance", "redis_up", "instances_alive", "on_backend_down", "lease_ttl_ms", "admit_timeout_ms"],
    )
}

/// `ctl drain`.
pub fn render_drain(v: &Value) -> String {
    object(v, &["draining", "started", "live_calls"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_are_aligned_key_value_lines() {
        let v =
            json!({"e164": "+18005550100", "state": "active", "carriers": ["a", "b"], "cnam": null, "active_calls": 0});
        let out = render_number(&v);
        assert_eq!(
            out,
            "e164:         +18005550100\nstate:        active\ncarriers:     a, b\nactive_calls: 0\ncnam:         -\n"
        );
    }

    #[test]
    fn pages_say_how_to_continue() {
        let v = json!({"numbers": [{"e164": "+1", "state": "active"}], "total": 5, "next_after": "+1"});
        let out = render_number_page(&v);
        assert!(out.starts_with("NUMBER  STATE"), "{out}");
        assert!(out.ends_with("1 shown, 5 in the table; next page: --after +1\n"), "{out}");
    }
}
