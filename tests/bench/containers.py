#!/usr/bin/env python3
"""Container benchmark of leda-cm against ctr on the same containerd (prints figures;
asserts nothing). Run with `tests/bench/run containers`.

- create+start latency through leda-cm (kanto-cm create + start) / `ctr run -d`
- pull time through leda-cm / `ctr images pull`, each from the local registry, each run
  with an image of its own so nothing is cached (leda-cm's pull = create with the image
  absent minus create with it present)
- daemon RSS with 20 running containers
"""
import json
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
LIB = os.path.join(H["LEDA_TEST_HARNESS_DIR"], "lib.sh")


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def timed(cmd):
    t = time.perf_counter()
    sh(cmd)
    return time.perf_counter() - t


def ctr(ns, *args):
    return ["ctr", "--address", SOCK, "-n", ns, *args]


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bench-containers-", dir=H["LEDA_TEST_WORKDIR"])
    run = os.path.basename(work).split("-")[-1].lower()
    ns, ctr_ns = f"bench-lcm-{run}", f"bench-ctr-{run}"

    # Images of their own for the pull runs (the tag is baked into a file: unique layers).
    images = os.path.join(work, "images")
    for i in range(RUNS):
        for who in ("lcm", "ctr"):
            tag = f"pull-{who}-{i}"
            sh(["bash", "-c", f". '{LIB}'; harness_build_image '{images}' {tag} amd64 /bin/sh && "
                f"harness_push '{images}' {tag} '{REG}/bench/{tag}:1.0'"])

    state, rundir = os.path.join(work, "state"), os.path.join(work, "run")
    cfg = os.path.join(work, "config.json")
    api = os.path.join(rundir, "cm.sock")
    with open(cfg, "w") as f:
        json.dump({
            "manager": {"home_dir": state, "exec_root_dir": rundir},
            "containers": {"address_path": SOCK, "default_ns": ns, "insecure_registries": [REG]},
            "grpc_server": {"address_path": api},
            "things": {"enable": False}, "deployment": {"enable": False},
            # Containers in a namespace of their own, no bridge: tests/bench/network.py measures that.
            "network": {"default_bridge": {"disable": True}},
            "log": {"log_level": "WARN"},
        }, f)
    notify = os.path.join(work, "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify)
    listener.settimeout(30)
    env = dict(os.environ, NOTIFY_SOCKET=notify)
    daemon = subprocess.Popen([binary, "daemon", "--cfg-file", cfg], env=env,
                              stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "daemon.log"), "w"))
    while "READY=1" not in listener.recv(4096).decode().splitlines():
        pass
    kcm_bin = os.path.join(work, "kanto-cm")
    os.symlink(binary, kcm_bin)

    def kcm(*args):
        return [kcm_bin, "--host", api, *args]

    try:
        # Pull.
        sh(kcm("create", "--name", "warm", IMAGE))  # the base image, for the "present" figure
        present = [timed(kcm("create", "--name", f"present-{i}", IMAGE)) for i in range(RUNS)]
        absent = [timed(kcm("create", "--name", f"pulled-{i}", f"{REG}/bench/pull-lcm-{i}:1.0")) for i in range(RUNS)]
        lcm_pull = [a - statistics.median(present) for a in absent]
        ctr_pull = [timed(ctr(ctr_ns, "images", "pull", "--plain-http", f"{REG}/bench/pull-ctr-{i}:1.0"))
                    for i in range(RUNS)]
        sh(ctr(ctr_ns, "images", "pull", "--plain-http", IMAGE))

        # Create + start.
        lcm_run, ctr_run = [], []
        for i in range(RUNS):
            t = time.perf_counter()
            cid = sh(kcm("create", "--name", f"run-{i}", IMAGE, "sleep", "600")).stdout.strip()
            sh(kcm("start", cid))
            lcm_run.append(time.perf_counter() - t)
            ctr_run.append(timed(ctr(ctr_ns, "run", "-d", IMAGE, f"ctr-run-{i}", "sleep", "600")))

        # RSS with running containers.
        running = RUNS
        for i in range(running, CONTAINERS):
            cid = sh(kcm("create", "--name", f"run-{i}", IMAGE, "sleep", "600")).stdout.strip()
            sh(kcm("start", cid))
        time.sleep(2)
        status = open(f"/proc/{daemon.pid}/status").read()
        rss = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS:"))
        hwm = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmHWM:"))

        med = statistics.median
        print(f"pull (local registry, {RUNS} runs, fresh image each):")
        print(f"  leda-cm   median {med(lcm_pull) * 1000:7.1f} ms  (create with pull {med(absent) * 1000:.1f} ms"
              f" - create without {med(present) * 1000:.1f} ms)")
        print(f"  ctr pull  median {med(ctr_pull) * 1000:7.1f} ms")
        print(f"  ratio leda-cm / ctr = {med(lcm_pull) / med(ctr_pull):.2f}   target <= 1.1")
        print(f"create+start ({RUNS} runs, image present):")
        print(f"  leda-cm (kanto-cm create + start)  median {med(lcm_run) * 1000:7.1f} ms")
        print(f"  ctr run -d                         median {med(ctr_run) * 1000:7.1f} ms")
        print(f"  ratio leda-cm / ctr = {med(lcm_run) / med(ctr_run):.2f}   target <= 1.15")
        print(f"daemon RSS with {CONTAINERS} running containers: {rss} KiB ({rss / 1024:.2f} MiB), "
              f"peak {hwm / 1024:.2f} MiB   target <= 10 MiB")
    finally:
        subprocess.run(kcm("remove", "-f", *sh(kcm("list", "-q")).stdout.split()), capture_output=True)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=20)
        for t in sh(ctr(ctr_ns, "tasks", "ls", "-q")).stdout.split():
            subprocess.run(ctr(ctr_ns, "tasks", "kill", "-s", "SIGKILL", t), capture_output=True)
        time.sleep(0.5)
        for t in sh(ctr(ctr_ns, "tasks", "ls", "-q")).stdout.split():
            subprocess.run(ctr(ctr_ns, "tasks", "delete", "-f", t), capture_output=True)
        for c in sh(ctr(ctr_ns, "containers", "ls", "-q")).stdout.split():
            subprocess.run(ctr(ctr_ns, "containers", "delete", c), capture_output=True)
        shutil.rmtree(images, ignore_errors=True)


if __name__ == "__main__":
    main()
