//! Encrypted images (ocicrypt, containers/ocicrypt `docs/spec.md`).
//!
//! A layer of media type `…+encrypted` is AES-256-CTR ciphertext of the plain layer, with
//! an HMAC-SHA256 over the ciphertext. Its descriptor's annotations carry:
//! - `org.opencontainers.image.enc.keys.jwe` / `…keys.pkcs7`: comma-separated base64
//!   blobs, each the layer's *private options* (`symkey`, `cipheroptions.nonce`, the plain
//!   layer's `digest`) wrapped for some recipients (JWE JSON serialization; PKCS7
//!   EnvelopedData). `…keys.pgp`, `…keys.pkcs11` and key providers are not supported.
//! - `org.opencontainers.image.enc.pubopts`: base64 JSON of the public options
//!   (`cipher` `AES_256_CTR_HMAC_SHA256`, `hmac`).
//!
//! [`Keys`] (loaded once at start from `containers.image_dec_keys` and
//! `image_dec_recipients`) unwraps a layer's key ([`Keys::unwrap_layer`]): that is also
//! the authorization check for an image already present. [`LayerDecryptor`] decrypts the
//! layer as it streams, and [`LayerDecryptor::finish`] verifies the HMAC (constant time);
//! the caller verifies the plain digest ([`LayerKey::digest`]) and commits nothing before
//! both held.
//!
//! Nothing here logs or prints key material or passwords, and `Debug` shows none.

mod der;
mod jwe;
mod keys;
mod pkcs7;

use std::collections::HashMap;

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine;
use hmac::Mac;
use serde::Deserialize;

pub use keys::{Certificate, PrivateKey};

pub const ENCRYPTED_SUFFIX: &str = "+encrypted";
pub const JWE_ANNOTATION: &str = "org.opencontainers.image.enc.keys.jwe";
pub const PKCS7_ANNOTATION: &str = "org.opencontainers.image.enc.keys.pkcs7";
pub const PUBOPTS_ANNOTATION: &str = "org.opencontainers.image.enc.pubopts";
const UNSUPPORTED_ANNOTATIONS: [(&str, &str); 3] = [
    ("org.opencontainers.image.enc.keys.pgp", "PGP"),
    ("org.opencontainers.image.enc.keys.pkcs11", "PKCS#11"),
    (
        "org.opencontainers.image.enc.keys.provider.",
        "key provider",
    ),
];
const CIPHER: &str = "AES_256_CTR_HMAC_SHA256";

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;
type HmacSha256 = hmac::Hmac<sha2::Sha256>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OcicryptError {
    /// A configured key file cannot be used (its password is never part of this).
    #[error("decryption key {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("decryption recipient {entry}: {reason}")]
    Recipient { entry: String, reason: String },
    /// A layer's encryption annotations are missing, malformed or of an unsupported kind.
    #[error("{0}")]
    Layer(String),
    /// None of the configured keys unwraps the layer's key.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The layer's ciphertext does not match its HMAC (tampered, truncated, or a wrong key).
    #[error("the encrypted layer does not match its HMAC (tampered, truncated or another key)")]
    Hmac,
}

/// Whether a layer media type is ocicrypt's.
pub fn is_encrypted(media_type: &str) -> bool {
    media_type.ends_with(ENCRYPTED_SUFFIX)
}

/// The plain layer's media type (`…tar+gzip+encrypted` → `…tar+gzip`).
pub fn decrypted_media_type(media_type: &str) -> &str {
    media_type
        .strip_suffix(ENCRYPTED_SUFFIX)
        .unwrap_or(media_type)
}

/// The configured decryption keys.
#[derive(Default)]
pub struct Keys {
    keys: Vec<PrivateKey>,
    certs: Vec<Certificate>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<&str> = self.keys.iter().map(PrivateKey::kind).collect();
        f.debug_struct("Keys")
            .field("keys", &kinds)
            .field("certificates", &self.certs.len())
            .finish()
    }
}

impl Keys {
    /// From `containers.image_dec_keys` (`path[:password]`; a certificate there is a
    /// PKCS7 recipient, as in ocicrypt) and `image_dec_recipients` (`pkcs7:<cert>`).
    /// Anything that cannot be used is an error: the configuration is refused.
    pub fn load(keys: &[String], recipients: &[String]) -> Result<Keys, OcicryptError> {
        let mut out = Keys::default();
        for entry in keys {
            if entry.starts_with("provider:") {
                return Err(OcicryptError::KeyFile {
                    path: "provider:…".into(),
                    reason: "key providers are not supported by leda-cm".into(),
                });
            }
            let (path, password) = keys::split_entry(entry)?;
            match keys::load_key_file(std::path::Path::new(path), password.as_deref())? {
                keys::Loaded::Key(k) => out.keys.push(k),
                keys::Loaded::Certificate(c) => out.certs.push(c),
            }
        }
        for entry in recipients {
            out.certs.push(keys::load_recipient(entry)?);
        }
        if out.keys.is_empty() && !out.certs.is_empty() {
            return Err(OcicryptError::Recipient {
                entry: "containers.image_dec_recipients".into(),
                reason:
                    "certificates without a private key (containers.image_dec_keys) decrypt nothing"
                        .into(),
            });
        }
        Ok(out)
    }

    /// No key configured: encrypted images are refused.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Unwraps the key of an encrypted layer from its annotations: the authorization
    /// check (ocicrypt's `DecryptLayer` with `unwrapOnly`) and what decrypts it.
    pub fn unwrap_layer(
        &self,
        annotations: &HashMap<String, String>,
    ) -> Result<LayerKey, OcicryptError> {
        let mut reasons = Vec::new();
        let mut found = false;
        for (name, scheme) in [(JWE_ANNOTATION, "jwe"), (PKCS7_ANNOTATION, "pkcs7")] {
            let Some(blobs) = annotations.get(name).filter(|v| !v.is_empty()) else {
                continue;
            };
            found = true;
            for blob in blobs.split(',') {
                let Ok(data) = base64::engine::general_purpose::STANDARD.decode(blob.trim()) else {
                    reasons.push(format!("{scheme}: an annotation that is not base64"));
                    continue;
                };
                let opened = if scheme == "jwe" {
                    jwe::unwrap(&data, &self.keys)
                } else {
                    pkcs7::unwrap(&data, &self.keys, &self.certs)
                };
                match opened {
                    Ok(plain) => return LayerKey::new(&plain, annotations),
                    Err(e) => reasons.push(format!("{scheme}: {e}")),
                }
            }
        }
        if !found {
            for (prefix, what) in UNSUPPORTED_ANNOTATIONS {
                if annotations.keys().any(|k| k.starts_with(prefix)) {
                    return Err(OcicryptError::Layer(format!(
                        "the layer's key is wrapped with {what} ({prefix}…), which leda-cm does not support (only JWE and PKCS7)"
                    )));
                }
            }
            return Err(OcicryptError::Layer(
                "the encrypted layer has no wrapped keys (annotation org.opencontainers.image.enc.keys.jwe or .pkcs7)".into(),
            ));
        }
        reasons.dedup();
        Err(OcicryptError::NotAuthorized(format!(
            "none of the configured decryption keys unwraps the layer's key: {}",
            reasons.join("; ")
        )))
    }
}

fn b64_field<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_err(|_| serde::de::Error::custom("not base64"))
}

fn b64_map<'de, D: serde::Deserializer<'de>>(d: D) -> Result<HashMap<String, Vec<u8>>, D::Error> {
    let m = Option::<HashMap<String, String>>::deserialize(d)?.unwrap_or_default();
    m.into_iter()
        .map(|(k, v)| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .map(|v| (k, v))
                .map_err(|_| serde::de::Error::custom("not base64"))
        })
        .collect()
}

#[derive(Deserialize)]
struct PrivateOptions {
    #[serde(deserialize_with = "b64_field")]
    symkey: Vec<u8>,
    digest: String,
    #[serde(default, deserialize_with = "b64_map")]
    cipheroptions: HashMap<String, Vec<u8>>,
}

#[derive(Deserialize)]
struct PublicOptions {
    #[serde(default)]
    cipher: String,
    #[serde(default, deserialize_with = "b64_field")]
    hmac: Vec<u8>,
    #[serde(default, deserialize_with = "b64_map")]
    cipheroptions: HashMap<String, Vec<u8>>,
}

/// A layer's unwrapped key: what decrypts and checks it.
pub struct LayerKey {
    key: [u8; 32],
    nonce: [u8; 16],
    hmac: Vec<u8>,
    digest: String,
}

impl std::fmt::Debug for LayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LayerKey")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Drop for LayerKey {
    fn drop(&mut self) {
        self.key = [0; 32];
    }
}

impl LayerKey {
    fn new(
        private: &[u8],
        annotations: &HashMap<String, String>,
    ) -> Result<LayerKey, OcicryptError> {
        let layer = |m: &str| OcicryptError::Layer(m.to_string());
        let private: PrivateOptions = serde_json::from_slice(private)
            .map_err(|_| layer("the unwrapped layer options are not ocicrypt's JSON"))?;
        let public: PublicOptions = match annotations.get(PUBOPTS_ANNOTATION) {
            Some(text) => {
                let json = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|_| layer("the pubopts annotation is not base64"))?;
                serde_json::from_slice(&json)
                    .map_err(|_| layer("the pubopts annotation is not ocicrypt's JSON"))?
            }
            None => {
                return Err(layer(
                    "the encrypted layer has no pubopts annotation (cipher and HMAC)",
                ))
            }
        };
        if public.cipher != CIPHER {
            return Err(OcicryptError::Layer(format!(
                "layer cipher {:?} is not supported (only {CIPHER})",
                public.cipher
            )));
        }
        if public.hmac.is_empty() {
            return Err(layer("the encrypted layer's pubopts carry no HMAC"));
        }
        let key: [u8; 32] = private
            .symkey
            .as_slice()
            .try_into()
            .map_err(|_| layer("the layer key is not 32 bytes"))?;
        // As ocicrypt's GetOpt: the public options first, then the private ones.
        let nonce = public
            .cipheroptions
            .get("nonce")
            .or_else(|| private.cipheroptions.get("nonce"))
            .ok_or_else(|| layer("the layer options have no nonce"))?;
        let nonce: [u8; 16] = nonce
            .as_slice()
            .try_into()
            .map_err(|_| layer("the layer nonce is not 16 bytes"))?;
        Ok(LayerKey {
            key,
            nonce,
            hmac: public.hmac,
            digest: private.digest,
        })
    }

    /// Digest of the plain layer (the wrapped options say it; the caller verifies it).
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn decryptor(&self) -> LayerDecryptor {
        LayerDecryptor {
            cipher: Aes256Ctr::new(&self.key.into(), &self.nonce.into()),
            mac: <HmacSha256 as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| {
                // HMAC takes keys of any length: unreachable.
                <HmacSha256 as Mac>::new(&Default::default())
            }),
            expected: self.hmac.clone(),
        }
    }
}

/// Decrypts one layer as it streams.
pub struct LayerDecryptor {
    cipher: Aes256Ctr,
    mac: HmacSha256,
    expected: Vec<u8>,
}

impl LayerDecryptor {
    /// Decrypts the next bytes of the layer in place (the HMAC takes the ciphertext).
    pub fn update(&mut self, buf: &mut [u8]) {
        self.mac.update(buf);
        self.cipher.apply_keystream(buf);
    }

    /// The HMAC over all the ciphertext, compared in constant time.
    pub fn finish(self) -> Result<(), OcicryptError> {
        self.mac
            .verify_slice(&self.expected)
            .map_err(|_| OcicryptError::Hmac)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(b)
    }

    /// Encrypts `plain` the way ocicrypt does; returns the ciphertext and the annotations
    /// (private options wrapped by `wrap`).
    fn encrypt(
        plain: &[u8],
        wrap: impl Fn(&[u8]) -> Vec<u8>,
    ) -> (Vec<u8>, HashMap<String, String>) {
        let key = [9u8; 32];
        let nonce = [3u8; 16];
        let mut ct = plain.to_vec();
        Aes256Ctr::new(&key.into(), &nonce.into()).apply_keystream(&mut ct);
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
        mac.update(&ct);
        let hmac = mac.finalize().into_bytes();
        let private = serde_json::json!({"symkey": b64(&key), "digest": crate::registry::sha256_digest(plain),
            "cipheroptions": {"nonce": b64(&nonce)}});
        let public = serde_json::json!({"cipher": CIPHER, "hmac": b64(&hmac), "cipheroptions": {}});
        let wrapped = wrap(&serde_json::to_vec(&private).unwrap());
        let annotations = HashMap::from([
            (
                JWE_ANNOTATION.to_string(),
                format!("{},{}", b64(b"junk"), b64(&wrapped)),
            ),
            (
                PUBOPTS_ANNOTATION.to_string(),
                b64(&serde_json::to_vec(&public).unwrap()),
            ),
        ]);
        (ct, annotations)
    }

    #[test]
    fn a_layer_decrypts_in_pieces_and_its_hmac_holds() {
        let rsa_key = jwe::tests::rsa_key();
        let pk = rsa_key.to_public_key();
        let plain: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (ct, annotations) = encrypt(&plain, |p| jwe::tests::make_jwe(p, Some(&pk), None));
        let keys = Keys {
            keys: vec![PrivateKey::Rsa(Box::new(rsa_key))],
            certs: vec![],
        };
        let lk = keys.unwrap_layer(&annotations).unwrap();
        assert_eq!(lk.digest(), crate::registry::sha256_digest(&plain));
        assert!(!format!("{lk:?}{keys:?}").contains("9, 9"));
        let mut d = lk.decryptor();
        let mut out = Vec::new();
        for piece in ct.chunks(7777) {
            let mut piece = piece.to_vec();
            d.update(&mut piece);
            out.extend_from_slice(&piece);
        }
        d.finish().unwrap();
        assert_eq!(out, plain);

        // A flipped bit, or a truncated layer: the HMAC refuses it.
        let mut bad = ct.clone();
        bad[500] ^= 1;
        let mut d = lk.decryptor();
        d.update(&mut bad);
        assert_eq!(d.finish(), Err(OcicryptError::Hmac));
        let mut d = lk.decryptor();
        d.update(&mut ct[..ct.len() - 1].to_vec());
        assert_eq!(d.finish(), Err(OcicryptError::Hmac));

        // Another key: not authorized; no key annotations: a clear error.
        let other = Keys {
            keys: vec![PrivateKey::P256(p256::SecretKey::random(
                &mut rsa::rand_core::OsRng,
            ))],
            certs: vec![],
        };
        let err = other.unwrap_layer(&annotations).unwrap_err();
        assert!(matches!(err, OcicryptError::NotAuthorized(_)), "{err}");
        let pgp = HashMap::from([(
            "org.opencontainers.image.enc.keys.pgp".to_string(),
            "x".to_string(),
        )]);
        let err = other.unwrap_layer(&pgp).unwrap_err().to_string();
        assert!(err.contains("PGP") && err.contains("not support"), "{err}");
        assert!(other.unwrap_layer(&HashMap::new()).is_err());
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/ocicrypt")
            .join(name)
    }

    fn load(keys: &[&str], recipients: &[&str]) -> Result<Keys, OcicryptError> {
        let path = |k: &&str| fixture(k).display().to_string();
        Keys::load(
            &keys.iter().map(path).collect::<Vec<_>>(),
            &recipients
                .iter()
                .map(|r| format!("pkcs7:{}", fixture(r).display()))
                .collect::<Vec<_>>(),
        )
    }

    /// Layers encrypted by skopeo 1.9 (Debian's; its ocicrypt and go-jose): JWE for RSA
    /// (RSA-OAEP, flattened serialization) and P-256 (ECDH-ES+A256KW), PKCS7 for a cert.
    #[test]
    fn skopeo_layers_decrypt_with_their_test_keys() {
        for (name, keys, recipients) in [
            ("skopeo-rsa.json", &["rsa.pem"][..], &[][..]),
            ("skopeo-ec.json", &["ec.pem"], &[]),
            ("skopeo-pkcs7.json", &["rsa.pem"], &["rsa.crt.pem"]),
            // The certificate may also be given among the keys (as in ocicrypt).
            ("skopeo-pkcs7.json", &["rsa.pem", "rsa.crt.pem"], &[]),
            (
                "skopeo-rsa.json",
                &["rsa-legacy-encrypted.pem:test-password"],
                &[],
            ),
        ] {
            let f: serde_json::Value =
                serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap();
            let annotations: HashMap<String, String> =
                serde_json::from_value(f["layer"]["annotations"].clone()).unwrap();
            let keys = load(keys, recipients).unwrap();
            let lk = keys.unwrap_layer(&annotations).expect(name);
            assert_eq!(lk.digest(), f["plain_digest"].as_str().unwrap(), "{name}");
            let b = |k: &str| {
                base64::engine::general_purpose::STANDARD
                    .decode(f[k].as_str().unwrap())
                    .unwrap()
            };
            let mut data = b("encrypted_blob_base64");
            let mut d = lk.decryptor();
            d.update(&mut data);
            d.finish().expect(name);
            assert_eq!(data, b("plain_base64"), "{name}");
            assert_eq!(crate::registry::sha256_digest(&data), lk.digest());
        }
        // Wrong keys: not authorized. PKCS7 without the certificate: a clear reason.
        let annotations = |name: &str| -> HashMap<String, String> {
            let f: serde_json::Value =
                serde_json::from_slice(&std::fs::read(fixture(name)).unwrap()).unwrap();
            serde_json::from_value(f["layer"]["annotations"].clone()).unwrap()
        };
        let ec = load(&["ec.pem"], &[]).unwrap();
        let err = ec
            .unwrap_layer(&annotations("skopeo-rsa.json"))
            .unwrap_err();
        assert!(matches!(err, OcicryptError::NotAuthorized(_)), "{err}");
        let rsa = load(&["rsa.pem"], &[]).unwrap();
        let err = rsa
            .unwrap_layer(&annotations("skopeo-ec.json"))
            .unwrap_err();
        assert!(matches!(err, OcicryptError::NotAuthorized(_)), "{err}");
        let err = rsa
            .unwrap_layer(&annotations("skopeo-pkcs7.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("certificate"), "{err}");
    }

    #[test]
    fn keys_that_cannot_be_used_are_refused() {
        let err = |keys: &[&str]| load(keys, &[]).unwrap_err().to_string();
        let e = err(&["rsa-legacy-encrypted.pem:not-the-password"]);
        assert!(
            e.contains("wrong password") && !e.contains("not-the-password"),
            "{e}"
        );
        let e = err(&["rsa-legacy-encrypted.pem"]);
        assert!(e.contains("no password"), "{e}");
        let e = err(&["rsa-pkcs8-encrypted.pem:test-password"]);
        assert!(
            e.contains("encrypted PKCS#8") && !e.contains("test-password"),
            "{e}"
        );
        let e = err(&["missing.pem:secret-pass"]);
        assert!(
            e.contains("missing.pem") && !e.contains("secret-pass"),
            "{e}"
        );
        let e = err(&["rsa.pub.pem"]);
        assert!(e.contains("no private key"), "{e}");
        let e = err(&["skopeo-rsa.json"]);
        assert!(e.contains("JWK"), "{e}");
        assert!(Keys::load(&["provider:x".into()], &[]).is_err());
        let e = load(&["rsa.pem"], &["rsa.pem"]).unwrap_err().to_string();
        assert!(e.contains("certificate"), "{e}");
        let e = load(&[], &["rsa.crt.pem"]).unwrap_err().to_string();
        assert!(e.contains("without a private key"), "{e}");
        let e = Keys::load(
            &[fixture("rsa.pem").display().to_string()],
            &["jwe:/x".into()],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only pkcs7"), "{e}");
        // Passwords as ocicrypt spells them.
        let p = fixture("rsa-legacy-encrypted.pem").display().to_string();
        assert!(Keys::load(&[format!("{p}:pass=test-password")], &[]).is_ok());
        let k = load(&["rsa.pem", "ec.pem"], &[]).unwrap();
        assert_eq!(
            format!("{k:?}"),
            "Keys { keys: [\"RSA\", \"EC P-256\"], certificates: 0 }"
        );
        // DER keys.
        let pem = std::fs::read_to_string(fixture("rsa.pem")).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        assert!(matches!(
            keys::parse_key(&der, None),
            Ok(keys::Loaded::Key(PrivateKey::Rsa(_)))
        ));
        assert!(keys::parse_key(b"\x30\x03\x02\x01", None).is_err());
    }

    #[test]
    fn media_types() {
        assert!(is_encrypted(
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
        ));
        assert!(!is_encrypted("application/vnd.oci.image.layer.v1.tar+gzip"));
        assert_eq!(
            decrypted_media_type("application/vnd.oci.image.layer.v1.tar+zstd+encrypted"),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
}
