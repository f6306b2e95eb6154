"""Allocation kernels for primary offerings: pro-rata, first-come quota, uniform-price rates.

They take plain int64 arrays (one row per subscription, in subscription order) and return
allocations; the boards layer decides when to call which and moves the money afterwards.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from engine.kernels.codes import AMOUNT_TOO_LARGE, EXCEEDS_REMAINING, OK, SOLD_OUT

INT64_MAX = 9_223_372_036_854_775_807


@njit(cache=True)
def pro_rata(requested, sequence, account, available, out):
    """Split ``available`` units pro rata to ``requested``, whole units by largest remainder.

    Each subscription gets ``floor(requested * available / total)``; the units left over go one
    each to the largest remainders, ties to the earlier sequence, then the lower account id.
    When demand does not exceed supply everyone gets what they asked for. Returns a code:
    ``AMOUNT_TOO_LARGE`` when the total or a product would overflow int64 (the caller then uses
    the reference, whose Python integers have no bound).
    """
    n = len(requested)
    total = 0
    for i in range(n):
        if requested[i] > INT64_MAX - total:
            return AMOUNT_TOO_LARGE  # the sum would wrap and look as if everything fits
        total += requested[i]
    if total <= available:
        for i in range(n):
            out[i] = requested[i]
        return OK
    remainder = np.zeros(n, dtype=np.int64)
    given = 0
    for i in range(n):
        if requested[i] > 0 and available > INT64_MAX // requested[i]:
            return AMOUNT_TOO_LARGE
        share = requested[i] * available
        out[i] = share // total
        remainder[i] = share % total
        given += out[i]
    # Stable sorts from the least significant key: account, then sequence, then remainder.
    order = np.argsort(account, kind="mergesort")
    order = order[np.argsort(sequence[order], kind="mergesort")]
    order = order[np.argsort(-remainder[order], kind="mergesort")]
    for j in range(available - given):
        out[order[j]] += 1
    return OK


@njit(cache=True)
def first_come_code(requested, remaining):
    """The code of one pledge of ``requested`` where ``remaining`` are left (< 0: unlimited):
    ``OK``, or ``SOLD_OUT`` once nothing remains, or ``EXCEEDS_REMAINING`` if it is larger
    than what remains (taken whole or not at all)."""
    if remaining < 0:
        return OK
    if remaining == 0:
        return SOLD_OUT
    if requested > remaining:
        return EXCEEDS_REMAINING
    return OK


@njit(cache=True)
def first_come(requested, capacity, codes, out):
    """Take pledges in arrival order, each whole or not at all; never sells more than capacity.

    ``capacity`` < 0 means unlimited. A pledge larger than what remains is refused with
    ``EXCEEDS_REMAINING`` (``SOLD_OUT`` once nothing remains): ``first_come_code``. Returns
    what remains (-1 if unlimited).
    """
    remaining = capacity
    for i in range(len(requested)):
        code = first_come_code(requested[i], remaining)
        codes[i] = code
        if code == OK:
            out[i] = requested[i]
            if remaining >= 0:
                remaining -= requested[i]
        else:
            out[i] = 0
    return remaining


@njit(cache=True)
def rate_auction(rate_bps, sequence, requested, available, out):
    """Uniform-price rate auction: lowest rates first (then earlier sequence) until supply ends.

    The marginal bid is filled in part; every filled bid gets the clearing rate, the highest
    rate filled. Returns the clearing rate in bps (0 when nothing is filled).
    """
    order = np.argsort(sequence, kind="mergesort")
    order = order[np.argsort(rate_bps[order], kind="mergesort")]
    left = available
    clearing = 0
    for i in range(len(order)):
        out[i] = 0
    for j in range(len(order)):
        i = order[j]
        if left == 0:
            break
        take = min(left, requested[i])
        if take > 0:
            out[i] = take
            left -= take
            clearing = rate_bps[i]
    return clearing
