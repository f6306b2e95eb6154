"""``create_app``: the one factory that wires the gateway, the engine and PostgreSQL together.

Resources live in ``cleanup_ctx`` generators, opened in order at start and closed in reverse at
shutdown: PostgreSQL first (so the engine can settle into it), then the engine, whose stop drains
queued commands, writes a snapshot and closes the journal.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from engine import commands as c
from engine import offerings_commands as oc
from engine.clock import ManualClock, WallClock
from engine.errors import CrowdexError
from engine.markets import warm_up
from engine.replay import freeze_state
from engine.sequencer import SNAPSHOT_WRITER_DEFAULT, Engine
from gateway import http, keys, logs, openapi, ws
from gateway.config import Config
from gateway.hub import Hub
from gateway.idempotency import ResponseCache
from gateway.metrics import Metrics
from gateway.middleware import middlewares
from gateway.proxies import TrustedProxies
from gateway.ratelimit import RateLimiter
from gateway.routes import (
    Route,
    accounts,
    admin,
    boards,
    offers,
    orders,
    projects,
    settlement,
    system,
)

log = logging.getLogger("crowdex.gateway")

# API.md: bodies over 64 KiB get 413 payload_too_large.
CLIENT_MAX_SIZE = 64 * 1024
TICK_INTERVAL_S = 0.25
LOOP_LAG_INTERVAL_S = 0.01  # watch_loop_lag's timer: 100 wakeups a second

ROUTE_MODULES = (system, accounts, admin, boards, projects, settlement, orders, offers)


def all_routes() -> list[Route]:
    return [route for module in ROUTE_MODULES for route in module.ROUTES]


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    if not config.use_database:
        yield
        return
    from settlement.db import migrate, open_database

    if config.journal_urls and not config.database_url:
        log.warning("this replica settles into an embedded PostgreSQL of its own: replicas of "
                    "one venue must share one (--database-url) to settle at more than one")
    database = await open_database(config.data_dir, config.database_url)
    try:
        await migrate(database.pool)
        app[keys.DATABASE] = database
        # From here PostgreSQL may go away under a server that keeps trading: the supervisor
        # brings it back (restarting the embedded one); close() stops the supervisor first.
        database.supervise()
        yield
    finally:
        await database.close()


async def _bootstrap(engine: Engine, config: Config) -> None:
    """Create the venue on first start; rotate the operator key if a new one is given.

    Replicas of one venue (``engine.cluster``) started together on an empty stream may each
    find no venue and each append a Genesis. The stream orders them: the first creates the
    venue, the state machine refuses every later one and changes nothing. A replica whose
    Genesis was refused therefore prints no key (a generated one would not work; the winner
    printed the one that does), and a key given to it is put in force as at any later start.
    """
    machine = engine.machine
    if not machine.accounts:
        key = config.operator_key
        if key is None:
            from gateway.routes.accounts import new_api_key

            key = new_api_key()
        reply = await engine.submit(c.Genesis(http.key_hash(key), config.manual_clock,
                                              config.start_time_us, config.profile,
                                              c.RULES_VERSION))
        if reply.status == 201:
            if config.operator_key is None:
                print(f"crowdex: generated operator API key (shown once): {key}", flush=True)
            return
        if not machine.accounts:
            raise RuntimeError(f"the venue's Genesis was refused: {reply.body}")
        log.warning("another replica created the venue at the same moment; this replica's "
                    "Genesis changed nothing")
    if config.operator_key is not None:
        wanted = http.key_hash(config.operator_key)
        if machine.accounts[machine.operator_account_id].key_hash != wanted:
            await engine.submit(c.SetOperatorKey(wanted))


async def _apply_boards_file(engine: Engine, config: Config) -> None:
    """Journal the operator's boards file when it differs from the one in force (checked at
    start by the CLI; without ``--boards`` the rules in force stay)."""
    if config.board_rules is None:
        return
    if engine.machine.component("offerings").rules_file == config.board_rules:
        return
    reply = await engine.submit(oc.SetBoardRules(config.board_rules))
    if reply.status != 200:
        raise RuntimeError(f"the boards file was refused: {reply.body}")
    log.info("the boards file is in force for projects listed from now on")


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    metrics = app[keys.METRICS]
    hub = app[keys.HUB]
    engine = _make_engine(config, metrics, hub)
    # Views for channels nobody subscribes to are not even built.
    engine.machine.wants = hub.subscribers.__contains__
    engine.machine.wants_any = hub.wants_any  # a kind of update nobody listens to: none built
    await asyncio.to_thread(warm_up)  # compiled kernels loaded before the first order
    replayed = await _recover(engine)
    log.info("recovered sequence %d (%d journal entries replayed)",
             engine.machine.last_sequence, replayed)
    manual = engine.machine.manual_clock if engine.machine.accounts else config.manual_clock
    engine.clock = ManualClock() if manual else WallClock()
    await engine.start()
    app[keys.ENGINE] = engine
    app[keys.FATAL] = _fatal_on_stream_gap(engine)
    ticker = watcher = None
    try:
        await _bootstrap(engine, config)
        await _apply_boards_file(engine, config)
        if keys.DATABASE in app:
            from settlement.batch import catch_up_on_start

            # A batch that committed in PostgreSQL just before a crash is told to the engine.
            await catch_up_on_start(engine, app[keys.DATABASE].pool)
        if config.demo:
            await _seed_demo(engine)
        # The recovered state is long-lived: keep the garbage collector from rescanning it.
        freeze_state()
        ticker = asyncio.create_task(_tick_deadlines(engine), name="crowdex-deadlines")
        watcher = asyncio.create_task(watch_loop_lag(metrics.loop_lag.observe),
                                      name="crowdex-loop-lag")
        yield
    finally:
        for task in (ticker, watcher):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await engine.stop()


def _fatal_on_stream_gap(engine: Engine) -> asyncio.Future:
    """A future resolved with the error of a cluster replica the stream's purge overtook: it
    cannot go on, but a restart can (from a snapshot), so the server ends (``crowdex serve``
    exits 3) for its supervisor to start it again. Other failures keep the server up, answering
    503 and naming the entry, as on one machine: a restart would meet them again."""
    from engine.log.jetstream import StreamGapError

    fatal = asyncio.get_running_loop().create_future()

    def stopped(error: BaseException) -> None:
        if isinstance(error, StreamGapError) and not fatal.done():
            fatal.set_result(error)

    if hasattr(engine, "on_stopped"):
        engine.on_stopped = stopped
    return fatal


async def _seed_demo(engine: Engine) -> None:
    from gateway.demo import seed_demo

    demo_keys = await seed_demo(engine)  # None when the venue was seeded before
    for name, key in (demo_keys or {}).items():
        print(f"crowdex demo: {name}: {key}", flush=True)


async def _tick_deadlines(engine: Engine) -> None:
    """Send a journaled Tick when a deadline has passed and no other command carried the time.

    Every entry carries the exchange time and components act on it after each entry, so a
    busy venue needs no ticks; an idle one gets at most one per ``TICK_INTERVAL_S``.
    """
    while True:
        await asyncio.sleep(TICK_INTERVAL_S)
        due = engine.machine.next_deadline_us()
        if due is None or engine.clock.manual:
            continue
        if engine.clock.stamp(engine.machine.now_us) >= due:
            try:
                await engine.submit(c.Tick())
            except CrowdexError:
                return  # the engine is stopping


async def watch_loop_lag(observe: Callable[[float], None],
                         interval_s: float = LOOP_LAG_INTERVAL_S) -> None:
    """Observe how late the event loop runs a timer due every ``interval_s``: while something
    holds the loop (an apply, a long callback, the interpreter lock held by another thread,
    the process descheduled), every order and reply waits as long. Timed by ``perf_counter``:
    uvloop's own clock is the start of its iteration, in whole milliseconds."""
    while True:
        due = time.perf_counter() + interval_s
        await asyncio.sleep(interval_s)
        observe(max(0.0, time.perf_counter() - due))


async def _recover(engine: Engine) -> int:
    if inspect.iscoroutinefunction(engine.recover):
        return await engine.recover()  # a snapshot, then the stream (engine.cluster)
    return await asyncio.to_thread(engine.recover)


def _make_engine(config: Config, metrics: Metrics, hub: Hub) -> Engine:
    """The file journal's sequencer, or with ``--journal`` a replica on the JetStream stream.

    Replicas of one venue settle into one PostgreSQL given to each (``--database-url``); the
    ledger's lock (``settlement.lock``) has them take turns, so a batch is written once.
    """
    if config.journal_urls:
        from engine.cluster import ClusterEngine

        return ClusterEngine(config.journal_urls, config.data_dir, WallClock(),
                             stream=config.stream, replicas=config.stream_replicas,
                             keep_snapshots=config.stream_keep_snapshots,
                             on_batch=metrics.on_batch, on_fsync=metrics.sync.observe,
                             on_answered=metrics.command_latency.observe,
                             on_events=hub.publish_all)
    return Engine(config.data_dir, WallClock(), sync=config.journal_sync,
                  on_batch=metrics.on_batch, on_fsync=metrics.sync.observe,
                  on_answered=metrics.command_latency.observe, on_events=hub.publish_all,
                  snapshots=SNAPSHOT_WRITER_DEFAULT)


def create_app(config: Config) -> web.Application:
    _quiet_client_http_errors()
    trusted = TrustedProxies(config.trusted_proxies) if config.trusted_proxies else None
    app = web.Application(middlewares=middlewares(trusted), client_max_size=CLIENT_MAX_SIZE)
    app[keys.CONFIG] = config
    if trusted is not None:
        app[keys.TRUSTED_PROXIES] = trusted
    app[keys.METRICS] = Metrics()
    app[keys.RATE_LIMITER] = RateLimiter(config.rate_limit_per_second, config.rate_limit_burst)
    app[keys.RESPONSES] = ResponseCache()
    app[keys.HUB] = Hub()
    app[keys.HUB].flusher = ws.flush  # a batch's answers written as it ends
    routes = all_routes()
    app[keys.OPENAPI] = openapi.build(routes)
    for route in routes:
        app.router.add_route(route.method, route.path, route.handler)
    for module in ROUTE_MODULES:  # WebSocket channels and ops live beside their REST routes
        for kind, channel_kind in getattr(module, "CHANNELS", {}).items():
            app[keys.HUB].register_channel(kind, channel_kind)
        for op, handler in getattr(module, "WS_OPS", {}).items():
            app[keys.HUB].register_op(op, handler)
        for schema, handler in getattr(module, "WS_TYPED_OPS", {}).items():
            app[keys.HUB].register_typed_op(schema, handler)
    app.router.add_get("/v1/ws", ws.websocket)
    app.router.add_get("/static/{filename:.+}", system.static_file)
    app.cleanup_ctx.append(database_ctx)
    app.cleanup_ctx.append(engine_ctx)
    return app


class ClientHttpErrors(logging.Filter):
    """A request aiohttp's own HTTP parser refuses (a request line or header past its limits,
    bad syntax) is the client's error, answered 400 before the app runs, yet aiohttp logs it at
    ERROR with a traceback. It becomes one WARNING line: a client cannot fill the log with
    tracebacks, and a real error in aiohttp.server still shows as one."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError) and 400 <= error.code < 500:
            origin = record.getMessage().removeprefix("Error handling request")  # " from <ip>"
            record.msg = f"refused a malformed request{origin}: {error.code} {error.message}"
            record.args = ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def _quiet_client_http_errors() -> None:
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientHttpErrors) for f in server_log.filters):
        server_log.addFilter(ClientHttpErrors())


def configure_logging(fmt: str = "json", stream: TextIO | None = None) -> None:
    """The one place logging is set up: INFO and above as JSON lines on stderr (``text`` for a
    person at a terminal), each with the request id of the request that logged it, one access
    line per request, keys masked (gateway/logs.py). Called again, it replaces its handler."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == logs.HANDLER_NAME]:
        root.removeHandler(old)
    out = logs.handler(stream or sys.stderr, fmt)
    root.addHandler(out)
    root.setLevel(logging.INFO)
    logs.install(out, fmt)
