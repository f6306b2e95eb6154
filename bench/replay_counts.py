"""What a replay does with a journal, counted: ``crowdex bench recovery --counts``.

A replay's time on a shared machine moves with the load of everything else; what it does does
not. So beside the rate, this replays the journal again and counts, by path: the entries
by command, those the compiled scanner read as columns (plain orders and cancels, with or
without a client_order_id, ``engine.kernels.entries``), the entries applied in bulk
(``StateMachine.apply_orders``), in runs (``_apply_run``, with the commands they carry;
``_apply_plain_run``) and alone (``apply``), the matching kernel's calls, and the Python
function calls per entry (a third replay, under cProfile). Two trees compared on these counts
differ where their work differs.
"""

from __future__ import annotations

import collections
import cProfile
import pstats
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine import commands as c
from engine.journal import FileJournal
from engine.kernels.entries import KIND_OTHER, scan_with_client_ids
from engine.machine import StateMachine
from engine.replay import apply_blocks, replay


def replay_counts(data_dir: Path) -> dict[str, Any]:
    """The counts of a replay of the journal in ``data_dir`` from empty (see the module)."""
    journal = FileJournal(Path(data_dir) / "journal", sync=False, read_only=True)
    try:
        by_command: collections.Counter[str] = collections.Counter()
        scanned = 0
        for block in journal.read_blocks(0):
            _, _, kinds, _ = scan_with_client_ids(np.frombuffer(block.data, dtype=np.uint8),
                                                  block.starts, block.ends)
            scanned += int((kinds != KIND_OTHER).sum())
            for start, end in zip(block.starts.tolist(), block.ends.tolist(), strict=True):
                by_command[type(c.decode_entry(block.data[start:end]).command).__name__] += 1
        paths = _paths(journal)
    finally:
        journal.close()
    entries = sum(by_command.values())
    profile = cProfile.Profile()
    profile.runcall(replay, data_dir)
    calls = pstats.Stats(profile).total_calls
    return {"entries": entries, "by_command": dict(by_command.most_common()),
            "scanned_as_columns": scanned, **paths,
            "python_calls_per_entry": round(calls / max(entries, 1), 2)}


def _paths(journal: FileJournal) -> dict[str, int]:
    """Replay the journal into a machine whose paths count what they apply."""
    machine = StateMachine()
    counts: collections.Counter[str] = collections.Counter()

    def counted(name: str, function: Callable, applied: Callable[[Any], int]) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            counts[f"{name}_calls"] += 1
            counts[f"{name}_entries"] += applied(result)
            return result
        return call

    # Instance attributes shadow the methods, so the machine's own calls come through here.
    machine.apply = counted("alone", machine.apply, lambda reply: 1)
    machine.apply_orders = counted("bulk", machine.apply_orders, int)
    machine._apply_run = counted("runs", machine._apply_run, len)
    machine._apply_plain_run = counted("plain_runs", machine._apply_plain_run, len)
    engine = machine.component("markets").engine
    engine.process = counted("kernel", engine.process, lambda result: 0)
    apply_blocks(machine, journal.read_blocks(0), {})
    names = ("alone", "bulk", "runs", "plain_runs")
    return {**{f"{name}_{what}": counts[f"{name}_{what}"] for name in names
               for what in ("calls", "entries")},
            "kernel_calls": counts["kernel_calls"]}
