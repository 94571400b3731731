"""A load-generator worker for the live-commerce scenarios: many *users* per process.

Each simulated user is one socket with its own token (per-user rules, such as
a sale's ``limit_per_user`` or one lottery entry, cannot be multiplexed over
sockets). Started with multiprocessing *spawn*; talks to the parent over a
``Pipe`` with small dicts:

parent -> worker: ``{"cmd": "go", ...}`` (the load: op, params, rate, in-flight,
duration), ``{"cmd": "watch", "event": name}`` (record when each
socket first sees that event), ``{"cmd": "snap"}``, ``{"cmd": "final", "timeout": s}``,
``{"cmd": "stop"}``.
worker -> parent: ``ready``, ``tick`` (each second: answered requests, outcomes
and the interval's reply-latency histogram), ``snap``, ``done`` (the load ended
and every attempt has its final answer or gave up), ``final``.

What an *attempt* is: one operation identified by a client id (``cid`` for
``sale.buy``; the user for ``lottery.enter`` and ``redpacket.grab``, which are
once per user). An attempt sends one request; when the answer is
``unavailable`` or none comes within ``retry_timeout_s`` the same attempt (same
cid) is sent again (a *retry*, not a new attempt); an attempt gives up after
``MAX_SENDS_PER_ATTEMPT`` such sends. ``rate_limited`` is a definitive "not now",
not a lost answer: the same cid is sent again after ``retry_after_ms`` (a
*limited resend*, never counted toward giving up: a buyer kept busy by its other
in-flight attempts could otherwise be limited six times in a row and give up an
attempt the server never lost), and the user sends nothing new before then.
Every request's reply time is recorded; ``rate_limited`` replies in their own
histogram (they never reach the sale).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import msgspec

from loadtest import histo
from loadtest.client import WsClient
from loadtest.procs import self_cpu_seconds
from loadtest.tls import TlsSettings, connect_kwargs
from loadtest.workerloop import WorkerLoop
from roomserver.auth import mint_token
from roomserver.limits import raise_open_files_limit

MAX_SENDS_PER_ATTEMPT = 6  # the first request and up to 5 retries
# Sources spread over 127.x.y.1 so that more than ~28k sockets (the ephemeral port
# range of one source address) can reach one server port. Untested past 20,000 sockets:
# the development box's hard RLIMIT_NOFILE is 20,000 per process (docs/benchmarks.md).
SOCKETS_PER_SOURCE = 20_000
JOIN_ID = 1
RETRY_CODES = frozenset({"unavailable", "internal"})
AMOUNT_RE = re.compile(r"(\d+) cents")

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder().encode


@dataclass(slots=True)
class CommerceConfig:
    index: int
    users: int
    first_user: int  # global index of this worker's first user (source addresses, ids)
    user_prefix: str
    targets: list[tuple[str, int]]
    room: str
    app_key: str
    app_secret: str
    connect_rate: float
    connect_timeout_s: float = 60.0
    connect_concurrency: int = 500
    token_ttl_s: int = 7200
    tls: TlsSettings | None = None  # https targets


class Attempt:
    __slots__ = ("cid", "sends", "user")

    def __init__(self, user: User, cid: str) -> None:
        self.user = user
        self.cid = cid
        self.sends = 0


class User(WsClient):
    """One user: joins the room, then sends what the worker tells it to."""

    def __init__(self, worker: CommerceWorker, host: str, port: int, path: str, uid: str) -> None:
        super().__init__(host, port, path)
        self.worker = worker
        self.uid = uid
        self.ids = itertools.count(JOIN_ID + 1)
        self.pending: dict[int, tuple[int, Attempt]] = {}  # request id -> (sent ns, attempt)
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # A socket that fails before its upgrade fails `opened` first and nobody awaits
        # `joined`: mark its exception retrieved (no "never retrieved" log per socket).
        self.joined.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.join_error: str | None = None
        self.blocked_until = 0.0  # monotonic: rate_limited, wait before the next send
        self.saw_event = False

    def on_open(self) -> None:
        self.send_json({"id": JOIN_ID, "op": "room.join", "room": self.worker.cfg.room})

    def send_attempt(self, a: Attempt, *, counted: bool = True) -> None:
        """Send ``a``; ``counted`` sends (the first and each retry) count toward giving up."""
        w = self.worker
        rid = next(self.ids)
        msg = {"id": rid, "op": w.op, "room": w.cfg.room, **w.params}
        if w.op == "sale.buy":
            msg["cid"] = a.cid
        a.sends += counted
        sent = time.perf_counter_ns()
        self.pending[rid] = (sent, a)
        w.sent_order.append((sent, self, rid))
        self.send_frame(1, _encode(msg))
        w.requests += 1

    def on_text(self, payload: bytes) -> None:
        w = self.worker
        watch = w.watch
        if watch is not None and not self.saw_event and watch in payload:
            self.saw_event = True
            w.saw_event(self)
        if b'"re":' not in payload:
            return
        now = time.perf_counter_ns()
        try:
            messages = _decode(payload)
        except msgspec.DecodeError:
            self._fail("undecodable frame")
            return
        for m in messages:
            rid = m.get("re")
            if rid is None:
                continue
            if rid == JOIN_ID:
                if m.get("ok"):
                    if not self.joined.done():
                        self.joined.set_result(None)
                else:
                    self.join_error = str(m.get("error", {}).get("code", "error"))
                    if not self.joined.done():
                        self.joined.set_exception(ConnectionError(self.join_error))
                continue
            entry = self.pending.pop(rid, None)
            if entry is None:
                w.late_replies += 1  # answer to a request we had already retried
                continue
            w.on_reply(self, entry[1], m, (now - entry[0]) // 1000)

    def on_closed(self) -> None:
        if not self.joined.done():
            self.joined.set_exception(ConnectionError(self.error or f"closed {self.close_code}"))
        self.worker.closed[str(self.close_code or self.error or "eof")] += 1


class CommerceWorker(WorkerLoop):
    name = "commerce worker"

    def __init__(self, pipe: Connection, cfg: CommerceConfig) -> None:
        super().__init__(pipe, cfg.index)
        self.cfg = cfg
        self.ssl_ctx = cfg.tls.context() if cfg.tls is not None else None
        self.users: list[User] = []
        self.failures: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self.tasks: set[asyncio.Task] = set()  # keep references: the loop holds tasks weakly
        # The load (set by "go").
        self.op = ""
        self.params: dict[str, Any] = {}
        self.once = False
        self.inflight = 1
        self.retry_timeout_s = 5.0
        self.requests = 0
        self.answers = 0  # replies other than rate_limited
        self.late_replies = 0
        self.retries = 0
        self.limited_resends = 0
        self.gave_up = 0
        self.outcomes: Counter[str] = Counter()
        self.outcomes_tick: Counter[str] = Counter()
        self.latency = histo.new()  # every reply but rate_limited, µs
        self.latency_tick = histo.new()
        self.limited_latency = histo.new()
        self.attempt_latency = histo.new()  # first send -> final answer, retries included
        self.attempt_started: dict[int, int] = {}
        # Every request as sent, oldest first, for the retry sweep (answered ones are skipped).
        self.sent_order: deque[tuple[int, User, int]] = deque()
        self.open_attempts = 0
        self.attempts = 0
        self.acked: list[list[Any]] = []  # [user, order id | amount]
        self.cids = itertools.count()
        self.stopping = False
        self.max_mode = False
        self.first_send = 0.0  # wall clock of the load's first request
        self.last_answer = 0.0  # ... and of its last answer (rate_limited excluded)
        # Watching an event.
        self.watch: bytes | None = None
        self.watch_times: list[float] = []  # wall clock of each socket's first receipt

    # -- the WorkerLoop parts ----------------------------------------------------------

    def _command(self, cmd: str | None, msg: dict[str, Any]) -> None:
        if cmd == "go":
            self._spawn(self._load(msg))
        elif cmd == "watch":
            self.watch = msg["event"].encode()
        elif cmd == "final":
            self._spawn(self._final(msg["timeout"]))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The collector is off, so an unretrieved exception would never be logged: say it now.
            exc = task.exception()
            print(
                f"commerce worker {self.cfg.index}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True
            )
            self._send({"kind": "error", "error": f"{type(exc).__name__}: {exc}"})

    def _counts(self) -> dict[str, Any]:
        return {
            "index": self.cfg.index,
            "joined": len(self.users),
            "failed": sum(self.failures.values()),
            "frames": 0,
            "deliveries": self.answers,
        }

    def _tick_fields(self) -> dict[str, Any]:
        h, self.latency_tick = self.latency_tick, histo.new()
        out, self.outcomes_tick = self.outcomes_tick, Counter()
        return {"hist": histo.encode(h) if h.get_total_count() else b"", "outcomes": dict(out)}

    def _close_all(self) -> None:
        for u in self.users:
            u.close(1001)

    # -- connecting ------------------------------------------------------------------

    async def _connect_all(self) -> None:
        cfg = self.cfg
        gate = asyncio.Semaphore(cfg.connect_concurrency)
        start = time.monotonic()
        tasks = []
        for i in range(cfg.users):
            wait = start + i / cfg.connect_rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await gate.acquire()
            tasks.append(asyncio.ensure_future(self._connect_one(i, gate)))
        await asyncio.gather(*tasks)

    async def _connect_one(self, i: int, gate: asyncio.Semaphore) -> None:
        cfg = self.cfg
        g = cfg.first_user + i
        uid = f"{cfg.user_prefix}{g}"
        token = mint_token(cfg.app_key, cfg.app_secret, uid, "viewer", room=cfg.room, ttl_s=cfg.token_ttl_s)
        host, port = cfg.targets[g % len(cfg.targets)]
        source = g // SOCKETS_PER_SOURCE
        local = (f"127.{1 + source // 250}.{source % 250}.1", 0) if source else None
        u = User(self, host, port, f"/v1/ws?token={token}", uid)
        try:
            async with asyncio.timeout(cfg.connect_timeout_s):
                await asyncio.get_running_loop().create_connection(
                    lambda: u, host, port, local_addr=local, **connect_kwargs(self.ssl_ctx, host)
                )
                await u.opened
                await u.joined
        except Exception as exc:
            self.failures[
                u.join_error or (f"close {u.close_code}" if u.close_code else type(exc).__name__)
            ] += 1
            if u.transport is not None:
                u.transport.abort()
            return
        finally:
            gate.release()
        self.users.append(u)

    # -- the load ------------------------------------------------------------------------

    def _new_attempt(self, u: User) -> None:
        a = Attempt(u, f"c{self.cfg.index}-{next(self.cids)}")
        self.attempts += 1
        self.open_attempts += 1
        self.attempt_started[id(a)] = time.perf_counter_ns()
        u.send_attempt(a)

    async def _load(self, msg: dict[str, Any]) -> None:
        self.op, self.params = msg["op"], msg["params"]
        self.once, self.inflight = msg["once"], max(1, msg["inflight"])
        self.retry_timeout_s = msg["retry_timeout_s"]
        rate, duration = msg["rate"], msg["duration"]
        self.max_mode = rate <= 0 and not self.once
        users = [u for u in self.users if not u.closed.done()]
        sweeper = asyncio.get_running_loop().create_task(self._sweep())
        start = time.monotonic()
        end = start + duration
        if self.once and rate > 0:
            # Every user sends once: a generator that fell behind (the box is shared with the
            # servers) catches up for up to `duration` after the last send was due.
            end += len(users) / rate
        self.first_send = time.time()
        if rate <= 0 and not self.once:
            # --max: every buyer keeps `inflight` attempts open; each answer starts the next.
            for u in users:
                for _ in range(self.inflight):
                    self._new_attempt(u)
            while time.monotonic() < end:
                await asyncio.sleep(0.05)
        else:
            # Paced: attempts due by now, over the users in turn (skipping busy ones).
            sent, turn, n = 0, 0, len(users)
            budget = n if self.once else None
            while (now := time.monotonic()) < end and n and (budget is None or sent < budget):
                due = int((now - start) * rate) if rate > 0 else n
                scanned = 0
                while sent < due and scanned < n and (budget is None or sent < budget):
                    u = users[turn % n]
                    turn += 1
                    scanned += 1
                    if self.once or (len(u.pending) < self.inflight and u.blocked_until <= now):
                        self._new_attempt(u)
                        sent += 1
                        scanned = 0
                await asyncio.sleep(0.002)
        self.stopping = True
        # Every open attempt gets its answer, its retries or gives up: bounded.
        deadline = time.monotonic() + self.retry_timeout_s * MAX_SENDS_PER_ATTEMPT + 5
        while self.open_attempts > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        sweeper.cancel()
        self._send(
            {
                "kind": "done",
                "cpu": self_cpu_seconds(),
                "first_send": self.first_send,
                "last_answer": self.last_answer,
                "requests": self.requests,
                "attempts": self.attempts,
                "answers": self.answers,
                "open_attempts": self.open_attempts,
                "retries": self.retries,
                "limited_resends": self.limited_resends,
                "gave_up": self.gave_up,
                "late_replies": self.late_replies,
                "outcomes": dict(self.outcomes),
                "latency": histo.encode(self.latency),
                "limited_latency": histo.encode(self.limited_latency),
                "attempt_latency": histo.encode(self.attempt_latency),
                "acked": self.acked,
                "users": len(self.users),
                "closed": dict(self.closed),
            }
        )

    def on_reply(self, u: User, a: Attempt, m: dict[str, Any], us: int) -> None:
        code = "ok" if m.get("ok") else str(m.get("error", {}).get("code", "error"))
        self.outcomes[code] += 1
        self.outcomes_tick[code] += 1
        if code == "rate_limited":
            self.limited_latency.record_value(max(1, us))
            wait = (m["error"].get("retry_after_ms") or 50) / 1000
            u.blocked_until = time.monotonic() + wait
            asyncio.get_running_loop().call_later(wait, self._resend_limited, a)
            return
        self.answers += 1
        self.last_answer = time.time()
        self.latency.record_value(max(1, us))
        self.latency_tick.record_value(max(1, us))
        if code in RETRY_CODES:
            self._resend(a)
            return
        self._finish(a)
        if code == "ok":
            data = m.get("data") or {}
            if self.op == "sale.buy":
                self.acked.append([u.uid, data["order"]["id"], a.cid])
            elif self.op == "redpacket.grab":
                self.acked.append([u.uid, data["amount_cents"]])
            else:
                self.acked.append([u.uid, True])
        elif code == "conflict" and a.sends > 1 and self.op != "sale.buy":
            # A retry of an entry or grab whose first try went through unseen.
            found = AMOUNT_RE.search(str(m["error"].get("message", "")))
            self.acked.append([u.uid, int(found.group(1)) if found else True])
            self.outcomes["retry_found_done"] += 1
        if self.max_mode and not self.stopping:
            wait = u.blocked_until - time.monotonic()
            if wait > 0:  # honour the server's retry_after_ms for this user's next attempt too
                asyncio.get_running_loop().call_later(wait, self._next_attempt, u)
            else:
                self._new_attempt(u)

    def _next_attempt(self, u: User) -> None:
        if not self.stopping and not u.closed.done():
            self._new_attempt(u)

    def _finish(self, a: Attempt) -> None:
        self.open_attempts -= 1
        started = self.attempt_started.pop(id(a), None)
        if started is not None:
            self.attempt_latency.record_value(max(1, (time.perf_counter_ns() - started) // 1000))

    def _resend(self, a: Attempt) -> None:
        if a.sends >= MAX_SENDS_PER_ATTEMPT or a.user.closed.done():
            self.gave_up += 1
            self._finish(a)
            return
        self.retries += 1
        a.user.send_attempt(a)

    def _resend_limited(self, a: Attempt) -> None:
        if a.user.closed.done():
            self.gave_up += 1
            self._finish(a)
            return
        self.limited_resends += 1
        a.user.send_attempt(a, counted=False)

    async def _sweep(self) -> None:
        """Requests without an answer after ``retry_timeout_s``: send the same attempt again."""
        while True:
            await asyncio.sleep(0.1)
            self.resend_stale(time.perf_counter_ns() - int(self.retry_timeout_s * 1e9))

    def resend_stale(self, sent_before_ns: int) -> None:
        """Resend every request sent before ``sent_before_ns`` and still unanswered.

        Walks the requests in the order they were sent, so each is looked at once
        (walking every user's pending map each round cost 12 % of a worker at 19,000 users).
        """
        order = self.sent_order
        while order and order[0][0] < sent_before_ns:
            sent, u, rid = order.popleft()
            entry = u.pending.get(rid)
            if entry is None or entry[0] != sent:
                continue  # answered
            del u.pending[rid]
            self.outcomes["timeout"] += 1
            self._resend(entry[1])

    def saw_event(self, u: User) -> None:
        self.watch_times.append(time.time())

    async def _final(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        alive = [u for u in self.users if not u.closed.done()]
        while self.watch is not None and time.monotonic() < deadline:
            if all(u.saw_event for u in alive):
                break
            await asyncio.sleep(0.05)
        self._send(
            {
                "kind": "final",
                "cpu": self_cpu_seconds(),
                "users": len(self.users),
                "alive": sum(1 for u in self.users if not u.closed.done()),
                "join_failures": dict(self.failures),
                "closed": dict(self.closed),
                "watch_times": self.watch_times,
            }
        )


def commerce_worker_main(pipe: Connection, cfg: CommerceConfig) -> None:
    """multiprocessing spawn target."""
    raise_open_files_limit()
    runner: Callable[[Coroutine[Any, Any, None]], None]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(CommerceWorker(pipe, cfg).run())
