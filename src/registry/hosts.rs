//! Per-registry settings from the configuration: `containers.registry_configurations.<host>`
//! (credentials, TLS files) and `containers.insecure_registries` (plain HTTP).
//!
//! Kanto looks both up by the image's first name component, `host[:port]`, exactly. leda-cm
//! does the same and also lets a key without a port match that host on any port (`localhost`,
//! Kanto's default insecure registry, covers `localhost:5000`); an exact `host:port` key wins
//! over a port-less one. Docker Hub answers to `docker.io`, `index.docker.io` and
//! `registry-1.docker.io` alike. Host names compare case-insensitively.

use crate::config::{ContainersConfig, Credentials, TlsConfig};

use super::reference::{DOCKER_HUB, DOCKER_HUB_API};

/// How to reach one registry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSettings {
    /// Plain HTTP (listed in `insecure_registries`); `tls` is then ignored, as in Kanto.
    pub insecure: bool,
    /// User and password for basic auth or the token service.
    pub credentials: Option<Credentials>,
    /// Extra root CA and client certificate.
    pub tls: Option<TlsConfig>,
}

/// The settings for `registry` (as in a reference: `docker.io`, `host:5000`).
pub fn host_settings(config: &ContainersConfig, registry: &str) -> HostSettings {
    let entry = config
        .registry_configurations
        .iter()
        .filter_map(|(key, c)| match_rank(key, registry).map(|r| (r, c)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, c)| c);
    HostSettings {
        insecure: config
            .insecure_registries
            .iter()
            .any(|key| match_rank(key, registry).is_some()),
        credentials: entry.and_then(|c| c.credentials.clone()),
        tls: entry.and_then(|c| c.transport.clone()),
    }
}

/// `Some(0)`: the key names this registry; `Some(1)`: the key is its host without a port.
fn match_rank(key: &str, registry: &str) -> Option<u8> {
    let key = canonical(key);
    let registry = canonical(registry);
    if key == registry {
        return Some(0);
    }
    let (host, port) = split_port(&registry);
    (port.is_some() && split_port(&key).1.is_none() && key == host).then_some(1)
}

fn canonical(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB.to_string(),
        _ => host,
    }
}

/// `host:5000` → (`host`, Some(`5000`)); `[::1]:5000` → (`[::1]`, Some(`5000`)).
fn split_port(host: &str) -> (&str, Option<&str>) {
    let from = match (host.starts_with('['), host.find(']')) {
        (false, _) => 0,
        (true, Some(i)) => i + 1,
        (true, None) => return (host, None),
    };
    match host[from..].rfind(':') {
        Some(i) => (&host[..from + i], Some(&host[from + i + 1..])),
        None => (host, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegistryConfig;

    fn config(keys: &[(&str, &str)], insecure: &[&str]) -> ContainersConfig {
        let mut c = ContainersConfig {
            insecure_registries: insecure.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        for (key, user) in keys {
            c.registry_configurations.insert(
                key.to_string(),
                RegistryConfig {
                    credentials: Some(Credentials {
                        user_id: user.to_string(),
                        ..Default::default()
                    }),
                    transport: None,
                },
            );
        }
        c
    }

    #[test]
    fn matches_hosts_with_or_without_port() {
        let keys = [
            ("r.example", "portless"),
            ("r.example:5000", "exact"),
            ("docker.io", "hub"),
            ("[::1]:5000", "v6"),
        ];
        let insecure = ["localhost", "10.0.0.1:5000"];
        let c = config(&keys, &insecure);
        // registry, user of the matching entry, insecure
        let cases = [
            ("r.example", Some("portless"), false),
            ("r.example:5000", Some("exact"), false),
            ("r.example:6000", Some("portless"), false),
            ("R.Example:5000", Some("exact"), false),
            ("docker.io", Some("hub"), false),
            ("registry-1.docker.io", Some("hub"), false),
            ("other.example", None, false),
            ("example", None, false),
            ("[::1]:5000", Some("v6"), false),
            ("[::1]:6000", None, false),
            ("localhost", None, true),
            ("localhost:5000", None, true),
            ("10.0.0.1:5000", None, true),
            ("10.0.0.1:5001", None, false),
            ("10.0.0.1", None, false),
        ];
        for (registry, user, insecure) in cases {
            let s = host_settings(&c, registry);
            assert_eq!(
                s.credentials.as_ref().map(|c| c.user_id.as_str()),
                user,
                "{registry}"
            );
            assert_eq!(s.insecure, insecure, "{registry}");
        }
    }

    #[test]
    fn docker_hub_aliases_in_keys() {
        for key in ["index.docker.io", "registry-1.docker.io", "Docker.IO"] {
            let c = config(&[(key, "hub")], &[]);
            assert!(
                host_settings(&c, "docker.io").credentials.is_some(),
                "{key}"
            );
        }
    }

    #[test]
    fn ports_are_split_off() {
        let cases = [
            ("h", ("h", None)),
            ("h:1", ("h", Some("1"))),
            ("[::1]", ("[::1]", None)),
            ("[::1]:5000", ("[::1]", Some("5000"))),
        ];
        for (input, want) in cases {
            assert_eq!(split_port(input), want, "{input}");
        }
    }
}
