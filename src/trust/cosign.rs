//! cosign key-based verification (leda-cm's extension, `image_verifier_type: "cosign"`).
//!
//! cosign keeps an image's signatures in the manifest tagged `sha256-<hex>.sig` of the
//! image's repository: each layer is a simple-signing payload (JSON naming the signed
//! manifest digest) with the base64 ECDSA signature over it in the layer's
//! `dev.cosignproject.cosign/signature` annotation. An image is accepted when one layer's
//! signature verifies with the configured public key (ECDSA P-256, SHA-256: what
//! `cosign generate-key-pair` makes) and its payload names exactly the image's manifest.
//!
//! Out of scope (offline devices): keyless signatures (Fulcio certificates, Rekor
//! transparency-log entries). A bundle annotation is neither needed nor checked.

use std::path::Path;

use base64::Engine;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde::Deserialize;

use super::{Signature, Target, Verdict, COSIGN_MEDIA_TYPE, COSIGN_SIGNATURE_ANNOTATION};

/// `critical.type` of a container image signature.
const SIGNATURE_TYPE: &str = "cosign container image signature";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CosignError {
    #[error("cannot read the cosign public key {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the cosign public key is not usable: {0}")]
    Key(String),
    #[error("no cosign signature was found for {digest} (tag sha256-<hex>.sig)")]
    Unsigned { digest: String },
    #[error("no cosign signature verifies with the configured key: {}", .reasons.join("; "))]
    Rejected { reasons: Vec<String> },
}

/// The configured public key (its uncompressed P-256 point).
#[derive(Debug)]
pub struct PublicKey {
    point: Vec<u8>,
    /// `sha256:<first 16 hex digits>` of the key's SubjectPublicKeyInfo, for messages.
    fingerprint: String,
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: PayloadImage,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

impl PublicKey {
    /// Reads a PEM (`PUBLIC KEY`) or DER SubjectPublicKeyInfo file.
    pub fn load(path: &Path) -> Result<PublicKey, CosignError> {
        let bytes = std::fs::read(path).map_err(|e| CosignError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        PublicKey::from_bytes(&bytes)
    }

    /// PEM or DER bytes of a SubjectPublicKeyInfo of an ECDSA P-256 key.
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, CosignError> {
        let der = if bytes.starts_with(b"-----") {
            pem_body(bytes, "PUBLIC KEY")?
        } else {
            bytes.to_vec()
        };
        let point = p256_point(&der).map_err(|e| CosignError::Key(e.into()))?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &der);
        let hex: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(PublicKey {
            point,
            fingerprint: format!("sha256:{hex}"),
        })
    }

    /// Accepts `target` when one of `signatures` verifies with this key and names it.
    pub fn verify(
        &self,
        target: &Target,
        signatures: &[Signature],
    ) -> Result<Verdict, CosignError> {
        let layers: Vec<_> = signatures
            .iter()
            .filter(|s| s.media_type == COSIGN_MEDIA_TYPE)
            .collect();
        if layers.is_empty() {
            return Err(CosignError::Unsigned {
                digest: target.digest.clone(),
            });
        }
        let mut reasons = Vec::new();
        for (i, s) in layers.iter().enumerate() {
            match self.check(target, s) {
                Ok(()) => {
                    return Ok(Verdict::Verified {
                        by: format!("cosign key {}", self.fingerprint),
                    })
                }
                Err(why) => reasons.push(format!("signature {}: {why}", i + 1)),
            }
        }
        Err(CosignError::Rejected { reasons })
    }

    fn check(&self, target: &Target, s: &Signature) -> Result<(), String> {
        let encoded = s
            .annotations
            .get(COSIGN_SIGNATURE_ANNOTATION)
            .ok_or_else(|| format!("no {COSIGN_SIGNATURE_ANNOTATION} annotation"))?;
        let sig = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("the signature is not base64: {e}"))?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(&s.blob, &sig)
            .map_err(|_| "the signature does not verify with the configured key".to_string())?;
        // Only a payload whose signature verified is read.
        let payload: Payload = serde_json::from_slice(&s.blob)
            .map_err(|e| format!("the signed payload is not a simple-signing document: {e}"))?;
        if payload.critical.kind != SIGNATURE_TYPE {
            return Err(format!(
                "the signed payload is a {:?}, not a {SIGNATURE_TYPE:?}",
                payload.critical.kind
            ));
        }
        if payload.critical.image.digest != target.digest {
            return Err(format!(
                "it signs {}, not {}",
                payload.critical.image.digest, target.digest
            ));
        }
        Ok(())
    }
}

/// The DER inside a PEM block labelled `label`.
fn pem_body(pem: &[u8], label: &str) -> Result<Vec<u8>, CosignError> {
    let text =
        std::str::from_utf8(pem).map_err(|_| CosignError::Key("the PEM is not text".into()))?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| CosignError::Key(format!("no {begin} block")))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| CosignError::Key(format!("no {end} line")))?
        + start;
    let body: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| CosignError::Key(format!("the PEM body is not base64: {e}")))
}

/// One DER element: (tag, contents, rest).
fn tlv(der: &[u8]) -> Result<(u8, &[u8], &[u8]), &'static str> {
    let (&tag, rest) = der.split_first().ok_or("truncated DER")?;
    let (&first, rest) = rest.split_first().ok_or("truncated DER")?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            return Err("unsupported DER length");
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err("truncated DER");
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The uncompressed point of a P-256 SubjectPublicKeyInfo. (A reader of exactly this shape:
/// SEQUENCE { SEQUENCE { OID ecPublicKey, OID prime256v1 }, BIT STRING }.)
fn p256_point(der: &[u8]) -> Result<Vec<u8>, &'static str> {
    let (tag, spki, rest) = tlv(der)?;
    if tag != 0x30 || !rest.is_empty() {
        return Err("not a SubjectPublicKeyInfo");
    }
    let (tag, alg, rest) = tlv(spki)?;
    if tag != 0x30 {
        return Err("not a SubjectPublicKeyInfo");
    }
    let (tag, oid, params) = tlv(alg)?;
    if tag != 0x06 || oid != OID_EC_PUBLIC_KEY {
        return Err("not an EC key (cosign keys are ECDSA P-256)");
    }
    let (tag, curve, _) = tlv(params)?;
    if tag != 0x06 || curve != OID_P256 {
        return Err("not a P-256 key (the curve leda-cm verifies cosign signatures with)");
    }
    let (tag, bits, _) = tlv(rest)?;
    match bits.split_first() {
        Some((0, point)) if tag == 0x03 && point.len() == 65 && point[0] == 4 => Ok(point.to_vec()),
        _ => Err("the key is not an uncompressed P-256 point"),
    }
}

/// A key and a signer for other modules' tests (the crypto stays here).
#[cfg(test)]
pub(crate) fn test_signer() -> (PublicKey, impl Fn(&str) -> Signature) {
    let (pair, spki) = tests::key();
    let key = PublicKey::from_bytes(&spki).expect("a P-256 key");
    (key, move |digest: &str| {
        tests::signed(&pair, tests::payload(digest, SIGNATURE_TYPE))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    const DIGEST: &str = "sha256:4f3c2a0d8e5b6c7a9f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778";

    pub(super) fn key() -> (EcdsaKeyPair, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        // SPKI = the fixed P-256 prefix + the point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(pair.public_key().as_ref());
        (pair, spki)
    }

    fn pem(der: &[u8]) -> Vec<u8> {
        let b = base64::engine::general_purpose::STANDARD.encode(der);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &b[..64],
            &b[64..]
        )
        .into_bytes()
    }

    pub(super) fn payload(digest: &str, kind: &str) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"localhost:5000/app"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{kind}"}},"optional":null}}"#
        )
        .into_bytes()
    }

    pub(super) fn signed(pair: &EcdsaKeyPair, blob: Vec<u8>) -> Signature {
        let sig = pair.sign(&SystemRandom::new(), &blob).unwrap();
        Signature {
            media_type: COSIGN_MEDIA_TYPE.into(),
            blob,
            annotations: [(
                COSIGN_SIGNATURE_ANNOTATION.to_string(),
                base64::engine::general_purpose::STANDARD.encode(sig.as_ref()),
            )]
            .into(),
        }
    }

    fn target() -> Target {
        Target {
            repository: "localhost:5000/app".into(),
            image: "localhost:5000/app:1".into(),
            digest: DIGEST.into(),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 400,
        }
    }

    #[test]
    fn signatures_are_accepted_only_with_the_key_over_the_images_digest() {
        let (pair, spki) = key();
        let (other, _) = key();
        let k = PublicKey::from_bytes(&pem(&spki)).unwrap();
        assert_eq!(
            PublicKey::from_bytes(&spki).unwrap().point,
            k.point,
            "DER as PEM"
        );
        let good = signed(&pair, payload(DIGEST, SIGNATURE_TYPE));
        let mut tampered = good.clone();
        tampered.blob = payload(&DIGEST.replace('4', "5"), SIGNATURE_TYPE);
        let mut no_annotation = good.clone();
        no_annotation.annotations.clear();
        let mut not_base64 = good.clone();
        not_base64
            .annotations
            .insert(COSIGN_SIGNATURE_ANNOTATION.into(), "%%%".into());
        let cases: Vec<(&str, Vec<Signature>, Result<(), &str>)> = vec![
            ("signed with the key", vec![good.clone()], Ok(())),
            ("none", vec![], Err("no cosign signature was found")),
            (
                "other key",
                vec![signed(&other, payload(DIGEST, SIGNATURE_TYPE))],
                Err("does not verify"),
            ),
            (
                "other digest signed",
                vec![signed(&pair, payload("sha256:00", SIGNATURE_TYPE))],
                Err("it signs sha256:00"),
            ),
            (
                "payload changed after signing",
                vec![tampered],
                Err("does not verify"),
            ),
            (
                "not a container signature",
                vec![signed(&pair, payload(DIGEST, "other"))],
                Err("not a"),
            ),
            (
                "not json",
                vec![signed(&pair, b"hello".to_vec())],
                Err("not a simple-signing"),
            ),
            (
                "no annotation",
                vec![no_annotation],
                Err("no dev.cosignproject.cosign/signature"),
            ),
            ("bad base64", vec![not_base64], Err("not base64")),
            (
                "one good among bad",
                vec![
                    signed(&other, payload(DIGEST, SIGNATURE_TYPE)),
                    good.clone(),
                ],
                Ok(()),
            ),
            (
                "other media type only",
                vec![Signature {
                    media_type: "application/jose+json".into(),
                    ..good
                }],
                Err("no cosign signature was found"),
            ),
        ];
        for (name, sigs, want) in cases {
            let got = k.verify(&target(), &sigs);
            match (want, got) {
                (Ok(()), Ok(Verdict::Verified { by })) => {
                    assert!(by.starts_with("cosign key sha256:"), "{name}")
                }
                (Err(text), Err(e)) => assert!(e.to_string().contains(text), "{name}: {e}"),
                (want, got) => panic!("{name}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn keys_other_than_p256_public_keys_are_refused() {
        let (_, spki) = key();
        let mut p384 = spki.clone();
        p384[22] = 0x08; // last OID byte of the curve
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", vec![], "truncated"),
            (
                "garbage",
                b"\x30\x82\xff".to_vec(),
                "unsupported DER length",
            ),
            ("truncated", spki[..40].to_vec(), "truncated"),
            ("other curve", p384, "not a P-256 key"),
            (
                "rsa oid",
                {
                    let mut r = spki.clone();
                    r[12] = 0x05;
                    r
                },
                "not an EC key",
            ),
            (
                "private key pem",
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec(),
                "no -----BEGIN PUBLIC KEY----- block",
            ),
            (
                "pem not base64",
                b"-----BEGIN PUBLIC KEY-----\n@@\n-----END PUBLIC KEY-----\n".to_vec(),
                "not base64",
            ),
        ];
        for (name, bytes, want) in cases {
            let e = PublicKey::from_bytes(&bytes).unwrap_err();
            assert!(e.to_string().contains(want), "{name}: {e}");
        }
        assert!(matches!(
            PublicKey::load(Path::new("/nonexistent/cosign.pub")),
            Err(CosignError::Read { .. })
        ));
    }
}
