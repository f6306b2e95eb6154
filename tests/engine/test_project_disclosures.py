"""A project's disclosures, read from the index by project that ``Offerings`` keeps as they are
posted (``project_disclosures``: GET /v1/projects/{id}/disclosures, the integrity list, the
limit per project), are the walk over every disclosure of the venue: the same ones, oldest
first, before and after a snapshot's load; and the limit per project refuses exactly when the
walk counts it full."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import offerings
from engine import offerings_commands as oc
from engine.machine import StateMachine
from tests.engine.test_retail_committed import ISSUER, _apply, _list, _venue

EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 100


def _walked(machine: StateMachine, project_id: int) -> list:
    return [d for d in machine.component("offerings").disclosures.values()
            if d.project_id == project_id]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=st.lists(st.one_of(st.tuples(st.just("post"), st.integers(0, 3)),
                               st.tuples(st.just("reload"))), max_size=30),
       most=st.integers(1, 4))
def test_a_projects_disclosures_are_the_walk(plan: list[tuple], most: int) -> None:
    kept = offerings.DISCLOSURES_PER_PROJECT_MAX
    offerings.DISCLOSURES_PER_PROJECT_MAX = most
    try:
        machine = _venue()
        projects = [_list(machine, "equity"), _list(machine, "product"),
                    _list(machine, "equity"), 99]  # 99: no such project
        for step in plan:
            if step[0] == "post":
                project = projects[step[1]]
                full = len(_walked(machine, project)) >= most
                before = len(machine.component("offerings").disclosures)
                _apply(machine, ISSUER, oc.PostDisclosure(project, "t", "b"))
                posted = len(machine.component("offerings").disclosures) - before
                assert posted == (0 if full or project == 99 else 1)
            else:
                loaded = StateMachine()
                loaded.load(machine.arrays(), machine.meta())
                assert loaded.state_hash() == machine.state_hash()
                machine = loaded
            for project in projects:
                assert (machine.component("offerings").project_disclosures(project)
                        == _walked(machine, project))
    finally:
        offerings.DISCLOSURES_PER_PROJECT_MAX = kept
