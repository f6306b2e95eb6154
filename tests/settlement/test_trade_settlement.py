"""Real subscriptions and trades through a settlement batch into PostgreSQL."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from gateway import keys
from tests.boards.conftest import OPERATOR, Venue


async def test_trade_proceeds_settle_into_a_balanced_ledger(settle_client: TestClient) -> None:
    venue = Venue(settle_client)
    issuer = await venue.issuer()
    inst = await venue.listed(issuer, "equity", {
        "price": 10_00, "min_quantity": 10, "max_quantity": 1000, "lockup_days": 0}, 30)
    seller = await venue.investor(cash=10_000_00, investor_class="qualified")
    buyer = await venue.investor(cash=10_000_00, investor_class="qualified")
    await venue.subscribe(seller, inst, 300)
    await venue.call("POST", f"/v1/projects/{inst}/close", OPERATOR, expect=200)
    await venue.call("POST", "/v1/orders", seller, {"instrument_id": inst, "side": "sell",
                     "type": "limit", "price": 11_00, "quantity": 50}, expect=201)
    await venue.call("POST", "/v1/orders", buyer, {"instrument_id": inst, "side": "buy",
                     "type": "limit", "price": 11_00, "quantity": 50}, expect=201)
    fee = (50 * 11_00 * 100 + 5000) // 10000
    before = await venue.me(seller)
    assert before["cash_available"] == 10_000_00 - 300 * 10_00 + 50 * 11_00 - fee
    # The sale's gross proceeds are not withdrawable before the batch that settles them.
    assert before["cash_withdrawable"] == before["cash_available"] - 50 * 11_00

    _, batch = await venue.call("POST", "/v1/settlement/batches", OPERATOR, {}, expect=201)
    assert batch["status"] == "committed" and batch["trade_count"] >= 1
    after = await venue.me(seller)
    assert after["cash_withdrawable"] == after["cash_available"] == before["cash_available"]
    issuer_me = await venue.me(issuer)
    assert issuer_me["cash_withdrawable"] == issuer_me["cash_available"] > 0

    pool = settle_client.server.app[keys.DATABASE].pool
    sums = await pool.fetch("SELECT asset, sum(amount) AS total, count(*) AS legs "
                            "FROM ledger_legs GROUP BY asset ORDER BY asset")
    assert [r["asset"] for r in sums] == [0, inst]
    assert all(r["total"] == 0 for r in sums)  # every asset's legs net to zero
    # Units: issued from the outside world (account 0) and moved seller -> buyer.
    held = await pool.fetch("SELECT account_id, sum(amount) AS units FROM ledger_legs "
                            "WHERE asset = $1 AND account_id > 0 GROUP BY account_id "
                            "ORDER BY account_id", inst)
    assert {r["account_id"]: r["units"] for r in held} == {
        seller["account_id"]: 250, buyer["account_id"]: 50}
    _, recon = await venue.call("GET", "/v1/settlement/reconciliation", OPERATOR, expect=200)
    assert recon["balanced"] is True and recon["mismatches"] == []
