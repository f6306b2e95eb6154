"""The HTTP routes, one module per area; each exports ``ROUTES`` for the app and OpenAPI.

A ``Route`` says everything ``/openapi.json`` tells a client about it: its query parameters,
whether a body is needed, and what comes back (a JSON type, a list of one, or another media
type such as the settlement report's CSV), so the document cannot drift from the router.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Query:
    """One query parameter: its name, JSON schema and what it does."""

    name: str
    schema: dict[str, Any]
    description: str


def query_int(name: str, low: int, high: int, description: str) -> Query:
    """An integer query parameter the handler reads with ``http.query_int(.., low, high)``."""
    return Query(name, {"type": "integer", "minimum": low, "maximum": high}, description)


def query_enum(name: str, values: tuple[str, ...] | list[str], description: str) -> Query:
    return Query(name, {"type": "string", "enum": list(values)}, description)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: tuple[str, ...] = ()  # empty: public
    request: type | None = None
    response: Any = None  # a msgspec type: a Struct, list[Struct], dict...
    status: int = 200
    query: tuple[Query, ...] = ()
    body_required: bool = True  # False: the body may be left out (the server needs none)
    media_type: str = JSON  # of the response
