"""Running a settlement batch, crash-safe and idempotent.

The flow, under the ledger's lock (``settlement.lock``: batches, reconciliations and start-up
catch-ups never overlap, in this process nor in any other replica of the venue sharing the ledger):

1. catch up: any batch PostgreSQL committed that the engine has not learned (a crash between
   COMMIT and the journal) is told to the engine first, with ``BatchCommitted``;
2. reconcile: a break that no operator has accepted refuses the batch (409);
3. ``PrepareSettlement`` (journaled) lets components post what belongs in this batch;
4. pick the cutoff (the last applied sequence) and copy the movements up to it, in one step of
   the event loop, so the copy is consistent;
5. write everything in ONE PostgreSQL transaction (``settlement.ledger.write_batch``); the batch
   id is the last committed one plus one, and its cutoff is UNIQUE;
6. tell the engine (``BatchCommitted``), which releases the movements.

A batch asked for with an ``Idempotency-Key`` records the key in the transaction of 5
(``settlement.requests``); after 1, a key seen before answers its first outcome instead.

A crash before 5 commits leaves no trace; after it, step 1 of the next run (or start-up) finishes
step 6. Nothing is written twice: the engine still holds a committed batch's movements only until
step 6, and step 1 always runs first.

On a cluster (``engine.cluster``) every engine command above is a message of the stream that
every replica applies, and 5 is done by the replica that was asked. Another replica asked at the
same moment waits for the ledger's lock, then learns the first one's batch in 1 (a retry with
the same ``Idempotency-Key`` answers it), and settles only what came after it. A replica killed
after 3 has written nothing; the next batch, at any replica, settles those movements. One
killed after 5's COMMIT has its batch learned by whichever replica next settles, reconciles or
starts (step 1). The replica that asked is the only one that writes, and the ledger's
constraints refuse a second copy of any movement whatever happens.

Fault injection for the crash tests: ``CROWDEX_FAULT=<point>`` SIGKILLs this process at that point,
``CROWDEX_FAULT=terminate:<point>`` has PostgreSQL terminate the batch's connection there (once).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import weakref
from dataclasses import dataclass
from typing import Any

import asyncpg

from engine.errors import CrowdexError
from settlement.commands import BatchCommitted, PrepareSettlement
from settlement.ledger import AccountRow, BatchPlan, write_batch
from settlement.lock import LedgerBusy, ledger_lock
from settlement.reconcile import Reconciliation, accept_breaks, reconcile, record_breaks
from settlement.requests import BatchRequest, earlier_outcome, record_refusal

log = logging.getLogger("crowdex.settlement")

FAULT_ENV = "CROWDEX_FAULT"
# Every point where a fault can be injected, in the order a batch passes them.
FAULT_POINTS = (
    "before_prepare", "after_prepare", "before_begin", "after_batch_row", "mid_copy",
    "after_copy", "after_instructions", "before_commit", "after_commit", "after_engine_ack",
    "before_answer",
)
_fired: set[str] = set()
TERMINATE_WAIT_POLLS = 500
# At start-up, how long to wait for the ledger's lock while another replica settles: catching up
# there is a courtesy (the next batch or reconciliation catches up first anyway), not worth
# keeping a replica from serving.
START_LOCK_WAIT_S = 5.0

# Errors meaning "the database went away", answered 503 (rerun the batch). Whether a COMMIT
# that failed this way took effect is unknown here; the next run's catch-up finds out.
CONNECTION_ERRORS = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
                     asyncpg.InternalClientError, asyncpg.AdminShutdownError, ConnectionError,
                     OSError)


async def fault(point: str, pool: asyncpg.Pool | None = None,
                conn: asyncpg.Connection | None = None) -> None:
    """Crash or cut the database connection at ``point`` if CROWDEX_FAULT asks for it."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    action, _, where = spec.rpartition(":")
    if where != point:
        return
    if action in ("", "kill"):
        log.warning("CROWDEX_FAULT: SIGKILL at %s", point)
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "terminate" and pool is not None and conn is not None and point not in _fired:
        _fired.add(point)
        log.warning("CROWDEX_FAULT: terminating the batch connection at %s", point)
        pid = conn.get_server_pid()
        await pool.execute("SELECT pg_terminate_backend($1)", pid)
        # Terminating only signals the backend: wait until it is gone, so what follows meets a
        # dead connection every time.
        for _ in range(TERMINATE_WAIT_POLLS):
            if not await pool.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                                       pid):
                break
            await asyncio.sleep(0.01)


@dataclass
class Progress:
    """What the running batch is doing, for ``GET /v1/settlement/progress`` and the CLI."""

    phase: str = "idle"
    batch_id: int | None = None
    legs_total: int = 0
    legs_written: int = 0
    started_monotonic: float = 0.0

    def view(self) -> dict:
        elapsed = time.monotonic() - self.started_monotonic if self.phase != "idle" else 0.0
        return {"phase": self.phase, "batch_id": self.batch_id, "legs_total": self.legs_total,
                "legs_written": self.legs_written, "elapsed_seconds": round(elapsed, 3)}


class Settlement:
    """Settlement of one engine into one ledger database."""

    def __init__(self, engine: Any, pool: asyncpg.Pool) -> None:
        self.engine = engine
        self.pool = pool
        self.lock = asyncio.Lock()
        self.progress = Progress()

    @property
    def component(self) -> Any:
        for component in self.engine.machine.components:
            if component.name == "settlement":
                return component
        raise RuntimeError("the settlement component is not registered")

    # ---- catching up ---------------------------------------------------------------------------

    async def catch_up(self, conn: asyncpg.Connection) -> int:
        """Tell the engine every committed batch it has not learned; returns how many.

        The caller holds the ledger's lock on ``conn``, so no batch commits meanwhile: once this
        returns, the engine knows exactly the ledger's batches.
        """
        known = self.component.state.last_batch_id
        rows = await conn.fetch(
            "SELECT batch_id, cutoff_sequence, movement_count, coalesce(last_movement_id, 0) AS"
            " last_movement_id FROM batches WHERE batch_id > $1 ORDER BY batch_id", known)
        ledger_last = await conn.fetchval("SELECT coalesce(max(batch_id), 0) FROM batches")
        if ledger_last < known:
            raise CrowdexError("reconciliation_break", f"the engine settled batch {known} but "
                               f"the ledger ends at batch {ledger_last} (replicas of one venue "
                               "must share one PostgreSQL: --database-url)")
        for row in rows:
            log.warning("catching up: the engine learns committed batch %d", row["batch_id"])
            await self._tell_engine(BatchCommitted(row["batch_id"], row["cutoff_sequence"],
                                                   row["movement_count"],
                                                   row["last_movement_id"]))
        return len(rows)

    async def _tell_engine(self, command: BatchCommitted) -> None:
        reply = await self.engine.submit(command)
        if reply.status != 200:
            raise RuntimeError(f"the engine refused committed batch {command.batch_id}: "
                               f"{reply.body}")

    # ---- reconciliation ------------------------------------------------------------------------

    async def reconciliation(self) -> Reconciliation:
        async with self.lock, ledger_lock(self.pool) as conn:
            await self.catch_up(conn)
            return await reconcile(self.engine.machine, conn)

    async def resolve(self, actor: int, note: str) -> dict:
        async with self.lock, ledger_lock(self.pool) as conn:
            await self.catch_up(conn)
            result = await reconcile(self.engine.machine, conn)
            accepted = await accept_breaks(conn, result, actor, note)
            return {"resolved": accepted, "reconciliation": result.view()}

    # ---- the batch -----------------------------------------------------------------------------

    async def run_batch(self, actor: int, request: BatchRequest | None = None) -> dict:
        """Settle every movement up to now; returns the committed batch's view.

        With ``request`` (an ``Idempotency-Key``), a key seen before answers what it got then:
        the batch it wrote, or its refusal; nothing new is written.
        """
        async with self.lock, ledger_lock(self.pool) as conn:
            try:
                return await self._run_batch(conn, actor, request)
            finally:
                self.progress = Progress()

    async def _run_batch(self, conn: asyncpg.Connection, actor: int,
                         request: BatchRequest | None) -> dict:
        """Steps 1 to 6 of the module docstring, on ``conn``, which holds the ledger's lock."""
        await self.catch_up(conn)
        if request is not None:
            earlier = await earlier_outcome(conn, request)
            if earlier is not None:
                from settlement.report import batch_view

                return await batch_view(conn, earlier)
        result = await reconcile(self.engine.machine, conn)
        blocking = result.blocking()
        if blocking:
            await record_breaks(conn, blocking)
            refusal = CrowdexError(
                "reconciliation_break", f"{len(blocking)} ledger balances differ from the "
                "engine's; see GET /v1/settlement/reconciliation and resolve with POST "
                "/v1/settlement/reconciliation/resolve")
            if request is not None:
                await record_refusal(conn, request, refusal)
            raise refusal
        await fault("before_prepare")
        reply = await self.engine.submit(PrepareSettlement(), actor)
        if reply.status != 200:
            raise RuntimeError(f"the engine refused to prepare settlement: {reply.body}")
        await fault("after_prepare")
        plan = await self._plan(conn)
        plan.request = request
        self.progress = Progress("writing", plan.batch_id, plan.leg_count, 0, time.monotonic())

        async def checkpoint(point: str) -> None:
            await fault(point, self.pool, conn)

        def on_legs(legs: int) -> None:
            self.progress.legs_written += legs

        # The connection holding the lock writes: a lost session loses both (settlement.lock).
        await write_batch(conn, plan, checkpoint, on_legs)
        self.progress.phase = "committed"
        await self._tell_engine(BatchCommitted(plan.batch_id, plan.cutoff_sequence,
                                               plan.movement_count, plan.last_movement_id or 0))
        await fault("after_engine_ack")
        from settlement.report import batch_view

        return await batch_view(conn, plan.batch_id)

    async def _plan(self, conn: asyncpg.Connection | asyncpg.Pool) -> BatchPlan:
        ledger_last = await conn.fetchval("SELECT coalesce(max(batch_id), 0) FROM batches")
        known_accounts = await conn.fetchval(
            "SELECT coalesce(max(account_id), 0) FROM accounts")
        if ledger_last != self.component.state.last_batch_id:
            raise RuntimeError(f"ledger at batch {ledger_last}, engine at "
                               f"{self.component.state.last_batch_id} after catching up")
        # From here to the end of this function nothing awaits: one consistent engine instant.
        machine = self.engine.machine
        cutoff = machine.last_sequence
        movements = machine.movements.upto(cutoff).copy()
        accounts = [
            AccountRow(info.account_id, info.role, info.name,
                       info.investor_class if info.role in ("investor", "issuer") else None,
                       info.created_us)
            for account_id, info in sorted(machine.accounts.items())
            if account_id > known_accounts
        ]
        return BatchPlan(ledger_last + 1, cutoff, machine.now_us, movements, accounts)


# One Settlement per engine (the app's), made on first use.
_services: weakref.WeakKeyDictionary[Any, Settlement] = weakref.WeakKeyDictionary()


def service_for(engine: Any, pool: asyncpg.Pool) -> Settlement:
    service = _services.get(engine)
    if service is None or service.pool is not pool:
        service = _services[engine] = Settlement(engine, pool)
    return service


async def catch_up_on_start(engine: Any, pool: asyncpg.Pool) -> int:
    """For app start-up: tell the engine the batches that committed before a crash.

    While another replica holds the ledger's lock, start-up goes on without: the next batch or
    reconciliation catches up first anyway.
    """
    service = service_for(engine, pool)
    try:
        async with service.lock, ledger_lock(pool, START_LOCK_WAIT_S) as conn:
            return await service.catch_up(conn)
    except LedgerBusy:
        log.warning("start-up did not wait for another replica's settlement batch; the next "
                    "batch or reconciliation here learns it")
        return 0
