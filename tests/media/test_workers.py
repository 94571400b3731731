"""Media in worker processes: the main process authorizes and proxies, each room lives in one
worker, frames flow from the worker straight to the clients, a dead worker is replaced."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from roomserver.media.cascade import Upstream, encode_upstream
from roomserver.media.client import Publisher, Viewer, delete_session, post_offer
from roomserver.media.synthetic import CounterVideoTrack
from roomserver.media.whip import media_routes
from roomserver.media.worker import ROLE_HEADER, SECRET_HEADER, UPSTREAM_HEADER, USER_HEADER
from roomserver.media.workers import InMemoryRoomRouting, MediaWorkerPool
from tests.polling import eventually

from .conftest import LOOPBACK, MediaServer, Roster, jwt_authorize, make_token
from .test_trickle import split_offer


@pytest.fixture(scope="module")
async def pool_server() -> AsyncIterator[tuple[MediaWorkerPool, MediaServer]]:
    """One pool for the module: starting worker processes (each imports aiortc) is the slow part."""
    changes: list[str] = []
    pool = MediaWorkerPool(2, ice_host=LOOPBACK, on_publishers_changed=changes.append, restart_delay=0.1)
    pool.changes = changes  # type: ignore[attr-defined]
    await pool.start()
    roster = Roster()
    app = web.Application()
    app.add_routes(media_routes(pool, jwt_authorize(roster)))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, 0).start()
    try:
        async with aiohttp.ClientSession() as http:
            yield pool, MediaServer(f"http://{LOOPBACK}:{runner.addresses[0][1]}", http, roster)
    finally:
        await runner.cleanup()
        await pool.close()
    assert pool.worker_pids == [None, None]


async def _publish(server: MediaServer, room: str, user: str) -> tuple[Publisher, str]:
    publisher = Publisher([CounterVideoTrack()])
    reply = await post_offer(
        server.http, server.url(f"/v1/rooms/{room}/whip"), await publisher.offer(), make_token(user, "host")
    )
    assert reply.status == 201, reply.body
    await publisher.accept(reply.body)
    return publisher, reply.location


async def test_rooms_spread_over_workers_and_pk_plays_across_them(
    pool_server: tuple[MediaWorkerPool, MediaServer],
) -> None:
    pool, server = pool_server
    pub_a, loc_a = await _publish(server, "ra", "ha")
    pub_b, _ = await _publish(server, "rb", "hb")
    viewers: list[Viewer] = []
    try:
        routing = pool.routing
        assert isinstance(routing, InMemoryRoomRouting)
        assert sorted(routing.snapshot().values()) == [0, 1]  # least loaded: one room each
        assert await eventually(lambda: pool.publishers("ra") and pool.publishers("rb"), 5)
        assert {"ra", "rb"} <= set(pool.changes)

        sessions = []
        pool.link("ra", "rb", "hb")
        assert [(p["user"], p["role"]) for p in pool.publishers("ra")] == [("ha", "host"), ("hb", "pk")]
        for publisher in (None, "hb"):  # ra's host, then rb's host seen from ra (other worker)
            viewer = Viewer()
            viewers.append(viewer)
            query = "" if publisher is None else f"?publisher={publisher}"
            reply = await post_offer(
                server.http, server.url(f"/v1/rooms/ra/whep{query}"), await viewer.offer(), make_token("v1")
            )
            assert reply.status == 201, reply.body
            assert reply.location.startswith("/v1/rooms/ra/whep/")
            sessions.append(reply.location.rsplit("/", 1)[-1])
            await viewer.accept(reply.body)
        for viewer in viewers:
            assert await viewer.wait_for(lambda v: len(v.video) >= 15, timeout=10)
            assert None not in viewer.counters
        # The PK viewer's session lives where rb's forwarder is.
        assert [pool.worker_of_session(s) for s in sessions] == [routing.snapshot()[r] for r in ("ra", "rb")]

        reply = await delete_session(server.http, server.url(loc_a), make_token("hb", "host"))
        assert reply.status == 403
        reply = await delete_session(server.http, server.url(loc_a), make_token("ha", "host"))
        assert reply.status == 200
        assert await eventually(lambda: [p["user"] for p in pool.publishers("ra")] == ["hb"], 5)
        assert await eventually(lambda: "ra" not in routing.snapshot(), 5)  # idle rooms are released
    finally:
        for viewer in viewers:
            await viewer.close()
        await pub_a.close()
        await pub_b.close()


async def test_a_dead_worker_is_replaced_and_its_rooms_released(
    pool_server: tuple[MediaWorkerPool, MediaServer],
) -> None:
    pool, server = pool_server
    publisher, _ = await _publish(server, "rc", "hc")
    try:
        assert await eventually(lambda: pool.publishers("rc") != [], 5)
        index = pool.routing.snapshot()["rc"]  # type: ignore[attr-defined]
        pid = pool.worker_pids[index]
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # a worker this test's pool started
        assert await eventually(lambda: pool.publishers("rc") == [], 5)
        assert "rc" in pool.changes
        assert await eventually(lambda: "rc" not in pool.routing.snapshot(), 5)  # type: ignore[attr-defined]
        assert await eventually(lambda: pool.worker_pids[index] not in (None, pid), 15)
        await publisher.close()
        publisher, _ = await _publish(server, "rc", "hc")  # media works again
        viewer = Viewer()
        reply = await post_offer(
            server.http, server.url("/v1/rooms/rc/whep"), await viewer.offer(), make_token("v")
        )
        assert reply.status == 201
        await viewer.accept(reply.body)
        assert await viewer.wait_for(lambda v: len(v.video) >= 5, timeout=10)
        await viewer.close()
    finally:
        await publisher.close()


async def test_trickle_patches_reach_the_worker_that_owns_the_session(
    pool_server: tuple[MediaWorkerPool, MediaServer],
) -> None:
    """PATCH (trickle ICE) is forwarded to the session's worker: its 204, and its errors."""
    _, server = pool_server
    publisher, _ = await _publish(server, "wt1", "h1")
    viewer = Viewer()
    try:
        offer, fragment = split_offer(await viewer.offer())
        headers = {"Authorization": f"Bearer {make_token('v1')}"}
        async with server.http.post(
            server.url("/v1/rooms/wt1/whep"),
            data=offer,
            headers={**headers, "Content-Type": "application/sdp"},
        ) as resp:
            assert resp.status == 201
            location, answer = resp.headers["Location"], await resp.text()
        await viewer.accept(answer)
        patch = {**headers, "Content-Type": "application/trickle-ice-sdpfrag"}
        restart = fragment.replace("a=ice-ufrag:", "a=ice-ufrag:x")
        async with server.http.patch(server.url(location), data=restart, headers=patch) as resp:
            assert resp.status == 422  # the worker's answer, passed through
        async with server.http.patch(server.url(location), data=fragment, headers=patch) as resp:
            assert resp.status == 204, await resp.text()
        assert await viewer.wait_for(lambda v: len(v.video) >= 10, timeout=10)
    finally:
        await viewer.close()
        await publisher.close()


async def test_a_worker_refuses_a_bad_upstream_header_and_a_stranger(
    pool_server: tuple[MediaWorkerPool, MediaServer],
) -> None:
    """The upstream a pool hands its worker (cascade): garbage is a 400 with a reason, and
    without the pool's secret the worker answers 401 whatever the header says."""
    pool, server = pool_server
    # Addressed directly, as only the pool should; an earlier test may have killed one.
    assert await eventually(lambda: all(w.alive for w in pool._workers), 30)
    worker = pool._workers[0]
    viewer = Viewer(kinds=("video",))
    offer = await viewer.offer()
    await viewer.close()
    url = f"{worker.base_url}/v1/rooms/app%2Fr1/whep"
    base = {
        SECRET_HEADER: pool._secret,
        USER_HEADER: "v1",
        ROLE_HEADER: "viewer",
        "Content-Type": "application/sdp",
    }
    for bad in ("%%%", "W1tbW1tbW1s=", "e30="):  # not base64, '[[[[[[[[', '{}'
        async with server.http.post(url, data=offer, headers={**base, UPSTREAM_HEADER: bad}) as r:
            assert r.status == 400, await r.text()
            assert (await r.json())["error"]["code"] == "bad_request"
    stranger = {k: v for k, v in base.items() if k != SECRET_HEADER}
    up = encode_upstream(Upstream("app/r1", "h1", "host", "http://127.0.0.1:9/x", "t", server.http))
    async with server.http.post(url, data=offer, headers={**stranger, UPSTREAM_HEADER: up}) as r:
        assert r.status == 401
