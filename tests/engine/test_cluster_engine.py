"""Replicas of one venue on a JetStream stream: real `crowdex serve --journal` processes against a
real 3-node NATS cluster on loopback (API.md, "Running as a cluster").

The cluster is started once for the module from the installed ``nats-server``; each test uses its
own stream, and a test that kills NATS nodes restarts them before it ends.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import aiohttp
import pytest

from engine.clock import format_time_us
from engine.cluster import DEGRADED_APPEND_TIMEOUT_S
from engine.log.jetstream import StreamLog
from engine.log.natscluster import NatsCluster
from tests.conftest import OPERATOR_KEY, ServerProcess
from tests.engine.test_jetstream_log import watch_leader

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}
ACCOUNTS = 6
CATCH_UP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
PRICE_FEN = 10_00  # the instrument's offering price
UNITS_EACH = 1_000  # units each investor is allotted
CASH_EACH_FEN = 1_000_000_00
LOAD_CLIENTS = 8
ACKS_BEFORE_KILL = 150  # acknowledged commands before the stream leader is killed
RESUMED_ACKS = 20  # acknowledgements within RESUMED_WINDOW_S that say writes go on again
RESUMED_WINDOW_S = 0.5
LOAD_AFTER_RESUME_S = 1.0  # the load goes on this long after writes resumed
LOAD_TIMEOUT_S = 60.0


@pytest.fixture
def replicas(cluster: NatsCluster, tmp_path: Path, request: pytest.FixtureRequest):
    """Makes replicas of the venue on this test's own stream; stops them all at the end."""
    made: list[ServerProcess] = []
    stream = request.node.name.replace("test_", "")[:40].replace("_", "-")

    def make(name: str) -> ServerProcess:
        server = ServerProcess(tmp_path / name, "--journal", ",".join(cluster.urls),
                               "--stream", stream, "--log-format", "text",
                               "--rate-limit", "100000")
        made.append(server)
        return server

    make.stream = stream
    yield make
    for server in made:
        server.stop()


async def post(session: aiohttp.ClientSession, url: str, path: str, body: dict,
               key: str | None = None, auth: dict = OPERATOR) -> tuple[int, dict, dict]:
    headers = dict(auth)
    if key is not None:
        headers["Idempotency-Key"] = key
    async with session.post(url + path, json=body, headers=headers,
                            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as response:
        return response.status, await response.json(), dict(response.headers)


async def state(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/v1/admin/state", headers=OPERATOR) as response:
        assert response.status == 200
        return await response.json()


async def same_state(session: aiohttp.ClientSession, urls: list[str], sequence_min: int = 0
                     ) -> dict:
    """Wait until every replica reports the same sequence (at least ``sequence_min``)."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    while True:
        states = [await state(session, url) for url in urls]
        sequences = {s["sequence"] for s in states}
        if len(sequences) == 1 and states[0]["sequence"] >= sequence_min:
            return states
        if time.monotonic() > deadline:
            raise AssertionError(f"replicas did not converge: {states}")
        await asyncio.sleep(0.05)


async def open_accounts(session: aiohttp.ClientSession, url: str) -> dict[int, dict]:
    """``ACCOUNTS`` investors: account id -> the headers that speak for it."""
    accounts = {}
    for i in range(ACCOUNTS):
        status, body, _ = await post(session, url, "/v1/accounts",
                                     {"role": "investor", "name": f"investor {i}"})
        assert status == 201, body
        accounts[body["account_id"]] = {"Authorization": f"Bearer {body['api_key']}"}
    return accounts


async def test_replicas_under_concurrent_clients_agree(replicas) -> None:
    first, second = replicas("a"), replicas("b")
    first.start()
    second.start()
    urls = [first.url, second.url]
    async with aiohttp.ClientSession() as session:
        keys = await open_accounts(session, second.url)
        accounts = list(keys)
        counter = itertools.count()

        async def client(number: int) -> None:
            # Deposits and withdrawals that may be refused: the outcome depends on the order,
            # which the stream fixes for every replica.
            for _ in range(40):
                n = next(counter)
                url = urls[n % 2]
                account = accounts[n % ACCOUNTS]
                if n % 3 == 2:
                    status, body, _ = await post(session, url, "/v1/me/withdrawals",
                                                 {"amount": 20, "reference": f"w{n}"},
                                                 auth=keys[account])
                    assert status in (201, 422), body
                else:
                    status, body, _ = await post(session, url,
                                                 f"/v1/accounts/{account}/deposits",
                                                 {"amount": 1 + n % 37, "reference": f"d{n}"},
                                                 key=f"k{n}")
                    assert status == 201, body

        await asyncio.gather(*(client(i) for i in range(8)))
        states = await same_state(session, urls, sequence_min=320)
        assert states[0]["state_hash"] == states[1]["state_hash"]
        assert states[0]["cash_total"] == states[1]["cash_total"]

        # A retry at the other replica gets the first answer.
        body = {"amount": 5000, "reference": "retried"}
        path = f"/v1/accounts/{accounts[0]}/deposits"
        answer = await post(session, first.url, path, body, key="retry-key")
        again = await post(session, second.url, path, body, key="retry-key")
        assert answer[0] == again[0] == 201
        assert answer[1] == again[1]
        states = await same_state(session, urls)
        assert states[0]["state_hash"] == states[1]["state_hash"]


async def me(session: aiohttp.ClientSession, url: str, auth: dict) -> dict:
    async with session.get(url + "/v1/me", headers=auth) as response:
        assert response.status == 200
        return await response.json()


async def deposit_until_acknowledged(session: aiohttp.ClientSession, urls: list[str],
                                     n: int, account: int, amount: int) -> int:
    """One deposit, tried at ``urls[n % 2]`` first and retried (same Idempotency-Key) at the
    other replica after a refused connection or a 5xx; returns the attempts it took."""
    body = {"amount": amount, "reference": f"d{n}"}
    attempts, _ = await post_until_acknowledged(session, urls, n,
                                                f"/v1/accounts/{account}/deposits", body)
    return attempts


async def post_until_acknowledged(session: aiohttp.ClientSession, urls: list[str], n: int,
                                  path: str, body: dict, auth: dict = OPERATOR,
                                  failures: list[float] | None = None) -> tuple[int, dict]:
    """POST command ``n`` at ``urls[n % 2]`` first, retried with its Idempotency-Key ``k{n}``
    at the other replica after a refused connection or a 503, until acknowledged (201);
    returns the attempts it took and the answer. The time of each failure goes to
    ``failures``."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
    for attempt in itertools.count(1):
        url = urls[(n + attempt - 1) % 2]
        try:
            status, answer, _ = await post(session, url, path, body, key=f"k{n}", auth=auth)
        except (TimeoutError, aiohttp.ClientError):
            status, answer = 0, {}
        if status == 201:
            return attempt, answer
        assert status in (0, 503), answer
        if failures is not None:
            failures.append(time.monotonic())
        if time.monotonic() > deadline:
            raise AssertionError(f"command {n} never acknowledged")
        await asyncio.sleep(0.01)
    raise AssertionError("unreachable")


async def test_killed_replica_loses_nothing_and_catches_up_again(replicas) -> None:
    first, second = replicas("a"), replicas("b")
    first.start()
    second.start()
    urls = [first.url, second.url]
    async with aiohttp.ClientSession() as session:
        keys = await open_accounts(session, first.url)
        accounts = list(keys)
        counter = itertools.count()
        expected = dict.fromkeys(accounts, 0)
        retried, slowest = 0, 0.0

        async def client() -> None:
            nonlocal retried, slowest
            for _ in range(60):
                n = next(counter)
                account, amount = accounts[n % ACCOUNTS], 1 + n % 97
                started = time.monotonic()
                attempts = await deposit_until_acknowledged(session, urls, n, account, amount)
                slowest = max(slowest, time.monotonic() - started)
                expected[account] += amount  # acknowledged: it must be there exactly once
                retried += attempts > 1

        clients = asyncio.gather(*(client() for _ in range(8)))
        while next(counter) < 150:  # mid-load (the counter is shared: skip a few numbers)
            await asyncio.sleep(0.005)
        first.kill()
        await clients
        assert retried > 0  # some clients did go to the other replica
        print(f"replica killed: {retried} deposits retried at the other, the slowest "
              f"acknowledged after {slowest:.3f} s")

        states = await same_state(session, [second.url])
        for account, auth in keys.items():
            assert (await me(session, second.url, auth))["cash_available"] == expected[account]

        # The killed replica restarts on its own data dir, and a new one on an empty one: both
        # read the whole stream and end at the same state.
        restart_s = first.start()
        third = replicas("c")
        empty_start_s = third.start()
        print(f"restarted replica up in {restart_s:.2f} s, one on an empty data dir in "
              f"{empty_start_s:.2f} s (stream of {states[0]['sequence']} entries)")
        everyone = await same_state(session, [first.url, second.url, third.url],
                                    sequence_min=states[0]["sequence"])
        assert len({s["state_hash"] for s in everyone}) == 1
        assert everyone[0]["state_hash"] == states[0]["state_hash"]


def restore(cluster: NatsCluster, *indexes: int) -> None:
    for index in indexes:
        if cluster.nodes[index].pid is None:
            cluster.restart(index)
    cluster.wait_meta_leader()


async def test_no_quorum_refuses_writes_promptly_and_serves_reads(cluster, replicas) -> None:
    """2 of 3 NATS nodes down: writes (HTTP and WebSocket) get 503 ``unavailable`` promptly,
    reads and WebSocket market data go on, /healthz says degraded and why; once the nodes are
    back, writes resume and a socket subscribed all along sees the book move on, gap-free."""
    server = replicas("a")
    server.start()
    async with aiohttp.ClientSession() as session:
        instrument, investors = await trading_instrument(session, server.url)
        account, auth = next(iter(investors.items()))
        path = f"/v1/accounts/{account}/deposits"
        status, body, _ = await post(session, server.url, "/v1/orders",
                                     buy(instrument, PRICE_FEN - 10), auth=auth)
        assert status == 201, body
        watcher = await session.ws_connect(server.url.replace("http", "ws", 1) + "/v1/ws")
        before = await subscribe_book(watcher, instrument)
        # Read all along, as a real client does: that also answers the server's pings, which
        # a socket left unread through the outage would miss and be closed for.
        updates: asyncio.Queue[dict] = asyncio.Queue()
        reading = asyncio.create_task(read_into(watcher, updates))
        cash_before = (await me(session, server.url, auth))["cash_available"]
        cluster.kill(1)
        cluster.kill(2)
        try:
            timings = []
            for i in range(2):
                started = time.monotonic()
                status, body, headers = await post(session, server.url, path,
                                                   {"amount": 10, "reference": f"q{i}"})
                timings.append(time.monotonic() - started)
                assert status == 503 and body["error"]["code"] == "unavailable", body
                assert headers.get("Retry-After") == "1"
            # The first waits out the stream log's retry window (a failover would end within
            # it); once degraded, the next answers within the shorter one.
            assert timings[0] < 12.0 and timings[1] < 3.0, timings
            print(f"\nno quorum: 503 after {timings[0]:.2f} s, then after {timings[1]:.2f} s")
            async with session.get(server.url + "/healthz") as response:
                assert response.status == 503
                assert await response.json() == {"status": "degraded", "journal": "unavailable",
                                                 "journal_reason": "no_quorum"}
            assert (await state(session, server.url))["sequence"] > 0  # reads are served
            assert (await me(session, server.url, auth))["cash_available"] == cash_before
            await market_data_without_quorum(session, server.url, instrument, auth, before)
        finally:
            # In a thread: restarting two nodes and electing a meta leader takes seconds
            # (tens at load), and a loop blocked that long answers no ping, so the server
            # would close the watcher's socket for a missed heartbeat.
            await asyncio.to_thread(restore, cluster, 1, 2)
        restored = time.monotonic()
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while True:
            status, body, _ = await post(session, server.url, path,
                                         {"amount": 10, "reference": "after"})
            if status == 201:
                break
            assert status == 503 and time.monotonic() < deadline, body
        print(f"quorum back: writes acknowledged again {time.monotonic() - restored:.2f} s "
              "after the nodes were restarted")
        async with session.get(server.url + "/healthz") as response:
            assert (response.status, await response.json()) == (200, {"status": "ok"})
        # The socket subscribed since before the outage sees a new order, with no gap (a
        # refused one may come first: it was told it may be recorded).
        status, body, _ = await post(session, server.url, "/v1/orders",
                                     buy(instrument, PRICE_FEN - 30), auth=auth)
        assert status == 201, body
        sequence = before["sequence"]
        while True:
            update = await asyncio.wait_for(updates.get(), REQUEST_TIMEOUT_S)
            assert update.get("type") != "closed", update  # the socket ended: say how
            assert (update["type"], update["sequence"]) == ("update", sequence + 1), update
            sequence = update["sequence"]
            if ["buy", PRICE_FEN - 30, 1] in update["data"]["changes"]:
                break
        await watcher.close()
        await reading


def buy(instrument: int, price: int) -> dict:
    """A limit buy of one unit (resting: nobody sells)."""
    return {"instrument_id": instrument, "side": "buy", "type": "limit", "price": price,
            "quantity": 1}


async def next_message(ws: aiohttp.ClientWebSocketResponse) -> dict:
    message = await ws.receive(timeout=REQUEST_TIMEOUT_S)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return message.json()


async def read_into(ws: aiohttp.ClientWebSocketResponse, messages: asyncio.Queue) -> None:
    """Queue each message of ``ws`` as it comes, then a ``closed`` item with the close code
    and reason, so that a reader waiting on the queue learns why nothing more comes."""
    async for message in ws:
        messages.put_nowait(message.json())
    messages.put_nowait({"type": "closed", "code": ws.close_code,
                         "exception": repr(ws.exception())})


async def subscribe_book(ws: aiohttp.ClientWebSocketResponse, instrument: int) -> dict:
    """Subscribe ``ws`` to the instrument's book; returns the snapshot."""
    await ws.send_json({"op": "subscribe", "channels": [f"book:{instrument}"]})
    assert (await next_message(ws))["type"] == "subscribed"
    snapshot = await next_message(ws)
    assert (snapshot["type"], snapshot["channel"]) == ("snapshot", f"book:{instrument}")
    return snapshot


async def market_data_without_quorum(session: aiohttp.ClientSession, url: str,
                                     instrument: int, auth: dict, before: dict) -> None:
    """While the stream has no quorum: an order over a WebSocket is refused promptly, while
    a new subscriber and the REST book still get the book as it was."""
    async with session.ws_connect(url.replace("http", "ws", 1) + "/v1/ws",
                                  headers=auth) as trader:
        started = time.monotonic()
        await trader.send_json({"op": "order", "request_id": 7, **buy(instrument, 1)})
        reply = await next_message(trader)
        assert (reply["type"], reply["request_id"], reply["code"]) == ("error", 7,
                                                                        "unavailable"), reply
        # One append is in flight at a time, and while degraded the probe's Tick takes its
        # turns; a command queued behind an append that found no quorum is refused as soon as
        # that append gives up, so it waits out one append's timeout at most, never two.
        refused_s = time.monotonic() - started
        print(f"no quorum: a WebSocket order refused after {refused_s:.2f} s")
        assert refused_s < DEGRADED_APPEND_TIMEOUT_S + 1.0
        snapshot = await subscribe_book(trader, instrument)
        assert (snapshot["sequence"], snapshot["data"]) == (before["sequence"], before["data"])
    async with session.get(f"{url}/v1/instruments/{instrument}/book") as response:
        book = await response.json()
    assert (book["sequence"], book["bids"]) == (before["sequence"], before["data"]["bids"])


async def test_manual_clock_moved_at_one_replica_moves_all(replicas) -> None:
    first = replicas("a")
    first.extra += ["--clock", "manual", "--start-time", "2026-03-01T09:30:00Z"]
    second = replicas("b")  # started without --clock: the venue's Genesis decides
    first.start()
    second.start()
    async with aiohttp.ClientSession() as session:
        status, body, _ = await post(session, second.url, "/v1/admin/clock",
                                     {"advance_seconds": 3600})
        assert (status, body) == (200, {"now": "2026-03-01T10:30:00Z"})
        await open_accounts(session, first.url)  # time passes on no replica's wall clock
        states = await same_state(session, [first.url, second.url])
        assert {s["now"] for s in states} == {"2026-03-01T10:30:00Z"}
        assert states[0]["state_hash"] == states[1]["state_hash"]
        for url in (first.url, second.url):
            async with session.get(url + "/v1/venue") as response:
                venue = await response.json()
            assert (venue["clock"], venue["now"]) == ("manual", "2026-03-01T10:30:00Z")


async def trading_instrument(session: aiohttp.ClientSession, url: str
                             ) -> tuple[int, dict[int, dict]]:
    """An equity instrument trading on a wall-clock venue, and ``ACCOUNTS`` investors holding
    cash and units of it: (instrument id, account id -> the headers that speak for it)."""
    status, issuer, _ = await post(session, url, "/v1/accounts",
                                   {"role": "issuer", "name": "issuer"})
    assert status == 201, issuer
    investors = {}
    for i in range(ACCOUNTS):
        status, body, _ = await post(session, url, "/v1/accounts", {
            "role": "investor", "name": f"investor {i}", "investor_class": "institutional"})
        assert status == 201, body
        investors[body["account_id"]] = {"Authorization": f"Bearer {body['api_key']}"}
        status, answer, _ = await post(session, url, f"/v1/accounts/{body['account_id']}/"
                                       "deposits", {"amount": CASH_EACH_FEN, "reference": f"c{i}"})
        assert status == 201, answer
    deadline = format_time_us(time.time_ns() // 1_000 + 30 * 86_400_000_000)
    status, project, _ = await post(session, url, "/v1/projects", {
        "board": "equity", "title": "Failover Co", "description": "d", "deadline": deadline,
        "terms": {"price": PRICE_FEN, "min_quantity": 1, "lockup_days": 0,
                  "max_quantity": ACCOUNTS * UNITS_EACH}},
        auth={"Authorization": f"Bearer {issuer['api_key']}"})
    assert status == 201, project
    project_id = project["project_id"]
    status, body, _ = await post(session, url, f"/v1/projects/{project_id}/approve", {})
    assert status == 200, body
    for auth in investors.values():
        status, body, _ = await post(session, url, f"/v1/projects/{project_id}/subscriptions",
                                     {"quantity": UNITS_EACH}, auth=auth)
        assert status == 201, body
    status, body, _ = await post(session, url, f"/v1/projects/{project_id}/close", {})
    assert (status, body["status"]) == (200, "trading"), body
    return project_id, investors


async def stream_leader(cluster: NatsCluster, stream: str) -> int:
    """The index of the NATS node leading ``stream`` now."""
    async with await StreamLog.connect(cluster.urls, stream=stream, create=False) as stream_log:
        info = await stream_log.js.stream_info(stream)
    return cluster.index_of(info.cluster.leader)


def write_gap(acknowledged: list[float], failures: list[float], killed_at: float
              ) -> tuple[float, float | None]:
    """The longest time without any acknowledgement from the last one before the kill on,
    and the time from the first failure after the kill to the first acknowledgement after it
    (None when no client saw a failure)."""
    times = sorted(acknowledged)
    points = [t for t in times if t <= killed_at][-1:] + [t for t in times if t > killed_at]
    gap = max(b - a for a, b in zip(points, points[1:], strict=False))
    failed = [t for t in failures if t > killed_at]
    if not failed:
        return gap, None
    return gap, min(t for t in times if t > failed[0]) - failed[0]


async def test_stream_leader_killed_under_load_at_both_replicas(cluster, replicas) -> None:
    """Issue 13: kill -9 the NATS node leading the stream while clients write at both
    replicas; writes resume, nothing acknowledged is lost or doubled, the replicas agree."""
    first, second = replicas("a"), replicas("b")
    first.start()
    second.start()
    urls = [first.url, second.url]
    async with aiohttp.ClientSession() as session:
        instrument, investors = await trading_instrument(session, first.url)
        accounts = list(investors)
        await same_state(session, urls)
        cash_before = {account: await cash(session, second.url, auth)
                       for account, auth in investors.items()}
        deposited = dict.fromkeys(accounts, 0)
        placed: dict[int, list[int]] = {account: [] for account in accounts}
        acknowledged: list[float] = []
        failures: list[float] = []
        counter = itertools.count()
        done = asyncio.Event()

        async def client() -> None:
            # Deposits and resting buy orders by turns, each account in turn.
            while not done.is_set():
                n = next(counter)
                account = accounts[n // 2 % ACCOUNTS]
                if n % 2:
                    body = {"amount": 1 + n % 97, "reference": f"d{n}"}
                    await post_until_acknowledged(session, urls, n, f"/v1/accounts/{account}/"
                                                  "deposits", body, failures=failures)
                    deposited[account] += body["amount"]
                else:
                    body = {"instrument_id": instrument, "side": "buy", "type": "limit",
                            "price": PRICE_FEN - 1 - n % 50, "quantity": 1,
                            "client_order_id": f"o{n}"}
                    _, answer = await post_until_acknowledged(
                        session, urls, n, "/v1/orders", body, auth=investors[account],
                        failures=failures)
                    placed[account].append(answer["order_id"])
                acknowledged.append(time.monotonic())

        clients = asyncio.gather(*(client() for _ in range(LOAD_CLIENTS)))
        leader = await stream_leader(cluster, replicas.stream)
        try:
            while len(acknowledged) < ACKS_BEFORE_KILL:
                await asyncio.sleep(0.005)
            async with await StreamLog.connect(cluster.urls, stream=replicas.stream,
                                               create=False) as observer:
                killed_at = time.monotonic()
                cluster.kill(leader)
                election = asyncio.create_task(
                    watch_leader(observer, cluster.nodes[leader].name, killed_at))
                await writes_resumed(acknowledged, killed_at)
                await asyncio.sleep(LOAD_AFTER_RESUME_S)
                done.set()
                await clients
                election_s = await asyncio.wait_for(election, CATCH_UP_TIMEOUT_S)
        finally:
            done.set()
            await asyncio.gather(clients, return_exceptions=True)
            await asyncio.to_thread(restore, cluster, leader)
        gap, failed_for = write_gap(acknowledged, failures, killed_at)
        print(f"\nstream leader {cluster.nodes[leader].name} killed under {LOAD_CLIENTS} clients "
              f"at 2 replicas: write gap {gap:.2f} s (no acknowledgement anywhere), NATS named "
              f"a new stream leader after {election_s:.2f} s; {len(failures)} failed attempts "
              "retried" + (f", first failure to next success {failed_for:.2f} s"
                           if failed_for is not None else "") +
              f"; {len(acknowledged)} commands acknowledged")

        states = await same_state(session, urls, sequence_min=len(acknowledged))
        assert states[0]["state_hash"] == states[1]["state_hash"]
        for url in urls:  # every acknowledged command exactly once, at both replicas
            for account, auth in investors.items():
                assert await cash(session, url, auth) == cash_before[account] + deposited[account]
                async with session.get(url + "/v1/orders", headers=auth) as response:
                    orders = await response.json()
                assert sorted(o["order_id"] for o in orders) == sorted(placed[account])
                assert all(o["status"] == "open" for o in orders)


async def cash(session: aiohttp.ClientSession, url: str, auth: dict) -> int:
    """An account's cash, free and reserved (a resting buy order reserves its price)."""
    account = await me(session, url, auth)
    return account["cash_available"] + account["cash_reserved"]


async def writes_resumed(acknowledged: list[float], killed_at: float) -> None:
    """Wait until ``RESUMED_ACKS`` acknowledgements came within ``RESUMED_WINDOW_S``, at
    least a second after the kill (commands in flight before it may still be answered)."""
    while True:
        now = time.monotonic()
        assert now - killed_at < LOAD_TIMEOUT_S, "writes did not resume"
        recent = sum(1 for t in acknowledged[-RESUMED_ACKS:] if t > now - RESUMED_WINDOW_S)
        if now - killed_at > 1.0 and recent >= RESUMED_ACKS:
            return
        await asyncio.sleep(0.02)
