//! The `sipedge` binary: parse the command line, log to stderr, run.
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = sipedge::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    sipedge::cli::run(cli)
}
