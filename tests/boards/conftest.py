"""Board tests: the real app on a real socket with the manual clock, plus conservation checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine.clock import format_time_us, parse_time_us
from engine.offerings import Offerings
from gateway import keys
from gateway.app import create_app
from tests.gateway.conftest import OPERATOR, deposit, make_config, new_account

T0 = parse_time_us("2026-01-01T00:00:00Z")
DAY = 86_400
__all__ = ["OPERATOR", "deposit", "new_account"]


def at(days: float = 0, seconds: int = 0) -> str:
    return format_time_us(T0 + int(days * DAY + seconds) * 1_000_000)


class Venue:
    """A manual-clock venue over HTTP with the engine's state at hand for invariants."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    @property
    def machine(self):
        return self.client.server.app[keys.ENGINE].machine

    @property
    def offerings(self) -> Offerings:
        return next(c for c in self.machine.components if isinstance(c, Offerings))

    def at(self, days: float = 0) -> str:
        """A time ``days`` from the exchange's now."""
        return format_time_us(self.machine.now_us + int(days * DAY) * 1_000_000)

    async def investor(self, cash: int = 0, **fields) -> dict:
        account = await new_account(self.client, "investor", **fields)
        if cash:
            await deposit(self.client, account["account_id"], cash, f"d{account['account_id']}")
        return account

    async def issuer(self, cash: int = 0) -> dict:
        account = await new_account(self.client, "issuer")
        if cash:
            await deposit(self.client, account["account_id"], cash, f"d{account['account_id']}")
        return account

    async def call(self, method: str, path: str, who: dict | None, body=None,
                   expect: int | None = None):
        headers = who["headers"] if who and "headers" in who else (who or {})
        response = await self.client.request(method, path, json=body, headers=headers)
        payload = await response.json()
        if expect is not None:
            assert response.status == expect, payload
        self.check_conservation()
        return response.status, payload

    async def error(self, method: str, path: str, who, body=None) -> tuple[int, str]:
        status, payload = await self.call(method, path, who, body)
        assert set(payload) == {"error"}, payload
        return status, payload["error"]["code"]

    async def listed(self, issuer: dict, board: str, terms: dict, deadline_days: float,
                     approve: bool = True) -> int:
        _, body = await self.call("POST", "/v1/projects", issuer, {
            "board": board, "title": f"a {board} project", "description": "d",
            "deadline": self.at(deadline_days), "terms": terms}, expect=201)
        assert body["status"] == "pending_review"
        if approve:
            _, opened = await self.call("POST", f"/v1/projects/{body['project_id']}/approve",
                                        OPERATOR, expect=200)
            assert opened["status"] == "open"
        return body["project_id"]

    async def subscribe(self, who: dict, project_id: int, quantity: int, **extra):
        return await self.call("POST", f"/v1/projects/{project_id}/subscriptions", who,
                               {"quantity": quantity, **extra})

    async def advance(self, seconds: int) -> None:
        await self.call("POST", "/v1/admin/clock", OPERATOR, {"advance_seconds": seconds},
                        expect=200)

    async def project(self, project_id: int) -> dict:
        _, body = await self.call("GET", f"/v1/projects/{project_id}", OPERATOR, expect=200)
        return body

    async def me(self, who: dict) -> dict:
        _, body = await self.call("GET", "/v1/me", who, expect=200)
        return body

    async def allocations(self, project_id: int) -> list[dict]:
        _, rows = await self.call("GET", f"/v1/projects/{project_id}/allocations", OPERATOR,
                                  expect=200)
        return rows

    def check_conservation(self) -> None:
        check_conservation(self.machine, self.offerings)


def check_conservation(machine, offerings: Offerings) -> None:
    """Cash: accounts + held payouts == deposits - withdrawals. Units: positions == issued."""
    assert machine.cash_total() + offerings.held_total() == (
        machine.deposits_total - machine.withdrawals_total)
    rows = machine.balances.accounts.live()
    assert (rows["cash_available"] >= 0).all() and (rows["cash_reserved"] >= 0).all()
    positions = machine.balances.positions.live()
    for instrument in np.unique(positions["instrument_id"]):
        held = positions[positions["instrument_id"] == instrument]
        total = int(held["units_available"].sum() + held["units_reserved"].sum())
        assert total == offerings.units_issued(int(instrument))


def manual_config(data_dir: Path, **overrides):
    return make_config(data_dir, manual_clock=True, start_time_us=T0, **overrides)


@pytest.fixture
async def venue(tmp_path: Path):
    async with TestClient(TestServer(create_app(manual_config(tmp_path / "data")))) as c:
        yield Venue(c)


@pytest.fixture
async def cn_venue(tmp_path: Path):
    config = manual_config(tmp_path / "data", profile="cn2015")
    async with TestClient(TestServer(create_app(config))) as c:
        yield Venue(c)
