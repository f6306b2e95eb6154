"""``crowdex settle`` against a real server."""

from __future__ import annotations

import asyncio
import json
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import OPERATOR_KEY, ServerProcess
from tests.settlement.test_faults import Venue

REPO = Path(__file__).resolve().parents[2]


def settle(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from settlement.cli import main; "
         "sys.exit(main(sys.argv[1:]))", "--url", server.url, "--operator-key", OPERATOR_KEY,
         *args], capture_output=True, text=True, timeout=60, cwd=REPO)


def test_settle_runs_shows_reports_and_reconciles(tmp_path: Path, pg_server) -> None:
    url = asyncio.run(pg_server.create_database())
    server = ServerProcess(tmp_path / "data", "--no-fsync", database_url=url)
    server.start()
    try:
        venue = Venue()
        venue.activity(server)
        done = settle(server, "run")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["batch_id"] == 1
        report = settle(server, "report", "1")
        assert report.stdout.splitlines()[0] == "batch_id,account_id,asset,net_amount,legs"
        assert len(report.stdout.splitlines()) == 1 + 1 + len(venue.cash)
        written = tmp_path / "report.csv"
        written.write_text("an older file, readable by all\n")
        written.chmod(0o644)
        assert settle(server, "report", "1", "-o", str(written)).returncode == 0
        assert written.read_text() == report.stdout
        assert stat.S_IMODE(written.stat().st_mode) == 0o600  # every account's money
        assert settle(server, "reconcile").returncode == 0
        assert settle(server, "show", "9").returncode == 1
        bad = subprocess.run([sys.executable, "-m", "settlement.cli", "--url", server.url],
                             capture_output=True, text=True, timeout=60, cwd=REPO,
                             env={"PATH": "/usr/bin:/bin"})
        assert bad.returncode == 2
    finally:
        server.stop()
