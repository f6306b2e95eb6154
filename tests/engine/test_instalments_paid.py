"""What each instalment of a loan has had paid, and when it was paid in full, given for the
whole schedule in one pass (``Offerings.instalments_paid``), is what the rule gives instalment
by instalment: repayments cover the oldest unpaid instalment first, so an instalment has had
paid what the repayments exceed the instalments before it by (at most its amount), and is
paid in full at the first repayment that brings the total to it and every one before it.
The integrity list and the borrower cap read it for every loan."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from boards import rules
from engine.offerings import Offerings, Project

EXAMPLES = 2000 if os.environ.get("CROWDEX_SLOW") else 200
CLOSED_US = 1_767_225_600_000_000  # 2026-01-01


def _by_rule(project: Project, offerings: Offerings) -> list[tuple[int, int | None]]:
    """Instalment by instalment, as the rule says."""
    repaid = project.payments[-1][1] if project.payments else 0
    out, schedule = [], offerings.instalments(project)
    for number, instalment in enumerate(schedule):
        before = sum(i.amount_fen for i in schedule[:number])
        through = before + instalment.amount_fen
        paid = min(instalment.amount_fen, max(0, repaid - before))
        when = next((t for t, cumulative in project.payments if cumulative >= through), None)
        out.append((paid, when))
    return out


@settings(max_examples=EXAMPLES, deadline=None)
@given(raised=st.integers(1, 10_000_000), rate_bps=st.integers(0, 3000),
       months=st.integers(1, 36), repayment=st.sampled_from(["amortizing", "bullet"]),
       totals=st.lists(st.tuples(st.integers(0, 36), st.integers(-2, 2)), max_size=40),
       status=st.sampled_from([rules.SUCCEEDED, rules.TRADING, rules.FAILED]))
def test_every_instalments_payment_is_the_rules(raised, rate_bps, months, repayment, totals,
                                                status):
    """``totals``: what the repayments have paid in all after each, as the total due through
    an instalment (k: the first k) and a few fen either side of it (repayments may fall
    short, pay instalments exactly, overpay, or pay more than the loan)."""
    project = Project(1, "debt", 2, "t", "d", CLOSED_US,
                      {"term_months": months, "repayment": repayment, "rate_bps": rate_bps},
                      status, CLOSED_US, closed_us=CLOSED_US, raised=raised, rate_bps=rate_bps)
    offerings = Offerings(None)
    through = [0]
    for instalment in offerings.instalments(project):
        through.append(through[-1] + instalment.amount_fen)
    paid = sorted({through[min(k, len(through) - 1)] + fen for k, fen in totals} - {0})
    for n, total in enumerate(t for t in paid if t > 0):
        project.payments.append((CLOSED_US + (n + 1) * 86_400_000_000, total))
    got = offerings.instalments_paid(project)
    assert got == _by_rule(project, offerings)
    for instalment in offerings.instalments(project):
        assert offerings.instalment_paid(project, instalment) == got[instalment.number - 1]
