"""Files only the server's user may read: the journal, snapshots and settlement reports.

They hold every account, key hash, balance and order of the venue, so API.md asks for mode 0600
files in 0700 folders. Modes are given when a file or folder is made (never a window where it
is readable) and tightened on start for what an older version left at 0644/0755.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("crowdex.engine")

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) if needed; ``path`` itself is left at mode 0700."""
    path = Path(path)
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, DIR_MODE)
    return path


def tighten_files(directory: Path) -> None:
    """Mode 0600 for every file directly in ``directory`` that others could read."""
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            _tighten(Path(entry.path), FILE_MODE)


def open_private(path: Path | str, flags: int) -> int:
    """``os.open`` a file that, if created, is mode 0600 from its first instant."""
    return os.open(path, flags, FILE_MODE)


def _tighten(path: Path, mode: int) -> None:
    current = stat.S_IMODE(path.stat().st_mode)
    if current & ~mode:
        try:
            os.chmod(path, current & mode)
        except OSError as error:  # e.g. a folder owned by someone else: say so, go on
            log.warning("could not make %s private (mode %o): %s", path, current, error)
