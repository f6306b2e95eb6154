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
    st.sampled_from(["apply", "apply", "apply", "skip", "load"]),
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
    with mock.patch.object(engine.machine, "IDEMPOTENCY_KEYS_MAX", keys_max):
        for what, n, step_us in steps:
            if what == "load":
                loaded = StateMachine()
                loaded.load(machine.arrays(), machine.meta())
                machine = loaded
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
