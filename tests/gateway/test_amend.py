"""PATCH /v1/orders/{id} and the WebSocket ``amend`` op (API.md): a lower quantity keeps the
order's place in the queue; a new price or a larger quantity re-enters it at the back of its
level and may trade at once; funds, band and post-only are checked again; a refusal changes
nothing."""

from __future__ import annotations

import pytest

from engine.sequencer import replay_from_empty
from gateway import keys
from tests.gateway.markets import PRICE
from tests.gateway.test_orders import order


async def amend(venue, who, order_id, expect=None, **body):
    return (await venue.call("PATCH", f"/v1/orders/{order_id}", who, body, expect=expect))[1]


async def book(venue, inst) -> dict:
    return (await venue.call("GET", f"/v1/instruments/{inst}/book", None, expect=200))[1]


async def test_a_lower_quantity_keeps_its_place_a_larger_one_goes_to_the_back(market):
    venue, inst, (s1, s2), buyer = market
    a = await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit",
                    price=11_00, quantity=20)
    b = await order(venue, s2, 201, instrument_id=inst, side="sell", type="limit",
                    price=11_00, quantity=20)
    smaller = await amend(venue, s1, a["order_id"], 200, quantity=15)
    assert (smaller["order_id"], smaller["quantity"], smaller["remaining_quantity"],
            smaller["status"]) == (a["order_id"], 15, 15, "open")
    assert (await book(venue, inst))["asks"] == [[11_00, 35]]
    me = await venue.me(s1)
    assert me["holdings"][0]["quantity_reserved"] == 15  # 5 units released
    taker = await order(venue, buyer, 201, instrument_id=inst, side="buy", type="limit",
                        price=11_00, quantity=5)
    first = (await venue.call("GET", f"/v1/orders/{a['order_id']}", s1, expect=200))[1]
    assert first["filled_quantity"] == 5 and taker["fills"][0]["quantity"] == 5  # a first

    larger = await amend(venue, s1, a["order_id"], 200, quantity=30)  # 5 filled, 25 left
    assert (larger["quantity"], larger["filled_quantity"], larger["remaining_quantity"]) == (
        30, 5, 25)
    await order(venue, buyer, 201, instrument_id=inst, side="buy", type="limit",
                price=11_00, quantity=20)
    second = (await venue.call("GET", f"/v1/orders/{b['order_id']}", s2, expect=200))[1]
    assert second["status"] == "filled"  # b went first: a re-entered behind it
    first = (await venue.call("GET", f"/v1/orders/{a['order_id']}", s1, expect=200))[1]
    assert (first["filled_quantity"], first["remaining_quantity"]) == (5, 25)
    assert (await book(venue, inst))["asks"] == [[11_00, 25]]


async def test_a_new_price_that_crosses_trades_at_once(market):
    venue, inst, (s1, _s2), buyer = market
    bid = await order(venue, buyer, 201, instrument_id=inst, side="buy", type="limit",
                      price=10_50, quantity=10)
    ask = await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit",
                      price=11_00, quantity=25)
    crossed = await amend(venue, s1, ask["order_id"], 200, price=10_40)
    assert crossed["price"] == 10_40 and crossed["status"] == "partially_filled"
    assert [(f["price"], f["quantity"]) for f in crossed["fills"]] == [(10_50, 10)]
    assert (await book(venue, inst)) | {"sequence": 0} == {
        "instrument_id": inst, "sequence": 0, "bids": [], "asks": [[10_40, 15]]}
    done = (await venue.call("GET", f"/v1/orders/{bid['order_id']}", buyer, expect=200))[1]
    assert done["status"] == "filled"


async def test_funds_band_post_only_and_quantity_are_checked_and_a_refusal_changes_nothing(
        market):
    venue, inst, (s1, s2), buyer = market
    cash = (await venue.me(buyer))["cash_available"]
    bid = await order(venue, buyer, 201, instrument_id=inst, side="buy", type="limit",
                      price=10_00, quantity=10, post_only=True)
    await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit", price=10_20,
                quantity=5)
    before = await book(venue, inst)
    path = f"/v1/orders/{bid['order_id']}"
    assert await venue.error("PATCH", path, buyer, {"price": 10_30}) == (
        422, "post_only_would_cross")
    assert await venue.error("PATCH", path, buyer, {"price": 5 * PRICE + 1}) == (
        422, "price_out_of_band")
    assert await venue.error("PATCH", path, buyer, {"quantity": cash // 10_00 + 1}) == (
        422, "insufficient_funds")
    assert await venue.error("PATCH", path, buyer, {}) == (400, "invalid_field")
    assert await venue.error("PATCH", path, buyer, {"quantity": 0}) == (400, "invalid_field")
    assert await venue.error("PATCH", path, buyer, {"price": 1.5}) == (400, "invalid_field")
    assert await venue.error("PATCH", path, s2, {"quantity": 5}) == (404, "order_not_found")
    assert await venue.error("PATCH", path, None, {"quantity": 5}) == (401, "unauthorized")
    assert await book(venue, inst) == before
    me = await venue.me(buyer)
    assert (me["cash_available"], me["cash_reserved"]) == (cash - 10 * 10_00, 10 * 10_00)
    # A higher price reserves the difference; filled units cannot be amended away.
    moved = await amend(venue, buyer, bid["order_id"], 200, price=10_10, quantity=12)
    assert (moved["price"], moved["remaining_quantity"]) == (10_10, 12)
    me = await venue.me(buyer)
    assert me["cash_reserved"] == 12 * 10_10
    await order(venue, s2, 201, instrument_id=inst, side="sell", type="limit", price=10_10,
                quantity=4)
    assert await venue.error("PATCH", path, buyer, {"quantity": 4}) == (422, "invalid_amend")
    await venue.call("DELETE", path, buyer, expect=200)
    assert await venue.error("PATCH", path, buyer, {"quantity": 9}) == (409, "order_not_open")


@pytest.mark.one_machine  # replays the data dir's journal
async def test_the_websocket_amend_op_and_a_replay_agree(market):
    venue, inst, (s1, _s2), _buyer = market
    ask = await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit",
                      price=11_00, quantity=20)
    async with venue.client.ws_connect("/v1/ws", headers=s1["headers"]) as ws:
        await ws.send_json({"op": "amend", "request_id": 7, "order_id": ask["order_id"],
                            "quantity": 12})
        ack = await ws.receive_json(timeout=10)
        assert (ack["type"], ack["request_id"], ack["order"]["remaining_quantity"]) == (
            "amend_ack", 7, 12)
        await ws.send_json({"op": "amend", "request_id": 8, "order_id": ask["order_id"],
                            "quantity": 0})
        refused = await ws.receive_json(timeout=10)
        assert (refused["type"], refused["code"]) == ("error", "invalid_field")
    live = venue.machine.state_hash()
    data_dir = venue.client.server.app[keys.CONFIG].data_dir
    assert replay_from_empty(data_dir).state_hash() == live


async def test_an_amend_takes_an_idempotency_key_like_a_post(market):
    """A retry gets the first answer byte for byte; the key with another body is 409 (amends
    are absolute, so a plain retry changes nothing either)."""
    venue, inst, (s1, s2), buyer = market
    a = await order(venue, s1, 201, instrument_id=inst, side="sell", type="limit",
                    price=11_00, quantity=10)
    headers = {**s1["headers"], "Idempotency-Key": "move-a"}
    path = f"/v1/orders/{a['order_id']}"
    first = await venue.client.patch(path, json={"price": 12_00}, headers=headers)
    assert first.status == 200
    await order(venue, s2, 201, instrument_id=inst, side="sell", type="limit", price=12_00,
                quantity=10)
    again = await venue.client.patch(path, json={"price": 12_00}, headers=headers)
    assert again.status == 200 and await again.read() == await first.read()
    other = await venue.client.patch(path, json={"price": 13_00}, headers=headers)
    assert other.status == 409
    assert (await other.json())["error"]["code"] == "idempotency_key_conflict"
    taker = await order(venue, buyer, 201, instrument_id=inst, side="buy", type="limit",
                        price=12_00, quantity=10)
    mine = (await venue.call("GET", path, s1, expect=200))[1]
    assert mine["status"] == "filled" and taker["status"] == "filled"  # a kept its place
