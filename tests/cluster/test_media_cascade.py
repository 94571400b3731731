"""Media across nodes (issue 13): a publisher on node A, WHEP viewers on node B.

Two real `roomserver serve` processes on one Redis Cluster bus, aiortc clients on loopback.
B relays the host from A once (A counts one WHEP viewer: B's relay) and fans it out to its
own viewers; numbered frames arrive in order; a viewer's PLI on B reaches the publisher on
A; the relay closes once B's viewers left.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import Iterator

import aiohttp
import pytest

from roomserver.client import RoomClient
from roomserver.media.client import Publisher, Viewer, delete_session, post_offer
from roomserver.media.ice import pin_host_addresses
from roomserver.media.synthetic import CounterVideoTrack
from tests.server_procs import ServerProcess, start_all, stop_all, token

LOOPBACK = "127.0.0.1"
# The clients gather on loopback only, like the servers (--ice-host): other interfaces on a
# shared machine (another test's network namespace links) may come and go mid-test.
pin_host_addresses([LOOPBACK])


@pytest.fixture
def nodes(redis_cluster, unique_prefix, tmp_path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    seeds = redis_cluster.startup
    servers = [
        ServerProcess(
            *("--redis-cluster", seeds, "--redis-prefix", unique_prefix, "--flush-ms", "20"),
            *("--ice-host", LOOPBACK, "--announce-s", "0.5", "--node-id", name),
            log_dir=tmp_path,
        )
        for name in ("a", "b")
    ]
    try:
        start_all(servers)
        yield servers[0], servers[1]
    finally:
        stop_all(servers)


def media_viewers(server: ServerProcess) -> dict[str, int]:
    req = urllib.request.Request(
        f"{server.url}/v1/nodes", headers={"Authorization": f"Bearer {token('ops', 'admin')}"}
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        return {n["node"]: n["media_viewers"] for n in json.loads(r.read())["nodes"]}


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.2)


async def play(
    http: aiohttp.ClientSession, server: ServerProcess, room: str, user: str, publisher: str | None = None
) -> tuple[Viewer, str]:
    """A WHEP viewer on `server`; retried while the origin entry is not written yet (404)."""
    deadline = time.monotonic() + 30
    query = f"?publisher={publisher}" if publisher else ""
    while True:
        viewer = Viewer(kinds=("video",))
        url = f"{server.url}/v1/rooms/{room}/whep{query}"
        reply = await post_offer(http, url, await viewer.offer(), token(user))
        if reply.status == 201:
            await viewer.accept(reply.body)
            assert reply.location is not None
            return viewer, f"{server.url}{reply.location}"
        await viewer.close()
        assert reply.status == 404 and time.monotonic() < deadline, (reply.status, reply.body)
        await asyncio.sleep(0.3)


def in_order(counters: list[int | None]) -> list[int]:
    seen = [c for c in counters if c is not None]
    assert seen == sorted(seen) and len(seen) == len(set(seen)), "frames out of order or repeated"
    return seen


async def test_viewers_on_another_node_share_one_relay_and_send_keyframe_requests_up(nodes) -> None:
    a, b = nodes
    room = "cascade-" + uuid.uuid4().hex[:8]
    video = CounterVideoTrack(fps=30)
    publisher = Publisher([video], video_codec="VP8")
    viewers: list[tuple[Viewer, str]] = []
    async with aiohttp.ClientSession() as http:
        try:
            reply = await post_offer(
                http, f"{a.url}/v1/rooms/{room}/whip", await publisher.offer(), token("h1", "host")
            )
            assert reply.status == 201, reply.body
            await publisher.accept(reply.body)

            viewers.append(await play(http, b, room, "v1"))
            viewers.append(await play(http, b, room, "v2"))
            for viewer, _ in viewers:
                got = await viewer.wait_for(lambda v: len([c for c in v.counters if c is not None]) >= 60, 60)
                assert got, f"{len(viewer.counters)} frames decoded, publisher sent {video.count}"
            # One relay: A has one WHEP viewer (B), B has its two.
            await until(lambda: media_viewers(a) == {"a": 1, "b": 2}, 15, "A: 1 viewer (the relay), B: 2")

            # Numbered frames arrive in order, none repeated, and keep coming.
            first = in_order(viewers[0][0].counters)
            assert await viewers[0][0].wait_for(lambda v: len(v.counters) >= len(first) + 30, 10)
            got = in_order(viewers[0][0].counters)
            span = got[-1] - got[0] + 1
            assert len(got) >= 0.9 * span, f"{span - len(got)} of {span} frames missing"

            # A keyframe request from B's viewer travels up to the publisher on A (rate limits
            # are 0.5 s per hop: wait until no request came for 1.5 s, then send one).
            while True:
                count = len(publisher.keyframe_requests)
                await asyncio.sleep(1.5)
                if len(publisher.keyframe_requests) == count:
                    break
            assert await viewers[1][0].send_pli() == 1
            deadline = time.monotonic() + 5
            while len(publisher.keyframe_requests) == count:
                assert time.monotonic() < deadline, "the PLI from B's viewer never reached A's publisher"
                await asyncio.sleep(0.05)

            # B's viewers leave: the relay closes after its grace, A's viewer count drops to 0.
            for (viewer, location), user in zip(viewers, ("v1", "v2"), strict=True):
                assert (await delete_session(http, location, token(user))).status == 200
                await viewer.close()
            viewers.clear()
            await until(lambda: media_viewers(a) == {"a": 0, "b": 0}, 30, "the relay closed")
        finally:
            for viewer, _ in viewers:
                await viewer.close()
            await publisher.close()


async def test_sigterm_on_the_origin_ends_the_relay_and_the_edge_viewers(nodes) -> None:
    a, b = nodes
    room = "drain-" + uuid.uuid4().hex[:8]
    publisher = Publisher([CounterVideoTrack(fps=30)], video_codec="VP8")
    viewer: Viewer | None = None
    async with aiohttp.ClientSession() as http:
        try:
            reply = await post_offer(
                http, f"{a.url}/v1/rooms/{room}/whip", await publisher.offer(), token("h1", "host")
            )
            assert reply.status == 201, reply.body
            await publisher.accept(reply.body)
            viewer, _ = await play(http, b, room, "v1")
            assert await viewer.wait_for(lambda v: len(v.counters) >= 30, 30)
            await until(lambda: media_viewers(b) == {"a": 1, "b": 1}, 15, "one relay, one viewer")

            stopped_at = time.monotonic()
            assert await asyncio.to_thread(a.stop) == 0
            # B closes its relay (the origin closed its side) and with it B's viewer.
            await until(lambda: media_viewers(b) == {"b": 0}, 20, "B's viewer closed after A stopped")
            print(f"\nedge viewer closed {time.monotonic() - stopped_at:.1f} s after SIGTERM to the origin")
            # The publisher's origin entry went with A: B answers 404 at once (no relay to a dead node).
            again = Viewer(kinds=("video",))
            try:
                reply = await post_offer(
                    http, f"{b.url}/v1/rooms/{room}/whep", await again.offer(), token("v2")
                )
                assert reply.status == 404, (reply.status, reply.body)
            finally:
                await again.close()
        finally:
            if viewer is not None:
                await viewer.close()
            await publisher.close()


async def test_a_call_room_with_members_publishing_on_two_nodes(nodes) -> None:
    """Each member's media lives where it published; each node relays the other's member, and
    the room's publisher list (written by both origins) names both."""
    a, b = nodes
    room = "call-" + uuid.uuid4().hex[:8]
    req = urllib.request.Request(
        f"{a.url}/v1/rooms",
        data=json.dumps({"id": room, "title": "Standup", "mode": "call"}).encode(),
        headers={"Authorization": f"Bearer {token('ops', 'admin')}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.status == 201
    publishers = {m: Publisher([CounterVideoTrack(fps=30)], video_codec="VP8") for m in ("m1", "m2")}
    viewers: list[Viewer] = []
    client = RoomClient([b.url], token("m3"))
    async with aiohttp.ClientSession() as http:
        try:
            for member, node in (("m1", a), ("m2", b)):
                pub = publishers[member]
                reply = await post_offer(
                    http, f"{node.url}/v1/rooms/{room}/whip", await pub.offer(), token(member)
                )
                assert reply.status == 201, reply.body
                await pub.accept(reply.body)
            viewers.append((await play(http, b, room, "m2", publisher="m1"))[0])
            viewers.append((await play(http, a, room, "m1", publisher="m2"))[0])
            for viewer in viewers:
                assert await viewer.wait_for(
                    lambda v: len([c for c in v.counters if c is not None]) >= 30, 30
                )
            await until(lambda: media_viewers(a) == {"a": 2, "b": 2}, 15, "one viewer and one relay each")

            await client.connect()
            deadline = time.monotonic() + 15
            while True:
                snapshot = (await client.join(room))["room"]
                listed = sorted((p["user"], p["role"]) for p in snapshot["publishers"])
                if listed == [("m1", "call"), ("m2", "call")]:
                    break
                assert time.monotonic() < deadline, listed
                await client.leave(room)
                await asyncio.sleep(0.3)
        finally:
            await client.close()
            for viewer in viewers:
                await viewer.close()
            for pub in publishers.values():
                await pub.close()
