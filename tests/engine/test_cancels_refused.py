"""The compiled pass that tells what a kernel call did to the orders of its refused cancels
(``engine.kernels.fold.cancels_refused``) against the plain-Python reading of the fold's
change and mark rows it replaced: per cancel, its order's status as of its last change at or
before the cancel, and whether a command at or before it evicted the order. Random rows; the
runs' property tests (``test_markets_runs``, ``test_lifecycle_property``) check the replies
built from it against one command at a time."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from engine.errors import CrowdexError
from engine.kernels import fold as kf
from engine.kernels.layout import COMMAND_DTYPE
from engine.lifecycle import CHANGE_DTYPE, MARK_DTYPE
from engine.machine import refusal
from engine.markets import _error_reply

ORDERS = 12  # few order ids, so that targets, changes and evictions meet
POSITIONS = 30

change_rows = st.lists(st.tuples(st.integers(0, POSITIONS), st.integers(1, ORDERS),
                                 st.integers(0, 3)), max_size=60)
mark_rows = st.lists(st.tuples(st.integers(0, POSITIONS), st.integers(1, ORDERS),
                               st.sampled_from([kf.MARK_OPENED, kf.MARK_CLOSED,
                                                kf.MARK_EVICTED])), max_size=12)
cancels = st.lists(st.tuples(st.integers(0, POSITIONS), st.integers(1, ORDERS + 2)),
                   min_size=1, max_size=20)


def _reference(changes: list[tuple], marks: list[tuple], cancel: list[tuple]) -> list[list]:
    """The Python reading ``Markets._cancels_refused`` did before the kernel: each target's
    history of (position, status) in command order, and the position that evicted it."""
    history: dict[int, list[tuple[int, int]]] = {}
    for pos, oid, status in changes:
        history.setdefault(oid, []).append((pos, status))
    evicted = {oid: pos for pos, oid, op in marks if op == kf.MARK_EVICTED}
    out = []
    for position, target in cancel:
        before = [status for pos, status in history.get(target, ()) if pos <= position]
        out.append([before[-1] if before else -1,
                    int(evicted.get(target, position + 1) <= position)])
    return out


@given(changes=change_rows, marks=mark_rows, cancel=cancels)
def test_the_compiled_pass_reads_the_rows_as_python_did(changes, marks, cancel):
    changes = sorted(changes, key=lambda row: row[0])  # the fold writes them by command
    # An order is evicted once at most.
    marks = [row for n, row in enumerate(marks) if row[2] != kf.MARK_EVICTED or all(
        other[1] != row[1] or other[2] != kf.MARK_EVICTED for other in marks[:n])]
    change_array = np.zeros(len(changes), dtype=CHANGE_DTYPE)
    for i, (pos, oid, status) in enumerate(changes):
        change_array[i]["pos"], change_array[i]["oid"], change_array[i]["status"] = (
            pos, oid, status)
    mark_array = np.zeros(len(marks), dtype=MARK_DTYPE)
    for i, (pos, oid, op) in enumerate(marks):
        mark_array[i]["pos"], mark_array[i]["oid"], mark_array[i]["op"] = pos, oid, op
    # The cancels' commands (the rest of the call's: a cancel's position is its index), each
    # with its own account.
    commands = np.zeros(POSITIONS + 1, dtype=COMMAND_DTYPE)
    commands["account"] = np.arange(POSITIONS + 1) + 100
    for position, target in cancel:
        commands[position]["oid"] = target
    cancel = list(dict(cancel).items())  # one cancel a command
    positions = np.array([position for position, _ in cancel], dtype=np.int64)
    out = np.full((len(cancel), 4), 99, dtype=np.int64)
    kf.cancels_refused(change_array, mark_array, commands, positions, out)
    assert out.tolist() == [[status, evicted, 100 + position, target] for [status, evicted], (
        position, target) in zip(_reference(changes, marks, cancel), cancel, strict=True)]


def test_a_refused_cancels_reply_is_the_errors_reply():
    for status, code, message in ((404, "order_not_found", "no order 7"),
                                  (409, "order_not_open", "order 7 is filled")):
        assert _error_reply(status, code, message) == refusal(CrowdexError(code, message))
