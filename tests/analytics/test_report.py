"""The post-live report of a scripted show on both store engines, figure by figure
against values worked out by hand from tests/analytics/report_show.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from roomserver.core.report_model import Mark, Perf, Ranked, Sharer
from roomserver.store.db import Database
from roomserver.store.store import AnalyticsStore
from tests.analytics.report_show import APP, END_S, ROOM, T0, previous_show, this_show


@pytest.fixture
async def store(db: Database) -> AsyncIterator[AnalyticsStore]:
    s = AnalyticsStore(db)
    await s.events.ingest(previous_show())
    await s.events.ingest(this_show())
    yield s


async def report_of(store: AnalyticsStore, show: int = 2):
    info = await store.events.show(APP, ROOM, show)
    assert info is not None
    return await store.reports.get(info)


async def test_audience(store: AnalyticsStore) -> None:
    r = (await report_of(store)).report
    assert (r.started_at, r.ended_at, r.duration_s, r.title, r.host) == (
        T0,
        T0 + END_S * 1000,
        600.0,
        "Spring",
        "h",
    )
    a = r.audience
    # viewers u1 u2 u3 u4 u6 u7 (the host is not one); u1 and u3 joined twice
    assert (a.unique_viewers, a.views) == (6, 8)
    # watch: u1 120+400, u2 300, u3 [60,150) merged = 90, u4 120, u6 290, u7 60 = 1380 s
    assert a.avg_watch_s == 230.0
    assert a.avg_concurrent == 2.3
    # 4 online from 310 s (u1 u2 u4 u6) until u2 leaves at 320
    assert (a.peak_concurrent, a.peak_at_s) == (4, 310.0)
    # seen before: u1 u2 (show 1), u3 (room r2); new: u4 u6 u7
    assert (a.new_viewers, a.returning_viewers) == (3, 3)
    assert r.curves.minutes == 10
    assert r.curves.online == [2, 3, 3, 2, 2, 4, 4, 3, 2, 2]


async def test_engagement_and_sales(store: AnalyticsStore) -> None:
    r = (await report_of(store)).report
    e = r.engagement
    # barrage: u1 ×2, u2, u3, the host; likes 3 + 10; gifts rose×2 (200) and rocket (5000)
    assert (e.barrage, e.barrage_senders, e.likes, e.likers) == (5, 4, 13, 2)
    assert (e.gifts, e.gift_items, e.gift_value, e.gifters) == (2, 3, 5200, 2)
    # interacting viewers: u1 u2 u3 u4 u6 of 6
    assert (e.interacting_viewers, e.interaction_rate) == (5, 0.8333)
    assert (e.votes, e.lottery_entries, e.coupon_claims, e.redpacket_grabs) == (2, 2, 1, 1)
    assert (e.shares, e.favorites, e.follows) == (2, 1, 1)
    s = r.sales
    assert (s.orders, s.units, s.gmv, s.buyers) == (4, 5, 39700, 3)
    assert s.avg_order_value == 9925
    assert s.gpm == 39700 * 1000 // 8
    assert [(f.step, f.users, f.rate) for f in s.funnel] == [
        ("viewers", 6, None),
        ("clicked", 5, 0.8333),
        ("carted", 3, 0.6),
        ("ordered", 3, 1.0),
    ]
    assert r.top_gifters == [Ranked("u6", 5000, 1), Ranked("u2", 200, 1)]
    assert r.top_buyers == [Ranked("u2", 29700, 2), Ranked("u1", 5000, 1), Ranked("u4", 5000, 1)]
    assert r.curves.barrage == [2, 2, 1, 0, 0, 0, 0, 0, 0, 0]
    assert r.curves.likes == [0, 0, 0, 3, 0, 10, 0, 0, 0, 0]
    assert r.curves.orders == [0, 0, 1, 0, 0, 1, 1, 0, 1, 0]
    assert r.curves.gmv == [0, 0, 19800, 0, 0, 5000, 9900, 0, 5000, 0]
    assert (r.assistant.questions, r.assistant.answered, r.assistant.unanswered) == (3, 2, 1)


async def test_products_pins_and_marks(store: AnalyticsStore) -> None:
    r = (await report_of(store)).report
    p1, p2 = r.products
    assert (p1.product, p2.product) == ("p1", "p2")
    # p1 pinned 100..300 (closed by p2's pin); after = 300..600 (clipped at the end)
    (w1,) = p1.pins
    assert (w1.start_s, w1.end_s) == (100.0, 300.0)
    assert w1.during == Perf(
        clicks=3, cart_adds=1, orders=1, units=2, gmv=19800, clickers=3, buyers=1, conversion=0.3333
    )
    assert w1.after == Perf(0, 0, 1, 1, 9900, 0, 1, None)
    assert p1.total == Perf(3, 1, 2, 3, 29700, 3, 1, 0.3333)
    (w2,) = p2.pins
    assert (w2.start_s, w2.end_s) == (300.0, 400.0)
    assert w2.during == Perf(2, 1, 1, 1, 5000, 2, 1, 0.5)
    assert w2.after == Perf(1, 1, 1, 1, 5000, 1, 1, 1.0)
    assert p2.total == Perf(3, 2, 2, 2, 10000, 3, 2, 0.6667)
    assert r.marks == [
        Mark(100.0, "pin", None, "p1"),
        Mark(110.0, "sale", "s1", "p1"),
        Mark(200.0, "poll", "q1", None),
        Mark(300.0, "pin", None, "p2"),
        Mark(400.0, "unpin", None, "p2"),
        Mark(450.0, "lottery", "l1", None),
        Mark(500.0, "redpacket", "rp1", None),
    ]


async def test_retention_and_shares(store: AnalyticsStore) -> None:
    r = (await report_of(store)).report
    t = r.retention
    # show 1: viewers u1 u2 u5, buyer u2; u1 u2 came back, u2 bought again
    assert (t.previous_show, t.previous_viewers, t.returned, t.returned_rate) == (1, 3, 2, 0.6667)
    assert (t.previous_buyers, t.returned_buyers, t.repeat_buyers) == (1, 1, 1)
    # u1's link brought u6 and u7, both new; u1 shared twice
    assert r.shares == [Sharer("u1", viewers=2, new_viewers=2, orders=0, gmv=0, shares=2)]
    assert r.attributed_viewers == 2
    first = (await report_of(store, 1)).report
    assert first.retention.previous_show is None and first.retention.returned_rate is None
    assert (first.audience.unique_viewers, first.sales.gmv, first.audience.new_viewers) == (3, 9900, 3)


async def test_users_table_and_timeline(store: AnalyticsStore) -> None:
    bundle = await report_of(store)
    rows = {u.user: u for u in bundle.users}
    u1 = rows["u1"]
    assert (u1.first_join_s, u1.last_leave_s, u1.watch_s, u1.sessions, u1.new) == (
        10.0,
        600.0,
        520.0,
        2,
        False,
    )
    assert (u1.barrage, u1.likes, u1.clicks, u1.cart_adds, u1.orders, u1.gmv) == (2, 3, 2, 1, 1, 5000)
    assert (rows["u6"].ref, rows["u6"].new, rows["u6"].gift_value) == ("u1", True, 5000)
    assert rows["u3"].watch_s == 90.0
    info = await store.events.show(APP, ROOM, 2)
    assert info is not None
    tl = await store.reports.timeline(info, "u1")
    assert tl.sessions == [(10.0, 130.0), (200.0, 600.0)] and tl.watch_s == 520.0
    assert [(x.t, x.kind) for x in tl.entries] == [
        (10.0, "join"),
        (15.0, "barrage"),
        (35.0, "barrage"),
        (50.0, "track"),
        (60.5, "track"),
        (120.0, "track"),
        (130.0, "leave"),
        (200.0, "join"),
        (210.0, "like"),
        (212.0, "vote"),
        (230.0, "assistant"),
        (520.0, "track"),
        (525.0, "track"),
        (530.0, "order"),
    ]
    assert tl.entries[-1].data["amount"] == 5000


async def test_report_is_kept_once_ended_and_dropped_on_erasure(store: AnalyticsStore) -> None:
    first = await report_of(store)
    assert not first.cached
    again = await report_of(store)
    assert again.cached and again.report == first.report and again.users == first.users
    exported = await store.reports.export_user(APP, "u6")
    assert [(x["room"], x["show"], x["gift_value"]) for x in exported] == [(ROOM, 2, 5000)]
    await store.erase_user(APP, "u6")
    after = await report_of(store)
    assert not after.cached  # recomputed from the re-keyed records: same counts, nobody named
    assert after.report.engagement.gift_value == 5200 and after.report.audience.unique_viewers == 6
    assert "u6" not in {u.user for u in after.users}
    assert await store.reports.export_user(APP, "u6") == []


async def test_live_show_is_computed_not_kept(store: AnalyticsStore) -> None:
    from tests.analytics.report_show import rec

    await store.events.ingest([rec(3, T0 + 3_600_000, 0, "h", "show.start", title="Live", host="h")])
    info = await store.events.show(APP, ROOM, 3)
    assert info is not None and info.ended_at is None
    live = await store.reports.get(info)
    assert live.report.ended_at is None and not live.cached
    assert live.report.retention.previous_show == 2 and live.report.retention.previous_viewers == 6
    assert not (await store.reports.get(info)).cached


async def test_folding_in_sql_changes_no_figure(store: AnalyticsStore) -> None:
    """The store folds barrage and likes in SQL; the pure pass over every record agrees."""
    from roomserver.core.report import compute_report
    from roomserver.store.reports import facts_of

    info = await store.events.show(APP, ROOM, 2)
    assert info is not None
    facts = facts_of(info)
    folded = await store.reports.compute(info, now_ms=0)
    every = await store.events.show_events(APP, ROOM, 2)
    report, users = compute_report(
        facts, every, history=await store.reports.history(facts, {e.user for e in every}), now_ms=0
    )
    assert folded.report == report and folded.users == users
    assert report.records == len(this_show())


def test_a_viewer_who_joined_before_the_start_is_counted_by_their_leave() -> None:
    from roomserver.core.behaviour import BehaviourEvent
    from roomserver.core.report import ShowFacts, compute_report

    start = 1_000_000
    facts = ShowFacts("a", "r", 3, start, start + 120_000, "T", "h")

    def at(n: int, user: str, kind: str, ms: int, **data: object) -> BehaviourEvent:
        return BehaviourEvent(f"e{n}", "a", "r", 3, user, kind, start + ms, ms, data)  # type: ignore[arg-type]

    events = [
        at(1, "h", "show.start", 0),
        at(2, "early", "leave", 30_000, joined_at=start - 10_000),  # joined 10 s before the start
        at(3, "gone", "leave", 40_000, joined_at=start - 20_000),
        at(4, "late", "join", 60_000),
        at(5, "h", "show.end", 120_000),
        at(7, "late", "barrage", 125_000),  # after the end: not the show's
        at(8, "late", "leave", 130_000, joined_at=start + 60_000),
    ]
    # "gone" left at 40 s too: two early viewers; a leave wholly before the start is no one
    events.insert(2, at(6, "before", "leave", -5_000, joined_at=start - 50_000))
    report, users = compute_report(facts, events, now_ms=0)
    a = report.audience
    assert (a.unique_viewers, a.views, a.peak_concurrent, a.peak_at_s) == (3, 1, 2, 0.0)
    # early 30 s + gone 40 s + late 60 s = 130 s over 3 viewers
    assert a.avg_watch_s == round(130 / 3, 3)
    assert report.curves.online == [2, 1]
    assert "before" not in {u.user for u in users if u.watch_s}
    assert report.engagement.barrage == 0 and report.records == 7


def test_assistant_counts_host_replies_and_ranks_the_unanswered_clusters() -> None:
    from roomserver.core.behaviour import BehaviourEvent
    from roomserver.core.report import ShowFacts, compute_report
    from roomserver.core.report_model import UnansweredCluster

    start = 1_000_000
    facts = ShowFacts("a", "r", 1, start, start + 60_000, "T", "h")
    n = iter(range(100))

    def asked(user: str, seq: int, answered: bool, cluster: str | None, text: str) -> BehaviourEvent:
        data = {"question_seq": seq, "answered": answered, "cluster": cluster or text, "text": text}
        return BehaviourEvent(f"e{next(n)}", "a", "r", 1, user, "assistant", start + seq, seq, data)

    events = [
        asked("u1", 1, True, "jacket:sizes", "有什么尺码"),
        asked("u2", 2, False, "jacket:faq.hood", "帽子能拆吗"),
        asked("u3", 3, False, "jacket:faq.hood", "is the hood detachable?"),
        asked("u4", 4, False, None, "主播几岁了"),
        asked("u5", 5, False, "jacket:faq.wash", "能机洗吗"),
        asked("u6", 6, False, "jacket:faq.wash", "可以水洗吗"),
        asked("u7", 7, False, "jacket:faq.wash", "洗衣机能洗吗"),
        # The host answers the hood cluster (seq 9 is no question of this show: ignored).
        BehaviourEvent("r1", "a", "r", 1, "h", "assistant", start + 50, 50, {"host_answered": [2, 3, 9]}),
        asked("u8", 8, False, "jacket:faq.hood", "hood off?"),  # asked after the reply
    ]
    report, _users = compute_report(facts, events, now_ms=0)
    a = report.assistant
    assert (a.questions, a.answered, a.unanswered) == (8, 3, 5)
    assert a.top_unanswered == [
        UnansweredCluster("jacket:faq.wash", 3, "能机洗吗"),
        UnansweredCluster("jacket:faq.hood", 1, "hood off?"),
        UnansweredCluster("主播几岁了", 1, "主播几岁了"),
    ]
