//! Choosing the manifest for this machine from an image index (or Docker manifest list).
//!
//! Matching follows containerd: OS and architecture must be equal; the variant is compared
//! after normalisation (arm64 without variant is `v8`, arm without variant is `v7`, amd64 `v1`
//! is no variant), and a 32-bit arm machine also runs older variants (v7 runs v6 and v5),
//! preferring the closest. An entry without a platform matches anything, last. Attestation
//! manifests (`unknown/unknown`, annotation `vnd.docker.reference.type`) are never chosen.

use oci_spec::image::{Arch, Descriptor, ImageIndex, Os, Platform};

use super::{manifest_kind, ManifestKind, Reference, RegistryError};

const ATTESTATION_ANNOTATION: &str = "vnd.docker.reference.type";
const NO_PLATFORM_RANK: usize = usize::MAX;

/// The platform this binary runs on: linux/amd64, linux/arm64/v8, linux/arm/v7, ...
pub fn host_platform() -> Platform {
    platform_for_arch(std::env::consts::ARCH)
}

/// The OCI platform of a Rust `target_arch` (as in `std::env::consts::ARCH`).
fn platform_for_arch(rust_arch: &str) -> Platform {
    let (arch, variant) = match rust_arch {
        "x86_64" => (Arch::Amd64, None),
        "x86" => (Arch::i386, None),
        "aarch64" => (Arch::ARM64, Some("v8")),
        "arm" => (Arch::ARM, Some("v7")),
        other => (Arch::from(other), None),
    };
    let mut p = Platform::default();
    p.set_os(Os::Linux);
    p.set_architecture(arch);
    p.set_variant(variant.map(str::to_string));
    p
}

/// `os/arch[/variant]`, as `docker` and `ctr` print platforms.
pub fn platform_string(p: &Platform) -> String {
    match p.variant().as_deref() {
        Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os(), p.architecture()),
        _ => format!("{}/{}", p.os(), p.architecture()),
    }
}

/// The manifest of `index` that best fits `wanted`, or an error naming the reference, the
/// wanted platform and the platforms the index has.
pub fn select_manifest<'a>(
    reference: &Reference,
    index: &'a ImageIndex,
    wanted: &Platform,
) -> Result<&'a Descriptor, RegistryError> {
    let best = index
        .manifests()
        .iter()
        .filter_map(|d| rank(d, wanted).map(|r| (r, d)))
        // min_by_key keeps the first of equal ranks: index order breaks ties.
        .min_by_key(|(r, _)| *r);
    if let Some((_, d)) = best {
        return Ok(d);
    }
    let available: Vec<String> = index
        .manifests()
        .iter()
        .filter(|d| !is_attestation(d))
        .filter_map(|d| d.platform().as_ref().map(platform_string))
        .collect();
    Err(RegistryError::NoMatchingPlatform {
        reference: reference.to_string(),
        wanted: platform_string(wanted),
        available: if available.is_empty() {
            "no platform-specific manifests".into()
        } else {
            available.join(", ")
        },
    })
}

fn is_attestation(d: &Descriptor) -> bool {
    let annotated = d
        .annotations()
        .as_ref()
        .is_some_and(|a| a.contains_key(ATTESTATION_ANNOTATION));
    let unknown = d.platform().as_ref().is_some_and(|p| {
        p.os().to_string() == "unknown" || p.architecture().to_string() == "unknown"
    });
    annotated || unknown
}

/// Lower is better; `None`: cannot run here.
fn rank(d: &Descriptor, wanted: &Platform) -> Option<usize> {
    let is_image = manifest_kind(d.media_type().as_ref()) == Some(ManifestKind::Image);
    if !is_image || is_attestation(d) {
        return None;
    }
    let Some(p) = d.platform() else {
        return Some(NO_PLATFORM_RANK);
    };
    if p.os().to_string() != wanted.os().to_string() {
        return None;
    }
    let arch = p.architecture().to_string();
    if arch != wanted.architecture().to_string() {
        return None;
    }
    let have = normalized_variant(&arch, p.variant().as_deref());
    let want = normalized_variant(&arch, wanted.variant().as_deref());
    if have == want {
        return Some(0);
    }
    if arch == "arm" {
        // A v7 machine runs v6 and v5 binaries: rank by distance, never newer ones.
        let num = |v: &str| v.strip_prefix('v').and_then(|n| n.parse::<usize>().ok());
        if let (Some(h), Some(w)) = (num(have), num(want)) {
            if (5..w).contains(&h) {
                return Some(w - h);
            }
        }
    }
    None
}

fn normalized_variant<'a>(arch: &str, variant: Option<&'a str>) -> &'a str {
    match (arch, variant.unwrap_or("")) {
        ("arm64", "") => "v8",
        ("arm", "") => "v7",
        ("amd64", "v1") => "",
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST};
    use oci_spec::image::MediaType;

    fn index(entries: &[(&str, &str, Option<&str>)]) -> ImageIndex {
        // (digest suffix, "os/arch[/variant]" or "-" for none, annotation value)
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(id, platform, annotation)| {
                let mut d = serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": format!("sha256:{}", id.repeat(64 / id.len())),
                    "size": 100,
                });
                if *platform != "-" {
                    let parts: Vec<&str> = platform.split('/').collect();
                    let mut p = serde_json::json!({"os": parts[0], "architecture": parts[1]});
                    if let Some(v) = parts.get(2) {
                        p["variant"] = (*v).into();
                    }
                    d["platform"] = p;
                }
                if let Some(a) = annotation {
                    d["annotations"] = serde_json::json!({ ATTESTATION_ANNOTATION: a });
                }
                d
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap()
    }

    fn want(s: &str) -> Platform {
        let parts: Vec<&str> = s.split('/').collect();
        let mut p = Platform::default();
        p.set_os(Os::from(parts[0]));
        p.set_architecture(Arch::from(parts[1]));
        p.set_variant(parts.get(2).map(|v| v.to_string()));
        p
    }

    #[test]
    fn selects_the_fitting_manifest() {
        let att = Some("attestation-manifest");
        // index, wanted platform, expected digest id (None: no match)
        type Case<'a> = (
            Vec<(&'a str, &'a str, Option<&'a str>)>,
            &'a str,
            Option<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![("a", "linux/amd64", None), ("b", "linux/arm64/v8", None)],
                "linux/amd64",
                Some("a"),
            ),
            (
                vec![("a", "linux/amd64", None), ("b", "linux/arm64/v8", None)],
                "linux/arm64/v8",
                Some("b"),
            ),
            (
                vec![("a", "linux/amd64", None), ("b", "linux/arm64", None)],
                "linux/arm64/v8",
                Some("b"),
            ),
            (
                vec![("a", "linux/amd64", None), ("b", "linux/arm64/v8", None)],
                "linux/arm64",
                Some("b"),
            ),
            (
                vec![("a", "linux/arm/v6", None), ("b", "linux/arm/v7", None)],
                "linux/arm/v7",
                Some("b"),
            ),
            (
                vec![("a", "linux/arm/v5", None), ("b", "linux/arm/v6", None)],
                "linux/arm/v7",
                Some("b"),
            ),
            (vec![("a", "linux/arm", None)], "linux/arm/v7", Some("a")),
            (vec![("a", "linux/arm/v7", None)], "linux/arm/v6", None),
            (vec![("a", "linux/arm64/v8", None)], "linux/arm/v7", None),
            (
                vec![("a", "windows/amd64", None), ("b", "linux/amd64", None)],
                "linux/amd64",
                Some("b"),
            ),
            (
                vec![("a", "linux/amd64/v1", None)],
                "linux/amd64",
                Some("a"),
            ),
            (vec![("a", "linux/amd64/v3", None)], "linux/amd64", None),
            // attestations: unknown/unknown, or annotated even without a platform
            (
                vec![("a", "unknown/unknown", att), ("b", "linux/amd64", None)],
                "linux/amd64",
                Some("b"),
            ),
            (vec![("a", "-", att)], "linux/amd64", None),
            (vec![("a", "unknown/unknown", None)], "linux/amd64", None),
            // no platform: matches, after any platform-specific match
            (
                vec![("a", "-", None), ("b", "linux/amd64", None)],
                "linux/amd64",
                Some("b"),
            ),
            (vec![("a", "-", None)], "linux/arm64", Some("a")),
            // ties: index order
            (
                vec![("a", "linux/amd64", None), ("b", "linux/amd64", None)],
                "linux/amd64",
                Some("a"),
            ),
        ];
        let r = Reference::parse("r.io/app:1").unwrap();
        for (entries, wanted, expected) in cases {
            let idx = index(&entries);
            let got = select_manifest(&r, &idx, &want(wanted))
                .ok()
                .map(|d| d.digest().digest()[..1].to_string());
            assert_eq!(got.as_deref(), expected, "{entries:?} for {wanted}");
        }
    }

    #[test]
    fn skips_nested_indexes_and_unknown_media_types() {
        let r = Reference::parse("r.io/app:1").unwrap();
        let idx = index(&[("a", "linux/amd64", None), ("b", "linux/amd64", None)]);
        let with_types = |a: MediaType, b: MediaType| {
            let mut m = idx.manifests().clone();
            m[0].set_media_type(a);
            m[1].set_media_type(b);
            let mut i = idx.clone();
            i.set_manifests(m);
            select_manifest(&r, &i, &want("linux/amd64"))
                .ok()
                .map(|d| d.digest().digest()[..1].to_string())
        };
        let other = |s: &str| MediaType::Other(s.into());
        let cases = [
            (MediaType::ImageIndex, MediaType::ImageManifest, Some("b")),
            (
                other("application/x-nope"),
                MediaType::ImageManifest,
                Some("b"),
            ),
            (MediaType::ImageIndex, other("application/x-nope"), None),
            (
                other(DOCKER_MANIFEST_LIST),
                other(DOCKER_MANIFEST),
                Some("b"),
            ),
            (other(DOCKER_MANIFEST), MediaType::ImageManifest, Some("a")),
        ];
        for (a, b, want) in cases {
            assert_eq!(with_types(a.clone(), b.clone()).as_deref(), want, "{a} {b}");
        }
    }

    #[test]
    fn no_match_names_what_there_is() {
        let idx = index(&[
            ("a", "linux/amd64", None),
            ("b", "linux/arm/v7", None),
            ("c", "unknown/unknown", Some("attestation-manifest")),
        ]);
        let r = Reference::parse("r.io/app:1").unwrap();
        let err = select_manifest(&r, &idx, &want("linux/riscv64")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "image r.io/app:1 has no manifest for linux/riscv64 (it has: linux/amd64, linux/arm/v7)"
        );
    }

    #[test]
    fn host_platforms() {
        let cases = [
            ("x86_64", "linux/amd64"),
            ("aarch64", "linux/arm64/v8"),
            ("arm", "linux/arm/v7"),
            ("riscv64", "linux/riscv64"),
        ];
        for (rust, oci) in cases {
            assert_eq!(platform_string(&platform_for_arch(rust)), oci, "{rust}");
        }
        #[cfg(target_arch = "x86_64")]
        assert_eq!(platform_string(&host_platform()), "linux/amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(platform_string(&host_platform()), "linux/arm64/v8");
    }
}
