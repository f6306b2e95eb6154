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


WIDE = np.dtype([("a", np.int64), ("b", np.int64), ("c", np.int64)])  # rows across pages


def as_ints(table: np.ndarray) -> np.ndarray:
    return table.view(np.int64).reshape(len(table), -1)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(-1000, 100_000), st.booleans()), min_size=1,
                      max_size=12),
       fill=st.sampled_from([None, 0, -1]), wide=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_a_grown_table_reads_as_a_copy_of_its_used_rows(steps, fill, wide, seed):
    rng = np.random.default_rng(seed)
    table = np.zeros(16, dtype=WIDE if wide else np.int64)
    table[...] = fill or 0
    for more, partly_used in steps:  # reserved past 1 MiB (43,691 rows wide, 131,072 not)
        needed = len(table) + more
        as_ints(table)[:] = rng.integers(-5, 5, as_ints(table).shape)  # written since
        used = int(rng.integers(0, len(table) + 1)) if partly_used else None
        expected = copied(table, needed, used, fill)
        table = grown(table, needed, used=used, fill=fill)
        assert len(table) >= needed
        assert np.array_equal(as_ints(table)[: len(expected)], as_ints(expected)[: len(table)])
        assert (as_ints(table)[len(expected):] == (fill or 0)).all()


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


def test_a_table_with_a_large_first_capacity_outgrows_it_in_place():
    """The movements' table starts with room for 1M rows: outgrowing that must not copy them
    (a 56 MB copy stopped a busy server's loop for 0.23 s)."""
    from engine.movements import MOVEMENT_DTYPE, MOVEMENTS_CAPACITY

    table = Table(MOVEMENT_DTYPE, MOVEMENTS_CAPACITY)
    assert len(table.rows) >= MOVEMENTS_CAPACITY and not table.rows["amount"].any()
    assert state._reservation(table.rows) is not None
    table.count = len(table.rows)
    table.rows["amount"][-3:] = (7, 8, 9)
    before = table.rows.ctypes.data
    table.append()
    assert table.rows.ctypes.data == before  # grown in place: no copy
    assert table.rows["amount"][table.count - 4:table.count].tolist() == [7, 8, 9, 0]
    small = Table(ROW)
    assert state._reservation(small.rows) is None and len(small.rows) == state.TABLE_CAPACITY_MIN


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


@pytest.mark.parametrize("used", [0, 10, 4000])
def test_rows_past_used_read_as_zero_where_rows_cross_page_edges(used):
    """A reserved table of 24-byte rows grown in place ends off a page edge: the rows past
    ``used`` are zeroed on the partial pages at both ends and given back in between."""
    table = grown(np.zeros(16, dtype=WIDE), 50_000)
    table = grown(table, len(table) + 100)  # in place: now off a page edge
    assert (len(table) * WIDE.itemsize) % 4096 != 0
    as_ints(table)[:] = 7
    bigger = grown(table, len(table) + 100, used=used)
    assert (as_ints(bigger)[:used] == 7).all() and (as_ints(bigger)[used:] == 0).all()
