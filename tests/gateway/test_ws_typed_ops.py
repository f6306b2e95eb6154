"""Orders and cancels decoded straight into their structs (``Hub.register_typed_op``) are
answered exactly as the general path (decode to a dict, then convert) answers them."""

from __future__ import annotations

import aiohttp
import msgspec

from gateway import keys
from tests.gateway.markets import PRICE, trading_venue


def _frames(instrument: int) -> list[str | bytes]:
    """Well-formed and malformed order and cancel frames, and a few other ops between."""
    order = {"instrument_id": instrument, "side": "buy", "type": "limit", "price": PRICE,
             "quantity": 1}

    def text(fields: dict) -> str:
        return msgspec.json.encode(fields).decode()

    frames: list[str | bytes] = [
        text({"op": "order", "request_id": 1, **order}),
        text({**order, "request_id": "last", "op": "order"}),  # the tag after the fields
        text({"op": "order", "request_id": 2, **order, "client_order_id": "c-1",
              "time_in_force": "ioc", "post_only": False,
              "self_trade_prevention": "decrement"}),
        text({"op": "order", **order}),  # no request_id
        text({"op": "order", "request_id": None, **order}),
        text({"op": "order", "request_id": 1.5, **order}),
        text({"op": "order", "request_id": [1, {"a": True}], **order}),
        text({"op": "order", "request_id": 2**64 + 5, **order}),
        text({"op": "order", "request_id": -(2**63) - 1, **order}),
        text({"op": "order", "request_id": 3, **order, "side": "sell", "type": "market",
              "price": None}),  # the buyer holds no shares: the engine refuses it
        text({"op": "order", "request_id": 4, **order, "price": None}),
        text({"op": "order", "request_id": 5, **order, "type": "market"}),
        text({"op": "order", "request_id": 6, **order, "type": "market", "price": None,
              "post_only": True}),
        text({"op": "order", "request_id": 7, **order, "quantity": 0}),
        text({"op": "order", "request_id": 8, **order, "quantity": -1}),
        text({"op": "order", "request_id": 9, **order, "quantity": 1.0}),
        text({"op": "order", "request_id": 10, **order, "quantity": True}),
        text({"op": "order", "request_id": 11, **order, "price": str(PRICE)}),
        text({"op": "order", "request_id": 12, **order, "x": 1}),  # an unknown field
        text({"op": "order", "request_id": 13, **order, "side": "hold"}),
        text({"op": "order", "request_id": 14, **order, "instrument_id": 0}),
        text({"op": "order", "request_id": 15, **order, "instrument_id": 999}),
        text({"op": "order", "request_id": 16, "instrument_id": instrument, "type": "limit",
              "price": PRICE, "quantity": 1}),  # no side
        text({"op": "order", "request_id": 17, **order, "quantity": 2**64}),
        # client_order_ids: a NUL anywhere, empty, the longest and one past it.
        text({"op": "order", "request_id": 23, **order, "client_order_id": "a\u0000b"}),
        text({"op": "order", "request_id": 24, **order, "client_order_id": "\u0000"}),
        text({"op": "order", "request_id": 25, **order, "client_order_id": ""}),
        text({"op": "order", "request_id": 26, **order, "client_order_id": "k" * 64}),
        text({"op": "order", "request_id": 27, **order, "client_order_id": "k" * 65}),
        text({"op": "order", "request_id": 28, **order, "client_order_id": "é\u00e9"}),
        msgspec.msgpack.encode({"op": "order", "request_id": 29, **order,
                                "client_order_id": "x\x00"}),
        # Duplicate keys: the last one counts on the general path.
        f'{{"op": "order", "request_id": 18, "instrument_id": {instrument}, "side": "buy", '
        f'"type": "limit", "price": -1, "price": {PRICE}, "quantity": 1}}',
        f'{{"op": "order", "request_id": 19, "instrument_id": {instrument}, "side": "buy", '
        f'"type": "limit", "price": {PRICE}, "price": -1, "quantity": 1}}',
        '{"op": "order", "op": "ping", "request_id": 20}',
        '{"op": "ping", "op": "cancel", "request_id": 21, "order_id": 1}',
        '{"op": "order", "op": "cancel", "request_id": 22, "order_id": 1}',
        text({"op": "cancel", "request_id": 30, "order_id": 1}),  # a seller's: not the buyer's
        text({"op": "cancel", "request_id": 31, "order_id": 999_999}),
        text({"op": "cancel", "request_id": 32, "order_id": 0}),
        text({"op": "cancel", "request_id": 33, "order_id": -1}),
        text({"op": "cancel", "request_id": 34, "order_id": 1.5}),
        text({"op": "cancel", "request_id": 35, "order_id": True}),
        text({"op": "cancel", "request_id": 36, "order_id": "5"}),
        text({"op": "cancel", "request_id": 37}),
        text({"op": "cancel", "request_id": 38, "order_id": 10**30}),
        text({"op": "cancel", "request_id": 39, "order_id": 2, "extra": [1]}),
        text({"op": "cancel", "request_id": [40], "order_id": 3}),
        text({"op": "amend", "request_id": 41, "order_id": 2, "quantity": 1}),
        text({"op": "ping", "request_id": 42}),
        text({"op": "Order", "request_id": 43, **order}),
        "[1, 2]",
        "{not json",
        # Binary frames are msgpack, whatever the socket's format.
        msgspec.msgpack.encode({"op": "order", "request_id": 50, **order}),
        msgspec.msgpack.encode({"op": "order", "request_id": 51, **order, "quantity": -1}),
        msgspec.msgpack.encode({"op": "cancel", "request_id": 52, "order_id": 3}),
        msgspec.msgpack.encode({"op": "order", "request_id": msgspec.msgpack.Ext(1, b"x"),
                                **order}),
        b"\x81\xa2op\xa5order",  # a truncated map
    ]
    # The buyer's own orders (numbered alike on both venues) cancelled at the end.
    frames += [text({"op": "cancel", "request_id": 60 + n, "order_id": n})
               for n in range(1, 12)]
    return frames


async def _answers(tmp_path, typed: bool) -> tuple[list, int]:
    """Every reply to the frames on a fresh venue, and how many frames took the typed way."""
    async with trading_venue(tmp_path) as (venue, instrument, _sellers, buyer):
        hub = venue.client.app[keys.HUB]
        taken = 0

        def counted(handler):
            def run(request, account, message):
                nonlocal taken
                taken += 1
                return handler(request, account, message)
            return run

        if typed:
            for schema, handler in list(hub.typed_ops.items()):
                hub.register_typed_op(schema, counted(handler))
        else:
            hub.typed_ops.clear()
        frames = _frames(instrument)
        replies = []
        async with venue.client.ws_connect("/v1/ws", headers=buyer["headers"]) as ws:
            for frame in frames:
                await (ws.send_bytes(frame) if isinstance(frame, bytes) else
                       ws.send_str(frame))
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                replies.append(msgspec.json.decode(msg.data))
        return replies, taken


async def test_typed_orders_and_cancels_are_answered_as_the_general_path_answers(tmp_path):
    typed, taken = await _answers(tmp_path / "typed", typed=True)
    general, none = await _answers(tmp_path / "general", typed=False)
    assert none == 0
    assert [r.get("type") for r in typed] == [r.get("type") for r in general]
    assert typed == general
    # Both kinds of replies came back, and most orders and cancels went the typed way.
    kinds = {r["type"] for r in typed}
    assert {"order_ack", "cancel_ack", "error", "pong"} <= kinds
    assert taken >= 20
    # And the answers are the API's (API.md): a few pinned by request_id.
    by_id = {str(r.get("request_id")): r for r in typed}
    assert by_id["1"]["type"] == "order_ack" and by_id["1"]["order"]["status"] == "open"
    assert by_id["2"]["order"]["client_order_id"] == "c-1"
    for request_id, code in (("4", "missing_field"), ("5", "invalid_field"),
                             ("6", "invalid_field"), ("7", "invalid_field"),
                             ("12", "unknown_field"), ("32", "invalid_field"),
                             ("35", "invalid_field")):
        assert (by_id[request_id]["type"], by_id[request_id]["code"]) == ("error", code)
