"""``unsettled_credits``: the compiled pass gives numpy's sums, row for row of any batch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import movements as mv
from settlement.component import unsettled_credits

ACCOUNTS = 6
KINDS = sorted(mv.KIND_NAMES)


def reference(movements: np.ndarray, account_count: int, *, net: bool) -> np.ndarray:
    """The rule as numpy masks over the columns (what the batch computed before the kernel)."""
    cash = movements["asset"] == mv.CASH
    mask = cash & (movements["credit_account"] > 0) & (movements["kind"] != mv.DEPOSIT)
    credits = np.zeros(account_count, dtype=np.int64)
    np.add.at(credits, movements["credit_account"][mask], movements["amount"][mask])
    if net:
        taken = cash & np.isin(movements["kind"], mv.FROM_PROCEEDS)
        np.subtract.at(credits, movements["debit_account"][taken], movements["amount"][taken])
    return credits


rows = st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, ACCOUNTS - 1),
                          st.integers(0, ACCOUNTS - 1), st.sampled_from([mv.CASH, 7, 9]),
                          st.integers(1, 2**40)), max_size=60)


def movements_of(made: list[tuple[int, int, int, int, int]]) -> np.ndarray:
    out = np.zeros(len(made), dtype=mv.MOVEMENT_DTYPE)
    for i, (kind, debit, credit, asset, amount) in enumerate(made):
        out[i] = (1 + i // 3, 1 + i, kind, debit, credit, asset, amount)
    return out


@settings(max_examples=300, deadline=None)
@given(made=rows, net=st.booleans(), skip=st.integers(0, 5))
def test_the_kernel_sums_as_numpy_does(made, net, skip) -> None:
    movements = movements_of(made)
    for part in (movements, movements[skip:]):  # the log's live rows: a view from any row
        expected = reference(part, ACCOUNTS, net=net)
        assert unsettled_credits(part, ACCOUNTS, net=net).tolist() == expected.tolist()


@pytest.mark.parametrize(("kind", "debit", "credit"),
                         [(mv.TRADE_CASH, 1, ACCOUNTS), (mv.TRADE_FEE, ACCOUNTS, 1),
                          (mv.SUCCESS_FEE, -1, 1)])
def test_an_account_outside_the_engine_is_refused(kind: int, debit: int, credit: int) -> None:
    movements = movements_of([(mv.TRADE_CASH, 1, 2, mv.CASH, 5), (kind, debit, credit,
                                                                   mv.CASH, 3)])
    with pytest.raises(IndexError, match="movement 2 names an account outside"):
        unsettled_credits(movements, ACCOUNTS, net=True)
