"""The HTTP routes, one module per area; each exports ``ROUTES`` for the app and OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    roles: tuple[str, ...] = ()  # empty: public
    request: type | None = None
    response: type | None = None
    status: int = 200
