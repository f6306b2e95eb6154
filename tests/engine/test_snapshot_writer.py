"""The snapshot writer streams the arrays from where they lie (no body built in memory) and
must still write exactly the file the format describes; and a snapshot taken by a forked child
while batches go on holds the state of its sequence, byte for byte the file of the machine
stopped there."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import msgspec
import numpy as np
import pytest

from bench import recovery, venue
from engine import commands as c
from engine import sequencer, snapshot
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.snapshot import (
    SNAPSHOT_MAGIC,
    SNAPSHOT_VERSION,
    WRITE_CHUNK_BYTES,
    read_snapshot,
    snapshot_name,
    write_snapshot,
)

ALIGNED = np.dtype([("id", np.int32), ("inner", [("flag", np.int8), ("value", np.int64)])],
                   align=True)


def reference_file(sequence: int, position: int, arrays: dict[str, np.ndarray],
                   meta: bytes) -> bytes:
    """The format of engine.snapshot's docstring, built the plain way: each array np.save'd,
    the body msgpack-encoded whole, then the header with its checksums."""
    stored = []
    for name in sorted(arrays):
        buffer = io.BytesIO()
        np.save(buffer, arrays[name], allow_pickle=False)
        stored.append([name, bool(arrays[name].dtype.isalignedstruct), buffer.getvalue()])
    body = msgspec.msgpack.encode([stored, meta])
    header = struct.pack("<8sIIQQQI", SNAPSHOT_MAGIC, SNAPSHOT_VERSION, 0, sequence, position,
                         len(body), zlib.crc32(body))
    return header + struct.pack("<I", zlib.crc32(header)) + body


def _bytes_array(size: int) -> np.ndarray:
    """An array whose .npy (header included) is ``size`` bytes: to land on msgpack's limits."""
    probe = io.BytesIO()
    np.save(probe, np.zeros(1000, np.uint8))
    header = probe.getbuffer().nbytes - 1000
    return np.arange(size - header, dtype=np.int64).astype(np.uint8)


def _strided() -> np.ndarray:
    return np.arange(40, dtype=np.int64)[::3]


def _fortran() -> np.ndarray:
    return np.asfortranarray(np.arange(12, dtype=np.int32).reshape(3, 4))


def _aligned_rows() -> np.ndarray:
    rows = np.zeros(5, ALIGNED)
    rows["id"] = np.arange(5)
    rows["inner"]["value"] = [3, -1, 4, -1, 5]
    return rows


# Each case crosses a boundary of the hand-written framing or of the in-place data path.
CASES = {
    "mixed dtypes": lambda: {"rows": _aligned_rows(), "empty": np.zeros(0, ALIGNED),
                             "matrix": np.arange(12, dtype=np.int64).reshape(3, 4),
                             "scalar": np.array(7, dtype=np.int16)},
    "not in C order": lambda: {"strided": _strided(), "fortran": _fortran()},
    "big-endian": lambda: {"be": np.arange(9, dtype=">i8")},
    "no bytes an item": lambda: {"void": np.zeros(4, np.dtype([]))},
    "bin8 edge": lambda: {"a": _bytes_array(255)},
    "bin16 first": lambda: {"a": _bytes_array(256)},
    "bin16 edge": lambda: {"a": _bytes_array(65_535)},
    "bin32 first": lambda: {"a": _bytes_array(65_536)},
    "chunks": lambda: {"big": np.arange(3 * WRITE_CHUNK_BYTES // 8 + 5, dtype=np.int64),
                       "small": np.ones(3, np.int8)},
    "15 arrays": lambda: {f"a{n:02d}": np.full(n, n, np.int32) for n in range(15)},
    "16 arrays": lambda: {f"a{n:02d}": np.full(n, n, np.int32) for n in range(16)},
    "long names": lambda: {"n" * 31: np.ones(2), "m" * 32: np.ones(3), "o" * 256: np.ones(1)},
}
METAS = [b"", b"\x00meta\xff", b"m" * 255, b"m" * 256, b"m" * 65_535, b"m" * 65_536]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("meta", METAS, ids=lambda m: f"meta{len(m)}")
def test_the_file_is_the_formats_bytes(tmp_path: Path, case: str, meta: bytes) -> None:
    arrays = CASES[case]()
    path = write_snapshot(tmp_path, 11, arrays, meta, position=5, sync=False)
    assert path.read_bytes() == reference_file(11, 5, arrays, meta)
    assert read_snapshot(path).meta == meta


def test_short_writes_are_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write may take fewer bytes than asked (a signal, a full pipe): the rest follows."""
    real_writev = os.writev
    calls = []

    def at_most_1000_bytes(fd: int, buffers: list) -> int:
        calls.append(len(buffers))
        taken, size = [], 0
        for buffer in buffers:
            view = memoryview(buffer)[: 1000 - size]
            taken.append(view)
            size += len(view)
            if size == 1000:
                break
        return real_writev(fd, taken)

    monkeypatch.setattr(snapshot.os, "writev", at_most_1000_bytes)
    arrays = CASES["chunks"]()
    path = write_snapshot(tmp_path, 3, arrays, b"meta", sync=False)
    assert len(calls) > 3 * WRITE_CHUNK_BYTES // 1000
    assert path.read_bytes() == reference_file(3, 0, arrays, b"meta")


def test_an_unpublished_snapshot_is_invisible_until_published(tmp_path: Path) -> None:
    """The forked writer only writes (``publish=False``); the exchange publishes it after the
    child has exited. Until then no reader may find it, and once published the file is the
    one a one-step write gives."""
    arrays = CASES["chunks"]()
    temp = write_snapshot(tmp_path, 9, arrays, b"meta", position=4, publish=False)
    assert temp.name != snapshot_name(9) and temp.exists()
    assert snapshot.snapshot_paths(tmp_path) == []
    assert snapshot.load_latest(tmp_path) is None
    final = snapshot.publish_snapshot(tmp_path, 9)
    assert final == tmp_path / snapshot_name(9) and not temp.exists()
    assert final.read_bytes() == reference_file(9, 4, arrays, b"meta")
    assert read_snapshot(final, expected_sequence=9).position == 4


def _venue(orders: int) -> tuple[StateMachine, list[c.Entry]]:
    """bench.recovery's venue (traders holding cash and units), and ``orders`` more orders."""
    machine = StateMachine()
    prefix = recovery._prefix()
    for n, (actor, command) in enumerate(prefix, start=1):
        machine.apply(n, c.Entry(recovery.START_US, actor, command))
    return machine, recovery.order_entries(orders, 3, recovery.START_US + 1_000_000)


def test_a_snapshot_written_while_batches_go_on_is_the_stopped_machines(tmp_path: Path) -> None:
    """The forked writer (the server's path) is held back until the parent has applied more
    batches, writing in place to the arrays and objects the child shares copy-on-write: its
    file must still be the one written with the machine stopped (byte for byte: the same
    memory, padding included)."""
    machine, orders = _venue(6_000)
    machine.wants = recovery.LIVE_SUBSCRIPTIONS.__contains__
    machine.apply_batch(machine.last_sequence + 1, orders[:3_000])
    sequence = machine.last_sequence
    stopped = write_snapshot(tmp_path / "stopped", sequence, machine.arrays(), machine.meta())
    stopped_hash = machine.state_hash()
    gate_read, gate_write = os.pipe()

    def held_back_write(at: int, arrays: dict, meta) -> None:
        os.read(gate_read, 1)  # the parent has changed the state by now
        write_snapshot(tmp_path / "forked", at, arrays, meta())

    pid = sequencer.snapshot_fork(machine, held_back_write)
    for start in range(3_000, 6_000, 256):
        machine.apply_batch(machine.last_sequence + 1, orders[start:start + 256])
    assert machine.state_hash() != stopped_hash
    os.write(gate_write, b"x")
    _pid, status = os.waitpid(pid, 0)
    os.close(gate_read)
    os.close(gate_write)
    assert os.waitstatus_to_exitcode(status) == 0
    forked = tmp_path / "forked" / snapshot_name(sequence)
    assert forked.read_bytes() == stopped.read_bytes()
    loaded = read_snapshot(forked)
    assert loaded.sequence == sequence
    again = StateMachine()
    again.load(loaded.arrays, loaded.meta)
    assert again.state_hash() == stopped_hash


def test_meta_in_one_pass_is_meta_later(tmp_path: Path) -> None:
    """``StateMachine.meta`` encodes once what ``meta_later``'s function encodes twice, on a
    busy venue's state (accounts, references, idempotency keys, every component's meta)."""
    journal = FileJournal(tmp_path / "journal", sync=False)
    try:
        traffic = venue.VenueTraffic(journal, 5, 3_000, days=40, investors=60,
                                     batch_every=venue.BATCH_EVERY)
        traffic.run()
    finally:
        journal.close()
    machine = traffic.machine
    assert machine.references and machine.idempotency and machine.accounts
    assert machine.meta() == machine.meta_later()()
