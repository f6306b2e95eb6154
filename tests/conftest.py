"""Shared test fixtures: the --slow switch and a real `crowdex serve` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

OPERATOR_KEY = "cdx_test_operator_key_0123456789"
SERVER_START_TIMEOUT_S = 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="run long checks (more hypothesis examples, bigger workloads)")


def pytest_configure(config: pytest.Config) -> None:
    # The engine's property tests read CROWDEX_SLOW to run more random steps.
    if config.getoption("--slow"):
        os.environ["CROWDEX_SLOW"] = "1"


@pytest.fixture(scope="session")
def slow(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--slow"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`crowdex serve` in a child process on a free loopback port."""

    def __init__(self, data_dir: Path, *extra: str, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.extra = list(extra)
        self.database_url = database_url
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"server-{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait for /healthz; returns the seconds it took."""
        args = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port),
                "--data-dir", str(self.data_dir), "--operator-key", OPERATOR_KEY, *self.extra]
        if self.database_url:
            args += ["--database-url", self.database_url]
        started = time.monotonic()
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).resolve().parent.parent)
        log.close()
        while time.monotonic() - started < SERVER_START_TIMEOUT_S:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not come up: {self.log_path.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: the crash case. The embedded PostgreSQL it started may survive."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait for the graceful shutdown; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def server_factory(tmp_path: Path):
    servers: list[ServerProcess] = []

    def make(*extra: str, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / "data", *extra)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()
