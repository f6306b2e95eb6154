"""The WebSocket API (``GET /v1/ws``): auth, subscriptions, market-data fan-out, order entry.

Channels are named ``<kind>:<id>`` (``book:7``, ``trades:7``, ``project:3``) or just ``orders``.
Each kind has a provider registered by the module that owns the data: it validates the id,
checks access and returns the snapshot with its sequence. Updates are published to the hub
(``gateway/hub.py``) after each engine batch; every channel's sequence grows by exactly one per
update, so a client that sees a gap re-subscribes. Each connection has a bounded outgoing queue:
a client that cannot keep up is disconnected with the reason ``slow_consumer`` instead of
growing our memory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import struct
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

try:  # the parts of aiohttp the inline reader builds on (``_InlineQueue``)
    from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
except ImportError:  # an aiohttp without them: every message goes aiohttp's way
    WebSocketDataQueue = WebSocketReader = None

from engine.errors import CrowdexError
from engine.machine import AccountInfo
from gateway import http, keys
from gateway.hub import Connection, Hub, OpHandler, private_channel

log = logging.getLogger("crowdex.ws")

HEARTBEAT_S = 15.0
MESSAGE_SIZE_MAX = 64 * 1024
SUBSCRIPTIONS_MAX = 256  # channels per connection
INFLIGHT_MAX = 1024  # pipelined orders/cancels per connection awaiting their acks
WRITE_FRAMES_MAX = 1024  # frames coalesced into one socket write
WRITE_BUFFER_HIGH = 1 << 20  # bytes in the socket's buffer before the writer waits
WRITE_WAIT_S = 0.005
CLOSE_SLOW_CONSUMER = 4008
CLOSE_UNAUTHORIZED = 4001


def _parse_channel(name: str) -> tuple[str, int | None]:
    kind, sep, ident = name.partition(":")
    if not sep:
        return kind, None
    value = http.parse_uint(ident)
    if value is None or value <= 0:
        raise CrowdexError("invalid_field", f"bad channel {name!r}")
    return kind, value


def _channel_names(names: Any) -> list[str]:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise CrowdexError("invalid_field", "channels must be a non-empty list of strings")
    return names


def _subscribe(hub: Hub, conn: Connection, names: Any) -> None:
    names = _channel_names(names)
    if len(conn.channels) + len(names) > SUBSCRIPTIONS_MAX:
        raise CrowdexError("limit_exceeded", f"at most {SUBSCRIPTIONS_MAX} channels")
    prepared = []
    for name in names:
        kind_name, ident = _parse_channel(name)
        kind = hub.kinds.get(kind_name)
        if kind is None or (ident is None) != kind.private:
            raise CrowdexError("invalid_field", f"unknown channel {name!r}")
        if kind.private and conn.account is None:
            raise CrowdexError("unauthorized", f"{name!r} needs an authenticated connection")
        sequence, data = kind.snapshot(conn.request, ident or 0, conn.account)
        key = private_channel(name, conn.account.account_id) if kind.private else name
        prepared.append((name, key, sequence, data, kind.private))
    conn.send({"type": "subscribed", "channels": list(names)})
    for name, key, sequence, data, _private in prepared:
        if sequence is None:
            sequence = hub.channel_sequence(key)
        else:
            hub.sequences[key] = sequence
        hub.subscribers.setdefault(key, set()).add(conn)
        conn.channels.add(key)
        conn.send({"channel": name, "type": "snapshot", "sequence": sequence, "data": data})


async def _handle_message(hub: Hub, conn: Connection, message: dict,
                          handler: OpHandler | None) -> None:
    """Everything but the pipelined path; ``handler`` is the message's order-entry op's, if
    it has one (looked up once, by the reader)."""
    op = message.get("op")
    request_id = message.get("request_id")
    try:
        if op == "auth":
            await _auth(conn, message)
        elif op == "subscribe":
            _subscribe(hub, conn, message.get("channels"))
        elif op == "unsubscribe":
            names = _channel_names(message.get("channels"))
            hub_keys = {private_channel(n, conn.account.account_id) if conn.account and
                        ":" not in n else n for n in names}
            for key in hub_keys & conn.channels:
                hub.subscribers.get(key, set()).discard(conn)
                conn.channels.discard(key)
            conn.send({"type": "unsubscribed", "channels": names})
        elif op == "ping":
            conn.send({"type": "pong", "request_id": request_id})
        elif handler is not None:
            if conn.account is None:
                raise CrowdexError("unauthorized", "authenticate first")
            await conn.inflight_below(INFLIGHT_MAX)
            _submit_op(conn, handler, message, request_id)
        else:
            raise CrowdexError("invalid_field", f"unknown op {op!r}")
    except CrowdexError as error:
        conn.send_error(request_id, error.code, error.message)
        if op == "auth":
            conn.close_after_drain = True


def _submit_op(conn: Connection, handler: OpHandler, message: Any, request_id: Any) -> None:
    """Submit an order or cancel without waiting for it, so clients can pipeline.

    The sequencer is FIFO and answers in order, so acks come back in the order sent.
    ``message`` is the decoded dict, or a typed op's struct (``Hub.register_typed_op``).
    """
    try:
        ack_type, field_name, command = handler(conn.request, conn.account, message)
        conn.submit(command, conn.account.account_id,
                    functools.partial(_acked, conn, ack_type, field_name, request_id))
    except CrowdexError as error:
        conn.send_error(request_id, error.code, error.message)
        return
    conn.inflight += 1


def _acked(conn: Connection, ack_type: str, field_name: str, request_id: Any,
           outcome: Any) -> None:
    conn.answered()
    if isinstance(outcome, CrowdexError):
        conn.send_error(request_id, outcome.code, outcome.message)
    elif outcome.status >= 400:
        detail = outcome.body["error"]
        conn.send_error(request_id, detail["code"], detail["message"])
    else:
        conn.send({"type": ack_type, field_name: outcome.body, "request_id": request_id})


async def _auth(conn: Connection, message: dict) -> None:
    api_key = message.get("api_key")
    if not isinstance(api_key, str):
        raise CrowdexError("unauthorized", "api_key must be a string")
    machine = conn.request.app[keys.ENGINE].machine
    account_id = machine.key_index.get(http.key_hash(api_key))
    if account_id is None:
        raise CrowdexError("unauthorized", "unknown API key")
    conn.account = machine.accounts[account_id]
    conn.send({"type": "authenticated", "account_id": account_id})


async def _writer(conn: Connection) -> None:
    """Drain the connection's queue to the socket; close it on the slow-consumer marker.

    Whatever is queued goes out in one write: many frames per system call when clients
    pipeline. The frames are built here (RFC 6455, unmasked server frames, no extensions: the
    socket is opened with compression off); control frames and the close stay aiohttp's.
    While this task waits for messages, the hub's flush writes them (``flush``) without
    waking it; it takes over for what needs waiting: a full socket buffer, the closes.
    """
    transport = conn.request.transport
    outgoing = conn.outgoing
    loop = asyncio.get_running_loop()
    while True:
        if not outgoing:
            conn.wakeup = loop.create_future()
            await conn.wakeup
            conn.wakeup = None
            continue
        if transport is None or transport.is_closing():
            return
        if _write_queued(conn, transport) is None:
            await conn.ws.close(code=CLOSE_SLOW_CONSUMER, message=b"slow_consumer")
            return
        while transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            # The client is not reading: stop draining, so the queue fills up and the
            # slow-consumer rule (not our memory) decides.
            if transport.is_closing():
                return
            await asyncio.sleep(WRITE_WAIT_S)
        if conn.close_after_drain and not outgoing:
            await conn.ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")
            return


def _write_queued(conn: Connection, transport: Any) -> bool | None:
    """Write up to WRITE_FRAMES_MAX queued messages in one write; None if the slow-consumer
    marker came (what came before it is written)."""
    outgoing = conn.outgoing
    encode = conn.encode_function()
    headers = _BINARY_HEADERS if conn.binary else _TEXT_HEADERS
    parts = []  # each frame's header and payload, joined once for the write
    count = 0
    message = outgoing.popleft()
    while message is not None:
        # A hub update comes encoded already (once for all its subscribers).
        payload = message if type(message) is bytes else encode(message)
        size = len(payload)
        parts.append(headers[size] if size < _HEADERS_BUILT else _long_header(headers, size))
        parts.append(payload)
        count += 1
        if not outgoing or count >= WRITE_FRAMES_MAX:
            break
        message = outgoing.popleft()
    if parts:
        transport.write(b"".join(parts))
        conn.hub.messages_sent += count
    return None if message is None else True


def flush(conn: Connection) -> None:
    """``Hub.flusher``: write an idle writer's queue now, in the turn that filled it (a
    batch's acks and updates go out as the batch ends, no task woken per connection). What
    needs waiting or closing is left to the writer, woken for it."""
    wakeup = conn.wakeup
    if wakeup is None or wakeup.done():
        return  # the writer is at work: it takes what is queued
    transport = conn.request.transport
    if (conn.closing or conn.close_after_drain or transport is None or transport.is_closing()
            or transport.get_write_buffer_size() > WRITE_BUFFER_HIGH):
        wakeup.set_result(None)
        return
    outgoing = conn.outgoing
    while outgoing:
        _write_queued(conn, transport)  # no marker: the connection is not closing
        if transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            if outgoing:
                wakeup.set_result(None)  # the writer waits for the client to read
            return


# The header of a final, unmasked data frame: a text frame's (0x81) or a binary one's (0x82),
# by payload size up to 125 bytes; larger ones carry the size in 2 or 8 more bytes.
_MEDIUM_HEADER = struct.Struct(">BBH")
_LONG_HEADER = struct.Struct(">BBQ")
# Frame headers by payload size, built once for the sizes of most messages: an ack with its
# order is ~300-500 bytes, past the 2-byte header's 125 (a header packed a message was ~1%
# of the server's CPU at saturation).
_HEADERS_BUILT = 2048


def _headers(first: int) -> tuple[bytes, ...]:
    return tuple(bytes((first, size)) if size < 126 else _MEDIUM_HEADER.pack(first, 126, size)
                 for size in range(_HEADERS_BUILT))


_TEXT_HEADERS = _headers(0x81)
_BINARY_HEADERS = _headers(0x82)


def _long_header(headers: tuple[bytes, ...], size: int) -> bytes:
    first = headers[0][0]
    if size < 1 << 16:
        return _MEDIUM_HEADER.pack(first, 126, size)
    return _LONG_HEADER.pack(first, 127, size)


def _decode(msg) -> dict:
    try:
        if msg.type == WSMsgType.BINARY:
            value = msgspec.msgpack.decode(msg.data)
        else:
            value = msgspec.json.decode(msg.data)
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # msgpack str: bad UTF-8
        raise CrowdexError("invalid_json", f"the message could not be decoded: {error}") from None
    if not isinstance(value, dict):
        raise CrowdexError("invalid_field", "a message must be an object")
    return value


def _check_request_id(conn: Connection, request_id: Any) -> None:
    """Replies echo ``request_id``, so it must encode in the connection's format: a msgpack
    Ext cannot go out as JSON, nor an integer past 64 bits as msgpack. Refused here, before
    anything is submitted, rather than failing in the writer and dropping the socket."""
    if request_id is None or type(request_id) is str or (
            type(request_id) is int and -(1 << 63) <= request_id < 1 << 64):
        return  # the usual ones, without an encode on the pipelined path
    try:
        conn.encode(request_id)
    except (TypeError, OverflowError):
        raise CrowdexError("invalid_field", "request_id cannot be echoed back") from None


if WebSocketDataQueue is not None:
    class _InlineQueue(WebSocketDataQueue):
        """aiohttp's queue of received messages, which its frame parser (C) feeds one message
        at a time while the socket's bytes are read; an order or cancel is taken right there
        (``take``) when nothing received before it is still waiting, so it costs no queueing,
        no wakeup of the reading task and no turn of its loop. Anything else, and anything
        while an earlier message waits or is being handled, is queued as aiohttp would, and
        ``_serve`` handles it in order."""

        take: Any = None  # set by _serve once the connection is ready: message -> taken?
        busy = False  # _serve is handling a message it read from the queue

        def feed_data(self, data: Any, size: int) -> None:
            take = self.take
            if take is None or self.busy or self._buffer or not take(data):
                super().feed_data(data, size)


# The heartbeat state ``_OrderSocket._on_data_received`` reads and writes (aiohttp 3.14's; an
# aiohttp without it keeps its own reset).
_HEARTBEAT_INTERNALS = all(
    hasattr(web.WebSocketResponse, name)
    for name in ("_on_data_received", "_send_heartbeat", "_need_heartbeat_reset",
                 "_heartbeat_when", "_heartbeat_cb", "_pong_response_cb"))


class _OrderSocket(web.WebSocketResponse):
    """``web.WebSocketResponse`` whose received messages go through ``_InlineQueue``.

    aiohttp builds its queue and parser as the upgrade completes and feeds the parser any
    frames that came with the upgrade request; here the parser is replaced before those are
    fed, so none can slip past the queue ``_serve`` reads. Without the parts it needs (an
    aiohttp whose internals differ) it stays aiohttp's own, unchanged.
    """

    inline: Any = None  # the _InlineQueue, once in place

    if _HEARTBEAT_INTERNALS:  # else aiohttp's own hook, unchanged
        def _on_data_received(self) -> None:
            """aiohttp's hook for each chunk read: it moves the ping timer by a callback
            scheduled per connection and loop turn (~1 us an order at 20k/s). A deadline to
            compare does the same: the timer, firing before it, reschedules itself to it
            (``_send_heartbeat``). While a ping is out (no timer; a pong timeout set),
            aiohttp's own way, which cancels the timeout and sets the timer again."""
            if (self._heartbeat is None or self._heartbeat_cb is None
                    or self._pong_response_cb is not None or self._need_heartbeat_reset):
                super()._on_data_received()
                return
            self._heartbeat_when = self._loop.time() + self._heartbeat

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        handler = request.protocol
        tail = getattr(handler, "_message_tail", None)
        if WebSocketDataQueue is None or not isinstance(tail, bytes):
            super()._post_start(request, protocol, writer)
            return
        handler._message_tail = b""  # fed below, to the replacing parser
        super()._post_start(request, protocol, writer)
        old = self._reader
        try:
            queue = _InlineQueue(old._protocol, old._limit, loop=self._loop)
            parser = WebSocketReader(queue, self._max_msg_size, compress=bool(self._compress),
                                     decode_text=self._decode_text)
        except (AttributeError, TypeError):  # not the aiohttp this was written against
            log.warning("aiohttp's WebSocket internals differ; orders take its usual path")
        else:
            if handler._payload_parser is self._parser:
                self._reader, self._parser = queue, parser
                handler._payload_parser = parser
                self.inline = queue
        if tail:
            handler._payload_parser.feed_data(tail)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """``GET /v1/ws``: a bad key in the upgrade's Authorization header is refused with 401."""
    account = http.principal(request) if "Authorization" in request.headers else None
    hub = request.app[keys.HUB]
    peer = request.remote or ""
    hub.admit(peer)
    try:
        return await _serve(request, hub, account)
    finally:
        hub.release(peer)


async def _serve(request: web.Request, hub: Hub, account: AccountInfo | None
                 ) -> web.WebSocketResponse:
    # aiohttp refuses a message of max_msg_size bytes or more; MESSAGE_SIZE_MAX itself is allowed.
    ws = _OrderSocket(heartbeat=HEARTBEAT_S, max_msg_size=MESSAGE_SIZE_MAX + 1,
                      compress=False)  # frames are written by _writer, uncompressed
    await ws.prepare(request)
    binary = http.wants_msgpack(request) or request.query.get("format") == "msgpack"
    conn = Connection(request, ws, binary, account)
    conn.submit = request.app[keys.ENGINE].submit_nowait
    conn.hub = hub
    writer = asyncio.create_task(_writer(conn))
    ops = hub.ops
    decoders = hub.typed_decoders()
    typed = None if decoders is None else _typed_taker(hub, conn, writer, *decoders,
                                                       hub.typed_ops, inline=False)
    inline = ws.inline
    if inline is not None and typed is not None:
        inline.take = _typed_taker(hub, conn, writer, *decoders, hub.typed_ops, inline=True)
    try:
        while True:
            if inline is not None:
                inline.busy = False
            msg = await ws.receive()
            if inline is not None:
                inline.busy = True
            kind = msg.type
            if kind is WSMsgType.CLOSE or kind is WSMsgType.CLOSING or kind is WSMsgType.CLOSED:
                break  # what ``async for`` over the socket stops at
            if writer.done():
                break
            if kind is not WSMsgType.TEXT and kind is not WSMsgType.BINARY:
                continue
            hub.messages_received += 1
            if typed is not None and typed(msg):
                continue  # an order or cancel, pipelined without a dict (no await)
            try:
                message = _decode(msg)
                _check_request_id(conn, message.get("request_id"))
            except CrowdexError as error:
                conn.send_error(None, error.code, error.message)
                continue
            op = message.get("op")
            handler = ops.get(op) if type(op) is str else None  # an unhashable op is unknown
            if handler is not None and conn.account is not None and conn.inflight < INFLIGHT_MAX:
                _submit_op(conn, handler, message, message.get("request_id"))  # pipelined
            else:
                await _handle_message(hub, conn, message, handler)
    finally:
        if inline is not None:
            inline.take = None  # from here every message is queued, unread
        hub.drop(conn)
        if not writer.done():
            await conn.inflight_below(1)  # answers still due go out first
        if not writer.done():
            writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    return ws


def _typed_taker(hub: Hub, conn: Connection, writer: asyncio.Task, typed_json: Any,
                 typed_msgpack: Any, typed_ops: dict, inline: bool) -> Any:
    """The connection's ``take(msg) -> bool``: an order or cancel submitted the typed ops'
    way (``Hub.register_typed_op``) if the connection may pipeline one now and the frame
    decodes into one of them; False leaves the message to the general path, which answers
    it exactly as before (the typed structs accept only what the general path's conversion
    accepts). ``inline``: ``_InlineQueue.take``, which takes a frame as it is parsed, as
    ``_serve`` would have, while the writer runs, and counts what it takes (``_serve``
    counts its own).

    One frame, one call and ``_submit_op``: the checks and the decode are inline here. Each
    is once per order at saturation, where the call layers they were in cost a few percent
    of the server's time an order."""
    text, binary = WSMsgType.TEXT, WSMsgType.BINARY
    decode_json, decode_msgpack = typed_json.decode, typed_msgpack.decode

    def take(msg: Any) -> bool:
        if inline and writer.done():
            return False
        kind = msg.type
        if ((kind is not text and kind is not binary) or conn.account is None
                or conn.inflight >= INFLIGHT_MAX):
            return False
        try:
            message = (decode_json if kind is text else decode_msgpack)(msg.data)
        except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError
            return False
        if inline:
            hub.messages_received += 1
            hub.messages_inline += 1
        request_id = message.request_id
        try:
            _check_request_id(conn, request_id)
        except CrowdexError as error:
            conn.send_error(None, error.code, error.message)
            return True
        _submit_op(conn, typed_ops[type(message)], message, request_id)
        return True

    return take
