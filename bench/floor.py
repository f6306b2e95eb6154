"""The CI floor for the engine's speed, as a ratio to the plain-Python reference.

Measured on this project's 2-core machine (``python -m bench.ci_check``, 20,000 generated
orders, best of 3): the engine ran 137x the reference (engine ~7 M orders/s, reference
~52 k orders/s); on 1M orders the ratio is far higher because the reference's cost grows
with book depth. A ratio cancels machine speed and load; the floor keeps a safety margin of
about 4x below the lowest ratio seen, so only a real regression of the hot
path (say, an accidental per-order Python call or a lost JIT) fails it.
"""

ENGINE_TO_REFERENCE_RATIO_FLOOR = 30.0
CI_ORDERS = 20_000
CI_SEED = 20260101
