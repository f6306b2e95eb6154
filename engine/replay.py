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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine import commands as c
from engine.journal import FileJournal, RecordBlock
from engine.kernels.entries import KIND_OTHER, gather_array, scan_with_client_ids
from engine.machine import StateMachine
from engine.skips import PoisonCommand, Skip, apply_entry, load_skips

CHUNK_ENTRIES = 8192  # entries decoded and applied together
# Consecutive plain orders and cancels fewer than this go through apply_batch: the bulk path's
# fixed cost per call (a few numpy steps) would outweigh what it saves on a handful.
BULK_ENTRIES_MIN = 16
# Entries decoded by msgspec (those the bulk path leaves) are decoded and applied this many at a
# time: a chunk's 8192 decoded at once (Python objects, a few MB) had left the CPU's caches by
# the time they were applied and freed. Measured on bench recovery's 200k mixed journal, in one
# process, sizes alternated: 1024 replays 4-5% faster than 8192 (512 and 2048 in between).
DECODED_ENTRIES_MAX = 1024


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
    return apply_blocks(machine, _blocks(records, chunk_entries), skips, chunk_entries)


def apply_blocks(machine: StateMachine, blocks: Iterable[RecordBlock], skips: dict[int, Skip],
                 chunk_entries: int = CHUNK_ENTRIES) -> int:
    """Apply blocks of journal records (``FileJournal.read_blocks``) in order, in chunks of
    at most ``chunk_entries``, quietly (nobody reads a replay's replies or updates); returns
    how many."""
    applied = 0
    quiet, machine.quiet = machine.quiet, True
    try:
        with paused_gc():
            for block in blocks:
                machine.reserve(len(block.starts))
                for first, lo, hi in _chunks(block, skips, chunk_entries):
                    if hi - lo == 1 and first in skips:
                        payload = block.data[block.starts[lo]:block.ends[lo]]
                        apply_entry(machine, first, bytes(payload), skips)
                    else:
                        _apply_chunk(machine, first, block.data, block.starts[lo:hi],
                                     block.ends[lo:hi])
                    machine.outbox.clear()  # updates of the past: nobody listens to a replay
                    applied += hi - lo
    finally:
        machine.quiet = quiet
    return applied


def apply_payloads(machine: StateMachine, first: int, payloads: Sequence[bytes],
                   time_us: int | Sequence[int] | None = None) -> None:
    """Apply consecutive journal payloads numbered from ``first`` as a replay does (in bulk
    where they are plain orders and cancels), each entry stamped ``time_us`` if given, or
    its own of ``time_us`` if that is a sequence (a cluster replica catching up stamps a
    stream message's entries with its time; consecutive messages go together, each with its
    own). For a quiet machine only: nobody gets their replies or updates."""
    block = _block(first, list(payloads))
    if time_us is not None and not isinstance(time_us, int):
        time_us = np.asarray(time_us, dtype=np.int64)
    _apply_chunk(machine, first, block.data, block.starts, block.ends, time_us)


def apply_one_at_a_time(machine: StateMachine, records: Iterable[tuple[int, bytes]],
                        skips: dict[int, Skip], upto: int | None = None) -> int:
    """Apply journal records (sequence, payload) one entry at a time, up to ``upto``: an
    entry that cannot be applied raises ``PoisonCommand`` naming it (``apply_entry``), which
    a failed run cannot do. Returns how many were applied."""
    applied = 0
    for sequence, payload in records:
        if upto is not None and sequence > upto:
            break
        apply_entry(machine, sequence, payload, skips)
        applied += 1
    return applied


def _apply_chunk(machine: StateMachine, first: int, data: bytes, starts: np.ndarray,
                 ends: np.ndarray, time_us: int | np.ndarray | None = None) -> None:
    """Entries read as columns where they are plain orders and cancels, client_order_ids kept
    aside (applied in bulk, ``StateMachine.apply_orders``); any other entry decoded by msgspec
    and applied by ``apply_batch``, as are orders the bulk path leaves to it. ``time_us``: a
    stamp for every entry, or each one's (an array)."""
    commands, times, kinds, client_ids = scan_with_client_ids(
        np.frombuffer(data, dtype=np.uint8), starts, ends)
    stamps = None  # each entry's stamp, if stamped
    if time_us is not None:
        times[:] = time_us
        stamps = times

    def decoded(lo: int, hi: int) -> None:
        _apply_decoded(machine, first + lo, data, starts[lo:hi], ends[lo:hi],
                       None if stamps is None else stamps[lo:hi])

    at = 0
    for lo, hi in _bulk_stretches(kinds != KIND_OTHER):
        if at < lo:  # the entries in between, in one batch: its runs may span them
            decoded(at, lo)
        at = lo
        while at < hi:
            done = machine.apply_orders(first + at, commands[at:hi], times[at:hi],
                                        client_ids[at:hi])
            at += done
            if done == 0:
                decoded(at, at + 1)
                at += 1
    if at < len(kinds):
        decoded(at, len(kinds))


def _bulk_stretches(plain: np.ndarray) -> list[tuple[int, int]]:
    """(lo, hi) of the stretches of at least ``BULK_ENTRIES_MIN`` consecutive plain entries."""
    edges = np.flatnonzero(plain[1:] != plain[:-1]) + 1
    bounds = [0, *edges.tolist(), len(plain)]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
            if hi - lo >= BULK_ENTRIES_MIN and plain[lo]]


def _apply_decoded(machine: StateMachine, first: int, data: bytes, starts: np.ndarray,
                   ends: np.ndarray, stamps: np.ndarray | None) -> None:
    """Decode the entries ``data[starts[i]:ends[i]]`` (each stamped with its ``stamps`` row,
    if given) and apply them in batches of at most ``DECODED_ENTRIES_MAX`` (``apply_batch``:
    the same state however they are cut)."""
    step = DECODED_ENTRIES_MAX
    view = np.frombuffer(data, dtype=np.uint8)
    for lo in range(0, len(starts), step):
        entries = _decoded(data, view, starts[lo:lo + step], ends[lo:lo + step])
        if stamps is not None:
            for entry, stamp in zip(entries, stamps[lo:lo + step].tolist(), strict=True):
                entry.time_us = stamp
        machine.apply_batch(first + lo, entries)


def _decoded(data: bytes, view: np.ndarray, starts: np.ndarray,
             ends: np.ndarray) -> list[c.Entry]:
    """The entries ``data[starts[i]:ends[i]]``, decoded as one msgpack array of them
    (``gather_array``), or one at a time if some entry is not exactly one msgpack value (the
    decoder then says what is wrong with it, as it always did)."""
    out = np.empty(5 + int((ends - starts).sum()), dtype=np.uint8)
    if gather_array(view, starts, ends, out) < 0:
        return c.decode_entries(data, starts.tolist(), ends.tolist())
    return c.decode_entry_array(out)


def _blocks(records: Iterable[tuple[int, bytes]], size: int) -> Iterator[RecordBlock]:
    """Records as blocks of at most ``size`` consecutive ones (a gap starts a new block, so
    the machine refuses it as it would one at a time)."""
    first, payloads = 0, []
    for sequence, payload in records:
        if payloads and (len(payloads) >= size or sequence != first + len(payloads)):
            yield _block(first, payloads)
            payloads = []
        if not payloads:
            first = sequence
        payloads.append(payload)
    if payloads:
        yield _block(first, payloads)


def _block(first: int, payloads: list[bytes]) -> RecordBlock:
    ends = np.cumsum([len(p) for p in payloads], dtype=np.int64)
    return RecordBlock(first, b"".join(payloads), ends - [len(p) for p in payloads], ends)


# Set while this process keeps its recovered state frozen (``freeze_state``). Kept here rather
# than asked of ``gc.get_freeze_count()``, which walks the whole permanent generation: O(n) in
# CPython 3.11, millions of objects in a server (it made the test suite 50% slower once).
_state_frozen = False


def freeze_state() -> None:
    """Collect, then move every tracked object to the permanent generation, for good: the
    venue's state once recovered is long-lived, so the collector never rescans it (and the
    pages a forked snapshot shares stay untouched by it). What the server does once it has
    recovered, and the benchmarks that play a server."""
    global _state_frozen
    gc.collect()
    gc.freeze()
    _state_frozen = True


def thaw_state() -> None:
    """Undo ``freeze_state`` (a benchmark done playing a server)."""
    global _state_frozen
    gc.unfreeze()
    _state_frozen = False


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off while a replay runs.

    A replay allocates millions of short-lived objects (decoded entries, replies) and keeps
    the state it builds: every young collection rescans what survived, and they cost a third
    of the replay (measured: 72k commands/s with collections, 98k without, 200k orders). The
    state machine makes no reference cycles per command, so nothing piles up meanwhile; the
    collector is switched back on (if it was on) when the replay ends or fails.

    What the replay built is then moved to the oldest generation unscanned (``gc.freeze``
    then ``gc.unfreeze``: two list splices, and the young count starts again from 0). It is
    the venue's state, long-lived; left young, the first allocation after the collector is
    back starts a collection over every object the replay made (66 ms after bench recovery's
    210k mixed entries). Not while the process keeps its state frozen (``freeze_state``):
    ``unfreeze`` would thaw that too; a replica catching up then collects each chunk's
    objects young, as before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if not _state_frozen:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _chunks(block: RecordBlock, skips: dict[int, Skip],
            size: int) -> Iterator[tuple[int, int, int]]:
    """(first sequence, lo, hi) of consecutive records of a block, at most ``size`` each; a
    skipped entry is a chunk of its own."""
    count = len(block.starts)
    first = block.first_sequence
    cuts = {0, count}
    for sequence in skips:
        if first <= sequence < first + count:
            cuts.update((sequence - first, sequence - first + 1))
    bounds = sorted(cuts)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        for at in range(lo, hi, size):
            yield first + at, at, min(hi, at + size)


def replay(data_dir: Path, upto: int | None = None,
           around: AbstractContextManager | None = None) -> ReplayResult:
    """Rebuild a venue's state from its journal from empty (snapshots ignored); an entry
    that cannot be applied raises ``PoisonCommand`` naming it. ``around``: entered just
    around the apply that ``seconds`` times (not the journal's opening nor the state hash),
    for a benchmark's CPU clock or instruction count (``bench.instructions``)."""
    data_dir = Path(data_dir)
    skips = load_skips(data_dir)
    journal = FileJournal(data_dir / "journal", sync=False, read_only=True)
    try:
        machine = StateMachine()
        machine.quiet = True  # no replies nor updates to build: nobody is listening
        started = time.perf_counter()
        try:
            with nullcontext() if around is None else around:
                commands = apply_blocks(machine, _upto(journal.read_blocks(0), upto), skips)
        except PoisonCommand:
            raise
        except Exception:  # a run failed, half applied: name the entry, one at a time
            apply_one_at_a_time(StateMachine(), journal.read(0), skips, upto)
            raise  # it applied this time: the failure does not repeat; report the first
        seconds = time.perf_counter() - started
    finally:
        journal.close()
    return ReplayResult(commands, machine.last_sequence, machine.state_hash(), seconds)


def _upto(blocks: Iterable[RecordBlock], upto: int | None) -> Iterator[RecordBlock]:
    for block in blocks:
        if upto is not None and block.first_sequence + len(block.starts) - 1 > upto:
            keep = max(0, upto + 1 - block.first_sequence)
            if keep:
                yield block._replace(starts=block.starts[:keep], ends=block.ends[:keep])
            return
        yield block
