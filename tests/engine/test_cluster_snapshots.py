"""Snapshots of a cluster venue: kept in the cluster's object store, so a replica on an empty data
dir starts from the newest one plus the stream's tail, and the stream can be limited behind them
(API.md, "Running as a cluster"; ``engine.cluster_snapshots``).

Replicas here are ``ClusterEngine`` objects in this process against a real 3-node NATS cluster
on loopback (started once for the module from the installed ``nats-server``), with a snapshot
every ``EVERY`` entries; one test runs a real ``crowdex serve`` replica. Each test has its own
stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path

import pytest

from engine import cluster_snapshots, sequencer
from engine import commands as c
from engine.clock import Clock, ManualClock, WallClock
from engine.cluster import ClusterEngine
from engine.commands import decode_entry
from engine.errors import CrowdexError
from engine.journal import FileJournal
from engine.log.jetstream import StreamGapError, StreamLog
from engine.log.natscluster import NatsCluster
from engine.log.snapshot_store import SnapshotStore, StoredSnapshot, object_name
from engine.machine import StateMachine
from engine.snapshot import SNAPSHOT_HEADER_SIZE, SNAPSHOT_VERSION, read_snapshot, snapshot_paths
from tests.conftest import OPERATOR_KEY, ServerProcess, free_port

EVERY = 50  # entries between cadence points
INVESTORS = 4


@pytest.fixture
async def replicas(cluster: NatsCluster, tmp_path: Path, request: pytest.FixtureRequest):
    """Makes replicas (not yet started) of this test's own venue; stops them all at the end."""
    made: list[ClusterEngine] = []
    # The test's name, cut short, and a digest of the whole (parameters included): unique.
    name = request.node.name
    stream = (name.replace("test_", "")[:32].replace("_", "-") + "-"
              + hashlib.sha256(name.encode()).hexdigest()[:8])

    def make(name: str, keep_snapshots: int = 0, *, every: int = EVERY,
             clock: Clock | None = None) -> ClusterEngine:
        engine = ClusterEngine(cluster.urls, tmp_path / name, clock or WallClock(),
                               stream=stream, snapshot_every=every,
                               keep_snapshots=keep_snapshots)
        made.append(engine)
        return engine

    yield make
    for engine in made:
        await engine.stop()


async def started_venue(engine: ClusterEngine) -> tuple[ClusterEngine, list[int]]:
    """Start ``engine`` as the first replica of a new venue; it and its investors' ids."""
    await engine.start()
    return engine, await open_venue(engine)


async def open_venue(engine: ClusterEngine) -> list[int]:
    await engine.submit(c.Genesis(hashlib.sha256(OPERATOR_KEY.encode()).hexdigest(), False, 0,
                                  "intl", c.RULES_VERSION))
    ids = []
    for n in range(INVESTORS):
        reply = await engine.submit(c.CreateAccount("investor", f"i{n}", f"key{n}"))
        ids.append(reply.body["account_id"])
    return ids


async def trade(engines: list[ClusterEngine], ids: list[int], commands: int,
                tag: str) -> None:
    """``commands`` deposits and withdrawals spread over ``engines``, 16 at a time (so batches
    hold several entries and cross cadence points in their middle). After each 16 the
    snapshots in flight are waited for: a cadence point reached while the one before is still
    being written is skipped, and these tests count them."""
    for start in range(0, commands, 16):
        replies = await asyncio.gather(*(
            engines[n % len(engines)].submit(
                c.Withdraw(ids[n % INVESTORS], 3, f"{tag}w{n}") if n % 5 == 4 else
                c.Deposit(ids[n % INVESTORS], 1 + n % 31, f"{tag}d{n}"))
            for n in range(start, min(start + 16, commands))))
        assert all(reply.status in (201, 422) for reply in replies)
        for engine in engines:
            await settled(engine)


async def settled(engine: ClusterEngine) -> None:
    """Wait until the snapshot in flight (and its upload) is done."""
    await engine.snapshots.stop()


async def caught_up(engine: ClusterEngine, sequence: int) -> None:
    for _ in range(600):
        if engine.machine.last_sequence >= sequence:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"stuck at {engine.machine.last_sequence}, wanted {sequence}")


async def store_of(engine: ClusterEngine) -> SnapshotStore:
    assert engine.snapshots.store is not None
    return engine.snapshots.store


@pytest.fixture(params=["child", "thread"])
def snapshot_writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Snapshots written by a forked child (the default on Linux) or by a thread."""
    monkeypatch.setattr(sequencer, "SNAPSHOT_IN_CHILD", request.param == "child")
    return request.param


async def test_a_new_replica_starts_from_the_cluster_snapshot_and_reads_only_the_tail(
        replicas, snapshot_writer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    warmed: list[int] = []  # the sequences recoveries made the reads' indexes at
    warm = StateMachine.warm_reads
    monkeypatch.setattr(StateMachine, "warm_reads",
                        lambda machine: warmed.append(machine.last_sequence) or warm(machine))
    live, ids = await started_venue(replicas("live"))
    await trade([live], ids, 7 * EVERY + 13, "a")
    await settled(live)
    stored = await (await store_of(live)).list()
    assert stored, "the live replica appended every message, so it shares every snapshot"
    newest = stored[-1]
    assert newest.sequence // EVERY == live.machine.last_sequence // EVERY
    assert live.snapshots.store.replicas == live.log.replicas == 3  # as many copies

    fresh = replicas("fresh")
    applied = await fresh.recover()
    point = fresh.start_point
    assert (point.source, point.sequence, point.position) == (
        "cluster", newest.sequence, newest.position)
    assert applied == live.machine.last_sequence - newest.sequence < EVERY + 16
    assert warmed[-1] == fresh.machine.last_sequence  # its catch-up ended by warming them
    assert fresh.stream_position == live.stream_position
    assert fresh.machine.state_hash() == live.machine.state_hash()
    # The fetched snapshot is now this replica's own cache.
    assert read_snapshot(snapshot_paths(fresh.data_dir / "snapshots")[0]).position == \
        newest.position

    # Both go on as replicas: commands at either reach the same state.
    await fresh.start()
    await trade([fresh, live], ids, 40, "b")
    await caught_up(live, fresh.machine.last_sequence)
    await caught_up(fresh, live.machine.last_sequence)
    assert fresh.machine.state_hash() == live.machine.state_hash()


async def test_each_cadence_point_is_taken_by_all_and_shared_once(replicas) -> None:
    first, second = replicas("a"), replicas("b")
    await first.start()
    await second.start()
    ids = await open_venue(first)
    await trade([first, second], ids, 12 * EVERY, "a")
    await caught_up(second, first.machine.last_sequence)
    await caught_up(first, second.machine.last_sequence)
    await asyncio.gather(settled(first), settled(second))

    shared = first.snapshots.uploaded + second.snapshots.uploaded
    points = [s.sequence // EVERY for s in shared]
    assert len(points) == len(set(points)), f"a cadence point shared twice: {shared}"
    assert len(shared) >= 6 and first.snapshots.uploaded and second.snapshots.uploaded
    for engine in (first, second):
        for snapshot in engine.snapshots.uploaded:  # shared by the appender of its message
            batch = await engine.log.get(snapshot.position)
            assert batch.msg_id.rpartition(":")[0] == engine.log.writer_id
    # Both replicas took their local snapshots at the same points, stream messages included.
    local = [[(s.sequence, s.position) for s in map(read_snapshot, snapshot_paths(
        engine.data_dir / "snapshots"))] for engine in (first, second)]
    assert local[0] == local[1] and len(local[0]) == 3
    assert first.machine.state_hash() == second.machine.state_hash()


async def corrupt_object(store: SnapshotStore, snapshot: StoredSnapshot, where: Path) -> None:
    """Store the snapshot again under its own name with one body byte flipped (the object's
    own SHA-256 then matches: only the snapshot file's checksum can tell)."""
    path = await store.download(snapshot, where)
    data = bytearray(path.read_bytes())
    data[SNAPSHOT_HEADER_SIZE + len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    await store.upload(path, snapshot.sequence, snapshot.position)


async def test_a_corrupt_newest_snapshot_falls_back_to_an_older_one_then_the_stream(
        replicas, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    live, ids = await started_venue(replicas("live"))
    await trade([live], ids, 4 * EVERY, "a")
    await settled(live)
    store = await store_of(live)
    stored = await store.list()
    assert len(stored) == 3
    await corrupt_object(store, stored[-1], tmp_path / "scratch")

    caplog.set_level(logging.INFO, logger="crowdex.engine")
    fresh = replicas("fresh")
    await fresh.recover()
    assert (fresh.start_point.source, fresh.start_point.sequence) == ("cluster",
                                                                      stored[-2].sequence)
    assert f"the cluster's snapshot {stored[-1].name} is unusable" in caplog.text
    assert "checksum mismatch" in caplog.text
    assert fresh.machine.state_hash() == live.machine.state_hash()
    # The damaged one was not kept in the cache: every local snapshot reads (read_snapshot
    # checks the body), the one it fell back to among them. Catching up from there crosses the
    # newest cadence point again, where this replica takes a snapshot of its own, written by a
    # forked child that may or may not have finished by now.
    local = [read_snapshot(p).sequence for p in snapshot_paths(fresh.data_dir / "snapshots")]
    assert stored[-2].sequence in local and set(local) <= {s.sequence for s in stored}

    for snapshot in stored[:-1]:
        await corrupt_object(store, snapshot, tmp_path / "scratch")
    empty = replicas("empty")
    applied = await empty.recover()
    assert "none of the 3 snapshots that could be continued was usable" in caplog.text
    assert empty.start_point.source == "empty" and applied == live.machine.last_sequence
    assert empty.machine.state_hash() == live.machine.state_hash()


async def test_a_limited_stream_still_bootstraps_and_a_replica_behind_it_starts_over(
        replicas, caplog: pytest.LogCaptureFixture) -> None:
    live, ids = await started_venue(replicas("live", keep_snapshots=2))
    # A replica that stops early: its local snapshot will be older than the stream's head.
    early = replicas("early")
    await early.start()
    await early.stop()  # a clean stop: its local snapshot is where it stopped
    early_snapshot = read_snapshot(snapshot_paths(early.data_dir / "snapshots")[0])

    await trade([live], ids, 8 * EVERY, "a")
    await settled(live)
    stored = await (await store_of(live)).list()
    first, _last = await live.log.bounds()
    assert first == stored[-2].position + 1  # purged up to the second newest snapshot
    assert early_snapshot.position < first - 1

    caplog.set_level(logging.INFO, logger="crowdex.engine")
    for name in ("fresh", "early"):
        engine = replicas(name)
        applied = await engine.recover()
        assert engine.start_point.source == "cluster", name
        assert applied == live.machine.last_sequence - engine.start_point.sequence
        assert engine.machine.state_hash() == live.machine.state_hash()
    assert "older ones were purged): starting from a snapshot in the cluster" in caplog.text

    # With no snapshot left in the cluster, a new replica cannot catch up, and says why.
    store = await store_of(live)
    for snapshot in await store.list():
        await store.delete(snapshot)
    orphan = replicas("orphan")
    with pytest.raises(StreamGapError, match=f"starts at message {first} .* cannot catch up"):
        await orphan.recover()


async def test_a_replica_the_stream_is_purged_past_stops_and_restarts_from_a_snapshot(
        replicas, caplog: pytest.LogCaptureFixture) -> None:
    live, ids = await started_venue(replicas("live", keep_snapshots=1))
    behind = replicas("behind")
    await behind.recover()
    await behind._reader.close()  # cut off: as a replica on the wrong side of a partition
    await trade([live], ids, 3 * EVERY, "a")
    first, _last = await live.log.bounds()
    assert first > behind.stream_position + 1
    # Its consumer made again from where it was, as after the partition heals.
    behind._reader = await behind.log.reader(after=behind.stream_position)
    await behind.start()
    await trade([live], ids, 1, "b")  # the next message shows it what it missed
    for _ in range(500):
        if behind.failed is not None:
            break
        await asyncio.sleep(0.01)
    assert isinstance(behind.failed, StreamGapError)
    assert "the stream was purged past it: restarted, it starts from a snapshot" in caplog.text
    with pytest.raises(CrowdexError, match="not accepting commands"):
        await behind.submit(c.Tick())
    await behind.stop()

    again = replicas("behind")
    await again.recover()
    assert again.start_point.source == "cluster"
    assert again.machine.state_hash() == live.machine.state_hash()


async def test_a_served_replica_the_stream_is_purged_past_ends_its_server(
        cluster: NatsCluster, replicas, tmp_path: Path) -> None:
    """Behind the purge, a served replica cannot go on but a restart can: its server stops
    (gracefully: the port closes) raising the StreamGapError, which ``crowdex serve`` reports
    and exits 3 with, for its supervisor (``crowdex cluster``, systemd) to start it again."""
    from gateway import connections, keys
    from gateway.app import create_app
    from gateway.config import Config

    live, ids = await started_venue(replicas("live", keep_snapshots=1))
    port = free_port()
    app = create_app(Config(data_dir=tmp_path / "served", port=port, use_database=False,
                            journal_urls=tuple(cluster.urls), stream=live.stream))
    serving = asyncio.create_task(connections._serve(app, "127.0.0.1", port, 5.0,
                                                     lambda _text: None, None))
    for _ in range(500):
        if keys.ENGINE in app and app[keys.ENGINE].machine.last_sequence == \
                live.machine.last_sequence:
            break
        await asyncio.sleep(0.01)
    served = app[keys.ENGINE]
    assert served.on_stopped is not None
    await served._reader.close()  # cut off, as on the wrong side of a partition
    await trade([live], ids, 3 * EVERY, "a")
    assert (await live.log.bounds())[0] > served.stream_position + 1
    served._reader = await served.log.reader(after=served.stream_position)
    await served.start()
    await trade([live], ids, 1, "b")
    with pytest.raises(StreamGapError, match="not in the stream"):
        await asyncio.wait_for(serving, 30)
    with pytest.raises(OSError):  # the server stopped
        await asyncio.open_connection("127.0.0.1", port)


async def test_a_served_replica_on_an_empty_data_dir_catches_up_from_a_snapshot(
        cluster: NatsCluster, replicas, tmp_path: Path) -> None:
    live, ids = await started_venue(replicas("live"))
    await trade([live], ids, 3 * EVERY + 7, "a")
    await settled(live)
    newest = (await (await store_of(live)).list())[-1]

    server = ServerProcess(tmp_path / "served", "--journal", ",".join(cluster.urls),
                           "--stream", live.stream, "--log-format", "text")
    try:
        await asyncio.to_thread(server.start)
        request = urllib.request.Request(server.url + "/v1/admin/state",
                                         headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            state = json.loads(response.read())
    finally:
        await asyncio.to_thread(server.stop)
    assert state["sequence"] == live.machine.last_sequence
    assert state["state_hash"] == live.machine.state_hash()
    assert f"from a cluster snapshot (sequence {newest.sequence}, stream message " \
        f"{newest.position}" in server.log_path.read_text()


async def test_a_stream_made_again_under_the_same_name_never_loads_the_old_ones_snapshots(
        replicas, caplog: pytest.LogCaptureFixture) -> None:
    """The object store (and a replica's data dir) outlive a stream deleted and made again
    under its name. The old stream's snapshots must not be loaded: their positions point into
    another history. Made so they would be picked: the old venue packs many entries into
    few messages, the new one writes a message per entry until its stream reaches past them."""
    old, ids = await started_venue(replicas("old"))
    await asyncio.gather(*(old.submit(c.Deposit(ids[n % INVESTORS], 1 + n, f"d{n}"))
                           for n in range(4 * EVERY)))
    await old.snapshots.take(old.machine, old.stream_position, upload=True)
    await settled(old)
    old_stored = await (await store_of(old)).list()
    assert old_stored
    await old.log.js.delete_stream(old.stream)
    await old.stop()

    new, new_ids = await started_venue(replicas("new"))
    reach = max(s.position for s in old_stored)
    while new.stream_position < reach + 2:
        await new.submit(c.Deposit(new_ids[0], 7, f"n{new.stream_position}"))
    assert new.machine.last_sequence < old_stored[-1].sequence, \
        "the old venue's snapshot is the newer by sequence: the one a careless start picks"

    caplog.set_level(logging.WARNING, logger="crowdex.engine")
    for name in ("fresh", "old"):  # an empty data dir, and the old stream's replica's
        engine = replicas(name)
        await engine.recover()
        assert engine.start_point.source == "empty", name
        assert engine.machine.state_hash() == new.machine.state_hash(), name
    assert "were of an earlier stream" in caplog.text
    aside = list((replicas("old").data_dir / "snapshots").glob("earlier-stream-*/snapshot-*"))
    assert aside, "the old stream's local snapshots are kept aside, not deleted"

    # The next upload's prune deletes the old stream's snapshots from the store.
    await new.snapshots.take(new.machine, new.stream_position, upload=True)
    store = await store_of(new)
    every = await store._all()
    assert every and all(s.stream_created == new.log.created for s in every)


V4 = Path(__file__).resolve().parent / "data" / "snapshot_v4_bc0b2b3"  # test_snapshot_upgrade.py
V4_SEQUENCE = 1042  # of its upgradable snapshot


def v4_at_position(directory: Path, position: int) -> Path:
    """The version 4 snapshot bc0b2b3 wrote, with ``position`` in its header (it was written
    on a file journal, which records 0): its body as that code wrote it."""
    data = bytearray(next((V4 / "upgradable").glob("snapshot-*.snap")).read_bytes())
    assert int.from_bytes(data[8:12], "little") == 4
    data[24:32] = position.to_bytes(8, "little")
    data[SNAPSHOT_HEADER_SIZE - 4:SNAPSHOT_HEADER_SIZE] = zlib.crc32(
        bytes(data[:SNAPSHOT_HEADER_SIZE - 4])).to_bytes(4, "little")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"snapshot-{V4_SEQUENCE:020d}.snap"
    path.write_bytes(bytes(data))
    return path


async def test_a_replica_starts_from_a_version_4_snapshot_the_stream_is_purged_behind(
        replicas, tmp_path: Path, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A cluster upgraded from a crowdex writing snapshot version 4, whose stream was purged
    behind its snapshots: a replica on an empty data dir starts from the version 4 snapshot
    (upgraded in memory), reads the tail and reaches the live replica's state; its next
    snapshot is version 5, and a restart from its own version 4 copy upgrades that. Without the
    upgrade it cannot start. The venue is the fixture's
    (its commands, one stream message each, on a manual clock as written); the live replica
    takes no snapshot of its own, so the cluster's only one is the version 4 file."""
    live = replicas("live", every=10**9, clock=ManualClock())
    await live.start()
    journal = FileJournal(V4 / "journal", sync=False, read_only=True)
    try:
        entries = [decode_entry(payload) for sequence, payload in journal.read(0)
                   if sequence <= V4_SEQUENCE + 60]
    finally:
        journal.close()
    for sequence, entry in enumerate(entries, 1):
        await live.submit(entry.command, entry.actor)
        if sequence == V4_SEQUENCE:
            position = live.stream_position
            assert live.machine.last_sequence == V4_SEQUENCE
    store = await store_of(live)
    await store.upload(v4_at_position(tmp_path / "upload", position), V4_SEQUENCE, position)
    await live.log.purge_before(position + 1)
    assert (await live.log.bounds())[0] == position + 1
    assert live.machine.component("markets").marketdata.instruments()  # the tail trades too

    caplog.set_level(logging.WARNING, logger="crowdex.engine")
    fresh = replicas("fresh", every=10**9, clock=ManualClock())
    assert await fresh.recover() == 60
    point = fresh.start_point
    assert (point.source, point.sequence, point.position) == ("cluster", V4_SEQUENCE, position)
    assert "upgraded in memory to version 5" in caplog.text
    assert fresh.machine.state_hash() == live.machine.state_hash()
    await fresh.snapshots.take(fresh.machine, fresh.stream_position, upload=False)
    await fresh.stop()
    newest, cached = snapshot_paths(fresh.data_dir / "snapshots")
    assert read_snapshot(newest).version == SNAPSHOT_VERSION  # read with no upgrade
    # A restart on a data dir whose snapshots are version 4 (a replica that ran the older
    # crowdex) upgrades its own.
    assert read_snapshot(cached, upgrade=lambda stored: stored).version == 4
    newest.unlink()
    again = replicas("fresh", every=10**9, clock=ManualClock())
    assert await again.recover() == 60
    assert (again.start_point.source, again.start_point.sequence) == ("local", V4_SEQUENCE)
    assert again.machine.state_hash() == live.machine.state_hash()

    monkeypatch.setattr(cluster_snapshots, "upgrade", None)  # as before the upgrade existed
    with pytest.raises(StreamGapError, match="cannot catch up"):
        await replicas("without", every=10**9, clock=ManualClock()).recover()
    assert "version 4: another state layout" in caplog.text


def test_object_names_sort_by_sequence() -> None:
    assert object_name(7, 3) == f"snapshot-{7:020d}-at-{3:020d}.snap"
    assert sorted([StoredSnapshot(10, 4), StoredSnapshot(9, 5)])[0].sequence == 9


async def test_stream_log_bounds_and_purge(cluster: NatsCluster) -> None:
    stream_log = await StreamLog.connect(cluster.urls, stream="purged-head")
    try:
        assert await stream_log.bounds() == (0, 0)
        for n in range(6):
            await stream_log.append([f"e{n}".encode()])
        await stream_log.purge_before(4)
        assert await stream_log.bounds() == (4, 6)
        batches = []
        async for chunk in stream_log.read(after=3):
            batches.extend(chunk)
        assert [b.sequence for b in batches] == [4, 5, 6]
        with pytest.raises(StreamGapError, match="messages 1..3 are not in the stream"):
            async for _chunk in stream_log.read(after=0):
                pass
    finally:
        await stream_log.close()


def test_a_negative_stream_keep_snapshots_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(tmp_path),
         "--journal", "nats://127.0.0.1:4222", "--stream-keep-snapshots", "-1"],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2
    assert "--stream-keep-snapshots must be 0 (keep every message) or more" in done.stderr
