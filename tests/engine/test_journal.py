"""The file journal: round trips, group commit, segments, torn tails and corruption."""

from __future__ import annotations

import logging
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.journal import (
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    FileJournal,
    Journal,
    JournalCorruptError,
    JournalError,
    JournalSequenceError,
    frame,
    segment_name,
)


def payload(sequence: int) -> bytes:
    return f"command-{sequence}".encode() * (1 + sequence % 3)


def batch(first: int, count: int) -> list[tuple[int, bytes]]:
    return [(s, payload(s)) for s in range(first, first + count)]


def write(directory: Path, *batches: list[tuple[int, bytes]], **options) -> None:
    with FileJournal(directory, sync=False, **options) as journal:
        for records in batches:
            journal.append(records)


def read_all(directory: Path, after: int = 0) -> list[tuple[int, bytes]]:
    with FileJournal(directory, sync=False) as journal:
        return list(journal.read(after))


def tree_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def only_segment(directory: Path) -> Path:
    (path,) = directory.glob("journal-*.log")
    return path


def record_offsets(path: Path) -> list[int]:
    """Byte offsets of every record in a valid segment."""
    data, offsets, offset = path.read_bytes(), [], SEGMENT_HEADER_SIZE
    while offset < len(data):
        offsets.append(offset)
        offset += RECORD_HEADER_SIZE + int.from_bytes(data[offset : offset + 4], "little")
    return offsets


# ---- round trips ---------------------------------------------------------------------------


def test_file_journal_satisfies_the_protocol(tmp_path: Path) -> None:
    journal: Journal = FileJournal(tmp_path / "j", sync=False)
    assert journal.last_sequence == 0
    journal.close()


def test_empty_journal_reads_nothing_and_creates_no_segment(tmp_path: Path) -> None:
    assert read_all(tmp_path / "j") == []
    assert list((tmp_path / "j").iterdir()) == []


def test_batches_round_trip_across_reopen(tmp_path: Path) -> None:
    write(tmp_path, batch(1, 3), batch(4, 1), batch(5, 200))
    with FileJournal(tmp_path, sync=False) as journal:
        assert journal.last_sequence == 204
        assert list(journal.read()) == batch(1, 204)
        assert list(journal.read(100)) == batch(101, 104)
        assert list(journal.read(204)) == []
        journal.append(batch(205, 2))
    assert read_all(tmp_path) == batch(1, 206)


def test_empty_payload_and_empty_batch(tmp_path: Path) -> None:
    with FileJournal(tmp_path, sync=False) as journal:
        journal.append([])
        journal.append([(1, b"")])
        assert journal.last_sequence == 1
    assert read_all(tmp_path) == [(1, b"")]


def test_segment_layout_on_disk(tmp_path: Path) -> None:
    write(tmp_path, [(1, b"abc")])
    data = only_segment(tmp_path).read_bytes()
    assert only_segment(tmp_path).name == "journal-00000000000000000001.log"
    assert data[:8] == b"CRDXJRNL"
    record = data[SEGMENT_HEADER_SIZE:]
    assert int.from_bytes(record[0:4], "little") == 3
    assert int.from_bytes(record[4:8], "little") == zlib.crc32(record[8:])
    assert int.from_bytes(record[8:16], "little") == 1
    assert record[16:] == b"abc"


def test_one_fsync_per_batch(tmp_path: Path) -> None:
    fsyncs: list[float] = []
    with FileJournal(tmp_path, on_fsync=fsyncs.append) as journal:
        journal.append(batch(1, 100))
        journal.append(batch(101, 50))
    assert len(fsyncs) == 2
    assert all(seconds >= 0 for seconds in fsyncs)


# ---- sequence rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "records",
    [
        [(4, b"x")],  # gap after the last record
        [(2, b"x")],  # repeats the last record
        [(3, b"x"), (5, b"y")],  # gap inside the batch
        [(3, b"x"), (3, b"y")],  # repeat inside the batch
        [(4, b"x"), (3, b"y")],  # decreasing
    ],
)
def test_non_contiguous_append_is_refused_and_writes_nothing(
    tmp_path: Path, records: list[tuple[int, bytes]]
) -> None:
    write(tmp_path, batch(1, 1))
    write(tmp_path, batch(2, 1))
    before = tree_bytes(tmp_path)
    with FileJournal(tmp_path, sync=False) as journal:
        with pytest.raises(JournalSequenceError, match="expected"):
            journal.append(records)
        assert journal.last_sequence == 2
    assert tree_bytes(tmp_path) == before


@pytest.mark.parametrize("segment_size_max", [10**9, 200])  # one segment; several
def test_a_batch_framed_apart_writes_what_append_writes(tmp_path: Path,
                                                       segment_size_max: int) -> None:
    """The sequencer frames a batch on its own thread (``frame``) and the journal's thread
    only writes it (``append_framed``): the files are byte for byte what ``append`` makes."""
    batches = [batch(1, 1), batch(2, 5), batch(7, 1), batch(8, 12), batch(20, 3)]
    write(tmp_path / "appended", *batches, segment_size_max=segment_size_max)
    with FileJournal(tmp_path / "framed", sync=False,
                     segment_size_max=segment_size_max) as journal:
        for records in batches:
            framed = frame(records)
            assert (framed.first_sequence, framed.count) == (records[0][0], len(records))
            journal.append_framed(framed)
        assert journal.last_sequence == 22
    assert tree_bytes(tmp_path / "framed") == tree_bytes(tmp_path / "appended")
    assert read_all(tmp_path / "framed") == [r for records in batches for r in records]


@pytest.mark.parametrize("first", [2, 4])  # a repeat; a gap
def test_a_framed_batch_that_does_not_continue_is_refused_and_writes_nothing(
        tmp_path: Path, first: int) -> None:
    write(tmp_path, batch(1, 2))
    before = tree_bytes(tmp_path)
    with FileJournal(tmp_path, sync=False) as journal:
        with pytest.raises(JournalSequenceError, match="expected"):
            journal.append_framed(frame(batch(first, 2)))
        assert journal.last_sequence == 2
    assert tree_bytes(tmp_path) == before


def test_framing_refuses_what_append_refuses() -> None:
    with pytest.raises(JournalSequenceError):
        frame([(3, b"x"), (5, b"y")])
    with pytest.raises(ValueError):
        frame([])


def test_first_record_of_an_empty_journal_must_be_one(tmp_path: Path) -> None:
    with FileJournal(tmp_path, sync=False) as journal, pytest.raises(JournalSequenceError):
        journal.append([(7, b"x")])


def test_append_after_close_is_refused(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path, sync=False)
    journal.close()
    with pytest.raises(JournalError, match="closed"):
        journal.append(batch(1, 1))


# ---- segments ------------------------------------------------------------------------------


def test_segments_roll_past_the_size_limit_and_read_across(tmp_path: Path) -> None:
    batches = [batch(first, 5) for first in range(1, 101, 5)]
    write(tmp_path, *batches, segment_size_max=400)
    segments = sorted(tmp_path.glob("journal-*.log"))
    assert len(segments) > 3
    with FileJournal(tmp_path, sync=False) as journal:
        assert journal.segment_paths == segments
        assert journal.last_sequence == 100
        assert list(journal.read()) == batch(1, 100)
        assert list(journal.read(57)) == batch(58, 43)
    # A batch never spans segments, so every segment starts at a batch boundary.
    firsts = [int(p.name[8:28]) for p in segments]
    assert all((first - 1) % 5 == 0 for first in firsts)


def test_out_of_file_descriptors_the_active_segment_goes_on(
        tmp_path: Path, segment_descriptors, caplog: pytest.LogCaptureFixture) -> None:
    """A full descriptor table (EMFILE: a flood of client connections) when a segment is full
    must not fail the write, which would stop the exchange: the batch goes into the active
    segment, past its size, and the next append rolls once a descriptor is free."""
    with FileJournal(tmp_path, sync=True, segment_size_max=400) as journal:
        journal.append(batch(1, 5))
        segment_descriptors.full = True
        with caplog.at_level(logging.WARNING, logger="crowdex.engine.journal"):
            for first in range(6, 31, 5):
                journal.append(batch(first, 5))
        assert len(journal.segment_paths) == 1  # no segment could be started
        assert tmp_path.joinpath(segment_name(1)).stat().st_size > 400
        assert "no file descriptor for a new segment" in caplog.text
        segment_descriptors.full = False
        journal.append(batch(31, 5))  # a descriptor again: the roll happens now
        assert [p.name for p in journal.segment_paths] == [segment_name(1), segment_name(31)]
    assert read_all(tmp_path) == batch(1, 35)


def test_other_errors_starting_a_segment_still_raise(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from engine import journal as journal_module

    real_open = os.open

    def open_(path, flags, *args):
        if str(path).endswith(".log") and flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, *args)

    with FileJournal(tmp_path, sync=False, segment_size_max=400) as journal:
        journal.append(batch(1, 5))
        monkeypatch.setattr(journal_module.os, "open", open_)
        with pytest.raises(OSError, match="No space"):
            for first in range(6, 31, 5):
                journal.append(batch(first, 5))


def test_roll_starts_a_segment_named_for_the_next_sequence(tmp_path: Path) -> None:
    with FileJournal(tmp_path, sync=False) as journal:
        journal.append(batch(1, 3))
        journal.roll()
        journal.roll()  # an empty active segment is not rolled again
        journal.append(batch(4, 2))
    assert [p.name for p in sorted(tmp_path.iterdir())] == [segment_name(1), segment_name(4)]
    assert read_all(tmp_path) == batch(1, 5)


def test_gap_between_segments_is_refused(tmp_path: Path) -> None:
    with FileJournal(tmp_path, sync=False) as journal:
        journal.append(batch(1, 3))
        journal.roll()
        journal.append(batch(4, 3))
        journal.roll()
        journal.append(batch(7, 3))
    (tmp_path / segment_name(4)).unlink()
    before = tree_bytes(tmp_path)
    with pytest.raises(JournalCorruptError, match=segment_name(7)) as info:
        FileJournal(tmp_path, sync=False)
    assert "previous segment ends at 3" in str(info.value)
    assert tree_bytes(tmp_path) == before


def test_segment_header_disagreeing_with_its_name_is_refused(tmp_path: Path) -> None:
    write(tmp_path, batch(1, 2))
    only_segment(tmp_path).rename(tmp_path / segment_name(5))
    with pytest.raises(JournalCorruptError, match="name says 5"):
        FileJournal(tmp_path, sync=False)


def test_reading_before_the_first_segment_is_refused(tmp_path: Path) -> None:
    with FileJournal(tmp_path, sync=False) as journal:
        journal.append(batch(1, 3))
        journal.roll()
        journal.append(batch(4, 3))
    (tmp_path / segment_name(1)).unlink()
    with FileJournal(tmp_path, sync=False) as journal:
        assert list(journal.read(3)) == batch(4, 3)
        with pytest.raises(JournalError, match="not in the journal"):
            list(journal.read(0))


# ---- torn tails ----------------------------------------------------------------------------

TORN_BATCH = [(1, b"first"), (2, b"second record"), (3, b"the last record of the batch")]
LAST_RECORD_SIZE = RECORD_HEADER_SIZE + len(TORN_BATCH[-1][1])


@pytest.mark.parametrize("kept", range(LAST_RECORD_SIZE))
def test_torn_last_record_is_cut_at_every_length(
    tmp_path: Path, kept: int, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, TORN_BATCH)
    path = only_segment(tmp_path)
    last_offset = record_offsets(path)[-1]
    path.write_bytes(path.read_bytes()[: last_offset + kept])
    with caplog.at_level(logging.WARNING, logger="crowdex.engine.journal"):
        journal = FileJournal(tmp_path, sync=False)
    with journal:
        assert journal.last_sequence == 2
        assert list(journal.read()) == TORN_BATCH[:2]
        assert path.stat().st_size == last_offset
        if kept:
            assert f"offset {last_offset}" in caplog.text
        journal.append([(3, b"rewritten")])
    assert read_all(tmp_path) == [*TORN_BATCH[:2], (3, b"rewritten")]


@pytest.mark.parametrize("kept", range(SEGMENT_HEADER_SIZE))
def test_segment_torn_during_creation_is_removed(tmp_path: Path, kept: int) -> None:
    with FileJournal(tmp_path, sync=False) as journal:
        journal.append(batch(1, 2))
        journal.roll()
        journal.append(batch(3, 1))
    new = tmp_path / segment_name(3)
    new.write_bytes(new.read_bytes()[:kept])
    with FileJournal(tmp_path, sync=False) as journal:
        assert journal.last_sequence == 2
        assert not new.exists()
        journal.append(batch(3, 2))
    assert read_all(tmp_path) == batch(1, 4)


@pytest.mark.parametrize("tail", [b"\xff" * 7, bytes(range(40)), b"\0" * 10 + b"\1"])
def test_garbage_after_the_last_record_is_a_torn_tail(tmp_path: Path, tail: bytes) -> None:
    write(tmp_path, batch(1, 4))
    path = only_segment(tmp_path)
    size = path.stat().st_size
    with path.open("ab") as file:
        file.write(tail)
    assert read_all(tmp_path) == batch(1, 4)
    assert path.stat().st_size == size


def test_bad_crc_in_the_final_record_is_a_torn_tail(tmp_path: Path) -> None:
    write(tmp_path, batch(1, 4))
    path = only_segment(tmp_path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    assert read_all(tmp_path) == batch(1, 3)


# ---- corruption that a crash cannot explain ------------------------------------------------


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x40
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("record", [0, 1, 2])
@pytest.mark.parametrize("field_offset", [0, 4, 8, RECORD_HEADER_SIZE])  # length crc seq payload
def test_corrupt_middle_record_is_refused_naming_file_and_offset(
    tmp_path: Path, record: int, field_offset: int
) -> None:
    write(tmp_path, batch(1, 4))
    path = only_segment(tmp_path)
    offset = record_offsets(path)[record]
    flip(path, offset + field_offset)
    before = tree_bytes(tmp_path)
    with pytest.raises(JournalCorruptError) as info:
        FileJournal(tmp_path, sync=False)
    message = str(info.value)
    assert str(path) in message
    assert f"byte offset {offset}" in message
    assert info.value.path == path and info.value.offset == offset
    assert tree_bytes(tmp_path) == before


def test_corrupt_last_record_of_a_non_last_segment_is_refused(tmp_path: Path) -> None:
    with FileJournal(tmp_path, sync=False) as journal:
        journal.append(batch(1, 3))
        journal.roll()
        journal.append(batch(4, 3))
    first = tmp_path / segment_name(1)
    offset = record_offsets(first)[-1]
    first.write_bytes(first.read_bytes()[:-2])  # looks torn, but a later segment exists
    before = tree_bytes(tmp_path)
    with pytest.raises(JournalCorruptError, match="not the last segment") as info:
        FileJournal(tmp_path, sync=False)
    assert info.value.path == first and info.value.offset == offset
    assert tree_bytes(tmp_path) == before


@pytest.mark.parametrize("offset", [0, 8, 12, 20])
def test_damaged_segment_header_is_refused(tmp_path: Path, offset: int) -> None:
    write(tmp_path, batch(1, 2))
    path = only_segment(tmp_path)
    flip(path, offset)
    before = tree_bytes(tmp_path)
    with pytest.raises(JournalCorruptError, match=str(path)):
        FileJournal(tmp_path, sync=False)
    assert tree_bytes(tmp_path) == before


def test_every_single_bit_flip_is_detected(tmp_path: Path) -> None:
    """Any one flipped bit either is refused or, in the final record only, cut as torn."""
    write(tmp_path, batch(1, 3))
    path = only_segment(tmp_path)
    original = path.read_bytes()
    last_offset = record_offsets(path)[-1]
    for byte in range(len(original)):
        for bit in (0x01, 0x80):
            damaged = bytearray(original)
            damaged[byte] ^= bit
            path.write_bytes(bytes(damaged))
            try:
                records = read_all(tmp_path)
            except JournalCorruptError:
                assert byte < last_offset, f"flip at {byte} in the final record was refused"
                continue
            assert byte >= last_offset, f"flip at {byte} outside the final record was accepted"
            assert records == batch(1, 2)
    path.write_bytes(original)


def test_record_checksummed_but_out_of_order_is_refused(tmp_path: Path) -> None:
    write(tmp_path, batch(1, 2))
    other = tmp_path / "other"
    write(other, batch(1, 3))
    path, donor = only_segment(tmp_path), only_segment(other)
    # Append a valid record for sequence 1 again: well formed, but not the next sequence.
    first_record = donor.read_bytes()[SEGMENT_HEADER_SIZE : record_offsets(donor)[1]]
    with path.open("ab") as file:
        file.write(first_record)
    with pytest.raises(JournalCorruptError, match="sequence 1 where 3 was expected"):
        FileJournal(tmp_path, sync=False)


def test_damage_after_open_is_caught_on_read(tmp_path: Path) -> None:
    write(tmp_path, batch(1, 3))
    with FileJournal(tmp_path, sync=False) as journal:
        path = only_segment(tmp_path)
        flip(path, record_offsets(path)[1] + RECORD_HEADER_SIZE)
        with pytest.raises(JournalCorruptError, match="changed on disk"):
            list(journal.read())


# ---- property ------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=20), min_size=1, max_size=12),
    data=st.data(),
)
def test_random_batches_round_trip(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], data: st.DataObject
) -> None:
    directory = tmp_path_factory.mktemp("j")
    expected: list[tuple[int, bytes]] = []
    journal = FileJournal(directory, sync=False, segment_size_max=512)
    try:
        for size in sizes:
            payloads = data.draw(st.lists(st.binary(max_size=200), min_size=size, max_size=size))
            records = [(len(expected) + 1 + i, p) for i, p in enumerate(payloads)]
            journal.append(records)
            expected += records
        if data.draw(st.booleans()):
            journal.roll()
    finally:
        journal.close()
    with FileJournal(directory, sync=False) as reopened:
        assert reopened.last_sequence == len(expected)
        assert list(reopened.read()) == expected
        after = data.draw(st.integers(min_value=0, max_value=len(expected)))
        assert list(reopened.read(after)) == expected[after:]


# ---- segments made ahead: zeros after the records ---------------------------------------------


@pytest.mark.parametrize("zeros", [1, 15, 16, 100, 1 << 20])
def test_zeros_after_the_records_are_space_made_ahead(tmp_path: Path, zeros: int) -> None:
    """Zeros after the last record (a segment made ahead, ``journal._Zeros``) end its
    records without being cut, and the next batch is written over them, where the records
    end: the file keeps its size while the batches fit."""
    write(tmp_path, batch(1, 4))
    path = only_segment(tmp_path)
    records_end = path.stat().st_size
    with path.open("ab") as file:
        file.write(bytes(zeros))
    assert read_all(tmp_path) == batch(1, 4)
    assert path.stat().st_size == records_end + zeros  # not cut
    write(tmp_path, batch(5, 1))
    assert read_all(tmp_path) == batch(1, 5)
    grown = records_end + len(frame(batch(5, 1)).data)
    assert path.stat().st_size == max(records_end + zeros, grown)
    assert not any(path.read_bytes()[grown:])


def test_zeros_end_the_records_of_an_older_segment_too(tmp_path: Path) -> None:
    """A segment rolled before its zeros were all written over keeps them: its records end
    there, and the next segment goes on from its last sequence."""
    with FileJournal(tmp_path, sync=False) as journal:
        journal.append(batch(1, 3))
        first = journal.segment_paths[0]
        with first.open("ab") as file:  # as if made ahead, 4 KiB of zeros
            file.write(bytes(4096))
        journal.roll()
        journal.append(batch(4, 2))
    assert read_all(tmp_path) == batch(1, 5)
    with FileJournal(tmp_path, sync=False, read_only=True) as journal:
        assert [b.first_sequence for b in journal.read_blocks(0)] == [1, 4]


def test_a_torn_record_before_zeros_is_cut_and_a_record_after_them_is_damage(
        tmp_path: Path) -> None:
    """A crash in the middle of a batch written over zeros leaves part of a record and then
    zeros: a torn tail, cut. A record after the zeros, though, is not something a crash
    leaves: the journal refuses to open."""
    write(tmp_path, batch(1, 4))
    path = only_segment(tmp_path)
    good = path.read_bytes()
    torn = frame(batch(5, 1)).data[:30]
    path.write_bytes(good + torn + bytes(50_000))
    assert read_all(tmp_path) == batch(1, 4)
    assert path.stat().st_size == len(good)  # cut where the torn record starts
    path.write_bytes(good + torn + bytes(5000) + frame(batch(6, 1)).data + bytes(100))
    with pytest.raises(JournalCorruptError):
        FileJournal(tmp_path, sync=False)


def _zeros_after_records(path: Path, records_end: int) -> bool:
    return not any(path.read_bytes()[records_end:])


def test_a_synced_journal_writes_zeros_ahead_of_its_records(tmp_path: Path) -> None:
    """A batch that passes the zeros written so far is followed by more (four batches of
    its size, ``ZEROS_AHEAD_MIN`` at least, not past the segment's size); the batches after
    it go over them, so the file grows at few batches; every record reads back, and a
    reopened journal writes on where the records end."""
    size = 1 << 20
    records = [(s, bytes([s % 251 + 1]) * (300 + s % 700)) for s in range(1, 3000)]
    grew = batches = 0
    with FileJournal(tmp_path, segment_size_max=size) as journal:
        for first in range(0, len(records), 5):
            before = journal.segment_paths[-1].stat().st_size if journal.segment_paths else 0
            journal.append(records[first:first + 5])
            batches += 1
            path, segment = journal.segment_paths[-1], journal._segments[-1]
            grew += path.stat().st_size != before
            assert path.stat().st_size >= segment.size_bytes
            assert _zeros_after_records(path, segment.size_bytes)
        paths = journal.segment_paths
    assert len(paths) > 1
    assert grew * 10 < batches
    assert all(path.stat().st_size == size for path in paths[:-1])  # zeros up to their size
    assert read_all(tmp_path) == records
    last_size = paths[-1].stat().st_size
    with FileJournal(tmp_path, segment_size_max=size) as journal:
        journal.append([(3000, b"after")])
    assert paths[-1].stat().st_size == last_size  # over the zeros already there
    assert read_all(tmp_path) == records + [(3000, b"after")]


def test_an_unsynced_journal_writes_no_zeros(tmp_path: Path) -> None:
    """Zeros ahead pay only with syncs: a journal without them (tests, benchmarks) writes its
    records alone."""
    with FileJournal(tmp_path, sync=False, segment_size_max=64 * 1024) as journal:
        for first in range(1, 300, 10):
            journal.append(batch(first, 10))
        for path, segment in zip(journal.segment_paths, journal._segments, strict=True):
            assert path.stat().st_size == segment.size_bytes
