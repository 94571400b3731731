"""Product knowledge per app (pure): products, attributes, FAQ entries, versions.

What ``PUT /v1/products/{id}`` takes (PROTOCOL §7) and how a catalogue keeps it.
A text may be one string or ``{"zh": …, "en": …}``: the answer is given in the
asker's language when the catalogue has it, else in the one it has.

Each product carries a ``version`` that every write raises; a write may name the
version it read (``version``) and is refused with ``conflict`` when another write
came first, so two editors cannot silently overwrite each other.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from roomserver.assistant.text import Lang
from roomserver.protocol import OpError

MAX_PRODUCTS_PER_APP = 1000
MAX_FAQ = 50
MAX_VARIANTS = 20
MAX_ATTRIBUTES = 30
MAX_ALIASES = 10


Short = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
Long = Annotated[str, msgspec.Meta(min_length=1, max_length=500)]
AttrName = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")]


class Translated(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, frozen=True):
    """A text in Chinese and, optionally, English (an English-only text is a plain string)."""

    zh: Long
    en: Long | None = None


# A text: one string (any language), or {"zh": …, "en": …}.
Text = Long | Translated


class FaqEntry(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Question variants (any language) and the answer."""

    q: Annotated[list[Short], msgspec.Meta(min_length=1, max_length=MAX_VARIANTS)]
    a: Text
    # A name for the entry (feedback and the answer log name it); default: its position.
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")] | None = None


class ProductBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """The body of ``PUT /v1/products/{id}``."""

    title: Short
    price_cents: Annotated[int, msgspec.Meta(ge=0, le=100_000_000)]
    title_en: Short | None = None
    image: Annotated[str, msgspec.Meta(max_length=2048)] | None = None
    # Other names shoppers use for it ("外套", "jacket"): how a question names a product.
    aliases: Annotated[list[Short], msgspec.Meta(max_length=MAX_ALIASES)] = []
    attributes: Annotated[dict[AttrName, Text], msgspec.Meta(max_length=MAX_ATTRIBUTES)] = {}
    faq: Annotated[list[FaqEntry], msgspec.Meta(max_length=MAX_FAQ)] = []
    # The version this write was based on (optimistic concurrency); None: overwrite.
    version: Annotated[int, msgspec.Meta(ge=0)] | None = None


class FaqBody(msgspec.Struct, forbid_unknown_fields=True):
    """The body of ``PUT /v1/products/{id}/faq``: the product's whole FAQ."""

    faq: Annotated[list[FaqEntry], msgspec.Meta(max_length=MAX_FAQ)]
    version: Annotated[int, msgspec.Meta(ge=0)] | None = None


class CatalogProduct(msgspec.Struct, frozen=True, omit_defaults=True):
    id: str
    title: str
    price_cents: int
    version: int
    updated_at: int
    title_en: str | None = None
    image: str | None = None
    aliases: tuple[str, ...] = ()
    attributes: dict[str, Text] = {}
    faq: tuple[FaqEntry, ...] = ()

    def names(self) -> list[str]:
        """Every name a question may use for this product."""
        return [n for n in (self.title, self.title_en, *self.aliases) if n]

    def title_in(self, lang: Lang) -> str:
        return self.title_en if lang == "en" and self.title_en else self.title


def text_in(text: Text, lang: Lang) -> str:
    if isinstance(text, str):
        return text
    return text.en if lang == "en" and text.en else text.zh


def view(p: CatalogProduct) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(p)
    return out


def view_faq(e: FaqEntry) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(e)
    return out


def product_of(product_id: str, body: ProductBody, version: int, now_ms: int) -> CatalogProduct:
    """The product a ``PUT /v1/products/{id}`` body describes, at ``version``."""
    return CatalogProduct(
        id=product_id,
        title=body.title,
        price_cents=body.price_cents,
        version=version,
        updated_at=now_ms,
        title_en=body.title_en,
        image=body.image,
        aliases=tuple(body.aliases),
        attributes=dict(body.attributes),
        faq=tuple(body.faq),
    )


def encode_product(p: CatalogProduct) -> bytes:
    """How a product is kept on the bus (``version`` is the bus entry's own)."""
    return msgspec.json.encode(msgspec.structs.replace(p, version=0))


def decode_product(data: bytes, version: int) -> CatalogProduct:
    return msgspec.structs.replace(msgspec.json.decode(data, type=CatalogProduct), version=version)


class Catalog:
    """One app's products. Pure: the caller passes the clock.

    The server keeps the catalogue on the bus (``assistant/shared.py``) and builds one
    of these per version it read (``from_entries``); ``put``/``put_faq``/``delete``
    are the same rules in memory (the evaluation and the unit tests)."""

    def __init__(self) -> None:
        self.products: dict[str, CatalogProduct] = {}
        self.version = 0  # raised by every write: retrieval indexes are rebuilt when it moves

    @classmethod
    def from_entries(cls, version: int, entries: dict[str, tuple[int, bytes]]) -> Catalog:
        cat = cls()
        cat.version = version
        cat.products = {pid: decode_product(data, ver) for pid, (ver, data) in entries.items()}
        return cat

    def _check_version(self, product_id: str, expected: int | None) -> int:
        current = self.products.get(product_id)
        have = current.version if current else 0
        if expected is not None and expected != have:
            raise OpError("conflict", f"product {product_id} is at version {have}, not {expected}")
        return have

    def put(self, product_id: str, body: ProductBody, now_ms: int) -> CatalogProduct:
        have = self._check_version(product_id, body.version)
        if product_id not in self.products and len(self.products) >= MAX_PRODUCTS_PER_APP:
            raise OpError("limit_reached", f"an app may have at most {MAX_PRODUCTS_PER_APP} products")
        product = product_of(product_id, body, have + 1, now_ms)
        self.products[product_id] = product
        self.version += 1
        return product

    def put_faq(self, product_id: str, body: FaqBody, now_ms: int) -> CatalogProduct:
        current = self.get(product_id)
        self._check_version(product_id, body.version)
        product = msgspec.structs.replace(
            current, faq=tuple(body.faq), version=current.version + 1, updated_at=now_ms
        )
        self.products[product_id] = product
        self.version += 1
        return product

    def get(self, product_id: str) -> CatalogProduct:
        product = self.products.get(product_id)
        if product is None:
            raise OpError("not_found", f"no product {product_id} in this app's catalogue")
        return product

    def delete(self, product_id: str) -> None:
        self.get(product_id)
        del self.products[product_id]
        self.version += 1
