"""The gateway's memory of first responses to requests that carried an ``Idempotency-Key``.

The engine remembers the replies of commands durably (they are state); this cache also covers
refusals that never reached the engine (validation, roles) and serves replays without a trip
through the sequencer. Entries expire after the TTL; the cache holds at most ``ENTRIES_MAX``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

TTL_SECONDS = 24 * 3600
ENTRIES_MAX = 100_000


@dataclass(frozen=True, slots=True)
class StoredResponse:
    fingerprint: str
    status: int
    body: bytes
    content_type: str
    stored_at: float


class ResponseCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, str], StoredResponse] = OrderedDict()

    def get(self, scope: str, key: str) -> StoredResponse | None:
        self._expire()
        return self._entries.get((scope, key))

    def put(self, scope: str, key: str, response: StoredResponse) -> None:
        self._entries.setdefault((scope, key), response)
        while len(self._entries) > ENTRIES_MAX:
            self._entries.popitem(last=False)

    def _expire(self) -> None:
        horizon = time.monotonic() - TTL_SECONDS
        while self._entries:
            first = next(iter(self._entries.values()))
            if first.stored_at >= horizon:
                break
            self._entries.popitem(last=False)
