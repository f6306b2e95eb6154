"""Plain-Python models of the allocation kernels (``engine.kernels.allocation``)."""

from __future__ import annotations

from engine.kernels.codes import EXCEEDS_REMAINING, OK, SOLD_OUT


def pro_rata(requested: list[int], sequence: list[int], account: list[int],
             available: int) -> list[int]:
    """Largest remainder; ties to the earlier sequence, then the lower account id."""
    total = sum(requested)
    if total <= available:
        return list(requested)
    out = [r * available // total for r in requested]
    left = available - sum(out)
    ranked = sorted(range(len(requested)),
                    key=lambda i: (-(requested[i] * available % total), sequence[i], account[i]))
    for i in ranked[:left]:
        out[i] += 1
    return out


def first_come(requested: list[int], capacity: int) -> tuple[list[int], list[int], int]:
    """``(codes, allocations, remaining)``; capacity < 0 is unlimited."""
    codes, out = [], []
    remaining = capacity
    for r in requested:
        if remaining < 0 or 0 < remaining and r <= remaining:
            codes.append(OK)
            out.append(r)
            if remaining >= 0:
                remaining -= r
        else:
            codes.append(SOLD_OUT if remaining == 0 else EXCEEDS_REMAINING)
            out.append(0)
    return codes, out, remaining


def rate_auction(rate_bps: list[int], sequence: list[int], requested: list[int],
                 available: int) -> tuple[list[int], int]:
    """``(allocations, clearing_rate_bps)``: lowest rates, then earliest, until supply ends."""
    out = [0] * len(requested)
    left = available
    clearing = 0
    for i in sorted(range(len(requested)), key=lambda i: (rate_bps[i], sequence[i])):
        take = min(left, requested[i])
        if take > 0:
            out[i] = take
            left -= take
            clearing = rate_bps[i]
    return out, clearing
