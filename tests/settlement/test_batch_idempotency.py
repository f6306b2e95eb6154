"""A settlement batch's ``Idempotency-Key`` is as durable as the batch (issue 15 #1).

A retry with the same key, after a clean restart or a kill -9 (before or after the answer),
answers the first batch and writes nothing new; a new key settles what came since; the key with
another body is 409. Against a real server and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import asyncpg
import pytest

from engine.errors import CrowdexError
from settlement.batch import FAULT_ENV
from settlement.db import migrate
from settlement.requests import BatchRequest, earlier_outcome, record_refusal
from tests.conftest import OPERATOR_KEY, ServerProcess
from tests.settlement.test_faults import KILLED, Venue, call, check_ledger


def batch(server: ServerProcess, key: str, body: dict | None = None) -> tuple[int, dict]:
    return call(server, "POST", "/v1/settlement/batches", body,
                {"Authorization": f"Bearer {OPERATOR_KEY}", "Idempotency-Key": key})


async def batch_count(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT count(*) FROM batches")
    finally:
        await conn.close()


@pytest.mark.parametrize("restart", ["clean", "kill_after_answer", "kill_before_answer"])
def test_a_retried_batch_answers_the_first_one_after_a_restart(
        tmp_path: Path, pg_server, monkeypatch: pytest.MonkeyPatch, restart: str) -> None:
    url = asyncio.run(pg_server.create_database())
    venue = Venue()
    if restart == "kill_before_answer":  # committed, engine told, the client never answered
        monkeypatch.setenv(FAULT_ENV, "before_answer")
    server = ServerProcess(tmp_path / "data", "--no-fsync", database_url=url)
    server.start()
    try:
        venue.activity(server)
        status, first = batch(server, "nightly-1")
        if restart == "kill_before_answer":
            assert first == KILLED and server.proc.wait(10) == -9
            monkeypatch.delenv(FAULT_ENV)
        else:
            assert status == 201 and first["batch_id"] == 1, first
            if restart == "clean":
                assert server.stop() == 0
            else:
                os.kill(server.proc.pid, signal.SIGKILL)
                server.proc.wait(10)
        server.start()
        venue.activity(server)  # new movements the retry must not settle
        status, again = batch(server, "nightly-1")
        assert status == 201, again
        assert again["batch_id"] == 1 and again["cutoff_sequence"] > 0
        if restart != "kill_before_answer":
            assert again == first
        assert asyncio.run(batch_count(url)) == 1
        status, conflict = batch(server, "nightly-1", {})
        assert status == 409 and conflict["error"]["code"] == "idempotency_key_conflict"
        status, second = batch(server, "nightly-2")
        assert status == 201 and second["batch_id"] == 2, second
        assert asyncio.run(check_ledger(url, venue)) == 2
        status, rec = call(server, "GET", "/v1/settlement/reconciliation")
        assert status == 200 and rec["balanced"], rec
    finally:
        server.kill()


async def test_a_refused_batch_key_is_refused_again_and_a_key_is_per_operator(
        pool: asyncpg.Pool) -> None:
    """A key's refusal is remembered like its batch; another operator's same key is new."""
    await migrate(pool)
    refused = BatchRequest(1, "k\x00é", "f1")
    assert await earlier_outcome(pool, refused) is None
    async with pool.acquire() as conn:
        await record_refusal(conn, refused, CrowdexError("reconciliation_break", "2 differ"))
    with pytest.raises(CrowdexError) as again:
        await earlier_outcome(pool, refused)
    assert (again.value.code, again.value.message, again.value.status) == (
        "reconciliation_break", "2 differ", 409)
    with pytest.raises(CrowdexError) as conflict:
        await earlier_outcome(pool, BatchRequest(1, "k\x00é", "f2"))
    assert conflict.value.code == "idempotency_key_conflict"
    assert await earlier_outcome(pool, BatchRequest(2, "k\x00é", "f1")) is None
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pool.execute("DELETE FROM batch_requests")
