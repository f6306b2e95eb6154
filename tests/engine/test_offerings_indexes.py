"""The indexes ``Offerings`` keeps over every project and distribution ever made are the walks
they replace: open offerings by deadline and succeeded ones by the end of their lock-up
(``_closing``, ``_locked``: ``on_time`` and the next deadline), an issuer's projects
(``outstanding_principal_fen``: the debt board's borrower cap), the distributions not paid yet
(``pay_pending_distributions``), a project's distributions (its route) and the projects of a
status (``projects_by_id``: ``GET /v1/projects?status=``); and the next event
of each operating-rights term (``OperatingTerms._events``: its ``on_time`` and next event).

Hypothesis drives a venue on a manual clock: issuers list equity (with and without a lock-up),
loans (under a borrower cap the steps reach), pledges and operating rights, the operator
approves, rejects or closes them, investors subscribe, the clock jumps past deadlines, lock-ups,
defaults and terms' ends, issuers repay loans, report revenue and pay buy-backs, and the
operator prepares settlement batches. After every step, refused ones included, and after a
snapshot's load, each index must answer what the walk over everything answers, and the venue
must give the replies and state hash of one whose offerings walk (``walking``: the code the
indexes replaced), which is what checks the order of the closes and of the terms handled.
"""

from __future__ import annotations

import os
import types

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boards import operating_rights as orb
from boards import rules
from engine import commands as c
from engine import offerings_commands as oc
from engine.machine import StateMachine
from engine.offerings import Offerings, Project
from engine.operating_terms import SIDES_SELL, OperatingTerms
from settlement.commands import PrepareSettlement

START_US = 1_767_225_600_000_000  # 2026-01-01
DAY_US = 86_400_000_000
EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 100
OPERATOR = 2
ISSUERS = [3, 4]
INVESTORS = [5, 6]
LOAN = {"face_value": 10_000, "min_quantity": 1, "max_quantity": 100, "term_months": 6,
        "repayment": "amortizing", "rate_bps": 900, "lockup_days": 0}
CAP_FEN = 3 * LOAN["face_value"] * LOAN["max_quantity"] // 2  # one loan open at a time


def _apply(machine: StateMachine, actor: int, command: object) -> object:
    return machine.apply(machine.last_sequence + 1, c.Entry(machine.now_us, actor, command))


def _venue() -> StateMachine:
    machine = StateMachine()
    _apply(machine, 0, c.Genesis("h", True, START_US, "intl", c.RULES_VERSION))
    _apply(machine, 0, oc.SetBoardRules({
        "debt": {"borrower_cap_fen": CAP_FEN, "duration_days_min": 1},
        "equity": {"duration_days_min": 1}, "product": {"duration_days_min": 1},
        "operating_rights": {"duration_days_min": 1}}))
    for n in ISSUERS:
        _apply(machine, OPERATOR, c.CreateAccount("issuer", f"s{n}", f"ks{n}"))
    for n in INVESTORS:
        _apply(machine, OPERATOR, c.CreateAccount("investor", f"i{n}", f"ki{n}",
                                                  investor_class="qualified"))
    for n in ISSUERS + INVESTORS:
        _apply(machine, OPERATOR, c.Deposit(n, 100_000_000, f"d{n}"))
    return machine


def _terms(board: str, lockup_days: int) -> dict:
    if board == "equity":
        return {"price": 100, "min_quantity": 5, "max_quantity": 50, "lockup_days": lockup_days}
    if board == "debt":
        return LOAN
    if board == "operating_rights":
        return {"price": 100, "min_quantity": 1, "max_quantity": 1000, "term_months": 6,
                "revenue_share_bps": 500, "buyback_price": lockup_days % 3,
                "lockup_days": lockup_days}
    return {"goal": 500, "tiers": [{"tier_id": "a", "price": 100, "quantity": None}]}


# ---- the walks the indexes replace ------------------------------------------------------------


def walked_waiting(offerings: Offerings) -> tuple[list, list]:
    """Open offerings by (deadline, id), and succeeded ones issuing units by (lock-up, id)."""
    projects = offerings.projects.values()
    closing = sorted((p.deadline_us, p.project_id) for p in projects if p.status == rules.OPEN)
    locked = sorted((p.lockup_until_us, p.project_id) for p in projects
                    if p.status == rules.SUCCEEDED and offerings.board(p).config.issues_units)
    return closing, locked


def indexed_waiting(offerings: Offerings) -> tuple[list, list]:
    """The entries of ``_closing`` and ``_locked`` whose projects still wait (the others are
    dropped when they reach the top), by (time, id)."""
    projects = offerings.projects
    return tuple(sorted({entry for entry in waiting.heap
                         if projects[entry[1]].status == waiting.status})
                 for waiting in (offerings._closing, offerings._locked))


def walked_outstanding_fen(offerings: Offerings, issuer: int, exclude: int = 0) -> int:
    """``outstanding_principal_fen`` as the walk over every project it was."""
    total = 0
    for project in offerings.projects.values():
        if (project.issuer_id != issuer or project.project_id == exclude
                or not offerings.board(project).config.borrower_cap_fen):
            continue
        if project.status in (rules.PENDING_REVIEW, rules.OPEN):
            total += offerings.board(project).principal_fen(project.terms)
        elif project.status in (rules.SUCCEEDED, rules.TRADING):
            repaid = sum(i.principal_fen for i, (paid, _) in
                         zip(offerings.instalments(project), offerings.instalments_paid(project),
                             strict=True) if paid == i.amount_fen)
            total += project.raised - repaid
    return total


def walked_on_time(self: Offerings) -> None:
    """``Offerings.on_time`` as the walks over every project it was."""
    if self._next_due is None or self.machine.now_us < self._next_due:
        return
    now = self.machine.now_us
    due = sorted((p.deadline_us, p.project_id) for p in self.projects.values()
                 if p.status == rules.OPEN and p.deadline_us <= now)
    for _, project_id in due:
        self.close(self.projects[project_id])
    for project in self.projects.values():
        if (project.status == rules.SUCCEEDED and self.board(project).config.issues_units
                and project.lockup_until_us <= now):
            project.status = rules.TRADING
            self._publish(project)
    self.terms.on_time()
    self._next_due = None
    for project in self.projects.values():
        if project.status == rules.OPEN:
            self._schedule_due(project.deadline_us)
        elif project.status == rules.SUCCEEDED and self.board(project).config.issues_units:
            self._schedule_due(project.lockup_until_us)
    event = self.terms.next_event_us()
    if event is not None:
        self._schedule_due(event)


def walked_pay_pending(self: Offerings) -> int:
    """``Offerings.pay_pending_distributions`` as the walk over every distribution it was."""
    count = 0
    for dist in self.distributions.values():
        if dist.status == "pending":
            self._pay(dist)
            count += 1
    return count


def walked_terms_on_time(self: OperatingTerms) -> None:
    """``OperatingTerms.on_time`` as the walk over every term it was."""
    now = self.machine.now_us
    for project_id in sorted(self.states):
        state = self.states[project_id]
        event = self._next_event(state)
        if event is None or event > now:
            continue
        if not state.closed and now >= state.term.end_us:
            self._close_term(state)
        elif self.in_default(project_id, now):
            self._cancel_resting(project_id, SIDES_SELL)
        state.handled_us = now
        self.offerings._publish(self.offerings.projects[project_id])


def walked_next_event_us(terms: OperatingTerms) -> int | None:
    events = [t for t in map(terms._next_event, terms.states.values()) if t is not None]
    return min(events) if events else None


def walking(machine: StateMachine) -> StateMachine:
    """``machine`` with its offerings answering from the walks, not the indexes."""
    offerings = machine.component("offerings")
    offerings.terms.on_time = types.MethodType(walked_terms_on_time, offerings.terms)
    offerings.terms.next_event_us = types.MethodType(walked_next_event_us, offerings.terms)
    offerings.on_time = types.MethodType(walked_on_time, offerings)
    offerings.pay_pending_distributions = types.MethodType(walked_pay_pending, offerings)
    offerings.outstanding_principal_fen = types.MethodType(
        lambda self, issuer, exclude=0: walked_outstanding_fen(self, issuer, exclude), offerings)
    return machine


def check(machine: StateMachine) -> None:
    offerings = machine.component("offerings")
    closing, locked = walked_waiting(offerings)
    assert indexed_waiting(offerings) == (closing, locked)
    # The moments ``_recompute_due`` takes the earliest of.
    assert offerings._closing.earliest_us(offerings.projects) == (
        closing[0][0] if closing else None)
    assert offerings._locked.earliest_us(offerings.projects) == (
        locked[0][0] if locked else None)
    terms = offerings.terms
    assert {entry[1] for entry in terms._events if terms._is_next(entry)} == {
        project_id for project_id, state in terms.states.items()
        if terms._next_event(state) is not None}
    assert terms.next_event_us() == walked_next_event_us(terms)
    for status in rules.STATUSES:
        walked = [p for p in offerings.projects.values() if p.status == status]
        assert sorted(offerings._with_status.get(status, {})) == [p.project_id for p in walked]
        assert list(offerings.projects_by_id(status)) == walked
    for issuer in ISSUERS:
        assert offerings._projects_of.get(issuer, []) == [
            p for p in offerings.projects.values() if p.issuer_id == issuer]
        assert offerings.outstanding_principal_fen(issuer) == walked_outstanding_fen(
            offerings, issuer)
    assert list(offerings._pending.values()) == [
        d for d in offerings.distributions.values() if d.status == "pending"]
    for project_id in list(offerings.projects) + [offerings.next_project_id]:
        assert offerings.project_distributions(project_id) == [
            d for d in offerings.distributions.values() if d.project_id == project_id]


# ---- random venues ----------------------------------------------------------------------------


subscribe = st.tuples(st.just("subscribe"), st.sampled_from(INVESTORS), st.integers(0, 9),
                      st.integers(1, 40))
steps = st.lists(st.one_of(
    st.tuples(st.just("list"),
              st.sampled_from(["equity", "debt", "debt", "product", "operating_rights"]),
              st.sampled_from(ISSUERS), st.sampled_from([3, 20, 40]),
              st.sampled_from([0, 10, 60]),
              st.sampled_from(["approve", "approve", "approve", "reject", "wait"])),
    subscribe, subscribe, subscribe,
    st.tuples(st.just("approve"), st.integers(0, 9)),
    st.tuples(st.just("close"), st.integers(0, 9)),
    st.tuples(st.just("advance"), st.sampled_from([1, 4, 15, 35, 70, 120, 200])),
    st.tuples(st.just("report"), st.integers(0, 9), st.integers(0, 7), st.integers(0, 10**6)),
    st.tuples(st.just("repay"), st.integers(0, 9), st.sampled_from([1_000, 50_000, 10**9])),
    st.tuples(st.just("prepare"),)), min_size=10, max_size=60)


def pick(wanted: list, n: int) -> Project | None:
    return wanted[n % len(wanted)] if wanted else None


def _step(machine: StateMachine, step: tuple) -> list:
    """Apply ``step``; returns its commands' replies."""
    replies: list = []

    def apply(actor: int, command: object) -> None:
        replies.append(_apply(machine, actor, command))

    offerings = machine.component("offerings")
    projects = list(offerings.projects.values())
    kind = step[0]
    if kind == "list":
        _, board, issuer, days, lockup_days, review = step
        project_id = offerings.next_project_id
        apply(issuer, oc.CreateProject(board, "t", "d", machine.now_us + days * DAY_US,
                                       _terms(board, lockup_days)))
        if review != "wait" and project_id in offerings.projects:
            apply(OPERATOR, oc.ReviewProject(project_id, review == "approve"))
    elif kind == "subscribe":
        project = pick([p for p in projects if p.status == rules.OPEN], step[2])
        if project is not None:
            tier = "a" if project.board == "product" else None
            apply(step[1], oc.Subscribe(project.project_id, step[3], tier_id=tier))
    elif kind in ("approve", "close"):
        project = pick(projects, step[1])
        if project is not None:  # refused unless it waits for review (or is open)
            command = (oc.ReviewProject(project.project_id, True) if kind == "approve"
                       else oc.CloseProject(project.project_id))
            apply(OPERATOR, command)
    elif kind == "advance":
        apply(OPERATOR, c.AdvanceClock(step[1] * 86_400))
    elif kind == "repay":  # a loan's repayment (too much is refused), a buy-back, or refused
        loans = [p for p in projects if p.board in ("debt", "operating_rights")
                 and p.status in (rules.SUCCEEDED, rules.TRADING)]
        project = pick(loans if step[1] % 4 else projects, step[1])
        if project is not None:
            state = offerings.terms.states.get(project.project_id)
            amount = state.buyback_owed if state is not None else step[2]
            apply(project.issuer_id, oc.Distribute(project.project_id, amount))
    elif kind == "report":  # a month of a term (or one after it: refused), once
        states = list(offerings.terms.states.values())
        state = pick(states, step[1])
        if state is not None:
            month = orb.month_text(state.first_month + step[2])
            project = offerings.projects[state.project_id]
            apply(project.issuer_id, oc.ReportRevenue(project.project_id, month, step[3]))
    else:
        apply(OPERATOR, PrepareSettlement())
    return replies


# A loan to repay, an equity under a ten-day lock-up and an operating-rights term (with a
# buy-back to pay) from the start.
PRELUDE = [("list", "debt", ISSUERS[0], 5, 0, "approve"), ("subscribe", INVESTORS[0], 0, 30),
           ("list", "equity", ISSUERS[1], 5, 10, "approve"),
           ("subscribe", INVESTORS[1], 1, 20),
           ("list", "operating_rights", ISSUERS[1], 5, 1, "approve"),
           ("subscribe", INVESTORS[0], 2, 10), ("advance", 6)]


def _loaded(machine: StateMachine) -> StateMachine:
    loaded = StateMachine()
    loaded.load(machine.arrays(), machine.meta())
    assert loaded.state_hash() == machine.state_hash()
    return loaded


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=steps, reload=st.integers(0, 60))
def test_the_indexes_are_the_walks(plan: list[tuple], reload: int) -> None:
    """Each index is its walk, and the venue is the one whose offerings walk (the same
    replies and state hash)."""
    machine, walked = _venue(), walking(_venue())
    for n, step in enumerate(PRELUDE + plan):
        replies = [_step(machine, step), _step(walked, step)]
        assert replies[0] == replies[1], step
        assert machine.state_hash() == walked.state_hash(), step
        check(machine)
        if n == len(PRELUDE) + reload:  # a snapshot's load rebuilds the indexes from the state
            machine, walked = _loaded(machine), walking(_loaded(walked))
            check(machine)


def test_due_offerings_close_by_deadline_then_id() -> None:
    """``on_time`` closes the offerings due by (deadline, project id), as the sorted walk did,
    whatever order they were listed and approved in."""
    machine = _venue()
    offerings = machine.component("offerings")
    deadlines_days = [9, 5, 9, 5, 7]
    for days in deadlines_days:
        _apply(machine, ISSUERS[0], oc.CreateProject(
            "equity", "t", "d", machine.now_us + days * DAY_US, _terms("equity", 0)))
    for project_id in (5, 3, 1, 2, 4):
        _apply(machine, OPERATOR, oc.ReviewProject(project_id, True))
    closed: list[int] = []
    close = offerings.close
    offerings.close = lambda project: (closed.append(project.project_id), close(project))
    _apply(machine, OPERATOR, c.AdvanceClock(10 * 86_400))
    assert closed == [2, 4, 5, 1, 3]


def test_lock_ups_end_in_project_order() -> None:
    """Lock-ups that end at one ``on_time`` start trading by project id (the order their
    watchers hear it), as the walk over the projects did, whatever the end of each."""
    machine = _venue()
    offerings = machine.component("offerings")
    for lockup_days in (30, 10, 20):
        project_id = offerings.next_project_id
        _apply(machine, ISSUERS[0], oc.CreateProject(
            "equity", "t", "d", machine.now_us + 3 * DAY_US, _terms("equity", lockup_days)))
        _apply(machine, OPERATOR, oc.ReviewProject(project_id, True))
        _apply(machine, INVESTORS[0], oc.Subscribe(project_id, 10))
    _apply(machine, OPERATOR, c.AdvanceClock(4 * 86_400))
    assert [p.status for p in offerings.projects.values()] == [rules.SUCCEEDED] * 3
    published: list[int] = []
    offerings._publish = lambda project: published.append(project.project_id)
    _apply(machine, OPERATOR, c.AdvanceClock(40 * 86_400))
    assert [p.status for p in offerings.projects.values()] == [rules.TRADING] * 3
    assert published == [1, 2, 3]


def test_an_offering_the_operator_closed_is_not_closed_again_at_its_deadline() -> None:
    """An offering closed before its deadline leaves the deadlines behind (its entry is
    dropped when it comes due): the deadline passing changes nothing, as with the walk."""
    machine, walked = _venue(), walking(_venue())
    for venue in (machine, walked):
        _step(venue, ("list", "equity", ISSUERS[0], 20, 0, "approve"))
        _step(venue, ("subscribe", INVESTORS[0], 0, 10))
        _step(venue, ("close", 0))
        _step(venue, ("list", "equity", ISSUERS[0], 30, 0, "approve"))
    offerings = machine.component("offerings")
    closed = [(p.status, p.closed_us) for p in offerings.projects.values()]
    _apply(machine, OPERATOR, c.AdvanceClock(25 * 86_400))
    _apply(walked, OPERATOR, c.AdvanceClock(25 * 86_400))
    assert [(p.status, p.closed_us) for p in offerings.projects.values()][0] == closed[0]
    assert machine.state_hash() == walked.state_hash()


def _advance_to(machine: StateMachine, time_us: int) -> None:
    _apply(machine, OPERATOR, c.AdvanceClock((time_us - machine.now_us) // 1_000_000))


@given(pay_buyback=st.booleans())
@settings(max_examples=4, deadline=None)
def test_a_terms_stale_event_changes_nothing_when_it_comes(pay_buyback: bool) -> None:
    """A report or the buy-back moves a term's next event later: the event it had comes and
    changes nothing (a walk would not see it due), and the new one comes in its place."""
    machine, walked = _venue(), walking(_venue())
    for venue in (machine, walked):
        for step in (("list", "operating_rights", ISSUERS[0], 5, 0, "approve"),
                     ("subscribe", INVESTORS[0], 0, 10), ("advance", 6)):
            _step(venue, step)
    terms = machine.component("offerings").terms
    state = next(iter(terms.states.values()))
    last = state.term.last
    first_default = orb.default_from_us(orb.due_us(state.first_month))
    # Every month but the last reported before it falls into default; then the buy-back.
    for month in range(state.first_month, last):
        for venue in (machine, walked):
            _advance_to(venue, orb.month_start_us(month + 1))
            _apply(venue, ISSUERS[0], oc.ReportRevenue(1, orb.month_text(month), 1000))
        assert machine.state_hash() == walked.state_hash()
    assert terms._next_event(state) > first_default
    for venue in (machine, walked):
        _advance_to(venue, state.term.end_us)
        if pay_buyback:  # the buy-back paid: the last month's default is the next event
            _apply(venue, ISSUERS[0], oc.Distribute(1, state.buyback_owed))
        _advance_to(venue, orb.default_from_us(orb.due_us(last)) + 1)
        _advance_to(venue, orb.default_from_us(state.term.buyback_due_us) + 1)
    assert state.handled_us == walked.component("offerings").terms.states[1].handled_us
    assert machine.state_hash() == walked.state_hash()


def test_a_rare_status_lists_in_id_order() -> None:
    """Projects of a status few have come from its index in id order, not in the order they
    took the status (two approved, last first, of twenty in review)."""
    machine = _venue()
    offerings = machine.component("offerings")
    for _ in range(20):
        _apply(machine, ISSUERS[0], oc.CreateProject(
            "equity", "t", "d", machine.now_us + 9 * DAY_US, _terms("equity", 0)))
    for project_id in (12, 7):
        _apply(machine, OPERATOR, oc.ReviewProject(project_id, True))
    assert [p.project_id for p in offerings.projects_by_id(rules.OPEN)] == [7, 12]
    assert len(list(offerings.projects_by_id(rules.PENDING_REVIEW))) == 18
    assert len(list(offerings.projects_by_id())) == 20
