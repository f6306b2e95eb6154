"""``crowdex bench snapshot``: what the periodic snapshot costs the exchange's one thread.

The server writes a snapshot every ``SNAPSHOT_EVERY`` commands from a forked child
(``engine.sequencer.snapshot_off_loop``). The fork is cheap; what costs is copy-on-write while
the child lives: the parent's first write to each page it shares with the child is a page fault
and a 4 KiB copy, and pages of Python objects count too (a reference count changed, a garbage
collection's pass). So this bench measures, with counts that do not depend on the machine's
load, the parent's minor page faults (``getrusage``) and the CPU and wall time of its batches
while a snapshot child lives against while none does.

It builds a venue's journal (``bench.recovery``'s order flow, or ``--mix mixed``:
``bench.venue``'s busy venue), replays ``--orders`` (``--commands``) of it into a machine, sets
the garbage collector as ``crowdex serve`` does (the recovered state frozen, young collections
every ``GC_YOUNG_THRESHOLD`` allocations), then applies the rest of the journal live, in
batches of ``--batch`` with replies built and one subscriber's updates published, in
``--rounds`` rounds of two windows: a snapshot taken the server's way (the real
``snapshot_off_loop`` path, into a temporary directory: the child writes, and once it is reaped
a thread of this process fsyncs and renames, as the server's does) and batches applied until the
child is reaped, then as many batches with no child. ``--rate`` paces the batches at that many
commands a second (0: back to back, the busiest server).

Printed: per window kind, the faults per batch and the batch time percentiles (CPU of the
applying thread, and wall), the faults a snapshot costs in all, and the child's lifetime with
where its time went (meta encoded, body, write, and its own CPU and faults), and the
publishing thread's fsync and rename after it.
With ``--writer follower`` the snapshots are the follower's instead (``engine.follower``, what
``crowdex serve`` runs on Linux): a process of its own started on the recovered state's snapshot
that follows the journal, told the applied sequence every ``TELL_INTERVAL_S`` as the server tells
it; every batch of that pass counts as one with the follower alive, and its CPU and the
snapshots it wrote are reported.

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from itertools import takewhile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from bench import recovery, venue
from engine import commands as c
from engine import sequencer
from engine.follower import TELL_INTERVAL_S, Follower
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.replay import apply_records, freeze_state, paused_gc, thaw_state
from engine.snapshot import SnapshotStages, prune, publish_snapshot, write_snapshot
from gateway.cli import GC_THRESHOLDS

PERCENTILES = (50, 90, 99)


def _journal(data_dir: Path, args: argparse.Namespace) -> tuple[int, int]:
    """Write the journal; returns (the sequence the recovered state ends at, the last one)."""
    began = time.perf_counter()
    period = max(args.every // args.batch, 1) * args.batch
    args.live = args.rounds * period + args.warm_batches * args.batch
    if args.mix == "mixed":
        written = venue.build_journal(data_dir, args.commands + args.live, args.seed)
        total = written.total
    else:
        prefix, entries = recovery.build_journal(data_dir, args.orders + args.live, args.seed)
        total = prefix + len(entries)
    print(f"journal: {total:,} entries written in {time.perf_counter() - began:.1f} s",
          file=sys.stderr)
    return total - args.live, total


def _recovered(data_dir: Path, upto: int) -> tuple[StateMachine, bytes, np.ndarray]:
    """The state after ``upto`` (replayed as recovery does), and the payloads after it in one
    buffer with their end offsets: decoded batch by batch as a server decodes what arrives, so
    applying them touches no object made before the snapshot's fork."""
    machine = StateMachine()
    machine.quiet = True
    journal = FileJournal(data_dir / "journal", sync=False, read_only=True)
    try:
        with paused_gc():
            apply_records(machine, takewhile(lambda r: r[0] <= upto, journal.read(0)), {})
        payloads = [payload for _sequence, payload in journal.read(upto)]
    finally:
        journal.close()
    machine.quiet = False
    machine.wants = recovery.LIVE_SUBSCRIPTIONS.__contains__
    ends = np.cumsum([len(payload) for payload in payloads], dtype=np.int64)
    return machine, b"".join(payloads), ends


class _Batches:
    """Applies the live entries in batches (decoded, then ``apply_batch`` with replies built and
    updates published), recording each batch's minor faults, CPU and wall time."""

    def __init__(self, machine: StateMachine, data: bytes, ends: np.ndarray, size: int,
                 rate: float) -> None:
        self.machine, self.data, self.size = machine, memoryview(data), size
        self.bounds = np.concatenate(([0], ends)).tolist()
        self.at = 0
        self.interval_s = size / rate if rate > 0 else 0.0
        self._next = time.perf_counter()

    def left(self) -> bool:
        return self.at < len(self.bounds) - 1

    def apply(self) -> tuple[int, float, float]:
        """One batch: (minor faults, CPU us, wall us)."""
        if self.interval_s:
            self._next += self.interval_s
            delay = self._next - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                self._next = time.perf_counter()  # behind: no catching up in a burst
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cpu, wall = time.thread_time(), time.perf_counter()
        bounds, data = self.bounds, self.data
        last = min(self.at + self.size, len(bounds) - 1)
        batch = [c.decode_entry(data[bounds[i]:bounds[i + 1]]) for i in range(self.at, last)]
        self.machine.apply_batch(self.machine.last_sequence + 1, batch)
        self.machine.outbox.clear()
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        self.at = last
        return faults, cpu * 1e6, wall * 1e6


def _stage_writer(directory: Path, report_fd: int) -> sequencer.SnapshotWrite:
    """The server's snapshot write, whose stage times the child sends back on a pipe."""

    def write(sequence: int, arrays: dict, meta: Callable[[], bytes]) -> None:
        stages = SnapshotStages()
        meta_bytes = meta()
        stages.lap("meta")
        write_snapshot(directory, sequence, arrays, meta_bytes, stages=stages, publish=False,
                       shared_chunks=True)
        os.write(report_fd, json.dumps(stages.seconds).encode())

    return write


def _publisher(directory: Path, sequence: int, stages: SnapshotStages) -> threading.Thread:
    """The server's publishing of a written snapshot (fsync, rename), in a thread as there."""

    def publish() -> None:
        publish_snapshot(directory, sequence, stages=stages)
        prune(directory, keep=sequencer.SNAPSHOTS_KEPT)

    thread = threading.Thread(target=publish, name="crowdex-bench-publish")
    thread.start()
    return thread


class _Period(NamedTuple):
    """The batches between two snapshot points: those applied while a snapshot child lived,
    those after it was reaped (all of them when no snapshot was taken), and the child."""

    alive: list[tuple[int, float, float]]
    after: list[tuple[int, float, float]]
    child: dict | None


def _period(batches: _Batches, directory: Path, period: int, snapshot: bool) -> _Period:
    """Take a snapshot the server's way (if ``snapshot``), then apply ``period`` batches."""
    if not snapshot:
        return _Period([], [batches.apply() for _ in range(period) if batches.left()], None)
    read_fd, write_fd = os.pipe()
    sequence, published, publishing = batches.machine.last_sequence, SnapshotStages(), None
    fork_began = time.perf_counter()
    pid = sequencer.snapshot_fork(batches.machine, _stage_writer(directory, write_fd))
    forked = time.perf_counter() - fork_began
    os.close(write_fd)
    alive, after, usage, status, lifetime = [], [], None, 0, 0.0
    for _ in range(period):
        if usage is None:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if not done:
                usage = None
            else:
                lifetime = time.perf_counter() - fork_began
                if os.waitstatus_to_exitcode(status) == 0:
                    publishing = _publisher(directory, sequence, published)
        if not batches.left():
            break
        (alive if usage is None else after).append(batches.apply())
    if usage is None:  # still alive at the period's end (a slow disk): wait for it
        _done, status, usage = os.wait4(pid, 0)
        lifetime = time.perf_counter() - fork_began
        if os.waitstatus_to_exitcode(status) == 0:
            publishing = _publisher(directory, sequence, published)
    if publishing is not None:
        publishing.join()
    stages = json.loads(os.read(read_fd, 1 << 16) or b"{}")
    os.close(read_fd)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("the snapshot child failed")
    staged = {f"{name}_ms": seconds * 1e3 for name, seconds in stages.items()}
    child = {"fork_ms": forked * 1e3, "lifetime_ms": lifetime * 1e3,
             "user_ms": usage.ru_utime * 1e3, "sys_ms": usage.ru_stime * 1e3,
             "minflt": usage.ru_minflt, **staged,
             "other_ms": (lifetime - forked) * 1e3 - sum(staged.values()),
             **{f"published_{name}_ms": seconds * 1e3
                for name, seconds in published.seconds.items()}}
    return _Period(alive, after, child)


def _followed(batches: _Batches, follower: Follower, period: int) -> _Period:
    """``period`` batches with the follower alive, told the applied sequence as the server
    tells it (every ``TELL_INTERVAL_S``, from the applying thread between batches)."""
    rows, told, heard = [], time.perf_counter(), []
    for _ in range(period):
        if not batches.left():
            break
        rows.append(batches.apply())
        if time.perf_counter() - told >= TELL_INTERVAL_S:
            told = time.perf_counter()
            follower.tell(batches.machine.last_sequence)
            heard.append(follower.snapshots())
    return _Period(rows, [], {"snapshots_heard": sum(1 for h in heard if h >= 0)})


def _drain(follower: Follower, upto: int, last: int, every: int) -> dict:
    """Let the follower write the snapshots due up to ``last`` before it is stopped; how many
    were due, and whether the last of them came within 30 s."""
    follower.tell(last)
    due = upto + (last - upto) // every * every
    deadline = time.monotonic() + 30
    newest = upto
    while newest < due and time.monotonic() < deadline:
        newest = max(newest, follower.snapshots())
        time.sleep(TELL_INTERVAL_S)
    return {"follower_snapshots_due": (due - upto) // every,
            "follower_wrote_them": newest >= due}


def _start_follower(data_dir: Path, machine: StateMachine, every: int) -> Follower:
    """A follower on the recovered state: its snapshot written first, so it loads it."""
    shutil.rmtree(data_dir / "snapshots", ignore_errors=True)
    write_snapshot(data_dir / "snapshots", machine.last_sequence, machine.arrays(),
                   machine.meta(), sync=False, shared_chunks=True)
    follower = Follower(data_dir, every, sequencer.SNAPSHOTS_KEPT)
    follower.start()
    follower.tell(machine.last_sequence)
    time.sleep(2.0)  # its start (imports, the snapshot loaded) is not what is measured
    return follower


def _run(data_dir: Path, upto: int, args: argparse.Namespace, snapshot: bool) -> list[_Period]:
    """One pass: the state recovered afresh, the garbage collector set as the server sets it,
    then ``--rounds`` periods, each begun by a snapshot if ``snapshot``."""
    machine, data, ends = _recovered(data_dir, upto)
    period = max(args.every // args.batch, 1)
    batches = _Batches(machine, data, ends, args.batch, args.rate)
    follower = None
    if snapshot and args.writer == "follower":
        follower = _start_follower(data_dir, machine, args.every)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    thresholds = gc.get_threshold()
    freeze_state()  # as crowdex serve does once it has recovered
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        for _ in range(args.warm_batches):
            batches.apply()
        if follower is None:
            return [_period(batches, data_dir / "snapshots", period, snapshot)
                    for _ in range(args.rounds)]
        periods = [_followed(batches, follower, period) for _ in range(args.rounds)]
        drained = _drain(follower, upto, batches.machine.last_sequence, args.every)
        asyncio.run(follower.stop())
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        periods[-1].child.update(
            follower_user_ms=(children.ru_utime - children_before.ru_utime) * 1e3,
            follower_sys_ms=(children.ru_stime - children_before.ru_stime) * 1e3, **drained)
        return periods
    finally:
        if follower is not None and follower.alive():
            follower.kill()
        gc.set_threshold(*thresholds)
        thaw_state()
        gc.collect()


def _summary(rows: list[tuple[int, float, float]]) -> dict:
    if not rows:
        return {"batches": 0}
    faults, cpu, wall = (np.array(column, dtype=float) for column in zip(*rows, strict=True))
    summary = {"batches": len(rows), "faults_per_batch": round(float(faults.mean()), 1),
               "faults_total": int(faults.sum()), "cpu_ms_total": round(float(cpu.sum()) / 1e3, 1)}
    for name, values in (("cpu_us", cpu), ("wall_us", wall)):
        for q in PERCENTILES:
            summary[f"{name}_p{q}"] = round(float(np.percentile(values, q)))
        summary[f"{name}_max"] = round(float(values.max()))
    return summary


def _line(kind: str, s: dict) -> str:
    if not s["batches"]:
        return f"{kind:<12} no batches"
    return (f"{kind:<12}{s['batches']:>6} batches  faults/batch {s['faults_per_batch']:>7.1f}  "
            f"cpu us p50/p90/p99/max {s['cpu_us_p50']}/{s['cpu_us_p90']}/{s['cpu_us_p99']}/"
            f"{s['cpu_us_max']}  wall us p50/p99/max {s['wall_us_p50']}/{s['wall_us_p99']}/"
            f"{s['wall_us_max']}")


def measure(data_dir: Path, args: argparse.Namespace) -> dict:
    """Build the venue's journal, then ``--repeat`` pairs of passes over the same commands:
    one without snapshots, one with a snapshot at the start of each period; the figures."""
    upto, total = _journal(data_dir, args)
    print(f"the state after {upto:,} entries, then {total - upto:,} applied live, "
          f"{args.repeat} times each way", file=sys.stderr)
    pairs = []
    for _ in range(args.repeat):
        pairs.append((_run(data_dir, upto, args, False), _run(data_dir, upto, args, True)))
    return _report(pairs, args)


def _report(pairs: list[tuple[list[_Period], list[_Period]]], args: argparse.Namespace) -> dict:
    quiet = [row for plain, _ in pairs for period in plain for row in period.after]
    alive = [row for _, snap in pairs for period in snap for row in period.alive]
    after = [row for _, snap in pairs for period in snap for row in period.after]
    if args.writer == "follower":
        kinds = {"no_snapshot": _summary(quiet), "follower_alive": _summary(alive)}
    else:
        kinds = {"no_snapshot": _summary(quiet), "child_alive": _summary(alive),
                 "after_child": _summary(after)}
    for kind, summary in kinds.items():
        print(_line(kind, summary), file=sys.stderr)
    # What one snapshot costs: a period that begins with one against the same commands
    # applied without (the same sequences, so a table's growth counts in both).
    extra_faults, extra_cpu_ms = [], []
    for plain, snap in pairs:
        for without, with_ in zip(plain, snap, strict=True):
            rows = with_.alive + with_.after
            extra_faults.append(sum(r[0] for r in rows) - sum(r[0] for r in without.after))
            extra_cpu_ms.append((sum(r[1] for r in rows) - sum(r[1] for r in without.after))
                                / 1e3)
    print(f"a snapshot costs the applying thread {np.mean(extra_faults):,.0f} faults "
          f"(periods: {', '.join(f'{f:,}' for f in extra_faults)}) and "
          f"{np.mean(extra_cpu_ms):.1f} ms of CPU "
          f"({', '.join(f'{ms:.0f}' for ms in extra_cpu_ms)}) over the {args.every:,} "
          "commands after it", file=sys.stderr)
    children = [period.child for _, snap in pairs for period in snap]
    for n, child in enumerate(children, start=1):
        parts = "  ".join(f"{name} {value:.1f}" if isinstance(value, float) else
                          f"{name} {value}" for name, value in child.items())
        print(f"child {n}: {parts}", file=sys.stderr)
    return {
        "mix": args.mix, "batch": args.batch, "rate": args.rate, "every": args.every,
        "writer": args.writer, **kinds,
        "extra_faults_per_snapshot": round(float(np.mean(extra_faults))),
        "extra_cpu_ms_per_snapshot": round(float(np.mean(extra_cpu_ms)), 1),
        "child_lifetime_ms_median": None if args.writer == "follower" else round(float(
            np.median([child["lifetime_ms"] for child in children])), 1),
        "children": [{k: round(v, 2) if isinstance(v, float) else v for k, v in child.items()}
                     for child in children],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crowdex bench snapshot", description=__doc__.split("\n")[0])
    p.add_argument("--mix", choices=("orders", "mixed"), default="orders",
                   help="order flow (the default), or a busy venue's mixed traffic")
    p.add_argument("--orders", type=int, default=400_000,
                   help="--mix orders: orders in the recovered state (%(default)s)")
    p.add_argument("--commands", type=int, default=300_000,
                   help="--mix mixed: commands in the recovered state (%(default)s)")
    p.add_argument("--every", type=int, default=sequencer.SNAPSHOT_EVERY,
                   help="commands between snapshots: a period (%(default)s)")
    p.add_argument("--batch", type=int, default=256, help="commands a batch (%(default)s)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="commands a second offered (0, the default: batches back to back)")
    p.add_argument("--rounds", type=int, default=3,
                   help="periods, each begun by a snapshot, in a pass (%(default)s)")
    p.add_argument("--repeat", type=int, default=2,
                   help="pairs of passes, without and with snapshots (%(default)s)")
    p.add_argument("--warm-batches", type=int, default=20,
                   help="batches applied before the first window (%(default)s)")
    p.add_argument("--nice", type=int, default=sequencer.SNAPSHOT_NICE,
                   help="the snapshot child's niceness (the server's: %(default)s)")
    p.add_argument("--writer", choices=("fork", "follower"), default="fork",
                   help="who writes the snapshots: a forked child (the default) or the "
                   "follower process")
    p.add_argument("--seed", type=int, default=7, help="the workload's random seed")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    sequencer.SNAPSHOT_NICE = args.nice
    from engine.markets import warm_up

    warm_up()
    with tempfile.TemporaryDirectory(prefix="crowdex-bench-snapshot-") as tmp:
        figures = measure(Path(tmp), args)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
