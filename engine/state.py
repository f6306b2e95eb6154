"""The engine's hot state: fixed numpy dtypes in growable struct-of-arrays tables.

Every table is one structured numpy array (``align=True``) plus a live row count. Tables grow by
doubling, always from Python between batches and never inside compiled code, so kernels can
take plain array views (``table.rows["cash_available"]``) and index them freely.

Account rows are indexed by ``account_id`` (row 0 is never used, so ids are positive). Positions
(units of one instrument held by one account) get a slot the first time they are needed; the
``(account_id, instrument_id) -> slot`` map lives in Python and is rebuilt from the rows on load.
"""

from __future__ import annotations

import numpy as np

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


class Table:
    """A growable structured array: ``rows[:count]`` are live."""

    def __init__(self, dtype: np.dtype, capacity: int = TABLE_CAPACITY_MIN) -> None:
        self.dtype = dtype
        self.capacity_min = max(capacity, 1)
        # np.zeros takes zeroed pages from the OS untouched: a large first capacity costs
        # address space, and memory only as rows are used (one page fault per page, spread
        # over the appends rather than all at once in a doubling's copy).
        self.rows = np.zeros(self.capacity_min, dtype=dtype)
        self.count = 0

    def ensure(self, needed: int) -> None:
        """Make room for ``needed`` rows, doubling the capacity."""
        capacity = len(self.rows)
        if needed <= capacity:
            return
        while capacity < needed:
            capacity *= 2
        grown = np.zeros(capacity, dtype=self.dtype)
        grown[: self.count] = self.rows[: self.count]
        self.rows = grown

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
        self.rows = np.zeros(max(len(rows), self.capacity_min), dtype=self.dtype)
        self.rows[: len(rows)] = rows
        self.count = len(rows)


class Balances:
    """Cash per account and units per position, the arrays every mechanism moves money in."""

    def __init__(self) -> None:
        self.accounts = Table(ACCOUNT_DTYPE)
        self.accounts.append()  # row 0: ids start at 1
        self.positions = Table(POSITION_DTYPE)
        self.position_slots: dict[tuple[int, int], int] = {}

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

    def holdings(self, account_id: int) -> list[tuple[int, int, int]]:
        """``(instrument_id, available, reserved)`` for each non-empty position, by instrument."""
        rows = self.positions.rows
        out = []
        for (acct, instrument), slot in self.position_slots.items():
            if acct != account_id:
                continue
            available = int(rows[slot]["units_available"])
            reserved = int(rows[slot]["units_reserved"])
            if available or reserved:
                out.append((instrument, available, reserved))
        out.sort()
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The live rows, for snapshots and the state hash."""
        return {"accounts": self.accounts.live(), "positions": self.positions.live()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.accounts.load(arrays["accounts"])
        self.positions.load(arrays["positions"])
        self.position_slots = {
            (int(r["account_id"]), int(r["instrument_id"])): i
            for i, r in enumerate(self.positions.live())
        }

    def cash_total(self) -> int:
        live = self.accounts.live()
        return int(live["cash_available"].sum() + live["cash_reserved"].sum())
