"""Allocation kernels against their plain-Python references, with random subscriptions."""

import os

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from engine.matching import allocate_first_come, allocate_pro_rata, allocate_rate_auction
from engine.reference import allocation as ref

EXAMPLES = 3000 if os.environ.get("CROWDEX_SLOW") == "1" else 600
STEPS = 50


class AllocationMachine(RuleBasedStateMachine):
    """Subscriptions arrive; every allocation step compares kernel and reference."""

    def __init__(self) -> None:
        super().__init__()
        self.qty: list[int] = []
        self.account: list[int] = []
        self.rate: list[int] = []

    @rule(qty=st.integers(1, 10**6), account=st.integers(1, 20), rate=st.integers(1, 2000))
    def subscribe(self, qty, account, rate):
        self.qty.append(qty)
        self.account.append(account)
        self.rate.append(rate)

    def arrays(self):
        n = len(self.qty)
        return np.array(self.qty), np.arange(n), np.array(self.account), np.array(self.rate)


class ProRata(AllocationMachine):
    @rule(available=st.integers(0, 3 * 10**6))
    def allocate(self, available):
        qty, seq, account, _ = self.arrays()
        got = allocate_pro_rata(qty, seq, account, available).tolist()
        assert got == ref.pro_rata(self.qty, list(range(len(qty))), self.account, available)
        assert sum(got) == min(available, sum(self.qty))
        assert all(0 <= g <= q for g, q in zip(got, self.qty, strict=True))


class FirstCome(AllocationMachine):
    @rule(capacity=st.integers(-1, 3 * 10**6))
    def allocate(self, capacity):
        codes, out, remaining = allocate_first_come(np.array(self.qty, dtype=np.int64), capacity)
        expected = ref.first_come(self.qty, capacity)
        assert (codes.tolist(), out.tolist(), remaining) == expected
        if capacity >= 0:
            assert sum(out.tolist()) + remaining == capacity  # never oversells


class RateAuction(AllocationMachine):
    @rule(available=st.integers(0, 3 * 10**6))
    def allocate(self, available):
        qty, seq, _, rate = self.arrays()
        out, clearing = allocate_rate_auction(rate, seq, qty, available)
        assert (out.tolist(), clearing) == ref.rate_auction(self.rate, list(range(len(qty))),
                                                            self.qty, available)


_settings = settings(max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None)
ProRata.TestCase.settings = _settings
FirstCome.TestCase.settings = _settings
RateAuction.TestCase.settings = _settings
TestProRata = ProRata.TestCase
TestFirstCome = FirstCome.TestCase
TestRateAuction = RateAuction.TestCase


def test_pro_rata_overflow_falls_back_to_exact_integers():
    got = allocate_pro_rata(np.array([2**40, 2**40 + 1]), np.array([0, 1]), np.array([1, 2]),
                            2**40)
    assert got.tolist() == ref.pro_rata([2**40, 2**40 + 1], [0, 1], [1, 2], 2**40)
