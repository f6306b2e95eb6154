"""The trade tape and the candles: one compiled pass over a kernel call's fills.

Every instrument that has traded owns a slot. A slot has rings of rows: ring 0 its recent
trades, ring ``1 + j`` its candles of interval ``j`` (``engine.marketdata.INTERVALS_US``
order). Each ring holds ``ring_pages * page_rows`` rows, the newest row of a ring that has
recorded ``n`` is its row ``(n - 1) % ring_rows``, and the rows live in pages of a shared pool
(one for trades, one for candles), taken from the pool the first time the ring reaches them: an
instrument with a few trades holds a page of each, not a thousand rows. Nothing is ever freed
(a tape is kept as long as the venue), so which page a ring got depends only on the order of
the trades: replaying the journal, however cut into calls, gives the same arrays.

Nothing grows in compiled code: the kernel stops before a trade that might not fit (a slot and
a page of each ring), the caller grows the arrays and calls it again from there
(``engine.marketdata.MarketData.record``).

The rules are those of the Python tape this replaced (``engine.reference.marketdata``), which
the property tests compare it with: each trade goes on the tape; for each interval, a trade
whose interval start (its time less the time modulo the width, aligned to the epoch) is not
the newest candle's opens a new candle at its price with no volume; the newest candle then
takes the trade: a higher high, a lower low, its price as the close, its quantity as volume.
"""

from __future__ import annotations

from engine.kernels.codes import EV_FILL, SIDE_BUY
from engine.kernels.jit import kernel

# What ``used`` counts: slots taken, pages taken from each pool.
U_SLOTS = 0
U_TRADE_PAGES = 1
U_CANDLE_PAGES = 2
USED_LEN = 3

RING_TRADES = 0  # ring 1 + j: the candles of interval j


@kernel
def record_trades(fills, start, time_us, times, widths, slot_of, slot_instrument, counts,
                  pages, trade_rows, candle_rows, used, page_rows):
    """Put the fills of ``fills[start:]`` (``EVENT_DTYPE`` rows, in order, all made at
    ``time_us``, or each at its ``times`` row if ``times`` has rows, never going down; rows of
    other kinds are skipped) on their instruments' tapes and candles.
    Return the index of the first fill not recorded: ``len(fills)``, or one that needs room
    first (its instrument beyond ``slot_of``, no slot left, or fewer free pages in a pool than
    one trade may take); recording on from there after making room gives what one pass
    would have."""
    ring_rows = pages.shape[2] * page_rows
    trade_pages = len(trade_rows) // page_rows
    candle_pages = len(candle_rows) // page_rows
    for i in range(start, len(fills)):
        f = fills[i]
        if f["kind"] != EV_FILL:
            continue
        inst = f["instrument"]
        if inst >= len(slot_of):
            return i
        slot = slot_of[inst] - 1
        if ((slot < 0 and used[U_SLOTS] >= len(slot_instrument))
                or used[U_TRADE_PAGES] + 1 > trade_pages
                or used[U_CANDLE_PAGES] + len(widths) > candle_pages):
            return i
        if slot < 0:
            slot = used[U_SLOTS]
            used[U_SLOTS] = slot + 1
            slot_of[inst] = slot + 1
            slot_instrument[slot] = inst
        price = f["price"]
        qty = f["qty"]
        made_us = times[i] if len(times) else time_us
        n = counts[slot, RING_TRADES]
        row = _row(pages, slot, RING_TRADES, n % ring_rows, page_rows, used, U_TRADE_PAGES)
        counts[slot, RING_TRADES] = n + 1
        t = trade_rows[row]
        t["trade_id"] = f["trade_id"]
        t["price"] = price
        t["qty"] = qty
        t["time_us"] = made_us
        t["taker_side"] = f["side"]
        if f["side"] == SIDE_BUY:
            t["buy_oid"] = f["oid"]
            t["sell_oid"] = f["maker_oid"]
        else:
            t["buy_oid"] = f["maker_oid"]
            t["sell_oid"] = f["oid"]
        for j in range(len(widths)):
            _into_candle(slot, 1 + j, made_us - made_us % widths[j], price, qty, counts, pages,
                         candle_rows, used, page_rows, ring_rows)
    return len(fills)


@kernel(inline=True)
def _into_candle(slot, ring, start_us, price, qty, counts, pages, candle_rows, used, page_rows,
                 ring_rows):
    """One trade into the newest candle of one interval, opening a new one when the trade's
    interval start is not that candle's."""
    n = counts[slot, ring]
    last = -1
    fresh = n == 0
    if not fresh:
        last = _row(pages, slot, ring, (n - 1) % ring_rows, page_rows, used, U_CANDLE_PAGES)
        fresh = candle_rows[last]["start_us"] != start_us
    if fresh:
        last = _row(pages, slot, ring, n % ring_rows, page_rows, used, U_CANDLE_PAGES)
        counts[slot, ring] = n + 1
        c = candle_rows[last]
        c["start_us"] = start_us
        c["open"] = price
        c["high"] = price
        c["low"] = price
        c["close"] = price
        c["volume"] = 0
    c = candle_rows[last]
    if price > c["high"]:
        c["high"] = price
    if price < c["low"]:
        c["low"] = price
    c["close"] = price
    c["volume"] += qty


@kernel(inline=True)
def _row(pages, slot, ring, index, page_rows, used, pool):
    """The pool row of a ring's row ``index``, taking a fresh page from the pool if the ring
    has not reached that page before."""
    page = index // page_rows
    taken = pages[slot, ring, page]
    if taken == 0:  # page numbers are stored plus one: 0 is "none yet"
        taken = used[pool] + 1
        used[pool] = taken
        pages[slot, ring, page] = taken
    return (taken - 1) * page_rows + index % page_rows
