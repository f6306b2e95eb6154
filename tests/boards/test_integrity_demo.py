"""Disclosures, the monthly integrity list, and the demo venue."""

from __future__ import annotations

from engine.clock import parse_time_us
from gateway import keys
from gateway.demo import seed_demo
from tests.boards.conftest import OPERATOR
from tests.boards.test_debt import FIXED


async def advance_to(venue, when: str) -> None:
    await venue.advance((parse_time_us(when) - venue.machine.now_us) // 1_000_000)


async def loan(venue):
    issuer = await venue.issuer(200_000)
    a = await venue.investor(200_000)
    pid = await venue.listed(issuer, "debt", FIXED, 30)  # closes 2026-01-31
    await venue.subscribe(a, pid, 10)
    await advance_to(venue, "2026-01-31T00:00:00Z")
    assert (await venue.project(pid))["status"] == "trading"
    return issuer, a, pid


async def test_missed_disclosure_and_late_instalment_go_black(venue):
    issuer, a, pid = await loan(venue)
    await advance_to(venue, "2026-03-16T00:00:00Z")  # instalment 1 (Feb 28) is late
    _, body = await venue.call("GET", "/v1/integrity?month=2026-02", OPERATOR, expect=200)
    assert [(b["account_id"], b["reasons"]) for b in body["black"]] == [
        (issuer["account_id"], [f"no disclosure on project {pid}"])]
    assert body["red"] == []
    _, public = await venue.call("GET", "/v1/integrity?month=2026-02", None, expect=200)
    assert set(public) == {"month", "black"} and public["black"] == body["black"]
    _, march = await venue.call("GET", "/v1/integrity?month=2026-03", OPERATOR, expect=200)
    assert march["black"][0]["reasons"] == [f"late instalment on project {pid}"]
    _, january = await venue.call("GET", "/v1/integrity?month=2026-01", OPERATOR, expect=200)
    assert january == {"month": "2026-01", "black": [], "red": []}  # nothing owed yet
    assert await venue.error("GET", "/v1/integrity?month=2026-13", None) == (
        400, "invalid_field")


async def test_six_clean_months_make_the_red_list(venue):
    issuer, a, pid = await loan(venue)
    _, rows = await venue.call("GET", f"/v1/projects/{pid}/schedule", None, expect=200)
    for month, row in zip(range(2, 8), rows, strict=False):
        await advance_to(venue, f"2026-{month:02d}-01T00:00:00Z")
        await venue.call("POST", f"/v1/projects/{pid}/disclosures", issuer,
                         {"title": f"report {month}", "body": "all well"}, expect=201)
        await venue.call("POST", f"/v1/projects/{pid}/distributions", issuer,
                         {"amount": row["amount"]}, expect=200)
    await advance_to(venue, "2026-08-01T00:00:00Z")
    _, body = await venue.call("GET", "/v1/integrity?month=2026-07", OPERATOR, expect=200)
    assert body["black"] == [] and [r["account_id"] for r in body["red"]] == [
        issuer["account_id"]]
    _, body = await venue.call("GET", "/v1/integrity?month=2026-06", OPERATOR, expect=200)
    assert body["red"] == []  # only five clean months by then
    _, listed = await venue.call("GET", f"/v1/projects/{pid}/disclosures", None, expect=200)
    assert [d["title"] for d in listed] == [f"report {m}" for m in range(2, 8)]
    other = await venue.issuer()
    assert await venue.error("POST", f"/v1/projects/{pid}/disclosures", other,
                             {"title": "x", "body": "y"}) == (404, "project_not_found")


async def test_demo_seeds_every_board_in_several_states(venue):
    engine = venue.client.server.app[keys.ENGINE]
    accounts = await seed_demo(engine)
    assert accounts and len(accounts) == 11
    _, rows = await venue.call("GET", "/v1/projects", None, expect=200)
    # Seeded once: a second call adds nothing and answers the same demo keys again.
    assert await seed_demo(engine) == accounts
    assert len((await venue.call("GET", "/v1/projects", None, expect=200))[1]) == len(rows)
    states = {(r["board"], r["status"]) for r in rows}
    for board in ("equity", "debt", "ip", "product", "operating_rights"):
        assert (board, "open") in states
    assert {("equity", "trading"), ("equity", "failed"), ("debt", "trading"),
            ("ip", "succeeded"), ("product", "succeeded"), ("product", "failed"),
            ("equity", "pending_review"), ("operating_rights", "trading"),
            ("operating_rights", "succeeded"), ("operating_rights", "failed"),
            ("operating_rights", "pending_review")} <= states
    venue.check_conservation()
    trading = next(r for r in rows if (r["board"], r["status"]) == ("equity", "trading"))
    _, trades = await venue.call("GET", f"/v1/instruments/{trading['project_id']}/trades",
                                 None, expect=200)
    # Buy 40 @ 10.60 takes 40 of the 60 @ 10.50; buy 70 @ 10.80 takes the last 20 @ 10.50,
    # then 50 of the 80 @ 10.80. Newest first:
    assert [(t["price"], t["quantity"]) for t in trades] == [(1_080, 50), (1_050, 20),
                                                             (1_050, 40)]
    _, book = await venue.call("GET", f"/v1/instruments/{trading['project_id']}/book", None,
                               expect=200)
    assert book["bids"] == [[1_000, 30], [980, 25]]
    assert book["asks"] == [[1_080, 30], [1_120, 50], [1_150, 40]]
    # The café chain's flagship: 1,300 subscribed for 1,000 (pro rata), its months and
    # buy-back scheduled, and a book with one trade.
    cafe = next(r for r in rows if (r["board"], r["status"]) == ("operating_rights", "trading"))
    allocated = await venue.allocations(cafe["project_id"])
    assert [r["quantity"] for r in allocated] == [385, 461, 154]
    _, months = await venue.call("GET", f"/v1/projects/{cafe['project_id']}/schedule", None,
                                 expect=200)
    assert len(months) == 13 and months[-1]["buyback"] is True
    assert {m["status"] for m in months} == {"scheduled"}
    assert months[-1]["owed"] == 1_000 * 1_800
    _, book = await venue.call("GET", f"/v1/instruments/{cafe['project_id']}/book", None,
                               expect=200)
    assert (book["bids"], book["asks"]) == ([[1_950, 30]], [[2_100, 25], [2_200, 25]])
