//! The short string forms Kanto's CLI and the update agent's configuration use (pure):
//! `host:container[:rwm]` devices, `source:destination[:propagation]` mounts and
//! `[host_ip:]host_port[-host_port_end]:container_port[/proto]` ports.

use std::net::IpAddr;

use super::{DeviceMapping, MountPoint, PortMapping};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

pub fn device_mapping(text: &str) -> Result<DeviceMapping, ParseError> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    let permissions = match parts.len() {
        2 => "rwm",
        3 => parts[2],
        _ => {
            return Err(ParseError(format!(
                "incorrect configuration value for device mapping {text}, expected host_path:container_path[:rwm]"
            )))
        }
    };
    let valid = !permissions.is_empty()
        && permissions.len() <= 3
        && permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm'));
    if !valid {
        return Err(ParseError(format!(
            "incorrect cgroup permissions format for device mapping {text}"
        )));
    }
    if parts[0].is_empty() || parts[1].is_empty() {
        return Err(ParseError(format!(
            "incorrect configuration value for device mapping {text}, both paths must be set"
        )));
    }
    Ok(DeviceMapping {
        path_on_host: parts[0].into(),
        path_in_container: parts[1].into(),
        cgroup_permissions: permissions.into(),
    })
}

pub fn mount_point(text: &str) -> Result<MountPoint, ParseError> {
    let parts: Vec<&str> = text.trim().split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts[0].is_empty() || parts[1].is_empty() {
        return Err(ParseError(format!(
            "incorrect number of parameters of the mount point {text}, expected source:destination[:propagation_mode]"
        )));
    }
    Ok(MountPoint {
        source: parts[0].into(),
        destination: parts[1].into(),
        propagation_mode: parts.get(2).copied().unwrap_or("rprivate").into(),
    })
}

pub fn port_mapping(text: &str) -> Result<PortMapping, ParseError> {
    let err = |what: &str| {
        ParseError(format!(
            "incorrect {what} port mapping configuration {text}"
        ))
    };
    let (mapping, proto) = match text.trim().split_once('/') {
        Some((m, p)) => (m, p),
        None => (text.trim(), ""),
    };
    let parts: Vec<&str> = mapping.split(':').collect();
    let (host_ip, host, container) = match parts.as_slice() {
        [h, c] => ("", *h, *c),
        [ip, h, c] => {
            if *ip != "localhost" && ip.parse::<IpAddr>().is_err() {
                return Err(err("host ip"));
            }
            (*ip, *h, *c)
        }
        _ => return Err(err("")),
    };
    let number = |s: &str, what: &str| s.trim().parse::<u16>().map_err(|_| err(what));
    // Leda's desired-state documentation writes `host_ip:container_port:host_port-host_port_end`
    // (the range last). Kanto's syntax never has a range on the container side, so that form
    // is unambiguous: read it the way Leda's own manifests map those ports.
    if let (Some((a, b)), false) = (container.split_once('-'), host.contains('-')) {
        if !host_ip.is_empty() && number(host, "container").is_ok() {
            return Ok(PortMapping {
                proto: proto.into(),
                container_port: number(host, "container")?,
                host_ip: host_ip.into(),
                host_port: number(a, "host")?,
                host_port_end: number(b, "host range")?,
            });
        }
    }
    let (host_port, host_port_end) = match host.split_once('-') {
        Some((a, b)) => (number(a, "host")?, number(b, "host range")?),
        None => (number(host, "host")?, 0),
    };
    if !matches!(proto, "" | "tcp" | "udp" | "sctp") {
        return Err(err("protocol"));
    }
    Ok(PortMapping {
        proto: proto.into(),
        container_port: number(container, "container")?,
        host_ip: host_ip.into(),
        host_port,
        host_port_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        type Want<'a> = (&'a str, u16, &'a str, u16, u16);
        let ok: &[(&str, Want)] = &[
            ("80:8080", ("", 8080, "", 80, 0)),
            ("127.0.0.1:80:8080/udp", ("udp", 8080, "127.0.0.1", 80, 0)),
            ("localhost:30555:55555", ("", 55555, "localhost", 30555, 0)),
            ("5000-5010:80/tcp", ("tcp", 80, "", 5000, 5010)),
            // Leda's documented desired-state form: ip:container_port:host_range.
            (
                "localhost:55555:30555-30555/tcp",
                ("tcp", 55555, "localhost", 30555, 30555),
            ),
        ];
        for (text, (proto, cport, ip, hport, hend)) in ok {
            let p = port_mapping(text).unwrap();
            assert_eq!(
                (
                    p.proto.as_str(),
                    p.container_port,
                    p.host_ip.as_str(),
                    p.host_port,
                    p.host_port_end
                ),
                (*proto, *cport, *ip, *hport, *hend),
                "{text}"
            );
        }
        for bad in [
            "abc",
            "80",
            "x:80:90",
            "1:2:3:4",
            "80:99999",
            "80:90/icmp",
            "a-b:80",
            "",
        ] {
            assert!(port_mapping(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn devices_and_mounts() {
        let d = device_mapping("/dev/ttyS0:/dev/ttyS1").unwrap();
        assert_eq!(
            (
                d.path_on_host.as_str(),
                d.path_in_container.as_str(),
                d.cgroup_permissions.as_str()
            ),
            ("/dev/ttyS0", "/dev/ttyS1", "rwm")
        );
        assert_eq!(device_mapping("/a:/b:rw").unwrap().cgroup_permissions, "rw");
        for bad in ["/a", "/a:/b:rwx", "/a:/b:", "/a:/b:rwmr", ":/b"] {
            assert!(device_mapping(bad).is_err(), "{bad}");
        }
        let m = mount_point("/data:/mnt").unwrap();
        assert_eq!(
            (
                m.source.as_str(),
                m.destination.as_str(),
                m.propagation_mode.as_str()
            ),
            ("/data", "/mnt", "rprivate")
        );
        assert_eq!(
            mount_point("/a:/b:rshared").unwrap().propagation_mode,
            "rshared"
        );
        for bad in ["/a", "/a:/b:c:d", ":/b"] {
            assert!(mount_point(bad).is_err(), "{bad}");
        }
    }
}
