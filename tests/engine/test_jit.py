"""How the kernels are compiled: what the matching loop's speed depends on."""

from engine.kernels.jit import kernel_without_nrt
from engine.kernels.pipeline import run_batch


def test_book_kernels_compile_without_reference_counting():
    """A numba upgrade that drops the option must fail here, not only slow a benchmark down."""
    assert kernel_without_nrt
    # With NUMBA_DISABLE_JIT the kernels are plain functions without target options.
    assert getattr(run_batch, "targetoptions", {"_nrt": False}).get("_nrt") is False


def test_kernel_caches_are_stamped_with_every_kernel_source(tmp_path):
    """Editing book.py alone must invalidate the cached run_batch, which inlines it."""
    import os
    import shutil

    from engine.kernels import jit

    assert jit.kernel_sources_stamped
    for path in jit.KERNELS_DIR.glob("*.py"):
        shutil.copy(path, tmp_path / path.name)
    assert jit.kernel_sources_stamp(tmp_path) == jit.KERNEL_SOURCES_STAMP
    with open(tmp_path / "book.py", "a") as book:
        book.write("\n# an edit\n")
    assert jit.kernel_sources_stamp(tmp_path) != jit.KERNEL_SOURCES_STAMP
    if os.environ.get("NUMBA_DISABLE_JIT") != "1":
        locator = run_batch._cache._impl._locator
        assert getattr(locator, "crowdex_stamped", False)
        assert locator.get_source_stamp() == jit.KERNEL_SOURCES_STAMP
