"""crowdex bench reads: an account's reads of a busy venue against the walks they replaced.

On the state of ``bench recovery``'s mixed journal (``bench.recovery.mixed_journal``).

The gateway's reads run on the event loop that applies every command: a read whose cost grows
with the venue, not with its answer, stalls matching for every client. Each read below is
timed for a sample of the venue's accounts, and so is the plain walk that gives the same answer
(the answers are checked equal: the benchmark checks itself), in the same run; the figure is
their ratio. Then what a recovery spends making the reads' indexes (``warm_reads``), and the
operator's state hash (``GET /v1/admin/state``): its time in place against the event loop's
longest stall while a forked child computes it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench import venue
from bench.recovery import mixed_journal
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.replay import apply_blocks
from engine.sequencer import state_hash_off_loop
from settlement.history import pending

SAMPLE_ACCOUNTS = 200  # accounts each read is timed for (spread over the ids)
PAGE = 100  # GET /v1/me/movements' default page


def _walk_holdings(machine: StateMachine, account: int) -> list[tuple[int, int, int]]:
    rows = machine.balances.positions.rows
    return sorted((instrument, int(rows[slot]["units_available"]),
                   int(rows[slot]["units_reserved"]))
                  for (owner, instrument), slot in machine.balances.position_slots.items()
                  if owner == account and (rows[slot]["units_available"]
                                           or rows[slot]["units_reserved"]))


def _walk_orders(machine: StateMachine, account: int) -> list[int]:
    lifecycle = machine.component("markets").lifecycle
    live = lifecycle.records[: lifecycle.next_oid]
    return np.flatnonzero((live["kept"] == 1) & (live["account"] == account)).tolist()


def _walk_subscriptions(machine: StateMachine, account: int) -> list[Any]:
    return [s for s in machine.component("offerings").subscriptions.values()
            if s.account_id == account]


def _walk_movements(machine: StateMachine, account: int) -> list[int]:
    log = machine.movements.upto(machine.last_sequence)
    mine = log[(log["credit_account"] == account) | (log["debit_account"] == account)]
    return mine["movement_id"][::-1][:PAGE].tolist()


def _reads(machine: StateMachine) -> dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]]:
    """Each read: (what the venue does now, the walk it replaced), answers comparable."""
    lifecycle = machine.component("markets").lifecycle
    offerings = machine.component("offerings")
    return {
        "holdings": (machine.balances.holdings, lambda a: _walk_holdings(machine, a)),
        "orders": (lambda a: lifecycle.account_orders(a, False),
                   lambda a: _walk_orders(machine, a)),
        "subscriptions": (offerings.account_subscriptions,
                          lambda a: _walk_subscriptions(machine, a)),
        "pending_movements": (
            lambda a: [row["movement_id"] for row in pending(
                machine.movements.upto(machine.last_sequence), a, PAGE)],
            lambda a: _walk_movements(machine, a)),
    }


def _timed(read: Callable[[int], Any], accounts: list[int]) -> tuple[list[float], list[Any]]:
    times, answers = [], []
    for account in accounts:
        began = time.perf_counter()
        answers.append(read(account))
        times.append(time.perf_counter() - began)
    return times, answers


def _us(seconds: float) -> float:
    return round(seconds * 1e6, 1)


def measure_reads(machine: StateMachine) -> dict:
    """Each read against its walk, for a sample of accounts; raises if an answer differs."""
    ids = sorted(machine.accounts)
    accounts = ids[:: max(1, len(ids) // SAMPLE_ACCOUNTS)][:SAMPLE_ACCOUNTS]
    figures: dict[str, Any] = {"accounts_sampled": len(accounts)}
    for name, (read, walk) in _reads(machine).items():
        read(accounts[0])  # loads what a first read loads (a compiled kernel)
        read_times, answers = _timed(read, accounts)
        walk_times, expected = _timed(walk, accounts)
        if answers != expected:
            wrong = next(a for a, x, y in zip(accounts, answers, expected, strict=True)
                         if x != y)
            raise AssertionError(f"{name}: account {wrong}'s answer is not the walk's")
        median_read, median_walk = statistics.median(read_times), statistics.median(walk_times)
        figures[name] = {"us_median": _us(median_read), "us_max": _us(max(read_times)),
                         "walk_us_median": _us(median_walk),
                         "walk_ratio": round(median_walk / median_read, 1)}
    return figures


async def _stall_while_hashing(machine: StateMachine) -> tuple[str, float, float]:
    """The state hash computed off the loop: (the hash, seconds, the loop's longest stall)."""
    stalls: list[float] = []

    async def ticker() -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            stalls.append(time.perf_counter() - began - 0.001)

    ticking = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.02)
    stalls.clear()
    began = time.perf_counter()
    digest = await state_hash_off_loop(machine)
    seconds = time.perf_counter() - began
    ticking.cancel()
    return digest, seconds, max(stalls, default=0.0)


def measure(data_dir: Path, args: argparse.Namespace) -> dict:
    _, total, written_hash, _ = mixed_journal(data_dir, args)
    machine = StateMachine()
    journal = FileJournal(data_dir / "journal", sync=False, read_only=True)
    try:
        apply_blocks(machine, journal.read_blocks(0), {})
    finally:
        journal.close()
    began = time.perf_counter()
    machine.warm_reads()
    warm_s = time.perf_counter() - began
    figures = {"commands": total, "venue": {
        "accounts": len(machine.accounts), "positions": machine.balances.positions.count,
        "orders": machine.component("markets").lifecycle.next_oid - 1,
        "subscriptions": len(machine.component("offerings").subscriptions),
        "unsettled_movements": machine.movements.table.count},
        "warm_reads_ms": round(warm_s * 1e3, 1)}
    figures.update(measure_reads(machine))
    began = time.perf_counter()
    in_place = machine.state_hash()
    figures["state_hash_in_place_s"] = round(time.perf_counter() - began, 3)
    digest, seconds, stall = asyncio.run(_stall_while_hashing(machine))
    if digest != in_place or in_place != written_hash:
        raise AssertionError("the state hash off the loop is not the machine's")
    figures["state_hash_off_loop_s"] = round(seconds, 3)
    figures["state_hash_loop_stall_ms"] = round(stall * 1e3, 1)
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crowdex bench reads", description=__doc__.split("\n")[0])
    venue.add_arguments(p)
    p.add_argument("--seed", type=int, default=7, help="the workload's random seed")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    from engine.markets import warm_up

    warm_up()
    with tempfile.TemporaryDirectory(prefix="crowdex-bench-reads-") as tmp:
        figures = measure(Path(tmp), args)
    if not args.json:
        for name, value in figures.items():
            print(f"{name}: {value}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
