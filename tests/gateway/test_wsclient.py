"""The load generator's own WebSocket client (bench.wsclient) against a real aiohttp server on
loopback, and its frame reader over every way TCP can cut the server's bytes."""

from __future__ import annotations

import asyncio
import struct

import pytest
from aiohttp import WSMsgType, web
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import wsclient


def _unmask(frame: bytes) -> tuple[int, bytes, bytes]:
    """The opcode, mask key and payload of one client frame, read as a server does."""
    assert frame[0] & 0x80, "final frame"
    assert frame[1] & 0x80, "client frames are masked"
    length, at = frame[1] & 0x7F, 2
    if length == 126:
        length, at = struct.unpack_from("!H", frame, 2)[0], 4
    elif length == 127:
        length, at = struct.unpack_from("!Q", frame, 2)[0], 10
    key, body = frame[at:at + 4], frame[at + 4:]
    assert len(body) == length
    return frame[0] & 0x0F, key, bytes(b ^ key[i % 4] for i, b in enumerate(body))


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_a_masked_frame_unmasks_to_its_payload_at_every_length_form(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    opcode, key, body = _unmask(wsclient.masked_frame(payload))
    assert (opcode, body) == (1, payload)
    # A fresh key per frame (RFC 6455 5.3); two equal keys in a row: odds of 1 in 2**32.
    assert _unmask(wsclient.masked_frame(payload))[1] != key


def _server_frame(opcode: int, payload: bytes, final: bool = True) -> bytes:
    length = len(payload)
    first = (0x80 if final else 0) | opcode
    if length < 126:
        return bytes((first, length)) + payload
    if length < 65536:
        return bytes((first, 126)) + struct.pack("!H", length) + payload
    return bytes((first, 127)) + struct.pack("!Q", length) + payload


_messages = st.lists(st.tuples(st.binary(max_size=300), st.integers(1, 3)), max_size=8)


@settings(max_examples=200, deadline=None)
@given(messages=_messages, cuts=st.lists(st.integers(0, 5000), max_size=12),
       big=st.booleans())
def test_the_reader_gives_each_message_whole_however_the_bytes_arrive(messages, cuts, big):
    """Messages (some sent in fragments; 16-bit lengths past 125 bytes, a 64-bit one if
    ``big``) read back exactly,
    in order, whichever byte boundaries the stream is cut at."""
    if big:
        messages = [*messages, (b"x" * 70_000, 2)]
    stream = b""
    for payload, pieces in messages:
        step = max(1, len(payload) // pieces + 1)
        parts = [payload[i:i + step] for i in range(0, len(payload), step)] or [b""]
        for index, part in enumerate(parts):
            opcode = 1 if index == 0 else 0  # then continuation frames
            stream += _server_frame(opcode, part, final=index == len(parts) - 1)
    got: list[bytes] = []
    connection = wsclient.Connection.__new__(wsclient.Connection)
    connection.on_message = got.append
    connection._buffer, connection._fragments, connection._handshaken = b"", [], True
    at = 0
    for cut in sorted({c % (len(stream) + 1) for c in cuts}) + [len(stream)]:
        connection.data_received(stream[at:cut])
        at = cut
    assert got == [payload for payload, _ in messages]
    assert connection._buffer == b""


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"ws://127.0.0.1:{port}/ws"


async def test_messages_both_ways_a_ping_answered_and_a_clean_close() -> None:
    seen: dict[str, object] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        seen["authorization"] = request.headers.get("Authorization")
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        await ws.ping(b"are you there")
        received = []
        async for msg in ws:
            if msg.type == WSMsgType.PONG:
                seen["pong"] = msg.data
            elif msg.type == WSMsgType.TEXT:
                received.append(msg.data)
                await ws.send_str("echo " + msg.data)
                await ws.send_bytes(b"\x00binary")
        seen["received"], seen["close_code"] = received, ws.close_code
        return ws

    runner, url = await _serve(handler)
    try:
        got: list[bytes] = []
        connection = await wsclient.connect(url, {"Authorization": "Bearer k"}, got.append)
        for text in ("one", "two", "é" * 200):
            connection.send(text.encode())
        for _ in range(100):
            if len(got) == 6:
                break
            await asyncio.sleep(0.02)
        await connection.close()
        assert connection.closed.done()
    finally:
        await runner.cleanup()
    assert got == [b"echo one", b"\x00binary", b"echo two", b"\x00binary",
                   ("echo " + "é" * 200).encode(), b"\x00binary"]
    assert seen == {"authorization": "Bearer k", "pong": b"are you there",
                    "received": ["one", "two", "é" * 200], "close_code": 1000}


async def test_a_refused_upgrade_is_an_error_not_a_hang() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"error": {"code": "unauthorized"}}, status=401)

    runner, url = await _serve(handler)
    try:
        with pytest.raises(wsclient.WebSocketError, match="401"):
            await asyncio.wait_for(wsclient.connect(url, {}, lambda raw: None), 5)
    finally:
        await runner.cleanup()


async def test_an_upgrade_answered_with_the_wrong_accept_key_is_refused() -> None:
    """A 101 whose Sec-WebSocket-Accept is not derived from our key (RFC 6455 4.1): not a
    WebSocket server that read our request."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHlvdXJzCg==\r\n\r\n")
        await writer.drain()
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(wsclient.WebSocketError, match="Accept"):
            await asyncio.wait_for(
                wsclient.connect(f"ws://127.0.0.1:{port}/ws", {}, lambda raw: None), 5)
    finally:
        server.close()
        await server.wait_closed()


async def test_a_close_from_the_server_is_answered_with_its_code() -> None:
    seen: dict[str, object] = {}

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("bye")
        seen["closed"] = await ws.close(code=4000)
        seen["code"] = ws.close_code  # what the client answered; 1006 if it only hung up
        return ws

    runner, url = await _serve(handler)
    try:
        got: list[bytes] = []
        connection = await wsclient.connect(url, {}, got.append)
        await asyncio.wait_for(asyncio.shield(connection.closed), 5)
    finally:
        await runner.cleanup()
    assert got == [b"bye"]
    assert seen == {"closed": True, "code": 4000}
