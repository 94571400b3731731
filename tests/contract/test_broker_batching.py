"""More of the Broker contract: many concurrent commits to one room (which the
Redis backend coalesces into one script call), and event bytes that must
travel unchanged whatever they contain."""

from __future__ import annotations

import asyncio

import msgspec

from roomserver.bus.base import CommitStatus, Draft, Idem
from roomserver.tenancy import app_of
from tests.contract.test_broker_contract import Collector, ev, room_id, started


async def test_concurrent_commits_get_their_own_results(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    ca = await started(a, [room])
    n = 300
    results = await asyncio.gather(
        *((a if i % 2 else b).commit(room, [Draft(ev(room, f"m{i}"))]) for i in range(n))
    )
    assert all(r.status == CommitStatus.OK for r in results)
    assert sorted(r.seqs[0] for r in results) == list(range(1, n + 1))
    events = await ca.wait_events(n, timeout=10)
    assert [e.seq for e in events] == list(range(1, n + 1))
    # each caller's seq is the seq of its own event
    text_of = {e.seq: msgspec.json.decode(e.body)["data"]["text"] for e in events}
    for i, r in enumerate(results):
        assert text_of[r.seqs[0]] == f"m{i}"


async def test_idempotency_holds_within_one_burst(broker_factory):
    b = broker_factory()
    room = room_id()
    c = await started(b, [room])
    calls = []
    for i in range(40):
        cid = f"c{i % 10}"  # every cid four times in the same burst
        calls.append(b.commit(room, [Draft(ev(room, cid))], idem=Idem("u1", cid, "f")))
    results = await asyncio.gather(*calls)
    by_cid: dict[str, list] = {}
    for i, r in enumerate(results):
        by_cid.setdefault(f"c{i % 10}", []).append(r)
    for rs in by_cid.values():
        assert sorted(r.status.value for r in rs) == ["ok", "replayed", "replayed", "replayed"]
        assert len({r.seqs for r in rs}) == 1
    events = await c.wait_events(10)
    await asyncio.sleep(0.1)
    assert sum(len(d.events) for d in c.deliveries) == 10
    assert [e.seq for e in events] == list(range(1, 11))


async def test_barrage_cap_holds_across_concurrent_commits(broker_factory):
    b = broker_factory()
    room = room_id()
    await started(b)
    results = await asyncio.gather(
        *(b.commit(room, [Draft(ev(room, str(i)), capped=True)], barrage_cap=10) for i in range(60))
    )
    published = [r.seqs[0] for r in results if r.seqs[0] is not None]
    # 10 per second; the burst may straddle one second boundary
    assert 10 <= len(published) <= 20
    assert sorted(published) == list(range(1, len(published) + 1))


async def test_cas_and_plain_commits_interleave(broker_factory):
    a, b = broker_factory("a"), broker_factory("b")
    room = room_id()
    await started(a)
    await started(b)
    assert (await a.commit(room, [], expect_version=0, doc=b"v0")).status == CommitStatus.OK

    async def cas_loop(node, tag: str) -> int:
        tries = 0
        while True:
            tries += 1
            rec = await node.load(room)
            res = await node.commit(
                room, [Draft(ev(room, tag))], expect_version=rec.version, doc=b"by " + tag.encode()
            )
            if res.status == CommitStatus.OK:
                return res.version
            assert res.status == CommitStatus.VERSION_CONFLICT and tries < 200

    plain = [a.commit(room, [Draft(ev(room, f"p{i}"))]) for i in range(30)]
    cas = [cas_loop(n, f"cas{i}") for i, n in enumerate((a, b) * 5)]
    results = await asyncio.gather(*plain, *cas)
    versions = results[30:]
    assert sorted(versions) == list(range(2, 12))  # each CAS applied exactly once
    rec = await b.load(room)
    assert rec.version == 11 and rec.seq == 40


async def test_empty_commit_publishes_nothing(broker_factory):
    b = broker_factory()
    room = room_id()
    c = await started(b, [room])
    res = await b.commit(room, [])
    assert res.status == CommitStatus.OK and res.seqs == () and res.epoch
    await b.commit(room, [Draft(ev(room, "x"))])
    await c.wait_events(1)
    assert len(c.deliveries) == 1


async def test_event_bytes_travel_unchanged(broker_factory):
    b = broker_factory()
    room = room_id()
    c = await started(b, [room])
    # JSON may contain raw newlines between tokens; strings may hold anything.
    odd = [
        b'{"ev":"x",\n"data":"a|b|c\\n"}',
        '{"ev":"ü","data":"日本語 | 🎁"}'.encode(),
        b'{"ev":"y","data":"' + b"z" * 70_000 + b'"}',
    ]
    drafts = [
        Draft(odd[0], audience="user:ü|1", coalesce="k\n1"),
        Draft(odd[1], durable=False, audience="staff", coalesce="likes|x", close_code=4003),
        Draft(odd[2]),
    ]
    res = await b.commit(room, drafts)
    assert res.seqs == (1, 0, 2)
    events = await c.wait_events(3)
    assert events[0].body == b'{"seq":1,' + odd[0][1:]
    assert (events[0].audience, events[0].coalesce) == ("user:ü|1", "k\n1")
    assert events[1].body == odd[1]
    assert (events[1].audience, events[1].coalesce, events[1].close_code) == ("staff", "likes|x", 4003)
    assert events[2].body == b'{"seq":2,' + odd[2][1:]
    page = await b.history(room, 0)
    assert [(e.seq, e.body, e.audience, e.coalesce) for e in page.events] == [
        (e.seq, e.body, e.audience, e.coalesce) for e in (events[0], events[2])
    ]


async def test_a_cancelled_caller_does_not_disturb_the_others(broker_factory):
    b = broker_factory()
    room = room_id()
    c: Collector = await started(b, [room])
    tasks = [asyncio.create_task(b.commit(room, [Draft(ev(room, str(i)))])) for i in range(50)]
    await asyncio.sleep(0)
    tasks[25].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    ok = [r for r in done if not isinstance(r, BaseException)]
    assert len(ok) >= 49
    seqs = sorted(r.seqs[0] for r in ok)
    head = (await b.load(room)).seq
    assert head in (49, 50) and seqs == sorted(set(seqs))
    await c.wait_events(head)


async def test_presence_and_rooms_across_many_rooms(broker_factory):
    """Many rooms land on every shard: one report covers them all."""
    a, b = broker_factory("a"), broker_factory("b")
    await started(a)
    await started(b)
    app = app_of(room_id())
    rooms = [room_id(app) for _ in range(300)]  # on every shard, one app
    assert await a.report_presence({r: i for i, r in enumerate(rooms)}, 5000) == {
        r: i for i, r in enumerate(rooms)
    }
    totals = await b.report_presence({r: 1 for r in rooms[:100]}, 5000)
    assert totals == {r: i + 1 for i, r in enumerate(rooms[:100])}
    await asyncio.gather(*(a.commit(r, [], expect_version=0, doc=b"d") for r in rooms[:50]))
    listed = await b.rooms(app, limit=1000)
    assert listed == sorted(rooms[:50])
