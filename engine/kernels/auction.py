"""Call auction uncross: one clearing price for an instrument whose orders rest without matching.

The price is chosen among the limit prices present on the book: the most executable volume,
then the least imbalance (in units), then the closest to the reference price (the last
uncross, else the offering price), then the lower price, so the choice is always unique.
Orders then trade at that one price in price-time priority; each matched buy/sell pair is one
trade, whose taker is the later of the two orders. Self-trade prevention does not apply here:
an auction matches volumes, not an arriving order.
"""

from __future__ import annotations

from engine.kernels.book import emit, emit_fill, level_index, remove_order
from engine.kernels.codes import EV_UNCROSSED, NO_PRICE, OUT_FILLS, SIDE_BUY, SIDE_SELL
from engine.kernels.jit import kernel
from engine.kernels.layout import C_EVENTS


@kernel
def clearing_price(levels, instruments, inst):
    """``(price, volume)`` of the uncross, ``(NO_PRICE, 0)`` when nothing would trade."""
    row = instruments[inst]
    lo = row["ladder_lo"]
    width = row["ladder_width"]
    bids = row["level_base"]
    asks = bids + width
    ref = row["reference_price"]
    bid_total = 0
    for i in range(width):
        bid_total += levels[bids + i]["qty"]
    bid_below = 0  # bids priced below the candidate: they would not buy at it
    ask_upto = 0  # asks priced at or below the candidate: they would sell at it
    best_p = NO_PRICE
    best_vol = 0
    best_imb = 0
    best_dist = 0
    for i in range(width):
        ask_upto += levels[asks + i]["qty"]
        present = levels[bids + i]["head"] >= 0 or levels[asks + i]["head"] >= 0
        if present:
            p = lo + i
            buy = bid_total - bid_below
            vol = min(buy, ask_upto)
            imb = abs(buy - ask_upto)
            dist = abs(p - ref)
            # Scanning upwards, ties on all three keys keep the lower price already held.
            if vol > 0 and (vol > best_vol or (vol == best_vol and (
                    imb < best_imb or (imb == best_imb and dist < best_dist)))):
                best_p, best_vol, best_imb, best_dist = p, vol, imb, dist
        bid_below += levels[bids + i]["qty"]
    return best_p, best_vol


@kernel
def uncross(orders, levels, instruments, oid_index, counters, events, fills, out, cmd_i, inst):
    """Trade the crossing volume at the clearing price; returns ``(price, volume, trades)``.

    The summary event (``EV_UNCROSSED``) is written unless ``out`` is ``OUT_FILLS``.
    """
    price, volume = clearing_price(levels, instruments, inst)
    trades = 0
    left = volume
    while left > 0:
        b = levels[_best_level(instruments, inst, SIDE_BUY)]["head"]
        a = levels[_best_level(instruments, inst, SIDE_SELL)]["head"]
        q = min(left, orders[b]["qty"], orders[a]["qty"])
        taker, maker = (b, a) if orders[b]["oid"] > orders[a]["oid"] else (a, b)
        t = orders[taker]
        emit_fill(events, fills, out, counters, cmd_i, inst, t["side"], t["oid"], t["account"],
                  t["pos_slot"], t["price"], orders, maker, price, q)
        trades += 1
        left -= q
        _consume(orders, levels, instruments, oid_index, counters, b, q)
        _consume(orders, levels, instruments, oid_index, counters, a, q)
    if volume > 0:
        instruments[inst]["reference_price"] = price
        instruments[inst]["last_price"] = price
    if out != OUT_FILLS:
        emit(events, counters, cmd_i, EV_UNCROSSED, SIDE_BUY, 0, inst, 0, 0, 0, 0, price,
             volume)
        events[counters[C_EVENTS] - 1]["maker_oid"] = trades
    return price, volume, trades


@kernel
def _best_level(instruments, inst, side):
    """The level row of the side's best price (the book is crossed, so both sides exist)."""
    row = instruments[inst]
    best = row["best_bid"] if side == SIDE_BUY else row["best_ask"]
    return row["level_base"] + side * row["ladder_width"] + (best - row["ladder_lo"])


@kernel
def _consume(orders, levels, instruments, oid_index, counters, slot, qty):
    """Execute ``qty`` units of a resting order, removing it when nothing is left."""
    o = orders[slot]
    o["qty"] -= qty
    o["filled"] += qty
    levels[level_index(instruments, o["instrument"], o["side"], o["price"])]["qty"] -= qty
    if o["qty"] == 0:
        remove_order(orders, levels, instruments, oid_index, counters, slot)
