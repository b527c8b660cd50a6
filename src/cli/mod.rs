//! The `kanto-cm` command line (also `leda-cm ctl`). It talks to the daemon over the local
//! gRPC socket.

use std::path::PathBuf;

/// Kanto's global flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CtlArgs {
    /// The daemon's gRPC socket
    #[arg(
        long,
        global = true,
        value_name = "ADDRESS",
        default_value = "/run/container-management/container-management.sock"
    )]
    pub host: PathBuf,
    /// Seconds to wait for the daemon
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// Print debug output
    #[arg(long, global = true)]
    pub debug: bool,
}

/// Runs a `kanto-cm` invocation; returns the exit code.
pub fn run(_args: CtlArgs, help: impl FnOnce() -> String) -> anyhow::Result<i32> {
    // The commands arrive with the local API; until then the CLI only introduces itself.
    print!("{}", help());
    Ok(0)
}
