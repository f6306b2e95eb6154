"""A replay's orders and cancels, many exchange times of them, in one kernel call.

The live path (``Markets.apply_run``) checks each order in Python, per run of one exchange
time, and builds replies and updates. A replay needs neither, and reads entries as columns
(``engine.kernels.entries``), so here the checks are array operations over a whole segment of
orders and cancels (``StateMachine.apply_orders``: consecutive, none with an idempotency key,
no deadline due in between) and the segment is matched by one kernel call, folded once, and
its movements, tapes and candles recorded at once.

It gives the state that ``apply`` one entry at a time gives (the property tests in
``tests/engine/test_bulk_replay.py`` and ``test_bulk_client_ids.py``), by these rules:
- An entry that one at a time is refused in Python changes nothing, so it is left out of the
  kernel call: an order by an account that is not an investor, on an instrument and side not
  tradable at the entry's time (``Markets._check_tradable``, once per distinct instrument,
  side and time); a cancel by account 0 or below, or of an id that cannot have been given by
  then (the kernel gives ids in command order to the orders it accepts). Every other cancel
  goes to the kernel, whose own check (resting, same owner) is the one the Python checks
  stand in front of.
- Where a Python check depends on what the segment's own commands change, the segment is cut
  before the first entry whose answer it could change, and that entry goes through the exact
  path: an order on an instrument with no book yet (opening one may schedule auctions), an
  order that could find its account at ``OPEN_ORDERS_MAX`` open orders (counted as if none
  of the segment's orders left the book), and an order whose client_order_id its account may
  have on a resting order by then (one resting now, or an earlier order's of the segment:
  ``duplicate_client_order_id`` one at a time, unless that order no longer rests).
- The client_order_ids of the accepted orders are kept for reads as ``Markets._match``
  keeps them; those left on resting orders after the call are followed from the fold's marks
  (``Lifecycle.follow_marks_bulk``, which the cut above makes exact).
- The exchange time of each entry is its own (orders keep their creation time, trades go on
  the tape and candles at theirs), as one at a time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.errors import CrowdexError
from engine.kernels import codes as k
from engine.kernels.entries import ClientIds, string_hashes
from engine.lifecycle import SIDE_NAMES
from engine.machine import ROLES

_INVESTOR = ROLES["investor"]


def apply_columns(markets: Any, first_sequence: int, commands: np.ndarray, times: np.ndarray,
                  open_orders_max: int, finished_kept: int,
                  client_ids: ClientIds | None = None) -> int:
    """Apply the orders and cancels ``commands`` (``COMMAND_DTYPE``, numbered from
    ``first_sequence``, at the exchange times ``times``, non-decreasing; ``client_ids``:
    their client_order_ids, None if none has one) to ``markets`` (an
    ``engine.markets.Markets``, with its limits) as far as exactness allows; returns how many
    were applied (0: the first must go through ``apply``)."""
    places = commands["op"] == k.OP_NEW
    actors = commands["account"]
    investor = places & _investors(markets.machine, actors)
    n = _first_unbooked(markets, commands, investor)
    places, investor, actors = places[:n], investor[:n], actors[:n]
    placed = _tradable(markets, commands[:n], times[:n], investor)
    n = _first_short_of_room(markets, actors, placed, open_orders_max)
    named = np.zeros(0, dtype=np.int64)
    if n and client_ids is not None:
        n, named = _named(markets.lifecycle, actors[:n], placed[:n], client_ids[:n])
    if n == 0:
        return 0
    placed, actors = placed[:n], actors[:n]
    oids = commands["oid"][:n]
    before = np.cumsum(placed) - placed  # orders the kernel may have given ids to by then
    cancels = ((commands["op"][:n] == k.OP_CANCEL) & (actors > 0) & (oids > 0)
               & (oids < markets.engine.next_order_id + before))
    kept = np.flatnonzero(placed | cancels)
    if len(kept):
        # The named orders are placed, so kept: their positions among the kept commands.
        ids = _Named(np.searchsorted(kept, named), named, client_ids)
        _match(markets, commands[kept], first_sequence + kept, times[kept], finished_kept, ids)
    return n


class _Named:
    """A kernel call's orders with a client_order_id: their positions in the call (``at``)
    and in the segment (``positions``, into ``client_ids``)."""

    def __init__(self, at: np.ndarray, positions: np.ndarray,
                 client_ids: ClientIds | None) -> None:
        self.at, self.positions, self.client_ids = at, positions, client_ids

    def strings(self, chosen: np.ndarray) -> list[str]:
        """The ids of the orders ``chosen`` (a mask over ``at``)."""
        return self.client_ids.strings(self.positions[chosen])


def _named(lifecycle: Any, actors: np.ndarray, placed: np.ndarray,
           client_ids: ClientIds) -> tuple[int, np.ndarray]:
    """Where to cut the segment, and the positions before it of the placed orders with a
    client_order_id. It is cut before the first whose account could have its id on a resting
    order by its turn (``Markets._queue_place`` refuses it ``duplicate_client_order_id``
    then): an open order's now, or an earlier order's of the segment (which may rest). That
    order goes through the exact path, which decides. Ids are compared by their hashes with
    the account (``engine.kernels.entries.hash_bytes``): two that differ but hash alike only
    cut the segment where it need not be. Against the resting ids, the smaller side is walked:
    the resting ids hashed, or, when they outnumber the segment's, the segment's ids looked
    up (a venue with many resting ids would otherwise hash them all at every call)."""
    positions = np.flatnonzero(placed & client_ids.present())
    if not len(positions):
        return len(actors), positions
    keys = _keys(actors[positions], client_ids.hashes()[positions])
    clash = np.zeros(len(keys), dtype=bool)
    taken = lifecycle.open_client_ids
    if len(taken) > len(positions):
        clash[:] = [(account, cid) in taken for account, cid in zip(
            actors[positions].tolist(), client_ids.strings(positions), strict=True)]
    elif taken:
        accounts, ids = zip(*taken, strict=True)
        clash |= np.isin(keys, _keys(np.array(accounts, dtype=np.int64), string_hashes(ids)))
    order = np.argsort(keys, kind="stable")
    ranked = keys[order]
    clash[order[1:][ranked[1:] == ranked[:-1]]] = True  # each repeat but the first
    first = np.flatnonzero(clash)
    if not len(first):
        return len(actors), positions
    return int(positions[first[0]]), positions[:first[0]]


def _keys(accounts: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """An account's id as one int64 (its hash mixed with the account; numpy wraps)."""
    return hashes ^ (accounts * np.int64(-7046029254386353131))


def _investors(machine: Any, actors: np.ndarray) -> np.ndarray:
    accounts = machine.balances.accounts
    known = (actors > 0) & (actors < accounts.count)
    roles = np.zeros(len(actors), dtype=np.int8)
    roles[known] = accounts.rows["role"][actors[known]]
    return roles == _INVESTOR


def _first_unbooked(markets: Any, commands: np.ndarray, investor: np.ndarray) -> int:
    """The first investor's order on an instrument without a book (or len)."""
    active = markets.engine.instruments["active"]
    inst = commands["instrument"]
    inside = (inst > 0) & (inst < len(active))
    booked = np.zeros(len(inst), dtype=bool)
    booked[inside] = active[inst[inside]] != 0
    missing = np.flatnonzero(investor & ~booked)
    return int(missing[0]) if len(missing) else len(commands)


def _tradable(markets: Any, commands: np.ndarray, times: np.ndarray,
              investor: np.ndarray) -> np.ndarray:
    """The investors' orders on an instrument and side tradable at their time: the rules'
    check once per distinct (time, instrument, side), with the machine's clock at that time."""
    at = np.flatnonzero(investor)
    if not len(at):
        return investor
    inst, side, time = commands["instrument"][at], commands["side"][at], times[at]
    order = np.lexsort((side, inst, time))
    inst, side, time = inst[order], side[order], time[order]
    new = np.ones(len(at), dtype=bool)
    new[1:] = (time[1:] != time[:-1]) | (inst[1:] != inst[:-1]) | (side[1:] != side[:-1])
    machine = markets.machine
    now = machine.now_us
    verdicts = []
    passed, info = None, None  # the (time, instrument) whose info a side passed, and that info
    try:
        for i, s, t in zip(inst[new].tolist(), side[new].tolist(), time[new].tolist(),
                           strict=True):
            machine.now_us = t
            try:  # the other side's info at the same time, if it passed (as _queue_place)
                info = markets._check_tradable(i, SIDE_NAMES[s],
                                               info if passed == (t, i) else None)
                passed = (t, i)
                verdicts.append(True)
            except CrowdexError:
                verdicts.append(False)
    finally:
        machine.now_us = now
    tradable = investor.copy()
    tradable[at[order]] = np.array(verdicts, dtype=bool)[np.cumsum(new) - 1]
    return tradable


def _first_short_of_room(markets: Any, actors: np.ndarray, placed: np.ndarray,
                         open_orders_max: int) -> int:
    """The first order whose account could be at ``open_orders_max`` open orders by then
    (its open orders now and its orders before it in the segment), or len."""
    who = actors[placed]
    if not len(who):
        return len(actors)
    open_count = markets.lifecycle.open_count
    base = np.zeros(int(who.max()) + 1, dtype=np.int64)
    shown = min(len(base), len(open_count))
    base[:shown] = open_count[:shown]
    if (base + np.bincount(who, minlength=len(base)) <= open_orders_max).all():
        return len(actors)
    order = np.argsort(who, kind="stable")
    ranked = who[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
    rank = np.empty(len(who), dtype=np.int64)
    rank[order] = np.arange(len(who)) - np.repeat(starts, np.diff(np.r_[starts, len(who)]))
    short = np.flatnonzero(base[who] + rank >= open_orders_max)
    return int(np.flatnonzero(placed)[short[0]]) if len(short) else len(actors)


def _match(markets: Any, commands: np.ndarray, sequences: np.ndarray, times: np.ndarray,
           finished_kept: int, named: _Named) -> None:
    """One kernel call and one fold for the segment; then the creation times, the
    client_order_ids of the orders accepted, those that rest, left the book or the kept
    orders, the movements and the tapes."""
    machine = markets.machine
    engine, lifecycle = markets.engine, markets.lifecycle
    first_oid = engine.next_order_id  # the first id this call may give
    events = engine.process(commands, machine.balances).events
    cid_flags = np.zeros(len(commands), dtype=np.int8)
    cid_flags[named.at] = 1
    folded = lifecycle.fold(events, commands, cid_flags, int(times[-1]), finished_kept,
                            engine.instruments, engine.next_order_id,
                            machine.balances.accounts.count)
    kinds = events["kind"]
    # Columns of the rows, not the rows: a structured row mask copies every field.
    accepted = np.flatnonzero(kinds == k.EV_ACCEPTED)
    made = events["cmd"]
    lifecycle.records["created_us"][events["oid"][accepted]] = times[made[accepted]]
    if len(named.at):
        lifecycle.note_placed_ids(folded, named.at, named.strings)
    lifecycle.follow_marks_bulk(folded, first_oid)
    fills = int(np.count_nonzero(kinds == k.EV_FILL))
    if fills:  # two compiled passes over the events, which skip the rows that are not fills
        markets._fill_movements(events, sequences, fills)
        # The fills onto their instruments' tapes and candles, each at its own exchange time
        # (fills are in command order, so their times never go down).
        markets.marketdata.record(events, int(times[0]), times[made])
