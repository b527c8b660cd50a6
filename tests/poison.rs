//! Poison numbers over real MQTT: extreme values in the numeric fields of Ditto commands and
//! desired states are answered (400, IDENTIFICATION_FAILED) or bounded, and the daemon is
//! still alive and answering afterwards (release builds abort on a panic; one such message
//! used to take the device down: a Metrics `frequency` of 1e19).

mod common;

use std::time::{Duration, Instant};

use common::device::Device;
use serde_json::{json, Value};

const REQUEST: &str = "edge/thing/request";
const RESPONSE: &str = "edge/thing/response";
const THING: &str = "<namespace>:<gatewayId>:<deviceId>:edge:containers";
const DITTO: &str = "<namespace>/<gatewayId>:<deviceId>:edge:containers";
const EVENTS: &str = "e/<tenantId>/<namespace>:<gatewayId>:<deviceId>:edge:containers";
const DESIRED: &str = "containersupdate/desiredstate";
const FEEDBACK: &str = "containersupdate/desiredstatefeedback";
const CURRENT: &str = "containersupdate/currentstate";
const GET: &str = "containersupdate/currentstate/get";
const WAIT: Duration = Duration::from_secs(20);

/// The raw text of a Ditto command for `feature`'s `op` with `value` (raw JSON text, so that
/// numbers a `serde_json::Value` cannot hold reach the daemon as they are).
fn command(id: &str, feature: &str, op: &str, value: &str) -> String {
    format!(
        r#"{{"topic":"{DITTO}/things/live/messages/{op}","headers":{{"correlation-id":"c-{id}","response-required":true,"content-type":"application/json"}},"path":"/features/{feature}/inbox/messages/{op}","value":{value}}}"#
    )
}

impl Device {
    fn answer(&self, id: &str) -> (u16, Value) {
        let prefix = format!("command//{THING}/res/{id}/");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(h) = self
                .peer
                .heard()
                .into_iter()
                .find(|h| h.topic.starts_with(&prefix))
            {
                return (h.topic[prefix.len()..].parse().unwrap(), h.json.unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "no answer to {id}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn call_raw(&self, id: &str, feature: &str, op: &str, value: &str) -> (u16, Value) {
        self.peer.publish_raw(
            &format!("command//{THING}/req/{id}/{op}"),
            command(id, feature, op, value).as_bytes(),
        );
        self.answer(id)
    }

    fn identification_failed(&self, activity: &str) -> String {
        let h = self
            .peer
            .wait(FEEDBACK, WAIT, |j| {
                j["activityId"] == activity && j["payload"]["status"] == "IDENTIFICATION_FAILED"
            })
            .unwrap_or_else(|| {
                panic!("no IDENTIFICATION_FAILED for {activity}\n{}", self.stderr())
            });
        h.json.unwrap()["payload"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

#[test]
fn extreme_numbers_on_every_topic_leave_the_daemon_answering() {
    let mut d = Device::start(
        "poison",
        json!({"things": {"enable": true}, "update_agent": {"enable": true}}),
        &[REQUEST, "e/#", "command//+/res/#", FEEDBACK, CURRENT],
    );
    d.peer
        .wait(REQUEST, WAIT, |_| true)
        .expect("a handshake request");
    let identity = std::fs::read_to_string(format!(
        "{}/tests/fixtures/leda-docs/simulate-connectivity.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    d.peer.publish_raw(RESPONSE, identity.as_bytes());
    d.peer
        .wait(EVENTS, WAIT, |e| e["path"] == "/features/ContainerFactory")
        .expect("the twin");

    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("p-{n}")
    };

    // Metrics frequencies: refused, or a period from 0 to a day.
    for (frequency, want) in [
        ("1e19", 400),
        ("1e308", 400),
        ("-1e308", 204),
        ("1e400", 400),
        ("18446744073709551615", 400),
        ("9223372036854775807", 400),
        ("86401", 400),
        ("\"9999999999h\"", 400),
        ("\"2562048h\"", 400),
        ("\"1e19s\"", 400),
        ("-0.0", 204),
        ("0.5", 204),
        ("\"NaN\"", 400),
        ("[]", 400),
    ] {
        let id = next();
        let (status, answer) = d.call_raw(
            &id,
            "Metrics",
            "request",
            &format!(r#"{{"frequency":{frequency}}}"#),
        );
        assert_eq!(status, want, "frequency {frequency}: {answer}");
    }

    // createWithConfig: every bound is checked before anything is pulled or created.
    for (config, needle) in [
        (r#"{"log":{"maxFiles":1e19}}"#, "log.maxFiles"),
        (r#"{"log":{"maxFiles":1001}}"#, "more than 1000"),
        (
            r#"{"restartPolicy":{"type":"ON_FAILURE","retryTimeout":1e308}}"#,
            "more than a day",
        ),
        (
            r#"{"restartPolicy":{"type":"ON_FAILURE","maxRetryCount":-9223372036854775808}}"#,
            "cannot be negative",
        ),
        (
            r#"{"portMappings":[{"hostPort":65536,"containerPort":80}]}"#,
            "hostPort",
        ),
        (
            r#"{"resources":{"memory":"99999999999999999999G"}}"#,
            "memory",
        ),
        (r#"{"log":{"maxFiles":1e400}}"#, "not valid JSON"),
    ] {
        let id = next();
        let (status, answer) = d.call_raw(
            &id,
            "ContainerFactory",
            "createWithConfig",
            &format!(r#"{{"imageRef":"busybox","config":{config}}}"#),
        );
        assert_eq!(status, 400, "{config}: {answer}");
        let message = answer["value"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{config}: {message}");
    }

    // Desired states: IDENTIFICATION_FAILED naming what is wrong.
    let component = |k: &str, v: &str| {
        json!({"activityId": "", "timestamp": 1, "payload": {"domains": [{"id": "containers", "components": [
            {"id": "app", "version": "1", "config": [
                {"key": "image", "value": "busybox"},
                {"key": "restartPolicy", "value": "on-failure"},
                {"key": k, "value": v}
            ]}
        ]}]}})
    };
    for (k, v, needle) in [
        ("restartTimeout", "9223372036854775807", "more than a day"),
        (
            "restartMaxRetries",
            "-9223372036854775808",
            "cannot be negative",
        ),
        ("restartMaxRetries", "1e19", "key restartMaxRetries"),
        ("logMaxFiles", "18446744073709551615", "key logMaxFiles"),
        ("logMaxFiles", "4294967296", "more than 1000"),
        ("memory", "1e400", "key memory"),
        ("port", "65536:80", "key port"),
    ] {
        let activity = next();
        let mut ds = component(k, v);
        ds["activityId"] = activity.clone().into();
        d.peer.publish(DESIRED, &ds);
        let message = d.identification_failed(&activity);
        assert!(message.contains(needle), "{k} = {v}: {message}");
    }
    for timestamp in ["1.5", "18446744073709551616", "\"now\"", "1e400"] {
        let activity = next();
        d.peer.publish_raw(
            DESIRED,
            format!(r#"{{"activityId":"{activity}","timestamp":{timestamp},"payload":{{"domains":[]}}}}"#)
                .as_bytes(),
        );
        // Even with 1e400 the activity ID is read (the rest is not).
        let message = d.identification_failed(&activity);
        assert!(message.contains("not valid"), "{timestamp}: {message}");
    }

    // Still alive and answering on every topic.
    assert!(
        d.daemon.as_mut().unwrap().try_status().is_none(),
        "the daemon exited\n{}",
        d.stderr()
    );
    let id = next();
    assert_eq!(
        d.call_raw(&id, "Metrics", "request", r#"{"frequency":"0s"}"#)
            .0,
        204
    );
    let activity = next();
    d.peer.publish(
        GET,
        &json!({"activityId": activity, "timestamp": 1, "payload": {}}),
    );
    d.peer
        .wait(CURRENT, WAIT, |j| j["activityId"] == activity)
        .unwrap_or_else(|| panic!("no current state for {activity}\n{}", d.stderr()));
    assert!(!d.stderr().contains("panicked"), "{}", d.stderr());
}
