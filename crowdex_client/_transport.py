"""What both clients do around a request: headers, the idempotency key, retries, decoding and
errors. The sync and async clients only move the bytes.

Retries: a 429 or 503 is tried again after the server's ``Retry-After`` (capped), a lost
connection after a short backoff; a POST or DELETE keeps its ``Idempotency-Key`` across tries,
so the server answers a retry with the first result and nothing happens twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msgspec

from crowdex_client._api import Call

RETRY_STATUSES = frozenset({429, 503})
TRIES_MAX = 4  # the first and three retries
RETRY_WAIT_MAX_S = 30.0  # a longer Retry-After is cut to this
BACKOFF_FIRST_S = 0.25  # without Retry-After: 0.25, 0.5, 1 s, ...
TIMEOUT_S = 30.0
KEYED_METHODS = frozenset({"POST", "DELETE", "PATCH"})
USER_AGENT = "crowdex-client/1"

_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    """A refusal: the HTTP status and API.md's error code and message."""

    def __init__(self, status: int, code: str, message: str,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Retry:
    """How often and how long to try again on 429, 503 and lost connections."""

    tries: int = TRIES_MAX
    wait_max_s: float = RETRY_WAIT_MAX_S
    backoff_first_s: float = BACKOFF_FIRST_S

    def wait_s(self, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        seconds = _retry_after_s(retry_after)
        if seconds is None:
            seconds = self.backoff_first_s * 2 ** (attempt - 1)
        return min(max(seconds, 0.0), self.wait_max_s)


DEFAULT_RETRY = Retry()
NO_RETRY = Retry(tries=1)


def _retry_after_s(header: str | None) -> float | None:
    """``Retry-After`` in seconds (the API sends seconds; an HTTP date is not followed)."""
    if not header:
        return None
    try:
        return float(header)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A call ready to send: the same for every try of it."""

    method: str
    target: str  # path and query
    headers: dict[str, str]
    body: bytes | None


def prepare(call: Call, api_key: str | None) -> Prepared:
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if call.method in KEYED_METHODS:
        headers["Idempotency-Key"] = call.idempotency_key or uuid.uuid4().hex
    body = None
    if call.body is not None:
        body = _encoder.encode(call.body)
        headers["Content-Type"] = "application/json"
    target = call.path + ("?" + urlencode(call.params) if call.params else "")
    return Prepared(call.method, target, headers, body)


def retryable(status: int) -> bool:
    return status in RETRY_STATUSES


def finish(call: Call, status: int, headers: Any, raw: bytes) -> Any:
    """The decoded answer to ``call``, or ``ApiError``."""
    if status >= 400:
        raise _error(status, headers, raw)
    if call.result is str:
        return raw.decode()
    if not raw:
        return None
    if call.result is None:
        return msgspec.json.decode(raw)
    return msgspec.json.decode(raw, type=call.result)


def _error(status: int, headers: Any, raw: bytes) -> ApiError:
    retry_after = _retry_after_s(headers.get("Retry-After"))
    try:
        detail = msgspec.json.decode(raw)["error"]
        return ApiError(status, str(detail["code"]), str(detail["message"]), retry_after)
    except (msgspec.DecodeError, KeyError, TypeError):
        text = raw[:200].decode(errors="replace")
        return ApiError(status, "http_error", text or f"HTTP {status}", retry_after)
