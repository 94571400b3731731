"""Real Redis servers for the test session, from Debian's ``redis-server``.

``RedisCluster.create()`` starts 3 primaries + 3 replicas on free loopback ports
(never 6379) and joins them with ``redis-cli --cluster create``; ``RedisNode``
is one standalone server. Every server lives in its own directory under a
temporary directory and dies with the test process: we kill them at session
end, from ``atexit`` (Ctrl-C, failures) and, should the test process itself be
killed, through ``PR_SET_PDEATHSIG`` (the kernel kills the child when its parent
dies). Nothing here ever talks to a server it did not start.

Failover helpers (``kill_primary_of``, ``restart``, ``wait_for_failover``,
``wait_healthy``) poll ``CLUSTER SLOTS`` / ``CLUSTER INFO`` with bounded loops.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import redis
from redis.crc import key_slot

from tests.ports import free_ports

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

# Flags from ARCHITECTURE.md: fast failure detection, no persistence, instant
# diskless replication so replicas are in sync moments after creation.
CLUSTER_FLAGS = [
    "--cluster-enabled",
    "yes",
    "--cluster-node-timeout",
    "1000",
    "--save",
    "",
    "--appendonly",
    "no",
    "--repl-diskless-sync-delay",
    "0",
]


_live: set[RedisNode] = set()


def _kill_all_live() -> None:
    for node in list(_live):
        node.kill()


atexit.register(_kill_all_live)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _client(port: int, timeout: float = 0.5) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=None,  # type: ignore[arg-type]  # no retries
    )


class RedisNode:
    """One ``redis-server`` process on a fixed port and directory (restartable)."""

    def __init__(self, port: int, workdir: Path, extra: Iterable[str] = ()) -> None:
        self.port = port
        self.workdir = workdir
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 5.0) -> None:
        """Start and wait until it answers PING. Call from the main thread: the
        kernel kills the server when the thread that started it exits."""
        assert self.port != 6379
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--logfile",
            "redis.log",
            "--daemonize",
            "no",
            *self.extra,
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        _live.add(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on {self.port} exited: see {self.workdir}/redis.log")
            if self.ping():
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server on {self.port} did not answer in {timeout}s")

    def ping(self) -> bool:
        try:
            with _client(self.port, 0.2) as c:
                return bool(c.ping())
        except redis.RedisError:
            return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: what a crash looks like (no goodbye to clients or the cluster)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        _live.discard(self)

    def command(self, *args: object, timeout: float = 0.5) -> object:
        with _client(self.port, timeout) as c:
            return c.execute_command(*args)


class RedisCluster:
    """3 primaries with a replica each (or ``replicas`` each) on loopback, created with
    ``redis-cli --cluster create``."""

    def __init__(self, root: Path, primaries: int = 3, replicas: int = 1) -> None:
        self.root = root
        self.primaries = primaries
        self.replicas = replicas
        ports = free_ports(primaries * (1 + replicas), cluster_bus=True)
        self.nodes = [RedisNode(p, root / f"n{p}", CLUSTER_FLAGS) for p in ports]

    @property
    def startup(self) -> str:
        """``host:port,…`` for ``RedisBroker.from_cluster``."""
        return ",".join(n.addr for n in self.nodes)

    def create(self, timeout: float = 30.0) -> None:
        for n in self.nodes:
            n.start()
        subprocess.run(
            [
                *(REDIS_CLI, "--cluster", "create", *(n.addr for n in self.nodes)),
                *("--cluster-replicas", str(self.replicas), "--cluster-yes"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
        self.wait_healthy(timeout)

    def kill_all(self) -> None:
        for n in self.nodes:
            n.kill()

    # -- topology ------------------------------------------------------------

    def _node(self, port: int) -> RedisNode:
        return next(n for n in self.nodes if n.port == port)

    def slots(self) -> list[tuple[int, int, int, list[int]]]:
        """``(first, last, primary port, replica ports)`` as a live node sees it."""
        for n in self.nodes:
            if not n.alive:
                continue
            try:
                reply = n.command("CLUSTER", "SLOTS")
            except redis.RedisError:
                continue
            assert isinstance(reply, list)
            return [(int(r[0]), int(r[1]), int(r[2][1]), [int(x[1]) for x in r[3:]]) for r in reply]
        raise RuntimeError("no live cluster node")

    def primary_of(self, key: str | bytes) -> RedisNode:
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for first, last, port, _ in self.slots():
            if first <= slot <= last:
                return self._node(port)
        raise RuntimeError(f"slot {slot} has no primary")

    def kill_primary_of(self, key: str | bytes) -> RedisNode:
        """SIGKILL the primary serving ``key``'s slot; returns it for ``restart``."""
        node = self.primary_of(key)
        node.kill()
        return node

    def restart(self, node: RedisNode) -> None:
        """Start a killed node again; its nodes.conf makes it rejoin (as a replica
        of whoever took its slots over)."""
        node.start()

    def wait_for_failover(self, key: str | bytes, old: RedisNode, timeout: float = 15.0) -> RedisNode:
        """Wait until another live node serves ``key``'s slot and the cluster is ok."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                for first, last, port, _ in self.slots():
                    if first <= slot <= last and port != old.port and self._node(port).alive:
                        new = self._node(port)
                        if self._cluster_ok(new):
                            return new
            except (RuntimeError, redis.RedisError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"no failover of slot {slot} within {timeout}s")

    def _cluster_ok(self, node: RedisNode) -> bool:
        try:
            info = node.command("CLUSTER", "INFO")
        except redis.RedisError:
            return False
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text and "cluster_slots_ok:16384" in text

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every node up and agreeing: all slots ok, each primary has a replica
        whose replication link is up (so the next failover can happen)."""
        deadline = time.monotonic() + timeout
        last_problem = "not checked"
        while time.monotonic() < deadline:
            last_problem = self._health_problem()
            if not last_problem:
                return
            time.sleep(0.05)
        raise TimeoutError(f"cluster not healthy within {timeout}s: {last_problem}")

    def _health_problem(self) -> str:
        for n in self.nodes:
            if not n.alive:
                return f"{n.addr} not running"
            if not self._cluster_ok(n):
                return f"{n.addr} cluster_state not ok"
        # CLUSTER SLOTS hides replicas whose replication offset is still 0 (an
        # idle new cluster, for ~10 s), so replicas are checked with CLUSTER NODES.
        try:
            text = self.nodes[0].command("CLUSTER", "NODES")
        except redis.RedisError as exc:
            return str(exc)
        if isinstance(text, bytes):
            text = text.decode()
        if not isinstance(text, str):
            return "unexpected CLUSTER NODES reply"
        primaries: dict[str, int] = {}
        replicas: dict[str, list[int]] = {}
        for line in text.splitlines():
            fields = line.split()
            if len(fields) < 8:
                continue
            node_id, addr, flags, master = fields[0], fields[1], fields[2].split(","), fields[3]
            port = int(addr.split("@")[0].rsplit(":", 1)[1])
            if "fail" in flags or "fail?" in flags or fields[7] != "connected":
                continue
            if "master" in flags and len(fields) > 8:
                primaries[node_id] = port
            elif "slave" in flags:
                replicas.setdefault(master, []).append(port)
        if len(primaries) != self.primaries:
            return f"{len(primaries)} primaries with slots"
        for node_id, port in primaries.items():
            if len(replicas.get(node_id, ())) < self.replicas:
                return f"primary {port} has {len(replicas.get(node_id, ()))} of {self.replicas} replicas"
            for rp in replicas[node_id]:
                try:
                    info = self._node(rp).command("INFO", "replication")
                except (StopIteration, redis.RedisError):
                    return f"replica {rp} unreachable"
                if not isinstance(info, dict) or info.get("master_link_status") != "up":
                    return f"replica {rp} link not up"
            # A link that is up may still be loading the primary's data: the durable tests'
            # first WAIT (100 ms) then timed out on a fresh cluster. WAIT on a new connection
            # waits for the primary's current offset (Redis ≥ 7.0 moves it after every command).
            try:
                acked = self._node(port).command("WAIT", 1, 500, timeout=2.0)
            except (StopIteration, redis.RedisError) as exc:
                return f"primary {port}: {exc}"
            if not isinstance(acked, int) or acked < 1:
                return f"the replica of {port} does not acknowledge writes yet"
        return ""


class RedisServers:
    """The session's servers: one cluster and one standalone node."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="roomserver-redis-"))
        self.cluster: RedisCluster | None = None
        self.single: RedisNode | None = None

    def start_cluster(self) -> RedisCluster:
        if self.cluster is None:
            self.cluster = start_cluster(self.tmp)
        return self.cluster

    def start_single(self) -> RedisNode:
        if self.single is None:
            self.single = start_standalone(self.tmp / "single")
        return self.single

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.kill_all()
        if self.single is not None:
            self.single.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def start_cluster(root: Path, replicas: int = 1) -> RedisCluster:
    """A created, healthy cluster under ``root`` (3 primaries, ``replicas`` each)."""
    for attempt in range(3):  # a port may be taken between probing and binding
        cluster = RedisCluster(root / f"cluster{attempt}", replicas=replicas)
        try:
            cluster.create()
        except (RuntimeError, subprocess.CalledProcessError):
            cluster.kill_all()
            if attempt == 2:
                raise
            continue
        return cluster
    raise AssertionError("unreachable")


def start_standalone(workdir: Path) -> RedisNode:
    """A standalone server (no cluster, no persistence) on a free port."""
    for attempt in range(3):
        node = RedisNode(free_ports(1, cluster_bus=False)[0], workdir, ["--save", "", "--appendonly", "no"])
        try:
            node.start()
            return node
        except RuntimeError:
            node.kill()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _main() -> None:
    """``python -m tests.redis_servers``: start everything, print addresses, wait."""
    servers = RedisServers()
    t0 = time.monotonic()
    cluster = servers.start_cluster()
    single = servers.start_single()
    print(f"cluster {cluster.startup}\nsingle {single.url}\nstarted in {time.monotonic() - t0:.2f}s")
    try:
        signal.pause()
    finally:
        servers.stop()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _main()
