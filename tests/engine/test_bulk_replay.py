"""A replay's bulk path (``engine.replay`` -> ``StateMachine.apply_orders`` ->
``engine.markets_bulk``) reaches exactly the state of ``apply`` one entry at a time.

Hypothesis writes journals of orders and cancels at exchange times that move on (several
orders share a time, as a group commit stamps them; some steps cross the IP board's daily
auction and the end of a lock-up, deadlines that fire between entries), with everything the
bulk path must leave to the exact one or get right itself: cancels of known, unknown, foreign
and not-yet-given orders (by id, in the same segment), by account 0; orders by accounts that
are not investors or do not exist, on an instrument still locked up or not there at all,
market orders and prices beyond the band, client_order_ids, idempotency keys (reused), the
open-order limit and the kept finished orders made small so both bite, and other commands
in between (deposits, ticks, auctions, amends, the manual clock). Some entries
are written with other msgpack widths than msgspec's. The journal is replayed through
``apply_records`` cut into random chunks; the sequence, the state hash and the replies kept
for idempotency keys must be those of one entry at a time.
"""

from __future__ import annotations

import collections
import os
import random
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.markets
import engine.markets_bulk
import engine.replay
from boards import debt as debt_board
from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.kernels.codes import SIDE_SELL
from engine.machine import StateMachine
from engine.offerings import Offerings
from tests.engine.msgpack_widths import pack
from tests.engine.test_journal_replay import apply_in_chunks

START_US = 1_767_225_600_000_000  # 2026-01-01T00:00Z: the IP board's auction is at 15:00
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 50
TRADERS = [4, 5, 6, 7]
ISSUER, OPERATOR = 3, 2
# Instrument ids: LOCKED trades from a day after its close (a deadline), DEBT's notes may not
# be sold once its first instalment is 90 days late (no deadline: the rules ask the clock).
EQUITY, IP, LOCKED, DEBT = 1, 2, 3, 4
PRICE = 10_00
TERMS = {
    EQUITY: ("equity", {"price": PRICE, "lockup_days": 0}),
    IP: ("ip", {"price": PRICE, "lockup_days": 0, "royalty_share_bps": 1000}),
    LOCKED: ("equity", {"price": PRICE, "lockup_days": 1}),
    DEBT: ("debt", {"face_value": PRICE, "term_months": 6, "repayment": "amortizing",
                    "rate_bps": 900, "lockup_days": 0}),
}


def _setup() -> list[c.Entry]:
    """Traders with cash and units of each instrument; the books of EQUITY, IP and DEBT open
    (an order rests on each), LOCKED's not yet."""
    entries = [c.Entry(START_US, 0, c.Genesis("h", True, START_US, "intl", c.RULES_VERSION)),
               c.Entry(START_US, 0, c.CreateAccount("issuer", "issuer", "kis"))]
    for n, account in enumerate(TRADERS):
        entries.append(c.Entry(START_US, 0, c.CreateAccount(
            "investor", f"t{n}", f"k{n}", investor_class="institutional")))
        entries.append(c.Entry(START_US, 0, c.Deposit(account, 10**9, f"d{n}")))
    for project, (board, terms) in TERMS.items():
        terms = {**terms, "min_quantity": 1, "max_quantity": 10_000}
        entries.append(c.Entry(START_US, ISSUER, oc.CreateProject(
            board, f"p{project}", "x", START_US + 30 * DAY_US, terms)))
        entries.append(c.Entry(START_US, OPERATOR, oc.ReviewProject(project, True)))
        entries.extend(c.Entry(START_US, account, oc.Subscribe(project, 1000))
                       for account in TRADERS)
        entries.append(c.Entry(START_US, OPERATOR, oc.CloseProject(project)))
    entries.extend(c.Entry(START_US, TRADERS[0], mc.PlaceOrder(project, "buy", "limit", 1, 1))
                   for project in (EQUITY, IP, DEBT))
    return entries


def _flow_start_us() -> int:
    """Six hours before DEBT goes into default: the flows cross that moment."""
    machine = StateMachine()
    for sequence, entry in enumerate(_setup(), start=1):
        machine.apply(sequence, entry)
    offerings = machine.component("offerings")
    first = offerings.instalments(offerings.projects[DEBT])[0]
    return first.due_us + debt_board.DEFAULT_AFTER_DAYS * DAY_US - 6 * HOUR_US


FLOW_START_US = _flow_start_us()


traders = st.sampled_from(TRADERS)
order_ops = st.tuples(
    st.just("order"),
    st.sampled_from(TRADERS * 3 + [ISSUER, 99, 0]),
    st.sampled_from([EQUITY] * 4 + [IP, LOCKED, DEBT, DEBT, 42]),
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["limit", "limit", "limit", "market"]),
    # Near the price (one in eight beyond the band, or where it bites).
    st.tuples(st.integers(0, 7), st.integers(PRICE - 5, PRICE + 5),
              st.sampled_from([1, 2_000, 5_001, 60_000])).map(lambda t: t[2] if t[0] == 7
                                                               else t[1]),
    st.integers(1, 30),
    st.sampled_from(["gtc", "gtc", "ioc", "fok"]),
    st.booleans(),
    st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]),
    st.sampled_from([None] * 10 + ["a", "b"]),  # client_order_id
    st.sampled_from([None] * 15 + ["k1", "k2"]),  # Idempotency-Key
)
cancel_ops = st.tuples(st.just("cancel"), st.sampled_from(TRADERS * 2 + [0, ISSUER]),
                       st.one_of(st.integers(-1, 80), st.just(2**40)))
other_ops = st.one_of(
    st.tuples(st.just("deposit"), traders, st.integers(1, 1000)),
    st.tuples(st.just("tick")),
    st.tuples(st.just("auction")),
    st.tuples(st.just("amend"), traders, st.integers(1, 60),
              st.one_of(st.none(), st.integers(PRICE - 20, PRICE + 20)),
              st.one_of(st.none(), st.integers(1, 40))),
    st.tuples(st.just("advance"), st.integers(1, 7200)))
# The time from one entry to the next: mostly none (a group commit's), sometimes hours.
steps = st.sampled_from([0] * 12 + [1, 1_000_000, HOUR_US, 7 * HOUR_US])
ops = st.tuples(st.integers(0, 9), order_ops, cancel_ops, other_ops).map(
    lambda t: t[1] if t[0] < 6 else t[2] if t[0] < 9 else t[3])  # orders : cancels : other 6:3:1
# Long enough that orders rest, fill, finish and get cancelled in the same segments.
flows = st.integers(1, 200).flatmap(
    lambda n: st.lists(st.tuples(ops, steps), min_size=n, max_size=n))


def _command(op: tuple) -> tuple[int, object, str | None]:
    """(actor, command, idempotency key) of a generated op."""
    kind = op[0]
    if kind == "cancel":
        return op[1], mc.CancelOrder(op[2]), None
    if kind == "deposit":
        return OPERATOR, c.Deposit(op[1], op[2], f"r{op[2]}"), None
    if kind == "tick":
        return 0, c.Tick(), None
    if kind == "auction":
        return OPERATOR, mc.RunAuction(IP), None
    if kind == "amend":
        return op[1], mc.AmendOrder(op[2], op[3], op[4]), None
    if kind == "advance":
        return OPERATOR, c.AdvanceClock(op[1]), None
    (_, who, inst, side, order_type, price, qty, tif, post_only, stp, cid, key) = op
    if order_type == "market":
        price, post_only = 0, False
    if tif != "gtc":
        post_only = False
    return who, mc.PlaceOrder(inst, side, order_type, price, qty, tif, post_only, stp, cid), key


def _journal(flow: list[tuple], rng: random.Random) -> list[tuple[int, bytes]]:
    """The setup and the flow as journal records; some orders and cancels written with
    other msgpack widths than msgspec's own."""
    setup = _setup()
    entries, time_us = list(setup), FLOW_START_US
    for op, step in flow:
        time_us += step
        actor, command, key = _command(op)
        entries.append(c.Entry(time_us, actor, command, key, f"h{op}" if key else None))
    records = []
    for sequence, entry in enumerate(entries, start=1):
        payload = c.encode_entry(entry)
        if sequence > len(setup) and rng.random() < 0.25:
            payload = pack(msgspec.to_builtins(entry), rng)
            if c.decode_entry(payload) != entry:
                raise AssertionError("the test's own msgpack writer is wrong")
        records.append((sequence, payload))
    return records


def _one_at_a_time(records: list[tuple[int, bytes]]) -> StateMachine:
    machine = StateMachine()
    for sequence, payload in records:
        machine.apply(sequence, c.decode_entry(payload))
    return machine


def _in_chunks(records: list[tuple[int, bytes]], cuts: list[int]) -> StateMachine:
    return apply_in_chunks(StateMachine(), records, cuts)


def both_ways(flow: list[tuple], cuts: list[int],
              rng: random.Random) -> tuple[StateMachine, StateMachine, int]:
    """The flow's journal applied one entry at a time and in chunks of ``cuts`` (the bulk
    path from one entry on), the open-order limit and the kept finished orders made small so
    both bite: (one at a time, in chunks, how many entries)."""
    with (mock.patch.object(engine.markets, "OPEN_ORDERS_MAX", 12),
          mock.patch.object(engine.markets, "FINISHED_ORDERS_KEPT", 6),
          mock.patch.object(engine.replay, "BULK_ENTRIES_MIN", 1)):
        records = _journal(flow, rng)
        return _one_at_a_time(records), _in_chunks(records, cuts), len(records)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows, cuts=st.lists(st.integers(1, 200), min_size=1, max_size=6),
       rng=st.randoms(use_true_random=False))
def test_the_bulk_path_reaches_the_state_of_one_entry_at_a_time(flow, cuts, rng):
    one, bulk, count = both_ways(flow, cuts, rng)
    assert bulk.last_sequence == one.last_sequence == count
    assert bulk.idempotency == one.idempotency  # the replies a retry would get
    assert bulk.now_us == one.now_us
    assert bulk.state_hash() == one.state_hash()


def bulk_kernel_calls(records: list[tuple[int, bytes]]) -> tuple[StateMachine, list[int]]:
    """``records`` replayed in one chunk, and the commands of each bulk kernel call it made
    (``engine.markets_bulk._match``), in order."""
    calls: list[int] = []
    real = engine.markets_bulk._match
    with mock.patch.object(engine.markets_bulk, "_match",
                           lambda markets, commands, *rest: calls.append(len(commands))
                           or real(markets, commands, *rest)):
        machine = _in_chunks(records, [len(records)])
    return machine, calls


def test_plain_orders_go_through_one_kernel_call_per_chunk():
    """Not a vacuous property: orders and cancels at many exchange times, none with a key
    or a client_order_id, are matched by one kernel call per chunk, not one per time; their
    trades go on the tape and candles at their own times."""
    flow = []
    for n in range(400):
        side = "buy" if n % 2 else "sell"
        op = ("order", TRADERS[n % 4], EQUITY, side, "limit", PRICE + n % 7 - 3, 1 + n % 5,
              "gtc", False, "cancel_newest", None, None)
        flow.append((("cancel", TRADERS[n % 4], n // 2) if n % 9 == 0 else op,
                     HOUR_US // 10 if n % 16 == 0 else 0))
    records = _journal(flow, random.Random(1))
    bulk, calls = bulk_kernel_calls(records)
    one = _one_at_a_time(records)
    assert len(calls) == 1 and calls[0] >= 390  # less cancels of ids not given by then
    assert bulk.state_hash() == one.state_hash()
    markets = one.component("markets")
    assert markets.engine.next_order_id > 300
    assert len(markets.tapes[EQUITY].candles["1m"]) > 5  # trades at many times


@settings(max_examples=EXAMPLES // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows, sizes=st.lists(st.integers(1, 60), min_size=1, max_size=5),
       rng=st.randoms(use_true_random=False))
def test_a_replica_catching_up_stamps_each_message_as_before(flow, sizes, rng):
    """``apply_payloads`` with a stream message's time (a cluster replica catching up, on
    the wall clock) gives the state the replica's decode, stamp and ``apply_batch`` gave."""
    records = _journal(flow, rng)
    setup = len(_setup())
    machines = [StateMachine(), StateMachine()]
    for machine in machines:
        for sequence, payload in records[:setup]:
            machine.apply(sequence, c.decode_entry(payload))
        machine.manual_clock = False  # as a venue on the wall clock (the entries' own times)
        machine.quiet = True
    old, bulk = machines
    position, n, time_us = setup, 0, FLOW_START_US
    with mock.patch.object(engine.replay, "BULK_ENTRIES_MIN", 1):
        while position < len(records):
            message = [payload for _, payload in records[position:position + sizes[n % len(sizes)]]]
            time_us += HOUR_US // 7 * (n % 3)
            entries = [c.decode_entry(payload) for payload in message]
            stamp = max(old.now_us, time_us)
            for entry in entries:
                entry.time_us = stamp
            old.apply_batch(position + 1, entries)
            engine.replay.apply_payloads(bulk, position + 1, message, max(bulk.now_us, time_us))
            position, n = position + len(message), n + 1
    assert bulk.last_sequence == old.last_sequence == len(records)
    assert bulk.state_hash() == old.state_hash()


def test_account_0_cannot_cancel_an_order_placed_in_the_same_run():
    """Regression: a run's cancel of an order the run itself places (by id) went to the
    kernel with account 0, for which the kernel skips the owner check, and cancelled another
    account's order; one entry at a time it is 404. Found by the catching-up property above."""
    records = _journal([(("tick",), 0),  # the deadlines due since the setup fire alone
                        (_order_op(TRADERS[0], "buy", PRICE - 1), 0), (("cancel", 0, 4), 0),
                        (("cancel", 0, 4), 0)], random.Random(2))
    setup = len(_setup()) + 1
    one = _one_at_a_time(records)
    batched = StateMachine()
    for sequence, payload in records[:setup]:
        batched.apply(sequence, c.decode_entry(payload))
    replies = batched.apply_batch(setup + 1, [c.decode_entry(p) for _, p in records[setup:]])
    assert [r.status for r in replies] == [201, 404, 404]
    assert replies[0].body["order_id"] == 4
    assert batched.state_hash() == one.state_hash()


def _order_op(who: int, side: str, price: int, instrument: int = EQUITY) -> tuple:
    return ("order", who, instrument, side, "limit", price, 1, "gtc", False, "cancel_newest",
            None, None)


def test_the_rules_are_asked_at_each_time_not_once_a_segment():
    """An instrument's info read for one side at one time serves the other side at that time
    only: DEBT's notes may be sold before its default and not after, within one segment."""
    flow = [(("tick",), 0)]  # the deadlines due since the setup fire alone
    for n in range(8):  # both sides at each of two times: just before the default and after
        step = 6 * HOUR_US - 1 if n == 0 else 2 if n == 4 else 0
        flow.append((_order_op(TRADERS[n % 4], "buy" if n % 2 else "sell", PRICE, DEBT), step))
    records = _journal(flow, random.Random(4))
    with mock.patch.object(engine.replay, "BULK_ENTRIES_MIN", 1):
        bulk = _in_chunks(records, [len(records)])
    one = _one_at_a_time(records)
    assert bulk.state_hash() == one.state_hash()
    records = one.component("markets").lifecycle.records
    sells = (records["instrument"] == DEBT) & (records["side"] == SIDE_SELL)
    assert int(sells.sum()) == 2  # the two before the default; the two after refused


@settings(max_examples=EXAMPLES // 2, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows, step=st.integers(1, 40), rng=st.randoms(use_true_random=False))
def test_decoded_batches_cut_anywhere_reach_the_same_state(flow, step, rng):
    """The decoded entries' batches (``DECODED_ENTRIES_MAX``) made small: the state is that
    of one entry at a time."""
    with (mock.patch.object(engine.replay, "DECODED_ENTRIES_MAX", step),
          mock.patch.object(engine.replay, "BULK_ENTRIES_MIN", 10**9)):  # all decoded
        records = _journal(flow, rng)
        bulk = _in_chunks(records, [len(records)])
    one = _one_at_a_time(records)
    assert bulk.last_sequence == one.last_sequence == len(records)
    assert bulk.idempotency == one.idempotency
    assert bulk.state_hash() == one.state_hash()


def _walked(records: list[tuple[int, bytes]],
            machine: StateMachine | None = None) -> tuple[StateMachine, list[int]]:
    """``records`` replayed (onto ``machine``, if given) with every entry decoded (the runs of
    ``apply_batch``, none of the bulk path), and the commands of each kernel call the runs
    made."""
    calls: list[int] = []
    real = engine.markets.MatchingEngine.process

    def process(self, commands, *rest, **named):
        calls.append(len(commands))
        return real(self, commands, *rest, **named)

    with (mock.patch.object(engine.replay, "BULK_ENTRIES_MIN", 10**9),
          mock.patch.object(engine.markets.MatchingEngine, "process", process)):
        machine = apply_in_chunks(machine or StateMachine(), records, [len(records)])
    return machine, calls


def test_a_run_goes_on_over_times_and_asks_the_rules_at_each():
    """A run of orders and the deposits it carries goes on where the exchange time moves on
    with no deadline due: one kernel call. DEBT's notes may be sold just before its default
    and not just after, in the same run: the rules are asked again at each time."""
    flow = [(("tick",), 0)]  # the deadlines due since the setup fire alone
    for n in range(8):  # both sides at each of two times: just before the default and after
        step = 6 * HOUR_US - 1 if n == 0 else 2 if n == 4 else 0
        flow.append((("deposit", ISSUER, 1 + n), step))  # carried: the issuer does not trade
        flow.append((_order_op(TRADERS[n % 4], "buy" if n % 2 else "sell", PRICE, DEBT), 0))
    records = _journal(flow, random.Random(5))
    walked, calls = _walked(records)
    one = _one_at_a_time(records)
    assert walked.state_hash() == one.state_hash()
    assert calls[-1] == 6  # the orders of both times, in one call (two sells refused)
    orders = one.component("markets").lifecycle.records
    sells = (orders["instrument"] == DEBT) & (orders["side"] == SIDE_SELL)
    assert int(sells.sum()) == 2  # the two before the default; the two after refused
    assert sorted(set(orders["created_us"][orders["instrument"] == DEBT].tolist()))[-2:] == [
        FLOW_START_US + 6 * HOUR_US - 1, FLOW_START_US + 6 * HOUR_US + 1]


def test_a_run_keeps_the_verdicts_the_clock_cannot_change():
    """Over the times of one run, the rules' verdict on EQUITY, whose info does not read the
    clock, is asked at the run's first time only; on DEBT, whose default comes with the
    clock, at each time (its notes sold before the default, refused after, in the same run
    and kernel call). The state is one entry at a time's."""
    flow = [(("tick",), 0)]  # the deadlines due since the setup fire alone
    for n in range(8):  # eight times, the default between the fourth and the fifth
        step = 6 * HOUR_US - 4 if n == 0 else 1
        flow.append((("deposit", ISSUER, 1 + n), step))  # carried: the issuer does not trade
        side = "buy" if n % 2 else "sell"
        flow.append((_order_op(TRADERS[n % 4], side, PRICE, EQUITY), 0))
        flow.append((_order_op(TRADERS[(n + 1) % 4], side, PRICE, DEBT), 0))
    records = _journal(flow, random.Random(7))
    head = len(_setup()) + 1  # the setup and the tick, before the run
    asked: collections.Counter[int] = collections.Counter()
    real = Offerings.instrument_info

    def instrument_info(self, instrument_id):
        asked[instrument_id] += 1
        return real(self, instrument_id)

    walked = apply_in_chunks(StateMachine(), records[:head], [head])
    with mock.patch.object(Offerings, "instrument_info", instrument_info):
        walked, calls = _walked(records[head:], walked)
    one = _one_at_a_time(records)
    assert walked.state_hash() == one.state_hash()
    assert calls == [14]  # one call: 8 EQUITY orders, DEBT's 4 buys and 2 sells before
    assert asked[EQUITY] == 1  # both sides at the first time: one lookup (_queue_place)
    assert asked[DEBT] >= 8  # at each time (twice where its info is another from then)
    orders = one.component("markets").lifecycle.records
    sells = (orders["instrument"] == DEBT) & (orders["side"] == SIDE_SELL)
    assert int(sells.sum()) == 2


@pytest.mark.parametrize("before", [False, True])
def test_an_amend_in_a_run_over_the_default_asks_the_rules_at_its_time(before):
    """A new price for DEBT's sell, which the run's commands before it may change (a buy
    queued at the earlier time that crosses it, or the sell itself placed by the run), is
    refused once DEBT is in default, as one at a time: the amend would re-enter the order,
    and the rules of a new order there are those of the amend's time, after the default
    (``Markets._amend_later`` decides it in the kernel only where they pass)."""
    sell = _order_op(TRADERS[1], "sell", PRICE + 5, DEBT)[:6] + (5,) + _order_op(
        TRADERS[1], "sell", PRICE + 5, DEBT)[7:]
    buy = _order_op(TRADERS[2], "buy", PRICE + 5, DEBT)
    flow = [(("tick",), 0)]
    if before:  # the sell rests before the run: id 4, read from its record
        flow += [(sell, 6 * HOUR_US - 10), (("tick",), 0),  # its own run
                 (("deposit", ISSUER, 1), 8), (buy, 0)]
    else:  # the sell is placed by the run: id 4, one the queue gives
        flow += [(("deposit", ISSUER, 1), 6 * HOUR_US - 2), (sell, 0)]
    flow += [(("deposit", ISSUER, 2), 2), (("amend", TRADERS[1], 4, PRICE + 3, None), 0)]
    records = _journal(flow, random.Random(8))
    head = len(_setup()) + (3 if before else 1)  # the run: from the first deposit
    walked, _ = _walked(records[head:], apply_in_chunks(StateMachine(), records[:head],
                                                       [head]))
    one = _one_at_a_time(records)
    assert walked.state_hash() == one.state_hash()
    orders = one.component("markets").lifecycle.records
    assert int(orders["price"][4]) == PRICE + 5  # the amend refused: in default


def test_no_command_a_run_carries_moves_a_deadline():
    """A run that spans times reads the venue's next deadline once, at its start
    (``StateMachine._apply_carrying``): no command it carries may move one. Each carried
    type is applied as the run applies it (its handler, no ``on_time``) beside an open
    offering's close and the IP auction, succeeding where it can, and the next deadline
    stays; a carried type added without a sample here fails the test."""
    machine = StateMachine()
    for sequence, entry in enumerate(_setup(), start=1):
        machine.apply(sequence, entry)
    sequence = machine.last_sequence
    project = max(machine.component("offerings").projects) + 1
    for entry in (c.Entry(START_US, ISSUER, oc.CreateProject(
            "equity", "open", "x", START_US + 30 * DAY_US,
            {"price": PRICE, "lockup_days": 0, "min_quantity": 1, "max_quantity": 10_000})),
                  c.Entry(START_US, OPERATOR, oc.ReviewProject(project, True))):
        sequence += 1
        machine.apply(sequence, entry)
    subscription = machine.component("offerings").next_subscription_id
    samples = [(OPERATOR, c.Deposit(TRADERS[1], 5_00, "carried")),
               (TRADERS[1], c.Withdraw(TRADERS[1], 1_00, "carried out")),
               (OPERATOR, c.CreateAccount("investor", "new", "knew")),
               (0, c.Tick()),
               (TRADERS[1], oc.Subscribe(project, 10)),
               (TRADERS[1], oc.CancelSubscription(subscription))]
    assert {type(command) for _, command in samples} == set(machine._carried)
    due = machine.next_deadline_us()
    assert due is not None
    for actor, command in samples:
        sequence += 1
        machine.last_sequence = sequence
        reply = machine._handlers[type(command)](command, actor)
        assert reply.status < 300, (command, reply)
        assert machine.next_deadline_us() == due, command


def test_a_run_stops_where_a_deadline_falls_due():
    """IP's call auction falls due between two times of a run: the run stops before the
    first entry past it, which is applied alone and fires the auction, as one at a time;
    the orders after it wait for the next day's."""
    t = FLOW_START_US
    auction = t - t % DAY_US + 15 * HOUR_US
    auction += DAY_US if auction <= t else 0
    flow = [(("tick",), 0), (("deposit", ISSUER, 1), auction - HOUR_US - t)]
    for n in range(8):
        if n == 4:
            flow.append((("deposit", ISSUER, 2), 2 * HOUR_US))  # past the auction
        flow.append((_order_op(TRADERS[n % 4], "buy" if n % 2 else "sell", PRICE, IP), 0))
        flow.append((("deposit", ISSUER, 3 + n), 0))
    records = _journal(flow, random.Random(6))
    walked, calls = _walked(records)
    one = _one_at_a_time(records)
    assert walked.state_hash() == one.state_hash()
    assert calls.count(4) == 2  # the four orders before the auction, the four after


def test_a_run_that_may_open_the_first_ip_book_stays_at_one_time():
    """Before any IP book is open no auction is scheduled, and a run's order may open one
    and schedule it (``Markets.runs_span_times``): the run stops where the time moves on,
    so the auction fires where one entry at a time fires it."""
    setup = [entry for entry in _setup() if not (isinstance(entry.command, mc.PlaceOrder)
                                                 and entry.command.instrument_id == IP)]
    t = FLOW_START_US
    auction = t - t % DAY_US + 15 * HOUR_US
    auction += DAY_US if auction <= t else 0
    entries = list(setup)
    for n in range(8):
        at = auction - HOUR_US if n < 4 else auction + HOUR_US
        entries.append(c.Entry(at, OPERATOR, c.Deposit(ISSUER, 1 + n, f"ip{n}")))
        entries.append(c.Entry(at, TRADERS[n % 4], mc.PlaceOrder(
            IP, "buy" if n % 2 else "sell", "limit", PRICE, 1)))
    records = [(n, c.encode_entry(entry)) for n, entry in enumerate(entries, start=1)]
    walked, _ = _walked(records)
    one = _one_at_a_time(records)
    assert one.component("markets").next_auction_us > auction  # it fired, and is scheduled
    assert walked.state_hash() == one.state_hash()
