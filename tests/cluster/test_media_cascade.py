"""Media across nodes (issue 13): a publisher on node A, WHEP viewers on node B (its media
in-process, or in a worker process that the node tells where the publisher is).

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

from roomserver.client import RoomClient, RoomError
from roomserver.media.client import Publisher, Viewer, delete_session, post_offer
from roomserver.media.ice import pin_host_addresses
from roomserver.media.synthetic import LOW_LAYER_BITRATE, CounterVideoTrack, layer_pair
from tests.server_procs import ServerProcess, running, token

LOOPBACK = "127.0.0.1"
HIGH_WIDTH, LOW_WIDTH = 640, 320  # synthetic.layer_pair
# The clients gather on loopback only, like the servers (--ice-host): other interfaces on a
# shared machine (another test's network namespace links) may come and go mid-test.
pin_host_addresses([LOOPBACK])


@pytest.fixture
def nodes(request, redis_cluster, unique_prefix, tmp_path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Nodes a and b; b's media in as many worker processes as the test's parameter says
    (default 0: in-process)."""
    seeds = redis_cluster.startup
    workers = {"a": 0, "b": getattr(request, "param", 0)}
    servers = [
        ServerProcess(
            *("--redis-cluster", seeds, "--redis-prefix", unique_prefix, "--flush-ms", "20"),
            *("--ice-host", LOOPBACK, "--announce-s", "0.5", "--node-id", name),
            *("--media-workers", str(workers[name])),
            log_dir=tmp_path,
        )
        for name in ("a", "b")
    ]
    with running(servers):
        yield servers[0], servers[1]


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


async def publish(
    http: aiohttp.ClientSession, server: ServerProcess, room: str, publisher: Publisher, jwt: str
) -> None:
    """A WHIP publisher on `server`."""
    reply = await post_offer(http, f"{server.url}/v1/rooms/{room}/whip", await publisher.offer(), jwt)
    assert reply.status == 201, reply.body
    await publisher.accept(reply.body)


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


def layered_publisher() -> Publisher:
    high, low = layer_pair()
    return Publisher([high, low], max_bitrates={low: LOW_LAYER_BITRATE})


async def publish_layers_and_play(
    http: aiohttp.ClientSession, origin: ServerProcess, edge: ServerProcess, room: str, publisher: Publisher
) -> Viewer:
    """`publisher` sends both layers to `origin` as the host h1 (WHIP `?layers=high,low`);
    viewer v1 plays it on `edge`."""
    reply = await post_offer(
        http,
        f"{origin.url}/v1/rooms/{room}/whip?layers=high,low",
        await publisher.offer(),
        token("h1", "host"),
    )
    assert reply.status == 201, reply.body
    await publisher.accept(reply.body)
    viewer, _ = await play(http, edge, room, "v1")
    return viewer


def closed_by_server(viewer: Viewer) -> bool:
    """The server ended the viewer's session (its DTLS close arrived)."""
    return viewer.pc.getTransceivers()[0].receiver.transport.state == "closed"


def in_order(counters: list[int | None]) -> list[int]:
    seen = [c for c in counters if c is not None]
    assert seen == sorted(seen) and len(seen) == len(set(seen)), "frames out of order or repeated"
    return seen


@pytest.mark.parametrize("nodes", [0, 1], indirect=True, ids=["edge-in-process", "edge-with-a-media-worker"])
async def test_viewers_on_another_node_share_one_relay_and_send_keyframe_requests_up(nodes) -> None:
    a, b = nodes
    room = "cascade-" + uuid.uuid4().hex[:8]
    video = CounterVideoTrack(fps=30)
    publisher = Publisher([video], video_codec="VP8")
    viewers: list[tuple[Viewer, str]] = []
    async with aiohttp.ClientSession() as http:
        try:
            await publish(http, a, room, publisher, token("h1", "host"))

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


@pytest.mark.parametrize("nodes", [0, 1], indirect=True, ids=["edge-in-process", "edge-with-a-media-worker"])
async def test_an_edge_relays_both_layers_and_its_viewers_switch(nodes) -> None:
    """A layered publisher on A: B's relay takes both layers (WHEP `?layers=high,low`), so B's
    viewers start high and move between layers there (`media.layer` to B, which holds both
    the viewer's socket and its WHEP session), while A still counts one viewer: B's relay."""
    a, b = nodes
    room = "layers-" + uuid.uuid4().hex[:8]
    publisher = layered_publisher()
    viewer: Viewer | None = None
    client = RoomClient([b.url], token("v1"))
    async with aiohttp.ClientSession() as http:
        try:
            viewer = await publish_layers_and_play(http, a, b, room, publisher)
            assert await viewer.wait_for(lambda v: len(v.video) >= 15, 30)
            assert {s.width for s in viewer.video} == {HIGH_WIDTH}  # starts high, as on the origin

            await client.connect()
            await client.join(room)
            assert (await client.ops.media_layer(room, publisher="h1", layer="low"))["layer"] == "low"
            mark = len(viewer.video)
            assert await viewer.wait_for(lambda v: LOW_WIDTH in {s.width for s in v.video[mark:]}, 30)
            assert (await client.ops.media_layer(room, publisher="h1", layer="high"))["layer"] == "high"
            mark = len(viewer.video)
            assert await viewer.wait_for(lambda v: HIGH_WIDTH in {s.width for s in v.video[mark:]}, 30)
            assert None not in viewer.counters  # decoded cleanly across both switches
            await until(lambda: media_viewers(a)["a"] == 1, 15, "A serves one viewer: B's relay")
        finally:
            await client.close()
            if viewer is not None:
                await viewer.close()
            await publisher.close()


@pytest.mark.parametrize("nodes", [0, 1], indirect=True, ids=["edge-in-process", "edge-with-a-media-worker"])
async def test_media_layer_reaches_the_viewers_sessions_on_another_node(nodes) -> None:
    """The viewer's socket is on A, its WHEP session on B (a load balancer spreads them
    independently): `media.layer` sent to A is applied by B (media_peers.py). A viewer
    with no session anywhere still gets not_found, and the node-only route refuses
    clients."""
    a, b = nodes
    room = "peer-layer-" + uuid.uuid4().hex[:8]
    publisher = layered_publisher()
    viewer: Viewer | None = None
    client = RoomClient([a.url], token("v1"))
    other = RoomClient([a.url], token("v2"))
    async with aiohttp.ClientSession() as http:
        try:
            viewer = await publish_layers_and_play(http, a, b, room, publisher)
            assert await viewer.wait_for(lambda v: len(v.video) >= 15, 30)

            await client.connect()
            await client.join(room)
            assert (await client.ops.media_layer(room, publisher="h1", layer="low"))["layer"] == "low"
            mark = len(viewer.video)
            assert await viewer.wait_for(lambda v: LOW_WIDTH in {s.width for s in v.video[mark:]}, 30)
            assert (await client.ops.media_layer(room, publisher="h1", layer="auto"))["layer"] == "high"

            await other.connect()
            await other.join(room)
            with pytest.raises(RoomError) as err:
                await other.ops.media_layer(room, publisher="h1", layer="low")
            assert err.value.code == "not_found"

            url = f"{b.url}/v1/rooms/{room}/media/layer"
            body = {"viewer": "v1", "publisher": "h1", "layer": "low"}
            async with http.post(url, json=body, headers={"Authorization": f"Bearer {token('v1')}"}) as r:
                assert r.status == 403, await r.text()
            async with http.post(url, json=body) as r:
                assert r.status == 401
        finally:
            await client.close()
            await other.close()
            if viewer is not None:
                await viewer.close()
            await publisher.close()


async def test_sigterm_on_the_origin_ends_the_relay_and_the_edge_viewers(nodes) -> None:
    a, b = nodes
    room = "drain-" + uuid.uuid4().hex[:8]
    publisher = Publisher([CounterVideoTrack(fps=30)], video_codec="VP8")
    viewer: Viewer | None = None
    async with aiohttp.ClientSession() as http:
        try:
            await publish(http, a, room, publisher, token("h1", "host"))
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


async def test_the_room_is_back_on_air_within_seconds_of_sigterm_to_its_origin(nodes) -> None:
    """Issue 13's drain: the origin's node ends its media cleanly, and the clients do what the
    SDK does when the server closes a session (``onEnded``, at once): the host publishes again
    through the node that answers now, the viewer plays again. Timed from the SIGTERM to the
    viewer's first frames of the new publication, while the old node is still draining."""
    a, b = nodes
    room = "back-" + uuid.uuid4().hex[:8]
    publisher = Publisher([CounterVideoTrack(fps=30)], video_codec="VP8")
    republished = Publisher([CounterVideoTrack(fps=30)], video_codec="VP8")
    viewers: list[Viewer] = []
    async with aiohttp.ClientSession() as http:
        try:
            await publish(http, a, room, publisher, token("h1", "host"))
            viewers.append((await play(http, b, room, "v1"))[0])
            assert await viewers[0].wait_for(lambda v: len(v.counters) >= 30, 30)

            sigterm_at = time.monotonic()
            stopping = asyncio.ensure_future(asyncio.to_thread(a.stop))
            # B's viewer of the relay is closed when A ends the host's session.
            await until(lambda: media_viewers(b).get("b") == 0, 20, "B closed its relayed viewer")
            closed_s = time.monotonic() - sigterm_at
            await publish(http, b, room, republished, token("h1", "host"))
            viewers.append((await play(http, b, room, "v1"))[0])
            assert await viewers[1].wait_for(lambda v: len(v.counters) >= 1, 30)
            back_s = time.monotonic() - sigterm_at
            assert await stopping == 0
            print(
                f"\nrelayed viewer closed {closed_s:.1f} s after SIGTERM to the origin; "
                f"back on air (first frame at the viewer, host published again on the edge) {back_s:.1f} s"
            )
            # 0.3 s measured (a CI run was going on beside it); the bound leaves room for a loaded box.
            assert back_s < 15, back_s
        finally:
            for viewer in viewers:
                await viewer.close()
            await publisher.close()
            await republished.close()


@pytest.mark.parametrize("nodes", [0, 1], indirect=True, ids=["edge-in-process", "edge-with-a-media-worker"])
async def test_after_kill_9_of_the_origin_edge_viewers_play_again(nodes) -> None:
    """A killed origin says nothing (no DTLS close; aiortc's consent check gives up after 30 s).
    Room 1's host publishes again on the edge at once: the edge drops its relay of the old
    publication and with it its viewers, who play the new one. Room 2's host does not come
    back: the edge closes the silent relay after 5 s, and its viewers, instead of showing a
    frozen picture until the consent check fails."""
    a, b = nodes
    rooms = ["kill-" + uuid.uuid4().hex[:8] for _ in range(2)]
    publishers = [Publisher([CounterVideoTrack(fps=30)], video_codec="VP8") for _ in rooms]
    again = Publisher([CounterVideoTrack(fps=30)], video_codec="VP8")
    viewers: list[Viewer] = []
    async with aiohttp.ClientSession() as http:
        try:
            for room, publisher in zip(rooms, publishers, strict=True):
                await publish(http, a, room, publisher, token("h1", "host"))
                viewers.append((await play(http, b, room, "v1"))[0])
            for viewer in viewers:
                assert await viewer.wait_for(lambda v: len(v.counters) >= 30, 30)
            await until(lambda: media_viewers(b).get("b") == 2, 15, "two relayed viewers on B")

            assert a.proc is not None
            a.proc.kill()
            killed_at = time.monotonic()
            await publish(http, b, rooms[0], again, token("h1", "host"))  # room 1's host is back
            published_at = time.monotonic()
            await until(lambda: closed_by_server(viewers[0]), 20, "B closed room 1's relayed viewer")
            superseded_s = time.monotonic() - published_at
            assert not closed_by_server(viewers[1])
            viewers.append((await play(http, b, rooms[0], "v1"))[0])
            assert await viewers[-1].wait_for(lambda v: len(v.counters) >= 1, 30)
            back_s = time.monotonic() - killed_at
            await until(lambda: closed_by_server(viewers[1]), 20, "B closed room 2's silent relay")
            silent_s = time.monotonic() - killed_at
            print(
                f"\nafter kill -9 of the origin: room 1's relayed viewer closed {superseded_s:.1f} s after "
                f"its host published again on the edge, room 1 back on air at the edge "
                f"{back_s:.1f} s after the kill; room 2's silent relay closed {silent_s:.1f} s after it "
                "(bound: 5 s of silence)"
            )
            # Not the silence bound (about 5.5 s after the kill): the new publish closed it.
            assert superseded_s < 3, superseded_s
            assert silent_s < 15, silent_s  # 5 s of silence, checked every second; loaded boxes lag
        finally:
            for viewer in viewers:
                await viewer.close()
            for publisher in (*publishers, again):
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
                await publish(http, node, room, publishers[member], token(member))
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


@pytest.mark.parametrize("nodes", [0, 1], indirect=True, ids=["in-process", "b-with-a-media-worker"])
async def test_a_pk_between_hosts_publishing_on_two_nodes(nodes) -> None:
    """PK across nodes: host A publishes on node a, host B on node b. Room A's viewer on a
    plays B's host (a relays it from b through the PK link), room B's viewer on b plays A's
    host; once the battle ends, B's host is no longer playable in room A."""
    a, b = nodes
    ra, rb = "pka-" + uuid.uuid4().hex[:8], "pkb-" + uuid.uuid4().hex[:8]
    ha, hb = RoomClient([a.url], token("ha", "host")), RoomClient([b.url], token("hb", "host"))
    publishers = {
        "ha": Publisher([CounterVideoTrack(fps=30)], video_codec="VP8"),
        "hb": Publisher([CounterVideoTrack(fps=30)], video_codec="VP8"),
    }
    viewers: list[Viewer] = []
    async with aiohttp.ClientSession() as http:
        try:
            for client, room in ((ha, ra), (hb, rb)):
                await client.connect()
                await client.join(room)
            for user, node, room in (("ha", a, ra), ("hb", b, rb)):
                pub = publishers[user]
                reply = await post_offer(
                    http, f"{node.url}/v1/rooms/{room}/whip", await pub.offer(), token(user, "host")
                )
                assert reply.status == 201, reply.body
                await pub.accept(reply.body)
            pk_id = (await ha.pk_invite(ra, rb, duration_s=120))["pk"]["id"]
            await hb.pk_accept(rb, pk_id)

            # Each node learns the battle from the room documents (its deadline sweep) and its
            # viewers' plays of the opponent go up the cascade: 404 until then.
            viewers.append((await play(http, a, ra, "va", publisher="hb"))[0])
            viewers.append((await play(http, b, rb, "vb", publisher="ha"))[0])
            for viewer in viewers:
                assert await viewer.wait_for(
                    lambda v: len([c for c in v.counters if c is not None]) >= 30, 30
                )
                in_order(viewer.counters)
            # One WHEP viewer and one relay of the opponent on each node.
            await until(lambda: media_viewers(a) == {"a": 2, "b": 2}, 15, "a viewer and a relay each")

            await ha.pk_end(ra, pk_id)
            deadline = time.monotonic() + 15
            while True:
                probe = Viewer(kinds=("video",))
                try:
                    reply = await post_offer(
                        http, f"{a.url}/v1/rooms/{ra}/whep?publisher=hb", await probe.offer(), token("late")
                    )
                finally:
                    await probe.close()
                if reply.status == 404:
                    break
                assert reply.status == 201 and time.monotonic() < deadline, (reply.status, reply.body)
                await delete_session(http, f"{a.url}{reply.location}", token("late"))
                await asyncio.sleep(0.3)
        finally:
            for viewer in viewers:
                await viewer.close()
            for pub in publishers.values():
                await pub.close()
            for client in (ha, hb):
                await client.close()


async def test_a_cohost_publishing_on_another_node_than_the_host(nodes) -> None:
    """A viewer admitted as co-host through node b publishes there while the host publishes
    on a: a viewer on a plays the co-host (relayed from b); when the host ends co-hosting
    (on a), the co-host's publish on b is stopped and no longer playable on a."""
    a, b = nodes
    room = "co-" + uuid.uuid4().hex[:8]
    host, guest = RoomClient([a.url], token("h1", "host")), RoomClient([b.url], token("g1"))
    publishers = {
        "h1": Publisher([CounterVideoTrack(fps=30)], video_codec="VP8"),
        "g1": Publisher([CounterVideoTrack(fps=30)], video_codec="VP8"),
    }
    viewers: list[Viewer] = []
    async with aiohttp.ClientSession() as http:
        try:
            for client in (host, guest):
                await client.connect()
                await client.join(room)
            request = (await guest.cohost_request(room))["request"]
            await host.cohost_accept(room, request=request["id"])
            locations = {}
            for user, node, role in (("h1", a, "host"), ("g1", b, "viewer")):
                pub = publishers[user]
                reply = await post_offer(
                    http, f"{node.url}/v1/rooms/{room}/whip", await pub.offer(), token(user, role)
                )
                assert reply.status == 201, reply.body
                await pub.accept(reply.body)
                locations[user] = f"{node.url}{reply.location}"
            guest_view = (await play(http, a, room, "v1", publisher="g1"))[0]
            host_view = (await play(http, a, room, "v1"))[0]
            viewers += [guest_view, host_view]
            for viewer in viewers:
                assert await viewer.wait_for(
                    lambda v: len([c for c in v.counters if c is not None]) >= 30, 30
                )

            await host.cohost_end(room, "g1")
            # Node b learns it from the room's document and stops the co-host's publish there;
            # a's relay of it closes, and with it a's viewer of the co-host.
            for pc, what in (
                (publishers["g1"].pc, "the co-host's publish on b"),
                (guest_view.pc, "its viewer on a"),
            ):
                deadline = time.monotonic() + 15
                while pc.connectionState not in ("closed", "failed"):
                    assert time.monotonic() < deadline, f"{what} outlived co-hosting"
                    await asyncio.sleep(0.1)
            assert (await delete_session(http, locations["g1"], token("g1"))).status == 404  # already gone
            seen = len(host_view.counters)
            assert await host_view.wait_for(lambda v: len(v.counters) >= seen + 10, 15)  # the host goes on
        finally:
            for viewer in viewers:
                await viewer.close()
            for pub in publishers.values():
                await pub.close()
            for client in (host, guest):
                await client.close()
