"""The matching engine: owns the order-book arrays, validates, and runs kernels once per batch.

``MatchingEngine`` holds every instrument's book in one set of struct-of-arrays tables
(``engine.kernels.layout``), grows them by doubling between batches (never inside compiled
code) and hands a whole batch of commands to ``engine.kernels.pipeline.run_batch``. Balances
stay in ``engine.state.Balances``; when one is passed to ``process`` the risk stage reserves,
moves and releases cash and units, otherwise (benchmarks, replay) balances are unlimited.

Commands and events are numpy arrays of ``COMMAND_DTYPE`` / ``EVENT_DTYPE``; result codes are
in ``engine.kernels.codes``. ``process_fills`` is the replay benchmark's lean path: no risk
stage, and only trades written, as 32-byte ``FILL_DTYPE`` rows. The state is deterministic:
the same commands from the same state give the same arrays, which ``arrays()`` exposes for
snapshots and the state hash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from engine.kernels import allocation
from engine.kernels import codes as k
from engine.kernels.book import (
    band_high,
    lay_out_ladders,
    moved_levels,
    relink,
    resting_price_ranges,
)
from engine.kernels.layout import (
    C_EVENTS,
    C_LIVE_ORDERS,
    C_NEXT_OID,
    C_PROCESSED,
    C_SLOTS_USED,
    C_STOP,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    FILL_DTYPE,
    INSTRUMENT_DTYPE,
    LADDER_WIDTH_MAX,
    LEVEL_DTYPE,
    ORDER_DTYPE,
    new_counters,
)
from engine.kernels.pipeline import EVENTS_PER_COMMAND_FIXED, run_batch
from engine.reference import allocation as reference_allocation
from engine.state import ACCOUNT_DTYPE, POSITION_DTYPE, Balances, grown, holding

# Limits (TigerBeetle style: everything has one). Prices and quantities follow API.md.
batch_size_max = 1 << 20
price_max_fen = 1 << 53
ladder_width_max = LADDER_WIDTH_MAX  # prices per side of one instrument's ladder
# Batches of at most this many commands look up their position rows a command at a time
# (MatchingEngine._fill_few_position_slots); larger ones with numpy.
POSITION_LOOP_MAX = 128
instruments_max = 1 << 20

_NO_ACCOUNTS = np.zeros(1, dtype=ACCOUNT_DTYPE)
_NO_POSITIONS = np.zeros(1, dtype=POSITION_DTYPE)
_NO_FILLS = np.zeros(1, dtype=FILL_DTYPE)


class EngineInvariantError(RuntimeError):
    """The engine's state broke one of its invariants: a bug, never a client error."""


def _never() -> bool:
    return False


class BatchResult(NamedTuple):
    """What a batch produced: one result code per command, and the events in order."""

    results: np.ndarray  # int64, one code per command
    events: np.ndarray  # EVENT_DTYPE


def _checked_batch(commands: np.ndarray) -> int:
    """The length of a batch of commands, refusing a wrong dtype or an oversized batch."""
    if commands.dtype is not COMMAND_DTYPE and commands.dtype != COMMAND_DTYPE:
        raise TypeError(f"commands must have COMMAND_DTYPE, not {commands.dtype}")
    if len(commands) > batch_size_max:
        raise ValueError(f"batch of {len(commands)} commands exceeds batch_size_max "
                         f"{batch_size_max}")
    return len(commands)


class FillsResult(NamedTuple):
    """What a lean batch produced: one result code per command, and its trades in order."""

    results: np.ndarray  # int64, one code per command
    fills: np.ndarray  # FILL_DTYPE


class MatchingEngine:
    """Order books of many instruments, matched by compiled kernels one batch at a time."""

    def __init__(self, *, fee_account_id: int = 1, order_capacity: int = 1024,
                 relinks_by_id: Callable[[], bool] | None = None) -> None:
        self.fee_account_id = fee_account_id
        # Whether a relayout puts each level's orders back in order id order (rules 4 and
        # older: ``_relayout``), asked at each one; by default they keep their queues.
        self.relinks_by_id = relinks_by_id or _never
        self.orders = np.zeros(max(order_capacity, 16), dtype=ORDER_DTYPE)
        self.levels = np.zeros(0, dtype=LEVEL_DTYPE)
        self.instruments = np.zeros(16, dtype=INSTRUMENT_DTYPE)
        self.oid_index = np.full(max(order_capacity, 16), -1, dtype=np.int64)
        self.counters = new_counters()
        self._events = np.zeros(1024, dtype=EVENT_DTYPE)
        self._fills = np.zeros(1024, dtype=FILL_DTYPE)
        self._results = np.zeros(1024, dtype=np.int64)

    # ---- instruments ------------------------------------------------------------------------

    def add_instrument(self, instrument_id: int, *, band_lo_fen: int, band_hi_fen: int,
                       fee_bps: int = 0, mode: str = "book", reference_price_fen: int = 0,
                       band_multiple: int = 0) -> None:
        """Open a book for an instrument with its price band, seller fee and mode.

        With ``band_multiple`` > 0 the band's top follows the market: that multiple of the last
        trade price (of ``reference_price_fen`` before the first trade), at most ``band_hi_fen``
        (see ``kernels.book.band_high``). The ladder then covers only the band of the moment and
        is widened when an order needs it.
        """
        if not 0 < instrument_id < instruments_max:
            raise ValueError(f"instrument id {instrument_id} out of range")
        if mode not in ("book", "auction"):
            raise ValueError(f"unknown mode {mode!r}")
        if not 0 <= fee_bps <= 10_000:
            raise ValueError(f"fee_bps {fee_bps} out of range")
        self.instruments = grown(self.instruments, instrument_id + 1)
        row = self.instruments[instrument_id]
        if row["active"]:
            raise ValueError(f"instrument {instrument_id} already exists")
        row["active"] = 1
        row["mode"] = k.MODE_AUCTION if mode == "auction" else k.MODE_BOOK
        row["fee_bps"] = fee_bps
        if not 0 <= band_multiple < 1 << 31 or (band_multiple and reference_price_fen <= 0):
            raise ValueError(f"band_multiple {band_multiple} needs a positive reference price")
        row["reference_price"] = reference_price_fen
        row["band_multiple"] = band_multiple
        self.set_band(instrument_id, band_lo_fen, band_hi_fen)

    def set_band(self, instrument_id: int, band_lo_fen: int, band_hi_fen: int) -> None:
        """Change an instrument's price band; resting orders outside it stay where they are.

        A fixed band inside the instrument's ladder only changes two numbers; a wider one re-lays
        every ladder (with headroom, so a drifting band rarely triggers it). An instrument whose
        band follows the market keeps the ladder it has: that one grows when an order needs it.
        """
        if not 1 <= band_lo_fen <= band_hi_fen <= price_max_fen:
            raise ValueError(f"bad price band [{band_lo_fen}, {band_hi_fen}]")
        row = self.instruments[instrument_id]
        row["band_lo"] = band_lo_fen
        row["band_hi"] = band_hi_fen
        ladder_hi = row["ladder_lo"] + row["ladder_width"] - 1
        if row["ladder_width"] and (row["band_multiple"] > 0 or (
                row["ladder_lo"] <= band_lo_fen and band_high(row) <= ladder_hi)):
            return
        self._relayout()

    def _resumed_after_ladder(self, commands: np.ndarray, done: int) -> bool:
        """After a batch stopped early at ``commands[done]``: if that order needed a wider
        ladder, lay it out so the batch can resume there."""
        stop = int(self.counters[C_STOP])
        self.counters[C_STOP] = k.STOP_NONE
        if stop != k.STOP_LADDER:
            return False
        cmd = commands[done]
        self._relayout((int(cmd["instrument"]), int(cmd["price"])))
        return True

    def _relayout(self, need: tuple[int, int] | None = None) -> None:
        """Lay out every instrument's ladder (``kernels.book.lay_out_ladders``) and move each
        level's queue to its new place (``moved_levels``; rules 4 and older relink them in
        order id order); ``need`` is an (instrument, price) the ladder must cover."""
        used = int(self.counters[C_SLOTS_USED])
        # Each instrument's lowest and highest resting price, by one pass over the resting
        # orders (a mixed replay opens dozens of books while thousands of orders rest).
        lowest = np.full(len(self.instruments), np.iinfo(np.int64).max, dtype=np.int64)
        highest = np.full(len(self.instruments), np.iinfo(np.int64).min, dtype=np.int64)
        resting = resting_price_ranges(self.orders, used, lowest, highest)
        if resting < 0:
            raise EngineInvariantError("a resting order names an instrument beyond the table")
        # Each ladder as it was, for moving its levels to where they go.
        was = [self.instruments[name].copy() for name in ("ladder_lo", "ladder_width",
                                                           "level_base")]
        need_inst, need_price = need if need is not None else (0, 0)
        base, inst, width = lay_out_ladders(self.instruments, lowest, highest, need_inst,
                                            need_price)
        if base < 0:
            raise ValueError(f"instrument {inst}: price ladder of {width} ticks is too wide")
        if self.relinks_by_id():
            # Rules 4 and older: relinked in order id order, which is arrival order only for
            # orders never amended. An amend that re-entered its order (a new price or a
            # larger quantity) had put it at the back of its level, and this put it back in
            # front of the orders that came before the amend.
            live = self.orders[:used]
            slots = np.flatnonzero(live["oid"] != 0)
            queued = slots[np.argsort(live["oid"][slots], kind="stable")].astype(np.int64)
            levels = np.zeros(base, dtype=LEVEL_DTYPE)
            levels["head"] = -1
            levels["tail"] = -1
            self.levels = levels
            relink(self.orders, self.levels, self.instruments, queued)
            return
        # Each level's queue as it stands, moved from the old ladder to the new one: the
        # same levels and links as relinking every queue gives, without walking them.
        levels = np.empty(base, dtype=LEVEL_DTYPE)
        if moved_levels(self.levels, levels, self.instruments, *was) < 0:
            raise EngineInvariantError("a resting order's level is off its new ladder")
        self.levels = levels

    # ---- batches ----------------------------------------------------------------------------

    def process(self, commands: np.ndarray, balances: Balances | None = None, *,
                full_events: bool = True, slots_filled: bool = False,
                scratch_results: bool = False) -> BatchResult:
        """Run a batch of commands; with ``balances`` the risk stage is on.

        ``full_events=False`` writes fills only (the replay benchmark's path). The returned
        events are a view of a scratch buffer, valid until the next call. ``slots_filled``:
        the caller has set each new order's ``pos_slot`` already, as ``_fill_position_slots``
        would have (every new order's instrument is active and its account exists; the rows
        created in the order of the commands first naming them). ``scratch_results``: the
        result codes may be a view of a scratch buffer too (the caller reads them before the
        next call), which saves an allocation per call.
        """
        n = _checked_batch(commands)
        counters = self.counters
        # _ensure_room's checks inline: this runs once per kernel call, and most calls of a
        # live venue or a mixed replay are of one or two commands.
        slots_used, next_oid = int(counters[C_SLOTS_USED]), int(counters[C_NEXT_OID])
        if (slots_used + n > len(self.orders) or next_oid + n + 1 > len(self.oid_index)
                or 2 * n + EVENTS_PER_COMMAND_FIXED > len(self._events)):
            self._ensure_room(n)
        if balances is not None:
            if not slots_filled:
                self._fill_position_slots(commands, balances)
            accounts, positions = balances.accounts.rows, balances.positions.rows
            if not 0 < self.fee_account_id < balances.accounts.count:  # Balances.exists
                raise ValueError(f"fee account {self.fee_account_id} does not exist")
        else:
            accounts, positions = _NO_ACCOUNTS, _NO_POSITIONS
        if scratch_results and n <= len(self._results):
            results = self._results[:n]
            results[:] = 0
        else:
            results = np.zeros(n, dtype=np.int64)
        out = k.OUT_ALL if full_events else k.OUT_SETTLE
        counters[C_EVENTS] = 0
        counters[C_PROCESSED] = 0
        while True:
            done = run_batch(commands, results, self.orders, self.levels, self.instruments,
                             self.oid_index, self.counters, self._events, _NO_FILLS, accounts,
                             positions, self.fee_account_id, balances is not None, out)
            if done == n:
                break
            if self._resumed_after_ladder(commands, done):
                continue
            # Out of event room: grow for the worst case of the next command and go on.
            inst = int(commands[done]["instrument"])
            touched = 0
            if 0 < inst < len(self.instruments):
                row = self.instruments[inst]
                touched = int(row["orders_bid"] + row["orders_ask"])
            needed = int(self.counters[C_EVENTS]) + 2 * touched + EVENTS_PER_COMMAND_FIXED
            self._events = grown(self._events, max(needed, 2 * len(self._events)),
                                  used=int(self.counters[C_EVENTS]))
        return BatchResult(results, self._events[: self.counters.item(C_EVENTS)])

    def process_fills(self, commands: np.ndarray) -> FillsResult:
        """Run a batch with unlimited balances and write only its trades, as lean records.

        The replay benchmark's path: no risk stage, no events but fills, each fill a 32-byte
        ``FILL_DTYPE`` row (maker, taker, price, quantity). Both arrays returned are views of
        scratch buffers, valid until the next call.
        """
        n = _checked_batch(commands)
        self.reserve(n, prefault=False)
        results = self._results[:n]
        self.counters[C_EVENTS] = 0
        self.counters[C_PROCESSED] = 0
        while True:
            done = run_batch(commands, results, self.orders, self.levels, self.instruments,
                             self.oid_index, self.counters, self._events, self._fills,
                             _NO_ACCOUNTS, _NO_POSITIONS, self.fee_account_id, False,
                             k.OUT_FILLS)
            if done == n:
                break
            if not self._resumed_after_ladder(commands, done):
                raise EngineInvariantError(f"lean batch stopped at {done} of {n} commands")
        return FillsResult(results, self._fills[: self.counters[C_EVENTS]])

    @property
    def next_order_id(self) -> int:
        """The id the next order the kernel accepts will get (ids are given in order)."""
        return int(self.counters[C_NEXT_OID])

    def reserve(self, commands: int, *, prefault: bool = True) -> None:
        """Make room for a lean batch of ``commands`` before it runs (``process_fills``).

        With ``prefault`` every page of the room is written once now, so the batch itself
        neither waits for the kernel to map fresh memory nor to zero it: a benchmark reserves
        before it starts its clock, as an exchange allocates its books before it opens.
        """
        live = int(self.counters[C_LIVE_ORDERS])
        self._ensure_room(commands, events=False)
        fills_needed = live + 2 * commands  # the worst case, see pipeline.run_batch
        self._fills = grown(self._fills, fills_needed)
        self._results = grown(self._results, commands)
        if prefault:
            self._fills[:fills_needed].view(np.uint8)[:] = 0
            self._results[:commands] = 0
            used = int(self.counters[C_SLOTS_USED])
            self.orders[used:].view(np.uint8)[:] = 0  # slots above the mark are all zero
            self.oid_index[int(self.counters[C_NEXT_OID]):] = -1

    def _ensure_room(self, n: int, *, events: bool = True) -> None:
        """Every command may rest one order and take one id: make room before compiled code."""
        self.orders = grown(self.orders, int(self.counters[C_SLOTS_USED]) + n)
        self.oid_index = grown(self.oid_index, int(self.counters[C_NEXT_OID]) + n + 1, fill=-1)
        if events:  # scratch: nothing in it is kept from one batch to the next
            self._events = grown(self._events, 2 * n + EVENTS_PER_COMMAND_FIXED, used=0)

    def _fill_position_slots(self, commands: np.ndarray, balances: Balances) -> None:
        """Look up (creating) each new order's position row, once per distinct pair."""
        if len(commands) <= POSITION_LOOP_MAX:
            self._fill_few_position_slots(commands, balances)
            return
        inst = commands["instrument"]
        account = commands["account"]
        in_range = (inst > 0) & (inst < len(self.instruments))
        active = np.zeros(len(commands), dtype=bool)
        active[in_range] = self.instruments["active"][inst[in_range]] != 0
        wanted = ((commands["op"] == k.OP_NEW) & active & (account > 0)
                  & (account < balances.accounts.count))
        commands["pos_slot"] = -1
        if not wanted.any():
            return
        keys = account[wanted] * instruments_max + inst[wanted]
        unique, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        pairs = list(zip((unique // instruments_max).tolist(),
                         (unique % instruments_max).tolist(), strict=True))
        # One dict probe per distinct pair (a method call each cost more than the kernel);
        # only pairs seen for the first time go through position_slot, which creates them,
        # in the order of the commands that first name them: the rows a batch creates are
        # those the same commands one at a time would create, so the state (and its hash) does
        # not depend on how commands were batched.
        known = balances.position_slots.get
        slots = [known(pair) for pair in pairs]
        if None in slots:
            for j in np.argsort(first, kind="stable").tolist():
                if slots[j] is None:
                    slots[j] = balances.position_slot(*pairs[j])
        commands["pos_slot"][wanted] = np.array(slots, dtype=np.int64)[inverse]

    def _fill_few_position_slots(self, commands: np.ndarray, balances: Balances) -> None:
        """``_fill_position_slots`` of a small batch, a command at a time: the same rows,
        created in the same order (that of the commands first naming them), without numpy's
        cost per call, which outweighs its speed per row here."""
        active = self.instruments["active"]
        instruments, accounts = len(self.instruments), balances.accounts.count
        known = balances.position_slots.get
        slots = []
        for op, inst, account in commands[["op", "instrument", "account"]].tolist():
            slot = -1
            if (op == k.OP_NEW and 0 < inst < instruments and 0 < account < accounts
                    and active[inst]):
                slot = known((account, inst))
                if slot is None:
                    slot = balances.position_slot(account, inst)
            slots.append(slot)
        commands["pos_slot"] = slots

    # ---- one-command helpers (tests, the state machine) ------------------------------------

    def new_order(self, instrument_id: int, account_id: int, side: int, qty: int, *,
                  price: int = 0, order_type: int = k.TYPE_LIMIT, tif: int = k.TIF_GTC,
                  post_only: bool = False, stp: int = k.STP_CANCEL_NEWEST,
                  balances: Balances | None = None) -> BatchResult:
        """Submit one new order (a batch of one)."""
        cmd = command(k.OP_NEW, instrument=instrument_id, account=account_id, side=side,
                      qty=qty, price=price, type=order_type, tif=tif, post_only=int(post_only),
                      stp=stp)
        return self.process(cmd, balances)

    def cancel(self, oid: int, account_id: int = 0,
               balances: Balances | None = None) -> BatchResult:
        """Cancel one order; ``account_id`` 0 skips the owner check."""
        return self.process(command(k.OP_CANCEL, oid=oid, account=account_id), balances)

    def amend(self, oid: int, account_id: int, price: int, qty: int, *, post_only: bool = False,
              balances: Balances | None = None) -> BatchResult:
        """Amend one resting order to ``price`` with ``qty`` remaining (``OP_AMEND``)."""
        return self.process(self.amend_command(oid, account_id, price, qty, post_only), balances)

    def amend_command(self, oid: int, account_id: int, price: int, qty: int,
                      post_only: bool = False) -> np.ndarray:
        """An ``OP_AMEND`` row; it names the order's instrument, so a price beyond the
        ladder can widen it like a new order's (``_resumed_after_ladder``)."""
        slot = int(self.oid_index[oid]) if 0 < oid < len(self.oid_index) else -1
        instrument = int(self.orders[slot]["instrument"]) if slot >= 0 else 0
        return command(k.OP_AMEND, oid=oid, account=account_id, price=price, qty=qty,
                       instrument=instrument, post_only=int(post_only))

    def uncross(self, instrument_id: int, balances: Balances | None = None) -> BatchResult:
        """Run the call auction of an auction-mode instrument."""
        return self.process(command(k.OP_UNCROSS, instrument=instrument_id), balances)

    # ---- reads ------------------------------------------------------------------------------

    def depth(self, instrument_id: int, side: int, levels_max: int = 10) -> list[tuple[int, int]]:
        """``[(price, qty), ...]`` of one side, best first, at most ``levels_max`` levels."""
        row = self.instruments[instrument_id]
        width = int(row["ladder_width"])
        start = int(row["level_base"]) + side * width
        qty = self.levels["qty"][start: start + width]
        prices = np.flatnonzero(qty)
        if side == k.SIDE_BUY:
            prices = prices[::-1]
        prices = prices[:levels_max]
        lo = int(row["ladder_lo"])
        return [(lo + int(p), int(qty[p])) for p in prices]

    def order(self, oid: int) -> dict | None:
        """A resting order's fields, or None when it is not on a book."""
        if not 0 < oid < len(self.oid_index) or self.oid_index[oid] < 0:
            return None
        o = self.orders[self.oid_index[oid]]
        return {name: int(o[name]) for name in ORDER_DTYPE.names}

    def open_orders(self, account_id: int) -> list[dict]:
        """Every resting order of an account, by order id."""
        live = self.orders[: self.counters[C_SLOTS_USED]]
        slots = np.flatnonzero((live["oid"] != 0) & (live["account"] == account_id))
        slots = slots[np.argsort(live["oid"][slots])]
        return [{name: int(live[s][name]) for name in ORDER_DTYPE.names} for s in slots]

    # ---- snapshots --------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The state as arrays (live parts only), for snapshots and the state hash."""
        used = int(self.counters[C_SLOTS_USED])
        return {
            "orders": self.orders[:used],
            "levels": self.levels,
            "instruments": self.instruments,
            "oid_index": self.oid_index[: int(self.counters[C_NEXT_OID])],
            "counters": self.counters,
        }

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Restore the state ``arrays()`` gave (copies, so the snapshot stays untouched)."""
        expected = {"orders": ORDER_DTYPE, "levels": LEVEL_DTYPE,
                    "instruments": INSTRUMENT_DTYPE}
        for name, dtype in expected.items():
            if arrays[name].dtype != dtype:
                raise ValueError(f"snapshot {name} dtype {arrays[name].dtype} is not {dtype}")
        self.orders = holding(arrays["orders"])
        self.levels = arrays["levels"].copy()
        self.instruments = arrays["instruments"].copy()
        self.oid_index = holding(arrays["oid_index"].astype(np.int64), fill=-1)
        self.counters = arrays["counters"].astype(np.int64).copy()


def check_book(engine: MatchingEngine) -> None:
    """Raise ``EngineInvariantError`` unless every list, total, count and best price agrees."""
    orders, instruments = engine.orders, engine.instruments
    seen = 0
    for inst in np.flatnonzero(instruments["active"]):
        row = instruments[inst]
        for side in (k.SIDE_BUY, k.SIDE_SELL):
            count, best = _check_side(engine, int(inst), side)
            seen += count
            field = "orders_bid" if side == k.SIDE_BUY else "orders_ask"
            if row[field] != count:
                raise EngineInvariantError(f"instrument {inst}: {field} {row[field]} != {count}")
            best_field = "best_bid" if side == k.SIDE_BUY else "best_ask"
            if row[best_field] != best:
                raise EngineInvariantError(f"instrument {inst}: {best_field} {row[best_field]}"
                                           f" but the best level is {best}")
        crossed = row["best_bid"] and row["best_ask"] and row["best_bid"] >= row["best_ask"]
        if row["mode"] == k.MODE_BOOK and crossed:
            raise EngineInvariantError(f"instrument {inst}: book crossed")
    live = int((orders["oid"][: engine.counters[C_SLOTS_USED]] != 0).sum())
    if seen != live or live != engine.counters[C_LIVE_ORDERS]:
        raise EngineInvariantError(f"{seen} orders on levels, {live} live slots")


def _check_side(engine: MatchingEngine, inst: int, side: int) -> tuple[int, int]:
    """Walk one side's levels; returns (orders, best price)."""
    row = engine.instruments[inst]
    width = int(row["ladder_width"])
    base = int(row["level_base"]) + side * width
    count, best = 0, k.NO_PRICE
    side_levels = engine.levels[base: base + width]
    used = (side_levels["head"] >= 0) | (side_levels["tail"] >= 0) | (side_levels["qty"] != 0)
    for i in np.flatnonzero(used).tolist():  # an unused level is empty by the test above
        level = engine.levels[base + i]
        price = int(row["ladder_lo"]) + i
        slot, prev, total = int(level["head"]), -1, 0
        while slot >= 0:
            o = engine.orders[slot]
            if (o["oid"] == 0 or o["qty"] <= 0 or o["price"] != price or o["side"] != side
                    or o["instrument"] != inst or o["prev"] != prev
                    or engine.oid_index[o["oid"]] != slot):
                raise EngineInvariantError(f"order slot {slot} inconsistent with its level")
            total += int(o["qty"])
            count += 1
            prev, slot = slot, int(o["next"])
        if level["tail"] != prev or level["qty"] != total:
            raise EngineInvariantError(f"level {price} side {side}: tail or total wrong")
        if total and (best == k.NO_PRICE or side == k.SIDE_BUY):
            best = price
    return count, best


def check_reservations(engine: MatchingEngine, balances: Balances) -> None:
    """Every reservation equals what the account's resting orders hold; nothing is negative."""
    accounts = balances.accounts.live()
    positions = balances.positions.live()
    for name in ("cash_available", "cash_reserved"):
        if (accounts[name] < 0).any():
            raise EngineInvariantError(f"negative {name}")
    for name in ("units_available", "units_reserved"):
        if (positions[name] < 0).any():
            raise EngineInvariantError(f"negative {name}")
    live = engine.orders[: engine.counters[C_SLOTS_USED]]
    live = live[live["oid"] != 0]
    buys = live[live["side"] == k.SIDE_BUY]
    cash = np.zeros(len(accounts), dtype=np.int64)
    np.add.at(cash, buys["account"], buys["price"] * buys["qty"])
    if not np.array_equal(cash, accounts["cash_reserved"]):
        raise EngineInvariantError("cash_reserved differs from the resting buy orders")
    sells = live[live["side"] == k.SIDE_SELL]
    units = np.zeros(len(positions), dtype=np.int64)
    np.add.at(units, sells["pos_slot"], sells["qty"])
    if not np.array_equal(units, positions["units_reserved"]):
        raise EngineInvariantError("units_reserved differs from the resting sell orders")


def check_conservation(balances: Balances, cash_total_fen: int,
                       units_by_instrument: dict[int, int]) -> None:
    """Cash and each instrument's units sum to what was put in: nothing created or lost."""
    if balances.cash_total() != cash_total_fen:
        raise EngineInvariantError(f"cash total {balances.cash_total()} != {cash_total_fen}")
    positions = balances.positions.live()
    for inst, expected in units_by_instrument.items():
        mine = positions[positions["instrument_id"] == inst]
        total = int(mine["units_available"].sum() + mine["units_reserved"].sum())
        if total != expected:
            raise EngineInvariantError(f"instrument {inst}: {total} units, expected {expected}")


def command(op: int, **fields: int) -> np.ndarray:
    """A batch of one command with the given fields (the rest zero)."""
    cmd = np.zeros(1, dtype=COMMAND_DTYPE)
    cmd["op"] = op
    for name, value in fields.items():
        cmd[name] = value
    return cmd


# ---- allocation (primary offerings): thin facades over the kernels ---------------------------


def allocate_pro_rata(requested: np.ndarray, sequence: np.ndarray, account: np.ndarray,
                      available: int) -> np.ndarray:
    """Pro-rata by largest remainder (see ``engine.kernels.allocation.pro_rata``)."""
    requested = np.ascontiguousarray(requested, dtype=np.int64)
    out = np.zeros(len(requested), dtype=np.int64)
    code = allocation.pro_rata(requested, np.ascontiguousarray(sequence, dtype=np.int64),
                               np.ascontiguousarray(account, dtype=np.int64), available, out)
    if code == k.AMOUNT_TOO_LARGE:
        # Products beyond int64: Python integers are exact, and this path is rare.
        exact = reference_allocation.pro_rata(requested.tolist(), list(map(int, sequence)),
                                              list(map(int, account)), available)
        return np.array(exact, dtype=np.int64)
    return out


def allocate_first_come(requested: np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(codes, allocations, remaining)`` of first-come pledges; capacity < 0 is unlimited."""
    requested = np.ascontiguousarray(requested, dtype=np.int64)
    codes = np.zeros(len(requested), dtype=np.int64)
    out = np.zeros(len(requested), dtype=np.int64)
    remaining = allocation.first_come(requested, capacity, codes, out)
    return codes, out, int(remaining)


def allocate_rate_auction(rate_bps: np.ndarray, sequence: np.ndarray, requested: np.ndarray,
                          available: int) -> tuple[np.ndarray, int]:
    """``(allocations, clearing_rate_bps)`` of a uniform-price rate auction."""
    out = np.zeros(len(requested), dtype=np.int64)
    clearing = allocation.rate_auction(np.ascontiguousarray(rate_bps, dtype=np.int64),
                                       np.ascontiguousarray(sequence, dtype=np.int64),
                                       np.ascontiguousarray(requested, dtype=np.int64),
                                       available, out)
    return out, int(clearing)
