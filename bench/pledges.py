"""``crowdex bench pledges``: a flash burst of pledges at one limited product tier.

Starts a real ``crowdex serve`` (manual clock, fsync on) on a free port, lists a product project
with one limited tier, funds the backers, then fires ``--pledges`` pledges of one unit each over
HTTP with ``--concurrency`` requests in flight. Reports pledges/s, p50/p99 acknowledgement
latency, and checks that exactly the tier's quantity was accepted (every other pledge
``sold_out``), as the acknowledgements and the project's figures both say.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPERATOR_KEY = "cdx_bench_operator_key_0123456789"
START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(data_dir: Path, port: int, extra: list[str]) -> subprocess.Popen:
    args = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port),
            "--data-dir", str(data_dir), "--operator-key", OPERATOR_KEY, "--clock", "manual",
            "--rate-limit", "1000000000", *extra]
    log = open(data_dir.parent / "server.log", "ab")  # noqa: SIM115 - the child's stdout
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                            cwd=Path(__file__).resolve().parent.parent)
    log.close()
    return proc


async def _wait_healthy(session, url: str, proc: subprocess.Popen) -> None:
    started = time.monotonic()
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError("the server exited during start")
        try:
            async with session.get(url + "/healthz") as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the server did not come up")


async def _post(session, url: str, body: dict, key: str) -> dict:
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        payload = await r.json()
        if r.status not in (200, 201):
            raise RuntimeError(f"{url}: {r.status} {payload}")
        return payload


async def _setup(session, base: str, investors: int, tier_quantity: int) -> tuple[int, list]:
    op = OPERATOR_KEY
    issuer = await _post(session, base + "/v1/accounts", {"role": "issuer", "name": "maker"}, op)
    now = (await (await session.get(base + "/v1/admin/state",
                                    headers={"Authorization": f"Bearer {op}"})).json())["now"]
    from engine.clock import format_time_us, parse_time_us

    deadline = format_time_us(parse_time_us(now) + 30 * 86_400 * 1_000_000)
    project = await _post(session, base + "/v1/projects", {
        "board": "product", "title": "flash sale", "deadline": deadline,
        "terms": {"goal": 1, "tiers": [{"tier_id": "flash", "price": 100,
                                        "quantity": tier_quantity}]}}, issuer["api_key"])
    pid = project["project_id"]
    await _post(session, f"{base}/v1/projects/{pid}/approve", {}, op)

    async def backer(i: int) -> str:
        acct = await _post(session, base + "/v1/accounts",
                           {"role": "investor", "name": f"backer {i}"}, op)
        await _post(session, f"{base}/v1/accounts/{acct['account_id']}/deposits",
                    {"amount": 100_000_00, "reference": f"bench-{i}"}, op)
        return acct["api_key"]

    keys = []
    for start in range(0, investors, 100):
        keys += await asyncio.gather(*[backer(i) for i in range(start,
                                                                min(investors, start + 100))])
    return pid, keys


async def _burst(session, base: str, pid: int, keys: list[str], pledges: int,
                 concurrency: int) -> tuple[list[float], dict[str, int], float]:
    url = f"{base}/v1/projects/{pid}/subscriptions"
    body = json.dumps({"quantity": 1, "tier_id": "flash"}).encode()
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    counter = iter(range(pledges))

    async def worker() -> None:
        for i in counter:
            headers = {"Authorization": f"Bearer {keys[i % len(keys)]}",
                       "Content-Type": "application/json"}
            sent = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
            latencies.append(time.perf_counter() - sent)
            if response.status == 201:
                code = "accepted"
            else:
                code = json.loads(payload).get("error", {}).get("code", str(response.status))
            outcomes[code] = outcomes.get(code, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return latencies, outcomes, time.perf_counter() - started


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(args: argparse.Namespace) -> dict:
    import aiohttp

    with tempfile.TemporaryDirectory(prefix="crowdex-bench-pledges-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        port = _free_port()
        proc = _start_server(data_dir, port, args.server_arg or [])
        base = f"http://127.0.0.1:{port}"
        try:
            connector = aiohttp.TCPConnector(limit=args.concurrency)
            async with aiohttp.ClientSession(connector=connector) as session:
                await _wait_healthy(session, base, proc)
                pid, keys = await _setup(session, base, args.investors, args.quantity)
                latencies, outcomes, seconds = await _burst(session, base, pid, keys,
                                                            args.pledges, args.concurrency)
                async with session.get(f"{base}/v1/projects/{pid}") as response:
                    project = await response.json()
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(10)
    sold = project["tiers"][0]["sold"]
    return {
        "pledges": args.pledges, "seconds": round(seconds, 3),
        "pledges_per_sec": round(args.pledges / seconds, 1),
        "latency_ms_p50": round(_percentile(latencies, 0.50) * 1000, 2),
        "latency_ms_p99": round(_percentile(latencies, 0.99) * 1000, 2),
        "tier_quantity": args.quantity, "accepted": outcomes.get("accepted", 0),
        "sold_out": outcomes.get("sold_out", 0),
        "other": {k: v for k, v in outcomes.items() if k not in ("accepted", "sold_out")},
        "project_sold": sold,
        "exact": outcomes.get("accepted", 0) == args.quantity == sold,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="crowdex bench pledges")
    parser.add_argument("--pledges", type=int, default=50_000, help="pledges in the burst")
    parser.add_argument("--quantity", type=int, default=10_000, help="units on the tier")
    parser.add_argument("--investors", type=int, default=500, help="backers pledging")
    parser.add_argument("--concurrency", type=int, default=256,
                        help="pledges in flight at once")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--server-arg", action="append",
                        help="extra argument for crowdex serve (repeatable)")
    args = parser.parse_args(argv)
    try:
        import uvloop

        result = uvloop.run(run(args))
    except ImportError:
        result = asyncio.run(run(args))
    if not args.json:
        print(f"{result['pledges']} pledges in {result['seconds']} s: "
              f"{result['pledges_per_sec']} pledges/s, ack latency p50 "
              f"{result['latency_ms_p50']} ms, p99 {result['latency_ms_p99']} ms")
        print(f"tier quantity {result['tier_quantity']}: accepted {result['accepted']}, "
              f"sold_out {result['sold_out']}, other {result['other']}, project says "
              f"{result['project_sold']} sold -> {'EXACT' if result['exact'] else 'MISMATCH'}")
    print(json.dumps(result))
    return 0 if result["exact"] else 1
