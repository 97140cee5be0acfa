//! The `sipedge` binary: parse the command line, log to stderr, run.
use clap::Parser;

/// mimalloc instead of glibc malloc: the shard threads allocate from glibc's
/// non-main arenas, which grow and shrink with sysmalloc + mprotect (about
/// 10% of a shard thread's time under load); mimalloc's thread-local free
/// lists also take fewer instructions per allocation (`examples/core_calls`).
/// The binary only: the library leaves the choice to whoever links it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
