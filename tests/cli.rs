//! The local API and the `kanto-cm` CLI, black box: the real binary (invoked as `kanto-cm`)
//! against the real daemon on the harness. Golden files in tests/golden/.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{DaemonSetup, Harness, NotifyListener};

type Device = common::api::ApiDevice;

fn start(test: &str) -> Device {
    Device::start(test, serde_json::json!({}))
}

use common::kanto_cm;

fn get(d: &Device, name: &str) -> serde_json::Value {
    serde_json::from_str(&d.ok(&["get", "-n", name])).unwrap()
}

#[test]
fn every_command_round_trip() {
    let d = start("cli-all");
    let image = d.image();
    let id = d.ok(&[
        "create",
        "-n",
        "web",
        "--e",
        "GREETING=hello",
        &image,
        "sh",
        "-c",
        "echo $GREETING; echo err >&2; sleep 600",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 36, "{id}");
    // get prints the internal JSON (3-space indent), as scripts read it with jq.
    let text = d.ok(&["get", id.as_str()]);
    assert!(text.starts_with("{\n   \"container_id\""), "{text}");
    let j = get(&d, "web");
    assert_eq!(j["container_id"], id.as_str());
    assert_eq!(j["state"]["running"], false);
    assert_eq!(j["state"]["status"], 1);
    assert_eq!(j["config"]["env"][0], "GREETING=hello");

    d.ok(&["start", "-n", "web"]);
    assert_eq!(get(&d, "web")["state"]["running"], true);
    assert!(d.ctr(&["tasks", "ls"]).contains(&id));

    // list: the table sdv-health parses, -q, filters, --json.
    let table = d.ok(&["list"]);
    let rows: Vec<(String, String)> = table
        .split('\n')
        .skip(3)
        .filter(|l| !l.is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[1].trim().to_string(), f[3].trim().to_string())
        })
        .collect();
    assert_eq!(
        rows,
        vec![("web".to_string(), "Running".to_string())],
        "{table}"
    );
    assert_eq!(d.ok(&["list", "-q"]).trim(), id);
    assert_eq!(
        d.ok(&["list", "--filter", "status=running", "-q"]).trim(),
        id
    );
    assert_eq!(
        d.ok(&["list", "--filter", "status=exited", "-q"]).trim(),
        ""
    );
    assert_eq!(
        d.ok(&["list", "--filter", &format!("image={image}"), "-q"])
            .trim(),
        id
    );
    assert_eq!(
        d.ok(&["list", "-n", "nobody"]).trim(),
        "No containers found."
    );
    let json: serde_json::Value = serde_json::from_str(&d.ok(&["list", "--json"])).unwrap();
    assert_eq!(json[0]["container_name"], "web");

    // logs: the json-file lines, tail.
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let l = d.ok(&["logs", "-n", "web"]);
        if l.lines().count() >= 2 || Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["log"], "hello\n");
    assert_eq!(lines[1]["stream"], "stderr");
    assert_eq!(
        d.ok(&["logs", "-n", "web", "--tail", "1"]).lines().count(),
        1
    );

    // update, rename, restart, stop.
    d.ok(&["update", "-n", "web", "--rp", "always", "-m", "64m"]);
    let j = get(&d, "web");
    assert_eq!(j["host_config"]["restart_policy"]["type"], "always");
    assert_eq!(j["host_config"]["resources"]["memory"], "64m");
    d.ok(&["rename", "-n", "web", "site"]);
    assert_eq!(get(&d, "site")["container_id"], id.as_str());
    let pid = get(&d, "site")["state"]["pid"].as_i64().unwrap();
    d.ok(&["restart", "-n", "site"]);
    let after = get(&d, "site");
    assert_eq!(after["state"]["running"], true);
    assert_ne!(after["state"]["pid"].as_i64().unwrap(), pid);
    d.ok(&["stop", "-n", "site", "-t", "1s"]);
    let stopped = get(&d, "site");
    assert_eq!(stopped["state"]["running"], false);
    assert_eq!(stopped["state"]["status"], 3);

    // remove takes several IDs.
    let second = d.ok(&["create", "-n", "second", &image]).trim().to_string();
    d.ok(&["remove", &id, &second]);
    assert_eq!(d.ok(&["list", "-q"]).trim(), "");

    let info = d.ok(&["sysinfo"]);
    assert!(
        info.starts_with(&format!(
            "Engine v{}, API v1.0.0",
            env!("CARGO_PKG_VERSION")
        )),
        "{info}"
    );
    assert!(info.contains("\nCLI v"), "{info}");
    let completion = d.ok(&["completion", "bash"]);
    assert!(
        completion.contains("kanto-cm") && completion.contains("--rp"),
        "completion looks wrong"
    );
}

#[test]
fn create_from_a_file_and_the_list_golden() {
    let d = start("cli-golden");
    // A fixed image name: the harness image tagged locally (no pull when present).
    d.ctr(&["images", "pull", "--plain-http", &d.image()]);
    d.ctr(&["images", "tag", &d.image(), "leda/busybox:golden"]);
    for (id, name) in [
        ("11111111-2222-4333-8444-555555555555", "alpha"),
        ("aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", "beta"),
    ] {
        let file = d.setup.dir.join(format!("{name}.json"));
        std::fs::write(
            &file,
            serde_json::json!({
                "container_id": id, "container_name": name, "image": {"name": "leda/busybox:golden"},
                "host_config": {"port_mappings": null, "resources": null,
                    "log_config": {"driver_config": {"type": "json-file", "max_files": 2, "max_size": "1M"}}},
                "config": {"cmd": ["sleep", "600"]}
            })
            .to_string(),
        )
        .unwrap();
        assert_eq!(d.ok(&["create", "-f", file.to_str().unwrap()]).trim(), id);
    }
    let table = d.ok(&["list"]);
    assert_eq!(table, include_str!("golden/list-created.txt"), "{table}");
    d.ok(&[
        "remove",
        "11111111-2222-4333-8444-555555555555",
        "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
    ]);
}

/// Compares with a golden file (`LEDA_CM_UPDATE_GOLDEN=1` writes it). The CLI's own version
/// line (root help) is replaced by `CLI v<version>`.
fn golden(name: &str, text: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    let cli_line = text
        .lines()
        .find(|l| l.starts_with("CLI v"))
        .map(str::to_string);
    let text = match cli_line {
        Some(l) => text.replace(&l, "CLI v<version>"),
        None => text.to_string(),
    };
    if std::env::var_os("LEDA_CM_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        panic!(
            "missing {} (LEDA_CM_UPDATE_GOLDEN=1 writes it)",
            path.display()
        )
    });
    assert_eq!(text, expected, "{name} changed");
}

/// The help of every command in cobra's layout with Kanto's texts (recorded from Kanto
/// v1.0.0's kanto-cm; leda-cm adds `restart` and `list --json`). Help needs no daemon.
#[test]
fn help_matches_the_golden_files() {
    let sock = Path::new("/nonexistent/cm.sock");
    for (name, args) in [
        ("kanto-cm", &["--help"][..]),
        ("create", &["create", "--help"]),
        ("start", &["start", "--help"]),
        ("stop", &["stop", "--help"]),
        ("restart", &["restart", "--help"]),
        ("list", &["list", "--help"]),
        ("get", &["get", "--help"]),
        ("logs", &["logs", "--help"]),
        ("update", &["update", "--help"]),
        ("rename", &["rename", "--help"]),
        ("remove", &["remove", "--help"]),
        ("sysinfo", &["sysinfo", "--help"]),
        ("help", &["help", "--help"]),
        ("completion", &["completion", "--help"]),
        ("completion-bash", &["completion", "bash", "--help"]),
        ("completion-zsh", &["completion", "zsh", "--help"]),
        ("completion-fish", &["completion", "fish", "--help"]),
        (
            "completion-powershell",
            &["completion", "powershell", "--help"],
        ),
    ] {
        let out = kanto_cm(sock, args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(out.stderr.is_empty(), "{args:?}");
        golden(
            &format!("help/{name}.txt"),
            &String::from_utf8(out.stdout).unwrap(),
        );
    }
    // The same text by -h, by the help command, and (the root) without arguments.
    let stdout = |args: &[&str]| String::from_utf8(kanto_cm(sock, args).stdout).unwrap();
    assert_eq!(stdout(&["list", "-h"]), stdout(&["help", "list"]));
    assert_eq!(stdout(&["list", "-h"]), stdout(&["list", "--help"]));
    assert_eq!(stdout(&[]), stdout(&["--help"]));
    assert_eq!(stdout(&["help"]), stdout(&["-h"]));
}

/// Usage errors as cobra and pflag word them in Kanto's CLI: `Error: …` on stderr, exit 1,
/// before the daemon is dialled (the socket does not exist); the root command (and
/// cobra's own help and completion commands) print their usage first.
#[test]
fn usage_errors_match_the_golden_files() {
    let sock = Path::new("/nonexistent/cm.sock");
    for (name, args) in [
        ("unknown-command", &["foo"][..]),
        ("unknown-command-suggestions", &["lis"]),
        ("unknown-command-under-list", &["list", "x"]),
        ("unknown-command-under-sysinfo", &["sysinfo", "x"]),
        ("unknown-flag", &["list", "--bogus"]),
        ("unknown-shorthand", &["list", "-x"]),
        ("unknown-flag-of-root", &["--bogus"]),
        ("flag-needs-an-argument", &["list", "--name"]),
        ("shorthand-needs-an-argument", &["get", "-n"]),
        ("bad-int-value", &["--timeout", "abc", "list"]),
        ("bad-int32-value", &["logs", "--tail", "x"]),
        ("bad-bool-value", &["list", "--quiet=maybe"]),
        ("too-many-args-get", &["get", "a", "b"]),
        ("too-many-args-rename", &["rename", "a", "b", "c"]),
        ("completion-extra-arg", &["completion", "bash", "extra"]),
        ("help-bad-flag", &["help", "--bogus"]),
    ] {
        let out = kanto_cm(sock, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        golden(
            &format!("errors/{name}.txt"),
            &String::from_utf8(out.stderr).unwrap(),
        );
    }
    // An unknown help topic: cobra prints the root's usage, exit 0.
    let out = kanto_cm(sock, &["help", "foo"]);
    assert_eq!(out.status.code(), Some(0));
    golden(
        "errors/help-unknown-topic.txt",
        &String::from_utf8(out.stderr).unwrap(),
    );
    // A repeated --host: the last one wins (the first names a socket that does not exist).
    let out = kanto_cm(sock, &["--host", "/also/nonexistent.sock", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error while dialing /also/nonexistent.sock"),
        "{err}"
    );
}

#[test]
fn errors_are_clear_and_exit_non_zero() {
    let d = start("cli-errors");
    // Kanto's texts for a container that is not there, by ID (checked with Get first) and by
    // name, and for a missing or doubled selector; every command that takes one.
    for cmd in [
        "get", "start", "stop", "logs", "update", "remove", "restart",
    ] {
        let err = d.fails(&[cmd, "no-such-id"]);
        assert_eq!(
            err, "Error: The requested container with ID = no-such-id was not found.\n",
            "{cmd}"
        );
        let err = d.fails(&[cmd, "-n", "nobody"]);
        assert_eq!(
            err,
            "Error: The requested container with name = nobody was not found. Try using an ID instead.\n",
            "{cmd}"
        );
        let err = d.fails(&[cmd]);
        assert_eq!(
            err,
            "Error: You must provide either an ID or a name for the container via --name (-n) \n",
            "{cmd}"
        );
        let err = d.fails(&[cmd, "x", "-n", "y"]);
        assert_eq!(
            err,
            "Error: Container ID and --name (-n) cannot be provided at the same time - use only one of them\n",
            "{cmd}"
        );
    }
    let err = d.fails(&["rename", "no-such-id", "new"]);
    assert_eq!(
        err,
        "Error: The requested container with ID = no-such-id was not found.\n"
    );
    // remove of several: one error as it is, more as Kanto's compound error.
    let err = d.fails(&["remove", "gone-1", "gone-2"]);
    assert_eq!(
        err,
        "Error: containers couldn't be removed due to the following reasons: \n\n* The requested container with ID = gone-1 was not found.\n* The requested container with ID = gone-2 was not found.\n"
    );
    // A daemon error reads as Go's gRPC status text.
    let err = d.fails(&["create", "--name", "x", "no.such.registry.invalid/img"]);
    assert!(err.starts_with("Error: rpc error: code = "), "{err}");
    assert!(err.contains(" desc = "), "{err}");
    let err = d.fails(&["create", "-n", "bad name", &d.image()]);
    assert!(err.contains("invalid container name format"), "{err}");
    let id = d
        .ok(&["create", "-n", "dup", &d.image()])
        .trim()
        .to_string();
    let err = d.fails(&["create", "-n", "dup", &d.image()]);
    assert!(err.contains("container name dup is already used"), "{err}");
    assert!(err.starts_with("Error: rpc error: code = "), "{err}");
    let err = d.fails(&["start", &id, "--i"]);
    assert!(err.contains("interactive mode is not supported"), "{err}");
    let err = d.fails(&["rename", &id, "dup"]);
    assert_eq!(err, "Error: the new name = dup shouldn't be the same\n");
    let err = d.fails(&["stop", &id, "-t", "later"]);
    assert_eq!(err, "Error: time: invalid duration \"later\"\n");
    let err = d.fails(&["stop", &id, "-s", "SIGNOPE"]);
    assert_eq!(err, "Error: invalid signal = SIGNOPE\n");
    let err = d.fails(&["create", "--rp", "sometimes", &d.image()]);
    assert!(
        err.starts_with("Error: ") && err.contains("sometimes"),
        "{err}"
    );
    let err = d.fails(&["create", "--ports", "abc", &d.image()]);
    assert!(err.starts_with("Error: ") && err.contains("abc"), "{err}");
    let err = d.fails(&["list", "--filter", "color=red"]);
    assert_eq!(err, "Error: no filter: color\n");
    let err = d.fails(&["stop", &id]);
    assert_eq!(
        err,
        format!("Error: rpc error: code = Unknown desc = cannot perform stop operation for container: {id}, with state: Created\n")
    );
    let err = d.fails(&["logs", &id]);
    assert!(
        err.contains("there are no logs for container with status \"Created\""),
        "{err}"
    );
    d.ok(&["remove", &id]);

    // A client sending garbage does not hurt the server.
    {
        use std::io::Write;
        let mut s = std::os::unix::net::UnixStream::connect(&d.sock).unwrap();
        let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n\x00\x01garbage\xff\xfe");
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    assert_eq!(d.ok(&["list", "-q"]).trim(), "");
    // The socket is 0660.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&d.sock).unwrap().permissions().mode() & 0o777,
        0o660
    );
}

/// As Kanto: flag syntax and argument counts are checked first; the values of `create`'s
/// flags after the daemon was dialled, so without a daemon it is the dial error, logged as
/// logrus' fatal line. leda-cm reports an absent socket at once (Kanto waits the timeout).
#[test]
fn values_are_checked_after_dialling_and_an_absent_daemon_is_reported_quickly() {
    let absent = Path::new("/nonexistent/cm.sock");
    for args in [
        &["create", "--ports", "abc", "img"][..],
        &["create", "--rp", "sometimes", "img"],
        &["stop", "x", "--time", "later"],
    ] {
        let out = kanto_cm(absent, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.starts_with("time=\"")
                && err.contains(" level=fatal msg=\"error while dialing /nonexistent/cm.sock: "),
            "{args:?}: {err}"
        );
    }
    let started = Instant::now();
    let out = kanto_cm(absent, &["--timeout", "3", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("level=fatal msg=\"error while dialing /nonexistent/cm.sock: "));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_generated_rust_client_drives_the_api() {
    use leda_cm::api::pb::services::containers::{
        self as svc, containers_client::ContainersClient,
    };
    use leda_cm::api::pb::types::containers as pb;
    let d = start("cli-grpc");
    let image = d.image();
    let sock = d.sock.clone();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async move {
            // As kanto-auto-deployer does: tonic over the unix socket.
            let channel = common::api_channel(sock).await;
            let mut client = ContainersClient::new(channel);
            let container = pb::Container {
                name: "rusty".into(),
                image: Some(pb::Image {
                    name: image,
                    decrypt_config: None,
                }),
                config: Some(pb::ContainerConfiguration {
                    env: vec![],
                    cmd: vec!["sh".into(), "-c".into(), "echo from-rust; sleep 600".into()],
                }),
                ..Default::default()
            };
            let created = client
                .create(svc::CreateContainerRequest {
                    container: Some(container),
                })
                .await
                .unwrap()
                .into_inner()
                .container
                .unwrap();
            let id = created.id.clone();
            assert_eq!(created.state.unwrap().status, "Created");
            client
                .start(svc::StartContainerRequest { id: id.clone() })
                .await
                .unwrap();
            let listed = client
                .list(svc::ListContainersRequest {})
                .await
                .unwrap()
                .into_inner()
                .containers;
            assert_eq!(listed.len(), 1);
            assert_eq!(listed[0].state.as_ref().unwrap().status, "Running");
            let mut stream = client
                .list_stream(svc::ListContainersRequest {})
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                stream
                    .message()
                    .await
                    .unwrap()
                    .unwrap()
                    .container
                    .unwrap()
                    .id,
                id
            );
            assert!(stream.message().await.unwrap().is_none());
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let mut logs = client
                    .logs(svc::GetLogsRequest {
                        id: id.clone(),
                        tail: -1,
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mut all = String::new();
                while let Some(m) = logs.message().await.unwrap() {
                    all.push_str(&m.log);
                }
                if all.contains("from-rust") {
                    break;
                }
                assert!(Instant::now() < deadline, "no log line");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let stop = pb::StopOptions {
                timeout: 1,
                force: false,
                signal: "SIGTERM".into(),
            };
            client
                .stop(svc::StopContainerRequest {
                    id: id.clone(),
                    stop_options: Some(stop),
                })
                .await
                .unwrap();
            client
                .restart(svc::RestartContainerRequest { id: id.clone() })
                .await
                .unwrap();
            let status = client
                .get(svc::GetContainerRequest { id: id.clone() })
                .await
                .unwrap()
                .into_inner()
                .container
                .unwrap()
                .state
                .unwrap();
            assert!(status.running);
            // As Kanto's daemon: Get of an unknown ID is OK without a container, and every
            // refusal is code Unknown with Kanto's text.
            let unknown = client
                .get(svc::GetContainerRequest { id: "nope".into() })
                .await
                .unwrap()
                .into_inner();
            assert!(unknown.container.is_none(), "{unknown:?}");
            let err = client
                .start(svc::StartContainerRequest { id: id.clone() })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unknown);
            assert_eq!(
                err.message(),
                format!("the container with id = {id} is already running")
            );
            let err = client
                .create(svc::CreateContainerRequest {
                    container: Some(pb::Container {
                        name: "rusty".into(),
                        image: Some(pb::Image {
                            name: "x".into(),
                            decrypt_config: None,
                        }),
                        ..Default::default()
                    }),
                })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unknown);
            assert_eq!(
                err.message(),
                format!("container name rusty is already used by container {id}")
            );
            let err = client
                .create(svc::CreateContainerRequest { container: None })
                .await
                .unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unknown);
            assert_eq!(err.message(), "container must be provided");
            client
                .remove(svc::RemoveContainerRequest {
                    id: id.clone(),
                    force: true,
                    stop_options: None,
                })
                .await
                .unwrap();
            assert!(client
                .list(svc::ListContainersRequest {})
                .await
                .unwrap()
                .into_inner()
                .containers
                .is_empty());
        });
}

#[test]
fn a_stale_socket_is_replaced_and_the_socket_is_removed_on_exit() {
    let h = Harness::get();
    let setup = DaemonSetup::new(&h, "cli-socket");
    std::fs::create_dir_all(&setup.runtime_dir).unwrap();
    let sock = setup.runtime_dir.join("cm.sock");
    // What a crash leaves: the socket file, nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let notify = NotifyListener::new(&setup.dir);
    let daemon = setup.spawn(Some(&notify));
    assert!(
        notify.wait_ready(Duration::from_secs(15)),
        "{}",
        daemon.stderr()
    );
    let out = kanto_cm(&sock, &["list", "-q"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(daemon.stop().success());
    assert!(!sock.exists(), "socket left behind");
}

/// An image encrypted by ocicrypt (skopeo `--encryption-key jwe:`) is refused with a clear
/// error and nothing is left, also when its plaintext layers are already unpacked (from the
/// same image unencrypted): without a configured key it never uses it (fail closed;
/// tests/trust_encrypted.rs has the images that decrypt).
#[test]
fn an_encrypted_image_is_refused_even_with_its_layers_unpacked() {
    let d = start("cli-encrypted");
    let dir = d.setup.dir.join("enc");
    std::fs::create_dir_all(&dir).unwrap();
    let encrypted = format!("{}/leda/encrypted-{}:1", d.h.registry, d.h.run_id);
    let script = format!(
        "set -e; cd '{dir}'; openssl genrsa -out key.pem 2048 2>/dev/null; \
         openssl rsa -in key.pem -pubout -out pub.pem 2>/dev/null; \
         skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
           --encryption-key jwe:pub.pem docker://{plain} docker://{encrypted}",
        dir = dir.display(),
        plain = d.image(),
    );
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "encrypting: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The plaintext layers unpacked, by a container of the unencrypted image.
    d.ok(&["create", "-n", "plain", &d.image(), "true"]);
    let before = d.ctr(&["containers", "ls", "-q"]);

    let err = d.fails(&["create", "-n", "secret", &encrypted, "true"]);
    assert!(
        err.contains("is encrypted") && err.contains("+encrypted"),
        "{err}"
    );
    assert_eq!(d.ctr(&["containers", "ls", "-q"]), before);
    // In the content store already (fetched by ctr, image record and all): the same.
    d.ctr(&["images", "pull", "--plain-http", &encrypted]);
    let images = d.ctr(&["images", "ls", "-q"]);
    assert!(images.contains(&encrypted), "{images}");
    let err = d.fails(&["create", "-n", "secret", &encrypted, "true"]);
    assert!(err.contains("is encrypted"), "{err}");
    assert_eq!(d.ctr(&["containers", "ls", "-q"]), before);
    let listed = d.ok(&["list", "-q"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(
        !d.setup
            .state_dir
            .join("containers")
            .read_dir()
            .unwrap()
            .any(|e| {
                std::fs::read_to_string(e.unwrap().path().join("config.json"))
                    .map(|t| t.contains("\"secret\""))
                    .unwrap_or(false)
            }),
        "a record of the refused container"
    );
}
