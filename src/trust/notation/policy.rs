//! `trustpolicy.json` (version 1.0) with notation's validation (notation-go
//! `verifier/trustpolicy`), scope selection and trusted identities (X.509 subjects).

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Check {
    Integrity,
    Authenticity,
    AuthenticTimestamp,
    Expiry,
    Revocation,
}

impl Check {
    const ALL: [Check; 5] = [
        Check::Integrity,
        Check::Authenticity,
        Check::AuthenticTimestamp,
        Check::Expiry,
        Check::Revocation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Integrity => "integrity",
            Check::Authenticity => "authenticity",
            Check::AuthenticTimestamp => "authenticTimestamp",
            Check::Expiry => "expiry",
            Check::Revocation => "revocation",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Enforce,
    Log,
    Skip,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        match s {
            "enforce" => Some(Action::Enforce),
            "log" => Some(Action::Log),
            "skip" => Some(Action::Skip),
            _ => None,
        }
    }
}

/// The trust store types notation knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum StoreType {
    Ca,
    SigningAuthority,
    Tsa,
}

impl StoreType {
    pub fn parse(s: &str) -> Option<StoreType> {
        match s {
            "ca" => Some(StoreType::Ca),
            "signingAuthority" => Some(StoreType::SigningAuthority),
            "tsa" => Some(StoreType::Tsa),
            _ => None,
        }
    }

    pub fn dir(self) -> &'static str {
        match self {
            StoreType::Ca => "ca",
            StoreType::SigningAuthority => "signingAuthority",
            StoreType::Tsa => "tsa",
        }
    }
}

/// A trusted identity: a set of DN attributes the signing certificate's subject must
/// contain, or anyone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Identity {
    Any,
    Subject(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Statement {
    pub name: String,
    pub scopes: Vec<String>,
    /// `None` for `skip`.
    pub actions: Option<BTreeMap<Check, Action>>,
    pub level: String,
    pub stores: Vec<(StoreType, String)>,
    pub identities: Vec<Identity>,
    /// `verifyTimestamp: afterCertExpiry`.
    pub timestamp_after_cert_expiry: bool,
}

impl Statement {
    pub fn action(&self, check: Check) -> Action {
        self.actions
            .as_ref()
            .and_then(|a| a.get(&check).copied())
            .unwrap_or(Action::Skip)
    }
}

#[derive(Deserialize)]
struct Document {
    version: Option<String>,
    #[serde(rename = "trustPolicies", default)]
    trust_policies: Vec<RawStatement>,
}

#[derive(Deserialize)]
struct RawStatement {
    #[serde(default)]
    name: String,
    #[serde(rename = "registryScopes", default)]
    registry_scopes: Vec<String>,
    #[serde(rename = "signatureVerification", default)]
    signature_verification: RawVerification,
    #[serde(rename = "trustStores", default)]
    trust_stores: Vec<String>,
    #[serde(rename = "trustedIdentities", default)]
    trusted_identities: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawVerification {
    #[serde(default)]
    level: String,
    #[serde(default)]
    r#override: BTreeMap<String, String>,
    #[serde(rename = "verifyTimestamp", default)]
    verify_timestamp: String,
}

/// Parses and validates a trust policy document as notation does.
pub(super) fn parse(json: &[u8]) -> Result<Vec<Statement>, String> {
    let doc: Document =
        serde_json::from_slice(json).map_err(|e| format!("malformed trust policy: {e}"))?;
    match doc.version.as_deref() {
        None | Some("") => return Err("trust policy document has no version".into()),
        Some("1.0") => {}
        Some(v) => {
            return Err(format!(
                "trust policy document uses unsupported version {v:?}"
            ))
        }
    }
    if doc.trust_policies.is_empty() {
        return Err("trust policy document has no trust policy statements".into());
    }
    let mut out: Vec<Statement> = Vec::new();
    for raw in doc.trust_policies {
        if out.iter().any(|s| s.name == raw.name) {
            return Err(format!(
                "multiple trust policy statements use the name {:?}, statement names must be unique",
                raw.name
            ));
        }
        out.push(statement(raw)?);
    }
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for s in &out {
        if s.scopes.is_empty() {
            return Err(format!(
                "trust policy statement {:?} has no registry scopes",
                s.name
            ));
        }
        if s.scopes.len() > 1 && s.scopes.iter().any(|x| x == "*") {
            return Err(format!(
                "trust policy statement {:?} uses the wildcard registry scope '*' with other scopes",
                s.name
            ));
        }
        for scope in &s.scopes {
            if scope != "*" {
                validate_scope(scope)?;
            }
            if let Some(other) = seen.insert(scope, &s.name) {
                return Err(format!(
                    "registry scope {scope:?} is in more than one trust policy statement ({other:?} and {:?})",
                    s.name
                ));
            }
        }
    }
    Ok(out)
}

fn statement(raw: RawStatement) -> Result<Statement, String> {
    let name = raw.name;
    if name.is_empty() {
        return Err("a trust policy statement has no name".into());
    }
    let bad = |msg: String| format!("trust policy statement {name:?}: {msg}");
    let v = raw.signature_verification;
    let base: Option<[Action; 5]> = match v.level.as_str() {
        "strict" => Some([Action::Enforce; 5]),
        "permissive" => Some([
            Action::Enforce,
            Action::Enforce,
            Action::Log,
            Action::Log,
            Action::Log,
        ]),
        "audit" => Some([
            Action::Enforce,
            Action::Log,
            Action::Log,
            Action::Log,
            Action::Log,
        ]),
        "skip" => None,
        "" => return Err(bad("signatureVerification.level is missing".into())),
        other => {
            return Err(bad(format!(
                "invalid signature verification level {other:?}"
            )))
        }
    };
    let actions = match base {
        None => {
            if !v.r#override.is_empty() {
                return Err(bad(
                    "level \"skip\" cannot be customized with override".into()
                ));
            }
            None
        }
        Some(base) => {
            let mut actions: BTreeMap<Check, Action> =
                Check::ALL.iter().copied().zip(base).collect();
            for (key, value) in &v.r#override {
                let check = Check::ALL
                    .iter()
                    .copied()
                    .find(|c| c.name() == key)
                    .ok_or_else(|| bad(format!("override of unknown check {key:?}")))?;
                let action = Action::parse(value).ok_or_else(|| {
                    bad(format!(
                        "override action {value:?} is not enforce, log or skip"
                    ))
                })?;
                if check == Check::Integrity {
                    return Err(bad("the integrity check cannot be overridden".into()));
                }
                if action == Action::Skip && check != Check::Revocation {
                    return Err(bad(format!("the {key} check cannot be skipped")));
                }
                actions.insert(check, action);
            }
            Some(actions)
        }
    };
    let timestamp_after_cert_expiry = match v.verify_timestamp.as_str() {
        "" | "always" => false,
        "afterCertExpiry" => true,
        other => {
            return Err(bad(format!(
                "verifyTimestamp must be \"always\" or \"afterCertExpiry\", not {other:?}"
            )))
        }
    };
    let mut stores = Vec::new();
    let mut identities = Vec::new();
    if actions.is_none() {
        if !raw.trust_stores.is_empty() || !raw.trusted_identities.is_empty() {
            return Err(bad(
                "level \"skip\" takes no trust stores or trusted identities; remove them".into(),
            ));
        }
    } else {
        if raw.trust_stores.is_empty() || raw.trusted_identities.is_empty() {
            return Err(bad(
                "both trustStores and trustedIdentities must be given".into()
            ));
        }
        for s in &raw.trust_stores {
            let (kind, store) = s.split_once(':').ok_or_else(|| {
                bad(format!(
                    "trust store {s:?} is not of the form <type>:<name>"
                ))
            })?;
            let kind = StoreType::parse(kind)
                .ok_or_else(|| bad(format!("trust store {s:?} has an unknown type {kind:?}")))?;
            if !valid_store_name(store) {
                return Err(bad(format!(
                    "trust store name {store:?} is not of the form [a-zA-Z0-9_.-]+"
                )));
            }
            stores.push((kind, store.to_string()));
        }
        if raw.trusted_identities.len() > 1 && raw.trusted_identities.iter().any(|i| i == "*") {
            return Err(bad(
                "the wildcard trusted identity '*' cannot be used with other values".into(),
            ));
        }
        for identity in &raw.trusted_identities {
            if identity.is_empty() {
                return Err(bad("a trusted identity is empty".into()));
            }
            if identity == "*" {
                identities.push(Identity::Any);
                continue;
            }
            let (prefix, value) = identity.split_once(':').ok_or_else(|| {
                bad(format!(
                    "trusted identity {identity:?} has no ':' separator"
                ))
            })?;
            if prefix != "x509.subject" {
                // Other prefixes are for verification plugins, which leda-cm does not
                // run: fail closed at start.
                return Err(bad(format!(
                    "trusted identity {identity:?} needs a verification plugin (leda-cm supports x509.subject identities only)"
                )));
            }
            if value.is_empty() {
                return Err(bad(format!("trusted identity {identity:?} has no value")));
            }
            let dn =
                parse_dn(value).map_err(|e| bad(format!("trusted identity {identity:?}: {e}")))?;
            identities.push(Identity::Subject(dn));
        }
        let subjects: Vec<&Vec<(String, String)>> = identities
            .iter()
            .filter_map(|i| match i {
                Identity::Subject(dn) => Some(dn),
                Identity::Any => None,
            })
            .collect();
        for (i, a) in subjects.iter().enumerate() {
            for (j, b) in subjects.iter().enumerate() {
                if i != j && is_subset(a, b) {
                    return Err(bad(
                        "trusted identities overlap (one is a subset of another)".into(),
                    ));
                }
            }
        }
    }
    Ok(Statement {
        name,
        scopes: raw.registry_scopes,
        level: v.level,
        actions,
        stores,
        identities,
        timestamp_after_cert_expiry,
    })
}

fn valid_store_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `registry/repository` as notation's scope regular expressions accept it.
fn validate_scope(scope: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "registry scope {scope:?} is not valid: a fully qualified repository without scheme or tag is needed, e.g. registry.example/my/app"
        )
    };
    if scope.contains('*') {
        return Err(bad());
    }
    let (domain, repository) = scope.split_once('/').ok_or_else(bad)?;
    let (host, port) = match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.split('.').all(label_ok)
        || port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad());
    }
    for component in repository.split('/') {
        if !valid_path_component(component) {
            return Err(bad());
        }
    }
    Ok(())
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = c.as_bytes();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// The statement that applies to `repository`: the one naming it, else the wildcard one.
pub(super) fn applicable<'s>(
    statements: &'s [Statement],
    repository: &str,
) -> Option<&'s Statement> {
    statements
        .iter()
        .find(|s| s.scopes.iter().any(|x| x == repository))
        .or_else(|| {
            statements
                .iter()
                .find(|s| s.scopes.iter().any(|x| x == "*"))
        })
}

/// An RFC 4514 distinguished name as notation reads trusted identities: single-valued
/// RDNs, unique attribute types, `S` read as `ST`, and C, ST and O required.
pub(super) fn parse_dn(s: &str) -> Result<Vec<(String, String)>, String> {
    if s.contains("=#") {
        return Err("DNs with hex-encoded (=#) values are not supported".into());
    }
    let mut out: Vec<(String, String)> = Vec::new();
    let mut rdns: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                current.push('\\');
                current.push(chars.next().ok_or("DN ends with a lone backslash")?);
            }
            '"' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            ',' | ';' if !in_quotes => rdns.push(std::mem::take(&mut current)),
            '+' if !in_quotes => {
                return Err("multi-valued RDNs (+) are not supported".into());
            }
            _ => current.push(c),
        }
    }
    if in_quotes {
        return Err("DN has an unterminated quote".into());
    }
    rdns.push(current);
    for rdn in rdns {
        let (key, value) = rdn
            .split_once('=')
            .ok_or_else(|| format!("RDN {:?} has no '='", rdn.trim()))?;
        let key = match key.trim() {
            "S" => "ST".to_string(),
            "" => return Err("RDN with an empty attribute type".into()),
            k => k.to_string(),
        };
        let value = unescape(value.trim())?;
        if out.iter().any(|(k, _)| *k == key) {
            return Err(format!("DN has attribute {key} twice"));
        }
        out.push((key, value));
    }
    for field in ["C", "ST", "O"] {
        if !out.iter().any(|(k, v)| k == field && !v.is_empty()) {
            return Err(format!(
                "DN lacks {field} (notation needs C, ST and O at least)"
            ));
        }
    }
    Ok(out)
}

fn unescape(v: &str) -> Result<String, String> {
    let v = match v.strip_prefix('"').and_then(|x| x.strip_suffix('"')) {
        Some(inner) => inner,
        None => v,
    };
    let mut bytes = Vec::new();
    let mut it = v.bytes().peekable();
    while let Some(b) = it.next() {
        if b != b'\\' {
            bytes.push(b);
            continue;
        }
        let first = it.next().ok_or("DN value ends with a lone backslash")?;
        if first.is_ascii_hexdigit() && it.peek().is_some_and(|n| n.is_ascii_hexdigit()) {
            let second = it.next().unwrap_or(b'0');
            let hex = [first, second];
            let s = std::str::from_utf8(&hex).map_err(|_| "bad hex escape in DN")?;
            bytes.push(u8::from_str_radix(s, 16).map_err(|_| "bad hex escape in DN")?);
        } else {
            bytes.push(first);
        }
    }
    String::from_utf8(bytes).map_err(|_| "DN value is not UTF-8 after unescaping".into())
}

/// Every attribute of `a` is in `b` with the same value.
pub(super) fn is_subset(a: &[(String, String)], b: &[(String, String)]) -> bool {
    a.iter()
        .all(|(k, v)| b.iter().any(|(bk, bv)| bk == k && bv == v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(statements: &str) -> Vec<u8> {
        format!(r#"{{"version":"1.0","trustPolicies":[{statements}]}}"#).into_bytes()
    }

    const STRICT: &str = r#"{"name":"a","registryScopes":["localhost:5000/app"],"signatureVerification":{"level":"strict"},"trustStores":["ca:leda"],"trustedIdentities":["*"]}"#;
    const WILD: &str =
        r#"{"name":"w","registryScopes":["*"],"signatureVerification":{"level":"skip"}}"#;

    #[test]
    fn validation_table() {
        let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
            (doc(STRICT), None),
            (doc(&format!("{STRICT},{WILD}")), None),
            (b"{}".to_vec(), Some("no version")),
            (
                br#"{"version":"2.0","trustPolicies":[]}"#.to_vec(),
                Some("unsupported version"),
            ),
            (doc(""), Some("no trust policy statements")),
            (b"not json".to_vec(), Some("malformed")),
            (
                doc(&format!("{STRICT},{STRICT}")),
                Some("names must be unique"),
            ),
            (
                doc(&format!("{WILD},{}", WILD.replace("\"w\"", "\"w2\""))),
                Some("more than one trust policy statement"),
            ),
            (
                doc(&format!("{STRICT},{}", STRICT.replace("\"a\"", "\"b\""))),
                Some("more than one trust policy statement"),
            ),
            (
                doc(
                    r#"{"name":"","registryScopes":["*"],"signatureVerification":{"level":"skip"}}"#,
                ),
                Some("has no name"),
            ),
            (
                doc(r#"{"name":"a","registryScopes":[],"signatureVerification":{"level":"skip"}}"#),
                Some("no registry scopes"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*","x.io/a"],"signatureVerification":{"level":"skip"}}"#,
                ),
                Some("with other scopes"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["x.io/a:tag"],"signatureVerification":{"level":"skip"}}"#,
                ),
                Some("not valid"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["noslash"],"signatureVerification":{"level":"skip"}}"#,
                ),
                Some("not valid"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["x.io/App"],"signatureVerification":{"level":"skip"}}"#,
                ),
                Some("not valid"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["x.io/a*"],"signatureVerification":{"level":"skip"}}"#,
                ),
                Some("not valid"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"skip"},"trustStores":["ca:x"]}"#,
                ),
                Some("takes no trust stores"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"skip","override":{"expiry":"log"}}}"#,
                ),
                Some("cannot be customized"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"loose"},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#,
                ),
                Some("invalid signature verification level"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustedIdentities":["*"]}"#,
                ),
                Some("both trustStores and trustedIdentities"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:x"]}"#,
                ),
                Some("both trustStores and trustedIdentities"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["x"],"trustedIdentities":["*"]}"#,
                ),
                Some("<type>:<name>"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["pki:x"],"trustedIdentities":["*"]}"#,
                ),
                Some("unknown type"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:../x"],"trustedIdentities":["*"]}"#,
                ),
                Some("[a-zA-Z0-9_.-]+"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict","override":{"integrity":"log"}},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#,
                ),
                Some("cannot be overridden"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict","override":{"expiry":"skip"}},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#,
                ),
                Some("cannot be skipped"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict","override":{"revocation":"skip"}},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#,
                ),
                None,
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict","override":{"speed":"log"}},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#,
                ),
                Some("unknown check"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict","override":{"expiry":"maybe"}},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#,
                ),
                Some("not enforce, log or skip"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict","verifyTimestamp":"never"},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#,
                ),
                Some("verifyTimestamp"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:x"],"trustedIdentities":["*","x509.subject: C=US, ST=WA, O=x"]}"#,
                ),
                Some("wildcard trusted identity"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:x"],"trustedIdentities":["x509.subject C=US"]}"#,
                ),
                Some("separator"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:x"],"trustedIdentities":["x509.subject: C=US, O=x"]}"#,
                ),
                Some("lacks ST"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:x"],"trustedIdentities":["x509.subject: C=US, ST=WA, O=x","x509.subject: C=US, ST=WA, O=x, CN=y"]}"#,
                ),
                Some("overlap"),
            ),
            (
                doc(
                    r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"strict"},"trustStores":["ca:x"],"trustedIdentities":["x509.subject: C=US, ST=WA, O=x, CN=a","x509.subject: C=US, ST=WA, O=x, CN=b"]}"#,
                ),
                None,
            ),
        ];
        for (json, want) in cases {
            let got = parse(&json);
            let text = String::from_utf8_lossy(&json);
            match (want, got) {
                (None, Ok(_)) => {}
                (None, Err(e)) => panic!("{text}: unexpected error {e}"),
                (Some(w), Ok(_)) => panic!("{text}: accepted, expected an error with {w:?}"),
                (Some(w), Err(e)) => assert!(e.contains(w), "{text}: error {e:?} lacks {w:?}"),
            }
        }
    }

    #[test]
    fn levels_and_overrides() {
        let s = parse(&doc(r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"permissive","override":{"expiry":"enforce","revocation":"skip"}},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#)).expect("valid");
        let s = s.first().expect("one");
        assert_eq!(s.action(Check::Integrity), Action::Enforce);
        assert_eq!(s.action(Check::Authenticity), Action::Enforce);
        assert_eq!(s.action(Check::AuthenticTimestamp), Action::Log);
        assert_eq!(s.action(Check::Expiry), Action::Enforce);
        assert_eq!(s.action(Check::Revocation), Action::Skip);
        let audit = parse(&doc(r#"{"name":"a","registryScopes":["*"],"signatureVerification":{"level":"audit"},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#)).expect("valid");
        let audit = audit.first().expect("one");
        assert_eq!(audit.action(Check::Integrity), Action::Enforce);
        assert_eq!(audit.action(Check::Authenticity), Action::Log);
    }

    #[test]
    fn scope_selection() {
        let statements = parse(&doc(&format!(
            "{STRICT},{WILD},{}",
            r#"{"name":"b","registryScopes":["docker.io/library/busybox","localhost:5000/other"],"signatureVerification":{"level":"audit"},"trustStores":["ca:x"],"trustedIdentities":["*"]}"#
        )))
        .expect("valid");
        for (repo, want) in [
            ("localhost:5000/app", Some("a")),
            ("localhost:5000/other", Some("b")),
            ("docker.io/library/busybox", Some("b")),
            ("localhost:5000/app/sub", Some("w")),
            ("localhost:5000", Some("w")),
        ] {
            assert_eq!(
                applicable(&statements, repo).map(|s| s.name.as_str()),
                want,
                "{repo}"
            );
        }
        let only = parse(&doc(STRICT)).expect("valid");
        assert!(applicable(&only, "localhost:5000/else").is_none());
    }

    #[test]
    fn distinguished_names() {
        let kv = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        for (dn, want) in [
            (
                "C=US, ST=WA, O=wabbit-networks.io",
                Ok(kv(&[
                    ("C", "US"),
                    ("ST", "WA"),
                    ("O", "wabbit-networks.io"),
                ])),
            ),
            (
                "C=US,S=WA,O=a\\, b,CN=x",
                Ok(kv(&[("C", "US"), ("ST", "WA"), ("O", "a, b"), ("CN", "x")])),
            ),
            (
                "C=US; ST=WA; O=\"q, r\"",
                Ok(kv(&[("C", "US"), ("ST", "WA"), ("O", "q, r")])),
            ),
            (
                "C=US, ST=WA, O=caf\\C3\\A9",
                Ok(kv(&[("C", "US"), ("ST", "WA"), ("O", "café")])),
            ),
            ("C=US, ST=WA", Err("lacks O")),
            ("C=US, ST=WA, O=a+OU=b", Err("multi-valued")),
            ("C=US, C=DE, ST=WA, O=a", Err("twice")),
            ("C=US, ST=WA, O=#0403", Err("=#")),
            ("C=US, ST=WA, O", Err("no '='")),
            ("C=US, ST=WA, O=a\\", Err("lone backslash")),
        ] {
            match (parse_dn(dn), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{dn}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{dn}: {e:?} lacks {w:?}"),
                (got, want) => panic!("{dn}: got {got:?}, want {want:?}"),
            }
        }
        let cert = kv(&[("C", "US"), ("ST", "WA"), ("O", "x"), ("CN", "signer")]);
        assert!(is_subset(
            &kv(&[("C", "US"), ("ST", "WA"), ("O", "x")]),
            &cert
        ));
        assert!(is_subset(&cert, &cert));
        assert!(!is_subset(
            &kv(&[("C", "US"), ("ST", "WA"), ("O", "y")]),
            &cert
        ));
        assert!(!is_subset(
            &kv(&[("C", "US"), ("ST", "WA"), ("O", "x"), ("OU", "z")]),
            &cert
        ));
    }
}
