"""The WebSocket API (``GET /v1/ws``): auth, subscriptions, market-data fan-out, order entry.

Channels are named ``<kind>:<id>`` (``book:7``, ``trades:7``, ``project:3``) or just ``orders``.
Each kind has a provider registered by the module that owns the data: it validates the id,
checks access and returns the snapshot with its sequence. Updates are published to the hub
after each engine batch; every channel's sequence grows by exactly one per update, so a client
that sees a gap re-subscribes. Each connection has a bounded outgoing queue: a client that
cannot keep up is disconnected with the reason ``slow_consumer`` instead of growing our memory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from engine.errors import CrowdexError
from engine.machine import AccountInfo
from gateway import http, keys

log = logging.getLogger("crowdex.ws")

HEARTBEAT_S = 15.0
MESSAGE_SIZE_MAX = 64 * 1024
SEND_QUEUE_MAX = 4096  # messages waiting for one client before it is cut off
SUBSCRIPTIONS_MAX = 256  # channels per connection
INFLIGHT_MAX = 1024  # pipelined orders/cancels per connection awaiting their acks
WRITE_FRAMES_MAX = 1024  # frames coalesced into one socket write
WRITE_BUFFER_HIGH = 1 << 20  # bytes in the socket's buffer before the writer waits
WRITE_WAIT_S = 0.005
# Open sockets: each holds a file descriptor and a queue, so a client cannot open without end.
# Past either cap an upgrade is 429 rate_limited with Retry-After. Behind a proxy every client
# has the proxy's address: the per-peer cap is meant to be generous.
CONNECTIONS_MAX = 10_000
CONNECTIONS_PER_PEER_MAX = 256
CONNECTIONS_RETRY_AFTER_S = "5"
CLOSE_SLOW_CONSUMER = 4008
CLOSE_UNAUTHORIZED = 4001

_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()


@dataclass(frozen=True, slots=True)
class ChannelKind:
    """How to serve one kind of channel.

    ``snapshot(request, channel_id, account)`` returns ``(sequence, data)`` or raises a
    ``CrowdexError`` (e.g. not found). A sequence of None means the hub numbers the channel's
    updates itself; data with its own sequence (a book) passes it. ``private`` channels need
    an authenticated account and are per account: updates go to ``private_channel(name, id)``.
    """

    snapshot: Callable[[web.Request, int, AccountInfo | None], tuple[int | None, Any]]
    private: bool = False


# An op validates its message (the whole of it: ``op`` and ``request_id`` included) and returns
# the ack's type, the ack's field for the reply body, and the engine command to submit.
OpHandler = Callable[[web.Request, AccountInfo, dict], tuple[str, str, Any]]


@dataclass(eq=False)
class Connection:
    request: web.Request
    ws: web.WebSocketResponse
    binary: bool
    account: AccountInfo | None = None
    channels: set[str] = field(default_factory=set)
    # Messages waiting for the writer; None (alone) tells it to close for a slow consumer.
    outgoing: deque = field(default_factory=deque)
    wakeup: asyncio.Future | None = None  # the writer's, while it waits for messages
    closing: bool = False
    close_after_drain: bool = False  # a failed auth: send the error, then close
    inflight: int = 0  # orders/cancels submitted, not yet answered
    room: asyncio.Future | None = None  # the reader's, while INFLIGHT_MAX are in flight

    def send(self, message: dict | None) -> None:
        """Queue a message; a full queue means a slow consumer, who is disconnected."""
        if self.closing:
            return
        outgoing = self.outgoing
        if len(outgoing) >= SEND_QUEUE_MAX:
            self.closing = True
            outgoing.clear()
            message = None  # what is queued is dropped: the writer closes the socket
        outgoing.append(message)
        wakeup = self.wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    def encode(self, message: dict) -> bytes:
        return _msgpack.encode(message) if self.binary else _json.encode(message)

    def send_error(self, request_id: Any, code: str, message: str) -> None:
        self.send({"type": "error", "request_id": request_id, "code": code,
                   "message": message})

    def answered(self) -> None:
        self.inflight -= 1
        room = self.room
        if room is not None and not room.done():
            room.set_result(None)

    async def inflight_below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` orders/cancels await their answers."""
        while self.inflight >= limit:
            self.room = asyncio.get_running_loop().create_future()
            await self.room


class Hub:
    """Channels, their subscribers and per-channel sequences."""

    def __init__(self) -> None:
        self.kinds: dict[str, ChannelKind] = {}
        self.ops: dict[str, OpHandler] = {}
        self.subscribers: dict[str, set[Connection]] = {}
        self.sequences: dict[str, int] = {}
        self.connections_by_peer: dict[str, int] = {}  # open sockets by remote address
        self.connections = 0
        # For /metrics (gateway/metrics.py reads them at scrape time).
        self.opened = 0
        self.messages_received = 0
        self.messages_sent = 0

    def admit(self, peer: str) -> None:
        """Count a new socket from ``peer``, or refuse it past the caps (``release`` undoes)."""
        if (self.connections >= CONNECTIONS_MAX
                or self.connections_by_peer.get(peer, 0) >= CONNECTIONS_PER_PEER_MAX):
            raise CrowdexError("rate_limited", "too many open WebSocket connections; close "
                               "some or retry later",
                               headers={"Retry-After": CONNECTIONS_RETRY_AFTER_S})
        self.connections += 1
        self.opened += 1
        self.connections_by_peer[peer] = self.connections_by_peer.get(peer, 0) + 1

    def release(self, peer: str) -> None:
        self.connections -= 1
        left = self.connections_by_peer[peer] - 1
        if left:
            self.connections_by_peer[peer] = left
        else:
            del self.connections_by_peer[peer]

    def register_channel(self, kind: str, channel_kind: ChannelKind) -> None:
        self.kinds[kind] = channel_kind

    def register_op(self, op: str, handler: OpHandler) -> None:
        self.ops[op] = handler

    def publish(self, channel: str, data: Any, sequence: int | None = None,
                message_type: str = "update") -> None:
        """Send an update to the channel's subscribers.

        Channels whose data has its own sequence (a book) pass it; others are numbered here.
        """
        if sequence is None:
            sequence = self.sequences.get(channel, 0) + 1
        self.sequences[channel] = sequence
        subscribers = self.subscribers.get(channel)
        if not subscribers:
            return
        # A private channel's key carries its account ("orders@7"); clients know it as "orders".
        message = {"channel": channel.partition("@")[0], "type": message_type,
                   "sequence": sequence, "data": data}
        for connection in list(subscribers):
            connection.send(message)

    def publish_all(self, events: list[tuple[str, Any, int | None]]) -> None:
        """Publish a batch's updates (the engine's outbox), in the order they happened."""
        for channel, data, sequence in events:
            self.publish(channel, data, sequence)

    def channel_sequence(self, channel: str) -> int:
        return self.sequences.get(channel, 0)

    def drop(self, connection: Connection) -> None:
        for channel in connection.channels:
            subscribers = self.subscribers.get(channel)
            if subscribers is not None:
                subscribers.discard(connection)
                if not subscribers:
                    del self.subscribers[channel]
        connection.channels.clear()


def private_channel(name: str, account_id: int) -> str:
    """The hub's key for an account's private channel (clients just say ``orders``)."""
    return f"{name}@{account_id}"


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
            _submit_op(conn, handler, message)
        else:
            raise CrowdexError("invalid_field", f"unknown op {op!r}")
    except CrowdexError as error:
        conn.send_error(request_id, error.code, error.message)
        if op == "auth":
            conn.close_after_drain = True


def _submit_op(conn: Connection, handler: OpHandler, message: dict) -> None:
    """Submit an order or cancel without waiting for it, so clients can pipeline.

    The sequencer is FIFO and answers in order, so acks come back in the order sent.
    """
    request_id = message.get("request_id")
    try:
        ack_type, field_name, command = handler(conn.request, conn.account, message)
        conn.request.app[keys.ENGINE].submit_nowait(
            command, conn.account.account_id,
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
    """
    transport = conn.request.transport
    outgoing = conn.outgoing
    loop = asyncio.get_running_loop()
    hub = conn.request.app[keys.HUB]
    while True:
        if not outgoing:
            conn.wakeup = loop.create_future()
            await conn.wakeup
            conn.wakeup = None
            continue
        frames = []
        message = outgoing.popleft()
        while message is not None:
            frames.append(_frame(conn.encode(message), conn.binary))
            if not outgoing or len(frames) >= WRITE_FRAMES_MAX:
                break
            message = outgoing.popleft()
        if frames:
            if transport is None or transport.is_closing():
                return
            transport.write(b"".join(frames))
            hub.messages_sent += len(frames)
            while transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
                # The client is not reading: stop draining, so the queue fills up and the
                # slow-consumer rule (not our memory) decides.
                if transport.is_closing():
                    return
                await asyncio.sleep(WRITE_WAIT_S)
        if message is None:
            await conn.ws.close(code=CLOSE_SLOW_CONSUMER, message=b"slow_consumer")
            return
        if conn.close_after_drain and not outgoing:
            await conn.ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")
            return


def _frame(payload: bytes, binary: bool) -> bytes:
    """One final, unmasked data frame (text or binary) around ``payload``."""
    first = 0x82 if binary else 0x81
    size = len(payload)
    if size < 126:
        header = bytes((first, size))
    elif size < 1 << 16:
        header = bytes((first, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + size.to_bytes(8, "big")
    return header + payload


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


def _check_request_id(conn: Connection, message: dict) -> None:
    """Replies echo ``request_id``, so it must encode in the connection's format: a msgpack
    Ext cannot go out as JSON, nor an integer past 64 bits as msgpack. Refused here, before
    anything is submitted, rather than failing in the writer and dropping the socket."""
    request_id = message.get("request_id")
    if request_id is None or type(request_id) is str or (
            type(request_id) is int and -(1 << 63) <= request_id < 1 << 64):
        return  # the usual ones, without an encode on the pipelined path
    try:
        conn.encode(request_id)
    except (TypeError, OverflowError):
        raise CrowdexError("invalid_field", "request_id cannot be echoed back") from None


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
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MESSAGE_SIZE_MAX + 1,
                               compress=False)  # frames are written by _writer, uncompressed
    await ws.prepare(request)
    binary = http.wants_msgpack(request) or request.query.get("format") == "msgpack"
    conn = Connection(request, ws, binary, account)
    writer = asyncio.create_task(_writer(conn))
    ops = hub.ops
    try:
        async for msg in ws:
            if writer.done():
                break
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            hub.messages_received += 1
            try:
                message = _decode(msg)
                _check_request_id(conn, message)
            except CrowdexError as error:
                conn.send_error(None, error.code, error.message)
                continue
            op = message.get("op")
            handler = ops.get(op) if type(op) is str else None  # an unhashable op is unknown
            if handler is not None and conn.account is not None and conn.inflight < INFLIGHT_MAX:
                _submit_op(conn, handler, message)  # the pipelined path: no await
            else:
                await _handle_message(hub, conn, message, handler)
    finally:
        hub.drop(conn)
        if not writer.done():
            await conn.inflight_below(1)  # answers still due go out first
        if not writer.done():
            writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    return ws
