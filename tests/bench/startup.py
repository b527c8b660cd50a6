#!/usr/bin/env python3
"""Start-up benchmark of the leda-cm daemon (prints figures; asserts nothing).

Run under the harness with a release binary:
    tests/bench/run startup

Prints the binary size, the peak RSS of an idle daemon (VmHWM after READY and a few idle
seconds), and the time from exec to READY=1 with containerd up (median of N runs).
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
IDLE_SECONDS = 3.0


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/leda-cm"
    sock = os.environ["LEDA_TEST_CONTAINERD_SOCK"]
    work = tempfile.mkdtemp(prefix="bench-startup-", dir=os.environ["LEDA_TEST_WORKDIR"])
    size = os.path.getsize(binary)

    times = []
    hwm_kib = None
    for i in range(RUNS):
        d = os.path.join(work, f"run{i}")
        os.makedirs(d)
        cfg = os.path.join(d, "config.json")
        with open(cfg, "w") as f:
            json.dump({
                "manager": {"home_dir": f"{d}/state", "exec_root_dir": f"{d}/run"},
                "containers": {"address_path": sock, "default_ns": f"bench-startup-{i}"},
                "grpc_server": {"address_path": f"{d}/run/cm.sock"},
                "things": {"enable": False},
                "deployment": {"enable": False},
                "log": {"log_level": "WARN"},
            }, f)
        notify_path = os.path.join(d, "notify.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(notify_path)
        listener.settimeout(30)
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "WATCHDOG_USEC")}
        env["NOTIFY_SOCKET"] = notify_path
        start = time.perf_counter()
        proc = subprocess.Popen([binary, "daemon", "--cfg-file", cfg], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = None
        while ready is None:
            msg = listener.recv(4096).decode()
            if "READY=1" in msg.splitlines():
                ready = time.perf_counter() - start
        times.append(ready)
        if i == 0:
            time.sleep(IDLE_SECONDS)
            with open(f"/proc/{proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        hwm_kib = int(line.split()[1])
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        listener.close()

    med = statistics.median(times) * 1000
    print(f"binary size:            {size} bytes ({size / 1e6:.2f} MB)   target <= 4 MB")
    print(f"peak RSS idle (VmHWM):  {hwm_kib} KiB ({hwm_kib / 1024:.2f} MiB)   target <= 6 MiB")
    print(f"exec -> READY=1:        median {med:.1f} ms over {RUNS} runs "
          f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})   target <= 50 ms")


if __name__ == "__main__":
    main()
