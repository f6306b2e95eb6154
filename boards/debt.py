"""The debt board: notes of a loan at a fixed rate (first come) or a uniform-price rate auction.

Also the repayment schedule: equal monthly instalments (amortizing) or monthly interest with the
principal at maturity (bullet), computed exactly with rationals and rounded half up to the fen.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from typing import Annotated, Any, Literal

import msgspec

from boards import rules
from boards.equity import LockupDays, Positive
from boards.errors import CrowdexError

Bps = Annotated[int, msgspec.Meta(gt=0, le=100_000)]

CONFIG = rules.BoardConfig(
    name="debt",
    duration_days_min=7,
    duration_days_max=60,
    cancel_window_us=48 * rules.US_PER_HOUR,
    success_fee_bps=300,
    lockup_days_default=0,
    distribution_fee_bps=100,  # servicing fee on each repayment
    counts_toward_limit=True,
    borrower_cap_fen=1_000_000_00,
    owes_disclosures=True,
)
TERM_MONTHS_MIN = 6
TERM_MONTHS_MAX = 60
LATE_AFTER_DAYS = 15
DEFAULT_AFTER_DAYS = 90
RATE_DIVISOR = 120_000  # r = rate_bps / 120000: a yearly rate in bps, per month


class Auction(rules.Terms):
    max_rate_bps: Bps


class DebtTerms(rules.Terms):
    face_value: Positive
    min_quantity: Positive
    max_quantity: Positive
    term_months: Annotated[int, msgspec.Meta(gt=0, le=1200)]
    repayment: Literal["amortizing", "bullet"]
    rate_bps: Bps | None = None
    auction: Auction | None = None
    lockup_days: LockupDays | None = None


class DebtBoard(rules.Board):
    config = CONFIG
    terms_type = DebtTerms

    def normalize_terms(self, terms: dict) -> dict:
        if terms.get("rate_bps") is None and terms.get("auction") is None:
            raise CrowdexError("missing_field", "missing field rate_bps (or auction)")
        if terms.get("rate_bps") is not None and terms.get("auction") is not None:
            raise rules.invalid_terms("give either rate_bps or auction, not both")
        if not TERM_MONTHS_MIN <= terms["term_months"] <= TERM_MONTHS_MAX:
            raise rules.invalid_terms(
                f"term_months must be {TERM_MONTHS_MIN} to {TERM_MONTHS_MAX}")
        terms = super().normalize_terms(terms)
        return {k: v for k, v in terms.items() if v is not None}

    def unit_price_fen(self, terms: dict) -> int:
        return terms["face_value"]

    def principal_fen(self, terms: dict) -> int:
        return terms["max_quantity"] * terms["face_value"]

    def price_subscription(self, terms: dict, quantity: int, rate_bps: int | None,
                           tier_id: Any) -> int:
        if tier_id is not None:
            raise CrowdexError("invalid_field", "a debt subscription takes no tier_id")
        auction = terms.get("auction")
        if auction is None:
            if rate_bps is not None:
                raise CrowdexError("invalid_field", "this loan has a fixed rate: no rate_bps")
        elif rate_bps is None:
            raise CrowdexError("missing_field", "a bid in a rate auction needs rate_bps")
        elif rate_bps > auction["max_rate_bps"]:
            raise CrowdexError("rate_above_max",
                               f"the highest rate accepted is {auction['max_rate_bps']} bps")
        return quantity * terms["face_value"]

    def check_capacity(self, terms: dict, quantity: int, tier_id: Any,
                       taken: dict[Any, int], allocation: rules.Allocation) -> None:
        if "auction" in terms:
            return  # every bid rests until the close ranks them
        rules.first_come_check(allocation, terms["max_quantity"] - taken.get(None, 0), quantity)

    def close(self, terms: dict, subs: list[rules.SubscriptionView],
              allocation: rules.Allocation) -> rules.CloseResult:
        asked = [s.quantity for s in subs]
        total = sum(asked)
        if total < terms["min_quantity"] or total == 0:
            return rules.CloseResult(False, [0] * len(subs), [0] * len(subs))
        face = terms["face_value"]
        if "auction" not in terms:
            return rules.CloseResult(True, asked, [q * face for q in asked], terms["rate_bps"])
        quantities, clearing = allocation.rate_auction(
            terms["max_quantity"], asked, [s.rate_bps for s in subs], [s.sequence for s in subs])
        return rules.CloseResult(True, quantities, [q * face for q in quantities], clearing)


# ---- the schedule ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Instalment:
    number: int
    due_us: int
    principal_fen: int
    interest_fen: int

    @property
    def amount_fen(self) -> int:
        return self.principal_fen + self.interest_fen


def add_months_us(start_us: int, months: int) -> int:
    """The same day of month (clamped to the month's end) and time of day, ``months`` later."""
    moment = datetime.fromtimestamp(start_us // 1_000_000, tz=UTC)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    shifted = moment.replace(year=year, month=month, day=day)
    return int(shifted.timestamp()) * 1_000_000 + start_us % 1_000_000


def level_instalment_fen(principal_fen: int, rate_bps: int, months: int) -> int:
    """``M = round_half_up(P·r(1+r)^n / ((1+r)^n − 1))`` with ``r = rate_bps / 120000``."""
    r = Fraction(rate_bps, RATE_DIVISOR)
    if r == 0:
        return rules.round_half_up(Fraction(principal_fen, months))
    growth = (1 + r) ** months
    return rules.round_half_up(principal_fen * r * growth / (growth - 1))


def schedule(principal_fen: int, rate_bps: int, months: int, repayment: str,
             closed_us: int) -> list[Instalment]:
    """The instalments of a loan closed at ``closed_us`` (API.md "Debt schedules")."""
    r = Fraction(rate_bps, RATE_DIVISOR)
    level = level_instalment_fen(principal_fen, rate_bps, months)
    balance = principal_fen
    out = []
    for number in range(1, months + 1):
        interest = rules.round_half_up(balance * r)
        if number == months:
            principal = balance
        elif repayment == "bullet":
            principal = 0
        else:
            principal = min(balance, max(0, level - interest))
        balance -= principal
        out.append(Instalment(number, add_months_us(closed_us, number), principal, interest))
    return out
