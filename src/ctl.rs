//! `sipedge ctl`: the command-line client of the control plane.

use std::path::Path;
use std::process::ExitCode;

/// `sipedge ctl` arguments.
#[derive(clap::Args, Debug)]
pub struct CtlArgs {
    /// Control-plane address (default: `[admin].addr` of the config).
    #[arg(long)]
    pub admin: Option<String>,
}

/// Runs a ctl command.
pub fn run(_config: &Path, _args: CtlArgs) -> ExitCode {
    eprintln!("error: ctl is not built yet");
    ExitCode::FAILURE
}
