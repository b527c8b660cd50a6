//! The Container Update Agent, black box: the real daemon with a mosquitto broker of the
//! test's own, the harness's containerd and registry. A peer plays the cloud: it publishes
//! desired states and commands on the broker and records the feedback and current states.
//! What runs is checked with `ctr`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::device::{service_image, Device};
use common::mqtt::{Broker, Peer};
use common::{DaemonSetup, Harness, NotifyListener};
use serde_json::{json, Value};

const DESIRED: &str = "containersupdate/desiredstate";
const COMMAND: &str = "containersupdate/desiredstate/command";
const FEEDBACK: &str = "containersupdate/desiredstatefeedback";
const CURRENT: &str = "containersupdate/currentstate";
const GET: &str = "containersupdate/currentstate/get";
const LONG: Duration = Duration::from_secs(60);

/// The update agent's side of the conversation.
impl Device {
    fn send(&self, activity: &str, components: Value) {
        self.send_payload(
            activity,
            json!({"domains": [{"id": "containers", "config": [], "components": components}]}),
        );
    }

    fn send_payload(&self, activity: &str, payload: Value) {
        self.peer.publish(
            DESIRED,
            &json!({"activityId": activity, "timestamp": 1, "payload": payload}),
        );
    }

    fn feedback(&self, activity: &str) -> Vec<Value> {
        self.peer
            .heard()
            .into_iter()
            .filter(|h| h.topic == FEEDBACK)
            .filter_map(|h| h.json)
            .filter(|j| j["activityId"] == activity)
            .map(|j| j["payload"].clone())
            .collect()
    }

    /// The feedback statuses in order, repeats (progress updates) once.
    fn statuses(&self, activity: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for f in self.feedback(activity) {
            let s = f["status"].as_str().unwrap_or_default().to_string();
            if out.last() != Some(&s) {
                out.push(s);
            }
        }
        out
    }

    /// Waits for the feedback `status` of `activity`; returns it.
    fn wait_status(&self, activity: &str, status: &str, timeout: Duration) -> Value {
        match self.peer.wait(FEEDBACK, timeout, |j| {
            j["activityId"] == activity && j["payload"]["status"] == status
        }) {
            Some(h) => h.json.unwrap()["payload"].clone(),
            None => panic!(
                "no {status} for {activity} within {timeout:?}; heard {:?}\n{}",
                self.statuses(activity),
                self.stderr()
            ),
        }
    }
}

/// A device with the update agent on (`sua` a system container).
fn agent_device(test: &str, extra: Value) -> Device {
    let mut config = json!({"update_agent": {"enable": true, "system_containers": ["sua"]}});
    common::merge(&mut config, extra);
    Device::start(test, config, &["containersupdate/#"])
}

fn component(name: &str, image: &str, config: &[(&str, &str)]) -> Value {
    let mut kv = vec![json!({"key": "image", "value": image})];
    kv.extend(config.iter().map(|(k, v)| json!({"key": k, "value": v})));
    json!({"id": name, "version": "1.0", "config": kv})
}

fn env_of(c: &Value) -> Vec<String> {
    c["config"]["env"]
        .as_array()
        .map(|a| a.iter().map(|e| e.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

const FULL_FLOW: [&str; 10] = [
    "IDENTIFYING",
    "IDENTIFIED",
    "DOWNLOADING",
    "DOWNLOAD_SUCCESS",
    "UPDATING",
    "UPDATE_SUCCESS",
    "ACTIVATING",
    "ACTIVATION_SUCCESS",
    "CLEANUP_SUCCESS",
    "COMPLETED",
];

/// Leda's documented desired state, its images served by the harness registry (the busybox
/// service image under each name) and its certificate mounts pointing at files of the test.
fn leda_fixture(d: &Device) -> Value {
    let mut fixture: Value =
        serde_json::from_str(include_str!("fixtures/leda-docs/leda-desired-state.json")).unwrap();
    let layout = PathBuf::from(std::env::var("LEDA_TEST_OCI_LAYOUT").unwrap());
    let certs = d.setup.dir.join("certificates");
    std::fs::create_dir_all(&certs).unwrap();
    for component in fixture["payload"]["domains"][0]["components"]
        .as_array_mut()
        .unwrap()
    {
        for kv in component["config"].as_array_mut().unwrap() {
            let value = kv["value"].as_str().unwrap().to_string();
            if kv["key"] == "image" {
                let local = format!("{}/{}", d.h.registry, value.split_once('/').unwrap().1);
                d.h.lib(&format!(
                    "harness_push '{}' service '{local}'",
                    layout.parent().unwrap().display()
                ));
                kv["value"] = json!(local);
            } else if kv["key"] == "mount" {
                let rewritten =
                    value.replace("/data/var/certificates", &certs.display().to_string());
                let file = rewritten.split(':').next().unwrap();
                std::fs::write(file, "test certificate\n").unwrap();
                kv["value"] = json!(rewritten);
            }
        }
    }
    fixture
}

#[test]
fn the_leda_desired_state_converges_then_a_second_one_destroys_recreates_and_keeps() {
    // Its certificate mounts point into the test's dir (`/data` on a device).
    let workdir = Harness::get().workdir;
    let d = agent_device(
        "agent_leda",
        json!({"remote_requests": {"mount_sources": [workdir]}}),
    );
    // A system container, not in any desired state: it must survive both.
    let image = service_image(&d.h);
    d.kcm_ok(&["create", "--name", "sua", &image]);
    d.kcm_ok(&["start", "-n", "sua"]);
    let sua_id = d.containers()["sua"].0.clone();

    let fixture = leda_fixture(&d);
    let activity = fixture["activityId"].as_str().unwrap().to_string();
    d.peer.publish(DESIRED, &fixture);
    d.wait_status(&activity, "COMPLETED", LONG);
    assert_eq!(d.statuses(&activity), FULL_FLOW);
    // Real byte progress from the pulls reached the DOWNLOADING feedback.
    let progress: Vec<u64> = d
        .feedback(&activity)
        .iter()
        .filter(|f| f["status"] == "DOWNLOADING")
        .flat_map(|f| f["actions"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["progress"].as_u64())
        .collect();
    assert!(progress.iter().any(|p| *p > 0 && *p <= 100), "{progress:?}");
    let first = d.assert_running(&[
        "sua",
        "databroker",
        "feedercan",
        "hvacservice-example",
        "seatservice-example",
        "cloudconnector",
    ]);
    assert_eq!(first["sua"].0, sua_id);
    let db = &first["databroker"].2;
    assert_eq!(env_of(db), ["RUST_LOG=info", "vehicle_data_broker=debug"]);
    assert_eq!(
        db["host_config"]["log_config"]["driver_config"]["max_size"],
        "1M"
    );

    // The current state follows the change (debounced), listing every container.
    let current = d
        .peer
        .wait(CURRENT, Duration::from_secs(5), |j| {
            j["payload"]["softwareNodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["id"] == "containers:cloudconnector"))
        })
        .expect("a current state with the new containers");
    assert!(current.json.unwrap()["activityId"]
        .as_str()
        .unwrap()
        .starts_with("current-state-"));

    // Second: cloudconnector dropped, feedercan's env changed, the rest as before.
    let mut second = fixture.clone();
    second["activityId"] = json!("second");
    let components = second["payload"]["domains"][0]["components"]
        .as_array_mut()
        .unwrap();
    components.retain(|c| c["id"] != "cloudconnector");
    let feeder = components
        .iter_mut()
        .find(|c| c["id"] == "feedercan")
        .unwrap();
    for kv in feeder["config"].as_array_mut().unwrap() {
        if kv["value"] == "LOG_LEVEL=info" {
            kv["value"] = json!("LOG_LEVEL=debug");
        }
    }
    d.peer.publish(DESIRED, &second);
    let done = d.wait_status("second", "COMPLETED", LONG);
    assert_eq!(d.statuses("second"), FULL_FLOW);
    let action = |name: &str| {
        done["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["component"]["id"] == format!("containers:{name}"))
            .cloned()
            .unwrap_or_else(|| panic!("no action for {name}: {done}"))
    };
    assert_eq!(action("cloudconnector")["status"], "REMOVAL_SUCCESS");
    assert_eq!(action("feedercan")["status"], "ACTIVATION_SUCCESS");
    assert_eq!(
        action("databroker")["message"],
        "Existing container instance is running."
    );
    assert!(done["actions"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["component"]["id"] != "containers:sua"));

    let after = d.assert_running(&[
        "sua",
        "databroker",
        "feedercan",
        "hvacservice-example",
        "seatservice-example",
    ]);
    assert_eq!(after["sua"].0, sua_id, "the system container is kept");
    assert_eq!(
        after["databroker"].0, first["databroker"].0,
        "unchanged containers are kept"
    );
    assert_ne!(
        after["feedercan"].0, first["feedercan"].0,
        "feedercan is recreated"
    );
    assert!(env_of(&after["feedercan"].2).contains(&"LOG_LEVEL=debug".to_string()));
    let gone = &first["cloudconnector"].0;
    assert!(
        !d.ctr_ids().contains(gone),
        "cloudconnector is removed from containerd"
    );
    assert!(
        !d.ctr_ids().contains(&first["feedercan"].0),
        "the old feedercan is removed"
    );
}

#[test]
fn orchestrated_commands_in_order_and_out_of_order() {
    let d = agent_device(
        "agent_orch",
        json!({"update_agent": {"mode": "orchestrated"}}),
    );
    let image = service_image(&d.h);
    d.send("orch", json!([component("app", &image, &[("env", "A=1")])]));
    let identified = d.wait_status("orch", "IDENTIFIED", LONG);
    assert_eq!(identified["actions"][0]["status"], "IDENTIFIED");
    assert_eq!(
        identified["actions"][0]["message"],
        "New container will be created and started."
    );
    let command = |c: &str| {
        d.peer.publish(COMMAND, &json!({"activityId": "orch", "timestamp": 2, "payload": {"command": c, "baseline": ""}}))
    };
    // Out of order: a failure feedback, nothing done.
    command("ACTIVATE");
    let refused = d.wait_status("orch", "ACTIVATION_FAILURE", LONG);
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("only after status UPDATE_SUCCESS"),
        "{refused}"
    );
    // It waited: nothing else happened without commands. The runner takes the command only
    // after it is done with the desired state, and its feedback goes out in order after
    // everything that desired state sent: the refusal proves nothing came in between.
    assert_eq!(
        d.statuses("orch"),
        ["IDENTIFYING", "IDENTIFIED", "ACTIVATION_FAILURE"]
    );
    assert!(d.containers().is_empty());

    for (c, status) in [
        ("DOWNLOAD", "DOWNLOAD_SUCCESS"),
        ("UPDATE", "UPDATE_SUCCESS"),
        ("ACTIVATE", "ACTIVATION_SUCCESS"),
        ("CLEANUP", "COMPLETED"),
    ] {
        command(c);
        d.wait_status("orch", status, LONG);
    }
    assert_eq!(
        d.statuses("orch"),
        [
            "IDENTIFYING",
            "IDENTIFIED",
            "ACTIVATION_FAILURE",
            "DOWNLOADING",
            "DOWNLOAD_SUCCESS",
            "UPDATING",
            "UPDATE_SUCCESS",
            "ACTIVATING",
            "ACTIVATION_SUCCESS",
            "CLEANUP_SUCCESS",
            "COMPLETED"
        ]
    );
    d.assert_running(&["app"]);
}

/// A busybox container whose PID 1 ignores SIGTERM: a stop takes the whole timeout.
fn stubborn(d: &Device, name: &str, config: &[(&str, &str)]) -> Value {
    let image = format!("{}/{}", d.h.registry, d.h.image);
    let mut kv = vec![
        ("cmd", "/bin/sh"),
        ("cmd", "-c"),
        ("cmd", "trap '' TERM; while :; do sleep 1; done"),
    ];
    kv.extend_from_slice(config);
    component(name, &image, &kv)
}

/// The message of `name`'s action in a feedback.
fn action_message(feedback: &Value, name: &str) -> String {
    feedback["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["component"]["id"] == format!("containers:{name}"))
        .and_then(|a| a["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_slow_stop_does_not_hold_the_new_containers_but_a_shared_mount_waits_for_it() {
    let shared = Harness::get().test_dir("agent_beside_data");
    let d = agent_device(
        "agent_beside",
        json!({
            "manager": {"default_ctrs_stop_timeout": 30},
            "remote_requests": {"mount_sources": [shared]},
        }),
    );
    let mount = format!("{}:/data", shared.display());
    d.send(
        "v1",
        json!([
            stubborn(&d, "slow", &[("env", "V=1")]),
            stubborn(&d, "data", &[("env", "V=1"), ("mount", &mount)]),
        ]),
    );
    d.wait_status("v1", "COMPLETED", LONG);
    let before = d.assert_running(&["slow", "data"]);
    let (old_slow, old_data) = (before["slow"].0.clone(), before["data"].0.clone());

    // v2 replaces both (keeping their names) and adds one. slow shares nothing with its
    // successor: they overlap while it stops. data's successor mounts the same directory:
    // it starts only once the old one has stopped.
    let started = Instant::now();
    d.send(
        "v2",
        json!([
            stubborn(&d, "slow", &[("env", "V=2")]),
            stubborn(&d, "data", &[("env", "V=2"), ("mount", &mount)]),
            component("fresh", &service_image(&d.h), &[]),
        ]),
    );
    let task = |tasks: &std::collections::BTreeMap<String, String>, id: &str| {
        tasks.get(id).cloned().unwrap_or_default()
    };
    let (mut new_slow_at, mut fresh_at, mut new_data_at) = (None, None, None);
    let mut old_data_seen_stopping = false;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "v2 did not complete: {:?}\n{}",
            d.statuses("v2"),
            d.stderr()
        );
        // What was said before this look at containerd must be true in it.
        let said = d.feedback("v2");
        let names = d.containers();
        let tasks = common::ctr_tasks(&d.setup.containerd_sock, &d.setup.namespace);
        let id_of =
            |name: &str, old: &str| names.get(name).map(|c| c.0.clone()).filter(|id| id != old);
        let running =
            |id: &Option<String>| id.as_ref().is_some_and(|id| task(&tasks, id) == "RUNNING");
        for f in &said {
            for (name, old) in [("slow", &old_slow), ("data", &old_data)] {
                let m = action_message(f, name);
                if m.contains("the old one is removed") {
                    assert!(
                        !tasks.contains_key(old),
                        "{name}: said {m:?} while it is there"
                    );
                }
                if m.contains("the old one is stopped") || m == "Old container instance is stopped."
                {
                    assert!(
                        task(&tasks, old).is_empty(),
                        "{name}: said {m:?} while its task is there: {}",
                        task(&tasks, old)
                    );
                }
            }
        }
        let new_slow = id_of("slow", &old_slow);
        if new_slow_at.is_none() && running(&new_slow) {
            new_slow_at = Some(started.elapsed());
            assert_eq!(
                task(&tasks, &old_slow),
                "RUNNING",
                "the new slow runs while the old one still stops"
            );
        }
        if fresh_at.is_none() && running(&id_of("fresh", "")) {
            fresh_at = Some(started.elapsed());
        }
        let old_data_task = task(&tasks, &old_data);
        if !old_data_task.is_empty() && new_slow_at.is_some() {
            old_data_seen_stopping = true;
        }
        if running(&id_of("data", &old_data)) {
            assert!(
                old_data_task.is_empty(),
                "the new data runs beside the old one ({old_data_task})"
            );
            new_data_at.get_or_insert(started.elapsed());
        }
        if said.iter().any(|f| f["status"] == "COMPLETED") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let new_slow_at = new_slow_at.expect("the new slow ran");
    eprintln!(
        "agent_beside: the new container ran {:.1} s after the desired state (the old one ignores SIGTERM, stop timeout 30 s); fresh at {:.1} s, data (same mount) at {:.1} s",
        new_slow_at.as_secs_f64(),
        fresh_at.expect("fresh ran").as_secs_f64(),
        new_data_at.expect("the new data ran").as_secs_f64()
    );
    assert!(
        old_data_seen_stopping,
        "the old data was seen still stopping while the new slow ran"
    );
    assert_eq!(d.statuses("v2"), FULL_FLOW);
    // The end says each old one removed, and it is.
    let end = d.wait_status("v2", "COMPLETED", LONG);
    for name in ["slow", "data"] {
        assert_eq!(
            action_message(&end, name),
            "New container instance is started; the old one is removed.",
            "{end}"
        );
    }
    // Said when it ran (data's start waited meanwhile: ACTIVATING said again).
    let activated = d
        .feedback("v2")
        .into_iter()
        .find(|f| {
            f["actions"].as_array().into_iter().flatten().any(|a| {
                a["component"]["id"] == "containers:slow" && a["status"] == "ACTIVATION_SUCCESS"
            })
        })
        .unwrap();
    assert_eq!(activated["status"], "ACTIVATING");
    assert_eq!(
        action_message(&activated, "slow"),
        "New container instance is started; the old one is still stopping."
    );
    let after = d.assert_running(&["slow", "data", "fresh"]);
    assert_eq!(env_of(&after["slow"].2), ["V=2"]);
    assert!(!d.ctr_ids().contains(&old_slow) && !d.ctr_ids().contains(&old_data));
}

#[test]
fn a_daemon_killed_while_an_old_container_still_stops_resumes_and_removes_it() {
    let mut d = agent_device(
        "agent_beside_kill",
        json!({"manager": {"default_ctrs_stop_timeout": 30}}),
    );
    d.send("v1", json!([stubborn(&d, "slow", &[("env", "V=1")])]));
    d.wait_status("v1", "COMPLETED", LONG);
    let old = d.assert_running(&["slow"])["slow"].0.clone();
    d.send(
        "v2",
        json!([
            stubborn(&d, "slow", &[("env", "V=2")]),
            component("fresh", &service_image(&d.h), &[]),
        ]),
    );
    // Activated while the old one stops (it ignores SIGTERM: 30 s): killed there.
    let activated = d.wait_status("v2", "ACTIVATION_SUCCESS", LONG);
    assert_eq!(
        action_message(&activated, "slow"),
        "New container instance is started; the old one is still stopping.",
        "{activated}"
    );
    let mid = d.containers();
    assert_eq!(mid["slow.prev"].0, old, "{mid:#?}");
    let new = mid["slow"].0.clone();
    let killed = d.daemon.take().unwrap();
    killed.signal(libc::SIGKILL);
    drop(killed);
    let statuses = d.statuses("v2");
    assert!(!statuses.contains(&"COMPLETED".to_string()), "{statuses:?}");
    let tasks = common::ctr_tasks(&d.setup.containerd_sock, &d.setup.namespace);
    assert_eq!(tasks[&old], "RUNNING", "the old one outlives the daemon");
    assert_eq!(tasks[&new], "RUNNING");

    // The restart resumes the apply: the old one goes, the new ones are kept.
    d.spawn();
    let resumed = d.wait_status("v2", "COMPLETED", LONG);
    assert_eq!(resumed["message"], "resumed after a restart of leda-cm");
    let after = d.assert_running(&["slow", "fresh"]);
    assert_eq!(after["slow"].0, new, "the new slow is kept");
    assert_eq!(after["fresh"].0, mid["fresh"].0, "fresh is kept");
    assert!(!d.ctr_ids().contains(&old), "the old slow is removed");
}

#[test]
fn a_failed_activation_rolls_back_to_the_old_container() {
    let d = agent_device("agent_rollback", json!({}));
    let image = service_image(&d.h);
    d.send(
        "v1",
        json!([component("app", &image, &[("env", "VERSION=1")])]),
    );
    d.wait_status("v1", "COMPLETED", LONG);
    let before = d.assert_running(&["app"]);

    // v2 cannot start: its command does not exist in the image.
    d.send(
        "v2",
        json!([component(
            "app",
            &image,
            &[("env", "VERSION=2"), ("cmd", "/no/such/binary")]
        )]),
    );
    let end = d.wait_status("v2", "INCOMPLETE", LONG);
    let s = d.statuses("v2");
    assert_eq!(
        s[s.len() - 6..],
        [
            "ACTIVATING",
            "ACTIVATION_FAILURE",
            "ROLLBACK",
            "ROLLBACK_SUCCESS",
            "CLEANUP_SUCCESS",
            "INCOMPLETE"
        ],
        "{s:?}"
    );
    let failure = d
        .feedback("v2")
        .into_iter()
        .find(|f| f["status"] == "ACTIVATION_FAILURE")
        .unwrap();
    assert!(
        failure["actions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/binary"),
        "{failure}"
    );
    assert!(
        end["actions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("old container instance restored"),
        "{end}"
    );

    let after = d.assert_running(&["app"]);
    assert_eq!(
        after["app"].0, before["app"].0,
        "the old container runs again"
    );
    assert_eq!(env_of(&after["app"].2), ["VERSION=1"]);
}

/// `app` at VERSION=1 running (returned as `assert_running` says), then a v2 whose command
/// exits with 3 after `exit_after` and whose health gate asks for `uptime`.
fn v1_then_a_v2_that_exits(
    d: &Device,
    image: &str,
    exit_after: &str,
    uptime: &str,
) -> std::collections::BTreeMap<String, (String, String, Value)> {
    d.send(
        "v1",
        json!([component("app", image, &[("env", "VERSION=1")])]),
    );
    d.wait_status("v1", "COMPLETED", LONG);
    let before = d.assert_running(&["app"]);
    let script = format!("sleep {exit_after}; exit 3");
    d.send(
        "v2",
        json!([component(
            "app",
            image,
            &[
                ("env", "VERSION=2"),
                ("cmd", "sh"),
                ("cmd", "-c"),
                ("cmd", &script),
                ("healthUptime", uptime),
            ]
        )]),
    );
    before
}

#[test]
fn an_update_whose_container_exits_within_its_health_gate_rolls_back_to_the_running_old_one() {
    let d = agent_device("agent_healthgate", json!({}));
    let image = service_image(&d.h);
    // v2 starts, then exits after 2 s: within its 6 s gate.
    let before = v1_then_a_v2_that_exits(&d, &image, "2", "6s");
    let end = d.wait_status("v2", "INCOMPLETE", LONG);
    let s = d.statuses("v2");
    assert_eq!(
        s[s.len() - 6..],
        [
            "ACTIVATING",
            "ACTIVATION_FAILURE",
            "ROLLBACK",
            "ROLLBACK_SUCCESS",
            "CLEANUP_SUCCESS",
            "INCOMPLETE"
        ],
        "{s:?}"
    );
    let feedback = d.feedback("v2");
    assert!(
        feedback.iter().any(|f| f["status"] == "ACTIVATING"
            && f["actions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("waiting for the health gate: running for 6.0 s"))),
        "{feedback:?}"
    );
    let failure = feedback
        .iter()
        .find(|f| f["status"] == "ACTIVATION_FAILURE")
        .unwrap();
    let message = failure["actions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("health gate failed: the container exited with code 3"),
        "{failure}"
    );
    assert!(
        end["actions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("old container instance restored"),
        "{end}"
    );
    let after = d.assert_running(&["app"]);
    assert_eq!(
        after["app"].0, before["app"].0,
        "the old container runs again"
    );
    assert_eq!(env_of(&after["app"].2), ["VERSION=1"]);

    // A v3 that holds up through its gate is activated.
    d.send(
        "v3",
        json!([component(
            "app",
            &image,
            &[("env", "VERSION=3"), ("healthUptime", "1s")]
        )]),
    );
    d.wait_status("v3", "COMPLETED", LONG);
    let v3 = d.assert_running(&["app"]);
    assert_eq!(env_of(&v3["app"].2), ["VERSION=3"]);

    // A health command run in the container (containerd's exec): v4's never exits 0, so
    // after two runs v4 rolls back to v3; v5's does, so v5 is activated.
    let health = |cmd: &'static str| {
        [
            ("healthCmd", "sh"),
            ("healthCmd", "-c"),
            ("healthCmd", cmd),
            ("healthInterval", "300ms"),
            ("healthRetries", "2"),
        ]
    };
    let mut v4 = vec![("env", "VERSION=4")];
    v4.extend(health("test -e /var/www/missing"));
    d.send("v4", json!([component("app", &image, &v4)]));
    d.wait_status("v4", "INCOMPLETE", LONG);
    let failure = d
        .feedback("v4")
        .into_iter()
        .find(|f| f["status"] == "ACTIVATION_FAILURE")
        .unwrap();
    assert!(
        failure["actions"][0]["message"].as_str().unwrap().contains(
            "health gate failed: the health command \"sh -c test -e /var/www/missing\" failed 2 times in a row (last: exited with code 1)"
        ),
        "{failure}"
    );
    let back = d.assert_running(&["app"]);
    assert_eq!(back["app"].0, v3["app"].0, "v3 runs again");
    let mut v5 = vec![("env", "VERSION=5")];
    v5.extend(health("test -e /var/www/index.html"));
    d.send("v5", json!([component("app", &image, &v5)]));
    d.wait_status("v5", "COMPLETED", LONG);
    assert_eq!(env_of(&d.assert_running(&["app"])["app"].2), ["VERSION=5"]);
    // A command that hangs is killed at its timeout, which fails the gate.
    d.send(
        "v6",
        json!([component(
            "app",
            &image,
            &[
                ("env", "VERSION=6"),
                ("healthCmd", "sleep"),
                ("healthCmd", "30"),
                ("healthTimeout", "300ms"),
                ("healthRetries", "1"),
            ]
        )]),
    );
    d.wait_status("v6", "INCOMPLETE", LONG);
    let failure = d
        .feedback("v6")
        .into_iter()
        .find(|f| f["status"] == "ACTIVATION_FAILURE")
        .unwrap();
    assert!(
        failure["actions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("did not exit within 300ms"),
        "{failure}"
    );
    assert_eq!(env_of(&d.assert_running(&["app"])["app"].2), ["VERSION=5"]);
    // No health process is left in the container's task (its exec was deleted).
    let id = d.assert_running(&["app"])["app"].0.clone();
    let ps = common::ctr(
        &d.setup.containerd_sock,
        &d.setup.namespace,
        &["tasks", "ps", &id],
    );
    for pid in ps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
    {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains("test")
                && !String::from_utf8_lossy(&cmdline).starts_with("sleep\u{0}30"),
            "a health command is left: {pid} {:?}",
            String::from_utf8_lossy(&cmdline)
        );
    }
}

#[test]
fn a_daemon_killed_during_a_health_gate_rolls_the_update_back_after_its_restart() {
    let mut d = agent_device("agent_gate_kill", json!({}));
    let image = service_image(&d.h);
    // v2 exits after 4 s; its gate asks for 30 s. The daemon is killed while it waits.
    let before = v1_then_a_v2_that_exits(&d, &image, "4", "30s");
    let waiting = d.peer.wait(FEEDBACK, LONG, |j| {
        j["activityId"] == "v2"
            && j["payload"]["status"] == "ACTIVATING"
            && j["payload"]["actions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("waiting for the health gate"))
    });
    assert!(waiting.is_some(), "{:?}", d.statuses("v2"));
    let mid = d.containers();
    assert_eq!(mid["app.prev"].0, before["app"].0, "{mid:#?}");
    let unproven = mid["app"].0.clone();
    let killed = d.daemon.take().unwrap();
    killed.signal(libc::SIGKILL);
    drop(killed);

    // The restart rolls the unproven update back before anything else (the old one runs
    // again under its name); the resumed desired state tries v2 again, whose gate fails
    // again: the old one is what runs in the end.
    d.spawn();
    d.wait_status("v2", "INCOMPLETE", LONG);
    let log = d.stderr();
    assert!(
        log.contains("rolling back the update of app that a restart interrupted before its health gate passed"),
        "{log}"
    );
    let after = d.assert_running(&["app"]);
    assert_eq!(
        after["app"].0, before["app"].0,
        "the old container runs again"
    );
    assert_eq!(env_of(&after["app"].2), ["VERSION=1"]);
    assert!(!d.ctr_ids().contains(&unproven), "the unproven v2 is gone");
}

#[test]
fn the_current_state_on_connect_on_request_and_retained() {
    let d = agent_device("agent_current", json!({}));
    let initial = d
        .peer
        .wait(CURRENT, Duration::from_secs(10), |j| {
            j["activityId"]
                .as_str()
                .is_some_and(|a| a.starts_with("initial-current-state-"))
        })
        .expect("an initial current state");
    let nodes = &initial.json.unwrap()["payload"]["softwareNodes"];
    assert_eq!(nodes[0]["id"], "containers-update-agent");
    assert_eq!(nodes[0]["type"], "APPLICATION");

    d.peer
        .publish(GET, &json!({"activityId": "req-42", "timestamp": 5}));
    let answer = d
        .peer
        .wait(CURRENT, Duration::from_secs(10), |j| {
            j["activityId"] == "req-42"
        })
        .expect("an answer to currentstate/get");
    assert!(answer.json.unwrap()["timestamp"].as_i64().unwrap() > 1_600_000_000_000);

    // A change republishes it (debounced), and a late subscriber gets the retained copy.
    let image = service_image(&d.h);
    d.kcm_ok(&["create", "--name", "late", &image]);
    d.peer
        .wait(CURRENT, Duration::from_secs(5), |j| {
            j["payload"]["softwareNodes"]
                .as_array()
                .is_some_and(|n| n.iter().any(|n| n["id"] == "containers:late"))
        })
        .expect("a current state after the change");
    let late = Peer::connect(d.broker.port, &[CURRENT]);
    let retained = late
        .wait(CURRENT, Duration::from_secs(5), |_| true)
        .expect("the retained current state");
    assert!(retained.retained);
    assert!(retained.json.unwrap()["payload"]["softwareNodes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n["id"] == "containers:late"));
}

#[test]
fn a_daemon_killed_mid_apply_resumes_and_converges() {
    let mut d = agent_device("agent_kill", json!({}));
    let image = service_image(&d.h);
    d.send(
        "v1",
        json!([
            component("a", &image, &[("env", "A=1")]),
            component("b", &image, &[])
        ]),
    );
    d.wait_status("v1", "COMPLETED", LONG);
    let before = d.assert_running(&["a", "b"]);

    // The next apply stalls after UPDATE (old a stopped, its successor created): kill -9 there.
    d.daemon.take();
    d.setup.env = vec![(
        "LEDA_CM_FAULT_AGENT_STALL_AFTER".into(),
        "UPDATE_SUCCESS".into(),
    )];
    d.spawn();
    let v2 = json!([
        component("a", &image, &[("env", "A=2")]),
        component("b", &image, &[]),
        component("c", &image, &[]),
        component("d", &image, &[]),
    ]);
    d.send("v2", v2.clone());
    d.wait_status("v2", "UPDATE_SUCCESS", LONG);
    assert!(d
        .daemon
        .as_ref()
        .unwrap()
        .wait_log("stalls after UPDATE_SUCCESS", Duration::from_secs(5)));
    let killed = d.daemon.take().unwrap();
    killed.signal(libc::SIGKILL);
    drop(killed);
    let mid = d.ctr_ids().len();
    assert!(mid > 2, "the apply was under way: {mid} containers");

    d.setup.env.clear();
    d.spawn();
    let resumed = d.wait_status("v2", "COMPLETED", LONG);
    let identifying: Vec<Value> = d
        .feedback("v2")
        .into_iter()
        .filter(|f| f["status"] == "IDENTIFYING")
        .collect();
    assert_eq!(identifying.len(), 2, "{identifying:?}");
    assert_eq!(
        identifying[1]["message"],
        "resumed after a restart of leda-cm"
    );
    assert_eq!(resumed["message"], "resumed after a restart of leda-cm");

    let after = d.assert_running(&["a", "b", "c", "d"]);
    assert_eq!(after["b"].0, before["b"].0);
    assert_ne!(after["a"].0, before["a"].0);
    assert_eq!(env_of(&after["a"].2), ["A=2"]);
    // Done: nothing is resumed again on the next start. A desired state left persisted
    // would be queued for the runner before any message is read; a later desired state is
    // run after it, and its feedback follows whatever the resumed one sent (IDENTIFYING, or
    // SUPERSEDED if the newer one overtook it), so once it completes, v2 had its chance.
    let v2_feedback = d.feedback("v2").len();
    d.daemon.take().unwrap().stop();
    d.spawn();
    d.send("after", v2);
    let after_done = d.wait_status("after", "COMPLETED", LONG);
    assert!(
        after_done["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["message"] == "Existing container instance is running."),
        "{after_done}"
    );
    assert_eq!(
        d.feedback("v2").len(),
        v2_feedback,
        "v2 again after a restart: {:?}",
        d.statuses("v2")
    );
    assert!(
        !d.stderr().contains("resuming desired state"),
        "{}",
        d.stderr()
    );
}

#[test]
fn a_desired_state_sent_while_the_daemon_is_down_is_delivered_when_it_returns() {
    let mut d = agent_device("agent_offline", json!({}));
    // The daemon subscribed once (persistent session), then stops.
    d.peer
        .wait(CURRENT, Duration::from_secs(10), |_| true)
        .expect("connected");
    d.daemon.take().unwrap().stop();
    let image = service_image(&d.h);
    // Acknowledged by the broker: queued in the daemon's session before the daemon returns.
    d.peer.publish_confirmed(
        DESIRED,
        &json!({"activityId": "offline", "timestamp": 1, "payload": {"domains": [
            {"id": "containers", "config": [], "components": [component("app", &image, &[])]}
        ]}}),
    );
    d.spawn();
    d.wait_status("offline", "COMPLETED", LONG);
    d.assert_running(&["app"]);
}

#[test]
fn a_newer_desired_state_supersedes_the_one_being_applied() {
    let d = agent_device("agent_supersede", json!({}));
    let image = service_image(&d.h);
    d.send(
        "first",
        json!([
            component("a", &image, &[]),
            component("b", &image, &[]),
            component("c", &image, &[])
        ]),
    );
    d.send("newer", json!([component("z", &image, &[])]));
    d.wait_status("newer", "COMPLETED", LONG);
    let first = d.statuses("first");
    assert_eq!(
        first.last().map(String::as_str),
        Some("SUPERSEDED"),
        "{first:?}"
    );
    assert!(!first.contains(&"COMPLETED".to_string()), "{first:?}");
    d.assert_running(&["z"]);
}

#[test]
fn bad_desired_states_are_reported_and_change_nothing() {
    let d = agent_device("agent_bad", json!({}));
    let image = service_image(&d.h);
    let failures = |d: &Device| -> Vec<(String, String)> {
        d.peer
            .heard()
            .into_iter()
            .filter(|h| h.topic == FEEDBACK)
            .filter_map(|h| h.json)
            .filter(|j| j["payload"]["status"] == "IDENTIFICATION_FAILED")
            .map(|j| {
                (
                    j["activityId"].as_str().unwrap_or_default().to_string(),
                    j["payload"]["message"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    let expect = |d: &Device, publish: &dyn Fn(), activity: &str, needle: &str| {
        let n = failures(d).len();
        publish();
        let deadline = Instant::now() + Duration::from_secs(10);
        while failures(d).len() == n {
            assert!(
                Instant::now() < deadline,
                "no IDENTIFICATION_FAILED for {activity:?}; {}",
                d.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let (got_activity, message) = failures(d)[n].clone();
        assert_eq!(got_activity, activity);
        assert!(
            message.contains(needle),
            "{activity}: {message:?} lacks {needle:?}"
        );
    };
    let kv = |k: &str, v: &str| component("app", &image, &[(k, v)]);
    let domain = |id: &str| json!({"id": id, "components": [component("app", &image, &[])]});

    expect(
        &d,
        &|| d.peer.publish_raw(DESIRED, b"this is not json"),
        "",
        "the desired state is not valid",
    );
    expect(
        &d,
        &|| d.peer.publish_raw(DESIRED, b"[1,2,3]"),
        "",
        "the desired state is not valid",
    );
    expect(
        &d,
        &|| d.send_payload("shape", json!({"domains": {"id": "containers"}})),
        "shape",
        "the desired state is not valid",
    );
    expect(
        &d,
        &|| d.send_payload("none", json!({"domains": []})),
        "none",
        "one domain expected in desired state specification, but got 0",
    );
    expect(
        &d,
        &|| {
            d.send_payload(
                "two",
                json!({"domains": [domain("containers"), domain("containers")]}),
            )
        },
        "two",
        "but got 2",
    );
    expect(
        &d,
        &|| d.send_payload("other", json!({"domains": [domain("self-update")]})),
        "other",
        "domain id mismatch - expecting containers, received self-update",
    );
    expect(
        &d,
        &|| {
            d.send(
                "noimage",
                json!([{"id": "app", "config": [{"key": "env", "value": "A=1"}]}]),
            )
        },
        "noimage",
        "component app: no image key and no version",
    );
    expect(
        &d,
        &|| d.send("port", json!([kv("port", "abc")])),
        "port",
        "component app: key port: invalid value \"abc\"",
    );
    expect(
        &d,
        &|| d.send("restart", json!([kv("restartPolicy", "sometimes")])),
        "restart",
        "component app: key restartPolicy: invalid value \"sometimes\"",
    );
    expect(
        &d,
        &|| d.send("memory", json!([kv("memory", "1k")])),
        "memory",
        "component app: host_config.resources.memory",
    );
    expect(
        &d,
        &|| d.send("privileged", json!([kv("privileged", "maybe")])),
        "privileged",
        "component app: key privileged: invalid value \"maybe\"",
    );
    // One bad component rejects the whole desired state: the good one is not applied either.
    expect(
        &d,
        &|| {
            d.send(
                "mixed",
                json!([
                    component("good", &image, &[]),
                    component("bad", &image, &[("memory", "lots")])
                ]),
            )
        },
        "mixed",
        "component bad: key memory: invalid value \"lots\"",
    );

    // Holes once open: a relative mount source (it resolved against the shim's bundle
    // directory), an empty component id.
    expect(
        &d,
        &|| d.send("relative", json!([kv("mount", "../../etc:/hostetc")])),
        "relative",
        "../../etc is not an absolute path",
    );
    expect(
        &d,
        &|| d.send("noid", json!([component("", &image, &[])])),
        "noid",
        "a component has an empty id",
    );
    // What the remote-request policy does not allow (defaults): nothing of it is applied.
    expect(
        &d,
        &|| d.send("asroot", json!([kv("privileged", "true")])),
        "asroot",
        "container app: a privileged container is not allowed for remote requests (remote_requests.privileged)",
    );
    expect(
        &d,
        &|| d.send("hostnet", json!([kv("network", "host")])),
        "hostnet",
        "the host network is not allowed for remote requests",
    );
    expect(
        &d,
        &|| d.send("hostetc", json!([kv("mount", "/etc:/hostetc")])),
        "hostetc",
        "a mount of /etc (allowed under: /data) is not allowed for remote requests (remote_requests.mount_sources)",
    );
    // 8 MiB, sent with mosquitto's own client: once it made the daemon's MQTT client drop
    // the connection unacknowledged and the broker deliver it again on every reconnect.
    let big = d.setup.dir.join("big-desired-state.json");
    let filler = "x".repeat(8 << 20);
    std::fs::write(
        &big,
        serde_json::to_vec(&json!({"activityId": "big", "timestamp": 1, "payload": {"domains": [
            {"id": "containers", "components": [component("app", &image, &[("env", &format!("A={filler}"))])]}
        ]}}))
        .unwrap(),
    )
    .unwrap();
    expect(
        &d,
        &|| {
            common::mqtt::mosquitto_pub(d.broker.port, DESIRED, &big);
        },
        "big",
        "more than the 1048576 this device accepts",
    );

    assert!(d.containers().is_empty(), "nothing applied");
    assert!(d.ctr_ids().is_empty());
    // Still alive and working, on the same connection: the big message was acknowledged
    // (a redelivery would have made the daemon reconnect).
    assert!(
        !d.stderr().contains("mqtt connection to"),
        "the mqtt connection dropped:\n{}",
        d.stderr()
    );
    d.send("good", json!([component("good", &image, &[])]));
    d.wait_status("good", "COMPLETED", LONG);
    d.assert_running(&["good"]);
}

#[test]
fn a_new_digest_behind_the_same_tag_recreates_the_container() {
    let d = agent_device("agent_digest", json!({}));
    let layout = PathBuf::from(std::env::var("LEDA_TEST_OCI_LAYOUT").unwrap());
    let reference = format!("{}/digest-{}/app:1.0", d.h.registry, d.h.run_id);
    d.h.lib(&format!(
        "harness_push '{}' service '{reference}'",
        layout.parent().unwrap().display()
    ));
    let desired = json!([component("app", &reference, &[])]);
    d.send("v1", desired.clone());
    d.wait_status("v1", "COMPLETED", LONG);
    let before = d.assert_running(&["app"]);

    // The same desired state again: nothing to do.
    d.send("same", desired.clone());
    let same = d.wait_status("same", "COMPLETED", LONG);
    assert_eq!(
        same["actions"][0]["message"],
        "Existing container instance is running."
    );
    assert_eq!(d.assert_running(&["app"])["app"].0, before["app"].0);

    // A new image pushed under the same tag (other content, so another digest).
    let images = d.setup.dir.join("images");
    d.h.lib(&format!(
        "harness_build_image '{0}' v2 amd64 /bin/sh -c 'trap \"exit 0\" TERM; while :; do sleep 1 & wait $!; done' && harness_push '{0}' v2 '{reference}'",
        images.display()
    ));
    d.send("moved", desired);
    d.wait_status("moved", "COMPLETED", LONG);
    let identified = d
        .feedback("moved")
        .into_iter()
        .find(|f| f["status"] == "IDENTIFIED")
        .unwrap();
    let message = identified["actions"][0]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("replaced by a new one") && message.contains("has a new digest"),
        "{message}"
    );
    let after = d.assert_running(&["app"]);
    assert_ne!(after["app"].0, before["app"].0);
    // What runs is the new image's file system.
    let page = common::ctr(
        &d.setup.containerd_sock,
        &d.setup.namespace,
        &[
            "tasks",
            "exec",
            "--exec-id",
            "check",
            &after["app"].0,
            "cat",
            "/var/www/index.html",
        ],
    );
    assert_eq!(page.trim(), "leda-cm test image v2");
}

#[test]
fn sigterm_mid_apply_stops_at_a_phase_boundary_and_the_apply_resumes() {
    let mut d = agent_device("agent_term", json!({}));
    d.daemon.take().unwrap().stop();
    // The download phase ends, then the apply stalls as a long step would.
    d.setup.env = vec![(
        "LEDA_CM_FAULT_AGENT_STALL_AFTER".into(),
        "DOWNLOAD_SUCCESS".into(),
    )];
    d.spawn();
    let image = service_image(&d.h);
    d.send(
        "v1",
        json!([component("a", &image, &[]), component("b", &image, &[])]),
    );
    d.wait_status("v1", "DOWNLOAD_SUCCESS", LONG);
    let daemon = d.daemon.take().unwrap();
    assert!(daemon.wait_log("stalls after DOWNLOAD_SUCCESS", Duration::from_secs(5)));
    let log = daemon.log.clone();
    let asked = Instant::now();
    assert!(daemon.stop().success());
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("stopping: desired state v1 is resumed at the next start"),
        "{text}"
    );

    d.setup.env.clear();
    d.spawn();
    let done = d.wait_status("v1", "COMPLETED", LONG);
    assert_eq!(done["message"], "resumed after a restart of leda-cm");
    // What the stopped daemon sent reached the broker before it disconnected, so the peer
    // heard it before anything of the next daemon: no UPDATING before the resumption.
    let feedback = d.feedback("v1");
    let resumed = feedback
        .iter()
        .position(|f| {
            f["status"] == "IDENTIFYING" && f["message"] == "resumed after a restart of leda-cm"
        })
        .unwrap_or_else(|| panic!("no resumption: {:?}", d.statuses("v1")));
    let first_run: Vec<&str> = feedback[..resumed]
        .iter()
        .map(|f| f["status"].as_str().unwrap_or_default())
        .collect();
    assert!(!first_run.contains(&"UPDATING"), "{first_run:?}");
    assert_eq!(first_run.last(), Some(&"DOWNLOAD_SUCCESS"), "{first_run:?}");
    d.assert_running(&["a", "b"]);
}

#[test]
fn the_broker_over_tls_with_a_client_certificate() {
    let h = Harness::get();
    let dir = h.test_dir("agent_tls");
    let (broker, tls_port, files) = Broker::start_tls(&h, &dir);
    let peer = Peer::connect(broker.port, &[CURRENT]);
    let mut setup = DaemonSetup::new(&h, "agent_tls");
    setup.extra_config = json!({
        "update_agent": {"enable": true},
        "connection": {
            "broker_url": format!("ssl://localhost:{tls_port}"),
            "transport": {"root_ca": files.ca, "client_cert": files.cert, "client_key": files.key},
        },
    });
    let notify = NotifyListener::new(&setup.dir);
    let daemon = setup.spawn(Some(&notify));
    assert!(
        notify.wait_ready(Duration::from_secs(20)),
        "{}",
        daemon.stderr()
    );
    // The initial current state crossed the TLS listener (the peer listens on the plain one).
    let heard = peer.wait(CURRENT, Duration::from_secs(10), |j| {
        j["activityId"]
            .as_str()
            .is_some_and(|a| a.starts_with("initial-current-state-"))
    });
    assert!(heard.is_some(), "{}", daemon.stderr());
    assert!(daemon.stderr().contains(&format!(
        "connected to mqtt broker ssl://localhost:{tls_port}"
    )));

    // Without the client certificate the broker refuses it; the daemon keeps trying, alive.
    let mut setup = DaemonSetup::new(&h, "agent_tls_nocert");
    setup.extra_config = json!({
        "update_agent": {"enable": true},
        "connection": {
            "broker_url": format!("ssl://localhost:{tls_port}"),
            "transport": {"root_ca": files.ca},
        },
        // The retries after the first failure are debug lines.
        "log": {"log_level": "debug"},
    });
    let notify = NotifyListener::new(&setup.dir);
    let mut refused = setup.spawn(Some(&notify));
    assert!(
        notify.wait_ready(Duration::from_secs(20)),
        "{}",
        refused.stderr()
    );
    // A retry after the first refusal: it had its chance to connect, twice, and lives on.
    assert!(
        refused.wait_log(
            &format!("mqtt broker ssl://localhost:{tls_port} not reachable"),
            Duration::from_secs(20)
        ),
        "no retry:\n{}",
        refused.stderr()
    );
    assert!(refused.try_status().is_none(), "{}", refused.stderr());
    let log = refused.stderr();
    assert!(!log.contains("connected to mqtt broker"), "{log}");
    assert!(
        log.contains(&format!(
            "cannot connect to mqtt broker ssl://localhost:{tls_port}"
        )),
        "{log}"
    );
}

/// A broker that takes nothing (stopped) while an apply runs: the outgoing queue fills (a
/// small one, fault injection), the feedback beyond it is held in order, and once the broker
/// takes messages again every feedback arrives, in order, ending with COMPLETED; the desired
/// state stays persisted until then.
#[test]
fn feedback_the_broker_cannot_take_is_held_and_delivered_in_order_when_it_can() {
    let mut d = agent_device("agent_held", json!({}));
    d.daemon.take().unwrap().stop();
    d.setup.env = vec![("LEDA_CM_FAULT_MQTT_QUEUE".into(), "2".into())];
    d.spawn();
    let image = service_image(&d.h);
    d.send(
        "held",
        json!([
            component("a", &image, &[]),
            component("b", &image, &[]),
            component("c", &image, &[])
        ]),
    );
    d.wait_status("held", "IDENTIFYING", LONG);
    d.broker.freeze(true);
    let daemon = d.daemon.as_ref().unwrap();
    assert!(
        daemon.wait_log("feedback is held until it does", LONG),
        "{}",
        daemon.stderr()
    );
    // The apply goes on without the broker.
    let deadline = Instant::now() + LONG;
    while d.ctr_ids().len() < 3
        || !common::ctr_tasks(&d.h.containerd_sock, &d.setup.namespace)
            .values()
            .all(|s| s == "RUNNING")
    {
        assert!(
            Instant::now() < deadline,
            "not applied: {}",
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pending = d.setup.state_dir.join("update-agent/desired-state.json");
    assert!(
        pending.is_file(),
        "un-persisted before its feedback was out"
    );
    d.broker.freeze(false);
    d.wait_status("held", "COMPLETED", LONG);
    assert_eq!(d.statuses("held"), FULL_FLOW, "{}", d.stderr());
    assert!(
        d.daemon.as_ref().unwrap().wait_log(
            "held feedback messages handed to the broker connection",
            LONG
        ),
        "{}",
        d.stderr()
    );
    let deadline = Instant::now() + LONG;
    while pending.exists() {
        assert!(Instant::now() < deadline, "still persisted after COMPLETED");
        std::thread::sleep(Duration::from_millis(20));
    }
}
