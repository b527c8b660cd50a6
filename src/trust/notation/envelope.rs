//! Signature envelopes: JWS (JSON serialization) and COSE_Sign1, read into one shape with
//! notation's header rules (notation-core-go's `jws` and `cose` packages). Nothing here
//! checks a signature: [`Envelope::signing_input`] and [`Envelope::signature`] are what
//! the caller verifies with the leaf certificate's key.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value as Json;

use super::cbor::{self, Value};
use crate::trust::{COSE_MEDIA_TYPE, JWS_MEDIA_TYPE};

/// The payload content type notation signs.
pub(super) const PAYLOAD_CONTENT_TYPE: &str = "application/vnd.cncf.notary.payload.v1+json";
pub(super) const SCHEME_X509: &str = "notary.x509";
pub(super) const SCHEME_SIGNING_AUTHORITY: &str = "notary.x509.signingAuthority";

const H_SIGNING_SCHEME: &str = "io.cncf.notary.signingScheme";
const H_SIGNING_TIME: &str = "io.cncf.notary.signingTime";
const H_AUTHENTIC_SIGNING_TIME: &str = "io.cncf.notary.authenticSigningTime";
const H_EXPIRY: &str = "io.cncf.notary.expiry";
const H_VERIFICATION_PLUGIN: &str = "io.cncf.notary.verificationPlugin";
const H_TIMESTAMP: &str = "io.cncf.notary.timestampSignature";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Alg {
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
        }
    }
}

#[derive(Debug)]
pub(super) struct Envelope {
    pub alg: Alg,
    /// The signed payload (JSON).
    pub payload: Vec<u8>,
    /// The bytes the signature is over.
    pub signing_input: Vec<u8>,
    /// The signature (ECDSA: raw `r || s`).
    pub signature: Vec<u8>,
    /// x5c / x5chain, leaf first (DER).
    pub certs: Vec<Vec<u8>>,
    /// Seconds since the epoch.
    /// Untrusted (the signer's clock) under `notary.x509`: checked against the expiry only.
    #[cfg_attr(not(test), allow(dead_code))]
    pub signing_time: i64,
    pub expiry: Option<i64>,
    /// A timestamp countersignature is present (leda-cm does not verify RFC 3161 tokens).
    pub timestamped: bool,
}

pub(super) fn parse(media_type: &str, blob: &[u8]) -> Result<Envelope, String> {
    match media_type {
        JWS_MEDIA_TYPE => parse_jws(blob),
        COSE_MEDIA_TYPE => parse_cose(blob),
        other => Err(format!(
            "envelope media type {other:?} is not supported ({JWS_MEDIA_TYPE} and {COSE_MEDIA_TYPE} are)"
        )),
    }
}

/// The rules both formats share once their headers are read.
struct Headers {
    alg: Result<Alg, String>,
    content_type: Option<String>,
    scheme: Option<String>,
    signing_time: Option<i64>,
    authentic_signing_time: bool,
    expiry: Option<i64>,
    /// Names (or labels, printed) the `crit` header lists.
    crit: Option<Vec<String>>,
    /// Every protected header's name (or label, printed).
    present: Vec<String>,
    plugin: Option<String>,
}

/// Names of protected headers notation itself understands (the rest are extended
/// attributes, which only a verification plugin can process).
fn known_header(name: &str, cose: bool) -> bool {
    let system: &[&str] = if cose {
        &["1", "2", "3"]
    } else {
        &["alg", "cty", "crit"]
    };
    system.contains(&name)
        || [
            H_SIGNING_SCHEME,
            H_SIGNING_TIME,
            H_AUTHENTIC_SIGNING_TIME,
            H_EXPIRY,
        ]
        .contains(&name)
}

fn check_headers(h: Headers, cose: bool) -> Result<(Alg, i64, Option<i64>), String> {
    let scheme = h
        .scheme
        .ok_or_else(|| format!("protected header {H_SIGNING_SCHEME} is missing"))?;
    match scheme.as_str() {
        SCHEME_X509 => {}
        SCHEME_SIGNING_AUTHORITY => {
            return Err(format!(
                "signing scheme {SCHEME_SIGNING_AUTHORITY} is not supported by leda-cm (it needs the signing authority's authentic signing time); sign with {SCHEME_X509}"
            ))
        }
        other => return Err(format!("unsupported signing scheme {other:?}")),
    }
    if h.authentic_signing_time {
        return Err(format!(
            "header {H_AUTHENTIC_SIGNING_TIME} must not be present for the {SCHEME_X509} signing scheme"
        ));
    }
    let signing_time = h
        .signing_time
        .ok_or_else(|| format!("protected header {H_SIGNING_TIME} is missing"))?;
    if let Some(expiry) = h.expiry {
        if expiry <= signing_time {
            return Err("expiry cannot be equal to or before the signing time".into());
        }
    }
    let crit = h.crit.ok_or("the crit header is missing")?;
    if crit.is_empty() {
        return Err("the crit header is empty".into());
    }
    let mut must: Vec<&str> = vec![H_SIGNING_SCHEME];
    if h.expiry.is_some() {
        must.push(H_EXPIRY);
    }
    for m in &must {
        if !crit.iter().any(|c| c == m) {
            return Err(format!("header {m} is not marked critical"));
        }
    }
    for c in &crit {
        if !h.present.contains(c) {
            return Err(format!("header {c:?} is marked critical but not present"));
        }
        if !known_header(c, cose) {
            return Err(format!(
                "critical header {c:?} is not understood (leda-cm runs no verification plugins)"
            ));
        }
    }
    if let Some(plugin) = h.plugin {
        return Err(format!(
            "the signature needs verification plugin {plugin:?}, and leda-cm runs no plugins"
        ));
    }
    match h.content_type.as_deref() {
        Some(PAYLOAD_CONTENT_TYPE) => {}
        Some(other) => {
            return Err(format!(
                "payload content type {other:?} is not {PAYLOAD_CONTENT_TYPE}"
            ))
        }
        None => return Err("the payload content type header is missing".into()),
    }
    Ok((h.alg?, signing_time, h.expiry))
}

fn parse_jws(blob: &[u8]) -> Result<Envelope, String> {
    let env: Json = serde_json::from_slice(blob).map_err(|e| format!("JWS is not JSON: {e}"))?;
    let field = |name: &str| -> Result<&str, String> {
        env.get(name)
            .and_then(Json::as_str)
            .ok_or_else(|| format!("JWS field {name:?} is missing or not a string"))
    };
    let protected_b64 = field("protected")?;
    let payload_b64 = field("payload")?;
    let signature = URL_SAFE_NO_PAD
        .decode(field("signature")?)
        .map_err(|e| format!("JWS signature is not base64url: {e}"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|e| format!("JWS payload is not base64url: {e}"))?;
    let protected_json = URL_SAFE_NO_PAD
        .decode(protected_b64)
        .map_err(|e| format!("JWS protected header is not base64url: {e}"))?;
    let protected: serde_json::Map<String, Json> = serde_json::from_slice(&protected_json)
        .map_err(|e| format!("JWS protected header is not a JSON object: {e}"))?;
    let header = env
        .get("header")
        .and_then(Json::as_object)
        .ok_or("JWS unprotected header is missing")?;

    let certs = header
        .get("x5c")
        .and_then(Json::as_array)
        .ok_or("JWS header x5c (the certificate chain) is missing")?
        .iter()
        .map(|c| {
            c.as_str()
                .and_then(|s| STANDARD.decode(s).ok())
                .ok_or_else(|| "JWS x5c entry is not base64".to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;

    let text = |name: &str| -> Result<Option<String>, String> {
        match protected.get(name) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!("JWS header {name} is not a string")),
        }
    };
    let time = |name: &str| -> Result<Option<i64>, String> {
        text(name)?
            .map(|s| {
                parse_rfc3339(&s).ok_or(format!("JWS header {name} {s:?} is not an RFC 3339 time"))
            })
            .transpose()
    };
    let alg = match text("alg")?.as_deref() {
        Some("PS256") => Ok(Alg::Ps256),
        Some("PS384") => Ok(Alg::Ps384),
        Some("PS512") => Ok(Alg::Ps512),
        Some("ES256") => Ok(Alg::Es256),
        Some("ES384") => Ok(Alg::Es384),
        Some("ES512") => {
            Err("signature algorithm ES512 (ECDSA P-521) is not supported by leda-cm".to_string())
        }
        Some(other) => Err(format!("signature algorithm {other:?} is not supported")),
        None => Err("JWS header alg is missing".to_string()),
    };
    let crit = match protected.get("crit") {
        None => None,
        Some(Json::Array(items)) => Some(
            items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or("JWS crit entry is not a string")
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err("JWS crit header is not an array".into()),
    };
    let headers = Headers {
        alg,
        content_type: text("cty")?,
        scheme: text(H_SIGNING_SCHEME)?,
        signing_time: time(H_SIGNING_TIME)?,
        authentic_signing_time: protected.contains_key(H_AUTHENTIC_SIGNING_TIME),
        expiry: time(H_EXPIRY)?,
        crit,
        present: protected.keys().cloned().collect(),
        plugin: text(H_VERIFICATION_PLUGIN)?,
    };
    let (alg, signing_time, expiry) = check_headers(headers, false)?;
    let mut signing_input = Vec::with_capacity(protected_b64.len() + payload_b64.len() + 1);
    signing_input.extend_from_slice(protected_b64.as_bytes());
    signing_input.push(b'.');
    signing_input.extend_from_slice(payload_b64.as_bytes());
    Ok(Envelope {
        alg,
        payload,
        signing_input,
        signature,
        certs,
        signing_time,
        expiry,
        timestamped: header.contains_key(H_TIMESTAMP),
    })
}

fn label(v: &Value) -> String {
    match v {
        Value::Int(i) => i.to_string(),
        Value::Text(t) => t.clone(),
        other => format!("{other:?}"),
    }
}

fn lookup<'v>(map: &'v [(Value, Value)], key: &Value) -> Option<&'v Value> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn parse_cose(blob: &[u8]) -> Result<Envelope, String> {
    let msg = match cbor::decode(blob).map_err(|e| format!("COSE envelope: {e}"))? {
        Value::Tag(18, inner) => *inner,
        _ => return Err("COSE envelope is not a tagged COSE_Sign1 (tag 18)".into()),
    };
    let Value::Array(parts) = msg else {
        return Err("COSE_Sign1 is not an array".into());
    };
    let [Value::Bytes(protected_raw), Value::Map(unprotected), payload, Value::Bytes(signature)] =
        parts.as_slice()
    else {
        return Err(
            "COSE_Sign1 is not [protected bstr, unprotected map, payload, signature bstr]".into(),
        );
    };
    let Value::Bytes(payload) = payload else {
        return Err("COSE payload is detached or not a byte string".into());
    };
    let Value::Map(protected) =
        cbor::decode(protected_raw).map_err(|e| format!("COSE protected header: {e}"))?
    else {
        return Err("COSE protected header is not a map".into());
    };
    let text_key = |k: &str| Value::Text(k.to_string());
    let text = |k: &str| -> Result<Option<String>, String> {
        match lookup(&protected, &text_key(k)) {
            None => Ok(None),
            Some(Value::Text(t)) => Ok(Some(t.clone())),
            Some(_) => Err(format!("COSE header {k} is not a text string")),
        }
    };
    let time = |k: &str| -> Result<Option<i64>, String> {
        match lookup(&protected, &text_key(k)) {
            None => Ok(None),
            Some(Value::Tag(1, t)) => match **t {
                Value::Int(secs) => i64::try_from(secs)
                    .map(Some)
                    .map_err(|_| format!("COSE header {k} is out of range")),
                _ => Err(format!("COSE header {k} is not an integer datetime")),
            },
            Some(_) => Err(format!(
                "COSE header {k} is not a tag 1 datetime (the only form notation accepts)"
            )),
        }
    };
    let alg = match lookup(&protected, &Value::Int(1)) {
        Some(Value::Int(-37)) => Ok(Alg::Ps256),
        Some(Value::Int(-38)) => Ok(Alg::Ps384),
        Some(Value::Int(-39)) => Ok(Alg::Ps512),
        Some(Value::Int(-7)) => Ok(Alg::Es256),
        Some(Value::Int(-35)) => Ok(Alg::Es384),
        Some(Value::Int(-36)) => {
            Err("signature algorithm ES512 (ECDSA P-521) is not supported by leda-cm".to_string())
        }
        Some(other) => Err(format!("COSE algorithm {} is not supported", label(other))),
        None => Err("COSE header alg (1) is missing".to_string()),
    };
    let crit = match lookup(&protected, &Value::Int(2)) {
        None => None,
        Some(Value::Array(items)) => Some(items.iter().map(label).collect()),
        Some(_) => return Err("COSE crit header (2) is not an array".into()),
    };
    let content_type = match lookup(&protected, &Value::Int(3)) {
        None => None,
        Some(Value::Text(t)) => Some(t.clone()),
        Some(other) => Some(label(other)),
    };
    let headers = Headers {
        alg,
        content_type,
        scheme: text(H_SIGNING_SCHEME)?,
        signing_time: time(H_SIGNING_TIME)?,
        authentic_signing_time: lookup(&protected, &text_key(H_AUTHENTIC_SIGNING_TIME)).is_some(),
        expiry: time(H_EXPIRY)?,
        crit,
        present: protected.iter().map(|(k, _)| label(k)).collect(),
        plugin: text(H_VERIFICATION_PLUGIN)?,
    };
    let (alg, signing_time, expiry) = check_headers(headers, true)?;
    let certs = match lookup(unprotected, &Value::Int(33)) {
        Some(Value::Bytes(one)) => vec![one.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i {
                Value::Bytes(b) => Ok(b.clone()),
                _ => Err("COSE x5chain entry is not a byte string".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("COSE x5chain (33) is malformed".into()),
        None => return Err("COSE x5chain (33), the certificate chain, is missing".into()),
    };
    // Sig_structure = ["Signature1", protected, external_aad = h'', payload] (RFC 9052 4.4).
    let mut signing_input = vec![0x84, 0x6a];
    signing_input.extend_from_slice(b"Signature1");
    cbor::head(2, protected_raw.len() as u64, &mut signing_input);
    signing_input.extend_from_slice(protected_raw);
    signing_input.push(0x40);
    cbor::head(2, payload.len() as u64, &mut signing_input);
    signing_input.extend_from_slice(payload);
    Ok(Envelope {
        alg,
        payload: payload.clone(),
        signing_input,
        signature: signature.clone(),
        certs,
        signing_time,
        expiry,
        timestamped: lookup(unprotected, &text_key(H_TIMESTAMP)).is_some(),
    })
}

/// Seconds since the epoch of an RFC 3339 date-time (`2024-05-01T10:00:00Z`,
/// `…T10:00:00.123+02:00`); fractions are dropped.
pub(super) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = s.get(r)?;
        d.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| d.parse().ok())?
    };
    if b.len() < 20
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't'))
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let base = super::x509::civil_to_unix(
        num(0..4)?,
        num(5..7)?,
        num(8..10)?,
        num(11..13)?,
        num(14..16)?,
        num(17..19)?,
    )?;
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = frac.get(digits..)?;
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes().get(3) != Some(&b':') {
                return None;
            }
            let h = rest.get(1..3)?.parse::<i64>().ok()?;
            let m = rest.get(4..6)?.parse::<i64>().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60)
        }
    };
    Some(base - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        for (s, want) in [
            ("2020-01-01T00:00:00Z", Some(1_577_836_800)),
            ("2020-01-01T02:00:00+02:00", Some(1_577_836_800)),
            ("2019-12-31T23:00:00.123456789-01:00", Some(1_577_836_800)),
            ("2020-01-01 00:00:00Z", None),
            ("2020-01-01T00:00:00", None),
            ("2020-13-01T00:00:00Z", None),
            ("2020-01-01T00:00:00.Z", None),
            ("2020-01-01T00:00:00+0200", None),
            ("", None),
            ("2020-01-01T00:00:00Zjunk", None),
        ] {
            assert_eq!(parse_rfc3339(s), want, "{s}");
        }
    }

    #[test]
    fn hostile_envelopes_are_errors_not_panics() {
        let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
        let jws = |protected: &str| {
            format!(
                r#"{{"protected":"{}","payload":"{}","signature":"AAAA","header":{{"x5c":[]}}}}"#,
                b64(protected),
                b64("{}")
            )
        };
        let jws_cases = [
            String::new(),
            "[]".into(),
            "{}".into(),
            r#"{"protected":1,"payload":"","signature":"","header":{}}"#.into(),
            r#"{"protected":"!!","payload":"","signature":"","header":{"x5c":[]}}"#.into(),
            jws("not json"),
            jws("{}"),
            jws(
                r#"{"alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2020-01-01T00:00:00Z"}"#,
            ),
            jws(
                r#"{"alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2020-01-01T00:00:00Z","crit":["io.cncf.notary.signingScheme","x"]}"#,
            ),
            jws(
                r#"{"alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2020-01-01T00:00:00Z","io.cncf.notary.expiry":"2021-01-01T00:00:00Z","crit":["io.cncf.notary.signingScheme"]}"#,
            ),
            jws(
                r#"{"alg":"ES512","cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2020-01-01T00:00:00Z","crit":["io.cncf.notary.signingScheme"]}"#,
            ),
            jws(
                r#"{"alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509.signingAuthority","io.cncf.notary.authenticSigningTime":"2020-01-01T00:00:00Z","crit":["io.cncf.notary.signingScheme","io.cncf.notary.authenticSigningTime"]}"#,
            ),
            jws(
                r#"{"alg":"ES256","cty":"text/plain","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2020-01-01T00:00:00Z","crit":["io.cncf.notary.signingScheme"]}"#,
            ),
            jws(
                r#"{"alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2020-01-01T00:00:00Z","io.cncf.notary.expiry":"2019-01-01T00:00:00Z","crit":["io.cncf.notary.signingScheme","io.cncf.notary.expiry"]}"#,
            ),
        ];
        for c in &jws_cases {
            assert!(parse(JWS_MEDIA_TYPE, c.as_bytes()).is_err(), "{c}");
        }
        let good = jws(
            r#"{"alg":"ES256","cty":"application/vnd.cncf.notary.payload.v1+json","io.cncf.notary.signingScheme":"notary.x509","io.cncf.notary.signingTime":"2020-01-01T00:00:00Z","crit":["io.cncf.notary.signingScheme"]}"#,
        );
        let e = parse(JWS_MEDIA_TYPE, good.as_bytes()).expect("well-formed headers");
        assert_eq!(
            (e.alg, e.signing_time, e.expiry),
            (Alg::Es256, 1_577_836_800, None)
        );
        // Every truncation of it.
        for n in 0..good.len() {
            assert!(
                parse(JWS_MEDIA_TYPE, &good.as_bytes()[..n]).is_err(),
                "prefix {n}"
            );
        }

        let cose_cases: &[&[u8]] = &[
            &[],
            &[0x84, 0x40, 0xa0, 0x40, 0x40],
            &[0xd2, 0x83, 0x40, 0xa0, 0x40],
            &[0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40],
            &[0xd2, 0x84, 0x41, 0x00, 0xa0, 0x40, 0x40],
            &[0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa0, 0x40, 0x40],
            &[
                0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa1, 0x18, 0x21, 0x01, 0x40, 0x40,
            ],
        ];
        for c in cose_cases {
            assert!(parse(COSE_MEDIA_TYPE, c).is_err(), "{c:02x?}");
        }
        assert!(parse("application/octet-stream", b"{}").is_err());
    }
}
