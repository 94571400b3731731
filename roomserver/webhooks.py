"""Outgoing webhooks (PROTOCOL §5): signed JSON POSTs, retried with backoff.

Each app is a tenant: a webhook carries the app's public room id and its ``app``,
and is signed with that app's own secret (a receiver of one app can never verify,
or be fooled by, another app's deliveries). Two signatures are sent: the v1
``X-Roomserver-Signature: sha256=<hmac(body)>`` and
``X-Roomserver-Signature-V2: t=<unix s>,v1=<hmac("<t>.<body>")>``, whose signed
timestamp lets a receiver refuse replays (accept within 5 minutes of ``t``).

The node that performs a transition (exactly one per commit) enqueues its
webhook, so a clustered deployment sends each webhook once. Delivery is
at-least-once while the process lives: a bounded in-memory queue, a worker
that retries 5xx/timeouts with exponential backoff, dropping the oldest when
the queue is full (counted in ``dropped``). Receivers dedupe by ``id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

import aiohttp

from roomserver.protocol import encode, now_ms
from roomserver.tenancy import split_room_key

log = logging.getLogger(__name__)

EVENTS = frozenset(
    (
        "room.scheduled",
        "room.started",
        "room.ended",
        "order.created",
        "lottery.drawn",
        "cohost.updated",
        "pk.ended",
    )
)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_v2(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), b"%d." % t + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class Webhooks:
    def __init__(
        self,
        url: str | None,
        app_secrets: dict[str, str],
        *,
        max_queue: int = 10_000,
        attempts: int = 6,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.app_secrets = dict(app_secrets)
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(max_queue)
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._task: asyncio.Task | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self) -> None:
        if self.url:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="webhooks")

    async def stop(self, flush_timeout_s: float = 2.0) -> None:
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.queue.join(), flush_timeout_s)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def emit(self, event: str, room_key: str, data: dict[str, Any]) -> None:
        """Queue ``event`` of the room ``room_key`` (``<app>/<room>``) for its app."""
        assert event in EVENTS, event
        if not self.url:
            return
        app, room = split_room_key(room_key)
        body = encode(
            {
                "id": secrets.token_hex(8),
                "event": event,
                "app": app,
                "room": room,
                "ts": now_ms(),
                "data": data,
            }
        )
        if self.queue.full():
            self.queue.get_nowait()
            self.queue.task_done()
            self.dropped += 1
        self.queue.put_nowait((app, body))

    async def _run(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        while True:
            app, body = await self.queue.get()
            try:
                await self._deliver(self.app_secrets[app], body)
            finally:
                self.queue.task_done()

    async def _deliver(self, secret: str, body: bytes) -> None:
        assert self._session is not None and self.url is not None
        for attempt in range(self.attempts):
            headers = {
                "Content-Type": "application/json",
                "X-Roomserver-Signature": signature(secret, body),
                "X-Roomserver-Signature-V2": signature_v2(secret, body, int(time.time())),
            }
            try:
                async with self._session.post(self.url, data=body, headers=headers) as resp:
                    if resp.status < 500 and resp.status != 429:
                        if resp.status >= 400:
                            log.warning("webhook refused with %s; not retried", resp.status)
                            self.failed += 1
                        else:
                            self.sent += 1
                        return
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.info("webhook attempt %d failed: %s", attempt + 1, exc)
            await asyncio.sleep(self.backoff_s * 2**attempt)
        self.failed += 1
        log.warning("webhook dropped after %d attempts", self.attempts)
