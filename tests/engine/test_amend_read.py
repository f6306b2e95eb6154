"""The compiled read of an amend's order (``engine.kernels.amends.amend_read``) against its
plain-Python model (``engine.reference.markets.untouched``, ``Markets._untouched`` as it was):
the same verdict on any order and any queue, and the order's fields as its record holds them.
The runs that use it are checked end to end against one entry at a time in
``test_markets_runs.py`` (amends of resting orders in a run)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
)
from engine.kernels.layout import COMMAND_DTYPE
from engine.lifecycle import RECORD_DTYPE
from engine.matching import MatchingEngine, command
from engine.reference.markets import covered, untouched
from tests.engine import test_markets_runs as runs

EXAMPLES = 5000 if os.environ.get("CROWDEX_SLOW") else 1000
ORDERS = 12  # records 0 .. ORDERS - 1; ids from 1 are given below next_oid
PRICE = 100

records_st = st.lists(
    st.tuples(st.integers(1, 3),  # account
              st.integers(1, 2),  # instrument
              st.sampled_from([k.SIDE_BUY, k.SIDE_SELL]),
              st.integers(PRICE - 1, PRICE + 1),  # price
              st.sampled_from([kf.OPEN, kf.OPEN, kf.PARTIALLY_FILLED, kf.FILLED,
                               kf.CANCELLED]),
              st.sampled_from([True, True, True, False]),  # kept
              st.integers(0, 5), st.integers(0, 5)),  # filled, cancelled
    min_size=ORDERS, max_size=ORDERS)
rows_st = st.lists(
    st.tuples(st.sampled_from([k.OP_NEW] * 4 + [k.OP_CANCEL, k.OP_AMEND, k.OP_AMEND, k.OP_UNCROSS]),
              st.sampled_from([k.SIDE_BUY, k.SIDE_SELL]),
              st.sampled_from([k.TYPE_LIMIT, k.TYPE_LIMIT, k.TYPE_MARKET]),
              st.sampled_from([1, 1, 2]),  # instrument
              st.integers(PRICE - 2, PRICE + 2),
              st.integers(1, ORDERS + 3)),  # oid: a queued cancel may name an id not given
    max_size=12)


def _records(drawn: list[tuple]) -> np.ndarray:
    records = np.zeros(ORDERS + 4, dtype=RECORD_DTYPE)  # room past next_oid, as reserved
    for oid, (account, instrument, side, price, status, kept, filled, cancelled) in enumerate(
            drawn):
        records[oid] = 0
        row = records[oid:oid + 1]
        row["account"], row["instrument"], row["side"], row["price"] = (account, instrument,
                                                                         side, price)
        row["status"], row["kept"] = status, kept
        row["quantity"], row["filled"], row["cancelled"] = 10, filled, cancelled
        row["post_only"] = oid % 2
    return records


def _commands(drawn: list[tuple], next_oid: int) -> np.ndarray:
    """Rows as ``Markets`` queues them: a new order names no id, a cancel no instrument, an
    amend a given order (its side is read from its record), an uncross only its instrument."""
    commands = np.zeros(len(drawn) + 2, dtype=COMMAND_DTYPE)  # rows past the queue's end
    commands["instrument"][len(drawn):] = 1  # ... which the kernel must not read
    commands["oid"][len(drawn):] = 1
    for i, (op, side, kind, instrument, price, oid) in enumerate(drawn):
        row = commands[i:i + 1]
        row["op"] = op
        if op == k.OP_NEW:
            row["side"], row["type"], row["instrument"] = side, kind, instrument
            row["price"] = 0 if kind == k.TYPE_MARKET else price  # a market order has none
        elif op == k.OP_CANCEL:
            row["oid"] = oid  # may be an id not given yet
        elif op == k.OP_AMEND:
            row["instrument"], row["price"] = instrument, price
            row["oid"] = (oid - 1) % (next_oid - 1) + 1
        else:
            row["instrument"] = instrument
    return commands


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn_records=records_st, drawn_rows=rows_st,
       next_oid=st.one_of(st.just(ORDERS), st.integers(2, ORDERS)),
       order_id=st.one_of(st.integers(1, ORDERS - 1), st.integers(-1, ORDERS + 2)))
def test_amend_read_equals_the_python_model(drawn_records, drawn_rows, next_oid, order_id):
    records = _records(drawn_records)
    commands = _commands(drawn_rows, next_oid)
    queued = commands[:len(drawn_rows)]
    out = np.full(len(AMEND_FIELDS), -7, dtype=np.int64)
    verdict = amend_read(records, next_oid, order_id, commands, len(drawn_rows), out)
    assert verdict == untouched(records, next_oid, order_id, queued)
    if verdict != AMEND_UNKNOWN:
        assert tuple(out.tolist()) == records[list(AMEND_FIELDS)][order_id].tolist()
    # With nothing queued: known orders are read, and only a finished one may change.
    alone = amend_read(records, next_oid, order_id, commands, 0, out)
    assert alone == untouched(records, next_oid, order_id, queued[:0])


B, S, M, L = k.SIDE_BUY, k.SIDE_SELL, k.TYPE_MARKET, k.TYPE_LIMIT


C, U, N = AMEND_IF_COVERED, AMEND_MAY_CHANGE, AMEND_UNCHANGED


@pytest.mark.parametrize("side, row, verdict", [
    # (the order's side; a queued row (op, side, type, price) on its instrument; verdict: an
    # order of the other side that may trade with it leaves it to the orders ahead)
    (B, (k.OP_NEW, S, L, PRICE), C),  # a sell at the bid's price trades with it
    (B, (k.OP_NEW, S, L, PRICE + 1), N),
    (S, (k.OP_NEW, B, L, PRICE), C),  # a buy at the ask's price
    (S, (k.OP_NEW, B, L, PRICE - 1), N),
    (S, (k.OP_NEW, B, M, 0), C),  # a market order has no price and crosses
    (B, (k.OP_NEW, B, L, PRICE + 5), N),  # its own side never trades with it
    (B, (k.OP_AMEND, 0, L, PRICE), C),  # an amend of a sell (record 2) onto its price
    (S, (k.OP_AMEND, 0, L, PRICE), N),  # an amend of a sell: its own side
    (B, (k.OP_UNCROSS, 0, 0, 0), U),
])
def test_amend_read_at_the_boundaries(side, row, verdict):
    """The edges hypothesis may miss: prices equal to the order's, a market order, an
    amend's side read from its order's record."""
    drawn = [(1, 1, side, PRICE, kf.OPEN, True, 0, 0)] * ORDERS
    drawn[2] = (2, 1, S, PRICE - 3, kf.OPEN, True, 0, 0)  # the order an amend row names
    records = _records(drawn)
    commands = np.zeros(1, dtype=COMMAND_DTYPE)
    commands[0:1]["op"], commands[0:1]["side"], commands[0:1]["type"] = row[:3]
    commands[0:1]["price"], commands[0:1]["instrument"] = row[3], 1
    if row[0] == k.OP_AMEND:
        commands[0:1]["oid"] = 2
    out = np.zeros(len(AMEND_FIELDS), dtype=np.int64)
    assert amend_read(records, ORDERS, 5, commands, 1, out) == verdict
    assert untouched(records, ORDERS, 5, commands) == verdict

@pytest.mark.parametrize("order_id", [2**63 - 1, 2**63, 2**64 - 1, -1, 0, 3])
def test_an_amend_of_an_id_never_given_is_not_found(order_id):
    """A journal may hold any uint64 as an amend's order id (msgspec decodes it), past what
    the kernel takes: the amend is refused 404, alone and after queued orders, as before."""
    flow = [("amend", 0, order_id, None, 8), runs._order(0, "sell", runs.PRICE, 5),
            ("amend", 0, order_id, None, 8)]
    (one_replies, _), (got, _), one, batched = runs._both(flow, [])
    assert [r.status for r in one_replies] == [404, 201, 404]
    assert one_replies[2].body["error"]["code"] == "order_not_found"
    assert got == one_replies
    assert batched.state_hash() == one.state_hash()


# ---- whether the orders ahead cover an order (a real book) ------------------------------------

book_orders = st.lists(st.tuples(st.integers(3, 8), st.sampled_from([k.SIDE_BUY, k.SIDE_SELL]),
                                 st.integers(1, 12), st.integers(1, 9)), min_size=1,
                       max_size=40)  # (account, side, ticks from the spread, quantity)
queued_rows = st.lists(st.tuples(
    st.sampled_from([k.OP_NEW, k.OP_NEW, k.OP_CANCEL, k.OP_AMEND]), st.integers(3, 9),
    st.sampled_from([k.SIDE_BUY, k.SIDE_SELL]), st.sampled_from([k.TYPE_LIMIT, k.TYPE_MARKET]),
    st.integers(-12, 12), st.integers(1, 30), st.integers(1, 45), st.sampled_from([1, 2])),
    max_size=8)  # (op, account, side, type, ticks, quantity, an order id, instrument)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(placed=book_orders, rows=queued_rows, pick=st.integers(0, 39))
def test_covered_ahead_equals_the_python_model(placed, rows, pick):
    """``covered_ahead`` over a real book (bids below 100, asks above, in arrival order at
    each price, some cancelled) against ``engine.reference.markets.covered``, which ranks the
    resting orders by price and place instead of walking the book from the order."""
    engine = MatchingEngine()
    for instrument in (1, 2):
        engine.add_instrument(instrument, band_lo_fen=1, band_hi_fen=1000)
    engine.process(np.concatenate([
        command(k.OP_NEW, instrument=1, account=a, side=s, qty=q, stp=k.STP_NONE,
                price=100 - t if s == k.SIDE_BUY else 100 + t) for a, s, t, q in placed]))
    engine.process(command(k.OP_CANCEL, account=0, oid=1 + pick % len(placed)))
    records = np.zeros(64, dtype=RECORD_DTYPE)
    for oid, (account, side, ticks, _) in enumerate(placed, start=1):
        records[oid]["account"], records[oid]["side"], records[oid]["instrument"] = (
            account, side, 1)
        records[oid]["price"] = 100 - ticks if side == k.SIDE_BUY else 100 + ticks
    commands = np.zeros(len(rows), dtype=COMMAND_DTYPE)
    for row, (op, account, side, kind, ticks, quantity, oid, instrument) in zip(
            commands, rows, strict=True):
        row["op"], row["account"], row["qty"] = op, account, quantity
        if op == k.OP_NEW:
            row["instrument"], row["side"], row["type"] = instrument, side, kind
            row["price"] = 0 if kind == k.TYPE_MARKET else 100 + ticks
        else:  # a cancel or an amend of an order of the book (or of none)
            row["oid"] = 1 + oid % len(placed) if oid <= 40 else 60
            if op == k.OP_AMEND:
                row["instrument"], row["price"] = instrument, 100 + ticks
    for oid in range(1, len(placed) + 1):
        if engine.oid_index[oid] < 0 or (commands["oid"] == oid).any():
            continue  # amend_read answers those without covered_ahead
        assert covered_ahead(records, engine.orders, engine.levels, engine.instruments,
                             engine.oid_index, oid, commands, len(commands)) == covered(
            records, engine.orders, engine.levels, engine.instruments, oid, commands)
