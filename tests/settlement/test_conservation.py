"""Conservation under hypothesis-generated activity, settled into the real PostgreSQL.

Hypothesis drives the real engine (``Engine`` over the ``StateMachine``, with the commands the
gateway would send) through deposits, withdrawals, equity offerings that are listed, subscribed,
cancelled from and closed (allocated pro rata, or refunded when they miss their minimum),
secondary-market orders that trade and are cancelled, clock jumps past deadlines, and settlement
batches in between. After every batch:

* each asset's ledger sums to what the outside world put in: the venue accounts' cash to the
  deposits minus the withdrawals, each instrument's units to the units issued;
* the ledger balances: every movement is a debit and a credit that cancel, every asset's legs
  and balances sum to zero, every batch's instructions are its legs netted;
* reconciliation against the engine is clean, and the engine holds no unsettled movement.

``--slow`` runs many more examples.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.clock import ManualClock
from engine.offerings import Offerings
from engine.sequencer import Engine
from settlement.batch import Settlement
from settlement.db import create_pool
from settlement.reconcile import reconcile

EXAMPLES = 500 if os.environ.get("CROWDEX_SLOW") == "1" else 60
STEPS_MIN = 5
STEPS_MAX = 40
T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DAY_S = 86_400
INVESTORS = 4
OPERATOR = 2
PRICE = 1_00  # fen per unit, the offering price: small, so that fees round
TICK = 7  # fen: orders are priced a few ticks around the offering price
LEDGER_TABLES = ("batch_requests, ledger_legs, instructions, balances, batches, accounts, "
                 "reconciliation_breaks")

who = st.integers(0, INVESTORS - 1)
pick = st.integers(0, 7)  # an index into what exists so far (modulo its length)
fen = st.integers(1, 30_000)

step = st.one_of(
    st.tuples(st.just("deposit"), who, fen),
    st.tuples(st.just("withdraw"), who, fen),
    st.tuples(st.just("withdraw"), who, st.integers(1, 3_000)),
    st.tuples(st.just("list"), st.integers(1, 40), st.integers(0, 80)),
    st.tuples(st.just("subscribe"), who, pick, st.integers(1, 60)),
    st.tuples(st.just("cancel_subscription"), pick),
    st.tuples(st.just("close"), pick),
    st.tuples(st.just("advance"), st.integers(1, 70)),
    st.tuples(st.just("order"), who, pick, st.sampled_from(["buy", "sell"]),
              st.integers(-3, 3), st.integers(1, 30), st.sampled_from(["gtc", "ioc"])),
    st.tuples(st.just("order"), who, pick, st.sampled_from(["buy", "sell"]),
              st.integers(-3, 3), st.integers(1, 30), st.just("gtc")),
    # A holder's sell and an investor's buy at one price: a trade, funds permitting.
    st.tuples(st.just("cross"), pick, who, pick, st.integers(-3, 3), st.integers(1, 30)),
    st.tuples(st.just("cancel_order"), pick),
    st.tuples(st.just("batch"),),
    st.tuples(st.just("batch"),),
)


@st.composite
def activity(draw: st.DrawFn) -> dict:
    """A venue's life: cash in, one offering subscribed and closed, its units traded (when it
    succeeded), then anything, batches included."""
    return {
        "deposits": draw(st.lists(st.integers(10_000, 200_000), min_size=INVESTORS,
                                  max_size=INVESTORS)),
        "min_quantity": draw(st.integers(1, 60)),
        "extra_quantity": draw(st.integers(0, 80)),
        "subscriptions": draw(st.lists(st.integers(0, 60), min_size=INVESTORS,
                                       max_size=INVESTORS)),
        "cancel_before_close": draw(st.none() | pick),
        "batch_before_close": draw(st.booleans()),
        "crosses": draw(st.lists(st.tuples(st.just("cross"), pick, who, st.just(0),
                                           st.integers(-3, 3), st.integers(1, 30)),
                                 min_size=1, max_size=6)),
        "steps": draw(st.lists(step, min_size=STEPS_MIN, max_size=STEPS_MAX)),
    }


@dataclass
class Venue:
    """The engine under test, with what the test itself counted of the outside world's cash."""

    engine: Engine
    service: Settlement
    pool: asyncpg.Pool
    issuer: int = 0
    investors: list[int] = field(default_factory=list)
    projects: list[int] = field(default_factory=list)
    subscriptions: list[tuple[int, int]] = field(default_factory=list)  # (id, subscriber)
    orders: list[tuple[int, int]] = field(default_factory=list)  # (id, owner)
    net_cash: int = 0  # deposits - withdrawals the engine accepted
    references: int = 0
    trades: int = 0
    batches: int = 0

    @property
    def offerings(self) -> Offerings:
        return next(x for x in self.engine.machine.components if isinstance(x, Offerings))

    async def submit(self, command: object, actor: int = 0) -> dict | None:
        """The reply's body if the engine accepted the command, else None."""
        reply = await self.engine.submit(command, actor)
        return reply.body if reply.status in (200, 201) else None

    async def deposit(self, account: int, amount: int) -> None:
        self.references += 1
        if await self.submit(c.Deposit(account, amount, f"r{self.references}")) is not None:
            self.net_cash += amount

    async def withdraw(self, account: int, amount: int) -> None:
        self.references += 1
        body = await self.submit(c.Withdraw(account, amount, f"r{self.references}"), account)
        if body is not None:
            self.net_cash -= amount

    async def list(self, min_quantity: int, extra_quantity: int) -> None:
        terms = {"price": PRICE, "min_quantity": min_quantity,
                 "max_quantity": min_quantity + extra_quantity, "lockup_days": 0}
        deadline = self.engine.machine.now_us + 30 * DAY_S * 1_000_000
        body = await self.submit(oc.CreateProject("equity", "p", "d", deadline, terms),
                                 self.issuer)
        if body is not None:
            project_id = body["project_id"]
            await self.submit(oc.ReviewProject(project_id, True), OPERATOR)
            self.projects.append(project_id)

    async def subscribe(self, investor: int, project_id: int, quantity: int) -> None:
        body = await self.submit(oc.Subscribe(project_id, quantity), investor)
        if body is not None:
            self.subscriptions.append((body["subscription_id"], investor))

    async def order(self, investor: int, project_id: int, side: str, ticks: int, quantity: int,
                    time_in_force: str) -> None:
        price = PRICE + ticks * TICK
        body = await self.submit(mc.PlaceOrder(project_id, side, "limit", price, quantity,
                                               time_in_force), investor)
        if body is not None:
            self.orders.append((body["order_id"], investor))

    async def batch(self) -> None:
        view = await self.service.run_batch(OPERATOR)
        self.trades += view["trade_count"]
        self.batches += 1
        await check(self)

    async def run(self, kind: str, *args: int | str) -> None:
        if kind == "deposit":
            await self.deposit(self.investors[args[0]], args[1])
        elif kind == "withdraw":
            await self.withdraw(self.investors[args[0]], args[1])
        elif kind == "list":
            await self.list(args[0], args[1])
        elif kind == "batch":
            await self.batch()
        elif kind == "advance":
            await self.submit(c.AdvanceClock(args[0] * DAY_S), OPERATOR)
        elif kind == "subscribe" and self.projects:
            await self.subscribe(self.investors[args[0]], _at(self.projects, args[1]), args[2])
        elif kind == "close" and self.projects:
            await self.submit(oc.CloseProject(_at(self.projects, args[0])), OPERATOR)
        elif kind == "cancel_subscription" and self.subscriptions:
            subscription, owner = _at(self.subscriptions, args[0])
            await self.submit(oc.CancelSubscription(subscription), owner)
        elif kind == "order" and self.projects:
            investor, project = self.investors[args[0]], _at(self.projects, args[1])
            await self.order(investor, project, *args[2:])
        elif kind == "cross" and self.projects:
            project, ticks, quantity = _at(self.projects, args[2]), args[3], args[4]
            holders = [account for account, _ in self.offerings.holders(project)]
            seller = _at(holders or self.investors, args[0])
            buyer = self.investors[args[1]]
            await self.order(seller, project, "sell", ticks, quantity, "gtc")
            await self.order(buyer, project, "buy", ticks, quantity, "gtc")
        elif kind == "cancel_order" and self.orders:
            order, owner = _at(self.orders, args[0])
            await self.submit(mc.CancelOrder(order), owner)


def _at(items: list, index: int):
    return items[index % len(items)]


async def check(venue: Venue) -> None:
    """After a batch (its cutoff is everything so far): the ledger against the outside world."""
    pool, machine, offerings = venue.pool, venue.engine.machine, venue.offerings
    # Each asset's ledger sums to what came from outside: cash, deposits - withdrawals...
    held = {r["asset"]: r["total"] for r in await pool.fetch(
        "SELECT asset, sum(amount) AS total FROM balances WHERE account_id > 0 GROUP BY asset")}
    assert held.pop(0, 0) == venue.net_cash == machine.deposits_total - machine.withdrawals_total
    assert offerings.held_total() == 0  # equity holds nothing outside the accounts
    # ... and units, what was issued.
    for project_id in venue.projects:
        assert held.pop(project_id, 0) == offerings.units_issued(project_id)
    assert held == {}
    # The ledger balances: both legs of every movement cancel, every asset sums to zero.
    unbalanced = await pool.fetchval(
        "SELECT count(*) FROM (SELECT batch_id, movement_id FROM ledger_legs "
        "GROUP BY batch_id, movement_id HAVING count(*) <> 2 OR sum(amount) <> 0) AS m")
    assert unbalanced == 0
    for table in ("ledger_legs", "balances"):
        sums = await pool.fetch(f"SELECT asset, sum(amount) AS total FROM {table} GROUP BY asset")
        assert all(r["total"] == 0 for r in sums), (table, sums)
    # Every batch's custodian instructions are exactly its legs netted per account and asset.
    differences = await pool.fetchval("""
        SELECT count(*) FROM (
            SELECT batch_id, account_id, asset, sum(amount) AS net, count(*) AS legs
              FROM ledger_legs GROUP BY batch_id, account_id, asset
            EXCEPT ALL
            SELECT batch_id, account_id, asset, net_amount, legs FROM instructions) AS d""")
    instructions = await pool.fetchval("SELECT count(*) FROM instructions")
    netted = await pool.fetchval("SELECT count(*) FROM (SELECT DISTINCT batch_id, account_id, "
                                 "asset FROM ledger_legs) AS k")
    assert differences == 0 and instructions == netted
    result = await reconcile(machine, pool)
    assert result.balanced and not result.mismatches, result.view()
    assert result.cash_total == venue.net_cash
    assert len(machine.movements.table.live()) == 0


def describe(venue: Venue) -> None:
    """What an example exercised (``--hypothesis-show-statistics``)."""
    statuses = {p.status for p in venue.offerings.projects.values()}
    subscriptions = {s.status for s in venue.offerings.subscriptions.values()}
    event(f"trades settled: {'some' if venue.trades else 'none'}")
    event(f"an offering allocated units: {'trading' in statuses}")
    event(f"an offering failed and refunded: {'failed' in statuses}")
    event(f"a subscription cancelled: {'cancelled' in subscriptions}")
    event("an offering oversubscribed (pro rata): " + str(any(
        0 < s.alloc_quantity < s.quantity for s in venue.offerings.subscriptions.values())))
    event(f"cash withdrawn: {venue.engine.machine.withdrawals_total > 0}")
    event(f"batches: {min(venue.batches, 4)}{'+' if venue.batches >= 4 else ''}")


async def open_venue(url: str, data_dir: Path) -> Venue:
    pool = await create_pool(url)
    await pool.execute(f"TRUNCATE {LEDGER_TABLES}")
    engine = Engine(data_dir, ManualClock(), sync=False)
    await engine.start()
    venue = Venue(engine, Settlement(engine, pool), pool)
    await venue.submit(c.Genesis("", True, T0, "intl", c.RULES_VERSION))
    body = await venue.submit(c.CreateAccount("issuer", "issuer", "ki"))
    venue.issuer = body["account_id"]
    for i in range(INVESTORS):
        body = await venue.submit(c.CreateAccount("investor", f"p{i}", f"k{i}", "qualified"))
        venue.investors.append(body["account_id"])
    return venue


async def scenario(url: str, plan: dict) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        venue = await open_venue(url, Path(data_dir))
        try:
            for investor, amount in zip(venue.investors, plan["deposits"], strict=True):
                if amount:
                    await venue.deposit(investor, amount)
            await venue.list(plan["min_quantity"], plan["extra_quantity"])
            for investor, quantity in zip(venue.investors, plan["subscriptions"], strict=True):
                if quantity:
                    await venue.subscribe(investor, venue.projects[0], quantity)
            if plan["cancel_before_close"] is not None:
                await venue.run("cancel_subscription", plan["cancel_before_close"])
            if plan["batch_before_close"]:
                await venue.batch()
            await venue.run("close", 0)
            for kind, *args in plan["crosses"] + plan["steps"]:
                await venue.run(kind, *args)
            await venue.batch()
            describe(venue)
        finally:
            await venue.engine.stop()
            await venue.pool.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=activity())
def test_the_ledger_conserves_cash_and_units(pg_url: str, plan: dict) -> None:
    asyncio.run(scenario(pg_url, plan))
