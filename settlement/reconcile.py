"""Reconciliation: the ledger's balances against the engine's, account by account.

The engine's settled holdings are its balances (cash available + reserved; units available +
reserved) minus the net of the movements still waiting in its log. For every venue account and
asset, that must equal the ledger's balance. A difference is a break: it blocks the next batch
until an operator accepts it (``accept_breaks``, ``POST /v1/settlement/reconciliation/resolve``),
after which the same (account, asset, difference) no longer blocks. Account 0, the outside world,
is not an engine account; the ledger's own check that each asset sums to zero covers it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from engine import movements as mv

Key = tuple[int, int]  # (account_id, asset)
MISMATCHES_SHOWN_MAX = 1000


def engine_settled(machine: Any) -> dict[Key, int]:
    """The engine's settled holdings per (account, asset), non-zero ones only.

    Runs without awaiting, so it sees one instant of the engine.
    """
    out: dict[Key, int] = {}
    accounts = machine.balances.accounts.live()
    cash = accounts["cash_available"] + accounts["cash_reserved"]
    for account_id in np.flatnonzero(cash):
        out[(int(account_id), mv.CASH)] = int(cash[account_id])
    positions = machine.balances.positions.live()
    units = positions["units_available"] + positions["units_reserved"]
    for row, amount in zip(positions[units != 0], units[units != 0], strict=True):
        out[(int(row["account_id"]), int(row["instrument_id"]))] = int(amount)
    pending = machine.movements.table.live()
    for side, sign in (("credit_account", -1), ("debit_account", 1)):
        keep = pending[side] > 0
        for account_id, asset, amount in zip(pending[side][keep].tolist(),
                                             pending["asset"][keep].tolist(),
                                             pending["amount"][keep].tolist(), strict=True):
            key = (account_id, asset)
            out[key] = out.get(key, 0) + sign * amount
    return {k: v for k, v in out.items() if v != 0}


async def ledger_balances(conn: asyncpg.Pool | asyncpg.Connection) -> dict[Key, int]:
    rows = await conn.fetch(
        "SELECT account_id, asset, amount FROM balances WHERE account_id > 0 AND amount <> 0")
    return {(r["account_id"], r["asset"]): r["amount"] for r in rows}


@dataclass
class Mismatch:
    account_id: int
    asset: int
    ledger_amount: int
    engine_amount: int
    accepted: bool = False

    @property
    def difference(self) -> int:
        return self.ledger_amount - self.engine_amount

    def view(self) -> dict:
        return {"account_id": self.account_id, "asset": self.asset,
                "ledger_amount": self.ledger_amount, "engine_amount": self.engine_amount,
                "difference": self.difference, "accepted": self.accepted}


@dataclass
class Reconciliation:
    mismatches: list[Mismatch] = field(default_factory=list)
    cash_total: int = 0  # the ledger's cash in venue accounts (deposits - withdrawals settled)
    engine_cash_total: int = 0  # the engine's settled cash in venue accounts
    accounts_checked: int = 0
    ledger_asset_sums_zero: bool = True
    last_batch_id: int = 0

    def blocking(self) -> list[Mismatch]:
        return [m for m in self.mismatches if not m.accepted]

    @property
    def balanced(self) -> bool:
        return not self.blocking() and self.ledger_asset_sums_zero

    def view(self) -> dict:
        return {
            "balanced": self.balanced,
            "cash_total": self.cash_total,
            "engine_cash_total": self.engine_cash_total,
            "ledger_asset_sums_zero": self.ledger_asset_sums_zero,
            "accounts_checked": self.accounts_checked,
            "last_batch_id": self.last_batch_id,
            "mismatch_count": len(self.mismatches),
            "mismatches": [m.view() for m in self.mismatches[:MISMATCHES_SHOWN_MAX]],
        }


async def reconcile(machine: Any, pool: asyncpg.Pool | asyncpg.Connection) -> Reconciliation:
    """Compare the ledger with the engine. The caller holds the ledger's lock
    (``settlement.lock``), so no batch of any replica changes the ledger meanwhile; the engine
    part is read in one step."""
    ledger = await ledger_balances(pool)
    asset_sums = {r["asset"]: int(r["total"]) for r in await pool.fetch(
        "SELECT asset, sum(amount) AS total FROM balances GROUP BY asset")}
    accepted = {(r["account_id"], r["asset"], r["difference"]) for r in await pool.fetch(
        "SELECT DISTINCT account_id, asset, difference FROM reconciliation_breaks "
        "WHERE resolved_at IS NOT NULL")}
    last_batch = await pool.fetchval("SELECT coalesce(max(batch_id), 0) FROM batches")
    engine = engine_settled(machine)  # no await between here and the end
    result = Reconciliation(last_batch_id=last_batch)
    keys = sorted(set(ledger) | set(engine))
    result.accounts_checked = len({k[0] for k in keys})
    for key in keys:
        theirs, ours = ledger.get(key, 0), engine.get(key, 0)
        if theirs != ours:
            mismatch = Mismatch(key[0], key[1], theirs, ours)
            mismatch.accepted = (key[0], key[1], mismatch.difference) in accepted
            result.mismatches.append(mismatch)
    # Each asset sums to zero over all accounts (account 0 included), but for the current
    # differences an operator accepted.
    for m in result.mismatches:
        if m.accepted:
            asset_sums[m.asset] = asset_sums.get(m.asset, 0) - m.difference
    result.ledger_asset_sums_zero = all(total == 0 for total in asset_sums.values())
    result.cash_total = sum(v for (a, asset), v in ledger.items() if asset == mv.CASH)
    result.engine_cash_total = sum(v for (a, asset), v in engine.items() if asset == mv.CASH)
    return result


async def record_breaks(pool: asyncpg.Pool | asyncpg.Connection,
                        mismatches: list[Mismatch]) -> None:
    """Keep the open breaks (idempotent: one open row per account, asset and difference)."""
    await pool.executemany(
        "INSERT INTO reconciliation_breaks (account_id, asset, ledger_amount, engine_amount, "
        "difference) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, asset, difference) "
        "WHERE resolved_at IS NULL DO NOTHING",
        [(m.account_id, m.asset, m.ledger_amount, m.engine_amount, m.difference)
         for m in mismatches])


async def accept_breaks(conn: asyncpg.Connection, result: Reconciliation, actor: int,
                        note: str) -> int:
    """An operator accepts every current break; returns how many were accepted."""
    blocking = result.blocking()
    async with conn.transaction():
        await record_breaks(conn, blocking)
        for m in blocking:
            await conn.execute(
                "UPDATE reconciliation_breaks SET resolved_at = now(), resolved_by = $4, "
                "note = $5 WHERE account_id = $1 AND asset = $2 AND difference = $3 "
                "AND resolved_at IS NULL", m.account_id, m.asset, m.difference, actor, note)
            m.accepted = True
    return len(blocking)
