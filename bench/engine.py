"""``crowdex bench engine``: orders/sec and per-batch latency of the engine on a generated mix.

Runs a seeded mixed workload (new limits, live cancels, markets; ``bench.workload``) three ways:
1. one batch, replay path (no risk, fills only) - orders/sec;
2. several batch sizes with the risk stage and full event output on (many accounts, STP
   cancel_newest) - commands/sec and batch latency percentiles p50/p99/p99.9/max;
3. the plain-Python reference on the same commands (a prefix, it is slow) - the ratio.
``--json`` prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from bench.replay import new_engine, replay, replay_reference, to_commands, warm_up
from bench.workload import generate
from engine.kernels import codes as k
from engine.state import Balances

BATCH_SIZES = (1, 64, 1024, 16384)
ACCOUNTS = 1000
RICH_FEN = 1 << 50
REFERENCE_ORDERS_MAX = 200_000


def progress(label: str, done: int, total: int) -> None:
    """A one-line progress bar on stderr (stdout stays machine-readable)."""
    width = 30
    filled = width * done // max(total, 1)
    print(f"\r{label:<24} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}",
          end="" if done < total else "\n", file=sys.stderr, flush=True)


def funded_balances(instrument: int) -> Balances:
    """Accounts with cash and units enough for any order of the workload."""
    balances = Balances()
    balances.add_account(4, 3)  # the fee account, id 1
    for _ in range(ACCOUNTS):
        account = balances.add_account(1, 1)
        balances.accounts.rows[account]["cash_available"] = RICH_FEN
        slot = balances.position_slot(account, instrument)
        balances.positions.rows[slot]["units_available"] = RICH_FEN
    return balances


def risk_run(w: dict[str, np.ndarray], batch: int, limit: int) -> dict:
    """Commands/sec and batch latency with the risk stage and full events on."""
    cmds, _ = to_commands({name: a[:limit] for name, a in w.items()})
    rng = np.random.default_rng(batch)
    cmds["account"] = rng.integers(2, ACCOUNTS + 2, len(cmds))
    cmds["stp"] = k.STP_CANCEL_NEWEST
    cmds["oid"] = np.where(cmds["op"] == k.OP_CANCEL, cmds["oid"], 0)
    cmds["account"][cmds["op"] == k.OP_CANCEL] = 0
    engine = new_engine(w)
    engine.instruments[1]["fee_bps"] = 100
    balances = funded_balances(1)
    latencies = []
    total = 0.0
    for start in range(0, len(cmds), batch):
        chunk = cmds[start: start + batch]
        t0 = time.perf_counter()
        engine.process(chunk, balances)
        dt = time.perf_counter() - t0
        latencies.append(dt)
        total += dt
        if len(latencies) % 256 == 0:
            progress(f"risk, batch {batch}", start + len(chunk), len(cmds))
    progress(f"risk, batch {batch}", len(cmds), len(cmds))
    us = np.array(latencies) * 1e6
    return {"batch": batch, "commands": len(cmds), "commands_per_sec": round(len(cmds) / total),
            "latency_us_p50": round(float(np.percentile(us, 50)), 1),
            "latency_us_p99": round(float(np.percentile(us, 99)), 1),
            "latency_us_p99_9": round(float(np.percentile(us, 99.9)), 1),
            "latency_us_max": round(float(us.max()), 1)}


def main(argv: list[str]) -> int:
    """Entry point of ``crowdex bench engine``."""
    parser = argparse.ArgumentParser(prog="crowdex bench engine")
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    w = generate(args.orders, args.seed)
    warm_up()
    engine_best = min((replay(w) for _ in range(3)), key=lambda r: r["seconds"])
    progress("engine replay", args.orders, args.orders)
    ref_n = min(args.orders, REFERENCE_ORDERS_MAX)
    prefix = {name: a[:ref_n] for name, a in w.items()}
    ref_seconds, ref_hash = replay_reference(prefix)
    progress("reference replay", ref_n, ref_n)
    engine_prefix = min((replay(prefix) for _ in range(3)), key=lambda r: r["seconds"])
    batches = []
    for batch in BATCH_SIZES:
        # Batch size 1 pays a Python call per command: measure it on a prefix only.
        limit = min(args.orders, 50_000 if batch == 1 else args.orders)
        batches.append(risk_run(w, batch, limit))
    figures = {
        "orders": args.orders,
        "orders_per_sec": engine_best["orders_per_sec"],
        "reference_orders": ref_n,
        "reference_orders_per_sec": round(ref_n / ref_seconds),
        "engine_orders_per_sec_same_orders": engine_prefix["orders_per_sec"],
        "ratio": round(ref_seconds / engine_prefix["seconds"], 1),
        "fills_agree": ref_hash == engine_prefix["fills_sha256"],
        "risk_batches": batches,
    }
    if not args.json:
        print(f"engine: {figures['orders_per_sec']:,} orders/s on {args.orders:,} orders")
        print(f"reference: {figures['reference_orders_per_sec']:,} orders/s "
              f"(ratio {figures['ratio']}x on {ref_n:,} orders)")
        for b in batches:
            print(f"risk+events batch {b['batch']:>6}: {b['commands_per_sec']:,} cmds/s, "
                  f"p50 {b['latency_us_p50']} us, p99 {b['latency_us_p99']} us, "
                  f"p99.9 {b['latency_us_p99_9']} us, max {b['latency_us_max']} us")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
