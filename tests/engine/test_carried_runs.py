"""Runs of orders that carry the commands between them give what one entry at a time gives.

While quiet (a replay), ``StateMachine.apply_batch`` lets a run of orders carry the deposits,
withdrawals, subscriptions and subscription cancels between them, applied before the run's
orders where none of the orders before them can change what they read (``_carries``), with
a deposit's or withdrawal's shown cash completed after the run (``_show_cash``), a refused
subscription cut out of the run, and the movements put back in sequence order. Hypothesis
writes traffic of a busy venue in miniature: traders short of cash (buys and subscriptions
refused for it, and succeeding once a maker's sale brought the cash), deposits and
withdrawals to traders with resting orders, to the fee account, to accounts that are not
there yet (opened in the traffic, with orders before and after) or ever, repeated references
(the same amount, another amount), ticks, subscriptions to an offering
that sells out and whose deadline falls inside the traffic, their cancels, product offerings
listed, reviewed and pledged to in the traffic (their closes a day or two on), amends, orders
with client_order_ids and self-trade prevention, idempotency keys (retried, reused for
another request; a retry is answered in the run, which goes on over it), exchange times that
move on, under the rules of today and of version 3.
Replies (the kept ones: deposits', withdrawals', keyed entries'), and the state hash must be
those of one entry at a time, however the traffic is cut into batches.
"""

from __future__ import annotations

import os
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.replay
from engine import commands as c
from engine import markets_commands as mc
from engine import offerings_commands as oc
from engine.machine import StateMachine
from settlement.commands import BatchCommitted, PrepareSettlement
from tests.engine.test_journal_replay import apply_in_chunks

START_US = 1_767_225_600_000_000  # 2026-01-01
DAY_US = 86_400_000_000
EXAMPLES = 2000 if os.environ.get("CROWDEX_SLOW") else 100
TRADERS = [4, 5, 6, 7]
ISSUER, OPERATOR, FEE = 3, 2, 1
PRICE = 10_00
BOOKS = (1, 2)  # instruments in trading
OFFERING = 3  # open for subscriptions until its deadline
DEADLINE_US = START_US + 3 * DAY_US
CASH_FEN = 600_000  # each trader's; 500_000 of it goes into the books' offerings


def _setup(rules: int) -> list[c.Entry]:
    """Traders left with 100_000 fen each and 250 units of each book; the offering open,
    listed 25 days before the traffic starts (an equity offering runs 21 days at least)."""
    at = START_US - 25 * DAY_US
    entries = [c.Entry(at, 0, c.Genesis("h", False, at, "intl", rules)),
               c.Entry(at, 0, c.CreateAccount("issuer", "issuer", "kis"))]
    for n, account in enumerate(TRADERS):
        entries.append(c.Entry(at, 0, c.CreateAccount(
            "investor", f"t{n}", f"k{n}", investor_class="institutional")))
        entries.append(c.Entry(at, 0, c.Deposit(account, CASH_FEN, f"d{n}")))
    for project in (*BOOKS, OFFERING):
        terms = {"price": PRICE, "min_quantity": 1, "max_quantity": 1000 if project in BOOKS
                 else 600, "lockup_days": 0}
        entries.append(c.Entry(at, ISSUER, oc.CreateProject("equity", f"p{project}", "x",
                                                             DEADLINE_US, terms)))
        entries.append(c.Entry(at, OPERATOR, oc.ReviewProject(project, True)))
        if project in BOOKS:
            entries.extend(c.Entry(at, account, oc.Subscribe(project, 250))
                           for account in TRADERS)
            entries.append(c.Entry(at, OPERATOR, oc.CloseProject(project)))
    return entries


# Orders, cancels and deposits name the traders and the two accounts the traffic may open.
ACCOUNTS = [*TRADERS, 8, 9]
who = st.integers(0, len(ACCOUNTS) - 1)
keys = st.one_of(st.none(), st.none(), st.sampled_from(["k1", "k2", "k3"]))
orders = st.tuples(
    st.just("order"), who, st.sampled_from(BOOKS), st.sampled_from(["buy", "sell"]),
    st.sampled_from(["limit", "limit", "limit", "market"]),
    st.integers(PRICE - 20, PRICE + 20), st.integers(1, 120),
    st.sampled_from(["gtc", "gtc", "ioc"]), st.booleans(),
    st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]),
    st.one_of(st.none(), st.sampled_from(["a", "b"])), keys)
cancels = st.tuples(st.just("cancel"), who, st.integers(1, 60), keys)
amends = st.tuples(st.just("amend"), who, st.integers(1, 60),
                   st.one_of(st.none(), st.integers(PRICE - 20, PRICE + 20)),
                   st.one_of(st.none(), st.integers(1, 80)), keys)
# To a trader, the issuer, the fee account or nobody; references from a small set (reused
# with the same or another amount) or new.
deposits = st.tuples(st.just("deposit"), st.sampled_from([*ACCOUNTS, *TRADERS, ISSUER, FEE, 99]),
                     st.sampled_from([1, 5_000, 50_000]),
                     st.one_of(st.sampled_from(["r1", "r2"]), st.integers(10, 10**6).map(str)),
                     keys)
withdrawals = st.tuples(st.just("withdraw"), st.sampled_from([*TRADERS, FEE]),
                        st.sampled_from([1_000, 40_000, 100_000, 10**9]),
                        st.one_of(st.sampled_from(["w1", "w2"]),
                                  st.integers(10, 10**6).map(str)), keys)
subscriptions = st.tuples(st.just("subscribe"), who, st.integers(1, 150), keys)
unsubscriptions = st.tuples(st.just("unsubscribe"), who, st.integers(1, 20), keys)
openings = st.tuples(st.just("open"), st.integers(0, 3), keys)  # an API key used twice: 409
ticks = st.tuples(st.just("tick"), keys)
# Product offerings listed in the traffic (projects 4 on), closing 1 or 2 days after, their
# reviews (of projects that are not there, or not in review, too) and pledges to them.
listings = st.tuples(st.just("list"), st.sampled_from([1, 2]), keys)
reviews = st.tuples(st.just("review"), st.integers(3, 6), st.booleans(), keys)
pledges = st.tuples(st.just("pledge"), who, st.integers(4, 6), st.integers(1, 40), keys)
ops = st.one_of(orders, orders, orders, cancels, amends, deposits, deposits, withdrawals,
                subscriptions, subscriptions, unsubscriptions, openings, ticks, listings,
                reviews, pledges)
PRODUCT_TERMS = {"goal": 30 * PRICE, "tiers": [{"tier_id": "a", "price": PRICE,
                                                "quantity": 60}]}
# Group commits: entries of one time each, the time moving on between them (across the
# offering's deadline in some).
groups = st.lists(st.tuples(st.sampled_from([0, 1, 3_600_000_000, DAY_US]),
                            st.lists(ops, min_size=10, max_size=60)), min_size=1, max_size=4)


def _entries(flow: list[tuple[int, list[tuple]]]) -> list[c.Entry]:
    """The traffic's entries, each group stamped with its time."""
    time_us, entries = START_US, []
    for step_us, group in flow:
        time_us += step_us
        for op in group:
            actor, command = (_command(op) if op[0] != "list" else (ISSUER, oc.CreateProject(
                "product", "p", "x", time_us + op[1] * DAY_US, PRODUCT_TERMS)))
            key = op[-1]
            entries.append(c.Entry(time_us, actor, command, key,
                                   f"h{op[:-1]}" if key else None))
    return entries


def _command(op: tuple) -> tuple[int, object]:
    kind = op[0]
    if kind == "cancel":
        return ACCOUNTS[op[1]], mc.CancelOrder(op[2])
    if kind == "amend":
        return ACCOUNTS[op[1]], mc.AmendOrder(op[2], op[3], op[4])
    if kind == "open":
        return OPERATOR, c.CreateAccount("investor", "new", f"new-{op[1]}",
                                         investor_class="institutional")
    if kind == "tick":
        return 0, c.Tick()
    if kind == "deposit":
        return OPERATOR, c.Deposit(op[1], op[2], op[3])
    if kind == "withdraw":
        return op[1], c.Withdraw(op[1], op[2], op[3])
    if kind == "subscribe":
        return ACCOUNTS[op[1]], oc.Subscribe(OFFERING, op[2])
    if kind == "unsubscribe":
        return ACCOUNTS[op[1]], oc.CancelSubscription(op[2])
    if kind == "review":
        return OPERATOR, oc.ReviewProject(op[1], op[2])
    if kind == "pledge":
        return ACCOUNTS[op[1]], oc.Subscribe(op[2], op[3], tier_id="a")
    (_, trader, book, side, order_type, price, qty, tif, post_only, stp, cid, _) = op
    if order_type == "market":
        price, post_only = 0, False
    if tif != "gtc":
        post_only = False
    return ACCOUNTS[trader], mc.PlaceOrder(book, side, order_type, price, qty, tif, post_only,
                                           stp, cid)


def _venues(rules: int) -> tuple[StateMachine, StateMachine]:
    """Two machines with the setup applied and settled (the fee account's fees, too, are
    cash it may withdraw), quiet."""
    one, batched = StateMachine(), StateMachine()
    for i, entry in enumerate(_setup(rules)):
        one.apply(i + 1, entry)
        batched.apply(i + 1, entry)
    at = START_US - DAY_US
    prepare = c.Entry(at, OPERATOR, PrepareSettlement())
    sequence = one.last_sequence + 1
    for machine in (one, batched):
        machine.apply(sequence, prepare)
    pending = one.movements.upto(sequence)
    committed = c.Entry(at, 0, BatchCommitted(1, sequence, len(pending),
                                              int(pending["movement_id"][-1])))
    for machine in (one, batched):
        if machine.apply(sequence + 1, committed).status != 200:
            raise RuntimeError("the setup's settlement batch was refused")
    one.quiet = batched.quiet = True  # runs carry other commands only while quiet
    return one, batched


def _compare(rules: int, entries: list[c.Entry], cuts: list[int]) -> None:
    one, batched = _venues(rules)
    first = one.last_sequence + 1
    expected = [one.apply(first + i, entry) for i, entry in enumerate(entries)]
    got, start = [], 0
    for end in [*cuts, len(entries)]:
        if end > start:
            got.extend(batched.apply_batch(first + start, entries[start:end]))
            start = end
    assert batched.last_sequence == one.last_sequence
    for entry, reply, wanted in zip(entries, got, expected, strict=True):
        # Kept replies (keys, references) are state; the others a quiet machine leaves
        # unbuilt either way, their status still told.
        assert reply.status == wanted.status, entry
        if entry.idempotency_key is not None or type(entry.command) in (c.Deposit, c.Withdraw):
            assert reply == wanted, entry
    assert (batched.movements.table.live().tolist()
            == one.movements.table.live().tolist())
    assert batched.state_hash() == one.state_hash()
    loaded = StateMachine()
    loaded.load(one.arrays(), one.meta())
    assert _live_figures(one) == _live_figures(batched) == _live_figures(loaded)


def _live_figures(machine: StateMachine) -> dict:
    """The offerings' live figures (an index, not state: the subscription checks read it), as
    a load rebuilds them from the live subscriptions; a figure of 0 is as none."""
    figures = {}
    for project_id, live in machine.component("offerings")._live.items():
        shown = (live.amount, live.quantity, sorted(live.accounts.items()),
                 sorted((str(k), v) for k, v in live.taken.items() if v),
                 sorted((str(k), v) for k, v in live.per_backer.items() if v))
        if shown != (0, 0, [], [], []):
            figures[project_id] = shown
    return figures


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=groups, cut_seed=st.lists(st.integers(0, 300), max_size=6),
       rules=st.sampled_from([3, c.RULES_VERSION]))
def test_runs_carrying_other_commands_equal_one_entry_at_a_time(flow, cut_seed, rules):
    entries = _entries(flow)
    _compare(rules, entries, sorted({x for x in cut_seed if 0 < x < len(entries)}))


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(flow=groups, cuts=st.lists(st.integers(1, 200), min_size=1, max_size=6),
       rules=st.sampled_from([3, c.RULES_VERSION]))
def test_a_replay_of_the_traffic_in_chunks_equals_one_entry_at_a_time(flow, cuts, rules):
    """The traffic as journal records through a replay's path (``engine.replay``: read by
    the scanner, plain orders in bulk, the rest decoded and applied in batches whose runs
    carry the other commands), cut into chunks anywhere, even inside a group commit."""
    entries = _entries(flow)
    one, replayed = _venues(rules)
    first = one.last_sequence + 1
    for i, entry in enumerate(entries):
        one.apply(first + i, entry)
    with (mock.patch.object(engine.replay, "BULK_ENTRIES_MIN", 2),  # bulk stretches here too
          mock.patch.object(engine.replay, "DECODED_ENTRIES_MAX", 3)):  # decoded in batches
        apply_in_chunks(replayed, [(first + i, c.encode_entry(entry))
                                   for i, entry in enumerate(entries)], cuts)
    assert replayed.last_sequence == one.last_sequence
    assert replayed.idempotency == one.idempotency  # the replies a retry would get
    assert replayed.references == one.references  # the replies a reference's retry gets
    assert (replayed.movements.table.live().tolist()
            == one.movements.table.live().tolist())
    assert replayed.state_hash() == one.state_hash()


def _maker_sells_then(later_entries: list[c.Entry]) -> list[c.Entry]:
    """Trader 0 rests a sale; a moment later, in a run of its own, trader 1's buy fills it,
    then ``later_entries``."""
    now = START_US + 1
    return [c.Entry(START_US, TRADERS[0], mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 50)),
            c.Entry(now, TRADERS[2], mc.PlaceOrder(BOOKS[1], "buy", "limit", 1, 1)),
            c.Entry(now, TRADERS[1], mc.PlaceOrder(BOOKS[0], "buy", "limit", PRICE, 50)),
            *later_entries,
            c.Entry(now, TRADERS[3], mc.PlaceOrder(BOOKS[1], "buy", "limit", 1, 1))]


def test_a_deposit_to_a_maker_shows_its_sales_before_it():
    """The deposit is applied before the run's orders, yet its reply (kept with its
    reference) shows the cash of the maker's sale that came first."""
    entries = _maker_sells_then([
        c.Entry(START_US + 1, OPERATOR, c.Deposit(TRADERS[0], 7, "x")),
        c.Entry(START_US + 1, TRADERS[0], c.Withdraw(TRADERS[0], 9, "y"))])
    _compare(c.RULES_VERSION, entries, [])


def test_a_repeated_reference_shows_the_first_reply_once():
    """A deposit to a maker and its repeat (the same reference) in one run: the first reply
    gets the sale's cash once, and the repeat answers with it."""
    deposit = c.Entry(START_US + 1, OPERATOR, c.Deposit(TRADERS[0], 7, "x"))
    _compare(c.RULES_VERSION, _maker_sells_then([deposit, deposit]), [])


def test_a_repeated_reference_shows_the_first_reply_kept_with_a_key():
    """The same with the first deposit under an idempotency key, its reply remembered: the
    repeat answers that reply, and both show the sale's cash, as one entry at a time."""
    first = c.Entry(START_US + 1, OPERATOR, c.Deposit(TRADERS[0], 7, "x"), "key-1", "h")
    again = c.Entry(START_US + 1, OPERATOR, c.Deposit(TRADERS[0], 7, "x"))
    _compare(c.RULES_VERSION, _maker_sells_then([first, again]), [])


def test_the_fee_account_is_not_carried():
    """Every trade pays the fee account: a withdrawal of its cash shows the fees before it."""
    entries = _maker_sells_then([c.Entry(START_US + 1, FEE, c.Withdraw(FEE, 9, "y"))])
    _compare(c.RULES_VERSION, entries, [])


def test_under_rules_3_a_makers_withdrawal_is_not_carried():
    """Before rules 4 a sale's fee lowers the maker's withdrawable cash (the refusal tells
    how much there is), so a withdrawal waits for the orders before it."""
    entries = _maker_sells_then([c.Entry(START_US + 1, TRADERS[0],
                                         c.Withdraw(TRADERS[0], 10**9, "y"))])
    _compare(3, entries, [])


def test_a_subscription_the_makers_sale_pays_for_is_cut_out_of_the_run():
    """Trader 0 cannot pay for 140 units before its sale: carried first it would be refused,
    so the run stops before it and it is applied after the sale, and succeeds."""
    entries = _maker_sells_then([c.Entry(START_US + 1, TRADERS[0], oc.Subscribe(OFFERING, 140))])
    _compare(c.RULES_VERSION, entries, [])
    _, batched = _venues(c.RULES_VERSION)
    replies = batched.apply_batch(batched.last_sequence + 1, entries)
    assert replies[3].status == 201


def test_a_subscription_refused_for_another_reason_stays_in_the_run():
    """A maker's subscription to an offering that is not open, and its cancel of a
    subscription it does not have, are refused whatever cash its sale brings: the run goes
    on past them, its orders in one kernel call, and everything is as one entry at a time."""
    later = [c.Entry(START_US + 1, TRADERS[0], oc.Subscribe(BOOKS[0], 1), "k1", "h1"),
             c.Entry(START_US + 1, TRADERS[0], oc.CancelSubscription(999), "k2", "h2")]
    entries = _maker_sells_then(later)
    _compare(c.RULES_VERSION, entries, [])
    _, batched = _venues(c.RULES_VERSION)
    batched.apply_batch(batched.last_sequence + 1, entries[:1])
    markets = batched.component("markets")
    calls = []
    process = markets.engine.process
    markets.engine.process = lambda *a, **kw: calls.append(len(a[0])) or process(*a, **kw)
    replies = batched.apply_batch(batched.last_sequence + 1, entries[1:])
    assert [r.status for r in replies] == [201, 201, 409, 404, 201]
    assert calls == [3]


def test_a_run_carries_the_commands_between_its_orders():
    """Orders with deposits, withdrawals and subscriptions of other accounts between them:
    one kernel call for the lot."""
    _, machine = _venues(c.RULES_VERSION)
    markets = machine.component("markets")
    calls = []
    process = markets.engine.process
    markets.engine.process = lambda *a, **kw: calls.append(len(a[0])) or process(*a, **kw)
    entries = []
    for n in range(40):
        entries.append(c.Entry(START_US, TRADERS[n % 2], mc.PlaceOrder(
            BOOKS[0], "buy" if n % 2 else "sell", "limit", PRICE, 1)))
        entries.append(c.Entry(START_US, OPERATOR, c.Deposit(ISSUER, 100 + n, f"r{n}")))
        entries.append(c.Entry(START_US, TRADERS[2], oc.Subscribe(OFFERING, 1)))
        entries.append(c.Entry(START_US, TRADERS[3], c.Withdraw(TRADERS[3], 5, f"w{n}")))
    replies = machine.apply_batch(machine.last_sequence + 1, entries)
    assert [r.status for r in replies] == [201] * len(entries)
    assert calls == [40]


def test_a_run_carries_the_commands_after_its_last_order():
    """A maker's sale, then a deposit to the maker, a subscription and a withdrawal: the run
    carries them too (none is applied alone), the deposit shows the sale's cash, and all is
    as one entry at a time."""
    entries = _maker_sells_then([])[:-1] + [
        c.Entry(START_US + 1, OPERATOR, c.Deposit(TRADERS[0], 7, "x")),
        c.Entry(START_US + 1, TRADERS[3], oc.Subscribe(OFFERING, 1)),
        c.Entry(START_US + 1, TRADERS[3], c.Withdraw(TRADERS[3], 5, "w"))]
    _compare(c.RULES_VERSION, entries, [])
    one, batched = _venues(c.RULES_VERSION)
    batched.apply_batch(batched.last_sequence + 1, entries[:1])
    alone = []
    apply = batched.apply
    batched.apply = lambda *a: alone.append(a[1]) or apply(*a)
    calls = _kernel_calls(batched)
    replies = batched.apply_batch(batched.last_sequence + 1, entries[1:])
    assert [r.status for r in replies] == [201] * 5 and alone == [] and calls == [2]
    # Nobody reads the reply of a replayed deposit without a key: its reference keeps it.
    references = batched.references
    kept = references.stored(TRADERS[0], references.use(TRADERS[0], "x")).reply
    assert replies[2].body is None
    assert kept.body["cash_available"] == 100_000 + 50 * PRICE * 99 // 100 + 7


def _keyed(time_us: int, actor: int, command, key: str, request: str = "h") -> c.Entry:
    return c.Entry(time_us, actor, command, key, request)


def test_retries_in_a_run_are_answered_and_the_run_goes_on():
    """Retries (an idempotency key used again) of a keyed order, deposit and subscription of
    the run, and of commands remembered before it (a cancel, an offering's listing: a
    command no run carries), two with another request: each gets what one entry at a time
    gives (the first reply, or the conflict), nothing is applied twice, and the run goes on
    over them: one kernel call, no entry applied alone."""
    at = START_US + 1
    before = [_keyed(START_US, TRADERS[0], mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 5),
                     "o-1"),
              _keyed(START_US, TRADERS[0], mc.CancelOrder(1), "c-1"),
              _keyed(START_US, ISSUER, oc.CreateProject("equity", "p", "x",
                                                        START_US + 30 * DAY_US, {
                  "price": PRICE, "min_quantity": 1, "max_quantity": 9, "lockup_days": 0}),
                     "l-1")]
    order = _keyed(at, TRADERS[1], mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 7), "o-2")
    deposit = _keyed(at, OPERATOR, c.Deposit(TRADERS[2], 50, "r-1"), "d-1")
    subscription = _keyed(at, TRADERS[3], oc.Subscribe(OFFERING, 2), "s-1")
    again = [_keyed(at, entry.actor, entry.command, entry.idempotency_key) for entry in before]
    run = [order, deposit, subscription,
           c.Entry(at, TRADERS[2], mc.PlaceOrder(BOOKS[0], "buy", "limit", PRICE, 3)),
           order, deposit, subscription, again[1], again[2],
           _keyed(at, TRADERS[1], mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 7), "o-2",
                  "another"),
           again[0], _keyed(at, TRADERS[0], mc.CancelOrder(1), "c-1", "another"),
           c.Entry(at, TRADERS[2], mc.PlaceOrder(BOOKS[0], "buy", "limit", PRICE, 4))]
    _compare(c.RULES_VERSION, before + run, [len(before)])
    _, batched = _venues(c.RULES_VERSION)
    first = batched.apply_batch(batched.last_sequence + 1, before)
    alone = []
    apply = batched.apply
    batched.apply = lambda *a: alone.append(a[1]) or apply(*a)
    calls = _kernel_calls(batched)
    replies = batched.apply_batch(batched.last_sequence + 1, run)
    assert alone == [] and calls == [3]
    assert [r.status for r in replies] == [201] * 7 + [200, 201, 409, 201, 409, 201]
    assert first[2].status == 201, first[2]  # listed: an entry no run carries
    assert replies[4] is replies[0] and replies[5] is replies[1] and replies[6] is replies[2]
    assert (replies[7], replies[8], replies[10]) == (first[1], first[2], first[0])
    assert (replies[9].body["error"]["code"] == replies[11].body["error"]["code"]
            == "idempotency_key_conflict")
    assert len(batched.component("offerings").subscriptions) == 4 * len(BOOKS) + 1


def test_a_retry_whose_key_a_run_may_forget_by_its_turn_ends_the_run():
    """A key kept more than 24 hours before a retry of it may be forgotten by the retry's
    turn (an entry before it, keeping a key of its own, drops the keys past their time): the
    run stops before the retry, which then gets what one entry at a time gives (here the
    key is gone, and the order is placed again)."""
    order = _keyed(START_US, TRADERS[0], mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 5),
                   "o-1")
    later = START_US + DAY_US + 1
    run = [_keyed(later, TRADERS[1], mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 7), "o-2"),
           c.Entry(later, order.actor, order.command, order.idempotency_key, order.request_hash),
           c.Entry(later, TRADERS[2], mc.PlaceOrder(BOOKS[0], "buy", "limit", PRICE, 1))]
    _compare(c.RULES_VERSION, [order, *run], [1])
    _, batched = _venues(c.RULES_VERSION)
    first = batched.apply_batch(batched.last_sequence + 1, [order])
    replies = batched.apply_batch(batched.last_sequence + 1, run)
    assert replies[1].status == 201 and replies[1].body["order_id"] != first[0].body["order_id"]


def test_a_venue_with_no_ip_book_runs_over_times_up_to_an_order_that_may_open_a_book():
    """No IP book is open here, so no auction is scheduled, and a run's order on an
    instrument whose book is not open may open the first and schedule one
    (``Markets.may_schedule``). A run of orders on open books goes on past a change of time;
    from an order on the offering's instrument (it has no book) on, it stays at that time.
    Everything is as one entry at a time."""
    opening = [c.Entry(START_US, TRADERS[3], mc.PlaceOrder(book, "buy", "limit", 1, 1))
               for book in BOOKS]  # their books open
    t = START_US + 1
    entries = [c.Entry(t + n * 3_600_000_000, TRADERS[n % 2], mc.PlaceOrder(
        BOOKS[n % 2], "buy" if n % 3 else "sell", "limit", PRICE, 1)) for n in range(6)]
    entries[3:3] = [c.Entry(entries[2].time_us, TRADERS[2],
                            mc.PlaceOrder(OFFERING, "buy", "limit", PRICE, 1))]
    _compare(c.RULES_VERSION, opening + entries, [len(opening)])
    _, batched = _venues(c.RULES_VERSION)
    batched.apply_batch(batched.last_sequence + 1, opening)
    calls = _kernel_calls(batched)
    replies = batched.apply_batch(batched.last_sequence + 1, entries)
    # Three orders at three times and the order that may open a book (refused before the
    # kernel: the offering is no instrument yet); the three after it in the next run.
    assert calls == [3, 3]
    assert replies[3].status == 404


def test_an_amend_in_a_run_sees_the_orders_before_it():
    """Amends are run types: one of an order the run placed, and one of an order the run
    filled before it, answer what they answer one entry at a time (live and quiet)."""
    entries = [
        c.Entry(START_US, TRADERS[0], mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 5)),
        c.Entry(START_US, TRADERS[0], mc.AmendOrder(1, quantity=3)),
        c.Entry(START_US, TRADERS[1], mc.PlaceOrder(BOOKS[0], "buy", "limit", PRICE, 3)),
        c.Entry(START_US, TRADERS[0], mc.AmendOrder(1, price=PRICE + 1)),
        c.Entry(START_US, TRADERS[2], mc.PlaceOrder(BOOKS[1], "buy", "limit", PRICE, 2)),
        c.Entry(START_US, TRADERS[2], mc.AmendOrder(3, quantity=1))]
    _compare(c.RULES_VERSION, entries, [])
    one, batched = _venues(c.RULES_VERSION)
    one.quiet = batched.quiet = False
    first = one.last_sequence + 1
    expected = [one.apply(first + i, entry) for i, entry in enumerate(entries)]
    assert batched.apply_batch(first, entries) == expected
    assert [r.status for r in expected] == [201, 200, 201, 409, 201, 200]


def test_an_account_opened_in_a_run_trades_only_after_it():
    """Account 8 is opened mid-run: its order before that is refused, the one after is
    taken, and a deposit to it before the opening is refused too."""
    def order(account: int) -> c.Entry:
        return c.Entry(START_US, account, mc.PlaceOrder(BOOKS[0], "buy", "limit", 1, 1))
    entries = [order(TRADERS[0]), order(8),
               c.Entry(START_US, OPERATOR, c.Deposit(8, 500, "early")),
               c.Entry(START_US, OPERATOR, c.CreateAccount("investor", "n", "kn")),
               c.Entry(START_US, OPERATOR, c.Deposit(8, 500, "late")), order(8)]
    _compare(c.RULES_VERSION, entries, [])
    _, batched = _venues(c.RULES_VERSION)
    replies = batched.apply_batch(batched.last_sequence + 1, entries)
    assert [r.status for r in replies] == [201, 403, 404, 201, 201, 201]



def _kernel_calls(machine: StateMachine) -> list[int]:
    """The number of commands of each matching kernel call ``machine`` makes from now on."""
    markets = machine.component("markets")
    calls: list[int] = []
    process = markets.engine.process
    markets.engine.process = lambda *a, **kw: calls.append(len(a[0])) or process(*a, **kw)
    return calls


def _own_order_then(order: mc.PlaceOrder | mc.CancelOrder, later_entries: list[c.Entry],
                    resting: bool = False) -> list[c.Entry]:
    """Trader 1 rests a buy of 50 at ``PRICE`` (order 1) and, if ``resting``, trader 0 one
    of 10 at 1 fen (order 2); a moment later, in a run of its own, trader 0 sends ``order``,
    then ``later_entries``."""
    now = START_US + 1
    rest = [c.Entry(START_US, TRADERS[0], mc.PlaceOrder(BOOKS[1], "buy", "limit", 1, 10))]
    return [c.Entry(START_US, TRADERS[1], mc.PlaceOrder(BOOKS[0], "buy", "limit", PRICE, 50)),
            *(rest if resting else []),
            c.Entry(now, TRADERS[2], mc.PlaceOrder(BOOKS[1], "buy", "limit", 1, 1)),
            c.Entry(now, TRADERS[0], order),
            *later_entries,
            c.Entry(now, TRADERS[3], mc.PlaceOrder(BOOKS[1], "buy", "limit", 1, 1))]


def _run_calls(entries: list[c.Entry], replies_wanted: list[int], resting: int = 1) -> list[int]:
    """The kernel calls of the run after the ``resting`` orders (``_own_order_then``), its
    replies' statuses checked."""
    _, batched = _venues(c.RULES_VERSION)
    batched.apply_batch(batched.last_sequence + 1, entries[:resting])
    calls = _kernel_calls(batched)
    replies = batched.apply_batch(batched.last_sequence + 1, entries[resting:])
    assert [r.status for r in replies] == replies_wanted
    return calls


def test_an_actors_deposit_after_its_own_sale_is_carried_and_shows_the_sale():
    """Trader 0 sells into trader 1's buy, then is paid a deposit and withdraws: both are
    carried (one kernel call for the run), and their replies show the sale's cash."""
    now = START_US + 1
    sale = mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 30)
    later = [c.Entry(now, OPERATOR, c.Deposit(TRADERS[0], 7, "x")),
             c.Entry(now, TRADERS[0], c.Withdraw(TRADERS[0], 9, "y")),
             c.Entry(now, TRADERS[0], mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 20))]
    entries = _own_order_then(sale, later)
    _compare(c.RULES_VERSION, entries, [])
    assert _run_calls(entries, [201] * 6) == [4]


def test_an_actors_subscription_its_own_sale_pays_for_is_cut_out_of_the_run():
    """Trader 0 (100,000 fen) cannot pay 120,000 for 120 units before its sale of 30 at
    1,000 fen: carried first it would be refused, so the run stops before it and it is
    applied after the sale, and succeeds."""
    later = [c.Entry(START_US + 1, TRADERS[0], oc.Subscribe(OFFERING, 120))]
    entries = _own_order_then(mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 30), later)
    _compare(c.RULES_VERSION, entries, [])
    assert _run_calls(entries, [201] * 4) == [2, 1]


def test_after_its_own_buy_an_actors_subscription_is_not_carried():
    """Trader 0's buy reserves 90,000 of its 100,000 fen: its subscription of 20,000 after it
    is refused, as one entry at a time, and is not carried before the buy."""
    later = [c.Entry(START_US + 1, TRADERS[0], oc.Subscribe(OFFERING, 20))]
    entries = _own_order_then(mc.PlaceOrder(BOOKS[0], "buy", "limit", PRICE - 1, 90), later)
    _compare(c.RULES_VERSION, entries, [])
    assert _run_calls(entries, [201, 201, 422, 201]) == [2, 1]


def test_after_its_own_cancel_an_actors_deposit_waits_and_its_subscription_is_carried():
    """Trader 0 cancels its buy (10 fen released, no movement): a deposit's reply after it
    must show them, so it waits for the cancel; a subscription, which shows no cash and
    needs less than trader 0 has without them, is carried."""
    now = START_US + 1
    deposit = [c.Entry(now, OPERATOR, c.Deposit(TRADERS[0], 7, "x"))]
    entries = _own_order_then(mc.CancelOrder(2), deposit, resting=True)
    _compare(c.RULES_VERSION, entries, [])
    assert _run_calls(entries, [201, 200, 201, 201], resting=2) == [2, 1]
    subscription = [c.Entry(now, TRADERS[0], oc.Subscribe(OFFERING, 20))]
    entries = _own_order_then(mc.CancelOrder(2), subscription, resting=True)
    _compare(c.RULES_VERSION, entries, [])
    assert _run_calls(entries, [201, 200, 201, 201], resting=2) == [3]


def test_after_its_own_sale_that_cancels_its_buy_an_actors_deposit_waits():
    """Trader 0's sale meets its own resting buy first, and self-trade prevention
    ``cancel_oldest`` cancels that buy (10 fen released, no movement): a deposit after it
    waits for the sale, and shows them."""
    sale = mc.PlaceOrder(BOOKS[1], "sell", "limit", 1, 10, self_trade_prevention="cancel_oldest")
    deposit = [c.Entry(START_US + 1, OPERATOR, c.Deposit(TRADERS[0], 7, "x"))]
    entries = _own_order_then(sale, deposit, resting=True)
    _compare(c.RULES_VERSION, entries, [])
    assert _run_calls(entries, [201] * 4, resting=2) == [2, 1]


def test_under_rules_3_an_actors_withdrawal_after_its_own_sale_waits():
    """Before rules 4 the sale's fee lowers trader 0's withdrawable cash (99,700 after it):
    a withdrawal of 99,800 after the sale is refused, though it was not before it."""
    later = [c.Entry(START_US + 1, TRADERS[0], c.Withdraw(TRADERS[0], 99_800, "y"))]
    entries = _own_order_then(mc.PlaceOrder(BOOKS[0], "sell", "limit", PRICE, 30), later)
    _compare(3, entries, [])


# A run in which traders' own orders come before their own deposits, withdrawals and
# subscriptions: sales with every self-trade prevention (against their own resting buys
# too), buys, cancels of their resting orders (trader n's buy is order 2n + 1, its sale
# 2n + 2). Traders 0 and 1 rest both sides before the run; trader 2 rests nothing, so only
# its own orders in the run can change its cash.
RESTING = [c.Entry(START_US, account, mc.PlaceOrder(BOOKS[0], side, "limit", PRICE + offset, 10))
           for account in TRADERS[:2] for side, offset in (("buy", -5), ("sell", 5))]
own = st.integers(0, 2)
sells = st.tuples(st.just("sell"), own, st.integers(PRICE - 10, PRICE + 10), st.integers(1, 30),
                  st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]))
own_cancels = st.tuples(st.just("cancel"), own, st.integers(1, 2))
own_deposits = st.tuples(st.just("deposit"), own, st.sampled_from([1, 50_000]))
own_ops = st.one_of(
    sells, sells, own_cancels, own_deposits, own_deposits,
    st.tuples(st.just("buy"), own, st.integers(PRICE - 10, PRICE + 10), st.integers(1, 30)),
    st.tuples(st.just("withdraw"), own, st.sampled_from([1_000, 99_800, 10**9])),
    st.tuples(st.just("subscribe"), own, st.integers(1, 150)),
    st.tuples(st.just("unsubscribe"), own, st.integers(1, 4)))


def _own_entry(n: int, op: tuple) -> c.Entry:
    kind, trader = op[0], op[1]
    account, now = TRADERS[trader], START_US + 1
    if kind in ("sell", "buy"):
        stp = op[4] if kind == "sell" else "cancel_newest"
        return c.Entry(now, account, mc.PlaceOrder(BOOKS[0], kind, "limit", op[2], op[3],
                                                   self_trade_prevention=stp))
    if kind == "cancel":
        return c.Entry(now, account, mc.CancelOrder(2 * trader + op[2]))
    if kind == "deposit":
        return c.Entry(now, OPERATOR, c.Deposit(account, op[2], f"d{n}"))
    if kind == "withdraw":
        return c.Entry(now, account, c.Withdraw(account, op[2], f"w{n}"))
    if kind == "subscribe":
        return c.Entry(now, account, oc.Subscribe(OFFERING, op[2]))
    return c.Entry(now, account, oc.CancelSubscription(op[2]))


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(run=st.lists(own_ops, min_size=5, max_size=30), rules=st.sampled_from([3, c.RULES_VERSION]))
def test_a_run_carrying_its_actors_own_commands_equals_one_entry_at_a_time(run, rules):
    """Deposits, withdrawals and subscriptions after their own account's orders in the
    run: carried where those orders change the cash only by fills (or, for a subscription,
    read and lower none of it), the shown cash completed, a subscription short of cash cut
    out; all as one entry at a time."""
    _compare(rules, [*RESTING, *(_own_entry(n, op) for n, op in enumerate(run))], [])
