"""A relayout by the compiled kernels (``kernels.book.lay_out_ladders``) lays every ladder out
exactly as the interpreter's loop it replaced did: the same instrument rows, levels and order
links, byte for byte (they are in the state hash), and the same ``too wide`` error.

``_reference_relayout`` is that loop as it stood (main ``bfb8749``), kept here as the oracle.
Random books (fixed bands and bands that follow the market, orders resting at random prices,
bands narrowed under them, orders that need a wider ladder) are checked at every relayout
they trigger, under both relink rules. ``test_interpreted_kernels_lay_out_the_same`` runs
the same check with ``NUMBA_DISABLE_JIT=1``, where the kernels are plain Python.
"""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from engine.kernels import codes as k
from engine.kernels.book import (
    band_high,
    ladder_grown,
    lay_out_ladders,
    relink,
    resting_price_ranges,
)
from engine.kernels.layout import (
    C_SLOTS_USED,
    INSTRUMENT_DTYPE,
    LADDER_WIDTH_MAX,
    LEVEL_DTYPE,
    ORDER_DTYPE,
)
from engine.matching import EngineInvariantError, MatchingEngine, check_book, price_max_fen

ROOT = Path(__file__).resolve().parents[2]
SPAN_MIN = 64  # the old engine's LADDER_SPAN_MIN


@njit
def queued_slots(orders, levels, out):
    """The old relayout's queues (the kernel it used): every resting order's slot into
    ``out``, level by level, each from its head to its tail; how many, or -1 if too many."""
    count = 0
    for li in range(len(levels)):
        slot = levels[li]["head"]
        while slot >= 0:
            if count == len(out):
                return -1
            out[count] = slot
            count += 1
            slot = orders[slot]["next"]
    return count


def _reference_range(row: np.void, resting: tuple[int, int] | None,
                     need: int | None) -> tuple[int, int]:
    """The old ``MatchingEngine._ladder_range``."""
    if row["band_multiple"] == 0:
        lo = int(row["band_lo"])
        hi = int(band_high(row))
        if resting is not None:
            lo, hi = min(lo, resting[0]), max(hi, resting[1])
        return lo, hi + (hi - lo) // 4
    if row["ladder_width"]:
        lo, hi = int(row["ladder_lo"]), int(row["ladder_lo"] + row["ladder_width"] - 1)
    else:
        reference = int(row["reference_price"])
        span = min(max(reference // 10, SPAN_MIN), LADDER_WIDTH_MAX // 8)
        lo, hi = max(1, reference - span), reference + span
    if resting is not None:
        lo, hi = min(lo, resting[0]), max(hi, resting[1])
    if need is not None:
        lo, hi = ladder_grown(lo, hi, need)
    return lo, hi


def _reference_layout(table: np.ndarray, live: np.ndarray,
                      need: tuple[int, int] | None) -> int:
    """The layout part of the old ``MatchingEngine._relayout``: a Python loop over the active
    instruments of ``table``, writing their ladders; returns the number of levels."""
    slots = np.flatnonzero(live["oid"] != 0)
    instruments, prices = live["instrument"][slots], live["price"][slots]
    size = max(len(table), int(instruments.max()) + 1 if len(slots) else 0)
    lowest = np.full(size, np.iinfo(np.int64).max, dtype=np.int64)
    highest = np.full(size, np.iinfo(np.int64).min, dtype=np.int64)
    np.minimum.at(lowest, instruments, prices)
    np.maximum.at(highest, instruments, prices)
    counts = np.bincount(instruments, minlength=size)
    base = 0
    for inst in np.flatnonzero(table["active"]).tolist():
        row = table[inst]
        resting = (int(lowest[inst]), int(highest[inst])) if counts[inst] else None
        lo, hi = _reference_range(row, resting, need[1] if need and need[0] == inst else None)
        width = hi - lo + 1
        if width > LADDER_WIDTH_MAX:
            raise ValueError(f"instrument {inst}: price ladder of {width} ticks is too wide")
        row["ladder_lo"], row["ladder_width"], row["level_base"] = lo, width, base
        base += 2 * width
    return base


def _reference_relayout(engine: MatchingEngine, need: tuple[int, int] | None) -> None:
    """The old ``MatchingEngine._relayout``: the layout, then the orders relinked."""
    live = engine.orders[: engine.counters[C_SLOTS_USED]]
    base = _reference_layout(engine.instruments, live, need)
    slots = np.flatnonzero(live["oid"] != 0)
    if engine.relinks_by_id():
        queued = slots[np.argsort(live["oid"][slots], kind="stable")].astype(np.int64)
    else:
        queued = np.empty(len(slots), dtype=np.int64)
        if queued_slots(engine.orders, engine.levels, queued) != len(slots):
            raise EngineInvariantError("a resting order is in no level's queue")
    levels = np.zeros(base, dtype=LEVEL_DTYPE)
    levels["head"] = -1
    levels["tail"] = -1
    engine.levels = levels
    relink(engine.orders, engine.levels, engine.instruments, queued)


class _Mismatch(AssertionError):
    pass


class _TooWide(Exception):
    """A relayout refused a ladder (both ways alike): the engine is not used after it."""


def _state(engine: MatchingEngine) -> tuple:
    return tuple((a.dtype.str, a.shape, a.tobytes())
                 for a in (engine.instruments, engine.levels, engine.orders))


class _Checked(MatchingEngine):
    """An engine whose every relayout is checked against the reference, on a copy."""

    relayouts = 0

    def _relayout(self, need: tuple[int, int] | None = None) -> None:
        expected = copy.copy(self)
        for name in ("instruments", "levels", "orders", "counters"):
            # Byte for byte: numpy copies a structured array field by field, padding not.
            array = getattr(self, name)
            setattr(expected, name, array.view(np.uint8).copy().view(array.dtype))
        try:
            _reference_relayout(expected, need)
            expected_error = None
        except ValueError as error:
            expected_error = str(error)
        try:
            super()._relayout(need)
            error = None
        except ValueError as raised:
            error = str(raised)
        if error != expected_error or _state(self) != _state(expected):
            raise _Mismatch(f"relayout {need}: {error!r} against {expected_error!r}")
        type(self).relayouts += 1
        if error is not None:
            raise _TooWide(error)


def _run(instruments: list[tuple], steps: list[tuple], by_id: bool) -> None:
    """Open the books, then rest orders, narrow fixed bands and open more books, checking
    every relayout; ``steps`` are (what, instrument index, side, price fraction, qty)."""
    engine = _Checked(relinks_by_id=lambda: by_id)
    opened: list[tuple] = []
    try:
        for step in [("open", i) for i in range(len(instruments) // 2)] + steps:
            if step[0] == "open":
                spec = instruments[step[1] % len(instruments)]
                if spec in opened:
                    continue
                _open(engine, spec)
                opened.append(spec)
            elif opened:
                _step(engine, opened[step[1] % len(opened)], step[0], *step[2:])
        engine._relayout()  # once more over every order left resting
    except _TooWide:
        return
    check_book(engine)


def _open(engine: MatchingEngine, spec: tuple) -> None:
    inst, fixed, lo, width, reference, multiple = spec
    if fixed:
        engine.add_instrument(inst, band_lo_fen=lo, band_hi_fen=lo + width)
    else:
        engine.add_instrument(inst, band_lo_fen=1, band_hi_fen=price_max_fen,
                              band_multiple=multiple, reference_price_fen=reference)


def _step(engine: MatchingEngine, spec: tuple, what: str, side: int, fraction: float,
          qty: int) -> None:
    inst, fixed, lo, width, reference, multiple = spec
    row = engine.instruments[inst]
    if what == "narrow" and fixed:  # inside the ladder: two numbers change, orders stay
        band_lo = int(row["band_lo"])
        engine.set_band(inst, band_lo, band_lo + int(width * fraction))
        return
    if what in ("cancel", "amend"):  # a resting order leaves, shrinks, moves or goes back
        oids = np.sort(engine.orders["oid"][engine.orders["oid"] != 0])
        if len(oids):
            order = engine.order(int(oids[int(fraction * (len(oids) - 1))]))
            if what == "cancel":
                engine.cancel(order["oid"], order["account"])
            else:
                engine.amend(order["oid"], order["account"], order["price"] + side, qty)
        return
    # Buys low and sells high, mostly: enough of them rest, some trade.
    fraction = 0.6 * fraction + (0.4 if side == k.SIDE_SELL else 0)
    if fixed:
        price = int(row["band_lo"]) + int((int(band_high(row)) - int(row["band_lo"])) * fraction)
    else:  # from a tenth of the reference to the band's top: some need a wider ladder
        price = max(1, int(reference * (0.1 + 5 * fraction)))
    engine.new_order(inst, 2 + side, side, qty, price=price)


_instrument = st.tuples(
    st.integers(1, 40),  # id: the table grows past 16 and 32
    st.booleans(),  # a fixed band, or one that follows the market
    st.integers(1, 5_000),  # band_lo
    # Band width, now and then near the widest ladder (a rare case: a ladder of millions of
    # levels is slow to copy and compare).
    st.integers(0, 5_000) | st.integers(0, 99).map(
        lambda i: i * 50 if i else LADDER_WIDTH_MAX * 4 // 5 - 8_000),
    # Reference price, now and then past where the first ladder's span stops growing.
    st.integers(1, 2_000) | st.integers(0, 99).map(lambda i: 10_000 + i * 500 if i
                                                   else 6_000_000),
    st.integers(1, 6),  # band multiple
)
_step_strategy = st.one_of(
    st.tuples(st.just("open"), st.integers(0, 7)),
    st.tuples(st.sampled_from(["order", "order", "order", "narrow", "cancel", "amend"]),
              st.integers(0, 7),
              st.sampled_from([k.SIDE_BUY, k.SIDE_SELL]),
              # A few fractions of the band often, so orders meet at a price and at its edges.
              st.sampled_from([0.0, 0.5, 1.0]) | st.floats(0, 1), st.integers(1, 5)),
)


@settings(max_examples=150, deadline=None)
@given(instruments=st.lists(_instrument, min_size=1, max_size=8,
                            unique_by=lambda spec: spec[0]),
       steps=st.lists(_step_strategy, max_size=60), by_id=st.booleans())
def test_every_relayout_lays_out_as_the_interpreter_loop_did(instruments, steps, by_id):
    _run(instruments, steps, by_id)


_row = st.fixed_dictionaries({
    "active": st.integers(0, 1),
    "band_multiple": st.integers(0, 1) | st.integers(0, 6),
    "band_lo": st.integers(1, 5_000),
    "band_hi": st.integers(1, 12_000) | st.just(LADDER_WIDTH_MAX),  # that one is too wide
    "ladder_lo": st.integers(1, 9_000),
    "ladder_width": st.integers(0, 1) | st.integers(0, 9_000),
    "reference_price": st.integers(1, 6_000) | st.just(6_000_000),
    "last_price": st.integers(0, 1) | st.integers(0, 6_000),
})
_price = st.integers(1, 30_000) | st.integers(9_995, 10_005)  # some at neighbouring prices


@settings(max_examples=300, deadline=None)
@given(rows=st.lists(_row, min_size=1, max_size=12),
       orders=st.lists(st.tuples(st.booleans(), st.integers(0, 11), _price), max_size=40),
       need=st.none() | st.tuples(st.integers(0, 11), _price))
def test_the_ladder_kernels_lay_out_any_rows_as_the_loop_did(rows, orders, need):
    """Any instrument rows (a market-following ladder with orders outside it too), orders
    resting or not (a free slot keeps its last price) on any of them: the same ladders, the
    same number of levels or the same refusal."""
    table = np.zeros(len(rows), dtype=INSTRUMENT_DTYPE)
    for i, row in enumerate(rows):
        for name, value in row.items():
            table[i][name] = value
    live = np.zeros(len(orders), dtype=ORDER_DTYPE)
    for i, (rests, inst, price) in enumerate(orders):
        live[i]["oid"], live[i]["instrument"], live[i]["price"] = rests * (i + 1), inst, price
    live["instrument"] %= len(rows)
    expected = table.view(np.uint8).copy().view(table.dtype)
    try:
        expected_levels = _reference_layout(expected, live, need)
    except ValueError:
        expected_levels = -1
    lowest = np.full(len(rows), np.iinfo(np.int64).max, dtype=np.int64)
    highest = np.full(len(rows), np.iinfo(np.int64).min, dtype=np.int64)
    assert resting_price_ranges(live, len(live), lowest, highest) == np.count_nonzero(
        live["oid"])
    for inst in range(len(rows)):
        prices = live["price"][(live["oid"] != 0) & (live["instrument"] == inst)].tolist()
        assert (lowest[inst], highest[inst]) == ((min(prices), max(prices)) if prices else (
            np.iinfo(np.int64).max, np.iinfo(np.int64).min))
    levels, _, _ = lay_out_ladders(table, lowest, highest, *(need or (0, 0)))
    assert (levels, table.tobytes()) == (expected_levels, expected.tobytes())


def test_a_too_wide_fixed_band_is_refused_as_before():
    """The widest fixed band whose ladder (with its quarter of headroom) fits, and one more."""
    widest = next(w for w in range(LADDER_WIDTH_MAX, 0, -1)
                  if w + w // 4 + 1 <= LADDER_WIDTH_MAX)
    engine = _Checked()
    engine.add_instrument(3, band_lo_fen=1, band_hi_fen=1 + widest)
    assert int(engine.instruments[3]["ladder_width"]) == widest + widest // 4 + 1
    try:
        engine.add_instrument(5, band_lo_fen=10, band_hi_fen=10 + widest + 1)
    except _TooWide as error:
        width = widest + 1 + (widest + 1) // 4 + 1
        assert width > LADDER_WIDTH_MAX
        assert str(error) == f"instrument 5: price ladder of {width} ticks is too wide"
    else:
        raise AssertionError("the too wide band was laid out")


def _seeded_runs(count: int) -> int:
    """``count`` random runs of ``_run`` from fixed seeds; how many relayouts they checked."""
    rng = random.Random(14)
    for _ in range(count):
        ids = rng.sample(range(1, 41), rng.randint(1, 6))
        instruments = [(i, rng.random() < 0.5, rng.randint(1, 5_000), rng.randint(0, 5_000),
                        rng.choice([rng.randint(1, 2_000), rng.randint(10_000, 60_000)]),
                        rng.randint(1, 6)) for i in ids]
        steps = [("open", rng.randint(0, 7)) if rng.random() < 0.2 else
                 (rng.choice(["order", "order", "order", "narrow", "cancel", "amend"]),
                  rng.randint(0, 7),
                  rng.choice([k.SIDE_BUY, k.SIDE_SELL]),
                  rng.choice([0.0, 0.5, 1.0, rng.random()]), rng.randint(1, 5))
                 for _ in range(rng.randint(0, 30))]
        _run(instruments, steps, rng.random() < 0.5)
    return _Checked.relayouts


def test_interpreted_kernels_lay_out_the_same():
    """With ``NUMBA_DISABLE_JIT=1`` the kernels run as plain Python: the same layouts."""
    script = ("from tests.engine.test_relayout_property import _seeded_runs; "
              "print(_seeded_runs(25))")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    assert int(out.stdout.split()[-1]) > 50  # it did check relayouts
