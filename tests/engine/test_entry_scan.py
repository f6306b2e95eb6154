"""The compiled reader of journal entries (``engine.kernels.entries``) against msgspec.

It may say ``KIND_OTHER`` of anything (the entry is then decoded by msgspec, as before), but
whatever it reads as an order or a cancel must be exactly the entry msgspec decodes, as the
markets would queue it (``engine.markets._Queue``); and it must read every plain order and
cancel, written with any width msgpack allows for each int, str and array, with or without
the fields a decoder fills with their defaults. Broken and unknown payloads are ``OTHER``.
"""

from __future__ import annotations

import copy
import random

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine import markets_commands as mc
from engine.kernels import codes as k
from engine.kernels.entries import (
    KIND_CANCEL,
    KIND_OTHER,
    KIND_PLACE,
    scan_entries,
    scan_with_client_ids,
)
from engine.markets import SIDES, TIFS, _Queue
from tests.engine.msgpack_widths import pack

INT64 = (-(2**63), 2**63 - 1)
EDGES = [0, 1, 31, 127, 128, 255, 256, 65_535, 65_536, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
         2**53, 2**63 - 1, -1, -31, -32, -33, -127, -128, -129, -(2**15), -(2**15) - 1,
         -(2**31), -(2**31) - 1, -(2**63)]

ints = st.one_of(st.integers(*INT64), st.sampled_from(EDGES))
odd = st.one_of(st.integers(2**63, 2**64 - 1), st.floats(allow_nan=False), st.none(),
                st.text(max_size=3), st.booleans())


def _mostly(good: st.SearchStrategy, bad: st.SearchStrategy,
            odds: int = 8) -> st.SearchStrategy:
    """One of ``good`` but once in ``odds`` (one_of would not weigh a repeated strategy)."""
    return st.tuples(st.integers(1, odds), good, bad).map(lambda t: t[2] if t[0] == 1 else t[1])


values = _mostly(ints, odd, 16)


words = {
    "side": _mostly(st.sampled_from(["buy", "sell"]), st.sampled_from(["hold", "BUY", ""])),
    "type": _mostly(st.sampled_from(["limit", "market"]), st.just("stop")),
    "tif": _mostly(st.sampled_from(["gtc", "ioc", "fok"]), st.just("day")),
    "stp": _mostly(st.sampled_from(list(k.STP_BY_NAME)), st.just("none")),
}
place_values = st.builds(
    lambda *fields: ["place_order", *fields], values, words["side"], words["type"], values,
    values, words["tif"], _mostly(st.booleans(), st.just(1)), words["stp"],
    # A client_order_id (None the default), or something msgspec refuses there; ASCII ones
    # the replay's reader takes.
    st.one_of(st.none(), st.sampled_from(["", "a", 0, 5, -1]), st.text(max_size=40),
              st.text(st.characters(max_codepoint=127), max_size=40), ints))
cancel_values = st.builds(lambda oid: ["cancel_order", oid], values)
other_values = st.sampled_from([["tick"], ["deposit", 4, 100, "ref"], ["run_auction", 2],
                                ["amend_order", 3, None, 5], ["place_orders", 1],
                                ["cancel_order"], "cancel_order", 7])
commands = _mostly(st.one_of(place_values, cancel_values), other_values, 5)


@st.composite
def entries(draw: st.DrawFn) -> tuple[list, bool]:
    """An entry as plain values, maybe with fields left out or extra ones; and whether it is
    the whole entry (no extra element anywhere)."""
    command = copy.deepcopy(draw(commands))  # sampled lists are shared: append to a copy
    if isinstance(command, list) and command[0] == "place_order":
        # Whole, or the first fields: the decoder gives the rest their defaults.
        command = command[:draw(_mostly(st.just(10), st.integers(6, 9), 2))]
    key = _mostly(st.none(), st.text(max_size=8), 3)
    entry = [draw(values), draw(values), command, draw(key), draw(key)]
    entry = entry[:draw(st.integers(3, 5))]
    extra = draw(st.integers(0, 8)) == 0
    if extra:
        where = entry[2] if isinstance(entry[2], list) and draw(st.booleans()) else entry
        where.append(draw(st.one_of(st.none(), ints)))
    return entry, not extra


def _bounds(payloads: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ends = np.cumsum([len(p) for p in payloads], dtype=np.int64)
    starts = ends - np.array([len(p) for p in payloads], dtype=np.int64)
    return np.frombuffer(b"".join(payloads) or b"\0", dtype=np.uint8), starts, ends


def _scan(payloads: list[bytes]) -> list[tuple[int, int, tuple]]:
    """(kind, time, command row but its ``pos_slot``, the engine's to fill) of each payload,
    read in one call from one buffer."""
    rows, times, kinds = scan_entries(*_bounds(payloads))
    return list(zip(kinds.tolist(), times.tolist(), [row[:-1] for row in rows.tolist()],
                    strict=True))


def _scan_with_ids(payloads: list[bytes]) -> list[tuple[int, int, tuple, str | None]]:
    """``_scan`` by the replay's reader, with each entry's client_order_id as read."""
    rows, times, kinds, client_ids = scan_with_client_ids(*_bounds(payloads))
    named = np.flatnonzero(client_ids.present())
    ids: list[str | None] = [None] * len(payloads)
    for at, cid in zip(named.tolist(), client_ids.strings(named), strict=True):
        ids[at] = cid
    return list(zip(kinds.tolist(), times.tolist(), [row[:-1] for row in rows.tolist()], ids,
                    strict=True))


def _decoded(payload: bytes) -> c.Entry | None:
    try:
        return c.decode_entry(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _in_int64(*numbers: int) -> bool:
    return all(INT64[0] <= n <= INT64[1] for n in numbers)


def _plain(entry: c.Entry | None, ids: bool = False) -> bool:
    """Whether the entry is an order or cancel the reader must take: no key, no hash, no
    client_order_id (``ids``: or an ASCII one), only the words the markets know, ints that
    fit int64."""
    if entry is None or entry.idempotency_key is not None or entry.request_hash is not None:
        return False
    cmd = entry.command
    if not _in_int64(entry.time_us, entry.actor):
        return False
    if type(cmd) is mc.CancelOrder:
        return _in_int64(cmd.order_id)
    cid = getattr(cmd, "client_order_id", None)
    return (type(cmd) is mc.PlaceOrder and (cid is None or ids and cid.isascii())
            and cmd.side in SIDES
            and cmd.order_type in ("limit", "market") and cmd.time_in_force in TIFS
            and cmd.self_trade_prevention in k.STP_BY_NAME
            and _in_int64(cmd.instrument_id, cmd.price, cmd.quantity))


def _queued(entry: c.Entry) -> tuple[int, int, tuple]:
    """(kind, time, row) as the markets queue the entry's command."""
    queue = _Queue()
    if type(entry.command) is mc.PlaceOrder:
        queue.place(0, 0, entry.actor, entry.command, pos_slot=0)
        kind = KIND_PLACE
    else:
        queue.cancel(0, 0, entry.actor, entry.command.order_id)
        kind = KIND_CANCEL
    return kind, entry.time_us, queue.array()[0].tolist()[:-1]


def _check(payloads: list[bytes], whole: list[bool]) -> None:
    """Both readers: the live batch's, which leaves client_order_ids to msgspec, and the
    replay's, which reads ASCII ones too and must give exactly the string msgspec decodes."""
    for payload, is_whole, got, (*with_ids, cid) in zip(
            payloads, whole, _scan(payloads), _scan_with_ids(payloads), strict=True):
        entry = _decoded(payload)
        if got[0] != KIND_OTHER:
            assert entry is not None and _plain(entry), payload.hex()
            assert got == _queued(entry), payload.hex()
        elif is_whole and _plain(entry):
            raise AssertionError(f"a plain entry was not read: {payload.hex()} {entry}")
        if with_ids[0] != KIND_OTHER:
            assert entry is not None and _plain(entry, ids=True), payload.hex()
            assert tuple(with_ids) == _queued(entry), payload.hex()
            assert cid == getattr(entry.command, "client_order_id", None), payload.hex()
        else:
            assert cid is None
            if is_whole and _plain(entry, ids=True):
                raise AssertionError(f"an order was not read with its id: {payload.hex()}")


@settings(max_examples=400, deadline=None)
@given(st.lists(entries(), min_size=1, max_size=6), st.randoms(use_true_random=False))
def test_entries_of_any_width_read_as_msgspec_decodes_them(batch, rng: random.Random):
    _check([pack(value, rng) for value, _ in batch], [whole for _, whole in batch])


@settings(max_examples=300, deadline=None)
@given(entries(), st.randoms(use_true_random=False), st.data())
def test_broken_payloads_are_left_to_msgspec(entry, rng: random.Random, data: st.DataObject):
    payload = bytearray(pack(entry[0], rng))
    how = data.draw(st.sampled_from(["cut", "flip", "append"]))
    if how == "cut":
        payload = payload[:data.draw(st.integers(0, len(payload) - 1))]
    elif how == "flip":
        at = data.draw(st.integers(0, len(payload) - 1))
        payload[at] = data.draw(st.integers(0, 255))
    else:
        payload += bytes(data.draw(st.binary(min_size=1, max_size=3)))
    _check([bytes(payload)], [False])


def test_msgspecs_own_encoding_of_orders_and_cancels_is_read():
    entries = [c.Entry(1_767_225_600_000_000, 5, mc.PlaceOrder(1, "buy", "limit", 1000, 3)),
               c.Entry(7, 9, mc.PlaceOrder(2, "sell", "market", 0, 2**40, "ioc", True,
                                           "decrement")),
               c.Entry(-3, 2**63 - 1, mc.CancelOrder(-(2**63)))]
    got = _scan([c.encode_entry(e) for e in entries])
    assert got == [_queued(e) for e in entries]
    assert [kind for kind, _, _ in got] == [KIND_PLACE, KIND_PLACE, KIND_CANCEL]


def test_what_the_columns_cannot_say_is_other():
    """An idempotency key, a request hash, a client_order_id, another command: msgspec's."""
    order = mc.PlaceOrder(1, "buy", "limit", 1000, 3)
    entries = [c.Entry(1, 5, order, "key", "hash"), c.Entry(1, 5, order, None, "hash"),
               c.Entry(1, 5, mc.PlaceOrder(1, "buy", "limit", 1000, 3, client_order_id="a")),
               c.Entry(1, 5, mc.PlaceOrder(1, "buy", "limit", 1000, 3, client_order_id="")),
               c.Entry(1, 5, c.Tick()), c.Entry(1, 5, mc.AmendOrder(3, 10, None))]
    got = _scan([c.encode_entry(e) for e in entries] + [b"", b"\x95", b"\xc1"])
    assert [kind for kind, _, _ in got] == [KIND_OTHER] * 9


def test_the_replay_reads_ascii_client_order_ids_aside():
    """Of the same entries, the replay's reader takes the orders with an ASCII
    client_order_id (the empty one too); one that is not ASCII stays msgspec's."""
    def order(cid: str | None) -> mc.PlaceOrder:
        return mc.PlaceOrder(1, "buy", "limit", 1000, 3, client_order_id=cid)

    long_id = "w12-" + "9" * 300  # a str 16 header
    entries = [c.Entry(1, 5, order("a")), c.Entry(1, 5, order("")), c.Entry(1, 5, order("é")),
               c.Entry(1, 5, order("w0-17"), "key", "hash"), c.Entry(2, 6, order(long_id)),
               c.Entry(2, 6, order(None))]
    got = _scan_with_ids([c.encode_entry(e) for e in entries])
    assert [(kind, cid) for kind, _, _, cid in got] == [
        (KIND_PLACE, "a"), (KIND_PLACE, ""), (KIND_OTHER, None), (KIND_OTHER, None),
        (KIND_PLACE, long_id), (KIND_PLACE, None)]
    assert [row for _, _, row, _ in got][4] == _queued(entries[4])[2]
    # An id holding a NUL (the strings are made another way then), with others and alone.
    with_nul = [c.Entry(1, 5, order(cid)) for cid in ("b", "x\0y", "\0", "")]
    assert [cid for *_, cid in _scan_with_ids([c.encode_entry(e) for e in with_nul])] == [
        "b", "x\0y", "\0", ""]
    assert [cid for *_, cid in _scan_with_ids([c.encode_entry(with_nul[2])])] == ["\0"]
