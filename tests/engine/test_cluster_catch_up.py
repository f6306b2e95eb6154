"""A replica catching up applies consecutive stream messages together (``ClusterEngine.
_apply_quietly``): the state is the one each message applied alone gives, and every replica
still snapshots at the end of the message that crosses a cadence point.

No NATS server is needed: the messages are made here and handed to a replica that never
connected, as its reader would hand them."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bench import venue
from engine.clock import WallClock
from engine.cluster import ClusterEngine
from engine.log.jetstream import StreamBatch
from engine.skips import Skip
from tests.engine.test_bench_recovery import _records


def _messages(records: list[tuple[int, bytes]], sizes: list[int], step_us: int,
              start_us: int) -> list[StreamBatch]:
    """The records as stream messages of ``sizes`` entries in turn, stored
    ``step_us`` apart; a few stored earlier than the one before (the venue's time then
    stamps them)."""
    batches, at, n, time_us = [], 0, 0, start_us
    while at < len(records):
        size = sizes[n % len(sizes)]
        time_us += step_us if n % 7 else -step_us
        batches.append(StreamBatch(n + 1, time_us, f"w:{n}",
                                   [payload for _, payload in records[at:at + size]]))
        at, n = at + size, n + 1
    return batches


def _replica(tmp_path: Path, name: str, every: int = 10**9) -> ClusterEngine:
    replica = ClusterEngine("nats://127.0.0.1:1", tmp_path / name, WallClock(),
                            snapshot_every=every)  # never connected
    replica.machine.quiet = True
    return replica


@settings(max_examples=12, deadline=None)
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=6),
       step_us=st.sampled_from([0, 1, 1_000_000, 3_600_000_000]))
def test_messages_applied_together_reach_the_state_of_each_alone(tmp_path_factory, sizes,
                                                                step_us):
    data_dir = tmp_path_factory.mktemp("venue")
    written = venue.build_journal(data_dir, 1500, 5, days=40, investors=40, group_max=8)
    records = _records(data_dir)
    batches = _messages(records, sizes, step_us, venue.START_US)
    alone, together = _replica(data_dir, "alone"), _replica(data_dir, "together")
    for batch in batches:
        alone._apply(batch, catching_up=True)
    grouped = []
    apply_messages = together._apply_messages
    together._apply_messages = lambda group: grouped.append(len(group)) or apply_messages(group)
    together._apply_quietly(batches)
    assert together.stream_position == alone.stream_position == len(batches)
    assert together.machine.last_sequence == alone.machine.last_sequence == written.total
    assert together.machine.now_us == alone.machine.now_us
    assert together.machine.state_hash() == alone.machine.state_hash()
    assert sum(grouped) == len(batches) - 1  # all but the first (the venue's Genesis)


def test_a_group_ends_at_the_message_that_crosses_a_cadence_point(tmp_path) -> None:
    """Every replica snapshots at the end of the very message that crosses a multiple of
    ``snapshot_every``: a group of messages ends with it, and one that does not follow, or
    holds a skipped entry, starts a group of its own."""
    replica = _replica(tmp_path, "r", every=50)
    data_dir = tmp_path / "venue"
    data_dir.mkdir()
    venue.build_journal(data_dir, 400, 5, days=40, investors=40)
    records = _records(data_dir)
    batches = _messages(records, [10], 1, venue.START_US)
    replica._apply(batches[0], catching_up=True)  # the venue exists from here
    assert replica.machine.last_sequence == 10
    assert replica._together(batches, 1) == 5  # to 20, 30, 40 and 50, which crosses 50
    replica.snapshots._mark = 1  # as if 50 were seen: the next point is 100
    assert replica._together(batches, 1) == 10  # up to and with the one that ends at 100
    assert replica._together([batches[2], *batches[2:]], 0) == 1  # the second does not follow
    replica.skips = {35: Skip(35, "0" * 64, "deposit", 2, "x", "a test", "", "")}
    assert replica._together(batches, 1) == 3  # the fourth message (31-40) holds entry 35
    assert replica._together(batches, 3) == 4  # it goes alone (``_apply`` skips it)
