"""The engine's hot state: fixed numpy dtypes in growable struct-of-arrays tables.

Every table is one structured numpy array (``align=True``) plus a live row count. Tables grow by
doubling, always from Python between batches and never inside compiled code, so kernels can
take plain array views (``table.rows["cash_available"]``) and index them freely.

Account rows are indexed by ``account_id`` (row 0 is never used, so ids are positive). Positions
(units of one instrument held by one account) get a slot the first time they are needed; the
``(account_id, instrument_id) -> slot`` map lives in Python and is rebuilt from the rows on load.
"""

from __future__ import annotations

import logging
import mmap

import numpy as np

from engine.kernels.sequence_sort import merge_by_key

log = logging.getLogger("crowdex.engine.state")

# Money is int64 fen throughout. "withdrawable" is derived, not stored:
# cash_available - cash_unsettled, floored at zero.
ACCOUNT_DTYPE = np.dtype(
    [
        ("cash_available", np.int64),  # free cash, fen
        ("cash_reserved", np.int64),  # cash held by open orders and subscriptions, fen
        ("cash_unsettled", np.int64),  # part of cash_available not yet settled, fen
        ("role", np.int8),  # Role value; 0 = no such account
        ("investor_class", np.int8),
    ],
    align=True,
)

POSITION_DTYPE = np.dtype(
    [
        ("account_id", np.int64),
        ("instrument_id", np.int64),
        ("units_available", np.int64),
        ("units_reserved", np.int64),
    ],
    align=True,
)

TABLE_CAPACITY_MIN = 1024
# Position rows a holdings read scans beyond its index before the index takes them in
# (``Balances._account_rows``).
HOLDINGS_SCAN_MAX = 4096

# Tables that grow with the venue's history (order records, fill legs, the book's order index,
# movements) would stop the one thread at each doubling: a copy of every row into fresh pages,
# 50-130 ms at half a million orders here (``crowdex bench snapshot`` showed it as the worst
# batch of a run). Past ``RESERVE_FROM_BYTES`` a table moves, once, into address space
# reserved for it (an anonymous mapping made with MAP_NORESERVE: no memory is taken until a
# row is written, the system's page faults spread over the rows as they are first used), and
# from then on grows in place by ``RESERVED_STEP_BYTES`` at a time: a longer view of the same
# memory, no copy. Below the threshold (tests' many small machines) tables are plain arrays.
RESERVE_FROM_BYTES = 1 << 20
RESERVED_BYTES_MIN = 1 << 36  # 64 GiB of address space (800M order records); grown x4 if full
RESERVED_STEP_BYTES = 1 << 16
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)  # Python 3.11's mmap does not name it


def grown(array: np.ndarray, needed: int, *, used: int | None = None,
          fill: int | None = None) -> np.ndarray:
    """``array`` (a table: its first row at its start) with room for ``needed`` rows, or itself
    if it has it. The rows past ``used`` (all are used by default) read as zero in the result,
    and the new rows as ``fill`` (zero by default), as if the used rows had been copied into a
    new table, which is what happens to a plain array (its capacity doubled). A
    table in reserved address space grows in place instead (module comment)."""
    if needed <= len(array):
        return array
    keep = len(array) if used is None else used
    mapping = _reservation(array)
    itemsize = array.dtype.itemsize
    if mapping is not None and needed * itemsize <= len(mapping):
        step = max(RESERVED_STEP_BYTES // itemsize, 1)
        capacity = min(-(-needed // step) * step, len(mapping) // itemsize)
        table = np.frombuffer(mapping, dtype=array.dtype, count=capacity)
        # Past the old length nothing was ever written (a reserved table never shrinks):
        # zero pages, written here only if the new rows read as something else.
        if fill:
            table[keep:] = fill
        else:
            _zero(mapping, table, keep, len(array))
        return table
    capacity = max(len(array), 16)
    while capacity < needed:
        capacity *= 2
    table = None
    if capacity * itemsize >= RESERVE_FROM_BYTES:
        table = _reserved(array.dtype, capacity)
    if table is None:
        table = np.zeros(capacity, dtype=array.dtype)
    if fill:
        table[keep:] = fill
    table[:keep] = array[:keep]
    return table


def _zero(mapping: mmap.mmap, table: np.ndarray, start: int, end: int) -> None:
    """Zero ``table``'s rows [start, end) (a table at the start of ``mapping``). Whole pages
    are given back to the system instead of written (MADV_DONTNEED: a private anonymous page
    then reads as zero again, its memory freed): a scratch buffer's growth after a replay's
    large calls would otherwise fault in and write tens of MB of zeros in one batch."""
    first, last = start * table.itemsize, end * table.itemsize
    lo, hi = -(-first // mmap.PAGESIZE) * mmap.PAGESIZE, last // mmap.PAGESIZE * mmap.PAGESIZE
    if hi - lo < 16 * mmap.PAGESIZE or not hasattr(mapping, "madvise"):
        table[start:end] = 0
        return
    data = table.view(np.uint8)
    data[first:lo] = 0
    mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
    data[hi:last] = 0


def holding(rows: np.ndarray, capacity_min: int = 16, fill: int | None = None) -> np.ndarray:
    """A table holding a copy of ``rows`` (a snapshot's), with room for ``capacity_min`` rows
    at least and the rest ``fill``: in reserved address space if it is large, so that the
    first batch after a start does not pay for moving it there."""
    table = grown(np.zeros(0, dtype=rows.dtype), max(len(rows), capacity_min), fill=fill)
    table[: len(rows)] = rows
    return table


def _reserved(dtype: np.dtype, rows: int) -> np.ndarray | None:
    """A table of ``rows`` zero rows at the start of address space reserved for it (at least
    four times that), or None where the system will not reserve it (strict overcommit)."""
    size = max(RESERVED_BYTES_MIN, 4 * rows * dtype.itemsize)
    try:
        mapping = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                            | _MAP_NORESERVE)
    except (OSError, ValueError, OverflowError) as error:
        log.info("a table of %d rows stays a plain array (no address space reserved: %s)",
                 rows, error)
        return None
    return np.frombuffer(mapping, dtype=dtype, count=rows)


def _reservation(array: np.ndarray) -> mmap.mmap | None:
    """The reserved mapping ``array`` is a table of (starting where it starts), or None."""
    base = array.base
    while isinstance(base, np.ndarray):
        base = base.base
    if not isinstance(base, memoryview) or not isinstance(base.obj, mmap.mmap):
        return None
    start = np.frombuffer(base.obj, dtype=np.uint8, count=1).ctypes.data
    return base.obj if array.ctypes.data == start else None


class Table:
    """A growable structured array: ``rows[:count]`` are live."""

    def __init__(self, dtype: np.dtype, capacity: int = TABLE_CAPACITY_MIN) -> None:
        self.dtype = dtype
        self.capacity_min = max(capacity, 1)
        # Zeroed pages from the OS, untouched: a large first capacity costs address space, and
        # memory only as rows are used (one page fault per page, spread over the appends). A
        # first capacity past RESERVE_FROM_BYTES starts in reserved space (module comment), so
        # that outgrowing it is no copy either: the movements' 1M rows (56 MB) as a plain array
        # stopped the loop for 0.23 s the first time a busy server's passed them.
        self.rows = grown(np.zeros(0, dtype=dtype), self.capacity_min)
        self.count = 0

    def ensure(self, needed: int) -> None:
        """Make room for ``needed`` rows (``grown``: doubled, or in place if reserved)."""
        capacity = len(self.rows)
        if needed <= capacity:
            return
        self.rows = grown(self.rows, needed, used=self.count)

    def append(self) -> int:
        """Claim the next row (zeroed) and return its index."""
        self.ensure(self.count + 1)
        index = self.count
        self.count += 1
        return index

    def live(self) -> np.ndarray:
        return self.rows[: self.count]

    def drop_front(self, n: int) -> None:
        """Drop the first ``n`` live rows, moving the rest to the front in place.

        The capacity is kept: a table that is drained and refilled (movements between
        settlement batches) stops growing once it has reached its high-water mark, instead of
        shrinking and growing back through every doubling (each a copy into fresh pages).
        """
        if not 0 <= n <= self.count:
            raise ValueError(f"cannot drop {n} of {self.count} rows")
        rest = self.count - n
        self.rows[:rest] = self.rows[n:self.count]  # numpy copies overlapping ranges safely
        self.rows[rest:self.count] = 0  # rows past the count are zero (append relies on it)
        self.count = rest

    def load(self, rows: np.ndarray) -> None:
        if rows.dtype != self.dtype:
            raise ValueError(f"snapshot dtype {rows.dtype} does not match {self.dtype}")
        self.rows = holding(rows, self.capacity_min)
        self.count = len(rows)


class RowsByKey:
    """The rows of a table that hold one key (an account), found without a walk over every
    row: a read that walked them took 15 ms of the one thread at 212k positions.

    The first ``indexed`` rows are indexed by a binary search (``order``: their row numbers
    by key; ``keys``: the key of each, in that order).
    The index is made by the first read, not by the writes, which never pay for it; rows
    made since are found by a scan of them alone, and taken in (sorted, then merged with it)
    once they are more than an eighth of the index: a read's scan stays short, and a merge
    comes once per eighth the rows grow. It fits a table whose rows are only appended and never
    change key; whoever replaces the rows (a load) calls ``reset``."""

    def __init__(self, scan_max: int) -> None:
        self.scan_max = scan_max
        self.reset()

    def reset(self) -> None:
        self.order = np.zeros(0, dtype=np.int64)
        self.keys = np.zeros(0, dtype=np.int64)
        self.indexed = 0

    def rows(self, keys: np.ndarray, key: int) -> np.ndarray:
        """The row numbers, ascending, of the rows whose entry in ``keys`` (the key column
        of the rows so far) is ``key``."""
        count = len(keys)
        if count - self.indexed > max(self.scan_max, self.indexed // 8):
            # The new rows sorted by key (not stably: a read sorts its own rows), then merged
            # with the index in one compiled pass.
            new_keys = keys[self.indexed:count].astype(np.int64)
            ranked = np.argsort(new_keys)
            new_rows = ranked + self.indexed
            order = np.empty(count, dtype=np.int64)
            ordered_keys = np.empty(count, dtype=np.int64)
            merge_by_key(self.keys, self.order, new_keys[ranked], new_rows, ordered_keys,
                         order)
            self.order, self.keys, self.indexed = order, ordered_keys, count
        lo, hi = np.searchsorted(self.keys, [key, key + 1]).tolist()
        recent = np.flatnonzero(keys[self.indexed:count] == key) + self.indexed
        return np.sort(np.concatenate((self.order[lo:hi], recent)))


class Balances:
    """Cash per account and units per position, the arrays every mechanism moves money in."""

    def __init__(self) -> None:
        self.accounts = Table(ACCOUNT_DTYPE)
        self.accounts.append()  # row 0: ids start at 1
        self.positions = Table(POSITION_DTYPE)
        self.position_slots: dict[tuple[int, int], int] = {}
        self._holdings_index = RowsByKey(HOLDINGS_SCAN_MAX)  # position slots by account

    def add_account(self, role: int, investor_class: int) -> int:
        account_id = self.accounts.append()
        rows = self.accounts.rows
        rows["role"][account_id] = role
        rows["investor_class"][account_id] = investor_class
        return account_id

    def exists(self, account_id: int) -> bool:
        return 0 < account_id < self.accounts.count

    def position_slot(self, account_id: int, instrument_id: int) -> int:
        """The slot of a position, created empty on first use."""
        key = (account_id, instrument_id)
        slot = self.position_slots.get(key)
        if slot is None:
            slot = self.positions.append()
            # The whole row at once, in POSITION_DTYPE's field order (a new row is empty).
            self.positions.rows[slot] = (account_id, instrument_id, 0, 0)
            self.position_slots[key] = slot
        return slot

    def position_slots_for(self, accounts: list[int], instrument_id: int) -> np.ndarray:
        """``position_slot`` of each account's position in one instrument, in order (an
        offering's close issues units to thousands): the missing rows made at once, the
        rows and slots that one call each would have made."""
        table, slots_of = self.positions, self.position_slots
        first = table.count
        made: dict[tuple[int, int], int] = {}  # the new positions' slots, in order
        slots = []
        for account_id in accounts:
            key = (account_id, instrument_id)
            slot = slots_of.get(key)
            if slot is None:
                slot = made.setdefault(key, first + len(made))
            slots.append(slot)
        if made:
            table.ensure(first + len(made))
            table.count = first + len(made)
            rows = table.rows[first:table.count]
            rows["account_id"] = [account_id for account_id, _ in made]
            rows["instrument_id"] = instrument_id
            rows["units_available"] = 0
            rows["units_reserved"] = 0
            slots_of.update(made)
        return np.array(slots, dtype=np.int64)

    def holdings(self, account_id: int) -> list[tuple[int, int, int]]:
        """``(instrument_id, available, reserved)`` for each non-empty position, by instrument.

        An account's rows are found by ``_account_rows``, not by a walk over every position:
        that walk took 15 ms of the one thread a read at 212k positions (a busy venue's
        ``GET /v1/accounts/{id}``)."""
        live = self.positions.live()[self._account_rows(account_id)]
        held = (live["units_available"] != 0) | (live["units_reserved"] != 0)
        live = live[held]
        live = live[np.argsort(live["instrument_id"], kind="stable")]
        return list(zip(live["instrument_id"].tolist(), live["units_available"].tolist(),
                        live["units_reserved"].tolist(), strict=True))

    def _account_rows(self, account_id: int) -> np.ndarray:
        """The slots of ``account_id``'s positions (rows never move nor go: a load starts a
        new index)."""
        return self._holdings_index.rows(
            self.positions.rows["account_id"][: self.positions.count], account_id)

    def arrays(self) -> dict[str, np.ndarray]:
        """The live rows, for snapshots and the state hash."""
        return {"accounts": self.accounts.live(), "positions": self.positions.live()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.accounts.load(arrays["accounts"])
        self.positions.load(arrays["positions"])
        self._holdings_index.reset()
        self.position_slots = {
            (int(r["account_id"]), int(r["instrument_id"])): i
            for i, r in enumerate(self.positions.live())
        }

    def cash_total(self) -> int:
        live = self.accounts.live()
        return int(live["cash_available"].sum() + live["cash_reserved"].sum())
