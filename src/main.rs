//! The `sipedge` binary: parse the command line, run (logging is set up
//! once the config, which picks the log format, is read).
use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = sipedge::cli::Cli::parse();
    sipedge::cli::run(cli)
}
