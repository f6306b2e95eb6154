"""``crowdex bench gateway`` end to end on a tiny run: a real server, real load processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import gateway


def test_the_gateway_bench_runs_and_every_order_is_acknowledged(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert gateway.main(["--seconds", "0.3", "--rates", "400", "--repeat", "2", "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out.strip().splitlines()[-1])
    # The logs stay; the server's data dir (its journal and snapshots) does not.
    work = Path(out.split("logs in ", 1)[1].split()[0])
    assert (work / "server.log").exists() and not (work / "data").exists()
    shutil.rmtree(work)
    rows = result["runs"]
    # At saturation the echo and the gateway in both modes; at 400/s the echo and the gateway
    # over the WebSocket twice each (--repeat 2), then the gateway over HTTP once.
    assert [(r["run"], r["mode"], r["offered"]) for r in rows] == [
        ("bare aiohttp echo", "http", "saturation"), ("crowdex gateway", "http", "saturation"),
        ("bare aiohttp echo", "ws", "saturation"), ("crowdex gateway", "ws", "saturation"),
        *[("bare aiohttp echo", "ws", 400), ("crowdex gateway", "ws", 400)] * 2,
        ("crowdex gateway", "http", 400)]
    for run in rows:
        assert run["errors"] == 0 and run["error_codes"] == {}, run
        assert run["ok"] == run["sent"] > 0
        assert run["p50_us"] <= run["p99_us"] <= run["p999_us"] <= run["max_us"]
        assert run["client_cpu_us"] > 0, run  # the load processes' own CPU a request
        if run["offered"] == 400:
            # A paced run sends exactly rate x seconds requests, each due at its own time,
            # and says how late the client sent them (its own share of the latencies).
            assert run["sent"] == 120
            assert 0 <= run["send_late_p99_us"] <= run["send_late_max_us"] <= run["max_us"], run
        else:
            assert "send_late_max_us" not in run  # saturation: nothing is due
    figures = result["figures"]
    paced = {name: [r["p99_us"] for r in rows if r["offered"] == 400 and r["mode"] == "ws"
                    and r["run"] == name] for name in ("bare aiohttp echo", "crowdex gateway")}
    assert figures["ws_echo_p99_us_at_400_runs"] == paced["bare aiohttp echo"]
    assert figures["ws_p99_us_at_400_runs"] == paced["crowdex gateway"]
    # The figure is the median (the lower one of two).
    assert figures["ws_echo_p99_us_at_400"] == min(paced["bare aiohttp echo"])
    assert figures["ws_p99_us_at_400"] == min(paced["crowdex gateway"])
    assert figures["http_p99_us_at_400"] == rows[-1]["p99_us"]
    assert figures["ws_orders_per_sec"] == rows[3]["ok_per_sec"]
    assert 0 < figures["http_ratio_to_echo"] and 0 < figures["ws_ratio_to_echo"]
    for run in rows:
        if run["run"] == "crowdex gateway":
            # The server's fsync calls during the run: every acknowledged order was fsynced,
            # in group commits, so there are at least one and at most as many as orders.
            assert 1 <= run["fsync"]["count"] <= run["ok"], run
            assert run["fsync"]["p50_ms"] <= run["fsync"]["p99_ms"], run
            # Per group commit: the orders and the server's CPU of one batch on average.
            batches = run["fsync"]["count"]
            assert run["orders_per_batch"] == round(run["ok"] / batches, 1), run
            assert run["server_cpu_us_per_batch"] == round(
                run["server_cpu_us"] * run["ok"] / batches), run
            assert run["snapshots"] == 0, run  # a short run, far from 100k commands
            # One wait observed per batch answered; the loop's timer sampled all along.
            latency, lag = run["server_latency"], run["loop_lag"]
            assert 1 <= latency["count"] <= run["ok"], run
            assert latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"], run
            assert lag["count"] >= 1 and lag["p99_ms"] <= lag["max_ms"], run
        else:
            assert "fsync" not in run


def test_repeat_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        gateway.main(["--repeat", "0"])


def test_fsync_quantiles_from_histogram_deltas() -> None:
    before = {"0.001": 5, "0.005": 8, "+Inf": 10}
    after = {"0.001": 55, "0.005": 107, "+Inf": 110}  # this run: 50 fast, 49 middle, 1 slow
    delta = gateway.histogram_delta(before, after)
    assert delta == {"count": 100, "p50_ms": 1.0, "p99_ms": 5.0, "max_ms": None}
    fast = gateway.histogram_delta(before, {"0.001": 55, "0.005": 107, "+Inf": 109})
    assert fast["max_ms"] == 5.0  # the slow one came before this run
    slow = gateway.histogram_delta(before, {"0.001": 5, "0.005": 8, "+Inf": 20})
    assert slow == {"count": 10, "p50_ms": None, "p99_ms": None, "max_ms": None}


def test_snapshots_written_summed_over_writers_from_metrics_text() -> None:
    text = ('# HELP crowdex_snapshots_written_total Periodic snapshots written\n'
            '# TYPE crowdex_snapshots_written_total counter\n'
            'crowdex_snapshots_written_total{writer="follower"} 3.0\n'
            'crowdex_snapshots_written_created{writer="follower"} 1.7e+09\n'
            'crowdex_snapshots_written_total{writer="fork"} 1.0\n'
            'crowdex_snapshot_sequence 400.0\n')
    assert gateway.snapshots_in(text) == 4
    assert gateway.snapshots_in(text, "fork") == 1 and gateway.snapshots_in(text, "x") == 0
    assert gateway.gauge_in(text, "crowdex_snapshot_sequence") == 400
    assert gateway.gauge_in(text, "crowdex_snapshot_follower_behind") is None
