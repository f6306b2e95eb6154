"""A small WebSocket client for the load generator (RFC 6455, client side, text messages).

The load client shares this machine's two cores with the server it measures, so every
microsecond it spends per message is taken from the server or delays the next paced send.
aiohttp's client spent ~27 us of CPU per order at 20k orders/s (a coroutine, a frame writer
and a message object per send; an async iterator and a full JSON decode per reply), more than
half a core. This client writes each request as one ready frame with one ``transport.write``
and hands each reply's bytes to a callback from ``data_received``: the same traffic on the
wire (one masked frame per request, sent when it is due), for about half the CPU.

No extensions (no compression), no subprotocols; the server's frames must be unmasked.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import socket
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_TEXT, _BINARY, _CONTINUATION, _CLOSE, _PING, _PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_HANDSHAKE_LIMIT = 64 * 1024
_U16, _U64 = struct.Struct("!H"), struct.Struct("!Q")


class WebSocketError(Exception):
    """The server refused the upgrade or broke the protocol."""


def masked_frame(payload: bytes, opcode: int = _TEXT) -> bytes:
    """One final client frame of ``payload``, masked with a fresh random key (RFC 6455
    section 5.3: every client frame is masked; the key is not reused)."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + _U16.pack(length)
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + _U64.pack(length)
    key = random.getrandbits(32).to_bytes(4, "little")
    # XOR as one big integer: the key repeated over the payload's length.
    keys = (key * (length // 4 + 1))[:length]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(
        length, "little")
    return header + key + body


class Connection(asyncio.Protocol):
    """One client connection: ``send`` writes a text message, ``on_message`` gets each text or
    binary message the server sends (as bytes), in order."""

    def __init__(self, on_message: Callable[[bytes], None]) -> None:
        self.on_message = on_message
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._expected_accept = b""
        self._handshaken = False
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._close_sent = False

    # ---- sending -----------------------------------------------------------------------

    def send(self, text: bytes) -> None:
        """Send one text message (UTF-8 bytes) as one frame, one write."""
        self.transport.write(masked_frame(text))

    async def close(self, timeout_s: float = 5.0) -> None:
        """Send a close frame and wait for the server's close (or ``timeout_s``)."""
        if self.transport is not None and not self.transport.is_closing():
            self._send_close()
            try:
                await asyncio.wait_for(asyncio.shield(self.closed), timeout_s)
            except TimeoutError:
                pass
            self.transport.close()

    def _send_close(self, code: bytes = _U16.pack(1000)) -> None:
        if not self._close_sent:
            self._close_sent = True
            self.transport.write(masked_frame(code, _CLOSE))

    # ---- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or WebSocketError("the server closed the connection")
        if not self.opened.done():
            self.opened.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        if not self._handshaken:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > _HANDSHAKE_LIMIT:
                    self._fail(WebSocketError("no end to the server's upgrade response"))
                self._buffer = buffer
                return
            try:
                self._check_upgrade(buffer[:end])
            except WebSocketError as error:
                self._fail(error)
                return
            self._handshaken = True
            self.opened.set_result(None)
            buffer = buffer[end + 4:]
        self._buffer = self._frames(buffer)

    # ---- the protocol ------------------------------------------------------------------

    def start(self, host: str, path: str, headers: dict[str, str]) -> None:
        key = base64.b64encode(os.urandom(16))
        self._expected_accept = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest())
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key.decode()}",
                 "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def _check_upgrade(self, head: bytes) -> None:
        status, *header_lines = head.decode("latin-1").split("\r\n")
        parts = status.split(" ", 2)
        if len(parts) < 2 or parts[1] != "101":
            raise WebSocketError(f"the server refused the upgrade: {status}")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("sec-websocket-accept", "").encode() != self._expected_accept:
            raise WebSocketError("the server's Sec-WebSocket-Accept does not match the key")

    def _frames(self, buffer: bytes) -> bytes:
        """Handle every whole frame in ``buffer``; return what is left of a partial one."""
        at, size = 0, len(buffer)
        while size - at >= 2:
            first, second = buffer[at], buffer[at + 1]
            if second & 0x80:
                self._fail(WebSocketError("a masked frame from the server"))
                return b""
            length, start = second & 0x7F, at + 2
            if length == 126:
                if size - start < 2:
                    break
                length, start = _U16.unpack_from(buffer, start)[0], start + 2
            elif length == 127:
                if size - start < 8:
                    break
                length, start = _U64.unpack_from(buffer, start)[0], start + 8
            end = start + length
            if end > size:
                break
            self._frame(first & 0x80, first & 0x0F, buffer[start:end])
            at = end
        return buffer[at:]

    def _frame(self, final: int, opcode: int, payload: bytes) -> None:
        if opcode in (_TEXT, _BINARY, _CONTINUATION):
            if not final:
                self._fragments.append(payload)
                return
            if self._fragments:
                payload = b"".join((*self._fragments, payload))
                self._fragments = []
            self.on_message(payload)
        elif opcode == _PING:
            self.transport.write(masked_frame(payload, _PONG))
        elif opcode == _CLOSE:  # the server's first: answered with its code (RFC 6455 5.5.1)
            self._send_close(payload[:2])
            self.transport.close()
        # _PONG: nothing asked for one

    def _fail(self, error: WebSocketError) -> None:
        if not self.opened.done():
            self.opened.set_exception(error)
        self.transport.close()


async def connect(url: str, headers: dict[str, str],
                  on_message: Callable[[bytes], None]) -> Connection:
    """Open a WebSocket to ``url`` (ws://host:port/path) with ``headers`` on the upgrade."""
    parts = urlsplit(url)
    if parts.scheme != "ws":
        raise ValueError(f"only ws:// URLs: {url}")
    loop = asyncio.get_running_loop()
    _transport, connection = await loop.create_connection(
        lambda: Connection(on_message), parts.hostname, parts.port or 80)
    connection.start(parts.netloc, parts.path or "/", headers)
    await connection.opened
    return connection
