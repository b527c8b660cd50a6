//! The container manager on the real containerd adapter: pulls from the harness registries,
//! lifecycle, restart policies, persistence, metrics, faults. Each test has its own
//! containerd namespace and state dir; containers are removed at the end, also on failure.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Harness;
use leda_cm::config::ContainersConfig;
use leda_cm::containerd::{Client, Ctrd};
use leda_cm::manager::{Manager, ManagerError, Settings, StopOptions};
use leda_cm::model::{Container, RestartPolicyType, Status};
use leda_cm::runtime::Runtime;

struct Env {
    h: Harness,
    ns: String,
    state: std::path::PathBuf,
    sock: std::path::PathBuf,
    /// runc's state root of the test's containers: its own, under the test's dir.
    runc_root: std::path::PathBuf,
}

impl Env {
    fn new(test: &str) -> Env {
        let h = Harness::get();
        let dir = h.test_dir(test);
        Env {
            ns: h.namespace(test),
            state: dir.join("state"),
            runc_root: dir.join("runc"),
            sock: h.containerd_sock.clone(),
            h,
        }
    }

    fn containers_config(&self, extra: serde_json::Value) -> ContainersConfig {
        let mut v = serde_json::json!({
            "insecure_registries": [self.h.registry, self.h.registry_auth],
        });
        common::merge(&mut v, extra);
        serde_json::from_value(v).unwrap()
    }

    /// A containerd client on `sock` for the test's namespace and runc root.
    fn client(&self, sock: &std::path::Path) -> Client {
        let mut client = Client::lazy(sock, &self.ns);
        client.runc_root = Some(self.runc_root.display().to_string());
        client
    }

    fn manager(&self, containers: &ContainersConfig) -> Arc<Manager<Ctrd>> {
        let ctrd = Ctrd::new(self.client(&self.sock), containers).unwrap();
        Manager::new(
            ctrd,
            Settings {
                namespace: self.ns.clone(),
                state_dir: self.state.clone(),
                default_stop_timeout: Duration::from_secs(3),
                log_driver_binary: common::BIN.into(),
                // As the daemon does by default: its own threads read the tasks' fifos.
                log_capture: Some(
                    leda_cm::logs::capture::Capture::new(&self.state.with_file_name("run"))
                        .unwrap(),
                ),
                system_containers: vec![],
                image_expiry: Some(Duration::from_secs(3600)),
                trust: Default::default(),
            },
        )
    }

    fn image(&self) -> String {
        format!("{}/{}", self.h.registry, self.h.image)
    }

    fn ctr(&self, args: &[&str]) -> String {
        common::ctr(&self.sock, &self.ns, args)
    }
}

impl Drop for Env {
    /// Removes everything the test left in its namespace.
    fn drop(&mut self) {
        common::clean_namespace(&self.sock, &self.ns);
        for name in self.ctr(&["images", "ls", "-q"]).lines() {
            self.ctr(&["images", "rm", name]);
        }
    }
}

fn container(name: &str, image: &str, cmd: &[&str]) -> Container {
    serde_json::from_value(serde_json::json!({
        "container_name": name,
        "image": {"name": image},
        "config": {"cmd": cmd},
    }))
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Forwards containerd's task events to the manager, as the daemon does.
async fn pump_events(env: &Env, manager: Arc<Manager<Ctrd>>) {
    let endpoint = leda_cm::containerd::Endpoint {
        socket: env.sock.clone(),
        namespace: env.ns.clone(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let (trigger, shutdown) = leda_cm::supervisor::shutdown_channel();
    tokio::spawn(async move {
        let liveness = leda_cm::liveness::Liveness::new();
        let pulse = leda_cm::supervisor::Pulse::new(&liveness, "monitor", Duration::from_secs(1));
        let _ = leda_cm::containerd::monitor(endpoint, tx, shutdown, pulse).await;
        drop(trigger);
    });
    // Wait until subscribed, then forward in the background.
    loop {
        match rx.recv().await {
            Some(leda_cm::containerd::MonitorEvent::Up { .. }) => break,
            Some(_) => continue,
            None => panic!("monitor ended"),
        }
    }
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if let leda_cm::containerd::MonitorEvent::Runtime(ev) = e {
                let m = manager.clone();
                tokio::spawn(async move { m.on_event(ev).await });
            }
        }
    });
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn pull_create_start_stop_remove_on_real_containerd() {
    let env = Env::new("lifecycle");
    rt().block_on(async {
        let m = env.manager(&env.containers_config(serde_json::json!({})));
        let progress = Arc::new(AtomicU64::new(0));
        let p = progress.clone();
        let sink: leda_cm::runtime::ProgressFn =
            Arc::new(move |pr| p.store(pr.done, Ordering::Relaxed));
        let c = m
            .create(
                container("web", &env.image(), &["sh", "-c", "echo hello; sleep 600"]),
                Some(sink),
            )
            .await
            .unwrap();
        assert!(
            progress.load(Ordering::Relaxed) > 0,
            "no pull progress reported"
        );
        let id = c.container_id.clone();
        // containerd sees a normal, unpacked image and our container.
        let images = env.ctr(&["images", "ls"]);
        assert!(images.contains(&env.image()), "{images}");
        assert!(env.ctr(&["containers", "ls", "-q"]).contains(&id));
        // Record persisted in Kanto's format.
        let record: serde_json::Value = serde_json::from_slice(
            &std::fs::read(env.state.join("containers").join(&id).join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(record["container_name"], "web");
        assert_eq!(record["state"]["status"], 1);

        let started = m.start(&id).await.unwrap();
        let tasks = env.ctr(&["tasks", "ls"]);
        assert!(tasks.contains(&id) && tasks.contains("RUNNING"), "{tasks}");
        assert!(tasks.contains(&started.state.pid.to_string()), "{tasks}");

        let metrics = m.metrics(&id).await.unwrap();
        assert!(metrics.pids >= 1, "{metrics:?}");
        assert!(metrics.memory_used > 0, "{metrics:?}");

        let t0 = Instant::now();
        let stopped = m.stop(&id, StopOptions::default()).await.unwrap();
        // `sleep` as PID 1 ignores SIGTERM: killed after the 3 s timeout.
        assert!(t0.elapsed() >= Duration::from_secs(3), "{:?}", t0.elapsed());
        assert_eq!(stopped.state.status, Status::Stopped);
        assert_eq!(stopped.state.exit_code, 137);

        m.remove(&id, false).await.unwrap();
        assert!(!env.ctr(&["containers", "ls", "-q"]).contains(&id));
        assert!(!env.state.join("containers").join(&id).exists());
        let snapshots = env.ctr(&["snapshots", "ls"]);
        assert!(!snapshots.contains(&id), "{snapshots}");
    });
}

#[test]
fn ctr_can_run_the_image_leda_cm_pulled_through_basic_auth() {
    let env = Env::new("authpull");
    rt().block_on(async {
        let creds = serde_json::json!({"registry_configurations": {
            env.h.registry_auth.clone(): {"credentials": {"user_id": env.h.registry_user, "password": env.h.registry_pass}}
        }});
        let m = env.manager(&env.containers_config(creds));
        let image = format!("{}/{}", env.h.registry_auth, env.h.image);
        let info = m.ensure_image(&image, None).await.unwrap();
        assert!(info.digest.starts_with("sha256:"));
        let out = env.ctr(&["run", "--rm", &image, "ctr-run-check", "echo", "ran-by-ctr"]);
        assert!(out.contains("ran-by-ctr"), "{out}");
    });
}

#[test]
fn registry_faults_fail_the_create_and_leave_nothing_behind() {
    let env = Env::new("faults");
    rt().block_on(async {
        let wrong = serde_json::json!({"registry_configurations": {
            env.h.registry_auth.clone(): {"credentials": {"user_id": env.h.registry_user, "password": "wrong-password"}}
        }});
        let m = env.manager(&env.containers_config(wrong));
        let closed = format!("127.0.0.1:{}/x/y:1", free_port());
        let cases = [
            (format!("{}/leda/nope:1.0", env.h.registry), "not found"),
            (format!("{}/{}", env.h.registry_auth, env.h.image), "refused access"),
            (closed, "unreachable"),
        ];
        for (image, expected) in cases {
            let err = m.create(container("x", &image, &["true"]), None).await.unwrap_err();
            let text = err.to_string();
            assert!(text.contains(expected), "{image}: {text}");
            assert!(!text.contains("wrong-password"), "{text}");
            assert!(m.list().is_empty());
            assert_eq!(env.ctr(&["containers", "ls", "-q"]).trim(), "");
            assert!(!env.ctr(&["snapshots", "ls"]).contains("x"));
        }
        let err = m
            .create(container("bad name!", &env.image(), &["true"]), None)
            .await
            .unwrap_err();
        assert!(matches!(err, ManagerError::Invalid(_)), "{err}");
        assert_eq!(env.ctr(&["images", "ls", "-q"]).trim(), "", "validation touched containerd");
    });
}

#[test]
fn on_failure_max_three_is_restarted_exactly_three_times() {
    let env = Env::new("onfailure");
    rt().block_on(async {
        let m = env.manager(&env.containers_config(serde_json::json!({})));
        pump_events(&env, m.clone()).await;
        let mut c = container("flaky", &env.image(), &["sh", "-c", "exit 1"]);
        c.host_config.restart_policy.policy_type = RestartPolicyType::OnFailure;
        c.host_config.restart_policy.maximum_retry_count = 3;
        let id = m.create(c, None).await.unwrap().container_id;
        m.start(&id).await.unwrap();
        wait_until(
            "three restarts and a final exit",
            Duration::from_secs(20),
            || {
                let c = m.get(&id).unwrap();
                c.restart_count == 3 && c.state.status == Status::Exited && !c.state.restarting
            },
        )
        .await;
        // And no fourth restart comes later: the restart decision is taken with the exit,
        // under the container's lock, and shows in the same committed state as `restarting`
        // (before any back-off). Exited and not restarting is the decision not to restart.
        let c = m.get(&id).unwrap();
        assert_eq!(
            (c.restart_count, c.state.status, c.state.exit_code),
            (3, Status::Exited, 1)
        );
        m.remove(&id, true).await.unwrap();
    });
}

#[test]
fn a_new_manager_adopts_running_tasks_without_restarting_them() {
    let env = Env::new("adopt");
    rt().block_on(async {
        let cfg = env.containers_config(serde_json::json!({}));
        let m = env.manager(&cfg);
        let id = m
            .create(container("keep", &env.image(), &["sleep", "600"]), None)
            .await
            .unwrap()
            .container_id;
        let pid = m.start(&id).await.unwrap().state.pid;
        drop(m);
        let again = env.manager(&cfg);
        again.reconcile().await.unwrap();
        let c = again.get(&id).unwrap();
        assert!(c.state.running);
        assert_eq!(c.state.pid, pid);
        assert_eq!(
            again.runtime().task(&id).await.unwrap().unwrap().pid as i64,
            pid
        );
        again.remove(&id, true).await.unwrap();
    });
}

#[test]
fn exits_and_ooms_are_recorded() {
    let env = Env::new("oom");
    rt().block_on(async {
        let m = env.manager(&env.containers_config(serde_json::json!({})));
        pump_events(&env, m.clone()).await;
        let mut c = container(
            "hog",
            &env.image(),
            &["sh", "-c", "x=a; while true; do x=$x$x; done"],
        );
        c.host_config.restart_policy.policy_type = RestartPolicyType::No;
        c.host_config.resources = Some(leda_cm::model::Resources {
            memory: "8M".into(),
            memory_swap: "8M".into(),
            ..Default::default()
        });
        let id = m.create(c, None).await.unwrap().container_id;
        m.start(&id).await.unwrap();
        wait_until("the OOM kill", Duration::from_secs(30), || {
            m.get(&id).unwrap().state.status == Status::Exited
        })
        .await;
        let c = m.get(&id).unwrap();
        assert!(c.state.oom_killed, "{:?}", c.state);
        assert_eq!(c.state.exit_code, 137);
        assert!(!c.state.finished_at.is_empty());
        m.remove(&id, false).await.unwrap();
    });
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_multi_arch_index_runs_the_manifest_of_this_machine() {
    let env = Env::new("multiarch");
    rt().block_on(async {
        let m = env.manager(&env.containers_config(serde_json::json!({})));
        let image = format!("{}/{}", env.h.registry, var("LEDA_TEST_MULTI_IMAGE"));
        let mut c = container("multi", &image, &[]);
        c.config.cmd.clear();
        c.host_config.restart_policy.policy_type = RestartPolicyType::No;
        let id = m.create(c, None).await.unwrap().container_id;
        // The image record is the index itself; the unpacked manifest is the amd64 one.
        let images = env.ctr(&["images", "ls"]);
        assert!(
            images.contains("application/vnd.oci.image.index.v1+json"),
            "{images}"
        );
        m.start(&id).await.unwrap();
        let m2 = m.clone();
        wait_until_async("the container to exit", Duration::from_secs(10), || {
            let m = m2.clone();
            let id = id.clone();
            async move {
                m.runtime()
                    .task(&id)
                    .await
                    .unwrap()
                    .is_some_and(|t| t.status == leda_cm::runtime::TaskStatus::Stopped)
            }
        })
        .await;
        let (logs, _) = m.logs(&id, None).await.unwrap();
        let text: String = logs.iter().map(|e| e.log.clone()).collect();
        assert_eq!(text, "platform=amd64\n", "picked the wrong manifest");
        m.remove(&id, true).await.unwrap();
    });
}

#[test]
fn logs_are_json_lines_and_tail_reads_back() {
    let env = Env::new("logs");
    rt().block_on(async {
        let m = env.manager(&env.containers_config(serde_json::json!({})));
        let mut c = container(
            "talker",
            &env.image(),
            &[
                "sh",
                "-c",
                "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; sleep 600",
            ],
        );
        c.host_config.log_config.driver_config.max_size = "1k".into();
        let id = m.create(c, None).await.unwrap().container_id;
        let err = m.logs(&id, None).await.unwrap_err().to_string();
        assert!(
            err.contains("there are no logs for container with status \"Created\""),
            "{err}"
        );
        m.start(&id).await.unwrap();
        let m2 = m.clone();
        let id2 = id.clone();
        wait_until_async("six log lines", Duration::from_secs(10), || {
            let m = m2.clone();
            let id = id2.clone();
            async move {
                m.logs(&id, None)
                    .await
                    .map(|(l, _)| l.len() >= 6)
                    .unwrap_or(false)
            }
        })
        .await;
        let (tail, _) = m.logs(&id, Some(2)).await.unwrap();
        let got: Vec<_> = tail.iter().map(|e| (e.stream, e.log.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (leda_cm::logs::Stream::Stdout, "line5\n"),
                (leda_cm::logs::Stream::Stderr, "oops\n")
            ]
        );
        let file = std::fs::read_to_string(env.state.join("containers").join(&id).join("json.log"))
            .unwrap();
        let first: serde_json::Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
        assert_eq!(first["log"], "line1\n");
        assert_eq!(first["stream"], "stdout");
        assert!(first["time"].as_str().unwrap().ends_with('Z'));
        m.remove(&id, true).await.unwrap();
    });
}

#[test]
fn containerd_away_means_unavailable_errors_and_running_containers_survive() {
    let env = Env::new("ctrdaway");
    let dir = env.h.test_dir("ctrdaway-containerd");
    let ctrd = common::PrivateContainerd::start(&env.h, &dir);
    let sock = ctrd.socket();
    rt().block_on(async {
        let ctrd_client = env.client(&sock);
        let m = Manager::new(
            Ctrd::new(ctrd_client, &env.containers_config(serde_json::json!({}))).unwrap(),
            Settings {
                namespace: env.ns.clone(),
                state_dir: env.state.clone(),
                default_stop_timeout: Duration::from_secs(3),
                log_driver_binary: common::BIN.into(),
                log_capture: None,
                system_containers: vec![],
                image_expiry: None,
                trust: Default::default(),
            },
        );
        let id = m
            .create(container("survivor", &env.image(), &["sleep", "600"]), None)
            .await
            .unwrap()
            .container_id;
        let pid = m.start(&id).await.unwrap().state.pid;

        ctrd.stop_daemon_only();
        let err = m
            .create(container("late", &env.image(), &["true"]), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("containerd unavailable"), "{err}");
        let err = m.stop(&id, StopOptions::default()).await.unwrap_err();
        assert!(err.to_string().contains("containerd unavailable"), "{err}");
        // The container itself runs on without containerd.
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

        ctrd.restart_daemon();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match m.reconcile().await {
                Ok(()) => break,
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "containerd did not come back: {e}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let c = m.get(&id).unwrap();
        assert!(c.state.running);
        assert_eq!(c.state.pid, pid);
        m.remove(&id, true).await.unwrap();
    });
    drop(ctrd);
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run under tests/harness/run"))
}

async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_blob_that_does_not_match_its_digest_fails_the_pull_and_nothing_remains() {
    let env = Env::new("digest");
    // An image of its own (its layer is unique), whose layer the registry then corrupts.
    let images = env.h.test_dir("digest-image");
    let reference = format!("{}/leda/corrupt:1.0", env.h.registry);
    env.h.lib(&format!(
        "harness_build_image '{d}' corrupt amd64 /bin/sh && harness_push '{d}' corrupt '{reference}'",
        d = images.display()
    ));
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(images.join("oci/index.json")).unwrap()).unwrap();
    let manifest_digest = layout["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(images.join("oci/blobs/sha256").join(&manifest_digest)).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let stored = env
        .h
        .workdir
        .join("registry/data/docker/registry/v2/blobs/sha256")
        .join(&layer[..2])
        .join(&layer)
        .join("data");
    let mut bytes = std::fs::read(&stored).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();

    rt().block_on(async {
        let m = env.manager(&env.containers_config(serde_json::json!({})));
        let err = m
            .create(container("x", &reference, &["true"]), None)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("digest mismatch"), "{err}");
        assert!(m.list().is_empty());
        assert_eq!(env.ctr(&["containers", "ls", "-q"]).trim(), "");
        assert_eq!(env.ctr(&["images", "ls", "-q"]).trim(), "");
        assert!(
            !env.ctr(&["content", "ls"]).contains(&layer),
            "the corrupt layer was kept"
        );
    });
}
