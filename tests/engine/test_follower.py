"""The snapshot follower: a process of its own that follows the journal read-only and writes the
same snapshots the server would, applying only what the server says is durable; the server
starts it lazily, hears its snapshots, restarts it, falls back to forking, and ends it."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import recovery
from engine import commands as c
from engine import follower as follower_module
from engine import journal as journal_module
from engine import sequencer
from engine.clock import ManualClock
from engine.follower import Follower
from engine.journal import FileJournal, JournalCorruptError, JournalTail, segment_name
from engine.sequencer import Engine, replay_from_empty
from engine.skips import Skip, entry_sha256, record_skip
from engine.snapshot import read_snapshot, snapshot_name, snapshot_paths, state_hash
from gateway import metrics

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the follower needs Linux")

WAIT_S = 60  # a bound for what should take well under a second


@pytest.fixture(autouse=True)
async def _engines_stopped(monkeypatch):
    """Every engine a test starts is stopped when the test ends, also one whose test failed
    before its own ``stop``: its follower (a process and its pipes) would outlive the test,
    and the pipes' ResourceWarning, raised when they are collected, fail a later test."""
    started: list[Engine] = []
    start = Engine.start

    async def tracked(self: Engine, *args, **kwargs):
        started.append(self)
        return await start(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "start", tracked)
    yield
    for engine in started:
        await engine.stop()  # a no-op for one stopped already


def _commands(orders: int, seed: int = 7) -> list[tuple[int, c.Command]]:
    """A venue with traders, then ``orders`` orders and cancels (``bench.recovery``'s mix)."""
    entries = recovery.order_entries(orders, seed, recovery.START_US + 1_000_000)
    return recovery._prefix() + [(entry.actor, entry.command) for entry in entries]


async def _submit(engine: Engine, commands: list[tuple[int, c.Command]]) -> None:
    for start in range(0, len(commands), 512):
        await asyncio.gather(*(engine.submit(command, actor)
                               for actor, command in commands[start:start + 512]))


async def _until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _followed(tmp_path: Path, ticks: int) -> Engine:
    """A started venue snapshotting every 100 commands by its follower: the Genesis and
    ``ticks`` ticks applied, and its follower running."""
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=100,
                    snapshots="follower")
    await engine.start()
    await _submit(engine, [(0, c.Genesis("op", False, 0))] + [(0, c.Tick())] * ticks)
    await _until(lambda: engine.follower is not None, "the follower to start")
    return engine


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie of another parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _journal_of(data_dir: Path, commands: int) -> None:
    """A journal of ``commands`` entries, written as the server does, with no snapshot."""
    engine = Engine(data_dir, ManualClock(), sync=False, snapshot_every=10**9)
    engine.recover()
    journal = engine._journal
    for start in range(0, commands, 300):
        count = min(300, commands - start)
        journal.append([(start + i + 1, c.encode_entry(c.Entry(recovery.START_US, 0, c.Tick())))
                        for i in range(count)])
    engine.close_recovered()


# ---- the journal's tailing read -------------------------------------------------------------


def test_tail_waits_for_a_record_being_written_and_cuts_nothing(tmp_path: Path):
    journal = FileJournal(tmp_path, sync=False)
    journal.append([(n, b"entry %d" % n) for n in range(1, 4)])
    tail = JournalTail(tmp_path, 0)
    record = journal_module._encode_record(4, b"the fourth entry")
    path = tmp_path / segment_name(1)
    size = path.stat().st_size
    with open(path, "ab") as file:  # the writer is halfway through record 4
        file.write(record[:13])
    block = tail.read(upto=10)
    assert block.first_sequence == 1 and len(block.starts) == 3
    assert tail.read(upto=10) is None  # waited for, not an error
    assert path.stat().st_size == size + 13  # and nothing cut
    with open(path, "ab") as file:
        file.write(record[13:])
    block = tail.read(upto=10)
    assert block.first_sequence == 4
    assert bytes(block.data[block.starts[0]:block.ends[0]]) == b"the fourth entry"


def test_tail_reads_a_record_of_the_largest_size(tmp_path: Path):
    """A record as large as the journal takes is read whole (one read of the tail once held
    1 MiB, less than such a record: the follower waited for it forever)."""
    journal = FileJournal(tmp_path, sync=False)
    largest = b"x" * journal_module.RECORD_PAYLOAD_MAX
    journal.append([(1, b"small"), (2, largest), (3, b"after")])
    tail = JournalTail(tmp_path, 0)
    read = []
    while (block := tail.read(upto=3)) is not None:
        read += [bytes(block.data[s:e]) for s, e in zip(block.starts, block.ends, strict=True)]
    assert read == [b"small", largest, b"after"]


def test_tail_reads_nothing_past_the_durable_sequence(tmp_path: Path):
    journal = FileJournal(tmp_path, sync=False)
    journal.append([(n, b"e%d" % n) for n in range(1, 101)])
    tail = JournalTail(tmp_path, 10)
    block = tail.read(upto=40)
    assert (block.first_sequence, len(block.starts)) == (11, 30)
    assert tail.read(upto=40) is None
    block = tail.read(upto=1000, records_max=7)
    assert (block.first_sequence, len(block.starts)) == (41, 7)


@pytest.mark.parametrize("synced", [False, True])
def test_tail_follows_segment_rolls_while_the_journal_is_written(tmp_path: Path,
                                                                 synced: bool):
    """Also where the records are followed by zeros written ahead of them (a synced journal:
    ``engine.journal``), read as nothing yet: never as damage, in the active segment or a
    rolled one."""
    journal = FileJournal(tmp_path, sync=synced, segment_size_max=400)
    tail = JournalTail(tmp_path, 0)  # before the first segment exists
    read = []
    for batch in range(40):
        first = journal.last_sequence + 1
        journal.append([(n, b"payload %d" % n) for n in range(first, first + 1 + batch % 3)])
        if batch % 4 == 0:
            while (block := tail.read(journal.last_sequence)) is not None:
                read += [bytes(block.data[s:e]) for s, e in zip(block.starts, block.ends,
                                                                strict=True)]
    while (block := tail.read(journal.last_sequence)) is not None:
        read += [bytes(block.data[s:e]) for s, e in zip(block.starts, block.ends, strict=True)]
    assert len(journal.segment_paths) > 5
    assert read == [payload for _sequence, payload in journal.read(0)]
    sizes = {path.stat().st_size for path in journal.segment_paths[1:]}
    assert (sizes == {400}) is synced  # zeros up to their size, or as long as their records
    journal.close()


def test_tail_refuses_a_damaged_durable_record(tmp_path: Path):
    journal = FileJournal(tmp_path, sync=False)
    journal.append([(n, b"entry %d" % n) for n in range(1, 4)])
    path = tmp_path / segment_name(1)
    data = bytearray(path.read_bytes())
    data[-2] ^= 0xFF  # in record 3's payload
    path.write_bytes(bytes(data))
    tail = JournalTail(tmp_path, 0)
    assert len(tail.read(upto=3).starts) == 2  # the whole ones before it
    with pytest.raises(JournalCorruptError, match="CRC mismatch"):
        tail.read(upto=3)
    assert JournalTail(tmp_path, 0).read(upto=2) is not None  # not durable yet: not read


# ---- the follower process -------------------------------------------------------------------


async def test_follower_writes_the_servers_snapshot(tmp_path: Path):
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=10**9)
    await engine.start()
    await _submit(engine, _commands(3000))
    await engine.stop()  # the server's own snapshot, at the last sequence
    sequence = engine.machine.last_sequence
    server_path = tmp_path / "snapshots" / snapshot_name(sequence)
    server = read_snapshot(server_path)
    server_path.unlink()
    follower = Follower(tmp_path, sequence, keep=3)
    follower.start()
    try:
        follower.tell(sequence)
        heard = []
        await _until(lambda: heard.append(follower.snapshots()) or sequence in heard,
                     "the follower's snapshot")
    finally:
        await follower.stop()
    followed = read_snapshot(server_path)
    assert followed.sequence == sequence
    assert followed.meta == server.meta
    # Every field of every array equal; the bytes differ only in the padding of aligned
    # records, which nothing initialises (the state hash leaves it out for that reason).
    assert followed.arrays.keys() == server.arrays.keys()
    for name, array in server.arrays.items():
        assert array.dtype == followed.arrays[name].dtype
        assert (array == followed.arrays[name]).all(), name
    assert state_hash(followed.arrays, followed.meta) == state_hash(server.arrays, server.meta)


def test_the_followers_snapshot_is_written_by_a_thread_at_the_idle_class():
    """``at_idle_priority`` runs the write in a thread of its own at SCHED_IDLE (which any
    thread of the server that wakes preempts at once), leaves the caller's class alone, and
    raises the write's error in the caller."""
    import threading

    seen = []
    before = os.sched_getscheduler(0)
    follower_module.at_idle_priority(
        lambda: seen.append((threading.get_ident(), os.sched_getscheduler(0))))
    assert seen == [(seen[0][0], os.SCHED_IDLE)]
    assert seen[0][0] != threading.get_ident()
    assert os.sched_getscheduler(0) == before

    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        follower_module.at_idle_priority(fail)
    assert follower_module.WRITE_AT_IDLE  # the follower's default


@pytest.mark.parametrize("idle", [True, False])
async def test_the_follower_runs_in_the_idle_class_from_its_start(tmp_path: Path, monkeypatch,
                                                                   idle: bool):
    """The follower process, every thread of it, is at SCHED_IDLE (a CPU only when none else
    wants one); with FOLLOWER_SCHED_IDLE off, at FOLLOWER_NICE in the normal class."""
    monkeypatch.setattr(follower_module, "FOLLOWER_SCHED_IDLE", idle)
    engine = await _followed(tmp_path, 10)
    pid = engine.follower.pid
    nice = min(19, os.getpriority(os.PRIO_PROCESS, 0) + follower_module.FOLLOWER_NICE)

    def scheduling() -> tuple[set[int], int]:
        threads = os.listdir(f"/proc/{pid}/task")
        return ({os.sched_getscheduler(int(tid)) for tid in threads},
                os.getpriority(os.PRIO_PROCESS, pid))

    try:
        # Set by the first lines the new interpreter runs: wait for them, then look again
        # once its threads have started (the snapshot writer's is made per snapshot).
        expected = ({os.SCHED_IDLE} if idle else {os.SCHED_OTHER}, nice)
        await _until(lambda: scheduling() == expected, f"the follower at {expected}")
        await asyncio.sleep(0.5)
        assert scheduling() == expected
    finally:
        await engine.stop()


def test_the_followers_idle_class_is_the_default():
    assert follower_module.FOLLOWER_SCHED_IDLE


async def test_follower_applies_only_what_is_durable(tmp_path: Path):
    _journal_of(tmp_path, 100)
    follower = Follower(tmp_path, 10, keep=3)
    follower.start()
    try:
        follower.tell(55)
        await _until(lambda: follower.snapshots() == 50, "snapshot 50")
        await asyncio.sleep(0.3)  # time to go past 55, if it would
        assert follower.snapshots() == -1
        assert [int(p.name[9:29]) for p in snapshot_paths(tmp_path / "snapshots")] == [50, 40, 30]
        follower.tell(100)
        await _until(lambda: follower.snapshots() == 100, "snapshot 100")
    finally:
        await follower.stop()
    assert read_snapshot(tmp_path / "snapshots" / snapshot_name(100)).sequence == 100


async def test_follower_ends_with_stdin(tmp_path: Path):
    _journal_of(tmp_path, 10)
    follower = Follower(tmp_path, 10, keep=3)
    follower.start()
    follower.process.stdin.close()
    assert await asyncio.to_thread(follower.process.wait, WAIT_S) == 0
    follower.process.stdout.close()


# ---- the server's supervision ---------------------------------------------------------------


async def test_follower_is_started_only_near_a_snapshot(tmp_path: Path):
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=200,
                    snapshots="follower")
    await engine.start()
    start = int(200 * sequencer.FOLLOWER_START_SHARE)  # commands since the newest snapshot
    await _submit(engine, [(0, c.Genesis("op", False, 0))] + [(0, c.Tick())] * (start - 2))
    await asyncio.sleep(0.1)
    assert engine.follower is None  # one command short of the start
    await _submit(engine, [(0, c.Tick())])
    await _until(lambda: engine.follower is not None, "the follower to start")
    pid = engine.follower.pid
    await _submit(engine, [(0, c.Tick())] * (250 - start))
    await _until(lambda: engine._snapshotted == 200, "the follower's snapshot at 200")
    assert engine.follower.pid == pid and not _gone(pid)
    await engine.stop()
    assert _gone(pid)
    assert [p.name for p in snapshot_paths(tmp_path / "snapshots")] == [
        snapshot_name(250), snapshot_name(200)]  # the server's at its stop, the follower's


async def test_a_killed_follower_is_restarted_and_no_half_snapshot_is_seen(
        tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(sequencer, "FOLLOWER_RESTART_DELAY_S", 0.05)
    engine = await _followed(tmp_path, 60)
    for round_ in range(3):
        first = engine.follower.pid
        await _submit(engine, [(0, c.Tick())] * 100)
        os.kill(first, signal.SIGKILL)  # perhaps in the middle of a snapshot
        for path in snapshot_paths(tmp_path / "snapshots"):
            read_snapshot(path)  # every published one is whole
        await _until(lambda first=first: engine.follower is not None
                     and engine.follower.pid != first, f"restart {round_}")
        await _until(lambda due=100 * (round_ + 1): engine._snapshotted >= due,
                     "the restarted follower's snapshot")
    assert "forked from the server" not in caplog.text  # each restarted, none fallen behind
    # Counted across the restarts: each killed follower's own snapshots stay counted.
    assert engine.snapshots_written["follower"] >= 3
    assert engine.snapshots_written["fork"] == 0
    await engine.stop()
    recovered = Engine(tmp_path, ManualClock(), sync=False)
    recovered.recover()
    assert recovered.machine.state_hash() == replay_from_empty(tmp_path).state_hash()
    recovered.close_recovered()
    assert not list((tmp_path / "snapshots").glob("*.tmp"))


async def test_a_wedged_follower_falls_back_to_a_forked_snapshot(tmp_path: Path):
    engine = await _followed(tmp_path, 60)
    wedged = engine.follower.pid
    os.kill(wedged, signal.SIGSTOP)
    await _submit(engine, [(0, c.Tick())] * 250)  # past two snapshots' worth
    await _until(lambda: engine._snapshotted >= 200, "the forked snapshot")
    assert _gone(wedged)
    assert engine.snapshots_written["fork"] >= 1
    await engine.stop()


async def test_a_forked_snapshot_is_counted_when_it_is_seen_written(tmp_path: Path,
                                                                       monkeypatch):
    """The newest snapshot's sequence and the count of forked ones change together, on the
    loop: the publish (a thread) held back after its rename, no reader sees the sequence
    without the count (CI once saw ``_snapshotted`` at 200 and no fork counted)."""
    publish = Engine._publish_snapshot

    def slow_publish(self: Engine, sequence: int) -> None:
        publish(self, sequence)
        time.sleep(0.3)  # a reader polling meanwhile sees what the publish left

    monkeypatch.setattr(Engine, "_publish_snapshot", slow_publish)
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=100, snapshots="fork")
    await engine.start()
    await _submit(engine, [(0, c.Genesis("op", False, 0))] + [(0, c.Tick())] * 120)
    await _until(lambda: engine.snapshotted >= 100, "the forked snapshot")
    assert engine.snapshots_written == {"follower": 0, "fork": 1}
    await engine.stop()
    assert engine.snapshotted == 121  # the stop's own snapshot, marked once published


async def test_a_follower_behind_but_moving_is_left_to_catch_up(tmp_path: Path, monkeypatch):
    """Behind by more than FOLLOWER_BEHIND_MAX_SNAPSHOTS (set to 1 here) but applying: no fork,
    the follower writes every snapshot (one starved at its low priority on a busy machine was
    killed and replaced by forks, the cost it exists to spare)."""
    monkeypatch.setattr(sequencer, "FOLLOWER_BEHIND_MAX_SNAPSHOTS", 1)
    # Moving, however starved: at its idle priority on a busy machine (a full test run beside
    # other work) its start and a snapshot's write can go 5 s without a progress line, and
    # then it was killed as stalled; the stall rule has tests of its own (wedged, killed).
    monkeypatch.setattr(sequencer, "FOLLOWER_STALLED_S", WAIT_S)
    engine = await _followed(tmp_path, 20)
    pid = engine.follower.pid
    await _submit(engine, [(0, c.Tick())] * 400)
    await _until(lambda: engine._snapshotted >= 400, "the follower's snapshots")
    assert engine.follower is not None and engine.follower.pid == pid
    assert engine._snapshot_task is None  # nothing forked
    assert engine.snapshots_written == {"follower": 4, "fork": 0}  # at 100, 200, 300, 400
    families = {family.name: family for family in metrics._snapshot_families(engine)}
    assert families["crowdex_snapshot_sequence"].samples[0].value == 400
    assert {sample.labels["writer"]: sample.value
            for sample in families["crowdex_snapshots_written"].samples
            if sample.name.endswith("_total")} == {"follower": 4, "fork": 0}
    engine.follower.applied = engine.machine.last_sequence - 7  # as a progress line says
    families = {family.name: family for family in metrics._snapshot_families(engine)}
    assert families["crowdex_snapshot_follower_behind"].samples[0].value == 7
    await engine.stop()


async def test_a_follower_that_cannot_start_falls_back_to_forking(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(follower_module.sys, "executable", str(tmp_path / "no-python"))
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=100,
                    snapshots="follower")
    await engine.start()
    await _submit(engine, [(0, c.Genesis("op", False, 0))] + [(0, c.Tick())] * 60)
    await _until(lambda: engine.snapshots == "fork", "the fallback")
    await _submit(engine, [(0, c.Tick())] * 50)
    await _until(lambda: engine._snapshotted >= 100, "a forked snapshot")
    await engine.stop()


async def test_follower_honours_the_operators_skips(tmp_path: Path):
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=10**9)
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    account = (await engine.submit(c.CreateAccount("investor", "i", "key"))).body["account_id"]
    await _submit(engine, [(0, c.Deposit(account, 1000 + n, f"d{n}")) for n in range(40)])
    await engine.stop()
    (tmp_path / "snapshots" / snapshot_name(42)).unlink()  # the follower is to write it
    skipped = 12  # the deposit of 1009 (after the genesis and the account)
    payload = dict(FileJournal(tmp_path / "journal", read_only=True).read(skipped - 1))[skipped]
    record_skip(tmp_path, Skip(skipped, entry_sha256(payload), "deposit", 0, "none",
                               "a test's skip", "2026-12-06T00:00:00Z", "test"))
    recovered = Engine(tmp_path, ManualClock(), sync=False)
    recovered.recover()  # honours the skip
    expected = recovered.machine.state_hash()
    assert recovered.machine.cash_total() == sum(1000 + n for n in range(40)) - 1009
    recovered.close_recovered()
    follower = Follower(tmp_path, 42, keep=3)
    follower.start()
    try:
        follower.tell(42)
        await _until(lambda: follower.snapshots() == 42, "snapshot 42")
    finally:
        await follower.stop()
    snapshot = read_snapshot(tmp_path / "snapshots" / snapshot_name(42))
    assert state_hash(snapshot.arrays, snapshot.meta) == expected


# ---- a killed server ------------------------------------------------------------------------

SERVER = """
import asyncio, sys
from pathlib import Path
from engine import commands as c
from engine.clock import ManualClock
from engine.sequencer import Engine

async def main():
    engine = Engine(Path(sys.argv[1]), ManualClock(), snapshot_every=2000,
                    snapshots="follower")
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    told = False
    while True:  # ~1000 commands/s: the follower's snapshot at 2000 comes well in time
        await asyncio.gather(*(engine.submit(c.Tick()) for _ in range(20)))
        # A follower that a busy machine starved was replaced by a fork: wait for the next.
        if not told and engine._snapshotted >= 2000 and engine.follower is not None:
            print(engine.follower.pid, flush=True)
            told = True
        await asyncio.sleep(0.02)

asyncio.run(main())
"""


def test_a_killed_server_leaves_no_follower_and_restarts(tmp_path: Path):
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(tmp_path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([server.stdout], [], [], 120)
        assert ready, "the server never had a follower with a snapshot written"
        follower_pid = int(server.stdout.readline())
        assert not _gone(follower_pid)
        server.kill()  # kill -9, mid-stream
        server.wait()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        server.stdout.close()
    deadline = time.monotonic() + WAIT_S
    while not _gone(follower_pid):
        assert time.monotonic() < deadline, "the follower outlived its server"
        time.sleep(0.01)
    engine = Engine(tmp_path, ManualClock())
    engine.recover()
    assert engine.machine.state_hash() == replay_from_empty(tmp_path).state_hash()
    engine.close_recovered()


async def test_a_venue_recovered_far_past_its_snapshot_forks_first(tmp_path: Path, caplog):
    """Two snapshots' worth past the newest at the start: a forked snapshot now, and the
    follower only once it is published (not started only to be killed, nor beside a fork)."""
    _journal_of(tmp_path, 250)
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=100,
                    snapshots="follower")
    await engine.start()
    await _submit(engine, [(0, c.Genesis("op", False, 0))])
    assert engine.follower is None and engine._snapshot_task is not None
    await engine._snapshot_task
    assert engine._snapshotted == 251
    assert engine.follower is None  # not beside the fork: each would prune the other's file
    await _submit(engine, [(0, c.Tick())] * 60)
    await _until(lambda: engine.follower is not None, "the follower to start")
    await _submit(engine, [(0, c.Tick())] * 50)
    await _until(lambda: engine._snapshotted == 351, "the follower's snapshot")
    await engine.stop()
    assert "restarted" not in caplog.text and "ended with status" not in caplog.text


async def test_a_stale_half_written_snapshot_is_never_loaded(tmp_path: Path):
    """What a follower killed mid-write leaves (a temporary file) is not loaded at the next
    start, and the next snapshot published removes it."""
    _journal_of(tmp_path, 120)
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=100)
    engine.recover()
    await engine.start()
    await engine.stop()  # the server's snapshot at 120
    snapshots = tmp_path / "snapshots"
    whole = (snapshots / snapshot_name(120)).read_bytes()
    stale = snapshots / (snapshot_name(130) + ".tmp")
    stale.write_bytes(whole[:len(whole) // 2])
    engine = Engine(tmp_path, ManualClock(), sync=False, snapshot_every=100)
    assert engine.recover() == 0  # from the snapshot at 120, the stale file ignored
    await engine.start()
    await _submit(engine, [(0, c.Tick())] * 5)
    await engine.stop()
    assert not stale.exists()
    assert [p.name for p in snapshot_paths(snapshots)] == [snapshot_name(125), snapshot_name(120)]
