"""Commands: every state change is one of these, journaled before it takes effect.

Commands are msgspec Structs in one tagged union, encoded as msgpack arrays in the journal.
An ``Entry`` wraps a command with what the sequencer stamps on it: the exchange time, the
account that sent it, and the request's idempotency key, so replaying the journal reproduces
every decision, including idempotent replies.

Tags are stable journal format: never rename or reuse one.

Every command and ``Entry`` is ``gc=False``: each holds plain data (numbers, strings, a
listing's terms as plain dicts and lists), in no reference cycle, so the collector need not
track them; a replay makes and frees two for each entry (untracked: -0.9% of the
instructions of ``bench recovery``'s mixed replay), and a live venue makes them for every
request. A command of any module must be so too (``tests/engine/test_commands.py``).
"""

from __future__ import annotations

from typing import Union

import msgspec

from engine.markets_commands import MARKET_COMMANDS
from engine.offerings_commands import OFFERING_COMMANDS
from engine.offers_commands import OFFER_COMMANDS
from settlement.commands import SETTLEMENT_COMMANDS

# The venue's rules version, fixed by its Genesis. A rule change that would answer a journaled
# command differently gets a new version, so a journal replays under the rules it was written
# with (a Genesis written before versions existed decodes as 1).
#   1: secondary price bands capped at 3,355,442 fen
#   2: no cap (5x the reference, as API.md says); an order too far from its book's prices for
#      one dense ladder is refused price_too_far; accepted cn2015 offers are on the trade tape
#   3: the venue holds at most CASH_TOTAL_MAX fen (2^53) in all: a deposit past it is refused
#      limit_exceeded (before, int64 balances could wrap)
#   4: proceeds are unsettled net of what is taken from them at once (the seller's trade fee,
#      the issuer's success fee and held payout), so withdrawable cash is short by nothing
#      (before, the gross credit stayed unsettled and the fee came out of settled cash); a
#      cn2015 subscription by an investor who is not qualified is 422 not_eligible (was 403)
#   5: an order an amend re-entered (a new price or a larger quantity: API.md, at the back of its
#      level) keeps that place when the books are laid out again (a book opening, a ladder
#      growing); before, that relayout relinked every level in order id order, and the amended
#      order went back ahead of the orders that came before its amend
# A board, command or field that no older journal can hold needs no new version: the
# operating-rights board (its revenue reports and buy-backs) came without one, since the gateway
# refuses an unknown board before anything is journaled, so no older journal names it.
RULES_VERSION = 5


class Genesis(msgspec.Struct, tag="genesis", array_like=True, gc=False):
    """The first command of a venue: the fee account, the bootstrap operator, the clock."""

    operator_key_hash: str
    manual_clock: bool
    start_time_us: int
    profile: str = "intl"
    rules: int = 1  # new venues say RULES_VERSION


class SetOperatorKey(msgspec.Struct, tag="set_operator_key", array_like=True, gc=False):
    """Rotate the bootstrap operator's API key (``serve --operator-key`` with a new key)."""

    key_hash: str


class CreateAccount(msgspec.Struct, tag="create_account", array_like=True, gc=False):
    role: str
    name: str
    key_hash: str
    investor_class: str = "retail"
    annual_income: int | None = None
    net_worth: int | None = None
    # Only when the request carried an Idempotency-Key: the reply must then hold the key so a
    # retry (even after a restart) returns the same, working key.
    reply_api_key: str | None = None


class Deposit(msgspec.Struct, tag="deposit", array_like=True, gc=False):
    account_id: int
    amount: int
    reference: str


class Withdraw(msgspec.Struct, tag="withdraw", array_like=True, gc=False):
    account_id: int
    amount: int
    reference: str


class AdvanceClock(msgspec.Struct, tag="advance_clock", array_like=True, gc=False):
    seconds: int


class Tick(msgspec.Struct, tag="tick", array_like=True, gc=False):
    """Carries the time when nothing else does, so deadlines fire while the venue is idle."""


CORE_COMMANDS: tuple[type, ...] = (
    Genesis, SetOperatorKey, CreateAccount, Deposit, Withdraw, AdvanceClock, Tick,
)
# Each component defines its commands in its own module and lists them in a tuple added here.
ALL_COMMANDS: tuple[type, ...] = (
    CORE_COMMANDS + SETTLEMENT_COMMANDS + OFFERING_COMMANDS + MARKET_COMMANDS + OFFER_COMMANDS)

Command = Union[ALL_COMMANDS]  # noqa: UP007 - a Union built from a tuple at import time


class Entry(msgspec.Struct, array_like=True, gc=False):
    """One journal record's payload: a command and what the sequencer stamped on it."""

    time_us: int
    actor: int
    command: Command
    idempotency_key: str | None = None
    request_hash: str | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)
_list_decoder = msgspec.msgpack.Decoder(list[Entry])


def encode_entry(entry: Entry) -> bytes:
    return _encoder.encode(entry)


def decode_entry(payload: bytes) -> Entry:
    return _decoder.decode(payload)


def decode_entries(data: bytes, starts: list[int], ends: list[int]) -> list[Entry]:
    """The entries ``data[start:end]`` of each (start, end), decoded from views of ``data``
    (a replay decodes every entry of its chunks: no copy of each entry's bytes, no call per
    entry but the decoder's)."""
    view, decode = memoryview(data), _decoder.decode
    return [decode(view[start:end]) for start, end in zip(starts, ends, strict=True)]


def decode_entry_array(data: bytes | memoryview) -> list[Entry]:
    """The entries of a msgpack array of them (``engine.kernels.entries.gather_array``): one
    call of the decoder for them all, a third of the time of one call each."""
    return _list_decoder.decode(data)
