//! The `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname` a bridged container gets (pure:
//! contents from settings). The files are written into the container's state directory and
//! bind-mounted.

use std::net::IpAddr;

/// `/etc/hostname`.
pub fn hostname(host_name: &str) -> String {
    format!("{host_name}\n")
}

/// `/etc/hosts`: loopback, the container's own names, then `extra_hosts` entries already
/// resolved to addresses (`name` → `ip`).
pub fn hosts(
    host_name: &str,
    domain_name: &str,
    own_ip: Option<IpAddr>,
    extra: &[(String, IpAddr)],
) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n",
    );
    let names = if domain_name.is_empty() {
        host_name.to_string()
    } else {
        format!("{host_name}.{domain_name} {host_name}")
    };
    match own_ip {
        Some(ip) => out.push_str(&format!("{ip}\t{names}\n")),
        None => out.push_str(&format!("127.0.1.1\t{names}\n")),
    }
    for (name, ip) in extra {
        out.push_str(&format!("{ip}\t{name}\n"));
    }
    out
}

/// `/etc/resolv.conf` from the host's: loopback name servers cannot be reached from a
/// bridged container, so they are dropped (Docker does the same); with none left, public
/// resolvers are not invented: the file then has no `nameserver` line.
pub fn resolv_conf(host: &str) -> String {
    let mut out = String::new();
    for line in host.lines() {
        let t = line.trim();
        if let Some(addr) = t.strip_prefix("nameserver") {
            let addr = addr.trim();
            let loopback = addr
                .split('%')
                .next()
                .and_then(|a| a.parse::<IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback());
            if loopback {
                continue;
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The literal-address entries of `extra_hosts` (`name:IP`); the symbolic ones (`host_ip`,
/// `host_ip_<iface>`, `container_<name>`) are resolved by the network module.
pub fn literal_extra_hosts(entries: &[String]) -> Vec<(String, IpAddr)> {
    entries
        .iter()
        .filter_map(|e| {
            let (name, value) = e.split_once(':')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_file() {
        let extra = literal_extra_hosts(&[
            "db:10.0.0.2".into(),
            "mosquitto:host_ip".into(),
            "x:::1".into(),
        ]);
        assert_eq!(extra.len(), 2, "{extra:?}");
        assert_eq!(extra[1], ("x".to_string(), "::1".parse().unwrap()));
        let h = hosts("web-host", "web-domain", None, &extra);
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.contains("127.0.1.1\tweb-host.web-domain web-host\n"));
        assert!(h.ends_with("10.0.0.2\tdb\n::1\tx\n"));
        let h = hosts("a", "", Some("172.17.0.5".parse().unwrap()), &[]);
        assert!(h.contains("172.17.0.5\ta\n"));
        assert_eq!(hostname("a"), "a\n");
    }

    #[test]
    fn resolv_conf_drops_loopback_servers() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nnameserver ::1\nsearch lan\noptions edns0\n";
        assert_eq!(
            resolv_conf(host),
            "# generated\nnameserver 10.1.1.1\nsearch lan\noptions edns0\n"
        );
    }
}
