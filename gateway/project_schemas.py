"""Request and response bodies of the projects API (primary offerings)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gateway.schemas import NO_NUL, Amount, Name, NonNegativeFen, Request, Time

Text = Annotated[str, msgspec.Meta(max_length=20_000, pattern=NO_NUL)]
Bps = Annotated[int, msgspec.Meta(gt=0, le=100_000)]
TierId = str | int


class CreateProjectRequest(Request):
    board: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    title: Name
    deadline: Annotated[str, msgspec.Meta(min_length=1, max_length=64,
                                          extra_json_schema={"format": "date-time"})]
    terms: msgspec.Raw  # decoded by the board's own terms type (OpenAPI: one schema a board)
    description: Text = ""


class SubscribeRequest(Request):
    quantity: Amount
    rate_bps: Bps | None = None
    tier_id: TierId | None = None


class DistributionRequest(Request):
    amount: Amount


class RevenueRequest(Request):
    """Operating rights: a month's revenue (0 is a valid report)."""

    month: Annotated[str, msgspec.Meta(pattern="^[0-9]{4}-(0[1-9]|1[0-2])$",
                                       description="YYYY-MM")]
    revenue: NonNegativeFen


class DeliveryRequest(Request):
    delivered: bool = True


class DisclosureRequest(Request):
    title: Name
    body: Text


class ProjectView(msgspec.Struct):
    """A project as ``GET /v1/projects/{id}`` shows it; the optional fields belong to some
    boards or states only."""

    project_id: int
    board: str
    title: str
    status: str
    deadline: Time
    terms: dict[str, Any]
    raised: int
    subscribed_quantity: int
    investor_count: int
    description: str = ""
    issuer_id: int | None = None
    created: Time | None = None
    closed: Time | None = None
    instrument_id: int | None = None  # once the securities are issued
    lockup_until: Time | None = None
    rate_bps: int | None = None  # debt at a fixed rate
    clearing_rate_bps: int | None = None  # debt auctions, after the close
    held_amount: int | None = None  # product
    tiers: list[dict[str, Any]] | None = None  # product
    delivery: Any = None  # product, once delivery is confirmed
    # Operating rights, once the offering succeeded: the term and where it stands.
    first_month: str | None = None
    last_month: str | None = None
    term_end: Time | None = None
    buyback_due: Time | None = None
    units_outstanding: int | None = None
    in_default: bool | None = None  # while any month or the buy-back is in default
    instrument_closed: bool | None = None  # from the end of the term


class SubscriptionView(msgspec.Struct):
    subscription_id: int
    status: str
    reserved_amount: int
    project_id: int | None = None
    account_id: int | None = None
    quantity: int | None = None
    rate_bps: int | None = None
    tier_id: str | int | None = None


class AllocationView(msgspec.Struct):
    account_id: int
    quantity: int
    amount: int
    refunded: int
    subscription_id: int | None = None


class InstalmentView(msgspec.Struct):
    """A row of ``GET /v1/projects/{id}/schedule``: a debt instalment (``number``,
    ``principal``, ``interest``, ``amount``), or an operating-rights month (``month``;
    ``revenue`` and ``owed`` null until reported) and, last, its buy-back (``buyback: true``).
    A revenue report answers its month's row."""

    due: Time
    paid: int
    status: Literal["scheduled", "paid", "late", "default"]
    number: int | None = None
    principal: int | None = None
    interest: int | None = None
    amount: int | None = None
    month: str | None = None
    revenue: int | None = None
    owed: int | None = None
    buyback: bool | None = None


class DistributionView(msgspec.Struct):
    distribution_id: int
    project_id: int
    amount: int
    status: str
    fee: int
    holders: int
    time: Time


class DisclosureView(msgspec.Struct):
    disclosure_id: int
    project_id: int
    title: str
    body: str
    time: Time


class IntegrityEntry(msgspec.Struct):
    account_id: int
    name: str
    reasons: list[Any] = []  # black-list entries say why


class IntegrityView(msgspec.Struct):
    black: list[IntegrityEntry]
    red: list[IntegrityEntry] = []  # the operator only
    month: str | None = None
