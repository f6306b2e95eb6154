"""Reading batches back: the batch object of the API and the custodian instructions CSV."""

from __future__ import annotations

import asyncpg

from engine.clock import format_time_us
from engine.errors import CrowdexError
from settlement.ledger import from_datetime

REPORT_COLUMNS = ("batch_id", "account_id", "asset", "net_amount", "legs")
BATCHES_PAGE_MAX = 500


def _view(row: asyncpg.Record) -> dict:
    exchange_us = from_datetime(row["exchange_time"])
    return {
        "batch_id": row["batch_id"],
        "cutoff_sequence": row["cutoff_sequence"],
        "trade_count": row["trade_count"],
        "entry_count": row["leg_count"],
        "movement_count": row["movement_count"],
        "first_movement_id": row["first_movement_id"],
        "last_movement_id": row["last_movement_id"],
        "instruction_count": row["instruction_count"],
        "exchange_time": format_time_us(exchange_us),
        "status": row["status"],
    }


_SELECT = """
SELECT b.*, (SELECT count(*) FROM instructions i WHERE i.batch_id = b.batch_id)
       AS instruction_count
  FROM batches b
"""


async def batch_view(pool: asyncpg.Pool | asyncpg.Connection, batch_id: int) -> dict:
    """The API's batch object; 404 ``batch_not_found`` if no such batch committed."""
    row = await pool.fetchrow(_SELECT + " WHERE b.batch_id = $1", batch_id)
    if row is None:
        raise CrowdexError("batch_not_found", f"no committed batch {batch_id}")
    return _view(row)


async def list_batches(pool: asyncpg.Pool, limit: int) -> list[dict]:
    """The newest ``limit`` batches, newest first."""
    rows = await pool.fetch(_SELECT + " ORDER BY b.batch_id DESC LIMIT $1",
                            min(limit, BATCHES_PAGE_MAX))
    return [_view(row) for row in rows]


async def report_csv(pool: asyncpg.Pool, batch_id: int) -> str:
    """The custodian instructions of a batch: ``batch_id,account_id,asset,net_amount,legs``,
    one line per account and asset (asset 0 is cash in fen), by account then asset."""
    await batch_view(pool, batch_id)  # 404 first
    rows = await pool.fetch(
        "SELECT account_id, asset, net_amount, legs FROM instructions WHERE batch_id = $1 "
        "ORDER BY account_id, asset", batch_id)
    lines = [",".join(REPORT_COLUMNS)]
    lines.extend(f"{batch_id},{r['account_id']},{r['asset']},{r['net_amount']},{r['legs']}"
                 for r in rows)
    return "\n".join(lines) + "\n"
