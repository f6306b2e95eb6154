"""A live batch's plain orders and cancels, checked and queued as columns.

``Markets.apply_run`` checks and queues each command of a run in Python, about a microsecond
an order, before the run's one kernel call. The sequencer already holds each entry's journal
bytes, and the replay's compiled scanner (``engine.kernels.entries``) reads plain orders and
cancels (no idempotency key; an ASCII client_order_id or none) from them into
``COMMAND_DTYPE`` rows. Here a run of such rows, all at the machine's exchange time, is
checked by one compiled pass (``engine.kernels.checks``), the queue is the rows that pass, and
``Markets._match`` matches them in one kernel call and builds the replies and updates as for
any run.

It gives exactly the replies, updates and state of ``apply_run`` over the same commands (the
property test in ``tests/engine/test_live_columns.py``), because each check is the one
``Markets._queue_place`` and ``Markets._queue_cancel`` make, against the same state: nothing is
matched before the kernel call, so every check reads the state before the run.
- An order by an account that is not an investor is refused ``forbidden``; one on an
  instrument and side the rules refuse (``Markets._check_tradable``, once per instrument and
  side: the run has one time) gets that refusal. Neither is queued.
- Where ``apply_run`` would match its queue first to check an order exactly, the run is cut
  before that order and the rest goes to ``apply_run``: an order on an instrument without a
  book, and one whose account could be at the open order limit by then.
- A cancel of a kept order of its account is queued, of an id the queue's new orders may be
  given (the kernel gives ids in command order) queued by id, of any other id refused 404. The
  kernel and ``Markets._cancels_refused`` answer the queued ones; for a finished order with
  nothing queued before it, which ``_queue_cancel`` refuses at once, that is the same 409.
- An order with a client_order_id that its account has on a resting order, or on an order
  queued before it, is where ``apply_run`` matches the queue first to decide
  (``duplicate_client_order_id`` if that order rests by then): the run is cut before it too.
  The ids of the orders queued are kept and followed as ``Markets._match`` keeps them for any
  queue.
- Each new order's position row is looked up (created if new) in the order of the queue, as
  ``_queue_place`` does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import CrowdexError
from engine.kernels import checks as kc
from engine.kernels import codes as k
from engine.lifecycle import SIDE_NAMES
from engine.machine import ROLES, Reply, refusal

_FORBIDDEN = CrowdexError("forbidden", "only investors trade")
# Rows of all position-row caches together (``_position_slots``; int32, 4 bytes each): 16 MB,
# a table per instrument of a venue of 1M accounts in 8 of them, of 10k accounts in 800.
SLOT_TABLES_ROWS_MAX = 4 << 20
_INVESTOR = ROLES["investor"]


def apply_live(markets: Any, first_sequence: int, commands: np.ndarray,
               open_orders_max: int, cids: tuple[np.ndarray, list[str]] | None = None
               ) -> tuple[list[Reply | None], int]:
    """Check, queue and match the orders and cancels ``commands`` (``COMMAND_DTYPE``, numbered
    from ``first_sequence``, at the machine's time; ``cids``: the positions of the orders
    with a client_order_id, increasing, and their ids) as far as exactness allows; returns the
    replies of those applied and how many that is (0: the first goes through ``apply_run``)."""
    machine, engine, lifecycle = markets.machine, markets.engine, markets.lifecycle
    accounts = machine.balances.accounts
    active = engine.instruments["active"]
    verdicts, refused = _verdicts(markets, commands, active)
    if len(markets.queued_by) < accounts.count:
        markets.queued_by = np.zeros(2 * accounts.count, dtype=np.int64)
    outcomes = np.empty(len(commands), dtype=np.int8)
    n = kc.live_checks(commands, accounts.rows["role"][:accounts.count], _INVESTOR, active,
                       verdicts, lifecycle.open_count, markets.queued_by, open_orders_max,
                       lifecycle.records, lifecycle.next_oid, engine.next_order_id, outcomes)
    named = None
    if n and cids is not None:
        n, named = _named(lifecycle.open_client_ids, commands["account"], outcomes, n, *cids)
    if n == 0:
        return [], 0
    outcomes = outcomes[:n]
    replies: list[Reply | None] = [None] * n
    for index in np.flatnonzero(outcomes > kc.QUEUED_BY_ID).tolist():
        replies[index] = _refusal(commands[index], int(outcomes[index]), verdicts, refused)
    at = np.flatnonzero(outcomes <= kc.QUEUED_BY_ID)
    if len(at):
        queue = commands.take(at)  # a tenth of commands[at]'s cost for these rows
        _position_slots(markets, queue)
        if named is not None:  # by position in the queue
            named = np.searchsorted(at, named[0]), named[1]
        markets.match_columns(queue, at.tolist(), (first_sequence + at).tolist(),
                              np.flatnonzero(outcomes[at] == kc.QUEUED_BY_ID).tolist(),
                              replies, named)
    machine.last_sequence = first_sequence + n - 1
    return replies, n


def _named(open_ids: dict[tuple[int, str], int], actors: np.ndarray, outcomes: np.ndarray,
           n: int, positions: np.ndarray, ids: list[str]
           ) -> tuple[int, tuple[np.ndarray, list[str]] | None]:
    """Where the checked rows (``n``) end for their client_order_ids (``ids``, of the rows at
    ``positions``): before the first queued order whose id its account has on a resting order
    (``open_ids``) or on an order queued before it, which ``apply_run`` decides; and the
    positions and ids of the queued orders with an id before that (None: none). An order the
    checks refused is never queued, so its id takes no place. The commonest batch (every id
    new, every order queued) is told by set operations, without a Python step an order."""
    count = int(np.searchsorted(positions, n))
    positions, ids = positions[:count], ids[:count]
    if not count:
        return n, None
    keys = list(zip(actors[positions].tolist(), ids, strict=True))
    queued = outcomes[positions] == kc.QUEUED
    if queued.all() and len(set(keys)) == count and open_ids.keys().isdisjoint(keys):
        return n, (positions, ids)
    seen: set[tuple[int, str]] = set()
    kept: list[int] = []
    for i, (key, passed) in enumerate(zip(keys, queued.tolist(), strict=True)):
        if not passed:
            continue
        if key in open_ids or key in seen:
            n = int(positions[i])
            break
        seen.add(key)
        kept.append(i)
    if not kept:
        return n, None
    return n, (positions[kept], [ids[i] for i in kept])


def _verdicts(markets: Any, commands: np.ndarray,
              active: np.ndarray) -> tuple[np.ndarray, list[CrowdexError]]:
    """The rules' verdict on each instrument and side with a book that the orders name
    (``live_checks``' ``verdicts``: 0, or 1 + the refusal's index in the list returned)."""
    verdicts = np.zeros(2 * len(active), dtype=np.int8)
    refused: list[CrowdexError] = []
    infos: dict[int, Any] = {}  # instrument -> its info, once a side of it passed
    places = commands["op"] == k.OP_NEW  # columns, not rows: a row mask copies every field
    pairs = 2 * commands["instrument"][places] + commands["side"][places]
    for pair in sorted(set(pairs.tolist())):  # np.unique's sort costs more for a batch
        instrument = pair // 2
        if not (0 < instrument < len(active) and active[instrument]):
            continue  # the checks stop before an order there: apply_run checks it
        try:  # an instrument's info read once for both sides: the run has one time
            infos[instrument] = markets._check_tradable(instrument, SIDE_NAMES[pair % 2],
                                                        infos.get(instrument))
        except CrowdexError as error:
            refused.append(error)
            verdicts[pair] = len(refused)
    return verdicts, refused


def _refusal(row: np.void, outcome: int, verdicts: np.ndarray,
             refused: list[CrowdexError]) -> Reply:
    """The reply of a refused row (a fresh one each, as ``apply_run`` gives)."""
    if outcome == kc.FORBIDDEN:
        return refusal(_FORBIDDEN)
    if outcome == kc.NOT_TRADABLE:
        return refusal(refused[verdicts[2 * row["instrument"] + row["side"]] - 1])
    return refusal(CrowdexError("order_not_found", f"no order {int(row['oid'])}"))


def _position_slots(markets: Any, queue: np.ndarray) -> None:
    """Each new order's position row into ``pos_slot`` (-1 for cancels), created if new in
    the order of the queue, as ``Markets._queue_place`` creates them.

    Rows are read from ``Markets.slot_tables`` (per instrument, the row of each account, -1
    while not looked up), a cache of ``Balances.position_slots``: a row never moves once
    created, and the dict is replaced, never emptied, when a snapshot is loaded. Only the
    orders it does not know go to the dict (a probe of a tuple each, ~0.1 us an order)."""
    balances = markets.machine.balances
    if markets.slot_source is not balances.position_slots:
        markets.slot_tables, markets.slot_source = {}, balances.position_slots
    queue["pos_slot"] = -1
    places = queue["op"] == k.OP_NEW
    tables, size = markets.slot_tables, balances.accounts.count
    used = {}  # this call's tables (a later one may clear the cache of an earlier one)
    cached = 2 * size <= SLOT_TABLES_ROWS_MAX  # else every row from the dict
    missing_count = 0
    for instrument in sorted(set(queue["instrument"][places].tolist())) if cached else ():
        table = tables.get(instrument)
        if table is None or len(table) < size:
            if sum(map(len, tables.values())) + 2 * size > SLOT_TABLES_ROWS_MAX:
                tables.clear()  # a cache: bounded, refilled from the dict as orders come
                table = None
            table = tables[instrument] = _grown(table, size)
        used[instrument] = table
        missing_count += kc.table_slots(queue, instrument, table)  # compiled: one pass
    if cached and not missing_count:
        return
    missing = np.flatnonzero(places & (queue["pos_slot"] < 0))
    slots = queue["pos_slot"]  # a view: written through to the queue
    get, make = balances.position_slots.get, balances.position_slot
    for at, account, instrument in zip(missing.tolist(), queue["account"][missing].tolist(),
                                       queue["instrument"][missing].tolist(), strict=True):
        slot = get((account, instrument))
        if slot is None:  # created in the queue's order
            slot = make(account, instrument)
        slots[at] = slot
        table = used.get(instrument)
        if table is not None:
            table[account] = slot


def _grown(table: np.ndarray | None, size: int) -> np.ndarray:
    """A slot table with room for ``size`` accounts, what ``table`` knew kept."""
    grown = np.full(max(2 * size, 64), -1, dtype=np.int32)
    if table is not None:
        grown[:len(table)] = table
    return grown
