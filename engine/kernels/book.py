"""Continuous limit order book kernels: price-time priority, fills at the resting price.

Each instrument's levels are a dense ladder of prices (one per side), each level a FIFO list of
order slots linked through ``orders['next']``/``orders['prev']``. Matching walks from the best
opposite level outwards. The book never sees balances: the risk stage (``risk.py``) reads the
events these functions write. Capacity (orders, oid index, events or lean fills) is ensured by
the caller before a batch, so nothing here allocates. ``out`` (``codes.OUT_*``) says which
events a batch writes.
"""

from __future__ import annotations

from engine.kernels.codes import (
    AMEND_KEPT_PRIORITY,
    AMEND_REENTERED,
    EV_ACCEPTED,
    EV_AMENDED,
    EV_CANCELLED,
    EV_FILL,
    EV_RESTED,
    FOK_NOT_FILLABLE,
    INSTRUMENT_NOT_FOUND,
    INVALID_FIELD,
    MODE_AUCTION,
    NEEDS_LADDER,
    NO_PRICE,
    NOT_PERMITTED,
    OK,
    ORDER_NOT_FOUND,
    OUT_ALL,
    OUT_FILLS,
    POST_ONLY_WOULD_CROSS,
    PRICE_OUT_OF_BAND,
    PRICE_TOO_FAR,
    REASON_REQUESTED,
    REASON_SELF_TRADE,
    REASON_UNFILLED_REST,
    SIDE_BUY,
    SIDE_SELL,
    STP_CANCEL_BOTH,
    STP_CANCEL_NEWEST,
    STP_CANCEL_OLDEST,
    STP_DECREMENT,
    STP_NONE,
    TIF_FOK,
    TIF_GTC,
    TIF_IOC,
    TYPE_LIMIT,
    TYPE_MARKET,
)
from engine.kernels.jit import kernel
from engine.kernels.layout import (
    C_EVENTS,
    C_FREE_HEAD,
    C_LIVE_ORDERS,
    C_NEXT_OID,
    C_NEXT_TRADE,
    C_SLOTS_USED,
    LADDER_SPAN_MIN,
    LADDER_WIDTH_MAX,
)


def ladder_grown(lo, hi, need):
    """The ladder ``[lo, hi]`` grown to cover the price ``need``, with a quarter of headroom on
    the side that grew. The one rule: ``MatchingEngine`` grows ladders by it, and the kernel
    refuses (``PRICE_TOO_FAR``) an order whose grown ladder would pass ``LADDER_WIDTH_MAX``."""
    if need < lo:
        lo = max(1, need - (hi - need) // 4)
    if need > hi:
        hi = need + (need - lo) // 4
    return lo, hi


_ladder_grown = kernel(inline=True)(ladder_grown)


@kernel
def level_index(instruments, inst, side, price):
    """Row in ``levels`` of one price of one side of an instrument's ladder."""
    row = instruments[inst]
    return row["level_base"] + side * row["ladder_width"] + (price - row["ladder_lo"])


@kernel
def emit(events, counters, cmd_i, kind, side, code, inst, oid, account, pos_slot, price_limit,
         price, qty):
    """Append one event about one order; returns its row so fills can add the maker fields."""
    e = counters[C_EVENTS]
    counters[C_EVENTS] = e + 1
    ev = events[e]
    ev["cmd"] = cmd_i
    ev["kind"] = kind
    ev["side"] = side
    ev["code"] = code
    ev["instrument"] = inst
    ev["oid"] = oid
    ev["account"] = account
    ev["pos_slot"] = pos_slot
    ev["price_limit"] = price_limit
    ev["maker_oid"] = 0
    ev["maker_account"] = 0
    ev["maker_pos_slot"] = 0
    ev["maker_price"] = 0
    ev["price"] = price
    ev["qty"] = qty
    ev["trade_id"] = 0
    return e


@kernel
def emit_fill(events, fills, out, counters, cmd_i, inst, taker_side, oid, account, pos_slot,
              price_limit, orders, maker_slot, price, qty):
    """Append one trade between a taker and the resting order in ``maker_slot``.

    Under ``OUT_FILLS`` the trade is a lean ``fills`` row; it still takes a trade id, so ids
    never depend on what a batch writes.
    """
    if out == OUT_FILLS:
        e = counters[C_EVENTS]
        counters[C_EVENTS] = e + 1
        f = fills[e]
        f["maker_oid"] = orders[maker_slot]["oid"]
        f["oid"] = oid
        f["price"] = price
        f["qty"] = qty
        counters[C_NEXT_TRADE] += 1
        return
    e = emit(events, counters, cmd_i, EV_FILL, taker_side, 0, inst, oid, account, pos_slot,
             price_limit, price, qty)
    ev = events[e]
    maker = orders[maker_slot]
    ev["maker_oid"] = maker["oid"]
    ev["maker_account"] = maker["account"]
    ev["maker_pos_slot"] = maker["pos_slot"]
    ev["maker_price"] = maker["price"]
    ev["trade_id"] = counters[C_NEXT_TRADE]
    counters[C_NEXT_TRADE] += 1


@kernel
def emit_order_cancelled(events, counters, cmd_i, orders, slot, qty, reason):
    """Append the cancellation of ``qty`` units of a resting order."""
    o = orders[slot]
    emit(events, counters, cmd_i, EV_CANCELLED, o["side"], reason, o["instrument"], o["oid"],
         o["account"], o["pos_slot"], o["price"], o["price"], qty)


@kernel
def best_price(instruments, inst, side):
    if side == SIDE_BUY:
        return instruments[inst]["best_bid"]
    return instruments[inst]["best_ask"]


@kernel
def crosses(side, limit, opposite_price):
    """Whether an order on ``side`` with ``limit`` can trade with a resting ``opposite_price``."""
    if opposite_price == NO_PRICE:
        return False
    if side == SIDE_BUY:
        return opposite_price <= limit
    return opposite_price >= limit


@kernel
def refresh_best(levels, instruments, inst, side, from_price):
    """Set the side's best price to the first non-empty level at or beyond ``from_price``.

    Bids are searched downwards, asks upwards. An empty side is known from its order count, so
    the scan only walks the gap between two live levels.
    """
    row = instruments[inst]
    lo = row["ladder_lo"]
    hi = lo + row["ladder_width"] - 1
    if side == SIDE_BUY:
        if row["orders_bid"] == 0:
            row["best_bid"] = NO_PRICE
            return
        base = row["level_base"] - lo
        p = from_price
        while p >= lo and levels[base + p]["head"] < 0:
            p -= 1
        row["best_bid"] = p if p >= lo else NO_PRICE
    else:
        if row["orders_ask"] == 0:
            row["best_ask"] = NO_PRICE
            return
        base = row["level_base"] + row["ladder_width"] - lo
        p = from_price
        while p <= hi and levels[base + p]["head"] < 0:
            p += 1
        row["best_ask"] = p if p <= hi else NO_PRICE


@kernel(inline=True)
def add_order(orders, levels, instruments, oid_index, counters, inst, side, price, qty, filled,
              oid, account, pos_slot, stp):
    """Put an order at the tail of its level (it has the lowest time priority there)."""
    slot = counters[C_FREE_HEAD]
    if slot >= 0:
        counters[C_FREE_HEAD] = orders[slot]["next"]
    else:
        slot = counters[C_SLOTS_USED]
        counters[C_SLOTS_USED] = slot + 1
    li = level_index(instruments, inst, side, price)
    level = levels[li]
    o = orders[slot]
    o["oid"] = oid
    o["price"] = price
    o["qty"] = qty
    o["filled"] = filled
    o["account"] = account
    o["pos_slot"] = pos_slot
    o["instrument"] = inst
    o["side"] = side
    o["stp"] = stp
    o["next"] = -1
    o["prev"] = level["tail"]
    if level["tail"] >= 0:
        orders[level["tail"]]["next"] = slot
    else:
        level["head"] = slot
    level["tail"] = slot
    level["qty"] += qty
    oid_index[oid] = slot
    counters[C_LIVE_ORDERS] += 1
    row = instruments[inst]
    if side == SIDE_BUY:
        row["orders_bid"] += 1
        if row["best_bid"] == NO_PRICE or price > row["best_bid"]:
            row["best_bid"] = price
    else:
        row["orders_ask"] += 1
        if row["best_ask"] == NO_PRICE or price < row["best_ask"]:
            row["best_ask"] = price
    return slot


@kernel
def remove_order(orders, levels, instruments, oid_index, counters, slot):
    """Unlink an order from its level, free its slot and move the best price if it was there."""
    o = orders[slot]
    inst = o["instrument"]
    side = o["side"]
    price = o["price"]
    li = level_index(instruments, inst, side, price)
    level = levels[li]
    prev = o["prev"]
    nxt = o["next"]
    if prev >= 0:
        orders[prev]["next"] = nxt
    else:
        level["head"] = nxt
    if nxt >= 0:
        orders[nxt]["prev"] = prev
    else:
        level["tail"] = prev
    level["qty"] -= o["qty"]
    oid_index[o["oid"]] = -1
    o["oid"] = 0
    o["qty"] = 0
    o["next"] = counters[C_FREE_HEAD]
    counters[C_FREE_HEAD] = slot
    counters[C_LIVE_ORDERS] -= 1
    row = instruments[inst]
    if side == SIDE_BUY:
        row["orders_bid"] -= 1
    else:
        row["orders_ask"] -= 1
    if level["head"] < 0 and price == best_price(instruments, inst, side):
        refresh_best(levels, instruments, inst, side, price)


@kernel(inline=True)
def band_high(row):
    """The highest limit price an instrument accepts now.

    ``band_hi`` alone, or, when the instrument's band follows the market (``band_multiple``
    > 0), that multiple of the last trade price (the reference price before the first trade),
    capped at ``band_hi``. Each fill moves it at once, for the next command of the same batch.
    """
    high = row["band_hi"]
    multiple = row["band_multiple"]
    if multiple > 0:
        reference = row["last_price"] if row["last_price"] > 0 else row["reference_price"]
        if 0 < reference <= high // multiple:
            high = multiple * reference
    return high


@kernel(inline=True)
def ladder_range(row, resting_lo, resting_hi, need):
    """The prices ``(lo, hi)`` an instrument's ladder is to cover at a relayout: its resting
    orders' prices ``[resting_lo, resting_hi]`` (an empty range, lo > hi, without any) and, for
    a band that follows the market, ``need`` (a price an order needs, 0 for none).

    A fixed band (``band_multiple`` 0): the band and every resting order, plus a quarter of
    headroom above. A band that follows the market can reach from 1 fen to 5x the price,
    and a dense ladder over all of it would cost memory in proportion to the price: the
    ladder starts at the reference price +- a tenth and only grows, to cover the resting
    orders and each order that needs more room, with a quarter of headroom on the side that
    grew (``ladder_grown``). It never shrinks, so the layout depends only on the commands.
    """
    if row["band_multiple"] == 0:
        lo = row["band_lo"]
        hi = band_high(row)
        if resting_lo <= resting_hi:
            lo, hi = min(lo, resting_lo), max(hi, resting_hi)
        return lo, hi + (hi - lo) // 4
    if row["ladder_width"]:
        lo, hi = row["ladder_lo"], row["ladder_lo"] + row["ladder_width"] - 1
    else:
        reference = row["reference_price"]
        span = min(max(reference // 10, LADDER_SPAN_MIN), LADDER_WIDTH_MAX // 8)
        lo, hi = max(1, reference - span), reference + span
    if resting_lo <= resting_hi:
        lo, hi = min(lo, resting_lo), max(hi, resting_hi)
    if need > 0:
        lo, hi = _ladder_grown(lo, hi, need)
    return lo, hi


@kernel
def resting_price_ranges(orders, used, lowest, highest):
    """Each instrument's lowest and highest resting price (its row of ``lowest``/``highest``,
    which the caller fills with the int64 maximum/minimum), in one pass over the first ``used``
    order slots; returns how many orders rest, or -1 if one names an instrument beyond them."""
    count = 0
    for slot in range(used):
        o = orders[slot]
        if o["oid"] == 0:
            continue
        inst = o["instrument"]
        if inst < 0 or inst >= len(lowest):
            return -1
        price = o["price"]
        if price < lowest[inst]:
            lowest[inst] = price
        if price > highest[inst]:
            highest[inst] = price
        count += 1
    return count


@kernel
def lay_out_ladders(instruments, lowest, highest, need_inst, need_price):
    """Lay every active instrument's ladder out anew (``ladder_range``, from the resting
    prices of ``resting_price_ranges``; ``need_price`` for instrument ``need_inst``, 0 for
    none), one after the other in instrument order: each row's ``ladder_lo``,
    ``ladder_width`` and ``level_base``. Returns ``(levels, 0, 0)``, the number of levels
    they take, or ``(-1, inst, width)`` at the first instrument whose ladder would be wider
    than ``LADDER_WIDTH_MAX`` (the rows before it already laid out, those after untouched)."""
    base = 0
    for inst in range(len(instruments)):
        row = instruments[inst]
        if row["active"] == 0:
            continue
        lo, hi = ladder_range(row, lowest[inst], highest[inst],
                              need_price if inst == need_inst else 0)
        width = hi - lo + 1
        if width > LADDER_WIDTH_MAX:
            return -1, inst, width
        row["ladder_lo"] = lo
        row["ladder_width"] = width
        row["level_base"] = base
        base += 2 * width
    return base, 0, 0


@kernel(inline=True)
def check_new(instruments, cmd):
    """Static checks of a new order; returns (code, limit price used for matching).

    A market order's limit is the band edge, so it never trades outside the band and a market
    buy's cash reservation (limit x qty) covers any fill. A limit order inside the band but
    outside the instrument's ladder gets ``NEEDS_LADDER``: the caller widens the ladder and
    sends it again; ``PRICE_TOO_FAR`` if the widened ladder would pass ``LADDER_WIDTH_MAX`` (a
    bid for a small fraction of a high price, say). (A market order needs no ladder room: it
    never rests, and no resting order lies beyond the ladder.)
    """
    inst = cmd["instrument"]
    if inst <= 0 or inst >= len(instruments) or instruments[inst]["active"] == 0:
        return INSTRUMENT_NOT_FOUND, 0
    side = cmd["side"]
    if cmd["qty"] <= 0 or (side != SIDE_BUY and side != SIDE_SELL):
        return INVALID_FIELD, 0
    if cmd["tif"] < TIF_GTC or cmd["tif"] > TIF_FOK or cmd["stp"] < STP_NONE:
        return INVALID_FIELD, 0
    if cmd["stp"] > STP_DECREMENT or cmd["post_only"] < 0 or cmd["post_only"] > 1:
        return INVALID_FIELD, 0
    row = instruments[inst]
    if cmd["type"] == TYPE_LIMIT:
        limit = cmd["price"]
        if limit < row["band_lo"] or limit > band_high(row):
            return PRICE_OUT_OF_BAND, 0
        if limit < row["ladder_lo"] or limit >= row["ladder_lo"] + row["ladder_width"]:
            lo, hi = _ladder_grown(row["ladder_lo"], row["ladder_lo"] + row["ladder_width"] - 1,
                                   limit)
            if hi - lo + 1 > LADDER_WIDTH_MAX:
                return PRICE_TOO_FAR, 0
            return NEEDS_LADDER, 0
    elif cmd["type"] == TYPE_MARKET:
        limit = band_high(row) if side == SIDE_BUY else row["band_lo"]
        if cmd["post_only"] == 1:
            return INVALID_FIELD, 0
    else:
        return INVALID_FIELD, 0
    if cmd["post_only"] == 1 and cmd["tif"] != TIF_GTC:
        return INVALID_FIELD, 0
    if row["mode"] == MODE_AUCTION and (cmd["type"] != TYPE_LIMIT or cmd["tif"] != TIF_GTC
                                        or cmd["post_only"] == 1):
        return NOT_PERMITTED, 0
    return OK, limit


@kernel
def fok_fillable(orders, levels, instruments, inst, side, limit, qty, account, stp):
    """Whether a FOK order would fill completely, walking the book as matching would.

    Under cancel_oldest the taker's own orders would be cancelled and skipped; under every
    other mode meeting one stops (or decrements) the taker before it is filled.
    """
    opposite = 1 - side
    need = qty
    price = best_price(instruments, inst, opposite)
    step = 1 if side == SIDE_BUY else -1
    row = instruments[inst]
    lo = row["ladder_lo"]
    hi = lo + row["ladder_width"] - 1
    while need > 0 and crosses(side, limit, price) and lo <= price <= hi:
        slot = levels[level_index(instruments, inst, opposite, price)]["head"]
        while slot >= 0 and need > 0:
            o = orders[slot]
            if stp != STP_NONE and o["account"] == account:
                if stp != STP_CANCEL_OLDEST:
                    return False
            else:
                need -= min(need, o["qty"])
            slot = o["next"]
        price += step
    return need == 0


@kernel(inline=True)
def match(orders, levels, instruments, oid_index, counters, events, fills, out, cmd_i, inst,
          side, limit, qty, oid, account, pos_slot, stp):
    """Trade a taker against the book; returns (units left, whether STP stopped the taker)."""
    opposite = 1 - side
    rem = qty
    while rem > 0:
        price = best_price(instruments, inst, opposite)
        if not crosses(side, limit, price):
            break
        level = levels[level_index(instruments, inst, opposite, price)]
        slot = level["head"]
        while slot >= 0 and rem > 0:
            o = orders[slot]
            nxt = o["next"]
            if stp != STP_NONE and o["account"] == account:
                if stp == STP_CANCEL_NEWEST:
                    return rem, True
                if stp == STP_DECREMENT:
                    d = min(rem, o["qty"])
                    rem -= d
                    if out != OUT_FILLS:
                        emit_order_cancelled(events, counters, cmd_i, orders, slot, d,
                                             REASON_SELF_TRADE)
                        emit(events, counters, cmd_i, EV_CANCELLED, side, REASON_SELF_TRADE,
                             inst, oid, account, pos_slot, limit, limit, d)
                    o["qty"] -= d
                    level["qty"] -= d
                    if o["qty"] == 0:
                        remove_order(orders, levels, instruments, oid_index, counters, slot)
                else:
                    if out != OUT_FILLS:
                        emit_order_cancelled(events, counters, cmd_i, orders, slot, o["qty"],
                                             REASON_SELF_TRADE)
                    remove_order(orders, levels, instruments, oid_index, counters, slot)
                    if stp == STP_CANCEL_BOTH:
                        return rem, True
            else:
                q = min(rem, o["qty"])
                emit_fill(events, fills, out, counters, cmd_i, inst, side, oid, account,
                          pos_slot, limit, orders, slot, price, q)
                instruments[inst]["last_price"] = price
                rem -= q
                o["qty"] -= q
                o["filled"] += q
                level["qty"] -= q
                if o["qty"] == 0:
                    remove_order(orders, levels, instruments, oid_index, counters, slot)
            slot = nxt
    return rem, False


@kernel(inline=True)
def place(orders, levels, instruments, oid_index, counters, events, fills, out, cmd_i, cmd,
          limit):
    """Execute a checked new order: post-only and FOK refusals, matching, then rest or drop.

    Returns the result code; the order gets an id only when it is not refused.
    """
    inst = cmd["instrument"]
    side = cmd["side"]
    qty = cmd["qty"]
    account = cmd["account"]
    stp = cmd["stp"]
    full = out == OUT_ALL
    opposite_best = best_price(instruments, inst, 1 - side)
    auction = instruments[inst]["mode"] == MODE_AUCTION
    if cmd["post_only"] == 1 and crosses(side, limit, opposite_best):
        return POST_ONLY_WOULD_CROSS
    if cmd["tif"] == TIF_FOK and not fok_fillable(orders, levels, instruments, inst, side, limit,
                                                 qty, account, stp):
        return FOK_NOT_FILLABLE
    oid = counters[C_NEXT_OID]
    counters[C_NEXT_OID] = oid + 1
    pos_slot = cmd["pos_slot"]
    if full:
        emit(events, counters, cmd_i, EV_ACCEPTED, side, 0, inst, oid, account, pos_slot, limit,
             limit, qty)
    rem = qty
    stopped = False
    if not auction:
        rem, stopped = match(orders, levels, instruments, oid_index, counters, events, fills,
                             out, cmd_i, inst, side, limit, qty, oid, account, pos_slot, stp)
    if rem == 0:
        return OK
    if stopped or cmd["type"] == TYPE_MARKET or cmd["tif"] == TIF_IOC:
        if full:
            reason = REASON_SELF_TRADE if stopped else REASON_UNFILLED_REST
            emit(events, counters, cmd_i, EV_CANCELLED, side, reason, inst, oid, account,
                 pos_slot, limit, limit, rem)
        return OK
    add_order(orders, levels, instruments, oid_index, counters, inst, side, limit, rem,
              qty - rem, oid, account, pos_slot, stp)
    if full:
        emit(events, counters, cmd_i, EV_RESTED, side, 0, inst, oid, account, pos_slot, limit,
             limit, rem)
    return OK


@kernel(inline=True)
def cancel(orders, levels, instruments, oid_index, counters, events, out, cmd_i, oid, account):
    """Cancel a resting order; account 0 (an operator or a benchmark) skips the owner check."""
    if oid <= 0 or oid >= len(oid_index) or oid_index[oid] < 0:
        return ORDER_NOT_FOUND
    slot = oid_index[oid]
    if account != 0 and orders[slot]["account"] != account:
        return ORDER_NOT_FOUND
    if out == OUT_ALL:
        emit_order_cancelled(events, counters, cmd_i, orders, slot, orders[slot]["qty"],
                             REASON_REQUESTED)
    remove_order(orders, levels, instruments, oid_index, counters, slot)
    return OK


@kernel(inline=True)
def check_amend_price(instruments, inst, price):
    """The band and ladder checks of a new limit price for a resting order (``check_new``'s
    for a limit order): OK, PRICE_OUT_OF_BAND, NEEDS_LADDER or PRICE_TOO_FAR."""
    row = instruments[inst]
    if price < row["band_lo"] or price > band_high(row):
        return PRICE_OUT_OF_BAND
    if price < row["ladder_lo"] or price >= row["ladder_lo"] + row["ladder_width"]:
        lo, hi = _ladder_grown(row["ladder_lo"], row["ladder_lo"] + row["ladder_width"] - 1,
                               price)
        if hi - lo + 1 > LADDER_WIDTH_MAX:
            return PRICE_TOO_FAR
        return NEEDS_LADDER
    return OK


@kernel(inline=True)
def reduce_in_place(orders, levels, instruments, events, counters, out, cmd_i, slot, qty):
    """An amend that only lowers the quantity: the order keeps its place in the queue."""
    o = orders[slot]
    levels[level_index(instruments, o["instrument"], o["side"], o["price"])]["qty"] -= (
        o["qty"] - qty)
    o["qty"] = qty
    if out == OUT_ALL:
        emit(events, counters, cmd_i, EV_AMENDED, o["side"], AMEND_KEPT_PRIORITY,
             o["instrument"], o["oid"], o["account"], o["pos_slot"], o["price"], o["price"], qty)


@kernel(inline=True)
def reenter(orders, levels, instruments, oid_index, counters, events, fills, out, cmd_i, slot,
            price, qty):
    """An amend to a new price or a larger quantity: the order leaves the book and comes in
    again with its id, at the back of its level, trading first like a new order would."""
    o = orders[slot]
    oid, account, pos_slot, stp = o["oid"], o["account"], o["pos_slot"], o["stp"]
    inst, side, filled = o["instrument"], o["side"], o["filled"]
    remove_order(orders, levels, instruments, oid_index, counters, slot)
    if out == OUT_ALL:
        emit(events, counters, cmd_i, EV_AMENDED, side, AMEND_REENTERED, inst, oid, account,
             pos_slot, price, price, qty)
    rem = qty
    stopped = False
    if instruments[inst]["mode"] != MODE_AUCTION:
        rem, stopped = match(orders, levels, instruments, oid_index, counters, events, fills,
                             out, cmd_i, inst, side, price, qty, oid, account, pos_slot, stp)
    if rem == 0:
        return
    if stopped:
        if out == OUT_ALL:
            emit(events, counters, cmd_i, EV_CANCELLED, side, REASON_SELF_TRADE, inst, oid,
                 account, pos_slot, price, price, rem)
        return
    add_order(orders, levels, instruments, oid_index, counters, inst, side, price, rem,
              filled + qty - rem, oid, account, pos_slot, stp)
    if out == OUT_ALL:
        emit(events, counters, cmd_i, EV_RESTED, side, 0, inst, oid, account, pos_slot, price,
             price, rem)


@kernel(inline=True)
def _empty_levels(levels, first, stop):
    for li in range(first, stop):
        level = levels[li]
        level["qty"] = 0
        level["head"] = -1
        level["tail"] = -1


@kernel(inline=True)
def _any_queue(levels, first, stop):
    for li in range(first, stop):
        if levels[li]["head"] >= 0:
            return True
    return False


@kernel
def moved_levels(old_levels, levels, instruments, old_lo, old_width, old_base):
    """Fill ``levels`` (uninitialised, as long as the new layout) from ``old_levels``: each
    level of each active instrument's new ladder (``lay_out_ladders``) takes the queue (head,
    tail, total) of the same price and side in the old one (``old_lo``/``old_width``/
    ``old_base``: each instrument's ladder before), or is empty. The orders' links stay as
    they are: a level's queue and its order are the same, only where it sits changes. This
    is what ``relink`` of every level's queue gives, for a book whose lists and totals agree.

    Returns 0, or -1 if an old level off the new ladder held a queue (its orders would be
    lost; a new ladder covers every resting order's price, so never in a sound book)."""
    for inst in range(len(instruments)):
        row = instruments[inst]
        if row["active"] == 0:
            continue
        lo, width = row["ladder_lo"], row["ladder_width"]
        was_lo, was_width = old_lo[inst], old_width[inst]
        # The prices [start, stop) both ladders cover: none if the instrument had no ladder.
        start = min(max(lo, was_lo), lo + width)
        stop = max(min(lo + width, was_lo + was_width), start)
        for side in range(2):
            new_first = row["level_base"] + side * width - lo  # level of price 0
            old_first = old_base[inst] + side * was_width - was_lo
            _empty_levels(levels, new_first + lo, new_first + start)
            for price in range(start, stop):
                level, was = levels[new_first + price], old_levels[old_first + price]
                level["qty"] = was["qty"]
                level["head"] = was["head"]
                level["tail"] = was["tail"]
            _empty_levels(levels, new_first + stop, new_first + lo + width)
            if was_width and (
                    _any_queue(old_levels, old_first + was_lo,
                               old_first + max(was_lo, min(start, was_lo + was_width)))
                    or _any_queue(old_levels, old_first + max(stop, was_lo),
                                  old_first + was_lo + was_width)):
                return -1
    return 0


@kernel
def relink(orders, levels, instruments, slots):
    """Rebuild every level list from ``slots``: each order is appended to its level's list,
    so only the order within a level matters (``MatchingEngine._relayout`` under rules 4
    and older: order id order; later rules keep the queues, ``moved_levels``)."""
    for k in range(len(slots)):
        slot = slots[k]
        o = orders[slot]
        li = level_index(instruments, o["instrument"], o["side"], o["price"])
        level = levels[li]
        o["next"] = -1
        o["prev"] = level["tail"]
        if level["tail"] >= 0:
            orders[level["tail"]]["next"] = slot
        else:
            level["head"] = slot
        level["tail"] = slot
        level["qty"] += o["qty"]
