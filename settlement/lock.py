"""One settlement at a time across every process that shares the ledger.

API.md, "Running as a cluster": replicas of one venue share one PostgreSQL, and a settlement
batch may be asked of any replica and is written exactly once. A batch reads the ledger (the
last batch, its Idempotency-Key's earlier outcome, the balances it reconciles), has its engine
learn the batches it lacks, then writes the next batch. Two of these interleaved at two replicas
would both pick the same next batch id: one would fail on the ledger's constraints, and a
reconciliation would compare a ledger that a batch is changing underneath it. ``ledger_lock``
makes them take turns, as the engine's own ``asyncio.Lock`` does inside one process.

It is a PostgreSQL session-level advisory lock, taken on the connection that then writes the
batch:

- the database holds it, so it spans processes and machines, and frees it when the session ends:
  a replica killed with kill -9 (its socket closed by its kernel) leaves nothing held, and TCP
  keepalives (``KEEPALIVE_SETTINGS``) end the session of a machine that vanished outright;
- the session that holds it is the one that writes: when the session is lost, so are the lock
  and the uncommitted batch with it, so no write ever outlives the lock it was made under.

The lock is not what makes a second write impossible: the ledger's constraints are (batch id
PRIMARY KEY, UNIQUE cutoff, no two batches' movement ranges overlapping; migration 0002), and a
write that raced another would fail whole. The lock is what lets the second request wait, then
see the first one's batch (and its Idempotency-Key) and answer correctly. ``ON CONFLICT DO
NOTHING`` on the batch row would not do: two replicas choosing the same batch id may choose
different cutoffs, and the loser would answer a batch holding other movements than it meant.

Needs a real session to the database: behind a pooler in transaction mode (PgBouncer's
``pool_mode = transaction``) session locks do not work; point ``--database-url`` past it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from engine.errors import CrowdexError

# pg_advisory_lock key of the ledger: "crowdex settlement" in spirit, "cdxsettl" in ASCII (the
# migrations use another key, settlement.db.MIGRATION_LOCK_KEY).
LEDGER_LOCK_KEY = 0x6364_7873_6574_746C
# How long a batch or reconciliation waits for another replica's batch before it answers 503
# (a client retries after Retry-After). A batch of 6,000,000 legs takes ~15 s here.
LOCK_WAIT_MAX_S = 60.0
LOCK_POLL_S = 0.05
RETRY_AFTER_S = 5
# The session holding the lock asks TCP to probe an idle peer after 10 s, every 5 s, 3 times:
# a replica whose machine vanished frees the lock in ~25 s instead of the system's 2 hours.
# Ignored (and harmless) on a unix socket, where the peer's end is always seen.
KEEPALIVE_SETTINGS = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5,
                      "tcp_keepalives_count": 3}


class LedgerBusy(CrowdexError):
    """Another process kept the ledger lock for ``LOCK_WAIT_MAX_S``: 503, retry later."""

    def __init__(self) -> None:
        super().__init__("unavailable", "another replica of the venue is running a settlement "
                         "batch; retry shortly", headers={"Retry-After": str(RETRY_AFTER_S)})


@asynccontextmanager
async def ledger_lock(pool: asyncpg.Pool,
                      wait_max_s: float = LOCK_WAIT_MAX_S) -> AsyncIterator[asyncpg.Connection]:
    """Hold the ledger's lock; yields the connection holding it, on which to write the batch.

    Raises ``LedgerBusy`` after ``wait_max_s`` without it. Polled rather than blocked on, so the
    wait is bounded and a cancelled request leaves no lock request queued in the database.
    """
    async with pool.acquire() as conn:
        # One round trip (the simple protocol takes several statements); reset on release.
        await conn.execute("; ".join(f"SET {name} = {int(value)}"
                                     for name, value in KEEPALIVE_SETTINGS.items()))
        deadline = time.monotonic() + wait_max_s
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEDGER_LOCK_KEY):
            if time.monotonic() >= deadline:
                raise LedgerBusy()
            await asyncio.sleep(LOCK_POLL_S)
        try:
            yield conn
        finally:
            await _unlock(conn)


async def _unlock(conn: asyncpg.Connection) -> None:
    """Release the lock. On a lost session there is nothing to release: PostgreSQL freed it
    with the session, and asyncpg has already detached the pool's proxy (whose every method
    then raises InterfaceError). The pool's reset on release would unlock all anyway."""
    try:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", LEDGER_LOCK_KEY)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
            ConnectionError, OSError):
        pass
