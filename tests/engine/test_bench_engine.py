"""``crowdex bench engine``'s start-up and memory figures, at a small size: consistent, never
timed against a target (the machine decides how fast; the figures must only make sense)."""

from __future__ import annotations

import sys

from bench import engine as be
from engine.kernels import codes as k
from engine.kernels.layout import EVENT_DTYPE, ORDER_DTYPE


def test_cold_then_warm_start(tmp_path):
    """An empty NUMBA_CACHE_DIR compiles every kernel; the next child loads them all from it."""
    cache = tmp_path / "numba-cache"
    f = be.startup(warm_runs=1, cache_dir=str(cache))
    cold, (warm,) = f["startup_cold"], f["startup_warm"]
    assert cold["kernels_compiled"] > 0 and cold["kernels_loaded"] == 0
    assert warm["kernels_compiled"] == 0 and warm["kernels_loaded"] > 0
    assert list(cache.rglob("*.nbi")) and list(cache.rglob("*.nbc"))
    for run in (cold, warm):
        assert run["interpreter_seconds"] > 0 and run["import_seconds"] > 0
        assert 0 < run["first_batch_seconds"] < run["engine_ready_seconds"]
        assert run["engine_ready_seconds"] < run["ready_seconds"] <= run["done_seconds"]
        assert run["done_seconds"] <= run["exit_seconds"]
    assert f["warm_start_seconds"] == warm["ready_seconds"]
    assert f["warm_engine_ready_seconds"] == warm["engine_ready_seconds"]
    assert f["cold_compile_seconds"] == cold["done_seconds"]
    # Compiling costs more than loading what was compiled.
    assert warm["first_batch_seconds"] < cold["first_batch_seconds"]
    assert f["warm_start_seconds"] < f["cold_compile_seconds"]


def test_resting_orders_counted_and_array_bytes_scale():
    small, large = be.resting_orders(20_000), be.resting_orders(40_000)
    for n, m in ((20_000, small), (40_000, large)):
        assert m["resting_orders"] == m["live_orders"] == m["live_orders_after_process"] == n
        assert m["rejected_or_filled"] == 0  # nothing crossed, nothing refused
        assert m["arrays"]["orders"] >= n * ORDER_DTYPE.itemsize
        assert m["array_bytes"] >= m["arrays"]["book_live"] >= n * (ORDER_DTYPE.itemsize + 8)
        # The exchange's path reserves events for every resting order touched twice.
        assert m["process_events_bytes"] >= 2 * n * EVENT_DTYPE.itemsize
    # The live book grows by one order row and one oid index entry per order, nothing else.
    per_order = ORDER_DTYPE.itemsize + 8
    assert large["arrays"]["book_live"] - small["arrays"]["book_live"] == 20_000 * per_order
    assert large["arrays"]["orders"] == 2 * small["arrays"]["orders"]


def test_resting_orders_rss_measured_in_a_child():
    m = be.resting_orders_child(20_000)
    assert m["live_orders"] == 20_000
    assert 0 < m["rss_bytes"] < m["array_bytes"] + (32 << 20)
    assert m["peak_rss_bytes"] is None or m["peak_rss_bytes"] >= m["rss_bytes"]


def test_progress_writes_only_final_lines_off_a_terminal(capsys):
    assert not sys.stderr.isatty()
    for done in range(0, 101, 10):
        be.progress("phase", done, 100)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines() == [f"{'phase':<24} [{'#' * 30}] 100/100"]


def test_the_exchange_core_mix_moves_reduces_and_cancels_real_orders():
    """The mix's amends and cancels name live orders often enough to measure them; the book
    and the balances stay consistent through it."""
    from engine.matching import MatchingEngine, check_book, check_reservations

    cmds = be.exchange_core_mix(20_000, 3)
    ops = cmds["op"].tolist()
    assert {k.OP_NEW, k.OP_CANCEL, k.OP_AMEND} == set(ops)
    engine = MatchingEngine(order_capacity=20_000)
    engine.add_instrument(1, band_lo_fen=1, band_hi_fen=2 * be.MIX_MID_FEN, fee_bps=100)
    balances = be.funded_balances(1)
    codes = engine.process(cmds, balances).results
    amended = (cmds["op"] == k.OP_AMEND) & (codes == k.OK)
    assert amended.sum() > 0.4 * (cmds["op"] == k.OP_AMEND).sum()
    check_book(engine)
    check_reservations(engine, balances)
    figures = be.mix_run(5_000, 3)
    assert figures["commands"] == 5_000 and figures["amends_applied"] > 0
