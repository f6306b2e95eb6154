"""Journal entries of orders and cancels read straight into command columns, compiled.

A replay decodes every journal entry before it applies it. msgspec does that at C speed, but
each entry then becomes Python objects (an ``Entry``, its command, their strings) that the
markets turn back into numbers one by one, ~2 µs an order in all: at a replay of a million
commands a second, twice the budget. ``scan`` reads the msgpack of a chunk of entries
(``engine.commands.Entry``: ``[time_us, actor, [tag, fields...], idempotency_key,
request_hash]``) in one compiled loop over the journal's bytes, and writes each entry that is
a plain ``PlaceOrder`` or ``CancelOrder`` into a ``COMMAND_DTYPE`` row, its time and its kind.

A replay also reads an order's client_order_id (``scan_with_client_ids``), if it is ASCII:
as the bounds of its bytes, kept aside from the columns (``ClientIds``), made a string only
for the orders whose lifecycle keeps it. A live batch's scan does not (``scan_entries``).

Exactness before speed: an entry is recognised only in the exact shapes msgspec itself
decodes to those commands, with nothing the columns cannot say: an idempotency key, a request
hash, a client_order_id not asked for or not ASCII, a word other than the known ones, an int
beyond int64, a float, an extra element or a trailing byte all make it ``KIND_OTHER``, and
the caller decodes and applies that entry through msgspec and the state machine as before.
So a journal can never replay differently through this path; at worst more slowly. Every
msgpack int width is read (msgspec writes the shortest, older or other writers may not), and
so is every str width.
"""

from __future__ import annotations

import numpy as np

from engine.kernels import codes as k
from engine.kernels.jit import kernel
from engine.kernels.layout import COMMAND_DTYPE

KIND_OTHER = 0  # anything but the two shapes below: decode it with msgspec
KIND_PLACE = 1
KIND_CANCEL = 2

# The words the scanner knows, each with what it is and the code it stands for.
_W_TAG_PLACE, _W_TAG_CANCEL, _W_SIDE, _W_TYPE, _W_TIF, _W_STP = 1, 2, 3, 4, 5, 6
_VOCABULARY = (
    ("place_order", _W_TAG_PLACE, 0), ("cancel_order", _W_TAG_CANCEL, 0),
    ("buy", _W_SIDE, k.SIDE_BUY), ("sell", _W_SIDE, k.SIDE_SELL),
    ("limit", _W_TYPE, k.TYPE_LIMIT), ("market", _W_TYPE, k.TYPE_MARKET),
    ("gtc", _W_TIF, k.TIF_GTC), ("ioc", _W_TIF, k.TIF_IOC), ("fok", _W_TIF, k.TIF_FOK),
    *((name, _W_STP, code) for name, code in k.STP_BY_NAME.items()),
)
WORDS = np.frombuffer(b"".join(w.encode() for w, _, _ in _VOCABULARY), dtype=np.uint8).copy()
WORD_STARTS = np.cumsum([0] + [len(w) for w, _, _ in _VOCABULARY]).astype(np.int64)
WORD_KINDS = np.array([kind for _, kind, _ in _VOCABULARY], dtype=np.int64)
WORD_CODES = np.array([code for _, _, code in _VOCABULARY], dtype=np.int64)
# PlaceOrder's defaults (engine.markets_commands), for fields an entry leaves out.
_DEFAULT_TIF = k.TIF_GTC
_DEFAULT_STP = k.STP_BY_NAME["cancel_newest"]

_BAD = -1  # an offset that says "not what was expected"
# Columns of a scan's client_order_ids (``scan``'s ``cid_bounds``).
CID_START, CID_END, CID_HASH = 0, 1, 2


@kernel
def _uint(data, at, size):
    """The big-endian unsigned int of ``size`` bytes at ``at`` (size < 8, or a top byte below
    0x80: it fits int64)."""
    value = 0
    for i in range(at, at + size):
        value = value * 256 + int(data[i])
    return value


@kernel
def read_int(data, at, end):
    """(value, next offset) of the msgpack int at ``at``; next offset ``_BAD`` if there is
    none there or it does not fit int64."""
    if at >= end:
        return 0, _BAD
    b = int(data[at])
    if b <= 0x7F:
        return b, at + 1
    if b >= 0xE0:
        return b - 256, at + 1
    if 0xCC <= b <= 0xCF:  # uint 8, 16, 32, 64
        size = 1 << (b - 0xCC)
        if at + 1 + size > end or (size == 8 and int(data[at + 1]) >= 0x80):
            return 0, _BAD
        return _uint(data, at + 1, size), at + 1 + size
    if 0xD0 <= b <= 0xD3:  # int 8, 16, 32, 64
        size = 1 << (b - 0xD0)
        if at + 1 + size > end:
            return 0, _BAD
        top = int(data[at + 1])
        rest = _uint(data, at + 2, size - 1)
        if top >= 0x80:
            top -= 256
        return top * (1 << (8 * (size - 1))) + rest, at + 1 + size
    return 0, _BAD


@kernel
def _header(data, at, end, fix_lo, fix_mask, long_lo, long_sizes):
    """(length, next offset) of a msgpack str or array header: the fix form (``fix_lo`` +
    the length under ``fix_mask``), or a long form from ``long_lo`` on, with length fields
    of 1 << (``long_sizes`` - 1 - j) ... bytes (str: 1, 2, 4 from 0xd9; array: 2, 4 from
    0xdc)."""
    if at >= end:
        return 0, _BAD
    b = int(data[at])
    if fix_lo <= b <= fix_lo + fix_mask:
        return b - fix_lo, at + 1
    j = b - long_lo
    if 0 <= j < long_sizes:
        size = 1 << (j + 3 - long_sizes)  # the last long form has a 4-byte length
        if at + 1 + size > end:
            return 0, _BAD
        return _uint(data, at + 1, size), at + 1 + size
    return 0, _BAD


@kernel
def _array(data, at, end):
    """(length, next offset) of an array header (fixarray, array 16, array 32)."""
    return _header(data, at, end, 0x90, 0x0F, 0xDC, 2)


@kernel
def _word(data, at, end, words, word_starts, word_kinds, kind):
    """(code, next offset) of the str at ``at`` if it is a known word of ``kind``."""
    length, start = _header(data, at, end, 0xA0, 0x1F, 0xD9, 3)
    if start == _BAD or start + length > end:
        return 0, _BAD
    for w in range(len(word_kinds)):
        if word_kinds[w] != kind or word_starts[w + 1] - word_starts[w] != length:
            continue
        same = True
        for i in range(length):
            if data[start + i] != words[word_starts[w] + i]:
                same = False
                break
        if same:
            return w, start + length
    return 0, _BAD


@kernel
def _place(data, at, end, fields, words, word_starts, word_kinds, word_codes, row, cid_bounds,
           entry):
    """PlaceOrder's ``fields`` (5 to 9) after its tag into ``row``; the next offset. A
    client_order_id (ASCII) is read only where ``cid_bounds`` has rows: its bytes' bounds go
    into row ``entry``."""
    instrument, at = read_int(data, at, end)
    if at == _BAD:
        return _BAD
    row["instrument"] = instrument
    w, at = _word(data, at, end, words, word_starts, word_kinds, _W_SIDE)
    if at == _BAD:
        return _BAD
    row["side"] = word_codes[w]
    w, at = _word(data, at, end, words, word_starts, word_kinds, _W_TYPE)
    if at == _BAD:
        return _BAD
    row["type"] = word_codes[w]
    price, at = read_int(data, at, end)
    if at == _BAD:
        return _BAD
    row["price"] = price
    qty, at = read_int(data, at, end)
    row["qty"] = qty
    row["tif"] = _DEFAULT_TIF
    row["post_only"] = 0
    row["stp"] = _DEFAULT_STP
    if at == _BAD or fields == 5:
        return at
    w, at = _word(data, at, end, words, word_starts, word_kinds, _W_TIF)
    if at == _BAD:
        return _BAD
    row["tif"] = word_codes[w]
    if fields == 6:
        return at
    if at >= end or (int(data[at]) != 0xC2 and int(data[at]) != 0xC3):
        return _BAD
    row["post_only"] = int(data[at]) - 0xC2
    at += 1
    if fields == 7:
        return at
    w, at = _word(data, at, end, words, word_starts, word_kinds, _W_STP)
    if at == _BAD:
        return _BAD
    row["stp"] = word_codes[w]
    if fields == 8:
        return at
    if at < end and int(data[at]) == 0xC0:  # no client_order_id, written out
        return at + 1
    if len(cid_bounds) == 0:  # not asked to read client_order_ids
        return _BAD
    length, start = _header(data, at, end, 0xA0, 0x1F, 0xD9, 3)
    if start == _BAD or start + length > end:
        return _BAD
    for i in range(start, start + length):
        if int(data[i]) >= 0x80:  # ASCII only: its bytes are its characters
            return _BAD
    cid_bounds[entry, CID_START] = start
    cid_bounds[entry, CID_END] = start + length
    cid_bounds[entry, CID_HASH] = hash_bytes(data, start, start + length)
    return start + length


@kernel
def hash_bytes(data, start, end):
    """A hash of ``data[start:end]`` in 62 bits: two polynomial hashes modulo primes below
    2**31, so no step overflows int64 (the same compiled or not). Equal bytes, equal hash;
    unequal bytes rarely so, and where a caller acts on equal hashes, that is only slower."""
    low = end - start + 1
    high = end - start + 1
    for i in range(start, end):
        low = (low * 257 + int(data[i])) % 2147483647
        high = (high * 263 + int(data[i])) % 2147483629
    return high * 2147483648 + low


@kernel
def hash_all(data, starts, ends, out):
    for i in range(len(starts)):
        out[i] = hash_bytes(data, starts[i], ends[i])


@kernel
def _entry(data, at, end, words, word_starts, word_kinds, word_codes, row, cid_bounds, entry):
    """(kind, time_us) of the entry ``data[at:end]``, its command written into ``row``."""
    count, at = _array(data, at, end)
    if at == _BAD or not 3 <= count <= 5:
        return KIND_OTHER, 0
    time_us, at = read_int(data, at, end)
    if at == _BAD:
        return KIND_OTHER, 0
    actor, at = read_int(data, at, end)
    if at == _BAD:
        return KIND_OTHER, 0
    row["account"] = actor
    fields, at = _array(data, at, end)
    if at == _BAD or fields < 2:
        return KIND_OTHER, 0
    tag = at
    w, at = _word(data, tag, end, words, word_starts, word_kinds, _W_TAG_PLACE)
    kind = KIND_PLACE
    if at == _BAD:
        w, at = _word(data, tag, end, words, word_starts, word_kinds, _W_TAG_CANCEL)
        kind = KIND_CANCEL
    if at != _BAD and kind == KIND_PLACE and 6 <= fields <= 10:
        row["op"] = k.OP_NEW
        at = _place(data, at, end, fields - 1, words, word_starts, word_kinds, word_codes, row,
                    cid_bounds, entry)
    elif at != _BAD and kind == KIND_CANCEL and fields == 2:
        row["op"] = k.OP_CANCEL
        oid, at = read_int(data, at, end)
        row["oid"] = oid
    else:
        return KIND_OTHER, 0
    for _ in range(count - 3):  # no idempotency key, no request hash
        if at == _BAD or at >= end or int(data[at]) != 0xC0:
            return KIND_OTHER, 0
        at += 1
    if at != end:
        return KIND_OTHER, 0
    return kind, time_us


@kernel
def scan(data, starts, ends, words, word_starts, word_kinds, word_codes, commands, times,
         kinds, cid_bounds):
    """Read the entries ``data[starts[i]:ends[i]]`` (uint8): ``kinds[i]`` is ``KIND_PLACE``,
    ``KIND_CANCEL`` or ``KIND_OTHER``; for the first two, ``times[i]`` is the entry's time and
    ``commands[i]`` its command as ``engine.markets`` would queue it (``commands`` zeroed by
    the caller). With ``cid_bounds`` rows (one an entry, -1 as the caller gives them), an
    order with an ASCII client_order_id is read too: the bounds of the id's bytes
    (``CID_START``, ``CID_END``) and their ``hash_bytes`` (``CID_HASH``); without, it is
    ``KIND_OTHER``. Returns how many are not ``KIND_OTHER``."""
    found = 0
    for i in range(len(starts)):
        row = commands[i]
        kind, time_us = _entry(data, starts[i], ends[i], words, word_starts, word_kinds,
                               word_codes, row, cid_bounds, i)
        if kind == KIND_OTHER:
            _clear(row)
            if len(cid_bounds):
                cid_bounds[i, CID_START] = -1
                cid_bounds[i, CID_END] = -1
        else:
            found += 1
        kinds[i] = kind
        times[i] = time_us
    return found


@kernel
def _clear(row):
    row["op"] = 0
    row["side"] = 0
    row["type"] = 0
    row["tif"] = 0
    row["post_only"] = 0
    row["stp"] = 0
    row["instrument"] = 0
    row["account"] = 0
    row["price"] = 0
    row["qty"] = 0
    row["oid"] = 0


@kernel
def value_end(data, at, end):
    """The offset just past the one msgpack value at ``at`` (with its arrays' and maps'
    elements), or ``_BAD`` if the bytes up to ``end`` hold no whole value there."""
    remaining = 1  # values still to pass over: an array's or map's elements add to it
    while remaining > 0:
        if at >= end:
            return _BAD
        b = int(data[at])
        remaining -= 1
        if b <= 0x7F or b >= 0xE0 or b == 0xC0 or b == 0xC2 or b == 0xC3:
            at += 1  # a fixint, nil, false or true
        elif b <= 0x8F:  # fixmap
            remaining += 2 * (b - 0x80)
            at += 1
        elif b <= 0x9F:  # fixarray
            remaining += b - 0x90
            at += 1
        elif b <= 0xBF:  # fixstr
            at += 1 + b - 0xA0
        elif b == 0xC1:  # never used
            return _BAD
        elif b <= 0xC6:  # bin 8, 16, 32
            size = 1 << (b - 0xC4)
            if at + 1 + size > end:
                return _BAD
            at += 1 + size + _uint(data, at + 1, size)
        elif b <= 0xC9:  # ext 8, 16, 32: a length, a type byte, the data
            size = 1 << (b - 0xC7)
            if at + 1 + size > end:
                return _BAD
            at += 2 + size + _uint(data, at + 1, size)
        elif b <= 0xCB:  # float 32, 64
            at += 5 if b == 0xCA else 9
        elif b <= 0xD3:  # uint and int 8, 16, 32, 64
            at += 1 + (1 << ((b - 0xCC) % 4))
        elif b <= 0xD8:  # fixext 1, 2, 4, 8, 16
            at += 2 + (1 << (b - 0xD4))
        elif b <= 0xDB:  # str 8, 16, 32
            size = 1 << (b - 0xD9)
            if at + 1 + size > end:
                return _BAD
            at += 1 + size + _uint(data, at + 1, size)
        else:  # array 16, 32 and map 16, 32
            size = 2 if b == 0xDC or b == 0xDE else 4
            if at + 1 + size > end:
                return _BAD
            count = _uint(data, at + 1, size)
            remaining += count if b <= 0xDD else 2 * count
            at += 1 + size
    return at if at <= end else _BAD


@kernel
def gather_array(data, starts, ends, out):
    """The msgpack array of the values ``data[starts[i]:ends[i]]`` into ``out`` (an array 32
    header, then those bytes back to back; room for them and 5 bytes more); returns its
    length, or -1 if some entry's bytes are not exactly one msgpack value: only then could
    the array's elements not be the entries, one each, as decoded one at a time."""
    n = len(starts)
    out[0] = 0xDD
    for i in range(4):
        out[1 + i] = (n >> (8 * (3 - i))) & 0xFF
    at = 5
    for i in range(n):
        start, stop = starts[i], ends[i]
        if value_end(data, start, stop) != stop:
            return -1
        for j in range(start, stop):
            out[at] = data[j]
            at += 1
    return at


def scan_entries(data: np.ndarray, starts: np.ndarray,
                 ends: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``scan`` of the entries ``data[starts[i]:ends[i]]``: (commands, times, kinds); an
    order with a client_order_id is ``KIND_OTHER`` (a live batch's columns have no room for
    it: ``engine.markets_live``)."""
    commands, times, kinds = _scanned(len(starts))
    scan(data, starts, ends, WORDS, WORD_STARTS, WORD_KINDS, WORD_CODES, commands, times, kinds,
         _NO_BOUNDS)
    return commands, times, kinds


def scan_with_client_ids(data: np.ndarray, starts: np.ndarray, ends: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, ClientIds]:
    """``scan_entries``, reading orders with an ASCII client_order_id too (a replay's bulk
    path, ``engine.markets_bulk``): (commands, times, kinds, their client_order_ids)."""
    commands, times, kinds = _scanned(len(starts))
    bounds = np.full((len(starts), 3), -1, dtype=np.int64)
    scan(data, starts, ends, WORDS, WORD_STARTS, WORD_KINDS, WORD_CODES, commands, times, kinds,
         bounds)
    return commands, times, kinds, ClientIds(data, bounds)


_NO_BOUNDS = np.full((0, 3), -1, dtype=np.int64)


def _scanned(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.zeros(n, dtype=COMMAND_DTYPE), np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.int8))


class ClientIds:
    """The client_order_ids of scanned entries, kept aside as the bounds of their bytes in the
    journal's and their hashes (a row an entry, -1 where it has none), made strings only
    when asked: for the orders a replay's bulk path keeps them for."""

    __slots__ = ("data", "bounds")

    def __init__(self, data: np.ndarray, bounds: np.ndarray) -> None:
        self.data, self.bounds = data, bounds

    def __getitem__(self, entries: slice) -> ClientIds:
        """Those of a stretch of the entries (their bounds still into the same bytes)."""
        return ClientIds(self.data, self.bounds[entries])

    def present(self) -> np.ndarray:
        """Per entry: whether it has a client_order_id."""
        return self.bounds[:, CID_START] >= 0

    def hashes(self) -> np.ndarray:
        """Per entry: its id's ``hash_bytes`` (-1: none)."""
        return self.bounds[:, CID_HASH]

    def strings(self, entries: np.ndarray) -> list[str]:
        """The client_order_ids of ``entries`` (positions of entries that have one). The
        scanner takes ASCII ids only, so each byte is its character: the ids' bytes are
        gathered, each followed by a NUL, decoded at once and split there (a third of a slice
        a string's cost); if an id holds a NUL itself, each is a slice of the decoded bytes."""
        if not len(entries):
            return []
        starts = self.bounds[entries, CID_START]
        ends = self.bounds[entries, CID_END]
        spans = ends - starts + 1  # each id and its NUL
        at = np.cumsum(spans) - spans  # where each id starts in the gathered bytes
        gathered = self.data[np.minimum(np.arange(int(spans.sum()))
                                        - np.repeat(at - starts, spans), len(self.data) - 1)]
        gathered[at + spans - 1] = 0
        if np.count_nonzero(gathered == 0) == len(entries):
            return gathered.tobytes().decode("latin-1").split("\0")[:-1]
        text = gathered.tobytes().decode("latin-1")
        return [text[lo:hi] for lo, hi in zip(at.tolist(), (at + spans - 1).tolist(),
                                              strict=True)]


def string_hashes(strings: list[str]) -> np.ndarray:
    """``hash_bytes`` of each string's UTF-8 (an ASCII id's bytes as the scanner hashed
    them; any other string can equal no id the scanner read)."""
    encoded = [text.encode() for text in strings]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64)
    starts = ends - np.array([len(b) for b in encoded], dtype=np.int64)
    out = np.empty(len(encoded), dtype=np.int64)
    hash_all(np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8), starts, ends, out)
    return out
