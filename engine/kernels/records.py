"""The journal's record walk, compiled: every record of a segment found and its CRC checked.

A journal segment is checked twice on the way to a replay: when the journal opens (to find a
torn tail and refuse damage) and again as it is read back (damage done since). In Python each
record costs a header unpack, a slice and a ``zlib.crc32`` call per pass, ~1 µs in all: at a
replay of a million commands a second that alone would be the budget. ``walk`` does a segment's
records in one compiled loop; the journal (``engine.journal``) keeps the format, the error
messages and every decision about damage, and only asks here where the records are.

The CRC is CRC-32 (IEEE 802.3, reflected, the one ``zlib.crc32`` computes), eight bytes a step
(slicing by 8, eight 256-entry tables): about 0.5 ns a byte here, a quarter of the byte-at-a-time
loop's, so a command record costs ~0.05 µs; the test checks it against zlib on random data.
"""

from __future__ import annotations

import numpy as np

from engine.kernels.jit import kernel

RECORD_HEADER_SIZE = 16  # u32 payload length, u32 CRC, u64 sequence (engine.journal's format)
CRC_START = 8  # the CRC covers the sequence field and the payload

# What ``walk`` stopped at (anything but WALK_END is the offset of a record that is not one).
WALK_END = 0  # every byte up to the limit is records
WALK_TRUNCATED_HEADER = 1
WALK_TOO_LONG = 2  # a payload length over the maximum
WALK_TRUNCATED_PAYLOAD = 3
WALK_CRC = 4
WALK_SEQUENCE = 5  # a checksummed record with another sequence than the next one


def _crc_table() -> np.ndarray:
    """The tables of slicing by 8: row 0 is the byte-at-a-time table, row k the CRC of a
    byte followed by k zero bytes."""
    table = np.zeros((8, 256), dtype=np.uint32)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else (c >> 1)
        table[0, n] = c
    for k in range(1, 8):
        for n in range(256):
            previous = int(table[k - 1, n])
            table[k, n] = (previous >> 8) ^ int(table[0, previous & 0xFF])
    return table


CRC_TABLE = _crc_table()


@kernel(inline=True)
def _i64(value):  # int64 throughout: numba would take int64 ^ uint64 to float64
    return np.int64(value)


@kernel
def crc32(data: np.ndarray, start: int, end: int, table: np.ndarray) -> int:
    """CRC-32 of ``data[start:end]`` (uint8), as ``zlib.crc32`` computes it: eight bytes a
    step through ``CRC_TABLE`` (slicing by 8), the last few one at a time."""
    crc = _i64(0xFFFFFFFF)
    i = start
    while i + 8 <= end:
        one = crc ^ (_i64(data[i]) | (_i64(data[i + 1]) << 8) | (_i64(data[i + 2]) << 16)
                     | (_i64(data[i + 3]) << 24))
        two = (_i64(data[i + 4]) | (_i64(data[i + 5]) << 8) | (_i64(data[i + 6]) << 16)
               | (_i64(data[i + 7]) << 24))
        crc = (_i64(table[7, one & 0xFF]) ^ _i64(table[6, (one >> 8) & 0xFF])
               ^ _i64(table[5, (one >> 16) & 0xFF]) ^ _i64(table[4, one >> 24])
               ^ _i64(table[3, two & 0xFF]) ^ _i64(table[2, (two >> 8) & 0xFF])
               ^ _i64(table[1, (two >> 16) & 0xFF]) ^ _i64(table[0, two >> 24]))
        i += 8
    while i < end:
        crc = _i64(table[0, (crc ^ _i64(data[i])) & 0xFF]) ^ (crc >> 8)
        i += 1
    return crc ^ 0xFFFFFFFF


@kernel
def _u32(data: np.ndarray, at: int) -> int:
    return (int(data[at]) | (int(data[at + 1]) << 8) | (int(data[at + 2]) << 16)
            | (int(data[at + 3]) << 24))


@kernel
def walk(data: np.ndarray, offset: int, limit: int, first_sequence: int, payload_max: int,
         starts: np.ndarray, table: np.ndarray) -> tuple[int, int, int]:
    """Walk the records of ``data[offset:limit]`` (uint8), the first numbered
    ``first_sequence``; write each record's offset into ``starts``.

    Returns ``(count, stop offset, why)``: ``why`` is ``WALK_END`` when every byte up to
    ``limit`` was records, else the reason the record at the stop offset is not the next one.
    ``starts`` must have room for ``(limit - offset) // RECORD_HEADER_SIZE`` offsets.
    """
    count = 0
    expected = first_sequence
    while offset < limit:
        if offset + RECORD_HEADER_SIZE > limit:
            return count, offset, WALK_TRUNCATED_HEADER
        length = _u32(data, offset)
        if length > payload_max:
            return count, offset, WALK_TOO_LONG
        end = offset + RECORD_HEADER_SIZE + length
        if end > limit:
            return count, offset, WALK_TRUNCATED_PAYLOAD
        if crc32(data, offset + CRC_START, end, table) != _u32(data, offset + 4):
            return count, offset, WALK_CRC
        sequence = _u32(data, offset + 8) | (_u32(data, offset + 12) << 32)
        if sequence != expected:
            return count, offset, WALK_SEQUENCE
        starts[count] = offset
        count += 1
        expected += 1
        offset = end
    return count, offset, WALK_END


@kernel
def frame_into(payloads: np.ndarray, lengths: np.ndarray, first_sequence: int,
               out: np.ndarray, table: np.ndarray) -> None:
    """Frame records as ``engine.journal`` writes them: the payloads ``payloads`` (uint8,
    one after another, ``lengths`` bytes each), numbered from ``first_sequence``, each
    written into ``out`` (uint8, ``RECORD_HEADER_SIZE`` bytes a record more than the
    payloads) after its header (length, CRC, sequence, little-endian). The CRC covers the
    sequence field and the payload, which lie together in ``out``: one pass over each."""
    at = 0
    source = 0
    for i in range(len(lengths)):
        length = lengths[i]
        sequence = first_sequence + i
        for b in range(4):
            out[at + b] = (length >> (8 * b)) & 0xFF
        for b in range(8):
            out[at + CRC_START + b] = (sequence >> (8 * b)) & 0xFF
        start = at + RECORD_HEADER_SIZE
        for b in range(length):  # (a slice's copy would need numba's runtime)
            out[start + b] = payloads[source + b]
        crc = crc32(out, at + CRC_START, start + length, table)
        for b in range(4):
            out[at + 4 + b] = (crc >> (8 * b)) & 0xFF
        at = start + length
        source += length
