"""The `crowdex` command: flags, the manual clock across restarts, graceful stop, benchmarks."""

from __future__ import annotations

import json
import subprocess
import sys

import aiohttp

from tests.conftest import OPERATOR_KEY

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_bare_date_start_time_is_refused(tmp_path):
    result = run_cli("serve", "--data-dir", str(tmp_path), "--clock", "manual",
                     "--start-time", "2026-01-01")
    assert result.returncode == 2
    assert "start-time" in result.stderr


def test_unknown_benchmark_is_refused():
    result = run_cli("bench", "nonsense")
    assert result.returncode == 2 and "usage" in result.stderr


def test_bench_journal_prints_both_figures_and_the_ratio(tmp_path):
    result = run_cli("bench", "journal", "--commands", "4000", "--single-commands", "200",
                     "--handoff-batches", "30", "--dir", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    text = json.dumps(figures)
    assert "ratio" in text
    if sys.platform == "linux":  # the journal thread's two loops, beside a busy loop
        handoff = figures["thread_handoff"]
        # Two rounds of 30 each; a round of the Python thread may stop at its time limit.
        assert handoff["compiled"]["batches"] == 60
        assert 2 <= handoff["python"]["batches"] <= 60
        assert handoff["compiled"]["us_p50"] > 0 and handoff["python"]["us_p50"] > 0


async def test_manual_clock_survives_restart_and_stop_is_graceful(server_factory):
    server = server_factory("--clock", "manual", "--start-time", "2026-03-01T09:30:00Z")
    server.start()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/v1/admin/clock", json={"advance_seconds": 3600},
                                headers=OPERATOR) as response:
            assert response.status == 200
            assert await response.json() == {"now": "2026-03-01T10:30:00Z"}
    assert server.stop() == 0
    server.start()
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{server.url}/v1/admin/clock", json={"advance_seconds": 60},
                                headers=OPERATOR) as response:
            assert await response.json() == {"now": "2026-03-01T10:31:00Z"}


async def test_new_operator_key_on_restart_replaces_the_old_one(server_factory, tmp_path):
    server = server_factory()
    server.start()
    server.stop()
    # The factory already passes --operator-key; argparse keeps the last one given.
    rotated = server_factory("--operator-key", "cdx_rotated_key_abcdefghijklmnop",
                             data_dir=server.data_dir)
    rotated.start()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{rotated.url}/v1/me", headers=OPERATOR) as response:
            assert response.status == 401
        async with session.get(f"{rotated.url}/v1/me", headers={
                "Authorization": "Bearer cdx_rotated_key_abcdefghijklmnop"}) as response:
            assert response.status == 200
            assert (await response.json())["role"] == "operator"
