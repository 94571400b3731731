"""The report over REST on a real server (embedded store): JSON, CSV, the page's
redirect, the user timeline, bad input and another app's room; and the report
computed and announced after a show ends (report.ready to the host, webhooks)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from roomserver.appkeys import STORE_KEY
from roomserver.auth import mint_token
from roomserver.client import RoomClient
from roomserver.config import Config
from roomserver.core.behaviour import BehaviourEvent
from roomserver.core.webhooks import parse_endpoint
from roomserver.server import create_app
from roomserver.store.store import AnalyticsStore
from tests.analytics.report_show import APP, ROOM, previous_show, rec, this_show
from tests.server_fixtures import NO_REST_LIMITS, Recorder

SECRET_A = "a" * 40
SECRET_B = "b" * 40


class Api:
    def __init__(self, base: str, http: aiohttp.ClientSession, store: AnalyticsStore) -> None:
        self.base, self.http, self.store = base, http, store

    async def get(
        self, path: str, app: str = APP, role: str = "admin"
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        tok = mint_token(app, SECRET_A if app == APP else SECRET_B, "backend", role)  # type: ignore[arg-type]
        async with self.http.get(
            self.base + path, headers={"Authorization": f"Bearer {tok}"}, allow_redirects=False
        ) as resp:
            raw = await resp.read()
            body = json.loads(raw) if resp.content_type == "application/json" else raw.decode()
            return resp.status, body, resp


@pytest.fixture
async def hooks() -> AsyncIterator[list[dict[str, Any]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(json.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    srv = TestServer(app, host="127.0.0.1", port=0)
    await srv.start_server()
    got.append({"url": f"http://127.0.0.1:{srv.port}/hook"})
    yield got
    await srv.close()


@pytest.fixture
async def api(tmp_path: Path, hooks: list[dict[str, Any]]) -> AsyncIterator[Api]:
    url = hooks.pop()["url"]
    config = Config(
        apps={APP: SECRET_A, "b": SECRET_B},
        data_dir=str(tmp_path),
        auto_create="any",
        flush_ms=10,
        webhooks=[parse_endpoint(f"{APP}:ops:room.ended,report.ready:{url}")],
        **NO_REST_LIMITS,
    )
    app = create_app(config)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    store = app[STORE_KEY]
    await store.events.ingest(previous_show())
    await store.events.ingest(this_show())
    async with aiohttp.ClientSession() as http:
        yield Api(f"http://127.0.0.1:{server.port}", http, store)
    await server.close()


async def test_report_json_defaults_to_the_latest_show(api: Api) -> None:
    status, body, _ = await api.get(f"/v1/rooms/{ROOM}/report")
    assert status == 200, body
    assert (body["show"], body["audience"]["unique_viewers"], body["sales"]["gmv"]) == (2, 6, 39700)
    assert body["curves"]["online"] == [2, 3, 3, 2, 2, 4, 4, 3, 2, 2]
    status, first, resp = await api.get(f"/v1/rooms/{ROOM}/report?show=1")
    assert status == 200 and first["show"] == 1 and first["audience"]["unique_viewers"] == 3
    status, again, resp = await api.get(f"/v1/rooms/{ROOM}/report?show=2&lang=zh-CN")
    assert again == body and resp.headers["X-Report-Cached"] == "1"


async def test_report_csv_tables(api: Api) -> None:
    status, text, resp = await api.get(f"/v1/rooms/{ROOM}/report?format=csv&table=orders")
    assert status == 200 and resp.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["order", "user", "t_s", "product", "sale", "qty", "amount"]
    assert rows[1:] == [
        ["o1", "u2", "170.0", "p1", "s1", "2", "19800"],
        ["o2", "u4", "345.0", "p2", "s2", "1", "5000"],
        ["o4", "u2", "380.0", "p1", "s1", "1", "9900"],
        ["o3", "u1", "530.0", "p2", "s2", "1", "5000"],
    ]
    status, text, _ = await api.get(f"/v1/rooms/{ROOM}/report?format=csv&table=users&show=2")
    users = list(csv.DictReader(io.StringIO(text)))
    assert [u["user"] for u in users] == ["h", "u1", "u2", "u3", "u4", "u6", "u7"]
    u6 = users[5]
    assert (u6["ref"], u6["new"], u6["watch_s"], u6["gift_value"]) == ("u1", "1", "290.0", "5000")


async def test_report_html_redirects_to_the_page_with_the_token(api: Api) -> None:
    status, _, resp = await api.get(f"/v1/rooms/{ROOM}/report?format=html&lang=zh-CN")
    assert status == 302
    page, _, fragment = resp.headers["Location"].partition("#")
    assert page == f"/report.html?room={ROOM}&show=2&lang=zh-CN"
    assert fragment.startswith("token=ey")


async def test_user_timeline(api: Api) -> None:
    status, body, _ = await api.get(f"/v1/rooms/{ROOM}/report/users/u7")
    assert status == 200, body
    assert body["sessions"] == [[400.0, 460.0]] and body["watch_s"] == 60.0
    assert [(e["t"], e["kind"], e["data"]) for e in body["entries"]] == [
        (400.0, "join", {"ref": "u1"}),
        (460.0, "leave", {"joined_at": 1_700_000_460_000 - 60_000}),
    ]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/v1/rooms/{ROOM}/report?show=9", 404, "not_found"),
        (f"/v1/rooms/{ROOM}/report?show=0", 400, "bad_request"),
        (f"/v1/rooms/{ROOM}/report?show=two", 400, "bad_request"),
        (f"/v1/rooms/{ROOM}/report?format=pdf", 400, "bad_request"),
        (f"/v1/rooms/{ROOM}/report?format=csv", 400, "bad_request"),
        (f"/v1/rooms/{ROOM}/report?format=csv&table=gifts", 400, "bad_request"),
        (f"/v1/rooms/{ROOM}/report?table=orders", 400, "bad_request"),
        (f"/v1/rooms/{ROOM}/report?lang=fr", 400, "bad_request"),
        ("/v1/rooms/nosuchroom/report", 404, "not_found"),
        ("/v1/rooms/bad%20room/report", 400, "bad_request"),
        (f"/v1/rooms/{ROOM}/report/users/nobody", 404, "not_found"),
        (f"/v1/rooms/{ROOM}/report/users/u1?show=7", 404, "not_found"),
        (f"/v1/rooms/{ROOM}/report/users/bad%20user", 400, "bad_request"),
    ],
)
async def test_bad_input_is_a_clear_error(api: Api, path: str, status: int, code: str) -> None:
    got, body, _ = await api.get(path)
    assert (got, body["error"]["code"]) == (status, code), body


async def test_a_show_that_never_started(api: Api) -> None:
    await api.store.events.ingest([rec(5, 1_800_000_000_000, 0, "h", "show.end")])
    status, body, _ = await api.get(f"/v1/rooms/{ROOM}/report?show=5")
    assert (status, body["error"]["code"]) == (400, "bad_request")
    assert "never started" in body["error"]["message"]


async def test_another_apps_room_and_a_viewer_token(api: Api) -> None:
    status, body, _ = await api.get(f"/v1/rooms/{ROOM}/report", app="b")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, _ = await api.get(f"/v1/rooms/{ROOM}/report/users/u1", app="b")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body, _ = await api.get(f"/v1/rooms/{ROOM}/report", role="viewer")
    assert (status, body["error"]["code"]) == (403, "forbidden")


async def test_openapi_describes_the_report_routes(api: Api) -> None:
    status, doc, _ = await api.get("/v1/openapi.json")
    assert status == 200
    report = doc["paths"]["/v1/rooms/{room}/report"]["get"]
    assert {p["name"] for p in report["parameters"]} >= {"room", "show", "format", "table", "lang"}
    assert "/v1/rooms/{room}/report/users/{user}" in doc["paths"]


async def test_report_ready_after_the_show_ends(api: Api, hooks: list[dict[str, Any]]) -> None:
    """The show's records reach the store through the real recorder and writer (its
    start and end) and, for a viewer and an order, straight from the test, inside
    the show's window: the report is computed once the writer has stored the end,
    and announced to the host and by webhook within 5 s of room.ended."""
    host = RoomClient(api.base, mint_token(APP, SECRET_A, "h", "host"), request_timeout=5)
    seen = Recorder(host)
    await host.connect()
    try:
        await host.join("live1")
        started = await host.start("live1")
        show = started.get("show", 1) if isinstance(started, dict) else 1
        t0 = int(time.time() * 1000)
        records: list[BehaviourEvent] = [
            rec(show, t0, 0, "v1", "join", room="live1"),
            rec(
                show,
                t0,
                0.001,
                "v1",
                "order",
                room="live1",
                order="x",
                sale="s",
                product="p",
                qty=1,
                amount=1200,
            ),
        ]
        await api.store.events.ingest(records)
        await host.end("live1")
        ended = time.monotonic()
        (ready,) = await seen.wait("report.ready", timeout=5.0)
        assert time.monotonic() - ended < 5.0
        assert ready["data"] == {
            "show": show,
            "url": f"/v1/rooms/live1/report?show={show}",
            "unique_viewers": 1,
            "peak_concurrent": 1,
            "orders": 1,
            "gmv": 1200,
        }
        deadline = time.monotonic() + 5
        while len(hooks) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        by_event = {h["event"]: h for h in hooks}
        assert by_event["room.ended"]["data"]["report_url"] == f"/v1/rooms/live1/report?show={show}"
        assert by_event["report.ready"]["data"]["url"] == f"/v1/rooms/live1/report?show={show}"
        assert by_event["report.ready"]["room"] == "live1"
        status, body, resp = await api.get(f"/v1/rooms/live1/report?show={show}")
        assert status == 200 and resp.headers["X-Report-Cached"] == "1" and body["sales"]["gmv"] == 1200
    finally:
        await host.close()
