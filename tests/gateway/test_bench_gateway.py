"""``crowdex bench gateway`` end to end on a tiny run: a real server, real load processes."""

from __future__ import annotations

import json

import pytest

from bench import gateway


def test_the_gateway_bench_runs_and_every_order_is_acknowledged(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway.main(["--seconds", "0.3", "--rates", "400", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    runs = {(r["run"], r["mode"], r["offered"]): r for r in result["runs"]}
    # At saturation the echo and the gateway in both modes; at 400/s the echo (ws) and both.
    assert len(runs) == 7
    for run in runs.values():
        assert run["errors"] == 0 and run["error_codes"] == {}, run
        assert run["ok"] == run["sent"] > 0
        assert run["p50_us"] <= run["p99_us"] <= run["p999_us"] <= run["max_us"]
    for mode in ("http", "ws"):
        # A paced run sends exactly rate x seconds requests, each due at its own time.
        assert runs[("crowdex gateway", mode, 400)]["sent"] == 120
    assert runs[("bare aiohttp echo", "ws", 400)]["sent"] == 120
    assert result["figures"]["ws_echo_p99_us_at_400"] == runs[("bare aiohttp echo", "ws", 400)][
        "p99_us"]
    figures = result["figures"]
    assert figures["ws_orders_per_sec"] == runs[("crowdex gateway", "ws", "saturation")][
        "ok_per_sec"]
    assert 0 < figures["http_ratio_to_echo"] and 0 < figures["ws_ratio_to_echo"]
    for key, run in runs.items():
        if key[0] == "crowdex gateway":
            # The server's fsync calls during the run: every acknowledged order was fsynced,
            # in group commits, so there are at least one and at most as many as orders.
            assert 1 <= run["fsync"]["count"] <= run["ok"], run
            assert run["fsync"]["p50_ms"] <= run["fsync"]["p99_ms"], run
        else:
            assert "fsync" not in run


def test_fsync_quantiles_from_histogram_deltas() -> None:
    before = {"0.001": 5, "0.005": 8, "+Inf": 10}
    after = {"0.001": 55, "0.005": 107, "+Inf": 110}  # this run: 50 fast, 49 middle, 1 slow
    delta = gateway._histogram_delta(before, after)
    assert delta == {"count": 100, "p50_ms": 1.0, "p99_ms": 5.0}
    slow = gateway._histogram_delta(before, {"0.001": 5, "0.005": 8, "+Inf": 20})
    assert slow == {"count": 10, "p50_ms": None, "p99_ms": None}  # beyond the last bound
