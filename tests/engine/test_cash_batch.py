"""A replay run's deposits and withdrawals, taken from their handlers and applied together
(``engine.cash_batch``), give what one entry at a time gives: the cash, the venue's totals,
the references and the replies they keep, the movements in sequence order, the state hash.

The traffic of ``test_carried_runs``' property tests goes through the batch too (refused
deposits and withdrawals, repeated references, keys, makers' shown cash); these are the
cases where what the ones taken change is read before they are applied, each checked
against one entry at a time (``_compare``) and for the handlers it still calls."""

from __future__ import annotations

import pytest

from engine import commands as c
from engine import markets_commands as mc
from engine import movements as mv
from engine import offerings_commands as oc
from engine.machine import CASH_TOTAL_MAX
from tests.engine.test_carried_runs import (
    BOOKS,
    OFFERING,
    OPERATOR,
    START_US,
    TRADERS,
    _compare,
    _venues,
)

NOW = START_US + 1
A, B = TRADERS[0], TRADERS[1]  # deposited to and withdrawing
C, D = TRADERS[2], TRADERS[3]  # whose orders make the run (A's or B's would stop it first)


def _deposit(account: int, amount: int, reference: str, key: str | None = None) -> c.Entry:
    return c.Entry(NOW, OPERATOR, c.Deposit(account, amount, reference), key,
                   "h" if key else None)


def _withdraw(account: int, amount: int, reference: str) -> c.Entry:
    return c.Entry(NOW, account, c.Withdraw(account, amount, reference))


def _order(account: int) -> c.Entry:
    return c.Entry(NOW, account, mc.PlaceOrder(BOOKS[1], "buy", "limit", 1, 1))


def _run(*entries: c.Entry) -> list[c.Entry]:
    """``entries`` between two orders: one run."""
    return [_order(C), *entries, _order(D)]


def _handled(entries: list[c.Entry]) -> list[str]:
    """The references of the deposits and withdrawals a quiet machine's ``apply_batch`` of
    ``entries`` (after the setup) hands to their handlers, in order."""
    _, batched = _venues(c.RULES_VERSION)
    handled: list[str] = []
    for name in ("_deposit", "_withdraw"):
        real = getattr(batched, name)
        setattr(batched, name, lambda cmd, actor, real=real: (
            handled.append(cmd.reference) or real(cmd, actor)))
    batched._handlers[c.Deposit] = batched._deposit
    batched._handlers[c.Withdraw] = batched._withdraw
    batched.apply_batch(batched.last_sequence + 1, entries)
    return handled


def test_a_run_applies_its_deposits_and_withdrawals_together():
    """None of them goes to its handler; the cash, movements and replies are one at a
    time's."""
    entries = [*_run(_deposit(A, 7, "a"), _deposit(B, 9, "b", key="k"), _withdraw(B, 5, "c")),
               _deposit(A, 3, "d")]
    _compare(c.RULES_VERSION, entries, [])
    assert _handled(entries) == []


def test_a_withdrawal_reads_the_cash_a_deposit_taken_before_it_brings():
    """Trader A's cash is 100,000 fen: its withdrawal of 100,005 succeeds after the deposit
    of 7 in the same run (the one taken is applied first), and a second one of 3 is refused
    (2 fen left)."""
    entries = _run(_deposit(A, 7, "a"), _withdraw(A, 100_005, "w1"), _withdraw(A, 3, "w2"))
    _compare(c.RULES_VERSION, entries, [])
    assert _handled(entries) == ["w2"]


def test_a_subscription_sees_the_cash_of_a_deposit_taken_before_it():
    """Trader A cannot pay for 110 units (11,000 fen more than its cash) before the
    deposit of 20,000 earlier in the run: it is applied before the subscription reads the
    cash, which succeeds."""
    entries = _run(_deposit(A, 20_000, "a"), c.Entry(NOW, A, oc.Subscribe(OFFERING, 110)))
    _compare(c.RULES_VERSION, entries, [])
    _, batched = _venues(c.RULES_VERSION)
    replies = batched.apply_batch(batched.last_sequence + 1, entries)
    assert replies[2].status == 201


def test_a_repeated_reference_answers_the_reply_of_the_one_taken():
    """The same reference again in the run, with the same amount (its first reply, with the
    cash the first left) and another (a conflict): handled after the first is applied."""
    entries = _run(_deposit(A, 7, "a", key="k"), _deposit(B, 1, "b"), _deposit(A, 7, "a"),
                   _deposit(A, 8, "a"))
    _compare(c.RULES_VERSION, entries, [])
    assert _handled(entries) == ["a", "a"]


@pytest.mark.parametrize("rules", [3, c.RULES_VERSION])
def test_the_venues_limit_counts_the_deposits_taken(rules):
    """The venue holds 16 fen under its limit: a deposit of 10 is taken, one of 7 more then
    goes past the limit with it (refused: handled after it), one of 6 fits (taken)."""
    one, _ = _venues(rules)
    room = CASH_TOTAL_MAX - (one.deposits_total - one.withdrawals_total) - 16
    entries = [_deposit(B, room, "fill"),
               *_run(_deposit(A, 10, "a"), _deposit(B, 7, "b"), _deposit(B, 6, "c"))]
    _compare(rules, entries, [])
    assert _handled(entries) == ["b"]


def test_refused_deposits_and_withdrawals_go_to_their_handlers():
    """To an account that is not there, a withdrawal short of cash: refused by their
    handlers, between ones taken."""
    entries = _run(_deposit(A, 7, "a"), _deposit(99, 7, "x"), _withdraw(B, 10**9, "y"),
                   _deposit(B, 7, "b"))
    _compare(c.RULES_VERSION, entries, [])
    assert _handled(entries) == ["x", "y"]


def test_movements_recorded_in_between_are_put_back_in_sequence_order():
    """Should a command a run carries record a movement while deposits are taken (none
    does today: here a subscription's cancel made to), the movements are still in sequence
    order, numbered as one at a time."""
    one, batched = _venues(c.RULES_VERSION)
    for machine in (one, batched):
        cancel = machine._handlers[oc.CancelSubscription]

        def cancel_and_record(cmd, actor, machine=machine, cancel=cancel):
            machine.movements.record(machine.last_sequence, mv.DEPOSIT, mv.EXTERNAL_ACCOUNT,
                                     actor, mv.CASH, 1)
            return cancel(cmd, actor)

        machine._handlers[oc.CancelSubscription] = cancel_and_record
    subscription = one.component("offerings").next_subscription_id
    # A run of carried commands only (a run with orders puts them back in order anyway).
    entries = [c.Entry(NOW, B, oc.Subscribe(OFFERING, 1)), _deposit(A, 7, "a"),
               c.Entry(NOW, B, oc.CancelSubscription(subscription)), _deposit(A, 3, "b")]
    first = one.last_sequence + 1
    for i, entry in enumerate(entries):
        one.apply(first + i, entry)
    replies = batched.apply_batch(first, entries)
    assert [reply.status for reply in replies] == [201, 201, 200, 201]
    live = batched.movements.table.live()
    assert live.tolist() == one.movements.table.live().tolist()
    assert list(live["sequence"]) == sorted(live["sequence"])
    assert batched.state_hash() == one.state_hash()


@pytest.mark.parametrize("account", [0, -1, 1, 10_000, 2**62])
def test_no_account_or_the_fee_account_is_taken(account):
    """A deposit or withdrawal naming no account (none yet, a negative id, one past the
    balances' rows), or a deposit to the fee account, is not taken: it goes to its handler,
    which refuses it as one at a time does. (A withdrawal is the account's own, so
    its account exists; past the table's rows its handler would fail, the journal's entry
    poison: not one a gateway writes.)"""
    withdrawn = [_withdraw(account, 5, "w")] if account < 1_000 else []
    entries = _run(_deposit(account, 7, "a"), *withdrawn, _deposit(A, 3, "d"))
    _compare(c.RULES_VERSION, entries, [])
    assert _handled(entries) == ["a", *(["w"] if withdrawn else [])]
