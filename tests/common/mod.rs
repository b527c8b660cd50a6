//! Shared pieces of the integration tests: the harness's services (from `LEDA_TEST_*`, set by
//! tests/harness/run), a daemon under test with its own dirs and containerd namespace, and a
//! NOTIFY_SOCKET listener that records what the daemon tells systemd.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod api;
pub mod cutproxy;
pub mod device;
pub mod http;
pub mod mqtt;

pub const BIN: &str = env!("CARGO_BIN_EXE_leda-cm");
/// The dedicated log driver binary the daemon hands containerd (beside `BIN`).
pub const LOGD: &str = env!("CARGO_BIN_EXE_leda-cm-logd");

/// The services tests/harness/run started.
#[derive(Debug, Clone)]
pub struct Harness {
    pub workdir: PathBuf,
    pub run_id: String,
    pub scripts: PathBuf,
    pub containerd_sock: PathBuf,
    pub mqtt: String,
    pub registry: String,
    pub registry_auth: String,
    pub registry_user: String,
    pub registry_pass: String,
    pub image: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: integration tests run under the harness \
             (bash tests/run-all.sh, or tests/harness/run -- cargo test)"
        )
    })
}

impl Harness {
    pub fn get() -> Harness {
        Harness {
            workdir: var("LEDA_TEST_WORKDIR").into(),
            run_id: var("LEDA_TEST_RUN_ID"),
            scripts: var("LEDA_TEST_HARNESS_DIR").into(),
            containerd_sock: var("LEDA_TEST_CONTAINERD_SOCK").into(),
            mqtt: var("LEDA_TEST_MQTT"),
            registry: var("LEDA_TEST_REGISTRY"),
            registry_auth: var("LEDA_TEST_REGISTRY_AUTH"),
            registry_user: var("LEDA_TEST_REGISTRY_USER"),
            registry_pass: var("LEDA_TEST_REGISTRY_PASS"),
            image: var("LEDA_TEST_IMAGE"),
        }
    }

    /// A fresh directory for one test under the harness's work dir.
    pub fn test_dir(&self, test: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let d = self.workdir.join("tests").join(format!(
            "{test}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// A containerd namespace unique to this run, test and call: test binaries of one run
    /// share the harness's containerd, and runc's cgroups are `<namespace>/<id>`.
    pub fn namespace(&self, test: &str) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        format!(
            "leda-test-{}-{}-{}-{}",
            self.run_id,
            test.replace('_', "-"),
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// Six characters of the harness run, for names of this run's interfaces.
    pub fn tag(&self) -> String {
        self.run_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(6)
            .collect::<String>()
            .to_ascii_lowercase()
    }

    /// Runs a function of tests/harness/lib.sh.
    pub fn lib(&self, call: &str) -> std::process::Output {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(". '{}/lib.sh'; {call}", self.scripts.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{call}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

/// A bridge name and a /24 of 10.207.0.0/16 claimed host-wide for one daemon or test
/// (tests/harness/lib.sh `harness_claim_net`): no other harness instance on this host uses
/// either while it is held. Dropping it removes the bridge (when one was made) and the claim;
/// the harness's teardown gives back whatever a crashed test left.
pub struct NetClaim {
    scripts: PathBuf,
    /// `lc<run tag>-<n>`.
    pub bridge: String,
    /// `10.207.<n>`: the /24 is `<net3>.0/24`.
    pub net3: String,
}

impl NetClaim {
    /// Claims for `owner` (an existing dir of the harness's work dir), held while this test
    /// process lives.
    pub fn new(harness: &Harness, owner: &Path) -> NetClaim {
        let out = harness.lib(&format!(
            "harness_claim_net '{}' '{}' {}",
            owner.display(),
            harness.tag(),
            std::process::id()
        ));
        let text = String::from_utf8_lossy(&out.stdout);
        let (bridge, net3) = text
            .trim()
            .split_once(' ')
            .unwrap_or_else(|| panic!("harness_claim_net said {text:?}"));
        NetClaim {
            scripts: harness.scripts.clone(),
            bridge: bridge.to_string(),
            net3: net3.to_string(),
        }
    }

    /// The bridge's address with the prefix (`ip4`).
    pub fn ip4(&self) -> String {
        format!("{}.1/24", self.net3)
    }
}

impl Drop for NetClaim {
    fn drop(&mut self) {
        // No panic here: this also runs while unwinding.
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                ". '{}/lib.sh'; harness_release_net '{}'",
                self.scripts.display(),
                self.net3
            ))
            .output();
    }
}

/// A containerd of the test's own (for tests that stop and start it), torn down on drop.
pub struct PrivateContainerd {
    harness: Harness,
    pub dir: PathBuf,
}

impl PrivateContainerd {
    pub fn socket_in(dir: &Path) -> PathBuf {
        dir.join("containerd.sock")
    }

    pub fn start(harness: &Harness, dir: &Path) -> PrivateContainerd {
        harness.lib(&format!("harness_start_containerd '{}'", dir.display()));
        PrivateContainerd {
            harness: harness.clone(),
            dir: dir.to_path_buf(),
        }
    }

    pub fn socket(&self) -> PathBuf {
        Self::socket_in(&self.dir)
    }

    /// Stops containerd and everything it runs (tasks, then shims, then the daemon).
    pub fn stop(&self) {
        self.harness
            .lib(&format!("harness_stop_containerd '{}'", self.dir.display()));
    }

    /// Stops only the containerd process (tasks and shims live on), as a crash would.
    pub fn stop_daemon_only(&self) {
        let pid = fs::read_to_string(self.dir.join("containerd.pid")).unwrap();
        self.harness.lib(&format!("kill_pid {}", pid.trim()));
    }

    /// Starts containerd again on the same root, state and socket.
    pub fn restart_daemon(&self) {
        self.harness.lib(&format!(
            "harness_start_containerd '{}'",
            self.dir.display()
        ));
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One datagram from the daemon, with when it arrived.
#[derive(Debug, Clone)]
pub struct Notification {
    pub at: Instant,
    pub text: String,
}

/// A NOTIFY_SOCKET as systemd provides it, recording every message.
pub struct NotifyListener {
    pub path: PathBuf,
    messages: Arc<Mutex<Vec<Notification>>>,
}

impl NotifyListener {
    pub fn new(dir: &Path) -> NotifyListener {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = messages.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 4096];
            while let Ok(n) = sock.recv(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push(Notification {
                    at: Instant::now(),
                    text,
                });
            }
        });
        NotifyListener { path, messages }
    }

    pub fn all(&self) -> Vec<Notification> {
        self.messages.lock().unwrap().clone()
    }

    /// Every `KEY=value` line received, in order.
    pub fn lines(&self) -> Vec<(Instant, String)> {
        self.all()
            .into_iter()
            .flat_map(|n| {
                n.text
                    .lines()
                    .map(|l| (n.at, l.to_string()))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    pub fn has_line(&self, line: &str) -> bool {
        self.lines().iter().any(|(_, l)| l == line)
    }

    pub fn statuses(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter_map(|(_, l)| l.strip_prefix("STATUS=").map(str::to_string))
            .collect()
    }

    /// Waits until a line satisfies `pred`; returns it.
    pub fn wait_line(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, l)) = self.lines().into_iter().find(|(_, l)| pred(l)) {
                return Some(l);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_ready(&self, timeout: Duration) -> bool {
        self.wait_line(timeout, |l| l == "READY=1").is_some()
    }

    /// Queues a line of our own (`TEST_MARK=<name>`) on the socket and waits until it is
    /// read: whatever the daemon sent before this call is recorded before the mark (one
    /// datagram socket, read in order).
    pub fn mark(&self, name: &str) {
        let line = format!("TEST_MARK={name}");
        UnixDatagram::unbound()
            .unwrap()
            .send_to(line.as_bytes(), &self.path)
            .unwrap();
        assert!(
            self.wait_line(Duration::from_secs(5), |l| l == line)
                .is_some(),
            "the mark {name} was not read"
        );
    }

    /// The lines received after the mark `name`, in order.
    pub fn lines_after_mark(&self, name: &str) -> Vec<String> {
        let line = format!("TEST_MARK={name}");
        self.lines()
            .into_iter()
            .map(|(_, l)| l)
            .skip_while(|l| *l != line)
            .skip(1)
            .collect()
    }
}

/// The settings a test daemon runs with.
pub struct DaemonSetup {
    pub dir: PathBuf,
    pub state_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub namespace: String,
    pub containerd_sock: PathBuf,
    /// Merged over the base configuration.
    pub extra_config: serde_json::Value,
    pub env: Vec<(String, String)>,
    /// Runs the daemon through this wrapper (e.g. tests/harness/ro-root).
    pub wrapper: Vec<String>,
    /// runc's state root of the daemon's containers (`containers.runc_root`), under `dir`.
    pub runc_root: PathBuf,
    /// The daemon's own bridge name and subnet (`network.default_bridge`), also when the
    /// bridge is disabled: a test that enables it never meets another instance's.
    pub net: NetClaim,
}

impl DaemonSetup {
    pub fn new(harness: &Harness, test: &str) -> DaemonSetup {
        let dir = harness.test_dir(test);
        DaemonSetup {
            runc_root: dir.join("runc"),
            net: NetClaim::new(harness, &dir),
            state_dir: dir.join("state"),
            runtime_dir: dir.join("run"),
            namespace: harness.namespace(test),
            containerd_sock: harness.containerd_sock.clone(),
            extra_config: serde_json::json!({}),
            env: Vec::new(),
            wrapper: Vec::new(),
            dir,
        }
    }

    pub fn config(&self) -> serde_json::Value {
        let mut base = serde_json::json!({
            "manager": {
                "home_dir": self.state_dir,
                "exec_root_dir": self.runtime_dir,
            },
            "containers": {
                "address_path": self.containerd_sock,
                "default_ns": self.namespace,
                "runc_root": self.runc_root,
            },
            "grpc_server": { "address_path": self.runtime_dir.join("cm.sock") },
            "things": { "enable": false },
            "deployment": { "enable": false },
            // Only tests/network.rs puts containers on a bridge; whoever enables it gets the
            // daemon's own name and subnet.
            "network": { "default_bridge": {
                "disable": true,
                "name": self.net.bridge,
                "ip4": self.net.ip4(),
            } },
        });
        merge(&mut base, self.extra_config.clone());
        base
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn write_config(&self) -> PathBuf {
        let path = self.config_path();
        fs::write(&path, serde_json::to_vec_pretty(&self.config()).unwrap()).unwrap();
        path
    }

    /// Writes the configuration and starts the daemon, with stderr going to a file.
    pub fn spawn(&self, notify: Option<&NotifyListener>) -> Daemon {
        let cfg = self.write_config();
        self.spawn_with_args(notify, &["--cfg-file".into(), cfg.display().to_string()])
    }

    /// Start number `n` of this setup (a notify listener of its own: each start must say
    /// READY again); waits for READY.
    pub fn spawn_ready(&self, n: u32, timeout: Duration) -> Daemon {
        let dir = self.dir.join(format!("start-{n}"));
        fs::create_dir_all(&dir).unwrap();
        let notify = NotifyListener::new(&dir);
        let daemon = self.spawn(Some(&notify));
        assert!(notify.wait_ready(timeout), "{}", daemon.stderr());
        daemon
    }

    pub fn spawn_with_args(&self, notify: Option<&NotifyListener>, args: &[String]) -> Daemon {
        static N: AtomicU32 = AtomicU32::new(0);
        let log = self
            .dir
            .join(format!("daemon-{}.log", N.fetch_add(1, Ordering::SeqCst)));
        let mut cmd = if self.wrapper.is_empty() {
            Command::new(BIN)
        } else {
            let mut c = Command::new(&self.wrapper[0]);
            c.args(&self.wrapper[1..]).arg(BIN);
            c
        };
        cmd.arg("daemon")
            .args(args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("STATE_DIRECTORY")
            .env_remove("RUNTIME_DIRECTORY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(fs::File::create(log.with_extension("out")).unwrap())
            .stderr(fs::File::create(&log).unwrap());
        if let Some(n) = notify {
            cmd.env("NOTIFY_SOCKET", &n.path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Daemon {
            child: Some(child),
            log,
        }
    }
}

pub fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// A running daemon; killed (SIGKILL, by PID) on drop if still running.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's PID.
        unsafe {
            libc::kill(self.pid() as i32, sig);
        }
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().unwrap().try_wait().unwrap()
    }

    /// Waits for the exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_status() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn stderr(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the daemon's stderr contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Fields of /proc/<pid>/status, e.g. `CapEff`.
    pub fn proc_status(&self, field: &str) -> String {
        let text = fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid()))
            .trim()
            .to_string()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let status = self
            .wait_exit(Duration::from_secs(15))
            .expect("daemon did not stop within 15 s of SIGTERM");
        self.child = None;
        status
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs a command that must succeed (else the test fails with its output); its stdout.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `ctr` on a namespace; stdout and stderr together.
pub fn ctr(sock: &Path, ns: &str, args: &[&str]) -> String {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(sock)
        .args(["-n", ns])
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// Runs the binary as `kanto-cm` against the daemon's local API socket.
pub fn kanto_cm(api_sock: &Path, args: &[&str]) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    Command::new(BIN)
        .arg0("kanto-cm")
        .arg("--host")
        .arg(api_sock)
        .args(args)
        .output()
        .unwrap()
}

/// The task status `ctr` reports per container ID ("" for a container without a task), for
/// every container of the namespace.
pub fn ctr_tasks(sock: &Path, ns: &str) -> std::collections::BTreeMap<String, String> {
    let tasks: Vec<(String, String)> = ctr(sock, ns, &["tasks", "ls"])
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[0].to_string(), f[2].to_string()))
        })
        .collect();
    ctr(sock, ns, &["containers", "ls", "-q"])
        .lines()
        .map(|id| {
            let status = tasks
                .iter()
                .find(|(t, _)| t == id)
                .map(|(_, s)| s.clone())
                .unwrap_or_default();
            (id.to_string(), status)
        })
        .collect()
}

/// Removes every task and container of a namespace (the end of a test, also on failure).
pub fn clean_namespace(sock: &Path, ns: &str) {
    for id in ctr(sock, ns, &["tasks", "ls", "-q"]).lines() {
        ctr(sock, ns, &["tasks", "kill", "-s", "SIGKILL", id]);
    }
    // Until no killed task runs (bounded, and no panic: this also runs while unwinding);
    // `delete -f` below takes whatever is left.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && ctr_tasks(sock, ns).values().any(|s| s == "RUNNING") {
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in ctr(sock, ns, &["tasks", "ls", "-q"]).lines() {
        ctr(sock, ns, &["tasks", "delete", "-f", id]);
    }
    for id in ctr(sock, ns, &["containers", "ls", "-q"]).lines() {
        ctr(sock, ns, &["containers", "delete", id]);
    }
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `go build -o BIN PACKAGE` in `dir`, with modules and build cache under `cache` (from the
/// Go module proxy) and `GOFLAGS` `goflags`; a failed build fails the test.
pub fn go_build(dir: &Path, package: &str, bin: &Path, cache: &Path, goflags: &str, what: &str) {
    run_ok(
        Command::new("go")
            .args(["build", "-o"])
            .arg(bin)
            .arg(package)
            .current_dir(dir)
            .env("GOMODCACHE", cache.join("mod"))
            .env("GOCACHE", cache.join("cache"))
            .env("GOPATH", cache.join("path"))
            .env("GOFLAGS", goflags)
            // An older Go says so (a go.mod that asks for more) instead of fetching a toolchain.
            .env("GOTOOLCHAIN", "local"),
        what,
    );
}

/// A tonic channel to the daemon's local API over its unix socket.
pub async fn api_channel(sock: PathBuf) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_static("http://[::]")
        .connect_with_connector(tower::service_fn(move |_| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(sock).await?,
                ))
            }
        }))
        .await
        .unwrap()
}
