//! Container logs as containerd's shim hands them over. First the json-file log driver:
//! busybox tasks created by `ctr` with the `binary://` URI that `DriverOptions::to_uri` builds
//! for the real `leda-cm-logd` (no leda-cm daemon; the shim alone starts and ends the driver),
//! and the daemon giving that binary with `log_capture: "driver"`. Then the daemon's own
//! capture through fifos (the default): what it reads, and what a stopped or killed daemon
//! loses (nothing; at most the read in hand).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

use common::api::ApiDevice;
use common::{Harness, PrivateContainerd, LOGD};
use leda_cm::logs::{self, read_tail, DriverOptions, LogEntry, Mode, Stream};

const TIMEOUT: Duration = Duration::from_secs(20);

/// `ctr` against one socket and namespace of this test. On drop, removes every task,
/// container and image of the namespace and the namespace itself, also after a failure.
struct Ctr {
    sock: PathBuf,
    ns: String,
}

impl Ctr {
    fn new(h: &Harness, sock: &Path, test: &str) -> Ctr {
        let ctr = Ctr {
            sock: sock.to_path_buf(),
            ns: format!("logdrv-test-{}-{test}", h.run_id),
        };
        let image = format!("{}/{}", h.registry, h.image);
        ctr.ok(&["images", "pull", "--plain-http", &image]);
        ctr
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(["-n", &self.ns])
            .args(args)
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `sh -c script` in a busybox task whose stdout and stderr go to the driver.
    fn run(&self, h: &Harness, id: &str, opts: &DriverOptions, script: &str) {
        let uri = opts.to_uri(Path::new(LOGD));
        let image = format!("{}/{}", h.registry, h.image);
        self.ok(&[
            "run",
            "--log-uri",
            &uri,
            "-d",
            &image,
            id,
            "sh",
            "-c",
            script,
        ]);
    }

    fn status(&self, id: &str) -> Option<String> {
        self.ok(&["tasks", "ls"]).lines().skip(1).find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&id)).then(|| cols.last().unwrap().to_string())
        })
    }

    fn wait_stopped(&self, id: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while self.status(id).as_deref() != Some("STOPPED") {
            assert!(Instant::now() < deadline, "task {id} did not stop");
            sleep(Duration::from_millis(50));
        }
    }

    /// Deletes the stopped task: the shim closes the pipes and the driver exits.
    fn delete_task(&self, id: &str) {
        self.ok(&["tasks", "delete", id]);
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        let ids = |what: &str| -> Vec<String> {
            let out = self.cmd(&[what, "ls", "-q"]);
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        };
        for id in ids("tasks") {
            self.cmd(&["tasks", "kill", "-s", "SIGKILL", &id]);
        }
        for id in ids("tasks") {
            let deadline = Instant::now() + TIMEOUT;
            while !self.cmd(&["tasks", "delete", "-f", &id]).status.success()
                && Instant::now() < deadline
            {
                sleep(Duration::from_millis(100));
            }
        }
        for id in ids("containers") {
            self.cmd(&["containers", "delete", &id]);
        }
        for image in ids("images") {
            self.cmd(&["images", "rm", "--sync", &image]);
        }
        // Content and snapshots go with the garbage collection that `--sync` waited for.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(["namespaces", "rm", &self.ns])
            .output()
            .is_ok_and(|o| o.status.success())
            && Instant::now() < deadline
        {
            sleep(Duration::from_millis(200));
        }
    }
}

/// PIDs of log driver processes writing to `dir` (found by their argument).
fn drivers_for(dir: &Path) -> Vec<u32> {
    let want = dir.as_os_str().as_encoded_bytes();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).any(|arg| arg == want))
        })
        .collect()
}

fn proc_field(pid: u32, field: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .unwrap_or_default()
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}

fn logs_of(entries: &[LogEntry], stream: Stream) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| e.log.as_str())
        .collect()
}

#[test]
fn stdout_and_stderr_become_docker_json_lines() {
    let h = Harness::get();
    let dir = h.test_dir("logdriver-basic").join("logs");
    let ctr = Ctr::new(&h, &h.containerd_sock, "basic");
    let before = SystemTime::now();
    ctr.run(
        &h,
        "basic",
        &DriverOptions::new(&dir),
        "echo out-1; echo 'err <1> & \"q\"' >&2; echo out-2; sleep 1; printf 'no newline'",
    );

    // The driver runs under the shim with no capabilities and no_new_privs.
    let pid = wait_for("the driver", || drivers_for(&dir).first().copied());
    let parent: u32 = proc_field(pid, "PPid").parse().unwrap();
    assert!(
        cmdline(parent).contains("containerd-shim-runc-v2"),
        "parent of the driver: {}",
        cmdline(parent)
    );
    for set in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(proc_field(pid, set), "0000000000000000", "{set}");
    }
    assert_eq!(proc_field(pid, "NoNewPrivs"), "1");

    ctr.wait_stopped("basic");
    // The last line has no newline: it is written when the pipe ends, at task deletion.
    let (entries, _) = read_tail(&dir, None).unwrap();
    assert!(!entries.iter().any(|e| e.log == "no newline"));
    ctr.delete_task("basic");
    wait_for("the driver to exit", || {
        drivers_for(&dir).is_empty().then_some(())
    });
    let after = SystemTime::now();

    let (entries, _) = read_tail(&dir, None).unwrap();
    assert_eq!(
        logs_of(&entries, Stream::Stdout),
        ["out-1\n", "out-2\n", "no newline"]
    );
    assert_eq!(logs_of(&entries, Stream::Stderr), ["err <1> & \"q\"\n"]);
    for e in &entries {
        assert!(before <= e.time && e.time <= after, "{e:?}");
    }
    // Docker's bytes: key order, escaping, nine fraction digits and Z.
    let text = fs::read_to_string(logs::live_file(&dir)).unwrap();
    let stderr_line = text.lines().find(|l| l.contains("stderr")).unwrap();
    let (head, time) = stderr_line.split_once(",\"time\":\"").unwrap();
    assert_eq!(
        head,
        r#"{"log":"err \u003c1\u003e \u0026 \"q\"\n","stream":"stderr""#
    );
    assert_eq!(time.len(), 32, "{time}");
    assert!(time.ends_with("Z\"}"), "{time}");
    assert_eq!(&time[19..20], ".");
    assert!(humantime::parse_rfc3339(&time[..30]).is_ok(), "{time}");
    assert!(text
        .lines()
        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

#[test]
fn rotation_keeps_files_under_the_limit_and_tail_spans_them() {
    let h = Harness::get();
    let dir = h.test_dir("logdriver-rotation").join("logs");
    let ctr = Ctr::new(&h, &h.containerd_sock, "rotation");
    let opts = DriverOptions {
        max_size: Some(logs::parse_size("1k").unwrap()),
        max_files: 3,
        ..DriverOptions::new(&dir)
    };
    ctr.run(
        &h,
        "rotation",
        &opts,
        "i=100; while [ $i -lt 200 ]; do i=$((i+1)); echo line-$i; done",
    );
    ctr.wait_stopped("rotation");
    wait_for("line-200", || {
        let (last, _) = read_tail(&dir, Some(1)).unwrap();
        (last.first().map(|e| e.log.as_str()) == Some("line-200\n")).then_some(())
    });

    let files = logs::log_files(&dir).unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["json.log.2", "json.log.1", "json.log"]);
    for f in &files {
        let len = fs::metadata(f).unwrap().len();
        assert!(len <= 1024 && len > 0, "{}: {len} bytes", f.display());
    }
    let want = |from: u32| -> Vec<String> { (from..=200).map(|i| format!("line-{i}\n")).collect() };
    for n in [1, 5, 15, 25] {
        let (entries, _) = read_tail(&dir, Some(n)).unwrap();
        assert_eq!(
            logs_of(&entries, Stream::Stdout),
            want(201 - n as u32),
            "tail {n}"
        );
    }
    // All that is left: a run of consecutive lines ending with the last, across the 3 files.
    let (all, _) = read_tail(&dir, None).unwrap();
    let first: u32 = all[0]
        .log
        .trim_start_matches("line-")
        .trim()
        .parse()
        .unwrap();
    assert!(all.len() >= 25 && all.len() < 100, "{}", all.len());
    assert_eq!(logs_of(&all, Stream::Stdout), want(first));
    ctr.delete_task("rotation");
}

#[test]
fn a_100_kib_line_is_split_at_16_kib() {
    let h = Harness::get();
    let dir = h.test_dir("logdriver-long").join("logs");
    let ctr = Ctr::new(&h, &h.containerd_sock, "long");
    let opts = DriverOptions {
        mode: Mode::NonBlocking {
            max_buffer: logs::parse_size("1M").unwrap(),
        },
        ..DriverOptions::new(&dir)
    };
    ctr.run(
        &h,
        "long",
        &opts,
        "head -c 102400 /dev/zero | tr '\\000' a; echo; echo after",
    );
    ctr.wait_stopped("long");
    ctr.delete_task("long");
    wait_for("the driver to exit", || {
        drivers_for(&dir).is_empty().then_some(())
    });

    let (entries, _) = read_tail(&dir, None).unwrap();
    let pieces: Vec<usize> = entries.iter().map(|e| e.log.len()).collect();
    assert_eq!(pieces, [16384, 16384, 16384, 16384, 16384, 16384, 4097, 6]);
    let joined: String = entries[..7].iter().map(|e| e.log.as_str()).collect();
    assert_eq!(joined, "a".repeat(102_400) + "\n");
    assert_eq!(entries[7].log, "after\n");
    assert!(entries.iter().all(|e| e.stream == Stream::Stdout));
}

/// Logging needs nothing but the shim: the driver keeps writing while containerd itself is
/// killed, and no leda-cm daemon exists at all.
#[test]
fn logging_goes_on_with_only_the_shim_around() {
    let h = Harness::get();
    let base = h.test_dir("logdriver-shim");
    let dir = base.join("logs");
    let ctrd_dir = base.join("ctrd");
    // Dropped after `ctr`, which needs containerd to clean up.
    let ctrd = PrivateContainerd::start(&h, &ctrd_dir);
    let ctr = Ctr::new(&h, &ctrd.socket(), "shim");
    ctr.run(
        &h,
        "ticker",
        &DriverOptions::new(&dir),
        "i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.1; done",
    );
    let count = || read_tail(&dir, None).unwrap().0.len();
    wait_for("first ticks", || (count() >= 3).then_some(()));

    let pid = fs::read_to_string(ctrd_dir.join("containerd.pid")).unwrap();
    let status = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
    let pid: u32 = pid.trim().parse().unwrap();
    wait_for("containerd to die", || {
        (!Path::new(&format!("/proc/{pid}")).exists() || proc_field(pid, "State").starts_with('Z'))
            .then_some(())
    });
    let driver = drivers_for(&dir)[0];
    let parent: u32 = proc_field(driver, "PPid").parse().unwrap();
    assert!(cmdline(parent).contains("containerd-shim-runc-v2"));

    let at_kill = count();
    wait_for("five more lines with containerd dead", || {
        (count() >= at_kill + 5).then_some(())
    });
    // containerd is still dead: the lines came with only the shim around.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists() || proc_field(pid, "State").starts_with('Z')
    );
    let (entries, _) = read_tail(&dir, None).unwrap();
    let want: Vec<String> = (1..=entries.len()).map(|i| format!("tick-{i}\n")).collect();
    assert_eq!(logs_of(&entries, Stream::Stdout), want);

    // containerd comes back and finds the task still logging.
    h.lib(&format!(
        "harness_start_containerd '{}'",
        ctrd_dir.display()
    ));
    assert_eq!(ctr.status("ticker").as_deref(), Some("RUNNING"));
    let back = count();
    wait_for("ticks after the restart", || (count() > back).then_some(()));
    drop(ctr);
    drop(ctrd);
}

/// Creates and starts `name` running `sh -c script` on the device; its ID and log dir.
fn start_sh(d: &ApiDevice, name: &str, script: &str) -> (String, PathBuf) {
    let image = d.image();
    let id = d
        .ok(&["create", "-n", name, &image, "sh", "-c", script])
        .trim()
        .to_string();
    d.ok(&["start", "-n", name]);
    let dir = d.setup.state_dir.join("containers").join(&id);
    (id, dir)
}

#[test]
fn with_log_capture_driver_the_daemon_gives_its_containers_leda_cm_logd() {
    let d = ApiDevice::start(
        "logdriver-daemon",
        serde_json::json!({"containers": {"log_capture": "driver"}}),
    );
    let (_, dir) = start_sh(&d, "talker", "echo hi; sleep 60");
    let pids = wait_for("the container's log driver", || {
        let pids = drivers_for(&dir);
        (!pids.is_empty()).then_some(pids)
    });
    assert_eq!(pids.len(), 1, "{pids:?}");
    let exe = fs::read_link(format!("/proc/{}/exe", pids[0])).unwrap();
    assert_eq!(
        exe.file_name().and_then(|n| n.to_str()),
        Some("leda-cm-logd"),
        "driver {}: {}",
        exe.display(),
        cmdline(pids[0])
    );
    // And it logs: the line reaches the container's json-file log.
    wait_for("the echoed line", || {
        let (entries, _) = read_tail(&dir, None).ok()?;
        entries.iter().any(|e| e.log == "hi\n").then_some(())
    });
    d.ok(&["remove", "-f", "-n", "talker"]);
}

/// The fifos of container `id`'s tasks under the daemon's runtime dir.
fn fifos_of(d: &ApiDevice, id: &str) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = fs::read_dir(d.setup.runtime_dir.join("logs").join(id))
        .map(|r| r.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    all.sort();
    all
}

#[test]
fn by_default_the_daemon_reads_its_containers_output_through_fifos() {
    let d = ApiDevice::start("logcapture-default", serde_json::json!({}));
    let (id, dir) = start_sh(&d, "talker", "echo hi; echo oops >&2; sleep 60");
    wait_for("both lines", || {
        let (entries, _) = read_tail(&dir, None).ok()?;
        (logs_of(&entries, Stream::Stdout) == ["hi\n"]
            && logs_of(&entries, Stream::Stderr) == ["oops\n"])
        .then_some(())
    });
    // No process of its own: no driver, and the task's stdout is one of the daemon's fifos.
    assert!(drivers_for(&dir).is_empty(), "{:?}", drivers_for(&dir));
    let fifos = fifos_of(&d, &id);
    assert_eq!(fifos.len(), 2, "{fifos:?}");
    for f in &fifos {
        use std::os::unix::fs::FileTypeExt;
        assert!(fs::metadata(f).unwrap().file_type().is_fifo(), "{f:?}");
    }
    // A restart gives the new task fifos of its own; the old task's go with it.
    d.ok(&["stop", "-n", "talker"]);
    d.ok(&["start", "-n", "talker"]);
    wait_for("the second task's line", || {
        let (entries, _) = read_tail(&dir, None).ok()?;
        (logs_of(&entries, Stream::Stdout) == ["hi\n", "hi\n"]).then_some(())
    });
    let second = wait_for("only the new task's fifos", || {
        let now = fifos_of(&d, &id);
        (now.len() == 2 && now != fifos).then_some(now)
    });
    assert!(second.iter().all(|f| !fifos.contains(f)), "{second:?}");
    d.ok(&["remove", "-f", "-n", "talker"]);
    wait_for("the fifos to go with the container", || {
        (!d.setup.runtime_dir.join("logs").join(&id).exists()).then_some(())
    });
}

/// The script of a container that says `ready`, waits for SIGUSR1 and then writes `n`
/// numbered lines as fast as it can, then `end`.
fn burst_script(n: u32) -> String {
    format!(
        "echo ready; trap 'go=1' USR1; while [ -z \"$go\" ]; do sleep 0.05; done; \
         i=0; while [ $i -lt {n} ]; do i=$((i+1)); echo line-$i; done; echo end; sleep 600"
    )
}

/// Where the process `pid` sleeps in the kernel.
fn wchan(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default()
}

/// The PIDs in the container's cgroup (its shell and whatever it runs).
fn container_pids(d: &ApiDevice, id: &str) -> Vec<u32> {
    let out = d.ctr(&["tasks", "ps", id]);
    out.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Starts a burst container on `d` and waits for its `ready` line; returns its ID and log dir.
fn start_burst(d: &ApiDevice, n: u32) -> (String, PathBuf) {
    let (id, dir) = start_sh(d, "burst", &burst_script(n));
    wait_for("the ready line", || {
        let (entries, _) = read_tail(&dir, None).ok()?;
        (logs_of(&entries, Stream::Stdout) == ["ready\n"]).then_some(())
    });
    (id, dir)
}

/// Waits until the container is blocked writing to its full stdout: nobody reads it.
fn wait_blocked_on_output(d: &ApiDevice, id: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let pids = container_pids(d, id);
        let states: Vec<(u32, String)> = pids.iter().map(|&p| (p, wchan(p))).collect();
        if states.iter().any(|(_, w)| w.ends_with("pipe_write")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the container did not block on its full stdout: {states:?}\n{}",
            d.ctr(&["tasks", "ps", id])
        );
        sleep(Duration::from_millis(50));
    }
}

const BURST: u32 = 40_000;
/// Long enough that the daemon is killed in the middle of it.
const KILL_BURST: u32 = 100_000;

#[test]
fn output_written_while_the_daemon_is_stopped_waits_and_none_is_lost() {
    let mut d = ApiDevice::start("logcapture-sigterm", serde_json::json!({}));
    let (id, dir) = start_burst(&d, BURST);
    let status = d.daemon.take().unwrap().stop();
    assert!(status.success(), "{status:?}");
    d.ctr(&["tasks", "kill", "-s", "SIGUSR1", &id]);
    // ~440 KB with no reader: more than the fifo and the shim's pipe hold.
    wait_blocked_on_output(&d, &id);
    let before = read_tail(&dir, None).unwrap().0.len();
    assert_eq!(before, 1, "lines were written with no daemon running");

    let daemon = d.setup.spawn_ready(2, Duration::from_secs(15));
    wait_for("the end line", || {
        let (entries, _) = read_tail(&dir, None).ok()?;
        entries.iter().any(|e| e.log == "end\n").then_some(())
    });
    let (entries, _) = read_tail(&dir, None).unwrap();
    let want: Vec<String> = std::iter::once("ready\n".to_string())
        .chain((1..=BURST).map(|i| format!("line-{i}\n")))
        .chain(std::iter::once("end\n".to_string()))
        .collect();
    let got = logs_of(&entries, Stream::Stdout);
    assert_eq!(got.len(), want.len());
    assert!(got == want, "lines lost, doubled or out of order");
    d.daemon = Some(daemon);
    d.ok(&["remove", "-f", "-n", "burst"]);
}

#[test]
fn a_kill_9_of_the_daemon_mid_output_loses_at_most_the_read_in_hand() {
    let mut d = ApiDevice::start("logcapture-kill9", serde_json::json!({}));
    let (id, dir) = start_burst(&d, KILL_BURST);
    d.ctr(&["tasks", "kill", "-s", "SIGUSR1", &id]);
    wait_for("a thousand lines", || {
        (read_tail(&dir, None).ok()?.0.len() > 1000).then_some(())
    });
    let mut daemon = d.daemon.take().unwrap();
    daemon.signal(libc::SIGKILL);
    daemon
        .wait_exit(Duration::from_secs(5))
        .expect("kill -9 did not end the daemon");
    let at_kill = read_tail(&dir, None).unwrap().0.len();
    assert!(
        at_kill < KILL_BURST as usize,
        "the burst ended before the kill"
    );
    wait_blocked_on_output(&d, &id);

    let daemon = d.setup.spawn_ready(2, Duration::from_secs(15));
    wait_for("the end line", || {
        let (entries, _) = read_tail(&dir, None).ok()?;
        entries.iter().any(|e| e.log == "end\n").then_some(())
    });
    let (entries, _) = read_tail(&dir, None).unwrap();
    let got = logs_of(&entries, Stream::Stdout);
    // In order, each once; one gap at the kill of at most one read (4 KiB) plus the line
    // that read ended in (whose rest may stand as an entry of its own).
    let numbers: Vec<Option<u32>> = got
        .iter()
        .map(|l| l.strip_prefix("line-")?.strip_suffix('\n')?.parse().ok())
        .collect();
    let fragments: Vec<&&str> = got
        .iter()
        .zip(&numbers)
        .filter(|(l, n)| n.is_none() && **l != "ready\n" && **l != "end\n")
        .map(|(l, _)| l)
        .collect();
    assert!(fragments.len() <= 1, "{fragments:?}");
    let seen: Vec<u32> = numbers.iter().flatten().copied().collect();
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "doubled or out of order"
    );
    let missing: Vec<u32> = (1..=KILL_BURST)
        .filter(|i| seen.binary_search(i).is_err())
        .collect();
    let lost_bytes: usize = missing.iter().map(|i| format!("line-{i}\n").len()).sum();
    assert!(
        lost_bytes <= 4096 + 16,
        "lost {} lines, {lost_bytes} bytes",
        missing.len()
    );
    if let (Some(first), Some(last)) = (missing.first(), missing.last()) {
        assert_eq!(
            (last - first + 1) as usize,
            missing.len(),
            "more than one gap"
        );
    }
    assert_eq!(got.first(), Some(&"ready\n"));
    assert_eq!(got.last(), Some(&"end\n"));
    d.daemon = Some(daemon);
    d.ok(&["remove", "-f", "-n", "burst"]);
}
