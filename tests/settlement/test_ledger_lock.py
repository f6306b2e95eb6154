"""The ledger's lock (``settlement.lock``): one holder across processes, a bounded wait, and
freed with its session, against real PostgreSQL. Two pools stand for two replicas."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from settlement.batch import CONNECTION_ERRORS
from settlement.db import create_pool
from settlement.lock import LedgerBusy, ledger_lock


async def test_one_holder_at_a_time_and_the_next_gets_it_on_release(
        pool: asyncpg.Pool, database_url: str) -> None:
    other = await create_pool(database_url)  # another replica's pool
    try:
        order: list[str] = []
        async with ledger_lock(pool):
            with pytest.raises(LedgerBusy) as busy:
                async with ledger_lock(other, wait_max_s=0.2):
                    pass
            assert busy.value.status == 503 and busy.value.headers["Retry-After"]

            async def waiter() -> None:
                async with ledger_lock(other):
                    order.append("second")

            waiting = asyncio.create_task(waiter())
            await asyncio.sleep(0.3)
            order.append("first done")
        await asyncio.wait_for(waiting, 10)
        assert order == ["first done", "second"]
    finally:
        await other.close()


async def test_a_lost_session_frees_the_lock(pool: asyncpg.Pool, database_url: str) -> None:
    """What kill -9 of a replica does to its connection: the next replica gets the lock."""
    other = await create_pool(database_url)
    try:
        seen: list[BaseException] = []
        with pytest.raises(CONNECTION_ERRORS) as lost:
            async with ledger_lock(pool) as conn:
                await other.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
                try:
                    await conn.execute("SELECT 1")  # the session is gone: this fails
                except CONNECTION_ERRORS as error:
                    seen.append(error)
                    raise
        # What leaves the lock is the body's own error, not one from releasing a lock that
        # went with its session.
        assert seen and lost.value is seen[0]
        async with ledger_lock(other, wait_max_s=5.0) as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await other.close()
