//! Container model ↔ the local API's protobuf types (pure). On the wire the restart
//! policy's retry timeout is in seconds (the model keeps Kanto's nanoseconds), the state's
//! status is its name, hook types are names.
//!
//! Which sub-messages a container carries is Kanto's: `image`, `host_config` (with
//! `restart_policy` and `log_config`), `io_config` and `state` always; `config` only with an
//! environment or a command, `host_config.resources` and `image.decrypt_config` only when
//! set, `network_settings` only while the container is on a network (Kanto's network
//! manager sets it at start and drops it when the task ends).

use std::collections::HashMap;

use super::pb::types::containers as pb;
use crate::manager::{StopOptions, UpdateOptions};
use crate::model::{self, Container, NetworkMode, RestartPolicyType, Status};

const HOOK_TYPES: [&str; 3] = ["Prestart", "Poststart", "Poststop"];

pub fn to_pb(c: &Container) -> pb::Container {
    let hc = &c.host_config;
    pb::Container {
        id: c.container_id.clone(),
        name: c.container_name.clone(),
        image: Some(pb::Image {
            name: c.image.name.clone(),
            decrypt_config: c.image.decrypt_config.as_ref().map(|d| pb::DecryptConfig {
                keys: d.keys.clone(),
                recipients: d.recipients.clone(),
            }),
        }),
        host_name: c.host_name.clone(),
        domain_name: c.domain_name.clone(),
        resolv_conf_path: c.resolv_conf_path.clone(),
        hosts_path: c.hosts_path.clone(),
        hostname_path: c.hostname_path.clone(),
        mounts: c
            .mount_points
            .iter()
            .map(|m| pb::MountPoint {
                destination: m.destination.clone(),
                source: m.source.clone(),
                propagation_mode: m.propagation_mode.clone(),
            })
            .collect(),
        hooks: c
            .hooks
            .iter()
            .map(|h| pb::Hook {
                path: h.path.clone(),
                args: h.args.clone(),
                env: h.env.clone(),
                timeout: h.timeout.clamp(i32::MIN.into(), i32::MAX.into()) as i32,
                r#type: HOOK_TYPES
                    .get(h.hook_type as usize)
                    .unwrap_or(&"Unknown")
                    .to_string(),
            })
            .collect(),
        host_config: Some(pb::HostConfig {
            devices: hc
                .devices
                .iter()
                .map(|d| pb::DeviceMapping {
                    path_on_host: d.path_on_host.clone(),
                    path_in_container: d.path_in_container.clone(),
                    cgroup_permissions: d.cgroup_permissions.clone(),
                })
                .collect(),
            network_mode: hc.network_mode.as_str().to_string(),
            privileged: hc.privileged,
            restart_policy: Some(restart_policy_to_pb(&hc.restart_policy)),
            runtime: hc.runtime.clone(),
            extra_hosts: hc.extra_hosts.clone(),
            port_mappings: hc
                .port_mappings
                .iter()
                .map(|p| pb::PortMapping {
                    protocol: p.proto.clone(),
                    host_ip: p.host_ip.clone(),
                    host_port: p.host_port as i64,
                    host_port_end: p.host_port_end as i64,
                    container_port: p.container_port as i64,
                })
                .collect(),
            log_config: Some(pb::LogConfiguration {
                driver_config: Some(pb::LogDriverConfiguration {
                    r#type: hc.log_config.driver_config.driver_type.clone(),
                    max_files: hc.log_config.driver_config.max_files,
                    max_size: hc.log_config.driver_config.max_size.clone(),
                    root_dir: hc.log_config.driver_config.root_dir.clone(),
                }),
                mode_config: Some(pb::LogModeConfiguration {
                    mode: hc.log_config.mode_config.mode.clone(),
                    max_buffer_size: hc.log_config.mode_config.max_buffer_size.clone(),
                }),
            }),
            resources: hc.resources.as_ref().map(resources_to_pb),
            extra_capabilities: hc.extra_capabilities.clone(),
        }),
        io_config: Some(pb::IoConfig {
            attach_stderr: c.io_config.attach_stderr,
            attach_stdin: c.io_config.attach_stdin,
            attach_stdout: c.io_config.attach_stdout,
            open_stdin: c.io_config.open_stdin,
            stdin_once: c.io_config.stdin_once,
            tty: c.io_config.tty,
        }),
        config: (!c.config.env.is_empty() || !c.config.cmd.is_empty()).then(|| {
            pb::ContainerConfiguration {
                env: c.config.env.clone(),
                cmd: c.config.cmd.clone(),
            }
        }),
        network_settings: attached(&c.network_settings).then(|| pb::NetworkSettings {
            networks: c
                .network_settings
                .networks
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        pb::EndpointSettings {
                            id: e.id.clone(),
                            gateway: e.gateway.clone(),
                            ip_address: e.ip_address.clone(),
                            mac_address: e.mac_address.clone(),
                            network_id: e.network_id.clone(),
                        },
                    )
                })
                .collect::<HashMap<_, _>>(),
            sandbox_id: c.network_settings.sandbox_id.clone(),
            sandbox_key: c.network_settings.sandbox_key.clone(),
            network_controller_id: c.network_settings.network_controller_id.clone(),
        }),
        state: Some(pb::State {
            pid: c.state.pid,
            started_at: c.state.started_at.clone(),
            error: c.state.error.clone(),
            exit_code: c.state.exit_code,
            finished_at: c.state.finished_at.clone(),
            exited: c.state.exited,
            dead: c.state.dead,
            restarting: c.state.restarting,
            paused: c.state.paused,
            running: c.state.running,
            status: c.state.status.name().to_string(),
            oom_killed: c.state.oom_killed,
            health: c.state.health.as_ref().map(|h| pb::Health {
                status: h.status.name().to_string(),
                failing_streak: h.failing_streak.into(),
                detail: h.detail.clone(),
            }),
        }),
        created: c.created.clone(),
        manually_stopped: c.manually_stopped,
        restart_count: c.restart_count,
    }
}

/// On a network now: its sandbox is set (the addresses of the last attachment stay in the
/// record, so that the next start asks for the same one, but are not shown).
fn attached(n: &model::NetworkSettings) -> bool {
    !n.sandbox_key.is_empty() || !n.sandbox_id.is_empty()
}

pub fn restart_policy_to_pb(p: &model::RestartPolicy) -> pb::RestartPolicy {
    pb::RestartPolicy {
        maximum_retry_count: p.maximum_retry_count,
        retry_timeout: p.retry_timeout / 1_000_000_000,
        r#type: p.policy_type.as_str().to_string(),
    }
}

fn resources_to_pb(r: &model::Resources) -> pb::Resources {
    pb::Resources {
        memory: r.memory.clone(),
        memory_reservation: r.memory_reservation.clone(),
        memory_swap: r.memory_swap.clone(),
    }
}

/// A wire value that does not fit the model (named by its field). Where Kanto's daemon
/// refuses the same value, the text is exactly Kanto's message; else `field: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError {
    pub field: String,
    pub message: String,
    /// Kanto refuses the same value with exactly `message`.
    pub kanto: bool,
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kanto {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ConvertError {}

/// leda-cm's own refusal (Kanto takes the value).
fn bad(field: &str, message: String) -> ConvertError {
    ConvertError {
        field: field.to_string(),
        message,
        kanto: false,
    }
}

/// A refusal Kanto makes too, in Kanto's words.
fn kanto(field: &str, message: String) -> ConvertError {
    ConvertError {
        field: field.to_string(),
        message,
        kanto: true,
    }
}

fn port(field: &str, v: i64) -> Result<u16, ConvertError> {
    u16::try_from(v).map_err(|_| bad(field, format!("port {v} is out of range")))
}

pub fn restart_policy_from_pb(p: &pb::RestartPolicy) -> Result<model::RestartPolicy, ConvertError> {
    let policy_type = if p.r#type.is_empty() {
        RestartPolicyType::default()
    } else {
        RestartPolicyType::parse(&p.r#type).ok_or_else(|| {
            kanto(
                "host_config.restart_policy.type",
                format!("unsupported restart policy type {}", p.r#type),
            )
        })?
    };
    Ok(model::RestartPolicy {
        maximum_retry_count: p.maximum_retry_count,
        retry_timeout: p.retry_timeout.saturating_mul(1_000_000_000),
        policy_type,
    })
}

pub fn from_pb(p: &pb::Container) -> Result<Container, ConvertError> {
    let mut c = Container {
        container_id: p.id.clone(),
        container_name: p.name.clone(),
        domain_name: p.domain_name.clone(),
        host_name: p.host_name.clone(),
        resolv_conf_path: p.resolv_conf_path.clone(),
        hosts_path: p.hosts_path.clone(),
        hostname_path: p.hostname_path.clone(),
        created: p.created.clone(),
        manually_stopped: p.manually_stopped,
        restart_count: p.restart_count,
        ..Default::default()
    };
    if let Some(i) = &p.image {
        c.image.name = i.name.clone();
        c.image.decrypt_config = i.decrypt_config.as_ref().map(|d| model::DecryptConfig {
            keys: d.keys.clone(),
            recipients: d.recipients.clone(),
        });
    }
    c.mount_points = p
        .mounts
        .iter()
        .map(|m| model::MountPoint {
            destination: m.destination.clone(),
            source: m.source.clone(),
            propagation_mode: m.propagation_mode.clone(),
        })
        .collect();
    c.hooks = p
        .hooks
        .iter()
        .map(|h| model::Hook {
            path: h.path.clone(),
            args: h.args.clone(),
            env: h.env.clone(),
            timeout: h.timeout as i64,
            hook_type: HOOK_TYPES
                .iter()
                .position(|t| t.eq_ignore_ascii_case(&h.r#type))
                .unwrap_or(3) as i64,
        })
        .collect();
    if let Some(hc) = &p.host_config {
        let m = &mut c.host_config;
        m.devices = hc
            .devices
            .iter()
            .map(|d| model::DeviceMapping {
                path_on_host: d.path_on_host.clone(),
                path_in_container: d.path_in_container.clone(),
                cgroup_permissions: d.cgroup_permissions.clone(),
            })
            .collect();
        m.network_mode = match hc.network_mode.as_str() {
            "" | "bridge" => NetworkMode::Bridge,
            "host" => NetworkMode::Host,
            other => {
                return Err(kanto(
                    "host_config.network_mode",
                    format!("unsupported network mode {other}"),
                ))
            }
        };
        m.privileged = hc.privileged;
        if let Some(rp) = &hc.restart_policy {
            m.restart_policy = restart_policy_from_pb(rp)?;
        }
        if !hc.runtime.is_empty() {
            m.runtime = hc.runtime.clone();
        }
        m.extra_hosts = hc.extra_hosts.clone();
        m.extra_capabilities = hc.extra_capabilities.clone();
        m.port_mappings = hc
            .port_mappings
            .iter()
            .enumerate()
            .map(|(i, pm)| {
                let f = |name: &str| format!("host_config.port_mappings[{i}].{name}");
                Ok(model::PortMapping {
                    proto: pm.protocol.clone(),
                    container_port: port(&f("container_port"), pm.container_port)?,
                    host_ip: pm.host_ip.clone(),
                    host_port: port(&f("host_port"), pm.host_port)?,
                    host_port_end: port(&f("host_port_end"), pm.host_port_end)?,
                })
            })
            .collect::<Result<_, ConvertError>>()?;
        if let Some(lc) = &hc.log_config {
            if let Some(d) = &lc.driver_config {
                m.log_config.driver_config = model::LogDriverConfig {
                    driver_type: d.r#type.clone(),
                    max_files: d.max_files,
                    max_size: d.max_size.clone(),
                    root_dir: d.root_dir.clone(),
                };
            }
            if let Some(mc) = &lc.mode_config {
                m.log_config.mode_config = model::LogModeConfig {
                    mode: mc.mode.clone(),
                    max_buffer_size: mc.max_buffer_size.clone(),
                };
            }
        }
        m.resources = hc.resources.as_ref().map(resources_from_pb);
    }
    if let Some(io) = &p.io_config {
        c.io_config = model::IoConfig {
            attach_stderr: io.attach_stderr,
            attach_stdin: io.attach_stdin,
            attach_stdout: io.attach_stdout,
            open_stdin: io.open_stdin,
            stdin_once: io.stdin_once,
            tty: io.tty,
        };
    }
    if let Some(cfg) = &p.config {
        c.config = model::ContainerConfig {
            env: cfg.env.clone(),
            cmd: cfg.cmd.clone(),
        };
    }
    if let Some(ns) = &p.network_settings {
        c.network_settings = model::NetworkSettings {
            networks: ns
                .networks
                .iter()
                .map(|(k, e)| {
                    (
                        k.clone(),
                        model::EndpointSettings {
                            id: e.id.clone(),
                            gateway: e.gateway.clone(),
                            ip_address: e.ip_address.clone(),
                            mac_address: e.mac_address.clone(),
                            network_id: e.network_id.clone(),
                        },
                    )
                })
                .collect(),
            sandbox_id: ns.sandbox_id.clone(),
            sandbox_key: ns.sandbox_key.clone(),
            network_controller_id: ns.network_controller_id.clone(),
        };
    }
    if let Some(s) = &p.state {
        c.state = model::State {
            pid: s.pid,
            started_at: s.started_at.clone(),
            error: s.error.clone(),
            exit_code: s.exit_code,
            finished_at: s.finished_at.clone(),
            exited: s.exited,
            dead: s.dead,
            restarting: s.restarting,
            paused: s.paused,
            running: s.running,
            oom_killed: s.oom_killed,
            status: Status::parse(&s.status).unwrap_or(Status::Unknown),
            // An unknown health is not shown rather than refused: it is only ever reported.
            health: s.health.as_ref().and_then(|h| {
                Some(model::Health {
                    status: model::HealthStatus::parse(&h.status)?,
                    failing_streak: u32::try_from(h.failing_streak).unwrap_or(0),
                    detail: h.detail.clone(),
                })
            }),
        };
    }
    Ok(c)
}

fn resources_from_pb(r: &pb::Resources) -> model::Resources {
    model::Resources {
        memory: r.memory.clone(),
        memory_reservation: r.memory_reservation.clone(),
        memory_swap: r.memory_swap.clone(),
    }
}

/// Kanto's stop options: a timeout in seconds (0: the daemon's default; negative is
/// refused in Kanto's words), at most a day (`model::validate::MAX_STOP_TIMEOUT_SECS`; more
/// is an error naming the field).
pub fn stop_options(o: Option<&pb::StopOptions>) -> Result<StopOptions, ConvertError> {
    let Some(o) = o else {
        return Ok(StopOptions::default());
    };
    let timeout = if o.timeout < 0 {
        return Err(kanto(
            "stop_options.timeout",
            format!("the timeout = {} shouldn't be negative", o.timeout),
        ));
    } else if o.timeout == 0 {
        None
    } else {
        model::validate::stop_timeout(o.timeout).map_err(|e| bad("stop_options.timeout", e))?
    };
    Ok(StopOptions {
        timeout,
        signal: (!o.signal.is_empty()).then(|| o.signal.clone()),
        force: o.force,
    })
}

pub fn update_options(o: Option<&pb::UpdateOptions>) -> Result<UpdateOptions, ConvertError> {
    let Some(o) = o else {
        return Ok(UpdateOptions::default());
    };
    Ok(UpdateOptions {
        restart_policy: o
            .restart_policy
            .as_ref()
            .map(restart_policy_from_pb)
            .transpose()?,
        resources: o.resources.as_ref().map(resources_from_pb),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn round_trips_the_leda_manifests() {
        for mut c in crate::model::tests_manifests() {
            crate::model::defaults::fill_defaults(&mut c, || "id".into());
            c.state = c.state.running(42, "2024-01-01T00:00:00Z");
            c.host_config.restart_policy.retry_timeout = 30_000_000_000;
            let back = from_pb(&to_pb(&c)).unwrap();
            // leda-cm's extension block and the started-before flag are not on the wire.
            let mut expected = c.clone();
            expected.leda_cm = None;
            expected.started_successfully_before = false;
            assert_eq!(back, expected, "{}", c.container_name);
        }
    }

    /// The health (field 1000 of State, a leda-cm extension) goes over the wire and back; a
    /// decoder that knows only Kanto's State fields skips it.
    #[test]
    fn health_crosses_the_wire_and_kantos_decoder_skips_it() {
        use crate::model::{Health, HealthStatus};
        use prost::Message;
        /// Kanto's State as its Go client knows it (fields 1 to 12).
        #[derive(Clone, PartialEq, prost::Message)]
        struct KantoState {
            #[prost(int64, tag = "1")]
            pid: i64,
            #[prost(string, tag = "11")]
            status: String,
            #[prost(bool, tag = "12")]
            oom_killed: bool,
        }
        for health in [
            None,
            Some(Health {
                status: HealthStatus::Starting,
                failing_streak: 2,
                detail: "the health command \"check\" exited with code 1".into(),
            }),
            Some(Health {
                status: HealthStatus::Healthy,
                failing_streak: 0,
                detail: String::new(),
            }),
            Some(Health {
                status: HealthStatus::Unhealthy,
                failing_streak: 3,
                detail: "health gate failed".into(),
            }),
        ] {
            let mut c = Container::default();
            c.state = c.state.running(7, "t");
            c.state.health = health.clone();
            let p = to_pb(&c);
            assert_eq!(from_pb(&p).unwrap().state.health, health);
            let wire = p.state.as_ref().unwrap().encode_to_vec();
            let kanto = KantoState::decode(wire.as_slice()).unwrap();
            assert_eq!((kanto.pid, kanto.status.as_str()), (7, "Running"));
        }
        // A status this build does not know is not shown.
        let mut p = to_pb(&Container::default());
        p.state.as_mut().unwrap().health = Some(pb::Health {
            status: "sleepy".into(),
            ..Default::default()
        });
        assert_eq!(from_pb(&p).unwrap().state.health, None);
    }

    /// The sub-messages a Get answer carries, as Kanto's daemon sends them.
    #[test]
    fn sub_messages_are_present_as_kanto_sends_them() {
        type Setup = fn(&mut Container);
        // (case, setup, config, network_settings, resources, decrypt_config)
        let cases: &[(&str, Setup, bool, bool, bool, bool)] = &[
            ("created, nothing set", |_| {}, false, false, false, false),
            (
                "a command",
                |c| c.config.cmd = vec!["sh".into()],
                true,
                false,
                false,
                false,
            ),
            (
                "an environment",
                |c| c.config.env = vec!["A=1".into()],
                true,
                false,
                false,
                false,
            ),
            (
                "resources",
                |c| {
                    c.host_config.resources = Some(model::Resources {
                        memory: "10M".into(),
                        ..Default::default()
                    })
                },
                false,
                false,
                true,
                false,
            ),
            (
                "an empty decrypt config as Kanto's clients send it",
                |c| c.image.decrypt_config = Some(Default::default()),
                false,
                false,
                false,
                true,
            ),
            (
                "running on the bridge",
                |c| {
                    c.network_settings.sandbox_key = "/proc/7/ns/net".into();
                    c.network_settings.networks.insert(
                        "kanto-cm0".into(),
                        model::EndpointSettings {
                            ip_address: "10.0.0.2".into(),
                            ..Default::default()
                        },
                    );
                },
                false,
                true,
                false,
                false,
            ),
            (
                "stopped, its last address kept in the record",
                |c| {
                    c.network_settings.networks.insert(
                        "kanto-cm0".into(),
                        model::EndpointSettings {
                            ip_address: "10.0.0.2".into(),
                            ..Default::default()
                        },
                    );
                },
                false,
                false,
                false,
                false,
            ),
        ];
        for (case, setup, config, network, resources, decrypt) in cases {
            let mut c = Container::default();
            crate::model::defaults::fill_defaults(&mut c, || "id".into());
            setup(&mut c);
            let p = to_pb(&c);
            let hc = p.host_config.as_ref().unwrap();
            let lc = hc.log_config.as_ref().unwrap();
            let always = [
                p.image.is_some(),
                p.io_config.is_some(),
                p.state.is_some(),
                hc.restart_policy.is_some(),
                lc.driver_config.is_some(),
                lc.mode_config.is_some(),
            ];
            assert_eq!(always, [true; 6], "{case}");
            assert_eq!(
                [
                    p.config.is_some(),
                    p.network_settings.is_some(),
                    hc.resources.is_some(),
                    p.image.as_ref().unwrap().decrypt_config.is_some(),
                ],
                [*config, *network, *resources, *decrypt],
                "{case}"
            );
        }
    }

    #[test]
    fn wire_units_and_names() {
        let mut c = Container::default();
        c.host_config.restart_policy.retry_timeout = 5_000_000_000;
        c.state = c.state.exited(3, true, "t");
        let p = to_pb(&c);
        assert_eq!(
            p.host_config
                .as_ref()
                .unwrap()
                .restart_policy
                .as_ref()
                .unwrap()
                .retry_timeout,
            5
        );
        assert_eq!(p.state.as_ref().unwrap().status, "Exited");
        assert!(p.state.as_ref().unwrap().oom_killed);

        let mut p = to_pb(&Container::default());
        p.host_config
            .as_mut()
            .unwrap()
            .port_mappings
            .push(pb::PortMapping {
                container_port: 70000,
                ..Default::default()
            });
        assert_eq!(
            from_pb(&p).unwrap_err().field,
            "host_config.port_mappings[0].container_port"
        );
        let mut p = to_pb(&Container::default());
        p.host_config
            .as_mut()
            .unwrap()
            .restart_policy
            .as_mut()
            .unwrap()
            .r#type = "sometimes".into();
        assert!(from_pb(&p).is_err());
    }

    /// The refusals of values Kanto refuses too are Kanto's texts, the others name the field.
    #[test]
    fn conversion_errors_are_kantos_texts_where_kanto_refuses_too() {
        type Edit = fn(&mut pb::Container);
        let cases: &[(Edit, &str, bool, &str)] = &[
            (
                |p| p.host_config.as_mut().unwrap().network_mode = "overlay".into(),
                "host_config.network_mode",
                true,
                "unsupported network mode overlay",
            ),
            (
                |p| {
                    p.host_config
                        .as_mut()
                        .unwrap()
                        .restart_policy
                        .as_mut()
                        .unwrap()
                        .r#type = "sometimes".into()
                },
                "host_config.restart_policy.type",
                true,
                "unsupported restart policy type sometimes",
            ),
            (
                |p| {
                    p.host_config
                        .as_mut()
                        .unwrap()
                        .port_mappings
                        .push(pb::PortMapping {
                            container_port: 70000,
                            ..Default::default()
                        })
                },
                "host_config.port_mappings[0].container_port",
                false,
                "host_config.port_mappings[0].container_port: port 70000 is out of range",
            ),
        ];
        for (edit, field, is_kanto, text) in cases {
            let mut p = to_pb(&Container::default());
            edit(&mut p);
            let e = from_pb(&p).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.kanto, e.to_string().as_str()),
                (*field, *is_kanto, *text)
            );
        }
        let stop = |timeout| {
            stop_options(Some(&pb::StopOptions {
                timeout,
                ..Default::default()
            }))
            .unwrap_err()
        };
        let cases = [
            (-5, true, "the timeout = -5 shouldn't be negative"),
            (
                86_401,
                false,
                "stop_options.timeout: timeout 86401: must be at most 86400 seconds (a day)",
            ),
        ];
        for (timeout, is_kanto, text) in cases {
            let e = stop(timeout);
            assert_eq!(
                (e.kanto, e.to_string().as_str()),
                (is_kanto, text),
                "{timeout}"
            );
        }
    }

    #[test]
    fn stop_options_default_to_the_daemons_timeout() {
        assert_eq!(stop_options(None), Ok(StopOptions::default()));
        let o = pb::StopOptions {
            timeout: 0,
            force: true,
            signal: String::new(),
        };
        assert_eq!(
            stop_options(Some(&o)),
            Ok(StopOptions {
                timeout: None,
                signal: None,
                force: true
            })
        );
        let o = pb::StopOptions {
            timeout: 7,
            force: false,
            signal: "SIGINT".into(),
        };
        assert_eq!(
            stop_options(Some(&o)).unwrap().timeout,
            Some(Duration::from_secs(7))
        );
    }

    /// What a create of the local API ends in before containerd: the conversion, the
    /// manager's defaults and validation.
    fn as_created(p: &pb::Container) -> Result<Container, String> {
        let mut c = from_pb(p).map_err(|e| e.to_string())?;
        crate::model::defaults::fill_defaults(&mut c, || "poison-id".into());
        crate::model::validate::validate(&c).map_err(|e| e.to_string())?;
        Ok(c)
    }

    /// Extreme values in every numeric field of a create, an update and a stop of the local
    /// API: InvalidArgument naming the field, or a container within the documented bounds;
    /// never a panic.
    #[test]
    fn extreme_numbers_are_refused_or_bounded() {
        use crate::model::poison;
        let mut base_model = crate::model::tests_manifests().remove(0);
        base_model.host_config.restart_policy.policy_type = RestartPolicyType::OnFailure;
        base_model.host_config.log_config.mode_config.mode = "non-blocking".into();
        base_model.hooks.push(model::Hook {
            path: "/bin/true".into(),
            ..Default::default()
        });
        let base = to_pb(&base_model);
        assert!(as_created(&base).is_ok());
        type Set = fn(&mut pb::Container, i64);
        fn hc(p: &mut pb::Container) -> &mut pb::HostConfig {
            p.host_config.as_mut().unwrap()
        }
        let ints: &[(&str, Set)] = &[
            ("restart_count", |p, v| p.restart_count = v),
            ("hooks[0].timeout", |p, v| {
                p.hooks[0].timeout = v.clamp(i32::MIN.into(), i32::MAX.into()) as i32
            }),
            ("maximum_retry_count", |p, v| {
                hc(p).restart_policy.as_mut().unwrap().maximum_retry_count = v
            }),
            ("retry_timeout", |p, v| {
                hc(p).restart_policy.as_mut().unwrap().retry_timeout = v
            }),
            ("host_port", |p, v| hc(p).port_mappings[0].host_port = v),
            ("host_port_end", |p, v| {
                hc(p).port_mappings[0].host_port_end = v
            }),
            ("container_port", |p, v| {
                hc(p).port_mappings[0].container_port = v
            }),
            ("max_files", |p, v| {
                hc(p)
                    .log_config
                    .as_mut()
                    .unwrap()
                    .driver_config
                    .as_mut()
                    .unwrap()
                    .max_files = v
            }),
            ("state.pid", |p, v| p.state.as_mut().unwrap().pid = v),
            ("state.exit_code", |p, v| {
                p.state.as_mut().unwrap().exit_code = v
            }),
        ];
        let (mut accepted, mut refused) = (0, 0);
        for (field, set) in ints {
            for &v in poison::INTEGERS {
                let mut p = base.clone();
                set(&mut p, v);
                match as_created(&p) {
                    Ok(c) => {
                        accepted += 1;
                        poison::check_accepted(&c, &format!("{field} = {v}"));
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        type SetText = fn(&mut pb::Container, String);
        let texts: &[(&str, SetText)] = &[
            ("max_size", |p, v| {
                hc(p)
                    .log_config
                    .as_mut()
                    .unwrap()
                    .driver_config
                    .as_mut()
                    .unwrap()
                    .max_size = v
            }),
            ("max_buffer_size", |p, v| {
                hc(p)
                    .log_config
                    .as_mut()
                    .unwrap()
                    .mode_config
                    .as_mut()
                    .unwrap()
                    .max_buffer_size = v
            }),
            ("memory", |p, v| {
                hc(p).resources.get_or_insert_with(Default::default).memory = v
            }),
            ("memory_reservation", |p, v| {
                hc(p)
                    .resources
                    .get_or_insert_with(Default::default)
                    .memory_reservation = v
            }),
            ("memory_swap", |p, v| {
                let r = hc(p).resources.get_or_insert_with(Default::default);
                r.memory = "100M".into();
                r.memory_swap = v;
            }),
            ("hooks[0].type", |p, v| p.hooks[0].r#type = v),
            ("state.status", |p, v| p.state.as_mut().unwrap().status = v),
        ];
        for (field, set) in texts {
            for text in poison::TEXT_NUMBERS {
                let mut p = base.clone();
                set(&mut p, text.to_string());
                match as_created(&p) {
                    Ok(c) => {
                        accepted += 1;
                        poison::check_accepted(&c, &format!("{field} = {text:?}"));
                    }
                    Err(_) => refused += 1,
                }
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
        for (field, set, v, needle) in [
            (ints[3].0, ints[3].1, i64::MAX, "more than a day"),
            (ints[3].0, ints[3].1, 86_401, "more than a day"),
            (ints[3].0, ints[3].1, i64::MIN, "cannot be negative"),
            (
                ints[4].0,
                ints[4].1,
                65_536,
                "host_config.port_mappings[0].host_port: port 65536 is out of range",
            ),
            (
                ints[6].0,
                ints[6].1,
                -1,
                "container_port: port -1 is out of range",
            ),
            (ints[7].0, ints[7].1, 1001, "more than 1000"),
            (ints[7].0, ints[7].1, i64::MAX, "more than 1000"),
        ] {
            let mut p = base.clone();
            set(&mut p, v);
            let e = as_created(&p).unwrap_err();
            assert!(e.contains(needle), "{field} = {v}: {e}");
        }

        // update: the restart policy and the resources.
        for &v in poison::INTEGERS {
            for t in ["on-failure", "always", ""] {
                let o = pb::UpdateOptions {
                    restart_policy: Some(pb::RestartPolicy {
                        maximum_retry_count: if t == "on-failure" { v } else { 0 },
                        retry_timeout: v,
                        r#type: t.into(),
                    }),
                    resources: None,
                };
                let o = update_options(Some(&o)).unwrap();
                let mut c = as_created(&base).unwrap();
                c.host_config.restart_policy = o.restart_policy.unwrap();
                if crate::model::validate::validate(&c).is_ok() {
                    poison::check_accepted(&c, &format!("update {t} {v}"));
                }
            }
        }
        // stop: 0 the default, at most a day; negative (Kanto's words) and more than a day
        // refused naming the field.
        for &v in poison::INTEGERS {
            let o = pb::StopOptions {
                timeout: v,
                ..Default::default()
            };
            match stop_options(Some(&o)) {
                Ok(s) => assert!(
                    s.timeout
                        .map_or(v == 0, |t| t == Duration::from_secs(v as u64)
                            && v <= 86_400),
                    "{v}: {s:?}"
                ),
                Err(e) => {
                    assert!(!(0..=86_400).contains(&v), "{v}: {e}");
                    assert_eq!(e.field, "stop_options.timeout");
                }
            }
        }
        // out again: values the model may hold that the wire types cannot.
        let mut c = base_model.clone();
        c.hooks[0].timeout = i64::MAX;
        c.hooks[0].hook_type = -1;
        c.host_config.restart_policy.retry_timeout = i64::MIN;
        let p = to_pb(&c);
        assert_eq!(p.hooks[0].timeout, i32::MAX);
        assert_eq!(p.hooks[0].r#type, "Unknown");
    }
}
