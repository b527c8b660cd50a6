//! The Notary Project's verification (notation), as Kanto configures it: notation's
//! on-disk layout under `configDir` (`trustpolicy.json`, `truststore/x509/<type>/<name>/`),
//! JWS and COSE envelopes, the `notary.x509` signing scheme, X.509 chains to the trust
//! store, trusted identities and the levels strict, permissive, audit and skip.
//!
//! Not supported, failing closed: revocation checks (a chain naming an OCSP responder or
//! a CRL is refused where revocation is enforced), RFC 3161 timestamps (the chain must
//! be valid now), the `notary.x509.signingAuthority` scheme, verification plugins (a
//! policy or signature that needs one is refused).
//!
//! Files: [`policy`] (trust policy), [`envelope`] (JWS/COSE), [`x509`] (certificates),
//! [`cbor`]; the signature checks (ring) are here.

mod cbor;
mod envelope;
mod policy;
mod x509;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::signature as sig;
use serde::Deserialize;

use super::{Signature, Target, Verdict};
use envelope::{Alg, Envelope};
use policy::{Action, Check, Identity, Statement, StoreType};
use x509::{Cert, KeySpec};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotationError {
    #[error("{path}: {reason}")]
    Policy { path: String, reason: String },
    #[error("trust store {store}: {reason}")]
    Store { store: String, reason: String },
    #[error(
        "no trust policy statement applies to {0} (no registry scope names it and none is \"*\")"
    )]
    NoStatement(String),
    #[error("no notation signature found (trust policy statement {statement:?}, level {level})")]
    Unsigned { statement: String, level: String },
    #[error("notation signature verification failed: {0}")]
    Failed(String),
}

/// A loaded trust policy with its trust stores.
#[derive(Debug)]
pub struct Policy {
    statements: Vec<Statement>,
    stores: BTreeMap<(StoreType, String), Vec<Cert>>,
}

impl Policy {
    /// Reads `<config_dir>/trustpolicy.json` (or `trustpolicy.oci.json`, which notation
    /// prefers when both exist) and the trust stores it names.
    pub fn load(config_dir: &Path) -> Result<Policy, NotationError> {
        let oci = config_dir.join("trustpolicy.oci.json");
        let path = if oci.is_file() {
            oci
        } else {
            config_dir.join("trustpolicy.json")
        };
        let shown = path.display().to_string();
        let json = std::fs::read(&path).map_err(|e| NotationError::Policy {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let statements = policy::parse(&json).map_err(|reason| NotationError::Policy {
            path: shown,
            reason,
        })?;
        let mut stores = BTreeMap::new();
        for s in &statements {
            for (kind, name) in &s.stores {
                if stores.contains_key(&(*kind, name.clone())) {
                    continue;
                }
                let certs = load_store(config_dir, *kind, name)?;
                stores.insert((*kind, name.clone()), certs);
            }
        }
        Ok(Policy { statements, stores })
    }

    /// False only where the policy's level for the scope is `skip`.
    pub fn needs_signatures(&self, repository: &str) -> bool {
        policy::applicable(&self.statements, repository).map_or(true, |s| s.actions.is_some())
    }

    /// Notation's verification of `target` with the signatures found for it: the first
    /// signature that passes decides; with none, the error of the last one.
    pub fn verify(
        &self,
        target: &Target,
        signatures: &[Signature],
        now: SystemTime,
    ) -> Result<Verdict, NotationError> {
        let statement = policy::applicable(&self.statements, &target.repository)
            .ok_or_else(|| NotationError::NoStatement(target.repository.clone()))?;
        if statement.actions.is_none() {
            return Ok(Verdict::Skipped);
        }
        let now = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        if signatures.is_empty() {
            // leda-cm's reading of audit: authenticity is only logged there, so an
            // unsigned image passes with a warning (notation's CLI refuses it).
            if statement.action(Check::Authenticity) == Action::Log {
                return Ok(Verdict::Logged {
                    warnings: vec![format!(
                        "no notation signature found for {} (trust policy statement {:?}, level {})",
                        target.image, statement.name, statement.level
                    )],
                });
            }
            return Err(NotationError::Unsigned {
                statement: statement.name.clone(),
                level: statement.level.clone(),
            });
        }
        let mut last = String::new();
        for s in signatures {
            match self.verify_one(statement, target, s, now) {
                Ok((by, warnings)) if warnings.is_empty() => return Ok(Verdict::Verified { by }),
                Ok((_, warnings)) => return Ok(Verdict::Logged { warnings }),
                Err(e) => last = e,
            }
        }
        Err(NotationError::Failed(last))
    }

    /// One signature: `Ok((signer, warnings))` when every enforced check passes.
    fn verify_one(
        &self,
        st: &Statement,
        target: &Target,
        signature: &Signature,
        now: i64,
    ) -> Result<(String, Vec<String>), String> {
        // Integrity (always enforced).
        let env = envelope::parse(&signature.media_type, &signature.blob)
            .map_err(|e| format!("integrity: {e}"))?;
        let chain = env
            .certs
            .iter()
            .map(|der| Cert::parse(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("integrity: certificate chain: {e}"))?;
        validate_chain(&chain).map_err(|e| format!("integrity: certificate chain: {e}"))?;
        let leaf = chain
            .first()
            .ok_or("integrity: the certificate chain is empty")?;
        verify_envelope(&env, leaf).map_err(|e| format!("integrity: {e}"))?;
        check_payload(&env.payload, target).map_err(|e| format!("integrity: {e}"))?;

        let by = leaf.subject_string();
        let mut warnings = Vec::new();
        let mut outcome = |check: Check, result: Result<(), String>| -> Result<(), String> {
            let Err(e) = result else { return Ok(()) };
            let msg = format!("{}: {e}", check.name());
            match st.action(check) {
                Action::Enforce => Err(msg),
                Action::Log => {
                    warnings.push(format!("signature by {by:?}: {msg}"));
                    Ok(())
                }
                Action::Skip => Ok(()),
            }
        };
        outcome(Check::Authenticity, self.authentic(st, &chain))?;
        outcome(
            Check::AuthenticTimestamp,
            chain.iter().try_for_each(|c| {
                if now < c.not_before || now > c.not_after {
                    Err(format!(
                        "certificate {:?} is not valid now ({})",
                        c.subject_string(),
                        if env.timestamped {
                            "leda-cm does not verify the signature's RFC 3161 timestamp"
                        } else {
                            "the signature has no timestamp"
                        }
                    ))
                } else {
                    Ok(())
                }
            }),
        )?;
        outcome(
            Check::Expiry,
            match env.expiry {
                Some(expiry) if now > expiry => Err("the signature has expired".into()),
                _ => Ok(()),
            },
        )?;
        outcome(
            Check::Revocation,
            if chain.iter().any(|c| c.revocable) {
                Err("the chain names an OCSP responder or CRL, and leda-cm does not check revocation (override revocation to log or skip)".into())
            } else {
                Ok(())
            },
        )?;
        Ok((by, warnings))
    }

    /// The chain holds a certificate of the statement's `ca` stores, and the leaf's
    /// subject matches a trusted identity.
    fn authentic(&self, st: &Statement, chain: &[Cert]) -> Result<(), String> {
        let trusted = st
            .stores
            .iter()
            .filter(|(kind, _)| *kind == StoreType::Ca)
            .filter_map(|k| self.stores.get(k))
            .flatten()
            .any(|t| chain.iter().any(|c| c.der == t.der));
        if !trusted {
            return Err(format!(
                "the certificate chain does not hold a certificate of the trust stores of statement {:?}",
                st.name
            ));
        }
        if st.identities.contains(&Identity::Any) {
            return Ok(());
        }
        let leaf = chain.first().ok_or("the certificate chain is empty")?;
        let subject = leaf.subject_map()?;
        let matched = st.identities.iter().any(|i| match i {
            Identity::Subject(dn) => policy::is_subset(dn, &subject),
            Identity::Any => true,
        });
        if matched {
            Ok(())
        } else {
            Err(format!(
                "signing certificate subject {:?} is not a trusted identity of statement {:?}",
                leaf.subject_string(),
                st.name
            ))
        }
    }
}

fn load_store(dir: &Path, kind: StoreType, name: &str) -> Result<Vec<Cert>, NotationError> {
    let path = dir.join("truststore/x509").join(kind.dir()).join(name);
    let store = format!("{}:{name} ({})", kind.dir(), path.display());
    let bad = |reason: String| NotationError::Store {
        store: store.clone(),
        reason,
    };
    let entries = std::fs::read_dir(&path).map_err(|e| bad(e.to_string()))?;
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort_unstable();
    let mut certs = Vec::new();
    for f in files {
        let data = std::fs::read(&f).map_err(|e| bad(format!("{}: {e}", f.display())))?;
        let ders = pem_certificates(&data).map_err(|e| bad(format!("{}: {e}", f.display())))?;
        for der in ders {
            let c = Cert::parse(&der).map_err(|e| bad(format!("{}: {e}", f.display())))?;
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    Ok(certs)
}

/// The certificates of a PEM file (every `CERTIFICATE` block) or of a DER file.
pub(crate) fn pem_certificates(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    if data.first() == Some(&0x30) {
        return Ok(vec![data.to_vec()]);
    }
    let text = std::str::from_utf8(data).map_err(|_| "neither PEM nor DER")?;
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start + BEGIN.len()..];
        let end = after.find(END).ok_or("PEM certificate without END line")?;
        let b64: String = after[..end].split_whitespace().collect();
        out.push(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("PEM certificate is not base64: {e}"))?,
        );
        rest = &after[end + END.len()..];
    }
    if out.is_empty() {
        return Err("no PEM CERTIFICATE block".into());
    }
    Ok(out)
}

/// notation-core-go's `ValidateCodeSigningCertChain` without a signing time: leaf
/// first, each issued (and signed) by the next, ending with a self-signed root.
fn validate_chain(chain: &[Cert]) -> Result<(), String> {
    match chain {
        [] => Err("the certificate chain is empty".into()),
        [only] => {
            if !only.self_issued() {
                return Err(format!(
                    "the only certificate {:?} is not self-issued",
                    only.subject_string()
                ));
            }
            verify_cert(only, only)?;
            only.check_leaf()
        }
        _ => {
            for (i, c) in chain.iter().enumerate() {
                let Some(parent) = chain.get(i + 1) else {
                    if !c.self_issued() || verify_cert(c, c).is_err() {
                        return Err(format!(
                            "root certificate {:?} is not self-signed; the chain must end with a self-signed root",
                            c.subject_string()
                        ));
                    }
                    c.check_ca(i.saturating_sub(1) as u64)?;
                    break;
                };
                if c.self_issued() && verify_cert(c, c).is_ok() {
                    return Err(format!(
                        "certificate {:?} is self-signed but not the last of the chain",
                        c.subject_string()
                    ));
                }
                if c.raw_issuer != parent.raw_subject {
                    return Err(format!(
                        "certificate {:?} is not issued by {:?}",
                        c.subject_string(),
                        parent.subject_string()
                    ));
                }
                verify_cert(c, parent)?;
                if i == 0 {
                    c.check_leaf()?;
                } else {
                    c.check_ca(i as u64 - 1)?;
                }
            }
            Ok(())
        }
    }
}

const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];

/// `child`'s signature checked with `issuer`'s key.
fn verify_cert(child: &Cert, issuer: &Cert) -> Result<(), String> {
    let key = issuer.key.clone()?;
    let alg: &dyn sig::VerificationAlgorithm = match (child.sig_alg.as_slice(), key) {
        (OID_ECDSA_SHA256, KeySpec::Ec(256)) => &sig::ECDSA_P256_SHA256_ASN1,
        (OID_ECDSA_SHA384, KeySpec::Ec(256)) => &sig::ECDSA_P256_SHA384_ASN1,
        (OID_ECDSA_SHA256, KeySpec::Ec(384)) => &sig::ECDSA_P384_SHA256_ASN1,
        (OID_ECDSA_SHA384, KeySpec::Ec(384)) => &sig::ECDSA_P384_SHA384_ASN1,
        (OID_RSA_SHA256, KeySpec::Rsa(_)) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (OID_RSA_SHA384, KeySpec::Rsa(_)) => &sig::RSA_PKCS1_2048_8192_SHA384,
        (OID_RSA_SHA512, KeySpec::Rsa(_)) => &sig::RSA_PKCS1_2048_8192_SHA512,
        _ => {
            return Err(format!(
            "certificate {:?}: signature algorithm {} with an issuer key {key:?} is not supported",
            child.subject_string(),
            x509::dotted(&child.sig_alg)
        ))
        }
    };
    sig::UnparsedPublicKey::new(alg, &issuer.public_key)
        .verify(&child.tbs, &child.signature)
        .map_err(|_| {
            format!(
                "the signature of certificate {:?} does not verify with the key of {:?}",
                child.subject_string(),
                issuer.subject_string()
            )
        })
}

/// The envelope's signature with the leaf's key; the algorithm must be the one notation
/// derives from the key (RSA 2048/3072/4096: PS256/384/512, EC P-256/P-384: ES256/384).
fn verify_envelope(env: &Envelope, leaf: &Cert) -> Result<(), String> {
    let key = leaf.key.clone()?;
    let (expected, alg): (Alg, &dyn sig::VerificationAlgorithm) = match key {
        KeySpec::Rsa(2048) => (Alg::Ps256, &sig::RSA_PSS_2048_8192_SHA256),
        KeySpec::Rsa(3072) => (Alg::Ps384, &sig::RSA_PSS_2048_8192_SHA384),
        KeySpec::Rsa(4096) => (Alg::Ps512, &sig::RSA_PSS_2048_8192_SHA512),
        KeySpec::Ec(256) => (Alg::Es256, &sig::ECDSA_P256_SHA256_FIXED),
        KeySpec::Ec(384) => (Alg::Es384, &sig::ECDSA_P384_SHA384_FIXED),
        other => return Err(format!("signing key {other:?} is not supported")),
    };
    if env.alg != expected {
        return Err(format!(
            "the envelope's algorithm {} is not {} (the signing key's)",
            env.alg.name(),
            expected.name()
        ));
    }
    sig::UnparsedPublicKey::new(alg, &leaf.public_key)
        .verify(&env.signing_input, &env.signature)
        .map_err(|_| {
            "the envelope's signature does not verify with the signing certificate's key".into()
        })
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "targetArtifact")]
    target: Descriptor,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// The signed payload names the image's manifest: same digest, size and media type.
fn check_payload(payload: &[u8], target: &Target) -> Result<(), String> {
    let p: Payload =
        serde_json::from_slice(payload).map_err(|e| format!("signed payload is malformed: {e}"))?;
    let d = p.target;
    if d.digest != target.digest || d.size != target.size || d.media_type != target.media_type {
        return Err(format!(
            "the signature is for {} ({}, {} bytes), not for {} ({}, {} bytes)",
            d.digest, d.media_type, d.size, target.digest, target.media_type, target.size
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
