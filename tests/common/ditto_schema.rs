//! A checker of the messages leda-cm publishes on the twin against the rules of Eclipse
//! Ditto's protocol JSON schemas (documentation/src/main/resources/jsonschema/ in Ditto's
//! repository: protocol-envelope.json, protocol-response.json,
//! protocol-error_response.json), written from their rules:
//!
//! - every message: an object with `topic` (a Ditto topic `<namespace>/<name>/things/
//!   <channel>/<criterion>[/<action>]`), `headers` (an object with a string
//!   `correlation-id`; the known headers with their types: `content-type`, `timeout`,
//!   `If-Match`… strings, `response-required` boolean, `version` an integer 1–2,
//!   `requested-acks` unique strings of 3–100 of `[a-zA-Z0-9-_:]`) and `path` (a JSON
//!   pointer, `/…`); `value`, when present, not null; `fields` a string, `extra` an
//!   object, `revision` a number, `timestamp` a string.
//! - twin commands and messages on `e/<tenant>/<thing>` are envelopes (a `modify` has a
//!   value, a `delete` none);
//! - answers on `command//<thing>/res/<id>/<status>` are responses: an integer `status`
//!   (an HTTP status, 100–599) equal to the MQTT topic's; or error responses when the
//!   topic ends in `/errors`: path `/`, `value` an object with integer `status` (the
//!   same), string `error` and `message`, `description` and `href` strings when present.
//!
//! Other topics (the update agent's, the handshake's) are not the twin's: not checked.

use serde_json::{Map, Value};

/// What was wrong with one message (empty: nothing).
pub type Violations = Vec<String>;

/// Checks a message leda-cm published on `mqtt_topic`; Ok for topics that are not the twin's.
pub fn check(mqtt_topic: &str, payload: &[u8]) -> Result<(), Violations> {
    let kind = match kind_of(mqtt_topic) {
        Some(k) => k,
        None => return Ok(()),
    };
    let v: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => return Err(vec![format!("not JSON: {e}")]),
    };
    let mut out = Vec::new();
    match kind {
        Kind::Envelope => envelope(&v, &mut out),
        Kind::Answer(status) => answer(&v, status, &mut out),
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// A twin command or a live message (`e/<tenant>/<thing>`).
    Envelope,
    /// An answer, with the status of its MQTT topic (None: not a number).
    Answer(Option<u16>),
}

fn kind_of(mqtt_topic: &str) -> Option<Kind> {
    if let Some(rest) = mqtt_topic.strip_prefix("e/") {
        return rest.contains('/').then_some(Kind::Envelope);
    }
    let rest = mqtt_topic.strip_prefix("command//")?;
    let (_thing, rest) = rest.split_once("/res/")?;
    let (_id, status) = rest.rsplit_once('/')?;
    Some(Kind::Answer(status.parse().ok()))
}

/// `<namespace>/<name>/things/<twin|live>/<commands|events|messages|errors>[/<action>]`.
fn topic_rule(topic: &str) -> Result<(), String> {
    let parts: Vec<&str> = topic.split('/').collect();
    let bad = |why: &str| Err(format!("topic {topic:?}: {why}"));
    if parts.len() < 5 {
        return bad("not <namespace>/<name>/things/<channel>/<criterion>[/<action>]");
    }
    if parts[0].is_empty() || parts[1].is_empty() {
        return bad("empty namespace or name");
    }
    if parts[2] != "things" {
        return bad("the group is not things");
    }
    if !["twin", "live"].contains(&parts[3]) {
        return bad("the channel is neither twin nor live");
    }
    match (parts[4], &parts[5..]) {
        ("errors", []) => Ok(()),
        ("commands", [a]) if ["create", "retrieve", "modify", "merge", "delete"].contains(a) => {
            Ok(())
        }
        ("events", [a]) if !a.is_empty() => Ok(()),
        ("messages", [subject]) if !subject.is_empty() => Ok(()),
        _ => bad("unknown criterion or action"),
    }
}

fn object<'a>(v: &'a Value, out: &mut Violations) -> Option<&'a Map<String, Value>> {
    match v.as_object() {
        Some(o) => Some(o),
        None => {
            out.push(format!("the message is not a JSON object: {v}"));
            None
        }
    }
}

/// Whether a value has a schema type.
type TypeCheck = fn(&Value) -> bool;

/// The rules every message shares (topic, headers, path, the optional fields).
fn common(o: &Map<String, Value>, out: &mut Violations) {
    match o.get("topic") {
        Some(Value::String(t)) => {
            if let Err(e) = topic_rule(t) {
                out.push(e);
            }
        }
        Some(other) => out.push(format!("topic is not a string: {other}")),
        None => out.push("no topic".into()),
    }
    match o.get("headers") {
        Some(Value::Object(h)) => headers(h, out),
        Some(other) => out.push(format!("headers is not an object: {other}")),
        None => out.push("no headers".into()),
    }
    match o.get("path") {
        Some(Value::String(p)) if p.starts_with('/') => {}
        Some(other) => out.push(format!("path is not a JSON pointer (/…): {other}")),
        None => out.push("no path".into()),
    }
    if o.get("value").is_some_and(Value::is_null) {
        out.push("value is null (not one of object, string, number, array, boolean)".into());
    }
    let typed: [(&str, TypeCheck, &str); 4] = [
        ("fields", Value::is_string, "a string"),
        ("extra", Value::is_object, "an object"),
        ("revision", Value::is_number, "a number"),
        ("timestamp", Value::is_string, "a string"),
    ];
    for (key, ok, what) in typed {
        if let Some(v) = o.get(key) {
            if !ok(v) {
                out.push(format!("{key} is not {what}: {v}"));
            }
        }
    }
}

fn headers(h: &Map<String, Value>, out: &mut Violations) {
    match h.get("correlation-id") {
        Some(Value::String(_)) => {}
        Some(other) => out.push(format!("headers.correlation-id is not a string: {other}")),
        None => out.push("headers has no correlation-id".into()),
    }
    for key in [
        "content-type",
        "ditto-originator",
        "If-Match",
        "If-None-Match",
        "if-equal",
        "timeout",
        "condition",
    ] {
        if let Some(v) = h.get(key) {
            if !v.is_string() {
                out.push(format!("headers.{key} is not a string: {v}"));
            }
        }
    }
    if let Some(v) = h.get("response-required") {
        if !v.is_boolean() {
            out.push(format!("headers.response-required is not a boolean: {v}"));
        }
    }
    if let Some(v) = h.get("version") {
        if !v.as_i64().is_some_and(|n| (1..=2).contains(&n)) || !(v.is_i64() || v.is_u64()) {
            out.push(format!("headers.version is not an integer 1–2: {v}"));
        }
    }
    if let Some(v) = h.get("requested-acks") {
        match v.as_array() {
            Some(acks) => {
                let mut seen = std::collections::HashSet::new();
                for a in acks {
                    let ok = a.as_str().is_some_and(|s| {
                        (3..=100).contains(&s.len())
                            && s.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c))
                    });
                    if !ok {
                        out.push(format!("headers.requested-acks: {a} is not an ack label"));
                    }
                    if !seen.insert(a.to_string()) {
                        out.push(format!("headers.requested-acks: {a} twice"));
                    }
                }
            }
            None => out.push(format!("headers.requested-acks is not an array: {v}")),
        }
    }
}

fn envelope(v: &Value, out: &mut Violations) {
    let Some(o) = object(v, out) else { return };
    common(o, out);
    let topic = o.get("topic").and_then(Value::as_str).unwrap_or("");
    if topic.ends_with("/commands/modify") && o.get("value").is_none() {
        out.push("a modify command without a value".into());
    }
    if topic.ends_with("/commands/delete") && o.get("value").is_some() {
        out.push("a delete command with a value".into());
    }
    if o.contains_key("status") {
        out.push("a command or message with a status (only responses have one)".into());
    }
}

fn integer_status(v: Option<&Value>, what: &str, out: &mut Violations) -> Option<u16> {
    match v {
        Some(s) if s.is_u64() || s.is_i64() => {
            let n = s.as_i64().unwrap_or(-1);
            if !(100..=599).contains(&n) {
                out.push(format!("{what} {n} is not an HTTP status"));
            }
            u16::try_from(n).ok()
        }
        Some(other) => {
            out.push(format!("{what} is not an integer: {other}"));
            None
        }
        None => {
            out.push(format!("no {what}"));
            None
        }
    }
}

fn answer(v: &Value, mqtt_status: Option<u16>, out: &mut Violations) {
    let Some(o) = object(v, out) else { return };
    common(o, out);
    let status = integer_status(o.get("status"), "status", out);
    match mqtt_status {
        None => out.push("the MQTT topic's status is not a number".into()),
        Some(m) if status.is_some_and(|s| s != m) => out.push(format!(
            "status {status:?} differs from the MQTT topic's {m}"
        )),
        _ => {}
    }
    let topic = o.get("topic").and_then(Value::as_str).unwrap_or("");
    if !topic.ends_with("/errors") {
        return;
    }
    // An error response.
    if o.get("path").and_then(Value::as_str) != Some("/") {
        out.push("an error response's path is not /".into());
    }
    match o.get("value") {
        Some(Value::Object(e)) => {
            let inner = integer_status(e.get("status"), "value.status", out);
            if inner.is_some() && status.is_some() && inner != status {
                out.push(format!(
                    "value.status {inner:?} differs from status {status:?}"
                ));
            }
            for key in ["error", "message"] {
                match e.get(key) {
                    Some(Value::String(_)) => {}
                    Some(other) => out.push(format!("value.{key} is not a string: {other}")),
                    None => out.push(format!("value has no {key}")),
                }
            }
            for key in ["description", "href"] {
                if let Some(x) = e.get(key) {
                    if !x.is_string() {
                        out.push(format!("value.{key} is not a string: {x}"));
                    }
                }
            }
        }
        Some(other) => out.push(format!(
            "an error response's value is not an object: {other}"
        )),
        None => out.push("an error response without a value".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const EVENTS: &str = "e/t1/org.acme:gw:edge:containers";
    const RES: &str = "command//org.acme:gw:edge:containers/res/r1/";

    fn modify() -> Value {
        json!({
            "topic": "org.acme/gw:edge:containers/things/twin/commands/modify",
            "headers": {"correlation-id": "c1", "response-required": false},
            "path": "/features/A/properties/x",
            "value": {"a": 1},
        })
    }

    fn response(status: u16) -> Value {
        json!({
            "topic": "org.acme/gw:edge:containers/things/live/messages/start",
            "headers": {"correlation-id": "c1", "content-type": "application/json"},
            "path": "/features/A/outbox/messages/start",
            "status": status,
            "value": "x",
        })
    }

    fn error() -> Value {
        json!({
            "topic": "org.acme/gw:edge:containers/things/twin/errors",
            "headers": {"correlation-id": "c1"},
            "path": "/",
            "status": 400,
            "value": {"status": 400, "error": "messages:parameter.invalid", "message": "m"},
        })
    }

    fn violations(topic: &str, v: &Value) -> Violations {
        check(topic, v.to_string().as_bytes())
            .err()
            .unwrap_or_default()
    }

    /// Each rule: the valid message passes, the message broken by `edit` fails naming it.
    #[test]
    fn every_rule_passes_the_valid_and_fails_the_invalid() {
        type Edit = fn(&mut Value);
        type Valid = fn() -> Value;
        let res200 = format!("{RES}200");
        let res400 = format!("{RES}400");
        let cases: Vec<(&str, Valid, Edit, &str)> = vec![
            (EVENTS, modify, |v| v["topic"] = json!(""), "topic"),
            (
                EVENTS,
                modify,
                |v| v["topic"] = json!("a/b/things/twin/commands/explode"),
                "unknown criterion",
            ),
            (
                EVENTS,
                modify,
                |v| v["topic"] = json!("a/b/policies/twin/commands/modify"),
                "group",
            ),
            (
                EVENTS,
                modify,
                |v| v["topic"] = json!("a/b/things/moon/commands/modify"),
                "channel",
            ),
            (
                EVENTS,
                modify,
                |v| v["topic"] = json!(3),
                "topic is not a string",
            ),
            (
                EVENTS,
                modify,
                |v| {
                    v.as_object_mut().unwrap().remove("topic");
                },
                "no topic",
            ),
            (
                EVENTS,
                modify,
                |v| v["headers"] = Value::Null,
                "headers is not an object",
            ),
            (
                EVENTS,
                modify,
                |v| {
                    v.as_object_mut().unwrap().remove("headers");
                },
                "no headers",
            ),
            (
                EVENTS,
                modify,
                |v| {
                    v["headers"]
                        .as_object_mut()
                        .unwrap()
                        .remove("correlation-id");
                },
                "no correlation-id",
            ),
            (
                EVENTS,
                modify,
                |v| v["headers"]["correlation-id"] = json!(7),
                "correlation-id is not a string",
            ),
            (
                EVENTS,
                modify,
                |v| v["headers"]["response-required"] = json!("false"),
                "response-required",
            ),
            (
                EVENTS,
                modify,
                |v| v["headers"]["content-type"] = json!(1),
                "content-type",
            ),
            (
                EVENTS,
                modify,
                |v| v["headers"]["version"] = json!(3),
                "version",
            ),
            (
                EVENTS,
                modify,
                |v| v["headers"]["version"] = json!(2.0),
                "version",
            ),
            (
                EVENTS,
                modify,
                |v| v["headers"]["requested-acks"] = json!(["ok", "twin-persisted"]),
                "ack label",
            ),
            (
                EVENTS,
                modify,
                |v| v["headers"]["requested-acks"] = json!(["abc", "abc"]),
                "twice",
            ),
            (EVENTS, modify, |v| v["path"] = json!(""), "path"),
            (EVENTS, modify, |v| v["path"] = json!("features/A"), "path"),
            (
                EVENTS,
                modify,
                |v| {
                    v.as_object_mut().unwrap().remove("path");
                },
                "no path",
            ),
            (
                EVENTS,
                modify,
                |v| v["value"] = Value::Null,
                "value is null",
            ),
            (
                EVENTS,
                modify,
                |v| {
                    v.as_object_mut().unwrap().remove("value");
                },
                "modify command without a value",
            ),
            (
                EVENTS,
                modify,
                |v| v["topic"] = json!("org.acme/gw/things/twin/commands/delete"),
                "delete command with a value",
            ),
            (EVENTS, modify, |v| v["revision"] = json!("1"), "revision"),
            (EVENTS, modify, |v| v["timestamp"] = json!(1), "timestamp"),
            (EVENTS, modify, |v| v["status"] = json!(200), "status"),
            (EVENTS, modify, |v| *v = json!([1]), "not a JSON object"),
            (
                &res200,
                || response(200),
                |v| {
                    v.as_object_mut().unwrap().remove("status");
                },
                "no status",
            ),
            (
                &res200,
                || response(200),
                |v| v["status"] = json!(200.0),
                "status is not an integer",
            ),
            (
                &res200,
                || response(200),
                |v| v["status"] = json!(204),
                "differs from the MQTT topic",
            ),
            (
                &res200,
                || response(200),
                |v| v["status"] = json!(700),
                "not an HTTP status",
            ),
            (
                &res200,
                || response(200),
                |v| {
                    v["headers"]
                        .as_object_mut()
                        .unwrap()
                        .remove("correlation-id");
                },
                "no correlation-id",
            ),
            (
                &res200,
                || response(200),
                |v| v["value"] = Value::Null,
                "value is null",
            ),
            (
                &res200,
                || response(200),
                |v| v["topic"] = json!(""),
                "topic",
            ),
            (&res200, || response(200), |v| v["path"] = json!(""), "path"),
            (
                &res400,
                error,
                |v| v["path"] = json!("/features/A"),
                "path is not /",
            ),
            (
                &res400,
                error,
                |v| v["value"] = json!("bad"),
                "value is not an object",
            ),
            (
                &res400,
                error,
                |v| {
                    v.as_object_mut().unwrap().remove("value");
                },
                "without a value",
            ),
            (
                &res400,
                error,
                |v| {
                    v["value"].as_object_mut().unwrap().remove("error");
                },
                "value has no error",
            ),
            (
                &res400,
                error,
                |v| {
                    v["value"].as_object_mut().unwrap().remove("message");
                },
                "value has no message",
            ),
            (
                &res400,
                error,
                |v| v["value"]["status"] = json!(500),
                "differs from status",
            ),
            (
                &res400,
                error,
                |v| v["value"]["status"] = json!("400"),
                "value.status is not an integer",
            ),
            (
                &res400,
                error,
                |v| v["value"]["href"] = json!(1),
                "value.href",
            ),
            (
                &res400,
                error,
                |v| {
                    v["headers"]
                        .as_object_mut()
                        .unwrap()
                        .remove("correlation-id");
                },
                "no correlation-id",
            ),
        ];
        for (topic, valid, edit, needle) in cases {
            let good = valid();
            assert_eq!(violations(topic, &good), Violations::new(), "{good}");
            let mut bad = good.clone();
            edit(&mut bad);
            let found = violations(topic, &bad);
            assert!(
                found.iter().any(|v| v.contains(needle)),
                "{needle:?} not among {found:?} for {bad}"
            );
        }
    }

    #[test]
    fn valid_messages_of_each_kind_pass() {
        let delete = json!({"topic": "ns/n:edge:containers/things/twin/commands/delete",
            "headers": {"correlation-id": "c"}, "path": "/features/Container:x"});
        let data = json!({"topic": "ns/n/things/live/messages/data",
            "headers": {"correlation-id": "c", "response-required": false, "content-type": "application/json"},
            "path": "/features/Metrics/outbox/messages/data", "value": {"snapshot": [], "timestamp": 1}});
        let no_content = json!({"topic": "ns/n/things/live/messages/stop",
            "headers": {"correlation-id": "c"}, "path": "/features/Container:x/outbox/messages/stop", "status": 204});
        // Extra error fields are allowed, null among them (additionalProperties).
        let mut err = error();
        err["value"]["extra"] = Value::Null;
        for (topic, v) in [
            (EVENTS.to_string(), delete),
            (EVENTS.to_string(), data),
            (format!("{RES}204"), no_content),
            (format!("{RES}400"), err),
        ] {
            assert_eq!(violations(&topic, &v), Violations::new(), "{v}");
        }
        // Not the twin's: not checked. Not JSON on the twin: a violation.
        assert!(check("edge/thing/request", b"{\"headers\":null}").is_ok());
        assert!(check("containersupdate/currentstate", b"x").is_ok());
        assert!(check("command//t/req/r1/start", b"x").is_ok());
        assert!(check(EVENTS, b"not json").is_err());
        assert!(check(&format!("{RES}oops"), response(200).to_string().as_bytes()).is_err());
    }
}
