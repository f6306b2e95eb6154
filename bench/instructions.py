"""A mixed journal kept in a directory, replayed for CPU rates or counted in instructions.

Issue 14's mixed replay moves a few percent a change, and this host's speed moves more than
that from minute to minute (the CPU rate of one replay by +-15% within a process). Two
trees are told apart by what does not move:

- ``--callgrind``: the instructions of one replay, counted by valgrind's callgrind with
  instrumentation switched on (``callgrind_control -i on``) only around its apply (what
  ``crowdex bench recovery`` times), not around the interpreter's start, the imports, the
  kernels' load, the first replay of the process (which imports modules and builds decoders
  once) nor the state hash after it, with ``PYTHONHASHSEED=0`` (string hashes move dict and
  set probes: ~0.3% between processes otherwise). Needs valgrind (``apt-get install
  valgrind``); ~2-4 minutes for a 60k-command journal. Count each tree twice: its first
  count compiles the kernels for valgrind's CPU (in the part not counted) and reads ~0.4%
  fewer instructions than the counts after it (three trees, session 28; the memory that
  compile leaves behind, presumably), which agree to ~0.05%.
- ``--callgrind --cache-sim``: the same count with callgrind's cache simulation, for a
  change of data layout, which may trade instructions against cache misses (a lookup by
  account of an object that has left the caches costs ~1 us on this host against 0.15 us
  warm): the misses of the first-level data cache and of the last level, simulated as this
  host's per-core L2 (``--ll``, 512 KiB: what misses it waits on the shared L3 or memory),
  and a cost in cycles that weighs them (``estimated_cycles``). Somewhat slower.
  ``--keep-output DIR`` keeps callgrind's files for ``callgrind_annotate`` (by C function:
  the interpreter's, msgspec's, numba's kernels; Python 3.11 names no Python function).
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
from collections.abc import Iterator
from contextlib import contextmanager
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
    p.add_argument("--cache-sim", action="store_true",
                   help="with --callgrind: simulate the caches too (misses, estimated cycles)")
    p.add_argument("--ll", default=LL_DEFAULT,
                   help="with --cache-sim: the last level simulated, valgrind's "
                        "size,associativity,line (default: this host's per-core L2)")
    p.add_argument("--keep-output", type=Path, metavar="DIR",
                   help="with --callgrind: copy callgrind's output files into DIR "
                        "(callgrind_annotate DIR/callgrind.out*)")
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
        events, state = count_instructions(args.data_dir, args.ll if args.cache_sim else None,
                                           args.keep_output)
        print(f"instructions of one replay: {events['Ir']:,} (state {state[:16]})")
        if args.cache_sim:
            first, last = events["D1mr"] + events["D1mw"], events["DLmr"] + events["DLmw"]
            print(f"first-level data misses: {first:,}; last-level data misses: {last:,} "
                  f"(LL {args.ll}); estimated cycles: {estimated_cycles(events):,}")
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

    clock = _CpuClock()
    result = replay(data_dir, around=clock)
    return result.commands, clock.seconds, result.state_hash


class _CpuClock:
    """The CPU seconds of what it is entered around (``replay``'s apply)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> None:
        self._began = time.process_time()

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.process_time() - self._began


LL_DEFAULT = "524288,8,64"  # this host's L2 a core: 512 KiB, 8 ways, 64-byte lines
# Weights of a miss in cycles, as callgrind's viewers estimate them (KCachegrind's "cycle
# estimation"): a first-level miss ~10, a last-level one ~100.
L1_MISS_CYCLES, LL_MISS_CYCLES = 10, 100


def estimated_cycles(events: dict[str, int]) -> int:
    """Instructions and cache misses weighed into cycles (``events`` with cache simulation)."""
    first = events["I1mr"] + events["D1mr"] + events["D1mw"]
    last = events["ILmr"] + events["DLmr"] + events["DLmw"]
    return events["Ir"] + L1_MISS_CYCLES * first + LL_MISS_CYCLES * last


def count_instructions(data_dir: Path, ll: str | None = None, keep: Path | None = None
                       ) -> tuple[dict[str, int], str]:
    """(events, state hash) of one replay of ``data_dir``'s journal, run by this module's
    ``--count-child`` under callgrind (see the module): the instructions (``Ir``), and with
    ``ll`` (the last level's size,associativity,line) the simulated caches' misses too.
    ``keep``: a directory to copy callgrind's output files into, for ``callgrind_annotate``
    (which C functions, numba's kernels among them, count what)."""
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="crowdex-callgrind-") as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        simulate = [] if ll is None else ["--cache-sim=yes", f"--LL={ll}"]
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", *simulate,
             f"--callgrind-out-file={out}", sys.executable, "-m", "bench.instructions",
             "--data-dir", str(data_dir), COUNT_FLAG],
            env=env, capture_output=True, text=True, check=False)
        lines = [line for line in done.stdout.splitlines() if line.startswith("state ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"the counted replay failed ({done.returncode}):\n"
                             f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        events: dict[str, int] = {}
        for f in sorted(Path(tmp).glob("callgrind.out*")):
            for name, count in callgrind_totals(f.read_text()).items():
                events[name] = events.get(name, 0) + count
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, keep / f.name)
        events.setdefault("Ir", 0)
        return events, lines[-1].split()[1]


def callgrind_totals(text: str) -> dict[str, int]:
    """The events a callgrind output file counts, by name (its ``events:`` and ``totals:``
    lines: ``Ir``, the instructions, and with cache simulation the misses); empty if it has
    no totals (a file of a part never switched on)."""
    names: list[str] = []
    for line in text.splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith("totals:"):
            return dict(zip(names, map(int, line.split()[1:]), strict=True))
    return {}


def _count_child(data_dir: Path) -> int:
    """Under callgrind: one replay, instrumented alone."""
    from engine.markets import warm_up
    from engine.replay import replay

    warm_up()  # not counted: the kernels loaded before the count starts
    # Nor what the first replay of a process does once: import the modules of the components
    # and board rules the journal reaches, build msgspec's decoders of their types, load the
    # kernels warm_up does not (~5% of the instructions of a 60k journal's first replay). The
    # counted replay is the steady state.
    replay(data_dir)
    result = replay(data_dir, around=_counted())
    print(f"state {result.state_hash}")  # the hash, after the apply: not counted
    return 0


@contextmanager
def _counted() -> Iterator[None]:
    """Callgrind's instrumentation of this process on around what it is entered around."""
    pid = str(os.getpid())
    subprocess.run(["callgrind_control", "-i", "on", pid], check=True, capture_output=True)
    yield
    subprocess.run(["callgrind_control", "-i", "off", pid], check=True, capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
