//! Bridge networking (pure part): the bridge's subnet from the configuration and the host's
//! routes, the CNI network configuration for the `bridge` + `host-local` + `portmap` chain,
//! port mappings as `portmap` entries, the plugins' results, and `extra_hosts` resolved to
//! addresses. No I/O here: `cni.rs` runs the plugins, `host.rs` reads the routes.

pub mod cni;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::BridgeConfig;
// The attachment a record keeps is the model's: the model depends on nothing here.
use crate::model::PortMapping;
pub use crate::model::{Attachment, PortEntry};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    #[error("invalid network.default_bridge.{key} {value:?}: {reason}")]
    InvalidConfig {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("bridge subnet {subnet} overlaps the route {route} of interface {iface}")]
    Overlap {
        subnet: String,
        route: String,
        iface: String,
    },
    #[error(
        "no free private subnet for bridge {bridge}: 172.17.0.0/16 to 172.31.0.0/16 are all routed"
    )]
    NoFreeSubnet { bridge: String },
    #[error("bridge networking is disabled (network.default_bridge.disable)")]
    Disabled,
    #[error("CNI plugin {plugin} not found in {dirs}")]
    PluginMissing { plugin: String, dirs: String },
    #[error("CNI plugin {plugin} failed on {command} of container {id}: {message}")]
    Plugin {
        plugin: String,
        command: &'static str,
        id: String,
        message: String,
    },
    #[error("CNI plugin {plugin} returned a result without an IPv4 address for container {id}")]
    NoAddress { plugin: String, id: String },
    #[error(
        "host port {port}/{proto}{} is already in use",
        host_ip_suffix(host_ip)
    )]
    PortInUse {
        port: u16,
        proto: String,
        host_ip: String,
    },
    #[error("no free host port in {start}-{end}/{proto}")]
    NoFreePort { start: u16, end: u16, proto: String },
    #[error("network namespace of container {id}: {message}")]
    Namespace { id: String, message: String },
    #[error("network state {path}: {message}")]
    State { path: String, message: String },
}

fn host_ip_suffix(host_ip: &str) -> String {
    if host_ip.is_empty() {
        String::new()
    } else {
        format!(" on {host_ip}")
    }
}

/// An IPv4 network: address (with host bits cleared) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Ipv4Net {
        let mask = mask(prefix);
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The n-th address of the network (0 is the network address).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr).wrapping_add(n))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}

impl std::fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = String;
    fn try_from(s: String) -> Result<Ipv4Net, String> {
        parse_cidr(&s).map(|(ip, prefix)| Ipv4Net::new(ip, prefix))
    }
}

/// `a.b.c.d/p` → the address as written and the prefix length.
pub fn parse_cidr(text: &str) -> Result<(Ipv4Addr, u8), String> {
    let (ip, prefix) = text.split_once('/').ok_or_else(|| {
        "expected an IPv4 address with a prefix length, like 172.17.0.1/16".to_string()
    })?;
    let ip: Ipv4Addr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| (1..=30).contains(p))
        .ok_or_else(|| format!("prefix length {prefix:?} is not between 1 and 30"))?;
    Ok((ip, prefix))
}

/// A route of the host (`/proc/net/route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub iface: String,
    pub dest: Ipv4Net,
}

/// The bridge as leda-cm runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bridge {
    pub name: String,
    pub subnet: Ipv4Net,
    /// The bridge's own address, the containers' default gateway and `host_ip`.
    pub gateway: Ipv4Addr,
    /// The addresses handed out (`fcidr4`), when narrower than the subnet.
    pub range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub mtu: u32,
    pub ip_masq: bool,
    /// iptables rules (masquerade, port mappings) at all.
    pub ip_tables: bool,
    /// Containers may talk to each other over the bridge.
    pub icc: bool,
}

fn invalid(key: &'static str, value: &str, reason: impl Into<String>) -> NetworkError {
    NetworkError::InvalidConfig {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The bridge from the configuration (`ip4` = the bridge's address with the subnet's
/// prefix, `fcidr4` = the range handed out, `gwip4` = the gateway), else the subnet kept from
/// an earlier start, else the first of 172.17.0.0/16 … 172.31.0.0/16 that no route of another
/// interface covers. A configured subnet that overlaps another interface's route is an error.
pub fn resolve_bridge(
    cfg: &BridgeConfig,
    routes: &[Route],
    kept: Option<Ipv4Net>,
) -> Result<Bridge, NetworkError> {
    if cfg.disable {
        return Err(NetworkError::Disabled);
    }
    if cfg.name.is_empty() || cfg.name.len() > 15 || cfg.name.contains(['/', ' ', ':']) {
        return Err(invalid(
            "name",
            &cfg.name,
            "an interface name has 1 to 15 characters, without '/', ':' or spaces",
        ));
    }
    let others: Vec<&Route> = routes
        .iter()
        .filter(|r| r.iface != cfg.name && r.dest.prefix > 0)
        .collect();
    let overlap = |subnet: &Ipv4Net| {
        others
            .iter()
            .find(|r| r.dest.overlaps(subnet))
            .map(|r| NetworkError::Overlap {
                subnet: subnet.to_string(),
                route: r.dest.to_string(),
                iface: r.iface.clone(),
            })
    };
    let mut range = None;
    let (subnet, mut gateway, configured) = if !cfg.ip4.is_empty() {
        let (ip, prefix) = parse_cidr(&cfg.ip4).map_err(|e| invalid("ip4", &cfg.ip4, e))?;
        let net = Ipv4Net::new(ip, prefix);
        if ip == net.addr || ip == net.broadcast() {
            return Err(invalid(
                "ip4",
                &cfg.ip4,
                "the bridge address is the network or broadcast address",
            ));
        }
        (net, ip, true)
    } else if !cfg.fcidr4.is_empty() {
        let (ip, prefix) =
            parse_cidr(&cfg.fcidr4).map_err(|e| invalid("fcidr4", &cfg.fcidr4, e))?;
        let net = Ipv4Net::new(ip, prefix);
        (net, net.nth(1), true)
    } else if let Some(net) = kept.filter(|n| overlap(n).is_none()) {
        (net, net.nth(1), false)
    } else {
        let net = (17..=31u8)
            .map(|b| Ipv4Net::new(Ipv4Addr::new(172, b, 0, 0), 16))
            .find(|n| overlap(n).is_none())
            .ok_or_else(|| NetworkError::NoFreeSubnet {
                bridge: cfg.name.clone(),
            })?;
        (net, net.nth(1), false)
    };
    if !cfg.fcidr4.is_empty() {
        let (ip, prefix) =
            parse_cidr(&cfg.fcidr4).map_err(|e| invalid("fcidr4", &cfg.fcidr4, e))?;
        let fixed = Ipv4Net::new(ip, prefix);
        if fixed.prefix < subnet.prefix || !subnet.contains(fixed.addr) {
            return Err(invalid(
                "fcidr4",
                &cfg.fcidr4,
                format!("not inside the bridge subnet {subnet}"),
            ));
        }
        range = Some((fixed.nth(1).max(subnet.nth(1)), {
            let last = Ipv4Addr::from(u32::from(fixed.broadcast()) - 1);
            last.min(Ipv4Addr::from(u32::from(subnet.broadcast()) - 1))
        }));
    }
    if !cfg.gwip4.is_empty() {
        let gw: Ipv4Addr = cfg
            .gwip4
            .parse()
            .map_err(|_| invalid("gwip4", &cfg.gwip4, "not an IPv4 address"))?;
        if !subnet.contains(gw) || gw == subnet.addr || gw == subnet.broadcast() {
            return Err(invalid(
                "gwip4",
                &cfg.gwip4,
                format!("not a host address of the bridge subnet {subnet}"),
            ));
        }
        gateway = gw;
    }
    if configured {
        if let Some(e) = overlap(&subnet) {
            return Err(e);
        }
    }
    Ok(Bridge {
        name: cfg.name.clone(),
        subnet,
        gateway,
        range,
        mtu: if cfg.mtu == 0 { 1500 } else { cfg.mtu },
        ip_masq: cfg.ip_masq && cfg.ip_tables,
        ip_tables: cfg.ip_tables,
        icc: cfg.icc,
    })
}

/// Settings of `network.default_bridge` that the CNI plugins cannot honour, as warnings.
pub fn unsupported_settings(cfg: &BridgeConfig) -> Vec<String> {
    let mut out = Vec::new();
    if !cfg.disable && !cfg.ip_forward {
        out.push(
            "network.default_bridge.ip_forward false is not honoured: the bridge plugin turns IPv4 forwarding on for a gateway bridge"
                .to_string(),
        );
    }
    if cfg.enable_ip6 {
        out.push(
            "network.default_bridge.enable_ip6 is not supported: containers get IPv4 only"
                .to_string(),
        );
    }
    if cfg.userland_proxy {
        out.push(
            "network.default_bridge.userland_proxy is not supported: port mappings are iptables rules (portmap)"
                .to_string(),
        );
    }
    out
}

/// `/proc/net/route`: `Iface Destination Gateway Flags … Mask …` in little-endian hex.
pub fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(u32::from_be);
            let dest = Ipv4Addr::from(hex(f[1])?);
            let mask = hex(f[7])?;
            Some(Route {
                iface: f[0].to_string(),
                dest: Ipv4Net::new(dest, mask.count_ones() as u8),
            })
        })
        .collect()
}

/// The plugins of the chain a container with `ports` needs: `portmap` does nothing without
/// port mappings (ADD and DEL alike), so it is not run then.
pub fn chain_for(bridge: &Bridge, ipam_dir: &str, ports: &[PortEntry]) -> Vec<Value> {
    plugins(bridge, ipam_dir)
        .into_iter()
        .filter(|p| !ports.is_empty() || p["capabilities"]["portMappings"] != json!(true))
        .collect()
}

/// The CNI plugins of the chain, in ADD order.
pub fn plugins(bridge: &Bridge, ipam_dir: &str) -> Vec<Value> {
    let mut range = json!({
        "subnet": bridge.subnet.to_string(),
        "gateway": bridge.gateway.to_string(),
    });
    if let Some((start, end)) = bridge.range {
        range["rangeStart"] = json!(start.to_string());
        range["rangeEnd"] = json!(end.to_string());
    }
    let mut list = vec![json!({
        "type": "bridge",
        "bridge": bridge.name,
        "isGateway": true,
        "ipMasq": bridge.ip_masq,
        "hairpinMode": true,
        "mtu": bridge.mtu,
        "ipam": {
            "type": "host-local",
            "dataDir": ipam_dir,
            "ranges": [[range]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    })];
    if bridge.ip_tables {
        list.push(json!({
            "type": "portmap",
            "capabilities": {"portMappings": true},
            "snat": true,
        }));
    }
    list
}

pub const CNI_VERSION: &str = "1.0.0";

/// The seam between the manager and bridge networking (`cni::Cni` on a device; the
/// manager's unit tests run without one). Blocking calls: the manager runs them on the
/// blocking pool.
pub trait Network: Send + Sync + 'static {
    fn bridge(&self) -> &Bridge;
    /// The host port of each request (the first free one of a range), none of them on the
    /// host already nor clashing with `taken` (what other containers publish).
    fn choose_ports(
        &self,
        requests: &[PortRequest],
        taken: &[PortEntry],
    ) -> Result<Vec<PortEntry>, NetworkError>;
    /// Puts the created task `pid` of container `id` on the bridge, asking for `wanted_ip`.
    fn attach(
        &self,
        id: &str,
        pid: u32,
        wanted_ip: Option<Ipv4Addr>,
        ports: &[PortEntry],
    ) -> Result<Attachment, NetworkError>;
    /// Keeps the namespace of an adopted attached task open.
    fn hold(&self, id: &str, pid: u32);
    /// Takes the container off the bridge (idempotent).
    fn detach(&self, id: &str, att: &Attachment) -> Result<(), NetworkError>;
    /// Address allocations on the bridge: (address, container ID).
    fn allocations(&self) -> Vec<(String, String)>;
    /// The IPv4 address of a host interface (`host_ip_<iface>`).
    fn iface_addr(&self, name: &str) -> Option<Ipv4Addr>;
}

/// What one plugin reads on stdin: its configuration, the network's name and version, the
/// previous result (ADD after the first plugin, and DEL) and the runtime configuration for
/// the capabilities it declares.
pub fn plugin_input(
    network: &str,
    plugin: &Value,
    prev_result: Option<&Value>,
    ports: &[PortEntry],
) -> Value {
    let mut v = plugin.clone();
    v["cniVersion"] = json!(CNI_VERSION);
    v["name"] = json!(network);
    if let Some(prev) = prev_result {
        v["prevResult"] = prev.clone();
    }
    if plugin["capabilities"]["portMappings"] == json!(true) {
        v["runtimeConfig"] = json!({ "portMappings": ports });
        if let Some(caps) = v.as_object_mut() {
            caps.remove("capabilities");
        }
    }
    v
}

/// A port mapping before a host port of its range is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRequest {
    pub host_ip: String,
    pub host_ports: (u16, u16),
    pub container_port: u16,
    pub protocol: String,
}

impl PortRequest {
    /// Whether `entry`, a binding another container holds, is one this request could be
    /// given (a port of its range, the protocol, the address or a wildcard).
    pub fn takes(&self, entry: &PortEntry) -> bool {
        (self.host_ports.0..=self.host_ports.1).contains(&entry.host_port)
            && ports_clash(
                &self.host_ip,
                &self.protocol,
                entry.host_port,
                &entry.host_ip,
                &entry.protocol,
                entry.host_port,
            )
    }

    /// Whether this request and `other` could be given the same binding (host port 0 asks
    /// for none): overlapping ranges, the protocol, the address or a wildcard.
    pub fn overlaps(&self, other: &PortRequest) -> bool {
        let ((a_lo, a_hi), (b_lo, b_hi)) = (self.host_ports, other.host_ports);
        a_lo != 0
            && b_lo != 0
            && a_lo <= b_hi
            && b_lo <= a_hi
            && ports_clash(
                &self.host_ip,
                &self.protocol,
                0,
                &other.host_ip,
                &other.protocol,
                0,
            )
    }
}

/// The container's `port_mappings` as requests: protocol lower case (default tcp), host IP
/// `localhost` as 127.0.0.1, a range `host_port-host_port_end` meaning one free port of it
/// (as Kanto's libnetwork does).
pub fn port_requests(mappings: &[PortMapping]) -> Vec<PortRequest> {
    mappings
        .iter()
        .map(|m| {
            let protocol = if m.proto.is_empty() {
                "tcp".to_string()
            } else {
                m.proto.to_ascii_lowercase()
            };
            let host_ip = match m.host_ip.as_str() {
                "localhost" => "127.0.0.1".to_string(),
                "0.0.0.0" => String::new(),
                other => other.to_string(),
            };
            PortRequest {
                host_ip,
                host_ports: (m.host_port, m.host_port_end.max(m.host_port)),
                container_port: m.container_port,
                protocol,
            }
        })
        .collect()
}

/// Two host bindings clash when protocol and port are equal and one of the addresses is
/// the wildcard or both are the same.
pub fn ports_clash(
    a_ip: &str,
    a_proto: &str,
    a_port: u16,
    b_ip: &str,
    b_proto: &str,
    b_port: u16,
) -> bool {
    a_proto == b_proto && a_port == b_port && (a_ip.is_empty() || b_ip.is_empty() || a_ip == b_ip)
}

/// The container's address, gateway and interfaces from a CNI result (spec 1.0.0).
pub fn parse_result(network: &str, result: &Value) -> Option<Attachment> {
    let ifaces = result["interfaces"].as_array().cloned().unwrap_or_default();
    let ip = result["ips"].as_array()?.iter().find_map(|ip| {
        let (addr, prefix) = parse_cidr_any(ip["address"].as_str()?)?;
        Some((
            addr,
            prefix,
            ip["gateway"].as_str().unwrap_or("").to_string(),
            ip["interface"].as_u64(),
        ))
    })?;
    let container_if = ip.3.and_then(|i| ifaces.get(i as usize)).or_else(|| {
        ifaces
            .iter()
            .find(|i| i["sandbox"].as_str().is_some_and(|s| !s.is_empty()))
    });
    // The bridge plugin lists the bridge first, then the host side of the veth pair.
    let host_veth = ifaces
        .iter()
        .skip(1)
        .find(|i| i["sandbox"].as_str().unwrap_or("").is_empty())
        .and_then(|i| i["name"].as_str())
        .unwrap_or("")
        .to_string();
    Some(Attachment {
        network: network.to_string(),
        ip: ip.0.to_string(),
        prefix: ip.1,
        gateway: ip.2,
        mac: container_if
            .and_then(|i| i["mac"].as_str())
            .unwrap_or("")
            .to_string(),
        host_veth,
        ports: Vec::new(),
        result: result.clone(),
    })
}

fn parse_cidr_any(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = text.split_once('/')?;
    Some((ip.parse().ok()?, prefix.parse().ok()?))
}

/// The address host-local would hand out next on `bridge`: the first free one after
/// `last_reserved` (its `last_reserved_ip.0`), wrapping, within the range and never the
/// gateway, as its round-robin allocator does. `None` when every address is taken.
pub fn next_free_address(
    bridge: &Bridge,
    allocated: &[Ipv4Addr],
    last_reserved: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let (first, last) = bridge.range.unwrap_or((
        bridge.subnet.nth(1),
        Ipv4Addr::from(u32::from(bridge.subnet.broadcast()).wrapping_sub(1)),
    ));
    let (first, last) = (u32::from(first), u32::from(last));
    if first > last {
        return None;
    }
    let start = last_reserved
        .map(u32::from)
        .filter(|l| (first..=last).contains(l))
        .map_or(first, |l| if l == last { first } else { l + 1 });
    let n = last - first + 1;
    (0..n)
        .map(|i| first + (start - first + i) % n)
        .map(Ipv4Addr::from)
        .find(|a| *a != bridge.gateway && !allocated.contains(a))
}

/// The chain the bridge plugin makes for a container's masquerade rule: `CNI-` and the
/// SHA-512 of network name and container ID in hex, 28 characters in all (the plugins'
/// `utils.FormatChainName`).
pub fn masquerade_chain(network: &str, id: &str) -> String {
    use sha2::{Digest, Sha512};
    let sum = Sha512::digest(format!("{network}{id}").as_bytes());
    let hex: String = sum.iter().map(|b| format!("{b:02x}")).collect();
    format!("CNI-{}", &hex[..24])
}

/// An extra host left out of `/etc/hosts`: (the entry, why).
pub type Unresolved = (String, String);

/// A container on the bridge, as `container_<host name>` extra hosts see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub host_name: String,
    pub ip: Ipv4Addr,
}

/// Whether `entries` name a peer (`name:container_…`): such a container's `/etc/hosts`
/// follows the peers' addresses.
pub fn names_a_peer(entries: &[String]) -> bool {
    entries.iter().any(|e| {
        e.split_once(':')
            .is_some_and(|(_, v)| v.trim().starts_with("container_"))
    })
}

/// The address of `container_<wanted>`: as Kanto, the one container on the bridge whose
/// host name is `wanted` (Kanto's default host name is `<name>-host`; two of them is an
/// error); else the container named `wanted` (names are unique).
fn peer_address(peers: &[Peer], wanted: &str) -> Result<Ipv4Addr, String> {
    let by_host: Vec<&Peer> = peers.iter().filter(|p| p.host_name == wanted).collect();
    match by_host.as_slice() {
        [one] => return Ok(one.ip),
        [] => {}
        many => {
            let names: Vec<&str> = many.iter().map(|p| p.name.as_str()).collect();
            return Err(format!(
                "more than one container has host name {wanted} ({})",
                names.join(", ")
            ));
        }
    }
    peers
        .iter()
        .find(|p| p.name == wanted)
        .map(|p| p.ip)
        .ok_or_else(|| format!("no container on the bridge has host name or name {wanted}"))
}

/// `extra_hosts` entries `name:value` with the symbolic values resolved: `host_ip` → the
/// bridge's gateway, `host_ip_<iface>` → that interface's IPv4 address, `container_<host
/// name>` → that container's bridge address (see `peer_address`). Returns the entries and
/// the ones that could not be resolved, each with why (for a warning).
pub fn resolve_extra_hosts(
    entries: &[String],
    gateway: Option<Ipv4Addr>,
    iface_addr: &dyn Fn(&str) -> Option<Ipv4Addr>,
    peers: &[Peer],
) -> (Vec<(String, std::net::IpAddr)>, Vec<Unresolved>) {
    let mut out = Vec::new();
    let mut unresolved = Vec::new();
    for e in entries {
        let Some((name, value)) = e.trim().split_once(':') else {
            unresolved.push((e.clone(), "not name:value".to_string()));
            continue;
        };
        let ip: Result<std::net::IpAddr, String> = if let Ok(ip) = value.parse::<std::net::IpAddr>()
        {
            Ok(ip)
        } else if value == "host_ip" {
            gateway
                .map(Into::into)
                .ok_or_else(|| "no bridge gateway".to_string())
        } else if let Some(iface) = value.strip_prefix("host_ip_") {
            iface_addr(iface)
                .map(Into::into)
                .ok_or_else(|| format!("interface {iface} has no IPv4 address"))
        } else if let Some(other) = value.strip_prefix("container_") {
            peer_address(peers, other).map(Into::into)
        } else {
            Err(
                "neither an address nor host_ip, host_ip_<interface>, container_<host name>"
                    .to_string(),
            )
        };
        match ip {
            Ok(ip) => out.push((name.to_string(), ip)),
            Err(why) => unresolved.push((e.clone(), why)),
        }
    }
    (out, unresolved)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_next_free_address_is_host_locals_round_robin_pick() {
        let cfg = crate::config::BridgeConfig {
            ip4: "10.5.0.1/29".into(),
            ..Default::default()
        };
        let b = resolve_bridge(&cfg, &[], None).unwrap();
        let ip = |d: u8| Ipv4Addr::new(10, 5, 0, d);
        // .1 is the gateway; .2 to .6 are handed out; .7 is the broadcast address.
        assert_eq!(next_free_address(&b, &[], None), Some(ip(2)));
        assert_eq!(next_free_address(&b, &[ip(2)], Some(ip(2))), Some(ip(3)));
        // After the last reserved one, even when lower ones are free again.
        assert_eq!(next_free_address(&b, &[ip(4)], Some(ip(4))), Some(ip(5)));
        // Wrapping, past taken ones and the gateway.
        assert_eq!(
            next_free_address(&b, &[ip(2), ip(6)], Some(ip(6))),
            Some(ip(3))
        );
        assert_eq!(
            next_free_address(&b, &[ip(2), ip(3), ip(4), ip(5), ip(6)], Some(ip(3))),
            None
        );
        // A last reservation outside the range (another subnet before): from the start.
        assert_eq!(
            next_free_address(&b, &[], Some(Ipv4Addr::new(10, 9, 0, 9))),
            Some(ip(2))
        );
        let cfg = crate::config::BridgeConfig {
            ip4: "10.5.0.1/24".into(),
            fcidr4: "10.5.0.128/30".into(),
            ..Default::default()
        };
        let b = resolve_bridge(&cfg, &[], None).unwrap();
        assert_eq!(next_free_address(&b, &[], None), Some(ip(129)));
        assert_eq!(
            next_free_address(&b, &[ip(129)], Some(ip(129))),
            Some(ip(130))
        );
        assert_eq!(
            next_free_address(&b, &[ip(129), ip(130)], Some(ip(130))),
            None
        );
    }

    use super::*;

    fn cfg(v: Value) -> BridgeConfig {
        serde_json::from_value(v).unwrap()
    }

    fn route(iface: &str, cidr: &str) -> Route {
        let (ip, p) = parse_cidr_any(cidr).unwrap();
        Route {
            iface: iface.into(),
            dest: Ipv4Net::new(ip, p),
        }
    }

    #[test]
    fn bridge_from_config_table() {
        let routes = vec![
            route("eth0", "0.0.0.0/0"),
            route("eth0", "172.17.0.0/16"),
            route("docker0", "172.18.0.0/16"),
            route("kanto-cm0", "172.30.0.0/16"),
        ];
        // (config, kept, subnet, gateway, range) or the error's text.
        type Want<'a> = Result<(&'a str, &'a str, Option<(&'a str, &'a str)>), &'a str>;
        let cases: Vec<(Value, Option<&str>, Want)> = vec![
            (json!({}), None, Ok(("172.19.0.0/16", "172.19.0.1", None))),
            // The kept subnet wins over the first free one; our own bridge's route is no clash.
            (json!({}), Some("172.30.0.0/16"), Ok(("172.30.0.0/16", "172.30.0.1", None))),
            // A kept subnet that now clashes is given up.
            (json!({}), Some("172.17.0.0/16"), Ok(("172.19.0.0/16", "172.19.0.1", None))),
            (json!({"ip4": "10.5.0.1/24"}), None, Ok(("10.5.0.0/24", "10.5.0.1", None))),
            (
                json!({"ip4": "10.5.0.1/16", "fcidr4": "10.5.8.0/24", "gwip4": "10.5.0.254"}),
                None,
                Ok(("10.5.0.0/16", "10.5.0.254", Some(("10.5.8.1", "10.5.8.254")))),
            ),
            (json!({"fcidr4": "10.6.0.0/24"}), None, Ok(("10.6.0.0/24", "10.6.0.1", Some(("10.6.0.1", "10.6.0.254"))))),
            (json!({"ip4": "172.17.5.1/24"}), None, Err("bridge subnet 172.17.5.0/24 overlaps the route 172.17.0.0/16 of interface eth0")),
            (json!({"ip4": "10.5.0.1"}), None, Err("invalid network.default_bridge.ip4 \"10.5.0.1\": expected an IPv4 address with a prefix length, like 172.17.0.1/16")),
            (json!({"ip4": "10.5.0.300/24"}), None, Err("invalid network.default_bridge.ip4 \"10.5.0.300/24\": \"10.5.0.300\" is not an IPv4 address")),
            (json!({"ip4": "10.5.0.0/24"}), None, Err("invalid network.default_bridge.ip4 \"10.5.0.0/24\": the bridge address is the network or broadcast address")),
            (json!({"ip4": "10.5.0.1/33"}), None, Err("invalid network.default_bridge.ip4 \"10.5.0.1/33\": prefix length \"33\" is not between 1 and 30")),
            (json!({"ip4": "10.5.0.1/24", "fcidr4": "10.6.0.0/24"}), None, Err("invalid network.default_bridge.fcidr4 \"10.6.0.0/24\": not inside the bridge subnet 10.5.0.0/24")),
            (json!({"ip4": "10.5.0.1/24", "gwip4": "10.7.0.1"}), None, Err("invalid network.default_bridge.gwip4 \"10.7.0.1\": not a host address of the bridge subnet 10.5.0.0/24")),
            (json!({"name": "a-very-long-bridge-name"}), None, Err("invalid network.default_bridge.name \"a-very-long-bridge-name\": an interface name has 1 to 15 characters, without '/', ':' or spaces")),
            (json!({"disable": true}), None, Err("bridge networking is disabled (network.default_bridge.disable)")),
        ];
        for (c, kept, want) in cases {
            let kept = kept.map(|k| Ipv4Net::try_from(k.to_string()).unwrap());
            let got = resolve_bridge(&cfg(c.clone()), &routes, kept);
            match (want, got) {
                (Ok((subnet, gw, range)), Ok(b)) => {
                    assert_eq!(b.subnet.to_string(), subnet, "{c}");
                    assert_eq!(b.gateway.to_string(), gw, "{c}");
                    assert_eq!(
                        b.range.map(|(a, z)| (a.to_string(), z.to_string())),
                        range.map(|(a, z)| (a.to_string(), z.to_string())),
                        "{c}"
                    );
                }
                (Err(text), Err(e)) => assert_eq!(e.to_string(), text, "{c}"),
                (want, got) => panic!("{c}: wanted {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn settings_the_plugins_cannot_honour_are_named() {
        assert!(unsupported_settings(&cfg(json!({}))).is_empty());
        let w = unsupported_settings(&cfg(
            json!({"ip_forward": false, "enable_ip6": true, "userland_proxy": true}),
        ));
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w[0].starts_with("network.default_bridge.ip_forward false is not honoured"));
        assert!(
            unsupported_settings(&cfg(json!({"disable": true, "ip_forward": false}))).is_empty()
        );
    }

    #[test]
    fn every_default_subnet_routed() {
        let routes: Vec<Route> = (17..=31)
            .map(|b| route("x", &format!("172.{b}.0.0/16")))
            .collect();
        assert_eq!(
            resolve_bridge(&cfg(json!({})), &routes, None).unwrap_err().to_string(),
            "no free private subnet for bridge kanto-cm0: 172.17.0.0/16 to 172.31.0.0/16 are all routed"
        );
        // A wide route covers them all too.
        let wide = [route("vpn0", "172.16.0.0/12")];
        assert!(resolve_bridge(&cfg(json!({})), &wide, None).is_err());
    }

    #[test]
    fn routes_from_proc() {
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    kanto-cm0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        let r = parse_routes(text);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].dest.to_string(), "0.0.0.0/0");
        assert_eq!(r[1].dest.to_string(), "192.168.2.0/24");
        assert_eq!(
            (r[2].iface.as_str(), r[2].dest.to_string().as_str()),
            ("kanto-cm0", "172.17.0.0/16")
        );
    }

    #[test]
    fn chain_configuration() {
        let b = resolve_bridge(
            &cfg(json!({"ip4": "10.9.0.1/24", "fcidr4": "10.9.0.128/25", "mtu": 1400})),
            &[],
            None,
        )
        .unwrap();
        let p = plugins(&b, "/state/network/ipam");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0]["type"], "bridge");
        assert_eq!(p[0]["bridge"], "kanto-cm0");
        assert_eq!(p[0]["mtu"], 1400);
        assert_eq!(p[0]["ipMasq"], true);
        assert_eq!(
            p[0]["ipam"]["ranges"][0][0],
            json!({"subnet": "10.9.0.0/24", "gateway": "10.9.0.1", "rangeStart": "10.9.0.129", "rangeEnd": "10.9.0.254"})
        );
        assert_eq!(p[0]["ipam"]["dataDir"], "/state/network/ipam");
        let ports = vec![PortEntry {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: "127.0.0.1".into(),
        }];
        let first = plugin_input("kanto-cm0", &p[0], None, &ports);
        assert_eq!(first["cniVersion"], CNI_VERSION);
        assert_eq!(first["name"], "kanto-cm0");
        assert!(first.get("prevResult").is_none() && first.get("runtimeConfig").is_none());
        let prev = json!({"cniVersion": "1.0.0", "ips": []});
        let second = plugin_input("kanto-cm0", &p[1], Some(&prev), &ports);
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"]["portMappings"],
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}])
        );
        // portmap only runs for a container with port mappings.
        assert_eq!(chain_for(&b, "/d", &[]).len(), 1);
        assert_eq!(chain_for(&b, "/d", &ports).len(), 2);
        // Without iptables: no masquerade and no portmap.
        let b = resolve_bridge(&cfg(json!({"ip_tables": false})), &[], None).unwrap();
        let p = plugins(&b, "/d");
        assert_eq!((p.len(), p[0]["ipMasq"].clone()), (1, json!(false)));
    }

    #[test]
    fn port_requests_table() {
        let m = |proto: &str, ip: &str, hp: u16, end: u16, cp: u16| PortMapping {
            proto: proto.into(),
            container_port: cp,
            host_ip: ip.into(),
            host_port: hp,
            host_port_end: end,
        };
        let got = port_requests(&[
            m("", "", 8080, 0, 80),
            m("UDP", "localhost", 5353, 0, 53),
            m("tcp", "0.0.0.0", 9000, 9010, 90),
            m("tcp", "192.168.1.5", 443, 443, 8443),
        ]);
        let want = [
            ("", (8080, 8080), 80, "tcp"),
            ("127.0.0.1", (5353, 5353), 53, "udp"),
            ("", (9000, 9010), 90, "tcp"),
            ("192.168.1.5", (443, 443), 8443, "tcp"),
        ];
        for (g, w) in got.iter().zip(want) {
            assert_eq!(
                (
                    g.host_ip.as_str(),
                    g.host_ports,
                    g.container_port,
                    g.protocol.as_str()
                ),
                w
            );
        }
        assert!(ports_clash("", "tcp", 80, "127.0.0.1", "tcp", 80));
        assert!(ports_clash("10.0.0.1", "udp", 53, "10.0.0.1", "udp", 53));
        assert!(!ports_clash("10.0.0.1", "tcp", 80, "10.0.0.2", "tcp", 80));
        assert!(!ports_clash("", "tcp", 80, "", "udp", 80));
        assert!(!ports_clash("", "tcp", 80, "", "tcp", 81));

        let req = |ip: &str, lo: u16, hi: u16, proto: &str| PortRequest {
            host_ip: ip.into(),
            host_ports: (lo, hi),
            container_port: 80,
            protocol: proto.into(),
        };
        let held = |ip: &str, port: u16, proto: &str| PortEntry {
            host_port: port,
            container_port: 80,
            protocol: proto.into(),
            host_ip: ip.into(),
        };
        // (request, binding held, taken)
        for (r, e, want) in [
            (req("", 8000, 8010, "tcp"), held("", 8005, "tcp"), true),
            (
                req("", 8000, 8010, "tcp"),
                held("10.0.0.1", 8010, "tcp"),
                true,
            ),
            (req("", 8000, 8010, "tcp"), held("", 8011, "tcp"), false),
            (req("", 8000, 8000, "tcp"), held("", 8000, "udp"), false),
            (
                req("10.0.0.1", 80, 80, "tcp"),
                held("10.0.0.2", 80, "tcp"),
                false,
            ),
        ] {
            assert_eq!(r.takes(&e), want, "{r:?} {e:?}");
        }
        // (a, b, overlap)
        for (a, b, want) in [
            (req("", 8000, 8010, "tcp"), req("", 8010, 8020, "tcp"), true),
            (
                req("", 8000, 8009, "tcp"),
                req("", 8010, 8020, "tcp"),
                false,
            ),
            (req("", 0, 0, "tcp"), req("", 0, 0, "tcp"), false),
            (
                req("127.0.0.1", 53, 53, "udp"),
                req("", 53, 53, "udp"),
                true,
            ),
            (
                req("127.0.0.1", 53, 53, "udp"),
                req("10.0.0.1", 53, 53, "udp"),
                false,
            ),
        ] {
            assert_eq!(a.overlaps(&b), want, "{a:?} {b:?}");
            assert_eq!(b.overlaps(&a), want, "{b:?} {a:?}");
        }
    }

    #[test]
    fn result_of_the_bridge_plugin() {
        let result = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "kanto-cm0", "mac": "aa:aa:aa:aa:aa:aa"},
                {"name": "veth1234", "mac": "bb:bb:bb:bb:bb:bb"},
                {"name": "eth0", "mac": "cc:cc:cc:cc:cc:cc", "sandbox": "/proc/42/ns/net"}
            ],
            "ips": [{"interface": 2, "address": "172.17.0.5/16", "gateway": "172.17.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {}
        });
        let a = parse_result("kanto-cm0", &result).unwrap();
        assert_eq!(
            (
                a.ip.as_str(),
                a.prefix,
                a.gateway.as_str(),
                a.mac.as_str(),
                a.host_veth.as_str()
            ),
            (
                "172.17.0.5",
                16,
                "172.17.0.1",
                "cc:cc:cc:cc:cc:cc",
                "veth1234"
            )
        );
        assert_eq!(a.result, result);
        assert!(parse_result("kanto-cm0", &json!({"interfaces": [], "ips": []})).is_none());
        assert!(parse_result("kanto-cm0", &json!({})).is_none());
    }

    #[test]
    fn extra_hosts_resolved() {
        let ifaces = |name: &str| (name == "eth0").then(|| Ipv4Addr::new(192, 168, 7, 2));
        let peer = |name: &str, host: &str, last: u8| Peer {
            name: name.into(),
            host_name: host.into(),
            ip: Ipv4Addr::new(172, 17, 0, last),
        };
        let peers = [
            // Kanto's default host name, as Leda's desired states name it.
            peer("databroker", "databroker-host", 3),
            // A host name that is another container's name: the host name wins.
            peer("shadow", "feeder", 4),
            peer("feeder", "feeder-host", 5),
            peer("twin-a", "twin", 6),
            peer("twin-b", "twin", 7),
        ];
        let (got, bad) = resolve_extra_hosts(
            &[
                "mosquitto:host_ip".into(),
                "lan:host_ip_eth0".into(),
                "databroker:container_databroker-host".into(),
                "db:container_databroker".into(),
                "f:container_feeder".into(),
                "fh:container_feeder-host".into(),
                "fixed:10.0.0.9".into(),
                "v6:::1".into(),
                "gone:container_nothere".into(),
                "two:container_twin".into(),
                "nowifi:host_ip_wlan0".into(),
                "odd:somewhere".into(),
                "garbage".into(),
            ],
            Some(Ipv4Addr::new(172, 17, 0, 1)),
            &ifaces,
            &peers,
        );
        let got: Vec<String> = got.iter().map(|(n, ip)| format!("{n}={ip}")).collect();
        assert_eq!(
            got,
            [
                "mosquitto=172.17.0.1",
                "lan=192.168.7.2",
                "databroker=172.17.0.3",
                "db=172.17.0.3",
                "f=172.17.0.4",
                "fh=172.17.0.5",
                "fixed=10.0.0.9",
                "v6=::1"
            ]
        );
        let bad: Vec<(&str, &str)> = bad.iter().map(|(e, w)| (e.as_str(), w.as_str())).collect();
        assert_eq!(
            bad,
            [
                (
                    "gone:container_nothere",
                    "no container on the bridge has host name or name nothere"
                ),
                (
                    "two:container_twin",
                    "more than one container has host name twin (twin-a, twin-b)"
                ),
                (
                    "nowifi:host_ip_wlan0",
                    "interface wlan0 has no IPv4 address"
                ),
                (
                    "odd:somewhere",
                    "neither an address nor host_ip, host_ip_<interface>, container_<host name>"
                ),
                ("garbage", "not name:value"),
            ]
        );
        // Without the gateway, host_ip is not resolved.
        let (_, bad) = resolve_extra_hosts(&["m:host_ip".into()], None, &ifaces, &[]);
        assert_eq!(bad[0].1, "no bridge gateway");
    }

    #[test]
    fn entries_that_name_a_peer() {
        let cases: [(&[&str], bool); 5] = [
            (&[], false),
            (&["m:host_ip", "x:10.0.0.1"], false),
            (&["databroker:container_databroker-host"], true),
            (&["m:host_ip", " d:container_d"], true),
            (&["container_x"], false),
        ];
        for (entries, want) in cases {
            let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
            assert_eq!(names_a_peer(&entries), want, "{entries:?}");
        }
    }

    #[test]
    fn nets() {
        let a = Ipv4Net::try_from("10.0.0.7/8".to_string()).unwrap();
        assert_eq!(a.to_string(), "10.0.0.0/8");
        assert!(a.contains(Ipv4Addr::new(10, 200, 1, 1)));
        assert!(!a.contains(Ipv4Addr::new(11, 0, 0, 1)));
        assert_eq!(a.broadcast(), Ipv4Addr::new(10, 255, 255, 255));
        let b = Ipv4Net::try_from("10.1.0.0/16".to_string()).unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        let c = Ipv4Net::try_from("192.168.0.0/16".to_string()).unwrap();
        assert!(!a.overlaps(&c));
        assert_eq!(serde_json::to_string(&b).unwrap(), "\"10.1.0.0/16\"");
    }
}
