"""Settlement on a cluster: replicas of one venue share one PostgreSQL and a batch is written once
(API.md, "Running as a cluster"); and two replicas started together create the venue once.

Real parts throughout: a 3-node NATS JetStream cluster on loopback (started once for the module),
real ``crowdex serve --journal`` processes, and the session's embedded PostgreSQL, one fresh
database per test shared by that test's replicas. Each test has a stream of its own.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from engine.clock import WallClock
from engine.cluster import ClusterEngine
from gateway import http
from gateway.app import _bootstrap
from settlement.batch import FAULT_ENV
from tests.conftest import OPERATOR_KEY, ServerProcess
from tests.engine.conftest import cluster  # noqa: F401 - the fixture
from tests.engine.test_cluster_engine import same_state
from tests.gateway.conftest import make_config
from tests.settlement.test_faults import KILLED, Venue, call, check_ledger

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}
REQUEST_TIMEOUT_S = 60.0
CONVERGE_TIMEOUT_S = 30.0
GENERATED_KEY = re.compile(r"generated operator API key \(shown once\): (\S+)")


@pytest.fixture
def replicas(cluster, tmp_path: Path, request: pytest.FixtureRequest):  # noqa: F811
    """Makes replicas of this test's venue (its own stream); stops them all at the end."""
    made: list[ServerProcess] = []
    stream = "s-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-40:].strip("-")

    def make(name: str, database_url: str | None, operator_key: str | None = OPERATOR_KEY
             ) -> ServerProcess:
        server = ServerProcess(tmp_path / name, "--journal", ",".join(cluster.urls),
                               "--stream", stream, "--log-format", "text",
                               "--rate-limit", "100000", database_url=database_url,
                               operator_key=operator_key)
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


async def settle(session: aiohttp.ClientSession, url: str, key: str | None) -> tuple[int, dict]:
    """POST /v1/settlement/batches (no body), with ``key`` as its Idempotency-Key if given."""
    headers = dict(OPERATOR)
    if key is not None:
        headers["Idempotency-Key"] = key
    async with session.post(url + "/v1/settlement/batches", headers=headers,
                            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)) as response:
        return response.status, await response.json()


async def reconciliation(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url + "/v1/settlement/reconciliation", headers=OPERATOR) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def batch_rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch("SELECT batch_id, cutoff_sequence, movement_count FROM batches "
                                "ORDER BY batch_id")
    finally:
        await conn.close()


async def activity_at_both(session: aiohttp.ClientSession, venue: Venue,
                           servers: list[ServerProcess]) -> None:
    """Deposits and withdrawals at each replica in turn (each waits until the other has
    applied what came before, so an account made at one is known at the other)."""
    urls = [server.url for server in servers]
    for server in servers:
        venue.activity(server)
        await same_state(session, urls)


async def assert_settled_everywhere(session: aiohttp.ClientSession, url: str, venue: Venue,
                                    servers: list[ServerProcess]) -> int:
    """Every movement once in the ledger, which balances; clean reconciliation and one state
    at every replica. Returns the number of batches."""
    batches = await check_ledger(url, venue)
    for server in servers:
        rec = await reconciliation(session, server.url)
        assert rec["balanced"] and rec["mismatches"] == [], rec
        assert rec["last_batch_id"] == batches
        assert rec["cash_total"] == sum(venue.cash.values())
    states = await same_state(session, [server.url for server in servers])
    assert len({s["state_hash"] for s in states}) == 1
    return batches


@pytest.mark.parametrize("keys", [("same", "same"), ("nightly-a", "nightly-b"), (None, None)],
                         ids=["same-key", "different-keys", "no-key"])
async def test_a_batch_asked_of_two_replicas_at_once_is_written_once(
        replicas, database_url: str, keys: tuple[str | None, str | None]) -> None:
    first, second = replicas("a", database_url), replicas("b", database_url)
    with ThreadPoolExecutor(2) as pool:  # at once: both migrate the fresh database together
        list(pool.map(ServerProcess.start, (first, second)))
    venue = Venue()
    async with aiohttp.ClientSession() as session:
        for round_number in range(3):
            await activity_at_both(session, venue, [first, second])
            # Reconciliations meanwhile wait for the batches rather than see half of one.
            *answers, rec_first, rec_second = await asyncio.gather(
                settle(session, first.url, keys[0] and f"{keys[0]}-{round_number}"),
                settle(session, second.url, keys[1] and f"{keys[1]}-{round_number}"),
                reconciliation(session, first.url), reconciliation(session, second.url))
            assert [status for status, _ in answers] == [201, 201], answers
            assert rec_first["balanced"] and rec_second["balanced"], (rec_first, rec_second)
            bodies = [body for _, body in answers]
            if keys[0] == keys[1] and keys[0] is not None:
                # One request, asked twice: one batch, the same answer at both replicas.
                assert bodies[0] == bodies[1]
            else:
                # Two requests: two batches, the later one holding what came after the first.
                assert sorted(b["batch_id"] for b in bodies) == [2 * round_number + 1,
                                                                 2 * round_number + 2]
                assert sorted(b["movement_count"] for b in bodies)[0] == 0
            batches = await assert_settled_everywhere(session, database_url, venue,
                                                      [first, second])
            print(f"round {round_number}: {batches} batches; answers "
                  f"{[(b['batch_id'], b['movement_count']) for b in bodies]}")


@pytest.mark.parametrize("fault", ["after_prepare", "mid_copy", "after_commit"])
async def test_a_replica_killed_mid_batch_leaves_each_movement_written_once(
        replicas, database_url: str, fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of the replica running a batch: after its PrepareSettlement is in the stream
    (nothing written yet), in the middle of its COPY, or after its COMMIT (the BatchCommitted
    never appended). The client retries at the other replica with the same key; the killed one
    restarts; every movement is in the ledger once and both replicas reconcile."""
    monkeypatch.setenv(FAULT_ENV, fault)
    first = replicas("a", database_url)
    first.start()
    monkeypatch.delenv(FAULT_ENV)
    second = replicas("b", database_url)
    second.start()
    venue = Venue()
    async with aiohttp.ClientSession() as session:
        await activity_at_both(session, venue, [first, second])
        assert call(first, "POST", "/v1/settlement/batches", None,
                    {**OPERATOR, "Idempotency-Key": "nightly"}) == (0, KILLED)
        assert first.proc.wait(10) == -signal.SIGKILL
        written = await batch_rows(database_url)
        assert len(written) == (1 if fault == "after_commit" else 0)

        rec = await reconciliation(session, second.url)  # learns a committed batch first
        assert rec["balanced"] and rec["mismatches"] == [], rec
        status, retried = await settle(session, second.url, "nightly")
        assert status == 201 and retried["batch_id"] == 1, retried
        assert retried["movement_count"] == venue.movements
        if written:  # the killed replica's batch, answered again and not written again
            assert retried["cutoff_sequence"] == written[0]["cutoff_sequence"]
        assert len(await batch_rows(database_url)) == 1

        restart_s = first.start()
        await activity_at_both(session, venue, [first, second])
        status, later = await settle(session, first.url, "nightly-2")
        assert status == 201 and later["batch_id"] == 2, later
        assert await assert_settled_everywhere(session, database_url, venue,
                                               [first, second]) == 2
        print(f"{fault}: killed replica back in {restart_s:.2f} s; batch 1 written once")


async def test_two_replicas_started_together_create_the_venue_once(
        replicas, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real processes, no operator key given: whichever Genesis the stream holds first makes
    the venue; exactly one key is printed, and it works at both replicas."""
    monkeypatch.delenv("CROWDEX_OPERATOR_KEY", raising=False)
    servers = [replicas(name, database_url, operator_key=None) for name in ("a", "b")]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(ServerProcess.start, servers))
    printed = [key for server in servers
               for key in GENERATED_KEY.findall(server.log_path.read_text())]
    assert len(printed) == 1, printed
    auth = {"Authorization": f"Bearer {printed[0]}"}
    async with aiohttp.ClientSession() as session:
        for server in servers:
            async with session.post(server.url + "/v1/accounts", headers=auth,
                                    json={"role": "investor", "name": "first"}) as response:
                assert response.status == 201, await response.text()
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while True:
            states = []
            for server in servers:
                async with session.get(server.url + "/v1/admin/state", headers=auth) as reply:
                    states.append(await reply.json())
            if states[0] == states[1] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert states[0] == states[1]
        async with session.get(servers[0].url + "/v1/me", headers=auth) as response:
            me = await response.json()
        # The fee account and one operator: a second Genesis would have made two more.
        assert (me["account_id"], me["role"]) == (2, "operator")


@pytest.mark.parametrize("given", [None, OPERATOR_KEY], ids=["generated", "given"])
async def test_two_genesis_at_once_leave_one_venue_and_a_working_key(
        cluster, tmp_path: Path, capsys: pytest.CaptureFixture, given: str | None,  # noqa: F811
        request: pytest.FixtureRequest) -> None:
    """The race made certain: two replicas both read the empty stream, then both bootstrap.
    The stream orders the two Genesis commands; the second is refused and changes nothing, so
    its replica must print no key (it would not work) and the venue has one operator."""
    stream = f"genesis-{request.node.callspec.id}"
    engines = [ClusterEngine(cluster.urls, tmp_path / name, WallClock(), stream=stream)
               for name in ("a", "b")]
    for engine in engines:
        await engine.recover()
        await engine.start()
    try:
        assert not any(engine.machine.accounts for engine in engines)
        config = make_config(tmp_path / "config", operator_key=given)
        await asyncio.gather(*(_bootstrap(engine, config) for engine in engines))
        printed = GENERATED_KEY.findall(capsys.readouterr().out)
        assert len(printed) == (0 if given else 1), printed
        key_hash = http.key_hash(given or printed[0])
        deadline = time.monotonic() + CONVERGE_TIMEOUT_S
        while {e.machine.last_sequence for e in engines} != {2}:
            assert time.monotonic() < deadline, [e.machine.last_sequence for e in engines]
            await asyncio.sleep(0.01)
        for engine in engines:
            machine = engine.machine
            assert sorted(machine.accounts) == [1, 2]
            assert machine.accounts[machine.operator_account_id].key_hash == key_hash
    finally:
        for engine in engines:
            await engine.stop()
