"""Debt board: first come with sold_out/exceeds_remaining, the rate auction, schedules, late and
default by the clock, repayments paid pro rata with the servicing fee, the borrower cap."""

from __future__ import annotations

from gateway import keys
from settlement.commands import PrepareSettlement
from tests.boards.conftest import DAY, OPERATOR

FIXED = {"face_value": 10_000, "min_quantity": 5, "max_quantity": 10, "term_months": 12,
         "repayment": "amortizing", "rate_bps": 1200, "lockup_days": 0}
AUCTION = {"face_value": 100, "min_quantity": 50, "max_quantity": 100, "term_months": 6,
           "repayment": "bullet", "auction": {"max_rate_bps": 1000}}


async def settle_prepare(venue) -> None:
    """Run the settlement batch's first step, which pays pending distributions."""
    reply = await venue.client.server.app[keys.ENGINE].submit(PrepareSettlement())
    assert reply.status == 200
    venue.check_conservation()


async def test_fixed_rate_first_come_schedule_late_default_and_repayment(venue):
    issuer = await venue.issuer(50_000)
    a, b, c = [await venue.investor(200_000) for _ in range(3)]
    pid = await venue.listed(issuer, "debt", FIXED, 30)
    path = f"/v1/projects/{pid}/subscriptions"
    assert (await venue.subscribe(a, pid, 6))[0] == 201
    assert await venue.error("POST", path, b, {"quantity": 5}) == (422, "exceeds_remaining")
    assert await venue.error("POST", path, b, {"quantity": 4, "rate_bps": 900}) == (
        400, "invalid_field")
    assert (await venue.subscribe(b, pid, 4))[0] == 201
    assert await venue.error("POST", path, c, {"quantity": 1}) == (422, "sold_out")
    assert (await venue.project(pid))["rate_bps"] == 1200
    await venue.advance(30 * DAY)  # closes on 2026-01-31: instalments clamp to month ends
    project = await venue.project(pid)
    assert project["status"] == "trading"  # lock-up 0: trading at once
    assert project["raised"] == 100_000
    # 100,000 raised less 300 bps (3,000); the issuer had 50,000.
    assert (await venue.me(issuer))["cash_available"] == 50_000 + 97_000
    _, rows = await venue.call("GET", f"/v1/projects/{pid}/schedule", None, expect=200)
    # M = 100000 * 0.01 * 1.01^12 / (1.01^12 - 1) = 8884.88 -> 8885
    assert rows[0] == {"number": 1, "due": "2026-02-28T00:00:00Z", "principal": 7885,
                       "interest": 1000, "amount": 8885, "paid": 0, "status": "scheduled"}
    assert rows[1]["due"] == "2026-03-31T00:00:00Z" and rows[1]["interest"] == 921
    assert rows[11] == {"number": 12, "due": "2027-01-31T00:00:00Z", "principal": 8796,
                        "interest": 88, "amount": 8884, "paid": 0, "status": "scheduled"}
    assert sum(r["principal"] for r in rows) == 100_000
    # Late 15 days after the due date, default after 90, by the clock.
    await venue.advance((28 + 15) * DAY - 1)
    assert (await schedule_status(venue, pid))[0] == "scheduled"
    await venue.advance(1)
    assert (await schedule_status(venue, pid))[0] == "late"
    assert not venue.offerings.instrument_info(pid).defaulted
    await venue.advance(75 * DAY)
    statuses = await schedule_status(venue, pid)
    # Now 2026-05-29: #1 (due Feb 28) 90 days over, #2 and #3 15+ days, #4 not yet due.
    assert statuses[:4] == ["default", "late", "late", "scheduled"]
    assert venue.offerings.instrument_info(pid).defaulted
    # The issuer pays two instalments: the oldest unpaid are covered first.
    _, dist = await venue.call("POST", f"/v1/projects/{pid}/distributions", issuer,
                               {"amount": 8885 + 8000}, expect=200)
    assert dist["status"] == "pending"
    _, rows = await venue.call("GET", f"/v1/projects/{pid}/schedule", None, expect=200)
    assert [(r["paid"], r["status"]) for r in rows[:3]] == [
        (8885, "paid"), (8000, "late"), (0, "late")]
    assert (await venue.me(issuer))["cash_reserved"] == 16_885
    await settle_prepare(venue)
    # 16,885 less 100 bps (168.85 -> 169) = 16,716 split 6:4: 10029.6 / 6686.4 -> 10029 + 1, 6686
    assert (await venue.me(a))["cash_available"] == 200_000 - 60_000 + 10_030
    assert (await venue.me(b))["cash_available"] == 200_000 - 40_000 + 6_686
    assert (await venue.me(issuer))["cash_reserved"] == 0
    _, dists = await venue.call("GET", f"/v1/projects/{pid}/distributions", None, expect=200)
    assert dists[0]["status"] == "paid" and dists[0]["fee"] == 169
    await settle_prepare(venue)  # nothing pending: nothing paid twice
    assert (await venue.me(a))["cash_available"] == 200_000 - 60_000 + 10_030
    total = sum(r["amount"] for r in rows)
    assert await venue.error("POST", f"/v1/projects/{pid}/distributions", issuer,
                             {"amount": total - 16_885 + 1}) == (422, "not_permitted")
    other = await venue.issuer()
    assert await venue.error("POST", f"/v1/projects/{pid}/distributions", other,
                             {"amount": 1}) == (404, "project_not_found")


async def schedule_status(venue, pid: int) -> list[str]:
    _, rows = await venue.call("GET", f"/v1/projects/{pid}/schedule", None, expect=200)
    return [r["status"] for r in rows]


async def test_rate_auction_uniform_price_with_a_bid_at_the_clearing_rate(venue):
    issuer = await venue.issuer()
    a, b, c, d = [await venue.investor(10_000) for _ in range(4)]
    pid = await venue.listed(issuer, "debt", AUCTION, 7)
    path = f"/v1/projects/{pid}/subscriptions"
    assert await venue.error("POST", path, a, {"quantity": 1}) == (400, "missing_field")
    assert await venue.error("POST", path, a, {"quantity": 1, "rate_bps": 1001}) == (
        422, "rate_above_max")
    for who, quantity, rate in ((a, 40, 500), (b, 50, 600), (c, 30, 600), (d, 20, 700)):
        status, body = await venue.subscribe(who, pid, quantity, rate_bps=rate)
        assert status == 201 and body["reserved_amount"] == quantity * 100
    assert (await venue.project(pid))["clearing_rate_bps"] is None
    await venue.advance(7 * DAY)
    project = await venue.project(pid)
    assert project["status"] == "trading" and project["clearing_rate_bps"] == 600
    assert project["raised"] == 10_000 and project["investor_count"] == 3
    rows = await venue.allocations(pid)
    # 40 @ 500, then 50 @ 600 (earlier), then the second bid at 600 fills the last 10.
    assert [(r["quantity"], r["refunded"]) for r in rows] == [
        (40, 0), (50, 0), (10, 2_000), (0, 2_000)]
    assert (await venue.me(d))["cash_available"] == 10_000
    _, sched = await venue.call("GET", f"/v1/projects/{pid}/schedule", None, expect=200)
    # Bullet at the clearing rate: 10,000 * 600 / 120000 = 50 a month, principal at the end.
    assert [(r["principal"], r["interest"]) for r in sched] == [(0, 50)] * 5 + [(10_000, 50)]


async def test_auction_below_min_fails(venue):
    issuer = await venue.issuer()
    a = await venue.investor(10_000)
    pid = await venue.listed(issuer, "debt", AUCTION, 7)
    await venue.subscribe(a, pid, 49, rate_bps=100)
    await venue.advance(7 * DAY)
    assert (await venue.project(pid))["status"] == "failed"
    assert (await venue.me(a))["cash_available"] == 10_000


async def test_borrower_cap_and_debt_terms(venue):
    issuer = await venue.issuer()
    big = {**FIXED, "face_value": 100_000, "max_quantity": 1000}  # exactly 1,000,000.00
    await venue.listed(issuer, "debt", big, 30, approve=False)

    async def create(terms):
        return await venue.error("POST", "/v1/projects", issuer, {
            "board": "debt", "title": "t", "deadline": venue.at(30), "terms": terms})

    assert await create({**FIXED, "max_quantity": 1, "min_quantity": 1}) == (422, "borrower_cap")
    other = await venue.issuer()
    status, _ = await venue.call("POST", "/v1/projects", other, {
        "board": "debt", "title": "t", "deadline": venue.at(30), "terms": FIXED})
    assert status == 201
    no_rate = {k: v for k, v in FIXED.items() if k != "rate_bps"}
    assert await create(no_rate) == (400, "missing_field")
    assert await create({**FIXED, "auction": {"max_rate_bps": 5}}) == (422, "invalid_terms")
    assert await create({**FIXED, "term_months": 5}) == (422, "invalid_terms")
    assert await create({**FIXED, "term_months": 61}) == (422, "invalid_terms")
    assert await create({**FIXED, "repayment": "balloon"}) == (400, "invalid_field")
    assert await create({**AUCTION, "auction": {}}) == (400, "missing_field")
    status, body = await venue.call("POST", "/v1/projects", issuer, {
        "board": "debt", "title": "t", "deadline": venue.at(6.9), "terms": FIXED})
    assert (status, body["error"]["code"]) == (422, "invalid_terms")
    _ = OPERATOR
