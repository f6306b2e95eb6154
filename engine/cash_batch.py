"""A replay run's deposits and withdrawals, applied together.

A run of a replay carries the deposits and withdrawals between its orders
(``StateMachine._apply_carrying``): in ``bench recovery``'s mixed traffic, one entry in four
(47k of 210k). Each went through its handler (``StateMachine._deposit``, ``_withdraw``): an
account lookup, the reference, the limit, the cash column, a movement row, the reference's
``Use``, a call for each, ~3.3 us an entry. Here the walk takes each one its handler would
apply (``take``: the handler's checks, read where they stand, all pass) and keeps its
reference at once, with a ``Use`` whose cash is filled in later; the ones taken are applied
together (``apply``): one compiled pass moves the cash, writes the movements and reads the
cash each reply shows (``engine.kernels.movements.cash_movements``).

The state is the handlers' own, in the same order:
- an entry whose handler would refuse it, or answer it from its reference (used before), is
  not taken: the handler applies it, after the ones taken before it (``take`` applies them
  first: the handler reads the venue's totals, and records its movement after theirs);
- the checks read what the ones taken before would have changed: the venue's totals with
  theirs added (a deposit's limit), and the account's cash as it stands (a withdrawal of an
  account with one taken waits for them to be applied first);
- an entry the walk applies itself that reads or changes an account with one taken (a
  command a run carries reads and changes one account's balances only: ``Carried``) has
  them applied first (the walk reads ``CashBatch.accounts``), and the run's orders come
  after all of them;
- the movements are recorded in sequence order (should a carried entry in between have
  recorded one, the walk's are put back in that order, as the run does with its orders').

A reply is the handler's: unbuilt (``UNREAD``) unless the entry has an idempotency key, then
built once the cash it shows is known; a reply whose account may see sales of the run's
orders before it is completed after them, as the handler's (``References.pend``,
``StateMachine._show_cash``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine import commands as c
from engine.kernels.movements import cash_movements
from engine.references import DEPOSIT, WITHDRAWAL, Use, use_reply


class CashBatch:
    """The deposits and withdrawals a walk took and has not applied yet (see the module)."""

    __slots__ = ("machine", "limit", "accounts", "_walk", "_replies", "_list", "_amounts",
                 "_sequences", "_uses", "_keyed", "_shown", "_net", "_deposited", "_moved")

    def __init__(self, machine: Any, limit: int) -> None:
        self.machine = machine
        self.limit = limit  # the venue's cash in all at most (``CASH_TOTAL_MAX``)
        self.accounts: set[int] = set()  # of the ones taken (the walk reads it)
        self._walk: Any = None
        self._replies: list = []
        self._list: list[int] = []  # each one's account, amount (< 0: withdrawn), sequence
        self._amounts: list[int] = []
        self._sequences: list[int] = []
        self._uses: list[Use] = []
        self._keyed: list[tuple[int, int, Use]] = []  # (reply's index, account, use)
        self._shown: list[tuple[int, int, Use, int]] = []  # (sequence, account, use, index)
        self._net = 0  # deposited less withdrawn by the ones taken
        self._deposited = 0
        self._moved = 0  # the movements' count when the first was taken

    def begin(self, walk: Any, replies: list) -> None:
        """A walk starts: ``walk`` (its ``shown``) and its ``replies`` take what ``apply``
        completes. Nothing is left of an earlier walk but after one that failed (its
        machine half applied a run: ``engine.replay`` names the entry on a fresh one)."""
        if self._list:
            self._clear()
        self._walk, self._replies = walk, replies

    def take(self, index: int, sequence: int, command: c.Deposit | c.Withdraw, keyed: bool,
             shown: bool) -> bool:
        """Take the entry ``index`` of the walk (``sequence``, its command) if its handler
        would apply it now; False if not, for the handler to refuse it or answer it from its
        reference, after the ones taken where that may read what they change (applied first
        then). ``keyed``: its reply is kept (an idempotency key); ``shown``: its account may
        see sales of the run's orders before it (``References.pend``)."""
        machine = self.machine
        account, amount = command.account_id, command.amount
        pending = self.accounts
        deposit = type(command) is c.Deposit
        if deposit:  # the handler's checks, in its order
            info = machine.accounts.get(account)
            if info is None or info.role == "fee":
                return False  # refused, whatever the ones taken did
        elif account in pending:
            self.apply()  # its cash as the ones taken leave it
        references, reference = machine.references, command.reference
        mine = references.by_account.get(account)
        if mine is not None and reference in mine:
            if account in pending:
                self.apply()  # the first use may be one taken: its reply shows their cash
            return False
        if amount <= 0:  # no movement can be recorded: the handler says what happens
            self.apply()
            return False
        if deposit:
            net = self._net + amount
            if machine.deposits_total - machine.withdrawals_total + net > self.limit:
                self.apply()  # the venue's totals as the ones taken leave them
                return False
            self._deposited += amount
        else:
            if account not in machine.accounts:
                self.apply()
                return False
            if amount > machine.cash_withdrawable(account):
                return False  # refused: its own cash, which none of the ones taken changed
            net = self._net - amount
            amount = -amount
        self._net = net
        if not self._list:
            self._moved = machine.movements.table.count
        use = Use(DEPOSIT if deposit else WITHDRAWAL, abs(amount), machine.now_us, 0)
        # References.keep, inlined.
        if mine is None:
            mine = references.by_account[account] = {}
        mine[reference] = use
        references.count += 1
        pending.add(account)
        self._list.append(account)
        self._amounts.append(amount)
        self._sequences.append(sequence)
        self._uses.append(use)
        if keyed:
            self._keyed.append((index, account, use))
        if shown:
            self._shown.append((sequence, account, use, index))
        return True

    def apply(self) -> None:
        """Apply the ones taken, in order: their cash, the venue's totals, their movements,
        the cash each reply shows; their replies into the walk's."""
        machine = self.machine
        count = len(self._list)
        if not count:
            return
        after = np.empty(count, dtype=np.int64)
        log = machine.movements
        others = log.table.count != self._moved  # a carried entry in between recorded some
        start = log.claim(count)
        cash_movements(np.array(self._list, dtype=np.int64),
                       np.array(self._amounts, dtype=np.int64),
                       np.array(self._sequences, dtype=np.int64),
                       machine.balances.accounts.rows["cash_available"], log.table.rows,
                       start, log.next_id, after)
        log.commit(count)
        machine.deposits_total += self._deposited
        machine.withdrawals_total += self._deposited - self._net
        for use, cash in zip(self._uses, after.tolist(), strict=True):
            use.cash = cash
        replies = self._replies  # the ones taken with a key hold None until now
        for index, account, use in self._keyed:
            replies[index] = use_reply(account, use)
        if self._shown:
            shown, pend = self._walk.shown, machine.references.pend
            for sequence, account, use, index in self._shown:
                shown.append((sequence, account, use))
                pend(use, replies[index])
        if others:
            log.sort_since(self._walk.moved)
        self._clear()

    def _clear(self) -> None:
        self.accounts.clear()
        for kept in (self._list, self._amounts, self._sequences, self._uses, self._keyed,
                     self._shown):
            kept.clear()
        self._net = self._deposited = 0
