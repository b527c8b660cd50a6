//! Container manifests (pure): Kanto's internal container JSON, one container per `*.json`
//! file of the manifests dir, plus leda-cm's optional `leda_cm.system` flag. A manifest that
//! does not parse or validate is reported with its file and field and left out; the others
//! deploy. What to do is the update agent's diff, without removals and without touching
//! unchanged containers.

use std::collections::HashSet;

use crate::agent::diff::{self, Kind, Planned};
use crate::model::defaults::fill_defaults;
use crate::model::validate::validate;
use crate::model::Container;

/// A manifest read from `file`.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub file: String,
    pub container: Container,
}

/// Parses and checks one manifest; the error names the file and the field.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Manifest, String> {
    let mut c =
        crate::model::container_from_json(bytes).map_err(|e| format!("manifest {file}: {e}"))?;
    c.keep_requested_extras();
    if c.container_name.trim().is_empty() {
        c.container_name = c.container_id.clone();
    }
    if c.container_name.trim().is_empty() {
        return Err(format!(
            "manifest {file}: container_name: a manifest names its container"
        ));
    }
    if c.image.name.trim().is_empty() {
        return Err(format!(
            "manifest {file}: image.name: a manifest names its image"
        ));
    }
    // Checked as the manager will create it; the manifest keeps its own ID if it has one.
    let mut check = c.clone();
    fill_defaults(&mut check, || "manifest-check".into());
    validate(&check).map_err(|e| format!("manifest {file}: {}: {}", e.field, e.message))?;
    fill_defaults(&mut c, String::new);
    Ok(Manifest {
        file: file.to_string(),
        container: c,
    })
}

/// Keeps the first manifest of each container name (files in name order); the others are
/// reported.
pub fn unique(manifests: Vec<Manifest>) -> (Vec<Manifest>, Vec<String>) {
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for m in manifests {
        if seen.insert(m.container.container_name.clone()) {
            out.push(m);
        } else {
            errors.push(format!(
                "manifest {}: container_name: {} is already deployed by another manifest",
                m.file, m.container.container_name
            ));
        }
    }
    (out, errors)
}

/// What deploying `manifests` over `current` takes: create the missing containers,
/// recreate or update the changed ones; never remove, never touch the unchanged.
pub fn plan(manifests: &[Manifest], current: &[Container]) -> Vec<Planned> {
    let desired: Vec<Container> = manifests.iter().map(|m| m.container.clone()).collect();
    diff::plan(&desired, current, &[], &Default::default())
        .into_iter()
        .filter(|p| matches!(p.kind(), Kind::Create | Kind::Recreate | Kind::Update))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leda(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/meta-leda-manifests/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn ledas_manifests_parse() {
        for f in [
            "core_databroker.json",
            "core_sua.json",
            "core_cloudconnector.json.disabled",
            "example_feedercan.json",
            "example_hvac.json",
            "example_seatservice.json",
            "example_node-red.json",
        ] {
            let m = parse(f, &leda(f)).unwrap_or_else(|e| panic!("{e}"));
            assert!(!m.container.container_name.is_empty(), "{f}");
        }
        let db = parse("core_databroker.json", &leda("core_databroker.json")).unwrap();
        assert_eq!(db.container.container_id, "databroker");
        // `protocol` in port mappings is read as `proto`.
        assert_eq!(db.container.host_config.port_mappings[0].proto, "tcp");
    }

    #[test]
    fn the_projects_recipes_parse() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let mut count = 0;
        for set in ["core", "examples", "demo"] {
            for entry in std::fs::read_dir(root.join(set)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if !name.contains(".json") {
                    continue;
                }
                let m =
                    parse(&name, &std::fs::read(&path).unwrap()).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(m.container.extras().system, set != "examples", "{name}");
                count += 1;
            }
        }
        assert_eq!(count, 10);
    }

    #[test]
    fn bad_manifests_name_file_and_field() {
        let cases: &[(&[u8], &str)] = &[
            (b"{not json", "manifest bad.json: key must be a string"),
            (br#"{"container_name": "x", "image": {"name": "i"}, "host_config": {"restart_policy": {"type": "sometimes"}}}"#, "manifest bad.json: host_config.restart_policy.type"),
            (br#"{"container_name": "x", "image": {"name": "i"}, "host_config": {"resources": {"memory": "1k"}}}"#, "manifest bad.json: host_config.resources.memory"),
            (br#"{"image": {"name": "i"}}"#, "manifest bad.json: container_name"),
            (br#"{"container_name": "x"}"#, "manifest bad.json: image.name"),
            (br#"{"container_name": "bad name!", "image": {"name": "i"}}"#, "manifest bad.json: container_name"),
        ];
        for (bytes, needle) in cases {
            let e = parse("bad.json", bytes).unwrap_err();
            assert!(e.starts_with(needle), "{e}");
        }
    }

    #[test]
    fn plans_create_and_recreate_but_never_remove_or_touch_the_unchanged() {
        let a = parse(
            "a.json",
            br#"{"container_name": "a", "image": {"name": "img:1"}}"#,
        )
        .unwrap();
        let b = parse(
            "b.json",
            br#"{"container_name": "b", "image": {"name": "img:1"}}"#,
        )
        .unwrap();
        let mut running_a = a.container.clone();
        running_a.container_id = "id-a".into();
        let mut stray = running_a.clone();
        stray.container_name = "stray".into();
        let p = plan(&[a.clone(), b.clone()], &[running_a.clone(), stray]);
        let kinds: Vec<_> = p.iter().map(|s| (s.name.as_str(), s.kind())).collect();
        assert_eq!(kinds, [("b", Kind::Create)]);
        let changed = parse(
            "a.json",
            br#"{"container_name": "a", "image": {"name": "img:2"}}"#,
        )
        .unwrap();
        let p = plan(&[changed], &[running_a]);
        assert_eq!(p[0].kind(), Kind::Recreate);
        let (kept, errors) = unique(vec![a.clone(), b, a]);
        assert_eq!(kept.len(), 2);
        assert!(errors[0].contains("already deployed by another manifest"));
    }

    /// Extreme values in every numeric field of a manifest: a clear error naming the file,
    /// or a container within the documented bounds; never a panic.
    #[test]
    fn extreme_numbers_are_refused_or_bounded() {
        use crate::model::poison;
        let (mut accepted, mut refused) = (0, 0);
        for (label, text) in poison::internal_format_cases() {
            match parse("poison.json", text.as_bytes()) {
                Ok(m) => {
                    accepted += 1;
                    poison::check_accepted(&m.container, &label);
                }
                Err(e) => {
                    refused += 1;
                    assert!(e.starts_with("manifest poison.json: "), "{label}: {e}");
                }
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
        // The bounds themselves.
        let base = |field: &str, raw: &str| {
            let v: serde_json::Value =
                serde_json::from_slice(&leda("core_databroker.json")).unwrap();
            poison::with_raw(&v, field, raw)
        };
        for (field, raw, needle) in [
            (
                "/host_config/log_config/driver_config/max_files",
                "1001",
                "more than 1000",
            ),
            (
                "/host_config/log_config/driver_config/max_files",
                "1e400",
                "number out of range",
            ),
            (
                "/host_config/restart_policy/retry_timeout",
                "\"25h\"",
                "more than a day",
            ),
            (
                "/host_config/restart_policy/retry_timeout",
                "1e19",
                "more than a day",
            ),
            (
                "/host_config/port_mappings/0/host_port",
                "65536",
                "host_port",
            ),
            (
                "/host_config/port_mappings/0/container_port",
                "-1",
                "container_port",
            ),
        ] {
            let e = parse("m.json", base(field, raw).as_bytes()).unwrap_err();
            assert!(e.contains(needle), "{field} = {raw}: {e}");
        }
        // leda-cm's own records in a manifest (an attachment with addresses and ports, a
        // log dir, a gate said to have passed) are not taken; only the system flag is (and a
        // health gate, when it has one).
        let m = parse(
            "m.json",
            base(
                "/leda_cm",
                r#"{"system": true, "schema_version": 4294967295, "log_dir": "/etc", "image_digest": "sha256:00", "health_passed": true,
                    "network": {"network": "x", "ip": "10.9.9.9", "prefix": 255, "gateway": "", "mac": "",
                                "host_veth": "", "ports": [{"hostPort": 65535, "containerPort": 0, "protocol": "tcp"}],
                                "result": {}}}"#,
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            m.container.leda_cm,
            Some(crate::model::Extras {
                system: true,
                ..Default::default()
            })
        );
        let ok = parse(
            "m.json",
            base("/host_config/log_config/driver_config/max_files", "1000").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            ok.container.host_config.log_config.driver_config.max_files,
            1000
        );
    }
}
