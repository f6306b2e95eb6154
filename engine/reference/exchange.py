"""A plain-Python model of the matching kernels and the risk stage, written to be obviously right.

It is the oracle the property tests compare the engine against, and the baseline of the
benchmarks. Speed does not matter here: books are dicts of price -> list of orders, the best
price is found with ``max``/``min``, balances are dicts. Events are plain tuples
``(kind, side, code, oid, account, maker_oid, maker_account, price, qty, trade_id)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.kernels import codes as k


@dataclass
class Order:
    oid: int
    instrument: int
    account: int
    side: int
    price: int
    qty: int
    filled: int = 0
    stp: int = k.STP_CANCEL_NEWEST


@dataclass
class Instrument:
    band_lo: int
    band_hi: int
    fee_bps: int
    auction: bool
    reference_price: int
    bids: dict[int, list[Order]] = field(default_factory=dict)
    asks: dict[int, list[Order]] = field(default_factory=dict)

    def side_book(self, side: int) -> dict[int, list[Order]]:
        return self.bids if side == k.SIDE_BUY else self.asks

    def best(self, side: int) -> int | None:
        book = self.side_book(side)
        if not book:
            return None
        return max(book) if side == k.SIDE_BUY else min(book)


@dataclass
class Account:
    cash_available: int = 0
    cash_reserved: int = 0
    cash_unsettled: int = 0


class ReferenceExchange:
    """Books of many instruments plus (optionally) balances, one command at a time."""

    def __init__(self, *, risk: bool, fee_account: int = 1) -> None:
        self.risk = risk
        self.fee_account = fee_account
        self.instruments: dict[int, Instrument] = {}
        self.orders: dict[int, Order] = {}
        self.accounts: dict[int, Account] = {}
        self.units: dict[tuple[int, int], list[int]] = {}  # (acct, inst) -> [available, reserved]
        self.next_oid = 1
        self.next_trade = 1
        self.events: list[tuple] = []

    # ---- set-up -----------------------------------------------------------------------------

    def add_instrument(self, inst: int, band_lo: int, band_hi: int, fee_bps: int = 0,
                       auction: bool = False, reference_price: int = 0) -> None:
        self.instruments[inst] = Instrument(band_lo, band_hi, fee_bps, auction, reference_price)

    def holding(self, account: int, inst: int) -> list[int]:
        return self.units.setdefault((account, inst), [0, 0])

    # ---- commands ---------------------------------------------------------------------------

    def new_order(self, inst: int, account: int, side: int, qty: int, price: int = 0,
                  order_type: int = k.TYPE_LIMIT, tif: int = k.TIF_GTC, post_only: bool = False,
                  stp: int = k.STP_CANCEL_NEWEST) -> int:
        """Submit a new order; returns its result code, events go to ``self.events``."""
        ins = self.instruments.get(inst)
        if ins is None:
            return self._refuse(k.INSTRUMENT_NOT_FOUND, side, account)
        if qty <= 0 or side not in (k.SIDE_BUY, k.SIDE_SELL):
            return self._refuse(k.INVALID_FIELD, side, account)
        if order_type == k.TYPE_LIMIT:
            limit = price
            if not ins.band_lo <= price <= ins.band_hi:
                return self._refuse(k.PRICE_OUT_OF_BAND, side, account)
        else:
            limit = ins.band_hi if side == k.SIDE_BUY else ins.band_lo
            if post_only:
                return self._refuse(k.INVALID_FIELD, side, account)
        if post_only and tif != k.TIF_GTC:
            return self._refuse(k.INVALID_FIELD, side, account)
        if ins.auction and (order_type != k.TYPE_LIMIT or tif != k.TIF_GTC or post_only):
            return self._refuse(k.NOT_PERMITTED, side, account)
        if self.risk:
            if account not in self.accounts:
                return self._refuse(k.ACCOUNT_NOT_FOUND, side, account)
            code = self._reserve(inst, account, side, limit, qty)
            if code != k.OK:
                return self._refuse(code, side, account)
        opposite_best = ins.best(1 - side)
        if post_only and opposite_best is not None and self._crosses(side, limit, opposite_best):
            return self._unreserve_and_refuse(k.POST_ONLY_WOULD_CROSS, inst, account, side,
                                              limit, qty)
        if tif == k.TIF_FOK and not self._fok_fillable(ins, side, limit, qty, account, stp):
            return self._unreserve_and_refuse(k.FOK_NOT_FILLABLE, inst, account, side, limit,
                                              qty)
        order = Order(self.next_oid, inst, account, side, limit, qty, stp=stp)
        self.next_oid += 1
        self._event(k.EV_ACCEPTED, side, 0, order.oid, account, 0, 0, limit, qty)
        stopped = False
        if not ins.auction:
            stopped = self._match(ins, order, stp)
        self._finish(ins, order, stopped, order_type == k.TYPE_MARKET or tif == k.TIF_IOC)
        return k.OK

    def cancel(self, oid: int, account: int) -> int:
        order = self.orders.get(oid)
        if order is None or (account != 0 and order.account != account):
            return self._refuse(k.ORDER_NOT_FOUND, 0, account)
        self._cancel_resting(order, order.qty, k.REASON_REQUESTED)
        return k.OK

    def amend(self, oid: int, account: int, price: int, qty: int,
              post_only: bool = False) -> int:
        """A resting order's new price and remaining quantity: a lower quantity at the same
        price keeps its place; anything else re-enters it at the back, trading first."""
        order = self.orders.get(oid)
        if order is None or (account != 0 and order.account != account):
            return self._refuse(k.ORDER_NOT_FOUND, 0, account)
        if qty <= 0 or price <= 0:
            return self._refuse(k.INVALID_FIELD, 0, account)
        ins = self.instruments[order.instrument]
        if price == order.price and qty <= order.qty:
            self._release(order.instrument, order.account, order.side, price, order.qty - qty)
            order.qty = qty
            self._event(k.EV_AMENDED, order.side, k.AMEND_KEPT_PRIORITY, oid, order.account,
                        0, 0, price, qty)
            return k.OK
        if not ins.band_lo <= price <= ins.band_hi:
            return self._refuse(k.PRICE_OUT_OF_BAND, 0, account)
        opposite_best = ins.best(1 - order.side)
        if post_only and opposite_best is not None and self._crosses(order.side, price,
                                                                     opposite_best):
            return self._refuse(k.POST_ONLY_WOULD_CROSS, 0, account)
        if self.risk:
            code = self._re_reserve(order, price, qty)
            if code != k.OK:
                return self._refuse(code, 0, account)
        self._unlink(order)
        order.price, order.qty = price, qty
        self._event(k.EV_AMENDED, order.side, k.AMEND_REENTERED, oid, order.account, 0, 0,
                    price, qty)
        stopped = False if ins.auction else self._match(ins, order, order.stp)
        self._finish(ins, order, stopped, False)
        return k.OK

    def _re_reserve(self, order: Order, price: int, qty: int) -> int:
        if order.side == k.SIDE_BUY:
            acct = self.accounts[order.account]
            more = price * qty - order.price * order.qty
            if price * qty > 2**63 - 1 or more > acct.cash_available:
                return k.INSUFFICIENT_FUNDS
            acct.cash_available -= more
            acct.cash_reserved += more
            return k.OK
        held = self.holding(order.account, order.instrument)
        more = qty - order.qty
        if more > held[0]:
            return k.INSUFFICIENT_HOLDINGS
        held[0] -= more
        held[1] += more
        return k.OK

    # ---- matching ---------------------------------------------------------------------------

    @staticmethod
    def _crosses(side: int, limit: int, opposite_price: int) -> bool:
        return opposite_price <= limit if side == k.SIDE_BUY else opposite_price >= limit

    def _queue(self, ins: Instrument, side: int) -> list[Order]:
        """Every resting order of one side in priority order (best price, then arrival)."""
        book = ins.side_book(side)
        prices = sorted(book, reverse=(side == k.SIDE_BUY))
        return [o for p in prices for o in book[p]]

    def _fok_fillable(self, ins: Instrument, side: int, limit: int, qty: int, account: int,
                      stp: int) -> bool:
        need = qty
        for o in self._queue(ins, 1 - side):
            if need == 0 or not self._crosses(side, limit, o.price):
                break
            if stp != k.STP_NONE and o.account == account:
                if stp != k.STP_CANCEL_OLDEST:
                    return False
                continue
            need -= min(need, o.qty)
        return need == 0

    def _match(self, ins: Instrument, taker: Order, stp: int) -> bool:
        """Trade the taker; True when self-trade prevention stopped it."""
        for maker in self._queue(ins, 1 - taker.side):
            if taker.qty == 0 or not self._crosses(taker.side, taker.price, maker.price):
                return False
            if stp != k.STP_NONE and maker.account == taker.account:
                if stp == k.STP_CANCEL_NEWEST:
                    return True
                if stp == k.STP_DECREMENT:
                    d = min(taker.qty, maker.qty)
                    self._cancel_resting(maker, d, k.REASON_SELF_TRADE)
                    self._event(k.EV_CANCELLED, taker.side, k.REASON_SELF_TRADE, taker.oid,
                                taker.account, 0, 0, taker.price, d)
                    self._release(taker.instrument, taker.account, taker.side, taker.price, d)
                    taker.qty -= d
                    continue
                self._cancel_resting(maker, maker.qty, k.REASON_SELF_TRADE)
                if stp == k.STP_CANCEL_BOTH:
                    return True
                continue
            self._trade(ins, taker, maker, maker.price, min(taker.qty, maker.qty))
        return False

    def _trade(self, ins: Instrument, taker: Order, maker: Order, price: int, qty: int) -> None:
        self._event(k.EV_FILL, taker.side, 0, taker.oid, taker.account, maker.oid, maker.account,
                    price, qty, self.next_trade)
        self.next_trade += 1
        for o in (taker, maker):
            o.qty -= qty
            o.filled += qty
        if self.risk:
            buyer, seller = (taker, maker) if taker.side == k.SIDE_BUY else (maker, taker)
            self._settle(ins, buyer, seller, price, qty)
        for o in (taker, maker):
            if o.qty == 0 and o.oid in self.orders:
                self._unlink(o)

    def _finish(self, ins: Instrument, order: Order, stopped: bool, drop_rest: bool) -> None:
        """Rest what is left of a new order, or drop it (market, IOC, self-trade)."""
        if order.qty == 0:
            return
        if stopped or drop_rest:
            reason = k.REASON_SELF_TRADE if stopped else k.REASON_UNFILLED_REST
            self._event(k.EV_CANCELLED, order.side, reason, order.oid, order.account, 0, 0,
                        order.price, order.qty)
            self._release(order.instrument, order.account, order.side, order.price, order.qty)
            return
        ins.side_book(order.side).setdefault(order.price, []).append(order)
        self.orders[order.oid] = order
        self._event(k.EV_RESTED, order.side, 0, order.oid, order.account, 0, 0, order.price,
                    order.qty)

    def _cancel_resting(self, order: Order, qty: int, reason: int) -> None:
        self._event(k.EV_CANCELLED, order.side, reason, order.oid, order.account, 0, 0,
                    order.price, qty)
        self._release(order.instrument, order.account, order.side, order.price, qty)
        order.qty -= qty
        if order.qty == 0:
            self._unlink(order)

    def _unlink(self, order: Order) -> None:
        book = self.instruments[order.instrument].side_book(order.side)
        book[order.price].remove(order)
        if not book[order.price]:
            del book[order.price]
        del self.orders[order.oid]

    # ---- call auction -----------------------------------------------------------------------

    def uncross(self, inst: int) -> int:
        """The call auction of one instrument (see ``engine.kernels.auction``)."""
        ins = self.instruments.get(inst)
        if ins is None:
            return self._refuse(k.INSTRUMENT_NOT_FOUND, 0, 0)
        if not ins.auction:
            return self._refuse(k.NOT_PERMITTED, 0, 0)
        price, volume = self._clearing_price(ins)
        trades = 0
        left = volume
        while left > 0:
            bid = self._queue(ins, k.SIDE_BUY)[0]
            ask = self._queue(ins, k.SIDE_SELL)[0]
            taker, maker = (bid, ask) if bid.oid > ask.oid else (ask, bid)
            q = min(left, bid.qty, ask.qty)
            self._trade(ins, taker, maker, price, q)
            trades += 1
            left -= q
        if volume:
            ins.reference_price = price
        self._event(k.EV_UNCROSSED, 0, 0, 0, 0, trades, 0, price, volume)
        return k.OK

    @staticmethod
    def _clearing_price(ins: Instrument) -> tuple[int, int]:
        """Most volume, then least imbalance, then nearest the reference, then lowest price."""
        candidates = []
        for p in set(ins.bids) | set(ins.asks):
            buy = sum(o.qty for q, orders in ins.bids.items() if q >= p for o in orders)
            sell = sum(o.qty for q, orders in ins.asks.items() if q <= p for o in orders)
            volume = min(buy, sell)
            if volume > 0:
                candidates.append((-volume, abs(buy - sell), abs(p - ins.reference_price), p))
        if not candidates:
            return k.NO_PRICE, 0
        best = min(candidates)
        return best[3], -best[0]

    # ---- risk -------------------------------------------------------------------------------

    def _reserve(self, inst: int, account: int, side: int, limit: int, qty: int) -> int:
        if side == k.SIDE_BUY:
            acct = self.accounts[account]
            if limit * qty > 2**63 - 1 or acct.cash_available < limit * qty:
                return k.INSUFFICIENT_FUNDS
            acct.cash_available -= limit * qty
            acct.cash_reserved += limit * qty
            return k.OK
        held = self.holding(account, inst)
        if held[0] < qty:
            return k.INSUFFICIENT_HOLDINGS
        held[0] -= qty
        held[1] += qty
        return k.OK

    def _release(self, inst: int, account: int, side: int, limit: int, qty: int) -> None:
        if not self.risk:
            return
        if side == k.SIDE_BUY:
            self.accounts[account].cash_reserved -= limit * qty
            self.accounts[account].cash_available += limit * qty
        else:
            held = self.holding(account, inst)
            held[1] -= qty
            held[0] += qty

    def _settle(self, ins: Instrument, buyer: Order, seller: Order, price: int, qty: int) -> None:
        notional = price * qty
        fee = (notional * ins.fee_bps + 5000) // 10000
        b = self.accounts[buyer.account]
        b.cash_reserved -= buyer.price * qty
        b.cash_available += (buyer.price - price) * qty
        self.holding(buyer.account, buyer.instrument)[0] += qty
        self.holding(seller.account, seller.instrument)[1] -= qty
        s = self.accounts[seller.account]
        s.cash_available += notional - fee
        s.cash_unsettled += notional  # gross, like every proceeds credit
        f = self.accounts[self.fee_account]
        f.cash_available += fee
        f.cash_unsettled += fee

    def _unreserve_and_refuse(self, code: int, inst: int, account: int, side: int, limit: int,
                              qty: int) -> int:
        self._release(inst, account, side, limit, qty)
        return self._refuse(code, side, account)

    # ---- events -----------------------------------------------------------------------------

    def _refuse(self, code: int, side: int, account: int) -> int:
        self._event(k.EV_REJECTED, side, code, 0, account, 0, 0, 0, 0)
        return code

    def _event(self, kind: int, side: int, code: int, oid: int, account: int, maker_oid: int,
               maker_account: int, price: int, qty: int, trade_id: int = 0) -> None:
        self.events.append((kind, side, code, oid, account, maker_oid, maker_account, price, qty,
                            trade_id))

    def depth(self, inst: int, side: int) -> list[tuple[int, int]]:
        book = self.instruments[inst].side_book(side)
        prices = sorted(book, reverse=(side == k.SIDE_BUY))
        return [(p, sum(o.qty for o in book[p])) for p in prices]
