"""``crowdex bench restart``: how long a crashed server takes to answer again.

Issue 14's target: after a crash, with a snapshot at most 100k commands old, ``/healthz`` answers
200 in under 2 s with a warm machine (the compiled kernels cached, the embedded PostgreSQL's data
dir initialised). This builds a real venue's journal (``bench.recovery``'s traders and order
mix), writes a snapshot ``--tail`` entries before its end (as the server's own cadence leaves
at most 100,000 entries after the newest snapshot), then runs the real ``crowdex serve`` on that
data dir: once to warm up (it initialises the embedded PostgreSQL), then ``--repeat`` times
killed with SIGKILL mid-life and restarted, timing each restart from the process's start to
the first ``/healthz`` 200. The figure is the median restart; the replay of the tail alone
(in this process, the same code recovery runs) is printed beside it so the rest (interpreter
and imports, PostgreSQL, migrations, the snapshot's load) can be read off.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.gateway import free_port, stop_process, wait_healthy
from bench.recovery import build_journal
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.replay import apply_records
from engine.snapshot import write_snapshot

START_TIMEOUT_S = 120.0
OPERATOR_KEY = "bench-restart-operator-key"


def snapshot_before_tail(data_dir: Path, tail: int) -> tuple[int, float]:
    """Write the state ``tail`` entries before the journal's end as the newest snapshot;
    returns (its sequence, seconds this process takes to replay the tail after it)."""
    journal = FileJournal(data_dir / "journal", sync=False, read_only=True)
    try:
        last = journal.last_sequence
        at = max(0, last - tail)
        machine = StateMachine()
        machine.quiet = True
        apply_records(machine, ((s, p) for s, p in journal.read(0) if s <= at), {})
        write_snapshot(data_dir / "snapshots", at, machine.arrays(), machine.meta(),
                       shared_chunks=True)  # as the server's writers do
        started = time.perf_counter()
        apply_records(machine, journal.read(at), {})
        return at, time.perf_counter() - started
    finally:
        journal.close()


class Server:
    """One ``crowdex serve`` child on the bench's data dir."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.data_dir, self.log_path = data_dir, log_path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it and wait for ``/healthz`` 200; the seconds that took."""
        args = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--operator-key", OPERATOR_KEY,
                "--log-format", "text"]
        with open(self.log_path, "ab") as log:
            started = time.monotonic()
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        # Asked every 10 ms: the figure is the time to the first answer.
        wait_healthy(f"http://127.0.0.1:{self.port}", self.proc, START_TIMEOUT_S, poll_s=0.01)
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL, the crash; the embedded PostgreSQL it started lives on and is adopted by
        the next start."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM: a clean stop, which also stops the embedded PostgreSQL."""
        if self.proc is not None:
            stop_process(self.proc)


def measure(data_dir: Path, repeat: int) -> tuple[float, list[float], float]:
    """(the first start's seconds, each restart's seconds after a SIGKILL, and a start's
    after a clean stop, which also starts the embedded PostgreSQL again)."""
    log_path = data_dir.parent / "serve.log"
    server = Server(data_dir, log_path)
    first = server.start()
    restarts = []
    try:
        for _ in range(repeat):
            server.kill()
            server = Server(data_dir, log_path)
            restarts.append(server.start())
        server.stop()
        # A clean stop wrote a snapshot: remove it, so this start replays the same tail the
        # crash restarts did (the bench's own snapshot stays, the oldest).
        snapshots = sorted((data_dir / "snapshots").glob("snapshot-*.snap"))
        if len(snapshots) > 1:
            snapshots[-1].unlink()
        server = Server(data_dir, log_path)
        clean = server.start()
    finally:
        server.stop()
    return first, restarts, clean


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crowdex bench restart", description=__doc__.split("\n")[0])
    p.add_argument("--orders", type=int, default=300_000,
                   help="order commands in the journal (%(default)s)")
    p.add_argument("--tail", type=int, default=99_000,
                   help="journal entries after the newest snapshot (%(default)s; the server "
                        "snapshots every 100,000)")
    p.add_argument("--repeat", type=int, default=3, help="crash-restarts timed (%(default)s)")
    p.add_argument("--seed", type=int, default=7, help="the workload's random seed")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="crowdex-bench-restart-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir(mode=0o700)
        prefix, entries = build_journal(data_dir, args.orders, args.seed)
        at, tail_seconds = snapshot_before_tail(data_dir, args.tail)
        total = prefix + len(entries)
        print(f"journal: {total:,} entries, snapshot at {at:,}, tail {total - at:,} "
              f"(replayed alone in {tail_seconds:.2f} s)", file=sys.stderr)
        first, restarts, clean = measure(data_dir, args.repeat)
    median = statistics.median(restarts)
    figures = {
        "journal_entries": total, "snapshot_sequence": at, "tail_entries": total - at,
        "tail_replay_seconds": round(tail_seconds, 3),
        "first_start_seconds": round(first, 3),
        "restart_seconds": [round(s, 3) for s in restarts],
        "restart_seconds_median": round(median, 3),
        "start_after_clean_stop_seconds": round(clean, 3),
        "target_seconds": 2.0,
    }
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name}: {value}")
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
