"""A live batch's plain orders and cancels, checked and queued as columns.

``Markets.apply_run`` checks and queues each command of a run in Python, about a microsecond
an order, before the run's one kernel call. The sequencer already holds each entry's journal
bytes, and the replay's compiled scanner (``engine.kernels.entries``) reads plain orders and
cancels (no idempotency key, no client_order_id) from them into ``COMMAND_DTYPE`` rows. Here a
run of such rows, all at the machine's exchange time, is checked with array operations over the
whole run, the queue is the rows that pass, and ``Markets._match`` matches them in one kernel
call and builds the replies and updates as for any run.

It gives exactly the replies, updates and state of ``apply_run`` over the same commands (the
property test in ``tests/engine/test_live_columns.py``), because each check is the one
``Markets._queue_place`` and ``Markets._queue_cancel`` make, against the same state: nothing is
matched before the kernel call, so every check reads the state before the run.
- An order by an account that is not an investor is refused ``forbidden``; one on an
  instrument and side the rules refuse (``Markets._check_tradable``, once per instrument and
  side: the run has one time) gets that refusal. Neither is queued.
- Where ``apply_run`` would match its queue first to check an order exactly, the run is cut
  before that order and the rest goes to ``apply_run`` (``engine.markets_bulk``'s cuts): an
  order on an instrument without a book, and one whose account could be at the open order
  limit by then.
- A cancel of a kept order of its account is queued, of an id the queue's new orders may be
  given (the kernel gives ids in command order) queued by id, of any other id refused 404. The
  kernel and ``Markets._cancels_refused`` answer the queued ones; for a finished order with
  nothing queued before it, which ``_queue_cancel`` refuses at once, that is the same 409.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import CrowdexError
from engine.kernels import codes as k
from engine.lifecycle import SIDE_NAMES
from engine.machine import Reply, refusal
from engine.markets_bulk import first_short_of_room, first_unbooked, investors

_FORBIDDEN = CrowdexError("forbidden", "only investors trade")


def apply_live(markets: Any, first_sequence: int, commands: np.ndarray,
               open_orders_max: int) -> tuple[list[Reply | None], int]:
    """Check, queue and match the orders and cancels ``commands`` (``COMMAND_DTYPE``, numbered
    from ``first_sequence``, at the machine's time) as far as exactness allows; returns the
    replies of those applied and how many that is (0: the first goes through ``apply_run``)."""
    ops, actors = commands["op"], commands["account"]
    places = ops == k.OP_NEW
    investor = places & investors(markets.machine, actors)
    n = first_unbooked(markets, commands, investor)
    refusals: dict[int, Reply] = {}
    placed = _tradable(markets, commands[:n], investor[:n], refusals)
    n = first_short_of_room(markets, actors[:n], placed, open_orders_max)
    if n == 0:
        return [], 0
    commands, placed, actors = commands[:n], placed[:n], actors[:n]
    for index in np.flatnonzero(places[:n] & ~investor[:n]).tolist():
        refusals[index] = refusal(_FORBIDDEN)
    queued, by_id = _cancels(markets, commands, placed, refusals)
    replies: list[Reply | None] = [None] * n
    for index, reply in refusals.items():
        if index < n:
            replies[index] = reply
    at = np.flatnonzero(queued)
    if len(at):
        markets.match_columns(commands[at], at.tolist(),
                              (first_sequence + at).tolist(),
                              np.flatnonzero(by_id[at]).tolist(), replies)
    markets.machine.last_sequence = first_sequence + n - 1
    return replies, n


def _tradable(markets: Any, commands: np.ndarray, investor: np.ndarray,
              refusals: dict[int, Reply]) -> np.ndarray:
    """The investors' orders whose instrument and side the rules let trade now; the others'
    refusals into ``refusals`` (by position)."""
    at = np.flatnonzero(investor)
    if not len(at):
        return investor
    pairs = commands["instrument"][at] * 2 + commands["side"][at]
    distinct, inverse = np.unique(pairs, return_inverse=True)
    refused = []
    for pair in distinct.tolist():
        try:
            markets._check_tradable(pair // 2, SIDE_NAMES[pair % 2])
            refused.append(None)
        except CrowdexError as error:
            refused.append(refusal(error))
    if not any(refused):
        return investor
    placed = investor.copy()
    for index, which in zip(at.tolist(), inverse.tolist(), strict=True):
        if refused[which] is not None:
            placed[index] = False
            refusals[index] = refused[which]
    return placed


def _cancels(markets: Any, commands: np.ndarray, placed: np.ndarray,
             refusals: dict[int, Reply]) -> tuple[np.ndarray, np.ndarray]:
    """Which commands are queued (the placed orders and the cancels ``_queue_cancel`` would
    queue) and which of those cancels are by id (an id not given yet); the refused cancels'
    replies into ``refusals``."""
    cancel = commands["op"] == k.OP_CANCEL
    if not cancel.any():
        return placed, cancel
    actors, oids = commands["account"], commands["oid"]
    lifecycle, records = markets.lifecycle, markets.lifecycle.records
    known = cancel & (oids > 0) & (oids < lifecycle.next_oid)
    kept = np.zeros(len(commands), dtype=bool)
    kept[known] = records["kept"][oids[known]] != 0
    owner = np.zeros(len(commands), dtype=np.int64)
    owner[kept] = records["account"][oids[kept]]
    own = kept & (owner == actors)
    first_oid = markets.engine.next_order_id
    before = np.cumsum(placed) - placed  # new orders queued before each command
    by_id = (cancel & ~kept & (actors != 0) & (oids >= first_oid)
             & (oids < first_oid + before))
    for index in np.flatnonzero(cancel & ~(own | by_id)).tolist():
        refusals[index] = refusal(CrowdexError("order_not_found", f"no order {int(oids[index])}"))
    return placed | own | by_id, by_id
