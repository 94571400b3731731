"""Share links (转发有礼, issue 12): a signed token naming who shared which room.

A viewer asks for a share link (op ``share.link``); whoever opens it joins with
``room.join {ref: <token>}`` and is attributed to the sharer once per show. The
token is ``<payload>.<mac>``, both base64url without padding:

- payload: compact JSON ``{"a": app, "r": public room id, "u": sharer, "e": expiry unix ms}``;
- mac: HMAC-SHA256 over the payload's base64url text with a key derived from
  the app's secret (``HMAC(secret, "roomserver share-ref v1")``), so a share
  token can never be replayed as, or mistaken for, any other signed thing (JWTs,
  webhook signatures) made with the same secret.

A forged or damaged token, one for another app or room, or an expired one is a
``RefError`` whose ``reason`` says which (the join answers ``bad_request`` with
it). Pure: no I/O; the caller passes the secret and the clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Final, Literal

import msgspec

# A link is good for this long by default (a share travels through group chats for days).
DEFAULT_TTL_MS: Final = 7 * 24 * 3600 * 1000
# Tokens longer than this are refused before any decoding (the frame limit is larger).
MAX_REF_LEN: Final = 512
_KEY_LABEL: Final = b"roomserver share-ref v1"

RefReason = Literal["malformed", "forged", "other_app", "other_room", "expired"]
REASON_TEXT: Final[dict[str, str]] = {
    "malformed": "the share link (ref) is damaged",
    "forged": "the share link (ref) is not signed by this server",
    "other_app": "the share link (ref) belongs to another app",
    "other_room": "the share link (ref) is for another room",
    "expired": "the share link (ref) has expired",
}


class RefError(ValueError):
    def __init__(self, reason: RefReason) -> None:
        super().__init__(REASON_TEXT[reason])
        self.reason: RefReason = reason


class _Payload(msgspec.Struct, forbid_unknown_fields=True):
    a: str
    r: str
    u: str
    e: int


def share_key(secret: str) -> bytes:
    """The app's share-link key, derived from its secret (never the secret itself)."""
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload_text: str) -> str:
    return _b64(hmac.new(key, payload_text.encode(), hashlib.sha256).digest())


def mint_ref(secret: str, *, app: str, room: str, sharer: str, expires_at: int) -> str:
    """A share token for ``sharer`` in public room ``room`` of ``app``, valid until ``expires_at`` (ms)."""
    payload = _b64(msgspec.json.encode(_Payload(a=app, r=room, u=sharer, e=expires_at)))
    return f"{payload}.{_mac(share_key(secret), payload)}"


def verify_ref(secret: str, token: str, *, app: str, room: str, now_ms: int) -> str:
    """The sharer named by ``token`` if it is this server's, for this app and room, and
    not expired; else ``RefError``. The signature is checked before anything it signs is read."""
    payload_text, dot, mac = token.partition(".")
    if not dot or not payload_text or not mac or len(token) > MAX_REF_LEN:
        raise RefError("malformed")
    if not hmac.compare_digest(mac, _mac(share_key(secret), payload_text)):
        raise RefError("forged")
    try:
        payload = msgspec.json.decode(_unb64(payload_text), type=_Payload)
    except (ValueError, msgspec.DecodeError):  # signed by us, yet unreadable: another format
        raise RefError("malformed") from None
    if payload.a != app:
        raise RefError("other_app")
    if payload.r != room:
        raise RefError("other_room")
    if payload.e <= now_ms:
        raise RefError("expired")
    return payload.u


def attribution_key(show: int) -> str:
    """The tally (one entry per viewer: the sharer) attributing ``show``'s joins."""
    return f"share:{show}"
