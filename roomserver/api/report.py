"""REST of the post-live report (issue 12): the report as JSON, CSV or the HTML
page, and one user's timeline of a show.

The report is read from the analytics store (``STORE_KEY``), keyed by the
caller's app: another app's room simply has no shows there (404). The HTML
page (``web_client/report.html``) renders the JSON of this same route, so the
two cannot disagree: ``format=html`` redirects to it with the token moved
into the fragment (``#token=``, as the other pages take theirs).
"""

from __future__ import annotations

import csv
import io
from typing import Any, Final
from urllib.parse import quote, urlencode

import msgspec
from aiohttp import web

from roomserver.appkeys import STORE_KEY
from roomserver.auth import USER_ID_RE, Identity
from roomserver.core import room as rules
from roomserver.core.report_model import Report, UserRow, UserTimeline
from roomserver.gateway import bearer_token
from roomserver.protocol import OpError, encode
from roomserver.store.events import ShowInfo
from roomserver.store.reports import ReportBundle
from roomserver.store.store import AnalyticsStore

from .routes import Route, endpoint

FORMATS: Final = ("json", "html", "csv")
TABLES: Final = ("orders", "users")
LANGS: Final = ("en", "zh-CN")
REPORT_PAGE: Final = "/report.html"
ORDER_COLUMNS: Final = ("order", "user", "t_s", "product", "sale", "qty", "amount")


def _store(request: web.Request) -> AnalyticsStore:
    store = request.app.get(STORE_KEY)
    if store is None:
        raise OpError("not_found", "this server keeps no analytics (--no-analytics): no reports")
    return store


def _choice(request: web.Request, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    value = request.query.get(name, default)
    if value is not None and value not in allowed:
        raise OpError("bad_request", f"{name} must be one of {', '.join(allowed)}")
    return value


async def _show(request: web.Request, identity: Identity) -> tuple[AnalyticsStore, ShowInfo]:
    """The path's room and the ``show`` asked for (default: the room's latest),
    as a show of the caller's app that started."""
    store = _store(request)
    room = request.match_info["room"]
    rules.validate_room_id(room)
    raw = request.query.get("show")
    if raw is not None and not (raw.isdigit() and 1 <= len(raw) <= 9 and 1 <= int(raw) <= MAX_SHOW):
        raise OpError("bad_request", "show must be a show number (1, 2, …)")
    show = int(raw) if raw is not None else await store.reports.latest_show(identity.app, room)
    info = await store.events.show(identity.app, room, show) if show is not None else None
    if info is None:
        if show is None:
            raise OpError("not_found", f"room {room} has no show with a report (none started)")
        raise OpError("not_found", f"room {room} has no show {show}")
    if info.started_at is None:
        raise OpError("bad_request", f"show {info.show} of room {room} never started: it has no report")
    return store, info


@endpoint("admin")
async def get_report(request: web.Request, identity: Identity) -> web.StreamResponse:
    """The post-live report of a show (PROTOCOL §5)."""
    fmt = _choice(request, "format", FORMATS, "json")
    lang = _choice(request, "lang", LANGS, None)
    table = _choice(request, "table", TABLES, None)
    if fmt == "csv" and table is None:
        raise OpError("bad_request", "format=csv needs table=orders or table=users")
    if fmt != "csv" and table is not None:
        raise OpError("bad_request", "table is for format=csv")
    store, info = await _show(request, identity)
    if fmt == "html":
        query = {"room": info.room, "show": str(info.show)}
        if lang:
            query["lang"] = lang
        fragment = f"#token={quote(bearer_token(request), safe='')}"
        raise web.HTTPFound(f"{REPORT_PAGE}?{urlencode(query)}{fragment}")
    if fmt == "csv":
        if table == "orders":
            return _csv(f"orders-{info.room}-{info.show}.csv", ORDER_COLUMNS, await _order_rows(store, info))
        bundle = await store.reports.get(info)
        columns = tuple(UserRow.__struct_fields__)
        rows = [[_cell(getattr(u, c)) for c in columns] for u in bundle.users]
        return _csv(f"users-{info.room}-{info.show}.csv", columns, rows)
    bundle = await store.reports.get(info)
    return _json_report(bundle)


def _json_report(bundle: ReportBundle) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(bundle.report),
        content_type="application/json",
        headers={"X-Report-Cached": "1" if bundle.cached else "0"},
    )


async def _order_rows(store: AnalyticsStore, info: ShowInfo) -> list[list[Any]]:
    assert info.started_at is not None
    events = await store.events.show_events(info.app, info.room, info.show, kinds=["order"])
    rows = []
    for e in events:
        d = e.data
        t_s = round((e.ts - info.started_at) / 1000, 3)
        rows.append(
            [
                _cell(v)
                for v in (
                    d.get("order"),
                    e.user,
                    t_s,
                    d.get("product"),
                    d.get("sale"),
                    d.get("qty"),
                    d.get("amount"),
                )
            ]
        )
    return rows


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a spreadsheet must not run a cell as a formula
    return value


def _csv(filename: str, columns: tuple[str, ...], rows: list[list[Any]]) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return web.Response(
        body=out.getvalue().encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@endpoint("admin")
async def get_user_timeline(request: web.Request, identity: Identity) -> web.Response:
    """One user's records of a show in show seconds, and their sessions."""
    user = request.match_info["user"]
    if not USER_ID_RE.fullmatch(user):
        raise OpError("bad_request", "user must be a user id (1..64 chars of [A-Za-z0-9_.:@-])")
    store, info = await _show(request, identity)
    timeline = await store.reports.timeline(info, user)
    if not timeline.entries:
        raise OpError("not_found", f"user {user} has no records in show {info.show} of room {info.room}")
    return web.Response(body=encode(msgspec.to_builtins(timeline)), content_type="application/json")


# At most 9 digits, as the handler checks (a show number counts a room's shows).
MAX_SHOW = 999_999_999
_SHOW_QUERY = (
    "show",
    "show number (default: the room's latest)",
    {"type": "integer", "minimum": 1, "maximum": MAX_SHOW},
)

REPORT_ROUTES: Final[list[Route]] = [
    Route(
        "GET",
        "/v1/rooms/{room}/report",
        get_report,
        "A show's post-live report: JSON, the HTML page (a redirect to /report.html), or CSV of orders or users",
        "admin",
        query=(
            _SHOW_QUERY,
            ("format", "json (default), html or csv", {"type": "string", "enum": list(FORMATS)}),
            ("table", "with format=csv: orders or users", {"type": "string", "enum": list(TABLES)}),
            ("lang", "the page's language (format=html)", {"type": "string", "enum": list(LANGS)}),
        ),
        errors=(400, 404),
        bus=False,
        reply=Report,
        other_content=("text/csv",),
    ),
    Route(
        "GET",
        "/v1/rooms/{room}/report/users/{user}",
        get_user_timeline,
        "One user's timeline of a show (seconds since it started): sessions and every record",
        "admin",
        query=(_SHOW_QUERY,),
        errors=(400, 404),
        bus=False,
        reply=UserTimeline,
    ),
]
