"""The answer decision (pure): which product, which knowledge item, whether to answer, the text.

Order of search (issue 18): a product the question names (if it is the room's;
a product of the app that is not in the room is never answered about), else the
pinned product with the room-wide items (coupons), else the room's other
products, which must then clear the threshold by ``OTHER_PRODUCT_MARGIN`` (an
unnamed question is most likely about what is on screen). With no pinned product
and several in the room, a question whose best item exists for two products alike
("多少钱") is ambiguous and stays unanswered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from roomserver.assistant import facts as live
from roomserver.assistant.catalog import CatalogProduct, FaqEntry, text_in
from roomserver.assistant.intents import ATTRIBUTE_LABELS, Knowledge
from roomserver.assistant.retrieval import Hit, Index, Vectors
from roomserver.assistant.text import Lang, lang_of, normal

# Tuned on eval/ (docs/assistant.md): the lowest score that kept out-of-scope false
# answers under 3 %; the hybrid score runs higher on near misses, so its bar is higher.
DEFAULT_THRESHOLD = 0.55
HYBRID_THRESHOLD = 0.6
OTHER_PRODUCT_MARGIN = 0.1
AMBIGUITY_GAP = 0.05


@dataclass(frozen=True, slots=True)
class RoomScope:
    """The room's products as the catalogue knows them, and the pinned one."""

    products: dict[str, CatalogProduct]
    pinned: str | None
    # Names of the app's products that are NOT in this room: questions naming them are refused.
    outside_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    answer: bool
    reason: str  # "ok", "low_confidence", "not_in_room", "ambiguous", "no_fact", "no_products"
    lang: Lang
    score: float = 0.0
    key: str | None = None  # the knowledge item (clusters and feedback use it)
    product: str | None = None
    source: str | None = None
    text: str = ""
    # What the answer was built from, for the answer log.
    sources: list[str] = field(default_factory=list)


def _mentions(text: str, names: list[tuple[str, str]]) -> list[str]:
    """Ids of products named in ``text`` (normal form), longest names first."""
    found: list[str] = []
    for name, pid in sorted(names, key=lambda n: -len(n[0])):
        n = normal(name)
        if not n:
            continue
        hit = re.search(rf"(?<![a-z0-9]){re.escape(n)}(?![a-z0-9])", text) if n.isascii() else n in text
        if hit and pid not in found:
            found.append(pid)
    return found


def _strip_names(text: str, names: list[str]) -> str:
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(normal(name), " ")
    return text


@dataclass(frozen=True, slots=True)
class Choice:
    """What retrieval chose for a question, before the live facts are read: the
    service caches it per question text (the barrage repeats itself) and reads the
    room's counters only for a ``live`` item."""

    lang: Lang
    hit: Hit | None
    reason: str  # "ok" when ``hit`` passed the threshold
    score: float


def choose(
    question: str,
    scope: RoomScope,
    index: Index,
    *,
    question_vec: Vectors | None = None,
    thresholds: dict[str, float] | None = None,
    default_threshold: float = DEFAULT_THRESHOLD,
) -> Choice:
    lang = lang_of(question)
    if not scope.products:
        return Choice(lang, None, "no_products", 0.0)
    text = normal(question)
    names = [(n, pid) for pid, p in scope.products.items() for n in p.names()]
    named = _mentions(text, names)
    if not named and scope.outside_names and _mentions(text, [(n, "x") for n in scope.outside_names]):
        return Choice(lang, None, "not_in_room", 0.0)
    stripped = _strip_names(text, [n for n, _ in names] + list(scope.outside_names))
    hits = index.rank(stripped, question_vec, products={*scope.products, None})
    best = _choose(hits, named, scope, thresholds or {}, default_threshold)
    if isinstance(best, str):
        return Choice(lang, hits[0] if hits else None, best, hits[0].score if hits else 0.0)
    return Choice(lang, best, "ok", best.score)


def render(choice: Choice, scope: RoomScope, facts: live.RoomFacts) -> Decision:
    """The decision for a choice, its text filled from ``facts``."""
    hit, lang = choice.hit, choice.lang
    if hit is None or choice.reason != "ok":
        key = hit.item.key if hit is not None else None
        return Decision(False, choice.reason, lang, score=choice.score, key=key)
    text_out = _render(hit.item, scope, facts, lang)
    if text_out is None:
        return Decision(False, "no_fact", lang, score=hit.score, key=hit.item.key, product=hit.item.product)
    return Decision(
        True,
        "ok",
        lang,
        score=hit.score,
        key=hit.item.key,
        product=hit.item.product,
        source=hit.item.source,
        text=text_out,
        sources=[f"{hit.item.key} lex={hit.lex:.2f} sem={hit.sem:.2f}"],
    )


def decide(
    question: str,
    scope: RoomScope,
    index: Index,
    facts: live.RoomFacts,
    *,
    question_vec: Vectors | None = None,
    thresholds: dict[str, float] | None = None,
    default_threshold: float = DEFAULT_THRESHOLD,
) -> Decision:
    """``choose`` then ``render``: the whole decision for one question."""
    choice = choose(
        question,
        scope,
        index,
        question_vec=question_vec,
        thresholds=thresholds,
        default_threshold=default_threshold,
    )
    return render(choice, scope, facts)


def _threshold(thresholds: dict[str, float], default: float, product: str | None) -> float:
    return thresholds.get(product or "", default)


def _choose(
    hits: list[Hit], named: list[str], scope: RoomScope, thresholds: dict[str, float], default: float
) -> Hit | str:
    def passes(h: Hit, margin: float = 0.0) -> bool:
        return h.score >= _threshold(thresholds, default, h.item.product) + margin

    if named:
        target = set(named[:1])
        pool = [h for h in hits if h.item.product in target or h.item.product is None]
        return pool[0] if pool and passes(pool[0]) else "low_confidence"
    focus = scope.pinned if scope.pinned in scope.products else None
    if focus is None and len(scope.products) == 1:
        focus = next(iter(scope.products))
    if focus is not None:
        first = [h for h in hits if h.item.product in (focus, None)]
        if first and passes(first[0]):
            return first[0]
        others = [h for h in hits if h.item.product not in (focus, None)]
        if others and passes(others[0], OTHER_PRODUCT_MARGIN) and not _tied(others):
            return others[0]
        return "low_confidence"
    if not hits or not passes(hits[0]):
        return "low_confidence"
    return "ambiguous" if _tied(hits) else hits[0]


def _tied(hits: list[Hit]) -> bool:
    """The best item has a rival of the same intent on another product, as good."""
    if len(hits) < 2:
        return False
    a = hits[0]
    for b in hits[1:]:
        if a.score - b.score > AMBIGUITY_GAP:
            return False
        if b.item.product != a.item.product and b.item.intent == a.item.intent:
            return True
    return False


def faq_entry(product: CatalogProduct, intent: str) -> FaqEntry:
    """The FAQ entry an intent ``faq.<id or position>`` names."""
    name = intent.split(".", 1)[1]
    for i, entry in enumerate(product.faq):
        if (entry.id or str(i)) == name:
            return entry
    raise KeyError(intent)


def _render(item: Knowledge, scope: RoomScope, facts: live.RoomFacts, lang: Lang) -> str | None:
    if item.product is None:
        return live.coupon_text(facts.coupons, lang)
    product = scope.products[item.product]
    title = product.title_in(lang)
    if item.source == "faq":
        return text_in(faq_entry(product, item.intent).a, lang)
    if item.source == "attribute":
        value = text_in(product.attributes[item.intent], lang)
        zh, en = ATTRIBUTE_LABELS.get(item.intent, (item.intent, item.intent.replace("_", " ").capitalize()))
        return f"{title}的{zh}：{value}" if lang == "zh" else f"{en} of {title}: {value}"
    if item.intent == "price":
        return live.price_text(title, product.id, product.price_cents, facts, lang)
    sale = facts.sales.get(product.id)
    if sale is None:
        return None
    if item.intent == "stock":
        return live.stock_text(title, sale, lang)
    return live.sale_time_text(title, sale, facts.now_ms, lang)
