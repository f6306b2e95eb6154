"""A live run's checks of plain orders and cancels, in one compiled pass (``engine.markets_live``).

``Markets.apply_run`` checks each order and cancel of a run in Python before its kernel call;
numpy over the run's columns costs about as much (a dozen steps of a few microseconds each on
a few hundred rows). This pass makes the same checks row by row over ``COMMAND_DTYPE`` rows and
says what became of each: queued, or refused and why, or where the run must be cut because
``apply_run`` would check that row only after matching what is queued.
"""

from __future__ import annotations

from engine.kernels import codes as k
from engine.kernels.jit import kernel

# What became of a row (``live_checks``'s ``outcomes``).
QUEUED = 0  # an order, or a cancel of a kept order of its account
QUEUED_BY_ID = 1  # a cancel of an id the queue's new orders may be given
FORBIDDEN = 2  # an order by an account that is not an investor
NOT_TRADABLE = 3  # an order on an instrument and side the rules refuse (``verdicts``)
NOT_FOUND = 4  # a cancel of an id no order of its account has, nor may get in the queue


@kernel
def live_checks(commands, roles, investor_role, active, verdicts, open_count, queued_by,
                open_orders_max, records, next_record, first_oid, outcomes):
    """The outcome of each row of ``commands`` (orders and cancels) into ``outcomes``; returns
    how many rows were checked: the first row not checked is an investor's order on an
    instrument without a book (``active``), or one whose account may be at ``open_orders_max``
    open orders by then (``open_count`` now, plus its orders queued before it).

    ``roles``: each account's role (0: none); ``verdicts[2 * instrument + side]``: 0 if the
    rules let investors trade it now, else the refusal's number (every booked instrument and
    side of the rows' orders is given); ``records``: the order records (``RECORD_DTYPE``,
    ``next_record`` of them); ``first_oid``: the id the engine gives the queue's first new order;
    ``queued_by``: zeros, one per account at least, left zeroed."""
    n = len(commands)
    placed = 0
    checked = n
    for i in range(n):
        row = commands[i]
        actor = row["account"]
        if row["op"] == k.OP_NEW:
            if actor <= 0 or actor >= len(roles) or roles[actor] != investor_role:
                outcomes[i] = FORBIDDEN
                continue
            instrument = row["instrument"]
            if instrument <= 0 or instrument >= len(active) or active[instrument] == 0:
                checked = i
                break
            if verdicts[2 * instrument + row["side"]] != 0:
                outcomes[i] = NOT_TRADABLE
                continue
            now = open_count[actor] if actor < len(open_count) else 0
            if now + queued_by[actor] >= open_orders_max:
                checked = i
                break
            queued_by[actor] += 1
            placed += 1
            outcomes[i] = QUEUED
        else:
            oid = row["oid"]
            if 0 < oid < next_record and records[oid]["kept"] != 0:
                outcomes[i] = QUEUED if records[oid]["account"] == actor else NOT_FOUND
            elif actor != 0 and first_oid <= oid < first_oid + placed:
                outcomes[i] = QUEUED_BY_ID
            else:
                outcomes[i] = NOT_FOUND
    for i in range(checked):  # leave queued_by zeroed
        row = commands[i]
        if row["op"] == k.OP_NEW and outcomes[i] == QUEUED:
            queued_by[row["account"]] = 0
    return checked


@kernel
def table_slots(commands, instrument, table):
    """Each new order of ``instrument`` among ``commands`` (``COMMAND_DTYPE``) gets the
    position row of its account from ``table`` (by account, -1 while not looked up:
    ``engine.markets_live._position_slots``) in ``pos_slot``; returns how many of them got
    -1. Other rows are left as they are."""
    missing = 0
    for i in range(len(commands)):
        if commands[i]["op"] != k.OP_NEW or commands[i]["instrument"] != instrument:
            continue
        account = commands[i]["account"]
        slot = table[account] if 0 <= account < len(table) else -1
        commands[i]["pos_slot"] = slot
        if slot < 0:
            missing += 1
    return missing
