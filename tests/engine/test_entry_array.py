"""A replay's entries decoded as one msgpack array (``engine.kernels.entries.gather_array``).

msgspec decodes a chunk's entries three times faster in one call of a list decoder than in a
call each. The entries are gathered behind an array header only if each entry's bytes are
exactly one msgpack value (``value_end``): msgpack values delimit themselves, so the array's
elements are then the entries, one each, and each decodes as it would alone. Otherwise the
entries are decoded one at a time, as before, and the decoder says what is wrong.
"""

from __future__ import annotations

import random
import struct

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine import markets_commands as mc
from engine.kernels.entries import gather_array, value_end
from engine.replay import _decoded
from tests.engine.msgpack_widths import pack
from tests.engine.test_entry_scan import entries

BAD = -1

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
    st.text(max_size=40), st.binary(max_size=40),
    st.builds(msgspec.msgpack.Ext, st.integers(0, 127), st.binary(max_size=20)))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=20), st.dictionaries(st.text(max_size=5), inner, max_size=20)),
    max_leaves=40)


def _end(data: bytes, start: int = 0, end: int | None = None) -> int:
    array = np.frombuffer(data, dtype=np.uint8)
    return value_end(array, start, len(data) if end is None else end)


@settings(max_examples=400, deadline=None)
@given(values, st.binary(max_size=4), st.data())
def test_a_value_ends_where_msgspec_wrote_it_to(value, trailing, data):
    """Every kind of value (maps, bins, exts, floats included): its end is found before
    what follows it, and no prefix of it is a whole value."""
    encoded = msgspec.msgpack.encode(value)
    assert _end(encoded) == len(encoded)
    assert _end(encoded + trailing) == len(encoded)
    assert _end(encoded, 0, data.draw(st.integers(0, len(encoded) - 1))) == BAD


@settings(max_examples=300, deadline=None)
@given(entries(), st.randoms(use_true_random=False))
def test_a_value_of_any_width_ends_where_it_was_written_to(entry, rng: random.Random):
    encoded = pack(entry[0], rng)
    assert _end(encoded) == len(encoded)
    assert _end(b"\x00" + encoded + b"\xc0", 1) == 1 + len(encoded)


@pytest.mark.parametrize("length", [0, 1, 255, 256, 65_535, 65_536])
def test_long_strs_bins_exts_arrays_and_maps_end_where_they_were_written_to(length):
    for value in ("x" * length, b"x" * length, msgspec.msgpack.Ext(5, b"x" * length),
                  [None] * length, {str(i): None for i in range(length)}):
        encoded = msgspec.msgpack.encode(value)
        assert _end(encoded) == len(encoded), (type(value), length)
        assert _end(encoded, 0, len(encoded) - 1) == BAD


@pytest.mark.parametrize("encoded", [
    b"\xc1", b"\xdd\xff\xff\xff\xff", b"\xdf\xff\xff\xff\xff\xc0", b"\xdb\xff\xff\xff\xff",
    b"\xc6\x00\x00\x00\x05ab", b"\xd8\x01", b"\xcb\x00", b"\x91", b"\x81\xc0"])
def test_what_is_not_a_whole_value_has_no_end(encoded):
    assert _end(encoded) == BAD


def _payloads(rng: random.Random, count: int) -> list[bytes]:
    payloads = []
    for i in range(count):
        command = rng.choice([mc.PlaceOrder(3, "sell", "limit", 10 + i, 5, client_order_id="a"),
                              mc.CancelOrder(i + 1), mc.AmendOrder(7, price=9)])
        key = rng.choice([None, f"key-{i}"])
        payloads.append(c.encode_entry(c.Entry(1_767_225_600_000_000 + i, 4, command, key)))
    return payloads


def _journal_bytes(payloads: list[bytes], rng: random.Random):
    """The payloads with bytes between them (a journal's record headers), and their bounds."""
    data, starts, ends = bytearray(), [], []
    for payload in payloads:
        data += bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
        starts.append(len(data))
        data += payload
        ends.append(len(data))
    return bytes(data), np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64)


@settings(max_examples=100, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 40))
def test_gathered_entries_decode_as_each_alone(rng: random.Random, count: int):
    payloads = _payloads(rng, count)
    data, starts, ends = _journal_bytes(payloads, rng)
    out = np.empty(5 + int((ends - starts).sum()), dtype=np.uint8)
    length = gather_array(np.frombuffer(data, dtype=np.uint8), starts, ends, out)
    assert length == len(out)
    assert out[:5].tobytes() == b"\xdd" + struct.pack(">I", count)
    assert c.decode_entry_array(out) == [c.decode_entry(p) for p in payloads]
    assert _decoded(data, np.frombuffer(data, dtype=np.uint8), starts, ends) == [
        c.decode_entry(p) for p in payloads]


@settings(max_examples=200, deadline=None)
@given(st.lists(entries(), min_size=1, max_size=5), st.randoms(use_true_random=False),
       st.data())
def test_entries_that_are_not_one_value_each_are_decoded_one_at_a_time(batch, rng, data):
    """Two broken payloads could make a whole array between them (one short of a value, the
    next one over): the gather refuses any entry that is not exactly one value, and then
    each is decoded alone, which raises on the first that is broken, as it always did."""
    payloads = [bytearray(pack(value, rng)) for value, _ in batch]
    at = data.draw(st.integers(0, len(payloads) - 1))
    if data.draw(st.booleans()):
        payloads[at] += bytes(data.draw(st.binary(min_size=1, max_size=3)))
    else:
        del payloads[at][data.draw(st.integers(0, len(payloads[at]) - 1)):]
    payloads = [bytes(p) for p in payloads]
    data_bytes, starts, ends = _journal_bytes(payloads, rng)
    view = np.frombuffer(data_bytes, dtype=np.uint8)
    out = np.empty(5 + int((ends - starts).sum()), dtype=np.uint8)
    assert gather_array(view, starts, ends, out) == BAD
    try:
        alone = [c.decode_entry(p) for p in payloads]
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        with pytest.raises(type(error)):
            _decoded(data_bytes, view, starts, ends)
    else:  # pragma: no cover - a broken payload always fails alone
        raise AssertionError(f"decoded alone: {alone}")
