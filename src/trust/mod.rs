//! Image trust: which images a container may be created from.
//!
//! - Signatures: `containers.image_verifier_type` `"notation"` (Kanto's; the Notary
//!   Project's trust policy and trust stores under `image_verifier_config.configDir`) or
//!   `"cosign"` (leda-cm's extension: a public key, `image_verifier_config.key`). The
//!   registry adapter finds the signatures ([`Signature`]); [`Verifier::verify`] decides.
//! - Encrypted images (ocicrypt): [`ocicrypt`].
//!
//! **The cryptographic crates are imported here and nowhere else** (TLS aside, which is
//! the registry adapter's). Verification is pure: plain bytes, a policy, a clock value in;
//! a [`Verdict`] or a [`TrustError`] out. Loading the configured files happens once at
//! start ([`Verifier::from_config`]): a policy that cannot be read refuses the configuration.

pub mod cosign;
pub mod notation;
pub mod ocicrypt;

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::ContainersConfig;

/// `artifactType` of a Notary Project signature manifest.
pub const NOTATION_ARTIFACT_TYPE: &str = "application/vnd.cncf.notary.signature";
/// Media type of a JWS signature envelope.
pub const JWS_MEDIA_TYPE: &str = "application/jose+json";
/// Media type of a COSE_Sign1 signature envelope.
pub const COSE_MEDIA_TYPE: &str = "application/cose";
/// Media type of a cosign signature layer (a simple-signing payload).
pub const COSIGN_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation of a cosign signature layer holding the base64 signature over the layer.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Which signatures a verifier reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureKind {
    /// Referrers of the manifest with artifact type [`NOTATION_ARTIFACT_TYPE`] (the
    /// referrers API, or the `sha256-<hex>` tag fallback).
    Notation,
    /// The manifest tagged `sha256-<hex>.sig` in the image's repository.
    Cosign,
}

impl SignatureKind {
    pub fn name(self) -> &'static str {
        match self {
            SignatureKind::Notation => "notation",
            SignatureKind::Cosign => "cosign",
        }
    }
}

/// One signature as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Media type of `blob`: [`JWS_MEDIA_TYPE`], [`COSE_MEDIA_TYPE`] or [`COSIGN_MEDIA_TYPE`].
    pub media_type: String,
    /// The envelope (notation) or the signed payload (cosign), exactly as fetched.
    #[serde(with = "hex_bytes")]
    pub blob: Vec<u8>,
    /// Annotations of the descriptor that named the blob: the signature manifest's
    /// (notation) or the layer's (cosign: [`COSIGN_SIGNATURE_ANNOTATION`]).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// What is being verified: the manifest (or index) an image name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `registry/repository`, as notation's registry scopes name it
    /// (`localhost:5000/app`, `docker.io/library/busybox`).
    pub repository: String,
    /// The full image name as the user gave it (for messages).
    pub image: String,
    /// `sha256:<hex>` of the manifest or index.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A verification that let the image through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signature verified; `by` names who signed (certificate subject or key).
    Verified { by: String },
    /// No verification applies (verifier `none`, or notation level `skip` for the scope).
    Skipped,
    /// The policy lets the image through although checks failed (notation `permissive`
    /// or `audit`): each failure is logged as a warning.
    Logged { warnings: Vec<String> },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    /// The image may not be used; `reason` says which check failed.
    #[error("image {image} is not trusted: {reason}")]
    Untrusted { image: String, reason: String },
    /// A configured trust file (policy, store, key) cannot be used.
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
}

/// The configured signature verifier.
#[derive(Debug, Default)]
pub enum Verifier {
    #[default]
    None,
    Notation(notation::Policy),
    Cosign(cosign::PublicKey),
}

impl Verifier {
    /// From `containers.image_verifier_type` and `image_verifier_config`, reading the
    /// files they name (once, at start).
    pub fn from_config(c: &ContainersConfig) -> Result<Verifier, TrustError> {
        let kind = c.image_verifier_type.trim().to_ascii_lowercase();
        let setting = |name: &str| {
            c.image_verifier_config
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        match kind.as_str() {
            "" | "none" => Ok(Verifier::None),
            "notation" => {
                let dir = setting("configDir").ok_or(TrustError::Config {
                    key: "containers.image_verifier_config.configDir",
                    reason: "the notation verifier needs the directory of trustpolicy.json and truststore/".into(),
                })?;
                let policy = notation::Policy::load(std::path::Path::new(&dir)).map_err(|e| {
                    TrustError::Config {
                        key: "containers.image_verifier_config.configDir",
                        reason: e.to_string(),
                    }
                })?;
                Ok(Verifier::Notation(policy))
            }
            "cosign" => {
                let path = setting("key").ok_or(TrustError::Config {
                    key: "containers.image_verifier_config.key",
                    reason: "the cosign verifier needs the path of a PEM public key (ECDSA P-256)".into(),
                })?;
                let key = cosign::PublicKey::load(std::path::Path::new(&path)).map_err(|e| {
                    TrustError::Config {
                        key: "containers.image_verifier_config.key",
                        reason: e.to_string(),
                    }
                })?;
                Ok(Verifier::Cosign(key))
            }
            other => Err(TrustError::Config {
                key: "containers.image_verifier_type",
                reason: format!(
                    "unknown verifier {other:?} (leda-cm knows \"none\", \"notation\" and \"cosign\")"
                ),
            }),
        }
    }

    /// The signatures to fetch for an image of `repository`, or `None` when nothing is
    /// verified there (no verifier, or notation's `skip` level for that scope).
    pub fn needs(&self, repository: &str) -> Option<SignatureKind> {
        match self {
            Verifier::None => None,
            Verifier::Notation(p) => p
                .needs_signatures(repository)
                .then_some(SignatureKind::Notation),
            Verifier::Cosign(_) => Some(SignatureKind::Cosign),
        }
    }

    /// Decides whether `target` may be used, given the signatures found for it.
    pub fn verify(
        &self,
        target: &Target,
        signatures: &[Signature],
        now: SystemTime,
    ) -> Result<Verdict, TrustError> {
        let untrusted = |reason: String| TrustError::Untrusted {
            image: target.image.clone(),
            reason,
        };
        match self {
            Verifier::None => Ok(Verdict::Skipped),
            Verifier::Notation(p) => p
                .verify(target, signatures, now)
                .map_err(|e| untrusted(e.to_string())),
            Verifier::Cosign(k) => k
                .verify(target, signatures)
                .map_err(|e| untrusted(e.to_string())),
        }
    }
}

/// Bytes as a lower-case hex string in JSON (the signature cache).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        if text.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..text.len())
            .step_by(2)
            .map(|i| {
                u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16)
                    .map_err(|_| serde::de::Error::custom("not a hex digit"))
            })
            .collect()
    }
}
