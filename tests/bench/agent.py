#!/usr/bin/env python3
"""Update-agent benchmark (prints figures; asserts nothing). Run with `tests/bench/run agent`.

- no-op desired state with 20 running containers: publish -> COMPLETED feedback latency
- 10 new containers, image present: publish -> COMPLETED (all 10 running, checked with ctr
  afterwards), against 10 sequential `ctr run -d` of the same image on the same containerd
- a replacement whose old container ignores SIGTERM (stop timeout 30 s, then SIGKILL):
  publish -> the new container runs (ctr), and -> COMPLETED (the old one removed)
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

RUNS = int(os.environ.get("BENCH_RUNS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
BASE = 20
NEW = 10

H = os.environ
SOCK = H["LEDA_TEST_CONTAINERD_SOCK"]
REG = H["LEDA_TEST_REGISTRY"]
IMAGE = f"{REG}/{H['LEDA_TEST_SERVICE_IMAGE']}"
BROKER_HOST, BROKER_PORT = H["LEDA_TEST_MQTT"].rsplit(":", 1)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def ctr(ns, *args):
    return ["ctr", "--address", SOCK, "-n", ns, *args]


def running(ns):
    lines = sh(ctr(ns, "tasks", "ls")).stdout.splitlines()[1:]
    return sum(1 for l in lines if l.split()[2:3] == ["RUNNING"])


def clean(ns):
    for t in sh(ctr(ns, "tasks", "ls", "-q")).stdout.split():
        subprocess.run(ctr(ns, "tasks", "kill", "-s", "SIGKILL", t), capture_output=True)
    time.sleep(0.5)
    for t in sh(ctr(ns, "tasks", "ls", "-q")).stdout.split():
        subprocess.run(ctr(ns, "tasks", "delete", "-f", t), capture_output=True)
    for c in sh(ctr(ns, "containers", "ls", "-q")).stdout.split():
        subprocess.run(ctr(ns, "containers", "delete", c), capture_output=True)


class Cloud:
    """Publishes desired states; notes when each activity's final feedback arrives."""

    def __init__(self):
        self.done = {}
        self.cond = threading.Condition()
        self.client = mqtt.Client(client_id=f"bench-cloud-{os.getpid()}")
        self.client.on_message = self.on_message
        self.client.connect(BROKER_HOST, int(BROKER_PORT), keepalive=30)
        self.client.subscribe("containersupdate/desiredstatefeedback", qos=1)
        # The cloud side's own Nagle delay is not leda-cm's latency (paho does not disable it).
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        time.sleep(0.3)

    def on_message(self, _c, _u, msg):
        at = time.perf_counter()
        j = json.loads(msg.payload)
        status = j["payload"].get("status")
        if os.environ.get("BENCH_TRACE"):
            print(f"  {at:.4f} {j['activityId']} {status}")
        if status in ("COMPLETED", "INCOMPLETE", "IDENTIFICATION_FAILED"):
            with self.cond:
                self.done[j["activityId"]] = (status, at)
                self.cond.notify_all()

    def apply(self, activity, names, timeout=180):
        components = [{"id": n, "version": "1.0", "config": [{"key": "image", "value": IMAGE}]} for n in names]
        t = self.publish(activity, components)
        return self.wait(activity, timeout) - t

    def publish(self, activity, components):
        payload = {"activityId": activity, "timestamp": int(time.time() * 1000),
                   "payload": {"domains": [{"id": "containers", "config": [], "components": components}]}}
        data = json.dumps(payload)
        t = time.perf_counter()
        if os.environ.get("BENCH_TRACE"):
            print(f"  {t:.4f} {activity} publish")
        self.client.publish("containersupdate/desiredstate", data, qos=1)
        return t

    def wait(self, activity, timeout=180):
        with self.cond:
            if not self.cond.wait_for(lambda: activity in self.done, timeout):
                raise SystemExit(f"no final feedback for {activity} within {timeout} s")
            status, at = self.done[activity]
        if status != "COMPLETED":
            raise SystemExit(f"{activity} ended {status}")
        return at


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bench-agent-", dir=H["LEDA_TEST_WORKDIR"])
    run = os.path.basename(work).split("-")[-1].lower()
    ns, ctr_ns = f"bench-agent-{run}", f"bench-agent-ctr-{run}"
    state, rundir = os.path.join(work, "state"), os.path.join(work, "run")
    cfg = os.path.join(work, "config.json")
    with open(cfg, "w") as f:
        json.dump({
            # Kanto's default stop timeout; the service image stops at once on SIGTERM.
            "manager": {"home_dir": state, "exec_root_dir": rundir, "default_ctrs_stop_timeout": 30},
            "containers": {"address_path": SOCK, "default_ns": ns, "insecure_registries": [REG]},
            "grpc_server": {"address_path": os.path.join(rundir, "cm.sock")},
            "things": {"enable": False}, "deployment": {"enable": False},
            # Containers in a namespace of their own, no bridge: tests/bench/network.py measures that.
            "network": {"default_bridge": {"disable": True}},
            "update_agent": {"enable": True},
            "connection": {"broker_url": f"tcp://{BROKER_HOST}:{BROKER_PORT}"},
            "log": {"log_level": H.get("BENCH_LOG", "WARN")},
        }, f)
    notify = os.path.join(work, "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify)
    listener.settimeout(30)
    daemon = subprocess.Popen([binary, "daemon", "--cfg-file", cfg], env=dict(os.environ, NOTIFY_SOCKET=notify),
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "daemon.log"), "w"))
    while "READY=1" not in listener.recv(4096).decode().splitlines():
        pass
    cloud = Cloud()
    try:
        print(f"daemon log: {os.path.join(work, 'daemon.log')}")
        base = [f"base-{i}" for i in range(BASE)]
        first = cloud.apply("base", base)
        noop = [cloud.apply(f"noop-{i}", base) for i in range(RUNS)]
        assert running(ns) == BASE
        cloud.apply("empty", [])

        lcm, ctr_runs = [], []
        sh(ctr(ctr_ns, "images", "pull", "--plain-http", IMAGE))
        for r in range(ROUNDS):
            names = [f"new-{r}-{j}" for j in range(NEW)]
            lcm.append(cloud.apply(f"new-{r}", names))
            n = running(ns)
            if n != NEW:
                raise SystemExit(f"round {r}: {n} containers running, expected {NEW}")
            cloud.apply(f"clear-{r}", [])
            t = time.perf_counter()
            for j in range(NEW):
                sh(ctr(ctr_ns, "run", "-d", "--null-io", IMAGE, f"ctr-{r}-{j}"))
            ctr_runs.append(time.perf_counter() - t)
            clean(ctr_ns)
        # A replacement of a container whose PID 1 ignores SIGTERM.
        def stubborn(env):
            return {"id": "stubborn", "version": "1.0", "config": [
                {"key": "image", "value": IMAGE}, {"key": "env", "value": env},
                {"key": "cmd", "value": "/bin/sh"}, {"key": "cmd", "value": "-c"},
                {"key": "cmd", "value": "trap '' TERM; while :; do sleep 1; done"}]}

        def tasks_running():
            lines = sh(ctr(ns, "tasks", "ls")).stdout.splitlines()[1:]
            return {l.split()[0] for l in lines if l.split()[2:3] == ["RUNNING"]}

        cloud.publish("stub-v1", [stubborn("V=1")])
        cloud.wait("stub-v1")
        old = tasks_running()
        t = cloud.publish("stub-v2", [stubborn("V=2")])
        while not (tasks_running() - old):
            if time.perf_counter() - t > 120:
                raise SystemExit("the replacement never ran")
            time.sleep(0.05)
        replaced_runs = time.perf_counter() - t
        replaced_done = cloud.wait("stub-v2") - t
        cloud.apply("stub-clear", [])

        status = open(f"/proc/{daemon.pid}/status").read()
        hwm = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:"))

        med = statistics.median
        print(f"first desired state, {BASE} new containers (one pull): {first * 1000:.0f} ms")
        print(f"no-op desired state with {BASE} running containers ({RUNS} runs):")
        print(f"  publish -> COMPLETED  median {med(noop) * 1000:6.1f} ms  (min {min(noop) * 1000:.1f}, "
              f"max {max(noop) * 1000:.1f})   target <= 50 ms")
        print(f"{NEW} new containers, image present ({ROUNDS} rounds):")
        print(f"  leda-cm desired state -> COMPLETED  median {med(lcm) * 1000:7.1f} ms")
        print(f"  {NEW} sequential ctr run -d           median {med(ctr_runs) * 1000:7.1f} ms")
        print(f"  ratio leda-cm / ctr = {med(lcm) / med(ctr_runs):.2f}   target <= 1.0")
        print("replacing a container whose PID 1 ignores SIGTERM (stop timeout 30 s):")
        print(f"  publish -> new container running  {replaced_runs:6.2f} s   target <= 3 s")
        print(f"  publish -> COMPLETED (old removed) {replaced_done:6.2f} s")
        print(f"daemon peak RSS: {hwm / 1024:.2f} MiB")
    finally:
        cloud.client.loop_stop()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)
        clean(ns)
        clean(ctr_ns)


if __name__ == "__main__":
    main()
