//! Kanto's defaults for a container (`FillDefaults`, `FillMemorySwap`), as a pure function.

use super::{size, Container};

pub const RUNTIME: &str = "io.containerd.runc.v2";
pub const LOG_DRIVER_JSON_FILE: &str = "json-file";
pub const LOG_DRIVER_NONE: &str = "none";
pub const LOG_MAX_FILES: i64 = 2;
pub const LOG_MAX_SIZE: &str = "100M";
pub const LOG_MODE_BLOCKING: &str = "blocking";
pub const LOG_MODE_NON_BLOCKING: &str = "non-blocking";
pub const LOG_MAX_BUFFER_SIZE: &str = "1M";
pub const PROPAGATION_DEFAULT: &str = "rprivate";
pub const DEVICE_PERMISSIONS: &str = "rwm";
pub const MEMORY_UNLIMITED: &str = "-1";

/// Fills every unset field with Kanto's default. `new_id` makes the ID (a UUIDv4 in the
/// daemon) when none is given.
pub fn fill_defaults(c: &mut Container, new_id: impl FnOnce() -> String) {
    if c.container_id.is_empty() {
        c.container_id = new_id();
    }
    if c.container_name.is_empty() {
        c.container_name = c.container_id.clone();
    }
    if c.domain_name.is_empty() {
        c.domain_name = format!("{}-domain", c.container_name);
    }
    if c.host_name.is_empty() {
        c.host_name = format!("{}-host", c.container_name);
    }
    let hc = &mut c.host_config;
    if hc.runtime.is_empty() {
        hc.runtime = RUNTIME.into();
    }
    let driver = &mut hc.log_config.driver_config;
    if driver.driver_type.is_empty() {
        driver.driver_type = LOG_DRIVER_JSON_FILE.into();
    }
    if driver.driver_type == LOG_DRIVER_JSON_FILE {
        if driver.max_files == 0 {
            driver.max_files = LOG_MAX_FILES;
        }
        if driver.max_size.is_empty() {
            driver.max_size = LOG_MAX_SIZE.into();
        }
    } else if driver.driver_type == LOG_DRIVER_NONE {
        driver.max_files = 0;
        driver.max_size.clear();
    }
    let mode = &mut hc.log_config.mode_config;
    if mode.mode.is_empty() {
        mode.mode = LOG_MODE_BLOCKING.into();
    }
    if mode.mode == LOG_MODE_BLOCKING {
        mode.max_buffer_size.clear();
    } else if mode.mode == LOG_MODE_NON_BLOCKING && mode.max_buffer_size.is_empty() {
        mode.max_buffer_size = LOG_MAX_BUFFER_SIZE.into();
    }
    for dev in &mut hc.devices {
        if dev.path_in_container.is_empty() {
            dev.path_in_container = dev.path_on_host.clone();
        }
        if dev.cgroup_permissions.is_empty() {
            dev.cgroup_permissions = DEVICE_PERMISSIONS.into();
        }
    }
    for p in &mut hc.port_mappings {
        if p.host_ip.is_empty() {
            p.host_ip = "0.0.0.0".into();
        }
        if p.host_port_end == 0 {
            p.host_port_end = p.host_port;
        }
        if p.proto.is_empty() {
            p.proto = "tcp".into();
        }
    }
    for m in &mut c.mount_points {
        if m.propagation_mode.is_empty() {
            m.propagation_mode = PROPAGATION_DEFAULT.into();
        }
    }
    fill_memory_swap(c);
}

/// Swap defaults to twice the memory limit; `"-1"` means unlimited and is stored as unset.
fn fill_memory_swap(c: &mut Container) {
    let Some(r) = c.host_config.resources.as_mut() else {
        return;
    };
    if !r.memory.is_empty() && r.memory_swap.is_empty() {
        if let Some(doubled) = size::recalculate(&r.memory, |x| x * 2.0) {
            r.memory_swap = doubled;
        }
    } else if r.memory_swap == MEMORY_UNLIMITED {
        r.memory_swap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NetworkMode, PortMapping, Resources, RestartPolicyType};

    #[test]
    fn kanto_defaults() {
        let mut c: Container = serde_json::from_str(r#"{"image":{"name":"busybox"}}"#).unwrap();
        fill_defaults(&mut c, || "0f1e2d3c-id".into());
        assert_eq!(c.container_id, "0f1e2d3c-id");
        assert_eq!(c.container_name, "0f1e2d3c-id");
        assert_eq!(c.domain_name, "0f1e2d3c-id-domain");
        assert_eq!(c.host_name, "0f1e2d3c-id-host");
        let hc = &c.host_config;
        assert_eq!(hc.network_mode, NetworkMode::Bridge);
        assert_eq!(hc.runtime, RUNTIME);
        assert_eq!(
            hc.restart_policy.policy_type,
            RestartPolicyType::UnlessStopped
        );
        assert_eq!(hc.log_config.driver_config.driver_type, "json-file");
        assert_eq!(hc.log_config.driver_config.max_files, 2);
        assert_eq!(hc.log_config.driver_config.max_size, "100M");
        assert_eq!(hc.log_config.mode_config.mode, "blocking");
    }

    #[test]
    fn named_container_and_partial_settings() {
        let text = r#"{"container_name":"seat","image":{"name":"i"},
            "mount_points":[{"source":"/a","destination":"/b"}],
            "host_config":{"devices":[{"path_on_host":"/dev/ttyS0"}],
              "port_mappings":[{"container_port":80,"host_port":8080}],
              "log_config":{"driver_config":{"type":"none","max_files":3},
                            "mode_config":{"mode":"non-blocking"}},
              "resources":{"memory":"100M"}}}"#;
        let mut c: Container = serde_json::from_str(text).unwrap();
        fill_defaults(&mut c, || "gen-id".into());
        assert_eq!(c.container_id, "gen-id");
        assert_eq!(c.container_name, "seat");
        assert_eq!(c.domain_name, "seat-domain");
        assert_eq!(c.mount_points[0].propagation_mode, "rprivate");
        let hc = &c.host_config;
        assert_eq!(hc.devices[0].path_in_container, "/dev/ttyS0");
        assert_eq!(hc.devices[0].cgroup_permissions, "rwm");
        assert_eq!(
            hc.port_mappings[0],
            PortMapping {
                proto: "tcp".into(),
                container_port: 80,
                host_ip: "0.0.0.0".into(),
                host_port: 8080,
                host_port_end: 8080
            }
        );
        assert_eq!(hc.log_config.driver_config.max_files, 0);
        assert_eq!(hc.log_config.mode_config.max_buffer_size, "1M");
        assert_eq!(hc.resources.as_ref().unwrap().memory_swap, "200M");
    }

    #[test]
    fn unlimited_swap_is_stored_as_unset() {
        let mut c = Container {
            container_id: "x".into(),
            ..Default::default()
        };
        c.host_config.resources = Some(Resources {
            memory: "10M".into(),
            memory_reservation: String::new(),
            memory_swap: "-1".into(),
        });
        fill_defaults(&mut c, String::new);
        assert_eq!(c.host_config.resources.unwrap().memory_swap, "");
    }
}
