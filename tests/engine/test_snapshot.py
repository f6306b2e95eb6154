"""Snapshots and the state hash: atomic files, fallback past damage, determinism."""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from engine import snapshot as snapshot_module
from engine.snapshot import (
    REMOVE_STEP_BYTES,
    SNAPSHOT_HEADER_SIZE,
    WRITE_CHUNK_BYTES,
    SnapshotCorruptError,
    load_latest,
    prune,
    read_snapshot,
    remove_gently,
    snapshot_name,
    state_hash,
    write_snapshot,
)

ROW_DTYPE = np.dtype(
    [("cash_fen", np.int64), ("role", np.int8), ("units", np.int64, (2,))], align=True
)
NESTED_DTYPE = np.dtype(
    [("id", np.int32), ("inner", [("flag", np.int8), ("value", np.int64)])], align=True
)


def sample_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rows = np.zeros(7, ROW_DTYPE)
    rows["cash_fen"] = np.arange(7) * 1_000 + seed
    rows["role"] = 2
    rows["units"][:, 1] = 9
    nested = np.zeros(3, NESTED_DTYPE)
    nested["inner"]["value"] = [5, -6, 7]
    return {
        "rows": rows,
        "nested": nested,
        "matrix": np.arange(12, dtype=np.int64).reshape(3, 4),
        "empty": np.zeros(0, ROW_DTYPE),
    }


def assert_same_arrays(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for name, array in want.items():
        assert got[name].dtype == array.dtype, name
        assert got[name].dtype.isalignedstruct == array.dtype.isalignedstruct, name
        assert got[name].shape == array.shape, name
        assert np.array_equal(got[name], array), name


def test_round_trip_keeps_dtypes_alignment_shapes_and_meta(tmp_path: Path) -> None:
    arrays = sample_arrays()
    path = write_snapshot(tmp_path, 42, arrays, b"\x00meta\xff")
    assert path.name == snapshot_name(42) == "snapshot-00000000000000000042.snap"
    snapshot = load_latest(tmp_path)
    assert snapshot is not None
    assert snapshot.sequence == 42 and snapshot.meta == b"\x00meta\xff"
    assert_same_arrays(snapshot.arrays, arrays)
    assert snapshot.arrays["rows"].flags.writeable
    assert state_hash(snapshot.arrays, snapshot.meta) == state_hash(arrays, b"\x00meta\xff")


def test_the_log_position_round_trips_and_older_versions_are_refused(tmp_path: Path) -> None:
    arrays = sample_arrays(3)
    path = write_snapshot(tmp_path, 42, arrays, b"meta", position=7)
    snapshot = read_snapshot(path)
    assert (snapshot.sequence, snapshot.position) == (42, 7)
    # Version 2 (written before the header held a position) and version 3 (before the order
    # records were arrays) hold an older state layout: refused, so recovery replays instead.
    body = path.read_bytes()[SNAPSHOT_HEADER_SIZE:]
    v2 = struct.pack("<8sIIQQI", b"CRDXSNAP", 2, 0, 42, len(body), zlib.crc32(body))
    v3 = struct.pack("<8sIIQQQI", b"CRDXSNAP", 3, 0, 42, 7, len(body), zlib.crc32(body))
    for header, version in ((v2, 2), (v3, 3)):
        path.write_bytes(header + struct.pack("<I", zlib.crc32(header)) + body)
        with pytest.raises(SnapshotCorruptError, match=f"version {version}: another state"):
            read_snapshot(path, expected_sequence=42)
        assert load_latest(tmp_path) is None
    path.write_bytes(v2[:-4] + b"\0\0\0\0" + struct.pack("<I", zlib.crc32(v2)) + body)
    with pytest.raises(SnapshotCorruptError, match="header checksum mismatch"):
        read_snapshot(path)


def test_load_latest_of_a_missing_or_empty_directory_is_none(tmp_path: Path) -> None:
    assert load_latest(tmp_path / "absent") is None
    assert load_latest(tmp_path) is None


def test_newest_snapshot_wins(tmp_path: Path) -> None:
    for sequence in (5, 100, 20):
        write_snapshot(tmp_path, sequence, sample_arrays(sequence), str(sequence).encode())
    snapshot = load_latest(tmp_path)
    assert snapshot is not None and snapshot.sequence == 100 and snapshot.meta == b"100"


def test_leftover_temp_file_is_ignored_and_pruned(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 10, sample_arrays(), b"ten")
    # A crash between writing the temp file and renaming it leaves this behind.
    temp = tmp_path / (snapshot_name(20) + ".tmp")
    temp.write_bytes(b"CRDXSNAP half written")
    snapshot = load_latest(tmp_path)
    assert snapshot is not None and snapshot.sequence == 10
    assert temp in prune(tmp_path)
    assert not temp.exists()


def test_write_leaves_no_temp_file(tmp_path: Path) -> None:
    write_snapshot(tmp_path, 1, sample_arrays(), b"")
    assert [p.name for p in tmp_path.iterdir()] == [snapshot_name(1)]


def corrupt(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    ["header_byte", "body_byte", "last_byte", "truncated", "truncated_header", "empty", "renamed"],
)
def test_damaged_newest_snapshot_falls_back_to_older(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    write_snapshot(tmp_path, 10, sample_arrays(10), b"older")
    newest = write_snapshot(tmp_path, 20, sample_arrays(20), b"newer")
    size = newest.stat().st_size
    if damage == "header_byte":
        corrupt(newest, 17)
    elif damage == "body_byte":
        corrupt(newest, SNAPSHOT_HEADER_SIZE + size // 2 - SNAPSHOT_HEADER_SIZE // 2)
    elif damage == "last_byte":
        corrupt(newest, size - 1)
    elif damage == "truncated":
        newest.write_bytes(newest.read_bytes()[:-10])
    elif damage == "truncated_header":
        newest.write_bytes(newest.read_bytes()[:10])
    elif damage == "empty":
        newest.write_bytes(b"")
    elif damage == "renamed":  # a snapshot whose name and header disagree
        newest.rename(tmp_path / snapshot_name(30))
        newest = tmp_path / snapshot_name(30)
    with caplog.at_level(logging.WARNING, logger="crowdex.engine.snapshot"):
        snapshot = load_latest(tmp_path)
    assert snapshot is not None and snapshot.sequence == 10 and snapshot.meta == b"older"
    assert_same_arrays(snapshot.arrays, sample_arrays(10))
    assert str(newest) in caplog.text


def test_every_snapshot_damaged_means_none(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path, 3, sample_arrays(), b"")
    corrupt(path, SNAPSHOT_HEADER_SIZE + 1)
    assert load_latest(tmp_path) is None


def test_read_snapshot_refuses_damage_directly(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path, 3, sample_arrays(), b"")
    corrupt(path, SNAPSHOT_HEADER_SIZE + 5)
    with pytest.raises(SnapshotCorruptError, match="checksum"):
        read_snapshot(path)


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for sequence in range(1, 7):
        write_snapshot(tmp_path, sequence * 10, {"a": np.arange(sequence)}, b"", sync=False)
    removed = prune(tmp_path, keep=2)
    assert [p.name for p in removed] == [snapshot_name(s * 10) for s in range(1, 5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [snapshot_name(50), snapshot_name(60)]
    with pytest.raises(ValueError):
        prune(tmp_path, keep=0)


def test_a_large_file_is_cut_down_before_it_is_unlinked(tmp_path: Path) -> None:
    """Removal frees a few MB per journal commit, not the whole file in one (the comment on
    ``_SYNC_FILE_RANGE_WRITE``): a reader that holds the file open sees it cut down."""
    path = tmp_path / "old.snap"
    path.write_bytes(b"s" * (5 * REMOVE_STEP_BYTES + 123))
    with open(path, "rb") as held:
        remove_gently(path)
        assert not path.exists()
        assert os.fstat(held.fileno()).st_size <= REMOVE_STEP_BYTES
    remove_gently(path)  # gone already: nothing to do


def test_prune_removes_gently(tmp_path: Path) -> None:
    big = {"a": np.zeros(3 * REMOVE_STEP_BYTES // 8, np.int64)}
    for sequence in (10, 20):
        write_snapshot(tmp_path, sequence, big, b"", sync=False)
    with open(tmp_path / snapshot_name(10), "rb") as held:
        assert prune(tmp_path, keep=1) == [tmp_path / snapshot_name(10)]
        assert os.fstat(held.fileno()).st_size <= REMOVE_STEP_BYTES


def test_a_snapshot_is_sent_to_the_disk_as_it_is_written(tmp_path: Path) -> None:
    """Each chunk is handed to the disk as it is written and the one before it waited for, so
    the final fsync (and the journal's, waiting behind it) has almost nothing left to flush."""
    assert snapshot_module._sync_file_range is not None  # Linux, where the venue runs
    parts = [b"x" * (WRITE_CHUNK_BYTES + 5), b"y" * (2 * WRITE_CHUNK_BYTES)]
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        behind = snapshot_module._WriteBehind(fd, 0, enabled=True)
        length, _crc = snapshot_module._write_parts(fd, parts, behind)
        assert behind.enabled  # no call failed
        assert length == 3 * WRITE_CHUNK_BYTES + 5
        # All but the last chunk waited for; the file's fsync takes the last.
        assert behind.sent == length - behind.previous[1] > 0
        idle = snapshot_module._WriteBehind(fd, 0, enabled=False)
        os.lseek(fd, 0, os.SEEK_SET)
        snapshot_module._write_parts(fd, parts, idle)
        assert idle.sent == 0
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"".join(parts)


# ---- the state hash ------------------------------------------------------------------------


def test_state_hash_is_deterministic_and_independent_of_dict_order() -> None:
    arrays = sample_arrays()
    reordered = dict(reversed(list(arrays.items())))
    copied = {name: array.copy() for name, array in arrays.items()}
    digest = state_hash(arrays, b"meta")
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert state_hash(reordered, b"meta") == digest == state_hash(copied, b"meta")


def field_byte_offsets(array: np.ndarray) -> list[int]:
    """Every byte of ``array`` that belongs to a field (not alignment padding)."""
    if array.dtype.names is None:
        return list(range(array.nbytes))
    marker_bytes = np.zeros(array.nbytes, np.uint8)
    # Fill every field with 0xff through numpy's field access, which never touches padding.
    filled = np.zeros(1, array.dtype)
    _fill_fields(filled)
    per_row = np.flatnonzero(filled.view(np.uint8))
    for row in range(len(array)):
        marker_bytes[row * array.dtype.itemsize + per_row] = 1
    return list(np.flatnonzero(marker_bytes))


def _fill_fields(array: np.ndarray) -> None:
    for name in array.dtype.names:
        field = array[name]
        if field.dtype.names is not None:
            _fill_fields(field)
        else:
            field.view(np.uint8)[...] = 0xFF


@pytest.mark.parametrize("name", ["rows", "nested", "matrix"])
def test_state_hash_changes_with_any_field_byte(name: str) -> None:
    arrays = sample_arrays()
    digest = state_hash(arrays, b"meta")
    offsets = field_byte_offsets(arrays[name])
    assert offsets
    for offset in offsets:
        changed = {**arrays, name: arrays[name].copy()}
        changed[name].view(np.uint8).reshape(-1)[offset] ^= 0x01
        assert state_hash(changed, b"meta") != digest, f"{name} byte {offset}"


def test_state_hash_ignores_alignment_padding() -> None:
    arrays = sample_arrays()
    padded = arrays["rows"].copy()
    padding = sorted(set(range(padded.nbytes)) - set(field_byte_offsets(padded)))
    assert padding
    padded.view(np.uint8)[padding] = 0xAB
    assert state_hash({**arrays, "rows": padded}, b"m") == state_hash(arrays, b"m")


@pytest.mark.parametrize(
    "change",
    ["meta_byte", "meta_longer", "rename", "dtype", "shape", "extra_array", "drop_array"],
)
def test_state_hash_changes_with_structure_and_meta(change: str) -> None:
    arrays, meta = sample_arrays(), b"meta"
    digest = state_hash(arrays, meta)
    if change == "meta_byte":
        meta = b"mets"
    elif change == "meta_longer":
        meta = b"meta\x00"
    elif change == "rename":
        arrays["matrix2"] = arrays.pop("matrix")
    elif change == "dtype":
        arrays["matrix"] = arrays["matrix"].view(np.uint64)
    elif change == "shape":
        arrays["matrix"] = arrays["matrix"].reshape(4, 3)
    elif change == "extra_array":
        arrays["more"] = np.zeros(0, np.int64)
    elif change == "drop_array":
        del arrays["empty"]
    assert state_hash(arrays, meta) != digest


def test_state_hash_of_a_non_contiguous_view_equals_its_copy() -> None:
    matrix = np.arange(20, dtype=np.int64).reshape(4, 5)
    assert state_hash({"m": matrix[:, ::2]}, b"") == state_hash({"m": matrix[:, ::2].copy()}, b"")


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        state_hash({"o": np.array([object()])}, b"")
    with pytest.raises(ValueError):
        write_snapshot(tmp_path, 1, {"o": np.array([object()])}, b"")
