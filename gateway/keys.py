"""Typed application keys: every resource the app holds, in one place.

Every module of the gateway may import this one, so it imports nothing of the project when it
runs; the types it names come (for type checkers only) from modules that never import it back,
which keeps the gateway's modules out of import circles (``tests/test_layers.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import asyncio

    from engine.sequencer import Engine
    from gateway.config import Config
    from gateway.hub import Hub
    from gateway.idempotency import ResponseCache
    from gateway.metrics import Metrics
    from gateway.proxies import TrustedProxies
    from gateway.ratelimit import RateLimiter
    from settlement.db import Database

CONFIG: web.AppKey[Config] = web.AppKey("config")
ENGINE: web.AppKey[Engine] = web.AppKey("engine")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
RATE_LIMITER: web.AppKey[RateLimiter] = web.AppKey("rate_limiter")
RESPONSES: web.AppKey[ResponseCache] = web.AppKey("responses")
OPENAPI: web.AppKey[dict] = web.AppKey("openapi")
HUB: web.AppKey[Hub] = web.AppKey("hub")
DATABASE: web.AppKey[Database] = web.AppKey("database")
# Resolved with the error that ends the server while it runs (a cluster replica the stream's
# purge overtook): connections.run raises it once the server has stopped gracefully.
FATAL: web.AppKey[asyncio.Future] = web.AppKey("fatal")
# Set only with --trusted-proxy: connections.Runner reads it to leave those peers uncapped.
TRUSTED_PROXIES: web.AppKey[TrustedProxies] = web.AppKey("trusted_proxies")

# Per-request storage.
IDEMPOTENCY_KEY: web.RequestKey[str] = web.RequestKey("idempotency_key", str)
REQUEST_HASH: web.RequestKey[str] = web.RequestKey("request_hash", str)
