"""What a live batch's run of orders may take for granted after its first order, and what it
must not: an order is queued without its checks (``Markets.apply_run``'s fast path) only where
an earlier order of the run passed the same instrument and side's rules, by an account known
to be an investor; and the updates a run publishes are those someone listens to, no more."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.machine import StateMachine
from tests.engine.test_markets_runs import EXAMPLES, START_US, _applied, _entry, _venue, flows

PRICE = 10_00


def _locked_venue() -> tuple[StateMachine, list[c.Entry], list[int]]:
    """Two traders holding units of instrument 1 (trading) and 2 (still locked up)."""
    entries = [c.Entry(START_US, 0, c.Genesis("h", True, START_US, "intl", c.RULES_VERSION)),
               c.Entry(START_US, 0, c.CreateAccount("issuer", "issuer", "kis"))]
    traders = [4, 5]
    for n, account in enumerate(traders):
        entries.append(c.Entry(START_US, 0, c.CreateAccount(
            "investor", f"t{n}", f"k{n}", investor_class="institutional")))
        entries.append(c.Entry(START_US, 0, c.Deposit(account, 10**9, f"d{n}")))
    for project, lockup_days in ((1, 0), (2, 30)):
        terms = {"price": PRICE, "min_quantity": 1, "max_quantity": 10_000,
                 "lockup_days": lockup_days}
        entries.append(c.Entry(START_US, 3, oc.CreateProject(
            "equity", f"p{project}", "x", START_US + 30 * 86_400_000_000, terms)))
        entries.append(c.Entry(START_US, 2, oc.ReviewProject(project, True)))
        for account in traders:
            entries.append(c.Entry(START_US, account, oc.Subscribe(project, 1000)))
        entries.append(c.Entry(START_US, 2, oc.CloseProject(project)))
    return StateMachine(), entries, traders


def test_an_instrument_refused_to_one_order_of_a_run_is_refused_to_the_next():
    """Both traders are investors with a book open on instrument 1 (the fast path's other
    conditions hold), and hold units of instrument 2: each order on 2 is refused as locked
    up, in a run as one at a time."""
    flow = []
    for side in ("sell", "buy"):
        for account in (4, 5, 4, 5):
            flow.append((account, 1, side))
            flow.append((account, 2, side))
    results = []
    for cuts in (None, []):
        machine, setup, _ = _locked_venue()
        for i, entry in enumerate(setup):
            machine.apply(i + 1, entry)
        entries = [c.Entry(START_US, account, mc.PlaceOrder(instrument, side, "limit",
                                                              PRICE, 1))
                   for account, instrument, side in flow]
        replies, published = _applied(machine, entries, cuts)
        results.append((replies, published, machine.state_hash()))
    one, batched = results
    refused = [reply.body["error"]["code"] for reply, (_, instrument, _) in
               zip(one[0], flow, strict=True) if instrument == 2]
    assert refused == ["locked_up"] * 8
    assert batched == one


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows, cut_seed=st.lists(st.integers(0, 120), max_size=6),
       listened=st.sets(st.sampled_from(["book:1", "book:2", "trades:1", "trades:2",
                                         "orders@4", "orders@5", "orders@6", "orders@7"])))
def test_a_run_publishes_what_is_listened_to_of_what_it_would_publish(flow, cut_seed,
                                                                      listened):
    """With some channels listened to (as the gateway's hub says), a batch publishes exactly
    the updates of those channels among what it publishes when every channel is."""
    cuts = sorted({x for x in cut_seed if 0 < x < len(flow)})
    published = []
    for wants in (None, listened.__contains__):
        machine, setup, traders, instruments = _venue()
        for i, entry in enumerate(setup):
            machine.apply(i + 1, entry)
        machine.outbox.clear()
        if wants is not None:
            machine.wants = wants
        entries = [_entry(op, traders, instruments) for op in flow]
        published.append(_applied(machine, entries, cuts)[1])
    everything, some = published
    assert some == [update for update in everything if update[0] in listened]
