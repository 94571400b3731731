"""OpenAPI 3.1 document generated from the route table."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from roomserver.api.routes import Route

ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "retry_after_ms": {"type": "integer"},
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}


# Path ids as the server accepts them: rooms and users by their pattern (the same
# one), other ids are looked up (unknown = 404), so any 1..128 characters.
ROOM_ID_SCHEMA = {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,64}$"}
ID_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 128}
# Path parameters that are room-style ids (1..64 of [A-Za-z0-9_.:@-]), as the token's `sub` is.
ID_PATTERN_PARAMS = frozenset({"room", "user", "reward"})

STATUS_TEXT = {
    400: "Malformed request (bad_request)",
    401: "Missing or invalid token (unauthorized); carries WWW-Authenticate: Bearer",
    403: "The token does not allow this (forbidden)",
    404: "No such resource (not_found)",
    409: "Conflicting state: conflict, or an op's not_joined, sold_out, limit_reached, not_open",
    410: "Events no longer in history (history_gone)",
    412: "If-Match does not name the session's entity-tag (conflict)",
    413: "Body too large (too_large)",
    415: "Body of the wrong media type",
    416: "Range not satisfiable (a file's Range request past its end)",
    422: "The text contains a blocked word (blocked_content); WHIP/WHEP PATCH: an ICE restart,"
    " which is not supported (bad_request)",
    429: "Rate limited (rate_limited); Retry-After and retry_after_ms say when to retry",
    503: "The bus is unreachable or the node is draining (unavailable)",
}


def error_statuses(r: Route) -> list[int]:
    """Every error status the route can answer (the server's error paths, by kind of route)."""
    statuses = {429, *r.errors}
    if r.auth != "none":
        statuses.add(401)
    if r.auth in ("admin", "room", "node"):
        statuses.add(403)
    if "{" in r.path:
        statuses.update((400, 404) if "{room}" in r.path or "{user}" in r.path else (404,))
    text_body = r.body_content not in ("application/json", "")
    if r.body is not None or text_body or r.query:
        statuses.add(400)
    if r.body is not None or text_body:
        statuses.add(413)
    if text_body:
        statuses.add(415)
    if r.bus:
        statuses.add(503)
    return sorted(statuses)


def _body_required(body: type[msgspec.Struct]) -> bool:
    """An empty body is ``{}``: required only if some field has no default."""
    return bool(msgspec.structs.fields(body)) and any(f.required for f in msgspec.structs.fields(body))


def _param(q: tuple, where: str) -> dict[str, Any]:
    name, description = q[0], q[1]
    schema = q[2] if len(q) > 2 else {"type": "string"}
    return {
        "name": name,
        "in": where,
        "required": where == "header",
        "description": description,
        "schema": schema,
    }


# The server API route: documented as one path per op (``/v1/rooms/{room}/ops/room.start``),
# each with that op's params as the body and its reply as the answer.
OPS_PATH = "/v1/rooms/{room}/ops/{op}"
AS_SCHEMA = {
    "type": "object",
    "properties": {
        "as": {
            "type": ["string", "null"],
            "pattern": "^[A-Za-z0-9_.:@-]{1,64}$",
            "description": "act as this user (absent or null: the admin token's user)",
        }
    },
}


def _schemas(types: list[type], components: dict[str, Any]) -> dict[type, dict[str, Any]]:
    """JSON Schemas of ``types`` (refs into ``components``, which gets their definitions)."""
    schemas, defs = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    components.update(defs)
    return dict(zip(types, schemas, strict=True))


def _op_routes(r: Route) -> list[tuple[Route, str, Any]]:
    """The server API route as one (route, path, op contract) per op it runs."""
    from roomserver.contract.registry import op_contracts

    return [(r, r.path.replace("{op}", op.name), op) for op in op_contracts() if op.server_api]


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    error_ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    entries: list[tuple[Route, str, Any]] = []
    for r in routes:
        entries += _op_routes(r) if r.path == OPS_PATH else [(r, r.path, None)]
    typed = {t for r, _, op in entries for t in ((op.params, op.reply) if op else (r.reply, r.body)) if t}
    schemas = _schemas(sorted(typed, key=lambda t: (t.__module__, t.__qualname__)), components)
    for r, path, op in entries:
        responses: dict[str, Any] = {str(r.ok_status): {"description": "OK"}}
        reply = op.reply if op else r.reply
        if reply is not None:
            responses[str(r.ok_status)]["content"] = {r.content: {"schema": schemas[reply]}}
        elif r.content and r.ok_status != 101:
            responses[str(r.ok_status)]["content"] = {r.content: {}}
        for other in r.other_content:
            responses[str(r.ok_status)].setdefault("content", {})[other] = {"schema": {"type": "string"}}
        for status in error_statuses(r):
            responses[str(status)] = {"description": STATUS_TEXT[status], "content": error_ref}
        doc: dict[str, Any] = {
            "summary": f"Server API: {op.name}" if op else r.summary,
            "operationId": "op_" + op.name.replace(".", "_") if op else r.handler.__name__,
            "responses": responses,
        }
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": ROOM_ID_SCHEMA if name in ID_PATTERN_PARAMS else ID_SCHEMA,
            }
            for name in re.findall(r"{(\w+)}", path)
        ]
        params += [_param(q, "query") for q in r.query]
        params += [_param(h, "header") for h in r.headers]
        if params:
            doc["parameters"] = params
        if r.auth == "none":
            doc["security"] = []  # explicit: the document's default is a bearer token
        else:
            doc["security"] = [{"bearer": []}]
            doc["description"] = {
                "admin": "Requires an admin token.",
                "room": "Requires a token that admits this room.",
                "any": "Requires any valid token.",
                "node": "Requires a node-to-node token (another node of this deployment).",
            }[r.auth]
        if op is not None:
            doc["description"] += " The body is the op's params, plus `as` to act as a user; " + (
                "the answer is the op's reply data (PROTOCOL §3)."
            )
            doc["requestBody"] = {
                "required": _body_required(op.params),
                "content": {"application/json": {"schema": {"allOf": [schemas[op.params], AS_SCHEMA]}}},
            }
        elif r.body is not None:
            doc["requestBody"] = {
                "required": _body_required(r.body),
                "content": {"application/json": {"schema": schemas[r.body]}},
            }
        elif r.body_content not in ("application/json", ""):
            doc["requestBody"] = {
                "required": True,
                "content": {r.body_content: {"schema": {"type": "string"}}},
            }
        paths.setdefault(path, {})[r.method.lower()] = doc
    return {
        "openapi": "3.1.0",
        "info": {"title": "roomserver", "version": "1"},
        "paths": paths,
        # Every operation needs a bearer token unless it says `security: []`.
        "security": [{"bearer": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
