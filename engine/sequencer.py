"""The sequencer: one writer that numbers, journals, fsyncs and applies commands in batches.

Clients ``submit`` commands; a single task takes whatever is queued (up to ``BATCH_SIZE_MAX``),
stamps the batch with the exchange time, appends it to the journal and fsyncs once (group
commit), and only then applies each entry and answers its client. So an acknowledged command is
always durable, and a crash loses only commands nobody was told about.

At start the newest valid snapshot is loaded and the journal after it replayed; snapshots are
written every ``SNAPSHOT_EVERY`` commands and on a clean stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine import commands as c
from engine.clock import Clock
from engine.errors import CrowdexError
from engine.journal import FileJournal
from engine.machine import Reply, StateMachine
from engine.snapshot import load_latest, prune, write_snapshot

log = logging.getLogger("crowdex.engine")

BATCH_SIZE_MAX = 4096
QUEUE_DEPTH_MAX = 65_536
SNAPSHOT_EVERY = 100_000
SNAPSHOTS_KEPT = 3

BatchObserver = Callable[[int, float], None]
EventsObserver = Callable[[list], None]


@dataclass(slots=True)
class _Pending:
    command: c.Command
    actor: int
    idempotency_key: str | None
    request_hash: str | None
    future: asyncio.Future


class Engine:
    """Owns the state machine, the journal and the snapshots of one data directory."""

    def __init__(self, data_dir: Path, clock: Clock, *, sync: bool = True,
                 snapshot_every: int = SNAPSHOT_EVERY,
                 on_batch: BatchObserver | None = None,
                 on_events: EventsObserver | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.machine = StateMachine()
        self.snapshot_dir = self.data_dir / "snapshots"
        self.snapshot_every = snapshot_every
        self._sync = sync
        self._on_batch = on_batch
        self.on_events = on_events
        self._journal: FileJournal | None = None
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._task: asyncio.Task | None = None
        self._since_snapshot = 0
        self._snapshot_task: asyncio.Task | None = None
        self._accepting = False
        self.failed: BaseException | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def recover(self) -> int:
        """Load the newest snapshot and replay the journal after it; returns entries replayed."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.snapshot_dir.mkdir(exist_ok=True)
        snapshot = load_latest(self.snapshot_dir)
        if snapshot is not None:
            self.machine.load(snapshot.arrays, snapshot.meta)
            if self.machine.last_sequence != snapshot.sequence:
                raise RuntimeError(f"snapshot {snapshot.sequence} holds state of sequence "
                                   f"{self.machine.last_sequence}")
        self._journal = FileJournal(self.data_dir / "journal", sync=self._sync)
        if self._journal.last_sequence < self.machine.last_sequence:
            raise RuntimeError(
                f"journal ends at {self._journal.last_sequence} but the snapshot is at "
                f"{self.machine.last_sequence}: the journal has lost acknowledged commands"
            )
        replayed = 0
        for sequence, payload in self._journal.read(self.machine.last_sequence):
            self.machine.apply(sequence, c.decode_entry(payload))
            replayed += 1
        self.machine.outbox.clear()  # updates of the past: clients get fresh snapshots
        return replayed

    async def start(self) -> None:
        if self._journal is None:
            await asyncio.to_thread(self.recover)
        self._queue = asyncio.Queue(QUEUE_DEPTH_MAX)
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="crowdex-sequencer")

    async def stop(self) -> None:
        """Stop taking commands, finish what is queued, snapshot, close the journal."""
        if self._task is None:
            return
        self._accepting = False
        await self._queue.put(None)
        await self._task
        self._task = None
        if self._snapshot_task is not None:
            await self._snapshot_task
            self._snapshot_task = None
        if self.failed is None and self._since_snapshot:
            await asyncio.to_thread(self._write_snapshot, *self._snapshot_copy())
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # ---- submitting ---------------------------------------------------------------------------

    async def submit(self, command: c.Command, actor: int = 0,
                     idempotency_key: str | None = None,
                     request_hash: str | None = None) -> Reply:
        """Queue a command; returns its reply once its batch is durable and applied."""
        if not self._accepting or self.failed is not None:
            raise CrowdexError("unavailable", "the exchange is not accepting commands")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(command, actor, idempotency_key, request_hash, future))
        return await future

    def submit_nowait(self, command: c.Command, actor: int = 0) -> asyncio.Future:
        """Queue a command without waiting; the future resolves to its reply once durable.

        For pipelined clients (the WebSocket): no task per command. A full queue is refused.
        """
        if not self._accepting or self.failed is not None:
            raise CrowdexError("unavailable", "the exchange is not accepting commands")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(command, actor, None, None, future))
        except asyncio.QueueFull:
            raise CrowdexError("unavailable", "the exchange is overloaded; retry") from None
        return future

    # ---- the writer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        queue = self._queue
        stopping = False
        while not stopping:
            first = await queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < BATCH_SIZE_MAX and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                await self._commit(batch)
            except Exception as error:  # the disk or a command's apply failed: fail-stop
                log.exception("a batch failed at sequence %d; the engine stops taking commands",
                              self.machine.last_sequence)
                self.failed = error
                self._accepting = False
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(
                            CrowdexError("unavailable", "the journal could not be written"))
                return

    async def _commit(self, batch: list[_Pending]) -> None:
        machine = self.machine
        time_us = self.clock.stamp(machine.now_us)
        first_sequence = machine.last_sequence + 1
        entries = [c.Entry(time_us, p.actor, p.command, p.idempotency_key, p.request_hash)
                   for p in batch]
        records = [(first_sequence + i, c.encode_entry(e)) for i, e in enumerate(entries)]
        started = time.perf_counter()
        await asyncio.to_thread(self._journal.append, records)
        fsync_seconds = time.perf_counter() - started
        replies = machine.apply_batch(first_sequence, entries)
        for reply, pending in zip(replies, batch, strict=True):
            if not pending.future.done():
                pending.future.set_result(reply)
        if machine.outbox:
            events, machine.outbox = machine.outbox, []
            if self.on_events is not None:
                self.on_events(events)
        if self._on_batch is not None:
            self._on_batch(len(batch), fsync_seconds)
        self._since_snapshot += len(batch)
        if self._since_snapshot >= self.snapshot_every and (
                self._snapshot_task is None or self._snapshot_task.done()):
            # The state is copied here, between batches; the file is written by a thread while
            # the next batches run (at most one snapshot in flight; a slow disk only spaces
            # snapshots further apart). The journal is the record: a snapshot only shortens
            # recovery, so one that fails is logged, not a reason to stop taking commands.
            self._since_snapshot = 0
            copy = self._snapshot_copy()
            self._snapshot_task = asyncio.create_task(
                asyncio.to_thread(self._write_snapshot_logged, *copy), name="crowdex-snapshot")

    def _snapshot_copy(self) -> tuple[int, dict, bytes]:
        arrays = {name: array.copy() for name, array in self.machine.arrays().items()}
        return self.machine.last_sequence, arrays, self.machine.meta()

    def _write_snapshot(self, sequence: int, arrays: dict, meta: bytes) -> None:
        write_snapshot(self.snapshot_dir, sequence, arrays, meta)
        prune(self.snapshot_dir, keep=SNAPSHOTS_KEPT)

    def _write_snapshot_logged(self, sequence: int, arrays: dict, meta: bytes) -> None:
        try:
            self._write_snapshot(sequence, arrays, meta)
        except Exception:
            log.exception("the snapshot of sequence %d could not be written", sequence)


def replay_from_empty(data_dir: Path, upto: int | None = None) -> StateMachine:
    """Rebuild the state from the journal (up to ``upto``), ignoring snapshots."""
    machine = StateMachine()
    journal = FileJournal(Path(data_dir) / "journal", sync=False)
    try:
        for sequence, payload in journal.read(0):
            if upto is not None and sequence > upto:
                break
            machine.apply(sequence, c.decode_entry(payload))
    finally:
        journal.close()
    return machine
