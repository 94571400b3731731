"""Real `roomserver serve` processes for multi-process tests (free loopback ports)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from loadtest.procs import NO_CLIENT_LIMITS
from roomserver.auth import mint_token
from tests.ports import free_port

SECRET = "k" * 40
APP = "app"
# A bound, not a wait: a loaded 2-core machine (other test runs, a busy core) took
# over 15 s to import and start a server process (docs/testing.md).
START_TIMEOUT_S = 60.0


def token(user: str, role: str = "viewer") -> str:
    return mint_token(APP, SECRET, user, role)  # type: ignore[arg-type]


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
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """The process, not yet serving (``wait_ready``): ``start_all`` launches several
        before waiting, so their imports and start-ups overlap."""
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

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> ServerProcess:
        assert self.proc is not None
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
        return self._wait_stopped()

    def _wait_stopped(self) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


def start_all(servers: Sequence[ServerProcess], timeout: float = START_TIMEOUT_S) -> list[ServerProcess]:
    """Start ``servers`` together: each still waits for its own ``/healthz``, but the
    processes' start-ups (1.5-3 s each, mostly imports) overlap instead of adding up.
    On a failure every one is stopped."""
    try:
        for s in servers:
            s.launch()
        for s in servers:
            s.wait_ready(timeout)
    except BaseException:
        stop_all(servers)
        raise
    return list(servers)


def stop_all(servers: Sequence[ServerProcess]) -> None:
    """SIGTERM to every server, then wait for each (as ``stop``): their drains overlap."""
    alive = [s for s in servers if s.proc is not None and s.proc.poll() is None]
    for s in alive:
        assert s.proc is not None
        s.proc.send_signal(signal.SIGTERM)
    for s in alive:
        s._wait_stopped()


@contextlib.contextmanager
def running(servers: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    """``servers`` started together (``start_all``) and, on the way out, all stopped, also
    when one of them failed to start."""
    try:
        start_all(servers)
        yield servers
    finally:
        stop_all(servers)
