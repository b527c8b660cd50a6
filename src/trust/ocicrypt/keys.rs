//! Loading the configured decryption keys (`containers.image_dec_keys`) and the PKCS7
//! recipients' certificates (`containers.image_dec_recipients`), the way ocicrypt's
//! helpers read them: PEM or DER private keys (PKCS#8, PKCS#1 RSA, SEC1 EC), legacy
//! OpenSSL-encrypted PEM (`Proc-Type: 4,ENCRYPTED`, AES-CBC) with the password after the
//! path, X.509 certificates (given as keys they are PKCS7 recipients, as in ocicrypt).
//! What ocicrypt reads and leda-cm does not (GPG key rings, JWK files, PKCS#11 and key
//! providers, encrypted PKCS#8 which ocicrypt cannot read either) is refused.

use std::path::Path;

use aes::cipher::{BlockDecryptMut, KeyIvInit};
use base64::Engine;
use md5::{Digest, Md5};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;

use super::der::{self, Reader};
use super::OcicryptError;

/// A private key that can unwrap layer keys.
pub enum PrivateKey {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    P521(p521::SecretKey),
}

impl PrivateKey {
    pub fn kind(&self) -> &'static str {
        match self {
            PrivateKey::Rsa(_) => "RSA",
            PrivateKey::P256(_) => "EC P-256",
            PrivateKey::P384(_) => "EC P-384",
            PrivateKey::P521(_) => "EC P-521",
        }
    }
}

/// What PKCS7 needs of a recipient's certificate: its issuer (DER) and serial number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub issuer: Vec<u8>,
    pub serial: Vec<u8>,
}

/// What one key file held.
pub enum Loaded {
    Key(PrivateKey),
    Certificate(Certificate),
}

/// One PEM block: its label, its headers (`Name: value` lines) and its decoded body.
struct PemBlock {
    label: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, &'static str> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut headers = Vec::new();
        let mut body = String::new();
        let mut ended = false;
        for line in lines.by_ref() {
            let line = line.trim();
            if line == end {
                ended = true;
                break;
            }
            match line.split_once(':') {
                Some((name, value)) if body.is_empty() => {
                    headers.push((name.trim().to_string(), value.trim().to_string()))
                }
                _ => body.push_str(line),
            }
        }
        if !ended {
            return Err("a PEM block has no END line");
        }
        let body = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|_| "a PEM block is not valid base64")?;
        blocks.push(PemBlock {
            label: label.to_string(),
            headers,
            body,
        });
    }
    Ok(blocks)
}

/// `path[:password]` (ocicrypt's syntax; the password may be `pass=…` or `file=…`) into
/// the path and the password. The password is never part of an error.
pub fn split_entry(entry: &str) -> Result<(&str, Option<Vec<u8>>), OcicryptError> {
    let Some((path, password)) = entry.split_once(':') else {
        return Ok((entry, None));
    };
    let password = if let Some(p) = password.strip_prefix("pass=") {
        p.as_bytes().to_vec()
    } else if let Some(file) = password.strip_prefix("file=") {
        std::fs::read(file).map_err(|e| OcicryptError::KeyFile {
            path: path.to_string(),
            reason: format!("reading its password file: {e}"),
        })?
    } else if password.starts_with("fd=") {
        return Err(OcicryptError::KeyFile {
            path: path.to_string(),
            reason: "a password from a file descriptor (fd=) is not supported; use file=<path>"
                .into(),
        });
    } else {
        password.as_bytes().to_vec()
    };
    Ok((path, Some(password)))
}

/// Reads one key file (`containers.image_dec_keys` entry, split already).
pub fn load_key_file(path: &Path, password: Option<&[u8]>) -> Result<Loaded, OcicryptError> {
    let fail = |reason: String| OcicryptError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let data = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    parse_key(&data, password).map_err(fail)
}

/// Parses the contents of a key file; the error is the reason (without the password).
pub fn parse_key(data: &[u8], password: Option<&[u8]>) -> Result<Loaded, String> {
    let text = std::str::from_utf8(data).ok();
    if let Some(text) = text.filter(|t| t.contains("-----BEGIN ")) {
        let blocks = pem_blocks(text).map_err(String::from)?;
        let mut unknown = Vec::new();
        for block in blocks {
            match block.label.as_str() {
                "PRIVATE KEY" => return pkcs8(&block.body).map(Loaded::Key),
                "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                    let der = legacy_decrypt(&block, password)?;
                    let key = if block.label.starts_with("RSA") {
                        rsa::RsaPrivateKey::from_pkcs1_der(&der)
                            .map(|k| PrivateKey::Rsa(Box::new(k)))
                            .map_err(|_| ())
                    } else {
                        sec1(&der).ok_or(())
                    };
                    return key.map(Loaded::Key).map_err(|()| {
                        if password.is_some() && encrypted(&block) {
                            "wrong password: the decrypted key is not a key".to_string()
                        } else {
                            format!("not a valid {}", block.label)
                        }
                    });
                }
                "ENCRYPTED PRIVATE KEY" => {
                    return Err(
                        "encrypted PKCS#8 keys are not supported (ocicrypt reads none \
                                either); re-encrypt it the legacy way (openssl pkey -traditional \
                                -aes256) or store it unencrypted with tight permissions"
                            .into(),
                    )
                }
                "CERTIFICATE" => return certificate(&block.body).map(Loaded::Certificate),
                "PGP PRIVATE KEY BLOCK" => {
                    return Err("GPG keys are not supported by leda-cm".into())
                }
                // `openssl ecparam -genkey` writes the curve before the key.
                "EC PARAMETERS" => {}
                other => unknown.push(other.to_string()),
            }
        }
        return Err(format!(
            "no private key or certificate in the PEM file (blocks: {unknown:?})"
        ));
    }
    if text.is_some_and(|t| t.trim_start().starts_with('{')) {
        return Err("JWK keys are not supported by leda-cm; give a PEM or DER key".into());
    }
    if let Ok(key) = pkcs8(data) {
        return Ok(Loaded::Key(key));
    }
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs1_der(data) {
        return Ok(Loaded::Key(PrivateKey::Rsa(Box::new(k))));
    }
    if let Some(k) = sec1(data) {
        return Ok(Loaded::Key(k));
    }
    if let Ok(c) = certificate(data) {
        return Ok(Loaded::Certificate(c));
    }
    Err("not a private key (PEM or DER: PKCS#8, PKCS#1 RSA, SEC1 EC) or an X.509 certificate; GPG key rings are not supported".into())
}

fn pkcs8(der: &[u8]) -> Result<PrivateKey, String> {
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
        return Ok(PrivateKey::Rsa(Box::new(k)));
    }
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        return Ok(PrivateKey::P256(k));
    }
    if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        return Ok(PrivateKey::P384(k));
    }
    if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
        return Ok(PrivateKey::P521(k));
    }
    Err("a PKCS#8 key of an unsupported type (leda-cm reads RSA and EC P-256, P-384, P-521)".into())
}

fn sec1(der: &[u8]) -> Option<PrivateKey> {
    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        return Some(PrivateKey::P256(k));
    }
    if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        return Some(PrivateKey::P384(k));
    }
    p521::SecretKey::from_sec1_der(der)
        .ok()
        .map(PrivateKey::P521)
}

fn encrypted(block: &PemBlock) -> bool {
    block
        .headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("Proc-Type") && v.contains("ENCRYPTED"))
}

/// The DER of a legacy PEM block, decrypted when it is encrypted (OpenSSL's
/// `EVP_BytesToKey` with MD5, one round, salt = the IV's first 8 bytes; AES-CBC).
fn legacy_decrypt(block: &PemBlock, password: Option<&[u8]>) -> Result<Vec<u8>, String> {
    if !encrypted(block) {
        return Ok(block.body.clone());
    }
    let password =
        password.ok_or("the key is encrypted and no password is given (path:password)")?;
    let info = block
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("DEK-Info"))
        .map(|(_, v)| v.as_str())
        .ok_or("an encrypted PEM key without DEK-Info")?;
    let (cipher, iv_hex) = info.split_once(',').ok_or("a malformed DEK-Info")?;
    let key_len = match cipher.trim() {
        "AES-128-CBC" => 16,
        "AES-192-CBC" => 24,
        "AES-256-CBC" => 32,
        other => {
            return Err(format!(
                "a PEM key encrypted with {other} (leda-cm decrypts AES-128/192/256-CBC)"
            ))
        }
    };
    let iv = hex(iv_hex.trim()).ok_or("a malformed DEK-Info IV")?;
    let iv: [u8; 16] = iv
        .try_into()
        .map_err(|_| "a DEK-Info IV that is not 16 bytes")?;
    let salt = iv.get(..8).unwrap_or_default();
    let mut key = Vec::with_capacity(48);
    let mut prev: Vec<u8> = Vec::new();
    while key.len() < key_len {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(password);
        h.update(salt);
        prev = h.finalize().to_vec();
        key.extend_from_slice(&prev);
    }
    key.truncate(key_len);
    let mut buf = block.body.clone();
    let wrong = || "wrong password: the key does not decrypt".to_string();
    let plain_len = match key_len {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .map_err(|_| wrong())?
            .decrypt_padded_mut::<aes::cipher::block_padding::Pkcs7>(&mut buf)
            .map_err(|_| wrong())?
            .len(),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &iv)
            .map_err(|_| wrong())?
            .decrypt_padded_mut::<aes::cipher::block_padding::Pkcs7>(&mut buf)
            .map_err(|_| wrong())?
            .len(),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .map_err(|_| wrong())?
            .decrypt_padded_mut::<aes::cipher::block_padding::Pkcs7>(&mut buf)
            .map_err(|_| wrong())?
            .len(),
    };
    buf.truncate(plain_len);
    Ok(buf)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

/// The issuer and serial number of a DER X.509 certificate.
pub fn certificate(der: &[u8]) -> Result<Certificate, String> {
    let bad = |e: der::DerError| format!("not an X.509 certificate ({e})");
    let mut cert = Reader::new(der);
    let mut outer = cert.enter(der::SEQUENCE, "certificate").map_err(bad)?;
    let mut tbs = outer.enter(der::SEQUENCE, "tbsCertificate").map_err(bad)?;
    if tbs.peek_tag() == Some(der::CONTEXT_0) {
        tbs.next().map_err(bad)?;
    }
    let serial = tbs.expect(der::INTEGER, "serialNumber").map_err(bad)?;
    tbs.expect(der::SEQUENCE, "signature").map_err(bad)?;
    let issuer = tbs.expect(der::SEQUENCE, "issuer").map_err(bad)?;
    tbs.expect(der::SEQUENCE, "validity").map_err(bad)?;
    Ok(Certificate {
        issuer: issuer.raw.to_vec(),
        serial: der::integer_value(serial.content).to_vec(),
    })
}

/// One `containers.image_dec_recipients` entry: `pkcs7:<certificate>` (ocicrypt's syntax;
/// only PKCS7 recipients matter for decryption).
pub fn load_recipient(entry: &str) -> Result<Certificate, OcicryptError> {
    let fail = |reason: String| OcicryptError::Recipient {
        entry: entry.to_string(),
        reason,
    };
    let Some(path) = entry.strip_prefix("pkcs7:") else {
        return Err(fail(
            "only pkcs7:<X.509 certificate> recipients are used for decryption".into(),
        ));
    };
    let data = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    match parse_key(&data, None) {
        Ok(Loaded::Certificate(c)) => Ok(c),
        Ok(Loaded::Key(_)) => Err(fail("a private key, not a certificate".into())),
        Err(e) => Err(fail(e)),
    }
}
