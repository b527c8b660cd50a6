//! The SoftwareUpdatable feature's data (pure): installed dependencies from the containers,
//! the `install` and `remove` arguments, artifact checksums, operation statuses.
//!
//! As Kanto: each artifact of an install is one container, described in the container
//! manager's internal JSON; a dependency's name is the container ID. Beyond Kanto: every
//! checksum given is verified (Kanto checks only the first of MD5, SHA1, SHA256), HTTPS is
//! preferred when an artifact offers both, and an image reference with a registry port is
//! split at its tag (Kanto splits at the first `:`).

use std::collections::BTreeMap;

use md5::Md5;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::ditto::ThingError;
use crate::model::Container;

pub const SU_DEFINITION: &str = "org.eclipse.hawkbit.swupdatable:SoftwareUpdatable:2.0.0";
pub const MODULE_TYPE: &str = "oci:container";

pub mod status {
    pub const STARTED: &str = "STARTED";
    pub const DOWNLOADING: &str = "DOWNLOADING";
    pub const DOWNLOADED: &str = "DOWNLOADED";
    pub const INSTALLING: &str = "INSTALLING";
    pub const INSTALLED: &str = "INSTALLED";
    pub const REMOVING: &str = "REMOVING";
    pub const REMOVED: &str = "REMOVED";
    pub const FINISHED_SUCCESS: &str = "FINISHED_SUCCESS";
    pub const FINISHED_ERROR: &str = "FINISHED_ERROR";
    pub const FINISHED_REJECTED: &str = "FINISHED_REJECTED";
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub dep_type: String,
}

/// (repository, tag or digest) of an image reference, split at the tag's `:` (or `@`).
fn split_image(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].rfind(':') {
        Some(i) => (
            image[..last_slash + i].to_string(),
            image[last_slash + i + 1..].to_string(),
        ),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// `installedDependencies`: `<group>.<container id>:<version>` (every `/` of the key as
/// `%2F`) → the dependency.
pub fn installed_dependencies(containers: &[Container]) -> BTreeMap<String, Dependency> {
    containers
        .iter()
        .map(|c| {
            let (group, version) = split_image(&c.image.name);
            let key = format!("{group}.{}:{version}", c.container_id).replace('/', "%2F");
            (
                key,
                Dependency {
                    group,
                    name: c.container_id.clone(),
                    version,
                    dep_type: String::new(),
                },
            )
        })
        .collect()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Module {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
}

/// `lastOperation` / `lastFailedOperation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStatus {
    pub correlation_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_module: Option<Module>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub software: Vec<Dependency>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl OperationStatus {
    pub fn is_failure(&self) -> bool {
        self.status == status::FINISHED_ERROR || self.status == status::FINISHED_REJECTED
    }
}

/// The feature's `status` property.
pub fn su_status(
    containers: &[Container],
    last: Option<&OperationStatus>,
    last_failed: Option<&OperationStatus>,
) -> Value {
    let mut v = json!({"softwareModuleType": MODULE_TYPE});
    let deps = installed_dependencies(containers);
    if !deps.is_empty() {
        v["installedDependencies"] = json!(deps);
    }
    if let Some(l) = last {
        v["lastOperation"] = json!(l);
    }
    if let Some(l) = last_failed {
        v["lastFailedOperation"] = json!(l);
    }
    v
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Link {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub md5url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Artifact {
    #[serde(default)]
    pub filename: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub download: BTreeMap<String, Link>,
    #[serde(default)]
    pub checksums: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModuleAction {
    #[serde(default)]
    pub software_module: Module,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Install {
    #[serde(default)]
    pub correlation_id: String,
    #[serde(default)]
    pub software_modules: Vec<ModuleAction>,
    #[serde(default)]
    pub weight: i64,
    #[serde(default)]
    pub forced: bool,
    #[serde(default)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Remove {
    #[serde(default)]
    pub correlation_id: String,
    #[serde(default)]
    pub software: Vec<Dependency>,
    #[serde(default)]
    pub forced: bool,
    #[serde(default)]
    pub weight: i64,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// The URL to fetch an artifact from: HTTPS when offered, else HTTP.
pub fn artifact_url(a: &Artifact) -> Option<&str> {
    ["HTTPS", "HTTP"]
        .iter()
        .filter_map(|p| a.download.get(*p))
        .map(|l| l.url.as_str())
        .find(|u| !u.is_empty())
}

/// Checks an install before anything happens (400 when it cannot be carried out).
pub fn validate_install(i: &Install) -> Result<(), ThingError> {
    if i.software_modules.is_empty() {
        return Err(ThingError::invalid(
            "there are no SoftwareModules to be installed",
        ));
    }
    for m in &i.software_modules {
        let sm = &m.software_module;
        if m.artifacts.is_empty() {
            return Err(ThingError::invalid(format!(
                "there are no SoftwareArtifacts referenced for SoftwareModule [Name.version] = [{}.{}]",
                sm.name, sm.version
            )));
        }
        for a in &m.artifacts {
            if artifact_url(a).is_none() {
                return Err(ThingError::invalid(format!(
                    "artifact {:?} of SoftwareModule {}.{} has no HTTP or HTTPS download URL",
                    a.filename, sm.name, sm.version
                )));
            }
            for (kind, hex) in &a.checksums {
                if !["MD5", "SHA1", "SHA256"].contains(&kind.as_str()) {
                    continue;
                }
                if decode_hex(hex).is_none() {
                    return Err(ThingError::invalid(format!(
                        "artifact {:?}: checksum {kind} {hex:?} is not a hex string",
                        a.filename
                    )));
                }
            }
        }
    }
    Ok(())
}

pub fn validate_remove(r: &Remove) -> Result<(), ThingError> {
    if r.software.is_empty() {
        return Err(ThingError::invalid(
            "there are no DependencyDescriptions to be removed",
        ));
    }
    if let Some(d) = r.software.iter().find(|d| d.name.is_empty()) {
        return Err(ThingError::invalid(format!(
            "a dependency to remove has no name (the container ID): {}",
            json!(d)
        )));
    }
    Ok(())
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Verifies every checksum given (MD5, SHA1, SHA256); the error names the first mismatch.
pub fn verify_checksums(bytes: &[u8], checksums: &BTreeMap<String, String>) -> Result<(), String> {
    for (kind, hex) in checksums {
        let actual: Vec<u8> = match kind.as_str() {
            "MD5" => Md5::digest(bytes).to_vec(),
            "SHA1" => Sha1::digest(bytes).to_vec(),
            "SHA256" => Sha256::digest(bytes).to_vec(),
            _ => continue,
        };
        let expected = decode_hex(hex)
            .ok_or_else(|| format!("{kind} checksum {hex:?} is not a hex string"))?;
        if expected != actual {
            return Err(format!("{} checksum does not match", kind.to_lowercase()));
        }
    }
    Ok(())
}

/// The container an artifact describes (the manager's internal JSON).
/// leda-cm's own records in it (attachment, log dir, digest) are dropped.
pub fn container_from_artifact(bytes: &[u8]) -> Result<Container, String> {
    let mut c = crate::model::container_from_json(bytes)
        .map_err(|e| format!("the artifact is not a container description: {e}"))?;
    c.keep_requested_extras();
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(id: &str, image: &str) -> Container {
        serde_json::from_value(
            json!({"container_id": id, "container_name": id, "image": {"name": image}}),
        )
        .unwrap()
    }

    #[test]
    fn installed_dependencies_have_the_fixture_shape() {
        let cs = [
            container("u1", "ghcr.io/eclipse/kuksa.val/databroker:0.2.5"),
            container("u2", "localhost:5000/app:1.0"),
            container("u3", "busybox"),
            container("u4", "reg/app@sha256:abcd"),
        ];
        let deps = installed_dependencies(&cs);
        let d = &deps["ghcr.io%2Feclipse%2Fkuksa.val%2Fdatabroker.u1:0.2.5"];
        assert_eq!(
            (d.group.as_str(), d.name.as_str(), d.version.as_str()),
            ("ghcr.io/eclipse/kuksa.val/databroker", "u1", "0.2.5")
        );
        assert_eq!(
            deps["localhost:5000%2Fapp.u2:1.0"].group,
            "localhost:5000/app"
        );
        assert_eq!(deps["busybox.u3:latest"].version, "latest");
        assert_eq!(deps["reg%2Fapp.u4:sha256:abcd"].version, "sha256:abcd");
        let s = su_status(&cs[..1], None, None);
        assert_eq!(s["softwareModuleType"], "oci:container");
        assert_eq!(
            s["installedDependencies"]["ghcr.io%2Feclipse%2Fkuksa.val%2Fdatabroker.u1:0.2.5"]
                ["version"],
            "0.2.5"
        );
        assert!(su_status(&[], None, None)
            .get("installedDependencies")
            .is_none());
    }

    #[test]
    fn installs_are_checked() {
        let ok: Install = serde_json::from_value(json!({"correlationId": "c", "softwareModules": [{
            "softwareModule": {"name": "app", "version": "1"},
            "artifacts": [{"filename": "app.json", "download": {"HTTP": {"url": "http://127.0.0.1/a"}, "HTTPS": {"url": "https://x/a"}},
                           "checksums": {"SHA256": "00ff"}}]}]}))
        .unwrap();
        validate_install(&ok).unwrap();
        assert_eq!(
            artifact_url(&ok.software_modules[0].artifacts[0]),
            Some("https://x/a")
        );
        let cases = [
            (
                json!({"softwareModules": []}),
                "there are no SoftwareModules",
            ),
            (
                json!({"softwareModules": [{"softwareModule": {"name": "a", "version": "1"}}]}),
                "[a.1]",
            ),
            (
                json!({"softwareModules": [{"artifacts": [{"filename": "f", "download": {"FTP": {"url": "ftp://x"}}}]}]}),
                "no HTTP or HTTPS download URL",
            ),
            (
                json!({"softwareModules": [{"artifacts": [{"filename": "f", "download": {"HTTP": {"url": "http://x"}}, "checksums": {"MD5": "xyz"}}]}]}),
                "is not a hex string",
            ),
        ];
        for (v, needle) in cases {
            let i: Install = serde_json::from_value(v.clone()).unwrap();
            let e = validate_install(&i).unwrap_err();
            assert!(e.message.contains(needle), "{v}: {}", e.message);
        }
        let r: Remove =
            serde_json::from_value(json!({"correlationId": "c", "software": []})).unwrap();
        assert!(validate_remove(&r).is_err());
    }

    #[test]
    fn checksums() {
        let body = b"hello";
        let sums = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let good = sums(&[
            ("MD5", "5d41402abc4b2a76b9719d911017c592"),
            ("SHA1", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
            (
                "SHA256",
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            ),
        ]);
        verify_checksums(body, &good).unwrap();
        let mut bad = good.clone();
        bad.insert("SHA256".into(), "00".repeat(32));
        assert_eq!(
            verify_checksums(body, &bad).unwrap_err(),
            "sha256 checksum does not match"
        );
        verify_checksums(body, &BTreeMap::new()).unwrap();
        let e = container_from_artifact(br#"{"container_name": 5}"#).unwrap_err();
        assert!(e.contains("container_name"), "{e}");
    }

    /// Extreme values in every numeric field of an installed artifact (the internal format),
    /// then what the manager's create checks, and in the install and remove arguments: an
    /// error, or a container within the documented bounds; never a panic.
    #[test]
    fn extreme_numbers_are_refused_or_bounded() {
        use crate::model::poison;
        let (mut accepted, mut refused) = (0, 0);
        for (label, text) in poison::internal_format_cases() {
            let checked = container_from_artifact(text.as_bytes()).and_then(|mut c| {
                crate::model::defaults::fill_defaults(&mut c, || "poison-id".into());
                crate::model::validate::validate(&c).map_err(|e| e.to_string())?;
                Ok(c)
            });
            match checked {
                Ok(c) => {
                    accepted += 1;
                    assert!(c.leda_cm.is_none(), "{label}");
                    poison::check_accepted(&c, &label);
                }
                Err(_) => refused += 1,
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
        let install = serde_json::json!({
            "correlationId": "c",
            "weight": 0,
            "softwareModules": [{"softwareModule": {"name": "m", "version": "1"},
                "artifacts": [{"filename": "a.json", "size": 0, "download": {"HTTPS": {"url": "https://x/a.json"}},
                    "checksums": {"SHA256": "00"}}]}]
        });
        for pointer in ["/weight", "/softwareModules/0/artifacts/0/size"] {
            for raw in poison::JSON_NUMBERS {
                let text = poison::with_raw(&install, pointer, raw);
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                    continue;
                };
                if let Ok(i) = crate::things::convert::arg::<Install>("install", &v) {
                    let _ = validate_install(&i);
                }
            }
        }
        let remove = serde_json::json!({"correlationId": "c", "software": [{"name": "x", "version": "1"}], "weight": 0});
        for raw in poison::JSON_NUMBERS {
            let text = poison::with_raw(&remove, "/weight", raw);
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            if let Ok(r) = crate::things::convert::arg::<Remove>("remove", &v) {
                assert!(validate_remove(&r).is_ok(), "{raw}");
            }
        }
        for hex in ["", "0", "zz", "é0", "0é", "+f", "-1", "ffff"] {
            let _ = decode_hex(hex);
        }
    }
}
