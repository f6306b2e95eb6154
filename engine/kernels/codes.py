"""The engine's one table of numeric result codes and of the enumerations kernels share.

Kernels return small integers; the names match the API's error codes (``engine/errors.py``)
so the gateway maps a kernel result to a refusal with ``CODE_NAMES[code]``. A number, once
given, is never reused for a different meaning: retired codes stay listed in ``RETIRED``.
"""

from __future__ import annotations

# ---- result codes (one per command) ---------------------------------------------------------
OK = 0
INSUFFICIENT_FUNDS = 1
INSUFFICIENT_HOLDINGS = 2
PRICE_OUT_OF_BAND = 3
POST_ONLY_WOULD_CROSS = 4
FOK_NOT_FILLABLE = 5
ORDER_NOT_FOUND = 6
INVALID_FIELD = 7
INSTRUMENT_NOT_FOUND = 8
NOT_PERMITTED = 9
SOLD_OUT = 10
EXCEEDS_REMAINING = 11
AMOUNT_TOO_LARGE = 12
ACCOUNT_NOT_FOUND = 13
PRICE_TOO_FAR = 14  # in the band, but its book's price ladder cannot reach that far
INVALID_AMEND = 15  # an amend's new quantity no more than what is filled or cancelled of it

CODE_NAMES: dict[int, str] = {
    OK: "ok",
    INSUFFICIENT_FUNDS: "insufficient_funds",
    INSUFFICIENT_HOLDINGS: "insufficient_holdings",
    PRICE_OUT_OF_BAND: "price_out_of_band",
    POST_ONLY_WOULD_CROSS: "post_only_would_cross",
    FOK_NOT_FILLABLE: "fok_not_fillable",
    ORDER_NOT_FOUND: "order_not_found",
    INVALID_FIELD: "invalid_field",
    INSTRUMENT_NOT_FOUND: "instrument_not_found",
    NOT_PERMITTED: "not_permitted",
    SOLD_OUT: "sold_out",
    EXCEEDS_REMAINING: "exceeds_remaining",
    AMOUNT_TOO_LARGE: "invalid_field",
    ACCOUNT_NOT_FOUND: "account_not_found",
    PRICE_TOO_FAR: "price_too_far",
    INVALID_AMEND: "invalid_amend",
}

# Not a result: ``book.check_new`` asks for the instrument's price ladder to be widened before
# the order is placed (a band that follows the market has outgrown it). ``run_batch`` stops
# there; the caller re-lays the ladder and resumes the batch at that command.
NEEDS_LADDER = -1

# Why a batch stopped before its end (``counters[C_STOP]``).
STOP_NONE = 0
STOP_EVENTS = 1  # out of room for events: grow them and resume
STOP_LADDER = 2  # a new order's price lies beyond its ladder: re-lay it and resume

# Numbers that were once given a meaning and must never be handed out again.
RETIRED: dict[int, str] = {}

# ---- command operations ---------------------------------------------------------------------
OP_NEW = 0
OP_CANCEL = 1
OP_UNCROSS = 2  # call auction: uncross one instrument's book
OP_AMEND = 3  # a resting order's new price and remaining quantity (``oid``, ``price``, ``qty``)
# An amend's ``qty`` that keeps the order's remaining quantity as the amend finds it (a new
# price only: ``Markets._amend_later``).
AMEND_REMAINING = -1
# An amend row's ``stp`` that makes its ``qty`` the order's new quantity in all, of which the
# kernel takes what is filled or cancelled by then (``Markets._amend_later``): its ``price``
# 0 keeps the order's, and its ``pos_slot`` is the order's quantity in all before the call
# (-1: the order is one the call places, whose acceptance says it).
AMEND_BY_TOTAL = 1

# ---- order fields ---------------------------------------------------------------------------
SIDE_BUY = 0
SIDE_SELL = 1

TYPE_LIMIT = 0
TYPE_MARKET = 1

TIF_GTC = 0
TIF_IOC = 1
TIF_FOK = 2

# Self-trade prevention. NONE exists for the replay format, which has no accounts; the API's
# default is CANCEL_NEWEST. The taker's mode applies.
STP_NONE = 0
STP_CANCEL_NEWEST = 1
STP_CANCEL_OLDEST = 2
STP_CANCEL_BOTH = 3
STP_DECREMENT = 4

STP_BY_NAME = {
    "cancel_newest": STP_CANCEL_NEWEST,
    "cancel_oldest": STP_CANCEL_OLDEST,
    "cancel_both": STP_CANCEL_BOTH,
    "decrement": STP_DECREMENT,
}

MODE_BOOK = 0
MODE_AUCTION = 1

# ---- event kinds ----------------------------------------------------------------------------
EV_REJECTED = 1  # code = why; no order id was given
EV_ACCEPTED = 2  # the order got its id; qty = its quantity
EV_FILL = 3  # one trade
EV_RESTED = 4  # the order rests on the book with qty remaining
EV_CANCELLED = 5  # qty left the book unfilled; code = reason (below)
EV_UNCROSSED = 6  # auction summary: price, qty = volume, maker_oid = trade count
EV_AMENDED = 7  # an amend: price and qty (remaining) are the order's new ones; code below

# Why an order ended with an unfilled rest (the code field of EV_CANCELLED).
REASON_REQUESTED = 0  # a cancel command
REASON_UNFILLED_REST = 1  # market or IOC rest dropped
REASON_SELF_TRADE = 2  # self-trade prevention

# How an amend took effect (the code field of EV_AMENDED).
AMEND_KEPT_PRIORITY = 0  # the quantity only went down: same place in the queue
AMEND_REENTERED = 1  # a new price or more quantity: out of the book and in again, like a new
# order (it may trade at once), at the back of its level

EVENT_KIND_NAMES = {
    EV_REJECTED: "rejected",
    EV_ACCEPTED: "accepted",
    EV_FILL: "fill",
    EV_RESTED: "rested",
    EV_CANCELLED: "cancelled",
    EV_UNCROSSED: "uncrossed",
    EV_AMENDED: "amended",
}

# What a batch writes (the ``out`` argument of the batch kernels).
OUT_ALL = 2  # every event: the state machine's path
OUT_SETTLE = 1  # fills and the other events the risk stage settles (self-trade cancels, uncross)
OUT_FILLS = 0  # lean fill records only (``FILL_DTYPE``), no risk stage: the replay path

# Absence of a price (no best bid / ask). Prices are at least 1 fen.
NO_PRICE = 0
