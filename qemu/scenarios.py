#!/usr/bin/env python3
"""The QEMU scenarios of leda-cm: the real binary under systemd on a booted Debian image.

    scenarios.py --image DIR --workdir DIR --mqtt-port PORT --registry-port PORT
                 --image-ref REF [--update-image-ref REF]

qemu/test.sh prepares everything (image, host registry with the test images) and calls this.
Boots: boot 1 runs `first-boot` (READY, read-only root, the system containers deployed from
the image's manifests dir, containers created with kanto-cm), `watchdog` and `mqtt-update`;
the guest then reboots cleanly; boot 2 runs `reboot-persistence`; then the guest is powered
off through the control channel. Every step must pass: none is skipped."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runner import Guest, machine_from_image, read_boot_env  # noqa: E402

# The image's manifests dir (deployment.ctr_dir of qemu/guest/etc/container-management/config.json).
MANIFESTS_DIR = "/etc/container-management/containers"

T_BOOT = 600  # generous: TCG on a shared 2-core machine
T_READY = 600


class Report:
    def __init__(self):
        self.passed: list[str] = []
        self.failed: list[str] = []
        self.facts: dict[str, str] = {}

    def ok(self, name: str, detail: str = "") -> None:
        self.passed.append(name)
        print(f"PASS: {name}" + (f" ({detail})" if detail else ""), flush=True)

    def fail(self, name: str, detail: str) -> None:
        self.failed.append(name)
        print(f"FAIL: {name}: {detail}", flush=True)

    def fact(self, key: str, value: str) -> None:
        self.facts[key] = value
        print(f"  {key}: {value}", flush=True)


class Scenarios:
    def __init__(self, a):
        self.a = a
        self.r = Report()
        self.root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = read_boot_env(os.path.join(a.image, "boot.env"))
        self.binary = env["LEDA_CM_BINARY"]
        self.rootfs = os.path.join(a.image, "rootfs.ext4")
        self.rootfs_sha = open(os.path.join(a.image, "rootfs.sha256")).read().strip()
        m = machine_from_image(a.image, a.workdir, os.path.join(a.workdir, "console.log"),
                               a.mqtt_port, a.registry_port)
        self.g = Guest(m)
        self.provisioned: dict = {}

    # --- helpers ------------------------------------------------------------------------
    def step(self, name: str, fn) -> bool:
        print(f"--- {name}", flush=True)
        t = time.monotonic()
        try:
            detail = fn()
        except Exception as e:  # noqa: BLE001 - a failed step is reported, the run goes on
            self.r.fail(name, f"{e}")
            traceback.print_exc(file=sys.stdout)
            return False
        self.r.ok(name, (detail or "") + f"; {time.monotonic() - t:.0f}s")
        return True

    def wait_ready(self, boot: int) -> str:
        g = self.g
        t_agent = g.wait_agent(T_BOOT)
        deadline = time.monotonic() + T_READY
        while True:
            st = self.props("ActiveState", "SubState", "NRestarts", "Result")
            if (st["ActiveState"], st["SubState"]) == ("active", "running"):
                break
            if st["ActiveState"] == "failed" or int(st["NRestarts"]) >= 3:
                raise AssertionError(f"leda-cm does not start: {st}\n" + g.run(
                    "journalctl -b -u leda-cm -o cat --no-pager | tail -20", check=False).out)
            if time.monotonic() > deadline:
                raise TimeoutError(f"leda-cm not READY after {T_READY}s: {st}")
            time.sleep(1)
        # READY=1 is what ends a Type=notify start: systemd prints "Started" then.
        seen = g.console.find(r"Started .*leda-cm")
        mono = int(self.props("ActiveEnterTimestampMonotonic")["ActiveEnterTimestampMonotonic"])
        up = float(g.out("cut -d' ' -f1 /proc/uptime"))
        now = g.elapsed()
        # Host seconds since QEMU started, from the console line (or from the guest clock).
        t_host = seen[1] if seen else now - (up - mono / 1e6)
        self.r.fact(f"boot {boot}: QEMU start -> leda-cm READY (TCG)", f"{t_host:.1f} s "
                    f"(kernel start -> READY {mono / 1e6:.1f} s; guest agent up at {t_agent:.1f} s)")
        return f"READY {t_host:.1f}s after QEMU started"

    def props(self, *names: str, unit: str = "leda-cm.service") -> dict[str, str]:
        out = self.g.out(f"systemctl show {unit} " + " ".join(f"-p {n}" for n in names))  # unit "": the manager
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def http_get(self, port: int, path: str) -> str:
        """GET from the guest's own network namespace (bash /dev/tcp: the image has no wget)."""
        return self.g.run(f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 "
                          "&& timeout 5 cat <&3", check=False, timeout=20, shell="/bin/bash").out

    def ctr_tasks(self) -> dict[str, tuple[str, str]]:
        out = self.g.out("ctr -n kanto-cm tasks ls")
        tasks = {}
        for line in out.splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                tasks[f[0]] = (f[1], f[2])
        return tasks

    def containers(self) -> list[dict]:
        ids = self.g.out("ls /var/lib/container-management/containers 2>/dev/null || true").split()
        res = []
        for cid in ids:
            # A directory without its record yet is a create in hand (the record is written
            # once containerd has the container): not a container to look at yet.
            raw = self.g.out(f"cat /var/lib/container-management/containers/{cid}/config.json"
                             " 2>/dev/null || true")
            if raw:
                res.append(json.loads(raw))
        return res

    # --- boot 1 -------------------------------------------------------------------------
    def first_boot(self) -> None:
        g = self.g
        g.boot()
        if not self.step("first-boot: leda-cm READY under systemd", lambda: self.wait_ready(1)):
            raise RuntimeError("the first boot did not reach READY")
        self.step("first-boot: root read-only, writes only to the data partition", self.check_ro)
        self.step("first-boot: hardware watchdog armed by systemd", self.check_hw_watchdog)
        self.step("first-boot: MQTT broker reachable from the host (127.0.0.1 only)", self.check_mqtt)
        self.step("first-boot: system containers from the manifests run", self.check_manifests)
        self.step("first-boot: containers provisioned from the host registry run", self.provision)

    def check_ro(self) -> str:
        g = self.g
        opts = g.out("findmnt -n -o OPTIONS /").split(",")
        assert "ro" in opts, f"/ is mounted {opts}"
        r = g.run("touch /leda-cm-write-probe", check=False)
        assert r.rc != 0 and "Read-only" in (r.err + r.out), f"writing to / did not fail: {r}"
        data = g.out("findmnt -rn -o SOURCE,FSTYPE,OPTIONS /data")
        assert data.startswith("/dev/vdb ext4 rw"), f"/data: {data}"
        varlib = g.out("findmnt -rn -o FSTYPE,OPTIONS /var/lib")
        assert varlib.startswith("overlay rw") and "upperdir=/data/" in varlib, f"/var/lib: {varlib}"
        # Every writable mount is the data partition, an overlay whose changes go there,
        # a tmpfs or a kernel file system; no other block device is mounted rw.
        bad = []
        for line in g.out("findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS").splitlines():
            target, source, fstype, options = line.split(" ", 3)
            source = source.split("[", 1)[0]  # a bind mount: DEVICE[/path on it]
            if not options.startswith("rw"):
                continue
            if source.startswith("/dev/vd") and source != "/dev/vdb":
                bad.append(line)
            elif fstype == "overlay" and target == "/var/lib" and "upperdir=/data/" not in options:
                bad.append(line)
            elif fstype in ("ext4", "ext3", "ext2", "vfat", "xfs", "btrfs") and source != "/dev/vdb":
                bad.append(line)
        assert not bad, f"writable mounts outside the data partition: {bad}"
        ctrd = g.out("ls -d /data/containerd/io.containerd.content.v1.content")
        state = g.out("findmnt -rn -o FSTYPE,OPTIONS -T /var/lib/container-management")
        assert state.startswith("overlay ") and "upperdir=/data/" in state, \
            f"leda-cm's state dir is not on the data partition: {state}"
        state = state.split()[0]
        return f"/ ro; /data rw on vdb; /var/lib overlay on /data ({state}); containerd root {os.path.dirname(ctrd)}"

    def check_hw_watchdog(self) -> str:
        g = self.g
        # PID 1 logs this before journald runs: it is in the kernel log.
        out = g.out("dmesg | grep -E 'systemd\\[1\\]: (Using hardware watchdog|Watchdog running)' || true")
        assert "Using hardware watchdog" in out, f"systemd did not arm a hardware watchdog: {out!r}"
        state = g.out("cat /sys/class/watchdog/watchdog0/state")
        assert state == "active", f"watchdog0 is {state}"
        timeout = self.props("RuntimeWatchdogUSec", unit="")["RuntimeWatchdogUSec"]
        return f"watchdog0 {state}, RuntimeWatchdogSec={timeout}: " + " / ".join(
            line.split("]: ", 1)[-1] for line in out.splitlines())

    def check_mqtt(self) -> str:
        port = self.a.mqtt_port
        msg = f"probe-{int(time.time())}"
        self.g.run(f"mosquitto_pub -h 127.0.0.1 -t leda/qemu/probe -r -m {msg}")
        host = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t",
                               "leda/qemu/probe", "-C", "1", "-W", "20"],
                              capture_output=True, text=True, timeout=40)
        assert host.stdout.strip() == msg, f"host read {host.stdout!r} {host.stderr!r}"
        self.g.run("mosquitto_pub -h 127.0.0.1 -t leda/qemu/probe -r -n")
        ss = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True)
        listeners = {ln.split()[3] for ln in ss.stdout.splitlines() if ln.split()}
        assert listeners == {f"127.0.0.1:{port}"}, f"forwarded port listens on {listeners}"
        return f"retained message from the guest read on 127.0.0.1:{port}"

    def manifests(self) -> dict[str, dict]:
        """The image's manifests (what the deployment reads), by container name."""
        res = {}
        for f in self.g.out(f"ls {MANIFESTS_DIR}").split():
            if f.endswith(".json"):
                m = json.loads(self.g.out(f"cat {MANIFESTS_DIR}/{f}"))
                res[m.get("container_name") or m["container_id"]] = m
        return res

    def by_name(self) -> dict[str, dict]:
        cs = self.containers()
        names = [c["container_name"] for c in cs]
        assert len(names) == len(set(names)), f"duplicate container names: {sorted(names)}"
        return {c["container_name"]: c for c in cs}

    def deployment_summaries(self) -> list[str]:
        """This boot's "deployment of DIR: N manifests: ..." lines of leda-cm."""
        out = self.g.out("journalctl -b -u leda-cm -o cat --no-pager | grep -F 'deployment of ' || true")
        return [line for line in out.splitlines() if f"deployment of {MANIFESTS_DIR}:" in line]

    def check_manifests(self) -> str:
        g = self.g
        manifests = self.manifests()
        assert manifests, f"no manifests in the image's {MANIFESTS_DIR}"
        deadline = time.monotonic() + 600
        while True:
            cs = self.by_name()
            tasks = self.ctr_tasks()
            running = {n for n in manifests
                       if n in cs and tasks.get(cs[n]["container_id"], ("", ""))[1] == "RUNNING"}
            summaries = self.deployment_summaries()
            if running == set(manifests) and summaries:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"manifest containers running: {sorted(running)} of "
                                   f"{sorted(manifests)}; deployment: {summaries}")
            time.sleep(5)
        n = len(manifests)
        want = f"{n} manifests: {n} created, 0 recreated, 0 updated, 0 failed"
        assert summaries == [f"deployment of {MANIFESTS_DIR}: {want}"], \
            f"first boot's deployment: {summaries}, expected one pass with {want!r}"
        for name, m in manifests.items():
            assert cs[name]["image"]["name"] == m["image"]["name"], \
                f"{name}: image {cs[name]['image']['name']} instead of {m['image']['name']}"
        self.provisioned["manifests"] = {name: {"id": cs[name]["container_id"],
                                                "created": cs[name]["created"]}
                                         for name in manifests}
        web = self.check_demo_web()
        self.provisioned["demo_web_ip"] = web
        return f"{summaries[0]}; running: {sorted(running)}; demo-web {web} answers on 127.0.0.1:30080"

    def check_demo_web(self) -> str:
        """demo-web (bridge mode) is on kanto-cm0 and its port mapping 127.0.0.1:30080 -> 8080
        reaches its httpd; returns its address."""
        deadline = time.monotonic() + 60
        page = ""
        while "leda-cm test image" not in page:
            assert time.monotonic() < deadline, f"demo-web does not answer on 127.0.0.1:30080: {page!r}"
            time.sleep(2)
            page = self.http_get(30080, "/index.html")
        web = self.by_name()["demo-web"]
        ip = web["network_settings"]["networks"]["kanto-cm0"]["ip_address"]
        assert ip.startswith("172."), f"demo-web's address on kanto-cm0: {ip!r}"
        bridge = self.g.out("ip -4 -o addr show kanto-cm0")
        assert " 172." in bridge, f"kanto-cm0: {bridge}"
        return ip

    def provision(self) -> str:
        g = self.g
        ref = self.a.image_ref
        marker = "/data/qemu-scenario-provisioned.json"
        if g.run(f"test -e {marker}", check=False).rc == 0:
            raise AssertionError("provisioning marker exists on a blank data partition")
        t = time.monotonic()
        g.run(f"kanto-cm create --name qemu-app --rp always {ref} "
              "/bin/sh -c 'echo started; while true; do sleep 5; done'", timeout=600)
        t_pull = time.monotonic() - t
        g.run(f"kanto-cm create --name qemu-host --network host --rp unless-stopped {ref} "
              "/bin/httpd -f -p 127.0.0.1:8088 -h /var/www", timeout=300)
        g.run("kanto-cm start --name qemu-app", timeout=120)
        g.run("kanto-cm start --name qemu-host", timeout=120)
        deadline = time.monotonic() + 120
        while True:
            page = self.http_get(8088, "/index.html")
            if "leda-cm test image" in page:
                break
            assert time.monotonic() < deadline, "qemu-host does not serve its page"
            time.sleep(2)
        listing = g.out("kanto-cm list")
        tasks = self.ctr_tasks()
        cs = self.by_name()
        ids = {}
        for name in ("qemu-app", "qemu-host"):
            assert name in cs, f"{name} not in the state dir: {list(cs)}"
            ids[name] = cs[name]["container_id"]
            assert tasks.get(ids[name], ("", ""))[1] == "RUNNING", f"{name} not running: {tasks}"
        self.provisioned.update({"ids": ids, "pids": {n: tasks[i][0] for n, i in ids.items()},
                                 "created": {n: cs[n]["created"] for n in ids},
                                 "boot_id": g.out("cat /proc/sys/kernel/random/boot_id")})
        g.run(f"cat > {marker} <<'EOF'\n{json.dumps(self.provisioned)}\nEOF\nsync")
        print(listing, flush=True)
        return f"pulled {ref} and created in {t_pull:.1f}s; qemu-app and qemu-host running"

    def watchdog(self) -> None:
        self.step("watchdog: frozen daemon restarted by systemd, containers untouched",
                  self.check_watchdog)

    def check_watchdog(self) -> str:
        g = self.g
        before = self.ctr_tasks()
        assert before, "no container tasks to watch"
        st0 = self.props("MainPID", "NRestarts", "WatchdogUSec")
        pid, restarts, wd = st0["MainPID"], int(st0["NRestarts"]), st0["WatchdogUSec"]
        mark = g.console.mark()
        t = time.monotonic()
        g.run(f"kill -STOP {pid}")
        hit = g.console.wait(r"leda-cm\.service: Watchdog timeout", 180, mark)
        assert hit, "no 'Watchdog timeout' from systemd within 180 s"
        t_timeout = time.monotonic() - t
        deadline = time.monotonic() + 180
        while True:
            st = self.props("ActiveState", "SubState", "MainPID", "NRestarts")
            if ((st["ActiveState"], st["SubState"]) == ("active", "running")
                    and st["MainPID"] != pid and int(st["NRestarts"]) > restarts):
                break
            assert time.monotonic() < deadline, f"leda-cm not restarted: {st}"
            time.sleep(1)
        t_back = time.monotonic() - t
        journal = g.out("journalctl -b -u leda-cm -o cat | grep -E 'Watchdog timeout|Scheduled restart|Killing process' || true")
        after = self.ctr_tasks()
        assert after == before, f"container tasks changed: before {before}, after {after}"
        # The restarted daemon's deployment pass (update mode: at every start) found nothing to do.
        n = len(self.provisioned.get("manifests", {}))
        redeploy = f"{n} manifests: 0 created, 0 recreated, 0 updated, 0 failed"
        deadline = time.monotonic() + 120
        while len(summaries := self.deployment_summaries()) < 2:
            assert time.monotonic() < deadline, f"no deployment pass after the restart: {summaries}"
            time.sleep(2)
        assert summaries[-1].endswith(redeploy), f"deployment after the restart: {summaries[-1]}"
        return (f"WatchdogSec={wd}: timeout seen {t_timeout:.0f}s after SIGSTOP, READY again after "
                f"{t_back:.0f}s (pid {pid} -> {st['MainPID']}, NRestarts {st['NRestarts']}); "
                f"{len(after)} container tasks kept their PIDs; deployment pass: {redeploy}; journal: "
                + " | ".join(journal.splitlines()[:3]))

    def mqtt_update(self) -> None:
        self.step("mqtt-update: desired state from the host reaches COMPLETED",
                  self.check_mqtt_update)

    def check_mqtt_update(self) -> str:
        """The update agent in its default (standalone) mode: identification, then download,
        update, activation and cleanup by itself; feedback on desiredstatefeedback."""
        g = self.g
        port = str(self.a.mqtt_port)
        ref = self.a.update_image_ref
        activity = f"qemu-{int(time.time())}"
        now = lambda: int(time.time() * 1000)  # noqa: E731
        # The containers created with kanto-cm stay (named system containers of this desired
        # state); the manifests' are system containers by their `leda_cm.system` flag.
        keep = ",".join(sorted(self.provisioned["ids"]))
        desired = {
            "activityId": activity, "timestamp": now(),
            "payload": {"domains": [{
                "id": "containers",
                "config": [{"key": "systemContainers", "value": keep}],
                "components": [{"id": "qemu-update", "version": "2.0",
                                "config": [{"key": "image", "value": ref},
                                           {"key": "restartPolicy", "value": "always"}]}]}]},
        }
        before = {n: c["container_id"] for n, c in self.by_name().items()}
        assert "qemu-update" not in before, f"qemu-update exists before the update: {sorted(before)}"

        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-t",
                                "containersupdate/desiredstatefeedback", "-W", "900"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(2)  # subscribed before the desired state goes out
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-t",
                        "containersupdate/desiredstate", "-m", json.dumps(desired)],
                       check=True, timeout=30)
        statuses: list[str] = []
        final = ("COMPLETED", "INCOMPLETE", "INCOMPLETE_INCONSISTENT", "SUPERSEDED",
                 "IDENTIFICATION_FAILED")
        t = time.monotonic()
        try:
            assert sub.stdout
            for line in sub.stdout:
                try:
                    msg = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if msg.get("activityId") != activity:
                    continue
                status = msg.get("payload", {}).get("status")
                if not statuses or statuses[-1] != status:
                    statuses.append(status)
                if status in final:
                    break
        finally:
            sub.kill()
            sub.wait()
        t_done = time.monotonic() - t
        assert statuses and statuses[-1] == "COMPLETED", f"feedback statuses: {statuses}"
        assert "IDENTIFIED" in statuses, f"no IDENTIFIED before COMPLETED: {statuses}"

        # The current state (retained, and answered on currentstate/get) lists the new one.
        cur = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-t",
                                "containersupdate/currentstate", "-W", "60"],
                               stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-t",
                        "containersupdate/currentstate/get", "-m",
                        json.dumps({"activityId": f"{activity}-get", "timestamp": now(), "payload": {}})],
                       check=True, timeout=30)
        nodes: list[str] = []
        try:
            assert cur.stdout
            for line in cur.stdout:
                try:
                    inv = json.loads(line)
                except json.JSONDecodeError:
                    continue
                nodes = [n.get("id") for n in inv.get("payload", {}).get("softwareNodes", [])]
                if "containers:qemu-update" in nodes:
                    break
        finally:
            cur.kill()
            cur.wait()
        assert "containers:qemu-update" in nodes, f"current state nodes: {nodes}"

        after = self.by_name()
        assert "qemu-update" in after, f"qemu-update not in the state dir: {sorted(after)}"
        tasks = self.ctr_tasks()
        assert tasks.get(after["qemu-update"]["container_id"], ("", ""))[1] == "RUNNING", \
            f"qemu-update not running: {tasks}"
        assert after["qemu-update"]["image"]["name"] == ref, after["qemu-update"]["image"]
        # Nothing else was touched: same names, same IDs.
        kept = {n: c["container_id"] for n, c in after.items() if n != "qemu-update"}
        assert kept == before, f"other containers changed: {before} -> {kept}"
        self.provisioned["update"] = {"id": after["qemu-update"]["container_id"],
                                      "created": after["qemu-update"]["created"]}
        g.run(f"cat > /data/qemu-scenario-provisioned.json <<'EOF'\n{json.dumps(self.provisioned)}\nEOF\nsync")
        return (f"feedback {' -> '.join(statuses)} in {t_done:.0f}s; current state lists "
                f"containers:qemu-update ({len(nodes)} nodes); {len(kept)} other containers kept")

    # --- reboot -------------------------------------------------------------------------
    def reboot(self) -> None:
        how = self.g.shutdown("reboot", timeout=180)
        print(f"  reboot: {how}", flush=True)
        if not how.startswith("clean"):
            self.r.fail("reboot: clean reboot through the control channel", how)
        self.g.boot()

    def reboot_persistence(self) -> None:
        if not self.step("reboot: leda-cm READY again", lambda: self.wait_ready(2)):
            return
        self.step("reboot: the same containers run, provisioning not redone", self.check_persistence)
        self.step("reboot: no first-boot deployment of the manifests again", self.check_no_redeploy)

    def check_persistence(self) -> str:
        g = self.g
        p = self.provisioned
        assert p, "nothing was provisioned at first boot"
        assert g.out("cat /proc/sys/kernel/random/boot_id") != p["boot_id"], "same boot"
        marker = json.loads(g.out("cat /data/qemu-scenario-provisioned.json"))
        assert marker["ids"] == p["ids"], f"marker changed: {marker}"
        # Every container of boot 1 (kanto-cm's, the manifests', the update's), by name.
        want = {n: (i, p["created"][n]) for n, i in p["ids"].items()}
        want.update({n: (m["id"], m["created"]) for n, m in p.get("manifests", {}).items()})
        if "update" in p:
            want["qemu-update"] = (p["update"]["id"], p["update"]["created"])
        deadline = time.monotonic() + 300
        while True:
            cs = self.by_name()
            tasks = self.ctr_tasks()
            running = {n for n, (i, _) in want.items() if tasks.get(i, ("", ""))[1] == "RUNNING"}
            if running == set(want):
                break
            assert time.monotonic() < deadline, \
                f"not running after the reboot: {sorted(set(want) - running)}; tasks {tasks}"
            time.sleep(2)
        assert set(cs) == set(want), f"containers after the reboot: {sorted(cs)}, before {sorted(want)}"
        for n, (i, created) in want.items():
            assert cs[n]["container_id"] == i, f"{n}: id {i} -> {cs[n]['container_id']}"
            assert cs[n]["created"] == created, f"{n} was re-created ({created} -> {cs[n]['created']})"
        deadline = time.monotonic() + 60
        page = ""
        while "leda-cm test image" not in page:
            assert time.monotonic() < deadline, f"qemu-host does not serve again: {page!r}"
            time.sleep(2)
            page = self.http_get(8088, "/index.html")
        new_pids = {n: tasks[i][0] for n, i in p["ids"].items()}
        ip = self.check_demo_web()
        assert ip == p["demo_web_ip"], f"demo-web's address changed over the reboot: {p['demo_web_ip']} -> {ip}"
        return (f"{len(want)} containers with the same ids and creation times running again "
                f"(restart policies), kanto-cm's pids {p['pids']} -> {new_pids}; qemu-host serves; "
                f"demo-web answers on 127.0.0.1:30080 with its address {ip} again")

    def check_no_redeploy(self) -> str:
        manifests = self.provisioned.get("manifests")
        assert manifests, "no manifest containers were deployed at first boot"
        deadline = time.monotonic() + 300
        while not (summaries := self.deployment_summaries()):
            assert time.monotonic() < deadline, "no deployment pass logged after the reboot"
            time.sleep(3)
        n = len(manifests)
        want = f"deployment of {MANIFESTS_DIR}: {n} manifests: 0 created, 0 recreated, 0 updated, 0 failed"
        assert summaries == [want], f"deployment after the reboot: {summaries}, expected {want!r}"
        cs = self.by_name()
        for name, m in manifests.items():
            assert cs[name]["container_id"] == m["id"] and cs[name]["created"] == m["created"], \
                f"{name} was deployed again: {m} -> {cs[name]['container_id']} {cs[name]['created']}"
        return f"{want} (update mode: the pass found every manifest deployed)"

    # --- the run ------------------------------------------------------------------------
    def run(self) -> int:
        t0 = time.monotonic()
        print(f"leda-cm in the guest: {self.binary}", flush=True)
        try:
            self.first_boot()
            if self.provisioned:
                self.watchdog()
            else:
                self.r.fail("watchdog: frozen daemon restarted by systemd, containers untouched",
                            "not run: no containers were provisioned")
            self.mqtt_update()
            self.reboot()
            self.reboot_persistence()
        except Exception as e:  # noqa: BLE001
            self.r.fail("run", f"{e}")
            traceback.print_exc(file=sys.stdout)
        finally:
            how = self.g.shutdown("powerdown", timeout=180) if self.g.running() else "already off"
            print(f"  power-off: {how}", flush=True)
            if how.startswith("clean"):
                self.r.ok("power-off through the control channel", how)
            elif how != "already off":
                self.r.fail("power-off through the control channel", how)
        sha = subprocess.run(["sha256sum", self.rootfs], capture_output=True, text=True).stdout.split()[0]
        if sha == self.rootfs_sha:
            self.r.ok("root image unchanged after the run", f"sha256 {sha[:16]}")
        else:
            self.r.fail("root image unchanged after the run", f"{self.rootfs_sha} -> {sha}")
        print(f"console log: {self.g.m.log_path}", flush=True)
        print(f"QEMU scenarios took {time.monotonic() - t0:.0f}s", flush=True)
        r = self.r
        print(f"qemu: {len(r.passed)} passed, {len(r.failed)} failed",
              flush=True)
        return 1 if r.failed else 0


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--image", required=True)
    p.add_argument("--workdir", required=True)
    p.add_argument("--mqtt-port", type=int, required=True)
    p.add_argument("--registry-port", type=int, required=True)
    p.add_argument("--image-ref", required=True)
    p.add_argument("--update-image-ref", default="")
    return Scenarios(p.parse_args()).run()


if __name__ == "__main__":
    sys.exit(main())
