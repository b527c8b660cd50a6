//! Envelopes made by notation-go (tests/fixtures/notation/envelopes.sh, signing time
//! 2026-12-04T14:00:00Z, expired.jws 2020-06-01) for the made-up target below.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::trust::{COSE_MEDIA_TYPE, JWS_MEDIA_TYPE};

const TARGET_DIGEST: &str =
    "sha256:3b0c3f1d7c8e0a5f6c2b9e4d1a7f8e2c5b6d9a0e3f4c7b8a1d2e5f6a9b0c3d4e";
const TARGET_SIZE: u64 = 1234;
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

const ROOT: &str = include_str!("../../../tests/fixtures/notation/root.crt");
const OTHER_ROOT: &str = include_str!("../../../tests/fixtures/notation/other-root.crt");

fn fixture(name: &str) -> Signature {
    let blob = match name {
        "ec.jws" => &include_bytes!("../../../tests/fixtures/notation/ec.jws")[..],
        "ec.cose" => include_bytes!("../../../tests/fixtures/notation/ec.cose"),
        "ec384.cose" => include_bytes!("../../../tests/fixtures/notation/ec384.cose"),
        "rsa.jws" => include_bytes!("../../../tests/fixtures/notation/rsa.jws"),
        "rsa.cose" => include_bytes!("../../../tests/fixtures/notation/rsa.cose"),
        "other.jws" => include_bytes!("../../../tests/fixtures/notation/other.jws"),
        "ocsp.jws" => include_bytes!("../../../tests/fixtures/notation/ocsp.jws"),
        "expiry.cose" => include_bytes!("../../../tests/fixtures/notation/expiry.cose"),
        "expired.jws" => include_bytes!("../../../tests/fixtures/notation/expired.jws"),
        other => panic!("no fixture {other}"),
    };
    let media_type = if name.ends_with(".jws") {
        JWS_MEDIA_TYPE
    } else {
        COSE_MEDIA_TYPE
    };
    Signature {
        media_type: media_type.into(),
        blob: blob.to_vec(),
        annotations: Default::default(),
    }
}

fn target(digest: &str) -> Target {
    Target {
        repository: "127.0.0.1:5000/app".into(),
        image: "127.0.0.1:5000/app:1".into(),
        digest: digest.into(),
        media_type: MANIFEST.into(),
        size: TARGET_SIZE,
    }
}

fn certs(pem: &str) -> Vec<Cert> {
    pem_certificates(pem.as_bytes())
        .expect("pem")
        .iter()
        .map(|d| Cert::parse(d).expect("cert"))
        .collect()
}

fn policy_with(level: &str, identity: &str, store_pem: &str) -> Policy {
    let doc = format!(
        r#"{{"version":"1.0","trustPolicies":[{{"name":"p","registryScopes":["*"],
            "signatureVerification":{{"level":"{level}"}},
            "trustStores":["ca:test"],"trustedIdentities":["{identity}"]}}]}}"#
    );
    let doc = if level == "skip" {
        r#"{"version":"1.0","trustPolicies":[{"name":"p","registryScopes":["*"],"signatureVerification":{"level":"skip"}}]}"#.to_string()
    } else {
        doc
    };
    let statements = policy::parse(doc.as_bytes()).expect("policy");
    let mut stores = BTreeMap::new();
    stores.insert((StoreType::Ca, "test".to_string()), certs(store_pem));
    Policy { statements, stores }
}

fn policy(level: &str) -> Policy {
    policy_with(level, "*", ROOT)
}

fn at(days_after_signing: i64) -> SystemTime {
    // 2026-12-04T14:00:00Z
    let signing = x509::civil_to_unix(2026, 12, 4, 14, 0, 0).expect("time");
    UNIX_EPOCH + Duration::from_secs((signing + days_after_signing * 86_400) as u64)
}

fn tamper_jws_payload(mut s: Signature) -> Signature {
    let mut v: serde_json::Value = serde_json::from_slice(&s.blob).expect("jws");
    let p = v["payload"].as_str().expect("payload").to_string();
    // Same length, another first character: still base64url, another payload.
    let swapped = if p.starts_with('e') { "f" } else { "e" };
    v["payload"] = serde_json::Value::String(format!("{swapped}{}", &p[1..]));
    s.blob = serde_json::to_vec(&v).expect("json");
    s
}

fn flip_last_byte(mut s: Signature) -> Signature {
    if let Some(b) = s.blob.last_mut() {
        *b ^= 1;
    }
    s
}

#[derive(Debug, PartialEq)]
enum Want {
    Verified,
    Skipped,
    Logged(&'static str),
    Refused(&'static str),
}

#[test]
fn verification_table() {
    use Want::*;
    let other_digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    type Case = (
        &'static str,
        Policy,
        Vec<Signature>,
        &'static str,
        SystemTime,
        Want,
    );
    let cases: Vec<Case> = vec![
        (
            "valid JWS",
            policy("strict"),
            vec![fixture("ec.jws")],
            TARGET_DIGEST,
            at(1),
            Verified,
        ),
        (
            "valid COSE",
            policy("strict"),
            vec![fixture("ec.cose")],
            TARGET_DIGEST,
            at(1),
            Verified,
        ),
        (
            "P-384 COSE",
            policy("strict"),
            vec![fixture("ec384.cose")],
            TARGET_DIGEST,
            at(1),
            Verified,
        ),
        (
            "RSA-PSS JWS",
            policy("strict"),
            vec![fixture("rsa.jws")],
            TARGET_DIGEST,
            at(1),
            Verified,
        ),
        (
            "RSA-PSS COSE",
            policy("strict"),
            vec![fixture("rsa.cose")],
            TARGET_DIGEST,
            at(1),
            Verified,
        ),
        (
            "one good of two",
            policy("strict"),
            vec![fixture("other.jws"), fixture("ec.cose")],
            TARGET_DIGEST,
            at(1),
            Verified,
        ),
        (
            "manifest digest mismatch",
            policy("strict"),
            vec![fixture("ec.jws")],
            other_digest,
            at(1),
            Refused("integrity: the signature is for"),
        ),
        (
            "mismatch under audit",
            policy("audit"),
            vec![fixture("ec.cose")],
            other_digest,
            at(1),
            Refused("integrity"),
        ),
        (
            "tampered JWS payload",
            policy("strict"),
            vec![tamper_jws_payload(fixture("ec.jws"))],
            TARGET_DIGEST,
            at(1),
            Refused("integrity"),
        ),
        (
            "tampered JWS under audit",
            policy("audit"),
            vec![tamper_jws_payload(fixture("rsa.jws"))],
            TARGET_DIGEST,
            at(1),
            Refused("integrity"),
        ),
        (
            "tampered COSE signature",
            policy("strict"),
            vec![flip_last_byte(fixture("ec.cose"))],
            TARGET_DIGEST,
            at(1),
            Refused("does not verify"),
        ),
        (
            "untrusted CA",
            policy("strict"),
            vec![fixture("other.jws")],
            TARGET_DIGEST,
            at(1),
            Refused("authenticity: the certificate chain does not hold"),
        ),
        (
            "untrusted CA, permissive",
            policy("permissive"),
            vec![fixture("other.jws")],
            TARGET_DIGEST,
            at(1),
            Refused("authenticity"),
        ),
        (
            "untrusted CA, audit",
            policy("audit"),
            vec![fixture("other.jws")],
            TARGET_DIGEST,
            at(1),
            Logged("authenticity"),
        ),
        (
            "store of another root",
            policy_with("strict", "*", OTHER_ROOT),
            vec![fixture("ec.jws")],
            TARGET_DIGEST,
            at(1),
            Refused("authenticity"),
        ),
        (
            "identity matches",
            policy_with(
                "strict",
                "x509.subject: C=US, ST=WA, O=leda-cm tests, CN=signer ec",
                ROOT,
            ),
            vec![fixture("ec.jws")],
            TARGET_DIGEST,
            at(1),
            Verified,
        ),
        (
            "identity subset matches",
            policy_with("strict", "x509.subject: O=leda-cm tests, ST=WA, C=US", ROOT),
            vec![fixture("ec.cose")],
            TARGET_DIGEST,
            at(1),
            Verified,
        ),
        (
            "identity mismatch",
            policy_with(
                "strict",
                "x509.subject: C=US, ST=WA, O=leda-cm tests, CN=signer rsa",
                ROOT,
            ),
            vec![fixture("ec.jws")],
            TARGET_DIGEST,
            at(1),
            Refused("not a trusted identity"),
        ),
        (
            "identity mismatch, audit",
            policy_with(
                "audit",
                "x509.subject: C=US, ST=WA, O=leda-cm tests, CN=signer rsa",
                ROOT,
            ),
            vec![fixture("ec.jws")],
            TARGET_DIGEST,
            at(1),
            Logged("not a trusted identity"),
        ),
        (
            "expired certificate, strict",
            policy("strict"),
            vec![fixture("expired.jws")],
            TARGET_DIGEST,
            at(1),
            Refused("authenticTimestamp"),
        ),
        (
            "expired certificate, permissive",
            policy("permissive"),
            vec![fixture("expired.jws")],
            TARGET_DIGEST,
            at(1),
            Logged("authenticTimestamp"),
        ),
        (
            "leaf expired since",
            policy("strict"),
            vec![fixture("ec.jws")],
            TARGET_DIGEST,
            at(365 * 101),
            Refused("is not valid now"),
        ),
        (
            "not yet valid",
            policy("strict"),
            vec![fixture("ec.jws")],
            TARGET_DIGEST,
            at(-3),
            Refused("is not valid now"),
        ),
        (
            "signature within expiry",
            policy("strict"),
            vec![fixture("expiry.cose")],
            TARGET_DIGEST,
            at(0),
            Verified,
        ),
        (
            "signature expired",
            policy("strict"),
            vec![fixture("expiry.cose")],
            TARGET_DIGEST,
            at(2),
            Refused("expiry: the signature has expired"),
        ),
        (
            "signature expired, permissive",
            policy("permissive"),
            vec![fixture("expiry.cose")],
            TARGET_DIGEST,
            at(2),
            Logged("expiry"),
        ),
        (
            "revocation unchecked, strict",
            policy("strict"),
            vec![fixture("ocsp.jws")],
            TARGET_DIGEST,
            at(1),
            Refused("revocation"),
        ),
        (
            "revocation unchecked, permissive",
            policy("permissive"),
            vec![fixture("ocsp.jws")],
            TARGET_DIGEST,
            at(1),
            Logged("revocation"),
        ),
        (
            "unsigned, strict",
            policy("strict"),
            vec![],
            TARGET_DIGEST,
            at(1),
            Refused("no notation signature"),
        ),
        (
            "unsigned, permissive",
            policy("permissive"),
            vec![],
            TARGET_DIGEST,
            at(1),
            Refused("no notation signature"),
        ),
        (
            "unsigned, audit",
            policy("audit"),
            vec![],
            TARGET_DIGEST,
            at(1),
            Logged("no notation signature"),
        ),
        (
            "skip",
            policy("skip"),
            vec![],
            TARGET_DIGEST,
            at(1),
            Want::Skipped,
        ),
        (
            "skip ignores bad signatures",
            policy("skip"),
            vec![fixture("other.jws")],
            TARGET_DIGEST,
            at(1),
            Want::Skipped,
        ),
        (
            "wrong media type",
            policy("strict"),
            vec![Signature {
                media_type: COSE_MEDIA_TYPE.into(),
                ..fixture("ec.jws")
            }],
            TARGET_DIGEST,
            at(1),
            Refused("integrity"),
        ),
    ];
    for (name, p, sigs, digest, now, want) in cases {
        let got = p.verify(&target(digest), &sigs, now);
        let ok = match (&want, &got) {
            (Verified, Ok(Verdict::Verified { by })) => by.contains("signer"),
            (Want::Skipped, Ok(Verdict::Skipped)) => true,
            (Logged(w), Ok(Verdict::Logged { warnings })) => warnings.iter().any(|x| x.contains(w)),
            (Refused(w), Err(e)) => e.to_string().contains(w),
            _ => false,
        };
        assert!(ok, "{name}: want {want:?}, got {got:?}");
    }
}

#[test]
fn scopes_decide_which_statement_applies() {
    let doc = r#"{"version":"1.0","trustPolicies":[
        {"name":"app","registryScopes":["127.0.0.1:5000/app"],"signatureVerification":{"level":"strict"},"trustStores":["ca:test"],"trustedIdentities":["*"]},
        {"name":"free","registryScopes":["127.0.0.1:5000/free"],"signatureVerification":{"level":"skip"}}]}"#;
    let mut stores = BTreeMap::new();
    stores.insert((StoreType::Ca, "test".to_string()), certs(ROOT));
    let p = Policy {
        statements: policy::parse(doc.as_bytes()).expect("policy"),
        stores,
    };
    for (repo, needs) in [
        ("127.0.0.1:5000/app", true),
        ("127.0.0.1:5000/free", false),
        ("127.0.0.1:5000/other", true),
    ] {
        assert_eq!(p.needs_signatures(repo), needs, "{repo}");
    }
    let mut t = target(TARGET_DIGEST);
    assert!(matches!(
        p.verify(&t, &[fixture("ec.jws")], at(1)),
        Ok(Verdict::Verified { .. })
    ));
    t.repository = "127.0.0.1:5000/other".into();
    assert_eq!(
        p.verify(&t, &[fixture("ec.jws")], at(1)),
        Err(NotationError::NoStatement("127.0.0.1:5000/other".into()))
    );
    t.repository = "127.0.0.1:5000/free".into();
    assert_eq!(p.verify(&t, &[], at(1)), Ok(Verdict::Skipped));
}

#[test]
fn load_reads_notations_layout_and_refuses_what_it_cannot_use() {
    let dir = std::env::temp_dir().join(format!("leda-cm-notation-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = dir.join("truststore/x509/ca/test");
    std::fs::create_dir_all(&store).expect("mkdir");
    let policy_doc = |identity: &str| {
        format!(
            r#"{{"version":"1.0","trustPolicies":[{{"name":"p","registryScopes":["*"],"signatureVerification":{{"level":"strict"}},"trustStores":["ca:test"],"trustedIdentities":["{identity}"]}}]}}"#
        )
    };
    let write = |name: &str, data: &[u8]| std::fs::write(dir.join(name), data).expect("write");

    // No trustpolicy.json.
    assert!(matches!(
        Policy::load(&dir),
        Err(NotationError::Policy { .. })
    ));
    // Empty store.
    write("trustpolicy.json", policy_doc("*").as_bytes());
    assert!(matches!(
        Policy::load(&dir),
        Err(NotationError::Store { .. })
    ));
    // A store file that is no certificate.
    std::fs::write(store.join("junk.crt"), b"hello").expect("write");
    assert!(matches!(
        Policy::load(&dir),
        Err(NotationError::Store { .. })
    ));
    // PEM and DER certificates.
    std::fs::remove_file(store.join("junk.crt")).expect("rm");
    std::fs::write(store.join("root.pem"), ROOT).expect("write");
    let der = pem_certificates(OTHER_ROOT.as_bytes())
        .expect("pem")
        .remove(0);
    std::fs::write(store.join("other.cer"), der).expect("write");
    let p = Policy::load(&dir).expect("load");
    assert_eq!(p.stores.values().map(Vec::len).sum::<usize>(), 2);
    assert!(matches!(
        p.verify(&target(TARGET_DIGEST), &[fixture("ec.cose")], at(1)),
        Ok(Verdict::Verified { .. })
    ));
    // A trusted identity only a plugin could match: refused at start (fail closed).
    write(
        "trustpolicy.json",
        policy_doc("x.plugin:someone").as_bytes(),
    );
    let e = Policy::load(&dir).expect_err("plugin identity");
    assert!(e.to_string().contains("verification plugin"), "{e}");
    // A missing store.
    write(
        "trustpolicy.json",
        policy_doc("*").replace("ca:test", "ca:absent").as_bytes(),
    );
    assert!(matches!(
        Policy::load(&dir),
        Err(NotationError::Store { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn chain_rules() {
    let chain = |names: &[&str]| -> Vec<Cert> {
        names
            .iter()
            .flat_map(|n| {
                let pem = match *n {
                    "root" => ROOT,
                    "other-root" => OTHER_ROOT,
                    "leaf-ec" => include_str!("../../../tests/fixtures/notation/leaf-ec.crt"),
                    "leaf-tls" => include_str!("../../../tests/fixtures/notation/leaf-tls.crt"),
                    "other-leaf" => include_str!("../../../tests/fixtures/notation/other-leaf.crt"),
                    _ => panic!("{n}"),
                };
                certs(pem)
            })
            .collect()
    };
    for (names, want) in [
        (&["leaf-ec", "root"][..], None),
        (&["other-leaf", "other-root"][..], None),
        (&["leaf-ec"][..], Some("not self-issued")),
        (&["root"][..], Some("is a CA")),
        (&["leaf-ec", "other-root"][..], Some("not issued by")),
        (&["leaf-tls", "root"][..], Some("extended key usage")),
        (
            &["leaf-ec", "root", "root"][..],
            Some("self-signed but not the last"),
        ),
        (&["root", "leaf-ec"][..], Some("")),
        (&[][..], Some("empty")),
    ] {
        let got = validate_chain(&chain(names));
        match want {
            None => assert!(got.is_ok(), "{names:?}: {got:?}"),
            Some(w) => assert!(
                got.as_ref().is_err_and(|e| e.contains(w)),
                "{names:?}: want {w:?}, got {got:?}"
            ),
        }
    }
}

#[test]
fn a_certificate_signature_that_does_not_verify_breaks_the_chain() {
    let leaf = include_str!("../../../tests/fixtures/notation/leaf-ec.crt");
    let mut der = pem_certificates(leaf.as_bytes()).expect("pem").remove(0);
    // The last byte is the end of the issuer's ECDSA signature.
    if let Some(b) = der.last_mut() {
        *b ^= 1;
    }
    let mut chain = vec![Cert::parse(&der).expect("still well-formed")];
    chain.extend(certs(ROOT));
    let e = validate_chain(&chain).expect_err("forged certificate");
    assert!(e.contains("does not verify with the key of"), "{e}");
    // A forged self-signed root too.
    let mut root = pem_certificates(ROOT.as_bytes()).expect("pem").remove(0);
    if let Some(b) = root.last_mut() {
        *b ^= 1;
    }
    let mut chain = certs(leaf);
    chain.push(Cert::parse(&root).expect("still well-formed"));
    let e = validate_chain(&chain).expect_err("forged root");
    assert!(
        e.contains("does not verify") || e.contains("not self-signed"),
        "{e}"
    );
}
