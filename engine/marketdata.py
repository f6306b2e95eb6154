"""Public market data kept with the state: recent trades and OHLCV candles per instrument.

Both are bounded (``TRADES_KEPT``, ``CANDLES_KEPT``) and derived only from fills and the
exchange time, so a replay rebuilds them exactly. Prices are fen per unit, volumes units.

They live in numpy arrays (``MarketData``): rings of rows per instrument, in pages of two
shared pools, written by one compiled pass per kernel call's fills (``engine.kernels.tape``),
so a trade costs no Python object while it is recorded. The API's views (GET trades and
candles, the WebSocket trades channel's first message) are built from the rows when read. The
Python tape this replaced is the reference model in ``engine.reference.marketdata``.
"""

from __future__ import annotations

import msgspec
import numpy as np

from engine.clock import format_time_us
from engine.kernels import codes as k
from engine.kernels import tape as kt
from engine.kernels.layout import EVENT_DTYPE

TRADES_KEPT = 1000  # per instrument
CANDLES_KEPT = 1000  # per instrument and interval
INTERVALS_US = {"1m": 60_000_000, "1h": 3_600_000_000, "1d": 86_400_000_000}
# Rows per page of a ring: an instrument's rings take pages as they fill, so one with a few
# trades holds a page of trades and a page of candles per interval (~5 KiB), not whole rings.
PAGE_ROWS = 25

SIDE_NAMES = {k.SIDE_BUY: "buy", k.SIDE_SELL: "sell"}
SIDES = {name: side for side, name in SIDE_NAMES.items()}

# One trade on the tape. The order ids are the buyer's and the seller's (0 for a trade made
# outside the book: an accepted cn2015 offer).
TRADE_DTYPE = np.dtype(
    [
        ("trade_id", np.int64),
        ("price", np.int64),  # fen per unit
        ("qty", np.int64),
        ("time_us", np.int64),
        ("buy_oid", np.int64),
        ("sell_oid", np.int64),
        ("taker_side", np.int8),
    ],
    align=True,
)

# One candle of one interval: from start_us, fen per unit, volume in units.
CANDLE_DTYPE = np.dtype(
    [("start_us", np.int64), ("open", np.int64), ("high", np.int64), ("low", np.int64),
     ("close", np.int64), ("volume", np.int64)],
    align=True,
)


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
    """One instrument's tape as objects: what the Python tape kept (and its snapshots held)."""

    instrument_id: int
    trades: list[TradeRecord]
    candles: dict[str, list[Candle]]


def trade_view(trade_id: int, price: int, quantity: int, taker_side: str, time: str) -> dict:
    """A trade as the API shows it (GET trades, the trades channel)."""
    return {"trade_id": trade_id, "price": price, "quantity": quantity, "taker_side": taker_side,
            "time": time}


class TapeView:
    """One instrument's tape as objects, built when read, for tests and tools (the API's reads
    build their JSON from the rows: ``MarketData.trade_views``, ``candle_views``)."""

    def __init__(self, state: TapeState) -> None:
        self._state = state
        self.instrument_id = state.instrument_id
        self.trades = state.trades  # oldest first
        self.candles = state.candles

    def state(self) -> TapeState:
        return self._state


_INTERVAL_NAMES = tuple(INTERVALS_US)
_WIDTHS_US = np.array(list(INTERVALS_US.values()), dtype=np.int64)
_RINGS = 1 + len(INTERVALS_US)  # a slot's trades, then its candles of each interval
_SLOTS_MIN = 4
_PAGES_MIN = 16
_SLOT_OF_MIN = 64
_AT_ONE_TIME = np.zeros(0, dtype=np.int64)  # record_trades' times: every fill at time_us


class MarketData:
    """Every instrument's tape and candles, in arrays (the module docstring).

    ``slot_of[instrument]`` is the instrument's slot plus one (0: it has not traded); per slot,
    ``counts`` holds the rows each ring has recorded and ``pages`` the pool page (plus one) of
    each of its pages. ``used`` counts the slots and the pages taken from each pool.
    """

    def __init__(self, trades_kept: int = TRADES_KEPT, candles_kept: int = CANDLES_KEPT,
                 page_rows: int = PAGE_ROWS) -> None:
        if min(trades_kept, candles_kept, page_rows) < 1:
            raise ValueError("trades_kept, candles_kept and page_rows must be positive")
        self.trades_kept, self.candles_kept, self.page_rows = trades_kept, candles_kept, page_rows
        self.ring_pages = -(-max(trades_kept, candles_kept) // page_rows)
        self.slot_of = np.zeros(_SLOT_OF_MIN, dtype=np.int32)
        self.slot_instrument = np.zeros(_SLOTS_MIN, dtype=np.int64)
        self.counts = np.zeros((_SLOTS_MIN, _RINGS), dtype=np.int64)
        self.pages = np.zeros((_SLOTS_MIN, _RINGS, self.ring_pages), dtype=np.int32)
        self.trade_rows = np.zeros(_PAGES_MIN * page_rows, dtype=TRADE_DTYPE)
        self.candle_rows = np.zeros(_PAGES_MIN * page_rows, dtype=CANDLE_DTYPE)
        self.used = np.zeros(kt.USED_LEN, dtype=np.int64)

    # ---- recording ------------------------------------------------------------------------------

    def record(self, fills: np.ndarray, time_us: int, times: np.ndarray | None = None) -> None:
        """Put a kernel call's fills (``EVENT_DTYPE`` fill rows, made at ``time_us``, or each
        at its ``times`` row, never going down: a replay's call spans many times) on their
        instruments' tapes and candles, in order."""
        count = len(fills)
        done = 0
        times = _AT_ONE_TIME if times is None else times
        while True:
            done = kt.record_trades(fills, done, time_us, times, _WIDTHS_US, self.slot_of,
                                    self.slot_instrument, self.counts, self.pages,
                                    self.trade_rows, self.candle_rows, self.used, self.page_rows)
            if done == count:
                return
            self._make_room(int(fills[done]["instrument"]))

    def record_one(self, instrument: int, trade_id: int, price: int, quantity: int,
                   taker_side: str, time_us: int, buy_order_id: int = 0,
                   sell_order_id: int = 0) -> None:
        """One trade made outside the book (an accepted ``cn2015`` offer)."""
        fill = np.zeros(1, dtype=EVENT_DTYPE)
        side = SIDES[taker_side]
        taker, maker = ((buy_order_id, sell_order_id) if side == k.SIDE_BUY
                        else (sell_order_id, buy_order_id))
        for name, value in (("kind", k.EV_FILL), ("side", side), ("instrument", instrument),
                            ("oid", taker), ("maker_oid", maker), ("price", price),
                            ("qty", quantity), ("trade_id", trade_id)):
            fill[name] = value
        self.record(fill, time_us)

    def _make_room(self, instrument: int) -> None:
        """Grow what the kernel stopped for: the instrument index (to ``instrument``), the slots
        or a pool (room for one more trade: a slot, a trade page, a page per interval)."""
        if instrument >= len(self.slot_of):
            self.slot_of = _grown(self.slot_of, instrument + 1)
        slots = int(self.used[kt.U_SLOTS]) + 1
        if slots > len(self.slot_instrument):
            self.slot_instrument = _grown(self.slot_instrument, slots)
            self.counts = _grown(self.counts, slots)
            self.pages = _grown(self.pages, slots)
        trade_rows = (int(self.used[kt.U_TRADE_PAGES]) + 1) * self.page_rows
        if trade_rows > len(self.trade_rows):
            self.trade_rows = _grown(self.trade_rows, trade_rows)
        candle_rows = (int(self.used[kt.U_CANDLE_PAGES]) + _RINGS - 1) * self.page_rows
        if candle_rows > len(self.candle_rows):
            self.candle_rows = _grown(self.candle_rows, candle_rows)

    # ---- reads ----------------------------------------------------------------------------------

    def instruments(self) -> list[int]:
        """The instruments that have traded, in the order of their first trade."""
        return self.slot_instrument[:self.used[kt.U_SLOTS]].tolist()

    def _rows(self, instrument: int, ring: int, kept: int, limit: int) -> np.ndarray:
        """Pool rows of a ring's newest ``min(kept, limit)`` rows (as far as it has them),
        oldest first."""
        slot = int(self.slot_of[instrument]) - 1 if instrument < len(self.slot_of) else -1
        if slot < 0:
            return np.zeros(0, dtype=np.int64)
        recorded = int(self.counts[slot, ring])
        wanted = min(recorded, kept, limit)
        ring_rows = self.ring_pages * self.page_rows
        index = np.arange(recorded - wanted, recorded, dtype=np.int64) % ring_rows
        page = self.pages[slot, ring][index // self.page_rows].astype(np.int64) - 1
        return page * self.page_rows + index % self.page_rows

    def trades(self, instrument: int, limit: int) -> np.ndarray:
        """The instrument's newest ``limit`` trades kept (``TRADE_DTYPE``), oldest first."""
        return self.trade_rows[self._rows(instrument, kt.RING_TRADES, self.trades_kept, limit)]

    def candles(self, instrument: int, interval: str, limit: int) -> np.ndarray:
        """The instrument's newest ``limit`` candles kept of ``interval``, oldest first."""
        ring = 1 + _INTERVAL_NAMES.index(interval)
        return self.candle_rows[self._rows(instrument, ring, self.candles_kept, limit)]

    def trade_views(self, instrument: int, limit: int) -> list[dict]:
        """GET trades: the newest ``limit`` trades, newest first, as the API shows them."""
        times: dict[int, str] = {}  # many trades share a time (one kernel call's)
        views = []
        for trade_id, price, qty, time_us, _, _, side in reversed(
                self.trades(instrument, limit).tolist()):
            time = times.get(time_us)
            if time is None:
                time = times[time_us] = format_time_us(time_us)
            views.append(trade_view(trade_id, price, qty, SIDE_NAMES[side], time))
        return views

    def candle_views(self, instrument: int, interval: str, limit: int) -> list[dict]:
        """GET candles: the newest ``limit`` candles of ``interval``, oldest first."""
        return [{"time": format_time_us(start), "open": o, "high": h, "low": low, "close": c,
                 "volume": v}
                for start, o, h, low, c, v in self.candles(instrument, interval, limit).tolist()]

    def tape(self, instrument: int) -> TapeState | None:
        """The instrument's tape as objects (what the Python tape kept), None if it has not
        traded."""
        if instrument >= len(self.slot_of) or not self.slot_of[instrument]:
            return None
        trades = [TradeRecord(t, p, q, SIDE_NAMES[s], time_us, buy, sell)
                  for t, p, q, time_us, buy, sell, s in
                  self.trades(instrument, self.trades_kept).tolist()]
        candles = {name: [Candle(*row) for row in
                          self.candles(instrument, name, self.candles_kept).tolist()]
                   for name in _INTERVAL_NAMES}
        return TapeState(instrument, trades, candles)

    def tapes(self) -> dict[int, TapeView]:
        """Every traded instrument's tape as objects, built now (for tests and tools)."""
        return {i: TapeView(self.tape(i)) for i in self.instruments()}

    # ---- snapshots ------------------------------------------------------------------------------

    def arrays(self) -> dict[str, np.ndarray]:
        """The state, trimmed to what is used (views: a snapshot copies them)."""
        slots, trade_pages, candle_pages = self.used.tolist()
        return {
            "tape_layout": np.array([self.page_rows, self.ring_pages], dtype=np.int64),
            "tape_instruments": self.slot_instrument[:slots],
            "tape_counts": self.counts[:slots],
            "tape_pages": self.pages[:slots],
            "tape_trades": self.trade_rows[:trade_pages * self.page_rows],
            "tape_candles": self.candle_rows[:candle_pages * self.page_rows],
        }

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        """Take the state ``arrays`` gave (copies it)."""
        layout = arrays["tape_layout"].tolist()
        if layout != [self.page_rows, self.ring_pages]:
            raise ValueError(f"the tape's layout (page rows, ring pages) {layout} is not this "
                             f"version's {[self.page_rows, self.ring_pages]}")
        instruments = arrays["tape_instruments"]
        slots = len(instruments)
        self.slot_instrument = _grown(instruments.astype(np.int64), slots)
        self.counts = _grown(arrays["tape_counts"].astype(np.int64), slots)
        self.pages = _grown(arrays["tape_pages"].astype(np.int32), slots)
        self.trade_rows = _grown(arrays["tape_trades"].astype(TRADE_DTYPE), 1)
        self.candle_rows = _grown(arrays["tape_candles"].astype(CANDLE_DTYPE), 1)
        self.slot_of = np.zeros(max(_SLOT_OF_MIN, int(instruments.max(initial=0)) + 1),
                                dtype=np.int32)
        self.slot_of[instruments] = np.arange(1, slots + 1, dtype=np.int32)
        self.used[:] = (slots, len(arrays["tape_trades"]) // self.page_rows,
                        len(arrays["tape_candles"]) // self.page_rows)


def _grown(array: np.ndarray, needed: int) -> np.ndarray:
    """``array`` (copied) in a zeroed array of at least ``needed`` rows: double its length."""
    rows = max(len(array), 1)
    while rows < needed:
        rows *= 2
    grown = np.zeros((rows, *array.shape[1:]), dtype=array.dtype)
    grown[:len(array)] = array
    return grown
