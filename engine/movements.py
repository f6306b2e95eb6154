"""The movement log: every change of who owns cash or units, waiting for settlement.

Anything that moves money between owners (a deposit, a trade, a fee, an allocation, a
distribution) records one movement here: ``amount`` of ``asset`` from ``debit_account`` to
``credit_account``. Asset 0 is cash in fen; any other asset is an instrument id, in units.
Account 0 is the world outside the venue: the custodian bank for cash (deposits come from it,
withdrawals go to it) and the issuance of units. Moving cash between an account's available and
reserved buckets is not a movement: the money stays in that investor's escrow.

A settlement batch takes the movements up to its cutoff sequence, writes them to the
PostgreSQL ledger as double-entry legs, and then ``release`` drops them from the state.
Cash credited by anything but a deposit is unsettled (not withdrawable) until then.
"""

from __future__ import annotations

import numpy as np

from engine.kernels.sequence_sort import sort_by_sequence
from engine.state import Table

EXTERNAL_ACCOUNT = 0
CASH = 0

# Movement kinds: stable numbers (they are journal-derived state and ledger data); never reuse.
DEPOSIT = 1
WITHDRAWAL = 2
TRADE_CASH = 3
TRADE_UNITS = 4
TRADE_FEE = 5
SUBSCRIPTION_PAYMENT = 6
UNITS_ISSUED = 7
SUCCESS_FEE = 8
DISTRIBUTION = 9
SERVICING_FEE = 10
PAYOUT_HELD = 11
PAYOUT_RELEASED = 12
HELD_REFUND = 13
BUYBACK = 14  # operating rights: the issuer buys a holder's units back at the end of the term
UNITS_CANCELLED = 15  # units bought back go out of issue (to account 0, where they came from)

# Debits taken out of proceeds the moment they are credited (a seller's fee out of the sale, the
# issuer's success fee and held payout out of what was raised): under rules 4 they lower the
# account's unsettled cash with the proceeds, and the batch that settles both clears the net.
FROM_PROCEEDS = (TRADE_FEE, SUCCESS_FEE, PAYOUT_HELD)

KIND_NAMES = {
    DEPOSIT: "deposit", WITHDRAWAL: "withdrawal", TRADE_CASH: "trade_cash",
    TRADE_UNITS: "trade_units", TRADE_FEE: "trade_fee",
    SUBSCRIPTION_PAYMENT: "subscription_payment", UNITS_ISSUED: "units_issued",
    SUCCESS_FEE: "success_fee", DISTRIBUTION: "distribution", SERVICING_FEE: "servicing_fee",
    PAYOUT_HELD: "payout_held", PAYOUT_RELEASED: "payout_released", HELD_REFUND: "held_refund",
    BUYBACK: "buyback", UNITS_CANCELLED: "units_cancelled",
}

MOVEMENT_DTYPE = np.dtype(
    [
        ("sequence", np.int64),  # the command that caused it
        ("movement_id", np.int64),  # unique and increasing over the venue's life
        ("kind", np.int16),
        ("debit_account", np.int64),
        ("credit_account", np.int64),
        ("asset", np.int64),  # 0 = cash (fen), else instrument id (units)
        ("amount", np.int64),
    ],
    align=True,
)


MOVEMENTS_CAPACITY = 1 << 20


class MovementLog:
    """Unsettled movements in a growable table, oldest first."""

    def __init__(self) -> None:
        # Room for a busy settlement interval from the start (64 MiB of address space, resident
        # only as used): growing a big table copies it on the exchange's thread.
        self.table = Table(MOVEMENT_DTYPE, MOVEMENTS_CAPACITY)
        self.next_id = 1
        # ``sort_since``'s scratch: rows, and two positions a row (grown as runs need).
        self._sort_scratch = np.zeros(1024, dtype=MOVEMENT_DTYPE)
        self._sort_order = np.zeros(2 * 1024, dtype=np.int64)

    def record(self, sequence: int, kind: int, debit_account: int, credit_account: int,
               asset: int, amount: int) -> None:
        if amount <= 0:
            raise ValueError(f"a movement must be positive, got {amount}")
        # Table.append, inlined (a deposit's and a withdrawal's movement: a method call was
        # as dear as writing the row).
        table = self.table
        index = table.count
        if index >= len(table.rows):
            table.ensure(index + 1)  # may grow (replace) the rows array: index it after
        table.count = index + 1
        # One assignment of the whole row (fields in MOVEMENT_DTYPE's order): field by field
        # costs fifteen times as much.
        table.rows[index] = (sequence, self.next_id, kind, debit_account, credit_account,
                             asset, amount)
        self.next_id += 1

    def record_many(self, rows: np.ndarray) -> None:
        """Append prepared rows (movement ids are assigned here), e.g. a batch of fills."""
        count = len(rows)
        if count == 0:
            return
        start = self.table.count
        self.table.ensure(start + count)
        block = self.table.rows[start:start + count]
        block[:] = rows
        block["movement_id"] = np.arange(self.next_id, self.next_id + count, dtype=np.int64)
        self.table.count += count
        self.next_id += count

    def claim(self, count: int) -> int:
        """Make room for ``count`` more rows and return where they start, for a kernel that
        writes movements into ``table.rows`` in place (``engine.kernels.movements``); then
        ``commit`` the rows it wrote."""
        start = self.table.count
        self.table.ensure(start + count)
        return start

    def commit(self, written: int) -> np.ndarray:
        """Take the ``written`` rows a kernel put after the live ones (ids ``next_id`` on, in
        order) as recorded; return them."""
        start = self.table.count
        self.table.count = start + written
        self.next_id += written
        return self.table.rows[start:start + written]

    def sort_since(self, start: int) -> None:
        """Put the rows recorded since row ``start`` in sequence order (stably: a command's
        own movements keep theirs) and number them again in that order, as if each command's
        had been recorded in turn (a run that applied some of its commands first)."""
        end = self.table.count
        if end - start > len(self._sort_scratch):
            self._sort_scratch = np.zeros(2 * (end - start), dtype=MOVEMENT_DTYPE)
            self._sort_order = np.zeros(2 * (2 * (end - start)), dtype=np.int64)
        if end > start:
            rows, half = self.table.rows, len(self._sort_scratch)
            sort_by_sequence(rows, start, end, int(rows[start]["movement_id"]),
                             self._sort_order[:half], self._sort_order[half:],
                             self._sort_scratch)

    def upto(self, cutoff_sequence: int) -> np.ndarray:
        """The unsettled movements caused by commands up to ``cutoff_sequence``."""
        live = self.table.live()
        end = int(np.searchsorted(live["sequence"], cutoff_sequence, side="right"))
        return live[:end]

    def release(self, cutoff_sequence: int) -> np.ndarray:
        """Drop (and return a copy of) the movements up to the cutoff, once settled."""
        settled = self.upto(cutoff_sequence).copy()
        self.drop(len(settled))
        return settled

    def drop(self, count: int) -> None:
        """Drop the first ``count`` movements, once settled (a view ``upto`` gave of them
        reads other rows from then on)."""
        self.table.drop_front(count)
