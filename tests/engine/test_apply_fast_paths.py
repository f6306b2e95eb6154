"""The quicker ways the state machine applies what is not an order give what the plain ways gave.

Each fast path is held to the code it replaced (kept here as the reference), over random cases:
a pledge against the compiled first-come kernel, the holders of an instrument read in bulk
against the walk of every position, the moment a loan or an operating-rights project falls into
default against its schedule's statuses, a bulk cash credit against one ``credit_cash`` each,
and a movement or position row written at once against field by field. Whole journals with all
of them are replayed by ``test_bench_recovery`` (the writer's state hash, one entry at a time).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boards import operating_rights as orb
from engine import commands as c
from engine import markets_commands as mc
from engine import matching
from engine import movements as mv
from engine import offerings_commands as oc
from engine.allocation import ALLOCATION
from engine.errors import CrowdexError
from engine.kernels import codes
from engine.machine import StateMachine
from engine.operating_terms import RevenueReport
from engine.state import Table

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
DAY_US = 86_400_000_000
INT64_MAX = 2**63 - 1
ISSUER = 3
INVESTORS = range(4, 10)


class Venue:
    """A manual-clock venue with an issuer and six funded investors, applied one at a time."""

    def __init__(self) -> None:
        self.machine = StateMachine()
        self.sequence = 0
        self.do(0, c.Genesis("op", True, T0, "intl", c.RULES_VERSION))
        self.do(2, c.CreateAccount("issuer", "issuer", "ki", investor_class="institutional"))
        self.do(2, c.Deposit(ISSUER, 10**12, "issuer"))
        for n in INVESTORS:
            self.do(2, c.CreateAccount("investor", f"i{n}", f"k{n}", investor_class="qualified"))
            self.do(2, c.Deposit(n, 10**12, f"d{n}"))

    def do(self, actor: int, command: object, refused_ok: bool = False) -> object:
        self.sequence += 1
        reply = self.machine.apply(self.sequence, c.Entry(self.machine.now_us, actor, command))
        if reply.status >= 300 and not refused_ok:
            raise AssertionError(f"{command} refused: {reply.body}")
        return reply

    def days(self, days: int) -> None:
        self.do(2, c.AdvanceClock(days * 86_400))

    @property
    def offerings(self):
        return self.machine.component("offerings")

    def succeeded(self, board: str, terms: dict, quantities: list[int]) -> object:
        """A project listed, approved, subscribed by the investors in turn, and closed."""
        self.do(ISSUER, oc.CreateProject(board, "p", "d", self.machine.now_us + 25 * DAY_US,
                                         terms))
        project_id = max(self.offerings.projects)
        self.do(2, oc.ReviewProject(project_id, True))
        for n, quantity in enumerate(quantities):
            self.do(INVESTORS[n % len(INVESTORS)], oc.Subscribe(project_id, quantity))
        self.do(2, oc.CloseProject(project_id))
        return self.offerings.projects[project_id]


# ---- a pledge on a limited tier ---------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(remaining=st.one_of(st.none(), st.integers(-5, 2**53)),
       quantity=st.one_of(st.integers(-3, 300), st.integers(-INT64_MAX, INT64_MAX)))
def test_one_pledge_is_the_compiled_kernels_answer(remaining: int | None, quantity: int) -> None:
    capacity = -1 if remaining is None else max(remaining, 0)
    found, _, _ = matching.allocate_first_come(np.array([quantity], dtype=np.int64), capacity)
    assert ALLOCATION.first_come(remaining, quantity) == codes.CODE_NAMES[int(found[0])]


def test_a_pledge_past_int64_is_refused_as_before() -> None:
    with pytest.raises(OverflowError):
        ALLOCATION.first_come(10, 2**63)


# ---- holders of record ------------------------------------------------------------------------


def holders_walk(machine: StateMachine, instrument_id: int) -> list[tuple[int, int]]:
    """The holders as ``Offerings.holders`` listed them before: a walk of every position."""
    balances = machine.balances
    rows = balances.positions.rows
    out = []
    for (account, instrument), slot in balances.position_slots.items():
        if instrument == instrument_id:
            units = int(rows[slot]["units_available"]) + int(rows[slot]["units_reserved"])
            if units > 0:
                out.append((account, units))
    out.sort()
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 4), st.integers(0, 50),
                          st.integers(0, 50)), max_size=120))
def test_holders_in_bulk_are_the_walk_of_every_position(positions) -> None:
    machine = StateMachine()
    for account, instrument, available, reserved in positions:
        slot = machine.balances.position_slot(account, instrument)
        machine.balances.positions.rows["units_available"][slot] += available
        machine.balances.positions.rows["units_reserved"][slot] += reserved
    offerings = machine.component("offerings")
    for instrument in range(0, 6):
        assert offerings.holders(instrument) == holders_walk(machine, instrument)


# ---- the moment a project falls into default ---------------------------------------------------

EVENTS = st.lists(st.tuples(st.sampled_from(["pay", "look"]), st.integers(0, 600),
                            st.integers(1, 3_000_000)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(months=st.integers(6, 14), repayment=st.sampled_from(["amortizing", "bullet"]),
       rate_bps=st.integers(1, 3000), events=EVENTS)
def test_a_loan_defaults_when_its_schedule_says(months, repayment, rate_bps, events) -> None:
    venue = Venue()
    project = venue.succeeded("debt", {
        "face_value": 10_000, "min_quantity": 1, "max_quantity": 100, "term_months": months,
        "repayment": repayment, "rate_bps": rate_bps, "lockup_days": 0}, [7, 11, 30])
    offerings = venue.offerings
    machine = venue.machine
    start = machine.now_us
    for kind, day, amount in events:
        machine.now_us = start + day * DAY_US  # a read at that moment (nothing applied)
        if kind == "pay":  # as Distribute records a repayment
            project.payments.append((machine.now_us, offerings.repaid(project) + amount))
        walked = any(offerings.instalment_status(project, i, machine.now_us) == "default"
                     for i in offerings.instalments(project))
        assert offerings.defaulted(project) == walked


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(months=st.integers(6, 9), buyback_price=st.integers(0, 3), events=EVENTS)
def test_operating_rights_default_when_a_month_or_the_buyback_does(months, buyback_price,
                                                                   events) -> None:
    venue = Venue()
    project = venue.succeeded("operating_rights", {
        "price": 100, "min_quantity": 1, "max_quantity": 1000, "term_months": months,
        "revenue_share_bps": 500, "buyback_price": buyback_price, "lockup_days": 0}, [5, 9])
    terms = venue.offerings.terms
    state = terms.states[project.project_id]
    machine = venue.machine
    start = machine.now_us
    for kind, day, amount in events:
        machine.now_us = start + day * DAY_US
        if kind == "pay":  # a month reported (any month of the term, once) or the buy-back
            unreported = [m for m in state.term.months()
                          if m not in {r.month for r in state.reports}]
            if unreported and amount % 4:
                month = unreported[amount % len(unreported)]
                state.reports.append(RevenueReport(month, amount, amount // 20,
                                                   machine.now_us))
            elif state.buyback_paid_us is None:
                state.buyback_paid_us = machine.now_us
        walked = any(orb.status(due, paid, machine.now_us) == orb.DEFAULT
                     for due, paid in terms._items(state))
        assert terms.in_default(project.project_id, machine.now_us) == walked
        assert terms.closed(project.project_id, machine.now_us) == (
            machine.now_us >= state.term.end_us)


# ---- money in bulk ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(credits=st.lists(st.tuples(st.integers(1, 9), st.integers(1, 10**12)), max_size=40),
       kind=st.sampled_from([mv.DISTRIBUTION, mv.SUBSCRIPTION_PAYMENT]),
       debit=st.integers(0, 9), sequence=st.integers(1, 10**9))
def test_a_bulk_credit_is_one_credit_cash_each(credits, kind, debit, sequence) -> None:
    one, bulk = StateMachine(), StateMachine()
    for machine in (one, bulk):
        for _ in range(9):
            machine.balances.add_account(1, 1)
        machine.last_sequence = sequence
        machine.movements.record(sequence, mv.DEPOSIT, 0, 1, mv.CASH, 5)  # ids go on from 2
    for account, amount in credits:
        one.credit_cash(account, amount, kind, debit)
    bulk.credit_cash_many([a for a, _ in credits], [m for _, m in credits], kind, debit)
    assert one.balances.accounts.live().tobytes() == bulk.balances.accounts.live().tobytes()
    assert one.movements.table.live().tobytes() == bulk.movements.table.live().tobytes()
    assert one.movements.next_id == bulk.movements.next_id


def test_a_bulk_credit_of_nothing_changes_nothing() -> None:
    machine = StateMachine()
    machine.balances.add_account(1, 1)
    with pytest.raises(ValueError, match="positive"):
        machine.credit_cash_many([1, 1], [5, 0], mv.DISTRIBUTION, 0)
    assert int(machine.balances.accounts.rows["cash_available"][1]) == 0
    assert machine.movements.table.count == 0


def test_a_movement_row_is_written_whole_field_by_field() -> None:
    log = mv.MovementLog()
    log.next_id = 41
    log.record(7, mv.TRADE_FEE, 3, 1, 0, 99)
    assert log.table.live().tolist() == [(7, 41, mv.TRADE_FEE, 3, 1, 0, 99)]
    row = log.table.live()[0]
    assert (row["sequence"], row["movement_id"], row["kind"], row["debit_account"],
            row["credit_account"], row["asset"], row["amount"]) == (7, 41, 5, 3, 1, 0, 99)


def test_a_movement_recorded_past_the_tables_room_grows_it() -> None:
    log = mv.MovementLog()
    log.table = Table(mv.MOVEMENT_DTYPE, 2)
    for n in range(5):
        log.record(n + 1, mv.DEPOSIT, mv.EXTERNAL_ACCOUNT, 4, mv.CASH, 10 + n)
    assert log.table.live()[["sequence", "movement_id", "amount"]].tolist() == [
        (n + 1, n + 1, 10 + n) for n in range(5)]


def test_a_new_position_row_names_its_account_and_instrument() -> None:
    machine = StateMachine()
    slot = machine.balances.position_slot(12, 34)
    row = machine.balances.positions.rows[slot]
    assert (row["account_id"], row["instrument_id"], row["units_available"],
            row["units_reserved"]) == (12, 34, 0, 0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(quantities=st.lists(st.integers(1, 60), min_size=1, max_size=14),
       cap=st.integers(1, 400))
def test_a_close_releases_and_refunds_each_subscription(quantities, cap) -> None:
    """The close settles every subscription's cash at once: each investor ends with what it had
    less what it was allocated, nothing reserved (an oversubscribed or a failed offering)."""
    venue = Venue()
    rows = venue.machine.balances.accounts.rows
    before = {n: int(rows["cash_available"][n]) for n in INVESTORS}
    project = venue.succeeded("equity", {"price": 70, "min_quantity": min(cap, 50),
                                         "max_quantity": cap, "lockup_days": 0}, quantities)
    paid = dict.fromkeys(INVESTORS, 0)
    for sub in venue.offerings.project_subscriptions(project.project_id):
        assert sub.reserved - sub.alloc_amount == sub.refunded
        paid[sub.account_id] += sub.alloc_amount
    for n in INVESTORS:
        assert int(rows["cash_available"][n]) == before[n] - paid[n]
        assert int(rows["cash_reserved"][n]) == 0


def _changing_instruments(venue: Venue) -> tuple:
    """A loan, an operating-rights project and an equity under lock-up, each succeeded: as the
    clock moves, lock-ups end, loans fall into default and terms end."""
    debt = venue.succeeded("debt", {
        "face_value": 10_000, "min_quantity": 1, "max_quantity": 100, "term_months": 6,
        "repayment": "amortizing", "rate_bps": 900, "lockup_days": 0}, [10, 20])
    rights = venue.succeeded("operating_rights", {
        "price": 100, "min_quantity": 1, "max_quantity": 1000, "term_months": 6,
        "revenue_share_bps": 500, "buyback_price": 0, "lockup_days": 0}, [5, 9])
    locked = venue.succeeded("equity", {"price": 100, "min_quantity": 1, "max_quantity": 500,
                                        "lockup_days": 30}, [4, 8])
    return debt, rights, locked


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 2_000_000)), min_size=1,
                      max_size=20))
def test_an_instruments_view_is_the_one_built_now(steps) -> None:
    """``instrument_info`` (kept per status, lock-up, default and close) is the view built
    afresh, as lock-ups end, loans fall into default and are repaid, and terms end."""
    venue = Venue()
    debt, rights, locked = _changing_instruments(venue)
    offerings = venue.offerings
    machine = venue.machine
    for days, repayment in steps:
        machine.now_us += days * DAY_US
        offerings.on_time()  # lock-ups end as the clock passes them
        if repayment % 3 == 0:
            debt.payments.append((machine.now_us, offerings.repaid(debt) + repayment))
        for project in (debt, rights, locked):
            assert offerings.instrument_info(project.project_id) == (
                offerings._instrument_info_now(project))


# ---- an instrument's rules checked again in each run ------------------------------------------


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.integers(0, 60), st.integers(0, 2_000_000)), min_size=1,
                      max_size=12))
def test_a_run_checks_the_rules_of_an_instrument_as_they_are_now(steps) -> None:
    """A run's orders take ``apply_run``'s fast way on an (instrument, side) that passed the
    rules in an earlier run only while the instrument's info is the same
    (``Markets._passes_again``): as lock-ups end, loans fall into default and are repaid and
    terms end, each run's sells get the rules' verdict of their own time."""
    venue = Venue()
    debt, rights, locked = _changing_instruments(venue)
    machine, offerings = venue.machine, venue.offerings
    markets = machine.component("markets")
    projects = (debt, rights, locked)
    for days, repayment in steps:
        machine.now_us += days * DAY_US
        offerings.on_time()
        if repayment % 3 == 0:
            debt.payments.append((machine.now_us, offerings.repaid(debt) + repayment))
        # Two sells of one unit a project, by its first two holders, at twice the offering's
        # price (in the band, and no bid: nothing trades).
        entries = [c.Entry(machine.now_us, INVESTORS[n], mc.PlaceOrder(
            project.project_id, "sell", "limit", 2 * price, 1, "ioc"))
            for project, price in zip(projects, (10_000, 100, 100), strict=True)
            for n in range(2)]
        expected = []
        for project in projects:
            try:
                markets._check_tradable(project.project_id, "sell")
                expected += [None, None]
            except CrowdexError as error:
                expected += [error.code, error.code]
        replies = machine.apply_batch(venue.sequence + 1, entries)
        venue.sequence += len(entries)
        got = [reply.body["error"]["code"] if reply.status >= 400 else None
               for reply in replies]
        assert got == expected
