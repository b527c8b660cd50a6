#!/usr/bin/env python3
"""Bridge networking benchmark (prints figures; asserts nothing). Run with
`tests/bench/run network`.

- create+start and stop -f of a bridged container with and without a port mapping, against
  the same container with the bridge disabled (a namespace with loopback only): the cost of
  the CNI chain (bridge + host-local + portmap) per start and per stop
- the same create+start against `ctr run -d` (no CNI), as ratios
- stop -f returns once the task is dead and the record persisted; the plugins' DEL runs
  after it in the daemon: how long until it is through (the record no longer names the
  attachment) is printed too, and each run waits for it, so no run measures the previous
  one's DEL
- daemon RSS with 20 bridged containers running

The bridge is the benchmark's own (name and 10.206.x.0/24); it, the chains the plugins made
and the containers are removed afterwards.
"""
import json
import shlex
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
CONTAINERS = int(os.environ.get("BENCH_CONTAINERS", "20"))

H = os.environ
SOCK = H["LEDA_TEST_CONTAINERD_SOCK"]
REG = H["LEDA_TEST_REGISTRY"]
IMAGE = f"{REG}/{H['LEDA_TEST_IMAGE']}"


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd):
    t = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t


def cni_chains():
    out = set()
    for table in ("nat", "filter"):
        for line in sh(["iptables-save", "-t", table]).stdout.splitlines():
            if line.startswith(":CNI-"):
                out.add((table, line[1:].split()[0]))
    return out


def free_net3():
    routes = sh(["ip", "-4", "route", "show"]).stdout
    return next(f"10.206.{b}" for b in range(2, 250) if f"10.206.{b}." not in routes)


class Daemon:
    def __init__(self, binary, work, name, ns, bridge):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        rundir = os.path.join(self.dir, "run")
        self.api = os.path.join(rundir, "cm.sock")
        cfg = os.path.join(self.dir, "config.json")
        with open(cfg, "w") as f:
            json.dump({
                "manager": {"home_dir": os.path.join(self.dir, "state"), "exec_root_dir": rundir},
                "containers": {"address_path": SOCK, "default_ns": ns, "insecure_registries": [REG]},
                "grpc_server": {"address_path": self.api},
                "things": {"enable": False}, "deployment": {"enable": False},
                "network": {"default_bridge": bridge},
                "log": {"log_level": "WARN"},
            }, f)
        notify = os.path.join(self.dir, "notify.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(notify)
        listener.settimeout(30)
        self.kcm_bin = os.path.join(self.dir, "kanto-cm")
        os.symlink(binary, self.kcm_bin)
        self.proc = subprocess.Popen([binary, "daemon", "--cfg-file", cfg],
                                     env=dict(os.environ, NOTIFY_SOCKET=notify), stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "daemon.log"), "w"))
        while "READY=1" not in listener.recv(4096).decode().splitlines():
            pass

    def released(self, cid):
        """Whether the record of `cid` no longer names a bridge attachment (its DEL is done)."""
        path = os.path.join(self.dir, "state", "containers", cid, "config.json")
        try:
            with open(path) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return False  # being replaced right now
        return not (rec.get("leda_cm") or {}).get("network")

    def kcm(self, *args):
        return [self.kcm_bin, "--host", self.api, *args]

    def rss(self):
        status = open(f"/proc/{self.proc.pid}/status").read()
        return (next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS:")),
                next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:")))

    def stop(self):
        ids = sh(self.kcm("list", "-q")).stdout.split()
        if ids:
            subprocess.run(self.kcm("remove", "-f", *ids), capture_output=True)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=20)


def run_and_stop(d, prefix, flags):
    starts, stops, released = [], [], []
    for i in range(RUNS):
        t = time.perf_counter()
        cid = sh(d.kcm("create", "--name", f"{prefix}-{i}", *flags, IMAGE, "sleep", "600")).stdout.strip()
        sh(d.kcm("start", cid))
        starts.append(time.perf_counter() - t)
        t = time.perf_counter()
        sh(d.kcm("stop", "-f", cid))
        stops.append(time.perf_counter() - t)
        deadline = t + 30
        while not d.released(cid) and time.perf_counter() < deadline:
            time.sleep(0.002)
        released.append(time.perf_counter() - t)
    return starts, stops, released


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bench-network-", dir=H["LEDA_TEST_WORKDIR"])
    run = os.path.basename(work).split("-")[-1].lower()
    bridge = "lcmb" + "".join(c for c in run if c.isalnum())[:6]
    net3 = free_net3()
    chains_before = cni_chains()
    ctr_ns = f"bench-ctrn-{run}"
    port = 31000 + os.getpid() % 2000
    plain = bridged = None
    try:
        plain = Daemon(binary, work, "plain", f"bench-plain-{run}", {"disable": True})
        sh(plain.kcm("create", "--name", "warm", IMAGE))  # pulls the image once
        ns_start, ns_stop, _ = run_and_stop(plain, "ns", [])
        plain.stop()
        plain = None

        bridged = Daemon(binary, work, "bridged", f"bench-br-{run}",
                         {"disable": False, "name": bridge, "ip4": f"{net3}.1/24"})
        br_start, br_stop, br_rel = run_and_stop(bridged, "br", ["--ports", f"127.0.0.1:{port}:80"])
        bn_start, bn_stop, bn_rel = run_and_stop(bridged, "bn", [])

        sh(["ctr", "--address", SOCK, "-n", ctr_ns, "images", "pull", "--plain-http", IMAGE])
        ctr_run = [timed(["ctr", "--address", SOCK, "-n", ctr_ns, "run", "-d", IMAGE, f"ctr-{i}", "sleep", "600"])
                   for i in range(RUNS)]

        for i in range(CONTAINERS):
            cid = sh(bridged.kcm("create", "--name", f"many-{i}", IMAGE, "sleep", "600")).stdout.strip()
            sh(bridged.kcm("start", cid))
        time.sleep(2)
        rss, hwm = bridged.rss()

        med = statistics.median
        print(f"create+start, {RUNS} runs, image present:")
        print(f"  bridged + port mapping (CNI bridge, host-local, portmap)  median {med(br_start) * 1000:7.1f} ms")
        print(f"  bridged, no port mapping (CNI bridge, host-local)        median {med(bn_start) * 1000:7.1f} ms")
        print(f"  namespace only (bridge disabled)                          median {med(ns_start) * 1000:7.1f} ms")
        print(f"  ctr run -d (no CNI)                                       median {med(ctr_run) * 1000:7.1f} ms")
        print(f"  CNI cost per start: {(med(br_start) - med(ns_start)) * 1000:.1f} ms with a port mapping, "
              f"{(med(bn_start) - med(ns_start)) * 1000:.1f} ms without")
        print(f"  ratio / ctr run -d: bridged + port mapping {med(br_start) / med(ctr_run):.2f}, "
              f"bridged {med(bn_start) / med(ctr_run):.2f}, namespace only {med(ns_start) / med(ctr_run):.2f}")
        print(f"stop -f, {RUNS} runs (returns when the task is dead and the record persisted):")
        print(f"  bridged + port mapping median {med(br_stop) * 1000:.1f} ms, bridged {med(bn_stop) * 1000:.1f} ms, "
              f"namespace only {med(ns_stop) * 1000:.1f} ms")
        print(f"  until the DEL is through (after stop -f began): bridged + port mapping median "
              f"{med(br_rel) * 1000:.1f} ms, bridged {med(bn_rel) * 1000:.1f} ms")
        print(f"daemon RSS with {CONTAINERS} bridged containers: {rss / 1024:.2f} MiB, peak {hwm / 1024:.2f} MiB")
    finally:
        for d in (plain, bridged):
            if d is not None:
                d.stop()
        ctr = ["ctr", "--address", SOCK, "-n", ctr_ns]
        for t in subprocess.run(ctr + ["tasks", "ls", "-q"], capture_output=True, text=True).stdout.split():
            subprocess.run(ctr + ["tasks", "kill", "-s", "SIGKILL", t], capture_output=True)
        time.sleep(0.5)
        for t in subprocess.run(ctr + ["tasks", "ls", "-q"], capture_output=True, text=True).stdout.split():
            subprocess.run(ctr + ["tasks", "delete", "-f", t], capture_output=True)
        for c in subprocess.run(ctr + ["containers", "ls", "-q"], capture_output=True, text=True).stdout.split():
            subprocess.run(ctr + ["containers", "delete", c], capture_output=True)
        subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        made = cni_chains() - chains_before
        for table, chain in made:
            for line in sh(["iptables-save", "-t", table]).stdout.splitlines():
                if line.startswith("-A ") and line.endswith(f"-j {chain}"):
                    subprocess.run(["iptables", "-t", table] + ["-D"] + shlex.split(line)[1:], capture_output=True)
        for table, chain in made:
            subprocess.run(["iptables", "-t", table, "-F", chain], capture_output=True)
            subprocess.run(["iptables", "-t", table, "-X", chain], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
