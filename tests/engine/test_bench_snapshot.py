"""``crowdex bench snapshot`` at a tiny size, so it cannot rot: both mixes run to the end, every
period that begins with a snapshot has its child reaped and its stages timed. Correctness only:
the figures are the benchmark's business."""

from __future__ import annotations

import json

import pytest

from bench import snapshot

TINY = ["--every", "2048", "--batch", "256", "--rounds", "2", "--repeat", "1",
        "--warm-batches", "2"]


@pytest.mark.parametrize("mix", [["--orders", "3000"],
                                 ["--mix", "mixed", "--commands", "3000"]],
                         ids=["orders", "mixed"])
def test_the_bench_runs_and_reports_each_snapshot(capsys: pytest.CaptureFixture,
                                                  mix: list[str]) -> None:
    assert snapshot.main(mix + TINY) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["no_snapshot"]["batches"] == 2 * 2048 // 256
    taken = figures["child_alive"]["batches"] + figures["after_child"]["batches"]
    assert taken == 2 * 2048 // 256  # the same commands, with a snapshot each period
    assert len(figures["children"]) == 2
    for child in figures["children"]:
        assert child["lifetime_ms"] > 0
        assert {"meta_ms", "body_ms", "write_ms"} <= set(child)
        # The child only writes; the fsync and the rename are this process's, after it.
        assert "fsync_ms" not in child
        assert {"published_fsync_ms", "published_rename_ms"} <= set(child)


def test_the_bench_runs_with_the_follower_writing(capsys: pytest.CaptureFixture) -> None:
    assert snapshot.main(["--orders", "3000", *TINY, "--writer", "follower"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["writer"] == "follower"
    assert figures["follower_alive"]["batches"] == 2 * 2048 // 256
    last = figures["children"][-1]
    assert last["follower_snapshots_due"] == 2 and last["follower_wrote_them"] is True
    assert last["follower_user_ms"] > 0
