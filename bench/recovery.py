"""``crowdex bench recovery``: how fast a venue's state is rebuilt from its journal.

Builds a real venue's journal: a prefix applied through the engine (genesis, an issuer, traders
with cash, an equity offering they subscribe to and that closes, so each holds units), then
``--orders`` order commands of the replay workload's mix (``bench.workload``: limits, cancels of
the trader's own recent orders, markets), spread over several traders with the risk stage on,
appended to the journal with the exchange times a busy server stamps (one per group of
``GROUP``, as a group commit does). Then it measures:

1. replay: ``engine.replay.replay`` from empty, as ``crowdex replay`` and a recovery run it
   (entries read, decoded and applied in runs) - commands/s, against replaying the same journal
   one entry at a time through ``StateMachine.apply`` (the way recovery worked before) on a
   prefix of ``--reference`` entries, in the same run (the ratio compares both on that prefix);
2. live apply: the same order entries applied with ``StateMachine.apply_batch`` in batches of
   ``--live-batch`` (the sequencer's group commits at a busy moment), replies built and the
   instrument's book and trades published (one subscriber) - microseconds per order. The
   garbage collector is set as ``crowdex serve`` sets it (the state loaded before is frozen,
   young collections every ``GC_YOUNG_THRESHOLD`` allocations): that is the apply inside the
   server; with the interpreter's defaults each batch's replies also pay for collections
   that rescan the whole venue.

3. with ``--counts``, what the replay did, counted (``bench.replay_counts``: entries by
   command and by path, kernel calls, Python calls per entry), which unlike its time does not
   move with the machine's load.

Both replays end at the same state hash (checked), and so does the live apply. ``--json``
prints one JSON object as the last line. Beside the replay's wall-clock rate (API.md's
``commands_per_sec``) stands its rate per second of this process's CPU (the final state hash
included), the figure to compare between runs on a machine shared with other work.

``--mix mixed`` replays a busy venue's journal instead (``bench.venue``: ``--commands`` commands
of accounts, deposits and withdrawals, offerings on all five boards with their subscriptions,
closes and allocations, orders, cancels and amends, IP call auctions, distributions, ticks and
settlement batches); the mix as written, and what of it was refused, is printed first. The
replay must reach the state hash of the machine that wrote the journal; the reference and the
live apply (microseconds per command) are measured the same way.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import venue
from bench.replay_counts import replay_counts
from bench.workload import MID_START_FEN, generate
from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.journal import FileJournal
from engine.machine import StateMachine
from engine.replay import freeze_state, replay, thaw_state
from gateway.cli import GC_THRESHOLDS

TRADERS = 1000  # enough that no one reaches OPEN_ORDERS_MAX with the workload's resting orders
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
CASH_FEN = 1 << 42  # each trader's deposit: never the limit here (all: under 2^53)
UNITS_EACH = 50_000_000  # units each trader gets from the offering
STEP_US = 50  # exchange time between consecutive orders: 20k orders/s
GROUP = 256  # orders stamped with one time, as one group commit of a busy server stamps them
JOURNAL_BATCH = 4096  # entries per journal append (the sequencer's batch at most)
LIVE_SUBSCRIPTIONS = frozenset({"book:1", "trades:1"})  # what the live apply publishes
LIVE_KINDS = frozenset({"book:", "trades:"})  # their kinds (``StateMachine.wants_any``)


def _prefix() -> list[tuple[int, object]]:
    """(actor, command) that make a venue whose traders hold cash and units of instrument 1."""
    issuer, first_trader = 3, 4
    deadline = START_US + 30 * 86_400_000_000
    steps: list[tuple[int, object]] = [
        (0, c.Genesis("bench-operator", True, START_US, "intl", c.RULES_VERSION)),
        (2, c.CreateAccount("issuer", "bench issuer", "bench-issuer")),
    ]
    traders = range(first_trader, first_trader + TRADERS)
    for n, account in enumerate(traders):
        steps.append((2, c.CreateAccount("investor", f"trader {n}", f"bench-trader-{n}",
                                         investor_class="institutional")))
        steps.append((2, c.Deposit(account, CASH_FEN, "bench")))
    steps.append((issuer, oc.CreateProject("equity", "bench", "a traded company", deadline, {
        "price": MID_START_FEN, "min_quantity": 1, "max_quantity": TRADERS * UNITS_EACH,
        "lockup_days": 0})))
    steps.append((2, oc.ReviewProject(1, True)))
    steps.extend((account, oc.Subscribe(1, UNITS_EACH)) for account in traders)
    steps.append((2, oc.CloseProject(1)))
    return steps


def order_entries(orders: int, seed: int, first_us: int) -> list[c.Entry]:
    """The workload as journal entries: each row's trader is random; a cancel is sent by the
    owner of the order it names (the workload's k-th new order is the venue's order k + the
    orders placed before it; unknown ones stay unknown)."""
    rows = generate(orders, seed)
    rng = np.random.default_rng(seed + 1)
    owners = rng.integers(4, 4 + TRADERS, orders).tolist()
    op, side, price, qty, oid = (rows[name].tolist() for name in
                                 ("op", "side", "price", "qty", "oid"))
    owner_of: dict[int, int] = {}
    entries = []
    for i in range(orders):
        time_us = first_us + (i - i % GROUP) * STEP_US
        if op[i] == 1:
            target = oid[i]
            entries.append(c.Entry(time_us, owner_of.get(target, owners[i]),
                                   mc.CancelOrder(target)))
            continue
        owner_of[oid[i]] = owners[i]
        kind = "limit" if op[i] == 0 else "market"
        entries.append(c.Entry(time_us, owners[i], mc.PlaceOrder(
            1, "buy" if side[i] == 0 else "sell", kind, price[i] if kind == "limit" else 0,
            qty[i])))
    return entries


def build_journal(data_dir: Path, orders: int, seed: int) -> tuple[int, list[c.Entry]]:
    """Write the venue's journal; returns (entries before the orders, the order entries)."""
    machine = StateMachine()
    journal = FileJournal(data_dir / "journal", sync=False)
    records = []
    for n, (actor, command) in enumerate(_prefix(), start=1):
        entry = c.Entry(START_US, actor, command)
        reply = machine.apply(n, entry)
        if reply.status >= 300:
            raise RuntimeError(f"bench venue step {n} refused: {reply.body}")
        records.append((n, c.encode_entry(entry)))
    journal.append(records)
    prefix = len(records)
    entries = order_entries(orders, seed, START_US + 1_000_000)
    for start in range(0, len(entries), JOURNAL_BATCH):
        chunk = entries[start:start + JOURNAL_BATCH]
        journal.append([(prefix + start + i + 1, c.encode_entry(e))
                        for i, e in enumerate(chunk)])
    journal.close()
    return prefix, entries


def replay_one_by_one(data_dir: Path, upto: int) -> tuple[StateMachine, float]:
    """The old recovery: decode and ``apply`` each entry alone."""
    machine = StateMachine()
    journal = FileJournal(data_dir / "journal", sync=False, read_only=True)
    started = time.perf_counter()
    for sequence, payload in journal.read(0):
        if sequence > upto:
            break
        machine.apply(sequence, c.decode_entry(payload))
    seconds = time.perf_counter() - started
    journal.close()
    return machine, seconds


def live_apply(data_dir: Path, prefix: int,
               batch: int) -> tuple[StateMachine, float, float, int]:
    """The journal's entries after ``prefix`` through ``apply_batch`` in the sequencer's
    batches of ``batch``, replies built; returns the machine, the seconds spent applying (not
    reading nor decoding), of wall clock and of this process's CPU, and how many entries were
    timed."""
    machine = StateMachine()
    # As in a server where one client watches the instrument's book and trades.
    machine.wants = LIVE_SUBSCRIPTIONS.__contains__
    machine.wants_any = LIVE_KINDS.__contains__  # as the hub answers: no orders@ listener
    journal = FileJournal(data_dir / "journal", sync=False, read_only=True)
    spent, cpu, timed, pending, first = 0.0, 0.0, 0, [], prefix + 1
    payloads: list[bytes] = []  # pending's journal bytes, as the sequencer hands them on
    thresholds = gc.get_threshold()

    def flush() -> tuple[float, float]:
        began, began_cpu = time.perf_counter(), time.process_time()
        machine.apply_batch(first, pending, payloads=payloads)
        machine.outbox.clear()
        return time.perf_counter() - began, time.process_time() - began_cpu

    try:
        for sequence, payload in journal.read(0):
            entry = c.decode_entry(payload)
            if sequence <= prefix:
                machine.apply(sequence, entry)
                continue
            if sequence == prefix + 1:  # the venue is open: as the server once it recovered
                freeze_state()
                gc.set_threshold(*GC_THRESHOLDS)
            pending.append(entry)
            payloads.append(payload)
            if len(pending) == batch:
                wall, cpu_spent = flush()
                spent, cpu = spent + wall, cpu + cpu_spent
                timed, first, pending, payloads = timed + batch, first + batch, [], []
        if pending:
            wall, cpu_spent = flush()
            spent, cpu = spent + wall, cpu + cpu_spent
            timed += len(pending)
    finally:
        gc.set_threshold(*thresholds)
        thaw_state()
    journal.close()
    return machine, spent, cpu, timed


def _orders_journal(data_dir: Path, args: argparse.Namespace) -> tuple[int, int, str | None,
                                                                       dict]:
    """The order-flow journal: (prefix entries, all entries, None: no writer's hash, the
    figures that describe it)."""
    began = time.perf_counter()
    prefix, entries = build_journal(data_dir, args.orders, args.seed)
    total = prefix + len(entries)
    print(f"journal: {total:,} entries ({len(entries):,} orders) built in "
          f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
    return prefix, total, None, {"orders": len(entries)}


def mixed_journal(data_dir: Path, args: argparse.Namespace) -> tuple[int, int, str | None,
                                                                      dict]:
    """The busy venue's journal (``bench.venue``); prints the mix as written."""
    began = time.perf_counter()
    written = venue.build_journal(data_dir, args.commands, args.seed, days=args.days,
                                  investors=args.investors, group_max=args.group_max)
    print(f"journal: {written.total:,} entries ({written.prefix:,} opening the venue, "
          f"{written.total - written.prefix:,} of the mix) written and applied in "
          f"{time.perf_counter() - began:.1f} s", file=sys.stderr)
    print(venue.mix_table(written), file=sys.stderr)
    runs = max(written.order_runs, 1)
    return written.prefix, written.total, written.state_hash, {
        "opening_commands": written.prefix, "order_runs": written.order_runs,
        "orders_per_run": round(written.order_commands / runs, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="crowdex bench recovery", description=__doc__.split("\n")[0])
    p.add_argument("--mix", choices=("orders", "mixed"), default="orders",
                   help="order flow (the default), or a busy venue's mixed traffic")
    p.add_argument("--orders", type=int, default=1_000_000,
                   help="--mix orders: orders in the journal (%(default)s)")
    venue.add_arguments(p, "--mix mixed: ")
    p.add_argument("--seed", type=int, default=7, help="the workload's random seed")
    p.add_argument("--reference", type=int, default=100_000,
                   help="entries replayed one at a time for the old path's figure")
    p.add_argument("--live-batch", type=int, default=256,
                   help="commands per batch for the live apply figure")
    p.add_argument("--counts", action="store_true",
                   help="also count what the replay does, by path (two more replays)")
    p.add_argument("--json", action="store_true", help="print only the JSON line")
    args = p.parse_args(argv)
    from engine.markets import warm_up

    warm_up()
    with tempfile.TemporaryDirectory(prefix="crowdex-bench-recovery-") as tmp:
        figures = measure(Path(tmp), args)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, value in figures.items():
            print(f"{name}: {value}")
    return 0


def measure(data_dir: Path, args: argparse.Namespace) -> dict:
    """Build the journal, replay it in runs and one at a time, apply it live; the figures."""
    build = mixed_journal if args.mix == "mixed" else _orders_journal
    prefix, total, written_hash, described = build(data_dir, args)
    cpu_began = time.process_time()
    result = replay(data_dir)
    cpu_rate = result.commands / (time.process_time() - cpu_began)
    print(f"replay (runs): {result.commands:,} commands in {result.seconds:.2f} s = "
          f"{result.commands_per_sec:,.0f} commands/s ({cpu_rate:,.0f} a second of CPU)",
          file=sys.stderr)
    if written_hash is not None and result.state_hash != written_hash:
        raise RuntimeError("the replay did not reach the state of the machine that wrote "
                           "the journal")
    upto = min(total, prefix + args.reference)
    old, old_seconds = replay_one_by_one(data_dir, upto)
    old_rate = upto / old_seconds
    print(f"replay (one at a time, first {upto:,}): {old_rate:,.0f} commands/s",
          file=sys.stderr)
    live, live_seconds, live_cpu, timed = live_apply(data_dir, prefix, args.live_batch)
    if live.state_hash() != result.state_hash:
        raise RuntimeError("the live apply and the replay reached different states")
    partial = replay(data_dir, upto=upto)
    if partial.state_hash != old.state_hash():
        raise RuntimeError("the replay in runs and one at a time reached different states")
    print(f"replay (runs, first {upto:,}): {partial.commands_per_sec:,.0f} commands/s",
          file=sys.stderr)
    live_us = live_seconds / max(timed, 1) * 1e6
    live_cpu_us = live_cpu / max(timed, 1) * 1e6
    unit = "order" if args.mix == "orders" else "command"
    print(f"live apply (batches of {args.live_batch}): {live_us:.2f} us per {unit} "
          f"({live_cpu_us:.2f} of CPU)", file=sys.stderr)
    figures = {
        "mix": args.mix, **described, "commands": result.commands,
        "replay_commands_per_sec": round(result.commands_per_sec),
        "replay_seconds": round(result.seconds, 3),
        "replay_cpu_commands_per_sec": round(cpu_rate),
        "one_at_a_time_commands_per_sec": round(old_rate),
        # The same first entries both ways (the whole journal's mix may differ from them).
        "replay_first_commands_per_sec": round(partial.commands_per_sec),
        "replay_vs_one_at_a_time": round(partial.commands_per_sec / old_rate, 2),
        f"live_apply_us_per_{unit}": round(live_us, 3),
        f"live_apply_cpu_us_per_{unit}": round(live_cpu_us, 3), "live_batch": args.live_batch,
        "state_hash": result.state_hash,
    }
    if args.counts:
        figures["counts"] = replay_counts(data_dir)
        print(f"replay counts: {json.dumps(figures['counts'])}", file=sys.stderr)
    return figures


if __name__ == "__main__":
    raise SystemExit(main())
