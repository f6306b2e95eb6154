"""CI guard of the hot path: fail when the engine is not fast enough relative to the reference.

Runs a short generated replay through both the engine and the plain-Python reference in the
same process, checks that both produce the same fills, and exits non-zero when the ratio of
their orders/sec is below ``bench.floor.ENGINE_TO_REFERENCE_RATIO_FLOOR``.
"""

from __future__ import annotations

import argparse
import json
import sys

from bench.floor import CI_ORDERS, CI_SEED, ENGINE_TO_REFERENCE_RATIO_FLOOR
from bench.replay import replay, replay_reference, warm_up
from bench.workload import generate

REPEATS = 3


def main(argv: list[str]) -> int:
    """Exit 0 when the ratio holds and the fills agree, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="python -m bench.ci_check")
    parser.add_argument("--orders", type=int, default=CI_ORDERS,
                        help="orders in the gate's workload (%(default)s)")
    args = parser.parse_args(argv)
    workload = generate(args.orders, CI_SEED)
    warm_up()
    # Best of a few runs each: the minimum is the least disturbed by other processes.
    engine_runs = [replay(workload) for _ in range(REPEATS)]
    reference_runs = [replay_reference(workload) for _ in range(REPEATS)]
    engine_seconds = min(r["seconds"] for r in engine_runs)
    reference_seconds = min(s for s, _ in reference_runs)
    ratio = reference_seconds / engine_seconds
    same = engine_runs[0]["fills_sha256"] == reference_runs[0][1]
    report = {"orders": args.orders, "engine_seconds": engine_seconds,
              "reference_seconds": reference_seconds, "ratio": round(ratio, 1),
              "floor": ENGINE_TO_REFERENCE_RATIO_FLOOR, "fills_agree": same}
    print(json.dumps(report))
    if not same:
        print("engine and reference fills differ", file=sys.stderr)
        return 1
    if ratio < ENGINE_TO_REFERENCE_RATIO_FLOOR:
        print(f"engine/reference ratio {ratio:.1f} is below the floor "
              f"{ENGINE_TO_REFERENCE_RATIO_FLOOR}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
