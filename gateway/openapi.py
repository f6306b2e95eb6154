"""The OpenAPI 3.1 document, generated from the routes and their msgspec types."""

from __future__ import annotations

import re

import msgspec

from gateway import schemas
from gateway.routes import Route

_param_re = re.compile(r"\{([^}]+)\}")


def _ref(schema_type: type) -> dict:
    return {"$ref": f"#/components/schemas/{schema_type.__name__}"}


def _operation(route: Route) -> dict:
    op: dict = {"summary": route.summary, "operationId": route.handler.__name__}
    if route.roles:
        op["security"] = [{"bearer": []}]
        op["description"] = "Roles: " + ", ".join(route.roles)
    params = [{"name": p, "in": "path", "required": True,
               "schema": {"type": "integer", "minimum": 1}} for p in _param_re.findall(route.path)]
    if params:
        op["parameters"] = params
    if route.request is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _ref(route.request)},
            "application/msgpack": {"schema": _ref(route.request)},
        }}
    ok = {"description": "OK"}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": _ref(route.response)}}
    error = {"description": "Refused", "content": {
        "application/json": {"schema": _ref(schemas.ErrorBody)}}}
    op["responses"] = {str(route.status): ok, "4XX": error}
    return op


def build(routes: list[Route]) -> dict:
    types = {schemas.ErrorBody}
    for route in routes:
        types.update(t for t in (route.request, route.response) if t is not None)
    ordered = sorted(types, key=lambda t: t.__name__)
    _, components = msgspec.json.schema_components(
        ordered, ref_template="#/components/schemas/{name}")
    paths: dict = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "crowdex", "version": "1",
                 "description": "A crowdfunding exchange. Money in integer fen."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
