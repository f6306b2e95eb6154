"""The journal on a JetStream stream, against a real 3-node cluster on loopback.

The cluster is started once for the module from the installed ``nats-server`` binary and
stopped after. Each test uses its own stream; a test that kills nodes restarts them before it
ends, so the next one finds the whole cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.log.jetstream import StreamBatch, StreamLog, StreamUnavailable
from engine.log.natscluster import NatsCluster

NODES = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    nats_cluster = NatsCluster(Path(tmp_path_factory.mktemp("nats")), NODES)
    nats_cluster.start()
    try:
        yield nats_cluster
    finally:
        nats_cluster.stop()


def entries(batch: int, count: int) -> list[bytes]:
    return [f"batch-{batch}-entry-{i}".encode() for i in range(count)]


async def read_all(stream_log: StreamLog, after: int = 0) -> list[StreamBatch]:
    batches: list[StreamBatch] = []
    async for chunk in stream_log.read(after):
        batches.extend(chunk)
    return batches


async def stream_leader(cluster: NatsCluster, stream_log: StreamLog) -> int:
    info = await stream_log.js.stream_info(stream_log.stream)
    return cluster.index_of(info.cluster.leader)


def restore(cluster: NatsCluster, *indexes: int) -> None:
    for index in indexes:
        if cluster.nodes[index].pid is None:
            cluster.restart(index)
    cluster.wait_meta_leader()


async def test_append_then_read_back_in_order_across_a_reconnect(cluster: NatsCluster) -> None:
    writer = await StreamLog.connect(cluster.urls, stream="readback")
    appended = []
    for batch in range(40):
        payloads = entries(batch, 1 + batch % 7)
        msg_id = writer.new_msg_id()
        appended.append((await writer.append(payloads, msg_id=msg_id), msg_id, payloads))
    await writer.close()

    reader = await StreamLog.connect(list(reversed(cluster.urls)), stream="readback")
    try:
        assert await reader.last_sequence() == 40
        batches = await read_all(reader)
        assert [(b.sequence, b.msg_id, b.payloads) for b in batches] == appended
        assert [b.sequence for b in batches] == list(range(1, 41))
        assert all(b.time_us > 1_600_000_000_000_000 for b in batches)
        assert [b.sequence for b in await read_all(reader, after=25)] == list(range(26, 41))
    finally:
        await reader.close()


async def test_a_reader_follows_on_when_its_server_dies(cluster: NatsCluster) -> None:
    writer = await StreamLog.connect(cluster.urls, stream="follow")
    leader = await stream_leader(cluster, writer)
    victim = (leader + 1) % NODES  # not the stream's leader: the writer goes on meanwhile
    follower = await StreamLog.connect([cluster.nodes[victim].url], stream="follow")
    reader = await follower.reader()
    try:
        for batch in range(20):
            await writer.append(entries(batch, 3))
        seen = [b.sequence for b in await reader.batches()]
        cluster.kill(victim)
        for batch in range(20, 60):
            await writer.append(entries(batch, 3))
        while len(seen) < 60:
            seen += [b.sequence for b in await asyncio.wait_for(reader.batches(), 20)]
        assert seen == list(range(1, 61))
        assert reader.restarts >= 1
    finally:
        await reader.close()
        await follower.close()
        await writer.close()
        restore(cluster, victim)


async def test_a_retried_append_with_the_same_message_id_is_stored_once(
        cluster: NatsCluster) -> None:
    stream_log = await StreamLog.connect(cluster.urls, stream="dedupe")
    try:
        msg_id = stream_log.new_msg_id()
        first = await stream_log.append(entries(1, 2), msg_id=msg_id)
        retried = await stream_log.append(entries(1, 2), msg_id=msg_id)
        later = await stream_log.append(entries(2, 1))
        assert (first, retried, later) == (1, 1, 2)
        batches = await read_all(stream_log)
        assert [(b.sequence, b.msg_id) for b in batches] == [(1, msg_id), (2, batches[1].msg_id)]
        assert batches[0].payloads == entries(1, 2)
    finally:
        await stream_log.close()


async def test_two_writers_at_once_and_every_reader_sees_one_order(
        cluster: NatsCluster) -> None:
    writers = [await StreamLog.connect([cluster.nodes[i].url], stream="two-writers",
                                       writer_id=f"w{i}") for i in (0, 1)]
    readers = [await StreamLog.connect([cluster.nodes[i].url], stream="two-writers")
               for i in (1, 2)]
    try:
        async def write(stream_log: StreamLog) -> list[int]:
            return [await stream_log.append(entries(batch, 1 + batch % 3))
                    for batch in range(150)]

        sequences = await asyncio.gather(*(write(w) for w in writers))
        assert sorted(sequences[0] + sequences[1]) == list(range(1, 301))
        orders = [[(b.sequence, b.msg_id) for b in await read_all(r)] for r in readers]
        assert orders[0] == orders[1]
        assert len(orders[0]) == 300
        for writer in ("w0", "w1"):
            counters = [int(m.split(":")[1]) for _, m in orders[0] if m.startswith(writer)]
            assert counters == list(range(1, 151))  # each writer's batches in its own order
    finally:
        for stream_log in writers + readers:
            await stream_log.close()


async def watch_leader(stream_log: StreamLog, old: str, since: float) -> float:
    """Seconds from ``since`` until the cluster names a stream leader other than ``old``."""
    while True:
        try:
            info = await asyncio.wait_for(stream_log.js.stream_info(stream_log.stream), 0.25)
            if info.cluster.leader and info.cluster.leader != old:
                return time.monotonic() - since
        except Exception:  # no leader to answer yet
            pass
        await asyncio.sleep(0.05)


async def test_the_stream_leader_killed_mid_appends(cluster: NatsCluster) -> None:
    writer = await StreamLog.connect(cluster.urls, stream="failover", append_timeout_s=30.0)
    observer = await StreamLog.connect(cluster.urls, stream="failover")
    leader = await stream_leader(cluster, writer)
    acknowledged: list[tuple[int, str]] = []
    gaps: list[float] = []
    try:
        last_ack = time.monotonic()
        for batch in range(300):
            if batch == 100:
                cluster.kill(leader)
                election = asyncio.create_task(
                    watch_leader(observer, cluster.nodes[leader].name, time.monotonic()))
            msg_id = writer.new_msg_id()
            acknowledged.append((await writer.append(entries(batch, 4), msg_id=msg_id), msg_id))
            now = time.monotonic()
            gaps.append(now - last_ack)
            last_ack = now
        failover_s = max(gaps[100:])
        election_s = await asyncio.wait_for(election, 30)
        print(f"\nstream leader {cluster.nodes[leader].name} killed: appends resumed after "
              f"{failover_s:.2f} s; NATS named a new stream leader after {election_s:.2f} s")
        assert await stream_leader(cluster, writer) != leader
        batches = await read_all(writer)
        stored = [(b.sequence, b.msg_id) for b in batches]
        assert len({m for _, m in stored}) == len(stored)  # nothing duplicated
        assert set(acknowledged) <= set(stored)  # nothing acknowledged lost
        assert [s for s, _ in stored] == list(range(1, len(stored) + 1))
        assert failover_s < 15.0
    finally:
        await observer.close()
        await writer.close()
        restore(cluster, leader)


async def test_a_stream_without_quorum_refuses_appends_promptly(cluster: NatsCluster) -> None:
    stream_log = await StreamLog.connect(cluster.urls, stream="quorum", append_timeout_s=3.0)
    leader = await stream_leader(cluster, stream_log)
    down = [leader, (leader + 1) % NODES]
    try:
        await stream_log.append(entries(0, 1))
        for index in down:
            cluster.kill(index)
        started = time.monotonic()
        with pytest.raises(StreamUnavailable, match="not acknowledged within 3.0 s"):
            await stream_log.append(entries(1, 1))
        refused_s = time.monotonic() - started
        print(f"\nwithout quorum an append was refused after {refused_s:.2f} s")
        assert refused_s < 5.0
        restore(cluster, *down)
        started = time.monotonic()
        stream_log.append_timeout_s = 30.0
        sequence = await stream_log.append(entries(2, 1))
        print(f"quorum back: the next append stored (sequence {sequence}) after "
              f"{time.monotonic() - started:.2f} s")
        assert sequence >= 2
    finally:
        await stream_log.close()
        restore(cluster, *down)
