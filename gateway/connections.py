"""How the server holds its HTTP connections: a deadline for each request's headers, the
keep-alive timeout, a cap per remote address, and the runner that applies them all.

aiohttp closes an idle keep-alive connection, but it sets no deadline on a request's headers:
a client that opens a connection and says nothing, or trickles a byte every few seconds
(slowloris), holds a descriptor and a parser for as long as it likes, and one address could
hold thousands. ``GuardedRequestHandler`` is aiohttp's connection with that deadline and a
place in its address's count; ``Runner`` is ``web.AppRunner`` making its connections of it.
``crowdex serve`` runs through ``run`` and the tests through ``Runner``: one code path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import msgspec
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from engine.errors import CrowdexError
from gateway import hub, keys

if TYPE_CHECKING:
    from gateway.proxies import TrustedProxies

# API.md: "A connection is closed (a 408 first is fine) when a request's headers have not fully
# arrived 30 s after the connection opened or after its previous response; an idle keep-alive
# connection is closed after 75 s." Silence on a new connection counts against the 30 s; on a
# kept-alive one it is idleness, left to the 75 s, and a request that begins there after the
# 30 s have run gets 30 s from its first byte. The close comes without a 408: a client that has
# not finished its request cannot be counted on to read one.
HEADERS_TIMEOUT_S = 30.0
KEEPALIVE_TIMEOUT_S = 75.0

# Open connections per remote address, upgraded WebSockets included: each holds a descriptor.
# Room for a client's hub.CONNECTIONS_PER_PEER_MAX WebSockets and as many plain connections;
# behind a proxy not trusted with --trusted-proxy every client has the proxy's address, so the
# cap is generous. A trusted proxy's own connections are not capped; each request it carries
# counts for its client (``client_connections``, gateway/proxies.py). Past the cap a new
# connection is answered at once with 429 rate_limited, Retry-After and ``Connection: close``,
# as an upgrade past the WebSocket caps is, so a client learns why and when to come back instead
# of seeing a reset; then the server stops writing, discards what it reads and closes within
# REFUSED_LINGER_S (closing with the client's request unread would reset the connection and
# could destroy the 429 before it is read).
CONNECTIONS_PER_PEER_MAX = 2 * hub.CONNECTIONS_PER_PEER_MAX
REFUSED_RETRY_AFTER_S = 5
REFUSED_LINGER_S = 1.0


def _refusal() -> bytes:
    error = CrowdexError("rate_limited", "too many open connections from this address")
    body = msgspec.json.encode(error.body())
    head = (f"HTTP/1.1 {error.status} Too Many Requests\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: {REFUSED_RETRY_AFTER_S}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


REFUSAL = _refusal()


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The deadlines and the cap; tests lower them, ``crowdex serve`` keeps the defaults."""

    headers_timeout_s: float = HEADERS_TIMEOUT_S
    keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S
    connections_per_peer_max: int = CONNECTIONS_PER_PEER_MAX


def _peer_of(transport: asyncio.BaseTransport) -> str:
    peername = transport.get_extra_info("peername")
    return str(peername[0]) if isinstance(peername, tuple) else str(peername or "")


class GuardedRequestHandler(RequestHandler):
    """aiohttp's HTTP connection, with a deadline on each request's headers and a place in its
    address's count of open connections."""

    __slots__ = ("_server", "_limits", "_peer", "_refused", "_awaiting", "_started",
                 "_deadline_at", "_timer", "peer", "via_proxy")

    def __init__(self, manager: GuardedServer, *, limits: ConnectionLimits,
                 **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        # Kept here: aiohttp forgets its manager when the connection is lost, before the
        # handler of a request still in flight (whose count is then released) has ended.
        self._server = manager
        self._limits = limits
        self._peer: str | None = None  # the address counted, while counted
        self._refused = False
        # Waiting for a request's headers; ``_started``: a request has begun (a byte of it
        # arrived, or the connection just opened), so the deadline applies.
        self._awaiting = False
        self._started = False
        self._deadline_at = 0.0  # loop time by which the awaited headers must be in
        self._timer: asyncio.TimerHandle | None = None  # fires at or before _deadline_at
        self.peer = ""  # the TCP peer's address
        self.via_proxy = False  # the peer is a trusted proxy (--trusted-proxy)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        self.peer = peer = _peer_of(transport)
        if server.trusted is not None and server.trusted.trusts(peer):
            # A trusted proxy's connection carries its clients' requests in turn (nginx keeps
            # it alive for all of them): capping it per address would cap every client behind
            # the proxy together. Each request it carries counts for its client instead.
            self.via_proxy = True
        elif server.hold(peer):
            self._peer = peer
        else:
            self._refuse(transport)
            return
        super().connection_made(transport)
        self._await_headers(started=True)

    def data_received(self, data: bytes) -> None:
        if not self._awaiting:  # a body, WebSocket frames, a pipelined request: no deadline
            if not self._refused:
                super().data_received(data)
            return
        queued = len(self._messages)
        super().data_received(data)
        if len(self._messages) > queued:  # the headers are in (or refused with a 400)
            self._awaiting = False  # the timer, if set, finds nothing to do
        elif data and not self._started:
            self._started = True
            if self._timer is None:  # the request begins after the connection lay idle
                self._set_deadline()

    async def finish_response(self, request: web.BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        result = await super().finish_response(request, resp, start_time)
        if not self._messages:  # else the next request's headers are already here
            self._await_headers(started=False)
        return result

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._peer is not None:
            self._server.release(self._peer)
            self._peer = None
        if not self._refused:  # a refused connection never joined aiohttp's bookkeeping
            super().connection_lost(exc)

    def hold(self, client: str) -> bool:
        """Count a request this trusted proxy's connection carries as a connection of
        ``client`` while it lasts; False past the cap (``release`` undoes)."""
        return self._server.hold(client)

    def release(self, client: str) -> None:
        self._server.release(client)

    def _refuse(self, base_transport: asyncio.BaseTransport) -> None:
        self._refused = True
        # A stream server's transport (uvloop's is not an asyncio.Transport subclass).
        transport = cast(asyncio.Transport, base_transport)
        transport.write(REFUSAL)
        if transport.can_write_eof():
            transport.write_eof()
        self._timer = self._loop.call_later(REFUSED_LINGER_S, transport.close)

    def _await_headers(self, *, started: bool) -> None:
        self._awaiting, self._started = True, started
        self._set_deadline()

    def _set_deadline(self) -> None:
        # Deadlines only move later, so a timer already set fires at or before this one and then
        # moves itself on: a connection busy with requests sets a timer once per
        # headers_timeout_s, not once per request (as aiohttp's keep-alive timer does).
        self._deadline_at = self._loop.time() + self._limits.headers_timeout_s
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline_at, self._headers_late)

    def _headers_late(self) -> None:
        self._timer = None
        if not self._awaiting or self.transport is None:
            return
        if self._loop.time() < self._deadline_at:
            self._timer = self._loop.call_at(self._deadline_at, self._headers_late)
        elif self._started:  # else the connection is idle between requests: keep-alive's to end
            self.force_close()


class GuardedServer(web.Server):
    """aiohttp's ``Server`` making ``GuardedRequestHandler`` connections."""

    def __init__(self, handler: Any, *, limits: ConnectionLimits,
                 trusted: TrustedProxies | None = None, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.limits = limits
        self.trusted = trusted  # the proxies whose connections are not capped per address
        # Open connections per remote address; a request a trusted proxy carries counts as one.
        self.peers: dict[str, int] = {}

    def __call__(self) -> GuardedRequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, limits=self.limits, **self._kwargs)

    def hold(self, address: str) -> bool:
        """Count one more connection of ``address``, or False if it has its cap already."""
        count = self.peers.get(address, 0)
        if count >= self.limits.connections_per_peer_max:
            return False
        self.peers[address] = count + 1
        return True

    def release(self, address: str) -> None:
        left = self.peers[address] - 1
        if left:
            self.peers[address] = left
        else:
            del self.peers[address]


@web.middleware
async def client_connections(request: web.Request, handler) -> web.StreamResponse:
    """Inside the errors middleware: a request a trusted proxy forwards counts as a connection of
    its client while it lasts, so a client behind the proxy holds no more of the server (open
    requests and WebSockets) than one connecting directly; past the cap it is 429 as a direct
    connection would be, and the proxy's connection stays open for its other clients."""
    protocol = request.protocol
    if not isinstance(protocol, GuardedRequestHandler) or not protocol.via_proxy:
        return await handler(request)
    client = request.remote
    if client is None or client == protocol.peer:  # the proxy's own request: not counted
        return await handler(request)
    if not protocol.hold(client):
        raise CrowdexError("rate_limited", "too many open connections from this address",
                           headers={"Retry-After": str(REFUSED_RETRY_AFTER_S)})
    try:
        return await handler(request)
    finally:
        protocol.release(client)


class Runner(web.AppRunner):
    """``web.AppRunner`` whose connections keep ``limits`` (the API.md defaults unless given)."""

    def __init__(self, app: web.Application, *, limits: ConnectionLimits | None = None,
                 **kwargs: Any) -> None:
        self.limits = limits or ConnectionLimits()
        super().__init__(app, keepalive_timeout=self.limits.keepalive_timeout_s, **kwargs)

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # starts the app, as AppRunner does
        # The same handler, request factory and handler arguments (aiohttp keeps the last in
        # ``_kwargs``), in connections that keep the limits.
        return GuardedServer(plain.request_handler, request_factory=plain.request_factory,
                             handler_cancellation=plain.handler_cancellation,
                             loop=asyncio.get_running_loop(), limits=self.limits,
                             trusted=self.app.get(keys.TRUSTED_PROXIES), **plain._kwargs)


def run(app: web.Application, *, host: str, port: int, loop: asyncio.AbstractEventLoop,
        shutdown_timeout: float, print: Callable[[str], None] = print,
        limits: ConnectionLimits | None = None) -> None:
    """``web.run_app`` with ``Runner``: serve until SIGINT or SIGTERM, then shut down
    gracefully, giving requests in flight ``shutdown_timeout`` seconds."""
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, shutdown_timeout, print, limits))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main.done():
                main.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    loop.run_until_complete(main)
        finally:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


async def _serve(app: web.Application, host: str, port: int, shutdown_timeout: float,
                 print: Callable[[str], None], limits: ConnectionLimits | None) -> None:
    runner = Runner(app, limits=limits, handle_signals=True, access_log=None,
                    shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        print(f"======== Running on {site.name} ========\n(Press CTRL+C to quit)")
        fatal = app.get(keys.FATAL)
        if fatal is None:
            await asyncio.Event().wait()
        error = await fatal
    finally:
        await runner.cleanup()
    raise error  # after the graceful stop: for the caller to report and exit with
