//! The current state as an inventory (pure): the agent's software node, one node per
//! container (`<domain>:<name>`, version from the image tag or digest, parameters as Kanto's
//! agent reports them, all of them when verbose), and the associations.

use super::messages::{Association, Inventory, KeyValue, SoftwareNode};
use crate::model::{Container, Status};

pub const AGENT_NAME: &str = "Eclipse Kanto Containers Update Agent";

/// The version of an image reference: its digest, else its tag, else `latest`.
pub fn image_version(image: &str) -> String {
    if let Some((_, digest)) = image.split_once('@') {
        return digest.to_string();
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag.to_string(),
        _ => "latest".into(),
    }
}

fn kv(out: &mut Vec<KeyValue>, key: &str, value: impl Into<String>) {
    out.push(KeyValue {
        key: key.into(),
        value: value.into(),
    });
}

fn port_string(p: &crate::model::PortMapping) -> String {
    let mut s = String::new();
    if !p.host_ip.is_empty() && p.host_ip != "0.0.0.0" {
        s.push_str(&p.host_ip);
        s.push(':');
    }
    if p.host_port != 0 {
        s.push_str(&p.host_port.to_string());
        if p.host_port_end != 0 && p.host_port_end != p.host_port {
            s.push_str(&format!("-{}", p.host_port_end));
        }
    }
    if p.container_port != 0 {
        s.push_str(&format!(":{}", p.container_port));
    }
    if !p.proto.is_empty() {
        s.push_str(&format!("/{}", p.proto));
    }
    s
}

pub fn container_node(domain: &str, c: &Container, verbose: bool) -> SoftwareNode {
    let mut p = Vec::new();
    let hc = &c.host_config;
    if verbose || !c.image.name.is_empty() {
        kv(&mut p, "image", &c.image.name);
    }
    if verbose || c.domain_name != format!("{}-domain", c.container_name) {
        kv(&mut p, "domainName", &c.domain_name);
    }
    if verbose || c.host_name != format!("{}-host", c.container_name) {
        kv(&mut p, "hostName", &c.host_name);
    }
    if verbose || c.io_config.tty {
        kv(&mut p, "terminal", c.io_config.tty.to_string());
    }
    if verbose || c.io_config.open_stdin {
        kv(&mut p, "interactive", c.io_config.open_stdin.to_string());
    }
    if verbose || hc.privileged {
        kv(&mut p, "privileged", hc.privileged.to_string());
    }
    let rp = &hc.restart_policy;
    if verbose || rp.policy_type != crate::model::RestartPolicyType::UnlessStopped {
        kv(&mut p, "restartPolicy", rp.policy_type.as_str());
    }
    if verbose || rp.maximum_retry_count != 0 {
        kv(
            &mut p,
            "restartMaxRetries",
            rp.maximum_retry_count.to_string(),
        );
    }
    if verbose || rp.retry_timeout != 0 {
        kv(
            &mut p,
            "restartTimeout",
            crate::duration::format_go_duration(std::time::Duration::from_nanos(
                rp.retry_timeout.max(0) as u64,
            )),
        );
    }
    for d in &hc.devices {
        kv(
            &mut p,
            "device",
            format!(
                "{}:{}:{}",
                d.path_on_host, d.path_in_container, d.cgroup_permissions
            ),
        );
    }
    for port in &hc.port_mappings {
        kv(&mut p, "port", port_string(port));
    }
    if verbose || hc.network_mode != crate::model::NetworkMode::Bridge {
        kv(&mut p, "network", hc.network_mode.as_str());
    }
    for h in &hc.extra_hosts {
        kv(&mut p, "host", h);
    }
    let driver = &hc.log_config.driver_config;
    let file = driver.driver_type == "json-file";
    if verbose || (!driver.driver_type.is_empty() && driver.driver_type != "json-file") {
        kv(&mut p, "logDriver", &driver.driver_type);
    }
    if file && (verbose || driver.max_files != 2) {
        kv(&mut p, "logMaxFiles", driver.max_files.to_string());
    }
    if file && (verbose || (!driver.max_size.is_empty() && driver.max_size != "100M")) {
        kv(&mut p, "logMaxSize", &driver.max_size);
    }
    if file && !driver.root_dir.is_empty() {
        kv(&mut p, "logPath", &driver.root_dir);
    }
    let mode = &hc.log_config.mode_config;
    if verbose || (!mode.mode.is_empty() && mode.mode != "blocking") {
        kv(&mut p, "logMode", &mode.mode);
    }
    if mode.mode == "non-blocking"
        && (verbose || (!mode.max_buffer_size.is_empty() && mode.max_buffer_size != "1M"))
    {
        kv(&mut p, "logMaxBufferSize", &mode.max_buffer_size);
    }
    if let Some(r) = &hc.resources {
        for (key, value) in [
            ("memory", &r.memory),
            ("memoryReservation", &r.memory_reservation),
            ("memorySwap", &r.memory_swap),
        ] {
            if !value.is_empty() {
                kv(&mut p, key, value);
            }
        }
    }
    for m in &c.mount_points {
        kv(
            &mut p,
            "mount",
            format!("{}:{}:{}", m.source, m.destination, m.propagation_mode),
        );
    }
    for e in &c.config.env {
        kv(&mut p, "env", e);
    }
    for a in &c.config.cmd {
        kv(&mut p, "cmd", a);
    }
    let running = c.state.status == Status::Running;
    kv(&mut p, "status", c.state.status.name());
    // leda-cm extension: what its health gate saw during this run (none without a gate).
    if let Some(h) = &c.state.health {
        kv(&mut p, "health", h.status.name());
    }
    if verbose || (!c.state.finished_at.is_empty() && !running) {
        kv(&mut p, "finishedAt", &c.state.finished_at);
    }
    if verbose || (c.state.exit_code != 0 && !running) {
        kv(&mut p, "exitCode", c.state.exit_code.to_string());
    }
    kv(&mut p, "created", &c.created);
    if verbose || c.restart_count != 0 {
        kv(&mut p, "restartCount", c.restart_count.to_string());
    }
    if verbose || (c.manually_stopped && !running) {
        kv(&mut p, "manuallyStopped", c.manually_stopped.to_string());
    }
    if verbose || (c.started_successfully_before && !running) {
        kv(
            &mut p,
            "startedSuccessfullyBefore",
            c.started_successfully_before.to_string(),
        );
    }
    SoftwareNode {
        id: format!("{domain}:{}", c.container_name),
        version: image_version(&c.image.name),
        name: String::new(),
        parameters: p,
        node_type: "CONTAINER".into(),
    }
}

pub fn inventory(
    domain: &str,
    version: &str,
    containers: &[Container],
    verbose: bool,
) -> Inventory {
    let agent = SoftwareNode {
        id: format!("{domain}-update-agent"),
        version: version.into(),
        name: AGENT_NAME.into(),
        parameters: vec![KeyValue {
            key: "domain".into(),
            value: domain.into(),
        }],
        node_type: "APPLICATION".into(),
    };
    let nodes: Vec<SoftwareNode> = containers
        .iter()
        .map(|c| container_node(domain, c, verbose))
        .collect();
    let associations = nodes
        .iter()
        .map(|n| Association {
            source_id: agent.id.clone(),
            target_id: n.id.clone(),
        })
        .collect();
    let mut software_nodes = vec![agent];
    software_nodes.extend(nodes);
    Inventory {
        hardware_nodes: Vec::new(),
        software_nodes,
        associations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::messages::Envelope;
    use crate::model::defaults::fill_defaults;

    #[test]
    fn versions() {
        for (image, want) in [
            ("ghcr.io/eclipse/kuksa.val/databroker:0.4.1", "0.4.1"),
            ("localhost:5000/app", "latest"),
            ("busybox", "latest"),
            ("r.io/a@sha256:abc", "sha256:abc"),
        ] {
            assert_eq!(image_version(image), want, "{image}");
        }
    }

    #[test]
    fn has_the_shape_of_ledas_current_state() {
        let fixture: Envelope<Inventory> = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/currentstate-leda.json"
        ))
        .unwrap();
        let hvac_fixture = fixture
            .payload
            .software_nodes
            .iter()
            .find(|n| n.id == "containers:hvacservice-example")
            .unwrap();
        // The same container as leda-cm would hold it.
        let mut c: Container = serde_json::from_value(serde_json::json!({
            "container_name": "hvacservice-example",
            "image": {"name": "ghcr.io/eclipse/kuksa.val.services/hvac_service:v0.1.0"},
            "host_config": {"extra_hosts": ["databroker:container_databroker-host"]},
        }))
        .unwrap();
        fill_defaults(&mut c, || "id".into());
        c.state = c.state.running(5, "2023-08-28T11:14:25.8Z");
        let inv = inventory("containers", "0.1.0", &[c.clone()], false);
        let node = &inv.software_nodes[1];
        assert_eq!(node.id, hvac_fixture.id);
        assert_eq!(node.version, hvac_fixture.version);
        assert_eq!(node.node_type, hvac_fixture.node_type);
        let keys = |n: &SoftwareNode| {
            n.parameters
                .iter()
                .map(|p| p.key.clone())
                .collect::<Vec<_>>()
        };
        for k in ["image", "host", "status", "created"] {
            assert!(keys(node).contains(&k.to_string()), "{k}");
            assert!(
                keys(hvac_fixture).contains(&k.to_string()),
                "{k} not in the fixture"
            );
        }
        assert_eq!(inv.software_nodes[0].id, "containers-update-agent");
        assert_eq!(
            inv.associations[0].target_id,
            "containers:hvacservice-example"
        );
        // No gate, no health; with one, its status (leda-cm extension).
        let health = |n: &SoftwareNode| {
            n.parameters
                .iter()
                .find(|p| p.key == "health")
                .map(|p| p.value.clone())
        };
        assert_eq!(health(node), None);
        let mut gated = c;
        gated.state.health = Some(crate::model::Health {
            status: crate::model::HealthStatus::Unhealthy,
            failing_streak: 3,
            detail: "the health command failed".into(),
        });
        let inv = inventory("containers", "0.1.0", &[gated], false);
        assert_eq!(health(&inv.software_nodes[1]).as_deref(), Some("unhealthy"));
        let verbose = inventory("containers", "0.1.0", &[], true);
        assert_eq!(verbose.software_nodes.len(), 1);
        assert!(verbose.associations.is_empty());
    }
}
