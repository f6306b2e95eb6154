"""Equity board: terms, lifecycle, cancel window, pro rata with ties, fees, lock-up, limits."""

from __future__ import annotations

import pytest

from tests.boards.conftest import DAY, OPERATOR, at

TERMS = {"price": 100, "min_quantity": 10, "max_quantity": 10, "lockup_days": 30}


async def test_oversubscribed_pro_rata_ties_go_to_the_earliest(venue):
    issuer = await venue.issuer()
    a, b, c = [await venue.investor(10_000) for _ in range(3)]
    pid = await venue.listed(issuer, "equity", TERMS, 30)
    for who in (a, b, c):
        status, body = await venue.subscribe(who, pid, 4)
        assert status == 201 and body["status"] == "accepted"
        assert body["reserved_amount"] == 400
    assert (await venue.me(a))["cash_reserved"] == 400
    figures = await venue.project(pid)
    assert (figures["raised"], figures["subscribed_quantity"], figures["investor_count"]) == (
        1200, 12, 3)
    await venue.advance(30 * DAY)  # exactly at the deadline: the close fires
    project = await venue.project(pid)
    assert project["status"] == "succeeded"
    assert (project["raised"], project["subscribed_quantity"], project["investor_count"]) == (
        1000, 10, 3)
    # 10 * 4/12 = 3.33 each: floors 3,3,3, one leftover unit to the earliest subscription.
    rows = await venue.allocations(pid)
    assert [(r["account_id"], r["quantity"], r["amount"], r["refunded"]) for r in rows] == [
        (a["account_id"], 4, 400, 0), (b["account_id"], 3, 300, 100),
        (c["account_id"], 3, 300, 100)]
    assert (await venue.me(b))["cash_available"] == 10_000 - 300
    assert (await venue.me(b))["cash_reserved"] == 0
    assert (await venue.me(a))["holdings"] == [
        {"instrument_id": pid, "quantity_available": 4, "quantity_reserved": 0}]
    # Issuer: 1,000 raised less the 600 bps success fee (60), unsettled until the batch.
    me = await venue.me(issuer)
    assert me["cash_available"] == 940 and me["cash_withdrawable"] == 0
    assert int(venue.machine.balances.accounts.rows[1]["cash_available"]) == 60
    info = venue.offerings.instrument_info(pid)
    assert info.status == "succeeded" and info.reference_price_fen == 100 and info.tradable
    assert info.lockup_until_us == venue.offerings.projects[pid].closed_us + 30 * DAY * 10**6
    await venue.advance(30 * DAY - 1)
    assert (await venue.project(pid))["status"] == "succeeded"
    await venue.advance(1)  # the lock-up ends: trading begins that moment
    assert (await venue.project(pid))["status"] == "trading"
    assert venue.offerings.instrument_info(pid).status == "trading"


async def test_allocations_are_for_the_operator_the_issuer_and_each_investor_own_rows(venue):
    """API.md: the role may, but another issuer's project is not theirs: 404, never 403."""
    issuer, other_issuer = await venue.issuer(), await venue.issuer()
    a, b = await venue.investor(10_000), await venue.investor(10_000)
    pid = await venue.listed(issuer, "equity", TERMS, 30)
    for who in (a, b):
        await venue.subscribe(who, pid, 5)
    await venue.call("POST", f"/v1/projects/{pid}/close", OPERATOR, expect=200)
    path = f"/v1/projects/{pid}/allocations"
    assert await venue.error("GET", path, other_issuer) == (404, "project_not_found")
    assert await venue.error("GET", path, None) == (401, "unauthorized")
    _, rows = await venue.call("GET", path, issuer, expect=200)
    assert [r["account_id"] for r in rows] == [a["account_id"], b["account_id"]]
    _, rows = await venue.call("GET", path, b, expect=200)
    assert [r["account_id"] for r in rows] == [b["account_id"]]
    assert await venue.error("GET", "/v1/projects/999/allocations", issuer) == (
        404, "project_not_found")


async def test_below_target_fails_and_releases_everything(venue):
    issuer = await venue.issuer()
    a = await venue.investor(5_000)
    pid = await venue.listed(issuer, "equity", TERMS, 21)
    await venue.subscribe(a, pid, 9)
    assert (await venue.me(a))["cash_available"] == 4_100
    await venue.call("POST", f"/v1/projects/{pid}/close", OPERATOR, expect=200)
    project = await venue.project(pid)
    assert project["status"] == "failed" and project["raised"] == 0
    me = await venue.me(a)
    assert me["cash_available"] == 5_000 and me["cash_reserved"] == 0
    assert me["cash_withdrawable"] == 5_000  # released settled cash: withdrawable at once
    assert await venue.allocations(pid) == [
        {"subscription_id": 1, "account_id": a["account_id"], "quantity": 0, "amount": 0,
         "refunded": 900}]
    assert venue.offerings.instrument_info(pid) is None
    assert await venue.error("POST", f"/v1/projects/{pid}/subscriptions", a,
                             {"quantity": 1}) == (409, "offering_not_open")


@pytest.mark.parametrize(("before_window_s", "expected"), [
    (1, 200),  # one second before the window: allowed
    (0, 422),  # exactly at deadline - 48 h: closed (now < deadline - window is false)
    (-1, 422),  # one second after
])
async def test_cancel_window(venue, before_window_s, expected):
    issuer = await venue.issuer()
    a = await venue.investor(1_000)
    pid = await venue.listed(issuer, "equity", TERMS, 30)
    _, sub = await venue.subscribe(a, pid, 5)
    await venue.advance(30 * DAY - 48 * 3600 - before_window_s)
    status, body = await venue.call("DELETE", f"/v1/subscriptions/{sub['subscription_id']}", a)
    assert status == expected, body
    if expected == 200:
        assert body["status"] == "cancelled"
        assert (await venue.me(a))["cash_available"] == 1_000
    else:
        assert body["error"]["code"] == "cancel_window_closed"
        assert (await venue.me(a))["cash_reserved"] == 500


async def test_cancel_refusals(venue):
    issuer = await venue.issuer()
    a, b = await venue.investor(1_000), await venue.investor(1_000)
    pid = await venue.listed(issuer, "equity", TERMS, 30)
    _, sub = await venue.subscribe(a, pid, 5)
    path = f"/v1/subscriptions/{sub['subscription_id']}"
    assert await venue.error("DELETE", path, b) == (404, "subscription_not_found")
    assert await venue.error("DELETE", "/v1/subscriptions/999", a) == (
        404, "subscription_not_found")
    await venue.call("DELETE", path, a, expect=200)
    assert await venue.error("DELETE", path, a) == (409, "invalid_state")
    assert await venue.error("DELETE", path, issuer) == (403, "forbidden")


async def test_retail_limit_exactly_at_the_limit_and_rolling_year(venue):
    issuer = await venue.issuer()
    # No income or net worth given: the limit is 2,500.00.
    a = await venue.investor(1_000_000)
    terms = {"price": 1, "min_quantity": 1, "max_quantity": 10_000_000, "lockup_days": 0}
    pid = await venue.listed(issuer, "equity", terms, 60)
    status, _ = await venue.subscribe(a, pid, 250_000)
    assert status == 201  # exactly at the limit
    assert await venue.error("POST", f"/v1/projects/{pid}/subscriptions", a,
                             {"quantity": 1}) == (422, "limit_exceeded")
    # A qualified investor has no limit.
    q = await venue.investor(1_000_000, investor_class="qualified")
    assert (await venue.subscribe(q, pid, 300_000))[0] == 201
    # 10 % of the greater when both are at or above 124,000.00, capped at 124,000.00.
    rich = await venue.investor(2_000_000, annual_income=150_000_00, net_worth=130_000_00)
    assert (await venue.subscribe(rich, pid, 1_500_000))[0] == 201
    assert await venue.error("POST", f"/v1/projects/{pid}/subscriptions", rich,
                             {"quantity": 1}) == (422, "limit_exceeded")
    await venue.call("POST", f"/v1/projects/{pid}/close", OPERATOR, expect=200)
    # Allocated amounts keep counting for 365 days from the subscription, then roll off.
    pid2 = await venue.listed(issuer, "equity", terms, 60)
    assert (await venue.subscribe(a, pid2, 1))[0] == 422
    await venue.advance(365 * DAY)  # pid2 closed meanwhile; now exactly a year on
    pid3 = await venue.listed(issuer, "equity", terms, 60)
    assert (await venue.subscribe(a, pid3, 1))[0] == 422  # the window includes its end
    await venue.advance(1)
    assert (await venue.subscribe(a, pid3, 250_000))[0] == 201


async def test_terms_validation(venue):
    issuer = await venue.issuer()

    async def create(terms, deadline=30, board="equity", **extra):
        return await venue.error("POST", "/v1/projects", issuer, {
            "board": board, "title": "t", "description": "d", "deadline": at(deadline),
            "terms": terms, **extra})

    assert await create({"price": 1, "min_quantity": 1}) == (400, "missing_field")
    assert await create({**TERMS, "colour": "red"}) == (400, "unknown_field")
    assert await create({**TERMS, "price": None}) == (400, "invalid_field")
    assert await create({**TERMS, "price": 1.0}) == (400, "invalid_field")
    assert await create({**TERMS, "price": 0}) == (400, "invalid_field")
    assert await create(TERMS, board="gold") == (400, "invalid_field")
    assert await create({**TERMS, "min_quantity": 11}) == (422, "invalid_terms")
    assert await create(TERMS, deadline=20.99) == (422, "invalid_terms")
    assert await create(TERMS, deadline=60.01) == (422, "invalid_terms")
    status, body = await venue.call("POST", "/v1/projects", issuer, {
        "board": "equity", "title": "t", "description": "d", "deadline": "2026-02-01",
        "terms": TERMS})
    assert (status, body["error"]["code"]) == (400, "invalid_field")
    # End points are included; lockup_days omitted takes the default (365).
    for days in (21, 60):
        _, body = await venue.call("POST", "/v1/projects", issuer, {
            "board": "equity", "title": "t", "deadline": at(days),
            "terms": {"price": 1, "min_quantity": 1, "max_quantity": 1}}, expect=201)
        assert body["terms"]["lockup_days"] == 365
    a = await venue.investor()
    assert await create(TERMS, who=None) == (400, "unknown_field")
    status, body = await venue.call("POST", "/v1/projects", a, {
        "board": "equity", "title": "t", "deadline": at(30), "terms": TERMS})
    assert (status, body["error"]["code"]) == (403, "forbidden")


async def test_deadline_checked_again_at_approval(venue):
    issuer = await venue.issuer()
    pid = await venue.listed(issuer, "equity", TERMS, 21, approve=False)
    await venue.advance(1)  # now the deadline is less than 21 days away
    assert await venue.error("POST", f"/v1/projects/{pid}/approve", OPERATOR) == (
        422, "invalid_terms")
    assert (await venue.project(pid))["status"] == "pending_review"
    await venue.call("POST", f"/v1/projects/{pid}/reject", OPERATOR, expect=200)
    assert (await venue.project(pid))["status"] == "rejected"
    assert await venue.error("POST", f"/v1/projects/{pid}/approve", OPERATOR) == (
        409, "invalid_state")
    assert await venue.error("POST", "/v1/projects/999/approve", OPERATOR) == (
        404, "project_not_found")
    assert await venue.error("POST", f"/v1/projects/{pid}/approve", issuer) == (
        403, "forbidden")


async def test_subscription_refusals_in_order(venue):
    issuer = await venue.issuer()
    poor = await venue.investor(50)
    pid = await venue.listed(issuer, "equity", TERMS, 30, approve=False)
    assert await venue.error("POST", f"/v1/projects/{pid}/subscriptions", poor,
                             {"quantity": 1}) == (409, "offering_not_open")
    await venue.call("POST", f"/v1/projects/{pid}/approve", OPERATOR, expect=200)
    path = f"/v1/projects/{pid}/subscriptions"
    assert await venue.error("POST", path, poor, {"quantity": 0}) == (400, "invalid_field")
    assert await venue.error("POST", path, poor, {}) == (400, "missing_field")
    assert await venue.error("POST", path, None, {"quantity": 1}) == (401, "unauthorized")
    assert await venue.error("POST", path, issuer, {"quantity": 1}) == (403, "forbidden")
    assert await venue.error("POST", "/v1/projects/77/subscriptions", poor,
                             {"quantity": 1}) == (404, "project_not_found")
    assert await venue.error("POST", path, poor, {"quantity": 1}) == (422, "insufficient_funds")


async def test_project_listing_filters(venue):
    issuer = await venue.issuer()
    p1 = await venue.listed(issuer, "equity", TERMS, 30)
    p2 = await venue.listed(issuer, "equity", TERMS, 30, approve=False)
    _, rows = await venue.call("GET", "/v1/projects?board=equity&status=open", None,
                               expect=200)
    assert [r["project_id"] for r in rows] == [p1]
    _, rows = await venue.call("GET", "/v1/projects", None, expect=200)
    assert [r["project_id"] for r in rows] == [p1, p2]
    assert set(rows[0]) >= {"project_id", "board", "title", "status", "deadline", "terms",
                            "raised", "subscribed_quantity", "investor_count"}
    assert await venue.error("GET", "/v1/projects?status=nope", None) == (400, "invalid_field")
    assert await venue.error("GET", "/v1/projects/5", None) == (404, "project_not_found")
