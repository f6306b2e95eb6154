"""The compiled record walk (engine.kernels.records) agrees with zlib and the journal's format.

The journal's own tests (test_journal.py) cover what it does with damage; these check the two
things it takes on trust from the kernel: the CRC is zlib's, and the walk stops exactly at the
first record that is not the next one, for each reason.
"""

from __future__ import annotations

import zlib

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.journal import _encode_record
from engine.kernels import records


def _crc(data: bytes, start: int = 0, end: int | None = None) -> int:
    buffer = np.frombuffer(data, dtype=np.uint8) if data else np.zeros(0, dtype=np.uint8)
    return records.crc32(buffer, start, len(data) if end is None else end, records.CRC_TABLE)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.data())
def test_crc32_is_zlibs(data: bytes, draw: st.DataObject) -> None:
    start = draw.draw(st.integers(0, len(data)))
    end = draw.draw(st.integers(start, len(data)))
    assert _crc(data, start, end) == zlib.crc32(data[start:end])


def _walk(data: bytes, first_sequence: int, payload_max: int = 1 << 20) -> tuple:
    buffer = np.frombuffer(data, dtype=np.uint8)
    starts = np.zeros(len(data) // records.RECORD_HEADER_SIZE + 1, dtype=np.int64)
    count, stop, why = records.walk(buffer, 0, len(data), first_sequence, payload_max, starts,
                                    records.CRC_TABLE)
    return count, stop, why, starts[:count].tolist()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20), st.integers(1, 1 << 40))
def test_walk_finds_every_record(payloads: list[bytes], first: int) -> None:
    encoded = [_encode_record(first + i, p) for i, p in enumerate(payloads)]
    offsets = np.cumsum([0] + [len(e) for e in encoded]).tolist()
    count, stop, why, starts = _walk(b"".join(encoded), first)
    assert (count, stop, why, starts) == (len(payloads), offsets[-1], records.WALK_END,
                                          offsets[:-1])


def test_walk_stops_at_the_first_record_that_is_not_the_next() -> None:
    good = _encode_record(7, b"abc") + _encode_record(8, b"defg")
    at = len(good)
    bad_crc = bytearray(_encode_record(9, b"xyz"))
    bad_crc[-1] ^= 1
    cases = {
        records.WALK_CRC: bytes(bad_crc),
        records.WALK_SEQUENCE: _encode_record(10, b"xyz"),
        records.WALK_TRUNCATED_HEADER: _encode_record(9, b"xyz")[:10],
        records.WALK_TRUNCATED_PAYLOAD: _encode_record(9, b"xyz")[:-1],
        records.WALK_TOO_LONG: _encode_record(9, b"x" * 40),
    }
    for why, tail in cases.items():
        count, stop, got, _ = _walk(good + tail, 7, payload_max=32)
        assert (count, stop, got) == (2, at, why), why


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=30),
       st.integers(1, (1 << 63) - 100))
def test_a_framed_batch_is_the_journals_records(payloads: list[bytes], first: int) -> None:
    """``journal.frame_payloads`` (the sequencer's framing of every batch) writes byte for
    byte the journal's one-record encoding, for any sequence (past 32 bits too) and payloads
    of any length, empty ones included: by the compiled pass (``records.frame_into``) and
    by the loop it takes for short batches."""
    from unittest import mock

    from engine import journal

    expected = b"".join(_encode_record(first + i, p) for i, p in enumerate(payloads))
    for compiled_from in (1, 1 << 30):  # every batch compiled, none
        with mock.patch.object(journal, "FRAME_COMPILED_MIN", compiled_from):
            framed = journal.frame_payloads(first, payloads)
        assert (framed.first_sequence, framed.count) == (first, len(payloads))
        assert framed.data == expected
