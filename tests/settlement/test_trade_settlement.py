"""Real subscriptions and trades through a settlement batch into PostgreSQL."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from gateway import keys
from tests.boards.conftest import OPERATOR, Venue, deposit


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
    # The sale's proceeds (net of the fee taken out of them) are not withdrawable before the
    # batch that settles them; the cash the seller had before is.
    assert before["cash_withdrawable"] == before["cash_available"] - (50 * 11_00 - fee)
    assert before["cash_withdrawable"] == 10_000_00 - 300 * 10_00

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


def unsettled(venue: Venue) -> list[int]:
    balances = venue.machine.balances.accounts
    return balances.rows["cash_unsettled"][:balances.count].tolist()


async def test_withdrawable_is_short_by_nothing_while_proceeds_are_unsettled(
        settle_client: TestClient) -> None:
    """Issue 15 #2: withdrawable = available - proceeds not yet settled, net of the fees (and
    the held payout) taken out of them; a batch then clears exactly what was unsettled."""
    venue = Venue(settle_client)
    issuer = await venue.issuer()
    inst = await venue.listed(issuer, "equity", {
        "price": 10_00, "min_quantity": 10, "max_quantity": 1000, "lockup_days": 0}, 30)
    seller = await venue.investor(cash=10 * 10_00, investor_class="qualified")
    buyer = await venue.investor(cash=100_000, investor_class="qualified")
    await venue.subscribe(seller, inst, 10)
    await venue.call("POST", f"/v1/projects/{inst}/close", OPERATOR, expect=200)
    # The issuer after a close with a success fee: 10,000 raised, 600 fee, 9,400 unsettled.
    await deposit(settle_client, issuer["account_id"], 300, "issuer-deposit")
    me = await venue.me(issuer)
    assert (me["cash_available"], me["cash_withdrawable"]) == (9_700, 300)
    await venue.call("POST", "/v1/me/withdrawals", issuer, {"amount": 300, "reference": "w1"},
                     expect=201)

    await venue.call("POST", "/v1/settlement/batches", OPERATOR, {}, expect=201)
    assert (await venue.me(seller))["cash_available"] == 0  # units only, no cash

    await venue.call("POST", "/v1/orders", seller, {"instrument_id": inst, "side": "sell",
                     "type": "limit", "price": 1_000, "quantity": 10}, expect=201)
    await venue.call("POST", "/v1/orders", buyer, {"instrument_id": inst, "side": "buy",
                     "type": "limit", "price": 1_000, "quantity": 10}, expect=201)
    await deposit(settle_client, seller["account_id"], 500, "after-sale")
    me = await venue.me(seller)
    # Proceeds 10,000 less the 100 fee: 9,900 unsettled; the 500 deposit is settled cash.
    assert (me["cash_available"], me["cash_withdrawable"]) == (10_400, 500)
    await venue.call("POST", "/v1/me/withdrawals", seller, {"amount": 500, "reference": "w1"},
                     expect=201)
    assert await venue.error("POST", "/v1/me/withdrawals", seller,
                             {"amount": 1, "reference": "w2"}) == (422, "insufficient_funds")

    await venue.call("POST", "/v1/settlement/batches", OPERATOR, {}, expect=201)
    assert set(unsettled(venue)) == {0}  # cleared exactly, not clamped at zero
    for who, cash in ((seller, 9_900), (issuer, 9_400)):
        me = await venue.me(who)
        assert me["cash_available"] == me["cash_withdrawable"] == cash
    _, rec = await venue.call("GET", "/v1/settlement/reconciliation", OPERATOR, expect=200)
    assert rec["balanced"], rec


async def test_a_product_issuer_can_withdraw_its_own_cash_while_the_payout_is_unsettled(
        settle_client: TestClient) -> None:
    """The held part and the fee come out of the raised proceeds, not out of settled cash."""
    venue = Venue(settle_client)
    issuer = await venue.issuer(cash=250)
    backer = await venue.investor(cash=2_000)
    pid = await venue.listed(issuer, "product", {
        "goal": 1_000, "tiers": [{"tier_id": "std", "price": 1_100, "quantity": None}]}, 10)
    await venue.subscribe(backer, pid, 1, tier_id="std")
    await venue.call("POST", f"/v1/projects/{pid}/close", OPERATOR, expect=200)
    # Raised 1,100; fee 55; net 1,045; released 731, held 314 (in no account).
    me = await venue.me(issuer)
    assert (me["cash_available"], me["cash_withdrawable"]) == (250 + 731, 250)
    await venue.call("POST", "/v1/settlement/batches", OPERATOR, {}, expect=201)
    assert set(unsettled(venue)) == {0}
    me = await venue.me(issuer)
    assert me["cash_available"] == me["cash_withdrawable"] == 981
