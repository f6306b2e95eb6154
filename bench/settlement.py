"""``crowdex bench settlement``: settle a batch of N trades' movements into PostgreSQL.

Each trade is three movements, as the engine records them (cash buyer -> seller, units seller ->
buyer, fee seller -> fee account), so 1,000,000 trades are 3,000,000 movements and 6,000,000
ledger legs. A seed batch first deposits cash and issues units to every account (not timed), so
no balance goes negative. Then, timed: the batch transaction exactly as ``POST
/v1/settlement/batches`` runs it (``settlement.ledger.write_batch``: batch row, binary COPY of
the legs while numpy nets them, COPY of the instructions, the balances update, the deferred batch
check, COMMIT), and the engine's release of those movements (``BatchCommitted``). In the same
run, on the same server, a bare binary COPY of the same leg rows into a table with the same
columns, CHECKs and primary key, for the ratio.

Embedded PostgreSQL in a temporary directory (with the settings ``settlement.db`` gives every
embedded server) unless ``--database-url`` is given. ``--repeat N`` runs the whole thing N times,
each on a fresh server, and reports the fastest batch (the machine may be shared). The last line
of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine import movements as mv
from engine.machine import StateMachine
from settlement.commands import BatchCommitted
from settlement.db import migrate, open_database
from settlement.ledger import LEG_COLUMNS, AccountRow, BatchPlan, leg_chunks, write_batch

TRADES_DEFAULT = 1_000_000
ACCOUNTS_DEFAULT = 10_000
INSTRUMENTS_DEFAULT = 50
FEE_BPS = 100
FIRST_INVESTOR = 3  # 1 is the fee account, 2 the operator
SEED_CASH_FEN = 10**13
SEED_UNITS = 10**9
REPEAT_MAX = 10


def seed_movements(accounts: int, instruments: int) -> np.ndarray:
    """Each investor: a deposit, and an issue of the one instrument it will sell."""
    ids = np.arange(FIRST_INVESTOR, accounts + 1)
    rows = np.zeros(2 * len(ids), dtype=mv.MOVEMENT_DTYPE)
    rows["sequence"] = 1
    rows["movement_id"] = np.arange(1, len(rows) + 1)
    rows["kind"][0::2], rows["asset"][0::2] = mv.DEPOSIT, mv.CASH
    rows["credit_account"][0::2], rows["amount"][0::2] = ids, SEED_CASH_FEN
    rows["kind"][1::2], rows["asset"][1::2] = mv.UNITS_ISSUED, ids % instruments + 1
    rows["credit_account"][1::2], rows["amount"][1::2] = ids, SEED_UNITS
    return rows


def trade_movements(trades: int, accounts: int, instruments: int, first_id: int,
                    seed: int = 7) -> np.ndarray:
    """Three movements per trade, one trade per sequence number from 2."""
    rng = np.random.default_rng(seed)
    span = accounts - FIRST_INVESTOR + 1
    buyer = rng.integers(0, span, trades)
    seller = (buyer + rng.integers(1, span, trades)) % span + FIRST_INVESTOR
    buyer += FIRST_INVESTOR
    quantity = rng.integers(1, 100, trades)
    notional = quantity * rng.integers(100, 10_000, trades)
    fee = (notional * FEE_BPS + 5_000) // 10_000
    rows = np.zeros(3 * trades, dtype=mv.MOVEMENT_DTYPE)
    rows["sequence"] = np.repeat(np.arange(2, trades + 2), 3)
    rows["movement_id"] = np.arange(first_id, first_id + len(rows))
    for offset, kind, debit, credit, asset, amount in (
        (0, mv.TRADE_CASH, buyer, seller, 0, notional),
        (1, mv.TRADE_UNITS, seller, buyer, seller % instruments + 1, quantity),
        (2, mv.TRADE_FEE, seller, 1, 0, fee),
    ):
        part = rows[offset::3]
        part["kind"], part["debit_account"], part["credit_account"] = kind, debit, credit
        part["asset"], part["amount"] = asset, amount
    return rows[rows["amount"] > 0]


def release_seconds(movements: np.ndarray, accounts: int, cutoff: int) -> float:
    """The engine's side: BatchCommitted releases the movements, clears unsettled cash."""
    machine = StateMachine()
    for _ in range(accounts):
        machine.balances.add_account(1, 1)
    machine.movements.record_many(movements)
    machine.movements.next_id = int(movements["movement_id"][-1]) + 1
    machine.movements.table.rows["movement_id"][:len(movements)] = movements["movement_id"]
    machine.last_sequence = cutoff
    component = machine.components[0]
    component.state.last_batch_id = 1
    started = time.perf_counter()
    reply = component.handlers()[BatchCommitted](
        BatchCommitted(2, cutoff, len(movements), int(movements["movement_id"][-1])), 0)
    elapsed = time.perf_counter() - started
    if reply.status != 200:
        raise RuntimeError(f"release refused: {reply.body}")
    return elapsed


async def bare_copy_seconds(pool, movements: np.ndarray) -> float:
    async with pool.acquire() as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_bare_legs")
        await conn.execute("CREATE TABLE bench_bare_legs (LIKE ledger_legs INCLUDING DEFAULTS "
                           "INCLUDING CONSTRAINTS)")
        await conn.execute("ALTER TABLE bench_bare_legs ADD PRIMARY KEY "
                           "(batch_id, movement_id, side)")
        await conn.execute("CHECKPOINT")

        async def source():
            for chunk, _ in leg_chunks(2, movements):
                yield chunk

        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_to_table("bench_bare_legs", source=source(), columns=LEG_COLUMNS,
                                     format="binary")
        elapsed = time.perf_counter() - started
        await conn.execute("DROP TABLE bench_bare_legs")
        return elapsed


async def run(args: argparse.Namespace) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="crowdex-bench-settle-"))
    db = await open_database(data_dir, args.database_url)
    try:
        await migrate(db.pool)
        if args.database_url:
            await db.pool.execute("TRUNCATE batch_requests, ledger_legs, instructions, balances, "
                                  "batches, accounts")
        accounts = [AccountRow(i, "fee" if i == 1 else "operator" if i == 2 else "investor",
                               f"bench {i}", None, 0) for i in range(1, args.accounts + 1)]
        seed = seed_movements(args.accounts, args.instruments)
        async with db.pool.acquire() as conn:
            await write_batch(conn, BatchPlan(1, 1, 0, seed, accounts))
        trades = trade_movements(args.trades, args.accounts, args.instruments, len(seed) + 1)
        plan = BatchPlan(2, args.trades + 1, 0, trades)
        await db.pool.execute("CHECKPOINT")
        async with db.pool.acquire() as conn:
            started = time.perf_counter()
            await write_batch(conn, plan)
            batch_seconds = time.perf_counter() - started
        release = release_seconds(trades, args.accounts, plan.cutoff_sequence)
        bare = await bare_copy_seconds(db.pool, trades)
        return {
            "trades": args.trades, "movements": plan.movement_count, "legs": plan.leg_count,
            "seconds": round(batch_seconds, 3),
            "legs_per_sec": round(plan.leg_count / batch_seconds),
            "engine_release_seconds": round(release, 3),
            "bare_copy_seconds": round(bare, 3),
            "bare_copy_legs_per_sec": round(plan.leg_count / bare),
            "ratio_to_bare_copy": round(batch_seconds / bare, 2),
            "database": "external" if args.database_url else "embedded",
        }
    finally:
        await db.close()
        shutil.rmtree(data_dir, ignore_errors=True)


async def best_of(args: argparse.Namespace) -> dict:
    """``run`` ``args.repeat`` times; the result of the fastest batch, with every time seen."""
    results = [await run(args) for _ in range(args.repeat)]
    best = min(results, key=lambda r: r["seconds"])
    return {**best, "repeat": args.repeat,
            "all_seconds": [r["seconds"] for r in results],
            "all_bare_copy_seconds": [r["bare_copy_seconds"] for r in results]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crowdex bench settlement", description=__doc__)
    p.add_argument("--trades", type=int, default=TRADES_DEFAULT,
                   help="trades to settle in one batch (%(default)s)")
    p.add_argument("--accounts", type=int, default=ACCOUNTS_DEFAULT,
                   help="traders the trades are spread over")
    p.add_argument("--instruments", type=int, default=INSTRUMENTS_DEFAULT,
                   help="instruments the trades are spread over")
    p.add_argument("--database-url", default=None,
                   help="an external PostgreSQL (its ledger tables are TRUNCATED)")
    p.add_argument("--repeat", type=int, default=1, help="runs; the fastest batch is reported")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if (not 1 <= args.trades <= 20_000_000 or args.accounts < FIRST_INVESTOR + 1
            or not 1 <= args.repeat <= REPEAT_MAX):
        print(f"crowdex bench settlement: --trades 1..20000000, --accounts >= 4, --repeat "
              f"1..{REPEAT_MAX}", file=sys.stderr)
        return 2
    result = asyncio.run(best_of(args))
    if not args.json:
        print(f"settled {result['trades']:,} trades = {result['legs']:,} legs in "
              f"{result['seconds']} s ({result['legs_per_sec']:,} legs/s); bare COPY "
              f"{result['bare_copy_seconds']} s; ratio {result['ratio_to_bare_copy']}x"
              + (f" (fastest of {args.repeat}: batch {result['all_seconds']} s, bare COPY "
                 f"{result['all_bare_copy_seconds']} s)" if args.repeat > 1 else ""))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
