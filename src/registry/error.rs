//! The registry adapter's one error type. Messages are lower case, without a trailing period,
//! and name the image, repository or registry: the container manager shows them to the user.

/// Everything that can go wrong between leda-cm and a registry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The image reference does not follow `[registry/]name[:tag][@digest]`.
    #[error("invalid image reference \"{reference}\": {reason}")]
    InvalidReference { reference: String, reason: String },
    /// 404: the repository, tag, manifest or blob does not exist.
    #[error("{what} not found in registry {registry}")]
    NotFound { what: String, registry: String },
    /// 401/403 after authenticating as well as the configuration allows.
    #[error("registry {registry} refused access to {repository}: {message}; {}",
        if *.credentials_configured { "the configured credentials were not accepted" }
        else { "no credentials are configured for it" })]
    Unauthorized {
        registry: String,
        repository: String,
        /// The registry's own explanation (`CODE: message` from its JSON error body).
        message: String,
        credentials_configured: bool,
    },
    /// No connection, or it broke or timed out before an answer.
    #[error("registry {registry} unreachable: {cause}")]
    Unreachable { registry: String, cause: String },
    /// The TLS handshake failed (unknown CA, wrong name, refused client certificate, not TLS).
    #[error("tls error with registry {registry}: {cause}")]
    Tls { registry: String, cause: String },
    /// `transport` in `registry_configurations.<host>` cannot be used.
    #[error("invalid tls configuration for registry {registry}: {reason}")]
    TlsConfig { registry: String, reason: String },
    /// A download stopped half-way.
    #[error("download of {what} from registry {registry} failed: {cause}")]
    Transfer {
        what: String,
        registry: String,
        cause: String,
    },
    /// Any other answer than the protocol allows for the request.
    #[error("registry {registry} answered {status} for {what}: {message}")]
    Status {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },
    /// The registry's answer is not what the protocol says it should be.
    #[error("invalid answer from registry {registry} for {what}: {reason}")]
    Protocol {
        registry: String,
        what: String,
        reason: String,
    },
    /// The content does not hash to the digest it was asked for by.
    #[error("digest mismatch for {expected}: got {actual}")]
    DigestMismatch { expected: String, actual: String },
    /// The content is longer or shorter than its descriptor says.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    /// Only sha256 digests are verified.
    #[error("unsupported digest algorithm in {digest}")]
    UnsupportedDigest { digest: String },
    /// The HTTP client cannot be built (e.g. the system's root certificates cannot be read).
    #[error("cannot set up the registry client: {reason}")]
    Setup { reason: String },
    /// A manifest of a kind leda-cm cannot pull (schema 1, artifacts, ...).
    #[error("unexpected media type {media_type} for {reference}")]
    UnexpectedMediaType {
        reference: String,
        media_type: String,
    },
    /// The image index lists no manifest that runs here.
    #[error("image {reference} has no manifest for {wanted} (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },
}

impl RegistryError {
    /// Whether trying again later may succeed: the network, the registry's own trouble
    /// (5xx, 429), a download cut short. Not: what the registry says is missing or refused,
    /// and content that does not match its digest.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::Transfer { .. } => true,
            RegistryError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            _ => false,
        }
    }
}

/// The `Display` of an error and of every error below it, joined by `": "`, repeated text
/// and hyper's `client error (Connect)` wrappers left out.
pub(crate) fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain(err) {
        let text = e.to_string();
        if !text.is_empty()
            && !text.starts_with("client error (")
            && !parts.iter().any(|p| p.contains(&text))
        {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// An error and the errors below it. `io::Error` hides the error it wraps from `source()`,
/// so it is unwrapped here.
pub(crate) fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| {
        match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        let cases: &[(RegistryError, &str)] = &[
            (
                RegistryError::NotFound {
                    what: "image docker.io/library/nope:latest".into(),
                    registry: "docker.io".into(),
                },
                "image docker.io/library/nope:latest not found in registry docker.io",
            ),
            (
                RegistryError::Unauthorized {
                    registry: "r.example:5000".into(),
                    repository: "a/b".into(),
                    message: "UNAUTHORIZED: authentication required".into(),
                    credentials_configured: true,
                },
                "registry r.example:5000 refused access to a/b: UNAUTHORIZED: authentication \
                 required; the configured credentials were not accepted",
            ),
            (
                RegistryError::Unauthorized {
                    registry: "r.example".into(),
                    repository: "a/b".into(),
                    message: "DENIED: no".into(),
                    credentials_configured: false,
                },
                "registry r.example refused access to a/b: DENIED: no; no credentials are \
                 configured for it",
            ),
            (
                RegistryError::DigestMismatch {
                    expected: "sha256:aa".into(),
                    actual: "sha256:bb".into(),
                },
                "digest mismatch for sha256:aa: got sha256:bb",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), *want);
        }
    }

    #[test]
    fn cause_chain_unwraps_io_errors_and_skips_repeats() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let inner = std::io::Error::other(std::fmt::Error);
        let chain = cause_chain(&Outer(inner));
        // io::Error's Display is its inner error's, so it appears once.
        assert_eq!(
            chain,
            "outer: an error occurred when formatting an argument"
        );
    }
}
