"""Idempotency keys expire oldest first: after 24 hours, or beyond ``IDEMPOTENCY_KEYS_MAX``.

``StateMachine._remember`` keeps the remembered replies in a dict in insertion order (state:
the snapshot writes them in that order) and expires them from the front. Hypothesis applies
keyed commands over days, retries (answered from memory, nothing stored), skips of keyed
entries (a skip stores its key again: it keeps its place), and snapshot loads in between,
against a plain list of (key, time) kept in order, under a small key limit too.
"""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

import engine.machine
from engine import commands as c
from engine.machine import IDEMPOTENCY_TTL_US, StateMachine

START_US = 1_767_225_600_000_000  # 2026-01-01
HOUR_US = 3_600_000_000

steps = st.lists(st.tuples(
    st.sampled_from(["apply", "apply", "apply", "skip", "load", "save", "restore"]),
    st.integers(0, 9),  # the key
    st.sampled_from([0, 1, HOUR_US, 5 * HOUR_US, 23 * HOUR_US, IDEMPOTENCY_TTL_US])),
    min_size=1, max_size=60)


def _model_remember(model: list[list], key: tuple[int, str], time_us: int,
                    keys_max: int) -> None:
    for row in model:
        if row[0] == key:
            row[1] = time_us  # stored again: its place kept
            break
    else:
        model.append([key, time_us])
    horizon = time_us - IDEMPOTENCY_TTL_US
    while model and not (model[0][1] >= horizon and len(model) <= keys_max):
        model.pop(0)


@settings(max_examples=200, deadline=None)
@given(steps=steps, keys_max=st.sampled_from([3, 6, engine.machine.IDEMPOTENCY_KEYS_MAX]))
def test_keys_expire_oldest_first_as_a_list_in_order_says(steps, keys_max):
    machine = StateMachine()
    machine.apply(1, c.Entry(START_US, 0, c.Genesis("h", False, START_US, "intl",
                                                    c.RULES_VERSION)))
    model: list[list] = []
    time_us = START_US
    saved = None  # a snapshot taken earlier, loaded again into the same machine ("restore")
    with mock.patch.object(engine.machine, "IDEMPOTENCY_KEYS_MAX", keys_max):
        for what, n, step_us in steps:
            if what == "load":
                loaded = StateMachine()
                loaded.load(machine.arrays(), machine.meta())
                machine = loaded
                continue
            if what == "save":
                saved = (machine.arrays(), machine.meta(), [row[:] for row in model])
                continue
            if what == "restore":
                if saved is not None:
                    machine.load(saved[0], saved[1])
                    model = [row[:] for row in saved[2]]
                continue
            time_us += step_us
            key = f"k{n}"
            entry = c.Entry(time_us, 2, c.Tick(), key, f"h{n}")
            known = (2, key) in machine.idempotency
            sequence = machine.last_sequence + 1
            if what == "skip":
                machine.skip(sequence, entry, "a test")
            else:
                machine.apply(sequence, entry)
            if what == "skip" or not known:
                _model_remember(model, (2, key), max(time_us, machine.now_us), keys_max)
            assert [[k, s.time_us] for k, s in machine.idempotency.items()] == model


def test_a_snapshot_loaded_into_the_same_machine_expires_its_own_oldest_key():
    """The front key's time a machine read before a load is not the loaded state's."""
    machine = StateMachine()
    machine.apply(1, c.Entry(START_US, 0, c.Genesis("h", False, START_US, "intl",
                                                    c.RULES_VERSION)))
    machine.apply(2, c.Entry(START_US, 2, c.Tick(), "k0", "h0"))
    arrays, meta = machine.arrays(), machine.meta()
    later = START_US + IDEMPOTENCY_TTL_US + HOUR_US
    machine.apply(3, c.Entry(later, 2, c.Tick(), "k1", "h1"))  # k0 expires
    assert list(machine.idempotency) == [(2, "k1")]
    machine.load(arrays, meta)  # k0 is back, the oldest
    machine.apply(3, c.Entry(later + 1, 2, c.Tick(), "k2", "h2"))
    assert list(machine.idempotency) == [(2, "k2")]
