#!/usr/bin/env python3
"""Digital-twin benchmark (prints figures; asserts nothing). Run with `tests/bench/run things`.

- the daemon's CPU use with 20 running containers: idle, then with Metrics at 1 s (all
  containers, every measurement) over BENCH_SECONDS (default 60), as % of one core
- a Container `start` live message -> its 204 response (median over BENCH_RUNS)
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
SECONDS = int(os.environ.get("BENCH_SECONDS", "60"))
CONTAINERS = int(os.environ.get("BENCH_CONTAINERS", "20"))

H = os.environ
SOCK = H["LEDA_TEST_CONTAINERD_SOCK"]
REG = H["LEDA_TEST_REGISTRY"]
IMAGE = f"{REG}/{H['LEDA_TEST_SERVICE_IMAGE']}"
BROKER_HOST, BROKER_PORT = H["LEDA_TEST_MQTT"].rsplit(":", 1)
THING = "bench.ns:gw:edge:containers"
DITTO = "bench.ns/gw:edge:containers"
TICKS = os.sysconf("SC_CLK_TCK")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def ctr(ns, *args):
    return ["ctr", "--address", SOCK, "-n", ns, *args]


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Connector:
    """The cloud connector: answers the handshake, sends live messages, counts reports."""

    def __init__(self):
        self.cond = threading.Condition()
        self.answers = {}
        self.reports = 0
        self.client = mqtt.Client(client_id=f"bench-connector-{os.getpid()}")
        self.client.on_message = self.on_message
        self.client.connect(BROKER_HOST, int(BROKER_PORT), keepalive=30)
        self.client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for t in ("edge/thing/request", f"command//{THING}/res/#", "e/#"):
            self.client.subscribe(t, qos=1)
        self.client.loop_start()
        time.sleep(0.3)

    def on_message(self, _c, _u, msg):
        at = time.perf_counter()
        if msg.topic == "edge/thing/request":
            self.client.publish("edge/thing/response", json.dumps({"deviceId": "bench.ns:gw", "tenantId": "bench"}), qos=1)
            return
        with self.cond:
            if msg.topic.startswith(f"command//{THING}/res/"):
                rid, status = msg.topic.rsplit("/", 2)[1:]
                self.answers[rid] = (int(status), json.loads(msg.payload), at)
            elif b"/features/Metrics/outbox/messages/data" in msg.payload:
                self.reports += 1
            self.cond.notify_all()

    def call(self, feature, op, value=None, timeout=60):
        rid = f"b{time.monotonic_ns()}"
        env = {"topic": f"{DITTO}/things/live/messages/{op}", "path": f"/features/{feature}/inbox/messages/{op}",
               "headers": {"correlation-id": rid, "response-required": True, "content-type": "application/json"}}
        if value is not None:
            env["value"] = value
        t = time.perf_counter()
        self.client.publish(f"command//{THING}/req/{rid}/{op}", json.dumps(env), qos=1)
        with self.cond:
            if not self.cond.wait_for(lambda: rid in self.answers, timeout):
                raise SystemExit(f"no answer to {feature} {op}")
            status, body, at = self.answers.pop(rid)
        if status >= 300:
            raise SystemExit(f"{feature} {op}: {status} {body}")
        return body, at - t


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bench-things-", dir=H["LEDA_TEST_WORKDIR"])
    run = os.path.basename(work).split("-")[-1].lower()
    ns = f"bench-things-{run}"
    state, rundir = os.path.join(work, "state"), os.path.join(work, "run")
    cfg = os.path.join(work, "config.json")
    with open(cfg, "w") as f:
        json.dump({
            "manager": {"home_dir": state, "exec_root_dir": rundir, "default_ctrs_stop_timeout": 2},
            "containers": {"address_path": SOCK, "default_ns": ns, "insecure_registries": [REG]},
            "grpc_server": {"address_path": os.path.join(rundir, "cm.sock")},
            "things": {"enable": True}, "deployment": {"enable": False},
            # Containers in a namespace of their own, no bridge: tests/bench/network.py measures that.
            "network": {"default_bridge": {"disable": True}},
            "connection": {"broker_url": f"tcp://{BROKER_HOST}:{BROKER_PORT}"},
            "log": {"log_level": "WARN"},
        }, f)
    notify = os.path.join(work, "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify)
    listener.settimeout(30)
    connector = Connector()
    daemon = subprocess.Popen([binary, "daemon", "--cfg-file", cfg], env=dict(os.environ, NOTIFY_SOCKET=notify),
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "daemon.log"), "w"))
    while "READY=1" not in listener.recv(4096).decode().splitlines():
        pass
    try:
        time.sleep(1)
        ids = [connector.call("ContainerFactory", "create", {"imageRef": IMAGE, "start": True})[0]["value"]
               for _ in range(CONTAINERS)]
        time.sleep(2)
        idle_from = cpu_seconds(daemon.pid)
        idle_seconds = min(20, SECONDS)
        time.sleep(idle_seconds)
        idle = (cpu_seconds(daemon.pid) - idle_from) / idle_seconds * 100

        connector.call("Metrics", "request", {"frequency": "1s"})
        reports_from, cpu_from = connector.reports, cpu_seconds(daemon.pid)
        time.sleep(SECONDS)
        metered = (cpu_seconds(daemon.pid) - cpu_from) / SECONDS * 100
        reports = connector.reports - reports_from
        connector.call("Metrics", "request", {"frequency": "0s"})

        latencies = []
        for i in range(RUNS):
            target = f"Container:{ids[i % len(ids)]}"
            connector.call(target, "stopWithOptions", {"timeout": 1, "signal": "SIGKILL"})
            _, took = connector.call(target, "start")
            latencies.append(took)
        status = open(f"/proc/{daemon.pid}/status").read()
        hwm = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:"))

        print(f"daemon CPU with {CONTAINERS} running containers (% of one core):")
        print(f"  idle ({idle_seconds} s)                    {idle:6.3f} %")
        print(f"  Metrics at 1 s ({SECONDS} s, {reports} reports)  {metered:6.3f} %   target <= 0.5 %")
        print(f"Container start -> 204 ({RUNS} runs): median {statistics.median(latencies) * 1000:.1f} ms "
              f"(min {min(latencies) * 1000:.1f}, max {max(latencies) * 1000:.1f})")
        print(f"daemon peak RSS: {hwm / 1024:.2f} MiB")
    finally:
        connector.client.loop_stop()
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)
        for t in sh(ctr(ns, "tasks", "ls", "-q")).stdout.split():
            subprocess.run(ctr(ns, "tasks", "kill", "-s", "SIGKILL", t), capture_output=True)
        time.sleep(0.5)
        for t in sh(ctr(ns, "tasks", "ls", "-q")).stdout.split():
            subprocess.run(ctr(ns, "tasks", "delete", "-f", t), capture_output=True)
        for c in sh(ctr(ns, "containers", "ls", "-q")).stdout.split():
            subprocess.run(ctr(ns, "containers", "delete", c), capture_output=True)


if __name__ == "__main__":
    main()
