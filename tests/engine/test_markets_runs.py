"""Runs of orders and cancels applied together give exactly what one at a time gives.

The sequencer hands a whole batch to ``StateMachine.apply_batch``, which matches consecutive
orders and cancels with as few kernel calls as exactness allows. Replay applies the journal one
entry at a time. Hypothesis generates order flow across traders and instruments (every order
type, self-trade prevention, cancels of own, foreign, finished and not-yet-existing orders,
reused client_order_ids and Idempotency-Keys, prices beyond the band) cut into random batches;
the replies, the published updates and the state hash must equal entry-by-entry application.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.machine import StateMachine
from engine.markets import Markets

START_US = 1_767_225_600_000_000  # 2026-01-01
EXAMPLES = 3000 if os.environ.get("CROWDEX_SLOW") else 60
TRADERS = 4
PRICE = 10_00


def _venue() -> tuple[StateMachine, list[c.Entry], list[int], list[int]]:
    """Setup entries: traders with cash, two instruments in trading, everyone holding both."""
    entries = [c.Entry(START_US, 0, c.Genesis("h", True, START_US, "intl", c.RULES_VERSION)),
               c.Entry(START_US, 0, c.CreateAccount("issuer", "issuer", "kis"))]
    traders = list(range(4, 4 + TRADERS))
    for n, account in enumerate(traders):
        entries.append(c.Entry(START_US, 0, c.CreateAccount(
            "investor", f"t{n}", f"k{n}", investor_class="institutional")))
        entries.append(c.Entry(START_US, 0, c.Deposit(account, 10**9, f"d{n}")))
    instruments = []
    for n, board in enumerate(("equity", "ip")):
        project = 1 + n
        terms = {"price": PRICE, "min_quantity": 1, "max_quantity": 10_000, "lockup_days": 0}
        if board == "ip":
            terms["royalty_share_bps"] = 1000
        entries.append(c.Entry(START_US, 3, oc.CreateProject(
            board, f"p{n}", "x", START_US + 30 * 86_400_000_000, terms)))
        entries.append(c.Entry(START_US, 2, oc.ReviewProject(project, True)))
        for account in traders:
            entries.append(c.Entry(START_US, account, oc.Subscribe(project, 1000)))
        entries.append(c.Entry(START_US, 2, oc.CloseProject(project)))
        instruments.append(project)
    return StateMachine(), entries, traders, instruments


order_ops = st.tuples(
    st.just("order"),
    st.integers(0, TRADERS - 1),  # trader
    st.integers(0, 1),  # instrument (0 equity book, 1 IP auction)
    st.sampled_from(["buy", "sell"]),
    st.sampled_from(["limit", "limit", "limit", "market"]),
    # Near the offering price, or where the band (1 fen to 5x the last trade) bites.
    st.one_of(st.integers(PRICE - 30, PRICE + 30),
              st.sampled_from([1, 2, 150, 400, 700, 751, 2000, 3500, 3501, 4999, 5000, 5001,
                               7000, 25_000, 60_000])),
    st.integers(1, 40),
    st.sampled_from(["gtc", "gtc", "ioc", "fok"]),
    st.booleans(),  # post-only (when allowed)
    st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]),
    st.one_of(st.none(), st.sampled_from(["a", "b", "c"])),  # client_order_id
    st.one_of(st.none(), st.sampled_from(["k1", "k2"])),  # Idempotency-Key
)
cancel_ops = st.tuples(st.just("cancel"), st.integers(0, TRADERS - 1), st.integers(1, 80))
auction_ops = st.tuples(st.just("auction"))
# Amends name an early order more often than not, so that they find orders the run's commands
# before them fill, cancel or amend (engine.kernels.amends decides whether they wait for those).
amend_ops = st.tuples(st.just("amend"), st.integers(0, TRADERS - 1),
                      st.one_of(st.integers(1, 12), st.integers(1, 80)),
                      st.one_of(st.none(), st.integers(PRICE - 30, PRICE + 30)),
                      st.one_of(st.none(), st.integers(1, 60)))
flows = st.lists(st.one_of(order_ops, order_ops, order_ops, cancel_ops, auction_ops, amend_ops),
                 min_size=1, max_size=120)


def _entry(op: tuple, traders: list[int], instruments: list[int]) -> c.Entry:
    if op[0] == "auction":
        return c.Entry(START_US, 2, mc.RunAuction(instruments[1]))
    if op[0] == "cancel":
        return c.Entry(START_US, traders[op[1]], mc.CancelOrder(op[2]))
    if op[0] == "amend":
        return c.Entry(START_US, traders[op[1]], mc.AmendOrder(op[2], op[3], op[4]))
    (_, who, inst, side, kind, price, qty, tif, post_only, stp, cid, key) = op
    if kind == "market":
        price, post_only = 0, False
    if tif != "gtc":
        post_only = False
    command = mc.PlaceOrder(instruments[inst], side, kind, price, qty, tif, post_only, stp, cid)
    return c.Entry(START_US, traders[who], command, key, f"h{op}" if key else None)


def _applied(machine: StateMachine, entries: list[c.Entry], cuts: list[int] | None):
    """Replies, published updates and state hash, one entry at a time or in batches."""
    replies, published = [], []
    first = machine.last_sequence + 1
    if cuts is None:
        for i, entry in enumerate(entries):
            replies.append(machine.apply(first + i, entry))
    else:
        start = 0
        for end in [*cuts, len(entries)]:
            if end > start:
                replies.extend(machine.apply_batch(first + start, entries[start:end]))
                start = end
    published.extend(machine.outbox)
    machine.outbox.clear()
    return replies, published


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows, cut_seed=st.lists(st.integers(0, 120), max_size=8))
def test_batched_runs_equal_one_entry_at_a_time(flow, cut_seed):
    one, setup, traders, instruments = _venue()
    batched = StateMachine()
    for i, entry in enumerate(setup):
        one.apply(i + 1, entry)
        batched.apply(i + 1, entry)
    one.outbox.clear()
    batched.outbox.clear()
    entries = [_entry(op, traders, instruments) for op in flow]
    cuts = sorted({x for x in cut_seed if 0 < x < len(entries)})
    expected = _applied(one, entries, None)
    got = _applied(batched, entries, cuts)
    assert got[0] == expected[0]  # replies
    assert got[1] == expected[1]  # published updates, in order
    assert batched.state_hash() == one.state_hash()


def test_a_run_really_matches_in_one_kernel_call():
    """The batched path is taken: many crossing orders, one kernel call."""
    machine, setup, traders, instruments = _venue()
    for i, entry in enumerate(setup):
        machine.apply(i + 1, entry)
    markets = machine.component("markets")
    calls = []
    process = markets.engine.process
    markets.engine.process = lambda *a, **kw: calls.append(len(a[0])) or process(*a, **kw)
    entries = [c.Entry(START_US, traders[n % 2], mc.PlaceOrder(
        instruments[0], "buy" if n % 2 else "sell", "limit", PRICE, 1)) for n in range(200)]
    replies = machine.apply_batch(machine.last_sequence + 1, entries)
    assert [r.status for r in replies] == [201] * 200
    assert calls == [200]
    assert sum(len(r.body["fills"]) for r in replies) == 100


def _both(flow: list[tuple], cuts: list[int], kernel_calls: list[int] | None = None):
    """The flow one at a time and cut at ``cuts``; the batched machine's kernel calls (their
    sizes) added to ``kernel_calls`` if given."""
    one, setup, traders, instruments = _venue()
    batched = StateMachine()
    for i, entry in enumerate(setup):
        one.apply(i + 1, entry)
        batched.apply(i + 1, entry)
    if kernel_calls is not None:
        engine = batched.component("markets").engine
        process = engine.process
        engine.process = lambda *a, **kw: kernel_calls.append(len(a[0])) or process(*a, **kw)
    entries = [_entry(op, traders, instruments) for op in flow]
    return _applied(one, entries, None), _applied(batched, entries, cuts), one, batched


def _order(who: int, side: str, price: int, qty: int = 1, kind: str = "limit") -> tuple:
    return ("order", who, 0, side, kind, price, qty, "gtc", False, "cancel_newest", None, None)


_AWAY = _order(1, "buy", PRICE - 5, 4)[:2] + (1,) + _order(1, "buy", PRICE - 5, 4)[3:]
_AWAY_OPS = order_ops.map(lambda op: op[:2] + (1,) + op[3:])  # on the IP instrument


@pytest.mark.parametrize("between, amend", [
    # A fill on the order's instrument before the amend: what it reads has changed (4 filled).
    ([_order(1, "buy", PRICE, 4)], (0, 1, None, 8)),
    ([_order(1, "buy", PRICE, 4)], (0, 1, None, 3)),  # now at most what is filled: refused
    ([_order(1, "buy", PRICE, 10)], (0, 1, PRICE + 1, None)),  # filled: no longer open
    ([("cancel", 0, 1)], (0, 1, None, 8)),  # its own cancel, queued before the amend
    ([("cancel", 0, 1)], (0, 1, None, None)),  # cancelled: 409 before the missing fields
    ([("amend", 0, 1, None, 6)], (0, 1, None, 8)),  # an amend of it, queued before
    ([_AWAY], (1, 4, PRICE - 4, None)),  # an order the queue gives its id to, elsewhere
    # Its own post-only order, placed in the same queue, amended onto the bid: refused (the
    # kernel decides a new price only of an order the queue places where the actor has no
    # post-only order queued: its flag would be unknown).
    ([("order", 0, 0, "sell", "limit", PRICE + 5, 3, "gtc", True, "cancel_newest", None,
       None)], (0, 4, PRICE - 10, None)),
    ([_order(0, "sell", PRICE + 5, 3)], (0, 4, PRICE - 10, None)),  # not post-only: trades
    ([_order(1, "buy", 0, 4, "market")], (0, 1, None, 8)),  # a market order of the other side
    ([_order(0, "buy", PRICE + 1, 2)], (0, 1, None, 8)),  # its own, crossing (self-trade)
    ([_order(1, "buy", PRICE + 1, 4)], (0, 1, None, 8)),  # beyond its price
    ([_order(1, "sell", PRICE - 11, 4)], (2, 2, None, 8)),  # the bid: beyond its price
    ([_order(1, "sell", PRICE - 10, 4)], (2, 2, PRICE - 12, None)),  # at its price
    ([("amend", 0, 1, PRICE - 10, None)], (2, 2, None, 8)),  # the ask amended onto the bid
    # Commands that leave it as it is: the amend joins their kernel call.
    ([_AWAY], (0, 1, None, 8)),
    ([("cancel", 1, 7)], (0, 1, PRICE + 2, 12)),
    ([_order(1, "sell", PRICE - 1, 4)], (0, 1, None, 8)),  # its own side, even better priced
    ([_order(1, "buy", PRICE - 1, 4)], (0, 1, PRICE - 1, 8)),  # short of its price...
    ([_order(1, "buy", PRICE - 1, 4)], (0, 1, None, 8)),
    ([_order(1, "sell", PRICE - 9, 4)], (2, 2, None, 8)),  # the bid, short of its price
])
def test_an_amend_in_a_run_reads_its_order_as_of_its_turn(between, amend):
    """An amend joins the queued commands' kernel call only if none of them can change its
    order; either way its reply and the state are those of one entry at a time."""
    rest, bid = _order(0, "sell", PRICE, 10), _order(2, "buy", PRICE - 10, 10)  # ids 1, 2
    away = _order(2, "buy", 1)[:2] + (1,) + _order(2, "buy", 1)[3:]  # the other instrument
    flow = [rest, bid, away, *between, away, ("amend", *amend), _order(3, "sell", PRICE + 9)]
    for cuts in ([1], [3], [1, 2, 4]):
        (one_replies, one_published), (got, published), one, batched = _both(flow, cuts)
        assert got == one_replies
        assert published == one_published
        assert batched.state_hash() == one.state_hash()


@pytest.mark.parametrize("between, amend, calls", [
    # An amend of the bid that stays short of the ask: the ask's amend joins its call.
    ([("amend", 2, 2, PRICE - 11, None)], (0, 1, None, 8), 2),
    ([("amend", 2, 2, None, 4)], (0, 1, PRICE + 1, None), 2),  # the bid only lowered
    # An amend of another ask (its row says no side: the order's is read): joins too.
    # (Order 3 is new: its amend waits for the call that gives it its id.)
    ([_order(1, "sell", PRICE + 5, 3), ("amend", 1, 3, PRICE + 2, None)], (0, 1, None, 8), 3),
    # The bid amended onto the ask fills 4 of it: the ask's amend waits for that call.
    ([("amend", 2, 2, PRICE, 4)], (0, 1, None, 8), 3),
    ([("amend", 2, 2, PRICE + 3, 4)], (0, 1, None, 8), 3),
])
@pytest.mark.parametrize("later", [False, True])
def test_an_amend_joins_the_call_of_amends_that_cannot_reach_its_order(monkeypatch, between,
                                                                        amend, calls, later):
    """Queued amends of other orders are read as limits of their orders' sides: one of its
    own side, or short of its price, leaves the order as it is, and the amend joins their
    kernel call; else it waits for that call, unless the kernel decides it at its turn
    (``later``: ``Markets._amend_later``, which these amends all pass). The replies and
    state are those of one entry at a time either way."""
    if not later:
        monkeypatch.setattr(Markets, "_amend_later", lambda *args: False)
    calls = 2 if later else calls
    rest, bid = _order(0, "sell", PRICE, 10), _order(2, "buy", PRICE - 10, 10)  # ids 1, 2
    sizes: list[int] = []
    # The resting orders in a batch, then the rest in one.
    expected, got, one, batched = _both([rest, bid, *between, ("amend", *amend)], [2], sizes)
    assert got == expected
    assert batched.state_hash() == one.state_hash()
    assert len(sizes) == calls, sizes


@pytest.mark.parametrize("between, calls", [
    # A market buy of 4 takes from the ask at the price, 10 ahead of the amended ask: the
    # amend joins its kernel call (engine.kernels.amends.covered_ahead).
    ([_order(3, "buy", 0, 4, "market")], 2),
    ([_order(3, "buy", PRICE + 2, 9)], 2),  # a limit reaching the amended ask's price
    ([_order(3, "buy", 0, 10, "market")], 3),  # may take all 10 ahead: it waits
    ([_order(3, "buy", 0, 3, "market"), _order(3, "buy", 0, 7, "market")], 3),  # together
    ([_order(0, "buy", 0, 4, "market")], 3),  # by the ask's owner: self-trade prevention
    ([_order(1, "buy", 0, 4, "market")], 3),  # by the amended ask's own owner
    ([("cancel", 0, 1), _order(3, "buy", 0, 4, "market")], 3),  # the ask ahead cancelled
    ([("amend", 0, 1, None, 4), _order(3, "buy", 0, 1, "market")], 3),  # ahead, amended
])
@pytest.mark.parametrize("later", [False, True])
def test_an_amend_behind_enough_resting_orders_joins_the_orders_that_may_cross_it(
        monkeypatch, between, calls, later):
    """Queued orders of the other side that may trade with an amended order leave it as it
    is while the orders resting ahead of it hold more than they can take: the amend joins
    their kernel call. Not when an order ahead may go first (a cancel, an amend, self-trade
    prevention against its owner) or the amended order's owner is the buyer: it waits for
    their call then, unless the kernel decides it at its turn (``later``:
    ``Markets._amend_later``, which these amends all pass). Replies and state are those of
    one entry at a time either way."""
    if not later:
        monkeypatch.setattr(Markets, "_amend_later", lambda *args: False)
    calls = 2 if later else calls
    resting = [_order(0, "sell", PRICE, 10), _order(1, "sell", PRICE + 2, 5),  # ids 1, 2
               _order(2, "buy", PRICE - 10, 10)]
    sizes: list[int] = []
    expected, got, one, batched = _both([*resting, *between, ("amend", 1, 2, None, 8)], [3],
                                        sizes)
    assert got == expected
    assert batched.state_hash() == one.state_hash()
    assert len(sizes) == calls, sizes


def test_a_new_price_decided_later_may_take_its_orders_whole_quantity():
    """A bid's new price decided by the kernel at its turn (its row says no quantity: the
    bid's remaining then) may take as much as the bid's quantity in all from the asks:
    so the ask behind 5 units of a better one, amended next, may trade first, and its amend
    is decided at its turn too, by its quantity in all (``amends.covered_ahead``). Replies
    and state are those of one entry at a time."""
    resting = [_order(0, "sell", PRICE, 5), _order(1, "sell", PRICE + 2, 5),  # ids 1, 2
               _order(2, "buy", PRICE - 10, 10)]  # id 3
    flow = [*resting, _order(3, "sell", 0, 1, "market"),  # the bid may change: decided later
            ("amend", 2, 3, PRICE + 2, None),  # takes 5 of id 1 and 4 of id 2
            ("amend", 1, 2, None, 8)]  # id 2: 4 filled by then, 4 more
    expected, got, one, batched = _both(flow, [3])
    assert got == expected
    assert batched.state_hash() == one.state_hash()
    orders = one.component("markets").lifecycle.records
    assert orders[["quantity", "filled"]][2].tolist() == (8, 4)


@pytest.mark.parametrize("kept, amend, calls", [
    # The ask (id 1) filled before the run: its amends are refused as of their turn, 409 to
    # its owner, 404 to another account, and do not wait for the queued orders' call.
    (100_000, (0, 1, None, 8), 2),
    (100_000, (1, 1, None, 8), 2),
    # Few finished orders kept: the queued orders may finish enough to evict it (404 then,
    # with two kept), so the amend waits for their call.
    (3, (0, 1, None, 8), 3),
    (2, (0, 1, None, 8), 3),
])
def test_an_amend_of_a_finished_order_waits_only_if_it_may_be_evicted(monkeypatch, kept,
                                                                       amend, calls):
    """An amend of a finished order reads 404 or 409; the queue before it can change that
    only by evicting the order from the kept ones (``Markets._stays_finished``)."""
    import engine.markets

    monkeypatch.setattr(engine.markets, "FINISHED_ORDERS_KEPT", kept)
    filled = [_order(0, "sell", PRICE, 2), _order(1, "buy", PRICE, 2)]  # id 1 fills (and 2)
    queued = [_order(2, "buy", PRICE - 10, 1), _order(3, "sell", PRICE - 10, 1, "limit"),
              _order(2, "buy", PRICE - 20, 1)]  # one more finished, one resting
    sizes: list[int] = []
    after = _order(2, "buy", PRICE - 30, 1)
    expected, got, one, batched = _both([*filled, *queued, ("amend", *amend), after], [2],
                                        sizes)
    assert got == expected
    assert got[0][-2].status == (409 if amend[0] == 0 and kept > 2 else 404)
    assert batched.state_hash() == one.state_hash()
    assert len(sizes) == calls, sizes


@pytest.mark.parametrize("kept, calls", [(100_000, 2), (5, 2), (4, 3), (3, 3)])
def test_resting_orders_a_queued_order_may_finish_count_towards_an_eviction(monkeypatch,
                                                                            kept, calls):
    """Two finished orders kept (ids 2 and 1, in the order they finished) and two resting:
    a queued market buy may finish both and itself, evicting both kept ones with three kept
    (the amend's 404). The amend waits for that order's call unless even that would leave
    the amended order kept."""
    import engine.markets

    monkeypatch.setattr(engine.markets, "FINISHED_ORDERS_KEPT", kept)
    setup = [_order(0, "sell", PRICE, 2), _order(1, "buy", PRICE, 2),  # ids 1, 2: finished
             _order(0, "sell", PRICE, 1), _order(0, "sell", PRICE + 1, 1)]  # ids 3, 4 rest
    sweep = _order(2, "buy", 0, 2, "market")
    sizes: list[int] = []
    expected, got, one, batched = _both(
        [*setup, sweep, ("amend", 0, 1, None, 8), _order(2, "buy", PRICE - 30, 1)], [4], sizes)
    assert got == expected
    assert got[0][-2].status == (404 if kept == 3 else 409)
    assert batched.state_hash() == one.state_hash()
    assert len(sizes) == calls, sizes


# Bids below the offering price, asks at or above it: they rest without trading each other.
resting_ops = st.lists(st.tuples(st.integers(0, TRADERS - 1), st.integers(0, 4),
                                 st.sampled_from(["buy", "sell"]), st.integers(1, 20)),
                       min_size=1, max_size=8)
# An amend of a resting order (by its owner, or by a trader drawn: the test fills it in).
near_amends = st.tuples(st.just("amend"), st.one_of(st.none(), st.none(),
                                                    st.integers(0, TRADERS - 1)),
                        st.integers(1, 8), st.one_of(st.none(), st.integers(PRICE - 6, PRICE + 6)),
                        st.one_of(st.none(), st.integers(1, 30)))
# Limits on the equity book near the resting orders, and market orders: most fill some of
# them.
book_orders = st.builds(lambda who, side, price, qty, market: _order(
    who, side, 0 if market else price, qty, "market" if market else "limit"),
    st.integers(0, TRADERS - 1), st.sampled_from(["buy", "sell"]),
    st.integers(PRICE - 4, PRICE + 3), st.integers(1, 10), st.sampled_from([False] * 3 + [True]))


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(resting=resting_ops,
       later=st.lists(st.one_of(book_orders, book_orders, near_amends, near_amends, cancel_ops,
                                _AWAY_OPS), min_size=1, max_size=30),
       cut_seed=st.lists(st.integers(0, 50), max_size=3))
def test_amends_of_resting_orders_in_a_run_equal_one_entry_at_a_time(resting, later, cut_seed):
    """Orders rest first (a batch of their own); then a batch of orders that may fill them,
    amends of them (joining the queued commands' kernel call when those cannot change the
    order: ``engine.kernels.amends``), cancels and orders elsewhere."""
    flow = [("order", who, 0, side, "limit", PRICE + step if side == "sell" else PRICE - 1 - step,
             qty, "gtc", False, "cancel_newest", None, None)
            for who, step, side, qty in resting]
    for op in later:
        if op[0] == "amend":  # of a resting order, by its owner unless a trader is drawn
            oid = (op[2] - 1) % len(resting) + 1
            owner = resting[oid - 1][0] if op[1] is None else op[1]
            op = ("amend", owner, oid, *op[3:])
        flow.append(op)
    cuts = sorted({len(resting), *(len(resting) + x for x in cut_seed if 0 < x < len(later))})
    (one_replies, one_published), (got, published), one, batched = _both(flow, cuts)
    assert got == one_replies
    assert published == one_published
    assert batched.state_hash() == one.state_hash()


def test_the_band_follows_each_trade_inside_a_run():
    """A trade at 4.00 narrows the band to 20.00 for the very next order of the same run."""
    flow = [_order(0, "sell", 4_00), _order(1, "buy", 4_00), _order(1, "buy", 35_00),
            _order(2, "buy", 20_00), _order(3, "buy", 1, 5, "market")]
    expected, got, one, batched = _both(flow, [])
    assert [r.status for r in expected[0]] == [201, 201, 422, 201, 201]
    assert expected[0][2].body["error"]["code"] == "price_out_of_band"
    assert got == expected
    assert batched.state_hash() == one.state_hash()


def test_the_band_widens_inside_a_run_and_the_ladder_follows():
    """A trade at 49.00 lifts the band to 245.00: the next order of the run, at 200.00, lies
    beyond the ladder laid for the old band; the kernel stops, the ladder is widened, and the
    order rests there, as it does one at a time."""
    flow = [_order(0, "sell", 49_00), _order(1, "buy", 49_00), _order(2, "buy", 200_00),
            _order(3, "buy", 246_00), _order(0, "sell", 200_00)]
    expected, got, one, batched = _both(flow, [])
    assert [r.status for r in expected[0]] == [201, 201, 201, 422, 201]
    assert expected[0][3].body["error"]["code"] == "price_out_of_band"
    assert [f["price"] for f in expected[0][4].body["fills"]] == [200_00]
    assert got == expected
    assert batched.state_hash() == one.state_hash()
    row = batched.component("markets").engine.instruments[1]
    assert row["ladder_lo"] + row["ladder_width"] > 200_00 > 5 * PRICE


def test_a_snapshot_keeps_the_order_in_which_orders_finished(monkeypatch):
    """Finished orders are evicted oldest finish first; a state loaded from a snapshot must
    evict the same ones as the live state (here order 2 finishes before order 1)."""
    import engine.markets

    monkeypatch.setattr(engine.markets, "FINISHED_ORDERS_KEPT", 2)
    ioc = ("order", 1, 0, "buy", "limit", 1, 1, "ioc", False, "cancel_newest", None, None)
    live, setup, traders, instruments = _venue()
    for i, entry in enumerate(setup):
        live.apply(i + 1, entry)
    flow = [_order(0, "buy", PRICE - 1), ioc, ("cancel", 0, 1)]  # finished: 2, then 1
    _applied(live, [_entry(op, traders, instruments) for op in flow], None)
    restored = StateMachine()
    restored.load({name: a.copy() for name, a in live.arrays().items()}, live.meta())
    assert restored.state_hash() == live.state_hash()
    more = [_entry(ioc, traders, instruments)]  # order 3 finishes: order 2 is evicted
    _applied(live, more, None)
    _applied(restored, more, None)
    assert list(live.component("markets").finished) == [1, 3]
    assert restored.component("markets").finished == live.component("markets").finished
    assert restored.state_hash() == live.state_hash()


def test_a_snapshot_is_the_state_when_taken_even_if_encoded_later(monkeypatch):
    """The sequencer takes a snapshot between batches and encodes it in a thread while the
    next batches run: what it encodes must be the state when it was taken."""
    import engine.markets

    monkeypatch.setattr(engine.markets, "FINISHED_ORDERS_KEPT", 3)
    live, setup, traders, instruments = _venue()
    for i, entry in enumerate(setup):
        live.apply(i + 1, entry)
    flow = [_order(0, "sell", PRICE, 5), _order(1, "buy", PRICE - 1, 2),
            _order(1, "buy", PRICE, 1), _order(2, "buy", PRICE, 1)]
    _applied(live, [_entry(op, traders, instruments) for op in flow], None)
    taken_hash = live.state_hash()
    arrays = {name: a.copy() for name, a in live.arrays().items()}
    encode = live.meta_later()
    # Then: the open sell fills and finishes, the resting buy is cancelled, orders are evicted.
    more = [_order(3, "buy", PRICE, 3), ("cancel", 1, 2), _order(2, "buy", PRICE, 1, "market")]
    _applied(live, [_entry(op, traders, instruments) for op in more], None)
    assert live.state_hash() != taken_hash
    restored = StateMachine()
    restored.load(arrays, encode())
    assert restored.state_hash() == taken_hash


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=flows)
def test_the_folds_shortcut_for_a_resting_order_equals_the_general_fold(flow):
    """The reference model's FOLD_FAST_PATH on and off: the same replies, published updates
    and state. (The model, ``engine.reference.markets``, is the per-order Python fold the
    compiled one replaced; tests/engine/test_lifecycle_property.py compares the two.)"""
    from unittest import mock

    from engine import machine as machine_module
    from engine.reference import markets

    components = tuple(("engine.reference.markets", "Markets") if module == "engine.markets"
                       else (module, name) for module, name in machine_module.COMPONENTS)
    results = []
    for fast in (True, False):
        with (mock.patch.object(markets, "FOLD_FAST_PATH", fast),
              mock.patch.object(machine_module, "COMPONENTS", components)):
            _, setup, traders, instruments = _venue()
            machine = StateMachine()
            assert type(machine.component("markets")) is markets.Markets
            for i, entry in enumerate(setup):
                machine.apply(i + 1, entry)
            machine.outbox.clear()
            entries = [_entry(op, traders, instruments) for op in flow]
            replies, published = _applied(machine, entries, [len(entries) // 2])
            results.append((replies, published, machine.state_hash()))
    assert results[0] == results[1]
