"""A user's rights over what the analytics store holds (PIPL / GDPR, docs/analytics.md).

``GET /v1/users/{user}/export``: everything every store facet holds on the user
of the caller's app (the admin token's app). ``DELETE /v1/users/{user}``: erase
it in one transaction (profiles, points: deleted; behaviour records: kept
under an anonymous id, so reports keep anonymous counts). Erasure is
idempotent: a second DELETE, and an export after it, answer with nothing held
rather than 404; a user the store never saw is ``not_found``.

Records still on their way (in a node's batch or the bus stream when the
erasure runs) are stored anonymous when they arrive: the behaviour log's
ingest checks each batch against the erasures newer than it
(``EventLog._anonymise_erased``), in whichever process stores them.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from roomserver.api.routes import Route, _json, endpoint
from roomserver.appkeys import STORE_KEY
from roomserver.auth import USER_ID_RE, Identity
from roomserver.contract.wire import Wire
from roomserver.protocol import OpError
from roomserver.store.store import AnalyticsStore

log = logging.getLogger(__name__)


class UserExport(Wire):
    app: str
    user: str
    erased_at: int | None  # unix ms of the last erasure, if any
    data: dict[str, Any]  # store facet name -> what it holds on the user


class UserErased(Wire):
    app: str
    user: str
    erased: bool


def _store(request: web.Request) -> AnalyticsStore:
    store = request.app.get(STORE_KEY)
    if store is None:
        raise OpError("not_found", "this server keeps no analytics (--no-analytics)")
    return store


def _user(request: web.Request) -> str:
    user = request.match_info["user"]
    if not USER_ID_RE.fullmatch(user):
        raise OpError("bad_request", "user id must be 1..64 chars of [A-Za-z0-9_.:@-]")
    return user


def _holds(value: Any) -> bool:
    """Whether an export holds anything: a facet answers with its own shape (a list, or
    a dict of lists and a profile that may be None)."""
    if isinstance(value, dict):
        return any(_holds(v) for v in value.values())
    if isinstance(value, list):
        return bool(value)
    return value is not None


async def _held(store: AnalyticsStore, app: str, user: str) -> tuple[dict[str, Any], int | None]:
    """What the store holds on the user, and when they were erased; ``not_found``
    for a user it never saw."""
    data = await store.export_user(app, user)
    erased_at = await store.events.erased_at(app, user)
    if erased_at is None and not _holds(data):
        raise OpError("not_found", f"no data is held on user {user}")
    return data, erased_at


@endpoint("admin")
async def export_user(request: web.Request, identity: Identity) -> web.Response:
    store, user = _store(request), _user(request)
    data, erased_at = await _held(store, identity.app, user)
    return _json({"app": identity.app, "user": user, "erased_at": erased_at, "data": data})


@endpoint("admin")
async def erase_user(request: web.Request, identity: Identity) -> web.Response:
    store, user = _store(request), _user(request)
    await _held(store, identity.app, user)
    await store.erase_user(identity.app, user)
    return _json({"app": identity.app, "user": user, "erased": True})


PRIVACY_ROUTES: list[Route] = [
    Route(
        "GET",
        "/v1/users/{user}/export",
        export_user,
        "Everything the analytics store holds on a user of the admin token's app (PIPL/GDPR access)",
        "admin",
        bus=False,
        reply=UserExport,
    ),
    Route(
        "DELETE",
        "/v1/users/{user}",
        erase_user,
        "Erase a user: profile and points deleted, behaviour records kept anonymous (idempotent)",
        "admin",
        bus=False,
        reply=UserErased,
    ),
]
