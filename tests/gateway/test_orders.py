"""Orders through the gateway on a real trading instrument: every type, refusal and read."""

from __future__ import annotations

import pytest

from tests.boards.conftest import OPERATOR
from tests.gateway.markets import PRICE


async def order(venue, who, expect=None, **body):
    status, payload = await venue.call("POST", "/v1/orders", who, body, expect=expect)
    return payload


async def test_limit_orders_match_at_the_resting_price_in_time_priority(market):
    venue, inst, (s1, s2), buyer = market
    a = await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit",
                    price=11_00, quantity=50, client_order_id="a")
    assert a["status"] == "open" and a["remaining_quantity"] == 50 and a["fills"] == []
    b = await order(venue, s2, 201, instrument_id=inst, side="sell", type="limit",
                    price=11_00, quantity=50)
    book = (await venue.call("GET", f"/v1/instruments/{inst}/book", None, expect=200))[1]
    assert book["asks"] == [[11_00, 100]] and book["bids"] == []
    taker = await order(venue, buyer, 201, instrument_id=inst, side="buy", type="limit",
                        price=12_00, quantity=70)
    assert taker["status"] == "filled" and taker["filled_quantity"] == 70
    assert [(f["price"], f["quantity"]) for f in taker["fills"]] == [(11_00, 50), (11_00, 20)]
    first = (await venue.call("GET", f"/v1/orders/{a['order_id']}", s1, expect=200))[1]
    second = (await venue.call("GET", f"/v1/orders/{b['order_id']}", s2, expect=200))[1]
    assert first["status"] == "filled"
    assert second["status"] == "partially_filled" and second["remaining_quantity"] == 30
    # The buyer paid the resting price: 70 x 11.00 with nothing left reserved.
    me = await venue.me(buyer)
    assert me["cash_available"] == 100_000_00 - 70 * 11_00 and me["cash_reserved"] == 0
    assert me["holdings"] == [{"instrument_id": inst, "quantity_available": 70,
                               "quantity_reserved": 0}]
    # The seller pays 100 bps of each fill, half up.
    seller = await venue.me(s1)
    fee = (50 * 11_00 * 100 + 5000) // 10000
    assert seller["cash_available"] == 10_000_00 - 300 * PRICE + 50 * 11_00 - fee
    trades = (await venue.call("GET", f"/v1/instruments/{inst}/trades", None, expect=200))[1]
    assert [(t["price"], t["quantity"], t["taker_side"]) for t in trades] == [
        (11_00, 20, "buy"), (11_00, 50, "buy")]


async def test_market_ioc_fok_post_only(market):
    venue, inst, (s1, s2), buyer = market
    await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit", price=10_00,
                quantity=10)
    ioc = await order(venue, buyer, 201, instrument_id=inst, side="buy", type="limit",
                      price=10_00, quantity=15, time_in_force="ioc")
    assert ioc["status"] == "cancelled" and ioc["filled_quantity"] == 10
    assert ioc["remaining_quantity"] == 0
    status, code = await venue.error("POST", "/v1/orders", buyer, {
        "instrument_id": inst, "side": "buy", "type": "limit", "price": 10_00,
        "quantity": 5, "time_in_force": "fok"})
    assert (status, code) == (422, "fok_not_fillable")
    await order(venue, s2, 201, instrument_id=inst, side="sell", type="limit", price=10_50,
                quantity=5)
    status, code = await venue.error("POST", "/v1/orders", buyer, {
        "instrument_id": inst, "side": "buy", "type": "limit", "price": 10_50,
        "quantity": 1, "post_only": True})
    assert (status, code) == (422, "post_only_would_cross")
    market_buy = await order(venue, buyer, 201, instrument_id=inst, side="buy",
                             type="market", quantity=8)
    assert market_buy["status"] == "cancelled" and market_buy["filled_quantity"] == 5
    me = await venue.me(buyer)
    assert me["cash_reserved"] == 0


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"side": "buy", "type": "limit", "quantity": 1}, 400, "missing_field"),
    ({"side": "buy", "type": "market", "price": 5, "quantity": 1}, 400, "invalid_field"),
    ({"side": "buy", "type": "market", "quantity": 1, "post_only": True}, 400, "invalid_field"),
    ({"side": "hold", "type": "limit", "price": 1, "quantity": 1}, 400, "invalid_field"),
    ({"side": "buy", "type": "limit", "price": 1.5, "quantity": 1}, 400, "invalid_field"),
    ({"side": "buy", "type": "limit", "price": 1, "quantity": 0}, 400, "invalid_field"),
    ({"side": "buy", "type": "limit", "price": 1, "quantity": 1, "x": 1}, 400,
     "unknown_field"),
    ({"side": "buy", "type": "limit", "price": 50_01, "quantity": 1}, 422,
     "price_out_of_band"),
    ({"side": "buy", "type": "limit", "price": 50_00, "quantity": 10_000}, 422,
     "insufficient_funds"),
    ({"side": "sell", "type": "limit", "price": 10_00, "quantity": 1}, 422,
     "insufficient_holdings"),
])
async def test_order_refusals(market, body, status, code):
    venue, inst, _, buyer = market
    assert await venue.error("POST", "/v1/orders", buyer,
                             {"instrument_id": inst, **body}) == (status, code)


async def test_unknown_instrument_and_roles(market):
    venue, inst, (s1, _), buyer = market
    body = {"instrument_id": 999, "side": "buy", "type": "limit", "price": 1, "quantity": 1}
    assert await venue.error("POST", "/v1/orders", buyer, body) == (404, "instrument_not_found")
    body["instrument_id"] = inst
    assert await venue.error("POST", "/v1/orders", OPERATOR, body) == (403, "forbidden")
    assert await venue.error("POST", "/v1/orders", {}, body) == (401, "unauthorized")


@pytest.mark.parametrize("query", [
    "depth=0", "depth=1001", "depth=-1", "depth=1.5", "depth=",
    # Unicode digits pass str.isdigit() but not int(), and int() refuses more than 4300
    # digits: both were 500s.
    "depth=²", "depth=①", "depth=１０", "depth=" + "9" * 4301,
], ids=lambda query: query if len(query) < 20 else query[:12] + "...")
async def test_bad_query_integers_are_400(market, query):
    venue, inst, *_ = market
    status, code = await venue.error("GET", f"/v1/instruments/{inst}/book?{query}", None)
    assert (status, code) == (400, "invalid_field")
    status, code = await venue.error("GET", f"/v1/instruments/{inst}/trades?"
                                     + query.replace("depth", "limit"), None)
    assert (status, code) == (400, "invalid_field")


async def test_investors_cannot_see_or_cancel_each_others_orders(market):
    venue, inst, (s1, s2), _ = market
    mine = await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit",
                       price=20_00, quantity=5, client_order_id="x1")
    assert await venue.error("GET", f"/v1/orders/{mine['order_id']}", s2) == (
        404, "order_not_found")
    assert await venue.error("DELETE", f"/v1/orders/{mine['order_id']}", s2) == (
        404, "order_not_found")
    assert (await venue.call("GET", "/v1/orders?status=open", s2, expect=200))[1] == []
    dup = await venue.error("POST", "/v1/orders", s1, {
        "instrument_id": inst, "side": "sell", "type": "limit", "price": 20_00,
        "quantity": 1, "client_order_id": "x1"})
    assert dup == (409, "duplicate_client_order_id")
    cancelled = (await venue.call("DELETE", f"/v1/orders/{mine['order_id']}", s1,
                                  expect=200))[1]
    assert cancelled["status"] == "cancelled"
    assert (await venue.me(s1))["holdings"][0]["quantity_reserved"] == 0
    assert await venue.error("DELETE", f"/v1/orders/{mine['order_id']}", s1) == (
        409, "order_not_open")


async def test_self_trade_prevention_decrement_and_cancel_oldest(market):
    venue, inst, (s1, _), _ = market
    resting = await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit",
                          price=11_00, quantity=10)
    # Decrement: both orders shrink by the overlap (4); nothing trades, no fee is charged.
    taker = await order(venue, s1, 201, instrument_id=inst, side="buy", type="limit",
                        price=11_00, quantity=4, self_trade_prevention="decrement")
    assert taker["status"] == "cancelled" and taker["filled_quantity"] == 0
    assert taker["remaining_quantity"] == 0 and taker["fills"] == []
    still = (await venue.call("GET", f"/v1/orders/{resting['order_id']}", s1, expect=200))[1]
    assert still["status"] == "open" and still["remaining_quantity"] == 6
    open_ids = [o["order_id"] for o in
                (await venue.call("GET", "/v1/orders?status=open", s1, expect=200))[1]]
    assert open_ids == [resting["order_id"]]
    book = (await venue.call("GET", f"/v1/instruments/{inst}/book", None, expect=200))[1]
    assert book["asks"] == [[11_00, 6]] and book["bids"] == []
    me = await venue.me(s1)
    assert me["holdings"] == [{"instrument_id": inst, "quantity_available": 294,
                               "quantity_reserved": 6}]
    assert me["cash_reserved"] == 0
    # Cancel oldest: the resting sell goes, the new buy rests in its place.
    buy = await order(venue, s1, 201, instrument_id=inst, side="buy", type="limit",
                      price=11_00, quantity=2, self_trade_prevention="cancel_oldest")
    assert buy["status"] == "open" and buy["remaining_quantity"] == 2
    gone = (await venue.call("GET", f"/v1/orders/{resting['order_id']}", s1, expect=200))[1]
    assert gone["status"] == "cancelled" and gone["remaining_quantity"] == 0
    book = (await venue.call("GET", f"/v1/instruments/{inst}/book", None, expect=200))[1]
    assert book["asks"] == [] and book["bids"] == [[11_00, 2]]


async def test_a_high_priced_instrument_trades_at_its_price(tmp_path):
    """50,000 yuan a share: 5x is 25,000,000 fen, a band no one dense ladder covers. Orders
    near the price trade; one so far below it that the book cannot reach is 422 price_too_far
    (in the band, so not price_out_of_band); one above 5x is still price_out_of_band."""
    from tests.gateway.markets import trading_venue

    price = 5_000_000
    async with trading_venue(tmp_path, price) as (venue, inst, (seller, _), buyer):
        ask = await order(venue, seller, 201, instrument_id=inst, side="sell", type="limit",
                          price=price + 1, quantity=2)
        assert ask["status"] == "open"
        bought = await order(venue, buyer, 201, instrument_id=inst, side="buy", type="limit",
                             price=price + 1, quantity=1)
        assert bought["status"] == "filled" and bought["fills"][0]["price"] == price + 1
        assert await venue.error("POST", "/v1/orders", buyer, {
            "instrument_id": inst, "side": "buy", "type": "limit", "price": 1_000,
            "quantity": 1}) == (422, "price_too_far")
        assert await venue.error("POST", "/v1/orders", buyer, {
            "instrument_id": inst, "side": "buy", "type": "limit", "price": 5 * (price + 1) + 1,
            "quantity": 1}) == (422, "price_out_of_band")
        book = (await venue.call("GET", f"/v1/instruments/{inst}/book", None, expect=200))[1]
        assert book["asks"] == [[price + 1, 1]] and book["bids"] == []
