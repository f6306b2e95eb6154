"""The operating-rights board after its close: revenue reports, the schedule of months and the
buy-back, late and default by the exchange clock, the end of the term, and the units' cancellation.

A part of the offerings component (``Offerings.terms``), kept in its snapshot: one ``TermState``
per succeeded operating-rights project. ``boards/operating_rights.py`` decides the calendar and
the arithmetic; this module keeps the state and moves the money the way distributions do.

- A revenue report debits what the month owes from the issuer's available cash into its escrow
  at once, as a pending distribution; the settlement batch's ``PrepareSettlement`` pays it to the
  holders of record less the admin fee (``Offerings._pay``: largest remainder, ties to the lower
  account id).
- The buy-back is a distribution of exactly ``buyback_price × units outstanding``. The batch pays
  every holder in full (``movements.BUYBACK``, no fee) and cancels the units
  (``movements.UNITS_CANCELLED``), so the ledger and ``units_issued`` both come to zero. Who held
  them then is kept: a month reported after the cancellation is paid to them.
- Time fires effects from ``on_time``, at the first entry stamped at or past them, so a replay
  gives the same state: at the end of the term the instrument closes (resting orders and cn2015
  offers are cancelled; new ones are ``instrument_closed``), and when the project falls into
  default its resting sell orders and sell offers are cancelled, since defaulted units cannot be
  sold. ``late`` and ``default`` themselves are read from the clock, like debt instalments.
"""

from __future__ import annotations

import bisect
import heapq
from typing import Any

import msgspec

from boards import operating_rights as orb
from boards.equity import MAX_SAFE
from engine import movements as mv
from engine import offerings_commands as oc
from engine.clock import format_time_us
from engine.errors import CrowdexError
from engine.machine import Reply

DEFAULT_FROM_CACHED_MAX = 100_000  # derived default times kept (a cache: cleared when full)
SIDES_ALL = ("buy", "sell")
SIDES_SELL = ("sell",)


class RevenueReport(msgspec.Struct, array_like=True):
    month: int  # a month index (boards.operating_rights)
    revenue: int
    owed: int
    time_us: int  # when it was reported, and paid into the issuer's escrow
    distribution_id: int = 0  # the pending payment to holders; 0 when nothing was owed


class TermState(msgspec.Struct, array_like=True):
    project_id: int
    first_month: int
    months: int
    buyback_owed: int  # buyback_price × units outstanding (none are cancelled before the end)
    reports: list[RevenueReport] = msgspec.field(default_factory=list)
    handled_us: int = 0  # the clock's effects are applied up to this time
    closed: bool = False  # the end of the term has closed the instrument
    buyback_paid_us: int | None = None  # when the issuer paid the buy-back into escrow
    buyback_distribution_id: int = 0
    units_cancelled: int = 0
    # (account, units) of the holders whose units the buy-back cancelled.
    final_holders: list[tuple[int, int]] = msgspec.field(default_factory=list)

    @property
    def term(self) -> orb.Term:
        return orb.Term(self.first_month, self.months)


class OperatingTerms:
    """The operating-rights part of the offerings component (see the module docstring)."""

    def __init__(self, offerings: Any) -> None:
        self.offerings = offerings
        self.states: dict[int, TermState] = {}
        # Derived from the states, never state: the end of each term, and when each project
        # falls into default as its payments stand (see in_default).
        self._ends: dict[tuple[int, int], int] = {}
        self._default_from: dict[tuple, tuple[int, ...]] = {}  # see _unpaid_defaults
        # Each term's next event (``_next_event``) as (time_us, project_id) in a heap (an
        # index, rebuilt on load): ``on_time`` and ``next_event_us`` walked every term ever
        # begun at each deadline. A term's entry is pushed again whenever its next event may
        # have moved (``watch``); an entry that is no longer the term's next event is dropped
        # when it reaches the top.
        self._events: list[tuple[int, int]] = []

    @property
    def machine(self) -> Any:
        return self.offerings.machine

    def is_board(self, project: Any) -> bool:
        return isinstance(self.offerings.board(project), orb.OperatingRightsBoard)

    def start(self, project: Any) -> int | None:
        """At an offering's success: its term begins; returns when the clock next matters."""
        if not self.is_board(project):
            return None
        state = TermState(project.project_id, orb.first_month(project.closed_us),
                          project.terms["term_months"],
                          project.terms["buyback_price"] * project.subscribed_quantity,
                          handled_us=project.closed_us)
        self.states[project.project_id] = state
        self.watch(state)
        return self._next_event(state)

    # ---- commands -------------------------------------------------------------------------------

    def report(self, cmd: oc.ReportRevenue, actor: int) -> Reply:
        """``POST /v1/projects/{id}/revenue``: a month's revenue, and what it owes, paid now."""
        offerings = self.offerings
        offerings._require_role(actor, "issuer")
        project = offerings._own_project(cmd.project_id, actor)
        state = self._state(project, "takes no revenue reports")
        try:
            month = orb.parse_month(cmd.month)
        except ValueError as error:
            raise CrowdexError("invalid_field", f"month: {error}") from None
        if not 0 <= cmd.revenue <= MAX_SAFE:
            raise CrowdexError("invalid_field", f"revenue must be 0 to {MAX_SAFE} fen")
        term = state.term
        # A month outside the term is no month of this schedule at all, so that comes first,
        # even for a month that is not over yet.
        if month not in term:
            raise CrowdexError("not_in_term", f"the term runs from {orb.month_text(term.first)} "
                               f"to {orb.month_text(term.last)}")
        if any(r.month == month for r in state.reports):
            raise CrowdexError("already_reported", f"{cmd.month} is already reported")
        now = self.machine.now_us
        if now < orb.month_start_us(month + 1):
            raise CrowdexError("month_not_over", f"{cmd.month} is not over yet")
        owed = orb.owed_fen(cmd.revenue, project.terms["revenue_share_bps"])
        distribution_id = 0
        if owed:  # 422 insufficient_funds here leaves the month unreported and unpaid
            distribution_id = offerings.escrow_payment(project, actor, owed).distribution_id
        state.reports.append(RevenueReport(month, cmd.revenue, owed, now, distribution_id))
        self.watch(state)
        return Reply(201, self._month_row(state, month, now))

    def pay_buyback(self, project: Any, amount: int, actor: int) -> Any:
        """``POST /v1/projects/{id}/distributions`` on this board: the buy-back, exactly, into
        escrow; returns its pending distribution."""
        state = self._state(project, "pays no buy-back")
        end = state.term.end_us
        if self.machine.now_us < end:
            raise CrowdexError("invalid_state",
                               f"the buy-back falls due at the end of the term, "
                               f"{format_time_us(end)}")
        if state.buyback_paid_us is not None:
            raise CrowdexError("invalid_state", "the buy-back is already paid")
        if amount != state.buyback_owed:
            raise CrowdexError("amount_mismatch",
                               f"the buy-back is {state.buyback_owed} fen, exactly")
        dist = self.offerings.escrow_payment(project, actor, amount)
        state.buyback_paid_us = self.machine.now_us
        state.buyback_distribution_id = dist.distribution_id
        self.watch(state)
        return dist

    def _state(self, project: Any, refusal: str) -> TermState:
        if not self.is_board(project):
            raise CrowdexError("invalid_state", f"the {project.board} board {refusal}")
        state = self.states.get(project.project_id)
        if state is None:
            raise CrowdexError("invalid_state", "the term begins when the offering succeeds")
        return state

    # ---- paying at the settlement batch ---------------------------------------------------------

    def is_buyback(self, dist: Any) -> bool:
        state = self.states.get(dist.project_id)
        return state is not None and state.buyback_distribution_id == dist.distribution_id

    def final_holders(self, project_id: int) -> list[tuple[int, int]]:
        """The holders whose units the buy-back cancelled (none before it)."""
        state = self.states.get(project_id)
        return list(state.final_holders) if state is not None else []

    def pay_out_buyback(self, dist: Any, project: Any) -> None:
        """Pay every holder ``buyback_price`` a unit in full and cancel the units."""
        machine = self.machine
        state = self.states[project.project_id]
        instrument = project.project_id
        holders = self.offerings.holders(instrument)
        price = project.terms["buyback_price"]
        units_total = sum(units for _, units in holders)
        # Invariants, checked before anything changes: a failure here is a bug, and stopping
        # is better than paying the wrong amounts.
        if price * units_total != dist.amount:
            raise RuntimeError(f"project {instrument}: the buy-back of {dist.amount} fen does "
                               f"not pay {units_total} units at {price}")
        self._cancel_resting(instrument, SIDES_ALL)  # nothing may hold units in an order
        issuer = project.issuer_id
        machine.balances.accounts.rows[issuer]["cash_reserved"] -= dist.amount
        positions = machine.balances.positions.rows
        for account, units in holders:
            position = positions[machine.balances.position_slots[(account, instrument)]]
            if int(position["units_reserved"]):
                raise RuntimeError(f"project {instrument}: account {account} still has units "
                                   "reserved after its orders and offers were cancelled")
            if price:
                machine.credit_cash(account, price * units, mv.BUYBACK, issuer)
            position["units_available"] -= units
            machine.movements.record(machine.last_sequence, mv.UNITS_CANCELLED, account,
                                     mv.EXTERNAL_ACCOUNT, instrument, units)
        dist.status = "paid"
        dist.paid_sequence = machine.last_sequence
        dist.holders = len(holders)
        state.units_cancelled += units_total
        state.final_holders = holders

    # ---- reads ----------------------------------------------------------------------------------

    def units_cancelled(self, project_id: int) -> int:
        state = self.states.get(project_id)
        return state.units_cancelled if state is not None else 0

    def closed(self, project_id: int, now_us: int) -> bool:
        """Whether the instrument has stopped trading: from the end of its term."""
        state = self.states.get(project_id)
        return state is not None and now_us >= self._end_us(state)

    def _end_us(self, state: TermState) -> int:
        # Asked for every run of orders; the calendar arithmetic is done once per term.
        key = (state.first_month, state.months)
        end = self._ends.get(key)
        if end is None:
            end = self._ends[key] = state.term.end_us
        return end

    def in_default(self, project_id: int, now_us: int) -> bool:
        """The project is in default while any month or the buy-back is: from the moment the
        first unpaid one is ``DEFAULT_AFTER_DUE_DAYS`` overdue (``orb.status``)."""
        state = self.states.get(project_id)
        if state is None:
            return False
        unpaid = self._unpaid_defaults(state)
        return bool(unpaid) and now_us >= unpaid[0]

    def _unpaid_defaults(self, state: TermState) -> tuple[int, ...]:
        """When each unpaid month and an unpaid buy-back fall into default, earliest first.

        Only a report or the buy-back's payment changes which are unpaid, so the times are kept
        per their count and the buy-back's time: the months' calendar is not walked for every
        run of orders (``in_default``) nor for every project at each ``on_time``."""
        key = (state.project_id, state.first_month, state.months, len(state.reports),
               state.buyback_paid_us)
        found = self._default_from.get(key)
        if found is None:
            found = tuple(sorted(orb.default_from_us(due) for due, paid in self._items(state)
                                 if paid is None))
            if len(self._default_from) >= DEFAULT_FROM_CACHED_MAX:
                self._default_from.clear()
            self._default_from[key] = found
        return found

    def _items(self, state: TermState) -> list[tuple[int, int | None]]:
        """``(due, paid_us or None)`` of every month of the term, then of the buy-back."""
        paid = {r.month: r.time_us for r in state.reports}
        items = [(orb.due_us(month), paid.get(month)) for month in state.term.months()]
        items.append((state.term.buyback_due_us, state.buyback_paid_us))
        return items

    def schedule(self, project: Any, now_us: int) -> list[dict]:
        """``GET /v1/projects/{id}/schedule``: the months, then the buy-back (none before the
        offering succeeds)."""
        state = self.states.get(project.project_id)
        if state is None:
            return []
        rows = [self._month_row(state, month, now_us) for month in state.term.months()]
        due = state.term.buyback_due_us
        paid = state.buyback_paid_us
        rows.append({"buyback": True, "due": format_time_us(due), "owed": state.buyback_owed,
                     "paid": state.buyback_owed if paid is not None else 0,
                     "status": orb.status(due, paid, now_us)})
        return rows

    def _month_row(self, state: TermState, month: int, now_us: int) -> dict:
        report = next((r for r in state.reports if r.month == month), None)
        due = orb.due_us(month)
        return {"month": orb.month_text(month), "due": format_time_us(due),
                "revenue": report.revenue if report else None,
                "owed": report.owed if report else None,
                "paid": report.owed if report else 0,
                "status": orb.status(due, report.time_us if report else None, now_us)}

    def view(self, project: Any, now_us: int) -> dict:
        """What a project view adds for this board once its term has begun."""
        state = self.states.get(project.project_id)
        if state is None:
            return {}
        term = state.term
        return {"first_month": orb.month_text(term.first),
                "last_month": orb.month_text(term.last),
                "term_end": format_time_us(term.end_us),
                "buyback_due": format_time_us(term.buyback_due_us),
                "units_outstanding": project.subscribed_quantity - state.units_cancelled,
                "in_default": self.in_default(project.project_id, now_us),
                "instrument_closed": now_us >= term.end_us}

    # ---- the integrity list ---------------------------------------------------------------------

    def watches(self, project: Any) -> bool:
        return project.project_id in self.states

    def owes_during(self, project_id: int, start_us: int) -> bool:
        """Whether the issuer still owed something of this project when a month began."""
        state = self.states[project_id]
        return any(paid is None or paid >= start_us for _, paid in self._items(state))

    def breaches(self, project_id: int, start_us: int, end_us: int) -> list[str]:
        """Why this project puts its issuer on the black list for ``[start_us, end_us)``."""
        state = self.states[project_id]
        out = []
        items = self._items(state)
        names = [f"revenue for {orb.month_text(m)}" for m in state.term.months()] + ["buy-back"]
        for (due, paid), name in zip(items, names, strict=True):
            worst = orb.overdue_during(due, paid, start_us, end_us)
            if worst == orb.DEFAULT:
                out.append(f"{name} in default on project {project_id}")
            elif worst == orb.LATE:
                out.append(f"{name} late on project {project_id}")
        return out

    # ---- the clock ------------------------------------------------------------------------------

    def _next_event(self, state: TermState) -> int | None:
        """When the clock next changes what this project allows: the end of the term, or the
        moment an unpaid month or the buy-back falls into default."""
        unpaid = self._unpaid_defaults(state)
        later = bisect.bisect_right(unpaid, state.handled_us)  # the first after handled_us
        times = unpaid[later:later + 1]
        if not state.closed:
            times += (self._end_us(state),)
        return min(times) if times else None

    def watch(self, state: TermState) -> None:
        """Index the term's next event, after anything it depends on changed (its reports,
        its buy-back, its handled time or its close)."""
        event = self._next_event(state)
        if event is not None:
            heapq.heappush(self._events, (event, state.project_id))

    def _is_next(self, entry: tuple[int, int]) -> bool:
        return self._next_event(self.states[entry[1]]) == entry[0]

    def next_event_us(self) -> int | None:
        events = self._events
        while events and not self._is_next(events[0]):
            heapq.heappop(events)
        return events[0][0] if events else None

    def on_time(self) -> None:
        """Apply what the clock has brought: the end of a term, a fall into default; to each
        term whose next event has come, by project id."""
        now = self.machine.now_us
        events, due = self._events, set()
        while events and events[0][0] <= now:
            entry = heapq.heappop(events)
            if self._is_next(entry):
                due.add(entry[1])
        for project_id in sorted(due):
            state = self.states[project_id]
            if not state.closed and now >= state.term.end_us:
                self._close_term(state)
            elif self.in_default(project_id, now):
                self._cancel_resting(project_id, SIDES_SELL)
            state.handled_us = now
            self.watch(state)
            # Watchers of the project see it close or fall into default (output, not state).
            self.offerings._publish(self.offerings.projects[project_id])

    def _close_term(self, state: TermState) -> None:
        """The end of the term: the instrument stops trading, and a buy-back of nothing (a
        ``buyback_price`` of 0) is paid by itself, so the next batch cancels the units."""
        state.closed = True
        self._cancel_resting(state.project_id, SIDES_ALL)
        if state.buyback_paid_us is None and state.buyback_owed == 0:
            project = self.offerings.projects[state.project_id]
            dist = self.offerings.escrow_payment(project, project.issuer_id, 0)
            state.buyback_paid_us = state.term.end_us
            state.buyback_distribution_id = dist.distribution_id

    def _cancel_resting(self, instrument_id: int, sides: tuple[str, ...]) -> None:
        self.machine.component("markets").cancel_resting(instrument_id, sides)
        self.machine.component("offers").cancel_open(instrument_id, sides)

    # ---- snapshots ------------------------------------------------------------------------------

    def meta(self) -> list[TermState]:
        return [self.states[k] for k in sorted(self.states)]

    def load(self, states: list[TermState]) -> None:
        self.states = {s.project_id: s for s in states}
        self._events = []
        for state in states:
            self.watch(state)
