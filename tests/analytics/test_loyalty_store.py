"""The loyalty facet on both engines: points per rule and their daily caps, profiles
of a scripted pair of shows computed by hand, segments agreeing with the tag rules,
and redemptions that are exact, idempotent and never negative."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from roomserver.core.behaviour import BehaviourEvent
from roomserver.core.loyalty import DAY_MS, TAGS, LoyaltyRules
from roomserver.protocol import OpError
from roomserver.store.store import AnalyticsStore

REPO = Path(__file__).resolve().parents[2]
DAY = 20_000
# 00:00 of day DAY at +08:00 (the default points day), in UTC ms.
DAY0 = DAY * DAY_MS - 8 * 3_600_000
MIN = 60_000
_ids = itertools.count(1)


@pytest.fixture
async def store(store_args: dict[str, Any]) -> AsyncIterator[AnalyticsStore]:
    s = await AnalyticsStore.open(**store_args)
    yield s
    await s.close()


def ev(
    user: str, kind: str, ts: int, *, room: str = "r1", show: int = 1, app: str = "a", **data: Any
) -> BehaviourEvent:
    return BehaviourEvent(f"t-{next(_ids)}", app, room, show, user, kind, ts, 0, data)  # type: ignore[arg-type]


async def ledger(store: AnalyticsStore, user: str, app: str = "a") -> dict[tuple[int, str], tuple[int, int]]:
    held = await store.loyalty.export_user(app, user)
    return {(p["day"], p["rule"]): (p["units"], p["points"]) for p in held["points"]}


async def test_points_per_rule_with_daily_caps_across_batches(store: AnalyticsStore) -> None:
    t = DAY0 + 10 * 3_600_000
    log = store.events
    # barrage: 1 each, 20 a day — 25 in two batches are 20; 3 the next day are 3
    await log.ingest([ev("u", "barrage", t + i) for i in range(10)])
    await log.ingest([ev("u", "barrage", t + 100 + i) for i in range(15)])
    await log.ingest([ev("u", "barrage", t + DAY_MS + i) for i in range(3)])
    # like: 1 per 10 likes, 10 a day — 7 + 8 likes are 1 point; 200 more reach the cap
    await log.ingest([ev("u", "like", t, count=7), ev("u", "like", t + 1, count=8)])
    first = await ledger(store, "u")
    await log.ingest([ev("u", "like", t + 2, count=100), ev("u", "like", t + 3, count=100)])
    # gift: 1 per yuan, 1000 a day — two 0.50 gifts are 1 point; 1,500 yuan more reach the cap
    await log.ingest([ev("u", "gift", t, value=50, gift="g", count=1)])
    await log.ingest([ev("u", "gift", t + 1, value=50, gift="g", count=1)])
    await log.ingest([ev("u", "gift", t + 2, value=150_000, gift="g", count=1)])
    # order: 1 per yuan (123.45 yuan → 123)
    await log.ingest([ev("u", "order", t, amount=12_345, order="o1", sale="s", product="p", qty=1)])
    # watch: 1 a minute, 60 a day — 61 min then 5 min more are 60; 150 s the next day are 2
    await log.ingest([ev("u", "leave", t + 61 * MIN, joined_at=t)])
    await log.ingest([ev("u", "leave", t + 70 * MIN, joined_at=t + 65 * MIN)])
    await log.ingest([ev("u", "leave", t + DAY_MS + 150_000, joined_at=t + DAY_MS)])
    assert first[(DAY, "like")] == (15, 1)
    assert await ledger(store, "u") == {
        (DAY, "barrage"): (25, 20),
        (DAY + 1, "barrage"): (3, 3),
        (DAY, "like"): (215, 10),
        (DAY, "gift"): (150_100, 1000),
        (DAY, "order"): (12_345, 123),
        (DAY, "watch"): (66 * MIN, 60),
        (DAY + 1, "watch"): (150_000, 2),
    }
    profile = await store.loyalty.profile("a", "u", t)
    assert profile is not None
    assert profile["points"] == profile["points_earned"] == 20 + 3 + 10 + 1000 + 123 + 60 + 2
    # a batch delivered again changes nothing
    before = await ledger(store, "u")
    again = [ev("u", "barrage", t + DAY_MS + 5)]
    await log.ingest(again)
    await log.ingest(again)
    after = await ledger(store, "u")
    assert after[(DAY + 1, "barrage")] == (4, 4) and {
        k: v for k, v in after.items() if k != (DAY + 1, "barrage")
    } == {k: v for k, v in before.items() if k != (DAY + 1, "barrage")}


async def test_the_cap_resets_at_local_midnight(store: AnalyticsStore) -> None:
    await store.events.ingest([ev("u", "barrage", DAY0 - 1 - i) for i in range(25)])
    await store.events.ingest([ev("u", "barrage", DAY0 + i) for i in range(25)])
    assert await ledger(store, "u") == {(DAY - 1, "barrage"): (25, 20), (DAY, "barrage"): (25, 20)}


async def test_share_points_for_viewers_new_to_the_app_capped(store: AnalyticsStore) -> None:
    t = DAY0 + 3_600_000
    await store.events.ingest([ev("old", "join", t - DAY_MS), ev("sharer", "join", t - DAY_MS)])
    # 11 new viewers through the sharer's link (one batch, then one alone), one viewer
    # already known, one naming itself, one from another app: 10 × 20 = the cap of 200
    await store.events.ingest([ev(f"n{i}", "join", t + i, ref="sharer") for i in range(10)])
    await store.events.ingest(
        [
            ev("n10", "join", t + 50, ref="sharer"),
            ev("old", "join", t + 60, ref="sharer"),
            ev("self", "join", t + 70, ref="self"),
            ev("x", "join", t + 80, ref="sharer", app="b"),
        ]
    )
    # n0 joins again through the link in another show: not new any more
    await store.events.ingest([ev("n0", "join", t + 100, show=2, ref="sharer")])
    assert await ledger(store, "sharer") == {(DAY, "share"): (11, 200)}
    sharer = await store.loyalty.profile("a", "sharer", t)
    assert sharer is not None and (sharer["referrals"], sharer["points"]) == (11, 200)
    assert await ledger(store, "self") == {} and await ledger(store, "sharer", app="b") == {
        (DAY, "share"): (1, 20)
    }


def _scripted_shows() -> tuple[list[list[BehaviourEvent]], int, int]:
    """Two shows of room r1, a day apart; the batches as the writer would see them."""
    s1, s2 = DAY0 + 20 * 3_600_000, DAY0 + DAY_MS + 20 * 3_600_000  # 20:00 local
    show1 = [
        ev("host", "show.start", s1, title="Tea", host="host"),
        ev("alice", "join", s1 + 5_000),
        ev("alice", "barrage", s1 + 60_000),
        ev("alice", "barrage", s1 + 61_000),
        ev("alice", "barrage", s1 + 62_000),
        ev("bob", "join", s1 + 60_000, ref="alice"),  # new to the app: alice's share
        ev("alice", "like", s1 + 70_000, count=30),
        ev("alice", "track", s1 + 80_000, action="product.click", product="p1"),
        ev("carol", "join", s1 + 90_000),
        *[ev("carol", "barrage", s1 + 100_000 + i) for i in range(25)],
        ev("alice", "order", s1 + 600_000, order="o1", sale="s1", product="p1", qty=2, amount=5_000),
        ev("carol", "leave", s1 + 90_000 + 5 * MIN, joined_at=s1 + 90_000),
        ev("bob", "leave", s1 + 60_000 + 20 * MIN, joined_at=s1 + 60_000),
        ev("alice", "leave", s1 + 5_000 + 30 * MIN, joined_at=s1 + 5_000),
        ev("host", "mark", s1 + 100, what="pin", product="p1"),
        ev("host", "show.end", s1 + 40 * MIN),
    ]
    show2 = [
        ev("host", "show.start", s2, show=2, title="Tea 2", host="host"),
        ev("alice", "join", s2 + 1_000, show=2),
        ev("carol", "join", s2 + 2_000, show=2, ref="alice"),  # carol is known: no share points
        ev("alice", "gift", s2 + 3_000, show=2, gift="rose", count=50, value=500),
        ev("alice", "order", s2 + 4_000, show=2, order="o2", sale="s2", product="p2", qty=1, amount=12_000),
        ev("carol", "leave", s2 + 2_000 + 2 * MIN, show=2, joined_at=s2 + 2_000),
        ev("alice", "leave", s2 + 1_000 + 45 * MIN, show=2, joined_at=s2 + 1_000),
        ev("host", "show.end", s2 + 50 * MIN, show=2),
    ]
    return [show1[:9], show1[9:], show2], s1, s2


async def test_profiles_of_a_scripted_pair_of_shows(store: AnalyticsStore) -> None:
    batches, s1, s2 = _scripted_shows()
    for batch in batches:
        await store.events.ingest(batch)
    await store.events.ingest(batches[1])  # re-delivered: nothing counts twice
    now = s2 + 3_600_000
    alice = await store.loyalty.profile("a", "alice", now)
    # alice: watch 30 + 45 min (points 30 + 45), 3 barrages (3), 30 likes (3), orders of
    # 50 and 120 yuan (50 + 120), a 5-yuan gift (5), bob's share (20)
    assert alice == {
        "user": "alice",
        "shows_attended": 2,
        "watch_ms": 75 * MIN,
        "watch_minutes": 75,
        "interactions": {
            "total": 6,
            "barrage": 3,
            "like": 1,
            "gift": 1,
            "vote": 0,
            "track": 1,
            "lottery": 0,
            "coupon": 0,
            "redpacket": 0,
        },
        "orders": 2,
        "order_shows": 2,
        "gmv_cents": 17_000,
        "gift_value_cents": 500,
        "referrals": 1,
        "points": 276,
        "points_earned": 276,
        "points_spent": 0,
        "first_seen": s1 + 5_000,
        "last_seen": s2 + 1_000 + 45 * MIN,
        "last_order": s2 + 4_000,
        "tier": 1,
        "tags": ["new", "buyer", "repeat buyer", "gifter"],
        "rfm": {"r": 5, "f": 2, "m": 3, "score": 10},
    }
    bob = await store.loyalty.profile("a", "bob", now)
    assert bob is not None
    assert (bob["shows_attended"], bob["watch_minutes"], bob["interactions"]["total"], bob["points"]) == (
        1,
        20,
        0,
        20,
    )
    assert bob["tags"] == ["new", "lurker"] and bob["tier"] == 0
    carol = await store.loyalty.profile("a", "carol", now)
    assert carol is not None
    # 25 barrages capped at 20 points, 5 + 2 minutes watched
    assert (carol["shows_attended"], carol["watch_minutes"], carol["interactions"]["barrage"]) == (2, 7, 25)
    assert (carol["points"], carol["orders"], carol["tags"]) == (27, 0, ["new"])
    # staff records (marks, show bounds) make no profile of their own beyond what the host did
    assert await store.loyalty.profile("a", "host", now) is None
    assert await store.loyalty.profile("other-app", "alice", now) is None
    # 40 days later: alice (a buyer) is at risk, nobody is new
    later = await store.loyalty.profile("a", "alice", s2 + 40 * DAY_MS)
    assert later is not None and later["tags"] == ["buyer", "repeat buyer", "gifter", "at risk"]


async def test_segments_agree_with_the_tag_rules_and_page_completely(store: AnalyticsStore) -> None:
    batches, s1, s2 = _scripted_shows()
    for batch in batches:
        await store.events.ingest(batch)
    # more users, varied: buyers, gifters, lurkers, lapsed viewers of 3 shows
    extra = []
    for i in range(40):
        u, t = f"v{i:02d}", s1 - (i % 5) * 20 * DAY_MS
        extra.append(ev(u, "join", t, show=1 + i % 4))
        if i % 3 == 0:
            extra.append(ev(u, "order", t + 1, order=f"o{i}", sale="s", product="p", qty=1, amount=100 * i))
        if i % 4 == 0:
            extra.append(ev(u, "gift", t + 2, gift="g", count=1, value=10 * i + 1))
        if i % 5 == 1:
            extra.append(ev(u, "leave", t + 15 * MIN, joined_at=t))
        if i % 7 == 0:
            extra += [ev(u, "join", t + 3, show=10 + k) for k in range(3)]
    await store.events.ingest(extra)
    now = s2 + 3_600_000
    everyone, _ = await store.loyalty.segment("a", now_ms=now, limit=1000)
    assert len(everyone) == 3 + 40
    for tag in TAGS:
        page, _ = await store.loyalty.segment("a", now_ms=now, tag=tag, limit=1000)
        expected = [p["user"] for p in everyone if tag in p["tags"]]
        assert [p["user"] for p in page] == expected, tag
        assert expected or tag == "new", f"the script should exercise {tag!r}"
    for days in (0, 10, 30, 61):
        page, _ = await store.loyalty.segment("a", now_ms=now, not_seen_days=days, limit=1000)
        assert [p["user"] for p in page] == [
            p["user"] for p in everyone if p["last_seen"] < now - days * DAY_MS
        ]
    tier1, _ = await store.loyalty.segment("a", now_ms=now, min_tier=1, limit=1000)
    assert [p["user"] for p in tier1] == [p["user"] for p in everyone if p["tier"] >= 1] and tier1
    assert (await store.loyalty.segment("a", now_ms=now, min_tier=9, limit=10)) == ([], None)
    # paging: complete, in user id order, each user once
    seen, after = [], ""
    while True:
        page, last = await store.loyalty.segment("a", now_ms=now, after=after, limit=7)
        seen += [p["user"] for p in page]
        if last is None:
            break
        after = last
    assert seen == sorted(p["user"] for p in everyone)


async def _funded(store: AnalyticsStore, user: str, yuan: int) -> None:
    """Give ``user`` exactly ``yuan`` points through an order (1 point a yuan)."""
    await store.events.ingest(
        [ev(user, "order", DAY0, order="o", sale="s", product="p", qty=1, amount=yuan * 100)]
    )
    assert await store.loyalty.points_earned("a", user) == yuan


async def test_redeem_is_exact_idempotent_and_never_negative(store: AnalyticsStore) -> None:
    lo = store.loyalty
    await _funded(store, "u", 250)
    await lo.put_reward("a", "tea", "Tea coupon", 100, {"id": "TEA-10", "discount_cents": 1000}, 1)
    await lo.put_reward("a", "cup", "Cup coupon", 30, {"id": "CUP"}, 1)
    first = await lo.redeem("a", "u", "tea", "c1", 10)
    assert first["points_left"] == 150 and first["claim"]["coupon"] == "TEA-10"
    assert await lo.redeem("a", "u", "tea", "c1", 11) == first  # a retry: the first result
    assert (await lo.redeem("a", "u", "tea", "c2", 12))["points_left"] == 50
    for bad, code in (
        (("tea", "c3"), "limit_reached"),
        (("cup", "c1"), "conflict"),
        (("nope", "c4"), "bad_request"),
    ):
        with pytest.raises(OpError) as err:
            await lo.redeem("a", "u", *bad, 13)
        assert err.value.code == code
    with pytest.raises(OpError) as err:  # another app's user of the same id holds nothing
        await lo.redeem("b", "u", "tea", "c5", 13)
    assert err.value.code == "bad_request"  # app b has no reward "tea"
    profile = await lo.profile("a", "u", 20)
    assert profile is not None and (profile["points"], profile["points_spent"], profile["points_earned"]) == (
        50,
        200,
        250,
    )
    held = await lo.export_user("a", "u")
    assert [(r["cid"], r["reward"], r["cost"]) for r in held["redemptions"]] == [
        ("c1", "tea", 100),
        ("c2", "tea", 100),
    ]
    # a deleted reward: a retry still answers; a new redemption of it is a bad request
    assert await lo.delete_reward("a", "tea")
    assert await lo.redeem("a", "u", "tea", "c1", 14) == first
    with pytest.raises(OpError):
        await lo.redeem("a", "u", "tea", "c9", 14)


async def test_concurrent_redeems_from_two_connections_never_overspend(
    store: AnalyticsStore, store_args: dict[str, Any]
) -> None:
    other = await AnalyticsStore.open(**store_args)  # a second pool / file connection
    try:
        await _funded(store, "u", 1000)
        await store.loyalty.put_reward("a", "cup", "Cup", 30, {"id": "CUP"}, 1)
        stores = (store.loyalty, other.loyalty)

        async def attempt(i: int, user: str, cid: str) -> dict[str, Any] | str:
            try:
                return await stores[i % 2].redeem("a", user, "cup", cid, i)
            except OpError as err:
                return err.code

        # 50 distinct cids of u (33 fit in 1000 points), and one cid of w sent 6 times at
        # once, w holding exactly the cost (the retries must replay, not find too few points)
        await _funded(store, "w", 30)
        results = await asyncio.gather(
            *(attempt(i, "u", f"c{i}") for i in range(50)), *(attempt(i, "w", "same") for i in range(6))
        )
        distinct, same = results[:50], results[50:]
        wins = [r for r in distinct if isinstance(r, dict)]
        assert all(r == "limit_reached" for r in distinct if not isinstance(r, dict))
        assert len(wins) == 33
        assert sorted(r["points_left"] for r in wins) == [1000 - 30 * k for k in range(1, 34)][::-1]
        assert all(s == same[0] for s in same) and isinstance(same[0], dict), same
        assert same[0]["points_left"] == 0
        w = await store.loyalty.profile("a", "w", 0)
        assert w is not None and (w["points"], w["points_spent"]) == (0, 30)
        profile = await store.loyalty.profile("a", "u", 0)
        assert profile is not None and (profile["points"], profile["points_spent"]) == (10, 990)
    finally:
        await other.close()


_REDEEMER = """
import asyncio, json, sys
from pathlib import Path
from roomserver.store.store import AnalyticsStore
from roomserver.protocol import OpError
async def main(args):
    if "data_dir" in args:
        args["data_dir"] = Path(args["data_dir"])
    store = await AnalyticsStore.open(**args)
    out = []
    async def one(i):
        try:
            out.append((await store.loyalty.redeem("a", "u", "cup", f"p{i}", i))["points_left"])
        except OpError as err:
            out.append(err.code)
    await asyncio.gather(*(one(i) for i in range(25)))
    await store.close()
    print(json.dumps(out))
asyncio.run(main(json.loads(sys.argv[1])))
"""


async def test_redeems_from_two_processes_never_overspend(
    store: AnalyticsStore, store_args: dict[str, Any]
) -> None:
    import json

    await _funded(store, "u", 600)
    await store.loyalty.put_reward("a", "cup", "Cup", 30, {"id": "CUP"}, 1)
    args = {k: str(v) for k, v in store_args.items()}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _REDEEMER,
        json.dumps(args),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    mine: list[int | str] = []

    async def one(i: int) -> None:
        try:
            mine.append((await store.loyalty.redeem("a", "u", "cup", f"m{i}", i))["points_left"])
        except OpError as err:
            mine.append(err.code)

    out, _ = await asyncio.gather(proc.communicate(), asyncio.gather(*(one(i) for i in range(25))))
    assert proc.returncode == 0
    theirs = json.loads(out[0])
    lefts = sorted(x for x in [*mine, *theirs] if isinstance(x, int))
    assert lefts == [600 - 30 * k for k in range(1, 21)][::-1]  # 20 fit, each balance once
    assert sorted(x for x in [*mine, *theirs] if isinstance(x, str)) == ["limit_reached"] * 30
    profile = await store.loyalty.profile("a", "u", 0)
    assert profile is not None and profile["points"] == 0


async def test_erasure_removes_profile_points_and_redemptions(store: AnalyticsStore) -> None:
    await _funded(store, "u", 100)
    await store.loyalty.put_reward("a", "cup", "Cup", 30, {"id": "CUP"}, 1)
    await store.loyalty.redeem("a", "u", "cup", "c1", 1)
    await store.erase_user("a", "u")
    assert await store.loyalty.profile("a", "u", 0) is None
    assert await store.loyalty.export_user("a", "u") == {
        "profile": None,
        "points": [],
        "redemptions": [],
        "shows": [],
    }


def test_rules_are_the_configured_ones() -> None:
    from roomserver.config import Config

    rules = Config(points_rules="barrage=3:9", member_tiers="10,20", points_day_offset_min=0).loyalty_rules()
    assert rules == LoyaltyRules(rules={"barrage": rules.rules["barrage"]}, tiers=(10, 20), day_offset_min=0)
    assert rules.day_points("barrage", 5) == 9


async def test_two_writers_ingesting_one_user_keep_caps_and_counts_exact(
    store: AnalyticsStore, store_args: dict[str, Any]
) -> None:
    """Two ingest writers (two pools / connections), one record per batch, all at once:
    the day's cap and the counters come out as from one writer."""
    other = await AnalyticsStore.open(**store_args)
    try:
        t = DAY0 + 3_600_000
        batches = [[ev("u", "barrage", t + i)] for i in range(30)]
        batches += [[ev("u", "like", t + 100 + i, count=5)] for i in range(10)]
        batches += [[ev(f"n{i}", "join", t + 200 + i, ref="u")] for i in range(12)]
        writers = (store.events, other.events)
        await asyncio.gather(*(writers[i % 2].ingest(b) for i, b in enumerate(batches)))
        assert await ledger(store, "u") == {
            (DAY, "barrage"): (30, 20),
            (DAY, "like"): (50, 5),
            (DAY, "share"): (12, 200),
        }
        profile = await store.loyalty.profile("a", "u", t)
        assert profile is not None
        assert (profile["points"], profile["referrals"], profile["interactions"]["total"]) == (225, 12, 40)
    finally:
        await other.close()


def _mixed_stream(app: str) -> list[BehaviourEvent]:
    """60 users over 3 rooms, 2 shows and 3 days, every rule, two daily caps reached, and a
    referral for a third of them (their first record: new to the app whatever the batching)."""
    out: list[BehaviourEvent] = []
    t = DAY0 + 3_600_000
    for u in range(60):
        user, at = f"m{u}", t + u * 7_000
        ref = {"ref": f"m{u - 1}"} if u % 3 == 1 else {}
        out.append(ev(user, "join", at, app=app, room=f"r{u % 3}", **ref))
    for i in range(900):
        u, kind = (i * 7) % 60, ("barrage", "like", "gift", "order", "leave", "vote", "track")[i % 7]
        ts = t + 500_000 + i * 290_000  # ~3 days in all: the caps of several days
        data: dict[str, Any] = {
            "barrage": {},
            "like": {"count": 1 + i % 13},
            "gift": {"gift": "rose", "count": 1, "value": 50 + i},
            "order": {"order": f"o{i}", "sale": "s", "product": "p", "qty": 1, "amount": 999 + i * 10},
            "leave": {"joined_at": ts - (i % 50) * MIN},
            "vote": {"poll": "q", "option": 1},
            "track": {"action": "product.click", "product": "p"},
        }[kind]
        out.append(ev(f"m{u}", kind, ts, app=app, room=f"r{i % 3}", show=1 + i % 2, **data))
    # Two heavy users reach the barrage and the like caps, across batches of 7.
    out += [ev("m0", "barrage", t + 600_000 + j, app=app) for j in range(40)]
    out += [ev("m1", "like", t + 700_000 + j, app=app, count=10) for j in range(25)]
    return out


async def test_one_big_batch_and_many_small_ones_give_the_same_profiles_and_ledger(
    store: AnalyticsStore,
) -> None:
    """The bulk statements (one per table per batch) against batches of 7 records: every
    counter, point and show of every user is the same (app "big" vs app "small")."""
    await store.events.ingest(_mixed_stream("big"))
    small = _mixed_stream("small")
    for i in range(0, len(small), 7):
        await store.events.ingest(small[i : i + 7])
    now = DAY0 + 10 * DAY_MS
    held = []
    for u in range(60):
        big = await store.loyalty.export_user("big", f"m{u}")
        little = await store.loyalty.export_user("small", f"m{u}")
        assert big == little, f"m{u}"
        assert (await store.loyalty.profile("big", f"m{u}", now)) == (
            await store.loyalty.profile("small", f"m{u}", now)
        )
        held.append(big)
    # The stream does reach every rule, a cap, a referral and an order show.
    rules = {p["rule"] for h in held for p in h["points"]}
    assert rules == {"watch", "barrage", "like", "gift", "order", "share"}
    assert any(h["profile"]["referrals"] for h in held)
    assert any(s["ordered"] for h in held for s in h["shows"])
    points = {(p["rule"], p["points"]) for h in held for p in h["points"]}
    assert ("barrage", 20) in points and ("like", 10) in points  # the caps


async def test_records_made_before_an_erasure_and_stored_after_it_are_anonymous(
    store: AnalyticsStore,
) -> None:
    # A node's batch or the bus may still hold a user's records when the erasure runs; the
    # process that stores them (any writer) must store them anonymous, and keep no points.
    await store.events.ingest([ev("ann", "join", 1_000), ev("bob", "join", 1_000)])
    await store.erase_user("a", "ann")
    erased_at = await store.events.erased_at("a", "ann")
    assert erased_at is not None
    late = [
        ev("ann", "barrage", erased_at - 5, seq=9, text="call me on 555"),
        ev("ann", "like", erased_at, count=3),
    ]
    back = ev("ann", "join", erased_at + 1)  # ann came back after the erasure: hers
    await store.events.ingest([*late, ev("bob", "barrage", erased_at - 5), back])
    records = await store.events.show_events("a", "r1", 1)
    mine = [e for e in records if e.user == "ann"]
    assert [e.id for e in mine] == [back.id]
    anonymous = {e.user for e in records if e.id in {x.id for x in late}}
    assert len(anonymous) == 1 and next(iter(anonymous)).startswith("~erased-")
    assert [e.data for e in records if e.id == late[0].id] == [{"seq": 9}]  # her words are not kept
    assert [e.kind for e in records if e.user == "bob"] == ["join", "barrage"]
    profile = await store.loyalty.profile("a", "ann", erased_at + 10)
    assert profile is not None  # the new ann: her join after the erasure, none of the late records
    assert (profile["first_seen"], profile["interactions"]["total"]) == (back.ts, 0)
    profiled = [r[0] for r in await store.db.fetch("SELECT user_id FROM loyalty_profiles")]
    assert sorted(profiled) == ["ann", "bob"]  # none for the anonymous id
