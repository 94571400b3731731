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


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": r.handler.__name__,
            "responses": {
                str(r.ok_status): {"description": "OK", "content": {r.content: {}}},
                "default": {
                    "description": "Error",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                },
            },
        }
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", r.path)
        ]
        params += [
            {"name": n, "in": "query", "required": False, "description": d, "schema": {}} for n, d in r.query
        ]
        if params:
            op["parameters"] = params
        if r.auth != "none":
            op["security"] = [{"bearer": []}]
            op["description"] = {
                "admin": "Requires an admin token.",
                "room": "Requires a token that admits this room.",
                "any": "Requires any valid token.",
            }[r.auth]
        if r.body is not None:
            (schema,), defs = msgspec.json.schema_components(
                [r.body], ref_template="#/components/schemas/{name}"
            )
            components.update(defs)
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "roomserver", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
