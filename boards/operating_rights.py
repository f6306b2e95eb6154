"""The operating-rights board (经营权众筹): units of a business's monthly revenue for a term.

A café chain, a hotel or a shop sells units of its operating revenue for a fixed number of
calendar months. Each month the issuer reports its revenue and pays ``revenue_share_bps`` of it
to the holders; at the end of the term it buys every unit back at ``buyback_price``. The primary
offering is equity's (all-or-nothing, pro rata when oversubscribed), so the board class only
adds the terms that equity lacks.

Everything else here is the board's calendar and arithmetic as pure functions of their
arguments (BOARDS.md, "Operating-rights board"): which months make up the term, when each one
and the buy-back fall due, when they become late and defaulted, what a month's revenue owes,
and which stretch of an integrity-list month an overdue item stains. The state that follows the
close (reports, the buy-back, cancelled units) lives in ``engine/operating_terms.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

import msgspec

from boards import integrity, rules
from boards.equity import MAX_SAFE, LockupDays, Positive

NAME = "operating_rights"
CONFIG = rules.BoardConfig(
    name=NAME,
    duration_days_min=21,  # duration, cancel window and investor limits: as equity
    duration_days_max=60,
    cancel_window_us=48 * rules.US_PER_HOUR,
    success_fee_bps=500,
    lockup_days_default=90,
    distribution_fee_bps=200,  # the admin fee on each monthly payment (none on the buy-back)
    counts_toward_limit=True,
    # cn2015 "as equity": qualified investors only and at most 200 holders. BOARDS.md names
    # those two rules and not equity's hidden listing, so the projects stay publicly listed
    # like the IP board's (the revenue a business shares is what investors must be able to see).
    qualified_only_cn2015=True,
    holders_max_cn2015=200,
)
TERM_MONTHS_MIN = 6
TERM_MONTHS_MAX = 60
DUE_DAY_OF_MONTH = 15  # month m is due on the 15th of the next month, 00:00 UTC
LATE_AFTER_DUE_DAYS = 1  # late from 00:00 on the 16th: the whole due day is allowed
DEFAULT_AFTER_DUE_DAYS = 90
BUYBACK_DUE_AFTER_TERM_DAYS = 15  # the buy-back is due 15 days after the end of the term
MONTHS_PER_YEAR = 12

# Schedule statuses (the debt board's words).
SCHEDULED = "scheduled"
PAID = "paid"
LATE = "late"
DEFAULT = "default"


class OperatingRightsTerms(rules.Terms):
    price: Positive
    min_quantity: Positive
    max_quantity: Positive
    term_months: Annotated[int, msgspec.Meta(gt=0, le=1200)]
    revenue_share_bps: Annotated[int, msgspec.Meta(gt=0, le=rules.BPS_DENOMINATOR)]
    buyback_price: Annotated[int, msgspec.Meta(ge=0, le=MAX_SAFE)]  # may be 0: no buy-back
    lockup_days: LockupDays | None = None


class OperatingRightsBoard(rules.Board):
    """Equity's offering with a term, a revenue share and a buy-back price."""

    config = CONFIG
    terms_type = OperatingRightsTerms

    def normalize_terms(self, terms: dict) -> dict:
        if not TERM_MONTHS_MIN <= terms["term_months"] <= TERM_MONTHS_MAX:
            raise rules.invalid_terms(
                f"term_months must be {TERM_MONTHS_MIN} to {TERM_MONTHS_MAX}")
        # The buy-back is one payment the issuer makes through the API, whose amounts stop at
        # 2^53 fen: refuse terms under which it could not be paid.
        if terms["buyback_price"] * terms["max_quantity"] > MAX_SAFE:
            raise rules.invalid_terms(
                f"buyback_price x max_quantity must not exceed {MAX_SAFE} fen")
        return super().normalize_terms(terms)


# ---- money ----------------------------------------------------------------------------------


def owed_fen(revenue_fen: int, revenue_share_bps: int) -> int:
    """What a month's revenue owes the holders: ``revenue × bps // 10000``, rounded down."""
    if revenue_fen < 0:
        raise ValueError("revenue is never negative")
    return revenue_fen * revenue_share_bps // rules.BPS_DENOMINATOR


# ---- the calendar ---------------------------------------------------------------------------
# A month is an index: year * 12 + (month - 1), so consecutive months are consecutive integers.


def month_index(time_us: int) -> int:
    """The calendar month (UTC) that ``time_us`` falls in."""
    moment = datetime.fromtimestamp(time_us // 1_000_000, tz=UTC)
    return moment.year * MONTHS_PER_YEAR + moment.month - 1


def month_start_us(index: int) -> int:
    """00:00 UTC on the first day of month ``index``."""
    year, month0 = divmod(index, MONTHS_PER_YEAR)
    return int(datetime(year, month0 + 1, 1, tzinfo=UTC).timestamp()) * 1_000_000


def month_text(index: int) -> str:
    year, month0 = divmod(index, MONTHS_PER_YEAR)
    return f"{year:04d}-{month0 + 1:02d}"


def parse_month(text: str) -> int:
    """``YYYY-MM`` → a month index; ValueError otherwise (the integrity list's parser)."""
    year, month = integrity.parse_month(text)
    return year * MONTHS_PER_YEAR + month - 1


def first_month(closed_us: int) -> int:
    """Month 1 of the term: the first calendar month that starts at or after the close."""
    index = month_index(closed_us)
    return index if month_start_us(index) == closed_us else index + 1


def due_us(index: int) -> int:
    """Month ``index`` is due at 00:00 UTC on the 15th of the next month."""
    return month_start_us(index + 1) + (DUE_DAY_OF_MONTH - 1) * rules.US_PER_DAY


def late_from_us(due: int) -> int:
    return due + LATE_AFTER_DUE_DAYS * rules.US_PER_DAY


def default_from_us(due: int) -> int:
    return due + DEFAULT_AFTER_DUE_DAYS * rules.US_PER_DAY


@dataclass(frozen=True, slots=True)
class Term:
    """The months of one project's term: ``first`` and the ``count`` after it."""

    first: int
    count: int

    @property
    def last(self) -> int:
        return self.first + self.count - 1

    @property
    def end_us(self) -> int:
        """The end of the term: 00:00 UTC on the day after its last month."""
        return month_start_us(self.first + self.count)

    @property
    def buyback_due_us(self) -> int:
        return self.end_us + BUYBACK_DUE_AFTER_TERM_DAYS * rules.US_PER_DAY

    def months(self) -> range:
        return range(self.first, self.first + self.count)

    def __contains__(self, index: int) -> bool:
        return self.first <= index <= self.last


def status(due: int, paid_us: int | None, now_us: int) -> str:
    """A month's or the buy-back's status: paid once paid, else by how overdue it is."""
    if paid_us is not None:
        return PAID
    if now_us >= default_from_us(due):
        return DEFAULT
    if now_us >= late_from_us(due):
        return LATE
    return SCHEDULED


def overdue_during(due: int, paid_us: int | None, start_us: int, end_us: int) -> str | None:
    """The worst status an item had during ``[start_us, end_us)``: ``default``, ``late`` or
    None. An item paid late stays on the list of every month it was overdue in (BOARDS.md)."""
    until = paid_us if paid_us is not None else end_us
    for worst, since in ((DEFAULT, default_from_us(due)), (LATE, late_from_us(due))):
        if since < end_us and until > start_us and since < until:
            return worst
    return None
