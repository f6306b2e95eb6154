"""An exchange time's ISO 8601 text is the one ``strftime`` gives, to the microsecond.

``format_time_us`` (every order view, trade and candle a client reads) takes the date from a
cache and formats the hour, minute and seconds itself, so a new stamp costs no ``strftime``; its
text must be byte for byte the plain formatting of the whole moment.
"""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from engine.clock import TIME_US_MAX, format_time_us, parse_time_us


def _plain(time_us: int) -> str:
    """The whole moment through ``strftime``, as ``format_time_us`` formatted it before."""
    seconds, micros = divmod(time_us, 1_000_000)
    text = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{micros:06d}" if micros else "") + "Z"


# Around whole minutes, hours and days, and anywhere up to the clock's end.
moments = st.one_of(
    st.integers(0, TIME_US_MAX),
    st.builds(lambda minute, off: max(0, minute * 60_000_000 + off),
              st.integers(0, TIME_US_MAX // 60_000_000), st.integers(-2_000_000, 2_000_000)))


@given(time_us=moments)
@example(time_us=0)
@example(time_us=59_999_999)
@example(time_us=60_000_000)
@example(time_us=1_767_225_599_999_999)
@example(time_us=TIME_US_MAX)
def test_the_text_is_strftime_s_and_reads_back(time_us):
    format_time_us.cache_clear()  # the cached text would hide a fresh one's fault
    text = format_time_us(time_us)
    assert text == _plain(time_us)
    assert parse_time_us(text) == time_us


def test_a_minute_is_formatted_once_for_its_seconds():
    """Minutes, seconds and microseconds vary under one cached day: each text its own."""
    base = parse_time_us("2026-03-04T05:06:00Z")
    assert format_time_us(base) == "2026-03-04T05:06:00Z"
    assert format_time_us(base + 7_000_123) == "2026-03-04T05:06:07.000123Z"
    assert format_time_us(base + 59_999_999) == "2026-03-04T05:06:59.999999Z"
    assert format_time_us(base + 60_000_000) == "2026-03-04T05:07:00Z"
    assert format_time_us(base + 18 * 3_600_000_000 + 53 * 60_000_000) == "2026-03-04T23:59:00Z"
    assert format_time_us(base + 18 * 3_600_000_000 + 54 * 60_000_000) == "2026-03-05T00:00:00Z"
