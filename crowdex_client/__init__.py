"""The crowdex Python client: every endpoint and the WebSocket, sync and async, typed.

    from crowdex_client import Client
    with Client("http://127.0.0.1:8080", api_key) as cx:
        book = cx.book(7)
        order = cx.place_order(7, "buy", 10, price=book.asks[0][0])

Answers are msgspec Structs (``crowdex_client.models``); a refusal raises ``ApiError`` with
API.md's status and code. Every POST and DELETE carries an ``Idempotency-Key`` (made up when
not given) and 429 and 503 are retried after ``Retry-After``, so retries are safe. It needs
msgspec (and aiohttp for ``AsyncClient``), never the server's engine or database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crowdex_client import models
from crowdex_client._transport import NO_RETRY, ApiError, Retry
from crowdex_client.sync import Client, WebSocket

if TYPE_CHECKING:
    from crowdex_client.aio import AsyncClient, AsyncWebSocket


def __getattr__(name: str) -> object:
    """``AsyncClient`` is imported when first asked for: a sync script does not load aiohttp."""
    if name in ("AsyncClient", "AsyncWebSocket"):
        from crowdex_client import aio

        return getattr(aio, name)
    raise AttributeError(f"module 'crowdex_client' has no attribute {name!r}")


__all__ = ["NO_RETRY", "ApiError", "AsyncClient", "AsyncWebSocket", "Client", "Retry",
           "WebSocket", "models"]
