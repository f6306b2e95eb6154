"""Token buckets: ``rate`` tokens a second, at most ``burst`` saved up, one bucket per client.

The table of buckets is bounded and its upkeep is O(1) per request, whoever is knocking: an
``OrderedDict`` in least-recently-used order, the oldest bucket evicted when a new one would pass
``BUCKETS_MAX``. A scan or rebuild of the table on a new client would let a flood of new
clients (addresses, or before that made-up keys) stall the event loop for every one of them.

Evicting a bucket gives its client a full bucket the next time. A bucket unused for
``burst / rate`` seconds is full anyway, so evicting it loses nothing. Evicting one that has
not yet refilled needs ``BUCKETS_MAX`` other clients to have been seen since its last request:
a client that wants its own limit reset must first bring that many new addresses or valid keys,
each of which gets a full bucket of its own, so the reset gains it at most one burst per
``BUCKETS_MAX`` new clients, nothing worth having. The other choice, refusing new clients
while the table is full of recent buckets, would let that same flood lock everyone new out.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict

# API.md: "a flood of made-up keys gets 429 like any other flood, and costs the venue no more
# than a flood with one key": made-up keys share their address's bucket (middleware), and no
# flood of new clients grows the table past this or costs more than O(1) a request.
BUCKETS_MAX = 100_000  # ~30 MB of buckets at most (long IPv6 addresses)


class RateLimiter:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        # key -> (tokens, time of the last take), least recently used first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend a token; returns 0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        buckets = self._buckets
        state = buckets.get(key)
        if state is None:
            tokens = float(self.burst)
            if len(buckets) >= BUCKETS_MAX:
                buckets.popitem(last=False)
        else:
            tokens = min(float(self.burst), state[0] + (now - state[1]) * self.rate)
            buckets.move_to_end(key)
        if tokens >= 1.0:
            buckets[key] = (tokens - 1.0, now)
            return 0.0
        buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
