"""The order records and fill legs grow ahead of a live venue, not a batch at a time.

A large table lives in reserved address space and grows by 64 KB steps (``engine.state``); a
fold that finds its records or legs full grows every table it writes (``Lifecycle._make_room``).
Grown to exactly what the call needed, a venue taking 256 orders a batch outgrew its records
or legs every three or four batches; they now get an eighth more than needed, address space
only until written. What they held reads the same, and the rest reads as zero.
"""

from __future__ import annotations

import numpy as np

from engine.lifecycle import Lifecycle


def test_records_and_legs_grow_an_eighth_past_the_call_and_keep_their_rows():
    lifecycle = Lifecycle()
    # Past RESERVE_FROM_BYTES: the tables move to reserved address space (doubled once).
    lifecycle._make_room(256, 100_000, 100_000, 1024, 16, 64)
    lifecycle.records["price"][:1000] = np.arange(1000)
    lifecycle.next_oid = 1000
    # One row more than each holds: a reserved table grows by 64 KB steps, this by an eighth.
    records, legs = len(lifecycle.records) + 1, len(lifecycle.legs) + 1
    lifecycle._make_room(256, records, legs, 1024, 16, 64)
    assert len(lifecycle.records) >= records + records // 8
    assert len(lifecycle._touched) >= records + records // 8
    assert len(lifecycle.legs) >= legs + legs // 8
    assert (lifecycle.records["price"][:1000] == np.arange(1000)).all()
    assert not lifecycle.records["price"][1000:].any()
    assert not lifecycle._touched.any()  # the fold's scratch: all zero between folds
