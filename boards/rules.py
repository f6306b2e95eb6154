"""What every board shares: money rounding, the largest-remainder split, the allocation rules
(whose mechanisms, the engine's compiled kernels, are handed in as an ``Allocation``), the
listing lifecycle and the generic part of terms validation.

``fee_half_up`` and ``largest_remainder`` are THE venue's rounding helpers: settlement, markets
and the boards all import them from here, so a rounding rule is written down exactly once.

A board is a ``Board`` subclass in its own module (``boards/equity.py`` ...) carrying a frozen
``BoardConfig`` of its defaults, a msgspec ``Terms`` struct and the few decisions that differ
between boards (how a subscription is priced and checked, how the close allocates). Everything
here is a pure function of its arguments: no clock, no state, so the state machine stays
deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar, Protocol

import msgspec
import numpy as np

from boards.errors import CrowdexError

US_PER_DAY = 86_400 * 1_000_000
US_PER_HOUR = 3_600 * 1_000_000
BPS_DENOMINATOR = 10_000

# ---- statuses -------------------------------------------------------------------------------

PENDING_REVIEW = "pending_review"
REJECTED = "rejected"
OPEN = "open"
SUCCEEDED = "succeeded"
FAILED = "failed"
TRADING = "trading"
STATUSES = (PENDING_REVIEW, REJECTED, OPEN, SUCCEEDED, FAILED, TRADING)
CLOSED_STATUSES = (SUCCEEDED, FAILED, TRADING)

# The lifecycle as a table: which transitions a command may make.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    PENDING_REVIEW: (OPEN, REJECTED),
    OPEN: (SUCCEEDED, FAILED),
    SUCCEEDED: (TRADING,),
    REJECTED: (),
    FAILED: (),
    TRADING: (),
}


def check_transition(current: str, wanted: str) -> None:
    """Raise 409 ``invalid_state`` unless the lifecycle allows ``current`` → ``wanted``."""
    if wanted not in TRANSITIONS[current]:
        raise CrowdexError("invalid_state", f"a project that is {current} cannot become {wanted}")


# ---- rounding -------------------------------------------------------------------------------


def fee_half_up(notional_fen: int, bps: int) -> int:
    """A fee of ``bps`` basis points on ``notional_fen``, rounded half up to the fen."""
    if notional_fen < 0 or bps < 0:
        raise ValueError("fees are computed on non-negative notionals and rates")
    return (notional_fen * bps + 5000) // BPS_DENOMINATOR


def round_half_up(value: Fraction) -> int:
    """An exact rational rounded half up (towards +inf on .5) to an integer."""
    return (value.numerator * 2 + value.denominator) // (value.denominator * 2)


def largest_remainder(total: int, weights: Sequence[int],
                      tie_keys: Sequence[Any] | None = None) -> list[int]:
    """Split ``total`` units in proportion to ``weights`` by the largest-remainder method.

    Each share is first floored; the leftover units go one each to the largest fractional
    parts. Equal fractional parts are ordered by ``tie_keys`` (smallest first; default the
    position in ``weights``), so callers pass ``(sequence, account_id)`` for subscriptions and
    ``account_id`` for holders. The shares always sum to ``total`` exactly (when any weight is
    positive) and no share exceeds its exact value by a unit or more.
    """
    if total < 0:
        raise ValueError("cannot split a negative total")
    if any(w < 0 for w in weights):
        raise ValueError("weights must be non-negative")
    weight_sum = sum(weights)
    if weight_sum == 0:
        if total:
            raise ValueError("cannot split a positive total over zero weights")
        return [0] * len(weights)
    keys = list(range(len(weights))) if tie_keys is None else list(tie_keys)
    if len(keys) != len(weights):
        raise ValueError("tie_keys must match weights")
    shares = []
    remainders = []
    for weight in weights:
        share, remainder = divmod(total * weight, weight_sum)
        shares.append(share)
        remainders.append(remainder)
    leftover = total - sum(shares)
    # Fractional parts compare exactly as remainders over the same denominator.
    order = sorted(range(len(weights)), key=lambda i: (-remainders[i], keys[i]))
    for i in order[:leftover]:
        shares[i] += 1
    return shares


INT64_MAX = 2**63 - 1


def largest_remainder_columns(total: int, weights: np.ndarray,
                              tie_keys: np.ndarray) -> np.ndarray:
    """``largest_remainder`` of int64 columns, as an int64 column: the same split, with
    ties to the smaller of ``tie_keys`` (ints), then the earlier position, in a few numpy
    steps instead of Python per weight (a distribution pays every holder). Where a product
    ``total * weight`` or the weights' sum could pass int64, the split is
    ``largest_remainder``'s over Python integers."""
    weights = np.asarray(weights, dtype=np.int64)
    count = len(weights)
    if len(tie_keys) != count:
        raise ValueError("tie_keys must match weights")
    if total < 0:
        raise ValueError("cannot split a negative total")
    most = int(weights.max()) if count else 0
    if count and int(weights.min()) < 0:
        raise ValueError("weights must be non-negative")
    if most == 0 or most > INT64_MAX // max(total, count):
        return np.array(largest_remainder(total, weights.tolist(), tie_keys.tolist()),
                        dtype=np.int64)
    # Each product and the sum fit int64 (most * count and most * total do): exact.
    weight_sum = int(weights.sum())
    shares, remainders = np.divmod(weights * total, weight_sum)
    leftover = total - int(shares.sum())
    if leftover:
        # lexsort is stable: equal remainders and keys keep their order, as sorted() does.
        order = np.lexsort((np.asarray(tie_keys, dtype=np.int64), -remainders))
        shares[order[:leftover]] += 1
    return shares


# ---- allocation mechanisms ------------------------------------------------------------------
# Boards are rules, the engine is mechanism. A board decides WHAT takes part (the subscriptions
# handed in, in subscription order, after eligibility and the holder limit), the cap and the
# tie-break keys; the mechanism it is handed computes HOW MUCH each gets. The engine passes its
# compiled kernels (``engine/allocation.py``) when it calls ``Board.close`` and
# ``Board.check_capacity``, so the rules import nothing of the engine. The kernels' pro rata is
# a largest-remainder split with the same ties as ``largest_remainder`` above (earliest
# sequence, then lower account id); tests/boards/test_allocation_kernels.py holds them to each
# other.


class Allocation(Protocol):
    """The allocation mechanisms a board may use (the engine's are ``engine.allocation``)."""

    def pro_rata(self, capacity: int, quantities: Sequence[int], sequences: Sequence[int],
                 accounts: Sequence[int]) -> list[int]:
        """Fill everything when it fits; otherwise pro rata in whole units (largest remainder),
        ties to the earliest ``sequences``, then the lower ``accounts``."""
        ...

    def rate_auction(self, capacity: int, quantities: Sequence[int], rates_bps: Sequence[int],
                     sequences: Sequence[int]) -> tuple[list[int], int]:
        """Uniform-price rate auction: each bid's fill and the clearing rate (0: none fills)."""
        ...

    def first_come(self, remaining: int | None, quantity: int) -> str:
        """``ok``, ``sold_out`` or ``exceeds_remaining`` for ``quantity`` against what remains
        (``None``: unlimited; a negative ``remaining`` means nothing remains)."""
        ...


def holder_limit_cut(accounts: Sequence[int], holders_max: int,
                     existing_holders: int = 0) -> list[bool]:
    """Which subscriptions (in sequence order) stay within the holder limit.

    The first ``holders_max - existing_holders`` distinct accounts keep all their
    subscriptions; every subscription of a later account is refunded (``False``), so the
    latest subscriptions are the ones refunded first. (A rule, not a mechanism: it decides
    which subscriptions take part in the allocation.)
    """
    room = holders_max - existing_holders
    seen: set[int] = set()
    keep = []
    for account in accounts:
        if account not in seen and len(seen) < room:
            seen.add(account)
        keep.append(account in seen)
    return keep


# ---- investor limit -------------------------------------------------------------------------

RETAIL_THRESHOLD_FEN = 124_000_00
RETAIL_FLOOR_FEN = 2_500_00
RETAIL_CAP_FEN = 124_000_00


def retail_limit_fen(annual_income_fen: int | None, net_worth_fen: int | None) -> int:
    """The most a retail investor may commit over a rolling 12 months (BOARDS.md, equity).

    If income or net worth is below 124,000.00: the greater of 2,500.00 and 5 % of the greater
    of the two; otherwise the lesser of 124,000.00 and 10 % of the greater. Percentages are
    floored to the fen (the investor never gets a fen more than the rule allows).
    """
    income = annual_income_fen or 0
    worth = net_worth_fen or 0
    greater = max(income, worth)
    if income < RETAIL_THRESHOLD_FEN or worth < RETAIL_THRESHOLD_FEN:
        return max(RETAIL_FLOOR_FEN, greater * 5 // 100)
    return min(RETAIL_CAP_FEN, greater * 10 // 100)


# ---- boards ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoardConfig:
    """One board's defaults (BOARDS.md); the operator's configuration may override them."""

    name: str
    duration_days_min: int
    duration_days_max: int
    cancel_window_us: int  # cancelling is allowed while now < deadline - window
    success_fee_bps: int
    lockup_days_default: int
    distribution_fee_bps: int = 0  # servicing (debt) or admin (IP) fee on distributions
    counts_toward_limit: bool = False  # the retail investor limit (intl)
    tradable: bool = True  # has a secondary market
    issues_units: bool = True  # success issues instrument units
    cancellable_cn2015: bool = True
    qualified_only_cn2015: bool = False
    hidden_cn2015: bool = False  # invisible to all but operators, issuer, qualified
    holders_max_cn2015: int | None = None
    borrower_cap_fen: int | None = None
    payout_released_pct: int = 100  # product: 70 at success, the rest held until delivery
    seller_fee_bps: int = 100  # of each secondary-market fill, paid by the seller
    owes_disclosures: bool = False  # a disclosure a month after success


class Terms(msgspec.Struct, forbid_unknown_fields=True):
    """Base of every board's terms struct."""


class SubscriptionView(msgspec.Struct, gc=False):
    """What a board sees of one live subscription at the close (a struct: a close builds
    one per live subscription, a third of a dataclass's cost; ``gc=False``: it holds ints
    and a tier id, never a reference back)."""

    subscription_id: int
    account_id: int
    sequence: int
    quantity: int
    rate_bps: int
    tier_id: Any
    amount_fen: int  # reserved


@dataclass(slots=True)
class CloseResult:
    """A board's decision at the close: per subscription quantity and amount kept."""

    succeeded: bool
    quantities: list[int]
    amounts_fen: list[int]
    clearing_rate_bps: int = 0


class Board:
    """The rules one board applies; subclasses set ``config`` and ``terms_type``."""

    config: ClassVar[BoardConfig]
    terms_type: ClassVar[type[Terms]]

    # ---- terms ----

    def normalize_terms(self, terms: dict) -> dict:
        """Fill defaults and check consistency (422 ``invalid_terms``); returns stored terms."""
        terms = dict(terms)
        if terms.get("lockup_days") is None and "lockup_days" in self.terms_type.__struct_fields__:
            terms["lockup_days"] = self.config.lockup_days_default
        if "min_quantity" in terms and terms["min_quantity"] > terms["max_quantity"]:
            raise invalid_terms("min_quantity must not exceed max_quantity")
        return terms

    def check_deadline(self, deadline_us: int, now_us: int, when: str) -> None:
        low = now_us + self.config.duration_days_min * US_PER_DAY
        high = now_us + self.config.duration_days_max * US_PER_DAY
        if not low <= deadline_us <= high:
            raise invalid_terms(
                f"the deadline must lie {self.config.duration_days_min} to "
                f"{self.config.duration_days_max} days from {when}")

    def unit_price_fen(self, terms: dict) -> int:
        return terms["price"]

    def target_fen(self, terms: dict) -> int:
        """The funding target in fen (all-or-nothing)."""
        return terms["min_quantity"] * self.unit_price_fen(terms)

    def principal_fen(self, terms: dict) -> int:
        """The most this offering can borrow (debt boards; 0 elsewhere)."""
        return 0

    # ---- subscriptions ----

    def price_subscription(self, terms: dict, quantity: int, rate_bps: int | None,
                           tier_id: Any) -> int:
        """Check the board-specific subscription fields; returns the cash to reserve."""
        if rate_bps is not None or tier_id is not None:
            raise CrowdexError("invalid_field", "this board takes only a quantity")
        return quantity * self.unit_price_fen(terms)

    def check_capacity(self, terms: dict, quantity: int, tier_id: Any,
                       taken: dict[Any, int], allocation: Allocation) -> None:
        """First-come boards refuse what does not fit (``sold_out``/``exceeds_remaining``)."""

    # ---- the close ----

    def close(self, terms: dict, subs: list[SubscriptionView],
              allocation: Allocation) -> CloseResult:
        """All-or-nothing on ``min_quantity``; pro rata when above ``max_quantity``."""
        asked = [s.quantity for s in subs]
        total = sum(asked)
        if total < terms["min_quantity"] or total == 0:
            return CloseResult(False, [0] * len(subs), [0] * len(subs))
        quantities = allocation.pro_rata(terms["max_quantity"], asked,
                                         [s.sequence for s in subs], [s.account_id for s in subs])
        price = self.unit_price_fen(terms)
        return CloseResult(True, quantities, [q * price for q in quantities])


def invalid_terms(message: str) -> CrowdexError:
    return CrowdexError("invalid_terms", message)


def first_come_check(allocation: Allocation, remaining: int | None, quantity: int) -> None:
    """Refuse a first-come subscription that does not fit what remains (``None``: unlimited).

    The take-or-refuse is the mechanism's (the engine's ``first_come`` kernel); the refusal
    and its wording are the rule's.
    """
    outcome = allocation.first_come(remaining, quantity)
    if outcome == "sold_out":
        raise CrowdexError("sold_out", "nothing remains")
    if outcome == "exceeds_remaining":
        raise CrowdexError("exceeds_remaining", f"only {remaining} remain")
    if outcome != "ok":
        raise RuntimeError(f"first_come returned {outcome!r}")
