#!/usr/bin/env python3
"""Boots the leda-cm QEMU image and drives it.

A library for qemu/scenarios.py and a command line:

    runner.py interactive --image DIR [--mqtt-port PORT] [--registry-port PORT]
        the device on this terminal (serial console; `poweroff` in the guest ends it,
        Ctrl-A X kills QEMU)
    runner.py oneshot --arch ARCH --kernel K --initrd I --append CMDLINE --disk D...
                      --log FILE --timeout SECS --expect TEXT
        boots, waits for QEMU to exit, succeeds when TEXT was on the console (the arm64
        debootstrap second stage)

Always TCG (`-accel tcg`): /dev/kvm on these machines hangs ordinary guests. The serial
console is read line by line and written, each line prefixed with the seconds since QEMU
started, to a log kept for inspection. MQTT is forwarded from 127.0.0.1 only; the guest's
network is otherwise closed (`restrict=on`), the host's test registry is reachable from the
guest at 10.0.2.100:5000. The control channel is the QEMU guest agent on a virtio serial
port: commands run through it, and it powers the guest off cleanly (killing QEMU loses
data; a kill happens only after timeouts, and is reported)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
REGISTRY_GUEST_ADDR = "10.0.2.100:5000"


def log(msg: str) -> None:
    print(f"[runner] {msg}", file=sys.stderr, flush=True)


def read_boot_env(path: str) -> dict[str, str]:
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            k, _, v = line.partition("=")
            parts = shlex.split(v)
            env[k] = parts[0] if parts else ""
    return env


@dataclass
class Machine:
    arch: str  # amd64 | arm64
    kernel: str
    initrd: str
    append: str
    disks: list[tuple[str, bool]]  # (path, readonly)
    workdir: str
    log_path: str
    mqtt_port: int | None = None
    registry_port: int | None = None
    smp: int = int(os.environ.get("LEDA_QEMU_SMP", "2"))
    mem: str = os.environ.get("LEDA_QEMU_MEM", "1024")
    watchdog: bool = True
    agent: bool = True
    extra: list[str] = field(default_factory=list)

    def command(self, console: str = "stdio") -> list[str]:
        if self.arch == "amd64":
            cmd = ["qemu-system-x86_64", "-M", "pc", "-cpu", "max"]
        else:
            cmd = ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a53"]
        cmd += ["-accel", "tcg", "-smp", str(self.smp), "-m", self.mem,
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-kernel", self.kernel, "-initrd", self.initrd, "-append", self.append]
        if console == "stdio":
            cmd += ["-chardev", "stdio,id=con0,signal=off", "-serial", "chardev:con0"]
        else:  # interactive: the console and QEMU's monitor multiplexed on the terminal
            cmd += ["-serial", "mon:stdio"]
        for path, ro in self.disks:
            opts = f"file={path},format=raw,if=virtio"
            opts += ",readonly=on" if ro else ",cache=writeback"
            cmd += ["-drive", opts]
        netdev = "user,id=n0,restrict=on"
        if self.mqtt_port:
            netdev += f",hostfwd=tcp:127.0.0.1:{self.mqtt_port}-:1883"
        if self.registry_port:
            netdev += (f",guestfwd=tcp:{REGISTRY_GUEST_ADDR}-cmd:"
                       f"socat - TCP:127.0.0.1:{self.registry_port}")
        cmd += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,romfile=",
                "-device", "virtio-rng-pci"]
        if self.watchdog:
            cmd += ["-device", "i6300esb", "-action", "watchdog=reset"]
        if self.agent:
            cmd += ["-device", "virtio-serial-pci",
                    "-chardev", f"socket,id=qga0,path={self.qga_path},server=on,wait=off",
                    "-device", "virtserialport,chardev=qga0,name=org.qemu.guest_agent.0"]
        cmd += ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        return cmd + self.extra

    @property
    def qga_path(self) -> str:
        return os.path.join(self.workdir, "qga.sock")

    @property
    def qmp_path(self) -> str:
        return os.path.join(self.workdir, "qmp.sock")


class Console:
    """Reads QEMU's stdout (the serial console) into a timestamped log and a line list."""

    def __init__(self, stream, log_path: str, t0: float, boot: int):
        self.lines: list[tuple[float, str]] = []
        self.cond = threading.Condition()
        self.closed = False
        self.t0 = t0
        self.log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")
        self.log.write(f"===== boot {boot} at {time.strftime('%Y-%m-%d %H:%M:%S')} "
                       f"(times: seconds since QEMU started) =====\n")
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream) -> None:
        buf = b""
        while True:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self._line(raw)
        if buf:
            self._line(buf)
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _line(self, raw: bytes) -> None:
        text = ANSI.sub("", raw.decode("utf-8", "replace")).replace("\r", "")
        t = time.monotonic() - self.t0
        self.log.write(f"[{t:8.3f}] {text}\n")
        with self.cond:
            self.lines.append((t, text))
            self.cond.notify_all()

    def find(self, pattern: str, start: int = 0) -> tuple[int, float, str] | None:
        rx = re.compile(pattern)
        with self.cond:
            for i in range(start, len(self.lines)):
                if rx.search(self.lines[i][1]):
                    return i, self.lines[i][0], self.lines[i][1]
        return None

    def wait(self, pattern: str, timeout: float, start: int = 0) -> tuple[int, float, str] | None:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i][1]):
                        return i, self.lines[i][0], self.lines[i][1]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    return None
                self.cond.wait(min(left, 1.0))

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def note(self, text: str) -> None:
        """A line from the runner itself, in the log between the console lines."""
        t = time.monotonic() - self.t0
        self.log.write(f"[{t:8.3f}] ##### runner: {text}\n")


class AgentError(Exception):
    pass


class Agent:
    """QEMU guest agent client (JSON over the virtio serial port's host socket)."""

    def __init__(self, path: str):
        self.path = path
        self.sock: socket.socket | None = None
        self.buf = b""
        self.next_id = int(time.time()) % 100000 * 1000

    def close(self) -> None:
        if self.sock:
            self.sock.close()
        self.sock = None
        self.buf = b""

    def _connect(self) -> None:
        if self.sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.path)
            self.sock = s
            self.buf = b""

    def _send(self, obj: dict, raw_prefix: bytes = b"") -> None:
        assert self.sock
        self.sock.sendall(raw_prefix + json.dumps(obj).encode() + b"\n")

    def _read_json(self, timeout: float) -> dict:
        assert self.sock
        deadline = time.monotonic() + timeout
        while True:
            if b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                line = line.strip().lstrip(b"\xff")
                if not line:
                    continue
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer from the guest agent")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AgentError("guest agent socket closed")
            self.buf += chunk

    def sync(self, timeout: float) -> None:
        """Waits until the agent answers (guest-sync-delimited), reconnecting as needed."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                self._connect()
                self.next_id += 1
                sid = self.next_id
                self._send({"execute": "guest-sync-delimited", "arguments": {"id": sid}},
                           raw_prefix=b"\xff")
                t_end = min(deadline, time.monotonic() + 5)
                while True:
                    r = self._read_json(max(0.1, t_end - time.monotonic()))
                    if r.get("return") == sid:
                        return
            except (OSError, TimeoutError, AgentError) as e:
                last = e
                self.close()
                time.sleep(1)
        raise TimeoutError(f"guest agent not answering after {timeout:.0f}s ({last})")

    def call(self, command: str, arguments: dict | None = None, timeout: float = 30,
             reply: bool = True):
        self.sync(timeout)
        msg: dict = {"execute": command}
        if arguments is not None:
            msg["arguments"] = arguments
        self._send(msg)
        if not reply:
            return None
        r = self._read_json(timeout)
        if "error" in r:
            raise AgentError(f"{command}: {r['error']}")
        return r.get("return")


@dataclass
class Result:
    rc: int
    out: str
    err: str

    def __str__(self) -> str:
        return f"rc={self.rc}\n{self.out}{self.err}"


class Guest:
    """One QEMU process (one boot) of a Machine; `boot()` again after it ended reboots it on
    the same disks."""

    def __init__(self, machine: Machine):
        self.m = machine
        self.proc: subprocess.Popen | None = None
        self.console: Console | None = None
        self.agent = Agent(machine.qga_path)
        self.boots = 0
        self.t0 = 0.0

    # --- life cycle ---------------------------------------------------------------------
    def boot(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        os.makedirs(self.m.workdir, exist_ok=True)
        for p in (self.m.qga_path, self.m.qmp_path):
            if os.path.exists(p):
                os.unlink(p)
        self.boots += 1
        cmd = self.m.command()
        with open(os.path.join(self.m.workdir, "qemu-cmdline.txt"), "w") as f:
            f.write(shlex.join(cmd) + "\n")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.console = Console(self.proc.stdout, self.m.log_path, self.t0, self.boots)
        self.agent.close()
        log(f"boot {self.boots}: QEMU pid {self.proc.pid} ({self.m.arch}, TCG, "
            f"{self.m.smp} vCPU); console log {self.m.log_path}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        if self.console:
            self.console.thread.join(5)
        return rc

    def shutdown(self, mode: str = "powerdown", timeout: float = 120) -> str:
        """Ends this boot through the control channel: the guest agent's guest-shutdown
        (powerdown or reboot; QEMU runs with -no-reboot, so both end the process). Falls back
        to ACPI through QMP, and kills QEMU only as a last resort. Returns how it ended."""
        if not self.running():
            return "not running"
        assert self.console
        self.console.note(f"shutdown ({mode}) through the guest agent")
        how = f"clean {mode} through the guest agent"
        try:
            self.agent.call("guest-shutdown", {"mode": mode}, timeout=30, reply=False)
        except Exception as e:  # noqa: BLE001 - any failure goes to the fallbacks
            log(f"guest agent shutdown failed: {e}")
            how = ""
        if how and self.wait_exit(timeout) is not None:
            self.agent.close()
            return how
        log("the guest did not power off through the agent; ACPI power button via QMP")
        self.console.note("fallback: ACPI system_powerdown through QMP")
        try:
            qmp(self.m.qmp_path, "system_powerdown")
            if self.wait_exit(90) is not None:
                self.agent.close()
                return "ACPI power button (QMP) after the guest agent failed"
        except OSError as e:
            log(f"QMP failed: {e}")
        log("KILLING QEMU: the guest did not power off (data may be lost)")
        self.console.note("last resort: QEMU killed")
        assert self.proc
        try:
            qmp(self.m.qmp_path, "quit")
        except OSError:
            pass
        if self.wait_exit(10) is None:
            self.proc.kill()
            self.wait_exit(10)
        self.agent.close()
        return "KILLED after timeouts"

    def kill(self) -> None:
        """Teardown after a failure: clean power-off first, kill only after timeouts."""
        if self.running():
            how = self.shutdown("powerdown", timeout=60)
            log(f"teardown: {how}")

    # --- probes -------------------------------------------------------------------------
    def wait_agent(self, timeout: float) -> float:
        self.agent.sync(timeout)
        return self.elapsed()

    def run(self, cmd: str, timeout: float = 60, check: bool = True,
            shell: str = "/bin/sh") -> Result:
        """Runs CMD with SHELL in the guest through the guest agent."""
        if self.console:
            self.console.note(f"exec: {cmd}")
        r = self.agent.call("guest-exec", {
            "path": "/usr/bin/timeout",
            "arg": [str(int(timeout)), shell, "-c", cmd],
            "capture-output": True}, timeout=30)
        pid = r["pid"]
        deadline = time.monotonic() + timeout + 15
        while True:
            s = self.agent.call("guest-exec-status", {"pid": pid}, timeout=30)
            if s.get("exited"):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"guest command did not end: {cmd}")
            time.sleep(0.2)
        res = Result(s.get("exitcode", s.get("signal", -1) + 128 if "signal" in s else -1),
                     base64.b64decode(s.get("out-data", "")).decode("utf-8", "replace"),
                     base64.b64decode(s.get("err-data", "")).decode("utf-8", "replace"))
        if check and res.rc != 0:
            raise AssertionError(f"guest command failed: {cmd}\n{res}")
        return res

    def out(self, cmd: str, timeout: float = 60) -> str:
        return self.run(cmd, timeout).out.strip()


def qmp(path: str, command: str, arguments: dict | None = None, timeout: float = 10):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    f = s.makefile("rwb")
    f.readline()  # greeting
    f.write(b'{"execute":"qmp_capabilities"}\n')
    f.flush()
    f.readline()
    msg: dict = {"execute": command}
    if arguments:
        msg["arguments"] = arguments
    f.write(json.dumps(msg).encode() + b"\n")
    f.flush()
    while True:
        line = f.readline()
        if not line:
            break
        r = json.loads(line)
        if "return" in r or "error" in r:
            s.close()
            return r
    s.close()
    return None


def machine_from_image(image: str, workdir: str, log_path: str, mqtt_port=None,
                       registry_port=None) -> Machine:
    env = read_boot_env(os.path.join(image, "boot.env"))
    return Machine(arch=env["ARCH"], kernel=env["KERNEL"], initrd=env["INITRD"],
                   append=env["APPEND"],
                   disks=[(os.path.join(image, "rootfs.ext4"), True),
                          (os.path.join(image, "data.img"), False)],
                   workdir=workdir, log_path=log_path, mqtt_port=mqtt_port,
                   registry_port=registry_port)


def cmd_interactive(a) -> int:
    m = machine_from_image(a.image, a.workdir or os.path.join(a.image, "run"),
                           os.devnull, a.mqtt_port, a.registry_port)
    os.makedirs(m.workdir, exist_ok=True)
    # A console for a person: the journal is not copied onto it (journalctl -f shows it).
    m.append = m.append.replace("systemd.journald.forward_to_console=1", "").replace(
        "loglevel=5", "loglevel=4")
    cmd = m.command(console="interactive")
    print(f"Booting the leda-cm QEMU device ({m.arch}, TCG: about 30 s to the login).\n"
          f"Root logs in on the console. `poweroff` ends it cleanly; Ctrl-A X kills QEMU.\n"
          + (f"MQTT: mosquitto_sub -h 127.0.0.1 -p {m.mqtt_port} -t '#' -v\n" if m.mqtt_port else "")
          + f"Guest agent socket: {m.qga_path}", flush=True)
    return subprocess.call(cmd)


def cmd_oneshot(a) -> int:
    workdir = os.path.dirname(os.path.abspath(a.log))
    m = Machine(arch=a.arch, kernel=a.kernel, initrd=a.initrd, append=a.append,
                disks=[(d, False) for d in a.disk], workdir=workdir, log_path=a.log,
                watchdog=False, agent=False)
    g = Guest(m)
    g.boot()
    rc = g.wait_exit(a.timeout)
    if rc is None:
        log(f"no exit after {a.timeout}s; powering off through QMP")
        g.shutdown(timeout=30)
        return 1
    ok = g.console.find(re.escape(a.expect)) is not None if a.expect else rc == 0
    log(f"QEMU exited ({rc}) after {g.elapsed():.0f}s; {'ok' if ok else 'expected text not seen'}")
    return 0 if ok else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("interactive")
    i.add_argument("--image", required=True)
    i.add_argument("--workdir")
    i.add_argument("--mqtt-port", type=int)
    i.add_argument("--registry-port", type=int)
    o = sub.add_parser("oneshot")
    o.add_argument("--arch", required=True)
    o.add_argument("--kernel", required=True)
    o.add_argument("--initrd", required=True)
    o.add_argument("--append", required=True)
    o.add_argument("--disk", action="append", required=True)
    o.add_argument("--log", required=True)
    o.add_argument("--timeout", type=float, default=3600)
    o.add_argument("--expect", default="")
    a = p.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        log("QEMU is missing: qemu/lib.sh qemu_install_host_packages installs it")
        return 1
    return cmd_interactive(a) if a.cmd == "interactive" else cmd_oneshot(a)


if __name__ == "__main__":
    sys.exit(main())
