"""``crowdex bench cluster``: what running as a cluster costs, in one run (issue 13's targets).

Durable WebSocket orders through real ``crowdex serve`` processes on loopback, in three set-ups
run one after the other on the same machine:

- **file**: one server on the file journal (fsync per group commit), as ``crowdex bench
  gateway`` measures it;
- **jetstream_r1**: one replica on a JetStream stream of one copy (a lone NATS node);
- **cluster_r3**: two replicas on a stream of three copies (a 3-node NATS cluster), the load's
  WebSocket connections spread over both, so every acknowledgement waits for a quorum.

Each set-up gets a fresh venue (``bench.gateway.setup_market``), then the load of ``bench.loadgen``:
at saturation (``--window`` orders in flight per load process) and at each fixed offered rate
(``--rates``). Orders are acknowledged only once durable: fsynced, or stored by the stream's
quorum. Then a third replica starts on an empty data dir (from the cluster's newest snapshot
once there is one, then the stream's tail): where it started and its catch-up rate (entries/s,
from its log) are reported, and the three replicas must agree on sequence and state hash.

The figures: orders/s and p50/p99 per set-up, the ratios to the file journal, the catch-up
rate, and the load average before and after (the load client shares the machine). The last
line printed is one JSON object (``--json``: also every run's row).

    crowdex bench cluster [--seconds 4] [--rates 1000,5000] [--workers 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench import loadgen
from bench.gateway import (
    OPERATOR_KEY,
    PRICE_FEN,
    free_port,
    measure,
    setup_market,
    start_process,
    stop_process,
)
from engine.log.natscluster import NatsCluster

SETUPS = ("file", "jetstream_r1", "cluster_r3")
STREAM = "bench"
SECONDS_DEFAULT = 4.0
RATES_DEFAULT = "1000,5000"
SECONDS_MAX = 600.0
RATE_MAX = 1_000_000
AGREE_TIMEOUT_S = 60.0  # replicas applying the last of a saturation run's backlog
# A replica's log line once it has caught up (engine.cluster.ClusterEngine._catch_up): where it
# started (the whole stream, or a snapshot at a sequence), then the entries it applied.
CAUGHT_UP = re.compile(r"caught up with stream \S+: from (.+?) \(sequence (\d+), stream message "
                       r"\d+, ([\d.]+) s\), then messages to \d+, (\d+) entries in ([\d.]+) s")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crowdex bench cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=SECONDS_DEFAULT,
                        help="length of each run (default %(default)s)")
    parser.add_argument("--rates", default=RATES_DEFAULT,
                        help="fixed offered rates (orders/s), comma separated "
                             "(default %(default)s)")
    parser.add_argument("--workers", type=int, default=1,
                        help="load processes (default %(default)s)")
    parser.add_argument("--window", type=int, default=loadgen.PIPELINE_WINDOW,
                        help="WebSocket orders in flight per load process at saturation "
                             "(default %(default)s)")
    parser.add_argument("--json", action="store_true",
                        help="the last line also holds every run's row")
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= SECONDS_MAX:
        parser.error(f"--seconds must be above 0 and at most {SECONDS_MAX}")
    try:
        args.rates = [int(rate) for rate in args.rates.split(",") if rate]
    except ValueError:
        parser.error("--rates must be comma-separated whole numbers")
    if not all(0 < rate <= RATE_MAX for rate in args.rates):
        parser.error(f"each of --rates must be between 1 and {RATE_MAX}")
    if not 1 <= args.workers <= 16 or not 1 <= args.window <= 100_000:
        parser.error("--workers must be 1 to 16 and --window 1 to 100000")
    return args


class Servers:
    """The ``crowdex serve`` processes of one set-up, each on its own port and data dir."""

    def __init__(self, work: Path) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.urls: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.journal = ""  # the NATS URLs of a cluster set-up

    def start(self, name: str, *extra: str) -> float:
        """Start one server; returns the seconds until it answered /healthz."""
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        self.procs.append(start_process(
            ["gateway.cli", "serve", "--port", str(port), "--data-dir", str(self.work / name),
             "--operator-key", OPERATOR_KEY, "--rate-limit", "1000000000", *extra],
            url, self.work / f"{name}.log"))
        self.urls.append(url)
        return time.monotonic() - started

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc)
        self.procs.clear()


def _state(url: str) -> dict:
    request = urllib.request.Request(url + "/v1/admin/state",
                                     headers={"Authorization": f"Bearer {OPERATOR_KEY}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _agree(urls: list[str], timeout_s: float = AGREE_TIMEOUT_S) -> dict:
    """Wait until every server reports one sequence; returns the state if the hashes agree."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = [_state(url) for url in urls]
        if len({s["sequence"] for s in states}) == 1:
            if len({s["state_hash"] for s in states}) != 1:
                raise RuntimeError(f"replicas at one sequence disagree: {states}")
            return states[0]
        if time.monotonic() > deadline:
            raise RuntimeError(f"replicas did not reach one sequence: {states}")
        time.sleep(0.05)


def _load(name: str, urls: list[str], args: argparse.Namespace, rows: list[dict]) -> dict:
    """A fresh venue's market, then the load at saturation and at each rate; its figures."""
    instrument, keys = asyncio.run(setup_market(urls[0]))
    _agree(urls)  # every replica knows the traders' keys before they connect to it

    def spec(rate: float | None) -> loadgen.LoadSpec:
        return loadgen.LoadSpec(url=urls[0], spread=tuple(urls[1:]), mode="ws",
                                path="/v1/ws", seconds=args.seconds, rate=rate,
                                api_keys=tuple(keys), body_kind="order",
                                instrument_id=instrument, price=PRICE_FEN, window=args.window)

    label = f"{name} x{len(urls)}" if len(urls) > 1 else name
    metrics = urls[0] + "/metrics"
    row = measure(label, spec(None), args.workers, rows, metrics)
    figures = {f"{name}_orders_per_sec": row["ok_per_sec"], f"{name}_p50_us": row["p50_us"],
               f"{name}_p99_us": row["p99_us"], f"{name}_errors": row["errors"]}
    for rate in args.rates:
        row = measure(label, spec(rate), args.workers, rows, metrics)
        figures[f"{name}_p50_us_at_{rate}"] = row["p50_us"]
        figures[f"{name}_p99_us_at_{rate}"] = row["p99_us"]
        figures[f"{name}_errors"] += row["errors"]
    return figures


def _catch_up(servers: Servers, name: str) -> dict:
    """A new replica on an empty data dir: where it started (the whole stream, or the cluster's
    newest snapshot once the venue passed 100,000 entries), the entries it then applied and how
    fast (from its log), its start-up time, and whether it agrees with the others."""
    start_s = servers.start(name, "--journal", servers.journal, "--stream", STREAM,
                            "--log-format", "text")
    agreed = _agree(servers.urls)
    match = CAUGHT_UP.search((servers.work / f"{name}.log").read_text())
    if match is None:
        raise RuntimeError(f"no catch-up line in {servers.work / name}.log")
    entries, seconds = int(match[4]), float(match[5])
    return {"catch_up_from": match[1], "catch_up_start_sequence": int(match[2]),
            "catch_up_snapshot_seconds": float(match[3]), "catch_up_entries": entries,
            "catch_up_seconds": round(seconds, 3),
            "catch_up_entries_per_sec": round(entries / seconds) if seconds else None,
            "replica_start_seconds": round(start_s, 2), "cluster_sequence": agreed["sequence"],
            "replicas_agree": True}


def _file(work: Path, args: argparse.Namespace, rows: list[dict]) -> dict:
    servers = Servers(work / "file")
    try:
        servers.start("server")
        return _load("file", servers.urls, args, rows)
    finally:
        servers.stop()


def _on_stream(work: Path, args: argparse.Namespace, rows: list[dict], name: str, nodes: int,
               replicas: int, catch_up: bool) -> dict:
    """``replicas`` servers (1 or 2) of one venue on a stream of min(3, nodes) copies."""
    nats = NatsCluster(work / f"{name}-nats", nodes)
    servers = Servers(work / name)
    try:
        nats.start()
        servers.journal = ",".join(nats.urls)
        for index in range(replicas):
            servers.start(f"replica-{index + 1}", "--journal", servers.journal, "--stream",
                          STREAM, "--stream-replicas", str(min(3, nodes)))
        figures = _load(name, list(servers.urls), args, rows)
        if catch_up:
            figures.update(_catch_up(servers, "replica-new"))
        return figures
    finally:
        servers.stop()
        nats.stop()


def _report(figures: dict) -> None:
    file_rate = figures["file_orders_per_sec"]
    for name in SETUPS[1:]:
        figures[f"ratio_{name}_to_file"] = (round(figures[f"{name}_orders_per_sec"] / file_rate,
                                                  3) if file_rate else None)
    for name, value in figures.items():
        print(f"  {name}: {value}")


def main(argv: list[str]) -> int:
    """Run the three set-ups one after the other; print the figures, then one JSON line."""
    args = _parse(argv)
    work = Path(tempfile.mkdtemp(prefix="crowdex-bench-cluster-"))
    load_start = os.getloadavg()
    print(f"crowdex bench cluster: {os.cpu_count()} cores, load average "
          f"{load_start[0]:.2f}, {args.seconds}s per run, rates {args.rates}, "
          f"{args.workers} load process(es), window {args.window}; logs in {work}", flush=True)
    rows: list[dict] = []
    steps: list[Callable[[], dict]] = [
        lambda: _file(work, args, rows),
        lambda: _on_stream(work, args, rows, "jetstream_r1", 1, 1, catch_up=False),
        lambda: _on_stream(work, args, rows, "cluster_r3", 3, 2, catch_up=True),
    ]
    figures: dict = {}
    for step in steps:
        figures.update(step())
    figures["seconds_per_run"] = args.seconds
    figures["load_average_start"] = round(load_start[0], 2)
    figures["load_average_end"] = round(os.getloadavg()[0], 2)
    _report(figures)
    shutil.rmtree(work, ignore_errors=True)
    result = {"figures": figures, "runs": rows} if args.json else {"figures": figures}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
