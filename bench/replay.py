"""``crowdex bench replay FILE.npz [--json]``: replay a recorded workload through the engine.

The file holds equal-length int64 arrays ``op`` (0 new limit, 1 cancel, 2 market), ``side``,
``price``, ``qty`` and ``oid`` for one instrument with unlimited balances (API.md, "Engine
replay format"). Only the engine's processing is timed (``MatchingEngine.process_fills``, the
lean fills-only path), after a JIT warm-up and after the engine reserved and pre-faulted its
memory for the batch: not loading the file, not building commands, not allocating, not
hashing. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np

from engine.kernels import codes as k
from engine.kernels.layout import COMMAND_DTYPE
from engine.matching import MatchingEngine

REPLAY_INSTRUMENT = 1
REPLAY_OP_LIMIT = 0
REPLAY_OP_CANCEL = 1
REPLAY_OP_MARKET = 2


def load_workload(path: str) -> dict[str, np.ndarray]:
    """The five arrays of a replay file, checked for equal length."""
    with np.load(path) as data:
        arrays = {name: np.asarray(data[name], dtype=np.int64)
                  for name in ("op", "side", "price", "qty", "oid")}
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
        raise ValueError(f"{path}: arrays differ in length: {sorted(lengths)}")
    return arrays


def to_commands(w: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Engine commands for a workload, and the file oid of each engine order id.

    The engine numbers orders itself (1, 2, ... in arrival order); a file may number them
    differently, so cancels are mapped to engine ids and fills back to file ids.
    """
    n = len(w["op"])
    is_new = w["op"] != REPLAY_OP_CANCEL
    file_oids = w["oid"][is_new]
    engine_of_file = np.zeros(max(int(w["oid"].max(initial=0)), 0) + 2, dtype=np.int64)
    engine_of_file[file_oids] = np.arange(1, len(file_oids) + 1)
    file_of_engine = np.concatenate([[0], file_oids])
    cmds = np.zeros(n, dtype=COMMAND_DTYPE)
    cmds["op"] = np.where(is_new, k.OP_NEW, k.OP_CANCEL)
    cmds["type"] = np.where(w["op"] == REPLAY_OP_MARKET, k.TYPE_MARKET, k.TYPE_LIMIT)
    cmds["side"] = w["side"]
    cmds["price"] = w["price"]
    cmds["qty"] = w["qty"]
    cmds["instrument"] = REPLAY_INSTRUMENT
    cancel_target = np.clip(w["oid"], 0, len(engine_of_file) - 1)
    cmds["oid"] = np.where(is_new, 0, engine_of_file[cancel_target])
    cmds["stp"] = k.STP_NONE
    return cmds, file_of_engine


def new_engine(w: dict[str, np.ndarray]) -> MatchingEngine:
    """An engine with the replay's one instrument, its band covering every limit price."""
    engine = MatchingEngine(order_capacity=max(1024, len(w["op"])))
    limits = w["price"][w["op"] == REPLAY_OP_LIMIT]
    hi = int(limits.max()) if len(limits) else 1
    engine.add_instrument(REPLAY_INSTRUMENT, band_lo_fen=1, band_hi_fen=max(hi, 1))
    return engine


def fills_digest(fills: np.ndarray, file_of_engine: np.ndarray) -> str:
    """SHA-256 over ``maker_oid,taker_oid,price,qty\\n`` for every fill, in order."""
    digest = hashlib.sha256()
    makers = file_of_engine[fills["maker_oid"]].tolist()
    takers = file_of_engine[fills["oid"]].tolist()
    prices = fills["price"].tolist()
    qtys = fills["qty"].tolist()
    chunk = 65536
    for start in range(0, len(makers), chunk):
        stop = start + chunk
        digest.update("".join(
            f"{m},{t},{p},{q}\n" for m, t, p, q in zip(
                makers[start:stop], takers[start:stop], prices[start:stop], qtys[start:stop],
                strict=True)).encode("ascii"))
    return digest.hexdigest()


def warm_up() -> None:
    """Compile (or load from the cache) the kernels on a tiny workload, outside the timing."""
    w = {"op": np.array([0, 0, 2, 1]), "side": np.array([0, 1, 0, 1]),
         "price": np.array([5, 6, 0, 0]), "qty": np.array([1, 2, 1, 0]),
         "oid": np.array([1, 2, 3, 2])}
    cmds, _ = to_commands(w)
    new_engine(w).process_fills(cmds)


def replay(w: dict[str, np.ndarray]) -> dict:
    """Run a workload once; the figures API.md asks for."""
    cmds, file_of_engine = to_commands(w)
    engine = new_engine(w)
    engine.reserve(len(cmds))  # the books are allocated before the clock starts
    start = time.perf_counter()
    fills = engine.process_fills(cmds).fills
    seconds = time.perf_counter() - start
    n = len(cmds)
    return {
        "orders": n,
        "seconds": round(seconds, 6),
        "orders_per_sec": round(n / seconds) if seconds > 0 else 0,
        "trades": len(fills),
        "traded_quantity": int(fills["qty"].sum()),
        "fills_sha256": fills_digest(fills, file_of_engine),
    }


def main(argv: list[str]) -> int:
    """Entry point of ``crowdex bench replay``."""
    parser = argparse.ArgumentParser(prog="crowdex bench replay")
    parser.add_argument("file", help="a .npz replay file (API.md's engine replay format)")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args(argv)
    workload = load_workload(args.file)
    warm_up()
    figures = replay(workload)
    if not args.json:
        print(f"{figures['orders']} orders in {figures['seconds']:.4f} s: "
              f"{figures['orders_per_sec']:,} orders/s, {figures['trades']} trades")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))


def replay_reference(w: dict[str, np.ndarray]) -> tuple[float, str]:
    """Run a workload through the plain-Python reference: ``(seconds, fills_sha256)``."""
    from engine.reference.exchange import ReferenceExchange

    cmds, file_of_engine = to_commands(w)
    ref = ReferenceExchange(risk=False)
    limits = w["price"][w["op"] == REPLAY_OP_LIMIT]
    ref.add_instrument(REPLAY_INSTRUMENT, 1, max(int(limits.max(initial=1)), 1))
    rows = cmds[["op", "side", "type", "price", "qty", "oid"]].tolist()
    start = time.perf_counter()
    for op, side, order_type, price, qty, oid in rows:
        if op == k.OP_NEW:
            ref.new_order(REPLAY_INSTRUMENT, 0, side, qty, price, order_type, stp=k.STP_NONE)
        else:
            ref.cancel(oid, 0)
    seconds = time.perf_counter() - start
    fills = np.array([(e[5], e[3], e[7], e[8]) for e in ref.events if e[0] == k.EV_FILL],
                     dtype=[("maker_oid", np.int64), ("oid", np.int64), ("price", np.int64),
                            ("qty", np.int64)]).reshape(-1)
    return seconds, fills_digest(fills, file_of_engine)
