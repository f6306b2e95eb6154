"""A cluster replica's snapshots: where its start begins, and which snapshots it takes and shares.

API.md ("Running as a cluster"): a replica's data dir holds only a cache, and a replica started
on an empty data dir catches up from the snapshots kept in the cluster and the stream. A snapshot
of a replica is an ``engine.snapshot`` file that also records its stream position (the stream
message the state ends with), kept in the data dir's ``snapshots/`` and, for some, in the
cluster's object store (``engine.log.snapshot_store``).

**Where a start begins** (``load_start``). A state ending at stream message ``p`` can be
continued only while the stream still holds message ``p + 1``: its head may have been purged
(``--stream-keep-snapshots``). In order:

1. the newest local snapshot that can be continued (a restart);
2. else the newest snapshot in the cluster that can be, fetched into the data dir (an empty data
   dir, or one whose snapshots the stream has moved past). A snapshot that cannot be fetched or
   read is logged as an error and the next older one tried;
3. else the whole stream from empty, if it still starts at message 1;
4. else the replica cannot catch up: ``StreamGapError`` says so (the gateway exits).

Only snapshots of this stream are candidates. A stream deleted and made again under the same
name (another creation time, ``StreamLog.created``) leaves the old one's snapshots behind, in
the data dir and in the object store, whose positions point into another history: local ones
are moved aside, stored ones are never listed and the next prune deletes them.

**Which snapshots are taken.** Every replica takes a local one each time the venue sequence
crosses a multiple of ``every`` (a *cadence point*), at the end of the stream message that
crosses it: every replica sees the same messages in the same order, so all pick the same
point. It is written as on one machine (``engine.sequencer.snapshot_off_loop``: a forked child,
so the apply loop only pays for the fork). One replica uploads it: the one that appended the
crossing message, known by the message id's writer part. No other replica can be that writer
(writer ids are unique per process), so each cadence point is uploaded at most once without
any coordination; if that replica dies or is busy with the previous snapshot, the point is
simply missed and the next one taken.

**Limiting the stream** (``keep_in_stream`` = ``--stream-keep-snapshots N``, 0 = never). After
an upload, its uploader purges the stream's messages up to the position of the N-th newest
snapshot in the store: every snapshot of the N newest can still be continued, so a damaged
newest one still has N - 1 to fall back on. The store keeps ``max(SNAPSHOTS_KEPT, N)``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.log.jetstream import StreamError, StreamGapError, StreamLog
from engine.log.snapshot_store import SnapshotStore, SnapshotStoreError, StoredSnapshot
from engine.machine import StateMachine
from engine.private import private_dir, tighten_files
from engine.sequencer import SNAPSHOTS_KEPT, snapshot_copy, snapshot_off_loop
from engine.snapshot import (
    Snapshot,
    SnapshotCorruptError,
    prune,
    publish_snapshot,
    read_snapshot,
    snapshot_name,
    snapshot_paths,
    write_snapshot,
)
from engine.snapshot_upgrade import upgrade

log = logging.getLogger("crowdex.engine.cluster")

STREAM_FILE = "stream-created"  # the creation time of the stream the snapshots here are of


@dataclass(frozen=True, slots=True)
class StartPoint:
    """Where a replica's state came from before it read the stream's tail."""

    source: str  # "local", "cluster" or "empty"
    sequence: int  # the venue sequence of the loaded state
    position: int  # the stream message it ends with
    seconds: float  # finding, fetching and loading it


class ReplicaSnapshots:
    """The snapshots of one replica (``directory``) and of its venue's cluster (``store``)."""

    def __init__(self, directory: Path, every: int, keep_in_stream: int = 0) -> None:
        if every < 1 or keep_in_stream < 0:
            raise ValueError(f"every must be >= 1 and keep_in_stream >= 0, got {every}, "
                             f"{keep_in_stream}")
        self.directory = Path(directory)
        self.every = every
        self.keep_in_stream = keep_in_stream
        self.store: SnapshotStore | None = None
        self._log: StreamLog | None = None
        self._mark = 0  # the last cadence point (venue sequence // every) seen
        self.written = -1  # the sequence of the newest local snapshot known to be written
        self.forked = 0  # periodic snapshots written by forked children since the start
        self._task: asyncio.Task | None = None
        self.uploaded: list[StoredSnapshot] = []  # by this replica, this run

    async def open(self, stream_log: StreamLog) -> None:
        """Find or create the cluster's store, with as many copies as the stream has. Without
        it the replica still runs (from its local snapshots or the whole stream), shares none
        and never purges: logged."""
        private_dir(self.directory)
        tighten_files(self.directory)
        self._log = stream_log
        self._set_aside_other_streams(stream_log.created)
        try:
            self.store = await SnapshotStore.open(stream_log.js, stream_log.stream,
                                                  stream_log.replicas,
                                                  max_payload=stream_log.nc.max_payload,
                                                  stream_created=stream_log.created)
        except SnapshotStoreError as error:
            log.error("no snapshots in the cluster for stream %s (%s): this replica neither "
                      "fetches nor shares any, and never limits the stream", stream_log.stream,
                      error)
        if self.keep_in_stream and stream_log.purge_denied:
            log.warning("stream %s was created denying purges (by an older crowdex), which NATS "
                        "cannot lift: --stream-keep-snapshots %d is ignored and the stream keeps "
                        "every message", stream_log.stream, self.keep_in_stream)

    def _set_aside_other_streams(self, created: str) -> None:
        """Local snapshots of an earlier stream of the same name (deleted and made again:
        another creation time) are moved to ``earlier-stream-<time>/``, never loaded: their
        positions would point into another history. The data dir remembers the stream it
        caches (``STREAM_FILE``); one without it (an older crowdex) is taken as this stream's."""
        if not created:
            return
        marker = self.directory / STREAM_FILE
        known = marker.read_text().strip() if marker.exists() else ""
        if known == created:
            return
        if known:
            aside = self.directory / ("earlier-stream-" + re.sub(r"[^0-9A-Za-z]", "", known))
            paths = snapshot_paths(self.directory)
            aside.mkdir(mode=0o700, exist_ok=True)
            for path in paths:
                path.rename(aside / path.name)
            log.warning("the local snapshots (%d) were of an earlier stream %s (created %s; "
                        "this one %s): moved to %s, not used", len(paths), self._log.stream,
                        known, created, aside)
        part = marker.with_suffix(".tmp")
        part.write_text(created + "\n")
        part.replace(marker)

    # ---- where a start begins ------------------------------------------------------------------

    async def load_start(self, first: int, last: int,
                         fresh: Callable[[], StateMachine]) -> tuple[StateMachine, StartPoint]:
        """The state to read the stream after, given the stream's first and last message
        (module docstring); ``fresh`` makes an empty machine."""
        started = time.perf_counter()
        reach = max(first - 1, 0)  # a state ending at message p can be continued if p >= reach
        failed = 0
        for snapshot in self._local(reach, last):
            machine = _load(snapshot, fresh)
            if machine is not None:
                return machine, self._point("local", snapshot, started)
            failed += 1
        for stored in await self._stored(reach, last):
            snapshot = await self._fetch(stored)
            machine = _load(snapshot, fresh) if snapshot is not None else None
            if machine is not None:
                return machine, self._point("cluster", snapshot, started)
            failed += 1
            # Not left in the cache, where the next start would try it first.
            (self.directory / snapshot_name(stored.sequence)).unlink(missing_ok=True)
        if reach == 0:
            if failed:
                log.warning("none of the %d snapshots that could be continued was usable "
                            "(errors above): reading the whole stream %s", failed,
                            self._log.stream)
            return fresh(), StartPoint("empty", 0, 0, time.perf_counter() - started)
        raise StreamGapError(
            f"stream {self._log.stream} starts at message {first} (the ones before were purged "
            "after snapshots) and no snapshot here or in the cluster reaches it: this replica "
            "cannot catch up. Check the object store "
            f"{self.store.bucket if self.store else '(not available)'} and the log above.")

    def _point(self, source: str, snapshot: Snapshot, started: float) -> StartPoint:
        self._mark = snapshot.sequence // self.every
        self.written = snapshot.sequence  # a fetched one is in the data dir now too
        return StartPoint(source, snapshot.sequence, snapshot.position,
                          time.perf_counter() - started)

    def _local(self, reach: int, last: int) -> Iterator[Snapshot]:
        """The local snapshots that can be continued, newest first, each read when asked for."""
        for path in snapshot_paths(self.directory):
            try:
                snapshot = read_snapshot(path, upgrade=upgrade)
            except (OSError, SnapshotCorruptError) as error:
                log.warning("local snapshot %s skipped: %s", path, error)
                continue
            if snapshot.position == 0 and snapshot.sequence > 0:
                log.warning("local snapshot %s skipped: it has no stream position (written by "
                            "a venue on the file journal, or an older crowdex)", path)
            elif snapshot.position > last:
                log.warning("local snapshot %s skipped: it ends at stream message %d, past the "
                            "stream's last (%d): is it another venue's?", path,
                            snapshot.position, last)
            elif snapshot.position < reach:
                log.warning("local snapshot %s ends at stream message %d, but the stream now "
                            "starts at message %d (older ones were purged): starting from a "
                            "snapshot in the cluster instead", path, snapshot.position,
                            reach + 1)
                break  # older ones end even earlier
            else:
                yield snapshot

    async def _stored(self, reach: int, last: int) -> list[StoredSnapshot]:
        """The cluster's snapshots that can be continued, newest first."""
        if self.store is None:
            return []
        try:
            stored = await self.store.list()
        except SnapshotStoreError as error:
            log.error("the cluster's snapshots could not be listed (%s)", error)
            return []
        return [s for s in reversed(stored) if reach <= s.position <= last]

    async def _fetch(self, stored: StoredSnapshot) -> Snapshot | None:
        started = time.perf_counter()
        try:
            path = await self.store.download(stored, self.directory)
            snapshot = read_snapshot(path, expected_sequence=stored.sequence,
                                     upgrade=upgrade)
        except (SnapshotStoreError, SnapshotCorruptError, OSError) as error:
            log.error("the cluster's snapshot %s is unusable (%s): trying an older one, else "
                      "the whole stream", stored.name, error)
            return None
        if snapshot.position != stored.position:
            log.error("the cluster's snapshot %s says stream message %d inside: not used",
                      stored.name, snapshot.position)
            return None
        log.info("fetched the cluster's snapshot %s (%d bytes) in %.3f s", stored.name,
                 stored.size, time.perf_counter() - started)
        return snapshot

    # ---- taking them ---------------------------------------------------------------------------

    def reaches_cadence(self, last_sequence: int) -> bool:
        """Whether a message that leaves the venue at ``last_sequence`` crosses a cadence
        point not seen yet (``after_message`` then starts a snapshot)."""
        return last_sequence // self.every > self._mark

    def after_message(self, machine: StateMachine, position: int, msg_id: str) -> None:
        """Called after each stream message is applied: at a cadence point, start a snapshot
        (module docstring), uploaded if this replica appended the message."""
        mark = machine.last_sequence // self.every
        if mark <= self._mark:
            return
        self._mark = mark
        mine = self._log is not None and msg_id.rpartition(":")[0] == self._log.writer_id
        if self._task is not None and not self._task.done():
            # At most one in flight: this point is missed (by every replica, if it was ours).
            log.warning("snapshot at sequence %d skipped: the one before is still being "
                        "written%s", machine.last_sequence, " (and shared)" if mine else "")
            return
        self._task = asyncio.create_task(
            self._taken(machine.last_sequence, position,
                        snapshot_off_loop(machine, self._writer(position), self._publish),
                        mine),
            name="crowdex-cluster-snapshot")

    async def take(self, machine: StateMachine, position: int, *,
                   upload: bool) -> StoredSnapshot | None:
        """A snapshot now (between messages), waited for; returned if uploaded. For the
        clean stop (local only) and for tools that want one at a given point."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        sequence, arrays, meta = snapshot_copy(machine)
        try:
            await asyncio.to_thread(self._writer(position), sequence, arrays, meta)
            await asyncio.to_thread(self._publish, sequence)
        except Exception:
            log.exception("the snapshot of sequence %d could not be written", sequence)
            return None
        self.written = max(self.written, sequence)
        if not upload:
            return None
        return await self._upload(sequence, position)

    async def stop(self) -> None:
        """Wait for the snapshot in flight (its upload is bounded in time)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def _writer(self, position: int) -> Callable[[int, dict, Callable[[], bytes]], None]:
        def write(sequence: int, arrays: dict, meta: Callable[[], bytes]) -> None:
            write_snapshot(self.directory, sequence, arrays, meta(), position=position,
                           publish=False)

        return write

    def _publish(self, sequence: int) -> None:
        publish_snapshot(self.directory, sequence)
        prune(self.directory, keep=SNAPSHOTS_KEPT)

    async def _taken(self, sequence: int, position: int, writing: Awaitable[bool],
                     upload: bool) -> None:
        if not await writing:
            return
        self.written = max(self.written, sequence)
        self.forked += 1
        if upload:
            await self._upload(sequence, position)

    async def _upload(self, sequence: int, position: int) -> StoredSnapshot | None:
        """Share the local snapshot of ``sequence``, then tidy the store and the stream. A
        failure is logged: the stream stays the record."""
        if self.store is None:
            return None
        started = time.perf_counter()
        try:
            stored = await self.store.upload(self.directory / snapshot_name(sequence),
                                             sequence, position)
        except SnapshotStoreError as error:
            log.error("the snapshot of sequence %d was not shared (%s)", sequence, error)
            return None
        self.uploaded.append(stored)
        log.info("shared the snapshot of sequence %d (stream message %d, %d bytes) in %.3f s",
                 sequence, position, stored.size, time.perf_counter() - started)
        try:
            await self._limit()
        except (SnapshotStoreError, StreamError) as error:
            log.error("after sharing the snapshot of sequence %d, the store or the stream "
                      "could not be tidied (%s); the next snapshot tries again", sequence, error)
        return stored

    async def _limit(self) -> None:
        """Purge the stream up to the N-th newest snapshot (if asked), then prune the store."""
        keep = self.keep_in_stream
        if keep and not self._log.purge_denied:
            stored = await self.store.list()
            if len(stored) >= keep:
                floor = stored[-keep]
                first, _last = await self._log.bounds()
                if floor.position + 1 > first:
                    await self._log.purge_before(floor.position + 1)
                    log.info("stream %s purged before message %d: the %d newest snapshots "
                             "can each be continued", self._log.stream, floor.position + 1,
                             keep)
        await self.store.prune(max(SNAPSHOTS_KEPT, keep))


def _load(snapshot: Snapshot, fresh: Callable[[], StateMachine]) -> StateMachine | None:
    """A machine holding ``snapshot``'s state, or None (logged) if it cannot hold it."""
    machine = fresh()
    try:
        machine.load(snapshot.arrays, snapshot.meta)
    except Exception:  # a snapshot that checks out but does not load: never crash on it
        log.exception("snapshot %s could not be loaded: trying an older one",
                      snapshot.path)
        return None
    if machine.last_sequence != snapshot.sequence:
        log.error("snapshot %s holds the state of sequence %d, not %d: trying an older one",
                  snapshot.path, machine.last_sequence, snapshot.sequence)
        return None
    return machine
