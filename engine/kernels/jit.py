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
``run_batch`` carries compiled copies of kernels from other files (inlined or called): edit
``book.py`` alone and a cached ``run_batch`` would go on running the old book. So the kernels'
cache entries are stamped with a digest of every source file in this directory
(``KERNEL_SOURCES_STAMP``), through cache locators put in front of numba's own: any kernel
edit invalidates every kernel's cache. If a numba release changes that internal API, the
locators are not installed (``kernel_sources_stamped`` is False, ``tests/engine/test_jit.py``
fails) and the old rule applies: delete ``engine/kernels/__pycache__/*.nb[ic]`` after an edit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from numba import njit

try:
    from numba.core.cpu import CPUTargetOptions
    kernel_without_nrt: bool = hasattr(CPUTargetOptions, "_nrt")
except ImportError:  # pragma: no cover - a numba without that module
    kernel_without_nrt = False


KERNELS_DIR = Path(__file__).resolve().parent


def kernel_sources_stamp(directory: Path = KERNELS_DIR) -> str:
    """A digest of every ``*.py`` file in ``directory``: names and contents."""
    digest = hashlib.sha256()
    for path in sorted(Path(directory).glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


KERNEL_SOURCES_STAMP = kernel_sources_stamp()


def _install_stamped_locators() -> bool:
    """Put kernel-stamped variants of numba's user-directory and in-tree cache locators in
    front of each (so ``NUMBA_CACHE_DIR`` keeps its priority); False if numba lacks the API."""
    try:
        from numba.core import caching
    except ImportError:  # pragma: no cover - another numba
        return False

    def named(name: str) -> Any:  # numba 0.68 names them without the leading underscore
        return getattr(caching, name, None) or getattr(caching, "_" + name, None)

    impl = named("CacheImpl")
    classes = getattr(impl, "_locator_classes", None)
    originals = (named("UserProvidedCacheLocator"), named("InTreeCacheLocator"))
    if not isinstance(classes, list) or None in originals:  # pragma: no cover - another numba
        return False
    if any(getattr(cls, "crowdex_stamped", False) for cls in classes):
        return True
    for original in originals:
        if original not in classes:  # pragma: no cover - another numba
            return False

        class Stamped(original):  # type: ignore[misc, valid-type]
            crowdex_stamped = True

            def get_source_stamp(self) -> str:
                return KERNEL_SOURCES_STAMP

            @classmethod
            def from_function(cls, py_func, py_file):
                if Path(py_file).resolve().parent != KERNELS_DIR:
                    return None
                return super().from_function(py_func, py_file)

        Stamped.__name__ = Stamped.__qualname__ = f"Kernel{original.__name__}"
        classes.insert(classes.index(original), Stamped)
    return True


kernel_sources_stamped: bool = _install_stamped_locators()


def kernel(fn: Callable[..., Any] | None = None, *, inline: bool = False,
           nogil: bool = False) -> Any:
    """Compile ``fn`` as an in-place kernel: ``njit``, cached, without reference counting.

    ``@kernel(inline=True)`` inlines a small kernel into its callers in numba's own IR, so a
    call in a hot loop does not pass every array as a stack of arguments. ``nogil=True``
    releases the interpreter lock while it runs (the journal thread's loop).
    """
    options: dict[str, Any] = {"cache": True}
    if kernel_without_nrt:
        options["_nrt"] = False
    if inline:
        options["inline"] = "always"
    if nogil:
        options["nogil"] = True
    if fn is None:
        return njit(**options)
    return njit(**options)(fn)

