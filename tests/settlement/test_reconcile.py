"""Reconciliation: clean after batches, breaks block the next batch until accepted, and the
engine catches up on batches that committed before a crash."""

from __future__ import annotations

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from gateway import keys
from settlement.batch import service_for
from settlement.ledger import write_batch
from tests.gateway.conftest import OPERATOR, deposit, new_account

pytestmark = pytest.mark.asyncio


async def reconciliation(client: TestClient) -> dict:
    response = await client.get("/v1/settlement/reconciliation", headers=OPERATOR)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_reconciliation_is_clean_before_and_after_batches(
    settle_client: TestClient,
) -> None:
    a = await new_account(settle_client)
    await deposit(settle_client, a["account_id"], 5_000, "d1")
    before = await reconciliation(settle_client)
    # Nothing settled yet: the engine's settled part is empty too.
    assert before["balanced"] and before["cash_total"] == 0 and before["mismatches"] == []
    assert (await settle_client.post("/v1/settlement/batches", headers=OPERATOR)).status == 201
    await deposit(settle_client, a["account_id"], 1_000, "d2")  # unsettled: not compared
    after = await reconciliation(settle_client)
    assert after["balanced"] and after["cash_total"] == 5_000
    assert after["engine_cash_total"] == 5_000 and after["last_batch_id"] == 1


async def test_a_break_blocks_the_next_batch_until_resolved(
    settle_client: TestClient, database_url: str
) -> None:
    a = await new_account(settle_client)
    await deposit(settle_client, a["account_id"], 5_000, "d1")
    assert (await settle_client.post("/v1/settlement/batches", headers=OPERATOR)).status == 201
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE balances SET amount = amount + 7 WHERE account_id = $1",
                           a["account_id"])
    finally:
        await conn.close()
    report = await reconciliation(settle_client)
    assert not report["balanced"]
    assert report["mismatches"] == [{
        "account_id": a["account_id"], "asset": 0, "ledger_amount": 5_007,
        "engine_amount": 5_000, "difference": 7, "accepted": False}]
    response = await settle_client.post("/v1/settlement/batches", headers=OPERATOR)
    assert response.status == 409
    assert (await response.json())["error"]["code"] == "reconciliation_break"
    response = await settle_client.post("/v1/settlement/reconciliation/resolve",
                                        json={"note": "bank confirms 7 fen"}, headers=OPERATOR)
    assert response.status == 200
    assert (await response.json())["resolved"] == 1
    assert (await reconciliation(settle_client))["balanced"]
    await deposit(settle_client, a["account_id"], 1, "d2")
    assert (await settle_client.post("/v1/settlement/batches", headers=OPERATOR)).status == 201
    # A new, different difference blocks again.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE balances SET amount = amount + 1 WHERE account_id = $1",
                           a["account_id"])
    finally:
        await conn.close()
    response = await settle_client.post("/v1/settlement/batches", headers=OPERATOR)
    assert response.status == 409


async def test_a_batch_committed_before_a_crash_is_learned_not_rewritten(
    settle_client: TestClient, database_url: str
) -> None:
    """PostgreSQL committed, the engine never heard (the crash between COMMIT and journal)."""
    a = await new_account(settle_client)
    await deposit(settle_client, a["account_id"], 5_000, "d1")
    app = settle_client.server.app
    service = service_for(app[keys.ENGINE], app[keys.DATABASE].pool)
    plan = await service._plan(service.pool)
    async with service.pool.acquire() as conn:
        await write_batch(conn, plan)
    assert service.component.state.last_batch_id == 0
    await deposit(settle_client, a["account_id"], 300, "d2")
    response = await settle_client.post("/v1/settlement/batches", headers=OPERATOR)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["batch_id"] == 2 and body["movement_count"] == 1
    conn = await asyncpg.connect(database_url)
    try:
        ids = [r[0] for r in await conn.fetch(
            "SELECT movement_id FROM ledger_legs ORDER BY movement_id, side")]
        assert ids == [1, 1, 2, 2]
    finally:
        await conn.close()
    assert (await reconciliation(settle_client))["balanced"]
    assert service.component.state.last_batch_id == 2
