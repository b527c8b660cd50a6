//! Live restore through the real daemon: containers keep running when the daemon is killed,
//! and the restarted daemon adopts them (same PIDs) and restarts only those that died.

mod common;

use std::time::{Duration, Instant};

use common::{DaemonSetup, Harness, NotifyListener};
use leda_cm::config::ContainersConfig;
use leda_cm::containerd::{Client, Ctrd};
use leda_cm::manager::{Manager, Settings};
use leda_cm::model::Container;

fn record(setup: &DaemonSetup, id: &str) -> serde_json::Value {
    let path = setup
        .state_dir
        .join("containers")
        .join(id)
        .join("config.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// A manager on the harness's containerd for `setup`'s namespace, state dir and runc root
/// (the ones the daemon started later is configured with).
fn manager_for(h: &Harness, setup: &DaemonSetup) -> std::sync::Arc<Manager<Ctrd>> {
    let containers: ContainersConfig =
        serde_json::from_value(serde_json::json!({"insecure_registries": [h.registry]})).unwrap();
    let mut client = Client::lazy(&h.containerd_sock, &setup.namespace);
    client.runc_root = Some(setup.runc_root.display().to_string());
    Manager::new(
        Ctrd::new(client, &containers).unwrap(),
        Settings {
            namespace: setup.namespace.clone(),
            state_dir: setup.state_dir.clone(),
            default_stop_timeout: Duration::from_secs(3),
            log_driver_binary: common::BIN.into(),
            log_capture: None,
            system_containers: vec![],
            image_expiry: None,
            trust: Default::default(),
        },
    )
}

fn ctr(h: &Harness, ns: &str, args: &[&str]) -> String {
    common::ctr(&h.containerd_sock, ns, args)
}

struct Cleanup<'a>(&'a Harness, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        common::clean_namespace(&self.0.containerd_sock, &self.1);
    }
}

#[test]
fn kill_9_of_the_daemon_keeps_containers_and_restart_adopts_them() {
    let h = Harness::get();
    let setup = DaemonSetup::new(&h, "restore");
    let _cleanup = Cleanup(&h, setup.namespace.clone());
    let image = format!("{}/{}", h.registry, h.image);

    // Two running containers, made before any daemon runs (same state dir and namespace).
    let (keep, dies) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let m = manager_for(&h, &setup);
            let mut ids = Vec::new();
            for name in ["keep", "dies"] {
                let c: Container = serde_json::from_value(serde_json::json!({
                    "container_name": name, "image": {"name": image}, "config": {"cmd": ["sleep", "600"]}
                }))
                .unwrap();
                let id = m.create(c, None).await.unwrap().container_id;
                m.start(&id).await.unwrap();
                ids.push(id);
            }
            (ids[0].clone(), ids[1].clone())
        });
    let pid_keep = record(&setup, &keep)["state"]["pid"].as_i64().unwrap();
    let pid_dies = record(&setup, &dies)["state"]["pid"].as_i64().unwrap();

    let notify = NotifyListener::new(&setup.dir);
    let mut daemon = setup.spawn(Some(&notify));
    assert!(
        notify.wait_ready(Duration::from_secs(15)),
        "{}",
        daemon.stderr()
    );
    assert_eq!(record(&setup, &keep)["state"]["pid"], pid_keep);
    assert_eq!(record(&setup, &dies)["state"]["pid"], pid_dies);

    daemon.signal(libc::SIGKILL);
    daemon
        .wait_exit(Duration::from_secs(5))
        .expect("kill -9 did not end the daemon");
    // Containers outlive the daemon; one dies meanwhile.
    assert!(std::path::Path::new(&format!("/proc/{pid_keep}")).exists());
    ctr(
        &h,
        &setup.namespace,
        &["tasks", "kill", "-s", "SIGKILL", &dies],
    );
    // Dead before the next daemon looks: containerd reports the task stopped.
    let deadline = Instant::now() + Duration::from_secs(10);
    while common::ctr_tasks(&h.containerd_sock, &setup.namespace)
        .get(&dies)
        .map(String::as_str)
        != Some("STOPPED")
    {
        assert!(
            Instant::now() < deadline,
            "the task of {dies} did not stop: {:?}",
            common::ctr_tasks(&h.containerd_sock, &setup.namespace)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let notify2 = {
        let d = setup.dir.join("second");
        std::fs::create_dir_all(&d).unwrap();
        NotifyListener::new(&d)
    };
    let daemon = setup.spawn(Some(&notify2));
    assert!(
        notify2.wait_ready(Duration::from_secs(15)),
        "{}",
        daemon.stderr()
    );
    let kept = record(&setup, &keep);
    assert_eq!(
        kept["state"]["pid"], pid_keep,
        "the live container was not adopted as it was"
    );
    assert_eq!(kept["state"]["running"], true);
    assert!(std::path::Path::new(&format!("/proc/{pid_keep}")).exists());
    let restarted = record(&setup, &dies);
    assert_eq!(restarted["state"]["running"], true, "{restarted}");
    let new_pid = restarted["state"]["pid"].as_i64().unwrap();
    assert_ne!(new_pid, pid_dies);
    let tasks = ctr(&h, &setup.namespace, &["tasks", "ls"]);
    assert!(
        tasks.contains(&new_pid.to_string()) && tasks.contains(&pid_keep.to_string()),
        "{tasks}"
    );
    assert!(
        daemon
            .stderr()
            .contains(&format!("container {dies} (dies): Exited")),
        "{}",
        daemon.stderr()
    );
    assert!(daemon.stop().success());
    // SIGTERM does not stop containers (Kanto does; leda-cm keeps them running).
    assert!(std::path::Path::new(&format!("/proc/{pid_keep}")).exists());
}

/// The intents of a create and a removal that a crash cut short, and the leases and work
/// snapshots an earlier run left: the next start rolls back the create, finishes the
/// removal and sweeps what is labelled as an earlier run's, leaving everything else alone.
#[test]
fn interrupted_creates_and_removals_and_an_earlier_runs_leftovers_are_cleaned_at_start() {
    let h = Harness::get();
    let setup = DaemonSetup::new(&h, "intents");
    let _cleanup = Cleanup(&h, setup.namespace.clone());
    let image = format!("{}/{}", h.registry, h.image);
    let ns = setup.namespace.clone();

    let (creating, removing) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let m = manager_for(&h, &setup);
            let mut ids = Vec::new();
            for name in ["creating", "removing"] {
                let c: Container = serde_json::from_value(serde_json::json!({
                    "container_name": name, "image": {"name": image},
                    "config": {"cmd": ["sleep", "600"]},
                    "host_config": {"restart_policy": {"type": "always"}}
                }))
                .unwrap();
                ids.push(m.create(c, None).await.unwrap().container_id);
            }
            m.start(&ids[1]).await.unwrap();
            (ids[0].clone(), ids[1].clone())
        });
    // What a crash leaves: the create's intent after containerd made the container, the
    // removal's intent before anything was taken down.
    let path = |id: &str| {
        setup
            .state_dir
            .join("containers")
            .join(id)
            .join("config.json")
    };
    let mut c = record(&setup, &creating);
    c["state"]["status"] = 0.into(); // Creating
    std::fs::write(path(&creating), serde_json::to_vec(&c).unwrap()).unwrap();
    let mut r = record(&setup, &removing);
    r["leda_cm"]["removing"] = true.into();
    std::fs::write(path(&removing), serde_json::to_vec(&r).unwrap()).unwrap();
    let pid = r["state"]["pid"].as_i64().unwrap();
    // An earlier run's lease and work snapshot, and look-alikes that are not leda-cm's.
    ctr(
        &h,
        &ns,
        &[
            "leases",
            "create",
            "--id",
            "leda-cm-earlier",
            "io.leda-cm.instance=gone",
        ],
    );
    ctr(&h, &ns, &["leases", "create", "--id", "leda-cm-unlabelled"]);
    ctr(&h, &ns, &["snapshots", "prepare", "leftover-work"]);
    ctr(
        &h,
        &ns,
        &[
            "snapshots",
            "label",
            "leftover-work",
            "io.leda-cm.instance=gone",
        ],
    );
    ctr(&h, &ns, &["snapshots", "prepare", "someone-elses"]);
    let ctr_has = |what: &[&str], name: &str| {
        ctr(&h, &ns, what)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    };
    assert!(ctr_has(&["snapshots", "ls"], "leftover-work"));
    assert!(ctr_has(&["leases", "ls"], "leda-cm-earlier"));

    let daemon = setup.spawn_ready(1, Duration::from_secs(15));
    let deadline = Instant::now() + Duration::from_secs(15);
    let clean = || {
        !ctr_has(&["containers", "ls"], &creating)
            && !ctr_has(&["containers", "ls"], &removing)
            && !ctr_has(&["snapshots", "ls"], "leftover-work")
            && !ctr_has(&["leases", "ls"], "leda-cm-earlier")
    };
    while !clean() {
        assert!(
            Instant::now() < deadline,
            "not cleaned: containers {}, snapshots {}, leases {}\n{}",
            ctr(&h, &ns, &["containers", "ls"]),
            ctr(&h, &ns, &["snapshots", "ls"]),
            ctr(&h, &ns, &["leases", "ls"]),
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!path(&creating).exists() && !path(&removing).exists());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the task of the removed container still runs"
    );
    // Not leda-cm's (or not labelled as an earlier run's): left alone.
    assert!(ctr_has(&["snapshots", "ls"], "someone-elses"));
    assert!(ctr_has(&["leases", "ls"], "leda-cm-unlabelled"));
    let log = daemon.stderr();
    assert!(log.contains("rolled back the create of container"), "{log}");
    assert!(log.contains("finished the removal of container"), "{log}");
    // The API answers with neither.
    let list = common::kanto_cm(&setup.runtime_dir.join("cm.sock"), &["list", "-q"]);
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.status.success(), "{listed}");
    assert!(
        !listed.contains(&creating) && !listed.contains(&removing),
        "{listed}"
    );
    assert!(daemon.stop().success());
    ctr(&h, &ns, &["snapshots", "rm", "someone-elses"]);
    ctr(&h, &ns, &["leases", "rm", "leda-cm-unlabelled"]);
}
