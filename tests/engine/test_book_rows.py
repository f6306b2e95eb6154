"""The compiled book-update rows (``engine.kernels.bookrows``) against the plain-Python and
numpy builds of the same updates (``Markets._book_updates_small``, ``_book_updates_numpy``):
random order flows, applied in runs, publish the same book updates whichever builds them."""

from __future__ import annotations

from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.markets
from engine.machine import StateMachine
from tests.engine.test_markets_runs import EXAMPLES, PRICE, _applied, _entry, _venue, flows


def _published(entries_of, cuts: list[int], small: int, compiled: bool) -> list:
    """The updates a fresh venue publishes for the flow, its book updates built in Python
    (``small`` above every call's rows), by the kernel, or (``compiled`` False) in numpy."""
    machine, setup, traders, instruments = _venue()
    for i, entry in enumerate(setup):
        machine.apply(i + 1, entry)
    machine.outbox.clear()
    entries = entries_of(traders, instruments)
    with (mock.patch.object(engine.markets, "BOOK_ROWS_SMALL", small),
          mock.patch.object(engine.markets, "book_rows",
                            engine.markets.book_rows if compiled else lambda *args: -1)):
        return _applied(machine, entries, cuts)[1]


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows, cut_seed=st.lists(st.integers(0, 120), max_size=4))
def test_compiled_book_rows_equal_python_and_numpy(flow, cut_seed):
    def entries_of(traders, instruments):
        return [_entry(op, traders, instruments) for op in flow]

    cuts = sorted({x for x in cut_seed if 0 < x < len(flow)})
    python = _published(entries_of, cuts, 1 << 30, True)
    compiled = _published(entries_of, cuts, 0, True)
    numpy_built = _published(entries_of, cuts, 0, False)
    assert compiled == python
    assert numpy_built == python


def test_a_call_of_many_level_changes_publishes_each_command_level_once():
    """One run of many orders at a few prices on both sides, crossing: the compiled rows
    give each command's net change per level, with the level's quantity as of it."""
    def entries_of(traders, instruments):
        ops = []
        for i in range(40):
            side = "buy" if i % 2 else "sell"
            ops.append(("order", i % len(traders), 0, side, "limit", PRICE + i % 3, 1 + i % 4,
                        "gtc", False, "cancel_newest", None, None))
        return [_entry(op, traders, instruments) for op in ops]

    python = _published(entries_of, [], 1 << 30, True)
    compiled = _published(entries_of, [], 0, True)
    assert [u for u in python if u[0].startswith("book:")]
    assert compiled == python


def test_a_level_off_the_ladder_falls_back_to_numpy():
    """A price outside its instrument's ladder has no level row: the kernel says so (-1)."""
    machine = StateMachine()
    markets = machine.component("markets")
    engine_ = markets.engine
    engine_.add_instrument(1, band_lo_fen=1, band_hi_fen=100)
    row = engine_.instruments[1]
    levels = np.zeros(1, dtype=engine.lifecycle.LEVEL_ROW_DTYPE)
    levels[0] = (0, 1, 0, int(row["ladder_lo"] + row["ladder_width"]), 5)
    books = np.zeros(1, dtype=engine.lifecycle.BOOK_ROW_DTYPE)
    out = np.zeros((1, 3), dtype=np.int64)
    bounds = np.zeros((1, 2), dtype=np.int64)
    assert engine.markets.book_rows(levels, engine_.instruments, engine_.levels, books, out,
                                    bounds) == -1
