"""The second check on money: what PostgreSQL itself refuses to store in the ledger.

Every case writes rows by hand, bypassing ``settlement.ledger`` (the first check), and expects the
schema to refuse them: signs, a leg written twice, a movement in two batches, a batch that does
not balance, instructions that do not net the legs, legs outside the batch's range, changes to
committed rows. The last test upgrades a ledger written under migration 0002.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from engine import movements as mv
from settlement.db import load_migrations, migrate
from settlement.ledger import BatchPlan, net_movements, write_batch

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
INVESTORS = (1, 2, 3)

# A batch of three movements: a deposit to 1, a payment 1 -> 2, units issued to 3.
# (movement_id, account, asset, amount, side, kind): the two legs of each movement.
GOOD_LEGS = [
    (1, 0, 0, -500, 1, mv.DEPOSIT), (1, 1, 0, 500, 2, mv.DEPOSIT),
    (2, 1, 0, -200, 1, mv.TRADE_CASH), (2, 2, 0, 200, 2, mv.TRADE_CASH),
    (3, 0, 7, -10, 1, mv.UNITS_ISSUED), (3, 3, 7, 10, 2, mv.UNITS_ISSUED),
]


def netted(legs: list[tuple]) -> list[tuple[int, int, int, int]]:
    """(account, asset, net, legs) per account and asset, as settlement nets them."""
    out: dict[tuple[int, int], list[int]] = {}
    for _, account, asset, amount, _, _ in legs:
        row = out.setdefault((account, asset), [0, 0])
        row[0] += amount
        row[1] += 1
    return [(a, s, net, n) for (a, s), (net, n) in sorted(out.items())]


@pytest.fixture
async def ledger(pool: asyncpg.Pool) -> asyncpg.Pool:
    await migrate(pool)
    await pool.executemany(
        "INSERT INTO accounts VALUES ($1, 'investor', 'x', 'retail', $2, 1)",
        [(a, WHEN) for a in INVESTORS])
    await pool.execute("INSERT INTO assets VALUES (7, 'units')")
    return pool


async def write_raw(pool: asyncpg.Pool, legs: list[tuple], instructions: list[tuple] | None = None,
                    batch_id: int = 1, first: int = 1, last: int = 3,
                    movements: int = 3) -> None:
    """One batch by hand, in one transaction (so the deferred batch check runs at COMMIT)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO batches (batch_id, cutoff_sequence, first_movement_id, "
            "last_movement_id, movement_count, leg_count, trade_count, status, exchange_time) "
            "VALUES ($1, $1, $2, $3, $4, $5, 0, 'committed', $6)",
            batch_id, first, last, movements, 2 * movements, WHEN)
        await conn.executemany(
            "INSERT INTO ledger_legs (batch_id, movement_id, account_id, asset, amount, side, "
            "kind) VALUES ($1, $2, $3, $4, $5, $6, $7)", [(batch_id, *leg) for leg in legs])
        rows = netted(legs) if instructions is None else instructions
        await conn.executemany(
            "INSERT INTO instructions (batch_id, account_id, asset, net_amount, legs) "
            "VALUES ($1, $2, $3, $4, $5)", [(batch_id, *row) for row in rows])


async def test_a_well_formed_batch_commits(ledger: asyncpg.Pool) -> None:
    await write_raw(ledger, GOOD_LEGS)
    assert await ledger.fetchval("SELECT count(*) FROM ledger_legs") == 6


def _replace(index: int, **changes: int) -> list[tuple]:
    names = ("movement_id", "account_id", "asset", "amount", "side", "kind")
    legs = list(GOOD_LEGS)
    row = dict(zip(names, legs[index], strict=True)) | changes
    legs[index] = tuple(row[n] for n in names)
    return legs


@pytest.mark.parametrize(("legs", "error"), [
    (_replace(1, amount=-500), asyncpg.CheckViolationError),  # a credit must be positive
    (_replace(0, amount=500), asyncpg.CheckViolationError),  # a debit must be negative
    (_replace(0, side=3), asyncpg.CheckViolationError),
    (_replace(0, account_id=-1), asyncpg.CheckViolationError),
    (_replace(0, kind=0), asyncpg.CheckViolationError),
    (_replace(1, side=1, amount=-500), asyncpg.UniqueViolationError),  # a leg twice
], ids=["credit-negative", "debit-positive", "side", "account", "kind", "leg-twice"])
async def test_rows_the_constraints_refuse(ledger: asyncpg.Pool, legs: list[tuple],
                                           error: type[Exception]) -> None:
    with pytest.raises(error):
        await write_raw(ledger, legs)
    assert await ledger.fetchval("SELECT count(*) FROM batches") == 0


@pytest.mark.parametrize(("legs", "instructions", "message"), [
    # The credit of movement 2 is 1 fen short: the batch does not balance in cash.
    (_replace(3, amount=199), None, "does not balance"),
    # Balanced legs; the instructions balance and count every leg on the right account, but
    # put 300 of account 1's cash on account 2.
    (GOOD_LEGS, [(0, 0, -500, 1), (0, 7, -10, 1), (1, 0, 0, 2), (2, 0, 500, 1),
                 (3, 7, 10, 1)], "do not net its legs"),
    # The same amounts per account, but a leg counted on the wrong account.
    (GOOD_LEGS, [(0, 0, -500, 1), (0, 7, -10, 1), (1, 0, 300, 1), (2, 0, 200, 2),
                 (3, 7, 10, 1)], "do not net its legs"),
    # The instructions leave out an asset.
    (GOOD_LEGS, netted(GOOD_LEGS[:4]), "do not net its legs"),
], ids=["unbalanced-legs", "amount-on-wrong-account", "leg-on-wrong-account", "asset-missing"])
async def test_the_batch_check_refuses_at_commit(ledger: asyncpg.Pool, legs: list[tuple],
                                                 instructions: list[tuple] | None,
                                                 message: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match=message):
        await write_raw(ledger, legs, instructions)
    assert await ledger.fetchval("SELECT count(*) FROM ledger_legs") == 0


async def test_legs_must_lie_in_the_batch_range_and_count(ledger: asyncpg.Pool) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="outside its range"):
        await write_raw(ledger, GOOD_LEGS, first=2, last=4, movements=3)
    with pytest.raises(asyncpg.CheckViolationError, match="holds 6 legs but claims 4"):
        await write_raw(ledger, GOOD_LEGS, first=1, last=3, movements=2)


async def test_unknown_accounts_and_assets_are_refused(ledger: asyncpg.Pool) -> None:
    legs = [(1, 0, 0, -5, 1, mv.DEPOSIT), (1, 99, 0, 5, 2, mv.DEPOSIT)]
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="unknown account 99"):
        await write_raw(ledger, legs, last=1, movements=1)
    legs = [(1, 0, 8, -5, 1, mv.UNITS_ISSUED), (1, 1, 8, 5, 2, mv.UNITS_ISSUED)]
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="unknown asset 8"):
        await write_raw(ledger, legs, last=1, movements=1)


async def test_a_movement_is_never_in_two_batches(ledger: asyncpg.Pool) -> None:
    await write_raw(ledger, GOOD_LEGS)
    with pytest.raises(asyncpg.ExclusionViolationError):
        await write_raw(ledger, GOOD_LEGS[4:], batch_id=2, first=3, last=3, movements=1)


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_legs SET amount = amount", "DELETE FROM ledger_legs",
    "UPDATE instructions SET legs = legs", "DELETE FROM batches",
])
async def test_committed_rows_never_change(ledger: asyncpg.Pool, statement: str) -> None:
    await write_raw(ledger, GOOD_LEGS)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await ledger.execute(statement)


def test_netting_sums_the_legs_per_account_and_asset() -> None:
    moves = np.zeros(3, dtype=mv.MOVEMENT_DTYPE)
    for row, (mid, kind, debit, credit, asset, amount) in zip(moves, [
        (1, mv.DEPOSIT, 0, 1, 0, 500), (2, mv.TRADE_CASH, 1, 2, 0, 200),
        (3, mv.UNITS_ISSUED, 0, 3, 7, 10)], strict=True):
        row["sequence"], row["movement_id"], row["kind"] = 1, mid, kind
        row["debit_account"], row["credit_account"] = debit, credit
        row["asset"], row["amount"] = asset, amount
    out = net_movements(moves)
    assert [tuple(int(v) for v in r) for r in out] == netted(GOOD_LEGS)
    assert len(net_movements(moves[:0])) == 0


@pytest.mark.parametrize("wrong", [False, True], ids=["exact", "amount-on-wrong-account"])
async def test_the_checksums_are_exact_for_large_ids_and_amounts(ledger: asyncpg.Pool,
                                                                 wrong: bool) -> None:
    """Account ids past 2^32 and amounts past 2^40: the checksums' bigint halves stay exact, so
    the right instructions commit and moving an amount between two such accounts is refused."""
    big = (1 << 33) + 5, (1 << 34) + 3
    await ledger.executemany("INSERT INTO accounts VALUES ($1, 'investor', 'x', 'retail', $2, 1)",
                             [(a, WHEN) for a in big])
    amount, half = (1 << 41) + 12345, (1 << 40) + 777
    legs = [(1, 0, 0, -amount, 1, mv.DEPOSIT), (1, big[0], 0, amount, 2, mv.DEPOSIT),
            (2, big[0], 0, -half, 1, mv.TRADE_CASH), (2, big[1], 0, half, 2, mv.TRADE_CASH)]
    instructions = netted(legs)
    if wrong:
        shift = 1 << 40
        instructions = [(a, s, net + (shift if a == big[0] else -shift if a == big[1] else 0), n)
                        for a, s, net, n in instructions]
        with pytest.raises(asyncpg.CheckViolationError, match="do not net its legs"):
            await write_raw(ledger, legs, instructions, last=2, movements=2)
    else:
        await write_raw(ledger, legs, instructions, last=2, movements=2)
        assert await ledger.fetchval("SELECT count(*) FROM ledger_legs") == 4


def test_netting_by_scatter_and_by_sort_agree() -> None:
    """The dense path (small ids) and the sorting one (ids too sparse to scatter) net alike."""
    rng = np.random.default_rng(3)
    moves = np.zeros(5_000, dtype=mv.MOVEMENT_DTYPE)
    moves["movement_id"] = np.arange(1, len(moves) + 1)
    moves["debit_account"] = rng.integers(0, 60, len(moves))
    moves["credit_account"] = (moves["debit_account"] + rng.integers(1, 60, len(moves))) % 61
    moves["asset"] = rng.integers(0, 5, len(moves))
    moves["amount"] = rng.integers(1, 1 << 50, len(moves))
    dense = net_movements(moves)
    sparse = moves.copy()
    for name in ("debit_account", "credit_account"):
        sparse[name] = np.where(sparse[name] > 0, sparse[name] + (1 << 40), 0)
    by_sort = net_movements(sparse)
    assert len(dense) == len(by_sort)
    back = np.where(by_sort["account_id"] > 0, by_sort["account_id"] - (1 << 40), 0)
    assert np.array_equal(dense["account_id"], back)
    for name in ("asset", "net_amount", "legs"):
        assert np.array_equal(dense[name], by_sort[name])
    expected: dict[tuple[int, int], list[int]] = {}
    for m in moves:
        for account, sign in ((int(m["debit_account"]), -1), (int(m["credit_account"]), 1)):
            row = expected.setdefault((account, int(m["asset"])), [0, 0])
            row[0] += sign * int(m["amount"])
            row[1] += 1
    assert [tuple(int(v) for v in r) for r in dense] == [
        (a, s, net, n) for (a, s), (net, n) in sorted(expected.items())]


async def test_the_0003_upgrade_keeps_a_0002_ledger(ledger_0002: asyncpg.Pool) -> None:
    """Legs written under 0002 (with their sequence column) survive the rebuild of 0003, and
    a batch written afterwards commits next to them."""
    pool = ledger_0002
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO batches (batch_id, cutoff_sequence, first_movement_id, "
            "last_movement_id, movement_count, leg_count, trade_count, status, exchange_time) "
            "VALUES (1, 1, 1, 3, 3, 6, 0, 'committed', $1)", WHEN)
        await conn.executemany(
            "INSERT INTO ledger_legs (batch_id, movement_id, side, account_id, asset, amount, "
            "kind, sequence) VALUES (1, $1, $5, $2, $3, $4, $6, 1)", GOOD_LEGS)
        await conn.executemany(
            "INSERT INTO instructions VALUES (1, $1, $2, $3, $4)", netted(GOOD_LEGS))
        await conn.execute("INSERT INTO balances SELECT account_id, asset, net_amount, 1 "
                           "FROM instructions")
    assert await migrate(pool) == ["0003_lean_batches", "0004_bigint_instruction_checksums",
                                   "0005_batch_requests", "0006_legs_by_account"]
    rows = await pool.fetch("SELECT movement_id, account_id, asset, amount, side, kind "
                            "FROM ledger_legs ORDER BY movement_id, side")
    assert [tuple(r) for r in rows] == GOOD_LEGS
    moves = np.zeros(1, dtype=mv.MOVEMENT_DTYPE)
    moves[0] = (2, 4, mv.TRADE_CASH, 2, 3, 0, 50)
    async with pool.acquire() as conn:
        await write_batch(conn, BatchPlan(2, 2, 0, moves))
    assert await pool.fetchval("SELECT amount FROM balances WHERE account_id = 3 AND asset = 0") \
        == 50


@pytest.fixture
async def ledger_0002(pool: asyncpg.Pool, tmp_path: Path) -> asyncpg.Pool:
    """A database migrated only up to 0002, with the accounts and asset of GOOD_LEGS."""
    older = tmp_path / "migrations"
    older.mkdir()
    for migration in load_migrations():
        if migration.version <= "0002_ledger":
            (older / f"{migration.version}.sql").write_text(migration.sql)
    assert await migrate(pool, older) == ["0001_accounts", "0002_ledger"]
    shutil.rmtree(older)
    await pool.executemany(
        "INSERT INTO accounts VALUES ($1, 'investor', 'x', 'retail', $2, 1)",
        [(a, WHEN) for a in INVESTORS])
    await pool.execute("INSERT INTO assets VALUES (7, 'units')")
    return pool
