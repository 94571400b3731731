"""Share links (转发有礼, issue 12): a signed ref on ``room.join`` attributes the viewer to
the sharer once per viewer per show, across nodes; a bad ref is a clear error and changes
nothing (not joined, nothing recorded, no attribution taken)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from roomserver.client import RoomError
from roomserver.core import share
from tests.server_fixtures import SECRET, Server, closed_after, new_room_id, start_server


class Sink:
    """The node's behaviour sink, keeping what the handlers record (the pipe's recorder
    takes its place in production: same ``record`` call)."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str, dict[str, Any] | None]] = []

    def record(
        self, room: str, user: str, kind: str, data: dict[str, Any] | None = None, *, ts: int | None = None
    ) -> None:
        self.records.append((room, user, kind, data))

    def joins(self) -> list[tuple[str, dict[str, Any] | None]]:
        return [(user, data) for _, user, kind, data in self.records if kind == "join"]


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    async with closed_after(start_server) as make:
        yield make


def sink_of(server: Server) -> Sink:
    sink = Sink()
    server.node.behaviour = sink
    return sink


async def error_of(awaitable: Awaitable[Any]) -> RoomError:
    try:
        await awaitable
    except RoomError as err:
        return err
    raise AssertionError("the request succeeded")


async def test_share_link_attributes_a_join_once_per_show(make_server) -> None:
    server = await make_server()
    sink = sink_of(server)
    room = new_room_id()
    host = await server.client("host", "host")
    await host.join(room)
    await host.start(room)
    alice = await server.client("alice")
    await alice.join(room)
    link = await alice.share_link(room)
    assert link["url"].startswith(f"/viewer.html?room={room}&ref=")
    assert link["expires_at"] > time.time() * 1000 + 6 * 24 * 3600 * 1000  # 7 days by default

    bob = await server.client("bob")
    snap = await bob.join(room, ref=link["ref"])
    assert snap["attribution"] == "attributed"
    assert ("bob", {"ref": "alice"}) in sink.joins()
    # Bob again, even through another sharer's link: attributed once per show.
    carol = await server.client("carol")
    await carol.join(room)
    carol_link = await carol.share_link(room)
    again = await server.client("bob")
    assert (await again.join(room, ref=carol_link["ref"]))["attribution"] == "already"
    # Alice opening her own link: never counted.
    alice2 = await server.client("alice")
    assert (await alice2.join(room, ref=link["ref"]))["attribution"] == "self"
    attributed = [data for user, data in sink.joins() if data]
    assert attributed == [{"ref": "alice"}]
    # A plain join has no attribution field.
    assert "attribution" not in await (await server.client("dave")).join(room)

    # The next show attributes afresh.
    await host.end(room)
    await host.start(room)
    bob3 = await server.client("bob")
    assert (await bob3.join(room, ref=carol_link["ref"]))["attribution"] == "attributed"
    assert [data for user, data in sink.joins() if data] == [{"ref": "alice"}, {"ref": "carol"}]


@pytest.mark.parametrize("kind", ["forged", "tampered", "expired", "other_room", "damaged"])
async def test_a_bad_ref_fails_the_join_and_changes_nothing(make_server, kind: str) -> None:
    server = await make_server()
    sink = sink_of(server)
    room, other = new_room_id(), new_room_id()
    alice = await server.client("alice")
    await alice.join(room)
    await alice.join(other)
    good = (await alice.share_link(room))["ref"]
    now = int(time.time() * 1000)
    ref = {
        "forged": share.mint_ref("x" * 64, app="testapp", room=room, sharer="alice", expires_at=now + 60_000),
        "tampered": share.mint_ref(
            SECRET, app="testapp", room=room, sharer="mallory", expires_at=now + 60_000
        )[:-43]
        + good.rsplit(".", 1)[1],
        "expired": share.mint_ref(SECRET, app="testapp", room=room, sharer="alice", expires_at=now - 1),
        "other_room": (await alice.share_link(other))["ref"],
        "damaged": "not-a-share-link",
    }[kind]
    before = len(sink.records)
    bob = await server.client("bob")
    err = await error_of(bob.join(room, ref=ref))
    assert err.code == "bad_request"
    assert "share link (ref)" in err.message
    reason = {"forged": "not signed", "tampered": "not signed", "expired": "expired"}
    reason |= {"other_room": "another room", "damaged": "damaged"}
    assert reason[kind] in err.message
    assert len(sink.records) == before  # nothing recorded
    assert (await error_of(bob.send_barrage(room, "hi"))).code == "not_joined"  # not joined
    # No attribution was taken: the viewer's first valid ref still counts.
    assert (await bob.join(room, ref=good))["attribution"] == "attributed"
    assert sink.joins()[-1] == ("bob", {"ref": "alice"})


async def test_share_link_needs_a_room_the_token_admits(make_server) -> None:
    server = await make_server()
    room = new_room_id()
    await (await server.client("host", "host")).join(room)
    only_other = await server.client("eve", token_kwargs={"room": "elsewhere"})
    assert (await error_of(only_other.share_link(room))).code == "forbidden"
    nobody = await server.client("eve2")
    assert (await error_of(nobody.share_link(new_room_id()))).code == "not_found"


async def test_attribution_once_per_viewer_across_two_nodes_on_redis(
    make_server, redis_single, unique_prefix
) -> None:
    """Two nodes on one Redis: the same viewer joining through two sharers' links on both
    nodes at once is attributed once; each node records the ref only for its own winner."""
    bus = {"redis_url": redis_single.url, "redis_prefix": unique_prefix}
    a, b = await make_server(**bus), await make_server(**bus)
    sinks = [sink_of(a), sink_of(b)]
    room = new_room_id()
    host = await a.client("host", "host")
    await host.join(room)
    await host.start(room)
    alice, carol = await a.client("alice"), await b.client("carol")
    await alice.join(room)
    await carol.join(room)
    refs = [(await alice.share_link(room))["ref"], (await carol.share_link(room))["ref"]]
    results = []
    for viewer in ("v1", "v2", "v3"):
        on_a, on_b = await a.client(viewer), await b.client(viewer)
        snaps = await asyncio.gather(on_a.join(room, ref=refs[0]), on_b.join(room, ref=refs[1]))
        results.append(sorted(s["attribution"] for s in snaps))
    assert results == [["already", "attributed"]] * 3
    recorded = [(user, data["ref"]) for sink in sinks for user, data in sink.joins() if data]
    assert sorted(user for user, _ in recorded) == ["v1", "v2", "v3"]
    assert all(sharer in ("alice", "carol") for _, sharer in recorded)
