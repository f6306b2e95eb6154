"""``crowdex bench engine``: orders/sec and per-batch latency of the engine on a generated mix.

Runs a seeded mixed workload (new limits, live cancels, markets; ``bench.workload``) three ways:
1. one batch, replay path (no risk, fills only) - orders/sec;
2. several batch sizes with the risk stage and full event output on (many accounts, STP
   cancel_newest) - commands/sec and batch latency percentiles p50/p99/p99.9/max;
3. the plain-Python reference on the same commands (a prefix, it is slow) - the ratio.

Then three figures of start-up and memory, each measured in a child process of its own:
4. cold start: a fresh ``NUMBA_CACHE_DIR`` (empty), import the engine, run a first batch through
   ``process`` (risk stage, full events) and ``process_fills``, then the exchange's other
   kernels (``engine.markets.warm_up``, the allocation kernels): every kernel compiles;
5. warm start: the same child again on the now filled cache dir, so every kernel loads from it:
   seconds from the child's start until its first batch has run ("process"), and from before
   ``import`` to after that batch ("engine ready"), so the interpreter's own start-up shows;
6. memory: one instrument with 1,000,000 resting (non-crossing GTC limit) orders, placed with
   ``process_fills``: the bytes of the engine's arrays and the child's RSS growth.
``--skip-startup`` and ``--skip-memory`` leave 4-5 and 6 out. ``--json`` prints one JSON object
as the last line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.replay import new_engine, replay, replay_reference, to_commands, warm_up
from bench.workload import generate
from engine.kernels import codes as k
from engine.kernels.layout import C_LIVE_ORDERS, C_NEXT_OID, COMMAND_DTYPE
from engine.matching import MatchingEngine
from engine.state import Balances

BATCH_SIZES = (1, 64, 1024, 16384)
ACCOUNTS = 1000
RICH_FEN = 1 << 50
REFERENCE_ORDERS_MAX = 200_000
RESTING_ORDERS = 1_000_000
RESTING_BATCH = 16384  # the largest batch size of the risk runs
RESTING_MID_FEN = 10_000
RESTING_LEVELS_PER_SIDE = 2000  # buys at mid-2000 .. mid-1, sells at mid .. mid+1999
WARM_RUNS = 3
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def progress(label: str, done: int, total: int) -> None:
    """A one-line progress bar on stderr (stdout stays machine-readable).

    On a terminal the bar redraws in place; into a log or pipe only the final line of each
    phase is written, not every redraw.
    """
    tty = sys.stderr.isatty()
    if done < total and not tty:
        return
    width = 30
    filled = width * done // max(total, 1)
    bar = f"{label:<24} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    print("\r" + bar if tty else bar, end="" if done < total else "\n", file=sys.stderr,
          flush=True)


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


def risk_setup(w: dict[str, np.ndarray], limit: int,
               seed: int) -> tuple[np.ndarray, MatchingEngine, Balances]:
    """Commands of the workload's first ``limit`` rows spread over the funded accounts (STP
    cancel_newest), an engine with a seller fee, and the balances: what a risk run needs."""
    cmds, _ = to_commands({name: a[:limit] for name, a in w.items()})
    rng = np.random.default_rng(seed)
    cmds["account"] = rng.integers(2, ACCOUNTS + 2, len(cmds))
    cmds["stp"] = k.STP_CANCEL_NEWEST
    cmds["oid"] = np.where(cmds["op"] == k.OP_CANCEL, cmds["oid"], 0)
    cmds["account"][cmds["op"] == k.OP_CANCEL] = 0
    engine = new_engine(w)
    engine.instruments[1]["fee_bps"] = 100
    return cmds, engine, funded_balances(1)


def risk_run(w: dict[str, np.ndarray], batch: int, limit: int) -> dict:
    """Commands/sec and batch latency with the risk stage and full events on."""
    cmds, engine, balances = risk_setup(w, limit, batch)
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


# ---- an exchange-core-like mix: orders, cancels, moves and reduces -----------------------

# exchange-core's benchmarks mix new orders with cancels, moves (a new price) and reduces (a
# smaller size) of recent orders; here: shares of commands, the rest new orders (a tenth IOC).
MIX_CANCEL, MIX_MOVE, MIX_REDUCE = 0.20, 0.15, 0.10
MIX_BATCH = 1024
MIX_MID_FEN = 10_000


def exchange_core_mix(n: int, seed: int) -> np.ndarray:
    """``n`` commands for one funded instrument: new GTC limits (a tenth IOC) around a
    drifting mid, cancels, moves (OP_AMEND to a new price) and reduces (OP_AMEND to half the
    quantity at the order's own price) of recent orders, as exchange-core benchmarks them."""
    rng = np.random.default_rng(seed)
    roll = rng.random(n)
    op = np.full(n, k.OP_NEW, dtype=np.int64)
    op[roll < MIX_CANCEL + MIX_MOVE + MIX_REDUCE] = k.OP_AMEND
    op[roll < MIX_CANCEL] = k.OP_CANCEL
    op[0] = k.OP_NEW
    reduce = (roll >= MIX_CANCEL + MIX_MOVE) & (op == k.OP_AMEND)
    side = rng.integers(0, 2, n)
    mid = MIX_MID_FEN + np.cumsum(rng.integers(-1, 2, n)) // 8
    price = np.where(side == 0, mid - rng.integers(0, 40, n), mid + rng.integers(0, 40, n))
    qty = rng.integers(1, 101, n)
    is_new = op == k.OP_NEW
    ids = np.cumsum(is_new)  # the engine id of each new order (none is refused: funded)
    target = np.maximum(ids - rng.geometric(0.02, n) + 1, 1)
    row_of_id = np.flatnonzero(is_new)  # id - 1 -> its row
    cmds = np.zeros(n, dtype=COMMAND_DTYPE)
    cmds["op"] = op
    cmds["instrument"] = 1
    cmds["stp"] = k.STP_CANCEL_NEWEST
    cmds["side"] = np.where(is_new, side, 0)
    cmds["tif"] = np.where(is_new & (rng.random(n) < 0.1), k.TIF_IOC, k.TIF_GTC)
    cmds["account"] = np.where(is_new, rng.integers(2, ACCOUNTS + 2, n), 0)
    cmds["oid"] = np.where(is_new, 0, target)
    origin = row_of_id[np.minimum(target, len(row_of_id)) - 1]
    cmds["price"] = np.where(reduce, price[origin], price)
    cmds["qty"] = np.where(reduce, np.maximum(qty[origin] // 2, 1), qty)
    return cmds


def mix_run(n: int, seed: int) -> dict:
    """Commands/sec of the exchange-core-like mix with the risk stage and full events on."""
    cmds = exchange_core_mix(n, seed)
    engine = MatchingEngine(order_capacity=max(1024, n))
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=2 * MIX_MID_FEN, fee_bps=100)
    balances = funded_balances(1)
    codes = np.zeros(n, dtype=np.int64)
    total = 0.0
    for start in range(0, n, MIX_BATCH):
        chunk = cmds[start: start + MIX_BATCH]
        t0 = time.perf_counter()
        result = engine.process(chunk, balances)
        total += time.perf_counter() - t0
        codes[start: start + len(chunk)] = result.results
    amends = cmds["op"] == k.OP_AMEND
    return {"commands": n, "commands_per_sec": round(n / total), "batch": MIX_BATCH,
            "amends": int(amends.sum()),
            "amends_applied": int((amends & (codes == k.OK)).sum()),
            "cancels_applied": int(((cmds["op"] == k.OP_CANCEL) & (codes == k.OK)).sum())}


# ---- start-up: cold compile and warm start, each in a child process ------------------------

# The child: everything it times starts after the interpreter is up. ``time.monotonic`` is the
# system-wide CLOCK_MONOTONIC on Linux, so the parent can subtract its own Popen time from the
# child's readings: the interpreter's start-up is the difference.
_STARTUP_CHILD = """
import time
t_start = time.monotonic()
import bench.engine as b
t_import = time.monotonic()
b.first_batch()
t_ready = time.monotonic()
b.other_kernels()
t_done = time.monotonic()
import json
print(json.dumps({"start": t_start, "imported": t_import, "ready": t_ready, "done": t_done,
                  "kernels": b.kernel_cache_stats()}))
"""


def first_batch() -> None:
    """The first batch of a starting exchange, both ways the engine runs one: ``process`` with
    balances (risk stage on, full events) and the lean ``process_fills``."""
    w = generate(256, 7)
    cmds, engine, balances = risk_setup(w, len(w["op"]), 7)
    engine.process(cmds, balances)
    warm_up()  # bench.replay's tiny process_fills batch


def other_kernels() -> None:
    """The kernels the exchange calls besides a batch: the markets warm-up (a trade, a cancel,
    an auction uncross and its indicative price) and the three allocation kernels."""
    from engine import matching
    from engine.markets import warm_up as markets_warm_up

    markets_warm_up()
    requested = np.array([5, 3, 2], dtype=np.int64)
    sequence = np.arange(1, 4, dtype=np.int64)
    matching.allocate_pro_rata(requested, sequence, sequence, 7)
    matching.allocate_first_come(requested, 7)
    matching.allocate_rate_auction(np.array([500, 400, 600], dtype=np.int64), sequence,
                                   requested, 7)


def kernel_cache_stats() -> dict:
    """Kernel specializations this process compiled (cache misses) and loaded (hits)."""
    from numba.core.registry import CPUDispatcher

    from engine.kernels import allocation, auction, book, pipeline, risk

    compiled = loaded = 0
    for module in (allocation, auction, book, pipeline, risk):
        for obj in vars(module).values():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == module.__name__:
                stats = obj.stats
                compiled += sum(stats.cache_misses.values())
                loaded += sum(stats.cache_hits.values())
    return {"compiled": compiled, "loaded": loaded}


def startup_run(cache_dir: str) -> dict:
    """One start-up child on ``cache_dir``: its timings, in seconds from the parent's Popen."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env.pop("NUMBA_DISABLE_JIT", None)
    spawned = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _STARTUP_CHILD], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, check=False)
    exited = time.monotonic()
    if proc.returncode != 0:
        raise RuntimeError(f"start-up child failed ({proc.returncode}):\n{proc.stderr}")
    t = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "interpreter_seconds": round(t["start"] - spawned, 4),
        "import_seconds": round(t["imported"] - t["start"], 4),
        "first_batch_seconds": round(t["ready"] - t["imported"], 4),
        "engine_ready_seconds": round(t["ready"] - t["start"], 4),
        "ready_seconds": round(t["ready"] - spawned, 4),  # process start to first batch done
        "done_seconds": round(t["done"] - spawned, 4),  # ... to every kernel ready
        "exit_seconds": round(exited - spawned, 4),
        "kernels_compiled": t["kernels"]["compiled"],
        "kernels_loaded": t["kernels"]["loaded"],
    }


def startup(warm_runs: int = WARM_RUNS, cache_dir: str | None = None) -> dict:
    """Cold compile (an empty cache dir), then ``warm_runs`` warm starts on the filled one."""
    with tempfile.TemporaryDirectory(prefix="crowdex-numba-") as tmp:
        cache = cache_dir or tmp
        progress("cold start", 0, 1)
        cold = startup_run(cache)
        progress("cold start", 1, 1)
        warm = []
        for i in range(warm_runs):
            warm.append(startup_run(cache))
            progress("warm start", i + 1, warm_runs)
    ready = statistics.median(r["ready_seconds"] for r in warm)
    engine_ready = statistics.median(r["engine_ready_seconds"] for r in warm)
    return {
        "cold_compile_seconds": cold["done_seconds"],
        "cold_import_seconds": cold["import_seconds"],
        "cold_first_batch_seconds": cold["ready_seconds"],
        "warm_start_seconds": round(ready, 4),
        "warm_engine_ready_seconds": round(engine_ready, 4),
        "startup_cold": cold,
        "startup_warm": warm,
    }


# ---- memory of resting orders ------------------------------------------------------------


def resting_commands(n: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``n`` non-crossing GTC limit orders on instrument 1: buys on the
    levels below the mid, sells on the mid and above, random sides, levels and quantities (the
    same rows whatever the chunking)."""
    rng = np.random.default_rng([n, start])
    m = stop - start
    cmds = np.zeros(m, dtype=COMMAND_DTYPE)
    side = rng.integers(0, 2, m)
    offset = rng.integers(0, RESTING_LEVELS_PER_SIDE, m)
    cmds["op"] = k.OP_NEW
    cmds["type"] = k.TYPE_LIMIT
    cmds["tif"] = k.TIF_GTC
    cmds["side"] = side
    cmds["price"] = np.where(side == k.SIDE_BUY, RESTING_MID_FEN - 1 - offset,
                             RESTING_MID_FEN + offset)
    cmds["qty"] = rng.integers(1, 101, m)
    cmds["instrument"] = 1
    cmds["stp"] = k.STP_NONE
    return cmds


def engine_array_bytes(engine: MatchingEngine) -> dict[str, int]:
    """Bytes of every array the engine holds, at its full capacity (scratch buffers too)."""
    sizes = {name: int(a.nbytes) for name, a in vars(engine).items()
             if isinstance(a, np.ndarray)}
    sizes["book_live"] = sum(int(a.nbytes) for a in engine.arrays().values())
    return sizes


def rss_bytes() -> int:
    """Resident set size of this process now (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's RSS high-water mark (VmHWM of /proc/self/status). Not ``ru_maxrss``: a
    child's starts at its forking parent's RSS, which execve keeps."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Lower the high-water mark to the RSS of now (``/proc/self/clear_refs``, Linux 4.0+)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def resting_orders(n: int, batch: int = RESTING_BATCH) -> dict:
    """Place ``n`` resting orders with ``process_fills`` in batches of ``batch``; the engine's
    array bytes and this process's RSS growth (run it in a fresh process for an honest RSS)."""
    warm_up()  # kernels loaded before the baseline
    gc.collect()
    peak_reset = reset_peak_rss()
    rss0 = rss_bytes()
    engine = MatchingEngine()
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=2 * RESTING_MID_FEN)
    rejected = 0
    for start in range(0, n, batch):
        result = engine.process_fills(resting_commands(n, start, min(start + batch, n)))
        rejected += int((result.results != k.OK).sum()) + len(result.fills)
    gc.collect()
    rss1 = rss_bytes()
    peak1 = peak_rss_bytes()
    arrays = engine_array_bytes(engine)
    figures = {
        "resting_orders": n,
        "live_orders": int(engine.counters[C_LIVE_ORDERS]),
        "rejected_or_filled": rejected,
        "array_bytes": sum(v for name, v in arrays.items() if name != "book_live"),
        "arrays": arrays,
        "rss_bytes": rss1 - rss0,
        # The high-water mark while building (the doubling copies), if it could be reset.
        "peak_rss_bytes": peak1 - rss0 if peak_reset else None,
    }
    # The exchange's path (``process``, full events) reserves event room for the worst case
    # of the instrument's every resting order touched twice: one order placed and cancelled
    # shows that buffer at this book size.
    extra = resting_commands(n, n, n + 2)
    extra[1]["op"] = k.OP_CANCEL
    extra[1]["oid"] = int(engine.counters[C_NEXT_OID])  # the id the first row gets
    engine.process(extra)
    figures["process_events_bytes"] = int(engine._events.nbytes)
    figures["process_rss_bytes"] = rss_bytes() - rss0
    figures["live_orders_after_process"] = int(engine.counters[C_LIVE_ORDERS])
    return figures


_MEMORY_CHILD = """
import json, sys
import bench.engine as b
print(json.dumps(b.resting_orders(int(sys.argv[1]), int(sys.argv[2]))))
"""


def resting_orders_child(n: int, batch: int = RESTING_BATCH) -> dict:
    """``resting_orders`` in a fresh child process, so its RSS is the engine's alone."""
    proc = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(n), str(batch)],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({proc.returncode}):\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_startup(f: dict) -> None:
    cold, warm = f["startup_cold"], f["startup_warm"]
    print(f"cold start (empty NUMBA_CACHE_DIR): {f['cold_compile_seconds']:.2f} s to every "
          f"kernel compiled ({cold['kernels_compiled']} specializations; interpreter "
          f"{cold['interpreter_seconds']:.2f} s, import {cold['import_seconds']:.2f} s, first "
          f"batch done at {cold['ready_seconds']:.2f} s)")
    print(f"warm start (filled cache, median of {len(warm)}): first batch done "
          f"{f['warm_start_seconds']:.3f} s after process start, engine ready "
          f"{f['warm_engine_ready_seconds']:.3f} s after import began (runs: "
          + ", ".join(f"{r['ready_seconds']:.3f}/{r['engine_ready_seconds']:.3f}" for r in warm)
          + f"; {warm[0]['kernels_loaded']} specializations loaded, "
          f"{warm[0]['kernels_compiled']} compiled)")


def print_memory(f: dict) -> None:
    mb = 1 << 20
    arrays = f["resting_orders_arrays"]
    parts = ", ".join(f"{name.lstrip('_')} {v / mb:.1f}" for name, v in arrays.items()
                      if name != "book_live" and v >= mb // 10)
    print(f"{f['resting_orders']:,} resting orders ({f['resting_orders_live']:,} live): "
          f"engine arrays {f['resting_orders_array_bytes'] / mb:.1f} MiB ({parts}; live book "
          f"{arrays['book_live'] / mb:.1f}), RSS growth {f['resting_orders_rss_bytes'] / mb:.1f}"
          " MiB" + (f", peak {f['resting_orders_peak_rss_bytes'] / mb:.1f} MiB"
                    if f["resting_orders_peak_rss_bytes"] is not None else ""))
    print(f"  then one batch through process (full events): its event buffer is allocated at "
          f"{f['resting_orders_process_events_bytes'] / mb:.1f} MiB (room for every resting "
          f"order touched twice; untouched pages are not resident), RSS growth now "
          f"{f['resting_orders_process_rss_bytes'] / mb:.1f} MiB")


def main(argv: list[str]) -> int:
    """Entry point of ``crowdex bench engine``."""
    parser = argparse.ArgumentParser(prog="crowdex bench engine")
    parser.add_argument("--orders", type=int, default=1_000_000,
                        help="orders in the generated workload (%(default)s)")
    parser.add_argument("--seed", type=int, default=1, help="the workload's random seed")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--skip-startup", action="store_true",
                        help="leave out the cold compile and warm start children")
    parser.add_argument("--skip-memory", action="store_true",
                        help="leave out the resting-orders memory child")
    parser.add_argument("--resting-orders", type=int, default=RESTING_ORDERS,
                        help="book size for the memory figure (%(default)s)")
    parser.add_argument("--warm-runs", type=int, default=WARM_RUNS,
                        help="timed runs after the warm-up; the best is reported")
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
    mix = mix_run(args.orders, args.seed)
    progress("exchange-core mix", args.orders, args.orders)
    figures = {
        "orders": args.orders,
        "orders_per_sec": engine_best["orders_per_sec"],
        "reference_orders": ref_n,
        "reference_orders_per_sec": round(ref_n / ref_seconds),
        "engine_orders_per_sec_same_orders": engine_prefix["orders_per_sec"],
        "ratio": round(ref_seconds / engine_prefix["seconds"], 1),
        "fills_agree": ref_hash == engine_prefix["fills_sha256"],
        "risk_batches": batches,
        "exchange_core_mix": mix,
    }
    if not args.skip_startup:
        figures.update(startup(args.warm_runs))
    if not args.skip_memory:
        progress("resting orders", 0, 1)
        memory = resting_orders_child(args.resting_orders)
        progress("resting orders", 1, 1)
        figures.update({
            "resting_orders": memory["resting_orders"],
            "resting_orders_live": memory["live_orders"],
            "resting_orders_array_bytes": memory["array_bytes"],
            "resting_orders_rss_bytes": memory["rss_bytes"],
            "resting_orders_peak_rss_bytes": memory["peak_rss_bytes"],
            "resting_orders_arrays": memory["arrays"],
            "resting_orders_process_events_bytes": memory["process_events_bytes"],
            "resting_orders_process_rss_bytes": memory["process_rss_bytes"],
        })
    if not args.json:
        print(f"engine: {figures['orders_per_sec']:,} orders/s on {args.orders:,} orders")
        print(f"reference: {figures['reference_orders_per_sec']:,} orders/s "
              f"(ratio {figures['ratio']}x on {ref_n:,} orders)")
        print(f"exchange-core-like mix (new, cancel, move, reduce; risk on, batch "
              f"{mix['batch']}): {mix['commands_per_sec']:,} cmds/s; {mix['amends_applied']:,} of "
              f"{mix['amends']:,} amends applied")
        for b in batches:
            print(f"risk+events batch {b['batch']:>6}: {b['commands_per_sec']:,} cmds/s, "
                  f"p50 {b['latency_us_p50']} us, p99 {b['latency_us_p99']} us, "
                  f"p99.9 {b['latency_us_p99_9']} us, max {b['latency_us_max']} us")
        if not args.skip_startup:
            print_startup(figures)
        if not args.skip_memory:
            print_memory(figures)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
