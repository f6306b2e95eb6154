"""A msgpack writer that may give each int, str and array any width the format allows.

msgspec writes the shortest form; another writer (or an older one) may not, and a reader must
take them all. The tests of the journal's compiled entry reader (``engine.kernels.entries``)
write entries with this, choosing each width at random, and check that msgspec reads them as
the entries they are.
"""

from __future__ import annotations

import random
import struct
from typing import Any


def _int_forms(value: int) -> list[bytes]:
    forms = []
    if 0 <= value <= 0x7F:
        forms.append(bytes([value]))
    if -32 <= value < 0:
        forms.append(struct.pack(">b", value))
    for code, fmt, lo, hi in ((0xCC, ">B", 0, 2**8), (0xCD, ">H", 0, 2**16),
                              (0xCE, ">I", 0, 2**32), (0xCF, ">Q", 0, 2**64),
                              (0xD0, ">b", -(2**7), 2**7), (0xD1, ">h", -(2**15), 2**15),
                              (0xD2, ">i", -(2**31), 2**31), (0xD3, ">q", -(2**63), 2**63)):
        if lo <= value < hi:
            forms.append(bytes([code]) + struct.pack(fmt, value))
    return forms


def _length_forms(length: int, fix_lo: int, fix_max: int,
                  longs: tuple[tuple[int, str], ...]) -> list[bytes]:
    forms = [bytes([fix_lo + length])] if length <= fix_max else []
    for code, fmt in longs:
        if length < 2 ** (8 * struct.calcsize(fmt)):
            forms.append(bytes([code]) + struct.pack(fmt, length))
    return forms


def pack(value: Any, rng: random.Random) -> bytes:
    """``value`` (None, bool, int, float, str, list of these) as msgpack, each int,
    str and array width at random."""
    if value is None:
        return b"\xc0"
    if isinstance(value, bool):
        return b"\xc3" if value else b"\xc2"
    if isinstance(value, int):
        return rng.choice(_int_forms(value))
    if isinstance(value, float):
        return b"\xcb" + struct.pack(">d", value)
    if isinstance(value, str):
        raw = value.encode()
        head = _length_forms(len(raw), 0xA0, 31, ((0xD9, ">B"), (0xDA, ">H"), (0xDB, ">I")))
        return rng.choice(head) + raw
    if isinstance(value, list):
        head = _length_forms(len(value), 0x90, 15, ((0xDC, ">H"), (0xDD, ">I")))
        return rng.choice(head) + b"".join(pack(item, rng) for item in value)
    raise TypeError(f"cannot pack {type(value).__name__}")
