"""An account's movements, newest first: those not yet settled from the engine, the settled ones
from the ledger (``GET /v1/me/movements``).

A movement is one change of who owns cash or units (a deposit, a fill's cash, units or fee, an
allocation, a distribution, a payout...). Until the settlement batch that records it, it lives
in the engine's movement log (status ``pending``); afterwards it is two legs in PostgreSQL
(status ``settled``, with the batch). Settled trades (trade cash, units and fee) are left out:
they are most of the ledger, an index over them would slow every batch's COPY by a third
(migration 0006), and a trade's history is its order's fills (``GET /v1/orders``).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np

from engine import movements as mv
from engine.clock import format_time_us
from engine.kernels.movements import newest_of
from settlement.ledger import from_datetime

MOVEMENTS_PAGE_MAX = 500
TRADE_KINDS = (mv.TRADE_CASH, mv.TRADE_UNITS, mv.TRADE_FEE)

_SETTLED = """
SELECT l.movement_id, l.kind, l.asset, l.amount, l.batch_id, b.exchange_time
  FROM ledger_legs l JOIN batches b USING (batch_id)
 WHERE l.account_id = $1 AND l.kind NOT IN (3, 4, 5) AND l.movement_id < $2
 ORDER BY l.movement_id DESC
 LIMIT $3
"""


def _asset(asset: int) -> dict[str, Any]:
    return {"asset": "cash"} if asset == mv.CASH else {"asset": "units", "instrument_id": asset}


def pending(log: np.ndarray, account_id: int, limit: int) -> list[dict]:
    """The account's movements still in the engine's log, newest first (signed: + in), at
    most ``limit`` (found by a walk back from the newest, ``newest_of``)."""
    positions = np.empty(max(0, min(limit, len(log))), dtype=np.int64)
    found = newest_of(log, account_id, len(positions), positions)
    out = []
    for row in log[positions[:found]].tolist():
        _seq, movement_id, kind, debit, _credit, asset, amount = row
        out.append({"movement_id": movement_id, "kind": mv.KIND_NAMES.get(kind, str(kind)),
                    **_asset(asset), "amount": -amount if debit == account_id else amount,
                    "status": "pending", "batch_id": None, "settled_at": None})
    return out


async def settled(pool: asyncpg.Pool, account_id: int, before_id: int,
                  limit: int) -> list[dict]:
    """The account's settled movements (trades aside) older than ``before_id``."""
    rows = await pool.fetch(_SETTLED, account_id, before_id, limit)
    return [{"movement_id": r["movement_id"], "kind": mv.KIND_NAMES.get(r["kind"], str(r["kind"])),
             **_asset(r["asset"]), "amount": r["amount"], "status": "settled",
             "batch_id": r["batch_id"],
             "settled_at": format_time_us(from_datetime(r["exchange_time"]))}
            for r in rows]
