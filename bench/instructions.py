"""A mixed journal kept in a directory, replayed for CPU rates or counted in instructions.

Issue 14's mixed replay moves a few percent a change, and this host's speed moves more than
that from minute to minute (the CPU rate of one replay by +-15% within a process). Two
trees are told apart by what does not move:

- ``--callgrind``: the instructions of one replay, counted by valgrind's callgrind with
  instrumentation switched on (``callgrind_control -i on``) only around it, not around the
  interpreter's start, the imports and the kernels' load, with ``PYTHONHASHSEED=0`` (string
  hashes move dict and set probes: ~0.3% between processes otherwise). Deterministic to a
  few parts in ten thousand; it does not see cache misses, which a change of data layout may
  trade against instructions. Needs valgrind (``apt-get install valgrind``); ~3 minutes for
  a 60k-command journal. The first count of a tree may compile kernels for valgrind's CPU
  and count them: count twice.
- without it: the replay ``--reps`` times in this process, each one's CPU rate and their
  median (compare trees alternately, in the same minutes).

The journal is built once into ``--data-dir`` (``bench.venue``: the traffic of
``crowdex bench recovery --mix mixed``) and replayed from there by every tree compared:
``PYTHONPATH=TREE python -m bench.instructions --data-dir D --callgrind`` for each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import venue

COUNT_FLAG = "--count-child"  # the process valgrind runs: replay once, counted


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crowdex bench instructions",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", type=Path, required=True,
                   help="where the journal is (built there first if it has none)")
    venue.add_arguments(p, "building the journal: ")
    p.add_argument("--seed", type=int, default=7, help="the workload's random seed")
    p.add_argument("--reps", type=int, default=5, help="replays for the CPU rates")
    p.add_argument("--callgrind", action="store_true",
                   help="count the instructions of one replay instead (valgrind)")
    p.add_argument(COUNT_FLAG, action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(commands=200_000)  # issue 14's figures are of the 200k mixed journal
    args = p.parse_args(argv)
    if args.count_child:
        return _count_child(args.data_dir)
    if not (args.data_dir / "journal").exists():
        began = time.perf_counter()
        args.data_dir.mkdir(parents=True, exist_ok=True)
        written = venue.build_journal(args.data_dir, args.commands, args.seed, days=args.days,
                                      investors=args.investors, group_max=args.group_max)
        print(f"journal: {written.total:,} entries written in "
              f"{time.perf_counter() - began:.1f} s, state {written.state_hash[:16]}")
    if args.callgrind:
        count, state = count_instructions(args.data_dir)
        print(f"instructions of one replay: {count:,} (state {state[:16]})")
        return 0
    from engine.markets import warm_up

    warm_up()  # the kernels loaded before the first replay's clock starts
    rates = []
    for _ in range(args.reps):
        commands, cpu, state = _replay_timed(args.data_dir)
        rates.append(commands / cpu)
        print(f"replay: {commands:,} commands, {commands / cpu:,.0f} a second of CPU "
              f"(state {state[:16]})")
    print(f"median: {statistics.median(rates):,.0f} commands a second of CPU")
    return 0


def _replay_timed(data_dir: Path) -> tuple[int, float, str]:
    from engine.replay import replay

    began = time.process_time()
    result = replay(data_dir)
    return result.commands, time.process_time() - began, result.state_hash


def count_instructions(data_dir: Path) -> tuple[int, str]:
    """(instructions, state hash) of one replay of ``data_dir``'s journal, run by this
    module's ``--count-child`` under callgrind (see the module)."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="crowdex-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={out}", sys.executable, "-m", "bench.instructions",
             "--data-dir", str(data_dir), COUNT_FLAG],
            env=env, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("state ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"the counted replay failed ({done.returncode}):\n"
                             f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        files = sorted(Path(tmp).glob("callgrind.out*"))
        return sum(callgrind_total(f.read_text()) for f in files), lines[-1].split()[1]


def callgrind_total(text: str) -> int:
    """The instructions a callgrind output file counts (its ``totals:`` line; 0 if none:
    a file of a part never switched on)."""
    for line in text.splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def _count_child(data_dir: Path) -> int:
    """Under callgrind: one replay, instrumented alone."""
    from engine.markets import warm_up
    from engine.replay import replay

    warm_up()  # not counted: the kernels loaded before the count starts
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    result = replay(data_dir)
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)
    print(f"state {result.state_hash}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
