"""Real `roomserver serve` processes for multi-process tests (free loopback ports)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from loadtest.procs import NO_CLIENT_LIMITS
from roomserver.auth import mint_token

SECRET = "k" * 40
APP = "app"
# A bound, not a wait: a loaded 2-core machine (other test runs, a busy core) took
# over 15 s to import and start a server process (docs/testing.md).
START_TIMEOUT_S = 60.0


def token(user: str, role: str = "viewer") -> str:
    return mint_token(APP, SECRET, user, role)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    def __init__(self, *args: str, log_dir: Path, host: str = "127.0.0.1", wrap: Sequence[str] = ()) -> None:
        """``wrap`` prefixes the command (``ip netns exec NAME``: a server in a network
        namespace, listening on ``host`` there; the port is free in a fresh namespace)."""
        self.port = free_port()
        self.host = host
        self.wrap = list(wrap)
        self.args = ["--host", host, "--port", str(self.port), "--app", f"{APP}:{SECRET}"]
        # As start_server: tests let any token create rooms by joining, and every test
        # client comes from 127.0.0.1 (thousands of sockets, REST polls): no per-IP limits.
        self.args += ["--auto-create", "any", *NO_CLIENT_LIMITS, *args]
        self.log_path = log_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.wrap, sys.executable, "-m", "roomserver.cli", "serve", *self.args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={
                "ROOMSERVER_DATA_DIR": tempfile.mkdtemp(prefix="roomserver-data-"),
                **os.environ,
                "PYTHONUNBUFFERED": "1",
            },
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=0.5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log_path.read_text()}")

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


@contextlib.contextmanager
def running(servers: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    """Start ``servers``; on the way out stop every one, also when one of them failed to start."""
    try:
        for s in servers:
            s.start()
        yield servers
    finally:
        for s in servers:
            s.stop()
