"""A private PostgreSQL server for the test session, from Debian's ``postgresql``.

``PostgresServer.start()`` runs ``initdb`` in a temporary directory and starts
``postgres`` on a free loopback port (never 5432: nothing here talks to a server
it did not start), trust authentication, fsync off (a test database need not
survive a power cut). PostgreSQL refuses to run as root, so as root the server
runs as the ``postgres`` system user (the Debian package's; created if absent).
The server dies with the test process (``atexit``, and ``PR_SET_PDEATHSIG``
should the test process itself be killed). ``database()`` creates a fresh
database per test module or test, so tests never see each other's rows.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.ports import free_ports


def pg_bin(name: str) -> str:
    """``initdb``/``postgres`` of the newest installed major version."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path:
        return on_path
    raise RuntimeError(f"PostgreSQL's {name} not found: `make system-deps` installs Debian's postgresql")


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
        user = pwd.getpwnam("postgres")
    return user.pw_uid, user.pw_gid


class PostgresServer:
    def __init__(self) -> None:
        self.port = free_ports(1, cluster_bus=False)[0]
        self.workdir = Path(tempfile.mkdtemp(prefix="roomserver-pg-"))
        self.datadir = self.workdir / "data"
        self.proc: subprocess.Popen[bytes] | None = None
        self._as = _run_as()

    def _preexec(self) -> None:  # in the child, between fork and exec
        if self._as is not None:
            os.setgid(self._as[1])
            os.setuid(self._as[0])
        # After the credentials change, which clears the parent-death signal (prctl(2)): set
        # before it, a benchmark killed by SIGTERM left its PostgreSQL running.
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> PostgresServer:
        if self._as is not None:
            os.chown(self.workdir, *self._as)
        log = self.workdir / "initdb.log"
        with log.open("wb") as out:
            subprocess.run(
                [pg_bin("initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--locale=C.UTF-8", "--no-sync"],
                stdout=out, stderr=subprocess.STDOUT, check=True, preexec_fn=self._preexec, timeout=timeout,
            )  # fmt: skip
        self.proc = subprocess.Popen(
            [pg_bin("postgres"), "-D", str(self.datadir), "-p", str(self.port), "-k", str(self.workdir),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
             "-c", "full_page_writes=off", "-c", "max_connections=200",
             "-c", f"log_directory={self.workdir}", "-c", "logging_collector=off"],
            stdout=(self.workdir / "postgres.log").open("wb"), stderr=subprocess.STDOUT,
            preexec_fn=self._preexec,
        )  # fmt: skip
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres on {self.port} exited: see {self.workdir}/postgres.log")
            if self._ready():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"postgres on {self.port} not ready in {timeout} s")

    def _ready(self) -> bool:
        ready = subprocess.run(
            [pg_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q"],
            check=False,
        )
        return ready.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        out = subprocess.run(
            [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
             "-v", "ON_ERROR_STOP=1", "-Atc", sql],
            capture_output=True, text=True, check=True, timeout=60,
        )  # fmt: skip
        return out.stdout

    def database(self) -> str:
        """A new empty database; its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self.psql(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
