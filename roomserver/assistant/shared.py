"""The assistant's state on the bus, shared by every node of a cluster, and this
process's cache of it.

What lives where (names are per app ``a`` or room key ``r``):

==========================  ========================================================
``asst.cat:<a>`` vmap        the catalogue: product id -> product (bus/vmaps.py; the
                             entry's version is the product's, the map's the
                             catalogue's): a PUT on one node is answered from on all
``asst.fb:<a>`` vmap         feedback: ``p:<product>`` (``none`` for answers about no
                             product) -> how many answers were marked wrong; the
                             product's threshold is derived from it
``asst.wrong:<a>`` stream    the marks themselves (room, question, by, note), the last
                             ``WRONG_KEEP``
``asst.q:<r>`` stream        the room's questions as handled (asker, text, cluster
                             key, answered, the answer and its sources) and the host's
                             cluster replies, the last ``BOARD_KEEP`` and nothing
                             older than a day: every node folds it into the host's
                             board (观众在问), finds an answer to mark wrong in it
``assistant`` tally (room)   one entry per question: ``+`` answered (by the
                             assistant, or by the host's reply to its cluster),
                             ``-`` not (the show's totals; expires with the room)
==========================  ========================================================

The cache: a map is re-read only when its version moved, and its version is read
at most every ``CHECK_MS`` on the question path (REST reads and writes always
check), so the barrage path costs nothing and a question asked within
``CHECK_MS`` of a write on another node may still be answered from the previous
catalogue. A write on this node refreshes this node's copy at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from roomserver.assistant import catalog as cat
from roomserver.bus.base import Broker
from roomserver.bus.streams import MAX_COUNT, StreamEntry
from roomserver.bus.vmaps import Vmap, VmapStatus
from roomserver.protocol import OpError

CHECK_MS = 500
# Without a catalogue cached for the app, the barrage path offers its lines anyway
# once this long after the last check (the worker then reads the version).
EMPTY_RECHECK_MS = 1000
BOARD_KEEP = 2000
BOARD_MAX_AGE_MS = 24 * 3600 * 1000
WRONG_KEEP = 1000
TALLY_KEY = "assistant"
TALLY_TTL_MS = 3 * 24 * 3600 * 1000
CAS_TRIES = 8

T = TypeVar("T")


def catalog_map(app: str) -> str:
    return "asst.cat:" + app


def feedback_map(app: str) -> str:
    return "asst.fb:" + app


def wrong_stream(app: str) -> str:
    return "asst.wrong:" + app


def board_stream(room: str) -> str:
    return "asst.q:" + room


def feedback_field(product: str | None) -> str:
    return "p:" + product if product else "none"


def thresholds_of(m: Vmap, base: float, step: float, top: float) -> dict[str, float]:
    """Per product (``""``: answers about no product): the base threshold raised a
    step per answer marked wrong, at most ``top``."""
    out: dict[str, float] = {}
    for name, (_, data) in m.entries.items():
        product = name[2:] if name.startswith("p:") else ""
        out[product] = min(top, base + step * int(data))
    return out


@dataclass(slots=True)
class _Cached(Generic[T]):
    value: T
    version: int = -1  # the map version ``value`` was built from (-1: none yet)
    checked: float = -1e18  # monotonic s of the last version read


@dataclass(slots=True)
class Shared:
    """Reads and writes of the assistant's shared state for one process."""

    broker: Broker
    base_threshold: float
    step: float
    top: float
    catalogs: dict[str, _Cached[cat.Catalog]] = field(default_factory=dict)
    feedback: dict[str, _Cached[dict[str, float]]] = field(default_factory=dict)

    # -- the cache ------------------------------------------------------------------

    async def _fresh(
        self,
        table: dict[str, _Cached[T]],
        app: str,
        name: str,
        empty: Callable[[], T],
        build: Callable[[Vmap], T],
        max_age_ms: float,
    ) -> T:
        c = table.get(app)
        if c is None:
            c = table[app] = _Cached(empty())
        now = time.monotonic()
        if (now - c.checked) * 1000 < max_age_ms:
            return c.value
        version = await self.broker.vmap_version(name)
        c.checked = now
        if version != c.version:
            m = await self.broker.vmap_read(name)
            c.value, c.version = build(m), m.version
        return c.value

    def maybe_answerable(self, app: str) -> bool:
        """For the barrage path (no I/O): False only when this process read the
        app's catalogue lately and it was empty."""
        c = self.catalogs.get(app)
        if c is None or c.value.products:
            return True
        return (time.monotonic() - c.checked) * 1000 >= EMPTY_RECHECK_MS

    async def catalog(self, app: str, max_age_ms: float = 0) -> cat.Catalog:
        return await self._fresh(
            self.catalogs,
            app,
            catalog_map(app),
            cat.Catalog,
            lambda m: cat.Catalog.from_entries(m.version, m.entries),
            max_age_ms,
        )

    async def thresholds(self, app: str, max_age_ms: float = 0) -> dict[str, float]:
        return await self._fresh(
            self.feedback,
            app,
            feedback_map(app),
            dict,
            lambda m: thresholds_of(m, self.base_threshold, self.step, self.top),
            max_age_ms,
        )

    def _stale(self, table: dict[str, Any], app: str) -> None:
        c = table.get(app)
        if c is not None:
            c.checked = -1e18

    # -- catalogue writes (REST) -----------------------------------------------------

    async def _write_product(self, app: str, product: cat.CatalogProduct, expect: int | None) -> int:
        w = await self.broker.vmap_put(
            catalog_map(app),
            product.id,
            cat.encode_product(product),
            expect=expect,
            max_fields=cat.MAX_PRODUCTS_PER_APP,
        )
        self._stale(self.catalogs, app)
        if w.status is VmapStatus.CONFLICT:
            raise OpError("conflict", f"product {product.id} is at version {w.version}, not {expect}")
        if w.status is VmapStatus.LIMIT_REACHED:
            raise OpError("limit_reached", f"an app may have at most {cat.MAX_PRODUCTS_PER_APP} products")
        return w.version

    async def put_product(
        self, app: str, product_id: str, body: cat.ProductBody, now_ms: int
    ) -> cat.CatalogProduct:
        product = cat.product_of(product_id, body, 0, now_ms)
        version = await self._write_product(app, product, body.version)
        return msgspec.structs.replace(product, version=version)

    async def put_faq(self, app: str, product_id: str, body: cat.FaqBody, now_ms: int) -> cat.CatalogProduct:
        """Replace the FAQ only: a write based on the product as read, tried again when
        another write came first (unless the body names the version it read)."""
        for _ in range(CAS_TRIES):
            current = (await self.catalog(app)).get(product_id)
            product = msgspec.structs.replace(current, faq=tuple(body.faq), updated_at=now_ms)
            expect = current.version if body.version is None else body.version
            try:
                version = await self._write_product(app, product, expect)
            except OpError as err:
                if err.code == "conflict" and body.version is None:
                    continue
                raise
            return msgspec.structs.replace(product, version=version)
        raise OpError("conflict", f"product {product_id} keeps changing: try again")

    async def delete_product(self, app: str, product_id: str) -> None:
        w = await self.broker.vmap_put(catalog_map(app), product_id, None)
        self._stale(self.catalogs, app)
        if w.status is VmapStatus.NOT_FOUND:
            raise OpError("not_found", f"no product {product_id} in this app's catalogue")

    # -- feedback --------------------------------------------------------------------

    async def mark_wrong(self, app: str, product: str | None, record: dict[str, Any]) -> float:
        """One more wrong answer about ``product``: its threshold goes up a step on every
        node (a counter kept with a compare-and-set, so concurrent marks all count)."""
        name, key = feedback_map(app), feedback_field(product)
        for _ in range(CAS_TRIES):
            have = (await self.broker.vmap_read(name)).entries.get(key)
            count = int(have[1]) + 1 if have else 1
            w = await self.broker.vmap_put(name, key, b"%d" % count, expect=have[0] if have else 0)
            if w.status is VmapStatus.OK:
                break
        else:
            raise OpError("conflict", "feedback keeps changing: try again")
        self._stale(self.feedback, app)
        await self.broker.stream_append(wrong_stream(app), msgspec.json.encode(record), maxlen=WRONG_KEEP)
        return min(self.top, self.base_threshold + self.step * count)

    async def marks(self, app: str, room: str, last: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for e in await _read_all(self.broker, wrong_stream(app), WRONG_KEEP):
            record = msgspec.json.decode(e.data)
            if record.get("room") == room:
                out.append(record)
        return out[-last:]

    # -- the room's questions --------------------------------------------------------

    async def append_question(self, room: str, entry: dict[str, Any]) -> str:
        return await self.broker.stream_append(
            board_stream(room), msgspec.json.encode(entry), maxlen=BOARD_KEEP
        )

    async def append_questions(self, room: str, entries: list[dict[str, Any]]) -> None:
        """In order, one round trip per ``MAX_COUNT`` entries."""
        for i in range(0, len(entries), MAX_COUNT):
            chunk = [msgspec.json.encode(e) for e in entries[i : i + MAX_COUNT]]
            await self.broker.stream_append_many(board_stream(room), chunk, maxlen=BOARD_KEEP)

    async def questions_after(self, room: str, after: str) -> list[StreamEntry]:
        return await _read_all(self.broker, board_stream(room), BOARD_KEEP, after)

    async def forget_old_questions(self, room: str, now_ms: int) -> None:
        await self.broker.stream_trim(board_stream(room), min_id=f"{max(0, now_ms - BOARD_MAX_AGE_MS)}-0")

    async def count(self, room: str, seq: int, answered: bool) -> None:
        await self.broker.tally(room, TALLY_KEY, str(seq), "+" if answered else "-", TALLY_TTL_MS)

    async def count_answered(self, room: str, seq: int) -> None:
        """The host answered question ``seq`` (a cluster reply): it counts as answered,
        whether its node wrote it as unanswered already or writes it later (``tally``
        keeps a member's first entry, so a later ``-`` changes nothing)."""
        await self.broker.tally_remove(room, TALLY_KEY, str(seq))
        await self.broker.tally(room, TALLY_KEY, str(seq), "+", TALLY_TTL_MS)

    async def totals(self, room: str) -> tuple[int, int]:
        """(asked, answered) over the show, on every node."""
        counts = await self.broker.tally_counts(room, TALLY_KEY)
        return counts.get("+", 0) + counts.get("-", 0), counts.get("+", 0)


async def _read_all(broker: Broker, stream: str, bound: int, after: str = "") -> list[StreamEntry]:
    out: list[StreamEntry] = []
    while len(out) < 2 * bound:  # Redis trims approximately: a little more than ``bound``
        page = await broker.stream_range(stream, after=after, limit=1000)
        out += page
        if len(page) < 1000:
            break
        after = page[-1].id
    return out
