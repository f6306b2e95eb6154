"""The WebSocket API: auth, subscriptions, order entry, gap-free books, slow consumers."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import msgspec
import pytest

from gateway import hub as hub_module
from gateway import keys
from gateway import ws as ws_module
from tests.boards.conftest import OPERATOR


def key_of(who: dict) -> str:
    return who["headers"]["Authorization"].split(" ", 1)[1]


async def next_json(ws, timeout: float = 5.0) -> dict:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msgspec.json.decode(msg.data)


async def test_bad_key_in_upgrade_header_is_http_401(market):
    venue, *_ = market
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await venue.client.ws_connect("/v1/ws", headers={"Authorization": "Bearer nope"})
    assert refused.value.status == 401


async def test_bad_key_in_auth_message_errors_then_closes(market):
    venue, *_ = market
    async with venue.client.ws_connect("/v1/ws") as ws:
        await ws.send_json({"op": "auth", "api_key": "nope"})
        reply = await next_json(ws)
        assert reply["type"] == "error" and reply["code"] == "unauthorized"
        msg = await ws.receive(timeout=5)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_anonymous_orders_subscribe_is_refused_but_socket_stays_open(market):
    venue, inst, *_ = market
    async with venue.client.ws_connect("/v1/ws") as ws:
        await ws.send_json({"op": "subscribe", "channels": ["orders"]})
        reply = await next_json(ws)
        assert reply["type"] == "error" and reply["code"] == "unauthorized"
        await ws.send_json({"op": "subscribe", "channels": [f"book:{inst}"]})
        assert (await next_json(ws))["type"] == "subscribed"
        snapshot = await next_json(ws)
        assert snapshot["type"] == "snapshot" and snapshot["channel"] == f"book:{inst}"


@pytest.mark.parametrize("message", [
    {"op": "subscribe", "channels": ["book:999"]},
    {"op": "subscribe", "channels": ["candles:1"]},
    {"op": "subscribe", "channels": "book:1"},
    {"op": "subscribe", "channels": ["book:abc"]},
    {"op": "dance"},
    {"op": "order", "request_id": 1, "instrument_id": 1, "side": "buy"},
])
async def test_bad_messages_get_error_replies(market, message):
    venue, *_ = market
    async with venue.client.ws_connect("/v1/ws") as ws:
        await ws.send_json(message)
        reply = await next_json(ws)
        assert reply["type"] == "error" and reply["code"]
        await ws.send_str("{not json")
        assert (await next_json(ws))["code"] == "invalid_json"


JSON_SOCKET, MSGPACK_SOCKET = "/v1/ws", "/v1/ws?format=msgpack"


@pytest.mark.parametrize(("url", "frame", "request_id", "code"), [
    # An unhashable op: a TypeError that ended the connection's handler.
    (JSON_SOCKET, '{"op": {}, "request_id": 7}', 7, "invalid_field"),
    (JSON_SOCKET, '{"op": ["order"]}', None, "invalid_field"),
    # A request_id the reply cannot carry back killed the writer: the socket went silent.
    (JSON_SOCKET, msgspec.msgpack.encode({"op": "ping",
                                          "request_id": msgspec.msgpack.Ext(1, b"x")}),
     None, "invalid_field"),
    (MSGPACK_SOCKET, '{"op": "ping", "request_id": 1180591620717411303424}', None,
     "invalid_field"),
    # msgpack with a string that is not UTF-8: UnicodeDecodeError, not msgspec's DecodeError.
    (JSON_SOCKET, b"\x81\xa2op\xa4\x00\x00\x00\x80", None, "invalid_json"),
    # "²".isdigit() is true, int("²") fails.
    (JSON_SOCKET, '{"op": "subscribe", "channels": ["book:²"]}', None, "invalid_field"),
    (JSON_SOCKET, '{"op": "unsubscribe", "channels": 5}', None, "invalid_field"),
    # A message of exactly MESSAGE_SIZE_MAX bytes is read (aiohttp's cap is exclusive).
    (JSON_SOCKET, "x" * ws_module.MESSAGE_SIZE_MAX, None, "invalid_json"),
], ids=["op-object", "op-list", "ext-request-id", "huge-request-id", "bad-utf8", "unicode-digit",
        "unsubscribe-junk", "at-size-cap"])
async def test_messages_that_dropped_the_socket_get_errors_and_it_stays_open(
        market, url, frame, request_id, code):
    venue, *_ = market
    binary = url == MSGPACK_SOCKET

    async def receive() -> dict:
        msg = await ws.receive(timeout=5)
        assert msg.type == (aiohttp.WSMsgType.BINARY if binary else aiohttp.WSMsgType.TEXT), msg
        return msgspec.msgpack.decode(msg.data) if binary else msgspec.json.decode(msg.data)

    async with venue.client.ws_connect(url) as ws:
        await (ws.send_bytes(frame) if isinstance(frame, bytes) else ws.send_str(frame))
        reply = await receive()
        assert reply["type"] == "error" and reply["code"] == code, reply
        assert reply["request_id"] == request_id, reply
        await ws.send_str('{"op": "ping", "request_id": "after"}')
        assert await receive() == {"type": "pong", "request_id": "after"}
    assert (await venue.client.get("/healthz")).status == 200


async def test_order_and_cancel_over_the_socket_with_acks_and_order_updates(market):
    venue, inst, (seller, _), buyer = market
    async with venue.client.ws_connect("/v1/ws", headers=seller["headers"]) as ws:
        await ws.send_json({"op": "subscribe", "channels": ["orders"]})
        assert (await next_json(ws))["type"] == "subscribed"
        snapshot = await next_json(ws)
        assert snapshot["channel"] == "orders" and snapshot["data"] == []
        await ws.send_json({"op": "order", "request_id": "r1", "instrument_id": inst,
                            "side": "sell", "type": "limit", "price": 12_00, "quantity": 5})
        got = [await next_json(ws), await next_json(ws)]
        ack = next(m for m in got if m.get("type") == "order_ack")
        update = next(m for m in got if m.get("channel") == "orders")
        assert ack["request_id"] == "r1" and ack["order"]["status"] == "open"
        assert update["sequence"] == snapshot["sequence"] + 1
        await ws.send_json({"op": "order", "request_id": "r2", "instrument_id": inst,
                            "side": "sell", "type": "limit", "price": 1_000_00, "quantity": 5})
        refused = await next_json(ws)
        assert refused == {"type": "error", "request_id": "r2", "code": "price_out_of_band",
                           "message": refused["message"]}
        await ws.send_json({"op": "cancel", "request_id": "c1",
                            "order_id": ack["order"]["order_id"]})
        got = [await next_json(ws), await next_json(ws)]
        cancel = next(m for m in got if m.get("type") == "cancel_ack")
        assert cancel["order"]["status"] == "cancelled" and cancel["request_id"] == "c1"


async def test_pipelined_orders_beyond_the_in_flight_cap_are_all_answered_in_order(
        market, monkeypatch):
    """The reader stops taking messages while INFLIGHT_MAX orders await their acks, and goes
    on as they are answered. What reaches the engine is answered in the order sent; a message
    refused before it (a missing field) is answered at once."""
    venue, inst, (seller, _), _buyer = market
    monkeypatch.setattr(ws_module, "INFLIGHT_MAX", 2)
    sent = []
    async with venue.client.ws_connect("/v1/ws", headers=seller["headers"]) as ws:
        for n in range(40):
            if n % 10 == 3:
                message = {"op": "cancel", "request_id": n, "order_id": 999_999}
            elif n % 10 == 7:
                message = {"op": "order", "request_id": n, "instrument_id": inst}  # no side
            else:
                message = {"op": "order", "request_id": n, "instrument_id": inst,
                           "side": "sell", "type": "limit", "price": 20_00 + n, "quantity": 1}
            sent.append(message)
            await ws.send_json(message)
        replies = [await next_json(ws) for _ in sent]
    engine_answered = [r["request_id"] for r in replies if r.get("code") != "missing_field"]
    assert engine_answered == [n for n in range(40) if n % 10 != 7]
    for reply in replies:
        n = reply["request_id"]
        if n % 10 == 3:
            assert reply["code"] == "order_not_found"
        elif n % 10 == 7:
            assert reply["code"] == "missing_field"
        else:
            assert reply["type"] == "order_ack" and reply["order"]["price"] == 20_00 + n
    _, listed = await venue.call("GET", "/v1/orders?status=open", seller, expect=200)
    assert len(listed) == 32


def _order_ids_by_request(replies: list[dict]) -> list:
    """The request ids of order acks, in the order the engine numbered their orders."""
    acks = [r for r in replies if r["type"] == "order_ack"]
    return [r["request_id"] for r in sorted(acks, key=lambda r: r["order"]["order_id"])]


def _client_frame(payload: bytes) -> bytes:
    """A final, masked text frame (RFC 6455), as a client sends it."""
    mask = bytes(random.randrange(256) for _ in range(4))
    size = len(payload)
    header = bytes((0x81, 0x80 | size)) if size < 126 else bytes((0x81, 0x80 | 126)) + \
        size.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def _raw_socket(venue, headers: dict) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket opened by hand on a plain TCP connection, so a test controls how frames
    are cut into writes."""
    server = venue.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    lines = ["GET /v1/ws HTTP/1.1", f"Host: {server.host}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def _server_message(reader: asyncio.StreamReader) -> dict:
    """The next text frame the server sends (unmasked, unfragmented), decoded."""
    first, size = await asyncio.wait_for(reader.readexactly(2), 5)
    assert first == 0x81, first
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return msgspec.json.decode(await reader.readexactly(size))


async def test_a_cancel_parsed_behind_a_queued_amend_waits_its_turn(market):
    """Orders and cancels are taken as their frames are parsed (ws._InlineQueue) only when
    nothing received before them is still queued. Here one write carries an amend (the
    general path's: queued for the reader) and a cancel of the same order behind it: the
    cancel must reach the engine after the amend, which would otherwise find it cancelled."""
    venue, inst, (seller, _), _buyer = market
    reader, writer = await _raw_socket(venue, seller["headers"])
    try:
        for n in range(5):
            writer.write(_client_frame(msgspec.json.encode({
                "op": "order", "request_id": f"o{n}", "instrument_id": inst, "side": "sell",
                "type": "limit", "price": 20_00, "quantity": 3})))
            placed = await _server_message(reader)
            assert placed["type"] == "order_ack", placed
            order_id = placed["order"]["order_id"]
            writer.write(_client_frame(msgspec.json.encode({
                "op": "amend", "request_id": f"a{n}", "order_id": order_id, "quantity": 2})) +
                _client_frame(msgspec.json.encode({
                    "op": "cancel", "request_id": f"c{n}", "order_id": order_id})))
            replies = {r["request_id"]: r for r in
                       [await _server_message(reader), await _server_message(reader)]}
            assert replies[f"a{n}"]["type"] != "error", replies
            cancelled = replies[f"c{n}"]
            assert cancelled["type"] == "cancel_ack", replies
            assert cancelled["order"]["quantity"] == 2, replies
    finally:
        writer.close()


async def test_orders_parsed_at_the_in_flight_cap_wait_for_room(market, monkeypatch):
    """A write of many orders: those parsed while INFLIGHT_MAX are in flight are not taken
    as they are parsed but wait, queued, for room; never more than INFLIGHT_MAX reach the
    engine unanswered, and all are answered in the order sent."""
    venue, inst, (seller, _), _buyer = market
    monkeypatch.setattr(ws_module, "INFLIGHT_MAX", 2)
    engine = venue.client.app[keys.ENGINE]
    submit = engine.submit_nowait
    outstanding = most = 0

    def counted(command, actor, callback):
        nonlocal outstanding, most

        def answered(outcome):
            nonlocal outstanding
            outstanding -= 1
            callback(outcome)

        submit(command, actor, answered)
        outstanding += 1
        most = max(most, outstanding)

    monkeypatch.setattr(engine, "submit_nowait", counted)
    reader, writer = await _raw_socket(venue, seller["headers"])
    try:
        writer.write(b"".join(_client_frame(msgspec.json.encode({
            "op": "order", "request_id": n, "instrument_id": inst, "side": "sell",
            "type": "limit", "price": 20_00, "quantity": 1})) for n in range(30)))
        replies = [await _server_message(reader) for _ in range(30)]
    finally:
        writer.close()
    assert [r["request_id"] for r in replies] == list(range(30))
    assert {r["type"] for r in replies} == {"order_ack"}
    assert most == 2
    # The first two were taken as parsed: the inline way is in place with this aiohttp.
    assert venue.client.app[keys.HUB].messages_inline >= 2


def test_the_inline_queue_takes_a_message_only_with_nothing_before_it():
    """ws._InlineQueue's rules, each alone: no taker yet, the reader busy with a message it
    read, a message already queued, the taker declining: queued; otherwise taken, unqueued."""
    from aiohttp import WSMessage, WSMsgType

    loop = asyncio.new_event_loop()
    try:
        queue = ws_module._InlineQueue(None, 1 << 16, loop=loop)
        offered = []

        def take(message) -> bool:
            offered.append(message.data)
            return message.data != "declined"

        def feed(data: str) -> None:
            queue.feed_data(WSMessage(WSMsgType.TEXT, data, None), len(data))

        feed("before a taker")
        assert len(queue._buffer) == 1 and offered == []
        queue.take = take
        feed("behind a queued one")
        assert len(queue._buffer) == 2 and offered == []
        queue._buffer.clear()
        queue.busy = True
        feed("while the reader is busy")
        assert len(queue._buffer) == 1 and offered == []
        queue._buffer.clear()
        queue.busy = False
        feed("declined")
        assert len(queue._buffer) == 1 and offered == ["declined"]
        queue._buffer.clear()
        feed("taken")
        assert len(queue._buffer) == 0 and offered == ["declined", "taken"]
    finally:
        loop.close()


async def test_orders_in_flight_when_the_client_leaves_still_take_effect(market):
    venue, inst, (seller, _), _buyer = market
    async with venue.client.ws_connect("/v1/ws", headers=seller["headers"]) as ws:
        for n in range(50):
            await ws.send_json({"op": "order", "request_id": n, "instrument_id": inst,
                                "side": "sell", "type": "limit", "price": 30_00, "quantity": 1})
    # Closed without reading a single ack: each order was submitted, so each is on the book.
    for _ in range(100):
        _, listed = await venue.call("GET", "/v1/orders?status=open", seller, expect=200)
        if len(listed) == 50:
            break
        await asyncio.sleep(0.05)
    assert len(listed) == 50


def apply_changes(book: dict, changes: list) -> None:
    for side, price, qty in changes:
        levels = book["bids" if side == "buy" else "asks"]
        levels.pop(price, None)
        if qty:
            levels[price] = qty


async def test_snapshot_plus_updates_rebuild_the_exact_book_over_a_random_session(market):
    venue, inst, sellers, buyer = market
    traders = [*sellers, buyer]
    rng = random.Random(2026)
    open_orders: list[tuple[dict, int]] = []
    async with venue.client.ws_connect("/v1/ws") as ws:
        await ws.send_json({"op": "subscribe", "channels": [f"book:{inst}",
                                                           f"trades:{inst}"]})
        assert (await next_json(ws))["type"] == "subscribed"
        book = {"bids": {}, "asks": {}}
        sequences = {}
        for _ in range(2):
            snap = await next_json(ws)
            sequences[snap["channel"]] = snap["sequence"]
            if snap["channel"].startswith("book:"):
                book["bids"] = dict(map(tuple, snap["data"]["bids"]))
                book["asks"] = dict(map(tuple, snap["data"]["asks"]))
        for _ in range(250):
            who = rng.choice(traders)
            if open_orders and rng.random() < 0.25:
                owner, oid = open_orders.pop(rng.randrange(len(open_orders)))
                await venue.client.delete(f"/v1/orders/{oid}", headers=owner["headers"])
                continue
            side = "buy" if who is buyer or rng.random() < 0.3 else "sell"
            response = await venue.client.post("/v1/orders", headers=who["headers"], json={
                "instrument_id": inst, "side": side, "type": "limit",
                "price": rng.randint(9_50, 10_50), "quantity": rng.randint(1, 4)})
            if response.status == 201:
                placed = await response.json()
                if placed["status"] in ("open", "partially_filled"):
                    open_orders.append((who, placed["order_id"]))
        rest = await venue.client.get(f"/v1/instruments/{inst}/book?depth=1000")
        final = await rest.json()
        while sequences[f"book:{inst}"] < final["sequence"]:
            update = await next_json(ws)
            channel = update["channel"]
            assert update["sequence"] == sequences[channel] + 1, "gap in a channel's sequence"
            sequences[channel] = update["sequence"]
            if channel.startswith("book:"):
                apply_changes(book, update["data"]["changes"])
    assert sorted(book["bids"].items(), reverse=True) == [tuple(x) for x in final["bids"]]
    assert sorted(book["asks"].items()) == [tuple(x) for x in final["asks"]]
    assert final["sequence"] > 100


async def test_a_batchs_updates_are_written_as_the_batch_ends(market):
    """The engine's batch ends with ``Hub.publish_all``: what it queued for connections whose
    writers are idle is written to their sockets right there (``Hub.flush``), in the same
    turn of the loop, not left for each writer's task; and it arrives whole and in order."""
    venue, inst, (seller, _), _buyer = market
    hub = venue.client.app[keys.HUB]
    async with venue.client.ws_connect("/v1/ws", headers=seller["headers"]) as ws:
        await ws.send_json({"op": "subscribe", "channels": [f"trades:{inst}"]})
        assert (await next_json(ws))["type"] == "subscribed"
        assert (await next_json(ws))["type"] == "snapshot"
        (conn,) = hub.subscribers[f"trades:{inst}"]
        assert conn.wakeup is not None and not conn.wakeup.done()  # its writer is idle
        events = [(f"trades:{inst}", {"n": n}, None) for n in range(3)]
        hub.publish_all(events)
        assert not conn.outgoing  # written already, before this test yields to the loop
        assert not conn.wakeup.done()  # and the writer was not woken for it
        updates = [await next_json(ws) for _ in events]
    assert [u["data"] for u in updates] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [u["sequence"] for u in updates] == sorted({u["sequence"] for u in updates})


async def test_slow_consumer_is_disconnected_with_a_reason(market, monkeypatch):
    venue, inst, *_ = market
    monkeypatch.setattr(hub_module, "SEND_QUEUE_MAX", 3)
    async with venue.client.ws_connect("/v1/ws") as ws:
        await ws.send_json({"op": "subscribe", "channels": [f"trades:{inst}"]})
        assert (await next_json(ws))["type"] == "subscribed"
        await next_json(ws)  # the snapshot
        hub = venue.client.server.app[keys.HUB]
        for n in range(10):  # a burst the client cannot have read: the queue overflows
            hub.publish(f"trades:{inst}", {"n": n})
        closed = None
        for _ in range(20):
            msg = await ws.receive(timeout=5)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                closed = msg
                break
        assert closed is not None and closed.data == ws_module.CLOSE_SLOW_CONSUMER
        assert closed.extra == "slow_consumer"


async def test_msgpack_frames(market):
    venue, inst, *_ = market
    async with venue.client.ws_connect("/v1/ws?format=msgpack") as ws:
        await ws.send_bytes(msgspec.msgpack.encode({"op": "subscribe",
                                                    "channels": [f"book:{inst}"]}))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.BINARY
        assert msgspec.msgpack.decode(msg.data)["type"] == "subscribed"


@pytest.mark.parametrize("binary", [False, True])
async def test_frames_of_every_header_size_reach_the_client_whole(market, binary):
    """The writer's frame headers (a 2-byte one to 125 bytes, a 4-byte one to 65,535, built
    ahead for the commonest sizes, an 8-byte one past): pongs that echo request_ids of
    lengths that put the reply on each side of each boundary arrive whole, in order."""
    venue, *_ = market
    encode = msgspec.msgpack.encode if binary else msgspec.json.encode

    def id_for(size: int) -> str:  # msgpack's string header grows with the string
        length = size
        while len(encode({"type": "pong", "request_id": "x" * length})) > size:
            length -= 1
        return "x" * length

    sizes = [125, 126, 127, ws_module._HEADERS_BUILT - 1, ws_module._HEADERS_BUILT,
             65_535, 65_536, 65_537]
    ids = [id_for(size) for size in sizes]
    assert [len(encode({"type": "pong", "request_id": i})) for i in ids] == sizes
    path = "/v1/ws?format=msgpack" if binary else "/v1/ws"
    async with venue.client.ws_connect(path, max_msg_size=1 << 20) as ws:
        for request_id in ids:  # all queued before the first is written: one write of all
            message = {"op": "ping", "request_id": request_id}
            if binary:
                await ws.send_bytes(msgspec.msgpack.encode(message))
            else:
                await ws.send_str(msgspec.json.encode(message).decode())
        for request_id, size in zip(ids, sizes, strict=True):
            msg = await ws.receive(timeout=5)
            assert msg.type == (aiohttp.WSMsgType.BINARY if binary else aiohttp.WSMsgType.TEXT)
            assert len(msg.data) == size
            decode = msgspec.msgpack.decode if binary else msgspec.json.decode
            assert decode(msg.data) == {"type": "pong", "request_id": request_id}


async def test_operator_uncross_is_refused_for_book_instruments(market):
    venue, inst, *_ = market
    status, code = await venue.error("POST", f"/v1/instruments/{inst}/auction", OPERATOR)
    assert (status, code) == (422, "not_permitted")


@pytest.mark.parametrize("cap", ["CONNECTIONS_PER_PEER_MAX", "CONNECTIONS_MAX"])
async def test_open_sockets_are_capped_with_429_and_freed_on_close(market, monkeypatch, cap):
    """Each socket holds a descriptor: past the cap an upgrade is 429 rate_limited with
    Retry-After, and a closed socket frees its place."""
    venue, *_ = market
    monkeypatch.setattr(hub_module, cap, 2)
    hub = venue.client.server.app[keys.HUB]
    first = await venue.client.ws_connect("/v1/ws")
    second = await venue.client.ws_connect("/v1/ws")
    assert hub.connections == 2
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await venue.client.ws_connect("/v1/ws")
    assert refused.value.status == 429
    assert refused.value.headers["Retry-After"] == hub_module.CONNECTIONS_RETRY_AFTER_S
    response = await venue.client.get("/v1/ws", headers={
        "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert response.status == 429
    assert (await response.json())["error"]["code"] == "rate_limited"
    await first.close()
    for _ in range(100):  # the server notices the close on its next read
        if hub.connections < 2:
            break
        await asyncio.sleep(0.01)
    third = await venue.client.ws_connect("/v1/ws")
    await third.send_json({"op": "ping", "request_id": 1})
    assert (await next_json(third))["type"] == "pong"
    await second.close()
    await third.close()
    for _ in range(100):
        if not hub.connections:
            break
        await asyncio.sleep(0.01)
    assert hub.connections == 0 and hub.connections_by_peer == {}


@pytest.mark.parametrize("order_id", [2**53 + 1, 2**63, 2**64 - 1, 2**64, 10**30])
async def test_a_cancel_of_an_id_past_the_api_range_is_refused_and_the_venue_stays_up(
        market, order_id):
    """An order_id no order can have (API ids stay within 2^53): refused at the edge. An id
    past 64 bits once reached the journal's encoder and stopped the engine for every client."""
    venue, inst, _sellers, buyer = market
    async with venue.client.ws_connect("/v1/ws", headers=buyer["headers"]) as ws:
        await ws.send_str(f'{{"op": "cancel", "request_id": 1, "order_id": {order_id}}}')
        reply = await next_json(ws)
        assert (reply["type"], reply["code"], reply["request_id"]) == (
            "error", "invalid_field", 1), reply
        await ws.send_json({"op": "order", "request_id": 2, "instrument_id": inst,
                            "side": "buy", "type": "limit", "price": 10_00, "quantity": 1})
        assert (await next_json(ws))["type"] == "order_ack"
    assert (await venue.client.get("/healthz")).status == 200


async def _frames_until(ws, seconds: float) -> list[aiohttp.WSMsgType]:
    """The types of the frames that come within ``seconds`` (a close ends it)."""
    kinds = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        kinds.append(msg.type)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                        aiohttp.WSMsgType.CLOSING):
            break
    return kinds


async def test_heartbeat_pings_a_quiet_client_and_closes_one_that_does_not_answer(
        market, monkeypatch):
    """The server pings a connection ``HEARTBEAT_S`` after the last data it read from it, and
    closes it when no pong comes in half that; whatever the client sends postpones the ping
    (``_OrderSocket._on_data_received`` moves its deadline)."""
    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 1.0)
    venue, *_ = market
    async with venue.client.ws_connect("/v1/ws", autoping=False) as ws:
        # Talking every 0.1 s for 2.5 s: never quiet for a heartbeat, so no ping.
        seen = []
        for _ in range(25):
            await ws.send_json({"op": "dance"})
            seen += await _frames_until(ws, 0.1)
        assert aiohttp.WSMsgType.PING not in seen
        assert seen.count(aiohttp.WSMsgType.TEXT) == 25  # each answered (unknown op)
        # Quiet: a ping within the heartbeat, then the close for want of a pong.
        quiet = await _frames_until(ws, 3.0)
        assert quiet[0] == aiohttp.WSMsgType.PING, quiet
        assert quiet[-1] in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                             aiohttp.WSMsgType.CLOSING), quiet


async def test_heartbeat_keeps_a_client_that_answers(market, monkeypatch):
    """A pong sets the ping timer again: a quiet client that answers is pinged once a
    heartbeat and kept."""
    monkeypatch.setattr(ws_module, "HEARTBEAT_S", 0.5)
    venue, *_ = market
    async with venue.client.ws_connect("/v1/ws", autoping=False) as ws:
        pings = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.6
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await ws.receive(timeout=left)
            except TimeoutError:
                break
            assert msg.type == aiohttp.WSMsgType.PING, msg
            pings += 1
            await ws.pong(msg.data)
        assert 3 <= pings <= 6
        await ws.send_json({"op": "dance"})
        assert (await next_json(ws))["type"] == "error"
