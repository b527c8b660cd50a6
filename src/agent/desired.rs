//! A desired state → the containers it asks for (pure). Component config keys as Kanto's
//! containers update agent reads them; unlike Kanto, which drops invalid values with a log
//! line, every invalid value is reported (component, key, value) and nothing is applied.

use super::messages::{ComponentWithConfig, DesiredState};
use crate::model::defaults::fill_defaults;
use crate::model::validate::validate;
use crate::model::{self, parse, Container, NetworkMode, RestartPolicyType};

/// A desired state ready to diff.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// (component, the container it describes), in the desired state's order.
    pub containers: Vec<(ComponentRef, Container)>,
    /// The domain's `systemContainers`, when it sets them (else the daemon's apply).
    pub system_containers: Option<Vec<String>>,
    /// Baseline name → container names in it.
    pub baselines: Vec<(String, Vec<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentRef {
    pub id: String,
    pub version: String,
}

/// Keys Kanto's inventory reports; a desired state copied from a current state carries them.
const INFORMATIONAL: &[&str] = &[
    "domainName",
    "hostName",
    "status",
    "finishedAt",
    "exitCode",
    "created",
    "restartCount",
    "manuallyStopped",
    "startedSuccessfullyBefore",
];

/// Go's strconv.ParseBool.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub fn parse_desired(ds: &DesiredState, domain: &str) -> Result<Parsed, String> {
    if ds.domains.len() != 1 {
        return Err(format!(
            "one domain expected in desired state specification, but got {}",
            ds.domains.len()
        ));
    }
    let d = &ds.domains[0];
    if d.id != domain {
        return Err(format!(
            "domain id mismatch - expecting {domain}, received {}",
            d.id
        ));
    }
    let mut errors = Vec::new();
    let mut containers = Vec::new();
    for component in &d.components {
        if component.id.trim().is_empty() {
            errors.push("a component has an empty id".to_string());
            continue;
        }
        match component_container(component) {
            Ok(c) => containers.push((
                ComponentRef {
                    id: component.id.clone(),
                    version: component.version.clone(),
                },
                c,
            )),
            Err(e) => errors.extend(e),
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for (r, _) in &containers {
        if !names.insert(r.id.clone()) {
            errors.push(format!("component {}: given twice", r.id));
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let system_containers = d
        .config
        .iter()
        .find(|kv| kv.key == "systemContainers")
        .map(|kv| {
            kv.value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        });
    let prefix = format!("{domain}:");
    let baselines = ds
        .baselines
        .iter()
        .filter_map(|b| {
            let members: Vec<String> = b
                .components
                .iter()
                .filter_map(|c| c.strip_prefix(&prefix).map(String::from))
                .collect();
            (!members.is_empty()).then(|| (b.title.clone(), members))
        })
        .collect();
    Ok(Parsed {
        containers,
        system_containers,
        baselines,
    })
}

/// One component's container, with every invalid value named.
pub fn component_container(component: &ComponentWithConfig) -> Result<Container, Vec<String>> {
    let id = &component.id;
    let mut errors = Vec::new();
    let mut bad = |key: &str, value: &str, why: String| {
        errors.push(format!(
            "component {id}: key {key}: invalid value {value:?}: {why}"
        ));
    };
    let mut c = Container {
        container_name: id.clone(),
        ..Default::default()
    };
    let mut image = None;
    let mut restart_type = None;
    let mut max_retries = 0i64;
    let mut retry_timeout = 0i64;
    let mut resources = model::Resources::default();
    let mut has_resources = false;
    let mut gate = model::HealthGate::default();
    for kv in &component.config {
        let (k, v) = (kv.key.as_str(), kv.value.as_str());
        let int = |v: &str| v.trim().parse::<i64>();
        match k {
            "image" => image = Some(v.to_string()),
            "env" => {
                if model::validate::valid_env(v) {
                    c.config.env.push(v.into());
                } else {
                    bad(k, v, "expected NAME=value".into());
                }
            }
            "cmd" => c.config.cmd.push(v.into()),
            "device" => match parse::device_mapping(v) {
                Ok(d) => c.host_config.devices.push(d),
                Err(e) => bad(k, v, e.to_string()),
            },
            "port" => match parse::port_mapping(v) {
                Ok(p) => c.host_config.port_mappings.push(p),
                Err(e) => bad(k, v, e.to_string()),
            },
            "host" => c.host_config.extra_hosts.push(v.into()),
            "mount" => match parse::mount_point(v) {
                Ok(m) => c.mount_points.push(m),
                Err(e) => bad(k, v, e.to_string()),
            },
            "network" => match v {
                "" | "bridge" => c.host_config.network_mode = NetworkMode::Bridge,
                "host" => c.host_config.network_mode = NetworkMode::Host,
                _ => bad(k, v, "expected bridge or host".into()),
            },
            "privileged" | "terminal" | "interactive" => match parse_bool(v) {
                Some(b) => match k {
                    "privileged" => c.host_config.privileged = b,
                    "terminal" => c.io_config.tty = b,
                    _ => c.io_config.open_stdin = b,
                },
                None => bad(k, v, "expected true or false".into()),
            },
            "restartPolicy" => match RestartPolicyType::parse(v) {
                Some(t) => restart_type = Some(t),
                None => bad(
                    k,
                    v,
                    "expected no, always, unless-stopped or on-failure".into(),
                ),
            },
            "restartMaxRetries" => match int(v) {
                Ok(n) => max_retries = n,
                Err(_) => bad(k, v, "expected an integer".into()),
            },
            "restartTimeout" => match int(v) {
                Ok(n) => retry_timeout = n,
                Err(_) => bad(k, v, "expected a number of seconds".into()),
            },
            "logDriver" => match v {
                "json-file" | "none" => {
                    c.host_config.log_config.driver_config.driver_type = v.into()
                }
                _ => bad(k, v, "expected json-file or none".into()),
            },
            "logMaxFiles" => match int(v) {
                Ok(n) => c.host_config.log_config.driver_config.max_files = n,
                Err(_) => bad(k, v, "expected an integer".into()),
            },
            "logMaxSize" | "logMaxBufferSize" | "memory" | "memoryReservation" | "memorySwap" => {
                let valid =
                    model::size::parse_size(v).is_some() || (k == "memorySwap" && v == "-1");
                if !valid {
                    bad(k, v, "expected a size such as 100M or 1.5g".into());
                    continue;
                }
                match k {
                    "logMaxSize" => c.host_config.log_config.driver_config.max_size = v.into(),
                    "logMaxBufferSize" => {
                        c.host_config.log_config.mode_config.max_buffer_size = v.into()
                    }
                    "memory" => resources.memory = v.into(),
                    "memoryReservation" => resources.memory_reservation = v.into(),
                    _ => resources.memory_swap = v.into(),
                }
                if k.starts_with("memory") {
                    has_resources = true;
                }
            }
            "logPath" => c.host_config.log_config.driver_config.root_dir = v.into(),
            "logMode" => match v {
                "blocking" | "non-blocking" => c.host_config.log_config.mode_config.mode = v.into(),
                _ => bad(k, v, "expected blocking or non-blocking".into()),
            },
            // leda-cm: the health gate of the update's activation.
            "healthUptime" | "healthInterval" | "healthTimeout" => {
                match crate::duration::parse_go_duration(v).ok().or_else(|| {
                    v.trim()
                        .parse::<u64>()
                        .ok()
                        .map(std::time::Duration::from_secs)
                }) {
                    Some(d) => {
                        let ms = d.as_millis().min(u64::MAX as u128) as u64;
                        let gate = &mut gate;
                        match k {
                            "healthUptime" => gate.uptime_ms = ms,
                            "healthInterval" if ms > 0 => gate.interval_ms = ms,
                            "healthTimeout" if ms > 0 => gate.timeout_ms = ms,
                            _ => bad(k, v, "must be more than 0".into()),
                        }
                    }
                    None => bad(k, v, "expected a duration such as 10s or 1m30s".into()),
                }
            }
            "healthCmd" => gate.cmd.push(v.into()),
            "healthRetries" => match int(v) {
                Ok(n) if n >= 1 && n <= u32::MAX as i64 => gate.retries = n as u32,
                _ => bad(k, v, "expected a whole number of at least 1".into()),
            },
            _ if INFORMATIONAL.contains(&k) => {}
            _ => log::warn!("component {id}: unknown config key {k} ignored"),
        }
    }
    let image = match image {
        Some(i) if !i.trim().is_empty() => i,
        _ if !component.version.is_empty() => format!("{id}:{}", component.version),
        _ => {
            errors.push(format!(
                "component {id}: no image key and no version to name the image"
            ));
            String::new()
        }
    };
    c.image.name = image;
    if gate.uptime_ms > 0 || !gate.cmd.is_empty() {
        c.extras_mut().health_gate = Some(gate);
    }
    if let Some(t) = restart_type {
        c.host_config.restart_policy = model::RestartPolicy {
            policy_type: t,
            maximum_retry_count: if t == RestartPolicyType::OnFailure {
                max_retries
            } else {
                0
            },
            retry_timeout: if t == RestartPolicyType::OnFailure {
                retry_timeout.saturating_mul(1_000_000_000)
            } else {
                0
            },
        };
    }
    if has_resources {
        c.host_config.resources = Some(resources);
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // The ID is made when the container is created; validate with a placeholder.
    fill_defaults(&mut c, || "desired-state-component".into());
    c.container_id.clear();
    let mut check = c.clone();
    check.container_id = "desired-state-component".into();
    validate(&check).map_err(|e| vec![format!("component {id}: {}: {}", e.field, e.message)])?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::messages::{Envelope, KeyValue};

    fn fixture() -> DesiredState {
        let e: Envelope<DesiredState> = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/leda-desired-state.json"
        ))
        .unwrap();
        e.payload
    }

    fn component(id: &str, kv: &[(&str, &str)]) -> ComponentWithConfig {
        ComponentWithConfig {
            id: id.into(),
            version: "1.0".into(),
            config: kv
                .iter()
                .map(|(k, v)| KeyValue {
                    key: k.to_string(),
                    value: v.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_leda_fixture_parses() {
        let p = parse_desired(&fixture(), "containers").unwrap();
        let names: Vec<_> = p.containers.iter().map(|(r, _)| r.id.as_str()).collect();
        assert_eq!(
            names,
            [
                "databroker",
                "feedercan",
                "hvacservice-example",
                "seatservice-example",
                "cloudconnector"
            ]
        );
        let (_, db) = &p.containers[0];
        assert_eq!(db.image.name, "ghcr.io/eclipse/kuksa.val/databroker:0.3.0");
        assert_eq!(
            db.config.env,
            ["RUST_LOG=info", "vehicle_data_broker=debug"]
        );
        let port = &db.host_config.port_mappings[0];
        assert_eq!(
            (port.host_ip.as_str(), port.host_port, port.container_port),
            ("localhost", 30555, 55555)
        );
        assert_eq!(db.host_config.log_config.driver_config.max_size, "1M");
        let (_, cc) = &p.containers[4];
        assert_eq!(cc.mount_points.len(), 2);
        assert_eq!(p.system_containers, None);
    }

    #[test]
    fn invalid_values_name_component_key_and_value() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("port", "abc")],
                "component app: key port: invalid value \"abc\"",
            ),
            (
                &[("restartPolicy", "sometimes")],
                "key restartPolicy: invalid value \"sometimes\"",
            ),
            (
                &[("memory", "1k")],
                "component app: host_config.resources.memory: minimum memory allowed is 3M",
            ),
            (
                &[("privileged", "maybe")],
                "key privileged: invalid value \"maybe\"",
            ),
            (
                &[("network", "overlay")],
                "key network: invalid value \"overlay\"",
            ),
            (
                &[("logMaxFiles", "two")],
                "key logMaxFiles: invalid value \"two\"",
            ),
            (&[("env", "1=2")], "key env: invalid value \"1=2\""),
            (&[("mount", "/only")], "key mount: invalid value \"/only\""),
        ];
        for (kv, expected) in cases {
            let err = component_container(&component("app", kv))
                .unwrap_err()
                .join("; ");
            assert!(err.contains(expected), "{kv:?}: {err}");
        }
        let mut no_image = component("noimg", &[]);
        no_image.version.clear();
        assert!(
            component_container(&no_image).unwrap_err()[0].contains("no image key and no version")
        );
        // image defaults to id:version
        assert_eq!(
            component_container(&component("svc", &[]))
                .unwrap()
                .image
                .name,
            "svc:1.0"
        );
    }

    #[test]
    fn domains_and_system_containers() {
        let mut ds = fixture();
        assert!(parse_desired(&ds, "other")
            .unwrap_err()
            .contains("domain id mismatch - expecting other, received containers"));
        ds.domains[0].config.push(KeyValue {
            key: "systemContainers".into(),
            value: "sua, databroker".into(),
        });
        assert_eq!(
            parse_desired(&ds, "containers").unwrap().system_containers,
            Some(vec!["sua".into(), "databroker".into()])
        );
        let two = DesiredState {
            domains: vec![ds.domains[0].clone(), ds.domains[0].clone()],
            ..Default::default()
        };
        assert!(parse_desired(&two, "containers")
            .unwrap_err()
            .contains("one domain expected"));
        assert!(parse_desired(&DesiredState::default(), "containers")
            .unwrap_err()
            .contains("but got 0"));
        let mut dup = fixture();
        let first = dup.domains[0].components[0].clone();
        dup.domains[0].components.push(first);
        assert!(parse_desired(&dup, "containers")
            .unwrap_err()
            .contains("component databroker: given twice"));
        let mut nameless = fixture();
        nameless.domains[0].components[1].id = " ".into();
        assert_eq!(
            parse_desired(&nameless, "containers").unwrap_err(),
            "a component has an empty id"
        );
        let mut bad = fixture();
        bad.domains[0].components[1].config.push(KeyValue {
            key: "port".into(),
            value: "x".into(),
        });
        bad.domains[0].components[2].config.push(KeyValue {
            key: "memory".into(),
            value: "lots".into(),
        });
        let err = parse_desired(&bad, "containers").unwrap_err();
        assert!(
            err.contains("component feedercan: key port")
                && err.contains("component hvacservice-example: key memory"),
            "{err}"
        );
    }

    /// The real entry point for a desired state's bytes: the envelope, then the parse.
    fn parse_bytes(bytes: &[u8]) -> Result<Parsed, String> {
        let env: Envelope<DesiredState> =
            serde_json::from_slice(bytes).map_err(|e| format!("not a desired state: {e}"))?;
        parse_desired(&env.payload, "containers")
    }

    /// Extreme values in every numeric config key of a component (and the envelope's
    /// timestamp): the component, key and value named, or containers within the documented
    /// bounds; never a panic.
    #[test]
    fn extreme_numbers_are_refused_or_bounded() {
        use crate::model::poison;
        let mut base: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/leda-desired-state.json"
        ))
        .unwrap();
        {
            let config = base["payload"]["domains"][0]["components"][0]["config"]
                .as_array_mut()
                .unwrap();
            for kv in config.iter_mut() {
                match kv["key"].as_str().unwrap() {
                    "restartPolicy" => kv["value"] = "on-failure".into(),
                    "logMode" => kv["value"] = "non-blocking".into(),
                    _ => {}
                }
            }
        }
        let keys: &[(&str, &str)] = &[
            ("restartMaxRetries", "@"),
            ("restartTimeout", "@"),
            ("logMaxFiles", "@"),
            ("logMaxSize", "@"),
            ("logMaxBufferSize", "@"),
            ("memory", "@"),
            ("memoryReservation", "@"),
            ("memorySwap", "@"),
            ("port", "@:80"),
            ("port", "80:@"),
            ("port", "@-65535:80/udp"),
            ("port", "1-@:80"),
            ("port", "localhost:@:80"),
            ("port", "localhost:80:@-1"),
        ];
        let (mut accepted, mut refused) = (0, 0);
        for (key, template) in keys {
            let mut b = base.clone();
            let config = b["payload"]["domains"][0]["components"][0]["config"]
                .as_array_mut()
                .unwrap();
            config.retain(|kv| kv["key"] != *key);
            config.push(serde_json::json!({"key": key, "value": ""}));
            let at = format!(
                "/payload/domains/0/components/0/config/{}/value",
                config.len() - 1
            );
            for text in poison::TEXT_NUMBERS {
                let value = template.replace('@', text);
                let label = format!("{key} = {value:?}");
                match parse_bytes(poison::with_text(&b, &at, &value).as_bytes()) {
                    Ok(p) => {
                        accepted += 1;
                        for (_, c) in &p.containers {
                            poison::check_accepted(c, &label);
                        }
                    }
                    Err(e) => {
                        refused += 1;
                        assert!(e.contains("component databroker"), "{label}: {e}");
                    }
                }
            }
            // A number where the config wants a string: refused as not a desired state.
            for raw in poison::JSON_NUMBERS {
                if raw.starts_with('"') {
                    continue;
                }
                let e = parse_bytes(poison::with_raw(&b, &at, raw).as_bytes()).unwrap_err();
                assert!(e.starts_with("not a desired state"), "{key} = {raw}: {e}");
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
        // The envelope's timestamp is only echoed: any integer is fine, anything else refuses
        // the message as a whole.
        for raw in poison::JSON_NUMBERS {
            let text = poison::with_raw(&base, "/timestamp", raw);
            if let Ok(env) = serde_json::from_slice::<Envelope<DesiredState>>(text.as_bytes()) {
                assert!(parse_desired(&env.payload, "containers").is_ok(), "{raw}");
            }
        }
        // The bounds, named.
        for (key, value, needle) in [
            (
                "logMaxFiles",
                "1001",
                "max log files 1001 is more than 1000",
            ),
            ("restartTimeout", "86401", "more than a day"),
            ("restartTimeout", "9223372036854775807", "more than a day"),
            ("restartTimeout", "-1", "cannot be negative"),
            ("restartMaxRetries", "-1", "cannot be negative"),
            ("memory", "8589934592G", "key memory: invalid value"),
            ("memory", "8589934591G", "swap memory"),
            ("port", "65536:80", "key port: invalid value"),
        ] {
            let mut kv = vec![(key, value)];
            if key.starts_with("restart") {
                kv.push(("restartPolicy", "on-failure"));
            }
            let e = component_container(&component("app", &kv))
                .unwrap_err()
                .join("; ");
            assert!(e.contains(needle), "{key} = {value}: {e}");
        }
        let c = component_container(&component(
            "app",
            &[
                ("restartPolicy", "on-failure"),
                ("restartTimeout", "86400"),
                ("logMaxFiles", "1000"),
            ],
        ))
        .unwrap();
        assert_eq!(
            c.host_config.restart_policy.retry_timeout,
            86_400_000_000_000
        );
        assert_eq!(c.host_config.log_config.driver_config.max_files, 1000);
    }
}
