//! `leda-cm registry add|list|remove` (and Leda's `sdv-kanto-ctl add-registry …`): private
//! registry credentials in a configuration drop-in of the state dir, which the running daemon
//! watches and applies without a restart (`/etc` is read-only on a device, and Leda's own
//! tool restarts the whole service).
//!
//! The state dir is found as the daemon finds it: `--cfg-file PATH`, else the default config
//! file. The drop-in `<state>/config.d/registries.json` is written atomically with mode 0600;
//! passwords are never printed (`list` masks them).

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::flags::{self, Flag, Kind, Parsed};
use crate::config::DROPIN_DIR;
use crate::exit;
use crate::loader::ConfigLoader;
use crate::store;

const DROPIN: &str = "registries.json";

const HELP: &str = "Private registry credentials, applied by the running daemon without a restart

Usage:
  leda-cm registry [--cfg-file PATH] <command>

Commands:
  add       Add or replace the credentials of a registry host
  list      List the configured registries (passwords masked)
  remove    Remove the credentials of a registry host

Flags:
";

const CFG_FILE: Flag = Flag::new(
    "cfg-file",
    Kind::Str,
    "",
    "The daemon's configuration file (finds the state dir as the daemon does)",
);
const HELP_FLAG: Flag = Flag::new("help", Kind::Bool, "false", "help for registry");
const ADD_FLAGS: &[Flag] = &[
    CFG_FILE,
    HELP_FLAG,
    Flag::new(
        "host",
        Kind::Str,
        "",
        "Registry host (`host` or `host:port`, no scheme)",
    )
    .short('h'),
    Flag::new("user", Kind::Str, "", "User name").short('u'),
    Flag::new(
        "password",
        Kind::Str,
        "",
        "Password (prefer --password-file or --password-stdin: a -p value stays in shell history)",
    )
    .short('p'),
    Flag::new(
        "password-file",
        Kind::Str,
        "",
        "Read the password from a file (its first line)",
    ),
    Flag::new(
        "password-stdin",
        Kind::Bool,
        "false",
        "Read the password from standard input (its first line)",
    ),
];
const REMOVE_FLAGS: &[Flag] = &[
    CFG_FILE,
    HELP_FLAG,
    Flag::new(
        "host",
        Kind::Str,
        "",
        "Registry host (`host` or `host:port`)",
    )
    .short('h'),
];
const LIST_FLAGS: &[Flag] = &[CFG_FILE, HELP_FLAG];

#[derive(Debug)]
enum Command {
    Add(AddArgs),
    List,
    Remove { host: Option<String> },
}

#[derive(Debug)]
struct AddArgs {
    host: String,
    user: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
    password_stdin: bool,
}

/// The subcommand and its values; `Err(None)` is help, printed.
fn parse_args(args: &[String]) -> Result<(Option<PathBuf>, Command), Option<String>> {
    // The subcommand is the first word that is not --cfg-file's value.
    let mut i = 0;
    let mut sub = None;
    while i < args.len() {
        let a = &args[i];
        if a == "--cfg-file" {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            sub = Some(i);
            break;
        }
        i += 1;
    }
    let Some(at) = sub else {
        let p = flags::parse(LIST_FLAGS, args, true).map_err(Some)?;
        if p.bool("help") {
            print!("{HELP}{}", flags::usages(LIST_FLAGS));
            return Err(None);
        }
        return Err(Some("a command is needed: add, list or remove".into()));
    };
    let mut rest = args.to_vec();
    let name = rest.remove(at);
    let table = match name.as_str() {
        "add" => ADD_FLAGS,
        "remove" => REMOVE_FLAGS,
        "list" => LIST_FLAGS,
        other => return Err(Some(format!("unknown command {}", flags::go_quote(other)))),
    };
    let p: Parsed = flags::parse(table, &rest, true).map_err(Some)?;
    if p.bool("help") {
        print!(
            "Usage:\n  leda-cm registry {name}{}\n\nFlags:\n{}",
            match name.as_str() {
                "add" => " -h HOST -u USER (-p PASS | --password-file FILE | --password-stdin)",
                "remove" => " (-h HOST | HOST)",
                _ => "",
            },
            flags::usages(table)
        );
        return Err(None);
    }
    let cfg = p.opt_string("cfg-file").map(PathBuf::from);
    let command = match name.as_str() {
        "add" => {
            if let Some(a) = p.args.first() {
                return Err(Some(format!("unexpected argument {}", flags::go_quote(a))));
            }
            let given = ["password", "password-file", "password-stdin"]
                .iter()
                .filter(|f| p.changed(f))
                .count();
            if given > 1 {
                return Err(Some(
                    "give only one of -p, --password-file and --password-stdin".into(),
                ));
            }
            let needed = |f: &str| {
                p.opt_string(f)
                    .ok_or_else(|| Some(format!("the flag --{f} is required")))
            };
            Command::Add(AddArgs {
                host: needed("host")?,
                user: needed("user")?,
                password: p.opt_string("password"),
                password_file: p.opt_string("password-file").map(PathBuf::from),
                password_stdin: p.bool("password-stdin"),
            })
        }
        "remove" => {
            if p.args.len() > 1 || (p.args.len() == 1 && p.changed("host")) {
                return Err(Some("give the registry host once".into()));
            }
            Command::Remove {
                host: p.opt_string("host").or_else(|| p.args.first().cloned()),
            }
        }
        _ => {
            if let Some(a) = p.args.first() {
                return Err(Some(format!("unexpected argument {}", flags::go_quote(a))));
            }
            Command::List
        }
    };
    Ok((cfg, command))
}

/// A usage error: printed with the hint, exit code 64.
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// `leda-cm registry …` (argv[0] is the program, argv[1] "registry").
pub fn main(argv: Vec<OsString>) -> i32 {
    let args: Vec<String> = argv
        .iter()
        .skip(2)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    match parse_args(&args) {
        Ok((cfg, command)) => finish(run(cfg.as_deref(), command)),
        Err(None) => 0,
        Err(Some(e)) => {
            eprintln!("error: {e}\n\nFor more information, try '--help'.");
            exit::USAGE
        }
    }
}

/// Leda's `sdv-kanto-ctl`: `add-registry -h HOST -u USER -p PASS`, `remove-registry -h HOST`,
/// `list-registries`.
pub fn sdv_kanto_ctl(argv: Vec<OsString>) -> i32 {
    let sub = argv
        .get(1)
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest: Vec<OsString> = argv.iter().skip(2).cloned().collect();
    let mapped = match sub.as_str() {
        "add-registry" => "add",
        "remove-registry" => "remove",
        "list-registries" => "list",
        _ => {
            eprintln!(
                "sdv-kanto-ctl (leda-cm): supported: add-registry -h HOST -u USER -p PASS, remove-registry -h HOST, list-registries; for containers use kanto-cm"
            );
            return exit::USAGE;
        }
    };
    let mut args = vec![
        OsString::from("leda-cm"),
        OsString::from("registry"),
        OsString::from(mapped),
    ];
    args.extend(rest);
    main(args)
}

fn finish(result: anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<Usage>().is_some() => {
            eprintln!("error: {e}\n\nFor more information, try '--help'.");
            exit::USAGE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// `host` or `host:port` (a DNS name, IPv4, or `[IPv6]`), nothing else.
pub fn valid_host(host: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("invalid registry host {host:?}: {why}"));
    if host.is_empty() {
        return bad("empty");
    }
    if host.contains("://") || host.contains('/') {
        return bad("give the host only, without scheme or path (e.g. myregistry.example:5000)");
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, tail)) => {
                if ip.parse::<std::net::Ipv6Addr>().is_err() {
                    return bad("not an IPv6 address in brackets");
                }
                (None, tail.strip_prefix(':'))
            }
            None => return bad("unclosed ["),
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (Some(n), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|p| p > 0) {
            return bad("the port must be 1-65535");
        }
    }
    if let Some(n) = name {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if n.len() > 253 || !n.split('.').all(label_ok) {
            return bad("not a host name or IPv4 address");
        }
    }
    Ok(())
}

fn dropin_path(cfg_file: Option<&Path>) -> anyhow::Result<PathBuf> {
    let loader = ConfigLoader::new(cfg_file, None);
    let (_, paths) = loader
        .load()
        .context("reading the daemon's configuration")?;
    Ok(paths.state_dir.join(DROPIN_DIR).join(DROPIN))
}

fn read_dropin(path: &Path) -> anyhow::Result<Value> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not valid JSON", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_dropin(path: &Path, value: &Value) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        store::prepare_dir(dir, 0o700, "config drop-in dir")?;
    }
    store::write_json_atomic(path, value, 0o600)?;
    Ok(())
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .trim_end_matches('\r')
        .to_string()
}

fn password(a: &AddArgs) -> anyhow::Result<String> {
    let p = if let Some(p) = &a.password {
        p.clone()
    } else if let Some(f) = &a.password_file {
        first_line(
            &std::fs::read_to_string(f)
                .with_context(|| format!("cannot read the password file {}", f.display()))?,
        )
    } else if a.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from stdin")?;
        first_line(&text)
    } else {
        bail!(Usage(
            "a password is needed: -p PASS, --password-file FILE or --password-stdin".into()
        ));
    };
    if p.is_empty() {
        bail!(Usage("the password is empty".into()));
    }
    Ok(p)
}

fn run(cfg_file: Option<&Path>, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Add(a) => {
            valid_host(&a.host).map_err(Usage)?;
            if a.user.is_empty() {
                bail!(Usage("the user name is empty".into()));
            }
            let pass = password(&a)?;
            let path = dropin_path(cfg_file)?;
            let mut v = read_dropin(&path)?;
            let entry = &mut v["containers"]["registry_configurations"][&a.host];
            entry["credentials"] = json!({"user_id": a.user, "password": pass});
            write_dropin(&path, &v)?;
            println!(
                "registry {}: credentials of user {} saved in {} (the running daemon applies them now)",
                a.host,
                a.user,
                path.display()
            );
            Ok(())
        }
        Command::Remove { host } => {
            let host = host.ok_or_else(|| Usage("which registry? give its HOST".into()))?;
            valid_host(&host).map_err(Usage)?;
            let path = dropin_path(cfg_file)?;
            let mut v = read_dropin(&path)?;
            let removed = v["containers"]["registry_configurations"]
                .as_object_mut()
                .and_then(|m| m.remove(&host))
                .is_some();
            if !removed {
                let loader = ConfigLoader::new(cfg_file, None);
                let (loaded, _) = loader.load()?;
                if loaded
                    .config
                    .containers
                    .registry_configurations
                    .contains_key(&host)
                {
                    bail!("registry {host} is configured in the configuration file, which this command does not change");
                }
                bail!("registry {host} is not configured");
            }
            write_dropin(&path, &v)?;
            println!(
                "registry {host}: removed from {} (the running daemon applies it now)",
                path.display()
            );
            Ok(())
        }
        Command::List => {
            let loader = ConfigLoader::new(cfg_file, None);
            let (loaded, _) = loader
                .load()
                .context("reading the daemon's configuration")?;
            let c = &loaded.config.containers;
            println!(
                "{:<40} {:<20} {:<10} {:<6} TLS",
                "HOST", "USER", "PASSWORD", "HTTP"
            );
            for (host, rc) in &c.registry_configurations {
                let (user, pass) = match &rc.credentials {
                    Some(cr) => (
                        cr.user_id.as_str(),
                        if cr.password.expose().is_empty() {
                            ""
                        } else {
                            "********"
                        },
                    ),
                    None => ("", ""),
                };
                let insecure = crate::registry::host_settings(c, host).insecure;
                let tls = rc
                    .transport
                    .as_ref()
                    .is_some_and(|t| !t.root_ca.is_empty() || !t.client_cert.is_empty());
                println!(
                    "{host:<40} {user:<20} {pass:<10} {:<6} {}",
                    if insecure { "yes" } else { "no" },
                    if tls { "yes" } else { "" }
                );
            }
            for host in c
                .insecure_registries
                .iter()
                .filter(|h| !c.registry_configurations.contains_key(*h))
            {
                println!("{host:<40} {:<20} {:<10} {:<6}", "", "", "yes");
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "registry.example",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "a-b.c",
        ] {
            assert!(valid_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "https://x",
            "x/y",
            "x:0",
            "x:99999",
            "-x",
            "a..b",
            "[nope]:1",
            "bad host",
        ] {
            assert!(valid_host(bad).is_err(), "{bad}");
        }
    }
}
