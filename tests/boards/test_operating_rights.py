"""Operating-rights board (经营权众筹): terms, the calendar of a term, revenue reports owed exactly
and paid pro rata with the admin fee, late and default by the clock and the integrity list,
trading until the end of the term, the buy-back and the units' cancellation, cn2015, replay.

Money in these tests is worked out by hand in the comments: they are the specification.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from boards import operating_rights as orb
from boards import overrides
from boards.registry import BOARDS
from engine import movements as mv
from engine import offerings_commands as oc
from engine.clock import parse_time_us
from engine.sequencer import replay_from_empty
from gateway import keys
from gateway.app import create_app
from tests.boards.conftest import DAY, OPERATOR, Venue, manual_config
from tests.boards.test_debt import settle_prepare
from tests.boards.test_integrity_demo import advance_to

QUALIFIED = {"investor_class": "qualified"}
# 6 months of a café's revenue: 15 % of it to the units, bought back at 8.00 a unit.
TERMS = {"price": 1_000, "min_quantity": 100, "max_quantity": 1_000, "term_months": 6,
         "revenue_share_bps": 1_500, "buyback_price": 800, "lockup_days": 0}
# Listed and approved at 2026-01-01, closing at the deadline 2026-01-22: month 1 is 2026-02,
# the term runs to the end of 2026-07, and the buy-back is due 15 days later.
CLOSE = "2026-01-22T00:00:00Z"


def t(text: str) -> int:
    return parse_time_us(text)


async def running(venue, terms: dict = TERMS, units: tuple[int, ...] = (600, 500, 300),
                  issuer_cash: int = 5_000_000):
    """An issuer, one qualified investor per entry of ``units`` subscribing that many, and the
    project closed at its deadline 21 days on (CLOSE when listed at the start); returns
    (issuer, investors, project id)."""
    issuer = await venue.issuer(issuer_cash)
    investors = [await venue.investor(2_000_000, **QUALIFIED) for _ in units]
    pid = await venue.listed(issuer, "operating_rights", terms, 21)
    for investor, quantity in zip(investors, units, strict=True):
        status, body = await venue.subscribe(investor, pid, quantity)
        assert status == 201, body
    await venue.advance(21 * DAY)
    return issuer, investors, pid


async def report(venue, issuer, pid: int, month: str, revenue: int):
    return await venue.call("POST", f"/v1/projects/{pid}/revenue", issuer,
                            {"month": month, "revenue": revenue})


async def schedule(venue, pid: int) -> list[dict]:
    _, rows = await venue.call("GET", f"/v1/projects/{pid}/schedule", None, expect=200)
    return rows


async def cash(venue, who) -> int:
    return (await venue.me(who))["cash_available"]


async def order(venue, who, pid: int, side: str, price: int, quantity: int):
    return await venue.call("POST", "/v1/orders", who, {
        "instrument_id": pid, "side": side, "type": "limit", "price": price,
        "quantity": quantity})


# ---- terms and the calendar -------------------------------------------------------------------


@pytest.mark.parametrize(("change", "expected"), [
    ({}, 201),
    ({"term_months": 6}, 201),
    ({"term_months": 60}, 201),
    ({"term_months": 5}, (422, "invalid_terms")),
    ({"term_months": 61}, (422, "invalid_terms")),
    ({"revenue_share_bps": 10_000}, 201),
    ({"revenue_share_bps": 0}, (400, "invalid_field")),
    ({"revenue_share_bps": 10_001}, (400, "invalid_field")),
    ({"buyback_price": 0}, 201),  # no buy-back payment: the units are simply cancelled
    ({"buyback_price": -1}, (400, "invalid_field")),
    ({"buyback_price": 8.0}, (400, "invalid_field")),
    ({"buyback_price": None}, (400, "invalid_field")),
    # The buy-back is one payment of at most 2^53 fen: max_quantity 1,000 x the price.
    ({"buyback_price": 2**53 // 1_000}, 201),
    ({"buyback_price": 2**53 // 1_000 + 1}, (422, "invalid_terms")),
    ({"min_quantity": 1_001}, (422, "invalid_terms")),
    ({"years": 3}, (400, "unknown_field")),
    ({"drop": "revenue_share_bps"}, (400, "missing_field")),
    ({"drop": "buyback_price"}, (400, "missing_field")),
    ({"drop": "term_months"}, (400, "missing_field")),
])
async def test_terms_are_checked(venue, change, expected):
    issuer = await venue.issuer()
    terms = {**TERMS, **change}
    terms.pop(terms.pop("drop", None), None)
    status, body = await venue.call("POST", "/v1/projects", issuer, {
        "board": "operating_rights", "title": "café", "deadline": venue.at(21),
        "terms": terms})
    if expected == 201:
        assert status == 201, body
    else:
        assert (status, body["error"]["code"]) == expected


async def test_duration_and_lockup_default_as_equity(venue):
    issuer = await venue.issuer()
    no_lockup = {k: v for k, v in TERMS.items() if k != "lockup_days"}

    async def create(days: float):
        return await venue.call("POST", "/v1/projects", issuer, {
            "board": "operating_rights", "title": "café", "deadline": venue.at(days),
            "terms": no_lockup})

    assert (await create(20.9))[1]["error"]["code"] == "invalid_terms"
    assert (await create(60.1))[1]["error"]["code"] == "invalid_terms"
    status, body = await create(21)
    assert status == 201 and body["terms"]["lockup_days"] == 90
    assert body["board"] == "operating_rights"
    _, boards = await venue.call("GET", "/v1/boards", None, expect=200)
    listed = next(b for b in boards["boards"] if b["board"] == "operating_rights")
    assert (listed["success_fee_bps"], listed["lockup_days"], listed["seller_fee_bps"],
            listed["distribution_fee_bps"]) == (500, 90, 100, 200)


def test_the_boards_file_tunes_the_board():
    rules = {"operating_rights": {"seller_fee_bps": 50, "distribution_fee_bps": 150,
                                  "cn2015": {"holders_max": 150}}}
    overrides.check(rules, BOARDS)
    assert overrides.overrides(rules, "operating_rights", "cn2015") == {
        "seller_fee_bps": 50, "distribution_fee_bps": 150, "holders_max_cn2015": 150}
    with pytest.raises(overrides.BoardsFileError, match="borrower_cap_fen"):
        overrides.check({"operating_rights": {"borrower_cap_fen": 1}}, BOARDS)


@pytest.mark.parametrize(("closed", "first"), [
    ("2026-01-22T00:00:00Z", "2026-02"),
    ("2026-01-31T23:59:59.999999Z", "2026-02"),
    ("2026-02-01T00:00:00Z", "2026-02"),  # a month that starts at the close is month 1
    ("2026-02-01T00:00:00.000001Z", "2026-03"),
    ("2026-12-15T00:00:00Z", "2027-01"),
])
def test_month_one_is_the_first_that_starts_at_or_after_the_close(closed, first):
    assert orb.month_text(orb.first_month(t(closed))) == first


def test_the_calendar_of_a_term():
    term = orb.Term(orb.parse_month("2026-02"), 6)
    assert orb.month_text(term.last) == "2026-07"
    assert term.end_us == t("2026-08-01T00:00:00Z")
    assert term.buyback_due_us == t("2026-08-16T00:00:00Z")
    assert orb.due_us(orb.parse_month("2026-02")) == t("2026-03-15T00:00:00Z")
    assert orb.due_us(orb.parse_month("2026-12")) == t("2027-01-15T00:00:00Z")
    assert orb.parse_month("2026-01") in orb.Term(orb.parse_month("2026-01"), 1)
    assert orb.parse_month("2026-02") not in orb.Term(orb.parse_month("2026-01"), 1)
    for bad in ("2026-13", "2026-00", "26-01", "2026/01", "1969-12"):
        with pytest.raises(ValueError):
            orb.parse_month(bad)


@pytest.mark.parametrize(("now", "status"), [
    ("2026-03-15T23:59:59.999999Z", "scheduled"),  # the whole due day is allowed
    ("2026-03-16T00:00:00Z", "late"),
    ("2026-06-12T23:59:59.999999Z", "late"),
    ("2026-06-13T00:00:00Z", "default"),  # 90 days after 2026-03-15
])
def test_late_from_the_16th_default_90_days_after_the_due_date(now, status):
    due = t("2026-03-15T00:00:00Z")
    assert orb.status(due, None, t(now)) == status
    assert orb.status(due, t("2026-01-01T00:00:00Z"), t(now)) == "paid"


@pytest.mark.parametrize(("revenue", "bps", "owed"), [
    (20, 1_500, 3), (19, 1_500, 2),  # 3.00 exactly; 2.85 rounds down
    (6_667, 1_500, 1_000), (6_666, 1_500, 999),  # 1000.05 -> 1000; 999.90 -> 999
    (10_000, 1, 1), (9_999, 1, 0),
    (0, 1_500, 0), (1, 10_000, 1), (2**53, 10_000, 2**53),
])
def test_owed_is_rounded_down_to_the_fen(revenue, bps, owed):
    assert orb.owed_fen(revenue, bps) == owed


# ---- revenue reports through HTTP -------------------------------------------------------------


async def test_oversubscribed_close_pro_rata_and_the_schedule(venue):
    issuer, (a, b, c), pid = await running(venue)
    # 1,400 subscribed for 1,000: 428.57 / 357.14 / 214.29 -> floors 999, the one left over
    # to the largest fraction (a's .57).
    rows = await venue.allocations(pid)
    assert [(r["quantity"], r["refunded"]) for r in rows] == [
        (429, 171_000), (357, 143_000), (214, 86_000)]
    project = await venue.project(pid)
    assert project["status"] == "trading" and project["raised"] == 1_000_000
    assert (project["first_month"], project["last_month"]) == ("2026-02", "2026-07")
    assert project["term_end"] == "2026-08-01T00:00:00Z"
    assert project["buyback_due"] == "2026-08-16T00:00:00Z"
    assert project["units_outstanding"] == 1_000 and project["in_default"] is False
    # 1,000,000 raised less the 500 bps success fee.
    assert await cash(venue, issuer) == 5_000_000 + 950_000
    rows = await schedule(venue, pid)
    assert rows[0] == {"month": "2026-02", "due": "2026-03-15T00:00:00Z", "revenue": None,
                       "owed": None, "paid": 0, "status": "scheduled"}
    assert [r.get("month") for r in rows[:6]] == [f"2026-0{m}" for m in range(2, 8)]
    assert rows[5]["due"] == "2026-08-15T00:00:00Z"
    assert rows[6] == {"buyback": True, "due": "2026-08-16T00:00:00Z", "owed": 800_000,
                       "paid": 0, "status": "scheduled"}


async def test_a_month_is_owed_exactly_and_paid_pro_rata_at_the_next_batch(venue):
    issuer, (a, b, c), pid = await running(venue)
    await advance_to(venue, "2026-03-01T00:00:00Z")
    status, row = await report(venue, issuer, pid, "2026-02", 1_234_567)
    # 1,234,567 x 1,500 / 10,000 = 185,185.05 -> 185,185, debited at once into escrow.
    assert status == 201 and row == {"month": "2026-02", "due": "2026-03-15T00:00:00Z",
                                     "revenue": 1_234_567, "owed": 185_185,
                                     "paid": 185_185, "status": "paid"}
    me = await venue.me(issuer)
    assert (me["cash_available"], me["cash_reserved"]) == (5_950_000 - 185_185, 185_185)
    before = [await cash(venue, w) for w in (a, b, c)]
    await settle_prepare(venue)
    # Admin fee 200 bps: 3,703.70 -> 3,704; 181,481 over 429/357/214 units: 77,855.349,
    # 64,788.717, 38,836.934 -> floors 181,479; the 2 left to c (.934) and b (.717).
    got = [await cash(venue, w) - x for w, x in zip((a, b, c), before, strict=True)]
    assert got == [77_855, 64_789, 38_837]
    assert int(venue.machine.balances.accounts.rows[1]["cash_available"]) == 50_000 + 3_704
    assert (await venue.me(issuer))["cash_reserved"] == 0
    _, dists = await venue.call("GET", f"/v1/projects/{pid}/distributions", None, expect=200)
    assert [(d["amount"], d["fee"], d["holders"], d["status"]) for d in dists] == [
        (185_185, 3_704, 3, "paid")]
    await settle_prepare(venue)  # nothing is paid twice
    assert [await cash(venue, w) - x for w, x in zip((a, b, c), before, strict=True)] == got


@pytest.mark.parametrize(("units", "owed", "fee", "shares"), [
    # Admin fee half up: 24 x 2 % = 0.48 -> 0; 25 -> 0.50 -> 1; 26 -> 0.52 -> 1.
    ((1, 1, 1), 24, 0, (8, 8, 8)),
    ((1, 1, 1), 25, 1, (8, 8, 8)),
    ((1, 1, 1), 26, 1, (9, 8, 8)),  # 25 / 3: equal fractions, the lower account id first
    # 74 -> 1.48 -> 1; 75 -> 1.50 -> 2; 76 -> 1.52 -> 2.
    ((1, 1, 1), 74, 1, (25, 24, 24)),
    ((1, 1, 1), 75, 2, (25, 24, 24)),
    ((1, 1, 1), 76, 2, (25, 25, 24)),
    # 10 over 1:2:4 units: 1.43, 2.86, 5.71 -> floors 8; the largest fractions take the rest.
    ((1, 2, 4), 10, 0, (1, 3, 6)),
    # 14 over 1:2:4: exact, nothing left over.
    ((1, 2, 4), 14, 0, (2, 4, 8)),
    ((3, 1, 1), 1, 0, (1, 0, 0)),  # 0.6 / 0.2 / 0.2: the largest fraction
    ((1, 1, 3), 1, 0, (0, 0, 1)),
])
async def test_every_rounding_of_a_monthly_payment(venue, units, owed, fee, shares):
    # A revenue share of 100 %: the month owes its revenue, so the payment is set exactly.
    terms = {**TERMS, "price": 100, "min_quantity": 1, "max_quantity": sum(units),
             "revenue_share_bps": 10_000, "buyback_price": 0}
    issuer, investors, pid = await running(venue, terms, units)
    await advance_to(venue, "2026-03-01T00:00:00Z")
    status, row = await report(venue, issuer, pid, "2026-02", owed)
    assert status == 201 and row["owed"] == owed
    before = [await cash(venue, w) for w in investors]
    fees = int(venue.machine.balances.accounts.rows[1]["cash_available"])
    await settle_prepare(venue)
    got = tuple([await cash(venue, w) - x for w, x in zip(investors, before, strict=True)])
    assert got == shares
    assert int(venue.machine.balances.accounts.rows[1]["cash_available"]) - fees == fee
    assert sum(got) + fee == owed


async def test_report_refusals_in_api_order(venue):
    issuer, (a, b, c), pid = await running(venue)
    path = f"/v1/projects/{pid}/revenue"
    await advance_to(venue, "2026-02-28T23:59:59Z")
    for body, code in (({"month": "2026-2", "revenue": 1}, "invalid_field"),
                       ({"month": "2026-13", "revenue": 1}, "invalid_field"),
                       ({"month": "2026-02", "revenue": -1}, "invalid_field"),
                       ({"month": "2026-02", "revenue": 1.0}, "invalid_field"),
                       ({"month": "2026-02"}, "missing_field"),
                       ({"month": "2026-02", "revenue": 1, "fee": 0}, "unknown_field")):
        assert await venue.error("POST", path, issuer, body) == (400, code)
    ok = {"month": "2026-02", "revenue": 100}
    assert await venue.error("POST", path, None, ok) == (401, "unauthorized")
    assert await venue.error("POST", path, a, ok) == (403, "forbidden")
    other = await venue.issuer(1_000_000)
    assert await venue.error("POST", path, other, ok) == (404, "project_not_found")
    assert await venue.error("POST", "/v1/projects/999/revenue", issuer, ok) == (
        404, "project_not_found")
    assert await venue.error("POST", path, issuer, ok) == (409, "month_not_over")
    # The close's own month and the month after the term are no months of this term.
    assert await venue.error("POST", path, issuer, {**ok, "month": "2026-01"}) == (
        422, "not_in_term")
    assert await venue.error("POST", path, issuer, {**ok, "month": "2026-08"}) == (
        422, "not_in_term")
    await venue.advance(1)  # 2026-03-01: February is over
    status, row = await report(venue, issuer, pid, "2026-02", 0)  # no revenue: owes nothing
    assert status == 201 and (row["owed"], row["paid"], row["status"]) == (0, 0, "paid")
    assert await venue.error("POST", path, issuer, ok) == (409, "already_reported")
    assert not [d for d in venue.offerings.distributions.values() if d.project_id == pid]
    # Not enough cash: refused, and the month stays unreported and unpaid. (Listed now, this
    # one closes on 2026-03-22: its month 1 is April.)
    poor_issuer, _, poor = await running(venue, issuer_cash=0)
    await advance_to(venue, "2026-05-01T00:00:00Z")
    held = await cash(venue, poor_issuer)  # the 950,000 raised, net
    # 6,333,340 x 15 % = 950,001: one fen more than the issuer has.
    body = {"month": "2026-04", "revenue": 6_333_340}
    assert await venue.error("POST", f"/v1/projects/{poor}/revenue", poor_issuer, body) == (
        422, "insufficient_funds")
    assert (await schedule(venue, poor))[0]["revenue"] is None
    assert await cash(venue, poor_issuer) == held
    status, row = await report(venue, poor_issuer, poor, "2026-04", 6_333_333)  # 949,999.95
    assert status == 201 and row["owed"] == 949_999 and await cash(venue, poor_issuer) == 1
    # Another board has no revenue reports; an operating-rights offering not yet closed none.
    equity = await venue.listed(issuer, "equity", {"price": 1, "min_quantity": 1,
                                                   "max_quantity": 1}, 21)
    assert await venue.error("POST", f"/v1/projects/{equity}/revenue", issuer, ok) == (
        409, "invalid_state")
    opened = await venue.listed(issuer, "operating_rights", TERMS, 21)
    assert await venue.error("POST", f"/v1/projects/{opened}/revenue", issuer, ok) == (
        409, "invalid_state")
    assert await schedule(venue, opened) == []


# ---- late, default, the integrity list, trading -----------------------------------------------


async def integrity(venue, month: str) -> dict:
    _, body = await venue.call("GET", f"/v1/integrity?month={month}", OPERATOR, expect=200)
    return body


async def test_a_late_month_paid_later_stays_on_that_months_black_list(venue):
    issuer, _, pid = await running(venue)
    await advance_to(venue, "2026-03-01T00:00:00Z")
    assert (await report(venue, issuer, pid, "2026-02", 10_000))[0] == 201  # on time
    await advance_to(venue, "2026-04-15T23:59:59Z")
    assert (await schedule(venue, pid))[1]["status"] == "scheduled"
    await venue.advance(1)  # 2026-04-16: March is late
    assert (await schedule(venue, pid))[1]["status"] == "late"
    assert (await venue.project(pid))["in_default"] is False
    await advance_to(venue, "2026-04-20T00:00:00Z")
    status, row = await report(venue, issuer, pid, "2026-03", 100_000)  # late, still paid
    assert status == 201 and (row["status"], row["owed"]) == ("paid", 15_000)
    await advance_to(venue, "2026-05-01T00:00:00Z")
    await report(venue, issuer, pid, "2026-04", 10_000)
    april = await integrity(venue, "2026-04")
    assert april["black"] == [{"account_id": issuer["account_id"], "name": "a issuer",
                               "reasons": [f"revenue for 2026-03 late on project {pid}"]}]
    _, public = await venue.call("GET", "/v1/integrity?month=2026-04", None, expect=200)
    assert public["black"] == april["black"] and "red" not in public
    assert (await integrity(venue, "2026-03"))["black"] == []
    assert (await integrity(venue, "2026-05"))["black"] == []


async def test_six_clean_months_make_the_red_list(venue):
    issuer, _, pid = await running(venue)
    for month in range(2, 8):
        await advance_to(venue, f"2026-{month + 1:02d}-01T00:00:00Z")
        await report(venue, issuer, pid, f"2026-{month:02d}", 20_000)
    body = await integrity(venue, "2026-07")
    assert body["black"] == [] and [r["account_id"] for r in body["red"]] == [
        issuer["account_id"]]
    assert (await integrity(venue, "2026-06"))["red"] == []  # five clean months then


async def test_default_stops_sells_cancels_resting_sells_and_lists_the_issuer(venue):
    issuer, (a, b, c), pid = await running(venue)
    # Trading meanwhile: a sells 5 to b; a resting sell of a's and a resting buy of c's.
    _, sell = await order(venue, a, pid, "sell", 1_100, 20)
    status, fill = await order(venue, b, pid, "buy", 1_100, 5)
    assert status == 201 and fill["status"] == "filled"
    _, buy = await order(venue, c, pid, "buy", 900, 10)
    # February (due 2026-03-15) is never reported in time: default from 2026-06-13. The
    # other months are reported on time.
    for month in (3, 4, 5):
        await advance_to(venue, f"2026-{month + 1:02d}-01T00:00:00Z")
        await report(venue, issuer, pid, f"2026-{month:02d}", 10_000)
    await advance_to(venue, "2026-06-12T23:59:59Z")
    assert (await schedule(venue, pid))[0]["status"] == "late"
    assert (await venue.project(pid))["in_default"] is False
    assert (await order(venue, a, pid, "sell", 1_200, 1))[0] == 201  # late is no default
    await venue.advance(1)
    assert (await schedule(venue, pid))[0]["status"] == "default"
    assert (await venue.project(pid))["in_default"] is True
    # Defaulted units cannot be sold: the resting sells were cancelled when it began.
    _, got = await venue.call("GET", f"/v1/orders/{sell['order_id']}", a, expect=200)
    assert (got["status"], got["filled_quantity"]) == ("cancelled", 5)
    _, book = await venue.call("GET", f"/v1/instruments/{pid}/book", None, expect=200)
    assert (book["bids"], book["asks"]) == ([[900, 10]], [])
    assert await venue.error("POST", "/v1/orders", a, {
        "instrument_id": pid, "side": "sell", "type": "limit", "price": 900,
        "quantity": 1}) == (422, "in_default")
    assert (await order(venue, a, pid, "buy", 800, 1))[0] == 201
    held = (await venue.me(a))["holdings"][0]
    assert (held["quantity_available"], held["quantity_reserved"]) == (429 - 5, 0)
    june = await integrity(venue, "2026-06")
    assert june["black"] == [{"account_id": issuer["account_id"], "name": "a issuer",
                              "reasons": [f"revenue for 2026-02 in default on project {pid}"]}]
    march = await integrity(venue, "2026-03")
    assert march["black"][0]["reasons"] == [f"revenue for 2026-02 late on project {pid}"]
    # Paid at last: out of default and sellable again; June keeps it on its black list.
    await advance_to(venue, "2026-06-20T00:00:00Z")
    assert (await report(venue, issuer, pid, "2026-02", 1_000))[0] == 201
    assert (await venue.project(pid))["in_default"] is False
    assert (await order(venue, a, pid, "sell", 900, 1))[0] == 201  # takes c's bid
    assert (await integrity(venue, "2026-06"))["black"] == june["black"]
    assert (await integrity(venue, "2026-07"))["black"] == []
    _ = buy


# ---- the end of the term and the buy-back -----------------------------------------------------


async def test_the_term_ends_the_market_and_the_buyback_cancels_the_units(venue):
    # Bought back at 12.00 a unit: 1,200,000 in all, more than the issuer holds.
    issuer, (a, b, c), pid = await running(venue, {**TERMS, "buyback_price": 1_200},
                                           issuer_cash=0)
    path = f"/v1/projects/{pid}/distributions"
    for month in range(2, 7):  # July is reported after the buy-back, below
        await advance_to(venue, f"2026-{month + 1:02d}-01T00:00:00Z")
        await report(venue, issuer, pid, f"2026-{month:02d}", 10_000)
        if month == 3:
            _, sell = await order(venue, a, pid, "sell", 1_050, 29)
            _, fill = await order(venue, b, pid, "buy", 1_050, 9)  # b now holds 366
            assert fill["status"] == "filled"
            _, buy = await order(venue, c, pid, "buy", 1_000, 7)
    await advance_to(venue, "2026-07-31T23:59:59Z")
    assert await venue.error("POST", path, issuer, {"amount": 1_200_000}) == (
        409, "invalid_state")  # not due before the end of the term
    assert (await order(venue, b, pid, "buy", 900, 1))[0] == 201
    await venue.advance(1)  # 2026-08-01
    # The term is over: the resting orders are cancelled, new ones refused.
    for who, placed in ((a, sell), (c, buy)):
        _, got = await venue.call("GET", f"/v1/orders/{placed['order_id']}", who, expect=200)
        assert got["status"] == "cancelled"
    assert await venue.error("POST", "/v1/orders", b, {
        "instrument_id": pid, "side": "buy", "type": "limit", "price": 900,
        "quantity": 1}) == (409, "instrument_closed")
    project = await venue.project(pid)
    assert project["instrument_closed"] is True and project["units_outstanding"] == 1_000
    # The buy-back: 1,200 x 1,000 units, exactly.
    for amount in (1_199_999, 1_200_001):
        assert await venue.error("POST", path, issuer, {"amount": amount}) == (
            422, "amount_mismatch")
    # 950,000 raised net, less 5 months of 1,500: the issuer must bring the rest (and July's).
    assert await cash(venue, issuer) == 942_500
    assert await venue.error("POST", path, issuer, {"amount": 1_200_000}) == (
        422, "insufficient_funds")
    await venue.call("POST", f"/v1/accounts/{issuer['account_id']}/deposits", OPERATOR,
                     {"amount": 257_500 + 1_500, "reference": "buy-back"}, expect=201)
    await settle_prepare(venue)  # the months reported so far are paid first
    before = [await cash(venue, w) for w in (a, b, c)]
    _, dist = await venue.call("POST", path, issuer, {"amount": 1_200_000}, expect=200)
    assert (dist["amount"], dist["status"]) == (1_200_000, "pending")
    assert await venue.error("POST", path, issuer, {"amount": 1_200_000}) == (
        409, "invalid_state")
    assert (await schedule(venue, pid))[-1] == {
        "buyback": True, "due": "2026-08-16T00:00:00Z", "owed": 1_200_000,
        "paid": 1_200_000, "status": "paid"}
    await settle_prepare(venue)
    # Every holder is paid 12.00 a unit in full, no fee: a 429 - 9, b 357 + 9, c 214.
    got = [await cash(venue, w) - x for w, x in zip((a, b, c), before, strict=True)]
    assert got == [420 * 1_200, 366 * 1_200, 214 * 1_200]
    assert (await venue.me(issuer))["cash_available"] == 1_500
    for who in (a, b, c):
        assert (await venue.me(who))["holdings"] == []
    assert venue.offerings.units_issued(pid) == 0
    cancelled = venue.machine.movements.table.live()
    cancelled = cancelled[cancelled["kind"] == mv.UNITS_CANCELLED]
    assert sorted(zip(cancelled["debit_account"].tolist(), cancelled["amount"].tolist(),
                      strict=True)) == [(a["account_id"], 420), (b["account_id"], 366),
                                        (c["account_id"], 214)]
    assert set(cancelled["credit_account"].tolist()) == {mv.EXTERNAL_ACCOUNT}
    assert (await venue.project(pid))["units_outstanding"] == 0
    _, dists = await venue.call("GET", f"/v1/projects/{pid}/distributions", None, expect=200)
    assert (dists[-1]["fee"], dists[-1]["holders"], dists[-1]["status"]) == (0, 3, "paid")
    # July, reported after the buy-back, goes to the holders whose units were cancelled:
    # 10,000 x 15 % = 1,500; fee 30; 1,470 over 420/366/214: 617.4, 538.02, 314.58
    # -> 617, 538, 314 (1,469) and the one left to c (.58).
    await advance_to(venue, "2026-08-10T00:00:00Z")
    status, row = await report(venue, issuer, pid, "2026-07", 10_000)
    assert status == 201 and row["owed"] == 1_500
    before = [await cash(venue, w) for w in (a, b, c)]
    await settle_prepare(venue)
    assert [await cash(venue, w) - x for w, x in zip((a, b, c), before, strict=True)] == [
        617, 538, 315]
    assert [r["status"] for r in await schedule(venue, pid)] == ["paid"] * 7


async def test_a_buyback_price_of_zero_cancels_the_units_at_the_next_batch(venue):
    issuer, (a,), pid = await running(venue, {**TERMS, "buyback_price": 0}, (100,))
    assert (await schedule(venue, pid))[-1]["owed"] == 0
    await advance_to(venue, "2026-07-31T23:59:59Z")
    assert (await schedule(venue, pid))[-1]["status"] == "scheduled"
    await venue.advance(1)
    assert (await schedule(venue, pid))[-1] == {
        "buyback": True, "due": "2026-08-16T00:00:00Z", "owed": 0, "paid": 0,
        "status": "paid"}
    assert await venue.error("POST", f"/v1/projects/{pid}/distributions", issuer,
                             {"amount": 1}) == (409, "invalid_state")
    before = await cash(venue, a)
    await settle_prepare(venue)
    assert await cash(venue, a) == before and (await venue.me(a))["holdings"] == []
    assert venue.offerings.units_issued(pid) == 0


async def test_an_unpaid_buyback_is_late_then_in_default(venue):
    issuer, (a,), pid = await running(venue, units=(100,))
    for month in range(2, 8):
        await advance_to(venue, f"2026-{month + 1:02d}-01T00:00:00Z")
        await report(venue, issuer, pid, f"2026-{month:02d}", 0)
    await advance_to(venue, "2026-08-17T00:00:00Z")  # due 08-16, late from 08-17
    assert (await schedule(venue, pid))[-1]["status"] == "late"
    assert (await integrity(venue, "2026-08"))["black"][0]["reasons"] == [
        f"buy-back late on project {pid}"]
    await advance_to(venue, "2026-11-14T00:00:00Z")  # 90 days after 2026-08-16
    assert (await schedule(venue, pid))[-1]["status"] == "default"
    assert (await venue.project(pid))["in_default"] is True
    _, dist = await venue.call("POST", f"/v1/projects/{pid}/distributions", issuer,
                               {"amount": 80_000}, expect=200)
    assert (await venue.project(pid))["in_default"] is False
    await settle_prepare(venue)
    assert (await venue.me(a))["holdings"] == []
    _ = dist


# ---- cn2015 -----------------------------------------------------------------------------------


async def test_cn2015_qualified_only_holder_limit_and_offers_closed_with_the_term(cn_venue):
    venue = cn_venue
    engine = venue.client.server.app[keys.ENGINE]
    # The operator's boards file lowers the holder limit of this board (journaled).
    reply = await engine.submit(oc.SetBoardRules({"operating_rights": {
        "cn2015": {"holders_max": 2}}}))
    assert reply.status == 200
    issuer = await venue.issuer(1_000_000)
    retail = await venue.investor(100_000)
    a, b, c = [await venue.investor(100_000, **QUALIFIED) for _ in range(3)]
    pid = await venue.listed(issuer, "operating_rights", TERMS, 21)
    _, listed = await venue.call("GET", "/v1/projects", None, expect=200)
    assert [p["project_id"] for p in listed] == [pid]  # listed publicly, unlike equity
    assert await venue.error("POST", f"/v1/projects/{pid}/subscriptions", retail,
                             {"quantity": 10}) == (422, "not_eligible")
    for who in (a, b, c):
        assert (await venue.subscribe(who, pid, 50))[0] == 201
    await advance_to(venue, CLOSE)
    # Two holders at most: the latest subscriber is refunded.
    rows = await venue.allocations(pid)
    assert [(r["quantity"], r["refunded"]) for r in rows] == [(50, 0), (50, 0), (0, 50_000)]
    await advance_to(venue, "2026-03-01T00:00:00Z")
    _, offer = await venue.call("POST", "/v1/offers", a, {
        "instrument_id": pid, "side": "sell", "price": 1_000, "quantity": 10}, expect=201)
    # February unreported: in default from 2026-06-13; the sell offer is withdrawn then.
    for month in (3, 4, 5):
        await advance_to(venue, f"2026-{month + 1:02d}-01T00:00:00Z")
        await report(venue, issuer, pid, f"2026-{month:02d}", 0)
    _, bid = await venue.call("POST", "/v1/offers", b, {
        "instrument_id": pid, "side": "buy", "price": 900, "quantity": 5}, expect=201)
    await advance_to(venue, "2026-06-13T00:00:00Z")
    _, got = await venue.call("GET", f"/v1/offers/{offer['offer_id']}", a, expect=200)
    assert got["status"] == "cancelled"
    assert await venue.error("POST", "/v1/offers", a, {
        "instrument_id": pid, "side": "sell", "price": 1_000, "quantity": 1}) == (
        422, "in_default")
    assert await venue.error("POST", f"/v1/offers/{bid['offer_id']}/accept", a,
                             {"quantity": 1}) == (422, "in_default")
    await report(venue, issuer, pid, "2026-02", 0)
    _, ask = await venue.call("POST", "/v1/offers", a, {
        "instrument_id": pid, "side": "sell", "price": 1_000, "quantity": 10}, expect=201)
    await advance_to(venue, "2026-08-01T00:00:00Z")
    for who, posted in ((a, ask), (b, bid)):
        _, got = await venue.call("GET", f"/v1/offers/{posted['offer_id']}", who, expect=200)
        assert got["status"] == "cancelled"
    assert await venue.error("POST", "/v1/offers", b, {
        "instrument_id": pid, "side": "buy", "price": 900, "quantity": 1}) == (
        409, "instrument_closed")
    assert (await venue.me(b))["cash_reserved"] == 0
    await venue.call("POST", f"/v1/projects/{pid}/distributions", issuer,
                     {"amount": 80_000}, expect=200)
    await settle_prepare(venue)
    assert (await venue.me(a))["holdings"] == [] and (await venue.me(b))["holdings"] == []


# ---- replay -----------------------------------------------------------------------------------


@pytest.mark.one_machine  # replays the data dir's journal
async def test_a_replay_and_a_restart_give_the_live_state(tmp_path):
    """Every effect of the clock (the close, a default cancelling sells, the end of the term)
    fires at the same entry on replay and after a restart from a snapshot."""
    data_dir = tmp_path / "data"
    async with TestClient(TestServer(create_app(manual_config(data_dir)))) as client:
        venue = Venue(client)
        issuer, (a, b, c), pid = await running(venue)
        await order(venue, a, pid, "sell", 1_100, 20)
        await order(venue, c, pid, "buy", 900, 10)
        await advance_to(venue, "2026-04-01T00:00:00Z")
        await report(venue, issuer, pid, "2026-03", 77_777)
        await advance_to(venue, "2026-06-13T00:00:00Z")  # February's default
        await settle_prepare(venue)
        await advance_to(venue, "2026-08-01T00:00:00Z")
        await venue.call("POST", f"/v1/projects/{pid}/distributions", issuer,
                         {"amount": 800_000}, expect=200)
        live = venue.machine.state_hash()
        rows = await schedule(venue, pid)
    assert replay_from_empty(data_dir).state_hash() == live
    async with TestClient(TestServer(create_app(manual_config(data_dir)))) as client:
        venue = Venue(client)
        assert venue.machine.state_hash() == live
        assert await schedule(venue, pid) == rows
        await settle_prepare(venue)
        assert (await venue.me(a))["holdings"] == []
