"""Tables grow without stopping the exchange: past a size a table lives in address space
reserved for it and grows in place (``engine.state.grown``). Whatever the way, a grown table
reads exactly as a copy of its used rows into a new table whose other rows are ``fill``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import state
from engine.state import Table, grown, holding

ROW = np.dtype([("id", np.int64), ("flag", np.int8)], align=True)


def copied(array: np.ndarray, needed: int, used: int | None, fill: int | None) -> np.ndarray:
    """The meaning of ``grown``: the used rows, then ``fill`` (or zero), ``needed`` at least;
    a table with the room already is left as it is."""
    if needed <= len(array):
        return array.copy()
    keep = len(array) if used is None else used
    expected = np.zeros(max(needed, len(array)), dtype=array.dtype)
    expected[...] = fill or 0
    expected[:keep] = array[:keep]
    return expected


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(-1000, 100_000), st.booleans()), min_size=1,
                      max_size=12),
       fill=st.sampled_from([None, 0, -1]), seed=st.integers(0, 2**32 - 1))
def test_a_grown_table_reads_as_a_copy_of_its_used_rows(steps, fill, seed):
    rng = np.random.default_rng(seed)
    table = np.zeros(16, dtype=np.int64)
    table[...] = fill or 0
    for more, partly_used in steps:  # a table of int64 is reserved past 131,072 rows
        needed = len(table) + more
        table[:] = rng.integers(-5, 5, len(table))  # rows written since the last growth
        used = int(rng.integers(0, len(table) + 1)) if partly_used else None
        expected = copied(table, needed, used, fill)
        table = grown(table, needed, used=used, fill=fill)
        assert len(table) >= needed
        assert np.array_equal(table[: len(expected)], expected[: len(table)])
        assert (table[len(expected):] == (fill or 0)).all()


def test_a_large_table_grows_in_place(monkeypatch):
    table = np.zeros(16, dtype=ROW)
    table = grown(table, state.RESERVE_FROM_BYTES // ROW.itemsize + 1)
    assert state._reservation(table) is not None  # moved, once, into reserved space
    table["id"][:100] = np.arange(100)
    before = table.ctypes.data
    bigger = grown(table, len(table) + 1)
    assert bigger.ctypes.data == before and np.shares_memory(table, bigger)  # no copy
    assert len(bigger) - len(table) <= state.RESERVED_STEP_BYTES // ROW.itemsize
    assert np.array_equal(bigger["id"][:100], np.arange(100))
    assert state._reservation(bigger[1:]) is None  # a view that does not start the table


def test_without_reserved_address_space_tables_are_plain_arrays(monkeypatch):
    def refused(*_args, **_kwargs):
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(state.mmap, "mmap", refused)
    table = grown(np.arange(16, dtype=np.int64), 1 << 20, fill=-1)
    assert state._reservation(table) is None and isinstance(table.base, type(None))
    assert np.array_equal(table[:16], np.arange(16)) and (table[16:] == -1).all()


def test_a_snapshots_rows_are_held_in_reserved_space_when_large():
    rows = np.arange(300_000, dtype=np.int64)
    table = holding(rows, fill=-1)
    assert state._reservation(table) is not None
    assert np.array_equal(table[: len(rows)], rows) and (table[len(rows):] == -1).all()
    small = holding(np.arange(10, dtype=np.int64))
    assert state._reservation(small) is None and len(small) == 16


@pytest.mark.parametrize("rows", [10, 200_000])
def test_a_table_drained_and_refilled_keeps_its_rows_zero_past_the_count(rows):
    table = Table(ROW)
    for _ in range(rows):
        index = table.append()
        table.rows["id"][index] = 7
    table.drop_front(rows - 3)
    assert table.count == 3 and (table.rows["id"][3:] == 0).all()
    index = table.append()
    assert table.rows["id"][index] == 0
    table.rows["id"][index] = 7
    table.load(table.live().copy())
    assert table.count == 4 and (table.live()["id"] == 7).all()
