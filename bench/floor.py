"""The CI floor for the engine's speed, as a ratio to the plain-Python reference.

Measured on this project's 2-core machine (``python -m bench.ci_check``, 20,000 generated
orders, best of 3 each): the engine ran 715x to 800x the reference (engine ~37 M orders/s,
reference ~50 k orders/s); with two busy processes competing for both cores the ratio rose to
about 1,000x, because the short engine run escapes preemption and the long reference run does
not. On 1M orders the ratio is far higher again (the reference's cost grows with book depth).
Before the kernels were compiled without reference counting and with the per-command path
inlined (``engine.kernels.jit``), the same check gave 137x. A ratio cancels machine speed and
load; the floor keeps a safety margin of 4x below the lowest ratio seen, so a real regression
of the hot path (an accidental per-order Python call, a lost JIT, reference counting or calls
back in the matching loop) fails it while noise does not.
"""

ENGINE_TO_REFERENCE_RATIO_FLOOR = 180.0
CI_ORDERS = 20_000
CI_SEED = 20260101
