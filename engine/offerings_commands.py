"""Commands of primary offerings (projects, subscriptions, distributions, disclosures, the
operating-rights board's revenue reports).

Tags are stable journal format: never rename or reuse one.
"""

from __future__ import annotations

from typing import Any

import msgspec


class CreateProject(msgspec.Struct, tag="create_project", array_like=True, gc=False):
    board: str
    title: str
    description: str
    deadline_us: int
    terms: dict[str, Any]


class ReviewProject(msgspec.Struct, tag="review_project", array_like=True, gc=False):
    """An operator's approval (the offering opens) or rejection."""

    project_id: int
    approve: bool


class CloseProject(msgspec.Struct, tag="close_project", array_like=True, gc=False):
    """An operator's close before the deadline."""

    project_id: int


class Subscribe(msgspec.Struct, tag="subscribe", array_like=True, gc=False):
    project_id: int
    quantity: int
    rate_bps: int | None = None  # debt auctions: the lowest rate accepted
    tier_id: str | int | None = None  # product pledges


class CancelSubscription(msgspec.Struct, tag="cancel_subscription", array_like=True, gc=False):
    subscription_id: int


class Distribute(msgspec.Struct, tag="distribute", array_like=True, gc=False):
    """The issuer pays a debt repayment or an IP royalty, paid out at the next batch."""

    project_id: int
    amount: int


class ConfirmDelivery(msgspec.Struct, tag="confirm_delivery", array_like=True, gc=False):
    """Product: release the held payout to the issuer, or refund it to the backers."""

    project_id: int
    delivered: bool = True


class PostDisclosure(msgspec.Struct, tag="post_disclosure", array_like=True, gc=False):
    project_id: int
    title: str
    body: str


class ReportRevenue(msgspec.Struct, tag="report_revenue", array_like=True, gc=False):
    """Operating rights: the issuer reports a month's revenue and pays what it owes at once."""

    project_id: int
    month: str  # YYYY-MM
    revenue: int  # fen, may be 0


class SetBoardRules(msgspec.Struct, tag="set_board_rules", array_like=True, gc=False):
    """The operator's boards file (``boards.overrides``), as parsed: it replaces the one in
    force and applies to projects listed from now on."""

    rules: dict[str, Any]


OFFERING_COMMANDS: tuple[type, ...] = (
    CreateProject, ReviewProject, CloseProject, Subscribe, CancelSubscription, Distribute,
    ConfirmDelivery, PostDisclosure, SetBoardRules, ReportRevenue,
)
