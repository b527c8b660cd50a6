//! leda-cm: one multi-call binary. Called as `container-management` (or `leda-cm daemon`) it
//! is the daemon; called as `kanto-cm` (or `leda-cm ctl`) it is the command-line client;
//! with the argument pair `log-driver json-file` anywhere among its `KEY VALUE` pairs it is a
//! container's log driver, as containerd's shim starts it (see `leda_cm::logs`).

use leda_cm::cli::flags::{self, Flag, Kind};
use leda_cm::{cli, daemon, logs};

use std::ffi::OsString;
use std::path::{Path, PathBuf};

const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (leda-cm, Kanto container-management compatible)"
);

const LEDA_CM_HELP: &str = "Container management for Eclipse Leda on containerd

Usage:
  leda-cm [command]

Available Commands:
  ctl         Command-line client (same as kanto-cm)
  daemon      Run the daemon (same as container-management)
  registry    Private registry credentials: add, list, remove (applied without a restart)

Flags:
  -h, --help      help for leda-cm
  -v, --version   version for leda-cm
";

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
        "kanto-cm" => cli::main(argv),
        // Leda's registry helper.
        "sdv-kanto-ctl" => cli::registry::sdv_kanto_ctl(argv),
        // `leda-cm daemon …` and `leda-cm ctl …` behave exactly as the Kanto names do.
        _ if argv.get(1).is_some_and(|a| a == "daemon") => {
            run_daemon(renamed(&argv, "container-management"))
        }
        _ if argv.get(1).is_some_and(|a| a == "ctl") => cli::main(renamed(&argv, "kanto-cm")),
        _ if argv.get(1).is_some_and(|a| a == "registry") => cli::registry::main(argv),
        _ => leda_cm_itself(&argv),
    };
    std::process::exit(code);
}

/// `leda-cm` without a subcommand: help, version, or a usage error (exit 2).
fn leda_cm_itself(argv: &[OsString]) -> i32 {
    match argv.get(1).and_then(|a| a.to_str()) {
        None | Some("-h" | "--help" | "help") => {
            print!("{LEDA_CM_HELP}");
            if argv.len() > 1 {
                0
            } else {
                2
            }
        }
        Some("-v" | "-V" | "--version") => {
            println!("leda-cm version {VERSION}");
            0
        }
        Some(other) => {
            eprintln!(
                "Error: unknown command {} for \"leda-cm\"\nRun 'leda-cm --help' for usage.",
                flags::go_quote(other)
            );
            2
        }
    }
}

/// `leda-cm SUB args…` as `NAME args…`.
fn renamed(argv: &[OsString], name: &str) -> Vec<OsString> {
    let mut out = vec![OsString::from(name)];
    out.extend(argv.iter().skip(2).cloned());
    out
}

const DAEMON_FLAGS: &[Flag] = &[
    Flag::new("cfg-file", Kind::Str, "", "Specify the configuration file (Kanto's config.json schema); default /etc/container-management/config.json when it exists"),
    Flag::new("log-level", Kind::Str, "", "Set the log level - possible values are ERROR, WARN, INFO, DEBUG, TRACE"),
    Flag::new("log-file", Kind::Str, "", "Set the log file (rotated by size); empty for stderr only"),
    Flag::new("cm-home-dir", Kind::Str, "", "Specify the state directory (manager.home_dir)"),
    Flag::new("cm-exec-root-dir", Kind::Str, "", "Specify the runtime directory (manager.exec_root_dir)"),
    Flag::new("ccl-ap", Kind::Str, "", "Specify the containerd socket (containers.address_path)"),
    Flag::new("ccl-default-ns", Kind::Str, "", "Specify the containerd namespace (containers.default_ns)"),
    Flag::new("grpc-serv-ap", Kind::Str, "", "Specify the gRPC socket (grpc_server.address_path)"),
    Flag::new("net-tbr-disable", Kind::Bool, "false", "Disable the default bridge network (network.default_bridge.disable)"),
    Flag::new("help", Kind::Bool, "false", "help for container-management").short('h'),
    Flag::new("version", Kind::Bool, "false", "version for container-management").short('v'),
];

fn daemon_help() -> String {
    format!(
        "leda-cm container management daemon\n\nUsage:\n  container-management [flags]\n\nFlags:\n{}",
        flags::usages(DAEMON_FLAGS)
    )
}

/// The daemon's flags with pflag's rules; `Err` is the exit code after the message.
fn daemon_args(args: &[String]) -> Result<daemon::DaemonArgs, i32> {
    let p = flags::parse(DAEMON_FLAGS, args, true).map_err(|e| {
        eprintln!("Error: {e}\nRun 'container-management --help' for usage.");
        daemon::exit::USAGE
    })?;
    if p.bool("help") {
        print!("{}", daemon_help());
        return Err(0);
    }
    if p.bool("version") {
        println!("container-management version {VERSION}");
        return Err(0);
    }
    if let Some(a) = p.args.first() {
        eprintln!(
            "Error: unknown command {} for \"container-management\"\nRun 'container-management --help' for usage.",
            flags::go_quote(a)
        );
        return Err(daemon::exit::USAGE);
    }
    let path = |n: &str| p.opt_string(n).map(PathBuf::from);
    Ok(daemon::DaemonArgs {
        cfg_file: path("cfg-file"),
        log_level: p.opt_string("log-level"),
        log_file: p.opt_string("log-file"),
        cm_home_dir: path("cm-home-dir"),
        cm_exec_root_dir: path("cm-exec-root-dir"),
        ccl_ap: path("ccl-ap"),
        ccl_default_ns: p.opt_string("ccl-default-ns"),
        grpc_serv_ap: path("grpc-serv-ap"),
        net_tbr_disable: p
            .changed("net-tbr-disable")
            .then(|| p.bool("net-tbr-disable")),
    })
}

fn run_daemon(argv: Vec<OsString>) -> i32 {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match daemon_args(&args) {
        Ok(a) => daemon::run(a),
        // systemd must not restart-loop on a wrong flag either.
        Err(code) => code,
    }
}
