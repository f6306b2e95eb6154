"""Snapshots whose large arrays live in chunk files shared across snapshots (version 6): they
read back as the arrays written, a snapshot writes only the chunks the directory lacks, prune
removes the chunks no kept snapshot names, and a damaged or missing chunk is refused."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from bench import recovery
from engine import commands as c
from engine import snapshot
from engine.machine import StateMachine
from engine.snapshot import (
    CHUNKS_DIRECTORY,
    SHARED_CHUNK_BYTES,
    SHARED_CHUNKS_VERSION,
    SNAPSHOT_VERSION,
    SnapshotCorruptError,
    load_latest,
    prune,
    read_snapshot,
    state_hash,
    write_snapshot,
)

ALIGNED = np.dtype([("id", np.int32), ("inner", [("flag", np.int8), ("value", np.int64)])],
                   align=True)


def venue_arrays(rows: int = 120_000) -> dict[str, np.ndarray]:
    """Arrays of the kinds a venue has: a big aligned table (several chunks and a short last
    one), one of exactly two chunks, small ones (inline), an empty one, a big strided view
    (saved from a copy, inline)."""
    table = np.zeros(rows, dtype=ALIGNED)
    table["id"] = np.arange(rows)
    table["inner"]["flag"] = np.arange(rows) % 3
    table["inner"]["value"] = np.arange(rows) * 7 - 5
    return {
        "table": table,
        "exact": np.arange(2 * SHARED_CHUNK_BYTES // 8, dtype=np.int64),
        "small": np.arange(100, dtype=np.int64),
        "empty": np.zeros(0, dtype=ALIGNED),
        "strided": np.arange(4 * SHARED_CHUNK_BYTES // 8, dtype=np.int64)[::2],
    }


def chunk_names(directory: Path) -> set[str]:
    return set(os.listdir(directory / CHUNKS_DIRECTORY))


def chunks_of(arrays: dict[str, np.ndarray]) -> int:
    """How many chunks ``write_snapshot`` keeps the arrays in (duplicates counted once)."""
    digests = set()
    for array in arrays.values():
        size = snapshot.SHARED_CHUNK_BYTES
        if array.flags.c_contiguous and array.nbytes >= size:
            data = memoryview(array.reshape(-1).view(np.uint8))
            for start in range(0, len(data), size):
                digests.add(bytes(data[start:start + size]))
    return len(digests)


def test_a_snapshot_in_shared_chunks_reads_back_as_written(tmp_path: Path) -> None:
    arrays = venue_arrays()
    path = write_snapshot(tmp_path, 9, arrays, b"meta", position=4, shared_chunks=True)
    assert len(chunk_names(tmp_path)) == chunks_of(arrays) == 3 + 2
    # The big arrays' data is not in the file.
    assert path.stat().st_size < arrays["strided"].nbytes + SHARED_CHUNK_BYTES
    loaded = read_snapshot(path, expected_sequence=9)
    assert (loaded.version, loaded.sequence, loaded.position) == (SHARED_CHUNKS_VERSION, 9, 4)
    assert state_hash(loaded.arrays, loaded.meta) == state_hash(arrays, b"meta")
    for name, array in arrays.items():
        assert loaded.arrays[name].dtype == array.dtype
        assert loaded.arrays[name].dtype.isalignedstruct == array.dtype.isalignedstruct
        assert loaded.arrays[name].shape == array.shape
        np.testing.assert_array_equal(loaded.arrays[name], array)
    assert load_latest(tmp_path).sequence == 9


def test_without_shared_chunks_a_snapshot_stands_alone_as_version_5(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path, 3, venue_arrays(), b"m")
    assert read_snapshot(path).version == SNAPSHOT_VERSION
    assert not (tmp_path / CHUNKS_DIRECTORY).exists()


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The chunk files ``write_snapshot`` writes, as it writes them."""
    paths: list[Path] = []
    write_chunk = snapshot._write_chunk
    monkeypatch.setattr(snapshot, "_write_chunk",
                        lambda path, data, sync: (paths.append(path),
                                                  write_chunk(path, data, sync)))
    return paths


def test_a_snapshot_writes_only_the_chunks_the_directory_lacks(
        tmp_path: Path, written: list[Path]) -> None:
    arrays = venue_arrays()
    write_snapshot(tmp_path, 1, arrays, b"a", shared_chunks=True)
    assert len(written) == chunks_of(arrays)
    # The table grows by a few rows and one row in its first chunk changes: its first chunk
    # and its tail are new; every other chunk is the directory's already.
    # (Zeroed first: a copy of a structured array need not copy its padding bytes.)
    grown = np.zeros(len(arrays["table"]) + 10, dtype=ALIGNED)
    grown[:len(arrays["table"])] = arrays["table"]
    grown[-10:] = arrays["table"][:10]
    grown["inner"]["value"][5] += 1
    written.clear()
    second = dict(arrays, table=grown)
    path = write_snapshot(tmp_path, 2, second, b"b", shared_chunks=True)
    assert len(written) == 2
    loaded = read_snapshot(path)
    assert state_hash(loaded.arrays, loaded.meta) == state_hash(second, b"b")
    # Nothing changed: nothing written.
    written.clear()
    write_snapshot(tmp_path, 3, second, b"c", shared_chunks=True)
    assert written == []


def test_prune_removes_the_chunks_no_kept_snapshot_names(tmp_path: Path) -> None:
    arrays = venue_arrays()
    write_snapshot(tmp_path, 1, arrays, b"a", shared_chunks=True)
    changed = dict(arrays, exact=arrays["exact"] + 1)  # both its chunks differ
    write_snapshot(tmp_path, 2, changed, b"b", shared_chunks=True)
    leftover = tmp_path / CHUNKS_DIRECTORY / ("ab" * 32 + ".tmp")  # a crashed chunk write
    leftover.write_bytes(b"partial")
    assert len(chunk_names(tmp_path)) == chunks_of(arrays) + 2 + 1
    removed = prune(tmp_path, keep=2)  # both snapshots kept: only the leftover goes
    assert removed == [leftover]
    removed = prune(tmp_path, keep=1)
    assert len(removed) == 1 + 2  # the old snapshot and its two chunks of "exact"
    assert len(chunk_names(tmp_path)) == chunks_of(changed)
    loaded = load_latest(tmp_path)
    assert loaded.sequence == 2
    assert state_hash(loaded.arrays, loaded.meta) == state_hash(changed, b"b")


def test_prune_keeps_every_chunk_while_a_snapshot_cannot_be_read(tmp_path: Path) -> None:
    arrays = venue_arrays()
    write_snapshot(tmp_path, 1, arrays, b"a", shared_chunks=True)
    newest = write_snapshot(tmp_path, 2, dict(arrays, exact=arrays["exact"] + 1), b"b",
                            shared_chunks=True)
    before = chunk_names(tmp_path)
    damaged = bytearray(newest.read_bytes())
    damaged[-3] ^= 0xFF
    newest.write_bytes(bytes(damaged))
    assert prune(tmp_path, keep=2) == []
    assert chunk_names(tmp_path) == before


@pytest.mark.parametrize("damage", ["flipped", "short", "long", "missing"])
def test_a_damaged_chunk_is_refused_and_the_older_snapshot_loads(tmp_path: Path,
                                                                 damage: str) -> None:
    arrays = venue_arrays()
    write_snapshot(tmp_path, 1, arrays, b"a", shared_chunks=True)
    before = chunk_names(tmp_path)
    newer = dict(arrays, exact=arrays["exact"] * 3)
    newest = write_snapshot(tmp_path, 2, newer, b"b", shared_chunks=True)
    (only_newest,) = sorted(chunk_names(tmp_path) - before)[:1]
    path = tmp_path / CHUNKS_DIRECTORY / only_newest
    data = bytearray(path.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "short":
        path.write_bytes(bytes(data[:-1]))
    elif damage == "long":
        path.write_bytes(bytes(data) + b"\0")
    else:
        path.unlink()
    with pytest.raises(SnapshotCorruptError):
        read_snapshot(newest)
    loaded = load_latest(tmp_path)
    assert loaded.sequence == 1
    assert state_hash(loaded.arrays, loaded.meta) == state_hash(arrays, b"a")


def test_a_venues_state_in_small_chunks_reads_back_to_its_state_hash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: list[Path]) -> None:
    """Every array of a venue that trades (bench.recovery's), in chunks of 4 KiB: each
    snapshot reads back to the machine's state hash, and one taken after more orders writes
    only some of its chunks again (the records, fills and tapes grew at their ends)."""
    monkeypatch.setattr(snapshot, "SHARED_CHUNK_BYTES", 4096)
    machine = StateMachine()
    for n, (actor, command) in enumerate(recovery._prefix(), start=1):
        machine.apply(n, c.Entry(recovery.START_US, actor, command))
    orders = recovery.order_entries(8_000, 3, recovery.START_US + 1_000_000)
    directory = tmp_path / "snapshots"
    for batch in (orders[:6_000], orders[6_000:]):
        machine.apply_batch(machine.last_sequence + 1, batch)
        written.clear()
        path = write_snapshot(directory, machine.last_sequence, machine.arrays(),
                              machine.meta(), shared_chunks=True)
        loaded = read_snapshot(path)
        assert state_hash(loaded.arrays, loaded.meta) == machine.state_hash()
    chunks = chunks_of(machine.arrays())
    assert chunks > 100
    assert 0 < len(written) < chunks // 2
