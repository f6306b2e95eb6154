"""A journal written by an earlier crowdex (commit 98317ba, before this session's rules 4 and
the replay in runs) replays with today's code to the same state: every state array equal byte
for byte to what that version's own replay made of it, the same sequence and cash.

The journal and the expected figures were made by ``make_old_journal.py`` run on that commit's
code. (The state hash itself changes with any new field of the state, so the arrays are what
is compared; the meta that gained fields, such as a project's board rules, gained defaults.)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.clock import ManualClock
from engine.replay import replay
from engine.sequencer import Engine, replay_from_empty

OLD = Path(__file__).resolve().parent / "data" / "journal_98317ba"
OLD_ARRAYS = frozenset(json.loads((OLD / "expected.json").read_text())["arrays"])


def digests(machine) -> dict[str, str]:
    """The digest of every array that version had. Arrays added since (the order records of
    ``engine.lifecycle``, which replaced order objects in the meta) are new state, not a
    change of the old: they must exist, and the old ones must be equal byte for byte."""
    arrays = machine.arrays()
    assert {"markets_records", "markets_legs", "markets_finished"} <= set(arrays)
    return {name: hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
            for name, array in sorted(arrays.items()) if name in OLD_ARRAYS}


@pytest.fixture
def old_venue(tmp_path: Path) -> Path:
    shutil.copytree(OLD / "journal", tmp_path / "journal")
    return tmp_path


def test_an_older_journal_replays_to_the_state_that_version_made(old_venue: Path):
    expected = json.loads((OLD / "expected.json").read_text())
    one_at_a_time = replay_from_empty(old_venue)
    assert one_at_a_time.last_sequence == expected["sequence"] == 655
    assert one_at_a_time.cash_total() == expected["cash_total"]
    assert digests(one_at_a_time) == expected["arrays"]
    in_runs = replay(old_venue)
    assert (in_runs.sequence, in_runs.state_hash) == (655, one_at_a_time.state_hash())
    engine = Engine(old_venue, ManualClock(), sync=False)
    engine.recover()  # recovery's own path: runs, no snapshot
    try:
        assert digests(engine.machine) == expected["arrays"]
        assert engine.machine.rules == 3  # the venue keeps the rules it was created under
    finally:
        engine.close_recovered()
