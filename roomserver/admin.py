"""Server SDK for an app's back end: mint tokens, call the server API, verify webhooks.

    from roomserver.admin import AdminClient, mint, verify_webhook

    token = mint("shop", SECRET, user.id, "viewer", room="r1")      # hand it to the browser
    async with AdminClient("https://live.example.com", "shop", SECRET) as api:
        await api.create_room(id="r1", title="Friday sale")
        await api.op("r1", "room.announce", text="Doors open at 8")   # as the admin
        await api.op("r1", "mod.mute", as_user="mod-7", user="spammer", duration_s=60)

    # the webhook receiver: the raw body and the headers as received
    event = verify_webhook(SECRET, body, request.headers)           # raises WebhookRejected

The same three helpers exist for Node.js in ``sdk-node/`` (docs/sdk-js.md, "Server SDKs").
This module talks HTTP only (no socket); ``roomserver.client`` is the WebSocket SDK.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from roomserver.auth import mint_token
from roomserver.webhooks import signature, signature_v2

__all__ = [
    "AdminClient",
    "ApiError",
    "WebhookRejected",
    "check_signature_v1",
    "check_signature_v2",
    "mint",
    "verify_webhook",
]

SIGNATURE_HEADER: Final = "X-Roomserver-Signature"
SIGNATURE_V2_HEADER: Final = "X-Roomserver-Signature-V2"
WEBHOOK_TOLERANCE_S: Final = 300  # PROTOCOL §5: accept within 5 minutes of the signed t
# The admin token is minted anew this long before it expires, so a request never carries
# a token that expires on the way.
TOKEN_MARGIN_S: Final = 30


# An HS256 JWT the server accepts (PROTOCOL §1), by the server's own minting rules
# (including ``lang``, the language of the socket's error messages).
mint = mint_token


# -- the server API -------------------------------------------------------------------


class ApiError(Exception):
    """An error answer of the server API: ``code`` (PROTOCOL §2), ``message``, HTTP ``status``."""

    def __init__(self, status: int, code: str, message: str = "", retry_after_ms: int | None = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms


class AdminClient:
    """The server's HTTP API with an admin token it mints itself (``user``: the acting
    admin's id in the server's logs and events; ops take ``as_user`` to act as someone)."""

    def __init__(
        self,
        url: str,
        app: str,
        secret: str,
        *,
        user: str = "backend",
        token_ttl_s: int = 300,
        timeout_s: float = 10.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.app = app
        self.user = user
        self.token_ttl_s = max(token_ttl_s, 2 * TOKEN_MARGIN_S)
        self._secret = secret
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session = session
        self._own_session = session is None
        self._token = ""
        self._token_exp = 0.0

    async def __aenter__(self) -> AdminClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def token(self) -> str:
        """The current admin token, minted anew shortly before it expires."""
        now = time.time()
        if now >= self._token_exp - TOKEN_MARGIN_S:
            self._token = mint_token(
                self.app, self._secret, self.user, "admin", ttl_s=self.token_ttl_s, now=now
            )
            self._token_exp = now + self.token_ttl_s
        return self._token

    async def request(
        self, method: str, path: str, *, json_body: Any = None, query: Mapping[str, str | int] | None = None
    ) -> dict[str, Any]:
        """One authenticated JSON request; an error answer raises ``ApiError``."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        params = {k: str(v) for k, v in (query or {}).items()}
        headers = {"Authorization": f"Bearer {self.token()}"}
        async with self._session.request(
            method, self.url + path, json=json_body, params=params, headers=headers
        ) as resp:
            text = await resp.text()
            body = json.loads(text) if text else {}
            if resp.status >= 400:
                err = body.get("error", {}) if isinstance(body, dict) else {}
                raise ApiError(
                    resp.status,
                    str(err.get("code", "internal")),
                    str(err.get("message", text[:200])),
                    err.get("retry_after_ms"),
                )
            return body if isinstance(body, dict) else {"data": body}

    async def op(self, room: str, op: str, *, as_user: str | None = None, **params: Any) -> dict[str, Any]:
        """``POST /v1/rooms/{room}/ops/{op}``: run a host/moderator op through its own
        handler (same rules, events and reply data as on a socket). ``as_user``: act as
        that user instead of the admin. Pass ``cid`` to make a retry safe."""
        body = dict(params)
        if as_user is not None:
            body["as"] = as_user
        return await self.request("POST", f"/v1/rooms/{_seg(room)}/ops/{_seg(op)}", json_body=body)

    async def create_room(
        self,
        *,
        id: str | None = None,  # the API's field name
        title: str = "",
        mode: str = "live",
        barrage_cap: int | None = None,
        scheduled_at: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"title": title, "mode": mode}
        for key, value in (("id", id), ("barrage_cap", barrage_cap), ("scheduled_at", scheduled_at)):
            if value is not None:
                body[key] = value
        return await self.request("POST", "/v1/rooms", json_body=body)

    async def list_rooms(self, *, after: str | None = None, limit: int = 100) -> dict[str, Any]:
        """One page ``{rooms, next}``; pass ``next`` as ``after`` for the following page."""
        query: dict[str, str | int] = {"limit": limit}
        if after:
            query["after"] = after
        return await self.request("GET", "/v1/rooms", query=query)

    async def get_room(self, room: str) -> dict[str, Any]:
        return await self.request("GET", f"/v1/rooms/{_seg(room)}")

    async def end_room(self, room: str) -> dict[str, Any]:
        """End the room's show (if live); the room and its history stay readable."""
        return await self.request("DELETE", f"/v1/rooms/{_seg(room)}")

    async def history(self, room: str, *, since: int = 0, limit: int = 100) -> dict[str, Any]:
        """Durable events after ``since``: ``{epoch, seq, events}`` (``history_gone``: 410)."""
        return await self.request(
            "GET", f"/v1/rooms/{_seg(room)}/history", query={"since": since, "limit": limit}
        )

    async def schedule(self, *, after: str | None = None, limit: int = 50) -> dict[str, Any]:
        """Upcoming shows ``{shows, next}``, soonest first."""
        query: dict[str, str | int] = {"limit": limit}
        if after:
            query["after"] = after
        return await self.request("GET", "/v1/schedule", query=query)

    async def reschedule(self, room: str, scheduled_at: int | None) -> dict[str, Any]:
        """Move the room's next show (unix ms), or cancel it with None: ``{room}``;
        its ``room.reminder`` webhooks are armed afresh."""
        return await self.request(
            "PATCH", f"/v1/rooms/{_seg(room)}", json_body={"scheduled_at": scheduled_at}
        )

    async def followers(self, room: str, *, after: str | None = None, limit: int = 100) -> dict[str, Any]:
        """One page ``{followers, count, next}`` in id order; pass ``next`` as ``after``."""
        query: dict[str, str | int] = {"limit": limit}
        if after:
            query["after"] = after
        return await self.request("GET", f"/v1/rooms/{_seg(room)}/followers", query=query)

    async def publish_event(
        self, room: str, ev: str, data: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A custom durable event ``custom.<ev>`` to the room: ``{seq}``."""
        return await self.request(
            "POST", f"/v1/rooms/{_seg(room)}/events", json_body={"ev": ev, "data": data or {}}
        )

    async def lottery_record(self, room: str, lottery: str) -> dict[str, Any]:
        return await self.request("GET", f"/v1/rooms/{_seg(room)}/lotteries/{_seg(lottery)}")

    async def sale_orders(self, room: str, sale: str) -> dict[str, Any]:
        return await self.request("GET", f"/v1/rooms/{_seg(room)}/sales/{_seg(sale)}/orders")


def _seg(value: str) -> str:
    """One path segment, percent-encoded (a room id never becomes a path of its own)."""
    return quote(value, safe="")


# -- webhooks -------------------------------------------------------------------------


class WebhookRejected(Exception):
    """The delivery is not from the server (bad or missing signature) or is too old."""


def verify_webhook(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    tolerance_s: int = WEBHOOK_TOLERANCE_S,
    allow_v1: bool = False,
    now: float | None = None,
) -> dict[str, Any]:
    """Check a delivery and return its JSON payload (``{id, event, app, room, ts, data}``).

    ``body``: the raw bytes as received (parsing and re-encoding would change them).
    The V2 signature (timestamped, so a replay older than ``tolerance_s`` is refused) is
    required; ``allow_v1`` accepts a delivery carrying only the V1 signature, which any
    captured delivery replays for ever. Receivers still dedupe by the payload's ``id``.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    v2 = lowered.get(SIGNATURE_V2_HEADER.lower())
    if v2 is not None:
        check_signature_v2(secret, body, v2, tolerance_s=tolerance_s, now=now)
    elif allow_v1 and SIGNATURE_HEADER.lower() in lowered:
        check_signature_v1(secret, body, lowered[SIGNATURE_HEADER.lower()])
    else:
        raise WebhookRejected(f"no {SIGNATURE_V2_HEADER} header")
    try:
        payload = json.loads(body)
    except ValueError:
        raise WebhookRejected("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected("the body is not a JSON object")
    return payload


def check_signature_v1(secret: str, body: bytes, header: str) -> None:
    """``X-Roomserver-Signature: sha256=<hex hmac(body)>``."""
    if not hmac.compare_digest(signature(secret, body).encode(), header.strip().encode()):
        raise WebhookRejected("bad signature")


def check_signature_v2(
    secret: str, body: bytes, header: str, *, tolerance_s: int = WEBHOOK_TOLERANCE_S, now: float | None = None
) -> None:
    """``X-Roomserver-Signature-V2: t=<unix s>,v1=<hex hmac("<t>.<body>")>``: the one
    function to change with the scheme. Several ``v1=`` entries (a rotated secret) match
    if any does; ``t`` must be within ``tolerance_s`` of now, either way."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    stamps, macs = fields.get("t", []), fields.get("v1", [])
    if len(stamps) != 1 or not stamps[0].isdigit() or len(stamps[0]) > 12 or not macs:
        raise WebhookRejected(f"malformed {SIGNATURE_V2_HEADER} header")
    t = int(stamps[0])
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        raise WebhookRejected("the signature's timestamp is outside the tolerance (a replay?)")
    expected = signature_v2(secret, body, t)
    if not any(hmac.compare_digest(expected.encode(), f"t={t},v1={mac}".encode()) for mac in macs):
        raise WebhookRejected("bad signature")
