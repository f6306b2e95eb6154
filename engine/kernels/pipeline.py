"""The batch driver: one compiled call runs a whole batch of commands through every stage.

For each command, in order: the book's static checks, the risk stage's reservation (when
``risk`` is on), the book (or the auction), then the risk stage's settlement of the events the
book just wrote. The stages stay separate functions; only this loop knows all of them.

The caller guarantees room in ``orders`` and ``oid_index`` for the whole batch. Events may
run out of room: before each command the loop checks that the worst case fits (every order of
the instrument touched twice), and otherwise stops, leaving ``counters[C_PROCESSED]`` at the
first command not done so the caller can grow ``events`` and call again. Lean fills
(``OUT_FILLS``) are sized for the whole batch up front instead. A new order priced beyond its
instrument's ladder (a band that follows the market outgrew it) stops the batch the same way,
before the order changes anything; ``counters[C_STOP]`` tells the caller which of the two.
"""

from __future__ import annotations

from engine.kernels import auction, book, risk
from engine.kernels.codes import (
    ACCOUNT_NOT_FOUND,
    AMEND_BY_TOTAL,
    AMEND_REMAINING,
    EV_ACCEPTED,
    EV_REJECTED,
    INSTRUMENT_NOT_FOUND,
    INVALID_AMEND,
    INVALID_FIELD,
    MODE_AUCTION,
    NEEDS_LADDER,
    NOT_PERMITTED,
    OK,
    OP_AMEND,
    OP_CANCEL,
    OP_NEW,
    OP_UNCROSS,
    ORDER_NOT_FOUND,
    OUT_ALL,
    OUT_FILLS,
    POST_ONLY_WOULD_CROSS,
    STOP_EVENTS,
    STOP_LADDER,
)
from engine.kernels.jit import kernel
from engine.kernels.layout import C_EVENTS, C_PROCESSED, C_STOP

# Events one command can write besides two per resting order of its instrument.
EVENTS_PER_COMMAND_FIXED = 4


@kernel
def run_batch(cmds, results, orders, levels, instruments, oid_index, counters, events, fills,
              accounts, positions, fee_account, risk_on, out):
    """Process ``cmds[counters[C_PROCESSED]:]``; write each command's code to ``results``.

    ``out`` is one of ``codes.OUT_*``. Under ``OUT_FILLS`` trades go to ``fills`` and nothing
    else is written; the caller sizes ``fills`` for the batch's worst case up front (a trade
    either empties its maker or ends its taker, so a batch of ``n`` commands writes at most
    resting orders + 2n of them) and the per-command room check is skipped. The risk stage
    needs full fill events, so it never runs with ``OUT_FILLS``.
    """
    i = counters[C_PROCESSED]
    n = len(cmds)
    checked = out != OUT_FILLS
    while i < n:
        cmd = cmds[i]
        inst = cmd["instrument"]
        if checked:
            touched = 0
            if cmd["op"] == OP_AMEND:  # its order's instrument (its row may name none)
                oid = cmd["oid"]
                if 0 < oid < len(oid_index) and oid_index[oid] >= 0:
                    inst = orders[oid_index[oid]]["instrument"]
            if 0 < inst < len(instruments):
                touched = instruments[inst]["orders_bid"] + instruments[inst]["orders_ask"]
            if counters[C_EVENTS] + 2 * touched + EVENTS_PER_COMMAND_FIXED > len(events):
                counters[C_STOP] = STOP_EVENTS
                break
        first = counters[C_EVENTS]
        op = cmd["op"]
        if op == OP_NEW:
            code = new_order(cmd, i, orders, levels, instruments, oid_index, counters, events,
                             fills, accounts, positions, risk_on, out)
            if code == NEEDS_LADDER:
                counters[C_STOP] = STOP_LADDER
                break
        elif op == OP_CANCEL:
            code = book.cancel(orders, levels, instruments, oid_index, counters, events, out, i,
                               cmd["oid"], cmd["account"])
        elif op == OP_AMEND:
            code = amend_order(cmd, i, orders, levels, instruments, oid_index, counters, events,
                               fills, accounts, positions, risk_on, out)
            if code == NEEDS_LADDER:
                counters[C_STOP] = STOP_LADDER
                break
        elif op == OP_UNCROSS:
            code = uncross_command(cmd, i, orders, levels, instruments, oid_index, counters,
                                   events, fills, out)
        else:
            code = INVALID_FIELD
        if code != OK and out == OUT_ALL:
            book.emit(events, counters, i, EV_REJECTED, cmd["side"], code, inst, 0,
                      cmd["account"], cmd["pos_slot"], 0, cmd["price"], cmd["qty"])
        elif risk_on:
            risk.settle(accounts, positions, instruments, fee_account, events, first,
                        counters[C_EVENTS])
        results[i] = code
        i += 1
    counters[C_PROCESSED] = i
    return i


@kernel(inline=True)
def new_order(cmd, i, orders, levels, instruments, oid_index, counters, events, fills, accounts,
              positions, risk_on, out):
    """Checks, reservation, then the book; a refusal after reserving gives it all back."""
    code, limit = book.check_new(instruments, cmd)
    if code != OK:
        return code
    side = cmd["side"]
    if risk_on:
        account = cmd["account"]
        if account <= 0 or account >= len(accounts) or accounts[account]["role"] == 0:
            return ACCOUNT_NOT_FOUND
        code = risk.reserve(accounts, positions, side, limit, cmd["qty"], cmd["account"],
                            cmd["pos_slot"])
        if code != OK:
            return code
    code = book.place(orders, levels, instruments, oid_index, counters, events, fills, out, i,
                      cmd, limit)
    if code != OK and risk_on:
        risk.release(accounts, positions, side, limit, cmd["qty"], cmd["account"],
                     cmd["pos_slot"])
    return code


@kernel(inline=True)
def amend_order(cmd, i, orders, levels, instruments, oid_index, counters, events, fills,
                accounts, positions, risk_on, out):
    """A resting order's new price (``cmd.price``) and remaining quantity (``cmd.qty``).

    Only a lower quantity at the same price keeps the order's place; anything else takes it out
    and puts it in again like a new order, after the band (and ladder), post-only
    (``cmd.post_only``: the order's own flag) and the risk stage's check of the difference in
    its reservation. A refusal changes nothing.
    """
    oid = cmd["oid"]
    if oid <= 0 or oid >= len(oid_index) or oid_index[oid] < 0:
        return ORDER_NOT_FOUND
    slot = oid_index[oid]
    o = orders[slot]
    account = cmd["account"]
    if account != 0 and o["account"] != account:
        return ORDER_NOT_FOUND
    price = cmd["price"]
    qty = cmd["qty"]
    if cmd["stp"] == AMEND_BY_TOTAL:  # the order's new quantity in all (codes.AMEND_BY_TOTAL)
        total = cmd["pos_slot"]
        if total < 0:
            total = accepted_quantity(events, counters[C_EVENTS], oid)
            if total < 0:  # never: Markets' calls write every event
                return ORDER_NOT_FOUND
        done = total - o["qty"]  # filled or cancelled by now
        if qty <= o["filled"] or qty - done <= 0:
            return INVALID_AMEND
        qty -= done
        if price == 0:
            price = o["price"]
    elif qty == AMEND_REMAINING:
        qty = o["qty"]
    if qty <= 0 or price <= 0:
        return INVALID_FIELD
    side = o["side"]
    if price == o["price"] and qty <= o["qty"]:
        if risk_on and qty < o["qty"]:
            risk.release(accounts, positions, side, price, o["qty"] - qty, o["account"],
                         o["pos_slot"])
        book.reduce_in_place(orders, levels, instruments, events, counters, out, i, slot, qty)
        return OK
    code = book.check_amend_price(instruments, o["instrument"], price)
    if code != OK:
        return code
    if cmd["post_only"] == 1 and book.crosses(
            side, price, book.best_price(instruments, o["instrument"], 1 - side)):
        return POST_ONLY_WOULD_CROSS
    if risk_on:
        code = risk.re_reserve(accounts, positions, side, o["price"], o["qty"], price, qty,
                               o["account"], o["pos_slot"])
        if code != OK:
            return code
    book.reenter(orders, levels, instruments, oid_index, counters, events, fills, out, i, slot,
                 price, qty)
    return OK


@kernel(inline=True)
def accepted_quantity(events, count, oid):
    """The quantity order ``oid`` was accepted with, by the call's first ``count`` events
    (-1: not by them)."""
    for e in range(count):
        if events[e]["kind"] == EV_ACCEPTED and events[e]["oid"] == oid:
            return events[e]["qty"]
    return -1


@kernel
def uncross_command(cmd, i, orders, levels, instruments, oid_index, counters, events, fills,
                    out):
    """Uncross one auction instrument (a book-mode instrument is refused)."""
    inst = cmd["instrument"]
    if inst <= 0 or inst >= len(instruments) or instruments[inst]["active"] == 0:
        return INSTRUMENT_NOT_FOUND
    if instruments[inst]["mode"] != MODE_AUCTION:
        return NOT_PERMITTED
    auction.uncross(orders, levels, instruments, oid_index, counters, events, fills, out, i,
                    inst)
    return OK
