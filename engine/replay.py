"""Replaying a journal: the entries after a state, decoded and applied in runs.

Recovery, ``crowdex replay`` and (later) a replica catching up all apply journaled entries the
way the live sequencer does: many at a time through ``StateMachine.apply_batch``, whose runs of
orders go to the matching kernel together, instead of one ``apply`` per entry. Both give the
same replies and state (``apply_batch``'s contract, property-tested), however the journal is
cut into chunks. An entry the operator skipped (``engine.skips``) is applied alone, as a skip.

A chunk whose apply raises is not diagnosed here: its state is half changed. ``replay`` raises
the error; recovery then replays one entry at a time from its snapshot to name the entry
(``PoisonCommand``).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine import commands as c
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.skips import PoisonCommand, Skip, apply_entry, load_skips

CHUNK_ENTRIES = 8192  # entries decoded and applied together


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """API.md's ``crowdex replay --json`` object."""

    commands: int
    sequence: int
    state_hash: str
    seconds: float

    @property
    def commands_per_sec(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0

    def view(self) -> dict:
        return {"commands": self.commands, "sequence": self.sequence,
                "state_hash": self.state_hash, "seconds": round(self.seconds, 6),
                "commands_per_sec": round(self.commands_per_sec)}


def apply_records(machine: StateMachine, records: Iterable[tuple[int, bytes]],
                  skips: dict[int, Skip], chunk_entries: int = CHUNK_ENTRIES) -> int:
    """Apply journal records (sequence, payload) in order, in chunks; returns how many."""
    applied = 0
    with paused_gc():
        for first, payloads in _chunks(records, skips, chunk_entries):
            if len(payloads) == 1 and first in skips:
                apply_entry(machine, first, payloads[0], skips)
            else:
                machine.apply_batch(first, [c.decode_entry(p) for p in payloads])
            machine.outbox.clear()  # updates of the past: nobody listens to a replay
            applied += len(payloads)
    return applied


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off while a replay runs.

    A replay allocates millions of short-lived objects (decoded entries, replies) and keeps
    the state it builds: every young collection rescans what survived, and they cost a third
    of the replay (measured: 72k commands/s with collections, 98k without, 200k orders). The
    state machine makes no reference cycles per command, so nothing piles up meanwhile; the
    collector is switched back on (if it was on) when the replay ends or fails.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _chunks(records: Iterable[tuple[int, bytes]], skips: dict[int, Skip],
            size: int) -> Iterator[tuple[int, list[bytes]]]:
    """Consecutive payloads, at most ``size`` each; a skipped entry is a chunk of its own."""
    first, payloads = 0, []
    for sequence, payload in records:
        if sequence in skips or len(payloads) >= size:
            if payloads:
                yield first, payloads
            first, payloads = sequence, []
            if sequence in skips:
                yield sequence, [payload]
                continue
        if not payloads:
            first = sequence
        payloads.append(payload)
    if payloads:
        yield first, payloads


def replay(data_dir: Path, upto: int | None = None) -> ReplayResult:
    """Rebuild a venue's state from its journal from empty (snapshots ignored); an entry
    that cannot be applied raises ``PoisonCommand`` naming it."""
    data_dir = Path(data_dir)
    skips = load_skips(data_dir)
    journal = FileJournal(data_dir / "journal", sync=False, read_only=True)
    try:
        machine = StateMachine()
        machine.quiet = True  # no replies nor updates to build: nobody is listening
        started = time.perf_counter()
        try:
            commands = apply_records(machine, _upto(journal.read(0), upto), skips)
        except PoisonCommand:
            raise
        except Exception:  # a run failed, half applied: name the entry, one at a time
            machine = StateMachine()
            for sequence, payload in _upto(journal.read(0), upto):
                apply_entry(machine, sequence, payload, skips)
            raise  # it applied this time: the failure does not repeat; report the first
        seconds = time.perf_counter() - started
    finally:
        journal.close()
    return ReplayResult(commands, machine.last_sequence, machine.state_hash(), seconds)


def _upto(records: Iterable[tuple[int, bytes]],
          upto: int | None) -> Iterator[tuple[int, bytes]]:
    if upto is None:
        yield from records
        return
    for sequence, payload in records:
        if sequence > upto:
            return
        yield sequence, payload
