"""The open offers (``GET /v1/offers``, of one instrument or of all, oldest first), read from
the open offers by instrument that ``Offers`` keeps, are the walk over every offer kept: the
same ones in the same order, as offers are posted, partly and wholly taken, cancelled, and
after a snapshot's load.

A cn2015 venue of two equity instruments: three qualified holders, allocated at the start and
past T+5, post buy and sell offers on either, take each other's, cancel their own.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine import offerings_commands as oc
from engine import offers_commands as xc
from engine.machine import StateMachine
from engine.offers import OPEN
from tests.engine.test_retail_committed import DAY_US, START_US, _apply

EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 100
OPERATOR, ISSUER, HOLDERS = 2, 3, [4, 5, 6]
PRICE = 10_00


def _venue() -> tuple[StateMachine, list[int]]:
    machine = StateMachine()
    _apply(machine, 0, c.Genesis("h", True, START_US, "cn2015", c.RULES_VERSION))
    _apply(machine, OPERATOR, c.CreateAccount("issuer", "issuer", "kis"))
    for n, account in enumerate(HOLDERS):
        _apply(machine, OPERATOR, c.CreateAccount("investor", f"h{n}", f"k{n}", "qualified"))
        _apply(machine, OPERATOR, c.Deposit(account, 100_000_000, f"d{n}"))
    instruments = []
    for n in range(2):
        project = machine.component("offerings").next_project_id
        terms = {"price": PRICE, "min_quantity": 1, "max_quantity": 100_000, "lockup_days": 0}
        _apply(machine, ISSUER, oc.CreateProject("equity", f"p{n}", "x",
                                                 machine.now_us + 30 * DAY_US, terms))
        _apply(machine, OPERATOR, oc.ReviewProject(project, True))
        for holder in HOLDERS:
            _apply(machine, holder, oc.Subscribe(project, 1000))
        _apply(machine, OPERATOR, oc.CloseProject(project))
        instruments.append(project)
    _apply(machine, OPERATOR, c.AdvanceClock(10 * 86_400))  # past T+5
    return machine, instruments


def _walked(machine: StateMachine, instrument_id: int | None) -> list:
    return [o for o in machine.component("offers").offers.values() if o.status == OPEN
            and (instrument_id is None or o.instrument_id == instrument_id)]


steps = st.lists(st.one_of(
    st.tuples(st.just("post"), st.integers(0, 2), st.integers(0, 1),
              st.sampled_from(["buy", "sell"]), st.integers(1, 5)),
    st.tuples(st.just("accept"), st.integers(0, 2), st.integers(0, 30), st.integers(1, 5)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("reload"))), max_size=40)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(plan=steps)
def test_the_open_offers_are_the_walk(plan: list[tuple]) -> None:
    machine, instruments = _venue()
    for step in plan:
        offers = machine.component("offers")
        kept = list(offers.offers.values())
        if step[0] == "post":
            _, who, which, side, quantity = step
            _apply(machine, HOLDERS[who], xc.PostOffer(instruments[which], side, PRICE, quantity))
        elif step[0] == "accept" and kept:
            _, who, which, quantity = step
            _apply(machine, HOLDERS[who], xc.AcceptOffer(kept[which % len(kept)].offer_id,
                                                         quantity))
        elif step[0] == "cancel" and kept:
            offer = kept[step[1] % len(kept)]
            _apply(machine, offer.account_id, xc.CancelOffer(offer.offer_id))
        elif step[0] == "reload":
            loaded = StateMachine()
            loaded.load(machine.arrays(), machine.meta())
            assert loaded.state_hash() == machine.state_hash()
            machine = loaded
        offers = machine.component("offers")
        for instrument in [None, *instruments, 99]:
            assert offers.open_offers(instrument) == _walked(machine, instrument), instrument
