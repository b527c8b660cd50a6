//! The digital twin (Eclipse Ditto over the local broker), black box: the real daemon, a
//! mosquitto broker of the test's own, the harness's containerd and registry. A peer plays
//! the cloud connector: it answers the handshake with the seed's simulated message, sends
//! live messages and records the twin updates. What runs is checked with `ctr`.

mod common;

use std::time::{Duration, Instant};

use common::device::{service_image, Device};
use common::http::FileServer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const REQUEST: &str = "edge/thing/request";
const RESPONSE: &str = "edge/thing/response";
/// The seed's simulated connector message names this thing.
const THING: &str = "<namespace>:<gatewayId>:<deviceId>:edge:containers";
const DITTO: &str = "<namespace>/<gatewayId>:<deviceId>:edge:containers";
const EVENTS: &str = "e/<tenantId>/<namespace>:<gatewayId>:<deviceId>:edge:containers";
const WAIT: Duration = Duration::from_secs(20);

fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(format!(
        "{}/tests/fixtures/leda-docs/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// simulate-connectivity.json: the connector's answer.
fn connector_identity() -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/leda-docs/simulate-connectivity.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn twin_device(test: &str, extra: Value) -> Device {
    let mut config = json!({"things": {"enable": true}});
    common::merge(&mut config, extra);
    Device::start(test, config, &[REQUEST, "e/#", "command//+/res/#"])
}

impl Device {
    /// Answers the daemon's handshake as the cloud connector does.
    fn connect(&self) {
        let asked = self
            .peer
            .wait(REQUEST, WAIT, |_| true)
            .expect("a handshake request");
        assert_eq!(
            asked.json.unwrap(),
            json!({"topic": "", "headers": null, "path": ""})
        );
        self.peer
            .publish_raw(RESPONSE, connector_identity().as_bytes());
    }

    /// Twin commands and feature messages published so far, on `topic`.
    fn events_on(&self, topic: &str) -> Vec<Value> {
        self.peer
            .heard()
            .into_iter()
            .filter(|h| h.topic == topic)
            .filter_map(|h| h.json)
            .collect()
    }

    fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_event_on(EVENTS, what, pred)
    }

    /// Waits for an event, among those after the first `since` on EVENTS, that `pred` accepts.
    fn wait_event_since(&self, since: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(e) = self.events_on(EVENTS).into_iter().skip(since).find(&pred) {
                return e;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on {EVENTS}; heard since: {:#?}\n{}",
                self.events_on(EVENTS)
                    .iter()
                    .skip(since)
                    .map(|e| (e["path"].clone(), e["value"].clone()))
                    .collect::<Vec<_>>(),
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_event_on(&self, topic: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        match self.peer.wait(topic, WAIT, pred) {
            Some(h) => h.json.unwrap(),
            None => panic!(
                "no {what} on {topic}; heard {:#?}\n{}",
                self.events_on(topic)
                    .iter()
                    .map(|e| (e["path"].clone(), e["topic"].clone()))
                    .collect::<Vec<_>>(),
                self.stderr()
            ),
        }
    }

    /// Sends a live message to a feature and returns the answer (status, envelope).
    fn call(&self, feature: &str, op: &str, value: Value) -> (u16, Value) {
        self.call_on(THING, DITTO, feature, op, value)
    }

    fn call_on(
        &self,
        thing: &str,
        ditto: &str,
        feature: &str,
        op: &str,
        value: Value,
    ) -> (u16, Value) {
        let id = format!(
            "r-{}",
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let mut envelope = json!({
            "topic": format!("{ditto}/things/live/messages/{op}"),
            "headers": {"correlation-id": format!("corr-{id}"), "response-required": true, "content-type": "application/json"},
            "path": format!("/features/{feature}/inbox/messages/{op}"),
        });
        if !value.is_null() {
            envelope["value"] = value;
        }
        self.peer
            .publish(&format!("command//{thing}/req/{id}/{op}"), &envelope);
        self.answer(thing, &id)
    }

    fn answer(&self, thing: &str, id: &str) -> (u16, Value) {
        let prefix = format!("command//{thing}/res/{id}/");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(h) = self
                .peer
                .heard()
                .into_iter()
                .find(|h| h.topic.starts_with(&prefix))
            {
                let status: u16 = h.topic[prefix.len()..].parse().unwrap();
                return (status, h.json.unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "no answer to {id}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn container_feature(&self, id: &str) -> Value {
        let path = format!("/features/Container:{id}");
        self.wait_event(&path.clone(), |e| e["path"] == path)
    }
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn ok(answer: (u16, Value), want: u16) -> Value {
    assert_eq!(answer.0, want, "{:#}", answer.1);
    answer.1
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    k.sort();
    k
}

#[test]
fn the_simulated_connector_gets_software_updatable_and_one_container_feature_each() {
    let d = twin_device("twin_handshake", json!({}));
    let image = service_image(&d.h);
    d.kcm_ok(&["create", "--name", "running-one", &image]);
    d.kcm_ok(&["start", "-n", "running-one"]);
    d.kcm_ok(&["create", "--name", "created-one", &image]);
    let ids = d.containers();
    let (run_id, created_id) = (ids["running-one"].0.clone(), ids["created-one"].0.clone());
    d.connect();

    // SoftwareUpdatable, shaped as the seed's example.
    let su = d.wait_event("SoftwareUpdatable", |e| {
        e["path"] == "/features/SoftwareUpdatable"
    });
    let example = fixture("container-management-list.json");
    assert_eq!(su["topic"], format!("{DITTO}/things/twin/commands/modify"));
    // The seed's headers, and the correlation-id Ditto's envelope requires (Kanto sends none).
    let mut headers = example["headers"].clone();
    headers["correlation-id"] = su["headers"]["correlation-id"].clone();
    assert!(su["headers"]["correlation-id"].is_string(), "{su}");
    assert_eq!(su["headers"], headers);
    assert_eq!(su["value"]["definition"], example["value"]["definition"]);
    let status = &su["value"]["properties"]["status"];
    assert_eq!(status["softwareModuleType"], "oci:container");
    let deps = status["installedDependencies"].as_object().unwrap();
    let key = format!(
        "{}.{run_id}:1.0",
        image.rsplit_once(':').unwrap().0.replace('/', "%2F")
    );
    assert_eq!(
        deps[&key],
        json!({"group": image.rsplit_once(':').unwrap().0, "name": run_id, "version": "1.0"}),
        "{deps:#?}"
    );
    assert_eq!(deps.len(), 2);
    let example_dep = example["value"]["properties"]["status"]["installedDependencies"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(keys(&deps[&key]), keys(&example_dep));

    // ContainerFactory and Metrics definitions, and one Container feature per container.
    d.wait_event("ContainerFactory", |e| {
        e["path"] == "/features/ContainerFactory"
            && e["value"]["definition"][0]
                == "com.bosch.iot.suite.edge.containers:ContainerFactory:1.3.0"
    });
    d.wait_event("Metrics", |e| {
        e["path"] == "/features/Metrics"
            && e["value"]["definition"][0] == "com.bosch.iot.suite.edge.metric:Metrics:1.0.0"
    });
    let detail = fixture("container-management-detail.json");
    let running = d.container_feature(&run_id);
    assert_eq!(
        running["value"]["definition"],
        detail["value"]["definition"]
    );
    let s = &running["value"]["properties"]["status"];
    assert_eq!(keys(s), keys(&detail["value"]["properties"]["status"]));
    assert_eq!(s["name"], "running-one");
    assert_eq!(s["imageRef"], image);
    assert_eq!(s["state"]["status"], "RUNNING");
    assert!(s["state"]["pid"].as_i64().unwrap() > 0);
    assert_eq!(
        s["config"]["restartPolicy"],
        json!({"type": "UNLESS_STOPPED"})
    );
    assert_eq!(s["config"]["networkMode"], "BRIDGE");
    assert_eq!(
        s["config"]["log"],
        json!({"type": "JSON_FILE", "maxFiles": 2, "maxSize": "100M", "mode": "BLOCKING"})
    );
    for k in keys(&s["config"]) {
        assert!(
            detail["value"]["properties"]["status"]["config"]
                .get(&k)
                .is_some(),
            "config key {k} is not in the seed's example"
        );
    }
    let created = d.container_feature(&created_id);
    assert_eq!(
        created["value"]["properties"]["status"]["state"],
        json!({"status": "CREATED"})
    );

    // The identity is kept for the next start.
    let kept: Value =
        serde_json::from_slice(&std::fs::read(d.setup.state_dir.join("things/twin.json")).unwrap())
            .unwrap();
    assert_eq!(
        kept["identity"]["deviceId"],
        "<namespace>:<gatewayId>:<deviceId>"
    );
}

#[test]
fn every_operation_round_trip_with_its_response_and_the_twin_following() {
    let d = twin_device("twin_ops", json!({}));
    let image = service_image(&d.h);
    d.connect();
    d.wait_event("the twin", |e| e["path"] == "/features/ContainerFactory");
    let sock = &d.setup.containerd_sock;
    let ns = &d.setup.namespace;
    let task = |id: &str| {
        common::ctr_tasks(sock, ns)
            .get(id)
            .cloned()
            .unwrap_or_else(|| "absent".into())
    };

    // create (started) → 200 with the ID; the twin gets the feature.
    let answer = ok(
        d.call(
            "ContainerFactory",
            "create",
            json!({"imageRef": image, "start": true}),
        ),
        200,
    );
    assert_eq!(
        answer["path"],
        "/features/ContainerFactory/outbox/messages/create"
    );
    assert_eq!(
        answer["topic"],
        format!("{DITTO}/things/live/messages/create")
    );
    assert!(answer["headers"]["correlation-id"]
        .as_str()
        .unwrap()
        .starts_with("corr-"));
    let a = answer["value"].as_str().unwrap().to_string();
    assert_eq!(task(&a), "RUNNING");
    d.container_feature(&a);

    // createWithConfig (not started).
    let cfg = json!({"imageRef": image, "name": "configured", "start": false, "config": {
        "env": ["A=1"], "restartPolicy": {"type": "ON_FAILURE", "maxRetryCount": 2, "retryTimeout": 5}}});
    let b = ok(d.call("ContainerFactory", "createWithConfig", cfg), 200)["value"]
        .as_str()
        .unwrap()
        .to_string();
    let feature = d.container_feature(&b);
    let config = &feature["value"]["properties"]["status"]["config"];
    assert_eq!(config["env"], json!(["A=1"]));
    assert_eq!(
        config["restartPolicy"],
        json!({"type": "ON_FAILURE", "maxRetryCount": 2, "retryTimeout": 5}),
        "retryTimeout as Kanto (Go) writes it: 5, not 5.0"
    );
    assert_eq!(task(&b), "", "created, no task yet");

    let f = format!("Container:{b}");
    let state_path = format!("/features/{f}/properties/status/state");
    let state_is = |status: &'static str| {
        let p = state_path.clone();
        d.wait_event(status, move |e| {
            e["path"] == p && e["value"]["status"] == status
        })
    };
    let answer = ok(d.call(&f, "start", json!({})), 204);
    assert!(answer.get("value").is_none());
    assert_eq!(
        answer["path"],
        format!("/features/{f}/outbox/messages/start")
    );
    state_is("RUNNING");
    assert_eq!(task(&b), "RUNNING");
    ok(d.call(&f, "pause", Value::Null), 204);
    state_is("PAUSED");
    assert_eq!(task(&b), "PAUSED");
    ok(d.call(&f, "resume", Value::Null), 204);
    assert_eq!(task(&b), "RUNNING");
    ok(d.call(&f, "stop", Value::Null), 204);
    state_is("STOPPED");
    assert_ne!(task(&b), "RUNNING");
    ok(d.call(&f, "start", Value::Null), 204);
    ok(
        d.call(
            &f,
            "stopWithOptions",
            json!({"timeout": 1, "signal": "SIGKILL"}),
        ),
        204,
    );
    assert_ne!(task(&b), "RUNNING");

    // rename and update send only what changed.
    let before = d.events_on(EVENTS).len();
    ok(d.call(&f, "rename", json!("renamed")), 204);
    let name_path = format!("/features/{f}/properties/status/name");
    let renamed = d.wait_event("the new name", |e| e["path"] == name_path);
    assert_eq!(renamed["value"], "renamed");
    ok(
        d.call(
            &f,
            "update",
            json!({"restartPolicy": {"type": "ALWAYS"}, "resources": {"memory": "200M"}}),
        ),
        204,
    );
    let config_path = format!("/features/{f}/properties/status/config");
    let updated = d.wait_event("the new config", |e| e["path"] == config_path);
    assert_eq!(updated["value"]["restartPolicy"]["type"], "ALWAYS");
    assert_eq!(updated["value"]["resources"]["memory"], "200M");
    let since: Vec<String> = d.events_on(EVENTS)[before..]
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !since.contains(&format!("/features/{f}")),
        "the whole feature was sent again: {since:?}"
    );

    // Without response-required nothing answers, but it is done.
    let quiet = json!({"topic": format!("{DITTO}/things/live/messages/start"),
        "headers": {"correlation-id": "quiet", "response-required": false}, "path": format!("/features/{f}/inbox/messages/start")});
    let before = d.events_on(EVENTS).len();
    d.peer
        .publish(&format!("command//{THING}/req/quiet-1/start"), &quiet);
    // RUNNING again after it (the earlier starts sent RUNNING too).
    d.wait_event_since(before, "RUNNING after the quiet start", |e| {
        e["path"] == state_path && e["value"]["status"] == "RUNNING"
    });
    assert_eq!(task(&b), "RUNNING");

    // remove: the final state, then the feature deleted; gone from containerd.
    ok(d.call(&f, "remove", json!(true)), 204);
    // An answer to the quiet start would have gone out as its start returned; the remove's
    // answer comes after a whole removal begun once that start was done (RUNNING above).
    assert!(
        !d.peer
            .heard()
            .iter()
            .any(|h| h.topic.contains("/res/quiet-1/")),
        "an answer without response-required"
    );
    let feature_path = format!("/features/{f}");
    let deleted = d.wait_event("the deletion", |e| {
        e["path"] == feature_path && e["topic"] == format!("{DITTO}/things/twin/commands/delete")
    });
    assert!(deleted.get("value").is_none());
    assert_eq!(task(&b), "absent");
    assert!(!d.ctr_ids().contains(&b));
    ok(
        d.call(&format!("Container:{a}"), "remove", json!(true)),
        204,
    );
    assert!(d.ctr_ids().is_empty());
}

#[test]
fn bad_requests_get_their_errors_and_change_nothing() {
    let mut d = twin_device("twin_bad", json!({}));
    let image = service_image(&d.h);
    d.connect();
    d.wait_event("the twin", |e| e["path"] == "/features/ContainerFactory");
    let error = |answer: (u16, Value), status: u16, code: &str, needle: &str| {
        assert_eq!(answer.0, status, "{:#}", answer.1);
        let v = &answer.1["value"];
        assert_eq!(v["error"], code, "{v}");
        assert_eq!(v["status"], status);
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
    };

    d.peer.publish_raw(
        &format!("command//{THING}/req/raw-1/create"),
        b"this is not json",
    );
    let answer = d.answer(THING, "raw-1");
    // An envelope that cannot be read is answered as Kanto does: the thing's errors topic,
    // path `/` (a Ditto error response; the request ID as its correlation-id).
    assert_eq!(answer.1["topic"], format!("{DITTO}/things/twin/errors"));
    assert_eq!(answer.1["path"], "/");
    assert_eq!(answer.1["headers"]["correlation-id"], "raw-1");
    error(answer, 400, "messages:parameter.invalid", "not valid JSON");
    d.peer.publish(&format!("command//{THING}/req/raw-2/create"), &json!({"topic": format!("{DITTO}/things/live/messages/create"), "headers": {"correlation-id": "c-raw-2"}, "path": "/features/ContainerFactory"}));
    error(
        d.answer(THING, "raw-2"),
        400,
        "messages:parameter.invalid",
        "is not /features/<feature>/inbox/messages/<operation>",
    );
    error(
        d.call("Nope", "create", json!({})),
        404,
        "messages:subject.notfound",
        "feature Nope not found",
    );
    error(
        d.call("ContainerFactory", "explode", json!({})),
        404,
        "messages:subject.notfound",
        "unsupported operation explode",
    );
    error(
        d.call("Container:no-such-id", "start", Value::Null),
        404,
        "messages:subject.notfound",
        "no-such-id",
    );
    error(
        d.call("ContainerFactory", "create", json!({"start": true})),
        400,
        "messages:parameter.invalid",
        "imageRef must be set",
    );
    error(
        d.call(
            "ContainerFactory",
            "create",
            json!({"imageRef": image, "colour": "red"}),
        ),
        400,
        "messages:parameter.invalid",
        "unknown field `colour`",
    );
    error(
        d.call(
            "ContainerFactory",
            "createWithConfig",
            json!({"imageRef": image, "config": {"restartPolicy": {"type": "SOMETIMES"}}}),
        ),
        400,
        "messages:parameter.invalid",
        "restartPolicy.type: invalid value \"SOMETIMES\"",
    );
    error(
        d.call(
            "ContainerFactory",
            "createWithConfig",
            json!({"imageRef": image, "config": {"resources": {"memory": "1k"}}}),
        ),
        400,
        "messages:parameter.invalid",
        "memory",
    );
    // The remote-request policy (defaults): no host network, no mount of /etc.
    error(
        d.call(
            "ContainerFactory",
            "createWithConfig",
            json!({"imageRef": image, "config": {"networkMode": "HOST"}}),
        ),
        403,
        "messages:subject.forbidden",
        "the host network is not allowed for remote requests (remote_requests.host_network)",
    );
    error(
        d.call(
            "ContainerFactory",
            "createWithConfig",
            json!({"imageRef": image, "config": {"mountPoints": [{"source": "/etc", "destination": "/hostetc"}]}}),
        ),
        403,
        "messages:subject.forbidden",
        "a mount of /etc (allowed under: /data)",
    );
    error(
        d.call("Metrics", "request", json!({"frequency": "often"})),
        400,
        "messages:parameter.invalid",
        "frequency",
    );
    error(
        d.call(
            "SoftwareUpdatable",
            "install",
            json!({"correlationId": "x", "softwareModules": []}),
        ),
        400,
        "messages:parameter.invalid",
        "no SoftwareModules",
    );
    assert!(d.containers().is_empty(), "nothing was created");

    // A container to fail operations on.
    let id = ok(
        d.call("ContainerFactory", "create", json!({"imageRef": image})),
        200,
    )["value"]
        .as_str()
        .unwrap()
        .to_string();
    let f = format!("Container:{id}");
    // As Kanto: a command without a correlation-id is refused, not executed; its answer
    // carries the request ID as correlation-id.
    d.peer.publish(
        &format!("command//{THING}/req/no-corr/start"),
        &json!({"topic": format!("{DITTO}/things/live/messages/start"),
            "headers": {"response-required": true}, "path": format!("/features/{f}/inbox/messages/start")}),
    );
    let answer = d.answer(THING, "no-corr");
    assert_eq!(answer.1["headers"]["correlation-id"], "no-corr");
    assert_eq!(
        answer.1["path"],
        format!("/features/{f}/inbox/messages/start")
    );
    error(
        answer,
        400,
        "messages:parameter.invalid",
        "no correlation-id",
    );
    assert_eq!(
        common::ctr_tasks(&d.setup.containerd_sock, &d.setup.namespace)
            .get(&id)
            .map(String::as_str),
        Some(""),
        "the refused start ran (or the container went)"
    );
    error(
        d.call(&f, "rename", json!({"to": "x"})),
        400,
        "messages:parameter.invalid",
        "rename: invalid type",
    );
    error(
        d.call(&f, "stopWithOptions", json!({"signal": "SIGNOPE"})),
        400,
        "messages:parameter.invalid",
        "unknown signal",
    );
    error(
        d.call(&f, "pause", Value::Null),
        500,
        "messages:execution.failed",
        "",
    );
    error(
        d.call(&f, "dance", Value::Null),
        404,
        "messages:subject.notfound",
        "unsupported operation dance",
    );
    ok(d.call(&f, "remove", json!(true)), 204);

    // Extreme values: a Metrics period of 1e19 s once overflowed the timer and aborted the
    // daemon (the answer came first, so the next call is what shows it survived).
    error(
        d.call("Metrics", "request", json!({"frequency": 1e19})),
        400,
        "messages:parameter.invalid",
        "more than the longest period",
    );
    error(
        d.call("Metrics", "request", json!({"frequency": "2562047h"})),
        400,
        "messages:parameter.invalid",
        "more than the longest period",
    );
    // A command over the size limit (sent by mosquitto's own client: 2 MiB) is answered
    // 413 where it asked to be answered, and the connection stays.
    let big = d.setup.dir.join("big-command.json");
    std::fs::write(
        &big,
        serde_json::to_vec(&json!({
            "topic": format!("{DITTO}/things/live/messages/create"),
            "headers": {"correlation-id": "corr-big", "response-required": true},
            "path": "/features/ContainerFactory/inbox/messages/create",
            "value": {"imageRef": "x".repeat(2 << 20)}
        }))
        .unwrap(),
    )
    .unwrap();
    common::mqtt::mosquitto_pub(
        d.broker.port,
        &format!("command//{THING}/req/big-1/create"),
        &big,
    );
    let answer = d.answer(THING, "big-1");
    assert_eq!(
        answer.1["headers"]["correlation-id"], "corr-big",
        "{:#}",
        answer.1
    );
    error(
        answer,
        413,
        "messages:payload.toolarge",
        "more than the 1048576",
    );

    // A create whose start fails leaves nothing behind.
    let broken = json!({"imageRef": image, "name": "broken", "start": true, "config": {"cmd": ["/no/such/binary"]}});
    error(
        d.call("ContainerFactory", "createWithConfig", broken),
        500,
        "messages:execution.failed",
        "could not start, and was removed",
    );
    assert!(d.containers().is_empty(), "{:?}", d.containers());
    assert!(d.ctr_ids().is_empty());
    assert!(
        d.daemon.as_mut().unwrap().try_status().is_none(),
        "the daemon is alive"
    );
    assert!(
        d.stderr().contains("digital twin request"),
        "errors are logged"
    );
    assert!(
        !d.stderr().contains("mqtt connection to"),
        "the mqtt connection dropped:\n{}",
        d.stderr()
    );
    assert!(d.peer.assert_ditto_valid() > 20);
}

#[test]
fn software_updatable_install_from_a_local_http_server_and_remove() {
    let d = twin_device("twin_su", json!({}));
    let image = service_image(&d.h);
    d.connect();
    d.wait_event("the twin", |e| e["path"] == "/features/SoftwareUpdatable");
    let server = FileServer::start();
    let artifact = serde_json::to_vec(&json!({
        "container_id": format!("sw-{}", d.h.run_id), "container_name": "sw-app", "image": {"name": image},
        "config": {"env": ["FROM=hawkbit"]}
    }))
    .unwrap();
    let url = server.put("/artifacts/app.json", &artifact);
    let sha256 = Sha256::digest(&artifact)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    let install = |correlation: &str, url: &str, sha: &str| {
        json!({"correlationId": correlation, "weight": 0, "forced": true, "softwareModules": [{
            "softwareModule": {"name": "sw-app", "version": "1.0"},
            "artifacts": [{"filename": "app.json", "size": artifact.len(),
                "download": {"HTTP": {"url": url}}, "checksums": {"SHA256": sha}}]}]})
    };
    let last = "/features/SoftwareUpdatable/properties/status/lastOperation";
    let failed = "/features/SoftwareUpdatable/properties/status/lastFailedOperation";
    let statuses = |d: &Device, correlation: &str| -> Vec<String> {
        d.events_on(EVENTS)
            .iter()
            .filter(|e| e["path"] == last && e["value"]["correlationId"] == correlation)
            .map(|e| e["value"]["status"].as_str().unwrap().to_string())
            .collect()
    };

    // A wrong checksum: rejected, nothing created.
    ok(
        d.call(
            "SoftwareUpdatable",
            "install",
            install("hb-bad", &url, &"0".repeat(64)),
        ),
        204,
    );
    let rejected = d.wait_event("FINISHED_REJECTED", |e| {
        e["path"] == failed && e["value"]["correlationId"] == "hb-bad"
    });
    assert_eq!(rejected["value"]["status"], "FINISHED_REJECTED");
    assert!(
        rejected["value"]["message"]
            .as_str()
            .unwrap()
            .contains("sha256 checksum does not match"),
        "{rejected}"
    );
    assert_eq!(
        rejected["value"]["softwareModule"],
        json!({"name": "sw-app", "version": "1.0"})
    );
    d.wait_event("the last operation", |e| {
        e["path"] == last && e["value"]["status"] == "FINISHED_REJECTED"
    });
    assert_eq!(
        statuses(&d, "hb-bad"),
        ["STARTED", "DOWNLOADING", "FINISHED_REJECTED"]
    );
    assert!(d.containers().is_empty());

    // A missing artifact: an error.
    let missing = format!("http://127.0.0.1:{}/artifacts/none.json", server.port);
    ok(
        d.call(
            "SoftwareUpdatable",
            "install",
            install("hb-404", &missing, &sha256),
        ),
        204,
    );
    let e = d.wait_event("FINISHED_ERROR", |e| {
        e["path"] == failed && e["value"]["correlationId"] == "hb-404"
    });
    assert!(
        e["value"]["message"].as_str().unwrap().contains("404"),
        "{e}"
    );

    // The real thing.
    ok(
        d.call(
            "SoftwareUpdatable",
            "install",
            install("hb-1", &url, &sha256),
        ),
        204,
    );
    d.wait_event("FINISHED_SUCCESS", |e| {
        e["path"] == last
            && e["value"]["correlationId"] == "hb-1"
            && e["value"]["status"] == "FINISHED_SUCCESS"
    });
    assert_eq!(
        statuses(&d, "hb-1"),
        [
            "STARTED",
            "DOWNLOADING",
            "DOWNLOADED",
            "INSTALLING",
            "INSTALLED",
            "FINISHED_SUCCESS"
        ]
    );
    let running = d.assert_running(&["sw-app"]);
    let id = running["sw-app"].0.clone();
    assert_eq!(id, format!("sw-{}", d.h.run_id));
    assert!(server.requests.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    let deps_path = "/features/SoftwareUpdatable/properties/status/installedDependencies";
    d.wait_event("the installed dependency", |e| {
        e["path"] == deps_path
            && e["value"]
                .as_object()
                .is_some_and(|m| m.values().any(|v| v["name"] == id))
    });

    ok(d.call("SoftwareUpdatable", "remove", json!({"correlationId": "hb-2", "software": [{"group": "x", "name": id, "version": "1.0"}]})), 204);
    d.wait_event("FINISHED_SUCCESS", |e| {
        e["path"] == last
            && e["value"]["correlationId"] == "hb-2"
            && e["value"]["status"] == "FINISHED_SUCCESS"
    });
    assert_eq!(
        statuses(&d, "hb-2"),
        ["REMOVING", "REMOVED", "FINISHED_SUCCESS"]
    );
    assert!(d.containers().is_empty());
    // The last dependency gone: the property is deleted (never a null value).
    d.wait_event("no dependencies", |e| {
        e["path"] == deps_path && e["topic"] == format!("{DITTO}/things/twin/commands/delete")
    });
    assert!(
        d.events_on(EVENTS)
            .iter()
            .all(|e| e.get("value").map_or(true, |v| !v.is_null())),
        "a null value was sent"
    );
    assert!(d.peer.assert_ditto_valid() > 20);
}

#[test]
fn metrics_at_one_second_with_a_filter_then_stopped() {
    let d = twin_device("twin_metrics", json!({}));
    let image = service_image(&d.h);
    for name in ["m-a", "m-b"] {
        d.kcm_ok(&["create", "--name", name, &image]);
        d.kcm_ok(&["start", "-n", name]);
    }
    let a = d.containers()["m-a"].0.clone();
    d.connect();
    d.wait_event("the twin", |e| e["path"] == "/features/Metrics");
    let originator = format!("Container:{a}");
    let request = json!({"frequency": "1s", "filter": [{"id": ["cpu.*", "memory.used"], "originator": originator}]});
    ok(d.call("Metrics", "request", request), 204);
    let data_path = "/features/Metrics/outbox/messages/data";
    let reports = || -> Vec<Value> {
        d.events_on(EVENTS)
            .into_iter()
            .filter(|e| e["path"] == data_path)
            .collect()
    };
    let deadline = Instant::now() + WAIT;
    while reports().len() < 2 {
        assert!(Instant::now() < deadline, "{}", d.stderr());
        std::thread::sleep(Duration::from_millis(50));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for r in reports() {
        assert_eq!(r["topic"], format!("{DITTO}/things/live/messages/data"));
        let snapshot = r["value"]["snapshot"].as_array().unwrap();
        assert_eq!(snapshot.len(), 1, "{r}");
        assert_eq!(snapshot[0]["originator"], originator);
        let ids: Vec<&str> = snapshot[0]["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["cpu.utilization", "memory.used"], "{r}");
        let cpu = snapshot[0]["measurements"][0]["value"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&cpu));
        assert!(snapshot[0]["measurements"][1]["value"].as_f64().unwrap() > 0.0);
        // A counter is an integer, as Kanto sends it (`"value": 1941504`, never `.0`).
        assert!(
            snapshot[0]["measurements"][1]["value"].is_u64(),
            "{}",
            snapshot[0]["measurements"][1]
        );
        let ts = r["value"]["timestamp"].as_u64().unwrap();
        assert!(
            ts <= now && ts + 30 > now,
            "timestamp {ts} is not in seconds"
        );
    }
    ok(
        d.call("Metrics", "request", json!({"frequency": "0s"})),
        204,
    );
    let stopped = reports().len();
    // The loop that sends the reports publishes container changes too, in order: a change
    // published after the stop comes after every report that loop made before it took the
    // request; at most one (made before it took it) is after the 204.
    let b = d.containers()["m-b"].0.clone();
    let state_path = format!("/features/Container:{b}/properties/status/state");
    let change = |args: &[&str], what: &str, status: &str| {
        let before = d.events_on(EVENTS).len();
        d.kcm_ok(args);
        d.wait_event_since(before, what, |e| {
            e["path"] == state_path && e["value"]["status"] == status
        });
    };
    change(&["stop", "-n", "m-b"], "m-b stopped", "STOPPED");
    let settled = reports().len();
    assert!(settled <= stopped + 1, "reports go on after 0s");
    // The period is what is tested: four periods pass, then a second change proves the loop
    // was alive all along and that all it sent in the window is here.
    let window = Instant::now();
    while window.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(50));
    }
    change(&["start", "-n", "m-b"], "m-b running again", "RUNNING");
    assert_eq!(reports().len(), settled, "reports go on after 0s");
}

#[test]
fn a_new_identity_moves_the_twin_and_a_restart_serves_the_remembered_one() {
    let mut d = twin_device("twin_identity", json!({}));
    let image = service_image(&d.h);
    d.kcm_ok(&["create", "--name", "keeper", &image]);
    let id = d.containers()["keeper"].0.clone();
    d.connect();
    d.container_feature(&id);

    let other_events = "e/t2/org.acme:other:edge:containers";
    d.peer.publish_raw(
        RESPONSE,
        br#"{"deviceId":"org.acme:other","tenantId":"t2"}"#,
    );
    let feature_path = format!("/features/Container:{id}");
    let moved = d.wait_event_on(other_events, "the container under the new thing", |e| {
        e["path"] == feature_path
    });
    assert_eq!(
        moved["topic"],
        "org.acme/other:edge:containers/things/twin/commands/modify"
    );
    let answer = d.call_on(
        "org.acme:other:edge:containers",
        "org.acme/other:edge:containers",
        &format!("Container:{id}"),
        "start",
        Value::Null,
    );
    assert_eq!(answer.0, 204, "{:#}", answer.1);

    // The old thing is not listened to any more.
    let old = json!({"topic": format!("{DITTO}/things/live/messages/stop"), "headers": {"correlation-id": "old"},
        "path": format!("/features/Container:{id}/inbox/messages/stop")});
    d.peer
        .publish(&format!("command//{THING}/req/old-1/stop"), &old);
    // A later command to the new thing, answered: the broker hands the daemon its messages
    // in order, and the twin would have refused the old one at once (it names another
    // thing) while this one is a whole stop.
    let answer = d.call_on(
        "org.acme:other:edge:containers",
        "org.acme/other:edge:containers",
        &format!("Container:{id}"),
        "stop",
        Value::Null,
    );
    assert_eq!(answer.0, 204, "{:#}", answer.1);
    assert!(
        !d.peer
            .heard()
            .iter()
            .any(|h| h.topic.contains("/res/old-1/")),
        "the old thing was answered"
    );

    // After a restart the remembered thing is served without waiting for the connector.
    d.daemon.take().unwrap().stop();
    let before = d.events_on(other_events).len();
    d.spawn();
    let deadline = Instant::now() + WAIT;
    while !d.events_on(other_events)[before..]
        .iter()
        .any(|e| e["path"] == feature_path)
    {
        assert!(Instant::now() < deadline, "{}", d.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A container the update agent made with a health gate: its Container feature's state shows
/// what the gate sees (leda-cm extension), as do `kanto-cm get` and the agent's current state.
#[test]
fn a_health_gate_shows_in_the_twin_in_kanto_cm_get_and_in_the_current_state() {
    let config = json!({"things": {"enable": true}, "update_agent": {"enable": true}});
    let d = Device::start(
        "twin_health",
        config,
        &[REQUEST, "e/#", "command//+/res/#", "containersupdate/#"],
    );
    let image = service_image(&d.h);
    d.connect();
    d.wait_event("the twin", |e| e["path"] == "/features/ContainerFactory");
    // The health command fails once (it leaves a mark), then passes.
    let once = "test -e /tmp/once || { touch /tmp/once; exit 1; }";
    let mut kv = vec![json!({"key": "image", "value": image})];
    for (k, v) in [
        ("healthCmd", "sh"),
        ("healthCmd", "-c"),
        ("healthCmd", once),
        ("healthInterval", "300ms"),
        ("healthRetries", "3"),
    ] {
        kv.push(json!({"key": k, "value": v}));
    }
    let components = json!([{"id": "app", "version": "1.0", "config": kv}]);
    d.peer.publish(
        "containersupdate/desiredstate",
        &json!({"activityId": "gated", "timestamp": 1, "payload": {"domains": [
            {"id": "containers", "config": [], "components": components}]}}),
    );
    let done = d.peer.wait(
        "containersupdate/desiredstatefeedback",
        Duration::from_secs(60),
        |j| j["activityId"] == "gated" && j["payload"]["status"] == "COMPLETED",
    );
    assert!(done.is_some(), "not COMPLETED\n{}", d.stderr());

    let id = d.containers()["app"].0.clone();
    let state_path = format!("/features/Container:{id}/properties/status/state");
    // The twin's events are published beside the feedback, not before it: waited for.
    d.wait_event("the healthy state", |e| {
        e["path"] == state_path && e["value"]["health"] == json!({"status": "healthy"})
    });
    let healths: Vec<Value> = d
        .events_on(EVENTS)
        .into_iter()
        .filter(|e| e["path"] == state_path)
        .filter_map(|e| e["value"].get("health").cloned())
        .collect();
    let failed_once = healths.iter().position(|h| {
        h["status"] == "starting"
            && h["failingStreak"] == 1
            && h["detail"]
                .as_str()
                .is_some_and(|s| s.contains("exited with code 1"))
    });
    let healthy = healths
        .iter()
        .position(|h| *h == json!({"status": "healthy"}));
    assert!(
        matches!((failed_once, healthy), (Some(a), Some(b)) if a < b),
        "{healths:#?}"
    );
    let last = d
        .events_on(EVENTS)
        .into_iter()
        .rev()
        .find(|e| e["path"] == state_path)
        .unwrap();
    assert_eq!(last["value"]["status"], "RUNNING", "{last}");
    assert_eq!(last["value"]["health"], json!({"status": "healthy"}));

    let got: Value = serde_json::from_str(&d.kcm_ok(&["get", &id])).unwrap();
    assert_eq!(
        got["state"]["health"],
        json!({"status": "healthy"}),
        "{got:#}"
    );

    // The current state published after the apply names it among the container's parameters.
    let current = d.peer.wait(
        "containersupdate/currentstate",
        Duration::from_secs(20),
        |j| {
            j["payload"]["softwareNodes"]
                .as_array()
                .and_then(|nodes| nodes.iter().find(|n| n["id"] == "containers:app"))
                .and_then(|n| n["parameters"].as_array())
                .is_some_and(|p| p.contains(&json!({"key": "health", "value": "healthy"})))
        },
    );
    assert!(
        current.is_some(),
        "no current state with the health\n{}",
        d.stderr()
    );
}
