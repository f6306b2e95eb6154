"""Public market data kept with the state: recent trades and OHLCV candles per instrument.

Both are bounded (``TRADES_KEPT``, ``CANDLES_KEPT``) and derived only from fills and the
exchange time, so a replay rebuilds them exactly. Prices are fen per unit, volumes units.
"""

from __future__ import annotations

from collections import deque

import msgspec

TRADES_KEPT = 1000  # per instrument
CANDLES_KEPT = 1000  # per instrument and interval
INTERVALS_US = {"1m": 60_000_000, "1h": 3_600_000_000, "1d": 86_400_000_000}
_SHORTEST_US = min(INTERVALS_US.values())


class TradeRecord(msgspec.Struct, array_like=True, gc=False):
    trade_id: int
    price: int
    quantity: int
    taker_side: str
    time_us: int
    buy_order_id: int
    sell_order_id: int


class Candle(msgspec.Struct, array_like=True, gc=False):
    start_us: int
    open: int
    high: int
    low: int
    close: int
    volume: int


class TapeState(msgspec.Struct, array_like=True):
    """The serialisable form of one instrument's tape."""

    instrument_id: int
    trades: list[TradeRecord]
    candles: dict[str, list[Candle]]


class Tape:
    """One instrument's recent trades (newest last) and candles per interval."""

    def __init__(self, instrument_id: int) -> None:
        self.instrument_id = instrument_id
        self.trades: deque[TradeRecord] = deque(maxlen=TRADES_KEPT)
        self.candles: dict[str, deque[Candle]] = {
            name: deque(maxlen=CANDLES_KEPT) for name in INTERVALS_US}
        # The newest candle of every interval and the span [start, end) of the shortest one:
        # a trade inside that span updates these candles and nothing else (the intervals
        # nest: each divides the next, all aligned to the epoch).
        self._live: tuple[Candle, ...] = ()
        self._live_start = self._live_end = 0

    def record(self, trade: TradeRecord) -> None:
        self.trades.append(trade)
        price = trade.price
        self._into_candles(trade.time_us, price, price, price, price, trade.quantity)

    def record_many(self, trade_ids: list[int], prices: list[int], quantities: list[int],
                    taker_sides: list[str], buys: list[int], sells: list[int], time_us: int,
                    high: int, low: int, first: int, volume: int) -> None:
        """Record trades made at one time (one kernel call's, of this instrument), as
        ``record`` one at a time would: the lists are the last ``TRADES_KEPT`` of them (the
        others would leave the tape at once); ``high``, ``low``, ``first`` and ``volume``
        cover all of them."""
        self.trades.extend(map(TradeRecord, trade_ids, prices, quantities, taker_sides,
                               [time_us] * len(trade_ids), buys, sells))
        self._into_candles(time_us, first, high, low, prices[-1], volume)

    def _into_candles(self, time_us: int, first: int, high: int, low: int, close: int,
                      volume: int) -> None:
        """Trades at one time, ``first`` to ``close``, into the live candles."""
        if not self._live_start <= time_us < self._live_end:  # a new minute: new candles
            self._open_candles(time_us, first)
        for candle in self._live:
            if high > candle.high:
                candle.high = high
            if low < candle.low:
                candle.low = low
            candle.close = close
            candle.volume += volume

    def _open_candles(self, time_us: int, price: int) -> None:
        """A trade at ``time_us`` outside the live minute: new candles where needed."""
        for name, width in INTERVALS_US.items():
            start = time_us - time_us % width
            series = self.candles[name]
            if not series or series[-1].start_us != start:
                series.append(Candle(start, price, price, price, price, 0))
        self._live = tuple(series[-1] for series in self.candles.values())
        self._live_start = time_us - time_us % _SHORTEST_US
        self._live_end = self._live_start + _SHORTEST_US

    def recent(self, limit: int) -> list[TradeRecord]:
        """Newest first."""
        out = []
        for trade in reversed(self.trades):
            if len(out) >= limit:
                break
            out.append(trade)
        return out

    def state(self) -> TapeState:
        return TapeState(self.instrument_id, list(self.trades),
                         {name: list(series) for name, series in self.candles.items()})

    @classmethod
    def from_state(cls, state: TapeState) -> Tape:
        tape = cls(state.instrument_id)
        tape.trades.extend(state.trades)
        for name, series in state.candles.items():
            tape.candles[name].extend(series)
        return tape
