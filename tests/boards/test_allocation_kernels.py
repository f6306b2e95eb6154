"""The boards allocate through the engine's kernels: board path and kernel agree on awkward cases.

``boards.rules`` decides what takes part, the cap and the tie-break keys; the kernels in
``engine.kernels.allocation`` (through ``engine.allocation``, the mechanism the engine hands a
board, and the ``engine.matching`` wrappers) compute how much. Each case is computed by hand
(BOARDS.md), then checked on the board path (``engine.allocation``, ``rules`` and a board's
``close``/``check_capacity``), on the kernel, on the plain-Python reference and, for pro rata,
on ``rules.largest_remainder``, the venue's one split helper.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from boards import rules
from boards.registry import BOARDS
from engine import matching
from engine.allocation import ALLOCATION
from engine.errors import CrowdexError
from engine.kernels import allocation as kernels
from engine.kernels import codes
from engine.reference import allocation as ref


def kernel_pro_rata(capacity, quantities, sequences, accounts):
    out = matching.allocate_pro_rata(np.array(quantities), np.array(sequences),
                                     np.array(accounts), capacity)
    return out.tolist()


def kernel_rate_auction(capacity, quantities, rates, sequences):
    out, clearing = matching.allocate_rate_auction(np.array(rates), np.array(sequences),
                                                   np.array(quantities), capacity)
    return out.tolist(), clearing


def views(rows):
    """``SubscriptionView``s from ``(account, sequence, quantity, rate_bps)`` rows."""
    return [rules.SubscriptionView(i + 1, account, sequence, quantity, rate, None, 0)
            for i, (account, sequence, quantity, rate) in enumerate(rows)]


# ---- pro rata -------------------------------------------------------------------------------

PRO_RATA_CASES = [
    # (capacity, quantities, sequences, accounts, expected)
    # fits exactly: everyone in full
    (12, [3, 3, 6], [1, 2, 3], [9, 8, 7], [3, 3, 6]),
    # one unit short: 11/12 of each -> 2.75, 2.75, 5.5 -> floors 2, 2, 5; leftover 2 to the two
    # .75 parts
    (11, [3, 3, 6], [1, 2, 3], [9, 8, 7], [3, 3, 5]),
    # 12 for 10: 2.5, 2.5, 5 -> 2, 2, 5; the leftover to the tie's earliest sequence (seq 1)
    (10, [3, 3, 6], [1, 2, 3], [9, 8, 7], [3, 2, 5]),
    # three equal, 3.33 each: the leftover to the earliest SEQUENCE, not the first position
    (10, [4, 4, 4], [30, 10, 20], [1, 2, 3], [3, 4, 3]),
    # same sequence key: the lower account id wins, wherever it stands
    (10, [4, 4, 4], [5, 5, 5], [9, 7, 8], [3, 4, 3]),
    # a larger remainder beats an earlier sequence: 4/3 and 2/3 -> 1, 0; leftover to the .67
    (2, [2, 1], [1, 2], [1, 2], [1, 1]),
    # four halves, two leftovers: the two earliest sequences (listed last) get them
    (2, [1, 1, 1, 1], [4, 3, 2, 1], [1, 2, 3, 4], [0, 0, 1, 1]),
    # the last unit among equal remainders and equal sequences: lowest account, then next
    (3, [2, 2, 2, 2], [7, 7, 7, 7], [40, 10, 30, 20], [0, 1, 1, 1]),
    # nothing to give
    (0, [5, 1], [1, 2], [1, 2], [0, 0]),
    # one subscriber takes all the capacity there is
    (7, [100], [1], [1], [7]),
]


@pytest.mark.parametrize(("capacity", "quantities", "sequences", "accounts", "expected"),
                         PRO_RATA_CASES)
def test_pro_rata_board_kernel_and_split_helper_agree(capacity, quantities, sequences,
                                                      accounts, expected):
    assert ALLOCATION.pro_rata(capacity, quantities, sequences, accounts) == expected
    assert kernel_pro_rata(capacity, quantities, sequences, accounts) == expected
    assert ref.pro_rata(quantities, sequences, accounts, capacity) == expected
    if sum(quantities) > capacity:
        keys = list(zip(sequences, accounts, strict=True))
        assert rules.largest_remainder(capacity, quantities, keys) == expected


def test_equity_close_oversubscribed_goes_through_the_kernel():
    # 3 x 4 shares for a cap of 10 at 100.00: 3.33 each; subscription order differs from
    # sequence order on purpose (the rules pass sequences, the kernel ranks by them)
    terms = {"price": 100_00, "min_quantity": 5, "max_quantity": 10, "lockup_days": 365}
    subs = views([(11, 30, 4, 0), (12, 10, 4, 0), (13, 20, 4, 0)])
    result = BOARDS["equity"].close(terms, subs, ALLOCATION)
    assert result.succeeded
    assert result.quantities == [3, 4, 3]
    assert result.amounts_fen == [300_00, 400_00, 300_00]
    assert all(type(q) is int for q in result.quantities + result.amounts_fen)
    assert result.quantities == kernel_pro_rata(10, [4, 4, 4], [30, 10, 20], [11, 12, 13])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.integers(1, 6), st.integers(1, 5)),
                min_size=1, max_size=40),
       st.integers(0, 400))
def test_pro_rata_kernel_is_largest_remainder_with_subscription_ties(rows, capacity):
    # small weights, repeated sequences and accounts: ties everywhere
    quantities = [q for q, _, _ in rows]
    sequences = [s for _, s, _ in rows]
    accounts = [a for _, _, a in rows]
    got = ALLOCATION.pro_rata(capacity, quantities, sequences, accounts)
    assert got == kernel_pro_rata(capacity, quantities, sequences, accounts)
    if sum(quantities) <= capacity:
        assert got == quantities
    else:
        keys = list(zip(sequences, accounts, strict=True))
        assert got == rules.largest_remainder(capacity, quantities, keys)
        assert sum(got) == capacity


def test_pro_rata_total_beyond_int64_does_not_oversell():
    # Each quantity fits int64, their sum does not: the kernel used to wrap the sum negative,
    # decide everything fits and hand out 2**63 units of a capacity of 1.
    quantities = [2**62, 2**62]
    out = np.zeros(2, dtype=np.int64)
    code = kernels.pro_rata(np.array(quantities, dtype=np.int64), np.array([1, 2]),
                            np.array([1, 2]), 1, out)
    assert code == codes.AMOUNT_TOO_LARGE
    # two halves: the unit goes to the earlier sequence (the wrapper's exact fallback)
    assert ALLOCATION.pro_rata(1, quantities, [1, 2], [1, 2]) == [1, 0]
    assert rules.largest_remainder(1, quantities, [(1, 1), (2, 2)]) == [1, 0]


def test_pro_rata_refuses_nonsense():
    with pytest.raises(ValueError):
        ALLOCATION.pro_rata(-1, [1], [1], [1])
    with pytest.raises(ValueError):
        ALLOCATION.pro_rata(1, [-1, 3], [1, 2], [1, 2])
    with pytest.raises(ValueError):
        ALLOCATION.pro_rata(1, [1, 3], [1], [1, 2])


# ---- rate auction ---------------------------------------------------------------------------

RATE_AUCTION_CASES = [
    # (capacity, quantities, rates, sequences, expected filled, expected clearing)
    # the marginal bid (600, seq 3) fills partly; the bid above it not at all
    (100, [40, 50, 30, 20], [500, 600, 600, 700], [1, 2, 3, 4], [40, 50, 10, 0], 600),
    # marginal bid listed first and cheapest last: ranking is by rate, not position
    (60, [50, 30, 40], [800, 500, 600], [1, 2, 3], [0, 30, 30], 600),
    # capacity used up exactly by the earlier bid at the clearing rate: the later bid at the
    # same rate gets nothing, the clearing rate stays 600 (not the 700 above it)
    (100, [40, 60, 10, 5], [500, 600, 600, 700], [1, 2, 3, 4], [40, 60, 0, 0], 600),
    # equal rates ranked by sequence, whatever the list order
    (100, [10, 60, 40], [600, 600, 500], [9, 2, 1], [0, 60, 40], 600),
    # undersubscribed: everyone filled, clearing at the highest bid
    (100, [10, 20], [300, 700], [1, 2], [10, 20], 700),
    # the last unit goes to the lowest-rate bid even though it came last
    (1, [1, 1, 1], [900, 800, 100], [1, 2, 3], [0, 0, 1], 100),
    # nothing to fill: clearing rate 0
    (0, [10, 20], [300, 700], [1, 2], [0, 0], 0),
    # a bid at 0 bps fills at 0 bps
    (10, [5], [0], [1], [5], 0),
]


@pytest.mark.parametrize(("capacity", "quantities", "rates", "sequences", "filled", "clearing"),
                         RATE_AUCTION_CASES)
def test_rate_auction_board_and_kernel_agree(capacity, quantities, rates, sequences, filled,
                                             clearing):
    got = ALLOCATION.rate_auction(capacity, quantities, rates, sequences)
    assert got == (filled, clearing)
    assert all(type(q) is int for q in got[0]) and type(got[1]) is int
    assert kernel_rate_auction(capacity, quantities, rates, sequences) == (filled, clearing)
    assert ref.rate_auction(rates, sequences, quantities, capacity) == (filled, clearing)


def test_debt_auction_close_goes_through_the_kernel():
    terms = {"face_value": 1_000_00, "min_quantity": 50, "max_quantity": 100, "term_months": 12,
             "repayment": "bullet", "auction": {"max_rate_bps": 1200}, "lockup_days": 0}
    # seq 4 bids the lowest rate; seq 2 and 3 tie at the clearing rate, seq 3 is marginal
    subs = views([(21, 2, 50, 900), (22, 3, 30, 900), (23, 5, 20, 1100), (24, 4, 40, 700)])
    result = BOARDS["debt"].close(terms, subs, ALLOCATION)
    assert result.succeeded
    assert result.quantities == [50, 10, 0, 40]
    assert result.clearing_rate_bps == 900
    assert result.amounts_fen == [50_000_00, 10_000_00, 0, 40_000_00]
    assert (result.quantities, result.clearing_rate_bps) == kernel_rate_auction(
        100, [50, 30, 20, 40], [900, 900, 1100, 700], [2, 3, 5, 4])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.sampled_from([0, 300, 500, 700])),
                min_size=1, max_size=30),
       st.integers(0, 300), st.randoms(use_true_random=False))
def test_rate_auction_uniform_price_properties(bids, capacity, random):
    quantities = [q for q, _ in bids]
    rates = [r for _, r in bids]
    sequences = list(range(1, len(bids) + 1))
    random.shuffle(sequences)  # subscription order need not be list order here
    filled, clearing = ALLOCATION.rate_auction(capacity, quantities, rates, sequences)
    assert (filled, clearing) == kernel_rate_auction(capacity, quantities, rates, sequences)
    assert sum(filled) == min(capacity, sum(quantities))
    ranked = sorted(range(len(bids)), key=lambda i: (rates[i], sequences[i]))
    fills = [filled[i] for i in ranked]
    partial = [j for j, i in enumerate(ranked) if 0 < filled[i] < quantities[i]]
    assert len(partial) <= 1  # only the marginal bid fills in part
    first_short = next((j for j, i in enumerate(ranked) if filled[i] < quantities[i]),
                       len(ranked))
    assert all(f == 0 for f in fills[first_short + 1:])  # nothing after the marginal bid
    filled_rates = [rates[i] for i in range(len(bids)) if filled[i]]
    assert clearing == max(filled_rates, default=0)


# ---- first come -----------------------------------------------------------------------------


def refusal(remaining, quantity):
    try:
        rules.first_come_check(ALLOCATION, remaining, quantity)
    except CrowdexError as error:
        return error.code
    return "ok"


@pytest.mark.parametrize(("remaining", "quantity", "expected"), [
    (1, 1, "ok"),                     # the last unit is sold
    (0, 1, "sold_out"),               # and then nothing is
    (1, 2, "exceeds_remaining"),      # a pledge bigger than what is left: refused whole
    (5, 5, "ok"),
    (5, 6, "exceeds_remaining"),
    (None, 10**12, "ok"),             # unlimited tier
    (-3, 1, "sold_out"),              # oversold books must never read as "unlimited" (-1)
])
def test_first_come_check_board_and_kernel_agree(remaining, quantity, expected):
    assert refusal(remaining, quantity) == expected
    capacity = -1 if remaining is None else max(remaining, 0)
    kernel_codes, out, _ = matching.allocate_first_come(np.array([quantity]), capacity)
    assert codes.CODE_NAMES[int(kernel_codes[0])] == expected
    assert out.tolist() == [quantity if expected == "ok" else 0]


def test_first_come_message_names_what_remains():
    with pytest.raises(CrowdexError) as raised:
        rules.first_come_check(ALLOCATION, 3, 4)
    assert raised.value.code == "exceeds_remaining" and "only 3 remain" in str(raised.value)


@pytest.mark.parametrize(("board", "terms", "tier_id", "key"), [
    ("product", {"goal": 1, "tiers": [{"tier_id": "a", "price": 10_00, "quantity": 5}]}, "a",
     "a"),
    ("debt", {"face_value": 100_00, "min_quantity": 1, "max_quantity": 5, "term_months": 12,
              "repayment": "bullet", "rate_bps": 800}, None, None),
])
def test_first_come_stream_to_the_last_unit(board, terms, tier_id, key):
    """A stream of pledges through the board's check equals the kernel over the whole stream."""
    pledges = [2, 2, 2, 1, 1, 3]
    taken: dict = {}
    board_codes = []
    for quantity in pledges:
        try:
            BOARDS[board].check_capacity(terms, quantity, tier_id, taken, ALLOCATION)
        except CrowdexError as error:
            board_codes.append(error.code)
        else:
            board_codes.append("ok")
            taken[key] = taken.get(key, 0) + quantity
    # 2, 2 taken (1 left); 2 exceeds; 1 takes the last unit; then sold out
    assert board_codes == ["ok", "ok", "exceeds_remaining", "ok", "sold_out", "sold_out"]
    kernel_codes, out, remaining = matching.allocate_first_come(np.array(pledges), 5)
    assert [codes.CODE_NAMES[int(c)] for c in kernel_codes] == board_codes
    assert out.tolist() == [2, 2, 0, 1, 0, 0] and remaining == 0
    assert taken[key] == 5
