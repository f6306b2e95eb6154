"""``crowdex bench settlement`` runs end to end on a small batch and reports consistent figures."""

from __future__ import annotations

import json

import pytest

from bench import settlement as bench


def test_the_settlement_bench_runs_small(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--trades", "2000", "--accounts", "40", "--instruments", "3",
                       "--repeat", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # Three movements a trade (a fee rounding to 0 fen is no movement), two legs a movement.
    assert 2 * 2 * 2000 < result["legs"] <= 6 * 2000
    assert result["legs"] == 2 * result["movements"]
    assert result["repeat"] == 2 and result["seconds"] == min(result["all_seconds"])
    assert result["ratio_to_bare_copy"] > 0 and result["database"] == "embedded"


def test_the_settlement_bench_refuses_bad_arguments() -> None:
    assert bench.main(["--repeat", "0"]) == 2
