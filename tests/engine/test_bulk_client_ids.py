"""Orders with a client_order_id through a replay's bulk path (``engine.markets_bulk``) reach
exactly the state of ``apply`` one entry at a time, and their ids are followed the same way.

Hypothesis writes journals in which most orders carry a client_order_id drawn from a few
(so an account often sends an id that one of its orders still rests with, in the same
segment or from an earlier one: ``duplicate_client_order_id``), at prices that cross so
orders rest, fill and finish in the same segments, with cancels of recent ids, orders that
are refused before the id is looked at (not an investor, no such instrument), idempotency
keys, other commands and exchange times that move on. The open-order limit and the kept
finished orders are made small so both bite (kept ids are evicted with their orders). The
journal is replayed in random chunks; besides the sequence and the state hash (which holds
the kept orders' ids), the ids that rest (``Lifecycle.open_client_ids``, which the hash does
not hold) and the replies kept for idempotency keys must be those of one entry at a time.
"""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.machine import StateMachine
from tests.engine.test_bulk_replay import (
    DEBT,
    EQUITY,
    ISSUER,
    PRICE,
    TRADERS,
    _journal,
    _one_at_a_time,
    both_ways,
    bulk_kernel_calls,
)

EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 60
CLIENT_IDS = ["a", "b", "c", "", "w0-17"]

order_ops = st.tuples(
    st.just("order"),
    st.sampled_from(TRADERS * 4 + [ISSUER, 99]),
    st.sampled_from([EQUITY] * 6 + [DEBT, 42]),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["limit"] * 5 + ["market"]),
    st.integers(PRICE - 2, PRICE + 2),
    st.integers(1, 4),
    st.sampled_from(["gtc"] * 4 + ["ioc"]),
    st.just(False),
    st.sampled_from(["cancel_newest", "cancel_oldest", "decrement"]),
    st.sampled_from(CLIENT_IDS * 3 + [None]),  # client_order_id
    st.sampled_from([None] * 20 + ["k1"]),  # Idempotency-Key
)
cancel_ops = st.tuples(st.just("cancel"), st.sampled_from(TRADERS), st.integers(1, 120))
other_ops = st.one_of(st.tuples(st.just("deposit"), st.sampled_from(TRADERS),
                                st.integers(1, 1000)),
                      st.tuples(st.just("tick")))
ops = st.tuples(st.integers(0, 19), order_ops, cancel_ops, other_ops).map(
    lambda t: t[1] if t[0] < 14 else t[2] if t[0] < 19 else t[3])
steps = st.sampled_from([0] * 8 + [1, 1_000_000])
flows = st.integers(1, 250).flatmap(
    lambda n: st.lists(st.tuples(ops, steps), min_size=n, max_size=n))


def _assert_same(bulk: StateMachine, one: StateMachine) -> None:
    assert bulk.last_sequence == one.last_sequence
    assert bulk.idempotency == one.idempotency
    bulk_orders, one_orders = (m.component("markets").lifecycle for m in (bulk, one))
    assert bulk_orders.open_client_ids == one_orders.open_client_ids
    assert bulk_orders.client_ids == one_orders.client_ids
    assert bulk.state_hash() == one.state_hash()


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows, cuts=st.lists(st.integers(1, 250), min_size=1, max_size=5),
       rng=st.randoms(use_true_random=False))
def test_client_order_ids_in_bulk_reach_the_state_of_one_entry_at_a_time(flow, cuts, rng):
    one, bulk, _ = both_ways(flow, cuts, rng)
    _assert_same(bulk, one)


def _order(who: int, side: str, price: int, cid: str | None) -> tuple:
    return ("order", who, EQUITY, side, "limit", price, 1, "gtc", False, "cancel_newest", cid,
            None)


def test_orders_with_ids_go_through_the_bulk_path_and_duplicates_are_refused():
    """Not a vacuous property: a gateway's traffic (every order with an id of its own,
    crossing the last) is matched in one kernel call a chunk; an account's id that one of
    its orders still rests with cuts the segment there, and that order is refused
    ``duplicate_client_order_id`` as one entry at a time refuses it."""
    flow = []
    for n in range(300):
        side = "buy" if n % 2 else "sell"
        flow.append((_order(TRADERS[n % 4], side, PRICE, f"w0-{n}"), 0))
    # A sell that rests below the bids' price, then the same id again from its account.
    flow += [(_order(TRADERS[0], "sell", PRICE + 50, "rests"), 0),
             (_order(TRADERS[1], "sell", PRICE + 60, "x"), 0),
             (_order(TRADERS[0], "sell", PRICE + 51, "rests"), 0)]
    flow += [(_order(TRADERS[n % 4], "buy" if n % 2 else "sell", PRICE, f"w1-{n}"), 0)
             for n in range(100)]
    records = _journal(flow, random.Random(3))
    bulk, calls = bulk_kernel_calls(records)
    one = _one_at_a_time(records)
    _assert_same(bulk, one)
    assert len(calls) == 2 and calls[0] >= 300 and calls[1] >= 100  # cut at the duplicate
    lifecycle = one.component("markets").lifecycle
    assert set(lifecycle.open_client_ids) == {(TRADERS[0], "rests"), (TRADERS[1], "x")}
    assert list(lifecycle.client_ids.values()).count("rests") == 1  # the second refused
