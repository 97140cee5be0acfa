//! Command line: `sipedge --config FILE` runs the edge, `sipedge check`
//! validates a config, `sipedge ctl` drives the control plane.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

/// sipedge: the carrier-facing SIP edge.
#[derive(Parser, Debug)]
#[command(name = "sipedge", version, about)]
pub struct Cli {
    /// Config file (TOML) for running the edge.
    #[arg(long, short, global = true, default_value = "config/sipedge.toml")]
    pub config: PathBuf,
    /// What to do; runs the edge when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the edge (the default).
    Run,
    /// Validate the config (and its numbers seed file); list every error; exit 0/1.
    Check,
    /// Control-plane client.
    Ctl(crate::ctl::CtlArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        None | Some(Command::Run) => run_edge(&cli.config),
        Some(Command::Check) => {
            crate::logging::init(crate::config::LogFormat::Text);
            check(&cli.config)
        }
        Some(Command::Ctl(args)) => {
            crate::logging::init(crate::config::LogFormat::Text);
            crate::ctl::run(&cli.config, args)
        }
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    match crate::config::check(path) {
        Ok(cfg) => {
            println!(
                "{}: ok ({} listener(s), {} carrier(s), {} flow-engine endpoint(s))",
                path.display(),
                cfg.listen.len(),
                cfg.carrier.len(),
                cfg.flow_engine.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("error: {e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            ExitCode::FAILURE
        }
    }
}

fn run_edge(path: &std::path::Path) -> ExitCode {
    let cfg = match Config::load(path) {
        Ok(cfg) => {
            crate::logging::init(cfg.log.format);
            cfg
        }
        Err(errors) => {
            crate::logging::init(crate::config::LogFormat::Text);
            for e in errors.iter() {
                tracing::error!("config: {e}");
                eprintln!("error: {e}");
            }
            eprintln!("{}: refusing to start with {} config error(s)", path.display(), errors.0.len());
            return ExitCode::FAILURE;
        }
    };
    // The shards run on threads of their own; this runtime carries the TCP
    // connections, the control plane and housekeeping.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let io_threads = cores.saturating_sub(cfg.edge.shards()).max(1);
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(io_threads).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(crate::app::run(cfg, shutdown_signal()));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {},
                    _ = i.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
