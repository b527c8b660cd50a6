//! Validation of a container (after `fill_defaults`), before anything touches containerd.
//! Each error names the field (as a JSON path of the internal format) and keeps Kanto's
//! wording where Kanto has a message.

use std::net::IpAddr;

use super::defaults::{
    LOG_DRIVER_JSON_FILE, LOG_DRIVER_NONE, LOG_MODE_BLOCKING, LOG_MODE_NON_BLOCKING,
};
use super::size::{parse_size, MIB};
use super::{Container, NetworkMode, RestartPolicyType};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

fn err(field: impl Into<String>, message: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        message: message.into(),
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
        return Err(err("container_id", "container ID must be provided"));
    }
    // The ID names files and directories: the name rules keep it a single path component.
    if !valid_name(&c.container_id) {
        return Err(err(
            "container_id",
            format!("invalid container ID format : {}", c.container_id),
        ));
    }
    if c.image.name.trim().is_empty() {
        return Err(err("image.name", "image is not provided"));
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
        return Err(err(
            "container_name",
            format!("invalid container name format : {}", c.container_name),
        ));
    }
    for (i, m) in c.mount_points.iter().enumerate() {
        let f = format!("mount_points[{i}]");
        if m.source.is_empty() || m.destination.is_empty() {
            return Err(err(
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
            return Err(err(
                format!("{f}.propagation_mode"),
                format!(
                    "propagation mode must be set to one of the supported modes (rprivate, private, rshared, shared, rslave, slave), not {:?}",
                    m.propagation_mode
                ),
            ));
        }
    }
    for (i, e) in c.config.env.iter().enumerate() {
        if !valid_env(e) {
            return Err(err(
                format!("config.env[{i}]"),
                format!("invalid environmental variable declaration provided : {e}"),
            ));
        }
    }
    validate_host_config(c)
}

fn validate_host_config(c: &Container) -> Result<(), ValidationError> {
    let hc = &c.host_config;
    if hc.privileged && !hc.devices.is_empty() {
        return Err(err(
            "host_config.devices",
            "cannot create the container as privileged and with specified devices at the same time - choose one of the options",
        ));
    }
    if hc.privileged && !hc.extra_capabilities.is_empty() {
        return Err(err(
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
            return Err(err(
                "host_config.port_mappings",
                "cannot use port mappings when in host network mode",
            ));
        }
        if let Some(i) = hc.extra_hosts.iter().position(|h| is_host_ip_entry(h)) {
            return Err(err(
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
            return Err(err(
                f,
                "both path on the host and in the container must be specified for a device mapping",
            ));
        }
        if d.cgroup_permissions.is_empty()
            || !d
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
                return Err(err(
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
            if parse_size(&driver.max_size).is_none() {
                return Err(err(
                    "host_config.log_config.driver_config.max_size",
                    format!("invalid format of max logs size - {}", driver.max_size),
                ));
            }
            if !driver.root_dir.is_empty() && !driver.root_dir.starts_with('/') {
                return Err(err(
                    "host_config.log_config.driver_config.root_dir",
                    format!(
                        "root dir for container log, {} should be an absolute path",
                        driver.root_dir
                    ),
                ));
            }
        }
        LOG_DRIVER_NONE => {}
        other => {
            return Err(err(
                "host_config.log_config.driver_config.type",
                format!("unsupported log driver configuration {other}, expected json-file or none"),
            ))
        }
    }
    match log.mode_config.mode.as_str() {
        LOG_MODE_BLOCKING => {}
        LOG_MODE_NON_BLOCKING => {
            if parse_size(&log.mode_config.max_buffer_size).is_none() {
                return Err(err(
                    "host_config.log_config.mode_config.max_buffer_size",
                    format!(
                        "invalid format of max buffer size - {}",
                        log.mode_config.max_buffer_size
                    ),
                ));
            }
        }
        other => {
            return Err(err(
                "host_config.log_config.mode_config.mode",
                format!(
                    "unsupported log mode configuration {other}, expected blocking or non-blocking"
                ),
            ))
        }
    }
    let rp = &hc.restart_policy;
    if rp.policy_type == RestartPolicyType::OnFailure {
        if rp.maximum_retry_count < 0 {
            return Err(err(
                "host_config.restart_policy.maximum_retry_count",
                "restart policy max retry count cannot be negative",
            ));
        }
        if rp.retry_timeout < 0 {
            return Err(err(
                "host_config.restart_policy.retry_timeout",
                "restart policy retry timeout cannot be negative",
            ));
        }
    } else if rp.maximum_retry_count != 0 {
        return Err(err(
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
                err(
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
            return Err(err(
                "host_config.resources.memory",
                "minimum memory allowed is 3M",
            ));
        }
        if swap > 0 {
            if r.memory.is_empty() {
                return Err(err(
                    "host_config.resources.memory_swap",
                    format!(
                        "swap memory - {}, memory must be set as well",
                        r.memory_swap
                    ),
                ));
            }
            if limit > swap {
                return Err(err(
                    "host_config.resources.memory_swap",
                    format!(
                        "swap memory - {} is less than memory - {}",
                        r.memory_swap, r.memory
                    ),
                ));
            }
        }
        if reservation > 0 && !r.memory.is_empty() && reservation > limit {
            return Err(err(
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

    #[test]
    fn invalid_containers_name_the_field() {
        let cases: &[(serde_json::Value, &str, &str)] = &[
            (
                serde_json::json!({"image": {"name": "i", "decrypt_config": {"keys": ["/k.pem"]}}}),
                "image.decrypt_config",
                "encrypted images are not supported",
            ),
            (
                serde_json::json!({"image": {"name": "i", "decrypt_config": {"recipients": ["pkcs7:/c.pem"]}}}),
                "image.decrypt_config",
                "encrypted images are not supported",
            ),
            (
                serde_json::json!({"container_name": "-bad"}),
                "container_name",
                "invalid container name format : -bad",
            ),
            (
                serde_json::json!({"container_id": "../../etc"}),
                "container_id",
                "invalid container ID format : ../../etc",
            ),
            (
                serde_json::json!({"container_name": "a b"}),
                "container_name",
                "invalid container name format",
            ),
            (
                serde_json::json!({"image": {"name": ""}}),
                "image.name",
                "image is not provided",
            ),
            (
                serde_json::json!({"config": {"env": ["1A=x"]}}),
                "config.env[0]",
                "invalid environmental variable declaration provided : 1A=x",
            ),
            (
                serde_json::json!({"config": {"env": ["OK=1", "BAD-NAME=2"]}}),
                "config.env[1]",
                "invalid environmental",
            ),
            (
                serde_json::json!({"host_config": {"privileged": true, "devices": [{"path_on_host": "/dev/null"}]}}),
                "host_config.devices",
                "privileged and with specified devices",
            ),
            (
                serde_json::json!({"host_config": {"privileged": true, "extra_capabilities": ["CAP_SYS_TIME"]}}),
                "host_config.extra_capabilities",
                "privileged and with extra capabilities",
            ),
            (
                serde_json::json!({"host_config": {"extra_capabilities": ["CAP_FLY"]}}),
                "host_config.extra_capabilities[0]",
                "unknown capability CAP_FLY",
            ),
            (
                serde_json::json!({"host_config": {"resources": {"memory": "1k"}}}),
                "host_config.resources.memory",
                "minimum memory allowed is 3M",
            ),
            (
                serde_json::json!({"host_config": {"resources": {"memory": "2M"}}}),
                "host_config.resources.memory",
                "minimum memory allowed is 3M",
            ),
            (
                serde_json::json!({"host_config": {"resources": {"memory": "lots"}}}),
                "host_config.resources.memory",
                "invalid format of memory - lots",
            ),
            (
                serde_json::json!({"host_config": {"resources": {"memory": "10M", "memory_reservation": "20M"}}}),
                "host_config.resources.memory_reservation",
                "must be lower than memory",
            ),
            (
                serde_json::json!({"host_config": {"resources": {"memory": "10M", "memory_swap": "5M"}}}),
                "host_config.resources.memory_swap",
                "is less than memory",
            ),
            (
                serde_json::json!({"host_config": {"resources": {"memory_swap": "5M"}}}),
                "host_config.resources.memory_swap",
                "memory must be set as well",
            ),
            (
                serde_json::json!({"host_config": {"network_mode": "host", "port_mappings": [{"container_port": 1, "host_port": 1}]}}),
                "host_config.port_mappings",
                "host network mode",
            ),
            (
                serde_json::json!({"host_config": {"network_mode": "host", "extra_hosts": ["x:host_ip_eth0"]}}),
                "host_config.extra_hosts[0]",
                "host_ip reserved key",
            ),
            (
                serde_json::json!({"host_config": {"extra_hosts": ["nocolon"]}}),
                "host_config.extra_hosts[0]",
                "expected name:IP",
            ),
            (
                serde_json::json!({"host_config": {"port_mappings": [{"container_port": 80, "host_port": 90, "host_port_end": 85}]}}),
                "host_config.port_mappings[0].host_port_end",
                "below its start",
            ),
            (
                serde_json::json!({"host_config": {"port_mappings": [{"container_port": 80, "host_port": 90, "proto": "icmp"}]}}),
                "host_config.port_mappings[0].proto",
                "unsupported protocol icmp",
            ),
            (
                serde_json::json!({"host_config": {"port_mappings": [{"container_port": 80, "host_port": 90, "host_ip": "nowhere"}]}}),
                "host_config.port_mappings[0].host_ip",
                "invalid host IP",
            ),
            (
                serde_json::json!({"host_config": {"port_mappings": [{"host_port": 90}]}}),
                "host_config.port_mappings[0].container_port",
                "must be set",
            ),
            (
                serde_json::json!({"host_config": {"devices": [{"path_on_host": "/dev/null", "cgroup_permissions": "rwx"}]}}),
                "host_config.devices[0].cgroup_permissions",
                "invalid cgroup permissions",
            ),
            (
                serde_json::json!({"host_config": {"log_config": {"driver_config": {"type": "syslog"}}}}),
                "host_config.log_config.driver_config.type",
                "unsupported log driver",
            ),
            (
                serde_json::json!({"host_config": {"log_config": {"driver_config": {"type": "json-file", "max_size": "huge"}}}}),
                "host_config.log_config.driver_config.max_size",
                "invalid format of max logs size - huge",
            ),
            (
                serde_json::json!({"host_config": {"log_config": {"driver_config": {"type": "json-file", "max_files": -1}}}}),
                "host_config.log_config.driver_config.max_files",
                "max log files cannot be < 1",
            ),
            (
                serde_json::json!({"host_config": {"log_config": {"driver_config": {"root_dir": "relative/dir"}}}}),
                "host_config.log_config.driver_config.root_dir",
                "absolute path",
            ),
            (
                serde_json::json!({"host_config": {"log_config": {"mode_config": {"mode": "lossy"}}}}),
                "host_config.log_config.mode_config.mode",
                "unsupported log mode",
            ),
            (
                serde_json::json!({"host_config": {"restart_policy": {"type": "always", "maximum_retry_count": 2}}}),
                "host_config.restart_policy.maximum_retry_count",
                "cannot use max retry count when the restart policy is always",
            ),
            (
                serde_json::json!({"host_config": {"restart_policy": {"type": "on-failure", "maximum_retry_count": -2}}}),
                "host_config.restart_policy.maximum_retry_count",
                "cannot be negative",
            ),
            (
                serde_json::json!({"host_config": {"runtime": "io.example.fast"}}),
                "host_config.runtime",
                "unsupported runtime",
            ),
            (
                serde_json::json!({"mount_points": [{"source": "/a"}]}),
                "mount_points[0]",
                "source and destination must be set",
            ),
            (
                serde_json::json!({"mount_points": [{"source": "/a", "destination": "/b", "propagation_mode": "sideways"}]}),
                "mount_points[0].propagation_mode",
                "supported modes",
            ),
            (
                serde_json::json!({"mount_points": [{"source": "/a", "destination": "b"}]}),
                "mount_points[0].destination",
                "absolute path",
            ),
            (
                serde_json::json!({"mount_points": [{"source": "../../etc", "destination": "/hostetc"}]}),
                "mount_points[0].source",
                "../../etc is not an absolute path",
            ),
            (
                serde_json::json!({"mount_points": [{"source": "data", "destination": "/data"}]}),
                "mount_points[0].source",
                "absolute path",
            ),
        ];
        for (json, field, message) in cases {
            let c = container(json.clone());
            match validate(&c) {
                Err(e) => {
                    assert_eq!(e.field, *field, "{json}");
                    assert!(e.message.contains(message), "{json}: {}", e.message);
                }
                Ok(()) => panic!("{json} should be invalid"),
            }
        }
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
