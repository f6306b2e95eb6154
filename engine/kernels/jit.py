"""The one decorator of the order-book kernels: compiled, cached on disk, no reference counting.

Numba counts references to every array a compiled function holds (an atomic add and subtract
on the array's MemInfo), and it cannot prune the pairs it emits around calls between kernels
inside loops (numba issue #2345). In the matching loop those counts cost more than the
matching itself. The book, auction, risk and pipeline kernels never allocate, return or keep
an array (they work in place on arrays their caller owns, which outlive the call), so they are
compiled without the runtime (``_nrt=False``): no counts at all. The allocation kernels
allocate scratch arrays and keep plain ``njit``.

The per-command path (``pipeline.new_order`` -> ``book.check_new`` -> ``book.place`` ->
``book.match`` / ``book.add_order``, and ``book.cancel``) is inlined into ``run_batch`` in
numba's own IR (``@kernel(inline=True)``): a call between kernels passes every array as seven
words on the stack, and those calls cost more than the matching (the 1M-order replay went from
13 to 25 M orders/s). Kernels called rarely (removal, refreshing the best price, auctions)
stay calls, which keeps the cold compile time where it was.

``_nrt`` is a numba target option without a public name. If a numba release drops it, the
kernels compile with the runtime on: slower, never wrong (``kernel_without_nrt`` says which,
and ``tests/engine/test_jit.py`` fails). With ``NUMBA_DISABLE_JIT=1`` the kernels run as plain
Python either way.

Numba's disk cache checks only the source file of the function it caches, while
``run_batch`` carries compiled copies of kernels from other files: after editing a kernel
outside ``pipeline.py``, delete ``engine/kernels/__pycache__/*.nbi`` and ``*.nbc`` (or touch
``pipeline.py``), or the old code keeps running.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from numba import njit

try:
    from numba.core.cpu import CPUTargetOptions
    kernel_without_nrt: bool = hasattr(CPUTargetOptions, "_nrt")
except ImportError:  # pragma: no cover - a numba without that module
    kernel_without_nrt = False


def kernel(fn: Callable[..., Any] | None = None, *, inline: bool = False) -> Any:
    """Compile ``fn`` as an in-place kernel: ``njit``, cached, without reference counting.

    ``@kernel(inline=True)`` inlines a small kernel into its callers in numba's own IR, so a
    call in a hot loop does not pass every array as a stack of arguments.
    """
    options: dict[str, Any] = {"cache": True}
    if kernel_without_nrt:
        options["_nrt"] = False
    if inline:
        options["inline"] = "always"
    if fn is None:
        return njit(**options)
    return njit(**options)(fn)

