//! The remote-request policy (pure): what a desired state or a twin command may ask for
//! (`remote_requests` in the configuration). Every violation is named; none is fixed up.

use super::{Container, NetworkMode};
use crate::config::RemoteRequestsConfig;

/// Whether host path `source` lies under one of `allowed` (by whole path components).
fn under(source: &str, allowed: &[String]) -> bool {
    // `..` or `.` would escape the prefix once the kernel resolves it.
    if source.split('/').any(|c| c == ".." || c == ".") {
        return false;
    }
    allowed.iter().any(|prefix| {
        let prefix = prefix.trim_end_matches('/');
        prefix.is_empty()
            || source == prefix
            || source
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// What `c` asks for that `policy` does not allow, one message per violation (empty: allowed).
pub fn violations(c: &Container, policy: &RemoteRequestsConfig) -> Vec<String> {
    let name = &c.container_name;
    let hc = &c.host_config;
    let mut out = Vec::new();
    let mut refuse = |allowed: bool, what: String, key: &str| {
        if !allowed {
            out.push(format!(
                "container {name}: {what} is not allowed for remote requests (remote_requests.{key})"
            ))
        }
    };
    if hc.privileged {
        refuse(
            policy.privileged,
            "a privileged container".into(),
            "privileged",
        );
    }
    if hc.network_mode == NetworkMode::Host {
        refuse(
            policy.host_network,
            "the host network".into(),
            "host_network",
        );
    }
    if !hc.devices.is_empty() {
        let paths: Vec<&str> = hc.devices.iter().map(|d| d.path_on_host.as_str()).collect();
        refuse(
            policy.devices,
            format!("host devices ({})", paths.join(", ")),
            "devices",
        );
    }
    if !hc.extra_capabilities.is_empty() {
        refuse(
            policy.extra_capabilities,
            format!("extra capabilities ({})", hc.extra_capabilities.join(", ")),
            "extra_capabilities",
        );
    }
    if !hc.log_config.driver_config.root_dir.is_empty() {
        refuse(
            policy.log_dirs,
            format!("the log directory {}", hc.log_config.driver_config.root_dir),
            "log_dirs",
        );
    }
    let allowed_under = if policy.mount_sources.is_empty() {
        "nothing".to_string()
    } else {
        policy.mount_sources.join(", ")
    };
    for m in &c.mount_points {
        refuse(
            under(&m.source, &policy.mount_sources),
            format!("a mount of {} (allowed under: {allowed_under})", m.source),
            "mount_sources",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(json: serde_json::Value) -> Container {
        let mut base = serde_json::json!({"container_name": "app", "image": {"name": "busybox"}});
        crate::config::merge(&mut base, json);
        serde_json::from_value(base).unwrap()
    }

    fn policy(json: serde_json::Value) -> RemoteRequestsConfig {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn each_request_is_checked_against_the_policy() {
        let strict = RemoteRequestsConfig::default();
        let open = policy(serde_json::json!({
            "privileged": true, "host_network": true, "devices": true,
            "extra_capabilities": true, "log_dirs": true, "mount_sources": ["/"]
        }));
        let mount =
            |src: &str| serde_json::json!({"mount_points": [{"source": src, "destination": "/m"}]});
        // (request, violations under the default policy (by key), allowed when all is open)
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (serde_json::json!({}), vec![]),
            (
                serde_json::json!({"host_config": {"privileged": true}}),
                vec!["privileged"],
            ),
            (
                serde_json::json!({"host_config": {"network_mode": "host"}}),
                vec!["host_network"],
            ),
            (
                serde_json::json!({"host_config": {"devices": [{"path_on_host": "/dev/can0", "path_in_container": "/dev/can0", "cgroup_permissions": "rwm"}]}}),
                vec!["devices"],
            ),
            (
                serde_json::json!({"host_config": {"extra_capabilities": ["CAP_SYS_ADMIN"]}}),
                vec!["extra_capabilities"],
            ),
            (
                serde_json::json!({"host_config": {"log_config": {"driver_config": {"type": "json-file", "root_dir": "/etc"}}}}),
                vec!["log_dirs"],
            ),
            // Leda's documented certificate mounts
            (mount("/data/var/certificates/device.crt"), vec![]),
            (mount("/data"), vec![]),
            (mount("/database"), vec!["mount_sources"]),
            (mount("/data/../etc"), vec!["mount_sources"]),
            (mount("/etc"), vec!["mount_sources"]),
            (mount("/"), vec!["mount_sources"]),
            (
                serde_json::json!({"host_config": {"privileged": true, "network_mode": "host"}, "mount_points": [{"source": "/", "destination": "/host"}]}),
                vec!["privileged", "host_network", "mount_sources"],
            ),
        ];
        for (json, want) in cases {
            let c = container(json.clone());
            let got = violations(&c, &strict);
            assert_eq!(got.len(), want.len(), "{json}: {got:?}");
            for (v, key) in got.iter().zip(&want) {
                assert!(v.contains(&format!("(remote_requests.{key})")), "{v}");
                assert!(v.starts_with("container app: "), "{v}");
            }
            // Opened up, the same request passes, except a path that escapes its prefix.
            let escapes = json.to_string().contains("..");
            assert_eq!(violations(&c, &open).is_empty(), !escapes, "{json}");
        }
        // No mount allowed at all.
        let none = policy(serde_json::json!({"mount_sources": []}));
        let v = violations(&container(mount("/data/x")), &none);
        assert!(v[0].contains("allowed under: nothing"), "{v:?}");
    }

    #[test]
    fn mount_sources_must_be_absolute_and_normalised() {
        for bad in ["data", "/data/../etc", "./x", "/a/./b"] {
            let r: Result<RemoteRequestsConfig, _> =
                serde_json::from_value(serde_json::json!({"mount_sources": [bad]}));
            assert!(r.is_err(), "{bad}");
        }
    }
}
