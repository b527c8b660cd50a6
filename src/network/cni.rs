//! Adapter: the standard CNI plugins (`bridge`, `host-local`, `portmap`), executed as the CNI
//! specification says (environment + JSON configuration on stdin, result or error on stdout).
//!
//! Why by hand and not through a crate: running a plugin is one process with six variables
//! and a JSON document; the Rust CNI crates are for writing plugins, not for calling them.
//!
//! The network namespace is runc's (made when the task is created); leda-cm adds the
//! container to the bridge before the task starts, through `/proc/<pid>/ns/net`, and **keeps
//! that namespace open while the container is attached**: Debian's bridge plugin (1.1) only
//! removes a container's masquerade rule when it still finds the interface in the
//! namespace, so DEL must run before the namespace is gone.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use serde_json::{json, Value};

use super::{
    chain_for, parse_result, plugin_input, plugins, Attachment, Bridge, NetworkError, PortEntry,
    PortRequest,
};

/// The interface name inside the container.
pub const IFNAME: &str = "eth0";

pub struct Cni {
    bridge: Bridge,
    plugin_dirs: Vec<PathBuf>,
    ipam_dir: PathBuf,
    /// Network namespaces held open, by container ID.
    held: Mutex<HashMap<String, File>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cni {
    /// `plugin_dirs` is searched in order (like `CNI_PATH`); IPAM allocations are kept in
    /// `<state_dir>/network/ipam`.
    pub fn new(bridge: Bridge, plugin_dirs: Vec<PathBuf>, state_dir: &Path) -> Cni {
        Cni {
            bridge,
            plugin_dirs,
            ipam_dir: state_dir.join("network").join("ipam"),
            held: Mutex::new(HashMap::new()),
        }
    }

    fn dirs_text(&self) -> String {
        self.plugin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    }

    fn find_plugin(&self, ty: &str) -> Result<PathBuf, NetworkError> {
        self.plugin_dirs
            .iter()
            .map(|d| d.join(ty))
            .find(|p| p.is_file())
            .ok_or_else(|| NetworkError::PluginMissing {
                plugin: ty.to_string(),
                dirs: self.dirs_text(),
            })
    }

    /// Checks that every plugin of the chain is installed (at start, for a clear message).
    pub fn check_plugins(&self) -> Result<(), NetworkError> {
        self.find_chain(&plugins(&self.bridge, &self.ipam_dir.display().to_string()))
    }

    /// Every plugin of `chain`, and the IPAM plugin the bridge runs, is installed.
    fn find_chain(&self, chain: &[Value]) -> Result<(), NetworkError> {
        for p in chain {
            self.find_plugin(p["type"].as_str().unwrap_or(""))?;
        }
        self.find_plugin("host-local").map(|_| ())
    }

    fn exec(
        &self,
        plugin: &Value,
        command: &'static str,
        id: &str,
        netns: &str,
        args: &str,
        input: &Value,
    ) -> Result<Value, NetworkError> {
        let ty = plugin["type"].as_str().unwrap_or("").to_string();
        let path = self.find_plugin(&ty)?;
        let fail = |message: String| NetworkError::Plugin {
            plugin: ty.clone(),
            command,
            id: id.to_string(),
            message,
        };
        let mut child = Command::new(&path)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_ARGS", args)
            .env("CNI_PATH", self.dirs_text())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run {}: {e}", path.display())))?;
        let body = serde_json::to_vec(input).unwrap_or_default();
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin that exits early closes its stdin; its exit status tells why.
            let _ = stdin.write_all(&body);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("waiting for {}: {e}", path.display())))?;
        let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        if !out.status.success() {
            let mut msg = stdout["msg"].as_str().unwrap_or("").to_string();
            if let Some(d) = stdout["details"].as_str().filter(|d| !d.is_empty()) {
                msg = format!("{msg}: {d}");
            }
            if msg.is_empty() {
                msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            }
            if msg.is_empty() {
                msg = format!("exited with {}", out.status);
            }
            return Err(fail(msg));
        }
        Ok(stdout)
    }

    fn add_chain(
        &self,
        id: &str,
        netns: &str,
        args: &str,
        ports: &[PortEntry],
    ) -> Result<Value, NetworkError> {
        let ipam_dir = self.ipam_dir.display().to_string();
        let chain = chain_for(&self.bridge, &ipam_dir, ports);
        // Every plugin is there before the first one changes anything.
        self.find_chain(&chain)?;
        let mut prev: Option<Value> = None;
        for (i, p) in chain.iter().enumerate() {
            let input = plugin_input(&self.bridge.name, p, prev.as_ref(), ports);
            match self.exec(p, "ADD", id, netns, args, &input) {
                Ok(r) => prev = Some(r),
                Err(e) => {
                    // Undo what the earlier plugins (and this one, partly) did.
                    let last = prev.clone().unwrap_or(Value::Null);
                    for q in chain[..=i].iter().rev() {
                        let input = plugin_input(&self.bridge.name, q, Some(&last), ports);
                        if let Err(e) = self.exec(q, "DEL", id, netns, args, &input) {
                            log::warn!("undoing the network of container {id}: {e}");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// ADD with portmap run beside the bridge plugin instead of after it, when the address
    /// is known beforehand (`ip`, asked of host-local with `IP=`): portmap reads nothing of
    /// its `prevResult` but the container's address, so it gets one holding just that, and
    /// the two plugins' iptables work overlaps (on 2 cores: ~25 % of the ADD). Any failure
    /// (the address taken meanwhile, a plugin error) undoes both; the caller then runs the
    /// chain in order. The result is the bridge plugin's, as portmap passes it on.
    fn add_beside(
        &self,
        id: &str,
        netns: &str,
        ip: Ipv4Addr,
        ports: &[PortEntry],
    ) -> Result<Value, NetworkError> {
        let ipam_dir = self.ipam_dir.display().to_string();
        let chain = chain_for(&self.bridge, &ipam_dir, ports);
        self.find_chain(&chain)?;
        let [bridge, portmap] = &chain[..] else {
            return Err(NetworkError::Namespace {
                id: id.to_string(),
                message: "unexpected CNI chain for concurrent ADD".into(),
            });
        };
        let args = format!("IgnoreUnknown=1;IP={ip}");
        let address = json!({
            "cniVersion": super::CNI_VERSION,
            "ips": [{
                "address": format!("{ip}/{}", self.bridge.subnet.prefix),
                "gateway": self.bridge.gateway.to_string(),
            }],
        });
        let name = &self.bridge.name;
        let bridge_in = plugin_input(name, bridge, None, ports);
        let portmap_in = plugin_input(name, portmap, Some(&address), ports);
        let (b, p) = std::thread::scope(|scope| {
            let p = scope.spawn(|| self.exec(portmap, "ADD", id, netns, &args, &portmap_in));
            let b = self.exec(bridge, "ADD", id, netns, &args, &bridge_in);
            (b, p.join())
        });
        let p = p.unwrap_or_else(|_| {
            Err(NetworkError::Namespace {
                id: id.to_string(),
                message: "the portmap thread failed".into(),
            })
        });
        let got = b
            .as_ref()
            .ok()
            .and_then(|r| parse_result(name, r))
            .map(|a| a.ip);
        match (b, p) {
            (Ok(r), Ok(_)) if got == Some(ip.to_string()) => Ok(r),
            (b, p) => {
                // Both undone, with the bridge plugin's result when it has one.
                let last = b.as_ref().ok().cloned().unwrap_or_else(|| address.clone());
                if let Err(e) = self.del_chain(id, netns, &last, ports) {
                    log::warn!("undoing the network of container {id}: {e}");
                }
                Err(b.err().or(p.err()).unwrap_or(NetworkError::NoAddress {
                    plugin: "bridge".into(),
                    id: id.to_string(),
                }))
            }
        }
    }

    /// Whether `add_beside` may run: port mappings, and the bridge there already with its
    /// address (portmap sets `route_localnet` on the interface that routes to the container;
    /// before the first ADD there is none).
    fn beside_possible(&self, ports: &[PortEntry]) -> bool {
        !ports.is_empty()
            && self.bridge.ip_tables
            && Path::new("/sys/class/net").join(&self.bridge.name).exists()
    }

    /// The address host-local would hand out next (its allocations and last reservation).
    fn next_free(&self) -> Option<Ipv4Addr> {
        let dir = self.ipam_dir.join(&self.bridge.name);
        let allocated: Vec<Ipv4Addr> = super::Network::allocations(self)
            .iter()
            .filter_map(|(ip, _)| ip.parse().ok())
            .collect();
        let last = std::fs::read_to_string(dir.join("last_reserved_ip.0"))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        super::next_free_address(&self.bridge, &allocated, last)
    }

    fn del_chain(
        &self,
        id: &str,
        netns: &str,
        result: &Value,
        ports: &[PortEntry],
    ) -> Result<(), NetworkError> {
        let ipam_dir = self.ipam_dir.display().to_string();
        let prev = (!result.is_null()).then_some(result);
        // An attachment nobody recorded (an address found held after a crash): its port
        // mappings are unknown, but portmap's DEL finds its chains by the container ID and
        // runs only with a mapping, so it gets a stand-in.
        let stand_in = [PortEntry {
            host_port: 1,
            container_port: 1,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }];
        let ports = if prev.is_none() && ports.is_empty() {
            &stand_in[..]
        } else {
            ports
        };
        let mut first_err = None;
        for p in chain_for(&self.bridge, &ipam_dir, ports).iter().rev() {
            let input = plugin_input(&self.bridge.name, p, prev, ports);
            if let Err(e) = self.exec(p, "DEL", id, netns, "", &input) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The bridge plugin (1.1) removes a container's masquerade rule only while the
    /// container's namespace exists. When the task ended while leda-cm was not running, the
    /// namespace is gone: the rule (POSTROUTING → `CNI-<hash>`) is removed here, by the
    /// plugin's own chain name and comment. Hand-made iptables because no plugin can do it.
    fn remove_masquerade_leftover(&self, id: &str) {
        let chain = super::masquerade_chain(&self.bridge.name, id);
        let comment = format!("name: \"{}\" id: \"{id}\"", self.bridge.name);
        let Ok(out) = Command::new("iptables")
            .args(["-w", "-t", "nat", "-S", "POSTROUTING"])
            .output()
        else {
            return;
        };
        let rules = String::from_utf8_lossy(&out.stdout).to_string();
        let mut found = false;
        for rule in rules
            .lines()
            .filter(|l| l.ends_with(&format!("-j {chain}")))
        {
            found = true;
            // `-A POSTROUTING -s 10.0.0.2/32 -m comment --comment "…" -j CNI-…`: the source
            // address and the chain identify the rule.
            let src = rule
                .split_whitespace()
                .skip_while(|w| *w != "-s")
                .nth(1)
                .unwrap_or("");
            let mut args = vec!["-w", "-t", "nat", "-D", "POSTROUTING"];
            if !src.is_empty() {
                args.extend(["-s", src]);
            }
            args.extend(["-m", "comment", "--comment", &comment, "-j", &chain]);
            if let Err(e) = run_iptables(&args) {
                log::warn!("removing the masquerade rule of container {id}: {e}");
            }
        }
        let listed = Command::new("iptables")
            .args(["-w", "-t", "nat", "-S", &chain])
            .output()
            .is_ok_and(|o| o.status.success());
        if listed {
            found = true;
            for step in [["-F", &chain], ["-X", &chain]] {
                let mut args = vec!["-w", "-t", "nat"];
                args.extend(step);
                if let Err(e) = run_iptables(&args) {
                    log::warn!("removing the masquerade chain of container {id}: {e}");
                }
            }
        }
        if found {
            log::info!("removed the masquerade rule that container {id} left behind");
        }
    }
}

impl super::Network for Cni {
    fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// Picks the host port of every request (the first free one of a range) and fails
    /// naming the port when a single port is taken on the host or by another container.
    fn choose_ports(
        &self,
        requests: &[PortRequest],
        taken: &[PortEntry],
    ) -> Result<Vec<PortEntry>, NetworkError> {
        requests
            .iter()
            .map(|r| {
                let (start, end) = r.host_ports;
                let clash = |p: u16| {
                    taken.iter().any(|t| {
                        super::ports_clash(
                            &r.host_ip,
                            &r.protocol,
                            p,
                            &t.host_ip,
                            &t.protocol,
                            t.host_port,
                        )
                    })
                };
                let free =
                    (start..=end).find(|p| !clash(*p) && port_free(&r.host_ip, *p, &r.protocol));
                match free {
                    Some(port) => Ok(PortEntry {
                        host_port: port,
                        container_port: r.container_port,
                        protocol: r.protocol.clone(),
                        host_ip: r.host_ip.clone(),
                    }),
                    None if start == end => Err(NetworkError::PortInUse {
                        port: start,
                        proto: r.protocol.clone(),
                        host_ip: r.host_ip.clone(),
                    }),
                    None => Err(NetworkError::NoFreePort {
                        start,
                        end,
                        proto: r.protocol.clone(),
                    }),
                }
            })
            .collect()
    }

    /// Adds the container whose task has PID `pid` to the bridge: ADD through the chain,
    /// asking for `wanted_ip` first (the address it had), with `ports` published. On failure
    /// whatever was added is deleted again.
    fn attach(
        &self,
        id: &str,
        pid: u32,
        wanted_ip: Option<Ipv4Addr>,
        ports: &[PortEntry],
    ) -> Result<Attachment, NetworkError> {
        let netns = format!("/proc/{pid}/ns/net");
        let file = File::open(&netns).map_err(|e| NetworkError::Namespace {
            id: id.to_string(),
            message: format!("{netns}: {e}"),
        })?;
        std::fs::create_dir_all(&self.ipam_dir).map_err(|e| NetworkError::State {
            path: self.ipam_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let beside = self.beside_possible(ports);
        let attempt = |ip: Option<Ipv4Addr>| match ip {
            Some(ip) if beside => self.add_beside(id, &netns, ip, ports),
            Some(ip) => self.add_chain(id, &netns, &format!("IgnoreUnknown=1;IP={ip}"), ports),
            None => self.add_chain(id, &netns, "", ports),
        };
        let result = match wanted_ip {
            Some(ip) => attempt(Some(ip)).or_else(|e| {
                log::warn!(
                    "container {id} cannot have its address {ip} again ({e}); taking another"
                );
                attempt(None)
            }),
            None => match beside.then(|| self.next_free()).flatten() {
                Some(ip) => attempt(Some(ip)).or_else(|e| {
                    log::debug!("container {id}: ADD beside portmap with {ip} failed ({e})");
                    attempt(None)
                }),
                None => attempt(None),
            },
        }?;
        let mut att = parse_result(&self.bridge.name, &result).ok_or_else(|| {
            let _ = self.del_chain(id, &netns, &result, ports);
            NetworkError::NoAddress {
                plugin: "bridge".into(),
                id: id.to_string(),
            }
        })?;
        att.ports = ports.to_vec();
        if !self.bridge.icc && !att.host_veth.is_empty() {
            // No plugin isolates bridge ports: the kernel's per-port flag does (Linux ≥ 4.18);
            // isolated ports reach the host and the outside, not each other.
            let flag = format!("/sys/class/net/{}/brport/isolated", att.host_veth);
            if let Err(e) = std::fs::write(&flag, "1") {
                let _ = self.del_chain(id, &netns, &result, ports);
                return Err(NetworkError::Namespace {
                    id: id.to_string(),
                    message: format!("cannot isolate {} (icc false): {flag}: {e}", att.host_veth),
                });
            }
        }
        lock(&self.held).insert(id.to_string(), file);
        Ok(att)
    }

    /// Keeps the namespace of an adopted, attached container open (after a daemon restart).
    fn hold(&self, id: &str, pid: u32) {
        match File::open(format!("/proc/{pid}/ns/net")) {
            Ok(f) => {
                lock(&self.held).insert(id.to_string(), f);
            }
            Err(e) => log::warn!("cannot hold the network namespace of container {id}: {e}"),
        }
    }

    /// Removes the container from the bridge (DEL through the chain in reverse: port
    /// mappings, masquerade rule, veth, address) and lets its namespace go.
    fn detach(&self, id: &str, att: &Attachment) -> Result<(), NetworkError> {
        let held = lock(&self.held).remove(id);
        let netns = held
            .as_ref()
            .map(|f| format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()))
            .unwrap_or_default();
        let r = self.del_chain(id, &netns, &att.result, &att.ports);
        drop(held);
        if netns.is_empty() && self.bridge.ip_masq {
            self.remove_masquerade_leftover(id);
        }
        r
    }

    /// The address allocations of host-local on this bridge: (address, container ID).
    fn allocations(&self) -> Vec<(String, String)> {
        let dir = self.ipam_dir.join(&self.bridge.name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                name.parse::<Ipv4Addr>().ok()?;
                let text = std::fs::read_to_string(e.path()).ok()?;
                let id = text.lines().next()?.trim().to_string();
                Some((name, id))
            })
            .collect();
        out.sort_unstable();
        out
    }

    fn iface_addr(&self, name: &str) -> Option<Ipv4Addr> {
        crate::host::interface_ipv4(name)
    }
}

fn run_iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Whether nothing on the host is bound to `port` (tcp/udp; sctp is not checked).
fn port_free(host_ip: &str, port: u16, proto: &str) -> bool {
    let ip = if host_ip.is_empty() {
        "0.0.0.0"
    } else {
        host_ip
    };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return true;
    };
    let addr = SocketAddr::new(ip, port);
    let in_use = |e: std::io::Error| e.kind() == std::io::ErrorKind::AddrInUse;
    match proto {
        "tcp" => TcpListener::bind(addr)
            .map(|_| ())
            .map_or_else(|e| !in_use(e), |_| true),
        "udp" => UdpSocket::bind(addr)
            .map(|_| ())
            .map_or_else(|e| !in_use(e), |_| true),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_port_is_not_free() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(!port_free("127.0.0.1", port, "tcp"));
        // The wildcard clashes with a specific address.
        assert!(!port_free("", port, "tcp"));
        drop(l);
        assert!(port_free("127.0.0.1", port, "tcp"));
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        assert!(!port_free("127.0.0.1", port, "udp"));
    }
}
