"""Exchange clocks: the sequencer asks one for the time it stamps on each batch.

The exchange's time is state (``StateMachine.now_us``); a clock only proposes the next stamp
given the current state time. A wall clock follows the machine's clock but never goes back; a
manual clock never moves on its own, so only journaled ``AdvanceClock`` commands move time and a
restart resumes exactly where it stopped.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Protocol

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
MINUTES_PER_DAY = 24 * 60
SECONDS_PER_DAY = 86_400


class Clock(Protocol):
    manual: bool

    def stamp(self, state_now_us: int) -> int:
        """The time to stamp on the next batch, given the state's current time."""
        ...


class WallClock:
    manual = False

    def stamp(self, state_now_us: int) -> int:
        return max(state_now_us, time.time_ns() // 1000)


class ManualClock:
    manual = True

    def stamp(self, state_now_us: int) -> int:
        return state_now_us


def parse_time_us(text: str) -> int:
    """Parse a full ISO 8601 time with a zone into microseconds since the epoch (UTC)."""
    if "T" not in text:
        raise ValueError(f"{text!r} is not a full ISO 8601 time (date and time with a zone)")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    delta = parsed - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * US_PER_SECOND + delta.microseconds


# The latest time the exchange clock may reach. ISO 8601 text (and datetime) ends with the year
# 9999, and a venue computes dates up to about a century past its clock (a lock-up of 36,500
# days, a loan's schedule), so the clock stops well short of it.
TIME_US_MAX = parse_time_us("9800-01-01T00:00:00Z")


@functools.lru_cache(maxsize=4096)  # every order and trade of a batch shares one stamp
def format_time_us(time_us: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC (``2026-01-01T00:00:00Z``).

    A live batch has a stamp of its own, so the cache misses once a batch: the date comes
    from a cache of its own (``_day_text``) and the rest is integer formatting, so
    ``strftime`` runs once a day of exchange time instead of once a batch (~6 us; this,
    ~0.5). A replay's batches are minutes of exchange time apart: a cache of minutes
    missed at nearly every one."""
    minutes, micros = divmod(time_us, US_PER_MINUTE)
    seconds, micros = divmod(micros, US_PER_SECOND)
    days, minutes = divmod(minutes, MINUTES_PER_DAY)
    hours, minutes = divmod(minutes, 60)
    if micros:
        return f"{_day_text(days)}{hours:02d}:{minutes:02d}:{seconds:02d}.{micros:06d}Z"
    return f"{_day_text(days)}{hours:02d}:{minutes:02d}:{seconds:02d}Z"


@functools.lru_cache(maxsize=64)
def _day_text(days: int) -> str:
    """Days since the epoch as the date part of ISO 8601 UTC, with the ``T``
    (``2026-01-01T``): ``strftime``'s own text, whatever the year."""
    return datetime.fromtimestamp(days * SECONDS_PER_DAY, tz=UTC).strftime("%Y-%m-%dT")
