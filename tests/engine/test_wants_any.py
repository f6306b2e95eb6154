"""A kind of update nobody listens to is not built, and nothing else changes.

``StateMachine.wants_any(kind)`` says whether anyone may listen to some channel of a kind
(``"orders@"``, ``"book:"``, ``"trades:"``); the gateway answers it from the hub's count of
channels by kind (``Hub.wants_any``). The markets skip a kind at once when no one does: no
order owners read, no channel asked about. Hypothesis draws live batches of order flow
(``test_live_columns``' batches) and which channels are listened to; applied in batches with
and without the kinds' answer, the replies, the published updates and the state hash must be
the same, and ``wants`` is never asked about an order, book or trade channel of a kind
nobody listens to.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine.markets import _listened
from gateway.hub import kind_of
from tests.engine.test_live_columns import _in_batches as in_batches
from tests.engine.test_live_columns import _machine, _one_at_a_time, batches
from tests.engine.test_markets_runs import EXAMPLES

# The traders are accounts 4 to 7; instruments 1, 2 and 4 have books.
CHANNELS = ["orders@4", "orders@5", "orders@9", "book:1", "book:2", "book:4", "trades:1",
            "trades:2", "project:1"]


def _in_batches(batches: list[list[c.Entry]], listened: frozenset[str], kinds: bool,
                asked: list[str]) -> tuple[list[bytes], list, str]:
    """``test_live_columns``' batches on a machine whose listeners are ``listened`` (with
    their kinds' answer if ``kinds``); ``asked`` gets every channel ``wants`` was asked
    about."""
    machine = _machine()

    def wants(channel: str) -> bool:
        asked.append(channel)
        return channel in listened

    machine.wants = wants
    if kinds:
        machine.wants_any = frozenset(map(kind_of, listened)).__contains__
    return in_batches(batches, machine)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drawn=batches, listened=st.frozensets(st.sampled_from(CHANNELS)))
def test_a_kind_nobody_listens_to_is_skipped_and_the_rest_is_the_same(drawn, listened):
    batches, _ = _one_at_a_time(drawn)
    asked_all: list[str] = []
    asked_kinds: list[str] = []
    expected = _in_batches(batches, listened, False, asked_all)
    got = _in_batches(batches, listened, True, asked_kinds)
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert got[2] == expected[2]
    skipped = {"orders@", "book:", "trades:"} - {kind_of(channel) for channel in listened}
    assert [channel for channel in asked_kinds if kind_of(channel) in skipped] == []


def test_orders_channels_are_not_asked_about_when_nobody_listens_to_one():
    """The bench's case (a book and a trade channel listened to): orders that change
    orders publish their book and trades, and no ``orders@`` channel is asked about."""
    drawn = [(0, [("order", n % 4, 0, side, "limit", 1000, 5, "gtc", False, "cancel_newest", None,
                   None) for n, side in enumerate(["buy", "sell"] * 10)])]
    batches, _ = _one_at_a_time(drawn)
    asked: list[str] = []
    listened = frozenset({"book:1", "trades:1"})
    _, updates, _ = _in_batches(batches, listened, True, asked)
    assert {channel for channel, _, _ in updates} == listened
    assert asked and not [channel for channel in asked if channel.startswith("orders@")]


@given(keys=st.sets(st.integers(1, 6), max_size=4), known=st.sets(st.integers(1, 6)),
       listened=st.sets(st.integers(1, 6)))
def test_the_listened_channels_of_some_keys(keys, known, listened):
    """``_listened``: of ``keys``, those whose channel someone listens to, with its name (one
    key, the commonest call, has a path of its own); every key's name kept once formatted."""
    names = {key: f"book:{key}" for key in known}
    wanted = {f"book:{key}" for key in listened}
    got = _listened(names, "book:", set(keys), wanted.__contains__)
    assert got == {key: f"book:{key}" for key in keys if key in listened}
    assert all(names[key] == f"book:{key}" for key in keys)
