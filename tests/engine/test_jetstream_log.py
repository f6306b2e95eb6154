"""The journal on a JetStream stream, against a real 3-node cluster on loopback.

The cluster is started once for the module from the installed ``nats-server`` binary and
stopped after. Each test uses its own stream; a test that kills nodes restarts them before it
ends, so the next one finds the whole cluster.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import pytest

from bench import stream as stream_bench
from engine.log.jetstream import (
    NO_PEERS_YET,
    StreamBatch,
    StreamCorruptError,
    StreamGapError,
    StreamLog,
    StreamUnavailable,
)
from engine.log.natscluster import NatsCluster, free_ports
from tests.engine.conftest import NATS_NODES

NODES = NATS_NODES


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
        # Whether its consumer lived on the node that died decides which way it went on.
        print(f"\nreader: {reader.restarts} new consumers, {reader.filled} messages fetched")
    finally:
        await reader.close()
        await follower.close()
        await writer.close()
        restore(cluster, victim)


async def test_a_delivery_that_never_arrives_is_fetched_by_direct_get(
        cluster: NatsCluster) -> None:
    stream_log = await StreamLog.connect(cluster.urls, stream="lost")
    reader = await stream_log.reader()
    deliver = reader._on_message
    lost = []

    async def lose_the_third(msg) -> None:  # as a connection that died with it in flight
        if msg.data and not lost and reader._parse(msg)[0].sequence == 3:
            lost.append(msg)
            return
        await deliver(msg)

    reader._on_message = lose_the_third
    try:
        for batch in range(6):
            await stream_log.append(entries(batch, 2))
        seen: list[StreamBatch] = []
        while len(seen) < 6:
            seen += await asyncio.wait_for(reader.batches(), 10)
        assert lost and [b.sequence for b in seen] == [1, 2, 3, 4, 5, 6]
        assert (reader.filled, reader.restarts) == (1, 0)
        # The direct get gives the time a delivery carries, to the microsecond.
        delivered = (await read_all(stream_log))[2]
        assert seen[2] == delivered == await stream_log.get(3)
    finally:
        await stream_log.close()


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


async def test_a_hole_in_the_stream_stops_the_reader(cluster: NatsCluster) -> None:
    # Made by hand with a limit (the log's own streams deny deletes and purges).
    nc = await nats.connect(cluster.urls)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await nc.jetstream().add_stream(name="holes", subjects=["holes.log"],
                                                max_msgs=5, num_replicas=3)
                break
            except nats.js.errors.BadRequestError as error:  # its copies not placed yet
                if error.err_code != NO_PEERS_YET or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await nc.close()
    stream_log = await StreamLog.connect(cluster.urls, stream="holes")
    try:
        for batch in range(8):
            await stream_log.append(entries(batch, 1))
        first = (await stream_log.js.stream_info("holes")).state.first_seq
        assert first > 1
        with pytest.raises(StreamGapError, match=f"messages 1..{first - 1} are not in the"):
            await read_all(stream_log)
        kept = [b.sequence for b in await read_all(stream_log, after=first - 1)]
        assert kept == list(range(first, 9))
    finally:
        await stream_log.close()


async def test_a_message_it_did_not_write_stops_the_reader(cluster: NatsCluster) -> None:
    stream_log = await StreamLog.connect(cluster.urls, stream="foreign")
    try:
        await stream_log.append(entries(0, 2))
        await stream_log.js.publish("foreign.log", b"CXB\x01\x00\x00\x00\x00not msgpack")
        await stream_log.js.publish("foreign.log", b"hello")
        with pytest.raises(StreamCorruptError, match="stream message 2: CRC mismatch"):
            await read_all(stream_log)
        with pytest.raises(StreamCorruptError, match="stream message 3: 5-byte body"):
            await read_all(stream_log, after=2)
    finally:
        await stream_log.close()


async def test_what_an_append_refuses_at_once(cluster: NatsCluster) -> None:
    stream_log = await StreamLog.connect(cluster.urls, stream="refusals")
    try:
        with pytest.raises(ValueError, match="at least one entry"):
            await stream_log.append([])
        with pytest.raises(ValueError, match="over the servers' max_payload"):
            await stream_log.append([b"x" * (stream_log.nc.max_payload + 1)])
        assert await stream_log.last_sequence() == 0
    finally:
        await stream_log.close()


async def test_a_stream_whose_copies_cannot_be_placed_is_asked_for_again(
        cluster: NatsCluster) -> None:
    """The meta leader answers "no suitable peers for placement" while it has not heard from a
    node that just came back ("peer offline", for ~0.3 s here), as it does for more copies than
    nodes. Connecting asks again until its deadline, then says the stream is unavailable."""
    with pytest.raises(StreamUnavailable, match="no suitable peers for placement"):
        await StreamLog.connect(cluster.urls, stream="toomany", replicas=5, ready_timeout_s=1.0)
    victim = (cluster.index_of(cluster.wait_meta_leader()) + 1) % NODES
    cluster.kill(victim)
    cluster.restart(victim)  # it answers its health check; the leader may not know it yet
    stream_log = await StreamLog.connect(cluster.urls, stream="placed")
    try:
        assert stream_log.replicas == 3
        assert await stream_log.append(entries(0, 2)) == 1
    finally:
        await stream_log.close()
        restore(cluster, victim)


async def test_no_server_is_unavailable_not_a_hang() -> None:
    started = time.monotonic()
    with pytest.raises(StreamUnavailable, match="no NATS server answered"):
        await StreamLog.connect([f"nats://127.0.0.1:{port}" for port in free_ports(2)])
    assert time.monotonic() - started < 10.0


def test_the_benchmark_prints_one_json_object_last(
        cluster: NatsCluster, capsys: pytest.CaptureFixture[str]) -> None:
    code = stream_bench.main(["--servers", ",".join(cluster.urls), "--messages", "20",
                              "--batches", "4", "--batch", "16", "--replicas", "3"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    run = result["runs"][0]
    assert (run["replicas"], run["one_at_a_time"]["messages"]) == (3, 20)
    assert run["batched"]["commands"] == run["catch_up"]["commands"] == 64
    assert run["catch_up_one_entry_messages"]["messages"] == 20


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
        # Its 3 s, the try in flight then (ATTEMPT_TIMEOUT_S) and room for a loaded machine:
        # well short of the default APPEND_TIMEOUT_S it would wait without the setting.
        assert refused_s < 7.0
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


async def test_a_leader_that_lost_its_quorum_answers_unavailable_not_refused(
        cluster: NatsCluster) -> None:
    """The two followers die, the leader lives: a retried append (same message id) is answered
    409 "duplicate message id is in process" while the first try waits for a quorum. That is
    no refusal: the batch may yet be stored, so it must end as StreamUnavailable (the replica's
    503 then says to retry with the same Idempotency-Key), not as a StreamError."""
    stream_log = await StreamLog.connect(cluster.urls, stream="lostquorum", append_timeout_s=3.0)
    leader = await stream_leader(cluster, stream_log)
    down = [index for index in range(NODES) if index != leader]
    try:
        await stream_log.append(entries(0, 1))
        for index in down:
            cluster.kill(index)
        with pytest.raises(StreamUnavailable, match="not acknowledged within 3.0 s"):
            await stream_log.append(entries(1, 1))
    finally:
        await stream_log.close()
        restore(cluster, *down)


async def test_a_lone_node_is_a_standalone_jetstream_server(tmp_path: Path) -> None:
    """``--nats-nodes 1`` (and the cluster benchmark's R1 run): NATS refuses a cluster block
    without routes, so a lone node runs JetStream on its own and leads once it is ready."""
    with NatsCluster(tmp_path / "lone", 1) as lone:
        async with await StreamLog.connect(lone.urls, stream="lone", replicas=1) as stream_log:
            assert await stream_log.append(entries(0, 2)) == 1
            assert [b.payloads for b in await read_all(stream_log)] == [entries(0, 2)]
