"""The sequencer: one writer that numbers, journals, fsyncs and applies commands in batches.

Clients ``submit`` commands; a single task takes whatever is queued (up to ``BATCH_SIZE_MAX``),
stamps the batch with the exchange time, appends it to the journal and fsyncs once (group
commit), and only then applies each entry and answers its client. So an acknowledged command is
always durable, and a crash loses only commands nobody was told about.

At start the newest valid snapshot is loaded and the journal after it replayed; snapshots are
written every ``SNAPSHOT_EVERY`` commands and on a clean stop. The periodic ones are written by a
follower process (``engine.follower``) that replays the journal beside the server, or, with
``snapshots="fork"`` and as the follower's fallback, by a forked child of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import gc
import getpass
import logging
import os
import queue
import signal
import struct
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine import commands as c
from engine.clock import Clock, WallClock
from engine.errors import CrowdexError
from engine.follower import TELL_INTERVAL_S, Follower
from engine.journal import (
    RECORD_PAYLOAD_MAX,
    ZERO_BYTES,
    FileJournal,
    Framed,
    JournalError,
    frame_payloads,
)
from engine.kernels import journal_io
from engine.machine import Reply, StateMachine
from engine.private import private_dir, tighten_files
from engine.replay import apply_blocks, apply_one_at_a_time
from engine.skips import (
    REASON_LENGTH_MAX,
    SKIPS_FILE,
    PoisonCommand,
    Skip,
    data_dir_lock,
    load_skips,
    lock_data_dir,
    record_skip,
)
from engine.snapshot import (
    CHUNKS_DIRECTORY,
    load_latest,
    prune,
    publish_snapshot,
    write_snapshot,
)
from engine.snapshot_upgrade import upgrade

log = logging.getLogger("crowdex.engine")

BATCH_SIZE_MAX = 4096
QUEUE_DEPTH_MAX = 65_536
SNAPSHOT_EVERY = 100_000
SNAPSHOTS_KEPT = 3
# Snapshots taken while the exchange runs are written by a forked child (see snapshot_fork);
# without fork (or with this off) by a thread, from copies taken between batches.
SNAPSHOT_IN_CHILD = hasattr(os, "fork")
# The writer child's scheduling niceness (19: the lowest priority; CROWDEX_SNAPSHOT_NICE sets
# another, for measuring). Low priority does not make the child's work cheaper, only later: on
# a busy machine a child at 19 waits for idle CPU while every page the exchange writes is
# copied (``crowdex bench snapshot --nice``).
SNAPSHOT_NICE = int(os.environ.get("CROWDEX_SNAPSHOT_NICE", "19"))
# The journal's own thread asks for a real-time priority (SCHED_FIFO, the lowest level): it
# sleeps in write and fsync nearly all the time, and when an fsync returns it should run at
# once, not wait for a time slice behind the busy event loop and the clients on a small machine.
# Best effort: without the privilege (CAP_SYS_NICE) it runs at normal priority.
JOURNAL_THREAD_REALTIME = os.environ.get("CROWDEX_JOURNAL_REALTIME", "1") != "0"
# Who writes the periodic snapshots: "follower", a process of its own that follows the journal
# (engine.follower), so the serving process does no snapshot work; or "fork", a child forked
# from the server at each snapshot (SNAPSHOT_IN_CHILD), whose shared pages make every page the
# loop writes meanwhile a copy-on-write fault. ``crowdex serve`` uses the default; the follower
# needs the parent-death signal (Linux) to be sure it ends with a killed server.
# CROWDEX_SNAPSHOTS=fork sets the other, for measuring.
SNAPSHOT_WRITERS = ("follower", "fork")
SNAPSHOT_WRITER_DEFAULT = os.environ.get("CROWDEX_SNAPSHOTS",
                                         "follower" if sys.platform == "linux" else "fork")
# The follower is started once this share of a snapshot's worth of commands has come since the
# newest snapshot: small venues and tests that never get near a snapshot never start one, and
# a busy venue's follower has the rest to start and catch up before it is due. It starts at
# its low priority (engine.follower.FOLLOWER_SCHED_IDLE), so on a busy machine that takes seconds:
# started at half the way, one fell two snapshots behind at 20k orders/s and was replaced by
# a fork (bench gateway while another session's tests ran).
FOLLOWER_START_SHARE = 0.1
# A follower this many snapshots' worth behind the newest snapshot (dead, wedged or too slow)
# is killed and the server forks the snapshot itself, so recovery stays bounded; unless it is
# moving (it said how far it got in the last FOLLOWER_STALLED_S): one behind in a burst, or
# starved at its low priority on a busy machine, catches up when the burst ends, and killing it
# would cost the server the fork it exists to spare. Past FOLLOWER_BEHIND_HARD_MAX_SNAPSHOTS,
# moving or not, it is replaced.
FOLLOWER_BEHIND_MAX_SNAPSHOTS = 2
FOLLOWER_BEHIND_HARD_MAX_SNAPSHOTS = 5
FOLLOWER_STALLED_S = 5.0
# A follower that died is started again after this pause, at most this many times a run; then
# the server writes its snapshots itself (forked) until it stops.
FOLLOWER_RESTART_DELAY_S = 1.0
FOLLOWER_RESTARTS_MAX = 5

BatchObserver = Callable[[int, float], None]
EventsObserver = Callable[[list], None]
# Told, once a batch is answered, how long its oldest command took from reaching the engine's
# queue to its reply (waiting for a batch, the journal's write and fsync, the apply).
LatencyObserver = Callable[[float], None]


# Told the outcome of a command submitted with ``submit_nowait``: its reply, or the error that
# stopped it (CrowdexError ``unavailable``). Called on the event loop, inside the sequencer.
ReplyCallback = Callable[[Reply | CrowdexError], None]


@dataclass(slots=True)
class _Pending:
    command: c.Command
    actor: int
    idempotency_key: str | None
    request_hash: str | None
    future: asyncio.Future | None  # an awaiting submitter's, or
    callback: ReplyCallback | None = None  # a pipelined one's (no future, no task)
    queued_at: float = field(default_factory=time.perf_counter)  # made as it is queued

    def answer(self, reply: Reply) -> None:
        callback = self.callback
        if callback is not None:  # _call inlined: once per command
            try:
                callback(reply)
            except Exception:  # a client's bug must not stop the exchange
                log.exception("a reply callback failed")
        elif not self.future.done():
            self.future.set_result(reply)

    def fail(self, error: CrowdexError) -> None:
        if self.callback is not None:
            self._call(error)
        elif not self.future.done():
            self.future.set_exception(error)

    def _call(self, outcome: Reply | CrowdexError) -> None:
        try:
            self.callback(outcome)
        except Exception:  # a client's bug must not stop the exchange
            log.exception("a reply callback failed")


class CommandQueue:
    """The pending commands between the gateway and the one task that journals them: bounded
    and FIFO like ``asyncio.Queue``, with the part of its interface the writer tasks use, for
    one consumer. Cheaper per command (the pipelined WebSocket path queues each order): no
    count of unfinished tasks, and the waiting consumer is woken directly."""

    __slots__ = ("_getter", "_items", "_maxsize", "_putters")

    def __init__(self, maxsize: int) -> None:
        self._items: deque = deque()
        self._maxsize = maxsize
        self._getter: asyncio.Future | None = None  # the consumer's, while the queue is empty
        self._putters: deque[asyncio.Future] = deque()  # producers waiting for room, in order

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: object) -> None:
        """Queue ``item``, or raise ``asyncio.QueueFull``."""
        items = self._items
        if len(items) >= self._maxsize:
            raise asyncio.QueueFull
        items.append(item)
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    async def put(self, item: object) -> None:
        """Queue ``item``, waiting while the queue is full (the longest waiting first)."""
        while len(self._items) >= self._maxsize:
            putter = asyncio.get_running_loop().create_future()
            self._putters.append(putter)
            try:
                await putter
            except BaseException:
                putter.cancel()
                with contextlib.suppress(ValueError):
                    self._putters.remove(putter)
                self._wake_putter()  # the room this one was given goes to the next
                raise
        self.put_nowait(item)

    def get_nowait(self) -> object:
        """The oldest item, or raise ``asyncio.QueueEmpty``."""
        if not self._items:
            raise asyncio.QueueEmpty
        item = self._items.popleft()
        if self._putters:
            self._wake_putter()
        return item

    async def get(self) -> object:
        """The oldest item, waiting for one while the queue is empty."""
        while not self._items:
            if self._getter is not None:
                raise RuntimeError("a CommandQueue has one consumer")
            getter = self._getter = asyncio.get_running_loop().create_future()
            try:
                await getter
            finally:
                if self._getter is getter:
                    self._getter = None
        return self.get_nowait()

    def _wake_putter(self) -> None:
        while self._putters and len(self._items) < self._maxsize:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return


@dataclass(slots=True)
class _Journaled:
    """A batch on its way through the journal: numbered, stamped, being written or written."""

    batch: list[_Pending]
    entries: list[c.Entry]
    payloads: list[bytes]  # the entries' journal bytes (StateMachine.apply_batch reads them)
    first_sequence: int
    started: float  # perf_counter when its write began
    done: asyncio.Future | None  # the journal write


class Engine:
    """Owns the state machine, the journal and the snapshots of one data directory."""

    def __init__(self, data_dir: Path, clock: Clock, *, sync: bool = True,
                 snapshot_every: int = SNAPSHOT_EVERY,
                 on_batch: BatchObserver | None = None,
                 on_events: EventsObserver | None = None,
                 on_fsync: Callable[[float], None] | None = None,
                 on_answered: LatencyObserver | None = None,
                 snapshots: str = "fork") -> None:
        if snapshots not in SNAPSHOT_WRITERS:
            raise ValueError(f"snapshots must be one of {SNAPSHOT_WRITERS}, got {snapshots!r}")
        self.data_dir = Path(data_dir)
        self.clock = clock
        self.machine = StateMachine()
        self.snapshot_dir = self.data_dir / "snapshots"
        self.snapshot_every = snapshot_every
        self._sync = sync
        self._on_batch = on_batch
        self.on_events = on_events
        self._on_fsync = on_fsync  # called from the journal's thread
        self._on_answered = on_answered
        self._journal: FileJournal | None = None
        self._writer: JournalThread | None = None  # the journal's one thread
        self._queue: CommandQueue | None = None
        self._task: asyncio.Task | None = None
        self._snapshot_started = 0  # the sequence the last snapshot begun was taken at
        self._snapshotted = -1  # the sequence of the last snapshot known to be written
        # Periodic snapshots written since the start (``snapshots_written``).
        self._written_by_followers = 0  # by followers stopped since
        self._written_by_forks = 0
        self._snapshot_task: asyncio.Task | None = None
        self.snapshots = snapshots  # who writes the periodic snapshots (SNAPSHOT_WRITERS)
        self._follower_start = int(snapshot_every * FOLLOWER_START_SHARE)
        self.follower: Follower | None = None  # the follower process's handle, once started
        self._following: asyncio.Task | None = None  # the task that talks to it
        self._follower_behind = False  # it fell behind: killed, and a fork took over
        self._next_sequence = 0  # the sequence the next journaled command gets (set by _run)
        self._last_stamp = 0  # the time stamped on the last journaled batch
        self._accepting = False
        self.failed: BaseException | None = None
        self._lock_fd: int | None = None  # the data dir's lock, held from recover to stop
        self.skips: dict[int, Skip] = {}  # journal entries the operator skipped (engine.skips)

    # ---- lifecycle ----------------------------------------------------------------------------

    def recover(self) -> int:
        """Load the newest snapshot and replay the journal after it; returns entries replayed."""
        # The data dir itself stays traversable: the embedded PostgreSQL in it runs as its own
        # user when the server runs as root. What is in it is private (journal/, snapshots/,
        # engine.lock, skipped.json); PostgreSQL keeps its own folder at 0700.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        private_dir(self.snapshot_dir)
        tighten_files(self.snapshot_dir)
        chunks = self.snapshot_dir / CHUNKS_DIRECTORY  # the snapshots' shared chunks
        if chunks.is_dir():
            private_dir(chunks)
            tighten_files(chunks)
        if self._lock_fd is None:  # one writer per journal (VenueRunning otherwise)
            self._lock_fd = lock_data_dir(self.data_dir)
        self.skips = load_skips(self.data_dir)
        self._load_snapshot()
        self._journal = FileJournal(self.data_dir / "journal", sync=self._sync,
                                    on_fsync=self._on_fsync)
        if self._journal.last_sequence < self.machine.last_sequence:
            raise RuntimeError(
                f"journal ends at {self._journal.last_sequence} but the snapshot is at "
                f"{self.machine.last_sequence}: the journal has lost acknowledged commands"
            )
        replayed = self._replay_journal()
        for skip in self.skips.values():
            log.warning("journal entry %d (%s) is skipped by the operator (%s, %s): %s",
                        skip.sequence, skip.command, skip.skipped_by, skip.skipped_at,
                        skip.reason)
        self.machine.outbox.clear()  # updates of the past: clients get fresh snapshots
        self.machine.warm_reads()
        # The cadence counts from the newest snapshot, not from this recovery: a venue restarted
        # more often than every ``snapshot_every`` commands must still snapshot (else its replay
        # grows with every restart). Past due, the first batch applied starts one.
        self._snapshot_started = self._snapshotted
        return replayed

    def _load_snapshot(self) -> None:
        """The newest valid snapshot into ``machine`` (left empty when there is none)."""
        snapshot = load_latest(self.snapshot_dir, upgrade=upgrade)  # a version 4 one too
        self._snapshotted = snapshot.sequence if snapshot is not None else 0
        if snapshot is not None:
            self.machine.load(snapshot.arrays, snapshot.meta)
            if self.machine.last_sequence != snapshot.sequence:
                raise RuntimeError(f"snapshot {snapshot.sequence} holds state of sequence "
                                   f"{self.machine.last_sequence}")

    def _replay_journal(self) -> int:
        """Apply the journal after the loaded state, in runs (``engine.replay``), quietly.

        If a run raises, its state is half changed: the state is loaded again and the journal
        replayed one entry at a time, which names the entry (``PoisonCommand``).
        """
        start = self.machine.last_sequence
        self.machine.quiet = True
        try:
            return apply_blocks(self.machine, self._journal.read_blocks(start), self.skips)
        except PoisonCommand:
            raise
        except Exception:
            log.warning("a run of journal entries after sequence %d failed to apply; replaying "
                        "one entry at a time to find which", start, exc_info=True)
        finally:
            self.machine.quiet = False
        wants = self.machine.__dict__.get("wants")  # the gateway's subscriber check, if set
        self.machine = StateMachine()
        if wants is not None:
            self.machine.wants = wants
        self._load_snapshot()
        # It applied this time if this returns (a failure that does not repeat).
        return apply_one_at_a_time(self.machine, self._journal.read(self.machine.last_sequence),
                                   self.skips)

    async def start(self) -> None:
        if self._journal is None:
            await asyncio.to_thread(self.recover)
        self._queue = CommandQueue(QUEUE_DEPTH_MAX)
        # Its own thread, so an append never waits behind other work in the loop's pool.
        self._writer = JournalThread(self._journal, asyncio.get_running_loop())
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
        self._writer.stop()
        self._writer = None
        await self._stop_follower()  # before the snapshot below: one writer of the directory
        if self._snapshot_task is not None:
            await self._snapshot_task
            self._snapshot_task = None
        if self.failed is None and self.machine.last_sequence != self._snapshotted:
            sequence, arrays, meta = snapshot_copy(self.machine)
            await asyncio.to_thread(self._write_snapshot, sequence, arrays, meta)
            await asyncio.to_thread(self._publish_snapshot, sequence)
            self._snapshotted = max(self._snapshotted, sequence)
        self.close_recovered()

    def close_recovered(self) -> None:
        """Close the journal and release the data dir (after ``stop``, or a bare ``recover``)."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

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

    def submit_nowait(self, command: c.Command, actor: int, callback: ReplyCallback) -> None:
        """Queue a command without waiting; ``callback`` gets its reply once it is durable.

        For pipelined clients (the WebSocket): no task and no future per command. Callbacks
        run in submission order, inside the sequencer: they must be quick and must not raise.
        A full queue is refused here (the callback is then never called).
        """
        if not self._accepting or self.failed is not None:
            raise CrowdexError("unavailable", "the exchange is not accepting commands")
        try:
            self._queue.put_nowait(_Pending(command, actor, None, None, None, callback))
        except asyncio.QueueFull:
            raise CrowdexError("unavailable", "the exchange is overloaded; retry") from None

    # ---- the writer ---------------------------------------------------------------------------

    async def _run(self) -> None:
        """Two stages in a pipeline: while one batch is written and fsynced (in a thread), the
        batch before it, already durable, is applied and answered here.

        The journal sees one append at a time, in sequence order; the state machine applies
        batches in the same order, each only after it is durable. Sequence numbers and time
        stamps are given when a batch goes to the journal (the machine never lets time go
        back, so a stamp taken before the previous batch is applied is harmless, and replay
        applies exactly what was journaled).
        """
        queue = self._queue
        stopping = False
        durable: _Journaled | None = None  # written, not yet applied
        writing: _Journaled | None = None  # being written
        self._next_sequence = self.machine.last_sequence + 1
        try:
            while True:
                if writing is None and durable is None:
                    if stopping:
                        return
                    first = await queue.get()
                    if first is None:
                        return
                    batch, stopping = self._take(queue, [first])
                    writing = self._start_write(batch)
                    continue
                if writing is not None:
                    await writing.done
                    durable, writing = writing, None
                    if not stopping:
                        batch, stopping = self._take(queue, [])
                        if batch:
                            writing = self._start_write(batch)
                self._apply(durable)
                durable = None
                self._maybe_snapshot()
        except Exception as error:  # the disk or a command's apply failed: fail-stop
            log.exception("a batch failed after sequence %d; the engine stops taking commands "
                          "(a command that cannot be applied is named at the next start, with "
                          "the way out: README, Operations)", self.machine.last_sequence)
            self.failed = error
            self._accepting = False
            for journaled in (durable, writing):
                if journaled is None:
                    continue
                if not journaled.done.done():
                    # Let the write finish before the journal is closed.
                    await asyncio.gather(journaled.done, return_exceptions=True)
                if journaled.done.exception() is None:
                    # Journaled but never applied here (a batch before it failed to apply):
                    # recovery replays it, so say so rather than claim it was not recorded.
                    message = ("the exchange stopped before answering; the command is recorded "
                               "and takes effect when the exchange restarts")
                else:
                    message = "the journal could not be written"
                for pending in journaled.batch:
                    pending.fail(CrowdexError("unavailable", message))
            while not queue.empty():
                pending = queue.get_nowait()
                if pending is not None:
                    pending.fail(CrowdexError("unavailable",
                                              "the exchange is not accepting commands"))

    @staticmethod
    def _take(queue: CommandQueue, batch: list[_Pending]) -> tuple[list[_Pending], bool]:
        """Whatever is queued now, up to ``BATCH_SIZE_MAX``; and whether the stop marker came."""
        while len(batch) < BATCH_SIZE_MAX and not queue.empty():
            item = queue.get_nowait()
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _start_write(self, batch: list[_Pending]) -> _Journaled | None:
        """Number and stamp a batch and start writing it to the journal (in a thread); None
        if none of its commands could be journaled (``_journalable``)."""
        time_us = self.clock.stamp(max(self.machine.now_us, self._last_stamp))
        entries = [c.Entry(time_us, p.actor, p.command, p.idempotency_key, p.request_hash)
                   for p in batch]
        try:
            payloads = [c.encode_entry(e) for e in entries]
        except Exception:  # a command that cannot be journaled: refuse it, not the batch
            batch, entries, payloads = _journalable(batch, entries)
        else:
            if max(map(len, payloads)) > RECORD_PAYLOAD_MAX:
                batch, entries, payloads = _journalable(batch, entries)
        if not batch:
            return None
        self._last_stamp = time_us
        first_sequence = self._next_sequence
        self._next_sequence += len(batch)
        # Framed here: the journal's thread only writes and fsyncs, with the interpreter lock
        # released, so it does not take the lock from the loop in turns (journal.frame).
        framed = frame_payloads(first_sequence, payloads)
        journaled = _Journaled(batch, entries, payloads, first_sequence, time.perf_counter(),
                               None)
        # Handed to the thread now (a to_thread task would start only when this task yields,
        # that is after the batch before it is applied: no overlap).
        journaled.done = self._writer.append(framed)
        return journaled

    def _apply(self, journaled: _Journaled) -> None:
        fsync_seconds = time.perf_counter() - journaled.started
        journaled.done.result()  # a failed write raises here: fail-stop
        machine = self.machine
        replies = machine.apply_batch(journaled.first_sequence, journaled.entries,
                                      payloads=journaled.payloads)
        for reply, pending in zip(replies, journaled.batch, strict=True):
            pending.answer(reply)
        if self._on_answered is not None:
            self._on_answered(time.perf_counter() - journaled.batch[0].queued_at)
        if machine.outbox:
            events, machine.outbox = machine.outbox, []
            if self.on_events is not None:
                self.on_events(events)
        if self._on_batch is not None:
            self._on_batch(len(journaled.batch), fsync_seconds)

    def _maybe_snapshot(self) -> None:
        sequence = self.machine.last_sequence
        if self.snapshots == "follower":
            since = sequence - self._snapshotted
            if since < self._follower_start:
                return
            if (since < FOLLOWER_BEHIND_MAX_SNAPSHOTS * self.snapshot_every
                    or self._follower_moving(since)):
                self._follower_behind = False
                if self._following is None:
                    self._following = asyncio.create_task(self._follow(),
                                                          name="crowdex-follower")
                return
            # Also a venue recovered that far past its newest snapshot: a fork now, the
            # follower once that snapshot is published.
            self._fall_back(since)  # the fork below: _snapshot_started is a fork's or older
        if sequence - self._snapshot_started >= self.snapshot_every and (
                self._snapshot_task is None or self._snapshot_task.done()):
            # Taken here, between batches. The journal is the record: a snapshot only shortens
            # recovery, so one that fails is logged, not a reason to stop taking commands. At
            # most one is in flight (a slow disk only spaces snapshots further apart).
            self._snapshot_started = sequence
            self._snapshot_task = asyncio.create_task(
                self._snapshot_written(sequence,
                                       snapshot_off_loop(self.machine, self._write_snapshot,
                                                         self._publish_snapshot)),
                name="crowdex-snapshot")

    def _follower_moving(self, since: int) -> bool:
        """Whether the follower, behind, still applies (``FOLLOWER_STALLED_S``) and is not
        past ``FOLLOWER_BEHIND_HARD_MAX_SNAPSHOTS``: then it is left to catch up."""
        follower = self.follower
        return (follower is not None and follower.alive()
                and since < FOLLOWER_BEHIND_HARD_MAX_SNAPSHOTS * self.snapshot_every
                and time.monotonic() - follower.progressed_at < FOLLOWER_STALLED_S)

    def _fall_back(self, since: int) -> None:
        """The follower is too far behind: kill it (its restart waits) and fork a snapshot."""
        if not self._follower_behind:
            self._follower_behind = True
            if self.follower is None:
                log.warning("the venue is %d commands past the newest snapshot (%d): this "
                            "snapshot is forked from the server, the follower starts after it",
                            since, self._snapshotted)
            else:
                log.warning("the snapshot follower (pid %d) is %d commands past the newest "
                            "snapshot (%d); it is restarted and this snapshot is forked from "
                            "the server", self.follower.pid, since, self._snapshotted)
        if self.follower is not None:
            self.follower.kill()  # now: two writers must not prune each other's files

    async def _follow(self) -> None:
        """Start the follower, tell it the durable sequence every ``TELL_INTERVAL_S``, hear
        its snapshots, and start it again if it dies (``FOLLOWER_RESTARTS_MAX``)."""
        restarts = 0
        while self.snapshots == "follower":
            follower = self.follower
            if follower is None or not follower.alive():
                if follower is not None:
                    self._heard(follower.snapshots())
                    restarts += 1
                    log.warning("the snapshot follower (pid %d) ended with status %s",
                                follower.pid, follower.process.returncode)
                    self._heard(await follower.stop())
                    self._written_by_followers += follower.written
                    self.follower = None
                    if restarts > FOLLOWER_RESTARTS_MAX:
                        log.error("the snapshot follower died %d times; the server writes its "
                                  "snapshots itself (forked) from now on", restarts)
                        self.snapshots = "fork"
                        return
                    await asyncio.sleep(FOLLOWER_RESTART_DELAY_S)
                # Not while a forked snapshot is written: each writer's prune would remove
                # the other's temporary file. Started after, it loads that snapshot.
                while self._snapshot_task is not None and not self._snapshot_task.done():
                    await asyncio.sleep(TELL_INTERVAL_S)
                if not self._start_follower():
                    return
                follower = self.follower
            # The applied sequence is durable: a batch is applied only once journaled.
            follower.tell(self.machine.last_sequence)
            self._heard(follower.snapshots())
            # A follower that stops moving while the venue is quiet is replaced now, not at
            # the next batch (the check is between batches here too: the loop's turn).
            self._maybe_snapshot()
            await asyncio.sleep(TELL_INTERVAL_S)

    def _start_follower(self) -> bool:
        follower = Follower(self.data_dir, self.snapshot_every, SNAPSHOTS_KEPT)
        try:
            follower.start()
        except OSError:
            log.exception("the snapshot follower could not be started; the server writes its "
                          "snapshots itself (forked)")
            self.snapshots = "fork"
            return False
        self.follower = follower
        return True

    def _heard(self, snapshotted: int) -> None:
        self._snapshotted = max(self._snapshotted, snapshotted)

    @property
    def snapshotted(self) -> int:
        """The sequence of the newest snapshot known to be written (-1: none yet known)."""
        return self._snapshotted

    @property
    def snapshots_written(self) -> dict[str, int]:
        """Periodic snapshots written since the start, by writer: the follower's as it
        reported them, and forked ones (/metrics; the benches tell a run one fell into)."""
        follower = self.follower.written if self.follower is not None else 0
        return {"follower": self._written_by_followers + follower,
                "fork": self._written_by_forks}

    async def _stop_follower(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
            self._following = None
        if self.follower is not None:
            self._heard(await self.follower.stop())
            self._written_by_followers += self.follower.written
            self.follower = None

    async def _snapshot_written(self, sequence: int, writing: Awaitable[bool]) -> None:
        if await writing:
            self._snapshotted = max(self._snapshotted, sequence)
            self._written_by_forks += 1

    def _write_snapshot(self, sequence: int, arrays: dict,
                        meta: Callable[[], bytes]) -> None:
        write_snapshot(self.snapshot_dir, sequence, arrays, meta(), publish=False,
                       shared_chunks=True)

    def _publish_snapshot(self, sequence: int) -> None:
        # In a thread: the caller marks the sequence written, on the loop, together with the
        # count of forked snapshots (set here, a reader could see the one without the other).
        publish_snapshot(self.snapshot_dir, sequence)
        prune(self.snapshot_dir, keep=SNAPSHOTS_KEPT)


# Writes the state after ``sequence`` from its arrays and a callable giving its meta bytes,
# not yet published (``write_snapshot(..., publish=False)``); may run in a forked child.
SnapshotWrite = Callable[[int, dict, Callable[[], bytes]], None]
# Publishes the snapshot of the sequence written (``publish_snapshot``): in the exchange's
# process, in a thread, once the write succeeded.
SnapshotPublish = Callable[[int], None]


def snapshot_off_loop(machine: StateMachine, write: SnapshotWrite,
                      publish: SnapshotPublish) -> Awaitable[bool]:
    """Start writing ``machine``'s state as it is now, without holding up the event loop; the
    returned awaitable says whether it was written and published (a failure is logged, never
    raised).

    Call it between batches: the state is captured before this returns, by a fork (a forked
    child, ``SNAPSHOT_IN_CHILD``, writes it) or by copies (a thread writes those). The child
    only writes: the fsync and the rename wait in a thread here, after it has exited, so it
    shares the exchange's pages no longer than the writing takes (``snapshot_fork``).
    """
    sequence = machine.last_sequence
    if SNAPSHOT_IN_CHILD:
        written = _reap_writer(sequence, snapshot_fork(machine, write))
    else:
        written = _write_in_thread(write, *snapshot_copy(machine))
    return _published(sequence, written, publish)


async def _published(sequence: int, written: Awaitable[bool],
                     publish: SnapshotPublish) -> bool:
    if not await written:
        return False
    try:
        await asyncio.to_thread(publish, sequence)
    except Exception:
        log.exception("the snapshot of sequence %d was written but could not be made durable",
                      sequence)
        return False
    return True


def snapshot_copy(machine: StateMachine) -> tuple[int, dict, Callable[[], bytes]]:
    """The state now: array copies, and the meta taken now but encoded by the writer."""
    arrays = {name: array.copy() for name, array in machine.arrays().items()}
    return machine.last_sequence, arrays, machine.meta_later()


def snapshot_fork(machine: StateMachine, write: SnapshotWrite) -> int:
    """Fork a child that writes the state as it is now and exits; return its pid.

    The child has a copy-on-write image of the state, so the exchange neither copies the
    state nor shares its interpreter with an encoder thread (which, holding the GIL in turns,
    slowed every batch while it ran). The fork itself takes a few ms; the cost is after it:
    while the child lives, the exchange's first write to each page it shares with the child
    is a fault and a 4 KiB copy (pages of Python objects count: a reference count changed is
    a write), and after it a cheaper fault that finds the page no longer shared. So the child
    is kept short: it writes the arrays from where they lie (``write_snapshot``), encodes
    the meta in one pass with the collector off, and leaves the fsync to the exchange
    (``snapshot_off_loop``; ``crowdex bench snapshot`` measures it).
    """
    sequence = machine.last_sequence
    return _fork_child(lambda: write(sequence, machine.arrays(), machine.meta),
                       f"the snapshot of sequence {sequence} could not be written")


def _fork_child(work: Callable[[], None], failure: str) -> int:
    """Fork a child that does ``work`` on the state as it is now, at the lowest priority, and
    exits (1 if ``work`` raised, after writing ``failure`` and the traceback to stderr);
    return its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    # The child lives only to work: the cyclic collector, which in the exchange walks every
    # object made since the last freeze (the accounts, references, subscriptions of a busy
    # venue), would run here over the meta's allocations and write to those objects' pages,
    # copying them and tripling the meta's time (measured: 1.4 s -> 0.34 s at 300k mixed
    # commands; ``crowdex bench snapshot --mix mixed``). It exits by os._exit: nothing to free.
    gc.disable()
    try:  # the child: only this thread exists; no event loop, no logging, no atexit
        signal.set_wakeup_fd(-1)  # a signal sent to the child must not wake the parent
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_DFL)
        os.nice(SNAPSHOT_NICE)  # background work: the exchange's thread comes first
        work()
        code = 0
    except BaseException:
        try:
            os.write(2, f"crowdex: {failure}:\n{traceback.format_exc()}".encode())
        except BaseException:
            pass
    finally:
        os._exit(code)


# The state hash at each sequence asked, while or since its child computed it (a hash is a
# function of the sequence: every change to the state is a journaled entry).
_hashes: weakref.WeakKeyDictionary[StateMachine, tuple[int, asyncio.Future[str]]] = (
    weakref.WeakKeyDictionary())


async def state_hash_off_loop(machine: StateMachine) -> str:
    """``machine.state_hash()`` of the state as it is now, computed by a forked child where
    there is fork (``_fork_child``, as snapshots are written), so the exchange goes on
    meanwhile: in place, the hash of a busy venue held the one thread for seconds (4.5 s at
    the 1M mixed journal's state: the meta's references sorted and encoded, every array
    hashed). The child is forked before this first yields to the loop: nothing is applied
    between the caller's reading the state and the child's copy of it. Calls for the same
    sequence share one child."""
    if not SNAPSHOT_IN_CHILD:
        return machine.state_hash()
    sequence = machine.last_sequence
    known = _hashes.get(machine)
    if known is None or known[0] != sequence or (known[1].done() and known[1].exception()):
        known = (sequence, _hash_in_child(machine))
        _hashes[machine] = known
    return await asyncio.shield(known[1])


async def hash_child_free(machine: StateMachine) -> None:
    """Wait until no child hashes ``machine``'s state: an ask reads the state after this, and
    so forks only once the child before it has exited. One child at a time: an operator's
    client polling a busy venue's state would otherwise keep a child per ask alive at once
    (each seconds of CPU, each a copy-on-write image of the state)."""
    known = _hashes.get(machine)
    while known is not None and not known[1].done():
        await asyncio.wait([known[1]])
        known = _hashes.get(machine)


def _hash_in_child(machine: StateMachine) -> asyncio.Future[str]:
    """Fork a child that hashes the state as it is now (here and now, before any await);
    the future of its hash."""
    sequence = machine.last_sequence
    readable, writable = os.pipe()
    try:
        pid = _fork_child(lambda: _write_fully(writable, machine.state_hash().encode()),
                          f"the state hash of sequence {sequence} could not be computed")
    except OSError:  # no fork now (memory): the hash here, as before
        os.close(readable)
        done = asyncio.get_running_loop().create_future()
        done.set_result(machine.state_hash())
        return done
    finally:
        os.close(writable)
    return asyncio.ensure_future(_child_hash(sequence, pid, readable))


async def _child_hash(sequence: int, pid: int, readable: int) -> str:
    try:
        digest = await asyncio.to_thread(_read_fully, readable)
    finally:
        os.close(readable)
    _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or len(digest) != HASH_HEX_LENGTH:
        raise RuntimeError(f"the state hash of sequence {sequence} could not be computed "
                           f"(its child exited with {os.waitstatus_to_exitcode(status)})")
    return digest.decode()


HASH_HEX_LENGTH = 64  # a SHA-256 digest in hex (``engine.snapshot.state_hash``)


def _write_fully(descriptor: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(descriptor, view):]


def _read_fully(descriptor: int) -> bytes:
    parts = []
    while part := os.read(descriptor, 4096):
        parts.append(part)
    return b"".join(parts)


async def _reap_writer(sequence: int, pid: int) -> bool:
    try:
        _, status = await asyncio.to_thread(os.waitpid, pid, 0)
    except ChildProcessError:  # reaped by someone else: its outcome is unknown
        log.warning("the snapshot writer (pid %d) was reaped elsewhere; the snapshot of "
                    "sequence %d is not counted as written", pid, sequence)
        return False
    if os.waitstatus_to_exitcode(status) != 0:
        log.error("the snapshot writer (pid %d) failed with status %d; the journal stays "
                  "the record", pid, os.waitstatus_to_exitcode(status))
        return False
    return True


async def _write_in_thread(write: SnapshotWrite, sequence: int, arrays: dict,
                           meta: Callable[[], bytes]) -> bool:
    try:
        await asyncio.to_thread(write, sequence, arrays, meta)
    except Exception:
        log.exception("the snapshot of sequence %d could not be written", sequence)
        return False
    return True


def _journalable(batch: list[_Pending], entries: list[c.Entry]
                 ) -> tuple[list[_Pending], list[c.Entry], list[bytes]]:
    """The commands of a batch that the journal can hold, with their entries and payloads;
    each other one is refused to its client (400 ``invalid_field``) and never numbered. The
    gateway's validation keeps such commands out (an integer past 64 bits cannot be encoded,
    a payload past ``RECORD_PAYLOAD_MAX`` is refused by the journal); were one to get past
    it, it must cost its own client an error, not stop the exchange for every client."""
    kept: tuple[list, list, list] = ([], [], [])
    for pending, entry in zip(batch, entries, strict=True):
        try:
            payload = c.encode_entry(entry)
            if len(payload) > RECORD_PAYLOAD_MAX:
                raise ValueError(f"{len(payload)} bytes, over {RECORD_PAYLOAD_MAX}")
        except Exception as error:
            log.warning("a %s command of account %d cannot be journaled (%s); refused",
                        type(entry.command).__name__, entry.actor, error)
            pending.fail(CrowdexError("invalid_field", "the command has a value the exchange "
                                      "cannot record (an integer past 64 bits, or too large)"))
            continue
        kept[0].append(pending)
        kept[1].append(entry)
        kept[2].append(payload)
    return kept


class JournalThread:
    """The journal's one thread: it appends the framed batches handed to it (the write and
    the fsync), one at a time and in order, and tells the event loop each outcome through the
    batch's future.

    On Linux the thread's loop is compiled and holds no interpreter lock
    (``engine.kernels.journal_io``): a batch is handed over as its address and length on a
    pipe, and its outcome comes back on another pipe that the event loop watches, so neither
    side waits for the other's lock. A Python thread took the lock back three times a batch
    (when handed the batch, after the write, after the fsync), each time waiting out the busy
    loop's switch interval: ~0.5 ms a batch on the path of every acknowledgement. What the
    compiled loop does not do (an append the journal must check or refuse) it hands back to
    the thread's Python, which calls ``append_framed`` as the Python thread does everywhere
    (``compiled=False``, CROWDEX_JOURNAL_COMPILED=0). A segment to start or roll stays in the
    compiled loop (``FileJournal.direct_target``): re-entering it from Python needs the
    interpreter lock back, which beside a busy event loop took seconds.

    Not a ``ThreadPoolExecutor``: the sequencer hands over a batch per group commit, hundreds
    a second at a moderate load, and the pool's way (a concurrent future with its condition, a
    work item, the worker count check, the idle semaphore, an asyncio future chained to the
    concurrent one by callbacks) cost ~60 us of CPU a batch more than a plain thread.
    """

    NAME = "crowdex-journal"

    def __init__(self, journal: FileJournal, loop: asyncio.AbstractEventLoop, *,
                 compiled: bool | None = None) -> None:
        self._journal = journal
        self._loop = loop
        # The Python side's batches, (framed, future); None: stop (the Python thread's).
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self.compiled = (JOURNAL_THREAD_COMPILED if compiled is None else compiled) and \
            callable(getattr(journal, "direct_target", None)) and _compiled_loop_loaded()
        self._inflight: tuple[Framed, asyncio.Future] | None = None  # the compiled loop's
        self.python_batches = 0  # batches the compiled loop handed to the thread's Python
        if self.compiled:
            self._requests, self._request_pipe = os.pipe()  # the thread reads, the loop writes
            self._outcomes, self._outcome_pipe = os.pipe()  # the loop reads, the thread writes
            os.set_blocking(self._outcomes, False)
            loop.add_reader(self._outcomes, self._on_outcome)
        self._thread = threading.Thread(target=self._run, name=self.NAME, daemon=True)
        self._thread.start()

    def append(self, framed: Framed) -> asyncio.Future:
        """Start appending ``framed``; the future is done once it is durable (or failed).
        One batch at a time: the next is handed over once this one's future is done."""
        done = self._loop.create_future()
        if not self.compiled:
            self._calls.put((framed, done))
            return done
        target = self._journal.direct_target(framed)
        if target is None:
            self.python_batches += 1
            self._calls.put((framed, done))
            self._request(journal_io.PYTHON)
        else:
            self._inflight = (framed, done)  # keeps the bytes alive while the thread writes
            data = framed.data
            descriptor, new_segment_directory, zeros = target
            self._request(journal_io.WRITE_SYNC if self._journal.sync else journal_io.WRITE,
                          descriptor, _address(data), len(data), new_segment_directory,
                          _ZEROS_ADDRESS if zeros else 0, zeros)
        return done

    def stop(self) -> None:
        """Let the batches handed over finish, then end the thread."""
        if self.compiled:
            self._request(journal_io.STOP)
        else:
            self._calls.put(None)
        self._thread.join()
        if self.compiled:
            self._loop.remove_reader(self._outcomes)
            for descriptor in (self._requests, self._request_pipe, self._outcomes,
                               self._outcome_pipe):
                os.close(descriptor)

    def _request(self, kind: int, descriptor: int = 0, address: int = 0, length: int = 0,
                 directory: int = -1, zeros_address: int = 0, zeros: int = 0) -> None:
        # One write of 56 bytes: atomic on a pipe, so the thread reads whole requests.
        os.write(self._request_pipe, _REQUEST.pack(kind, descriptor, address, length,
                                                   directory, zeros_address, zeros))

    def _on_outcome(self) -> None:
        """On the loop: the compiled loop wrote a batch (and fsynced it)."""
        try:
            data = os.read(self._outcomes, _OUTCOME.size)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            return
        if len(data) != _OUTCOME.size:  # one write of 24 bytes is atomic on a pipe
            self._failed(JournalError(f"a {len(data)}-byte outcome from the journal thread"))
            return
        _written, fsync_ns, _errno = _OUTCOME.unpack(data)
        framed, done = self._inflight
        self._inflight = None
        self._journal.appended(framed, fsync_ns / 1e9 if fsync_ns else None)
        _settle(done, None)

    def _failed(self, error: BaseException) -> None:
        """On the loop: the compiled loop's write or fsync failed (the journal refuses to
        go on, as after a failed ``append_framed``)."""
        framed, done = self._inflight
        self._inflight = None
        self._journal.failed(error)
        _settle(done, error)

    def _run(self) -> None:
        _journal_thread_priority()
        if self.compiled:
            self._run_compiled()
        else:
            self._run_python()

    def _run_python(self) -> None:
        take = self._calls.get
        while (item := take()) is not None:
            if not self._append_in_python(*item):
                return

    def _append_in_python(self, framed: Framed, done: asyncio.Future) -> bool:
        outcome = None
        try:
            self._journal.append_framed(framed)
        except BaseException as error:  # told to the loop: the sequencer fail-stops
            outcome = error
        return self._tell(_settle, done, outcome)

    def _run_compiled(self) -> None:
        try:
            self._serve_compiled()
        except BaseException as error:  # a bug here must stop the exchange, not hang it
            log.exception("the journal thread failed")
            if self._inflight is not None:
                self._tell(self._failed, error)

    def _serve_compiled(self) -> None:
        request = np.zeros(journal_io.REQUEST_WORDS, dtype=np.int64)
        outcome = np.zeros(journal_io.DONE_WORDS, dtype=np.int64)
        clock = np.zeros(2, dtype=np.int64)
        while True:
            why = journal_io.serve(self._requests, self._outcome_pipe, request, outcome, clock)
            if why == journal_io.STOP:
                return
            if why == journal_io.PYTHON:
                if not self._append_in_python(*self._calls.get()):
                    return
                continue
            errno_value = int(outcome[2])
            error = OSError(errno_value, os.strerror(errno_value))
            if why == journal_io.PIPE_FAILED:
                log.error("the journal thread's pipe failed (%s); it stops", error)
                if self._inflight is not None:
                    self._tell(self._failed, error)
                return
            if not self._tell(self._failed, error):
                return

    def _tell(self, callback: Callable[..., None], *args: object) -> bool:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: no one is waiting for it
            return False
        return True


_REQUEST = struct.Struct(f"<{journal_io.REQUEST_WORDS}q")
_OUTCOME = struct.Struct(f"<{journal_io.DONE_WORDS}q")
# The compiled journal loop calls the C library by name, as Linux's has them.
JOURNAL_THREAD_COMPILED = (sys.platform == "linux"
                           and os.environ.get("CROWDEX_JOURNAL_COMPILED", "1") != "0")


def _compiled_loop_loaded() -> bool:
    """Load (or compile) the compiled journal loop now, on the caller's thread; False, and
    the journal's thread stays Python, where it cannot be (numba's JIT off, a failed build)."""
    from numba import config

    if config.DISABLE_JIT:
        return False
    try:
        journal_io.serve.compile(journal_io.SERVE_SIGNATURE)
    except Exception:
        log.exception("the compiled journal loop could not be built; the journal's thread "
                      "runs in Python")
        return False
    return True


def _address(data: bytes) -> int:
    """Where ``data``'s bytes are (the bytes object is kept alive by its holder)."""
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


_ZEROS_ADDRESS = _address(ZERO_BYTES)  # the zeros a batch may be followed by (module lifetime)


def _settle(done: asyncio.Future, error: BaseException | None) -> None:
    """On the loop: the outcome of a journal append (``JournalThread``)."""
    if done.cancelled():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _journal_thread_priority() -> None:
    """Run in the journal's thread as it starts: ask for SCHED_FIFO (see
    ``JOURNAL_THREAD_REALTIME``); the scheduler call applies to the calling thread."""
    if not JOURNAL_THREAD_REALTIME or not hasattr(os, "sched_setscheduler"):
        return
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(os.sched_get_priority_min(
            os.SCHED_FIFO)))
    except OSError as error:
        log.info("the journal thread keeps a normal priority (%s)", error)


def replay_from_empty(data_dir: Path, upto: int | None = None) -> StateMachine:
    """Rebuild the state from the journal (up to ``upto``), ignoring snapshots; entries the
    operator skipped are skipped here too."""
    machine = StateMachine()
    skips = load_skips(Path(data_dir))
    journal = FileJournal(Path(data_dir) / "journal", sync=False, read_only=True)
    try:
        apply_one_at_a_time(machine, journal.read(0), skips, upto)
    finally:
        journal.close()
    return machine


# ---- crowdex skip ---------------------------------------------------------------------------
# Here beside the sequencer, not in engine.skips: it recovers an Engine, and engine.skips is
# what recovery itself uses, so it cannot import the sequencer back.


def skip_entry(data_dir: Path, sequence: int, reason: str) -> tuple[bool, str]:
    """``crowdex skip``: skip ``sequence`` if it is the entry recovery fails on. Returns
    whether the venue now recovers, and what to tell the operator."""
    data_dir = Path(data_dir)
    if not 0 < len(reason.strip()) <= REASON_LENGTH_MAX:
        return False, f"--reason must say why, in 1 to {REASON_LENGTH_MAX} characters"
    with data_dir_lock(data_dir):
        poison, recovered = _first_poison(data_dir)
        if poison is None:
            return False, (f"nothing to skip: the venue recovers to sequence {recovered}; "
                           f"sequence {sequence} applies without error")
        if poison.sequence != sequence:
            return False, (f"sequence {sequence} is not the entry that fails: recovery fails "
                           f"at sequence {poison.sequence} ({poison.command}: {poison.error})")
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        record_skip(data_dir, Skip(sequence, poison.entry_sha256, poison.command, poison.actor,
                                   poison.error, reason.strip(), now, _user()))
        after, recovered = _first_poison(data_dir)
    done = (f"skipped sequence {sequence} ({poison.command} by account {poison.actor}); "
            f"recorded in {data_dir / SKIPS_FILE}")
    if after is not None:
        return False, f"{done}; but recovery now fails at sequence {after.sequence}: {after}"
    return True, f"{done}; the venue recovers to sequence {recovered}"


def _first_poison(data_dir: Path) -> tuple[PoisonCommand | None, int]:
    engine = Engine(data_dir, WallClock())
    try:
        engine.recover()
    except PoisonCommand as poison:
        return poison, engine.machine.last_sequence
    finally:
        engine.close_recovered()
    return None, engine.machine.last_sequence


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
