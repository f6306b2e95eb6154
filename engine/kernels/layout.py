"""Fixed numpy dtypes of the matching state, commands and events (sizes pinned by a test).

Every dtype is a structured dtype with ``align=True``: kernels index records field by field,
snapshots and the state hash cover the raw bytes, and the layout never depends on the platform.
Changing a field is a snapshot format change: bump ``LAYOUT_VERSION``.
"""

from __future__ import annotations

import numpy as np

LAYOUT_VERSION = 2

# One resting (or just-matched) order. ``next``/``prev`` are slots in the FIFO list of the
# order's price level (-1 ends the list); a free slot uses ``next`` as its free-list link.
ORDER_DTYPE = np.dtype(
    [
        ("oid", np.int64),  # 0 = free slot
        ("price", np.int64),  # limit price, fen per unit
        ("qty", np.int64),  # remaining units
        ("filled", np.int64),  # units executed so far
        ("account", np.int64),
        ("pos_slot", np.int64),  # the account's position row; the book only carries it
        ("instrument", np.int32),
        ("next", np.int32),
        ("prev", np.int32),
        ("side", np.int8),
        ("stp", np.int8),
    ],
    align=True,
)

# One price level of one side of one instrument: the FIFO list of its orders and their total.
# Prices (ticks) per side of one instrument's dense price ladder: 2^22 (~42,000 yuan of range).
LADDER_WIDTH_MAX = 1 << 22
# A market-following ladder starts at least this many ticks each way of its reference price
# (``kernels.book.ladder_range``).
LADDER_SPAN_MIN = 64

LEVEL_DTYPE = np.dtype(
    [("qty", np.int64), ("head", np.int32), ("tail", np.int32)],
    align=True,
)

# One instrument, row index = instrument id (row 0 unused). Its levels are a dense ladder of
# ``ladder_width`` prices from ``ladder_lo`` per side, starting at ``level_base``: bids first.
INSTRUMENT_DTYPE = np.dtype(
    [
        ("band_lo", np.int64),  # lowest accepted limit price, fen
        ("band_hi", np.int64),  # highest accepted limit price, fen
        ("ladder_lo", np.int64),
        ("ladder_width", np.int64),
        ("level_base", np.int64),
        ("best_bid", np.int64),  # NO_PRICE when the side is empty
        ("best_ask", np.int64),
        ("fee_bps", np.int64),  # seller fee per fill
        ("reference_price", np.int64),  # auction tie-break: last uncross, else offering price
        ("last_price", np.int64),  # last trade price, 0 before the first trade
        ("orders_bid", np.int64),  # resting buy orders, so an empty side is known at once
        ("orders_ask", np.int64),
        ("active", np.int8),
        ("mode", np.int8),  # MODE_BOOK or MODE_AUCTION
        # When > 0 the band's top follows the market: band_multiple x (last trade price, else
        # reference price), never above ``band_hi`` (``book.band_high``).
        ("band_multiple", np.int32),
    ],
    align=True,
)

# One command of a batch. ``pos_slot`` is filled in by the engine, not by the caller.
COMMAND_DTYPE = np.dtype(
    [
        ("op", np.int8),
        ("side", np.int8),
        ("type", np.int8),
        ("tif", np.int8),
        ("post_only", np.int8),
        ("stp", np.int8),
        ("instrument", np.int64),
        ("account", np.int64),
        ("price", np.int64),
        ("qty", np.int64),
        ("oid", np.int64),  # the order to cancel
        ("pos_slot", np.int64),
    ],
    align=True,
)

# One event. For a fill, ``oid``/``account``/``pos_slot``/``price_limit`` are the taker's and
# the ``maker_*`` fields the resting order's; for other kinds only the order's own fields are set.
EVENT_DTYPE = np.dtype(
    [
        ("cmd", np.int64),  # index of the command in its batch
        ("kind", np.int8),
        ("side", np.int8),  # the taker's (or the order's) side
        ("code", np.int16),  # result code or cancel reason
        ("instrument", np.int32),
        ("oid", np.int64),
        ("account", np.int64),
        ("pos_slot", np.int64),
        ("price_limit", np.int64),  # the reservation price of the order (market: band edge)
        ("maker_oid", np.int64),
        ("maker_account", np.int64),
        ("maker_pos_slot", np.int64),
        ("maker_price", np.int64),
        ("price", np.int64),  # execution price (fills), or the order's price
        ("qty", np.int64),
        ("trade_id", np.int64),
    ],
    align=True,
)

# One trade in a lean batch (``OUT_FILLS``): what the replay format hashes, and no more, so a
# fill writes 32 bytes instead of an event's 104. ``oid`` is the taker's, as in an event.
FILL_DTYPE = np.dtype(
    [
        ("maker_oid", np.int64),
        ("oid", np.int64),
        ("price", np.int64),  # execution price: the maker's limit
        ("qty", np.int64),
    ],
    align=True,
)

# Scalars of the matching state, kept in one int64 array so kernels can update them in place.
C_NEXT_OID = 0  # the next order id to give (ids start at 1)
C_NEXT_TRADE = 1  # the next trade id
C_FREE_HEAD = 2  # first free order slot below C_SLOTS_USED, -1 if none
C_SLOTS_USED = 3  # order slots ever handed out (high-water mark)
C_LIVE_ORDERS = 4  # orders resting on any book
C_EVENTS = 5  # events (or lean fills) written by the current batch
C_PROCESSED = 6  # commands of the current batch done (a batch stops early when out of room)
C_STOP = 7  # why the current batch stopped early: STOP_NONE, STOP_EVENTS or STOP_LADDER
COUNTERS_LEN = 8


def new_counters() -> np.ndarray:
    """Fresh scalar state: ids start at 1, no slots, no free list."""
    counters = np.zeros(COUNTERS_LEN, dtype=np.int64)
    counters[C_NEXT_OID] = 1
    counters[C_NEXT_TRADE] = 1
    counters[C_FREE_HEAD] = -1
    return counters
