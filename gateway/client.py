"""The untyped async client the tests and benchmarks use: answers are plain dicts.

Bots and scripts should use ``crowdex_client`` (sync and async, typed answers, every endpoint,
retries on 429/503 with idempotency keys). This one stays small for the tests that build
venues call by call; it shares ``crowdex_client``'s ``ApiError``.

    async with Client("http://127.0.0.1:8080", api_key) as cx:
        me = await cx.me()

Every refusal raises ``ApiError`` with the API's status and code. Money is integer fen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import msgspec

from crowdex_client import ApiError

__all__ = ["ApiError", "Client"]


class Client:
    """One API key's view of a crowdex server."""

    def __init__(self, base_url: str, api_key: str | None = None, *,
                 session: aiohttp.ClientSession | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self._own_session = session is None
        self._session = session or aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session:
            await self._session.close()

    def with_key(self, api_key: str) -> Client:
        """Another account's client sharing this one's connection pool."""
        return Client(self.base_url, api_key, session=self._session)

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def request(self, method: str, path: str, body: Any = None, *,
                      params: dict | None = None, idempotency_key: str | None = None) -> Any:
        data = None if body is None else msgspec.json.encode(body)
        headers = self._headers(idempotency_key)
        if data is not None:
            headers["Content-Type"] = "application/json"
        async with self._session.request(method, self.base_url + path, data=data,
                                         headers=headers, params=params) as response:
            raw = await response.read()
            if response.content_type == "text/csv" or path == "/metrics":
                payload: Any = raw.decode()
            else:
                payload = msgspec.json.decode(raw) if raw else None
            if response.status >= 400:
                error = (payload or {}).get("error", {}) if isinstance(payload, dict) else {}
                raise ApiError(response.status, error.get("code", "http_error"),
                               error.get("message", raw[:200].decode(errors="replace")))
            return payload

    # ---- accounts and money -----------------------------------------------------------------

    async def create_account(self, role: str, name: str, **fields: Any) -> dict:
        return await self.request("POST", "/v1/accounts", {"role": role, "name": name, **fields})

    async def deposit(self, account_id: int, amount: int, reference: str) -> dict:
        return await self.request("POST", f"/v1/accounts/{account_id}/deposits",
                                  {"amount": amount, "reference": reference})

    async def withdraw(self, amount: int, reference: str) -> dict:
        return await self.request("POST", "/v1/me/withdrawals",
                                  {"amount": amount, "reference": reference})

    async def me(self) -> dict:
        return await self.request("GET", "/v1/me")

    async def advance_clock(self, seconds: int) -> dict:
        return await self.request("POST", "/v1/admin/clock", {"advance_seconds": seconds})

    async def health(self) -> dict:
        return await self.request("GET", "/healthz")

    # ---- projects ---------------------------------------------------------------------------

    async def create_project(self, board: str, title: str, description: str, deadline: str,
                             terms: dict) -> dict:
        return await self.request("POST", "/v1/projects", {
            "board": board, "title": title, "description": description,
            "deadline": deadline, "terms": terms})

    async def project_action(self, project_id: int, action: str, body: Any = None) -> dict:
        """``approve``, ``reject``, ``close``, ``delivery`` or ``distributions``."""
        return await self.request("POST", f"/v1/projects/{project_id}/{action}",
                                  {} if body is None else body)

    async def project(self, project_id: int) -> dict:
        return await self.request("GET", f"/v1/projects/{project_id}")

    async def projects(self, **filters: str) -> list:
        return await self.request("GET", "/v1/projects", params=filters or None)

    async def subscribe(self, project_id: int, quantity: int, **extra: Any) -> dict:
        return await self.request("POST", f"/v1/projects/{project_id}/subscriptions",
                                  {"quantity": quantity, **extra})

    async def cancel_subscription(self, subscription_id: int) -> dict:
        return await self.request("DELETE", f"/v1/subscriptions/{subscription_id}")

    # ---- orders and market data -------------------------------------------------------------

    async def place_order(self, **order: Any) -> dict:
        return await self.request("POST", "/v1/orders", order)

    async def cancel_order(self, order_id: int) -> dict:
        return await self.request("DELETE", f"/v1/orders/{order_id}")

    async def orders(self, status: str | None = None) -> list:
        return await self.request("GET", "/v1/orders",
                                  params={"status": status} if status else None)

    async def order(self, order_id: int) -> dict:
        return await self.request("GET", f"/v1/orders/{order_id}")

    async def book(self, instrument_id: int, depth: int = 10) -> dict:
        return await self.request("GET", f"/v1/instruments/{instrument_id}/book",
                                  params={"depth": str(depth)})

    async def trades(self, instrument_id: int, limit: int = 100) -> list:
        return await self.request("GET", f"/v1/instruments/{instrument_id}/trades",
                                  params={"limit": str(limit)})

    # ---- settlement -------------------------------------------------------------------------

    async def settle(self) -> dict:
        return await self.request("POST", "/v1/settlement/batches", {})

    async def reconciliation(self) -> dict:
        return await self.request("GET", "/v1/settlement/reconciliation")

    # ---- WebSocket --------------------------------------------------------------------------

    @asynccontextmanager
    async def websocket(self) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        """A WebSocket to ``/v1/ws``, authenticated with this client's key if it has one."""
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        url = self.base_url.replace("http", "ws", 1) + "/v1/ws"
        async with self._session.ws_connect(url, headers=headers) as ws:
            yield ws
