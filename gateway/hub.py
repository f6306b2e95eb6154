"""The WebSocket hub: channels, their subscribers and sequences, and each connection's queue.

``gateway/ws.py`` serves the sockets; this module holds what the rest of the gateway shares with
it: the ``Hub`` the app keeps under ``keys.HUB`` (the engine's updates are published to it, the
metrics read its counters), ``ChannelKind`` that route modules register, and ``Connection``.
It imports nothing of the gateway, so ``gateway/keys.py`` can name the hub's type without the
socket code and the app keys importing each other in a circle.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

import msgspec
from aiohttp import web

from engine.errors import CrowdexError
from engine.machine import AccountInfo

SEND_QUEUE_MAX = 4096  # messages waiting for one client before it is cut off
# Open sockets: each holds a file descriptor and a queue, so a client cannot open without end.
# Past either cap an upgrade is 429 rate_limited with Retry-After. Behind a proxy every client
# has the proxy's address unless it is trusted (--trusted-proxy, gateway/proxies.py): the
# per-peer cap is meant to be generous.
CONNECTIONS_MAX = 10_000
CONNECTIONS_PER_PEER_MAX = 256
CONNECTIONS_RETRY_AFTER_S = "5"

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
    # The engine's submit_nowait, looked up once per connection (ws.py sets it).
    submit: Callable[..., None] | None = None
    # With a hub, a send to an idle writer is written by the hub's flush (``Hub.defer``)
    # instead of waking the writer's task; ``deferred``: it is on the hub's list.
    hub: Hub | None = None
    deferred: bool = False

    def send(self, message: dict | bytes | None) -> None:
        """Queue a message (or its payload, already encoded in this connection's format); a
        full queue means a slow consumer, who is disconnected."""
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
            if self.hub is None or message is None:
                wakeup.set_result(None)
            elif not self.deferred:
                self.deferred = True
                self.hub.defer(self)

    def encode(self, message: dict) -> bytes:
        return _msgpack.encode(message) if self.binary else _json.encode(message)

    def encode_function(self) -> Callable[[Any], bytes]:
        """``encode`` without the choice made per message (the writer's)."""
        return _msgpack.encode if self.binary else _json.encode

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


class ChannelSubscribers(dict):
    """The hub's subscribers by channel key (a dict: ``wants`` is its ``__contains__``), which
    also counts its keys by kind: a key up to and with its first ``@`` or ``:`` ("orders@"
    for "orders@7", "book:" for "book:3"). So the engine asks once a batch, at the cost of a
    lookup, whether any channel of a kind has a key (``Hub.wants_any``): most batches have
    no listener on any account's ``orders@`` channel, and a scan of the keys would cost more
    than what it saves. Keys are added and removed only through the methods below."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[str, int] = {}  # kind -> how many keys of it

    def __setitem__(self, key: str, value: set) -> None:
        if key not in self:
            self._count(key, 1)
        super().__setitem__(key, value)

    def setdefault(self, key: str, default: set | None = None) -> set:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._count(key, -1)

    def pop(self, key: str, *default: Any) -> Any:  # type: ignore[override]
        if key in self:
            self._count(key, -1)
        return super().pop(key, *default)

    def clear(self) -> None:
        super().clear()
        self.kinds.clear()

    def _count(self, key: str, change: int) -> None:
        kind = kind_of(key)
        left = self.kinds.get(kind, 0) + change
        if left:
            self.kinds[kind] = left
        else:
            del self.kinds[kind]

    def _uncounted(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("ChannelSubscribers changes keys one at a time, counted by kind")

    update = popitem = __ior__ = _uncounted  # type: ignore[assignment]


def kind_of(key: str) -> str:
    """A channel key's kind: up to and with its first ``@`` or ``:`` (the key if neither)."""
    for at, char in enumerate(key):
        if char in "@:":
            return key[:at + 1]
    return key


class Hub:
    """Channels, their subscribers and per-channel sequences."""

    def __init__(self) -> None:
        self.kinds: dict[str, ChannelKind] = {}
        self.ops: dict[str, OpHandler] = {}
        # Ops decoded straight into their struct (a tagged union on "op"), by struct type;
        # the decoders are built once the ops are registered (``typed_decoders``).
        self.typed_ops: dict[type, OpHandler] = {}
        self._typed_decoders: tuple | None = None
        self.subscribers: ChannelSubscribers = ChannelSubscribers()
        self.sequences: dict[str, int] = {}
        self.connections_by_peer: dict[str, int] = {}  # open sockets by remote address
        self.connections = 0
        # For /metrics (gateway/metrics.py reads them at scrape time).
        self.opened = 0
        self.messages_received = 0
        # Connections with messages for an idle writer, written together by ``flush``: at the
        # end of the engine's batch (``publish_all``), or in the loop's next turn.
        self._deferred: list[Connection] = []
        self._flush_scheduled = False
        self.flusher: Callable[[Connection], None] | None = None  # ws.py's: write one's queue
        self.messages_inline = 0  # of them, orders and cancels taken as parsed (ws.py)
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

    def register_typed_op(self, schema: type, handler: OpHandler) -> None:
        """A fast way in for a pipelined op (``gateway/ws.py``): frames are first decoded
        straight into ``schema`` (a struct tagged on "op"), skipping the dict and its
        conversion, ~1.5 us an order; ``handler`` takes the struct as its message. A frame
        that does not decode so takes the general path (``register_op``'s handler), so only
        frames the general path would accept may be taken here, with the same outcome."""
        self.typed_ops[schema] = handler
        self._typed_decoders = None

    def typed_decoders(self) -> tuple | None:
        """(JSON decoder, msgpack decoder) of the typed ops' union; None without typed ops."""
        if not self.typed_ops:
            return None
        if self._typed_decoders is None:
            union = Union[tuple(self.typed_ops)]  # noqa: UP007 (a runtime union of types)
            self._typed_decoders = (msgspec.json.Decoder(union),
                                    msgspec.msgpack.Decoder(union))
        return self._typed_decoders

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
        # Encoded once per format for all the channel's subscribers, not once per socket.
        payloads: list[bytes | None] = [None, None]  # JSON, msgpack
        for connection in list(subscribers):
            payload = payloads[connection.binary]
            if payload is None:
                try:
                    payload = payloads[connection.binary] = connection.encode(message)
                except Exception:
                    # Never for the engine's updates; if ever, the socket's writer meets the
                    # message as before and ends that socket, not the sequencer publishing.
                    connection.send(message)
                    continue
            connection.send(payload)

    def publish_all(self, events: list[tuple[str, Any, int | None]]) -> None:
        """Publish a batch's updates (the engine's outbox), in the order they happened; then
        write what the batch queued (its acks too, answered just before), in this turn."""
        for channel, data, sequence in events:
            self.publish(channel, data, sequence)
        if self._deferred:
            self.flush()

    def defer(self, connection: Connection) -> None:
        """``connection`` has messages and its writer is idle: write them at the next
        ``flush``, with every other connection's, instead of a task wakeup each (a batch
        answers many connections at once)."""
        self._deferred.append(connection)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        """Write the deferred connections' queues (``flusher``; their writers if none)."""
        self._flush_scheduled = False
        deferred, self._deferred = self._deferred, []
        flusher = self.flusher
        for connection in deferred:
            connection.deferred = False
            if flusher is not None:
                flusher(connection)
            elif connection.wakeup is not None and not connection.wakeup.done():
                connection.wakeup.set_result(None)

    def wants_any(self, kind: str) -> bool:
        """Whether some channel of ``kind`` ("orders@", "book:") has a key in ``subscribers``,
        which is what ``wants`` asks of each channel: the engine's ``StateMachine.wants_any``."""
        return kind in self.subscribers.kinds

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
