//! The pure parts of the distribution protocol: media types, URLs, error bodies.

use reqwest::Url;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2), the Docker form of an index.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// The `Accept` header of manifest requests: every kind leda-cm can pull.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// What a manifest media type stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    /// An index or manifest list: pick one manifest with [`super::select_manifest`].
    Index,
    /// An image manifest: config and layers.
    Image,
}

/// The kind of a manifest media type; `None` for anything leda-cm cannot pull.
pub fn manifest_kind(media_type: &str) -> Option<ManifestKind> {
    // Parameters (`; charset=utf-8`) are not part of the type.
    let media_type = media_type.split(';').next().unwrap_or("").trim();
    match media_type {
        OCI_INDEX | DOCKER_MANIFEST_LIST => Some(ManifestKind::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => Some(ManifestKind::Image),
        _ => None,
    }
}

/// `<base>/v2/<repository>/<kind>/<tag or digest>`
pub(crate) fn api_url(
    base: &Url,
    repository: &str,
    kind: &str,
    reference: &str,
) -> Result<Url, String> {
    base.join(&format!("v2/{repository}/{kind}/{reference}"))
        .map_err(|e| format!("cannot build the url for {repository}: {e}"))
}

/// Same scheme, host and port: where a registry's credentials may go.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str().map(str::to_ascii_lowercase) == b.host_str().map(str::to_ascii_lowercase)
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The registry's explanation of a failed request: `CODE: message` for each entry of its
/// `{"errors":[{"code","message"}]}` body, else a short plain-text body, else the status.
pub fn error_message(status: u16, reason: &str, body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        let parts: Vec<String> = b
            .errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{}: {}", e.code, e.message),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if !text.is_empty() && text.len() <= 200 && !text.contains(['\n', '<']) {
        return text.to_string();
    }
    format!("{status} {reason}").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_kinds() {
        let cases = [
            (OCI_INDEX, Some(ManifestKind::Index)),
            (DOCKER_MANIFEST_LIST, Some(ManifestKind::Index)),
            (OCI_MANIFEST, Some(ManifestKind::Image)),
            (DOCKER_MANIFEST, Some(ManifestKind::Image)),
            (
                "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
                Some(ManifestKind::Image),
            ),
            (
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                None,
            ),
            ("application/json", None),
            ("", None),
        ];
        for (mt, kind) in cases {
            assert_eq!(manifest_kind(mt), kind, "{mt}");
        }
        for mt in MANIFEST_ACCEPT.split(", ") {
            assert!(manifest_kind(mt).is_some(), "{mt}");
        }
    }

    #[test]
    fn registry_error_messages() {
        let cases: &[(u16, &str, &str, &str)] = &[
            (
                401,
                "Unauthorized",
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Type":"repository","Name":"a/b","Action":"pull"}]}]}"#,
                "UNAUTHORIZED: authentication required",
            ),
            (
                404,
                "Not Found",
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"},{"code":"X","message":""}]}"#,
                "MANIFEST_UNKNOWN: manifest unknown; X",
            ),
            (403, "Forbidden", "access denied\n", "access denied"),
            (
                500,
                "Internal Server Error",
                "<html><body>oops</body></html>",
                "500 Internal Server Error",
            ),
            (502, "Bad Gateway", "", "502 Bad Gateway"),
            (
                429,
                "Too Many Requests",
                r#"{"errors":[]}"#,
                "{\"errors\":[]}",
            ),
        ];
        for (status, reason, body, want) in cases {
            assert_eq!(
                error_message(*status, reason, body.as_bytes()),
                *want,
                "{body}"
            );
        }
    }

    #[test]
    fn origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        let cases = [
            ("https://r.io/v2/a", "https://r.io/", true),
            ("https://R.io:443/x", "https://r.io/", true),
            ("http://r.io/v2/a", "https://r.io/", false),
            ("https://r.io:5000/", "https://r.io/", false),
            ("https://blobs.example.com/x", "https://r.io/", false),
            ("http://127.0.0.1:5000/x", "http://127.0.0.1:5000/", true),
        ];
        for (a, b, same) in cases {
            assert_eq!(same_origin(&u(a), &u(b)), same, "{a} {b}");
        }
        let base = u("http://127.0.0.1:5000/");
        assert_eq!(
            api_url(&base, "leda/busybox", "manifests", "1.0")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:5000/v2/leda/busybox/manifests/1.0"
        );
    }
}
