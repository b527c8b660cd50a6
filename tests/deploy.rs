//! Deployment from manifests and private registries, black box: the real daemon on the
//! harness's containerd and registries; what runs is checked with `ctr`.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::device::service_image;
use common::{Daemon, DaemonSetup, Harness};
use serde_json::{json, Value};

struct Node {
    h: Harness,
    setup: DaemonSetup,
    daemon: Option<Daemon>,
    manifests: PathBuf,
    starts: u32,
}

impl Node {
    fn new(test: &str, mode: &str) -> Node {
        let h = Harness::get();
        let mut setup = DaemonSetup::new(&h, test);
        let manifests = setup.dir.join("containers");
        std::fs::create_dir_all(&manifests).unwrap();
        setup.extra_config = json!({
            "containers": {"insecure_registries": [h.registry, h.registry_auth]},
            "manager": {"default_ctrs_stop_timeout": 2},
            "deployment": {"enable": true, "mode": mode, "ctr_dir": manifests},
        });
        Node {
            h,
            setup,
            daemon: None,
            manifests,
            starts: 0,
        }
    }

    fn start(&mut self) {
        self.starts += 1;
        self.daemon = Some(self.setup.spawn_ready(self.starts, Duration::from_secs(20)));
    }

    fn stop(&mut self) {
        assert!(self.daemon.take().unwrap().stop().success());
    }

    fn stderr(&self) -> String {
        self.daemon.as_ref().map(|d| d.stderr()).unwrap_or_default()
    }

    /// Waits for a line of the current daemon's log containing `needle`.
    fn wait_log(&self, needle: &str) {
        let d = self.daemon.as_ref().unwrap();
        assert!(
            d.wait_log(needle, Duration::from_secs(30)),
            "no {needle:?} in\n{}",
            d.stderr()
        );
    }

    /// Writes a manifest as an integrator would (temporary name, then renamed into place).
    fn manifest(&self, file: &str, body: &Value) {
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(body).unwrap()).unwrap();
        std::fs::rename(&tmp, self.manifests.join(file)).unwrap();
    }

    fn api(&self) -> PathBuf {
        self.setup.runtime_dir.join("cm.sock")
    }

    /// name → (ID, ctr task status, PID) for every container the daemon lists.
    fn running(&self) -> BTreeMap<String, (String, String, String)> {
        let out = common::kanto_cm(&self.api(), &["list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let tasks = common::ctr(
            &self.setup.containerd_sock,
            &self.setup.namespace,
            &["tasks", "ls"],
        );
        list.iter()
            .map(|c| {
                let id = c["container_id"].as_str().unwrap().to_string();
                let line = tasks.lines().find(|l| l.starts_with(&id)).unwrap_or("");
                let f: Vec<&str> = line.split_whitespace().collect();
                let (pid, status) = (
                    f.get(1).unwrap_or(&"").to_string(),
                    f.get(2).unwrap_or(&"absent").to_string(),
                );
                (
                    c["container_name"].as_str().unwrap().to_string(),
                    (id, status, pid),
                )
            })
            .collect()
    }

    fn wait_running(&self, names: &[&str]) -> BTreeMap<String, (String, String, String)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let all = self.running();
            if names
                .iter()
                .all(|n| all.get(*n).is_some_and(|c| c.1 == "RUNNING"))
            {
                return all;
            }
            assert!(
                Instant::now() < deadline,
                "{names:?} not running: {all:?}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.daemon.take();
        common::clean_namespace(&self.setup.containerd_sock, &self.setup.namespace);
    }
}

fn manifest(name: &str, image: &str, env: &[&str]) -> Value {
    json!({"container_id": name, "container_name": name, "image": {"name": image},
           "host_config": {"restart_policy": {"type": "unless-stopped"}},
           "config": {"env": env}})
}

#[test]
fn manifests_deploy_then_only_changes_are_applied_and_added_ones_without_a_restart() {
    let mut n = Node::new("deploy_update", "update");
    let image = service_image(&n.h);
    n.manifest("a.json", &manifest("dep-a", &image, &["N=1"]));
    n.manifest("b.json", &manifest("dep-b", &image, &["N=2"]));
    n.manifest("c.json", &manifest("dep-c", &image, &["N=3"]));
    n.start();
    n.wait_log("3 manifests: 3 created, 0 recreated, 0 updated, 0 failed");
    let first = n.wait_running(&["dep-a", "dep-b", "dep-c"]);
    assert_eq!(first["dep-a"].0, "dep-a", "the manifest's ID is used");
    assert_eq!(
        common::ctr_tasks(&n.setup.containerd_sock, &n.setup.namespace).len(),
        3
    );

    // Second start: nothing recreated, same IDs and PIDs.
    n.stop();
    n.start();
    n.wait_log("3 manifests: 0 created, 0 recreated, 0 updated, 0 failed");
    assert_eq!(n.wait_running(&["dep-a", "dep-b", "dep-c"]), first);

    // One manifest changed: only that container is recreated.
    n.stop();
    n.manifest("b.json", &manifest("dep-b", &image, &["N=22"]));
    n.start();
    n.wait_log("3 manifests: 0 created, 1 recreated, 0 updated, 0 failed");
    let third = n.wait_running(&["dep-a", "dep-b", "dep-c"]);
    assert_eq!(third["dep-a"], first["dep-a"]);
    assert_eq!(third["dep-c"], first["dep-c"]);
    assert_ne!(third["dep-b"].0, first["dep-b"].0);
    let got = n.running();
    assert_eq!(got.len(), 3, "the old dep-b is gone: {got:?}");
    let env = common::kanto_cm(&n.api(), &["get", "-n", "dep-b"]);
    assert!(String::from_utf8_lossy(&env.stdout).contains("N=22"));

    // Added at run time: deployed without a restart; a bad one is reported and skipped.
    let pid = n.daemon.as_ref().unwrap().pid();
    n.manifest("bad-json.json", &json!("not a container"));
    std::fs::write(n.manifests.join("broken.json"), b"{\"container_name\": ").unwrap();
    n.manifest("bad-field.json", &json!({"container_name": "dep-x", "image": {"name": image}, "host_config": {"restart_policy": {"type": "sometimes"}}}));
    n.manifest("d.json", &manifest("dep-d", &image, &[]));
    n.wait_running(&["dep-a", "dep-b", "dep-c", "dep-d"]);
    assert_eq!(n.daemon.as_ref().unwrap().pid(), pid);
    n.wait_log("manifest bad-field.json: host_config.restart_policy.type");
    n.wait_log("manifest broken.json: container_name: EOF while parsing");
    n.wait_log("manifest bad-json.json: invalid type: string");
    // A pass that read all seven has ended (the errors are logged at its start): dep-x would
    // have been created in it.
    n.wait_log("7 manifests: ");
    assert!(!n.running().contains_key("dep-x"));
    assert!(n.daemon.as_mut().unwrap().try_status().is_none());
}

#[test]
fn a_system_containers_update_that_fails_its_health_gate_leaves_the_old_one_running() {
    let mut n = Node::new("deploy_gate", "update");
    let image = service_image(&n.h);
    let mut v1 = manifest("sys-gate", &image, &["N=1"]);
    v1["leda_cm"] = json!({"system": true});
    n.manifest("sys.json", &v1);
    n.start();
    n.wait_log("1 manifests: 1 created");
    let first = n.wait_running(&["sys-gate"]);

    // v2 exits after 2 s; its gate asks for 6 s: the recreate is rolled back.
    let mut v2 = manifest("sys-gate", &image, &["N=2"]);
    v2["config"]["cmd"] = json!(["sh", "-c", "sleep 2; exit 3"]);
    v2["leda_cm"] = json!({"system": true, "health_gate": {"uptime_ms": 6000}});
    n.manifest("sys.json", &v2);
    n.wait_log("1 manifests: 0 created, 1 recreated, 0 updated, 1 failed");
    let log = n.stderr();
    assert!(
        log.contains("health gate failed: the container exited with code 3"),
        "{log}"
    );
    let after = n.wait_running(&["sys-gate"]);
    assert_eq!(
        after["sys-gate"].0, first["sys-gate"].0,
        "the old one runs again"
    );
    assert_eq!(after.len(), 1, "{after:?}");
    let got = common::kanto_cm(&n.api(), &["get", "-n", "sys-gate"]);
    assert!(String::from_utf8_lossy(&got.stdout).contains("N=1"));
}

#[test]
fn init_mode_applies_the_manifests_at_the_first_start_only() {
    let mut n = Node::new("deploy_init", "init");
    let image = service_image(&n.h);
    n.manifest("a.json", &manifest("init-a", &image, &["N=1"]));
    n.manifest("b.json", &manifest("init-b", &image, &["N=2"]));
    n.start();
    n.wait_log("2 manifests: 2 created");
    let first = n.wait_running(&["init-a", "init-b"]);
    assert!(n.setup.state_dir.join("deployment/initialized").exists());

    n.stop();
    n.manifest("a.json", &manifest("init-a", &image, &["N=11"]));
    n.manifest("c.json", &manifest("init-c", &image, &[]));
    n.start();
    // The deployment task decided not to apply them: it says so before anything else.
    n.wait_log("deployment (init mode): done at the first start");
    assert_eq!(n.running(), first);
    // Changes at run time are not applied either. The same task says so for this change
    // only after it would have finished a first pass: nothing was applied before, either.
    n.manifest("d.json", &manifest("init-d", &image, &[]));
    n.wait_log("manifest changes are not applied after the first start");
    assert_eq!(n.running(), first);
    let log = n.stderr();
    assert!(
        !log.contains("from its manifest") && !log.contains(" manifests: "),
        "a deployment pass at a later start:\n{log}"
    );
}

#[test]
fn a_system_container_from_a_manifest_survives_an_empty_desired_state() {
    let h = Harness::get();
    let dir = h.test_dir("deploy_system_manifests");
    let mut system = manifest("sys-app", &service_image(&h), &[]);
    system["leda_cm"] = json!({"system": true});
    std::fs::write(dir.join("sys.json"), serde_json::to_vec(&system).unwrap()).unwrap();
    std::fs::write(
        dir.join("plain.json"),
        serde_json::to_vec(&manifest("plain-app", &service_image(&h), &[])).unwrap(),
    )
    .unwrap();
    let d = common::device::Device::start(
        "deploy_system",
        json!({"update_agent": {"enable": true}, "deployment": {"enable": true, "ctr_dir": dir}}),
        &["containersupdate/#"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while d.containers().values().filter(|c| c.1 == "RUNNING").count() < 2 {
        assert!(Instant::now() < deadline, "{}", d.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    d.peer.publish(
        "containersupdate/desiredstate",
        &json!({"activityId": "empty", "payload": {"domains": [{"id": "containers", "components": []}]}}),
    );
    let done = d
        .peer
        .wait(
            "containersupdate/desiredstatefeedback",
            Duration::from_secs(30),
            |j| j["activityId"] == "empty" && j["payload"]["status"] == "COMPLETED",
        )
        .unwrap_or_else(|| panic!("{}", d.stderr()));
    let actions = done.json.unwrap()["payload"]["actions"].clone();
    assert_eq!(actions.as_array().unwrap().len(), 1, "{actions}");
    assert_eq!(actions[0]["component"]["id"], "containers:plain-app");
    d.assert_running(&["sys-app"]);
}

fn registry_cli(cfg: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let mut child = Command::new(common::BIN)
        .arg("registry")
        .args(args)
        .arg("--cfg-file")
        .arg(cfg)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn registry_credentials_apply_without_a_restart_and_never_show() {
    let mut n = Node::new("deploy_registry", "update");
    n.start();
    let cfg = n.setup.config_path();
    let image = format!("{}/{}", n.h.registry_auth, n.h.image);
    let wrong = "wrong-password-0x5eed";
    let mut said = String::new();

    // No credentials: the pull is refused, named.
    let out = common::kanto_cm(&n.api(), &["create", "--name", "private", &image]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("401") || err.to_lowercase().contains("unauthorized"),
        "{err}"
    );

    // A wrong password: applied at once (no restart), and the pull fails with 401, named.
    let (code, text) = registry_cli(
        &cfg,
        &[
            "add",
            "-h",
            &n.h.registry_auth,
            "-u",
            &n.h.registry_user,
            "-p",
            wrong,
        ],
        None,
    );
    said += &text;
    assert_eq!(code, 0, "{text}");
    n.wait_log("configuration reloaded");
    let out = common::kanto_cm(&n.api(), &["create", "--name", "private", &image]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success()
            && (err.contains("401") || err.to_lowercase().contains("unauthorized")),
        "{err}"
    );
    assert!(
        err.contains(&n.h.registry_auth),
        "the registry is named: {err}"
    );
    said += &err;

    // The right password from stdin: the pull works, same daemon.
    let pid = n.daemon.as_ref().unwrap().pid();
    let before = n.stderr().matches("configuration reloaded").count();
    let (code, text) = registry_cli(
        &cfg,
        &[
            "add",
            "-h",
            &n.h.registry_auth,
            "-u",
            &n.h.registry_user,
            "--password-stdin",
        ],
        Some(&format!("{}\n", n.h.registry_pass)),
    );
    said += &text;
    assert_eq!(code, 0, "{text}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while n.stderr().matches("configuration reloaded").count() == before {
        assert!(Instant::now() < deadline, "{}", n.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = common::kanto_cm(&n.api(), &["create", "--name", "private", &image]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(n.daemon.as_ref().unwrap().pid(), pid, "no restart");
    said += &String::from_utf8_lossy(&common::kanto_cm(&n.api(), &["get", "-n", "private"]).stdout);

    // The drop-in is private; list masks the password.
    let dropin = n.setup.state_dir.join("config.d/registries.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&dropin).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (code, list) = registry_cli(&cfg, &["list"], None);
    said += &list;
    assert_eq!(code, 0);
    let line = list
        .lines()
        .find(|l| l.starts_with(&n.h.registry_auth))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(
        line.contains(&n.h.registry_user) && line.contains("********"),
        "{line}"
    );

    // Usage errors.
    for args in [
        vec!["add", "-h", "https://bad/host", "-u", "u", "-p", "p"],
        vec!["add", "-h", "good.example", "-u", "u"],
        vec!["add", "-h", "bad host", "-u", "u", "-p", "p"],
    ] {
        let (code, text) = registry_cli(&cfg, &args, None);
        assert_eq!(code, 64, "{args:?}: {text}");
        said += &text;
    }
    // A world-readable drop-in is warned about.
    std::fs::set_permissions(&dropin, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, text) = registry_cli(&cfg, &["remove", &n.h.registry_auth], None);
    assert_eq!(code, 0, "{text}");
    std::fs::write(n.setup.state_dir.join("config.d/open.json"), b"{}").unwrap();
    std::fs::set_permissions(
        n.setup.state_dir.join("config.d/open.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(n.setup.state_dir.join("config.d/open.json"), b"{ }").unwrap();
    n.wait_log("open.json is readable by every user");

    // No password anywhere: the daemon's log, the CLI's output.
    let all = n.stderr() + &said;
    for secret in [wrong, n.h.registry_pass.as_str()] {
        assert!(!all.contains(secret), "a password leaked");
    }
}
