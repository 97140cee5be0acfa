//! Log set-up: stderr, `RUST_LOG` filter (default `info`), text or JSON lines.

use crate::config::LogFormat;

/// Installs the global subscriber. In JSON each line is one object; a line
/// logged inside a call's span carries that span's `call_id` under `span`.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => b.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
        LogFormat::Json => b.json().with_current_span(true).with_span_list(false).try_init(),
    };
}
