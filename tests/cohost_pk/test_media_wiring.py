"""Video through the real server: WHIP/WHEP on ``create_app`` with real tokens, aiortc
peers over loopback, and room state deciding who may publish. A co-host's and a PK
opponent's frames are decoded by viewers (frame counters read back in order); the
``media.publishers`` events, the join snapshot and the HTTP errors are checked on the way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator

import pytest

from roomserver.client import RoomError
from roomserver.core.room import decode_doc
from roomserver.media.client import Publisher, Viewer, delete_session, post_offer
from roomserver.media.synthetic import LOW_LAYER_BITRATE, CounterVideoTrack, layer_pair
from roomserver.media_glue import for_node
from roomserver.tenancy import room_key
from tests.cohost_pk.conftest import MakeNode
from tests.server_fixtures import APP, Recorder, Server, new_room_id, token

FRAMES = 15
MEDIA_WAIT_S = 10.0


class Peers:
    """Every aiortc peer a test opens, closed at the end whatever happens."""

    def __init__(self) -> None:
        self.peers: list[Publisher | Viewer] = []

    async def publish(
        self, server: Server, room: str, user: str, role: str = "viewer"
    ) -> tuple[int, str, str]:
        """WHIP as ``user``: (status, error code or "", session location)."""
        pub = Publisher([CounterVideoTrack()], video_codec="VP8")
        self.peers.append(pub)
        url = f"{server.base_url}/v1/rooms/{room}/whip"
        reply = await post_offer(server.http, url, await pub.offer(), token(user, role))
        if reply.status != 201:
            return reply.status, reply.json()["error"]["code"], ""
        await pub.accept(reply.body)
        return reply.status, "", reply.location or ""

    async def play(self, server: Server, room: str, user: str, publisher: str | None = None) -> Viewer:
        viewer = Viewer()
        self.peers.append(viewer)
        url = f"{server.base_url}/v1/rooms/{room}/whep" + (f"?publisher={publisher}" if publisher else "")
        reply = await post_offer(server.http, url, await viewer.offer(), token(user))
        assert reply.status == 201, reply.body
        await viewer.accept(reply.body)
        return viewer

    async def close(self) -> None:
        for peer in self.peers:
            with contextlib.suppress(Exception):
                await peer.close()


@pytest.fixture
async def peers() -> AsyncIterator[Peers]:
    p = Peers()
    yield p
    await p.close()


async def watching(viewer: Viewer) -> None:
    """The viewer decodes a run of consecutive frames (forwarded, in order, readable)."""
    assert await viewer.wait_for(lambda v: len(v.video) >= FRAMES, timeout=MEDIA_WAIT_S)
    counters = viewer.counters
    assert None not in counters
    assert all(b == a + 1 for a, b in itertools.pairwise(counters)), counters


def lineup(ev: dict) -> list[tuple[str, str]]:
    return [(p["user"], p["role"]) for p in ev["data"]["publishers"]]


async def until_closed(viewer: Viewer, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while viewer.pc.connectionState not in ("closed", "failed") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return viewer.pc.connectionState in ("closed", "failed")


async def joined(server: Server, room: str, user: str, role: str = "viewer"):
    client = await server.client(user, role)
    rec = Recorder(client)
    await client.join(room)
    return client, rec


async def test_cohost_video_reaches_viewers(server: Server, room: str, peers: Peers) -> None:
    host, _ = await joined(server, room, "h1", "host")
    guest, _ = await joined(server, room, "g1")
    _, rec = await joined(server, room, "v1")
    base = f"{server.base_url}/v1/rooms/{room}/whip"

    # Tokens first: none, bad, another room's; then the publish rules.
    reply = await post_offer(server.http, base, "v=0\r\n", None)
    assert (reply.status, reply.json()["error"]["code"]) == (401, "unauthorized")
    reply = await post_offer(server.http, base, "v=0\r\n", "not-a-jwt")
    assert reply.status == 401
    reply = await post_offer(server.http, base, "v=0\r\n", token("h1", "host", room="elsewhere"))
    assert (reply.status, reply.json()["error"]["code"]) == (403, "forbidden")
    assert (await peers.publish(server, room, "v1"))[:2] == (403, "forbidden")
    assert (await peers.publish(server, room, "g1"))[:2] == (403, "forbidden")  # not admitted yet

    assert (await peers.publish(server, room, "h1", "host"))[0] == 201
    ev = (await rec.wait("media.publishers"))[-1]
    assert lineup(ev) == [("h1", "host")] and "seq" in ev
    assert ev["data"]["publishers"][0]["tracks"] == [{"kind": "video", "codec": "VP8"}]

    request = (await guest.cohost_request(room))["request"]
    await host.cohost_accept(room, request=request["id"])
    status, _, guest_session = await peers.publish(server, room, "g1")
    assert status == 201
    await rec.wait("media.publishers", lambda e: lineup(e) == [("h1", "host"), ("g1", "cohost")])
    snap = await (await server.client("late")).join(room)
    assert [(p["user"], p["role"]) for p in snap["room"]["publishers"]] == [("h1", "host"), ("g1", "cohost")]

    host_view = await peers.play(server, room, "v1")  # default: the host
    guest_view = await peers.play(server, room, "v1", publisher="g1")
    await watching(host_view)
    await watching(guest_view)

    # The host ends co-hosting: the guest's stream stops for viewers, the host's goes on.
    await host.cohost_end(room, "g1")
    await rec.wait("media.publishers", lambda e: lineup(e) == [("h1", "host")], count=2)
    assert await until_closed(guest_view)
    seen = len(host_view.video)
    assert await host_view.wait_for(lambda v: len(v.video) >= seen + 10, timeout=MEDIA_WAIT_S)
    reply = await delete_session(server.http, server.base_url + guest_session, token("g1"))
    assert reply.status == 404  # already stopped by the server
    assert (await peers.publish(server, room, "g1"))[:2] == (403, "forbidden")  # no longer admitted


async def test_pk_opponent_video_reaches_viewers(server: Server, peers: Peers) -> None:
    a, b = new_room_id("a"), new_room_id("b")
    ha, _ = await joined(server, a, "ha", "host")
    hb, _ = await joined(server, b, "hb", "host")
    _, rec_a = await joined(server, a, "va")
    _, rec_b = await joined(server, b, "vb")
    assert (await peers.publish(server, a, "ha", "host"))[0] == 201
    assert (await peers.publish(server, b, "hb", "host"))[0] == 201
    await rec_a.wait("media.publishers")

    pk_id = (await ha.pk_invite(a, b, duration_s=60))["pk"]["id"]
    await hb.pk_accept(b, pk_id)
    ev = (await rec_a.wait("media.publishers", lambda e: len(e["data"]["publishers"]) == 2))[-1]
    assert lineup(ev) == [("ha", "host"), ("hb", "pk")] and ev["data"]["publishers"][1]["room"] == b
    await rec_b.wait("media.publishers", lambda e: lineup(e) == [("hb", "host"), ("ha", "pk")])

    opponent = await peers.play(server, a, "va", publisher="hb")  # room A's viewer plays B's host
    own = await peers.play(server, a, "va")
    await watching(opponent)
    await watching(own)

    await ha.pk_end(a, pk_id)
    await rec_a.wait("media.publishers", lambda e: lineup(e) == [("ha", "host")], count=2)
    await rec_b.wait("media.publishers", lambda e: lineup(e) == [("hb", "host")], count=2)


async def test_call_room_everyone_publishes_and_plays_everyone_else(server: Server, peers: Peers) -> None:
    room = new_room_id("call")
    status, _ = await server.admin("POST", "/v1/rooms", {"id": room, "title": "Standup", "mode": "call"})
    assert status == 201
    members = ["m1", "m2", "m3"]
    recs = [(await joined(server, room, m))[1] for m in members]
    for m in members:
        assert (await peers.publish(server, room, m))[0] == 201  # plain viewer tokens
    want = {(m, "call") for m in members}
    for rec in recs:
        await rec.wait("media.publishers", lambda e: set(lineup(e)) == want)
    views = [
        await peers.play(server, room, me, publisher=other)
        for me in members
        for other in members
        if other != me
    ]
    for view in views:
        await watching(view)


async def test_show_end_closes_the_rooms_media(server: Server, room: str, peers: Peers) -> None:
    host, _ = await joined(server, room, "h1", "host")
    _, rec = await joined(server, room, "v1")
    await host.start(room)
    assert (await peers.publish(server, room, "h1", "host"))[0] == 201
    view = await peers.play(server, room, "v1")
    await watching(view)
    await host.end(room)
    ev = (await rec.wait("media.publishers", lambda e: e["data"]["publishers"] == []))[-1]
    assert "seq" in ev
    assert await until_closed(view)
    snap = await (await server.client("late")).join(room)
    assert snap["room"]["publishers"] == []


async def test_worker_pool_with_routing_recorded_in_the_bus(make_node: MakeNode, peers: Peers) -> None:
    server = await make_node(media_workers=2)
    pool = for_node(server.node).backend
    rooms = [new_room_id("w"), new_room_id("w")]
    recs = []
    for i, room in enumerate(rooms):
        recs.append((await joined(server, room, f"v{i}"))[1])
        assert (await peers.publish(server, room, f"h{i}", "host"))[0] == 201
    owners = []
    for room in rooms:
        rec = await server.node.broker.load(room_key(APP, room))
        owners.append(decode_doc(rec.doc).features["media_worker"])
    assert {o["node"] for o in owners} == {server.config.node_id}
    assert sorted(o["worker"] for o in owners) == [0, 1]  # least loaded: one room per worker
    for i, room in enumerate(rooms):
        await recs[i].wait("media.publishers", lambda e, i=i: lineup(e) == [(f"h{i}", "host")])
        await watching(await peers.play(server, room, f"v{i}"))
    assert len({pid for pid in pool.worker_pids if pid}) == 2


@pytest.mark.parametrize("workers", [0, 1])
async def test_layered_host_and_media_layer_op(make_node: MakeNode, peers: Peers, workers: int) -> None:
    """WHIP `?layers=high,low` through the real server; a viewer's `media.layer` WebSocket op
    moves its WHEP session to the low layer (PROTOCOL §3) and back to the estimate. In process,
    and through a media worker (the pool's `/internal/layer` route)."""
    server = await make_node(media_workers=workers)
    room = new_room_id()
    _, rec = await joined(server, room, "h1", "host")
    viewer_ws, _ = await joined(server, room, "v1")
    high, low = layer_pair()
    pub = Publisher([high, low], max_bitrates={low: LOW_LAYER_BITRATE})
    peers.peers.append(pub)
    url = f"{server.base_url}/v1/rooms/{room}/whip?layers=high,low"
    reply = await post_offer(server.http, url, await pub.offer(), token("h1", "host"))
    assert reply.status == 201, reply.body
    await pub.accept(reply.body)
    ev = (await rec.wait("media.publishers"))[-1]
    assert ev["data"]["publishers"][0]["tracks"] == [
        {"kind": "video", "codec": "VP8", "layers": ["high", "low"]}
    ]
    bad = await post_offer(
        server.http, f"{url[: -len('high,low')]}high", await pub.offer(), token("h1", "host")
    )
    assert (bad.status, bad.json()["error"]["code"]) == (400, "bad_request")

    with pytest.raises(RoomError) as not_playing:
        await viewer_ws.ops.media_layer(room, publisher="h1", layer="low")
    assert not_playing.value.code == "not_found"
    view = await peers.play(server, room, "v1")
    assert await view.wait_for(lambda v: len(v.video) >= FRAMES, timeout=MEDIA_WAIT_S)
    assert {s.width for s in view.video} == {640}
    assert await viewer_ws.ops.media_layer(room, publisher="h1", layer="low") == {"layer": "low"}
    mark = len(view.video)
    assert await view.wait_for(lambda v: any(s.width == 320 for s in v.video[mark:]), timeout=MEDIA_WAIT_S)
    assert await viewer_ws.ops.media_layer(room, publisher="h1", layer="auto") == {"layer": "high"}
    with pytest.raises(RoomError) as bad_layer:
        await viewer_ws.request("media.layer", room, publisher="h1", layer="medium")
    assert bad_layer.value.code == "bad_request"
