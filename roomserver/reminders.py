"""``room.reminder`` webhooks before scheduled shows (issue 12), once per offset
across every node.

Every ``period_s`` one node (whoever holds the bus lease ``reminders``; another
takes over within ``LEASE_TTL_MS`` when it dies) reads each app's schedule index
up to the largest offset ahead, loads each room's document fresh from the bus and
asks ``core.schedule.due_offset`` which reminder is due. It then CLAIMS it: an
entry for the offset in the bus tally ``reminder:<scheduled_at>`` of the room,
which only the first caller adds, so a lease changing hands mid-pass or two nodes
believing they hold it still send it once. Only the claimer emits the webhook
(queued to the app's durable webhook streams by the node's pump).

Known limit: a process killed between the claim and the webhook pump's append
(a few ms) loses that reminder (at most once, never twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Final

from roomserver.background import BackgroundTask
from roomserver.bus.base import TallyStatus
from roomserver.core import room as rules
from roomserver.core import schedule as sched
from roomserver.node import Node
from roomserver.protocol import now_ms

log = logging.getLogger(__name__)

PERIOD_S: Final = 1.0
LEASE: Final = "reminders"
LEASE_TTL_MS: Final = 5_000
PAGE: Final = 500
# A claim outlives the show it reminds of (the key names its scheduled_at, so a
# reschedule never meets an old claim); the longest offset plus a day.
CLAIM_GRACE_MS: Final = 24 * 3600 * 1000


class Reminders:
    def __init__(self, node: Node, offsets: tuple[int, ...], *, period_s: float = PERIOD_S) -> None:
        self.node = node
        self.offsets = offsets
        self.period_s = period_s
        self.holder = f"{node.config.node_id}-{secrets.token_hex(4)}"
        self._loop = BackgroundTask("reminders")
        self.sent = 0  # reminders this node emitted (tests, logs)
        # (room, scheduled_at, offset) this node saw claimed (by itself or another node):
        # a pass skips those without reading the bus, so a quiet second costs one
        # index read per app. Pruned once their show's time has passed.
        self._done: set[tuple[str, int, int]] = set()

    def start(self) -> None:
        if self.offsets:
            self._loop.start(self._run())

    async def stop(self) -> None:
        if not await self._loop.stop():
            return
        with contextlib.suppress(Exception):
            await self.node.broker.stream_release(LEASE, self.holder)

    async def _run(self) -> None:
        while True:
            try:
                if await self.node.broker.stream_lease(LEASE, self.holder, LEASE_TTL_MS):
                    await self.check(now_ms())
            except Exception as exc:  # the bus may be down; the loop must survive
                log.warning("reminders failed: %s", exc)
            await asyncio.sleep(self.period_s)

    async def check(self, now: int) -> int:
        """One pass over every app's upcoming shows; returns how many reminders this node sent."""
        sent = 0
        horizon = now + max(self.offsets)
        self._done = {d for d in self._done if d[1] > now}
        for app in self.node.config.app_secrets():
            after_ms, after_room = now, ""
            while True:
                entries = await self.node.broker.scheduled(
                    app, after_ms=after_ms, after_room=after_room, limit=PAGE
                )
                for at, room in entries:
                    if at > horizon:
                        break
                    # The index's time says which offset would be due; a fresh document decides.
                    due = sched.due_offset(sched.upcoming(at), self.offsets, now)
                    if due is not None and (room, at, due) not in self._done:
                        sent += await self._remind(room, now)
                if len(entries) < PAGE or entries[-1][0] > horizon:
                    break
                after_ms, after_room = entries[-1]
        return sent

    async def _remind(self, room: str, now: int) -> int:
        rec = await self.node.broker.load(room)  # fresh: this node may not follow the room
        if rec.doc is None:
            return 0
        doc = rules.decode_doc(rec.doc)
        offset = sched.due_offset(doc, self.offsets, now)
        if offset is None or doc.scheduled_at is None:
            return 0
        ttl = doc.scheduled_at - now + max(self.offsets) + CLAIM_GRACE_MS
        claim = await self.node.broker.tally(
            room, sched.reminder_key(doc.scheduled_at), str(offset), "sent", ttl
        )
        self._done.add((room, doc.scheduled_at, offset))
        if claim.status is not TallyStatus.ADDED:
            return 0
        followers = await self.node.hooks.followers(room)
        payload = sched.reminder_payload(rules.public_view(doc), offset, now, followers)
        self.node.webhooks.emit("room.reminder", room, payload)
        self.sent += 1
        return 1
