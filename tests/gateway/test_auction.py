"""IP instruments trade in call auctions: orders rest, an uncross trades at one price."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import create_app
from tests.boards.conftest import OPERATOR, Venue, manual_config


@pytest.fixture
async def venue(tmp_path):
    async with TestClient(TestServer(create_app(manual_config(tmp_path / "data")))) as c:
        yield Venue(c)


async def _ip_market(venue: Venue):
    issuer = await venue.issuer()
    project = await venue.listed(issuer, "ip", {
        "price": 5_00, "min_quantity": 100, "max_quantity": 1000, "royalty_share_bps": 2000,
        "lockup_days": 0}, 30)
    sellers = [await venue.investor(cash=10_000_00, investor_class="qualified")
               for _ in range(2)]
    for seller in sellers:
        await venue.subscribe(seller, project, 200)
    _, closed = await venue.call("POST", f"/v1/projects/{project}/close", OPERATOR, expect=200)
    assert closed["status"] == "trading"  # lockup_days 0: trading begins at the close
    buyers = [await venue.investor(cash=10_000_00, investor_class="qualified")
              for _ in range(2)]
    return project, sellers, buyers


async def place(venue, who, inst, side, price, quantity):
    _, body = await venue.call("POST", "/v1/orders", who, {
        "instrument_id": inst, "side": side, "type": "limit", "price": price,
        "quantity": quantity}, expect=201)
    return body


async def test_orders_rest_until_the_uncross_then_trade_at_one_price(venue):
    inst, (s1, s2), (b1, b2) = await _ip_market(venue)
    await place(venue, s1, inst, "sell", 5_00, 30)
    await place(venue, s2, inst, "sell", 6_00, 30)
    crossing = await place(venue, b1, inst, "buy", 6_50, 40)
    await place(venue, b2, inst, "buy", 5_50, 10)
    assert crossing["status"] == "open" and crossing["fills"] == []  # no continuous matching
    _, book = await venue.call("GET", f"/v1/instruments/{inst}/book", None, expect=200)
    assert book["bids"] == [[6_50, 40], [5_50, 10]] and book["asks"] == [[5_00, 30], [6_00, 30]]
    # Executable volume by candidate price: 5.00 -> 30, 5.50 -> 30, 6.00 -> 40, 6.50 -> 40.
    # 6.00 and 6.50 tie on volume (40); imbalance: at 6.00 demand 40 vs supply 60 (20), at
    # 6.50 demand 40 vs supply 60 (20); then closest to the reference (the offering 5.00): 6.00.
    _, indicative = await venue.call("GET", f"/v1/instruments/{inst}/auction", None,
                                     expect=200)
    assert indicative == {"instrument_id": inst, "price": 6_00, "quantity": 40}
    _, result = await venue.call("POST", f"/v1/instruments/{inst}/auction", OPERATOR,
                                 expect=200)
    assert result == {"instrument_id": inst, "price": 6_00, "quantity": 40, "trade_count": 2}
    _, trades = await venue.call("GET", f"/v1/instruments/{inst}/trades", None, expect=200)
    assert sorted((t["price"], t["quantity"]) for t in trades) == [(6_00, 10), (6_00, 30)]
    me = await venue.me(b1)
    assert me["holdings"] == [{"instrument_id": inst, "quantity_available": 40,
                               "quantity_reserved": 0}]
    assert me["cash_available"] == 10_000_00 - 40 * 6_00 and me["cash_reserved"] == 0
    _, book = await venue.call("GET", f"/v1/instruments/{inst}/book", None, expect=200)
    assert book["bids"] == [[5_50, 10]] and book["asks"] == [[6_00, 20]]


async def test_auction_needs_an_operator_and_an_ip_instrument(venue):
    inst, (s1, _), _ = await _ip_market(venue)
    assert await venue.error("POST", f"/v1/instruments/{inst}/auction", s1) == (
        403, "forbidden")
    assert await venue.error("POST", "/v1/instruments/999/auction", OPERATOR) == (
        404, "instrument_not_found")
    status, code = await venue.error("POST", "/v1/orders", s1, {
        "instrument_id": inst, "side": "sell", "type": "market", "quantity": 1})
    assert (status, code) == (422, "not_permitted")  # auctions take GTC limit orders only


async def test_uncross_book_updates_rebuild_the_book_at_every_changed_level(venue):
    """Both sides rest at their own limits; an uncross changes levels away from its price."""
    import msgspec

    inst, (s1, s2), (b1, b2) = await _ip_market(venue)
    async with venue.client.ws_connect("/v1/ws") as ws:
        await ws.send_json({"op": "subscribe", "channels": [f"book:{inst}"]})

        async def message() -> dict:
            return msgspec.json.decode((await ws.receive(timeout=5)).data)

        assert (await message())["type"] == "subscribed"
        snapshot = await message()
        book = {"buy": {}, "sell": {}}
        sequence = snapshot["sequence"]
        await place(venue, s1, inst, "sell", 5_00, 30)
        await place(venue, s2, inst, "sell", 6_00, 30)
        await place(venue, b1, inst, "buy", 6_50, 40)
        await place(venue, b2, inst, "buy", 5_50, 10)
        await venue.call("POST", f"/v1/instruments/{inst}/auction", OPERATOR, expect=200)
        _, final = await venue.call("GET", f"/v1/instruments/{inst}/book", None, expect=200)
        while sequence < final["sequence"]:
            update = await message()
            assert update["sequence"] == sequence + 1
            sequence = update["sequence"]
            for side, price, qty in update["data"]["changes"]:
                book[side].pop(price, None)
                if qty:
                    book[side][price] = qty
    # The uncross at 6.00 emptied the 6.50 bid and the 5.00 ask and cut the 6.00 ask to 20.
    assert sorted(book["buy"].items(), reverse=True) == [tuple(x) for x in final["bids"]]
    assert sorted(book["sell"].items()) == [tuple(x) for x in final["asks"]]
    assert final["bids"] == [[5_50, 10]] and final["asks"] == [[6_00, 20]]
