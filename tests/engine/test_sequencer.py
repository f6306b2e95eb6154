"""The sequencer: group commit, durable replies, snapshots plus tail equal a full replay."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

import pytest

from engine import commands as c
from engine import markets_commands as mc
from engine import sequencer
from engine.clock import ManualClock, WallClock
from engine.errors import CrowdexError
from engine.machine import StateMachine
from engine.sequencer import Engine, replay_from_empty
from engine.snapshot import load_latest


async def _venue(engine: Engine, investors: int) -> list[int]:
    await engine.submit(c.Genesis("op", False, 0))
    ids = []
    for n in range(investors):
        reply = await engine.submit(c.CreateAccount("investor", f"i{n}", f"key{n}"))
        ids.append(reply.body["account_id"])
    return ids


@pytest.fixture
def python_journal_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's thread in Python (``JournalThread(compiled=False)``), for the tests that
    slow or break ``FileJournal.append_framed``: the compiled loop writes without it."""
    monkeypatch.setattr(sequencer, "JOURNAL_THREAD_COMPILED", False)


async def test_concurrent_submits_are_batched_and_all_applied(tmp_path: Path):
    batches: list[int] = []
    engine = Engine(tmp_path, WallClock(), on_batch=lambda size, _s: batches.append(size))
    await engine.start()
    ids = await _venue(engine, 3)
    replies = await asyncio.gather(*(
        engine.submit(c.Deposit(ids[n % 3], 10 + n, f"r{n}")) for n in range(500)))
    assert all(r.status == 201 for r in replies)
    assert sum(batches) == engine.machine.last_sequence
    assert max(batches) > 1, "concurrent commands should share a journal batch"
    assert engine.machine.cash_total() == sum(10 + n for n in range(500))
    await engine.stop()


@pytest.fixture(params=["child", "thread"])
def snapshot_writer(request, monkeypatch) -> str:
    """Snapshots written by a forked child (the default on Linux) or by a thread."""
    monkeypatch.setattr(sequencer, "SNAPSHOT_IN_CHILD", request.param == "child")
    return request.param


async def test_snapshot_plus_tail_equals_full_replay(tmp_path: Path, snapshot_writer: str):
    engine = Engine(tmp_path, WallClock(), snapshot_every=64)
    await engine.start()
    ids = await _venue(engine, 4)
    for n in range(300):
        await engine.submit(c.Deposit(ids[n % 4], 1 + n, f"d{n}"))
        if n % 7 == 0:
            await engine.submit(c.Withdraw(ids[n % 4], 1, f"w{n}"))
    await engine._snapshot_task  # the last one started is written (the ones before it are)
    if engine._snapshot_started == engine.machine.last_sequence:
        # A snapshot starts 64 commands after the last one started, once that one is written:
        # behind a slow fork it may start at the last command. One more puts the journal
        # ahead of it (and starts none: 1 of 64).
        assert (await engine.submit(c.Deposit(ids[0], 1, "behind"))).status == 201
    live_hash = engine.machine.state_hash()
    live_sequence = engine.machine.last_sequence
    # Crash: no clean stop, so the newest snapshot is behind the journal.
    engine._task.cancel()
    engine._journal.close()
    snapshot = load_latest(tmp_path / "snapshots")
    assert snapshot is not None and 0 < snapshot.sequence < live_sequence

    recovered = Engine(tmp_path, WallClock())
    replayed = recovered.recover()
    assert replayed == live_sequence - snapshot.sequence
    assert recovered.machine.state_hash() == live_hash
    assert replay_from_empty(tmp_path).state_hash() == live_hash


async def test_a_snapshot_that_cannot_be_published_is_not_counted(
        tmp_path: Path, monkeypatch, caplog):
    """The child writes; this process fsyncs and renames after it (``publish_snapshot``, in a
    thread). A publish that fails leaves no snapshot counted or visible, and the exchange
    goes on; the next one that succeeds is counted."""
    monkeypatch.setattr(sequencer, "SNAPSHOT_IN_CHILD", True)
    real_publish = sequencer.publish_snapshot

    def fsync_failed(*_args, **_kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sequencer, "publish_snapshot", fsync_failed)
    engine = Engine(tmp_path, WallClock(), snapshot_every=1)
    await engine.start()
    ids = await _venue(engine, 2)
    await engine._snapshot_task
    assert "could not be made durable" in caplog.text
    assert load_latest(tmp_path / "snapshots") is None and engine._snapshotted == 0
    assert engine.failed is None
    monkeypatch.setattr(sequencer, "publish_snapshot", real_publish)
    assert (await engine.submit(c.Deposit(ids[0], 5, "after"))).status == 201
    await engine._snapshot_task
    snapshot = load_latest(tmp_path / "snapshots")
    assert snapshot is not None and snapshot.sequence == engine.machine.last_sequence
    assert engine._snapshotted == snapshot.sequence
    await engine.stop()


async def test_a_snapshot_child_that_fails_is_logged_and_the_exchange_goes_on(
        tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(sequencer, "SNAPSHOT_IN_CHILD", True)
    real_write = sequencer.write_snapshot

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sequencer, "write_snapshot", disk_full)  # the child inherits it
    engine = Engine(tmp_path, WallClock(), snapshot_every=1)
    await engine.start()
    ids = await _venue(engine, 2)
    for n in range(10):  # every command starts a snapshot (each one waited for): all fail
        assert (await engine.submit(c.Deposit(ids[n % 2], 1 + n, f"d{n}"))).status == 201
        await engine._snapshot_task
    assert "snapshot writer" in caplog.text and "failed" in caplog.text
    assert load_latest(tmp_path / "snapshots") is None
    assert engine.failed is None
    monkeypatch.setattr(sequencer, "write_snapshot", real_write)
    live_hash = engine.machine.state_hash()
    # The last command's snapshot failed too: the clean stop must still write one (it is
    # written here, not by a child, and works).
    await engine.stop()
    again = Engine(tmp_path, WallClock())
    assert again.recover() == 0
    assert again.machine.state_hash() == live_hash


async def test_clean_stop_snapshots_and_restart_replays_nothing(tmp_path: Path):
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await _venue(engine, 2)
    live_hash = engine.machine.state_hash()
    await engine.stop()
    again = Engine(tmp_path, WallClock())
    assert again.recover() == 0
    assert again.machine.state_hash() == live_hash


async def test_a_recovery_warms_the_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Reads make their indexes, not writes (``StateMachine.warm_reads``): a recovery makes
    them once it has replayed, so the first client's read does not pay for the replay."""
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await _venue(engine, 2)
    await engine.stop()
    warmed: list[int] = []
    monkeypatch.setattr(StateMachine, "warm_reads",
                        lambda machine: warmed.append(machine.last_sequence))
    again = Engine(tmp_path, WallClock())
    again.recover()
    assert warmed == [again.machine.last_sequence] and warmed[0] > 0


async def test_snapshots_keep_their_cadence_across_frequent_restarts(tmp_path: Path,
                                                                     snapshot_writer: str):
    """Issue 15 #5: the cadence counts from the newest snapshot, not from each recovery, so a
    venue that crashes every 30 commands still snapshots every 50 and its replay stays short."""
    snapshot_every, per_life = 50, 30
    for life in range(6):
        engine = Engine(tmp_path, WallClock(), snapshot_every=snapshot_every)
        await engine.start()
        if life == 0:
            ids = await _venue(engine, 2)
        for n in range(per_life):
            await engine.submit(c.Deposit(ids[n % 2], 1, f"l{life}n{n}"))
        if engine._snapshot_task is not None:
            await engine._snapshot_task
        engine._task.cancel()  # a crash: no clean-stop snapshot
        await asyncio.gather(engine._task, return_exceptions=True)
        engine._writer.stop()
        engine._journal.close()
    last_sequence = 3 + 6 * per_life
    recovered = Engine(tmp_path, WallClock(), snapshot_every=snapshot_every)
    replayed = recovered.recover()
    snapshot = load_latest(tmp_path / "snapshots")
    assert snapshot is not None and snapshot.sequence >= last_sequence - snapshot_every - per_life
    assert replayed == last_sequence - snapshot.sequence < snapshot_every + per_life


async def test_manual_clock_time_is_state(tmp_path: Path):
    engine = Engine(tmp_path, ManualClock())
    await engine.start()
    await engine.submit(c.Genesis("op", True, 1_000_000))
    reply = await engine.submit(c.AdvanceClock(90))
    assert reply.body == {"now_us": 91_000_000}
    await engine.submit(c.CreateAccount("investor", "x", "k"))  # stamped at the manual time
    assert engine.machine.now_us == 91_000_000
    await engine.stop()
    again = Engine(tmp_path, ManualClock())
    again.recover()
    assert again.machine.now_us == 91_000_000


async def test_submit_after_stop_is_refused(tmp_path: Path):
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await engine.stop()
    with pytest.raises(CrowdexError) as refused:
        await engine.submit(c.Tick())
    assert refused.value.status == 503


async def test_journal_failure_stops_the_engine_and_fails_pending(tmp_path: Path,
        python_journal_thread: None):
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))

    def broken(framed):
        raise OSError("disk gone")

    engine._journal.append_framed = broken
    with pytest.raises(CrowdexError) as refused:
        await engine.submit(c.Tick())
    assert refused.value.code == "unavailable"
    assert engine.failed is not None
    assert engine.machine.last_sequence == 1  # nothing unjournaled was applied


@pytest.mark.parametrize("too_large", [False, True])
async def test_a_command_the_journal_cannot_hold_is_refused_alone(tmp_path: Path, monkeypatch,
                                                                  too_large: bool):
    """A command whose entry cannot be encoded (an integer past 64 bits) or is over the
    journal's record size gets 400 invalid_field; the commands batched with it are journaled
    and applied, gap-free, and the engine goes on (it once stopped for every client)."""
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    if too_large:
        monkeypatch.setattr(sequencer, "RECORD_PAYLOAD_MAX", 20)  # a tick fits, a cancel not
        bad = mc.CancelOrder(12345)
    else:
        bad = mc.CancelOrder(10**30)
    submitted = [asyncio.ensure_future(engine.submit(command))
                 for command in (c.Tick(), bad, c.Tick())]
    outcomes = await asyncio.wait_for(asyncio.gather(*submitted, return_exceptions=True), 5)
    assert [type(o).__name__ for o in outcomes] == ["Reply", "CrowdexError", "Reply"]
    assert outcomes[0].status == outcomes[2].status == 200
    assert outcomes[1].code == "invalid_field"
    assert engine.failed is None
    assert (await engine.submit(c.Tick())).status == 200
    assert engine.machine.last_sequence == 4
    live_hash = engine.machine.state_hash()
    await engine.stop()
    assert replay_from_empty(tmp_path).state_hash() == live_hash


async def test_snapshot_of_an_idle_market_round_trips(tmp_path: Path):
    """Empty order tables in a snapshot load and grow again (a zero capacity once looped)."""
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await _venue(engine, 1)
    live_hash = engine.machine.state_hash()
    await engine.stop()
    again = Engine(tmp_path, WallClock())
    again.recover()
    assert again.machine.state_hash() == live_hash
    markets = again.machine.component("markets")
    markets.engine._ensure_room(4)
    assert len(markets.engine.orders) >= 4


def test_movement_log_grows_past_its_first_capacity():
    from engine import movements as mv

    log = mv.MovementLog()
    count = 3 * len(log.table.rows) + 5
    for n in range(count):
        log.record(n + 1, mv.DEPOSIT, 0, 3, mv.CASH, n + 1)
    live = log.table.live()
    assert len(live) == count and int(live["amount"].sum()) == count * (count + 1) // 2
    assert list(live["movement_id"][:3]) == [1, 2, 3]


async def test_a_batch_is_applied_while_the_next_one_is_written(tmp_path: Path,
        python_journal_thread: None):
    """The journal and the state machine work in a pipeline: batch B is handed to the journal
    before batch A, already durable, is applied (applying A waits here until B's write has
    started, which would never happen if the two stages took turns)."""
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    append, apply_batch = engine._journal.append_framed, engine.machine.apply_batch
    writes: list[int] = []  # first sequence of each write, as it starts
    next_write_started: list[bool] = []

    def slow_append(framed):
        writes.append(framed.first_sequence)
        time.sleep(0.05)
        append(framed)

    def apply_once_the_next_write_started(first_sequence, entries, payloads=None):
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and not any(w > first_sequence for w in writes):
            time.sleep(0.001)  # the writer thread runs meanwhile
        next_write_started.append(any(w > first_sequence for w in writes))
        return apply_batch(first_sequence, entries, payloads)

    engine._journal.append_framed = slow_append
    engine.machine.apply_batch = apply_once_the_next_write_started
    first = asyncio.ensure_future(engine.submit(c.Tick()))
    await asyncio.sleep(0.01)  # batch A is being written
    rest = [asyncio.ensure_future(engine.submit(c.Tick())) for _ in range(5)]  # batch B
    replies = await asyncio.gather(first, *rest)
    assert [r.status for r in replies] == [200] * 6
    assert writes == [2, 3]
    assert next_write_started == [True, False]  # A applied during B's write; B was the last
    live_hash = engine.machine.state_hash()
    await engine.stop()
    assert replay_from_empty(tmp_path).state_hash() == live_hash


async def test_a_reply_comes_only_after_its_batch_is_durable_on_the_journal_thread(
        tmp_path: Path, python_journal_thread: None):
    """The journal's own thread (``JournalThread``) tells the loop a batch is written only
    once its append (write and fsync) has returned: every pipelined reply is answered with
    its batch applied no further than the journal has made durable, over many batches; and
    the thread ends with the engine."""
    import threading

    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    append = engine._journal.append_framed
    durable = [engine.machine.last_sequence]  # the last sequence whose append has returned
    appends_on: set[str] = set()

    def append_and_note(framed):
        append(framed)  # the real write and fsync
        time.sleep(0.002)  # an ack sent before this returns would be seen by now
        appends_on.add(threading.current_thread().name)
        durable[0] = framed.first_sequence + framed.count - 1

    engine._journal.append_framed = append_and_note
    seen: list[tuple[int, int]] = []  # (applied, durable) as each reply is answered
    answered = asyncio.Event()
    total = 300

    def on_reply(reply) -> None:
        seen.append((engine.machine.last_sequence, durable[0]))
        if len(seen) == total:
            answered.set()

    for n in range(total):
        engine.submit_nowait(c.Tick(), 0, on_reply)
        if n % 20 == 19:
            await asyncio.sleep(0.001)  # let batches form and go while more come
    await asyncio.wait_for(answered.wait(), 30)
    assert all(applied <= made_durable for applied, made_durable in seen)
    assert len({applied for applied, _ in seen}) > 3, "the replies should span many batches"
    assert appends_on == {sequencer.JournalThread.NAME}
    writer = engine._writer
    await engine.stop()
    assert not writer._thread.is_alive()
    assert engine.machine.last_sequence == 1 + total


async def test_a_failed_write_fails_its_batch_but_not_the_durable_one_before(tmp_path: Path,
        python_journal_thread: None):
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    append = engine._journal.append_framed
    writes = []

    def append_then_fail(framed):
        writes.append(framed.count)
        if len(writes) > 1:
            raise OSError("disk gone")
        time.sleep(0.05)  # the second batch queues up while the first is written
        append(framed)

    engine._journal.append_framed = append_then_fail
    first = asyncio.ensure_future(engine.submit(c.Tick()))
    await asyncio.sleep(0.01)
    second = [asyncio.ensure_future(engine.submit(c.Tick())) for _ in range(3)]
    assert (await first).status == 200
    for future in second:
        with pytest.raises(CrowdexError) as refused:
            await future
        assert refused.value.code == "unavailable"
    assert writes == [1, 3]
    assert engine.machine.last_sequence == 2  # the durable batch applied, the failed one not
    with pytest.raises(CrowdexError):
        await engine.submit(c.Tick())


async def test_an_apply_failure_stops_the_engine_and_says_what_was_recorded(tmp_path: Path,
        python_journal_thread: None):
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    append, apply_batch = engine._journal.append_framed, engine.machine.apply_batch
    calls = []

    def slow_append(framed):
        time.sleep(0.02)  # the next batch is being written while this one is applied
        append(framed)

    def broken_apply(first_sequence, entries, payloads=None):
        calls.append(len(entries))
        if len(calls) == 1:
            raise RuntimeError("a bug in a command's apply")
        return apply_batch(first_sequence, entries, payloads)

    engine._journal.append_framed = slow_append
    engine.machine.apply_batch = broken_apply
    first = asyncio.ensure_future(engine.submit(c.Tick()))
    await asyncio.sleep(0.005)
    second = asyncio.ensure_future(engine.submit(c.Tick()))  # journaled while the first applies
    for future in (first, second):
        with pytest.raises(CrowdexError) as refused:
            await future
        assert refused.value.code == "unavailable"
        assert "recorded" in refused.value.message
    assert engine.failed is not None and calls == [1]
    assert [sequence for sequence, _ in engine._journal.read(0)] == [1, 2, 3]


async def test_a_snapshot_child_reaped_elsewhere_is_not_counted_as_written(
        tmp_path: Path, monkeypatch, caplog):
    monkeypatch.setattr(sequencer, "SNAPSHOT_IN_CHILD", True)
    real_waitpid = sequencer.os.waitpid

    def reaped_first(pid: int, options: int):
        real_waitpid(pid, options)  # as a child watcher elsewhere in the process would
        raise ChildProcessError(10, "No child processes")

    monkeypatch.setattr(sequencer.os, "waitpid", reaped_first)
    engine = Engine(tmp_path, WallClock(), snapshot_every=1)
    await engine.start()
    ids = await _venue(engine, 1)
    assert (await engine.submit(c.Deposit(ids[0], 5, "d"))).status == 201
    await engine._snapshot_task
    assert "reaped elsewhere" in caplog.text and engine.failed is None
    assert engine._snapshotted < engine.machine.last_sequence
    live_hash = engine.machine.state_hash()
    await engine.stop()  # so the clean stop writes one itself
    again = Engine(tmp_path, WallClock())
    assert again.recover() == 0 and again.machine.state_hash() == live_hash


def _can_run_realtime() -> bool:
    """Whether this process may give a thread SCHED_FIFO (tried on a throwaway thread)."""
    import os
    import threading

    outcome = []

    def probe() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(
                os.sched_get_priority_min(os.SCHED_FIFO)))
            outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    return outcome[0]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("realtime", [True, False])
async def test_the_journal_has_its_own_thread_at_realtime_priority_when_allowed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, realtime: bool, compiled: bool):
    import threading

    monkeypatch.setattr(sequencer, "JOURNAL_THREAD_REALTIME", realtime)
    monkeypatch.setattr(sequencer, "JOURNAL_THREAD_COMPILED", compiled)
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await _venue(engine, 2)
    writer = engine._writer
    assert writer.compiled is compiled
    thread = writer._thread
    assert thread.name == "crowdex-journal" and thread is not threading.current_thread()
    # The policy the thread gave itself as it started (it has appended since).
    expected = os.SCHED_FIFO if realtime and _can_run_realtime() else os.SCHED_OTHER
    assert os.sched_getscheduler(thread.native_id) == expected
    await engine.stop()
    assert not thread.is_alive()
    assert engine._writer is None  # stopped with the engine


def _fail_the_journals_descriptor(engine: Engine, how: str) -> None:
    """Put something else under the journal's open descriptor: a read-only file, so the next
    write fails (EBADF); or a pipe, so the write goes through and the fsync fails (EINVAL)."""
    descriptor = engine._journal._fd
    if how == "write":
        other = os.open(os.devnull, os.O_RDONLY)
    else:
        reader, other = os.pipe()
        engine._kept_pipe_reader = reader  # the pipe stays open: its write end takes the bytes
    os.dup2(other, descriptor)
    os.close(other)


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("how", ["write", "fsync"])
async def test_a_failed_write_or_fsync_stops_the_engine_with_the_systems_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, compiled: bool, how: str):
    """A real failure of the journal's write or fsync (not a stand-in for it), whichever loop
    makes the call: the batch's clients are told ``unavailable``, nothing of it is applied,
    the engine stops with the system's error, and the journal refuses to go on."""
    import errno

    monkeypatch.setattr(sequencer, "JOURNAL_THREAD_COMPILED", compiled)
    engine = Engine(tmp_path, WallClock())
    await engine.start()
    await engine.submit(c.Genesis("op", False, 0))
    assert engine._writer.compiled is compiled
    _fail_the_journals_descriptor(engine, how)
    with pytest.raises(CrowdexError) as refused:
        await asyncio.wait_for(engine.submit(c.Tick()), 10)
    assert refused.value.code == "unavailable"
    assert isinstance(engine.failed, OSError)
    assert engine.failed.errno == (errno.EBADF if how == "write" else errno.EINVAL)
    assert engine.machine.last_sequence == 1
    assert engine._journal._failed is engine.failed
    with pytest.raises(CrowdexError):
        await engine.submit(c.Tick())
    await engine.stop()
    if how == "fsync":
        os.close(engine._kept_pipe_reader)


@pytest.mark.parametrize("sync", [True, False])
@pytest.mark.parametrize("compiled", [True, False])
async def test_the_journal_thread_appends_every_batch_through_segment_rolls(
        tmp_path: Path, compiled: bool, sync: bool):
    """Batches handed to the journal's thread one after another, in small segments: the
    compiled loop writes every batch, the rolls and the journal's first segment included,
    without handing one to the thread's Python (which would need the interpreter lock back);
    every record reads back in order, and each batch's fsync is counted."""
    import random

    from engine.journal import FileJournal, frame_payloads

    fsyncs: list[float] = []
    journal = FileJournal(tmp_path, sync=sync, segment_size_max=600, on_fsync=fsyncs.append)
    writer = sequencer.JournalThread(journal, asyncio.get_running_loop(), compiled=compiled)
    assert writer.compiled is compiled
    rng = random.Random(7)
    written: list[tuple[int, bytes]] = []
    try:
        for _ in range(80):
            payloads = [rng.randbytes(rng.randrange(0, 90)) for _ in range(rng.randrange(1, 6))]
            first = len(written) + 1
            await asyncio.wait_for(writer.append(frame_payloads(first, payloads)), 10)
            written += [(first + i, p) for i, p in enumerate(payloads)]
            assert journal.last_sequence == len(written)
    finally:
        writer.stop()
    assert writer.python_batches == 0
    if sync:  # each batch's fsync timed, whichever loop made it
        assert len(fsyncs) == 80 and all(seconds > 0 for seconds in fsyncs)
    else:
        assert fsyncs == []
    assert len(list(tmp_path.glob("journal-*.log"))) > 5
    assert list(journal.read()) == written
    journal.close()
    assert list(FileJournal(tmp_path, read_only=True).read()) == written


@pytest.mark.parametrize("compiled", [True, False])
async def test_the_journal_thread_writes_zeros_ahead_of_the_records(tmp_path: Path,
                                                                    compiled: bool):
    """Whichever loop writes, a batch that passes the zeros written so far is followed by
    more (``engine.journal``), and the position is put back where the records end: the file
    grows at few batches, zeros always follow the records, every record reads back, also
    after a reopen that writes on."""
    from engine.journal import FileJournal, frame_payloads

    size = 1 << 20
    journal = FileJournal(tmp_path, segment_size_max=size)
    writer = sequencer.JournalThread(journal, asyncio.get_running_loop(), compiled=compiled)
    written: list[tuple[int, bytes]] = []
    grew = batches = 0
    try:
        for first in range(1, 12_000, 4):
            before = journal.segment_paths[-1].stat().st_size if journal.segment_paths else 0
            payloads = [bytes([first % 255 + 1]) * (50 + n * 30) for n in range(4)]
            await asyncio.wait_for(writer.append(frame_payloads(first, payloads)), 10)
            written += [(first + n, p) for n, p in enumerate(payloads)]
            path, segment = journal.segment_paths[-1], journal._segments[-1]
            grew += path.stat().st_size != before
            batches += 1
            assert not any(path.read_bytes()[segment.size_bytes:])
    finally:
        writer.stop()
        journal.close()
    assert writer.python_batches == 0
    paths = journal.segment_paths
    assert len(paths) > 1 and grew * 10 < batches
    assert all(path.stat().st_size == size for path in paths[:-1])  # zeros up to their size
    assert list(FileJournal(tmp_path, read_only=True).read()) == written
    reopened = FileJournal(tmp_path, segment_size_max=size)
    try:  # written on from where its records end, over the zeros
        reopened.append([(len(written) + 1, b"after")])
    finally:
        reopened.close()
    assert list(FileJournal(tmp_path, read_only=True).read()) == written + [
        (len(written) + 1, b"after")]


@pytest.mark.parametrize("compiled", [True, False])
async def test_out_of_descriptors_at_a_roll_the_journal_thread_goes_on_in_the_active_segment(
        tmp_path: Path, segment_descriptors, compiled: bool):
    """No descriptor for a new segment (EMFILE) when one is due: whichever loop writes, the
    batch goes into the active segment past its size, and the roll happens once a descriptor
    is free again; nothing is refused and every record reads back."""
    from engine.journal import FileJournal, frame_payloads, segment_name

    journal = FileJournal(tmp_path, segment_size_max=300)
    writer = sequencer.JournalThread(journal, asyncio.get_running_loop(), compiled=compiled)
    written = []
    try:
        for first in range(1, 9):
            segment_descriptors.full = 1 < first < 8
            payload = bytes([first]) * 100
            await asyncio.wait_for(writer.append(frame_payloads(first, [payload])), 10)
            written.append((first, payload))
    finally:
        writer.stop()
        journal.close()
    assert writer.python_batches == 0
    assert [path.name for path in journal.segment_paths] == [segment_name(1), segment_name(8)]
    assert list(FileJournal(tmp_path, read_only=True).read()) == written


@pytest.mark.parametrize("compiled", [True, False])
async def test_a_failed_fsync_of_a_new_segments_directory_fails_the_batch_and_the_journal(
        tmp_path: Path, compiled: bool):
    """A roll makes the new segment's header and then its name durable before its first
    batch is written, whichever loop does it: with a pipe under the directory's descriptor
    the directory's fsync fails (EINVAL), the rolling batch fails with the system's error,
    and the journal refuses to go on."""
    import errno

    from engine.journal import FileJournal, JournalError, frame_payloads

    journal = FileJournal(tmp_path, segment_size_max=200)
    writer = sequencer.JournalThread(journal, asyncio.get_running_loop(), compiled=compiled)
    reader, other = os.pipe()
    try:
        await asyncio.wait_for(writer.append(frame_payloads(1, [b"a" * 150])), 10)
        os.dup2(other, journal._dir_fd)
        with pytest.raises(OSError) as failed:
            await asyncio.wait_for(writer.append(frame_payloads(2, [b"b" * 150])), 10)
        assert failed.value.errno == errno.EINVAL
        assert journal.last_sequence == 1
        with pytest.raises(JournalError, match="failed earlier"):
            journal.append([(2, b"c")])
    finally:
        writer.stop()
        journal.close()
        os.close(reader)
        os.close(other)
    assert list(FileJournal(tmp_path, read_only=True).read()) == [(1, b"a" * 150)]


def _modes(data_dir: Path) -> dict[str, int]:
    """What is inside the data dir (which itself stays traversable for PostgreSQL's user)."""
    return {str(path.relative_to(data_dir)): stat.S_IMODE(path.stat().st_mode)
            for path in sorted(data_dir.rglob("*"))}


@pytest.fixture
def open_umask():
    """The usual umask (022), under which files are made readable by all unless asked."""
    old = os.umask(0o022)
    yield
    os.umask(old)


async def test_the_journal_and_snapshots_are_readable_by_the_server_user_only(
        tmp_path: Path, open_umask, snapshot_writer: str):
    """API.md: mode 0600 files in 0700 folders (issue 15 #10)."""
    data_dir = tmp_path / "venue"
    engine = Engine(data_dir, WallClock(), snapshot_every=8)
    await engine.start()
    await _venue(engine, 12)
    if engine._snapshot_task is not None:
        await engine._snapshot_task
    await engine.stop()
    modes = _modes(data_dir)
    assert any(name.startswith("journal/") for name in modes)
    assert any(name.startswith("snapshots/") for name in modes)
    assert {name: mode for name, mode in modes.items()
            if mode != (0o700 if (data_dir / name).is_dir() else 0o600)} == {}


async def test_a_venue_left_readable_by_an_older_version_is_tightened_on_start(
        tmp_path: Path, open_umask):
    data_dir = tmp_path / "venue"
    engine = Engine(data_dir, WallClock())
    await engine.start()
    await _venue(engine, 2)
    await engine.stop()
    for path in data_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    again = Engine(data_dir, WallClock())
    again.recover()
    again._journal.close()
    assert set(_modes(data_dir).values()) == {0o700, 0o600}


@pytest.mark.parametrize("compiled", [True, False])
async def test_zeros_the_disk_refuses_do_not_fail_the_batch(tmp_path: Path, compiled: bool):
    """Room ahead of the records is an optimisation: a disk that takes the batch but not the
    zeros after it (full; here a file size limit) fails nothing, whichever loop writes, and
    the records end where they did."""
    import resource
    import signal

    from engine.journal import SEGMENT_HEADER_SIZE, FileJournal, frame_payloads

    journal = FileJournal(tmp_path)
    writer = sequencer.JournalThread(journal, asyncio.get_running_loop(), compiled=compiled)
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    first = frame_payloads(1, [b"a" * 100])
    second = frame_payloads(2, [b"b" * 100])
    try:
        # The file may hold the first batch and 40 bytes more: not its 64 KiB of zeros.
        resource.setrlimit(resource.RLIMIT_FSIZE, (SEGMENT_HEADER_SIZE + len(first.data) + 40,
                                                   limit[1]))
        await asyncio.wait_for(writer.append(first), 10)
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        await asyncio.wait_for(writer.append(second), 10)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limit)
        signal.signal(signal.SIGXFSZ, handler)
        writer.stop()
        journal.close()
    assert writer.python_batches == 0
    assert list(FileJournal(tmp_path, read_only=True).read()) == [(1, b"a" * 100),
                                                                   (2, b"b" * 100)]
