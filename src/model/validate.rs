//! Validation of a container (after `fill_defaults`), before anything touches containerd.
//! Each error names the field (as a JSON path of the internal format). Where Kanto's daemon
//! refuses the same input, the error's text is exactly Kanto's message (what a Kanto client
//! sees from Kanto), and the checks Kanto makes come in Kanto's order; leda-cm's own checks
//! say `field: message`.

use std::net::IpAddr;

use super::defaults::{
    LOG_DRIVER_JSON_FILE, LOG_DRIVER_NONE, LOG_MODE_BLOCKING, LOG_MODE_NON_BLOCKING,
};
use super::size::{parse_size, MIB};
use super::{Container, NetworkMode, RestartPolicyType};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
    /// Kanto's daemon refuses the same input with exactly `message`, so that is the whole
    /// text; leda-cm's own checks (Kanto has none) are `field: message`.
    pub kanto: bool,
}

impl std::fmt::Display for ValidationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kanto {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ValidationError {}

/// A check of leda-cm's own (Kanto accepts the input): the text names the field.
fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
        kanto: false,
    }
}

/// A check Kanto makes too: the text is Kanto's message.
pub fn kanto(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
        kanto: true,
    }
}

/// The most log files a container may keep (the live one included): rotation renames each
/// of them, so a count from outside must not make it a loop of billions.
pub const MAX_LOG_FILES: i64 = 1000;
/// The longest restart back-off a policy may ask for (`retry_timeout`, nanoseconds): a day.
pub const MAX_RETRY_TIMEOUT_NS: i64 = 24 * 3600 * 1_000_000_000;
/// The longest stop grace period a request may give before SIGKILL (seconds): a day.
pub const MAX_STOP_TIMEOUT_SECS: i64 = 24 * 3600;

/// A stop request's timeout in seconds → the grace period (`None` for 0: the daemon's
/// default); negative or longer than [`MAX_STOP_TIMEOUT_SECS`] is an error.
pub fn stop_timeout(secs: i64) -> Result<Option<std::time::Duration>, String> {
    match secs {
        0 => Ok(None),
        s if s < 0 => Err(format!("timeout {s}: must be ≥ 0 seconds")),
        s if s > MAX_STOP_TIMEOUT_SECS => Err(format!(
            "timeout {s}: must be at most {MAX_STOP_TIMEOUT_SECS} seconds (a day)"
        )),
        s => Ok(Some(std::time::Duration::from_secs(s.unsigned_abs()))),
    }
}

/// Runtimes containerd knows by these names (Kanto's list).
pub const RUNTIMES: &[&str] = &[
    "io.containerd.runc.v2",
    "io.containerd.runc.v1",
    "io.containerd.runtime.v1.linux",
    "io.containerd.runsc.v1",
    "io.containerd.kata.v2",
];

/// Linux capability names (capabilities(7)), for `extra_capabilities`.
pub const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$`
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// `^[a-zA-Z_][a-zA-Z0-9_]*(=.*)?$`: a name, optionally `=value`.
pub fn valid_env(entry: &str) -> bool {
    let name = entry.split_once('=').map_or(entry, |(n, _)| n);
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `^(.+):host_ip(_(.+))?$`: an extra host that points at the host's address.
fn is_host_ip_entry(entry: &str) -> bool {
    entry.split_once(':').is_some_and(|(name, value)| {
        !name.is_empty()
            && (value == "host_ip"
                || value
                    .strip_prefix("host_ip_")
                    .is_some_and(|i| !i.is_empty()))
    })
}

pub fn validate(c: &Container) -> Result<(), ValidationError> {
    if c.container_id.is_empty() {
        return Err(kanto("container_id", "container ID must be provided"));
    }
    // The ID names files and directories: the name rules keep it a single path component.
    if !valid_name(&c.container_id) {
        return Err(err(
            "container_id",
            format!("invalid container ID format : {}", c.container_id),
        ));
    }
    if c.image.name.trim().is_empty() {
        // Kanto's text for its image check ("image is not provided" underneath).
        return Err(kanto(
            "image.name",
            "the containers image configuration is invalid",
        ));
    }
    // Fail closed: keys asked for are never silently dropped (the image would be used
    // without them, or not at all without saying why).
    if c.image
        .decrypt_config
        .as_ref()
        .is_some_and(|d| !d.keys.is_empty() || !d.recipients.is_empty())
    {
        return Err(err(
            "image.decrypt_config",
            "encrypted images are not supported by leda-cm yet",
        ));
    }
    if !valid_name(&c.container_name) {
        return Err(kanto(
            "container_name",
            format!("invalid container name format : {}", c.container_name),
        ));
    }
    for (i, m) in c.mount_points.iter().enumerate() {
        let f = format!("mount_points[{i}]");
        if m.source.is_empty() || m.destination.is_empty() {
            return Err(kanto(
                f,
                "source and destination must be set for a mount point",
            ));
        }
        // A relative source would resolve against the shim's bundle directory at task
        // create (`../../etc` reaches the host's /etc): refused here, on every path.
        if !m.source.starts_with('/') {
            return Err(err(
                format!("{f}.source"),
                format!("{} is not an absolute path", m.source),
            ));
        }
        if !m.destination.starts_with('/') {
            return Err(err(
                format!("{f}.destination"),
                format!("{} is not an absolute path", m.destination),
            ));
        }
        if !matches!(
            m.propagation_mode.as_str(),
            "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave"
        ) {
            return Err(kanto(
                format!("{f}.propagation_mode"),
                "propagation mode must be set to one of the supported modes",
            ));
        }
    }
    validate_host_config(c)?;
    // After the host config, as Kanto checks it.
    for (i, e) in c.config.env.iter().enumerate() {
        if !valid_env(e) {
            return Err(kanto(
                format!("config.env[{i}]"),
                format!("invalid environmental variable declaration provided : {e}"),
            ));
        }
    }
    Ok(())
}

fn validate_host_config(c: &Container) -> Result<(), ValidationError> {
    let hc = &c.host_config;
    if hc.privileged && !hc.devices.is_empty() {
        return Err(kanto(
            "host_config.devices",
            "cannot create the container as privileged and with specified devices at the same time - choose one of the options",
        ));
    }
    if hc.privileged && !hc.extra_capabilities.is_empty() {
        return Err(kanto(
            "host_config.extra_capabilities",
            "cannot create the container as privileged and with extra capabilities at the same time - choose one of the options",
        ));
    }
    if !RUNTIMES.contains(&hc.runtime.as_str()) {
        return Err(err(
            "host_config.runtime",
            format!("unsupported runtime {}", hc.runtime),
        ));
    }
    for (i, cap) in hc.extra_capabilities.iter().enumerate() {
        let canonical = cap.to_ascii_uppercase();
        let canonical = if canonical.starts_with("CAP_") {
            canonical
        } else {
            format!("CAP_{canonical}")
        };
        if !CAPABILITIES.contains(&canonical.as_str()) {
            return Err(err(
                format!("host_config.extra_capabilities[{i}]"),
                format!("unknown capability {cap}"),
            ));
        }
    }
    if hc.network_mode == NetworkMode::Host {
        if !hc.port_mappings.is_empty() {
            return Err(kanto(
                "host_config.port_mappings",
                "cannot use port mappings when in host network mode",
            ));
        }
        if let Some(i) = hc.extra_hosts.iter().position(|h| is_host_ip_entry(h)) {
            return Err(kanto(
                format!("host_config.extra_hosts[{i}]"),
                "cannot use the host_ip reserved key or any of its modifications when in host network mode",
            ));
        }
    }
    for (i, h) in hc.extra_hosts.iter().enumerate() {
        let ok = h
            .split_once(':')
            .is_some_and(|(name, value)| !name.is_empty() && !value.is_empty());
        if !ok {
            return Err(err(
                format!("host_config.extra_hosts[{i}]"),
                format!("invalid extra host {h:?}, expected name:IP"),
            ));
        }
    }
    for (i, p) in hc.port_mappings.iter().enumerate() {
        let f = format!("host_config.port_mappings[{i}]");
        if p.container_port == 0 {
            return Err(err(
                format!("{f}.container_port"),
                "container port must be set",
            ));
        }
        if p.host_port == 0 {
            return Err(err(format!("{f}.host_port"), "host port must be set"));
        }
        if p.host_port_end < p.host_port {
            return Err(err(
                format!("{f}.host_port_end"),
                format!(
                    "host port range end {} is below its start {}",
                    p.host_port_end, p.host_port
                ),
            ));
        }
        if !matches!(p.proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(err(
                format!("{f}.proto"),
                format!(
                    "unsupported protocol {}, expected tcp, udp or sctp",
                    p.proto
                ),
            ));
        }
        if p.host_ip != "localhost" && p.host_ip.parse::<IpAddr>().is_err() {
            return Err(err(
                format!("{f}.host_ip"),
                format!("invalid host IP {}", p.host_ip),
            ));
        }
    }
    for (i, d) in hc.devices.iter().enumerate() {
        let f = format!("host_config.devices[{i}]");
        if d.path_on_host.is_empty() || d.path_in_container.is_empty() {
            return Err(kanto(
                f,
                "both path on the host and in the container must be specified for a device mapping",
            ));
        }
        if d.cgroup_permissions.is_empty() {
            return Err(kanto(
                format!("{f}.cgroup_permissions"),
                format!(
                    "the cgroup permissions for device mapping {}:{} are not provided",
                    d.path_on_host, d.path_in_container
                ),
            ));
        }
        if !d
            .cgroup_permissions
            .chars()
            .all(|c| matches!(c, 'r' | 'w' | 'm'))
        {
            return Err(err(
                format!("{f}.cgroup_permissions"),
                format!("invalid cgroup permissions {:?} for device mapping {}:{}, expected a combination of r, w and m", d.cgroup_permissions, d.path_on_host, d.path_in_container),
            ));
        }
    }
    let log = &hc.log_config;
    let driver = &log.driver_config;
    match driver.driver_type.as_str() {
        LOG_DRIVER_JSON_FILE => {
            if driver.max_files < 1 {
                return Err(kanto(
                    "host_config.log_config.driver_config.max_files",
                    "max log files cannot be < 1",
                ));
            }
            if driver.max_files > MAX_LOG_FILES {
                return Err(err(
                    "host_config.log_config.driver_config.max_files",
                    format!(
                        "max log files {} is more than {MAX_LOG_FILES}",
                        driver.max_files
                    ),
                ));
            }
            if driver.max_size.is_empty() {
                return Err(kanto(
                    "host_config.log_config.driver_config.max_size",
                    "max logs size must be set",
                ));
            }
            if parse_size(&driver.max_size).is_none() {
                return Err(kanto(
                    "host_config.log_config.driver_config.max_size",
                    format!("invalid format of max logs size - {}", driver.max_size),
                ));
            }
            if !driver.root_dir.is_empty() && !driver.root_dir.starts_with('/') {
                // Kanto's log manager says so at create.
                return Err(kanto(
                    "host_config.log_config.driver_config.root_dir",
                    format!(
                        "root dir for container log, {} should be an absolute path",
                        driver.root_dir
                    ),
                ));
            }
        }
        LOG_DRIVER_NONE => {}
        _ => {
            return Err(kanto(
                "host_config.log_config.driver_config.type",
                "unsupported log driver configuration",
            ))
        }
    }
    match log.mode_config.mode.as_str() {
        LOG_MODE_BLOCKING => {}
        LOG_MODE_NON_BLOCKING => {
            if log.mode_config.max_buffer_size.is_empty() {
                return Err(kanto(
                    "host_config.log_config.mode_config.max_buffer_size",
                    "max buffer size must be set",
                ));
            }
            if parse_size(&log.mode_config.max_buffer_size).is_none() {
                return Err(kanto(
                    "host_config.log_config.mode_config.max_buffer_size",
                    format!(
                        "invalid format of max buffer size - {}",
                        log.mode_config.max_buffer_size
                    ),
                ));
            }
        }
        _ => {
            return Err(kanto(
                "host_config.log_config.mode_config.mode",
                "unsupported log mode configuration",
            ))
        }
    }
    let rp = &hc.restart_policy;
    if rp.policy_type == RestartPolicyType::OnFailure {
        if rp.maximum_retry_count < 0 {
            return Err(kanto(
                "host_config.restart_policy.maximum_retry_count",
                "restart policy max retry count cannot be negative",
            ));
        }
        if rp.retry_timeout < 0 {
            return Err(kanto(
                "host_config.restart_policy.retry_timeout",
                "restart policy retry timeout cannot be negative",
            ));
        }
    } else if rp.maximum_retry_count != 0 {
        return Err(kanto(
            "host_config.restart_policy.maximum_retry_count",
            format!(
                "cannot use max retry count when the restart policy is {}",
                rp.policy_type.as_str()
            ),
        ));
    }
    if rp.retry_timeout > MAX_RETRY_TIMEOUT_NS {
        return Err(err(
            "host_config.restart_policy.retry_timeout",
            format!(
                "restart policy retry timeout {} s is more than a day ({} s)",
                rp.retry_timeout / 1_000_000_000,
                MAX_RETRY_TIMEOUT_NS / 1_000_000_000
            ),
        ));
    }
    if let Some(r) = &hc.resources {
        let parse = |field: &str, value: &str, what: &str| -> Result<i64, ValidationError> {
            if value.is_empty() {
                return Ok(0);
            }
            parse_size(value).ok_or_else(|| {
                kanto(
                    format!("host_config.resources.{field}"),
                    format!("invalid format of {what} - {value}"),
                )
            })
        };
        let limit = parse("memory", &r.memory, "memory")?;
        let reservation = parse(
            "memory_reservation",
            &r.memory_reservation,
            "memory reservation",
        )?;
        let swap = if r.memory_swap == "-1" {
            -1
        } else {
            parse("memory_swap", &r.memory_swap, "swap memory")?
        };
        if limit > 0 && limit < 3 * MIB {
            return Err(kanto(
                "host_config.resources.memory",
                "minimum memory allowed is 3M",
            ));
        }
        if swap > 0 {
            if r.memory.is_empty() {
                return Err(kanto(
                    "host_config.resources.memory_swap",
                    format!(
                        "swap memory - {}, memory must be set as well",
                        r.memory_swap
                    ),
                ));
            }
            if limit > swap {
                return Err(kanto(
                    "host_config.resources.memory_swap",
                    format!(
                        "swap memory - {} is less than memory - {}",
                        r.memory_swap, r.memory
                    ),
                ));
            }
        }
        if reservation > 0 && !r.memory.is_empty() && reservation > limit {
            return Err(kanto(
                "host_config.resources.memory_reservation",
                format!(
                    "reservation memory - {} must be lower than memory - {}",
                    r.memory_reservation, r.memory
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::defaults::fill_defaults;

    fn container(json: serde_json::Value) -> Container {
        let mut base = serde_json::json!({"container_name": "ok", "image": {"name": "busybox"}});
        crate::config::merge(&mut base, json);
        let mut c: Container = serde_json::from_value(base).unwrap();
        fill_defaults(&mut c, || "id-1".into());
        c
    }

    #[test]
    fn valid_containers_pass() {
        let cases = [
            serde_json::json!({}),
            serde_json::json!({"config": {"env": ["A=1", "B", "_c=x=y", "EMPTY="]}}),
            serde_json::json!({"host_config": {"resources": {"memory": "3M", "memory_reservation": "3M"}}}),
            serde_json::json!({"host_config": {"resources": {"memory": "10M", "memory_swap": "-1"}}}),
            serde_json::json!({"host_config": {"network_mode": "host", "extra_hosts": ["a:10.0.0.1"]}}),
            serde_json::json!({"host_config": {"extra_hosts": ["mosquitto:host_ip"], "port_mappings": [{"container_port": 80, "host_port": 8080, "host_ip": "localhost", "protocol": "udp"}]}}),
            serde_json::json!({"host_config": {"restart_policy": {"type": "on-failure", "maximum_retry_count": 3}}}),
            serde_json::json!({"host_config": {"privileged": true, "devices": []}}),
            serde_json::json!({"host_config": {"extra_capabilities": ["CAP_NET_ADMIN", "sys_time"]}}),
            // Kanto's clients send an empty one with every create.
            serde_json::json!({"image": {"name": "i", "decrypt_config": {"keys": [], "recipients": []}}}),
        ];
        for json in cases {
            let c = container(json.clone());
            assert_eq!(validate(&c), Ok(()), "{json}");
        }
        for m in super::super::tests_manifests() {
            let mut c = m;
            fill_defaults(&mut c, || "x".into());
            assert_eq!(validate(&c), Ok(()), "{}", c.container_name);
        }
    }

    /// Each refusal names the field; its text is Kanto's message where Kanto refuses the
    /// same input (`kanto`), else `field: message`.
    #[test]
    fn invalid_containers_name_the_field_with_kantos_texts() {
        use serde_json::json;
        // (input, field, Kanto's check, the whole text)
        let cases: &[(serde_json::Value, &str, bool, &str)] = &[
            (
                json!({"image": {"name": "i", "decrypt_config": {"keys": ["/k.pem"]}}}),
                "image.decrypt_config",
                false,
                "image.decrypt_config: encrypted images are not supported by leda-cm yet",
            ),
            (
                json!({"image": {"name": "i", "decrypt_config": {"recipients": ["pkcs7:/c.pem"]}}}),
                "image.decrypt_config",
                false,
                "image.decrypt_config: encrypted images are not supported by leda-cm yet",
            ),
            (
                json!({"container_name": "-bad"}),
                "container_name",
                true,
                "invalid container name format : -bad",
            ),
            (
                json!({"container_id": "../../etc"}),
                "container_id",
                false,
                "container_id: invalid container ID format : ../../etc",
            ),
            (
                json!({"container_name": "a b"}),
                "container_name",
                true,
                "invalid container name format : a b",
            ),
            (
                json!({"image": {"name": ""}}),
                "image.name",
                true,
                "the containers image configuration is invalid",
            ),
            (
                json!({"config": {"env": ["1A=x"]}}),
                "config.env[0]",
                true,
                "invalid environmental variable declaration provided : 1A=x",
            ),
            (
                json!({"config": {"env": ["OK=1", "BAD-NAME=2"]}}),
                "config.env[1]",
                true,
                "invalid environmental variable declaration provided : BAD-NAME=2",
            ),
            (
                // Kanto checks the host config before the environment.
                json!({"config": {"env": ["1A=x"]}, "host_config": {"resources": {"memory": "1k"}}}),
                "host_config.resources.memory",
                true,
                "minimum memory allowed is 3M",
            ),
            (
                json!({"host_config": {"privileged": true, "devices": [{"path_on_host": "/dev/null"}]}}),
                "host_config.devices",
                true,
                "cannot create the container as privileged and with specified devices at the same time - choose one of the options",
            ),
            (
                json!({"host_config": {"privileged": true, "extra_capabilities": ["CAP_SYS_TIME"]}}),
                "host_config.extra_capabilities",
                true,
                "cannot create the container as privileged and with extra capabilities at the same time - choose one of the options",
            ),
            (
                json!({"host_config": {"extra_capabilities": ["CAP_FLY"]}}),
                "host_config.extra_capabilities[0]",
                false,
                "host_config.extra_capabilities[0]: unknown capability CAP_FLY",
            ),
            (
                json!({"host_config": {"resources": {"memory": "1k"}}}),
                "host_config.resources.memory",
                true,
                "minimum memory allowed is 3M",
            ),
            (
                json!({"host_config": {"resources": {"memory": "2M"}}}),
                "host_config.resources.memory",
                true,
                "minimum memory allowed is 3M",
            ),
            (
                json!({"host_config": {"resources": {"memory": "lots"}}}),
                "host_config.resources.memory",
                true,
                "invalid format of memory - lots",
            ),
            (
                json!({"host_config": {"resources": {"memory": "10M", "memory_reservation": "many"}}}),
                "host_config.resources.memory_reservation",
                true,
                "invalid format of memory reservation - many",
            ),
            (
                json!({"host_config": {"resources": {"memory": "10M", "memory_swap": "much"}}}),
                "host_config.resources.memory_swap",
                true,
                "invalid format of swap memory - much",
            ),
            (
                json!({"host_config": {"resources": {"memory": "10M", "memory_reservation": "20M"}}}),
                "host_config.resources.memory_reservation",
                true,
                "reservation memory - 20M must be lower than memory - 10M",
            ),
            (
                json!({"host_config": {"resources": {"memory": "10M", "memory_swap": "5M"}}}),
                "host_config.resources.memory_swap",
                true,
                "swap memory - 5M is less than memory - 10M",
            ),
            (
                json!({"host_config": {"resources": {"memory_swap": "5M"}}}),
                "host_config.resources.memory_swap",
                true,
                "swap memory - 5M, memory must be set as well",
            ),
            (
                json!({"host_config": {"network_mode": "host", "port_mappings": [{"container_port": 1, "host_port": 1}]}}),
                "host_config.port_mappings",
                true,
                "cannot use port mappings when in host network mode",
            ),
            (
                json!({"host_config": {"network_mode": "host", "extra_hosts": ["x:host_ip_eth0"]}}),
                "host_config.extra_hosts[0]",
                true,
                "cannot use the host_ip reserved key or any of its modifications when in host network mode",
            ),
            (
                json!({"host_config": {"extra_hosts": ["nocolon"]}}),
                "host_config.extra_hosts[0]",
                false,
                "host_config.extra_hosts[0]: invalid extra host \"nocolon\", expected name:IP",
            ),
            (
                json!({"host_config": {"port_mappings": [{"container_port": 80, "host_port": 90, "host_port_end": 85}]}}),
                "host_config.port_mappings[0].host_port_end",
                false,
                "host_config.port_mappings[0].host_port_end: host port range end 85 is below its start 90",
            ),
            (
                json!({"host_config": {"port_mappings": [{"container_port": 80, "host_port": 90, "proto": "icmp"}]}}),
                "host_config.port_mappings[0].proto",
                false,
                "host_config.port_mappings[0].proto: unsupported protocol icmp, expected tcp, udp or sctp",
            ),
            (
                json!({"host_config": {"port_mappings": [{"container_port": 80, "host_port": 90, "host_ip": "nowhere"}]}}),
                "host_config.port_mappings[0].host_ip",
                false,
                "host_config.port_mappings[0].host_ip: invalid host IP nowhere",
            ),
            (
                json!({"host_config": {"port_mappings": [{"host_port": 90}]}}),
                "host_config.port_mappings[0].container_port",
                false,
                "host_config.port_mappings[0].container_port: container port must be set",
            ),
            (
                json!({"host_config": {"devices": [{"path_in_container": "/dev/null"}]}}),
                "host_config.devices[0]",
                true,
                "both path on the host and in the container must be specified for a device mapping",
            ),
            (
                json!({"host_config": {"devices": [{"path_on_host": "/dev/null", "path_in_container": "/dev/n", "cgroup_permissions": "rwx"}]}}),
                "host_config.devices[0].cgroup_permissions",
                false,
                "host_config.devices[0].cgroup_permissions: invalid cgroup permissions \"rwx\" for device mapping /dev/null:/dev/n, expected a combination of r, w and m",
            ),
            (
                json!({"host_config": {"log_config": {"driver_config": {"type": "syslog"}}}}),
                "host_config.log_config.driver_config.type",
                true,
                "unsupported log driver configuration",
            ),
            (
                json!({"host_config": {"log_config": {"driver_config": {"type": "json-file", "max_size": "huge"}}}}),
                "host_config.log_config.driver_config.max_size",
                true,
                "invalid format of max logs size - huge",
            ),
            (
                json!({"host_config": {"log_config": {"driver_config": {"type": "json-file", "max_files": -1}}}}),
                "host_config.log_config.driver_config.max_files",
                true,
                "max log files cannot be < 1",
            ),
            (
                json!({"host_config": {"log_config": {"driver_config": {"type": "json-file", "max_files": 1001}}}}),
                "host_config.log_config.driver_config.max_files",
                false,
                "host_config.log_config.driver_config.max_files: max log files 1001 is more than 1000",
            ),
            (
                json!({"host_config": {"log_config": {"driver_config": {"root_dir": "relative/dir"}}}}),
                "host_config.log_config.driver_config.root_dir",
                true,
                "root dir for container log, relative/dir should be an absolute path",
            ),
            (
                json!({"host_config": {"log_config": {"mode_config": {"mode": "lossy"}}}}),
                "host_config.log_config.mode_config.mode",
                true,
                "unsupported log mode configuration",
            ),
            (
                json!({"host_config": {"log_config": {"mode_config": {"mode": "non-blocking", "max_buffer_size": "big"}}}}),
                "host_config.log_config.mode_config.max_buffer_size",
                true,
                "invalid format of max buffer size - big",
            ),
            (
                json!({"host_config": {"restart_policy": {"type": "always", "maximum_retry_count": 2}}}),
                "host_config.restart_policy.maximum_retry_count",
                true,
                "cannot use max retry count when the restart policy is always",
            ),
            (
                json!({"host_config": {"restart_policy": {"type": "on-failure", "maximum_retry_count": -2}}}),
                "host_config.restart_policy.maximum_retry_count",
                true,
                "restart policy max retry count cannot be negative",
            ),
            (
                json!({"host_config": {"restart_policy": {"type": "on-failure", "retry_timeout": -1}}}),
                "host_config.restart_policy.retry_timeout",
                true,
                "restart policy retry timeout cannot be negative",
            ),
            (
                json!({"host_config": {"runtime": "io.example.fast"}}),
                "host_config.runtime",
                false,
                "host_config.runtime: unsupported runtime io.example.fast",
            ),
            (
                json!({"mount_points": [{"source": "/a"}]}),
                "mount_points[0]",
                true,
                "source and destination must be set for a mount point",
            ),
            (
                json!({"mount_points": [{"source": "/a", "destination": "/b", "propagation_mode": "sideways"}]}),
                "mount_points[0].propagation_mode",
                true,
                "propagation mode must be set to one of the supported modes",
            ),
            (
                json!({"mount_points": [{"source": "/a", "destination": "b"}]}),
                "mount_points[0].destination",
                false,
                "mount_points[0].destination: b is not an absolute path",
            ),
            (
                json!({"mount_points": [{"source": "../../etc", "destination": "/hostetc"}]}),
                "mount_points[0].source",
                false,
                "mount_points[0].source: ../../etc is not an absolute path",
            ),
            (
                json!({"mount_points": [{"source": "data", "destination": "/data"}]}),
                "mount_points[0].source",
                false,
                "mount_points[0].source: data is not an absolute path",
            ),
        ];
        for (json, field, is_kanto, text) in cases {
            let c = container(json.clone());
            match validate(&c) {
                Err(e) => {
                    assert_eq!(e.field, *field, "{json}");
                    assert_eq!(e.kanto, *is_kanto, "{json}");
                    assert_eq!(e.to_string(), *text, "{json}");
                }
                Ok(()) => panic!("{json} should be invalid"),
            }
        }
    }

    #[test]
    fn empty_settings_kanto_requires_get_kantos_texts() {
        // fill_defaults fills these; validation still refuses them with Kanto's words when
        // they come empty (an update, or a container from elsewhere).
        let mut c = container(serde_json::json!({}));
        c.host_config.log_config.driver_config.max_size.clear();
        assert_eq!(
            validate(&c).unwrap_err().to_string(),
            "max logs size must be set"
        );
        let mut c = container(serde_json::json!({}));
        c.host_config.log_config.mode_config.mode = "non-blocking".into();
        c.host_config.log_config.mode_config.max_buffer_size.clear();
        assert_eq!(
            validate(&c).unwrap_err().to_string(),
            "max buffer size must be set"
        );
        let mut c = container(serde_json::json!({}));
        c.host_config.devices = vec![crate::model::DeviceMapping {
            path_on_host: "/dev/a".into(),
            path_in_container: "/dev/b".into(),
            cgroup_permissions: String::new(),
        }];
        assert_eq!(
            validate(&c).unwrap_err().to_string(),
            "the cgroup permissions for device mapping /dev/a:/dev/b are not provided"
        );
    }

    #[test]
    fn names_and_env_entries() {
        for ok in ["a", "A_b.c-d", "_x", "0abc", "databroker"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "ä"] {
            assert!(!valid_name(bad), "{bad}");
        }
        for ok in ["A=1", "A", "_", "a_1=", "X=a=b"] {
            assert!(valid_env(ok), "{ok}");
        }
        for bad in ["", "=1", "1=2", "A-B=1", "A B=1"] {
            assert!(!valid_env(bad), "{bad}");
        }
    }
}
