"""``crowdex bench replay``: the sample's figures, agreement with the reference, JIT off."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import replay as r
from bench.workload import generate, save

# A copy of shared/replay-sample (the contract's sample workload and its expected figures).
SAMPLE = Path(__file__).resolve().parent / "data"
ROOT = Path(__file__).resolve().parents[2]


def test_sample_reproduces_expected_figures(capsys):
    assert r.main([str(SAMPLE / "sample_10000.npz"), "--json"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = json.loads((SAMPLE / "expected.json").read_text())
    for key in ("orders", "trades", "traded_quantity", "fills_sha256"):
        assert got[key] == expected[key]


@pytest.mark.parametrize("seed", [1, 2, 3, 42, 2026])
def test_engine_matches_reference_on_generated_workloads(seed):
    w = generate(3000, seed)
    _, reference_hash = r.replay_reference(w)
    assert r.replay(w)["fills_sha256"] == reference_hash


def test_kernels_run_with_jit_disabled(tmp_path):
    path = tmp_path / "w.npz"
    save(str(path), generate(1500, 9))
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-m", "bench.replay", str(path), "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    interpreted = json.loads(out.stdout.strip().splitlines()[-1])
    assert interpreted["fills_sha256"] == r.replay(r.load_workload(str(path)))["fills_sha256"]
