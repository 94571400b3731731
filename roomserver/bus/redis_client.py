"""Slot-routed Redis connections for ``RedisBroker``: one code path for a single
node and for Redis Cluster.

A single node is a "cluster" whose one node owns all 16384 slots and never
answers MOVED, so the broker never asks which mode it is in.

Why not redis-py's ``RedisCluster``/``Redis`` clients: they retry a command
after a connection error, which re-runs a non-idempotent script whose reply
was lost (a barrage published twice under a second ``seq``); a cluster
command cannot be pinned to the connection that ran the script, which
``WAIT`` needs; their retry/backoff/reinitialise loops make "how long until
``unavailable``" hard to bound; and single node and cluster would be two
code paths. Here every command knows how it failed:

- ``NotSent``: no connection could be made; the command never left, so any
  command may be retried (after refreshing the slot map).
- ``Ambiguous``: the connection broke or timed out after sending; the command
  may or may not have run. Only idempotent commands are retried (``safe=True``).
- Redirects and cluster-state replies (``MOVED``, ``ASK``, ``TRYAGAIN``,
  ``CLUSTERDOWN``, ``READONLY``, ``LOADING``, ``MASTERDOWN``) are answers
  given *instead of* running the command: always retried.

Every call has a deadline; past it the caller gets ``BrokerUnavailable``.
Connections come from redis-py (``redis.asyncio.Connection``: hiredis parser,
RESP2) with retries disabled; each is used by one command (or pipeline) at a
time and goes back to a small per-node pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha1
from typing import Any
from urllib.parse import unquote

from redis.asyncio.connection import Connection, RedisSSLContext, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomserver.bus.base import BrokerUnavailable

log = logging.getLogger(__name__)

SLOTS = 16384

# Replies that mean "not executed, ask again (maybe elsewhere)".
_RETRY_REPLIES = (TryAgainError, ClusterDownError, ReadOnlyError, BusyLoadingError, MasterDownError)
IO_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError, EOFError)


class NotSent(Exception):
    """No connection: the command was not sent."""


class NotExecuted(BrokerUnavailable):
    """``BrokerUnavailable`` where the commands certainly did not run (never sent,
    or refused before running): a caller need not wonder whether its write happened.
    A plain ``BrokerUnavailable`` from a write means the outcome is unknown."""

    executed = False


class PrimaryMoved(NotExecuted):
    """A call pinned to one primary found the slot served by another (a failover,
    a reshard): nothing was run. The caller checks the new primary and calls again."""


def unavailable(message: str, *, maybe_executed: bool) -> BrokerUnavailable:
    return BrokerUnavailable(message) if maybe_executed else NotExecuted(message)


@dataclass(slots=True)
class _Attempt:
    sent: bool = False  # bytes may have reached the server


class Ambiguous(Exception):
    """The connection failed after the command was sent."""


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script run with EVALSHA, falling back to EVAL on NOSCRIPT (a new
    primary after a failover, or a restarted server, has an empty script cache)."""

    name: str
    source: str

    @property
    def sha(self) -> str:
        return sha1(self.source.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class ScriptCall:
    script: Script
    keys: Sequence[str | bytes]
    args: Sequence[Any]

    def command(self, *, by_sha: bool) -> tuple[Any, ...]:
        head = ("EVALSHA", self.script.sha) if by_sha else ("EVAL", self.script.source)
        return (*head, len(self.keys), *self.keys, *self.args)


Command = tuple[Any, ...] | ScriptCall


@dataclass(frozen=True, slots=True)
class Timeouts:
    # Bound on one broker call, retries and waiting for a failover included.
    op: float = 1.0
    connect: float = 0.25
    # Idle pub/sub connections are PINGed this often and dropped after 3 silent intervals.
    pubsub_ping: float = 1.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """How every connection to the deployment's Redis servers logs in: AUTH with an ACL
    user (or the default user when ``username`` is None) and TLS for ``rediss://``. A
    cluster's nodes share them, also those learnt later from ``CLUSTER SLOTS``."""

    username: str | None = None
    password: str | None = None
    tls: bool = False
    # CA bundle the servers' certificates are checked against (None: the system's).
    ca_file: str | None = None


class LoginRefused(Exception):
    """A Redis server refused this deployment's credentials or TLS (not an outage)."""


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind a connection error (redis-py wraps it), if there is one."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def parse_target(text: str, ca_file: str | None = None) -> tuple[list[str], int, Credentials]:
    """``redis[s]://[user:password@]host:port[,host:port…][/db]`` or plain
    ``host:port,host:port`` -> (seed addresses, db, credentials)."""
    if "://" not in text:
        return [n.strip() for n in text.split(",") if n.strip()], 0, Credentials(ca_file=ca_file)
    scheme, _, rest = text.partition("://")
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
    userinfo, at, hosts = rest.rpartition("@")
    hosts, _, db_text = hosts.partition("/")
    user, colon, password = userinfo.partition(":")
    creds = Credentials(
        username=unquote(user) if at and user else None,
        password=unquote(password) if at and colon else None,
        tls=scheme == "rediss",
        ca_file=ca_file,
    )
    seeds = [n.strip() for n in hosts.split(",") if n.strip()]
    seeds = [n if ":" in n.rpartition("]")[2] else f"{n}:6379" for n in seeds]
    return seeds, int(db_text or 0), creds


def parse_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.strip().rpartition(":")
    return host or "127.0.0.1", int(port)


class NodePool:
    """Connections to one server; each carries one command (or pipeline) at a time."""

    def __init__(
        self,
        addr: str,
        *,
        db: int,
        credentials: Credentials,
        timeouts: Timeouts,
        size: int,
        tls_context: RedisSSLContext | None = None,
    ) -> None:
        self.addr = addr
        self.host, self.port = parse_addr(addr)
        self._db = db
        self._credentials = credentials
        self._tls_context = tls_context
        self._timeouts = timeouts
        self._idle: deque[Connection] = deque()
        self._slots = asyncio.Semaphore(size)

    def new_connection(self, socket_timeout: float | None) -> Connection:
        creds = self._credentials
        tls: dict[str, Any] = {}
        if creds.tls:
            # Certificates verified, host names (or IP addresses) checked.
            tls = {"ssl_cert_reqs": "required", "ssl_ca_certs": creds.ca_file, "ssl_check_hostname": True}
        conn = (SSLConnection if creds.tls else Connection)(
            host=self.host,
            port=self.port,
            db=self._db,
            username=creds.username,
            password=creds.password,
            **tls,
            socket_timeout=socket_timeout,
            socket_connect_timeout=self._timeouts.connect,
            retry=Retry(NoBackoff(), 0),
            driver_info=None,
            # RESP2: pushed pub/sub messages are plain replies read in order.
            protocol=2,
        )
        if isinstance(conn, SSLConnection) and self._tls_context is not None:
            conn.ssl_context = self._tls_context
        return conn

    async def connect(self, socket_timeout: float | None) -> Connection:
        conn = self.new_connection(socket_timeout)
        try:
            await conn.connect()
        except (*IO_ERRORS, ResponseError) as exc:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            raise NotSent(f"{self.addr}: {exc}") from exc
        return conn

    async def _acquire(self) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            try:
                # A server that went away left EOF (or junk) on the socket.
                if conn.is_connected and not await conn.can_read():
                    return conn
            except IO_ERRORS:
                pass
            await conn.disconnect(nowait=True)
        # No socket timeout: every call runs under its own deadline (``SlotRouter.call``),
        # and without one redis-py writes and reads without a wait_for task per command.
        return await self.connect(socket_timeout=None)

    async def execute(
        self, commands: Sequence[tuple[Any, ...]], attempt: _Attempt | None = None
    ) -> list[Any]:
        """Send ``commands`` in one write, read every reply; error replies are
        returned as exception objects (the connection stays in sync)."""
        await self._slots.acquire()
        conn: Connection | None = None
        reusable = False
        try:
            conn = await self._acquire()
            try:
                if attempt is not None:
                    attempt.sent = True
                await conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
            except IO_ERRORS as exc:
                raise Ambiguous(f"{self.addr}: {exc}") from exc
            reusable = True
            return replies
        finally:
            if conn is not None:
                if reusable:
                    self._idle.append(conn)
                else:
                    # Cancelled or broken mid-reply: the stream is out of sync.
                    await conn.disconnect(nowait=True)
            self._slots.release()

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().disconnect(nowait=True)


class SlotRouter:
    """Maps slots to primaries (``CLUSTER SLOTS``) and runs commands on them."""

    def __init__(
        self,
        seeds: Sequence[str],
        *,
        cluster: bool,
        db: int = 0,
        credentials: Credentials | None = None,
        timeouts: Timeouts | None = None,
        pool_size: int = 32,
    ) -> None:
        self.cluster = cluster
        self.timeouts = timeouts or Timeouts()
        self._seeds = [f"{h}:{p}" for h, p in map(parse_addr, seeds)]
        self._db = db
        self.credentials = credentials or Credentials()
        # One TLS context for every connection: making one loads the CA bundle (~100 ms),
        # far over the connect timeout were each new connection to pay it.
        self._tls_context: RedisSSLContext | None = None
        if self.credentials.tls:
            self._tls_context = RedisSSLContext(
                cert_reqs="required", ca_certs=self.credentials.ca_file, check_hostname=True
            )
            self._tls_context.get()
        self._pool_size = pool_size
        self._pools: dict[str, NodePool] = {}
        self._slots: list[str | None] = [None] * SLOTS
        self._stale = True
        self._refreshing: asyncio.Future[None] | None = None
        # Bumped whenever the set of primaries changes (a failover, a reshard): what
        # callers learnt about a primary (e.g. that it has a replica) is then stale.
        self.primaries_epoch = 0
        if not cluster:
            self._slots = [self._seeds[0]] * SLOTS
            self._stale = False

    # -- topology -----------------------------------------------------------

    def pool(self, addr: str) -> NodePool:
        p = self._pools.get(addr)
        if p is None:
            p = self._pools[addr] = NodePool(
                addr,
                db=self._db,
                credentials=self.credentials,
                timeouts=self.timeouts,
                size=self._pool_size,
                tls_context=self._tls_context,
            )
        return p

    def addr_for_slot(self, slot: int) -> str | None:
        return self._slots[slot]

    def primaries(self) -> list[str]:
        return sorted({a for a in self._slots if a is not None})

    def mark_stale(self) -> None:
        if self.cluster:
            self._stale = True

    def moved(self, exc: MovedError) -> None:
        self._set_slots_of(exc.slot_id, f"{exc.host}:{exc.port}")
        self.mark_stale()

    def _set_slots_of(self, slot: int, addr: str) -> None:
        if addr not in self._slots:
            self.primaries_epoch += 1
        self._slots[slot] = addr

    async def ensure_topology(self) -> None:
        if self._stale:
            await self.refresh()

    async def refresh(self) -> None:
        """Reload the slot map from the first node that answers (concurrent
        callers share one refresh). Raises ``NotSent`` if no node answers."""
        if not self.cluster:
            return
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._refresh())
            self._refreshing.add_done_callback(self._refresh_done)
        await asyncio.shield(self._refreshing)

    def _refresh_done(self, fut: asyncio.Future[None]) -> None:
        self._refreshing = None
        if not fut.cancelled():
            fut.exception()  # retrieved: every waiter sees it through shield

    async def _refresh(self) -> None:
        known = [a for a in self._pools if a not in self._seeds]
        candidates = self._seeds + known
        random.shuffle(candidates)  # spread the load, and don't stick to a dead seed
        errors = []
        for addr in candidates:
            try:
                conn = await self.pool(addr).connect(socket_timeout=self.timeouts.op)
            except NotSent as exc:
                errors.append(str(exc))
                continue
            try:
                await conn.send_command("CLUSTER", "SLOTS")
                reply = await conn.read_response()
            except (*IO_ERRORS, ResponseError) as exc:
                errors.append(f"{addr}: {exc}")
                continue
            finally:
                await conn.disconnect(nowait=True)
            slots: list[str | None] = [None] * SLOTS
            host_default = parse_addr(addr)[0]
            for entry in reply:
                first, last, primary = int(entry[0]), int(entry[1]), entry[2]
                host = primary[0].decode() if primary[0] else host_default
                if host in ("", "?"):
                    host = host_default
                target = f"{host}:{int(primary[1])}"
                for s in range(first, last + 1):
                    slots[s] = target
            if set(slots) != set(self._slots):
                self.primaries_epoch += 1
            self._slots = slots
            self._stale = False
            return
        raise NotSent("no cluster node answered: " + "; ".join(errors[-3:]))

    async def check_login(self) -> None:
        """PING the seeds with this router's credentials until one answers; raises
        ``LoginRefused`` when a server refuses the login (or its certificate), and returns
        quietly when none answers at all (an outage, which the broker rides out)."""
        for addr in self._seeds:
            conn = self.pool(addr).new_connection(self.timeouts.op)
            try:
                await conn.connect()
                await conn.send_command("PING")
                await conn.read_response()
                return
            except (AuthenticationError, AuthorizationError, NoPermissionError) as exc:
                raise LoginRefused(f"{addr} refused the login: {exc}") from None
            except ResponseError as exc:
                if str(exc).startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
                    raise LoginRefused(f"{addr} refused the login: {exc}") from None
                raise
            except IO_ERRORS as exc:
                tls = _tls_error(exc)
                if tls is not None:
                    raise LoginRefused(f"{addr}: TLS failed: {tls}") from None
                continue  # down or unreachable: not a login failure
            finally:
                with contextlib.suppress(Exception):
                    await conn.disconnect(nowait=True)

    # -- commands -----------------------------------------------------------

    async def call(
        self, slot: int, commands: Sequence[Command], *, safe: bool, pinned: str | None = None
    ) -> list[Any]:
        """Run ``commands`` as one pipeline on the primary of ``slot``.

        Retries until the op deadline on redirects and when nothing was sent;
        after an ambiguous failure only if ``safe`` (idempotent commands).
        Returns the replies; non-redirect error replies are returned as
        exception objects for the caller to judge.

        ``pinned``: run them only on that node. When the slot turns out to be served
        by another (the map changed, or a redirect), raise ``PrimaryMoved`` instead of
        following it: the caller vetted that node (durable writes: it has a replica)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeouts.op
        by_sha = True
        ask_addr: str | None = None
        backoff = 0.02
        last = "no attempt"
        maybe_executed = False  # an earlier attempt broke after sending
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise unavailable(f"redis: {last}", maybe_executed=maybe_executed)
            attempt = _Attempt()
            try:
                async with asyncio.timeout(remaining):
                    await self.ensure_topology()
                    addr = ask_addr or self._slots[slot]
                    if addr is None:
                        raise NotSent(f"slot {slot} has no primary")
                    if pinned is not None and addr != pinned:
                        raise PrimaryMoved(f"redis: slot {slot} moved from {pinned} to {addr}; not sent")
                    wire = [c.command(by_sha=by_sha) if isinstance(c, ScriptCall) else c for c in commands]
                    if ask_addr is not None:
                        wire.insert(0, ("ASKING",))
                    replies = await self.pool(addr).execute(wire, attempt)
                    if ask_addr is not None:
                        replies = replies[1:]
                        ask_addr = None
            except TimeoutError:
                raise unavailable(
                    f"redis: no answer within {self.timeouts.op}s ({last})",
                    maybe_executed=maybe_executed or attempt.sent,
                ) from None
            except NotSent as exc:
                last = str(exc)
                self.mark_stale()
                await sleep_until(backoff, deadline)
                backoff = min(backoff * 2, 0.2)
                continue
            except Ambiguous as exc:
                self.mark_stale()
                maybe_executed = True
                if not safe:
                    raise BrokerUnavailable(f"redis: {exc} (outcome unknown)") from exc
                last = str(exc)
                await sleep_until(backoff, deadline)
                backoff = min(backoff * 2, 0.2)
                continue
            redirect = next((r for r in replies if isinstance(r, (MovedError, AskError))), None)
            if redirect is not None and pinned is not None:
                if isinstance(redirect, MovedError):
                    self.moved(redirect)
                raise PrimaryMoved(
                    f"redis: {pinned} redirected slot {slot} to {redirect.host}:{redirect.port}"
                )
            if isinstance(redirect, AskError):
                ask_addr = f"{redirect.host}:{redirect.port}"
                last = f"ASK {ask_addr}"
                continue
            if isinstance(redirect, MovedError):
                self.moved(redirect)
                last = f"MOVED {redirect.host}:{redirect.port}"
                continue
            busy = next((r for r in replies if _is_retry_reply(r)), None)
            if busy is not None:
                last = str(busy)
                self.mark_stale()
                await sleep_until(backoff, deadline)
                backoff = min(backoff * 2, 0.2)
                continue
            if by_sha and any(isinstance(r, NoScriptError) for r in replies):
                by_sha = False  # NOSCRIPT: nothing ran; send the source this once
                continue
            oom = next((r for r in replies if isinstance(r, OutOfMemoryError)), None)
            if oom is not None:
                _log_oom(str(oom))
                raise NotExecuted(f"redis is out of memory (maxmemory), writes are refused: {oom}")
            return replies

    async def call_one(self, slot: int, command: Command, *, safe: bool, pinned: str | None = None) -> Any:
        reply = (await self.call(slot, [command], safe=safe, pinned=pinned))[0]
        if isinstance(reply, RedisError):
            raise reply
        return reply

    async def call_many(self, items: Sequence[tuple[int, Command]]) -> list[Any]:
        """Idempotent commands, one per item, on any slots: one pipeline per
        primary, all in parallel; items that come back redirected, refused or
        unsent are redone one by one through ``call`` (with its retries).
        Replies in item order."""
        out: list[Any] = [None] * len(items)
        redo: list[int] = []
        by_addr: dict[str, list[int]] = {}
        try:
            async with asyncio.timeout(self.timeouts.op):
                await self.ensure_topology()
        except (TimeoutError, NotSent):
            pass  # the one-by-one pass below retries within its own bound
        for i, (slot, _) in enumerate(items):
            addr = self._slots[slot]
            if addr is None:
                redo.append(i)
            else:
                by_addr.setdefault(addr, []).append(i)

        async def pipeline(addr: str, idx: list[int]) -> None:
            wire = [
                c.command(by_sha=True) if isinstance(c, ScriptCall) else c for c in (items[i][1] for i in idx)
            ]
            try:
                async with asyncio.timeout(self.timeouts.op):
                    replies = await self.pool(addr).execute(wire)
            except (TimeoutError, NotSent, Ambiguous):
                self.mark_stale()
                redo.extend(idx)
                return
            for i, r in zip(idx, replies, strict=True):
                if isinstance(r, (MovedError, AskError, NoScriptError)) or _is_retry_reply(r):
                    redo.append(i)
                else:
                    out[i] = r

        await asyncio.gather(*(pipeline(a, idx) for a, idx in by_addr.items()))
        if redo:
            replies = await asyncio.gather(
                *(self.call(items[i][0], [items[i][1]], safe=True) for i in redo), return_exceptions=True
            )
            for i, r in zip(redo, replies, strict=True):
                if isinstance(r, BaseException):
                    raise r
                out[i] = r[0]
        return out

    async def ping_all(self) -> bool:
        """Every primary in the slot map answers PING and every slot has one."""
        try:
            async with asyncio.timeout(self.timeouts.op):
                if self.cluster:
                    await self.refresh()
                if any(a is None for a in self._slots):
                    return False
                replies = await asyncio.gather(
                    *(self.pool(a).execute([("PING",)]) for a in self.primaries()), return_exceptions=True
                )
        except (TimeoutError, NotSent, Ambiguous):
            return False
        return all(isinstance(r, list) and r and r[0] in (b"PONG", "PONG", True) for r in replies)

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for p in self._pools.values():
            await p.close()


_oom_logged_at = -1e9


def _log_oom(message: str) -> None:
    """A full Redis still answers PING (BusWatch and /readyz see it up): say so in the log,
    at most every 10 s."""
    global _oom_logged_at
    now = asyncio.get_running_loop().time()
    if now - _oom_logged_at >= 10:
        _oom_logged_at = now
        log.error("Redis refuses writes, out of memory (maxmemory): ops answer `unavailable`: %s", message)


def _is_retry_reply(reply: Any) -> bool:
    # BUSY: another script is running too long; ours did not start.
    return isinstance(reply, _RETRY_REPLIES) or (
        isinstance(reply, ResponseError) and str(reply).startswith("BUSY")
    )


async def sleep_until(delay: float, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(max(0.0, min(delay, deadline - loop.time())))
