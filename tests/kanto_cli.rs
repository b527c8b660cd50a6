//! Kanto's own Go `kanto-cm`, built from a Kanto container-management source tree, against
//! the real leda-cm daemon on the harness: every command of Kanto's CLI, with the outputs and
//! error texts that Kanto's CLI prints against Kanto's own daemon (read from Kanto's public
//! source, v1.0.0).
//!
//! The tree is given in `LEDA_CM_KANTO_SRC` (a checkout of
//! github.com/eclipse-kanto/container-management; the Go module proxy serves its
//! dependencies, not Kanto's own module). Without it the test says so and passes: CI has no
//! Kanto tree, and there `grpc_clients::grpc_go_with_the_socket_path_as_authority` (a grpc-go
//! client with Kanto's dialer and `:authority`) stands in.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Builds Kanto's CLI (package `containerm/cli`) from the tree into a cache under target/.
fn kanto_cm(src: &Path) -> PathBuf {
    assert!(
        common::have("go"),
        "LEDA_CM_KANTO_SRC is set but there is no `go` on PATH to build it with"
    );
    assert!(
        src.join("containerm/cli/cli_start.go").is_file(),
        "LEDA_CM_KANTO_SRC={} is not a Kanto container-management tree (no containerm/cli)",
        src.display()
    );
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kanto");
    let bin = cache.join("kanto-cm");
    // go's own build cache makes this quick when nothing changed; building every time keeps
    // the binary true to the tree that was given.
    common::go_build(
        src,
        "./containerm/cli",
        &bin,
        &cache,
        "-mod=readonly -buildvcs=false",
        "go build of Kanto's kanto-cm",
    );
    bin
}

type Device = common::api::ApiDevice;

/// The daemon, driven by Kanto's CLI (`kanto`) over the socket's absolute path.
fn start(test: &str, kanto: PathBuf) -> Device {
    let mut d = Device::start(test, serde_json::json!({}));
    d.cli = Some(kanto);
    d
}

impl Device {
    fn get(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("get {args:?}: {e}: {text}"))
    }
}

/// Polls `probe` until it gives a value or `timeout` passes.
fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let end = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if std::time::Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn the_kanto_tree() -> Option<PathBuf> {
    match std::env::var_os("LEDA_CM_KANTO_SRC") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => {
            eprintln!(
                "SKIPPED: no Kanto source tree given (LEDA_CM_KANTO_SRC=<checkout of \
                 eclipse-kanto/container-management>); Kanto's own kanto-cm was not run. \
                 tests/grpc_clients.rs (grpc-go with the socket path as :authority) stands in."
            );
            None
        }
    }
}

#[test]
fn kantos_own_cli_drives_every_command() {
    let Some(src) = the_kanto_tree() else {
        return;
    };
    let d = start("kanto-cli", kanto_cm(&src));
    let image = d.image();

    // sysinfo: the daemon's project info comes first.
    let info = d.ok(&["sysinfo"]);
    assert!(
        info.contains(env!("CARGO_PKG_VERSION")),
        "sysinfo does not show leda-cm's version: {info}"
    );

    // create prints the ID; flags of every kind reach the container.
    let id = d.ok(&[
        "create",
        "-n",
        "kweb",
        "--e",
        "GREETING=hello",
        "--rp",
        "on-failure",
        "--rp-cnt",
        "3",
        "--rp-to",
        "7",
        "--hosts",
        "peer:10.77.0.9",
        "-m",
        "64m",
        "--log-max-size",
        "2M",
        &image,
        "sh",
        "-c",
        "echo $GREETING; sleep 600",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 36, "{id}");

    // get by ID and by name: Kanto's internal JSON, as Kanto's CLI prints it.
    let j = d.get(&[&id]);
    assert_eq!(j["container_id"], id.as_str(), "{j:#}");
    assert_eq!(j["container_name"], "kweb", "{j:#}");
    assert_eq!(j["image"]["name"], image.as_str(), "{j:#}");
    assert_eq!(
        j["state"]["status"], 1,
        "Created is 1 in Kanto's model: {j:#}"
    );
    assert_eq!(j["config"]["env"][0], "GREETING=hello", "{j:#}");
    assert_eq!(
        j["host_config"]["restart_policy"]["type"], "on-failure",
        "{j:#}"
    );
    assert_eq!(
        j["host_config"]["restart_policy"]["maximum_retry_count"], 3,
        "{j:#}"
    );
    assert_eq!(
        j["host_config"]["extra_hosts"][0], "peer:10.77.0.9",
        "{j:#}"
    );
    assert_eq!(j["host_config"]["resources"]["memory"], "64m", "{j:#}");
    assert_eq!(d.get(&["-n", "kweb"])["container_id"], id.as_str());

    // list: Kanto's table, -q and --filter.
    let table = d.ok(&["list"]);
    let row = table
        .lines()
        .find(|l| l.contains(&id))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    assert_eq!(cells[..4], [id.as_str(), "kweb", image.as_str(), "Created"]);
    assert_eq!(d.ok(&["list", "-q"]).trim(), id);
    assert_eq!(
        d.ok(&["list", "--filter", "status=created", "-q"]).trim(),
        id
    );
    assert_eq!(
        d.ok(&["list", "--filter", "status=running"]).trim(),
        "No containers found."
    );

    // The daemon's refusals reach Kanto's CLI as Kanto's daemon words them.
    let err = d.fails(&["stop", &id]);
    assert_eq!(
        err,
        format!(
            "Error: rpc error: code = Unknown desc = cannot perform stop operation for container: {id}, with state: Created\n"
        )
    );

    d.ok(&["start", "-n", "kweb"]);
    assert_eq!(d.get(&[&id])["state"]["running"], true);
    // Kanto's CLI checks this one itself, from the state in the Get answer.
    let err = d.fails(&["start", &id]);
    assert_eq!(
        err,
        format!("Error: the container with ID = {id} is already running - cannot start it again\n")
    );
    let refusal = format!(
        "rpc error: code = Unknown desc = container with id = {id} is not stopped - must set the force flag to true to remove it"
    );
    assert_eq!(d.fails(&["remove", &id]), format!("Error: {refusal}\n"));
    // Several IDs: Kanto's CLI joins every reason.
    let unknown = "00000000-0000-0000-0000-000000000000";
    assert_eq!(
        d.fails(&["remove", &id, unknown]),
        format!(
            "Error: containers couldn't be removed due to the following reasons: \n\n* {refusal}\n* The requested container with ID = {unknown} was not found.\n"
        )
    );

    // logs: the container's output.
    let logs = wait_for(Duration::from_secs(10), || {
        let out = d.ok(&["logs", "-n", "kweb"]);
        out.contains("hello").then_some(out)
    });
    assert!(logs.is_some(), "no `hello` in Kanto's logs of kweb");

    // update, rename, stop.
    d.ok(&["update", "-n", "kweb", "--rp", "always"]);
    assert_eq!(
        d.get(&[&id])["host_config"]["restart_policy"]["type"],
        "always"
    );
    d.ok(&["rename", &id, "kweb2"]);
    assert_eq!(d.get(&["-n", "kweb2"])["container_id"], id.as_str());
    d.ok(&["stop", "-n", "kweb2", "-t", "2s"]);
    let j = d.get(&[&id]);
    assert_eq!(j["state"]["running"], false, "{j:#}");
    assert_eq!(
        j["state"]["status"], 3,
        "Stopped is 3 in Kanto's model: {j:#}"
    );

    // Unknown containers: Kanto's CLI asks first and words it itself.
    for cmd in ["get", "start", "stop", "logs", "update"] {
        assert_eq!(
            d.fails(&[cmd, unknown]),
            format!("Error: The requested container with ID = {unknown} was not found.\n"),
            "{cmd}"
        );
    }
    assert_eq!(
        d.fails(&["get", "-n", "kweb"]),
        "Error: The requested container with name = kweb was not found. Try using an ID instead.\n"
    );

    // remove -f, then nothing is left.
    d.ok(&["remove", "-f", "-n", "kweb2"]);
    assert_eq!(d.ok(&["list"]).trim(), "No containers found.");
    assert!(
        common::ctr(
            &d.h.containerd_sock,
            &d.setup.namespace,
            &["containers", "ls", "-q"]
        )
        .trim()
        .is_empty(),
        "containerd still has containers of the removed one"
    );
}

/// Help and usage errors need no daemon: Kanto's CLI and leda-cm's, byte for byte, but for
/// leda-cm's additions (the `restart` command, `list --json`) and the version line.
#[test]
fn help_and_usage_errors_equal_kantos() {
    let Some(src) = the_kanto_tree() else {
        return;
    };
    let kanto = kanto_cm(&src);
    let nowhere = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kanto-cli-no-daemon.sock");
    let run = |ours: bool, args: &[&str]| -> (Option<i32>, String) {
        let out = if ours {
            common::kanto_cm(&nowhere, args)
        } else {
            Command::new(&kanto)
                .arg("--host")
                .arg(&nowhere)
                .args(args)
                .output()
                .unwrap()
        };
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let kept: Vec<&str> = text
            .split_inclusive('\n')
            .filter(|l| {
                !(l.starts_with("CLI v")
                    || l.starts_with("  restart ")
                    || l.contains("--json ") && l.contains("(leda-cm)"))
            })
            .collect();
        (out.status.code(), kept.concat())
    };
    let mut cases: Vec<Vec<&str>> = vec![vec!["--help"], vec!["help"], vec!["help", "create"]];
    for cmd in [
        "create",
        "get",
        "list",
        "logs",
        "remove",
        "rename",
        "start",
        "stop",
        "sysinfo",
        "update",
        "completion",
    ] {
        cases.push(vec![cmd, "--help"]);
    }
    cases.extend([
        vec!["nosuch"],
        vec!["lsit"],
        vec!["list", "nosuch"],
        vec!["get", "a", "b"],
        vec!["rename", "a", "b", "c"],
        vec!["stop", "--nosuch"],
        vec!["stop", "-x"],
        vec!["logs", "--tail"],
        vec!["logs", "--tail", "many"],
        vec!["create", "--rp-cnt", "x", "img"],
    ]);
    for args in &cases {
        let (kanto_code, kanto_text) = run(false, args);
        let (our_code, our_text) = run(true, args);
        assert!(
            kanto_text.lines().count() >= 1 && !kanto_text.trim().is_empty(),
            "Kanto's kanto-cm {args:?} printed nothing"
        );
        assert_eq!(our_text, kanto_text, "kanto-cm {args:?}");
        assert_eq!(our_code, kanto_code, "exit code of kanto-cm {args:?}");
    }
}
