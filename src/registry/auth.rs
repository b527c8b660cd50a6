//! Registry authentication, the pure half: `WWW-Authenticate` challenges, the token request
//! URL, the token response, and where credentials may be sent.
//!
//! The flow (Docker's token authentication): a request answered 401 carries a challenge.
//! `Basic` is answered with the configured user and password. `Bearer realm,service,scope`
//! sends the client to the token service `realm?service=…&scope=…` (with the credentials,
//! when configured, as basic auth), whose JSON answer holds `token` or `access_token` and
//! `expires_in`; the request is repeated with `Authorization: Bearer <token>`.

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::Url;

use super::protocol::same_origin;

/// Lifetime of a token whose response names none (the distribution spec's default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);

/// A challenge leda-cm can answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// Send user and password with every request.
    Basic,
    /// Get a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// The challenge to answer from a `WWW-Authenticate` header: Bearer when offered, else Basic.
pub fn parse_challenge(header: &str) -> Result<Challenge, String> {
    if header.trim().is_empty() {
        return Err("no WWW-Authenticate challenge".into());
    }
    let challenges = http_auth::parse_challenges(header)
        .map_err(|e| format!("malformed WWW-Authenticate header: {e}"))?;
    let param = |c: &http_auth::ChallengeRef<'_>, name: &str| {
        c.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_unescaped())
    };
    if let Some(c) = challenges
        .iter()
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
    {
        let realm = param(c, "realm")
            .filter(|r| !r.is_empty())
            .ok_or_else(|| "the Bearer challenge has no realm".to_string())?;
        return Ok(Challenge::Bearer {
            realm,
            service: param(c, "service"),
            scope: param(c, "scope"),
        });
    }
    if challenges
        .iter()
        .any(|c| c.scheme.eq_ignore_ascii_case("basic"))
    {
        return Ok(Challenge::Basic);
    }
    let schemes: Vec<&str> = challenges.iter().map(|c| c.scheme).collect();
    Err(format!(
        "no supported authentication scheme offered (only {})",
        schemes.join(", ")
    ))
}

/// The scope that lets leda-cm pull from `repository`.
pub fn pull_scope(repository: &str) -> String {
    format!("repository:{repository}:pull")
}

/// The token request: `realm?service=<service>&scope=<scope>`, the scope being the
/// challenge's or, when it names none, the pull scope of `repository`.
pub fn token_url(
    realm: &str,
    service: Option<&str>,
    scope: Option<&str>,
    repository: &str,
) -> Result<Url, String> {
    let mut url = Url::parse(realm).map_err(|e| format!("invalid token realm {realm}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("invalid token realm {realm}: not http or https"));
    }
    {
        let mut q = url.query_pairs_mut();
        if let Some(service) = service.filter(|s| !s.is_empty()) {
            q.append_pair("service", service);
        }
        match scope.filter(|s| !s.is_empty()) {
            Some(scope) => q.append_pair("scope", scope),
            None => q.append_pair("scope", &pull_scope(repository)),
        };
    }
    Ok(url)
}

/// Whether a registry's credentials may go to `target`: to the registry itself (which is
/// reached over TLS unless configured insecure), or to a token service over TLS.
pub fn may_send_credentials(target: &Url, registry: &Url) -> bool {
    same_origin(target, registry) || target.scheme() == "https"
}

/// A bearer token and when to stop using it. Its `Debug` does not show the token.
#[derive(Clone)]
pub struct BearerToken {
    value: String,
    expires_at: Instant,
}

impl BearerToken {
    /// The token, for the `Authorization` header only.
    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    /// Whether the token may still be used at `now`.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.expires_at
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BearerToken")
            .field("value", &"***")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Reads the token service's answer received at `now`. The token is used until a tenth of
/// its lifetime before it expires. Errors never quote the body (it may hold a token).
pub fn parse_token_response(body: &[u8], now: Instant) -> Result<BearerToken, String> {
    #[derive(serde::Deserialize)]
    struct Response {
        #[serde(default)]
        token: String,
        #[serde(default)]
        access_token: String,
        #[serde(default)]
        expires_in: Option<u64>,
    }
    let r: Response = serde_json::from_slice(body)
        .map_err(|e| format!("the token service's answer is not valid json ({e})"))?;
    let value = if r.token.is_empty() {
        r.access_token
    } else {
        r.token
    };
    if value.is_empty() {
        return Err("the token service's answer holds neither token nor access_token".into());
    }
    let lifetime = r
        .expires_in
        .filter(|s| *s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok(BearerToken {
        value,
        expires_at: now + lifetime - lifetime / 10,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(realm: &str, service: Option<&str>, scope: Option<&str>) -> Challenge {
        Challenge::Bearer {
            realm: realm.into(),
            service: service.map(Into::into),
            scope: scope.map(Into::into),
        }
    }

    #[test]
    fn parses_challenges() {
        let cases: Vec<(&str, Result<Challenge, &str>)> = vec![
            (r#"Basic realm="leda-cm-test""#, Ok(Challenge::Basic)),
            (r#"basic realm=x"#, Ok(Challenge::Basic)),
            (
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
                Ok(bearer(
                    "https://auth.docker.io/token",
                    Some("registry.docker.io"),
                    Some("repository:library/busybox:pull"),
                )),
            ),
            (
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#,
                Ok(bearer(
                    "https://ghcr.io/token",
                    Some("ghcr.io"),
                    Some("repository:a/b:pull"),
                )),
            ),
            (
                r#"BEARER Realm="https://t.example/""#,
                Ok(bearer("https://t.example/", None, None)),
            ),
            // Bearer preferred over Basic, whatever the order
            (
                r#"Basic realm="r", Bearer realm="https://t.example/token",service="s""#,
                Ok(bearer("https://t.example/token", Some("s"), None)),
            ),
            (r#"Bearer realm="a\"b""#, Ok(bearer("a\"b", None, None))),
            (
                r#"Bearer service="s""#,
                Err("the Bearer challenge has no realm"),
            ),
            (
                r#"Digest realm="r", nonce="n""#,
                Err("no supported authentication scheme offered (only Digest)"),
            ),
            ("", Err("no WWW-Authenticate challenge")),
            (" ", Err("no WWW-Authenticate challenge")),
            (
                r#"Bearer realm="unterminated"#,
                Err("malformed WWW-Authenticate header"),
            ),
        ];
        for (header, want) in cases {
            match (parse_challenge(header), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{header}"),
                (Err(got), Err(want)) => assert!(got.starts_with(want), "{header}: {got}"),
                (got, want) => panic!("{header}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn token_urls() {
        let cases = [
            ("https://auth.docker.io/token", Some("registry.docker.io"), Some("repository:library/busybox:pull"),
                "library/busybox",
                "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fbusybox%3Apull"),
            ("https://r.io/token?account=x", None, None, "a/b",
                "https://r.io/token?account=x&scope=repository%3Aa%2Fb%3Apull"),
            ("http://127.0.0.1:5001/auth", Some(""), Some(""), "leda/busybox",
                "http://127.0.0.1:5001/auth?scope=repository%3Aleda%2Fbusybox%3Apull"),
        ];
        for (realm, service, scope, repo, want) in cases {
            assert_eq!(
                token_url(realm, service, scope, repo).unwrap().as_str(),
                want,
                "{realm}"
            );
        }
        for realm in ["not a url", "ftp://r.io/token", "/token"] {
            assert!(token_url(realm, None, None, "a").is_err(), "{realm}");
        }
    }

    #[test]
    fn credentials_go_only_to_the_registry_or_a_tls_token_service() {
        let u = |s: &str| Url::parse(s).unwrap();
        let cases = [
            (
                "http://127.0.0.1:5000/v2/a/manifests/1",
                "http://127.0.0.1:5000/",
                true,
            ),
            ("https://r.io/v2/a/blobs/sha256:00", "https://r.io/", true),
            (
                "https://auth.docker.io/token",
                "https://registry-1.docker.io/",
                true,
            ),
            ("http://auth.example/token", "https://r.io/", false),
            (
                "http://evil.example:5000/token",
                "http://127.0.0.1:5000/",
                false,
            ),
            (
                "http://127.0.0.1:5001/token",
                "http://127.0.0.1:5000/",
                false,
            ),
        ];
        for (target, registry, ok) in cases {
            assert_eq!(
                may_send_credentials(&u(target), &u(registry)),
                ok,
                "{target}"
            );
        }
    }

    #[test]
    fn token_responses() {
        let now = Instant::now();
        // body, Ok((token, seconds it stays fresh)) or Err(message start)
        type Case<'a> = (&'a str, Result<(&'a str, u64), &'a str>);
        let cases: Vec<Case> = vec![
            (r#"{"token":"t1","expires_in":300}"#, Ok(("t1", 270))),
            (r#"{"access_token":"t2","expires_in":100}"#, Ok(("t2", 90))),
            (r#"{"token":"t3","access_token":"other"}"#, Ok(("t3", 54))),
            (r#"{"token":"t4","expires_in":0}"#, Ok(("t4", 54))),
            (
                r#"{"token":""}"#,
                Err("the token service's answer holds neither"),
            ),
            (r#"{}"#, Err("the token service's answer holds neither")),
            (
                "secret-looking garbage",
                Err("the token service's answer is not valid json"),
            ),
        ];
        for (body, want) in cases {
            match (parse_token_response(body.as_bytes(), now), want) {
                (Ok(t), Ok((value, fresh_secs))) => {
                    assert_eq!(t.value(), value);
                    assert!(
                        t.is_fresh(now + Duration::from_secs(fresh_secs - 1)),
                        "{body}"
                    );
                    assert!(!t.is_fresh(now + Duration::from_secs(fresh_secs)), "{body}");
                    assert!(!format!("{t:?}").contains(value), "{body}");
                }
                (Err(e), Err(want)) => {
                    assert!(e.starts_with(want), "{body}: {e}");
                    assert!(!e.contains("garbage"), "{e}");
                }
                (got, want) => panic!("{body}: got {got:?}, want {want:?}"),
            }
        }
    }
}
