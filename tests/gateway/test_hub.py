"""The hub encodes a published update once per format, for all of a channel's subscribers.

A market-data update goes to every socket subscribed to its channel; the hub encodes it once
as JSON and once as msgpack (only for the formats its subscribers use) and queues those bytes,
which the socket's writer sends as they are. What each subscriber reads is the message it was
sent before: tests/gateway/test_ws.py reads the updates over real sockets.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.hub import Connection, Hub, kind_of


def _connection(binary: bool) -> Connection:
    return Connection(request=None, ws=None, binary=binary)  # send() only queues


def test_one_encoding_per_format_whatever_the_subscribers():
    hub = Hub()
    json_subscribers = [_connection(False) for _ in range(3)]
    msgpack_subscribers = [_connection(True) for _ in range(2)]
    hub.subscribers["book:7"] = set(json_subscribers + msgpack_subscribers)
    data = {"changes": [["buy", 1000, 5]]}
    hub.publish("book:7", data, 12)
    message = {"channel": "book:7", "type": "update", "sequence": 12, "data": data}
    json_payloads = [c.outgoing.popleft() for c in json_subscribers]
    msgpack_payloads = [c.outgoing.popleft() for c in msgpack_subscribers]
    assert all(p is json_payloads[0] for p in json_payloads)  # encoded once
    assert all(p is msgpack_payloads[0] for p in msgpack_payloads)
    assert msgspec.json.decode(json_payloads[0]) == message
    assert msgspec.msgpack.decode(msgpack_payloads[0]) == message
    assert all(not c.outgoing for c in json_subscribers + msgpack_subscribers)


def test_a_private_channel_goes_out_under_its_public_name_and_sequences_count_on():
    hub = Hub()
    mine = _connection(False)
    hub.subscribers["orders@7"] = {mine}
    hub.publish("orders@7", {"order_id": 1})
    hub.publish("orders@7", {"order_id": 2})
    got = [msgspec.json.decode(mine.outgoing.popleft()) for _ in range(2)]
    assert [(m["channel"], m["sequence"], m["data"]["order_id"]) for m in got] == [
        ("orders", 1, 1), ("orders", 2, 2)]
    hub.publish("trades:3", {"trade_id": 9})  # nobody listens: numbered all the same
    assert hub.channel_sequence("trades:3") == 1


def test_an_update_that_cannot_be_encoded_does_not_stop_the_publisher():
    """Encoding moved from each socket's writer into ``publish``, which runs inside the
    sequencer: a failure there must stay the socket's (its writer meets the message as it
    did before), not stop the exchange."""
    hub = Hub()
    subscriber = _connection(True)
    hub.subscribers["book:7"] = {subscriber}
    hub.publish("book:7", {"changes": [[object()]]}, 3)  # no raise
    assert isinstance(subscriber.outgoing.popleft(), dict)


_KEYS = ["orders@7", "orders@8", "book:7", "book:8", "trades:7", "status", "orders:9"]
_CHANGES = st.lists(st.tuples(st.sampled_from(["subscribe", "set", "drop", "pop", "del"]),
                              st.sampled_from(_KEYS)), max_size=40)


@given(changes=_CHANGES)
def test_the_hub_knows_which_kinds_of_channel_have_a_key(changes):
    """``Hub.wants_any`` (the engine's question whether to build a kind of update at all)
    agrees with a scan of the subscribers' keys, whichever way keys come and go: subscribed
    as ws.py does, set, dropped with a connection (``Hub.drop``), popped or deleted."""
    hub = Hub()
    for change, key in changes:
        if change == "subscribe":
            connection = _connection(False)
            hub.subscribers.setdefault(key, set()).add(connection)
            connection.channels.add(key)
        elif change == "set":
            hub.subscribers[key] = set()
        elif change == "drop":  # a connection on ``key`` alone leaves: empty, it goes
            for connection in list(hub.subscribers.get(key, ())):
                hub.drop(connection)
        elif change == "pop":
            hub.subscribers.pop(key, None)
        elif key in hub.subscribers:
            del hub.subscribers[key]
        for kind in ("orders@", "book:", "trades:", "status", "orders:"):
            assert hub.wants_any(kind) == any(map(kind_of(kind).__eq__,
                                                  map(kind_of, hub.subscribers)))


def test_the_subscribers_refuse_uncounted_changes():
    hub = Hub()
    with pytest.raises(TypeError):
        hub.subscribers.update({"orders@7": set()})
    assert not hub.wants_any("orders@")
