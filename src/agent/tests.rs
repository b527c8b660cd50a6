//! The operation's phases against the in-memory runtime: safe replacement, rollback, the
//! orchestrated command order and idempotent resumption.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::desired::component_container;
use super::diff::{plan, Kind};
use super::messages::{action_status as act, status, ComponentWithConfig, Feedback, KeyValue};
use super::operation::{Ctx, Operation, Outcome, Sink};
use crate::manager::fake::{manager, run, state_dir, FakeRuntime};
use crate::manager::Manager;
use crate::model::{Container, Status};

/// Every status of an operation that went through all its phases, in order.
const FULL_FLOW: [&str; 8] = [
    status::DOWNLOADING,
    status::DOWNLOAD_SUCCESS,
    status::UPDATING,
    status::UPDATE_SUCCESS,
    status::ACTIVATING,
    status::ACTIVATION_SUCCESS,
    status::CLEANUP_SUCCESS,
    status::COMPLETED,
];

fn container(name: &str, image: &str, env: &[&str]) -> Container {
    serde_json::from_value(serde_json::json!({
        "container_name": name, "image": {"name": image}, "config": {"env": env}
    }))
    .unwrap()
}

/// A desired container as a desired state's component describes it.
fn desired(name: &str, image: &str, env: &[&str]) -> Container {
    let mut config = vec![KeyValue {
        key: "image".into(),
        value: image.into(),
    }];
    config.extend(env.iter().map(|e| KeyValue {
        key: "env".into(),
        value: e.to_string(),
    }));
    component_container(&ComponentWithConfig {
        id: name.into(),
        version: "1".into(),
        config,
    })
    .unwrap()
}

type Log = Arc<Mutex<Vec<Feedback>>>;

fn sink() -> (Sink, Log) {
    let log: Log = Arc::default();
    let l = log.clone();
    (
        Arc::new(move |_: &str, fb: Feedback| l.lock().unwrap().push(fb)),
        log,
    )
}

/// The statuses in order, a run of the same status (progress updates) counted once.
fn statuses(log: &Log) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for fb in log.lock().unwrap().iter() {
        if out.last() != Some(&fb.status) {
            out.push(fb.status.clone());
        }
    }
    out
}

async fn running(m: &Arc<Manager<FakeRuntime>>, c: Container) -> Container {
    let c = m.create(c, None).await.unwrap();
    m.start(&c.container_id).await.unwrap();
    m.get(&c.container_id).unwrap()
}

fn by_name(m: &Manager<FakeRuntime>, name: &str) -> Option<Container> {
    m.find_by_name(name).ok()
}

fn operation(m: &Manager<FakeRuntime>, wanted: &[Container], sink: Sink) -> Operation {
    let p = plan(wanted, &m.list(), &["sua".into()], &HashSet::new());
    Operation::new("act-1", p, "containers", &|_| "1".into(), vec![], sink)
}

#[test]
fn standalone_recreates_creates_keeps_and_destroys_but_never_a_system_container() {
    let dir = state_dir("standalone");
    run(async {
        let rt = FakeRuntime::new()
            .in_registry("app:1")
            .in_registry("new:1")
            .in_registry("old:1");
        let m = manager(rt.clone(), &dir);
        let a = running(&m, container("a", "app:1", &["A=1"])).await;
        let b = running(&m, container("b", "app:1", &[])).await;
        let old = running(&m, container("old", "old:1", &[])).await;
        let sua = running(&m, container("sua", "old:1", &[])).await;
        let desired = [
            desired("a", "app:1", &["A=2"]),
            desired("b", "app:1", &[]),
            desired("c", "new:1", &[]),
        ];
        let (sink, log) = sink();
        let mut op = operation(&m, &desired, sink);
        let ctx = Ctx::new(m.clone());
        assert_eq!(op.run_standalone(&ctx, &|| false).await, Outcome::Completed);

        assert_eq!(statuses(&log), FULL_FLOW);
        // a: replaced by a new container with the new env, the old one gone.
        let new_a = by_name(&m, "a").expect("a exists");
        assert_ne!(new_a.container_id, a.container_id);
        assert_eq!(new_a.config.env, ["A=2"]);
        assert_eq!(new_a.state.status, Status::Running);
        assert!(m.get(&a.container_id).is_err(), "the old a is removed");
        // b kept as it was, c made and running, old destroyed, sua untouched.
        assert_eq!(by_name(&m, "b").unwrap().container_id, b.container_id);
        assert_eq!(by_name(&m, "c").unwrap().state.status, Status::Running);
        assert!(by_name(&m, "old").is_none());
        assert!(m.get(&old.container_id).is_err());
        assert_eq!(
            m.get(&sua.container_id).unwrap().state.status,
            Status::Running
        );
        assert!(
            m.list().iter().all(|c| !c.container_name.contains('.')),
            "no .next/.prev left"
        );

        let last = log.lock().unwrap().last().cloned().unwrap();
        let action = |id: &str| {
            last.actions
                .iter()
                .find(|a| a.component.id == id)
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(action("containers:a"), act::ACTIVATION_SUCCESS);
        assert_eq!(action("containers:c"), act::ACTIVATION_SUCCESS);
        assert_eq!(action("containers:old"), act::REMOVAL_SUCCESS);
        assert!(!last
            .actions
            .iter()
            .any(|a| a.component.id == "containers:sua"));
    });
}

#[test]
fn a_failed_activation_rolls_back_to_the_old_container() {
    let dir = state_dir("rollback");
    run(async {
        let rt = FakeRuntime::new()
            .in_registry("app:1")
            .in_registry("broken:2");
        let m = manager(rt.clone(), &dir);
        let a = running(&m, container("a", "app:1", &[])).await;
        rt.state().fail_start_image = Some("broken:2".into());
        let (sink, log) = sink();
        let mut op = operation(&m, &[desired("a", "broken:2", &[])], sink);
        let ctx = Ctx::new(m.clone());
        assert_eq!(
            op.run_standalone(&ctx, &|| false).await,
            Outcome::Incomplete
        );
        let s = statuses(&log);
        assert!(s.contains(&status::ACTIVATION_FAILURE.into()), "{s:?}");
        assert_eq!(
            s[s.len() - 4..],
            [
                status::ROLLBACK,
                status::ROLLBACK_SUCCESS,
                status::CLEANUP_SUCCESS,
                status::INCOMPLETE
            ]
        );
        // The old a is back under its name and running; the new one is gone.
        let now = by_name(&m, "a").unwrap();
        assert_eq!(now.container_id, a.container_id);
        assert_eq!(now.state.status, Status::Running);
        assert_eq!(m.list().len(), 1);
        let failure = log
            .lock()
            .unwrap()
            .iter()
            .find(|f| f.status == status::ACTIVATION_FAILURE)
            .cloned()
            .unwrap();
        assert!(
            failure.actions[0].message.contains("no such file"),
            "{:?}",
            failure.actions
        );
        // The rollback's outcome keeps the failure that caused it.
        let last = log.lock().unwrap().last().cloned().unwrap();
        let message = &last.actions[0].message;
        assert!(
            message.starts_with("Update unsuccessful, but rollback succeeded")
                && message.contains("Reason: ")
                && message.contains("no such file"),
            "{message}"
        );
    });
}

#[test]
fn a_health_gate_holds_the_activation_and_one_that_fails_rolls_the_update_back() {
    let dir = state_dir("healthgate");
    run(async {
        let rt = FakeRuntime::new()
            .in_registry("app:1")
            .in_registry("app:2")
            .in_registry("app:3");
        let m = manager(rt.clone(), &dir);
        let a = running(&m, container("a", "app:1", &[])).await;
        let ctx = Ctx::new(m.clone());

        // v2 holds up for its 300 ms: activated, and the feedback said it waited.
        let (first, log) = sink();
        let gated = desired_with("a", "app:2", &[("healthUptime", "300ms")]);
        assert_eq!(gated.extras().health_gate.unwrap().uptime_ms, 300);
        let mut op = operation(&m, &[gated], first);
        let t = tokio::time::Instant::now();
        assert_eq!(op.run_standalone(&ctx, &|| false).await, Outcome::Completed);
        assert!(t.elapsed() >= std::time::Duration::from_millis(300));
        let waited = log.lock().unwrap().iter().any(|f| {
            f.actions.iter().any(|a| {
                a.message
                    .contains("waiting for the health gate: running for 0.3 s")
            })
        });
        assert!(waited, "{:?}", log.lock().unwrap());
        let v2 = by_name(&m, "a").unwrap();
        assert_ne!(v2.container_id, a.container_id);
        assert_eq!(v2.image.name, "app:2");

        // v3 exits within its gate: ACTIVATION_FAILURE, then the rollback brings v2 back.
        let (second, log) = sink();
        let mut op = operation(
            &m,
            &[desired_with("a", "app:3", &[("healthUptime", "30s")])],
            second,
        );
        let killer = {
            let (m, rt) = (m.clone(), rt.clone());
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    let Some(c) = by_name(&m, "a") else { continue };
                    if c.image.name == "app:3" && c.state.running {
                        let pid = rt.exit(&c.container_id, 3);
                        m.on_event(crate::runtime::RuntimeEvent::TaskExit {
                            id: c.container_id.clone(),
                            pid,
                            exit_status: 3,
                            exited_at: None,
                        })
                        .await;
                        return;
                    }
                }
            }
        };
        let (outcome, ()) = tokio::join!(op.run_standalone(&ctx, &|| false), killer);
        assert_eq!(outcome, Outcome::Incomplete);
        let s = statuses(&log);
        assert!(s.contains(&status::ACTIVATION_FAILURE.into()), "{s:?}");
        assert!(s.contains(&status::ROLLBACK_SUCCESS.into()), "{s:?}");
        let failure = log
            .lock()
            .unwrap()
            .iter()
            .find(|f| f.status == status::ACTIVATION_FAILURE)
            .cloned()
            .unwrap();
        assert!(
            failure.actions[0]
                .message
                .contains("health gate failed: the container exited with code 3"),
            "{:?}",
            failure.actions
        );
        let back = by_name(&m, "a").unwrap();
        assert_eq!(back.container_id, v2.container_id);
        assert_eq!(back.state.status, Status::Running);
        assert_eq!(m.list().len(), 1, "{:?}", m.list());
    });
}

#[test]
fn a_health_command_must_exit_0_once_before_its_retries_run_out() {
    let dir = state_dir("healthcmd");
    run(async {
        let rt = FakeRuntime::new()
            .in_registry("app:1")
            .in_registry("app:2")
            .in_registry("app:3");
        rt.state().exec_exits.insert("/bin/sick".into(), 1);
        let m = manager(rt.clone(), &dir);
        let a = running(&m, container("a", "app:1", &[])).await;
        let ctx = Ctx::new(m.clone());
        let health = |cmd: &'static str| {
            [
                ("healthCmd", cmd),
                ("healthCmd", "--quick"),
                ("healthInterval", "200ms"),
                ("healthRetries", "2"),
            ]
        };
        // A command that fails twice in a row: the update rolls back to a.
        let (first, log) = sink();
        let mut op = operation(
            &m,
            &[desired_with("a", "app:2", &health("/bin/sick"))],
            first,
        );
        assert_eq!(
            op.run_standalone(&ctx, &|| false).await,
            Outcome::Incomplete
        );
        let failure = log
            .lock()
            .unwrap()
            .iter()
            .find(|f| f.status == status::ACTIVATION_FAILURE)
            .cloned()
            .unwrap();
        assert!(
            failure.actions[0].message.contains(
                "health gate failed: the health command \"/bin/sick --quick\" failed 2 times in a row (last: exited with code 1)"
            ),
            "{:?}",
            failure.actions
        );
        assert_eq!(rt.calls("exec"), 2);
        assert_eq!(by_name(&m, "a").unwrap().container_id, a.container_id);
        // One that exits 0: activated after its first run.
        let (second, log) = sink();
        let mut op = operation(
            &m,
            &[desired_with("a", "app:3", &health("/bin/fine"))],
            second,
        );
        assert_eq!(op.run_standalone(&ctx, &|| false).await, Outcome::Completed);
        assert_eq!(rt.calls("exec"), 3);
        let said = log.lock().unwrap().iter().any(|f| {
            f.actions.iter().any(|a| {
                a.message
                    .contains("waiting for the health gate: \"/bin/fine --quick\" exiting 0")
            })
        });
        assert!(said);
        assert_eq!(by_name(&m, "a").unwrap().image.name, "app:3");
    });
}

#[test]
fn health_uptime_values() {
    for (value, want) in [
        ("10s", Ok(Some(10_000))),
        ("1m30s", Ok(Some(90_000))),
        ("5", Ok(Some(5_000))),
        ("0s", Ok(None)),
        ("soon", Err(())),
    ] {
        let kv = vec![
            KeyValue {
                key: "image".into(),
                value: "app:1".into(),
            },
            KeyValue {
                key: "healthUptime".into(),
                value: value.into(),
            },
        ];
        let got = component_container(&ComponentWithConfig {
            id: "a".into(),
            version: "1".into(),
            config: kv,
        })
        .map(|c| c.extras().health_gate.map(|g| g.uptime_ms))
        .map_err(|e| assert!(e[0].contains("healthUptime"), "{e:?}"));
        assert_eq!(got, want, "{value}");
    }
}

#[test]
fn orchestrated_commands_are_taken_in_order_only() {
    let dir = state_dir("orchestrated");
    run(async {
        let rt = FakeRuntime::new().in_registry("new:1");
        let m = manager(rt.clone(), &dir);
        let (sink, log) = sink();
        let mut op = operation(&m, &[desired("c", "new:1", &[])], sink);
        let ctx = Ctx::new(m.clone());

        // Out of order: failure feedback, nothing done.
        assert!(!op.run(&ctx, "ACTIVATE", "").await);
        assert!(!op.run(&ctx, "UPDATE", "").await);
        assert!(!op.run(&ctx, "DOWNLOAD", "no-such-baseline").await);
        assert_eq!(rt.calls("pull") + rt.calls("create"), 0);
        let fbs = log.lock().unwrap().clone();
        assert_eq!(fbs[0].status, status::ACTIVATION_FAILURE);
        assert!(
            fbs[0]
                .message
                .contains("ACTIVATE is possible only after status UPDATE_SUCCESS"),
            "{}",
            fbs[0].message
        );
        assert_eq!(fbs[1].status, status::UPDATE_FAILURE);
        assert!(fbs[2].message.contains("Unknown baseline no-such-baseline"));
        log.lock().unwrap().clear();

        for command in ["DOWNLOAD", "UPDATE", "ACTIVATE"] {
            assert!(op.run(&ctx, command, "").await, "{command}");
        }
        // The same command again is out of order now.
        assert!(!op.run(&ctx, "DOWNLOAD", "").await);
        assert!(op.run(&ctx, "CLEANUP", "").await);
        assert_eq!(
            statuses(&log),
            [
                status::DOWNLOADING,
                status::DOWNLOAD_SUCCESS,
                status::UPDATING,
                status::UPDATE_SUCCESS,
                status::ACTIVATING,
                status::ACTIVATION_SUCCESS,
                status::DOWNLOAD_FAILURE,
                status::CLEANUP_SUCCESS,
                status::COMPLETED
            ]
        );
        assert_eq!(by_name(&m, "c").unwrap().state.status, Status::Running);
    });
}

#[test]
fn download_progress_is_reported_and_an_interrupted_apply_converges_when_planned_again() {
    let dir = state_dir("resume");
    run(async {
        let rt = FakeRuntime::new().in_registry("app:1").in_registry("app:2");
        let m = manager(rt.clone(), &dir);
        let a = running(&m, container("a", "app:1", &[])).await;
        let desired = [desired("a", "app:2", &[]), desired("c", "app:1", &[])];
        let (sink, log) = sink();
        let mut op = operation(&m, &desired, sink.clone());
        let ctx = Ctx::new(m.clone());
        // The first attempt stops after the download (a crash, say).
        assert!(op.run(&ctx, "DOWNLOAD", "").await);
        assert!(by_name(&m, "a.next").is_some() && by_name(&m, "c").is_some());
        let download = log
            .lock()
            .unwrap()
            .iter()
            .find(|f| f.status == status::DOWNLOAD_SUCCESS)
            .cloned()
            .unwrap();
        assert!(download
            .actions
            .iter()
            .all(|a| a.status == act::DOWNLOAD_SUCCESS));
        // The pull's byte count (10 of 10 in the fake) reached the feedback.
        let progress: Vec<u8> = log
            .lock()
            .unwrap()
            .iter()
            .filter(|f| f.status == status::DOWNLOADING)
            .flat_map(|f| f.actions.iter().map(|a| a.progress))
            .collect();
        assert!(progress.contains(&100), "{progress:?}");

        // Planned again from what exists: the leftover is tidied, c is only checked.
        for l in super::diff::leftovers(&m.list(), super::operation::NEXT, super::operation::PREV) {
            if let super::diff::Leftover::Remove { id, .. } = l {
                m.remove(&id, true).await.unwrap();
            }
        }
        let p = plan(&desired, &m.list(), &[], &HashSet::new());
        let kinds: Vec<_> = p.iter().map(|s| (s.name.as_str(), s.kind())).collect();
        assert_eq!(kinds, [("a", Kind::Recreate), ("c", Kind::Check)]);
        let mut again = Operation::new("act-1", p, "containers", &|_| "1".into(), vec![], sink);
        assert_eq!(
            again.run_standalone(&ctx, &|| false).await,
            Outcome::Completed
        );
        assert_eq!(by_name(&m, "a").unwrap().image.name, "app:2");
        assert!(m.get(&a.container_id).is_err());
        assert_eq!(by_name(&m, "c").unwrap().state.status, Status::Running);
        assert_eq!(m.list().len(), 2);
    });
}

#[test]
fn a_superseded_operation_stops_before_its_next_phase() {
    let dir = state_dir("superseded");
    run(async {
        let rt = FakeRuntime::new().in_registry("app:1");
        let m = manager(rt.clone(), &dir);
        let (sink, _log) = sink();
        let mut op = operation(&m, &[desired("c", "app:1", &[])], sink);
        let ctx = Ctx::new(m.clone());
        assert_eq!(op.run_standalone(&ctx, &|| true).await, Outcome::Superseded);
        assert_eq!(rt.calls("pull") + rt.calls("create"), 0);
    });
}

/// A desired container with more component config (`port`, `env`, …).
fn desired_with(name: &str, image: &str, config: &[(&str, &str)]) -> Container {
    let mut kv = vec![KeyValue {
        key: "image".into(),
        value: image.into(),
    }];
    kv.extend(config.iter().map(|(k, v)| KeyValue {
        key: k.to_string(),
        value: v.to_string(),
    }));
    component_container(&ComponentWithConfig {
        id: name.into(),
        version: "1".into(),
        config: kv,
    })
    .unwrap()
}

/// Where `call` is in the runtime's calls.
fn call_index(rt: &FakeRuntime, call: &str) -> usize {
    rt.state()
        .calls
        .iter()
        .position(|c| c == call)
        .unwrap_or_else(|| panic!("no call {call:?}: {:?}", rt.state().calls))
}

#[test]
fn a_slow_stop_runs_beside_the_new_containers_and_its_end_is_said_when_it_is_real() {
    let dir = state_dir("beside");
    run(async {
        let rt = FakeRuntime::new().in_registry("app:1");
        let m = manager(rt.clone(), &dir);
        let old = running(&m, container("a", "app:1", &["A=1"])).await;
        // Its process ignores SIGTERM: the stop takes the whole timeout, then SIGKILL.
        rt.state().term_exit = None;
        // Each feedback with what the runtime has of the old container at that moment.
        type Seen = Arc<Mutex<Vec<(Feedback, bool, bool)>>>;
        let seen: Seen = Arc::default();
        let sink: Sink = {
            let (seen, rt, id) = (seen.clone(), rt.clone(), old.container_id.clone());
            Arc::new(move |_: &str, fb: Feedback| {
                let s = rt.state();
                let task = s.tasks.contains_key(&id);
                let exists = s.containers.contains_key(&id);
                drop(s);
                seen.lock().unwrap().push((fb, task, exists));
            })
        };
        let wanted = [desired("a", "app:1", &["A=2"]), desired("c", "app:1", &[])];
        let mut op = operation(&m, &wanted, sink);
        let ctx = Ctx::new(m.clone());
        assert_eq!(op.run_standalone(&ctx, &|| false).await, Outcome::Completed);

        let new_a = by_name(&m, "a").unwrap();
        let c = by_name(&m, "c").unwrap();
        assert_ne!(new_a.container_id, old.container_id);
        assert!(m.get(&old.container_id).is_err(), "the old a is removed");
        // Both new containers started before the old one was killed at the timeout.
        let killed = call_index(&rt, &format!("kill {} 9", old.container_id));
        assert!(call_index(&rt, &format!("kill {} 15", old.container_id)) < killed);
        assert!(call_index(&rt, &format!("start {}", new_a.container_id)) < killed);
        assert!(call_index(&rt, &format!("start {}", c.container_id)) < killed);

        let seen = seen.lock().unwrap().clone();
        let a_of = |fb: &Feedback| {
            fb.actions
                .iter()
                .find(|a| a.component.id == "containers:a")
                .cloned()
                .unwrap()
        };
        // The flow as ever (a status said again only repeats it).
        let mut flow: Vec<String> = Vec::new();
        for (fb, _, _) in &seen {
            if flow.last() != Some(&fb.status) {
                flow.push(fb.status.clone());
            }
        }
        assert_eq!(flow, FULL_FLOW);
        // Activated while the old one still ran, and said so.
        let (activated, task, _) = seen
            .iter()
            .find(|(fb, _, _)| fb.status == status::ACTIVATION_SUCCESS)
            .unwrap();
        assert!(*task, "the old task still ran at ACTIVATION_SUCCESS");
        assert_eq!(a_of(activated).status, act::ACTIVATION_SUCCESS);
        assert_eq!(
            a_of(activated).message,
            "New container instance is started; the old one is still stopping."
        );
        // Stopped and removed are said only once true, and each is said (before the end).
        let first = |text: &str| {
            seen.iter()
                .position(|(fb, _, _)| a_of(fb).message == text)
                .unwrap_or_else(|| panic!("never said {text:?}"))
        };
        let stopped = first("New container instance is started; the old one is stopped.");
        let removed = first("New container instance is started; the old one is removed.");
        assert!(!seen[stopped].1, "said stopped while its task was there");
        assert!(!seen[removed].2, "said removed while it was there");
        assert!(stopped < removed);
        let cleanup = seen
            .iter()
            .position(|(fb, _, _)| fb.status == status::CLEANUP_SUCCESS)
            .unwrap();
        assert!(removed <= cleanup);
        for (fb, task, exists) in &seen {
            let m = a_of(fb).message;
            if m.contains("is stopped") {
                assert!(!task, "{m}");
            }
            if m.contains("is removed") {
                assert!(!exists, "{m}");
            }
        }
    });
}

#[test]
fn an_old_container_on_the_same_port_stops_before_the_new_one_starts() {
    let dir = state_dir("same-port");
    run(async {
        let rt = FakeRuntime::new().in_registry("app:1");
        let net = crate::manager::fake::FakeNetwork::new(rt.clone());
        let m = crate::manager::fake::manager_with_network(rt.clone(), net, &dir);
        let web = running(
            &m,
            desired_with("web", "app:1", &[("env", "V=1"), ("port", "8080:80")]),
        )
        .await;
        let gone = running(&m, desired_with("gone", "app:1", &[("port", "9090:80")])).await;
        let slow = running(&m, desired_with("slow", "app:1", &[("env", "V=1")])).await;
        rt.state().term_exit = None;
        let wanted = [
            // Replaced, keeping its port; a new one on the port of one destroyed; one
            // replaced with nothing in the way.
            desired_with("web", "app:1", &[("env", "V=2"), ("port", "8080:80")]),
            desired_with("fresh", "app:1", &[("port", "9090:80")]),
            desired_with("slow", "app:1", &[("env", "V=2")]),
        ];
        let (sink, log) = sink();
        let mut op = operation(&m, &wanted, sink);
        let ctx = Ctx::new(m.clone());
        assert_eq!(op.run_standalone(&ctx, &|| false).await, Outcome::Completed);
        assert_eq!(statuses(&log), FULL_FLOW);
        let new_web = by_name(&m, "web").unwrap();
        let fresh = by_name(&m, "fresh").unwrap();
        let new_slow = by_name(&m, "slow").unwrap();
        for c in [&new_web, &fresh, &new_slow] {
            assert_eq!(c.state.status, Status::Running, "{}", c.container_name);
        }
        assert_eq!(m.list().len(), 3);
        // The port's holders were killed (at the timeout) before their successors started.
        let killed = |c: &Container| call_index(&rt, &format!("kill {} 9", c.container_id));
        let started = |c: &Container| call_index(&rt, &format!("start {}", c.container_id));
        assert!(killed(&web) < started(&new_web));
        assert!(killed(&gone) < started(&fresh));
        // The stops ran at once: the second SIGTERM went out before the first SIGKILL.
        let terms: Vec<usize> = [&web, &gone, &slow]
            .iter()
            .map(|c| call_index(&rt, &format!("kill {} 15", c.container_id)))
            .collect();
        let first_kill = [&web, &gone, &slow]
            .iter()
            .map(|c| killed(c))
            .min()
            .unwrap();
        assert!(
            terms.iter().all(|t| *t < first_kill),
            "{:?}",
            rt.state().calls
        );
        // UPDATE_SUCCESS came while the old ones were still stopping, and said so.
        let update_done = log
            .lock()
            .unwrap()
            .iter()
            .find(|f| f.status == status::UPDATE_SUCCESS)
            .cloned()
            .unwrap();
        let action = |fb: &Feedback, name: &str| {
            fb.actions
                .iter()
                .find(|a| a.component.id == format!("containers:{name}"))
                .cloned()
                .unwrap()
        };
        for name in ["web", "gone", "slow"] {
            assert_eq!(action(&update_done, name).status, act::UPDATING, "{name}");
        }
        // The one in nobody's way started before the port holders had stopped.
        assert!(started(&new_slow) < killed(&web));
        let last = log.lock().unwrap().last().cloned().unwrap();
        assert_eq!(action(&last, "gone").status, act::REMOVAL_SUCCESS);
        assert_eq!(
            action(&last, "web").message,
            "New container instance is started; the old one is removed."
        );
    });
}

#[test]
fn a_kept_container_that_runs_waits_for_no_stop() {
    let dir = state_dir("kept-runs");
    run(async {
        let rt = FakeRuntime::new().in_registry("app:1");
        let m = manager(rt.clone(), &dir);
        let host = [("network", "host")];
        let gone = running(&m, desired_with("gone", "app:1", &host)).await;
        let kept = running(&m, desired_with("kept", "app:1", &host)).await;
        let stopped = running(&m, desired_with("idle", "app:1", &host)).await;
        m.stop(&stopped.container_id, Default::default())
            .await
            .unwrap();
        rt.state().term_exit = None;
        // Each feedback with whether the destroyed one's task is still there.
        type Seen = Arc<Mutex<Vec<(Feedback, bool)>>>;
        let seen: Seen = Arc::default();
        let sink: Sink = {
            let (seen, rt, id) = (seen.clone(), rt.clone(), gone.container_id.clone());
            Arc::new(move |_: &str, fb: Feedback| {
                let task = rt.state().tasks.contains_key(&id);
                seen.lock().unwrap().push((fb, task));
            })
        };
        // Both kept ones share the host's network with the destroyed one.
        let wanted = [
            desired_with("kept", "app:1", &host),
            desired_with("idle", "app:1", &host),
        ];
        let mut op = operation(&m, &wanted, sink);
        let ctx = Ctx::new(m.clone());
        assert_eq!(op.run_standalone(&ctx, &|| false).await, Outcome::Completed);
        assert_eq!(by_name(&m, "kept").unwrap().container_id, kept.container_id);
        let idle = by_name(&m, "idle").unwrap();
        assert_eq!(idle.state.status, Status::Running);
        // kept was checked at once; idle, which had to start, only once gone had stopped.
        let first = |name: &str| {
            let seen = seen.lock().unwrap();
            seen.iter()
                .find(|(fb, _)| {
                    fb.actions.iter().any(|a| {
                        a.component.id == format!("containers:{name}")
                            && a.status == act::ACTIVATION_SUCCESS
                    })
                })
                .map(|(_, task)| *task)
                .unwrap()
        };
        assert!(
            first("kept"),
            "kept was said running while gone still stopped"
        );
        assert!(!first("idle"), "idle started only after gone had stopped");
        // Its last start (the first was the set-up's) came after gone was killed.
        let restarted = rt
            .state()
            .calls
            .iter()
            .rposition(|c| *c == format!("start {}", idle.container_id))
            .unwrap();
        assert!(call_index(&rt, &format!("kill {} 9", gone.container_id)) < restarted);
    });
}
