"""``crowdex bench journal``: durable commands per second, group commit against fsync per command.

Both figures come from one run on the same disk: deposits encoded exactly as the sequencer
encodes them (a msgpack ``Entry``) are appended to a ``FileJournal`` in a temporary directory,
first in batches with one fsync per batch, then one command per fsync. Every command counted is
durable when the clock stops. The last line of ``--json`` output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from engine import commands as c
from engine.journal import FileJournal

COMMANDS_DEFAULT = 100_000
BATCH_DEFAULT = 256
SINGLE_COMMANDS_DEFAULT = 2_000  # one fsync each, so fewer keep the run short
COMMANDS_MAX = 10_000_000


def _entries(count: int) -> list[c.Entry]:
    """Realistic deposits: an account, an amount, a reference, an idempotency key and hash."""
    return [
        c.Entry(
            time_us=1_700_000_000_000_000 + i,
            actor=1 + i % 5_000,
            command=c.Deposit(
                account_id=1 + i % 5_000, amount=10_000 + i, reference=f"dep-{i:012d}"
            ),
            idempotency_key=str(uuid.UUID(int=i)),
            request_hash=f"{i:064x}",
        )
        for i in range(count)
    ]


def _run(directory: Path, entries: list[c.Entry], batch: int) -> tuple[float, list[float]]:
    """Append every entry in batches of ``batch``, fsync per batch; return seconds and fsyncs."""
    fsyncs: list[float] = []
    journal = FileJournal(directory, on_fsync=fsyncs.append)
    try:
        started = time.perf_counter()
        sequence = 1
        for start in range(0, len(entries), batch):
            chunk = entries[start : start + batch]
            records = [(sequence + i, c.encode_entry(e)) for i, e in enumerate(chunk)]
            journal.append(records)
            sequence += len(chunk)
        elapsed = time.perf_counter() - started
    finally:
        journal.close()
    return elapsed, fsyncs


def _percentile_us(samples: list[float], fraction: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crowdex bench journal", description=__doc__)
    parser.add_argument("--commands", type=int, default=COMMANDS_DEFAULT,
                        help="commands written with group commit (default %(default)s)")
    parser.add_argument("--batch", type=int, default=BATCH_DEFAULT,
                        help="commands per group commit (default %(default)s)")
    parser.add_argument("--single-commands", type=int, default=SINGLE_COMMANDS_DEFAULT,
                        help="commands written with one fsync each (default %(default)s)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to create the temporary journal (default: the system temp "
                             "dir; point it at the data disk to measure that disk)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    for name in ("commands", "batch", "single_commands"):
        value = getattr(args, name)
        if not 1 <= value <= COMMANDS_MAX:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and {COMMANDS_MAX}")
    return args


def main(argv: list[str]) -> int:
    """Run the benchmark; print both rates and their ratio."""
    args = _parse(argv)
    entries = _entries(max(args.commands, args.single_commands))
    record_bytes = sum(len(c.encode_entry(e)) for e in entries) / len(entries)
    root = Path(tempfile.mkdtemp(prefix="crowdex-bench-journal-", dir=args.dir))
    try:
        group_s, group_fsyncs = _run(root / "group", entries[: args.commands], args.batch)
        single_s, single_fsyncs = _run(root / "single", entries[: args.single_commands], 1)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    group_rate = args.commands / group_s
    single_rate = args.single_commands / single_s
    result = {
        "directory": str(root.parent),
        "record_bytes_mean": round(record_bytes, 1),
        "group_commit": {
            "commands": args.commands, "batch": args.batch, "seconds": round(group_s, 3),
            "commands_per_s": round(group_rate),
            "fsync_us_p50": round(_percentile_us(group_fsyncs, 0.50)),
            "fsync_us_p99": round(_percentile_us(group_fsyncs, 0.99)),
        },
        "fsync_per_command": {
            "commands": args.single_commands, "seconds": round(single_s, 3),
            "commands_per_s": round(single_rate),
            "fsync_us_p50": round(_percentile_us(single_fsyncs, 0.50)),
            "fsync_us_p99": round(_percentile_us(single_fsyncs, 0.99)),
        },
        "ratio": round(group_rate / single_rate, 1),
    }
    print(f"journal in {root.parent}, records {record_bytes:.0f} bytes on average")
    print(f"group commit (batch {args.batch}): {group_rate:,.0f} durable commands/s "
          f"({args.commands} commands, fsync p50 {result['group_commit']['fsync_us_p50']} us)")
    print(f"fsync per command: {single_rate:,.0f} durable commands/s "
          f"({args.single_commands} commands, fsync p50 "
          f"{result['fsync_per_command']['fsync_us_p50']} us)")
    print(f"ratio: {result['ratio']}x")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
