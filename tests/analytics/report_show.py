"""A scripted show for the report tests: who did what at which second, and the
figures computed by hand from it (see the comments beside each)."""

from __future__ import annotations

import itertools
from typing import Any

from roomserver.core.behaviour import BehaviourEvent

APP, ROOM = "a", "r1"
T0 = 1_700_000_000_000  # show 2 starts (wall ms)
T_PREV = T0 - 86_400_000  # show 1 started a day before
END_S = 600  # show 2 lasts 10 minutes
_ids = itertools.count(1)


def rec(
    show: int, start: int, sec: float, user: str, kind: str, room: str = ROOM, **data: Any
) -> BehaviourEvent:
    ts = start + int(sec * 1000)
    return BehaviourEvent(f"t-{next(_ids)}", APP, room, show, user, kind, ts, ts - start, data)  # type: ignore[arg-type]


def previous_show() -> list[BehaviourEvent]:
    """Show 1: viewers u1, u2, u5 (and the host), u2 bought; u3 was seen in another room."""
    s = lambda sec, user, kind, **d: rec(1, T_PREV, sec, user, kind, **d)  # noqa: E731
    return [
        s(0, "h", "show.start", title="Intro", host="h"),
        s(0, "h", "join"),
        s(5, "u1", "join"),
        s(6, "u2", "join"),
        s(7, "u5", "join"),
        s(30, "u2", "order", order="o0", sale="s0", product="p1", qty=1, amount=9900),
        s(300, "h", "show.end"),
        rec(1, T_PREV, 400, "u3", "join", room="r2"),
    ]


def this_show() -> list[BehaviourEvent]:
    s = lambda sec, user, kind, **d: rec(2, T0, sec, user, kind, **d)  # noqa: E731
    j = lambda sec: T0 + sec * 1000  # noqa: E731  the wall ms of a join, for its leave
    return [
        s(0, "h", "show.start", title="Spring", host="h"),
        s(0, "h", "join"),
        s(10, "u1", "join"),
        s(15, "u1", "barrage", seq=1),
        s(20, "u2", "join"),
        s(35, "u1", "barrage", seq=2),
        s(50, "u1", "track", action="share"),
        s(60, "u3", "join"),
        s(60.5, "u1", "track", action="share"),
        s(70, "u2", "barrage", seq=3),
        s(80, "u2", "track", action="favorite"),
        s(90, "u3", "join"),  # a second tab
        s(100, "u3", "barrage", seq=4),
        s(100, "h", "mark", what="pin", product="p1"),
        s(110, "h", "mark", what="sale", id="s1", product="p1"),
        s(120, "u1", "track", action="product.click", product="p1"),
        s(120, "u3", "leave", joined_at=j(60)),
        s(130, "u1", "leave", joined_at=j(10)),
        s(130, "h", "barrage", seq=5),
        s(140, "u3", "track", action="product.click", product="p1"),
        s(150, "u2", "track", action="product.click", product="p1"),
        s(150, "u3", "leave", joined_at=j(90)),
        s(160, "u2", "track", action="cart.add", product="p1"),
        s(170, "u2", "order", order="o1", sale="s1", product="p1", qty=2, amount=19800),
        s(200, "u1", "join"),
        s(200, "h", "mark", what="poll", id="q1"),
        s(210, "u1", "like", count=3),
        s(212, "u1", "vote", poll="q1", option=0),
        s(215, "u2", "vote", poll="q1", option=1),
        s(230, "u1", "assistant", question_seq=7, answered=True),
        s(231, "u2", "assistant", question_seq=8, answered=True),
        s(232, "u3", "assistant", question_seq=9, answered=False),
        s(250, "u2", "gift", gift="rose", count=2, value=200),
        s(300, "u4", "join"),
        s(300, "h", "mark", what="pin", product="p2"),
        s(305, "u4", "like", count=10),
        s(310, "u6", "join", ref="u1"),
        s(310, "u4", "track", action="follow"),
        s(320, "u2", "leave", joined_at=j(20)),
        s(330, "u4", "track", action="product.click", product="p2"),
        s(340, "u4", "track", action="cart.add", product="p2"),
        s(345, "u4", "order", order="o2", sale="s2", product="p2", qty=1, amount=5000),
        s(350, "u6", "gift", gift="rocket", count=1, value=5000),
        s(350, "u4", "coupon.claim", coupon="c1"),
        s(360, "u6", "track", action="product.click", product="p2"),
        s(380, "u2", "order", order="o4", sale="s1", product="p1", qty=1, amount=9900),
        s(400, "u7", "join", ref="u1"),
        s(400, "h", "mark", what="unpin", product="p2"),
        s(420, "u4", "leave", joined_at=j(300)),
        s(450, "h", "mark", what="lottery", id="l1"),
        s(455, "u2", "lottery.enter", lottery="l1"),
        s(458, "u6", "lottery.enter", lottery="l1"),
        s(460, "u7", "leave", joined_at=j(400)),
        s(500, "h", "mark", what="redpacket", id="rp1"),
        s(505, "u6", "redpacket.grab", packet="rp1", amount=88),
        s(520, "u1", "track", action="product.click", product="p2"),
        s(525, "u1", "track", action="cart.add", product="p2"),
        s(530, "u1", "order", order="o3", sale="s2", product="p2", qty=1, amount=5000),
        s(END_S, "h", "show.end"),
    ]
