"""Per-key token buckets: ``rate`` tokens a second, at most ``burst`` saved up."""

from __future__ import annotations

import math
import time

BUCKETS_MAX = 100_000


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float:
        """Spend a token; returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        self._store(key, tokens, now)
        return (1.0 - tokens) / self.rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= BUCKETS_MAX:
            # Full buckets carry no information: dropping them frees room without
            # letting anyone past their limit.
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] < self.burst - 1}
        self._buckets[key] = (tokens, now)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
