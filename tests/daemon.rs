//! The daemon as systemd sees it: readiness, status, watchdog, capabilities, paths, lock,
//! configuration errors and shutdown. Runs the real binary against the harness's containerd.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{DaemonSetup, Harness, NotifyListener, PrivateContainerd};

const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Bits of CAP_NET_ADMIN(12), CAP_NET_RAW(13), CAP_SYS_PTRACE(19), CAP_SYS_ADMIN(21): the set
/// documented for bridge networking (ARCHITECTURE.md, src/privileges.rs).
const BRIDGE_CAPS: u64 = (1 << 12) | (1 << 13) | (1 << 19) | (1 << 21);

fn hex(mask: u64) -> String {
    format!("{mask:016x}")
}

#[test]
fn ready_status_and_watchdog_pings_that_stop_when_the_main_loop_hangs() {
    let h = Harness::get();
    let mut setup = DaemonSetup::new(&h, "watchdog");
    let notify = NotifyListener::new(&setup.dir);
    // 400 ms: pings every 200 ms while the main loop beat within the last 200 ms.
    setup.env.push(("WATCHDOG_USEC".into(), "400000".into()));
    let daemon = setup.spawn(Some(&notify));

    assert!(
        notify.wait_ready(READY_TIMEOUT),
        "no READY=1; log:\n{}",
        daemon.stderr()
    );
    let statuses = notify.statuses();
    assert!(
        statuses
            .iter()
            .any(|s| s.starts_with("running: containerd")),
        "{statuses:?}"
    );
    assert!(
        statuses.iter().any(|s| s == "loading configuration"),
        "{statuses:?}"
    );

    // The ping rate is what is measured: five pings, within 1.5 s of each other.
    let pings = || -> Vec<Instant> {
        notify
            .lines()
            .into_iter()
            .filter(|(_, l)| l == "WATCHDOG=1")
            .map(|(at, _)| at)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while pings().len() < 5 {
        assert!(
            Instant::now() < deadline,
            "only {} pings in 5 s",
            pings().len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let pings = pings();
    let five = &pings[pings.len() - 5..];
    assert!(
        five[4] - five[0] < Duration::from_millis(1500),
        "five pings took {:?}",
        five[4] - five[0]
    );
    for pair in pings.windows(2).rev().take(4) {
        let gap = pair[1] - pair[0];
        assert!(
            gap < Duration::from_millis(400),
            "gap {gap:?} between pings"
        );
    }

    // The test-only hook (feature fault-injection): the main loop hangs, the timer does not.
    daemon.signal(libc::SIGUSR2);
    assert!(daemon.wait_log("the main loop hangs now", Duration::from_secs(5)));
    // The watchdog task saw the stale loop and decided: it logs that after the last ping it
    // sent. A mark of ours queued on the socket after that line is where pings from a later
    // decision would begin.
    assert!(
        daemon.wait_log("withholding watchdog pings", Duration::from_secs(5)),
        "{}",
        daemon.stderr()
    );
    notify.mark("hang");
    // No ping in 1.5 s: seven watchdog periods; the time without pings is what is tested.
    let late = pings_through_window(&notify, &setup, "hang", Duration::from_millis(1500), None);
    assert_eq!(late, 0, "{late} pings after the hang");
}

/// The pings between the mark `name` (already queued) and the end of `window` after it, told
/// only once the daemon proved its runtime ran through the window: it answers two API
/// requests after the window (the watchdog task shares that one-thread runtime: a tick that
/// fell due in the window is taken no later than those), then a second mark is read. Without
/// that proof a daemon that was merely frozen would pass.
fn pings_through_window(
    notify: &NotifyListener,
    setup: &DaemonSetup,
    name: &str,
    window: Duration,
    mqtt_port: Option<u16>,
) -> usize {
    let marked = Instant::now();
    // The window is the time under test (watchdog periods), so it is waited out.
    while marked.elapsed() < window {
        std::thread::sleep(Duration::from_millis(20));
    }
    match mqtt_port {
        // The gRPC loop is the one hung: the update agent answers instead (two current
        // state requests over MQTT), which proves the runtime ran through the window.
        Some(port) => {
            let peer = common::mqtt::Peer::connect(port, &["containersupdate/currentstate"]);
            for i in 0..2 {
                let activity = format!("{name}-proof-{i}");
                peer.publish(
                    "containersupdate/currentstate/get",
                    &serde_json::json!({"activityId": activity, "timestamp": 1, "payload": {}}),
                );
                assert!(
                    peer.wait(
                        "containersupdate/currentstate",
                        Duration::from_secs(10),
                        |j| j["activityId"] == activity.as_str()
                    )
                    .is_some(),
                    "{name}: the update agent did not answer after the window"
                );
            }
        }
        None => {
            let api = setup.runtime_dir.join("cm.sock");
            for _ in 0..2 {
                let out = common::kanto_cm(&api, &["list", "-q"]);
                assert!(
                    out.status.success(),
                    "{name}: the API did not answer after the window: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
    let end = format!("{name}-end");
    notify.mark(&end);
    let end_line = format!("TEST_MARK={end}");
    notify
        .lines_after_mark(name)
        .iter()
        .take_while(|l| **l != end_line)
        .filter(|l| *l == "WATCHDOG=1")
        .count()
}

/// Every long-lived loop feeds the watchdog: hang any one of them (test-only hook) and the
/// pings stop, so systemd restarts the daemon.
#[test]
fn watchdog_pings_stop_when_any_loop_hangs() {
    let h = Harness::get();
    for name in [
        "mqtt",
        "update-agent",
        "things",
        "containerd-monitor",
        "image-gc",
        "drift-check",
        "grpc",
        "deployment",
        "watch",
        "signals",
    ] {
        let mut setup = DaemonSetup::new(&h, &format!("watchdog-{name}"));
        let broker = common::mqtt::Broker::start(&h, &setup.dir);
        let manifests = setup.dir.join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        setup.extra_config = serde_json::json!({
            "update_agent": {"enable": true},
            "things": {"enable": true},
            "connection": {"broker_url": broker.url()},
            "deployment": {"enable": true, "ctr_dir": manifests},
        });
        setup.env.push(("WATCHDOG_USEC".into(), "400000".into()));
        setup
            .env
            .push(("LEDA_CM_FAULT_HANG_LOOP".into(), name.into()));
        let notify = NotifyListener::new(&setup.dir);
        let daemon = setup.spawn(Some(&notify));
        assert!(
            notify.wait_ready(READY_TIMEOUT),
            "{name}: {}",
            daemon.stderr()
        );
        let pings = || {
            notify
                .lines()
                .into_iter()
                .filter(|(_, l)| l == "WATCHDOG=1")
                .count()
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while pings() < 3 {
            assert!(
                Instant::now() < deadline,
                "{name}: no pings before the hang"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon.signal(libc::SIGUSR2);
        assert!(
            daemon.wait_log(
                &format!("the {name} loop hangs now"),
                Duration::from_secs(5)
            ),
            "{name}: the hook did not fire\n{}",
            daemon.stderr()
        );
        // The watchdog task names the stale loop when it starts withholding.
        assert!(
            daemon.wait_log(
                &format!("loop {name} has not beaten"),
                Duration::from_secs(5)
            ),
            "{name}: pings were not withheld\n{}",
            daemon.stderr()
        );
        // Pings sent before that line are read before a mark queued after it.
        notify.mark(name);
        // Timing under test: over five watchdog periods (200 ms) after that, no ping.
        let late = pings_through_window(
            &notify,
            &setup,
            name,
            Duration::from_millis(1000),
            (name == "grpc").then_some(broker.port),
        );
        assert_eq!(late, 0, "{name}: {late} pings after the hang");
        drop(daemon);
        drop(broker);
    }
}

#[test]
fn capabilities_are_reduced_to_the_documented_set_with_no_new_privs() {
    let h = Harness::get();
    for (bridge_disabled, want) in [(false, BRIDGE_CAPS), (true, 0)] {
        let mut setup = DaemonSetup::new(&h, "caps");
        setup.extra_config =
            serde_json::json!({"network": {"default_bridge": {"disable": bridge_disabled}}});
        let notify = NotifyListener::new(&setup.dir);
        let daemon = setup.spawn(Some(&notify));
        assert!(notify.wait_ready(READY_TIMEOUT), "{}", daemon.stderr());
        assert_eq!(daemon.proc_status("CapEff"), hex(want));
        assert_eq!(daemon.proc_status("CapPrm"), hex(want));
        assert_eq!(daemon.proc_status("CapBnd"), hex(want));
        assert_eq!(daemon.proc_status("CapInh"), hex(0));
        assert_eq!(daemon.proc_status("CapAmb"), hex(0));
        assert_eq!(daemon.proc_status("NoNewPrivs"), "1");
        let names = if bridge_disabled {
            "capabilities kept: none"
        } else {
            "capabilities kept: cap_net_admin cap_net_raw cap_sys_ptrace cap_sys_admin"
        };
        assert!(daemon.stderr().contains(names), "{}", daemon.stderr());
        assert!(daemon.stop().success());
    }
}

#[test]
fn runs_with_a_read_only_root_where_only_its_dirs_are_writable() {
    let h = Harness::get();
    let mut setup = DaemonSetup::new(&h, "roroot");
    fs::create_dir_all(&setup.state_dir).unwrap();
    fs::create_dir_all(&setup.runtime_dir).unwrap();
    setup.wrapper = vec![
        h.scripts.join("ro-root").display().to_string(),
        setup.state_dir.display().to_string(),
        setup.runtime_dir.display().to_string(),
        "--".into(),
    ];
    let notify = NotifyListener::new(&setup.dir);
    let daemon = setup.spawn(Some(&notify));
    assert!(notify.wait_ready(READY_TIMEOUT), "{}", daemon.stderr());
    assert!(setup.runtime_dir.join("leda-cm.lock").exists());
    let status = daemon.stop();
    assert!(status.success(), "{status:?}");
}

#[test]
fn state_dir_on_a_read_only_file_system_is_a_clear_error() {
    let h = Harness::get();
    let mut setup = DaemonSetup::new(&h, "rostate");
    // Only the runtime dir is writable: the state dir does not exist and cannot be made.
    fs::create_dir_all(&setup.runtime_dir).unwrap();
    setup.wrapper = vec![
        h.scripts.join("ro-root").display().to_string(),
        setup.runtime_dir.display().to_string(),
        "--".into(),
    ];
    let mut daemon = setup.spawn(None);
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("did not exit");
    assert_eq!(status.code(), Some(73), "{}", daemon.stderr());
    let err = daemon.stderr();
    assert!(
        err.contains(&format!(
            "cannot create state dir {}",
            setup.state_dir.display()
        )),
        "{err}"
    );
    assert!(err.contains("Read-only file system"), "{err}");

    // An existing but read-only state dir: "not writable", naming it.
    fs::create_dir_all(&setup.state_dir).unwrap();
    let mut daemon = setup.spawn(None);
    let status = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("did not exit");
    assert_eq!(status.code(), Some(73));
    assert!(
        daemon.stderr().contains(&format!(
            "state dir {} is not writable",
            setup.state_dir.display()
        )),
        "{}",
        daemon.stderr()
    );
}

#[test]
fn malformed_config_names_file_line_column_and_key_and_writes_nothing() {
    let h = Harness::get();
    let cases = [
        (
            "{\n  \"manager\": {\n    \"home_dir\": ,\n  }\n}",
            ":3:17: invalid JSON",
        ),
        (
            "{\n  \"things\": {\n    \"enable\": \"yes\"\n  }\n}",
            ":3:19: key `things.enable`: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "{\"deployment\": {\"mode\": \"sometimes\"}}",
            ":1:35: key `deployment.mode`: unknown variant `sometimes`",
        ),
    ];
    for (text, expected) in cases {
        let setup = DaemonSetup::new(&h, "badconfig");
        let path = setup.config_path();
        fs::write(&path, text).unwrap();
        let mut daemon =
            setup.spawn_with_args(None, &["--cfg-file".into(), path.display().to_string()]);
        let status = daemon
            .wait_exit(Duration::from_secs(10))
            .expect("did not exit");
        assert_eq!(status.code(), Some(78), "{}", daemon.stderr());
        let err = daemon.stderr();
        assert!(
            err.contains(&format!("config file {}{expected}", path.display())),
            "expected {expected:?} in:\n{err}"
        );
        assert!(!setup.state_dir.exists(), "state dir written");
        assert!(!setup.runtime_dir.exists(), "runtime dir written");
    }
    // A missing --cfg-file is a config error too; a wrong flag a usage error.
    let setup = DaemonSetup::new(&h, "badconfig");
    let mut d = setup.spawn_with_args(None, &["--cfg-file".into(), "/nonexistent.json".into()]);
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(78)
    );
    assert!(d
        .stderr()
        .contains("cannot read config file /nonexistent.json"));
    let mut d = setup.spawn_with_args(None, &["--no-such-flag".into()]);
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(64)
    );
}

fn fixture(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ocicrypt")
        .join(name)
        .display()
        .to_string()
}

/// Security settings leda-cm does not implement, and decryption keys it cannot use, refuse
/// the configuration (exit 78, which the
/// unit's RestartPreventExitStatus lists) before anything is written: a device set to run
/// only signed (or only decryptable) images never runs others.
#[test]
fn unimplemented_security_settings_refuse_to_start_and_write_nothing() {
    let h = Harness::get();
    let cases = [
        (
            serde_json::json!({"containers": {"image_verifier_type": "notation",
                "image_verifier_config": {"configDir": "/nonexistent/notation"}}}),
            "containers.image_verifier_config.configDir: /nonexistent/notation/trustpolicy.json",
        ),
        // Decryption keys that cannot be used: a missing file, a wrong password, a
        // recipient certificate that is not there. The password is never shown.
        (
            serde_json::json!({"containers": {"image_dec_keys": ["/keys/k.pem:hunter2"]}}),
            "configuration key `containers.image_dec_keys`: decryption key /keys/k.pem:",
        ),
        (
            serde_json::json!({"containers": {"image_dec_keys": [
                format!("{}:hunter2", fixture("rsa-legacy-encrypted.pem"))]}}),
            "configuration key `containers.image_dec_keys`: decryption key ",
        ),
        (
            serde_json::json!({"containers": {"image_dec_keys": [fixture("rsa.pem")],
                "image_dec_recipients": ["pkcs7:/c.pem"]}}),
            "configuration key `containers.image_dec_recipients`: decryption recipient",
        ),
        // A misspelt security key is refused, not warned about and left at its default.
        (
            serde_json::json!({"containers": {"image_verifer_type": "cosign"}}),
            "unknown key `containers.image_verifer_type` looks like the security setting `image_verifier_type`",
        ),
    ];
    for (extra, expected) in cases {
        let mut setup = DaemonSetup::new(&h, "refused");
        setup.extra_config = extra;
        let mut daemon = setup.spawn(None);
        let status = daemon
            .wait_exit(Duration::from_secs(10))
            .expect("did not exit");
        let err = daemon.stderr();
        assert_eq!(status.code(), Some(78), "{err}");
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
        assert!(
            !err.contains("hunter2"),
            "a key password in the log:\n{err}"
        );
        assert!(!setup.state_dir.exists(), "state dir written");
        assert!(!setup.runtime_dir.exists(), "runtime dir written");
    }
}

#[test]
fn unknown_keys_are_warnings_naming_them() {
    let h = Harness::get();
    let mut setup = DaemonSetup::new(&h, "unknownkeys");
    setup.extra_config = serde_json::json!({"manager": {"bogus_key": 1}, "no_such_section": {}});
    let notify = NotifyListener::new(&setup.dir);
    let daemon = setup.spawn(Some(&notify));
    assert!(notify.wait_ready(READY_TIMEOUT), "{}", daemon.stderr());
    let err = daemon.stderr();
    assert!(
        err.contains("unknown key `manager.bogus_key` ignored"),
        "{err}"
    );
    assert!(
        err.contains("unknown key `no_such_section` ignored"),
        "{err}"
    );
    assert!(daemon.stop().success());
}

#[test]
fn waits_for_containerd_then_survives_its_outage() {
    let h = Harness::get();
    let mut setup = DaemonSetup::new(&h, "ctrdwait");
    let ctrd_dir = setup.dir.join("containerd");
    setup.containerd_sock = PrivateContainerd::socket_in(&ctrd_dir);
    let notify = NotifyListener::new(&setup.dir);
    let mut daemon = setup.spawn(Some(&notify));

    let waiting = format!(
        "STATUS=waiting for containerd at {}",
        setup.containerd_sock.display()
    );
    assert!(
        notify
            .wait_line(Duration::from_secs(10), |l| l == waiting)
            .is_some(),
        "{:?}",
        notify.statuses()
    );
    // The main loop took the monitor's "waiting" in (it logs it); a reload asked after that
    // is answered by the same loop, with READY=1 if it were ready and the waiting status if
    // not: what it says after RELOADING=1 is its word on readiness, given after the wait.
    assert!(
        daemon.wait_log("waiting for containerd: ", Duration::from_secs(10)),
        "{}",
        daemon.stderr()
    );
    daemon.signal(libc::SIGHUP);
    let after_reload = || -> Vec<String> {
        notify
            .lines()
            .into_iter()
            .map(|(_, l)| l)
            .skip_while(|l| l != "RELOADING=1")
            .skip(1)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !after_reload().contains(&waiting) {
        assert!(
            Instant::now() < deadline,
            "no answer to the reload: {:?}\n{}",
            notify.lines(),
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!notify.has_line("READY=1"), "READY without containerd");
    assert!(daemon.try_status().is_none());

    let ctrd = PrivateContainerd::start(&h, &ctrd_dir);
    let appeared = Instant::now();
    assert!(notify.wait_ready(READY_TIMEOUT), "{}", daemon.stderr());
    // The back-off is bounded by 1 s.
    assert!(
        appeared.elapsed() < Duration::from_secs(3),
        "{:?}",
        appeared.elapsed()
    );

    ctrd.stop();
    assert!(
        notify
            .wait_line(Duration::from_secs(10), |l| l.contains("went away"))
            .is_some(),
        "{:?}",
        notify.statuses()
    );
    // Statuses after "went away", in order.
    let since_away = || -> Vec<String> {
        notify
            .statuses()
            .into_iter()
            .skip_while(|s| !s.contains("went away"))
            .skip(1)
            .collect()
    };
    // It tried to reconnect, failed, and its main loop said so: it lived through that.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !since_away()
        .iter()
        .any(|s| s.starts_with("waiting for containerd"))
    {
        assert!(
            Instant::now() < deadline,
            "no reconnection attempt: {:?}\n{}",
            notify.statuses(),
            daemon.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(daemon.try_status().is_none(), "daemon died with containerd");

    let ctrd = PrivateContainerd::start(&h, &ctrd_dir);
    assert!(daemon.wait_log("containerd is back", Duration::from_secs(10)));
    // The status follows the log line.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !since_away()
        .last()
        .is_some_and(|s| s.starts_with("running: containerd"))
    {
        assert!(Instant::now() < deadline, "{:?}", notify.statuses());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(daemon.stop().success());
    drop(ctrd);
}

#[test]
fn a_second_instance_is_refused_by_the_lock() {
    let h = Harness::get();
    let setup = DaemonSetup::new(&h, "lock");
    let notify = NotifyListener::new(&setup.dir);
    let first = setup.spawn(Some(&notify));
    assert!(notify.wait_ready(READY_TIMEOUT), "{}", first.stderr());
    let mut second = setup.spawn(None);
    let status = second
        .wait_exit(Duration::from_secs(10))
        .expect("second did not exit");
    assert_eq!(status.code(), Some(75));
    let lock = setup.runtime_dir.join("leda-cm.lock");
    assert!(
        second.stderr().contains(&format!(
            "another leda-cm instance (pid {}) holds the lock {}",
            first.pid(),
            lock.display()
        )),
        "{}",
        second.stderr()
    );
    assert!(first.stop().success());
}

#[test]
fn sigterm_at_any_point_exits_within_the_bound_and_releases_the_lock() {
    let h = Harness::get();
    // Bound: SHUTDOWN_GRACE is 10 s; a daemon with nothing to finish needs far less.
    let bound = Duration::from_secs(3);
    // The moment of the SIGTERM is what each case tests: "at once" right after the spawn;
    // "during start-up" once it logged its start (before READY); the waiting one once the
    // main loop logged the wait; "after ready" once it is ready and has answered an API
    // request (its loops running).
    let moments = [
        "at once",
        "during start-up",
        "while waiting for containerd",
        "after ready",
    ];
    for what in moments {
        let mut setup = DaemonSetup::new(&h, "sigterm");
        if what == "while waiting for containerd" {
            setup.containerd_sock = setup.dir.join("absent.sock");
        }
        let notify = NotifyListener::new(&setup.dir);
        let mut daemon = setup.spawn(Some(&notify));
        if what == "during start-up" {
            assert!(
                daemon.wait_log("starting: state dir", Duration::from_secs(10)),
                "{}",
                daemon.stderr()
            );
        }
        if what == "after ready" {
            assert!(notify.wait_ready(READY_TIMEOUT), "{}", daemon.stderr());
            let out = common::kanto_cm(&setup.runtime_dir.join("cm.sock"), &["list", "-q"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if what == "while waiting for containerd" {
            assert!(
                daemon.wait_log("waiting for containerd: ", Duration::from_secs(10)),
                "{}",
                daemon.stderr()
            );
        }
        let sent = Instant::now();
        daemon.signal(libc::SIGTERM);
        let status = daemon
            .wait_exit(bound)
            .unwrap_or_else(|| panic!("{what}: no exit within {bound:?}"));
        assert!(
            status.success() || status.code().is_none(),
            "{what}: {status:?}\n{}",
            daemon.stderr()
        );
        println!("SIGTERM {what}: exited in {:?}", sent.elapsed());
        if what == "after ready" {
            assert!(notify.has_line("STOPPING=1"));
        }
        // The lock is free: a new instance gets past it (and is stopped again).
        if setup.runtime_dir.exists() {
            let second = setup.dir.join("second");
            fs::create_dir_all(&second).unwrap();
            let notify2 = NotifyListener::new(&second);
            let mut again = setup.spawn(Some(&notify2));
            assert!(
                again.wait_log("starting: state dir", Duration::from_secs(10)),
                "{what}: {}",
                again.stderr()
            );
            again.signal(libc::SIGTERM);
            assert!(again.wait_exit(bound).is_some());
        }
    }
}

#[test]
fn drop_ins_in_the_state_dir_are_merged_and_loose_modes_warned() {
    let h = Harness::get();
    let setup = DaemonSetup::new(&h, "dropins");
    let dropins = setup.state_dir.join("config.d");
    fs::create_dir_all(&dropins).unwrap();
    let file = dropins.join("50-test.json");
    fs::write(&file, r#"{"log": {"log_level": "DEBUG"}}"#).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let notify = NotifyListener::new(&setup.dir);
    let daemon = setup.spawn(Some(&notify));
    assert!(notify.wait_ready(READY_TIMEOUT), "{}", daemon.stderr());
    let err = daemon.stderr();
    assert!(err.contains("is readable by every user"), "{err}");
    // DEBUG from the drop-in is in effect.
    assert!(err.contains("starting task"), "{err}");
    assert!(daemon.stop().success());
}
