"""An account's subscriptions, read from the index ``Offerings.account_subscriptions`` keeps,
are the walk over every subscription: the same ones in the same order (``GET
/v1/me/subscriptions``, API.md's order), whenever they are read.

The venue of ``test_retail_committed`` (subscriptions on equity offerings and product pledges,
cancels, closes, the clock past deadlines, a snapshot's load) is read after some steps and not
after others, so reads find the index current, behind by many subscriptions, or new after a
load.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.machine import StateMachine
from engine.offerings import subscription_view
from tests.engine.test_retail_committed import INVESTORS, ISSUER, drive, steps

EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 100


def _walked(machine: StateMachine, account: int) -> list[dict]:
    """The account's subscriptions by a walk over every one: what the index must give."""
    return [subscription_view(s)
            for s in machine.component("offerings").subscriptions.values()
            if s.account_id == account]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(steps=steps, reload=st.integers(0, 80), reads=st.lists(st.booleans(), max_size=90))
def test_an_accounts_subscriptions_are_the_walk(steps: list[tuple], reload: int,
                                                 reads: list[bool]) -> None:
    asked = iter(reads)

    def check(machine: StateMachine) -> None:
        if not next(asked, True):
            return
        offerings = machine.component("offerings")
        for account in [*INVESTORS, ISSUER, 99]:
            got = [subscription_view(s) for s in offerings.account_subscriptions(account)]
            assert got == _walked(machine, account), account

    drive(steps, reload, check)
