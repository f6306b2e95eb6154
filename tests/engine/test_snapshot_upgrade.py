"""Snapshots of format version 4 upgrade to exactly the state a replay of their journal gives.

The files are real version 4 snapshots: ``data/snapshot_v4_bc0b2b3`` was written by commit
bc0b2b3's own code (``make_v4_snapshot.py``): a journal of four instruments trading across
minute, hour and day boundaries, several fills a kernel call, and two snapshots of it. At the
first every tape holds fewer than 1000 trades (and has taken several pages of trades and of 1m
candles, interleaved with the other instruments'); at the second instrument 1's tape is full.
Today's code must load the first to the state, state hash and GET trades and candles views of
today's replay of the same journal prefix, go on from it to the replay's state, and write the
next snapshot as version 5; it must refuse the second, saying why, and never load an older
version. The cluster case (a replica whose stream is purged behind a version 4 snapshot) is
in ``test_cluster_snapshots.py``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import struct
import zlib
from pathlib import Path

import msgspec
import pytest

from bench.venue import build_journal
from engine import markets_commands as mc
from engine.clock import ManualClock
from engine.journal import FileJournal
from engine.kernels import codes as k
from engine.machine import Meta, StateMachine
from engine.marketdata import INTERVALS_US, TapeState
from engine.markets import MarketsMeta
from engine.sequencer import Engine, replay_from_empty
from engine.skips import apply_entry
from engine.snapshot import (
    SHARED_CHUNKS_VERSION,
    SNAPSHOT_HEADER_SIZE,
    SNAPSHOT_VERSION,
    SnapshotVersionError,
    load_latest,
    read_snapshot,
    snapshot_paths,
    write_snapshot,
)
from engine.snapshot_upgrade import MarketsMetaV4, upgrade

V4 = Path(__file__).resolve().parent / "data" / "snapshot_v4_bc0b2b3"
EXPECTED = json.loads((V4 / "expected.json").read_text())
UPGRADABLE = EXPECTED["upgradable"]["sequence"]  # 1042
FULL = EXPECTED["full"]["sequence"]
LAST = EXPECTED["sequence"]


def v4_file(name: str) -> Path:
    return next((V4 / name).glob("snapshot-*.snap"))


def views(machine: StateMachine) -> dict[int, tuple]:
    """What GET trades and GET candles (every interval) show of each instrument, at most (the
    gateway's routes answer with these lists); every instrument has traded."""
    markets = machine.component("markets")
    shown = {instrument: (markets.trades(instrument, 1000),
                          [markets.candles(instrument, name, 1000) for name in INTERVALS_US])
             for instrument in range(1, 5)}
    assert all(trades and all(candles) for trades, candles in shown.values())
    return shown


def loaded(path: Path) -> StateMachine:
    machine = StateMachine()
    snapshot = read_snapshot(path, upgrade=upgrade)
    assert snapshot.version == SNAPSHOT_VERSION
    machine.load(snapshot.arrays, snapshot.meta)
    return machine


@pytest.fixture
def venue(tmp_path: Path) -> Path:
    """A data dir of the version 4 venue: its journal, and its snapshot that can be upgraded."""
    shutil.copytree(V4 / "journal", tmp_path / "journal")
    shutil.copytree(V4 / "upgradable", tmp_path / "snapshots")
    return tmp_path


def test_the_fixture_is_what_its_note_says() -> None:
    """Trades on every instrument, several pages of trades and of 1m candles (25 rows a page)
    each but the last, a full tape at the second snapshot only: the cases the tests need."""
    upgradable, full = EXPECTED["upgradable"]["tapes"], EXPECTED["full"]["tapes"]
    assert len(upgradable) == 4 and all(0 < tape[0] < 1000 for tape in upgradable.values())
    assert sum(trades > 25 and minutes > 25 for trades, minutes, _, _ in upgradable.values()) == 3
    assert all(tape[1] > tape[2] > tape[3] > 1 for tape in upgradable.values())  # boundaries
    assert full["1"][0] == 1000 and all(tape[0] < 1000 for tape in list(full.values())[1:])
    for name in ("upgradable", "full"):
        assert int.from_bytes(v4_file(name).read_bytes()[8:12], "little") == 4


def test_a_version_4_snapshot_loads_as_the_replay_of_its_journal_prefix(venue: Path) -> None:
    upgraded = loaded(v4_file("upgradable"))
    replayed = replay_from_empty(venue, upto=UPGRADABLE)
    assert upgraded.last_sequence == replayed.last_sequence == UPGRADABLE
    assert upgraded.state_hash() == replayed.state_hash()
    assert views(upgraded) == views(replayed)
    # Every array and the meta, not just their digest.
    markets, expected = upgraded.component("markets"), replayed.component("markets")
    for name, array in expected.marketdata.arrays().items():
        assert (markets.marketdata.arrays()[name] == array).all(), name
    assert upgraded.meta() == replayed.meta()


def test_recovery_from_a_version_4_snapshot_goes_on_to_the_replay_and_writes_version_5(
        venue: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="crowdex.engine.snapshot")
    engine = Engine(venue, ManualClock(), sync=False)
    assert engine.recover() == LAST - UPGRADABLE  # from the snapshot, not the journal's start
    assert "(version 4, sequence 1042) upgraded in memory to version 5: the trade tapes of 4 " \
        "instruments (419 trades)" in caplog.text
    replayed = replay_from_empty(venue)
    assert engine.machine.state_hash() == replayed.state_hash()
    assert views(engine.machine) == views(replayed)

    async def trade_and_stop() -> None:  # live orders on the upgraded tapes, then a clean stop
        await engine.start()
        for side, trader in (("sell", 4), ("buy", 5)):
            reply = await engine.submit(mc.PlaceOrder(1, side, "limit", 10_00, 3), trader)
            assert reply.status < 300, reply.body
        await engine.stop()

    asyncio.run(trade_and_stop())
    engine.close_recovered()
    newest = snapshot_paths(venue / "snapshots")[0]
    assert int(newest.name[9:29]) == LAST + 2
    # Version 5's layout, its large arrays in shared chunks (the file journal's writers).
    assert int.from_bytes(newest.read_bytes()[8:12], "little") == SHARED_CHUNKS_VERSION == 6
    machine = StateMachine()
    snapshot = read_snapshot(newest)  # no upgrade needed
    machine.load(snapshot.arrays, snapshot.meta)
    assert machine.state_hash() == replay_from_empty(venue).state_hash()
    assert machine.component("markets").trades(1, 1)[0]["quantity"] == 3


def test_a_full_tape_is_refused_naming_it_and_recovery_goes_back_to_an_older_one(
        venue: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SnapshotVersionError, match=r"cannot be upgraded exactly: the trade "
                       r"tapes of instruments 1 \(1000\) are full \(1000 trades kept"):
        read_snapshot(v4_file("full"), upgrade=upgrade)
    shutil.copy(v4_file("full"), venue / "snapshots")
    caplog.set_level(logging.WARNING, logger="crowdex.engine.snapshot")
    engine = Engine(venue, ManualClock(), sync=False)
    try:
        assert engine.recover() == LAST - UPGRADABLE  # from the older one, upgraded
        assert engine.machine.state_hash() == replay_from_empty(venue).state_hash()
    finally:
        engine.close_recovered()
    assert f"skipping {venue / 'snapshots' / v4_file('full').name}" in caplog.text
    assert "instruments 1 (1000) are full" in caplog.text


def test_without_an_upgrade_a_version_4_snapshot_is_refused(venue: Path) -> None:
    """What a reader not given the upgrade does, and what this crowdex did before it."""
    with pytest.raises(SnapshotVersionError, match="version 4: another state layout"):
        read_snapshot(v4_file("upgradable"))
    assert load_latest(venue / "snapshots") is None


def rewritten(directory: Path, version: int, meta: bytes | None = None) -> Path:
    """The upgradable snapshot again (its arrays, and its meta or ``meta``) in a file of
    ``version`` in ``directory``: the body of every version since 2 is laid out alike."""
    snapshot = read_snapshot(v4_file("upgradable"), upgrade=lambda s: s)  # as stored
    path = write_snapshot(directory, snapshot.sequence, snapshot.arrays,
                          snapshot.meta if meta is None else meta, sync=False)
    body = path.read_bytes()[SNAPSHOT_HEADER_SIZE:]
    if version == 2:  # no position
        header = struct.pack("<8sIIQQI", b"CRDXSNAP", 2, 0, snapshot.sequence, len(body),
                             zlib.crc32(body))
    else:
        header = struct.pack("<8sIIQQQI", b"CRDXSNAP", version, 0, snapshot.sequence,
                             snapshot.position, len(body), zlib.crc32(body))
    path.write_bytes(header + struct.pack("<I", zlib.crc32(header)) + body)
    return path


def test_versions_before_4_and_after_6_are_refused_and_say_so(tmp_path: Path) -> None:
    for version in (2, 3):
        with pytest.raises(SnapshotVersionError, match=f"version {version}: another state "
                           "layout, which is not loaded; version 4 is the oldest this reader "
                           "upgrades"):
            read_snapshot(rewritten(tmp_path, version), upgrade=upgrade)
    with pytest.raises(SnapshotVersionError, match="version 7 is not one this crowdex knows"):
        read_snapshot(rewritten(tmp_path, 7), upgrade=upgrade)
    # Version 6 is version 5's state (its big arrays may be in shared chunks): loaded as it is.
    assert read_snapshot(rewritten(tmp_path, 6)).version == 6


def _v4_meta_with(change) -> bytes:
    """The upgradable snapshot's meta with its version 4 tapes changed by ``change``."""
    snapshot = read_snapshot(v4_file("upgradable"), upgrade=lambda s: s)
    meta = msgspec.msgpack.decode(snapshot.meta, type=Meta)
    parts = dict(meta.components)
    markets = msgspec.msgpack.decode(parts["markets"], type=MarketsMetaV4)
    change(markets.tapes)
    parts["markets"] = msgspec.msgpack.encode(markets)
    meta.components = [(name, parts[name]) for name, _ in meta.components]
    return msgspec.msgpack.encode(meta)


def _higher_high(tapes) -> None:
    tapes[0].candles["1h"][3].high += 1


def _same_trade_id(tapes) -> None:
    tapes[1].trades[5].trade_id = tapes[0].trades[5].trade_id


def _odd_side(tapes) -> None:
    tapes[2].trades[0].taker_side = "both"


@pytest.mark.parametrize(("change", "says"), [
    (_higher_high, "instrument 1's candles are not what its trades make"),
    (_same_trade_id, "do not have distinct trade ids"),
    (_odd_side, "a trade's taker side is 'both'"),
])
def test_a_version_4_tape_its_candles_or_order_do_not_follow_from_is_refused(
        tmp_path: Path, change, says: str) -> None:
    """The upgrade checks its premises (the module docstring of ``engine.snapshot_upgrade``)
    rather than load a state no replay gives."""
    with pytest.raises(SnapshotVersionError, match=says):
        read_snapshot(rewritten(tmp_path, 4, _v4_meta_with(change)), upgrade=upgrade)
    unchanged = loaded(rewritten(tmp_path, 4, _v4_meta_with(lambda tapes: None)))
    assert unchanged.state_hash() == loaded(v4_file("upgradable")).state_hash()


# ---- a version 4 writer kept here, checked against bc0b2b3's files ---------------------------

def v4_state(machine: StateMachine) -> tuple[dict, bytes]:
    """The arrays and meta a version 4 crowdex wrote of ``machine``'s state: no tape arrays, and
    in the markets meta a tape for every instrument with a book (made empty when the book was)
    or a trade, sorted, with its newest trades and candles (all of them here: none is full)."""
    markets = machine.component("markets")
    marketdata = markets.marketdata
    empty = {name: [] for name in INTERVALS_US}
    tapes = [marketdata.tape(i) or TapeState(i, [], dict(empty))
             for i in sorted(set(markets._books) | set(marketdata.instruments()))]
    meta = msgspec.msgpack.decode(machine.meta(), type=Meta)
    parts = dict(meta.components)
    today = msgspec.msgpack.decode(parts["markets"], type=MarketsMeta)
    parts["markets"] = msgspec.msgpack.encode(
        MarketsMetaV4(tapes, today.next_auction_us, today.client_ids))
    meta.components = [(name, parts[name]) for name, _ in meta.components]
    arrays = {name: array for name, array in machine.arrays().items()
              if not name.startswith("markets_tape_")}
    return arrays, msgspec.msgpack.encode(meta)


def write_v4(directory: Path, machine: StateMachine) -> Path:
    """``v4_state`` in a file with a version 4 header."""
    arrays, meta = v4_state(machine)
    path = write_snapshot(directory, machine.last_sequence, arrays, meta, sync=False)
    data = bytearray(path.read_bytes())
    data[8:12] = (4).to_bytes(4, "little")
    data[SNAPSHOT_HEADER_SIZE - 4:SNAPSHOT_HEADER_SIZE] = zlib.crc32(
        bytes(data[:SNAPSHOT_HEADER_SIZE - 4])).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


def test_the_writer_kept_here_writes_what_bc0b2b3_wrote(venue: Path) -> None:
    stored = read_snapshot(v4_file("upgradable"), upgrade=lambda s: s)  # as bc0b2b3 wrote it
    arrays, meta = v4_state(replay_from_empty(venue, upto=UPGRADABLE))
    assert sorted(arrays) == sorted(stored.arrays)
    for name, array in arrays.items():
        assert array.dtype == stored.arrays[name].dtype, name
        assert (array == stored.arrays[name]).all(), name
    assert meta == stored.meta


def test_what_a_version_4_crowdex_wrote_of_a_busy_venue_upgrades_to_its_state(
        tmp_path: Path) -> None:
    """``bench.venue``'s mixed traffic (several boards, IP call auctions, bulk runs of orders and
    cancels, refusals, settlement batches) replayed by today's code; at several points the
    state as a version 4 crowdex wrote it upgrades to the state itself."""
    build_journal(tmp_path, 2500, 3, days=2, investors=200)
    machine = StateMachine()
    journal = FileJournal(tmp_path / "journal", sync=False, read_only=True)
    checked = []
    try:
        for sequence, payload in journal.read(0):
            apply_entry(machine, sequence, payload, {})
            if sequence % 600 == 0:
                upgraded = loaded(write_v4(tmp_path / "snapshots", machine))
                assert upgraded.state_hash() == machine.state_hash(), sequence
                checked.append(len(machine.component("markets").marketdata.instruments()))
    finally:
        journal.close()
    assert len(checked) >= 4 and checked[-1] >= 2  # several traded instruments by the end
    auctions = machine.component("markets").engine.instruments["mode"] == k.MODE_AUCTION
    assert auctions.any()
