"""The snapshot follower: a second process that writes the venue's periodic snapshots, so the
serving process does none of that work while it serves.

Forking a snapshot writer (``engine.sequencer.snapshot_fork``) shares the server's pages with
the child, and while the child lives every page the event loop writes is a copy-on-write fault:
WebSocket p99 doubled in the runs a snapshot fell into (issue 14). The follower instead keeps its
own copy of the state: it loads the newest snapshot, follows the journal read-only
(``engine.journal.JournalTail``), applies the entries quietly in runs as recovery does
(``engine.replay.apply_blocks``: following `bench gateway`'s 20k orders/s, every one with a
client_order_id and a fill, costs ~3.3 us of CPU an order here, ~7% of a core, its snapshots
included) and writes a snapshot every ``snapshot_every`` commands, the same file the server would.

It applies only what the server has made durable: a snapshot holding an entry that a power loss
then takes out of the journal would leave the venue unable to start ("journal ends at X but the
snapshot is at Y"). The server writes its durable sequence, as a decimal line, on the follower's
stdin at most every ``TELL_INTERVAL_S``; the follower reports each snapshot it published as a
line ``snapshot <sequence>`` on its stdout. Stdin's end (the server gone) ends the follower, and
on Linux so does the server's death itself (``PR_SET_PDEATHSIG``), so a killed server leaves
nothing writing snapshots. The follower never takes the data dir's lock and never writes the
journal; a snapshot it is killed in the middle of is a temporary file nobody loads (the rename
publishes a whole one), removed by the next ``prune``.

``Follower`` is the server's handle on the process (``engine.sequencer.Engine`` supervises it);
``python -m engine.follower`` is the process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from engine.journal import JournalTail
from engine.machine import StateMachine
from engine.replay import CHUNK_ENTRIES, apply_blocks
from engine.skips import load_skips
from engine.snapshot import load_latest, prune, write_snapshot
from engine.snapshot_upgrade import upgrade

log = logging.getLogger("crowdex.engine.follower")

# How often the server tells the follower its durable sequence: a write on a pipe from the
# event loop, never one per batch. The follower is at most this far behind what it may apply.
TELL_INTERVAL_S = 0.025
# Stopping: SIGTERM, then SIGKILL if it has not ended after this long.
STOP_TIMEOUT_S = 5.0
# The follower runs in the idle scheduling class (SCHED_IDLE, Linux; the whole process from its
# first instruction, its threads included): it gets a CPU only when nothing else wants one,
# and any thread that wakes takes the CPU from it at once. At niceness 10, as before, it held
# a core for up to a scheduler slice (~1.4 ms here) while the server's loop, its journal
# thread or the clients' traffic waited for one: at 20k orders/s on this 2-core machine (the
# load client on it too), p99 medians of three 3 s runs were 5.7-7.8 ms with it at niceness
# 10 and 5.2-7.1 ms at SCHED_IDLE, and the load client's own lateness p99 1.6-2.7 ms against
# 1.3-1.6 ms, in alternating runs (bench/HISTORY.md, session 16). A venue so busy that no
# CPU is ever idle starves it: it falls behind, and past FOLLOWER_BEHIND_MAX_SNAPSHOTS the
# server forks its snapshots itself (engine.sequencer), as with any follower that cannot keep
# up.
# CROWDEX_FOLLOWER_SCHED_IDLE=0 runs it at FOLLOWER_NICE instead, for measuring.
FOLLOWER_SCHED_IDLE = os.environ.get("CROWDEX_FOLLOWER_SCHED_IDLE", "1") != "0"
# Its niceness: what it runs at where the idle class cannot be had (not Linux), or with
# FOLLOWER_SCHED_IDLE off. Not the lowest (19): on a busy 2-core machine a follower at 19 got
# ~1.5% of a core beside a loop at 0, less than following cost then.
FOLLOWER_NICE = 10
# The snapshot (its state encoded, written, published and the old ones pruned: ~45 ms of CPU
# and ~50 ms of disk for 50 MB) is written by a thread of its own at the idle scheduling class
# too (``at_idle_priority``), so a follower at FOLLOWER_NICE writes it at SCHED_IDLE as well.
# The follower waits for the writer (nothing else changes its state meanwhile).
# CROWDEX_FOLLOWER_IDLE_WRITE=0 writes it at the follower's own priority, for measuring.
WRITE_AT_IDLE = os.environ.get("CROWDEX_FOLLOWER_IDLE_WRITE", "1") != "0"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
SNAPSHOT_LINE = b"snapshot "
# While it applies, the follower says how far it got (a line ``applied <sequence>``) at most
# this often: the server tells a follower that is behind but moving (a burst of traffic on a
# busy machine, its low priority) from one that is wedged (engine.sequencer).
PROGRESS_LINE = b"applied "
PROGRESS_INTERVAL_S = 0.5


class Follower:
    """The server's handle on one follower process: start, tell, hear, stop (by its pid)."""

    def __init__(self, data_dir: Path, snapshot_every: int, keep: int) -> None:
        self.data_dir = Path(data_dir)
        self.snapshot_every = snapshot_every
        self.keep = keep
        self.process: subprocess.Popen | None = None
        self._told = -1
        self._heard = b""  # stdout read so far, up to the last whole line
        self.applied = -1  # the last sequence it said it applied
        self.written = 0  # snapshots it said it published
        self.progressed_at = time.monotonic()  # when it last said so (or was started)

    def start(self) -> None:
        """Start the process (raises OSError if it cannot be). Call it from the thread that
        lives as long as the server (the event loop's): the parent-death signal is tied to
        the thread that started the child."""
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root,
                                                          env.get("PYTHONPATH")]))
        # At its priority from its first instruction: the imports and the kernels' loading
        # (~1-2 s of CPU) at the server's priority stalled batches by 10-50 ms as it started.
        launch = f"import os\nos.nice({FOLLOWER_NICE})\n"
        if FOLLOWER_SCHED_IDLE:
            launch += ("try:\n    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\n"
                       "except (AttributeError, OSError):\n    pass\n")
        launch += ("import runpy\n"
                   "runpy.run_module('engine.follower', run_name='__main__', alter_sys=True)")
        self.progressed_at = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-c", launch, "--data-dir", str(self.data_dir),
             "--snapshot-every", str(self.snapshot_every), "--keep", str(self.keep),
             "--parent", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        os.set_blocking(self.process.stdin.fileno(), False)
        os.set_blocking(self.process.stdout.fileno(), False)
        log.info("snapshot follower started (pid %d)", self.process.pid)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tell(self, durable: int) -> None:
        """Tell the follower it may apply up to ``durable`` (a non-blocking write; skipped
        when unchanged, and when the pipe is full: the follower is then wedged, and the lag
        check sees it)."""
        if durable == self._told:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self.process.stdin.fileno(), b"%d\n" % durable)
            self._told = durable

    def snapshots(self) -> int:
        """The newest snapshot the follower has reported since the last call, or -1."""
        newest = -1
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self.process.stdout.fileno(), 65536):
                self._heard += chunk
        *lines, self._heard = self._heard.split(b"\n")
        for line in lines:
            if line.startswith(SNAPSHOT_LINE):
                newest = max(newest, int(line[len(SNAPSHOT_LINE):]))
                self.written += 1
                self.progressed_at = time.monotonic()  # a snapshot is progress too
            elif line.startswith(PROGRESS_LINE):
                applied = int(line[len(PROGRESS_LINE):])
                if applied > self.applied:
                    self.applied, self.progressed_at = applied, time.monotonic()
        return newest

    def kill(self) -> None:
        """SIGKILL now, without waiting (it is reaped by ``stop`` or ``alive``)."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)

    async def stop(self) -> int:
        """SIGTERM, wait, SIGKILL after ``STOP_TIMEOUT_S``; returns the newest snapshot it
        reported (-1 if none since the last ``snapshots``)."""
        process = self.process
        if process.stdout.closed:
            return -1
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                log.warning("the snapshot follower (pid %d) did not end on SIGTERM; killing it",
                            process.pid)
                self.kill()
                await asyncio.to_thread(process.wait)
        newest = self.snapshots()
        process.stdin.close()
        process.stdout.close()
        return newest


# ---- the follower process -------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """Be killed when the server dies (Linux); and if it is gone already, end now."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            log.warning("PR_SET_PDEATHSIG failed (errno %d); stdin's end still stops this",
                        ctypes.get_errno())
    if os.getppid() != parent:
        sys.exit(0)  # the server died before the signal was asked for


class _Durable:
    """The durable sequence as the server tells it on stdin."""

    def __init__(self) -> None:
        self.sequence = -1
        self.ended = False
        self._partial = b""

    def wait(self, timeout_s: float | None) -> None:
        """Read what the server wrote, waiting up to ``timeout_s`` for something."""
        ready, _, _ = select.select([0], [], [], timeout_s)
        if not ready:
            return
        chunk = os.read(0, 65536)
        if not chunk:
            self.ended = True
            return
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        if lines:
            self.sequence = max(self.sequence, int(lines[-1]))


def follow(data_dir: Path, snapshot_every: int, keep: int, durable: _Durable) -> None:
    """Load the newest snapshot, then apply the journal up to what ``durable`` says and write
    a snapshot every ``snapshot_every`` commands, until the server ends."""
    machine = StateMachine()
    snapshot_dir = data_dir / "snapshots"
    snapshot = load_latest(snapshot_dir, upgrade=upgrade)
    if snapshot is not None:
        machine.load(snapshot.arrays, snapshot.meta)
    snapshotted = machine.last_sequence
    skips = load_skips(data_dir)
    tail = JournalTail(data_dir / "journal", machine.last_sequence)
    machine.quiet = True
    reported = time.monotonic()
    log.info("following %s from sequence %d", data_dir, machine.last_sequence)
    try:
        while not durable.ended:
            durable.wait(None)
            while True:
                due = snapshotted + snapshot_every
                # Runs end at the snapshot's sequence, so snapshots fall exactly every
                # ``snapshot_every`` commands from the newest.
                block = tail.read(min(durable.sequence, due), CHUNK_ENTRIES)
                if block is None:
                    break
                apply_blocks(machine, [block], skips)
                now = time.monotonic()
                if now - reported >= PROGRESS_INTERVAL_S:
                    os.write(1, PROGRESS_LINE + b"%d\n" % machine.last_sequence)
                    reported = now
                if machine.last_sequence == due:
                    def write(due=due) -> None:
                        write_snapshot(snapshot_dir, due, machine.arrays(), machine.meta(),
                                       shared_chunks=True)
                        prune(snapshot_dir, keep=keep)

                    if WRITE_AT_IDLE:
                        at_idle_priority(write)
                    else:
                        write()
                    snapshotted = due
                    os.write(1, SNAPSHOT_LINE + b"%d\n" % due)
                    durable.wait(0)  # what came meanwhile
    finally:
        tail.close()


def at_idle_priority(work: Callable[[], None]) -> None:
    """Run ``work`` in a thread of its own at the idle scheduling class (``WRITE_AT_IDLE``)
    and wait for it; its error is raised here. Where the class cannot be set (not Linux), the
    thread runs at the caller's priority."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # this thread only
        except (AttributeError, OSError):
            pass
        try:
            work()
        except BaseException as error:  # raised again in the caller's thread
            failed.append(error)

    thread = threading.Thread(target=run, name="crowdex-snapshot-writer")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.follower",
                                     description="write a venue's snapshots from its journal")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--snapshot-every", type=int, required=True)
    parser.add_argument("--keep", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True, help="the server's pid")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s crowdex follower %(levelname)s %(message)s")
    _die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the server's to handle
    try:
        follow(args.data_dir, args.snapshot_every, args.keep, _Durable())
    except BrokenPipeError:
        return 0  # the server is gone
    except Exception:
        log.exception("the snapshot follower failed; the server falls back to its own "
                      "snapshots")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
