"""Request and response bodies of the public API, validated once at the edge by msgspec.

Every request struct forbids unknown fields; every integer carries its bounds, so nothing past
this module ever sees a float, a bool, a negative amount or an integer past 2^53.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

MAX_SAFE = 2**53

Amount = Annotated[int, msgspec.Meta(gt=0, le=MAX_SAFE, description="fen, positive")]
NonNegativeFen = Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE, description="fen")]
Id = Annotated[int, msgspec.Meta(gt=0, le=MAX_SAFE)]
# Text a client sends has no NUL character: PostgreSQL's text cannot hold one, and an account
# name that reaches the settlement ledger with one would fail every batch after it.
NO_NUL = "^[^\\x00]*$"
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Reference = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=NO_NUL)]
Seconds = Annotated[int, msgspec.Meta(gt=0, le=100 * 365 * 86_400)]
# Times in answers: ISO 8601 UTC strings (API.md), declared as such to OpenAPI's readers.
Time = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"},
                                   description="ISO 8601 UTC")]


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every request body."""


class CreateAccountRequest(Request):
    role: Literal["investor", "issuer", "operator"]
    name: Name
    investor_class: Literal["retail", "qualified", "institutional"] = "retail"
    annual_income: NonNegativeFen | None = None
    net_worth: NonNegativeFen | None = None


class MoneyMovementRequest(Request):
    amount: Amount
    reference: Reference


class ClockRequest(Request):
    advance_seconds: Seconds


# ---- responses (for the OpenAPI document) --------------------------------------------------


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class ErrorBody(msgspec.Struct):
    error: ErrorDetail


class AccountCreated(msgspec.Struct):
    account_id: int
    api_key: str
    role: str


class DepositResult(msgspec.Struct):
    account_id: int
    cash_available: int


class WithdrawalResult(msgspec.Struct):
    cash_available: int


class Holding(msgspec.Struct):
    instrument_id: int
    quantity_available: int
    quantity_reserved: int


class Me(msgspec.Struct):
    account_id: int
    role: str
    name: str
    investor_class: str
    cash_available: int
    cash_reserved: int
    cash_withdrawable: int
    holdings: list[Holding]


class ClockResult(msgspec.Struct):
    now: Time


class AdminState(msgspec.Struct):
    sequence: int
    state_hash: str
    now: Time
    cash_total: int
    skipped: list[dict[str, Any]] = []  # journal entries skipped with crowdex skip


class Health(msgspec.Struct, omit_defaults=True):
    status: Literal["ok", "degraded"]  # degraded: 503
    database: str | None = None  # "down" while PostgreSQL is away
    journal: str | None = None  # "unavailable" while a replica's stream takes no writes
    journal_reason: str | None = None  # why: "no_quorum", "no_connection" or "refused"


class Venue(msgspec.Struct):
    """GET /v1/venue: how the venue runs."""

    profile: Literal["intl", "cn2015"]
    clock: Literal["wall", "manual"]
    now: Time


class BoardRules(msgspec.Struct, omit_defaults=True):
    """One board's rules in force for projects listed now (GET /v1/boards)."""

    board: str
    duration_days_min: int
    duration_days_max: int
    cancel_window_hours: int
    success_fee_bps: int
    lockup_days: int
    secondary_market: bool
    seller_fee_bps: int | None = None  # boards with a secondary market
    distribution_fee_bps: int | None = None  # debt servicing, IP and operating-rights admin
    borrower_cap_fen: int | None = None  # debt
    holders_max: int | None = None  # under cn2015
    payout_released_pct: int | None = None  # product


class BoardsView(msgspec.Struct):
    profile: str
    auction_hour_utc: int  # the IP board's daily call auction
    boards: list[BoardRules]
