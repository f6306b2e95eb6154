"""The movements a kernel call's fills make, written straight into the movement log's rows.

The matching kernel has already moved the balances; settlement needs each trade as movements
(``engine.movements``): the buyer's cash to the seller, the seller's units to the buyer, and
the seller's fee to the fee account (the risk stage's ``fee_half_up`` at the instrument's
rate), left out when it rounds to nothing. One compiled pass writes them for any number of
fills, so neither a replay's long runs nor a live call's single fill builds a Python object
per fill.

The caller makes room for three rows a fill first (``MovementLog.claim``): nothing grows in
compiled code. The movement kinds are imported constants; they are stable numbers, never
reused (``engine.movements``), so a cached compilation cannot hold stale ones.
"""

from __future__ import annotations

from engine.kernels.codes import EV_FILL, SIDE_BUY
from engine.kernels.jit import kernel
from engine.kernels.risk import fee_half_up
from engine.movements import (
    CASH,
    DEPOSIT,
    EXTERNAL_ACCOUNT,
    TRADE_CASH,
    TRADE_FEE,
    TRADE_UNITS,
    WITHDRAWAL,
)


@kernel
def fill_movements(events, sequences, instruments, fee_account, rows, start, first_id,
                   accounts, take_fees):
    """Write the movements of the fills among ``events`` (``EVENT_DTYPE`` rows of one kernel
    call: other kinds are skipped, so the caller need not pick the fills out first;
    ``sequences`` gives each command's sequence by its position in the call) from
    ``rows[start]`` on, ids from ``first_id``; return how many rows were written. With
    ``take_fees`` (rules 4) each fee also lowers its seller's unsettled cash (``accounts``),
    as ``StateMachine.take_fees_from_proceeds`` does for the fee rows."""
    j = start
    for i in range(len(events)):
        f = events[i]
        if f["kind"] != EV_FILL:
            continue
        if f["side"] == SIDE_BUY:
            buyer = f["account"]
            seller = f["maker_account"]
        else:
            buyer = f["maker_account"]
            seller = f["account"]
        sequence = sequences[f["cmd"]]
        instrument = f["instrument"]
        qty = f["qty"]
        notional = f["price"] * qty
        _movement(rows[j], sequence, first_id + j - start, TRADE_CASH, buyer, seller, CASH,
                  notional)
        _movement(rows[j + 1], sequence, first_id + j + 1 - start, TRADE_UNITS, seller, buyer,
                  instrument, qty)
        j += 2
        # The fee the risk stage took.
        fee = fee_half_up(notional, instruments[instrument]["fee_bps"])
        if fee != 0:
            _movement(rows[j], sequence, first_id + j - start, TRADE_FEE, seller, fee_account,
                      CASH, fee)
            j += 1
            if take_fees:
                accounts[seller]["cash_unsettled"] -= fee
    return j - start


@kernel
def cash_movements(accounts, amounts, sequences, cash, rows, start, first_id, after):
    """Deposit ``amounts[i]`` fen (withdraw its opposite, where < 0) to (from) the available
    cash of ``accounts[i]`` (``cash``: the accounts' column), in order; write each one's
    movement from ``rows[start]`` on, ids from ``first_id`` (``MovementLog.claim``), and the
    cash it leaves into ``after[i]`` (``engine.cash_batch``: their checks were made)."""
    for i in range(len(accounts)):
        account, amount = accounts[i], amounts[i]
        cash[account] += amount
        if amount > 0:
            _movement(rows[start + i], sequences[i], first_id + i, DEPOSIT, EXTERNAL_ACCOUNT,
                      account, CASH, amount)
        else:
            _movement(rows[start + i], sequences[i], first_id + i, WITHDRAWAL, account,
                      EXTERNAL_ACCOUNT, CASH, -amount)
        after[i] = cash[account]


@kernel(inline=True)
def _movement(row, sequence, movement_id, kind, debit, credit, asset, amount):
    row["sequence"] = sequence
    row["movement_id"] = movement_id
    row["kind"] = kind
    row["debit_account"] = debit
    row["credit_account"] = credit
    row["asset"] = asset
    row["amount"] = amount


@kernel
def sales_before(rows, start, end, sequences, accounts, out):
    """For each ``accounts[k]``: the proceeds of its sales among ``rows[start:end]`` less the
    fees it paid on them, of the movements of commands before ``sequences[k]``, into
    ``out[k]``."""
    for k in range(len(accounts)):
        account, before = accounts[k], sequences[k]
        total = 0
        for r in range(start, end):
            row = rows[r]
            if row["sequence"] >= before:
                continue
            kind = row["kind"]
            if kind == TRADE_CASH and row["credit_account"] == account:
                total += row["amount"]
            elif kind == TRADE_FEE and row["debit_account"] == account:
                total -= row["amount"]
        out[k] = total


@kernel
def unsettled_credits(rows, from_proceeds, net, out):
    """Add to ``out`` (by account) the cash each of ``rows`` (a settlement batch's movements)
    credited to a venue account other than by a deposit, less, with ``net``, what was taken
    out of proceeds as they came (``from_proceeds[kind]``: ``movements.FROM_PROCEEDS``), from
    the account it was taken from: one pass over the rows, where numpy makes one per column
    and mask. Returns -1, or the position of a row whose account is outside ``out`` (then
    ``out`` holds a part of the sums: the caller discards it)."""
    size = len(out)
    for i in range(len(rows)):
        row = rows[i]
        if row["asset"] != CASH:
            continue
        kind = row["kind"]
        credit = row["credit_account"]
        if credit > 0 and kind != DEPOSIT:
            if credit >= size:
                return i
            out[credit] += row["amount"]
        if net and 0 <= kind < len(from_proceeds) and from_proceeds[kind]:
            debit = row["debit_account"]
            if debit < 0 or debit >= size:
                return i
            out[debit] -= row["amount"]
    return -1


@kernel
def newest_of(rows, account, limit, out):
    """The positions of the newest ``limit`` rows (at most) whose debit or credit account is
    ``account``, newest first, into ``out``; returns how many. A walk back from the newest
    row that stops at ``limit``: an account's page of pending movements (``GET
    /v1/me/movements``) masked every unsettled row, 20-46 ms of the one thread at a million
    of them."""
    found = 0
    at = len(rows) - 1
    while at >= 0 and found < limit:
        if rows[at]["credit_account"] == account or rows[at]["debit_account"] == account:
            out[found] = at
            found += 1
        at -= 1
    return found
