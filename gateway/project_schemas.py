"""Request and response bodies of the projects API (primary offerings)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from gateway.schemas import NO_NUL, Amount, Name, Request

Text = Annotated[str, msgspec.Meta(max_length=20_000, pattern=NO_NUL)]
Bps = Annotated[int, msgspec.Meta(gt=0, le=100_000)]
TierId = str | int


class CreateProjectRequest(Request):
    board: Annotated[str, msgspec.Meta(min_length=1, max_length=40)]
    title: Name
    deadline: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    terms: msgspec.Raw
    description: Text = ""


class SubscribeRequest(Request):
    quantity: Amount
    rate_bps: Bps | None = None
    tier_id: TierId | None = None


class DistributionRequest(Request):
    amount: Amount


class DeliveryRequest(Request):
    delivered: bool = True


class DisclosureRequest(Request):
    title: Name
    body: Text


class ProjectView(msgspec.Struct):
    project_id: int
    board: str
    title: str
    status: str
    deadline: str
    terms: dict[str, Any]
    raised: int
    subscribed_quantity: int
    investor_count: int


class SubscriptionView(msgspec.Struct):
    subscription_id: int
    status: str
    reserved_amount: int


class AllocationView(msgspec.Struct):
    account_id: int
    quantity: int
    amount: int
    refunded: int


class InstalmentView(msgspec.Struct):
    number: int
    due: str
    principal: int
    interest: int
    amount: int
    paid: int
    status: str


class IntegrityView(msgspec.Struct):
    black: list[dict[str, Any]]
    red: list[dict[str, Any]] = []
