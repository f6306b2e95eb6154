"""Price ladders of instruments whose band follows the market: small at first, grown on need.

A band of 1 fen to 5x the price would make a dense ladder as long as the price is high (a
10,000-yuan note: 5,000,000 ticks a side). The ladder starts around the reference price and
grows only when an order needs it; the batch stops there and resumes after the relayout, so a
batch gives what its commands one at a time give.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels import codes as k
from engine.kernels.book import ladder_grown
from engine.kernels.layout import C_EVENTS, C_PROCESSED, EVENT_DTYPE
from engine.kernels.pipeline import EVENTS_PER_COMMAND_FIXED
from engine.matching import MatchingEngine, check_book, command, ladder_width_max, price_max_fen
from tests.engine.test_book_property import queues

REFERENCE = 500_000  # 5,000 yuan a unit


def _engine() -> MatchingEngine:
    engine = MatchingEngine()
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=price_max_fen, band_multiple=5,
                          reference_price_fen=REFERENCE)
    engine.add_instrument(2, band_lo_fen=1, band_hi_fen=100)  # a fixed band beside it
    return engine


def _orders() -> np.ndarray:
    rows = [  # (instrument, account, side, price, qty)
        (1, 2, k.SIDE_SELL, REFERENCE + 5, 3),
        (1, 3, k.SIDE_BUY, 10, 2),  # far below the first ladder: it grows down
        (2, 3, k.SIDE_BUY, 50, 1),
        (1, 3, k.SIDE_BUY, REFERENCE + 5, 1),  # trades at the reference + 5
        (1, 2, k.SIDE_SELL, 2_000_000, 1),  # inside 5x, far above the ladder: it grows up
        (1, 4, k.SIDE_BUY, 5 * (REFERENCE + 5) + 1, 1),  # just beyond the band: refused
        (1, 4, k.SIDE_BUY, 5 * (REFERENCE + 5), 2),  # the band's top: takes the best 2 units
        (1, 2, k.SIDE_SELL, 9, 5),  # sweeps the bid at 10, rests the rest at 9
    ]
    return np.concatenate([command(k.OP_NEW, instrument=i, account=a, side=s, price=p, qty=q,
                                   stp=k.STP_NONE) for i, a, s, p, q in rows])


def _state(engine: MatchingEngine) -> dict:
    """Every array's bytes (a ladder can hold millions of levels: no tolist)."""
    arrays = dict(engine.arrays())
    counters = arrays["counters"].copy()
    counters[C_EVENTS] = counters[C_PROCESSED] = 0
    arrays["counters"] = counters
    return {name: (a.dtype.str, a.shape, a.tobytes()) for name, a in arrays.items()}


def test_a_high_priced_instrument_starts_with_a_small_ladder():
    row = _engine().instruments[1]
    assert int(row["ladder_width"]) <= REFERENCE // 5 + 1
    assert row["ladder_lo"] <= REFERENCE <= row["ladder_lo"] + row["ladder_width"] - 1


def test_the_ladder_grows_on_need_and_a_batch_equals_its_commands_one_by_one():
    cmds = _orders()
    together = _engine()
    result = together.process(cmds.copy())
    one_by_one = _engine()
    codes, fills = [], []
    for i in range(len(cmds)):
        single = one_by_one.process(cmds[i:i + 1].copy())
        codes += single.results.tolist()
        fills += [(int(e["price"]), int(e["qty"])) for e in single.events
                  if e["kind"] == k.EV_FILL]
    assert result.results.tolist() == codes
    assert codes == [k.OK] * 5 + [k.PRICE_OUT_OF_BAND] + [k.OK] * 2
    assert fills == [(REFERENCE + 5, 1), (REFERENCE + 5, 2), (10, 2)]
    assert [(int(e["price"]), int(e["qty"])) for e in result.events
            if e["kind"] == k.EV_FILL] == fills
    assert _state(together) == _state(one_by_one)
    check_book(together)
    row = together.instruments[1]
    assert row["ladder_lo"] <= 9 and row["ladder_lo"] + row["ladder_width"] > 2_000_000
    assert together.depth(1, k.SIDE_SELL) == [(9, 3), (2_000_000, 1)]
    assert together.depth(2, k.SIDE_BUY) == [(50, 1)]


def test_events_written_before_a_batch_runs_out_of_room_are_kept():
    """A batch that stops for event room resumes in a grown buffer holding what it wrote."""
    engine = MatchingEngine()
    engine.add_instrument(3, band_lo_fen=1, band_hi_fen=100)
    rests = np.concatenate([command(k.OP_NEW, instrument=3, account=2, side=k.SIDE_SELL,
                                    price=50, qty=1) for _ in range(600)])
    engine.process(rests)
    # Room for the first command's worst case (every resting order touched twice), not more.
    room = 2 * 600 + EVENTS_PER_COMMAND_FIXED
    engine._events = np.zeros(room, dtype=EVENT_DTYPE)
    batch = np.concatenate([
        command(k.OP_NEW, instrument=3, account=3, side=k.SIDE_BUY, price=10, qty=1),
        command(k.OP_NEW, instrument=3, account=4, side=k.SIDE_BUY, price=0, qty=600,
                type=k.TYPE_MARKET),
    ])
    result = engine.process(batch)
    assert len(engine._events) > room  # it did run out of room and grow
    first = result.events[result.events["cmd"] == 0]
    assert first["kind"].tolist() == [k.EV_ACCEPTED, k.EV_RESTED]
    assert int((result.events["kind"] == k.EV_FILL).sum()) == 600
    check_book(engine)


HIGH = 5_000_000  # 50,000 yuan a note: 5x is 25,000,000 fen, beyond any one dense ladder


def _high_engine() -> MatchingEngine:
    engine = MatchingEngine()
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=price_max_fen, band_multiple=5,
                          reference_price_fen=HIGH)
    return engine


def _new(account: int, side: int, price: int, qty: int = 1) -> np.ndarray:
    return command(k.OP_NEW, instrument=1, account=account, side=side, price=price, qty=qty,
                   stp=k.STP_NONE)


def test_a_high_priced_instrument_trades_at_its_price_and_refuses_only_what_is_too_far():
    """Prices are in fen with a 1-fen tick, so a 50,000-yuan note's band (1 fen to 5x) spans
    25M ticks: the ladder covers the prices in use, grows on need up to ladder_width_max, and
    an order that would stretch it further is refused price_too_far (in the band, but too far
    from the book), not price_out_of_band."""
    far_below = 1_000
    far_above = 5 * HIGH  # the band's very top
    near_above = HIGH + HIGH // 2
    cmds = np.concatenate([
        _new(2, k.SIDE_SELL, HIGH, 2),  # at the offering price: rests
        _new(3, k.SIDE_BUY, far_below),  # 1 fen... 10 yuan for a 50,000-yuan note
        _new(3, k.SIDE_BUY, far_above),  # a buy at 5x: it would cross, but no ladder reaches
        _new(3, k.SIDE_BUY, HIGH),  # trades at the offering price
        _new(2, k.SIDE_SELL, near_above),  # 1.5x: the ladder grows up to it
        _new(3, k.SIDE_BUY, 5 * HIGH + 1),  # beyond the band: that refusal is unchanged
    ])
    together = _high_engine()
    result = together.process(cmds.copy())
    one_by_one = _high_engine()
    codes = []
    for i in range(len(cmds)):
        codes += one_by_one.process(cmds[i:i + 1].copy()).results.tolist()
    assert codes == result.results.tolist() == [
        k.OK, k.PRICE_TOO_FAR, k.PRICE_TOO_FAR, k.OK, k.OK, k.PRICE_OUT_OF_BAND]
    assert _state(together) == _state(one_by_one)
    check_book(together)
    fills = [(int(e["price"]), int(e["qty"])) for e in result.events if e["kind"] == k.EV_FILL]
    assert fills == [(HIGH, 1)]
    assert together.depth(1, k.SIDE_SELL) == [(HIGH, 1), (near_above, 1)]
    row = together.instruments[1]
    assert int(row["ladder_width"]) <= ladder_width_max
    refused = [e for e in result.events if e["kind"] == k.EV_REJECTED]
    assert [int(e["code"]) for e in refused] == [k.PRICE_TOO_FAR] * 2 + [k.PRICE_OUT_OF_BAND]


def test_the_kernel_refuses_exactly_the_orders_whose_grown_ladder_would_be_too_wide():
    """The boundary: the last price the ladder can still grow to is accepted, the next is not."""
    probe = _high_engine()
    row = probe.instruments[1]
    lo, hi = int(row["ladder_lo"]), int(row["ladder_lo"] + row["ladder_width"] - 1)
    top = hi + 1  # search for the highest buy price whose grown ladder still fits
    step = 1 << 23
    while step:
        if ladder_grown(lo, hi, top + step)[1] - lo + 1 <= ladder_width_max:
            top += step
        step //= 2
    assert ladder_grown(lo, hi, top)[1] - lo + 1 <= ladder_width_max
    assert ladder_grown(lo, hi, top + 1)[1] - lo + 1 > ladder_width_max
    for price, code in ((top, k.OK), (top + 1, k.PRICE_TOO_FAR)):
        engine = _high_engine()
        assert engine.process(_new(3, k.SIDE_BUY, price)).results.tolist() == [code]
        check_book(engine)


def test_a_new_book_lays_out_every_ladder_around_its_own_resting_orders():
    """Opening a book lays every instrument's ladder out again: each covers its band and its
    own resting orders (found among all the resting ones), which keep their levels and their
    order of arrival, whatever slots they took and whatever books opened before and after."""
    engine = MatchingEngine()
    for instrument in (4, 2, 7):
        engine.add_instrument(instrument, band_lo_fen=1, band_hi_fen=1000)
    rows = [(2, 3, k.SIDE_BUY, 900, 2), (7, 4, k.SIDE_SELL, 20, 1), (2, 5, k.SIDE_BUY, 900, 3),
            (4, 3, k.SIDE_SELL, 990, 4), (2, 4, k.SIDE_SELL, 950, 1), (7, 3, k.SIDE_BUY, 5, 6),
            (4, 5, k.SIDE_BUY, 300, 2)]
    engine.process(np.concatenate([
        command(k.OP_NEW, instrument=i, account=a, side=s, price=p, qty=q, stp=k.STP_NONE)
        for i, a, s, p, q in rows]))
    # Order 2 leaves its slot to order 8, which comes last to the bid at 900.
    engine.process(np.concatenate([
        command(k.OP_CANCEL, account=4, oid=2),
        command(k.OP_NEW, instrument=2, account=6, side=k.SIDE_BUY, price=900, qty=4,
                stp=k.STP_NONE)]))
    assert engine.oid_index[8] < engine.oid_index[3]
    # Narrower bands, inside the ladders, which stay as they are.
    for instrument, lo, hi in ((2, 1, 100), (4, 500, 1000), (7, 1, 100)):
        engine.set_band(instrument, lo, hi)
    engine.add_instrument(3, band_lo_fen=1, band_hi_fen=50)  # a new book: every ladder anew
    check_book(engine)
    assert engine.depth(2, k.SIDE_BUY) == [(900, 9)]
    assert engine.depth(2, k.SIDE_SELL) == [(950, 1)]
    assert engine.depth(4, k.SIDE_SELL) == [(990, 4)]
    assert engine.depth(4, k.SIDE_BUY) == [(300, 2)]
    assert engine.depth(7, k.SIDE_BUY) == [(5, 6)]
    # From the band's foot or the lowest resting order to its top or the highest resting
    # order, and a quarter of that more.
    for instrument, lo, hi in ((2, 1, 950), (4, 300, 1000), (7, 1, 100), (3, 1, 50)):
        row = engine.instruments[instrument]
        assert (row["ladder_lo"], row["ladder_width"]) == (lo, hi + (hi - lo) // 4 - lo + 1)
    # The bid at 900 fills first come first: orders 1 and 3, then 8 (in an earlier slot).
    engine.set_band(2, 1, 1000)
    engine.process(command(k.OP_NEW, instrument=2, account=7, side=k.SIDE_SELL, price=900,
                           qty=5, stp=k.STP_NONE))
    assert [int(engine.oid_index[oid]) >= 0 for oid in (1, 3, 8)] == [False, False, True]
    assert engine.depth(2, k.SIDE_BUY) == [(900, 4)]
    check_book(engine)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.tuples(st.booleans(), st.sampled_from([k.SIDE_BUY, k.SIDE_SELL]),
                                st.integers(47, 51), st.integers(1, 4), st.integers(1, 25)),
                      min_size=1, max_size=40),
       by_id=st.booleans())
def test_a_relayout_keeps_every_queue(steps, by_id):
    """Orders of two accounts around a few prices, amends that keep or lose their place: a
    relayout (a new book) leaves every level's queue as it was. Relinked by order id (rules 4
    and older), an amended order went back ahead of those that came before its amend."""
    engine = MatchingEngine(relinks_by_id=lambda: by_id)
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=100)
    amended_back = False
    for is_amend, side, price, qty, oid in steps:
        if not is_amend:
            engine.new_order(1, 2 + side, side, qty, price=price)
            continue
        order = engine.order(oid)
        if order is not None:
            engine.amend(oid, order["account"], price, qty)
            amended_back |= price != order["price"] or qty > order["qty"]
    before = [queues(engine, 1, side) for side in (k.SIDE_BUY, k.SIDE_SELL)]
    engine.add_instrument(2, band_lo_fen=1, band_hi_fen=100)
    after = [queues(engine, 1, side) for side in (k.SIDE_BUY, k.SIDE_SELL)]
    check_book(engine)
    if not by_id:
        assert after == before
    else:  # the old relink: each level in order id order
        assert after == [{price: sorted(oids) for price, oids in side.items()} for side in before]
        if not amended_back:
            assert after == before  # never amended back: arrival order is order id order
