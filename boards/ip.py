"""The IP board: royalty units, sold like equity; holders share the issuer's licensing receipts."""

from __future__ import annotations

from typing import Annotated

import msgspec

from boards import rules
from boards.equity import LockupDays, Positive

CONFIG = rules.BoardConfig(
    name="ip",
    duration_days_min=21,
    duration_days_max=60,
    cancel_window_us=48 * rules.US_PER_HOUR,
    success_fee_bps=500,
    lockup_days_default=365,
    distribution_fee_bps=200,  # admin fee on each royalty distribution
    counts_toward_limit=True,
    qualified_only_cn2015=True,
    holders_max_cn2015=200,
    owes_disclosures=True,
)


class IpTerms(rules.Terms):
    price: Positive
    min_quantity: Positive
    max_quantity: Positive
    royalty_share_bps: Annotated[int, msgspec.Meta(gt=0, le=10_000)]
    lockup_days: LockupDays | None = None


class IpBoard(rules.Board):
    config = CONFIG
    terms_type = IpTerms
