//! Kanto's `config.json` schema, parsed into typed structs (pure: text in, values out).
//!
//! Every key is optional and defaults to Kanto's value (`containerm/daemon/daemon_config_default.go`),
//! except where ARCHITECTURE.md lists a deliberate difference. The daemon reads the main file
//! (read-only on a device) and then the drop-ins of `<state dir>/config.d/*.json`, which are merged
//! over it key by key (objects merge, every other value replaces). Each source is checked on its own
//! first, so an error names the file, line, column and key it comes from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use crate::duration::parse_go_duration;

/// Where the daemon looks for its configuration when `--cfg-file` is not given.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/container-management/config.json";
/// Drop-in directory, relative to the state dir.
pub const DROPIN_DIR: &str = "config.d";

/// A configuration text and the name it is reported under (usually its path).
#[derive(Debug, Clone)]
pub struct Source {
    pub name: String,
    pub text: String,
    /// Drop-ins may not move the state or runtime directories.
    pub dropin: bool,
}

impl Source {
    pub fn main(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
            dropin: false,
        }
    }

    pub fn dropin(name: impl Into<String>, text: impl Into<String>) -> Source {
        Source {
            name: name.into(),
            text: text.into(),
            dropin: true,
        }
    }
}

/// The result of parsing: the merged configuration and the warnings (unknown keys, …).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {file}:{line}:{column}: invalid JSON: {message}")]
    Syntax {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("config file {file}:{line}:{column}: key `{key}`: {message}")]
    Value {
        file: String,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
    #[error("config file {file}: the top level must be a JSON object")]
    NotAnObject { file: String },
    #[error("config file {file}: key `{key}` cannot be set in a drop-in (only in the main file)")]
    MainOnly { file: String, key: String },
    /// A security setting leda-cm does not implement: refused rather than ignored (a device
    /// configured to run only signed images must never run an unsigned one).
    #[error("configuration key `{key}` = {value}: {reason}")]
    Refused {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
    /// Decryption keys (`containers.image_dec_keys`, `image_dec_recipients`) that cannot
    /// be used: the file is missing, the password is wrong, the key type unsupported.
    #[error("configuration key `{key}`: {reason}")]
    Keys { key: &'static str, reason: String },
    /// An unknown key that looks like a misspelt security setting: ignoring it would leave
    /// the setting at its default (e.g. images unverified), so it is refused.
    #[error("config file {file}: unknown key `{key}` looks like the security setting `{meant}`; refused rather than ignored (correct or remove it)")]
    Misspelt {
        file: String,
        key: String,
        meant: &'static str,
    },
}

/// Key names (the last segment of a key's path, wherever it sits: `root_ca` of the broker's
/// and of every registry's transport) whose misspelling would weaken security if ignored.
const SECURITY_KEYS: &[&str] = &[
    "image_verifier_type",
    "image_verifier_config",
    "image_dec_keys",
    "image_dec_recipients",
    "insecure_registries",
    "registry_configurations",
    "transport",
    "root_ca",
    "client_cert",
    "client_key",
    "remote_requests",
    "mount_sources",
    "extra_capabilities",
    "host_network",
    "privileged",
];

/// The security key an unknown key's last segment is a near miss of: equal but for case and
/// `-`/`_`, or a few edits away (1 for names under 8 letters, 2 under 14, else 3).
fn near_security_key(path: &str) -> Option<&'static str> {
    let last = path.rsplit('.').next().unwrap_or(path);
    let norm = |t: &str| -> Vec<char> {
        t.chars()
            .map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    };
    let got = norm(last);
    SECURITY_KEYS.iter().copied().find(|known| {
        let want = norm(known);
        let limit = match want.len() {
            0..=7 => 1,
            8..=13 => 2,
            _ => 3,
        };
        edit_distance(&got, &want) <= limit
    })
}

/// Levenshtein distance (insertions, deletions, substitutions).
fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Kanto keys leda-cm accepts and does not use, set to something else than Kanto's default:
/// one warning each (ignoring them is harmless; README "Configuration keys").
pub fn ignored_settings(config: &Config) -> Vec<String> {
    let d = Config::default();
    let (c, dc) = (&config.connection, &d.connection);
    let own_dirs = "leda-cm keeps all its state under manager.home_dir and its runtime files under manager.exec_root_dir";
    let mqtt = "rumqttc's requests never block; the connection's keep-alive bounds a dead broker";
    let sid = "Kanto's internal service ID";
    // (set away from Kanto's default, key, why ignoring it is harmless)
    let table: [(bool, &str, &str); 15] = [
        (
            config.log.log_file_max_age != d.log.log_file_max_age,
            "log.log_file_max_age",
            "log files rotate by size and count",
        ),
        (
            config.log.syslog != d.log.syslog,
            "log.syslog",
            "logs go to stderr (the journal under systemd)",
        ),
        (
            config.manager.container_client_sid != d.manager.container_client_sid,
            "manager.container_client_sid",
            sid,
        ),
        (
            config.manager.network_manager_sid != d.manager.network_manager_sid,
            "manager.network_manager_sid",
            sid,
        ),
        (
            config.containers.home_dir != d.containers.home_dir,
            "containers.home_dir",
            own_dirs,
        ),
        (
            config.containers.exec_root_dir != d.containers.exec_root_dir,
            "containers.exec_root_dir",
            own_dirs,
        ),
        (
            config.containers.lease_id != d.containers.lease_id,
            "containers.lease_id",
            "leda-cm holds one short lease per pull or create",
        ),
        (
            config.network.home_dir != d.network.home_dir,
            "network.home_dir",
            own_dirs,
        ),
        (
            config.network.exec_root_dir != d.network.exec_root_dir,
            "network.exec_root_dir",
            own_dirs,
        ),
        (
            config.things.home_dir != d.things.home_dir,
            "things.home_dir",
            own_dirs,
        ),
        (
            config.deployment.home_dir != d.deployment.home_dir,
            "deployment.home_dir",
            own_dirs,
        ),
        (
            c.disconnect_timeout != dc.disconnect_timeout,
            "connection.disconnect_timeout",
            "at shutdown the connection drains for at most 8 s",
        ),
        (
            c.acknowledge_timeout != dc.acknowledge_timeout,
            "connection.acknowledge_timeout",
            mqtt,
        ),
        (
            c.subscribe_timeout != dc.subscribe_timeout,
            "connection.subscribe_timeout",
            mqtt,
        ),
        (
            c.unsubscribe_timeout != dc.unsubscribe_timeout,
            "connection.unsubscribe_timeout",
            mqtt,
        ),
    ];
    table
        .iter()
        .filter(|(changed, _, _)| *changed)
        .map(|(_, key, why)| format!("configuration key `{key}` is accepted and not used: {why}"))
        .collect()
}

/// Security settings leda-cm parses but does not implement yet: each set one refuses the
/// configuration (fail closed). The merged configuration in, the first refusal out; the
/// decryption keys it names are read (once, to refuse the ones that cannot be used).
pub fn refuse_unimplemented(config: &Config) -> Result<(), ConfigError> {
    let c = &config.containers;
    let verifier = c.image_verifier_type.trim().to_ascii_lowercase();
    if !matches!(verifier.as_str(), "" | "none" | "notation" | "cosign") {
        return Err(ConfigError::Refused {
            key: "containers.image_verifier_type",
            value: format!("{verifier:?}"),
            reason: "leda-cm verifies images with \"notation\" or \"cosign\" (\"none\" runs them unverified); it refuses to start rather than run images unverified",
        });
    }
    if c.runc_runtime != ContainersConfig::default().runc_runtime {
        return Err(ConfigError::Refused {
            key: "containers.runc_runtime",
            value: format!("{:?}", c.runc_runtime),
            reason: "leda-cm runs containers with io.containerd.runc.v2 only; another runtime (e.g. a sandboxing one) would not be used",
        });
    }
    if config.network.net_type != NetworkConfig::default().net_type {
        return Err(ConfigError::Refused {
            key: "network.type",
            value: format!("{:?}", config.network.net_type),
            reason: "leda-cm's only network type is \"bridge\"",
        });
    }
    // Decryption keys are loaded here once to prove they can be (the runtime loads them
    // again): a missing file, a wrong password or an unsupported key refuses the
    // configuration. The error names the file, never the password.
    if !(c.image_dec_keys.is_empty() && c.image_dec_recipients.is_empty()) {
        if let Err(e) =
            crate::trust::ocicrypt::Keys::load(&c.image_dec_keys, &c.image_dec_recipients)
        {
            let key = match e {
                crate::trust::ocicrypt::OcicryptError::Recipient { .. } => {
                    "containers.image_dec_recipients"
                }
                _ => "containers.image_dec_keys",
            };
            return Err(ConfigError::Keys {
                key,
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}

/// Parses the sources in order; later sources override earlier ones.
pub fn parse(sources: &[Source]) -> Result<Loaded, ConfigError> {
    let mut merged = Value::Object(Default::default());
    let mut warnings = Vec::new();
    for source in sources {
        let value = check_source(source, &mut warnings)?;
        if source.dropin {
            for key in MAIN_ONLY_KEYS {
                if pointer(&value, key).is_some() {
                    return Err(ConfigError::MainOnly {
                        file: source.name.clone(),
                        key: key.join("."),
                    });
                }
            }
        }
        merge(&mut merged, value);
    }
    // Each source deserialised on its own, and merging keeps every leaf's type, so this cannot
    // fail unless two sources disagree on an object's shape; report it against the last one.
    let config = typed(&merged.to_string())
        .0
        .map_err(|e| ConfigError::Value {
            file: sources
                .last()
                .map(|s| s.name.clone())
                .unwrap_or_else(|| "<defaults>".into()),
            line: 0,
            column: 0,
            key: e.path().to_string(),
            message: strip_location(e.inner()),
        })?;
    refuse_unimplemented(&config)?;
    warnings.extend(ignored_settings(&config));
    if config
        .containers
        .image_verifier_type
        .trim()
        .eq_ignore_ascii_case("none")
        && !config.containers.image_verifier_config.is_empty()
    {
        warnings.push(
            "containers.image_verifier_config is set but image_verifier_type is \"none\": images are not verified".into(),
        );
    }
    Ok(Loaded { config, warnings })
}

/// Keys a drop-in may not change: they decide where the drop-ins themselves live.
const MAIN_ONLY_KEYS: &[&[&str]] = &[&["manager", "home_dir"], &["manager", "exec_root_dir"]];

fn pointer<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

/// Syntax and type check of one source, collecting its unknown keys as warnings.
fn check_source(source: &Source, warnings: &mut Vec<String>) -> Result<Value, ConfigError> {
    let value: Value =
        serde_json::from_slice(source.text.as_bytes()).map_err(|e| ConfigError::Syntax {
            file: source.name.clone(),
            line: e.line(),
            column: e.column(),
            message: strip_location(&e),
        })?;
    if !value.is_object() {
        return Err(ConfigError::NotAnObject {
            file: source.name.clone(),
        });
    }
    let (typed, unknown) = typed(&source.text);
    if let Err(e) = typed {
        let key = e.path().to_string();
        let inner = e.into_inner();
        return Err(ConfigError::Value {
            file: source.name.clone(),
            line: inner.line(),
            column: inner.column(),
            key,
            message: strip_location(&inner),
        });
    }
    for key in unknown {
        if let Some(meant) = near_security_key(&key) {
            return Err(ConfigError::Misspelt {
                file: source.name.clone(),
                key,
                meant,
            });
        }
        warnings.push(format!(
            "config file {}: unknown key `{key}` ignored",
            source.name
        ));
    }
    Ok(value)
}

/// The typed configuration of a JSON text, and the paths of the keys it does not know.
///
/// The one place `Config` is deserialised (each source, then the merged whole), so its
/// `Deserialize` code is instantiated for one deserializer type only (issue 19).
fn typed(
    text: &str,
) -> (
    Result<Config, serde_path_to_error::Error<serde_json::Error>>,
    Vec<String>,
) {
    let mut unknown = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(text.as_bytes());
    let mut record = |path: serde_ignored::Path| unknown.push(path.to_string());
    let ignored = serde_ignored::Deserializer::new(&mut de, &mut record);
    let typed = serde_path_to_error::deserialize(ignored);
    (typed, unknown)
}

/// serde_json appends " at line L column C"; we print the location ourselves.
fn strip_location(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Deep merge: objects merge key by key, anything else replaces.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A string that must never reach a log line, an error message or a debug print.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that hands it to the peer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

/// A duration written as Go writes it (`"744h"`, `"1m30s"`, `"250ms"`) or as a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = GoDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or \"744h\", or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<GoDuration, E> {
                Ok(GoDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<GoDuration, E> {
                u64::try_from(v)
                    .map(|v| GoDuration(Duration::from_secs(v)))
                    .map_err(|_| E::custom(format!("negative duration {v}")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<GoDuration, E> {
                Duration::try_from_secs_f64(v)
                    .map(GoDuration)
                    .map_err(|_| E::custom(format!("invalid duration {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GoDuration, E> {
                parse_go_duration(v).map(GoDuration).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn parse(text: &str) -> Option<LogLevel> {
        Some(match text.trim().to_ascii_uppercase().as_str() {
            "ERROR" | "FATAL" | "PANIC" => LogLevel::Error,
            "WARN" | "WARNING" => LogLevel::Warn,
            "INFO" => LogLevel::Info,
            "DEBUG" => LogLevel::Debug,
            "TRACE" => LogLevel::Trace,
            _ => return None,
        })
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        LogLevel::parse(&text).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown log level \"{text}\", expected one of ERROR, WARN, INFO, DEBUG, TRACE"
            ))
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub log: LogConfig,
    pub manager: ManagerConfig,
    pub containers: ContainersConfig,
    pub network: NetworkConfig,
    pub grpc_server: GrpcServerConfig,
    pub things: ThingsConfig,
    pub update_agent: UpdateAgentConfig,
    pub connection: ConnectionConfig,
    pub deployment: DeploymentConfig,
    /// leda-cm: what a remote request (a desired state, a twin command) may ask for.
    pub remote_requests: RemoteRequestsConfig,
}

/// leda-cm's remote-request policy. The local MQTT broker is the trust boundary: any client
/// that may publish on the update agent's or the twin's topics could otherwise run a
/// container as root with any host directory mounted (Kanto allows it). Local requests (the
/// gRPC API, `kanto-cm`, deployment manifests) are not limited by it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct RemoteRequestsConfig {
    pub privileged: bool,
    /// `network_mode: host`.
    pub host_network: bool,
    /// Host devices mapped into the container.
    pub devices: bool,
    /// Capabilities beyond the default set.
    pub extra_capabilities: bool,
    /// A log directory of the request's choosing (`log_config…root_dir`).
    pub log_dirs: bool,
    /// Host directories bind mounts may come from (absolute; `/` allows any).
    #[serde(deserialize_with = "absolute_paths")]
    pub mount_sources: Vec<String>,
}

impl Default for RemoteRequestsConfig {
    fn default() -> Self {
        RemoteRequestsConfig {
            privileged: false,
            host_network: false,
            devices: false,
            extra_capabilities: false,
            log_dirs: false,
            // Leda's data partition (its documented desired state mounts device
            // certificates from /data/var/certificates).
            mount_sources: vec!["/data".into()],
        }
    }
}

fn absolute_paths<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Vec::<String>::deserialize(d)?;
    if let Some(bad) = v
        .iter()
        .find(|p| !p.starts_with('/') || p.split('/').any(|c| c == ".." || c == "."))
    {
        return Err(serde::de::Error::custom(format!(
            "`{bad}` is not an absolute, normalised path"
        )));
    }
    Ok(v)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// Empty: stderr only (journald). Kanto's default `log/container-management.log` is relative
    /// to the working directory, which is read-only on a device.
    pub log_file: String,
    pub log_level: LogLevel,
    /// Megabytes before the file is rotated.
    pub log_file_size: u64,
    /// Rotated files kept.
    pub log_file_count: u32,
    /// Days; accepted for compatibility, rotation is by size and count.
    pub log_file_max_age: u32,
    /// Accepted for compatibility; stderr goes to the journal under systemd.
    pub syslog: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            log_file: String::new(),
            log_level: LogLevel::Info,
            log_file_size: 2,
            log_file_count: 5,
            log_file_max_age: 28,
            syslog: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ManagerConfig {
    pub home_dir: PathBuf,
    pub exec_root_dir: PathBuf,
    pub container_client_sid: String,
    pub network_manager_sid: String,
    pub default_ctrs_stop_timeout: GoDuration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            home_dir: "/var/lib/container-management".into(),
            exec_root_dir: "/var/run/container-management".into(),
            container_client_sid: "container-management.service.local.v1.service-containerd-client"
                .into(),
            network_manager_sid: "container-management.service.local.v1.service-libnetwork-manager"
                .into(),
            default_ctrs_stop_timeout: GoDuration(Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ContainersConfig {
    pub default_ns: String,
    pub address_path: PathBuf,
    pub registry_configurations: BTreeMap<String, RegistryConfig>,
    pub insecure_registries: Vec<String>,
    pub exec_root_dir: PathBuf,
    pub home_dir: PathBuf,
    pub image_dec_keys: Vec<String>,
    pub image_dec_recipients: Vec<String>,
    pub runc_runtime: String,
    pub image_expiry: GoDuration,
    pub image_expiry_disable: bool,
    pub lease_id: String,
    pub image_verifier_type: String,
    pub image_verifier_config: BTreeMap<String, String>,
    /// leda-cm: runc's state root (`runc --root`) for leda-cm's containers; empty: runc's
    /// default (`/run/containerd/runc/<namespace>`). Two containerd instances on one host (test
    /// devices side by side) each need their own, or runc's state of equal IDs meets.
    #[serde(deserialize_with = "absolute_or_empty")]
    pub runc_root: String,
    /// leda-cm: who reads containers' output into their json-file logs.
    pub log_capture: LogCapture,
    /// leda-cm: attempts after the first of a broken blob download (each resumes where the
    /// last one ended); 0, the default, fails the pull as Kanto does.
    pub download_retries: u32,
    /// leda-cm: the wait before the first retry, doubled for each one (with jitter).
    pub download_retry_delay: GoDuration,
    /// leda-cm: the longest wait between retries.
    pub download_retry_delay_max: GoDuration,
    /// leda-cm: bytes per second all downloads together may take (image blobs and software
    /// artifacts); a number or a size (`"512K"`, `"2M"`); 0, the default: unlimited.
    pub download_rate_limit: ByteRate,
}

/// Bytes per second: a number, or a size string as Kanto's log sizes (`"512K"`, `"1.5M"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByteRate(pub u64);

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteRate(n)),
            Raw::Text(t) => crate::model::size::parse_size(&t)
                .filter(|n| *n >= 0)
                .map(|n| ByteRate(n as u64))
                .ok_or_else(|| {
                    de::Error::custom(format!(
                        "`{t}` is not a rate in bytes per second (a number, or a size such as \"512K\")"
                    ))
                }),
        }
    }
}

/// `containers.log_capture` (leda-cm's key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogCapture {
    /// The daemon, from a fifo per stream that it reads on after its own restart (output
    /// written meanwhile waits in the fifo; a container that fills it waits for the daemon).
    #[default]
    Daemon,
    /// A `leda-cm-logd` process per container, the child of its shim: logging goes on while
    /// the daemon is away, at ~0.15 MiB per container.
    Driver,
}

/// An absolute path, or empty for "not set".
fn absolute_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() || s.starts_with('/') {
        Ok(s)
    } else {
        Err(serde::de::Error::custom(format!(
            "`{s}` is not an absolute path"
        )))
    }
}

impl Default for ContainersConfig {
    fn default() -> Self {
        ContainersConfig {
            default_ns: "kanto-cm".into(),
            address_path: "/run/containerd/containerd.sock".into(),
            registry_configurations: BTreeMap::new(),
            insecure_registries: vec!["localhost".into()],
            exec_root_dir: "/var/run/container-management".into(),
            home_dir: "/var/lib/container-management".into(),
            image_dec_keys: Vec::new(),
            image_dec_recipients: Vec::new(),
            runc_runtime: "io.containerd.runc.v2".into(),
            image_expiry: GoDuration(Duration::from_secs(31 * 24 * 3600)),
            image_expiry_disable: false,
            lease_id: "kanto-cm.lease".into(),
            image_verifier_type: "none".into(),
            image_verifier_config: BTreeMap::new(),
            runc_root: String::new(),
            log_capture: LogCapture::Daemon,
            download_retries: 0,
            download_retry_delay: GoDuration(Duration::from_secs(1)),
            download_retry_delay_max: GoDuration(Duration::from_secs(30)),
            download_rate_limit: ByteRate(0),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    pub credentials: Option<Credentials>,
    pub transport: Option<TlsConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Credentials {
    pub user_id: String,
    pub password: Secret,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    pub root_ca: String,
    pub client_cert: String,
    pub client_key: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    #[serde(rename = "type")]
    pub net_type: String,
    pub home_dir: PathBuf,
    pub exec_root_dir: PathBuf,
    pub default_bridge: BridgeConfig,
    /// leda-cm: where the CNI plugins are, searched in order (`:`-separated, like `CNI_PATH`).
    pub cni_plugin_dir: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            net_type: "bridge".into(),
            home_dir: "/var/lib/container-management".into(),
            exec_root_dir: "/var/run/container-management".into(),
            default_bridge: BridgeConfig::default(),
            cni_plugin_dir: "/usr/lib/cni:/opt/cni/bin:/usr/libexec/cni".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BridgeConfig {
    pub disable: bool,
    pub name: String,
    pub ip4: String,
    pub fcidr4: String,
    pub gwip4: String,
    pub enable_ip6: bool,
    pub mtu: u32,
    pub icc: bool,
    pub ip_tables: bool,
    pub ip_forward: bool,
    pub ip_masq: bool,
    pub userland_proxy: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            disable: false,
            name: "kanto-cm0".into(),
            ip4: String::new(),
            fcidr4: String::new(),
            gwip4: String::new(),
            enable_ip6: false,
            mtu: 1500,
            icc: true,
            ip_tables: true,
            ip_forward: true,
            ip_masq: true,
            userland_proxy: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct GrpcServerConfig {
    pub protocol: String,
    pub address_path: PathBuf,
}

impl Default for GrpcServerConfig {
    fn default() -> Self {
        GrpcServerConfig {
            protocol: "unix".into(),
            address_path: "/run/container-management/container-management.sock".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ThingsConfig {
    pub enable: bool,
    pub home_dir: PathBuf,
    pub features: Vec<String>,
}

impl Default for ThingsConfig {
    fn default() -> Self {
        ThingsConfig {
            enable: true,
            home_dir: "/var/lib/container-management".into(),
            features: vec![
                "ContainerFactory".into(),
                "SoftwareUpdatable".into(),
                "Metrics".into(),
            ],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UpdateAgentConfig {
    pub enable: bool,
    pub domain: String,
    pub system_containers: Vec<String>,
    pub verbose_inventory_report: bool,
    /// Who triggers the phases after identification (leda-cm's addition; Kanto's agent is
    /// always orchestrated by its update manager).
    pub mode: UpdateAgentMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdateAgentMode {
    /// leda-cm runs download, update, activate and cleanup itself.
    Standalone,
    /// An update manager sends the DOWNLOAD / UPDATE / ACTIVATE / ROLLBACK / CLEANUP commands.
    Orchestrated,
}

impl Default for UpdateAgentConfig {
    fn default() -> Self {
        UpdateAgentConfig {
            enable: false,
            domain: "containers".into(),
            system_containers: Vec::new(),
            verbose_inventory_report: false,
            mode: UpdateAgentMode::Standalone,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ConnectionConfig {
    pub broker_url: String,
    pub keep_alive: GoDuration,
    pub disconnect_timeout: GoDuration,
    pub client_username: String,
    pub client_password: Secret,
    pub connect_timeout: GoDuration,
    pub acknowledge_timeout: GoDuration,
    pub subscribe_timeout: GoDuration,
    pub unsubscribe_timeout: GoDuration,
    pub transport: TlsConfig,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        let s = |secs| GoDuration(Duration::from_secs(secs));
        ConnectionConfig {
            broker_url: "tcp://localhost:1883".into(),
            keep_alive: s(20),
            disconnect_timeout: GoDuration(Duration::from_millis(250)),
            client_username: String::new(),
            client_password: Secret::default(),
            connect_timeout: s(30),
            acknowledge_timeout: s(15),
            subscribe_timeout: s(15),
            unsubscribe_timeout: s(5),
            transport: TlsConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeploymentMode {
    Update,
    Init,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct DeploymentConfig {
    pub enable: bool,
    pub mode: DeploymentMode,
    pub home_dir: PathBuf,
    pub ctr_dir: PathBuf,
}

impl Default for DeploymentConfig {
    fn default() -> Self {
        DeploymentConfig {
            enable: true,
            mode: DeploymentMode::Update,
            home_dir: "/var/lib/container-management".into(),
            ctr_dir: "/etc/container-management/containers".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(name: &str, text: &str) -> Source {
        Source::main(name, text)
    }

    const LEDA_CONFIG: &str =
        include_str!("../tests/fixtures/meta-leda-manifests/kanto-cm-config.json");

    /// Leda's own file with its BitBake placeholders filled in as the recipe does.
    fn leda_config() -> String {
        LEDA_CONFIG
            .replace("@CM_LOD_DD@", "/var/log")
            .replace("@CM_THINGS_ENABLED@", "true")
    }

    #[test]
    fn log_capture_is_the_daemon_unless_the_driver_is_asked_for() {
        let parsed = |text: &str| parse(&[src("/etc/x.json", text)]).map(|l| l.config);
        for (text, want) in [
            ("{}", Some(LogCapture::Daemon)),
            (
                "{\"containers\": {\"log_capture\": \"daemon\"}}",
                Some(LogCapture::Daemon),
            ),
            (
                "{\"containers\": {\"log_capture\": \"driver\"}}",
                Some(LogCapture::Driver),
            ),
            ("{\"containers\": {\"log_capture\": \"fifo\"}}", None),
            ("{\"containers\": {\"log_capture\": true}}", None),
        ] {
            match (parsed(text), want) {
                (Ok(c), Some(w)) => assert_eq!(c.containers.log_capture, w, "{text}"),
                (Err(e), None) => {
                    // Every ConfigError stops the daemon with exit 78 (DaemonError::exit_code).
                    assert!(
                        e.to_string().contains("containers.log_capture"),
                        "{text}: {e}"
                    );
                }
                (got, _) => panic!("{text}: {got:?}"),
            }
        }
    }

    #[test]
    fn unused_kanto_keys_are_warned_about_only_when_changed() {
        let warnings = |text: &str| parse(&[src("/etc/x.json", text)]).unwrap().warnings;
        assert!(warnings("{}").is_empty());
        // Kanto's defaults written out: nothing to say.
        assert!(warnings(
            "{\"log\": {\"log_file_max_age\": 28, \"syslog\": false}, \"containers\": {\"lease_id\": \"kanto-cm.lease\"}}"
        )
        .is_empty());
        let w = warnings(
            "{\"log\": {\"syslog\": true}, \"things\": {\"home_dir\": \"/x\"}, \"connection\": {\"subscribe_timeout\": \"1s\"}}",
        );
        let keys: Vec<&str> = w
            .iter()
            .map(|w| w.split('`').nth(1).unwrap_or_default())
            .collect();
        assert_eq!(
            keys,
            [
                "log.syslog",
                "things.home_dir",
                "connection.subscribe_timeout"
            ],
            "{w:?}"
        );
    }

    #[test]
    fn decryption_keys_that_cannot_be_loaded_refuse_the_configuration() {
        let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/ocicrypt");
        let keys = |keys: &[String], recipients: &[String]| {
            let text = serde_json::json!({"containers": {
                "image_dec_keys": keys, "image_dec_recipients": recipients}})
            .to_string();
            parse(&[src("/etc/x.json", &text)])
        };
        let key = |k: &str| format!("{fixtures}/{k}");
        // Usable keys: accepted.
        assert!(keys(&[key("rsa.pem"), key("ec.pem")], &[]).is_ok());
        assert!(keys(&[key("rsa-legacy-encrypted.pem:test-password")], &[]).is_ok());
        assert!(keys(
            &[key("rsa.pem")],
            &[format!("pkcs7:{}", key("rsa.crt.pem"))]
        )
        .is_ok());
        // Missing, wrong password, unsupported: refused, the password never shown.
        for (k, r, want) in [
            (
                "/nonexistent/k.pem:secret-pass",
                None,
                "containers.image_dec_keys",
            ),
            (
                "rsa-legacy-encrypted.pem:secret-pass",
                None,
                "containers.image_dec_keys",
            ),
            (
                "rsa-pkcs8-encrypted.pem:secret-pass",
                None,
                "containers.image_dec_keys",
            ),
            ("rsa.pub.pem", None, "containers.image_dec_keys"),
            (
                "rsa.pem",
                Some("pkcs7:/nonexistent/c.pem"),
                "containers.image_dec_recipients",
            ),
        ] {
            let k = if k.starts_with('/') {
                k.to_string()
            } else {
                key(k)
            };
            let r: Vec<String> = r.into_iter().map(String::from).collect();
            match keys(std::slice::from_ref(&k), &r) {
                Err(e @ ConfigError::Keys { key, .. }) => {
                    assert_eq!(key, want, "{k}");
                    assert!(!e.to_string().contains("secret-pass"), "{e}");
                }
                other => panic!("{k}: {other:?}"),
            }
        }
    }

    #[test]
    fn unimplemented_security_settings_are_refused_never_ignored() {
        let refused = |text: &str| match parse(&[src("/etc/x.json", text)]) {
            Err(ConfigError::Refused { key, value, .. }) => Some((key, value)),
            Ok(_) => None,
            Err(e) => panic!("{text}: {e}"),
        };
        let cases: &[(&str, Option<&str>)] = &[
            ("{}", None),
            ("{\"containers\": {\"image_verifier_type\": \"none\"}}", None),
            ("{\"containers\": {\"image_verifier_type\": \"\"}}", None),
            // Implemented: whether the files they name can be used is the trust module's
            // check at start (`trust::Verifier::from_config`).
            (
                "{\"containers\": {\"image_verifier_type\": \"notation\", \"image_verifier_config\": {\"configDir\": \"/etc/notation\"}}}",
                None,
            ),
            (
                "{\"containers\": {\"image_verifier_type\": \"cosign\"}}",
                None,
            ),
            (
                "{\"containers\": {\"image_verifier_type\": \"sigstore\"}}",
                Some("containers.image_verifier_type"),
            ),
            (
                "{\"containers\": {\"runc_runtime\": \"io.containerd.runsc.v1\"}}",
                Some("containers.runc_runtime"),
            ),
            (
                "{\"containers\": {\"runc_runtime\": \"io.containerd.runc.v2\"}}",
                None,
            ),
            ("{\"network\": {\"type\": \"macvlan\"}}", Some("network.type")),
            ("{\"network\": {\"type\": \"bridge\"}}", None),
        ];
        for (text, want) in cases {
            let got = refused(text);
            assert_eq!(got.as_ref().map(|(k, _)| *k), *want, "{text}");
            if let Some((_, value)) = got {
                assert!(!value.contains("secret-pass"), "a password in {value}");
            }
        }
        // Set in a drop-in, it is refused the same way.
        let err = parse(&[
            src("/etc/x.json", "{}"),
            Source {
                dropin: true,
                ..src(
                    "/d/10.json",
                    "{\"containers\": {\"image_verifier_type\": \"sigstore\"}}",
                )
            },
        ]);
        assert!(matches!(err, Err(ConfigError::Refused { .. })), "{err:?}");
        let ok = parse(&[src(
            "/etc/x.json",
            "{\"containers\": {\"image_verifier_config\": {\"configDir\": \"/x\"}}}",
        )])
        .unwrap();
        assert!(ok
            .warnings
            .iter()
            .any(|w| w.contains("images are not verified")));
    }

    #[test]
    fn empty_object_gives_kanto_defaults() {
        let loaded = parse(&[src("c.json", "{}")]).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.warnings.is_empty());
        let c = loaded.config;
        assert_eq!(c.containers.default_ns, "kanto-cm");
        assert_eq!(
            c.containers.address_path,
            PathBuf::from("/run/containerd/containerd.sock")
        );
        assert_eq!(c.containers.image_expiry.0, Duration::from_secs(744 * 3600));
        assert_eq!(c.containers.insecure_registries, vec!["localhost"]);
        assert_eq!(c.network.default_bridge.name, "kanto-cm0");
        assert_eq!(c.connection.broker_url, "tcp://localhost:1883");
        assert_eq!(c.deployment.mode, DeploymentMode::Update);
        assert!(!c.update_agent.enable);
        assert!(c.things.enable);
        assert_eq!(
            c.manager.default_ctrs_stop_timeout.0,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn no_sources_gives_defaults() {
        assert_eq!(parse(&[]).unwrap().config, Config::default());
    }

    #[test]
    fn leda_fixture_parses() {
        let loaded = parse(&[src("leda.json", &leda_config())]).unwrap();
        let c = loaded.config;
        assert_eq!(
            c.manager.default_ctrs_stop_timeout.0,
            Duration::from_secs(5)
        );
        assert_eq!(
            c.log.log_file,
            "/var/log/container-management/container-management.log"
        );
        assert!(c.update_agent.enable);
        assert_eq!(c.update_agent.system_containers, vec!["sua"]);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn durations_and_levels() {
        let cases: &[(&str, Duration)] = &[
            (
                r#"{"manager":{"default_ctrs_stop_timeout":"1m30s"}}"#,
                Duration::from_secs(90),
            ),
            (
                r#"{"manager":{"default_ctrs_stop_timeout":7}}"#,
                Duration::from_secs(7),
            ),
            (
                r#"{"manager":{"default_ctrs_stop_timeout":"250ms"}}"#,
                Duration::from_millis(250),
            ),
        ];
        for (text, want) in cases {
            let c = parse(&[src("c.json", text)]).unwrap().config;
            assert_eq!(c.manager.default_ctrs_stop_timeout.0, *want, "{text}");
        }
        let c = parse(&[src("c.json", r#"{"log":{"log_level":"debug"}}"#)])
            .unwrap()
            .config;
        assert_eq!(c.log.log_level, LogLevel::Debug);
    }

    #[test]
    fn misspelt_security_keys_are_refused_other_unknown_keys_warned() {
        // (file text, refused as a near miss of, else a warning naming the key)
        let cases: &[(&str, Option<&str>, &str)] = &[
            (
                r#"{"containers":{"image_verifer_type":"notation"}}"#,
                Some("image_verifier_type"),
                "",
            ),
            (
                r#"{"containers":{"Image-Verifier-Type":"cosign"}}"#,
                Some("image_verifier_type"),
                "",
            ),
            (
                r#"{"containers":{"image_verifier_conf":{}}}"#,
                Some("image_verifier_config"),
                "",
            ),
            (
                r#"{"containers":{"image_dec_key":["/k.pem"]}}"#,
                Some("image_dec_keys"),
                "",
            ),
            (
                r#"{"containers":{"insecure_registry":[]}}"#,
                Some("insecure_registries"),
                "",
            ),
            (
                r#"{"containers":{"registry_configurations":{"r:5000":{"transport":{"rootca":"/ca.pem"}}}}}"#,
                Some("root_ca"),
                "",
            ),
            (r#"{"connection":{"transprot":{}}}"#, Some("transport"), ""),
            (
                r#"{"remote_request":{"privileged":true}}"#,
                Some("remote_requests"),
                "",
            ),
            (
                r#"{"remote_requests":{"privilegd":true}}"#,
                Some("privileged"),
                "",
            ),
            (
                r#"{"remote_requests":{"mount_source":["/"]}}"#,
                Some("mount_sources"),
                "",
            ),
            // Unrelated unknown keys stay warnings.
            (
                r#"{"containers":{"pull_timeout":"24h"}}"#,
                None,
                "containers.pull_timeout",
            ),
            (r#"{"manager":{"verbose":true}}"#, None, "manager.verbose"),
            (
                r#"{"connection":{"client_id":"x"}}"#,
                None,
                "connection.client_id",
            ),
        ];
        for (text, meant, warned) in cases {
            match (parse(&[src("c.json", text)]), meant) {
                (Err(ConfigError::Misspelt { file, meant: m, .. }), Some(want)) => {
                    assert_eq!(file, "c.json");
                    assert_eq!(&m, want, "{text}");
                }
                (Ok(loaded), None) => {
                    let w = loaded.warnings.join("\n");
                    assert!(w.contains(&format!("`{warned}`")), "{text}: {w}");
                }
                (other, _) => panic!("{text}: {other:?}"),
            }
        }
        let e = parse(&[src(
            "/etc/c.json",
            r#"{"containers":{"image_verifer_type":"x"}}"#,
        )])
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "config file /etc/c.json: unknown key `containers.image_verifer_type` looks like the security setting `image_verifier_type`; refused rather than ignored (correct or remove it)"
        );
    }

    #[test]
    fn unknown_keys_are_warnings_naming_them() {
        let text = r#"{"manager":{"home_dir":"/x","bogus":1},"nonsense":{"a":1},
            "update_agent":{"verbose_inventory":true}}"#;
        let loaded = parse(&[src("c.json", text)]).unwrap();
        let w = loaded.warnings.join("\n");
        assert!(w.contains("`manager.bogus`"), "{w}");
        assert!(w.contains("`nonsense`"), "{w}");
        assert!(w.contains("`update_agent.verbose_inventory`"), "{w}");
        assert!(w.contains("c.json"), "{w}");
        assert_eq!(loaded.config.manager.home_dir, PathBuf::from("/x"));
    }

    #[test]
    fn errors_name_file_line_column_and_key() {
        struct Case {
            text: &'static str,
            line: usize,
            key: &'static str,
            contains: &'static str,
        }
        let cases = [
            Case {
                text: "{\n  \"manager\": {\n    \"home_dir\": 5\n  }\n}",
                line: 3,
                key: "manager.home_dir",
                contains: "invalid type",
            },
            Case {
                text: "{\"things\": {\"enable\": \"yes\"}}",
                line: 1,
                key: "things.enable",
                contains: "expected a boolean",
            },
            Case {
                text: "{\n\"deployment\": {\"mode\": \"sometimes\"}}",
                line: 2,
                key: "deployment.mode",
                contains: "unknown variant",
            },
            Case {
                text: "{\"containers\": {\"image_expiry\": \"31 days\"}}",
                line: 1,
                key: "containers.image_expiry",
                contains: "duration",
            },
            Case {
                text: "{\"log\": {\"log_level\": \"LOUD\"}}",
                line: 1,
                key: "log.log_level",
                contains: "unknown log level",
            },
            Case {
                text: "{\"containers\": {\"registry_configurations\": {\"h\": {\"credentials\": {\"password\": 3}}}}}",
                line: 1,
                key: "containers.registry_configurations.h.credentials.password",
                contains: "invalid type",
            },
            Case {
                text: "{\"containers\": {\"runc_root\": \"run/runc\"}}",
                line: 1,
                key: "containers.runc_root",
                contains: "not an absolute path",
            },
        ];
        for case in cases {
            match parse(&[src("/etc/x.json", case.text)]) {
                Err(ConfigError::Value {
                    file,
                    line,
                    column,
                    key,
                    message,
                }) => {
                    assert_eq!(file, "/etc/x.json");
                    assert_eq!(line, case.line, "{}", case.text);
                    assert!(column > 0);
                    assert_eq!(key, case.key);
                    assert!(message.contains(case.contains), "{message}");
                }
                other => panic!("{}: {other:?}", case.text),
            }
        }
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = parse(&[src("c.json", "{\n  \"log\": {,\n}")]).unwrap_err();
        let ConfigError::Syntax { line, column, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!((*line, *column), (2, 11));
        assert!(err
            .to_string()
            .starts_with("config file c.json:2:11: invalid JSON"));
        let err = parse(&[src("c.json", "[1]")]).unwrap_err();
        assert!(matches!(err, ConfigError::NotAnObject { .. }));
    }

    #[test]
    fn dropins_merge_over_the_main_file() {
        let main = src(
            "main.json",
            r#"{"containers":{"insecure_registries":["localhost"],
               "registry_configurations":{"a.io":{"credentials":{"user_id":"u","password":"p"}}}},
               "log":{"log_level":"WARN"}}"#,
        );
        let dropin = Source::dropin(
            "50-registries.json",
            r#"{"containers":{"registry_configurations":{"b.io":{"credentials":{"user_id":"v","password":"q"}}}}}"#,
        );
        let c = parse(&[main, dropin]).unwrap().config;
        let regs = &c.containers.registry_configurations;
        assert_eq!(regs.len(), 2);
        assert_eq!(regs["a.io"].credentials.as_ref().unwrap().user_id, "u");
        assert_eq!(
            regs["b.io"].credentials.as_ref().unwrap().password.expose(),
            "q"
        );
        assert_eq!(c.log.log_level, LogLevel::Warn);
        assert_eq!(c.containers.insecure_registries, vec!["localhost"]);
    }

    #[test]
    fn dropins_cannot_move_the_state_dir() {
        let err = parse(&[
            src("main.json", "{}"),
            Source::dropin("d.json", r#"{"manager":{"home_dir":"/elsewhere"}}"#),
        ])
        .unwrap_err();
        assert!(matches!(err, ConfigError::MainOnly { .. }), "{err:?}");
    }

    #[test]
    fn secrets_never_print() {
        let text = r#"{"connection":{"client_password":"hunter2"},
            "containers":{"registry_configurations":{"r":{"credentials":{"user_id":"u","password":"s3cr3t"}}}}}"#;
        let c = parse(&[src("c.json", text)]).unwrap().config;
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"));
        assert!(!debug.contains("s3cr3t"));
        assert!(debug.contains("***"));
        assert_eq!(c.connection.client_password.expose(), "hunter2");
    }
}
