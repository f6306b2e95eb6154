"""`crowdex cluster`: a local cluster of NATS nodes and replicas, started and stopped whole."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import aiohttp
import psutil

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
                                          urls: list[str], batch_id: int = 1) -> None:
    async with session.post(urls[1] + "/v1/settlement/batches", headers=OPERATOR) as response:
        batch = await response.json()
        assert response.status == 201, batch
    assert batch["batch_id"] == batch_id and batch["movement_count"] > 0
    for url in urls:
        async with session.get(url + "/v1/settlement/reconciliation",
                               headers=OPERATOR) as response:
            rec = await response.json()
        assert rec["balanced"] and rec["last_batch_id"] == batch_id, rec


async def agreeing_states(session: aiohttp.ClientSession, urls: list[str]) -> dict:
    """The venue state once every replica answers the same (each may still be catching up)."""
    states: list = []
    for _ in range(400):
        states = []
        for url in urls:
            try:
                async with session.get(url + "/v1/admin/state", headers=OPERATOR) as reply:
                    states.append(await reply.json() if reply.status == 200 else reply.status)
            except aiohttp.ClientConnectionError:
                states.append(None)  # a replica starting again
        if isinstance(states[0], dict) and all(state == states[0] for state in states):
            return states[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"the replicas do not agree: {states}")


class Lines:
    """The cluster's stdout, read by a thread so a wait for a line can time out."""

    def __init__(self, stream) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_for(self, text: str, timeout_s: float = READY_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            found = [line for line in self.seen if text in line]
            if found:
                return found[-1]
            try:
                self.seen.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r}: {self.seen}") from None


async def test_cluster_starts_replicas_that_agree_and_ctrl_c_stops_everything(
        tmp_path: Path, monkeypatch) -> None:
    """``crowdex cluster --demo``: the replicas agree, and settle into the one PostgreSQL the
    cluster started for them all (a batch asked of one reconciles at both); a replica, a NATS
    node and PostgreSQL killed are started again, and the venue goes on."""
    monkeypatch.delenv("CROWDEX_DATABASE_URL", raising=False)
    port = two_free_ports()
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "cluster", "--nats-nodes", "3", "--servers", "2",
         "--port", str(port), "--data-dir", str(tmp_path / "cluster"),
         "--operator-key", OPERATOR_KEY, "--demo"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    lines = Lines(process.stdout)
    try:
        lines.wait_for("ready")
        text = "".join(lines.seen)
        assert f"http://127.0.0.1:{port} " in text and f"http://127.0.0.1:{port + 1} " in text
        assert "nats://127.0.0.1:" in text
        urls = [f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port + 1}"]
        async with aiohttp.ClientSession() as session:
            async with session.post(urls[1] + "/v1/accounts", headers=OPERATOR,
                                    json={"role": "investor", "name": "someone"}) as response:
                assert response.status == 201
                investor = (await response.json())["account_id"]
            assert (await agreeing_states(session, urls))["sequence"] >= 2
            await settle_at_one_reconcile_at_both(session, urls)  # the demo's deposits

            # kill -9 of a replica, a NATS node and PostgreSQL: the cluster starts each again.
            replica = int(lines.wait_for(f"replica 2 http://127.0.0.1:{port + 1} ")
                          .rsplit("pid ", 1)[1].rstrip(")\n"))
            node = next(child for child in psutil.Process(process.pid).children()
                        if child.name() == "nats-server")
            pgdata = Path(lines.wait_for("PostgreSQL (embedded").rsplit(" in ", 1)[1].strip())
            postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
            for pid in (replica, node.pid, postmaster):
                os.kill(pid, signal.SIGKILL)
            lines.wait_for("replica 2 started again")
            lines.wait_for("is back (pid")
            lines.wait_for("embedded PostgreSQL is back")
            await agreeing_states(session, urls)  # replica 2 caught up again
            async with session.post(f"{urls[0]}/v1/accounts/{investor}/deposits",
                                    headers=OPERATOR,
                                    json={"amount": 500, "reference": "after the crashes"}
                                    ) as response:
                assert response.status == 201, await response.text()
            await agreeing_states(session, urls)
            await settle_at_one_reconcile_at_both(session, urls, batch_id=2)
        text = "".join(lines.seen)
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
    nats_urls = lines.wait_for("crowdex cluster: NATS nats://").split()[-1].split(",")
    assert len(nats_urls) == 3  # the node started again is stopped too
    assert not any(port_open(int(url.rsplit(":", 1)[1])) for url in nats_urls)


def test_the_supervisor_restarts_a_failed_replica_with_growing_pauses_and_not_a_clean_exit(
        monkeypatch) -> None:
    """``crowdex cluster``'s restart policy over real processes: a replica that fails is started
    again after a pause that doubles while it keeps dying young; one that exits cleanly (0) or
    on a usage error (2) stays down; ``check`` is False once every replica is down for good."""
    from gateway import localcluster

    monkeypatch.setattr(localcluster, "RESTART_PAUSE_MIN_S", 0.05)
    starts: list[int] = []

    def start(index: int) -> subprocess.Popen:
        starts.append(index)
        code = 3 if len(starts) < 3 else 0  # fails twice more, then exits cleanly
        return subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])

    class NoNodes:  # the NATS side is tested end to end above
        nodes: list = []

    servers = [subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"]),
               subprocess.Popen([sys.executable, "-c", "raise SystemExit(2)"])]
    supervisor = localcluster._Supervisor(NoNodes(), None, servers, start)
    pauses = []
    deadline = time.monotonic() + 30
    while supervisor.check():
        assert time.monotonic() < deadline, starts
        due = supervisor.restarts[0].due
        if due is not None and (not pauses or pauses[-1][0] != len(starts)):
            pauses.append((len(starts), supervisor.restarts[0].pause_s))
        time.sleep(0.01)
    assert starts == [0, 0, 0]  # replica 2 (usage error) never started again
    assert [pause for _n, pause in pauses] == [0.1, 0.2, 0.4]  # the next pause, doubling
    assert servers[0].returncode == 0
