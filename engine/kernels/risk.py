"""The risk stage: cash and units reserved on entry, moved on fill, released on cancel.

It is a stage apart from the book: ``reserve`` runs before an order reaches the book and
``settle`` afterwards over the events the book wrote, so the book never reads a balance.
Arguments are the rows of ``engine.state.Balances`` (``accounts.rows``, ``positions.rows``).

Rules (every one exact in integer fen):
- a buy reserves ``limit x qty`` cash; a market buy's limit is the band's top price, so the
  reservation covers any fill, and whatever the fills did not use is released;
- a sell reserves ``qty`` units;
- a fill moves ``price x qty`` from the buyer's reservation to the seller, releases the buyer's
  excess ``(limit - price) x qty``, and the seller pays ``(notional x fee_bps + 5000) // 10000``
  (half up) to the fee account; proceeds are unsettled cash until a settlement batch;
- a cancelled (or dropped) rest releases its reservation.
"""

from __future__ import annotations

from engine.kernels.codes import (
    EV_CANCELLED,
    EV_FILL,
    INSUFFICIENT_FUNDS,
    INSUFFICIENT_HOLDINGS,
    OK,
    SIDE_BUY,
)
from engine.kernels.jit import kernel

INT64_MAX = 9_223_372_036_854_775_807


@kernel
def fee_half_up(notional, fee_bps):
    """``(notional * fee_bps + 5000) // 10000`` without overflowing int64 for any notional."""
    whole = notional // 10000
    part = notional - whole * 10000
    return whole * fee_bps + (part * fee_bps + 5000) // 10000


@kernel
def reserve(accounts, positions, side, limit, qty, account, pos_slot):
    """Reserve what an order may need, or refuse it with a code and change nothing."""
    if side == SIDE_BUY:
        # An order whose worst-case cost does not fit in int64 cannot be funded by anyone.
        if qty > INT64_MAX // limit:
            return INSUFFICIENT_FUNDS
        need = limit * qty
        row = accounts[account]
        if row["cash_available"] < need:
            return INSUFFICIENT_FUNDS
        row["cash_available"] -= need
        row["cash_reserved"] += need
        return OK
    pos = positions[pos_slot]
    if pos["units_available"] < qty:
        return INSUFFICIENT_HOLDINGS
    pos["units_available"] -= qty
    pos["units_reserved"] += qty
    return OK


@kernel
def re_reserve(accounts, positions, side, old_limit, old_qty, limit, qty, account, pos_slot):
    """An amended order's reservation: from ``old_limit x old_qty`` (or ``old_qty`` units) to
    what the new price and quantity need; refused with a code, changing nothing, when the
    account cannot cover the difference."""
    if side == SIDE_BUY:
        if qty > INT64_MAX // limit:
            return INSUFFICIENT_FUNDS
        more = limit * qty - old_limit * old_qty
        row = accounts[account]
        if more > row["cash_available"]:
            return INSUFFICIENT_FUNDS
        row["cash_available"] -= more
        row["cash_reserved"] += more
        return OK
    more = qty - old_qty
    pos = positions[pos_slot]
    if more > pos["units_available"]:
        return INSUFFICIENT_HOLDINGS
    pos["units_available"] -= more
    pos["units_reserved"] += more
    return OK


@kernel
def release(accounts, positions, side, limit, qty, account, pos_slot):
    """Give back the reservation of ``qty`` units of an order that will not trade."""
    if side == SIDE_BUY:
        amount = limit * qty
        row = accounts[account]
        row["cash_reserved"] -= amount
        row["cash_available"] += amount
    else:
        pos = positions[pos_slot]
        pos["units_reserved"] -= qty
        pos["units_available"] += qty


@kernel
def settle_fill(accounts, positions, instruments, fee_account, ev):
    """Move cash and units for one fill event."""
    price = ev["price"]
    qty = ev["qty"]
    if ev["side"] == SIDE_BUY:
        buyer, buyer_pos, buyer_limit = ev["account"], ev["pos_slot"], ev["price_limit"]
        seller, seller_pos = ev["maker_account"], ev["maker_pos_slot"]
    else:
        buyer, buyer_pos, buyer_limit = ev["maker_account"], ev["maker_pos_slot"], ev["maker_price"]
        seller, seller_pos = ev["account"], ev["pos_slot"]
    notional = price * qty
    brow = accounts[buyer]
    brow["cash_reserved"] -= buyer_limit * qty
    brow["cash_available"] += (buyer_limit - price) * qty
    positions[buyer_pos]["units_available"] += qty
    positions[seller_pos]["units_reserved"] -= qty
    fee = fee_half_up(notional, instruments[ev["instrument"]]["fee_bps"])
    srow = accounts[seller]
    srow["cash_available"] += notional - fee
    # One rule venue-wide: every cash credit but a deposit is unsettled at its gross amount
    # until the settlement batch that records it clears exactly that credit; fees are taken
    # from available cash only.
    srow["cash_unsettled"] += notional
    frow = accounts[fee_account]
    frow["cash_available"] += fee
    frow["cash_unsettled"] += fee


@kernel
def settle(accounts, positions, instruments, fee_account, events, start, stop):
    """Apply the balance effects of events ``start:stop`` (fills and cancellations)."""
    for e in range(start, stop):
        ev = events[e]
        kind = ev["kind"]
        if kind == EV_FILL:
            settle_fill(accounts, positions, instruments, fee_account, ev)
        elif kind == EV_CANCELLED:
            release(accounts, positions, ev["side"], ev["price_limit"], ev["qty"],
                    ev["account"], ev["pos_slot"])
