//! Which old containers a new one must not run beside (pure): the update agent stops the
//! replaced and destroyed containers while it starts the new ones, except where the two
//! would get in each other's way. Then the new one starts only once the old one has
//! stopped.
//!
//! The rules, for an old container (being stopped: replaced or destroyed) and a container
//! to start (created, the successor of a replaced one, or an existing one that is checked
//! or updated and may need starting):
//!
//! | both …                                                        | decision |
//! |---------------------------------------------------------------|----------|
//! | are the same container (ID)                                   | wait |
//! | publish a host port (same protocol, overlapping port ranges, the same address or a wildcard) | wait |
//! | use the host's network (undeclared ports), or one does and the other publishes ports | wait |
//! | map the same host device                                      | wait |
//! | mount the same host path (or one inside the other)            | wait |
//! | have the same name (a replacement)                            | rename: the old one is named `<name>.prev` before it is stopped; no wait |
//! | anything else                                                 | free: the new one starts while the old one stops |

use crate::model::{Container, NetworkMode};
use crate::network::port_requests;

use super::diff::{Kind, Planned};

/// Whether a container may start while an old one is still stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlap {
    /// They may run side by side while the old one stops.
    Free,
    /// The same name: the old one is renamed aside first; they may run side by side.
    Rename,
    /// The new one starts only once the old one has stopped, and why.
    Wait(String),
}

/// The decision for `old` (being stopped) and `new` (to start); a reason to wait wins over
/// a rename.
pub fn overlap(old: &Container, new: &Container) -> Overlap {
    if let Some(why) = clash(old, new) {
        return Overlap::Wait(why);
    }
    if !old.container_name.is_empty() && old.container_name == new.container_name {
        Overlap::Rename
    } else {
        Overlap::Free
    }
}

fn clash(old: &Container, new: &Container) -> Option<String> {
    if !old.container_id.is_empty() && old.container_id == new.container_id {
        return Some("it is the same container".into());
    }
    let host = |c: &Container| c.host_config.network_mode == NetworkMode::Host;
    let publishes = |c: &Container| c.host_config.port_mappings.iter().any(|m| m.host_port != 0);
    if host(old) && host(new) {
        return Some("both use the host's network".into());
    }
    if (host(old) && publishes(new)) || (host(new) && publishes(old)) {
        return Some("one uses the host's network, the other publishes host ports".into());
    }
    for a in port_requests(&old.host_config.port_mappings) {
        for b in port_requests(&new.host_config.port_mappings) {
            if a.overlaps(&b) {
                return Some(format!(
                    "both publish host port {}/{}",
                    b.host_ports.0, b.protocol
                ));
            }
        }
    }
    for a in &old.host_config.devices {
        if new
            .host_config
            .devices
            .iter()
            .any(|b| !a.path_on_host.is_empty() && a.path_on_host == b.path_on_host)
        {
            return Some(format!("both use device {}", a.path_on_host));
        }
    }
    for a in &old.mount_points {
        for b in &new.mount_points {
            if nested(&a.source, &b.source) {
                return Some(format!(
                    "both mount {}",
                    if a.source.len() <= b.source.len() {
                        &a.source
                    } else {
                        &b.source
                    }
                ));
            }
        }
    }
    None
}

/// `a` and `b` are the same path or one is inside the other (by components).
fn nested(a: &str, b: &str) -> bool {
    let parts = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_string)
            .collect()
    };
    let (a, b) = (parts(a), parts(b));
    if a.is_empty() || b.is_empty() {
        // "/" (or nothing) holds everything.
        return true;
    }
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

/// The container step `i` starts (or may start), when it starts one.
fn started(p: &Planned) -> Option<&Container> {
    match p.kind() {
        Kind::Create | Kind::Recreate => p.to_make(),
        Kind::Check | Kind::Update => p.current(),
        Kind::Destroy => None,
    }
}

/// The container step `j` stops, when it stops one.
fn stopped(p: &Planned) -> Option<&Container> {
    match p.kind() {
        Kind::Recreate | Kind::Destroy => p.current(),
        _ => None,
    }
}

/// For every step, the steps whose old container must have stopped before it starts its
/// container (`Overlap::Wait`), with the reason; in the plan's order.
pub fn gates(plan: &[Planned]) -> Vec<Vec<(usize, String)>> {
    plan.iter()
        .map(|p| {
            let Some(new) = started(p) else {
                return Vec::new();
            };
            plan.iter()
                .enumerate()
                .filter_map(|(j, q)| {
                    let old = stopped(q)?;
                    match overlap(old, new) {
                        Overlap::Wait(why) => Some((j, why)),
                        _ => None,
                    }
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::diff::{plan, Change};
    use std::collections::HashSet;

    fn c(name: &str, extra: serde_json::Value) -> Container {
        let mut v = serde_json::json!({
            "container_id": format!("id-{name}"),
            "container_name": name,
            "image": {"name": "app:1"},
        });
        if let (Some(v), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                v.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn ports(p: serde_json::Value) -> serde_json::Value {
        serde_json::json!({"host_config": {"port_mappings": p}})
    }

    fn port(host_ip: &str, host: u16, end: u16, proto: &str) -> serde_json::Value {
        serde_json::json!({"proto": proto, "container_port": 80, "host_ip": host_ip,
                           "host_port": host, "host_port_end": end})
    }

    fn wait(what: &str) -> Overlap {
        Overlap::Wait(what.into())
    }

    #[test]
    fn the_rules() {
        use serde_json::json;
        let none = json!({});
        let host = json!({"host_config": {"network_mode": "host"}});
        let p8080 = ports(json!([port("", 8080, 0, "tcp")]));
        let cases: Vec<(&str, Container, Container, Overlap)> = vec![
            (
                "different names, nothing shared",
                c("a", none.clone()),
                c("b", none.clone()),
                Overlap::Free,
            ),
            (
                "a replacement: same name",
                c("a", none.clone()),
                {
                    let mut n = c("a", none.clone());
                    n.container_id = "id-new".into();
                    n
                },
                Overlap::Rename,
            ),
            (
                "the same container",
                c("a", none.clone()),
                c("a", none.clone()),
                wait("it is the same container"),
            ),
            (
                "same host port",
                c("a", p8080.clone()),
                c("b", p8080.clone()),
                wait("both publish host port 8080/tcp"),
            ),
            (
                "same port, same name: the wait wins",
                c("a", p8080.clone()),
                {
                    let mut n = c("a", p8080.clone());
                    n.container_id = "id-new".into();
                    n
                },
                wait("both publish host port 8080/tcp"),
            ),
            (
                "same port, other protocol",
                c("a", p8080.clone()),
                c("b", ports(json!([port("", 8080, 0, "udp")]))),
                Overlap::Free,
            ),
            (
                "protocol case and default",
                c("a", ports(json!([port("", 53, 0, "")]))),
                c("b", ports(json!([port("", 53, 0, "TCP")]))),
                wait("both publish host port 53/tcp"),
            ),
            (
                "other port",
                c("a", p8080.clone()),
                c("b", ports(json!([port("", 8081, 0, "tcp")]))),
                Overlap::Free,
            ),
            (
                "overlapping ranges",
                c("a", ports(json!([port("", 8000, 8010, "tcp")]))),
                c("b", ports(json!([port("", 8010, 8020, "tcp")]))),
                wait("both publish host port 8010/tcp"),
            ),
            (
                "disjoint ranges",
                c("a", ports(json!([port("", 8000, 8009, "tcp")]))),
                c("b", ports(json!([port("", 8010, 8020, "tcp")]))),
                Overlap::Free,
            ),
            (
                "wildcard address against one",
                c("a", p8080.clone()),
                c("b", ports(json!([port("127.0.0.1", 8080, 0, "tcp")]))),
                wait("both publish host port 8080/tcp"),
            ),
            (
                "0.0.0.0 is the wildcard",
                c("a", ports(json!([port("0.0.0.0", 8080, 0, "tcp")]))),
                c("b", ports(json!([port("10.1.1.1", 8080, 0, "tcp")]))),
                wait("both publish host port 8080/tcp"),
            ),
            (
                "localhost is 127.0.0.1",
                c("a", ports(json!([port("localhost", 8080, 0, "tcp")]))),
                c("b", ports(json!([port("127.0.0.1", 8080, 0, "tcp")]))),
                wait("both publish host port 8080/tcp"),
            ),
            (
                "two addresses",
                c("a", ports(json!([port("127.0.0.1", 8080, 0, "tcp")]))),
                c("b", ports(json!([port("10.1.1.1", 8080, 0, "tcp")]))),
                Overlap::Free,
            ),
            (
                "no host port",
                c("a", ports(json!([port("", 0, 0, "tcp")]))),
                c("b", ports(json!([port("", 0, 0, "tcp")]))),
                Overlap::Free,
            ),
            (
                "both on the host's network",
                c("a", host.clone()),
                c("b", host.clone()),
                wait("both use the host's network"),
            ),
            (
                "host network against published ports",
                c("a", host.clone()),
                c("b", p8080.clone()),
                wait("one uses the host's network, the other publishes host ports"),
            ),
            (
                "published ports against host network",
                c("a", p8080.clone()),
                c("b", host.clone()),
                wait("one uses the host's network, the other publishes host ports"),
            ),
            (
                "host network against a bridged one without ports",
                c("a", host.clone()),
                c("b", none.clone()),
                Overlap::Free,
            ),
            (
                "same device",
                c(
                    "a",
                    json!({"host_config": {"devices": [{"path_on_host": "/dev/ttyUSB0", "path_in_container": "/dev/ttyUSB0"}]}}),
                ),
                c(
                    "b",
                    json!({"host_config": {"devices": [{"path_on_host": "/dev/ttyUSB0", "path_in_container": "/dev/serial"}]}}),
                ),
                wait("both use device /dev/ttyUSB0"),
            ),
            (
                "other devices",
                c(
                    "a",
                    json!({"host_config": {"devices": [{"path_on_host": "/dev/ttyUSB0"}]}}),
                ),
                c(
                    "b",
                    json!({"host_config": {"devices": [{"path_on_host": "/dev/ttyUSB1"}]}}),
                ),
                Overlap::Free,
            ),
            (
                "same mount source",
                c(
                    "a",
                    json!({"mount_points": [{"source": "/data/db", "destination": "/db"}]}),
                ),
                c(
                    "b",
                    json!({"mount_points": [{"source": "/data/db/", "destination": "/var/db"}]}),
                ),
                wait("both mount /data/db"),
            ),
            (
                "a mount inside the other",
                c(
                    "a",
                    json!({"mount_points": [{"source": "/data", "destination": "/d"}]}),
                ),
                c(
                    "b",
                    json!({"mount_points": [{"source": "/data/db", "destination": "/db"}]}),
                ),
                wait("both mount /data"),
            ),
            (
                "sibling mounts",
                c(
                    "a",
                    json!({"mount_points": [{"source": "/data/db", "destination": "/db"}]}),
                ),
                c(
                    "b",
                    json!({"mount_points": [{"source": "/data/dbx", "destination": "/db"}]}),
                ),
                Overlap::Free,
            ),
        ];
        for (what, old, new, want) in cases {
            assert_eq!(overlap(&old, &new), want, "{what}");
        }
    }

    #[test]
    fn nested_paths() {
        for (a, b, want) in [
            ("/a/b", "/a/b", true),
            ("/a", "/a/b/c", true),
            ("/a/b/c", "/a", true),
            ("/a/b", "/a/bc", false),
            ("/", "/x", true),
            ("/a/./b", "/a/b/", true),
            ("/x", "/y", false),
        ] {
            assert_eq!(nested(a, b), want, "{a} {b}");
        }
    }

    #[test]
    fn gates_name_the_stops_each_start_waits_for() {
        use serde_json::json;
        let p8080 = ports(json!([port("", 8080, 0, "tcp")]));
        // Current: slow (replaced, nothing shared), web (replaced, keeps port 8080),
        // gone (destroyed, port 9090), kept (checked, stopped, port 9090).
        let current = vec![
            c("slow", json!({"config": {"env": ["V=1"]}})),
            c("web", {
                let mut v = p8080.clone();
                v["config"] = json!({"env": ["V=1"]});
                v
            }),
            c("gone", ports(json!([port("", 9090, 0, "tcp")]))),
            c("kept", ports(json!([port("", 9090, 0, "tcp")]))),
        ];
        let mut desired = vec![
            c("slow", json!({"config": {"env": ["V=2"]}})),
            c("web", {
                let mut v = p8080.clone();
                v["config"] = json!({"env": ["V=2"]});
                v
            }),
            c("kept", ports(json!([port("", 9090, 0, "tcp")]))),
            c("fresh", json!({})),
        ];
        // The desired ones get their IDs when created.
        for d in &mut desired {
            d.container_id.clear();
        }
        let p = plan(&desired, &current, &[], &HashSet::new());
        let kinds: Vec<_> = p.iter().map(|s| (s.name.as_str(), s.kind())).collect();
        assert_eq!(
            kinds,
            [
                ("slow", Kind::Recreate),
                ("web", Kind::Recreate),
                ("kept", Kind::Check),
                ("fresh", Kind::Create),
                ("gone", Kind::Destroy)
            ]
        );
        assert!(matches!(p[2].change, Change::Check { .. }));
        assert_eq!(
            gates(&p),
            [
                vec![],
                vec![(1, "both publish host port 8080/tcp".to_string())],
                vec![(4, "both publish host port 9090/tcp".to_string())],
                vec![],
                vec![],
            ]
        );
    }
}
