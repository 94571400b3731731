"""After a show ends: its report computed and kept, then announced (issue 12).

``ReportReady.show_ended`` is a show-end step (``ShowHooks``; handed to the
node by ``server.create_app``, the node imports nothing of it). It returns at
once and works in the background: it waits (bounded) until the behaviour
log's writer has stored the show's ``show.end`` record — the records of a
show travel in order through the node's stream, so the end's arrival means
the show is in — computes and keeps the report, and announces it with
``report.ready`` to the room's staff (host and moderators) and a
``report.ready`` webhook, both carrying the report's URL.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from roomserver.behaviour_writer import wait_show_stored
from roomserver.bus.base import AUDIENCE_STAFF
from roomserver.core.report import report_path
from roomserver.core.room import Emit, RoomDoc
from roomserver.node import Node
from roomserver.store.events import ShowInfo
from roomserver.store.store import AnalyticsStore
from roomserver.tenancy import split_room_key

log = logging.getLogger(__name__)

# The report is due 5 s after room.ended: waiting for the records takes at
# most this, and computing a 1 M-record show about 2 s more (docs/benchmarks.md).
WAIT_S: Final = 3.0


class ReportReady:
    def __init__(self, store: Callable[[], AnalyticsStore | None], *, wait_s: float = WAIT_S) -> None:
        self._store = store  # opened at startup: looked up when a show ends
        self.wait_s = wait_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def show_ended(self, node: Node, room: str) -> None:
        doc = await node.room(room)
        if doc is not None and doc.show >= 1 and self._store() is not None:
            task = asyncio.get_running_loop().create_task(self._build_logged(node, room, doc.show))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Before the store closes: reports still being built are given up (an
        ended show's report is computed on its first request instead)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _build_logged(self, node: Node, room: str, show: int) -> None:
        try:
            await self.build(node, room, show)
        except Exception:  # the report is then computed on its first request
            log.exception("the report of show %s of %s failed", show, room)

    async def wait_for_end(self, node: Node, app: str, room: str, show: int) -> ShowInfo | None:
        """The show once its records are stored — its ``show.end`` and everything any
        node appended to the room's stream before it (``wait_show_stored``) — or as it
        stands after ``wait_s``."""
        store = self._store()
        if store is None:
            return None
        try:
            return await wait_show_stored(store, node.broker, app, room, show, timeout=self.wait_s)
        except TimeoutError:
            return await store.events.show(app, room, show)

    async def build(self, node: Node, room: str, show: int) -> None:
        store = self._store()
        app, public = split_room_key(room)
        info = await self.wait_for_end(node, app, public, show)
        if store is None or info is None or info.started_at is None:
            log.info("no report for show %s of %s: its records are not in the store", show, room)
            return
        if info.ended_at is None:
            log.warning(
                "show %s of %s: its end is not stored after %.1f s; reporting what is",
                show,
                room,
                self.wait_s,
            )
        bundle = await store.reports.build(info)
        report = bundle.report
        data: dict[str, Any] = {
            "show": show,
            "url": report_path(public, show),
            "unique_viewers": report.audience.unique_viewers,
            "peak_concurrent": report.audience.peak_concurrent,
            "orders": report.sales.orders,
            "gmv": report.sales.gmv,
        }
        await node.publish(room, [Emit("report.ready", data, durable=False, audience=AUDIENCE_STAFF)])
        node.webhooks.emit("report.ready", room, {"room": public, **data})


def ended_links(room: str, doc: RoomDoc) -> dict[str, Any]:
    """What the ``room.ended`` webhook adds: where the show's report will be."""
    return {"report_url": report_path(split_room_key(room)[1], doc.show)}
