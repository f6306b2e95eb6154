"""Deposit and withdrawal references: what the first use of each did, in four figures.

A deposit or a withdrawal names a reference (a bank transfer's). The venue keeps, per account,
what the first use of each reference did, for ever: a retry with the same reference gets the
first reply again, and another movement under it is refused (``reference_conflict``).

They were kept as a ``Stored`` reply each (a fingerprint string, a ``Reply`` and its body dict):
540 bytes a reference, 118 MB of the 587 MB a replay of ``bench recovery``'s 1M mixed
commands holds (220k references). Here each account's references are a dict of their
strings, each holding a ``Use``: four figures (kind, amount, time, the cash its reply shows),
from which its ``Stored`` is rebuilt when a retry, a snapshot or the state hash reads it, the
same values as before, so snapshots and the state hash are unchanged. A ``Use`` is a small
struct, not a row of an array: making it costs less than appending four figures to one (a
replay keeps a reference at every sixth entry), and a deposit's apply is what a replay pays
for.

A run of a replay applies a deposit before the orders ahead of it and completes the cash its
reply shows after them (``StateMachine._show_cash``). Until then its reply is pending
(``pend``): a repeat of the reference in the same run answers that very reply, completed with
it, as when the reply itself was what the reference kept.

A ``Stored`` loaded from a snapshot that a ``Use`` would not rebuild exactly is kept as it was:
the uses cover the replies ``StateMachine`` makes now, and nothing else is guessed.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from engine.replies import Reply, Stored

DEPOSIT, WITHDRAWAL = 0, 1
_KINDS = {"deposit": DEPOSIT, "withdraw": WITHDRAWAL}


class Use(msgspec.Struct, gc=False):
    """What the first use of a reference did (its fields are numbers: in no reference cycle,
    so never tracked by the collector)."""

    kind: int  # DEPOSIT or WITHDRAWAL
    amount: int  # fen: the fingerprint's figure
    time_us: int  # when
    cash: int  # the cash_available its reply shows


class References:
    """Every account's references: account -> reference -> its ``Use`` (or, loaded, the
    ``Stored`` a use would not rebuild). A dict per account, not one keyed by (account,
    reference): no key tuple a reference, and the snapshot's order (by account, then
    reference) is a sort of each account's few, not of them all."""

    __slots__ = ("by_account", "count", "_pending")

    def __init__(self) -> None:
        # Read and written by the deposit and withdrawal handlers themselves
        # (``StateMachine._deposit``): a method call each was a fifth of their cost.
        self.by_account: dict[int, dict[str, Use | Stored]] = {}
        self.count = 0  # references kept (a run compares it before and after a command)
        # id(use) -> (the use, its reply) while the cash it shows waits to be completed (the
        # reply None: not built yet).
        self._pending: dict[int, tuple[Use, Reply | None]] = {}

    def __len__(self) -> int:
        return self.count

    def use(self, account: int, reference: str) -> Use | Stored | None:
        """What ``account``'s ``reference`` did first (None: never used)."""
        mine = self.by_account.get(account)
        return None if mine is None else mine.get(reference)

    def keep(self, account: int, reference: str, use: Use | Stored,
             mine: dict[str, Use | Stored] | None) -> None:
        """Keep a new reference of ``account``'s; ``mine``: its references' dict as the
        caller read it (None: it has none yet)."""
        if mine is None:
            mine = self.by_account[account] = {}
        mine[reference] = use
        self.count += 1

    def pend(self, use: Use, reply: Reply) -> None:
        """Note that the cash ``use``'s reply shows is to be completed (``show_more``), and
        the reply, if it was built (it has a body), to complete with it."""
        self._pending[id(use)] = (use, reply if reply.body is not None else None)

    def show_more(self, use: Use, amount: int) -> None:
        """Raise the cash the reply of ``use`` shows by ``amount`` (``StateMachine._show_cash``:
        a run's sales that came before the entry, applied after it), its pending reply too."""
        use.cash += amount
        pending = self._pending.get(id(use))
        if pending is not None and pending[1] is not None:
            pending[1].body["cash_available"] += amount

    def settle(self) -> None:
        """The run's pending replies are complete (or were never to be completed)."""
        self._pending.clear()

    def stored(self, account: int, use: Use | Stored) -> Stored:
        """The first use's ``Stored`` (fingerprint, time, reply) of one of ``account``'s
        references, as the machine made it."""
        if type(use) is Stored:
            return use
        pending = self._pending.get(id(use))
        reply = None if pending is None else pending[1]
        if reply is None:
            reply = use_reply(account, use)
            if pending is not None:  # answered before it is complete: completed with it
                self._pending[id(use)] = (use, reply)
        name = "deposit" if use.kind == DEPOSIT else "withdraw"
        return Stored(f"{name}:{use.amount}", use.time_us, reply)

    def listed(self) -> list[tuple[int, str, Stored]]:
        """``(account, reference, Stored)`` of every reference, sorted by account then
        reference: the snapshot's and the state hash's order."""
        stored = self.stored
        return [(account, reference, stored(account, mine[reference]))
                for account, mine in sorted(self.by_account.items())
                for reference in sorted(mine)]

    @classmethod
    def loaded(cls, listed: Iterable[tuple[int, str, Stored]]) -> References:
        """The references of a snapshot's ``listed``: a ``Use`` each, or its ``Stored`` kept
        where a use would not rebuild it exactly."""
        references = cls()
        for account, reference, stored in listed:
            use = _use_of(account, stored)
            references.keep(account, reference, stored if use is None else use,
                            references.by_account.get(account))
        return references

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, References):
            return NotImplemented
        return self.listed() == other.listed()

    __hash__ = None  # type: ignore[assignment]  # mutable


def use_reply(account: int, use: Use) -> Reply:
    """The reply of the movement ``use`` records for ``account``: a deposit's or a
    withdrawal's (``StateMachine._deposit``, ``_withdraw``), as the handler gives it."""
    if use.kind == DEPOSIT:
        return Reply(201, {"account_id": account, "cash_available": use.cash})
    return Reply(201, {"cash_available": use.cash})


def _use_of(account: int, stored: Stored) -> Use | None:
    """The ``Use`` of a loaded ``Stored`` that ``References.stored`` gives back exactly
    (types, figures, the body's keys in their order), else None."""
    if type(stored) is not Stored or type(stored.reply) is not Reply:
        return None
    fingerprint, time_us, reply = stored.fingerprint, stored.time_us, stored.reply
    name, _, figure = fingerprint.partition(":")
    kind = _KINDS.get(name)
    body = reply.body
    keys = ["account_id", "cash_available"] if kind == DEPOSIT else ["cash_available"]
    if (kind is None or not (figure.isascii() and figure.isdigit()) or reply.status != 201
            or type(body) is not dict or list(body) != keys):
        return None
    amount, cash = int(figure), body["cash_available"]
    if (fingerprint != f"{name}:{amount}" or type(cash) is not int or type(time_us) is not int
            or (kind == DEPOSIT and (type(body["account_id"]) is not int
                                     or body["account_id"] != account))):
        return None
    return Use(kind, amount, time_us, cash)
