"""``crowdex bench stream``: the journal on a JetStream stream, appended and read back.

A cluster venue's write rate is bounded by how fast a replica can append a group-commit batch to
the stream, and its catch-up (a restarted or new replica) by how fast it can read the stream
back; this measures both against a real cluster: a local one started from the installed
``nats-server`` (``--nodes``, loopback) unless ``--servers`` names one. Entries are deposits
encoded exactly as the sequencer encodes them, as in ``crowdex bench journal``.

Figures: messages/s appended one at a time (one entry each, each acknowledged by its quorum
before the next is sent: what one replica's sequencer does under light load), commands/s
appended in batches of ``--batch``, and catch-up commands/s read back by ``StreamReader`` from
the start of the batched part, and messages/s over the one-entry part (where the cost per
message shows), beside nats-py's own ordered consumer over those. ``--replicas 1,3`` (the
default) runs it all on a stream of one copy, then of three. The last line printed is one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

from nats.js import api

from bench.journal import _entries
from engine import commands as c
from engine.log.jetstream import StreamLog, decode_body
from engine.log.natscluster import NatsCluster

MESSAGES_DEFAULT = 5_000
BATCHES_DEFAULT = 2_000
BATCH_DEFAULT = 256
NODES_DEFAULT = 3
REPLICAS_DEFAULT = "1,3"  # R1 for the figures issue 13 quoted, R3 for what a cluster runs
COUNT_MAX = 1_000_000
REPLICAS_MAX = 5  # JetStream's own limit on a stream's copies
BATCH_MAX = 4_096  # the sequencer's BATCH_SIZE_MAX
READ_TIMEOUT_S = 30.0  # one wait for deliveries while reading back


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crowdex bench stream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=MESSAGES_DEFAULT,
                        help="one-entry messages appended one at a time (default %(default)s)")
    parser.add_argument("--batches", type=int, default=BATCHES_DEFAULT,
                        help="batches appended (default %(default)s)")
    parser.add_argument("--batch", type=int, default=BATCH_DEFAULT,
                        help="commands per batch (default %(default)s)")
    parser.add_argument("--servers", default=None,
                        help="NATS URLs, comma-separated (default: start a local cluster)")
    parser.add_argument("--nodes", type=int, default=NODES_DEFAULT,
                        help="nodes of the local cluster (default %(default)s)")
    parser.add_argument("--replicas", default=REPLICAS_DEFAULT,
                        help="copies of the stream, one run each, comma-separated "
                             "(default %(default)s)")
    parser.add_argument("--sync-always", action="store_true",
                        help="local cluster: fsync every write (NATS's sync_interval: always)")
    args = parser.parse_args(argv)
    for name in ("messages", "batches"):
        if not 1 <= getattr(args, name) <= COUNT_MAX:
            parser.error(f"--{name} must be between 1 and {COUNT_MAX}")
    if not 1 <= args.batch <= BATCH_MAX:
        parser.error(f"--batch must be between 1 and {BATCH_MAX}")
    try:
        args.replicas = [int(part) for part in args.replicas.split(",")]
    except ValueError:
        parser.error("--replicas must be comma-separated numbers")
    nodes = args.nodes if args.servers is None else REPLICAS_MAX
    if not all(1 <= replicas <= nodes for replicas in args.replicas):
        parser.error(f"each of --replicas must be between 1 and {nodes}")
    return args


def _percentile_us(samples: list[float], fraction: float) -> int:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1e6)


async def _append_one_at_a_time(stream_log: StreamLog, payloads: list[bytes]) -> dict:
    latencies = []
    started = time.perf_counter()
    for payload in payloads:
        sent = time.perf_counter()
        await stream_log.append([payload])
        latencies.append(time.perf_counter() - sent)
    seconds = time.perf_counter() - started
    return {"messages": len(payloads), "seconds": round(seconds, 3),
            "messages_per_s": round(len(payloads) / seconds),
            "ack_us_p50": _percentile_us(latencies, 0.50),
            "ack_us_p99": _percentile_us(latencies, 0.99)}


async def _append_batches(stream_log: StreamLog, payloads: list[bytes], batch: int) -> dict:
    started = time.perf_counter()
    for start in range(0, len(payloads), batch):
        await stream_log.append(payloads[start:start + batch])
    seconds = time.perf_counter() - started
    messages = -(-len(payloads) // batch)
    return {"batch": batch, "messages": messages, "commands": len(payloads),
            "seconds": round(seconds, 3), "messages_per_s": round(messages / seconds),
            "commands_per_s": round(len(payloads) / seconds)}


async def _catch_up(stream_log: StreamLog, after: int, upto: int) -> dict:
    """Read (after, upto] with the reader a replica catches up with, decoding every entry."""
    messages = commands = 0
    started = time.perf_counter()
    async for batches in stream_log.read(after, upto):
        for batch in batches:
            messages += 1
            commands += len(batch.payloads)
    seconds = time.perf_counter() - started
    return _rates(messages, commands, seconds)


async def _catch_up_ordered(stream_log: StreamLog, after: int, upto: int) -> dict:
    """The same range through nats-py's ordered consumer, for comparison."""
    messages = commands = 0
    started = time.perf_counter()
    subscription = await stream_log.js.subscribe(
        stream_log.subject, ordered_consumer=True, stream=stream_log.stream,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        config=api.ConsumerConfig(opt_start_seq=after + 1))
    try:
        while messages < upto - after:
            msg = await subscription.next_msg(timeout=READ_TIMEOUT_S)
            commands += len(decode_body(msg.data, msg.metadata.sequence.stream))
            messages += 1
    finally:
        await subscription.unsubscribe()
    return _rates(messages, commands, time.perf_counter() - started)


def _rates(messages: int, commands: int, seconds: float) -> dict:
    return {"messages": messages, "commands": commands, "seconds": round(seconds, 3),
            "messages_per_s": round(messages / seconds),
            "commands_per_s": round(commands / seconds)}


async def _measure(servers: list[str], args: argparse.Namespace, replicas: int) -> dict:
    """Append and read back on a new stream of ``replicas`` copies (deleted after)."""
    stream = f"bench-{secrets.token_hex(4)}"
    single = [c.encode_entry(e) for e in _entries(args.messages)]
    batched = [c.encode_entry(e) for e in _entries(args.batches * args.batch)]
    stream_log = await StreamLog.connect(servers, stream=stream, replicas=replicas)
    try:
        one = await _append_one_at_a_time(stream_log, single)
        batches = await _append_batches(stream_log, batched, args.batch)
        last = await stream_log.last_sequence()
        catch_up = await _catch_up(stream_log, args.messages, last)
        catch_up_single = await _catch_up(stream_log, 0, args.messages)
        ordered = await _catch_up_ordered(stream_log, 0, args.messages)
        await stream_log.js.delete_stream(stream)
    finally:
        await stream_log.close()
    return {"replicas": replicas,
            "entry_bytes_mean": round(sum(map(len, batched)) / len(batched), 1),
            "one_at_a_time": one, "batched": batches, "catch_up": catch_up,
            "catch_up_one_entry_messages": catch_up_single,
            "catch_up_one_entry_messages_nats_py_ordered_consumer": ordered}


def _report(cluster_name: str, result: dict) -> None:
    one, batched = result["one_at_a_time"], result["batched"]
    print(f"stream on {cluster_name}, {result['replicas']} copies; entries "
          f"{result['entry_bytes_mean']:.0f} bytes on average")
    print(f"one at a time: {one['messages_per_s']:,} messages/s (ack p50 {one['ack_us_p50']} "
          f"us, p99 {one['ack_us_p99']} us)")
    print(f"batches of {batched['batch']}: {batched['commands_per_s']:,} commands/s "
          f"({batched['messages_per_s']:,} messages/s)")
    for key, label in (("catch_up", "catch-up read"),
                       ("catch_up_one_entry_messages", "catch-up read, one-entry messages"),
                       ("catch_up_one_entry_messages_nats_py_ordered_consumer",
                        "the same through nats-py's ordered consumer")):
        rates = result[key]
        print(f"{label}: {rates['commands_per_s']:,} commands/s "
              f"({rates['messages_per_s']:,} messages/s)")


def main(argv: list[str]) -> int:
    """Run the benchmark against a local cluster (or ``--servers``); print the figures."""
    args = _parse(argv)
    if args.servers is not None:
        cluster_name = args.servers
        runs = [asyncio.run(_measure(args.servers.split(","), args, replicas))
                for replicas in args.replicas]
    else:
        directory = Path(tempfile.mkdtemp(prefix="crowdex-bench-stream-"))
        cluster = NatsCluster(directory, args.nodes, sync_always=args.sync_always)
        try:
            cluster.start()
            runs = [asyncio.run(_measure(cluster.urls, args, replicas))
                    for replicas in args.replicas]
        finally:
            cluster.stop()
            shutil.rmtree(directory, ignore_errors=True)
        cluster_name = (f"a local {args.nodes}-node cluster"
                        + (" (sync always)" if args.sync_always else ""))
    for run in runs:
        _report(cluster_name, run)
    print(json.dumps({"cluster": cluster_name, "runs": runs}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

