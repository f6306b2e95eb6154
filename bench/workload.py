"""Seeded generators of realistic order-flow workloads, in the replay format of API.md.

The mix: new limit orders around a drifting mid price (a few ticks inside or through the
spread, so some cross), cancels aimed mostly at recently placed orders (live cancels) and
some at unknown ids, and market orders. Everything is vectorised numpy, so generating a
million rows takes well under a second.
"""

from __future__ import annotations

import numpy as np

MID_START_FEN = 10_000


def generate(n: int, seed: int, *, cancel_share: float = 0.25, market_share: float = 0.10,
             spread_ticks: int = 40) -> dict[str, np.ndarray]:
    """``n`` rows of ``op/side/price/qty/oid`` (one instrument), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    roll = rng.random(n)
    op = np.zeros(n, dtype=np.int64)
    op[roll < cancel_share + market_share] = 2
    op[roll < cancel_share] = 1
    op[0] = 0  # the first row must place an order for cancels to aim at
    side = rng.integers(0, 2, n, dtype=np.int64)
    walk = np.cumsum(rng.integers(-1, 2, n, dtype=np.int64))
    mid = MID_START_FEN + walk // 8
    # Buys sit below the mid and sells above it; a tenth of orders reach through the mid.
    offset = rng.integers(0, spread_ticks, n, dtype=np.int64) - (rng.random(n) < 0.1) * 8
    price = np.where(side == 0, mid - offset, mid + offset)
    qty = rng.integers(1, 101, n, dtype=np.int64)
    is_new = op != 1
    oid = np.zeros(n, dtype=np.int64)
    oid[is_new] = np.arange(1, int(is_new.sum()) + 1)
    placed = np.maximum.accumulate(oid)  # the latest id placed so far, per row
    back = rng.geometric(0.02, n).astype(np.int64)  # most cancels hit recent orders
    target = np.maximum(placed - back + 1, 1)
    unknown = rng.random(n) < 0.05
    target[unknown] = placed[unknown] + 1_000_000_000  # never placed
    cancels = op == 1
    oid[cancels] = target[cancels]
    price[cancels] = 0
    qty[cancels] = 0
    price[op == 2] = 0
    return {"op": op, "side": side, "price": price, "qty": qty, "oid": oid}


def save(path: str, workload: dict[str, np.ndarray]) -> None:
    """Write a workload as a replay ``.npz`` file."""
    np.savez(path, **workload)
