"""The middlewares, outermost first: request id, errors, rate limit, idempotency (behind a
trusted proxy, the client's address before them all).

Authentication is not a middleware: API.md wants a malformed body refused (400) before a bad key
(401), so handlers decode their body first and then call ``http.require``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
import uuid

from aiohttp import web

from engine.errors import CrowdexError
from gateway import connections, http, keys, logs
from gateway.idempotency import StoredResponse
from gateway.metrics import UNMATCHED_ROUTE
from gateway.proxies import TrustedProxies, forwarded_for
from gateway.ratelimit import retry_after_header

log = logging.getLogger("crowdex.gateway")

IDEMPOTENCY_KEY_LENGTH_MAX = 255
REQUEST_ID_LENGTH_MAX = 128
STATUS_CLIENT_GONE = 499  # logged for a request whose client left before the answer
UNLIMITED_PATHS = frozenset({"/healthz", "/metrics"})

_STATUS_CODES = {
    400: "invalid_field", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type",
}


# Request ids: a random prefix per process, then a counter (uuid4 per request costs a syscall).
_REQUEST_ID_PREFIX = uuid.uuid4().hex[:16]
_request_numbers = itertools.count(1)


def _new_request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_numbers):016x}"


@web.middleware
async def request_id(request: web.Request, handler) -> web.StreamResponse:
    """Name the request (the client's ``X-Request-Id`` or a new one) for every log line it
    causes (gateway/logs.py), then time it: one access line and one latency observation by
    route and status when it ends (for a WebSocket, when the socket closes)."""
    given = request.headers.get("X-Request-Id", "")
    rid = given if 0 < len(given) <= REQUEST_ID_LENGTH_MAX else _new_request_id()
    token = logs.REQUEST_ID.set(rid)
    started = time.perf_counter()
    status = STATUS_CLIENT_GONE  # kept if the handler is cancelled: the client went away
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = rid
            if status == 405:
                _allow(request, response)
        return response
    except web.HTTPException as exc:  # a redirect: the errors middleware answers the rest
        status = exc.status
        raise
    except asyncio.CancelledError:
        # aiohttp cancels the handler of a connection that closed: a WebSocket (101) usually
        # ends that way; any other request is a client that left before its answer.
        if request.headers.get("Upgrade", "").lower() == "websocket":
            status = 101
        raise
    finally:
        _finished(request, status, time.perf_counter() - started, rid)
        logs.REQUEST_ID.reset(token)


def _finished(request: web.Request, status: int, seconds: float, rid: str) -> None:
    """The request's latency by route template (a bounded set of labels) and its access line."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else UNMATCHED_ROUTE
    request.app[keys.METRICS].observe_http(request.method, route, status, seconds)
    logs.access(request.method, request.path, status, seconds, rid, request.remote)


def _allow(request: web.Request, response: web.StreamResponse) -> None:
    """A 405 says which methods the path has (RFC 9110: ``Allow``). The errors middleware
    turns aiohttp's HTTPMethodNotAllowed into the API's error body; its methods are kept on
    the request's match info."""
    refusal = getattr(request.match_info, "http_exception", None)
    allowed = getattr(refusal, "allowed_methods", None)
    if allowed:
        response.headers["Allow"] = ", ".join(sorted(allowed))


@web.middleware
async def errors(request: web.Request, handler) -> web.StreamResponse:
    """Map every refusal to the API's error shape; nothing a client sends becomes a 5xx."""
    try:
        response = await handler(request)
    except CrowdexError as error:
        response = http.error_response(request, error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, "invalid_field")
        message = exc.reason if exc.status != 413 else "the body is larger than 64 KiB"
        response = http.error_response(request, CrowdexError(code, message, status=exc.status))
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        response = http.error_response(
            request, CrowdexError("internal_error", "an internal error occurred"))
    request.app[keys.METRICS].http[response.status] += 1
    return response


def _bucket_key(request: web.Request) -> str:
    """The bucket a request is charged to: its account's for a valid key, else its address's.

    Keying on the header as sent gave every made-up key a fresh bucket: a flood of them was
    never limited, and it filled the table. Anything but a valid key (none, unknown or
    malformed) is charged to the remote address; a valid key is charged to its account (one key
    at a time, so this is per key, and a rotated key keeps its bucket) wherever it comes from,
    so junk from an address, a neighbour's behind the same NAT or proxy included, does not lock
    out the valid keys used there. The lookup is authentication's own (a cached hash and a dict
    lookup); the 401 still comes from the handler, after the body's 400 (API.md's order).
    """
    if "Authorization" in request.headers:
        try:
            return f"a:{http.principal(request).account_id}"
        except CrowdexError:
            pass
    return "ip:" + (request.remote or "")


@web.middleware
async def rate_limit(request: web.Request, handler) -> web.StreamResponse:
    """429 before the handler runs: API.md, "Rate limits apply per key and, for requests without
    a valid key (none, unknown or malformed), per remote address"."""
    if request.path in UNLIMITED_PATHS:
        return await handler(request)
    wait = request.app[keys.RATE_LIMITER].take(_bucket_key(request))
    if wait > 0:
        raise CrowdexError("rate_limited", "too many requests; slow down",
                           headers={"Retry-After": retry_after_header(wait)})
    return await handler(request)


@web.middleware
async def idempotency(request: web.Request, handler) -> web.StreamResponse:
    """Replay the first response to a repeated ``Idempotency-Key`` (scoped to the API key)."""
    key = request.headers.get("Idempotency-Key")
    token = request.headers.get("Authorization", "")
    if key is None or request.method not in ("POST", "DELETE", "PATCH") or not token:
        return await handler(request)
    if not 0 < len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        raise CrowdexError("invalid_field", "Idempotency-Key must be 1 to 255 characters")
    raw = await request.read()
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), raw):
        digest.update(len(part).to_bytes(8, "big") + part)
    fingerprint = digest.hexdigest()
    cache = request.app[keys.RESPONSES]
    scope = http.key_hash(token)
    stored = cache.get(scope, key)
    if stored is not None:
        if stored.fingerprint != fingerprint:
            raise CrowdexError("idempotency_key_conflict",
                               "this Idempotency-Key was used with a different request")
        return web.Response(status=stored.status, body=stored.body,
                            content_type=stored.content_type)
    request[keys.IDEMPOTENCY_KEY] = key
    request[keys.REQUEST_HASH] = fingerprint
    try:
        response = await handler(request)
    except CrowdexError as error:
        response = http.error_response(request, error)
    if response.status != 429 and response.status < 500 and isinstance(response, web.Response):
        cache.put(scope, key, StoredResponse(fingerprint, response.status, response.body,
                                             response.content_type, time.monotonic()))
    return response


MIDDLEWARES = [request_id, errors, rate_limit, idempotency]


def middlewares(trusted: TrustedProxies | None) -> list:
    """MIDDLEWARES; behind trusted proxies (``--trusted-proxy``), first the client's address
    taken from them (gateway/proxies.py), and inside the errors middleware the count of each
    forwarded client's open requests against the connection cap (gateway/connections.py)."""
    if trusted is None:
        return MIDDLEWARES
    return [forwarded_for(trusted), request_id, errors, connections.client_connections,
            rate_limit, idempotency]
