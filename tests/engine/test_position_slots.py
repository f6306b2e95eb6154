"""``Balances.position_slots_for``: the slots and rows of one ``position_slot`` call each."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import state
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


def _walked(balances: Balances, account_id: int) -> list[tuple[int, int, int]]:
    """Holdings by a walk over every position: what ``Balances.holdings`` must give."""
    rows = balances.positions.rows
    return sorted((instrument, int(rows[slot]["units_available"]),
                   int(rows[slot]["units_reserved"]))
                  for (account, instrument), slot in balances.position_slots.items()
                  if account == account_id and (rows[slot]["units_available"]
                                                or rows[slot]["units_reserved"]))


steps = st.lists(st.one_of(
    st.tuples(st.just("make"), st.integers(1, 9), st.integers(1, 6), st.integers(0, 3),
              st.integers(0, 2)),
    st.tuples(st.just("make_many"), st.lists(st.integers(1, 9), max_size=6),
              st.integers(1, 6)),
    st.tuples(st.just("read"), st.integers(0, 10)),
    st.tuples(st.just("load"))), max_size=60)


@settings(deadline=None)  # the first read loads the index's compiled merge
@given(steps, st.integers(0, 5))
def test_holdings_are_every_held_position_of_the_account(plan, scan_max):
    """Reads between writes, with an index built, stale, taken in again and lost to a load:
    each read gives the walk's answer (``scan_max``: how far past its index a read scans)."""
    kept = state.HOLDINGS_SCAN_MAX
    state.HOLDINGS_SCAN_MAX = scan_max
    try:
        balances = Balances()
        for step in plan:
            if step[0] == "make":
                _, account, instrument, available, reserved = step
                slot = balances.position_slot(account, instrument)
                balances.positions.rows[slot]["units_available"] = available
                balances.positions.rows[slot]["units_reserved"] = reserved
            elif step[0] == "make_many":
                slots = balances.position_slots_for(step[1], step[2])
                balances.positions.rows["units_available"][slots] = 1
            elif step[0] == "read":
                assert balances.holdings(step[1]) == _walked(balances, step[1])
            else:
                arrays = balances.arrays()
                balances.load({name: array.copy() for name, array in arrays.items()})
        for account in range(11):
            assert balances.holdings(account) == _walked(balances, account)
    finally:
        state.HOLDINGS_SCAN_MAX = kept


@settings(deadline=None)
@given(st.lists(st.tuples(st.lists(st.integers(0, 30), max_size=40), st.integers(0, 31)),
                max_size=30), st.integers(0, 6))
def test_rows_by_key_are_the_rows_holding_the_key(batches, scan_max):
    """``RowsByKey`` (the reads' index by account) over rows appended in batches, each batch
    followed by a read: exactly the rows whose key it is, ascending, however far its index
    lags the rows (``scan_max``) and however often it takes them in."""
    index, keys = state.RowsByKey(scan_max), np.zeros(0, dtype=np.int64)
    for added, key in batches:
        keys = np.concatenate((keys, np.array(added, dtype=np.int64)))
        assert index.rows(keys, key).tolist() == np.flatnonzero(keys == key).tolist()
        assert (np.diff(index.keys) >= 0).all() and index.indexed <= len(keys)
