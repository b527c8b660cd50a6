//! PKCS7 (CMS EnvelopedData) as ocicrypt writes it (Go's pkcs7 package): key transport
//! rsaEncryption (PKCS#1 v1.5) to recipients named by issuer and serial number, content
//! encryption AES-128-GCM (ocicrypt's choice) or AES-CBC / AES-256-GCM (what the Go
//! package also decrypts). As in ocicrypt, a recipient is tried only with a configured
//! certificate that names it.

use aes::cipher::{BlockDecryptMut, KeyIvInit};

use super::der::{self, Reader};
use super::keys::{Certificate, PrivateKey};

const ENVELOPED_DATA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const AES: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01];

struct KeyTrans<'a> {
    issuer: &'a [u8],
    serial: &'a [u8],
    algorithm: &'a [u8],
    encrypted_key: &'a [u8],
}

struct Envelope<'a> {
    recipients: Vec<KeyTrans<'a>>,
    algorithm: &'a [u8],
    params: Option<der::Tlv<'a>>,
    content: Vec<u8>,
}

fn parse(data: &[u8]) -> Result<Envelope<'_>, der::DerError> {
    let e = der::DerError;
    let mut top = Reader::new(data);
    let mut info = top.enter(der::SEQUENCE, "ContentInfo")?;
    if info.expect(der::OID, "contentType")?.content != ENVELOPED_DATA {
        return Err(e("not EnvelopedData"));
    }
    let mut explicit = info.enter(der::CONTEXT_0, "content")?;
    let mut env = explicit.enter(der::SEQUENCE, "EnvelopedData")?;
    env.expect(der::INTEGER, "version")?;
    if env.peek_tag() == Some(der::CONTEXT_0) {
        env.next()?; // originatorInfo
    }
    let mut set = env.enter(der::SET, "recipientInfos")?;
    let mut recipients = Vec::new();
    while !set.is_empty() {
        let ri = set.next()?;
        if ri.tag != der::SEQUENCE {
            continue; // not a KeyTransRecipientInfo
        }
        let mut ri = Reader::new(ri.content);
        ri.expect(der::INTEGER, "recipient version")?;
        if ri.peek_tag() != Some(der::SEQUENCE) {
            continue; // a subjectKeyIdentifier: not what Go's pkcs7 writes
        }
        let mut ias = ri.enter(der::SEQUENCE, "issuerAndSerialNumber")?;
        let issuer = ias.expect(der::SEQUENCE, "issuer")?.raw;
        let serial = der::integer_value(ias.expect(der::INTEGER, "serialNumber")?.content);
        let mut alg = ri.enter(der::SEQUENCE, "keyEncryptionAlgorithm")?;
        let algorithm = alg.expect(der::OID, "algorithm")?.content;
        let encrypted_key = ri.expect(der::OCTET_STRING, "encryptedKey")?.content;
        recipients.push(KeyTrans {
            issuer,
            serial,
            algorithm,
            encrypted_key,
        });
    }
    let mut eci = env.enter(der::SEQUENCE, "encryptedContentInfo")?;
    eci.expect(der::OID, "contentType")?;
    let mut alg = eci.enter(der::SEQUENCE, "contentEncryptionAlgorithm")?;
    let algorithm = alg.expect(der::OID, "algorithm")?.content;
    let params = if alg.is_empty() {
        None
    } else {
        Some(alg.next()?)
    };
    let encrypted = eci.next()?;
    let content = match encrypted.tag {
        der::CONTEXT_0_PRIMITIVE => encrypted.content.to_vec(),
        // Constructed: the concatenation of OCTET STRINGs.
        der::CONTEXT_0 => {
            let mut parts = Reader::new(encrypted.content);
            let mut out = Vec::new();
            while !parts.is_empty() {
                out.extend_from_slice(parts.expect(der::OCTET_STRING, "encryptedContent")?.content);
            }
            out
        }
        _ => return Err(e("encryptedContent")),
    };
    Ok(Envelope {
        recipients,
        algorithm,
        params,
        content,
    })
}

/// Decrypts `data` with one of `keys`, for a recipient one of `certs` names.
pub fn unwrap(data: &[u8], keys: &[PrivateKey], certs: &[Certificate]) -> Result<Vec<u8>, String> {
    let env = parse(data).map_err(|e| format!("not a PKCS7 envelope: {e}"))?;
    if certs.is_empty() {
        return Err("PKCS7 decryption needs the recipient's X.509 certificate (containers.image_dec_recipients: pkcs7:<certificate>)".into());
    }
    let mut reasons = Vec::new();
    let mut named = false;
    for r in &env.recipients {
        if !certs
            .iter()
            .any(|c| c.issuer == r.issuer && c.serial == r.serial)
        {
            continue;
        }
        named = true;
        if r.algorithm != RSA_ENCRYPTION {
            reasons.push("a PKCS7 key transport other than rsaEncryption".to_string());
            continue;
        }
        for key in keys {
            let PrivateKey::Rsa(k) = key else { continue };
            // RUSTSEC-2023-0071 (Marvin) concerns exactly this PKCS#1 v1.5 decryption;
            // blinded, as the `rsa` crate offers. A wrong key fails here or at the content.
            let Ok(cek) = k.decrypt_blinded(
                &mut rsa::rand_core::OsRng,
                rsa::Pkcs1v15Encrypt,
                r.encrypted_key,
            ) else {
                reasons.push("RSA decryption failed (another key?)".into());
                continue;
            };
            match decrypt_content(&env, &cek) {
                Ok(plain) => return Ok(plain),
                Err(e) => reasons.push(e),
            }
        }
    }
    if !named {
        return Err("no configured certificate names a recipient of this PKCS7 envelope".into());
    }
    reasons.dedup();
    Err(format!(
        "no configured key opens this PKCS7 envelope ({})",
        reasons.join("; ")
    ))
}

fn decrypt_content(env: &Envelope<'_>, cek: &[u8]) -> Result<Vec<u8>, String> {
    let (last, family) = env
        .algorithm
        .split_last()
        .ok_or("an empty content encryption algorithm")?;
    if family != AES {
        return Err("a PKCS7 content encryption other than AES".into());
    }
    let params = env.params.ok_or("no content encryption parameters")?;
    let bad = |_| "bad content encryption parameters".to_string();
    match last {
        // aes128-GCM, aes256-GCM: GCMParameters { nonce, icvLen DEFAULT 12 }
        0x06 | 0x2e => {
            let mut p = match params.tag {
                der::SEQUENCE => Reader::new(params.content),
                // Go's pkcs7 wraps the encoded GCMParameters in a primitive [UNIVERSAL 16].
                0x10 => Reader::new(params.content)
                    .enter(der::SEQUENCE, "GCMParameters")
                    .map_err(bad)?,
                _ => return Err("bad GCM parameters".into()),
            };
            // Go's pkcs7 tags the nonce [4] IMPLICIT (`asn1:"tag:4"`); RFC 5084 untagged.
            let nonce = p.next().map_err(bad)?;
            if nonce.tag != der::OCTET_STRING && nonce.tag != 0x84 {
                return Err("bad GCM nonce".into());
            }
            let nonce = nonce.content;
            if !p.is_empty() {
                let icv = p.expect(der::INTEGER, "icvLen").map_err(bad)?.content;
                if icv != [16] {
                    return Err("a GCM tag length other than 16 bytes is not supported".into());
                }
            }
            let enc = if *last == 0x06 { "A128GCM" } else { "A256GCM" };
            super::jwe::open(enc, cek, nonce, &[], &env.content)
        }
        // aes128-CBC, aes192-CBC, aes256-CBC: the IV
        0x02 | 0x16 | 0x2a => {
            if params.tag != der::OCTET_STRING {
                return Err("bad CBC parameters".into());
            }
            let iv = params.content;
            let mut buf = env.content.clone();
            let wrong = || "the content does not decrypt (another key?)".to_string();
            let n = match (last, cek.len()) {
                (0x02, 16) => cbc::Decryptor::<aes::Aes128>::new_from_slices(cek, iv)
                    .map_err(|_| wrong())?
                    .decrypt_padded_mut::<aes::cipher::block_padding::Pkcs7>(&mut buf)
                    .map_err(|_| wrong())?
                    .len(),
                (0x16, 24) => cbc::Decryptor::<aes::Aes192>::new_from_slices(cek, iv)
                    .map_err(|_| wrong())?
                    .decrypt_padded_mut::<aes::cipher::block_padding::Pkcs7>(&mut buf)
                    .map_err(|_| wrong())?
                    .len(),
                (0x2a, 32) => cbc::Decryptor::<aes::Aes256>::new_from_slices(cek, iv)
                    .map_err(|_| wrong())?
                    .decrypt_padded_mut::<aes::cipher::block_padding::Pkcs7>(&mut buf)
                    .map_err(|_| wrong())?
                    .len(),
                _ => return Err(wrong()),
            };
            buf.truncate(n);
            Ok(buf)
        }
        _ => Err("an AES mode other than GCM or CBC".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_envelopes_are_errors_not_panics() {
        let keys = [PrivateKey::P256(p256::SecretKey::random(
            &mut rsa::rand_core::OsRng,
        ))];
        let certs = [Certificate {
            issuer: vec![0x30, 0],
            serial: vec![1],
        }];
        let mut samples: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x30],
            vec![0x30, 0x00],
            vec![
                0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03,
            ],
        ];
        // Every prefix of a plausible envelope.
        let env: Vec<u8> = vec![
            0x30, 0x3a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03, 0xa0,
            0x2d, 0x30, 0x2b, 0x02, 0x01, 0x00, 0x31, 0x10, 0x30, 0x0e, 0x02, 0x01, 0x00, 0x30,
            0x05, 0x30, 0x00, 0x02, 0x01, 0x01, 0x30, 0x00, 0x04, 0x00, 0x30, 0x14, 0x06, 0x00,
            0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x06, 0x30,
            0x00, 0x80, 0x01, 0x00,
        ];
        for n in 0..=env.len() {
            samples.push(env[..n].to_vec());
        }
        for s in samples {
            assert!(unwrap(&s, &keys, &certs).is_err(), "{s:?}");
        }
    }
}
