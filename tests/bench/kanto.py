#!/usr/bin/env python3
"""leda-cm side by side with Eclipse Kanto's container-management (v1.0.0) on the same
private containerd (prints figures and ratios; asserts nothing). Run with
`LEDA_CM_KANTO_SRC=<Kanto tree> tests/bench/run kanto`.

Kanto's daemon (`containerm/daemon`) and its `kanto-cm` (`containerm/cli`) are built with
`go build` from the Kanto container-management source tree named by LEDA_CM_KANTO_SRC (the
Go module proxy serves Kanto's dependencies, not Kanto's own module), cached under
target/tmp/kanto/v<version>/ (go's module and build caches under target/tmp/kanto, shared
with tests/kanto_cli.rs). Without a usable tree (or without `go`) Kanto's column says
SKIPPED and leda-cm's is still measured.

Both daemons run in turn against the harness's containerd, each in a containerd namespace,
state and runtime dirs, API socket and bridge (name and /24 claimed as the harness claims
them) of its own, with the update agent on the harness's broker, things and deployment off,
and iptables left alone (ip_tables and ip_masq off for both: Kanto's libnetwork would
otherwise set the host's FORWARD policy). Figures:

- binary size: a stripped copy (`strip -o`) of leda-cm's release binary and of Kanto's daemon
- exec -> socket accepting: from the exec of the daemon to the first successful connect() on
  its local API socket (fresh state dirs, no containers), median of BENCH_RUNS
- idle RSS (VmRSS of the daemon) and total PSS (Pss of smaps_rollup, summed over every
  process of the daemon: leda-cm's daemon and its log drivers, one per container, that
  containerd's shims start from the binary; Kanto's daemon and any process of its binary) at
  0 and at BENCH_CONTAINERS running containers, 3 s after the last start. containerd and
  its shims (one per container for both) are not counted.
- create+start: `kanto-cm create` + `kanto-cm start` through each one's own CLI (leda-cm's
  multi-call kanto-cm, Kanto's Go kanto-cm), bridged containers, image present, median of
  BENCH_CONTAINERS; also leda-cm's daemon driven by Kanto's CLI, to separate the CLI's share
- no-op desired state -> COMPLETED with BENCH_CONTAINERS running containers (median of
  BENCH_RUNS, after a first desired state that makes the containers its own): leda-cm's
  update agent runs the phases itself; Kanto's agent stops at IDENTIFIED and waits for an
  update manager's DOWNLOAD, UPDATE, ACTIVATE and CLEANUP commands, which the bench sends on
  each preceding status as Kanto's update-manager would.
"""
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import agent
from agent import Cloud, clean, sh

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
CONTAINERS = int(os.environ.get("BENCH_CONTAINERS", "20"))
IDLE_SECONDS = 3.0

H = os.environ
SOCK = agent.SOCK
IMAGE = agent.IMAGE  # the service image: runs until SIGTERM, no command needed
LIB = os.path.join(H["LEDA_TEST_HARNESS_DIR"], "lib.sh")
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = os.path.join(TOP, os.environ.get("CARGO_TARGET_DIR") or "target")  # absolute stays absolute
# Kanto's update agent: the status after which an update manager sends the next command.
NEXT_COMMAND = {"IDENTIFIED": "DOWNLOAD", "DOWNLOAD_SUCCESS": "UPDATE", "UPDATE_SUCCESS": "ACTIVATE",
                "ACTIVATION_SUCCESS": "CLEANUP"}


def lib(script):
    return sh(["bash", "-c", f". '{LIB}'; {script}"]).stdout.strip()


# --- Kanto's binaries -------------------------------------------------------------------

def build_kanto():
    """(daemon, kanto-cm, version) built from LEDA_CM_KANTO_SRC, or (None, reason)."""
    src = H.get("LEDA_CM_KANTO_SRC", "")
    if not src:
        return None, ("no Kanto source tree given (LEDA_CM_KANTO_SRC=<checkout of "
                      "github.com/eclipse-kanto/container-management, e.g. v1.0.0>)")
    version_go = os.path.join(src, "containerm/version/version.go")
    if not (os.path.isfile(os.path.join(src, "containerm/daemon/daemon_start.go")) and os.path.isfile(version_go)):
        return None, f"LEDA_CM_KANTO_SRC={src} is not a Kanto container-management tree (no containerm/daemon)"
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if go is None:
        return None, "no `go` on PATH to build Kanto with"
    m = re.search(r'ProjectVersion\s*=\s*"([^"]+)"', open(version_go).read())
    version = m.group(1) if m else "unknown"
    cache = os.path.join(TARGET, "tmp", "kanto")
    out = os.path.join(cache, f"v{version}")
    os.makedirs(out, exist_ok=True)
    env = dict(os.environ, GOMODCACHE=os.path.join(cache, "mod"), GOCACHE=os.path.join(cache, "cache"),
               GOPATH=os.path.join(cache, "path"), GOFLAGS="-mod=readonly -buildvcs=false", GOTOOLCHAIN="local")
    bins = {}
    for name, pkg in (("container-management", "./containerm/daemon"), ("kanto-cm", "./containerm/cli")):
        bins[name] = os.path.join(out, name)
        # go's build cache makes this quick when nothing changed; building every time keeps
        # the binaries true to the tree that was given.
        r = subprocess.run([go, "build", "-o", bins[name], pkg], cwd=src, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
            return None, f"`go build {pkg}` in {src} failed:\n{tail}"
    return (bins["container-management"], bins["kanto-cm"], version), None


# --- processes --------------------------------------------------------------------------

def exe(pid):
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def ppid(pid):
    try:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid):
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def status_kib(pid, key):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def pss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Daemon:
    """One daemon (leda-cm or Kanto), its CLI and its own dirs, namespace and bridge."""

    def __init__(self, label, binary, cli, argv, work, ns, bridge, net3):
        self.label, self.binary, self.ns, self.bridge, self.net3 = label, binary, ns, bridge, net3
        self.real = os.path.realpath(binary)
        # leda-cm's containers' log drivers run leda-cm-logd, beside the daemon's binary.
        self.own = {self.real, os.path.join(os.path.dirname(self.real), "leda-cm-logd")}
        self.cli_bin, self.argv, self.dir = cli, argv, os.path.join(work, label)
        self.proc = None
        os.makedirs(self.dir)

    def config(self, d):  # the daemon's config.json for the state under d
        raise NotImplementedError

    def start(self, name):
        """Starts the daemon with fresh dirs under self.dir/name; returns exec -> socket accepting."""
        d = os.path.join(self.dir, name)
        os.makedirs(d)
        self.api = os.path.join(d, "run", "cm.sock")
        cfg = os.path.join(d, "config.json")
        with open(cfg, "w") as f:
            json.dump(self.config(d), f)
        self.log = os.path.join(d, "daemon.log")
        self.before_start()
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "RUST_LOG")}
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        t = time.perf_counter()
        self.proc = subprocess.Popen([self.binary, *self.argv, "--cfg-file", cfg], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"))
        while True:
            try:
                s.connect(self.api)
                ready = time.perf_counter() - t
                s.close()
                return ready
            except OSError:
                pass
            if self.proc.poll() is not None:
                tail = open(self.log).read()[-2000:]
                raise SystemExit(f"{self.label} exited with {self.proc.returncode} before its socket answered "
                                 f"(log {self.log}):\n{tail}")
            if time.perf_counter() - t > 60:
                raise SystemExit(f"{self.label}'s socket {self.api} did not answer within 60 s (log {self.log})")
            time.sleep(0.001)

    def before_start(self):
        pass

    def cli(self, *args, cli=None):
        return [cli or self.cli_bin, "--host", self.api, *args]

    def ids(self):
        return sh(self.cli("list", "-q")).stdout.split()

    def stop(self):
        """Removes every container through the CLI, then stops the daemon (by its PID)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                for cid in self.ids():
                    subprocess.run(self.cli("remove", "-f", cid), capture_output=True, timeout=60)
            except (subprocess.SubprocessError, OSError):
                pass
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pids(self):
        """The daemon and every process of its own: those running its binary that are the
        daemon's children or children of a shim of this containerd (log drivers, which for
        leda-cm run leda-cm-logd beside its binary)."""
        out = [self.proc.pid]
        for p in os.listdir("/proc"):
            if not p.isdigit() or int(p) == self.proc.pid or exe(p) not in self.own:
                continue
            parent = ppid(p)
            if parent == self.proc.pid or (parent and "containerd-shim" in cmdline(parent)
                                          and f"-address {SOCK}" in cmdline(parent)):
                out.append(int(p))
        return out

    def memory(self):
        pids = self.pids()
        return {"rss": status_kib(self.proc.pid, "VmRSS"), "pss": sum(pss_kib(p) for p in pids),
                "procs": len(pids)}

    def create_start(self, prefix, n, cli=None):
        times = []
        for i in range(n):
            t = time.perf_counter()
            cid = sh(self.cli("create", "--name", f"{prefix}-{i}", IMAGE, cli=cli)).stdout.strip().splitlines()[-1]
            sh(self.cli("start", cid, cli=cli))
            times.append(time.perf_counter() - t)
        return times


class LedaCm(Daemon):
    def __init__(self, binary, work, ns, bridge, net3):
        kcm = os.path.join(work, "leda-cm-cli", "kanto-cm")
        os.makedirs(os.path.dirname(kcm))
        os.symlink(binary, kcm)  # multi-call: invoked as kanto-cm it is the CLI
        super().__init__("leda-cm", binary, kcm, ["daemon"], work, ns, bridge, net3)

    def config(self, d):
        return {
            "manager": {"home_dir": f"{d}/state", "exec_root_dir": f"{d}/run", "default_ctrs_stop_timeout": "2s"},
            "containers": {"address_path": SOCK, "default_ns": self.ns, "insecure_registries": [agent.REG]},
            "network": {"default_bridge": {"name": self.bridge, "ip4": f"{self.net3}.1/24",
                                           "ip_tables": False, "ip_masq": False}},
            "grpc_server": {"address_path": self.api},
            "things": {"enable": False}, "deployment": {"enable": False},
            "update_agent": {"enable": True},
            "connection": {"broker_url": f"tcp://{agent.BROKER_HOST}:{agent.BROKER_PORT}"},
            "log": {"log_level": "WARN"},
        }


class Kanto(Daemon):
    def __init__(self, binary, cli, work, ns, bridge, net3):
        super().__init__("kanto", binary, cli, [], work, ns, bridge, net3)

    def before_start(self):
        # Kanto v1.0.0 does not read default_bridge.ip4: it takes the address of an existing
        # bridge of that name, else a free 172.x network. The bench makes the bridge with its
        # claimed /24 (the release of the claim removes it).
        if subprocess.run(["ip", "link", "show", self.bridge], capture_output=True).returncode != 0:
            sh(["ip", "link", "add", self.bridge, "type", "bridge"])
        if f"{self.net3}.1/24" not in sh(["ip", "-4", "-o", "addr", "show", "dev", self.bridge]).stdout:
            sh(["ip", "addr", "add", f"{self.net3}.1/24", "dev", self.bridge])
        sh(["ip", "link", "set", self.bridge, "up"])

    def config(self, d):
        return {
            "log": {"log_file": f"{d}/kanto.log", "log_level": "WARN"},
            "manager": {"home_dir": f"{d}/state", "exec_root_dir": f"{d}/run", "default_ctrs_stop_timeout": "2s"},
            "containers": {"address_path": SOCK, "default_ns": self.ns, "insecure_registries": [agent.REG],
                           "home_dir": f"{d}/state", "exec_root_dir": f"{d}/run"},
            "network": {"home_dir": f"{d}/state", "exec_root_dir": f"{d}/run",
                        "default_bridge": {"name": self.bridge, "ip_tables": False, "ip_masq": False,
                                           "ip_forward": False}},
            "grpc_server": {"protocol": "unix", "address_path": self.api},
            "things": {"enable": False, "home_dir": f"{d}/state"},
            "deployment": {"enable": False, "home_dir": f"{d}/state", "ctr_dir": f"{d}/manifests"},
            "update_agent": {"enable": True},
            "connection": {"broker_url": f"tcp://{agent.BROKER_HOST}:{agent.BROKER_PORT}"},
        }


# --- the update manager's side ----------------------------------------------------------

class Manager(Cloud):
    """agent.py's cloud side, which also plays Kanto's update manager when `drive` is set:
    it answers each status of the activity in flight with the next command."""

    def __init__(self):
        self.drive = False
        self.current_at = 0.0
        self.published, self.identified = {}, {}
        super().__init__()
        self.client.subscribe("containersupdate/currentstate", qos=1)

    def on_message(self, c, u, msg):
        if msg.topic == "containersupdate/currentstate":
            self.current_at = time.perf_counter()
            return
        at = time.perf_counter()
        j = json.loads(msg.payload)
        status = j["payload"].get("status")
        if status == "IDENTIFIED" and not j["payload"].get("baseline"):
            self.identified.setdefault(j["activityId"], at)
        nxt = NEXT_COMMAND.get(status)
        if self.drive and nxt and not j["payload"].get("baseline"):
            self.client.publish("containersupdate/desiredstate/command", json.dumps({
                "activityId": j["activityId"], "timestamp": int(time.time() * 1000),
                "payload": {"command": nxt, "baseline": ""}}), qos=1)
        super().on_message(c, u, msg)

    def apply(self, activity, names, timeout=180):
        self.published[activity] = time.perf_counter()
        return super().apply(activity, names, timeout)

    def to_identified(self, activity):
        return self.identified[activity] - self.published[activity]

    def wait_connected(self, since, timeout=30):
        """Until a current state published after `since` (the agent's first, on connect)."""
        end = time.perf_counter() + timeout
        while self.current_at < since and time.perf_counter() < end:
            time.sleep(0.05)


# --- the run ----------------------------------------------------------------------------

def stripped_size(path, work):
    copy = os.path.join(work, os.path.basename(path) + ".stripped")
    sh(["strip", "-o", copy, path])
    size = os.path.getsize(copy)
    os.unlink(copy)
    return size


def measure(d, manager, work):
    r = {"size": stripped_size(d.binary, work), "built": os.path.getsize(d.binary)}
    starts = []
    for i in range(RUNS):
        starts.append(d.start(f"start-{i}"))
        d.stop()
    r["start"] = starts
    t0 = time.perf_counter()
    d.start("main")
    manager.wait_connected(t0)  # the agent on the broker (its first current state)
    time.sleep(IDLE_SECONDS)
    r["idle"] = d.memory()
    r["run"] = d.create_start("run", CONTAINERS)
    time.sleep(IDLE_SECONDS)
    r["busy"] = d.memory()
    manager.drive = isinstance(d, Kanto)
    names = [f"run-{i}" for i in range(CONTAINERS)]
    try:
        manager.apply(f"{d.label}-own", names)  # makes the CLI's containers the desired state's
    except SystemExit as e:
        print(f"{d.label}: first desired state: {e} (log {d.log})")
    r["noop"] = [manager.apply(f"{d.label}-noop-{i}", names) for i in range(RUNS)]
    r["identified"] = [manager.to_identified(f"{d.label}-noop-{i}") for i in range(RUNS)]
    manager.drive = False
    return r


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bk-", dir=H["LEDA_TEST_WORKDIR"])
    run = "".join(c for c in os.path.basename(work)[3:].lower() if c.isalnum())[:6]
    kanto_bins, skipped = build_kanto()
    manager = Manager()
    daemons = []
    results = {}
    try:
        br, net3 = lib(f"harness_claim_net '{work}' {run}").split()
        lcm = LedaCm(binary, work, f"bench-lcm-{run}", br, net3)
        daemons.append(lcm)
        results["leda-cm"] = measure(lcm, manager, work)
        # leda-cm's daemon driven by Kanto's Go CLI: the CLI's share of create+start.
        if kanto_bins:
            for cid in lcm.ids():
                sh(lcm.cli("remove", "-f", cid))
            results["leda-cm"]["run-kcli"] = lcm.create_start("kcli", CONTAINERS, cli=kanto_bins[1])
        lcm.stop()
        if kanto_bins:
            kbr, knet3 = lib(f"harness_claim_net '{work}' {run}").split()
            k = Kanto(kanto_bins[0], kanto_bins[1], work, f"bench-kanto-{run}", kbr, knet3)
            daemons.append(k)
            results["kanto"] = measure(k, manager, work)
            k.stop()
    finally:
        manager.client.loop_stop()
        for d in daemons:
            try:
                d.stop()
            finally:
                clean(d.ns)
                unmount_under(d.dir, d.label)
        lib(f"harness_release_nets_of '{work}'")

    report(results, kanto_bins, skipped, binary)
    shutil.rmtree(work, ignore_errors=True)


def unmount_under(path, who):
    """Unmounts what a daemon left mounted under its own dir (Kanto v1.0.0 leaves some of its
    containers' rootfs and netns mounts after `remove -f`), deepest first, so that the work
    dir can be removed."""
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    left = sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)
    for p in left:
        subprocess.run(["umount", "-l", p], capture_output=True)
    if left:
        print(f"note: {who} left {len(left)} mounts under its dir; unmounted", file=sys.stderr)


def report(results, kanto_bins, skipped, binary):
    med = statistics.median
    l, k = results["leda-cm"], results.get("kanto")
    rows = []

    def mib(kib):
        return f"{kib / 1024:.2f} MiB"

    def ms(s):
        return f"{s * 1000:.1f} ms"

    def row(what, lv, kv, fmt, note=""):
        ratio = f"{kv / lv:.2f}" if (k and isinstance(kv, (int, float)) and lv) else ""
        rows.append((what, fmt(lv), fmt(kv) if isinstance(kv, (int, float)) else (kv or ""), ratio, note))

    get = (lambda *p: _dig(k, *p)) if k else (lambda *p: None)
    row("binary size (stripped copy)", l["size"], get("size"), lambda b: f"{b / 1e6:.2f} MB")
    row(f"exec -> API socket accepting (median of {RUNS})", med(l["start"]), k and med(k["start"]), ms)
    for key, n in (("idle", 0), ("busy", CONTAINERS)):
        row(f"daemon RSS, {n} containers", l[key]["rss"], get(key, "rss"), mib)
        row(f"total PSS, {n} containers", l[key]["pss"], get(key, "pss"), mib,
            f"processes: leda-cm {l[key]['procs']}" + (f", Kanto {k[key]['procs']}" if k else ""))
    row(f"create+start, own CLI (median of {CONTAINERS})", med(l["run"]), k and med(k["run"]), ms)
    if k:
        row(f"create+start, Kanto's kanto-cm (median of {CONTAINERS})", med(l["run-kcli"]), med(k["run"]), ms)
    row(f"no-op desired state -> COMPLETED, {CONTAINERS} containers (median of {RUNS})", med(l["noop"]),
        k and med(k["noop"]), ms, "Kanto: the bench sends DOWNLOAD/UPDATE/ACTIVATE/CLEANUP" if k else "")
    row(f"  of which publish -> IDENTIFIED (median of {RUNS})", med(l["identified"]), k and med(k["identified"]), ms)

    print(f"leda-cm: {binary}")
    if k:
        print(f"Kanto container-management v{kanto_bins[2]}: {kanto_bins[0]} (as built {k['built'] / 1e6:.1f} MB, "
              f"with symbols), kanto-cm {kanto_bins[1]}")
    else:
        print(f"Kanto column SKIPPED: {skipped}")
    head = ("", "leda-cm", "Kanto", "Kanto/leda-cm")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(4)]
    line = lambda r: "  ".join(str(r[i]).ljust(widths[i]) if i == 0 else str(r[i]).rjust(widths[i])
                               for i in range(4)) + (f"   {r[4]}" if len(r) > 4 and r[4] else "")
    print(line(head))
    for r in rows:
        print(line(r))
    print("(RSS: VmRSS of the daemon; PSS: summed over the daemon and its own processes, leda-cm's log "
          "drivers included; containerd and the shims not counted)")


def _dig(d, *path):
    for p in path:
        d = d[p]
    return d


if __name__ == "__main__":
    main()
