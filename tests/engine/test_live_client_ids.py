"""A live batch's orders with a client_order_id give exactly what they give one at a time.

The gateway's WebSocket traffic is small batches (8-16 orders at 20k orders/s) in which every
order names a client_order_id. ``Markets.apply_run`` queues such an order inline, as it queues
one without, once an order of the run has passed the rules for its instrument and side, unless
its account has that id on a resting order or on an order already queued: then the exact path
(``Markets._queue_place``) matches the queue first and decides. Hypothesis generates batches of
orders naming a few ids (repeated within a batch, across accounts, on orders that rest, fill or
are cancelled), stamped as the sequencer stamps them, and applies them with their journal bytes
as the server does: the replies (encoded), the published updates, the state hash and which ids
rest must be those of one entry at a time.
"""

from __future__ import annotations

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine import markets_commands as mc
from engine.machine import StateMachine
from tests.engine.test_markets_runs import EXAMPLES, PRICE, START_US, TRADERS
from tests.engine.test_markets_runs import _venue as markets_runs_venue

ISSUER = 3  # not an investor: its orders are refused
_encode = msgspec.json.Encoder().encode

orders = st.tuples(
    st.just("order"),
    st.sampled_from([*range(4, 4 + TRADERS), 4, 5, ISSUER]),  # traders, two of them often
    st.sampled_from([1, 1, 1, 2]),  # mostly the equity book, sometimes the IP auction
    st.sampled_from(["buy", "sell"]),
    st.integers(PRICE - 2, PRICE + 2),  # so that orders cross, rest, and fill resting ones
    st.integers(1, 3),
    st.sampled_from(["gtc", "gtc", "gtc", "ioc"]),
    st.one_of(st.none(), st.sampled_from(["w-1", "w-2", "w-3"])),
)
cancels = st.tuples(st.just("cancel"), st.integers(4, 3 + TRADERS), st.integers(1, 40))
amends = st.tuples(st.just("amend"), st.integers(4, 3 + TRADERS), st.integers(1, 40),
                   st.integers(PRICE - 2, PRICE + 2))
batches = st.lists(st.lists(st.one_of(orders, orders, orders, orders, cancels, amends),
                            min_size=1, max_size=16), min_size=1, max_size=8)


def _entry(op: tuple, time_us: int) -> c.Entry:
    if op[0] == "cancel":
        return c.Entry(time_us, op[1], mc.CancelOrder(op[2]))
    if op[0] == "amend":
        return c.Entry(time_us, op[1], mc.AmendOrder(op[2], op[3], None))
    _, actor, instrument, side, price, quantity, tif, cid = op
    return c.Entry(time_us, actor, mc.PlaceOrder(instrument, side, "limit", price, quantity,
                                                 tif, client_order_id=cid))


def _machine() -> StateMachine:
    machine = StateMachine()
    _, setup, _, _ = markets_runs_venue()
    for sequence, entry in enumerate(setup, start=1):
        machine.apply(sequence, entry)
    machine.outbox.clear()
    return machine


def _outcome(machine: StateMachine, replies: list) -> tuple:
    markets = machine.component("markets")
    return ([_encode(reply) for reply in replies], machine.outbox, machine.state_hash(),
            markets.lifecycle.open_client_ids, markets.lifecycle.client_ids)


def _stamped(drawn: list[list[tuple]]) -> list[list[c.Entry]]:
    """Each batch at a time of its own, as the sequencer stamps a group commit."""
    return [[_entry(op, START_US + 1000 * (n + 1)) for op in batch]
            for n, batch in enumerate(drawn)]


@settings(max_examples=EXAMPLES * 5, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drawn=batches)
def test_a_live_batch_of_orders_with_client_order_ids_gives_one_at_a_times(drawn):
    stamped = _stamped(drawn)
    one, batched = _machine(), _machine()
    one_replies, batched_replies = [], []
    for batch in stamped:
        first = one.last_sequence + 1
        one_replies.extend(one.apply(first + i, entry) for i, entry in enumerate(batch))
        batched_replies.extend(batched.apply_batch(
            first, batch, payloads=[c.encode_entry(entry) for entry in batch]))
    assert _outcome(batched, batched_replies) == _outcome(one, one_replies)


def _spied(machine: StateMachine) -> tuple[list[int], list[int]]:
    """The sizes of the kernel calls and the orders that took ``_queue_place``, from now on."""
    markets = machine.component("markets")
    calls: list[int] = []
    exact: list[int] = []
    process, queue_place = markets.engine.process, markets._queue_place
    markets.engine.process = lambda *a, **kw: calls.append(len(a[0])) or process(*a, **kw)
    markets._queue_place = lambda *a: exact.append(a[2]) or queue_place(*a)
    return calls, exact


def test_the_gateways_batch_is_queued_inline_after_each_sides_first_order():
    """Bench gateway's traffic: quantity 1 at one price, buys and sells in turn, each with an
    id of its own. Once each side has passed the rules (the first batch here), a later
    batch's orders are all queued inline while the instrument's info is the same
    (``Markets._passes_again``): none is checked the exact way; the batch is matched in one
    kernel call, and every reply shows its order's id."""
    machine = _machine()
    for start in (0, 11):
        if start:
            calls, exact = _spied(machine)
        batch = [c.Entry(START_US + 1000 * (start + 1), 4 + n % TRADERS, mc.PlaceOrder(
            1, "buy" if n % 2 else "sell", "limit", PRICE, 1, client_order_id=f"w0-{n}"))
            for n in range(start, start + 11)]
        replies = machine.apply_batch(machine.last_sequence + 1, batch,
                                      payloads=[c.encode_entry(entry) for entry in batch])
        assert [reply.status for reply in replies] == [201] * 11
        assert [reply.body["client_order_id"] for reply in replies] == [
            f"w0-{n}" for n in range(start, start + 11)]
    assert exact == []
    assert calls == [11]


def test_an_id_resting_or_queued_takes_the_exact_path_and_is_refused_as_before():
    """An id its account has on a resting order is refused, and so is one it has on an order
    queued earlier in the batch that rests once matched (the queue is matched first to know);
    another account's use of the same id is accepted."""
    machine = _machine()
    time_us = START_US + 1000

    def buy(actor: int, cid: str | None) -> c.Entry:
        return c.Entry(time_us, actor, mc.PlaceOrder(1, "buy", "limit", PRICE - 5, 1,
                                                     client_order_id=cid))

    machine.apply_batch(machine.last_sequence + 1, [buy(4, "dup")])
    for actor in (5, 6):  # known as investors from here on (their first order checked so)
        machine.apply_batch(machine.last_sequence + 1, [buy(actor, None)])
    calls, exact = _spied(machine)
    batch = [buy(5, "x"),  # inline: the side passed the rules in an earlier batch
             buy(6, "q"),  # inline
             buy(6, "q"),  # queued just before, rests: refused
             buy(4, "dup"),  # resting: refused
             buy(5, "dup"),  # another account's id: inline, accepted
             buy(6, "y")]  # inline
    replies = machine.apply_batch(machine.last_sequence + 1, batch,
                                  payloads=[c.encode_entry(entry) for entry in batch])
    assert [reply.status for reply in replies] == [201, 201, 409, 409, 201, 201]
    assert {replies[i].body["error"]["code"] for i in (2, 3)} == {"duplicate_client_order_id"}
    assert exact == [2, 3]
    assert calls == [2, 2]  # the queue matched before the first refusal, the rest at the end
