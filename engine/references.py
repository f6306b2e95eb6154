"""Deposit and withdrawal references: what the first use of each did, as rows of a table.

A deposit or a withdrawal names a reference (a bank transfer's). The venue keeps, per account,
what the first use of each reference did, for ever: a retry with the same reference gets the
first reply again, and another movement under it is refused (``reference_conflict``).

They were kept as a ``Stored`` reply each (a fingerprint string, a ``Reply`` and its body dict):
540 bytes a reference, 118 MB of the 587 MB a replay of ``bench recovery``'s 1M mixed
commands holds (220k references). Here a reference is its string, the key of its account's
dict, and a row of four columns (kind, amount, time, the cash its reply shows: 25 bytes), from
which its ``Stored`` is rebuilt when a retry, a snapshot or the state hash reads it: the same
values as before, so snapshots and the state hash are unchanged. The columns are ``array``s,
not a numpy table: an append to each costs less than assigning one numpy row (a replay adds a
reference at every sixth entry), and numpy reads them in place (``np.frombuffer``).

A run of a replay applies a deposit before the orders ahead of it and completes the cash its
reply shows after them (``StateMachine._show_cash``). Until then the row's reply is pending
(``pend``): a repeat of the reference in the same run answers that very reply, completed with
it, as when the reply itself was what the reference kept.

A ``Stored`` loaded from a snapshot that its row would not rebuild exactly is kept as it was
(``KEPT``): the rows cover the replies ``StateMachine`` makes now, and nothing else is guessed.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

from engine.replies import Reply, Stored

DEPOSIT, WITHDRAWAL, KEPT = 0, 1, 2
_KINDS = {"deposit": DEPOSIT, "withdraw": WITHDRAWAL}
INT64_MAX = 2**63 - 1


class References:
    """Every account's references, each a row (numbered in the order they were added)."""

    __slots__ = ("_rows", "_kind", "_amount", "_time_us", "_cash", "_kept", "_pending")

    def __init__(self) -> None:
        self._rows: dict[int, dict[str, int]] = {}  # account -> reference -> row
        # The columns of the rows: DEPOSIT, WITHDRAWAL or KEPT (its Stored in ``_kept``); the
        # amount in fen (the fingerprint's figure); when it was first used; the cash_available
        # its reply shows.
        self._kind = array("b")
        self._amount = array("q")
        self._time_us = array("q")
        self._cash = array("q")
        self._kept: dict[int, Stored] = {}  # row -> the Stored loaded as it was (KEPT rows)
        # row -> its reply while the cash it shows waits to be completed (None: not built yet).
        self._pending: dict[int, Reply | None] = {}

    def __len__(self) -> int:
        return len(self._kind)

    def row(self, account: int, reference: str) -> int | None:
        """The row of ``account``'s ``reference``, or None if it was never used."""
        mine = self._rows.get(account)
        return None if mine is None else mine.get(reference)

    def add(self, account: int, reference: str, kind: int, amount: int, time_us: int,
            cash: int) -> int:
        """Keep a new reference's first use (``kind`` DEPOSIT or WITHDRAWAL, each figure an
        int64); returns its row."""
        row = len(self._kind)
        self._kind.append(kind)
        self._amount.append(amount)
        self._time_us.append(time_us)
        self._cash.append(cash)
        mine = self._rows.get(account)
        if mine is None:
            mine = self._rows[account] = {}
        mine[reference] = row
        return row

    def pend(self, row: int, reply: Reply) -> None:
        """Note that the cash ``row``'s reply shows is to be completed (``show_more``), and
        the reply, if it was built (it has a body), to complete with it."""
        self._pending[row] = reply if reply.body is not None else None

    def show_more(self, row: int, amount: int) -> None:
        """Raise the cash the reply of ``row`` shows by ``amount`` (``StateMachine._show_cash``:
        a run's sales that came before the entry, applied after it), its pending reply too."""
        self._cash[row] += amount
        reply = self._pending.get(row)
        if reply is not None:
            reply.body["cash_available"] += amount

    def settle(self) -> None:
        """The run's pending replies are complete (or were never to be completed)."""
        self._pending.clear()

    def stored(self, account: int, row: int) -> Stored:
        """The first use's ``Stored`` (fingerprint, time, reply) of ``account``'s reference at
        ``row``, as the machine made it."""
        kind = self._kind[row]
        if kind == KEPT:
            return self._kept[row]
        reply = self._pending.get(row)
        if reply is None:
            cash = self._cash[row]
            body = ({"account_id": account, "cash_available": cash} if kind == DEPOSIT
                    else {"cash_available": cash})
            reply = Reply(201, body)
            if row in self._pending:  # answered before it is complete: completed with it
                self._pending[row] = reply
        name = "deposit" if kind == DEPOSIT else "withdraw"
        return Stored(f"{name}:{self._amount[row]}", self._time_us[row], reply)

    def listed(self) -> list[tuple[int, str, Stored]]:
        """``(account, reference, Stored)`` of every reference, sorted by account then
        reference: the snapshot's and the state hash's order."""
        rows, stored = self._rows, self.stored
        return [(account, reference, stored(account, mine[reference]))
                for account, mine in sorted(rows.items())
                for reference in sorted(mine)]

    @classmethod
    def loaded(cls, listed: Iterable[tuple[int, str, Stored]]) -> References:
        """The references of a snapshot's ``listed``: a row each, or its ``Stored`` kept
        (``KEPT``) where the row would not rebuild it exactly."""
        references = cls()
        for account, reference, stored in listed:
            figures = _figures(account, stored)
            if figures is None:
                row = references.add(account, reference, KEPT, 0, 0, 0)
                references._kept[row] = stored
            else:
                references.add(account, reference, *figures)
        return references

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, References):
            return NotImplemented
        return self.listed() == other.listed()

    __hash__ = None  # type: ignore[assignment]  # mutable


def _figures(account: int, stored: Stored) -> tuple[int, int, int, int] | None:
    """(kind, amount, time_us, cash) of a loaded ``Stored`` that ``References.stored`` gives
    back exactly (types, figures, the body's keys in their order), else None."""
    if type(stored) is not Stored or type(stored.reply) is not Reply:
        return None
    fingerprint, time_us, reply = stored.fingerprint, stored.time_us, stored.reply
    name, _, figure = fingerprint.partition(":")
    kind = _KINDS.get(name)
    body = reply.body
    if (kind is None or not figure.isdigit() or reply.status != 201 or type(body) is not dict
            or list(body) != (["account_id", "cash_available"] if kind == DEPOSIT
                              else ["cash_available"])):
        return None
    amount, cash = int(figure), body["cash_available"]
    if (fingerprint != f"{name}:{amount}" or type(cash) is not int or type(time_us) is not int
            or (kind == DEPOSIT and (type(body["account_id"]) is not int
                                     or body["account_id"] != account))):
        return None
    if not all(-INT64_MAX - 1 <= value <= INT64_MAX
               for value in (account, amount, time_us, cash)):
        return None
    return kind, amount, time_us, cash
