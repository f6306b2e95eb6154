"""The journal: an append-only log of numbered command records, made durable one batch at a time.

``Journal`` is the one small interface the sequencer writes through. ``FileJournal`` implements
it on local files; a replicated log (NATS JetStream, Kafka) can later implement the same four
members without the sequencer noticing.

On disk, a journal is a directory of segment files ``journal-<first sequence:020d>.log``. Each
segment starts with a fixed header (magic, format version, first sequence, CRC), then records::

    <u32 payload length><u32 CRC32 of (sequence + payload)><u64 sequence><payload>

all little-endian. Sequences are contiguous across the whole journal. A batch is written with as
few ``os.write`` calls as the kernel allows and then fdatasynced once (group commit).

A segment may end in zeros: room written ahead of its records. A batch that would pass the
zeros written so far is written with more after it (``ZEROS_AHEAD_MIN`` to ``_MAX``: four
batches of its size), and the file's position is put back where the records end, so the next
batches go over zeros already on the disk: their fdatasync writes the data alone, not the file's
size (here a sync of a 3 KB write took 158 against 290 us, and 73 against 115 us of CPU; the
probe in the README). Zeros written by a thread of their own, a whole segment ahead, were
tried: their writes queued the journal's syncs behind them (p99 0.85 -> 5-8 ms). A record is
never all zeros (its CRC covers its sequence), so a record header of zeros with only zeros
after it is where a segment's records end, in any segment.

Opening a journal validates every segment. A crash mid-write can only damage the end of the last
segment, so a bad record there with nothing valid after it is a torn write: it is cut off and
logged. A bad record anywhere else is damage we must not paper over: opening raises
``JournalCorruptError`` naming the file and byte offset, and leaves every byte on disk as it was.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
from numba import config as numba_config

from engine.kernels import records
from engine.private import open_private, private_dir, tighten_files

log = logging.getLogger("crowdex.engine.journal")

SEGMENT_MAGIC = b"CRDXJRNL"
SEGMENT_VERSION = 1
# magic, version, first sequence of the segment, CRC32 of the bytes before it
_SEGMENT_HEADER_FIELDS = struct.Struct("<8sIQ")
_SEGMENT_HEADER = struct.Struct("<8sIQI")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size

# payload length, CRC32 over (sequence + payload), sequence; the sequence sits right before the
# payload so the CRC covers one contiguous slice.
_RECORD_HEADER = struct.Struct("<IIQ")
_SEQUENCE = struct.Struct("<Q")  # the header's last field, covered by the CRC
RECORD_HEADER_SIZE = _RECORD_HEADER.size
_CRC_START = 8  # offset of the sequence field inside a record header

# A batch of this many records or more is framed by one compiled pass; fewer (and with numba's
# JIT off, where that pass would be plain Python a byte) in the loop of ``frame_payloads``.
FRAME_COMPILED_MIN = 16
_frame_into = None if numba_config.DISABLE_JIT else records.frame_into

SEGMENT_SIZE_MAX = 64 * 1024 * 1024  # roll to a new segment once the active one is this big
RECORD_PAYLOAD_MAX = 1024 * 1024  # a command is a few hundred bytes; anything bigger is damage
SCAN_CHUNK_BYTES = 1024 * 1024  # bounds memory when searching a damaged tail for valid records

_SEGMENT_NAME = re.compile(r"journal-(\d{20})\.log")
# Zeros written after a batch that passes those written so far (a synced journal's): four
# batches of its size, within these bounds, and not past the segment's size (module docstring).
# That batch's sync writes them too: a fixed small step keeps it short (64 KiB here ~0.1 ms),
# including the large batches that follow a stall, whose orders are the slowest already.
ZEROS_AHEAD_MIN = 64 * 1024
ZEROS_AHEAD_MAX = 256 * 1024
ZEROS_AHEAD_BATCHES = 4
ZERO_BYTES = bytes(ZEROS_AHEAD_MAX)  # what is written from (the journal thread's by address)


class JournalError(Exception):
    """The journal cannot be used as asked (closed, failed, or asked for records it lacks)."""


class JournalCorruptError(JournalError):
    """A record or segment on disk is damaged somewhere a crash cannot explain."""

    def __init__(self, path: Path, offset: int, reason: str) -> None:
        super().__init__(
            f"journal corrupt: {path} at byte offset {offset}: {reason}; "
            "nothing was changed on disk (restore the file or move it aside to start)"
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class JournalSequenceError(JournalError, ValueError):
    """An append whose sequences do not continue the journal exactly."""


class Journal(Protocol):
    """What the sequencer needs from a log: append durably, know where it ends, replay it."""

    @property
    def last_sequence(self) -> int:
        """The sequence of the last durable record, 0 when the journal is empty."""
        ...

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        """Make one batch of ``(sequence, payload)`` records durable, or raise."""
        ...

    def read(self, after_sequence: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield every record with a sequence greater than ``after_sequence``, in order."""
        ...

    def close(self) -> None:
        """Release the journal's resources; it cannot be appended to afterwards."""
        ...


@dataclass(slots=True)
class _Segment:
    path: Path
    first_sequence: int
    record_count: int
    size_bytes: int  # bytes known valid: the header plus whole, checked records

    @property
    def next_sequence(self) -> int:
        return self.first_sequence + self.record_count


class RecordBlock(NamedTuple):
    """Consecutive records of one segment: payload ``i`` is ``data[starts[i]:ends[i]]``,
    numbered ``first_sequence + i``."""

    first_sequence: int
    data: bytes
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64


class Framed(NamedTuple):
    """A batch of records framed for the disk (``frame``): ``count`` records numbered from
    ``first_sequence``, their headers and payloads in ``data``."""

    first_sequence: int
    count: int
    data: bytes


def frame(records: Sequence[tuple[int, bytes]]) -> Framed:
    """Frame consecutive ``(sequence, payload)`` records for ``FileJournal.append_framed``.

    Apart from the append, so a caller can do this work on its own thread: the sequencer
    frames on the event loop and leaves the journal's thread only the write and the fsync,
    which run without the interpreter lock (framing there took the lock from the loop in
    turns: py-spy --native at WebSocket saturation found the loop's thread waiting for the
    lock in ~5% of its samples, while the journal's thread held it)."""
    if not records:
        raise ValueError("no records to frame")
    first = expected = records[0][0]
    for sequence, payload in records:
        if sequence != expected:
            raise JournalSequenceError(
                f"append of sequence {sequence} where {expected} was expected")
        if len(payload) > RECORD_PAYLOAD_MAX:
            raise ValueError(f"record {sequence} is {len(payload)} bytes, over "
                             f"RECORD_PAYLOAD_MAX ({RECORD_PAYLOAD_MAX})")
        expected += 1
    return frame_payloads(first, [bytes(payload) for _, payload in records])


def frame_payloads(first_sequence: int, payloads: Sequence[bytes]) -> Framed:
    """``frame`` of payloads numbered from ``first_sequence`` and checked against
    ``RECORD_PAYLOAD_MAX`` already (the sequencer's way, for every batch). From
    ``FRAME_COMPILED_MIN`` records, by one compiled pass (``engine.kernels.records.
    frame_into``); fewer, each record's header packed inline (~0.35 us a record)."""
    count = len(payloads)
    if count >= FRAME_COMPILED_MIN and _frame_into is not None:
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=count)
        joined = b"".join(payloads)
        out = np.empty(len(joined) + RECORD_HEADER_SIZE * count, dtype=np.uint8)
        _frame_into(np.frombuffer(joined, dtype=np.uint8), lengths, first_sequence, out,
                    records.CRC_TABLE)
        return Framed(first_sequence, count, out.tobytes())
    pack, pack_sequence, crc = _RECORD_HEADER.pack, _SEQUENCE.pack, zlib.crc32
    chunks: list[bytes] = []
    add = chunks.extend
    for sequence, payload in zip(itertools.count(first_sequence), payloads):
        add((pack(len(payload), crc(payload, crc(pack_sequence(sequence))), sequence), payload))
    return Framed(first_sequence, len(payloads), b"".join(chunks))


@dataclass(slots=True)
class _BadRecord:
    offset: int
    reason: str


def segment_name(first_sequence: int) -> str:
    """The file name of the segment whose first record has ``first_sequence``."""
    return f"journal-{first_sequence:020d}.log"


def _segment_header(first_sequence: int) -> bytes:
    fields = _SEGMENT_HEADER_FIELDS.pack(SEGMENT_MAGIC, SEGMENT_VERSION, first_sequence)
    return fields + zlib.crc32(fields).to_bytes(4, "little")


def _record_header(sequence: int, payload: bytes) -> bytes:
    """A record's header: the payload's length, the CRC-32 of the sequence and the payload,
    the sequence."""
    crc = zlib.crc32(payload, zlib.crc32(_SEQUENCE.pack(sequence)))
    return _RECORD_HEADER.pack(len(payload), crc, sequence)


def _encode_record(sequence: int, payload: bytes) -> bytes:
    return _record_header(sequence, payload) + payload


def _check_record(data: memoryview, offset: int) -> tuple[int, int] | str:
    """Return ``(sequence, end offset)`` of the record at ``offset``, or why it is not one."""
    end = len(data)
    if offset + RECORD_HEADER_SIZE > end:
        return f"truncated record header ({end - offset} of {RECORD_HEADER_SIZE} bytes)"
    length, crc, sequence = _RECORD_HEADER.unpack_from(data, offset)
    if length > RECORD_PAYLOAD_MAX:
        return f"payload length {length} exceeds {RECORD_PAYLOAD_MAX}"
    record_end = offset + RECORD_HEADER_SIZE + length
    if record_end > end:
        return f"truncated payload ({end - offset - RECORD_HEADER_SIZE} of {length} bytes)"
    if zlib.crc32(data[offset + _CRC_START : record_end]) != crc:
        return f"CRC mismatch in record claiming sequence {sequence}"
    return sequence, record_end


def _unwritten(data: memoryview | bytes, offset: int) -> bool:
    """Whether ``data[offset:]`` is all zeros: room written ahead of a segment's records and
    not written over (yet). No record is all zeros (its CRC covers its sequence)."""
    return offset < len(data) and not np.frombuffer(data, dtype=np.uint8)[offset:].any()


def _written_end(data: memoryview | bytes) -> int:
    """One past the last byte of ``data`` that is not zero (0 if all are)."""
    nonzero = np.frombuffer(data, dtype=np.uint8) != 0
    return len(nonzero) - int(np.argmax(nonzero[::-1])) if nonzero.any() else 0


def _find_valid_record(data: memoryview, start: int, sequence_min: int,
                       written_end: int | None = None) -> int | None:
    """Return the offset of the first checksummed record at or after ``start``, or None.
    ``written_end``: nothing but zeros follows it, so no record starts there or after (a
    record's header is not zeros): a torn record in a segment with room written ahead is
    followed by up to ``ZEROS_AHEAD_MAX`` of them, which are not searched.

    Used only on a damaged tail, to tell a torn write (nothing valid follows) from damage in the
    middle (valid records follow). The damaged record may have a garbage length, so record
    boundaries are unknown and every byte offset is a candidate. numpy views the buffer at every
    offset at once to discard implausible candidates before any CRC is computed.
    """
    end = len(data)
    # A later record of a contiguous journal cannot carry a larger sequence than this.
    sequence_max = sequence_min + (end - start) // RECORD_HEADER_SIZE
    last_start = end - RECORD_HEADER_SIZE
    if written_end is not None:
        last_start = min(last_start, written_end - 1)
    for chunk in range(start, last_start + 1, SCAN_CHUNK_BYTES):
        count = min(SCAN_CHUNK_BYTES, last_start + 1 - chunk)
        lengths = np.ndarray((count,), "<u4", buffer=data, offset=chunk, strides=(1,))
        sequences = np.ndarray((count,), "<u8", buffer=data, offset=chunk + 8, strides=(1,))
        room = last_start - (chunk + np.arange(count, dtype=np.int64))
        plausible = (
            (sequences >= sequence_min)
            & (sequences <= sequence_max)
            & (lengths.astype(np.int64) <= np.minimum(room, RECORD_PAYLOAD_MAX))
        )
        for index in np.flatnonzero(plausible):
            if not isinstance(_check_record(data, chunk + int(index)), str):
                return chunk + int(index)
    return None


def _fsync_directory(directory: Path) -> None:
    # A new file's name is durable only once its directory is fsynced.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _scan_segment(path: Path, first_sequence: int) -> tuple[_Segment, _BadRecord | None]:
    """Check one segment from the start; return its valid prefix and the first bad record."""
    data = memoryview(path.read_bytes())
    header = _segment_header(first_sequence)
    if len(data) < SEGMENT_HEADER_SIZE:
        if bytes(data) != header[: len(data)]:
            raise JournalCorruptError(path, 0, "damaged segment header")
        # A segment created just before a crash: its header never fully reached the disk.
        return _Segment(path, first_sequence, 0, 0), _BadRecord(0, "truncated segment header")
    magic, version, header_sequence, header_crc = _SEGMENT_HEADER.unpack_from(data, 0)
    if zlib.crc32(data[: _SEGMENT_HEADER_FIELDS.size]) != header_crc:
        raise JournalCorruptError(path, 0, "segment header CRC mismatch")
    if magic != SEGMENT_MAGIC:
        raise JournalCorruptError(path, 0, f"bad magic {magic!r}")
    if version != SEGMENT_VERSION:
        raise JournalCorruptError(path, 8, f"unsupported format version {version}")
    if header_sequence != first_sequence:
        raise JournalCorruptError(
            path, 12, f"header says first sequence {header_sequence}, name says {first_sequence}"
        )
    segment = _Segment(path, first_sequence, 0, SEGMENT_HEADER_SIZE)
    count, stop, why, _ = _walk(data, SEGMENT_HEADER_SIZE, len(data), first_sequence)
    segment.record_count, segment.size_bytes = count, stop
    if why == records.WALK_SEQUENCE:
        # A checksummed record out of order is not a torn write: something rewrote the log.
        _length, _crc, sequence = _RECORD_HEADER.unpack_from(data, stop)
        raise JournalCorruptError(
            path, stop, f"sequence {sequence} where {segment.next_sequence} was expected")
    if why != records.WALK_END and not _unwritten(data, stop):
        reason = _check_record(data, stop)
        return segment, _BadRecord(stop, reason if isinstance(reason, str) else "bad record")
    return segment, None


def _walk(data: memoryview | bytes, offset: int, limit: int,
          first_sequence: int) -> tuple[int, int, int, np.ndarray]:
    """The records of ``data[offset:limit]`` by the compiled walk (``engine.kernels.records``):
    (count, stop offset, why it stopped, each record's offset)."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    starts = np.empty(max(0, limit - offset) // RECORD_HEADER_SIZE + 1, dtype=np.int64)
    count, stop, why = records.walk(buffer, offset, limit, first_sequence, RECORD_PAYLOAD_MAX,
                                    starts, records.CRC_TABLE)
    return count, stop, why, starts[:count]


def _is_torn_tail(segment: _Segment, bad: _BadRecord) -> bool:
    """True when nothing checksummed follows the bad record, so a crash explains it."""
    if bad.offset == 0:
        return True  # the segment header itself was cut short
    data = memoryview(segment.path.read_bytes())
    return _find_valid_record(data, bad.offset + 1, segment.next_sequence,
                              _written_end(data)) is None


class FileJournal:
    """A ``Journal`` on local segment files; one writer at a time, not thread-safe.

    ``sync=False`` skips every fsync: only for tests and benchmarks that need no durability.
    ``on_fsync`` is called with the seconds each batch's fsync took, for metrics.
    ``read_only=True`` changes nothing on disk (no torn tail is cut: reading stops before it),
    so ``crowdex replay`` may read the journal of a running server.
    """

    def __init__(
        self,
        directory: Path,
        *,
        sync: bool = True,
        segment_size_max: int = SEGMENT_SIZE_MAX,
        on_fsync: Callable[[float], None] | None = None,
        read_only: bool = False,
    ) -> None:
        if segment_size_max <= SEGMENT_HEADER_SIZE:
            raise ValueError(f"segment_size_max must exceed {SEGMENT_HEADER_SIZE} bytes")
        self.directory = Path(directory)
        self.sync = sync
        self.segment_size_max = segment_size_max
        self.on_fsync = on_fsync
        self.read_only = read_only
        self._fd: int | None = None
        self._dir_fd: int | None = None
        self._closed = False
        # Set when a write or fsync failed: what reached the disk is then unknown, and retrying
        # an fsync after a failure can falsely report success, so the journal refuses to go on.
        self._failed: BaseException | None = None
        self._file_end = 0  # the active segment's size on disk: its records, then zeros
        self._zeros_end = 0  # ``direct_target``'s batch's end of zeros, for ``appended``
        if read_only:
            if not self.directory.is_dir():
                raise JournalError(f"no journal in {self.directory}")
            self._segments = self._open_segments()
            return
        if not self.directory.exists():
            private_dir(self.directory)
            if sync:
                _fsync_directory(self.directory.parent)
        else:  # what an older version made readable by others
            private_dir(self.directory)
            tighten_files(self.directory)
        self._segments = self._open_segments()
        # Held open, so starting a segment needs one new descriptor, not two (see _roll).
        self._dir_fd: int | None = os.open(self.directory, os.O_RDONLY)
        if self._segments:
            # Not O_APPEND: the records go on where they end, over the zeros after them.
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY)
            os.lseek(self._fd, self._segments[-1].size_bytes, os.SEEK_SET)
            self._file_end = os.fstat(self._fd).st_size
            if sync:
                # A writer that died between a write and its fsync left records that the
                # page cache still shows: they are applied from now on, and a snapshot may
                # hold them (engine.follower), so they are made durable before anything else.
                os.fsync(self._fd)

    # ---- the Journal interface -----------------------------------------------------------------

    @property
    def last_sequence(self) -> int:
        """The sequence of the last durable record, 0 when the journal is empty."""
        if not self._segments:
            return 0
        return self._segments[-1].next_sequence - 1

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        """Write one batch and fsync it once; sequences must continue ``last_sequence`` exactly."""
        self._check_writable()
        if records:
            self.append_framed(frame(records))

    def append_framed(self, framed: Framed) -> None:
        """``append`` of a batch framed already (``frame``)."""
        self._check_writable()
        expected = self.last_sequence + 1
        if framed.first_sequence != expected:
            raise JournalSequenceError(
                f"append of sequence {framed.first_sequence} where {expected} was expected")
        batch = framed.data
        active = self._segments[-1] if self._segments else None
        try:
            if active is None:
                self._start_segment(framed.first_sequence)
            elif self._full(active, framed):
                self._roll(framed.first_sequence)
            zeros = self._zeros_after(framed)
            self._write_all(batch)
            if zeros:  # written after the batch, the position put back where it ends
                zeros = self._write_zeros(zeros)
            self._fsync_active()
        except BaseException as error:
            self._failed = error
            raise
        segment = self._segments[-1]
        segment.record_count += framed.count
        segment.size_bytes += len(batch)
        self._file_end = max(self._file_end, segment.size_bytes + zeros)

    def direct_target(self, framed: Framed) -> tuple[int, int, int] | None:
        """Where ``framed`` can be appended by the caller's own write and fsync
        (``engine.kernels.journal_io``), every check of ``append_framed`` passed: the
        descriptor, the directory's descriptor when this batch starts a new segment (else
        -1), and how many zeros (from ``ZERO_BYTES``) to write after the batch, putting the
        descriptor's position back by as many. The new segment is made here, its header
        written but not yet durable: the caller fsyncs the segment and then the directory
        (``sync``), in that order, before it writes the batch, as ``append_framed`` does in
        ``_start_segment``. None when the batch must go through ``append_framed``, which raises
        the refusal there. The caller reports the outcome to ``appended`` or ``failed``, before
        anything else is appended."""
        if self.read_only or self._closed or self._failed is not None:
            return None
        if framed.first_sequence != self.last_sequence + 1:
            return None
        active = self._segments[-1] if self._segments else None
        directory = -1
        if active is None or self._full(active, framed):
            try:
                fd = self._new_segment(framed.first_sequence, rolling=active is not None)
            except OSError as error:  # refused, as append_framed's start would be
                self._failed = error
                return None
            # None: no descriptor to spare, the active segment takes it (``_roll``).
            if fd is not None:
                self._use_segment(fd, framed.first_sequence)
                directory = self._dir_fd if self.sync else -1
        if self._fd is None:
            return None
        zeros = self._zeros_after(framed)
        self._zeros_end = self._segments[-1].size_bytes + len(framed.data) + zeros
        return self._fd, directory, zeros

    def appended(self, framed: Framed, fsync_seconds: float | None) -> None:
        """``framed`` was written to ``direct_target``'s descriptor (and fsynced, unless
        ``sync`` is off): count it, as ``append_framed`` does after its own write."""
        segment = self._segments[-1]
        segment.record_count += framed.count
        segment.size_bytes += len(framed.data)
        self._file_end = max(self._file_end, self._zeros_end)
        if fsync_seconds is not None and self.on_fsync is not None:
            self.on_fsync(fsync_seconds)

    def failed(self, error: BaseException) -> None:
        """A write or fsync to ``direct_target``'s descriptor failed: refuse to go on, as
        ``append_framed`` does (what reached the disk is unknown)."""
        self._failed = error

    def read(self, after_sequence: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield ``(sequence, payload)`` for every record after ``after_sequence``, in order.

        Every record's CRC is checked again as it is read back, so damage done after opening
        raises ``JournalCorruptError`` rather than feeding bad commands to the state machine.
        """
        for segment in self._segments_after(after_sequence):
            yield from self._read_segment(segment, after_sequence)

    def close(self) -> None:
        """Close the active segment; further appends raise ``JournalError``."""
        self._closed = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    # ---- file-journal extras -------------------------------------------------------------------

    def roll(self) -> None:
        """Start a new segment for the next record (a no-op while the active one is empty)."""
        self._check_writable()
        if self._segments and self._segments[-1].record_count:
            self._start_segment(self.last_sequence + 1)

    @property
    def segment_paths(self) -> list[Path]:
        """The segment files, oldest first."""
        return [segment.path for segment in self._segments]

    def __enter__(self) -> FileJournal:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- internals -----------------------------------------------------------------------------

    def _open_segments(self) -> list[_Segment]:
        """Validate every segment, then cut off a torn tail; raise, changing nothing, on damage."""
        named = []
        for path in self.directory.iterdir():
            match = _SEGMENT_NAME.fullmatch(path.name)
            if match:
                named.append((int(match.group(1)), path))
        named.sort()
        segments: list[_Segment] = []
        tail: _BadRecord | None = None
        for index, (first_sequence, path) in enumerate(named):
            if segments and first_sequence != segments[-1].next_sequence:
                raise JournalCorruptError(
                    path, 0, f"segment starts at sequence {first_sequence} but the previous "
                    f"segment ends at {segments[-1].next_sequence - 1}",
                )
            segment, bad = _scan_segment(path, first_sequence)
            if bad is not None:
                is_last = index == len(named) - 1
                if not is_last:
                    raise JournalCorruptError(path, bad.offset, f"{bad.reason} (not the last "
                                              "segment, so this is not a torn write)")
                if not _is_torn_tail(segment, bad):
                    raise JournalCorruptError(path, bad.offset, f"{bad.reason}, with valid "
                                              "records after it (not a torn write)")
                tail = bad
            segments.append(segment)
        # Only now, with every segment checked, may anything on disk change.
        if tail is not None and not self.read_only:
            self._cut_torn_tail(segments, tail)
        return segments

    def _cut_torn_tail(self, segments: list[_Segment], bad: _BadRecord) -> None:
        last = segments[-1]
        size = last.path.stat().st_size
        if bad.offset == 0:
            log.warning("journal: removing %s, created just before a crash (%d-byte header)",
                        last.path, size)
            last.path.unlink()
            segments.pop()
            if self.sync:
                _fsync_directory(self.directory)
            return
        log.warning(
            "journal: cutting torn tail of %s at byte offset %d (%s); %d bytes removed, "
            "last sequence %d", last.path, bad.offset, bad.reason, size - bad.offset,
            last.next_sequence - 1,
        )
        os.truncate(last.path, bad.offset)
        if self.sync:
            fd = os.open(last.path, os.O_WRONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _full(self, segment: _Segment, framed: Framed) -> bool:
        """Whether ``framed`` goes into a new segment: ``segment`` holds records already and
        would grow past its size (a batch never spans segments)."""
        return bool(segment.record_count) and \
            segment.size_bytes + len(framed.data) > self.segment_size_max

    def _roll(self, first_sequence: int) -> None:
        """Start the next segment when the active one is full (see ``_new_segment`` for a
        process out of file descriptors)."""
        fd = self._new_segment(first_sequence, rolling=True)
        if fd is not None:
            self._make_durable(fd)
            self._use_segment(fd, first_sequence)

    def _start_segment(self, first_sequence: int) -> None:
        fd = self._new_segment(first_sequence, rolling=False)
        self._make_durable(fd)
        self._use_segment(fd, first_sequence)

    def _zeros_after(self, framed: Framed) -> int:
        """How many zeros to write after ``framed`` in the active segment (module docstring):
        none unless the journal syncs and the batch passes the zeros written so far."""
        end = self._segments[-1].size_bytes + len(framed.data)
        if not self.sync or end <= self._file_end:
            return 0
        ahead = min(max(ZEROS_AHEAD_BATCHES * len(framed.data), ZEROS_AHEAD_MIN),
                    ZEROS_AHEAD_MAX)
        return max(0, min(ahead, self.segment_size_max - end))

    def _new_segment(self, first_sequence: int, *, rolling: bool) -> int | None:
        """Create the segment file for ``first_sequence`` with its header (not yet durable)
        and return its descriptor. Rolling out of file descriptors (EMFILE/ENFILE: a flood of
        client connections, say), return None: the active segment takes this batch too and the
        next append tries again, since a full descriptor table must not stop the exchange.
        Nothing was created then (the open is the only call that needs a descriptor). Any
        other error is the disk's, and raises."""
        path = self.directory / segment_name(first_sequence)
        try:
            # Not O_APPEND: batches are written where the records end, over the zeros after.
            fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except OSError as error:
            if not rolling or error.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            log.warning("journal: no file descriptor for a new segment (%s); segment %s goes "
                        "on past its size", error, self._segments[-1].path.name)
            return None
        try:
            header = _segment_header(first_sequence)
            if os.write(fd, header) != len(header):
                raise OSError(f"short write of the segment header of {path}")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _make_durable(self, fd: int) -> None:
        """A new segment's header, then its name, durable before its first record is
        written (``sync``); on failure its descriptor is closed and the error raised."""
        if not self.sync:
            return
        try:
            os.fsync(fd)
            os.fsync(self._dir_fd)  # the new name is durable once its directory is
        except BaseException:
            os.close(fd)
            raise

    def _use_segment(self, fd: int, first_sequence: int) -> None:
        """Append from now on to the segment just made (``_new_segment``)."""
        if self._fd is not None:
            os.close(self._fd)
        self._fd = fd
        self._file_end = SEGMENT_HEADER_SIZE
        path = self.directory / segment_name(first_sequence)
        self._segments.append(_Segment(path, first_sequence, 0, SEGMENT_HEADER_SIZE))
        log.info("journal: started segment %s", path)

    def _write_all(self, data: bytes) -> None:
        if self._fd is None:
            raise JournalError("no active segment")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _write_zeros(self, count: int) -> int:
        """Write ``count`` zeros at the position and put it back; how many were written. As
        many as the disk takes: a full disk (or a file size limit) refuses the room ahead,
        not the batch before it, which is written already."""
        view, written = memoryview(ZERO_BYTES)[:count], 0
        while written < count:
            try:
                written += os.write(self._fd, view[written:])
            except OSError as error:
                if error.errno == errno.EINTR:
                    continue
                break
        if written:
            os.lseek(self._fd, -written, os.SEEK_CUR)
        return written

    def _fsync_active(self) -> None:
        if not self.sync or self._fd is None:
            return
        started = time.perf_counter()
        os.fdatasync(self._fd)  # the data and the size (see the module docstring)
        if self.on_fsync is not None:
            self.on_fsync(time.perf_counter() - started)

    def _check_writable(self) -> None:
        if self.read_only:
            raise JournalError(f"journal at {self.directory} is open read-only")
        if self._closed:
            raise JournalError(f"journal at {self.directory} is closed")
        if self._failed is not None:
            raise JournalError(
                f"journal at {self.directory} failed earlier ({self._failed!r}); reopen it to "
                "recover what reached the disk"
            )

    def read_blocks(self, after_sequence: int = 0) -> Iterator[RecordBlock]:
        """``read``'s records a segment at a time, as one buffer and the payloads' offsets in
        it: a replay scans them in compiled code without a bytes object per record."""
        for segment in self._segments_after(after_sequence):
            yield self._segment_block(segment, after_sequence)

    def _segments_after(self, after_sequence: int) -> list[_Segment]:
        if after_sequence < 0:
            raise ValueError(f"after_sequence must be >= 0, got {after_sequence}")
        segments = list(self._segments)
        if segments and after_sequence + 1 < segments[0].first_sequence:
            raise JournalError(
                f"records {after_sequence + 1}..{segments[0].first_sequence - 1} are not in "
                f"the journal at {self.directory}"
            )
        return [segment for segment in segments
                if segment.next_sequence > after_sequence + 1]

    def _segment_block(self, segment: _Segment, after_sequence: int) -> RecordBlock:
        # Stop at what was valid at open or last appended: bytes past it are not ours. One
        # read of the segment (at most SEGMENT_SIZE_MAX and a batch) instead of two per record.
        with open(segment.path, "rb") as file:
            data = file.read(segment.size_bytes)
        if len(data) != segment.size_bytes:
            raise JournalCorruptError(segment.path, len(data), "file shrank since the journal "
                                      "was opened")
        count, stop, why, starts = _walk(data, SEGMENT_HEADER_SIZE, segment.size_bytes,
                                         segment.first_sequence)
        if why != records.WALK_END or count != segment.record_count:
            raise JournalCorruptError(segment.path, stop, "record changed on disk since the "
                                      "journal was opened")
        first = max(0, after_sequence + 1 - segment.first_sequence)
        ends = np.empty(count - first, dtype=np.int64)
        ends[:-1] = starts[first + 1:]
        ends[-1:] = stop
        return RecordBlock(segment.first_sequence + first, data,
                           starts[first:] + RECORD_HEADER_SIZE, ends)

    def _read_segment(self, segment: _Segment, after_sequence: int) -> Iterator[tuple[int, bytes]]:
        block = self._segment_block(segment, after_sequence)
        raw = block.data  # the bytes read: a slice of them is one copy of the payload
        for index, (start, end) in enumerate(zip(block.starts.tolist(), block.ends.tolist(),
                                                 strict=True)):
            yield block.first_sequence + index, raw[start:end]


# Bounds one read of a followed journal (~10k records); room for the largest record, which
# must fit whole in one read or the tail would wait for it forever.
TAIL_READ_BYTES_MAX = max(1024 * 1024, RECORD_HEADER_SIZE + RECORD_PAYLOAD_MAX)


class JournalTail:
    """Follows, read-only, a journal another process is appending to: the records after a
    sequence, as they arrive, never past a sequence the writer says is durable.

    The writer appends each batch with ``os.write`` and starts a new segment only once the
    active one is full, so the end of the active segment may hold part of a record being
    written. That part is left where it is and read whole later: nothing is cut, changed or
    taken for damage; nor are the zeros written ahead of the records (module docstring), which
    a record header of zeros starts. A record at or before the durable sequence was whole on
    disk before the writer said so; one that does not check out is damage, and raises
    ``JournalCorruptError``.
    Older segments are not validated here (the writer did that when it opened them).
    """

    def __init__(self, directory: Path, after_sequence: int) -> None:
        self.directory = Path(directory)
        self.next_sequence = after_sequence + 1  # the sequence of the next record to read
        self._fd: int | None = None  # the segment being read
        self._first = 0  # its first sequence
        self._offset = 0  # the byte offset of record ``next_sequence`` in it
        self._seek(self.next_sequence)

    def read(self, upto: int, records_max: int = 8192) -> RecordBlock | None:
        """The next whole records, at most ``records_max`` and none after ``upto``; None when
        the next one is not (whole) on disk yet."""
        if upto < self.next_sequence:
            return None
        if self._fd is None and not self._open(self.next_sequence):
            return None
        block = self._read_here(upto, records_max)
        if block is not None:
            return block
        # Nothing more in this segment. Once the next one exists the writer appends nothing
        # here, so one more read after seeing it finds all this segment will ever hold.
        if not (self.directory / segment_name(self.next_sequence)).exists():
            return None
        block = self._read_here(upto, records_max)
        if block is not None:
            return block
        os.close(self._fd)
        self._fd = None
        return self.read(upto, records_max) if self._open(self.next_sequence) else None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _read_here(self, upto: int, records_max: int) -> RecordBlock | None:
        data = os.pread(self._fd, TAIL_READ_BYTES_MAX, self._offset)
        count, stop, why, starts = _walk(data, 0, len(data), self.next_sequence)
        take = min(count, upto + 1 - self.next_sequence, records_max)
        if take <= 0:
            if why in (records.WALK_CRC, records.WALK_TOO_LONG, records.WALK_SEQUENCE) \
                    and not _unwritten(memoryview(data)[:stop + RECORD_HEADER_SIZE], stop):
                # The record the writer called durable is not whole and right: damage.
                path = self.directory / segment_name(self._first)
                reason = _check_record(memoryview(data), stop)
                raise JournalCorruptError(path, self._offset + stop, reason if isinstance(
                    reason, str) else f"sequence {self.next_sequence} expected")
            return None  # nothing yet, or only part of the next record
        end = int(starts[take]) if take < count else stop
        ends = np.empty(take, dtype=np.int64)
        ends[:-1] = starts[1:take]
        ends[-1] = end
        block = RecordBlock(self.next_sequence, data, starts[:take] + RECORD_HEADER_SIZE, ends)
        self._offset += end
        self.next_sequence += take
        return block

    def _open(self, first_sequence: int) -> bool:
        """Start reading the segment that begins at ``first_sequence``; False when it is not
        there yet, or its header is not whole yet."""
        path = self.directory / segment_name(first_sequence)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        header = os.pread(fd, SEGMENT_HEADER_SIZE, 0)
        if header != _segment_header(first_sequence):
            os.close(fd)
            if _segment_header(first_sequence).startswith(header):
                return False  # being created
            raise JournalCorruptError(path, 0, "damaged segment header")
        self._fd, self._first, self._offset = fd, first_sequence, SEGMENT_HEADER_SIZE
        return True

    def _seek(self, sequence: int) -> None:
        """Find record ``sequence``: in the newest segment that starts at or before it."""
        firsts = sorted(int(match.group(1)) for name in os.listdir(self.directory)
                        if (match := _SEGMENT_NAME.fullmatch(name)))
        before = [first for first in firsts if first <= sequence]
        if not before:
            if firsts:
                raise JournalError(f"records {sequence}..{firsts[0] - 1} are not in the "
                                   f"journal at {self.directory}")
            return  # an empty journal: its first segment is opened when it appears
        if not self._open(before[-1]):
            raise JournalError(f"segment {segment_name(before[-1])} has no whole header")
        data = os.pread(self._fd, os.fstat(self._fd).st_size, 0)
        count, stop, _why, starts = _walk(data, SEGMENT_HEADER_SIZE, len(data), self._first)
        skipped = sequence - self._first
        if skipped > count:
            raise JournalError(f"the journal at {self.directory} ends before sequence "
                               f"{sequence - 1}")
        self._offset = int(starts[skipped]) if skipped < count else stop
