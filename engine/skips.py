"""The way out of a poison command: an audited skip of one journaled sequence.

An exception inside a command's apply stops the venue (the state may be half changed, so going
on would be worse). But that command is in the journal, so every restart replays it and fails
again. Until a release fixes the bug (with a rules version when it changes what a command
does), the operator can skip exactly that one entry:

    crowdex skip --data-dir DIR --sequence N --reason "why"

It refuses unless the venue is stopped (the data dir's lock) and sequence N is the entry that
fails when the venue recovers. The skip is recorded in ``skipped.json`` beside the journal,
with the entry's SHA-256, the error, who skipped it, when and why; it is the audit trail, shown
by ``GET /v1/admin/state``. From then on every recovery and replay applies that entry as a
refusal (``command_skipped``: its client learns it never took effect, and a retry with the
same ``Idempotency-Key`` gets that answer instead of poisoning the venue again), with the time
it carried, so every replay reaches the same state.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec

from engine import commands as c
from engine.machine import StateMachine
from engine.private import FILE_MODE, open_private

SKIPS_FILE = "skipped.json"
LOCK_FILE = "engine.lock"
REASON_LENGTH_MAX = 1000


class Skip(msgspec.Struct, forbid_unknown_fields=True):
    """One skipped entry, as the audit trail keeps it."""

    sequence: int
    entry_sha256: str
    command: str  # the command's journal tag
    actor: int
    error: str  # what its apply raised
    reason: str  # the operator's words
    skipped_at: str  # wall time, ISO 8601 UTC
    skipped_by: str  # the operating-system user who ran ``crowdex skip``


class PoisonCommand(RuntimeError):
    """A journaled entry whose apply raises: the venue cannot recover past it."""

    def __init__(self, sequence: int, command: str, actor: int, error: BaseException,
                 payload_sha256: str = "") -> None:
        self.sequence = sequence
        self.command = command
        self.actor = actor
        self.entry_sha256 = payload_sha256
        self.error = f"{type(error).__name__}: {error}"
        super().__init__(
            f"journal entry {sequence} ({command} by account {actor}) cannot be applied: "
            f"{self.error}. The venue cannot start past it. Either run a crowdex release that "
            f"fixes this, or skip the entry (it then never takes effect; its client is told "
            f"command_skipped): crowdex skip --data-dir DIR --sequence {sequence} "
            f"--reason \"...\" (see README, Operations)")


class VenueRunning(RuntimeError):
    """Another process holds the data dir."""


def entry_sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def command_tag(entry: c.Entry) -> str:
    return type(entry.command).__struct_config__.tag or type(entry.command).__name__


def load_skips(data_dir: Path) -> dict[int, Skip]:
    path = Path(data_dir) / SKIPS_FILE
    if not path.exists():
        return {}
    skips = msgspec.json.decode(path.read_bytes(), type=list[Skip])
    return {skip.sequence: skip for skip in skips}


def record_skip(data_dir: Path, skip: Skip) -> None:
    """Add ``skip`` to the audit trail: written whole to a temporary file, then renamed."""
    skips = load_skips(data_dir)
    if skip.sequence in skips:
        raise ValueError(f"sequence {skip.sequence} is skipped already")
    skips[skip.sequence] = skip
    path = Path(data_dir) / SKIPS_FILE
    temp = path.with_name(path.name + ".tmp")
    body = msgspec.json.format(msgspec.json.encode(sorted(skips.values(),
                                                          key=lambda s: s.sequence)))
    fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as file:
        file.write(body + b"\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temp, path)
    directory = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def apply_entry(machine: StateMachine, sequence: int, payload: bytes,
                skips: dict[int, Skip]) -> None:
    """Recovery's apply of one journaled entry: skipped if the audit trail says so; a failure
    becomes ``PoisonCommand``, which names the entry and the way out."""
    skip = skips.get(sequence)
    try:
        entry = c.decode_entry(payload)
    except Exception as error:  # a journal this release cannot read
        if skip is None:
            raise PoisonCommand(sequence, "undecodable", 0, error,
                                entry_sha256(payload)) from error
        entry = c.Entry(machine.now_us, 0, c.Tick())  # skipped: no time, no key to answer
    if skip is not None:
        if skip.entry_sha256 != entry_sha256(payload):
            raise RuntimeError(f"{SKIPS_FILE} skips sequence {sequence}, but the journal holds "
                               "another entry there: this is not the journal it was made for")
        machine.skip(sequence, entry, skip.reason)
        return
    try:
        machine.apply(sequence, entry)
    except Exception as error:
        raise PoisonCommand(sequence, command_tag(entry), entry.actor, error,
                            entry_sha256(payload)) from error


@contextmanager
def data_dir_lock(data_dir: Path) -> Iterator[int]:
    """Hold the data dir for this process; ``VenueRunning`` if another process holds it."""
    fd = lock_data_dir(data_dir)
    try:
        yield fd
    finally:
        os.close(fd)


def lock_data_dir(data_dir: Path) -> int:
    """Take the data dir's lock (a POSIX record lock on ``engine.lock``) and return its file
    descriptor; closing it releases the lock. One writer per journal: a second server on the
    same data dir, or ``crowdex skip`` beside a running one, is refused."""
    fd = open_private(Path(data_dir) / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        os.fchmod(fd, FILE_MODE)  # also when an older one was left readable
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise VenueRunning(f"another crowdex process is using {data_dir}") from None
    return fd
