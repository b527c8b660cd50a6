//! Eclipse Ditto messages over the local broker, as Kanto's things client speaks them (pure):
//! the thing's identity, inbound live messages (`command//<thing>/req/<id>/<op>`), their
//! responses, and outbound twin commands and feature messages (`e/<tenant>/<thing>`).
//!
//! Every message leda-cm publishes on the twin is valid against Ditto's protocol schemas
//! (envelope, response, error response): each carries a `correlation-id` (a new one for
//! twin commands and outbox messages, where Kanto sends none; the request ID of the MQTT
//! topic for an answer to a command that had none), a `topic` and a `path`, and no `value`
//! is null (a property that goes is deleted).
//!
//! As Kanto: a command without a `correlation-id` header is refused with a 400 and not
//! executed; an answer to a command whose envelope cannot be read (not JSON, no topic or
//! path) is an error response on `<namespace>/<name>/things/twin/errors` with path `/`
//! (Kanto writes `unknown/unknown`; leda-cm names the thing of the MQTT topic).
//!
//! Beyond Kanto: a malformed request gets a 400 naming what is wrong (Kanto's client
//! dereferences a missing envelope), an unknown feature is 404, a request whose
//! `response-required` header cannot be read is still answered, and a missing
//! `response-required` means true, as in Ditto's protocol.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// What the cloud connector says on `edge/thing/response`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(rename = "deviceId")]
    pub device_id: String,
    #[serde(rename = "tenantId")]
    pub tenant_id: String,
    #[serde(rename = "policyId", default, skip_serializing_if = "String::is_empty")]
    pub policy_id: String,
}

pub const HANDSHAKE_REQUEST: &str = "edge/thing/request";
pub const HANDSHAKE_RESPONSE: &str = "edge/thing/response";
/// Kanto publishes an empty envelope as the handshake request.
pub const HANDSHAKE_PAYLOAD: &str = r#"{"topic":"","headers":null,"path":""}"#;
const THING_SUFFIX: &str = "edge:containers";

impl Identity {
    /// Parses a handshake response; the device ID must be non-empty.
    pub fn parse(payload: &[u8]) -> Result<Identity, String> {
        let id: Identity = serde_json::from_slice(payload)
            .map_err(|e| format!("the thing handshake response is not valid: {e}"))?;
        if id.device_id.trim().is_empty() || id.tenant_id.trim().is_empty() {
            return Err("the thing handshake response lacks deviceId or tenantId".into());
        }
        Ok(id)
    }

    /// `<deviceId>:edge:containers`, split at the first `:` into Ditto namespace and name.
    pub fn thing(&self) -> Thing {
        let id = format!("{}:{THING_SUFFIX}", self.device_id);
        let (namespace, name) = id.split_once(':').unwrap_or((&id, ""));
        Thing {
            namespace: namespace.to_string(),
            name: name.to_string(),
            tenant: self.tenant_id.clone(),
        }
    }
}

/// The containers thing of a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thing {
    pub namespace: String,
    pub name: String,
    pub tenant: String,
}

impl Thing {
    pub fn id(&self) -> String {
        format!("{}:{}", self.namespace, self.name)
    }

    /// Where twin commands and feature messages go (a Hono event).
    pub fn event_topic(&self) -> String {
        format!("e/{}/{}", self.tenant, self.id())
    }

    /// The subscription for the thing's live messages.
    pub fn command_filter(&self) -> String {
        format!("command//{}/req/#", self.id())
    }

    fn ditto_topic(&self, rest: &str) -> String {
        format!("{}/{}/things/{rest}", self.namespace, self.name)
    }

    /// A twin `modify` of `path` to `value`; a null value (which Ditto's envelope does not
    /// allow) is the `delete` of `path`.
    pub fn modify(&self, path: &str, value: Value) -> Value {
        self.modify_as(path, value, &new_correlation_id())
    }

    fn modify_as(&self, path: &str, value: Value, correlation_id: &str) -> Value {
        if value.is_null() {
            return self.delete_as(path, correlation_id);
        }
        json!({
            "topic": self.ditto_topic("twin/commands/modify"),
            "headers": {"correlation-id": correlation_id, "response-required": false},
            "path": path,
            "value": value,
        })
    }

    /// A twin `delete` of `path`.
    pub fn delete(&self, path: &str) -> Value {
        self.delete_as(path, &new_correlation_id())
    }

    fn delete_as(&self, path: &str, correlation_id: &str) -> Value {
        json!({
            "topic": self.ditto_topic("twin/commands/delete"),
            "headers": {"correlation-id": correlation_id, "response-required": false},
            "path": path,
        })
    }

    /// A feature's outbox message (e.g. Metrics `data`).
    pub fn outbox_message(&self, feature: &str, message: &str, value: Value) -> Value {
        json!({
            "topic": self.ditto_topic(&format!("live/messages/{message}")),
            "headers": {
                "correlation-id": new_correlation_id(),
                "response-required": false,
                "content-type": "application/json",
            },
            "path": format!("/features/{feature}/outbox/messages/{message}"),
            "value": value,
        })
    }
}

/// A correlation ID for a message leda-cm starts (Ditto's envelope requires one).
fn new_correlation_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A number as Go's `encoding/json` writes a float64 (and so Kanto): an integral value
/// without a fraction (`2`, not `2.0`). Non-finite values, which JSON cannot carry, are 0.
pub fn go_number(f: f64) -> Value {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53: every integer up to it is exact
    if !f.is_finite() {
        json!(0)
    } else if f.fract() == 0.0 && f.abs() <= EXACT {
        json!(f as i64)
    } else {
        json!(f)
    }
}

/// An error answer: `{error, status, message}` as Ditto words them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThingError {
    pub status: u16,
    pub message: String,
}

impl ThingError {
    pub fn invalid(message: impl Into<String>) -> ThingError {
        ThingError {
            status: 400,
            message: message.into(),
        }
    }

    /// Not allowed by the remote-request policy.
    pub fn forbidden(message: impl Into<String>) -> ThingError {
        ThingError {
            status: 403,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ThingError {
        ThingError {
            status: 404,
            message: message.into(),
        }
    }

    pub fn too_large(message: impl Into<String>) -> ThingError {
        ThingError {
            status: 413,
            message: message.into(),
        }
    }

    pub fn failed(message: impl Into<String>) -> ThingError {
        ThingError {
            status: 500,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self.status {
            400 => "messages:parameter.invalid",
            403 => "messages:subject.forbidden",
            404 => "messages:subject.notfound",
            413 => "messages:payload.toolarge",
            _ => "messages:execution.failed",
        }
    }

    pub fn value(&self) -> Value {
        json!({"error": self.code(), "status": self.status, "message": self.message})
    }
}

/// Where and how to answer a request.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyTo {
    /// The thing ID of the MQTT topic.
    pub thing_id: String,
    pub request_id: String,
    /// The request's Ditto topic, echoed.
    pub topic: String,
    pub correlation_id: String,
    /// The request's path (errors before dispatch answer on it) and the outbox path.
    pub path: String,
    pub outbox: Option<String>,
    pub wanted: bool,
}

/// An inbound live message for a feature.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub reply: ReplyTo,
    pub feature: String,
    pub operation: String,
    pub value: Value,
}

/// The largest command leda-cm reads (a Ditto command is a few KiB; the largest, a
/// ContainerFactory create with a full configuration, well under this).
pub const MAX_COMMAND_BYTES: usize = 1 << 20;

/// Where to answer a command, read without the rest of it (unknown fields are skipped).
#[derive(Deserialize, Default)]
struct Head {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    headers: HeadHeaders,
}

#[derive(Deserialize, Default)]
struct HeadHeaders {
    #[serde(default, rename = "correlation-id")]
    correlation_id: String,
}

/// Parses `command//<thing>/req/<id>/<op>` and its payload. An error comes with where to
/// answer it: the request's topic and path when they could be read, else (as Kanto) the
/// thing's `errors` topic and path `/`.
pub fn parse_request(
    mqtt_topic: &str,
    payload: &[u8],
    thing: &Thing,
) -> Result<Request, Box<(ReplyTo, ThingError)>> {
    parse_envelope(mqtt_topic, payload, thing).map_err(|mut failed| {
        let reply = &mut failed.0;
        if !is_ditto_topic(&reply.topic) || !reply.path.starts_with('/') {
            reply.topic = errors_topic(&reply.thing_id);
            reply.path = "/".into();
            reply.outbox = None;
        }
        failed
    })
}

/// `<namespace>/<name>/things/…`
fn is_ditto_topic(topic: &str) -> bool {
    let mut parts = topic.splitn(4, '/');
    let (ns, name, group) = (parts.next(), parts.next(), parts.next());
    matches!((ns, name, group), (Some(ns), Some(name), Some("things")) if !ns.is_empty() && !name.is_empty())
        && parts.next().is_some_and(|rest| !rest.is_empty())
}

/// `<namespace>/<name>/things/twin/errors` of the thing ID `<namespace>:<name>`.
fn errors_topic(thing_id: &str) -> String {
    match thing_id.split_once(':') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
            format!("{ns}/{name}/things/twin/errors")
        }
        _ => "unknown/unknown/things/twin/errors".into(),
    }
}

fn parse_envelope(
    mqtt_topic: &str,
    payload: &[u8],
    thing: &Thing,
) -> Result<Request, Box<(ReplyTo, ThingError)>> {
    let (thing_id, request_id) = split_command_topic(mqtt_topic).unwrap_or_default();
    let mut reply = ReplyTo {
        thing_id: thing_id.clone(),
        request_id,
        topic: String::new(),
        correlation_id: String::new(),
        path: String::new(),
        outbox: None,
        wanted: true,
    };
    let fail = |reply: &ReplyTo, e: ThingError| Err(Box::new((reply.clone(), e)));
    if payload.len() > MAX_COMMAND_BYTES {
        // Answered without building the whole document: only where to answer is read.
        if let Ok(head) = serde_json::from_slice::<Head>(payload) {
            reply.topic = head.topic;
            reply.path = head.path;
            reply.correlation_id = head.headers.correlation_id;
        }
        return fail(
            &reply,
            ThingError::too_large(format!(
                "the message has {} bytes, more than the {MAX_COMMAND_BYTES} a command may have",
                payload.len()
            )),
        );
    }
    let envelope: Map<String, Value> = match serde_json::from_slice(payload) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return fail(
                &reply,
                ThingError::invalid("the message is not a Ditto envelope (a JSON object)"),
            )
        }
        Err(e) => {
            return fail(
                &reply,
                ThingError::invalid(format!("the message is not valid JSON: {e}")),
            )
        }
    };
    let text = |key: &str| envelope.get(key).and_then(Value::as_str).unwrap_or("");
    reply.topic = text("topic").to_string();
    reply.path = text("path").to_string();
    let headers = match envelope.get("headers") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(h)) => h.clone(),
        Some(_) => return fail(&reply, ThingError::invalid("headers must be a JSON object")),
    };
    let correlation = match headers.get("correlation-id") {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!(
            "header correlation-id must be a string, not {other}"
        )),
    };
    reply.correlation_id = correlation.clone().unwrap_or_default();
    match headers.get("response-required") {
        // Ditto's default is true (Kanto reads a missing header as false).
        None | Some(Value::Null) => reply.wanted = true,
        Some(Value::Bool(b)) => reply.wanted = *b,
        Some(Value::String(s)) if s == "true" || s == "false" => reply.wanted = s == "true",
        Some(other) => {
            return fail(
                &reply,
                ThingError::invalid(format!(
                    "header response-required must be true or false, not {other}"
                )),
            )
        }
    }
    if reply.topic.is_empty() {
        return fail(&reply, ThingError::invalid("the envelope has no topic"));
    }
    let mut parts = reply.topic.splitn(3, '/');
    let (ns, name) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if parts.next().is_none() {
        return fail(
            &reply,
            ThingError::invalid(format!(
                "topic {:?} is not <namespace>/<name>/things/…",
                reply.topic
            )),
        );
    }
    // As Kanto: refused, before anything else is looked at (the answer then carries the
    // request ID as its correlation-id).
    match correlation {
        Err(m) => return fail(&reply, ThingError::invalid(m)),
        Ok(c) if c.is_empty() => {
            return fail(
                &reply,
                ThingError::invalid("the command has no correlation-id header"),
            )
        }
        Ok(_) => {}
    }
    if ns != thing.namespace || name != thing.name {
        return fail(
            &reply,
            ThingError::not_found(format!("thing with ID = {ns}:{name} is not found")),
        );
    }
    let Some((feature, operation)) = split_inbox_path(&reply.path) else {
        return fail(
            &reply,
            ThingError::invalid(format!(
                "path {:?} is not /features/<feature>/inbox/messages/<operation>",
                reply.path
            )),
        );
    };
    reply.outbox = Some(format!("/features/{feature}/outbox/messages/{operation}"));
    Ok(Request {
        reply,
        feature,
        operation,
        value: envelope.get("value").cloned().unwrap_or(Value::Null),
    })
}

/// `command//<thing>/req/<id>/<op>` → (thing, request ID).
fn split_command_topic(topic: &str) -> Option<(String, String)> {
    let rest = topic.strip_prefix("command//")?;
    let (thing, rest) = rest.split_once("/req/")?;
    let (request_id, _op) = rest.split_once('/')?;
    Some((thing.to_string(), request_id.to_string()))
}

fn split_inbox_path(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/features/")?;
    let (feature, op) = rest.split_once("/inbox/messages/")?;
    (!feature.is_empty() && !op.is_empty() && !op.contains('/'))
        .then(|| (feature.to_string(), op.to_string()))
}

/// The answer to a request: (MQTT topic, envelope), or None when none is wanted (no
/// request ID, or `response-required` false).
pub fn response(
    reply: &ReplyTo,
    result: &Result<Option<Value>, ThingError>,
) -> Option<(String, Value)> {
    if reply.request_id.is_empty() || !reply.wanted || reply.thing_id.is_empty() {
        return None;
    }
    let (status, value) = match result {
        Ok(None) => (204, None),
        Ok(Some(v)) => (200, Some(v.clone())),
        Err(e) => (e.status, Some(e.value())),
    };
    // Ditto's response requires a correlation-id: a command without one (refused) is
    // answered with its request ID.
    let correlation_id = if reply.correlation_id.is_empty() {
        &reply.request_id
    } else {
        &reply.correlation_id
    };
    let mut headers = Map::new();
    headers.insert("correlation-id".into(), json!(correlation_id));
    if status != 204 {
        headers.insert("content-type".into(), json!("application/json"));
    }
    // Once dispatched, answers go to the outbox path; errors before that to the request's.
    let path = reply.outbox.clone().unwrap_or_else(|| reply.path.clone());
    let mut envelope = json!({
        "topic": reply.topic,
        "headers": headers,
        "path": path,
        "status": status,
    });
    if let Some(v) = value {
        envelope["value"] = v;
    }
    let topic = format!(
        "command//{}/res/{}/{status}",
        reply.thing_id, reply.request_id
    );
    Some((topic, envelope))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_identity() -> Identity {
        // The seed's simulated connector message.
        let text = include_str!("../../tests/fixtures/leda-docs/simulate-connectivity.json");
        Identity::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn identity_and_thing() {
        let id = fixture_identity();
        assert_eq!(id.device_id, "<namespace>:<gatewayId>:<deviceId>");
        let t = id.thing();
        assert_eq!(t.namespace, "<namespace>");
        assert_eq!(t.name, "<gatewayId>:<deviceId>:edge:containers");
        assert_eq!(
            t.event_topic(),
            "e/<tenantId>/<namespace>:<gatewayId>:<deviceId>:edge:containers"
        );
        let plain = Identity {
            device_id: "gw".into(),
            tenant_id: "t".into(),
            policy_id: String::new(),
        };
        assert_eq!(
            (
                plain.thing().namespace.as_str(),
                plain.thing().name.as_str()
            ),
            ("gw", "edge:containers")
        );
        for bad in [
            &b"nope"[..],
            br#"{"deviceId":"","tenantId":"t"}"#,
            br#"{"tenantId":"t"}"#,
        ] {
            assert!(Identity::parse(bad).is_err());
        }
        let m = t.modify("/features/X", json!({"a": 1}));
        assert_eq!(
            m["topic"],
            "<namespace>/<gatewayId>:<deviceId>:edge:containers/things/twin/commands/modify"
        );
        assert_eq!(m["headers"]["response-required"], false);
        assert!(m["headers"]["correlation-id"].is_string());
    }

    fn thing() -> Thing {
        Identity {
            device_id: "org.acme:gw".into(),
            tenant_id: "t1".into(),
            policy_id: String::new(),
        }
        .thing()
    }

    #[test]
    fn requests_and_responses() {
        let t = thing();
        let payload = br#"{"topic":"org.acme/gw:edge:containers/things/live/messages/create",
            "headers":{"correlation-id":"c-1","response-required":true,"content-type":"application/json"},
            "path":"/features/ContainerFactory/inbox/messages/create",
            "value":{"imageRef":"x","start":true}}"#;
        let r = parse_request(
            "command//org.acme:gw:edge:containers/req/abc/create",
            payload,
            &t,
        )
        .unwrap();
        assert_eq!(
            (r.feature.as_str(), r.operation.as_str()),
            ("ContainerFactory", "create")
        );
        assert_eq!(r.value["imageRef"], "x");
        let (topic, env) = response(&r.reply, &Ok(Some(json!("id-1")))).unwrap();
        assert_eq!(topic, "command//org.acme:gw:edge:containers/res/abc/200");
        assert_eq!(
            env["path"],
            "/features/ContainerFactory/outbox/messages/create"
        );
        assert_eq!(env["headers"]["correlation-id"], "c-1");
        assert_eq!(env["headers"]["content-type"], "application/json");
        assert_eq!(env["value"], "id-1");
        let (topic, env) = response(&r.reply, &Ok(None)).unwrap();
        assert!(topic.ends_with("/204"));
        assert!(env.get("value").is_none() && env["headers"].get("content-type").is_none());
        let (topic, env) = response(&r.reply, &Err(ThingError::failed("boom"))).unwrap();
        assert!(topic.ends_with("/500"));
        assert_eq!(
            env["value"],
            json!({"error":"messages:execution.failed","status":500,"message":"boom"})
        );

        // No answer without a request ID or with response-required false.
        let quiet = payload.to_vec();
        let quiet = String::from_utf8(quiet)
            .unwrap()
            .replace("\"response-required\":true", "\"response-required\":false");
        let r = parse_request(
            "command//org.acme:gw:edge:containers/req/abc/create",
            quiet.as_bytes(),
            &t,
        )
        .unwrap();
        assert!(response(&r.reply, &Ok(None)).is_none());
        let r = parse_request(
            "command//org.acme:gw:edge:containers/req//create",
            payload,
            &t,
        )
        .unwrap();
        assert!(response(&r.reply, &Ok(None)).is_none());
    }

    #[test]
    fn malformed_requests_are_400_and_other_things_404() {
        let t = thing();
        let topic = "command//org.acme:gw:edge:containers/req/r1/x";
        let live = "org.acme/gw:edge:containers/things/live/messages/b";
        let errors = "org.acme/gw:edge:containers/things/twin/errors";
        let inbox = "/features/A/inbox/messages/b";
        let h = r#""headers":{"correlation-id":"c-9"}"#;
        // (payload, status, message part, the answer's topic and path)
        let cases: Vec<(String, u16, &str, &str, &str)> = vec![
            ("not json".into(), 400, "not valid JSON", errors, "/"),
            ("[1]".into(), 400, "not a Ditto envelope", errors, "/"),
            (
                format!(r#"{{"path":"{inbox}",{h}}}"#),
                400,
                "no topic",
                errors,
                "/",
            ),
            (
                format!(r#"{{"topic":"a","path":"{inbox}",{h}}}"#),
                400,
                "is not <namespace>/<name>/things",
                errors,
                "/",
            ),
            (
                format!(r#"{{"topic":"{live}","headers":7,"path":"{inbox}"}}"#),
                400,
                "headers must be a JSON object",
                live,
                inbox,
            ),
            (
                format!(r#"{{"topic":"{live}","path":"/features/A/outbox",{h}}}"#),
                400,
                "is not /features/<feature>/inbox/messages/<operation>",
                live,
                "/features/A/outbox",
            ),
            (
                format!(r#"{{"topic":"{live}",{h}}}"#),
                400,
                "is not /features/<feature>/inbox/messages/<operation>",
                errors,
                "/",
            ),
            (
                format!(
                    r#"{{"topic":"{live}","headers":{{"correlation-id":"c","response-required":3}},"path":"{inbox}"}}"#
                ),
                400,
                "response-required",
                live,
                inbox,
            ),
            (
                format!(r#"{{"topic":"other/thing/things/live/messages/b","path":"{inbox}",{h}}}"#),
                404,
                "thing with ID = other:thing is not found",
                "other/thing/things/live/messages/b",
                inbox,
            ),
        ];
        for (payload, status, needle, want_topic, want_path) in &cases {
            let (reply, e) = *parse_request(topic, payload.as_bytes(), &t).unwrap_err();
            assert_eq!(e.status, *status, "{payload}");
            assert!(e.message.contains(needle), "{payload}: {}", e.message);
            // Answered even when the headers could not be read, with a topic and a path.
            let (rt, env) = response(&reply, &Err(e.clone())).unwrap();
            assert_eq!(
                rt,
                format!("command//org.acme:gw:edge:containers/res/r1/{status}")
            );
            assert_eq!(env["value"]["status"], *status);
            assert_eq!(env["status"], *status);
            assert_eq!(env["topic"], *want_topic, "{payload}");
            assert_eq!(env["path"], *want_path, "{payload}");
            assert!(env["headers"]["correlation-id"].is_string(), "{payload}");
        }
        // A thing ID the MQTT topic does not split: Kanto's unknown thing.
        let (reply, e) = *parse_request("command//odd/req/r2/x", b"nope", &t).unwrap_err();
        let (_, env) = response(&reply, &Err(e)).unwrap();
        assert_eq!(env["topic"], "unknown/unknown/things/twin/errors");
    }

    /// As Kanto: a command without a correlation-id is refused (and not dispatched); the
    /// answer carries the request ID as its correlation-id, as Ditto's response requires.
    #[test]
    fn a_command_without_correlation_id_is_refused() {
        let t = thing();
        let topic = "command//org.acme:gw:edge:containers/req/r7/start";
        let live = "org.acme/gw:edge:containers/things/live/messages/start";
        let path = "/features/Container:x/inbox/messages/start";
        for headers in [
            "".to_string(),
            r#","headers":null"#.into(),
            r#","headers":{}"#.into(),
            r#","headers":{"correlation-id":""}"#.into(),
            r#","headers":{"correlation-id":4}"#.into(),
            r#","headers":{"response-required":true}"#.into(),
        ] {
            let payload = format!(r#"{{"topic":"{live}","path":"{path}"{headers}}}"#);
            let (reply, e) = *parse_request(topic, payload.as_bytes(), &t).unwrap_err();
            assert_eq!(e.status, 400, "{payload}");
            assert!(
                e.message.contains("correlation-id"),
                "{payload}: {}",
                e.message
            );
            let (rt, env) = response(&reply, &Err(e)).unwrap();
            assert!(rt.ends_with("/res/r7/400"), "{rt}");
            assert_eq!(env["headers"]["correlation-id"], "r7", "{payload}");
            assert_eq!(
                (env["topic"].as_str(), env["path"].as_str()),
                (Some(live), Some(path))
            );
        }
        // One way (response-required false): refused without an answer, as Kanto.
        let payload = format!(
            r#"{{"topic":"{live}","path":"{path}","headers":{{"response-required":false}}}}"#
        );
        let (reply, e) = *parse_request(topic, payload.as_bytes(), &t).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(response(&reply, &Err(e)).is_none());
    }

    #[test]
    fn outbound_messages_carry_a_correlation_id_and_no_null() {
        let t = thing();
        let m = t.modify("/features/A/properties/x", json!(1));
        let d = t.delete("/features/A");
        let o = t.outbox_message("Metrics", "data", json!({"snapshot": []}));
        let ids: Vec<&str> = [&m, &d, &o]
            .iter()
            .map(|e| e["headers"]["correlation-id"].as_str().unwrap())
            .collect();
        assert!(ids.iter().all(|id| id.len() == 36), "{ids:?}");
        assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
        assert_eq!(m["headers"]["response-required"], false);
        assert!(d.get("value").is_none());
        assert_eq!(o["headers"]["content-type"], "application/json");
        // null is not a value in Ditto's envelope: the property is deleted instead.
        let gone = t.modify("/features/A/properties/x", Value::Null);
        assert!(gone["topic"]
            .as_str()
            .unwrap()
            .ends_with("/things/twin/commands/delete"));
        assert_eq!(gone["path"], "/features/A/properties/x");
        assert!(gone.get("value").is_none());
    }

    #[test]
    fn numbers_as_go_writes_them() {
        let cases = [
            (2.0, "2"),
            (0.0, "0"),
            (-3.0, "-3"),
            (12.5, "12.5"),
            (0.0935, "0.0935"),
            (1e300, "1e+300"),
            (9_007_199_254_740_992.0, "9007199254740992"),
            (f64::NAN, "0"),
            (f64::INFINITY, "0"),
        ];
        for (f, want) in cases {
            assert_eq!(go_number(f).to_string(), want, "{f}");
        }
    }
}
