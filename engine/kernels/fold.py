"""The order-lifecycle fold: one compiled pass over a kernel call's events.

The matching kernel says what happened (``EVENT_DTYPE`` rows, in command order); this kernel
keeps what the API shows about every order (``engine.lifecycle.RECORD_DTYPE``, indexed by
order id): status, filled and cancelled units, its fills (a linked list of legs), whether it
rests, and the finished orders kept for reads (a FIFO, oldest finish evicted first). Python
then builds replies and published updates from the compact rows it writes, and only for the
commands and channels someone needs: a replay builds none, so it does no Python work per
order or fill.

The rules are exactly those of the per-command Python fold this replaced
(``engine.reference.markets``), which the property tests compare it with:
- a fill adds to both orders' filled units and fills; an open order becomes partially filled;
- a cancelled rest adds to the cancelled units; an order with nothing left is cancelled, or
  filled if every unit filled;
- an amend changes the price and quantity; a re-entered one leaves the resting orders until it
  rests again;
- at the end of a command, every order it changed (in the order first changed) that is filled
  in full is "filled", and a finished order leaves the resting orders and joins the FIFO.

The caller sizes every array for the call's worst case first (``Lifecycle.fold``): nothing
grows in compiled code.
"""

from __future__ import annotations

from engine.kernels.codes import (
    AMEND_KEPT_PRIORITY,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_FILL,
    EV_RESTED,
    MODE_AUCTION,
)
from engine.kernels.jit import kernel

# Order statuses (``RECORD_DTYPE.status``); the API's names are in ``engine.lifecycle``.
OPEN = 0
PARTIALLY_FILLED = 1
FILLED = 2
CANCELLED = 3

# What a mark row says happened to an order (``MARK_DTYPE.op``).
MARK_OPENED = 1  # rests: its client_order_id is taken (orders with one only)
MARK_CLOSED = 2  # no longer rests: its client_order_id is free again (orders with one only)
MARK_EVICTED = 3  # a finished order dropped out of the kept ones (every order)

# Scalars of the fold kept between calls and counts of the rows one call writes.
F_LEGS = 0  # fill legs used
F_FIFO_HEAD = 1  # first kept finished order in the FIFO
F_FIFO_TAIL = 2  # one past the last
F_CHANGES = 3  # rows written by the current call
F_LEVELS = 4
F_BOOKS = 5
F_MARKS = 6
FOLD_COUNTERS_LEN = 7

# Columns of the per-command rows a fold writes (``fold_events``'s ``cmd_rows``).
CR_FIRST_CHANGE = 0
CR_PLACED = 1
CMD_ROW_COLUMNS = 2


@kernel
def fold_events(events, cmds, cid_flags, now_us, records, legs, fifo, counters, kept_max,
                open_count, book_seq, seen, instruments, touched, changes, level_rows, book_rows,
                mark_rows, cmd_rows):
    """Fold ``events`` (one call's, in command order) into the records; write the rows, and
    per command (``cmd_rows``, one row each) its first change row (-1 if it changed no
    order) and the id of the order it placed (0 if none)."""
    counters[F_CHANGES] = 0
    counters[F_LEVELS] = 0
    counters[F_BOOKS] = 0
    counters[F_MARKS] = 0
    for inst in range(len(seen)):
        seen[inst] = 0
    for p in range(len(cmd_rows)):
        cmd_rows[p, CR_FIRST_CHANGE] = -1
        cmd_rows[p, CR_PLACED] = 0
    n = len(events)
    i = 0
    while i < n:
        pos = events[i]["cmd"]
        first_change = counters[F_CHANGES]
        first_level = counters[F_LEVELS]
        while i < n and events[i]["cmd"] == pos:
            if events[i]["kind"] == EV_ACCEPTED:
                cmd_rows[pos, CR_PLACED] = events[i]["oid"]
            _event(events[i], pos, cmds, cid_flags, now_us, records, legs, counters,
                   open_count, instruments, touched, changes, level_rows, mark_rows)
            i += 1
        if counters[F_CHANGES] > first_change:
            cmd_rows[pos, CR_FIRST_CHANGE] = first_change
        _end_command(pos, first_change, records, fifo, counters, kept_max, open_count,
                     touched, changes, mark_rows)
        _book_sequences(first_level, counters, book_seq, seen, level_rows, book_rows)


@kernel(inline=True)
def _event(ev, pos, cmds, cid_flags, now_us, records, legs, counters, open_count, instruments,
           touched, changes, level_rows, mark_rows):
    kind = ev["kind"]
    oid = ev["oid"]
    if kind == EV_FILL:
        _fill(ev, pos, records, legs, counters, instruments, touched, changes, level_rows)
    elif kind == EV_ACCEPTED:
        cmd = cmds[pos]
        r = records[oid]
        r["account"] = cmd["account"]
        r["instrument"] = cmd["instrument"]
        r["side"] = cmd["side"]
        r["type"] = cmd["type"]
        r["tif"] = cmd["tif"]
        r["post_only"] = cmd["post_only"]
        r["price"] = cmd["price"]
        r["quantity"] = cmd["qty"]
        r["created_us"] = now_us
        r["status"] = OPEN
        r["kept"] = 1
        r["has_cid"] = cid_flags[pos]
        r["leg_head"] = -1
        r["leg_tail"] = -1
        _touch(pos, oid, counters, touched, changes)
    elif kind == EV_RESTED:
        r = records[oid]
        r["resting"] = 1
        open_count[r["account"]] += 1
        if r["has_cid"]:
            _mark(mark_rows, counters, pos, oid, MARK_OPENED, r["account"])
        _level(level_rows, counters, pos, r["instrument"], ev["side"], ev["price"], ev["qty"])
    elif kind == EV_CANCELLED:
        r = records[oid]
        qty = ev["qty"]
        if r["resting"]:
            _level(level_rows, counters, pos, r["instrument"], ev["side"], ev["price"], -qty)
        r["cancelled"] += qty
        if r["filled"] + r["cancelled"] >= r["quantity"]:
            r["status"] = CANCELLED if r["filled"] < r["quantity"] else FILLED
        _touch(pos, oid, counters, touched, changes)
    elif kind == EV_AMENDED:
        r = records[oid]
        done = r["filled"] + r["cancelled"]
        rest = r["quantity"] - done
        if ev["code"] == AMEND_KEPT_PRIORITY:
            _level(level_rows, counters, pos, r["instrument"], ev["side"], r["price"],
                   -(rest - ev["qty"]))
        else:
            _level(level_rows, counters, pos, r["instrument"], ev["side"], r["price"], -rest)
            _unrest(r, pos, oid, open_count, counters, mark_rows)
        r["price"] = ev["price"]
        r["quantity"] = done + ev["qty"]
        _touch(pos, oid, counters, touched, changes)


@kernel(inline=True)
def _fill(ev, pos, records, legs, counters, instruments, touched, changes, level_rows):
    """Both orders' fills and filled units; the levels the trade took from."""
    qty = ev["qty"]
    for oid in (ev["oid"], ev["maker_oid"]):
        r = records[oid]
        r["filled"] += qty
        leg = counters[F_LEGS]
        counters[F_LEGS] = leg + 1
        legs[leg]["trade_id"] = ev["trade_id"]
        legs[leg]["price"] = ev["price"]
        legs[leg]["qty"] = qty
        legs[leg]["next"] = -1
        if r["leg_tail"] >= 0:
            legs[r["leg_tail"]]["next"] = leg
        else:
            r["leg_head"] = leg
        r["leg_tail"] = leg
        r["legs"] += 1
        if r["status"] == OPEN:
            r["status"] = PARTIALLY_FILLED
        _touch(pos, oid, counters, touched, changes)
    inst = ev["instrument"]
    side = ev["side"]
    # The maker's level changed at its own limit (in an uncross that differs from the clearing
    # price); in an uncross the "taker" rested too, at its own limit.
    _level(level_rows, counters, pos, inst, 1 - side, ev["maker_price"], -qty)
    if instruments[inst]["mode"] == MODE_AUCTION:
        _level(level_rows, counters, pos, inst, side, ev["price_limit"], -qty)


@kernel(inline=True)
def _touch(pos, oid, counters, touched, changes):
    """Note that the command changed the order (once per command, in first-change order)."""
    if touched[oid]:
        return
    touched[oid] = 1
    c = counters[F_CHANGES]
    counters[F_CHANGES] = c + 1
    changes[c]["pos"] = pos
    changes[c]["oid"] = oid


@kernel(inline=True)
def _level(level_rows, counters, pos, inst, side, price, change):
    j = counters[F_LEVELS]
    counters[F_LEVELS] = j + 1
    row = level_rows[j]
    row["pos"] = pos
    row["instrument"] = inst
    row["side"] = side
    row["price"] = price
    row["change"] = change


@kernel(inline=True)
def _mark(mark_rows, counters, pos, oid, op, account):
    j = counters[F_MARKS]
    counters[F_MARKS] = j + 1
    mark_rows[j]["pos"] = pos
    mark_rows[j]["oid"] = oid
    mark_rows[j]["op"] = op
    mark_rows[j]["account"] = account


@kernel(inline=True)
def _unrest(r, pos, oid, open_count, counters, mark_rows):
    """Out of the resting orders (if it rested)."""
    if r["resting"]:
        r["resting"] = 0
        open_count[r["account"]] -= 1
        if r["has_cid"]:
            _mark(mark_rows, counters, pos, oid, MARK_CLOSED, r["account"])


@kernel
def _end_command(pos, first_change, records, fifo, counters, kept_max, open_count, touched,
                 changes, mark_rows):
    """The command's changed orders: filled ones finish; each row gets the order as of now."""
    for c in range(first_change, counters[F_CHANGES]):
        row = changes[c]
        oid = row["oid"]
        touched[oid] = 0
        r = records[oid]
        if r["status"] <= PARTIALLY_FILLED and r["filled"] == r["quantity"]:
            r["status"] = FILLED
        if r["status"] > PARTIALLY_FILLED:
            _unrest(r, pos, oid, open_count, counters, mark_rows)
            tail = counters[F_FIFO_TAIL]
            fifo[tail] = oid
            counters[F_FIFO_TAIL] = tail + 1
            while counters[F_FIFO_TAIL] - counters[F_FIFO_HEAD] > kept_max:
                oldest = fifo[counters[F_FIFO_HEAD]]
                counters[F_FIFO_HEAD] += 1
                records[oldest]["kept"] = 0
                _mark(mark_rows, counters, pos, oldest, MARK_EVICTED, records[oldest]["account"])
        row["status"] = r["status"]
        row["price"] = r["price"]
        row["quantity"] = r["quantity"]
        row["filled"] = r["filled"]
        row["cancelled"] = r["cancelled"]
        row["legs"] = r["legs"]


@kernel
def _book_sequences(first_level, counters, book_seq, seen, level_rows, book_rows):
    """One more book sequence per instrument whose levels the command changed, in first-seen
    order: a command changes one instrument's book, but nothing here assumes it. ``seen``
    holds, per instrument, 1 + the last command that took a sequence (zero at call start)."""
    for j in range(first_level, counters[F_LEVELS]):
        inst = level_rows[j]["instrument"]
        pos = level_rows[j]["pos"]
        if seen[inst] == pos + 1:
            continue
        seen[inst] = pos + 1
        book_seq[inst] += 1
        b = counters[F_BOOKS]
        counters[F_BOOKS] = b + 1
        book_rows[b]["pos"] = pos
        book_rows[b]["instrument"] = inst
        book_rows[b]["sequence"] = book_seq[inst]


# Columns of a view row (``view_rows``, ``view_rows_now``): what ``Lifecycle`` needs to build
# an order's API view, its fills apart.
V_OID = 0
V_INSTRUMENT = 1
V_SIDE = 2
V_TYPE = 3
V_PRICE = 4
V_QUANTITY = 5
V_TIF = 6
V_POST_ONLY = 7
V_STATUS = 8
V_FILLED = 9
V_REMAINING = 10
V_LEGS = 11
V_CREATED = 12
VIEW_COLUMNS = 13


@kernel(inline=True)
def _view_row(records, oid, price, quantity, filled, cancelled, count, status, out, i):
    r = records[oid]
    out[i, V_OID] = oid
    out[i, V_INSTRUMENT] = r["instrument"]
    out[i, V_SIDE] = r["side"]
    out[i, V_TYPE] = r["type"]
    out[i, V_PRICE] = price
    out[i, V_QUANTITY] = quantity
    out[i, V_TIF] = r["tif"]
    out[i, V_POST_ONLY] = r["post_only"]
    out[i, V_STATUS] = status
    out[i, V_FILLED] = filled
    out[i, V_REMAINING] = quantity - filled - cancelled if status <= PARTIALLY_FILLED else 0
    out[i, V_LEGS] = count
    out[i, V_CREATED] = r["created_us"]


@kernel
def _view_legs(records, legs, oids, counts, out_legs):
    """The first ``counts[i]`` fills of each order ``oids[i]``, one after another; returns
    how many rows that takes, writing nothing if ``out_legs`` has fewer."""
    total = 0
    for i in range(len(oids)):
        total += counts[i]
    if total > len(out_legs):
        return total
    j = 0
    for i in range(len(oids)):
        leg = records[oids[i]]["leg_head"]
        for _ in range(counts[i]):
            out_legs[j, 0] = legs[leg]["trade_id"]
            out_legs[j, 1] = legs[leg]["price"]
            out_legs[j, 2] = legs[leg]["qty"]
            j += 1
            leg = legs[leg]["next"]
    return total


@kernel
def view_rows(changes, rows, records, legs, out, out_legs):
    """View rows of the orders of change ``rows``, each as of its command (the change row's
    dynamic part), into ``out``; their fills into ``out_legs`` (trade id, price, quantity).
    Returns the fill rows needed: if more than ``out_legs`` holds, none were written."""
    n = len(rows)
    for i in range(n):
        c = changes[rows[i]]
        _view_row(records, c["oid"], c["price"], c["quantity"], c["filled"], c["cancelled"],
                  c["legs"], c["status"], out, i)
    return _view_legs(records, legs, out[:n, V_OID], out[:n, V_LEGS], out_legs)


@kernel
def view_rows_now(oids, records, legs, out, out_legs):
    """``view_rows`` of orders as they are now."""
    n = len(oids)
    for i in range(n):
        r = records[oids[i]]
        _view_row(records, oids[i], r["price"], r["quantity"], r["filled"], r["cancelled"],
                  r["legs"], r["status"], out, i)
    return _view_legs(records, legs, out[:n, V_OID], out[:n, V_LEGS], out_legs)


@kernel
def cancels_refused(changes, marks, commands, positions, out):
    """For the cancels of a call the kernel did not find (``positions``: their commands among
    ``commands``, ``COMMAND_DTYPE``): per cancel, in ``out[i, 0]`` the status of its order's
    last change at or before its command (-1: none), in ``out[i, 1]`` 1 if a command at or
    before it evicted the order from the kept ones (a ``MARK_EVICTED`` mark), else 0, and in
    ``out[i, 2]`` and ``out[i, 3]`` the cancel's account and order id (read here, not by a
    numpy call each). The change rows are in command order, so the last one written is the
    last one wanted."""
    n = len(positions)
    for i in range(n):
        out[i, 0] = -1
        out[i, 1] = 0
        out[i, 2] = commands[positions[i]]["account"]
        out[i, 3] = commands[positions[i]]["oid"]
    for r in range(len(changes)):
        oid = changes[r]["oid"]
        pos = changes[r]["pos"]
        for i in range(n):
            if out[i, 3] == oid and pos <= positions[i]:
                out[i, 0] = changes[r]["status"]
    for r in range(len(marks)):
        if marks[r]["op"] != MARK_EVICTED:
            continue
        for i in range(n):
            if out[i, 3] == marks[r]["oid"] and marks[r]["pos"] <= positions[i]:
                out[i, 1] = 1
