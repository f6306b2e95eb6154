"""``OperatingTerms``: the clock's next event and the fall into default, answered from the
unpaid months' default times kept per project (``_unpaid_defaults``), are the walk over the
term's months that the rule states, for any reports, buy-back, handled time and closing."""

from __future__ import annotations

import types

from hypothesis import given, settings
from hypothesis import strategies as st

from boards import operating_rights as orb
from engine.operating_terms import OperatingTerms, RevenueReport, TermState

FIRST = orb.month_index(1_767_225_600_000_000)  # 2026-01


def walked_next_event(state: TermState) -> int | None:
    """The rule as written: the default times of the unpaid months and buy-back after the
    handled time, and the end of the term while it is open; the earliest."""
    paid = {r.month: r.time_us for r in state.reports}
    items = [(orb.due_us(month), paid.get(month)) for month in state.term.months()]
    items.append((state.term.buyback_due_us, state.buyback_paid_us))
    times = [orb.default_from_us(due) for due, when in items if when is None]
    times = [t for t in times if t > state.handled_us]
    if not state.closed:
        times.append(state.term.end_us)
    return min(times) if times else None


def walked_default(state: TermState, now_us: int) -> bool:
    paid = {r.month: r.time_us for r in state.reports}
    dues = [orb.due_us(m) for m in state.term.months() if paid.get(m) is None]
    if state.buyback_paid_us is None:
        dues.append(state.term.buyback_due_us)
    return any(now_us >= orb.default_from_us(due) for due in dues)


MONTH_US = 31 * 86_400 * 1_000_000


@settings(max_examples=200, deadline=None)
@given(months=st.integers(1, 8), steps=st.lists(st.tuples(
    st.sampled_from(["report", "buyback", "handle", "handled_at_default", "close", "ask"]),
    st.integers(0, 9),
    st.integers(0, 16)), max_size=25))
def test_events_and_default_are_the_walk(months, steps) -> None:
    terms = OperatingTerms(types.SimpleNamespace(machine=None))
    state = TermState(7, FIRST, months, 1_000)
    terms.states[7] = state
    terms.watch(state)
    for what, month, at in steps:
        now = orb.month_start_us(FIRST) + at * MONTH_US
        if what == "report" and month < months and all(r.month != FIRST + month
                                                       for r in state.reports):
            state.reports.append(RevenueReport(FIRST + month, 1, 1, now))
        elif what == "buyback" and state.buyback_paid_us is None:
            state.buyback_paid_us = now
        elif what == "handle":
            state.handled_us = max(state.handled_us, now)
        elif what == "handled_at_default":  # handled exactly when a month falls into default
            at_default = orb.default_from_us(orb.due_us(FIRST + month))
            state.handled_us = max(state.handled_us, at_default)
        elif what == "close":
            state.closed = True
        terms.watch(state)  # as the component does after each change of a term
        assert terms._next_event(state) == walked_next_event(state)
        assert terms.next_event_us() == walked_next_event(state)
        assert terms.in_default(7, now) == walked_default(state, now)
