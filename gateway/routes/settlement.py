"""Settlement: run batches, read them and their custodian reports, reconcile the ledger.

Every route needs PostgreSQL (``use_database``); without it they answer 503 ``unavailable``. A
lost database connection during a batch is also 503: nothing of that batch committed, or (if it
did) the next call catches the engine up first, so the operator simply runs it again.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from engine.errors import CrowdexError
from gateway import http, keys
from gateway import settlement_schemas as ss
from gateway.routes import Route, query_int
from settlement.batch import CONNECTION_ERRORS, Settlement, fault, service_for
from settlement.db import RETRY_AFTER_S
from settlement.history import MOVEMENTS_PAGE_MAX, pending, settled
from settlement.report import BATCHES_PAGE_MAX, batch_view, list_batches, report_csv
from settlement.requests import BatchRequest

log = logging.getLogger("crowdex.settlement")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# API.md: while PostgreSQL is away, settlement calls answer 503 `unavailable` with Retry-After.
RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_S)}
MOVEMENT_ID_END = 2**62  # above every movement id


def _service(request: web.Request) -> Settlement:
    database = request.app.get(keys.DATABASE)
    if database is None:
        raise CrowdexError("unavailable", "settlement needs PostgreSQL; this server runs "
                           "without a database")
    if not database.up:
        raise CrowdexError("unavailable", "the settlement database is down; the server is "
                           "bringing it back", headers=RETRY_AFTER)
    return service_for(request.app[keys.ENGINE], database.pool)


def _database_errors(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CONNECTION_ERRORS as error:
            log.warning("settlement database connection failed: %r", error)
            database = request.app.get(keys.DATABASE)
            if database is not None:
                database.report_failure()  # checked now, not at the next interval
            raise CrowdexError("unavailable", "the settlement database connection was lost; "
                               "nothing was half-written, run it again",
                               headers=RETRY_AFTER) from None
    return wrapped


@_database_errors
async def run_batch(request: web.Request) -> web.Response:
    if await request.read():
        await http.body(request, ss.RunBatchRequest)
    operator = http.require(request, "operator")
    key = request.get(keys.IDEMPOTENCY_KEY)
    batch_request = None
    if key is not None:  # durable: a retry after a restart answers the same batch
        batch_request = BatchRequest(operator.account_id, key, request[keys.REQUEST_HASH])
    view = await _service(request).run_batch(operator.account_id, batch_request)
    await fault("before_answer")
    return http.respond(request, 201, view)


@_database_errors
async def get_batches(request: web.Request) -> web.Response:
    limit = http.query_int(request, "limit", 50, 1, BATCHES_PAGE_MAX)
    http.require(request, "operator")
    service = _service(request)
    return http.respond(request, 200, {"batches": await list_batches(service.pool, limit)})


@_database_errors
async def get_batch(request: web.Request) -> web.Response:
    batch_id = http.path_id(request, "batch_id")
    http.require(request, "operator")
    return http.respond(request, 200, await batch_view(_service(request).pool, batch_id))


@_database_errors
async def get_report(request: web.Request) -> web.Response:
    batch_id = http.path_id(request, "batch_id")
    http.require(request, "operator")
    text = await report_csv(_service(request).pool, batch_id)
    return web.Response(status=200, text=text, content_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="settlement-batch-{batch_id}.csv"'})


@_database_errors
async def get_reconciliation(request: web.Request) -> web.Response:
    http.require(request, "operator")
    result = await _service(request).reconciliation()
    return http.respond(request, 200, result.view())


@_database_errors
async def resolve(request: web.Request) -> web.Response:
    req = await http.body(request, ss.ResolveRequest)
    operator = http.require(request, "operator")
    return http.respond(request, 200,
                        await _service(request).resolve(operator.account_id, req.note))


@_database_errors
async def my_movements(request: web.Request) -> web.Response:
    """The caller's movements, newest first: pending ones from the engine, then settled ones
    (trades aside: see ``settlement.history``) from the ledger."""
    limit = http.query_int(request, "limit", 100, 1, MOVEMENTS_PAGE_MAX)
    who = http.require(request)
    machine = request.app[keys.ENGINE].machine
    rows = pending(machine.movements.upto(machine.last_sequence), who.account_id, limit)
    database = request.app.get(keys.DATABASE)
    if len(rows) < limit and database is not None:
        if not database.up:
            raise CrowdexError("unavailable", "the settlement database is down; settled "
                               "movements are back when it is", headers=RETRY_AFTER)
        # Settled movements are older than every pending one: nothing is listed twice, even
        # when a batch commits meanwhile.
        before = rows[-1]["movement_id"] if rows else MOVEMENT_ID_END
        rows += await settled(database.pool, who.account_id, before, limit - len(rows))
    return http.respond(request, 200, rows)


async def get_progress(request: web.Request) -> web.Response:
    http.require(request, "operator")
    return http.respond(request, 200, _service(request).progress.view())


BATCH = "/v1/settlement/batches/{batch_id}"
ROUTES = [
    Route("POST", "/v1/settlement/batches", run_batch,
          "Settle every movement not yet settled, in one PostgreSQL transaction",
          ("operator",), ss.RunBatchRequest, ss.BatchView, 201, body_required=False),
    Route("GET", "/v1/settlement/batches", get_batches, "Committed batches, newest first",
          ("operator",), None, ss.BatchList,
          query=(query_int("limit", 1, BATCHES_PAGE_MAX, "At most this many (default 50)"),)),
    Route("GET", BATCH, get_batch, "One committed batch", ("operator",), None, ss.BatchView),
    Route("GET", BATCH + "/report", get_report,
          "Custodian instructions CSV: batch_id,account_id,asset,net_amount,legs",
          ("operator",), None, str, media_type="text/csv"),
    Route("GET", "/v1/settlement/reconciliation", get_reconciliation,
          "The ledger's balances against the engine's, account by account", ("operator",),
          None, ss.ReconciliationView),
    Route("POST", "/v1/settlement/reconciliation/resolve", resolve,
          "Accept the current breaks (with a note) so the next batch may run",
          ("operator",), ss.ResolveRequest, ss.ResolveResult),
    Route("GET", "/v1/me/movements", my_movements,
          "Your movements, newest first: pending (not yet settled) ones, then settled ones "
          "with their batch; settled trades are your orders' fills",
          ("investor", "issuer", "operator"), None,
          list[ss.Movement],
          query=(query_int("limit", 1, MOVEMENTS_PAGE_MAX, "At most this many (default 100)"),)),
    Route("GET", "/v1/settlement/progress", get_progress,
          "The running batch's phase and legs written", ("operator",), None, ss.Progress),
]
