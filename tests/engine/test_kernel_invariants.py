"""Each invariant check can fail: corrupt the state one way at a time and see it raise."""

import pytest

from engine.kernels import codes as k
from engine.matching import (
    EngineInvariantError,
    MatchingEngine,
    check_book,
    check_conservation,
    check_reservations,
)
from engine.state import Balances


def funded():
    balances = Balances()
    balances.add_account(4, 3)
    account = balances.add_account(1, 1)
    balances.accounts.rows[account]["cash_available"] = 10_000
    slot = balances.position_slot(account, 1)
    balances.positions.rows[slot]["units_available"] = 10
    engine = MatchingEngine()
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=100, fee_bps=100)
    engine.new_order(1, account, k.SIDE_BUY, 5, price=10, balances=balances)
    engine.new_order(1, account, k.SIDE_SELL, 3, price=20, balances=balances)
    return engine, balances


def test_a_healthy_state_passes():
    engine, balances = funded()
    check_book(engine)
    check_reservations(engine, balances)
    check_conservation(balances, 10_000, {1: 10})


def _set(array, index, field, value):
    array[field][index] = value


@pytest.mark.parametrize("corrupt", [
    lambda e: _set(e.levels, int(e.instruments[1]["level_base"]) + 9, "qty", 99),
    lambda e: _set(e.instruments, 1, "best_bid", 9),
    lambda e: _set(e.instruments, 1, "orders_ask", 2),
    lambda e: _set(e.orders, 0, "price", 11),
    lambda e: e.oid_index.__setitem__(1, 5),
], ids=["level_total", "best_bid", "order_count", "order_price", "oid_index"])
def test_book_check_catches_corruption(corrupt):
    engine, _ = funded()
    corrupt(engine)
    with pytest.raises(EngineInvariantError):
        check_book(engine)


@pytest.mark.parametrize(("table", "field", "delta"), [
    ("accounts", "cash_reserved", 1),
    ("positions", "units_reserved", 1),
    ("accounts", "cash_available", -10**9),
])
def test_reservation_check_catches_corruption(table, field, delta):
    engine, balances = funded()
    rows = getattr(balances, table).rows
    row = 2 if table == "accounts" else 0
    rows[row][field] += delta
    with pytest.raises(EngineInvariantError):
        check_reservations(engine, balances)


def test_conservation_check_catches_created_cash_and_units():
    _, balances = funded()
    balances.accounts.rows[2]["cash_available"] += 1
    with pytest.raises(EngineInvariantError):
        check_conservation(balances, 10_000, {1: 10})
    balances.accounts.rows[2]["cash_available"] -= 1
    balances.positions.rows[0]["units_available"] += 1
    with pytest.raises(EngineInvariantError):
        check_conservation(balances, 10_000, {1: 10})
