//! An in-memory `Runtime` for the manager's unit tests: it records every call and lets the
//! test decide how tasks end. (The integration tests use real containerd.)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::runtime::{
    CreateRequest, ExitInfo, ImageInfo, Metrics, ProgressFn, Runtime, RuntimeContainer,
    RuntimeError, TaskInfo, TaskIo, TaskStatus,
};
use crate::spec::ImageProcess;
use crate::trust::{Signature, SignatureKind};

#[derive(Debug, Default)]
pub struct State {
    pub images: BTreeMap<String, ImageInfo>,
    /// Images a pull can fetch.
    pub registry: Vec<String>,
    pub containers: BTreeMap<String, CreateRequest>,
    pub tasks: BTreeMap<String, TaskInfo>,
    pub calls: Vec<String>,
    pub next_pid: u32,
    /// Exit code a task gets when it is killed with SIGTERM (None: it ignores SIGTERM).
    pub term_exit: Option<u32>,
    pub fail_create: bool,
    /// Tasks of containers made from this image fail to start.
    pub fail_start_image: Option<String>,
    /// Work snapshots an earlier run left (what `sweep_leftovers` removes).
    pub leftovers: Vec<String>,
    /// The state dir whose record of a container `create` reads when called: what was
    /// durable before containerd was asked (the record's status, in `records_at_create`).
    pub records_dir: Option<std::path::PathBuf>,
    pub records_at_create: Vec<String>,
    pub fail_remove: bool,
    /// What the registry holds as signatures, by image digest.
    pub signatures: BTreeMap<String, Vec<Signature>>,
    /// Exit status of an exec, by its first argument (else 0).
    pub exec_exits: BTreeMap<String, u32>,
}

#[derive(Clone, Default)]
pub struct FakeRuntime {
    pub state: Arc<Mutex<State>>,
    exited: Arc<Notify>,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        let f = FakeRuntime::default();
        {
            let mut s = f.state();
            s.next_pid = 100;
            s.term_exit = Some(0);
        }
        f
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn with_image(self, name: &str) -> FakeRuntime {
        self.state().images.insert(name.into(), image(name));
        self
    }

    pub fn in_registry(self, name: &str) -> FakeRuntime {
        self.state().registry.push(name.into());
        self
    }

    pub fn calls(&self, prefix: &str) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|c| c.starts_with(prefix))
            .count()
    }

    /// Ends the task of `id` as if its process exited with `code`.
    pub fn exit(&self, id: &str, code: u32) -> u32 {
        let mut s = self.state();
        let t = s.tasks.get_mut(id).expect("no task");
        t.status = TaskStatus::Stopped;
        t.exit_status = code;
        t.exited_at = Some(SystemTime::now());
        let pid = t.pid;
        drop(s);
        self.exited.notify_waiters();
        pid
    }

    fn call(&self, what: String) {
        self.state().calls.push(what);
    }
}

pub fn image(name: &str) -> ImageInfo {
    ImageInfo {
        name: name.into(),
        digest: format!("sha256:{:0>64}", name.len()),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 400,
        process: ImageProcess {
            env: vec!["PATH=/bin".into()],
            entrypoint: vec![],
            cmd: vec!["/bin/sh".into()],
            working_dir: String::new(),
            user: String::new(),
        },
        top_layer: "sha256:top".into(),
    }
}

impl Runtime for FakeRuntime {
    async fn image(&self, name: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.call(format!("image {name}"));
        Ok(self.state().images.get(name).cloned())
    }

    async fn pull(
        &self,
        name: &str,
        progress: Option<ProgressFn>,
    ) -> Result<ImageInfo, RuntimeError> {
        self.call(format!("pull {name}"));
        let mut s = self.state();
        if !s.registry.iter().any(|r| r == name) {
            return Err(RuntimeError::Pull {
                image: name.into(),
                reason: format!("image {name} not found"),
            });
        }
        if let Some(p) = progress {
            p(crate::runtime::Progress {
                done: 10,
                total: 10,
            });
        }
        let i = image(name);
        s.images.insert(name.into(), i.clone());
        Ok(i)
    }

    async fn remote_digest(&self, name: &str) -> Result<String, RuntimeError> {
        Ok(image(name).digest)
    }

    async fn signatures(
        &self,
        name: &str,
        digest: &str,
        kind: SignatureKind,
    ) -> Result<Vec<Signature>, RuntimeError> {
        self.call(format!("signatures {} {name}", kind.name()));
        Ok(self
            .state()
            .signatures
            .get(digest)
            .cloned()
            .unwrap_or_default())
    }

    async fn images(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.state().images.keys().cloned().collect())
    }

    async fn remove_image(&self, name: &str) -> Result<(), RuntimeError> {
        self.call(format!("remove_image {name}"));
        self.state().images.remove(name);
        Ok(())
    }

    async fn create(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        self.call(format!("create {}", req.id));
        let mut s = self.state();
        if let Some(dir) = &s.records_dir {
            let path = dir.join("containers").join(&req.id).join("config.json");
            let seen = match std::fs::read(&path) {
                Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
                    .map(|v| match v["state"]["status"].as_i64() {
                        Some(code) => crate::model::Status::from_code(code).name().to_string(),
                        None => format!("status {}", v["state"]["status"]),
                    })
                    .unwrap_or_else(|e| format!("unreadable: {e}")),
                Err(_) => "no record".to_string(),
            };
            s.records_at_create.push(seen);
        }
        if s.fail_create {
            return Err(RuntimeError::Call {
                call: "container create",
                message: "boom".into(),
            });
        }
        if s.containers.contains_key(&req.id) {
            return Err(RuntimeError::AlreadyExists {
                what: req.id.clone(),
            });
        }
        s.containers.insert(req.id.clone(), req.clone());
        Ok(())
    }

    async fn create_task(&self, id: &str, io: &TaskIo) -> Result<u32, RuntimeError> {
        self.call(format!("start {id}"));
        let mut s = self.state();
        if !s.containers.contains_key(id) {
            return Err(RuntimeError::NotFound {
                what: format!("container {id}"),
            });
        }
        s.next_pid += 1;
        let pid = s.next_pid;
        s.tasks.insert(
            id.into(),
            TaskInfo {
                pid,
                status: TaskStatus::Created,
                exit_status: 0,
                exited_at: None,
                stdout: io.stdout.clone(),
            },
        );
        Ok(pid)
    }

    async fn start_created(&self, id: &str) -> Result<(), RuntimeError> {
        let mut s = self.state();
        if s.fail_start_image.is_some()
            && s.containers.get(id).map(|r| &r.image) == s.fail_start_image.as_ref()
        {
            s.tasks.remove(id);
            return Err(RuntimeError::Call {
                call: "task start",
                message: "exec: /bin/app: no such file".into(),
            });
        }
        match s.tasks.get_mut(id) {
            Some(t) => {
                t.status = TaskStatus::Running;
                Ok(())
            }
            None => Err(RuntimeError::NotFound {
                what: format!("task {id}"),
            }),
        }
    }

    async fn kill(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        self.call(format!("kill {id} {signal}"));
        let term_exit = self.state().term_exit;
        let code = match signal {
            9 => Some(137),
            _ => term_exit,
        };
        if let Some(code) = code {
            if self.state().tasks.contains_key(id) {
                self.exit(id, code);
            }
        }
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<ExitInfo, RuntimeError> {
        loop {
            let notified = self.exited.notified();
            {
                let s = self.state();
                match s.tasks.get(id) {
                    None => return Err(RuntimeError::NotFound { what: id.into() }),
                    Some(t) if t.status == TaskStatus::Stopped => {
                        return Ok(ExitInfo {
                            exit_status: t.exit_status,
                            exited_at: t.exited_at,
                        })
                    }
                    Some(_) => {}
                }
            }
            notified.await;
        }
    }

    /// The exit status `exec_exits` gives the command's first argument (default 0).
    async fn exec(
        &self,
        id: &str,
        _exec_id: &str,
        args: &[String],
        _timeout: std::time::Duration,
    ) -> Result<u32, RuntimeError> {
        self.call(format!("exec {id} {}", args.join(" ")));
        let s = self.state();
        if !s
            .tasks
            .get(id)
            .is_some_and(|t| t.status == TaskStatus::Running)
        {
            return Err(RuntimeError::NotFound {
                what: format!("task {id}"),
            });
        }
        Ok(args
            .first()
            .and_then(|a| s.exec_exits.get(a).copied())
            .unwrap_or(0))
    }

    async fn delete_task(&self, id: &str) -> Result<Option<ExitInfo>, RuntimeError> {
        self.call(format!("delete_task {id}"));
        Ok(self.state().tasks.remove(id).map(|t| ExitInfo {
            exit_status: t.exit_status,
            exited_at: t.exited_at,
        }))
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.call(format!("pause {id}"));
        if let Some(t) = self.state().tasks.get_mut(id) {
            t.status = TaskStatus::Paused;
        }
        Ok(())
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.call(format!("resume {id}"));
        if let Some(t) = self.state().tasks.get_mut(id) {
            t.status = TaskStatus::Running;
        }
        Ok(())
    }

    async fn task(&self, id: &str) -> Result<Option<TaskInfo>, RuntimeError> {
        Ok(self.state().tasks.get(id).cloned())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.call(format!("remove {id}"));
        let mut s = self.state();
        if s.fail_remove {
            return Err(RuntimeError::Call {
                call: "container delete",
                message: "boom".into(),
            });
        }
        s.tasks.remove(id);
        s.containers.remove(id);
        Ok(())
    }

    async fn sweep_leftovers(&self, keep: &[String]) -> Result<Vec<String>, RuntimeError> {
        self.call(format!("sweep keeping {}", keep.len()));
        let mut s = self.state();
        let stale: Vec<String> = s
            .leftovers
            .iter()
            .filter(|k| !keep.contains(k))
            .cloned()
            .collect();
        s.leftovers.retain(|k| keep.contains(k));
        Ok(stale.into_iter().map(|k| format!("snapshot {k}")).collect())
    }

    async fn list(&self) -> Result<Vec<RuntimeContainer>, RuntimeError> {
        let s = self.state();
        Ok(s.containers
            .values()
            .map(|c| RuntimeContainer {
                id: c.id.clone(),
                image: c.image.clone(),
                task: s.tasks.get(&c.id).cloned(),
                managed_name: c
                    .labels
                    .iter()
                    .find(|(k, _)| k == crate::runtime::MANAGED_LABEL)
                    .map(|(_, v)| v.clone()),
            })
            .collect())
    }

    async fn metrics(&self, _id: &str) -> Result<Metrics, RuntimeError> {
        Ok(Metrics {
            pids: 1,
            ..Default::default()
        })
    }

    async fn all_metrics(&self) -> Result<Vec<(String, Metrics)>, RuntimeError> {
        let ids: Vec<String> = self.state().tasks.keys().cloned().collect();
        let mut out = Vec::new();
        for id in ids {
            out.push((id.clone(), self.metrics(&id).await?));
        }
        Ok(out)
    }

    async fn update_resources(
        &self,
        id: &str,
        _spec: &serde_json::Value,
    ) -> Result<(), RuntimeError> {
        self.call(format!("update_resources {id}"));
        Ok(())
    }
}

/// A fresh state dir for one test.
pub fn state_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "leda-cm-mgr-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A manager on `rt` with `sua` as its system container.
pub fn manager(rt: FakeRuntime, dir: &Path) -> Arc<super::Manager<FakeRuntime>> {
    super::Manager::new(
        rt,
        super::Settings {
            namespace: "test".into(),
            state_dir: dir.to_path_buf(),
            default_stop_timeout: std::time::Duration::from_secs(2),
            log_driver_binary: "/usr/bin/leda-cm".into(),
            log_capture: None,
            system_containers: vec!["sua".into()],
            image_expiry: Some(std::time::Duration::from_secs(3600)),
            trust: Default::default(),
        },
    )
}

/// Runs `f` on a current-thread runtime with paused time.
pub fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(f)
}

/// A bridge without plugins: hands out 10.0.0.2, .3, … (or the address asked for when it
/// is free), records every call with the task's status at the time.
pub struct FakeNetwork {
    pub rt: FakeRuntime,
    pub bridge: crate::network::Bridge,
    pub calls: Mutex<Vec<String>>,
    /// Address → container ID.
    pub leases: Mutex<BTreeMap<String, String>>,
    pub fail_attach: Mutex<bool>,
    /// While set, `detach` waits (on the blocking pool) before it does anything.
    pub stall_detach: std::sync::atomic::AtomicBool,
}

impl FakeNetwork {
    pub fn new(rt: FakeRuntime) -> Arc<FakeNetwork> {
        let cfg = crate::config::BridgeConfig {
            ip4: "10.0.0.1/24".into(),
            ..Default::default()
        };
        Arc::new(FakeNetwork {
            rt,
            bridge: crate::network::resolve_bridge(&cfg, &[], None).unwrap(),
            calls: Mutex::new(Vec::new()),
            leases: Mutex::new(BTreeMap::new()),
            fail_attach: Mutex::new(false),
            stall_detach: Default::default(),
        })
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl crate::network::Network for FakeNetwork {
    fn bridge(&self) -> &crate::network::Bridge {
        &self.bridge
    }

    fn choose_ports(
        &self,
        requests: &[crate::network::PortRequest],
        taken: &[crate::network::PortEntry],
    ) -> Result<Vec<crate::network::PortEntry>, crate::network::NetworkError> {
        requests
            .iter()
            .map(|r| {
                let port = r.host_ports.0;
                if taken.iter().any(|t| {
                    crate::network::ports_clash(
                        &r.host_ip,
                        &r.protocol,
                        port,
                        &t.host_ip,
                        &t.protocol,
                        t.host_port,
                    )
                }) {
                    return Err(crate::network::NetworkError::PortInUse {
                        port,
                        proto: r.protocol.clone(),
                        host_ip: r.host_ip.clone(),
                    });
                }
                Ok(crate::network::PortEntry {
                    host_port: port,
                    container_port: r.container_port,
                    protocol: r.protocol.clone(),
                    host_ip: r.host_ip.clone(),
                })
            })
            .collect()
    }

    fn attach(
        &self,
        id: &str,
        pid: u32,
        wanted_ip: Option<std::net::Ipv4Addr>,
        ports: &[crate::network::PortEntry],
    ) -> Result<crate::network::Attachment, crate::network::NetworkError> {
        let status = self.rt.state().tasks.get(id).map(|t| t.status);
        self.calls.lock().unwrap().push(format!(
            "attach {id} pid {pid} wanted {wanted_ip:?} task {status:?}"
        ));
        if *self.fail_attach.lock().unwrap() {
            return Err(crate::network::NetworkError::PluginMissing {
                plugin: "bridge".into(),
                dirs: "/nowhere".into(),
            });
        }
        let mut leases = self.leases.lock().unwrap();
        let ip = wanted_ip
            .map(|w| w.to_string())
            .filter(|w| !leases.contains_key(w))
            .unwrap_or_else(|| {
                (2..255)
                    .map(|n| format!("10.0.0.{n}"))
                    .find(|a| !leases.contains_key(a))
                    .unwrap()
            });
        leases.insert(ip.clone(), id.to_string());
        Ok(crate::network::Attachment {
            network: self.bridge.name.clone(),
            ip,
            prefix: 24,
            gateway: "10.0.0.1".into(),
            mac: "02:00:00:00:00:01".into(),
            host_veth: format!("veth{pid}"),
            ports: ports.to_vec(),
            result: serde_json::json!({"fake": true}),
        })
    }

    fn hold(&self, id: &str, pid: u32) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("hold {id} pid {pid}"));
    }

    fn detach(
        &self,
        id: &str,
        _att: &crate::network::Attachment,
    ) -> Result<(), crate::network::NetworkError> {
        while self.stall_detach.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.calls.lock().unwrap().push(format!("detach {id}"));
        self.leases.lock().unwrap().retain(|_, owner| owner != id);
        Ok(())
    }

    fn allocations(&self) -> Vec<(String, String)> {
        self.leases
            .lock()
            .unwrap()
            .iter()
            .map(|(ip, id)| (ip.clone(), id.clone()))
            .collect()
    }

    fn iface_addr(&self, name: &str) -> Option<std::net::Ipv4Addr> {
        (name == "eth0").then(|| std::net::Ipv4Addr::new(192, 168, 1, 10))
    }
}

/// A manager on `rt` with bridge networking through `net`.
pub fn manager_with_network(
    rt: FakeRuntime,
    net: Arc<FakeNetwork>,
    dir: &Path,
) -> Arc<super::Manager<FakeRuntime>> {
    let m = manager(rt.clone(), dir);
    let settings = m.settings().clone();
    drop(m);
    super::Manager::with_network(rt, settings, Some(net))
}
