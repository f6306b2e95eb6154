"""Conservation under hypothesis-generated activity: after any sequence of deposits,
withdrawals and batches, each asset's ledger sums to zero, the venue accounts' cash in the ledger
is exactly the settled deposits minus withdrawals, and reconciliation is clean.

(Trades and allocations join the generated activity as their components land.)
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine.clock import ManualClock
from engine.sequencer import Engine
from settlement.batch import Settlement
from settlement.db import create_pool
from settlement.reconcile import reconcile

ACCOUNTS = 4
LEDGER_TABLES = "ledger_legs, instructions, balances, batches, accounts, reconciliation_breaks"

actions = st.lists(
    st.one_of(
        st.tuples(st.just("deposit"), st.integers(0, ACCOUNTS - 1), st.integers(1, 10**9)),
        st.tuples(st.just("withdraw"), st.integers(0, ACCOUNTS - 1), st.integers(1, 10**9)),
        st.tuples(st.just("batch"), st.just(0), st.just(0)),
    ),
    max_size=25,
)


async def scenario(url: str, steps: list[tuple[str, int, int]]) -> None:
    pool = await create_pool(url)
    engine = Engine(Path(tempfile.mkdtemp()), ManualClock(), sync=False)
    await engine.start()
    try:
        await pool.execute(f"TRUNCATE {LEDGER_TABLES}")
        await engine.submit(c.Genesis("", True, 1_767_225_600_000_000))
        ids = []
        for i in range(ACCOUNTS):
            reply = await engine.submit(c.CreateAccount("investor", f"p{i}", f"k{i}"))
            ids.append(reply.body["account_id"])
        service = Settlement(engine, pool)
        net = 0  # deposits - withdrawals accepted by the engine
        for n, (kind, who, amount) in enumerate(steps):
            if kind == "deposit":
                reply = await engine.submit(c.Deposit(ids[who], amount, f"r{n}"))
                net += amount if reply.status == 201 else 0
            elif kind == "withdraw":
                reply = await engine.submit(c.Withdraw(ids[who], amount, f"r{n}"), ids[who])
                net -= amount if reply.status == 201 else 0
            else:
                await service.run_batch(2)
                await check(pool, engine, net)
        await service.run_batch(2)
        await check(pool, engine, net)
    finally:
        await engine.stop()
        await pool.close()


async def check(pool: asyncpg.Pool, engine: Engine, net: int) -> None:
    """After a batch (cutoff = everything so far): ledger == deposits - withdrawals."""
    sums = await pool.fetch("SELECT asset, sum(amount) AS total FROM balances GROUP BY asset")
    assert all(r["total"] == 0 for r in sums)
    legs = await pool.fetchval("SELECT coalesce(sum(amount), 0) FROM ledger_legs")
    assert legs == 0
    cash = await pool.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM balances WHERE asset = 0 AND account_id > 0")
    assert cash == net == engine.machine.cash_total()
    result = await reconcile(engine.machine, pool)
    assert result.balanced and not result.mismatches
    assert len(engine.machine.movements.table.live()) == 0


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=actions)
def test_the_ledger_conserves_cash(pg_url: str, steps: list[tuple[str, int, int]]) -> None:
    asyncio.run(scenario(pg_url, steps))
