"""Writing a settlement batch into the PostgreSQL ledger, in one transaction.

A batch's movements become legs (a debit with a negative amount and a credit with a positive one,
per movement) streamed with binary ``COPY`` straight from numpy: the rows are laid out in the
wire format by one vectorised assignment per column, never built row by row in Python. The
netting into custodian instructions and the running balances are then computed by PostgreSQL
from the legs it just stored, so the instructions cannot disagree with the legs; the deferred
``batches_balanced`` trigger checks at COMMIT that every asset nets to zero.

``write_batch`` is the whole transaction; ``settlement.batch`` decides what goes in it.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import numpy as np

from engine import movements as mv

LEGS_TABLE = "ledger_legs"
LEG_COLUMNS = ("batch_id", "movement_id", "side", "account_id", "asset", "amount", "kind",
               "sequence")
SIDE_DEBIT = 1
SIDE_CREDIT = 2
# Movements per COPY chunk: 2 legs each, about 86 bytes a leg, so about 5.6 MB a chunk.
COPY_CHUNK_MOVEMENTS = 32_768
WORK_MEM = "256MB"

# PostgreSQL's binary COPY framing: signature, flags, header extension length; -1 ends the data.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
COPY_TRAILER = struct.pack("!h", -1)

# One leg on the wire: a field count, then (length, big-endian value) for each column.
_LEG_FIELDS = [("batch_id", ">i8"), ("movement_id", ">i8"), ("side", ">i2"),
               ("account_id", ">i8"), ("asset", ">i8"), ("amount", ">i8"), ("kind", ">i2"),
               ("sequence", ">i8")]
LEG_WIRE_DTYPE = np.dtype(
    [("field_count", ">i2")]
    + [item for name, kind in _LEG_FIELDS for item in ((f"{name}_len", ">i4"), (name, kind))]
)

# Hook called at named points of the transaction (fault injection in tests, progress).
Checkpoint = Callable[[str], Awaitable[None]]


async def _no_checkpoint(point: str) -> None:
    return None


@dataclass
class AccountRow:
    """What the ledger keeps of an engine account (the ``accounts`` table of 0001)."""

    account_id: int
    role: str
    name: str
    investor_class: str | None
    created_us: int


@dataclass
class BatchPlan:
    """Everything a batch writes, copied from the engine at one instant."""

    batch_id: int
    cutoff_sequence: int
    exchange_time_us: int
    movements: np.ndarray  # MOVEMENT_DTYPE rows, in movement_id order
    accounts: list[AccountRow] = field(default_factory=list)  # not yet in the ledger

    @property
    def movement_count(self) -> int:
        return len(self.movements)

    @property
    def leg_count(self) -> int:
        return 2 * len(self.movements)

    @property
    def trade_count(self) -> int:
        return int(np.count_nonzero(self.movements["kind"] == mv.TRADE_UNITS))

    @property
    def first_movement_id(self) -> int | None:
        return int(self.movements["movement_id"][0]) if len(self.movements) else None

    @property
    def last_movement_id(self) -> int | None:
        return int(self.movements["movement_id"][-1]) if len(self.movements) else None

    def check(self) -> None:
        """The first check on money, before anything is written (the database does a second)."""
        moves = self.movements
        if len(moves) == 0:
            return
        if np.any(moves["amount"] <= 0):
            raise ValueError(f"batch {self.batch_id}: a movement is not positive")
        if np.any(np.diff(moves["movement_id"]) <= 0):
            raise ValueError(f"batch {self.batch_id}: movement ids are not increasing")
        if np.any(moves["sequence"] > self.cutoff_sequence):
            raise ValueError(f"batch {self.batch_id}: a movement is past the cutoff")
        if np.any(moves["debit_account"] == moves["credit_account"]):
            raise ValueError(f"batch {self.batch_id}: a movement debits and credits one account")


def encode_legs(batch_id: int, movements: np.ndarray) -> bytes:
    """The binary COPY rows (no header) of ``movements``' legs: debit then credit, in id order."""
    count = len(movements)
    wire = np.empty(2 * count, dtype=LEG_WIRE_DTYPE)
    wire["field_count"] = len(_LEG_FIELDS)
    for name, kind in _LEG_FIELDS:
        wire[f"{name}_len"] = np.dtype(kind).itemsize
    wire["batch_id"] = batch_id
    for side, offset, account, sign in ((SIDE_DEBIT, 0, "debit_account", -1),
                                        (SIDE_CREDIT, 1, "credit_account", 1)):
        legs = wire[offset::2]
        legs["movement_id"] = movements["movement_id"]
        legs["side"] = side
        legs["account_id"] = movements[account]
        legs["asset"] = movements["asset"]
        legs["amount"] = movements["amount"] * sign
        legs["kind"] = movements["kind"]
        legs["sequence"] = movements["sequence"]
    return wire.tobytes()


def leg_chunks(batch_id: int, movements: np.ndarray,
               chunk_movements: int = COPY_CHUNK_MOVEMENTS) -> Iterator[tuple[bytes, int]]:
    """The whole COPY stream in chunks, each with how many legs it carries."""
    yield COPY_HEADER, 0
    for start in range(0, len(movements), chunk_movements):
        block = movements[start:start + chunk_movements]
        yield encode_legs(batch_id, block), 2 * len(block)
    yield COPY_TRAILER, 0


async def _copy_source(plan: BatchPlan, checkpoint: Checkpoint,
                       on_legs: Callable[[int], None]) -> AsyncIterator[bytes]:
    sent_rows = False
    for chunk, legs in leg_chunks(plan.batch_id, plan.movements):
        if sent_rows and chunk is COPY_TRAILER:
            # The COPY is open and has rows in flight: the "mid-COPY" fault point.
            await checkpoint("mid_copy")
        yield chunk
        if legs:
            sent_rows = True
            on_legs(legs)


_INSERT_BATCH = """
INSERT INTO batches (batch_id, cutoff_sequence, first_movement_id, last_movement_id,
                     movement_count, leg_count, trade_count, status, exchange_time)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'committed', $8)
"""

_INSERT_ACCOUNTS = """
INSERT INTO accounts (account_id, role, name, investor_class, created_at, created_sequence)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                     $6::bigint[])
ON CONFLICT (account_id) DO NOTHING
"""

_INSERT_ASSETS = """
INSERT INTO assets (asset_id, kind)
SELECT a, CASE WHEN a = 0 THEN 'cash' ELSE 'units' END FROM unnest($1::bigint[]) AS a
ON CONFLICT (asset_id) DO NOTHING
"""

# Netting: PostgreSQL sums the legs it has just stored, so instructions are derived from the
# legs, not sent beside them.
_INSERT_INSTRUCTIONS = """
INSERT INTO instructions (batch_id, account_id, asset, net_amount, legs)
SELECT $1, account_id, asset, sum(amount)::bigint, count(*)
  FROM ledger_legs
 WHERE batch_id = $1
 GROUP BY account_id, asset
"""

# Two statements, not INSERT ... ON CONFLICT: PostgreSQL checks the CHECK on the row it would
# insert before it finds the conflict, and a net sale is negative while the balance is not.
_UPDATE_BALANCES = """
UPDATE balances AS b SET amount = b.amount + i.net_amount, last_batch_id = i.batch_id
  FROM instructions AS i
 WHERE i.batch_id = $1 AND b.account_id = i.account_id AND b.asset = i.asset
"""

_INSERT_BALANCES = """
INSERT INTO balances (account_id, asset, amount, last_batch_id)
SELECT i.account_id, i.asset, i.net_amount, i.batch_id FROM instructions AS i
 WHERE i.batch_id = $1
   AND NOT EXISTS (SELECT 1 FROM balances AS b
                    WHERE b.account_id = i.account_id AND b.asset = i.asset)
"""


def to_datetime(time_us: int) -> datetime:
    return datetime.fromtimestamp(time_us / 1_000_000, tz=UTC)


async def write_batch(conn: asyncpg.Connection, plan: BatchPlan,
                      checkpoint: Checkpoint = _no_checkpoint,
                      on_legs: Callable[[int], None] = lambda legs: None) -> None:
    """Write ``plan`` in one transaction: batch row, accounts, assets, legs, instructions,
    balances. Returns once committed; on any error nothing of it remains."""
    plan.check()
    await checkpoint("before_begin")
    async with conn.transaction():
        # Netting hashes every (account, asset) of the batch: keep it in memory.
        await conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        await conn.execute(_INSERT_BATCH, plan.batch_id, plan.cutoff_sequence,
                           plan.first_movement_id, plan.last_movement_id, plan.movement_count,
                           plan.leg_count, plan.trade_count, to_datetime(plan.exchange_time_us))
        await checkpoint("after_batch_row")
        if plan.accounts:
            rows = plan.accounts
            await conn.execute(
                _INSERT_ACCOUNTS, [a.account_id for a in rows], [a.role for a in rows],
                [a.name for a in rows], [a.investor_class for a in rows],
                [to_datetime(a.created_us) for a in rows], [plan.cutoff_sequence] * len(rows))
        if plan.movement_count:
            assets = np.unique(plan.movements["asset"]).tolist()
            await conn.execute(_INSERT_ASSETS, assets)
            await conn.copy_to_table(LEGS_TABLE, source=_copy_source(plan, checkpoint, on_legs),
                                     columns=LEG_COLUMNS, format="binary")
            await checkpoint("after_copy")
            await conn.execute(_INSERT_INSTRUCTIONS, plan.batch_id)
            await checkpoint("after_instructions")
            await conn.execute(_UPDATE_BALANCES, plan.batch_id)
            await conn.execute(_INSERT_BALANCES, plan.batch_id)
        await checkpoint("before_commit")
    await checkpoint("after_commit")
