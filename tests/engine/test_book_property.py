"""The engine against the plain-Python reference: same random commands, same everything.

After every step: the same result code, the same events, the same book depth, the same
balances; the book's own invariants hold; cash and units are conserved.
"""

from __future__ import annotations

import os

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from engine.kernels import codes as k
from engine.matching import (
    MatchingEngine,
    check_book,
    check_conservation,
    check_reservations,
)
from engine.reference.exchange import Account, ReferenceExchange
from engine.state import Balances

SLOW = os.environ.get("CROWDEX_SLOW") == "1"
EXAMPLES = 3000 if SLOW else 600
STEPS = 50  # 600 x 50 = 30,000 random steps in CI

BOOK, BOOK_NO_FEE, AUCTION = 1, 2, 3
ACCOUNTS = (2, 3, 4)
CASH = 200_000
UNITS = 50
BAND = (5, 40)
NEW_BOOKS = (5, 8)  # ids of the books opened as it goes (9 stays unknown)


def project(events) -> list[tuple]:
    """Engine events in the reference's tuple form."""
    out = []
    for e in events.tolist():
        (_cmd, kind, side, code, _inst, oid, account, _pos, _limit, maker_oid, maker_account,
         _maker_pos, _maker_price, price, qty, trade_id) = e
        if kind == k.EV_REJECTED:
            out.append((kind, side, code, 0, account, 0, 0, 0, 0, 0))
        else:
            out.append((kind, side, code, oid, account, maker_oid, maker_account, price, qty,
                        trade_id))
    return out


def queues(engine: MatchingEngine, inst: int, side: int) -> dict[int, list[int]]:
    """Each price level of one side: its orders' ids in queue order (head to tail)."""
    row = engine.instruments[inst]
    width, lo = int(row["ladder_width"]), int(row["ladder_lo"])
    start = int(row["level_base"]) + side * width
    out = {}
    for offset in range(width):
        slot, oids = int(engine.levels[start + offset]["head"]), []
        while slot >= 0:
            oids.append(int(engine.orders[slot]["oid"]))
            slot = int(engine.orders[slot]["next"])
        if oids:
            out[lo + offset] = oids
    return out


class BookMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = MatchingEngine(fee_account_id=1)
        self.balances = Balances()
        self.ref = ReferenceExchange(risk=True, fee_account=1)
        self.balances.add_account(4, 3)
        self.ref.accounts[1] = Account()
        self.opened = 0
        for inst, fee, mode in ((BOOK, 100, "book"), (BOOK_NO_FEE, 0, "book"),
                                (AUCTION, 100, "auction")):
            self.engine.add_instrument(inst, band_lo_fen=BAND[0], band_hi_fen=BAND[1],
                                       fee_bps=fee, mode=mode, reference_price_fen=20)
            self.ref.add_instrument(inst, *BAND, fee_bps=fee, auction=mode == "auction",
                                    reference_price=20)
        for account in ACCOUNTS:
            self.balances.add_account(1, 1)
            self.balances.accounts.rows[account]["cash_available"] = CASH
            self.ref.accounts[account] = Account(cash_available=CASH)
            for inst in (BOOK, BOOK_NO_FEE, AUCTION):
                slot = self.balances.position_slot(account, inst)
                self.balances.positions.rows[slot]["units_available"] = UNITS
                self.ref.holding(account, inst)[0] = UNITS

    def compare(self, result, code: int) -> None:
        assert result.results.tolist() == [code]
        assert project(result.events) == self.ref.events
        self.ref.events.clear()

    @rule(inst=st.sampled_from([BOOK, BOOK_NO_FEE, AUCTION, 9]),
          account=st.sampled_from(ACCOUNTS + (7,)), side=st.integers(0, 1),
          price=st.integers(BAND[0] - 1, BAND[1] + 1), qty=st.integers(1, 30),
          order_type=st.sampled_from([k.TYPE_LIMIT] * 4 + [k.TYPE_MARKET]),
          tif=st.sampled_from([k.TIF_GTC] * 3 + [k.TIF_IOC, k.TIF_FOK]),
          post_only=st.booleans(), stp=st.integers(k.STP_CANCEL_NEWEST, k.STP_DECREMENT))
    def new_order(self, inst, account, side, price, qty, order_type, tif, post_only, stp):
        post_only = post_only and tif == k.TIF_GTC and order_type == k.TYPE_LIMIT
        result = self.engine.new_order(inst, account, side, qty, price=price,
                                       order_type=order_type, tif=tif, post_only=post_only,
                                       stp=stp, balances=self.balances)
        code = self.ref.new_order(inst, account, side, qty, price, order_type, tif, post_only,
                                  stp)
        self.compare(result, code)

    @rule(oid=st.integers(0, 120), account=st.sampled_from((0,) + ACCOUNTS))
    def cancel(self, oid, account):
        result = self.engine.cancel(oid, account, self.balances)
        self.compare(result, self.ref.cancel(oid, account))

    @rule(oid=st.integers(0, 120), account=st.sampled_from((0,) + ACCOUNTS),
          price=st.integers(BAND[0] - 1, BAND[1] + 1), qty=st.integers(-1, 40),
          post_only=st.booleans(), same_price=st.booleans())
    def amend(self, oid, account, price, qty, post_only, same_price):
        order = self.ref.orders.get(oid)
        if same_price and order is not None:
            price = order.price  # most amends change one thing: often only the quantity
        result = self.engine.amend(oid, account, price, qty, post_only=post_only,
                                   balances=self.balances)
        self.compare(result, self.ref.amend(oid, account, price, qty, post_only))

    @rule()
    def open_book(self):
        """A new book lays every ladder out again (``MatchingEngine._relayout``): each level's
        queue stays as it was, amended orders at the back where their amend put them."""
        inst = NEW_BOOKS[0] + self.opened
        if inst > NEW_BOOKS[1]:
            return
        self.opened += 1
        self.engine.add_instrument(inst, band_lo_fen=BAND[0], band_hi_fen=BAND[1],
                                   reference_price_fen=20)
        self.ref.add_instrument(inst, *BAND, fee_bps=0, auction=False, reference_price=20)

    @rule(inst=st.sampled_from([AUCTION, BOOK]))
    def uncross(self, inst):
        result = self.engine.uncross(inst, self.balances)
        self.compare(result, self.ref.uncross(inst))

    @invariant()
    def same_state(self):
        check_book(self.engine)
        check_reservations(self.engine, self.balances)
        check_conservation(self.balances, CASH * len(ACCOUNTS),
                           {i: UNITS * len(ACCOUNTS) for i in (BOOK, BOOK_NO_FEE, AUCTION)})
        for inst in (BOOK, BOOK_NO_FEE, AUCTION):
            for side in (k.SIDE_BUY, k.SIDE_SELL):
                assert self.engine.depth(inst, side, 1000) == self.ref.depth(inst, side)
                book = self.ref.instruments[inst].side_book(side)
                assert queues(self.engine, inst, side) == {
                    price: [order.oid for order in orders] for price, orders in book.items()
                    if orders}
        rows = self.balances.accounts.rows
        for account, acct in self.ref.accounts.items():
            row = rows[account]
            assert (int(row["cash_available"]), int(row["cash_reserved"]),
                    int(row["cash_unsettled"])) == (acct.cash_available, acct.cash_reserved,
                                                    acct.cash_unsettled)
        for (account, inst), held in self.ref.units.items():
            slot = self.balances.position_slot(account, inst)
            pos = self.balances.positions.rows[slot]
            assert [int(pos["units_available"]), int(pos["units_reserved"])] == held


BookMachine.TestCase.settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS,
                                         deadline=None)
TestBook = BookMachine.TestCase
