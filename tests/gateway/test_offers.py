"""The cn2015 bulletin board (/v1/offers): post, accept, cancel, reservations, the seller fee,
the holder limit, T+5 across a weekend, eligibility, lock-ups and the intl refusal.

Every request goes through ``Venue.call``, which checks cash and unit conservation after it.
The venue starts on Thursday 2026-01-01 (manual clock); offerings close at once, so allocated
units become sellable on Thursday 2026-01-08 at 00:00 UTC.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer

from engine import movements as mv
from engine.clock import parse_time_us
from engine.kernels.layout import C_NEXT_TRADE
from engine.machine import StateMachine
from engine.offers import sellable_from_us
from gateway.app import create_app
from tests.boards.conftest import DAY, OPERATOR, Venue, manual_config

PRICE = 10_00  # the offering price, fen per share
FEE_BPS = 100


def fee(notional: int) -> int:
    return (notional * FEE_BPS + 5000) // 10000


@asynccontextmanager
async def board_venue(tmp_path, profile: str = "cn2015", lockup_days: int = 0,
                      holdings: tuple[int, ...] = (300, 300)):
    """Yields (venue, instrument, holders, buyer): each holder was allocated its units of an
    equity offering closed at the start; the buyer is a qualified investor with cash."""
    config = manual_config(tmp_path / "data", profile=profile)
    async with TestClient(TestServer(create_app(config))) as client:
        venue = Venue(client)
        issuer = await venue.issuer()
        project = await venue.listed(issuer, "equity", {
            "price": PRICE, "min_quantity": 1, "max_quantity": 100_000,
            "lockup_days": lockup_days}, 30)
        holders = []
        for quantity in holdings:
            holder = await venue.investor(cash=quantity * PRICE + 10_000_00,
                                          investor_class="qualified")
            await venue.subscribe(holder, project, quantity)
            holders.append(holder)
        await venue.call("POST", f"/v1/projects/{project}/close", OPERATOR, expect=200)
        buyer = await venue.investor(cash=100_000_00, investor_class="institutional")
        yield venue, project, holders, buyer


@pytest.fixture
async def cn_market(tmp_path):
    async with board_venue(tmp_path) as market:
        yield market


async def post(venue, who, instrument, side, price, quantity, expect=201) -> dict:
    _, body = await venue.call("POST", "/v1/offers", who, {
        "instrument_id": instrument, "side": side, "price": price, "quantity": quantity},
        expect=expect)
    return body


async def accept(venue, who, offer_id, quantity, expect=200) -> dict:
    _, body = await venue.call("POST", f"/v1/offers/{offer_id}/accept", who,
                               {"quantity": quantity}, expect=expect)
    return body


async def holding(venue, who, instrument) -> tuple[int, int]:
    me = await venue.me(who)
    for row in me["holdings"]:
        if row["instrument_id"] == instrument:
            return row["quantity_available"], row["quantity_reserved"]
    return 0, 0


def cash(venue, account_id: int) -> tuple[int, int, int]:
    row = venue.machine.balances.accounts.rows[account_id]
    return int(row["cash_available"]), int(row["cash_reserved"]), int(row["cash_unsettled"])


def last_movements(venue, count: int) -> list[tuple[int, int, int, int, int]]:
    rows = venue.machine.movements.table.live()[-count:]
    return [(int(r["kind"]), int(r["debit_account"]), int(r["credit_account"]),
             int(r["asset"]), int(r["amount"])) for r in rows]


async def test_sell_offer_reserves_units_and_an_accept_trades_with_the_seller_fee(cn_market):
    venue, inst, (seller, _), buyer = cn_market
    await venue.advance(7 * DAY)
    offer = await post(venue, seller, inst, "sell", 11_00, 100)
    assert {k: offer[k] for k in ("instrument_id", "side", "price", "quantity", "remaining",
                                  "status")} == {
        "instrument_id": inst, "side": "sell", "price": 11_00, "quantity": 100,
        "remaining": 100, "status": "open"}
    assert await holding(venue, seller, inst) == (200, 100)
    seller_cash = cash(venue, seller["account_id"])
    fees = cash(venue, venue.machine.fee_account_id)  # the offering's success fee so far

    listed = (await venue.call("GET", f"/v1/offers?instrument_id={inst}", buyer, expect=200))[1]
    assert [(o["offer_id"], o["mine"]) for o in listed] == [(offer["offer_id"], False)]
    own = (await venue.call("GET", f"/v1/offers?instrument_id={inst}", seller, expect=200))[1]
    assert [(o["offer_id"], o["mine"]) for o in own] == [(offer["offer_id"], True)]
    by_operator = (await venue.call("GET", "/v1/offers", OPERATOR, expect=200))[1]
    assert by_operator == [{**o, "mine": False} for o in listed]

    trade = await accept(venue, buyer, offer["offer_id"], 40)
    assert trade == {"trade_id": trade["trade_id"], "offer_id": offer["offer_id"],
                     "price": 11_00, "quantity": 40, "remaining": 60, "status": "open"}
    notional = 40 * 11_00
    assert await holding(venue, buyer, inst) == (40, 0)
    assert await holding(venue, seller, inst) == (200, 60)
    assert cash(venue, buyer["account_id"]) == (100_000_00 - notional, 0, 0)
    # The proceeds, net of the fee taken out of them, are unsettled (rules 4).
    net = notional - fee(notional)
    assert cash(venue, seller["account_id"]) == (
        seller_cash[0] + net, 0, seller_cash[2] + net)
    assert cash(venue, venue.machine.fee_account_id) == (
        fees[0] + fee(notional), 0, fees[2] + fee(notional))
    s, b, f = seller["account_id"], buyer["account_id"], venue.machine.fee_account_id
    assert last_movements(venue, 3) == [
        (mv.TRADE_CASH, b, s, mv.CASH, notional), (mv.TRADE_UNITS, s, b, inst, 40),
        (mv.TRADE_FEE, s, f, mv.CASH, fee(notional))]
    me = await venue.me(seller)
    assert me["cash_withdrawable"] == me["cash_available"] - seller_cash[2] - net
    # The trade is on the instrument's tape and candles like a matched one (the acceptor took).
    tape = (await venue.call("GET", f"/v1/instruments/{inst}/trades", None, expect=200))[1]
    assert [(t["trade_id"], t["price"], t["quantity"], t["taker_side"]) for t in tape] == [
        (trade["trade_id"], 11_00, 40, "buy")]
    candles = (await venue.call("GET", f"/v1/instruments/{inst}/candles?interval=1d", None,
                                expect=200))[1]
    assert [(c["open"], c["close"], c["volume"]) for c in candles] == [(11_00, 11_00, 40)]

    assert await venue.error("POST", f"/v1/offers/{offer['offer_id']}/accept", buyer,
                             {"quantity": 61}) == (422, "exceeds_remaining")
    cancelled = (await venue.call("DELETE", f"/v1/offers/{offer['offer_id']}", seller,
                                  expect=200))[1]
    assert cancelled["status"] == "cancelled" and cancelled["remaining"] == 0
    assert cancelled["filled_quantity"] == 40
    assert await holding(venue, seller, inst) == (260, 0)
    assert (await venue.call("GET", "/v1/offers", buyer, expect=200))[1] == []
    assert await venue.error("DELETE", f"/v1/offers/{offer['offer_id']}", seller) == (
        409, "offer_not_open")
    assert await venue.error("POST", f"/v1/offers/{offer['offer_id']}/accept", buyer,
                             {"quantity": 1}) == (409, "offer_not_open")


async def test_buy_offer_reserves_cash_and_is_filled_by_a_holder(cn_market):
    venue, inst, (s1, s2), buyer = cn_market
    await venue.advance(7 * DAY)
    offer = await post(venue, buyer, inst, "buy", 10_50, 50)
    assert cash(venue, buyer["account_id"]) == (100_000_00 - 50 * 10_50, 50 * 10_50, 0)
    assert await venue.error("DELETE", f"/v1/offers/{offer['offer_id']}", s1) == (
        404, "offer_not_found")
    first = await accept(venue, s1, offer["offer_id"], 20)
    second = await accept(venue, s2, offer["offer_id"], 30)
    assert second["trade_id"] == first["trade_id"] + 1
    assert (second["remaining"], second["status"]) == (0, "filled")
    assert cash(venue, buyer["account_id"]) == (100_000_00 - 50 * 10_50, 0, 0)
    assert await holding(venue, buyer, inst) == (50, 0)
    assert await holding(venue, s2, inst) == (270, 0)
    got = (await venue.call("GET", f"/v1/offers/{offer['offer_id']}", buyer, expect=200))[1]
    assert (got["status"], got["filled_quantity"]) == ("filled", 50)
    # Trade ids share the order book's counter.
    markets = venue.machine.component("markets")
    assert int(markets.engine.counters[C_NEXT_TRADE]) == second["trade_id"] + 1
    tape = (await venue.call("GET", f"/v1/instruments/{inst}/trades", None, expect=200))[1]
    assert [(t["trade_id"], t["quantity"], t["taker_side"]) for t in tape] == [
        (second["trade_id"], 30, "sell"), (first["trade_id"], 20, "sell")]  # newest first


async def test_cancelling_a_buy_offer_releases_the_rest_of_its_cash(cn_market):
    venue, inst, (s1, _), buyer = cn_market
    await venue.advance(7 * DAY)
    offer = await post(venue, buyer, inst, "buy", 12_00, 10)
    await accept(venue, s1, offer["offer_id"], 4)
    assert cash(venue, buyer["account_id"])[1] == 6 * 12_00
    await venue.call("DELETE", f"/v1/offers/{offer['offer_id']}", buyer, expect=200)
    assert cash(venue, buyer["account_id"]) == (100_000_00 - 4 * 12_00, 0, 0)


async def test_self_accept_and_funds_and_holdings_refusals(cn_market):
    venue, inst, (s1, s2), buyer = cn_market
    await venue.advance(7 * DAY)
    own = await post(venue, s1, inst, "sell", 10_00, 10)
    assert await venue.error("POST", f"/v1/offers/{own['offer_id']}/accept", s1,
                             {"quantity": 1}) == (422, "not_permitted")
    body = {"instrument_id": inst, "side": "sell", "price": 10_00, "quantity": 291}
    assert await venue.error("POST", "/v1/offers", s1, body) == (422, "insufficient_holdings")
    body = {"instrument_id": inst, "side": "buy", "price": 10_00, "quantity": 10_001}
    assert await venue.error("POST", "/v1/offers", buyer, body) == (422, "insufficient_funds")
    big = await post(venue, s2, inst, "sell", 1000_00, 300)
    assert await venue.error("POST", f"/v1/offers/{big['offer_id']}/accept", buyer,
                             {"quantity": 101}) == (422, "insufficient_funds")
    bid = await post(venue, buyer, inst, "buy", 10_00, 300)
    assert await venue.error("POST", f"/v1/offers/{bid['offer_id']}/accept", s1,
                             {"quantity": 291}) == (422, "insufficient_holdings")
    assert await venue.error("POST", "/v1/offers/999/accept", buyer, {"quantity": 1}) == (
        404, "offer_not_found")
    body = {"instrument_id": 999, "side": "buy", "price": 1, "quantity": 1}
    assert await venue.error("POST", "/v1/offers", buyer, body) == (404, "instrument_not_found")


@pytest.mark.parametrize(("acquired", "sellable"), [
    ("2026-01-01T00:00:00Z", "2026-01-08T00:00:00Z"),  # Thursday
    ("2026-01-02T15:30:00Z", "2026-01-09T00:00:00Z"),  # Friday: across the weekend
    ("2026-01-03T09:00:00Z", "2026-01-09T00:00:00Z"),  # Saturday
    ("2026-01-04T23:59:59Z", "2026-01-09T00:00:00Z"),  # Sunday
    ("2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z"),  # Monday
    ("2026-01-07T12:00:00Z", "2026-01-14T00:00:00Z"),  # Wednesday
])
def test_t5_counts_weekdays_after_the_day_of_acquisition(acquired, sellable):
    assert sellable_from_us(parse_time_us(acquired)) == parse_time_us(sellable)


async def test_t5_holding_period_across_a_weekend(cn_market):
    venue, inst, (s1, s2), buyer = cn_market
    # Allocated on Thursday 2026-01-01: sellable from Thursday 2026-01-08 00:00.
    body = {"instrument_id": inst, "side": "sell", "price": 10_00, "quantity": 1}
    assert await venue.error("POST", "/v1/offers", s1, body) == (422, "holding_period")
    await venue.advance(7 * DAY - 1)
    assert await venue.error("POST", "/v1/offers", s1, body) == (422, "holding_period")
    await venue.advance(1)
    ask = await post(venue, s1, inst, "sell", 10_00, 100)
    # The buyer buys on Friday 2026-01-09: sellable on Friday 2026-01-16, not five calendar
    # days later.
    await venue.advance(DAY)
    await accept(venue, buyer, ask["offer_id"], 50)
    bid = await post(venue, s2, inst, "buy", 10_00, 100)
    body = {"instrument_id": inst, "side": "sell", "price": 10_00, "quantity": 1}
    await venue.advance(5 * DAY)  # Wednesday
    assert await venue.error("POST", "/v1/offers", buyer, body) == (422, "holding_period")
    await venue.advance(2 * DAY - 1)  # Thursday 23:59:59
    assert await venue.error("POST", "/v1/offers", buyer, body) == (422, "holding_period")
    assert await venue.error("POST", f"/v1/offers/{bid['offer_id']}/accept", buyer,
                             {"quantity": 1}) == (422, "holding_period")
    await venue.advance(1)  # Friday 00:00
    await accept(venue, buyer, ask["offer_id"], 10)  # bought now: young until next Friday
    assert await venue.error("POST", f"/v1/offers/{bid['offer_id']}/accept", buyer,
                             {"quantity": 51}) == (422, "holding_period")
    body["quantity"] = 61
    assert await venue.error("POST", "/v1/offers", buyer, body) == (
        422, "insufficient_holdings")
    await accept(venue, buyer, bid["offer_id"], 20)
    await post(venue, buyer, inst, "sell", 10_00, 30)
    assert await holding(venue, buyer, inst) == (10, 30)


async def test_a_201st_holder_is_refused(tmp_path):
    async with board_venue(tmp_path, holdings=(3,) + (1,) * 199) as (venue, inst, holders,
                                                                     outsider):
        assert len(venue.offerings.holders(inst)) == 200
        await venue.advance(7 * DAY)
        big, small = holders[0], holders[1]
        ask = await post(venue, big, inst, "sell", 10_00, 1)
        # big keeps 2 units: the outsider would be the 201st holder.
        assert await venue.error("POST", f"/v1/offers/{ask['offer_id']}/accept", outsider,
                                 {"quantity": 1}) == (422, "holder_limit")
        # small sells its only unit: the outsider replaces it, 200 holders still.
        whole = await post(venue, small, inst, "sell", 10_00, 1)
        await accept(venue, outsider, whole["offer_id"], 1)
        assert len(venue.offerings.holders(inst)) == 200
        # A holder may buy more: nobody new.
        await accept(venue, outsider, ask["offer_id"], 1)
        # A buy offer from a non-holder taken by a holder who keeps units is refused too.
        newcomer = await venue.investor(cash=10_000_00, investor_class="qualified")
        bid = await post(venue, newcomer, inst, "buy", 10_00, 1)
        assert await venue.error("POST", f"/v1/offers/{bid['offer_id']}/accept", outsider,
                                 {"quantity": 1}) == (422, "holder_limit")
        await accept(venue, holders[2], bid["offer_id"], 1)
        assert len(venue.offerings.holders(inst)) == 200


async def test_eligibility_roles_and_authentication(cn_market):
    venue, inst, _, buyer = cn_market
    await venue.advance(7 * DAY)
    retail = await venue.investor(cash=1_000_00)
    issuer = await venue.issuer()
    body = {"instrument_id": inst, "side": "buy", "price": 1_00, "quantity": 1}
    assert await venue.error("POST", "/v1/offers", retail, body) == (403, "not_eligible")
    assert await venue.error("GET", "/v1/offers", retail) == (403, "not_eligible")
    assert await venue.error("POST", "/v1/offers", issuer, body) == (403, "forbidden")
    assert await venue.error("GET", "/v1/offers", issuer) == (403, "forbidden")
    assert await venue.error("POST", "/v1/offers", OPERATOR, body) == (403, "forbidden")
    assert await venue.error("POST", "/v1/offers", None, body) == (401, "unauthorized")
    offer = await post(venue, buyer, inst, "buy", 1_00, 1)
    assert await venue.error("POST", f"/v1/offers/{offer['offer_id']}/accept", retail,
                             {"quantity": 1}) == (403, "not_eligible")
    # 404 for an instrument comes after 403.
    assert await venue.error("GET", "/v1/offers?instrument_id=999", retail) == (
        403, "not_eligible")
    assert await venue.error("GET", "/v1/offers?instrument_id=999", buyer) == (
        404, "instrument_not_found")


@pytest.mark.parametrize(("body", "code"), [
    ({"side": "buy", "price": 1, "quantity": 1}, "missing_field"),
    ({"instrument_id": 1, "side": "hold", "price": 1, "quantity": 1}, "invalid_field"),
    ({"instrument_id": 1, "side": "buy", "price": 1.0, "quantity": 1}, "invalid_field"),
    ({"instrument_id": 1, "side": "buy", "price": 1, "quantity": 0}, "invalid_field"),
    ({"instrument_id": 1, "side": "buy", "price": 1, "quantity": -3}, "invalid_field"),
    ({"instrument_id": 1, "side": "buy", "price": None, "quantity": 1}, "invalid_field"),
    ({"instrument_id": 1, "side": "buy", "price": 2**53 + 1, "quantity": 1}, "invalid_field"),
    ({"instrument_id": 1, "side": "buy", "price": 2**40, "quantity": 2**20}, "invalid_field"),
    ({"instrument_id": 1, "side": "buy", "price": 1, "quantity": 1, "x": 1}, "unknown_field"),
    ([1, 2], "invalid_field"),
])
async def test_bad_bodies_are_400_before_authentication(cn_market, body, code):
    venue = cn_market[0]
    assert await venue.error("POST", "/v1/offers", None, body) == (400, code)


async def test_bad_paths_and_queries_are_400(cn_market):
    venue, _, _, buyer = cn_market
    assert await venue.error("POST", "/v1/offers/0/accept", buyer, {"quantity": 1}) == (
        400, "invalid_field")
    assert await venue.error("POST", "/v1/offers/1/accept", buyer, {"quantity": 1.5}) == (
        400, "invalid_field")
    assert await venue.error("POST", "/v1/offers/1/accept", buyer, {}) == (
        400, "missing_field")
    assert await venue.error("DELETE", "/v1/offers/abc", buyer) == (400, "invalid_field")
    assert await venue.error("GET", "/v1/offers?instrument_id=x", buyer) == (
        400, "invalid_field")
    response = await venue.client.post("/v1/offers/1/accept", data=b"{", headers=buyer[
        "headers"])
    assert response.status == 400
    assert (await response.json())["error"]["code"] == "invalid_json"


async def test_locked_up_instruments_take_no_offers(tmp_path):
    async with board_venue(tmp_path, lockup_days=30) as (venue, inst, (seller, _), buyer):
        await venue.advance(7 * DAY)
        for who, side in ((seller, "sell"), (buyer, "buy")):
            body = {"instrument_id": inst, "side": side, "price": 10_00, "quantity": 1}
            assert await venue.error("POST", "/v1/offers", who, body) == (422, "locked_up")
        await venue.advance(23 * DAY)
        assert (await venue.project(inst))["status"] == "trading"
        offer = await post(venue, seller, inst, "sell", 10_00, 1)
        await accept(venue, buyer, offer["offer_id"], 1)


async def test_intl_has_no_bulletin_board(tmp_path):
    async with board_venue(tmp_path, profile="intl") as (venue, inst, (seller, _), buyer):
        await venue.advance(7 * DAY)
        body = {"instrument_id": inst, "side": "sell", "price": 10_00, "quantity": 1}
        assert await venue.error("POST", "/v1/offers", seller, body) == (422, "not_permitted")
        assert await venue.error("GET", "/v1/offers", buyer) == (422, "not_permitted")
        assert await venue.error("GET", f"/v1/offers?instrument_id={inst}", OPERATOR) == (
            422, "not_permitted")
        assert await holding(venue, seller, inst) == (300, 0)


async def test_matching_is_refused_under_cn2015(cn_market):
    venue, inst, (seller, _), _ = cn_market
    await venue.advance(7 * DAY)
    assert await venue.error("POST", "/v1/orders", seller, {
        "instrument_id": inst, "side": "sell", "type": "limit", "price": 10_00,
        "quantity": 1}) == (422, "matching_not_permitted")


async def test_offers_survive_a_snapshot_round_trip(cn_market):
    venue, inst, (s1, s2), buyer = cn_market
    await venue.advance(7 * DAY)
    ask = await post(venue, s1, inst, "sell", 10_00, 100)
    await accept(venue, buyer, ask["offer_id"], 30)
    await post(venue, buyer, inst, "buy", 9_00, 10)
    machine = venue.machine
    copy = StateMachine()
    copy.load(machine.arrays(), machine.meta())
    assert copy.state_hash() == machine.state_hash()
    offers = copy.component("offers")
    assert [o.offer_id for o in offers.open_offers(inst)] == [ask["offer_id"], 2]
    assert offers.young_units(buyer["account_id"], inst) == 30
