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
class ProductName:
    """A product's name as questions are matched against it (normal form)."""

    text: str
    product: str
    # An ASCII name matches as a whole word ("pro" is not in "probably"); any other, as a substring.
    word: re.Pattern[str] | None

    @classmethod
    def of(cls, name: str, product: str) -> ProductName | None:
        n = normal(name)
        if not n:
            return None
        return cls(
            n, product, re.compile(rf"(?<![a-z0-9]){re.escape(n)}(?![a-z0-9])") if n.isascii() else None
        )

    def in_text(self, text: str) -> bool:
        return self.word.search(text) is not None if self.word is not None else self.text in text


def _longest_first(pairs: list[tuple[str, str]]) -> tuple[ProductName, ...]:
    names = (ProductName.of(n, pid) for n, pid in sorted(pairs, key=lambda p: -len(p[0])))
    return tuple(n for n in names if n is not None)


@dataclass(frozen=True, slots=True)
class RoomScope:
    """The room's products as the catalogue knows them, and the pinned one."""

    products: dict[str, CatalogProduct]
    pinned: str | None
    # Names of the app's products that are NOT in this room: questions naming them are refused.
    outside_names: tuple[str, ...] = ()
    # The names in normal form, longest first, built once per scope: normalising and
    # compiling every name per question was half of a question's decision (with an app's
    # whole catalogue outside the room, it would grow with the catalogue).
    room_names: tuple[ProductName, ...] = field(init=False, repr=False, compare=False)
    other_names: tuple[ProductName, ...] = field(init=False, repr=False, compare=False)
    all_names: tuple[str, ...] = field(init=False, repr=False, compare=False)  # what is stripped

    def __post_init__(self) -> None:
        inside = [(n, pid) for pid, p in self.products.items() for n in p.names()]
        outside = [(n, "") for n in self.outside_names]
        room, other = _longest_first(inside), _longest_first(outside)
        object.__setattr__(self, "room_names", room)
        object.__setattr__(self, "other_names", other)
        stripped = sorted((n.text for n in room + other), key=len, reverse=True)
        object.__setattr__(self, "all_names", tuple(stripped))


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


def _mentions(text: str, names: tuple[ProductName, ...]) -> list[str]:
    """Ids of products named in ``text`` (normal form), longest names first."""
    found: list[str] = []
    for name in names:
        if name.product not in found and name.in_text(text):
            found.append(name.product)
    return found


def _strip_names(text: str, names: tuple[str, ...]) -> str:
    for name in names:
        text = text.replace(name, " ")
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
    named = _mentions(text, scope.room_names)
    if not named and _mentions(text, scope.other_names):
        return Choice(lang, None, "not_in_room", 0.0)
    stripped = _strip_names(text, scope.all_names)
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
