"""A live call's replies sorted by numpy are the replies one Python step a command gives.

``Markets._replies_bulk`` answers a kernel call whose every reply is built (a live batch of at
least ``REPLIES_BULK_MIN`` commands, no auction): accepted commands get their order's view as
of the command (201 for a new order, else 200), refused ones their refusal, cancels the kernel
did not find 404 or 409 (``_cancels_refused``). Hypothesis draws live batches of order flow
(``test_live_columns``' batches: plain and keyed orders, cancels of own, foreign, finished and
not-yet-given orders, amends, auctions, deposits), applied once with every call answered the
per-command way (``_replies``) and once with every call that may answered in bulk: the
replies (their bytes), the published updates and the state hash must be the same.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import machine as machine_module
from engine import markets as markets_module
from tests.engine.test_live_columns import _in_batches, _one_at_a_time, batches
from tests.engine.test_markets_runs import EXAMPLES


def _applied(batches: list, bulk_from: int, columns_from: int) -> tuple:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(markets_module, "REPLIES_BULK_MIN", bulk_from)
        patch.setattr(machine_module, "LIVE_COLUMNS_MIN", columns_from)
        return _in_batches(batches)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drawn=batches, columns_from=st.sampled_from([1, machine_module.LIVE_COLUMNS_MIN]))
def test_replies_in_bulk_are_the_replies_command_by_command(drawn, columns_from):
    batches, expected = _one_at_a_time(drawn)
    per_command = _applied(batches, 10**9, columns_from)
    bulk = _applied(batches, 1, columns_from)
    assert bulk[0] == per_command[0] == expected[0]
    assert bulk[1] == per_command[1]
    assert bulk[2] == per_command[2] == expected[2]


def test_a_live_batch_is_answered_in_bulk(monkeypatch):
    """The bulk path is the one a live batch takes (so the test above compares two paths)."""
    size = markets_module.REPLIES_BULK_MIN
    drawn = [(0, [("order", n % 4, 0, "buy" if n % 2 else "sell", "limit", 1000, 5, "gtc",
                   False, "cancel_newest", None, None) for n in range(size)])]
    batches, expected = _one_at_a_time(drawn)
    calls = []
    bulk = markets_module.Markets._replies_bulk
    monkeypatch.setattr(markets_module.Markets, "_replies_bulk",
                        lambda self, *args: calls.append(len(args[2])) or bulk(self, *args))
    assert _in_batches(batches)[0] == expected[0]
    assert calls == [size]
