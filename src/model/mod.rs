//! The container model: Kanto's internal JSON format (pure data, no I/O).
//!
//! This is what leda-cm persists per container, what `kanto-cm get` prints, what `create -f`
//! and the deployment manifests contain. Field names, nesting and value encodings follow
//! Kanto's Go types (`containerm/containers/types`): e.g. `state.status` is Kanto's integer
//! enum, `restart_policy.retry_timeout` is in nanoseconds. Kanto writes Go nil slices and
//! pointers as `null`; every such field here reads `null` as empty. leda-cm's own additions
//! live under the `leda_cm` key, which Kanto's readers ignore.

pub mod defaults;
pub mod parse;
#[cfg(test)]
pub(crate) mod poison;
pub mod policy;
pub mod reconcile;
pub mod restart;
pub mod size;
pub mod validate;

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

/// Version of the `leda_cm` extension block (bumped on incompatible changes).
pub const SCHEMA_VERSION: u32 = 1;

/// Reads `null` (and a missing key, with `#[serde(default)]`) as the type's default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A container description that is not valid JSON for [`Container`]: the field's path (empty
/// for the document itself) and serde's message with its line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct JsonError {
    pub path: String,
    pub message: String,
}

/// Parses a container's JSON: a record, a manifest, an artifact, `kanto-cm create -f`.
///
/// Every production parse of a [`Container`] goes through here, so the whole tree of its
/// `Deserialize` code exists once in the binary (each deserializer type serde is driven
/// with instantiates all of it again: ~40 KB a copy, issue 19).
pub fn container_from_json(bytes: &[u8]) -> Result<Container, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<Container, _> = serde_path_to_error::deserialize(&mut de);
    match parsed {
        Ok(c) => de.end().map(|()| c).map_err(|e| JsonError {
            path: String::new(),
            message: e.to_string(),
        }),
        Err(e) => {
            let path = e.path().to_string();
            Err(JsonError {
                path: if path == "." || path == "?" {
                    String::new()
                } else {
                    path
                },
                message: e.into_inner().to_string(),
            })
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Container {
    #[serde(default, deserialize_with = "null_default")]
    pub container_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub container_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub image: Image,
    #[serde(default, deserialize_with = "null_default")]
    pub domain_name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub host_name: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub resolv_conf_path: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub hosts_path: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub hostname_path: String,
    #[serde(default, deserialize_with = "null_default")]
    pub mount_points: Vec<MountPoint>,
    #[serde(default, deserialize_with = "null_default")]
    pub hooks: Vec<Hook>,
    #[serde(default, deserialize_with = "null_default")]
    pub config: ContainerConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub host_config: HostConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub io_config: IoConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub network_settings: NetworkSettings,
    #[serde(default, deserialize_with = "null_default")]
    pub state: State,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub created: String,
    #[serde(default, deserialize_with = "null_default")]
    pub restart_count: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub manually_stopped: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub started_successfully_before: bool,
    /// leda-cm's additions (absent in Kanto's files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leda_cm: Option<Extras>,
}

/// What leda-cm records beyond Kanto's format.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Extras {
    pub schema_version: u32,
    /// The manifest (or index) digest the image reference resolved to when created.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_digest: String,
    /// Deployed from a manifest marked as a system container: never destroyed by a desired
    /// state, its image never garbage-collected.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub system: bool,
    /// Where its json-file log is written.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub log_dir: String,
    /// Its place on the bridge while its task runs (what the CNI plugins gave it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<Attachment>,
    /// Its removal began (the intent, persisted before anything is taken down): a crash
    /// mid-removal is finished at the next start, never undone.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub removing: bool,
    /// What the update agent waits for before it reports the container activated (a desired
    /// state's `healthUptime`); a gate that fails rolls the update back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_gate: Option<HealthGate>,
    /// Its health gate passed (persisted before the activation is reported): until then,
    /// an update that a restart interrupted is rolled back.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub health_passed: bool,
}

/// The update agent's health gate of a container (issue 20).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthGate {
    /// It must stay running, unrestarted, this long after its start (milliseconds).
    #[serde(default)]
    pub uptime_ms: u64,
    /// A command run in the container (`healthCmd`) that must exit 0 once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
    /// Between two runs of the command (`healthInterval`).
    #[serde(default = "default_health_interval")]
    pub interval_ms: u64,
    /// A run that takes longer fails (`healthTimeout`).
    #[serde(default = "default_health_timeout")]
    pub timeout_ms: u64,
    /// Failed runs in a row that fail the gate (`healthRetries`).
    #[serde(default = "default_health_retries")]
    pub retries: u32,
}

pub const HEALTH_INTERVAL_MS: u64 = 1000;
pub const HEALTH_TIMEOUT_MS: u64 = 5000;
pub const HEALTH_RETRIES: u32 = 3;

fn default_health_interval() -> u64 {
    HEALTH_INTERVAL_MS
}
fn default_health_timeout() -> u64 {
    HEALTH_TIMEOUT_MS
}
fn default_health_retries() -> u32 {
    HEALTH_RETRIES
}

impl Default for HealthGate {
    fn default() -> Self {
        HealthGate {
            uptime_ms: 0,
            cmd: Vec::new(),
            interval_ms: HEALTH_INTERVAL_MS,
            timeout_ms: HEALTH_TIMEOUT_MS,
            retries: HEALTH_RETRIES,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decrypt_config: Option<DecryptConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecryptConfig {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub keys: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    #[serde(default, deserialize_with = "null_default")]
    pub destination: String,
    #[serde(default, deserialize_with = "null_default")]
    pub source: String,
    #[serde(default, deserialize_with = "null_default")]
    pub propagation_mode: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    #[serde(default, deserialize_with = "null_default")]
    pub path: String,
    #[serde(default, deserialize_with = "null_default")]
    pub args: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub timeout: i64,
    /// 0 prestart, 1 poststart, 2 poststop (Kanto's enum).
    #[serde(default, rename = "type", deserialize_with = "null_default")]
    pub hook_type: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub env: Vec<String>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_default"
    )]
    pub cmd: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    Bridge,
    Host,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::Host => "host",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub devices: Vec<DeviceMapping>,
    #[serde(default, deserialize_with = "network_mode")]
    pub network_mode: NetworkMode,
    #[serde(default, deserialize_with = "null_default")]
    pub privileged: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub restart_policy: RestartPolicy,
    #[serde(default, deserialize_with = "null_default")]
    pub runtime: String,
    #[serde(default, deserialize_with = "null_default")]
    pub extra_hosts: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub extra_capabilities: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, deserialize_with = "null_default")]
    pub log_config: LogConfig,
    #[serde(default)]
    pub resources: Option<Resources>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            devices: Vec::new(),
            network_mode: NetworkMode::Bridge,
            privileged: false,
            restart_policy: RestartPolicy::default(),
            runtime: defaults::RUNTIME.into(),
            extra_hosts: Vec::new(),
            extra_capabilities: Vec::new(),
            port_mappings: Vec::new(),
            log_config: LogConfig::default(),
            resources: None,
        }
    }
}

/// `""` and `null` mean the default (bridge), as in Kanto; other unknown values are errors.
fn network_mode<'de, D: Deserializer<'de>>(d: D) -> Result<NetworkMode, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") | Some("bridge") => Ok(NetworkMode::Bridge),
        Some("host") => Ok(NetworkMode::Host),
        Some(other) => Err(de::Error::custom(format!(
            "unsupported network mode {other}, expected bridge or host"
        ))),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceMapping {
    #[serde(default, deserialize_with = "null_default")]
    pub path_on_host: String,
    #[serde(default, deserialize_with = "null_default")]
    pub path_in_container: String,
    #[serde(default, deserialize_with = "null_default")]
    pub cgroup_permissions: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicyType {
    #[serde(rename = "no")]
    No,
    #[serde(rename = "always")]
    Always,
    #[default]
    #[serde(rename = "unless-stopped")]
    UnlessStopped,
    #[serde(rename = "on-failure")]
    OnFailure,
}

impl RestartPolicyType {
    pub fn parse(text: &str) -> Option<RestartPolicyType> {
        Some(match text {
            "no" => RestartPolicyType::No,
            "always" => RestartPolicyType::Always,
            "unless-stopped" => RestartPolicyType::UnlessStopped,
            "on-failure" => RestartPolicyType::OnFailure,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicyType::No => "no",
            RestartPolicyType::Always => "always",
            RestartPolicyType::UnlessStopped => "unless-stopped",
            RestartPolicyType::OnFailure => "on-failure",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    #[serde(default, deserialize_with = "null_default")]
    pub maximum_retry_count: i64,
    /// Nanoseconds, as Kanto persists a Go `time.Duration`; a Go duration string such as
    /// `"30s"` is accepted too.
    #[serde(default, deserialize_with = "nanos")]
    pub retry_timeout: i64,
    #[serde(rename = "type", default, deserialize_with = "restart_type")]
    pub policy_type: RestartPolicyType,
}

fn restart_type<'de, D: Deserializer<'de>>(d: D) -> Result<RestartPolicyType, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref() {
        None | Some("") => Ok(RestartPolicyType::default()),
        Some(t) => RestartPolicyType::parse(t).ok_or_else(|| {
            de::Error::custom(format!(
                "unsupported restart policy type {t}, expected no, always, unless-stopped or on-failure"
            ))
        }),
    }
}

fn nanos<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Int(i64),
        Float(f64),
        Text(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(0),
        Some(N::Int(n)) => Ok(n),
        Some(N::Float(f)) => Ok(f as i64),
        Some(N::Text(t)) => crate::duration::parse_go_duration(&t)
            .map(|d| d.as_nanos().min(i64::MAX as u128) as i64)
            .map_err(de::Error::custom),
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// Kanto reads `proto`; Leda's manifests write `protocol` (Kanto then drops it). Both work.
    #[serde(default, alias = "protocol", deserialize_with = "null_default")]
    pub proto: String,
    #[serde(default, deserialize_with = "null_default")]
    pub container_port: u16,
    #[serde(default, deserialize_with = "null_default")]
    pub host_ip: String,
    #[serde(default, deserialize_with = "null_default")]
    pub host_port: u16,
    #[serde(default, deserialize_with = "null_default")]
    pub host_port_end: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub driver_config: LogDriverConfig,
    #[serde(default, deserialize_with = "null_default")]
    pub mode_config: LogModeConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogDriverConfig {
    /// `json-file` (default) or `none`.
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub driver_type: String,
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "null_default"
    )]
    pub max_files: i64,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub max_size: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub root_dir: String,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogModeConfig {
    /// `blocking` (default) or `non-blocking`.
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub mode: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub max_buffer_size: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub memory: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub memory_reservation: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub memory_swap: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoConfig {
    #[serde(default, deserialize_with = "null_default")]
    pub attach_stderr: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub attach_stdin: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub attach_stdout: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub open_stdin: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub stdin_once: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub tty: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSettings {
    #[serde(default, deserialize_with = "null_default")]
    pub networks: std::collections::BTreeMap<String, EndpointSettings>,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub sandbox_id: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub sandbox_key: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub network_controller_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSettings {
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub gateway: String,
    #[serde(default, deserialize_with = "null_default")]
    pub ip_address: String,
    #[serde(default, deserialize_with = "null_default")]
    pub mac_address: String,
    #[serde(
        default,
        skip_serializing_if = "String::is_empty",
        deserialize_with = "null_default"
    )]
    pub network_id: String,
}

/// Kanto's status enum, persisted as its integer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Creating,
    #[default]
    Created,
    Running,
    Stopped,
    Paused,
    Exited,
    Dead,
    Unknown,
}

impl Status {
    const ALL: [Status; 8] = [
        Status::Creating,
        Status::Created,
        Status::Running,
        Status::Stopped,
        Status::Paused,
        Status::Exited,
        Status::Dead,
        Status::Unknown,
    ];

    pub fn code(self) -> i64 {
        Status::ALL.iter().position(|s| *s == self).unwrap_or(7) as i64
    }

    pub fn from_code(code: i64) -> Status {
        usize::try_from(code)
            .ok()
            .and_then(|i| Status::ALL.get(i).copied())
            .unwrap_or(Status::Unknown)
    }

    /// As Kanto prints it (`Running`, `Exited`, …).
    pub fn name(self) -> &'static str {
        match self {
            Status::Creating => "Creating",
            Status::Created => "Created",
            Status::Running => "Running",
            Status::Stopped => "Stopped",
            Status::Paused => "Paused",
            Status::Exited => "Exited",
            Status::Dead => "Dead",
            Status::Unknown => "Unknown",
        }
    }

    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL
            .iter()
            .copied()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Status {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum S {
            Code(i64),
            Name(String),
        }
        Ok(match Option::<S>::deserialize(d)? {
            None => Status::default(),
            Some(S::Code(c)) => Status::from_code(c),
            Some(S::Name(n)) => Status::parse(&n).unwrap_or(Status::Unknown),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    #[serde(default, deserialize_with = "null_default")]
    pub pid: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub started_at: String,
    #[serde(default, deserialize_with = "null_default")]
    pub error: String,
    #[serde(default, deserialize_with = "null_default")]
    pub exit_code: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub finished_at: String,
    #[serde(default, deserialize_with = "null_default")]
    pub exited: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub dead: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub restarting: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub paused: bool,
    #[serde(default, deserialize_with = "null_default")]
    pub running: bool,
    #[serde(rename = "oomKilled", default, deserialize_with = "null_default")]
    pub oom_killed: bool,
    #[serde(default)]
    pub status: Status,
    /// What its health gate found during this run (leda-cm extension; none without a gate,
    /// and cleared at every start: a verdict holds for the run it was checked in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// The health of a container's run as its health gate saw it (issue 20), with Docker's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: HealthStatus,
    /// Runs of the health command that failed in a row.
    #[serde(default, skip_serializing_if = "no_failures")]
    pub failing_streak: u32,
    /// Why it is unhealthy, or the last failed run while starting.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

fn no_failures(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The gate is still waiting.
    Starting,
    /// The gate passed.
    Healthy,
    /// The gate failed.
    Unhealthy,
}

impl HealthStatus {
    pub fn name(self) -> &'static str {
        match self {
            HealthStatus::Starting => "starting",
            HealthStatus::Healthy => "healthy",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }

    pub fn parse(s: &str) -> Option<HealthStatus> {
        [
            HealthStatus::Starting,
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
        ]
        .into_iter()
        .find(|h| h.name() == s)
    }
}

impl Default for State {
    fn default() -> Self {
        State {
            pid: -1,
            started_at: String::new(),
            error: String::new(),
            exit_code: 0,
            finished_at: String::new(),
            exited: false,
            dead: false,
            restarting: false,
            paused: false,
            running: false,
            oom_killed: false,
            status: Status::Created,
            health: None,
        }
    }
}

impl State {
    /// The flags follow the status, as Kanto's `SetContainerStatus*` helpers keep them.
    fn with_status(mut self, status: Status) -> State {
        self.status = status;
        self.running = status == Status::Running;
        self.paused = status == Status::Paused;
        self.exited = status == Status::Exited;
        self.dead = status == Status::Dead;
        self.restarting = false;
        self
    }

    pub fn running(&self, pid: u32, now: &str) -> State {
        let mut s = self.clone().with_status(Status::Running);
        s.pid = pid as i64;
        s.started_at = now.to_string();
        s.exit_code = 0;
        s.error.clear();
        s.oom_killed = false;
        s.health = None;
        s
    }

    /// Stopped on request (stop, or the daemon stopped it).
    pub fn stopped(&self, exit_code: i64, now: &str) -> State {
        let mut s = self.clone().with_status(Status::Stopped);
        s.pid = -1;
        s.exit_code = exit_code;
        s.finished_at = now.to_string();
        s
    }

    /// Exited on its own.
    pub fn exited(&self, exit_code: i64, oom_killed: bool, at: &str) -> State {
        let mut s = self.clone().with_status(Status::Exited);
        s.pid = -1;
        s.exit_code = exit_code;
        s.finished_at = at.to_string();
        if oom_killed {
            s.oom_killed = true;
            if s.error.is_empty() {
                s.error = "OOM Killed".into();
            }
        }
        s
    }

    pub fn paused(&self) -> State {
        self.clone().with_status(Status::Paused)
    }

    pub fn unpaused(&self) -> State {
        self.clone().with_status(Status::Running)
    }

    pub fn dead(&self, error: &str) -> State {
        let mut s = self.clone().with_status(Status::Dead);
        s.pid = -1;
        s.error = error.to_string();
        s
    }

    /// Read back after leda-cm restarted: a gate that was still waiting (`starting`) has
    /// nobody to finish it (the update agent does not run a gate again), so that health goes.
    pub fn reloaded(mut self) -> State {
        if self
            .health
            .as_ref()
            .is_some_and(|h| h.status == HealthStatus::Starting)
        {
            self.health = None;
        }
        self
    }

    pub fn restarting(&self) -> State {
        let mut s = self.clone();
        s.restarting = true;
        s
    }
}

impl Container {
    pub fn extras(&self) -> Extras {
        self.leda_cm.clone().unwrap_or_default()
    }

    /// Drops what only leda-cm itself records (its bridge attachment with addresses and
    /// ports, the log dir, the image digest, the schema version, a passed health gate) from a
    /// container that came from outside (a manifest, an installed artifact); only the
    /// `system` flag and a `health_gate` are asked for.
    pub fn keep_requested_extras(&mut self) {
        let system = self.leda_cm.as_ref().is_some_and(|x| x.system);
        let health_gate = self.leda_cm.as_ref().and_then(|x| x.health_gate.clone());
        self.leda_cm = (system || health_gate.is_some()).then(|| Extras {
            system,
            health_gate,
            ..Default::default()
        });
    }

    pub fn extras_mut(&mut self) -> &mut Extras {
        self.leda_cm.get_or_insert_with(|| Extras {
            schema_version: SCHEMA_VERSION,
            ..Default::default()
        })
    }

    /// Running or paused: it has a live task.
    pub fn is_active(&self) -> bool {
        self.state.running || self.state.paused
    }
}

/// Current time as Kanto writes it: RFC 3339 with nanoseconds, UTC.
pub fn timestamp(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Leda's first-boot manifests (tests/fixtures), for the table-driven tests.
#[cfg(test)]
pub(crate) const MANIFESTS: &[(&str, &str)] = &[
    (
        "core_databroker.json",
        include_str!("../../tests/fixtures/meta-leda-manifests/core_databroker.json"),
    ),
    (
        "core_sua.json",
        include_str!("../../tests/fixtures/meta-leda-manifests/core_sua.json"),
    ),
    (
        "core_cloudconnector.json.disabled",
        include_str!("../../tests/fixtures/meta-leda-manifests/core_cloudconnector.json.disabled"),
    ),
    (
        "example_feedercan.json",
        include_str!("../../tests/fixtures/meta-leda-manifests/example_feedercan.json"),
    ),
    (
        "example_hvac.json",
        include_str!("../../tests/fixtures/meta-leda-manifests/example_hvac.json"),
    ),
    (
        "example_node-red.json",
        include_str!("../../tests/fixtures/meta-leda-manifests/example_node-red.json"),
    ),
    (
        "example_seatservice.json",
        include_str!("../../tests/fixtures/meta-leda-manifests/example_seatservice.json"),
    ),
];

#[cfg(test)]
pub(crate) fn tests_manifests() -> Vec<Container> {
    MANIFESTS
        .iter()
        .map(|(name, text)| serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leda_manifests_parse_and_keep_their_port_protocols() {
        for (name, text) in MANIFESTS {
            let c: Container = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!c.image.name.is_empty(), "{name}");
            for p in &c.host_config.port_mappings {
                assert!(
                    p.proto == "tcp" || p.proto == "udp",
                    "{name}: protocol lost: {p:?}"
                );
            }
        }
        let db: Container = serde_json::from_str(MANIFESTS[0].1).unwrap();
        assert_eq!(db.container_name, "databroker");
        assert_eq!(db.host_config.port_mappings[0].host_port, 30555);
        assert_eq!(db.host_config.port_mappings[0].host_ip, "localhost");
        assert_eq!(
            db.host_config.restart_policy.policy_type,
            RestartPolicyType::UnlessStopped
        );
        assert_eq!(db.host_config.log_config.driver_config.max_size, "1M");
        assert_eq!(db.host_config.resources, None);
    }

    #[test]
    fn status_is_kanto_integer_and_reads_names() {
        let s = State::default().running(42, "t");
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["status"], 2);
        assert_eq!(v["running"], true);
        assert_eq!(v["oomKilled"], false);
        let back: State = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
        let named: State = serde_json::from_str(r#"{"status":"Exited"}"#).unwrap();
        assert_eq!(named.status, Status::Exited);
        for code in 0..8 {
            assert_eq!(Status::from_code(code).code(), code);
        }
        assert_eq!(Status::from_code(99), Status::Unknown);
    }

    #[test]
    fn state_transitions_keep_flags_consistent() {
        let s = State::default();
        assert_eq!((s.status, s.pid), (Status::Created, -1));
        let r = s.running(7, "t1");
        assert!(r.running && !r.paused && !r.exited && r.pid == 7);
        let p = r.paused();
        assert!(p.paused && !p.running && p.pid == 7);
        let e = p.unpaused().exited(137, true, "t2");
        assert!(e.exited && !e.running && e.oom_killed && e.pid == -1);
        assert_eq!(e.error, "OOM Killed");
        assert_eq!(e.finished_at, "t2");
        let again = e.running(8, "t3");
        assert!(!again.oom_killed && again.error.is_empty() && again.exit_code == 0);
        let st = again.stopped(0, "t4");
        assert_eq!(st.status, Status::Stopped);
        assert!(!st.running);
    }

    /// A run's health stays with it through pause and exit, is persisted as
    /// `state.health`, and is cleared when the next run starts.
    #[test]
    fn health_belongs_to_the_run() {
        let mut r = State::default().running(7, "t1");
        r.health = Some(Health {
            status: HealthStatus::Unhealthy,
            failing_streak: 3,
            detail: "why".into(),
        });
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(
            v["health"],
            serde_json::json!({"status": "unhealthy", "failing_streak": 3, "detail": "why"})
        );
        assert_eq!(serde_json::from_value::<State>(v).unwrap(), r);
        let e = r.paused().unpaused().exited(1, false, "t2");
        assert_eq!(e.health, r.health);
        assert_eq!(
            e.clone().reloaded(),
            e,
            "a verdict stays after a restart of leda-cm"
        );
        assert_eq!(e.running(8, "t3").health, None);
        let mut waiting = State::default().running(9, "t5");
        waiting.health = Some(Health {
            status: HealthStatus::Starting,
            failing_streak: 1,
            detail: String::new(),
        });
        assert_eq!(waiting.reloaded().health, None, "nobody finishes that gate");
        let plain = serde_json::to_value(State::default()).unwrap();
        assert!(plain.get("health").is_none(), "{plain}");
        for h in [
            HealthStatus::Starting,
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
        ] {
            assert_eq!(HealthStatus::parse(h.name()), Some(h));
        }
        assert_eq!(HealthStatus::parse("Healthy"), None);
    }

    #[test]
    fn retry_timeout_accepts_nanoseconds_and_go_durations() {
        let cases = [
            (r#"{"retry_timeout": 30000000000}"#, 30_000_000_000i64),
            (r#"{"retry_timeout": "30s"}"#, 30_000_000_000),
            (r#"{"retry_timeout": null}"#, 0),
            (r#"{}"#, 0),
        ];
        for (text, want) in cases {
            let p: RestartPolicy = serde_json::from_str(text).unwrap();
            assert_eq!(p.retry_timeout, want, "{text}");
        }
        let bad: Result<RestartPolicy, _> = serde_json::from_str(r#"{"type":"sometimes"}"#);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("unsupported restart policy type"));
    }

    #[test]
    fn nulls_read_as_empty_and_round_trip() {
        let text = r#"{"container_name":"x","image":{"name":"i"},"mount_points":null,
            "hooks":null,"config":null,"host_config":{"devices":null,"network_mode":"",
            "restart_policy":null,"port_mappings":null,"resources":null},"io_config":null,
            "network_settings":null,"state":null}"#;
        let c: Container = serde_json::from_str(text).unwrap();
        assert!(c.mount_points.is_empty());
        assert_eq!(c.host_config.network_mode, NetworkMode::Bridge);
        assert_eq!(c.state.status, Status::Created);
        let again: Container = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }
}

/// One `portmap` entry (its wire names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortEntry {
    #[serde(rename = "hostPort")]
    pub host_port: u16,
    #[serde(rename = "containerPort")]
    pub container_port: u16,
    pub protocol: String,
    #[serde(rename = "hostIP", default, skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
}

/// What a container got from the plugins, kept in its record: enough to free it again
/// (DEL needs the result and the port entries) and to answer with its address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attachment {
    pub network: String,
    pub ip: String,
    pub prefix: u8,
    pub gateway: String,
    pub mac: String,
    /// The host side of the veth pair.
    pub host_veth: String,
    pub ports: Vec<PortEntry>,
    /// The chain's final result (the DEL's `prevResult`).
    pub result: serde_json::Value,
}
