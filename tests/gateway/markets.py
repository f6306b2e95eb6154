"""A venue with one trading equity instrument: two sellers holding shares, one buyer with cash."""

from __future__ import annotations

from contextlib import asynccontextmanager

from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from tests.boards.conftest import OPERATOR, Venue, manual_config

PRICE = 10_00  # the offering price, fen per share


@asynccontextmanager
async def trading_venue(tmp_path, price: int = PRICE):
    """Yields (venue, instrument_id, [seller, seller], buyer): the sellers hold 300 shares
    each (offered at ``price`` fen), the buyer has cash; all are qualified investors."""
    async with TestClient(TestServer(create_app(manual_config(tmp_path / "data")))) as c:
        venue = Venue(c)
        issuer = await venue.issuer()
        project = await venue.listed(issuer, "equity", {
            "price": price, "min_quantity": 100, "max_quantity": 1000, "lockup_days": 0}, 30)
        cash = max(10_000_00, 300 * price)
        sellers = [await venue.investor(cash=cash, investor_class="qualified") for _ in range(2)]
        for seller in sellers:
            await venue.subscribe(seller, project, 300)
        await venue.call("POST", f"/v1/projects/{project}/close", OPERATOR, expect=200)
        buyer = await venue.investor(cash=max(100_000_00, 10 * price), investor_class="qualified")
        assert (await venue.project(project))["status"] == "trading"
        yield venue, project, sellers, buyer


