"""Processes the load tester starts and measures: servers under test, CPU, limits.

Everything binds to loopback. Every child dies with the load tester
(``PR_SET_PDEATHSIG``) and is stopped in ``finally`` blocks, so a run never
leaves a server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from roomserver.limits import raise_open_files_limit

CLK_TCK = os.sysconf("SC_CLK_TCK")


# Flags for the servers a load test starts: every simulated client comes from this
# machine's one IP, and the load tester's admin token polls audits and orders.
NO_CLIENT_LIMITS = ("--max-connections-per-ip", "0", "--rest-rate-per-ip", "0", "--rest-rate-per-token", "0")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc/<pid>/stat (0.0 if it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return 0.0
    # The command name (field 2) may contain spaces: split after its closing paren.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> dict[str, float]:
    """Machine-wide busy CPU-seconds from /proc/stat: everything, and softirq alone.

    Compared with the CPU of our own processes over the same window this tells
    how much the other tenants of the machine took (the noise of a shared box).
    """
    with contextlib.suppress(OSError, ValueError):
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
        return {
            "busy": (user + nice + system + irq + softirq + steal) / CLK_TCK,
            "softirq": softirq / CLK_TCK,
        }
    return {"busy": 0.0, "softirq": 0.0}


def self_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def machine() -> dict[str, object]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": os.cpu_count(), "cpu_model": model, "loadavg_start": list(os.getloadavg())}


def listen_overflows() -> int:
    """Machine-wide TcpExt ListenOverflows: SYNs dropped because an accept queue was full.

    Loopback only and other engineers' processes count too, so read it as a hint:
    a jump during a join storm means the server's listen backlog overflowed and
    clients waited for SYN retransmits (1 s, 3 s, ...).
    """
    with contextlib.suppress(OSError, ValueError):
        lines = Path("/proc/net/netstat").read_text().splitlines()
        for names, values in zip(lines[::2], lines[1::2], strict=False):
            if names.startswith("TcpExt:"):
                table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
                return int(table.get("ListenOverflows", 0))
    return 0


def port_bindable(port: int, ip: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def free_port(ip: str = "127.0.0.1", *, udp: bool = False, avoid: Iterable[int] = ()) -> int:
    """A port free on ``ip`` for TCP (and UDP too with ``udp``) for a server about to
    start, none in ``avoid``. Below the kernel's ephemeral range (32768+, where binding port
    0 would pick): a port there can be taken by any outgoing connection before the server
    binds it."""
    avoided = set(avoid)
    for _ in range(2000):
        port = random.randrange(20000, 32768)
        if port in avoided or not port_bindable(port, ip):
            continue
        if not udp or port_bindable(port, ip, socket.SOCK_DGRAM):
            return port
    raise RuntimeError(f"no free port on {ip}")


def _die_with_parent() -> None:  # in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    raise_open_files_limit()


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout}s: {last}")


@dataclass
class ServerProcess:
    """One server under test (roomserver or the bare broadcast server)."""

    name: str
    args: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0, health_path: str = "/healthz") -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        wait_http(self.url + health_path, timeout, self.proc)

    def cpu(self) -> float:
        return cpu_seconds(self.pid) if self.proc is not None else 0.0

    def rss_mb(self) -> float:
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def stop(self, timeout: float = 8.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def log_tail(self, n: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


@dataclass
class ServerSet:
    """The servers of one run, started with a generated app key and secret."""

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="roomserver-loadtest-")))
    app_key: str = field(default_factory=lambda: "lt" + secrets.token_hex(3))
    app_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    servers: list[ServerProcess] = field(default_factory=list)

    def start_roomservers(
        self,
        count: int,
        *,
        flush_ms: int,
        barrage_cap: int,
        batching: bool = True,
        frame_budget: int | None = None,
        redis_cluster: str | None = None,
        extra: list[str] | None = None,
    ) -> list[ServerProcess]:
        started = []
        for i in range(count):
            port = free_port()
            args = [
                sys.executable,
                "-m",
                "roomserver.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--app",
                f"{self.app_key}:{self.app_secret}",
                "--flush-ms",
                str(flush_ms),
                "--barrage-cap",
                str(barrage_cap),
                "--max-connections-per-user",
                "100000",
                *NO_CLIENT_LIMITS,
                "--log-level",
                "WARNING",
                "--node-id",
                f"lt{i}",
            ]
            if not batching:
                args.append("--no-batching")
            if frame_budget:
                args += ["--frame-budget", str(frame_budget)]
            if redis_cluster:
                args += ["--redis-cluster", redis_cluster]
            args += extra or []
            srv = ServerProcess(f"roomserver-{i}", args, port, self.workdir / f"roomserver-{i}.log")
            self.servers.append(srv)
            srv.start()
            started.append(srv)
        return started

    def start_bare(self, *, rate: float, flush_ms: int, room: str, fault: str = "") -> ServerProcess:
        port = free_port()
        args = [
            sys.executable,
            "-m",
            "loadtest.bare_server",
            "--port",
            str(port),
            "--rate",
            str(rate),
            "--flush-ms",
            str(flush_ms),
            "--room",
            room,
        ]
        if fault:
            args += ["--fault", fault]
        srv = ServerProcess("bare", args, port, self.workdir / "bare.log")
        self.servers.append(srv)
        srv.start()
        return srv

    def cpu(self) -> float:
        return sum(s.cpu() for s in self.servers)

    def stop(self) -> list[int | None]:
        return [s.stop() for s in self.servers]
