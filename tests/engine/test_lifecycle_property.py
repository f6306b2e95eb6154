"""The array-backed order lifecycle gives what the per-order Python fold gave.

``engine.markets`` folds each kernel call's events into order records in arrays with a
compiled kernel (``engine.kernels.fold``) and builds replies and updates in bulk;
``engine.reference.markets`` is the per-order Python fold it replaced, kept as the model.
Hypothesis drives random order flow (every order type and time in force, post-only,
self-trade prevention, cancels of own, foreign, finished and not-yet-given ids in the same run,
amends, prices beyond the band, call auctions by command and by the clock, settlement batches
in between, a tiny finished-orders limit so evictions happen, a tiny open-orders limit, book
updates built by either of their two paths) through a state machine built
with each; the new one applies it in random runs, the model one entry at a time. Replies,
published updates, movements, balances, books, order views, account order lists, the finished
orders kept, client_order_ids, book sequences and tapes must all be equal; and the new state
must survive a snapshot.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from unittest import mock

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.lifecycle
import engine.machine
import engine.markets
import engine.reference.markets
from engine import commands as c
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.replay import apply_records
from settlement.commands import BatchCommitted
from tests.engine.test_markets_runs import (
    START_US,
    _applied,
    _entry,
    _venue,
    amend_ops,
    auction_ops,
    cancel_ops,
    order_ops,
)

EXAMPLES = 3000 if os.environ.get("CROWDEX_SLOW") else 150
REFERENCE_COMPONENTS = tuple(
    ("engine.reference.markets", "Markets") if module == "engine.markets" else (module, name)
    for module, name in engine.machine.COMPONENTS)

settle_ops = st.tuples(st.just("settle"))
# Later by a minute (new candles) or past the IP board's daily uncross (the clock's auction).
later_ops = st.tuples(st.just("later"), st.sampled_from([61_000_000, 16 * 3_600_000_000]))
# Mostly orders (six in ten), so books fill, trade and orders finish (and get evicted).
# (``one_of`` draws its branches uniformly and folds nested or repeated ones together.)
others = st.one_of(cancel_ops, amend_ops, auction_ops, settle_ops, later_ops)
flows = st.lists(st.tuples(st.integers(0, 9), order_ops, others).map(
    lambda drawn: drawn[1] if drawn[0] < 6 else drawn[2]), min_size=10, max_size=120)


def _machines() -> tuple[StateMachine, StateMachine, list[int], list[int]]:
    new, setup, traders, instruments = _venue()
    with mock.patch.object(engine.machine, "COMPONENTS", REFERENCE_COMPONENTS):
        model = StateMachine()
    assert type(model.component("markets")) is engine.reference.markets.Markets
    for i, entry in enumerate(setup):
        new.apply(i + 1, entry)
        model.apply(i + 1, entry)
    new.outbox.clear()
    model.outbox.clear()
    return new, model, traders, instruments


def _settlement(machine: StateMachine, batch_id: int, time_us: int) -> c.Entry:
    """A settlement batch of every movement so far, as the settlement service journals it."""
    cutoff = machine.last_sequence
    pending = machine.movements.upto(cutoff)
    last_id = int(pending["movement_id"][-1]) if len(pending) else 0
    return c.Entry(time_us, 0, BatchCommitted(batch_id, cutoff, len(pending), last_id))


def _same_state(new: StateMachine, model: StateMachine, traders: list[int]) -> None:
    ours, theirs = new.component("markets"), model.component("markets")
    new_arrays, model_arrays = new.arrays(), model.arrays()
    for name, array in model_arrays.items():  # balances, movements, the books
        assert np.array_equal(new_arrays[name], array), name
    for oid in range(1, ours.engine.next_order_id):
        order = theirs.orders.get(oid)
        if order is None:
            assert not ours.lifecycle.known(oid)
            continue
        assert ours.order(oid, order.account_id) == engine.reference.markets.order_view(order)
    for account in traders:
        for only_open in (True, False):
            assert ours.account_orders(account, only_open) == [
                engine.reference.markets.order_view(o)
                for o in theirs.account_orders(account, only_open)]
    assert ours.finished == list(theirs.finished)
    assert ours.lifecycle.open_client_ids == theirs.open_client_ids
    for instrument, sequence in theirs.book_sequences.items():
        assert ours.book_sequence(instrument) == sequence
    encode = msgspec.msgpack.encode
    assert ({i: encode(t.state()) for i, t in ours.tapes.items() if t.trades}
            == {i: encode(t.state()) for i, t in theirs.tapes.items() if t.trades})


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows, cut_seed=st.lists(st.integers(0, 100), max_size=8),
       kept=st.sampled_from([2, 5, 100_000]), small=st.sampled_from([0, 1 << 30]),
       open_max=st.sampled_from([2, 4, 1000]), scan_max=st.sampled_from([0, 3, 4096]))
def test_the_array_lifecycle_equals_the_python_fold(flow, cut_seed, kept, small, open_max,
                                                     scan_max):
    # ``scan_max``: how far past its index an account's-orders read scans, so reads find the
    # index current, stale, taken in again, and new after a load.
    with (mock.patch.object(engine.markets, "FINISHED_ORDERS_KEPT", kept),
          mock.patch.object(engine.lifecycle, "ORDERS_SCAN_MAX", scan_max),
          mock.patch.object(engine.markets, "BOOK_ROWS_SMALL", small),
          mock.patch.object(engine.markets, "OPEN_ORDERS_MAX", open_max),
          mock.patch.object(engine.reference.markets, "OPEN_ORDERS_MAX", open_max),
          mock.patch.object(engine.reference.markets, "FINISHED_ORDERS_KEPT", kept)):
        new, model, traders, instruments = _machines()
        time_us, batch_id = START_US, 0
        segment: list[c.Entry] = []
        segments: list[list[c.Entry]] = []
        for op in flow:  # entries between settlement batches, each batch its own segment
            if op[0] == "later":
                time_us += op[1]
            elif op[0] == "settle":
                segments.extend([segment, []])
                segment = []
            else:
                entry = _entry(op, traders, instruments)
                segment.append(msgspec.structs.replace(entry, time_us=time_us))
        segments.append(segment)
        first = ({name: a.copy() for name, a in new.arrays().items()}, new.meta())
        for entries in segments:
            if not entries:  # a settlement batch of what the movements hold now
                batch_id += 1
                entries = [_settlement(model, batch_id, time_us)]
            cuts = sorted({x for x in cut_seed if 0 < x < len(entries)})
            got = _applied(new, entries, cuts)
            expected = _applied(model, entries, None)
            assert got[0] == expected[0]  # replies
            assert got[1] == expected[1]  # published updates, in order
            _same_state(new, model, traders)
        restored = StateMachine()
        restored.load({name: a.copy() for name, a in new.arrays().items()}, new.meta())
        assert restored.state_hash() == new.state_hash()
        _same_state(restored, model, traders)
        # The machine that read its orders loads the snapshot of its first state: it reads
        # that state's orders, as a new machine given the snapshot does.
        new.load(*first)
        again = StateMachine()
        again.load(*first)
        for account in traders:
            for only_open in (True, False):
                assert (new.component("markets").account_orders(account, only_open)
                        == again.component("markets").account_orders(account, only_open))


def test_an_older_journal_gives_the_orders_the_python_fold_gave(tmp_path):
    """The journal of tests/engine/test_old_journal.py (written by an earlier crowdex) replayed
    with each component: the same orders, books, movements and tapes."""
    old = Path(__file__).resolve().parent / "data" / "journal_98317ba" / "journal"
    shutil.copytree(old, tmp_path / "journal")
    machines = []
    for components in (engine.machine.COMPONENTS, REFERENCE_COMPONENTS):
        with mock.patch.object(engine.machine, "COMPONENTS", components):
            machine = StateMachine()
        journal = FileJournal(tmp_path / "journal", sync=False, read_only=True)
        try:
            apply_records(machine, journal.read(0), {})
        finally:
            journal.close()
        machines.append(machine)
    new, model = machines
    assert new.last_sequence == model.last_sequence == 655
    assert new.component("markets").engine.next_order_id > 10  # the journal trades
    investors = [a for a, info in model.accounts.items() if info.role == "investor"]
    _same_state(new, model, investors)


def test_the_finished_orders_kept_slide_and_shrink_with_the_limit():
    """Many finished orders: the FIFO of kept ids slides down its array instead of growing, and
    a lower limit between calls evicts the excess at once; the model agrees throughout."""
    ioc = ("order", 0, 0, "buy", "limit", 1, 1, "ioc", False, "cancel_newest", "c", None)
    for kept_then in (100, 4):
        with (mock.patch.object(engine.markets, "FINISHED_ORDERS_KEPT", 100),
              mock.patch.object(engine.reference.markets, "FINISHED_ORDERS_KEPT", 100)):
            new, model, traders, instruments = _machines()
            entries = [_entry(ioc, traders, instruments) for _ in range(1500)]
            cuts = list(range(50, 1500, 50))
            assert _applied(new, entries, cuts) == _applied(model, entries, None)
        lifecycle = new.component("markets").lifecycle
        assert lifecycle.finished() == list(range(1401, 1501))
        assert len(lifecycle.fifo) == 1024  # the ids slid down: it never grew
        with (mock.patch.object(engine.markets, "FINISHED_ORDERS_KEPT", kept_then),
              mock.patch.object(engine.reference.markets, "FINISHED_ORDERS_KEPT", kept_then)):
            more = [_entry(ioc, traders, instruments) for _ in range(3)]
            assert _applied(new, more, []) == _applied(model, more, None)
            _same_state(new, model, traders)
        assert new.component("markets").finished[-1] == 1503
        assert len(new.component("markets").finished) == kept_then
