"""Secondary markets: orders, cancels and call auctions, matched by the compiled engine.

Boards decide what may trade (``Offerings.instrument_info``: tradable, locked up, defaulted);
``MatchingEngine`` (the numba kernels) matches and moves reserved cash and units. This
component keeps what the API shows about orders, records each fill's movements for
settlement, keeps the trade tape and candles, and publishes book, trade and order updates.

Every change to an instrument's book increments its sequence by one; a book update carries the
absolute new quantity of every level it changed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec
import numpy as np

from boards.rules import fee_half_up
from engine import markets_commands as mc
from engine import movements as mv
from engine.clock import format_time_us
from engine.errors import CrowdexError
from engine.kernels import codes as k
from engine.machine import Reply
from engine.marketdata import Tape, TapeState, TradeRecord
from engine.matching import MatchingEngine, command

SELLER_FEE_BPS = 100  # BOARDS.md: the seller pays 100 bps of each fill on every board
BAND_MULTIPLE = 5  # price band: 1 fen to 5 x the reference price
FINISHED_ORDERS_KEPT = 100_000  # filled/cancelled orders kept for GET /v1/orders/{id}
OPEN_ORDERS_MAX = 1000  # per account
AUCTION_HOUR_UTC = 15  # the IP board's daily uncross
US_PER_DAY = 86_400_000_000

SIDES = {"buy": k.SIDE_BUY, "sell": k.SIDE_SELL}
SIDE_NAMES = {k.SIDE_BUY: "buy", k.SIDE_SELL: "sell"}
TIFS = {"gtc": k.TIF_GTC, "ioc": k.TIF_IOC, "fok": k.TIF_FOK}
OPEN_STATUSES = ("open", "partially_filled")


class OrderRecord(msgspec.Struct, array_like=True):
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
    fills: list[tuple[int, int, int]] = msgspec.field(default_factory=list)


class AuctionState(msgspec.Struct, array_like=True):
    instrument_id: int
    reference_price: int
    last_price: int = 0
    last_quantity: int = 0


class MarketsMeta(msgspec.Struct, array_like=True):
    orders: list[OrderRecord]
    tapes: list[TapeState]
    book_sequences: list[tuple[int, int]]
    last_prices: list[tuple[int, int]]
    next_auction_us: int


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(MarketsMeta)


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
        "remaining_quantity": order.quantity - order.filled_quantity if live else 0,
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
        self.tapes: dict[int, Tape] = {}
        self.book_sequences: dict[int, int] = {}
        self.last_prices: dict[int, int] = {}
        self.next_auction_us = 0

    def handlers(self) -> dict:
        return {mc.PlaceOrder: self._place, mc.CancelOrder: self._cancel,
                mc.RunAuction: self._auction}

    # ---- rules checks ---------------------------------------------------------------------------

    def _offerings(self):
        return self.machine.component("offerings")

    def _check_tradable(self, instrument_id: int, side: str) -> Any:
        info = self._offerings().instrument_info(instrument_id)
        if info is None:
            raise CrowdexError("instrument_not_found", f"no instrument {instrument_id}")
        if not info.tradable:
            raise CrowdexError("not_permitted", f"the {info.board} board has no secondary market")
        if self.machine.profile == "cn2015":
            raise CrowdexError("matching_not_permitted",
                               "cn2015: no centralised matching; use /v1/offers")
        if info.status != "trading":
            raise CrowdexError("locked_up", "the instrument is still locked up")
        if info.defaulted and side == "sell":
            raise CrowdexError("not_permitted", "notes of a loan in default cannot be sold")
        return info

    def _ensure_instrument(self, info: Any) -> None:
        instrument_id = info.instrument_id
        if instrument_id in self.book_sequences:
            return
        reference = info.reference_price_fen
        self.engine.add_instrument(
            instrument_id, band_lo_fen=1, band_hi_fen=BAND_MULTIPLE * reference,
            fee_bps=SELLER_FEE_BPS, mode="auction" if info.board == "ip" else "book",
            reference_price_fen=reference)
        self.book_sequences[instrument_id] = 0
        self.tapes[instrument_id] = Tape(instrument_id)
        if info.board == "ip" and self.next_auction_us == 0:
            self.next_auction_us = self._next_auction_after(self.machine.now_us)

    def reference_price(self, instrument_id: int) -> int:
        last = self.last_prices.get(instrument_id)
        if last:
            return last
        return int(self.engine.instruments[instrument_id]["reference_price"])

    # ---- commands -------------------------------------------------------------------------------

    def _place(self, cmd: mc.PlaceOrder, actor: int) -> Reply:
        account = self.machine.accounts.get(actor)
        if account is None or account.role != "investor":
            raise CrowdexError("forbidden", "only investors trade")
        info = self._check_tradable(cmd.instrument_id, cmd.side)
        mine = self.open_by_account.get(actor, {})
        if cmd.client_order_id is not None and any(
                o.client_order_id == cmd.client_order_id for o in mine.values()):
            raise CrowdexError("duplicate_client_order_id",
                               "an open order already has this client_order_id")
        if len(mine) >= OPEN_ORDERS_MAX:
            raise CrowdexError("limit_exceeded", f"at most {OPEN_ORDERS_MAX} open orders")
        self._ensure_instrument(info)
        row = command(k.OP_NEW, instrument=cmd.instrument_id, account=actor,
                      side=SIDES[cmd.side], qty=cmd.quantity, price=cmd.price,
                      type=k.TYPE_MARKET if cmd.order_type == "market" else k.TYPE_LIMIT,
                      tif=TIFS[cmd.time_in_force], post_only=int(cmd.post_only),
                      stp=k.STP_BY_NAME[cmd.self_trade_prevention])
        result = self.engine.process(row, self.machine.balances)
        code = int(result.results[0])
        if code != k.OK:
            raise CrowdexError(k.CODE_NAMES[code], _refusal_text(code))
        order = OrderRecord(0, actor, cmd.client_order_id, cmd.instrument_id, cmd.side,
                            cmd.order_type, cmd.price or None, cmd.quantity,
                            cmd.time_in_force, cmd.post_only, self.machine.now_us)
        self._apply_events(result.events, order)
        return Reply(201, order_view(order))

    def _cancel(self, cmd: mc.CancelOrder, actor: int) -> Reply:
        order = self.orders.get(cmd.order_id)
        if order is None or order.account_id != actor:
            raise CrowdexError("order_not_found", f"no order {cmd.order_id}")
        if order.status not in OPEN_STATUSES:
            raise CrowdexError("order_not_open", f"order {cmd.order_id} is {order.status}")
        row = command(k.OP_CANCEL, oid=cmd.order_id, account=actor)
        result = self.engine.process(row, self.machine.balances)
        code = int(result.results[0])
        if code != k.OK:
            raise CrowdexError(k.CODE_NAMES[code], _refusal_text(code))
        self._apply_events(result.events, None)
        return Reply(200, order_view(order))

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

    def uncross(self, instrument_id: int) -> dict:
        """Run one instrument's call auction; the response body of an uncross."""
        summary = {"instrument_id": instrument_id, "price": 0, "quantity": 0, "trade_count": 0}
        if instrument_id not in self.book_sequences:
            return summary
        result = self.engine.process(command(k.OP_UNCROSS, instrument=instrument_id),
                                     self.machine.balances)
        for ev in result.events:
            if ev["kind"] == k.EV_UNCROSSED:
                summary.update(price=int(ev["price"]), quantity=int(ev["qty"]),
                               trade_count=int(ev["maker_oid"]))
        self._apply_events(result.events, None)
        return summary

    # ---- events ---------------------------------------------------------------------------------

    def _apply_events(self, events: np.ndarray, taker: OrderRecord | None) -> None:
        """Fold a command's events into orders, movements, the tape and published updates."""
        touched: set[tuple[int, int, int]] = set()  # (instrument, side, price)
        changed: dict[int, OrderRecord] = {}
        for ev in events:
            kind = int(ev["kind"])
            if kind == k.EV_ACCEPTED and taker is not None:
                taker.order_id = int(ev["oid"])
                self.orders[taker.order_id] = taker
                changed[taker.order_id] = taker
            elif kind == k.EV_FILL:
                self._fill(ev, touched, changed)
            elif kind == k.EV_RESTED:
                order = self.orders[int(ev["oid"])]
                self.open_by_account.setdefault(order.account_id, {})[order.order_id] = order
                touched.add((order.instrument_id, int(ev["side"]), int(ev["price"])))
            elif kind == k.EV_CANCELLED:
                order = self.orders[int(ev["oid"])]
                if order.order_id in self.open_by_account.get(order.account_id, {}):
                    touched.add((order.instrument_id, int(ev["side"]), int(ev["price"])))
                order.status = "cancelled" if order.filled_quantity < order.quantity else "filled"
                changed[order.order_id] = order
        for order in changed.values():
            if order.status in OPEN_STATUSES and order.filled_quantity == order.quantity:
                order.status = "filled"
            if order.status not in OPEN_STATUSES:
                self._finish(order)
            channel = f"orders@{order.account_id}"
            if self.machine.wants(channel):
                self.machine.publish(channel, order_view(order))
        self._publish_book_changes(touched)

    def _fill(self, ev: np.void, touched: set, changed: dict) -> None:
        instrument = int(ev["instrument"])
        price, qty, trade_id = int(ev["price"]), int(ev["qty"]), int(ev["trade_id"])
        taker_side = int(ev["side"])
        taker = self.orders[int(ev["oid"])]
        maker = self.orders[int(ev["maker_oid"])]
        for order in (taker, maker):
            order.filled_quantity += qty
            order.fills.append((trade_id, price, qty))
            if order.status == "open":
                order.status = "partially_filled"
            changed[order.order_id] = order
        # The maker's level changed at its own limit price (in an uncross that differs from the
        # clearing price). In an uncross the "taker" rested too, at its own limit.
        touched.add((instrument, 1 - taker_side, int(ev["maker_price"])))
        if self.engine.instruments[instrument]["mode"] == k.MODE_AUCTION:
            touched.add((instrument, taker_side, int(ev["price_limit"])))
        buyer, seller = (taker, maker) if taker_side == k.SIDE_BUY else (maker, taker)
        self._record_trade_movements(instrument, buyer.account_id, seller.account_id, price, qty)
        trade = TradeRecord(trade_id, price, qty, SIDE_NAMES[taker_side], self.machine.now_us,
                            buyer.order_id, seller.order_id)
        self.tapes[instrument].record(trade)
        self.last_prices[instrument] = price
        if self.machine.wants(f"trades:{instrument}"):
            self.machine.publish(f"trades:{instrument}", trade_view(trade))

    def _record_trade_movements(self, instrument: int, buyer: int, seller: int, price: int,
                                qty: int) -> None:
        """The kernel already moved the balances; record who paid whom for settlement."""
        record = self.machine.movements.record
        sequence = self.machine.last_sequence
        notional = price * qty
        record(sequence, mv.TRADE_CASH, buyer, seller, mv.CASH, notional)
        record(sequence, mv.TRADE_UNITS, seller, buyer, instrument, qty)
        fee = fee_half_up(notional, SELLER_FEE_BPS)  # the same rule the kernel charged
        if fee:
            record(sequence, mv.TRADE_FEE, seller, self.machine.fee_account_id, mv.CASH, fee)

    def _finish(self, order: OrderRecord) -> None:
        self.open_by_account.get(order.account_id, {}).pop(order.order_id, None)
        self.finished[order.order_id] = None
        while len(self.finished) > FINISHED_ORDERS_KEPT:
            oldest, _ = self.finished.popitem(last=False)
            self.orders.pop(oldest, None)

    def _publish_book_changes(self, touched: set[tuple[int, int, int]]) -> None:
        by_instrument: dict[int, list[list]] = {}
        for instrument, side, price in sorted(touched):
            qty = self.level_quantity(instrument, side, price)
            by_instrument.setdefault(instrument, []).append([SIDE_NAMES[side], price, qty])
        for instrument, changes in by_instrument.items():
            self.book_sequences[instrument] += 1
            self.machine.publish(f"book:{instrument}", {"changes": changes},
                                 self.book_sequences[instrument])
            self._update_band(instrument)

    def _update_band(self, instrument: int) -> None:
        high = BAND_MULTIPLE * self.reference_price(instrument)
        if int(self.engine.instruments[instrument]["band_hi"]) != high:
            self.engine.set_band(instrument, 1, high)

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

    @staticmethod
    def _next_auction_after(time_us: int) -> int:
        day = time_us - time_us % US_PER_DAY
        at = day + AUCTION_HOUR_UTC * 3_600_000_000
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
        return {f"markets_{name}": array for name, array in self.engine.arrays().items()}

    def meta(self) -> bytes:
        return _encoder.encode(MarketsMeta(
            orders=[self.orders[i] for i in sorted(self.orders)],
            tapes=[self.tapes[i].state() for i in sorted(self.tapes)],
            book_sequences=sorted(self.book_sequences.items()),
            last_prices=sorted(self.last_prices.items()),
            next_auction_us=self.next_auction_us,
        ))

    def load(self, arrays: dict[str, np.ndarray], meta: bytes) -> None:
        prefix = "markets_"
        self.engine.load({name[len(prefix):]: array for name, array in arrays.items()
                          if name.startswith(prefix)})
        state = _decoder.decode(meta)
        self.orders = {o.order_id: o for o in state.orders}
        self.finished = OrderedDict((o.order_id, None) for o in state.orders
                                    if o.status not in OPEN_STATUSES)
        self.open_by_account = {}
        for order in state.orders:
            if order.status in OPEN_STATUSES:
                self.open_by_account.setdefault(order.account_id, {})[order.order_id] = order
        self.tapes = {t.instrument_id: Tape.from_state(t) for t in state.tapes}
        self.book_sequences = dict(state.book_sequences)
        self.last_prices = dict(state.last_prices)
        self.next_auction_us = state.next_auction_us


def trade_view(trade: TradeRecord) -> dict:
    return {"trade_id": trade.trade_id, "price": trade.price, "quantity": trade.quantity,
            "taker_side": trade.taker_side, "time": format_time_us(trade.time_us)}


_REFUSALS = {
    "insufficient_funds": "not enough available cash for this order",
    "insufficient_holdings": "not enough available units for this order",
    "price_out_of_band": "the price is outside the instrument's price band",
    "post_only_would_cross": "a post-only order may not cross the book",
    "fok_not_fillable": "the fill-or-kill order cannot fill completely",
    "order_not_found": "no such open order",
    "not_permitted": "this instrument does not take that kind of order",
}


def _refusal_text(code: int) -> str:
    name = k.CODE_NAMES[code]
    return _REFUSALS.get(name, name.replace("_", " "))
