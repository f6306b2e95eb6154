"""The OpenAPI 3.1 document, generated from the routes and their msgspec types.

Everything in it comes from the ``Route`` declarations the router is built from (paths, query
parameters, bodies, answers and their media types) and from the boards' own terms types, so the
document says what the server does: a test runs schemathesis against it (tests/gateway).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import msgspec

from boards import registry, rules
from gateway import schemas
from gateway.routes import JSON, Route

MSGPACK = "application/msgpack"
ID_MAX = schemas.MAX_SAFE  # path ids are positive integers of at most 2^53 (http.path_id)
PROJECT_REQUEST = "CreateProjectRequest"
ERROR_STATUSES = {
    "4XX": "Refused: malformed or invalid (400), no or bad key (401), role (403), not found "
           "(404), method (405, with Allow), state (409), too large (413), business rule "
           "(422), rate limited (429, with Retry-After)",
    "503": "Unavailable: the engine stopped, or PostgreSQL is away for settlement "
           "(with Retry-After)",
}
_param_re = re.compile(r"\{([^}]+)\}")


def _path_params(route: Route) -> list[dict]:
    return [{"name": name, "in": "path", "required": True,
             "schema": {"type": "integer", "minimum": 1, "maximum": ID_MAX}}
            for name in _param_re.findall(route.path)]


def _query_params(route: Route) -> list[dict]:
    return [{"name": q.name, "in": "query", "required": False, "description": q.description,
             "schema": q.schema} for q in route.query]


def _request_body(route: Route, refs: dict[Any, dict]) -> dict:
    schema = refs[route.request]
    return {"required": route.body_required,
            "content": {JSON: {"schema": schema}, MSGPACK: {"schema": schema}}}


def _ok(route: Route, refs: dict[Any, dict]) -> dict:
    ok: dict = {"description": "OK" if route.status == 200 else "Created"}
    if route.response is None:
        return ok
    schema = refs[route.response]
    content = {route.media_type: {"schema": schema}}
    if route.media_type == JSON:
        content[MSGPACK] = {"schema": schema}  # with Accept: application/msgpack
    ok["content"] = content
    return ok


def _operation(route: Route, refs: dict[Any, dict]) -> dict:
    op: dict = {"summary": route.summary, "operationId": route.handler.__name__}
    if route.roles:
        op["security"] = [{"bearer": []}]
        op["description"] = "Roles: " + ", ".join(route.roles)
    params = _path_params(route) + _query_params(route)
    if params:
        op["parameters"] = params
    if route.request is not None:
        op["requestBody"] = _request_body(route, refs)
    error = {"content": {JSON: {"schema": refs[schemas.ErrorBody]}}}
    op["responses"] = {str(route.status): _ok(route, refs),
                       **{status: {"description": text, **error}
                          for status, text in ERROR_STATUSES.items()}}
    if route.response is schemas.Health:  # /healthz answers 503 with its own body
        op["responses"]["503"] = {"description": "Degraded: PostgreSQL is away",
                                  "content": {JSON: {"schema": {"anyOf": [
                                      refs[schemas.Health], refs[schemas.ErrorBody]]}}}}
    return op


def _project_request_by_board(components: dict, board_terms: dict[str, dict]) -> None:
    """``POST /v1/projects``: one schema a board, told apart by ``board``, each with that
    board's ``terms`` (the server decodes ``terms`` with the board's own type)."""
    base = components[PROJECT_REQUEST]
    variants, mapping = [], {}
    for board, terms in board_terms.items():
        name = f"{PROJECT_REQUEST}_{board}"
        variant = copy.deepcopy(base)
        variant["title"] = name
        variant["properties"]["board"] = {"type": "string", "enum": [board]}
        variant["properties"]["terms"] = terms
        components[name] = variant
        mapping[board] = f"#/components/schemas/{name}"
        variants.append({"$ref": mapping[board]})
    components[PROJECT_REQUEST] = {"title": PROJECT_REQUEST, "oneOf": variants,
                                   "discriminator": {"propertyName": "board",
                                                     "mapping": mapping}}


def _enums(components: dict) -> None:
    """Fields whose values are a closed set the types keep as plain strings."""
    view = components["ProjectView"]["properties"]
    view["board"] = {"type": "string", "enum": list(registry.BOARDS)}
    view["status"] = {"type": "string", "enum": list(rules.STATUSES)}


def build(routes: list[Route]) -> dict:
    types = [schemas.ErrorBody]
    for route in routes:
        types += [t for t in (route.request, route.response) if t is not None]
    boards = {name: board.terms_type for name, board in registry.BOARDS.items()}
    unique = list(dict.fromkeys(types + list(boards.values())))
    found, components = msgspec.json.schema_components(
        unique, ref_template="#/components/schemas/{name}")
    refs = dict(zip(unique, found, strict=True))
    if PROJECT_REQUEST in components:
        _project_request_by_board(components, {n: refs[t] for n, t in boards.items()})
    _enums(components)
    paths: dict = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "crowdex", "version": "1",
                 "description": "A crowdfunding exchange. Money in integer fen, prices in fen "
                                "per unit, rates in basis points, times ISO 8601 UTC."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }

