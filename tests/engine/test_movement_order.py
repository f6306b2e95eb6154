"""A run's movements put in sequence order by ``MovementLog.sort_since`` (compiled:
``engine.kernels.sequence_sort``) read exactly as numpy's stable sort of them by sequence,
numbered again from the first row's id; the rows before the run stay as they were."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.kernels.movements import sales_before
from engine.movements import TRADE_CASH, TRADE_FEE, MovementLog

MOVEMENT = st.tuples(st.integers(0, 30), st.integers(1, 15), st.integers(0, 6),
                     st.integers(0, 6), st.integers(1, 10**12))


def logged(rows: list[tuple[int, int, int, int, int]]) -> MovementLog:
    log = MovementLog()
    for sequence, kind, debit, credit, amount in rows:
        log.record(sequence, kind, debit, credit, 0, amount)
    return log


@settings(max_examples=200, deadline=None)
@given(before=st.lists(MOVEMENT, max_size=5), run=st.lists(MOVEMENT, max_size=1500))
def test_sort_since_is_a_stable_sort_by_sequence(before, run):
    log = logged(before + run)
    start, end = len(before), len(before) + len(run)
    earlier = log.table.rows[:start].copy()
    block = log.table.rows[start:end].copy()
    expected = block[np.argsort(block["sequence"], kind="stable")]
    expected["movement_id"] = np.arange(start + 1, end + 1)
    log.sort_since(start)
    assert log.table.count == end
    assert (log.table.rows[:start] == earlier).all()
    assert (log.table.rows[start:end] == expected).all()
    log.sort_since(start)  # sorted already: unchanged
    assert (log.table.rows[start:end] == expected).all()


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(MOVEMENT, max_size=60),
       asked=st.lists(st.tuples(st.integers(0, 32), st.integers(0, 6)), max_size=8),
       start=st.integers(0, 5))
def test_sales_before_sums_proceeds_less_fees_of_earlier_commands(rows, asked, start):
    log = logged([(s, (TRADE_CASH, TRADE_FEE)[k % 2] if k < 5 else k, d, c, a)
                  for s, k, d, c, a in rows])
    start = min(start, len(rows))
    out = np.full(len(asked), -1, dtype=np.int64)
    sales_before(log.table.rows, start, log.table.count,
                 np.array([s for s, _ in asked], dtype=np.int64),
                 np.array([a for _, a in asked], dtype=np.int64), out)
    table = log.table.rows[start:log.table.count]
    for (before, account), got in zip(asked, out.tolist(), strict=True):
        proceeds = sum(int(r["amount"]) for r in table
                       if r["sequence"] < before and r["kind"] == TRADE_CASH
                       and r["credit_account"] == account)
        fees = sum(int(r["amount"]) for r in table
                   if r["sequence"] < before and r["kind"] == TRADE_FEE
                   and r["debit_account"] == account)
        assert got == proceeds - fees
