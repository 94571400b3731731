"""Contract for the commerce primitives: stock (sales, coupons) and shares (red packets)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid

from roomserver.bus.base import GrabStatus, StockStatus

HOUR = 3_600_000


def rid() -> str:
    return "c-" + uuid.uuid4().hex[:10]


def now_ms() -> int:
    return int(time.time() * 1000)


async def nodes(factory, n=1):
    made = [factory(f"n{i}") for i in range(n)]
    for b in made:
        await b.start(lambda d: None)
    return made


async def test_stock_take_rules_in_order(broker_factory):
    (b,) = await nodes(broker_factory)
    room = rid()
    assert await b.stock_create(room, "sale:1", 3, ttl_ms=HOUR)
    assert not await b.stock_create(room, "sale:1", 9, ttl_ms=HOUR)
    take = lambda user, qty, cid="", fp="": b.stock_take(  # noqa: E731
        room,
        "sale:1",
        user=user,
        qty=qty,
        per_user_limit=2,
        record=f"{user}:{qty}:{cid}".encode(),
        cid=cid,
        fingerprint=fp,
    )
    r = await take("u1", 2, "c1", "f")
    assert (r.status, r.left, r.user_total, r.record) == (StockStatus.OK, 1, 2, b"u1:2:c1")
    r = await take("u1", 2, "c1", "f")
    assert (r.status, r.record) == (StockStatus.REPLAYED, b"u1:2:c1")
    assert (await take("u1", 1, "c1", "other")).status == StockStatus.CONFLICT
    assert (await take("u1", 1, "c2", "f")).status == StockStatus.LIMIT_REACHED
    # limit is checked before "fewer than qty left" (core.flashsale.decide_buy's order)
    assert (await take("u1", 2, "c3", "f")).status == StockStatus.LIMIT_REACHED
    assert (await take("u2", 2, "c1", "f")).status == StockStatus.SOLD_OUT
    r = await take("u2", 1)
    assert (r.status, r.left) == (StockStatus.OK, 0)
    assert (await take("u3", 1)).status == StockStatus.SOLD_OUT
    assert await b.stock_state(room, "sale:1") == (0, 3)
    assert await b.stock_records(room, "sale:1") == [b"u1:2:c1", b"u2:1:"]
    assert (await take("u4", 1)).status == StockStatus.SOLD_OUT
    assert (
        await b.stock_take(room, "nope", user="u", qty=1, per_user_limit=1, record=b"")
    ).status == StockStatus.NOT_FOUND
    assert await b.stock_state(room, "nope") is None


async def test_concurrent_takes_decide_in_arrival_order(broker_factory):
    """Takes in flight together (one script call on Redis) decide one by one, in order."""
    (b,) = await nodes(broker_factory)
    room = rid()
    await b.stock_create(room, "s", 3, ttl_ms=HOUR)

    def take(user: str, cid: str, fp: str = "f"):
        return b.stock_take(
            room,
            "s",
            user=user,
            qty=1,
            per_user_limit=2,
            record=f"{user}:{cid}".encode(),
            cid=cid,
            fingerprint=fp,
        )

    rs = await asyncio.gather(
        take("a", "1"),
        take("a", "1"),
        take("a", "2"),
        take("a", "3"),
        take("a", "1", "g"),
        take("b", "1"),
        take("c", "1"),
    )
    assert [(r.status, r.left, r.user_total) for r in rs] == [
        (StockStatus.OK, 2, 1),
        (StockStatus.REPLAYED, 2, 1),
        (StockStatus.OK, 1, 2),
        (StockStatus.LIMIT_REACHED, 1, 2),
        (StockStatus.CONFLICT, 1, 2),
        (StockStatus.OK, 0, 1),
        (StockStatus.SOLD_OUT, 0, 0),
    ]
    assert rs[1].record == rs[0].record == b"a:1"
    assert await b.stock_records(room, "s") == [b"a:1", b"a:2", b"b:1"]


async def test_stock_cids_are_scoped_by_room_not_by_stock(broker_factory):
    (b,) = await nodes(broker_factory)
    room = rid()
    await b.stock_create(room, "sale:a", 5, ttl_ms=HOUR)
    await b.stock_create(room, "sale:b", 5, ttl_ms=HOUR)
    r = await b.stock_take(
        room, "sale:a", user="u", qty=1, per_user_limit=5, record=b"a", cid="c", fingerprint="a:1"
    )
    assert r.status == StockStatus.OK
    other = await b.stock_take(
        room, "sale:b", user="u", qty=1, per_user_limit=5, record=b"b", cid="c", fingerprint="b:1"
    )
    assert (other.status, other.record) == (StockStatus.CONFLICT, None)
    assert await b.stock_state(room, "sale:b") == (5, 5)
    elsewhere = rid()
    await b.stock_create(elsewhere, "sale:a", 5, ttl_ms=HOUR)
    r = await b.stock_take(
        elsewhere, "sale:a", user="u", qty=1, per_user_limit=5, record=b"x", cid="c", fingerprint="a:1"
    )
    assert r.status == StockStatus.OK


async def test_stock_window(broker_factory):
    (b,) = await nodes(broker_factory)
    room = rid()
    await b.stock_create(room, "s", 5, opens_at=now_ms() + 60_000, ttl_ms=HOUR)
    assert (
        await b.stock_take(room, "s", user="u", qty=1, per_user_limit=1, record=b"x")
    ).status == StockStatus.NOT_OPEN
    await b.stock_create(room, "t", 5, opens_at=0, closes_at=now_ms() + 60_000, ttl_ms=HOUR)
    assert (
        await b.stock_take(room, "t", user="u", qty=1, per_user_limit=1, record=b"x")
    ).status == StockStatus.OK
    await b.stock_close(room, "t", now_ms() - 1)
    r = await b.stock_take(room, "t", user="v", qty=1, per_user_limit=1, record=b"y")
    assert (r.status, r.left) == (StockStatus.NOT_OPEN, 4)
    # A retry of an acknowledged take still replays after the close.
    assert (
        await b.stock_take(room, "t", user="u", qty=1, per_user_limit=1, record=b"x")
    ).status == StockStatus.NOT_OPEN


async def test_stock_never_oversells_across_nodes(broker_factory):
    bs = await nodes(broker_factory, 3)
    room = rid()
    await bs[0].stock_create(room, "sale", 100, ttl_ms=HOUR)
    users = [f"u{i}" for i in range(400)]

    async def buyer(i: int, user: str):
        b = bs[i % 3]
        cid = f"c-{user}"
        rec = f"order-{user}".encode()
        first = await b.stock_take(
            room, "sale", user=user, qty=1, per_user_limit=1, record=rec, cid=cid, fingerprint="1"
        )
        retry = await bs[(i + 1) % 3].stock_take(
            room, "sale", user=user, qty=1, per_user_limit=1, record=rec, cid=cid, fingerprint="1"
        )
        return first, retry

    results = await asyncio.gather(*(buyer(i, u) for i, u in enumerate(users)))
    ok = [r for r, _ in results if r.status == StockStatus.OK]
    assert len(ok) == 100
    for first, retry in results:
        if first.status == StockStatus.OK:
            assert retry.status == StockStatus.REPLAYED and retry.record == first.record
        else:
            assert first.status == StockStatus.SOLD_OUT
    records = await bs[0].stock_records(room, "sale")
    assert len(records) == 100 and len(set(records)) == 100
    assert await bs[2].stock_state(room, "sale") == (0, 100)


async def test_shares_one_grab_per_user_and_exact_sum(broker_factory):
    bs = await nodes(broker_factory, 2)
    room = rid()
    amounts = [5, 1, 9, 3]
    assert await bs[0].shares_create(room, "rp", amounts, ttl_ms=HOUR)
    assert not await bs[1].shares_create(room, "rp", [1], ttl_ms=HOUR)
    order = [f"u{i}" for i in range(6)]
    random.shuffle(order)
    results = await asyncio.gather(*(bs[i % 2].shares_grab(room, "rp", u) for i, u in enumerate(order)))
    oks = [r for r in results if r.status == GrabStatus.OK]
    assert sorted(r.amount for r in oks) == sorted(amounts)
    assert sum(r.status == GrabStatus.SOLD_OUT for r in results) == 2
    finished = [r for r in results if r.finished_best is not None]
    assert len(finished) == 1 and finished[0].finished_best[1] == 9
    grabs = await bs[0].shares_grabs(room, "rp")
    assert [a for _, a in grabs] == amounts  # grab order = share order
    again = await bs[1].shares_grab(room, "rp", grabs[0][0])
    assert (again.status, again.amount) == (GrabStatus.REPLAYED, 5)
    assert (await bs[0].shares_grab(room, "nope", "u1")).status == GrabStatus.NOT_FOUND
