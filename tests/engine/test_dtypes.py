"""The state's dtypes are a snapshot format: their sizes and offsets are pinned here."""

import numpy as np
import pytest

from engine.kernels.layout import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    FILL_DTYPE,
    INSTRUMENT_DTYPE,
    LEVEL_DTYPE,
    ORDER_DTYPE,
)


@pytest.mark.parametrize(("dtype", "size", "offsets"), [
    (ORDER_DTYPE, 64, {"oid": 0, "price": 8, "qty": 16, "filled": 24, "account": 32,
                       "pos_slot": 40, "instrument": 48, "next": 52, "prev": 56, "side": 60,
                       "stp": 61}),
    (LEVEL_DTYPE, 16, {"qty": 0, "head": 8, "tail": 12}),
    (INSTRUMENT_DTYPE, 104, {"band_lo": 0, "band_hi": 8, "ladder_lo": 16, "ladder_width": 24,
                             "level_base": 32, "best_bid": 40, "best_ask": 48, "fee_bps": 56,
                             "reference_price": 64, "last_price": 72, "orders_bid": 80,
                             "orders_ask": 88, "active": 96, "mode": 97,
                             "band_multiple": 100}),
    (COMMAND_DTYPE, 56, {"op": 0, "side": 1, "type": 2, "tif": 3, "post_only": 4, "stp": 5,
                         "instrument": 8, "account": 16, "price": 24, "qty": 32, "oid": 40,
                         "pos_slot": 48}),
    (EVENT_DTYPE, 104, {"cmd": 0, "kind": 8, "side": 9, "code": 10, "instrument": 12,
                        "oid": 16, "account": 24, "pos_slot": 32, "price_limit": 40,
                        "maker_oid": 48, "maker_account": 56, "maker_pos_slot": 64,
                        "maker_price": 72, "price": 80, "qty": 88, "trade_id": 96}),
    (FILL_DTYPE, 32, {"maker_oid": 0, "oid": 8, "price": 16, "qty": 24}),
])
def test_layout_is_pinned(dtype, size, offsets):
    assert dtype.itemsize == size
    assert {name: dtype.fields[name][1] for name in dtype.names} == offsets



def test_dropping_the_front_keeps_the_rest_in_order_and_the_capacity():
    from engine.movements import MOVEMENT_DTYPE, MovementLog

    log = MovementLog()
    for n in range(3000):
        log.record(sequence=1 + n // 3, kind=1, debit_account=2, credit_account=3, asset=0,
                   amount=1 + n)
    capacity = len(log.table.rows)
    settled = log.release(500)  # sequences 1..500: the first 1500 movements
    assert settled["amount"].tolist() == list(range(1, 1501))
    assert log.table.live()["amount"].tolist() == list(range(1501, 3001))
    assert log.table.live()["movement_id"].tolist() == list(range(1501, 3001))
    assert len(log.table.rows) == capacity
    assert not log.table.rows[log.table.count:].view(np.uint8).any()  # the tail is zero again
    log.record(sequence=1001, kind=1, debit_account=2, credit_account=3, asset=0, amount=7)
    assert log.table.live()["amount"].tolist()[-2:] == [3000, 7]
    assert log.table.rows.dtype == MOVEMENT_DTYPE
    assert len(log.release(10_000)) == 1501 and log.table.count == 0
