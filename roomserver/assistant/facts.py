"""Live facts of a room (pure): what the room's state says right now, as text.

Built from the room document (pinned product, sales, coupons) and the live
counters the bus holds (stock left, coupons claimed) by the service, at the time
of the answer: a price changed by a new pin or a sale, and a stock that moved,
are never answered from a stale copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roomserver.assistant.text import Lang


@dataclass(frozen=True, slots=True)
class SaleFact:
    id: str
    product: str
    price_cents: int
    state: str  # scheduled | open | closed
    left: int | None
    starts_at: int
    ends_at: int | None


@dataclass(frozen=True, slots=True)
class CouponFact:
    title: str
    discount_cents: int
    min_spend_cents: int
    left: int | None


@dataclass(frozen=True, slots=True)
class RoomFacts:
    now_ms: int
    pinned: str | None = None
    pinned_price_cents: int | None = None
    # product id -> its latest sale in the room (open first, then scheduled, then closed)
    sales: dict[str, SaleFact] = field(default_factory=dict)
    coupons: tuple[CouponFact, ...] = ()

    def price_cents(self, product: str, catalogue_cents: int) -> int:
        sale = self.sales.get(product)
        if sale is not None and sale.state == "open":
            return sale.price_cents
        if product == self.pinned and self.pinned_price_cents is not None:
            return self.pinned_price_cents
        return catalogue_cents


def money(cents: int) -> str:
    yuan, rest = divmod(cents, 100)
    return f"¥{yuan}" if rest == 0 else f"¥{yuan}.{rest:02d}"


def duration(ms: int, lang: Lang) -> str:
    s = max(0, ms) // 1000
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    if lang == "zh":
        return (f"{h}小时" if h else "") + (f"{m}分" if m or h else "") + f"{sec}秒"
    return (f"{h}h " if h else "") + (f"{m}m " if m or h else "") + f"{sec}s"


def price_text(title: str, product: str, catalogue_cents: int, facts: RoomFacts, lang: Lang) -> str:
    now = money(facts.price_cents(product, catalogue_cents))
    sale = facts.sales.get(product)
    if sale is not None and sale.state == "open" and sale.price_cents < catalogue_cents:
        if lang == "zh":
            return f"{title}秒杀价{now}（原价{money(catalogue_cents)}），手慢无！"
        return f"{title} is {now} in the flash sale now (was {money(catalogue_cents)})."
    return f"{title}现在{now}" if lang == "zh" else f"{title} is {now} now."


def stock_text(title: str, sale: SaleFact, lang: Lang) -> str:
    if sale.state == "closed" or sale.left == 0:
        return f"{title}已经抢光了" if lang == "zh" else f"{title} is sold out."
    if sale.state == "scheduled":
        return (
            f"{title}还没开抢，开抢后库存有限" if lang == "zh" else f"The {title} sale has not started yet."
        )
    if sale.left is None:
        return f"{title}还有货" if lang == "zh" else f"{title} is in stock."
    return f"{title}还剩{sale.left}件" if lang == "zh" else f"{sale.left} left of {title}."


def sale_time_text(title: str, sale: SaleFact, now_ms: int, lang: Lang) -> str:
    if sale.state == "scheduled":
        wait = duration(sale.starts_at - now_ms, lang)
        return f"{title}秒杀{wait}后开抢" if lang == "zh" else f"The {title} sale starts in {wait}."
    if sale.state == "closed":
        return f"{title}的秒杀已经结束了" if lang == "zh" else f"The {title} sale has ended."
    if sale.ends_at is None:
        return f"{title}正在秒杀，抢完即止" if lang == "zh" else f"The {title} sale is on until sold out."
    left = duration(sale.ends_at - now_ms, lang)
    return f"{title}秒杀还有{left}结束" if lang == "zh" else f"The {title} sale ends in {left}."


def coupon_text(coupons: tuple[CouponFact, ...], lang: Lang) -> str | None:
    """None when the room has no coupon left: the assistant then says nothing."""
    open_ = [c for c in coupons if c.left is None or c.left > 0]
    if not open_:
        return None
    parts = []
    for c in open_[:3]:
        if lang == "zh":
            cond = (
                f"满{money(c.min_spend_cents)}减{money(c.discount_cents)}"
                if c.min_spend_cents
                else (f"立减{money(c.discount_cents)}")
            )
            parts.append(f"「{c.title}」{cond}")
        else:
            cond = f"{money(c.discount_cents)} off"
            if c.min_spend_cents:
                cond += f" orders over {money(c.min_spend_cents)}"
            parts.append(f'"{c.title}" {cond}')
    if lang == "zh":
        return "直播间有券：" + "；".join(parts) + "，点购物袋上方领取"
    return "Coupons in this room: " + "; ".join(parts) + " (claim above the shopping bag)."
