"""`crowdex cluster`: a local cluster of NATS nodes and replicas, started and stopped whole."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from tests.conftest import OPERATOR_KEY

OPERATOR = {"Authorization": f"Bearer {OPERATOR_KEY}"}
READY_TIMEOUT_S = 120.0


def two_free_ports() -> int:
    """A port P with P+1 free too (the cluster's replicas count up from --port)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free ports")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def settle_at_one_reconcile_at_both(session: aiohttp.ClientSession,
                                          urls: list[str]) -> None:
    async with session.post(urls[1] + "/v1/settlement/batches", headers=OPERATOR) as response:
        batch = await response.json()
        assert response.status == 201, batch
    assert batch["batch_id"] == 1 and batch["movement_count"] > 0  # the demo's deposits
    for url in urls:
        async with session.get(url + "/v1/settlement/reconciliation",
                               headers=OPERATOR) as response:
            rec = await response.json()
        assert rec["balanced"] and rec["last_batch_id"] == 1, rec


async def test_cluster_starts_replicas_that_agree_and_ctrl_c_stops_everything(
        tmp_path: Path, monkeypatch) -> None:
    """``crowdex cluster --demo``: the replicas agree, and settle into the one PostgreSQL the
    cluster started for them all (a batch asked of one reconciles at both)."""
    monkeypatch.delenv("CROWDEX_DATABASE_URL", raising=False)
    port = two_free_ports()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "cluster", "--nats-nodes", "3", "--servers", "2",
         "--port", str(port), "--data-dir", str(tmp_path / "cluster"),
         "--operator-key", OPERATOR_KEY, "--demo"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    lines = []
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not lines or "ready" not in lines[-1]:
            assert time.monotonic() < deadline and process.poll() is None, lines
            lines.append(process.stdout.readline())
        text = "".join(lines)
        assert f"http://127.0.0.1:{port} " in text and f"http://127.0.0.1:{port + 1} " in text
        assert "nats://127.0.0.1:" in text
        urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        async with aiohttp.ClientSession() as session:
            async with session.post(urls[1] + "/v1/accounts", headers=OPERATOR,
                                    json={"role": "investor", "name": "someone"}) as response:
                assert response.status == 201
            states = []
            for _ in range(100):
                states = []
                for url in urls:
                    async with session.get(url + "/v1/admin/state", headers=OPERATOR) as reply:
                        states.append(await reply.json())
                if states[0] == states[1]:
                    break
                await asyncio.sleep(0.05)
            assert states[0] == states[1] and states[0]["sequence"] >= 2
            await settle_at_one_reconcile_at_both(session, urls)
        assert "PostgreSQL (embedded, shared by every replica)" in text
        assert (tmp_path / "cluster" / "postgres").is_dir()
        assert not any((tmp_path / "cluster" / f"server-{n}" / "postgres").exists()
                       for n in (1, 2))
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
        process.stdout.close()
    assert code == 0
    assert not port_open(port) and not port_open(port + 1)
    nats_url = next(line for line in lines if "NATS" in line).split()[-1].split(",")[0]
    assert not port_open(int(nats_url.rsplit(":", 1)[1]))
