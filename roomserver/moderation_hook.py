"""The app's synchronous moderation callback, asked before a barrage is published
(like Tencent IM's before-send callback).

The server POSTs ``{app, room, user: {id, name, …}, text, ts}`` signed like a
webhook (``X-Roomserver-Signature-V2``) to the app's URL and waits at most
``timeout_ms`` (300 by default) for ``{"action": "allow"}``,
``{"action": "block"}`` (the sender gets ``blocked_content``) or
``{"action": "replace", "text": "…"}`` (1..200 characters, published instead).
A timeout, a refused connection, a non-2xx status or an unreadable answer is a
*failure*: published as is with ``fail=open`` (the default), refused with
``blocked_content`` with ``fail=closed``.

Cost: an app without a callback pays one dict lookup per barrage. With one,
at most ``concurrency`` callbacks per node are in flight; a barrage beyond that
is not queued behind them (the hot path must not serialise on the app's
server) but treated as a failure at once, and counted (``busy``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import msgspec

from roomserver.config import Config
from roomserver.core.webhooks import SIGNATURE_V2_HEADER, signature_v2
from roomserver.metrics import Metrics
from roomserver.protocol import OpError, encode, now_ms

log = logging.getLogger(__name__)

TEXT_MAX = 200


class Verdict(msgspec.Struct, forbid_unknown_fields=False):
    action: str
    text: str | None = None


class ModerationCallback:
    def __init__(
        self,
        urls: dict[str, str],
        secrets: dict[str, str],
        *,
        timeout_ms: int = 300,
        fail_closed: bool = False,
        concurrency: int = 64,
        metrics: Metrics | None = None,
    ) -> None:
        self.urls = urls
        self._secrets = secrets  # not in any repr
        self.timeout_ms = timeout_ms
        self.fail_closed = fail_closed
        self.concurrency = concurrency
        self.metrics = metrics
        self._session: aiohttp.ClientSession | None = None
        self._in_flight = 0

    def wants(self, app: str) -> bool:
        return app in self.urls

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def screen(self, app: str, room: str, user: dict[str, Any], text: str) -> str:
        """The text to publish (``text`` or the app's replacement); raises
        ``OpError("blocked_content")`` if the app blocks it (or, closed, on failure)."""
        if self._in_flight >= self.concurrency:
            return self._failed(app, text, "busy", f"{self._in_flight} callbacks in flight")
        self._in_flight += 1
        try:
            verdict = await self._ask(app, room, user, text)
        except (
            aiohttp.ClientError,
            TimeoutError,
            msgspec.ValidationError,
            msgspec.DecodeError,
            ValueError,
        ) as exc:
            return self._failed(app, text, "error", f"{type(exc).__name__}: {exc}")
        finally:
            self._in_flight -= 1
        if verdict.action == "allow":
            self._count(app, "allow")
            return text
        if verdict.action == "block":
            self._count(app, "block")
            raise OpError("blocked_content", "the app's moderation refused the message")
        if verdict.action == "replace" and verdict.text is not None and 1 <= len(verdict.text) <= TEXT_MAX:
            self._count(app, "replace")
            return verdict.text
        return self._failed(app, text, "error", f"bad answer {verdict!r}")

    async def _ask(self, app: str, room: str, user: dict[str, Any], text: str) -> Verdict:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        body = encode({"app": app, "room": room, "user": user, "text": text, "ts": now_ms()})
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_V2_HEADER: signature_v2(self._secrets[app], body, int(time.time())),
        }
        async with asyncio.timeout(self.timeout_ms / 1000):
            async with self._session.post(self.urls[app], data=body, headers=headers) as resp:
                if not 200 <= resp.status < 300:
                    raise ValueError(f"HTTP {resp.status}")
                return msgspec.json.decode(await resp.read(), type=Verdict)

    def _failed(self, app: str, text: str, result: str, why: str) -> str:
        self._count(app, result)
        log.info(
            "moderation callback of %s failed (%s); failing %s",
            app,
            why,
            "closed" if self.fail_closed else "open",
        )
        if self.fail_closed:
            raise OpError(
                "blocked_content", "the app's moderation did not answer; the message was not published"
            )
        return text

    def _count(self, app: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.moderation_calls.labels(app=app, result=result).inc()


def from_config(config: Config, metrics: Metrics | None) -> ModerationCallback | None:
    if not config.moderation_urls:
        return None
    return ModerationCallback(
        dict(config.moderation_urls),
        config.app_secrets(),
        timeout_ms=config.moderation_timeout_ms,
        fail_closed=config.moderation_fail_closed,
        concurrency=config.moderation_concurrency,
        metrics=metrics,
    )
