"""The blocking client: the standard library's ``http.client`` over one kept-alive connection,
and a small RFC 6455 WebSocket of its own, so a script needs nothing but msgspec.

One ``Client`` is for one thread at a time (it holds one connection); open one per thread.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import select
import socket
import ssl
import struct
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec

from crowdex_client import _transport as t
from crowdex_client._api import Call, Endpoints
from crowdex_client._api import _fields as _given
from crowdex_client.models import WsMessage, decode_message

# Errors after which the connection is opened again and the call retried (it is keyed).
CONNECTION_ERRORS = (http.client.HTTPException, OSError)  # OSError: refused, reset, timeout
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
WS_HEADER_BYTES_MAX = 16 * 1024
WS_FRAME_BYTES_MAX = 16 * 1024 * 1024
RECEIVE_BYTES = 64 * 1024
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0, 1, 2, 8, 9, 10


class Client(Endpoints):
    """One API key's view of a crowdex server.

        with Client("http://127.0.0.1:8080", api_key) as cx:
            print(cx.me().cash_available)

    Every method returns a msgspec Struct (see ``crowdex_client.models``) or raises
    ``ApiError``; 429 and 503 are retried after ``Retry-After`` (``retry=NO_RETRY`` to not).
    """

    def __init__(self, base_url: str, api_key: str | None = None, *,
                 timeout_s: float = t.TIMEOUT_S, retry: t.Retry = t.DEFAULT_RETRY) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s
        self.retry = retry
        self._parts = parts
        self._connection: http.client.HTTPConnection | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def with_key(self, api_key: str) -> Client:
        """The same server as another account (a connection of its own)."""
        return Client(self.base_url, api_key, timeout_s=self.timeout_s, retry=self.retry)

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            kind = (http.client.HTTPSConnection if self._parts.scheme == "https"
                    else http.client.HTTPConnection)
            self._connection = kind(self._parts.hostname, self._parts.port,
                                    timeout=self.timeout_s)
        return self._connection

    def _send(self, prepared: t.Prepared) -> tuple[int, Any, bytes]:
        connection = self._connect()
        try:
            connection.request(prepared.method, prepared.target, body=prepared.body,
                               headers=prepared.headers)
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        except BaseException:
            self.close()  # a half-used connection is not used again
            raise

    def _call(self, call: Call) -> Any:
        prepared = t.prepare(call, self.api_key)
        for attempt in range(1, self.retry.tries + 1):
            last = attempt == self.retry.tries
            try:
                status, headers, raw = self._send(prepared)
            except CONNECTION_ERRORS:
                if last:
                    raise
                time.sleep(self.retry.wait_s(attempt, None))
                continue
            if t.retryable(status) and not last:
                time.sleep(self.retry.wait_s(attempt, headers.get("Retry-After")))
                continue
            return t.finish(call, status, headers, raw)
        raise AssertionError("unreachable")  # the last try returns or raises

    def request(self, method: str, path: str, body: Any = None, *,
                params: dict[str, str] | None = None, idempotency_key: str | None = None,
                result: Any = None) -> Any:
        """Any call by hand: plain JSON back unless ``result`` names a type."""
        return self._call(Call(method, path, result, body, params, idempotency_key))

    def websocket(self) -> WebSocket:
        """A WebSocket to ``/v1/ws``, authenticated with this client's key if it has one."""
        return WebSocket(self.base_url, self.api_key, timeout_s=self.timeout_s)


class WebSocket:
    """``/v1/ws`` without an event loop: ``send`` messages, ``recv`` them one at a time.

        with cx.websocket() as ws:
            ws.subscribe(["book:7"])
            while True:
                message = ws.recv()   # a models.Snapshot, Update, OrderAck, ...

    Pings are answered inside ``recv``: read the socket at least every 15 s or the server's
    heartbeat closes it.
    """

    def __init__(self, base_url: str, api_key: str | None = None, *,
                 timeout_s: float = t.TIMEOUT_S) -> None:
        parts = urlsplit(base_url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sock = socket.create_connection((parts.hostname, port), timeout=timeout_s)
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock,
                                                            server_hostname=parts.hostname)
        self._sock = sock
        self._buffer = bytearray()  # received, not yet read
        self._next_request_id = 0
        self.closed = False
        try:
            self._handshake(parts.hostname or "", port, (parts.path or "") + "/v1/ws", api_key)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _handshake(self, host: str, port: int, path: str, api_key: str | None) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                 "Sec-WebSocket-Version: 13", f"User-Agent: {t.USER_AGENT}"]
        if api_key:
            lines.append(f"Authorization: Bearer {api_key}")
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, headers = self._read_head()
        if status != 101:
            length = min(int(headers.get("content-length", "0") or 0), WS_HEADER_BYTES_MAX)
            body = self._read_exact(length) if length else b""
            if status >= 400:  # the API's refusal (401 for a bad key, 429 past the caps)
                t.finish(Call("GET", path), status, _Headers(headers), body)
            raise ConnectionError(f"the WebSocket upgrade was answered {status}")
        expected = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            raise ConnectionError("the server's WebSocket handshake is not RFC 6455's")

    def _read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > WS_HEADER_BYTES_MAX:
                raise ConnectionError("the WebSocket upgrade's answer is too long")
            self._receive()
        head, _, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        self._buffer[:] = rest
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer: {status_line!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    # ---- messages -------------------------------------------------------------------------

    def send(self, message: dict) -> None:
        self._send_frame(_OP_TEXT, msgspec.json.encode(message))

    def _request_id(self, given: Any) -> Any:
        if given is not None:
            return given
        self._next_request_id += 1
        return self._next_request_id

    def auth(self, api_key: str) -> None:
        self.send({"op": "auth", "api_key": api_key})

    def subscribe(self, channels: list[str]) -> None:
        """``book:<id>``, ``trades:<id>``, ``project:<id>``, ``orders``."""
        self.send({"op": "subscribe", "channels": channels})

    def unsubscribe(self, channels: list[str]) -> None:
        self.send({"op": "unsubscribe", "channels": channels})

    def order(self, *, request_id: Any = None, **order: Any) -> Any:
        """Send an order (the POST /v1/orders body); returns its ``request_id``, which the
        ``OrderAck`` or ``WsError`` answering it carries."""
        request_id = self._request_id(request_id)
        self.send({"op": "order", "request_id": request_id, **order})
        return request_id

    def cancel(self, order_id: int, *, request_id: Any = None) -> Any:
        request_id = self._request_id(request_id)
        self.send({"op": "cancel", "request_id": request_id, "order_id": order_id})
        return request_id

    def amend(self, order_id: int, *, price: int | None = None,
              quantity: int | None = None, request_id: Any = None) -> Any:
        """Amend a resting order (like PATCH /v1/orders/{id}); answered by ``AmendAck``."""
        request_id = self._request_id(request_id)
        self.send({"op": "amend", "request_id": request_id, "order_id": order_id,
                   **_given(price=price, quantity=quantity)})
        return request_id

    def ping(self) -> None:
        self.send({"op": "ping"})

    def recv(self, timeout_s: float | None = None) -> WsMessage | dict:
        """The next message, typed (an unknown type comes back as a dict); raises
        ``ConnectionError`` once the socket is closed and ``TimeoutError`` after
        ``timeout_s`` without one."""
        while True:
            if timeout_s is not None and not self._readable(timeout_s):
                raise TimeoutError("no WebSocket message in time")
            opcode, payload = self._read_message()
            if opcode in (_OP_TEXT, _OP_BINARY):
                return decode_message(payload)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self._send_frame(_OP_CLOSE, struct.pack("!H", 1000))
            except OSError:
                pass
            self._sock.close()

    # ---- frames (RFC 6455 section 5) ------------------------------------------------------

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        if self.closed and opcode != _OP_CLOSE:
            raise ConnectionError("the WebSocket is closed")
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        mask = os.urandom(4)  # a client masks every frame
        self._sock.sendall(head + mask + _masked(payload, mask))

    def _receive(self) -> None:
        chunk = self._sock.recv(RECEIVE_BYTES)
        if not chunk:
            self.closed = True
            raise ConnectionError("the WebSocket closed")
        self._buffer += chunk

    def _readable(self, timeout_s: float) -> bool:
        """Whether a message has started to arrive within ``timeout_s`` (it is then read
        whole, under the connection's own timeout, so a frame is never cut in two)."""
        return bool(self._buffer) or bool(select.select([self._sock], [], [], timeout_s)[0])

    def _read_exact(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._receive()
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _read_frame(self) -> tuple[bool, int, bytes]:
        first, second = self._read_exact(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._read_exact(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._read_exact(8))[0]
        if size > WS_FRAME_BYTES_MAX:
            raise ConnectionError(f"a WebSocket frame of {size} bytes")
        mask = self._read_exact(4) if second & 0x80 else b""
        payload = self._read_exact(size)
        return bool(first & 0x80), first & 0x0F, _masked(payload, mask) if mask else payload

    def _read_message(self) -> tuple[int, bytes]:
        """The next data message (fragments joined); control frames are handled here."""
        parts: list[bytes] = []
        opcode = None
        while True:
            fin, op, payload = self._read_frame()
            if op == _OP_PING:
                self._send_frame(_OP_PONG, payload)
            elif op == _OP_CLOSE:
                self.close()
                raise ConnectionError("the server closed the WebSocket: "
                                      + _close_reason(payload))
            elif op != _OP_PONG:
                opcode = op if op != _OP_CONTINUATION else opcode
                parts.append(payload)
                if fin:
                    return opcode or _OP_TEXT, b"".join(parts)


def _masked(payload: bytes, mask: bytes) -> bytes:
    if not payload:
        return payload
    repeated = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big")


def _close_reason(payload: bytes) -> str:
    if len(payload) < 2:
        return "no code"
    code = struct.unpack("!H", payload[:2])[0]
    return f"{code} {payload[2:].decode(errors='replace')}".strip()


class _Headers(dict):
    """Lower-cased handshake headers answering ``get`` in any case."""

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)
