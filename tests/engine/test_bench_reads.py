"""``crowdex bench reads`` at a tiny size, so it cannot rot: every read it times gives the walk's
answer for every account sampled (the benchmark raises otherwise), and the state hash off the
loop is the machine's. Correctness only: the figures are the benchmark's business."""

from __future__ import annotations

import json

import pytest

from bench import reads

TINY = ["--commands", "3000", "--investors", "50", "--days", "30", "--json"]


def test_the_reads_bench_runs_and_checks_itself(capsys: pytest.CaptureFixture) -> None:
    assert reads.main(TINY) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["venue"]["positions"] > 0 and figures["venue"]["subscriptions"] > 0
    for name in ("holdings", "orders", "subscriptions", "pending_movements"):
        assert figures[name]["walk_ratio"] > 0, name
    assert figures["accounts_sampled"] == figures["venue"]["accounts"]
    assert figures["state_hash_loop_stall_ms"] >= 0


def test_a_read_that_differs_from_its_walk_fails_the_bench(monkeypatch) -> None:
    monkeypatch.setattr(reads, "_walk_orders", lambda machine, account: [account])
    with pytest.raises(AssertionError, match="orders: account"):
        reads.main(TINY)
