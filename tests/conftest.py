"""Shared test fixtures: the --slow switch, the session's own temp folder and a real
`crowdex serve` process."""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

OPERATOR_KEY = "cdx_test_operator_key_0123456789"
SERVER_START_TIMEOUT_S = 60.0
# Each session's temp folder lives here, not in pytest's /tmp/pytest-of-USER: every pytest run
# makes that folder 0700 as it starts, and under root the embedded PostgreSQL runs as a user of
# its own that must pass through it, so a second run started beside this one cut off this
# one's PostgreSQL (initdb and restarts failed mid-run). Nothing else touches this root.
TEST_TMP_ROOT = Path(tempfile.gettempdir()) / f"crowdex-pytest-of-{getpass.getuser()}"
TEST_TMP_ROOT_MODE = 0o711  # others may pass through (PostgreSQL's user), not list
SESSIONS_KEPT = 3  # the newest folders of finished sessions are kept, like pytest's


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", default=False,
                     help="run long checks (more hypothesis examples, bigger workloads)")
    parser.addoption("--on-replica", action="store_true", default=False,
                     help="build every in-process venue (tests/gateway, tests/boards) as a "
                     "replica of a local 3-node NATS cluster instead of on the file journal; "
                     "tests marked one_machine are deselected")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under --on-replica, leave out the tests of what only a one-machine venue has."""
    if not config.getoption("--on-replica"):
        return
    left_out = [item for item in items if item.get_closest_marker("one_machine") is not None]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if item.get_closest_marker("one_machine") is None]


@pytest.fixture(scope="session", autouse=True)
def on_replica_everywhere(request: pytest.FixtureRequest,
                          tmp_path_factory: pytest.TempPathFactory):
    """--on-replica: one NATS cluster for the session, and make_config points every venue at
    it (tests/gateway/conftest.py's OnReplica)."""
    if not request.config.getoption("--on-replica"):
        yield
        return
    from engine.log.natscluster import NatsCluster
    from tests.engine.conftest import NATS_NODES
    from tests.gateway.conftest import OnReplica

    with NatsCluster(tmp_path_factory.mktemp("nats-everywhere"), NATS_NODES) as cluster:
        OnReplica.nats_urls = tuple(cluster.urls)
        try:
            yield
        finally:
            OnReplica.nats_urls = None


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path plugin reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    # The engine's property tests read CROWDEX_SLOW to run more random steps.
    if config.getoption("--slow"):
        os.environ["CROWDEX_SLOW"] = "1"
    if config.option.basetemp is None:  # a --basetemp given by hand is left alone
        config.option.basetemp = str(session_temp_folder())


def session_temp_folder() -> Path:
    """A new folder for this session under ``TEST_TMP_ROOT``, after tidying finished ones."""
    TEST_TMP_ROOT.mkdir(mode=TEST_TMP_ROOT_MODE, exist_ok=True)
    os.chmod(TEST_TMP_ROOT, TEST_TMP_ROOT_MODE)
    _remove_finished_sessions()
    return Path(tempfile.mkdtemp(prefix=f"pid{os.getpid()}-", dir=TEST_TMP_ROOT))


def _remove_finished_sessions() -> None:
    """Remove the folders of sessions that ended, past the newest ``SESSIONS_KEPT``; a folder
    whose session still runs (its pid, in the name, alive) is never touched."""
    folders = sorted(TEST_TMP_ROOT.glob("pid*-*"), key=lambda p: p.stat().st_mtime,
                     reverse=True)
    for folder in folders[SESSIONS_KEPT:]:
        pid = folder.name[3:].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def slow(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--slow"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`crowdex serve` in a child process on a free loopback port."""

    def __init__(self, data_dir: Path, *extra: str, database_url: str | None = None,
                 operator_key: str | None = OPERATOR_KEY) -> None:
        self.data_dir = data_dir
        self.extra = list(extra)
        self.database_url = database_url
        self.operator_key = operator_key  # None: the server generates one (and prints it)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"server-{data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait for /healthz; returns the seconds it took."""
        args = [sys.executable, "-m", "gateway.cli", "serve", "--port", str(self.port),
                "--data-dir", str(self.data_dir)]
        if self.operator_key is not None:  # before the extra flags: a test may give another
            args += ["--operator-key", self.operator_key]
        args += self.extra
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
            except urllib.error.HTTPError as error:  # e.g. 503 degraded while it starts
                error.close()  # an unclosed one warns later, in whatever test is running
                time.sleep(0.05)
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
