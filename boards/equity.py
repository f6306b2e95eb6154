"""The equity board: shares at a fixed price, all-or-nothing, pro rata when oversubscribed."""

from __future__ import annotations

from typing import Annotated

import msgspec

from boards import rules

MAX_SAFE = 2**53
Positive = Annotated[int, msgspec.Meta(gt=0, le=MAX_SAFE)]
LockupDays = Annotated[int, msgspec.Meta(ge=0, le=36_500)]

CONFIG = rules.BoardConfig(
    name="equity",
    duration_days_min=21,
    duration_days_max=60,
    cancel_window_us=48 * rules.US_PER_HOUR,
    success_fee_bps=600,
    lockup_days_default=365,
    counts_toward_limit=True,
    qualified_only_cn2015=True,
    hidden_cn2015=True,
    holders_max_cn2015=200,
)


class EquityTerms(rules.Terms):
    price: Positive
    min_quantity: Positive
    max_quantity: Positive
    lockup_days: LockupDays | None = None


class EquityBoard(rules.Board):
    """Shares: the generic all-or-nothing, pro-rata close of ``rules.Board`` as is."""

    config = CONFIG
    terms_type = EquityTerms
