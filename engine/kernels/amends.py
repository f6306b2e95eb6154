"""An amend's order read, and whether the commands queued before it can change it, compiled.

An amend (PATCH /v1/orders/{id}) is checked against its order as of that command. In a run
(``Markets.apply_run``) commands wait in a queue for one kernel call, and the amend may join
them only if none of them can change its order; otherwise the queue is matched first. Mixed
traffic has an amend every dozen orders, and deciding that in Python (each queued row unpacked,
the order's record read through a multi-field view) was half of an amend's checks: bench
recovery's mixed replay spent 15.5-17.6 us of CPU an amend outside the waits' kernel calls,
7.7-8.8 us with this. Here it is one pass over the queue's rows and one read of the record.

``engine.reference.markets.untouched`` is the plain-Python model of ``amend_read``'s verdict
(the property test ``tests/engine/test_amend_read.py`` holds the two equal).
"""

from __future__ import annotations

from engine.kernels import codes as k
from engine.kernels import fold as kf
from engine.kernels.jit import kernel

AMEND_UNKNOWN = 0  # not an order kept for reads (never given, refused, or evicted)
AMEND_MAY_CHANGE = 1  # kept, but finished, or a queued command may change it
AMEND_UNCHANGED = 2  # kept, open, and no queued command can change it
# Kept and open; only queued orders (and amends) of the other side on its instrument may
# trade with it: unchanged if the orders resting ahead of it stop them (``covered_ahead``).
AMEND_IF_COVERED = 3
# Price levels ``covered_ahead`` walks at most past the order's own before it says no.
LEVELS_WALKED_MAX = 256

# The record's fields ``amend_read`` writes, in this order.
AMEND_FIELDS = ("account", "instrument", "side", "post_only", "status", "price", "quantity",
                "filled", "cancelled")


@kernel
def amend_read(records, next_oid, order_id, commands, count, out):
    """The verdict on order ``order_id`` (``AMEND_*``) given the ``count`` queued
    ``commands`` (``COMMAND_DTYPE`` rows) before the amend; for a kept order, its record's
    ``AMEND_FIELDS`` written into ``out`` (int64).

    Kept and open, the order is unchanged by the queue when no row names it (a cancel, an
    amend) and none on its instrument can trade with it (a fill, a self-trade prevention):
    there, only new orders and amends of its own side, and those of the other side whose
    limit does not reach its price. An amend's row does not carry its order's side (an
    order's side never changes): it is read from the amended order's record. An uncross on
    the instrument may change any of its orders. Where only rows of the other side may
    trade with it, ``AMEND_IF_COVERED`` (``covered_ahead`` decides). An amend queued of an
    id not given before the queue (``Markets._amend_later``: maybe one of its new orders)
    names no instrument: it may change any order."""
    if not 0 < order_id < next_oid or records[order_id]["kept"] == 0:
        return AMEND_UNKNOWN
    record = records[order_id]
    out[0] = record["account"]
    out[1] = record["instrument"]
    out[2] = record["side"]
    out[3] = record["post_only"]
    out[4] = record["status"]
    out[5] = record["price"]
    out[6] = record["quantity"]
    out[7] = record["filled"]
    out[8] = record["cancelled"]
    if out[4] > kf.PARTIALLY_FILLED:
        return AMEND_MAY_CHANGE  # finished: a queued command may evict it
    instrument, side, price = out[1], out[2], out[5]
    crossing = False
    for i in range(count):
        row = commands[i]
        if row["oid"] == order_id:
            return AMEND_MAY_CHANGE
        op = row["op"]
        if op == k.OP_AMEND and row["oid"] >= next_oid:
            return AMEND_MAY_CHANGE  # of an order the queue may place: its instrument unknown
        if row["instrument"] != instrument:
            continue
        if op == k.OP_AMEND:
            row_side = records[row["oid"]]["side"]
        elif op == k.OP_NEW:
            row_side = row["side"]
        else:
            return AMEND_MAY_CHANGE  # an uncross there
        if row_side == side:
            continue
        if op == k.OP_NEW and row["type"] == k.TYPE_MARKET:
            crossing = True
        elif side == k.SIDE_BUY and _row_price(row, records) <= price:
            crossing = True
        elif side != k.SIDE_BUY and _row_price(row, records) >= price:
            crossing = True
    return AMEND_IF_COVERED if crossing else AMEND_UNCHANGED


@kernel
def queued_pairs(commands, count, actor, out):
    """The (instrument, side) of each of ``actor``'s new orders among the ``count`` queued
    ``commands``, written to ``out`` as ``2 * instrument + side`` (repeats included); returns
    how many, or -1 if one of them is post-only (``Markets._amend_later``)."""
    n = 0
    for i in range(count):
        row = commands[i]
        if row["op"] == k.OP_NEW and row["account"] == actor:
            if row["post_only"] != 0:
                return -1
            out[n] = 2 * row["instrument"] + row["side"]
            n += 1
    return n


@kernel
def covered_ahead(records, orders, levels, instruments, oid_index, order_id, commands, count):
    """Whether the ``count`` queued ``commands`` before an amend of order ``order_id`` (kept,
    open, resting, and named by none of them: ``amend_read`` said ``AMEND_IF_COVERED``)
    leave the order as it is because the orders resting ahead of it stop them: an order
    trades only once every order ahead of it (a better price, or its price and earlier in
    the level's queue) has gone, and the queued orders and amends of the other side on its
    instrument can take at most their quantities (a fill, or self-trade prevention's
    decrement, takes as much from both). Orders ahead that a queued command names (a
    cancel, an amend) or whose owner has a queued order of the other side (self-trade
    prevention may cancel a resting order without taking anything) are not counted; if the
    order's own owner has one, no. Walks its level from the order towards the head, then
    the better levels nearest first, at most ``LEVELS_WALKED_MAX`` of them."""
    record = records[order_id]
    instrument, side, owner = record["instrument"], record["side"], record["account"]
    demand = 0
    for i in range(count):
        row = commands[i]
        if row["instrument"] != instrument or row["op"] == k.OP_CANCEL:
            continue
        if _side_of(row, records) == side:
            continue
        if row["account"] == owner:
            return False
        demand += _row_quantity(row, records)
    if order_id >= len(oid_index) or oid_index[order_id] < 0:
        return False
    slot = oid_index[order_id]
    ahead = _chain_cover(orders, orders[slot]["prev"], True, records, instrument, side,
                         commands, count, 0, demand)
    if ahead > demand:
        return True
    row = instruments[instrument]
    step = 1 if side == k.SIDE_BUY else -1
    best = row["best_bid"] if side == k.SIDE_BUY else row["best_ask"]
    price = orders[slot]["price"] + step
    walked = 0
    while best != k.NO_PRICE and (price <= best if side == k.SIDE_BUY else price >= best):
        walked += 1
        if walked > LEVELS_WALKED_MAX:
            return False
        if row["ladder_lo"] <= price < row["ladder_lo"] + row["ladder_width"]:
            head = levels[row["level_base"] + side * row["ladder_width"]
                          + (price - row["ladder_lo"])]["head"]
            ahead = _chain_cover(orders, head, False, records, instrument, side, commands,
                                 count, ahead, demand)
            if ahead > demand:
                return True
        price += step
    return False


@kernel
def _chain_cover(orders, at, backwards, records, instrument, side, commands, count, ahead,
                 demand):
    """``ahead`` plus the quantities of the orders that count as cover (``_counted``) along a
    level's queue from slot ``at`` (towards its head if ``backwards``, else its tail), until
    the sum passes ``demand``."""
    while at >= 0 and ahead <= demand:
        if _counted(orders[at], records, instrument, side, commands, count):
            ahead += orders[at]["qty"]
        at = orders[at]["prev"] if backwards else orders[at]["next"]
    return ahead


@kernel
def _counted(order, records, instrument, side, commands, count):
    """Whether a resting order ahead counts as cover (``covered_ahead``): no queued command
    names it, and its owner has no queued order or amend of the other side there."""
    for i in range(count):
        row = commands[i]
        op = row["op"]
        if op != k.OP_NEW and row["oid"] == order["oid"]:
            return False
        if row["instrument"] != instrument or op == k.OP_CANCEL:
            continue
        if row["account"] == order["account"] and _side_of(row, records) != side:
            return False
    return True


@kernel
def _row_price(row, records):
    """A queued row's limit: an amend's that keeps its order's price (``AMEND_BY_TOTAL``,
    price 0) has the order's, which no amend queued before it changes."""
    if row["op"] == k.OP_AMEND and row["price"] == 0:
        return records[row["oid"]]["price"]
    return row["price"]


@kernel
def _row_quantity(row, records):
    """At least what a queued row may trade: an amend that keeps its order's remaining
    quantity (``AMEND_REMAINING``) has no more than its order's quantity in all."""
    if row["op"] == k.OP_AMEND and row["qty"] < 0:
        return records[row["oid"]]["quantity"]
    return row["qty"]


@kernel
def _side_of(row, records):
    """The side of a queued new order or amend (an amend's row says none: its order's side,
    which never changes, is read from the order's record)."""
    return records[row["oid"]]["side"] if row["op"] == k.OP_AMEND else row["side"]
