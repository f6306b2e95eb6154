"""The compiled kernels of the engine.

``jit`` is imported first, whatever kernel module is asked for: it installs the cache locators
that stamp every kernel's cache entry with all kernel sources, before any kernel is compiled.
"""

from engine.kernels import jit as jit  # noqa: F401  (side effect: the stamped cache locators)
