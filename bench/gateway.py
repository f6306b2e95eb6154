"""``crowdex bench gateway``: durable acknowledged orders/s through the real server, over
HTTP keep-alive and pipelined WebSocket, against a bare aiohttp echo measured in the same run.

It starts ``crowdex serve`` (journal fsync on, embedded PostgreSQL) and the echo server on
loopback, lists an equity offering with no lock-up, funds traders and lets them subscribe, then
drives load from worker processes (``bench.loadgen``): at saturation and at fixed offered
rates. Every gateway acknowledgement is a journaled, fsynced order. Figures, then one JSON line.

    crowdex bench gateway [--seconds 3] [--workers 1] [--rates 5000,20000] [--repeat 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

from bench import loadgen
from gateway.client import Client

OPERATOR_KEY = "cdx_bench_operator_key_0000000000"
PRICE_FEN = 10_00
TRADERS = 8
UNITS_EACH = 200_000
CASH_EACH_FEN = 10_000_000_00


def free_port() -> int:
    """A free loopback port (for a server this benchmark starts)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60,
                 poll_s: float = 0.1) -> None:
    """Wait until ``url`` answers /healthz 200, asking every ``poll_s``; raise if ``proc``
    exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except urllib.error.HTTPError as error:
            error.close()
            time.sleep(poll_s)
        except OSError:
            time.sleep(poll_s)
    raise RuntimeError(f"{url} did not become healthy")


def start_process(args: list[str], url: str, log: Path) -> subprocess.Popen:
    """``python -m ARGS`` with its output in ``log``, once healthy at ``url``."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", *args], stdout=out,
                                stderr=subprocess.STDOUT)
    wait_healthy(url, proc)
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    """SIGTERM (a graceful stop), SIGKILL if it has not exited within 30 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


async def setup_market(url: str) -> tuple[int, list[str]]:
    """An equity instrument in trading and traders holding cash and units of it."""
    async with Client(url, OPERATOR_KEY) as operator:
        issuer = await operator.create_account("issuer", "Bench Issuer")
        traders = [await operator.create_account("investor", f"trader {n}",
                                                 investor_class="institutional")
                   for n in range(TRADERS)]
        for n, trader in enumerate(traders):
            await operator.deposit(trader["account_id"], CASH_EACH_FEN, f"bench-{n}")
        deadline = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                 time.gmtime(time.time() + 30 * 86_400))
        project = await operator.with_key(issuer["api_key"]).create_project(
            "equity", "Bench Co", "load", deadline,
            {"price": PRICE_FEN, "min_quantity": 1, "max_quantity": TRADERS * UNITS_EACH,
             "lockup_days": 0})
        pid = project["project_id"]
        await operator.project_action(pid, "approve")
        for trader in traders:
            await operator.with_key(trader["api_key"]).subscribe(pid, UNITS_EACH)
        await operator.project_action(pid, "close")
        return pid, [t["api_key"] for t in traders]


def measure(name: str, spec: loadgen.LoadSpec, workers: int, rows: list[dict],
            metrics_url: str | None = None, server: subprocess.Popen | None = None) -> dict:
    """Run one load, print its row and add it to ``rows``; with ``metrics_url`` the row has
    the server's journal sync histogram over the run (a cluster replica's: stream appends);
    with ``server`` its CPU time (all its threads) per answer, in microseconds: a figure the
    load client and other work on a shared machine barely move, unlike the rates and tails."""
    before = _scrape(metrics_url) if metrics_url else None
    cpu_before = _cpu_seconds(server)
    row = {"run": name, "mode": spec.mode,
           "offered": spec.rate or "saturation", **loadgen.summarize(loadgen.run(spec, workers))}
    cpu = ""
    if server is not None and row["ok"]:
        row["server_cpu_us"] = round((_cpu_seconds(server) - cpu_before) * 1e6 / row["ok"], 2)
        cpu = f"  cpu={row['server_cpu_us']:5.1f} us"
    disk = ""
    if before is not None:
        after = _scrape(metrics_url)
        row["fsync"] = _observed(before, after, SYNC_METRIC)
        # Where a slow run's time went: in the server (its commands' wait for an answer), in
        # its event loop (a lag delays every frame), or outside both (client, sockets, kernel).
        row["server_latency"] = _observed(before, after, LATENCY_METRIC)
        row["loop_lag"] = _observed(before, after, LAG_METRIC)
        # A periodic snapshot written during the run (every 100k commands, ~5 s at 20k/s)
        # shares the machine's cores and disk: its runs are the ones with the longer tails.
        row["snapshots"] = snapshots_in(after) - snapshots_in(before)
        # Of them, forked from the server (the follower's fallback): a fork stops the loop
        # while it copies the page tables, and the copy-on-write faults after it slow it.
        row["snapshots_forked"] = (snapshots_in(after, "fork")
                                   - snapshots_in(before, "fork"))
        # The follower catching up (it starts 10k commands after the newest snapshot, and
        # falls behind in a burst) takes a core from the rest as it writes one.
        row["follower_behind"] = [gauge_in(before, BEHIND_METRIC), gauge_in(after, BEHIND_METRIC)]
        disk = (f"  fsync calls={row['fsync']['count']} p50<={row['fsync']['p50_ms']} ms "
                f"p99<={row['fsync']['p99_ms']} ms  snapshots={row['snapshots']}"
                f" (forked {row['snapshots_forked']})"
                f"  follower behind={row['follower_behind'][0]}->{row['follower_behind'][1]}"
                f"  server p99<={row['server_latency']['p99_ms']} "
                f"max<={row['server_latency']['max_ms']} ms"
                f"  loop lag p99<={row['loop_lag']['p99_ms']} max<={row['loop_lag']['max_ms']} ms")
        batches = row["fsync"]["count"]  # one fsync per group commit
        if "server_cpu_us" in row and batches:
            # The server's CPU per order falls as batches grow (each costs a fixed ~0.5-1 ms
            # of CPU: its fsync, its handoffs, one socket write per connection), and batches
            # grow when the server answers slower: compare trees per batch, at the same size.
            row["orders_per_batch"] = round(row["ok"] / batches, 1)
            row["server_cpu_us_per_batch"] = round(row["server_cpu_us"] * row["ok"] / batches)
            cpu += (f" ({row['server_cpu_us_per_batch']} us a batch of "
                    f"{row['orders_per_batch']})")
    rows.append(row)
    late = ""
    if "send_late_max_us" in row:  # the client's own delays, charged to the latencies
        late = (f" client late p99={row['send_late_p99_us'] / 1000:.2f} "
                f"max={row['send_late_max_us'] / 1000:.2f} ms")
    late += f" client cpu={row['client_cpu_us']:.1f} us"
    print(f"  {name:<22} {spec.mode:<4} offered={str(row['offered']):>10}  "
          f"ok/s={row['ok_per_sec']:>10,.0f}  p50={row['p50_us'] / 1000:6.2f} ms  "
          f"p99={row['p99_us'] / 1000:6.2f} ms  p99.9={row['p999_us'] / 1000:6.2f} ms  "
          f"errors={row['errors']} {row['error_codes'] or ''}{late}{cpu}{disk}", flush=True)
    return row


def _cpu_seconds(process: subprocess.Popen | None) -> float:
    """User and system CPU seconds ``process`` has used so far (0 without one)."""
    if process is None:
        return 0.0
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


SYNC_METRIC = "crowdex_journal_sync_seconds"
LATENCY_METRIC = "crowdex_command_latency_seconds"
LAG_METRIC = "crowdex_event_loop_lag_seconds"
BEHIND_METRIC = "crowdex_snapshot_follower_behind"


def histogram_counts(metrics_text: str, metric: str) -> dict[str, int]:
    """One of the server's histograms (cumulative bucket counts by upper bound), from
    /metrics' text."""
    counts = {}
    for line in metrics_text.splitlines():
        if line.startswith(metric + "_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            counts[bound] = int(float(line.rsplit(" ", 1)[1]))
    return counts


def gauge_in(metrics_text: str, metric: str) -> int | None:
    """An unlabelled gauge's value from /metrics' text; None when the server has none."""
    for line in metrics_text.splitlines():
        if line.startswith(metric + " "):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


def snapshots_in(metrics_text: str, writer: str | None = None) -> int:
    """``crowdex_snapshots_written_total`` of one writer, or summed over them, from /metrics'
    text."""
    prefix = "crowdex_snapshots_written_total{" + (f'writer="{writer}"}}' if writer else "")
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in metrics_text.splitlines()
               if line.startswith(prefix))


def _scrape(metrics_url: str) -> str:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        return response.read().decode()


def _observed(before: str, after: str, metric: str) -> dict:
    """``histogram_delta`` of one histogram between two scrapes of /metrics' text."""
    return histogram_delta(histogram_counts(before, metric), histogram_counts(after, metric))


def histogram_delta(before: dict[str, int], after: dict[str, int]) -> dict:
    """Count, p50/p99 and the largest observation's upper bounds (bucket edges, ms; None
    beyond the last edge) of what a histogram observed between two scrapes."""
    delta = {bound: after[bound] - before.get(bound, 0) for bound in after}
    total = delta.get("+Inf", 0)

    def quantile(q: float) -> float | None:
        for bound, running in delta.items():  # cumulative, in increasing order
            if total and running >= q * total:
                return None if bound == "+Inf" else round(float(bound) * 1000, 2)
        return None

    return {"count": total, "p50_ms": quantile(0.5), "p99_ms": quantile(0.99),
            "max_ms": quantile(1.0)}


def _runs(args, echo_url: str, gw_url: str, instrument: int, keys: tuple[str, ...],
          server: subprocess.Popen | None = None, echo_server: subprocess.Popen | None = None
          ) -> dict:
    rows: list[dict] = []
    base = dict(seconds=args.seconds, api_keys=keys, window=args.window)
    figures = {}
    for mode in ("http", "ws"):
        echo = measure("bare aiohttp echo", _echo_spec(echo_url, mode, None, base),
                        args.workers, rows, server=echo_server)
        gateway = measure("crowdex gateway", _order_spec(gw_url, mode, None, instrument, base),
                           args.workers, rows, gw_url + "/metrics", server)
        figures[f"{mode}_orders_per_sec"] = gateway["ok_per_sec"]
        figures[f"{mode}_echo_per_sec"] = echo["ok_per_sec"]
        figures[f"{mode}_ratio_to_echo"] = round(gateway["ok_per_sec"] / echo["ok_per_sec"], 3)
        if "server_cpu_us" in gateway:  # the server's CPU per order at saturation (all threads)
            figures[f"{mode}_server_cpu_us_per_order"] = gateway["server_cpu_us"]
            figures[f"{mode}_echo_cpu_us_per_message"] = echo.get("server_cpu_us")
    for rate in args.rates:
        # The floor at this rate: the same paced WebSocket load against the echo, where every
        # millisecond is the load client's, the loop's and loopback's, not the exchange's.
        # A tail at a fixed rate swings from run to run on a shared machine: with --repeat the
        # WebSocket pair runs that many times, interleaved, and the figure is the median.
        echo_p99, ws_p99 = [], []
        for _ in range(args.repeat):
            echo_p99.append(measure("bare aiohttp echo", _echo_spec(echo_url, "ws", rate, base),
                                     args.workers, rows, server=echo_server)["p99_us"])
            ws_p99.append(measure("crowdex gateway", _order_spec(
                gw_url, "ws", rate, instrument, base), args.workers, rows,
                gw_url + "/metrics", server)["p99_us"])
        figures[f"ws_echo_p99_us_at_{rate}"] = statistics.median_low(echo_p99)
        figures[f"ws_p99_us_at_{rate}"] = statistics.median_low(ws_p99)
        if args.repeat > 1:
            figures[f"ws_p99_us_at_{rate}_runs"] = ws_p99
            figures[f"ws_echo_p99_us_at_{rate}_runs"] = echo_p99
        row = measure("crowdex gateway", _order_spec(gw_url, "http", rate, instrument, base),
                       args.workers, rows, gw_url + "/metrics", server)
        figures[f"http_p99_us_at_{rate}"] = row["p99_us"]
    return {"figures": figures, "runs": rows}


def _echo_spec(url: str, mode: str, rate: float | None, base: dict) -> loadgen.LoadSpec:
    """The same load against the bare echo: HTTP ``POST /echo`` or WebSocket ``/ws``."""
    return loadgen.LoadSpec(url=url, mode=mode, path="/echo" if mode == "http" else "/ws",
                            rate=rate, body_kind="echo", **base)


def _order_spec(url: str, mode: str, rate: float | None, instrument: int,
                base: dict) -> loadgen.LoadSpec:
    """Orders against the gateway: HTTP ``POST /v1/orders`` or the WebSocket ``order`` op."""
    return loadgen.LoadSpec(url=url, mode=mode,
                            path="/v1/orders" if mode == "http" else "/v1/ws", rate=rate,
                            body_kind="order", instrument_id=instrument, price=PRICE_FEN, **base)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="crowdex bench gateway")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--workers", type=int, default=1, help="load processes")
    parser.add_argument("--rates", default="5000,20000",
                        help="fixed offered rates (orders/s), comma separated")
    parser.add_argument("--window", type=int, default=loadgen.PIPELINE_WINDOW,
                        help="WebSocket orders in flight per load process at saturation")
    parser.add_argument("--repeat", type=int, default=1,
                        help="WebSocket runs at each fixed rate (the figure is their median)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the server's data dir (its journal and snapshots, 50-400 MB "
                             "a run) beside the logs")
    args = parser.parse_args(argv)
    args.rates = [int(r) for r in args.rates.split(",") if r]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    work = Path(tempfile.mkdtemp(prefix="crowdex-bench-gw-"))
    gw_port, echo_port = free_port(), free_port()
    gw_url, echo_url = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{echo_port}"
    print(f"crowdex bench gateway: {os.cpu_count()} cores, {args.seconds}s per run, "
          f"{args.workers} load process(es), WebSocket window {args.window}; logs in {work}",
          flush=True)
    server = start_process(["gateway.cli", "serve", "--port", str(gw_port), "--data-dir",
                     str(work / "data"), "--operator-key", OPERATOR_KEY, "--rate-limit",
                     "1000000000"], gw_url, work / "server.log")
    echo = start_process(["bench.echo", "--port", str(echo_port)], echo_url, work / "echo.log")
    try:
        instrument, keys = asyncio.run(setup_market(gw_url))
        result = _runs(args, echo_url, gw_url, instrument, tuple(keys), server, echo)
    finally:
        stop_process(server)
        stop_process(echo)
        if not args.keep_data:  # repeated runs filled this machine's disk (79 GB in /tmp)
            shutil.rmtree(work / "data", ignore_errors=True)
    result["figures"]["seconds_per_run"] = args.seconds
    for name, value in result["figures"].items():
        print(f"  {name}: {value}")
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result["figures"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
