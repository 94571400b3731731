"""PK ops through the SDK against real servers: one node, and two nodes sharing one
bus (the rooms' hosts and viewers on different nodes), scores from gifts, the
winner or a draw, ends_at, expiry, conflicts, the pk.ended webhook."""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from aiohttp.test_utils import TestServer

from roomserver.appkeys import NODE_KEY
from roomserver.bus.memory import MemoryHub
from roomserver.tenancy import room_key
from tests.cohost_pk.conftest import MakeNode, expect_error, joined
from tests.server_fixtures import APP, Server, new_room_id


async def two_rooms(a_node: Server, b_node: Server) -> dict:
    """Room A (host ha, viewer va) and room B (host hb, viewer vb), hosts and viewers
    of each room on that room's node."""
    a, b = new_room_id("a"), new_room_id("b")
    ha, ha_rec = await joined(a_node, a, "ha", "host")
    va, va_rec = await joined(a_node, a, "va")
    hb, hb_rec = await joined(b_node, b, "hb", "host")
    vb, vb_rec = await joined(b_node, b, "vb")
    return {
        "a": a,
        "b": b,
        "ha": ha,
        "hb": hb,
        "va": va,
        "vb": vb,
        "ha_rec": ha_rec,
        "hb_rec": hb_rec,
        "va_rec": va_rec,
        "vb_rec": vb_rec,
    }


async def battle(a_node: Server, b_node: Server) -> None:
    s = await two_rooms(a_node, b_node)
    a, b = s["a"], s["b"]
    reply = await s["ha"].pk_invite(a, b, duration_s=60)
    pk_id = reply["pk"]["id"]
    (ev,) = await s["hb_rec"].wait("pk.invited")
    assert ev["data"]["id"] == pk_id and ev["data"]["from_room"] == a and ev["data"]["to_room"] == b
    assert ev["data"]["by"]["id"] == "ha" and ev["data"]["duration_s"] == 60

    await expect_error(s["ha"].pk_accept(a, pk_id), "forbidden")  # only the invited room accepts
    await expect_error(s["vb"].pk_accept(b, pk_id), "forbidden")  # and only its host
    started = (await s["hb"].pk_accept(b, pk_id))["pk"]
    assert started["rooms"] == [a, b] and started["hosts"] == {a: "ha", b: "hb"}
    for rec, room in ((s["va_rec"], a), (s["vb_rec"], b)):
        (ev,) = await rec.wait("pk.started")
        assert ev["room"] == room and "seq" in ev
        assert ev["data"]["id"] == pk_id and ev["data"]["ends_at"] == started["ends_at"]
    snap = await (await b_node.client("late")).join(b)
    assert snap["room"]["pk"]["id"] == pk_id and snap["room"]["pk"]["state"] == "started"
    assert snap["room"]["pk"]["scores"] == {a: 0, b: 0}

    # Points: gifts in each room during the battle (catalog: rose 10, rocket 500).
    await s["va"].send_gift(a, "rose", 3)
    await s["vb"].send_gift(b, "rocket", 1)
    await s["vb"].send_gift(b, "rose", 1, cid="g-1")
    await s["vb"].send_gift(b, "rose", 1, cid="g-1")  # a retried cid counts once
    want = {a: 30, b: 510}
    for rec in (s["va_rec"], s["vb_rec"]):
        await rec.wait("pk.score", lambda e: e["data"] == {"id": pk_id, "scores": want}, timeout=3)
    await asyncio.sleep(0.5)  # a snapshot's scores may be up to one pk.score interval old
    for node, room in ((a_node, a), (b_node, b)):
        snap = await (await node.client(f"late-{room}")).join(room)
        assert snap["room"]["pk"]["scores"] == want  # a late joiner sees the score bar at once

    await expect_error(s["va"].pk_end(a, pk_id), "forbidden")
    ended = (await s["ha"].pk_end(a, pk_id))["pk"]
    assert ended["winner"] == b and ended["scores"] == want
    for rec in (s["va_rec"], s["vb_rec"]):
        (ev,) = await rec.wait("pk.ended")
        assert ev["data"] == {"id": pk_id, "rooms": [a, b], "scores": want, "winner": b, "reason": "ended"}
        assert "seq" in ev
    await expect_error(s["hb"].pk_end(b, pk_id), "not_found")
    # After the battle gifts score nothing and both rooms are free again.
    await s["va"].send_gift(a, "castle", 1)
    snap = await (await a_node.client("late2")).join(a)
    assert snap["room"]["pk"] is None
    await s["hb"].pk_invite(b, a, duration_s=30)


async def test_battle_on_one_node(server: Server) -> None:
    await battle(server, server)


async def test_battle_across_two_nodes_sharing_the_bus(make_node: MakeNode, hub: MemoryHub) -> None:
    await battle(await make_node(hub), await make_node(hub))


async def test_conflicts_and_missing_rooms(server: Server) -> None:
    s = await two_rooms(server, server)
    a, b = s["a"], s["b"]
    await expect_error(s["ha"].pk_invite(a, "no-such-room"), "not_found")
    await expect_error(s["ha"].pk_invite(a, a), "bad_request")
    await expect_error(s["va"].pk_invite(a, b), "forbidden")
    await expect_error(s["ha"].pk_invite(a, b, duration_s=0), "bad_request")
    c = new_room_id("c")
    hc, _ = await joined(server, c, "hc", "host")
    # A failed invitation (missing target) left room A free:
    pk_id = (await s["ha"].pk_invite(a, b))["pk"]["id"]
    await expect_error(hc.pk_invite(c, a), "conflict")  # A is busy (its own invitation)
    await expect_error(hc.pk_invite(c, b), "conflict")  # B is busy (invited)
    await expect_error(s["hb"].pk_invite(b, c), "conflict")
    # The failed invitations changed nothing: C is still free, and A/B's one still stands.
    await s["hb"].pk_accept(b, pk_id)
    await expect_error(hc.pk_invite(c, a), "conflict")  # in battle
    d = new_room_id("d")
    await joined(server, d, "hd", "host")
    await hc.pk_invite(c, d)


async def test_reject_and_withdraw(server: Server) -> None:
    s = await two_rooms(server, server)
    a, b = s["a"], s["b"]
    pk_id = (await s["ha"].pk_invite(a, b))["pk"]["id"]
    await s["hb"].pk_reject(b, pk_id)
    for rec in (s["ha_rec"], s["hb_rec"]):
        (ev,) = await rec.wait("pk.rejected")
        assert ev["data"] == {"id": pk_id, "rooms": [a, b], "by_room": b}
    await expect_error(s["hb"].pk_accept(b, pk_id), "not_found")
    # The inviting host may withdraw the same way.
    pk_id = (await s["ha"].pk_invite(a, b))["pk"]["id"]
    await s["ha"].pk_reject(a, pk_id)
    await s["hb_rec"].wait("pk.rejected", lambda e: e["data"]["id"] == pk_id)
    await s["va_rec"].quiet()
    assert s["va_rec"].named("pk.rejected") == [] and s["va_rec"].named("pk.invited") == []


async def test_invitation_expires(server: Server, short_expiry: int) -> None:
    s = await two_rooms(server, server)
    a, b = s["a"], s["b"]
    pk_id = (await s["ha"].pk_invite(a, b))["pk"]["id"]
    for rec in (s["ha_rec"], s["hb_rec"]):
        (ev,) = await rec.wait("pk.expired", timeout=3)
        assert ev["data"] == {"id": pk_id, "rooms": [a, b]}
    await expect_error(s["hb"].pk_accept(b, pk_id), "not_found")
    await s["hb"].pk_invite(b, a)  # both free again


async def test_time_runs_out_draw_and_webhook(make_node: MakeNode, hub: MemoryHub) -> None:
    got: list[dict] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(json.loads(await request.read()))
        return web.Response(status=204)

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    ts = TestServer(receiver, host="127.0.0.1")
    await ts.start_server()
    try:
        url = f"http://127.0.0.1:{ts.port}/hook"
        # Two nodes, both watching both rooms: both notice ends_at; each room ends once.
        n1, n2 = await make_node(hub, webhook_url=url), await make_node(hub, webhook_url=url)
        s = await two_rooms(n1, n2)
        a, b = s["a"], s["b"]
        await joined(n2, a, "va2")
        await joined(n1, b, "vb2")
        pk_id = (await s["ha"].pk_invite(a, b, duration_s=1))["pk"]["id"]
        await s["hb"].pk_accept(b, pk_id)
        await s["va"].send_gift(a, "rose", 2)
        await s["vb"].send_gift(b, "rose", 2)
        for rec in (s["va_rec"], s["vb_rec"]):
            (ev,) = await rec.wait("pk.ended", timeout=4)
            assert ev["data"] == {
                "id": pk_id,
                "rooms": [a, b],
                "scores": {a: 20, b: 20},
                "winner": None,
                "reason": "time",
            }
        # Webhooks leave through the endpoint's durable queue: await the delivery, then
        # give a second one (which must not come) longer than a worker's idle poll.
        deadline = asyncio.get_running_loop().time() + 20
        while not any(g["event"] == "pk.ended" for g in got):
            assert asyncio.get_running_loop().time() < deadline, "no pk.ended webhook"
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.5)
        for rec in (s["va_rec"], s["vb_rec"]):
            assert len(rec.named("pk.ended")) == 1
        hooks = [g for g in got if g["event"] == "pk.ended"]
        assert len(hooks) == 1 and hooks[0]["room"] == a and hooks[0]["data"]["winner"] is None
    finally:
        await ts.close()


async def test_show_end_ends_the_battle(server: Server) -> None:
    s = await two_rooms(server, server)
    a, b = s["a"], s["b"]
    await s["ha"].start(a)
    pk_id = (await s["ha"].pk_invite(a, b))["pk"]["id"]
    await s["hb"].pk_accept(b, pk_id)
    await s["vb"].send_gift(b, "heart", 1)
    await s["ha"].end(a)
    (ev,) = await s["vb_rec"].wait("pk.ended")
    assert ev["data"]["reason"] == "room_ended" and ev["data"]["winner"] == b


async def test_an_invitation_written_a_moment_ago_by_another_node_can_be_accepted(
    make_node: MakeNode, hub: MemoryHub
) -> None:
    """Node b's copy of room B follows the room's channel, so just after node a wrote the
    invitation it may not have it yet (a CI run's accept through b, at once, was answered
    `not_found`). Before saying so, b reads the room from the bus."""
    a_node, b_node = await make_node(hub=hub), await make_node(hub=hub)
    s = await two_rooms(a_node, b_node)
    b_key = room_key(APP, s["b"])
    node_b = b_node.app[NODE_KEY]
    stale = node_b._docs[b_key]  # b's copy of room B before the invitation
    pk_id = (await s["ha"].pk_invite(s["a"], s["b"], duration_s=60))["pk"]["id"]
    await s["hb_rec"].wait("pk.invited")  # the channel delivered it: b's copy was dropped
    node_b._docs[b_key] = stale  # as if it had not been delivered yet
    started = (await s["hb"].pk_accept(s["b"], pk_id))["pk"]
    assert started["hosts"] == {s["a"]: "ha", s["b"]: "hb"}
    # A PK that does not exist is still not found (read twice, then answered).
    await expect_error(s["hb"].pk_reject(s["b"], "pk-000000000000"), "not_found")
