#!/usr/bin/env python3
"""Crash-consistency trials of leda-cm against the harness (tests/crash/run.sh runs this
under tests/harness/run, which exports LEDA_TEST_*).

Each trial starts a fresh leda-cm (own state dir, runtime dir, containerd namespace and
runc root) on the harness's containerd and registry and on a mosquitto broker of this suite
(persistence on, so that a broker restart loses no session), runs one scenario, interrupts
it at a random point, lets things come back and checks the invariants:

  converged     what the last request asked for exists and runs, nothing else does, with a
                client that repeats once what it got no answer for (kanto-cm users and the
                update agent try once); a start refused after the restart is a violation,
                and the suite measures how long until one is accepted
  orphans       every containerd container, active snapshot of the namespace has a leda-cm
                record and every record a containerd container; no lease is left, no shim
                of this containerd for the namespace runs without a task
  resurrected   a container whose removal had passed its point of no return before the
                kill (record gone, or the removal acknowledged to the client) is known to
                leda-cm again after the restart
  lost          an acknowledged create is gone after the restart; an apply whose broker or
                containerd restarted never sent its final COMPLETED
  state files   every *.json under the state dir parses; no temp file `.*.tmp-*` and no
                record dir without config.json once the daemon is ready again

Scenarios: apply (a multi-container desired state over MQTT, leda-cm SIGKILLed mid-apply,
re-published after the restart as an update manager would), create (`kanto-cm create` +
`start` of several containers), remove (`kanto-cm remove -f` of running containers),
broker (mosquitto stopped and started mid-apply), containerd (containerd stopped and started
mid-apply). --power-cut: the kill scenarios also SIGKILL containerd, the shims of this
harness's containerd and the container processes of the trial's namespace, drop what a
reboot drops (rootfs mounts, runc state, task bundles of the namespace), and start
containerd again before leda-cm.

The choices (scenario, kill point, outage length) come from --seed: the same seed gives the
same sequence of trials; --trial K runs only trial K of it. Timing itself is the machine's.
"""

import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

SCENARIOS = ["apply", "create", "remove", "broker", "containerd"]
KILL_SCENARIOS = {"apply", "create", "remove"}
# The kill point is a random fraction, up to this, of a reference duration measured in the
# trial's own set-up (a similar operation): past 1.0 some kills land after the operation.
MAX_FRACTION = 1.2
CONVERGE_TIMEOUT = 30.0
DESIRED = "containersupdate/desiredstate"
FEEDBACK = "containersupdate/desiredstatefeedback"

ENV = os.environ
HARNESS_DIR = ENV["LEDA_TEST_HARNESS_DIR"]
WORK = ENV["LEDA_TEST_WORKDIR"]
SOCK = ENV["LEDA_TEST_CONTAINERD_SOCK"]
CTRD_DIR = os.path.dirname(SOCK)
RUN_ID = ENV["LEDA_TEST_RUN_ID"]
REGISTRY = ENV["LEDA_TEST_REGISTRY"]
IMAGE = f"{REGISTRY}/{ENV['LEDA_TEST_SERVICE_IMAGE']}"


def say(*a):
    print(*a, flush=True)


def lib(call, check=True):
    """Runs a function of tests/harness/lib.sh."""
    out = subprocess.run(["bash", "-c", f". '{HARNESS_DIR}/lib.sh'; {call}"],
                         capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and out.returncode != 0:
        raise RuntimeError(f"{call}: {out.stderr.strip()}")
    return out


def free_port():
    return int(lib("free_port").stdout.strip())


def ctr(ns, *args, timeout=30):
    try:
        out = subprocess.run(["ctr", "--address", SOCK, "-n", ns, *args], capture_output=True,
                             text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        return out.stdout + out.stderr
    except subprocess.TimeoutExpired:
        return f"(ctr {' '.join(args)}: timed out)"


def ctr_table(ns, *args):
    """Rows of a `ctr ... ls` table, header dropped, split on white space."""
    out = subprocess.run(["ctr", "--address", SOCK, "-n", ns, *args], capture_output=True,
                         text=True, timeout=30, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)}: {out.stderr.strip()}")
    return [ln.split() for ln in out.stdout.splitlines()[1:] if ln.strip()]


def alive(pid):
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# --- the broker and the feedback listener ------------------------------------------------

class Broker:
    """mosquitto with persistence (a restart keeps sessions and queued QoS 1 messages)."""

    def __init__(self, root):
        self.dir = os.path.join(root, "mosquitto")
        self.port = free_port()
        self.extra = f"persistence true\\npersistence_location {self.dir}/\\nautosave_interval 1"

    def start(self):
        lib(f"harness_start_mosquitto '{self.dir}' {self.port} \"$(printf '{self.extra}')\"")

    def pid(self):
        with open(os.path.join(self.dir, "mosquitto.pid")) as f:
            return int(f.read().strip())

    def stop(self):
        lib(f"kill_pid {self.pid()}")

    def publish(self, topic, message):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(self.port), "-q", "1",
                        "-t", topic, "-m", json.dumps(message)], check=True, timeout=20)


class Listener:
    """mosquitto_sub on the feedback topic, with a persistent session of its own so that
    nothing published while the broker restarts is missed."""

    def __init__(self, broker, root):
        self.broker = broker
        self.path = os.path.join(root, "feedback.log")
        self.proc = None

    def start(self):
        out = open(self.path, "ab")
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.broker.port),
             "-c", "-i", f"crash-suite-{RUN_ID}", "-q", "1", "-v", "-t", FEEDBACK],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        # Subscribed once a probe published after the start comes back.
        probe = f"probe-{time.time()}"
        deadline = time.time() + 10
        while time.time() < deadline:
            self.broker.publish(FEEDBACK, {"activityId": probe})
            time.sleep(0.2)
            if any(a == probe for a, _, _ in self.all()):
                return
        raise RuntimeError("mosquitto_sub did not subscribe")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(5)

    def all(self):
        """(activityId, status, message) of every feedback heard, in order."""
        out = []
        try:
            with open(self.path, errors="replace") as f:
                for line in f:
                    _, _, payload = line.partition(" ")
                    try:
                        j = json.loads(payload)
                    except ValueError:
                        continue
                    p = j.get("payload") or {}
                    msg = p.get("message")
                    if str(p.get("status", "")).endswith("FAILURE"):
                        # The reasons are in the actions' messages.
                        msg = "; ".join(
                            f"{(a.get('component') or {}).get('id')}: {a.get('message')}"
                            for a in p.get("actions") or [] if a.get("status") != "COMPLETED"
                        ) or msg
                    out.append((j.get("activityId"), p.get("status"), msg))
        except FileNotFoundError:
            pass
        return out

    def statuses(self, activity):
        seq = []
        for a, s, _ in self.all():
            if a == activity and (not seq or seq[-1] != s):
                seq.append(s)
        return seq

    def failures(self, activity):
        """The *_FAILURE feedback of an activity with its reasons, first of each status."""
        seen = {}
        for a, s, m in self.all():
            if a == activity and s and s.endswith("FAILURE") and s not in seen:
                seen[s] = m
        return "; ".join(f"{s}: {str(m)[:400]}" for s, m in seen.items())

    def final(self, activity):
        """The final status of an activity heard so far (COMPLETED, INCOMPLETE, …), or None."""
        for a, s, m in self.all():
            if a == activity and s in ("COMPLETED", "INCOMPLETE", "SUPERSEDED",
                                       "IDENTIFICATION_FAILED", "REMOVED"):
                return s, m
        return None


# --- leda-cm ------------------------------------------------------------------------------

class Daemon:
    def __init__(self, binary, tdir, ns, broker):
        self.bin = binary
        self.dir = tdir
        self.ns = ns
        self.state = os.path.join(tdir, "state")
        self.run = os.path.join(tdir, "run")
        self.api = os.path.join(self.run, "cm.sock")
        self.runc_root = os.path.join(tdir, "runc")
        self.proc = None
        self.starts = 0
        self.cfg = os.path.join(tdir, "config.json")
        config = {
            "manager": {"home_dir": self.state, "exec_root_dir": self.run,
                        "default_ctrs_stop_timeout": 2},
            "containers": {"address_path": SOCK, "default_ns": ns,
                           "insecure_registries": [REGISTRY], "runc_root": self.runc_root},
            "grpc_server": {"address_path": self.api},
            "connection": {"broker_url": f"tcp://127.0.0.1:{broker.port}"},
            "update_agent": {"enable": True},
            "things": {"enable": False},
            "deployment": {"enable": False},
            # No bridge: harness instances share the default one (issue 16, item 7).
            "network": {"default_bridge": {"disable": True}},
            "log": {"log_level": "INFO"},
        }
        os.makedirs(tdir, exist_ok=True)
        with open(self.cfg, "w") as f:
            json.dump(config, f, indent=2)

    @property
    def log(self):
        return os.path.join(self.dir, f"leda-cm-{self.starts}.log")

    def start(self):
        self.starts += 1
        env = {k: v for k, v in ENV.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "STATE_DIRECTORY",
                            "RUNTIME_DIRECTORY", "RUST_LOG")}
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([self.bin, "daemon", "--cfg-file", self.cfg], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "ready:" in self.log_text():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def log_text(self, n=None):
        paths = [self.log] if n is None else [os.path.join(self.dir, f"leda-cm-{i}.log")
                                              for i in range(1, self.starts + 1)]
        text = ""
        for p in paths:
            try:
                with open(p, errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait()

    def stop(self):
        if not self.proc or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def kcm(self, *args, timeout=60):
        try:
            out = subprocess.run(["kanto-cm", "--host", self.api, *args], executable=self.bin,
                                 capture_output=True, text=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL)
            return out.returncode, out.stdout.strip(), out.stderr.strip()
        except subprocess.TimeoutExpired:
            return 124, "", "timed out"

    def listed(self):
        """{name: container JSON} as leda-cm lists them, or None when it does not answer."""
        rc, out, _ = self.kcm("list", "--json", timeout=20)
        if rc != 0:
            return None
        try:
            return {c["container_name"]: c for c in json.loads(out or "[]")}
        except ValueError:
            return None

    def records(self):
        """{id: name} of the records under the state dir (unreadable ones: name None)."""
        recs = {}
        for path in glob.glob(os.path.join(self.state, "containers", "*", "config.json")):
            cid = os.path.basename(os.path.dirname(path))
            try:
                with open(path) as f:
                    recs[cid] = json.load(f).get("container_name")
            except (OSError, ValueError):
                recs[cid] = None
        return recs


# --- what containerd holds -----------------------------------------------------------------

def tasks(ns):
    """{container id: task status} of the namespace."""
    try:
        return {r[0]: r[2] for r in ctr_table(ns, "tasks", "ls") if len(r) >= 3}
    except (RuntimeError, subprocess.TimeoutExpired):
        return {}


def containerd_view(ns):
    view = {"containers": [], "active": [], "leases": [], "tasks": {}}
    try:
        view["containers"] = [r[0] for r in ctr_table(ns, "containers", "ls")]
        view["active"] = [r[0] for r in ctr_table(ns, "snapshots", "ls")
                          if len(r) >= 3 and r[-1] == "Active"]
        view["leases"] = [r[0] for r in ctr_table(ns, "leases", "ls")]
        view["tasks"] = tasks(ns)
    except (RuntimeError, subprocess.TimeoutExpired) as e:
        view["error"] = str(e)
    return view


def labels_of(ns, cid):
    try:
        info = json.loads(ctr(ns, "containers", "info", cid))
        return {k: v for k, v in (info.get("Labels") or {}).items() if k.startswith("io.leda-cm")}
    except ValueError:
        return {}


def clean_namespace(ns):
    for cid in tasks(ns):
        ctr(ns, "tasks", "kill", "-s", "SIGKILL", cid)
    deadline = time.time() + 10
    while time.time() < deadline and any(s == "RUNNING" for s in tasks(ns).values()):
        time.sleep(0.05)
    for cid in tasks(ns):
        ctr(ns, "tasks", "delete", "-f", cid)
    v = containerd_view(ns)
    for cid in v["containers"]:
        ctr(ns, "containers", "delete", cid)
    for key in containerd_view(ns)["active"]:
        ctr(ns, "snapshots", "rm", key)
    for lease in v["leases"]:
        ctr(ns, "leases", "rm", lease)


# --- power cut ---------------------------------------------------------------------------

def containerd_pid():
    with open(os.path.join(CTRD_DIR, "containerd.pid")) as f:
        return int(f.read().strip())


def shim_pids():
    """The shims of this harness's containerd (`-address <its socket>` in their cmdline)."""
    pids = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(os.path.join(d, "cmdline"), "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and b"containerd-shim" in argv[0]:
            for i, a in enumerate(argv[:-1]):
                if a == b"-address" and argv[i + 1] == SOCK.encode():
                    pids.append(int(os.path.basename(d)))
    return pids


def namespace_pids(ns):
    """The container processes of the namespace: runc puts them in cgroup <ns>/<id>."""
    pids = set()
    for procs in (glob.glob(f"/sys/fs/cgroup/*/{ns}/*/cgroup.procs")
                  + glob.glob(f"/sys/fs/cgroup/{ns}/*/cgroup.procs")):
        try:
            with open(procs) as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return pids


def power_cut(daemon, ns):
    """Everything of this harness instance that a power cut ends, SIGKILLed at once, then
    what a reboot drops (tmpfs on a device); containerd started again."""
    victims = [daemon.proc.pid, containerd_pid()] + shim_pids() + sorted(namespace_pids(ns))
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    daemon.proc.wait()
    # A shim that containerd was starting at that instant forks its daemonised child after
    # the scan above, and would outlive the "power cut" (nothing does on a device). With
    # leda-cm and containerd dead nothing new is spawned: scan and kill again until two
    # scans in a row find nothing of this instance left.
    quiet_scans, deadline = 0, time.time() + 10
    while quiet_scans < 2 and time.time() < deadline:
        late = [p for p in shim_pids() + sorted(namespace_pids(ns)) if p not in victims]
        for pid in late:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        victims += late
        quiet_scans = 0 if late else quiet_scans + 1
        time.sleep(0.02)
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(p) for p in victims[1:]):
        time.sleep(0.02)
    # /run is a tmpfs on a device: rootfs mounts, task bundles and runc's state are gone.
    bundles = os.path.join(CTRD_DIR, "state", "io.containerd.runtime.v2.task", ns)
    with open("/proc/mounts") as f:
        mounts = [ln.split()[1] for ln in f if ln.split()[1].startswith(bundles + "/")]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
    shutil.rmtree(bundles, ignore_errors=True)
    shutil.rmtree(os.path.join(daemon.runc_root, ns), ignore_errors=True)
    return len(victims)


def bundle_evidence(ns, ids, quiet=False):
    """containerd's task bundle dirs of containers without a task: what a task create cut
    short left (its contents, whether the rootfs is still mounted)."""
    base = os.path.join(CTRD_DIR, "state", "io.containerd.runtime.v2.task", ns)
    with open("/proc/mounts") as f:
        mounts = [ln.split()[1] for ln in f]
    out = []
    for cid in ids:
        d = os.path.join(base, cid)
        if os.path.isdir(d):
            out.append(f"task bundle {cid} left without a task: {sorted(os.listdir(d))}, "
                       f"rootfs mounted: {os.path.join(d, 'rootfs') in mounts}")
        elif os.path.lexists(d):
            out.append(f"task bundle path {cid} exists, not a dir: {os.lstat(d)}")
        elif not quiet:
            out.append(f"no task bundle dir for {cid}; mounts naming it: "
                       f"{[m for m in mounts if cid in m]}")
        for pid in shim_pids():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if cid.encode() in argv:
                out.append(f"shim of {cid} still runs: pid {pid}, "
                           f"{b' '.join(argv).decode(errors='replace')}")
    return out


def restart_containerd(down):
    lib(f"kill_pid {containerd_pid()}")
    time.sleep(down)
    lib(f"harness_start_containerd '{CTRD_DIR}'")


# --- invariants ----------------------------------------------------------------------------

def state_file_problems(state):
    """Unparsable JSON, temp files and record dirs without a record under the state dir."""
    problems = []
    for root, dirs, files in os.walk(state):
        for name in files:
            path = os.path.join(root, name)
            if re.fullmatch(r"\..*\.tmp-.*", name):
                problems.append(("temp file", path))
            elif name.endswith(".json"):
                try:
                    with open(path) as f:
                        json.load(f)
                except (OSError, ValueError) as e:
                    problems.append(("state file does not parse", f"{path}: {e}"))
    for d in glob.glob(os.path.join(state, "containers", "*")):
        if os.path.isdir(d) and not os.path.exists(os.path.join(d, "config.json")):
            problems.append(("record dir without config.json", d))
    return problems


def describe(what, path):
    if what == "record dir without config.json" and os.path.isdir(path):
        return f"{path}: {sorted(os.listdir(path))}"
    return path


def orphan_problems(daemon, ns):
    """Both ways between records and containerd; leases left over."""
    recs = daemon.records()
    v = containerd_view(daemon.ns)
    problems = []
    if "error" in v:
        return [("containerd not readable", v["error"])]
    log = daemon.log_text(n=True)
    for cid in v["containers"]:
        if cid not in recs:
            lines = [ln for ln in log.splitlines() if cid in ln][-3:]
            problems.append(("orphan container", f"{cid} labels {labels_of(ns, cid)}; "
                             f"leda-cm log: {lines or 'nothing about it'}"))
    for key in v["active"]:
        if key not in recs:
            lines = [ln for ln in log.splitlines() if key in ln][-3:]
            problems.append(("orphan snapshot", f"active snapshot {key} without a record; "
                             f"leda-cm log: {lines or 'nothing about it'}"))
    leases = {r.split()[0]: r.strip() for r in ctr(ns, "leases", "ls").splitlines()[1:] if r.strip()}
    for lease in v["leases"]:
        problems.append(("orphan lease", f"{leases.get(lease, lease)} (leda-cm idle)"))
    # A shim is an OS process, not a containerd object, but one without a task is a leak too.
    for pid in shim_pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0")]
        except OSError:
            continue
        opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("-")}
        if opt.get("-namespace") == ns and opt.get("-id") not in v["tasks"]:
            problems.append(("orphan shim", f"pid {pid} for {opt.get('-id')} without a task: "
                             f"{' '.join(argv).strip()}"))
    for cid, name in recs.items():
        if cid not in v["containers"]:
            problems.append(("record without containerd container", f"{cid} ({name})"))
    return problems


# --- the scenarios -------------------------------------------------------------------------

def component(name, env=None):
    cfg = [{"key": "image", "value": IMAGE}]
    if env:
        cfg.append({"key": "env", "value": env})
    return {"id": name, "version": "1.0", "config": cfg}


def desired(activity, components):
    return {"activityId": activity, "timestamp": int(time.time() * 1000),
            "payload": {"domains": [{"id": "containers", "config": [],
                                     "components": components}]}}


V1 = [component("a", "A=1"), component("b"), component("c")]
V2 = [component("a", "A=2"), component("b"), component("d"), component("e"), component("f")]
V2_NAMES = {"a", "b", "d", "e", "f"}


class Trial:
    def __init__(self, ctx, index, seed):
        self.ctx = ctx
        self.index = index
        self.seed = seed
        rng = random.Random(seed)
        self.scenario = rng.choice(ctx.scenarios)
        self.frac = rng.uniform(0, MAX_FRACTION)
        self.delay = None  # frac × the reference duration, once measured
        self.down = rng.uniform(0.2, 2.0)
        coin = rng.random() < 0.5  # drawn last: the draws above do not depend on the mode
        self.power_cut = self.scenario in KILL_SCENARIOS and (
            ctx.power_cut == "all" or (ctx.power_cut == "mixed" and coin))
        self.ns = f"crash-{RUN_ID}-{index}"
        self.dir = os.path.join(ctx.root, f"trial-{index}")
        self.daemon = Daemon(ctx.bin, self.dir, self.ns, ctx.broker)
        self.violations = []  # (invariant, evidence)
        self.leftovers = []
        self.notes = []
        self.converge_s = None
        self.act = f"{RUN_ID}-t{index}"

    def violate(self, what, evidence):
        self.violations.append((what, evidence))

    # helpers
    def start_daemon(self):
        self.daemon.start()
        if not self.daemon.wait_ready():
            raise RuntimeError(f"leda-cm did not become ready:\n{self.daemon.log_text()[-3000:]}")

    def apply(self, activity, components, timeout=60):
        t = time.time()
        self.ctx.broker.publish(DESIRED, desired(activity, components))
        f = self.wait_final(activity, timeout)
        self.ref = time.time() - t
        return f

    def set_delay(self, ref):
        self.delay = self.frac * ref
        self.notes.insert(0, f"reference {ref * 1000:.0f} ms")

    def wait_final(self, activity, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            f = self.ctx.listener.final(activity)
            if f:
                return f
            time.sleep(0.05)
        return None

    def post_start_checks(self):
        """Right after READY of the restarted daemon: what the killed one left (temp files,
        record dirs without a record) is cleaned up by then. (What the new daemon is making
        meanwhile, e.g. a resumed apply's creates, is not a leftover; the end check sees it.)"""
        for what, path in self.leftovers:
            if what == "temp file" and os.path.exists(path):
                self.violate(what, f"{path}: left by the killed leda-cm, still there after the "
                             f"restart (daemon ready)")
            elif what == "record dir without config.json" and os.path.isdir(path) \
                    and not os.path.exists(os.path.join(path, "config.json")):
                self.violate(what, f"{path}: left by the killed leda-cm, still there after the "
                             f"restart (daemon ready): {sorted(os.listdir(path))}")

    def converged_apply(self, names, env_a):
        listed = self.daemon.listed()
        if listed is None:
            return False, "leda-cm does not list"
        t = tasks(self.ns)
        running = {n for n, c in listed.items() if t.get(c["container_id"]) == "RUNNING"}
        ok = set(listed) == names and running == names
        if ok and env_a:
            ok = env_a in (listed["a"].get("config", {}).get("env") or [])
        return ok, f"listed {sorted(listed)}, running {sorted(running)}"

    def wait_converged(self, pred, t0):
        deadline = time.time() + CONVERGE_TIMEOUT
        last = ""
        while time.time() < deadline:
            ok, last = pred()
            if ok:
                self.converge_s = time.time() - t0
                return True
            time.sleep(0.1)
        self.violate("not converged", f"after {CONVERGE_TIMEOUT:.0f} s: {last}")
        listed = self.daemon.listed() or {}
        t = tasks(self.ns)
        idle = [c["container_id"] for c in listed.values() if c["container_id"] not in t]
        for ev in bundle_evidence(self.ns, idle, quiet=True):
            self.violate("not converged", ev)
        return False

    def kill(self):
        """SIGKILL leda-cm (power cut: containerd, its shims, the containers too); returns
        the records at the moment of the kill (and notes what else it left)."""
        if self.power_cut:
            n = power_cut(self.daemon, self.ns)
            recs = self.daemon.records()
            self.notes.append(f"power cut: {n} processes killed")
        else:
            self.daemon.kill9()
            recs = self.daemon.records()
        problems = state_file_problems(self.daemon.state)
        self.leftovers = [(w, p) for w, p in problems if w != "state file does not parse"]
        for what, ev in problems:
            if what == "state file does not parse":
                self.violate(what, ev + " (at the kill)")
        if self.leftovers:
            self.notes.append("left at the kill: " + ", ".join(
                f"{w} {os.path.relpath(p, self.daemon.state)}" for w, p in self.leftovers))
        if self.power_cut:
            lib(f"harness_start_containerd '{CTRD_DIR}'")
        return recs

    def settle(self, quiet=1.0, limit=10.0):
        """Waits until leda-cm is idle: records, containerd's view and the state dir's temp
        files and record dirs unchanged for `quiet` seconds (at most `limit`)."""
        def look():
            v = containerd_view(self.ns)
            return (sorted(self.daemon.records().items(), key=str),
                    sorted(v["containers"]), sorted(v["active"]), sorted(v["leases"]),
                    sorted(v["tasks"].items()), state_file_problems(self.daemon.state))
        last, since, deadline = None, time.time(), time.time() + limit
        while time.time() < deadline:
            cur = look()
            if cur != last:
                last, since = cur, time.time()
            elif time.time() - since >= quiet:
                return
            time.sleep(0.2)
        self.notes.append(f"leda-cm still busy {limit:.0f} s after the end")

    def check_orphans_and_files(self):
        self.settle()
        for what, ev in orphan_problems(self.daemon, self.ns):
            self.violate(what, ev)
        for what, ev in state_file_problems(self.daemon.state):
            self.violate(what, describe(what, ev) + " (at the end, leda-cm idle)")

    # scenarios
    def run_apply(self):
        self.start_daemon()
        f = self.apply(self.act + "-v1", V1)
        if not f or f[0] != "COMPLETED":
            raise RuntimeError(f"set-up apply v1: {f} {self.ctx.listener.statuses(self.act + '-v1')}")
        before = {c: n for c, n in self.daemon.records().items()}
        c_id = next(i for i, n in before.items() if n == "c")
        self.set_delay(self.ref)
        self.ctx.broker.publish(DESIRED, desired(self.act + "-v2", V2))
        time.sleep(self.delay)
        done_before = self.ctx.listener.final(self.act + "-v2")
        recs = self.kill()
        heard = self.ctx.listener.statuses(self.act + "-v2")
        self.notes.append(f"v2 heard before the kill: {heard[-1] if heard else 'nothing'}"
                          + (" (done)" if done_before else ""))
        c_gone = c_id not in recs
        t0 = time.time()
        self.start_daemon()
        self.post_start_checks()
        # An update manager that saw no final feedback publishes the desired state again.
        self.ctx.broker.publish(DESIRED, desired(self.act + "-v2r", V2))

        def pred():
            back = c_gone and (c_id in self.daemon.records()
                               or "c" in (self.daemon.listed() or {}))
            if back and not any(w == "resurrected" for w, _ in self.violations):
                self.violate("resurrected", f"c ({c_id}): record gone at the kill, "
                             f"known to leda-cm again after the restart")
            f = self.ctx.listener.final(self.act + "-v2r")
            if not f:
                return False, f"no final feedback for v2r: {self.ctx.listener.statuses(self.act + '-v2r')}"
            ok, why = self.converged_apply(V2_NAMES, "A=2")
            return ok, f"v2r {f}; {why}"
        self.wait_converged(pred, t0)
        f = self.ctx.listener.final(self.act + "-v2r")
        if f and f[0] != "COMPLETED":
            self.violate("not converged", f"re-published desired state ended {f[0]}: "
                         f"{self.ctx.listener.failures(self.act + '-v2r')}")

    def run_outage(self, what):
        self.start_daemon()
        f = self.apply(self.act + "-v1", V1)
        if not f or f[0] != "COMPLETED":
            raise RuntimeError(f"set-up apply v1: {f}")
        self.set_delay(self.ref)
        self.ctx.broker.publish(DESIRED, desired(self.act + "-v2", V2))
        time.sleep(self.delay)
        heard = self.ctx.listener.statuses(self.act + "-v2")
        self.notes.append(f"v2 heard before the {what} stop: {heard[-1] if heard else 'nothing'}")
        if what == "broker":
            self.ctx.broker.stop()
            time.sleep(self.down)
            self.ctx.broker.start()
        else:
            restart_containerd(self.down)
        self.notes.append(f"{what} down {self.down:.2f} s")
        t0 = time.time()

        def pred():
            f = self.ctx.listener.final(self.act + "-v2")
            if not f:
                return False, f"no final feedback for v2: {self.ctx.listener.statuses(self.act + '-v2')}"
            if f[0] != "COMPLETED":
                return True, ""
            return self.converged_apply(V2_NAMES, "A=2")
        if self.wait_converged(pred, t0):
            f = self.ctx.listener.final(self.act + "-v2")
            if f[0] != "COMPLETED":
                self.converge_s = None
                self.violate("lost", f"the apply across a {what} restart ended {f[0]}: {f[1]!r}; "
                             f"statuses {self.ctx.listener.statuses(self.act + '-v2')}; "
                             f"{self.ctx.listener.failures(self.act + '-v2')}")
                ok, why = self.converged_apply(V2_NAMES, "A=2")
                if not ok:
                    self.violate("not converged", why)
        elif not self.ctx.listener.final(self.act + "-v2"):
            self.violate("lost", f"no final feedback for v2 after the {what} restart: "
                         f"{self.ctx.listener.statuses(self.act + '-v2')}")

    def run_create(self, names=("n1", "n2", "n3", "n4")):
        self.start_daemon()
        # The reference: create + start of one container (image pulled already), × the count.
        self.daemon.kcm("create", "--name", "warm", IMAGE)
        t = time.time()
        rc, out, err = self.daemon.kcm("create", "--name", "keep", IMAGE)
        if rc != 0 or self.daemon.kcm("start", "-n", "keep")[0] != 0:
            raise RuntimeError(f"set-up create keep: {err}")
        self.set_delay((time.time() - t) * len(names))
        self.daemon.kcm("remove", "-f", "-n", "warm")
        acks = {}  # name -> set of acknowledged steps
        stop = threading.Event()

        def client():
            for n in names:
                for step in ("create", "start"):
                    if stop.is_set():
                        return
                    args = ("create", "--name", n, IMAGE) if step == "create" else ("start", "-n", n)
                    rc, _, _ = self.daemon.kcm(*args)
                    if rc == 0 and not stop.is_set():
                        acks.setdefault(n, set()).add(step)
                    if rc != 0:
                        return
        th = threading.Thread(target=client)
        th.start()
        time.sleep(self.delay)
        stop.set()
        recs = self.kill()
        th.join()
        self.notes.append("acknowledged before the kill: "
                          + (", ".join(f"{n}:{'+'.join(sorted(s))}" for n, s in sorted(acks.items()))
                             or "nothing"))
        t0 = time.time()
        self.start_daemon()
        self.post_start_checks()
        listed = self.daemon.listed() or {}
        for n, steps in acks.items():
            if "create" in steps and n not in listed:
                self.violate("lost", f"create of {n} acknowledged before the kill, gone after the "
                             f"restart (records at the kill: {sorted(recs.values(), key=str)})")
        # The client does again what was not acknowledged (ignoring "already exists").
        retries = []
        evidence = {}
        for n in names:
            listed = self.daemon.listed() or {}
            if n not in listed:
                retries.append((n, "create", self.daemon.kcm("create", "--name", n, IMAGE)))
            if "start" not in acks.get(n, set()):
                c = (self.daemon.listed() or {}).get(n)
                if c and tasks(self.ns).get(c["container_id"]) != "RUNNING":
                    res = self.daemon.kcm("start", "-n", n)
                    # What containerd holds for it at that moment.
                    evidence[n] = bundle_evidence(self.ns, [c["container_id"]]) if res[0] else []
                    retries.append((n, "start", res))
        # A start refused after the restart: how long until one is accepted (a client that
        # keeps trying converges; one that tries once, as kanto-cm users and the update
        # agent do, does not: that is the violation).
        for n, step, (rc, out, err) in retries:
            if step != "start" or rc == 0:
                continue
            t_fail = time.time()
            while time.time() - t_fail < CONVERGE_TIMEOUT:
                time.sleep(0.5)
                if self.daemon.kcm("start", "-n", n)[0] == 0:
                    break
            took = time.time() - t0
            c = (self.daemon.listed() or {}).get(n, {})
            self.violate("not converged", f"start of {n} refused after the restart: {err}; "
                         + (f"accepted {took:.1f} s after the restart" if
                            tasks(self.ns).get(c.get("container_id")) == "RUNNING" else
                            f"still refused {took:.0f} s after the restart")
                         + "; at the refusal: " + "; ".join(evidence.get(n, [])))
        want = set(names) | {"keep"}
        if not self.wait_converged(lambda: self.converged_apply(want, None), t0):
            for n, step, (rc, out, err) in retries:
                self.violate("not converged", f"client retry {step} {n}: rc {rc} {out} {err}")
            self.violate("not converged", f"ctr tasks: {tasks(self.ns)}")

    def run_remove(self, names=("r1", "r2", "r3", "r4")):
        self.start_daemon()
        for n in ("keep", "warm") + tuple(names):
            rc, _, err = self.daemon.kcm("create", "--name", n, IMAGE)
            if rc != 0 or self.daemon.kcm("start", "-n", n)[0] != 0:
                raise RuntimeError(f"set-up create {n}: {err}")
        # The reference: the removal of one running container, × the count.
        t = time.time()
        self.daemon.kcm("remove", "-f", "-n", "warm")
        self.set_delay((time.time() - t) * len(names))
        ids = {n: c["container_id"] for n, c in self.daemon.listed().items()}
        acked = set()
        stop = threading.Event()

        def client():
            for n in names:
                if stop.is_set():
                    return
                rc, _, _ = self.daemon.kcm("remove", "-f", "-n", n)
                if rc == 0 and not stop.is_set():
                    acked.add(n)
        th = threading.Thread(target=client)
        th.start()
        time.sleep(self.delay)
        stop.set()
        recs = self.kill()
        th.join()
        at_kill = tasks(self.ns) if not self.power_cut else {}
        gone = {n for n in names if ids[n] not in recs}
        self.notes.append(f"removal acknowledged: {sorted(acked) or 'none'}; records gone at the "
                          f"kill: {sorted(gone) or 'none'}")
        final = acked | gone  # past the point of no return
        t0 = time.time()
        self.start_daemon()
        self.post_start_checks()

        def check_back(when):
            listed = self.daemon.listed() or {}
            recs_now = self.daemon.records()
            t = tasks(self.ns)
            for n in sorted(final):
                cid = ids[n]
                if (n in listed or cid in recs_now) and not any(
                        w == "resurrected" and ev.startswith(n + " ") for w, ev in self.violations):
                    why = "acknowledged" if n in acked else "its record was gone at the kill"
                    self.violate("resurrected", f"{n} ({cid}): removal {why}; {when}: "
                                 f"listed={n in listed} record={cid in recs_now} task={t.get(cid)}")
        check_back("after the restart")
        # Not a violation: a removal the client has no answer for, whose record was still
        # there, may be undone; say so when a container it had stopped runs again.
        t = tasks(self.ns)
        for n in names:
            cid = ids[n]
            if n not in final and cid in at_kill and at_kill[cid] != "RUNNING" \
                    and t.get(cid) == "RUNNING":
                self.notes.append(f"{n}: removal in flight at the kill (task {at_kill[cid]}, "
                                  f"record kept) undone: running again after the restart")
        # The client removes again what it has no acknowledgement for.
        for n in names:
            if n not in acked and n in (self.daemon.listed() or {}):
                self.daemon.kcm("remove", "-f", "-n", n)
        self.wait_converged(lambda: self.converged_apply({"keep"}, None), t0)
        check_back("at the end")

    def run(self):
        kill = (" power-cut" if self.power_cut else " SIGKILL") if self.scenario in KILL_SCENARIOS else ""
        head = f"trial {self.index} seed={self.seed} scenario={self.scenario}{kill}"
        t = time.time()
        try:
            if self.scenario == "apply":
                self.run_apply()
            elif self.scenario == "create":
                self.run_create()
            elif self.scenario == "remove":
                self.run_remove()
            else:
                self.run_outage(self.scenario)
            self.check_orphans_and_files()
        except Exception as e:  # a trial that could not run is a failure too
            self.violate("trial error", repr(e))
        finally:
            self.daemon.stop()
            clean_namespace(self.ns)
        verdict = "ok" if not self.violations else "FAIL"
        if self.delay is not None:
            head += f" at {self.frac:.2f} x ref = {self.delay * 1000:.0f} ms"
        conv = f"{self.converge_s:.2f} s" if self.converge_s is not None else "-"
        say(f"{head}: {verdict} (converged in {conv}, trial {time.time() - t:.1f} s; "
            f"{'; '.join(self.notes)})")
        for what, ev in self.violations:
            say(f"    VIOLATION {what}: {ev}")
        if self.violations:
            say(f"    logs: {self.dir}")
        elif not self.ctx.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


class Ctx:
    pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--trial", type=int, help="run only trial K of the seed's sequence")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--power-cut", action="store_const", const="all", dest="power_cut",
                    help="every kill is a power cut")
    ap.add_argument("--mixed", action="store_const", const="mixed", dest="power_cut",
                    help="each kill is a power cut or a SIGKILL of leda-cm, at random")
    ap.add_argument("--keep", action="store_true", help="keep the trial dirs of passed trials")
    a = ap.parse_args()
    ctx = Ctx()
    ctx.bin = os.path.abspath(a.bin)
    ctx.scenarios = [s for s in a.scenarios.split(",") if s]
    bad = [s for s in ctx.scenarios if s not in SCENARIOS]
    if bad:
        sys.exit(f"unknown scenario {bad}; known: {SCENARIOS}")
    ctx.power_cut = a.power_cut or "off"
    mode = {"off": "", "all": " --power-cut", "mixed": " --mixed"}[ctx.power_cut]
    ctx.keep = a.keep
    seed = a.seed if a.seed is not None else random.SystemRandom().randrange(1 << 31)
    ctx.root = os.path.join(WORK, "crash")
    os.makedirs(ctx.root, exist_ok=True)
    say(f"crash suite: seed {seed}, {a.trials} trials, scenarios {','.join(ctx.scenarios)}"
        f"{mode}; binary {ctx.bin}")
    say(f"reproduce: tests/crash/run.sh --seed {seed} --trials {a.trials}"
        f" --scenarios {','.join(ctx.scenarios)}{mode}  (one trial: add --trial K)")
    ctx.broker = Broker(ctx.root)
    ctx.broker.start()
    ctx.listener = Listener(ctx.broker, ctx.root)
    ctx.listener.start()
    rng = random.Random(seed)
    seeds = [rng.randrange(1 << 31) for _ in range(a.trials)]
    trials = []
    t_all = time.time()
    try:
        for i, s in enumerate(seeds, 1):
            if a.trial and i != a.trial:
                continue
            tr = Trial(ctx, i, s)
            tr.run()
            trials.append(tr)
    finally:
        ctx.listener.stop()
        ctx.broker.stop()
    summary(trials, time.time() - t_all, seed, mode)
    return 1 if any(t.violations for t in trials) else 0


def summary(trials, took, seed, mode):
    def converged(t):
        return t.converge_s is not None and not any(w == "not converged" for w, _ in t.violations)
    conv = [t.converge_s for t in trials if converged(t)]

    def count(what):
        return sum(1 for t in trials for w, _ in t.violations if w == what)

    def trials_with(*what):
        return sum(1 for t in trials if any(w in what for w, _ in t.violations))
    orphan_kinds = ("orphan container", "orphan snapshot", "orphan lease", "orphan shim",
                    "record without containerd container")
    file_kinds = ("temp file", "state file does not parse", "record dir without config.json")
    say("")
    say(f"== crash suite summary (seed {seed}{mode}, {took:.0f} s)")
    say(f"trials {len(trials)}, passed {sum(1 for t in trials if not t.violations)}, "
        f"converged {len(conv)}/{len(trials)} (not converged in "
        f"{trials_with('not converged')}; create trials with a start refused after the restart: "
        f"{sum(1 for t in trials if any(ev.startswith('start of') for w, ev in t.violations))})")
    say(f"orphans: {trials_with(*orphan_kinds)} trials ("
        + ", ".join(f"{k} {count(k)}" for k in orphan_kinds) + ")")
    say(f"resurrected: {count('resurrected')}; lost: {count('lost')}; state dir: "
        + ", ".join(f"{k} {count(k)}" for k in file_kinds) + f"; trial errors {count('trial error')}")
    if conv:
        say(f"time to converge: mean {statistics.mean(conv):.2f} s, max {max(conv):.2f} s "
            f"(n={len(conv)})")
    by = {}
    for t in trials:
        key = t.scenario + ("/power-cut" if t.power_cut else "")
        s = by.setdefault(key, [0, 0])
        s[0] += 1
        s[1] += bool(t.violations)
    say("per scenario: " + ", ".join(f"{k} {v[1]}/{v[0]} failed" for k, v in sorted(by.items())))


if __name__ == "__main__":
    sys.exit(main())
