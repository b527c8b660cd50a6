//! The layer's locked-down local broker (meta-leda-cm, package leda-cm-mqtt-acl; issue 17
//! item 4), black box: the real mosquitto with the configuration and ACL the layer ships,
//! the passwords made by the layer's first-boot script, and the real daemon connecting with
//! the drop-in that script writes. Anonymous and wrongly authenticated clients are refused;
//! only the update manager's user can send leda-cm a desired state.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::mqtt::{free_port, Peer};
use common::{DaemonSetup, Harness};
use serde_json::json;

fn layer_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("meta-leda-cm/recipes-connectivity/leda-cm-mqtt-acl/files")
        .join(name)
}

/// mosquitto with the layer's files, after the layer's first-boot script. The loopback
/// listener is 127.0.0.1:port, the "bridge" listener 127.0.0.2:port.
struct AclBroker {
    child: Child,
    port: u16,
    state: PathBuf,
    log: PathBuf,
}

impl AclBroker {
    fn start(dir: &Path, leda_cm_state: &Path) -> AclBroker {
        let state = dir.join("mqtt-state");
        let conf_dir = dir.join("mqtt-conf");
        std::fs::create_dir_all(conf_dir.join("conf.d")).unwrap();
        let out = Command::new("sh")
            .arg(layer_file("leda-cm-mqtt-setup"))
            .env("LEDA_CM_MQTT_STATE", &state)
            .env("LEDA_CM_STATE_DIR", leda_cm_state)
            .env("LEDA_CM_MQTT_OWNER", "")
            .env("LEDA_CM_BRIDGE_IP4", "")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "the setup prints nothing (no password): {out:?}"
        );
        // A second run (the next boot) keeps what the first made.
        let passwd = std::fs::read(state.join("passwd")).unwrap();
        let again = Command::new("sh")
            .arg(layer_file("leda-cm-mqtt-setup"))
            .env("LEDA_CM_MQTT_STATE", &state)
            .env("LEDA_CM_STATE_DIR", leda_cm_state)
            .output()
            .unwrap();
        assert!(again.status.success(), "{again:?}");
        assert_eq!(std::fs::read(state.join("passwd")).unwrap(), passwd);

        std::fs::copy(layer_file("leda-cm.acl"), conf_dir.join("leda-cm.acl")).unwrap();
        let port = free_port();
        let log = dir.join("mosquitto.log");
        let conf = std::fs::read_to_string(layer_file("mosquitto.conf"))
            .unwrap()
            .replace("@LEDA_CM_MQTT_STATE@", &state.display().to_string())
            .replace("@LEDA_CM_MQTT_CONF_DIR@", &conf_dir.display().to_string())
            .replace("@LEDA_CM_MQTT_PORT@", &port.to_string())
            .replace("@LEDA_CM_MQTT_BRIDGE_ADDR@", "127.0.0.2")
            .replace(
                "log_dest stderr",
                &format!("log_dest file {}", log.display()),
            );
        assert!(!conf.contains('@'), "every placeholder is known: {conf}");
        // The harness's work dir is private to root (mktemp -d): the broker stays root here.
        let conf = format!("{conf}\nuser root\nlog_type all\n");
        let path = conf_dir.join("leda-cm.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&path)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while ["127.0.0.1", "127.0.0.2"]
            .iter()
            .any(|a| std::net::TcpStream::connect((*a, port)).is_err())
        {
            assert!(Instant::now() < deadline, "mosquitto on {port}: {}", {
                std::fs::read_to_string(&log).unwrap_or_default()
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        AclBroker {
            child,
            port,
            state,
            log,
        }
    }

    fn password(&self, user: &str) -> String {
        std::fs::read_to_string(self.state.join("clients").join(user)).unwrap()
    }

    fn pub_cli(&self, host: &str, credentials: Option<(&str, &str)>, topic: &str) -> Output {
        let mut cmd = Command::new("mosquitto_pub");
        cmd.args(["-h", host, "-p", &self.port.to_string(), "-q", "1"]);
        cmd.args(["-t", topic, "-m", "{}"]);
        if let Some((u, p)) = credentials {
            cmd.args(["-u", u, "-P", p]);
        }
        cmd.output().unwrap()
    }
}

impl Drop for AclBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn only_local_clients_with_their_password_may_connect() {
    let h = Harness::get();
    let dir = h.test_dir("acl-connect");
    let b = AclBroker::start(&dir, &dir.join("cm-state"));
    let vum = b.password("vum");
    assert_eq!(vum.len(), 48, "24 random bytes, hex");
    assert_ne!(vum, b.password("leda-cm"));

    for host in ["127.0.0.1", "127.0.0.2"] {
        let anonymous = b.pub_cli(host, None, "containersupdate/desiredstate");
        assert!(
            !anonymous.status.success(),
            "anonymous on {host}: {anonymous:?}"
        );
        assert!(
            String::from_utf8_lossy(&anonymous.stderr).contains("not authorised"),
            "{anonymous:?}"
        );
        let wrong = b.pub_cli(host, Some(("vum", "not-the-password")), "vehicleupdate/x");
        assert!(
            !wrong.status.success(),
            "a wrong password on {host}: {wrong:?}"
        );
        let right = b.pub_cli(host, Some(("vum", &vum)), "vehicleupdate/x");
        assert!(right.status.success(), "vum on {host}: {right:?}");
    }
    // The broker listens on the two local addresses only, not on every address.
    let other = std::net::TcpStream::connect(("127.0.0.3", b.port));
    assert!(other.is_err(), "127.0.0.3:{} accepted", b.port);
    // leda-cm's own credentials, as a drop-in of its configuration (mode 0600).
    let dropin = dir.join("cm-state/config.d/40-mqtt-credentials.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&dropin).unwrap()).unwrap();
    assert_eq!(v["connection"]["client_username"], "leda-cm");
    assert_eq!(v["connection"]["client_password"], b.password("leda-cm"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&dropin).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn only_the_update_manager_may_send_leda_cm_a_desired_state() {
    let h = Harness::get();
    let mut setup = DaemonSetup::new(&h, "acl-agent");
    let b = AclBroker::start(&setup.dir, &setup.state_dir);
    setup.extra_config = json!({
        "connection": {"broker_url": format!("tcp://127.0.0.1:{}", b.port)},
        "update_agent": {"enable": true},
        "containers": {"insecure_registries": [h.registry]},
    });
    let vum_pw = b.password("vum");
    let cc_pw = b.password("cloudconnector");
    let vum = Peer::connect_as(b.port, &["containersupdate/#"], Some(("vum", &vum_pw)));
    let cloud = Peer::connect_as(b.port, &["e/#"], Some(("cloudconnector", &cc_pw)));
    let daemon = setup.spawn_ready(1, Duration::from_secs(20));

    // leda-cm connected with the drop-in's credentials and may write its current state.
    let current = vum.wait(
        "containersupdate/currentstate",
        Duration::from_secs(20),
        |_| true,
    );
    assert!(current.is_some(), "no current state\n{}", daemon.stderr());

    // The cloud connector may not send desired states: the broker drops it...
    let image = format!("{}/{}", h.registry, h.image);
    let desired = |activity: &str| {
        json!({"activityId": activity, "timestamp": 1, "payload": {"domains": [{
        "id": "containers", "config": [], "components": [{
            "id": "intruder", "version": "1.0",
            "config": [{"key": "image", "value": image}, {"key": "privileged", "value": "true"}],
        }]}]}})
    };
    cloud.publish_confirmed("containersupdate/desiredstate", &desired("from-cloud"));
    // ...while the update manager's, sent after it, is taken.
    let mine = json!({"activityId": "from-vum", "timestamp": 2, "payload": {"domains": [{
        "id": "containers", "config": [], "components": []}]}});
    vum.publish_confirmed("containersupdate/desiredstate", &mine);
    let done = vum.wait(
        "containersupdate/desiredstatefeedback",
        Duration::from_secs(30),
        |j| j["activityId"] == "from-vum" && j["payload"]["status"] == "COMPLETED",
    );
    assert!(
        done.is_some(),
        "no COMPLETED for vum's desired state\n{}",
        daemon.stderr()
    );
    let about_cloud: Vec<_> = vum
        .heard()
        .into_iter()
        .filter(|m| {
            m.json
                .as_ref()
                .is_some_and(|j| j["activityId"] == "from-cloud")
        })
        .collect();
    assert!(about_cloud.is_empty(), "{about_cloud:?}");
    assert!(
        !daemon.stderr().contains("from-cloud"),
        "{}",
        daemon.stderr()
    );
    let list = common::kanto_cm(&setup.runtime_dir.join("cm.sock"), &["list", "--json"]);
    assert!(list.status.success(), "{list:?}");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).unwrap();
    assert!(list.is_empty(), "{list:?}");
    let log = std::fs::read_to_string(&b.log).unwrap_or_default();
    assert!(
        log.contains("Denied PUBLISH from") && log.contains("containersupdate/desiredstate"),
        "the broker logs the denial: {log}"
    );
    // No password in leda-cm's log.
    assert!(
        !daemon.stderr().contains(&b.password("leda-cm")),
        "{}",
        daemon.stderr()
    );
    drop(daemon);
    common::clean_namespace(&setup.containerd_sock, &setup.namespace);
}
