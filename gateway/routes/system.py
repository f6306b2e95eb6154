"""Health, metrics, the OpenAPI document and the web UI."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from engine.clock import format_time_us
from engine.errors import CrowdexError
from gateway import http, keys, schemas
from gateway.metrics import CONTENT_TYPE
from gateway.routes import Route
from settlement.db import RETRY_AFTER_S

# Prometheus's text exposition format (version 0.0.4) is served as text/plain.
METRICS_CONTENT_TYPE = "text/plain"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
# The web UI's files, fixed when the package is built. Serving only these names keeps client
# paths off the file system, and an unknown name is the API's coded 404 (aiohttp's own static
# handler answers a missing file with a bare 404 and an empty body).
STATIC_FILES = {path.relative_to(STATIC_DIR).as_posix(): path
                for path in STATIC_DIR.rglob("*") if path.is_file()}


async def healthz(request: web.Request) -> web.Response:
    """200 ``{"status": "ok"}``; while PostgreSQL is down (trading goes on, settlement does not)
    API.md wants 503 ``{"status": "degraded", "database": "down"}``, and while a cluster
    replica's stream takes no writes (reads go on) 503 ``{"status": "degraded", "journal":
    "unavailable", "journal_reason": ...}``, the reason saying why: ``no_quorum``,
    ``no_connection`` or ``refused``. Both parts are told when both are degraded."""
    engine = request.app[keys.ENGINE]
    if engine.failed is not None:
        raise CrowdexError("unavailable", "the engine stopped: a journal write failed or a "
                           "command could not be applied (the log says which)")
    body = {}
    if getattr(engine, "degraded", False):  # a cluster replica whose stream takes no writes
        body.update(journal="unavailable", journal_reason=engine.degraded_reason)
    database = request.app.get(keys.DATABASE)
    if database is not None and not database.up:
        body["database"] = "down"
    if body:
        return http.respond(request, 503, {"status": "degraded", **body},
                            {"Retry-After": str(RETRY_AFTER_S)})
    return http.respond(request, 200, {"status": "ok"})


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    body = app[keys.METRICS].render(app.get(keys.ENGINE), app.get(keys.HUB))
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return http.respond(request, 200, request.app[keys.OPENAPI])


async def venue(request: web.Request) -> web.Response:
    """``GET /v1/venue``: how the venue runs, for a client presenting it: the profile (the web
    UI speaks Chinese and colours prices red-up under ``cn2015``), whether the clock is manual
    (only then can an operator advance it) and the exchange time (an offering's time left
    counts in it, not in the browser's clock). The boards' rules are ``GET /v1/boards``."""
    engine = request.app[keys.ENGINE]
    machine = engine.machine
    return http.respond(request, 200, {
        "profile": machine.profile, "clock": "manual" if machine.manual_clock else "wall",
        "now": format_time_us(engine.clock.stamp(machine.now_us)),
    })


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


async def static_file(request: web.Request) -> web.FileResponse:
    """``GET /static/{filename}``: one of the web UI's files, else 404 ``not_found``."""
    path = STATIC_FILES.get(request.match_info["filename"])
    if path is None:
        raise CrowdexError("not_found", "no such file")
    return web.FileResponse(path)


ROUTES = [
    Route("GET", "/healthz", healthz, "Liveness: ok once commands are accepted (503 degraded "
          "while PostgreSQL is away)", response=schemas.Health),
    Route("GET", "/metrics", metrics, "Prometheus metrics (text exposition format)",
          response=str, media_type=METRICS_CONTENT_TYPE),
    Route("GET", "/openapi.json", openapi, "This document", response=dict),
    Route("GET", "/v1/venue", venue, "The venue as it runs: profile, clock and exchange time",
          response=schemas.Venue),
    Route("GET", "/", index, "The web UI", response=str, media_type="text/html"),
]
