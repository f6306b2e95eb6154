"""Settlement batches through the API: legs, instructions, the report, withdrawable cash."""

from __future__ import annotations

import csv
import io

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from engine import movements as mv
from gateway import keys
from settlement.db import migrate
from tests.gateway.conftest import OPERATOR, deposit, new_account

pytestmark = pytest.mark.asyncio


async def run_batch(client: TestClient, status: int = 201) -> dict:
    response = await client.post("/v1/settlement/batches", headers=OPERATOR)
    assert response.status == status, await response.text()
    return await response.json()


async def withdraw(client: TestClient, headers: dict, amount: int, reference: str) -> int:
    response = await client.post("/v1/me/withdrawals", json={"amount": amount,
                                                              "reference": reference},
                                 headers=headers)
    return response.status


async def test_a_batch_writes_two_legs_per_movement_and_balances(
    settle_client: TestClient, database_url: str
) -> None:
    a = await new_account(settle_client)
    b = await new_account(settle_client)
    await deposit(settle_client, a["account_id"], 10_000, "d1")
    await deposit(settle_client, b["account_id"], 2_500, "d2")
    assert await withdraw(settle_client, a["headers"], 1_000, "w1") == 201
    batch = await run_batch(settle_client)
    assert batch["batch_id"] == 1 and batch["status"] == "committed"
    assert batch["entry_count"] == 6 and batch["movement_count"] == 3
    assert batch["trade_count"] == 0
    conn = await asyncpg.connect(database_url)
    try:
        legs = await conn.fetch("SELECT * FROM ledger_legs ORDER BY movement_id, side")
        assert [(r["movement_id"], r["side"]) for r in legs] == [
            (1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2)]
        assert sum(r["amount"] for r in legs) == 0
        balances = {(r["account_id"], r["asset"]): r["amount"]
                    for r in await conn.fetch("SELECT * FROM balances")}
        assert balances == {(0, 0): -11_500, (a["account_id"], 0): 9_000,
                            (b["account_id"], 0): 2_500}
        assert await conn.fetchval("SELECT count(*) FROM accounts") >= 4
    finally:
        await conn.close()
    # Nothing new: the next batch is empty, and the first stays as it was.
    second = await run_batch(settle_client)
    assert second["batch_id"] == 2 and second["entry_count"] == 0
    again = await settle_client.get("/v1/settlement/batches/1", headers=OPERATOR)
    assert (await again.json())["entry_count"] == 6


async def test_the_report_is_the_netted_instructions(settle_client: TestClient) -> None:
    a = await new_account(settle_client)
    await deposit(settle_client, a["account_id"], 700, "d1")
    await deposit(settle_client, a["account_id"], 300, "d2")
    await run_batch(settle_client)
    response = await settle_client.get("/v1/settlement/batches/1/report", headers=OPERATOR)
    assert response.status == 200
    assert response.content_type == "text/csv"
    rows = list(csv.reader(io.StringIO(await response.text())))
    assert rows[0] == ["batch_id", "account_id", "asset", "net_amount", "legs"]
    assert rows[1:] == [["1", "0", "0", "-1000", "2"],
                        ["1", str(a["account_id"]), "0", "1000", "2"]]


@pytest.mark.parametrize("path", ["/v1/settlement/batches/9", "/v1/settlement/batches/9/report"])
async def test_an_unknown_batch_is_404(settle_client: TestClient, path: str) -> None:
    response = await settle_client.get(path, headers=OPERATOR)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "batch_not_found"


async def test_only_operators_settle(settle_client: TestClient) -> None:
    a = await new_account(settle_client)
    response = await settle_client.post("/v1/settlement/batches", headers=a["headers"])
    assert response.status == 403
    response = await settle_client.post("/v1/settlement/batches")
    assert response.status == 401
    response = await settle_client.post("/v1/settlement/batches", data=b"{\"x\": 1}",
                                        headers=OPERATOR)
    assert response.status == 400


async def test_settled_proceeds_become_withdrawable(settle_client: TestClient) -> None:
    """Proceeds credited with credit_cash are unsettled until the batch that records them."""
    a = await new_account(settle_client)
    await deposit(settle_client, a["account_id"], 1_000, "d1")
    machine = settle_client.server.app[keys.ENGINE].machine
    # Proceeds as a trade credits them (outside the journal, which is fine in one process):
    # account 1 receives 400 from the custodian, then pays it to a with credit_cash.
    machine.balances.accounts.rows[1]["cash_available"] += 400
    machine.movements.record(machine.last_sequence, mv.DEPOSIT, 0, 1, mv.CASH, 400)
    machine.balances.accounts.rows[1]["cash_available"] -= 400
    machine.credit_cash(a["account_id"], 400, mv.TRADE_CASH, 1)
    me = await (await settle_client.get("/v1/me", headers=a["headers"])).json()
    assert me["cash_available"] == 1_400 and me["cash_withdrawable"] == 1_000
    assert await withdraw(settle_client, a["headers"], 1_001, "w1") == 422
    await run_batch(settle_client)
    me = await (await settle_client.get("/v1/me", headers=a["headers"])).json()
    assert me["cash_withdrawable"] == 1_400
    assert await withdraw(settle_client, a["headers"], 1_400, "w2") == 201


async def test_without_a_database_settlement_is_503(client: TestClient) -> None:
    response = await client.post("/v1/settlement/batches", headers=OPERATOR)
    assert response.status == 503


async def test_the_migrations_create_the_ledger(pool: asyncpg.Pool) -> None:
    applied = await migrate(pool)
    assert applied[:2] == ["0001_accounts", "0002_ledger"]
    for table in ("assets", "batches", "ledger_legs", "instructions", "balances",
                  "reconciliation_breaks"):
        assert await pool.fetchval("SELECT to_regclass($1)", table) is not None


async def test_an_account_name_with_a_nul_does_not_stop_settlement(
        settle_client: TestClient, database_url: str) -> None:
    """The API refuses NUL in text now; an account created before it did (here straight
    through the engine, as a journal from then replays) is written with U+FFFD in its place,
    where PostgreSQL refused the whole batch, and every batch after it."""
    from engine import commands as c

    engine = settle_client.server.app[keys.ENGINE]
    reply = await engine.submit(c.CreateAccount("investor", "Zhang\x00San", "nul-key"))
    assert reply.status == 201, reply
    await deposit(settle_client, reply.body["account_id"], 1_000, "nul-account")
    await run_batch(settle_client)
    conn = await asyncpg.connect(database_url)
    try:
        name = await conn.fetchval("SELECT name FROM accounts WHERE account_id = $1",
                                   reply.body["account_id"])
    finally:
        await conn.close()
    assert name == "Zhang\ufffdSan"
