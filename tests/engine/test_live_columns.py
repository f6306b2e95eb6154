"""A live batch read as columns gives exactly what its entries one at a time give.

With the entries' journal bytes (the sequencer's), ``StateMachine.apply_batch`` reads a live
batch's plain orders and cancels with the replay's scanner and checks and queues them in bulk
(``engine.markets_live``). Hypothesis generates batches of order flow, stamped as the sequencer
stamps them (one time a batch, some past the IP instrument's auction): plain orders of every
type and self-trade prevention, prices beyond the band, cancels of own, foreign, finished and
not-yet-given orders (of the same batch too), orders by accounts that are not investors, on a
locked-up instrument and on instruments whose book is not open yet, orders named by a
client_order_id (new ones, and ones their account has on a resting or an earlier order of the
batch), mixed with entries the columns cannot say (Idempotency-Keys, amends, auctions,
deposits). The
replies (their encoded bytes), the published updates and the state hash must be those of one
entry at a time, which is also what a replay of the journal reaches.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine import machine as machine_module
from engine import markets as markets_module
from engine import markets_commands as mc
from engine import markets_live
from engine import offerings_commands as oc
from engine.machine import StateMachine
from tests.engine.test_markets_runs import EXAMPLES, PRICE, START_US, TRADERS, order_ops
from tests.engine.test_markets_runs import _venue as markets_runs_venue

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
LOCKED = 3  # locked up for 30 days (tradable: 1 equity, 2 IP)
DEBT = 4  # a loan nobody repays
NEWCOMER = 8  # an investor holding nothing (the traders are accounts 4 to 7)
_encode = msgspec.json.Encoder().encode


def _venue() -> list[c.Entry]:
    """``test_markets_runs``' venue (traders with cash holding units of instruments 1, equity,
    and 2, IP) with two more instruments they hold, 3 (locked up) and 4 (debt), and the
    tradable ones' books open."""
    _, entries, traders, _ = markets_runs_venue()
    for project, terms in ((LOCKED, {"price": PRICE, "lockup_days": 30}),
                           (DEBT, {"face_value": PRICE, "term_months": 6, "lockup_days": 0,
                                   "repayment": "amortizing", "rate_bps": 900})):
        board = "debt" if project == DEBT else "equity"
        terms.update(min_quantity=1, max_quantity=10_000)
        entries.append(c.Entry(START_US, 3, oc.CreateProject(
            board, f"p{project}", "x", START_US + 30 * 86_400_000_000, terms)))
        entries.append(c.Entry(START_US, 2, oc.ReviewProject(project, True)))
        entries.extend(c.Entry(START_US, account, oc.Subscribe(project, 1000))
                       for account in traders)
        entries.append(c.Entry(START_US, 2, oc.CloseProject(project)))
    # An investor with cash and no units: its first order on an instrument opens a position.
    entries.append(c.Entry(START_US, 0, c.CreateAccount("investor", "new", "knew",
                                                        investor_class="institutional")))
    entries.append(c.Entry(START_US, 0, c.Deposit(NEWCOMER, 10**9, "dnew")))
    # The tradable instruments' books open (orders 1 to 3), as on a venue that has traded.
    for instrument in (1, 2, DEBT):
        entries.append(c.Entry(START_US, traders[0], mc.PlaceOrder(instrument, "buy", "limit",
                                                                   PRICE - 100, 1)))
    return entries


# Plain orders (no client_order_id, no key) most of the time, by any account (3 is the issuer,
# 2 and 0 are not investors either; the newcomer is), on any instrument (9 does not exist).
plain_ops = order_ops.map(lambda op: op[:10] + (None, None))
actor_ops = st.tuples(st.sampled_from([0, 2, 3, NEWCOMER, NEWCOMER]), plain_ops)
place_ops = st.one_of(plain_ops, plain_ops, plain_ops, plain_ops, order_ops,
                      actor_ops.map(lambda pair: ("as", *pair)))
cancel_ops = st.tuples(st.just("cancel"), st.integers(-1, TRADERS - 1),
                       st.one_of(st.integers(1, 40), st.integers(1, 200)))
other_ops = st.one_of(
    st.tuples(st.just("auction")),
    st.tuples(st.just("amend"), st.integers(0, TRADERS - 1), st.integers(1, 60),
              st.one_of(st.none(), st.integers(PRICE - 30, PRICE + 30)), st.just(None)),
    st.tuples(st.just("deposit"), st.integers(0, TRADERS - 1), st.integers(1, 10**6)),
    st.tuples(st.just("instrument"), st.sampled_from([LOCKED, DEBT, DEBT, 9]), plain_ops))
# A cancel of a recent order: ``back`` orders before the next one placed (0: an id that may
# not be given yet), by a trader or account 0 (-1).
recent_ops = st.tuples(st.just("recent"), st.integers(-1, TRADERS - 1), st.integers(0, 6))
ops = st.one_of(place_ops, place_ops, place_ops, place_ops, place_ops, cancel_ops, recent_ops,
                recent_ops, recent_ops, other_ops)
# Orders named by a client_order_id (the gateway's load client names every order), from a
# pool wide enough that many batches repeat none (the checks' set operations) and others
# repeat one or name a resting order's (the run is cut there, the rest goes to apply_run).
named_ops = st.tuples(plain_ops, st.integers(0, 300)).map(
    lambda pair: pair[0][:10] + (f"n{pair[1]}", None))
# Most live batches hold only plain orders and cancels (hypothesis favours the rarer branches
# of a one_of more than their share, so these are drawn apart).
plain_batch_ops = st.one_of(plain_ops, plain_ops, named_ops, named_ops,
                            actor_ops.map(lambda p: ("as", *p)), recent_ops, recent_ops,
                            cancel_ops)
# Steps between batches: the IP auction falls due within hours, the lock-up ends after 30
# days, the loan is in default after ~120 (its sells refused, its book open).
batches = st.lists(st.tuples(st.sampled_from([0, 0, 1, 50, HOUR_US, 7 * HOUR_US, 40 * DAY_US,
                                              150 * DAY_US]),
                             st.one_of(st.lists(plain_batch_ops, min_size=10, max_size=80),
                                       st.lists(ops, min_size=10, max_size=80))),
                   min_size=1, max_size=6)


def _command(op: tuple, actor: int, instrument: int) -> tuple[int, object, str | None]:
    """(actor, command, idempotency key) of an order tuple of ``order_ops``."""
    (_, _, inst, side, kind, price, qty, tif, post_only, stp, cid, key) = op
    if kind == "market":
        price, post_only = 0, False
    if tif != "gtc":
        post_only = False
    return actor, mc.PlaceOrder(instrument or inst + 1, side, kind, price, qty, tif, post_only,
                                stp, cid), key


def _entry(op: tuple, time_us: int) -> c.Entry:
    kind = op[0]
    if kind == "as":
        actor, command, key = _command(op[2], op[1], 0)
    elif kind == "instrument":
        actor, command, key = _command(op[2], 4 + op[2][1], op[1])
    elif kind == "order":
        actor, command, key = _command(op, 4 + op[1], 0)
    elif kind == "cancel":
        actor, command, key = (4 + op[1] if op[1] >= 0 else 0), mc.CancelOrder(op[2]), None
    elif kind == "auction":
        actor, command, key = 2, mc.RunAuction(2), None
    elif kind == "amend":
        actor, command, key = 4 + op[1], mc.AmendOrder(op[2], op[3], op[4]), None
    else:
        actor, command, key = 0, c.Deposit(4 + op[1], op[2], f"r{op[2]}"), None
    return c.Entry(time_us, actor, command, key, f"h{op}" if key else None)


def _machine() -> StateMachine:
    machine = StateMachine()
    for i, entry in enumerate(_venue()):
        machine.apply(i + 1, entry)
    machine.outbox.clear()
    return machine


def _outcome(machine: StateMachine, replies: list) -> tuple[list[bytes], list, str]:
    """Replies (encoded), published updates and the state hash."""
    return [_encode(reply) for reply in replies], list(machine.outbox), machine.state_hash()


def _one_at_a_time(drawn: list[tuple[int, list[tuple]]]
                   ) -> tuple[list[list[c.Entry]], tuple[list[bytes], list, str]]:
    """The drawn batches as entries, each batch at its time, applied one entry at a time; and
    what that gave. A recent order's cancel names the id ``back`` before the next one the
    engine gives as of its entry."""
    machine, time_us, stamped, replies = _machine(), START_US, [], []
    engine = machine.component("markets").engine
    for step, batch in drawn:
        time_us += step
        entries = []
        for op in batch:
            if op[0] == "recent":
                op = ("cancel", op[1], max(engine.next_order_id - op[2], 1))
            entries.append(_entry(op, time_us))
            replies.append(machine.apply(machine.last_sequence + 1, entries[-1]))
        stamped.append(entries)
    return stamped, _outcome(machine, replies)


def _in_batches(batches: list[list[c.Entry]], machine: StateMachine | None = None
                ) -> tuple[list[bytes], list, str]:
    """Each batch through ``apply_batch`` with its journal bytes, as the sequencer applies it
    (on ``machine``, a fresh ``_machine()`` by default); what that gave."""
    machine, replies = machine or _machine(), []
    for batch in batches:
        replies.extend(machine.apply_batch(machine.last_sequence + 1, batch,
                                           payloads=[c.encode_entry(e) for e in batch]))
    return _outcome(machine, replies)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(drawn=batches, smallest=st.sampled_from([1, 2, machine_module.LIVE_COLUMNS_MIN]),
       open_orders_max=st.sampled_from([2, 5, markets_module.OPEN_ORDERS_MAX]),
       slot_rows=st.sampled_from([10, 100, markets_live.SLOT_TABLES_ROWS_MAX]))
def test_a_batch_read_as_columns_gives_what_one_at_a_time_gives(drawn, smallest,
                                                                 open_orders_max, slot_rows):
    """Batches of any size (the columns' threshold lowered), with an open order limit that
    bites or not, and position rows cached, cached and often cleared, or never cached:
    replies byte for byte, the updates in order, the state hash."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(machine_module, "LIVE_COLUMNS_MIN", smallest)
        patch.setattr(machine_module, "LIVE_NAMED_COLUMNS_MIN", smallest)
        patch.setattr(markets_module, "OPEN_ORDERS_MAX", open_orders_max)
        patch.setattr(markets_live, "SLOT_TABLES_ROWS_MAX", slot_rows)
        batches, expected = _one_at_a_time(drawn)
        got = _in_batches(batches)
    assert got[0] == expected[0]
    assert got[1] == expected[1]
    assert got[2] == expected[2]


def test_a_plain_batch_is_checked_in_bulk_and_matched_in_one_kernel_call():
    """The columns path is taken: 200 crossing orders and cancels of some of them, one bulk
    run, one kernel call, no order queued one by one."""
    entries = []
    for n in range(200):
        if n % 10 == 9:
            entries.append(c.Entry(START_US, 4 + (n - 2) % 2, mc.CancelOrder(n - 1)))
        else:
            entries.append(c.Entry(START_US, 4 + n % 2, mc.PlaceOrder(
                1, "buy" if n % 2 else "sell", "limit", PRICE + n % 3, 1)))
    batches = [[entries[0]], entries[1:]]
    machine = _machine()
    markets = machine.component("markets")
    calls, queued = [], []
    process, place = markets.engine.process, markets._queue_place
    markets.engine.process = lambda *a, **kw: calls.append(len(a[0])) or process(*a, **kw)
    markets._queue_place = lambda *a: queued.append(a) or place(*a)
    machine.apply_batch(machine.last_sequence + 1, batches[0])
    calls.clear()
    replies = machine.apply_batch(machine.last_sequence + 1, batches[1],
                                  payloads=[c.encode_entry(e) for e in batches[1]])
    assert len(queued) == 1  # only the first batch's order, alone
    assert len(calls) == 1 and calls[0] >= 180  # the orders and the cancels the kernel reads
    assert sum(r.status == 201 for r in replies) == 179
    assert not markets.queued_by.any()  # the checks' scratch is left zeroed
    # The position rows the batch read are cached, each the machine's own.
    assert markets.slot_tables[1][4] == machine.balances.position_slots[(4, 1)]
    assert markets.slot_tables[1][5] == machine.balances.position_slots[(5, 1)]
    one = _machine()
    expected = [one.apply(one.last_sequence + 1, entry) for entry in entries]
    assert replies == expected[1:]
    assert machine.state_hash() == one.state_hash()


def _named_batch(ids: list[str]) -> list[c.Entry]:
    """Crossing orders of accounts 4 and 5 named ``ids`` in turn (a cancel every tenth)."""
    entries = []
    for n, cid in enumerate(ids):
        if n % 10 == 9:
            entries.append(c.Entry(START_US, 4 + (n - 2) % 2, mc.CancelOrder(n - 1)))
        else:
            entries.append(c.Entry(START_US, 4 + n % 2, mc.PlaceOrder(
                1, "buy" if n % 2 else "sell", "limit", PRICE + n % 3, 1,
                client_order_id=cid)))
    return entries


@pytest.mark.parametrize("clash", [None, "resting", "batch", "refused"])
def test_orders_named_by_client_ids_are_checked_in_bulk(clash):
    """A batch of orders each with a new client_order_id is one kernel call, no order queued
    one by one, the ids kept and followed in bulk. An order whose account has its id on a
    resting order, or on an earlier order of the batch, cuts the columns' run before it (the
    rest is queued one by one, and the kernel called again): replies and state are one at a
    time's either way, the repeated id refused or taken as that says. An order refused by
    the checks (the instrument not tradable) takes no id: its id on a later order of its
    account is no clash."""
    ids = [f"id{n}" for n in range(machine_module.LIVE_NAMED_COLUMNS_MIN + 40)]
    # 150 days on, the loan's sells are refused (what fell due by then, on the first entry).
    when = START_US + (150 * DAY_US if clash == "refused" else 0)
    rest = [c.Entry(when, 4, mc.PlaceOrder(1, "buy", "limit", PRICE - 90, 1,
                                           client_order_id="kept"))]
    if clash == "resting":
        ids[70] = "kept"  # account 4's, by account 4 (70 is even: a sell of 4)
    elif clash == "batch":
        ids[72] = ids[50]  # both account 4's
    entries = _named_batch(ids)
    if clash == "refused":  # a sell of the loan in default takes no id
        entries = [c.Entry(when, e.actor, e.command) for e in entries]
        entries[30] = c.Entry(when, 4, mc.PlaceOrder(DEBT, "sell", "limit", PRICE, 1,
                                                     client_order_id=ids[40]))  # 40: 4's
    machine = _machine()
    machine.apply(machine.last_sequence + 1, rest[0])
    markets = machine.component("markets")
    calls, queued = [], []
    process, place = markets.engine.process, markets._queue_place
    markets.engine.process = lambda *a, **kw: calls.append(len(a[0])) or process(*a, **kw)
    markets._queue_place = lambda *a: queued.append(a) or place(*a)
    first = machine.last_sequence + 1
    replies = machine.apply_batch(first, entries, payloads=[c.encode_entry(e) for e in entries])
    one = _machine()
    one.apply(one.last_sequence + 1, rest[0])
    expected = [one.apply(one.last_sequence + 1, entry) for entry in entries]
    assert [_encode(r) for r in replies] == [_encode(r) for r in expected]
    assert machine.state_hash() == one.state_hash()
    markets_one = one.component("markets")
    assert markets.lifecycle.open_client_ids == markets_one.lifecycle.open_client_ids
    assert markets.lifecycle.client_ids == markets_one.lifecycle.client_ids
    if clash in (None, "refused"):
        assert len(calls) == 1 and not queued
    else:
        cut = 70 if clash == "resting" else 72
        # The clashing order is the first queued one by one (its sequence).
        assert len(calls) == 2 and queued[0][3] == first + cut
        assert expected[cut].status == 409  # the order named so before it rests


@pytest.mark.parametrize("named", [False, True])
@pytest.mark.parametrize("more", [-1, 0])
def test_only_a_run_of_at_least_the_run_minimum_goes_the_columns_way(more, named):
    """Mixed traffic's short runs of orders cost more the columns way (fixed costs a call):
    they go to ``apply_run``, a run of LIVE_COLUMNS_MIN or more to the columns; a run with
    client_order_ids (a Python step each both ways) from LIVE_NAMED_COLUMNS_MIN."""
    least = (machine_module.LIVE_NAMED_COLUMNS_MIN if named
             else machine_module.LIVE_COLUMNS_MIN)
    orders = least + more
    entries = [c.Entry(START_US, 4 + n % 2, mc.PlaceOrder(
        1, "buy" if n % 2 else "sell", "limit", PRICE + n % 3, 1,
        client_order_id=f"c{n}" if named and (n + 1) % 3 else None)) for n in range(orders)]
    machine = _machine()
    markets = machine.component("markets")
    columns, scans = [], []
    apply_live_columns = markets.apply_live_columns
    markets.apply_live_columns = lambda *a: columns.append(a) or apply_live_columns(*a)
    scan = machine_module.scan_with_client_ids
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(machine_module, "scan_with_client_ids",
                      lambda *a: scans.append(1) or scan(*a))
        replies = machine.apply_batch(machine.last_sequence + 1, entries,
                                      payloads=[c.encode_entry(e) for e in entries])
    assert len(columns) == (orders >= least)
    # A batch too short for the columns is not even scanned (a named one's first entry says).
    assert len(scans) == (orders >= least)
    one = _machine()
    assert replies == [one.apply(one.last_sequence + 1, entry) for entry in entries]
    assert machine.state_hash() == one.state_hash()


def test_a_batch_whose_times_differ_is_not_one_run_at_the_first_time():
    """The sequencer stamps a batch once, but apply_batch takes any entries: a plain batch
    whose later entries are stamped later is not applied as one run at the first's time (each
    order's created time and the rest are one at a time's)."""
    entries = [c.Entry(START_US + (n >= 60) * HOUR_US, 4 + n % 2, mc.PlaceOrder(
        1, "buy" if n % 2 else "sell", "limit", PRICE + n % 3, 1))
        for n in range(machine_module.LIVE_COLUMNS_MIN + 16)]
    machine = _machine()
    replies = machine.apply_batch(machine.last_sequence + 1, entries,
                                  payloads=[c.encode_entry(e) for e in entries])
    one = _machine()
    assert replies == [one.apply(one.last_sequence + 1, entry) for entry in entries]
    assert machine.state_hash() == one.state_hash()


async def test_a_cluster_replicas_live_batch_goes_the_columns_way(tmp_path):
    """A replica applies a stream message's entries with their bytes, as the sequencer does
    (``ClusterEngine._apply``): a run of plain orders is read as columns, with the replies of
    one at a time."""
    from engine.clock import WallClock
    from engine.cluster import ClusterEngine
    from engine.log.jetstream import StreamBatch

    replica = ClusterEngine("nats://127.0.0.1:1", tmp_path, WallClock())  # never connected
    venue = _venue()
    orders = [c.Entry(START_US, 4 + n % 2, mc.PlaceOrder(
        1, "buy" if n % 2 else "sell", "limit", PRICE + n % 3, 1))
        for n in range(machine_module.LIVE_COLUMNS_MIN + 16)]
    markets = replica.machine.component("markets")
    columns = []
    apply_live_columns = markets.apply_live_columns
    markets.apply_live_columns = lambda *a: columns.append(a) or apply_live_columns(*a)
    for number, entries in enumerate((venue, orders), start=1):
        replies = replica._apply(StreamBatch(number, START_US, f"other:{number}",
                                             [c.encode_entry(e) for e in entries]))
    assert len(columns) == 1
    one = _machine()
    assert replies == [one.apply(one.last_sequence + 1, entry) for entry in orders]
    assert replica.machine.state_hash() == one.state_hash()


def _buy(actor: int, price: int = PRICE - 50, instrument: int = 1) -> tuple:
    return ("as", actor, ("order", 0, instrument - 1, "buy", "limit", price, 1, "gtc", False,
                          "cancel_newest", None, None))


@pytest.mark.parametrize("batch", [
    [_buy(4), ("recent", -1, 1)],  # account 0 cancels an order of the batch: 404
    [_buy(4), ("recent", 1, 1), ("recent", 0, 1)],  # another's (404), then its owner's
    [("cancel", 0, 1), ("cancel", 0, 1), _buy(4)],  # its own finished order first (409)
    [_buy(5), ("recent", 1, 0), _buy(4), ("recent", 0, 0)],  # ids not given yet: 404
    [_buy(3), _buy(2), _buy(0), _buy(4)],  # by accounts that are not investors: forbidden
    [_buy(NEWCOMER, PRICE, 2), _buy(4), _buy(NEWCOMER), _buy(NEWCOMER)],  # new positions
    [_buy(4), ("instrument", LOCKED, ("order", 0, 0, "buy", "limit", PRICE, 1, "gtc", False,
                                      "cancel_newest", None, None)), _buy(4)],  # no book yet
    # The loan in default (150 days on): its sells refused, its buys not.
    [_buy(4, PRICE, DEBT), ("instrument", DEBT, ("order", 1, 0, "sell", "limit", PRICE, 1, "gtc",
                                                 False, "cancel_newest", None, None)),
     _buy(5, PRICE, DEBT)],
    # The same with a buy of the loan first in the run (the first entry at a new time is
    # applied alone): the sell after it is checked for its own side (the run reads the
    # instrument's info once for both sides).
    [_buy(4), _buy(4, PRICE, DEBT), ("instrument", DEBT, ("order", 1, 0, "sell", "limit",
                                                          PRICE, 1, "gtc", False,
                                                          "cancel_newest", None, None)),
     _buy(5, PRICE, DEBT)],
])
@pytest.mark.parametrize("columns_min", [1, 10**6])
def test_a_batchs_cancels_and_refusals_read_as_columns(batch, columns_min):
    """Cases of ``markets_live``'s checks, each in a batch 150 days after one that fills order
    1 (so a cancel of it is of a finished order), the threshold lowered to take them as
    columns, or raised to check them in ``apply_run``."""
    fill = [("as", 5, ("order", 0, 0, "sell", "limit", PRICE - 100, 1, "gtc", False,
                       "cancel_newest", None, None))]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(machine_module, "LIVE_COLUMNS_MIN", columns_min)
        patch.setattr(machine_module, "LIVE_NAMED_COLUMNS_MIN", columns_min)
        batches, expected = _one_at_a_time([(0, fill), (150 * DAY_US, batch)])
        got = _in_batches(batches)
    assert got == expected


def _sell(actor: int, price: int, instrument: int = DEBT) -> tuple:
    return ("as", actor, ("order", 0, instrument - 1, "sell", "limit", price, 1, "gtc", False,
                          "cancel_newest", None, None))


# Order 4 is trader 5's sell of the loan, resting (placed while the loan was sound).
@pytest.mark.parametrize(("batch", "refused"), [
    # An amend that re-enters (a new price) is checked as a new order of its side: the loan
    # in default refuses it, whatever the run's orders there met before it (none, a buy that
    # passed, a sell refused).
    ([_buy(4), ("amend", 1, 4, PRICE + 200, None)], True),
    ([_buy(4), _buy(6, PRICE, DEBT), ("amend", 1, 4, PRICE + 200, None)], True),
    ([_buy(4), _sell(6, PRICE + 300), ("amend", 1, 4, PRICE + 200, None)], True),
    # A buy of the loan re-enters after the run's buys there passed, or alone.
    ([_buy(4), _buy(6, PRICE - 300, DEBT), ("amend", 0, 5, PRICE - 200, None)], False),
    ([_buy(4), ("amend", 0, 5, PRICE - 200, None)], False),
])
def test_an_amend_in_a_run_meets_its_own_sides_rules(batch, refused):
    """``Markets._queue_amend`` reads the run's verdict on its instrument and side where the
    run's orders met the rules there (``tradable``), and asks them otherwise; order 5 is
    trader 4's resting buy of the loan."""
    setup = [_sell(5, PRICE + 100), _buy(4, PRICE - 400, DEBT)]
    batches, expected = _one_at_a_time([(0, setup), (150 * DAY_US, batch)])
    got = _in_batches(batches)
    assert got == expected
    status, body = msgspec.json.decode(got[0][-1])
    assert status == (422 if refused else 200)
    assert ("in default" in body["error"]["message"]) if refused else body["status"] == "open"
