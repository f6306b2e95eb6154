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
    the instrument may change any of its orders."""
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
    for i in range(count):
        row = commands[i]
        if row["oid"] == order_id:
            return AMEND_MAY_CHANGE
        if row["instrument"] != instrument:
            continue
        op = row["op"]
        if op == k.OP_AMEND:
            row_side = records[row["oid"]]["side"]
        elif op == k.OP_NEW:
            row_side = row["side"]
        else:
            return AMEND_MAY_CHANGE  # an uncross there
        if row_side == side:
            continue
        if op == k.OP_NEW and row["type"] == k.TYPE_MARKET:
            return AMEND_MAY_CHANGE
        if side == k.SIDE_BUY and row["price"] <= price:
            return AMEND_MAY_CHANGE
        if side != k.SIDE_BUY and row["price"] >= price:
            return AMEND_MAY_CHANGE
    return AMEND_UNCHANGED
