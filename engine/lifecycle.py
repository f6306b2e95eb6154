"""Every order's lifecycle in arrays: what the API shows about orders, kept without objects.

An order's record is a row of ``RECORD_DTYPE`` indexed by its id (the matching kernel gives
ids densely, in command order); its fills are a linked list of legs (``LEG_DTYPE``, one per
order per trade). The compiled fold (``engine.kernels.fold``) updates them from a kernel
call's events in one pass and writes compact rows: per command, the orders it changed as of
that command (``CHANGE_DTYPE``), the level changes (``LEVEL_ROW_DTYPE``) and book sequences
(``BOOK_ROW_DTYPE``). ``engine.markets`` builds replies and published updates from those rows,
only for what someone reads. No Python object exists per order, except a client_order_id
string for orders that have one.

Finished orders are kept for reads up to a limit (``FINISHED_ORDERS_KEPT`` in markets), the
oldest finish evicted first, exactly as the per-order dicts did: an evicted order's row stays
(ids index the array) but is no longer ``kept``, so it reads as unknown.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from engine.clock import format_time_us
from engine.kernels import codes as k
from engine.kernels import fold as kf

RECORD_DTYPE = np.dtype(
    [
        ("account", np.int64),
        ("price", np.int64),  # limit price in fen; 0 for a market order (shown as null)
        ("quantity", np.int64),  # filled + cancelled + resting, changed by an amend
        ("filled", np.int64),
        ("cancelled", np.int64),  # left the book unfilled (cancel, self-trade prevention)
        ("created_us", np.int64),
        ("leg_head", np.int64),  # first fill leg, -1 if none
        ("leg_tail", np.int64),
        ("instrument", np.int32),
        ("legs", np.int32),  # fill legs (trades) so far
        ("side", np.int8),
        ("type", np.int8),
        ("tif", np.int8),
        ("post_only", np.int8),
        ("status", np.int8),  # kf.OPEN ... kf.CANCELLED
        ("resting", np.int8),  # on a book now (counts towards OPEN_ORDERS_MAX)
        ("kept", np.int8),  # readable: accepted and not evicted
        ("has_cid", np.int8),  # a client_order_id (in ``Lifecycle.client_ids``)
    ],
    align=True,
)

LEG_DTYPE = np.dtype(
    [("trade_id", np.int64), ("price", np.int64), ("qty", np.int64), ("next", np.int64)],
    align=True,
)

# The order ``oid`` as of the end of command ``pos`` (its position in the kernel call).
CHANGE_DTYPE = np.dtype(
    [
        ("pos", np.int64),
        ("oid", np.int64),
        ("price", np.int64),
        ("quantity", np.int64),
        ("filled", np.int64),
        ("cancelled", np.int64),
        ("legs", np.int32),
        ("status", np.int8),
    ],
    align=True,
)

LEVEL_ROW_DTYPE = np.dtype(
    [("pos", np.int64), ("instrument", np.int64), ("side", np.int64), ("price", np.int64),
     ("change", np.int64)],
    align=True,
)

BOOK_ROW_DTYPE = np.dtype(
    [("pos", np.int64), ("instrument", np.int64), ("sequence", np.int64)], align=True)

MARK_DTYPE = np.dtype([("pos", np.int64), ("oid", np.int64), ("op", np.int64)], align=True)

STATUS_NAMES = ("open", "partially_filled", "filled", "cancelled")
SIDE_NAMES = {k.SIDE_BUY: "buy", k.SIDE_SELL: "sell"}
TYPE_NAMES = {k.TYPE_LIMIT: "limit", k.TYPE_MARKET: "market"}
TIF_NAMES = {k.TIF_GTC: "gtc", k.TIF_IOC: "ioc", k.TIF_FOK: "fok"}
_INSTRUMENT, _SIDE, _TYPE, _TIF, _POST_ONLY, _CREATED, _LEG_HEAD = (
    RECORD_DTYPE.names.index(name)
    for name in ("instrument", "side", "type", "tif", "post_only", "created_us", "leg_head"))
CHANGE_OID = CHANGE_DTYPE.names.index("oid")
FEW = 8  # rows read one at a time rather than by numpy's fancy indexing
# A change row's order as of its command, in the order ``Lifecycle.views`` takes it.
CHANGE_VIEW_FIELDS = [CHANGE_DTYPE.names.index(name) for name in
                      ("price", "quantity", "filled", "cancelled", "legs", "status")]


class Folded(NamedTuple):
    """The rows one fold wrote (views of scratch buffers, valid until the next fold)."""

    changes: np.ndarray  # CHANGE_DTYPE, by command
    levels: np.ndarray  # LEVEL_ROW_DTYPE
    books: np.ndarray  # BOOK_ROW_DTYPE
    marks: np.ndarray  # MARK_DTYPE


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    """``array`` with room for ``needed`` rows (doubled), or itself."""
    if needed <= len(array):
        return array
    capacity = max(len(array), 16)
    while capacity < needed:
        capacity *= 2
    grown = np.zeros(capacity, dtype=array.dtype)
    grown[: len(array)] = array
    return grown


class Lifecycle:
    """The order records, their fill legs, the finished FIFO and the per-call row buffers."""

    def __init__(self) -> None:
        self.records = np.zeros(1024, dtype=RECORD_DTYPE)
        self.legs = np.zeros(1024, dtype=LEG_DTYPE)
        self.fifo = np.zeros(1024, dtype=np.int64)  # finished order ids, [head, tail) kept
        self.counters = np.zeros(kf.FOLD_COUNTERS_LEN, dtype=np.int64)
        self.open_count = np.zeros(64, dtype=np.int64)  # resting orders per account
        self.book_seq = np.zeros(16, dtype=np.int64)  # per instrument id
        self.next_oid = 1  # records below this id were written by a fold
        self.client_ids: dict[int, str] = {}  # kept order id -> its client_order_id
        self.open_client_ids: dict[tuple[int, str], int] = {}  # (account, cid) -> resting id
        # Scratch: nothing in these outlives a fold.
        self._touched = np.zeros(1024, dtype=np.int8)
        self._seen = np.zeros(16, dtype=np.int64)
        self._changes = np.zeros(256, dtype=CHANGE_DTYPE)
        self._levels = np.zeros(256, dtype=LEVEL_ROW_DTYPE)
        self._books = np.zeros(256, dtype=BOOK_ROW_DTYPE)
        self._marks = np.zeros(256, dtype=MARK_DTYPE)

    # ---- folding ----------------------------------------------------------------------------

    def fold(self, events: np.ndarray, commands: np.ndarray, cid_flags: np.ndarray, now_us: int,
             kept_max: int, instruments: np.ndarray, next_oid: int, accounts: int) -> Folded:
        """Fold one kernel call's ``events`` (its ``commands``, ``cid_flags`` per command);
        ``next_oid`` is the engine's next order id after the call, ``accounts`` one more than
        the highest account id. Every array gets room for the call's worst case first (a fill
        writes two legs; an event changes at most two orders)."""
        n = len(events)
        self.records = _grown(self.records, next_oid)
        self._touched = _grown(self._touched, next_oid)
        self.legs = _grown(self.legs, int(self.counters[kf.F_LEGS]) + 2 * n)
        head, tail = int(self.counters[kf.F_FIFO_HEAD]), int(self.counters[kf.F_FIFO_TAIL])
        if head > len(self.fifo) // 2:  # slide the kept ids down rather than grow forever
            self.fifo[: tail - head] = self.fifo[head:tail]
            self.counters[kf.F_FIFO_HEAD], self.counters[kf.F_FIFO_TAIL] = 0, tail - head
            head, tail = 0, tail - head
        self.fifo = _grown(self.fifo, tail + 2 * n)
        self.open_count = _grown(self.open_count, accounts)
        self.book_seq = _grown(self.book_seq, len(instruments))
        self._seen = _grown(self._seen, len(instruments))
        self._seen[:] = 0
        self._changes = _grown(self._changes, 2 * n)
        self._levels = _grown(self._levels, 2 * n)
        self._books = _grown(self._books, 2 * n)
        # A rested order opens, a re-entered one closes, a finished one closes and evicts
        # one; a lower FINISHED_ORDERS_KEPT than the last call's evicts the excess at once.
        self._marks = _grown(self._marks, 4 * n + max(0, tail - head - kept_max))
        kf.fold_events(events, commands, cid_flags, now_us, self.records, self.legs, self.fifo,
                       self.counters, kept_max, self.open_count, self.book_seq, self._seen,
                       instruments, self._touched, self._changes, self._levels, self._books,
                       self._marks)
        self.next_oid = max(self.next_oid, next_oid)
        c = self.counters
        return Folded(self._changes[: c[kf.F_CHANGES]], self._levels[: c[kf.F_LEVELS]],
                      self._books[: c[kf.F_BOOKS]], self._marks[: c[kf.F_MARKS]])

    def note_client_ids(self, folded: Folded, new_cids: dict[int, str]) -> None:
        """Keep the client_order_ids of the orders just accepted (``new_cids``: command
        position -> id); the first order a command changed is the one it placed."""
        if not new_cids:
            return
        changes = folded.changes
        starts = np.searchsorted(changes["pos"], list(new_cids), side="left").tolist()
        for (pos, cid), start in zip(new_cids.items(), starts, strict=True):
            if start < len(changes) and int(changes["pos"][start]) == pos:
                oid = int(changes["oid"][start])
                if self.records[oid]["has_cid"]:
                    self.client_ids[oid] = cid

    def follow_marks(self, folded: Folded) -> None:
        """Follow which client_order_ids rest and which orders were evicted, in command order
        (after the call's views are built: a view as of a command shows the order's id even
        if a later command of the call evicted it)."""
        marks = folded.marks
        if not len(marks) or not self.client_ids:
            return
        marks = marks[self.records["has_cid"][marks["oid"]] == 1]
        accounts = self.records["account"]
        for oid, op in zip(marks["oid"].tolist(), marks["op"].tolist(), strict=True):
            if op == kf.MARK_OPENED:
                self.open_client_ids[(int(accounts[oid]), self.client_ids[oid])] = oid
            elif op == kf.MARK_CLOSED:
                self.open_client_ids.pop((int(accounts[oid]), self.client_ids[oid]), None)
            else:
                self.client_ids.pop(oid, None)

    # ---- reads ------------------------------------------------------------------------------

    def known(self, oid: int) -> bool:
        """Whether ``oid`` is an order kept for reads (accepted, not evicted)."""
        return 0 < oid < self.next_oid and bool(self.records[oid]["kept"])

    def views(self, oids: list[int], dynamic: list[tuple]) -> list[dict]:
        """API views of orders: ``dynamic`` is each one's (price, quantity, filled, cancelled,
        legs, status) as of the moment wanted (a change row, or the record now)."""
        if not oids:
            return []
        # Whole rows as tuples (cheaper than picking fields); a few one by one, which costs
        # less than numpy's fancy indexing of a few.
        if len(oids) <= FEW:
            records = [self.records[oid].item() for oid in oids]
        else:
            records = self.records[np.array(oids, dtype=np.int64)].tolist()
        counts = [d[4] for d in dynamic]
        total = sum(counts)
        legs: list = []
        if total > FEW:
            out = np.zeros((total, 3), dtype=np.int64)
            kf.gather_legs(self.legs, np.array([r[_LEG_HEAD] for r in records], dtype=np.int64),
                           np.array(counts, dtype=np.int64), out)
            legs = out.tolist()
        elif total:
            for record, count in zip(records, counts, strict=True):
                leg = record[_LEG_HEAD]
                for _ in range(count):
                    trade_id, price, qty, leg = self.legs[leg].item()
                    legs.append((trade_id, price, qty))
        views, at = [], 0
        cids = self.client_ids
        times: dict[int, str] = {}  # orders of one call share their creation time
        for oid, record, (price, quantity, filled, cancelled, count, status) in zip(
                oids, records, dynamic, strict=True):
            live = status <= kf.PARTIALLY_FILLED
            created = record[_CREATED]
            views.append({
                "order_id": oid,
                "client_order_id": cids.get(oid),
                "instrument_id": record[_INSTRUMENT],
                "side": SIDE_NAMES[record[_SIDE]],
                "type": TYPE_NAMES[record[_TYPE]],
                "price": price or None,
                "quantity": quantity,
                "time_in_force": TIF_NAMES[record[_TIF]],
                "post_only": bool(record[_POST_ONLY]),
                "status": STATUS_NAMES[status],
                "filled_quantity": filled,
                "remaining_quantity": quantity - filled - cancelled if live else 0,
                "fills": [{"trade_id": t, "price": p, "quantity": q}
                          for t, p, q in legs[at:at + count]] if count else [],
                "created": times.get(created) or times.setdefault(created,
                                                                  format_time_us(created)),
            })
            at += count
        return views

    def now(self, oids: list[int]) -> list[tuple]:
        """The dynamic part of ``views`` of orders as they are now."""
        index = np.array(oids, dtype=np.int64)
        return self.records[["price", "quantity", "filled", "cancelled", "legs", "status"]][
            index].tolist()

    def account_orders(self, account_id: int, only_open: bool) -> list[int]:
        """Ids of an account's resting orders, or of all its kept ones, by id."""
        live = self.records[: self.next_oid]
        flag = live["resting"] if only_open else live["kept"]
        return np.flatnonzero((flag == 1) & (live["account"] == account_id)).tolist()

    def resting(self, instrument_id: int, sides: tuple[int, ...]) -> list[tuple[int, int]]:
        """(order id, account) of an instrument's resting orders on ``sides``, by id."""
        live = self.records[: self.next_oid]
        mask = (live["resting"] == 1) & (live["instrument"] == instrument_id)
        mask &= np.isin(live["side"], sides)
        oids = np.flatnonzero(mask)
        return list(zip(oids.tolist(), live["account"][oids].tolist(), strict=True))

    def finished(self) -> list[int]:
        """The kept finished order ids, oldest finish first."""
        c = self.counters
        return self.fifo[c[kf.F_FIFO_HEAD]: c[kf.F_FIFO_TAIL]].tolist()

    # ---- snapshots --------------------------------------------------------------------------

    def arrays(self, instruments: int) -> dict[str, np.ndarray]:
        """The state as arrays: the records and legs in use, the kept finished ids and the
        book sequences of the engine's ``instruments`` rows (derived counts are left out)."""
        c = self.counters
        sequences = np.zeros(instruments, dtype=np.int64)
        shown = min(instruments, len(self.book_seq))
        sequences[:shown] = self.book_seq[:shown]
        return {
            "records": self.records[: self.next_oid],
            "legs": self.legs[: c[kf.F_LEGS]],
            "finished": self.fifo[c[kf.F_FIFO_HEAD]: c[kf.F_FIFO_TAIL]],
            "book_sequences": sequences,
        }

    def load(self, arrays: dict[str, np.ndarray], client_ids: list[tuple[int, str]]) -> None:
        """Restore what ``arrays`` gave (copies), with the kept orders' client_order_ids."""
        if arrays["records"].dtype != RECORD_DTYPE or arrays["legs"].dtype != LEG_DTYPE:
            raise ValueError("snapshot order records have another layout")
        self.records = _grown(arrays["records"].copy(), 16)
        self.next_oid = max(len(arrays["records"]), 1)
        self.legs = _grown(arrays["legs"].copy(), 16)
        self.fifo = _grown(arrays["finished"].astype(np.int64), 16)
        self.book_seq = _grown(arrays["book_sequences"].astype(np.int64), 16)
        self.counters[:] = 0
        self.counters[kf.F_LEGS] = len(arrays["legs"])
        self.counters[kf.F_FIFO_TAIL] = len(arrays["finished"])
        live = self.records[: self.next_oid]
        resting = live["resting"] == 1
        self.open_count = np.bincount(live["account"][resting], minlength=64).astype(np.int64)
        self._touched = np.zeros(len(self.records), dtype=np.int8)
        self.client_ids = dict(client_ids)
        accounts = live["account"]
        self.open_client_ids = {
            (int(accounts[oid]), cid): oid for oid, cid in client_ids if resting[oid]}
