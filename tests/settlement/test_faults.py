"""Crash safety: a real server is SIGKILLed at every fault point inside a batch, and PostgreSQL
terminates the batch's connection at several; after restarts and reruns every movement is in the
ledger exactly once, the ledger balances and reconciliation is clean."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from settlement.batch import FAULT_ENV, FAULT_POINTS
from tests.conftest import OPERATOR_KEY, ServerProcess

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}
TERMINATE_POINTS = ("after_batch_row", "mid_copy", "after_instructions", "before_commit")
KILLED = "killed"


def call(server: ServerProcess, method: str, path: str, body: dict | None = None,
         headers: dict | None = None) -> tuple[int, dict | str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or OPERATOR)})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            text = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        text, status = error.read().decode(), error.code
        error.close()
    except (ConnectionError, urllib.error.URLError):
        return 0, KILLED
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


class Venue:
    """A model of what the test did: the accounts, and each one's deposits minus withdrawals."""

    def __init__(self) -> None:
        self.keys: dict[int, str] = {}
        self.cash: dict[int, int] = {}
        self.movements = 0
        self.counter = 0

    def activity(self, server: ServerProcess) -> None:
        if not self.keys:
            for _ in range(3):
                status, body = call(server, "POST", "/v1/accounts",
                                    {"role": "investor", "name": "fault tester"})
                assert status == 201, body
                self.keys[body["account_id"]] = body["api_key"]
                self.cash[body["account_id"]] = 0
        for account_id, key in self.keys.items():
            self.counter += 1
            amount = 1_000 + self.counter
            status, body = call(server, "POST", f"/v1/accounts/{account_id}/deposits",
                                {"amount": amount, "reference": f"d{self.counter}"})
            assert status == 201, body
            self.cash[account_id] += amount
            self.movements += 1
            status, body = call(server, "POST", "/v1/me/withdrawals",
                                {"amount": 7, "reference": f"w{self.counter}"},
                                {"Authorization": f"Bearer {key}"})
            assert status == 201, body
            self.cash[account_id] -= 7
            self.movements += 1


async def check_ledger(url: str, venue: Venue) -> int:
    conn = await asyncpg.connect(url)
    try:
        legs = await conn.fetch("SELECT movement_id, count(*) AS n, sum(amount) AS total "
                                "FROM ledger_legs GROUP BY movement_id ORDER BY movement_id")
        assert [r["movement_id"] for r in legs] == list(range(1, venue.movements + 1))
        assert all(r["n"] == 2 and r["total"] == 0 for r in legs)
        balances = {r["account_id"]: r["amount"] for r in await conn.fetch(
            "SELECT account_id, amount FROM balances WHERE asset = 0 AND account_id > 0")}
        assert balances == venue.cash
        assert await conn.fetchval("SELECT sum(amount) FROM balances") == 0
        batches = await conn.fetch("SELECT batch_id FROM batches ORDER BY batch_id")
        assert [r[0] for r in batches] == list(range(1, len(batches) + 1))
        return len(batches)
    finally:
        await conn.close()


def run_round(tmp_path: Path, url: str, venue: Venue, fault: str | None,
              monkeypatch: pytest.MonkeyPatch) -> None:
    if fault:
        monkeypatch.setenv(FAULT_ENV, fault)
    else:
        monkeypatch.delenv(FAULT_ENV, raising=False)
    server = ServerProcess(tmp_path / "data", "--no-fsync", database_url=url)
    server.start()
    try:
        venue.activity(server)
        status, body = call(server, "POST", "/v1/settlement/batches")
        if fault is None:
            assert status == 201, body
        elif fault.startswith("terminate:"):
            assert status == 503, body
            # The same server, asked again, settles: the failed attempt left no trace.
            status, body = call(server, "POST", "/v1/settlement/batches")
            assert status == 201, body
        else:
            assert body == KILLED, (status, body)
            assert server.proc.wait(10) == -9
        if status == 201:
            status, rec = call(server, "GET", "/v1/settlement/reconciliation")
            assert status == 200 and rec["balanced"] and rec["mismatches"] == [], rec
    finally:
        server.kill()


def test_every_fault_point_leaves_each_movement_exactly_once(
    tmp_path: Path, pg_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = asyncio.run(pg_server.create_database())
    venue = Venue()
    faults = [*FAULT_POINTS, *(f"terminate:{p}" for p in TERMINATE_POINTS)]
    for fault in faults:
        run_round(tmp_path, url, venue, fault, monkeypatch)
    run_round(tmp_path, url, venue, None, monkeypatch)
    batches = asyncio.run(check_ledger(url, venue))
    # One batch per point that dies after COMMIT, one per terminate rerun, one at the end.
    after_commit = FAULT_POINTS[FAULT_POINTS.index("after_commit"):]
    assert batches == len(after_commit) + len(TERMINATE_POINTS) + 1
    print(f"fault points exercised: {len(faults)} "
          f"({len(FAULT_POINTS)} SIGKILL, {len(TERMINATE_POINTS)} pg_terminate_backend)")


@pytest.mark.parametrize("fault", ["mid_copy", "after_commit"])
def test_the_embedded_server_survives_a_kill_mid_batch(
    tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No --database-url: the killed server's embedded PostgreSQL is adopted on restart."""
    venue = Venue()
    monkeypatch.setenv(FAULT_ENV, fault)
    server = ServerProcess(tmp_path / "data", "--no-fsync")
    server.start()
    try:
        venue.activity(server)
        assert call(server, "POST", "/v1/settlement/batches")[1] == KILLED
        server.proc.wait(10)
        monkeypatch.delenv(FAULT_ENV)
        server.start()
        venue.activity(server)
        status, body = call(server, "POST", "/v1/settlement/batches")
        assert status == 201, body
        assert body["batch_id"] == (2 if fault == "after_commit" else 1)
        status, rec = call(server, "GET", "/v1/settlement/reconciliation")
        assert rec["balanced"] and rec["cash_total"] == sum(venue.cash.values())
    finally:
        server.stop()
