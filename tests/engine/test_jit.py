"""How the kernels are compiled: what the matching loop's speed depends on."""

from engine.kernels.jit import kernel_without_nrt
from engine.kernels.pipeline import run_batch


def test_book_kernels_compile_without_reference_counting():
    """A numba upgrade that drops the option must fail here, not only slow a benchmark down."""
    assert kernel_without_nrt
    # With NUMBA_DISABLE_JIT the kernels are plain functions without target options.
    assert getattr(run_batch, "targetoptions", {"_nrt": False}).get("_nrt") is False
