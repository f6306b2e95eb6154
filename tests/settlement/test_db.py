"""The settlement database: embedded start, crash recovery, ownership, migrations."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import psutil
import pytest

import settlement.db as db_module
from settlement.db import (
    DatabaseLockedError,
    MigrationError,
    load_migrations,
    migrate,
    open_database,
)

REPO_ROOT = Path(db_module.__file__).resolve().parents[1]
OWNER_START_TIMEOUT_S = 60.0
PROCESS_EXIT_TIMEOUT_S = 10.0

# A crowdex stand-in that opens the embedded database, writes a row, prints the server's PID
# and waits to be killed.
OWNER_SCRIPT = """
import asyncio, sys
from pathlib import Path
from settlement.db import open_database

async def main():
    db = await open_database(Path(sys.argv[1]), None)
    await db.pool.execute("CREATE TABLE IF NOT EXISTS survivors (n int)")
    await db.pool.execute("INSERT INTO survivors VALUES (1)")
    print(db.server.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie, dead but unreaped, counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_dead(pid: int) -> None:
    deadline = time.monotonic() + PROCESS_EXIT_TIMEOUT_S
    while alive(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"pid {pid} still alive")
        time.sleep(0.05)


def start_owner(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    """Run OWNER_SCRIPT in a child process; return it and the PostgreSQL PID it reports."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    if not line.strip().isdigit():
        _, err = proc.communicate(timeout=OWNER_START_TIMEOUT_S)
        raise RuntimeError(f"owner process failed: {line!r} {err}")
    return proc, int(line)


def sigkill(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the child and reap it, as a crash would end crowdex."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=PROCESS_EXIT_TIMEOUT_S)


# --------------------------------------------------------------------------------------------
# The embedded server


async def test_cold_start_creates_the_crowdex_database_and_close_stops_the_server(
    tmp_path: Path,
) -> None:
    db = await open_database(tmp_path, None)
    try:
        assert db.embedded and db.server is not None
        assert await db.pool.fetchval("SELECT current_database()") == "crowdex"
        pid = db.server.pid
        assert alive(pid)
    finally:
        await db.close()
    assert not alive(pid)
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    await db.close()  # a second close is harmless


async def test_warm_restart_keeps_the_data(tmp_path: Path) -> None:
    first = await open_database(tmp_path, None)
    try:
        await first.pool.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)")
    finally:
        await first.close()
    second = await open_database(tmp_path, None)
    try:
        assert second.server is not None and second.server.pid != first.server.pid
        assert await second.pool.fetchval("SELECT n FROM kept") == 7
    finally:
        await second.close()


async def test_a_second_owner_in_the_same_process_is_refused(tmp_path: Path) -> None:
    db = await open_database(tmp_path, None)
    try:
        with pytest.raises(DatabaseLockedError, match="another crowdex process"):
            await open_database(tmp_path, None)
        assert await db.pool.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_a_server_left_running_by_a_killed_owner_is_adopted(tmp_path: Path) -> None:
    owner, pid = start_owner(tmp_path)
    try:
        with pytest.raises(DatabaseLockedError):
            await open_database(tmp_path, None)
    finally:
        sigkill(owner)
    assert alive(pid), "PostgreSQL should outlive its SIGKILLed owner"
    db = await open_database(tmp_path, None)
    try:
        assert db.server is not None and db.server.pid == pid
        assert await db.pool.fetchval("SELECT count(*) FROM survivors") == 1
    finally:
        await db.close()
    assert not alive(pid)


async def test_a_server_killed_with_its_owner_is_restarted(tmp_path: Path) -> None:
    owner, pid = start_owner(tmp_path)
    sigkill(owner)
    os.kill(pid, signal.SIGKILL)
    wait_dead(pid)
    assert (tmp_path / "postgres" / "postmaster.pid").exists()  # stale
    db = await open_database(tmp_path, None)
    try:
        assert db.server is not None and db.server.pid != pid
        assert await db.pool.fetchval("SELECT count(*) FROM survivors") == 1
    finally:
        await db.close()


def exited_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize(
    "stale_pid",
    [
        pytest.param(os.getpid, id="pid-reused-by-a-live-process"),
        pytest.param(exited_pid, id="pid-of-a-dead-process"),
    ],
)
async def test_a_stale_pid_file_is_handled(tmp_path: Path, stale_pid: Callable[[], int]) -> None:
    db = await open_database(tmp_path, None)
    await db.close()
    pgdata = (tmp_path / "postgres").resolve()
    pid = stale_pid()
    lines = [str(pid), str(pgdata), "1700000000", "5432", str(pgdata), "", "0 0", "ready"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    db = await open_database(tmp_path, None)
    try:
        assert db.server is not None and db.server.pid != pid
        assert await db.pool.fetchval("SELECT 1") == 1
    finally:
        await db.close()


async def test_a_database_url_is_used_as_given(tmp_path: Path, database_url: str) -> None:
    db = await open_database(tmp_path, database_url)
    try:
        assert not db.embedded and db.server is None and db.url == database_url
        assert await db.pool.fetchval("SELECT 1") == 1
    finally:
        await db.close()
    assert not (tmp_path / "postgres").exists()
    conn = await asyncpg.connect(database_url)  # closing did not stop someone else's server
    await conn.close()


# --------------------------------------------------------------------------------------------
# Migrations


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


async def applied_versions(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [row["version"] for row in rows]


def test_the_packaged_migrations_start_with_accounts() -> None:
    assert load_migrations()[0].version == "0001_accounts"


async def test_migrations_apply_once(pool: asyncpg.Pool) -> None:
    known = [m.version for m in load_migrations()]
    assert await migrate(pool) == known
    assert await migrate(pool) == []
    assert await applied_versions(pool) == known
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0


async def test_concurrent_migrations_apply_once(pool: asyncpg.Pool, database_url: str) -> None:
    other = await db_module.create_pool(database_url)  # as a second process would
    try:
        results = await asyncio.gather(migrate(pool), migrate(other), migrate(pool))
    finally:
        await other.close()
    known = [m.version for m in load_migrations()]
    assert sorted(v for result in results for v in result) == known


async def test_a_migration_unknown_to_the_code_is_refused(pool: asyncpg.Pool) -> None:
    await migrate(pool)
    await pool.execute("INSERT INTO schema_migrations (version) VALUES ('9999_from_the_future')")
    with pytest.raises(MigrationError, match="9999_from_the_future"):
        await migrate(pool)


async def test_a_failing_migration_changes_nothing(pool: asyncpg.Pool, tmp_path: Path) -> None:
    good = "CREATE TABLE a (x int);"
    bad = "CREATE TABLE b (x int); SELECT no_such_function();"
    directory = write_migrations(tmp_path, {"0001_a.sql": good, "0002_b.sql": bad})
    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate(pool, directory)
    assert await applied_versions(pool) == ["0001_a"]
    assert await pool.fetchval("SELECT to_regclass('b')") is None
    write_migrations(tmp_path, {"0002_b.sql": "CREATE TABLE b (x int);"})
    assert await migrate(pool, directory) == ["0002_b"]


async def test_a_migration_older_than_the_applied_ones_is_refused(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    files = {"0001_a.sql": "SELECT 1;", "0003_c.sql": "SELECT 1;"}
    directory = write_migrations(tmp_path, files)
    assert await migrate(pool, directory) == ["0001_a", "0003_c"]
    write_migrations(tmp_path, {"0002_b.sql": "SELECT 1;"})
    with pytest.raises(MigrationError, match="out of order"):
        await migrate(pool, directory)


@pytest.mark.parametrize(
    "names",
    [["1_a.sql"], ["0001-a.sql"], ["0001_A.sql"], ["00001_a.sql"], ["0001_a.sql", "0001_b.sql"]],
)
def test_badly_named_migrations_are_refused(tmp_path: Path, names: list[str]) -> None:
    write_migrations(tmp_path, dict.fromkeys(names, "SELECT 1;"))
    with pytest.raises(MigrationError):
        load_migrations(tmp_path)


# --------------------------------------------------------------------------------------------
# The accounts table

NOW = datetime(2026, 1, 1, tzinfo=UTC)
GOOD_ACCOUNT = {
    "account_id": 1,
    "role": "investor",
    "name": "Li Wei",
    "investor_class": "retail",
    "created_at": NOW,
    "created_sequence": 1,
}


async def insert_account(pool: asyncpg.Pool, row: dict[str, object]) -> None:
    columns = ", ".join(row)
    params = ", ".join(f"${i}" for i in range(1, len(row) + 1))
    await pool.execute(f"INSERT INTO accounts ({columns}) VALUES ({params})", *row.values())


@pytest.mark.parametrize("role", ["investor", "issuer", "operator", "fee"])
async def test_accounts_accept_every_role(pool: asyncpg.Pool, role: str) -> None:
    await migrate(pool)
    await insert_account(pool, {**GOOD_ACCOUNT, "role": role, "investor_class": None})
    assert await pool.fetchval("SELECT role FROM accounts") == role


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"account_id": 0}, asyncpg.CheckViolationError),
        ({"account_id": -1}, asyncpg.CheckViolationError),
        ({"role": "admin"}, asyncpg.CheckViolationError),
        ({"role": None}, asyncpg.NotNullViolationError),
        ({"name": None}, asyncpg.NotNullViolationError),
        ({"investor_class": "whale"}, asyncpg.CheckViolationError),
        ({"created_at": None}, asyncpg.NotNullViolationError),
        ({"created_sequence": None}, asyncpg.NotNullViolationError),
        ({"created_sequence": -1}, asyncpg.CheckViolationError),
    ],
)
async def test_accounts_refuse_bad_rows(
    pool: asyncpg.Pool, change: dict[str, object], error: type[Exception]
) -> None:
    await migrate(pool)
    with pytest.raises(error):
        await insert_account(pool, {**GOOD_ACCOUNT, **change})


async def test_account_ids_are_unique(pool: asyncpg.Pool) -> None:
    await migrate(pool)
    await insert_account(pool, GOOD_ACCOUNT)
    with pytest.raises(asyncpg.UniqueViolationError):
        await insert_account(pool, {**GOOD_ACCOUNT, "created_sequence": 2})
