//! The container model ↔ the Ditto `Container:<id>` feature (pure): its `status` property
//! (camelCase config, UPPERCASE enums, retry timeout in seconds) and the operations'
//! arguments. Inbound enum values may be UPPERCASE (the twin's) or Kanto's internal
//! lowercase; any other value is a 400 naming the field (Kanto passes them through, or for
//! mount propagation silently uses rprivate).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::ditto::ThingError;
use crate::manager::{StopOptions, UpdateOptions};
use crate::model::{self, Container, NetworkMode, RestartPolicyType, Status};

pub const CONTAINER_DEFINITION: &str = "com.bosch.iot.suite.edge.containers:Container:1.5.0";

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}
fn is_zero_u16(n: &u16) -> bool {
    *n == 0
}
fn is_zero_f64(n: &f64) -> bool {
    *n == 0.0
}
/// As Go (Kanto) writes a float64: `30`, not `30.0`.
fn go_float<S: serde::Serializer>(n: &f64, s: S) -> Result<S::Ok, S::Error> {
    super::ditto::go_number(*n).serialize(s)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Decryption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_capabilities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<Port>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network_mode: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub open_stdin: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Log>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub destination: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub propagation_mode: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decryption {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Device {
    #[serde(default)]
    pub path_on_host: String,
    #[serde(default)]
    pub path_in_container: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_retry_count: i64,
    /// Seconds.
    #[serde(
        default,
        skip_serializing_if = "is_zero_f64",
        serialize_with = "go_float"
    )]
    pub retry_timeout: f64,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub policy_type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proto: String,
    #[serde(default)]
    pub host_port: u16,
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub host_port_end: u16,
    #[serde(default)]
    pub container_port: u16,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Log {
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub log_type: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub max_files: i64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_size: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root_dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_buffer_size: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory_reservation: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory_swap: String,
}

/// (twin spelling, model spelling) pairs.
const RESTART: [(&str, &str); 4] = [
    ("NO", "no"),
    ("ALWAYS", "always"),
    ("UNLESS_STOPPED", "unless-stopped"),
    ("ON_FAILURE", "on-failure"),
];
const NETWORK: [(&str, &str); 2] = [("BRIDGE", "bridge"), ("HOST", "host")];
const LOG_TYPE: [(&str, &str); 2] = [("JSON_FILE", "json-file"), ("NONE", "none")];
const LOG_MODE: [(&str, &str); 2] = [("BLOCKING", "blocking"), ("NON_BLOCKING", "non-blocking")];
const PROPAGATION: [(&str, &str); 6] = [
    ("RPRIVATE", "rprivate"),
    ("PRIVATE", "private"),
    ("RSHARED", "rshared"),
    ("SHARED", "shared"),
    ("RSLAVE", "rslave"),
    ("SLAVE", "slave"),
];

fn to_twin(table: &[(&'static str, &'static str)], model: &str) -> String {
    table
        .iter()
        .find(|(_, m)| *m == model)
        .map(|(t, _)| t.to_string())
        .unwrap_or_else(|| model.to_string())
}

fn from_twin(
    table: &[(&str, &'static str)],
    field: &str,
    value: &str,
) -> Result<&'static str, ThingError> {
    table
        .iter()
        .find(|(t, m)| *t == value || *m == value)
        .map(|(_, m)| *m)
        .ok_or_else(|| {
            let allowed: Vec<&str> = table.iter().map(|(t, _)| *t).collect();
            ThingError::invalid(format!(
                "{field}: invalid value {value:?}, expected one of {}",
                allowed.join(", ")
            ))
        })
}

/// The twin's state status.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Creating => "CREATING",
        Status::Created => "CREATED",
        Status::Running => "RUNNING",
        Status::Stopped => "STOPPED",
        Status::Paused => "PAUSED",
        Status::Exited => "EXITED",
        Status::Dead => "DEAD",
        Status::Unknown => "UNKNOWN",
    }
}

/// The `status/state` property.
pub fn state(c: &Container) -> Value {
    let s = &c.state;
    let mut v = json!({"status": status_name(s.status)});
    if s.pid > 0 {
        v["pid"] = json!(s.pid);
    }
    if !s.error.is_empty() {
        v["error"] = json!(s.error);
    }
    if s.exit_code != 0 {
        v["exitCode"] = json!(s.exit_code);
    }
    if !s.started_at.is_empty() {
        v["startedAt"] = json!(s.started_at);
    }
    if !s.finished_at.is_empty() {
        v["finishedAt"] = json!(s.finished_at);
    }
    if s.oom_killed {
        v["oomKilled"] = json!(true);
    }
    // leda-cm extension: the health gate's view of this run.
    if let Some(h) = &s.health {
        let mut health = json!({"status": h.status.name()});
        if h.failing_streak > 0 {
            health["failingStreak"] = json!(h.failing_streak);
        }
        if !h.detail.is_empty() {
            health["detail"] = json!(h.detail);
        }
        v["health"] = health;
    }
    v
}

/// The `status/config` property.
pub fn config(c: &Container) -> Config {
    let hc = &c.host_config;
    let rp = &hc.restart_policy;
    let log = &hc.log_config;
    Config {
        domain_name: c.domain_name.clone(),
        host_name: c.host_name.clone(),
        mount_points: c
            .mount_points
            .iter()
            .map(|m| Mount {
                source: m.source.clone(),
                destination: m.destination.clone(),
                propagation_mode: to_twin(&PROPAGATION, &m.propagation_mode),
            })
            .collect(),
        decryption: c.image.decrypt_config.as_ref().map(|d| Decryption {
            keys: d.keys.clone(),
            recipients: d.recipients.clone(),
        }),
        env: c.config.env.clone(),
        cmd: c.config.cmd.clone(),
        devices: hc
            .devices
            .iter()
            .map(|d| Device {
                path_on_host: d.path_on_host.clone(),
                path_in_container: d.path_in_container.clone(),
                cgroup_permissions: d.cgroup_permissions.clone(),
            })
            .collect(),
        privileged: hc.privileged,
        restart_policy: Some(RestartPolicy {
            max_retry_count: rp.maximum_retry_count,
            retry_timeout: rp.retry_timeout as f64 / 1e9,
            policy_type: to_twin(&RESTART, rp.policy_type.as_str()),
        }),
        extra_hosts: hc.extra_hosts.clone(),
        extra_capabilities: if hc.privileged {
            Vec::new()
        } else {
            hc.extra_capabilities.clone()
        },
        port_mappings: hc
            .port_mappings
            .iter()
            .map(|p| Port {
                proto: p.proto.clone(),
                host_port: p.host_port,
                host_port_end: p.host_port_end,
                container_port: p.container_port,
                host_ip: p.host_ip.clone(),
            })
            .collect(),
        network_mode: to_twin(&NETWORK, hc.network_mode.as_str()),
        open_stdin: c.io_config.open_stdin,
        tty: c.io_config.tty,
        log: Some(Log {
            log_type: to_twin(&LOG_TYPE, &log.driver_config.driver_type),
            max_files: log.driver_config.max_files,
            max_size: log.driver_config.max_size.clone(),
            root_dir: log.driver_config.root_dir.clone(),
            mode: to_twin(&LOG_MODE, &log.mode_config.mode),
            max_buffer_size: log.mode_config.max_buffer_size.clone(),
        }),
        resources: hc.resources.as_ref().map(|r| Resources {
            memory: r.memory.clone(),
            memory_reservation: r.memory_reservation.clone(),
            memory_swap: r.memory_swap.clone(),
        }),
    }
}

/// The whole `status` property.
pub fn status(c: &Container) -> Value {
    let mut v = json!({
        "imageRef": c.image.name,
        "config": config(c),
        "createdAt": c.created,
        "state": state(c),
    });
    if !c.container_name.is_empty() {
        v["name"] = json!(c.container_name);
    }
    v
}

/// The whole feature.
pub fn feature(c: &Container) -> Value {
    json!({"definition": [CONTAINER_DEFINITION], "properties": {"status": status(c)}})
}

pub fn feature_id(container_id: &str) -> String {
    format!("Container:{container_id}")
}

/// Reads an operation's argument, naming the part that is wrong.
pub fn arg<T: serde::de::DeserializeOwned>(what: &str, value: &Value) -> Result<T, ThingError> {
    serde_path_to_error::deserialize(value.clone()).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ThingError::invalid(format!("{what}: {}", e.inner()))
        } else {
            ThingError::invalid(format!("{what}: {path}: {}", e.inner()))
        }
    })
}

fn restart_policy(rp: &RestartPolicy) -> Result<model::RestartPolicy, ThingError> {
    let t = from_twin(&RESTART, "restartPolicy.type", &rp.policy_type)?;
    if !rp.retry_timeout.is_finite() || rp.retry_timeout < 0.0 {
        return Err(ThingError::invalid(
            "restartPolicy.retryTimeout: must be a number of seconds ≥ 0",
        ));
    }
    Ok(model::RestartPolicy {
        maximum_retry_count: rp.max_retry_count,
        retry_timeout: (rp.retry_timeout.trunc() * 1e9) as i64,
        policy_type: RestartPolicyType::parse(t).unwrap_or_default(),
    })
}

fn resources(r: &Resources) -> model::Resources {
    model::Resources {
        memory: r.memory.clone(),
        memory_reservation: r.memory_reservation.clone(),
        memory_swap: r.memory_swap.clone(),
    }
}

/// A container to create from `createWithConfig`'s arguments (the manager fills the
/// defaults and validates the rest).
pub fn container_from(image_ref: &str, name: &str, cfg: &Config) -> Result<Container, ThingError> {
    let mut c = Container {
        container_name: name.to_string(),
        domain_name: cfg.domain_name.clone(),
        host_name: cfg.host_name.clone(),
        ..Default::default()
    };
    c.image.name = image_ref.to_string();
    if let Some(d) = &cfg.decryption {
        c.image.decrypt_config = Some(model::DecryptConfig {
            keys: d.keys.clone(),
            recipients: d.recipients.clone(),
        });
    }
    for (i, m) in cfg.mount_points.iter().enumerate() {
        let propagation = if m.propagation_mode.is_empty() {
            "rprivate"
        } else {
            from_twin(
                &PROPAGATION,
                &format!("mountPoints[{i}].propagationMode"),
                &m.propagation_mode,
            )?
        };
        c.mount_points.push(model::MountPoint {
            source: m.source.clone(),
            destination: m.destination.clone(),
            propagation_mode: propagation.into(),
        });
    }
    c.config.env = cfg.env.clone();
    c.config.cmd = cfg.cmd.clone();
    let hc = &mut c.host_config;
    hc.devices = cfg
        .devices
        .iter()
        .map(|d| model::DeviceMapping {
            path_on_host: d.path_on_host.clone(),
            path_in_container: d.path_in_container.clone(),
            cgroup_permissions: d.cgroup_permissions.clone(),
        })
        .collect();
    hc.privileged = cfg.privileged;
    if let Some(rp) = &cfg.restart_policy {
        hc.restart_policy = restart_policy(rp)?;
    }
    hc.extra_hosts = cfg.extra_hosts.clone();
    hc.extra_capabilities = cfg.extra_capabilities.clone();
    hc.port_mappings = cfg
        .port_mappings
        .iter()
        .map(|p| model::PortMapping {
            proto: p.proto.clone(),
            container_port: p.container_port,
            host_ip: p.host_ip.clone(),
            host_port: p.host_port,
            host_port_end: p.host_port_end,
        })
        .collect();
    if !cfg.network_mode.is_empty() {
        hc.network_mode = match from_twin(&NETWORK, "networkMode", &cfg.network_mode)? {
            "host" => NetworkMode::Host,
            _ => NetworkMode::Bridge,
        };
    }
    if let Some(l) = &cfg.log {
        let d = &mut hc.log_config.driver_config;
        if !l.log_type.is_empty() {
            d.driver_type = from_twin(&LOG_TYPE, "log.type", &l.log_type)?.into();
        }
        d.max_files = l.max_files;
        d.max_size = l.max_size.clone();
        d.root_dir = l.root_dir.clone();
        let m = &mut hc.log_config.mode_config;
        if !l.mode.is_empty() {
            m.mode = from_twin(&LOG_MODE, "log.mode", &l.mode)?.into();
        }
        m.max_buffer_size = l.max_buffer_size.clone();
    }
    hc.resources = cfg.resources.as_ref().map(resources);
    c.io_config.open_stdin = cfg.open_stdin;
    c.io_config.tty = cfg.tty;
    Ok(c)
}

/// `update`'s argument.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Update {
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default)]
    pub resources: Option<Resources>,
}

pub fn update_options(u: &Update) -> Result<UpdateOptions, ThingError> {
    Ok(UpdateOptions {
        restart_policy: u.restart_policy.as_ref().map(restart_policy).transpose()?,
        resources: u.resources.as_ref().map(resources),
    })
}

/// `stopWithOptions`' argument: timeout in seconds, a signal name or number, force.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    #[serde(default)]
    pub timeout: i64,
    #[serde(default)]
    pub force: bool,
    #[serde(default)]
    pub signal: String,
}

/// The timeout is at most a day (`model::validate::MAX_STOP_TIMEOUT_SECS`).
pub fn stop_options(s: &Stop) -> Result<StopOptions, ThingError> {
    let timeout = crate::model::validate::stop_timeout(s.timeout)
        .map_err(|e| ThingError::invalid(format!("stopWithOptions: {e}")))?;
    if !s.signal.is_empty() && crate::manager::parse_signal(&s.signal).is_none() {
        return Err(ThingError::invalid(format!(
            "stopWithOptions: signal: unknown signal {:?}",
            s.signal
        )));
    }
    Ok(StopOptions {
        timeout,
        signal: (!s.signal.is_empty()).then(|| s.signal.clone()),
        force: s.force,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::defaults::fill_defaults;

    /// The seed's Container feature example, without its placeholders.
    fn fixture() -> Value {
        let v: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/container-management-detail.json"
        ))
        .unwrap();
        v["value"].clone()
    }

    #[test]
    fn the_fixture_config_round_trips_through_the_model() {
        let f = fixture();
        let status = &f["properties"]["status"];
        let cfg: Config = arg("config", &status["config"]).unwrap();
        let mut c = container_from(
            status["imageRef"].as_str().unwrap(),
            status["name"].as_str().unwrap(),
            &cfg,
        )
        .unwrap();
        fill_defaults(&mut c, || "54274233".into());
        assert_eq!(
            c.host_config.restart_policy.policy_type,
            RestartPolicyType::UnlessStopped
        );
        assert_eq!(c.host_config.port_mappings[0].host_port, 30051);
        assert_eq!(c.host_config.log_config.driver_config.max_size, "1M");
        // Out again: the fixture's config exactly (maxRetryCount 0 and no resources omitted).
        let out = serde_json::to_value(config(&c)).unwrap();
        assert_eq!(out, status["config"], "{out:#}");
        let full = feature(&c);
        assert_eq!(full["definition"], f["definition"]);
        assert_eq!(full["properties"]["status"]["name"], "seatservice-example");
    }

    #[test]
    fn state_shapes() {
        let mut c = Container::default();
        c.state = c.state.running(13627, "2023-02-02T09:51:08.049572297Z");
        let s = state(&c);
        assert_eq!(
            s,
            json!({"status":"RUNNING","pid":13627,"startedAt":"2023-02-02T09:51:08.049572297Z"})
        );
        let created = Container::default();
        assert_eq!(state(&created), json!({"status":"CREATED"}));
        // The health gate's view (leda-cm extension), only what is set.
        for (health, want) in [
            (
                crate::model::Health {
                    status: crate::model::HealthStatus::Healthy,
                    failing_streak: 0,
                    detail: String::new(),
                },
                json!({"status": "healthy"}),
            ),
            (
                crate::model::Health {
                    status: crate::model::HealthStatus::Starting,
                    failing_streak: 1,
                    detail: "exited with code 1".into(),
                },
                json!({"status": "starting", "failingStreak": 1, "detail": "exited with code 1"}),
            ),
        ] {
            c.state.health = Some(health);
            assert_eq!(state(&c)["health"], want);
            assert_eq!(state(&c)["status"], "RUNNING");
        }
    }

    /// Kanto's retryTimeout is a float64 that Go writes without a fraction when whole.
    #[test]
    fn retry_timeout_is_written_as_go_writes_it() {
        for (ns, want) in [
            (30_000_000_000_i64, "30"),
            (60_000_000_000, "60"),
            (1_500_000_000, "1.5"),
        ] {
            let mut c = Container::default();
            c.host_config.restart_policy.retry_timeout = ns;
            let v = serde_json::to_value(config(&c)).unwrap();
            assert_eq!(v["restartPolicy"]["retryTimeout"].to_string(), want);
        }
    }

    #[test]
    fn bad_values_name_the_field() {
        let cases = [
            (
                json!({"restartPolicy": {"type": "SOMETIMES"}}),
                "restartPolicy.type: invalid value \"SOMETIMES\"",
            ),
            (
                json!({"networkMode": "overlay"}),
                "networkMode: invalid value \"overlay\"",
            ),
            (
                json!({"log": {"type": "syslog"}}),
                "log.type: invalid value \"syslog\"",
            ),
            (
                json!({"mountPoints": [{"source": "/a", "destination": "/b", "propagationMode": "weird"}]}),
                "mountPoints[0].propagationMode",
            ),
        ];
        for (cfg, needle) in cases {
            let cfg: Config = arg("config", &cfg).unwrap();
            let e = container_from("img", "n", &cfg).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(needle), "{}", e.message);
        }
        // Shape errors name the path.
        let e = arg::<Config>("config", &json!({"env": "A=1"})).unwrap_err();
        assert!(
            e.message.starts_with("config: env: invalid type"),
            "{}",
            e.message
        );
        let e = arg::<Config>("config", &json!({"portMappings": [{"hostPort": "x"}]})).unwrap_err();
        assert!(
            e.message.contains("portMappings[0].hostPort"),
            "{}",
            e.message
        );
        let e = arg::<Config>("config", &json!({"bogus": 1})).unwrap_err();
        assert!(e.message.contains("unknown field `bogus`"), "{}", e.message);
        // Lowercase internal spellings are accepted as Kanto does.
        let cfg: Config = arg("config", &json!({"restartPolicy": {"type": "on-failure", "maxRetryCount": 3, "retryTimeout": 10}})).unwrap();
        let c = container_from("img", "n", &cfg).unwrap();
        assert_eq!(c.host_config.restart_policy.retry_timeout, 10_000_000_000);
        assert_eq!(c.host_config.restart_policy.maximum_retry_count, 3);
    }

    #[test]
    fn operation_arguments() {
        let s: Stop = arg(
            "stopWithOptions",
            &json!({"timeout": 5, "signal": "SIGINT"}),
        )
        .unwrap();
        let o = stop_options(&s).unwrap();
        assert_eq!(o.timeout, Some(std::time::Duration::from_secs(5)));
        assert_eq!(o.signal.as_deref(), Some("SIGINT"));
        assert!(stop_options(&Stop {
            signal: "SIGNOPE".into(),
            ..Default::default()
        })
        .is_err());
        let u: Update = arg(
            "update",
            &json!({"restartPolicy": {"type": "ALWAYS"}, "resources": {"memory": "200M"}}),
        )
        .unwrap();
        let o = update_options(&u).unwrap();
        assert_eq!(
            o.restart_policy.unwrap().policy_type,
            RestartPolicyType::Always
        );
        assert_eq!(o.resources.unwrap().memory, "200M");
    }

    /// What `createWithConfig` and `update` end in before containerd: the manager's defaults
    /// and validation.
    fn as_created(cfg: &Value) -> Result<Container, String> {
        let cfg: Config = arg("config", cfg).map_err(|e| e.message)?;
        let mut c = container_from("busybox", "poison", &cfg).map_err(|e| e.message)?;
        fill_defaults(&mut c, || "poison-id".into());
        crate::model::validate::validate(&c).map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// Extreme values in every numeric field of a Container feature's config (create,
    /// createWithConfig, update) and of stopWithOptions: a 400 naming the field, or a
    /// container within the documented bounds; never a panic.
    #[test]
    fn extreme_numbers_are_refused_or_bounded() {
        use crate::model::poison;
        let mut base = fixture()["properties"]["status"]["config"].clone();
        base["restartPolicy"]["type"] = "ON_FAILURE".into();
        base["log"]["mode"] = "NON_BLOCKING".into();
        base["log"]["maxBufferSize"] = "1M".into();
        let numbers = [
            "/restartPolicy/maxRetryCount",
            "/restartPolicy/retryTimeout",
            "/portMappings/0/hostPort",
            "/portMappings/0/hostPortEnd",
            "/portMappings/0/containerPort",
            "/log/maxFiles",
        ];
        let texts = [
            "/log/maxSize",
            "/log/maxBufferSize",
            "/resources/memory",
            "/resources/memoryReservation",
            "/resources/memorySwap",
        ];
        let mut cases = Vec::new();
        for pointer in numbers {
            for raw in poison::JSON_NUMBERS {
                cases.push((
                    format!("{pointer} = {raw}"),
                    poison::with_raw(&base, pointer, raw),
                ));
            }
        }
        for pointer in texts {
            for text in poison::TEXT_NUMBERS {
                cases.push((
                    format!("{pointer} = {text:?}"),
                    poison::with_text(&base, pointer, text),
                ));
            }
        }
        let (mut accepted, mut refused) = (0, 0);
        for (label, text) in &cases {
            // 1e400 is refused by the JSON parser itself, before any field is read.
            let Ok(cfg) = serde_json::from_str::<Value>(text) else {
                refused += 1;
                continue;
            };
            match as_created(&cfg) {
                Ok(c) => {
                    accepted += 1;
                    poison::check_accepted(&c, label);
                }
                Err(_) => refused += 1,
            }
            // update: the restart policy and resources of the same config.
            let u = json!({"restartPolicy": cfg["restartPolicy"], "resources": cfg.get("resources").cloned().unwrap_or(json!({}))});
            if let Ok(u) = arg::<Update>("update", &u) {
                if let Ok(o) = update_options(&u) {
                    let mut c = as_created(&base).unwrap();
                    if let Some(p) = o.restart_policy {
                        c.host_config.restart_policy = p;
                    }
                    if let Some(r) = o.resources {
                        c.host_config.resources = Some(r);
                        fill_defaults(&mut c, String::new);
                    }
                    if crate::model::validate::validate(&c).is_ok() {
                        poison::check_accepted(&c, label);
                    }
                }
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
        for (cfg, needle) in [
            (
                json!({"restartPolicy": {"type": "ON_FAILURE", "retryTimeout": 1e19}}),
                "more than a day",
            ),
            (
                json!({"restartPolicy": {"type": "ON_FAILURE", "retryTimeout": -0.5}}),
                "≥ 0",
            ),
            (
                json!({"restartPolicy": {"type": "ON_FAILURE", "maxRetryCount": -1}}),
                "cannot be negative",
            ),
            (json!({"log": {"maxFiles": 1001}}), "more than 1000"),
            (json!({"log": {"maxFiles": 1.5}}), "log.maxFiles"),
            (
                json!({"portMappings": [{"hostPort": 65536, "containerPort": 80}]}),
                "portMappings[0].hostPort",
            ),
            (
                json!({"portMappings": [{"hostPort": -1, "containerPort": 80}]}),
                "portMappings[0].hostPort",
            ),
        ] {
            let e = as_created(&cfg).unwrap_err();
            assert!(e.contains(needle), "{cfg}: {e}");
        }
        // -0.0 seconds is zero.
        let c = as_created(&json!({"restartPolicy": {"type": "ON_FAILURE", "retryTimeout": -0.0}}))
            .unwrap();
        assert_eq!(c.host_config.restart_policy.retry_timeout, 0);

        // stopWithOptions: ≤ a day, ≥ 0, an integer.
        for raw in poison::JSON_NUMBERS {
            let Ok(v) = serde_json::from_str::<Value>(&format!("{{\"timeout\": {raw}}}")) else {
                continue;
            };
            if let Ok(s) = arg::<Stop>("stopWithOptions", &v) {
                if let Ok(o) = stop_options(&s) {
                    assert!(
                        o.timeout
                            .map_or(true, |t| t <= std::time::Duration::from_secs(86_400)),
                        "{raw}: {o:?}"
                    );
                }
            }
        }
        for (timeout, ok) in [
            (0, true),
            (86_400, true),
            (86_401, false),
            (i64::MAX, false),
            (-1, false),
            (i64::MIN, false),
        ] {
            let r = stop_options(&Stop {
                timeout,
                ..Default::default()
            });
            assert_eq!(r.is_ok(), ok, "{timeout}: {r:?}");
        }
        let e = stop_options(&Stop {
            timeout: i64::MAX,
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("at most 86400 seconds"), "{}", e.message);
    }
}
