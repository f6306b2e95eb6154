"""``Balances.position_slots_for``: the slots and rows of one ``position_slot`` call each."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from engine.state import Balances

accounts = st.lists(st.integers(1, 12), max_size=40)


@given(accounts, st.lists(st.tuples(st.integers(1, 12), st.integers(1, 3)), max_size=20),
       st.integers(1, 3))
def test_slots_for_are_one_call_each(holders, before, instrument):
    one, bulk = Balances(), Balances()
    for balances in (one, bulk):
        for account, other in before:  # positions made earlier, in this instrument or not
            balances.position_slot(account, other)
    expected = [one.position_slot(account, instrument) for account in holders]
    slots = bulk.position_slots_for(holders, instrument)
    assert slots.dtype == np.int64 and slots.tolist() == expected
    assert bulk.position_slots == one.position_slots
    assert bulk.positions.count == one.positions.count
    assert bulk.positions.live().tobytes() == one.positions.live().tobytes()


def test_slots_for_grow_the_table():
    balances = Balances()
    capacity = len(balances.positions.rows)
    slots = balances.position_slots_for(list(range(1, capacity + 10)), 7)
    assert slots.tolist() == list(range(capacity + 9))
    live = balances.positions.live()
    assert live["account_id"].tolist() == list(range(1, capacity + 10))
    assert (live["instrument_id"] == 7).all() and not live["units_available"].any()
