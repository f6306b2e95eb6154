"""Secondary markets: orders, cancels and call auctions, matched by the compiled engine.

Boards decide what may trade (``Offerings.instrument_info``: tradable, locked up, defaulted,
closed at the end of an operating-rights term);
``MatchingEngine`` (the numba kernels) matches and moves reserved cash and units. This
component keeps what the API shows about orders, records each fill's movements for
settlement, keeps the trade tape and candles, and publishes book, trade and order updates.

Orders are rows of arrays (``engine.lifecycle``), not Python objects: a compiled fold
(``engine.kernels.fold``) applies each kernel call's events to them in one pass, and this
module turns what it wrote into movements and tapes (numpy, per call) and into replies and
published updates (only those someone reads: a replay builds none). The per-order Python fold
this replaced is the reference model in ``engine.reference.markets``.

Every change to an instrument's book increments its sequence by one; a book update carries the
absolute new quantity of every level it changed.
"""

from __future__ import annotations

import bisect
import functools
import operator
import struct
from collections.abc import Callable
from itertools import compress
from typing import Any

import msgspec
import numpy as np

from engine import markets_bulk, markets_live
from engine import markets_commands as mc
from engine import movements as mv
from engine.clock import format_time_us
from engine.errors import CrowdexError
from engine.kernels import codes as k
from engine.kernels import fold as kf
from engine.kernels.amends import (
    AMEND_FIELDS,
    AMEND_IF_COVERED,
    AMEND_MAY_CHANGE,
    AMEND_UNCHANGED,
    AMEND_UNKNOWN,
    amend_read,
    covered_ahead,
    queued_pairs,
)
from engine.kernels.bookrows import book_rows
from engine.kernels.entries import ClientIds
from engine.kernels.layout import (
    C_EVENTS,
    C_LIVE_ORDERS,
    C_NEXT_TRADE,
    C_PROCESSED,
    COMMAND_DTYPE,
    EVENT_DTYPE,
)
from engine.kernels.movements import cash_movements, fill_movements
from engine.kernels.published import TRADE_ROW_COLUMNS, change_owners, trade_rows
from engine.lifecycle import (
    RECORD_DTYPE,
    SIDE_NAMES,
    STATUS_NAMES,
    Folded,
    Lifecycle,
)
from engine.machine import CASH_BY_FILLS, CASH_READ, CASH_RELEASED, Reply
from engine.marketdata import MarketData, TapeView, trade_view
from engine.matching import (
    EngineInvariantError,
    MatchingEngine,
    command,
    instruments_max,
    ladder_width_max,
    price_max_fen,
)

SELLER_FEE_BPS = 100  # BOARDS.md's default; an instrument's board rules may set another
RULES_1_BAND_CEILING_FEN = 3_355_442  # (ladder_width_max - 1) * 4 // 5
BAND_MULTIPLE = 5  # price band: 1 fen to 5 x the last trade price (before one: the reference)
FINISHED_ORDERS_KEPT = 100_000  # filled/cancelled orders kept for GET /v1/orders/{id}
OPEN_ORDERS_MAX = 1000  # per account
US_PER_DAY = 86_400_000_000
# Runs of several orders per kernel call (tests/engine/test_markets_runs.py shows a run gives
# what its orders one at a time would). Off only to measure what batching buys.
BATCHED_RUNS = True
# Book updates of a kernel call with at most this many level changes are built in plain Python
# (Markets._book_updates_small), above it by the compiled rows; the two give the same (a property
# test, tests/engine/test_book_rows.py, which keeps the Python build as the kernel's reference).
# None now: the compiled rows cost no more for one order, and less from a few up (bench
# recovery's live apply, CPU an order, Python up to 32 rows vs compiled always, best of 2-3 in one
# process: batches of 1 35.7 vs 35.4 us, 4: 17.7 vs 15.5, 16: 9.9 vs 7.3, 32: 6.6 vs 5.5, 64:
# 4.5 vs 4.5). The server's batches at 20k orders/s are 20-40.
BOOK_ROWS_SMALL = 0
# A kernel call of at least this many commands whose replies are all built (a live batch)
# sorts them by a few numpy calls (``Markets._replies_bulk``) instead of a Python step each.
# Measured in bench recovery's live apply (wrapped timers, the replies' own part): at 32
# commands a call the bulk path cost ~10 us more, at 256 ~24 us less; about even near 100.
REPLIES_BULK_MIN = 128

SIDES = {"buy": k.SIDE_BUY, "sell": k.SIDE_SELL}
TIFS = {"gtc": k.TIF_GTC, "ioc": k.TIF_IOC, "fok": k.TIF_FOK}

k_NEW, k_CANCEL, k_UNCROSS, k_AMEND = k.OP_NEW, k.OP_CANCEL, k.OP_UNCROSS, k.OP_AMEND
_PLACE, _CANCEL = mc.PlaceOrder, mc.CancelOrder


class MarketsMeta(msgspec.Struct, array_like=True):
    """What the arrays do not hold: the auction clock, the client_order_ids."""

    next_auction_us: int
    client_ids: list[tuple[int, str]]  # (order id, client_order_id) of kept orders with one


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MarketsMeta)
_LIFECYCLE_ARRAYS = ("records", "legs", "finished", "book_sequences")


class Markets:
    """The secondary-market component of the state machine."""

    name = "markets"

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        # Rules 4 and older relinked a relaid book in order id order (commands.RULES_VERSION).
        self.engine = MatchingEngine(fee_account_id=machine.fee_account_id,
                                     relinks_by_id=lambda: machine.rules < 5)
        self.lifecycle = Lifecycle()
        self.marketdata = MarketData()  # the trade tapes and candles
        self.next_auction_us = 0
        self._books: set[int] = set()  # instruments with a book (the engine's active rows)
        self._command_room(256)
        # Channel names, formatted once: account -> its orders channel, instrument -> its
        # trades and book channels (_listened).
        self._order_channels: dict[int, str] = {}
        self._trade_channels: dict[int, str] = {}
        self._book_channels: dict[int, str] = {}
        self._offerings_component: Any = None  # the machine's, once asked for (_offerings)
        # Accounts seen to be investors: an account's role never changes once it exists, so
        # an order's role check is a set probe after its account's first order.
        self._investors: set[int] = set()
        # (instrument, side) -> the instrument's info with which the rules let a run's order
        # there through, its book open (``_queue_place``): a later run's order there takes
        # ``apply_run``'s fast way once the info is the very same (``_passes_again``).
        self._passed: dict[tuple[int, str], Any] = {}
        # While a run that spans exchange times is applied (``apply_run``): the first
        # sequence of each of its times, and the times.
        self._run_times: tuple[list[int], list[int]] | None = None
        # While such a run is applied: the (instrument, side) pairs whose verdicts it keeps
        # (``ready``, ``tradable``) that a change of its time must drop (``_verdict_kept``).
        self._timed_pairs: list[tuple[int, str]] = []
        self._times_ahead = False  # and whether a change of its time is still to come
        self.queued_by = np.zeros(64, dtype=np.int64)  # scratch of engine.markets_live
        # engine.markets_live's cache of position rows (instrument -> row by account) and the
        # machine's Balances.position_slots it caches.
        self.slot_tables: dict[int, np.ndarray] = {}
        self.slot_source: dict | None = None
        self._amend_fields = np.zeros(len(AMEND_FIELDS), dtype=np.int64)  # amend_read's out

    def handlers(self) -> dict:
        return {mc.PlaceOrder: self._place, mc.CancelOrder: self._cancel,
                mc.RunAuction: self._auction, mc.AmendOrder: self._amend}

    # ---- rules checks ---------------------------------------------------------------------------

    def _offerings(self):
        # Asked for every run of orders: the machine's components never change once built.
        offerings = self._offerings_component
        if offerings is None:
            offerings = self._offerings_component = self.machine.component("offerings")
        return offerings

    def _check_tradable(self, instrument_id: int, side: str, info: Any = None) -> Any:
        """The instrument's info if the rules let an order of ``side`` trade it, else the
        refusal raised; ``info``: the instrument's, already read at this time."""
        if info is None:
            info = self._offerings().instrument_info(instrument_id)
        if info is None:
            raise CrowdexError("instrument_not_found", f"no instrument {instrument_id}")
        if info.closed:  # a state (409), so before the business rules
            raise CrowdexError("instrument_closed", "the instrument's term has ended")
        if not info.tradable:
            raise CrowdexError("not_permitted", f"the {info.board} board has no secondary market")
        if self.machine.profile == "cn2015":
            raise CrowdexError("matching_not_permitted",
                               "cn2015: no centralised matching; use /v1/offers")
        if info.status != "trading":
            raise CrowdexError("locked_up", "the instrument is still locked up")
        if info.defaulted and side == "sell":
            raise info.default_refusal()
        return info

    def has_book(self, instrument_id: int) -> bool:
        """Whether the instrument's book exists (opened at its first order)."""
        return instrument_id in self._books

    def _ensure_instrument(self, info: Any) -> None:
        instrument_id = info.instrument_id
        if self.has_book(instrument_id):
            return
        reference = info.reference_price_fen
        # Rules 1 capped the band so that any price in it fitted one ladder (commands.py).
        band_hi = price_max_fen if self.machine.rules >= 2 else RULES_1_BAND_CEILING_FEN
        self.engine.add_instrument(
            instrument_id, band_lo_fen=1, band_hi_fen=band_hi,
            band_multiple=BAND_MULTIPLE,
            fee_bps=info.seller_fee_bps, mode="auction" if info.board == "ip" else "book",
            reference_price_fen=reference)
        self._books.add(instrument_id)
        if info.board == "ip" and self.next_auction_us == 0:
            self.next_auction_us = self._next_auction_after(self.machine.now_us)

    def _open_orders(self, account_id: int) -> int:
        counts = self.lifecycle.open_count
        return int(counts[account_id]) if account_id < len(counts) else 0

    # ---- commands -------------------------------------------------------------------------------
    #
    # Orders, cancels and amends go through ``apply_run``: a run of consecutive PlaceOrder/
    # CancelOrder/AmendOrder entries is checked in Python, then matched by as few kernel calls
    # as exactness allows. A run gives exactly the replies and state that applying its entries
    # one at a time would (a single entry is a run of one, so there is one code path). Where a
    # Python check depends on what a queued command may still change (a client_order_id that
    # may free up, the open order limit, a cancel of an order the run may create, the order an
    # amend changes), the queue is matched first.

    def _place(self, cmd: mc.PlaceOrder, actor: int) -> Reply:
        return self.apply_run([(self.machine.last_sequence, actor, cmd)])[0]

    def _cancel(self, cmd: mc.CancelOrder, actor: int) -> Reply:
        return self.apply_run([(self.machine.last_sequence, actor, cmd)])[0]

    def run_types(self) -> tuple[type, ...]:
        """The command types ``apply_run`` takes (the machine groups consecutive ones)."""
        if not BATCHED_RUNS:
            return ()
        return (mc.PlaceOrder, mc.CancelOrder, mc.AmendOrder)

    def rests_orders(self, account_id: int) -> bool:
        """Whether the account has orders on a book (a run's orders may fill them). Asked
        for most entries a run carries: ``_open_orders`` inline, the count read as an int."""
        counts = self.lifecycle.open_count
        return account_id < len(counts) and counts.item(account_id) > 0

    def cash_effect(self, command: Any) -> int:
        """What a run command does to its account's available cash, for a run carrying a
        command of that account (``StateMachine._own_orders_allow``): a sell reads none, and
        changes it only by its fills (movements), unless its self-trade prevention may cancel
        or shrink the account's resting buy, which releases cash; a cancel reads none and may
        release some; a buy and an amend (of either side) may read it and lower it."""
        if type(command) is _PLACE and command.side == "sell":
            return (CASH_BY_FILLS if command.self_trade_prevention == "cancel_newest"
                    else CASH_RELEASED)
        return CASH_RELEASED if type(command) is _CANCEL else CASH_READ

    def reserve(self, commands: int) -> None:
        """Room for the orders of ``commands`` more commands (a replay's), taken at once, and
        for a trade's three movements for each (a guess, not a bound: the table grows past
        it). Unused room is address space only: its pages are mapped as they are written."""
        self.lifecycle.reserve(commands)
        table = self.machine.movements.table
        table.ensure(table.count + 3 * commands)

    def apply_columns(self, first_sequence: int, commands: np.ndarray, times: np.ndarray,
                      client_ids: ClientIds | None = None) -> int:
        """A replay's orders and cancels as columns (``client_ids``: their client_order_ids,
        if any has one), in one kernel call as far as exactness allows
        (``engine.markets_bulk``); returns how many were applied."""
        return markets_bulk.apply_columns(self, first_sequence, commands, times,
                                          OPEN_ORDERS_MAX, FINISHED_ORDERS_KEPT, client_ids)

    def apply_live_columns(self, first_sequence: int, commands: np.ndarray,
                           items: Callable[[int], list[tuple[int, int, Any]]],
                           cids: tuple[np.ndarray, list[str]] | None = None) -> list[Reply]:
        """A live run of plain orders and cancels as columns (``COMMAND_DTYPE``, numbered from
        ``first_sequence``, at the machine's time; ``cids``: the positions of the orders with
        a client_order_id, increasing, and their ids): checked and queued in bulk as far as
        exactness allows (``engine.markets_live``), the rest by ``apply_run`` over
        ``items(start)``, the run's ``(sequence, actor, command)`` from ``start`` on."""
        replies, done = markets_live.apply_live(self, first_sequence, commands, OPEN_ORDERS_MAX,
                                                cids)
        if done < len(commands):
            replies.extend(self.apply_run(items(done)))
        return replies

    def runs_span_times(self) -> bool:
        """Whether a replay's run may go on past a change of exchange time
        (``StateMachine._apply_carrying``, which stops it where a deadline falls due): while
        an auction is scheduled, orders change no deadline (the first IP book to open
        schedules one otherwise: ``_ensure_instrument``)."""
        return self.next_auction_us != 0

    def may_schedule(self, command: Any) -> bool:
        """Whether ``command`` (a run type) may schedule a deadline while no auction is
        scheduled (``runs_span_times`` False): an order on an instrument whose book is not
        open yet may open the first IP book (``_ensure_instrument``). A replay's run goes on
        past a change of time until it carries such an order (``StateMachine._apply_carrying``):
        a venue that lists no IP project never schedules an auction, and its runs span times
        as any other's."""
        return type(command) is _PLACE and command.instrument_id not in self._books

    def apply_run(self, items: list[tuple[int, int, Any]],
                  times: list[tuple[int, int]] | None = None) -> list[Reply]:
        """Apply ``(sequence, actor, command)`` items in order; one reply each. All at the
        machine's time, or with ``times`` (a replay's run that spans them:
        ``StateMachine._apply_carrying``), each at its own: ``(first sequence, time)`` of
        each time, the first one first."""
        if times is None:
            return self._apply_items(items)
        self._run_times = ([at for at, _ in times], [time_us for _, time_us in times])
        try:
            return self._apply_items(items)
        finally:
            self._run_times = None
            self.machine.now_us = times[-1][1]

    def _apply_items(self, items: list[tuple[int, int, Any]]) -> list[Reply]:
        replies: list[Reply | None] = [None] * len(items)
        queue = _Queue()
        tradable: dict[tuple[int, str], Any] = {}
        # (instrument, side) whose rules an order of the run passed, its book open, or of an
        # earlier run where the instrument's info is the same (``_passes_again``): an order
        # there by an investor (``_investors``, or ``_new_investor``) needs only the open
        # order limit and its client_order_id (if any: not on a resting order of its account,
        # nor on a queued one) checked, and its position row looked up (made if new).
        ready: set[tuple[int, str]] = set()
        place, cancel = self._queue_place, self._queue_cancel  # looked up once a run
        lifecycle, slots = self.lifecycle, self.machine.balances.position_slots
        open_ids = lifecycle.open_client_ids  # the same dict for the whole run
        investors, packers, passed = self._investors, _ORDER_PACKERS, self._passed
        new_slot = self.machine.balances.position_slot
        add_index, add_sequence = queue.indexes.append, queue.sequences.append
        add_op, add_row = queue.ops.append, queue.rows.append
        # The next change of time in the run, if any: (its first sequence, the time).
        run_times = self._run_times
        later = zip(run_times[0][1:], run_times[1][1:], strict=True) if run_times else iter(())
        next_at, next_time = next(later, _NEVER)
        self._times_ahead = run_times is not None
        if run_times:
            self.machine.now_us = run_times[1][0]
            self._timed_pairs.clear()
        for index, (sequence, actor, cmd) in enumerate(items):
            if sequence >= next_at:  # a later time: the verdicts that may change are dropped
                while sequence >= next_at:
                    self.machine.now_us = next_time
                    next_at, next_time = next(later, _NEVER)
                timed = self._timed_pairs
                for pair in timed:
                    ready.discard(pair)
                    tradable.pop(pair, None)
                timed.clear()
                self._times_ahead = next_at != _NEVER[0]
            kind = type(cmd)
            if kind is _PLACE and (actor in investors or self._new_investor(actor)):
                instrument_id = cmd.instrument_id
                pair = (instrument_id, cmd.side)
                if pair in ready or (pair in passed
                                     and self._passes_again(pair, ready, tradable)):
                    room = queue.room.get(actor)
                    if room is None:
                        counts = lifecycle.open_count  # _open_orders, inline
                        room = OPEN_ORDERS_MAX - (counts.item(actor) if actor < len(counts)
                                                  else 0)
                    slot = slots.get((actor, instrument_id))
                    packer = packers.get((cmd.side, cmd.order_type, cmd.time_in_force,
                                          cmd.post_only, cmd.self_trade_prevention))
                    cid = cmd.client_order_id
                    named = None if cid is None else (actor, cid)
                    # Else _queue_place says what to do (it matches the queue first).
                    if (room > 0 and packer is not None
                            and (named is None or (named not in open_ids
                                                   and named not in queue.client_ids))):
                        if slot is None:  # a new position row, made in queue order (as there)
                            slot = new_slot(actor, instrument_id)
                        queue.room[actor] = room - 1
                        # _Queue.place, inlined.
                        if named is not None:
                            queue.cids[len(queue.ops)] = cid
                            queue.client_ids.add(named)
                        add_index(index)
                        add_sequence(sequence)
                        add_op(k_NEW)
                        add_row(packer(instrument_id, actor, cmd.price, cmd.quantity, 0, slot))
                        queue.new_count += 1
                        continue
            elif kind is _CANCEL and actor != 0:
                # _queue_cancel's two commonest cases, with _Queue.cancel, inlined: an open
                # order of the actor's, kept (a replay's cancels), and an order of the queue
                # that has no id yet (a live batch's).
                order_id = cmd.order_id
                if 0 < order_id < lifecycle.next_oid:
                    record = lifecycle.records.item(order_id)
                    inline = (record[_REC_KEPT] and record[_REC_ACCOUNT] == actor
                              and record[_REC_STATUS] <= kf.PARTIALLY_FILLED)
                else:
                    inline = queue.may_give(order_id, self.engine)
                    if inline:
                        queue.by_id.add(len(queue.ops))
                if inline:
                    add_index(index)
                    add_sequence(sequence)
                    add_op(k_CANCEL)
                    add_row(_pack_cancel(actor, 0, 0, order_id, -1))
                    continue
            try:
                if kind is _PLACE:
                    place(queue, replies, index, sequence, actor, cmd, tradable, ready)
                elif kind is _CANCEL:
                    cancel(queue, replies, index, sequence, actor, cmd)
                else:
                    self._queue_amend(queue, replies, index, sequence, actor, cmd, tradable)
            except CrowdexError as error:
                replies[index] = Reply(error.status, error.body())
        self._match(queue, replies)
        return replies

    def _new_investor(self, actor: int) -> bool:
        """Whether ``actor``, not yet seen to be one (``_investors``), is an investor; if so
        it is noted (an account's role never changes)."""
        account = self.machine.accounts.get(actor)
        if account is None or account.role != "investor":
            return False
        self._investors.add(actor)
        return True

    def _passes_again(self, pair: tuple[int, str], ready: set, tradable: dict) -> bool:
        """Whether orders on ``pair`` (instrument, side), which the rules let through in an
        earlier run with the instrument's info ``_passed[pair]``, pass in this run
        (``apply_run``: ``ready``, ``tradable``): when the instrument's info now is that very
        object. ``Offerings.instrument_info`` gives the same object for the same facts, and
        the rules' verdict (``_check_tradable``) is a function of the info, the side and the
        venue's profile; the book, once open, stays open. The other side's info, if the run
        read it, is the instrument's (``_queue_place``): one lookup, not two."""
        info = tradable.get(pair)
        if info is None:
            info = tradable.get((pair[0], _OTHER_SIDE.get(pair[1])))
            if info is None or isinstance(info, CrowdexError):
                info = self._offerings().instrument_info(pair[0])
            if info is not self._passed[pair]:
                return False
            tradable[pair] = info
        elif info is not self._passed[pair]:
            return False
        ready.add(pair)
        if self._times_ahead and info.reads_clock:
            self._timed_pairs.append(pair)  # see _verdict_kept
        return True

    def _verdict_kept(self, pair: tuple[int, str], verdict: Any) -> None:
        """Note ``pair``, just given its ``verdict`` (the info, or the refusal) in a run
        that spans exchange times with a change of time still to come, for that change
        (``_apply_items``) to drop if the instrument's info may be another at a later time
        (``Offerings.info_moves_with_time``: a loan's default, an operating-rights term's
        end). Any other instrument's info is the same facts while the run lasts (its status
        and lock-up change only at a deadline, which ends a run, or by a command no run
        carries), so the rules' verdict on it, a function of the info, the side and the
        venue's profile, stands at every time of the run."""
        if (self._offerings().info_moves_with_time(pair[0])
                if isinstance(verdict, CrowdexError) else verdict.reads_clock):
            self._timed_pairs.append(pair)

    def _queue_place(self, queue: _Queue, replies: list, index: int, sequence: int, actor: int,
                     cmd: mc.PlaceOrder, tradable: dict, ready: set) -> None:
        # Once per order of a live batch: lookups are hoisted, an actor's role is checked
        # once (``_investors``) and what a run cannot change (an instrument's rules for a
        # side) once per run (``tradable``: (instrument, side) -> info or refusal).
        if actor not in self._investors and not self._new_investor(actor):
            raise CrowdexError("forbidden", "only investors trade")
        instrument_id = cmd.instrument_id
        key = (instrument_id, cmd.side)
        info = tradable.get(key)
        if info is None:
            # The other side's info, if it passed: the run has one time, and nothing its
            # orders do changes an instrument's info (one lookup, not two, a live batch).
            other = tradable.get((instrument_id, _OTHER_SIDE.get(cmd.side)))
            try:
                info = self._check_tradable(instrument_id, cmd.side,
                                            None if isinstance(other, CrowdexError) else other)
            except CrowdexError as error:
                info = error
            tradable[key] = info
            if self._times_ahead:
                self._verdict_kept(key, info)
        if isinstance(info, CrowdexError):
            raise info
        cid = cmd.client_order_id
        room = queue.room.get(actor)  # new orders the queue may still take from this actor
        if room is None:
            counts = self.lifecycle.open_count  # _open_orders, inline
            room = OPEN_ORDERS_MAX - (counts.item(actor) if actor < len(counts) else 0)
        if ((cid is not None and ((actor, cid) in self.lifecycle.open_client_ids
                                  or (actor, cid) in queue.client_ids))
                or room <= 0 or instrument_id not in self._books):
            self._match(queue, replies)  # the exact state first
            if cid is not None and (actor, cid) in self.lifecycle.open_client_ids:
                raise CrowdexError("duplicate_client_order_id",
                                   "an open order already has this client_order_id")
            if self._open_orders(actor) >= OPEN_ORDERS_MAX:
                raise CrowdexError("limit_exceeded", f"at most {OPEN_ORDERS_MAX} open orders")
            self._ensure_instrument(info)
            room = OPEN_ORDERS_MAX - self._open_orders(actor)
        queue.room[actor] = room - 1
        # Its position row now (created if new): commands are queued in order, so the rows are
        # created in the order the engine's own lookup would create them.
        balances = self.machine.balances
        slot = balances.position_slots.get((actor, instrument_id))
        if slot is None:
            slot = balances.position_slot(actor, instrument_id)
        ready.add(key)  # its rules passed and its book is open (apply_run)
        self._passed[key] = info
        queue.place(index, sequence, actor, cmd, slot)

    def _queue_cancel(self, queue: _Queue, replies: list, index: int, sequence: int,
                      actor: int, cmd: mc.CancelOrder) -> None:
        order_id = cmd.order_id
        lifecycle = self.lifecycle
        # Lifecycle.known, with the record read once (a tuple: one numpy call, not one a field).
        record = lifecycle.records.item(order_id) if 0 < order_id < lifecycle.next_oid else None
        if record is not None and record[_REC_KEPT]:  # its owner and a finished status never
            if record[_REC_ACCOUNT] != actor:  # change
                raise CrowdexError("order_not_found", f"no order {order_id}")
            status = record[_REC_STATUS]
            # Finished: 409, unless a queued command finishes enough orders to evict it from
            # the kept ones first (404 then): with a queue, the kernel and _cancels_refused
            # decide, as for an open order a queued one may fill first.
            if status > kf.PARTIALLY_FILLED and not queue.ops:
                raise CrowdexError("order_not_open", f"order {order_id} is {STATUS_NAMES[status]}")
            queue.cancel(index, sequence, actor, order_id)
            return
        # An id not given yet may be given to one of the queued new orders (the kernel gives
        # ids in command order, to orders it does not refuse): the kernel cancels by id in the
        # same call, exactly as one command at a time would, and the reply is read after the
        # fold (see _replies). Matching the queue here instead made each such cancel cut the
        # run short: most cancels name recent orders.
        # Account 0 owns no order, and the kernel would skip the owner check for it.
        if actor != 0 and queue.may_give(order_id, self.engine):
            queue.cancel(index, sequence, actor, order_id, by_id=True)
            return
        raise CrowdexError("order_not_found", f"no order {order_id}")

    def _amend(self, cmd: mc.AmendOrder, actor: int) -> Reply:
        return self.apply_run([(self.machine.last_sequence, actor, cmd)])[0]

    def _queue_amend(self, queue: _Queue, replies: list, index: int, sequence: int,
                     actor: int, cmd: mc.AmendOrder, tradable: dict) -> None:
        """API.md's PATCH /v1/orders/{id}: a lower quantity keeps the order's place; a new
        price or a larger quantity re-enters it (``OP_AMEND``, checked like a new order).
        Its checks read the order as of this command, which queued ones may change: the
        queue is matched first, and the amend starts the next kernel call, unless no queued
        command can change the order (``engine.kernels.amends.amend_read``, which reads the
        order's record in the same call)."""
        order_id, queued = cmd.order_id, len(queue.ops)
        commands = self._command_array(queue) if queued else self._commands
        verdict = self._read_amended(order_id, commands, queued)
        if queued and verdict != AMEND_UNCHANGED and not self._stays_finished(verdict, queue):
            if self._amend_later(queue, commands, verdict, index, sequence, actor, cmd,
                                 tradable):
                return
            self._match(queue, replies)
            verdict = self._read_amended(order_id, self._commands, 0)
        if actor not in self._investors and not self._new_investor(actor):
            raise CrowdexError("forbidden", "only investors trade")
        if verdict == AMEND_UNKNOWN:
            raise CrowdexError("order_not_found", f"no order {order_id}")
        (owner, instrument, side, post_only, status, old_price, old_quantity, filled,
         cancelled) = self._amend_fields.tolist()
        if owner != actor:
            raise CrowdexError("order_not_found", f"no order {order_id}")
        if status > kf.PARTIALLY_FILLED:
            raise CrowdexError("order_not_open", f"order {order_id} is {STATUS_NAMES[status]}")
        if cmd.price is None and cmd.quantity is None:
            raise CrowdexError("invalid_field", "send a new price, a new quantity or both")
        quantity = old_quantity if cmd.quantity is None else cmd.quantity
        remaining = quantity - filled - cancelled
        if quantity <= filled or remaining <= 0:
            raise CrowdexError("invalid_amend", f"the new quantity must exceed the "
                               f"{filled + cancelled} units "
                               "already filled (or cancelled by self-trade prevention)")
        price = old_price if cmd.price is None else cmd.price
        rest = old_quantity - filled - cancelled
        if price != old_price or remaining > rest:  # re-enters: the rules of a new order
            self._tradable_now((instrument, SIDE_NAMES[side]), tradable)
        queue.amend(index, sequence, actor, order_id, instrument, post_only, price, remaining)

    def _amend_later(self, queue: _Queue, commands: np.ndarray, verdict: int, index: int,
                     sequence: int, actor: int, cmd: mc.AmendOrder, tradable: dict) -> bool:
        """Whether the amend, whose order the queued commands may change, joins the queue
        all the same, for the kernel to decide at its turn (else the queue is matched first):
        by an investor, where the rules of a new order there are known to pass if it
        re-enters. The kernel refuses it where the order is not open by then, and
        ``_cancels_refused`` says why, as for a cancel: 409 if the order finished before it,
        404 if the order is unknown then (not given yet, not the actor's, or evicted). A new
        price only keeps the remaining quantity the order has then (``AMEND_REMAINING``); a
        new quantity is the order's in all (``AMEND_BY_TOTAL``), of which the kernel takes
        what is filled or cancelled by then, and refuses it where that leaves nothing
        (``_amend_refused`` says how much), where no queued amend of the order may change
        its quantity first. The order is either

        - kept, open now and the actor's: its instrument and side are read, and a new
          order's rules checked there now (where they refuse, the queue is matched first:
          whether the amend re-enters, and so meets them, is known only at its turn); or
        - an id the queue's new orders may be given (as ``_queue_cancel``'s by id), where
          none of the actor's is post-only (a re-entry reads the order's flag: 0 then) and
          the rules pass now where each of them is (an instrument and side that has passed
          at this time, ``tradable``, or checked now): whichever it is (another account's
          is not found)."""
        price, quantity = cmd.price, cmd.quantity
        if (price is None and quantity is None) or (price is not None and price <= 0):
            return False  # refusals of the checks in Python, after the order's
        if actor not in self._investors and not self._new_investor(actor):
            return False
        order_id = cmd.order_id
        if quantity is not None and order_id in queue.amended:
            return False  # its quantity in all may change before: read after the match
        if verdict == AMEND_UNKNOWN:
            if not queue.may_give(order_id, self.engine):
                return False
            queued = len(queue.ops)
            pairs = np.empty(queued, dtype=np.int64)
            count = queued_pairs(commands, queued, actor, pairs)
            if count < 0 or not all(self._passes_now((pair >> 1, SIDE_NAMES[pair & 1]), tradable)
                                    for pair in set(pairs[:count].tolist())):
                return False
            queue.by_id.add(len(queue.ops))
            instrument = post_only = 0
            total = done = -1  # the call's acceptance of the order says its quantity
        else:
            (owner, instrument, side, post_only, status, _, total, filled,
             cancelled) = self._amend_fields.tolist()
            if owner != actor or status > kf.PARTIALLY_FILLED:
                return False
            if not self._passes_now((instrument, SIDE_NAMES[side]), tradable):
                return False
            done = filled + cancelled
        position = len(queue.ops)
        queue.later.add(position)
        if quantity is None:
            queue.amend(index, sequence, actor, order_id, instrument, post_only, price,
                        k.AMEND_REMAINING)
        else:
            queue.later_done[position] = done
            queue.amend(index, sequence, actor, order_id, instrument, post_only,
                        0 if price is None else price, quantity, k.AMEND_BY_TOTAL, total)
        return True

    def _tradable_now(self, pair: tuple[int, str], tradable: dict) -> None:
        """Raise the rules' refusal of a new order on ``pair`` (instrument, side) now, unless
        one passed them at this time in the run (``tradable``: the verdicts a change of the
        run's time may change are dropped from it, and its commands change no instrument's
        info)."""
        passed = tradable.get(pair)
        if passed is None or isinstance(passed, CrowdexError):
            self._check_tradable(*pair)

    def _passes_now(self, pair: tuple[int, str], tradable: dict) -> bool:
        """Whether a new order on ``pair`` passes the rules now (``_tradable_now``)."""
        try:
            self._tradable_now(pair, tradable)
        except CrowdexError:
            return False
        return True

    def _stays_finished(self, verdict: int, queue: _Queue) -> bool:
        """Whether the amended order, read finished (``AMEND_MAY_CHANGE``), stays so as of
        the amend whatever the queue does: a finished order changes only by its eviction
        from the kept ones, once ``FINISHED_ORDERS_KEPT`` others finish after it, and the
        queued commands can finish at most the orders resting now and their own new ones.
        Then its record, read already, is what the amend's checks read (404 or 409), and
        the queue is not matched first (a kernel call each, 124 of a mixed replay's)."""
        if verdict != AMEND_MAY_CHANGE or self._amend_fields[4] <= kf.PARTIALLY_FILLED:
            return False
        counters = self.lifecycle.counters
        kept = int(counters[kf.F_FIFO_TAIL] - counters[kf.F_FIFO_HEAD])
        may_finish = int(self.engine.counters[C_LIVE_ORDERS]) + queue.new_count
        return kept + may_finish <= FINISHED_ORDERS_KEPT

    def _read_amended(self, order_id: int, commands: np.ndarray, count: int) -> int:
        """``amend_read`` of ``order_id`` after the ``count`` queued ``commands``: its verdict,
        the order's fields in ``_amend_fields``. An id never given is unknown without a call
        (an id past int64, which a journal may hold, cannot be passed to the kernel)."""
        lifecycle = self.lifecycle
        if not 0 < order_id < lifecycle.next_oid:
            return AMEND_UNKNOWN
        verdict = amend_read(lifecycle.records, lifecycle.next_oid, order_id, commands, count,
                             self._amend_fields)
        if verdict == AMEND_IF_COVERED:  # orders of the other side queued: is it covered?
            engine = self.engine
            verdict = (AMEND_UNCHANGED if covered_ahead(
                lifecycle.records, engine.orders, engine.levels, engine.instruments,
                engine.oid_index, order_id, commands, count) else AMEND_MAY_CHANGE)
        return verdict

    def _auction(self, cmd: mc.RunAuction, actor: int) -> Reply:
        account = self.machine.accounts.get(actor)
        if actor and (account is None or account.role != "operator"):
            raise CrowdexError("forbidden", "only operators run auctions")
        info = self._offerings().instrument_info(cmd.instrument_id)
        if info is None:
            raise CrowdexError("instrument_not_found", f"no instrument {cmd.instrument_id}")
        if info.board != "ip":
            raise CrowdexError("not_permitted", "only IP instruments trade in call auctions")
        return Reply(200, self.uncross(cmd.instrument_id))

    def cancel_resting(self, instrument_id: int, sides: tuple[str, ...]) -> int:
        """Cancel every resting order of an instrument on ``sides``, oldest first, as their
        owners' cancels would (the offerings' clock: the end of a term, a default); returns
        how many. Nobody waits for these replies."""
        resting = self.lifecycle.resting(instrument_id, tuple(SIDES[side] for side in sides))
        if not resting:
            return 0
        queue = _Queue()
        for index, (order_id, account) in enumerate(resting):
            queue.cancel(index, self.machine.last_sequence, account, order_id)
        self._match(queue, [None] * len(resting))
        return len(resting)

    def uncross(self, instrument_id: int) -> dict:
        """Run one instrument's call auction; the response body of an uncross."""
        summary = {"instrument_id": instrument_id, "price": 0, "quantity": 0, "trade_count": 0}
        if not self.has_book(instrument_id):
            return summary
        queue = _Queue()
        queue.uncross(self.machine.last_sequence, instrument_id)
        replies: list = [None]
        self._match(queue, replies)
        summary.update(replies[0] or {})
        return summary

    # ---- matching and the fold ----------------------------------------------------------------

    def _match(self, queue: _Queue, replies: list, commands: np.ndarray | None = None,
               named: tuple[np.ndarray, list[str]] | None = None) -> None:
        """Match every queued command in one kernel call, fold its events into the order
        records (compiled), then, in bulk: movements, the tape, replies and published updates
        (the last two only where someone reads them). ``commands``: the queue's rows as an
        array already (``match_columns``); ``named``: the positions and client_order_ids of
        its new orders that have one, if they are distinct and on no resting order of their
        accounts (``match_columns``; else ``queue.cids`` has them): then they are kept and
        followed in a few numpy steps (``Lifecycle.follow_marks_bulk``)."""
        if not queue.ops:
            return
        if commands is None:
            commands = self._command_array(queue)
        machine, engine, lifecycle = self.machine, self.engine, self.lifecycle
        balances = machine.balances
        counters = engine.counters
        trades_before = int(counters[C_NEXT_TRADE])  # each fill takes one trade id
        first_oid = engine.next_order_id  # the first id this call may give
        result = engine.process(commands, balances, slots_filled=True, scratch_results=True)
        events = result.events
        if named is None:
            cid_flags = queue.cid_flags()
        else:
            cid_flags = np.zeros(len(commands), dtype=np.int8)
            cid_flags[named[0]] = 1
        # Its commands' time: the machine's, or in a run that spans times, theirs (one, or
        # each command's as an array).
        times = machine.now_us if self._run_times is None else self._times_of(queue.sequences)
        each = isinstance(times, np.ndarray)
        folded = lifecycle.fold(events, commands, cid_flags, machine.now_us if each else times,
                                FINISHED_ORDERS_KEPT, engine.instruments, engine.next_order_id,
                                balances.accounts.count)
        if each:  # a new order's creation time is its command's
            accepted = np.flatnonzero(events["kind"] == k.EV_ACCEPTED)
            lifecycle.records["created_us"][events["oid"][accepted]] = (
                times[events["cmd"][accepted]])
        if named is not None:
            ids = named[1]
            lifecycle.note_placed_ids(folded, named[0],
                                      lambda accepted: list(compress(ids, accepted.tolist())))
        elif queue.cids:
            lifecycle.note_client_ids(folded, queue.cids)
        trades = int(counters[C_NEXT_TRADE]) - trades_before
        if trades:
            self._record_fills(events, trades, queue.sequences, times)
        views: dict[int, dict] = {}  # change row -> view: a reply and an update share it
        codes = result.results
        if (len(codes) >= REPLIES_BULK_MIN and machine.replies_needed
                and machine.replies_kept is None and k_UNCROSS not in queue.ops):
            self._replies_bulk(queue, commands, codes, folded, replies, views)
        else:
            self._replies(queue, commands, codes.tolist(), folded, events, replies, views)
        if machine.may_want_updates():
            self._publish(folded, events, trades, views)
        if named is None:
            lifecycle.follow_marks(folded)
        else:
            lifecycle.follow_marks_bulk(folded, first_oid)
        machine.last_sequence = queue.sequences[-1]
        queue.clear()

    def match_columns(self, commands: np.ndarray, indexes: list[int], sequences: list[int],
                      by_id: list[int], replies: list,
                      cids: tuple[np.ndarray, list[str]] | None = None) -> None:
        """Match ``commands`` (``COMMAND_DTYPE`` rows checked as ``apply_run`` checks them,
        their position rows filled: ``engine.markets_live``) in one kernel call, as ``_match``
        matches a queue: each answers ``replies[indexes[i]]`` at ``sequences[i]``; ``by_id``:
        the positions of the cancels of ids not given when queued; ``cids``: the positions
        of the new orders with a client_order_id and their ids, which are distinct and on no
        resting order of their accounts (``engine.markets_live._named``)."""
        queue = _Queue()
        queue.indexes.extend(indexes)
        queue.sequences.extend(sequences)
        queue.ops.extend(commands["op"].tolist())
        queue.by_id = set(by_id)
        self._match(queue, replies, commands, cids)

    def _command_room(self, n: int) -> None:
        """A scratch array for a kernel call's commands, with room for ``n`` (and its bytes)."""
        self._commands = np.zeros(n, dtype=COMMAND_DTYPE)
        self._command_bytes = memoryview(self._commands.view(np.uint8))
        self._commands_of: _Queue | None = None  # whose rows it holds (_command_array)

    def _command_array(self, queue: _Queue) -> np.ndarray:
        """``queue.array()`` in the scratch array: its packed rows copied in as bytes, no
        array built (a kernel call's commands are not kept after it). Only the rows queued
        since the last copy of the same queue are copied: a queue only grows until it is
        matched, the kernel call is the only writer of the scratch rows, and the queue is
        cleared after it (``_Queue.copied``); an amend reads the queue as an array each."""
        n = len(queue.rows)
        if n > len(self._commands):
            self._command_room(2 * n)
        start = queue.copied if self._commands_of is queue else 0
        if start < n:
            data = b"".join(queue.rows[start:] if start else queue.rows)
            size = COMMAND_DTYPE.itemsize
            self._command_bytes[start * size: start * size + len(data)] = data
            queue.copied, self._commands_of = n, queue
        return self._commands[:n]

    def _record_fills(self, events: np.ndarray, trades: int, sequences: list[int],
                      times: int | np.ndarray) -> None:
        """The movements of a kernel call's ``trades`` fills (among its ``events``) for
        settlement (the kernel already moved the balances: who paid whom, and the fee by the
        rule and rate the kernel charged), and the tapes: two compiled passes over the
        events, which skip the rows that are not fills (no mask, no copy). ``times``: the
        commands' exchange time, or each one's (``_times_of``)."""
        self._fill_movements(events, np.array(sequences, dtype=np.int64), trades)
        if isinstance(times, np.ndarray):  # each fill at its command's (they never go down)
            self.marketdata.record(events, int(times[0]), times[events["cmd"]])
        else:
            self.marketdata.record(events, times)

    def _times_of(self, sequences: list[int]) -> int | np.ndarray:
        """The exchange time of a kernel call's commands (``sequences``, increasing) in a run
        that spans times (``_run_times``): one, if they share it (most calls), else each
        command's."""
        firsts, times = self._run_times
        first = bisect.bisect_right(firsts, sequences[0]) - 1
        last = bisect.bisect_right(firsts, sequences[-1]) - 1
        if first == last:
            return int(times[first])
        # Each command's time, from the times its run changes at: its commands' sequences are
        # increasing, so one pass over the changes between the first's and the last's.
        out, start = [], 0
        for change in range(first + 1, last + 1):
            end = bisect.bisect_left(sequences, firsts[change], start)
            out.extend([times[change - 1]] * (end - start))
            start = end
        out.extend([times[last]] * (len(sequences) - start))
        return np.array(out, dtype=np.int64)

    def _fill_movements(self, fills: np.ndarray, sequences: np.ndarray,
                        trades: int | None = None) -> None:
        """The trades' movements (``fills``: ``EVENT_DTYPE`` rows, those not fills skipped;
        ``trades``: how many fills, all rows by default; ``sequences``: each command's of the
        kernel call, by its position), written by one compiled pass that also takes the fees
        from the sellers' proceeds under rules 4 (``StateMachine.take_fees_from_proceeds``)."""
        machine = self.machine
        log = machine.movements
        start = log.claim(3 * (len(fills) if trades is None else trades))
        written = fill_movements(fills, sequences, self.engine.instruments,
                                 machine.fee_account_id, log.table.rows, start, log.next_id,
                                 machine.balances.accounts.rows, machine.rules >= 4)
        log.commit(written)

    def _replies(self, queue: _Queue, commands: np.ndarray, codes: list[int], folded: Folded,
                 events: np.ndarray, replies: list, views: dict[int, Any]) -> None:
        """One reply per queued command; an order's view is the order as of that command.

        While replies are not needed (a replay) their bodies are left unbuilt, and those
        bodiless replies are shared objects."""
        first_row = folded.first_changes  # an accepted command changed its order first
        needed = self.machine.replies_needed
        kept = self.machine.replies_kept  # None: every reply is needed while needed is
        ok, unbuilt = k.OK, _UNBUILT
        if (needed and kept is None and queue.new_count == len(codes)
                and codes.count(ok) == len(codes)):
            # Every command a new order, accepted, its reply built (a live batch's commonest
            # call): the views at the commands' first change rows, no step a command first.
            built = self._views_at(folded.changes, first_row, views)
            for index, view in zip(queue.indexes, built, strict=True):
                replies[index] = Reply(201, view)
            return
        sequences = queue.sequences
        # The accepted commands' replies: where they go, their status, their change row.
        at: list[int] = []
        statuses: list[int] = []
        rows: list[int] = []
        not_found: list[int] = []  # positions of cancels of orders no longer on the book
        for position, (index, op, code, row) in enumerate(zip(queue.indexes, queue.ops, codes,
                                                              first_row, strict=True)):
            if code == ok and op != k_UNCROSS:
                status = 201 if op == k_NEW else 200
                if needed and (kept is None or sequences[position] in kept):
                    at.append(index)
                    statuses.append(status)
                    rows.append(row)
                else:
                    replies[index] = unbuilt[status]
            elif op == k_UNCROSS:
                replies[index] = _uncrossed(events)
            elif code == k.ORDER_NOT_FOUND and (op == k_CANCEL or position in queue.later):
                not_found.append(position)
            elif code == k.INVALID_AMEND:
                replies[index] = self._amend_refused(queue, position, folded)
            elif needed and (kept is None or sequences[position] in kept):
                replies[index] = _refused(code)
            else:  # nobody reads it (a replay's): its status only, one shared reply per code
                replies[index] = _refused_unread(code)
        if not_found:
            self._cancels_refused(queue, commands, not_found, folded, replies)
        if rows:
            built = self._views_at(folded.changes, rows, views)
            for index, status, view in zip(at, statuses, built, strict=True):
                replies[index] = Reply(status, view)

    def _replies_bulk(self, queue: _Queue, commands: np.ndarray, codes: np.ndarray,
                      folded: Folded, replies: list, views: dict[int, Any]) -> None:
        """``_replies`` of a call whose every reply is built and that runs no auction (a
        live batch), the accepted commands told apart by numpy, not a Python step each:
        the same replies (``tests/engine/test_replies_bulk.py``)."""
        accepted = np.flatnonzero(codes == k.OK)
        indexes = queue.indexes
        if len(accepted) < len(codes):
            ops = queue.ops
            not_found: list[int] = []  # as in _replies
            refused = np.flatnonzero(codes != k.OK)
            for position, code in zip(refused.tolist(), codes[refused].tolist(), strict=True):
                if code == k.ORDER_NOT_FOUND and (ops[position] == k_CANCEL
                                                  or position in queue.later):
                    not_found.append(position)
                elif code == k.INVALID_AMEND:
                    replies[indexes[position]] = self._amend_refused(queue, position, folded)
                else:
                    replies[indexes[position]] = _refused(code)
            if not_found:
                self._cancels_refused(queue, commands, not_found, folded, replies)
        if not len(accepted):
            return
        statuses = np.where(commands["op"][accepted] == k_NEW, 201, 200).tolist()
        rows = folded.first_change_rows[accepted]
        built = self._views_at(folded.changes, rows.tolist(), views, rows)
        for index, status, view in zip(map(indexes.__getitem__, accepted.tolist()), statuses,
                                       built, strict=True):
            replies[index] = Reply(status, view)

    def _views_at(self, changes: np.ndarray, rows: list[int], cache: dict[int, dict],
                  index: np.ndarray | None = None) -> list[dict]:
        """Views of the orders of change ``rows``, each as of its command (built once per row:
        ``cache``, for the call); ``index``: the rows as an array, if the caller has it."""
        if not cache:  # the first views of the call (rows are distinct: a row per command)
            built = self.lifecycle.change_views(changes, rows if index is None else index)
            cache.update(zip(rows, built, strict=True))
            return built
        missing = [row for row in rows if row not in cache]
        if missing:
            cache.update(zip(missing, self.lifecycle.change_views(changes, missing),
                             strict=True))
        return [cache[row] for row in rows]

    @staticmethod
    def _amend_refused(queue: _Queue, position: int, folded: Folded) -> Reply:
        """The refusal of an amend by its quantity in all that the kernel decided
        (``_amend_later``) and refused: the new quantity no more than what is filled or
        cancelled of the order by then, as the order's last change before it says, or its
        record when read (nothing changed it before)."""
        _, order_id = queue.actor_and_order(position)
        changes = folded.changes
        before = changes[(changes["oid"] == order_id) & (changes["pos"] < position)]
        done = (queue.later_done[position] if not len(before)
                else int(before["filled"][-1] + before["cancelled"][-1]))
        error = CrowdexError("invalid_amend", f"the new quantity must exceed the {done} units "
                             "already filled (or cancelled by self-trade prevention)")
        return Reply(error.status, error.body())

    def _cancels_refused(self, queue: _Queue, commands: np.ndarray, positions: list[int],
                         folded: Folded, replies: list) -> None:
        """Cancels the kernel did not find, and amends it decided (``_amend_later``) that it
        did not find: the order finished before that command (409), or it is unknown as of
        that command (404: not given yet, not the actor's, or evicted by an earlier command
        of the call). What the call did to their orders before each is
        read by one compiled pass over its change and mark rows (``kf.cancels_refused``)."""
        before = np.empty((len(positions), 4), dtype=np.int64)
        kf.cancels_refused(folded.changes, folded.marks, commands,
                           np.array(positions, dtype=np.int64), before)
        records, by_id, indexes = self.lifecycle.records, queue.by_id, queue.indexes
        for position, (status, evicted, actor, order_id) in zip(positions, before.tolist(),
                                                                strict=True):
            if evicted or (position in by_id and (
                    status < 0 or records.item(order_id)[_REC_ACCOUNT] != actor)):
                reply = _error_reply(404, "order_not_found", f"no order {order_id}")
            else:
                if status < 0:
                    status = records.item(order_id)[_REC_STATUS]
                reply = _error_reply(409, "order_not_open",
                                     f"order {order_id} is {STATUS_NAMES[status]}")
            replies[indexes[position]] = reply

    def _publish(self, folded: Folded, events: np.ndarray, trades: int,
                 views: dict[int, dict]) -> None:
        """Trade, order and book updates for the channels someone listens to, in the order the
        commands made them: per command its trades, then its orders (in the order it changed
        them), then its books. Each update ``(channel, data, sequence)`` is keyed
        ``3 * command + kind`` (kind 0 a trade, 1 an order, 2 a book), added in order within
        its kind: a stable sort by key puts them in that order."""
        machine = self.machine
        wants, wants_any = machine.wants, machine.wants_any
        items: list[tuple[int, tuple[str, Any, int | None]]] = []
        if trades and wants_any("trades:"):
            rows = self._trade_rows(events, trades)
            channels = _listened(self._trade_channels, "trades:", {row[1] for row in rows},
                                 wants)
            if channels:
                items.extend(self._trade_items(rows, channels))
        changes = folded.changes
        # Most batches have no listener on any account's channel: no owner read nor lookup.
        if len(changes) and wants_any("orders@"):
            owners = np.empty((2, len(changes)), dtype=np.int64)
            change_owners(changes, self.lifecycle.records, owners)
            accounts, positions = owners.tolist()
            channels = _listened(self._order_channels, "orders@", set(accounts), wants)
            if channels:
                rows = [row for row, account in enumerate(accounts) if account in channels]
                built = self._views_at(changes, rows, views)
                for row, view in zip(rows, built, strict=True):
                    items.append((3 * positions[row] + 1, (channels[accounts[row]], view, None)))
        if len(folded.books) and wants_any("book:"):
            items.extend(self._book_updates(folded))
        if items:
            items.sort(key=_first)
            machine.outbox.extend(map(_second, items))

    def _trade_rows(self, events: np.ndarray, trades: int) -> list[list[int]]:
        """The ``trades`` fills among a kernel call's ``events``, each as ``[command,
        instrument, trade id, price, quantity, taker side]`` (``kernels.published``)."""
        out = np.empty((trades, TRADE_ROW_COLUMNS), dtype=np.int64)
        found = trade_rows(events, out)
        if found != trades:
            raise EngineInvariantError(f"{found} fills among the events of {trades} trades")
        return out.tolist()

    def _trade_items(self, rows: list[list[int]], channels: dict[int, str]) -> list[tuple]:
        """The trade updates of fill ``rows`` (``_trade_rows``) on the listened ``channels``,
        keyed for ``_publish``'s sort."""
        time = format_time_us(self.machine.now_us)
        get = channels.get
        return [(3 * command, (channel, {
                    "trade_id": trade_id, "price": price, "quantity": quantity,
                    "taker_side": _SIDE_NAME[side], "time": time}, None))
                for command, instrument, trade_id, price, quantity, side in rows
                if (channel := get(instrument)) is not None]

    def _book_updates(self, folded: Folded) -> list[tuple]:
        """Book updates of the listened instruments: per command, its net change of each level
        it touched, by (side, price), with the level's quantity as of that command (the
        quantity now, less the changes of the commands after it): for many rows, by a
        compiled pass."""
        books = folded.books
        instruments = set(books["instrument"].tolist())
        listened = _listened(self._book_channels, "book:", instruments, self.machine.wants)
        if not listened:
            return []
        levels = folded.levels
        if len(listened) < len(instruments):
            levels = levels[np.isin(levels["instrument"], list(listened))]
        if len(levels) <= BOOK_ROWS_SMALL:
            return self._book_updates_small(books, levels, listened)
        out = np.empty((len(levels), 3), dtype=np.int64)
        bounds = np.empty((len(books), 2), dtype=np.int64)
        count = book_rows(levels, self.engine.instruments, self.engine.levels, books, out, bounds)
        if count < 0:  # a level off its ladder (see engine.kernels.bookrows)
            return self._book_updates_numpy(books, levels, listened)
        # Each published level a list of its own: the updates are handed on, not copied.
        rows = out[:count].tolist()
        for row in rows:  # side, price, quantity: the side named in place, no list a row
            row[0] = _SIDE_NAME[row[0]]
        lo, hi = bounds.T.tolist()
        return _book_items(books, lo, hi, rows, listened)

    def _book_updates_numpy(self, books: np.ndarray, levels: np.ndarray,
                            listened: dict[int, str]) -> list[tuple]:
        """``_book_updates`` in numpy: for a call with a level off its ladder, which the
        compiled pass (``engine.kernels.bookrows``) cannot name."""
        # Net change per (command, instrument, side, price), in that order.
        order = np.lexsort((levels["price"], levels["side"], levels["instrument"], levels["pos"]))
        pos, inst, side, price = (levels[name][order] for name in
                                  ("pos", "instrument", "side", "price"))
        first = np.ones(len(order), dtype=bool)
        first[1:] = ((pos[1:] != pos[:-1]) | (inst[1:] != inst[:-1]) | (side[1:] != side[:-1])
                     | (price[1:] != price[:-1]))
        starts = np.flatnonzero(first)
        change = np.add.reduceat(levels["change"][order], starts)
        pos, inst, side, price = pos[starts], inst[starts], side[starts], price[starts]
        # Each level's quantity as of each command: now - all the call's changes + those so far.
        by_level = np.lexsort((pos, price, side, inst))
        lv_inst, lv_side, lv_price = inst[by_level], side[by_level], price[by_level]
        lv_change = change[by_level]
        new_level = np.ones(len(by_level), dtype=bool)
        new_level[1:] = ((lv_inst[1:] != lv_inst[:-1]) | (lv_side[1:] != lv_side[:-1])
                         | (lv_price[1:] != lv_price[:-1]))
        group = np.cumsum(new_level) - 1
        level_starts = np.flatnonzero(new_level)
        so_far = np.cumsum(lv_change)
        before = (so_far - lv_change)[level_starts]
        total = np.add.reduceat(lv_change, level_starts)
        now = self._level_quantities(lv_inst[level_starts], lv_side[level_starts],
                                     lv_price[level_starts])
        as_of = np.empty(len(by_level), dtype=np.int64)
        as_of[by_level] = (now - total)[group] + so_far - before[group]
        # Each published level a list of its own: the updates are handed on, not copied.
        rows = [[_SIDE_NAME[x], p, q] for x, p, q in zip(
            side.tolist(), price.tolist(), as_of.tolist(), strict=True)]
        keys = pos * instruments_max + inst  # sorted: by command, then instrument
        book_keys = books["pos"] * instruments_max + books["instrument"]
        lo = np.searchsorted(keys, book_keys, side="left").tolist()
        hi = np.searchsorted(keys, book_keys, side="right").tolist()
        return _book_items(books, lo, hi, rows, listened)

    def _book_updates_small(self, books: np.ndarray, levels: np.ndarray,
                            listened: dict[int, str]) -> list[tuple]:
        """``_book_updates`` in plain Python: the compiled rows' reference in the property test
        (``BOOK_ROWS_SMALL``)."""
        by_command: dict[tuple[int, int], dict[tuple[int, int], int]] = {}
        for pos, inst, side, price, change in levels.tolist():
            changes = by_command.setdefault((pos, inst), {})
            changes[(side, price)] = changes.get((side, price), 0) + change
        running: dict[tuple[int, int, int], int] = {}
        for (_, inst), changes in by_command.items():
            for (side, price), change in changes.items():
                key = (inst, side, price)
                if key not in running:
                    running[key] = self.level_quantity(inst, side, price)
                running[key] -= change
        items = []
        for pos, inst, sequence in books.tolist():
            channel = listened.get(inst)
            if channel is None:
                continue
            changes = by_command[(pos, inst)]
            published = []
            for side, price in sorted(changes):
                key = (inst, side, price)
                running[key] += changes[(side, price)]
                published.append([_SIDE_NAME[side], price, running[key]])
            items.append((3 * pos + 2, (channel, {"changes": published}, sequence)))
        return items

    def _level_quantities(self, inst: np.ndarray, side: np.ndarray,
                          price: np.ndarray) -> np.ndarray:
        """``level_quantity`` of many levels."""
        rows = self.engine.instruments[inst]
        offset = price - rows["ladder_lo"]
        width = rows["ladder_width"]
        inside = (offset >= 0) & (offset < width)
        index = np.where(inside, rows["level_base"] + side * width + offset, 0)
        return np.where(inside, self.engine.levels["qty"][index], 0)

    def record_trade(self, instrument: int, trade_id: int, price: int, quantity: int,
                     taker_side: str, buy_order_id: int = 0, sell_order_id: int = 0) -> None:
        """Put a trade made outside the book (an accepted ``cn2015`` offer, with no order ids)
        on the instrument's tape and candles and publish it."""
        now_us = self.machine.now_us
        self.marketdata.record_one(instrument, trade_id, price, quantity, taker_side, now_us,
                                   buy_order_id, sell_order_id)
        channel = f"trades:{instrument}"
        if self.machine.wants(channel):
            self.machine.publish(channel, trade_view(trade_id, price, quantity, taker_side,
                                                     format_time_us(now_us)))

    def level_quantity(self, instrument: int, side: int, price: int) -> int:
        row = self.engine.instruments[instrument]
        offset = price - int(row["ladder_lo"])
        width = int(row["ladder_width"])
        if not 0 <= offset < width:
            return 0
        return int(self.engine.levels["qty"][int(row["level_base"]) + side * width + offset])

    # ---- reads ----------------------------------------------------------------------------------

    def book(self, instrument_id: int, depth: int) -> dict:
        if not self.has_book(instrument_id):
            return {"instrument_id": instrument_id, "sequence": 0, "bids": [], "asks": []}
        return {
            "instrument_id": instrument_id,
            "sequence": self.book_sequence(instrument_id),
            "bids": [list(level) for level in self.engine.depth(instrument_id, k.SIDE_BUY, depth)],
            "asks": [list(level) for level in
                     self.engine.depth(instrument_id, k.SIDE_SELL, depth)],
        }

    def trades(self, instrument_id: int, limit: int) -> list[dict]:
        """GET trades: the instrument's newest ``limit`` trades kept, newest first."""
        return self.marketdata.trade_views(instrument_id, limit)

    def candles(self, instrument_id: int, interval: str, limit: int) -> list[dict]:
        """GET candles: the newest ``limit`` candles kept of ``interval``, oldest first."""
        return self.marketdata.candle_views(instrument_id, interval, limit)

    @property
    def tapes(self) -> dict[int, TapeView]:
        """Every traded instrument's tape as objects, built when read (tests and tools)."""
        return self.marketdata.tapes()

    def book_sequence(self, instrument_id: int) -> int:
        sequences = self.lifecycle.book_seq
        return int(sequences[instrument_id]) if instrument_id < len(sequences) else 0

    def indicative(self, instrument_id: int) -> dict | None:
        """An auction instrument's indicative uncross while orders rest (no state change)."""
        if not self.has_book(instrument_id):
            return None
        from engine.kernels.auction import clearing_price

        price, volume = clearing_price(self.engine.levels, self.engine.instruments,
                                       instrument_id)
        return {"price": int(price), "quantity": int(volume)}

    def order(self, order_id: int, account_id: int) -> dict | None:
        """The view of one of the account's kept orders, or None."""
        lifecycle = self.lifecycle
        if not lifecycle.known(order_id) or lifecycle.records[order_id]["account"] != account_id:
            return None
        return lifecycle.views_now([order_id])[0]

    def account_orders(self, account_id: int, only_open: bool) -> list[dict]:
        """Views of the account's resting orders (``only_open``) or of all its kept ones."""
        ids = self.lifecycle.account_orders(account_id, only_open)
        return self.lifecycle.views_now(ids) if ids else []

    @property
    def finished(self) -> list[int]:
        """Ids of the finished orders kept for reads, oldest finish (first evicted) first."""
        return self.lifecycle.finished()

    # ---- the clock ------------------------------------------------------------------------------

    def _next_auction_after(self, time_us: int) -> int:
        """The IP board's next daily uncross: at the operator's hour (boards file), else
        BOARDS.md's 15:00 UTC. A new hour applies from the uncross after the one scheduled."""
        hour = self._offerings().auction_hour_utc
        day = time_us - time_us % US_PER_DAY
        at = day + hour * 3_600_000_000
        return at if at > time_us else at + US_PER_DAY

    def on_time(self) -> None:
        if not self.next_auction_us or self.machine.now_us < self.next_auction_us:
            return
        for instrument_id in sorted(self._books):
            info = self._offerings().instrument_info(instrument_id)
            if info is not None and info.board == "ip":
                self.uncross(instrument_id)
        self.next_auction_us = self._next_auction_after(self.machine.now_us)

    def next_deadline_us(self) -> int | None:
        return self.next_auction_us or None

    # ---- snapshots ------------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {f"markets_{name}": array for name, array in self.engine.arrays().items()}
        # The per-call scratch counters (events written, commands done) depend on how commands
        # were grouped into kernel calls, not on the state: leave them out.
        counters = arrays["markets_counters"].copy()
        counters[C_EVENTS] = counters[C_PROCESSED] = 0
        arrays["markets_counters"] = counters
        lifecycle = self.lifecycle.arrays(len(self.engine.instruments))
        arrays.update({f"markets_{name}": array for name, array in lifecycle.items()})
        arrays.update({f"markets_{name}": a for name, a in self.marketdata.arrays().items()})
        return arrays

    def meta(self) -> bytes:
        return self.meta_later()()

    def meta_later(self) -> Callable[[], bytes]:
        """Take the state now; return a function that encodes it, safe to call from another
        thread while the exchange goes on. The orders and the tapes are arrays (copied by the
        snapshot); what is left is the auction clock and the client_order_ids, a copy taken
        now and encoded by the function."""
        client_ids = sorted(self.lifecycle.client_ids.items())
        next_auction_us = self.next_auction_us

        def encode() -> bytes:
            return _encoder.encode(MarketsMeta(next_auction_us, client_ids))

        return encode

    def load(self, arrays: dict[str, np.ndarray], meta: bytes) -> None:
        prefix = "markets_"
        mine = {name[len(prefix):]: array for name, array in arrays.items()
                if name.startswith(prefix)}
        self.engine.load(mine)
        self._books = set(np.flatnonzero(self.engine.instruments["active"]).tolist())
        state = _decoder.decode(meta)
        self.lifecycle = Lifecycle()
        self.lifecycle.load({name: mine[name] for name in _LIFECYCLE_ARRAYS},
                            [(oid, cid) for oid, cid in state.client_ids])
        self.marketdata = MarketData()
        self.marketdata.load(mine)
        self.next_auction_us = state.next_auction_us
        self._investors = set()  # the machine's accounts were loaded too
        self._passed = {}


def warm_up() -> None:
    """Run each kernel of the markets path once on a throwaway book, so numba loads (or
    compiles) them at start-up rather than on a client's first order."""
    from engine.state import Balances

    balances = Balances()
    fee = balances.add_account(4, 3)
    buyer, seller = balances.add_account(1, 1), balances.add_account(1, 1)
    balances.accounts.rows[buyer]["cash_available"] = 10_000
    balances.positions.rows[balances.position_slot(seller, 1)]["units_available"] = 10
    engine = MatchingEngine(fee_account_id=fee)
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=100, fee_bps=SELLER_FEE_BPS)
    engine.add_instrument(2, band_lo_fen=1, band_hi_fen=100, mode="auction",
                          reference_price_fen=10)
    lifecycle = Lifecycle()
    for cmd in (command(k.OP_NEW, instrument=1, account=seller, side=k.SIDE_SELL, qty=2,
                        price=10),
                command(k.OP_NEW, instrument=1, account=buyer, side=k.SIDE_BUY, qty=1,
                        price=10)):
        result = engine.process(cmd, balances)
        folded = lifecycle.fold(result.events, cmd, np.zeros(1, dtype=np.int8), 0, 1,
                                engine.instruments, engine.next_order_id, balances.accounts.count)
        lifecycle.change_views(folded.changes, list(range(len(folded.changes))))
        lifecycle.views_now(folded.changes["oid"].tolist())
    events = result.events  # the movements and the tape (they skip rows that are not fills)
    fill_movements(events, np.zeros(1, dtype=np.int64), engine.instruments, fee,
                   np.zeros(3 * len(events), dtype=mv.MOVEMENT_DTYPE), 0, 1,
                   balances.accounts.rows, True)
    MarketData().record(events, 0)
    # A replay run's deposits and withdrawals (``engine.cash_batch``): the machine's kernel.
    one = np.full(1, buyer, dtype=np.int64)
    cash_movements(one, one, one, balances.accounts.rows["cash_available"],
                   np.zeros(1, dtype=mv.MOVEMENT_DTYPE), 0, 1, np.empty(1, dtype=np.int64))
    resting = engine.new_order(1, buyer, k.SIDE_BUY, 1, price=9, balances=balances)
    engine.cancel(int(resting.events[0]["oid"]), buyer, balances)
    engine.uncross(2, balances)
    from engine.kernels.auction import clearing_price

    clearing_price(engine.levels, engine.instruments, 2)
    _warm_up_live(engine, lifecycle, balances, folded, events)


def _warm_up_live(engine: MatchingEngine, lifecycle: Lifecycle, balances: Any,
                  folded: Folded, events: np.ndarray) -> None:
    """``warm_up``'s part for the kernels only a live batch runs: its trade, order and book
    updates, its refused cancels, and a batch read as columns (``engine.markets_live``).
    Each is loaded on first use otherwise, tens of milliseconds in the middle of the first
    live batches that need it; called with the argument types of the live calls (layouts
    too: a field of a structured array is a strided view, numba's 'A' layout)."""
    trade_rows(events, np.empty((len(events), TRADE_ROW_COLUMNS), dtype=np.int64))
    change_owners(folded.changes, lifecycle.records,
                  np.empty((2, len(folded.changes)), dtype=np.int64))
    book_rows(folded.levels, engine.instruments, engine.levels, folded.books,
              np.empty((len(folded.levels), 3), dtype=np.int64),
              np.empty((len(folded.books), 2), dtype=np.int64))
    from engine import commands as c
    from engine.journal import FRAME_COMPILED_MIN, frame_payloads
    from engine.kernels.checks import live_checks, table_slots
    from engine.kernels.entries import scan_entries
    from engine.kernels.sequence_sort import merge_by_key

    one = np.ones(1, dtype=np.int64)  # the reads' indexes by account take rows in by it
    merge_by_key(one, one, one, one, np.empty(2, dtype=np.int64), np.empty(2, dtype=np.int64))
    payload = c.encode_entry(c.Entry(0, 1, mc.CancelOrder(1)))
    frame_payloads(1, [payload] * FRAME_COMPILED_MIN)  # the sequencer frames each batch
    commands, _, _ = scan_entries(np.frombuffer(payload, dtype=np.uint8),
                                  np.zeros(1, dtype=np.int64),
                                  np.full(1, len(payload), dtype=np.int64))
    kf.cancels_refused(folded.changes, folded.marks, commands, np.zeros(0, dtype=np.int64),
                       np.empty((0, 4), dtype=np.int64))
    table_slots(commands, 1, np.full(4, -1, dtype=np.int32))
    amend_read(lifecycle.records, lifecycle.next_oid, 1, commands, len(commands),
               np.zeros(len(AMEND_FIELDS), dtype=np.int64))
    covered_ahead(lifecycle.records, engine.orders, engine.levels, engine.instruments,
                  engine.oid_index, 1, commands, 0)
    queued_pairs(commands, len(commands), 1, np.empty(len(commands), dtype=np.int64))
    count = balances.accounts.count
    live_checks(commands[:0], balances.accounts.rows["role"][:count], 1,
                engine.instruments["active"], np.zeros(2 * len(engine.instruments), np.int8),
                lifecycle.open_count, np.zeros(2 * count, dtype=np.int64), OPEN_ORDERS_MAX,
                lifecycle.records, lifecycle.next_oid, engine.next_order_id,
                np.empty(0, dtype=np.int8))


_REFUSALS = {
    "insufficient_funds": "not enough available cash for this order",
    "insufficient_holdings": "not enough available units for this order",
    "price_out_of_band": "the price is outside the instrument's price band",
    "post_only_would_cross": "a post-only order may not cross the book",
    "fok_not_fillable": "the fill-or-kill order cannot fill completely",
    "order_not_found": "no such open order",
    "not_permitted": "this instrument does not take that kind of order",
    "price_too_far": (f"the price is in the band but too far from this instrument's other prices: "
                      f"its book spans at most {ladder_width_max:,} fen"),
}


def _refusal_text(code: int) -> str:
    name = k.CODE_NAMES[code]
    return _REFUSALS.get(name, name.replace("_", " "))


def _error_reply(status: int, code: str, message: str) -> Reply:
    """``Reply(error.status, error.body())`` of ``CrowdexError(code, message)`` whose status
    is ``status``, without the exception: the refusals of a call's cancels, a few a batch."""
    return Reply(status, {"error": {"code": code, "message": message}})


def _refused(code: int) -> Reply:
    error = CrowdexError(k.CODE_NAMES[code], _refusal_text(code))
    return Reply(error.status, error.body())


_REFUSED_UNREAD: dict[int, Reply] = {}  # code -> a refusal's status, its body unbuilt


def _refused_unread(code: int) -> Reply:
    """``_refused(code)``'s status with no body (``_UNBUILT``'s, for a refusal)."""
    reply = _REFUSED_UNREAD.get(code)
    if reply is None:
        reply = _REFUSED_UNREAD[code] = Reply(_refused(code).status, None)
    return reply


_UNBUILT = {200: Reply(200, None), 201: Reply(201, None)}  # bodies nobody reads (see _replies)
_NEVER = (1 << 63, 0)  # no later time in a run (apply_run)
_SIDE_NAME = tuple(SIDE_NAMES[side] for side in range(len(SIDE_NAMES)))
_OTHER_SIDE = {"buy": "sell", "sell": "buy"}
_first, _second = operator.itemgetter(0), operator.itemgetter(1)


def _listened(names: dict[int, str], prefix: str, keys: set[int],
              wants: Callable[[str], bool]) -> dict[int, str]:
    """Of ``keys`` (accounts or instruments), those whose channel ``prefix + key`` someone
    listens to, with its name; ``names`` keeps each name once formatted. One ``wants`` a
    channel, called from C (``map``, ``compress``): most channels have no listener."""
    if len(keys) == 1:  # most live calls trade one instrument: no set, list nor map
        (key,) = keys
        name = names.get(key)
        if name is None:
            name = names[key] = f"{prefix}{key}"
        return {key: name} if wants(name) else {}
    for key in keys.difference(names):
        names[key] = f"{prefix}{key}"
    keys_list = list(keys)
    return {key: names[key] for key in compress(keys_list, map(wants, map(names.__getitem__,
                                                                          keys_list)))}


def _book_items(books: np.ndarray, lo: list[int], hi: list[int], rows: list[list],
                listened: dict[int, str]) -> list[tuple]:
    """The book updates of ``books`` rows (``BOOK_ROW_DTYPE``) of listened instruments: each
    publishes ``rows[lo:hi]`` of its own, keyed for ``Markets._publish``'s sort."""
    get = listened.get
    return [(3 * at + 2, (channel, {"changes": rows[start:end]}, sequence))
            for at, instrument, sequence, start, end in zip(
                *(books[name].tolist() for name in ("pos", "instrument", "sequence")), lo, hi,
                strict=True)
            if (channel := get(instrument)) is not None]


def _uncrossed(events: np.ndarray) -> dict | None:
    """An uncross's summary from its EV_UNCROSSED event (none if the kernel refused it)."""
    for row in events[events["kind"] == k.EV_UNCROSSED][-1:].tolist():
        return {"price": row[EVENT_DTYPE.names.index("price")],
                "quantity": row[EVENT_DTYPE.names.index("qty")],
                "trade_count": row[EVENT_DTYPE.names.index("maker_oid")]}
    return None


def _row_struct(dtype: np.dtype) -> struct.Struct:
    """A ``struct`` that packs one row of ``dtype`` (integer fields, padding included), so a
    command is packed once as it is queued and the kernel call's array is their bytes joined:
    a numpy array built from Python tuples costs ~0.3 us a row and ~1 us a call, this ~0.1."""
    codes = {1: "b", 2: "h", 4: "i", 8: "q"}
    layout, at = "=", 0
    for name in dtype.names:
        field, offset = dtype.fields[name][:2]
        if field.kind != "i" or offset < at:
            raise TypeError(f"{name}: only integer fields in order can be packed")
        layout += "x" * (offset - at) + codes[field.itemsize]
        at = offset + field.itemsize
    return struct.Struct(layout + "x" * (dtype.itemsize - at))


_COMMAND_ROW = _row_struct(COMMAND_DTYPE)
_NO_CIDS = np.zeros(1024, dtype=np.int8)  # cid flags of a call without client_order_ids
_pack_command = _COMMAND_ROW.pack
_CMD_ACCOUNT, _CMD_OID = (COMMAND_DTYPE.names.index(name) for name in ("account", "oid"))
# A cancel's row: give it account, price, qty, oid, pos_slot (op and the codes bound).
_pack_cancel = functools.partial(_pack_command, k_CANCEL, 0, 0, 0, 0, 0, 0)
_REC_ACCOUNT, _REC_STATUS, _REC_KEPT = (RECORD_DTYPE.names.index(name)
                                        for name in ("account", "status", "kept"))


def _order_codes(side: str, order_type: str, time_in_force: str, post_only: bool,
                 self_trade_prevention: str) -> tuple[int, int, int, int, int]:
    """A new order's ``COMMAND_DTYPE`` codes from side to stp, as its fields name them."""
    return (SIDES[side], k.TYPE_MARKET if order_type == "market" else k.TYPE_LIMIT,
            TIFS[time_in_force], int(post_only), k.STP_BY_NAME[self_trade_prevention])


# Packers of a new order's row by (side, order_type, time_in_force, post_only,
# self_trade_prevention), its op and codes bound (``_order_packer``): a few dozen combinations
# exist, and a bound packer costs less than building the codes and passing them each time.
_ORDER_PACKERS: dict[tuple, Callable[..., bytes]] = {}
_ORDER_PACKERS_MAX = 256


def _order_packer(cmd: mc.PlaceOrder) -> Callable[..., bytes]:
    """The packer of ``cmd``'s row: give it instrument, account, price, qty, oid, pos_slot."""
    spec = (cmd.side, cmd.order_type, cmd.time_in_force, cmd.post_only,
            cmd.self_trade_prevention)
    packer = _ORDER_PACKERS.get(spec)
    if packer is None:
        packer = functools.partial(_pack_command, k_NEW, *_order_codes(*spec))
        if len(_ORDER_PACKERS) < _ORDER_PACKERS_MAX:  # bounded, whatever a journal holds
            _ORDER_PACKERS[spec] = packer
    return packer


class _Queue:
    """Commands waiting for one kernel call, packed as ``COMMAND_DTYPE`` rows, with what
    exact checks need."""

    def __init__(self) -> None:
        self.cids: dict[int, str] = {}  # position -> client_order_id of a new order
        self.client_ids: set[tuple[int, str]] = set()
        # Per actor: how many more new orders the open-order limit lets this queue take,
        # whatever the queued commands do (Markets._queue_place).
        self.room: dict[int, int] = {}
        self.by_id: set[int] = set()  # positions of cancels of an order that has no id yet
        # when queued (Markets._queue_cancel), and of amends of one (Markets._amend_later)
        self.later: set[int] = set()  # positions of amends the kernel decides (_amend_later)
        # Of those by their quantity in all: what of the order was filled or cancelled when
        # it was read (-1: not read, one the queue places).
        self.later_done: dict[int, int] = {}
        self.amended: set[int] = set()  # the ids of the orders the queued amends name
        self.indexes: list[int] = []  # the reply each command answers
        self.sequences: list[int] = []
        self.ops: list[int] = []
        self.rows: list[bytes] = []  # each command's row, packed (_COMMAND_ROW)
        self.clear()

    def clear(self) -> None:
        # The lists are emptied in place: Markets.apply_run holds their appends for a run.
        self.indexes.clear()
        self.sequences.clear()
        self.ops.clear()
        self.rows.clear()
        self.new_count = 0
        self.copied = 0  # rows in Markets' scratch array already, if it holds this queue's
        # The id the engine gives the call's first new order (Markets._queue_cancel): it
        # changes only when the queue is matched, which clears the queue.
        self.first_oid: int | None = None
        # Most queues leave these empty: replaced only if used (once a kernel call).
        if self.cids:
            self.cids, self.client_ids = {}, set()
        if self.room:
            self.room = {}
        if self.by_id:
            self.by_id = set()
        if self.later:
            self.later, self.later_done = set(), {}
        if self.amended:
            self.amended = set()

    def _add(self, index: int, sequence: int, op: int, row: tuple[int, ...],
             pos_slot: int = -1) -> None:
        """``row``: the fields after ``op`` up to ``oid``; ``pos_slot`` -1 (the engine's), or
        an amend's ``AMEND_BY_TOTAL`` figure."""
        self.indexes.append(index)
        self.sequences.append(sequence)
        self.ops.append(op)
        self.rows.append(_pack_command(op, *row, pos_slot))

    def may_give(self, order_id: int, engine: MatchingEngine) -> bool:
        """Whether ``order_id`` may be the id of one of the queued new orders: the kernel
        gives ids in command order from ``engine``'s next one (read once a queue:
        ``first_oid``), to the orders it does not refuse."""
        first = self.first_oid
        if first is None:
            first = self.first_oid = engine.next_order_id
        return first <= order_id < first + self.new_count

    def place(self, index: int, sequence: int, actor: int, cmd: mc.PlaceOrder,
              pos_slot: int) -> None:
        """A new order; ``pos_slot`` is its account's position row of the instrument (a new
        order's instrument has a book and its account exists: the engine need not look)."""
        # The commonest command: _add inlined, the order's packer looked up at once.
        cid = cmd.client_order_id
        if cid is not None:
            self.cids[len(self.ops)] = cid
            self.client_ids.add((actor, cid))
        self.indexes.append(index)
        self.sequences.append(sequence)
        self.ops.append(k_NEW)
        self.rows.append(_order_packer(cmd)(cmd.instrument_id, actor, cmd.price, cmd.quantity,
                                            0, pos_slot))
        self.new_count += 1

    def cancel(self, index: int, sequence: int, actor: int, order_id: int,
               by_id: bool = False) -> None:
        if by_id:
            self.by_id.add(len(self.ops))
        self.indexes.append(index)
        self.sequences.append(sequence)
        self.ops.append(k_CANCEL)
        self.rows.append(_pack_cancel(actor, 0, 0, order_id, -1))

    def amend(self, index: int, sequence: int, actor: int, order_id: int, instrument: int,
              post_only: int, price: int, remaining: int, mode: int = 0,
              total: int = -1) -> None:
        """An amend's row: ``remaining`` the order's remaining quantity after it, or with
        ``mode`` ``AMEND_BY_TOTAL`` its quantity in all (``total``: the order's before the
        call, in the row's ``pos_slot``; see ``codes.AMEND_BY_TOTAL``)."""
        self.amended.add(order_id)
        self._add(index, sequence, k_AMEND, (0, k.TYPE_LIMIT, k.TIF_GTC, post_only, mode,
                                             instrument, actor, price, remaining, order_id),
                  total)

    def uncross(self, sequence: int, instrument_id: int) -> None:
        self._add(0, sequence, k_UNCROSS, (0, 0, 0, 0, 0, instrument_id, 0, 0, 0, 0))

    def actor_and_order(self, position: int) -> tuple[int, int]:
        """The account and the order id of the command at ``position``."""
        row = _COMMAND_ROW.unpack(self.rows[position])
        return row[_CMD_ACCOUNT], row[_CMD_OID]

    def array(self) -> np.ndarray:
        """The commands as a writable ``COMMAND_DTYPE`` array (the engine fills ``pos_slot``)."""
        rows = np.frombuffer(bytearray(b"".join(self.rows)), dtype=COMMAND_DTYPE)
        # A bytearray's buffer is aligned for int64 wherever CPython runs; numba compiles
        # another kernel for an unaligned array, so never hand it one.
        return rows if rows.flags.aligned else rows.copy()

    def cid_flags(self) -> np.ndarray:
        """1 for each new order with a client_order_id (shared zeros when none: the fold only
        reads it, and most calls have none)."""
        n = len(self.ops)
        if not self.cids and n <= len(_NO_CIDS):
            return _NO_CIDS[:n]
        # Set in a bytearray, then seen as an array: half of a fancy assignment's cost for
        # the few orders of a live call.
        flags = bytearray(n)
        for position in self.cids:
            flags[position] = 1
        return np.frombuffer(flags, dtype=np.int8)
