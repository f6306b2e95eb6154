"""Snapshots of format version 4 turned into today's state as they are read, exactly.

A cluster whose stream is purged behind its snapshots (``--stream-keep-snapshots``) has no
journal before its oldest one, so a replica can only start from a snapshot: if the new code
refused the older format, upgrading the code would leave every replica unable to start. Each
upgrade here gives exactly the state (and state hash) a replay of the same journal prefix with
today's code gives, or refuses the file with a ``SnapshotVersionError`` that says what cannot be
known; it never guesses.

**Version 4 to 5.** Version 4 kept each instrument's trade tape as objects in the markets meta
(``MarketsMetaV4``: the newest ``TRADES_KEPT`` trades and ``CANDLES_KEPT`` candles per interval,
and an empty tape for every instrument with a book); version 5 keeps them in the arrays of
``engine.marketdata.MarketData``. Those arrays hold more than the newest rows: how many trades
and candles each instrument ever recorded, the order in which instruments first traded (their
slots), and which page of the shared pools each ring took, in the order all instruments' trades
reached new pages. All of it follows from the whole history of trades in the order they were
recorded, which is the order of their trade ids (one counter for the book's fills and accepted
offers, taken as each trade is made and recorded). So:

- a tape holding fewer than ``TRADES_KEPT`` trades holds every trade its instrument ever made;
  when every tape does, their trades in trade id order are recorded afresh into an empty
  ``MarketData`` by today's kernel, grouped by time as calls were: the arrays a replay builds.
  The candles this gives must be the ones version 4 kept (a check of the premise, not a step
  that could be skipped: a mismatch refuses the file);
- a tape holding ``TRADES_KEPT`` trades (full: older ones may have left it) makes the file
  refused: the number of trades its instrument made, when it first traded and which pool pages
  its rings took are lost with the trades that left, and each is part of the state hash. The
  message names the instruments. Recovery then goes on to an older snapshot, or replays the
  journal; a cluster replica whose stream is purged behind every upgradable snapshot cannot
  start (``StreamGapError``).

The rest of a version 4 file (every array, the machine's meta and the other components' metas,
the auction clock and client_order_ids of the markets meta) is version 5's as it is.
"""

from __future__ import annotations

import logging

import msgspec
import numpy as np

from engine.kernels import codes as k
from engine.kernels.layout import EVENT_DTYPE
from engine.machine import Meta
from engine.marketdata import SIDES, TRADES_KEPT, MarketData, TapeState
from engine.markets import MarketsMeta
from engine.snapshot import (
    OLDEST_UPGRADABLE,
    SNAPSHOT_VERSION,
    Snapshot,
    SnapshotVersionError,
)

log = logging.getLogger("crowdex.engine.snapshot")

MARKETS = "markets"  # the component whose meta held the tapes
_TAPE_ARRAYS = "markets_tape_"  # the arrays version 5 added (``MarketData.arrays``)


class MarketsMetaV4(msgspec.Struct, array_like=True):
    """The markets meta of version 4: the tapes (sorted by instrument) were objects in it."""

    tapes: list[TapeState]
    next_auction_us: int
    client_ids: list[tuple[int, str]]


def upgrade(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` (of version ``OLDEST_UPGRADABLE`` or later) in today's layout, logged; or
    ``SnapshotVersionError`` saying why it cannot be (the module docstring)."""
    if snapshot.version != OLDEST_UPGRADABLE:  # the only older version there is an upgrade of
        raise SnapshotVersionError(f"{snapshot.path}: no upgrade from version {snapshot.version}"
                                   f" to {SNAPSHOT_VERSION}")
    where = f"{snapshot.path} (version 4, sequence {snapshot.sequence})"
    try:
        meta = msgspec.msgpack.decode(snapshot.meta, type=Meta)
        parts = dict(meta.components)
        markets = msgspec.msgpack.decode(parts[MARKETS], type=MarketsMetaV4)
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError) as error:
        raise SnapshotVersionError(f"{where}: its meta is not version 4's ({error!r}): "
                                   "not upgraded") from error
    if any(name.startswith(_TAPE_ARRAYS) for name in snapshot.arrays):
        raise SnapshotVersionError(f"{where}: it already holds tape arrays: not upgraded")
    marketdata, trades = _array_tapes(markets.tapes, where)
    parts[MARKETS] = msgspec.msgpack.encode(
        MarketsMeta(markets.next_auction_us, markets.client_ids))
    meta.components = [(name, parts[name]) for name, _ in meta.components]
    arrays = dict(snapshot.arrays)
    arrays.update({f"markets_{name}": np.array(array)  # copies: the tape is dropped after
                   for name, array in marketdata.arrays().items()})
    traded = len(marketdata.instruments())
    log.warning("snapshot %s upgraded in memory to version %d: the trade tapes of %d "
                "instruments (%d trades) recorded afresh into arrays; the next snapshot taken "
                "holds this layout", where, SNAPSHOT_VERSION, traded, trades)
    return Snapshot(snapshot.sequence, arrays, msgspec.msgpack.encode(meta), snapshot.path,
                    snapshot.position, SNAPSHOT_VERSION)


def _array_tapes(tapes: list[TapeState], where: str) -> tuple[MarketData, int]:
    """Version 4's tapes as the array tape a replay builds, and how many trades they hold; or
    ``SnapshotVersionError`` if they cannot give it exactly (the module docstring)."""
    full = [(tape.instrument_id, len(tape.trades)) for tape in tapes
            if len(tape.trades) >= TRADES_KEPT]
    if full:
        named = ", ".join(f"{instrument} ({count})" for instrument, count in full[:10])
        more = f" and {len(full) - 10} more" if len(full) > 10 else ""
        raise SnapshotVersionError(
            f"{where}: cannot be upgraded exactly: the trade tapes of instruments {named}{more} "
            f"are full ({TRADES_KEPT} trades kept, so older trades may have left them). How "
            "many trades and candles such an instrument ever recorded, when it first traded "
            "and which pool pages its rows took are part of version "
            f"{SNAPSHOT_VERSION}'s state and are lost with those trades: not upgraded (an "
            "older snapshot or the journal from the start is needed)")
    fills, times = _fills(tapes, where)
    marketdata = MarketData()
    cuts = (np.flatnonzero(np.diff(times)) + 1).tolist()
    for start, end in zip([0, *cuts], [*cuts, len(fills)], strict=True):
        if end > start:  # one call's worth: the trades of one time
            marketdata.record(fills[start:end], int(times[start]))
    for tape in tapes:
        made = marketdata.tape(tape.instrument_id)
        # An instrument with a book that never traded had an empty tape; now it has no slot.
        if made != tape and (made is not None or tape.trades or any(tape.candles.values())):
            raise SnapshotVersionError(
                f"{where}: instrument {tape.instrument_id}'s candles are not what its trades "
                "make: the tape is not a version 4 tape as written; not upgraded")
    return marketdata, len(fills)


def _fills(tapes: list[TapeState], where: str) -> tuple[np.ndarray, np.ndarray]:
    """Every tape's trades as fill rows (the kernel's events) in trade id order, and the time
    of each."""
    trades = [(tape.instrument_id, trade) for tape in tapes for trade in tape.trades]
    fills = np.zeros(len(trades), dtype=EVENT_DTYPE)
    try:
        sides = [SIDES[trade.taker_side] for _, trade in trades]
    except KeyError as error:
        raise SnapshotVersionError(f"{where}: a trade's taker side is {error}: not "
                                   "upgraded") from error
    buys = np.array([side == k.SIDE_BUY for side in sides], dtype=bool)
    buy_oid = np.array([trade.buy_order_id for _, trade in trades], dtype=np.int64)
    sell_oid = np.array([trade.sell_order_id for _, trade in trades], dtype=np.int64)
    fills["kind"] = k.EV_FILL
    fills["side"] = sides
    fills["instrument"] = [instrument for instrument, _ in trades]
    fills["oid"] = np.where(buys, buy_oid, sell_oid)  # the taker's, as the kernel writes it
    fills["maker_oid"] = np.where(buys, sell_oid, buy_oid)
    fills["price"] = [trade.price for _, trade in trades]
    fills["qty"] = [trade.quantity for _, trade in trades]
    fills["trade_id"] = [trade.trade_id for _, trade in trades]
    order = np.argsort(fills["trade_id"], kind="stable")
    fills = fills[order]
    times = np.array([trade.time_us for _, trade in trades], dtype=np.int64)[order]
    ids = fills["trade_id"]
    if len(fills) and (np.any(ids[1:] == ids[:-1]) or np.any(times[1:] < times[:-1])):
        raise SnapshotVersionError(
            f"{where}: its trades do not have distinct trade ids in the order of their times, "
            "so the order they were recorded in is not known: not upgraded")
    return fills, times
