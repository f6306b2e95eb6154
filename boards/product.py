"""The product board: reward pledges per tier, first come first served, never oversold."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from boards import rules
from boards.equity import Positive
from boards.errors import CrowdexError

CONFIG = rules.BoardConfig(
    name="product",
    duration_days_min=1,
    duration_days_max=60,
    cancel_window_us=0,  # any time before the deadline
    success_fee_bps=500,
    lockup_days_default=0,
    tradable=False,
    issues_units=False,
    cancellable_cn2015=False,
    payout_released_pct=70,
)

TIERS_MAX = 100
REWARD_LENGTH_MAX = 500


# What a backer gets for a pledge, in the issuer's words (Kickstarter's reward description), and
# when it is expected ("YYYY-MM", Kickstarter's estimated delivery). Text only: no NUL, bounded.
Reward = Annotated[str, msgspec.Meta(min_length=1, max_length=REWARD_LENGTH_MAX,
                                     pattern="^[^\\x00]*$")]
Month = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]


class Tier(rules.Terms):
    tier_id: str | int
    price: Positive
    quantity: Positive | None = None  # None: unlimited
    max_per_backer: Positive | None = None
    reward: Reward | None = None
    estimated_delivery: Month | None = None


class ProductTerms(rules.Terms):
    goal: Positive
    tiers: list[Tier]


class ProductBoard(rules.Board):
    config = CONFIG
    terms_type = ProductTerms

    def normalize_terms(self, terms: dict) -> dict:
        tiers = terms["tiers"]
        if not tiers or len(tiers) > TIERS_MAX:
            raise rules.invalid_terms(f"a project has 1 to {TIERS_MAX} tiers")
        ids = [t["tier_id"] for t in tiers]
        if len(set(map(repr, ids))) != len(ids):
            raise rules.invalid_terms("tier ids must be unique")
        return {"goal": terms["goal"], "tiers": [self._tier_terms(t) for t in tiers]}

    @staticmethod
    def _tier_terms(tier: dict) -> dict:
        out = {"tier_id": tier["tier_id"], "price": tier["price"],
               "quantity": tier.get("quantity"), "max_per_backer": tier.get("max_per_backer")}
        # Only when given, so the terms of a project listed before these existed (and its
        # replay) are what they were.
        for optional in ("reward", "estimated_delivery"):
            if tier.get(optional) is not None:
                out[optional] = tier[optional]
        return out

    def tier(self, terms: dict, tier_id: Any) -> dict:
        for tier in terms["tiers"]:
            if tier["tier_id"] == tier_id and type(tier["tier_id"]) is type(tier_id):
                return tier
        raise CrowdexError("invalid_field", f"no tier {tier_id!r} on this project")

    def target_fen(self, terms: dict) -> int:
        return terms["goal"]

    def price_subscription(self, terms: dict, quantity: int, rate_bps: int | None,
                           tier_id: Any) -> int:
        if rate_bps is not None:
            raise CrowdexError("invalid_field", "a pledge takes no rate_bps")
        if tier_id is None:
            raise CrowdexError("missing_field", "a pledge needs a tier_id")
        return quantity * self.tier(terms, tier_id)["price"]

    def check_capacity(self, terms: dict, quantity: int, tier_id: Any,
                       taken: dict[Any, int], allocation: rules.Allocation) -> None:
        limit = self.tier(terms, tier_id)["quantity"]
        remaining = None if limit is None else limit - taken.get(tier_id, 0)
        rules.first_come_check(allocation, remaining, quantity)

    def close(self, terms: dict, subs: list[rules.SubscriptionView],
              allocation: rules.Allocation) -> rules.CloseResult:
        raised = sum(s.amount_fen for s in subs)
        if raised < terms["goal"] or not subs:
            return rules.CloseResult(False, [0] * len(subs), [0] * len(subs))
        return rules.CloseResult(True, [s.quantity for s in subs], [s.amount_fen for s in subs])
