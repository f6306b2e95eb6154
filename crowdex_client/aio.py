"""The asyncio client, on aiohttp: the same calls as ``crowdex_client.Client``, awaited.

    async with AsyncClient("http://127.0.0.1:8080", api_key) as cx:
        me = await cx.me()
        async with cx.websocket() as ws:
            await ws.subscribe(["book:7"])
            async for message in ws:
                ...
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec

from crowdex_client import _transport as t
from crowdex_client._api import Call, Endpoints
from crowdex_client._api import _fields as _given
from crowdex_client.models import WsMessage, decode_message

# Errors after which the call is tried again (it is keyed, so that is safe).
CONNECTION_ERRORS = (aiohttp.ClientConnectionError, asyncio.TimeoutError)


class AsyncClient(Endpoints):
    """One API key's view of a crowdex server; every endpoint method returns an awaitable of
    what ``Client``'s returns. Share one session among many keys with ``with_key``."""

    def __init__(self, base_url: str, api_key: str | None = None, *,
                 session: aiohttp.ClientSession | None = None, timeout_s: float = t.TIMEOUT_S,
                 retry: t.Retry = t.DEFAULT_RETRY) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retry = retry
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    def with_key(self, api_key: str) -> AsyncClient:
        """Another account's client sharing this one's connection pool."""
        return AsyncClient(self.base_url, api_key, session=self._session, retry=self.retry)

    async def _send(self, prepared: t.Prepared) -> tuple[int, Any, bytes]:
        async with self._session.request(prepared.method, self.base_url + prepared.target,
                                         data=prepared.body,
                                         headers=prepared.headers) as response:
            return response.status, response.headers, await response.read()

    async def _call(self, call: Call) -> Any:
        prepared = t.prepare(call, self.api_key)
        for attempt in range(1, self.retry.tries + 1):
            last = attempt == self.retry.tries
            try:
                status, headers, raw = await self._send(prepared)
            except CONNECTION_ERRORS:
                if last:
                    raise
                await asyncio.sleep(self.retry.wait_s(attempt, None))
                continue
            if t.retryable(status) and not last:
                await asyncio.sleep(self.retry.wait_s(attempt, headers.get("Retry-After")))
                continue
            return t.finish(call, status, headers, raw)
        raise AssertionError("unreachable")  # the last try returns or raises

    async def request(self, method: str, path: str, body: Any = None, *,
                      params: dict[str, str] | None = None, idempotency_key: str | None = None,
                      result: Any = None) -> Any:
        """Any call by hand: plain JSON back unless ``result`` names a type."""
        return await self._call(Call(method, path, result, body, params, idempotency_key))

    def websocket(self) -> AsyncWebSocket:
        """``async with cx.websocket() as ws``: ``/v1/ws`` with this client's key, if any."""
        return AsyncWebSocket(self._session, self.base_url, self.api_key)


class AsyncWebSocket:
    """``/v1/ws``: send ops, and receive typed messages (``recv`` or ``async for``)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str,
                 api_key: str | None) -> None:
        self._session = session
        self._url = base_url.replace("http", "ws", 1) + "/v1/ws"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._request_ids = itertools.count(1)

    async def __aenter__(self) -> AsyncWebSocket:
        try:
            self._ws = await self._session.ws_connect(self._url, headers=self._headers)
        except aiohttp.WSServerHandshakeError as error:  # 401 for a bad key, 429 past caps
            raise t.ApiError(error.status, "http_error", error.message) from None
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    @property
    def socket(self) -> aiohttp.ClientWebSocketResponse:
        if self._ws is None:
            raise ConnectionError("use `async with client.websocket() as ws`")
        return self._ws

    async def send(self, message: dict) -> None:
        await self.socket.send_str(msgspec.json.encode(message).decode())

    async def auth(self, api_key: str) -> None:
        await self.send({"op": "auth", "api_key": api_key})

    async def subscribe(self, channels: list[str]) -> None:
        """``book:<id>``, ``trades:<id>``, ``project:<id>``, ``orders``."""
        await self.send({"op": "subscribe", "channels": channels})

    async def unsubscribe(self, channels: list[str]) -> None:
        await self.send({"op": "unsubscribe", "channels": channels})

    async def order(self, *, request_id: Any = None, **order: Any) -> Any:
        """Send an order (the POST /v1/orders body); returns its ``request_id``, which the
        ``OrderAck`` or ``WsError`` answering it carries. Orders may be pipelined."""
        request_id = next(self._request_ids) if request_id is None else request_id
        await self.send({"op": "order", "request_id": request_id, **order})
        return request_id

    async def cancel(self, order_id: int, *, request_id: Any = None) -> Any:
        request_id = next(self._request_ids) if request_id is None else request_id
        await self.send({"op": "cancel", "request_id": request_id, "order_id": order_id})
        return request_id

    async def amend(self, order_id: int, *, price: int | None = None,
                    quantity: int | None = None, request_id: Any = None) -> Any:
        """Amend a resting order (like PATCH /v1/orders/{id}); answered by ``AmendAck``."""
        request_id = next(self._request_ids) if request_id is None else request_id
        await self.send({"op": "amend", "request_id": request_id, "order_id": order_id,
                         **_given(price=price, quantity=quantity)})
        return request_id

    async def ping(self) -> None:
        await self.send({"op": "ping"})

    async def recv(self, timeout_s: float | None = None) -> WsMessage | dict:
        """The next message, typed; ``ConnectionError`` once the socket is closed."""
        while True:
            message = await self.socket.receive(timeout=timeout_s)
            if message.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                data = message.data
                return decode_message(data.encode() if isinstance(data, str) else data)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                raise ConnectionError(f"the WebSocket closed ({self.socket.close_code})")

    async def __aiter__(self) -> AsyncIterator[WsMessage | dict]:
        while True:
            try:
                yield await self.recv()
            except ConnectionError:
                return
