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

from boards import rules
from engine import lifecycle as lifecycle_module
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine import state
from engine.machine import StateMachine
from engine.offerings import subscription_view
from tests.engine.test_retail_committed import (
    INVESTORS,
    ISSUER,
    OPERATOR,
    _apply,
    _list,
    _venue,
    drive,
    steps,
)

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


def test_a_recovery_makes_the_index_before_the_first_read(monkeypatch) -> None:
    """``StateMachine.warm_reads`` (a recovery's end) takes every subscription in, and every
    position, so no client's read pays for a whole replay's."""
    monkeypatch.setattr(state, "HOLDINGS_SCAN_MAX", 0)
    monkeypatch.setattr(lifecycle_module, "ORDERS_SCAN_MAX", 0)
    machine = _venue()
    offerings = machine.component("offerings")
    project = _list(machine, "equity")
    for investor in INVESTORS:
        _apply(machine, investor, oc.Subscribe(project, 10))
    _apply(machine, OPERATOR, oc.CloseProject(project))  # 30 units: it succeeds
    assert offerings.projects[project].status == rules.TRADING  # lockup_days 0
    price = offerings.instrument_info(project).reference_price_fen
    _apply(machine, INVESTORS[0], mc.PlaceOrder(project, "sell", "limit", price, 1))
    lifecycle = machine.component("markets").lifecycle
    assert lifecycle.next_oid > 1 and lifecycle._by_account.indexed == 0
    machine.warm_reads()
    assert offerings._by_account_upto == offerings.next_subscription_id == 4
    assert machine.balances._holdings_index.indexed == machine.balances.positions.count > 0
    assert lifecycle._by_account.indexed == lifecycle.next_oid
