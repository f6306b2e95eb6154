"""Operating-rights lives settled into the real PostgreSQL: one whole life through HTTP with a
batch after every step, and random lives under hypothesis with conservation after every batch.

Issue 17's "done when": list, approve, subscribe with an oversubscribed pro-rata close, months
reported and paid, one month late and then paid, a default reaching the integrity list, trading
in between, the buy-back paying holders exactly and cancelling the units; after each step a
settlement batch commits, the ledger balances (every asset's legs and balances sum to zero,
the instructions are the legs netted), its cash equals deposits less withdrawals, its units of
the instrument equal the units in issue, and reconciliation against the engine is clean.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import asyncpg
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from boards import operating_rights as orb
from engine import commands as c
from engine import movements as mv
from engine import offerings_commands as oc
from engine.clock import parse_time_us
from engine.sequencer import replay_from_empty
from gateway import keys
from tests.boards.conftest import DAY, OPERATOR, Venue, deposit
from tests.settlement import test_conservation as conservation

# 8 months of a café chain's revenue (2026-02 .. 2026-09, closing 2026-01-22): 12 % to the
# units, bought back at 9.50 a unit on 2026-10-01 (due 2026-10-16).
TERMS = {"price": 1_000, "min_quantity": 500, "max_quantity": 1_000, "term_months": 8,
         "revenue_share_bps": 1_200, "buyback_price": 950, "lockup_days": 30}


class Life:
    """The venue, its ledger, and what a batch must leave true."""

    def __init__(self, client: TestClient) -> None:
        self.venue = Venue(client)
        self.pool: asyncpg.Pool = client.server.app[keys.DATABASE].pool
        self.pid = 0
        self.batches = 0

    async def to(self, when: str) -> None:
        seconds = (parse_time_us(when) - self.venue.machine.now_us) // 1_000_000
        await self.venue.advance(seconds)

    async def report(self, issuer: dict, month: str, revenue: int) -> dict:
        _, row = await self.venue.call("POST", f"/v1/projects/{self.pid}/revenue", issuer,
                                       {"month": month, "revenue": revenue}, expect=201)
        return row

    async def cash(self, who: dict) -> int:
        return (await self.venue.me(who))["cash_available"]

    async def order(self, who: dict, side: str, price: int, quantity: int) -> dict:
        _, body = await self.venue.call("POST", "/v1/orders", who, {
            "instrument_id": self.pid, "side": side, "type": "limit", "price": price,
            "quantity": quantity}, expect=201)
        return body

    async def batch(self) -> dict:
        _, batch = await self.venue.call("POST", "/v1/settlement/batches", OPERATOR, {},
                                         expect=201)
        assert batch["status"] == "committed"
        self.batches += 1
        await self.check()
        return batch

    async def check(self) -> None:
        pool, machine = self.pool, self.venue.machine
        _, recon = await self.venue.call("GET", "/v1/settlement/reconciliation", OPERATOR,
                                         expect=200)
        assert recon["balanced"] and recon["mismatches"] == [], recon
        for table in ("ledger_legs", "balances"):
            sums = await pool.fetch(f"SELECT asset, sum(amount) AS total FROM {table} "
                                    "GROUP BY asset")
            assert all(r["total"] == 0 for r in sums), (table, sums)
        held = {r["asset"]: r["total"] for r in await pool.fetch(
            "SELECT asset, sum(amount) AS total FROM balances WHERE account_id > 0 "
            "GROUP BY asset")}
        assert held.get(0, 0) == machine.deposits_total - machine.withdrawals_total
        if self.pid:
            assert held.get(self.pid, 0) == self.venue.offerings.units_issued(self.pid)
        differences = await pool.fetchval("""
            SELECT count(*) FROM (
                SELECT batch_id, account_id, asset, sum(amount), count(*) FROM ledger_legs
                 GROUP BY batch_id, account_id, asset
                EXCEPT ALL
                SELECT batch_id, account_id, asset, net_amount, legs FROM instructions) AS d""")
        assert differences == 0
        assert len(machine.movements.table.live()) == 0  # everything is settled

    async def ledger_units(self) -> dict[int, int]:
        rows = await self.pool.fetch("SELECT account_id, amount FROM balances WHERE asset = $1",
                                     self.pid)
        return {r["account_id"]: r["amount"] for r in rows}

    async def legs(self, kind: int) -> dict[int, int]:
        """Credits of one movement kind per account, over the whole ledger."""
        rows = await self.pool.fetch("SELECT account_id, sum(amount) AS total FROM ledger_legs "
                                     "WHERE kind = $1 AND side = 2 GROUP BY account_id", kind)
        return {r["account_id"]: r["total"] for r in rows}


async def test_an_operating_rights_life_settles_after_every_step(settle_client: TestClient,
                                                               tmp_path) -> None:
    life = Life(settle_client)
    venue = life.venue
    issuer = await venue.issuer(cash=200_000)
    a, b, c, d = [await venue.investor(cash=1_000_000, investor_class="qualified")
                  for _ in range(4)]
    await life.batch()

    # List, approve, subscribe 1,500 for 1,000 units (one cancelled), close pro rata.
    life.pid = pid = await venue.listed(issuer, "operating_rights", TERMS, 21)
    for who, quantity in ((a, 700), (b, 500), (c, 300), (d, 50)):
        status, _ = await venue.subscribe(who, pid, quantity)
        assert status == 201
    mine = [s for s in venue.offerings.subscriptions.values() if s.account_id == d["account_id"]]
    await venue.call("DELETE", f"/v1/subscriptions/{mine[0].subscription_id}", d, expect=200)
    await life.batch()
    await venue.advance(21 * DAY)  # 2026-01-22
    rows = await venue.allocations(pid)
    # 700/500/300 of 1,500 for 1,000: 466.67, 333.33, 200 -> 466 + 333 + 200 = 999; the unit
    # left goes to the largest fraction (a's .67).
    assert [(r["quantity"], r["refunded"]) for r in rows] == [
        (467, 233_000), (333, 167_000), (200, 100_000)]
    project = await venue.project(pid)
    assert project["status"] == "succeeded"  # locked up for 30 days
    assert (project["first_month"], project["last_month"]) == ("2026-02", "2026-09")
    # 1,000,000 raised less 500 bps: 950,000 to the issuer.
    assert await life.cash(issuer) == 200_000 + 950_000
    await life.batch()
    assert await life.ledger_units() == {0: -1_000, a["account_id"]: 467,
                                         b["account_id"]: 333, c["account_id"]: 200}

    # February, on time: 812,345 x 12 % = 97,481.4 -> 97,481; fee 1,949.62 -> 1,950;
    # 95,531 over 467/333/200: 44,612.977, 31,811.823, 19,106.2 -> 95,529 + 2 to a and b.
    await life.to("2026-03-01T00:00:00Z")
    row = await life.report(issuer, "2026-02", 812_345)
    assert (row["owed"], row["status"]) == (97_481, "paid")
    before = [await life.cash(w) for w in (a, b, c)]
    await life.batch()
    assert [await life.cash(w) - x for w, x in zip((a, b, c), before, strict=True)] == [
        44_613, 31_812, 19_106]
    assert await life.legs(mv.SERVICING_FEE) == {1: 1_950}

    # Trading once the lock-up ends (2026-02-21): c sells 50 to d.
    await life.order(c, "sell", 1_020, 80)
    fill = await life.order(d, "buy", 1_020, 50)
    assert fill["status"] == "filled"
    await life.batch()

    # March, late: not reported by the 15th of April, paid on the 20th.
    await life.to("2026-04-16T00:00:00Z")
    assert (await schedule(venue, pid))[1]["status"] == "late"
    await life.to("2026-04-20T00:00:00Z")
    assert (await life.report(issuer, "2026-03", 500_000))["owed"] == 60_000
    await life.batch()
    _, april = await venue.call("GET", "/v1/integrity?month=2026-04", None, expect=200)
    assert april["black"][0]["reasons"] == [f"revenue for 2026-03 late on project {pid}"]

    # April is never reported in time: late from 2026-05-16, in default from 2026-08-13.
    for month in (5, 6, 7):
        await life.to(f"2026-{month + 1:02d}-01T00:00:00Z")
        await life.report(issuer, f"2026-{month:02d}", 300_000)
    await life.batch()
    await life.to("2026-08-13T00:00:00Z")
    assert (await venue.project(pid))["in_default"] is True
    _, aug = await venue.call("GET", "/v1/integrity?month=2026-08", None, expect=200)
    assert aug["black"][0]["reasons"] == [f"revenue for 2026-04 in default on project {pid}"]
    # c's resting sell (the 30 unsold) was cancelled when the default began; no sells now.
    held = (await venue.me(c))["holdings"]
    assert [(h["quantity_available"], h["quantity_reserved"]) for h in held] == [(150, 0)]
    assert await venue.error("POST", "/v1/orders", c, {
        "instrument_id": pid, "side": "sell", "type": "limit", "price": 900,
        "quantity": 1}) == (422, "in_default")
    await life.order(a, "buy", 900, 10)  # buying is still allowed
    await life.batch()
    await life.to("2026-08-20T00:00:00Z")
    await life.report(issuer, "2026-04", 0)  # paid at last: out of default
    assert (await venue.project(pid))["in_default"] is False
    sold = await life.order(b, "sell", 900, 10)  # into a's bid
    assert sold["status"] == "filled"
    await life.batch()

    await life.to("2026-09-01T00:00:00Z")
    await life.report(issuer, "2026-08", 250_000)
    await life.batch()

    # The end of the term: the market closes, the buy-back pays every holder exactly.
    await life.order(b, "sell", 2_000, 5)  # rests until the term ends
    await life.to("2026-10-01T00:00:00Z")
    _, book = await venue.call("GET", f"/v1/instruments/{pid}/book", None, expect=200)
    assert (book["bids"], book["asks"]) == ([], [])
    assert await venue.error("POST", "/v1/orders", a, {
        "instrument_id": pid, "side": "buy", "type": "limit", "price": 900,
        "quantity": 1}) == (409, "instrument_closed")
    holders = dict(venue.offerings.holders(pid))
    assert holders == {a["account_id"]: 477, b["account_id"]: 323, c["account_id"]: 150,
                       d["account_id"]: 50}
    before = {who["account_id"]: await life.cash(who) for who in (a, b, c, d)}
    await deposit(venue.client, issuer["account_id"], 200_000, "buy-back funds")
    _, dist = await venue.call("POST", f"/v1/projects/{pid}/distributions", issuer,
                               {"amount": 950_000}, expect=200)
    assert dist["status"] == "pending"
    await life.batch()
    for who in (a, b, c, d):
        paid = await life.cash(who) - before[who["account_id"]]
        assert paid == holders[who["account_id"]] * 950
        assert (await venue.me(who))["holdings"] == []
    assert await life.ledger_units() == {0: 0, a["account_id"]: 0, b["account_id"]: 0,
                                         c["account_id"]: 0, d["account_id"]: 0}
    assert await life.legs(mv.BUYBACK) == {k: v * 950 for k, v in holders.items()}
    cancelled = await life.pool.fetch(
        "SELECT account_id, sum(amount) AS units FROM ledger_legs WHERE kind = $1 "
        "GROUP BY account_id", mv.UNITS_CANCELLED)
    assert {r["account_id"]: r["units"] for r in cancelled} == {
        0: 1_000, **{k: -v for k, v in holders.items()}}
    assert venue.offerings.units_issued(pid) == 0

    # September, reported after the buy-back, is paid to the holders of the cancelled units:
    # 100,000 x 12 % = 12,000; fee 240; 11,760 over 477/323/150/50.
    await life.to("2026-10-10T00:00:00Z")
    await life.report(issuer, "2026-09", 100_000)
    before = [await life.cash(w) for w in (a, b, c, d)]
    await life.batch()
    got = [await life.cash(w) - x for w, x in zip((a, b, c, d), before, strict=True)]
    # 5,609.52, 3,798.48, 1,764, 588 -> 5,609 + 3,798 + 1,764 + 588 = 11,759; one to a (.52).
    assert got == [5_610, 3_798, 1_764, 588]
    rows = await schedule(venue, pid)
    assert [r["status"] for r in rows] == ["paid"] * 9 and rows[-1]["buyback"] is True
    assert orb.month_text(orb.parse_month(rows[7]["month"])) == "2026-09"
    assert life.batches == 12
    live = venue.machine.state_hash()
    assert replay_from_empty(tmp_path / "data").state_hash() == live


async def schedule(venue: Venue, pid: int) -> list[dict]:
    _, rows = await venue.call("GET", f"/v1/projects/{pid}/schedule", None, expect=200)
    return rows


# ---- conservation under random operating-rights lives -----------------------------------------

EXAMPLES = 200 if os.environ.get("CROWDEX_SLOW") == "1" else 25
MONTH_S = 31 * conservation.DAY_S

or_step = st.one_of(
    st.tuples(st.just("report"), st.integers(0, 8), st.integers(0, 50_000)),
    st.tuples(st.just("advance"), st.integers(1, 20)),
    st.tuples(st.just("cross"), conservation.pick, conservation.who, st.just(0),
              st.integers(-3, 3), st.integers(1, 30)),
    st.tuples(st.just("order"), conservation.who, st.just(0), st.sampled_from(["buy", "sell"]),
              st.integers(-3, 3), st.integers(1, 30), st.just("gtc")),
    st.tuples(st.just("buyback"), st.integers(-1, 1)),
    st.tuples(st.just("deposit_issuer"), st.integers(1, 200_000)),
    st.tuples(st.just("batch"),),
)


@st.composite
def or_life(draw: st.DrawFn) -> dict:
    """An offering, then month by month: the clock moves 25-45 days, the month before is
    reported (or not, or late by a later step), and anything else happens, batches included."""
    return {
        "deposits": draw(st.lists(st.integers(10_000, 200_000), min_size=conservation.INVESTORS,
                                  max_size=conservation.INVESTORS)),
        "issuer_cash": draw(st.integers(0, 1_000_000)),
        "terms": {"price": conservation.PRICE, "min_quantity": draw(st.integers(1, 40)),
                  "max_quantity": 40 + draw(st.integers(0, 60)),
                  "term_months": draw(st.integers(6, 8)),
                  "revenue_share_bps": draw(st.integers(1, 10_000)),
                  "buyback_price": draw(st.integers(0, 300)), "lockup_days": 0},
        "subscriptions": draw(st.lists(st.integers(0, 60), min_size=conservation.INVESTORS,
                                       max_size=conservation.INVESTORS)),
        "months": draw(st.lists(st.tuples(st.integers(25, 45),
                                          st.none() | st.integers(0, 50_000),
                                          st.lists(or_step, max_size=4)),
                                min_size=1, max_size=10)),
    }


class OrVenue(conservation.Venue):
    """The conservation venue with an operating-rights project and its issuer's moves."""

    async def report(self, month_offset: int, revenue: int) -> None:
        state = self.offerings.terms.states.get(self.projects[0]) if self.projects else None
        if state is not None and month_offset >= 0:
            month = orb.month_text(state.first_month + month_offset)
            await self.submit(oc.ReportRevenue(self.projects[0], month, revenue), self.issuer)

    async def buyback(self, off_by: int) -> None:
        state = self.offerings.terms.states.get(self.projects[0]) if self.projects else None
        if state is not None and state.buyback_owed + off_by > 0:
            await self.submit(oc.Distribute(self.projects[0], state.buyback_owed + off_by),
                              self.issuer)

    async def deposit_issuer(self, amount: int) -> None:
        await self.deposit(self.issuer, amount)


async def or_scenario(url: str, plan: dict) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        base = await conservation.open_venue(url, Path(data_dir))
        venue = OrVenue(base.engine, base.service, base.pool, base.issuer, base.investors)
        try:
            for investor, amount in zip(venue.investors, plan["deposits"], strict=True):
                await venue.deposit(investor, amount)
            if plan["issuer_cash"]:
                await venue.deposit(venue.issuer, plan["issuer_cash"])
            deadline = venue.engine.machine.now_us + 21 * conservation.DAY_S * 1_000_000
            body = await venue.submit(oc.CreateProject("operating_rights", "café", "d", deadline,
                                                       plan["terms"]), venue.issuer)
            pid = body["project_id"]
            await venue.submit(oc.ReviewProject(pid, True), conservation.OPERATOR)
            venue.projects.append(pid)
            for investor, quantity in zip(venue.investors, plan["subscriptions"], strict=True):
                if quantity:
                    await venue.subscribe(investor, pid, quantity)
            await venue.submit(oc.CloseProject(pid), conservation.OPERATOR)
            for index, (days, revenue, steps) in enumerate(plan["months"]):
                await venue.run("advance", days)
                if revenue is not None:
                    await venue.report(index - 1, revenue)
                for kind, *args in steps:
                    if kind in ("report", "buyback", "deposit_issuer"):
                        await getattr(venue, kind)(*args)
                    else:
                        await venue.run(kind, *args)
            # The end of the term, the buy-back if the issuer can pay it, and a last batch.
            await venue.submit(c.AdvanceClock(9 * MONTH_S), conservation.OPERATOR)
            await venue.deposit(venue.issuer, 300 * 100)
            await venue.buyback(0)
            await venue.batch()
            state = venue.offerings.terms.states.get(pid)
            if state is not None and state.buyback_paid_us is not None:
                assert venue.offerings.units_issued(pid) == 0
                assert venue.offerings.holders(pid) == []
            event(f"bought back: {state is not None and state.buyback_paid_us is not None}")
            event(f"months reported: {min(len(state.reports), 3) if state else 'failed'}")
            event(f"trades settled: {'some' if venue.trades else 'none'}")
            late = state is not None and any(r.time_us >= orb.late_from_us(orb.due_us(r.month))
                                             for r in state.reports)
            event(f"a month reported late: {late}")
        finally:
            await venue.engine.stop()
            await venue.pool.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=or_life())
def test_operating_rights_lives_conserve_cash_and_units(pg_url: str, plan: dict) -> None:
    asyncio.run(or_scenario(pg_url, plan))
