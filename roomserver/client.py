"""Python SDK for roomserver (PROTOCOL v1): one WebSocket, requests, events, resume.

    async with RoomClient("http://127.0.0.1:8080", token) as client:
        r1 = client.room("r1")  # a handle: r1's events only, ops without the room argument
        r1.on("barrage", lambda ev: print(ev["data"]["text"]))
        await r1.join()
        await r1.send_barrage("hi")
        async for ev in client.events("gift"):
            ...

What the client does for the app, so apps never see a gap or a duplicate:

- **seq tracking.** For every joined room it keeps the last durable ``seq`` and
  the history ``epoch`` (from the join snapshot, then from each durable event).
  A durable event with ``seq <= last`` is a duplicate and dropped; a jump
  (``seq > last + 1``) means events were missed, so the client sends
  ``room.resume {since: last, epoch}`` itself and drops out-of-order events
  until the replay (which includes them) arrives.
- **reconnect.** After the socket closes for a reason a retry can fix (1001
  server draining, 4008 slow consumer, 1006/network errors, …) it reconnects
  with exponential backoff and jitter and resumes every joined room. Requests
  made meanwhile wait until every room is resumed (or joined again): sent
  earlier, the server would answer them ``not_joined``. A new socket whose
  rooms cannot be restored (``unavailable``, timeout) is dropped and counts
  as a failed attempt. Not after 4003 (kicked) or 4029 (too many
  connections), and not after 4001 (token expired) unless ``token_provider``
  gives a new token. A room the server now refuses (``forbidden``,
  ``not_found``) is dropped with a local ``"error"`` event.
- **history gone.** If a resume answers ``history_gone`` (history trimmed or
  epoch changed) the client joins the room again and emits the local event
  ``"resync"`` whose ``data`` is the new join reply (``{"room": snapshot}``):
  rebuild the room's state from it.

Local events (never sent by the server; ``room`` may be None): ``"resync"``,
``"disconnected" {code, reconnecting}``, ``"reconnected" {}``, and ``"error"``
with the error object of a server reply that could not be matched to a request
(``"re": null``: the server could not parse a frame) or, with ``room`` set, of a
room the server refused to restore after a reconnect (``forbidden``, ``not_found``).

Requests have a per-request timeout. The op methods for ops that change state
and take a ``cid`` (``send_barrage``, ``send_gift``, ``sale_buy``,
``coupon_claim``) always send one: a fresh ``cid`` per call when none is given
(``request()`` sends its params as given). The server answers a known ``cid``
with its first reply and does nothing again. ``unavailable`` — like
``RequestTimeout`` and ``ConnectionLost`` — means the outcome is **unknown**
(during a Redis freeze, sends answered ``unavailable`` were in fact
published): retry with the same cid, which the error carries as ``err.cid``::

    try:
        await client.send_barrage(room, text)
    except RoomError as err:
        if err.code in ("unavailable", "timeout", "disconnected"):
            await client.send_barrage(room, text, cid=err.cid)

``sale_buy`` and ``coupon_claim`` retry by themselves, with the same ``cid``,
after a timeout, a lost connection, ``unavailable`` or ``rate_limited``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import itertools
import logging
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Final, Generic, ParamSpec, TypeVar, overload

import aiohttp
import msgspec
from yarl import URL

from roomserver.client_ops import Ops

__all__ = [
    "ConnectionLost",
    "Event",
    "EventStream",
    "EventsOverflow",
    "RequestTimeout",
    "RoomClient",
    "RoomError",
    "RoomState",
]

log = logging.getLogger(__name__)

Event = dict[str, Any]
"""An event as received: ``{"ev", "room", "ts", "data"}`` plus ``"seq"`` if durable."""

EventCallback = Callable[[Event], Any]
TokenProvider = Callable[[], "str | Awaitable[str]"]

MAX_FRAME_BYTES: Final = 16 * 1024
# Server frames batch events; a resume replay of a full history is one frame.
MAX_INCOMING_FRAME: Final = 64 * 1024 * 1024

# Close codes (PROTOCOL §2).
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_ABNORMAL: Final = 1006
CLOSE_TOO_LARGE: Final = 1009
CLOSE_TOKEN_EXPIRED: Final = 4001
CLOSE_KICKED: Final = 4003
CLOSE_SLOW_CONSUMER: Final = 4008
CLOSE_TOO_MANY_CONNECTIONS: Final = 4029
# A retry cannot fix these (4001 only with a token_provider).
FINAL_CLOSE_CODES: Final = frozenset({CLOSE_KICKED, CLOSE_TOO_MANY_CONNECTIONS})

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class RoomError(Exception):
    """A request failed: ``code`` is a PROTOCOL §2 error code (or a local one:
    ``timeout``, ``disconnected``, ``overflow``). ``cid``: the idempotency key the
    op was sent with, if any; after ``unavailable``, ``timeout`` or
    ``disconnected`` the op may have been done: retry with this ``cid``."""

    def __init__(self, code: str, message: str = "", retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.cid: str | None = None

    @classmethod
    def from_wire(cls, err: Mapping[str, Any]) -> RoomError:
        return cls(str(err.get("code", "internal")), str(err.get("message", "")), err.get("retry_after_ms"))


class RequestTimeout(RoomError):
    """No reply within the request timeout (the op may or may not have happened)."""

    def __init__(self, op: str, timeout: float) -> None:
        super().__init__("timeout", f"no reply to {op} within {timeout:g}s")


class ConnectionLost(RoomError):
    """The socket closed before the reply arrived (the op may or may not have happened)."""

    def __init__(self, message: str = "the connection closed before the reply") -> None:
        super().__init__("disconnected", message)


class EventsOverflow(RoomError):
    """An ``events()`` stream fell more than ``maxsize`` events behind and was cut."""

    def __init__(self, maxsize: int) -> None:
        super().__init__("overflow", f"the event stream fell {maxsize} events behind")


@dataclass(slots=True)
class RoomState:
    """What the client tracks per joined room."""

    room: str
    seq: int
    epoch: str
    # A room.resume for a gap is in flight: out-of-order events are dropped meanwhile.
    resuming: bool = False
    # Highest durable seq seen, delivered or not (a gap left after a resume is retried).
    seen: int = 0


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Any]
    op: str
    room: str | None
    params: dict[str, Any]
    # A re-join after history_gone: emit "resync" with the snapshot when it lands.
    resync: bool = False


@dataclass(slots=True, frozen=True)
class _Sent:
    req_id: int
    op: str
    future: asyncio.Future[Any]


_END: Final = object()


class EventStream:
    """An async iterator over the client's events (optionally filtered by name).

    Bounded: if the consumer falls more than ``maxsize`` events behind, the
    stream is cut and the next ``__anext__`` raises ``EventsOverflow`` (the app
    missed events and must rebuild state, as after a ``resync``). Iteration
    ends when the client is closed for good.
    """

    def __init__(
        self, client: RoomClient, names: frozenset[str], maxsize: int, room: str | None = None
    ) -> None:
        self._client = client
        self._names = names
        self._room = room
        self._maxsize = maxsize
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._overflowed = False
        self._ended = False

    def _offer(self, ev: Event) -> None:
        if self._ended or (self._names and ev.get("ev") not in self._names):
            return
        if self._room is not None and ev.get("room") != self._room:
            return
        if self._queue.qsize() >= self._maxsize:
            self._overflowed = True
            self._end()
            return
        self._queue.put_nowait(ev)

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._queue.put_nowait(_END)
            self._client._streams.discard(self)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # stay ended for later calls
            if self._overflowed:
                raise EventsOverflow(self._maxsize)
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        """Stop receiving events into this stream."""
        self._end()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class RoomClient:
    """A roomserver connection.

    ``url``: the server's base URL (``http://host:port``) or its WebSocket URL
    (``ws://host:port/v1/ws``); a sequence of URLs is tried in turn on reconnect
    (a draining server, 1001, asks clients to reconnect elsewhere).
    ``token``: the app-signed JWT. ``token_provider``: called (sync or async) for
    a fresh token after 4001 or an HTTP 401 on reconnect.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        token: str,
        *,
        reconnect: bool = True,
        token_provider: TokenProvider | None = None,
        request_timeout: float = 10.0,
        reconnect_attempts: int = 10,
        backoff_initial: float = 0.25,
        backoff_max: float = 8.0,
        heartbeat: float | None = 20.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("at least one url is required")
        self.urls = [_ws_url(u) for u in urls]
        self.token = token
        self.reconnect = reconnect
        self.token_provider = token_provider
        self.request_timeout = request_timeout
        self.reconnect_attempts = reconnect_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.heartbeat = heartbeat
        self.rooms: dict[str, RoomState] = {}
        self.close_code: int | None = None
        """Close code of the last socket close (None while the first socket is open)."""
        self.close_reason: str = ""
        self.reconnects = 0
        self._session = session
        self._own_session = session is None
        self._url_index = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._handlers: dict[str, list[EventCallback]] = {}
        self._room_handles: dict[str, Room] = {}
        self._streams: set[EventStream] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._open = asyncio.Event()  # a socket is up and its rooms are restored
        self._done = asyncio.Event()  # closed for good
        self._closing = False
        # Sockets in a row whose rooms could not be restored, and the last reason.
        self._restore_failures = 0
        self._restore_error: RoomError | None = None
        self.ops = Ops(self)
        """One typed method per op (generated: roomserver/client_ops.py)."""

    # -- lifecycle ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.urls[self._url_index]

    @property
    def connected(self) -> bool:
        return self._open.is_set()

    @property
    def closed(self) -> bool:
        """True once the client is closed for good (by ``close()`` or a final close code)."""
        return self._done.is_set()

    async def connect(self) -> None:
        """Open the socket, trying each URL once in turn. Raises
        ``RoomError("unauthorized")`` on HTTP 401 (no other URL is tried: they
        share the app's tokens), ``RoomError("unavailable")`` if none answers."""
        if self._supervisor is not None:
            raise RuntimeError("already connected")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            for i in range(len(self.urls)):
                try:
                    ws = await self._handshake()
                    break
                except RoomError as err:
                    if err.code == "unauthorized" or i == len(self.urls) - 1:
                        raise
                    self._url_index = (self._url_index + 1) % len(self.urls)
        except BaseException:
            await self._close_session()
            raise
        assert ws is not None
        self._ws = ws
        self._open.set()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise(ws), name="roomclient")

    async def close(self) -> None:
        """Close the socket (1000) and stop reconnecting; pending requests fail."""
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._supervisor is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._supervisor), 5.0)
            if not self._supervisor.done():
                self._supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._supervisor
        self._finish()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_session()

    async def wait_closed(self, timeout: float | None = None) -> int | None:
        """Wait until the client is closed for good; returns the last close code."""
        await asyncio.wait_for(self._done.wait(), timeout)
        return self.close_code

    async def __aenter__(self) -> RoomClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _close_session(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def _handshake(self) -> aiohttp.ClientWebSocketResponse:
        assert self._session is not None
        try:
            return await self._session.ws_connect(
                self.url,
                headers={"Authorization": f"Bearer {self.token}"},
                heartbeat=self.heartbeat,
                max_msg_size=MAX_INCOMING_FRAME,
                autoping=True,
                compress=0,
            )
        except aiohttp.WSServerHandshakeError as exc:
            code = "unauthorized" if exc.status == 401 else "unavailable"
            raise RoomError(code, f"HTTP {exc.status} from {self.url}") from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise RoomError("unavailable", f"cannot reach {self.url}: {exc!r}") from None

    async def _supervise(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read the socket; after a close, reconnect and resume while it makes sense."""
        reader: asyncio.Future[tuple[int, str]] | None = None
        restoring = False
        try:
            while True:
                reader = asyncio.ensure_future(self._read(ws))
                if restoring:
                    await self._restore(ws, reader)
                code, reason = await reader
                if self._restore_error is not None and not self._closing:
                    code, reason = CLOSE_NORMAL, f"rooms not restored: {self._restore_error}"
                self._socket_closed(code, reason)
                if not await self._may_reconnect():
                    self._dispatch(
                        _local("disconnected", None, {"code": self.close_code, "reconnecting": False})
                    )
                    return
                self._dispatch(_local("disconnected", None, {"code": self.close_code, "reconnecting": True}))
                new_ws = await self._reconnect()
                if new_ws is None:
                    if not self._closing:  # gave up: say so
                        self._dispatch(
                            _local("disconnected", None, {"code": self.close_code, "reconnecting": False})
                        )
                    return
                ws, restoring = new_ws, True
        except Exception:  # a bug: log it, fail what is pending, end the streams
            log.exception("roomclient supervisor failed")
        finally:
            if reader is not None and not reader.done():
                reader.cancel()
            self._finish()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> tuple[int, str]:
        """Read until the socket closes; returns the close code and reason."""
        while True:
            msg = await ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    self._on_frame(msg.data)
                except Exception:  # a bug here must not take the connection down
                    log.exception("roomclient failed to handle a frame: %.200r", msg.data)
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                # The code from the server's close frame itself: aiohttp's
                # ws.close_code turns into 1006 if our close reply cannot be
                # written because the server already dropped the connection.
                return int(msg.data), msg.extra if isinstance(msg.extra, str) else ""
            elif msg.type in (aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                if msg.type == aiohttp.WSMsgType.ERROR:
                    log.debug("socket error: %r", msg.data)
                code = ws.close_code
                if code is None:  # our own close() interrupts receive() before the reply
                    code = CLOSE_NORMAL if self._closing else CLOSE_ABNORMAL
                return code, ""
            # BINARY: the protocol has none; ignore.

    def _socket_closed(self, code: int, reason: str) -> None:
        self._open.clear()
        self.close_code = code
        self.close_reason = reason
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionLost(f"socket closed ({self.close_code})"))
        self._pending.clear()
        for st in self.rooms.values():
            st.resuming = False

    async def _may_reconnect(self) -> bool:
        if self._closing or not self.reconnect:
            return False
        code = self.close_code
        if code in FINAL_CLOSE_CODES:
            return False
        if code == CLOSE_TOKEN_EXPIRED:
            return await self._refresh_token()
        return True

    async def _refresh_token(self) -> bool:
        if self.token_provider is None:
            return False
        try:
            token = self.token_provider()
            if inspect.isawaitable(token):
                token = await token
        except Exception:
            log.exception("token_provider failed")
            return False
        if not isinstance(token, str) or not token:
            return False
        self.token = token
        return True

    async def _reconnect(self) -> aiohttp.ClientWebSocketResponse | None:
        """A new socket (``None``: give up). Sockets whose rooms could not be
        restored count as failed attempts, so a bus that stays down is not
        hammered and the client gives up after ``reconnect_attempts``."""
        failed = self._restore_failures
        if failed >= self.reconnect_attempts:
            return None
        delay = min(self.backoff_max, self.backoff_initial * 2**failed)
        # After a drain the same server refuses us: start with the next URL.
        if self.close_code == CLOSE_GOING_AWAY:
            self._url_index = (self._url_index + 1) % len(self.urls)
        for attempt in range(failed, self.reconnect_attempts):
            first = attempt == failed and not failed
            await asyncio.sleep(delay * random.uniform(0, 1) if first else delay * random.uniform(0.5, 1.0))
            if self._closing:
                return None
            try:
                ws = await self._handshake()
            except RoomError as err:
                log.debug("reconnect attempt %d failed: %s", attempt + 1, err)
                if err.code == "unauthorized" and not await self._refresh_token():
                    return None
                self._url_index = (self._url_index + 1) % len(self.urls)
                delay = min(self.backoff_max, delay * 2)
                continue
            if self._closing:
                await ws.close()
                return None
            self._ws = ws
            self.reconnects += 1
            return ws
        return None

    async def _restore(self, ws: aiohttp.ClientWebSocketResponse, reader: asyncio.Future[Any]) -> None:
        """Resume (or, after ``history_gone``, re-join) every tracked room on a new
        socket, and only then let app requests through: an op sent before its
        room is a member again would be answered ``not_joined``. If a room cannot
        be restored (bus unavailable, timeout) the socket is closed and the
        reconnect loop tries again with backoff."""
        self._restore_error = None
        rooms = list(self.rooms)
        work = asyncio.ensure_future(asyncio.gather(*(self._resume_room(r, ws) for r in rooms)))
        try:
            await asyncio.wait({work, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():  # the socket closed (or we were cancelled): start over
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
        if work.cancelled() or reader.done():
            return
        errors = [err for err in work.result() if err is not None]
        if errors:
            self._restore_failures += 1
            self._restore_error = errors[0]
            log.warning("could not restore %d room(s) after reconnecting: %s", len(errors), errors[0])
            await ws.close(code=CLOSE_NORMAL, message=b"rooms not restored")
            return
        self._restore_failures = 0
        self._open.set()
        self._dispatch(_local("reconnected", None))

    def _finish(self) -> None:
        if self._done.is_set():
            return
        self._open.clear()
        self._done.set()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(ConnectionLost("the client is closed"))
        self._pending.clear()
        for stream in list(self._streams):
            stream._end()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("roomclient background task failed: %r", task.exception())

    # -- incoming ------------------------------------------------------------------

    def _on_frame(self, text: str) -> None:
        try:
            messages = _decode(text)
        except msgspec.DecodeError:
            log.warning("undecodable frame from the server: %.200r", text)
            return
        if not isinstance(messages, list):
            messages = [messages]
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            if "re" in msg:
                self._on_reply(msg)
            elif "ev" in msg:
                self._on_event(msg)

    def _on_reply(self, msg: dict[str, Any]) -> None:
        req_id = msg.get("re")
        pending = self._pending.pop(req_id, None) if isinstance(req_id, int) else None
        if pending is None:
            if not msg.get("ok", False):
                self._dispatch(_local("error", None, msg.get("error")))
            return
        if msg.get("ok"):
            data = msg.get("data") or {}
            # Room state changes here, in the reader, before the events that follow
            # the reply in the same frame are looked at.
            self._apply_reply(pending, data)
            if not pending.future.done():
                pending.future.set_result(data)
        elif not pending.future.done():
            pending.future.set_exception(RoomError.from_wire(msg.get("error") or {}))

    def _apply_reply(self, pending: _Pending, data: dict[str, Any]) -> None:
        room = pending.room
        if room is None:
            return
        if pending.op == "room.join":
            snap = data.get("room") or {}
            seq = int(snap.get("seq") or 0)
            self.rooms[room] = RoomState(room, seq, str(snap.get("epoch") or ""), seen=seq)
            if pending.resync:
                self._dispatch(_local("resync", room, data))
        elif pending.op == "room.resume":
            since = int(pending.params.get("since", 0))
            epoch = str(pending.params.get("epoch", ""))
            st = self.rooms.get(room)
            if st is None:
                self.rooms[room] = RoomState(room, since, epoch, seen=since)
            else:
                st.seq, st.epoch, st.resuming = since, epoch, False
        elif pending.op == "room.leave":
            self.rooms.pop(room, None)

    def _on_event(self, ev: Event) -> None:
        seq = ev.get("seq")
        room = ev.get("room")
        st = self.rooms.get(room) if isinstance(room, str) else None
        if st is not None and isinstance(seq, int):
            if seq <= st.seq:
                return  # duplicate
            st.seen = max(st.seen, seq)
            if seq > st.seq + 1:
                # Missed events: resume fills them in (this one included).
                # (While a new socket is restored, _restore resumes the room.)
                if not st.resuming and self._ws is not None and self._open.is_set():
                    st.resuming = True
                    self._spawn(self._resume_room(st.room, self._ws))
                return
            st.seq = seq
        self._dispatch(ev)

    def _dispatch(self, ev: Event) -> None:
        name = ev.get("ev", "")
        for fn in (*self._handlers.get(name, ()), *self._handlers.get("*", ())):
            try:
                result = fn(ev)
                if inspect.isawaitable(result):
                    self._spawn(result)
            except Exception:
                log.exception("event callback %r failed on %s", fn, name)
        for stream in list(self._streams):
            stream._offer(ev)

    # -- resume ---------------------------------------------------------------------

    async def _resume_room(self, room: str, ws: aiohttp.ClientWebSocketResponse) -> RoomError | None:
        """Resume ``room`` on ``ws`` from the tracked seq; re-join on history_gone.
        Returns the error that left the room not restored (None: restored, or no
        longer tracked). A room the server refuses (``forbidden``, ``not_found``)
        is dropped and reported as a local ``"error"`` event."""
        for _ in range(3):
            st = self.rooms.get(room)
            if st is None or ws is not self._ws or ws.closed:
                return None
            st.resuming = True
            try:
                try:
                    await self._call(ws, "room.resume", room, _resume_params(st))
                except RoomError as err:
                    if err.code != "history_gone":
                        raise
                    await self._call(ws, "room.join", room, {}, resync=True)
                    return None
            except RoomError as err:
                if st is self.rooms.get(room):
                    st.resuming = False
                if err.code in ("forbidden", "not_found"):
                    self.rooms.pop(room, None)
                    self._dispatch(_local("error", room, {"code": err.code, "message": err.message}))
                    return None
                if not isinstance(err, ConnectionLost):  # after a close the next socket resumes
                    log.warning("resume of %s failed: %s", room, err)
                return err
            st = self.rooms.get(room)
            # A gap seen during the resume but not filled by it: go again.
            if st is None or st.seen <= st.seq:
                return None
        return None

    # -- outgoing --------------------------------------------------------------------

    def room(self, room_id: str) -> Room:
        """A handle bound to ``room_id`` (``Room``, below): its listeners get only that
        room's events, its op methods take no room. Does not join the room."""

        if not isinstance(room_id, str) or not room_id:
            raise ValueError("room id must be a non-empty string")
        handle = self._room_handles.get(room_id)
        if handle is None:
            handle = self._room_handles[room_id] = Room(self, room_id)
        return handle

    def on(self, ev: str, fn: EventCallback) -> Callable[[], None]:
        """Call ``fn(event)`` for each event named ``ev`` (``"*"``: every event).
        ``fn`` may be a coroutine function (run as a task). Returns an unsubscriber."""
        self._handlers.setdefault(ev, []).append(fn)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._handlers.get(ev, []).remove(fn)

        return off

    def events(self, *names: str, maxsize: int = 10_000, room: str | None = None) -> EventStream:
        """An async iterator over events (all, or only those named; only ``room``'s if
        given); see ``EventStream``."""
        stream = EventStream(self, frozenset(names), maxsize, room)
        if self._done.is_set():
            stream._end()
        else:
            self._streams.add(stream)
        return stream

    async def request(
        self, op: str, room: str | None = None, *, timeout: float | None = None, **params: Any
    ) -> dict[str, Any]:
        """Send ``op`` and return the reply's ``data``. Raises ``RoomError`` on an
        error reply, ``RequestTimeout``, or ``ConnectionLost``. While the client is
        reconnecting, the request waits for the new socket (within its timeout).
        ``params`` go out as given (the op methods add a ``cid``; a raw request
        without one is how an app or a test sends an op without idempotency)."""
        timeout = self.request_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            ws = await self._wait_open(op, timeout)
            return await self._call(ws, op, room, params, timeout=max(0.0, deadline - loop.time()))
        except RoomError as err:
            err.cid = params.get("cid")
            raise

    async def send(self, op: str, room: str | None = None, **params: Any) -> None:
        """Fire and forget: send ``op`` without an id (the server sends no reply)."""
        ws = await self._wait_open(op, self.request_timeout)
        text = _request_text(None, op, room, params)
        if len(text.encode()) > MAX_FRAME_BYTES:
            raise RoomError("too_large", f"{op} is over {MAX_FRAME_BYTES} bytes; the server would close")
        await _send(ws, text)

    async def send_raw(self, data: str | bytes) -> None:
        """Send a frame as is (text, or binary for bytes); for tests and debugging."""
        ws = await self._wait_open("raw", self.request_timeout)
        await _send(ws, data)

    async def _wait_open(self, op: str, timeout: float) -> aiohttp.ClientWebSocketResponse:
        if self._done.is_set() or self._supervisor is None:
            raise ConnectionLost("the client is not connected")
        if not self._open.is_set():
            done = asyncio.ensure_future(self._done.wait())
            opened = asyncio.ensure_future(self._open.wait())
            try:
                await asyncio.wait({done, opened}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                done.cancel()
                opened.cancel()
            if not self._open.is_set():
                if self._done.is_set():
                    raise ConnectionLost("the client is closed")
                raise RequestTimeout(op, timeout)
        assert self._ws is not None
        return self._ws

    async def _call(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        op: str,
        room: str | None,
        params: dict[str, Any],
        *,
        timeout: float | None = None,
        resync: bool = False,
    ) -> dict[str, Any]:
        sent = await self._send_request(ws, op, room, params, resync=resync)
        return await self._await_reply(sent, self.request_timeout if timeout is None else timeout)

    async def _send_request(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        op: str,
        room: str | None,
        params: dict[str, Any],
        *,
        resync: bool = False,
    ) -> _Sent:
        req_id = next(self._ids)
        text = _request_text(req_id, op, room, params)
        if len(text.encode()) > MAX_FRAME_BYTES:
            raise RoomError("too_large", f"{op} is over {MAX_FRAME_BYTES} bytes; the server would close")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = _Pending(future, op, room, params, resync)
        try:
            await _send(ws, text)
        except ConnectionLost:
            self._pending.pop(req_id, None)
            raise
        return _Sent(req_id, op, future)

    async def _await_reply(self, sent: _Sent, timeout: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(asyncio.shield(sent.future), timeout)
        except TimeoutError:
            raise RequestTimeout(sent.op, timeout) from None
        finally:
            self._pending.pop(sent.req_id, None)
            if not sent.future.done():
                sent.future.cancel()

    async def _idempotent(
        self, op: str, room: str, params: dict[str, Any], *, attempts: int = 5
    ) -> dict[str, Any]:
        """Send a ``cid`` op, retrying with the same ``cid`` where a retry may succeed."""
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                return await self.request(op, room, **params)
            except (RequestTimeout, ConnectionLost):
                if last or self._done.is_set():
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
            except RoomError as err:
                if last or err.code not in ("unavailable", "rate_limited"):
                    raise
                await asyncio.sleep(min(5.0, (err.retry_after_ms or 100 * 2**attempt) / 1000))
        raise AssertionError("unreachable")

    # -- ops (PROTOCOL §3); each returns the reply's data ----------------------------

    async def ping(self) -> dict[str, Any]:
        return await self.request("ping")

    async def join(self, room: str, ref: str | None = None) -> dict[str, Any]:
        """Join ``room``; returns ``{"room": snapshot}`` and starts tracking its seq.
        ``ref``: the share link's token that brought this viewer (``share_link``)."""
        return await self.request("room.join", room, **_given(ref=ref))

    async def leave(self, room: str) -> dict[str, Any]:
        return await self.request("room.leave", room)

    async def resume(self, room: str, since: int, epoch: str) -> dict[str, Any]:
        """Replay durable events after ``since``; returns ``{"replayed": n}``.
        The client resumes by itself after gaps and reconnects; this is for apps
        that restore a room from their own storage."""
        return await self.request("room.resume", room, since=since, epoch=epoch)

    async def start(self, room: str, title: str | None = None) -> dict[str, Any]:
        return await self.request("room.start", room, **_given(title=title))

    async def end(self, room: str) -> dict[str, Any]:
        return await self.request("room.end", room)

    async def send_barrage(self, room: str, text: str, cid: str | None = None) -> dict[str, Any]:
        """Returns ``{"seq": n}`` or ``{"seq": None, "shed": True}`` over the room's cap.
        ``cid``: generated if omitted; pass ``err.cid`` to retry after ``unavailable``."""
        return await self.request("barrage.send", room, text=text, cid=cid or new_cid())

    async def send_like(self, room: str, count: int = 1) -> dict[str, Any]:
        return await self.request("like.send", room, count=count)

    async def send_gift(self, room: str, gift: str, count: int = 1, cid: str | None = None) -> dict[str, Any]:
        return await self.request("gift.send", room, gift=gift, count=count, cid=cid or new_cid())

    async def pin_product(self, room: str, product: Mapping[str, Any]) -> dict[str, Any]:
        """``product``: ``{id, title, price_cents, image?}``."""
        return await self.request("product.pin", room, product=dict(product))

    async def unpin_product(self, room: str, product_id: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"product": {"id": product_id}} if product_id is not None else {}
        return await self.request("product.unpin", room, **params)

    async def track(self, room: str, action: str, product: str | None = None) -> dict[str, Any]:
        return await self.request("track", room, **_given(action=action, product=product))

    async def share_link(self, room: str) -> dict[str, Any]:
        """A signed share link of ``room`` naming this user: ``{ref, url, expires_at}``."""
        return await self.request("share.link", room)

    async def mute(self, room: str, user: str, duration_s: int | None = None) -> dict[str, Any]:
        return await self.request("mod.mute", room, **_given(user=user, duration_s=duration_s))

    async def unmute(self, room: str, user: str) -> dict[str, Any]:
        return await self.request("mod.unmute", room, user=user)

    async def kick(self, room: str, user: str, duration_s: int | None = None) -> dict[str, Any]:
        return await self.request("mod.kick", room, **_given(user=user, duration_s=duration_s))

    async def slow(self, room: str, interval_s: int) -> dict[str, Any]:
        return await self.request("mod.slow", room, interval_s=interval_s)

    async def words(self, room: str, add: Iterable[str] = (), remove: Iterable[str] = ()) -> dict[str, Any]:
        """Add/remove the room's banned words; returns ``{"count": n}``."""
        return await self.request("mod.words", room, add=list(add), remove=list(remove))

    async def announce(self, room: str, text: str, countdown_to: int | None = None) -> dict[str, Any]:
        return await self.request("room.announce", room, **_given(text=text, countdown_to=countdown_to))

    async def lottery_create(
        self,
        room: str,
        *,
        prize: str,
        winners: int,
        duration_ms: int,
        keyword: str | None = None,
        min_watch_s: int | None = None,
        min_tier: int | None = None,
    ) -> dict[str, Any]:
        return await self.request(
            "lottery.create",
            room,
            **_given(
                prize=prize,
                winners=winners,
                duration_ms=duration_ms,
                keyword=keyword,
                min_watch_s=min_watch_s,
                min_tier=min_tier,
            ),
        )

    async def lottery_enter(self, room: str, lottery: str) -> dict[str, Any]:
        return await self.request("lottery.enter", room, lottery=lottery)

    async def lottery_draw(self, room: str, lottery: str) -> dict[str, Any]:
        return await self.request("lottery.draw", room, lottery=lottery)

    async def sale_create(
        self,
        room: str,
        *,
        product: Any,
        price_cents: int,
        stock: int,
        limit_per_user: int,
        starts_at: int | None = None,
        duration_ms: int | None = None,
    ) -> dict[str, Any]:
        return await self.request(
            "sale.create",
            room,
            **_given(
                product=product,
                price_cents=price_cents,
                stock=stock,
                limit_per_user=limit_per_user,
                starts_at=starts_at,
                duration_ms=duration_ms,
            ),
        )

    async def sale_buy(self, room: str, sale: str, qty: int = 1, cid: str | None = None) -> dict[str, Any]:
        """Buy; ``cid`` (generated if omitted) is reused across this call's own
        retries, so a retry never makes a second order."""
        cid = cid or new_cid()
        return await self._idempotent("sale.buy", room, {"sale": sale, "qty": qty, "cid": cid})

    async def coupon_issue(
        self,
        room: str,
        *,
        title: str,
        discount_cents: int,
        min_spend_cents: int,
        quantity: int,
        per_user: int,
    ) -> dict[str, Any]:
        return await self.request(
            "coupon.issue",
            room,
            title=title,
            discount_cents=discount_cents,
            min_spend_cents=min_spend_cents,
            quantity=quantity,
            per_user=per_user,
        )

    async def coupon_claim(self, room: str, coupon: str, cid: str | None = None) -> dict[str, Any]:
        """Claim; ``cid`` (generated if omitted) is reused across this call's own
        retries, so a retry never claims twice."""
        cid = cid or new_cid()
        return await self._idempotent("coupon.claim", room, {"coupon": coupon, "cid": cid})

    async def redpacket_send(
        self, room: str, *, total_cents: int, count: int, message: str | None = None
    ) -> dict[str, Any]:
        return await self.request(
            "redpacket.send", room, **_given(total_cents=total_cents, count=count, message=message)
        )

    async def redpacket_grab(self, room: str, packet: str) -> dict[str, Any]:
        return await self.request("redpacket.grab", room, packet=packet)

    async def poll_create(
        self, room: str, *, question: str, options: Sequence[str], duration_ms: int
    ) -> dict[str, Any]:
        return await self.request(
            "poll.create", room, question=question, options=list(options), duration_ms=duration_ms
        )

    async def poll_vote(self, room: str, poll: str, option: int) -> dict[str, Any]:
        return await self.request("poll.vote", room, poll=poll, option=option)

    async def cohost_request(self, room: str) -> dict[str, Any]:
        return await self.request("cohost.request", room)

    async def cohost_invite(self, room: str, user: str) -> dict[str, Any]:
        return await self.request("cohost.invite", room, user=user)

    async def cohost_accept(
        self, room: str, *, user: str | None = None, request: str | None = None
    ) -> dict[str, Any]:
        """The host accepts a ``request`` (or a ``user``'s); an invited viewer passes neither."""
        return await self.request("cohost.accept", room, **_given(user=user, request=request))

    async def cohost_reject(
        self, room: str, *, user: str | None = None, request: str | None = None
    ) -> dict[str, Any]:
        return await self.request("cohost.reject", room, **_given(user=user, request=request))

    async def cohost_end(self, room: str, user: str) -> dict[str, Any]:
        return await self.request("cohost.end", room, user=user)

    async def pk_invite(self, room: str, target_room: str, duration_s: int = 300) -> dict[str, Any]:
        return await self.request("pk.invite", room, target_room=target_room, duration_s=duration_s)

    async def pk_accept(self, room: str, pk: str) -> dict[str, Any]:
        return await self.request("pk.accept", room, pk=pk)

    async def pk_reject(self, room: str, pk: str) -> dict[str, Any]:
        return await self.request("pk.reject", room, pk=pk)

    async def pk_end(self, room: str, pk: str) -> dict[str, Any]:
        return await self.request("pk.end", room, pk=pk)


async def _send(ws: aiohttp.ClientWebSocketResponse, data: str | bytes) -> None:
    try:
        if isinstance(data, bytes):
            await ws.send_bytes(data)
        else:
            await ws.send_str(data)
    except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
        raise ConnectionLost(f"send failed: {exc!r}") from None


def new_cid() -> str:
    """A fresh idempotency key for ops that take ``cid``."""
    return "c-" + secrets.token_hex(8)


def _resume_params(st: RoomState) -> dict[str, Any]:
    return {"since": st.seq, "epoch": st.epoch}


def _given(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _request_text(req_id: int | None, op: str, room: str | None, params: Mapping[str, Any]) -> str:
    msg: dict[str, Any] = {"op": op}
    if req_id is not None:
        msg["id"] = req_id
    if room is not None:
        msg["room"] = room
    for key, value in params.items():
        if key in msg:
            raise ValueError(f"param {key!r} clashes with the request envelope")
        msg[key] = value
    return _encode(msg).decode()


def _local(name: str, room: str | None, data: Mapping[str, Any] | None = None) -> Event:
    """A client-side event (marked ``"local": True``)."""
    return {"ev": name, "room": room, "ts": _now_ms(), "data": dict(data or {}), "local": True}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _ws_url(url: str) -> str:
    """Accept a base URL (``http://host:port``) or the WebSocket URL itself."""
    u = URL(url)
    if u.path in ("", "/"):
        u = u.with_path("/v1/ws")
    return str(u)


# -- per-room handles ------------------------------------------------------------
# A handle bound to one room of a ``RoomClient``: ``client.room("r1")``.
#
#     r1 = client.room("r1")
#     r1.on("barrage", lambda ev: print(ev["data"]["text"]))  # only r1's barrage
#     await r1.join()
#     await r1.send_barrage("hi")
#
# Listeners added through the handle get only events whose ``room`` is the handle's (server
# events and the client's local ones: ``resync``, ``error``), so an app with several rooms on
# one connection no longer filters by room in every callback. The op methods are the client's
# with the room filled in; getting a handle does not join the room.

P = ParamSpec("P")
R = TypeVar("R")


class _Bound(Generic[P, R]):
    """A RoomClient method ``(room, *args)`` seen on a Room as ``(*args)``.

    A descriptor rather than forty hand-written wrappers: the signature is the client
    method's (mypy checks calls through it), and a new op needs one line here."""

    def __init__(self, method: Callable[Concatenate[RoomClient, str, P], R]) -> None:
        self._name = method.__name__

    @overload
    def __get__(self, obj: None, owner: type[Room]) -> _Bound[P, R]: ...
    @overload
    def __get__(self, obj: Room, owner: type[Room]) -> Callable[P, R]: ...
    def __get__(self, obj: Room | None, owner: type[Room]) -> _Bound[P, R] | Callable[P, R]:
        if obj is None:
            return self
        # Looked up on the client instance, so a subclass's override is the one bound.
        method: Callable[Concatenate[str, P], R] = getattr(obj.client, self._name)
        return functools.partial(method, obj.id)


class Room:
    """One room seen through a RoomClient; see the module docstring."""

    def __init__(self, client: RoomClient, room_id: str) -> None:
        self.client = client
        self.id = room_id

    def __repr__(self) -> str:
        return f"Room({self.id!r})"

    @property
    def state(self) -> RoomState | None:
        """The client's tracking state of this room (None while not joined)."""
        return self.client.rooms.get(self.id)

    def on(self, ev: str, fn: EventCallback) -> Callable[[], None]:
        """Call ``fn(event)`` for each of this room's events named ``ev`` (``"*"``: all of
        them). ``fn`` may be a coroutine function. Returns an unsubscriber."""

        def only_this_room(event: Event) -> Any:
            if event.get("room") == self.id:
                return fn(event)
            return None

        return self.client.on(ev, only_this_room)

    def events(self, *names: str, maxsize: int = 10_000) -> EventStream:
        """An async iterator over this room's events (all, or only those named)."""
        return self.client.events(*names, maxsize=maxsize, room=self.id)

    async def request(self, op: str, *, timeout: float | None = None, **params: Any) -> dict[str, Any]:
        return await self.client.request(op, self.id, timeout=timeout, **params)

    async def send(self, op: str, **params: Any) -> None:
        """Fire and forget (no reply), like ``client.send(op, room, ...)``."""
        await self.client.send(op, self.id, **params)

    join = _Bound(RoomClient.join)
    leave = _Bound(RoomClient.leave)
    resume = _Bound(RoomClient.resume)
    start = _Bound(RoomClient.start)
    end = _Bound(RoomClient.end)
    send_barrage = _Bound(RoomClient.send_barrage)
    send_like = _Bound(RoomClient.send_like)
    send_gift = _Bound(RoomClient.send_gift)
    pin_product = _Bound(RoomClient.pin_product)
    unpin_product = _Bound(RoomClient.unpin_product)
    track = _Bound(RoomClient.track)
    share_link = _Bound(RoomClient.share_link)
    mute = _Bound(RoomClient.mute)
    unmute = _Bound(RoomClient.unmute)
    kick = _Bound(RoomClient.kick)
    slow = _Bound(RoomClient.slow)
    words = _Bound(RoomClient.words)
    announce = _Bound(RoomClient.announce)
    lottery_create = _Bound(RoomClient.lottery_create)
    lottery_enter = _Bound(RoomClient.lottery_enter)
    lottery_draw = _Bound(RoomClient.lottery_draw)
    sale_create = _Bound(RoomClient.sale_create)
    sale_buy = _Bound(RoomClient.sale_buy)
    coupon_issue = _Bound(RoomClient.coupon_issue)
    coupon_claim = _Bound(RoomClient.coupon_claim)
    redpacket_send = _Bound(RoomClient.redpacket_send)
    redpacket_grab = _Bound(RoomClient.redpacket_grab)
    poll_create = _Bound(RoomClient.poll_create)
    poll_vote = _Bound(RoomClient.poll_vote)
    cohost_request = _Bound(RoomClient.cohost_request)
    cohost_invite = _Bound(RoomClient.cohost_invite)
    cohost_accept = _Bound(RoomClient.cohost_accept)
    cohost_reject = _Bound(RoomClient.cohost_reject)
    cohost_end = _Bound(RoomClient.cohost_end)
    pk_invite = _Bound(RoomClient.pk_invite)
    pk_accept = _Bound(RoomClient.pk_accept)
    pk_reject = _Bound(RoomClient.pk_reject)
    pk_end = _Bound(RoomClient.pk_end)
