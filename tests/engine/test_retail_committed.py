"""What a retail investor has committed, kept as a sum, is what a walk over its subscriptions
gives.

``Offerings.retail_used_fen`` answers from a per-investor sum (``_Committed``) that follows
every subscription made, cancelled, allocated or refunded, and drops subscriptions as they age
out of the 12-month window. Hypothesis drives a venue on a manual clock: retail investors
subscribe to equity offerings (which count toward the limit) and to product pledges (which do
not), cancel, the operator closes offerings (allocated, refunded, or failed), and the clock
jumps by days, past the year. After every step, and after a snapshot's load, each investor's
figure must equal the walk BOARDS.md's rule describes, and so must the refusals that follow
from it.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boards import rules
from engine import commands as c
from engine import offerings_commands as oc
from engine.machine import StateMachine
from engine.offerings import (
    ALLOCATED,
    CANCELLED,
    LIVE,
    YEAR_US,
    Offerings,
    Subscription,
    _Committed,
    committed_fen,
)

START_US = 1_767_225_600_000_000  # 2026-01-01
DAY_US = 86_400_000_000
EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 100
OPERATOR, ISSUER = 2, 3
INVESTORS = [4, 5, 6]  # retail, no income declared: a limit of 2,500.00
PRICE = 50_00  # the limit is 50 units


def _walk(machine: StateMachine, account: int) -> int:
    """BOARDS.md's rule, read off the subscriptions: live and allocated equity/IP/debt
    subscriptions of the last 365 days."""
    offerings = machine.component("offerings")
    horizon = machine.now_us - YEAR_US
    used = 0
    for sub in offerings.subscriptions.values():
        project = offerings.projects[sub.project_id]
        if (sub.account_id != account or sub.time_us < horizon
                or not offerings.board(project).config.counts_toward_limit):
            continue
        if sub.status == LIVE:
            used += sub.reserved
        elif sub.status == ALLOCATED:
            used += sub.alloc_amount
    return used


def _check(machine: StateMachine) -> None:
    offerings = machine.component("offerings")
    for account in INVESTORS:
        assert offerings.retail_used_fen(account) == _walk(machine, account), account


def _list(machine: StateMachine, board: str, days: int = 30) -> int:
    """List and open a project on ``board``, ``days`` to its deadline; returns its id. An
    equity offering may fail (under 20 units) or be cut pro rata (over 60); a pledge fails
    under its goal (30 units) when it runs longer than 30 days."""
    offerings = machine.component("offerings")
    project_id = offerings.next_project_id
    deadline = machine.now_us + days * DAY_US
    if board == "equity":
        terms = {"price": PRICE, "min_quantity": 20, "max_quantity": 60, "lockup_days": 0}
    else:
        terms = {"goal": 1 if days <= 30 else 30 * PRICE,
                 "tiers": [{"tier_id": "a", "price": PRICE, "quantity": None}]}
    _apply(machine, ISSUER, oc.CreateProject(board, f"p{project_id}", "x", deadline, terms))
    _apply(machine, OPERATOR, oc.ReviewProject(project_id, True))
    return project_id


def _apply(machine: StateMachine, actor: int, command: object) -> None:
    machine.apply(machine.last_sequence + 1, c.Entry(machine.now_us, actor, command))


def _venue() -> StateMachine:
    machine = StateMachine()
    _apply(machine, 0, c.Genesis("h", True, START_US, "intl", c.RULES_VERSION))
    # Offerings that outlive the 12-month window: a live subscription ages out of it, and
    # is cancelled, allocated or refunded after that.
    _apply(machine, 0, oc.SetBoardRules({board: {"duration_days_max": 800}
                                         for board in ("equity", "product")}))
    _apply(machine, OPERATOR, c.CreateAccount("issuer", "issuer", "kis"))
    for n, account in enumerate(INVESTORS):
        _apply(machine, OPERATOR, c.CreateAccount("investor", f"i{n}", f"k{n}"))
        _apply(machine, OPERATOR, c.Deposit(account, 10_000_000, f"d{n}"))
    return machine


subscribe = st.tuples(st.just("subscribe"), st.sampled_from(INVESTORS), st.integers(0, 5),
                      st.integers(1, 30))
steps = st.lists(st.one_of(
    subscribe, subscribe, subscribe, subscribe,
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(st.just("close"), st.integers(0, 5)),
    st.tuples(st.just("list"), st.sampled_from(["equity", "product"]),
              st.sampled_from([30, 400, 700])),
    # 365 days: a subscription made a whole year ago is still in the window
    st.tuples(st.just("advance"), st.sampled_from([1, 5, 29, 31, 120, 200, 365, 366]))),
    min_size=20, max_size=80)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=steps, reload=st.integers(0, 80))
def test_committed_sum_is_the_walk(steps: list[tuple], reload: int) -> None:
    drive(steps, reload, _check)


def drive(steps: list[tuple], reload: int, check: Callable[[StateMachine], None]) -> None:
    """Apply ``steps`` to a new venue, ``check`` after each, and load a snapshot of the
    venue after step ``reload`` (checked again at once)."""
    machine = _venue()
    offerings = machine.component("offerings")
    projects = [_list(machine, "equity"), _list(machine, "product"), _list(machine, "equity")]
    for n, step in enumerate(steps):
        kind = step[0]
        opened = [p for p in projects if offerings.projects[p].status == rules.OPEN]
        if kind == "subscribe":
            _, investor, which, quantity = step
            if not opened:  # the clock closed them all: list another
                opened.append(_list(machine, "equity"))
                projects.append(opened[-1])
            project = opened[which % len(opened)]
            tier = "a" if offerings.projects[project].board == "product" else None
            _apply(machine, investor, oc.Subscribe(project, quantity, tier_id=tier))
        elif kind == "cancel":  # a live subscription's, mostly
            subs = [s for s in offerings.subscriptions.values()
                    if s.status == LIVE or step[1] % 8 == 0]
            if subs:
                sub = subs[step[1] % len(subs)]
                _apply(machine, sub.account_id, oc.CancelSubscription(sub.subscription_id))
        elif kind == "close":
            _apply(machine, OPERATOR, oc.CloseProject(projects[step[1] % len(projects)]))
        elif kind == "list":
            projects.append(_list(machine, step[1], step[2]))
        else:
            _apply(machine, OPERATOR, c.AdvanceClock(step[1] * 86_400))
        check(machine)
        if n == reload:  # a snapshot's load rebuilds the sums from the subscriptions
            loaded = StateMachine()
            loaded.load(machine.arrays(), machine.meta())
            assert loaded.state_hash() == machine.state_hash()
            machine, offerings = loaded, loaded.component("offerings")
            check(machine)


def test_a_failed_pledge_leaves_the_sum_alone() -> None:
    """A pledge does not count toward the limit: refunded at a failed close, it takes nothing
    from the investor's sum of equity subscriptions."""
    machine = _venue()
    offerings = machine.component("offerings")
    equity, pledge = _list(machine, "equity"), _list(machine, "product", 400)
    _apply(machine, INVESTORS[0], oc.Subscribe(equity, 10))
    _apply(machine, INVESTORS[0], oc.Subscribe(pledge, 5, tier_id="a"))
    _apply(machine, OPERATOR, oc.CloseProject(pledge))  # 5 of its goal of 30: it fails
    assert offerings.projects[pledge].status == rules.FAILED
    assert offerings.retail_used_fen(INVESTORS[0]) == _walk(machine, INVESTORS[0]) == 10 * PRICE


@settings(max_examples=EXAMPLES, deadline=None)
@given(made=st.lists(st.tuples(st.integers(0, 50), st.integers(1, 9), st.integers(0, 3),
                               st.integers(0, 40)), max_size=30),
       horizons=st.lists(st.integers(0, 60), max_size=10))
def test_subscriptions_out_of_time_order_are_walked(made: list[tuple[int, int, int, int]],
                                                     horizons: list[int]) -> None:
    """Subscriptions come in time order (the exchange's time never goes back); should one
    not, or come older than a window already passed, the sum gives way to the walk, also
    across cancels (``Offerings.recommitted``)."""
    committed, subs = _Committed(), []
    offerings = types.SimpleNamespace(_committed={4: committed})
    horizons = sorted(horizons)
    for n, (time_us, fen, then, which) in enumerate(made):
        sub = Subscription(n + 1, 1, 4, n + 1, time_us, 1, None, None, fen)
        committed.add(sub, fen)
        subs.append(sub)
        if then == 1 and horizons:  # ask
            horizon = horizons.pop(0)
            assert committed.used_fen(horizon) == sum(
                committed_fen(s) for s in subs if s.time_us >= horizon)
        elif then == 2:  # cancel one
            cancelled = subs[-1] if which < 10 else subs[which % len(subs)]
            if cancelled.status == LIVE:
                cancelled.status = CANCELLED
                Offerings.recommitted(offerings, cancelled, cancelled.reserved)
    for horizon in horizons:
        assert committed.used_fen(horizon) == sum(
            committed_fen(s) for s in subs if s.time_us >= horizon)


def test_a_subscription_older_than_the_window_then_cancelled() -> None:
    """Made before the horizon already asked, then cancelled: out of the window all along."""
    committed = _Committed()
    offerings = types.SimpleNamespace(_committed={4: committed})
    committed.add(Subscription(1, 1, 4, 1, 5, 1, None, None, 3), 3)
    assert committed.used_fen(30) == 0
    late = Subscription(2, 1, 4, 2, 10, 1, None, None, 7)
    committed.add(late, 7)
    late.status = CANCELLED
    Offerings.recommitted(offerings, late, late.reserved)
    assert committed.used_fen(30) == committed.used_fen(31) == 0


def test_each_retail_investor_is_held_to_its_own_limit() -> None:
    """A retail investor's limit is read once and kept with its sum (``_Committed.limit``):
    each is held to its own, read again after a snapshot's load. The higher limit is read
    first: one kept for the venue, or for the last investor asked, would let the lower one
    through."""
    machine = StateMachine()
    _apply(machine, 0, c.Genesis("h", True, START_US, "intl", c.RULES_VERSION))
    _apply(machine, OPERATOR, c.CreateAccount("issuer", "issuer", "kis"))
    rich = 1_000_000_00  # income and net worth: a limit of 100,000.00 (10%)
    accounts = {}
    for name, income, klass in [("high", rich, "retail"), ("low", None, "retail"),
                                ("q", None, "qualified")]:
        reply = machine.apply(machine.last_sequence + 1, c.Entry(
            machine.now_us, OPERATOR, c.CreateAccount("investor", name, f"k-{name}",
                                                      investor_class=klass,
                                                      annual_income=income, net_worth=income)))
        accounts[name] = reply.body["account_id"]
        _apply(machine, OPERATOR, c.Deposit(accounts[name], 10**12, f"d-{name}"))
    assert rules.retail_limit_fen(rich, rich) == 100_000_00
    assert rules.retail_limit_fen(None, None) == 2_500_00
    project = machine.component("offerings").next_project_id
    terms = {"price": PRICE, "min_quantity": 1, "max_quantity": 10**9, "lockup_days": 0}
    _apply(machine, ISSUER, oc.CreateProject("equity", "big", "x", START_US + 30 * DAY_US,
                                             terms))
    _apply(machine, OPERATOR, oc.ReviewProject(project, True))

    def subscribe(venue: StateMachine, name: str, quantity: int) -> str:
        reply = venue.apply(venue.last_sequence + 1, c.Entry(
            venue.now_us, accounts[name], oc.Subscribe(project, quantity)))
        return "ok" if reply.status == 201 else reply.body["error"]["code"]

    assert subscribe(machine, "high", 1_500) == "ok"  # 75,000.00
    assert subscribe(machine, "low", 40) == "ok"  # 2,000.00
    loaded = StateMachine()
    loaded.load(machine.arrays(), machine.meta())
    for venue in (machine, loaded):  # the same answers before and after a load
        assert subscribe(venue, "low", 11) == "limit_exceeded"  # 2,550.00 in all
        assert subscribe(venue, "high", 501) == "limit_exceeded"  # 100,050.00 in all
        assert subscribe(venue, "q", 10_000) == "ok"  # no limit
        assert subscribe(venue, "low", 10) == "ok"  # 2,500.00: at it
        assert subscribe(venue, "high", 500) == "ok"  # 100,000.00: at it
        assert subscribe(venue, "low", 1) == subscribe(venue, "high", 1) == "limit_exceeded"
