"""``room.members`` webhooks: joins and leaves, batched per room.

A webhook per join would be a POST per viewer: a room that fills with 100,000
viewers in a minute would send 100,000 of them. Instead each node collects, per
room, the user ids that joined and left, and every ``interval_s`` (5 s by
default, ``--members-batch-s``) emits one ``room.members``::

    {"joined": ["u1", …], "left": ["u7", …], "joined_count": 1200,
     "left_count": 40, "truncated": true}

Each list is capped at ``MAX_IDS`` ids per batch (the counts are exact;
``truncated`` says a list was cut). A user who joins and leaves within one
batch appears in both lists. Batches are per node: in a cluster each node sends
its own batch for the rooms it has sockets in (every join and leave is in
exactly one of them). A socket that closes without ``room.leave`` counts as a
leave. Nothing is collected unless an endpoint of the app wants
``room.members``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from roomserver.background import BackgroundTask
from roomserver.tenancy import app_of
from roomserver.webhooks import Webhooks

log = logging.getLogger(__name__)

MAX_IDS = 1000
EVENT = "room.members"


@dataclass(slots=True)
class _Batch:
    joined: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    joined_count: int = 0
    left_count: int = 0


class MemberBatches:
    def __init__(self, webhooks: Webhooks, interval_s: float) -> None:
        self.webhooks = webhooks
        self.interval_s = interval_s
        self._apps = {e.app for e in webhooks.endpoints if e.wants(EVENT)}
        self._batches: dict[str, _Batch] = {}
        self._loop = BackgroundTask("members-batch")

    def start(self) -> None:
        if self._apps:
            self._loop.start(self._run())

    async def stop(self) -> None:
        if await self._loop.stop():
            self.flush()

    def joined(self, room: str, user: str) -> None:
        if self._apps and app_of(room) in self._apps:
            b = self._batches.setdefault(room, _Batch())
            b.joined_count += 1
            if len(b.joined) < MAX_IDS:
                b.joined.append(user)

    def left(self, room: str, user: str) -> None:
        if self._apps and app_of(room) in self._apps:
            b = self._batches.setdefault(room, _Batch())
            b.left_count += 1
            if len(b.left) < MAX_IDS:
                b.left.append(user)

    def flush(self) -> None:
        batches, self._batches = self._batches, {}
        for room, b in batches.items():
            self.webhooks.emit(
                EVENT,
                room,
                {
                    "joined": b.joined,
                    "left": b.left,
                    "joined_count": b.joined_count,
                    "left_count": b.left_count,
                    "truncated": b.joined_count > len(b.joined) or b.left_count > len(b.left),
                },
            )

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                self.flush()
            except Exception:
                log.exception("room.members batch failed")
