"""``settlement.history.pending``: an account's page of unsettled movements, newest first, as a
mask over every row gives it, found by a walk back from the newest that stops at the page."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import movements as mv
from settlement.history import pending

accounts = st.integers(1, 6)
rows = st.lists(st.tuples(accounts, accounts, st.sampled_from([mv.CASH, 3]),
                          st.integers(1, 10**12)), max_size=60)


def _masked(log: np.ndarray, account: int, limit: int) -> list[tuple]:
    """What ``pending`` read before: every row of the account, by a mask, the newest first."""
    mine = log[(log["credit_account"] == account) | (log["debit_account"] == account)]
    return [(row["movement_id"], -row["amount"] if row["debit_account"] == account
             else row["amount"], row["asset"]) for row in mine[::-1][:limit]]


@settings(deadline=None)  # the first call loads the compiled walk
@given(rows, accounts, st.integers(0, 70), st.integers(0, 5))
def test_a_page_is_the_newest_rows_of_the_account(made, account, limit, skip):
    log = np.zeros(len(made), dtype=mv.MOVEMENT_DTYPE)
    for i, (debit, credit, asset, amount) in enumerate(made):
        log[i] = (i, 100 + i, mv.DEPOSIT, debit, credit, asset, amount)
    log = log[min(skip, len(log)):]  # a view whose first row is not the table's
    got = [(row["movement_id"], row["amount"],
            mv.CASH if row["asset"] == "cash" else row["instrument_id"])
           for row in pending(log, account, limit)]
    assert got == _masked(log, account, limit)
    assert all(row["status"] == "pending" for row in pending(log, account, limit))
