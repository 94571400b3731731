"""Scenario orchestration in the parent process: servers, workers, senders, results.

A barrage run, in order (every step bounded in time):

1. start the server(s) under test on free loopback ports (unless ``--url``),
   create the room over REST with an admin token;
2. spawn ``procs`` workers, each connecting its share of viewers at
   ``connect_rate`` and joining (``ready`` when all joined or failed);
3. connect the senders here, in the parent; settle;
4. window: snapshot CPU (servers, workers, parent) and delivery counters,
   send ``rate``/s for ``duration`` s round-robin over the senders (each at
   rate/senders per second), print progress each second, wait for replies,
   snapshot again;
5. publish a marker event (its seq is the final seq), ask every worker to
   verify that each viewer saw exactly ``snapshot seq + 1 .. final seq``;
6. stop everything, merge histograms, write JSON and plots.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import secrets
import ssl
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from loadtest import histo
from loadtest.client import Sender, SendStats, Tally
from loadtest.procs import (
    ServerProcess,
    ServerSet,
    listen_overflows,
    machine,
    machine_cpu,
    self_cpu_seconds,
)
from loadtest.ramp import Ramp
from loadtest.results import Progress, Series, barrage_result, join_summary, shard_raw
from loadtest.targets import check_targets, share, split_urls, uses_tls
from loadtest.tls import TlsSettings, connect_kwargs
from loadtest.worker import WorkerConfig, worker_main
from roomserver.auth import mint_token
from roomserver.limits import raise_open_files_limit

if TYPE_CHECKING:
    from tests.redis_servers import RedisServers

TEXT_SUFFIX = "lt"


@dataclass
class Options:
    scenario: str = "barrage"
    viewers: int = 200
    senders: int = 20
    rate: float = 50.0
    duration: float = 5.0
    procs: int = 1
    url: str | None = None  # comma-separated base URLs of running servers
    app: str | None = None  # KEY:SECRET for --url
    room: str | None = None
    target: str = "roomserver"  # roomserver | bare
    servers: int = 1
    redis_cluster: str | None = None  # host:port,... or "auto" (start one)
    flush_ms: int = 50
    barrage_cap: int = 250
    batching: bool = True
    frame_budget: int | None = None
    sample_pct: float = 2.0
    connect_rate: float = 1000.0
    connect_timeout_s: float = 30.0
    settle_s: float = 1.0
    verify_timeout_s: float = 20.0
    label: str = ""
    bare_fault: str = ""  # tests only: make the bare server lose or repeat one event
    poll_ms: int = 200
    allow_remote: bool = False  # --url may name other machines
    # https:// (wss://) targets: trust this CA file instead of the system's, or check nothing.
    ca_file: str | None = None
    insecure: bool = False
    ramp: Ramp | None = None  # viewers and rate over time instead of viewers, then rate x duration
    shard: tuple[int, int] | None = None  # (index, count): this run is one part of a multi-machine run
    start_at: float | None = None  # unix time the sending window starts (shards start together)
    # More `roomserver serve` flags for the servers started here (e.g. --no-analytics).
    server_flags: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.viewers < 1 or self.procs < 1 or self.duration <= 0:
            raise ValueError("viewers, procs and duration must be positive")
        if (
            self.scenario == "barrage"
            and self.target == "roomserver"
            and (self.senders < 1 or self.rate <= 0)
        ):
            raise ValueError("a barrage run needs senders >= 1 and rate > 0")
        if self.duration > 3600 or self.viewers > 100_000:
            raise ValueError("runs are bounded: duration <= 3600 s, viewers <= 100000")
        if self.url and not self.app:
            raise ValueError("--url needs --app KEY:SECRET (to mint tokens)")
        if (self.ca_file or self.insecure) and not (self.url and uses_tls(split_urls(self.url))):
            raise ValueError("--ca-file and --insecure are for https:// or wss:// targets (--url)")
        if self.ca_file and self.insecure:
            raise ValueError("--ca-file or --insecure, not both")
        if self.shard is not None and not (self.url and self.room):
            raise ValueError("a shard (worker) loads a running deployment: give --url and the shared --room")
        if self.start_at is not None and not 0 <= self.start_at - time.time() <= 3600:
            raise ValueError("--start-at is a unix time within the next hour")

    @property
    def user_prefix(self) -> str:
        """Shards name their users apart, so two machines never share a user id."""
        return f"w{self.shard[0]}." if self.shard else ""


class WorkerHandle:
    def __init__(self, index: int, proc: multiprocessing.process.BaseProcess, pipe: Connection) -> None:
        self.index = index
        self.proc = proc
        self.pipe = pipe
        self.inbox: dict[str, asyncio.Queue[dict[str, Any]]] = {
            k: asyncio.Queue() for k in ("ready", "snap", "final")
        }
        self.last: dict[str, Any] = {"joined": 0, "deliveries": 0, "frames": 0, "failed": 0}
        self.alive = True

    async def expect(self, kind: str, timeout: float) -> dict[str, Any]:
        return await asyncio.wait_for(self.inbox[kind].get(), timeout)

    def send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(OSError, BrokenPipeError):
            self.pipe.send(msg)


class Run:
    """One scenario run; ``await Run(opts).execute()`` returns the result dict."""

    def __init__(self, o: Options) -> None:
        o.validate()
        self.o = o
        self.room = o.room or "lt-" + secrets.token_hex(4)
        self.servers = ServerSet()
        self.started: list[ServerProcess] = []
        self.targets: list[tuple[str, int]] = []
        self.base_urls: list[str] = []
        self.tls: TlsSettings | None = None  # https targets (loadtest/tls.py)
        self.ssl_ctx: ssl.SSLContext | None = None
        self.app_key = self.servers.app_key
        self.app_secret = self.servers.app_secret
        self.workers: list[WorkerHandle] = []
        self.series = Series()
        self.window_start = 0.0  # wall clock; 0 = not in the window yet
        self.tally = Tally()  # the senders' deliveries (parent process)
        self.send_stats = SendStats()
        self.senders: list[Sender] = []
        self.redis: RedisServers | None = None
        self.redis_pids: list[int] = []
        self._sender_last = 0
        self._cpu_last: tuple[float, float] | None = None

    def http_connector(self) -> aiohttp.TCPConnector:
        """REST calls to the targets: the run's TLS context for https (verification as
        asked), aiohttp's default otherwise."""
        return aiohttp.TCPConnector(ssl=self.ssl_ctx if self.ssl_ctx is not None else True)

    # -- servers -------------------------------------------------------------------

    def _server_flags(self, cluster: str | None) -> list[str]:
        """Extra `roomserver serve` flags of a scenario (the options' own here)."""
        return list(self.o.server_flags)

    def _start_servers(self) -> None:
        o = self.o
        if o.url:
            key, _, secret = (o.app or "").partition(":")
            self.app_key, self.app_secret = key, secret
            self.base_urls = split_urls(o.url)
            # Refused before anything is started or sent.
            self.targets = check_targets(self.base_urls, allow_remote=o.allow_remote)
            if uses_tls(self.base_urls):
                self.tls = TlsSettings(o.ca_file, o.insecure)
                self.ssl_ctx = self.tls.context()
            return
        elif o.target == "bare":
            self.started = [
                self.servers.start_bare(rate=0, flush_ms=o.flush_ms, room=self.room, fault=o.bare_fault)
            ]
        else:
            cluster = o.redis_cluster
            if cluster == "auto":
                cluster = self._start_redis_cluster()
            self.started = self.servers.start_roomservers(
                o.servers,
                flush_ms=o.flush_ms,
                barrage_cap=o.barrage_cap,
                batching=o.batching,
                frame_budget=o.frame_budget,
                redis_cluster=cluster,
                extra=self._server_flags(cluster),
            )
        self.base_urls = [s.url for s in self.started]
        self.targets = check_targets(self.base_urls, allow_remote=False)

    def _start_redis_cluster(self) -> str:
        """A throw-away Redis Cluster from the test harness (tests/redis_servers.py)."""
        root = Path(__file__).resolve().parent.parent
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        from tests.redis_servers import RedisServers  # the project's harness: free ports, never 6379

        self.redis = redis = RedisServers()
        cluster = redis.start_cluster()
        self.redis_pids = [n.proc.pid for n in cluster.nodes if n.proc is not None]
        return cluster.startup

    def _stop_servers(self) -> None:
        self.servers.stop()
        if self.redis is not None:
            self.redis.stop()

    def _server_cpu(self) -> float:
        return self.servers.cpu()

    def _redis_cpu(self) -> float:
        from loadtest.procs import cpu_seconds

        return sum(cpu_seconds(p) for p in self.redis_pids)

    def _admin_headers(self) -> dict[str, str]:
        token = mint_token(self.app_key, self.app_secret, "loadtest-admin", "admin", ttl_s=7200)
        return {"Authorization": f"Bearer {token}"}

    async def _create_room(self, http: aiohttp.ClientSession) -> None:
        body = {"id": self.room, "title": "load test", "barrage_cap": self.o.barrage_cap}
        async with http.post(self.base_urls[0] + "/v1/rooms", json=body, headers=self._admin_headers()) as r:
            if r.status not in (201, 409):
                raise RuntimeError(f"create room: HTTP {r.status} {await r.text()}")

    async def _marker(self, http: aiohttp.ClientSession) -> int:
        body = {"ev": "loadtest.end", "data": {"run": self.room}}
        url = f"{self.base_urls[0]}/v1/rooms/{self.room}/events"
        async with http.post(url, json=body, headers=self._admin_headers()) as r:
            if r.status != 201:
                raise RuntimeError(f"marker event: HTTP {r.status} {await r.text()}")
            return int((await r.json())["seq"])

    async def _server_metrics(self, http: aiohttp.ClientSession) -> list[dict[str, float]]:
        wanted = (
            "roomserver_deliveries_total",
            "roomserver_frames_total",
            "roomserver_slow_consumer_closes_total",
            "roomserver_barrage_shed_total",
            "roomserver_flush_seconds_count",
            "roomserver_flush_seconds_sum",
            "roomserver_sockets",
        )
        out = []
        for u in self.base_urls:
            found: dict[str, float] = {}
            with contextlib.suppress(Exception):
                async with http.get(u + "/metrics", timeout=aiohttp.ClientTimeout(total=5)) as r:
                    for line in (await r.text()).splitlines():
                        name, _, value = line.partition(" ")
                        if name in wanted:
                            found[name] = float(value)
            out.append(found)
        return out

    # -- workers -----------------------------------------------------------------------

    def _start_worker(self, index: int, target: Any, cfg: Any, name: str) -> WorkerHandle:
        """Start one worker process (``target(pipe, cfg)``) and read its pipe from this loop."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child, cfg), name=f"{name}-{index}", daemon=True)
        proc.start()
        child.close()
        handle = WorkerHandle(index, proc, parent)
        self.workers.append(handle)
        asyncio.get_running_loop().add_reader(parent.fileno(), self._on_worker_message, handle)
        return handle

    def _spawn_workers(self, viewers: int, connect_rate: float, initial: int | None = None) -> None:
        """``viewers`` over the workers; with ``initial``, each connects only its share of that
        at first and the rest when the ramp asks (``_ramp_targets``)."""
        o = self.o
        sample_every = round(100 / o.sample_pct) if o.sample_pct > 0 else 0
        for i in range(o.procs):
            cfg = WorkerConfig(
                index=i,
                viewers=share(viewers, i, o.procs),
                initial=None if initial is None else share(initial, i, o.procs),
                user_prefix=o.user_prefix,
                target_offset=o.shard[0] if o.shard else 0,
                targets=self.targets,
                room=self.room,
                app_key=self.app_key,
                app_secret=self.app_secret,
                connect_rate=max(1.0, connect_rate / o.procs),
                sample_every=sample_every,
                connect_timeout_s=o.connect_timeout_s,
                poll_ms=o.poll_ms,
                tls=self.tls,
            )
            self._start_worker(i, worker_main, cfg, "loadtest-worker")

    def _on_worker_message(self, w: WorkerHandle) -> None:
        """Read one message from a worker's pipe (a closed pipe marks it dead)."""
        try:
            msg = w.pipe.recv()
        except (EOFError, OSError):
            w.alive = False
            asyncio.get_running_loop().remove_reader(w.pipe.fileno())
            return
        self._handle_worker_message(w, msg)

    def _handle_worker_message(self, w: WorkerHandle, msg: dict[str, Any]) -> None:
        kind = msg["kind"]
        if kind in ("tick", "final") and self.window_start:
            second = int(msg.get("wall", time.time()) - self.window_start)
            self.series.add(second, msg["deliveries"] - w.last["deliveries"], msg.get("hist", b""))
            if "lag_ms" in msg:
                lags = self.series.loadgen_lag_ms
                lags[second] = max(lags.get(second, 0.0), msg["lag_ms"])
        if kind in ("tick", "final", "snap", "ready"):
            w.last.update({k: msg[k] for k in ("joined", "deliveries", "frames", "failed") if k in msg})
        if kind in w.inbox:
            w.inbox[kind].put_nowait(msg)

    def _stop_workers(self) -> None:
        for w in self.workers:
            w.send({"cmd": "stop"})
        for w in self.workers:
            w.proc.join(5)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(2)
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(w.pipe.fileno())
            w.pipe.close()

    def _joined(self) -> int:
        return sum(w.last["joined"] for w in self.workers)

    async def _snap(self) -> dict[str, Any]:
        """CPU and delivery counters of every process, as close together as we can."""
        for w in self.workers:
            w.send({"cmd": "snap"})
        server_each = [srv.cpu() for srv in self.servers.servers]
        server_cpu = sum(server_each)
        redis_cpu = self._redis_cpu()
        parent_cpu = self_cpu_seconds()
        box = machine_cpu()
        wall = time.time()
        snaps = [await w.expect("snap", 10) for w in self.workers]
        return {
            "wall": wall,
            "server_cpu": server_cpu,
            "server_each": server_each,
            "redis_cpu": redis_cpu,
            "loadgen_cpu": parent_cpu + sum(s["cpu"] for s in snaps),
            "worker_cpu": [s["cpu"] for s in snaps],
            "parent_cpu": parent_cpu,
            "machine_busy": box["busy"],
            "machine_softirq": box["softirq"],
            "deliveries": sum(s["deliveries"] for s in snaps) + self.tally.deliveries,
            "frames": sum(s["frames"] for s in snaps) + self.tally.frames,
        }

    # -- senders --------------------------------------------------------------------------

    async def _connect_senders(self) -> None:
        loop = asyncio.get_running_loop()
        for i in range(self.o.senders):
            host, port = self.targets[i % len(self.targets)]
            user = f"{self.o.user_prefix}s{i}"
            token = mint_token(self.app_key, self.app_secret, user, "viewer", room=self.room, ttl_s=7200)
            s = Sender(host, port, f"/v1/ws?token={token}", self.room, self.tally, self.send_stats)
            async with asyncio.timeout(self.o.connect_timeout_s):
                await loop.create_connection(_factory(s), host, port, **connect_kwargs(self.ssl_ctx, host))
                await s.opened
                await s.joined
            self.senders.append(s)

    async def _send_window(self, http: aiohttp.ClientSession, progress: Progress, viewers: int) -> None:
        o = self.o
        if o.target == "bare":
            async with http.post(self.base_urls[0] + "/bare/rate", json={"rate": o.rate}) as r:
                r.raise_for_status()
        start = time.monotonic()
        end = start + o.duration
        sent = 0
        n = len(self.senders)
        next_report = start + 1.0
        next_target = start
        while (now := time.monotonic()) < end:
            if n:
                due = o.ramp.sends_by(now - start) if o.ramp else int((now - start) * o.rate)
                while sent < due:
                    self.senders[sent % n].send_barrage(TEXT_SUFFIX)
                    sent += 1
            if o.ramp and now >= next_target:
                next_target += 0.25
                self._ramp_targets(o.ramp.viewers_at(now - start))
            if now >= next_report:
                next_report += 1.0
                self._parent_tick()
                self._report(progress, now - start, viewers, "send")
            await asyncio.sleep(0.002)
        if o.ramp:
            self._ramp_targets(o.ramp.points[-1].viewers)
        total = o.ramp.sends_by(o.duration) if o.ramp else int(o.duration * o.rate)
        while n and sent < total:  # the last partial tick
            self.senders[sent % n].send_barrage(TEXT_SUFFIX)
            sent += 1
        if o.target == "bare":
            async with http.post(self.base_urls[0] + "/bare/rate", json={"rate": 0}) as r:
                r.raise_for_status()

    def _ramp_targets(self, viewers: int) -> None:
        """Tell each worker how many viewers it should have now (it connects or closes some)."""
        for w in self.workers:
            w.send({"cmd": "target", "viewers": share(viewers, w.index, len(self.workers))})

    def _parent_tick(self) -> None:
        if self.window_start:
            now = time.time()
            second = int(now - self.window_start)
            self.series.viewers[second] = self._joined()
            self.series.add(second, self.tally.deliveries - self._sender_last, b"")
            self._sender_last = self.tally.deliveries
            cpu = self._server_cpu()
            if self._cpu_last is not None and now > self._cpu_last[0]:
                self.series.server_cores[second] = round(
                    (cpu - self._cpu_last[1]) / (now - self._cpu_last[0]), 3
                )
            self._cpu_last = (now, cpu)

    def _report(self, progress: Progress, elapsed: float, viewers: int, phase: str) -> None:
        last_full = int(time.time() - self.window_start) - 1 if self.window_start else -1
        rate = float(self.series.deliveries.get(last_full, 0))
        merged = histo.new()
        for h in self.series.latency.values():
            merged.add(h)
        p99 = merged.get_value_at_percentile(99) / 1000 if merged.get_total_count() else None
        progress.show(elapsed, self._joined(), viewers, rate, p99, phase)

    async def _wait_replies(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(s.pending for s in self.senders):
            await asyncio.sleep(0.05)
        self.send_stats.unanswered = sum(len(s.pending) for s in self.senders)

    # -- the scenarios ---------------------------------------------------------------------

    async def execute(self) -> dict[str, Any]:
        raise_open_files_limit()
        o = self.o
        started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        mach = machine()
        t_begin = time.monotonic()
        overflows = listen_overflows()
        try:
            self._start_servers()
            async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=30), connector=self.http_connector()
            ) as http:
                await self._create_room(http)
                if o.scenario == "joinstorm":
                    body = await self._joinstorm()
                else:
                    body = await self._barrage(http)
                body["server_metrics"] = await self._server_metrics(http)
        finally:
            with contextlib.suppress(Exception):
                self._stop_workers()
            for s in self.senders:
                s.close(1001)
            logs = {s.name: s.log_tail(10) for s in self.started}
            self._stop_servers()
        result: dict[str, Any] = {
            "scenario": o.scenario,
            "label": o.label or o.scenario,
            "params": {**asdict(self.o), "room": self.room, "app": None},
            "started_at": started_at,
            "machine": mach | {"loadavg_end": list(__import__("os").getloadavg())},
            "elapsed_s": round(time.monotonic() - t_begin, 2),
            "listen_overflows": listen_overflows() - overflows,
            **body,
        }
        if not result.get("passed", False):
            result["server_log_tail"] = logs
        return result

    async def _barrage(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        o = self.o
        viewers = o.viewers + (o.senders if o.target == "bare" else 0)  # same socket count as the full server
        progress = Progress(o.label or o.scenario, o.duration)
        initial = None
        if o.ramp is not None:
            viewers, initial = o.ramp.peak_viewers, o.ramp.viewers_at(0)
        self._spawn_workers(viewers, o.connect_rate, initial)
        ramp_timeout = (viewers if initial is None else initial) / o.connect_rate + o.connect_timeout_s + 30
        ready_deadline = time.monotonic() + ramp_timeout
        pending = set(range(len(self.workers)))
        readies: list[dict[str, Any]] = []
        while pending and time.monotonic() < ready_deadline:
            for i in list(pending):
                with contextlib.suppress(asyncio.TimeoutError):
                    readies.append(await self.workers[i].expect("ready", 1.0))
                    pending.discard(i)
            self._report(progress, 0.0, viewers, "join")
        if pending:
            raise RuntimeError(f"workers {sorted(pending)} did not finish connecting in {ramp_timeout:.0f}s")
        t_joined = time.time()
        if o.target != "bare":
            await self._connect_senders()
        await asyncio.sleep(o.settle_s)
        late_s = await self._wait_start_at()
        gc.collect()
        gc.freeze()
        gc.disable()  # as in the workers: no collector pauses inside the window
        self.window_start = time.time()
        before = await self._snap()
        await self._send_window(http, progress, viewers)
        await self._wait_replies(5.0)
        await asyncio.sleep(max(0.3, 3 * o.flush_ms / 1000))
        self._parent_tick()
        after = await self._snap()
        progress.done()
        final_seq = await self._marker(http)
        for w in self.workers:
            w.send({"cmd": "final", "seq": final_seq, "timeout": o.verify_timeout_s})
        finals = [await w.expect("final", o.verify_timeout_s + 30) for w in self.workers]
        gc.enable()
        result = barrage_result(
            before,
            after,
            finals,
            final_seq=final_seq,
            t_joined=t_joined,
            sockets=viewers + (o.senders if o.target != "bare" else 0),
            series=self.series,
            sends=self.send_stats,
        )
        if o.ramp is not None:
            result["ramp"] = o.ramp.describe()
        if o.shard is not None:
            result["shard"] = {"index": o.shard[0], "count": o.shard[1], "start_late_s": late_s}
            result["raw"] = shard_raw(self.window_start, self.series, self.send_stats, finals)
        return result

    async def _wait_start_at(self) -> float | None:
        """Wait for ``--start-at`` (shards on several machines start sending together);
        how late this shard was for it, when it was."""
        if self.o.start_at is None:
            return None
        wait = self.o.start_at - time.time()
        if wait < 0:
            print(f"start-at passed {-wait:.1f} s ago: starting now", file=sys.stderr, flush=True)
            return round(-wait, 2)
        await asyncio.sleep(wait)
        return 0.0

    async def _joinstorm(self) -> dict[str, Any]:
        """``viewers`` sockets connect and join, spread evenly over ``duration`` s."""
        o = self.o
        progress = Progress(o.label or "joinstorm", o.duration)
        rate = o.viewers / o.duration
        t0 = time.monotonic()
        before_cpu = self._server_cpu()
        self._spawn_workers(o.viewers, rate)
        readies: dict[int, dict[str, Any]] = {}
        deadline = t0 + o.duration + o.connect_timeout_s + 30
        while len(readies) < len(self.workers) and time.monotonic() < deadline:
            for w in self.workers:
                if w.index not in readies:
                    with contextlib.suppress(asyncio.TimeoutError):
                        readies[w.index] = await w.expect("ready", 0.2)
            progress.show(time.monotonic() - t0, self._joined(), o.viewers, 0.0, None, "join")
        progress.done()
        if len(readies) < len(self.workers):
            raise RuntimeError("workers did not finish the join storm in time")
        server_cpu = self._server_cpu() - before_cpu
        for w in self.workers:
            w.send({"cmd": "final", "seq": 0, "timeout": 0.1})
        finals = [await w.expect("final", 30) for w in self.workers]
        failures: dict[str, int] = {}
        for f in finals:
            for k, v in f["join_failures"].items():
                failures[k] = failures.get(k, 0) + v
        first = min(f["first_start"] for f in finals)
        last = max(f["last_joined"] for f in finals)
        joined = sum(f["joined"] for f in finals)
        return {
            "passed": joined == o.viewers and not failures,
            "joined": joined,
            "refused": sum(failures.values()),
            "failures": failures,
            "all_joined_after_s": round(last - first, 2) if last else None,
            "join_ms": join_summary(finals),
            "server_cpu_s": round(server_cpu, 2),
        }


def _factory(sender: Sender) -> Callable[[], Sender]:
    """``create_connection``'s protocol factory for a sender made beforehand."""
    return lambda: sender
