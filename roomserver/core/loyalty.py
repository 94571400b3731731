"""Loyalty rules (issue 12): points per rule with daily caps, member tiers, RFM
scores and tags. Pure: no I/O; the store (roomserver/store/loyalty.py) keeps
the counters these rules read, and docs/analytics.md ("Profiles, tags, points
and tiers") states every rule in words.

Points. Each rule counts *units* of one behaviour per user per day and turns
the day's units into points: ``points = min(cap, units // per_units * rate)``
(``cap`` 0 = no cap). Counting the day's units (not each record alone) keeps
fractions: two gifts of 0.50 yuan are one point at "1 per yuan". A day is a
calendar day at ``day_offset_min`` from UTC (default +08:00, China time), so a
cap resets at local midnight.

=========  ==================================  ===========================
rule       unit                                default (points/per: cap)
=========  ==================================  ===========================
watch      one minute watched (a session's     1 per minute, 60 a day
           join → leave, counted at leave)
barrage    one barrage message                 1 each, 20 a day
like       one like (``like.send`` count)      1 per 10 likes, 10 a day
gift       one yuan (100 cents) of gift value  1 per yuan, 1000 a day
order      one yuan of order amount            1 per yuan, 5000 a day
share      one viewer new to the app who       20 each, 200 a day
           joined through the user's link
=========  ==================================  ===========================

Tiers come from the points *earned* over all time (redeeming never lowers a
tier): tier k is reached at ``thresholds[k-1]`` points; 0 means no tier.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from roomserver.core.behaviour import ANONYMOUS_START, BehaviourEvent

RULES: Final = ("watch", "barrage", "like", "gift", "order", "share")
# How many raw units (what the store counts) make one unit of the rule's spec.
RAW_UNIT: Final = {"watch": 60_000, "barrage": 1, "like": 1, "gift": 100, "order": 100, "share": 1}
DEFAULT_POINTS_RULES: Final = "watch=1:60,barrage=1:20,like=1/10:10,gift=1:1000,order=1:5000,share=20:200"
DEFAULT_TIERS: Final = "100,500,2000,10000,50000"
DEFAULT_DAY_OFFSET_MIN: Final = 480
MAX_TIER: Final = 10
DAY_MS: Final = 86_400_000
# A leave whose session claims more than this is clipped (a clock jump, a lost leave).
MAX_SESSION_MS: Final = 12 * 3_600_000

# Tag rules (docs/analytics.md): fixed, so a segment means the same for every app.
NEW_DAYS: Final = 7
AT_RISK_DAYS: Final = 30
AT_RISK_MIN_SHOWS: Final = 3
LURKER_MIN_WATCH_MS: Final = 10 * 60_000
TAGS: Final = ("new", "buyer", "repeat buyer", "gifter", "lurker", "at risk")

# Interactions counted on a profile, by behaviour kind (one record = one interaction).
INTERACTIONS: Final = {
    "barrage": "barrage",
    "like": "like",
    "gift": "gift",
    "vote": "vote",
    "track": "track",
    "lottery.enter": "lottery",
    "coupon.claim": "coupon",
    "redpacket.grab": "redpacket",
}
# Records that say nothing about a viewer (staff marks, show bounds, the assistant).
NOT_A_VIEWER: Final = frozenset({"mark", "show.start", "show.end", "assistant"})

_RULE_RE: Final = re.compile(
    r"(?P<rule>[a-z]+)=(?P<rate>\d{1,9})(?:/(?P<per>\d{1,9}))?(?::(?P<cap>\d{1,12}))?"
)


class LoyaltySpecError(ValueError):
    """A points-rules or tiers spec that does not parse (the message says why)."""


@dataclass(frozen=True, slots=True)
class Rule:
    rate: int  # points …
    per: int = 1  # … per this many units of the spec
    cap: int = 0  # points a day at most (0: no cap)

    def points(self, raw_units: int, raw_unit: int) -> int:
        """The day's points for ``raw_units`` counted that day."""
        if raw_units <= 0:
            return 0
        earned = raw_units // (self.per * raw_unit) * self.rate
        return min(earned, self.cap) if self.cap > 0 else earned


@dataclass(frozen=True, slots=True)
class LoyaltyRules:
    rules: dict[str, Rule] = field(default_factory=lambda: parse_points_rules(DEFAULT_POINTS_RULES))
    tiers: tuple[int, ...] = field(default_factory=lambda: parse_tiers(DEFAULT_TIERS))
    day_offset_min: int = DEFAULT_DAY_OFFSET_MIN

    def day(self, ts: int) -> int:
        """The day number (days since 1970-01-01 at the offset) of wall time ``ts``."""
        return (ts + self.day_offset_min * 60_000) // DAY_MS

    def day_points(self, rule: str, raw_units: int) -> int:
        r = self.rules.get(rule)
        return r.points(raw_units, RAW_UNIT[rule]) if r is not None else 0

    def tier(self, points_earned: int) -> int:
        return sum(1 for t in self.tiers if points_earned >= t)

    def min_points(self, tier: int) -> int:
        """Points earned needed for ``tier`` (1..len(tiers)); beyond the last: unreachable."""
        if tier <= 0:
            return 0
        return self.tiers[tier - 1] if tier <= len(self.tiers) else -1


def parse_points_rules(spec: str) -> dict[str, Rule]:
    """``RULE=POINTS[/PER][:CAP],…`` e.g. ``watch=1:60,like=1/10:10``; rules left out earn nothing."""
    rules: dict[str, Rule] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        m = _RULE_RE.fullmatch(part)
        if m is None:
            raise LoyaltySpecError(f"points rule {part!r}: write RULE=POINTS[/PER][:CAP], e.g. like=1/10:10")
        name = m["rule"]
        if name not in RULES:
            raise LoyaltySpecError(f"points rule {name!r}: the rules are {', '.join(RULES)}")
        if name in rules:
            raise LoyaltySpecError(f"points rule {name!r} is given twice")
        per = int(m["per"] or 1)
        if per < 1:
            raise LoyaltySpecError(f"points rule {name!r}: PER must be at least 1")
        rules[name] = Rule(int(m["rate"]), per, int(m["cap"] or 0))
    return rules


def parse_tiers(spec: str) -> tuple[int, ...]:
    """``100,500,2000``: points earned for tier 1, 2, 3 … (ascending, at most 10)."""
    try:
        tiers = tuple(int(p) for p in spec.split(",") if p.strip())
    except ValueError:
        raise LoyaltySpecError(f"member tiers {spec!r}: a comma-separated list of point thresholds") from None
    if len(tiers) > MAX_TIER:
        raise LoyaltySpecError(f"member tiers: at most {MAX_TIER} tiers")
    if any(t < 1 for t in tiers) or any(b <= a for a, b in itertools.pairwise(tiers)):
        raise LoyaltySpecError("member tiers: positive thresholds in ascending order")
    return tiers


def check_points_rules(text: str) -> str:
    parse_points_rules(text)
    return text


def check_tiers(text: str) -> str:
    parse_tiers(text)
    return text


def check_day_offset(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise LoyaltySpecError(f"{text!r} is not an integer (minutes east of UTC)") from None
    if not -720 <= value <= 840:
        raise LoyaltySpecError("the day offset is -720..840 minutes from UTC")
    return value


# -- folding a batch of records into per-user changes ------------------------------


@dataclass(slots=True)
class UserDelta:
    """What one batch adds to one user's rollup."""

    records: int = 0
    first_seen: int | None = None
    last_seen: int | None = None
    watch_ms: int = 0
    interactions: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    gmv: int = 0
    gift_value: int = 0
    last_order: int | None = None
    shows: set[tuple[str, int]] = field(default_factory=set)
    order_shows: set[tuple[str, int]] = field(default_factory=set)
    ref: str | None = None  # the sharer named by this batch's first join with a ref


@dataclass(slots=True)
class Fold:
    users: dict[tuple[str, str], UserDelta] = field(default_factory=dict)
    # (app, user, day, rule) -> raw units
    units: dict[tuple[str, str, int, str], int] = field(default_factory=dict)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def fold(events: Iterable[BehaviourEvent], rules: LoyaltyRules) -> Fold:
    """Per-user changes and the day's rule units of ``events`` (share units are
    added by the store, which alone knows whether a viewer is new to the app).
    Runs inside the ingest transaction for every record: kept to plain dict work."""
    out = Fold()
    users, units = out.users, out.units
    offset = rules.day_offset_min * 60_000
    ref_at: dict[tuple[str, str], int] = {}  # when the user's earliest join with a ref was
    for e in events:
        kind, user, ts = e.kind, e.user, e.ts
        if kind in NOT_A_VIEWER or not user or user[0] == ANONYMOUS_START:  # an erased user's
            continue
        key = (e.app, user)
        d = users.get(key)
        if d is None:
            d = users[key] = UserDelta(first_seen=ts, last_seen=ts)
        else:
            if ts < d.first_seen:  # type: ignore[operator]
                d.first_seen = ts
            if ts > d.last_seen:  # type: ignore[operator]
                d.last_seen = ts
        d.records += 1
        if e.show > 0:
            d.shows.add((e.room, e.show))
        interaction = INTERACTIONS.get(kind)
        if interaction is not None:
            d.interactions[interaction] = d.interactions.get(interaction, 0) + 1
        rule, n, data = "", 0, e.data
        if kind == "barrage":
            rule, n = "barrage", 1
        elif kind == "leave":
            joined_at = data.get("joined_at")
            if isinstance(joined_at, int) and not isinstance(joined_at, bool):
                n = min(max(ts - joined_at, 0), MAX_SESSION_MS)
                d.watch_ms += n
                rule = "watch"
        elif kind == "like":
            rule, n = "like", _int(data.get("count", 1))
        elif kind == "join":
            ref = data.get("ref")
            if isinstance(ref, str) and ref and ref != user and ts < ref_at.get(key, 2**63):
                d.ref, ref_at[key] = ref, ts
        elif kind == "gift":
            rule, n = "gift", _int(data.get("value"))
            d.gift_value += n
        elif kind == "order":
            rule, n = "order", _int(data.get("amount"))
            d.orders += 1
            d.gmv += n
            if d.last_order is None or ts > d.last_order:
                d.last_order = ts
            if e.show > 0:
                d.order_shows.add((e.room, e.show))
        if n > 0:
            ukey = (e.app, user, (ts + offset) // DAY_MS, rule)
            units[ukey] = units.get(ukey, 0) + n
    return out


# -- a profile's derived figures ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stats:
    """The rollup figures tags and RFM are computed from."""

    first_seen: int | None
    last_seen: int | None
    shows: int
    order_shows: int
    watch_ms: int
    interactions: int
    orders: int
    gmv: int
    gift_value: int


def tags(s: Stats, now_ms: int) -> list[str]:
    """The user's tags, in ``TAGS`` order (rules: docs/analytics.md). Mirrored by the
    store's segment filter (``roomserver/store/loyalty.py`` ``TAG_SQL``)."""
    out = []
    if s.first_seen is not None and s.first_seen >= now_ms - NEW_DAYS * DAY_MS:
        out.append("new")
    if s.orders >= 1:
        out.append("buyer")
    if s.order_shows >= 2:
        out.append("repeat buyer")
    if s.gift_value > 0:
        out.append("gifter")
    if s.interactions == 0 and s.orders == 0 and s.watch_ms >= LURKER_MIN_WATCH_MS:
        out.append("lurker")
    if (
        (s.orders >= 1 or s.shows >= AT_RISK_MIN_SHOWS)
        and s.last_seen is not None
        and s.last_seen < now_ms - AT_RISK_DAYS * DAY_MS
    ):
        out.append("at risk")
    return out


def _score(value: float, steps: tuple[float, ...]) -> int:
    """1 + the number of ``steps`` reached (steps ascending; 5 at most)."""
    return 1 + sum(1 for s in steps if value >= s)


def rfm(s: Stats, now_ms: int) -> dict[str, int]:
    """RFM-style scores 1..5: recency (days since last seen: ≤7 → 5, ≤14 → 4,
    ≤30 → 3, ≤90 → 2), frequency (shows attended: 2, 5, 10, 20 → 2..5), monetary
    (GMV in yuan: >0, 100, 300, 1000 → 2..5); ``score`` is their sum (3..15)."""
    if s.last_seen is None:
        r = 1
    else:
        days = (now_ms - s.last_seen) / DAY_MS
        r = 5 if days <= 7 else 4 if days <= 14 else 3 if days <= 30 else 2 if days <= 90 else 1
    f = _score(s.shows, (2, 5, 10, 20))
    m = 1 if s.gmv <= 0 else _score(s.gmv, (10_000, 30_000, 100_000)) + 1
    return {"r": r, "f": f, "m": m, "score": r + f + m}


def tier_of(rules: LoyaltyRules, points_earned: int, token_tier: int = 0) -> int:
    """The tier a room enforces: the app's own (token ``tier``) or the computed one, whichever is higher."""
    return max(token_tier, min(rules.tier(points_earned), MAX_TIER))
