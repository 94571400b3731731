"""The post-live report (复盘) of one show, computed from its behaviour records.

Pure: ``compute_report`` takes the show, its records in time order and three
sets the store looked up (who the app saw before the show, who bought before
it, the previous show's viewers and buyers) and returns the ``Report`` and the
per-user table. Every figure is defined here, once; docs/analytics.md repeats
the definitions for operators.

Time: ``t`` in seconds since the show started (``show_ms / 1000``); the show
lasts from ``started_at`` to ``end_ms`` (``ended_at``, or "now" for a live
show). Records before the start count towards totals but are drawn at 0.
Records after the end are not the show's (the recorder files them under the
show until the next one starts), except a ``leave``, which closes a session
(clipped at the end).

Definitions
-----------
viewer
    a user with a ``join`` record in the show, or whose session (a ``leave``
    with ``joined_at`` before the start) overlaps it, other than the show's host.
session
    a join → its leave (the leave's ``joined_at`` names the join); a join
    without a leave lasts until the show's end. Sessions are clipped to the
    show, and one user's overlapping sessions (two tabs) are merged, so a
    viewer is online at most once at any moment.
peak_concurrent / peak_at_s
    the most viewers online at one moment (merged sessions, half-open
    intervals: a leave and a join at the same ms do not overlap) and the first
    second it was reached.
avg_concurrent
    total watch time of all viewers ÷ the show's duration.
unique_viewers
    number of viewers. ``views``: number of ``join`` records of viewers (page
    views; a rejoin is a view).
avg_watch_s
    total watch time ÷ unique viewers (merged sessions, so never longer than
    the show).
new_viewers / returning_viewers
    viewers with no record in the app before the show started / the others.
interaction_rate
    viewers who sent a barrage, a like or a gift ÷ unique viewers.
barrage / likes / gifts
    ``barrage`` records; the sum of ``like`` records' ``count``; ``gift``
    records (``gift_items``: the sum of their ``count``, ``gift_value``: of
    their ``value`` in cents). Everyone's, the host's too.
orders / gmv / buyers
    ``order`` records; the sum of their ``amount`` (cents); distinct users
    who ordered. ``avg_order_value`` = gmv ÷ orders (cents, rounded down).
funnel
    viewers → users who clicked a product (``track product.click``) → users
    who added to cart (``track cart.add``) → buyers; each a distinct-user
    count, with each step's rate to the one before.
gpm
    GMV per thousand views: gmv × 1000 ÷ views (cents, rounded down).
top_gifters / top_buyers
    the 10 users with the highest gift value / order amount (ties by user id).
products
    per product seen in a pin or a product record. A pin window opens at a
    ``mark`` ``pin`` of the product and closes at the next ``unpin``, the next
    ``pin`` (one product is pinned at a time) or the show's end. ``during``:
    that product's clicks, cart adds, orders (units, gmv) in the window;
    ``after``: in the ``AFTER_S`` seconds following it (clipped to the show's
    end); ``conversion`` = distinct buyers ÷ distinct clickers of the product
    in that span (null without clickers). ``total``: the whole show.
retention
    the previous show of the room (the highest show number below this one
    that started): its viewers who are viewers of this show (``returned``,
    ``returned_rate`` = returned ÷ previous viewers); its buyers who bought
    again in this show (``returned_buyers``). ``repeat_buyers``: buyers of
    this show who had ordered in the app (any room) before it started.
curves
    one value per show minute ``m`` (``[m*60, m*60+60)`` s): ``online`` = the
    most viewers online at one moment of that minute; ``barrage``, ``likes``
    (sum of counts), ``orders``, ``gmv`` = what happened in it.
marks
    every ``mark`` record (pin, unpin, sale, lottery, poll, redpacket,
    coupon) at its second, drawn on the curves.
shares
    a viewer's first ``join`` with ``data.ref`` (another user) attributes the
    viewer to that sharer, once per show. Per sharer: ``viewers`` brought,
    ``new_viewers`` of them (new to the app), their ``orders`` and ``gmv``,
    and the sharer's own ``track share`` actions (``shares``).
assistant
    ``assistant`` records of viewers' questions: ``questions``; ``answered``
    (``data.answered`` true, or the question's ``question_seq`` is listed in
    a later host reply's record, ``data.host_answered``) and ``unanswered``.
    A host reply's record is not a question. ``top_unanswered``: the
    ``TOP_N`` clusters (``data.cluster``) with the most questions still
    unanswered at the show's end (ties by cluster), each with one question as
    asked (``data.text``).
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass
from typing import Any, Final

from roomserver.core.behaviour import BehaviourEvent
from roomserver.core.report_model import (
    AssistantCounts,
    Audience,
    Curves,
    Engagement,
    FunnelStep,
    Mark,
    Perf,
    PinWindow,
    ProductReport,
    Ranked,
    Report,
    Retention,
    Sales,
    Sharer,
    TimelineEntry,
    UnansweredCluster,
    UserRow,
    UserTimeline,
)


def report_path(room: str, show: int) -> str:
    """The report's URL path (``report.ready`` and the webhooks carry it); ``room``
    is the public room id (its characters need no escaping in a path)."""
    return f"/v1/rooms/{room}/report?show={show}"


AFTER_S: Final = 300  # the "after a pin" span: 5 minutes
TOP_N: Final = 10
MINUTE_MS: Final = 60_000


@dataclass(frozen=True, slots=True)
class ShowFacts:
    """What the store knows about the show itself (its show.start / show.end)."""

    app: str
    room: str
    show: int
    started_at: int
    ended_at: int | None
    title: str = ""
    host: str = ""


# Kinds the store may fold before the computation (``Tallies``): four records in
# five are barrage or likes, and all the report needs of them is counts.
FOLDED_KINDS: Final = ("barrage", "like")


@dataclass(frozen=True, slots=True)
class Tallies:
    """Barrage and like records already folded (the store does it in SQL):
    ``users``: user → (barrage records, sum of like counts); ``minutes``: show
    minute (``(ts - started_at) // 60000``; any negative number: before the
    start) → the same two sums."""

    users: Mapping[str, tuple[int, int]]
    minutes: Mapping[int, tuple[int, int]]
    records: int


def fold(rows: Iterable[tuple[str, int, int, int]]) -> Tallies:
    """Fold barrage and like records given as ``(user, 1 for barrage / 0 for a
    like, show minute (negative: before the start), like count)`` into
    ``Tallies``. A million rows: the loop body is dict increments only."""
    barrage_users: Counter[str] = Counter()
    like_users: Counter[str] = Counter()
    barrage_minutes: Counter[int] = Counter()
    like_minutes: Counter[int] = Counter()
    records = 0
    for user, barrage, minute, count in rows:
        records += 1
        if barrage:
            barrage_users[user] += 1
            barrage_minutes[minute] += 1
        else:
            like_users[user] += count
            like_minutes[minute] += count
    return Tallies(
        users={u: (barrage_users[u], like_users[u]) for u in barrage_users.keys() | like_users.keys()},
        minutes={
            m: (barrage_minutes[m], like_minutes[m]) for m in barrage_minutes.keys() | like_minutes.keys()
        },
        records=records,
    )


@dataclass(frozen=True, slots=True)
class History:
    """The app's past, looked up by the store before the computation."""

    seen_before: Set[str] = frozenset()  # users with any record in the app before the show
    bought_before: Set[str] = frozenset()  # users with an order in the app before the show
    previous_show: int | None = None
    previous_viewers: Set[str] = frozenset()
    previous_buyers: Set[str] = frozenset()


@dataclass(slots=True)
class _Person:
    """Per-user accumulators of one pass."""

    joins: list[int]  # open joins' wall ms
    spans: list[tuple[int, int]]  # closed sessions (wall ms, unclipped)
    views: int = 0
    barrage: int = 0
    likes: int = 0
    gifts: int = 0
    gift_items: int = 0
    gift_value: int = 0
    clicks: int = 0
    cart_adds: int = 0
    orders: int = 0
    gmv: int = 0
    ref: str | None = None


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def _secs(ms: int) -> float:
    return round(ms / 1000, 3)


def _merge(spans: list[tuple[int, int]], start: int, end: int) -> list[tuple[int, int]]:
    """Clip to [start, end), drop empty spans, merge overlapping ones."""
    out: list[tuple[int, int]] = []
    for s, e in sorted((max(s, start), min(e, end)) for s, e in spans):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


class _ProductEvents:
    """One product's clicks, cart adds and orders, in time order (show ms)."""

    __slots__ = ("rows", "times")

    def __init__(self) -> None:
        self.times: list[int] = []
        # (kind 0 click / 1 cart / 2 order, user, qty, amount)
        self.rows: list[tuple[int, str, int, int]] = []

    def perf(self, lo: int, hi: int) -> Perf:
        a = bisect.bisect_left(self.times, lo)
        b = bisect.bisect_left(self.times, hi)
        clicks = carts = orders = units = gmv = 0
        clickers: set[str] = set()
        buyers: set[str] = set()
        for kind, user, qty, amount in self.rows[a:b]:
            if kind == 0:
                clicks += 1
                clickers.add(user)
            elif kind == 1:
                carts += 1
            else:
                orders += 1
                units += qty
                gmv += amount
                buyers.add(user)
        conversion = _rate(len(buyers & clickers), len(clickers))
        return Perf(clicks, carts, orders, units, gmv, len(clickers), len(buyers), conversion)


def _int(v: Any) -> int:
    return v if type(v) is int else int(v) if isinstance(v, (int, float)) else 0


def _top_unanswered(asked: list[tuple[str, str]]) -> list[UnansweredCluster]:
    counts: Counter[str] = Counter()
    example: dict[str, str] = {}
    for cluster, text in asked:
        if cluster:
            counts[cluster] += 1
            if text:
                example.setdefault(cluster, text)
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_N]
    return [UnansweredCluster(c, n, example.get(c, c)) for c, n in ranked]


def compute_report(
    facts: ShowFacts,
    events: Iterable[BehaviourEvent],
    *,
    history: History = History(),
    tallies: Tallies | None = None,
    now_ms: int,
) -> tuple[Report, list[UserRow]]:
    """The report of ``facts``' show from its records in time order (as
    ``EventLog.show_events`` returns them: a leave follows its join) and the per-user table (viewers and anyone else who acted,
    by user id). ``tallies``: the show's barrage and like records folded by the
    store, then ``events`` holds none of those kinds; either way the figures
    are the same."""
    start = facts.started_at
    end = facts.ended_at if facts.ended_at is not None else max(now_ms, start)
    duration = max(end - start, 0)
    minutes = max(1, math.ceil(duration / MINUTE_MS))
    last_minute = minutes - 1
    host = facts.host

    people: dict[str, _Person] = {}
    curve_barrage = [0] * minutes
    curve_likes = [0] * minutes
    curve_orders = [0] * minutes
    curve_gmv = [0] * minutes
    marks: list[Mark] = []
    products: dict[str, _ProductEvents] = {}
    pin_marks: list[tuple[int, str, str | None]] = []  # (show ms, pin|unpin, product)
    counts = dict.fromkeys(
        ("barrage", "likes", "gifts", "gift_items", "gift_value", "votes", "lottery", "coupon", "redpacket"),
        0,
    )
    track_counts = {"share": 0, "favorite": 0, "follow": 0}
    shares_by: dict[str, int] = {}
    questions = answered = 0
    # Questions not answered (yet): seq -> (cluster, the question as asked); a later host
    # reply may answer them. Questions without a seq cannot be replied to.
    unanswered_seqs: dict[int, tuple[str, str]] = {}
    unanswered_other: list[tuple[str, str]] = []
    records = 0

    def person(user: str) -> _Person:
        p = people.get(user)
        if p is None:
            p = people[user] = _Person([], [])
        return p

    def product_events(product: str) -> _ProductEvents:
        pe = products.get(product)
        if pe is None:
            pe = products[product] = _ProductEvents()
        return pe

    for e in events:
        kind = e.kind
        if e.ts > end and kind != "leave":  # after the show (filed under it until the next starts)
            continue
        records += 1
        data = e.data
        ms = e.ts - start
        m = ms // MINUTE_MS
        m = 0 if m < 0 else last_minute if m > last_minute else m
        if kind == "barrage":
            person(e.user).barrage += 1
            curve_barrage[m] += 1
            counts["barrage"] += 1
        elif kind == "like":
            n = _int(data.get("count", 1))
            person(e.user).likes += n
            curve_likes[m] += n
            counts["likes"] += n
        elif kind == "join":
            p = person(e.user)
            p.joins.append(e.ts)
            p.views += 1
            ref = data.get("ref")
            if p.ref is None and isinstance(ref, str) and ref and ref != e.user:
                p.ref = ref
        elif kind == "leave":
            p = person(e.user)
            joined = _int(data.get("joined_at", e.ts))
            if joined in p.joins:
                p.joins.remove(joined)
            elif p.joins:  # its join is not in the log: the oldest open one ends
                joined = p.joins.pop(0)
            p.spans.append((joined, e.ts))
        elif kind == "gift":
            p = person(e.user)
            value, n = _int(data.get("value", 0)), _int(data.get("count", 1))
            p.gifts += 1
            p.gift_items += n
            p.gift_value += value
            counts["gifts"] += 1
            counts["gift_items"] += n
            counts["gift_value"] += value
        elif kind == "order":
            p = person(e.user)
            amount, qty = _int(data.get("amount", 0)), _int(data.get("qty", 1))
            p.orders += 1
            p.gmv += amount
            curve_orders[m] += 1
            curve_gmv[m] += amount
            product = data.get("product")
            if isinstance(product, str) and product:
                pe = product_events(product)
                pe.times.append(ms)
                pe.rows.append((2, e.user, qty, amount))
        elif kind == "track":
            action = data.get("action")
            if action == "product.click" or action == "cart.add":
                p = person(e.user)
                is_click = action == "product.click"
                if is_click:
                    p.clicks += 1
                else:
                    p.cart_adds += 1
                product = data.get("product")
                if isinstance(product, str) and product:
                    pe = product_events(product)
                    pe.times.append(ms)
                    pe.rows.append((0 if is_click else 1, e.user, 0, 0))
            elif action in track_counts:
                track_counts[action] += 1
                if action == "share":
                    shares_by[e.user] = shares_by.get(e.user, 0) + 1
        elif kind == "vote":
            counts["votes"] += 1
        elif kind == "lottery.enter":
            counts["lottery"] += 1
        elif kind == "coupon.claim":
            counts["coupon"] += 1
        elif kind == "redpacket.grab":
            counts["redpacket"] += 1
        elif kind == "mark":
            what = str(data.get("what", ""))
            ident = data.get("id")
            product = data.get("product")
            product = product if isinstance(product, str) and product else None
            marks.append(Mark(_secs(max(ms, 0)), what, str(ident) if ident is not None else None, product))
            if what in ("pin", "unpin"):
                pin_marks.append((max(ms, 0), what, product))
                if product is not None:
                    product_events(product)
        elif kind == "assistant":
            replied = data.get("host_answered")
            if isinstance(replied, list):  # a host reply: the questions it answered
                for replied_seq in replied:
                    if isinstance(replied_seq, int) and unanswered_seqs.pop(replied_seq, None) is not None:
                        answered += 1
            else:
                questions += 1
                if data.get("answered"):
                    answered += 1
                else:
                    text = str(data.get("text") or "")
                    asked = (str(data.get("cluster") or text), text)
                    if isinstance(question_seq := data.get("question_seq"), int):
                        unanswered_seqs[question_seq] = asked
                    else:
                        unanswered_other.append(asked)

    if tallies is not None:
        records += tallies.records
        for user, (barrage, likes) in tallies.users.items():
            p = person(user)
            p.barrage += barrage
            p.likes += likes
            counts["barrage"] += barrage
            counts["likes"] += likes
        for m, (barrage, likes) in tallies.minutes.items():
            m = 0 if m < 0 else last_minute if m > last_minute else m
            curve_barrage[m] += barrage
            curve_likes[m] += likes

    # -- sessions, concurrency, watch time ------------------------------------------
    # A user who joined before the show started has no join record in it (the
    # recorder files pre-show activity under the show before), only the leave.
    viewers = {u: p for u, p in people.items() if (p.views or p.spans) and u != host}
    watch: dict[str, list[tuple[int, int]]] = {}
    edges: list[tuple[int, int]] = []
    for user, p in list(viewers.items()):
        merged = _merge(p.spans + [(j, end) for j in p.joins], start, end)
        if not p.views and not merged:  # left before the show started
            del viewers[user]
            continue
        watch[user] = merged
        for s, e_ in merged:
            edges.append((s - start, 1))
            edges.append((e_ - start, -1))
    edges.sort()
    # The count holds on [prev, t) between edge instants; a minute's ``online`` is
    # the most it held on any stretch of that minute (all edges of one instant
    # applied together, so a leave and a join at the same ms do not overlap).
    online = [0] * minutes
    running = peak = peak_at = prev = 0
    i, n_edges = 0, len(edges)
    while i < n_edges:
        t = edges[i][0]
        if t > prev and running:
            for mi in range(prev // MINUTE_MS, min((t - 1) // MINUTE_MS, last_minute) + 1):
                if running > online[mi]:
                    online[mi] = running
        while i < n_edges and edges[i][0] == t:
            running += edges[i][1]
            i += 1
        if running > peak:
            peak, peak_at = running, t
        prev = t

    total_watch = sum(e_ - s for spans in watch.values() for s, e_ in spans)
    n_viewers = len(viewers)
    views = sum(p.views for p in viewers.values())
    new_viewers = sum(1 for u in viewers if u not in history.seen_before)
    audience = Audience(
        peak_concurrent=peak,
        peak_at_s=_secs(peak_at),
        avg_concurrent=round(total_watch / duration, 2) if duration else 0.0,
        unique_viewers=n_viewers,
        views=views,
        avg_watch_s=_secs(total_watch // n_viewers) if n_viewers else 0.0,
        new_viewers=new_viewers,
        returning_viewers=n_viewers - new_viewers,
    )

    # -- engagement, sales ------------------------------------------------------------
    interacting = sum(1 for p in viewers.values() if p.barrage or p.likes or p.gifts)
    engagement = Engagement(
        interacting_viewers=interacting,
        interaction_rate=_rate(interacting, n_viewers) or 0.0,
        barrage=counts["barrage"],
        barrage_senders=sum(1 for p in people.values() if p.barrage),
        likes=counts["likes"],
        likers=sum(1 for p in people.values() if p.likes),
        gifts=counts["gifts"],
        gift_items=counts["gift_items"],
        gift_value=counts["gift_value"],
        gifters=sum(1 for p in people.values() if p.gifts),
        votes=counts["votes"],
        lottery_entries=counts["lottery"],
        coupon_claims=counts["coupon"],
        redpacket_grabs=counts["redpacket"],
        shares=track_counts["share"],
        favorites=track_counts["favorite"],
        follows=track_counts["follow"],
    )
    buyers = {u for u, p in people.items() if p.orders}
    orders = sum(p.orders for p in people.values())
    gmv = sum(p.gmv for p in people.values())
    units = sum(row[2] for pe in products.values() for row in pe.rows if row[0] == 2)
    steps = [
        ("viewers", n_viewers),
        ("clicked", sum(1 for p in people.values() if p.clicks)),
        ("carted", sum(1 for p in people.values() if p.cart_adds)),
        ("ordered", len(buyers)),
    ]
    funnel = [
        FunnelStep(name, n, None if i == 0 else _rate(n, steps[i - 1][1]))
        for i, (name, n) in enumerate(steps)
    ]
    sales = Sales(
        orders=orders,
        units=units,
        gmv=gmv,
        buyers=len(buyers),
        avg_order_value=gmv // orders if orders else 0,
        gpm=gmv * 1000 // views if views else 0,
        funnel=funnel,
    )

    def top(key: str, count: str) -> list[Ranked]:
        ranked = sorted(
            ((u, getattr(p, key), getattr(p, count)) for u, p in people.items() if getattr(p, count)),
            key=lambda r: (-r[1], r[0]),
        )
        return [Ranked(u, v, c) for u, v, c in ranked[:TOP_N]]

    # -- products and their pin windows -------------------------------------------------
    windows: dict[str, list[tuple[int, int]]] = {}
    current: tuple[str, int] | None = None
    for t, what, product in sorted(pin_marks, key=lambda x: x[0]):
        if current is not None and (what == "pin" or product in (None, current[0])):
            windows.setdefault(current[0], []).append((current[1], t))
            current = None
        if what == "pin" and product is not None:
            current = (product, t)
    if current is not None:
        windows.setdefault(current[0], []).append((current[1], max(duration, current[1])))
    product_reports = []
    for product in sorted(products):
        pe = products[product]
        pins = [
            PinWindow(
                _secs(s), _secs(e_), pe.perf(s, e_), pe.perf(e_, min(e_ + AFTER_S * 1000, max(duration, e_)))
            )
            for s, e_ in windows.get(product, [])
        ]
        product_reports.append(ProductReport(product, pins, pe.perf(-(2**62), 2**62)))

    # -- retention, shares ------------------------------------------------------------
    previous_viewers = history.previous_viewers
    returned = sum(1 for u in viewers if u in previous_viewers)
    retention = Retention(
        previous_show=history.previous_show,
        previous_viewers=len(previous_viewers),
        returned=returned,
        returned_rate=_rate(returned, len(previous_viewers)),
        previous_buyers=len(history.previous_buyers),
        returned_buyers=sum(1 for u in buyers if u in history.previous_buyers),
        repeat_buyers=sum(1 for u in buyers if u in history.bought_before),
    )
    brought: dict[str, list[str]] = {}
    for user, p in viewers.items():
        if p.ref is not None:
            brought.setdefault(p.ref, []).append(user)
    sharers = sorted(
        (
            Sharer(
                user=sharer,
                viewers=len(users),
                new_viewers=sum(1 for u in users if u not in history.seen_before),
                orders=sum(people[u].orders for u in users),
                gmv=sum(people[u].gmv for u in users),
                shares=shares_by.get(sharer, 0),
            )
            for sharer, users in brought.items()
        ),
        key=lambda s: (-s.viewers, s.user),
    )
    for user, n in shares_by.items():  # sharers whose links brought nobody (yet)
        if user not in brought:
            sharers.append(Sharer(user, 0, 0, 0, 0, n))

    report = Report(
        app=facts.app,
        room=facts.room,
        show=facts.show,
        title=facts.title,
        host=facts.host,
        started_at=start,
        ended_at=facts.ended_at,
        until=end,
        duration_s=_secs(duration),
        records=records,
        audience=audience,
        engagement=engagement,
        sales=sales,
        top_gifters=top("gift_value", "gifts"),
        top_buyers=top("gmv", "orders"),
        products=product_reports,
        retention=retention,
        curves=Curves(minutes, online, curve_barrage, curve_likes, curve_orders, curve_gmv),
        marks=marks,
        shares=sharers,
        attributed_viewers=sum(len(u) for u in brought.values()),
        assistant=AssistantCounts(
            questions,
            answered,
            questions - answered,
            _top_unanswered([*unanswered_seqs.values(), *unanswered_other]),
        ),
    )
    users = []
    for user in sorted(people):
        p = people[user]
        spans = watch.get(user, [])
        users.append(
            UserRow(
                user=user,
                first_join_s=_secs(spans[0][0] - start) if spans else None,
                last_leave_s=_secs(spans[-1][1] - start) if spans else None,
                watch_s=_secs(sum(e_ - s for s, e_ in spans)),
                sessions=p.views,
                new=user not in history.seen_before,
                ref=p.ref,
                barrage=p.barrage,
                likes=p.likes,
                gifts=p.gifts,
                gift_value=p.gift_value,
                clicks=p.clicks,
                cart_adds=p.cart_adds,
                orders=p.orders,
                gmv=p.gmv,
            )
        )
    return report, users


def user_timeline(
    facts: ShowFacts, events: Iterable[BehaviourEvent], user: str, *, now_ms: int
) -> UserTimeline:
    """One user's records of the show in show seconds, and their merged
    sessions (``[join s, leave s]``, clipped to the show) and watch time."""
    start = facts.started_at
    end = facts.ended_at if facts.ended_at is not None else max(now_ms, start)
    mine = sorted((e for e in events if e.user == user), key=lambda e: (e.ts, e.id))
    opened: list[int] = []
    spans: list[tuple[int, int]] = []
    for e in mine:
        if e.kind == "join":
            opened.append(e.ts)
        elif e.kind == "leave":
            joined = _int(e.data.get("joined_at", e.ts))
            if joined in opened:
                opened.remove(joined)
            elif opened:
                joined = opened.pop(0)
            spans.append((joined, e.ts))
    merged = _merge(spans + [(j, end) for j in opened], start, end)
    return UserTimeline(
        app=facts.app,
        room=facts.room,
        show=facts.show,
        user=user,
        watch_s=_secs(sum(e_ - s for s, e_ in merged)),
        sessions=[(_secs(s - start), _secs(e_ - start)) for s, e_ in merged],
        entries=[TimelineEntry(_secs(e.ts - start), e.kind, dict(e.data)) for e in mine],
    )
