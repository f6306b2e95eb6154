"""The lean fills path (``process_fills``) is the full path with less written, never different.

The same random batches go through one engine with every event on and another writing lean
fill records only: the same result codes, the same trades in the same order, the same state
afterwards (every array, every counter but the per-batch scratch).
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels import codes as k
from engine.kernels.layout import C_EVENTS, C_PROCESSED, COMMAND_DTYPE
from engine.matching import MatchingEngine, check_book

SLOW = os.environ.get("CROWDEX_SLOW") == "1"
BOOK, AUCTION, MISSING = 1, 2, 9
BAND = (5, 40)

_new = st.tuples(
    st.just(k.OP_NEW), st.sampled_from([BOOK, BOOK, BOOK, AUCTION, MISSING]),
    st.integers(2, 4),  # account
    st.integers(0, 1),  # side
    st.integers(BAND[0] - 1, BAND[1] + 1),  # price
    st.integers(0, 30),  # qty (0 is refused)
    st.sampled_from([k.TYPE_LIMIT, k.TYPE_LIMIT, k.TYPE_MARKET]),
    st.sampled_from([k.TIF_GTC, k.TIF_GTC, k.TIF_IOC, k.TIF_FOK]),
    st.sampled_from([0, 0, 0, 1]),  # post-only
    st.sampled_from([k.STP_NONE, k.STP_CANCEL_NEWEST, k.STP_CANCEL_OLDEST,
                     k.STP_CANCEL_BOTH, k.STP_DECREMENT]),
    st.just(0),
)
_cancel = st.tuples(st.just(k.OP_CANCEL), st.just(0), st.sampled_from([0, 2, 3]),
                    st.just(0), st.just(0), st.just(0), st.just(0), st.just(0), st.just(0),
                    st.just(0), st.integers(0, 60))
_uncross = st.tuples(st.just(k.OP_UNCROSS), st.sampled_from([BOOK, AUCTION]), *[st.just(0)] * 9)
_batch = st.lists(st.one_of(_new, _new, _new, _cancel, _uncross), min_size=1, max_size=40)


def _commands(rows: list[tuple]) -> np.ndarray:
    cmds = np.zeros(len(rows), dtype=COMMAND_DTYPE)
    for i, (op, inst, account, side, price, qty, type_, tif, post_only, stp, oid) in enumerate(
            rows):
        cmds[i] = (op, side, type_, tif, post_only, stp, inst, account, price, qty, oid, -1)
    return cmds


def _engine() -> MatchingEngine:
    engine = MatchingEngine(order_capacity=16)
    engine.add_instrument(BOOK, band_lo_fen=BAND[0], band_hi_fen=BAND[1])
    engine.add_instrument(AUCTION, band_lo_fen=BAND[0], band_hi_fen=BAND[1], mode="auction",
                          reference_price_fen=20)
    return engine


def _state(engine: MatchingEngine) -> dict[str, list]:
    arrays = dict(engine.arrays())
    counters = arrays["counters"].copy()
    counters[C_EVENTS] = counters[C_PROCESSED] = 0
    arrays["counters"] = counters
    return {name: array.tolist() for name, array in arrays.items()}


@settings(max_examples=1000 if SLOW else 200, deadline=None)
@given(st.lists(_batch, min_size=1, max_size=6))
def test_lean_fills_equal_the_full_path(batches):
    full, lean = _engine(), _engine()
    for rows in batches:
        cmds = _commands(rows)
        expected = full.process(cmds.copy())
        got = lean.process_fills(cmds.copy())
        assert got.results.tolist() == expected.results.tolist()
        trades = expected.events[expected.events["kind"] == k.EV_FILL]
        assert got.fills.dtype.names == ("maker_oid", "oid", "price", "qty")
        for name in got.fills.dtype.names:
            assert got.fills[name].tolist() == trades[name].tolist()
        assert _state(lean) == _state(full)
        check_book(lean)


def test_reserve_changes_no_state():
    engine = _engine()
    engine.process_fills(_commands([(k.OP_NEW, BOOK, 2, 0, 10, 5, 0, 0, 0, 0, 0)]))
    before = _state(engine)
    engine.reserve(100_000)
    assert _state(engine) == before
    assert len(engine.orders) >= 100_001 and len(engine.oid_index) >= 100_002


def test_lean_batches_are_sized_for_their_worst_case():
    """Every resting order filled by one sweep: live orders + 2n fills must fit, unchecked."""
    engine = _engine()
    rests = [(k.OP_NEW, BOOK, 2, 1, p, 1, 0, 0, 0, 0, 0) for p in range(BAND[0], BAND[1] + 1)]
    engine.process_fills(_commands(rests * 30))
    sweep = [(k.OP_NEW, BOOK, 3, 0, 0, 10_000, k.TYPE_MARKET, 0, 0, 0, 0)]
    got = engine.process_fills(_commands(sweep))
    assert len(got.fills) == len(rests) * 30
    assert engine.depth(BOOK, k.SIDE_SELL) == []
