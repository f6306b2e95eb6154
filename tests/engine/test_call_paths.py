"""The paths a kernel call takes by its size give the same as each other.

The live server calls the matching kernel with a few orders at a time when it is quiet and with
thousands at saturation; a call's fixed costs are cut by paths that depend on its size. Each of
them must give exactly what the other gives: position rows looked up a command at a time or
with numpy, commands packed as bytes or built field by field, and the per-command rows the fold
writes (its first change row, the order it placed) against what the change and event rows say.
Replies, published updates and the state through whole runs are pinned by
tests/engine/test_markets_runs.py and tests/engine/test_lifecycle_property.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import markets_commands as mc
from engine import matching
from engine.kernels import codes as k
from engine.kernels import fold as kf
from engine.kernels.layout import COMMAND_DTYPE
from engine.lifecycle import Lifecycle
from engine.markets import _Queue
from engine.matching import MatchingEngine
from engine.state import Balances, grown

ACCOUNTS = 6  # investors 2..7 (1 is the fee account)

commands = st.lists(st.tuples(
    st.sampled_from([k.OP_NEW, k.OP_NEW, k.OP_CANCEL, k.OP_AMEND]),
    st.integers(-1, 5),  # instrument: 1 and 2 active, 3 inactive, the rest out of range
    st.integers(-1, ACCOUNTS + 3),  # account: some do not exist
), min_size=1, max_size=300)


def _venue() -> tuple[MatchingEngine, Balances]:
    balances = Balances()
    fee = balances.add_account(4, 3)
    for _ in range(ACCOUNTS):
        balances.add_account(1, 1)
    engine = MatchingEngine(fee_account_id=fee)
    for instrument in (1, 2):
        engine.add_instrument(instrument, band_lo_fen=1, band_hi_fen=100)
    engine.instruments = grown(engine.instruments, 5)  # row 3, 4: not active
    balances.position_slot(4, 2)  # one position exists before the batch
    return engine, balances


@settings(max_examples=200, deadline=None)
@given(rows=commands)
def test_position_rows_looked_up_one_at_a_time_equal_numpy(rows):
    """The same slot for each command and the same position rows, created in the same order
    (that of the commands first naming them), whichever path a batch takes."""
    got = []
    for loop_max in (0, 1 << 20):  # numpy always, then a command at a time always
        engine, balances = _venue()
        batch = np.zeros(len(rows), dtype=COMMAND_DTYPE)
        batch["op"], batch["instrument"], batch["account"] = zip(*rows, strict=True)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(matching, "POSITION_LOOP_MAX", loop_max)
            engine._fill_position_slots(batch, balances)
        got.append((batch["pos_slot"].tolist(), dict(balances.position_slots),
                    balances.positions.live().tobytes()))
    assert got[0] == got[1]
    slots = got[0][0]
    assert all(slot == -1 for slot, (op, _, _) in zip(slots, rows, strict=True)
               if op != k.OP_NEW)


orders = st.lists(st.tuples(
    st.sampled_from(["buy", "sell"]), st.sampled_from(["limit", "market"]),
    st.sampled_from(["gtc", "ioc", "fok"]), st.booleans(),
    st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both", "decrement"]),
    st.integers(1, 1 << 40), st.integers(1, 1 << 50), st.integers(0, 1 << 62),
    st.one_of(st.none(), st.text(min_size=1, max_size=4)),
    st.sampled_from(["place", "cancel", "amend", "uncross"]),
), min_size=1, max_size=50)


@settings(max_examples=200, deadline=None)
@given(items=orders)
def test_packed_commands_equal_the_fields_set_one_by_one(items):
    """``_Queue`` packs each command as bytes when queued; the array the kernel gets is the
    one numpy builds from the same fields, and so are the client_order_id flags."""
    queue = _Queue()
    expected = np.zeros(len(items), dtype=COMMAND_DTYPE)
    for position, (side, kind, tif, post_only, stp, instrument, price, other, cid,
                   op) in enumerate(items):
        row = expected[position]
        if op == "place":
            queue.place(position, 100 + position, other, mc.PlaceOrder(
                instrument, side, kind, price, other + 1, tif, post_only, stp, cid), position)
            row["op"], row["side"] = k.OP_NEW, k.SIDE_BUY if side == "buy" else k.SIDE_SELL
            row["type"] = k.TYPE_MARKET if kind == "market" else k.TYPE_LIMIT
            row["tif"] = {"gtc": k.TIF_GTC, "ioc": k.TIF_IOC, "fok": k.TIF_FOK}[tif]
            row["post_only"], row["stp"] = post_only, k.STP_BY_NAME[stp]
            row["account"], row["qty"], row["pos_slot"] = other, other + 1, position
        elif op == "cancel":
            queue.cancel(position, 100 + position, instrument, other)
            row["op"], row["account"], row["oid"] = k.OP_CANCEL, instrument, other
            instrument = price = 0
        elif op == "amend":
            queue.amend(position, 100 + position, 7, other, instrument, int(post_only), price,
                        5)
            row["op"], row["type"], row["tif"] = k.OP_AMEND, k.TYPE_LIMIT, k.TIF_GTC
            row["post_only"], row["account"], row["qty"], row["oid"] = post_only, 7, 5, other
        else:
            queue.uncross(100 + position, instrument)
            row["op"] = k.OP_UNCROSS
            price = 0
        row["instrument"], row["price"] = instrument, price
        if op != "place":
            row["pos_slot"] = -1
    packed = queue.array()
    assert packed.dtype == COMMAND_DTYPE and packed.flags.writeable and packed.flags.aligned
    assert packed.tobytes() == expected.tobytes()
    flags = [int(op == "place" and cid is not None) for *_, cid, op in items]
    assert queue.cid_flags().tolist() == flags
    for position, (*_, op) in enumerate(items):
        if op == "cancel":
            assert queue.actor_and_order(position) == (int(expected[position]["account"]),
                                                        int(expected[position]["oid"]))


flows = st.lists(st.tuples(
    st.sampled_from([k.OP_NEW, k.OP_NEW, k.OP_NEW, k.OP_CANCEL]),
    st.integers(0, 1),  # side
    st.integers(2, 4),  # account
    st.integers(8, 12),  # price
    st.integers(1, 5),  # quantity
    st.integers(1, 30),  # the order a cancel names
), min_size=1, max_size=60)


@settings(max_examples=200, deadline=None)
@given(flow=flows)
def test_the_folds_command_rows_say_what_its_change_and_event_rows_say(flow):
    """Per command: the first change row is where its changes start (-1 if it changed no
    order), and the order it placed is its accepted event's (0 if it placed none)."""
    balances = Balances()
    fee = balances.add_account(4, 3)
    for _ in range(3):
        account = balances.add_account(1, 1)
        balances.accounts.rows[account]["cash_available"] = 10**9
        balances.positions.rows[balances.position_slot(account, 1)]["units_available"] = 10**6
    engine = MatchingEngine(fee_account_id=fee)
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=100)
    lifecycle = Lifecycle()
    batch = np.zeros(len(flow), dtype=COMMAND_DTYPE)
    for row, (op, side, account, price, qty, target) in zip(batch, flow, strict=True):
        row["op"], row["account"] = op, account
        if op == k.OP_NEW:
            row["instrument"], row["side"], row["price"], row["qty"] = 1, side, price, qty
        else:
            row["oid"] = target
    events = engine.process(batch, balances).events
    folded = lifecycle.fold(events, batch, np.zeros(len(batch), dtype=np.int8), 0, 10,
                            engine.instruments, engine.next_order_id, balances.accounts.count)
    positions = folded.changes["pos"]
    for pos in range(len(batch)):
        start = int(np.searchsorted(positions, pos))
        changed = start < len(positions) and positions[start] == pos
        assert folded.first_changes[pos] == (start if changed else -1)
        accepted = events[(events["cmd"] == pos) & (events["kind"] == k.EV_ACCEPTED)]
        assert folded.placed[pos] == (int(accepted["oid"][0]) if len(accepted) else 0)
    assert len(folded.first_changes) == len(folded.placed) == len(batch)
    marks = folded.marks
    assert marks["account"].tolist() == lifecycle.records["account"][marks["oid"]].tolist()
    assert kf.CMD_ROW_COLUMNS == 2
