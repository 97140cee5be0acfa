//! Command line: `sipedge --config FILE` runs the edge, `sipedge check`
//! validates a config, `sipedge ctl` drives the control plane.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::app::Stop;
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
    let cfg = match Config::load_without_seed(path) {
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
    let res = rt.block_on(async {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(signals(tx));
        crate::app::run(cfg, rx).await
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Turns signals into [`Stop`]s: the first SIGTERM drains, a second one (or
/// SIGINT) stops at once. Runs for the edge's life: dropping the sender
/// would stop the edge.
async fn signals(tx: tokio::sync::mpsc::UnboundedSender<Stop>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            let mut terms = 0u32;
            loop {
                let stop = tokio::select! {
                    _ = term.recv() => {
                        terms += 1;
                        if terms == 1 { Stop::Drain } else { Stop::Now }
                    }
                    _ = int.recv() => Stop::Now,
                };
                if tx.send(stop).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    let _ = tx.send(Stop::Now);
    // Keep the sender: a closed channel would read as another stop.
    std::future::pending::<()>().await;
}
