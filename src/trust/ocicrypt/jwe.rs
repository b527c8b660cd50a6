//! JWE in JSON serialization (general or flattened), as go-jose writes it for ocicrypt:
//! key management RSA-OAEP, RSA-OAEP-256, ECDH-ES+A128KW/A192KW/A256KW (P-256, P-384,
//! P-521); content encryption A128GCM or A256GCM.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::keys::PrivateKey;

#[derive(Debug, Deserialize)]
struct Recipient {
    #[serde(default)]
    header: BTreeMap<String, Value>,
    #[serde(default)]
    encrypted_key: String,
}

#[derive(Debug, Deserialize)]
struct Jwe {
    #[serde(default)]
    protected: String,
    #[serde(default)]
    unprotected: BTreeMap<String, Value>,
    #[serde(default)]
    recipients: Vec<Recipient>,
    // Flattened serialization: one recipient at the top level.
    #[serde(default)]
    header: BTreeMap<String, Value>,
    #[serde(default)]
    encrypted_key: Option<String>,
    iv: String,
    ciphertext: String,
    tag: String,
    #[serde(default)]
    aad: Option<String>,
}

fn b64url(s: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('=').as_bytes())
        .map_err(|_| "a JWE field is not base64url".to_string())
}

/// Decrypts a JWE with one of `keys`: the plaintext (ocicrypt's private layer options).
pub fn unwrap(jwe: &[u8], keys: &[PrivateKey]) -> Result<Vec<u8>, String> {
    let jwe: Jwe = serde_json::from_slice(jwe).map_err(|e| format!("not a JWE: {e}"))?;
    let protected: BTreeMap<String, Value> = if jwe.protected.is_empty() {
        BTreeMap::new()
    } else {
        serde_json::from_slice(&b64url(&jwe.protected)?)
            .map_err(|_| "the JWE protected header is not a JSON object".to_string())?
    };
    let mut recipients = jwe.recipients;
    if let Some(encrypted_key) = jwe.encrypted_key {
        recipients.push(Recipient {
            header: jwe.header,
            encrypted_key,
        });
    }
    if recipients.is_empty() {
        return Err("the JWE has no recipients".into());
    }
    let iv = b64url(&jwe.iv)?;
    let mut sealed = b64url(&jwe.ciphertext)?;
    sealed.extend_from_slice(&b64url(&jwe.tag)?);
    let mut aad = jwe.protected.clone().into_bytes();
    if let Some(extra) = &jwe.aad {
        aad.push(b'.');
        aad.extend_from_slice(extra.as_bytes());
    }
    let mut reasons = Vec::new();
    for r in &recipients {
        // Header parameters: protected, shared unprotected, per recipient (RFC 7516 7.2.1:
        // disjoint; the first one wins here).
        let param = |name: &str| {
            protected
                .get(name)
                .or_else(|| jwe.unprotected.get(name))
                .or_else(|| r.header.get(name))
        };
        let text = |name: &str| param(name).and_then(Value::as_str).unwrap_or_default();
        if param("zip").is_some() {
            return Err("compressed JWE (zip) is not supported".into());
        }
        let alg = text("alg");
        let enc = text("enc");
        let encrypted_key = match b64url(&r.encrypted_key) {
            Ok(k) => k,
            Err(e) => {
                reasons.push(e);
                continue;
            }
        };
        for key in keys {
            let cek = match unwrap_cek(alg, enc, &encrypted_key, key, &param) {
                Ok(Some(cek)) => cek,
                Ok(None) => continue,
                Err(e) => {
                    reasons.push(e);
                    continue;
                }
            };
            match open(enc, &cek, &iv, &aad, &sealed) {
                Ok(plain) => return Ok(plain),
                Err(e) => reasons.push(e),
            }
        }
    }
    reasons.dedup();
    Err(if reasons.is_empty() {
        "no configured key is of a type that can open this JWE".to_string()
    } else {
        format!("no configured key opens this JWE ({})", reasons.join("; "))
    })
}

fn cek_len(enc: &str) -> Result<usize, String> {
    match enc {
        "A128GCM" => Ok(16),
        "A256GCM" => Ok(32),
        other => Err(format!(
            "JWE content encryption {other:?} is not supported (A128GCM, A256GCM)"
        )),
    }
}

/// The content encryption key for `key`: `None` when the key does not fit the algorithm.
fn unwrap_cek<'a>(
    alg: &str,
    enc: &str,
    encrypted_key: &[u8],
    key: &PrivateKey,
    param: &dyn Fn(&str) -> Option<&'a Value>,
) -> Result<Option<Vec<u8>>, String> {
    let want = cek_len(enc)?;
    let cek = match (alg, key) {
        ("RSA-OAEP", PrivateKey::Rsa(k)) => {
            rsa_decrypt(k, rsa::Oaep::new::<sha1::Sha1>(), encrypted_key)?
        }
        ("RSA-OAEP-256", PrivateKey::Rsa(k)) => {
            rsa_decrypt(k, rsa::Oaep::new::<Sha256>(), encrypted_key)?
        }
        ("RSA-OAEP" | "RSA-OAEP-256", _) => return Ok(None),
        ("ECDH-ES+A128KW" | "ECDH-ES+A192KW" | "ECDH-ES+A256KW", _) => {
            let kek_len = match alg {
                "ECDH-ES+A128KW" => 16,
                "ECDH-ES+A192KW" => 24,
                _ => 32,
            };
            let epk = param("epk").ok_or("an ECDH-ES JWE without epk")?;
            let Some(z) = ecdh(key, epk)? else {
                return Ok(None);
            };
            let apu = match param("apu").and_then(Value::as_str) {
                Some(s) => b64url(s)?,
                None => Vec::new(),
            };
            let apv = match param("apv").and_then(Value::as_str) {
                Some(s) => b64url(s)?,
                None => Vec::new(),
            };
            let kek = concat_kdf(&z, alg.as_bytes(), &apu, &apv, kek_len);
            aes_unwrap(&kek, encrypted_key)?
        }
        (other, _) => {
            return Err(format!(
            "JWE key management {other:?} is not supported (RSA-OAEP, RSA-OAEP-256, ECDH-ES+A*KW)"
        ))
        }
    };
    if cek.len() != want {
        return Err("the unwrapped JWE key has the wrong length".into());
    }
    Ok(Some(cek))
}

// RUSTSEC-2023-0071 (Marvin): the `rsa` crate's decryption is not constant-time. Blinding
// (below) is what it offers; a local attacker timing many decryptions is the threat, and
// leda-cm decrypts only when an image is pulled or created.
fn rsa_decrypt(
    key: &rsa::RsaPrivateKey,
    padding: impl rsa::traits::PaddingScheme,
    ciphertext: &[u8],
) -> Result<Vec<u8>, String> {
    key.decrypt_blinded(&mut rsa::rand_core::OsRng, padding, ciphertext)
        .map_err(|_| "RSA decryption failed (another key?)".to_string())
}

fn coordinate(jwk: &Value, name: &str, size: usize) -> Result<Vec<u8>, String> {
    let raw = b64url(jwk.get(name).and_then(Value::as_str).unwrap_or_default())?;
    if raw.len() > size {
        return Err("an epk coordinate is too long".into());
    }
    let mut out = vec![0u8; size - raw.len()];
    out.extend_from_slice(&raw);
    Ok(out)
}

/// The uncompressed SEC1 point of a JWK EC public key on a curve of `size`-byte fields.
fn point(jwk: &Value, size: usize) -> Result<Vec<u8>, String> {
    let mut p = vec![4u8];
    p.extend_from_slice(&coordinate(jwk, "x", size)?);
    p.extend_from_slice(&coordinate(jwk, "y", size)?);
    Ok(p)
}

/// The ECDH shared secret Z with the ephemeral key, or `None` when `key` is not on the
/// epk's curve.
fn ecdh(key: &PrivateKey, epk: &Value) -> Result<Option<Vec<u8>>, String> {
    if epk.get("kty").and_then(Value::as_str) != Some("EC") {
        return Err("the epk is not an EC key".into());
    }
    let crv = epk.get("crv").and_then(Value::as_str).unwrap_or_default();
    let bad = |_| "the epk is not a point on its curve".to_string();
    Ok(match (crv, key) {
        ("P-256", PrivateKey::P256(k)) => {
            let public = p256::PublicKey::from_sec1_bytes(&point(epk, 32)?).map_err(bad)?;
            let shared = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), public.as_affine());
            Some(shared.raw_secret_bytes().to_vec())
        }
        ("P-384", PrivateKey::P384(k)) => {
            let public = p384::PublicKey::from_sec1_bytes(&point(epk, 48)?).map_err(bad)?;
            let shared = p384::ecdh::diffie_hellman(k.to_nonzero_scalar(), public.as_affine());
            Some(shared.raw_secret_bytes().to_vec())
        }
        ("P-521", PrivateKey::P521(k)) => {
            let public = p521::PublicKey::from_sec1_bytes(&point(epk, 66)?).map_err(bad)?;
            let shared = p521::ecdh::diffie_hellman(k.to_nonzero_scalar(), public.as_affine());
            Some(shared.raw_secret_bytes().to_vec())
        }
        ("P-256" | "P-384" | "P-521", _) => None,
        (other, _) => return Err(format!("epk curve {other:?} is not supported")),
    })
}

/// RFC 7518 4.6.2: Concat KDF (NIST SP 800-56A) with SHA-256.
fn concat_kdf(z: &[u8], alg: &[u8], apu: &[u8], apv: &[u8], len: usize) -> Vec<u8> {
    let mut info = Vec::new();
    for part in [alg, apu, apv] {
        info.extend_from_slice(&(part.len() as u32).to_be_bytes());
        info.extend_from_slice(part);
    }
    info.extend_from_slice(&((len * 8) as u32).to_be_bytes());
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 1u32;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(&info);
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    out
}

fn aes_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Vec<u8>, String> {
    let fail = |_| "AES key unwrap failed (another key?)".to_string();
    if wrapped.len() < 24 || wrapped.len() % 8 != 0 {
        return Err("a wrapped JWE key of a bad length".into());
    }
    let mut out = vec![0u8; wrapped.len() - 8];
    match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek)
            .map_err(fail)?
            .unwrap(wrapped, &mut out)
            .map_err(fail)?,
        24 => aes_kw::KekAes192::try_from(kek)
            .map_err(fail)?
            .unwrap(wrapped, &mut out)
            .map_err(fail)?,
        _ => aes_kw::KekAes256::try_from(kek)
            .map_err(fail)?
            .unwrap(wrapped, &mut out)
            .map_err(fail)?,
    }
    Ok(out)
}

/// AES-GCM open; `sealed` is the ciphertext with the tag appended.
pub fn open(
    enc: &str,
    cek: &[u8],
    iv: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, String> {
    use ring::aead;
    let algorithm = match enc {
        "A128GCM" => &aead::AES_128_GCM,
        "A256GCM" => &aead::AES_256_GCM,
        other => return Err(format!("content encryption {other:?} is not supported")),
    };
    let key = aead::UnboundKey::new(algorithm, cek)
        .map_err(|_| "a content key of the wrong length".to_string())?;
    let nonce = aead::Nonce::try_assume_unique_for_key(iv)
        .map_err(|_| "a GCM nonce that is not 12 bytes".to_string())?;
    let mut buf = sealed.to_vec();
    let plain = aead::LessSafeKey::new(key)
        .open_in_place(nonce, aead::Aad::from(aad), &mut buf)
        .map_err(|_| "the content does not authenticate (another key?)".to_string())?;
    Ok(plain.to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rsa::traits::PublicKeyParts;

    fn b64(b: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    fn seal(enc: &str, cek: &[u8], iv: &[u8; 12], aad: &[u8], plain: &[u8]) -> (Vec<u8>, Vec<u8>) {
        use ring::aead;
        let alg = if enc == "A128GCM" {
            &aead::AES_128_GCM
        } else {
            &aead::AES_256_GCM
        };
        let key = aead::LessSafeKey::new(aead::UnboundKey::new(alg, cek).unwrap());
        let mut buf = plain.to_vec();
        let tag = key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(*iv),
                aead::Aad::from(aad),
                &mut buf,
            )
            .unwrap();
        (buf, tag.as_ref().to_vec())
    }

    /// A general-serialization JWE of `plain` for an RSA key (RSA-OAEP) and a P-256 key
    /// (ECDH-ES+A256KW), as go-jose's multi-recipient encrypter lays it out.
    pub(crate) fn make_jwe(
        plain: &[u8],
        rsa: Option<&rsa::RsaPublicKey>,
        ec: Option<&p256::PublicKey>,
    ) -> Vec<u8> {
        use rsa::rand_core::OsRng;
        let cek = [0x42u8; 32];
        let iv = [7u8; 12];
        let protected = b64(br#"{"enc":"A256GCM"}"#);
        let (ct, tag) = seal("A256GCM", &cek, &iv, protected.as_bytes(), plain);
        let mut recipients = Vec::new();
        if let Some(pk) = rsa {
            let wrapped = pk
                .encrypt(&mut OsRng, rsa::Oaep::new::<sha1::Sha1>(), &cek)
                .unwrap();
            recipients.push(
                serde_json::json!({"header": {"alg": "RSA-OAEP"}, "encrypted_key": b64(&wrapped)}),
            );
        }
        if let Some(pk) = ec {
            let eph = p256::ecdh::EphemeralSecret::random(&mut OsRng);
            let z = eph.diffie_hellman(pk);
            let kek = concat_kdf(z.raw_secret_bytes(), b"ECDH-ES+A256KW", &[], &[], 32);
            let mut wrapped = vec![0u8; 40];
            aes_kw::KekAes256::try_from(&kek[..])
                .unwrap()
                .wrap(&cek, &mut wrapped)
                .unwrap();
            let epk = p256::PublicKey::from(&eph);
            let point = p256::EncodedPoint::from(epk);
            recipients.push(
                serde_json::json!({"header": {"alg": "ECDH-ES+A256KW", "epk": {
                "kty": "EC", "crv": "P-256",
                "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}},
                "encrypted_key": b64(&wrapped)}),
            );
        }
        serde_json::to_vec(&serde_json::json!({
            "protected": protected, "recipients": recipients,
            "iv": b64(&iv), "ciphertext": b64(&ct), "tag": b64(&tag)
        }))
        .unwrap()
    }

    pub(crate) fn rsa_key() -> rsa::RsaPrivateKey {
        rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap()
    }

    #[test]
    fn rsa_oaep_and_ecdh_es_recipients_open() {
        let rsa_key = rsa_key();
        let ec_key = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
        let jwe = make_jwe(
            b"the options",
            Some(&rsa_key.to_public_key()),
            Some(&ec_key.public_key()),
        );
        let rsa_only = [PrivateKey::Rsa(Box::new(rsa_key.clone()))];
        assert_eq!(unwrap(&jwe, &rsa_only).unwrap(), b"the options");
        let ec_only = [PrivateKey::P256(ec_key.clone())];
        assert_eq!(unwrap(&jwe, &ec_only).unwrap(), b"the options");

        // Other keys of the same types: refused, with a reason.
        let other = [
            PrivateKey::Rsa(Box::new(super::tests::rsa_key())),
            PrivateKey::P256(p256::SecretKey::random(&mut rsa::rand_core::OsRng)),
        ];
        let err = unwrap(&jwe, &other).unwrap_err();
        assert!(err.contains("no configured key opens"), "{err}");
        assert!(rsa_key.size() == 256);

        // A tampered ciphertext does not authenticate.
        let mut v: Value = serde_json::from_slice(&jwe).unwrap();
        v["ciphertext"] = Value::String(b64(b"the optionz"));
        let err = unwrap(&serde_json::to_vec(&v).unwrap(), &rsa_only).unwrap_err();
        assert!(err.contains("authenticate"), "{err}");
    }

    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        // RFC 7518 Appendix C: Z, "A128GCM", apu "Alice", apv "Bob", 128 bits.
        let z = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let k = concat_kdf(&z, b"A128GCM", b"Alice", b"Bob", 16);
        assert_eq!(
            k,
            [86, 170, 141, 234, 248, 35, 109, 32, 92, 34, 40, 205, 113, 167, 16, 26]
        );
    }

    #[test]
    fn hostile_jwe_is_an_error_not_a_panic() {
        let keys = [PrivateKey::P256(p256::SecretKey::random(
            &mut rsa::rand_core::OsRng,
        ))];
        for bad in [
            &b""[..],
            b"{}",
            b"[]",
            br#"{"iv":"","ciphertext":"","tag":""}"#,
            br#"{"protected":"!!","iv":"","ciphertext":"","tag":"","encrypted_key":""}"#,
            br#"{"protected":"e30","iv":"AA","ciphertext":"","tag":"","encrypted_key":"AA","header":{"alg":"ECDH-ES+A256KW","enc":"A256GCM"}}"#,
            br#"{"protected":"e30","iv":"AA","ciphertext":"","tag":"","encrypted_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","header":{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}}"#,
            br#"{"protected":"e30","iv":"AA","ciphertext":"","tag":"","encrypted_key":"AA","header":{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"kty":"EC","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AA"}}}"#,
            br#"{"protected":"e30","iv":"AA","ciphertext":"","tag":"","encrypted_key":"AA","header":{"alg":"dir","enc":"A256GCM"}}"#,
            br#"{"protected":"e30","iv":"AA","ciphertext":"","tag":"","encrypted_key":"AA","header":{"alg":"RSA-OAEP","enc":"A128CBC-HS256"}}"#,
        ] {
            assert!(unwrap(bad, &keys).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
