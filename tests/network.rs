//! Bridge networking through the standard CNI plugins, black box: the real daemon on the
//! harness's containerd and registry, containers on a bridge of the test's own (own name,
//! own subnet), reached from the host over loopback and the bridge.
//!
//! Each test removes what it made (containers, the bridge, the CNI chains that were not there
//! before), also when it fails (Drop). The tests run one at a time: the plugins' shared
//! port-mapping chains would otherwise be made and removed under each other's feet.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{kanto_cm, Daemon, DaemonSetup, Harness};
use serde_json::{json, Value};

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The chains of the nat and filter tables whose name starts with `CNI-`.
fn cni_chains() -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for table in ["nat", "filter"] {
        for line in sh(&format!("iptables-save -t {table}")).lines() {
            if let Some(name) = line.strip_prefix(':') {
                let name = name.split_whitespace().next().unwrap_or("");
                if name.starts_with("CNI-") {
                    set.insert(format!("{table}/{name}"));
                }
            }
        }
    }
    set
}

struct Net {
    h: Harness,
    setup: DaemonSetup,
    daemon: Option<Daemon>,
    bridge: String,
    /// `10.<x>.<y>` of the test's /24.
    net3: String,
    chains_before: BTreeSet<String>,
    starts: u32,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Net {
    fn new(test: &str, extra_bridge: Value) -> Net {
        let serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let h = Harness::get();
        let mut setup = DaemonSetup::new(&h, test);
        // The daemon's own bridge name and /24, claimed host-wide (common::NetClaim).
        let bridge = setup.net.bridge.clone();
        let net3 = setup.net.net3.clone();
        let mut b = json!({"disable": false, "name": bridge, "ip4": setup.net.ip4()});
        common::merge(&mut b, extra_bridge);
        setup.extra_config = json!({
            "containers": {"insecure_registries": [h.registry]},
            "manager": {"default_ctrs_stop_timeout": 2},
            "network": {"default_bridge": b},
        });
        Net {
            h,
            setup,
            daemon: None,
            bridge,
            net3,
            chains_before: cni_chains(),
            starts: 0,
            _serial: serial,
        }
    }

    fn image(&self) -> String {
        format!("{}/leda/busybox:1.0", self.h.registry)
    }

    fn start(&mut self) {
        self.starts += 1;
        self.daemon = Some(self.setup.spawn_ready(self.starts, Duration::from_secs(30)));
    }

    fn stderr(&self) -> String {
        self.daemon.as_ref().map(|d| d.stderr()).unwrap_or_default()
    }

    fn sock(&self) -> PathBuf {
        self.setup.runtime_dir.join("cm.sock")
    }

    fn kcm(&self, args: &[&str]) -> std::process::Output {
        kanto_cm(&self.sock(), args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kcm(args);
        assert!(
            out.status.success(),
            "kanto-cm {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.stderr()
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Creates and starts a bridged container; returns its ID.
    fn run(&self, name: &str, flags: &[&str], cmd: &[&str]) -> String {
        let image = self.image();
        let mut args = vec!["create", "-n", name];
        args.extend_from_slice(flags);
        args.push(&image);
        args.extend_from_slice(cmd);
        let id = self.ok(&args).trim().to_string();
        self.ok(&["start", &id]);
        id
    }

    fn get(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["get", id])).unwrap()
    }

    fn ip_of(&self, id: &str) -> String {
        let c = self.get(id);
        c["network_settings"]["networks"][&self.bridge]["ip_address"]
            .as_str()
            .unwrap_or_else(|| panic!("no address on {} in {c}", self.bridge))
            .to_string()
    }

    /// Waits for the container to exit; returns its exit code.
    fn wait_exit(&self, id: &str, timeout: Duration) -> i64 {
        let until = Instant::now() + timeout;
        loop {
            let c = self.get(id);
            if c["state"]["status"] == json!(5) || c["state"]["status"] == json!(3) {
                return c["state"]["exit_code"].as_i64().unwrap();
            }
            assert!(Instant::now() < until, "{id} still runs: {c}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn logs(&self, id: &str) -> String {
        self.ok(&["logs", id])
    }

    fn ipam_dir(&self) -> PathBuf {
        self.setup.state_dir.join("network/ipam").join(&self.bridge)
    }

    /// Addresses host-local holds on the test's bridge.
    fn allocations(&self) -> Vec<String> {
        std::fs::read_dir(self.ipam_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn veths(&self) -> String {
        sh(&format!(
            "ip -o link show master {} 2>/dev/null",
            self.bridge
        ))
    }
}

/// A free port of the host's loopback and the mapping `127.0.0.1:<port>:80` to it.
fn free_mapping() -> (u16, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    (port, format!("127.0.0.1:{port}:80"))
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            let ids = String::from_utf8_lossy(&self.kcm(&["list", "-q"]).stdout).to_string();
            for id in ids.split_whitespace() {
                let _ = self.kcm(&["remove", "-f", id]);
            }
            if let Some(d) = self.daemon.take() {
                d.stop();
            }
        }
        common::clean_namespace(&self.setup.containerd_sock, &self.setup.namespace);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        // Chains the plugins made during this test (the shared port-mapping ones included
        // when they were not there before), with the rules that jump to them. Other harness
        // instances (a device, another run) may have made chains meanwhile: a chain of a
        // container goes only when its rules name this test's subnet (or it has none), and
        // the shared CNI-HOSTPORT-* ones only once CNI-HOSTPORT-DNAT maps no port of anyone.
        let rules = |table: &str, chain: &str| sh(&format!("iptables -w -t {table} -S {chain}"));
        let dnat_unused = !rules("nat", "CNI-HOSTPORT-DNAT")
            .lines()
            .any(|l| l.starts_with("-A "));
        let ours = format!("{}.", self.net3);
        let made: Vec<String> = cni_chains()
            .difference(&self.chains_before)
            .filter(|tc| {
                let (table, chain) = tc.split_once('/').unwrap();
                if chain.starts_with("CNI-HOSTPORT-") {
                    return dnat_unused;
                }
                let text = rules(table, chain);
                text.contains(&ours) || !text.lines().any(|l| l.starts_with("-A "))
            })
            .cloned()
            .collect();
        for tc in &made {
            let (table, chain) = tc.split_once('/').unwrap();
            for line in sh(&format!("iptables-save -t {table}")).lines() {
                if line.starts_with("-A ") && line.contains(&format!("-j {chain}")) {
                    let rule = line.replacen("-A ", "-D ", 1);
                    let _ = sh(&format!("iptables -t {table} {rule}"));
                }
            }
        }
        for tc in &made {
            let (table, chain) = tc.split_once('/').unwrap();
            let _ = sh(&format!(
                "iptables -t {table} -F {chain}; iptables -t {table} -X {chain}"
            ));
        }
    }
}

/// An HTTP GET over `stream`; returns the body.
fn http_get(addr: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn retry<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Accepts one connection, reads a line and closes it (busybox nc waits for the close).
fn read_line(server: &TcpListener) -> (String, std::net::SocketAddr) {
    use std::io::BufRead;
    let (conn, peer) = server.accept().unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = String::new();
    let _ = std::io::BufReader::new(&conn).read_line(&mut line);
    (line, peer)
}

const HTTPD: &[&str] = &["httpd", "-f", "-p", "80", "-h", "/var/www"];

#[test]
fn bridged_containers_reach_each_other_the_host_and_published_ports_and_keep_their_addresses() {
    let mut t = Net::new("net-bridge", json!({}));
    t.start();
    let (port, mapping) = free_mapping();
    let web = t.run("web", &["--ports", &mapping], HTTPD);
    let web_ip = t.ip_of(&web);
    assert!(web_ip.starts_with(&format!("{}.", t.net3)), "{web_ip}");
    let c = t.get(&web);
    assert_eq!(
        c["network_settings"]["networks"][&t.bridge]["gateway"],
        json!(format!("{}.1", t.net3))
    );

    // The published port on the host's loopback reaches httpd in the container.
    let body = retry(Duration::from_secs(10), || {
        http_get(&format!("127.0.0.1:{port}")).ok()
    })
    .unwrap_or_else(|| panic!("127.0.0.1:{port} does not answer\n{}", t.stderr()));
    assert!(body.contains("leda-cm test image busybox"), "{body}");

    // A second container reaches the first by its address.
    let client = t.run(
        "client",
        &["--rp", "no"],
        &[
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{web_ip}/index.html"),
        ],
    );
    assert_eq!(
        t.wait_exit(&client, Duration::from_secs(20)),
        0,
        "{}",
        t.logs(&client)
    );
    assert!(
        t.logs(&client).contains("leda-cm test image"),
        "{}",
        t.logs(&client)
    );

    // A server bound on the bridge's gateway, reached by the name from extra_hosts.
    let gateway = format!("{}.1", t.net3);
    let server = TcpListener::bind(format!("{gateway}:0")).unwrap();
    let sport = server.local_addr().unwrap().port();
    let talk = format!("echo hello-from-container | nc mosquitto {sport}");
    let caller = t.run(
        "caller",
        &["--rp", "no", "--hosts", "mosquitto:host_ip"],
        &["sh", "-c", &talk],
    );
    let (got, peer) = read_line(&server);
    assert_eq!(got.trim(), "hello-from-container");
    assert!(peer.ip().to_string().starts_with(&t.net3), "{peer}");
    let hosts = std::fs::read_to_string(
        t.setup
            .state_dir
            .join("containers")
            .join(&caller)
            .join("hosts"),
    )
    .unwrap();
    assert!(hosts.contains(&format!("{gateway}\tmosquitto")), "{hosts}");
    assert_eq!(t.wait_exit(&caller, Duration::from_secs(20)), 0);

    // The masquerade rule of a container is in the plugin's chain (the name leda-cm computes
    // to clean up after a task that ended while it was away).
    let nat = sh("iptables-save -t nat");
    let web_chain = leda_cm::network::masquerade_chain(&t.bridge, &web);
    assert!(
        nat.contains(&format!(":{web_chain} ")),
        "no {web_chain} in\n{nat}"
    );

    // kill -9 of the daemon and a restart: the running container keeps its address and its
    // port; nothing is allocated twice; a container that ended meanwhile gives everything
    // back.
    let brief = t.run("brief", &["--rp", "no"], &["sleep", "3"]);
    let brief_chain = leda_cm::network::masquerade_chain(&t.bridge, &brief);
    let before = t.allocations();
    assert_eq!(before.len(), 2, "{before:?}");
    let mut d = t.daemon.take().unwrap();
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10)).unwrap();
    let tasks_gone = retry(Duration::from_secs(15), || {
        let tasks = common::ctr_tasks(&t.setup.containerd_sock, &t.setup.namespace);
        (tasks.get(&brief).map(String::as_str) != Some("RUNNING")).then_some(())
    });
    assert!(tasks_gone.is_some(), "{brief} still runs");
    t.start();
    assert_eq!(t.wait_exit(&brief, Duration::from_secs(10)), 0);
    let nat = sh("iptables-save -t nat");
    assert!(!nat.contains(&brief), "a rule of {brief} is left:\n{nat}");
    assert!(!nat.contains(&brief_chain), "{brief_chain} is left:\n{nat}");
    assert_eq!(t.ip_of(&web), web_ip);
    assert_eq!(t.get(&web)["state"]["running"], json!(true));
    let after = t.allocations();
    assert!(after.contains(&web_ip), "{after:?}");
    // The exited containers gave their addresses back (at exit or at the restart).
    assert_eq!(after.len(), 1, "{before:?} → {after:?}");
    let body = http_get(&format!("127.0.0.1:{port}")).unwrap();
    assert!(body.contains("leda-cm test image"), "{body}");

    // A stop gives the address back (its DEL runs after the stop has returned), a start
    // asks for it again.
    t.ok(&["stop", &web]);
    let released = retry(Duration::from_secs(10), || {
        t.allocations().is_empty().then_some(())
    });
    assert!(released.is_some(), "{:?}", t.allocations());
    t.ok(&["start", &web]);
    assert_eq!(t.ip_of(&web), web_ip);

    // Removing everything leaves no veth, no allocation, no rule of theirs.
    let ids = [web.clone(), client.clone(), caller.clone(), brief.clone()];
    for id in &ids {
        t.ok(&["remove", "-f", id]);
    }
    assert_eq!(t.veths().trim(), "", "veths left on {}", t.bridge);
    assert!(t.allocations().is_empty(), "{:?}", t.allocations());
    let rules = sh("iptables-save");
    for id in &ids {
        assert!(
            !rules.contains(id.as_str()),
            "a rule of {id} is left:\n{rules}"
        );
    }
    assert!(
        !rules.contains(&web_ip),
        "a rule for {web_ip} is left:\n{rules}"
    );
    assert!(http_get(&format!("127.0.0.1:{port}")).is_err());
}

/// Leda's desired states name peers as `container_<host name>` (Kanto's default host name
/// is `<name>-host`): the feeder starts first, its `/etc/hosts` gets the databroker's line
/// when the databroker gets its address, and loses it when the databroker stops (Kanto).
#[test]
fn container_extra_hosts_resolve_by_host_name_also_for_a_peer_that_starts_later() {
    let mut t = Net::new("net-peers", json!({}));
    t.start();
    let hosts_of = |id: &str| {
        std::fs::read_to_string(t.setup.state_dir.join("containers").join(id).join("hosts"))
            .unwrap_or_default()
    };
    // Inside the feeder: wait for the name, then fetch the databroker's page by it.
    let feeder = t.run(
        "feeder",
        &[
            "--rp",
            "no",
            "--hosts",
            "databroker:container_databroker-host,byname:container_databroker",
        ],
        &[
            "sh",
            "-c",
            // The name is there once the databroker has its address, a moment before its
            // httpd listens: the first fetch is tried again for up to 10 s.
            "until grep -q databroker /etc/hosts; do sleep 0.2; done; n=0; \
             until wget -q -O - http://databroker/index.html; do \
             n=$((n+1)); [ $n -lt 50 ] || exit 1; sleep 0.2; done; \
             wget -q -O - http://byname/index.html",
        ],
    );
    let watcher = t.run(
        "watcher",
        &["--hosts", "databroker:container_databroker-host"],
        &["sleep", "600"],
    );
    assert!(
        !hosts_of(&feeder).contains("databroker"),
        "{}",
        hosts_of(&feeder)
    );
    let broker = t.run("databroker", &[], HTTPD);
    let ip = t.ip_of(&broker);
    assert_eq!(
        t.wait_exit(&feeder, Duration::from_secs(30)),
        0,
        "{}\n{}",
        t.logs(&feeder),
        t.stderr()
    );
    let page = t.logs(&feeder);
    assert_eq!(page.matches("leda-cm test image").count(), 2, "{page}");
    let hosts = hosts_of(&watcher);
    assert!(hosts.contains(&format!("{ip}\tdatabroker\n")), "{hosts}");
    // The feeder's file had both names while it ran.
    let hosts = hosts_of(&feeder);
    assert!(hosts.contains(&format!("{ip}\tdatabroker\n")), "{hosts}");
    assert!(hosts.contains(&format!("{ip}\tbyname\n")), "{hosts}");
    // The databroker stops: the watcher's line goes (as Kanto's refresh drops it), and
    // comes back with its start.
    t.ok(&["stop", &broker]);
    let gone = retry(Duration::from_secs(10), || {
        (!hosts_of(&watcher).contains("databroker")).then_some(())
    });
    assert!(gone.is_some(), "{}", hosts_of(&watcher));
    t.ok(&["start", &broker]);
    let ip = t.ip_of(&broker);
    let back = retry(Duration::from_secs(10), || {
        hosts_of(&watcher)
            .contains(&format!("{ip}\tdatabroker\n"))
            .then_some(())
    });
    assert!(back.is_some(), "{}", hosts_of(&watcher));
    for id in [&feeder, &watcher, &broker] {
        t.ok(&["remove", "-f", id]);
    }
}

#[test]
fn icc_false_isolates_containers_but_not_the_host_with_a_read_only_root() {
    let mut t = Net::new("net-icc", json!({"icc": false}));
    // With the root read-only, as on a device: the plugins write only to /proc/sys, sysfs
    // and leda-cm's state dir.
    std::fs::create_dir_all(&t.setup.state_dir).unwrap();
    std::fs::create_dir_all(&t.setup.runtime_dir).unwrap();
    t.setup.wrapper = vec![
        t.h.scripts.join("ro-root").display().to_string(),
        t.setup.state_dir.display().to_string(),
        t.setup.runtime_dir.display().to_string(),
        "--".into(),
    ];
    t.start();
    let web = t.run("web", &[], HTTPD);
    let ip = t.ip_of(&web);
    let gateway = format!("{}.1", t.net3);
    // The host reaches it over the bridge.
    let body = retry(Duration::from_secs(10), || {
        http_get(&format!("{ip}:80")).ok()
    })
    .unwrap_or_else(|| panic!("{ip}:80 does not answer from the host"));
    assert!(body.contains("leda-cm test image"));
    // Another container does not.
    let client = t.run(
        "client",
        &["--rp", "no"],
        // (busybox's `wget -T` crashes: `timeout` ends it instead.)
        &[
            "timeout",
            "4",
            "wget",
            "-O",
            "-",
            &format!("http://{ip}/index.html"),
        ],
    );
    let code = t.wait_exit(&client, Duration::from_secs(30));
    let logs = t.logs(&client);
    assert_ne!(code, 0, "{logs}");
    assert!(
        logs.contains(&format!("Connecting to {ip}")) && !logs.contains("leda-cm test image"),
        "{logs}"
    );
    // It still reaches the host (the gateway).
    let server = TcpListener::bind(format!("{gateway}:0")).unwrap();
    let sport = server.local_addr().unwrap().port();
    let caller = t.run(
        "caller",
        &["--rp", "no"],
        &["sh", "-c", &format!("echo hi | nc {gateway} {sport}")],
    );
    let (got, _) = read_line(&server);
    assert_eq!(got.trim(), "hi");
    assert_eq!(t.wait_exit(&caller, Duration::from_secs(20)), 0);
}

#[test]
fn a_taken_host_port_fails_the_create_and_leaves_nothing() {
    let mut t = Net::new("net-port", json!({}));
    t.start();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let image = t.image();
    let mapping = format!("127.0.0.1:{port}:80");
    let out = t.kcm(&["create", "-n", "clash", "--ports", &mapping, &image]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "host port {port}/tcp on 127.0.0.1 is already in use"
        )),
        "{err}"
    );
    assert_eq!(t.ok(&["list", "-q"]).trim(), "");
    assert_eq!(
        common::ctr(
            &t.setup.containerd_sock,
            &t.setup.namespace,
            &["containers", "ls", "-q"]
        )
        .trim(),
        ""
    );
    assert!(t.allocations().is_empty());

    // Two containers cannot publish the same host port either.
    drop(taken);
    let first = t.run("first", &["--ports", &mapping], HTTPD);
    let out = t.kcm(&["create", "-n", "second", "--ports", &mapping, &image]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("host port {port}/tcp")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A range takes the first free port of it.
    let range = format!("127.0.0.1:{port}-{}:80", port + 50);
    let third = t.run("third", &["--ports", &range], HTTPD);
    let answering = |p: u16| {
        http_get(&format!("127.0.0.1:{p}")).is_ok_and(|b| b.contains("leda-cm test image"))
    };
    let chosen = retry(Duration::from_secs(10), || {
        (port + 1..=port + 50).find(|p| answering(*p))
    })
    .expect("a port of the range answers");
    assert!(answering(port), "the first container still has {port}");
    assert_eq!(
        (port + 1..=port + 50).filter(|p| answering(*p)).count(),
        1,
        "chosen {chosen}"
    );
    // udp: the test image's busybox has no UDP server, so the DNAT rule portmap made is what
    // is checked (protocol, host address and port, the container's address and port).
    let uport = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let umap = format!("127.0.0.1:{uport}:5353/udp");
    let listener = t.run("udp", &["--ports", &umap], &["sleep", "600"]);
    let uip = t.ip_of(&listener);
    let nat = sh("iptables-save -t nat");
    let rule = nat
        .lines()
        .find(|l| l.contains(&format!("--to-destination {uip}:5353")))
        .unwrap_or_else(|| panic!("no DNAT to {uip}:5353 in\n{nat}"));
    assert!(
        rule.contains("-p udp") && rule.contains(&format!("--dport {uport}")),
        "{rule}"
    );
    assert!(nat.contains("-d 127.0.0.1/32 -p udp"), "{nat}");
    t.ok(&["remove", "-f", &listener]);
    assert!(!sh("iptables-save -t nat").contains(&format!("{uip}:5353")));
    t.ok(&["remove", "-f", &first]);
    t.ok(&["remove", "-f", &third]);
}

/// The update agent replaces a container that publishes a host port and whose PID 1
/// ignores SIGTERM by one publishing the same port: the new one starts only once the old
/// one has stopped (after the stop timeout), never beside it, while a replacement with
/// nothing in its way runs at once; then the port answers from the new one.
#[test]
fn an_update_that_keeps_a_host_port_starts_the_new_container_only_once_the_old_one_stopped() {
    use common::mqtt::{Broker, Peer};
    let h = Harness::get();
    let broker = Broker::start(&h, &h.test_dir("net-agent-broker"));
    let peer = Peer::connect(broker.port, &["containersupdate/#"]);
    let mut t = Net::new("net-agent", json!({}));
    common::merge(
        &mut t.setup.extra_config,
        json!({
            "update_agent": {"enable": true},
            "connection": {"broker_url": broker.url()},
            "manager": {"default_ctrs_stop_timeout": 10},
        }),
    );
    t.start();
    let (port, mapping) = free_mapping();
    let image = t.image();
    let component = |name: &str, env: &str, port: Option<&str>| {
        let mut kv = vec![
            json!({"key": "image", "value": image}),
            json!({"key": "env", "value": env}),
            json!({"key": "cmd", "value": "/bin/sh"}),
            json!({"key": "cmd", "value": "-c"}),
            json!({"key": "cmd", "value": format!("trap '' TERM; echo {env} > /var/www/index.html; httpd -p 80 -h /var/www; while :; do sleep 1; done")}),
        ];
        if let Some(p) = port {
            kv.push(json!({"key": "port", "value": p}));
        }
        json!({"id": name, "version": "1.0", "config": kv})
    };
    let send = |activity: &str, components: Value| {
        peer.publish(
            "containersupdate/desiredstate",
            &json!({"activityId": activity, "timestamp": 1, "payload": {"domains": [
                {"id": "containers", "config": [], "components": components}]}}),
        );
    };
    let completed = |activity: &str| {
        peer.heard()
            .into_iter()
            .filter_map(|h| h.json)
            .any(|j| j["activityId"] == activity && j["payload"]["status"] == "COMPLETED")
    };
    let ids = || -> std::collections::BTreeMap<String, String> {
        let list: Vec<Value> = serde_json::from_str(&t.ok(&["list", "--json"])).unwrap();
        list.into_iter()
            .map(|c| {
                (
                    c["container_name"].as_str().unwrap().to_string(),
                    c["container_id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    send(
        "v1",
        json!([
            component("web", "V=1", Some(&mapping)),
            component("other", "O=1", None)
        ]),
    );
    retry(Duration::from_secs(60), || completed("v1").then_some(()))
        .unwrap_or_else(|| panic!("v1 did not complete\n{}", t.stderr()));
    let before = ids();
    let (old_web, old_other) = (before["web"].clone(), before["other"].clone());
    assert!(
        retry(Duration::from_secs(10), || {
            http_get(&format!("127.0.0.1:{port}"))
                .ok()
                .filter(|b| b.contains("V=1"))
        })
        .is_some(),
        "the old web answers on {port}"
    );

    send(
        "v2",
        json!([
            component("web", "V=2", Some(&mapping)),
            component("other", "O=2", None)
        ]),
    );
    let started = Instant::now();
    let (mut new_web_at, mut new_other_at) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            Instant::now() < deadline,
            "v2 did not complete\n{}",
            t.stderr()
        );
        // Looked at once more after the end.
        let done = completed("v2");
        let names = ids();
        let tasks = common::ctr_tasks(&t.setup.containerd_sock, &t.setup.namespace);
        let task = |id: &str| tasks.get(id).cloned().unwrap_or_default();
        let new_of = |name: &str, old: &str| names.get(name).filter(|id| *id != old).cloned();
        if let Some(id) = new_of("web", &old_web) {
            if task(&id) == "RUNNING" {
                assert_eq!(task(&old_web), "", "the new web runs beside the old one");
                new_web_at.get_or_insert(started.elapsed());
            }
        }
        if let Some(id) = new_of("other", &old_other) {
            if task(&id) == "RUNNING" && new_other_at.is_none() {
                new_other_at = Some(started.elapsed());
                assert_eq!(
                    task(&old_web),
                    "RUNNING",
                    "the old web still stops meanwhile"
                );
            }
        }
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (web_at, other_at) = (
        new_web_at.expect("the new web ran"),
        new_other_at.expect("the new other ran"),
    );
    eprintln!(
        "net-agent: other (nothing in its way) ran {:.1} s after the desired state, web (same port) {:.1} s (stop timeout 10 s)",
        other_at.as_secs_f64(),
        web_at.as_secs_f64()
    );
    assert!(other_at < web_at);
    assert!(
        retry(Duration::from_secs(10), || {
            http_get(&format!("127.0.0.1:{port}"))
                .ok()
                .filter(|b| b.contains("V=2"))
        })
        .is_some(),
        "the new web answers on {port}"
    );
    let after = ids();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after.values().all(|id| *id != old_web && *id != old_other));
}

/// Whether iptables, the bridge or host-local still hold anything of `ids` (or of `ips`).
fn leftovers(t: &Net, ids: &[&str], ips: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let rules = sh("iptables-save");
    for line in rules.lines() {
        let ours = ids.iter().any(|id| line.contains(id))
            || ips
                .iter()
                .any(|ip| line.contains(&format!("{ip}/")) || line.contains(&format!("{ip}:")));
        if ours {
            out.push(format!("rule {line}"));
        }
    }
    for id in ids {
        let chain = leda_cm::network::masquerade_chain(&t.bridge, id);
        if rules.contains(&format!(":{chain} ")) {
            out.push(format!("chain {chain}"));
        }
    }
    let veths = t.veths();
    if !veths.trim().is_empty() {
        out.push(format!("veths {veths}"));
    }
    for a in t.allocations() {
        out.push(format!("allocation {a}"));
    }
    out
}

/// The record's bridge attachment (what is still to be released), if any.
fn recorded_attachment(t: &Net, id: &str) -> Option<Value> {
    let path = t
        .setup
        .state_dir
        .join("containers")
        .join(id)
        .join("config.json");
    let rec: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    rec["leda_cm"]["network"]
        .as_object()
        .map(|_| rec["leda_cm"]["network"].clone())
}

/// A stop returns before the plugins' DEL has run; whatever needs what the DEL frees waits
/// for it: a start of the same container at once (it gets its address again and its port
/// answers), a create and start of another container on the same host port at once, a
/// remove. Nothing is left afterwards.
#[test]
fn a_stop_returns_before_its_del_and_what_needs_its_port_or_address_waits_for_it() {
    let mut t = Net::new("net-stopdel", json!({}));
    t.start();
    let (port, mapping) = free_mapping();
    let answers = |p: u16| {
        retry(Duration::from_secs(10), || {
            http_get(&format!("127.0.0.1:{p}"))
                .ok()
                .filter(|b| b.contains("leda-cm test image"))
        })
        .is_some()
    };
    let web = t.run("web", &["--ports", &mapping], HTTPD);
    let ip = t.ip_of(&web);
    assert!(answers(port), "{}", t.stderr());

    // stop -f, then start at once, several times: same address, the port answers, one
    // allocation, one DNAT rule.
    for round in 0..3 {
        t.ok(&["stop", "-f", &web]);
        t.ok(&["start", &web]);
        assert_eq!(t.ip_of(&web), ip, "round {round}");
        assert!(answers(port), "round {round}: {}", t.stderr());
        assert_eq!(t.allocations(), vec![ip.clone()], "round {round}");
        let dnat = sh("iptables-save -t nat")
            .lines()
            .filter(|l| l.contains(&format!("--to-destination {ip}:80")))
            .count();
        assert_eq!(dnat, 1, "round {round}:\n{}", sh("iptables-save -t nat"));
    }

    // stop -f, then another container on the same host port at once: it gets the port (after
    // the stopped one's DEL), and its address is not the stopped one's rule target.
    t.ok(&["stop", "-f", &web]);
    let other = t.run("other", &["--ports", &mapping], HTTPD);
    let other_ip = t.ip_of(&other);
    assert!(answers(port), "{}", t.stderr());
    let nat = sh("iptables-save -t nat");
    assert!(
        nat.contains(&format!("--to-destination {other_ip}:80"))
            && !nat.contains(&format!("--to-destination {ip}:80")),
        "{nat}"
    );
    // The stopped one cannot start while the other holds the port; it can once that is gone.
    let out = t.kcm(&["start", &web]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("host port {port}/tcp")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.ok(&["stop", "-f", &other]);
    t.ok(&["remove", &other]);
    t.ok(&["start", &web]);
    assert!(answers(port), "{}", t.stderr());

    // stop -f and remove at once: the remove waits for the DEL; nothing is left.
    t.ok(&["stop", "-f", &web]);
    t.ok(&["remove", &web]);
    let left = leftovers(&t, &[&web, &other], &[&ip, &other_ip]);
    assert!(left.is_empty(), "{left:#?}");
    assert!(http_get(&format!("127.0.0.1:{port}")).is_err());
}

/// The daemon is killed after a stop returned but before its DEL ran: the record names the
/// attachment, and the next start releases it: no rule, veth or address of the container is
/// left once the restarted daemon answers, and the container starts again on its port.
#[test]
fn a_daemon_killed_between_a_stop_and_its_del_leaves_nothing_after_the_restart() {
    let mut t = Net::new("net-stopcrash", json!({}));
    t.setup
        .env
        .push(("LEDA_CM_FAULT_NET_LEAVE_STALL".into(), "1".into()));
    t.start();
    let (port, mapping) = free_mapping();
    let web = t.run("web", &["--ports", &mapping], HTTPD);
    let ip = t.ip_of(&web);
    let quiet = t.run("quiet", &[], &["sleep", "600"]);
    let quiet_ip = t.ip_of(&quiet);
    t.ok(&["stop", "-f", &web]);
    t.ok(&["stop", "-f", &quiet]);
    assert_eq!(t.get(&web)["state"]["running"], json!(false));
    // The DEL has not run (the fault hook holds it): rules and addresses are still there, and
    // the records say what is to be released.
    let mut held = t.allocations();
    held.sort();
    let mut want = vec![ip.clone(), quiet_ip.clone()];
    want.sort();
    assert_eq!(held, want);
    assert!(sh("iptables-save -t nat").contains(&format!("--to-destination {ip}:80")));
    assert!(recorded_attachment(&t, &web).is_some());
    assert!(recorded_attachment(&t, &quiet).is_some());

    let mut d = t.daemon.take().unwrap();
    d.signal(libc::SIGKILL);
    d.wait_exit(Duration::from_secs(10)).unwrap();
    t.setup
        .env
        .retain(|(k, _)| k != "LEDA_CM_FAULT_NET_LEAVE_STALL");
    t.start();
    // Ready, and it answers: the restore has run.
    assert!(t.ok(&["list", "-q"]).contains(&web));
    let left = leftovers(&t, &[&web, &quiet], &[&ip, &quiet_ip]);
    assert!(left.is_empty(), "{left:#?}\n{}", t.stderr());
    assert!(recorded_attachment(&t, &web).is_none());
    assert!(recorded_attachment(&t, &quiet).is_none());
    assert_eq!(t.get(&web)["state"]["running"], json!(false));
    // It starts again, on its port, with its address.
    t.ok(&["start", &web]);
    assert_eq!(t.ip_of(&web), ip);
    let body = retry(Duration::from_secs(10), || {
        http_get(&format!("127.0.0.1:{port}")).ok()
    });
    assert!(
        body.is_some_and(|b| b.contains("leda-cm test image")),
        "{}",
        t.stderr()
    );
    t.ok(&["remove", "-f", &web]);
    t.ok(&["remove", "-f", &quiet]);
    let left = leftovers(&t, &[&web, &quiet], &[&ip, &quiet_ip]);
    assert!(left.is_empty(), "{left:#?}");
}

#[test]
fn a_missing_plugin_is_named_with_its_dir() {
    let mut t = Net::new("net-noplugin", json!({}));
    let empty = t.setup.dir.join("no-plugins");
    std::fs::create_dir_all(&empty).unwrap();
    // host-local and bridge present, portmap missing.
    for p in ["bridge", "host-local"] {
        std::os::unix::fs::symlink(format!("/usr/lib/cni/{p}"), empty.join(p)).unwrap();
    }
    common::merge(
        &mut t.setup.extra_config,
        json!({"network": {"cni_plugin_dir": empty}}),
    );
    t.start();
    assert!(
        t.stderr().contains(&format!(
            "CNI plugin portmap not found in {}",
            empty.display()
        )),
        "{}",
        t.stderr()
    );
    let image = t.image();
    // The bridge plugin runs first; portmap (needed for the port mapping) is missing: what
    // bridge did is undone.
    let (_, mapping) = free_mapping();
    let id = t
        .ok(&[
            "create", "-n", "lonely", "--ports", &mapping, &image, "sleep", "60",
        ])
        .trim()
        .to_string();
    let out = t.kcm(&["start", &id]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "CNI plugin portmap not found in {}",
            empty.display()
        )),
        "{err}"
    );
    // Nothing half set up: no task, no address, no veth.
    let tasks = common::ctr_tasks(&t.setup.containerd_sock, &t.setup.namespace);
    assert_eq!(tasks.get(&id).map(String::as_str), Some(""), "{tasks:?}");
    assert!(t.allocations().is_empty(), "{:?}", t.allocations());
    assert_eq!(t.veths().trim(), "");
}

#[test]
fn an_invalid_or_overlapping_subnet_is_a_configuration_error_at_start() {
    let h = Harness::get();
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // A bridge of the test's own with an address, so that a route exists to overlap: the
    // name and /24 of a claim (common::NetClaim), which removes the bridge when dropped. The
    // daemons below have claims (names) of their own; the subnet they are given is the
    // lower half of this /24, which no other instance on this host holds.
    let dir = h.test_dir("net-subnet-own");
    let own = common::NetClaim::new(&h, &dir);
    let (own_bridge, net3) = (own.bridge.clone(), own.net3.clone());
    assert!(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ip link add {own_bridge} type bridge && ip addr add {net3}.1/24 dev {own_bridge} && ip link set {own_bridge} up"
        ))
        .status()
        .unwrap()
        .success());
    let cases = [
        (
            json!({"ip4": format!("{net3}.1/25")}),
            format!("bridge subnet {net3}.0/25 overlaps the route {net3}.0/24 of interface {own_bridge}"),
        ),
        (
            json!({"ip4": "10.1.2.3/40"}),
            "invalid network.default_bridge.ip4 \"10.1.2.3/40\": prefix length \"40\" is not between 1 and 30".to_string(),
        ),
        (
            json!({"ip4": "10.1.2.1/24", "fcidr4": "10.9.0.0/24"}),
            "invalid network.default_bridge.fcidr4 \"10.9.0.0/24\": not inside the bridge subnet 10.1.2.0/24".to_string(),
        ),
    ];
    for (bridge, message) in cases {
        let mut setup = DaemonSetup::new(&h, "net-subnet");
        let b = json!({"network": {"default_bridge": merge_disable(bridge)}});
        setup.extra_config = b;
        let mut d = setup.spawn(None);
        let status = d
            .wait_exit(Duration::from_secs(20))
            .expect("the daemon exits");
        assert_eq!(status.code(), Some(78), "{}", d.stderr());
        assert!(d.stderr().contains(&message), "{message}\n{}", d.stderr());
        // Nothing was written.
        assert!(!setup.state_dir.join("network").exists());
    }
}

fn merge_disable(mut b: Value) -> Value {
    b["disable"] = json!(false);
    b
}
