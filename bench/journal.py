"""``crowdex bench journal``: durable commands per second, group commit against fsync per command.

Both figures come from one run on the same disk: deposits encoded exactly as the sequencer
encodes them (a msgpack ``Entry``) are appended to a ``FileJournal`` in a temporary directory,
first in batches with one fsync per batch, then one command per fsync. Every command counted is
durable when the clock stops.

Then the journal's thread as the server runs it (``engine.sequencer.JournalThread``), beside an
event loop kept busy in 200 us callbacks (the server's at load: a read of a few orders, an
apply): the time from handing a batch over to the loop seeing it durable, with the thread's loop
compiled (no interpreter lock to take back) against the Python thread, in alternating rounds.
The last line of ``--json`` output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from engine import commands as c
from engine import sequencer
from engine.journal import FileJournal, frame_payloads

COMMANDS_DEFAULT = 100_000
BATCH_DEFAULT = 256
SINGLE_COMMANDS_DEFAULT = 2_000  # one fsync each, so fewer keep the run short
COMMANDS_MAX = 10_000_000
HANDOFF_BATCHES_DEFAULT = 1_000  # batches handed to the journal thread per round
HANDOFF_ROUNDS = 2  # rounds of each thread, alternating
# A round stops after this long even if its batches are not all done: beside a loop that never
# rests, the Python thread can wait seconds for the interpreter lock (p50 133 ms on a quiet
# machine, with the thread at real-time priority), and the batches it got through say so.
HANDOFF_ROUND_S = 5.0
BUSY_CALLBACK_S = 200e-6  # what keeps the loop busy between the batches, a callback at a time


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


async def _handoffs(directory: Path, payloads: list[bytes], batches: int,
                    compiled: bool) -> list[float]:
    """Seconds from ``JournalThread.append`` to its future done, batch after batch (up to
    ``batches``, for at most ``HANDOFF_ROUND_S``), while the loop runs BUSY_CALLBACK_S
    callbacks back to back (the server's loop at load, in miniature)."""
    loop = asyncio.get_running_loop()
    journal = FileJournal(directory)
    writer = sequencer.JournalThread(journal, loop, compiled=compiled)
    busy = True

    def work() -> None:
        end = time.perf_counter() + BUSY_CALLBACK_S
        while time.perf_counter() < end:
            pass
        if busy:
            loop.call_soon(work)

    seconds = []
    try:
        # Two batches before the loop gets busy and the clock starts, so the thread has
        # entered its loop: entering it takes the interpreter lock, which beside a busy loop
        # can take seconds (the starvation measured below).
        sequence = 1
        for _ in range(2):
            await writer.append(frame_payloads(sequence, payloads))
            sequence += len(payloads)
        loop.call_soon(work)
        deadline = time.perf_counter() + HANDOFF_ROUND_S
        for _ in range(batches):
            started = time.perf_counter()
            await writer.append(frame_payloads(sequence, payloads))
            seconds.append(time.perf_counter() - started)
            sequence += len(payloads)
            if started > deadline:
                break
    finally:
        busy = False
        writer.stop()
        journal.close()
    return seconds


def _handoff_rounds(root: Path, entries: list[c.Entry], batch: int, batches: int) -> dict:
    """Both threads in alternating rounds; their latencies merged per kind."""
    import uvloop

    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)  # as ``crowdex serve`` sets it
    payloads = [c.encode_entry(e) for e in entries[:batch]]
    merged: dict[str, list[float]] = {"python": [], "compiled": []}
    try:
        for round_ in range(HANDOFF_ROUNDS):
            for compiled in (False, True):
                kind = "compiled" if compiled else "python"
                merged[kind] += uvloop.run(_handoffs(root / f"{kind}-{round_}", payloads,
                                                     batches, compiled))
    finally:
        sys.setswitchinterval(previous)
    return {kind: {"batches": len(seconds),
                   "us_p50": round(_percentile_us(seconds, 0.50)),
                   "us_p90": round(_percentile_us(seconds, 0.90)),
                   "us_p99": round(_percentile_us(seconds, 0.99))}
            for kind, seconds in merged.items()}


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
    parser.add_argument("--handoff-batches", type=int, default=HANDOFF_BATCHES_DEFAULT,
                        help="batches handed to the journal's thread per round, beside a busy "
                             "loop (default %(default)s; 0 skips this part)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where to create the temporary journal (default: the system temp "
                             "dir; point it at the data disk to measure that disk)")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    if not 0 <= args.handoff_batches <= COMMANDS_MAX:
        parser.error(f"--handoff-batches must be between 0 and {COMMANDS_MAX}")
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
        handoff = (_handoff_rounds(root, entries, min(args.batch, 40), args.handoff_batches)
                   if args.handoff_batches and sequencer.JOURNAL_THREAD_COMPILED else None)
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
    if handoff is not None:
        result["thread_handoff"] = handoff
        result["thread_handoff_p50_ratio"] = round(
            handoff["python"]["us_p50"] / max(handoff["compiled"]["us_p50"], 1), 2)
    print(f"journal in {root.parent}, records {record_bytes:.0f} bytes on average")
    print(f"group commit (batch {args.batch}): {group_rate:,.0f} durable commands/s "
          f"({args.commands} commands, fsync p50 {result['group_commit']['fsync_us_p50']} us)")
    print(f"fsync per command: {single_rate:,.0f} durable commands/s "
          f"({args.single_commands} commands, fsync p50 "
          f"{result['fsync_per_command']['fsync_us_p50']} us)")
    print(f"ratio: {result['ratio']}x")
    if handoff is not None:
        for kind in ("compiled", "python"):
            figures = handoff[kind]
            print(f"journal thread ({kind}), batches of {min(args.batch, 40)} beside a busy "
                  f"loop: handoff to durable p50 {figures['us_p50']} us, p90 "
                  f"{figures['us_p90']} us, p99 {figures['us_p99']} us "
                  f"({figures['batches']} batches in {HANDOFF_ROUNDS} rounds of at most "
                  f"{HANDOFF_ROUND_S:.0f} s)")
        print(f"python/compiled p50: {result['thread_handoff_p50_ratio']}x")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
