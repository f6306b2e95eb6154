"""A cancel, in a run, of an order that an earlier command of the same run evicts from the
kept finished orders: one entry at a time it is unknown by then (404), and a run must say
the same (found by the lifecycle property test at CROWDEX_SLOW=1: the run said 409)."""

from __future__ import annotations

from unittest import mock

import engine.markets
from engine import commands as c
from engine import markets_commands as mc
from tests.engine.test_markets_runs import PRICE, START_US, _applied, _venue


def _ioc(trader: int, instrument: int) -> c.Entry:
    """An IOC buy that finds nothing to buy: cancelled at once, so a finished order."""
    return c.Entry(START_US, trader, mc.PlaceOrder(instrument, "buy", "limit", PRICE - 50, 1,
                                                   "ioc"))


def _rest(trader: int, instrument: int) -> c.Entry:
    return c.Entry(START_US, trader, mc.PlaceOrder(instrument, "buy", "limit", PRICE - 50, 1))


def _both_ways(build) -> tuple[list, list]:
    """Replies of the entries ``build(traders, instruments)`` one at a time and as one run,
    each on a fresh venue, with two finished orders kept."""
    results = []
    for cuts in (None, []):
        machine, setup, traders, instruments = _venue()
        for i, entry in enumerate(setup):
            machine.apply(i + 1, entry)
        entries = build(traders, instruments)
        with mock.patch.object(engine.markets, "FINISHED_ORDERS_KEPT", 2):
            results.append(_applied(machine, entries[:1], None)[0]
                           + _applied(machine, entries[1:], cuts)[0])
    return results[0], results[1]


def test_a_cancel_of_an_order_the_run_cancels_then_evicts_is_404():
    def build(traders, instruments):
        trader, book = traders[0], instruments[0]
        return [_rest(trader, book), c.Entry(START_US, trader, mc.CancelOrder(1)),
                _ioc(trader, book), _ioc(trader, book),
                c.Entry(START_US, trader, mc.CancelOrder(1))]

    one, run = _both_ways(build)
    assert one[-1].status == 404
    assert run == one


def test_a_cancel_of_a_finished_order_the_run_evicts_first_is_404():
    def build(traders, instruments):
        trader, book = traders[0], instruments[0]
        # Order 1 finishes (IOC) before the run; the run finishes two more, evicting it.
        return [_ioc(trader, book), _ioc(trader, book), _ioc(trader, book),
                c.Entry(START_US, trader, mc.CancelOrder(1))]

    one, run = _both_ways(build)
    assert one[-1].status == 404
    assert run == one


def test_a_cancel_of_a_finished_order_still_kept_is_409():
    def build(traders, instruments):
        trader, book = traders[0], instruments[0]
        return [_ioc(trader, book), _ioc(trader, book),
                c.Entry(START_US, trader, mc.CancelOrder(1))]

    one, run = _both_ways(build)
    assert one[-1].status == 409
    assert run == one
