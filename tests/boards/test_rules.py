"""The shared rounding and allocation helpers, with hand-computed expectations."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from boards import rules
from engine.allocation import ALLOCATION


@pytest.mark.parametrize(("notional", "bps", "fee"), [
    (0, 600, 0),
    (1, 5000, 1),        # 0.5 fen rounds up
    (1, 4999, 0),        # 0.4999 fen rounds down
    (10_000, 600, 600),
    (12_345, 600, 741),  # 740.7 -> 741
    (8_333, 600, 500),   # 499.98 -> 500
    (25, 200, 1),        # 0.5 -> 1
    (24, 200, 0),        # 0.48 -> 0
    (2**53, 10_000, 2**53),
])
def test_fee_half_up(notional, bps, fee):
    assert rules.fee_half_up(notional, bps) == fee


@pytest.mark.parametrize(("value", "rounded"), [
    (Fraction(5, 2), 3), (Fraction(3, 2), 2), (Fraction(7, 3), 2), (Fraction(8, 3), 3),
    (Fraction(0), 0), (Fraction(1, 2), 1), (Fraction(499, 1000), 0),
])
def test_round_half_up(value, rounded):
    assert rules.round_half_up(value) == rounded


@pytest.mark.parametrize(("total", "weights", "keys", "shares"), [
    # exact
    (10, [1, 1], None, [5, 5]),
    # 10 over 3 equal: 3.33 each, one leftover to the earliest
    (10, [1, 1, 1], None, [4, 3, 3]),
    # ties broken by the key, not the position
    (10, [1, 1, 1], [(3, 9), (2, 9), (1, 9)], [3, 3, 4]),
    # same sequence key part: lower account id wins
    (10, [1, 1, 1], [(1, 7), (1, 5), (1, 6)], [3, 4, 3]),
    # 100 over 30/30/40 of 150 -> 20, 20, 26.67 -> leftover 1 to the largest fraction (third)
    (100, [45, 45, 60], None, [30, 30, 40]),
    (7, [2, 3, 5], None, [1, 2, 4]),  # 1.4, 2.1, 3.5 -> 1,2,3 + 1 to .5
    (0, [3, 4], None, [0, 0]),
    (5, [0, 1], None, [0, 5]),
])
def test_largest_remainder(total, weights, keys, shares):
    assert rules.largest_remainder(total, weights, keys) == shares


@given(st.integers(0, 10**9), st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_largest_remainder_properties(total, weights):
    if sum(weights) == 0:
        return
    shares = rules.largest_remainder(total, weights)
    assert sum(shares) == total
    for share, weight in zip(shares, weights, strict=True):
        exact = Fraction(total * weight, sum(weights))
        assert exact - 1 < share < exact + 1


@given(st.one_of(st.integers(0, 10**9), st.integers(0, 2**63 - 1)),
       st.lists(st.tuples(st.one_of(st.integers(0, 10**6), st.integers(0, 2**63 - 1)),
                          st.integers(-5, 5)), min_size=1, max_size=30))
def test_largest_remainder_columns_is_largest_remainder(total, rows):
    """The columns' split is the lists' split, ties (equal keys too) and all; past int64
    products it takes the lists' own path."""
    weights, keys = [w for w, _ in rows], [k for _, k in rows]
    try:
        expected = rules.largest_remainder(total, weights, keys)
    except ValueError as error:
        with pytest.raises(ValueError, match=str(error)):
            rules.largest_remainder_columns(total, np.array(weights, dtype=np.int64),
                                            np.array(keys, dtype=np.int64))
        return
    shares = rules.largest_remainder_columns(total, np.array(weights, dtype=np.int64),
                                             np.array(keys, dtype=np.int64))
    assert shares.dtype == np.int64 and shares.tolist() == expected


@pytest.mark.parametrize(("total", "weights", "keys", "shares"), [
    (10, [1, 1, 1], [3, 1, 2], [3, 4, 3]),  # the tie to the smaller key
    (10, [1, 1, 1], [2, 2, 2], [4, 3, 3]),  # equal keys: the earlier position
    (0, [0, 0], [1, 2], [0, 0]),
    (5, [0, 1], [1, 2], [0, 5]),
    (2**62, [3, 3], [1, 2], [2**61, 2**61]),  # products past int64: the lists' path
])
def test_largest_remainder_columns(total, weights, keys, shares):
    assert rules.largest_remainder_columns(total, np.array(weights, dtype=np.int64),
                                           np.array(keys, dtype=np.int64)).tolist() == shares


def test_largest_remainder_refuses_nonsense():
    with pytest.raises(ValueError):
        rules.largest_remainder(1, [0, 0])
    with pytest.raises(ValueError):
        rules.largest_remainder(-1, [1])
    with pytest.raises(ValueError):
        rules.fee_half_up(-1, 5)


def test_pro_rata_fits_or_splits():
    assert ALLOCATION.pro_rata(10, [3, 4], [1, 2], [5, 6]) == [3, 4]
    # 12 asked for 10: 2.5, 2.5, 5 -> floors 2,2,5 ; leftover 1 to the earliest tie (seq 1)
    assert ALLOCATION.pro_rata(10, [3, 3, 6], [1, 2, 3], [9, 8, 7]) == [3, 2, 5]


def test_rate_auction_bid_at_clearing_rate_fills_partly():
    # capacity 100: 40 @ 500, 50 @ 600 (seq 2), 30 @ 600 (seq 3), 20 @ 700
    filled, clearing = ALLOCATION.rate_auction(100, [40, 50, 30, 20], [500, 600, 600, 700],
                                                   [1, 2, 3, 4])
    assert filled == [40, 50, 10, 0] and clearing == 600


def test_holder_limit_refunds_latest_accounts():
    assert rules.holder_limit_cut([1, 2, 1, 3, 2, 4], 2) == [True, True, True, False, True,
                                                            False]


@pytest.mark.parametrize(("income", "worth", "limit"), [
    (None, None, 2_500_00),
    (50_000_00, 40_000_00, 2_500_00),           # 5 % of 50,000 = 2,500
    (60_000_00, 10_000_00, 3_000_00),           # 5 % of 60,000
    (200_000_00, 100_000_00, 10_000_00),        # one below threshold: 5 % of 200,000
    (124_000_00, 124_000_00, 12_400_00),        # both at threshold: 10 %
    (2_000_000_00, 500_000_00, 124_000_00),     # capped
])
def test_retail_limit(income, worth, limit):
    assert rules.retail_limit_fen(income, worth) == limit


def test_lifecycle_table():
    rules.check_transition("pending_review", "open")
    with pytest.raises(Exception) as info:
        rules.check_transition("failed", "open")
    assert info.value.code == "invalid_state"
