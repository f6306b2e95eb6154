"""Snapshots of the whole engine state, and the state hash that checks "replay equals live".

A snapshot is one file ``snapshot-<sequence:020d>.snap`` holding the state after ``sequence``:
every numpy array (structured dtypes included) plus the state machine's meta bytes. It is written
to a temporary name, fsynced, renamed into place and the directory fsynced, so a crash leaves
either the whole snapshot or none of it; loading skips anything whose checksum fails and falls
back to the next older snapshot.

A snapshot also records its log ``position``: where in the log the state ends, for a log whose
positions are not venue sequences. A cluster replica's log is a JetStream stream of batches, so
it must know which stream message to read after (``engine.cluster``); the file journal numbers
its records by venue sequence and writes 0.

File layout, little-endian::

    header: magic "CRDXSNAP", u32 version, u32 reserved, u64 sequence, u64 position,
            u64 body length, u32 CRC32 of the body, u32 CRC32 of the header bytes before it
    body:   msgpack array [[[name, aligned, .npy bytes], ...], meta]

Version 6 is version 5's state with the data of each array of ``SHARED_CHUNK_BYTES`` or more
kept out of the file, in chunk files shared by the snapshots of a directory
(``write_snapshot(..., shared_chunks=True)``, the file journal's writers). Such an array's
entry is ``[name, aligned, .npy header, [SHA-256 digest, ...], chunk size]``: its data cut
into chunks of that size from the start (the last one shorter), each the file
``chunks/<digest in hex>`` beside the snapshot. A venue's big arrays (order records, fills,
movements, the tapes) mostly grow at their ends, so a snapshot writes only the chunks the
directory lacks: the tails and what changed, not the whole history again (``_write_chunks``).
A chunk is written under a temporary name, fsynced and renamed before the snapshot that
names it is published; ``prune`` removes those no kept snapshot names; a reader checks each
chunk against its digest.

A file of an older version holds an older state layout. A reader that is handed an ``upgrade``
(``engine.snapshot_upgrade.upgrade``: recovery and a cluster replica's start) turns a version 4
file into today's state in memory; anything older is refused (so recovery replays the journal
from an older snapshot or from the start). A version 2 header (the same without ``position``)
is still parsed, so its refusal says so.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
from numpy.lib import format as format_npy
from numpy.lib import recfunctions

from engine.private import open_private, private_dir

log = logging.getLogger("crowdex.engine.snapshot")

SNAPSHOT_MAGIC = b"CRDXSNAP"
# 2: INSTRUMENT_DTYPE gained band_multiple (layout 2); 3: the header holds the log position;
# 4: order records in arrays (engine.lifecycle); 5: the trade tapes and candles in arrays
# (engine.marketdata), no longer in the markets meta. A version 4 file can be upgraded as it is
# read (``engine.snapshot_upgrade``); an older one is refused (recovery then replays the journal
# from an older snapshot or from the start).
SNAPSHOT_VERSION = 5
# 6: version 5's state, its large arrays' data in shared chunk files (the module docstring).
# Written only with ``shared_chunks``; a snapshot that must stand alone (a cluster's, shipped
# whole to its object store) is still written as version 5, which every reader since loads.
SHARED_CHUNKS_VERSION = 6
_CURRENT_VERSIONS = (SNAPSHOT_VERSION, SHARED_CHUNKS_VERSION)  # today's state layout
OLDEST_UPGRADABLE = 4
# The size of a shared chunk, and the least an array must hold to be kept in chunks: at most
# one chunk an array (its tail) is written again when it has grown.
SHARED_CHUNK_BYTES = 1 << 20
CHUNKS_DIRECTORY = "chunks"
_HEADER_BODY = struct.Struct("<8sIIQQQI")
_HEADER = struct.Struct("<8sIIQQQII")
SNAPSHOT_HEADER_SIZE = _HEADER.size
_HEADER_V2 = struct.Struct("<8sIIQQII")  # version 2: no position
_PREFIX = struct.Struct("<8sI")  # magic and version, which say how the rest reads
SNAPSHOTS_KEPT_DEFAULT = 3

# The writer's unit: a write of about this size, its checksum taken just before it, sent to
# the disk behind (see below). Each journal fsync meanwhile waits for the chunks in flight: a
# 50 MB snapshot written at 1 MiB a chunk raised a 1.5 KB journal write's fsync from 0.2 ms
# to 1.3-1.7 ms (median while writing) on this machine's disk, at 128 KiB to 0.3-0.35 ms, at
# 256 KiB to ~0.5 ms; the writer's CPU grew from 28 ms to 38 ms at 256 KiB and 52 ms at
# 128 KiB (more sync_file_range calls).
WRITE_CHUNK_BYTES = 256 << 10
# A file being removed is cut this much at a time, with a pause between (``remove_gently``).
REMOVE_STEP_BYTES = 4 << 20
REMOVE_PAUSE_S = 0.005

# The journal's fsync, a few KB every millisecond, shares the disk with the snapshots. Measured
# on this machine's ext4 (mounted with ``discard``) with a 0.2 ms fsync: an 80 MB snapshot written
# into the page cache and flushed by one fsync at the end stalled the journal's fsyncs 7-11
# times for 12-36 ms, and unlinking the old 80 MB snapshot cost one more stall of 12-19 ms (its
# blocks are discarded in the journal commit that the next fsync waits for). Written behind, a
# chunk at a time (``sync_file_range``), and removed in steps, the longest fsync was 1.5-2.5 ms.
# Linux only; elsewhere the snapshot is written and removed the plain way.
_SYNC_FILE_RANGE_WAIT_BEFORE, _SYNC_FILE_RANGE_WRITE, _SYNC_FILE_RANGE_WAIT_AFTER = 1, 2, 4


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    if os.uname().sysname != "Linux":
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


_sync_file_range = _load_sync_file_range()
IOV_MAX = 1024  # buffers one writev takes (POSIX's minimum for IOV_MAX is 16; Linux takes 1024)

_SNAPSHOT_NAME = re.compile(r"snapshot-(\d{20})\.snap")
_TEMP_SUFFIX = ".tmp"


class SnapshotCorruptError(Exception):
    """A snapshot file that cannot be trusted: bad header, checksum, or body."""


class SnapshotVersionError(SnapshotCorruptError):
    """A sound snapshot file of a format version this reader does not load (too old, too new,
    or an older one whose upgrade is refused): skipped like a damaged one."""


class _StoredArray(msgspec.Struct, array_like=True):
    name: str
    aligned: bool  # np.save drops the align=True flag of structured dtypes; restored on load
    npy: bytes  # np.save's bytes; with ``chunks``, only its header
    chunks: list[bytes] = []  # version 6: the digests of the data's shared chunks, in order
    chunk_bytes: int = 0  # and their size (the last one's at most)


class _Body(msgspec.Struct, array_like=True):
    arrays: list[_StoredArray]
    meta: bytes


_body_encoder = msgspec.msgpack.Encoder()
_body_decoder = msgspec.msgpack.Decoder(_Body)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state after ``sequence``: the engine's arrays and its meta bytes (and where in its
    log that state ends, when the log counts otherwise: the module docstring)."""

    sequence: int
    arrays: dict[str, np.ndarray]
    meta: bytes
    path: Path | None = None
    position: int = 0
    version: int = SNAPSHOT_VERSION  # of the file; an upgraded snapshot holds today's layout


# Turns a snapshot of an older version (``OLDEST_UPGRADABLE`` and later) into today's layout,
# or raises ``SnapshotVersionError`` saying why it cannot.
Upgrade = Callable[[Snapshot], Snapshot]


class SnapshotStages:
    """Where a snapshot write's time goes, stage by stage (``crowdex bench snapshot``): each
    ``lap`` adds the time since the one before (or since this was made) to its stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now


def _no_lap(stage: str) -> None:
    pass


def snapshot_name(sequence: int) -> str:
    """The file name of the snapshot taken after ``sequence``."""
    return f"snapshot-{sequence:020d}.snap"


def write_snapshot(
    directory: Path, sequence: int, arrays: dict[str, np.ndarray], meta: bytes, *,
    position: int = 0, sync: bool = True, stages: SnapshotStages | None = None,
    publish: bool = True, shared_chunks: bool = False,
) -> Path:
    """Write a snapshot atomically and return its path; ``sync=False`` is for tests only.
    ``stages``, if given, is told where the time went.

    ``publish=False`` writes the file under its temporary name only, neither synced nor
    renamed, and returns that path; ``publish_snapshot``, in this process or another, then
    makes it durable and visible. The forked snapshot writer works this way, so it lives only
    as long as the writing takes (module ``engine.sequencer``): the exchange shares its pages
    with it while it lives, and the fsync can as well wait in a thread of the exchange.

    ``shared_chunks``: the large arrays' data goes to the directory's shared chunks (version 6,
    the module docstring), each chunk not there yet written and made durable here, before
    this returns, published or not."""
    if sequence < 0 or position < 0:
        raise ValueError(f"sequence and position must be >= 0, got {sequence}, {position}")
    lap = _no_lap if stages is None else stages.lap
    directory = Path(directory)
    private_dir(directory)
    chunked = _write_chunks(directory, arrays, sync) if shared_chunks else {}
    version = SHARED_CHUNKS_VERSION if shared_chunks else SNAPSHOT_VERSION
    lap("chunks")
    parts = _body_parts(arrays, meta, chunked)
    lap("body")
    final = directory / snapshot_name(sequence)
    temp = directory / (final.name + _TEMP_SUFFIX)
    fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        # The body first, after room for the header, which needs its length and checksum.
        os.lseek(fd, _HEADER.size, os.SEEK_SET)
        body_length, body_crc = _write_parts(fd, parts, _WriteBehind(fd, _HEADER.size, sync))
        header = _HEADER_BODY.pack(
            SNAPSHOT_MAGIC, version, 0, sequence, position, body_length, body_crc
        )
        header += struct.pack("<I", zlib.crc32(header))
        if os.pwrite(fd, header, 0) != len(header):
            raise OSError(f"{temp}: short write of the snapshot header")
        lap("write")
    finally:
        os.close(fd)
    if not publish:
        return temp
    return publish_snapshot(directory, sequence, sync=sync, stages=stages)


def publish_snapshot(directory: Path, sequence: int, *, sync: bool = True,
                     stages: SnapshotStages | None = None) -> Path:
    """Make the snapshot that ``write_snapshot(..., publish=False)`` wrote durable (fsync) and
    then visible under its name (an atomic rename, itself made durable); return its path."""
    lap = _no_lap if stages is None else stages.lap
    directory = Path(directory)
    final = directory / snapshot_name(sequence)
    temp = directory / (final.name + _TEMP_SUFFIX)
    if sync:
        _fsync(temp, os.O_WRONLY)
    lap("fsync")
    os.replace(temp, final)
    if sync:
        _fsync(directory, os.O_RDONLY)  # the rename is durable only once the entry is
    lap("rename")
    return final


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def snapshot_paths(directory: Path) -> list[Path]:
    """Every snapshot file of ``directory`` by its name, newest first (none when absent)."""
    return [path for _sequence, path in reversed(_list_snapshots(Path(directory)))]


def load_latest(directory: Path, *, upgrade: Upgrade | None = None) -> Snapshot | None:
    """Load the newest snapshot that checks out, skipping (and logging) damaged ones and those
    of another version (``read_snapshot``)."""
    for sequence, path in reversed(_list_snapshots(Path(directory))):
        try:
            return read_snapshot(path, expected_sequence=sequence, upgrade=upgrade)
        except (OSError, SnapshotCorruptError) as error:
            log.warning("snapshot: skipping %s: %s", path, error)
    return None


def read_snapshot(path: Path, *, expected_sequence: int | None = None,
                  upgrade: Upgrade | None = None) -> Snapshot:
    """Read and verify one snapshot file; raise ``SnapshotCorruptError`` if it is damaged.

    A file of an older version is handed to ``upgrade`` (from ``OLDEST_UPGRADABLE`` on), which
    returns today's state or raises ``SnapshotVersionError``; without one it is refused.
    """
    data = Path(path).read_bytes()
    version, sequence, position, header_size, body_length, body_crc = _read_header(path, data)
    if version not in _CURRENT_VERSIONS and (upgrade is None or version < OLDEST_UPGRADABLE):
        oldest = ("" if upgrade is None else
                  f"; version {OLDEST_UPGRADABLE} is the oldest this reader upgrades")
        raise SnapshotVersionError(f"{path}: not a version {SNAPSHOT_VERSION} snapshot (version "
                                   f"{version}: another state layout, which is not loaded"
                                   f"{oldest})")
    if expected_sequence is not None and sequence != expected_sequence:
        raise SnapshotCorruptError(f"{path}: header says sequence {sequence}")
    body = _checked_body(path, data, header_size, body_length, body_crc)
    try:
        arrays, meta = _decode_body(body, Path(path).parent / CHUNKS_DIRECTORY)
    except (msgspec.DecodeError, ValueError) as error:
        # The checksum matched, so the writer produced this: still refuse it rather than crash.
        raise SnapshotCorruptError(f"{path}: undecodable body: {error}") from error
    snapshot = Snapshot(sequence, arrays, meta, Path(path), position, version)
    return snapshot if version in _CURRENT_VERSIONS else upgrade(snapshot)


def _checked_body(path: Path, data: bytes, header_size: int, body_length: int,
                  body_crc: int) -> memoryview:
    """The body after a header (``_read_header``), its length and checksum checked."""
    body = memoryview(data)[header_size:]
    if len(body) != body_length:
        raise SnapshotCorruptError(f"{path}: body is {len(body)} bytes, header says {body_length}")
    if zlib.crc32(body) != body_crc:
        raise SnapshotCorruptError(f"{path}: body checksum mismatch")
    return body


def _read_header(path: Path, data: bytes) -> tuple[int, int, int, int, int, int]:
    """(version, sequence, position, header size, body length, body CRC) from a checked
    header of version 2 up to today's."""
    if len(data) < _PREFIX.size:
        raise SnapshotCorruptError(f"{path}: {len(data)} bytes, shorter than the header")
    magic, version = _PREFIX.unpack_from(data)
    header = _HEADER_V2 if version == 2 else _HEADER
    if len(data) < header.size:
        raise SnapshotCorruptError(f"{path}: {len(data)} bytes, shorter than the header")
    fields = header.unpack_from(data)
    if zlib.crc32(data[: header.size - 4]) != fields[-1]:
        raise SnapshotCorruptError(f"{path}: header checksum mismatch")
    if magic != SNAPSHOT_MAGIC:
        raise SnapshotCorruptError(f"{path}: not a snapshot (magic {magic!r})")
    if not 2 <= version <= SHARED_CHUNKS_VERSION:
        raise SnapshotVersionError(f"{path}: version {version} is not one this crowdex knows "
                                   f"(it writes versions {SNAPSHOT_VERSION} and "
                                   f"{SHARED_CHUNKS_VERSION}): not loaded")
    if version == 2:
        _magic, _version, _reserved, sequence, body_length, body_crc, _crc = fields
        position = 0
    else:
        _magic, _version, _reserved, sequence, position, body_length, body_crc, _crc = fields
    return version, sequence, position, header.size, body_length, body_crc


def prune(directory: Path, keep: int = SNAPSHOTS_KEPT_DEFAULT) -> list[Path]:
    """Delete all but the newest ``keep`` snapshots and any leftover temp files; return them.

    Must not run while a snapshot of the same directory is being written.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    directory = Path(directory)
    removed = [path for _sequence, path in _list_snapshots(directory)[:-keep]]
    removed += sorted(p for p in directory.glob("snapshot-*" + _TEMP_SUFFIX) if p.is_file())
    for path in removed:
        remove_gently(path)
    return removed + _prune_chunks(directory)


def _prune_chunks(directory: Path) -> list[Path]:
    """Remove the shared chunks no snapshot of ``directory`` names (and leftover temporary
    ones); none while a snapshot there cannot be read, whose chunks are then unknown."""
    chunks = directory / CHUNKS_DIRECTORY
    if not chunks.is_dir():
        return []
    named: set[str] = set()
    for _sequence, path in _list_snapshots(directory):
        try:
            named.update(_chunks_named(path))
        except (OSError, SnapshotCorruptError, msgspec.DecodeError) as error:
            log.warning("snapshot: keeping every shared chunk: %s cannot be read (%s)",
                        path, error)
            return []
    removed = sorted(path for path in chunks.iterdir()
                     if path.name not in named and path.is_file())
    for path in removed:
        remove_gently(path)
    return removed


def _chunks_named(path: Path) -> list[str]:
    """The names of the shared chunks the snapshot ``path`` holds its arrays in."""
    data = path.read_bytes()
    version, _sequence, _position, header_size, body_length, body_crc = _read_header(path, data)
    if version != SHARED_CHUNKS_VERSION:
        return []
    body = _checked_body(path, data, header_size, body_length, body_crc)
    return [digest.hex() for stored in _body_decoder.decode(body).arrays
            for digest in stored.chunks]


def remove_gently(path: Path) -> None:
    """Delete ``path`` (if it is there), a large file cut ``REMOVE_STEP_BYTES`` at a time with a
    pause between, so the blocks it frees are discarded a few MB per journal commit rather than
    all in the one a journal fsync is waiting for (the comment on ``_SYNC_FILE_RANGE_WRITE``).
    Off Linux it is unlinked at once."""
    try:
        if _sync_file_range is not None:
            fd = os.open(path, os.O_WRONLY)
            try:
                size = os.fstat(fd).st_size
                while size > REMOVE_STEP_BYTES:
                    size -= REMOVE_STEP_BYTES
                    os.ftruncate(fd, size)
                    time.sleep(REMOVE_PAUSE_S)
            finally:
                os.close(fd)
        os.unlink(path)
    except FileNotFoundError:
        pass


def state_hash(arrays: dict[str, np.ndarray], meta: bytes) -> str:
    """SHA-256 hex digest over every array (sorted by name) and the meta bytes.

    Each array contributes its name, dtype description, shape and field values. Padding bytes
    of aligned structured dtypes are left out: nothing guarantees their contents (a grown
    table's fresh rows may hold whatever the allocator left), and they carry no state.
    """
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        if array.dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects, which cannot be hashed")
        descr = repr(np.lib.format.dtype_to_descr(array.dtype)).encode()
        for part in (name.encode(), descr, repr(tuple(array.shape)).encode()):
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        values = _without_padding(array)
        digest.update(values.nbytes.to_bytes(8, "little"))
        digest.update(values.reshape(-1).view(np.uint8))
    digest.update(len(meta).to_bytes(8, "little"))
    digest.update(meta)
    return digest.hexdigest()


def _without_padding(array: np.ndarray) -> np.ndarray:
    if array.dtype.names is not None:
        array = recfunctions.repack_fields(array, align=False, recurse=True)
    return np.ascontiguousarray(array)


def _body_parts(arrays: dict[str, np.ndarray], meta: bytes,
                chunked: dict[str, tuple[bytes, list[bytes], int]] | None = None
                ) -> list[bytes | memoryview]:
    """The body (module docstring) as consecutive parts, each array's data a view of the
    array itself, not a copy: in the forked writer the state is the exchange's memory shared
    copy-on-write, and a body built whole there (.npy copies, then the msgpack body) made the
    child fault in and fill twice the state's size before writing a byte, living that much
    longer while every page the exchange writes meanwhile is copied. The bytes are those of
    ``msgspec.msgpack.encode(_Body(...))`` with each array ``np.save``d (the tests check).
    ``chunked``: the arrays kept in shared chunks, by name: their .npy header, their chunks'
    digests and size (``_write_chunks``)."""
    names = sorted(arrays)
    parts: list[bytes | memoryview] = [b"\x92" + _array_header(len(names))]
    for name in names:
        array = arrays[name]
        if chunked and name in chunked:
            header, digests, size = chunked[name]
            parts.append(b"\x95" + _body_encoder.encode(name)
                         + _body_encoder.encode(bool(array.dtype.isalignedstruct))
                         + _body_encoder.encode(header) + _body_encoder.encode(digests)
                         + _body_encoder.encode(size))
            continue
        npy = _npy_parts(array)
        head = (b"\x93" + _body_encoder.encode(name)
                + _body_encoder.encode(bool(array.dtype.isalignedstruct))
                + _bin_header(sum(len(part) for part in npy)))
        parts.append(head)
        parts += npy
    meta = bytes(meta)
    parts += [_bin_header(len(meta)), meta]
    return parts


def _npy_parts(array: np.ndarray) -> list[bytes | memoryview]:
    """``np.save``'s bytes of ``array``: its header, then its data in place when it lies in
    memory in C order (a table's live rows do); anything else is saved to a copy."""
    header = _npy_header(array)
    if header is not None:
        return [header, _data_bytes(array)]
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return [buffer.getvalue()]


def _npy_header(array: np.ndarray) -> bytes | None:
    """``np.save``'s header of ``array`` when its data lies in memory in C order as it is
    saved (and so can be written from where it lies); else None."""
    if not (array.flags.c_contiguous and array.itemsize and not array.dtype.hasobject):
        return None
    header = io.BytesIO()
    try:  # np.save's header is version 1.0 whenever that can hold it
        format_npy.write_array_header_1_0(header, format_npy.header_data_from_array_1_0(array))
    except ValueError:
        return None
    return header.getvalue()


def _data_bytes(array: np.ndarray) -> memoryview:
    return memoryview(array.reshape(-1).view(np.uint8))


def _write_chunks(directory: Path, arrays: dict[str, np.ndarray],
                  sync: bool) -> dict[str, tuple[bytes, list[bytes], int]]:
    """Put the data of each array of ``SHARED_CHUNK_BYTES`` or more in the directory's shared
    chunks, writing (and, with ``sync``, making durable) those not there yet; return each
    such array's .npy header, its chunks' digests and their size."""
    chunks = directory / CHUNKS_DIRECTORY
    private_dir(chunks)
    present = {path.name for path in chunks.iterdir()}
    chunked, wrote, size = {}, False, SHARED_CHUNK_BYTES
    for name in sorted(arrays):
        array = arrays[name]
        header = _npy_header(array)
        if header is None or array.nbytes < size:
            continue
        data, digests = _data_bytes(array), []
        for start in range(0, len(data), size):
            chunk = data[start:start + size]
            digest = hashlib.sha256(chunk).digest()  # ~1.8 GB/s here (the CPU's SHA instructions)
            if digest.hex() not in present:
                _write_chunk(chunks / digest.hex(), chunk, sync)
                present.add(digest.hex())
                wrote = True
            digests.append(digest)
        chunked[name] = (header, digests, size)
    if wrote and sync:
        _fsync(chunks, os.O_RDONLY)  # the new names are durable once the directory is
    return chunked


def _write_chunk(path: Path, data: memoryview, sync: bool) -> None:
    """One shared chunk: written under a temporary name (sent to the disk as it goes, as a
    snapshot is), fsynced, then renamed, so its name only ever names its whole bytes."""
    temp = path.with_name(path.name + _TEMP_SUFFIX)
    fd = open_private(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        _write_parts(fd, [data], _WriteBehind(fd, 0, sync))
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)


def _array_header(length: int) -> bytes:
    """msgpack's header of an array of ``length`` items, in its shortest form."""
    if length < 16:
        return bytes([0x90 | length])
    if length < 1 << 16:
        return b"\xdc" + length.to_bytes(2, "big")
    return b"\xdd" + length.to_bytes(4, "big")


def _bin_header(length: int) -> bytes:
    """msgpack's header of ``length`` bytes of binary, in its shortest form."""
    if length < 1 << 8:
        return b"\xc4" + length.to_bytes(1, "big")
    if length < 1 << 16:
        return b"\xc5" + length.to_bytes(2, "big")
    return b"\xc6" + length.to_bytes(4, "big")


class _WriteBehind:
    """Sends each written chunk of a file to the disk at once and waits for the one before it,
    so no more than two chunks are ever waiting to be written (the comment on
    ``_SYNC_FILE_RANGE_WRITE``). Does nothing when ``enabled`` is false or off Linux."""

    def __init__(self, fd: int, offset: int, enabled: bool) -> None:
        self.fd, self.offset = fd, offset
        self.enabled = enabled and _sync_file_range is not None
        self.previous: tuple[int, int] | None = None
        self.sent = 0  # bytes sent to the disk so far

    def written(self, length: int) -> None:
        if self.enabled and length:
            self._call(self.offset, length, _SYNC_FILE_RANGE_WRITE)
            if self.previous is not None:
                self._call(*self.previous, _SYNC_FILE_RANGE_WAIT_BEFORE | _SYNC_FILE_RANGE_WRITE
                           | _SYNC_FILE_RANGE_WAIT_AFTER)
            self.previous = (self.offset, length)
        self.offset += length

    def _call(self, offset: int, length: int, flags: int) -> None:
        if _sync_file_range(self.fd, offset, length, flags) != 0:
            # Only a pacing aid: the file's fsync still makes it durable. Written the plain way.
            log.warning("snapshot: sync_file_range failed (%s); writing without it",
                        os.strerror(ctypes.get_errno()))
            self.enabled = False
        elif flags & _SYNC_FILE_RANGE_WAIT_AFTER:
            self.sent += length


def _write_parts(fd: int, parts: list[bytes | memoryview],
                 behind: _WriteBehind) -> tuple[int, int]:
    """Write ``parts`` at ``fd``'s offset in writes of about ``WRITE_CHUNK_BYTES``, each
    checksummed just before it is written (still in cache) and then sent to the disk
    (``behind``); returns (length, CRC32)."""
    crc, length, pending, pending_bytes = 0, 0, [], 0
    for part in parts:
        view = memoryview(part)
        for start in range(0, len(view), WRITE_CHUNK_BYTES):
            chunk = view[start:start + WRITE_CHUNK_BYTES]
            crc = zlib.crc32(chunk, crc)
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= WRITE_CHUNK_BYTES:
                _write_all(fd, pending)
                behind.written(pending_bytes)
                length, pending, pending_bytes = length + pending_bytes, [], 0
    _write_all(fd, pending)
    behind.written(pending_bytes)
    return length + pending_bytes, crc


def _write_all(fd: int, buffers: list[memoryview]) -> None:
    """``os.writev`` until every byte of ``buffers`` is written (a write may be short)."""
    while buffers:
        written = os.writev(fd, buffers[:IOV_MAX])
        while buffers and written >= len(buffers[0]):
            written -= len(buffers[0])
            buffers = buffers[1:]
        if buffers and written:
            buffers = [buffers[0][written:], *buffers[1:]]


def _decode_body(body: memoryview, chunks: Path) -> tuple[dict[str, np.ndarray], bytes]:
    decoded = _body_decoder.decode(body)
    arrays = {}
    for stored in decoded.arrays:
        if stored.chunks:
            array = _load_chunked(stored, chunks)
        else:
            array = np.load(io.BytesIO(stored.npy), allow_pickle=False)
        if stored.aligned:
            array = array.view(_realigned(array.dtype))
        arrays[stored.name] = array
    return arrays, decoded.meta


def _load_chunked(stored: _StoredArray, chunks: Path) -> np.ndarray:
    """An array kept in shared chunks: its header's shape and dtype, its data read from the
    chunks in order, each checked against its digest."""
    header = io.BytesIO(stored.npy)
    version = format_npy.read_magic(header)
    if version != (1, 0):
        raise ValueError(f"array {stored.name!r}: .npy header version {version}")
    shape, fortran_order, dtype = format_npy.read_array_header_1_0(header)
    if fortran_order or dtype.hasobject:
        raise ValueError(f"array {stored.name!r}: not a C-ordered array of values")
    length, size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, stored.chunk_bytes
    if size <= 0 or len(stored.chunks) != -(-length // size):
        raise ValueError(f"array {stored.name!r}: {len(stored.chunks)} chunks of {size} bytes "
                         f"for {length} bytes")
    data = np.empty(length, dtype=np.uint8)
    for index, digest in enumerate(stored.chunks):
        start = index * size
        part = data[start:start + size]
        path = chunks / digest.hex()
        try:
            with open(path, "rb") as file:
                got = file.readinto(memoryview(part))
                extra = file.read(1)
        except OSError as error:
            raise SnapshotCorruptError(f"array {stored.name!r}: chunk {path}: {error}") from error
        if got != len(part) or extra:
            raise SnapshotCorruptError(f"array {stored.name!r}: chunk {path} is not "
                                       f"{len(part)} bytes")
        if hashlib.sha256(part).digest() != digest:
            raise SnapshotCorruptError(f"array {stored.name!r}: chunk {path} does not match "
                                       "its digest")
    return data.view(dtype).reshape(shape)


def _realigned(dtype: np.dtype) -> np.dtype:
    """The same layout as ``dtype``, flagged align=True again (recursively)."""
    if dtype.subdtype is not None:
        base, shape = dtype.subdtype
        return np.dtype((_realigned(base), shape))
    if dtype.names is None:
        return dtype
    fields = [dtype.fields[name] for name in dtype.names]
    return np.dtype({
        "names": list(dtype.names),
        "formats": [_realigned(field[0]) for field in fields],
        "offsets": [field[1] for field in fields],
        "itemsize": dtype.itemsize,
        "aligned": True,
    })


def _list_snapshots(directory: Path) -> list[tuple[int, Path]]:
    """Every snapshot file by name (temp files excluded), oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _SNAPSHOT_NAME.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)
