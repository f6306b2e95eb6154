"""``crowdex bench cluster`` end to end on a tiny run: real servers, a real NATS node and
cluster, real load processes; every order acknowledged and the replicas in agreement."""

from __future__ import annotations

import json

import pytest

from bench import cluster


def test_the_cluster_bench_runs_three_setups_and_the_replicas_agree(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cluster.main(["--seconds", "0.3", "--rates", "400", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = result["runs"]
    assert [(r["run"], r["offered"]) for r in rows] == [
        (name, offered) for name in ("file", "jetstream_r1", "cluster_r3 x2")
        for offered in ("saturation", 400)]
    for run in rows:
        assert run["mode"] == "ws"
        assert run["errors"] == 0 and run["error_codes"] == {}, run
        assert run["ok"] == run["sent"] > 0
        assert run["p50_us"] <= run["p99_us"] <= run["max_us"]
        # Every acknowledgement waited for its batch's fsync or stream append.
        assert 1 <= run["fsync"]["count"] <= run["ok"], run
        if run["offered"] == 400:
            assert run["sent"] == 120  # rate x seconds, each order due at its own time
    figures = result["figures"]
    for name in cluster.SETUPS:
        assert figures[f"{name}_errors"] == 0
        assert figures[f"{name}_p50_us_at_400"] <= figures[f"{name}_p99_us_at_400"]
    assert figures["ratio_cluster_r3_to_file"] == round(
        figures["cluster_r3_orders_per_sec"] / figures["file_orders_per_sec"], 3)
    # A third replica read the stream from an empty data dir and agrees with the two.
    assert figures["replicas_agree"] is True
    assert figures["catch_up_from"] == "the whole stream"  # too short a run for a snapshot
    assert 0 < figures["catch_up_entries"] <= figures["cluster_sequence"]
    assert figures["catch_up_entries_per_sec"] > 0


@pytest.mark.parametrize("argv", [["--seconds", "0"], ["--rates", "a"], ["--rates", "0"],
                                  ["--workers", "0"]])
def test_bad_options_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        cluster.main(argv)
