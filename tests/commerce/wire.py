"""A lean protocol client for crowds of simulated buyers.

The SDK (``roomserver.client.RoomClient``) tracks seqs, resumes and reconnects:
right for one app, too heavy for 5,000 buyers in one test process. ``WireClient``
speaks just enough of PROTOCOL §2 for buying: one WebSocket (the load tester's
hand-rolled client), requests matched to replies by id, events kept only when
asked for. ``buy_settled`` retries a buy
with the same ``cid`` until the answer is definitive, as the SDK's ``sale_buy``
does (and as an app does after the SDK gives up).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec

from loadtest.client import WsClient

# Answers after which a retry with the same cid may succeed (PROTOCOL §2), plus
# the local ones: no reply in time, socket lost.
RETRYABLE = frozenset({"unavailable", "rate_limited", "timeout", "disconnected"})


@dataclass
class Attempt:
    """One ``sale.buy`` request and its answer."""

    cid: str
    sent: float  # monotonic
    took: float
    code: str  # "ok" or the error code
    order: dict[str, Any] | None = None
    retry_after_ms: int | None = None
    message: str = ""


class WireClient(WsClient):
    """One socket on the project's hand-rolled WebSocket client (``loadtest``):
    a handshake costs a fraction of aiohttp's, which decides how fast thousands
    of buyers connect on a shared 2-core machine."""

    def __init__(self, host: str, port: int, path: str, keep: frozenset[str]) -> None:
        super().__init__(host, port, path)
        self.keep = keep
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # Thousands of sockets each get every room event: skip frames that hold
        # neither a reply nor a kept event without decoding them.
        self._markers = (b'"re":', *(f'"ev":"{name}"'.encode() for name in keep))

    @classmethod
    async def connect(cls, base_url: str, token: str, keep: frozenset[str] = frozenset()) -> WireClient:
        url = urlsplit(base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        path = "/v1/ws?" + urlencode({"token": token})
        loop = asyncio.get_running_loop()
        _, client = await loop.create_connection(lambda: cls(host, port, path, keep), host, port)
        await client.opened
        return client

    def on_text(self, payload: bytes) -> None:
        if not any(m in payload for m in self._markers):
            return
        for m in msgspec.json.decode(payload):
            if "re" in m:
                fut = self._pending.pop(m["re"], None)
                if fut is not None and not fut.done():
                    fut.set_result(m)
            elif m.get("ev") in self.keep:
                self.events.append(m)

    def on_closed(self) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_result({"ok": False, "error": {"code": "disconnected", "message": "socket closed"}})
        self._pending.clear()

    async def request(
        self, op: str, room: str | None, *, timeout: float = 10.0, **params: Any
    ) -> dict[str, Any]:
        """The reply message (``{"re", "ok", "data"|"error"}``); a missing reply is
        a local ``timeout`` error, a lost socket a local ``disconnected`` one."""
        if self.closed.done():
            return {"ok": False, "error": {"code": "disconnected", "message": "socket closed"}}
        req_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        msg: dict[str, Any] = {"id": req_id, "op": op, **params}
        if room is not None:
            msg["room"] = room
        self.send_json(msg)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return {"ok": False, "error": {"code": "timeout", "message": f"no reply to {op} in {timeout}s"}}
        finally:
            self._pending.pop(req_id, None)

    async def call(self, op: str, room: str | None, *, deadline: float, **params: Any) -> dict[str, Any]:
        """``request`` retried while the answer is retryable and time is left."""
        while True:
            reply = await self.request(op, room, **params)
            if reply["ok"] or reply["error"]["code"] not in RETRYABLE or time.monotonic() > deadline:
                return reply
            await asyncio.sleep(_pause(reply))

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), 2.0)


async def connect_crowd(
    who: list[tuple[str, str]],
    room: str,
    *,
    deadline: float,
    keep: frozenset[str] = frozenset(),
    parallel: int = 100,
) -> list[WireClient]:
    """One joined ``WireClient`` per ``(base url, token)``, ``parallel`` handshakes at a time."""
    sem = asyncio.Semaphore(parallel)

    async def one(url: str, token: str) -> WireClient:
        async with sem:
            client = await WireClient.connect(url, token, keep)
            reply = await client.call("room.join", room, deadline=deadline)
            if not reply["ok"]:
                await client.aclose()
                raise AssertionError(f"join failed: {reply}")
            return client

    results = await asyncio.gather(*(one(url, token) for url, token in who), return_exceptions=True)
    clients = [r for r in results if isinstance(r, WireClient)]
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        await asyncio.gather(*(c.aclose() for c in clients))
        raise failure
    return clients


def _pause(reply: dict[str, Any]) -> float:
    wait = reply.get("error", {}).get("retry_after_ms") or 100
    return min(wait, 1000) / 1000


@dataclass
class BuyLog:
    """Every attempt of one buyer, for the assertions."""

    user: str
    attempts: list[Attempt] = field(default_factory=list)

    def orders(self) -> dict[str, dict[str, Any]]:
        """cid -> the order acknowledged for it (the first acknowledgement)."""
        out: dict[str, dict[str, Any]] = {}
        for a in self.attempts:
            if a.order is not None:
                out.setdefault(a.cid, a.order)
        return out


async def buy_once(client: WireClient, log: BuyLog, room: str, sale: str, qty: int, cid: str) -> Attempt:
    t0 = time.monotonic()
    reply = await client.request("sale.buy", room, sale=sale, qty=qty, cid=cid)
    took = time.monotonic() - t0
    if reply["ok"]:
        attempt = Attempt(cid, t0, took, "ok", order=reply["data"]["order"])
    else:
        err = reply["error"]
        attempt = Attempt(cid, t0, took, err["code"], None, err.get("retry_after_ms"), err.get("message", ""))
    log.attempts.append(attempt)
    return attempt


async def buy_settled(
    client: WireClient, log: BuyLog, room: str, sale: str, qty: int, cid: str, *, deadline: float
) -> Attempt:
    """Buy, retrying with the same cid while the answer is retryable (until ``deadline``)."""
    while True:
        attempt = await buy_once(client, log, room, sale, qty, cid)
        if attempt.code not in RETRYABLE or time.monotonic() > deadline:
            return attempt
        await asyncio.sleep(min(attempt.retry_after_ms or 100, 1000) / 1000)
