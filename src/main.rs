//! leda-cm: one multi-call binary. Called as `container-management` (or `leda-cm daemon`) it
//! is the daemon; called as `kanto-cm` (or `leda-cm ctl`) it is the command-line client;
//! with the argument pair `log-driver json-file` anywhere among its `KEY VALUE` pairs it is a
//! container's log driver, as containerd's shim starts it (see `leda_cm::logs`).

use leda_cm::{cli, daemon, logs};

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (leda-cm, Kanto container-management compatible)"
);

/// The daemon under its Kanto name.
#[derive(Debug, Parser)]
#[command(name = "container-management", version = VERSION, about = "leda-cm container management daemon")]
struct ContainerManagement {
    #[command(flatten)]
    args: daemon::DaemonArgs,
}

#[derive(Debug, Parser)]
#[command(name = "leda-cm", version = VERSION, about = "Container management for Eclipse Leda on containerd")]
struct LedaCm {
    #[command(subcommand)]
    command: Command,
}

/// For `leda-cm --help` only: `main` dispatches the subcommands before clap sees them.
#[allow(dead_code)]
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (same as `container-management`)
    Daemon(daemon::DaemonArgs),
    /// Command-line client (same as `kanto-cm`)
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Ctl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// Private registry credentials: add, list, remove (applied without a restart)
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Registry {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

fn main() {
    let argv: Vec<OsString> = std::env::args_os().collect();
    // The shim passes the pairs in random order and names the program by its path.
    if logs::options::is_driver_invocation(&argv) {
        std::process::exit(logs::run_driver(argv));
    }
    let name = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let code = match name.as_str() {
        "container-management" => run_daemon(argv),
        "kanto-cm" => run_ctl(argv),
        // Leda's registry helper.
        "sdv-kanto-ctl" => cli::registry::sdv_kanto_ctl(argv),
        // `leda-cm daemon …` and `leda-cm ctl …` behave exactly as the Kanto names do.
        _ if argv.get(1).is_some_and(|a| a == "daemon") => {
            run_daemon(renamed(&argv, "container-management"))
        }
        _ if argv.get(1).is_some_and(|a| a == "ctl") => run_ctl(renamed(&argv, "kanto-cm")),
        _ if argv.get(1).is_some_and(|a| a == "registry") => cli::registry::main(argv),
        _ => match LedaCm::try_parse_from(&argv) {
            // Subcommands were dispatched above; clap only prints help and version here.
            Ok(_) => 2,
            Err(e) => exit_for_usage(e, 2),
        },
    };
    std::process::exit(code);
}

/// `leda-cm SUB args…` as `NAME args…`.
fn renamed(argv: &[OsString], name: &str) -> Vec<OsString> {
    let mut out = vec![OsString::from(name)];
    out.extend(argv.iter().skip(2).cloned());
    out
}

fn run_daemon(argv: Vec<OsString>) -> i32 {
    match ContainerManagement::try_parse_from(argv) {
        Ok(cm) => daemon::run(cm.args),
        // systemd must not restart-loop on a wrong flag either.
        Err(e) => exit_for_usage(e, daemon::exit::USAGE),
    }
}

fn run_ctl(argv: Vec<OsString>) -> i32 {
    cli::main(argv)
}

/// Prints clap's message; help and version are not errors.
fn exit_for_usage(e: clap::Error, usage_code: i32) -> i32 {
    let _ = e.print();
    if e.use_stderr() {
        usage_code
    } else {
        0
    }
}
