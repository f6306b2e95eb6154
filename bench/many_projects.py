"""The walks over every project or distribution at a venue of many projects, timed (issue 14).

Not a ``crowdex bench`` command: a script that measured the indexes replacing these walks
(session 22: on_time 11 ms -> 2 us at 5 * 10^4 projects; the tree before them had no
``projects_by_id`` nor ``project_distributions``, which this calls now; a smoke test keeps it
working: ``tests/engine/test_bench_many_projects.py``). A real journal reaching 10^5
projects takes long to play, so the venue is made directly in the state: issuers by commands,
then ``--projects`` projects (most closed: equity, loans and operating rights trading, their
terms over; pledges failed; a few hundred open, a few hundred under lock-up) and
``--distributions`` distributions, almost all paid, put into the offerings' snapshot meta and
loaded (the load rebuilds every index, as a restart does). Then each operation is timed, median
of ``--repeat`` calls, in milliseconds:

- ``on_time``: a deadline comes with nothing to close (what it walks, not what it closes);
- ``recompute_due``; ``outstanding_principal_fen`` of one issuer (a debt listing's cap check);
- ``pay_pending_distributions`` with nothing pending (a settlement batch's prepare);
- ``project_distributions``: ``GET /v1/projects/{id}/distributions``' rows;
- ``list_projects status=open``: ``GET /v1/projects?status=open``'s projects;
- the walks left in place (judged, not replaced): ``held_total`` and the integrity list.

Usage: ``PYTHONPATH=$PWD python -m bench.many_projects --projects 50000``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import msgspec

from boards import integrity, rules
from boards import operating_rights as orb
from engine import commands as c
from engine.machine import StateMachine
from engine.offerings import Distribution, OfferingsMeta, Project
from engine.operating_terms import TermState

START_US = 1_767_225_600_000_000  # 2026-01-01
DAY_US = 86_400_000_000
ISSUERS = 500
EQUITY = {"price": 100, "min_quantity": 5, "max_quantity": 50, "lockup_days": 30}
LOAN = {"face_value": 10_000, "min_quantity": 1, "max_quantity": 100, "term_months": 6,
        "repayment": "amortizing", "rate_bps": 900, "lockup_days": 0}
PLEDGE = {"goal": 500, "tiers": [{"tier_id": "a", "price": 100, "quantity": None}]}
RIGHTS = {"price": 100, "min_quantity": 1, "max_quantity": 1000, "term_months": 6,
          "revenue_share_bps": 500, "buyback_price": 0, "lockup_days": 0}


def build(projects: int, distributions: int) -> StateMachine:
    machine = StateMachine()
    entries = [c.Entry(START_US, 0, c.Genesis("h", False, START_US, "intl", c.RULES_VERSION))]
    entries += [c.Entry(START_US, 0, c.CreateAccount("issuer", f"s{n}", f"k{n}"))
                for n in range(ISSUERS)]
    machine.apply_batch(1, entries)
    now = START_US + 400 * DAY_US
    machine.now_us = now
    issuers = [a for a, info in machine.accounts.items() if info.role == "issuer"]
    made, terms = [], []
    for n in range(projects):
        pid, issuer = n + 1, issuers[n % len(issuers)]
        closed = now - (projects - n) * 1_000_000  # listed and closed in id order
        if n >= projects - 300:  # open
            made.append(Project(pid, "equity", issuer, "t", "d", now + (n % 50 + 1) * DAY_US,
                                EQUITY, rules.OPEN, closed))
        elif n >= projects - 600:  # under lock-up
            made.append(Project(pid, "equity", issuer, "t", "d", closed, EQUITY,
                                rules.SUCCEEDED, closed, closed_us=closed, raised=5000,
                                subscribed_quantity=50, lockup_until_us=now + DAY_US + n))
        elif n % 3 == 0:
            made.append(Project(pid, "debt", issuer, "t", "d", closed, LOAN, rules.TRADING,
                                closed, closed_us=closed, raised=1_000_000, rate_bps=900,
                                subscribed_quantity=100, lockup_until_us=closed))
        elif n % 6 == 1:  # operating rights, the term over and handled
            made.append(Project(pid, "operating_rights", issuer, "t", "d", closed, RIGHTS,
                                rules.TRADING, closed, closed_us=closed, raised=5000,
                                subscribed_quantity=50, lockup_until_us=closed))
            terms.append(TermState(pid, orb.month_index(START_US), 6, 0, handled_us=now,
                                   closed=True, buyback_paid_us=START_US))
        elif n % 3 == 1:
            made.append(Project(pid, "equity", issuer, "t", "d", closed, EQUITY, rules.TRADING,
                                closed, closed_us=closed, raised=5000, subscribed_quantity=50,
                                lockup_until_us=closed))
        else:
            made.append(Project(pid, "product", issuer, "t", "d", closed, PLEDGE, rules.FAILED,
                                closed, closed_us=closed))
    dists = [Distribution(n + 1, 3 * (n % (projects // 3)) + 1, 1000, now, status="paid")
             for n in range(distributions)]
    meta = OfferingsMeta(projects + 1, 1, distributions + 1, 1, made, [], dists, [],
                         operating_terms=terms)
    offerings = machine.component("offerings")
    offerings.load({}, msgspec.msgpack.encode(meta))
    return machine


def timed_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=50_000)
    parser.add_argument("--distributions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    machine = build(args.projects, args.distributions)
    offerings = machine.component("offerings")
    print(f"built {len(offerings.projects)} projects, {len(offerings.distributions)} "
          f"distributions in {time.perf_counter() - start:.1f}s")
    issuer = offerings.projects[1].issuer_id
    project_id = 1

    def on_time() -> None:
        offerings._next_due = machine.now_us  # a deadline comes; nothing is due to close
        offerings.on_time()

    def open_projects() -> list:
        return list(offerings.projects_by_id(rules.OPEN))[:100]

    operations = {
        "on_time": on_time, "recompute_due": offerings._recompute_due,
        "outstanding_principal_fen": lambda: offerings.outstanding_principal_fen(issuer),
        "pay_pending_distributions": offerings.pay_pending_distributions,
        "project_distributions": lambda: offerings.project_distributions(project_id),
        "held_total (kept)": offerings.held_total,
        "list_projects status=open": open_projects,
        "integrity_lists (kept)": lambda: integrity.integrity_lists(offerings, 2027, 1),
    }
    for name, call in operations.items():
        repeat = 3 if "integrity" in name else args.repeat
        print(f"{name:36} {timed_ms(call, repeat):9.3f} ms")


if __name__ == "__main__":
    main()
