"""A scripted show that makes a record of every behaviour kind, and the records
it must leave in the store (shared by the pipeline tests on each bus)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from roomserver.core.behaviour import KINDS, MARKS, TRACK_ACTIONS, BehaviourEvent
from tests.server_fixtures import Recorder, Server

PRODUCT = {"id": "jacket", "title": "轻暖羽绒服", "price_cents": 45900}
JACKET: dict[str, Any] = {
    "title": "轻暖羽绒服",
    "title_en": "down jacket",
    "price_cents": 59900,
    "aliases": ["羽绒服", "jacket"],
    "attributes": {"sizes": {"zh": "S到XXL", "en": "S to XXL"}},
}


async def scripted_show(server: Server, room: str) -> dict[str, Any]:
    """Run one show; what the test knows about it (users' expected kinds)."""
    status, body = await server.admin("PUT", "/v1/products/jacket", JACKET)
    assert status == 200, body
    host = await server.client("h1", "host")
    await host.join(room)
    started = (await host.start(room, title="Spring tea"))["room"]
    ann = await server.client("ann")
    bob = await server.client("bob")
    await ann.join(room)
    link = await ann.share_link(room)
    assert (await bob.join(room, ref=link["ref"]))["attribution"] == "attributed"  # came by ann's link
    await ann.send_barrage(room, "hello")
    await ann.send_like(room, 3)
    await bob.send_gift(room, "rose", 2)
    for action in TRACK_ACTIONS:
        await ann.track(room, action, product="jacket")
    await host.pin_product(room, PRODUCT)
    sale = (await host.sale_create(room, product=PRODUCT, price_cents=1000, stock=5, limit_per_user=2))[
        "sale"
    ]
    order = (await bob.sale_buy(room, sale["id"], qty=2))["order"]
    lottery = (await host.lottery_create(room, prize="Mug", winners=1, duration_ms=60_000))["lottery"]
    await ann.lottery_enter(room, lottery["id"])
    poll = (
        await host.poll_create(room, question="Which tea?", options=["green", "black"], duration_ms=60_000)
    )["poll"]
    await bob.poll_vote(room, poll["id"], 1)
    coupon = (
        await host.coupon_issue(
            room, title="5 off", discount_cents=500, min_spend_cents=1000, quantity=5, per_user=1
        )
    )["coupon"]
    await ann.coupon_claim(room, coupon["id"])
    packet = (await host.redpacket_send(room, total_cents=300, count=3))["packet"]
    grab = await bob.redpacket_grab(room, packet["id"])
    rec_bob = Recorder(bob)
    await bob.send_barrage(room, "有什么尺码？")  # the assistant answers it (the jacket is pinned)
    await rec_bob.wait("assistant.answer", timeout=20)
    await host.unpin_product(room)
    await ann.leave(room)
    await bob.close()  # a closed socket ends its session too
    ended = await host.end(room)
    return {
        "started_at": started["started_at"],
        "show": ended["summary"]["show"],
        "order": order,
        "sale": sale["id"],
        "grab": grab["amount_cents"],
        "ids": {
            "lottery": lottery["id"],
            "poll": poll["id"],
            "coupon": coupon["id"],
            "redpacket": packet["id"],
        },
    }


def check_records(
    events: list[BehaviourEvent], show: dict[str, Any], app: str, room: str, before: list[BehaviourEvent]
) -> None:
    """The stored records are exactly what the script did, with correct show times
    (``before``: the room's records before its first show: the host's join, unless
    it fell in the very millisecond the show started: then it is the show's, at 0)."""
    (host_join,) = [e for e in [*before, *events] if (e.user, e.kind) == ("h1", "join")]
    assert (host_join.show, host_join.show_ms) in ((0, 0), (show["show"], 0)), host_join
    assert [e for e in before if e is not host_join] == [], before
    events = [e for e in events if e is not host_join]
    kinds = Counter(e.kind for e in [*events, host_join])
    assert set(kinds) == KINDS, KINDS - set(kinds)  # the show has every kind
    assert len({e.id for e in events}) == len(events)
    started = show["started_at"]
    for e in events:
        assert (e.app, e.room, e.show) == (app, room, show["show"]), e
        assert e.show_ms == e.ts - started, e
    by_user = Counter((e.user, e.kind) for e in events)
    assert by_user == Counter(
        {
            ("ann", "join"): 1,
            ("bob", "join"): 1,
            ("ann", "barrage"): 1,
            ("bob", "barrage"): 1,
            ("ann", "like"): 1,
            ("bob", "gift"): 1,
            ("ann", "track"): len(TRACK_ACTIONS),
            ("h1", "mark"): len(MARKS),
            ("bob", "order"): 1,
            ("ann", "lottery.enter"): 1,
            ("bob", "vote"): 1,
            ("ann", "coupon.claim"): 1,
            ("bob", "redpacket.grab"): 1,
            ("bob", "assistant"): 1,
            ("ann", "leave"): 1,
            ("bob", "leave"): 1,
            ("h1", "show.start"): 1,
            ("h1", "show.end"): 1,
        }
    ), by_user
    one = {e.kind: e for e in events if e.kind not in ("mark", "track", "join", "leave", "barrage")}
    assert one["show.start"].show_ms == 0 and one["show.start"].data == {"title": "Spring tea", "host": "h1"}
    assert one["like"].data == {"count": 3}
    assert one["gift"].data["gift"]["id"] == "rose" and one["gift"].data["count"] == 2
    assert one["gift"].data["value"] > 0
    order = show["order"]
    assert one["order"].data == {
        "order": order["id"],
        "sale": show["sale"],
        "product": "jacket",
        "qty": 2,
        "amount": 2000,
    }
    assert one["vote"].data == {"poll": show["ids"]["poll"], "option": 1}
    assert one["lottery.enter"].data == {"lottery": show["ids"]["lottery"]}
    assert one["coupon.claim"].data == {"coupon": show["ids"]["coupon"]}
    assert one["redpacket.grab"].data == {"packet": show["ids"]["redpacket"], "amount": show["grab"]}
    assert one["assistant"].data["answered"] is True
    marks = {e.data["what"]: e.data for e in events if e.kind == "mark"}
    assert set(marks) == set(MARKS)
    assert marks["pin"]["product"] == marks["unpin"]["product"] == marks["sale"]["product"] == "jacket"
    for what, id_ in show["ids"].items():
        assert marks[what]["id"] == id_
    assert {e.data["action"] for e in events if e.kind == "track"} == set(TRACK_ACTIONS)
    joins = {e.user: e.ts for e in [*before, *events] if e.kind == "join"}
    assert {e.user: e.data for e in events if e.kind == "join"} == {"ann": {}, "bob": {"ref": "ann"}}
    for leave in (e for e in events if e.kind == "leave"):
        assert leave.data == {"joined_at": joins[leave.user]}, leave
