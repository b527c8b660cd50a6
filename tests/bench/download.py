#!/usr/bin/env python3
"""Download rate limit benchmark (prints figures; asserts nothing). Run with
`tests/bench/run download`.

An image with one layer of BENCH_MIB MiB of noise (default 8; it does not compress), pushed
to the local registry, is pulled by leda-cm (`kanto-cm create`, image absent) with
`containers.download_rate_limit` at each of BENCH_RATES (bytes/s, default 1 MiB/s and
4 MiB/s) and once without a limit. Printed: the pull time, the rate it achieved (the image's
bytes / (pull time - the pull time without a limit)), and its ratio to the limit.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

H = os.environ
SOCK = H["LEDA_TEST_CONTAINERD_SOCK"]
REG = H["LEDA_TEST_REGISTRY"]
LIB = os.path.join(H["LEDA_TEST_HARNESS_DIR"], "lib.sh")
MIB = int(H.get("BENCH_MIB", "8"))
RATES = [int(r) for r in H.get("BENCH_RATES", f"{1 << 20},{4 << 20}").split(",")]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def build(work, tag):
    """The harness's busybox plus one noise layer; pushed to REG/bench/<tag>:1.0."""
    d = os.path.join(work, "images")
    sh(["bash", "-c", f". '{LIB}'; harness_build_image '{d}' {tag} amd64 /bin/sh"])
    bundle = os.path.join(d, f"bundle-{tag}")
    sh(["umoci", "unpack", "--image", f"{d}/oci:{tag}", bundle])
    with open(os.path.join(bundle, "rootfs", "noise.bin"), "wb") as f:
        f.write(os.urandom(MIB << 20))
    sh(["umoci", "repack", "--image", f"{d}/oci:{tag}", bundle])
    sh(["rm", "-rf", bundle])
    sh(["bash", "-c", f". '{LIB}'; harness_push '{d}' {tag} '{REG}/bench/{tag}:1.0'"])
    return f"{REG}/bench/{tag}:1.0", pulled_bytes(os.path.join(d, "oci"), tag)


def pulled_bytes(layout, tag):
    """What a pull fetches of the layout's TAG: manifest, config and layers."""
    blob = lambda digest: os.path.join(layout, "blobs", "sha256", digest.split(":", 1)[1])
    index = json.load(open(os.path.join(layout, "index.json")))
    m = next(m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    manifest = json.load(open(blob(m["digest"])))
    return m["size"] + manifest["config"]["size"] + sum(l["size"] for l in manifest["layers"])


def daemon(binary, work, name, rate):
    state, rundir = os.path.join(work, name, "state"), os.path.join(work, name, "run")
    os.makedirs(os.path.join(work, name))
    cfg = os.path.join(work, name, "config.json")
    api = os.path.join(rundir, "cm.sock")
    run = os.path.basename(work).split("-")[-1].lower()
    with open(cfg, "w") as f:
        json.dump({
            "manager": {"home_dir": state, "exec_root_dir": rundir},
            "containers": {"address_path": SOCK, "default_ns": f"bench-dl-{run}-{name}",
                           "insecure_registries": [REG], "download_rate_limit": rate},
            "grpc_server": {"address_path": api},
            "things": {"enable": False}, "deployment": {"enable": False},
            "network": {"default_bridge": {"disable": True}},
            "log": {"log_level": "WARN"},
        }, f)
    notify = os.path.join(work, name, "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify)
    listener.settimeout(30)
    p = subprocess.Popen([binary, "daemon", "--cfg-file", cfg], env=dict(os.environ, NOTIFY_SOCKET=notify),
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, name, "daemon.log"), "w"))
    while "READY=1" not in listener.recv(4096).decode().splitlines():
        pass
    kcm = os.path.join(work, name, "kanto-cm")
    os.symlink(binary, kcm)
    return p, [kcm, "--host", api], f"bench-dl-{run}-{name}"


def pull_time(binary, work, name, rate, image):
    p, kcm, ns = daemon(binary, work, name, rate)
    try:
        t = time.perf_counter()
        sh(kcm + ["create", "--name", "pulled", image, "true"])
        return time.perf_counter() - t
    finally:
        subprocess.run(kcm + ["remove", "-f", "pulled"], capture_output=True)
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
        subprocess.run(["ctr", "--address", SOCK, "-n", ns, "images", "rm", "--sync", image],
                       capture_output=True)


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="bench-download-", dir=H["LEDA_TEST_WORKDIR"])
    image, size = build(work, "dl-free")
    free = pull_time(binary, work, "free", 0, image)
    print(f"pull of an image of {size / 1048576:.2f} MiB (busybox and a {MIB} MiB layer), local registry:")
    print(f"  no limit               {free * 1000:8.1f} ms")
    for i, rate in enumerate(RATES):
        image, size = build(work, f"dl-r{i}")
        took = pull_time(binary, work, f"r{i}", rate, image)
        # The time the bytes took beyond an unlimited pull's (unpacking, create): the rate.
        achieved = size / max(took - free, 1e-9)
        print(f"  limit {rate / 1048576:5.2f} MiB/s   {took * 1000:8.1f} ms   achieved "
              f"{achieved / 1048576:5.2f} MiB/s = {achieved / rate:.3f} x the limit")


if __name__ == "__main__":
    main()
