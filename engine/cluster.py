"""A replica of one venue whose journal is a NATS JetStream stream (API.md, "Running as a cluster").

``ClusterEngine`` offers the gateway what ``engine.sequencer.Engine`` does (``machine``,
``submit``, ``submit_nowait``, ``start``, ``stop``, ``failed``, ``skips``, ``clock``), but the
one writer of the venue is the stream, not this process. Every replica:

- **catches up before it accepts a command**: it loads a snapshot, its own or else the newest
  one kept in the cluster, and reads the stream after it (quietly, in runs through
  ``StateMachine.apply_batch``, consecutive messages together, each entry at its message's
  time: ``_apply_quietly``), so its first reply is given from the venue's current state.
  Snapshots (taken at the same cadence points by every replica, shared by one, and the stream
  limited behind them when asked) are ``engine.cluster_snapshots``'s;
- **appends** each group-commit batch of its own clients as one stream message
  (``StreamLog.append``, acknowledged once a quorum of NATS nodes stores it), remembering the
  message id against the waiting clients. One append is in flight at a time, so one client's
  commands keep their order in the stream; the next batch grows meanwhile, as behind an fsync;
- **applies every batch of the stream in stream order**, its own and the other replicas' alike,
  from one reader task. An entry's venue sequence is its position in the stream (counted over
  the entries of every message), so every replica numbers alike. When a batch carries one of
  this replica's message ids, the replies of that apply go to its waiting clients: no reply is
  ever routed between replicas. Market-data updates come from each replica's own apply.

**The exchange time** of a batch is a function of the stream alone, so every replica computes
the same deadlines. On a wall-clock venue it is the time the stream stored the message, clamped
never to go back (a new stream leader's clock may be behind the old one's): entries are
re-stamped with ``max(state time, stream time)`` before they are applied. A manual-clock venue
keeps its manual clock: only journaled ``AdvanceClock`` commands move it, so the stream's time
is ignored and each entry keeps the stamp its appender gave it, which is the appender's state
time. That state is a prefix of the stream up to some message before the one the batch lands
in, and state time never decreases along the stream, so the stamp is never later than the time
at the landing point, and ``StateMachine.apply`` (which takes the later of the two) applies it
at exactly the landing point's time on every replica. Which rule holds is read from the
venue's own state (its Genesis), never from a replica's flags, so replicas started with
different ``--clock`` still agree.

**Failures.** An append not acknowledged within ``StreamLog``'s retry window (no quorum, no
connection) answers its clients 503 ``unavailable`` with ``Retry-After``; the batch may still
be stored, in which case it is applied like any other and a retry with the same
``Idempotency-Key`` (at any replica) gets the first answer. While the stream has no quorum the
replica is *degraded*: appends give up after ``DEGRADED_APPEND_TIMEOUT_S`` instead of the full
window (prompt 503s, no hang), and the commands that queued behind an append that found no
quorum are answered 503 at once rather than tried again, so none waits out two appends;
``/healthz`` answers 503, reads are served from the local state, and a probe clears the state
once the stream answers again. A batch that cannot be applied, or
a stream with a hole, stops this replica (fail-stop, as the file journal's sequencer does).

**Genesis.** Replicas started together on an empty stream may each append a Genesis: the first
in the stream creates the venue and the state machine refuses the others, changing nothing, so
only the winner's replica prints a generated operator key (``gateway.app._bootstrap``).

**Settlement.** Replicas share one PostgreSQL. A batch's engine commands (``PrepareSettlement``,
``BatchCommitted``) are stream messages like any other, and the ledger is written only by the
replica that was asked, while it holds the ledger's lock (``settlement.batch``,
``settlement.lock``), so a batch asked of two replicas at once is written once.

**A replica the stream's purge overtakes** (``--stream-keep-snapshots``: it fell further behind
than that many snapshots) finds a hole at its reader and stops; restarted, it starts from a
snapshot. Not yet here: loading that snapshot in place, under the running replica's clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from engine import commands as c
from engine.clock import Clock, ManualClock
from engine.cluster_snapshots import ReplicaSnapshots, StartPoint
from engine.errors import CrowdexError
from engine.log.jetstream import (
    REPLICAS_DEFAULT,
    STREAM_DEFAULT,
    StreamBatch,
    StreamError,
    StreamGapError,
    StreamLog,
    StreamReader,
    StreamUnavailable,
)
from engine.machine import Reply, StateMachine
from engine.replay import apply_payloads, paused_gc
from engine.sequencer import (
    QUEUE_DEPTH_MAX,
    SNAPSHOT_EVERY,
    BatchObserver,
    CommandQueue,
    Engine,
    EventsObserver,
    LatencyObserver,
    ReplyCallback,
    _Pending,
)
from engine.skips import entry_sha256, load_skips, lock_data_dir

log = logging.getLogger("crowdex.engine.cluster")

# API.md: while the stream has no quorum writes answer 503 with Retry-After.
RETRY_AFTER_S = 1
# Once an append has failed for want of a quorum, later appends give up after this long rather
# than the stream log's full retry window (which rides out a leader election): clients get their
# 503 promptly while the outage lasts. The first failure still waits the full window, so an
# ordinary failover never answers 503.
DEGRADED_APPEND_TIMEOUT_S = 2.0
PROBE_INTERVAL_S = 1.0  # while degraded, how often a write (a Tick) tries the stream again
# One message's body must stay under the servers' max_payload (1 MiB by default): a batch of
# clients whose entries are larger goes out as several messages, each at most this share of it.
MESSAGE_PAYLOAD_SHARE = 0.5
STOP_DRAIN_TIMEOUT_S = 10.0  # at stop, how long appended batches may take to come back applied
# A start whose stream is purged past its snapshot while it reads the tail begins again (from a
# newer snapshot) this many times in all.
START_ATTEMPTS = 3


class ClusterEngine:
    """One replica: the state machine, fed by the stream, and this replica's clients' queue."""

    def __init__(self, servers: str | Sequence[str], data_dir: Path, clock: Clock, *,
                 stream: str = STREAM_DEFAULT, replicas: int = REPLICAS_DEFAULT,
                 snapshot_every: int = SNAPSHOT_EVERY, keep_snapshots: int = 0,
                 on_batch: BatchObserver | None = None,
                 on_events: EventsObserver | None = None,
                 on_fsync: Callable[[float], None] | None = None,
                 on_answered: LatencyObserver | None = None) -> None:
        self.servers = servers
        self.stream = stream
        self.replicas = replicas
        self.data_dir = Path(data_dir)
        self._clock = clock
        self.machine = StateMachine()
        self.snapshot_every = snapshot_every
        # keep_snapshots: --stream-keep-snapshots (0: the stream is never purged)
        self.snapshots = ReplicaSnapshots(self.data_dir / "snapshots", snapshot_every,
                                          keep_snapshots)
        self.start_point: StartPoint | None = None  # where the last recover began
        self.catch_up_seconds = 0.0  # then reading the stream after it
        self._on_batch = on_batch
        self.on_events = on_events
        self._on_fsync = on_fsync  # told each append's round trip (the quorum's "fsync")
        self._on_answered = on_answered
        self.skips = {}
        self.failed: BaseException | None = None
        # Told the error when the replica stops applying the stream (the gateway ends the
        # server on a StreamGapError: restarted, it starts from a snapshot).
        self.on_stopped: Callable[[BaseException], None] | None = None
        self.degraded_since: float | None = None  # monotonic, while appends find no quorum
        # Why, for /healthz: "no_quorum" (connected, nothing acknowledged), "no_connection"
        # (no NATS server reached) or "refused" (the stream answered but would not store).
        self.degraded_reason: str | None = None
        self.stream_position = 0  # the stream sequence of the last message applied
        self.log: StreamLog | None = None
        self._reader: StreamReader | None = None
        self._queue: CommandQueue | None = None
        self._waiting: dict[str, list[_Pending]] = {}  # message id -> its clients
        self._tasks: list[asyncio.Task] = []
        self._accepting = False
        self._lock_fd: int | None = None
        self._append_timeout_s = 0.0  # the stream log's full retry window (set at connect)

    @property
    def clock(self) -> Clock:
        """The venue's Genesis decides manual or wall, whatever this replica was started with."""
        if self.machine.accounts and self.machine.manual_clock:
            return ManualClock()
        return self._clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self._clock = clock

    @property
    def degraded(self) -> bool:
        return self.degraded_since is not None

    # As ``Engine``'s, for /metrics: a replica writes its snapshots from forked children.
    follower = None

    @property
    def snapshotted(self) -> int:
        """The sequence of this replica's newest local snapshot (-1: none yet known)."""
        return self.snapshots.written

    @property
    def snapshots_written(self) -> dict[str, int]:
        """Periodic snapshots this replica has written since it started (forked)."""
        return {"follower": 0, "fork": self.snapshots.forked}

    # ---- lifecycle ------------------------------------------------------------------------------

    async def recover(self) -> int:
        """Connect, load a snapshot (``engine.cluster_snapshots``: this replica's, else the
        cluster's), then apply the stream after it as it is now, quietly; returns the entries
        applied from the stream."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._lock_fd is None:  # one replica per data dir (VenueRunning otherwise)
            self._lock_fd = lock_data_dir(self.data_dir)
        self.skips = load_skips(self.data_dir)
        self.log = await StreamLog.connect(self.servers, stream=self.stream,
                                           replicas=self.replicas)
        self._append_timeout_s = self.log.append_timeout_s
        await self.snapshots.open(self.log)
        for attempt in range(1, START_ATTEMPTS + 1):
            first_message, upto = await self.log.bounds()
            # No snapshot that the stream's head reaches: StreamGapError, saying so.
            self.machine, self.start_point = await self.snapshots.load_start(
                first_message, upto, self._fresh_machine)
            self.stream_position = self.start_point.position
            self._reader = await self.log.reader(after=self.stream_position)
            try:
                return await self._catch_up(upto)
            except StreamGapError as error:
                await self._reader.close()
                if attempt == START_ATTEMPTS:
                    raise
                log.warning("stream %s lost its head while this replica read it (%s): starting "
                            "again from the newest snapshot", self.stream, error)
        raise AssertionError("unreachable")

    async def _catch_up(self, upto: int) -> int:
        """Apply the stream after the loaded state up to message ``upto``, quietly."""
        first = self.machine.last_sequence
        started = time.perf_counter()
        self.machine.quiet = True
        try:
            while self.stream_position < upto:
                batches = await self._reader.batches()
                with paused_gc():  # as a replay from a file does (engine.replay)
                    self._apply_quietly(batches)
        finally:
            self.machine.quiet = False
        self.machine.outbox.clear()  # updates of the past: clients get fresh snapshots
        self.machine.warm_reads()
        applied = self.machine.last_sequence - first
        self.catch_up_seconds = seconds = time.perf_counter() - started
        point = self.start_point
        log.info("caught up with stream %s: from %s (sequence %d, stream message %d, %.3f s), "
                 "then messages to %d, %d entries in %.3f s (%.0f entries/s)", self.stream,
                 "the whole stream" if point.source == "empty" else f"a {point.source} snapshot",
                 point.sequence, point.position, point.seconds, upto, applied, seconds,
                 applied / seconds if seconds else 0.0)
        return applied

    def _fresh_machine(self) -> StateMachine:
        """An empty machine that keeps the gateway's subscriber check (``wants``)."""
        machine = StateMachine()
        wants = self.machine.__dict__.get("wants")
        if wants is not None:
            machine.wants = wants
        return machine

    async def start(self) -> None:
        if self.log is None:
            await self.recover()
        self._queue = CommandQueue(QUEUE_DEPTH_MAX)
        self._accepting = True
        self._tasks = [asyncio.create_task(self._write(), name="crowdex-cluster-writer"),
                       asyncio.create_task(self._follow(), name="crowdex-cluster-reader"),
                       asyncio.create_task(self._probe(), name="crowdex-cluster-probe")]

    async def stop(self) -> None:
        """Stop taking commands, append what is queued, wait for it to come back applied."""
        if not self._tasks:
            await self._close()
            return
        self._accepting = False
        writer, follower, probe = self._tasks
        await self._queue.put(None)
        await writer
        deadline = time.monotonic() + STOP_DRAIN_TIMEOUT_S
        while self._waiting and not follower.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for task in (follower, probe):
            task.cancel()
        await asyncio.gather(follower, probe, return_exceptions=True)
        self._tasks = []
        self._fail_waiting("the replica stopped before its command came back from the stream; "
                           "it may be recorded: retry with the same Idempotency-Key")
        await self.snapshots.stop()
        if self.failed is None and self.machine.last_sequence != self.snapshots.written:
            # As on one machine: a clean stop leaves a local snapshot, so a restart reads
            # only what came after it. Not shared: every replica would share its own.
            await self.snapshots.take(self.machine, self.stream_position, upload=False)
        await self._close()

    async def _close(self) -> None:
        if self.log is not None:
            await self.log.close()
            self.log = None
            self._reader = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---- submitting -----------------------------------------------------------------------------

    async def submit(self, command: c.Command, actor: int = 0,
                     idempotency_key: str | None = None,
                     request_hash: str | None = None) -> Reply:
        """Queue a command; returns its reply once the stream holds it and it is applied here."""
        self._check_accepting()
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(command, actor, idempotency_key, request_hash, future))
        return await future

    def submit_nowait(self, command: c.Command, actor: int, callback: ReplyCallback) -> None:
        """As ``Engine.submit_nowait``: the callback gets the reply (or the refusal) later."""
        self._check_accepting()
        try:
            self._queue.put_nowait(_Pending(command, actor, None, None, None, callback))
        except asyncio.QueueFull:
            raise CrowdexError("unavailable", "the exchange is overloaded; retry",
                               headers={"Retry-After": str(RETRY_AFTER_S)}) from None

    def _check_accepting(self) -> None:
        if not self._accepting or self.failed is not None:
            raise CrowdexError("unavailable", "the exchange is not accepting commands")

    # ---- the writer: this replica's clients to the stream ---------------------------------------

    async def _write(self) -> None:
        queue = self._queue
        while True:
            first = await queue.get()
            if first is None:
                return
            batch, stopping = Engine._take(queue, [first])
            no_quorum = False
            for part in self._messages(batch):
                no_quorum = await self._append(part) or no_quorum
            if no_quorum:
                stopping = self._refuse_queued(queue) or stopping
            if stopping:
                return

    def _messages(self, batch: list[_Pending]) -> list[tuple[list[_Pending], list[bytes]]]:
        """The batch's encoded entries, cut into messages that fit the servers' max_payload."""
        # The stamp is the state's time: kept only by a manual-clock venue (module docstring).
        time_us = self.machine.now_us
        limit = int(self.log.nc.max_payload * MESSAGE_PAYLOAD_SHARE)
        messages: list[tuple[list[_Pending], list[bytes]]] = []
        pending: list[_Pending] = []
        payloads: list[bytes] = []
        size = 0
        for item in batch:
            payload = c.encode_entry(c.Entry(time_us, item.actor, item.command,
                                             item.idempotency_key, item.request_hash))
            if payloads and size + len(payload) > limit:
                messages.append((pending, payloads))
                pending, payloads, size = [], [], 0
            pending.append(item)
            payloads.append(payload)
            size += len(payload) + 8  # msgpack framing, generously
        messages.append((pending, payloads))
        return messages

    def _refuse_queued(self, queue: CommandQueue) -> bool:
        """Answer 503 to every command that queued while an append found no quorum, instead of
        trying them again: each would wait out another append's timeout, so a client could
        wait for two. What comes after them tries the stream again (as the probe does every
        second), so writes resume as soon as a quorum is back. Returns whether the stop marker
        was among them."""
        stopping = False
        for _ in range(queue.qsize()):
            pending = queue.get_nowait()
            if pending is None:
                stopping = True
            else:
                pending.fail(_no_quorum())
        return stopping

    async def _append(self, message: tuple[list[_Pending], list[bytes]]) -> bool:
        """Append one message and account for it; True when the stream had no quorum."""
        pending, payloads = message
        msg_id = self.log.new_msg_id()
        self._waiting[msg_id] = pending  # before the append: the reader may beat its ack
        started = time.perf_counter()
        if self.degraded:
            self.log.append_timeout_s = DEGRADED_APPEND_TIMEOUT_S
        try:
            await self.log.append(payloads, msg_id=msg_id)
        except StreamUnavailable as error:
            self._set_degraded(error, "no_quorum" if self.log.nc.is_connected
                               else "no_connection")
            self._fail(msg_id, _no_quorum())
            return True
        except (StreamError, ValueError) as error:
            log.error("stream %s refused batch %s: %s", self.stream, msg_id, error)
            if isinstance(error, StreamError):
                # The stream answered but would not store it (seen while the cluster loses its
                # quorum): writes fail, so /healthz says degraded until a write is stored.
                self._set_degraded(error, "refused")
            self._fail(msg_id, CrowdexError("unavailable", "the journal refused the batch",
                                            headers={"Retry-After": str(RETRY_AFTER_S)}))
            return False
        finally:
            self.log.append_timeout_s = self._append_timeout_s
        self._set_available()
        seconds = time.perf_counter() - started
        if self._on_fsync is not None:
            self._on_fsync(seconds)
        if self._on_batch is not None:
            self._on_batch(len(pending), seconds)
        return False

    def _fail(self, msg_id: str, error: CrowdexError) -> None:
        for pending in self._waiting.pop(msg_id, ()):
            pending.fail(error)

    def _set_degraded(self, error: BaseException, reason: str) -> None:
        self.degraded_reason = reason  # the latest failure says best why writes fail now
        if self.degraded_since is None:
            log.error("stream %s is unavailable (%s): writes answer 503 until it answers again",
                      self.stream, error)
            self.degraded_since = time.monotonic()

    def _set_available(self) -> None:
        if self.degraded_since is not None:
            log.warning("stream %s answers again after %.1f s", self.stream,
                        time.monotonic() - self.degraded_since)
            self.degraded_since = None
            self.degraded_reason = None

    async def _probe(self) -> None:
        """While degraded, try a real write every ``PROBE_INTERVAL_S``: a Tick, which only
        carries the time. /healthz leaves degraded once one is stored with its quorum (the
        append path calls ``_set_available``). Asking the stream's info was not enough: a lone
        node that had led the stream was seen answering with a leader and current peers."""
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            if self.degraded:
                try:
                    await self.submit(c.Tick())
                except CrowdexError:
                    pass  # still no quorum (or stopping): try again later

    # ---- the reader: the stream to the state machine --------------------------------------------

    async def _follow(self) -> None:
        try:
            while True:
                for batch in await self._reader.batches():
                    self._apply_live(batch)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a hole in the stream, a damaged message, a failed apply
            log.exception("replica stops at sequence %d (stream message %d): it takes no more "
                          "commands%s", self.machine.last_sequence, self.stream_position,
                          "; the stream was purged past it: restarted, it starts from a "
                          "snapshot" if isinstance(error, StreamGapError) else "")
            self.failed = error
            self._accepting = False
            self._fail_waiting("the replica stopped applying the stream; the command may be "
                               "recorded: retry at another replica with the same "
                               "Idempotency-Key")
            if self.on_stopped is not None:
                self.on_stopped(error)

    def _fail_waiting(self, message: str) -> None:
        waiting, self._waiting = self._waiting, {}
        for batch in waiting.values():
            for pending in batch:
                pending.fail(CrowdexError("unavailable", message,
                                          headers={"Retry-After": str(RETRY_AFTER_S)}))
        if self._queue is not None:
            while not self._queue.empty():
                pending = self._queue.get_nowait()
                if pending is not None:
                    pending.fail(CrowdexError("unavailable", message))

    def _apply_live(self, batch: StreamBatch) -> None:
        """Apply one message; answer its clients if this replica appended it."""
        pending = self._waiting.pop(batch.msg_id, None)
        machine = self.machine
        machine.quiet = pending is None  # nobody here waits for these replies
        try:
            replies = self._apply(batch)
        finally:
            machine.quiet = False
        if pending is not None:
            # A message of ours came back from the stream: it is stored with its quorum. Say so
            # before answering, as the append's acknowledgement may come after the message
            # (a client told 201 would otherwise still see /healthz degraded).
            self._set_available()
            for reply, item in zip(replies, pending, strict=True):
                item.answer(reply)
            if self._on_answered is not None:
                self._on_answered(time.perf_counter() - pending[0].queued_at)
        if machine.outbox:
            events, machine.outbox = machine.outbox, []
            if self.on_events is not None:
                self.on_events(events)
        self.snapshots.after_message(machine, self.stream_position, batch.msg_id)

    def _apply_quietly(self, batches: list[StreamBatch]) -> None:
        """Catching up: consecutive messages together where they can be (``_together``),
        each entry stamped with its message's time, so a replay's runs go on over them as
        over a journal's group commits; else one at a time."""
        at = 0
        while at < len(batches):
            end = self._together(batches, at)
            if end - at > 1:
                self._apply_messages(batches[at:end])
            else:
                self._apply(batches[at], catching_up=True)
            self.machine.outbox.clear()
            # Once for the group: no cadence point falls before its last message.
            self.snapshots.after_message(self.machine, self.stream_position,
                                         batches[end - 1].msg_id)
            at = end

    def _together(self, batches: list[StreamBatch], at: int) -> int:
        """Where a group of messages applied together from ``batches[at]`` ends: at the
        first that does not follow, holds a skipped entry, or comes before the venue exists,
        and just after the first that crosses a cadence point (every replica snapshots at
        the end of that very message)."""
        machine = self.machine
        if not machine.accounts:
            return at + 1
        position, sequence = self.stream_position, machine.last_sequence
        end = at
        for batch in batches[at:]:
            count = len(batch.payloads)
            if batch.sequence != position + 1 or (self.skips and any(
                    sequence + 1 + i in self.skips for i in range(count))):
                break
            position, sequence, end = batch.sequence, sequence + count, end + 1
            if self.snapshots.reaches_cadence(sequence):
                break
        return max(end, at + 1)

    def _apply_messages(self, batches: list[StreamBatch]) -> None:
        """Apply consecutive messages catching up (the venue exists, no entry skipped), as
        one: each entry stamped with its message's time as ``_apply`` stamps one (the venue's
        time then, or the message's if later), or its own under a manual clock."""
        machine = self.machine
        payloads = [payload for batch in batches for payload in batch.payloads]
        if not payloads:  # empty messages: nothing to apply
            self.stream_position = batches[-1].sequence
            return
        stamps = None
        if not machine.manual_clock:
            stamps, now = [], machine.now_us
            for batch in batches:
                now = max(now, batch.time_us)
                stamps.extend([now] * len(batch.payloads))
        apply_payloads(machine, machine.last_sequence + 1, payloads, stamps)
        self.stream_position = batches[-1].sequence

    def _apply(self, batch: StreamBatch, catching_up: bool = False) -> list[Reply]:
        """Number, stamp and apply one message's entries (module docstring: the time).
        Catching up, nobody reads replies nor updates: the entries are applied as a replay
        applies them (``engine.replay.apply_payloads``, in bulk where they are plain orders
        and cancels) and no reply is returned."""
        if batch.sequence != self.stream_position + 1:
            raise StreamError(f"stream message {batch.sequence} after {self.stream_position}")
        machine = self.machine
        first = machine.last_sequence + 1
        if (catching_up and machine.accounts  # the venue exists: its clock is known
                and not any(first + i in self.skips for i in range(len(batch.payloads)))):
            self._apply_messages([batch])
            return []
        entries = [c.decode_entry(payload) for payload in batch.payloads]
        if not _manual_clock(machine, entries):
            time_us = max(machine.now_us, batch.time_us)
            for entry in entries:
                entry.time_us = time_us
        if self.skips and any(first + i in self.skips for i in range(len(entries))):
            replies = self._apply_with_skips(first, entries, batch.payloads)
        else:
            # The payloads' stamped times are not read (apply_batch), only their commands.
            replies = machine.apply_batch(first, entries, payloads=batch.payloads)
        self.stream_position = batch.sequence
        return replies

    def _apply_with_skips(self, first: int, entries: list[c.Entry],
                          payloads: list[bytes]) -> list[Reply]:
        """One entry at a time, the operator's skips (``crowdex skip``) as skips."""
        replies = []
        for i, (entry, payload) in enumerate(zip(entries, payloads, strict=True)):
            skip = self.skips.get(first + i)
            if skip is None:
                replies.append(self.machine.apply(first + i, entry))
                continue
            if skip.entry_sha256 != entry_sha256(payload):
                raise RuntimeError(f"the skip of sequence {first + i} names another entry than "
                                   "the stream holds there")
            replies.append(self.machine.skip(first + i, entry, skip.reason))
        return replies


def _no_quorum() -> CrowdexError:
    return CrowdexError("unavailable", "the journal's stream has no quorum; the command may be "
                        "recorded: retry with the same Idempotency-Key",
                        headers={"Retry-After": str(RETRY_AFTER_S)})


def _manual_clock(machine: StateMachine, entries: list[c.Entry]) -> bool:
    """Whether the venue runs a manual clock: its Genesis says, whether applied or in this
    message (a venue's first message holds its Genesis)."""
    if machine.accounts:
        return machine.manual_clock
    command = entries[0].command if entries else None
    return isinstance(command, c.Genesis) and command.manual_clock

