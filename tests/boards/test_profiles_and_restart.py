"""cn2015 rules on primary offerings, a toy sixth board, and a deadline that passes while the
server is down (closed on restart by the clock, exactly once, identically on replay)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from boards import registry, rules
from engine import movements as mv
from engine.clock import WallClock, format_time_us
from engine.sequencer import replay_from_empty
from gateway.app import create_app
from tests.boards.conftest import DAY, OPERATOR, Venue, check_conservation
from tests.gateway.conftest import make_config

EQUITY = {"price": 100, "min_quantity": 1, "max_quantity": 1000, "lockup_days": 0}


async def test_cn2015_equity_hidden_ip_qualified_only_product_not_cancellable(cn_venue):
    venue = cn_venue
    issuer = await venue.issuer()
    retail = await venue.investor(10_000)
    qualified = await venue.investor(10_000, investor_class="qualified")
    equity = await venue.listed(issuer, "equity", EQUITY, 30)
    ip = await venue.listed(issuer, "ip", {**EQUITY, "royalty_share_bps": 100}, 30)
    assert await venue.error("GET", f"/v1/projects/{equity}", retail) == (
        404, "project_not_found")
    assert await venue.error("GET", f"/v1/projects/{equity}", None) == (
        404, "project_not_found")
    _, rows = await venue.call("GET", "/v1/projects", retail, expect=200)
    assert [r["project_id"] for r in rows] == [ip]
    _, rows = await venue.call("GET", "/v1/projects", qualified, expect=200)
    assert [r["project_id"] for r in rows] == [equity, ip]
    assert await venue.error("POST", f"/v1/projects/{equity}/subscriptions", retail,
                             {"quantity": 1}) == (404, "project_not_found")
    # Eligibility is a business rule when subscribing (422); 403 is for /v1/offers alone.
    assert await venue.error("POST", f"/v1/projects/{ip}/subscriptions", retail,
                             {"quantity": 1}) == (422, "not_eligible")
    assert (await venue.subscribe(qualified, equity, 1))[0] == 201
    product = await venue.listed(issuer, "product", {"goal": 1, "tiers": [
        {"tier_id": "t", "price": 10}]}, 5)
    _, pledge = await venue.subscribe(retail, product, 1, tier_id="t")
    assert await venue.error("DELETE", f"/v1/subscriptions/{pledge['subscription_id']}",
                             retail) == (422, "cancel_not_permitted")


async def test_cn2015_holder_limit_refunds_the_latest(cn_venue):
    venue = cn_venue
    issuer = await venue.issuer()
    pid = await venue.listed(issuer, "ip", {**EQUITY, "min_quantity": 1, "max_quantity": 10_000,
                                            "royalty_share_bps": 100}, 30)
    investors = [await venue.investor(1_000, investor_class="qualified") for _ in range(201)]
    for who in investors:
        assert (await venue.subscribe(who, pid, 2))[0] == 201
    assert (await venue.subscribe(investors[0], pid, 1))[0] == 201  # an existing holder
    await venue.call("POST", f"/v1/projects/{pid}/close", OPERATOR, expect=200)
    project = await venue.project(pid)
    assert project["investor_count"] == 200 and project["subscribed_quantity"] == 401
    rows = await venue.allocations(pid)
    assert rows[200] == {"subscription_id": 201, "account_id": investors[200]["account_id"],
                         "quantity": 0, "amount": 0, "refunded": 200}
    assert (await venue.me(investors[200]))["cash_available"] == 1_000


class ParkingTerms(rules.Terms):
    price: int
    min_quantity: int
    max_quantity: int
    years: int
    lockup_days: int | None = None


class ParkingBoard(rules.Board):
    """A sixth board: a new rules class and one registry entry, nothing else."""

    config = rules.BoardConfig(name="parking", duration_days_min=14,
                               duration_days_max=45, cancel_window_us=24 * rules.US_PER_HOUR,
                               success_fee_bps=400, lockup_days_default=90)
    terms_type = ParkingTerms


async def test_a_toy_sixth_board(venue, monkeypatch):
    monkeypatch.setitem(registry.BOARDS, "parking", ParkingBoard())
    issuer = await venue.issuer()
    a = await venue.investor(10_000)
    terms = {"price": 250, "min_quantity": 2, "max_quantity": 20, "years": 10}
    pid = await venue.listed(issuer, "parking", terms, 14)
    await venue.subscribe(a, pid, 4)
    await venue.advance(14 * DAY)
    project = await venue.project(pid)
    assert project["status"] == "succeeded" and project["terms"]["lockup_days"] == 90
    assert (await venue.me(issuer))["cash_available"] == 1_000 - 40  # 400 bps
    _, rows = await venue.call("GET", "/v1/projects?board=parking", None, expect=200)
    assert [r["project_id"] for r in rows] == [pid]


@pytest.mark.one_machine  # fakes the wall clock (a replica's time is the stream's)
async def test_deadline_passing_while_down_closes_on_restart_exactly_once(tmp_path: Path,
                                                                        monkeypatch):
    """The wall clock jumps 3 days while the server is down; the ticker closes it once."""
    fake_now = [time.time_ns() // 1000]
    monkeypatch.setattr(WallClock, "stamp", lambda self, state_now: max(state_now, fake_now[0]))
    data_dir = tmp_path / "data"
    config = make_config(data_dir)
    async with TestClient(TestServer(create_app(config))) as client:
        venue = Venue(client)
        issuer = await venue.issuer()
        a, b = await venue.investor(1_000), await venue.investor(1_000)
        deadline = format_time_us(fake_now[0] + 2 * DAY * 1_000_000)
        _, body = await venue.call("POST", "/v1/projects", issuer, {
            "board": "product", "title": "lamp", "deadline": deadline,
            "terms": {"goal": 300, "tiers": [{"tier_id": "t", "price": 100}]}}, expect=201)
        pid = body["project_id"]
        await venue.call("POST", f"/v1/projects/{pid}/approve", OPERATOR, expect=200)
        await venue.subscribe(a, pid, 1, tier_id="t")
        await venue.subscribe(b, pid, 2, tier_id="t")
    fake_now[0] += 3 * DAY * 1_000_000
    async with TestClient(TestServer(create_app(config))) as client:
        venue = Venue(client)
        for _ in range(200):  # the ticker sends a Tick every 0.25 s once a deadline is due
            if venue.offerings.projects[pid].status != "open":
                break
            await asyncio.sleep(0.05)
        project = await venue.project(pid)
        assert project["status"] == "succeeded" and project["closed"] == deadline
        # raised 300, fee 15, net 285: 199 released, 86 held.
        assert (await venue.me(issuer))["cash_available"] == 199
        payments = _count(venue.machine, mv.SUBSCRIPTION_PAYMENT)
        assert payments == 2
        live_hash = venue.machine.state_hash()
    async with TestClient(TestServer(create_app(config))) as client:
        venue = Venue(client)
        await asyncio.sleep(0.3)
        assert _count(venue.machine, mv.SUBSCRIPTION_PAYMENT) == 2
        assert (await venue.me(issuer))["cash_available"] == 199
        check_conservation(venue.machine, venue.offerings)
    replayed = replay_from_empty(data_dir)
    assert _count(replayed, mv.SUBSCRIPTION_PAYMENT) == 2
    offerings = next(c for c in replayed.components if c.name == "offerings")
    assert offerings.projects[pid].status == "succeeded"
    assert replayed.state_hash() == live_hash  # the journal alone reproduces the close


def _count(machine, kind: int) -> int:
    return int((machine.movements.table.live()["kind"] == kind).sum())
