"""The venue's one error hierarchy, and the one table from error code to HTTP status.

Everything that refuses a request raises (or returns) a ``CrowdexError`` carrying a
machine-readable ``code``; the gateway maps it to ``{"error": {"code", "message"}}`` with the
status from ``STATUS_BY_CODE``. Codes are never reused for a different meaning.

It sits at the bottom of the layers, in ``boards/``, because the rules word most refusals
(``invalid_terms``, ``sold_out``, ``rate_above_max``) and import nothing above them: a rule
raises the very class the engine, settlement and the gateway raise, so there is one hierarchy
and one table, mapped to HTTP once (``gateway/middleware.py``), and no translation at the places
the engine calls a board (a missed one would have been a 500). It imports nothing at all.
``engine/errors.py`` re-exports it; everything above the rules imports it from there.
"""

from __future__ import annotations

# Each code's HTTP status. Business-rule refusals are 422, state conflicts 409.
STATUS_BY_CODE: dict[str, int] = {
    # 400: the request itself is malformed or invalid
    "invalid_json": 400,
    "invalid_field": 400,
    "unknown_field": 400,
    "missing_field": 400,
    "invalid_content_type": 400,
    # 401 / 403
    "unauthorized": 401,
    "forbidden": 403,
    "not_eligible": 403,
    # 404
    "not_found": 404,
    "account_not_found": 404,
    "project_not_found": 404,
    "order_not_found": 404,
    "instrument_not_found": 404,
    "subscription_not_found": 404,
    "batch_not_found": 404,
    "offer_not_found": 404,
    # 405 / 413
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    # 409: the thing is in the wrong state for this
    "idempotency_key_conflict": 409,
    "idempotency_key_in_use": 409,
    "reference_conflict": 409,
    "offering_not_open": 409,
    "invalid_state": 409,
    "clock_not_manual": 409,
    "reconciliation_break": 409,
    "duplicate_client_order_id": 409,
    "order_not_open": 409,
    "offer_not_open": 409,
    "already_reported": 409,  # operating rights: a month's revenue is reported once
    "month_not_over": 409,  # operating rights: a month is reported once it is over
    "instrument_closed": 409,  # operating rights: no orders after the end of the term
    # 422: business rules
    "insufficient_funds": 422,
    "insufficient_holdings": 422,
    "limit_exceeded": 422,
    "cancel_window_closed": 422,
    "cancel_not_permitted": 422,
    "locked_up": 422,
    "price_out_of_band": 422,
    "price_too_far": 422,
    "sold_out": 422,
    "exceeds_remaining": 422,
    "invalid_terms": 422,
    "invalid_amend": 422,  # an amend's new quantity does not exceed what is already filled
    "rate_above_max": 422,
    "matching_not_permitted": 422,
    "post_only_would_cross": 422,
    "fok_not_fillable": 422,
    "holder_limit": 422,
    "holding_period": 422,
    "borrower_cap": 422,
    "not_permitted": 422,
    "not_in_term": 422,  # operating rights: a month outside the project's term
    "amount_mismatch": 422,  # operating rights: the buy-back is paid exactly
    "in_default": 422,  # operating rights: units of a project in default cannot be sold
    "command_skipped": 422,  # the operator skipped a command that could not be applied
    # 429 / 503
    "rate_limited": 429,
    "unavailable": 503,
    "internal_error": 500,
}

# A code API.md gives another status in one place, raised there with ``status=``. Eligibility is
# a business rule (422) when subscribing (BOARDS.md's cn2015 ``not_eligible``); only the
# bulletin board of ``/v1/offers`` answers it 403, as a door closed to the investor's class.
OTHER_STATUSES: dict[str, frozenset[int]] = {"not_eligible": frozenset({422})}


def status_allowed(code: str, status: int) -> bool:
    """Whether ``code`` may come with ``status`` (its table status or a documented other)."""
    return STATUS_BY_CODE.get(code) == status or status in OTHER_STATUSES.get(code, ())


class CrowdexError(Exception):
    """A refusal with a stable machine-readable code and a human message."""

    def __init__(self, code: str, message: str, *, status: int | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        if status is None:
            status = STATUS_BY_CODE.get(code)
            if status is None:
                raise KeyError(f"error code {code!r} has no status in STATUS_BY_CODE")
        self.code = code
        self.message = message
        self.status = status
        self.headers = headers  # e.g. Retry-After on 429

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}

    def __repr__(self) -> str:
        return f"CrowdexError({self.code!r}, {self.message!r}, status={self.status})"
