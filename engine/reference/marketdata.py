"""The Python tape the array tape replaced, kept as the model the property tests compare it with.

One instrument's recent trades and OHLCV candles per interval as objects in bounded deques,
exactly as ``engine.marketdata`` kept them before its rows moved into arrays written by a
compiled kernel (``engine.kernels.tape``). ``engine.reference.markets`` records every fill
here one at a time; ``tests/engine/test_tape_property.py`` drives this and the array tape with
the same trades and compares what each shows.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from engine.kernels import codes as k
from engine.marketdata import (
    CANDLES_KEPT,
    INTERVALS_US,
    TRADES_KEPT,
    Candle,
    TapeState,
    TradeRecord,
)

_SHORTEST_US = min(INTERVALS_US.values())
FEW = 8  # the fills of a call recorded one at a time (engine.lifecycle.FEW, then)


class Tape:
    """One instrument's recent trades (newest last) and candles per interval."""

    def __init__(self, instrument_id: int, trades_kept: int = TRADES_KEPT,
                 candles_kept: int = CANDLES_KEPT) -> None:
        self.instrument_id = instrument_id
        self.trades: deque[TradeRecord] = deque(maxlen=trades_kept)
        self.candles: dict[str, deque[Candle]] = {
            name: deque(maxlen=candles_kept) for name in INTERVALS_US}
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
        ``record`` one at a time would: the lists are at least the last ``trades_kept`` of them
        (the others would leave the tape at once); ``high``, ``low``, ``first`` and ``volume``
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
    def from_state(cls, state: TapeState, trades_kept: int = TRADES_KEPT,
                   candles_kept: int = CANDLES_KEPT) -> Tape:
        tape = cls(state.instrument_id, trades_kept, candles_kept)
        tape.trades.extend(state.trades)
        for name, series in state.candles.items():
            tape.candles[name].extend(series)
        return tape


def record_fills(tapes: dict[int, Tape], fills: np.ndarray, time_us: int, few: int = FEW,
                 trades_kept: int = TRADES_KEPT, candles_kept: int = CANDLES_KEPT) -> None:
    """A kernel call's fills (``EVENT_DTYPE`` rows, made at ``time_us``) onto ``tapes``, as
    ``engine.markets`` recorded them before the array tape: up to ``few`` fills one at a time,
    more grouped by instrument (``Tape.record_many``)."""
    sides = {k.SIDE_BUY: "buy", k.SIDE_SELL: "sell"}
    taker_buys = fills["side"] == k.SIDE_BUY
    buy_oid = np.where(taker_buys, fills["oid"], fills["maker_oid"])
    sell_oid = np.where(taker_buys, fills["maker_oid"], fills["oid"])
    price, qty, instrument = fills["price"], fills["qty"], fills["instrument"]
    if len(fills) <= few:
        for i, inst in enumerate(instrument.tolist()):
            tape = tapes.get(inst)
            if tape is None:
                tape = tapes[inst] = Tape(inst, trades_kept, candles_kept)
            tape.record(TradeRecord(int(fills["trade_id"][i]), int(price[i]), int(qty[i]),
                                    sides[int(fills["side"][i])], time_us, int(buy_oid[i]),
                                    int(sell_oid[i])))
        return
    for inst in np.unique(instrument).tolist():
        mine = np.flatnonzero(instrument == inst)
        tail = mine[-trades_kept:] if len(mine) > trades_kept else mine
        tape = tapes.get(inst)
        if tape is None:
            tape = tapes[inst] = Tape(inst, trades_kept, candles_kept)
        tape.record_many(
            fills["trade_id"][tail].tolist(), price[tail].tolist(), qty[tail].tolist(),
            [sides[s] for s in fills["side"][tail].tolist()], buy_oid[tail].tolist(),
            sell_oid[tail].tolist(), time_us, int(price[mine].max()), int(price[mine].min()),
            int(price[mine[0]]), int(qty[mine].sum()))
