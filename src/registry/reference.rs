//! Image references as Docker and containerd read them: `[registry/]name[:tag][@digest]`.
//!
//! - The first path component is the registry when it contains `.` or `:`, is `localhost`,
//!   or has upper-case letters; otherwise the registry is `docker.io`.
//! - On `docker.io` a single-component name gets `library/` (`busybox` is
//!   `docker.io/library/busybox`); `index.docker.io` is `docker.io`.
//! - Without tag and digest the tag is `latest`; with a digest the digest decides what is
//!   fetched and the tag is kept only for display.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

use super::RegistryError;

/// The registry name of Docker Hub in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses `reference` the way `docker pull` and containerd do.
    pub fn parse(reference: &str) -> Result<Reference, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        if reference.is_empty() {
            return Err(invalid("it is empty"));
        }
        let (rest, digest) = match reference.split_once('@') {
            Some((rest, d)) => (rest, Some(parse_digest(d).map_err(|r| invalid(&r))?)),
            None => (reference, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| invalid(&r))?;
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, path)) if is_registry(first) => (first, path),
            _ => (DOCKER_HUB, name),
        };
        check_registry(registry).map_err(|r| invalid(&r))?;
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        for component in repository.split('/') {
            check_path_component(component).map_err(|r| invalid(&r))?;
        }
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(invalid("the name is longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference {
            registry: registry.to_string(),
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written in references: `docker.io`, `ghcr.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The `host[:port]` that serves the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository inside the registry: `library/busybox`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference has one (`latest` when it had neither tag nor digest).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What the manifest is fetched by: the digest when there is one, else the tag.
    pub fn tag_or_digest(&self) -> &str {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.as_ref(),
            (None, Some(t)) => t,
            (None, None) => DEFAULT_TAG,
        }
    }

    /// The same repository pinned to `digest` (tag kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl FromStr for Reference {
    type Err = RegistryError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// The fully qualified form: `docker.io/library/busybox:latest`, `host:5000/a/b@sha256:…`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

fn is_registry(first: &str) -> bool {
    first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase())
}

fn parse_digest(d: &str) -> Result<Digest, String> {
    let hex = d.strip_prefix("sha256:").unwrap_or_default();
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest \"{d}\" is not sha256: followed by 64 lower-case hex digits"
        ));
    }
    Digest::from_str(d).map_err(|e| format!("digest \"{d}\": {e}"))
}

fn check_tag(tag: &str) -> Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= TAG_MAX
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && !tag.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag \"{tag}\" must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
        ))
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let bad = || {
        Err(format!(
            "registry \"{registry}\" is not a host name with an optional port"
        ))
    };
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        // [IPv6]:port
        let Some((addr, port)) = rest.split_once(']') else {
            return bad();
        };
        if addr.is_empty() || !addr.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return bad();
        }
        let port = match port {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return bad(),
            },
        };
        (None, port)
    } else {
        match registry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(registry), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return bad();
        }
    }
    if let Some(host) = host {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if !host.split('.').all(label_ok) {
            return bad();
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_path_component(c: &str) -> Result<(), String> {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut ok = !bytes.is_empty() && alnum(bytes[0]) && alnum(bytes[bytes.len() - 1]);
    let mut i = 0;
    while ok && i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        ok = matches!(sep, "." | "_" | "__") || (sep.bytes().all(|b| b == b'-'));
    }
    if ok {
        Ok(())
    } else if c.bytes().any(|b| b.is_ascii_uppercase()) {
        Err(format!(
            "repository name component \"{c}\" must be lower case"
        ))
    } else {
        Err(format!(
            "repository name component \"{c}\" must be lower-case letters and digits separated by '.', '_', '__' or '-'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b";

    #[test]
    fn parses_like_docker() {
        // input, registry, api host, repository, tag, digest?, display
        let at_d = format!("busybox@{D}");
        let tag_at_d = format!("ghcr.io/a/b:1.2@{D}");
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            &'a str,
            Option<&'a str>,
            bool,
            String,
        );
        let cases: Vec<Case> = vec![
            (
                "busybox",
                "docker.io",
                "registry-1.docker.io",
                "library/busybox",
                Some("latest"),
                false,
                "docker.io/library/busybox:latest".into(),
            ),
            (
                "busybox:1.36",
                "docker.io",
                "registry-1.docker.io",
                "library/busybox",
                Some("1.36"),
                false,
                "docker.io/library/busybox:1.36".into(),
            ),
            (
                "eclipse/kanto",
                "docker.io",
                "registry-1.docker.io",
                "eclipse/kanto",
                Some("latest"),
                false,
                "docker.io/eclipse/kanto:latest".into(),
            ),
            (
                "docker.io/nginx",
                "docker.io",
                "registry-1.docker.io",
                "library/nginx",
                Some("latest"),
                false,
                "docker.io/library/nginx:latest".into(),
            ),
            (
                "index.docker.io/library/nginx:1",
                "docker.io",
                "registry-1.docker.io",
                "library/nginx",
                Some("1"),
                false,
                "docker.io/library/nginx:1".into(),
            ),
            (
                "localhost/app",
                "localhost",
                "localhost",
                "app",
                Some("latest"),
                false,
                "localhost/app:latest".into(),
            ),
            (
                "localhost:5000/a/b/c:v1",
                "localhost:5000",
                "localhost:5000",
                "a/b/c",
                Some("v1"),
                false,
                "localhost:5000/a/b/c:v1".into(),
            ),
            (
                "127.0.0.1:5000/leda/busybox:1.0",
                "127.0.0.1:5000",
                "127.0.0.1:5000",
                "leda/busybox",
                Some("1.0"),
                false,
                "127.0.0.1:5000/leda/busybox:1.0".into(),
            ),
            (
                "ghcr.io/eclipse-leda/leda-example-seat-service:v0.0.1",
                "ghcr.io",
                "ghcr.io",
                "eclipse-leda/leda-example-seat-service",
                Some("v0.0.1"),
                false,
                "ghcr.io/eclipse-leda/leda-example-seat-service:v0.0.1".into(),
            ),
            (
                "Registry/app",
                "Registry",
                "Registry",
                "app",
                Some("latest"),
                false,
                "Registry/app:latest".into(),
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000",
                "[::1]:5000",
                "app",
                Some("latest"),
                false,
                "[::1]:5000/app:latest".into(),
            ),
            (
                "a__b/c-d.e_f---g",
                "docker.io",
                "registry-1.docker.io",
                "a__b/c-d.e_f---g",
                Some("latest"),
                false,
                "docker.io/a__b/c-d.e_f---g:latest".into(),
            ),
            (
                &at_d,
                "docker.io",
                "registry-1.docker.io",
                "library/busybox",
                None,
                true,
                format!("docker.io/library/busybox@{D}"),
            ),
            (
                &tag_at_d,
                "ghcr.io",
                "ghcr.io",
                "a/b",
                Some("1.2"),
                true,
                format!("ghcr.io/a/b:1.2@{D}"),
            ),
        ];
        for (input, registry, api, repo, tag, has_digest, display) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.api_host(), api, "{input}");
            assert_eq!(r.repository(), repo, "{input}");
            assert_eq!(r.tag(), tag, "{input}");
            assert_eq!(r.digest().is_some(), has_digest, "{input}");
            assert_eq!(r.to_string(), display, "{input}");
            if has_digest {
                assert_eq!(r.tag_or_digest(), D, "{input}");
            }
        }
    }

    #[test]
    fn rejects_bad_references_naming_them() {
        let cases = [
            ("", "it is empty"),
            ("busybox:", "tag \"\""),
            ("busybox:-x", "tag \"-x\""),
            ("BusyBox", "must be lower case"),
            ("ghcr.io/Org/app", "\"Org\" must be lower case"),
            ("a//b", "component \"\""),
            ("a/b/", "component \"\""),
            ("a..b", "component \"a..b\""),
            ("a___b", "component \"a___b\""),
            ("-a", "component \"-a\""),
            ("busybox@sha256:abc", "is not sha256:"),
            (
                "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
                "is not sha256:",
            ),
            ("host:port/app", "registry \"host:port\""),
            ("bad_host.io/app", "registry \"bad_host.io\""),
            ("[::1/app", "registry \"[::1\""),
        ];
        for (input, fragment) in cases {
            let err = Reference::parse(input).expect_err(input).to_string();
            assert!(
                err.starts_with(&format!("invalid image reference \"{input}\": ")),
                "{input}: {err}"
            );
            assert!(err.contains(fragment), "{input}: {err}");
        }
        let long = format!("r.io/{}", "a".repeat(260));
        assert!(Reference::parse(&long)
            .unwrap_err()
            .to_string()
            .contains("longer than 255"));
    }

    #[test]
    fn with_digest_pins_the_manifest() {
        let r = Reference::parse("r.io/a:1").unwrap();
        let pinned = r.with_digest(Digest::from_str(D).unwrap());
        assert_eq!(pinned.tag_or_digest(), D);
        assert_eq!(pinned.to_string(), format!("r.io/a:1@{D}"));
        assert_eq!(r.tag_or_digest(), "1");
    }
}
