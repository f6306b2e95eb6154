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

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import msgspec
import numpy as np

from engine.clock import format_time_us
from engine.kernels import codes as k
from engine.kernels import fold as kf
from engine.state import RowsByKey, grown, holding

# Order records an account's-orders read scans beyond its index before the index takes them
# in (``Lifecycle.account_orders``).
ORDERS_SCAN_MAX = 4096

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

MARK_DTYPE = np.dtype([("pos", np.int64), ("oid", np.int64), ("op", np.int64),
                       ("account", np.int64)], align=True)
if MARK_DTYPE.itemsize != 4 * 8:  # Lifecycle.follow_marks reads the rows as int64 columns
    raise TypeError("MARK_DTYPE must be four int64 fields")

STATUS_NAMES = ("open", "partially_filled", "filled", "cancelled")
SIDE_NAMES = {k.SIDE_BUY: "buy", k.SIDE_SELL: "sell"}
TYPE_NAMES = {k.TYPE_LIMIT: "limit", k.TYPE_MARKET: "market"}
TIF_NAMES = {k.TIF_GTC: "gtc", k.TIF_IOC: "ioc", k.TIF_FOK: "fok"}
# The names above by code, for ``Lifecycle._built`` (a tuple index is a little cheaper).
_SIDE_BY_CODE = tuple(SIDE_NAMES[code] for code in range(len(SIDE_NAMES)))
_TYPE_BY_CODE = tuple(TYPE_NAMES[code] for code in range(len(TYPE_NAMES)))
_TIF_BY_CODE = tuple(TIF_NAMES[code] for code in range(len(TIF_NAMES)))


class OrderView(msgspec.Struct, eq=False, gc=False):
    """API.md's order object, the body of an order's reply and of its ``orders@`` update:
    a struct, not a dict, because one is built per reply (about half a dict's cost, and
    msgspec encodes it about twice as fast); its fields in the API's order, so its JSON and
    msgpack are byte for byte those of the dict it replaced (``tests/engine/
    test_order_views.py``). It reads like that dict (``view["status"]``, ``dict(view)``,
    equal to an equal dict) for the code and tests that read replies. ``gc=False``: it
    never refers back to itself (its fills list holds dicts of ints)."""

    order_id: int
    client_order_id: str | None
    instrument_id: int
    side: str
    type: str
    price: int | None
    quantity: int
    time_in_force: str
    post_only: bool
    status: str
    filled_quantity: int
    remaining_quantity: int
    fills: list[dict[str, int]]
    created: str

    def __getitem__(self, name: str) -> Any:
        if name not in _ORDER_VIEW_FIELDS:
            raise KeyError(name)
        return getattr(self, name)

    def __setitem__(self, name: str, value: Any) -> None:
        if name not in _ORDER_VIEW_FIELDS:
            raise KeyError(name)
        setattr(self, name, value)

    def __contains__(self, name: object) -> bool:
        return name in _ORDER_VIEW_FIELDS

    def __iter__(self) -> Iterator[str]:
        return iter(self.__struct_fields__)

    def __len__(self) -> int:
        return len(self.__struct_fields__)

    def keys(self) -> tuple[str, ...]:
        return self.__struct_fields__

    def values(self) -> tuple[Any, ...]:
        return msgspec.structs.astuple(self)

    def items(self) -> list[tuple[str, Any]]:
        return list(zip(self.__struct_fields__, msgspec.structs.astuple(self), strict=True))

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in _ORDER_VIEW_FIELDS else default

    def __eq__(self, other: object) -> bool:
        if isinstance(other, OrderView):
            return msgspec.structs.astuple(self) == msgspec.structs.astuple(other)
        if isinstance(other, dict):
            return msgspec.structs.asdict(self) == other
        return NotImplemented

    def __ne__(self, other: object) -> bool:  # msgspec's own would not invert __eq__
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    __hash__ = None  # type: ignore[assignment]  # mutable, as the dict was


_ORDER_VIEW_FIELDS = frozenset(OrderView.__struct_fields__)
Mapping.register(OrderView)


class Folded:
    """The rows one fold wrote (views of scratch buffers, valid until the next fold), taken
    when read: a replay's call reads few of them, and each view costs a numpy call."""

    __slots__ = ("_lifecycle", "_counts", "_cmd_rows", "_columns")

    def __init__(self, lifecycle: Lifecycle, counts: list[int], cmd_rows: np.ndarray) -> None:
        self._lifecycle, self._counts, self._cmd_rows = lifecycle, counts, cmd_rows
        self._columns: list[list[int]] | None = None

    @property
    def changes(self) -> np.ndarray:
        """``CHANGE_DTYPE``, by command."""
        return self._lifecycle._changes[: self._counts[kf.F_CHANGES]]

    @property
    def levels(self) -> np.ndarray:
        """``LEVEL_ROW_DTYPE``."""
        return self._lifecycle._levels[: self._counts[kf.F_LEVELS]]

    @property
    def books(self) -> np.ndarray:
        """``BOOK_ROW_DTYPE``."""
        return self._lifecycle._books[: self._counts[kf.F_BOOKS]]

    @property
    def marks(self) -> np.ndarray:
        """``MARK_DTYPE``."""
        return self._lifecycle._marks[: self._counts[kf.F_MARKS]]

    @property
    def marked(self) -> int:
        """How many mark rows the fold wrote."""
        return self._counts[kf.F_MARKS]

    @property
    def first_changes(self) -> list[int]:
        """Per command: its first change row (-1: it changed no order; kf.CR_FIRST_CHANGE)."""
        if self._columns is None:
            self._columns = self._cmd_rows.T.tolist()
        return self._columns[kf.CR_FIRST_CHANGE]

    @property
    def first_change_rows(self) -> np.ndarray:
        """``first_changes`` as an array (a view: valid until the next fold)."""
        return self._cmd_rows[:, kf.CR_FIRST_CHANGE]

    @property
    def placed_ids(self) -> np.ndarray:
        """``placed`` as an array (a view: valid until the next fold)."""
        return self._cmd_rows[:, kf.CR_PLACED]

    @property
    def placed(self) -> list[int]:
        """Per command: the order it placed (0: none; kf.CR_PLACED)."""
        if self._columns is None:
            self._columns = self._cmd_rows.T.tolist()
        return self._columns[kf.CR_PLACED]


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
        # Order ids by account (derived; a load is into a new Lifecycle: Markets.load).
        self._by_account = RowsByKey(ORDERS_SCAN_MAX)
        # Scratch: nothing in these outlives a fold.
        self._touched = np.zeros(1024, dtype=np.int8)
        self._seen = np.zeros(16, dtype=np.int64)
        self._changes = np.zeros(256, dtype=CHANGE_DTYPE)
        self._levels = np.zeros(256, dtype=LEVEL_ROW_DTYPE)
        self._books = np.zeros(256, dtype=BOOK_ROW_DTYPE)
        self._marks = np.zeros(256, dtype=MARK_DTYPE)
        self._cmd_rows = np.zeros((256, kf.CMD_ROW_COLUMNS), dtype=np.int64)
        self._view_out = np.zeros((256, kf.VIEW_COLUMNS), dtype=np.int64)
        self._view_legs = np.zeros((256, 3), dtype=np.int64)
        self._note_room()

    def reserve(self, orders: int) -> None:
        """Room for ``orders`` more order records and two fill legs each, taken at once: a
        replay knows how many entries are coming, and growing by doubling on the way copies
        every record it has again and again (into fresh memory, the costly part here)."""
        self.records = grown(self.records, self.next_oid + orders, used=self.next_oid)
        self._touched = grown(self._touched, self.next_oid + orders, used=0)
        legs = int(self.counters[kf.F_LEGS])
        self.legs = grown(self.legs, legs + 2 * orders, used=legs)
        self._note_room()

    # ---- folding ----------------------------------------------------------------------------

    def fold(self, events: np.ndarray, commands: np.ndarray, cid_flags: np.ndarray, now_us: int,
             kept_max: int, instruments: np.ndarray, next_oid: int, accounts: int) -> Folded:
        """Fold one kernel call's ``events`` (its ``commands``, ``cid_flags`` per command);
        ``next_oid`` is the engine's next order id after the call, ``accounts`` one more than
        the highest account id. Every array gets room for the call's worst case first (a fill
        writes two legs; an event changes at most two orders)."""
        n = len(events)
        counts = self.counters.tolist()  # one read of the scalars, not one numpy read each
        head, tail = counts[kf.F_FIFO_HEAD], counts[kf.F_FIFO_TAIL]
        legs_needed = counts[kf.F_LEGS] + 2 * n
        # A rested order opens, a re-entered one closes, a finished one closes and evicts
        # one; a lower FINISHED_ORDERS_KEPT than the last call's evicts the excess at once.
        marks_needed = 4 * n + max(0, tail - head - kept_max)
        oids, legs, marks, fifo, accounts_room, instruments_room, rows = self._room
        if (next_oid > oids or legs_needed > legs or marks_needed > marks
                or tail + 2 * n > fifo or head > fifo // 2 or accounts > accounts_room
                or len(instruments) > instruments_room or 2 * n > rows):
            self._make_room(n, next_oid, legs_needed, marks_needed, len(instruments), accounts)
        if len(commands) > len(self._cmd_rows):
            self._cmd_rows = np.zeros((2 * len(commands), kf.CMD_ROW_COLUMNS), dtype=np.int64)
        cmd_rows = self._cmd_rows[: len(commands)]
        kf.fold_events(events, commands, cid_flags, now_us, self.records, self.legs, self.fifo,
                       self.counters, kept_max, self.open_count, self.book_seq, self._seen,
                       instruments, self._touched, self._changes, self._levels, self._books,
                       self._marks, cmd_rows)
        if next_oid > self.next_oid:
            self.next_oid = next_oid
        return Folded(self, self.counters.tolist(), cmd_rows)

    def _note_room(self) -> None:
        """Keep the room of every array ``fold`` writes (checked once a call, as plain ints:
        ``fold`` runs once per kernel call, most of them of a command or two). Called
        whenever one of those arrays is replaced."""
        self._room = (min(len(self.records), len(self._touched)), len(self.legs),
                      len(self._marks), len(self.fifo), len(self.open_count),
                      min(len(self.book_seq), len(self._seen)),
                      min(len(self._changes), len(self._levels), len(self._books)))

    def _make_room(self, n: int, next_oid: int, legs: int, marks: int, instruments: int,
                   accounts: int) -> None:
        """Grow every array ``fold`` writes to its call's worst case (rarely needed: each
        doubles), and slide the kept finished ids down the FIFO rather than grow it.

        The records and legs get an eighth more than the call needs: a table in reserved
        address space grows by 64 KB steps (``engine.state.grown``), so a live venue's
        records and legs outgrew their room every few batches of 256, each time a pass over
        every table here (~55 us); the extra rows are address space, not memory, until
        written."""
        oids, legs = next_oid + next_oid // 8, legs + legs // 8
        if oids > len(self.records) or oids > len(self._touched):
            self.records = grown(self.records, oids, used=self.next_oid)
            self._touched = grown(self._touched, oids, used=0)  # all zero between folds
        used_legs = int(self.counters[kf.F_LEGS])
        if legs > len(self.legs):
            self.legs = grown(self.legs, legs, used=used_legs)
        head, tail = int(self.counters[kf.F_FIFO_HEAD]), int(self.counters[kf.F_FIFO_TAIL])
        if head > len(self.fifo) // 2:
            self.fifo[: tail - head] = self.fifo[head:tail]
            self.counters[kf.F_FIFO_HEAD], self.counters[kf.F_FIFO_TAIL] = 0, tail - head
            tail -= head
        self.fifo = grown(self.fifo, tail + 2 * n, used=tail)
        self.open_count = grown(self.open_count, accounts)
        self.book_seq = grown(self.book_seq, instruments)
        self._seen = grown(self._seen, instruments)
        self._changes = grown(self._changes, 2 * n, used=0)  # scratch: nothing outlives a call
        self._levels = grown(self._levels, 2 * n, used=0)
        self._books = grown(self._books, 2 * n, used=0)
        self._marks = grown(self._marks, marks, used=0)
        self._note_room()

    def note_client_ids(self, folded: Folded, new_cids: dict[int, str]) -> None:
        """Keep the client_order_ids of the orders just accepted (``new_cids``: command
        position -> id)."""
        placed = folded.placed
        for pos, cid in new_cids.items():
            oid = placed[pos]
            if oid:
                self.client_ids[oid] = cid

    def note_placed_ids(self, folded: Folded, positions: np.ndarray,
                        strings: Callable[[np.ndarray], list[str]]) -> None:
        """``note_client_ids`` of the orders at command ``positions``, in one dict update (a
        replay's call of thousands); ``strings``: their ids, of those a mask chooses (made
        only for the orders accepted)."""
        oids = folded.placed_ids[positions]
        accepted = oids > 0
        self.client_ids.update(zip(oids[accepted].tolist(), strings(accepted), strict=True))

    def follow_marks_bulk(self, folded: Folded, first_oid: int) -> None:
        """``follow_marks`` in a few numpy steps, for a call in which no order re-enters a
        book (no amend) and whose new orders' ids were free before it and differ (account
        and id) from each other (``engine.markets_bulk`` cuts its calls so); ``first_oid``:
        the first id the call could give. Then only an order that rests at the end of the
        call and opened in it takes its id, and only one that rested before the call (an id
        below ``first_oid``) and left the book frees it; one that opened and closed in the
        call leaves its id as free as it found it. The evicted orders' ids go last (an order
        is evicted only once finished: its marks come before)."""
        cids = self.client_ids
        if not cids or not folded.marked:
            return
        marks = folded.marks
        op, oid = marks["op"], marks["oid"]
        taken = (op == kf.MARK_OPENED) & (self.records["resting"][oid] == 1)
        freed = (op == kf.MARK_CLOSED) & (oid < first_oid)
        open_ids = self.open_client_ids
        for order, account in zip(oid[taken].tolist(), marks["account"][taken].tolist(),
                                  strict=True):
            open_ids[(account, cids[order])] = order
        for order, account in zip(oid[freed].tolist(), marks["account"][freed].tolist(),
                                  strict=True):
            open_ids.pop((account, cids[order]), None)
        pop = cids.pop
        for order in oid[op == kf.MARK_EVICTED].tolist():
            pop(order, None)

    def follow_marks(self, folded: Folded) -> None:
        """Follow which client_order_ids rest and which orders were evicted, in command order
        (after the call's views are built: a view as of a command shows the order's id even
        if a later command of the call evicted it)."""
        cids = self.client_ids
        if not cids or not folded.marked:
            return
        marks = folded.marks
        open_ids = self.open_client_ids
        opened, closed = kf.MARK_OPENED, kf.MARK_CLOSED
        # Opened and closed marks are written for orders with a client_order_id only. The
        # rows read as int64 columns (MARK_DTYPE is four of them): a record array's tolist
        # builds a tuple a row through numpy's scalar path, ~0.1 us a mark more.
        _, oids, ops, accounts = marks.view(np.int64).reshape(len(marks), 4).T.tolist()
        for oid, op, account in zip(oids, ops, accounts, strict=True):
            if op == opened:
                open_ids[(account, cids[oid])] = oid
            elif op == closed:
                open_ids.pop((account, cids[oid]), None)
            else:
                cids.pop(oid, None)

    # ---- reads ------------------------------------------------------------------------------

    def known(self, oid: int) -> bool:
        """Whether ``oid`` is an order kept for reads (accepted, not evicted)."""
        return 0 < oid < self.next_oid and bool(self.records[oid]["kept"])

    def change_views(self, changes: np.ndarray,
                     rows: list[int] | np.ndarray) -> list[OrderView]:
        """API views of the orders of change ``rows`` (a fold's), each as of its command."""
        out = self._view_room(len(rows))
        index = np.asarray(rows, dtype=np.int64)
        total = kf.view_rows(changes, index, self.records, self.legs, out, self._view_legs)
        if total > len(self._view_legs):
            self._view_legs = np.zeros((2 * total, 3), dtype=np.int64)
            kf.view_rows(changes, index, self.records, self.legs, out, self._view_legs)
        return self._built(out.T.tolist(), self._view_legs[:total].tolist())

    def views_now(self, oids: list[int]) -> list[OrderView]:
        """API views of orders as they are now."""
        out = self._view_room(len(oids))
        index = np.array(oids, dtype=np.int64)
        total = kf.view_rows_now(index, self.records, self.legs, out, self._view_legs)
        if total > len(self._view_legs):
            self._view_legs = np.zeros((2 * total, 3), dtype=np.int64)
            kf.view_rows_now(index, self.records, self.legs, out, self._view_legs)
        return self._built(out.T.tolist(), self._view_legs[:total].tolist())

    def _view_room(self, n: int) -> np.ndarray:
        """The first ``n`` rows of the view scratch buffer (grown to fit)."""
        if n > len(self._view_out):
            self._view_out = np.zeros((2 * n, kf.VIEW_COLUMNS), dtype=np.int64)
        return self._view_out[:n]

    def _built(self, columns: list[list[int]], legs: list[list[int]]) -> list[OrderView]:
        """The views of ``kf.view_rows``' rows, given as their columns (``out.T.tolist()``:
        13 lists, not a list a row, ~0.06 us a view less; ``zip`` hands each row on in one
        reused tuple), and ``legs``: their fills, one after another. Only the views are
        built here, one lookup per field: this runs once per reply."""
        views: list[OrderView] = []
        at, append, view = 0, views.append, OrderView
        cid_of = self.client_ids.get
        sides, kinds, tifs, statuses = _SIDE_BY_CODE, _TYPE_BY_CODE, _TIF_BY_CODE, STATUS_NAMES
        times: dict[int, str] = {}  # orders of one call share their creation times
        last_created, created_text = -1, ""  # and the replies' orders the same one
        for (oid, instrument, side, kind, price, quantity, tif, post_only, status, filled,
             remaining, count, created) in zip(*columns, strict=True):
            if not count:
                fills = []
            elif count == 1:  # the commonest fill, without a comprehension's call
                trade_id, fill_price, fill_quantity = legs[at]
                fills = [{"trade_id": trade_id, "price": fill_price, "quantity": fill_quantity}]
                at += 1
            else:
                fills = [{"trade_id": t, "price": p, "quantity": q}
                         for t, p, q in legs[at:at + count]]
                at += count
            if created != last_created:
                created_text = times.get(created)
                if created_text is None:
                    created_text = times[created] = format_time_us(created)
                last_created = created
            append(view(oid, cid_of(oid), instrument, sides[side], kinds[kind], price or None,
                        quantity, tifs[tif], post_only == 1, statuses[status], filled, remaining,
                        fills, created_text))
        return views

    def account_orders(self, account_id: int, only_open: bool) -> list[int]:
        """Ids of an account's resting orders, or of all its kept ones, by id.

        The account's orders are found by an index (``RowsByKey``: a record's account is
        written with it, the fold's first write of it, and never changes), not by a walk
        over every record: that walk took 2.5 ms of the one thread a read at 361k orders
        (the 1M mixed journal's state), for ``GET /v1/orders`` and the ``orders`` channel."""
        records = self.records[: self.next_oid]
        oids = self._by_account.rows(records["account"], account_id)
        flag = records["resting"] if only_open else records["kept"]
        return oids[flag[oids] == 1].tolist()

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
        self.records = holding(arrays["records"])
        self.next_oid = max(len(arrays["records"]), 1)
        self.legs = holding(arrays["legs"])
        self.fifo = holding(arrays["finished"].astype(np.int64))
        self.book_seq = grown(arrays["book_sequences"].astype(np.int64), 16)
        self.counters[:] = 0
        self.counters[kf.F_LEGS] = len(arrays["legs"])
        self.counters[kf.F_FIFO_TAIL] = len(arrays["finished"])
        live = self.records[: self.next_oid]
        resting = live["resting"] == 1
        self.open_count = np.bincount(live["account"][resting], minlength=64).astype(np.int64)
        self._touched = np.zeros(len(self.records), dtype=np.int8)
        self._note_room()
        self.client_ids = dict(client_ids)
        accounts = live["account"]
        self.open_client_ids = {
            (int(accounts[oid]), cid): oid for oid, cid in client_ids if resting[oid]}
