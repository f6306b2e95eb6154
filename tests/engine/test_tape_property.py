"""The array tape and candles show what the Python tape showed.

``engine.marketdata.MarketData`` keeps every instrument's recent trades and candles in rings of
rows written by a compiled kernel; ``engine.reference.marketdata`` is the Python tape it
replaced (objects in bounded deques, a call's fills recorded one at a time or grouped as
``engine.markets`` did). Hypothesis drives both with the same random kernel calls: several
instruments (ids past the first index size, more than the first slots), both taker sides, one
fill or many per call, accepted offers' trades between them, and times that stay equal, move a
microsecond, or land on, just before or just after a minute, hour or day boundary. Retention
is small (pages that do not divide it, so rings wrap mid-page) or today's (with calls of more
than ``TRADES_KEPT`` fills). After every call, what the API shows must be byte for byte what
the gateway built from the Python tape (GET trades and candles at every limit edge, the
WebSocket trades channel's first message), the tapes as objects must be equal, and the arrays
must survive a snapshot file: loaded into a fresh tape they show and hash the same, and go on
the same. Recording a call's fills in pieces gives the same arrays as in one pass.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zlib
from pathlib import Path

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import ManualClock, format_time_us
from engine.kernels import codes as k
from engine.kernels.layout import EVENT_DTYPE
from engine.marketdata import (
    CANDLES_KEPT,
    INTERVALS_US,
    PAGE_ROWS,
    TRADES_KEPT,
    MarketData,
    TradeRecord,
)
from engine.reference.marketdata import Tape, record_fills
from engine.sequencer import Engine
from engine.snapshot import (
    SNAPSHOT_HEADER_SIZE,
    load_latest,
    read_snapshot,
    state_hash,
    write_snapshot,
)

EXAMPLES = 1000 if os.environ.get("CROWDEX_SLOW") else 60
START_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z: a day boundary
INSTRUMENTS = (1, 2, 3, 70, 150, 600)  # beyond the first index (64) and slots (4)
# (trades kept, candles kept, rows a page): rings of 9 and 8 rows that wrap mid-page, and today's
RETENTIONS = ((7, 5, 3), (4, 6, 4), (TRADES_KEPT, CANDLES_KEPT, PAGE_ROWS))

fills_st = st.lists(st.tuples(st.sampled_from(INSTRUMENTS), st.sampled_from([0, 1]),
                              st.integers(1, 60), st.integers(1, 30)), min_size=1, max_size=12)
# Where the next call's time goes: nowhere, a microsecond on, or to an interval boundary
# (minus one, at, plus one microsecond).
times_st = st.one_of(st.just(("same",)), st.just(("step",)),
                     st.tuples(st.just("boundary"), st.sampled_from(list(INTERVALS_US.values())),
                               st.sampled_from([-1, 0, 1])))
calls_st = st.one_of(
    st.tuples(st.just("fills"), times_st, fills_st, st.lists(st.integers(1, 11), max_size=3)),
    st.tuples(st.just("offer"), times_st, st.sampled_from(INSTRUMENTS), st.sampled_from(
        ["buy", "sell"]), st.integers(1, 60), st.integers(1, 30)),
    # More fills in one call than today's tape keeps (and exactly as many, and one more).
    st.tuples(st.just("burst"), times_st, st.sampled_from([TRADES_KEPT - 1, TRADES_KEPT,
                                                           TRADES_KEPT + 1, 2600]),
              st.integers(0, 2**32 - 1)),
)


def _next_time(now_us: int, how: tuple) -> int:
    if how[0] == "same":
        return now_us
    if how[0] == "step":
        return now_us + 1
    _, width, offset = how
    at = (now_us // width + 1) * width + offset
    return at if at >= now_us else now_us


class _Trades:
    """Trade ids and order ids as the venue gives them: increasing."""

    def __init__(self) -> None:
        self.next_trade, self.next_order = 1, 1

    def fills(self, rows: list[tuple[int, int, int, int]]) -> np.ndarray:
        fills = np.zeros(len(rows), dtype=EVENT_DTYPE)
        fills["kind"] = k.EV_FILL
        columns = np.array(rows, dtype=np.int64).T
        for name, column in zip(("instrument", "side", "price", "qty"), columns, strict=True):
            fills[name] = column
        count = len(rows)
        fills["trade_id"] = np.arange(self.next_trade, self.next_trade + count)
        fills["oid"] = np.arange(self.next_order, self.next_order + count)
        fills["maker_oid"] = fills["oid"] + count
        self.next_trade += count
        self.next_order += 2 * count
        return fills

    def burst(self, count: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return self.fills(list(zip(rng.choice(INSTRUMENTS[:3], count).tolist(),
                                   rng.integers(0, 2, count).tolist(),
                                   rng.integers(1, 1000, count).tolist(),
                                   rng.integers(1, 100, count).tolist(), strict=True)))

    def offer_id(self) -> int:
        self.next_trade += 1
        return self.next_trade - 1


def _old_trades(tape: Tape | None, limit: int) -> list[dict]:
    """GET trades (and the trades channel's first message) as the gateway built it before."""
    return [{"trade_id": t.trade_id, "price": t.price, "quantity": t.quantity,
             "taker_side": t.taker_side, "time": format_time_us(t.time_us)}
            for t in (tape.recent(limit) if tape is not None else [])]


def _old_candles(tape: Tape | None, interval: str, limit: int) -> list[dict]:
    """GET candles as the gateway built it before."""
    series = list(tape.candles[interval])[-limit:] if tape is not None else []
    return [{"time": format_time_us(c.start_us), "open": c.open, "high": c.high, "low": c.low,
             "close": c.close, "volume": c.volume} for c in series]


def _same_views(ours: MarketData, tapes: dict[int, Tape]) -> None:
    encode = msgspec.json.encode
    kept = ours.trades_kept
    limits = sorted({1, 2, kept - 1, kept, kept + 1, 100, 1000})
    for instrument in INSTRUMENTS:
        tape = tapes.get(instrument)
        for limit in limits:
            assert encode(ours.trade_views(instrument, limit)) == encode(
                _old_trades(tape, limit)), (instrument, limit)
            for interval in INTERVALS_US:
                assert encode(ours.candle_views(instrument, interval, limit)) == encode(
                    _old_candles(tape, interval, limit)), (instrument, interval, limit)
        state = ours.tape(instrument)
        if tape is None:
            assert state is None
        else:
            assert msgspec.msgpack.encode(state) == msgspec.msgpack.encode(tape.state())
    assert sorted(ours.tapes()) == sorted(tapes)


def _round_trip(ours: MarketData, retention: tuple[int, int, int]) -> MarketData:
    """The arrays through a snapshot file into a fresh tape."""
    arrays = ours.arrays()
    with tempfile.TemporaryDirectory() as directory:
        path = write_snapshot(Path(directory), 1, arrays, b"", sync=False)
        snapshot = read_snapshot(path)
    restored = MarketData(*retention)
    restored.load(snapshot.arrays)
    assert state_hash(restored.arrays(), b"") == state_hash(arrays, b"")
    return restored


def _record(ours: MarketData, pieces: MarketData, tapes: dict[int, Tape],
            retention: tuple[int, int, int], fills: np.ndarray, cuts: list[int],
            time_us: int) -> None:
    """A kernel call's fills into our tape in one pass, into ``pieces`` cut at ``cuts``, and
    into the Python tapes as ``engine.markets`` recorded them."""
    ours.record(fills, time_us)
    bounds = [0, *sorted({c for c in cuts if c < len(fills)}), len(fills)]
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        pieces.record(fills[lo:hi], time_us)
    record_fills(tapes, fills, time_us, trades_kept=retention[0], candles_kept=retention[1])


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(calls=st.lists(calls_st, min_size=1, max_size=40),
       retention=st.sampled_from(RETENTIONS), restore_at=st.integers(0, 40))
def test_the_array_tape_shows_what_the_python_tape_showed(calls, retention, restore_at):
    ours, pieces = MarketData(*retention), MarketData(*retention)
    tapes: dict[int, Tape] = {}
    trades = _Trades()
    now_us = START_US
    for step, call in enumerate(calls):
        now_us = _next_time(now_us, call[1])
        if call[0] == "offer":
            _, _, instrument, taker, price, qty = call
            trade_id = trades.offer_id()
            ours.record_one(instrument, trade_id, price, qty, taker, now_us)
            pieces.record_one(instrument, trade_id, price, qty, taker, now_us)
            tape = tapes.get(instrument)
            if tape is None:
                tape = tapes[instrument] = Tape(instrument, retention[0], retention[1])
            tape.record(TradeRecord(trade_id, price, qty, taker, now_us, 0, 0))
        else:
            fills = (trades.fills(call[2]) if call[0] == "fills"
                     else trades.burst(call[2], call[3]))
            cuts = call[3] if call[0] == "fills" else [1, len(fills) // 2]
            _record(ours, pieces, tapes, retention, fills, cuts, now_us)
        _same_views(ours, tapes)
        for name, array in ours.arrays().items():  # however the calls were cut
            assert np.array_equal(array, pieces.arrays()[name]), name
        if step == restore_at:
            ours = _round_trip(ours, retention)
            _same_views(ours, tapes)


def test_a_snapshot_of_another_layout_is_refused():
    arrays = MarketData(7, 5, 3).arrays()
    try:
        MarketData(7, 5, 4).load(arrays)
    except ValueError as error:
        assert "layout" in str(error)
    else:
        raise AssertionError("a tape of another page size was loaded")


def test_a_tape_holds_pages_as_it_fills_not_whole_rings():
    """An instrument with one trade holds a page of trades and a page per interval."""
    ours = MarketData()
    trades = _Trades()
    ours.record(trades.fills([(instrument, 0, 10, 1) for instrument in INSTRUMENTS]), START_US)
    arrays = ours.arrays()
    assert len(arrays["tape_trades"]) == len(INSTRUMENTS) * PAGE_ROWS
    assert len(arrays["tape_candles"]) == len(INSTRUMENTS) * len(INTERVALS_US) * PAGE_ROWS
    ours.record(trades.burst(5 * TRADES_KEPT, 1), START_US + 1)
    # Three instruments' rings are full now: a full ring of trades each, the rest unchanged.
    assert len(ours.arrays()["tape_trades"]) == 3 * TRADES_KEPT + 3 * PAGE_ROWS


def _market_views(machine) -> tuple[str, dict]:
    markets = machine.component("markets")
    instruments = markets.marketdata.instruments()
    assert instruments  # the journal trades
    return machine.state_hash(), {
        instrument: (markets.trades(instrument, 1000),
                     [markets.candles(instrument, interval, 1000) for interval in INTERVALS_US])
        for instrument in instruments}


def test_a_venue_snapshot_keeps_the_tapes_and_one_of_version_4_is_replayed_instead(tmp_path):
    """A journal written by an earlier crowdex (tests/engine/test_old_journal.py): recovered
    from a snapshot of today's version, the venue shows the trades and candles the journal's
    replay shows; a file saying version 4 whose body is not version 4's (no tapes in the
    markets meta) is refused, by recovery's upgrade too, and the journal replayed to the same.
    (Real version 4 files are upgraded: tests/engine/test_snapshot_upgrade.py.)"""
    old = Path(__file__).resolve().parent / "data" / "journal_98317ba" / "journal"
    shutil.copytree(old, tmp_path / "journal")

    def recovered() -> tuple[int, tuple[str, dict]]:
        """(entries replayed, the state hash and the views) of a recovery."""
        engine = Engine(tmp_path, ManualClock(), sync=False)
        entries = engine.recover()
        try:
            return entries, _market_views(engine.machine)
        finally:
            engine.close_recovered()

    entries, replayed = recovered()
    assert entries == 655
    engine = Engine(tmp_path, ManualClock(), sync=False)
    engine.recover()
    machine = engine.machine
    path = write_snapshot(tmp_path / "snapshots", machine.last_sequence, machine.arrays(),
                          machine.meta(), sync=False)
    engine.close_recovered()
    assert recovered() == (0, replayed)  # from the snapshot
    data = bytearray(path.read_bytes())
    data[8:12] = (4).to_bytes(4, "little")  # the version, then the header's own CRC again
    data[SNAPSHOT_HEADER_SIZE - 4:SNAPSHOT_HEADER_SIZE] = zlib.crc32(
        bytes(data[:SNAPSHOT_HEADER_SIZE - 4])).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert load_latest(tmp_path / "snapshots") is None
    assert recovered() == (655, replayed)  # from the journal
