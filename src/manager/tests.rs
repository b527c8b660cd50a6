//! The manager's decisions against the in-memory runtime.

use std::time::Duration;

use super::fake::{manager, run, state_dir, FakeRuntime};
use super::{Change, ManagerError, StopOptions, UpdateOptions};
use crate::model::{Container, Resources, RestartPolicy, RestartPolicyType, Status};
use crate::runtime::RuntimeEvent;

/// containerd's word that the task `pid` of `id` exited with `code`.
fn exit_event(id: &str, pid: u32, code: u32) -> RuntimeEvent {
    RuntimeEvent::TaskExit {
        id: id.to_string(),
        pid,
        exit_status: code,
        exited_at: None,
    }
}

fn container(name: &str, image: &str) -> Container {
    serde_json::from_value(serde_json::json!({"container_name": name, "image": {"name": image}}))
        .unwrap()
}

#[test]
fn create_pulls_only_when_absent_persists_and_enforces_unique_names() {
    let dir = state_dir("create");
    run(async {
        let rt = FakeRuntime::new()
            .with_image("present:1")
            .in_registry("remote:1");
        let m = manager(rt.clone(), &dir);
        let mut changes = m.subscribe();
        let a = m.create(container("a", "present:1"), None).await.unwrap();
        assert_eq!(rt.calls("pull"), 0);
        assert_eq!(a.state.status, Status::Created);
        assert!(!a.created.is_empty());
        assert!(dir
            .join("containers")
            .join(&a.container_id)
            .join("config.json")
            .is_file());
        assert!(matches!(changes.try_recv(), Ok(Change::Created(_))));

        let b = m.create(container("b", "remote:1"), None).await.unwrap();
        assert_eq!(rt.calls("pull remote:1"), 1);
        assert_eq!(
            b.extras().image_digest,
            super::fake::image("remote:1").digest
        );

        match m.create(container("a", "present:1"), None).await {
            Err(ManagerError::NameInUse { name, id }) => {
                assert_eq!((name.as_str(), id), ("a", a.container_id.clone()))
            }
            other => panic!("{other:?}"),
        }
        let mut same_id = container("c", "present:1");
        same_id.container_id = a.container_id.clone();
        assert!(matches!(
            m.create(same_id, None).await,
            Err(ManagerError::AlreadyExists(_))
        ));
        assert_eq!(m.list().len(), 2);
        assert_eq!(m.find_by_name("b").unwrap().container_id, b.container_id);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_specs_and_failed_pulls_leave_nothing_behind() {
    let dir = state_dir("invalid");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let mut bad = container("bad name", "i:1");
        match m.create(bad.clone(), None).await {
            Err(ManagerError::Invalid(e)) => assert_eq!(e.field, "container_name"),
            other => panic!("{other:?}"),
        }
        bad.container_name = "ok".into();
        bad.host_config.resources = Some(Resources {
            memory: "1k".into(),
            ..Default::default()
        });
        assert!(matches!(
            m.create(bad, None).await,
            Err(ManagerError::Invalid(_))
        ));
        assert_eq!(
            rt.state().calls.len(),
            0,
            "containerd was touched: {:?}",
            rt.state().calls
        );

        let err = m
            .create(container("x", "missing:1"), None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("missing:1"), "{err}");
        rt.state().fail_create = true;
        assert!(m.create(container("y", "i:1"), None).await.is_err());
        assert!(m.list().is_empty());
        assert!(rt.state().containers.is_empty());
        assert_eq!(
            std::fs::read_dir(dir.join("containers"))
                .map(|d| d.count())
                .unwrap_or(0),
            0
        );
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every refusal of an operation in a state it does not fit, of an unknown ID, of bad
/// options: Kanto's daemon's text for the same situation.
#[test]
fn refusals_are_kantos_texts() {
    let dir = state_dir("kanto-texts");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let created = m.create(container("c", "i:1"), None).await.unwrap();
        let running = m.create(container("r", "i:1"), None).await.unwrap();
        let paused = m.create(container("p", "i:1"), None).await.unwrap();
        let stopped = m.create(container("s", "i:1"), None).await.unwrap();
        for c in [&running, &paused, &stopped] {
            m.start(&c.container_id).await.unwrap();
        }
        m.pause(&paused.container_id).await.unwrap();
        m.stop(&stopped.container_id, StopOptions::default())
            .await
            .unwrap();
        let (c, r, p, s) = (
            created.container_id.as_str(),
            running.container_id.as_str(),
            paused.container_id.as_str(),
            stopped.container_id.as_str(),
        );
        let bad_signal = StopOptions {
            signal: Some("SIGNOPE".into()),
            ..Default::default()
        };
        let kill = || StopOptions::default();
        type Op<'a> =
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ManagerError>> + 'a>>;
        let ok = |_| ();
        let cases: Vec<(&str, Op, String)> = vec![
            ("start running", Box::pin(async { m.start(r).await.map(ok) }), format!("the container with id = {r} is already running")),
            ("start paused", Box::pin(async { m.start(p).await.map(ok) }), format!("the container with id = {p} is paused - cannot start it - try unpausing it instead")),
            ("stop created", Box::pin(async { m.stop(c, kill()).await.map(ok) }), format!("cannot perform stop operation for container: {c}, with state: Created")),
            ("stop stopped", Box::pin(async { m.stop(s, kill()).await.map(ok) }), format!("cannot perform stop operation for container: {s}, with state: Stopped")),
            ("stop with a bad signal", Box::pin(async { m.stop(c, bad_signal.clone()).await.map(ok) }), "invalid signal = SIGNOPE".to_string()),
            ("pause created", Box::pin(async { m.pause(c).await.map(ok) }), format!("container with id = {c} is not running - current status is Created")),
            ("pause paused", Box::pin(async { m.pause(p).await.map(ok) }), format!("container with id = {p} is not running - current status is Paused")),
            ("unpause running", Box::pin(async { m.resume(r).await.map(ok) }), format!("container id = {r} is not paused - cannot unpause it ")),
            ("remove running", Box::pin(async { m.remove(r, false).await }), format!("container with id = {r} is not stopped - must set the force flag to true to remove it")),
            ("remove paused", Box::pin(async { m.remove(p, false).await }), format!("container with id = {p} is not stopped - must set the force flag to true to remove it")),
            ("rename to a bad name", Box::pin(async { m.rename(c, "a b").await.map(ok) }), "invalid container name format : a b".to_string()),
            ("logs of a created one", Box::pin(async { m.logs(c, None).await.map(|_| ()) }), "there are no logs for container with status \"Created\"".to_string()),
            ("start unknown", Box::pin(async { m.start("nope").await.map(ok) }), "no such container with id = nope exists".to_string()),
            ("stop unknown", Box::pin(async { m.stop("nope", bad_signal.clone()).await.map(ok) }), "no such container with id = nope exists".to_string()),
            ("pause unknown", Box::pin(async { m.pause("nope").await.map(ok) }), "no such container with id = nope exists".to_string()),
            ("unpause unknown", Box::pin(async { m.resume("nope").await.map(ok) }), "no such container with id = nope exists".to_string()),
            ("rename unknown", Box::pin(async { m.rename("nope", "a b").await.map(ok) }), "no such container with id = nope exists".to_string()),
            ("update unknown", Box::pin(async { m.update("nope", Default::default()).await.map(ok) }), "no such container with id = nope exists".to_string()),
            ("remove unknown", Box::pin(async { m.remove("nope", true).await }), "no such container with id = nope exists".to_string()),
            ("remove no ID", Box::pin(async { m.remove("", true).await }), "no such container with id =  exists".to_string()),
            ("logs unknown", Box::pin(async { m.logs("nope", None).await.map(|_| ()) }), "no such container with id = nope exists".to_string()),
            ("create an existing ID", Box::pin(async {
                let mut again = container("again", "i:1");
                again.container_id = c.to_string();
                m.create(again, None).await.map(|_| ())
            }), format!("container with id = {c} already exists")),
        ];
        for (case, op, text) in cases {
            assert_eq!(op.await.map_err(|e| e.to_string()), Err(text), "{case}");
        }
        // Nothing changed.
        let status = |id: &str| m.get(id).unwrap().state.status;
        assert_eq!(
            [status(c), status(r), status(p), status(s)],
            [
                Status::Created,
                Status::Running,
                Status::Paused,
                Status::Stopped
            ]
        );
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn start_stop_pause_and_state_errors() {
    let dir = state_dir("lifecycle");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let c = m.create(container("web", "i:1"), None).await.unwrap();
        let id = c.container_id.clone();
        let started = m.start(&id).await.unwrap();
        assert!(started.state.running && started.state.pid > 0);
        assert!(started.started_successfully_before);
        assert!(m
            .start(&id)
            .await
            .unwrap_err()
            .to_string()
            .contains("is already running"));
        let paused = m.pause(&id).await.unwrap();
        assert_eq!(paused.state.status, Status::Paused);
        assert!(m
            .start(&id)
            .await
            .unwrap_err()
            .to_string()
            .contains("try unpausing"));
        m.resume(&id).await.unwrap();
        assert!(m
            .remove(&id, false)
            .await
            .unwrap_err()
            .to_string()
            .contains("must set the force flag"));

        let stopped = m.stop(&id, StopOptions::default()).await.unwrap();
        assert_eq!(stopped.state.status, Status::Stopped);
        assert!(stopped.manually_stopped);
        assert_eq!(rt.calls(&format!("kill {id} 15")), 1);
        assert_eq!(
            m.stop(&id, StopOptions::default())
                .await
                .unwrap_err()
                .to_string(),
            format!("cannot perform stop operation for container: {id}, with state: Stopped")
        );

        // A task that ignores SIGTERM is killed after the timeout.
        m.start(&id).await.unwrap();
        rt.state().term_exit = None;
        let opts = StopOptions {
            timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        };
        let stopped = m.stop(&id, opts).await.unwrap();
        assert_eq!(stopped.state.exit_code, 137);
        assert_eq!(rt.calls(&format!("kill {id} 9")), 1);

        // Persisted: a new manager on the same state dir knows it.
        let again = manager(rt.clone(), &dir);
        assert_eq!(again.get(&id).unwrap().state.status, Status::Stopped);

        m.remove(&id, false).await.unwrap();
        assert!(matches!(m.get(&id), Err(ManagerError::NotFound(_))));
        assert!(!dir.join("containers").join(&id).exists());
        assert!(rt.state().containers.is_empty());
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn on_failure_with_max_three_restarts_exactly_three_times() {
    let dir = state_dir("onfailure");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let mut c = container("flaky", "i:1");
        c.host_config.restart_policy = RestartPolicy {
            policy_type: RestartPolicyType::OnFailure,
            maximum_retry_count: 3,
            retry_timeout: 0,
        };
        let id = m.create(c, None).await.unwrap().container_id;
        m.start(&id).await.unwrap();
        for round in 0..4 {
            let pid = rt.exit(&id, 1);
            m.on_event(exit_event(&id, pid, 1)).await;
            // Back-off 100, 200, 400 ms: let it pass.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = m.get(&id).unwrap();
            if round < 3 {
                assert!(now.state.running, "round {round}: {:?}", now.state);
                assert_eq!(now.restart_count, round + 1);
            } else {
                assert_eq!(now.state.status, Status::Exited);
                assert!(!now.state.restarting);
                assert_eq!(now.state.exit_code, 1);
            }
        }
        assert_eq!(rt.calls(&format!("start {id}")), 4);
        assert_eq!(m.get(&id).unwrap().restart_count, 3);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unless_stopped_restarts_but_not_after_a_manual_stop_and_stale_exits_are_ignored() {
    let dir = state_dir("unless");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let id = m
            .create(container("svc", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        m.start(&id).await.unwrap();
        let pid = rt.exit(&id, 0);
        m.on_event(RuntimeEvent::TaskOom { id: id.clone() }).await;
        m.on_event(exit_event(&id, pid, 137)).await;
        let exited = m.get(&id).unwrap();
        assert!(exited.state.oom_killed && exited.state.restarting);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let back = m.get(&id).unwrap();
        assert!(back.state.running);
        // An exit of the old pid changes nothing.
        m.on_event(exit_event(&id, pid, 1)).await;
        assert!(m.get(&id).unwrap().state.running);

        m.stop(&id, StopOptions::default()).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(m.get(&id).unwrap().state.status, Status::Stopped);
        assert_eq!(rt.calls(&format!("start {id}")), 2);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reconcile_adopts_live_tasks_and_restarts_the_dead_by_policy() {
    let dir = state_dir("reconcile");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let live = m
            .create(container("live", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        let dead = m
            .create(container("dead", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        let mut never = container("never", "i:1");
        never.host_config.restart_policy.policy_type = RestartPolicyType::No;
        let never = m.create(never, None).await.unwrap().container_id;
        for id in [&live, &dead, &never] {
            m.start(id).await.unwrap();
        }
        let live_pid = m.get(&live).unwrap().state.pid;
        // The daemon goes away; meanwhile two tasks die.
        drop(m);
        rt.exit(&dead, 2);
        rt.exit(&never, 3);
        let starts_before = rt.calls("start");

        let m = manager(rt.clone(), &dir);
        m.reconcile().await.unwrap();
        let l = m.get(&live).unwrap();
        assert!(l.state.running);
        assert_eq!(
            l.state.pid, live_pid,
            "the live task was not adopted as it was"
        );
        assert!(m.get(&dead).unwrap().state.running);
        let n = m.get(&never).unwrap();
        assert_eq!((n.state.status, n.state.exit_code), (Status::Exited, 3));
        assert_eq!(
            rt.calls("start") - starts_before,
            1,
            "only the dead unless-stopped one restarts"
        );

        // containerd forgot a container: it is created again and started.
        rt.state().containers.remove(&live);
        rt.state().tasks.remove(&live);
        m.reconcile().await.unwrap();
        assert!(m.get(&live).unwrap().state.running);
        assert!(rt.state().containers.contains_key(&live));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn update_rename_and_image_collection() {
    let dir = state_dir("update");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1").with_image("old:1");
        let m = manager(rt.clone(), &dir);
        let id = m
            .create(container("u", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        let updated = m
            .update(
                &id,
                UpdateOptions {
                    restart_policy: Some(RestartPolicy {
                        policy_type: RestartPolicyType::Always,
                        ..Default::default()
                    }),
                    resources: Some(Resources {
                        memory: "10M".into(),
                        ..Default::default()
                    }),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            updated.host_config.restart_policy.policy_type,
            RestartPolicyType::Always
        );
        assert_eq!(updated.host_config.resources.unwrap().memory_swap, "20M");
        assert_eq!(rt.calls("update_resources"), 1);
        let bad = UpdateOptions {
            resources: Some(Resources {
                memory: "1k".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(
            m.update(&id, bad).await,
            Err(ManagerError::Invalid(_))
        ));

        let other = m
            .create(container("v", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        assert!(matches!(
            m.rename(&other, "u").await,
            Err(ManagerError::NameInUse { .. })
        ));
        assert!(matches!(
            m.rename(&other, "-x").await,
            Err(ManagerError::Invalid(_))
        ));
        assert_eq!(m.rename(&other, "w").await.unwrap().container_name, "w");

        let now = std::time::SystemTime::now();
        // First sight of the unused image starts its clock; in use stays.
        assert!(m.collect_images(now).await.unwrap().is_empty());
        let later = now + Duration::from_secs(7200);
        assert_eq!(
            m.collect_images(later).await.unwrap(),
            vec!["old:1".to_string()]
        );
        assert!(rt.state().images.contains_key("i:1"));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bridged_containers_join_between_task_create_and_start_and_keep_their_address() {
    use super::fake::{manager_with_network, FakeNetwork};
    let dir = state_dir("network");
    run(async {
        let rt = FakeRuntime::new().with_image("img:1");
        let net = FakeNetwork::new(rt.clone());
        let m = manager_with_network(rt.clone(), net.clone(), &dir);
        let mut web: Container = serde_json::from_value(serde_json::json!({
            "container_name": "web",
            "image": {"name": "img:1"},
            "host_config": {
                "extra_hosts": ["mosquitto:host_ip", "lan:host_ip_eth0", "db:container_db", "x:10.9.9.9"],
                "port_mappings": [{"container_port": 80, "host_port": 8080, "host_ip": "localhost"}],
                "restart_policy": {"type": "always"}
            }
        }))
        .unwrap();
        web.host_name = "web-host".into();
        let db = m
            .create(container("db", "img:1"), None)
            .await
            .unwrap()
            .container_id;
        m.start(&db).await.unwrap();
        let id = m.create(web, None).await.unwrap().container_id;
        // Nothing is attached at create.
        assert!(!net.calls().iter().any(|c| c.contains(&id)));
        let started = m.start(&id).await.unwrap();
        let calls = net.calls();
        assert_eq!(
            calls.last().unwrap(),
            &format!(
                "attach {id} pid {} wanted None task Some(Created)",
                started.state.pid
            )
        );
        let ep = &started.network_settings.networks["kanto-cm0"];
        assert_eq!(
            (ep.ip_address.as_str(), ep.gateway.as_str()),
            ("10.0.0.3", "10.0.0.1")
        );
        let att = started.extras().network.clone().unwrap();
        assert_eq!(att.ports[0].host_ip, "127.0.0.1");
        let hosts =
            std::fs::read_to_string(dir.join("containers").join(&id).join("hosts")).unwrap();
        for line in [
            "10.0.0.3\tweb-host",
            "10.0.0.1\tmosquitto",
            "192.168.1.10\tlan",
            "10.0.0.2\tdb",
            "10.9.9.9\tx",
        ] {
            assert!(hosts.contains(line), "{line:?} missing in\n{hosts}");
        }

        // Another container may not publish the same host port.
        let clash: Container = serde_json::from_value(serde_json::json!({
            "container_name": "clash",
            "image": {"name": "img:1"},
            "host_config": {"port_mappings": [{"container_port": 81, "host_port": 8080}]}
        }))
        .unwrap();
        match m.create(clash, None).await {
            Err(e @ ManagerError::Network { .. }) => {
                assert!(
                    e.to_string()
                        .ends_with("host port 8080/tcp is already in use"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(m.find_by_name("clash").is_err());

        // The task exits: the container leaves the bridge, and its restart asks for the
        // same address.
        let pid = rt.exit(&id, 1);
        m.on_event(exit_event(&id, pid, 1)).await;
        assert!(net.calls().contains(&format!("detach {id}")));
        assert!(m.get(&id).unwrap().extras().network.is_none());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let back = m.get(&id).unwrap();
        assert!(back.state.running);
        assert!(net
            .calls()
            .last()
            .unwrap()
            .contains("wanted Some(10.0.0.3)"));
        assert_eq!(
            back.network_settings.networks["kanto-cm0"].ip_address,
            "10.0.0.3"
        );

        // Stop gives it back (in the background: its record names the attachment until
        // then); a failing attach leaves no task behind.
        m.stop(&id, StopOptions::default()).await.unwrap();
        while m.get(&id).unwrap().extras().network.is_some() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            net.calls()
                .iter()
                .filter(|c| *c == &format!("detach {id}"))
                .count(),
            2
        );
        *net.fail_attach.lock().unwrap() = true;
        let err = m.start(&id).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("container {id}: CNI plugin bridge not found in /nowhere")
        );
        assert!(!rt.state().tasks.contains_key(&id));
        *net.fail_attach.lock().unwrap() = false;

        // Live restore holds the namespaces of running attached containers and gives back
        // addresses nobody runs with.
        net.leases
            .lock()
            .unwrap()
            .insert("10.0.0.77".into(), "gone-container".into());
        m.reconcile().await.unwrap();
        let calls = net.calls();
        assert!(calls.contains(&format!("hold {db} pid {}", m.get(&db).unwrap().state.pid)));
        assert!(calls.contains(&"detach gone-container".to_string()));
        assert!(!net.leases.lock().unwrap().contains_key("10.0.0.77"));

        // Host mode never touches the bridge; remove takes a bridged one off it.
        let host: Container = serde_json::from_value(serde_json::json!({
            "container_name": "host",
            "image": {"name": "img:1"},
            "host_config": {"network_mode": "host"}
        }))
        .unwrap();
        let h = m.create(host, None).await.unwrap().container_id;
        m.start(&h).await.unwrap();
        assert!(!net.calls().iter().any(|c| c.contains(&h)));
        m.remove(&db, true).await.unwrap();
        assert_eq!(net.calls().last().unwrap(), &format!("detach {db}"));
        // Only web is left on the bridge: live restore started it again (policy always).
        assert!(m.get(&id).unwrap().state.running);
        let leases = net.leases.lock().unwrap().clone();
        assert_eq!(
            leases.into_iter().collect::<Vec<_>>(),
            [("10.0.0.3".to_string(), id.clone())],
            "{:?}",
            net.calls()
        );
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_stop_returns_before_its_del_and_what_needs_its_port_or_address_waits_for_it() {
    use super::fake::{manager_with_network, FakeNetwork};
    use std::sync::atomic::Ordering::SeqCst;
    let dir = state_dir("network-leave");
    run(async {
        let rt = FakeRuntime::new().with_image("img:1");
        let net = FakeNetwork::new(rt.clone());
        let m = manager_with_network(rt.clone(), net.clone(), &dir);
        let web = |name: &str| -> Container {
            serde_json::from_value(serde_json::json!({
                "container_name": name,
                "image": {"name": "img:1"},
                "host_config": {"port_mappings": [{"container_port": 80, "host_port": 8080}]}
            }))
            .unwrap()
        };
        let detaches = |id: &str| {
            net.calls()
                .iter()
                .filter(|c| *c == &format!("detach {id}"))
                .count()
        };
        let id = m.create(web("web"), None).await.unwrap().container_id;
        m.start(&id).await.unwrap();
        let att = m.get(&id).unwrap().extras().network.unwrap();

        // The DEL stalls: the stop returns all the same, the task gone, the record (on
        // disk too) still naming the attachment that is to be released.
        net.stall_detach.store(true, SeqCst);
        let stopped = m
            .stop(
                &id,
                StopOptions {
                    force: true,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert!(!stopped.state.running);
        assert!(!rt.state().tasks.contains_key(&id));
        assert_eq!(stopped.extras().network.as_ref(), Some(&att));
        let on_disk: Container = serde_json::from_str(
            &std::fs::read_to_string(dir.join("containers").join(&id).join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(on_disk.extras().network.as_ref(), Some(&att));
        assert_eq!(detaches(&id), 0);

        // Another container on the same host port waits for that DEL, and so does a start
        // of the stopped one (it is not run twice).
        let m2 = m.clone();
        let other = tokio::spawn(async move { m2.create(web("other"), None).await });
        let m3 = m.clone();
        let id3 = id.clone();
        let again = tokio::spawn(async move { m3.start(&id3).await });
        // (Time stands still while the blocking pool works: let them run instead.)
        for _ in 0..200 {
            tokio::task::yield_now().await;
        }
        assert!(!other.is_finished() && !again.is_finished());
        net.stall_detach.store(false, SeqCst);
        let other = other.await.unwrap().unwrap().container_id;
        let started = again.await.unwrap().unwrap();
        assert_eq!(detaches(&id), 1);
        assert!(started.state.running);
        assert_eq!(
            started.network_settings.networks["kanto-cm0"].ip_address,
            att.ip
        );

        // stop, then remove at once: the remove waits for the DEL; one DEL per stop.
        m.stop(&id, StopOptions::default()).await.unwrap();
        m.remove(&id, false).await.unwrap();
        assert_eq!(detaches(&id), 2);
        assert!(!net
            .leases
            .lock()
            .unwrap()
            .values()
            .any(|owner| owner == &id));
        // The other one can have the port now.
        m.start(&other).await.unwrap();
        assert_eq!(
            m.get(&other).unwrap().extras().network.unwrap().ports[0].host_port,
            8080
        );
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_removal_racing_the_exit_handler_is_final() {
    let dir = state_dir("remove-race");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let id = m
            .create(container("doomed", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        m.start(&id).await.unwrap();
        let pid = m.get(&id).unwrap().state.pid as u32;
        let mut changes = m.subscribe();

        // The container's lock is held (an operation in hand) while a forced removal and
        // then the task's exit event queue up behind it, in that order (tokio's mutex is
        // fair): the exit handler already holds the entry when the removal runs.
        let entry = m.entry(&id).unwrap();
        let held = entry.op.lock().await;
        let remove = tokio::spawn({
            let (m, id) = (m.clone(), id.clone());
            async move { m.remove(&id, true).await }
        });
        tokio::task::yield_now().await;
        let exit = tokio::spawn({
            let (m, id) = (m.clone(), id.clone());
            async move { m.on_event(exit_event(&id, pid, 137)).await }
        });
        tokio::task::yield_now().await;
        drop(held);
        remove.await.unwrap().unwrap();
        exit.await.unwrap();

        assert!(matches!(m.get(&id), Err(ManagerError::NotFound(_))));
        assert!(
            !dir.join("containers").join(&id).exists(),
            "record written again"
        );
        let mut told = Vec::new();
        while let Ok(c) = changes.try_recv() {
            told.push(c);
        }
        assert!(
            matches!(told.last(), Some(Change::Removed(_))),
            "something was told after the removal: {told:?}"
        );
        // A restart finds nothing to restore.
        drop(m);
        let m = manager(rt.clone(), &dir);
        m.reconcile().await.unwrap();
        assert!(m.list().is_empty());
        assert!(!rt.state().containers.contains_key(&id));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reconcile_removes_labelled_containers_without_a_record_and_leaves_others() {
    let dir = state_dir("orphans");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let kept = m
            .create(container("kept", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        let orphan = m
            .create(container("orphan", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        m.start(&orphan).await.unwrap();
        drop(m);
        // A crash between containerd's create and the record (here: the record lost), and
        // a container somebody else made in the namespace.
        std::fs::remove_dir_all(dir.join("containers").join(&orphan)).unwrap();
        let mut foreign = rt.state().containers[&kept].clone();
        foreign.id = "made-by-ctr".into();
        foreign.labels.clear();
        rt.state()
            .containers
            .insert(foreign.id.clone(), foreign.clone());

        let m = manager(rt.clone(), &dir);
        m.reconcile().await.unwrap();
        let s = rt.state();
        assert!(!s.containers.contains_key(&orphan), "orphan left behind");
        assert!(!s.tasks.contains_key(&orphan), "orphan's task left behind");
        assert!(s.containers.contains_key("made-by-ctr"));
        assert!(s.containers.contains_key(&kept));
        drop(s);
        assert_eq!(m.list().len(), 1);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_creates_intent_is_durable_before_containerd_is_asked_and_rolled_back_after_a_crash() {
    let dir = state_dir("create-intent");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        rt.state().records_dir = Some(dir.clone());
        let m = manager(rt.clone(), &dir);
        let done = m.create(container("done", "i:1"), None).await.unwrap();
        assert_eq!(rt.state().records_at_create, vec!["Creating".to_string()]);
        drop(m);
        // A crash right after containerd made it: the record still says Creating, and an
        // earlier run's work snapshot lies around.
        let record = dir
            .join("containers")
            .join(&done.container_id)
            .join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        v["state"]["status"] = Status::Creating.code().into();
        std::fs::write(&record, serde_json::to_vec(&v).unwrap()).unwrap();
        rt.state().leftovers = vec!["extract-1".into()];

        let m = manager(rt.clone(), &dir);
        let mut changes = m.subscribe();
        m.reconcile().await.unwrap();
        assert!(!rt.state().containers.contains_key(&done.container_id));
        assert!(!dir.join("containers").join(&done.container_id).exists());
        assert!(rt.state().leftovers.is_empty(), "leftover snapshot kept");
        assert!(m.list().is_empty());
        // Never acknowledged, so never told of: no change at all.
        assert!(changes.try_recv().is_err());
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_removal_cut_short_by_a_crash_is_finished_at_the_next_start_never_undone() {
    let dir = state_dir("remove-intent");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let mut c = container("going", "i:1");
        c.host_config.restart_policy = RestartPolicy {
            policy_type: RestartPolicyType::Always,
            ..Default::default()
        };
        let id = m.create(c, None).await.unwrap().container_id;
        m.start(&id).await.unwrap();
        // What `remove` persists first; then a crash before anything was taken down.
        let mut intent = m.get(&id).unwrap();
        intent.extras_mut().removing = true;
        drop(m);
        crate::store::ContainerRecords::new(&dir)
            .save(&intent)
            .unwrap();
        assert!(rt.state().tasks.contains_key(&id));

        let m = manager(rt.clone(), &dir);
        let mut changes = m.subscribe();
        m.reconcile().await.unwrap();
        assert!(!rt.state().tasks.contains_key(&id), "task left running");
        assert!(!rt.state().containers.contains_key(&id));
        assert!(!dir.join("containers").join(&id).exists());
        assert!(matches!(m.get(&id), Err(ManagerError::NotFound(_))));
        assert!(matches!(changes.try_recv(), Ok(Change::Removed(c)) if c.container_id == id));
        assert!(changes.try_recv().is_err());
        // And it stays gone: another reconcile (containerd back) has nothing to restore.
        m.reconcile().await.unwrap();
        assert!(!rt.state().containers.contains_key(&id));
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_removal_puts_the_record_back_without_the_intent() {
    let dir = state_dir("remove-fails");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let id = m
            .create(container("stays", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        m.start(&id).await.unwrap();
        // containerd refuses to delete the container: the removal fails.
        rt.state().fail_remove = true;
        assert!(m.remove(&id, true).await.is_err());
        assert!(m.get(&id).is_ok());
        let record: crate::model::Container = serde_json::from_slice(
            &std::fs::read(dir.join("containers").join(&id).join("config.json")).unwrap(),
        )
        .unwrap();
        assert!(!record.extras().removing, "failed removal left its intent");
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn drift_behind_the_managers_back_is_found_and_fixed_and_operations_in_hand_are_not_drift() {
    let dir = state_dir("drift");
    run(async {
        let rt = FakeRuntime::new().with_image("i:1");
        let m = manager(rt.clone(), &dir);
        let kept = m
            .create(container("kept", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        let killed = m
            .create(container("killed", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        let deleted = m
            .create(container("deleted", "i:1"), None)
            .await
            .unwrap()
            .container_id;
        for id in [&kept, &killed, &deleted] {
            m.start(id).await.unwrap();
        }
        m.reconcile().await.unwrap();
        assert_eq!(m.check_drift().await.unwrap(), 0, "no drift yet");
        let (kept_pid, killed_pid) = (
            m.get(&kept).unwrap().state.pid,
            m.get(&killed).unwrap().state.pid,
        );

        // Behind its back: one task killed long ago with its exit event missed, one container
        // deleted from containerd altogether (as `ctr c rm` after `ctr t rm -f` would).
        rt.exit(&killed, 137);
        rt.state().tasks.get_mut(&killed).unwrap().exited_at =
            Some(std::time::SystemTime::now() - Duration::from_secs(60));
        rt.state().tasks.remove(&deleted);
        rt.state().containers.remove(&deleted);

        assert_eq!(m.check_drift().await.unwrap(), 2);
        let k = m.get(&killed).unwrap();
        assert!(
            k.state.running && k.state.pid != killed_pid,
            "{:?}",
            k.state
        );
        assert!(rt.state().containers.contains_key(&deleted));
        assert!(m.get(&deleted).unwrap().state.running);
        let untouched = m.get(&kept).unwrap();
        assert_eq!(untouched.state.pid, kept_pid);

        // A fresh exit is the event stream's (its back-off applies), not drift; and the
        // check decides under the container's lock, after the operation in hand.
        rt.exit(&kept, 1);
        let entry = m.entry(&kept).unwrap();
        let held = entry.op.lock().await;
        let check = tokio::spawn({
            let m = m.clone();
            async move { m.check_drift().await }
        });
        tokio::task::yield_now().await;
        assert!(
            !check.is_finished(),
            "the check waits for the operation in hand"
        );
        drop(held);
        assert_eq!(check.await.unwrap().unwrap(), 0);
        assert_eq!(m.get(&kept).unwrap().state.pid, kept_pid);

        // The exit event arrives: a restart is scheduled with its back-off; the task is
        // gone meanwhile, which is not drift either.
        m.on_event(exit_event(&kept, kept_pid as u32, 1)).await;
        assert!(m.get(&kept).unwrap().state.restarting);
        let starts = rt.calls(&format!("start {kept}"));
        assert_eq!(m.check_drift().await.unwrap(), 0);
        assert_eq!(rt.calls(&format!("start {kept}")), starts);
    });
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A verifier refuses an image: nothing of the container is created, a pulled image goes;
/// a signed one is created, and its kept signatures verify later creates without the
/// registry.
#[test]
fn only_images_the_verifier_accepts_are_used_by_every_create() {
    let dir = state_dir("trust");
    run(async {
        let (key, sign) = crate::trust::cosign::test_signer();
        let rt = FakeRuntime::new()
            .in_registry("unsigned:1")
            .in_registry("signed:1")
            .with_image("local-unsigned:1");
        let signed_digest = super::fake::image("signed:1").digest;
        rt.state()
            .signatures
            .insert(signed_digest.clone(), vec![sign(&signed_digest)]);
        let mut settings = super::fake::manager(FakeRuntime::new(), &dir)
            .settings
            .clone();
        settings.trust = std::sync::Arc::new(crate::trust::Verifier::Cosign(key));
        let m = super::Manager::new(rt.clone(), settings);

        for image in ["unsigned:1", "local-unsigned:1"] {
            match m
                .create(container(image.trim_end_matches(":1"), image), None)
                .await
            {
                Err(ManagerError::Untrusted(e)) => {
                    assert!(e.to_string().contains("no cosign signature"), "{e}")
                }
                other => panic!("{image}: {other:?}"),
            }
        }
        assert_eq!(rt.calls("create "), 0, "containerd was asked to create");
        assert!(m.list().is_empty());
        assert!(
            !rt.state().images.contains_key("unsigned:1"),
            "the refused pull stays"
        );
        assert!(
            rt.state().images.contains_key("local-unsigned:1"),
            "an image that was there before is not removed"
        );

        let a = m.create(container("a", "signed:1"), None).await.unwrap();
        assert_eq!(a.state.status, crate::model::Status::Created);
        assert_eq!(rt.calls("signatures cosign signed:1"), 1);
        // Kept: the second create verifies again, without the registry.
        m.create(container("b", "signed:1"), None).await.unwrap();
        assert_eq!(rt.calls("signatures cosign signed:1"), 1);
        // Kept signatures that no longer verify are fetched again (and still refused).
        rt.state().signatures.clear();
        let kept = dir.join("trust/cosign").join(format!(
            "{}.json",
            signed_digest.trim_start_matches("sha256:")
        ));
        let text = std::fs::read_to_string(&kept).unwrap();
        std::fs::write(&kept, text.replace("\"blob\": \"7b", "\"blob\": \"7c")).unwrap();
        assert!(matches!(
            m.create(container("c", "signed:1"), None).await,
            Err(ManagerError::Untrusted(_))
        ));
        assert_eq!(rt.calls("signatures cosign signed:1"), 2);
    });
}
