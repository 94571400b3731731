"""A load-generator worker process: thousands of viewers on one event loop.

Started with multiprocessing *spawn* (a clean interpreter, no inherited loop or
sockets). Talks to the parent over a ``Pipe`` with small dicts:

worker -> parent: ``ready`` (every viewer joined or failed), ``tick`` (each
second: connected, cumulative frames/deliveries, the interval's latency
histogram), ``snap`` (answer to a snapshot request), ``final`` (verification).
parent -> worker: ``{"cmd": "snap"}``, ``{"cmd": "final", "seq": N, "timeout": s}``,
``{"cmd": "target", "viewers": n}`` (a ramp: connect more, or close the newest), ``{"cmd": "stop"}``.

Every wait is bounded; a worker whose parent vanishes exits at the next tick.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from hdrh.histogram import HdrHistogram

from loadtest import histo
from loadtest.client import SocketTransport, Tally, Viewer
from loadtest.procs import self_cpu_seconds
from loadtest.tls import TlsSettings, connect_kwargs
from loadtest.workerloop import WorkerLoop
from roomserver.auth import mint_token
from roomserver.limits import raise_open_files_limit

POLL_SLICES = 20  # each poll_ms period is cut in slices so a pass never blocks the loop long
RECV_BYTES = 256 * 1024


@dataclass(slots=True)
class WorkerConfig:
    index: int
    viewers: int
    targets: list[tuple[str, int]]
    room: str
    app_key: str
    app_secret: str
    connect_rate: float  # new sockets per second in this worker
    sample_every: int  # every n-th viewer decodes and measures latency (0 = none)
    # Plain viewers are read every poll_ms by the worker (0 = event-driven like
    # the sampling viewers); see client.SocketTransport.
    poll_ms: int = 200
    connect_timeout_s: float = 30.0
    connect_concurrency: int = 500
    token_ttl_s: int = 3600
    initial: int | None = None  # viewers to connect before ``ready`` (None: all); a ramp asks for more
    user_prefix: str = ""  # shards: user ids differ between machines
    target_offset: int = 0  # shards: start the round robin over targets elsewhere
    tls: TlsSettings | None = None  # https targets; their viewers are event-driven, never polled


@dataclass(slots=True)
class JoinTimes:
    connect: HdrHistogram = field(default_factory=histo.new)  # TCP + upgrade, µs
    join: HdrHistogram = field(default_factory=histo.new)  # room.join -> snapshot
    total: HdrHistogram = field(default_factory=histo.new)  # connect start -> snapshot
    first_start: float = 0.0
    last_joined: float = 0.0


class Worker(WorkerLoop):
    name = "viewer worker"

    def __init__(self, pipe: Connection, cfg: WorkerConfig) -> None:
        super().__init__(pipe, cfg.index)
        self.cfg = cfg
        self.tally = Tally()
        self.viewers: list[Viewer] = []
        self.polled: list[tuple[socket.socket, Viewer]] = []
        self.failures: Counter[str] = Counter()
        self.attempted = 0
        self.times = JoinTimes()
        self._final: asyncio.Task | None = None
        self.left = 0  # viewers a ramp closed (not verified)
        self.want = cfg.viewers if cfg.initial is None else cfg.initial
        self._gate = asyncio.Semaphore(cfg.connect_concurrency)
        self.ssl_ctx = cfg.tls.context() if cfg.tls is not None else None
        self._grower: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()

    # -- the WorkerLoop parts ----------------------------------------------------

    def _background(self) -> list[asyncio.Task]:
        if self.cfg.poll_ms <= 0:
            return []
        return [asyncio.get_running_loop().create_task(self._poll())]

    def _command(self, cmd: str | None, msg: dict[str, Any]) -> None:
        if cmd == "final" and self._final is None:
            self._final = asyncio.get_running_loop().create_task(self._verify(msg["seq"], msg["timeout"]))
        elif cmd == "target" and self._final is None:
            self._retarget(min(int(msg["viewers"]), self.cfg.viewers))

    def _retarget(self, want: int) -> None:
        """A ramp's new viewer count: close the newest joined viewers, or connect more."""
        self.want = want
        while len(self.viewers) > want:
            v = self.viewers.pop()
            v.close(1000)
            self.left += 1
        if self._live() < want and (self._grower is None or self._grower.done()):
            self._grower = asyncio.get_running_loop().create_task(self._grow())

    def _live(self) -> int:
        """Viewers joined or still connecting."""
        return self.attempted - sum(self.failures.values()) - self.left

    def _tick_fields(self) -> dict[str, Any]:
        return {"hist": self.tally.take_latency()}

    def _close_all(self) -> None:
        for v in self.viewers:
            v.close(1001)

    def _counts(self) -> dict[str, Any]:
        joined = sum(1 for v in self.viewers if v.check is not None)
        return {
            "index": self.cfg.index,
            "attempted": self.attempted,
            "joined": joined,
            "failed": sum(self.failures.values()),
            "frames": self.tally.frames,
            "deliveries": self.tally.deliveries,
        }

    # -- connecting --------------------------------------------------------------

    def _token(self, i: int) -> str:
        cfg = self.cfg
        user = f"{cfg.user_prefix}v{cfg.index}-{i}"
        return mint_token(cfg.app_key, cfg.app_secret, user, "viewer", room=cfg.room, ttl_s=cfg.token_ttl_s)

    async def _connect_all(self) -> None:
        cfg = self.cfg
        tokens = [self._token(i) for i in range(self.want)]
        gate = self._gate
        start = time.monotonic()
        self.times.first_start = time.time()
        tasks = []
        for i, token in enumerate(tokens):
            due = start + i / cfg.connect_rate
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await gate.acquire()
            self.attempted += 1
            tasks.append(asyncio.ensure_future(self._connect_one(i, token, gate)))
        await asyncio.gather(*tasks)

    async def _grow(self) -> None:
        """Connect viewers at ``connect_rate`` until a ramp's count is reached (or the peak)."""
        cfg = self.cfg
        start, n = time.monotonic(), 0
        while self._live() < self.want and self.attempted < cfg.viewers and self._final is None:
            wait = start + n / cfg.connect_rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._gate.acquire()
            i = self.attempted
            self.attempted += 1
            n += 1
            task = asyncio.ensure_future(self._connect_one(i, self._token(i), self._gate))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connect_one(self, i: int, token: str, gate: asyncio.Semaphore) -> None:
        cfg = self.cfg
        host, port = cfg.targets[(cfg.target_offset + cfg.index + i) % len(cfg.targets)]
        sample = cfg.sample_every > 0 and i % cfg.sample_every == 0
        v = Viewer(host, port, f"/v1/ws?token={token}", cfg.room, self.tally, sample=sample)
        # A polled socket is read raw by the worker (client.SocketTransport): no TLS layer there.
        polled = cfg.poll_ms > 0 and not sample and self.ssl_ctx is None
        t0 = time.time_ns()
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                if polled:
                    await self._connect_polled(v, host, port)
                else:
                    await asyncio.get_running_loop().create_connection(
                        lambda: v, host, port, **connect_kwargs(self.ssl_ctx, host)
                    )
                await v.opened
                await v.joined
        except Exception as exc:
            reason = v.join_error or (f"close {v.close_code}" if v.close_code else type(exc).__name__)
            self.failures[reason] += 1
            if v.transport is not None:
                v.transport.abort()
            return
        finally:
            gate.release()
        if len(self.viewers) >= self.want and self.cfg.initial is not None:
            v.close(1000)  # the ramp went down while this one was connecting
            self.left += 1
            return
        self.viewers.append(v)
        t = self.times
        t.connect.record_value(max(1, (v.join_sent_ns - t0) // 1000))
        t.join.record_value(max(1, (v.joined_ns - v.join_sent_ns) // 1000))
        t.total.record_value(max(1, (v.joined_ns - t0) // 1000))
        t.last_joined = max(t.last_joined, v.joined_ns / 1e9)

    async def _connect_polled(self, v: Viewer, host: str, port: int) -> None:
        """Upgrade and join with the loop's help, then leave the socket to ``_poll``."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as asyncio does for its transports
        transport = SocketTransport(sock)
        try:
            await loop.sock_connect(sock, (host, port))
            v.connection_made(transport)  # type: ignore[arg-type]
            while v.check is None and not v.closed.done():
                data = await loop.sock_recv(sock, RECV_BYTES)
                if not data:
                    v.connection_lost(None)
                    break
                v.data_received(data)
        except BaseException:
            transport.close()
            raise
        if v.check is not None:
            self.polled.append((sock, v))

    async def _poll(self) -> None:
        """Read every polled socket once per poll_ms, a slice at a time."""
        pause = self.cfg.poll_ms / 1000 / POLL_SLICES
        part = 0
        while True:
            await asyncio.sleep(pause)
            polled = self.polled
            for i in range(part, len(polled), POLL_SLICES):
                sock, v = polled[i]
                if v.closed.done():
                    continue
                while True:
                    try:
                        data = sock.recv(RECV_BYTES)
                    except BlockingIOError:
                        break
                    except OSError as exc:
                        v.transport.close()  # type: ignore[union-attr]
                        v.connection_lost(exc)
                        break
                    if not data:
                        v.transport.close()  # type: ignore[union-attr]
                        v.connection_lost(None)
                        break
                    v.data_received(data)
                    if len(data) < RECV_BYTES:
                        break
            part = (part + 1) % POLL_SLICES

    # -- verification ---------------------------------------------------------------

    async def _verify(self, final_seq: int, timeout: float) -> None:
        """Wait (bounded) until every viewer saw ``final_seq``, then report."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            behind = [v for v in self.viewers if v.check and v.check.last < final_seq and not v.closed.done()]
            if not behind:
                break
            await asyncio.sleep(0.1)
        ok = gaps = dups = incomplete = missing = 0
        closed: Counter[str] = Counter()
        lags: list[int] = []
        for v in self.viewers:
            c = v.check
            assert c is not None
            if v.closed.done():
                closed[str(v.close_code or v.error or "eof")] += 1
            if c.gaps:
                gaps += 1
                missing += c.missing
            if c.duplicates:
                dups += 1
            if not c.complete(final_seq):
                incomplete += 1
                lags.append(final_seq - c.last)
            if c.in_order and c.complete(final_seq):
                ok += 1
        t = self.times
        self._send(
            {
                "kind": "final",
                **self._counts(),
                "cpu": self_cpu_seconds(),
                "hist": self.tally.take_latency(),
                "viewers": self.attempted - self.left,
                "left": self.left,
                "ok": ok,
                "with_gaps": gaps,
                "missing_events": missing,
                "with_duplicates": dups,
                "incomplete": incomplete,
                "max_lag": max(lags, default=0),
                "closed": dict(closed),
                "join_failures": dict(self.failures),
                "connect_hist": histo.encode(t.connect),
                "join_hist": histo.encode(t.join),
                "total_hist": histo.encode(t.total),
                "first_start": t.first_start,
                "last_joined": t.last_joined,
            }
        )


def worker_main(pipe: Connection, cfg: WorkerConfig) -> None:
    """multiprocessing spawn target."""
    raise_open_files_limit()
    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # optional speed-up
        runner = asyncio.run
    runner(Worker(pipe, cfg).run())
