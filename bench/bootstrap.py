"""``crowdex bench bootstrap``: a cluster replica's start, from a snapshot in the cluster plus the
stream's tail, against reading the whole stream.

Builds ``crowdex bench recovery``'s venue (traders with cash and units of one instrument, then
``--orders`` order commands of the replay workload's mix) on a stream of a local 3-node NATS
cluster (loopback, started from the installed ``nats-server``), appended in batches of 4,096
entries as a busy sequencer appends them. Then, each time a replica (``ClusterEngine``) on an
empty data dir is recovered and timed:

1. **whole stream**: no snapshot in the cluster yet, so it reads every message;
2. that replica shares a snapshot of its state (the object store ``<stream>-snapshots``), and
   ``--tail`` more orders are appended;
3. **snapshot + tail**: a new replica fetches the snapshot, loads it and reads only the tail;
4. **whole stream** again at the new length (its snapshot deleted first), for comparison.

Bootstrap seconds are ``recover()`` from call to return (connecting included). Both ways end at
the same state hash (checked). The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.recovery import START_US, _prefix, order_entries
from engine import commands as c
from engine.clock import ManualClock
from engine.cluster import ClusterEngine
from engine.log.jetstream import StreamLog
from engine.log.natscluster import NatsCluster

STREAM = "bench-bootstrap"
APPEND_BATCH = 4096  # the sequencer's BATCH_SIZE_MAX
NODES = 3
ORDERS_MAX = 5_000_000
NEVER = 1 << 62  # a cadence no replica here reaches: snapshots are taken when the bench says


async def _append(stream_log: StreamLog, entries: list[c.Entry]) -> None:
    payloads = [c.encode_entry(entry) for entry in entries]
    for start in range(0, len(payloads), APPEND_BATCH):
        await stream_log.append(payloads[start:start + APPEND_BATCH])


async def _bootstrap(urls: list[str], data_dir: Path) -> tuple[ClusterEngine, dict]:
    """Recover a replica on the empty ``data_dir``; the replica (still connected) and figures."""
    engine = ClusterEngine(urls, data_dir, ManualClock(), stream=STREAM, snapshot_every=NEVER)
    started = time.perf_counter()
    applied = await engine.recover()
    seconds = time.perf_counter() - started
    point = engine.start_point
    figures = {
        "start": point.source, "snapshot_sequence": point.sequence,
        "snapshot_load_seconds": round(point.seconds, 3),
        "stream_entries_read": applied, "bootstrap_seconds": round(seconds, 3),
        "stream_entries_per_sec": round(applied / engine.catch_up_seconds)
        if engine.catch_up_seconds else 0,
        "sequence": engine.machine.last_sequence,
    }
    return engine, figures


async def _run(urls: list[str], work: Path, orders: int, tail: int, seed: int) -> dict:
    entries = order_entries(orders + tail, seed, START_US + 1_000_000)
    prefix = [c.Entry(START_US, actor, command) for actor, command in _prefix()]
    stream_log = await StreamLog.connect(urls, stream=STREAM)
    try:
        began = time.perf_counter()
        await _append(stream_log, prefix + entries[:orders])
        print(f"stream: {len(prefix) + orders:,} entries appended in "
              f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
        first, whole = await _bootstrap(urls, work / "first")
        try:
            began = time.perf_counter()
            shared = await first.snapshots.take(first.machine, first.stream_position, upload=True)
            if shared is None:
                raise RuntimeError("the snapshot was not shared (see the log)")
            share_seconds = time.perf_counter() - began
        finally:
            await first.stop()
        print(f"whole stream: {whole}\nsnapshot of sequence {shared.sequence}: "
              f"{shared.size / (1 << 20):.1f} MiB written and shared in {share_seconds:.2f} s",
              file=sys.stderr)
        await _append(stream_log, entries[orders:])
        second, from_snapshot = await _bootstrap(urls, work / "second")
        try:
            await second.snapshots.store.delete(shared)
        finally:
            await second.stop()
        print(f"snapshot + tail: {from_snapshot}", file=sys.stderr)
        third, whole_again = await _bootstrap(urls, work / "third")
        await third.stop()
        print(f"whole stream again: {whole_again}", file=sys.stderr)
        if second.machine.state_hash() != third.machine.state_hash():
            raise RuntimeError("snapshot + tail and the whole stream reached different states")
        if from_snapshot["start"] != "cluster" or whole_again["start"] != "empty":
            raise RuntimeError("a replica did not start where this benchmark meant it to")
        await stream_log.js.delete_stream(STREAM)
    finally:
        await stream_log.close()
    return {"orders": orders, "tail_orders": tail,
            "snapshot_bytes": shared.size, "snapshot_share_seconds": round(share_seconds, 3),
            "whole_stream": whole, "snapshot_plus_tail": from_snapshot,
            "whole_stream_at_the_same_length": whole_again,
            "speedup": round(whole_again["bootstrap_seconds"]
                             / from_snapshot["bootstrap_seconds"], 1),
            "state_hash": third.machine.state_hash()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crowdex bench bootstrap",
                                description=__doc__.split("\n")[0])
    p.add_argument("--orders", type=int, default=200_000,
                   help="orders in the stream before the snapshot (%(default)s)")
    p.add_argument("--tail", type=int, default=20_000,
                   help="orders appended after the snapshot (%(default)s)")
    p.add_argument("--seed", type=int, default=7, help="the workload's random seed")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    if not (1 <= args.orders <= ORDERS_MAX and 0 <= args.tail <= ORDERS_MAX):
        p.error(f"--orders and --tail must be at most {ORDERS_MAX:,} (--orders at least 1)")
    from engine.markets import warm_up

    warm_up()
    work = Path(tempfile.mkdtemp(prefix="crowdex-bench-bootstrap-"))
    try:
        with NatsCluster(work / "nats", NODES) as cluster:
            figures = asyncio.run(_run(cluster.urls, work, args.orders, args.tail, args.seed))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(figures))
    else:
        print(json.dumps(figures, indent=2))
        print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
