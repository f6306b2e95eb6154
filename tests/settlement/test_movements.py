"""GET /v1/me/movements: an account's history of money and units, newest first, pending until
the settlement batch that records it, then settled with that batch (issue 16, My account)."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.boards.conftest import OPERATOR, Venue, deposit


def brief(rows: list[dict]) -> list[tuple]:
    return [(r["kind"], r["asset"], r.get("instrument_id"), r["amount"], r["status"])
            for r in rows]


async def test_movements_are_pending_then_settled_with_their_batch(
        settle_client: TestClient) -> None:
    venue = Venue(settle_client)
    issuer = await venue.issuer()
    inst = await venue.listed(issuer, "equity", {
        "price": 10_00, "min_quantity": 10, "max_quantity": 1000, "lockup_days": 0}, 30)
    seller = await venue.investor(cash=10_000, investor_class="qualified")
    buyer = await venue.investor(cash=50_000, investor_class="qualified")
    await venue.subscribe(seller, inst, 10)
    await venue.call("POST", f"/v1/projects/{inst}/close", OPERATOR, expect=200)
    _, rows = await venue.call("GET", "/v1/me/movements", seller, expect=200)
    assert brief(rows) == [
        ("units_issued", "units", inst, 10, "pending"),
        ("subscription_payment", "cash", None, -10_000, "pending"),
        ("deposit", "cash", None, 10_000, "pending")]
    assert [r["movement_id"] for r in rows] == sorted((r["movement_id"] for r in rows),
                                                      reverse=True)

    _, batch = await venue.call("POST", "/v1/settlement/batches", OPERATOR, {}, expect=201)
    await venue.call("POST", "/v1/orders", seller, {"instrument_id": inst, "side": "sell",
                     "type": "limit", "price": 1_000, "quantity": 4}, expect=201)
    await venue.call("POST", "/v1/orders", buyer, {"instrument_id": inst, "side": "buy",
                     "type": "limit", "price": 1_000, "quantity": 4}, expect=201)
    await deposit(settle_client, seller["account_id"], 77, "late")
    _, rows = await venue.call("GET", "/v1/me/movements", seller, expect=200)
    assert brief(rows) == [
        ("deposit", "cash", None, 77, "pending"),
        ("trade_fee", "cash", None, -40, "pending"),
        ("trade_units", "units", inst, -4, "pending"),
        ("trade_cash", "cash", None, 4_000, "pending"),
        ("units_issued", "units", inst, 10, "settled"),
        ("subscription_payment", "cash", None, -10_000, "settled"),
        ("deposit", "cash", None, 10_000, "settled")]
    assert {r["batch_id"] for r in rows if r["status"] == "settled"} == {batch["batch_id"]}
    assert all(r["settled_at"] == batch["exchange_time"] for r in rows
               if r["status"] == "settled")
    assert all(r["batch_id"] is None for r in rows if r["status"] == "pending")

    await venue.call("POST", "/v1/settlement/batches", OPERATOR, {}, expect=201)
    _, rows = await venue.call("GET", "/v1/me/movements?limit=2", seller, expect=200)
    # Settled trades are the orders' fills (GET /v1/orders): the ledger lists the rest.
    assert brief(rows) == [("deposit", "cash", None, 77, "settled"),
                           ("units_issued", "units", inst, 10, "settled")]
    _, issuer_rows = await venue.call("GET", "/v1/me/movements", issuer, expect=200)
    assert [r["kind"] for r in issuer_rows] == ["success_fee", "subscription_payment"]
    assert await venue.error("GET", "/v1/me/movements", None) == (401, "unauthorized")
    assert await venue.error("GET", "/v1/me/movements?limit=0", seller) == (
        400, "invalid_field")
