"""Tokens (PROTOCOL §1): HS256 JWTs minted by the app, verified here."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Final, Literal

import jwt

Role = Literal["viewer", "host", "moderator", "admin"]
ROLES: Final[frozenset[str]] = frozenset(("viewer", "host", "moderator", "admin"))
USER_ID_RE: Final = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
DEV_APP: Final = "dev"
# Numeric claims are bounded before anything does arithmetic with them: a signed
# exp of 10^400 overflows float conversion, 10^20 schedules a timer for ever.
MAX_SAFE_INT: Final = 2**53 - 1  # what a JavaScript number holds exactly
MAX_TOKEN_LIFETIME_S: Final = 366 * 24 * 3600
NBF_LEEWAY_S: Final = 30  # an app's clock a little ahead of ours must not refuse fresh tokens


class AuthError(Exception):
    """The token is missing, malformed, forged, expired or for another app."""


@dataclass(slots=True, frozen=True)
class Identity:
    app: str
    user: str
    name: str
    role: Role
    exp: int  # unix seconds
    room: str | None = None  # None = any room
    tier: int = 0
    tags: tuple[str, ...] = field(default_factory=tuple)
    lang: str | None = None  # the preferred language of error messages (a BCP 47 tag)

    def admits(self, room: str) -> bool:
        return self.room is None or self.room == room

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_staff(self) -> bool:
        """Host, moderator or admin: may run the room (PROTOCOL: H, M, A)."""
        return self.role in ("host", "moderator", "admin")

    def public(self) -> dict[str, object]:
        """The user as other viewers see it in events."""
        return {"id": self.user, "name": self.name, "tier": self.tier}


class TokenVerifier:
    """Verifies tokens for a set of apps ``{app key: secret}``."""

    def __init__(self, apps: dict[str, str]) -> None:
        if not apps:
            raise ValueError("at least one app (key, secret) is required")
        self.apps = dict(apps)

    def verify(self, token: str, now: float | None = None) -> Identity:
        if not token or len(token) > 4096:
            raise AuthError("missing or oversized token")
        try:
            unverified = jwt.decode(token, options={"verify_signature": False})
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError(f"malformed token: {exc}") from None
        if header.get("alg") != "HS256":
            raise AuthError("token algorithm must be HS256")
        app = unverified.get("iss")
        secret = self.apps.get(app) if isinstance(app, str) else None
        if secret is None or not isinstance(app, str):
            raise AuthError("unknown app (iss)")
        now = time.time() if now is None else now
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                issuer=app,
                # Time claims are checked below, bounded first (PyJWT's own checks
                # call int() on them: OverflowError for 1e400, which JSON allows).
                options={
                    "require": ["exp", "iss", "sub"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        identity = _identity_from_claims(app, claims)
        _check_times(claims, now)
        return identity


def _time_claim(claims: dict, name: str) -> int | None:
    value = claims.get(name)
    if value is None and name != "exp":
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_SAFE_INT:
        raise AuthError(f"{name} must be an integer 0..2^53-1 (unix seconds)")
    return value


def _check_times(claims: dict, now: float) -> None:
    exp = _time_claim(claims, "exp")
    assert exp is not None
    if exp <= now:
        raise AuthError("token expired")
    if exp > now + MAX_TOKEN_LIFETIME_S:
        raise AuthError("exp is more than a year ahead")
    nbf = _time_claim(claims, "nbf")
    if nbf is not None and nbf > now + NBF_LEEWAY_S:
        raise AuthError("token not valid yet (nbf)")
    _time_claim(claims, "iat")  # informational, but an absurd one is a broken minter


def _identity_from_claims(app: str, claims: dict) -> Identity:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not USER_ID_RE.fullmatch(sub):
        raise AuthError("sub must be 1..64 chars of [A-Za-z0-9_.:@-]")
    name = claims.get("name", sub)
    if not isinstance(name, str) or len(name) > 32:
        raise AuthError("name must be a string of at most 32 chars")
    exp = _time_claim(claims, "exp")
    assert exp is not None
    role = claims.get("role", "viewer")
    if role not in ROLES:
        raise AuthError(f"role must be one of {sorted(ROLES)}")
    room = claims.get("room")
    if room is not None and not isinstance(room, str):
        raise AuthError("room must be a string")
    tier = claims.get("tier", 0)
    if not isinstance(tier, int) or isinstance(tier, bool) or not 0 <= tier <= 10:
        raise AuthError("tier must be an integer 0..10")
    tags = claims.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise AuthError("tags must be a list of strings")
    lang = claims.get("lang")
    if lang is not None and (not isinstance(lang, str) or len(lang) > 35):
        raise AuthError("lang must be a language tag (a string of at most 35 chars)")
    return Identity(
        app=app,
        user=sub,
        name=name or sub,
        role=role,
        exp=exp,
        room=None if room in (None, "*") else room,
        tier=tier,
        tags=tuple(tags),
        lang=lang,
    )


def mint_token(
    app: str,
    secret: str,
    user: str,
    role: Role = "viewer",
    *,
    room: str | None = None,
    ttl_s: int = 3600,
    name: str | None = None,
    tier: int = 0,
    tags: list[str] | None = None,
    now: float | None = None,
    lang: str | None = None,
) -> str:
    """Mint a token as an app back end would (dev mode CLI, tests, load tester)."""
    claims: dict[str, object] = {
        "iss": app,
        "sub": user,
        "name": name if name is not None else user[:32],
        "role": role,
        "exp": int((time.time() if now is None else now) + ttl_s),
    }
    if room is not None:
        claims["room"] = room
    if tier:
        claims["tier"] = tier
    if tags:
        claims["tags"] = tags
    if lang:
        claims["lang"] = lang
    return jwt.encode(claims, secret, algorithm="HS256")
