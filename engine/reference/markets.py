"""The reference model of the markets component: the per-order Python fold, obviously right.

This is ``engine/markets.py`` as it was before the order lifecycle moved to arrays and a
compiled fold (``engine.lifecycle``, ``engine.kernels.fold``): each order a Python record in
dicts, the kernel's events walked one command at a time. The property tests
(``tests/engine/test_lifecycle_property.py``) run the same commands through a state machine
built with this component and one built with today's, and compare replies, published updates,
movements, balances, books and order views. Speed does not matter here.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from boards.rules import fee_half_up
from engine import markets_commands as mc
from engine import movements as mv
from engine.clock import format_time_us
from engine.errors import CrowdexError
from engine.kernels import amends
from engine.kernels import codes as k
from engine.kernels.fold import PARTIALLY_FILLED
from engine.kernels.layout import C_EVENTS, C_PROCESSED, COMMAND_DTYPE
from engine.machine import Reply
from engine.marketdata import TapeState, TradeRecord, trade_view
from engine.markets import (  # what the model shares with the component: rules, not the fold
    BAND_MULTIPLE,
    BATCHED_RUNS,
    FINISHED_ORDERS_KEPT,
    OPEN_ORDERS_MAX,
    RULES_1_BAND_CEILING_FEN,
    SIDES,
    TIFS,
    US_PER_DAY,
    _refused,
    k_AMEND,
    k_CANCEL,
    k_NEW,
    k_UNCROSS,
)
from engine.matching import MatchingEngine, price_max_fen
from engine.reference.marketdata import Tape

# The fold's shortcut for a new order that only rests (_Fold.command); off, every command takes
# the general path, which the tests compare it with.
FOLD_FAST_PATH = True
SIDE_NAMES = {k.SIDE_BUY: "buy", k.SIDE_SELL: "sell"}
OPEN_STATUSES = ("open", "partially_filled")



class OrderRecord(msgspec.Struct, array_like=True, gc=False):  # no cycles: skip GC scans
    order_id: int
    account_id: int
    client_order_id: str | None
    instrument_id: int
    side: str
    type: str
    price: int | None
    quantity: int
    time_in_force: str
    post_only: bool
    created_us: int
    status: str = "open"
    filled_quantity: int = 0
    # A tuple, not a list: tuples of ints leave the garbage collector's books.
    fills: tuple[tuple[int, int, int], ...] = ()
    cancelled_quantity: int = 0  # left the book unfilled (cancel, self-trade prevention)


class AuctionState(msgspec.Struct, array_like=True):
    instrument_id: int
    reference_price: int
    last_price: int = 0
    last_quantity: int = 0


class MarketsMeta(msgspec.Struct, array_like=True):
    order_chunks: list[list[OrderRecord]]  # every kept order by id, ORDERS_CHUNK to a chunk
    tapes: list[TapeState]
    book_sequences: list[tuple[int, int]]
    next_auction_us: int
    finished: list[int]  # ids of finished orders kept, oldest finish first (evicted first)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MarketsMeta)
# Orders are encoded a chunk at a time, so a snapshot written by a thread hands the interpreter
# back to the exchange between chunks (msgspec holds it through one encode call).
ORDERS_CHUNK = 8192


def order_view(order: OrderRecord) -> dict:
    live = order.status in OPEN_STATUSES
    return {
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "instrument_id": order.instrument_id,
        "side": order.side,
        "type": order.type,
        "price": order.price,
        "quantity": order.quantity,
        "time_in_force": order.time_in_force,
        "post_only": order.post_only,
        "status": order.status,
        "filled_quantity": order.filled_quantity,
        "remaining_quantity": (order.quantity - order.filled_quantity - order.cancelled_quantity
                               if live else 0),
        "fills": [{"trade_id": t, "price": p, "quantity": q} for t, p, q in order.fills],
        "created": format_time_us(order.created_us),
    }


class Markets:
    """The secondary-market component of the state machine."""

    name = "markets"

    def __init__(self, machine: Any) -> None:
        self.machine = machine
        self.engine = MatchingEngine(fee_account_id=machine.fee_account_id)
        self.orders: dict[int, OrderRecord] = {}
        self.finished: OrderedDict[int, None] = OrderedDict()  # finished order ids, oldest first
        self.open_by_account: dict[int, dict[int, OrderRecord]] = {}
        self.open_client_ids: dict[tuple[int, str], int] = {}  # (account, cid) -> open order
        self.auction_instruments: set[int] = set()  # derived from the engine's modes
        self.tapes: dict[int, Tape] = {}
        self.book_sequences: dict[int, int] = {}
        self.next_auction_us = 0

    def handlers(self) -> dict:
        return {mc.PlaceOrder: self._place, mc.CancelOrder: self._cancel,
                mc.RunAuction: self._auction, mc.AmendOrder: self._amend}

    # ---- rules checks ---------------------------------------------------------------------------

    def _offerings(self):
        return self.machine.component("offerings")

    def _check_tradable(self, instrument_id: int, side: str) -> Any:
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

    def _ensure_instrument(self, info: Any) -> None:
        instrument_id = info.instrument_id
        if instrument_id in self.book_sequences:
            return
        reference = info.reference_price_fen
        # Rules 1 capped the band so that any price in it fitted one ladder (commands.py).
        band_hi = price_max_fen if self.machine.rules >= 2 else RULES_1_BAND_CEILING_FEN
        self.engine.add_instrument(
            instrument_id, band_lo_fen=1, band_hi_fen=band_hi,
            band_multiple=BAND_MULTIPLE,
            fee_bps=info.seller_fee_bps, mode="auction" if info.board == "ip" else "book",
            reference_price_fen=reference)
        self.book_sequences[instrument_id] = 0
        self.tapes[instrument_id] = Tape(instrument_id)
        if info.board == "ip":
            self.auction_instruments.add(instrument_id)
        if info.board == "ip" and self.next_auction_us == 0:
            self.next_auction_us = self._next_auction_after(self.machine.now_us)

    # ---- commands -------------------------------------------------------------------------------
    #
    # Orders and cancels go through ``apply_run``: a run of consecutive PlaceOrder/CancelOrder
    # entries is checked in Python, then matched by as few kernel calls as exactness allows.
    # A run gives exactly the replies and state that applying its entries one at a time would
    # (a single entry is a run of one, so there is one code path). Where a Python check depends
    # on what a queued command may still change (a client_order_id that may free up, the open
    # order limit, a cancel of an order the run may create), the queue is matched first.

    def _place(self, cmd: mc.PlaceOrder, actor: int) -> Reply:
        return self.apply_run([(self.machine.last_sequence, actor, cmd)])[0]

    def _cancel(self, cmd: mc.CancelOrder, actor: int) -> Reply:
        return self.apply_run([(self.machine.last_sequence, actor, cmd)])[0]

    def run_types(self) -> tuple[type, ...]:
        """The command types ``apply_run`` takes (the machine groups consecutive ones)."""
        if not BATCHED_RUNS:
            return ()
        return (mc.PlaceOrder, mc.CancelOrder)

    def apply_run(self, items: list[tuple[int, int, Any]]) -> list[Reply]:
        """Apply ``(sequence, actor, command)`` items in order; one reply each."""
        replies: list[Reply | None] = [None] * len(items)
        queue = _Queue()
        tradable: dict[tuple[int, str], Any] = {}
        for index, (sequence, actor, cmd) in enumerate(items):
            try:
                if type(cmd) is mc.PlaceOrder:
                    self._queue_place(queue, replies, index, sequence, actor, cmd, tradable)
                else:
                    self._queue_cancel(queue, replies, index, sequence, actor, cmd)
            except CrowdexError as error:
                replies[index] = Reply(error.status, error.body())
        self._match(queue, replies)
        return replies

    def _queue_place(self, queue: _Queue, replies: list, index: int, sequence: int, actor: int,
                     cmd: mc.PlaceOrder, tradable: dict) -> None:
        account = self.machine.accounts.get(actor)
        if account is None or account.role != "investor":
            raise CrowdexError("forbidden", "only investors trade")
        key = (cmd.instrument_id, cmd.side)
        info = tradable.get(key)
        if info is None:
            try:
                info = self._check_tradable(cmd.instrument_id, cmd.side)
            except CrowdexError as error:
                info = error
            tradable[key] = info
        if isinstance(info, CrowdexError):
            raise info
        cid = cmd.client_order_id
        mine = self.open_by_account.get(actor, {})
        if ((cid is not None and ((actor, cid) in self.open_client_ids
                                  or (actor, cid) in queue.client_ids))
                or len(mine) + queue.new_orders.get(actor, 0) >= OPEN_ORDERS_MAX
                or cmd.instrument_id not in self.book_sequences):
            self._match(queue, replies)  # the exact state first
            if cid is not None and (actor, cid) in self.open_client_ids:
                raise CrowdexError("duplicate_client_order_id",
                                   "an open order already has this client_order_id")
            if len(mine) >= OPEN_ORDERS_MAX:
                raise CrowdexError("limit_exceeded", f"at most {OPEN_ORDERS_MAX} open orders")
            self._ensure_instrument(info)
        order = OrderRecord(0, actor, cid, cmd.instrument_id, cmd.side, cmd.order_type,
                            cmd.price or None, cmd.quantity, cmd.time_in_force, cmd.post_only,
                            self.machine.now_us)
        queue.place(index, sequence, actor, cmd, order)

    def _queue_cancel(self, queue: _Queue, replies: list, index: int, sequence: int,
                      actor: int, cmd: mc.CancelOrder) -> None:
        order = self.orders.get(cmd.order_id)
        if order is not None:  # its owner and a finished status never change: answer now
            if order.account_id != actor:
                raise CrowdexError("order_not_found", f"no order {cmd.order_id}")
            if order.status not in OPEN_STATUSES:
                raise CrowdexError("order_not_open", f"order {cmd.order_id} is {order.status}")
            queue.cancel(index, sequence, actor, order)  # a queued order may fill it first
            return
        # An id not given yet may be given to one of the queued new orders (the kernel gives
        # ids in command order, to orders it does not refuse): the kernel cancels by id in the
        # same call, exactly as one command at a time would, and the reply is read after the
        # fold (see _match). Matching the queue here instead made each such cancel cut the
        # run short: most cancels name recent orders.
        next_id = self.engine.next_order_id
        if next_id <= cmd.order_id < next_id + queue.new_count:
            queue.cancel_by_id(index, sequence, actor, cmd.order_id)
            return
        raise CrowdexError("order_not_found", f"no order {cmd.order_id}")

    def _amend(self, cmd: mc.AmendOrder, actor: int) -> Reply:
        """API.md's PATCH /v1/orders/{id}: a lower quantity keeps the order's place; a new
        price or a larger quantity re-enters it (``OP_AMEND``, checked like a new order)."""
        account = self.machine.accounts.get(actor)
        if account is None or account.role != "investor":
            raise CrowdexError("forbidden", "only investors trade")
        order = self.orders.get(cmd.order_id)
        if order is None or order.account_id != actor:
            raise CrowdexError("order_not_found", f"no order {cmd.order_id}")
        if order.status not in OPEN_STATUSES:
            raise CrowdexError("order_not_open", f"order {cmd.order_id} is {order.status}")
        if cmd.price is None and cmd.quantity is None:
            raise CrowdexError("invalid_field", "send a new price, a new quantity or both")
        quantity = order.quantity if cmd.quantity is None else cmd.quantity
        remaining = quantity - order.filled_quantity - order.cancelled_quantity
        if quantity <= order.filled_quantity or remaining <= 0:
            raise CrowdexError("invalid_amend", f"the new quantity must exceed the "
                               f"{order.filled_quantity + order.cancelled_quantity} units "
                               "already filled (or cancelled by self-trade prevention)")
        price = order.price if cmd.price is None else cmd.price
        rest = order.quantity - order.filled_quantity - order.cancelled_quantity
        if price != order.price or remaining > rest:  # re-enters: the rules of a new order
            self._check_tradable(order.instrument_id, order.side)
        queue = _Queue()
        queue.amend(0, self.machine.last_sequence, actor, order, price, remaining)
        replies: list[Reply | None] = [None]
        self._match(queue, replies)
        return replies[0]

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
        orders = sorted((order for mine in self.open_by_account.values()
                         for order in mine.values()
                         if order.instrument_id == instrument_id and order.side in sides),
                        key=lambda order: order.order_id)
        if not orders:
            return 0
        queue = _Queue()
        for index, order in enumerate(orders):
            queue.cancel(index, self.machine.last_sequence, order.account_id, order)
        self._match(queue, [None] * len(orders))
        return len(orders)

    def uncross(self, instrument_id: int) -> dict:
        """Run one instrument's call auction; the response body of an uncross."""
        summary = {"instrument_id": instrument_id, "price": 0, "quantity": 0, "trade_count": 0}
        if instrument_id not in self.book_sequences:
            return summary
        queue = _Queue()
        queue.uncross(self.machine.last_sequence, instrument_id)
        replies: list = [None]
        self._match(queue, replies)
        summary.update(replies[0] or {})
        return summary

    # ---- matching and events ------------------------------------------------------------------

    def _match(self, queue: _Queue, replies: list) -> None:
        """Match every queued command in one kernel call and fold the events, command by command:
        order records, movements, the tape, replies, and published updates."""
        if not queue.commands:
            return
        result = self.engine.process(queue.array(), self.machine.balances)
        codes = result.results.tolist()
        fold = _Fold(self, result.events)
        # Each command's events are a run of rows in command order: where each run starts.
        bounds = np.searchsorted(result.events["cmd"], np.arange(len(queue.commands) + 1),
                                 side="left").tolist()
        # A replay builds no reply nobody reads (see StateMachine.replies_needed).
        view = order_view if self.machine.replies_needed else _unbuilt_view
        for position, (index, sequence, order) in enumerate(queue.commands):
            self.machine.last_sequence = sequence
            if bounds[position] != bounds[position + 1]:
                fold.command(sequence, order, bounds[position], bounds[position + 1])
            code = codes[position]
            op = queue.ops[position]
            if op == k_NEW:
                replies[index] = (Reply(201, view(order)) if code == k.OK
                                  else _refused(code))
            elif op == k_CANCEL:
                if order is None:  # by id (see _queue_cancel): the order as folded so far
                    replies[index] = self._cancel_by_id_reply(queue.by_id[position], code, view)
                elif code == k.OK:
                    replies[index] = Reply(200, view(order))
                elif code == k.ORDER_NOT_FOUND:  # filled or cancelled earlier in this run
                    replies[index] = Reply(409, CrowdexError(
                        "order_not_open", f"order {order.order_id} is {order.status}").body())
                else:
                    replies[index] = _refused(code)
            elif op == k_AMEND:
                replies[index] = Reply(200, view(order)) if code == k.OK else _refused(code)
            else:
                replies[index] = fold.uncrossed
        fold.publish_books()
        queue.clear()

    def _cancel_by_id_reply(self, target: tuple[int, int], code: int, view: Any) -> Reply:
        actor, order_id = target
        order = self.orders.get(order_id)
        if code == k.OK:
            return Reply(200, view(order))
        if order is None or order.account_id != actor:
            return Reply(404, CrowdexError("order_not_found", f"no order {order_id}").body())
        return Reply(409, CrowdexError("order_not_open",
                                       f"order {order_id} is {order.status}").body())

    def _trade_movements(self, out: list[tuple], sequence: int, instrument: int, buyer: int,
                         seller: int, price: int, qty: int) -> None:
        """The kernel already moved the balances; note who paid whom for settlement."""
        notional = price * qty
        out.append((sequence, 0, mv.TRADE_CASH, buyer, seller, mv.CASH, notional))
        out.append((sequence, 0, mv.TRADE_UNITS, seller, buyer, instrument, qty))
        # The same rule and rate the kernel charged (the instrument's, from its board's rules).
        fee = fee_half_up(notional, int(self.engine.instruments[instrument]["fee_bps"]))
        if fee:
            out.append((sequence, 0, mv.TRADE_FEE, seller, self.machine.fee_account_id, mv.CASH,
                        fee))

    def _open(self, order: OrderRecord) -> None:
        self.open_by_account.setdefault(order.account_id, {})[order.order_id] = order
        if order.client_order_id is not None:
            self.open_client_ids[(order.account_id, order.client_order_id)] = order.order_id

    def _unopen(self, order: OrderRecord) -> None:
        """Out of the open orders while an amend re-enters it (EV_RESTED puts it back)."""
        if self.open_by_account.get(order.account_id, {}).pop(order.order_id, None) is not None:
            if order.client_order_id is not None:
                self.open_client_ids.pop((order.account_id, order.client_order_id), None)

    def _finish(self, order: OrderRecord) -> None:
        if self.open_by_account.get(order.account_id, {}).pop(order.order_id, None) is not None:
            if order.client_order_id is not None:
                self.open_client_ids.pop((order.account_id, order.client_order_id), None)
        self.finished[order.order_id] = None
        while len(self.finished) > FINISHED_ORDERS_KEPT:
            oldest, _ = self.finished.popitem(last=False)
            self.orders.pop(oldest, None)

    def record_trade(self, instrument: int, trade_id: int, price: int, quantity: int,
                     taker_side: str, buy_order_id: int = 0, sell_order_id: int = 0) -> None:
        """Put a trade on the instrument's tape and candles and publish it: each fill of the
        book, and trades made outside it (an accepted ``cn2015`` offer, with no order ids)."""
        tape = self.tapes.get(instrument)
        if tape is None:
            tape = self.tapes[instrument] = Tape(instrument)
        trade = TradeRecord(trade_id, price, quantity, taker_side, self.machine.now_us,
                            buy_order_id, sell_order_id)
        tape.record(trade)
        channel = f"trades:{instrument}"
        if self.machine.wants(channel):
            self.machine.publish(channel, trade_view(
                trade_id, price, quantity, taker_side, format_time_us(trade.time_us)))

    def level_quantity(self, instrument: int, side: int, price: int) -> int:
        row = self.engine.instruments[instrument]
        offset = price - int(row["ladder_lo"])
        width = int(row["ladder_width"])
        if not 0 <= offset < width:
            return 0
        return int(self.engine.levels["qty"][int(row["level_base"]) + side * width + offset])

    # ---- reads ----------------------------------------------------------------------------------

    def book(self, instrument_id: int, depth: int) -> dict:
        if instrument_id not in self.book_sequences:
            return {"instrument_id": instrument_id, "sequence": 0, "bids": [], "asks": []}
        return {
            "instrument_id": instrument_id,
            "sequence": self.book_sequences[instrument_id],
            "bids": [list(level) for level in self.engine.depth(instrument_id, k.SIDE_BUY, depth)],
            "asks": [list(level) for level in
                     self.engine.depth(instrument_id, k.SIDE_SELL, depth)],
        }

    def indicative(self, instrument_id: int) -> dict | None:
        """An auction instrument's indicative uncross while orders rest (no state change)."""
        if instrument_id not in self.book_sequences:
            return None
        from engine.kernels.auction import clearing_price

        price, volume = clearing_price(self.engine.levels, self.engine.instruments,
                                       instrument_id)
        return {"price": int(price), "quantity": int(volume)}

    def account_orders(self, account_id: int, only_open: bool) -> list[OrderRecord]:
        if only_open:
            return sorted(self.open_by_account.get(account_id, {}).values(),
                          key=lambda o: o.order_id)
        return [o for o in self.orders.values() if o.account_id == account_id]

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
        for instrument_id in sorted(self.book_sequences):
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
        return arrays

    def meta(self) -> bytes:
        return self.meta_later()()

    def meta_later(self) -> Callable[[], bytes]:
        """Take the state now; return a function that encodes it, safe to call from another
        thread while the exchange goes on.

        The costly part, encoding up to FINISHED_ORDERS_KEPT finished orders, is left to that
        function: a finished order's record never changes again. Open orders (which do change)
        are copied now, and everything else is small and encoded now. ``self.orders`` holds
        orders in id order (inserted as ids are given; loaded in id order).
        """
        records = [order if order.status not in OPEN_STATUSES else copy.copy(order)
                   for order in self.orders.values()]
        rest = _encoder.encode(MarketsMeta(
            order_chunks=[],
            tapes=[self.tapes[i].state() for i in sorted(self.tapes)],
            book_sequences=sorted(self.book_sequences.items()),
            next_auction_us=self.next_auction_us,
            finished=list(self.finished),
        ))

        def encode() -> bytes:
            chunks = [msgspec.Raw(_encoder.encode(records[i:i + ORDERS_CHUNK]))
                      for i in range(0, len(records), ORDERS_CHUNK)]
            whole = _decoder.decode(rest)  # small: every field but the orders
            whole.order_chunks = chunks  # type: ignore[assignment]  # encoded as they are
            return _encoder.encode(whole)

        return encode

    def load(self, arrays: dict[str, np.ndarray], meta: bytes) -> None:
        prefix = "markets_"
        self.engine.load({name[len(prefix):]: array for name, array in arrays.items()
                          if name.startswith(prefix)})
        state = _decoder.decode(meta)
        self.orders = {o.order_id: o for chunk in state.order_chunks for o in chunk}
        self.finished = OrderedDict.fromkeys(state.finished)
        self.open_by_account = {}
        self.open_client_ids = {}
        for order in self.orders.values():
            if order.status in OPEN_STATUSES:
                self._open(order)
        self.tapes = {t.instrument_id: Tape.from_state(t) for t in state.tapes}
        self.book_sequences = dict(state.book_sequences)
        self.auction_instruments = {
            i for i in self.book_sequences
            if int(self.engine.instruments[i]["mode"]) == k.MODE_AUCTION}
        self.next_auction_us = state.next_auction_us


def _unbuilt_view(order: OrderRecord) -> None:
    """The body of a reply that is never sent nor remembered (a replayed command without an
    idempotency key)."""
    return None


class _Queue:
    """Commands waiting for one kernel call, as columns, with what exact checks need."""

    FIELDS = ("op", "side", "type", "tif", "post_only", "stp", "instrument", "account", "price",
              "qty", "oid")

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.commands: list[tuple[int, int, OrderRecord | None]] = []  # (reply, sequence, order)
        self.ops: list[int] = []
        self.rows: list[tuple[int, ...]] = []  # FIELDS[1:] of each command
        self.client_ids: set[tuple[int, str]] = set()
        self.new_orders: dict[int, int] = {}
        self.new_count = 0
        self.has_new = False
        self.by_id: dict[int, tuple[int, int]] = {}  # position -> (actor, order id) of a
        # cancel of an order that has no id yet when queued (Markets._queue_cancel)

    def place(self, index: int, sequence: int, actor: int, cmd: mc.PlaceOrder,
              order: OrderRecord) -> None:
        self.commands.append((index, sequence, order))
        self.ops.append(k_NEW)
        self.rows.append((SIDES[cmd.side],
                          k.TYPE_MARKET if cmd.order_type == "market" else k.TYPE_LIMIT,
                          TIFS[cmd.time_in_force], int(cmd.post_only),
                          k.STP_BY_NAME[cmd.self_trade_prevention], cmd.instrument_id, actor,
                          cmd.price, cmd.quantity, 0))
        if cmd.client_order_id is not None:
            self.client_ids.add((actor, cmd.client_order_id))
        self.new_orders[actor] = self.new_orders.get(actor, 0) + 1
        self.new_count += 1
        self.has_new = True

    def cancel(self, index: int, sequence: int, actor: int, order: OrderRecord) -> None:
        self.commands.append((index, sequence, order))
        self.ops.append(k_CANCEL)
        self.rows.append((0, 0, 0, 0, 0, 0, actor, 0, 0, order.order_id))

    def cancel_by_id(self, index: int, sequence: int, actor: int, order_id: int) -> None:
        self.by_id[len(self.commands)] = (actor, order_id)
        self.commands.append((index, sequence, None))
        self.ops.append(k_CANCEL)
        self.rows.append((0, 0, 0, 0, 0, 0, actor, 0, 0, order_id))

    def amend(self, index: int, sequence: int, actor: int, order: OrderRecord, price: int,
              remaining: int) -> None:
        self.commands.append((index, sequence, order))
        self.ops.append(k_AMEND)
        self.rows.append((0, k.TYPE_LIMIT, k.TIF_GTC, int(order.post_only), 0,
                          order.instrument_id, actor, price, remaining, order.order_id))

    def uncross(self, sequence: int, instrument_id: int) -> None:
        self.commands.append((0, sequence, None))
        self.ops.append(k_UNCROSS)
        self.rows.append((0, 0, 0, 0, 0, instrument_id, 0, 0, 0, 0))

    def array(self) -> np.ndarray:
        rows = np.zeros(len(self.ops), dtype=COMMAND_DTYPE)
        rows["op"] = self.ops
        columns = np.array(self.rows, dtype=np.int64)
        for i, name in enumerate(self.FIELDS[1:]):
            rows[name] = columns[:, i]
        return rows


class _Fold:
    """Folds one kernel call's events into the markets state, one command at a time.

    The events are read as columns (one list per field used): far cheaper than a tuple per row.
    """

    def __init__(self, markets: Markets, events: np.ndarray) -> None:
        self.markets = markets
        self.uncrossed: Reply | dict | None = None
        self.book_updates: list[tuple[int, dict, dict[tuple[int, int], int]]] = []
        self.movements: list[tuple] = []  # MOVEMENT_DTYPE rows, recorded once per call
        self.kind = events["kind"].tolist()
        self.side = events["side"].tolist()
        self.instrument = events["instrument"].tolist()
        self.oid = events["oid"].tolist()
        self.price_limit = events["price_limit"].tolist()
        self.maker_oid = events["maker_oid"].tolist()
        self.maker_price = events["maker_price"].tolist()
        self.price = events["price"].tolist()
        self.qty = events["qty"].tolist()
        self.trade_id = events["trade_id"].tolist()
        self.code = events["code"].tolist()

    def command(self, sequence: int, taker: OrderRecord | None, start: int, end: int) -> None:
        """Fold the events ``start:end`` (all of one command's)."""
        m = self.markets
        orders = m.orders
        kinds, sides, prices, qtys, oids = self.kind, self.side, self.price, self.qty, self.oid
        if (FOLD_FAST_PATH and end - start == 2 and kinds[start] == k.EV_ACCEPTED
                and kinds[start + 1] == k.EV_RESTED):
            # The commonest command: a new order that rests untouched. The general fold below
            # gives the same; this skips its dictionaries.
            taker.order_id = oids[start]
            orders[taker.order_id] = taker
            m._open(taker)
            self._rested(taker, sides[start + 1], prices[start + 1], qtys[start + 1])
            return
        changed: dict[int, OrderRecord] = {}
        levels: dict[tuple[int, int, int], int] = {}  # (instrument, side, price) -> change
        for i in range(start, end):
            kind = kinds[i]
            if kind == k.EV_FILL:
                self._fill(sequence, i, levels, changed)
            elif kind == k.EV_ACCEPTED:
                taker.order_id = oids[i]
                orders[taker.order_id] = taker
                changed[taker.order_id] = taker
            elif kind == k.EV_RESTED:
                order = orders[oids[i]]
                m._open(order)
                key = (order.instrument_id, sides[i], prices[i])
                levels[key] = levels.get(key, 0) + qtys[i]
            elif kind == k.EV_CANCELLED:
                order = orders[oids[i]]
                qty = qtys[i]
                if order.order_id in m.open_by_account.get(order.account_id, {}):
                    key = (order.instrument_id, sides[i], prices[i])
                    levels[key] = levels.get(key, 0) - qty
                order.cancelled_quantity += qty
                if order.filled_quantity + order.cancelled_quantity >= order.quantity:
                    order.status = ("cancelled" if order.filled_quantity < order.quantity
                                    else "filled")
                changed[order.order_id] = order
            elif kind == k.EV_AMENDED:
                self._amended(i, levels, changed)
            elif kind == k.EV_UNCROSSED:
                self.uncrossed = {"price": prices[i], "quantity": qtys[i],
                                  "trade_count": self.maker_oid[i]}
        for order in changed.values():
            if order.status in OPEN_STATUSES and order.filled_quantity == order.quantity:
                order.status = "filled"
            if order.status not in OPEN_STATUSES:
                m._finish(order)
            self._order_changed(order)
        if levels:
            instrument = next(iter(levels))[0]
            touched: Any = (instrument,)  # a command concerns one instrument; in case not:
            for key in levels:  # (a plain loop: a generator per command costs more)
                if key[0] != instrument:
                    touched = dict.fromkeys([key[0] for key in levels])  # first-seen order
                    break
            for instrument in touched:
                changes = self._book_changed(instrument)
                if changes is not None:
                    changes.update({(side, price): change for (i, side, price), change
                                    in levels.items() if i == instrument})

    def _order_changed(self, order: OrderRecord) -> None:
        """Publish an order's new state to its owner's ``orders`` channel, if listened to."""
        channel = f"orders@{order.account_id}"
        if self.markets.machine.wants(channel):
            self.markets.machine.publish(channel, order_view(order))

    def _book_changed(self, instrument: int) -> dict | None:
        """One more book sequence for ``instrument``, and its update, published now in order
        if listened to. Returns the map the caller fills with this command's level changes,
        (side, price) -> change (None when nobody listens); the levels' quantities as of this
        command are known once the whole call is folded (publish_books)."""
        m = self.markets
        m.book_sequences[instrument] += 1
        channel = f"book:{instrument}"
        if not m.machine.wants(channel):
            return None
        update: dict = {"changes": []}
        changes: dict[tuple[int, int], int] = {}
        m.machine.publish(channel, update, m.book_sequences[instrument])
        self.book_updates.append((instrument, update, changes))
        return changes

    def _rested(self, order: OrderRecord, side: int, price: int, qty: int) -> None:
        """What the general fold publishes for a new order that only rested."""
        self._order_changed(order)
        changes = self._book_changed(order.instrument_id)
        if changes is not None:
            changes[(side, price)] = qty

    def _amended(self, i: int, levels: dict, changed: dict) -> None:
        """The order's new price and remaining quantity; re-entered, it leaves its level and
        the open orders until its EV_RESTED (it may trade or be cancelled first)."""
        m = self.markets
        order = m.orders[self.oid[i]]
        done = order.filled_quantity + order.cancelled_quantity
        rest = order.quantity - done
        key = (order.instrument_id, self.side[i], order.price)
        if self.code[i] == k.AMEND_KEPT_PRIORITY:
            levels[key] = levels.get(key, 0) - (rest - self.qty[i])
        else:
            levels[key] = levels.get(key, 0) - rest
            m._unopen(order)
        order.price = self.price[i]
        order.quantity = done + self.qty[i]
        changed[order.order_id] = order

    def _fill(self, sequence: int, i: int, levels: dict, changed: dict) -> None:
        m = self.markets
        instrument = self.instrument[i]
        price, qty, trade_id = self.price[i], self.qty[i], self.trade_id[i]
        taker_side = self.side[i]
        taker = m.orders[self.oid[i]]
        maker = m.orders[self.maker_oid[i]]
        fill = (trade_id, price, qty)
        for order in (taker, maker):
            order.filled_quantity += qty
            order.fills += (fill,)
            if order.status == "open":
                order.status = "partially_filled"
            changed[order.order_id] = order
        # The maker's level changed at its own limit price (in an uncross that differs from the
        # clearing price). In an uncross the "taker" rested too, at its own limit.
        key = (instrument, 1 - taker_side, self.maker_price[i])
        levels[key] = levels.get(key, 0) - qty
        if instrument in m.auction_instruments:
            key = (instrument, taker_side, self.price_limit[i])
            levels[key] = levels.get(key, 0) - qty
        buyer, seller = (taker, maker) if taker_side == k.SIDE_BUY else (maker, taker)
        m._trade_movements(self.movements, sequence, instrument, buyer.account_id,
                           seller.account_id, price, qty)
        m.record_trade(instrument, trade_id, price, qty, SIDE_NAMES[taker_side],
                       buyer.order_id, seller.order_id)

    def publish_books(self) -> None:
        """Book updates with each level's quantity as of its command: the quantity now, less
        the changes of the commands after it."""
        m = self.markets
        if self.movements:
            rows = np.array(self.movements, dtype=mv.MOVEMENT_DTYPE)
            m.machine.movements.record_many(rows)
            m.machine.take_fees_from_proceeds(rows)
        if not self.book_updates:
            return
        running: dict[tuple[int, int, int], int] = {}
        for instrument, _, changes in self.book_updates:
            for (side, price), change in changes.items():
                key = (instrument, side, price)
                if key not in running:
                    running[key] = m.level_quantity(instrument, side, price)
                running[key] -= change
        for instrument, update, changes in self.book_updates:
            published = update["changes"]
            for side, price in sorted(changes):
                key = (instrument, side, price)
                running[key] += changes[(side, price)]
                published.append([SIDE_NAMES[side], price, running[key]])


def untouched(records: np.ndarray, next_oid: int, order_id: int, commands: np.ndarray) -> int:
    """The model of ``engine.kernels.amends.amend_read``'s verdict on an amend of
    ``order_id`` (``RECORD_DTYPE`` ``records``, orders below ``next_oid`` given) after the
    queued ``commands``: ``Markets._untouched`` as it was in Python, a row at a time."""
    if not (0 < order_id < next_oid and records[order_id]["kept"]):
        return amends.AMEND_UNKNOWN
    instrument, side, price, status = records[
        ["instrument", "side", "price", "status"]][order_id].tolist()
    if status > PARTIALLY_FILLED:
        return amends.AMEND_MAY_CHANGE
    sides = records["side"]
    verdict = amends.AMEND_UNCHANGED
    for row in commands.tolist():
        op, row_side, row_type, row_instrument, row_price, row_oid = (
            row[0], row[1], row[2], row[6], row[8], row[10])
        if row_oid == order_id:
            return amends.AMEND_MAY_CHANGE
        if op == k_AMEND and row_oid >= next_oid:
            return amends.AMEND_MAY_CHANGE  # of an order the queue may place
        if row_instrument != instrument:
            continue
        if op == k_AMEND:
            row_side = int(sides[row_oid])  # an order's side never changes
            if row_price == 0:  # it keeps its order's price (codes.AMEND_BY_TOTAL)
                row_price = int(records["price"][row_oid])
        elif op != k_NEW:
            return amends.AMEND_MAY_CHANGE  # an uncross there
        if row_side == side:
            continue
        if op == k_NEW and row_type == k.TYPE_MARKET or (
                row_price <= price if side == k.SIDE_BUY else row_price >= price):
            verdict = amends.AMEND_IF_COVERED  # an order that may cross it, if it gets there
    return verdict


def covered(records: np.ndarray, orders: np.ndarray, levels: np.ndarray,
            instruments: np.ndarray, order_id: int, commands: np.ndarray) -> bool:
    """The model of ``engine.kernels.amends.covered_ahead``: the resting orders of the order's
    instrument and side (``orders``, the engine's) ranked by price, then by place in their
    level's queue (read from each level's head); those ranked before the order, less the
    ones a queued command names or whose owner queued an order of the other side there,
    must hold more than the other side's queued orders and amends there can take."""
    record = records[order_id]
    instrument, side, owner = int(record["instrument"]), int(record["side"]), int(
        record["account"])
    rows = [row for row in commands.tolist() if row[6] == instrument and row[0] != k.OP_CANCEL]
    other = [row for row in rows
             if (int(records[row[10]]["side"]) if row[0] == k_AMEND else row[1]) != side]
    if any(row[7] == owner for row in other):
        return False
    # What each may take: an amend that keeps its order's remaining quantity
    # (codes.AMEND_REMAINING) no more than the order's quantity in all.
    demand = sum(row[9] if row[9] >= 0 else int(records["quantity"][row[10]]) for row in other)
    named = {row[10] for row in commands.tolist() if row[0] != k_NEW}
    takers = {row[7] for row in other}
    row = instruments[instrument]
    ranked = []
    for price in range(int(row["ladder_lo"]), int(row["ladder_lo"] + row["ladder_width"])):
        slot = int(levels[int(row["level_base"] + side * row["ladder_width"]
                              + price - row["ladder_lo"])]["head"])
        place = 0
        while slot >= 0:
            ranked.append((-price if side == k.SIDE_BUY else price, place, slot))
            place += 1
            slot = int(orders[slot]["next"])
    ranked.sort()
    mine = next(place for place in ranked if int(orders[place[2]]["oid"]) == order_id)
    ahead = 0  # the kernel looks no further than LEVELS_WALKED_MAX better prices
    for rank, _, slot in ranked:
        order = orders[slot]
        if int(order["oid"]) == order_id:
            return ahead > demand
        if (rank >= mine[0] - amends.LEVELS_WALKED_MAX and int(order["oid"]) not in named
                and int(order["account"]) not in takers):
            ahead += int(order["qty"])
    return False
