"""The session's temp folder is its own: another pytest run beside it cannot take it away.

pytest makes /tmp/pytest-of-USER 0700 whenever a run starts; under root the embedded
PostgreSQL runs as a user of its own that must pass through the folders above its data, so a
second run used to cut off the first one's PostgreSQL mid-run.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from tests.conftest import TEST_TMP_ROOT


def test_the_session_keeps_its_files_outside_pytests_shared_folder(tmp_path: Path):
    shared = Path(tempfile.gettempdir()) / "pytest-of-"
    assert not str(tmp_path).startswith(str(shared))
    assert tmp_path.is_relative_to(TEST_TMP_ROOT)
    # PostgreSQL's own user can pass through the root, which no pytest run chmods.
    assert stat.S_IMODE(TEST_TMP_ROOT.stat().st_mode) & stat.S_IXOTH
    # Named after the pytest process that made it (so a later run leaves it while that one
    # lives): this one, or under pytest-xdist the controller, which started this worker.
    session = tmp_path.relative_to(TEST_TMP_ROOT).parts[0]
    made_by = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
    assert session.startswith(f"pid{made_by}-")
