"""Through a running server: the delivery log over REST (paged, per app, bad
input), room.members batches, and the moderation callback before a barrage."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from roomserver.client import RoomError
from roomserver.core.webhooks import SIGNATURE_V2_HEADER, Endpoint, verify
from roomserver.protocol import now_ms
from tests.polling import until
from tests.server_fixtures import APP, SECRET, Server, closed_after, start_server, token
from tests.webhooks.receiver import Receiver

MakeServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def make_server() -> AsyncIterator[MakeServer]:
    async with closed_after(start_server) as make:
        yield make


async def create_scheduled(server: Server, room: str) -> None:
    status, body = await server.admin("POST", "/v1/rooms", {"id": room, "scheduled_at": now_ms() + 3_600_000})
    assert status == 201, body


async def test_delivery_log_is_paged_filtered_and_checks_its_input(make_server: MakeServer) -> None:
    ok, refusing = Receiver(SECRET), Receiver(SECRET)
    await ok.up()
    await refusing.up()
    refusing.script.extend([(410, {})] * 5)
    server = await make_server(
        webhooks=[Endpoint(APP, "ok", ok.url), Endpoint(APP, "refusing", refusing.url)], webhook_poll_s=0.2
    )
    rooms = [f"log-{i}" for i in range(5)]
    for room in rooms:
        await create_scheduled(server, room)

    async def page(query: str = "", tok: str | None = None) -> tuple[int, Any]:
        return await server.rest("GET", "/v1/webhooks/deliveries" + query, tok or token("admin-1", "admin"))

    async def logged() -> int:
        return len((await page("?limit=1000"))[1]["deliveries"])

    end = time.monotonic() + 20
    while await logged() < 10:
        assert time.monotonic() < end, "the delivery log never had both endpoints' outcomes"
        await asyncio.sleep(0.05)
    seen: list[dict[str, Any]] = []
    query = "?limit=3"
    for _ in range(10):
        status, body = await page(query)
        assert status == 200, body
        seen += body["deliveries"]
        if body["next"] is None:
            break
        query = f"?limit=3&after={body['next']}"
    assert len(seen) == 10 and len({d["cursor"] for d in seen}) == 10
    assert [d["cursor"] for d in seen] == sorted(d["cursor"] for d in seen)  # oldest first (same-ms safe)
    delivered = [d for d in seen if d["status"] == "delivered"]
    assert {d["endpoint"] for d in delivered} == {"ok"} and [d["room"] for d in delivered] == rooms
    _, failed = await page("?status=failed")
    assert [(d["endpoint"], d["code"], d["attempts"]) for d in failed["deliveries"]] == [
        ("refusing", 410, 1)
    ] * 5
    _, only_ok = await page("?endpoint=ok&limit=2")
    assert [d["endpoint"] for d in only_ok["deliveries"]] == ["ok", "ok"] and only_ok["next"]
    # Bad input: a clear error, nothing else.
    for query, status, fragment in [
        ("?status=lost", 400, "status must be one of"),
        ("?after=yesterday", 400, "after must be"),
        ("?limit=0", 400, "limit"),
        ("?endpoint=bad%20id", 400, "endpoint must be"),
        ("?endpoint=nope", 404, "no webhook endpoint 'nope'"),
        ("?endpoint=", 400, "must not be empty"),
    ]:
        code, body = await page(query)
        assert code == status and fragment in body["error"]["message"], (query, body)
    code, body = await page("", token("viewer-1", "viewer"))
    assert code == 403
    # The route is in the OpenAPI document (from the route table).
    _, spec = await server.rest("GET", "/v1/openapi.json")
    assert "/v1/webhooks/deliveries" in spec["paths"]
    await ok.down()
    await refusing.down()


async def test_join_and_leave_are_batched_into_room_members(make_server: MakeServer) -> None:
    rx = await Receiver(SECRET).up()
    server = await make_server(
        webhooks=[Endpoint(APP, "members", rx.url, ("room.members",))],
        members_batch_s=0.3,
        webhook_poll_s=0.2,
    )
    viewers = [await server.client(f"v{i}") for i in range(3)]
    for v in viewers:
        await v.join("big")
    await viewers[0].leave("big")
    await viewers[1].close()  # a socket that goes away counts as a leave
    await until(
        lambda: {u for p in rx.named("room.members") for u in p["data"]["left"]} == {"v0", "v1"}, 20, "leaves"
    )
    batches = rx.named("room.members")
    joined = [u for p in batches for u in p["data"]["joined"]]
    assert sorted(joined) == ["v0", "v1", "v2"]
    assert sum(p["data"]["joined_count"] for p in batches) == 3
    assert all(p["room"] == "big" and p["data"]["truncated"] is False for p in batches)
    assert len(batches) <= 3  # batched, not one per join or leave
    await rx.down()


class Moderator:
    """The app's moderation endpoint: decides by the text; checks the signature."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._server: TestServer | None = None

    async def _check(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            verify(SECRET, body, request.headers.get(SIGNATURE_V2_HEADER, ""), now_s=time.time())
        except ValueError:
            self.bad_signatures += 1
        msg = json.loads(body)
        self.calls.append(msg)
        text = msg["text"]
        if text.startswith("slow"):
            await asyncio.sleep(3)
        if text.startswith("bad"):
            return web.json_response({"action": "block"})
        if text.startswith("swap"):
            return web.json_response({"action": "replace", "text": "***"})
        if text.startswith("garbage"):
            return web.json_response({"action": "replace", "text": ""})
        return web.json_response({"action": "allow"})

    async def up(self) -> str:
        app = web.Application()
        app.router.add_post("/check", self._check)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return f"http://127.0.0.1:{self._server.port}/check"

    async def down(self) -> None:
        assert self._server is not None
        await self._server.close()


@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_moderation_callback_allows_blocks_replaces_and_fails_as_configured(
    make_server: MakeServer, fail: str
) -> None:
    mod = Moderator()
    url = await mod.up()
    server = await make_server(
        moderation_urls={APP: url}, moderation_timeout_ms=300, moderation_fail_closed=fail == "closed"
    )
    host, viewer = await server.client("h1", "host"), await server.client("u1")
    await host.join("mod")
    await viewer.join("mod")
    assert (await viewer.send_barrage("mod", "hello"))["seq"]
    with pytest.raises(RoomError) as info:
        await viewer.send_barrage("mod", "bad word")
    assert info.value.code == "blocked_content"
    await viewer.send_barrage("mod", "swap this")
    started = time.monotonic()
    for text in ("slow answer", "garbage answer"):
        if fail == "open":
            assert (await viewer.send_barrage("mod", text))["seq"]
        else:
            with pytest.raises(RoomError) as info:
                await viewer.send_barrage("mod", text)
            assert info.value.code == "blocked_content"
    assert time.monotonic() - started < 2.5, "the 3 s answer was not waited for (timeout 300 ms)"
    history = [e["data"]["text"] for e in await server.history("mod") if e["ev"] == "barrage"]
    expected = ["hello", "***"] + (["slow answer", "garbage answer"] if fail == "open" else [])
    assert history == expected
    assert mod.bad_signatures == 0 and mod.calls[0]["room"] == "mod" and mod.calls[0]["user"]["id"] == "u1"
    results = server.node.metrics.moderation_calls
    assert results.labels(app=APP, result="block")._value.get() == 1
    assert results.labels(app=APP, result="error")._value.get() == 2
    await mod.down()


async def test_moderation_is_off_without_a_callback(make_server: MakeServer) -> None:
    server = await make_server()
    assert server.node.moderation is None  # the barrage path checks one attribute
