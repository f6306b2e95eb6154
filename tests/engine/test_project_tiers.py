"""A pledge's tiers as its view shows them (sold, remaining) are what its subscriptions say:
while it is open, what its live subscriptions take; after, what was allocated on each tier,
now kept per closed project (``Offerings._allocated_by_tier``) instead of walked per tier.

The venue of ``test_retail_committed`` (pledges on tier "a" and equity offerings, listed,
subscribed, cancelled, closed as they succeed or fail, a snapshot's load) is read after every
step.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from boards import rules
from engine import offerings_commands as oc
from engine.machine import StateMachine
from engine.offerings import LIVE
from tests.engine.test_retail_committed import (
    DAY_US,
    INVESTORS,
    ISSUER,
    OPERATOR,
    PRICE,
    _apply,
    _venue,
    drive,
    steps,
)

EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 100


def _walked(machine: StateMachine, project_id: int, tier_id: object) -> int:
    """Units a tier has sold, read off every subscription."""
    offerings = machine.component("offerings")
    project = offerings.projects[project_id]
    subs = [s for s in offerings.subscriptions.values()
            if s.project_id == project_id and s.tier_id == tier_id]
    if project.status == rules.OPEN:
        return sum(s.quantity for s in subs if s.status == LIVE)
    return sum(s.alloc_quantity for s in subs)


def _check(machine: StateMachine) -> None:
    offerings = machine.component("offerings")
    for project in offerings.projects.values():
        if project.board != "product":
            continue
        tiers = offerings.project_view(project)["tiers"]
        assert [t["tier_id"] for t in tiers] == [t["tier_id"] for t in project.terms["tiers"]]
        for tier, terms in zip(tiers, project.terms["tiers"], strict=True):
            sold = _walked(machine, project.project_id, tier["tier_id"])
            assert tier["sold"] == sold, (project.project_id, project.status)
            assert tier["remaining"] == (None if terms["quantity"] is None
                                         else terms["quantity"] - sold)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=steps, reload=st.integers(0, 80))
def test_a_pledges_tiers_are_its_subscriptions(steps: list[tuple], reload: int) -> None:
    drive(steps, reload, _check)


def test_a_pledge_read_before_it_opened_shows_what_was_allocated_after_its_close() -> None:
    """Read while pending review (nothing sold), then open, pledged and closed: the view
    shows the allocation, not what it showed before the pledge opened."""
    machine = _venue()
    offerings = machine.component("offerings")
    terms = {"goal": PRICE, "tiers": [{"tier_id": "a", "price": PRICE, "quantity": 10},
                                      {"tier_id": "b", "price": PRICE, "quantity": None}]}
    _apply(machine, ISSUER, oc.CreateProject("product", "p", "x", machine.now_us + 30 * DAY_US,
                                             terms))
    project = offerings.projects[1]
    assert [t["sold"] for t in offerings.project_view(project)["tiers"]] == [0, 0]
    _apply(machine, OPERATOR, oc.ReviewProject(1, True))
    _apply(machine, INVESTORS[0], oc.Subscribe(1, 4, tier_id="a"))
    _apply(machine, INVESTORS[1], oc.Subscribe(1, 3, tier_id="a"))
    assert [t["sold"] for t in offerings.project_view(project)["tiers"]] == [7, 0]
    _apply(machine, OPERATOR, oc.CloseProject(1))
    assert project.status == rules.SUCCEEDED
    tiers = offerings.project_view(project)["tiers"]
    assert [(t["sold"], t["remaining"]) for t in tiers] == [(7, 3), (0, None)]
    _check(machine)
