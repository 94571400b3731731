"""The HTTP edge shared by every route: JSON errors, OPTIONS/CORS, `Allow` headers.

- ``errors``: whatever a route raises or the router refuses becomes a JSON error
  body with a protocol code (``{"error": {"code", "message"}}``), never aiohttp's
  plain-text pages or a traceback: 404 ``not_found``, 405 ``bad_request`` with an
  ``Allow`` header (RFC 9110 §15.5.6), 413 ``too_large``, anything unexpected 500
  ``internal`` (logged, escaped).
- ``cors``: answers ``OPTIONS`` on every known resource (RFC 9110 §9.3.7) with the
  methods that resource serves, so CORS preflights list exactly those; a route's
  own ``OPTIONS`` handler (WHIP/WHEP: ``Accept-Post``) is called and decorated.
- ``error_language``: a JSON error answer in the language the client asked for
  (``Accept-Language``, q-values weighed; ``?lang=`` overrides it): Chinese puts the code's
  Chinese sentence in ``message`` and the English text in ``detail``. English, the default,
  leaves every answer as it was.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from roomserver.core.i18n import DEFAULT_LANG, Lang, lang_of, localize_error, pick_lang
from roomserver.logsafe import clean
from roomserver.protocol import decode, encode

log = logging.getLogger(__name__)

# Apps embed the SDK on their own origins. Authentication is a bearer token, never a
# cookie, so allowing any origin (the default) exposes nothing a page could not already
# send; --cors-origins narrows it for operators whose policy wants a list.
CORS_HEADERS = {
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, Link, Accept-Post, Accept-Patch, ETag, Retry-After,"
    " WWW-Authenticate",
    "Access-Control-Max-Age": "600",
}

CODE_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_request",
    409: "conflict",
    410: "history_gone",
    411: "bad_request",
    413: "too_large",
    414: "too_large",
    415: "bad_request",
    429: "rate_limited",
    431: "too_large",
    503: "unavailable",
}


def allowed_methods(request: web.Request) -> list[str] | None:
    """The methods the requested resource serves, OPTIONS included (None: no such resource)."""
    info = request.match_info
    exc = info.http_exception
    if isinstance(exc, web.HTTPMethodNotAllowed):
        methods = set(exc.allowed_methods)
    elif exc is not None or info.route.resource is None:
        return None
    else:
        methods = {route.method for route in info.route.resource}
    return sorted(methods - {"*"} | {"OPTIONS"})


def json_error_response(
    status: int,
    message: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    retry_after_ms: int | None = None,
) -> web.Response:
    code = code or CODE_OF_STATUS.get(status, "internal" if status >= 500 else "bad_request")
    error: dict[str, object] = {"code": code, "message": message}
    if retry_after_ms is not None:
        error["retry_after_ms"] = retry_after_ms
    return web.Response(
        status=status,
        body=encode({"error": error}),
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def errors(request: web.Request, handler):  # type: ignore[no-untyped-def]
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed as exc:
        allow = ", ".join(allowed_methods(request) or exc.allowed_methods)
        return json_error_response(
            405, f"{request.method} is not allowed here; allowed: {allow}", headers={"Allow": allow}
        )
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise  # redirects, and errors that already are protocol errors
        headers = {
            k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")
        }
        # aiohttp's text is a detail (what an upgrade lacked) or "<status>: <reason>"
        text = " ".join((exc.text or "").split())
        detail = text.removeprefix(f"{exc.status}: ") or exc.reason
        message = "no such resource" if exc.status == 404 else detail
        return json_error_response(exc.status, message, headers=headers)
    except Exception:
        log.exception("%s %s failed", request.method, clean(request.path))
        return json_error_response(500, "internal error", "internal")


def cors_headers(origins: Sequence[str], request_origin: str | None) -> dict[str, str]:
    """The CORS headers of an answer to a request from ``request_origin``: with ``*`` in
    ``origins`` any origin; else only a listed one, named back (and ``Vary: Origin``, so a
    cache does not hand one origin's answer to another). An origin not listed gets no
    ``Access-Control-Allow-Origin``: its browser withholds the answer from the page."""
    if "*" in origins:
        return {"Access-Control-Allow-Origin": "*", **CORS_HEADERS}
    headers = {"Vary": "Origin"}
    if request_origin is not None and request_origin.lower() in origins:
        headers |= {"Access-Control-Allow-Origin": request_origin, **CORS_HEADERS}
    return headers


def cors(origins: Sequence[str] = ("*",)) -> Middleware:
    """The CORS middleware for ``origins`` (``--cors-origins``)."""
    allowed = tuple(origins)

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        methods = allowed_methods(request) if request.method == "OPTIONS" else None
        headers = cors_headers(allowed, request.headers.get("Origin"))
        if methods is not None and request.match_info.route.method != "OPTIONS":
            response: web.StreamResponse = web.Response(status=204, headers={"Allow": ", ".join(methods)})
        else:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # redirects (errors are responses by now)
                exc.headers.update(headers)
                raise
        if response.prepared:  # a WebSocket upgrade is already sent
            return response
        response.headers.update(headers)
        if methods is not None and "Access-Control-Allow-Origin" in headers:
            response.headers["Access-Control-Allow-Methods"] = ", ".join(methods)
        return response

    return middleware


def request_lang(request: web.Request) -> Lang:
    """The language a request's answers are written in: ``?lang=``, else Accept-Language."""
    return lang_of(request.query.get("lang")) or pick_lang(request.headers.get("Accept-Language"))


def _localized_body(body: bytes, lang: Lang) -> bytes | None:
    """A ``{"error": {...}}`` body in ``lang``, or None when the body is not one."""
    try:
        doc = decode(body)
    except Exception:  # not JSON after all: leave it as it is
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), dict):
        return None
    doc["error"] = localize_error(doc["error"], lang)
    return encode(doc)


@web.middleware
async def error_language(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Errors are written in the language asked for; successes pass untouched (and the
    check costs them one header lookup)."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # a protocol error raised as an exception (401s)
        if exc.status >= 400 and exc.content_type == "application/json" and exc.text:
            lang = request_lang(request)
            localized = _localized_body(exc.text.encode(), lang) if lang != DEFAULT_LANG else None
            if localized is not None:
                exc.text = localized.decode()
            _mark_language(exc.headers, lang)
        raise
    if (
        response.status < 400
        or response.prepared
        or not isinstance(response, web.Response)
        or response.content_type != "application/json"
    ):
        return response
    lang = request_lang(request)
    if lang != DEFAULT_LANG and isinstance(response.body, bytes):
        localized = _localized_body(response.body, lang)
        if localized is not None:
            response.body = localized
    _mark_language(response.headers, lang)
    return response


def _mark_language(headers: MutableMapping[str, str], lang: Lang) -> None:
    """Content-Language, and Vary so that a cache keeps one answer per language."""
    headers["Content-Language"] = lang
    vary = headers.get("Vary")
    headers["Vary"] = f"{vary}, Accept-Language" if vary else "Accept-Language"
