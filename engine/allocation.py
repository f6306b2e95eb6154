"""The allocation mechanisms the engine hands the boards: its compiled kernels over plain lists.

Boards are rules, the engine is mechanism (DESIGN.md). A board decides what takes part in an
allocation and calls the mechanism it is given (``boards.rules.Allocation``); this is the one the
engine gives when it closes an offering or checks a first-come subscription. It wraps the
``engine.matching`` facades over the numba kernels (``engine/kernels/allocation.py``) and turns
Python lists into int64 arrays and back, so ``boards/`` never imports the engine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine import matching
from engine.kernels import allocation as kernels
from engine.kernels import codes

INT64_MAX = kernels.INT64_MAX
# The first_come kernel's rule for one pledge as Python (its py_func; the function itself when
# numba's JIT is off).
_FIRST_COME_CODE = getattr(kernels.first_come_code, "py_func", kernels.first_come_code)


def _int64s(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _check_allocation_input(capacity: int, quantities: Sequence[int],
                            *parallel: Sequence[int]) -> None:
    if capacity < 0:
        raise ValueError("cannot allocate a negative capacity")
    if min(quantities, default=0) < 0:
        raise ValueError("quantities must be non-negative")
    if any(len(column) != len(quantities) for column in parallel):
        raise ValueError("every subscription needs one value in each column")


class KernelAllocation:
    """``boards.rules.Allocation`` by the engine's kernels (stateless: one instance serves)."""

    def pro_rata(self, capacity: int, quantities: Sequence[int], sequences: Sequence[int],
                 accounts: Sequence[int]) -> list[int]:
        """Fill everything when it fits; otherwise pro rata in whole units (largest remainder).

        Ties between equal fractional parts go to the earliest ``sequences``, then the lower
        ``accounts`` (BOARDS.md). The split is the ``pro_rata`` kernel.
        """
        _check_allocation_input(capacity, quantities, sequences, accounts)
        out = matching.allocate_pro_rata(_int64s(quantities), _int64s(sequences),
                                         _int64s(accounts), capacity)
        return out.tolist()

    def rate_auction(self, capacity: int, quantities: Sequence[int], rates_bps: Sequence[int],
                     sequences: Sequence[int]) -> tuple[list[int], int]:
        """Uniform-price rate auction: fill the lowest rates first (then earliest), up to capacity.

        Returns each bid's filled quantity and the clearing rate (the highest filled rate, 0 when
        nothing fills). The marginal bid fills partly. The ranking and filling are the
        ``rate_auction`` kernel.
        """
        _check_allocation_input(capacity, quantities, rates_bps, sequences)
        out, clearing = matching.allocate_rate_auction(_int64s(rates_bps), _int64s(sequences),
                                                       _int64s(quantities), capacity)
        return out.tolist(), clearing

    def first_come(self, remaining: int | None, quantity: int) -> str:
        """The ``first_come`` kernel's answer for one pledge, by its code's name (``ok``...).

        Capacity -1 is unlimited in the kernel, so a negative ``remaining`` is passed as 0:
        nothing remains. One pledge is the kernel's own rule for one pledge
        (``first_come_code``, which the kernel calls for each) run by the interpreter (numba's
        ``py_func``): the same rule, without the arrays and the compiled call that cost more
        than the rule for one number (every pledge on a limited tier asks). Quantities past
        int64 take the compiled path, which refuses them as it always did.
        """
        capacity = -1 if remaining is None else max(remaining, 0)
        if -INT64_MAX <= quantity <= INT64_MAX and capacity <= INT64_MAX:
            code = _FIRST_COME_CODE(quantity, capacity)
        else:
            found, _, _ = matching.allocate_first_come(_int64s([quantity]), capacity)
            code = int(found[0])
        return codes.CODE_NAMES.get(code, f"code {code}")


ALLOCATION = KernelAllocation()
